/* yield: two goroutines each call hoare_yield n/2 times (on one processor they alternate).
 * Result: ns per switch (per yield). Twin: bench/go/yield/main.go. */
#include "bench.h"

static long per_goroutine;
static hoare_wg wg;

static void yielder(void *arg)
{
    (void)arg;
    for (long i = 0; i < per_goroutine; i++)
        hoare_yield();
    hoare_wg_done(&wg);
}

static void bench(void *arg)
{
    (void)arg;
    long n = per_goroutine * 2;
    int64_t t0 = hoare_now();
    hoare_wg_add(&wg, 2);
    BENCH_OK(hoare_go(yielder, NULL));
    BENCH_OK(hoare_go(yielder, NULL));
    hoare_wg_wait(&wg);
    int64_t elapsed = hoare_now() - t0;
    bench_result("yield", n, (double)elapsed / (double)n, "ns/switch");
}

int main(int argc, char **argv)
{
    long n = bench_size(argc, argv, 10000000);
    if (n % 2 != 0)
        bench_fail("yield: size %ld is odd", n);
    per_goroutine = n / 2;
    bench_run(bench, NULL);
    return 0;
}
