/*
 * test_scale.c - many goroutines: a start and park costs at most one page fault; 1,000,000 parked
 * small-stack goroutines stay within 2,400 B each (child process); a small-stack overflow is
 * reported by name, whether it runs into the group's guard or only breaks the canary; an idle
 * processor commits slots ahead of a program that keeps adding goroutines; small-stack
 * goroutines with parked neighbours keep their data under deep-but-legal calls; a close with 100k
 * waiters and a broadcast wake every waiter exactly once, and a batch of sleepers all wake.
 */
#include "chan_test_util.h"
#include "stack.h"

#include <stdint.h>
#include <sys/resource.h>

enum { SMALL = 2048 };

static long minor_faults(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt;
}

static long rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, rss = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &rss) != 2) rss = 0;
        fclose(f);
    }
    return rss * sysconf(_SC_PAGESIZE);
}

/* ---- goroutines parked on a gate channel until it is closed */

static hoare_chan *gate;
static hoare_wg started, finished;

static void park_on_gate(void *arg) {
    (void)arg;
    hoare_wg_done(&started);
    if (hoare_recv(gate, NULL) != EPIPE) abort();
    hoare_wg_done(&finished);
}

/* Start n goroutines (stack_size ss) that park on a fresh gate; return when all are parked. */
static void start_parked(long n, size_t ss) {
    gate = hoare_chan_make(0, 0);
    REQUIRE(gate != NULL);
    hoare_wg_add(&started, (int)n);
    hoare_wg_add(&finished, (int)n);
    hoare_attr a = {.stack_size = ss};
    for (long i = 0; i < n; i++) REQUIRE(hoare_go_with(&a, park_on_gate, NULL) == 0);
    hoare_wg_wait(&started);
}

static void release_parked(void) {
    CHECK_EQ(hoare_close(gate), 0);
    hoare_wg_wait(&finished);
    hoare_chan_release(gate);
}

/* ---- one page fault per start and park */

static void test_one_fault_per_goroutine(void) {
    long n = 20000;
    start_parked(1000, 0); /* warm up: the runtime's own first-use costs */
    release_parked();
    long f0 = minor_faults();
    start_parked(n, 0); /* fresh slots: one page each (descriptor and stack top share it) */
    long f1 = minor_faults();
    release_parked();
    long f2 = minor_faults();
    start_parked(n, 0); /* reused slots: no fault at all */
    long f3 = minor_faults();
    release_parked();
    double fresh = (double)(f1 - f0) / (double)n, reused = (double)(f3 - f2) / (double)n;
    CHECK(fresh <= 1.1);
    CHECK(reused <= 0.1);
    if (fresh > 1.1 || reused > 0.1) fprintf(stderr, "faults per goroutine: fresh %.3f, reused %.3f\n", fresh, reused);
}

/* ---- an idle processor commits slots ahead of a growing program (stack.c, "Warming") */

static void test_idle_processor_warms_slots(void) {
    int old = hoare_procs(2);
    uint64_t w0 = atomic_load(&hoare__stack_warmed);
    /* more than the earlier tests left free, so that fresh slots are needed; spawned and run on
     * this thread's processor while the other one idles */
    long n = TEST_SCALE(50000L);
    start_parked(n, 0);
    /* once wanted, warming happens as soon as the idle processor's thread looks for work */
    for (int64_t end = hoare_now() + 10 * HOARE_SEC;
         atomic_load(&hoare__stack_warmed) == w0 && hoare_now() < end;)
        hoare_sleep(HOARE_MS);
    uint64_t warmed = atomic_load(&hoare__stack_warmed) - w0;
    release_parked();
    hoare_procs(old);
    CHECK(warmed > 0);
    CHECK(warmed <= (uint64_t)n);
}

/* ---- 1,000,000 parked small-stack goroutines (child) */

static int child_million(void) {
    long n = 1000000;
    start_parked(1000, SMALL); /* the runtime's own first-use costs */
    release_parked();
    long rss0 = rss_bytes();
    start_parked(n, SMALL);
    long rss1 = rss_bytes();
    fprintf(stderr, "PER_G=%ld\n", (rss1 - rss0) / n);
    release_parked();
    return 0;
}

