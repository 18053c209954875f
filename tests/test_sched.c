/*
 * test_sched.c - goroutines and the scheduler: spawn and join at scale, nested spawning, spawning
 * from plain threads, yield, work spreading over processors, ids, hoare_count, errno across switches
 * and migrations, hoare_exit, attributes and bad input.
 */
#include "test.h"

#include <pthread.h>
#include <stdint.h>
#include <sys/syscall.h>

static pid_t gettid_(void) { return (pid_t)syscall(SYS_gettid); }

/* ---- spawn and join 1,000,000 goroutines */

static _Atomic long leaf_sum;

static void leaf(void *arg) {
    atomic_fetch_add_explicit(&leaf_sum, 1, memory_order_relaxed);
    hoare_wg_done(arg);
}

static void test_spawn_million(void) {
    long n = TEST_SCALE(1000000L);
    hoare_wg wg = HOARE_WG_INIT;
    atomic_store(&leaf_sum, 0);
    hoare_wg_add(&wg, (int)n);
    for (long i = 0; i < n; i++) REQUIRE(hoare_go(leaf, &wg) == 0);
    hoare_wg_wait(&wg);
    CHECK_EQ(atomic_load(&leaf_sum), n);
}

/* ---- a tree of 1,111,111 goroutines, every parent waiting for its children: all alive at once */

struct tree_node {
    int depth;
    long sum;
};

struct tree_job {
    struct tree_node *node;
    hoare_wg *wg;
};

static void tree_job(void *arg);

static void tree(struct tree_node *t) {
    if (t->depth == 0) {
        t->sum = 1;
        return;
    }
    struct tree_node kids[10];
    struct tree_job jobs[10];
    hoare_wg wg = HOARE_WG_INIT;
    hoare_wg_add(&wg, 10);
    for (int i = 0; i < 10; i++) {
        kids[i] = (struct tree_node){t->depth - 1, 0};
        jobs[i] = (struct tree_job){&kids[i], &wg};
        REQUIRE(hoare_go(tree_job, &jobs[i]) == 0);
    }
    hoare_wg_wait(&wg);
    t->sum = 1;
    for (int i = 0; i < 10; i++) t->sum += kids[i].sum;
}

static void tree_job(void *arg) {
    struct tree_job *j = arg;
    tree(j->node);
    hoare_wg_done(j->wg);
}

static void test_tree(void) {
    /* depth 6: 1 + 10 + ... + 10^6 = 1,111,111 goroutines */
    int depth = TEST_TSAN ? 3 : TEST_SANITIZED ? 4 : 6;
    long expect = 0, level = 1;
    for (int d = 0; d <= depth; d++, level *= 10) expect += level;
    struct tree_node root = {depth, 0};
    hoare_wg wg = HOARE_WG_INIT;
    struct tree_job job = {&root, &wg};
    hoare_wg_add(&wg, 1);
    REQUIRE(hoare_go(tree_job, &job) == 0);
    hoare_wg_wait(&wg);
    CHECK_EQ(root.sum, expect);
}

/* ---- spawning from several plain threads while goroutines run */

static void *spawner_thread(void *arg) {
    hoare_wg *wg = arg;
    for (int i = 0; i < TEST_SCALE(50000); i++) REQUIRE(hoare_go(leaf, wg) == 0);
    return NULL;
}

static void test_spawn_from_threads(void) {
    enum { THREADS = 4 };
    hoare_wg wg = HOARE_WG_INIT;
    atomic_store(&leaf_sum, 0);
    hoare_wg_add(&wg, THREADS * TEST_SCALE(50000));
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) REQUIRE(pthread_create(&t[i], NULL, spawner_thread, &wg) == 0);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    hoare_wg_wait(&wg);
    CHECK_EQ(atomic_load(&leaf_sum), THREADS * TEST_SCALE(50000));
}

/* ---- yield: with one processor, every yielding goroutine makes progress (round robin) */

enum { YIELDERS = 8 };
static _Atomic long progress[YIELDERS];
static _Atomic int yield_stop;

