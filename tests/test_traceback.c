/*
 * test_traceback.c - tracebacks in Go's layout: hoare_dump of a goroutine parked in a known static
 * function (the function, its caller, the source line of the park, "created by"), the deadlock
 * report, a stack overflow, crashes (SIGSEGV, SIGABRT, SIGFPE) in goroutine code, a goroutine dumping
 * itself (it comes first, "[running]"; from default, small and sub-page stacks), SIGQUIT (status 2, or an
 * abort with HOARE_TRACEBACK=crash), dumps taken while goroutines park and wake without end (no
 * garbage frames), concurrent dumps (never interleaved). Fatal scenarios run in child processes (test_run_self).
 *
 * Function names and source lines are checked when the library found libdw (HOARE_HAVE_LIBDW, set
 * for this test by CMake); without it tracebacks print module+offset, which is checked instead.
 */
#include "test.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>

#ifdef HOARE_HAVE_LIBDW
static const bool symbols = true;  /* frames have function names and file:line */
#else
static const bool symbols = false; /* frames print as module+0xoffset */
#endif

static int park_line; /* the line of the hoare_recv that parks in leaf_parks */

/* static and small: at -O2 it is inlined into its caller, and must still show as a frame */
static void leaf_parks(hoare_chan *c) {
    park_line = __LINE__; hoare_recv(c, NULL);
}

static void mid_calls(void *arg) {
    leaf_parks(arg);
    __asm__ __volatile__("" ::: "memory"); /* not a tail call: mid_calls keeps a frame */
}

static bool contains(const char *out, const char *what) {
    bool ok = strstr(out, what) != NULL;
    if (!ok) fprintf(stderr, "missing \"%s\" in:\n%s\n", what, out);
    return ok;
}

/* The frames of a goroutine: function lines in order, innermost first. */
static bool in_order(const char *out, const char *first, const char *second) {
    const char *a = strstr(out, first);
    const char *b = a ? strstr(a, second) : NULL;
    if (!b) fprintf(stderr, "expected \"%s\" before \"%s\" in:\n%s\n", first, second, out);
    return b != NULL;
}

static void no_core_dumps(void) {
    struct rlimit rl = {0, 0};
    setrlimit(RLIMIT_CORE, &rl);
}

/* ---- child scenarios */

static int child_deadlock(void) {
    hoare_chan *c = hoare_chan_make(0, 0);
    hoare_attr attr = {.name = "stuck"};
    hoare_go_with(&attr, mid_calls, c);
    alarm(20);
    hoare_recv(hoare_chan_make(0, 0), NULL);
    return 0;
}

static volatile int depth_sink;

static volatile int depth_limit = 1 << 30; /* never reached: the stack ends first */

static int recurse_deeply(int n) {
    volatile char pad[100];
    pad[0] = (char)n;
    depth_sink = pad[0];
    if (n >= depth_limit) return 0;
    return recurse_deeply(n + 1) + pad[1];
}

static void overflow_main(void *arg) {
    (void)arg;
    depth_sink = recurse_deeply(0);
}

static int child_overflow(void) {
    hoare_attr attr = {.name = "deep", .stack_size = 64 * 1024};
    hoare_go_with(&attr, overflow_main, NULL);
    alarm(25);
    hoare_sleep(35 * HOARE_SEC);
    return 0;
}

static volatile uintptr_t bad_address = 16; /* not NULL: UBSan would report a null store itself */

static __attribute__((noinline)) void crash_here(void) {
    *(volatile int *)bad_address = 42;
}

static void crash_main(void *arg) {
    (void)arg;
    crash_here();
    __asm__ __volatile__("" ::: "memory");
}

static int child_segv(void) {
    no_core_dumps();
    hoare_chan *c = hoare_chan_make(0, 0);
    hoare_go(mid_calls, c); /* a bystander: listed after the crashing goroutine */
    hoare_sleep(10 * HOARE_MS);
    hoare_attr attr = {.name = "crasher"};
    hoare_go_with(&attr, crash_main, NULL);
    alarm(20);
    hoare_sleep(30 * HOARE_SEC);
    return 0;
}

static __attribute__((noinline)) void abort_here(void *arg) {
    (void)arg;
    abort();
}

static int child_abort(void) {
    no_core_dumps();
    hoare_go(abort_here, NULL);
    alarm(20);
    hoare_sleep(30 * HOARE_SEC);
    return 0;
}