static void test_million_small(void) {
    char out[4096];
    int status = test_run_self("million", NULL, out, sizeof out);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    const char *at = strstr(out, "PER_G=");
    long per_g = at ? strtol(at + 6, NULL, 10) : -1;
    CHECK(per_g > 0);
    CHECK(per_g <= 2400);
    if (per_g <= 0 || per_g > 2400) fprintf(stderr, "child said: %s\n", out);
}

/* ---- small-stack overflow */

static volatile int runaway_limit = 1 << 30;

static int runaway(int depth) {
    volatile char frame[256]; /* all of it written: an overflow that skips no bytes */
    for (size_t i = 0; i < sizeof frame; i++) frame[i] = (char)depth;
    if (depth >= runaway_limit) return 0;
    return runaway(depth + 1) + frame[0];
}

static void overflow_forever(void *arg) {
    (void)arg;
    runaway_limit = 1 << 30;
    if (runaway(0) == 42) abort();
}

/* A bounded overflow: about 1.5 KiB below a 1 KiB stack, then back and park. */
static void overflow_then_park(void *arg) {
    (void)arg;
    runaway_limit = 10;
    if (runaway(0) == 4242) abort();
    hoare_sleep(HOARE_MS); /* the switch finds the broken canary */
}

static int child_overflow(void (*fn)(void *), size_t ss) {
    /* neighbours below: the overflowing slot is not the lowest of its group. They must be parked
     * for good before it runs: an overflow tramples on whatever lies below it (documented). */
    start_parked(20, ss);
    wait_queued(gate, HOARE_CASE_RECV, 20);
    hoare_attr a = {.stack_size = ss, .name = "tiny"};
    hoare_go_with(&a, fn, NULL);
    hoare_sleep(10 * HOARE_SEC); /* the overflow ends the process long before */
    return 0;
}

static void check_overflow_report(const char *scenario) {
    char out[8192];
    int status = test_run_self(scenario, NULL, out, sizeof out);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 2);
    CHECK(strstr(out, "fatal error: stack overflow in goroutine") != NULL);
    CHECK(strstr(out, "(tiny)") != NULL);
    if (!strstr(out, "(tiny)")) fprintf(stderr, "%s: child said: %s\n", scenario, out);
}

/* ---- neighbours keep their data */

enum { PATTERN_WORDS = 32 };

static hoare_chan *nb_gate;
static _Atomic long nb_bad, nb_deep_done;

static void keeper(void *arg) {
    uint64_t mine[PATTERN_WORDS]; /* on the small stack */
    uint64_t seed = (uint64_t)(uintptr_t)arg * 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < PATTERN_WORDS; i++) mine[i] = seed + (uint64_t)i;
    __asm__ __volatile__("" : : "r"(mine) : "memory");
    hoare_wg_done(&started);
    if (hoare_recv(nb_gate, NULL) != EPIPE) abort();
    __asm__ __volatile__("" : : "r"(mine) : "memory");
    for (int i = 0; i < PATTERN_WORDS; i++)
        if (mine[i] != seed + (uint64_t)i) atomic_fetch_add(&nb_bad, 1);
    hoare_wg_done(&finished);
}

/* About 60 bytes of frame per level: depth 12 is ~800 bytes, legal on a 2 KiB stack. */
static NOIPA uint64_t deep(int depth, uint64_t x) {
    volatile uint64_t frame[4] = {x, x + 1, x + 2, (uint64_t)depth};
    if (depth == 0) {
        hoare_yield();
        return frame[0] + frame[3];
    }
    uint64_t r = deep(depth - 1, x + 3);
    return r + frame[1] - frame[2] + 1;
}

static void diver(void *arg) {
    (void)arg;
    for (int round = 0; round < 200; round++) {
        uint64_t x = (uint64_t)round * 1000;
        /* deep(d, x) = deep(d - 1, x + 3) = ... = x + 3d */
        if (deep(12, x) != x + 3 * 12) atomic_fetch_add(&nb_bad, 1);
    }
    atomic_fetch_add(&nb_deep_done, 1);
    hoare_wg_done(&finished);
}

/* Fewer under valgrind (the "small-stacks" run, see main). */
static bool light;

