/* select: one receiver selects over 4 unbuffered channels, each fed by its own sender, n receives in
 * all (n/4 per channel). Result: ns per receive. Twin: bench/go/select/main.go. */
#include "bench.h"

#define SENDERS 4

static long per_sender;
static hoare_chan *chans[SENDERS];

static void sender(void *arg)
{
    hoare_chan *c = arg;
    for (long i = 0; i < per_sender; i++)
        BENCH_OK(hoare_send(c, &i));
}

static void bench(void *arg)
{
    (void)arg;
    for (int i = 0; i < SENDERS; i++)
        chans[i] = bench_chan(sizeof(long), 0);
    long v;
    hoare_case cases[SENDERS];
    for (int i = 0; i < SENDERS; i++)
        cases[i] = (hoare_case)HOARE_RECV(chans[i], &v);
    long counts[SENDERS] = {0}, sums[SENDERS] = {0};
    long total = per_sender * SENDERS;

    int64_t t0 = hoare_now();
    for (int i = 0; i < SENDERS; i++)
        BENCH_OK(hoare_go(sender, chans[i]));
    for (long r = 0; r < total; r++) {
        int k = hoare_select(cases, SENDERS);
        if (k < 0 || k >= SENDERS || cases[k].err != 0)
            bench_fail("select: returned case %d (err %d)", k, k >= 0 ? cases[k].err : errno);
        counts[k]++;
        sums[k] += v;
    }
    int64_t elapsed = hoare_now() - t0;
    for (int i = 0; i < SENDERS; i++)
        if (counts[i] != per_sender || sums[i] != per_sender * (per_sender - 1) / 2)
            bench_fail("select: channel %d gave %ld items summing to %ld, want %ld and %ld", i,
                       counts[i], sums[i], per_sender, per_sender * (per_sender - 1) / 2);
    bench_result("select", total, (double)elapsed / (double)total, "ns/receive");
    for (int i = 0; i < SENDERS; i++)
        hoare_chan_release(chans[i]);
}

int main(int argc, char **argv)
{
    long n = bench_size(argc, argv, 4000000);
    if (n % SENDERS != 0)
        bench_fail("select: size %ld is not a multiple of %d", n, SENDERS);
    per_sender = n / SENDERS;
    bench_run(bench, NULL);
    return 0;
}