static void yielder(void *arg) {
    long id = (long)(intptr_t)arg;
    while (!atomic_load(&yield_stop)) {
        atomic_fetch_add(&progress[id], 1);
        hoare_yield();
    }
}

static void yield_watcher(void *arg) {
    /* Runs on the same single processor: it gets to run only because the others yield. Wait until
     * every yielder has advanced at least 1000 steps beyond where it was. */
    hoare_wg *wg = arg;
    long base[YIELDERS];
    for (int i = 0; i < YIELDERS; i++) base[i] = atomic_load(&progress[i]);
    for (;;) {
        int behind = 0;
        for (int i = 0; i < YIELDERS; i++) behind += atomic_load(&progress[i]) - base[i] < 1000;
        if (!behind) break;
        hoare_yield();
    }
    atomic_store(&yield_stop, 1);
    hoare_wg_done(wg);
}

static void test_yield_progress(void) {
    int old = hoare_procs(1);
    hoare_wg wg = HOARE_WG_INIT;
    hoare_wg_add(&wg, 1);
    atomic_store(&yield_stop, 0);
    for (long i = 0; i < YIELDERS; i++) REQUIRE(hoare_go(yielder, (void *)(intptr_t)i) == 0);
    REQUIRE(hoare_go(yield_watcher, &wg) == 0);
    hoare_wg_wait(&wg);
    for (int i = 0; i < YIELDERS; i++) CHECK(atomic_load(&progress[i]) >= 1000);
    hoare_procs(old);
}

/* ---- work spreads: two CPU-bound goroutines from one spawner run at the same time on two threads */

static _Atomic int spread_started;
static _Atomic pid_t spread_tid[2];

static void spread_worker(void *arg) {
    long id = (long)(intptr_t)arg;
    atomic_store(&spread_tid[id], gettid_());
    atomic_fetch_add(&spread_started, 1);
    /* Spin (no yield) until both run: only true parallelism gets past this. */
    int64_t deadline = hoare_now() + 10 * HOARE_SEC;
    while (atomic_load(&spread_started) < 2 && hoare_now() < deadline) {}
}

static void spread_spawner(void *arg) {
    hoare_wg *wg = arg;
    REQUIRE(hoare_go(spread_worker, (void *)0) == 0);
    REQUIRE(hoare_go(spread_worker, (void *)1) == 0);
    hoare_wg_done(wg);
}

static void test_work_spreads(void) {
    if (hoare_procs(0) < 2) hoare_procs(2);
    atomic_store(&spread_started, 0);
    hoare_wg wg = HOARE_WG_INIT;
    hoare_wg_add(&wg, 1);
    REQUIRE(hoare_go(spread_spawner, &wg) == 0);
    hoare_wg_wait(&wg);
    int64_t deadline = hoare_now() + 20 * HOARE_SEC;
    while (atomic_load(&spread_started) < 2 && hoare_now() < deadline) hoare_sleep(HOARE_MS);
    CHECK_EQ(atomic_load(&spread_started), 2);
    CHECK(atomic_load(&spread_tid[0]) != atomic_load(&spread_tid[1]));
}

/* ---- ids are unique and positive; a plain thread has id 0 */

static uint64_t *ids;

