/* sleepers: n goroutines each sleep 10 ms, all started in one loop; the time from the first start
 * until the last is done. Each checks that it slept at least 10 ms. Result: ms.
 * Twin: bench/go/sleepers/main.go. */
#include "bench.h"

#define NAP (10 * HOARE_MS)

static hoare_wg wg;
static long early; /* sleepers that woke before NAP passed */

static void sleeper(void *arg)
{
    (void)arg;
    int64_t t0 = hoare_now();
    hoare_sleep(NAP);
    if (hoare_now() - t0 < NAP)
        __atomic_fetch_add(&early, 1, __ATOMIC_RELAXED);
    hoare_wg_done(&wg);
}

static long n;

static void bench(void *arg)
{
    (void)arg;
    int64_t t0 = hoare_now();
    hoare_wg_add(&wg, (int)n);
    for (long i = 0; i < n; i++)
        BENCH_OK(hoare_go(sleeper, NULL));
    hoare_wg_wait(&wg);
    int64_t elapsed = hoare_now() - t0;
    if (early != 0)
        bench_fail("sleepers: %ld goroutines woke before 10 ms", early);
    bench_result("sleepers", n, (double)elapsed / 1e6, "ms");
}

int main(int argc, char **argv)
{
    n = bench_size(argc, argv, 100000);
    bench_run(bench, NULL);
    return 0;
}
