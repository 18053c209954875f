/*
 * test_wg.c - hoare_wg: 10,000 goroutines, several waiters (goroutines and a plain thread),
 * wait on zero, reuse over rounds, and the fatal error for a negative counter.
 */
#include <pthread.h>

#include "test.h"

/* ---------------------------------------------------------------- many goroutines */

static hoare_wg many_wg;
static long many_count;

static void many_worker(void *arg) {
    (void)arg;
    __atomic_add_fetch(&many_count, 1, __ATOMIC_RELAXED);
    hoare_wg_done(&many_wg);
}

static void test_many(void) {
    int n = TEST_TSAN ? 1000 : 10000;
    hoare_wg_add(&many_wg, n);
    for (int i = 0; i < n; i++) REQUIRE(hoare_go(many_worker, NULL) == 0);
    hoare_wg_wait(&many_wg);
    CHECK_EQ(__atomic_load_n(&many_count, __ATOMIC_RELAXED), n);
}

/* ---------------------------------------------------------------- several waiters
 * Waiters (goroutines and a plain thread) wait on `gate`, which a goroutine opens only after every
 * waiter announced itself; each waiter must return after the gate opened. */

#define WAITERS 6
static hoare_wg gate, announced, waiters_done;
static int gate_open, woke_early, woke;

static void gate_waiter(void *arg) {
    (void)arg;
    hoare_wg_done(&announced);
    hoare_wg_wait(&gate);
    if (!__atomic_load_n(&gate_open, __ATOMIC_SEQ_CST))
        __atomic_add_fetch(&woke_early, 1, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&woke, 1, __ATOMIC_SEQ_CST);
    hoare_wg_done(&waiters_done);
}

static void *gate_waiter_thread(void *arg) {
    gate_waiter(arg);
    return NULL;
}

static void gate_opener(void *arg) {
    (void)arg;
    hoare_wg_wait(&announced);
    __atomic_store_n(&gate_open, 1, __ATOMIC_SEQ_CST);
    hoare_wg_done(&gate);
}

static void test_several_waiters(void) {
    hoare_wg_add(&gate, 1);
    hoare_wg_add(&announced, WAITERS + 1);
    hoare_wg_add(&waiters_done, WAITERS + 1);
    for (int i = 0; i < WAITERS; i++) REQUIRE(hoare_go(gate_waiter, NULL) == 0);
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, gate_waiter_thread, NULL) == 0);
    REQUIRE(hoare_go(gate_opener, NULL) == 0);
    hoare_wg_wait(&waiters_done);
    pthread_join(th, NULL);
    CHECK_EQ(woke, WAITERS + 1);
    CHECK_EQ(woke_early, 0);
    CHECK_EQ(gate.state, 0);
}

/* ---------------------------------------------------------------- zero, reuse, thread done */

static void test_wait_zero(void) {
    hoare_wg wg = HOARE_WG_INIT;
    hoare_wg_wait(&wg); /* returns at once */
    hoare_wg_add(&wg, 3);
    hoare_wg_add(&wg, -3);
    hoare_wg_wait(&wg);
    CHECK_EQ(wg.state, 0);
}

static hoare_wg reuse_wg;
static int reuse_sum;

static void reuse_worker(void *arg) {
    __atomic_add_fetch(&reuse_sum, (int)(intptr_t)arg, __ATOMIC_RELAXED);
    hoare_wg_done(&reuse_wg);
}

static void *done_from_thread(void *arg) {
    __atomic_add_fetch(&reuse_sum, (int)(intptr_t)arg, __ATOMIC_RELAXED);
    hoare_wg_done(&reuse_wg);
    return NULL;
}

static void test_reuse(void) {
    int expect = 0;
    for (int round = 1; round <= 20; round++) {
        hoare_wg_add(&reuse_wg, 5);
        for (int i = 0; i < 4; i++) REQUIRE(hoare_go(reuse_worker, (void *)(intptr_t)round) == 0);
        pthread_t th;
        REQUIRE(pthread_create(&th, NULL, done_from_thread, (void *)(intptr_t)round) == 0);
        hoare_wg_wait(&reuse_wg);
        expect += 5 * round;
        CHECK_EQ(__atomic_load_n(&reuse_sum, __ATOMIC_RELAXED), expect);
        pthread_join(th, NULL);
    }
}

/* ---------------------------------------------------------------- fatal errors */

static void child_scenario(const char *name) {
    hoare_wg wg = HOARE_WG_INIT;
    if (strcmp(name, "negative") == 0) {
        hoare_wg_done(&wg);
    } else if (strcmp(name, "negative-after-add") == 0) {
        hoare_wg_add(&wg, 2);
        hoare_wg_add(&wg, -3);
    }
    exit(0);
}

int main(int argc, char **argv) {
    if (argc > 1) child_scenario(argv[1]);
    test_begin(argv, 120);
    test_wait_zero();
    test_many();
    test_several_waiters();
    test_reuse();
    test_expect_fatal("negative", "fatal error: sync: negative WaitGroup counter");
    test_expect_fatal("negative-after-add", "fatal error: sync: negative WaitGroup counter");
    TEST_MAIN_END();
}