static void record_id(void *arg) {
    long i = (long)(intptr_t)((void **)arg)[0];
    ids[i] = hoare_id();
    hoare_wg_done(((void **)arg)[1]);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void test_ids(void) {
    int n = TEST_SCALE(100000);
    ids = calloc((size_t)n, sizeof *ids);
    void **args = calloc((size_t)n * 2, sizeof *args);
    hoare_wg wg = HOARE_WG_INIT;
    hoare_wg_add(&wg, n);
    for (long i = 0; i < n; i++) {
        args[2 * i] = (void *)(intptr_t)i;
        args[2 * i + 1] = &wg;
        REQUIRE(hoare_go(record_id, &args[2 * i]) == 0);
    }
    hoare_wg_wait(&wg);
    qsort(ids, (size_t)n, sizeof *ids, cmp_u64);
    int dups = 0;
    for (int i = 1; i < n; i++) dups += ids[i] == ids[i - 1];
    CHECK(ids[0] > 0);
    CHECK_EQ(dups, 0);
    CHECK_EQ(hoare_id(), 0);
    free(ids);
    free(args);
}

/* ---- hoare_count is exact while goroutines are parked */

static void park_on_gate(void *arg) { hoare_recv(arg, NULL); }

static void test_count(void) {
    CHECK_EQ(test_wait_count(0), 0); /* earlier tests' goroutines are gone */
    size_t base = 0;
    hoare_chan *gate = hoare_chan_make(0, 0);
    int n = TEST_SCALE(10000);
    for (int i = 0; i < n; i++) REQUIRE(hoare_go(park_on_gate, gate) == 0);
    /* every one of them is alive, parked or about to park */
    CHECK_EQ(hoare_count(), base + (size_t)n);
    hoare_close(gate);
    CHECK_EQ(test_wait_count(base), base);
    hoare_chan_release(gate);
}

/* ---- errno is per goroutine: it survives switches and migrations between threads */

static _Atomic int errno_failures, migrations;

/* errno through opaque calls: glibc declares __errno_location const, so the compiler may keep
 * errno's address across hoare_yield; after a migration that address is another thread's errno.
 * The runtime keeps the value per goroutine; code must evaluate errno afresh (see hoare.h). */
#if defined(__clang__)
#define OPAQUE __attribute__((noinline))
#else
#define OPAQUE __attribute__((noinline, noipa))
#endif
static OPAQUE int get_errno(void) { return errno; }
static OPAQUE void set_errno(int e) { errno = e; }

static void errno_keeper(void *arg) {
    int mine = 1000 + (int)(intptr_t)((void **)arg)[0];
    hoare_wg *wg = ((void **)arg)[1];
    pid_t tid = gettid_();
    set_errno(mine);
    int64_t deadline = hoare_now() + 60 * HOARE_SEC;
    int rounds = 0;
    /* keep switching until some goroutine has been seen on two threads (or time runs out) */
    while ((rounds < 200 || atomic_load(&migrations) == 0) && hoare_now() < deadline) {
        hoare_yield();
        if (rounds % 16 == 0) hoare_sleep(1000);
        if (get_errno() != mine) atomic_fetch_add(&errno_failures, 1);
        set_errno(mine);
        pid_t now_tid = gettid_();
        if (now_tid != tid) {
            atomic_fetch_add(&migrations, 1);
            tid = now_tid;
        }
        rounds++;
    }
    hoare_wg_done(wg);
}

static void test_errno(void) {
    if (hoare_procs(0) < 2) hoare_procs(2);
    enum { N = 16 };
    void *args[N][2];
    hoare_wg wg = HOARE_WG_INIT;
    hoare_wg_add(&wg, N);
    for (long i = 0; i < N; i++) {
        args[i][0] = (void *)(intptr_t)i;
        args[i][1] = &wg;
        REQUIRE(hoare_go(errno_keeper, args[i]) == 0);
    }
    /* Two busy processors may each keep their own goroutines for good (under qemu they do: no
     * processor ever goes idle to steal). Shrinking to one processor and growing back moves the
     * retired processor's goroutines to the other thread, so migrations are certain. */
    int64_t deadline = hoare_now() + 60 * HOARE_SEC;
    while (atomic_load(&migrations) == 0 && hoare_now() < deadline) {
        hoare_procs(1);
        hoare_sleep(HOARE_MS);
        hoare_procs(2);
        hoare_sleep(HOARE_MS);
    }
    hoare_wg_wait(&wg);
    CHECK_EQ(atomic_load(&errno_failures), 0);
    CHECK(atomic_load(&migrations) > 0);
}

/* ---- hoare_exit ends the goroutine from any depth */

static _Atomic int after_exit;

static volatile int exit_at_depth = 0;

static void deep_exit(int depth) {
    if (depth == exit_at_depth) hoare_exit();
    if (depth > 0) deep_exit(depth - 1);
    atomic_store(&after_exit, 1);
}

static void exiter(void *arg) {
    hoare_wg_done(arg);
    deep_exit(10);
    atomic_store(&after_exit, 1);
}

static void test_exit(void) {
    hoare_wg wg = HOARE_WG_INIT;
    hoare_wg_add(&wg, 1);
    CHECK_EQ(test_wait_count(0), 0);
    REQUIRE(hoare_go(exiter, &wg) == 0);
    hoare_wg_wait(&wg);
    CHECK_EQ(test_wait_count(0), 0);
    CHECK_EQ(atomic_load(&after_exit), 0);
}

/* ---- attributes: stack size is honoured, a name shows in dumps; bad input */

static void big_frame(void *arg) {
    volatile char buf[400 * 1024];
    buf[0] = 1;
    buf[sizeof buf - 1] = 2;
    hoare_wg_done(arg);
}

static void test_attr_and_errors(void) {
    hoare_wg wg = HOARE_WG_INIT;
    hoare_wg_add(&wg, 1);
    hoare_attr attr = {.stack_size = 1 << 20, .name = "big-stack"};
    REQUIRE(hoare_go_with(&attr, big_frame, &wg) == 0);
    hoare_wg_wait(&wg);
    CHECK_EQ(hoare_go(NULL, NULL), EINVAL);
    CHECK_EQ(hoare_go_with(NULL, NULL, NULL), EINVAL);
}

/* ---- goroutines that each spawn their successor and exit: child first, such a chain never
 * switched out, so every parent waited behind its child (hundreds of thousands alive) and the
 * processor's other goroutines and timers never ran again (the main goroutine here hung) */

static atomic_bool chain_stop;
static atomic_long chain_links;
static hoare_wg chain_wg;

static void chain_link(void *arg) {
    (void)arg;
    atomic_fetch_add(&chain_links, 1);
    if (atomic_load(&chain_stop) || hoare_go(chain_link, NULL) != 0) hoare_wg_done(&chain_wg);
}

static void chain_sleeper(void *arg) {
    hoare_sleep(5 * HOARE_MS);
    hoare_close(arg);
}

static void spawn_chains(int procs) {
    int old = hoare_procs(procs);
    size_t before = hoare_count();
    atomic_store(&chain_stop, false);
    atomic_store(&chain_links, 0);
    hoare_chan *done = hoare_chan_make(0, 0);
    REQUIRE(done != NULL);
    hoare_wg_add(&chain_wg, 2);
    REQUIRE(hoare_go(chain_sleeper, done) == 0);
    REQUIRE(hoare_go(chain_link, NULL) == 0);
    REQUIRE(hoare_go(chain_link, NULL) == 0);
    CHECK_EQ(hoare_recv(done, NULL), EPIPE); /* the sleeper ran, and so do we */
    /* the chains go on meanwhile, with few goroutines alive */
    while (atomic_load(&chain_links) < 10000) hoare_yield();
    size_t alive = hoare_count() - before;
    CHECK(alive < 1000);
    if (alive >= 1000) fprintf(stderr, "spawn chains on %d processors: %zu goroutines alive\n", procs, alive);
    atomic_store(&chain_stop, true);
    hoare_wg_wait(&chain_wg);
    hoare_chan_release(done);
    hoare_procs(old);
}

static void chains_body(void *arg) {
    spawn_chains(1);
    spawn_chains(2);
    hoare_wg_done(arg);
}

static void test_spawn_chains(void) {
    hoare_wg wg = HOARE_WG_INIT;
    hoare_wg_add(&wg, 1);
    REQUIRE(hoare_go(chains_body, &wg) == 0);
    hoare_wg_wait(&wg);
}

int main(int argc, char **argv) {
    (void)argc;
    test_begin(argv, 240);
    test_spawn_million();
    test_tree();
    test_spawn_from_threads();
    test_yield_progress();
    test_work_spreads();
    test_ids();
    test_count();
    test_errno();
    test_exit();
    test_attr_and_errors();
    test_spawn_chains();
    TEST_MAIN_END();
}
