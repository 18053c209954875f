/* startpark: start n goroutines that each park on one channel; the time from the first start until
 * all of them are parked, per goroutine. Then the channel is closed and all are joined (not timed).
 * Result: ns per goroutine. Twin: bench/go/startpark/main.go. */
#include "bench.h"

static long n;
static hoare_chan *gate;
static hoare_wg started, finished;

static void parked(void *arg)
{
    (void)arg;
    hoare_wg_done(&started);
    if (hoare_recv(gate, NULL) != EPIPE)
        bench_fail("startpark: woke without the close");
    hoare_wg_done(&finished);
}

static void bench(void *arg)
{
    (void)arg;
    gate = bench_chan(0, 0);
    int64_t t0 = hoare_now();
    hoare_wg_add(&started, (int)n);
    hoare_wg_add(&finished, (int)n);
    for (long i = 0; i < n; i++)
        BENCH_OK(hoare_go(parked, NULL));
    hoare_wg_wait(&started);
    int64_t elapsed = hoare_now() - t0;
    BENCH_OK(hoare_close(gate));
    hoare_wg_wait(&finished);
    bench_result("startpark", n, (double)elapsed / (double)n, "ns/goroutine");
    hoare_chan_release(gate);
}

int main(int argc, char **argv)
{
    n = bench_size(argc, argv, 100000);
    bench_run(bench, NULL);
    return 0;
}
