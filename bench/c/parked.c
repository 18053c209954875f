/* parked: n goroutines parked on one channel; the resident memory they cost, per goroutine (RSS
 * delta / n, from /proc/self/statm). argv[2], when given, is hoare_attr.stack_size for them (the
 * small-stack run). Then the channel is closed and all of them are joined.
 * Result: bytes per goroutine. Twin: bench/go/parked/main.go. */
#include "bench.h"

static long n;
static size_t stack_size; /* 0: the default */
static hoare_chan *gate;
static hoare_wg started, finished;

static void parked(void *arg)
{
    (void)arg;
    hoare_wg_done(&started);
    if (hoare_recv(gate, NULL) != EPIPE)
        bench_fail("parked: woke without the close");
    hoare_wg_done(&finished);
}

static void bench(void *arg)
{
    (void)arg;
    gate = bench_chan(0, 0);
    hoare_attr attr = {.stack_size = stack_size};
    long rss0 = bench_rss_bytes();
    hoare_wg_add(&started, (int)n);
    hoare_wg_add(&finished, (int)n);
    for (long i = 0; i < n; i++) {
        int err = hoare_go_with(&attr, parked, NULL);
        if (err == EINVAL && i == 0) {
            printf("SKIP parked: stack_size %zu rejected (EINVAL)\n", stack_size);
            fflush(stdout);
            exit(0);
        }
        if (err != 0)
            bench_fail("parked: hoare_go_with failed at goroutine %ld: %s", i, strerror(err));
    }
    hoare_wg_wait(&started);
    long rss1 = bench_rss_bytes();
    BENCH_OK(hoare_close(gate));
    hoare_wg_wait(&finished);
    printf("RESULT name=parked procs=%d n=%ld value=%.6g unit=bytes/goroutine stack=%zu\n",
           hoare_procs(0), n, (double)(rss1 - rss0) / (double)n, stack_size);
    fflush(stdout);
    hoare_chan_release(gate);
}

int main(int argc, char **argv)
{
    n = bench_size(argc, argv, 1000000);
    if (argc > 2)
        stack_size = (size_t)strtoul(argv[2], NULL, 10);
    bench_run(bench, NULL);
    return 0;
}
