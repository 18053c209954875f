/* pingpong: n round trips of an int between two goroutines over two unbuffered channels; the echo
 * goroutine answers v+1. Result: ns per round trip. Twin: bench/go/pingpong/main.go. */
#include "bench.h"

static long n;
static hoare_chan *ping, *pong;

static void echo(void *arg)
{
    (void)arg;
    long v;
    for (long i = 0; i < n; i++) {
        BENCH_OK(hoare_recv(ping, &v));
        v++;
        BENCH_OK(hoare_send(pong, &v));
    }
}

static void bench(void *arg)
{
    (void)arg;
    ping = bench_chan(sizeof(long), 0);
    pong = bench_chan(sizeof(long), 0);
    int64_t t0 = hoare_now();
    BENCH_OK(hoare_go(echo, NULL));
    for (long i = 0; i < n; i++) {
        long v = i;
        BENCH_OK(hoare_send(ping, &v));
        BENCH_OK(hoare_recv(pong, &v));
        if (v != i + 1)
            bench_fail("pingpong: sent %ld, got back %ld", i, v);
    }
    int64_t elapsed = hoare_now() - t0;
    bench_result("pingpong", n, (double)elapsed / (double)n, "ns/roundtrip");
    hoare_chan_release(ping);
    hoare_chan_release(pong);
}

int main(int argc, char **argv)
{
    n = bench_size(argc, argv, 1000000);
    bench_run(bench, NULL);
    return 0;
}