static void test_neighbours_intact(void) {
    long pairs = light ? 100 : TEST_SCALE(2000L);
    nb_gate = hoare_chan_make(0, 0);
    REQUIRE(nb_gate != NULL);
    hoare_attr a = {.stack_size = SMALL};
    hoare_wg_add(&started, (int)pairs);
    hoare_wg_add(&finished, (int)(2 * pairs));
    /* interleaved: every diver's slot sits next to keepers' slots */
    for (long i = 0; i < pairs; i++) {
        REQUIRE(hoare_go_with(&a, keeper, (void *)(uintptr_t)(i + 1)) == 0);
        REQUIRE(hoare_go_with(&a, diver, NULL) == 0);
    }
    hoare_wg_wait(&started);
    while (atomic_load(&nb_deep_done) < pairs) hoare_sleep(HOARE_MS);
    CHECK_EQ(hoare_close(nb_gate), 0);
    hoare_wg_wait(&finished);
    CHECK_EQ(atomic_load(&nb_bad), 0);
    hoare_chan_release(nb_gate);
}

/* ---- small-stack goroutines that spawn small-stack goroutines: slabs mapped, threads started and
 * run-queue overflows handled while a small stack is current (all that runs on the scheduler's
 * stack or needs little) */

static _Atomic long tree_leaves;

static void tree_node(void *arg) {
    int depth = (int)(intptr_t)arg;
    if (depth == 0) {
        atomic_fetch_add(&tree_leaves, 1);
    } else {
        hoare_attr a = {.stack_size = SMALL};
        for (int i = 0; i < 10; i++) {
            hoare_wg_add(&finished, 1);
            if (hoare_go_with(&a, tree_node, (void *)(intptr_t)(depth - 1)) != 0) abort();
        }
    }
    hoare_wg_done(&finished);
}

static void test_small_tree(void) {
    int depth = TEST_TSAN || light ? 2 : TEST_SANITIZED ? 3 : 5;
    long leaves = 1;
    for (int i = 0; i < depth; i++) leaves *= 10;
    hoare_procs(2); /* threads may have to be started from small stacks */
    hoare_attr a = {.stack_size = SMALL};
    hoare_wg_add(&finished, 1);
    REQUIRE(hoare_go_with(&a, tree_node, (void *)(intptr_t)depth) == 0);
    hoare_wg_wait(&finished);
    CHECK_EQ(atomic_load(&tree_leaves), leaves);
}

/* ---- bulk wake-ups: close, broadcast, sleepers */

static _Atomic uint8_t *woken;
static hoare_chan *close_gate;

static void close_waiter(void *arg) {
    if (hoare_recv(close_gate, NULL) == EPIPE) atomic_fetch_add(&woken[(uintptr_t)arg], 1);
    hoare_wg_done(&finished);
}

static void test_close_wakes_all_once(void) {
    long n = TEST_SCALE(100000L);
    woken = calloc((size_t)n, 1);
    REQUIRE(woken != NULL);
    close_gate = hoare_chan_make(0, 0);
    REQUIRE(close_gate != NULL);
    hoare_wg_add(&finished, (int)n);
    for (long i = 0; i < n; i++) REQUIRE(hoare_go(close_waiter, (void *)(uintptr_t)i) == 0);
    wait_queued(close_gate, HOARE_CASE_RECV, (size_t)n); /* all of them wait on the channel */
    CHECK_EQ(hoare_close(close_gate), 0);
    hoare_wg_wait(&finished);
    long once = 0;
    for (long i = 0; i < n; i++) once += woken[i] == 1;
    CHECK_EQ(once, n);
    free((void *)woken);
    hoare_chan_release(close_gate);
}

static hoare_mutex bc_mu;
static hoare_cond bc_cv;
static int bc_go, bc_waiting;

static void cond_waiter(void *arg) {
    hoare_mutex_lock(&bc_mu);
    bc_waiting++;
    while (!bc_go) hoare_cond_wait(&bc_cv, &bc_mu);
    hoare_mutex_unlock(&bc_mu);
    atomic_fetch_add(&woken[(uintptr_t)arg], 1);
    hoare_wg_done(&finished);
}

