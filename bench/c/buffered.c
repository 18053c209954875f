/* buffered: one producer sends 0..n-1 through a channel of capacity 1024 and closes it; one consumer
 * receives until closed. Result: ns per item. Twin: bench/go/buffered/main.go. */
#include "bench.h"

static long n;
static hoare_chan *ch;

static void producer(void *arg)
{
    (void)arg;
    for (long i = 0; i < n; i++)
        BENCH_OK(hoare_send(ch, &i));
    BENCH_OK(hoare_close(ch));
}

static void bench(void *arg)
{
    (void)arg;
    ch = bench_chan(sizeof(long), 1024);
    int64_t t0 = hoare_now();
    BENCH_OK(hoare_go(producer, NULL));
    long v, count = 0, sum = 0;
    while (hoare_recv(ch, &v) == 0) {
        count++;
        sum += v;
    }
    int64_t elapsed = hoare_now() - t0;
    if (count != n || sum != n * (n - 1) / 2)
        bench_fail("buffered: received %ld items summing to %ld, want %ld and %ld", count, sum, n,
                   n * (n - 1) / 2);
    bench_result("buffered", n, (double)elapsed / (double)n, "ns/item");
    hoare_chan_release(ch);
}

int main(int argc, char **argv)
{
    n = bench_size(argc, argv, 10000000);
    bench_run(bench, NULL);
    return 0;
}
