/* demo: the seed's demonstration (examples/demo.c) as a benchmark: two goroutines, each counting to
 * n without yielding, joined by a WaitGroup; the wall time. With two processors they run in
 * parallel (and the monitor must not interrupt them: nobody else waits); with one they take turns.
 * Result: ms. Twin: bench/go/demo/main.go. */
#include "bench.h"

static long n;
static hoare_wg wg;
static unsigned long sums[2];

static void count(void *arg)
{
    unsigned long *sum = arg;
    unsigned long x = 0;
    for (long i = 0; i < n; i++) {
        x += (unsigned long)i;
        __asm__ __volatile__("" : "+r"(x)); /* keep the loop: the count is the work */
    }
    *sum = x;
    hoare_wg_done(&wg);
}

static void bench(void *arg)
{
    (void)arg;
    int64_t t0 = hoare_now();
    hoare_wg_add(&wg, 2);
    BENCH_OK(hoare_go(count, &sums[0]));
    BENCH_OK(hoare_go(count, &sums[1]));
    hoare_wg_wait(&wg);
    int64_t elapsed = hoare_now() - t0;
    unsigned long want = (unsigned long)n * (unsigned long)(n - 1) / 2;
    if (sums[0] != want || sums[1] != want)
        bench_fail("demo: sums %lu %lu, want %lu", sums[0], sums[1], want);
    bench_result("demo", n, (double)elapsed / 1e6, "ms");
}

int main(int argc, char **argv)
{
    n = bench_size(argc, argv, 1500000000L);
    bench_run(bench, NULL);
    return 0;
}
