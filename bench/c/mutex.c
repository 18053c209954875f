/* mutex: 8 goroutines each add 1 to a shared counter under a mutex, n increments in all.
 * Result: ns per increment. Twin: bench/go/mutex/main.go. */
#include "bench.h"

#define WORKERS 8

static long per_worker;
static hoare_mutex mu;
static long counter; /* guarded by mu */
static hoare_wg wg;

static void worker(void *arg)
{
    (void)arg;
    for (long i = 0; i < per_worker; i++) {
        hoare_mutex_lock(&mu);
        counter++;
        hoare_mutex_unlock(&mu);
    }
    hoare_wg_done(&wg);
}

static void bench(void *arg)
{
    (void)arg;
    long n = per_worker * WORKERS;
    int64_t t0 = hoare_now();
    hoare_wg_add(&wg, WORKERS);
    for (int i = 0; i < WORKERS; i++)
        BENCH_OK(hoare_go(worker, NULL));
    hoare_wg_wait(&wg);
    int64_t elapsed = hoare_now() - t0;
    if (counter != n)
        bench_fail("mutex: counter is %ld, want %ld", counter, n);
    bench_result("mutex", n, (double)elapsed / (double)n, "ns/increment");
}

int main(int argc, char **argv)
{
    long n = bench_size(argc, argv, 10000000);
    if (n % WORKERS != 0)
        bench_fail("mutex: size %ld is not a multiple of %d", n, WORKERS);
    per_worker = n / WORKERS;
    bench_run(bench, NULL);
    return 0;
}