static volatile int zero_divisor;

static __attribute__((noinline)) void divide_here(void *arg) {
    (void)arg;
    zero_divisor = 1000 / zero_divisor;
}

static int child_fpe(void) {
    no_core_dumps();
    hoare_go(divide_here, NULL);
    alarm(20);
    hoare_sleep(30 * HOARE_SEC);
    return 0;
}

static int child_sigquit(void) {
    no_core_dumps();
    hoare_chan *c = hoare_chan_make(0, 0);
    hoare_attr attr = {.name = "quitter"};
    hoare_go_with(&attr, mid_calls, c);
    hoare_sleep(10 * HOARE_MS);
    alarm(20);
    kill(getpid(), SIGQUIT);
    for (;;) pause();
    return 0;
}

/* ---- the parent's checks */

static void test_dump_static_function(void) {
    hoare_chan *c = hoare_chan_make(0, 0);
    hoare_attr attr = {.name = "parker"};
    REQUIRE(hoare_go_with(&attr, mid_calls, c) == 0);
    const char *buf = test_dump_until("[chan receive]:\n\tname parker", 10);
    REQUIRE(buf != NULL);
    const char *g = strstr(buf, "[chan receive]:\n\tname parker");
    if (symbols) {
        CHECK(contains(g, "leaf_parks("));
        CHECK(in_order(g, "leaf_parks(", "mid_calls("));
        CHECK(contains(g, "created by test_dump_static_function"));
        char where[64];
        snprintf(where, sizeof where, "test_traceback.c:%d +0x", park_line);
        if (!strstr(g, where)) snprintf(where, sizeof where, "test_traceback.c:%d\n", park_line); /* inlined */
        CHECK(contains(g, where));
        CHECK(in_order(g, "leaf_parks(", where));
    } else {
        CHECK(in_order(g, "test_traceback+0x", "created by"));
    }
    hoare_close(c);
    hoare_chan_release(c);
}

/* ---- dumps while goroutines keep parking and waking: a goroutine that runs again while its stack
 * is read is left without frames, never shown with garbage ones */

enum { CHURN_PAIRS = 4, CHURN_DEPTH = 6 };
static _Atomic bool churn_stop;

__attribute__((noinline)) static void churn_deep(hoare_chan *in, hoare_chan *out, int depth) {
    if (depth > 0) {
        churn_deep(in, out, depth - 1);
        __asm__ __volatile__("" ::: "memory"); /* not a tail call */
        return;
    }
    if (in) hoare_recv(in, NULL);
    if (out) hoare_send(out, NULL);
}

struct churn_arg {
    hoare_chan *in, *out;
    bool starts;
    hoare_wg *wg;
};

static void churn_loop(void *p) {
    struct churn_arg *a = p;
    if (a->starts) churn_deep(NULL, a->out, CHURN_DEPTH);
    while (!atomic_load(&churn_stop)) churn_deep(a->in, a->out, CHURN_DEPTH);
    hoare_wg_done(a->wg);
}

static void test_dump_while_churning(void) {
    if (!symbols) return;
    hoare_wg wg = {0};
    struct churn_arg args[2 * CHURN_PAIRS];
    hoare_chan *chans[2 * CHURN_PAIRS];
    for (int i = 0; i < 2 * CHURN_PAIRS; i++) chans[i] = hoare_chan_make(0, 1);
    hoare_wg_add(&wg, 2 * CHURN_PAIRS);
    for (int p = 0; p < CHURN_PAIRS; p++) {
        hoare_chan *ab = chans[2 * p], *ba = chans[2 * p + 1];
        args[2 * p] = (struct churn_arg){ba, ab, true, &wg};
        args[2 * p + 1] = (struct churn_arg){ab, ba, false, &wg};
        hoare_attr attr = {.name = "churn"};
        REQUIRE(hoare_go_with(&attr, churn_loop, &args[2 * p]) == 0);
        REQUIRE(hoare_go_with(&attr, churn_loop, &args[2 * p + 1]) == 0);
    }
    int whole = 0, without = 0, bad = 0;
    int64_t deadline = hoare_now() + 3 * HOARE_SEC;
    for (int round = 0; round < 300 && hoare_now() < deadline; round++) {
        char *buf = test_dump_text();
        /* each entry ends at a blank line */
        for (char *e = buf, *end; *e; e = end + 2) {
            end = strstr(e, "\n\n");
            if (!end) break;
            *end = 0;
            if (strstr(e, "\tname churn\n")) {
                if (strstr(e, "stack unavailable") || strstr(e, "while its stack was read")) {
                    without++;
                } else if (strstr(e, "churn_deep(") && strstr(e, "churn_loop(") &&
                           in_order(e, "churn_deep(", "churn_loop(")) {
                    whole++;
                } else if (strstr(e, "[runnable]:\n\tname churn\nchurn_loop(...)\n")) {
                    without++; /* created, not started yet: its function only */
                } else {
                    if (bad++ == 0) fprintf(stderr, "a churning goroutine's entry:\n%s\n", e);
                }
            }
        }
    }
    atomic_store(&churn_stop, true);
    for (int i = 0; i < 2 * CHURN_PAIRS; i++) hoare_close(chans[i]); /* wakes whoever waits */
    hoare_wg_wait(&wg);
    for (int i = 0; i < 2 * CHURN_PAIRS; i++) hoare_chan_release(chans[i]);
    printf("churning dumps: %d entries with whole stacks, %d without, %d bad\n", whole, without, bad);
    CHECK_EQ(bad, 0);
    CHECK(whole > 0);
}

