/*
 * test_mutex.c - hoare_mutex: exactness under goroutines and plain threads mixed, trylock,
 * goroutines (not threads) park, bounded waiting under hammering (starvation mode), and the fatal
 * error for unlocking an unlocked mutex.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "test.h"

/* ---------------------------------------------------------------- exactness */

#define GOROUTINES 8
#define THREADS 2

static hoare_mutex counter_mu;
static long counter;       /* guarded by counter_mu, deliberately not atomic */
static int inside;         /* holders at once, must stay 0/1 */
static int overlaps;
static hoare_wg workers_wg;
static int iterations;

static void count_loop(void) {
    for (int i = 0; i < iterations; i++) {
        hoare_mutex_lock(&counter_mu);
        if (__atomic_fetch_add(&inside, 1, __ATOMIC_RELAXED) != 0)
            __atomic_fetch_add(&overlaps, 1, __ATOMIC_RELAXED);
        counter++;
        if (i % 64 == 0) hoare_yield(); /* sometimes hold it across a reschedule */
        __atomic_fetch_sub(&inside, 1, __ATOMIC_RELAXED);
        hoare_mutex_unlock(&counter_mu);
    }
}

static void count_goroutine(void *arg) {
    (void)arg;
    count_loop();
    hoare_wg_done(&workers_wg);
}

static void *count_thread(void *arg) {
    (void)arg;
    count_loop();
    return NULL;
}

static void test_exact_mixed(void) {
    iterations = TEST_SCALE(20000);
    hoare_wg_add(&workers_wg, GOROUTINES);
    for (int i = 0; i < GOROUTINES; i++) REQUIRE(hoare_go(count_goroutine, NULL) == 0);
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) REQUIRE(pthread_create(&th[i], NULL, count_thread, NULL) == 0);
    for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
    hoare_wg_wait(&workers_wg);
    hoare_mutex_lock(&counter_mu);
    CHECK_EQ(counter, (long)iterations * (GOROUTINES + THREADS));
    hoare_mutex_unlock(&counter_mu);
    CHECK_EQ(overlaps, 0);
    CHECK_EQ(counter_mu.state, 0); /* no waiter or flag left behind */
}

/* ---------------------------------------------------------------- trylock */

static void test_trylock(void) {
    hoare_mutex mu = HOARE_MUTEX_INIT;
    CHECK_EQ(hoare_mutex_trylock(&mu), 0);
    CHECK_EQ(hoare_mutex_trylock(&mu), EBUSY);
    hoare_mutex_unlock(&mu);
    CHECK_EQ(hoare_mutex_trylock(&mu), 0);
    hoare_mutex_unlock(&mu);
    hoare_mutex_lock(&mu);
    CHECK_EQ(hoare_mutex_trylock(&mu), EBUSY);
    hoare_mutex_unlock(&mu);
}

/* ---------------------------------------------------------------- parks the goroutine only
 * With one processor, a goroutine blocked in lock must leave the processor to others: if it blocked
 * the thread, `other` could never run and the test would hang (watchdog). */

static hoare_mutex park_mu;
static hoare_wg park_locker_wg, park_other_wg;
static int park_locker_got;

static void park_locker(void *arg) {
    (void)arg;
    hoare_mutex_lock(&park_mu);
    park_locker_got = 1;
    hoare_mutex_unlock(&park_mu);
    hoare_wg_done(&park_locker_wg);
}

static void park_other(void *arg) {
    (void)arg;
    hoare_wg_done(&park_other_wg);
}

static void test_parks_goroutine(void) {
    int old = hoare_procs(1);
    hoare_mutex_lock(&park_mu); /* held by the main thread */
    hoare_wg_add(&park_locker_wg, 1);
    hoare_wg_add(&park_other_wg, 1);
    REQUIRE(hoare_go(park_locker, NULL) == 0);
    REQUIRE(hoare_go(park_other, NULL) == 0);
    hoare_wg_wait(&park_other_wg);
    CHECK_EQ(park_locker_got, 0);
    hoare_mutex_unlock(&park_mu);
    hoare_wg_wait(&park_locker_wg);
    CHECK_EQ(park_locker_got, 1);
    hoare_procs(old);
}

/* ---------------------------------------------------------------- starvation bound
 * On one processor, hammering goroutines take the mutex back to back and sometimes yield while
 * holding it (as a preempted holder would). A victim goroutine measures how long each of its lock
 * calls waits. In normal mode the victim is woken by each unlock but only runs when a hammer yields
 * - while holding the mutex - so it would lose every time, until the hammers give up (after
 * 2 x bound). Starvation mode hands the mutex to the victim once it waited more than 1 ms. */

#define HAMMERS 2
static hoare_mutex hammer_mu;
static int hammer_stop;
static hoare_wg hammer_wg;
static int64_t hammer_give_up; /* hammers stop by then even if the victim never got through */
static int64_t victim_max_wait;
static long hammer_rounds; /* guarded by hammer_mu */

