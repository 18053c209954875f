/*
 * demo.c - concurrency is a property of the code, parallelism a property of the running program.
 *
 * The same concurrent program - two goroutines that each count to a large number - runs twice:
 * with one processor (hoare_procs(1)) and with two. The code does not change; the runtime decides
 * whether the goroutines run in parallel.
 */
#include <hoare.h>

#include <stdio.h>

#define COUNT 1500000000L

static void count(void *arg) {
    hoare_wg *wg = arg;
    unsigned long x = 0;
    for (long i = 0; i < COUNT; i++) {
        x += (unsigned long)i;
        __asm__ __volatile__("" : "+r"(x)); /* keep the loop: the count is the work */
    }
    hoare_wg_done(wg);
}

static double run_with(int procs) {
    hoare_procs(procs);
    hoare_wg wg = HOARE_WG_INIT;
    int64_t start = hoare_now();
    hoare_wg_add(&wg, 2);
    hoare_go(count, &wg);
    hoare_go(count, &wg);
    hoare_wg_wait(&wg);
    return (double)(hoare_now() - start) / 1e9;
}

int main(void) {
    int cpus = hoare_procs(0);
    printf("Two goroutines, each counting to %ld (this machine: %d usable CPUs).\n\n", COUNT, cpus);
    double one = run_with(1);
    printf("  hoare_procs(1): %.2f s\n", one);
    double two = run_with(2);
    printf("  hoare_procs(2): %.2f s  (%.2fx faster)\n\n", two, one / two);
    printf("With one processor the two goroutines take turns on one thread: the code is concurrent,\n"
           "the run is sequential. With two, the runtime puts them on two threads at once: parallel.\n");
    if (cpus < 2) printf("(This machine has one usable CPU, so both runs are sequential.)\n");
    return 0;
}
