/* ring: the thread-ring of the benchmarks game: 503 goroutines in a ring of unbuffered channels pass
 * a token n times; the goroutine that receives 0 reports its number (n % 503 + 1) and the others
 * stay blocked, as in the Go twin. Result: ns per pass. Twin: bench/go/ring/main.go. */
#include "bench.h"

#define RING 503

static hoare_chan *links[RING]; /* links[i] is the input of goroutine i+1 */
static hoare_chan *done;

static void member(void *arg)
{
    long i = (long)(intptr_t)arg;
    hoare_chan *in = links[i], *out = links[(i + 1) % RING];
    for (;;) {
        long token;
        BENCH_OK(hoare_recv(in, &token));
        if (token == 0) {
            long id = i + 1;
            BENCH_OK(hoare_send(done, &id));
            return;
        }
        token--;
        BENCH_OK(hoare_send(out, &token));
    }
}

static long n;

static void bench(void *arg)
{
    (void)arg;
    for (int i = 0; i < RING; i++)
        links[i] = bench_chan(sizeof(long), 0);
    done = bench_chan(sizeof(long), 0);
    int64_t t0 = hoare_now();
    for (long i = 0; i < RING; i++)
        BENCH_OK(hoare_go(member, (void *)(intptr_t)i));
    BENCH_OK(hoare_send(links[0], &n));
    long winner;
    BENCH_OK(hoare_recv(done, &winner));
    int64_t elapsed = hoare_now() - t0;
    if (winner != n % RING + 1)
        bench_fail("ring: goroutine %ld got the last token, want %ld", winner, n % RING + 1);
    bench_result("ring", n, (double)elapsed / (double)n, "ns/pass");
}

int main(int argc, char **argv)
{
    n = bench_size(argc, argv, 10000000);
    bench_run(bench, NULL);
    return 0;
}