static void hammer(void *arg) {
    (void)arg;
    for (long i = 0; !__atomic_load_n(&hammer_stop, __ATOMIC_ACQUIRE); i++) {
        hoare_mutex_lock(&hammer_mu);
        int64_t now = hoare_now(), until = now + 20 * HOARE_US; /* hold it a little */
        while (hoare_now() < until) {}
        hammer_rounds++;
        if (i % 16 == 0) hoare_yield();
        hoare_mutex_unlock(&hammer_mu);
        if (now > hammer_give_up) break;
    }
    hoare_wg_done(&hammer_wg);
}

static void victim(void *arg) {
    (void)arg;
    for (int i = 0; i < 20; i++) {
        int64_t t0 = hoare_now();
        hoare_mutex_lock(&hammer_mu);
        int64_t waited = hoare_now() - t0;
        if (waited > victim_max_wait) victim_max_wait = waited;
        hoare_mutex_unlock(&hammer_mu);
        hoare_yield();
    }
    __atomic_store_n(&hammer_stop, 1, __ATOMIC_RELEASE);
    hoare_wg_done(&hammer_wg);
}

static void test_starvation_bound(void) {
    /* Generous: the machine is shared and noisy; a starved victim waits until the hammers give up. */
    int64_t bound = (TEST_SANITIZED ? 2000 : 1000) * HOARE_MS;
    int old = hoare_procs(1);
    hammer_give_up = hoare_now() + 2 * bound;
    hoare_wg_add(&hammer_wg, HAMMERS + 1);
    for (int i = 0; i < HAMMERS; i++) REQUIRE(hoare_go(hammer, NULL) == 0);
    REQUIRE(hoare_go(victim, NULL) == 0);
    hoare_wg_wait(&hammer_wg);
    hoare_procs(old);
    printf("starvation: victim max wait %.3f ms, hammer rounds %ld\n", victim_max_wait / 1e6,
           hammer_rounds);
    CHECK(victim_max_wait < bound);
    CHECK(hammer_rounds > 0);
}

/* ---------------------------------------------------------------- hand-off stress
 * Many waiters on a mutex whose holder keeps it a while: waiters exceed the 1 ms threshold, the
 * mutex goes into starvation mode and back; the count must still be exact. */

static hoare_mutex handoff_mu;
static long handoff_count;
static hoare_wg handoff_wg;

static void handoff_worker(void *arg) {
    int n = (int)(intptr_t)arg;
    for (int i = 0; i < n; i++) {
        hoare_mutex_lock(&handoff_mu);
        handoff_count++;
        if (i % 8 == 0) { /* hold it long enough for waiters to pass the 1 ms threshold */
            int64_t until = hoare_now() + 200 * HOARE_US;
            while (hoare_now() < until) {}
        }
        hoare_mutex_unlock(&handoff_mu);
    }
    hoare_wg_done(&handoff_wg);
}

static void test_handoff(void) {
    int per = TEST_SCALE(200) < 16 ? 16 : TEST_SCALE(200);
    hoare_wg_add(&handoff_wg, 16);
    for (int i = 0; i < 16; i++) REQUIRE(hoare_go(handoff_worker, (void *)(intptr_t)per) == 0);
    hoare_wg_wait(&handoff_wg);
    CHECK_EQ(handoff_count, 16L * per);
    CHECK_EQ(handoff_mu.state, 0);
}

/* ---------------------------------------------------------------- wait reason in dumps */

static hoare_mutex dump_mu;
static hoare_wg dump_wg;

static void dump_waiter(void *arg) {
    (void)arg;
    hoare_mutex_lock(&dump_mu);
    hoare_mutex_unlock(&dump_mu);
    hoare_wg_done(&dump_wg);
}

static void test_dump_reason(void) {
    hoare_mutex_lock(&dump_mu);
    hoare_wg_add(&dump_wg, 1);
    REQUIRE(hoare_go(dump_waiter, NULL) == 0);
    /* The waiter counts itself in the mutex before it has parked: dump until it shows as parked
     * (bounded). */
    CHECK(test_dump_until("sync.Mutex.Lock", 20) != NULL);
    hoare_mutex_unlock(&dump_mu);
    hoare_wg_wait(&dump_wg);
}

/* ---------------------------------------------------------------- fatal errors */

static void child_scenario(const char *name) {
    if (strcmp(name, "unlock-unlocked") == 0) {
        hoare_mutex mu = HOARE_MUTEX_INIT;
        hoare_mutex_unlock(&mu);
    } else if (strcmp(name, "double-unlock") == 0) {
        hoare_mutex mu = HOARE_MUTEX_INIT;
        hoare_mutex_lock(&mu);
        hoare_mutex_unlock(&mu);
        hoare_mutex_unlock(&mu);
    }
    exit(0); /* the fatal error did not happen */
}

int main(int argc, char **argv) {
    if (argc > 1) child_scenario(argv[1]);
    test_begin(argv, 120);
    test_trylock();
    test_exact_mixed();
    test_parks_goroutine();
    test_starvation_bound();
    test_handoff();
    test_dump_reason();
    test_expect_fatal("unlock-unlocked", "fatal error: sync: unlock of unlocked mutex");
    test_expect_fatal("double-unlock", "fatal error: sync: unlock of unlocked mutex");
    TEST_MAIN_END();
}
