/*
 * demo.c - concurrency is a property of the code, parallelism a property of the running program.
 *
 * The same concurrent program - two goroutines that each count to a large number - runs twice:
 * with one processor (hoare_procs(1)) and with two. The code does not change; the runtime decides
 * whether the goroutines run in parallel.
 *
 * `demo --trace PREFIX` also writes an execution trace of each run (PREFIX-1.json, PREFIX-2.json;
 * open them in https://ui.perfetto.dev); `make demo` draws them (docs/demo-trace.png). Env
 * HOARE_DEMO_COUNT changes the count (the tests use a small one).
 */
#include <hoare.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static long COUNT = 1500000000L;
static const char *trace_prefix;

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
    int fd = -1;
    if (trace_prefix) {
        char path[4096];
        snprintf(path, sizeof path, "%s-%d.json", trace_prefix, procs);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || hoare_trace_start(fd) != 0) {
            perror(path);
            exit(1);
        }
    }
    hoare_wg wg = HOARE_WG_INIT;
    int64_t start = hoare_now();
    hoare_wg_add(&wg, 2);
    hoare_attr a = {.name = "counter A"}, b = {.name = "counter B"};
    hoare_go_with(&a, count, &wg);
    hoare_go_with(&b, count, &wg);
    hoare_wg_wait(&wg);
    double seconds = (double)(hoare_now() - start) / 1e9;
    if (fd >= 0) {
        if (hoare_trace_stop() != 0) perror("hoare_trace_stop");
        close(fd);
    }
    return seconds;
}

/* The program's main goroutine (see main below). */
static int app(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--trace")) trace_prefix = argv[2];
    const char *count_env = getenv("HOARE_DEMO_COUNT");
    if (count_env && atol(count_env) > 0) COUNT = atol(count_env);
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

int main(int argc, char **argv) { return hoare_main(app, argc, argv); }
