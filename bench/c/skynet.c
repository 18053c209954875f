/* skynet: a tree of goroutines of fan-out 10 whose n leaves send their number (0..n-1) up over
 * unbuffered channels; each inner goroutine sums its 10 children and sends the sum up. With
 * n = 1,000,000 that is 1,111,111 goroutines and the sum 499999500000. Result: ms.
 * Twin: bench/go/skynet/main.go. */
#include "bench.h"

#define FANOUT 10

struct node {
    hoare_chan *out; /* where to send the subtree's sum */
    long num;        /* the first leaf number of the subtree */
    long size;       /* leaves in the subtree */
};

/* A node's argument lives in its parent's frame: the parent returns only after receiving the sum,
 * which the child sends after it has read its argument. */
static void skynet(void *arg)
{
    struct node *self = arg;
    long sum = self->num;
    if (self->size > 1) {
        struct node children[FANOUT];
        hoare_chan *results = bench_chan(sizeof(long), 0);
        long child_size = self->size / FANOUT;
        for (int i = 0; i < FANOUT; i++) {
            children[i] = (struct node){results, self->num + i * child_size, child_size};
            BENCH_OK(hoare_go(skynet, &children[i]));
        }
        sum = 0;
        for (int i = 0; i < FANOUT; i++) {
            long v;
            BENCH_OK(hoare_recv(results, &v));
            sum += v;
        }
        hoare_chan_release(results);
    }
    BENCH_OK(hoare_send(self->out, &sum));
}

static long n;

static void bench(void *arg)
{
    (void)arg;
    int64_t t0 = hoare_now();
    struct node root = {bench_chan(sizeof(long), 0), 0, n};
    BENCH_OK(hoare_go(skynet, &root));
    long sum;
    BENCH_OK(hoare_recv(root.out, &sum));
    int64_t elapsed = hoare_now() - t0;
    if (sum != n * (n - 1) / 2)
        bench_fail("skynet: sum %ld, want %ld", sum, n * (n - 1) / 2);
    bench_result("skynet", n, (double)elapsed / 1e6, "ms");
    hoare_chan_release(root.out);
}

int main(int argc, char **argv)
{
    n = bench_size(argc, argv, 1000000);
    for (long s = n; s > 1; s /= FANOUT)
        if (s % FANOUT != 0)
            bench_fail("skynet: size %ld is not a power of %d", n, FANOUT);
    bench_run(bench, NULL);
    return 0;
}
