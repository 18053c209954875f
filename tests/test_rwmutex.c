/*
 * test_rwmutex.c - hoare_rwmutex: readers overlap (proved by a rendezvous inside the read lock),
 * a writer excludes readers and writers (stress with invariant checks), a waiting writer holds
 * back new readers, try variants, and the fatal errors.
 */
#include <pthread.h>

#include "test.h"

/* ---------------------------------------------------------------- readers overlap
 * Each reader takes the read lock, then waits at a rendezvous for the other: this only completes
 * if both hold the read lock at once (otherwise: deadlock, caught by the runtime or the watchdog). */

static hoare_rwmutex overlap_rw;
static hoare_wg overlap_rendezvous, overlap_done;
static int overlap_holders, overlap_max;

static void overlap_reader(void *arg) {
    (void)arg;
    hoare_rwmutex_rlock(&overlap_rw);
    int now = __atomic_add_fetch(&overlap_holders, 1, __ATOMIC_SEQ_CST);
    hoare_wg_done(&overlap_rendezvous);
    hoare_wg_wait(&overlap_rendezvous); /* the other reader holds it too */
    /* an atomic maximum: a load-then-store could put back 1 over the other reader's 2 */
    int seen = __atomic_load_n(&overlap_max, __ATOMIC_SEQ_CST);
    while (now > seen && !__atomic_compare_exchange_n(&overlap_max, &seen, now, 0,
                                                      __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {}
    __atomic_sub_fetch(&overlap_holders, 1, __ATOMIC_SEQ_CST);
    hoare_rwmutex_runlock(&overlap_rw);
    hoare_wg_done(&overlap_done);
}

static void *overlap_reader_thread(void *arg) {
    overlap_reader(arg);
    return NULL;
}

static void test_readers_overlap(void) {
    hoare_wg_add(&overlap_rendezvous, 2);
    hoare_wg_add(&overlap_done, 2);
    REQUIRE(hoare_go(overlap_reader, NULL) == 0);
    pthread_t th; /* one reader on a plain thread */
    REQUIRE(pthread_create(&th, NULL, overlap_reader_thread, NULL) == 0);
    hoare_wg_wait(&overlap_done);
    pthread_join(th, NULL);
    CHECK_EQ(__atomic_load_n(&overlap_max, __ATOMIC_SEQ_CST), 2);
    CHECK_EQ(hoare_rwmutex_trylock(&overlap_rw), 0); /* all released */
    hoare_rwmutex_unlock(&overlap_rw);
}

/* ---------------------------------------------------------------- exclusion stress */

static hoare_rwmutex stress_rw;
static int readers_in, writers_in, violations;
static long shared_value; /* written by writers only, under the write lock */
static hoare_wg stress_wg;
static int stress_rounds;

static void violation(void) { __atomic_add_fetch(&violations, 1, __ATOMIC_SEQ_CST); }

static void stress_writer(void *arg) {
    (void)arg;
    for (int i = 0; i < stress_rounds; i++) {
        hoare_rwmutex_lock(&stress_rw);
        if (__atomic_add_fetch(&writers_in, 1, __ATOMIC_SEQ_CST) != 1) violation();
        if (__atomic_load_n(&readers_in, __ATOMIC_SEQ_CST) != 0) violation();
        shared_value++;
        if (i % 16 == 0) hoare_yield();
        __atomic_sub_fetch(&writers_in, 1, __ATOMIC_SEQ_CST);
        hoare_rwmutex_unlock(&stress_rw);
    }
    hoare_wg_done(&stress_wg);
}

static void stress_reader(void *arg) {
    (void)arg;
    for (int i = 0; i < stress_rounds * 4; i++) {
        hoare_rwmutex_rlock(&stress_rw);
        __atomic_add_fetch(&readers_in, 1, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&writers_in, __ATOMIC_SEQ_CST) != 0) violation();
        long v1 = shared_value;
        if (i % 16 == 0) hoare_yield();
        if (shared_value != v1) violation();
        __atomic_sub_fetch(&readers_in, 1, __ATOMIC_SEQ_CST);
        hoare_rwmutex_runlock(&stress_rw);
    }
    hoare_wg_done(&stress_wg);
}

static void *stress_writer_thread(void *arg) {
    stress_writer(arg);
    return NULL;
}

static void test_exclusion(void) {
    stress_rounds = TEST_SCALE(2000);
    enum { WRITERS = 3, READERS = 6 };
    hoare_wg_add(&stress_wg, WRITERS + 1 + READERS);
    for (int i = 0; i < WRITERS; i++) REQUIRE(hoare_go(stress_writer, NULL) == 0);
    for (int i = 0; i < READERS; i++) REQUIRE(hoare_go(stress_reader, NULL) == 0);
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, stress_writer_thread, NULL) == 0);
    hoare_wg_wait(&stress_wg);
    pthread_join(th, NULL);
    CHECK_EQ(violations, 0);
    CHECK_EQ(shared_value, (long)stress_rounds * (WRITERS + 1));
}

