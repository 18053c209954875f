/*
 * bench.h - the few helpers every C benchmark shares (header-only, one program per workload).
 *
 * Each benchmark is the twin of bench/go/<name>/main.go: same work, same result line.
 *  - argv[1], when given, is the workload size (the runner's quick mode passes small sizes).
 *  - The workload runs inside a goroutine ("the bench goroutine"), as Go's main is one. The
 *    environment variable HOARE_BENCH_MODE runs the same code two other ways, as users write it:
 *    "thread" calls it on main()'s own plain thread, "main" in the main goroutine of hoare_main.
 *  - The result is one line: RESULT name=<workload> procs=<P> n=<size> value=<v> unit=<u>
 *  - A wrong result (a count, a sum, a prime) prints "FAIL ..." and exits 1.
 */
#ifndef HOARE_BENCH_H
#define HOARE_BENCH_H

#include <hoare.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static inline __attribute__((noreturn, format(printf, 1, 2))) void bench_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("FAIL ", stdout);
    vprintf(fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
    fflush(stdout);
    exit(1);
}

/* Die on a non-zero return of a hoare call that must succeed. */
#define BENCH_OK(call)                                                                             \
    do {                                                                                           \
        int err_ = (call);                                                                         \
        if (err_ != 0)                                                                             \
            bench_fail("%s:%d: %s returned %d (%s)", __FILE__, __LINE__, #call, err_,             \
                       strerror(err_));                                                            \
    } while (0)

static inline hoare_chan *bench_chan(size_t elem_size, size_t cap)
{
    hoare_chan *c = hoare_chan_make(elem_size, cap);
    if (c == NULL)
        bench_fail("hoare_chan_make(%zu, %zu): %s", elem_size, cap, strerror(errno));
    return c;
}

/* The workload size: argv[1] if given, else the definition's size. */
static inline long bench_size(int argc, char **argv, long full_size)
{
    if (argc < 2)
        return full_size;
    char *end;
    long n = strtol(argv[1], &end, 10);
    if (*end != '\0' || n <= 0)
        bench_fail("bad size '%s'", argv[1]);
    return n;
}

static inline void bench_result(const char *name, long n, double value, const char *unit)
{
    printf("RESULT name=%s procs=%d n=%ld value=%.6g unit=%s\n", name, hoare_procs(0), n, value,
           unit);
    fflush(stdout);
}

/* Resident set size of this process in bytes (/proc/self/statm, second field, in pages). */
static inline long bench_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size_pages, resident_pages;
    if (f == NULL || fscanf(f, "%ld %ld", &size_pages, &resident_pages) != 2)
        bench_fail("cannot read /proc/self/statm");
    fclose(f);
    return resident_pages * sysconf(_SC_PAGESIZE);
}

struct bench_main_ctx {
    void (*fn)(void *);
    void *arg;
    hoare_wg done;
};

static inline void bench_main_trampoline(void *p)
{
    struct bench_main_ctx *ctx = p;
    ctx->fn(ctx->arg);
    hoare_wg_done(&ctx->done);
}

static inline void bench_nothing(void *p)
{
    hoare_wg_done(p);
}

static struct bench_main_ctx *bench_main_ctx; /* what hoare_main's function runs */

static inline int bench_main_fn(int argc, char **argv)
{
    (void)argc, (void)argv;
    bench_main_ctx->fn(bench_main_ctx->arg);
    return 0;
}

/* Start the runtime (one goroutine started and joined, as the Go twin does before its clock
 * starts), then run fn(arg): in the bench goroutine, waited for from main() (the default), on
 * main()'s thread itself (HOARE_BENCH_MODE=thread) or through hoare_main (HOARE_BENCH_MODE=main). */
static inline void bench_run(void (*fn)(void *), void *arg)
{
    hoare_wg warm = HOARE_WG_INIT;
    hoare_wg_add(&warm, 1);
    BENCH_OK(hoare_go(bench_nothing, &warm));
    hoare_wg_wait(&warm);

    const char *mode = getenv("HOARE_BENCH_MODE");
    struct bench_main_ctx ctx = {fn, arg, HOARE_WG_INIT};
    if (mode && strcmp(mode, "thread") == 0) {
        fn(arg);
    } else if (mode && strcmp(mode, "main") == 0) {
        bench_main_ctx = &ctx;
        BENCH_OK(hoare_main(bench_main_fn, 0, NULL));
    } else if (!mode || !*mode || strcmp(mode, "goroutine") == 0) {
        hoare_wg_add(&ctx.done, 1);
        BENCH_OK(hoare_go_with(&(hoare_attr){.name = "bench"}, bench_main_trampoline, &ctx));
        hoare_wg_wait(&ctx.done);
    } else {
        bench_fail("HOARE_BENCH_MODE=%s: expected goroutine, thread or main", mode);
    }
}

#endif /* HOARE_BENCH_H */
