/* sieve: the concurrent prime sieve of the Go tour: a generator sends 2, 3, 4, ... and each prime
 * found adds a filter goroutine to a daisy chain of unbuffered channels. Runs until the n-th prime
 * (the 5,000th is 48611). The chain is left blocked when the program ends, as in the Go twin.
 * Result: ms. Twin: bench/go/sieve/main.go. */
#include "bench.h"

static void generate(void *arg)
{
    hoare_chan *out = arg;
    for (long i = 2;; i++)
        BENCH_OK(hoare_send(out, &i));
}

struct filter {
    hoare_chan *in, *out;
    long prime;
};

static void filter(void *arg)
{
    struct filter f = *(struct filter *)arg;
    free(arg);
    for (;;) {
        long i;
        BENCH_OK(hoare_recv(f.in, &i));
        if (i % f.prime != 0)
            BENCH_OK(hoare_send(f.out, &i));
    }
}

/* The n-th prime by trial division, to check the chain's answer. */
static long nth_prime(long n)
{
    long found = 0;
    for (long c = 2;; c++) {
        int prime = 1;
        for (long d = 2; d * d <= c; d++)
            if (c % d == 0) {
                prime = 0;
                break;
            }
        if (prime && ++found == n)
            return c;
    }
}

static long n;

static void bench(void *arg)
{
    (void)arg;
    int64_t t0 = hoare_now();
    hoare_chan *ch = bench_chan(sizeof(long), 0);
    BENCH_OK(hoare_go(generate, ch));
    long prime = 0;
    for (long i = 0; i < n; i++) {
        BENCH_OK(hoare_recv(ch, &prime));
        struct filter *f = malloc(sizeof *f); /* the filter frees it */
        if (f == NULL)
            bench_fail("sieve: out of memory");
        hoare_chan *next = bench_chan(sizeof(long), 0);
        *f = (struct filter){ch, next, prime};
        BENCH_OK(hoare_go(filter, f));
        ch = next;
    }
    int64_t elapsed = hoare_now() - t0;
    if (prime != nth_prime(n))
        bench_fail("sieve: prime number %ld is %ld, want %ld", n, prime, nth_prime(n));
    bench_result("sieve", n, (double)elapsed / 1e6, "ms");
}

int main(int argc, char **argv)
{
    n = bench_size(argc, argv, 5000);
    bench_run(bench, NULL);
    return 0;
}