/* ---------------------------------------------------------------- try variants */

static void test_try(void) {
    hoare_rwmutex rw = HOARE_RWMUTEX_INIT;
    CHECK_EQ(hoare_rwmutex_tryrlock(&rw), 0);
    CHECK_EQ(hoare_rwmutex_tryrlock(&rw), 0);   /* readers share */
    CHECK_EQ(hoare_rwmutex_trylock(&rw), EBUSY); /* readers exclude a writer */
    hoare_rwmutex_runlock(&rw);
    hoare_rwmutex_runlock(&rw);
    CHECK_EQ(hoare_rwmutex_trylock(&rw), 0);
    CHECK_EQ(hoare_rwmutex_tryrlock(&rw), EBUSY);
    CHECK_EQ(hoare_rwmutex_trylock(&rw), EBUSY);
    hoare_rwmutex_unlock(&rw);
    hoare_rwmutex_lock(&rw);
    CHECK_EQ(hoare_rwmutex_tryrlock(&rw), EBUSY);
    hoare_rwmutex_unlock(&rw);
    hoare_rwmutex_rlock(&rw);
    CHECK_EQ(hoare_rwmutex_trylock(&rw), EBUSY);
    hoare_rwmutex_runlock(&rw);
    CHECK_EQ(hoare_rwmutex_trylock(&rw), 0);
    hoare_rwmutex_unlock(&rw);
}

/* ---------------------------------------------------------------- a waiting writer holds back readers
 * The main thread holds a read lock; a writer goroutine waits for it; then a reader arrives. The
 * reader must get in only after the writer: order must be writer, reader. */

static hoare_rwmutex order_rw;
static hoare_wg order_wg;
static int order_log[2], order_n;
static hoare_mutex order_mu;

static void log_order(int who) {
    hoare_mutex_lock(&order_mu);
    order_log[order_n++] = who;
    hoare_mutex_unlock(&order_mu);
}

static void order_writer(void *arg) {
    (void)arg;
    hoare_rwmutex_lock(&order_rw);
    log_order(1);
    hoare_rwmutex_unlock(&order_rw);
    hoare_wg_done(&order_wg);
}

static void order_reader(void *arg) {
    (void)arg;
    hoare_rwmutex_rlock(&order_rw);
    log_order(2);
    hoare_rwmutex_runlock(&order_rw);
    hoare_wg_done(&order_wg);
}

static void test_writer_holds_back_readers(void) {
    hoare_rwmutex_rlock(&order_rw);
    hoare_wg_add(&order_wg, 2);
    REQUIRE(hoare_go(order_writer, NULL) == 0);
    /* The writer is pending once new readers are turned away. */
    while (hoare_rwmutex_tryrlock(&order_rw) == 0) {
        hoare_rwmutex_runlock(&order_rw);
        hoare_yield();
    }
    REQUIRE(hoare_go(order_reader, NULL) == 0);
    hoare_rwmutex_runlock(&order_rw); /* lets the writer in, then the reader */
    hoare_wg_wait(&order_wg);
    CHECK_EQ(order_n, 2);
    CHECK_EQ(order_log[0], 1);
    CHECK_EQ(order_log[1], 2);
}

/* ---------------------------------------------------------------- fatal errors */

static void child_scenario(const char *name) {
    hoare_rwmutex rw = HOARE_RWMUTEX_INIT;
    if (strcmp(name, "runlock-unlocked") == 0) {
        hoare_rwmutex_runlock(&rw);
    } else if (strcmp(name, "unlock-unlocked") == 0) {
        hoare_rwmutex_unlock(&rw);
    } else if (strcmp(name, "runlock-write-locked") == 0) {
        hoare_rwmutex_lock(&rw);
        hoare_rwmutex_runlock(&rw);
    }
    exit(0);
}

int main(int argc, char **argv) {
    if (argc > 1) child_scenario(argv[1]);
    test_begin(argv, 120);
    test_try();
    test_readers_overlap();
    test_exclusion();
    test_writer_holds_back_readers();
    test_expect_fatal("runlock-unlocked", "fatal error: sync: RUnlock of unlocked RWMutex");
    test_expect_fatal("runlock-write-locked", "fatal error: sync: RUnlock of unlocked RWMutex");
    test_expect_fatal("unlock-unlocked", "fatal error: sync: Unlock of unlocked RWMutex");
    TEST_MAIN_END();
}