/* ---- concurrent dumps into one file come out whole, one after the other */

enum { DUMPERS = 3, DUMPS_EACH = 40 };

static int dump_repeatedly(hoare_ctx *ctx, void *p) {
    (void)ctx;
    int fd = *(int *)p;
    for (int i = 0; i < DUMPS_EACH; i++) hoare_dump(fd);
    return 0;
}

static void test_concurrent_dumps(void) {
    char path[] = "/tmp/hoare_dumps_XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    unlink(path);
    hoare_group *grp = hoare_group_new(NULL);
    for (int i = 0; i < DUMPERS; i++) REQUIRE(hoare_group_go(grp, dump_repeatedly, &fd) == 0);
    hoare_group_wait(grp);
    hoare_group_free(grp);
    off_t size = lseek(fd, 0, SEEK_END);
    REQUIRE(size > 0);
    char *text = malloc((size_t)size + 1);
    REQUIRE(text && pread(fd, text, (size_t)size, 0) == size);
    text[size] = 0;
    close(fd);
    /* every entry (ended by a blank line) starts with its header */
    int entries = 0, torn = 0;
    for (char *e = text, *end; *e && (end = strstr(e, "\n\n")); e = end + 2) {
        *end = 0;
        entries++;
        if (strncmp(e, "goroutine ", 10) != 0 && strncmp(e, "thread ", 7) != 0 && torn++ == 0)
            fprintf(stderr, "a torn entry:\n%s\n", e);
    }
    free(text);
    CHECK(entries >= DUMPERS * DUMPS_EACH); /* each dump lists its caller at least */
    CHECK_EQ(torn, 0);
}

static void test_deadlock_traceback(void) {
    static char out[1 << 17];
    int status = test_run_self("deadlock", NULL, out, sizeof out);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 2);
    CHECK(contains(out, "fatal error: all goroutines are asleep - deadlock!"));
    CHECK(contains(out, "[chan receive]:\n\tname stuck\n"));
    if (symbols) {
        CHECK(in_order(out, "leaf_parks(", "mid_calls("));
        CHECK(contains(out, "created by child_deadlock"));
    }
}

static void test_overflow_traceback(void) {
    static char out[1 << 17];
    int status = test_run_self("overflow", NULL, out, sizeof out);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 2);
    CHECK(contains(out, "fatal error: stack overflow in goroutine"));
    if (symbols) {
        CHECK(contains(out, "[running]:\n\tname deep\nrecurse_deeply("));
        /* over 100 frames: cut short, as Go does (sanitizers' frames are larger: fewer fit) */
        if (!TEST_SANITIZED) CHECK(contains(out, "...additional frames elided..."));
        CHECK(contains(out, "created by child_overflow"));
    } else {
        CHECK(contains(out, "[running]:\n\tname deep\n"));
    }
}

static void test_segv_report(void) {
    static char out[1 << 17];
    int status = test_run_self("segv", NULL, out, sizeof out);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV);
    CHECK(contains(out, "SIGSEGV: segmentation violation"));
    CHECK(contains(out, "addr=0x10 "));
    CHECK(in_order(out, "[running]:\n\tname crasher\n", "[chan receive]:")); /* then the others */
    if (symbols) {
        CHECK(in_order(out, "[running]:\n\tname crasher\ncrash_here(", "crash_main("));
        CHECK(in_order(out, "crash_main(", "[chan receive]:"));
        CHECK(contains(out, "mid_calls("));
        CHECK(contains(out, "test_traceback.c:"));
    }
}

