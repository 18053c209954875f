/* mpmc: 4 producers and 4 consumers move n ints in all through one channel of capacity 128; the
 * bench goroutine closes it once every producer is done. Result: ns per item.
 * Twin: bench/go/mpmc/main.go. */
#include "bench.h"

#define PRODUCERS 4
#define CONSUMERS 4

static long n;
static hoare_chan *ch;
static hoare_wg producers_done, consumers_done;
static long counts[CONSUMERS], sums[CONSUMERS];

static void producer(void *arg)
{
    long id = (long)(intptr_t)arg;
    /* producer id sends the values i with i % PRODUCERS == id */
    for (long i = id; i < n; i += PRODUCERS)
        BENCH_OK(hoare_send(ch, &i));
    hoare_wg_done(&producers_done);
}

static void consumer(void *arg)
{
    long id = (long)(intptr_t)arg;
    long v, count = 0, sum = 0;
    while (hoare_recv(ch, &v) == 0) {
        count++;
        sum += v;
    }
    counts[id] = count;
    sums[id] = sum;
    hoare_wg_done(&consumers_done);
}

static void bench(void *arg)
{
    (void)arg;
    ch = bench_chan(sizeof(long), 128);
    int64_t t0 = hoare_now();
    hoare_wg_add(&consumers_done, CONSUMERS);
    for (long i = 0; i < CONSUMERS; i++)
        BENCH_OK(hoare_go(consumer, (void *)(intptr_t)i));
    hoare_wg_add(&producers_done, PRODUCERS);
    for (long i = 0; i < PRODUCERS; i++)
        BENCH_OK(hoare_go(producer, (void *)(intptr_t)i));
    hoare_wg_wait(&producers_done);
    BENCH_OK(hoare_close(ch));
    hoare_wg_wait(&consumers_done);
    int64_t elapsed = hoare_now() - t0;
    long count = 0, sum = 0;
    for (int i = 0; i < CONSUMERS; i++) {
        count += counts[i];
        sum += sums[i];
    }
    if (count != n || sum != n * (n - 1) / 2)
        bench_fail("mpmc: received %ld items summing to %ld, want %ld and %ld", count, sum, n,
                   n * (n - 1) / 2);
    bench_result("mpmc", n, (double)elapsed / (double)n, "ns/item");
    hoare_chan_release(ch);
}

int main(int argc, char **argv)
{
    n = bench_size(argc, argv, 10000000);
    bench_run(bench, NULL);
    return 0;
}
