/* spawn: start and join n goroutines that do nothing but mark one WaitGroup done (the wait
 * returning is the count check). Result: ns per goroutine. Twin: bench/go/spawn/main.go. */
#include "bench.h"

static long n;
static hoare_wg wg;

static void nothing(void *arg)
{
    (void)arg;
    hoare_wg_done(&wg);
}

static void bench(void *arg)
{
    (void)arg;
    int64_t t0 = hoare_now();
    hoare_wg_add(&wg, (int)n);
    for (long i = 0; i < n; i++)
        BENCH_OK(hoare_go(nothing, NULL));
    hoare_wg_wait(&wg);
    int64_t elapsed = hoare_now() - t0;
    bench_result("spawn", n, (double)elapsed / (double)n, "ns/goroutine");
}

int main(int argc, char **argv)
{
    n = bench_size(argc, argv, 1000000);
    bench_run(bench, NULL);
    return 0;
}