static void test_abort_report(void) {
    static char out[1 << 17];
    int status = test_run_self("abort", NULL, out, sizeof out);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    CHECK(contains(out, "SIGABRT: abort"));
    if (symbols) CHECK(contains(out, "abort_here("));
}

static void test_fpe_report(void) {
    static char out[1 << 17];
    int status = test_run_self("fpe", NULL, out, sizeof out);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGFPE);
    CHECK(contains(out, "SIGFPE: floating-point exception"));
    if (symbols) CHECK(contains(out, "divide_here("));
}

/* hoare_dump from a goroutine: the caller first, "[running]", with its own frames */
static __attribute__((noinline)) void dump_myself(void *arg) {
    int *fds = arg;
    hoare_dump(fds[1]);
    __asm__ __volatile__("" ::: "memory");
}

/* Symbolising takes far more stack than a goroutine has (libdw allocates on the stack, in blocks
 * that can skip a guard): a dump from a goroutine must run on the scheduler's stack. From a 128 KiB
 * stack it used to write below the guard, into whatever lay there (a thread's stack: crashes later);
 * from a sub-page one it overflowed at once. */
static void dump_self_with_stack(size_t stack_size) {
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    hoare_attr attr = {.stack_size = stack_size, .name = "self-dumper"};
    REQUIRE(hoare_go_with(&attr, dump_myself, fds) == 0);
    test_wait_count(0); /* it has written its dump (a few goroutines: fits in the pipe) */
    close(fds[1]);
    static char buf[1 << 17];
    size_t len = 0;
    ssize_t n;
    while ((n = read(fds[0], buf + len, sizeof buf - 1 - len)) > 0) len += (size_t)n;
    buf[len] = 0;
    CHECK(strncmp(buf, "goroutine ", 10) == 0);
    CHECK(contains(buf, "[running]:\n\tname self-dumper\n"));
    if (symbols) CHECK(in_order(buf, "[running]:\n\tname self-dumper\ndump_myself(", "created by dump_self_with_stack"));
    close(fds[0]);
}

static void test_dump_self(void) {
    dump_self_with_stack(0);     /* the default */
    dump_self_with_stack(16384);
    dump_self_with_stack(2048);  /* a sub-page stack */
}

static void test_sigquit(void) {
    static char out[1 << 17];
    int status = test_run_self("sigquit", NULL, out, sizeof out);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 2);
    CHECK(contains(out, "SIGQUIT: quit"));
    CHECK(contains(out, "[chan receive]:\n\tname quitter\n"));
    if (symbols) {
        CHECK(in_order(out, "leaf_parks(", "mid_calls("));
        CHECK(contains(out, "child_sigquit(")); /* the thread that took the signal */
    }

    char *env[] = {"HOARE_TRACEBACK=crash", NULL};
    status = test_run_self("sigquit", env, out, sizeof out);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    CHECK(contains(out, "name quitter"));
}

int main(int argc, char **argv) {
    if (argc > 1) {
        if (!strcmp(argv[1], "deadlock")) return child_deadlock();
        if (!strcmp(argv[1], "overflow")) return child_overflow();
        if (!strcmp(argv[1], "segv")) return child_segv();
        if (!strcmp(argv[1], "abort")) return child_abort();
        if (!strcmp(argv[1], "sigquit")) return child_sigquit();
        if (!strcmp(argv[1], "fpe")) return child_fpe();
        return 99;
    }
    test_begin(argv, 120);
    test_dump_static_function();
    test_dump_self();
    test_dump_while_churning();
    test_concurrent_dumps();
    if (!getenv("HOARE_TEST_EMULATOR")) test_deadlock_traceback();
    /* qemu-user accepts MADV_GUARD_INSTALL without installing guards: no overflow to catch there */
    if (!getenv("HOARE_TEST_EMULATOR")) test_overflow_traceback();
    test_segv_report();
    test_abort_report();
    if (!TEST_SANITIZED) test_fpe_report(); /* UBSan reports the division by zero itself */
    test_sigquit();
    TEST_MAIN_END();
}
