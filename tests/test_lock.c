/*
 * test_lock.c - the runtime's own lock (lock.c): mutual exclusion under contention that reaches
 * the futex sleep, and the bound on a lost wake-up. Its unlock is a load and a store, not a
 * read-modify-write, so a sleeper's mark can be erased by an unlock that read the state just
 * before the sleeper set it; such a sleeper must still get the lock once its bounded sleep ends.
 */
#include "runtime.h"
#include "test.h"

#include <pthread.h>
#include <time.h>

static hoare_lock lock;
static long counter;          /* guarded by lock, plain on purpose */
static long holders;          /* guarded by lock: must be 1 inside */
static _Atomic bool in_trouble;

enum { THREADS = 4 };

static void sleep_us(long us) {
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* Each thread takes the lock ITERS times; every 64th time it holds it for 100 us (longer than a
 * contender's whole spin), so that the others go to sleep in the kernel. */
static void *contender(void *arg) {
    long iters = (long)(intptr_t)arg;
    for (long i = 0; i < iters; i++) {
        hoare__lock(&lock);
        if (++holders != 1) atomic_store(&in_trouble, true);
        counter++;
        if (i % 64 == 0) sleep_us(100);
        holders--;
        hoare__unlock(&lock);
    }
    return NULL;
}

static void test_mutual_exclusion_with_sleepers(void) {
    long iters = TEST_SCALE(20000);
    uint64_t futex_before = atomic_load(&hoare__futex_calls);
    pthread_t t[THREADS];
    /* held while they start, until one of them has spun out and marked it for a sleeper: the
     * sleep path runs at least once however the threads happen to overlap later */
    hoare__lock(&lock);
    for (int i = 0; i < THREADS; i++)
        REQUIRE(pthread_create(&t[i], NULL, contender, (void *)(intptr_t)iters) == 0);
    int64_t deadline = hoare__nanotime() + 10 * HOARE_SEC;
    while (atomic_load(&lock.state) != 2 && hoare__nanotime() < deadline) sleep_us(100);
    CHECK_EQ(atomic_load(&lock.state), 2);
    hoare__unlock(&lock);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    CHECK_EQ(counter, THREADS * iters);
    CHECK(!atomic_load(&in_trouble));
    CHECK_EQ(atomic_load(&lock.state), 0);
    /* the marked unlock woke a sleeper */
    CHECK(atomic_load(&hoare__futex_calls) > futex_before);
}

/* The lost wake-up, made on purpose: the holder erases the sleeper's mark (2 -> 1) the way an
 * unlock that loaded the state just before the sleeper's exchange would, then unlocks without a
 * wake. The sleeper must still take the lock, after at most one bounded sleep. */
static _Atomic bool sleeper_has_lock;
static void *sleeper(void *arg) {
    (void)arg;
    hoare__lock(&lock);
    atomic_store(&sleeper_has_lock, true);
    hoare__unlock(&lock);
    return NULL;
}

static void test_lost_wakeup_is_bounded(void) {
    hoare__lock(&lock);
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, sleeper, NULL) == 0);
    /* the sleeper marks the lock once its spin is over, then sleeps in the kernel */
    int64_t deadline = hoare__nanotime() + 10 * HOARE_SEC;
    while (atomic_load(&lock.state) != 2 && hoare__nanotime() < deadline) sleep_us(100);
    CHECK_EQ(atomic_load(&lock.state), 2);
    sleep_us(20000);
    atomic_store(&lock.state, 1); /* the erased mark */
    int64_t released = hoare__nanotime();
    hoare__unlock(&lock);         /* sees 1: a plain store, no wake-up */
    while (!atomic_load(&sleeper_has_lock) && hoare__nanotime() < released + 5 * HOARE_SEC)
        sleep_us(100);
    int64_t waited = hoare__nanotime() - released;
    CHECK(atomic_load(&sleeper_has_lock));
    /* one sleep of at most 1 ms, with room for a loaded machine or an emulator */
    CHECK(waited < 2 * HOARE_SEC);
    if (waited >= 2 * HOARE_SEC) fprintf(stderr, "the sleeper waited %lld ns\n", (long long)waited);
    pthread_join(t, NULL);
}

int main(int argc, char **argv) {
    (void)argc;
    test_begin(argv, 60);
    test_mutual_exclusion_with_sleepers();
    test_lost_wakeup_is_bounded();
    TEST_MAIN_END();
}