static void test_broadcast_wakes_all_once(void) {
    long n = TEST_SCALE(20000L);
    woken = calloc((size_t)n, 1);
    REQUIRE(woken != NULL);
    hoare_wg_add(&finished, (int)n);
    for (long i = 0; i < n; i++) REQUIRE(hoare_go(cond_waiter, (void *)(uintptr_t)i) == 0);
    for (;;) {
        hoare_mutex_lock(&bc_mu);
        int w = bc_waiting;
        if (w == n) bc_go = 1;
        hoare_mutex_unlock(&bc_mu);
        if (w == n) break;
        hoare_sleep(HOARE_MS);
    }
    hoare_cond_broadcast(&bc_cv);
    hoare_wg_wait(&finished);
    long once = 0;
    for (long i = 0; i < n; i++) once += woken[i] == 1;
    CHECK_EQ(once, n);
    free((void *)woken);
}

static _Atomic long slept;

static void sleeper(void *arg) {
    int64_t t0 = hoare_now();
    hoare_sleep(20 * HOARE_MS);
    if (hoare_now() - t0 >= 20 * HOARE_MS) atomic_fetch_add(&slept, 1);
    (void)arg;
    hoare_wg_done(&finished);
}

static void test_sleepers_batch(void) {
    long n = TEST_SCALE(50000L);
    hoare_wg_add(&finished, (int)n);
    for (long i = 0; i < n; i++) REQUIRE(hoare_go(sleeper, NULL) == 0);
    hoare_wg_wait(&finished);
    CHECK_EQ(atomic_load(&slept), n);
}

/* ---- the monitor gives back the pages of slots left free */

static void deep_then_exit(void *arg) {
    volatile char big[32 * 1024]; /* touch 8 more pages of stack */
    for (size_t i = 0; i < sizeof big; i += 512) big[i] = 1;
    hoare_recv(arg, NULL); /* all alive at once: n slots of their own */
    hoare_wg_done(&finished);
}

static void test_scavenger(void) {
    long n = 2000;
    hoare_chan *release = hoare_chan_make(0, 0);
    hoare_wg_add(&finished, (int)n);
    for (long i = 0; i < n; i++) REQUIRE(hoare_go(deep_then_exit, release) == 0);
    hoare_close(release);
    hoare_wg_wait(&finished);
    hoare_chan_release(release);
    test_wait_count(0);
    long rss0 = rss_bytes();
    /* two scavenger rounds: the slots go cold, then their stacks are released */
    int64_t deadline = hoare_now() + 20 * HOARE_SEC;
    long rss = rss0;
    while (hoare_now() < deadline && rss0 - rss < n * 4 * 4096L) {
        hoare_sleep(50 * HOARE_MS);
        rss = rss_bytes();
    }
    CHECK(rss0 - rss >= n * 4 * 4096L);
    if (rss0 - rss < n * 4 * 4096L) fprintf(stderr, "scavenger gave back %ld bytes\n", rss0 - rss);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "million") == 0) return child_million();
    if (argc > 1 && strcmp(argv[1], "overflow-guard") == 0) return child_overflow(overflow_forever, SMALL);
    if (argc > 1 && strcmp(argv[1], "overflow-canary") == 0) return child_overflow(overflow_then_park, 1024);
    if (argc > 1 && strcmp(argv[1], "small-stacks") == 0) {
        /* valgrind's run (tests/CMakeLists.txt): neighbouring small stacks switching */
        light = true;
        test_begin(argv, 600);
        test_neighbours_intact();
        test_small_tree();
        TEST_MAIN_END();
    }
    test_begin(argv, 240);
    /* sanitizers add shadow memory and their own faults: the counts mean nothing there */
    if (!TEST_SANITIZED) {
        test_one_fault_per_goroutine();
        test_million_small();
        test_scavenger();
    }
    /* qemu-user does not deliver a guard page's fault to the program's handler; ASan checks the
     * overflowing frames' accesses itself */
    if (!getenv("HOARE_TEST_EMULATOR") && !TEST_SANITIZED) {
        check_overflow_report("overflow-guard");
        check_overflow_report("overflow-canary");
    }
    test_idle_processor_warms_slots();
    test_neighbours_intact();
    test_small_tree();
    test_close_wakes_all_once();
    test_broadcast_wakes_all_once();
    test_sleepers_batch();
    TEST_MAIN_END();
}
