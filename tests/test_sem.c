/*
 * test_sem.c - hoare_sem (weighted semaphore): weights and argument errors, FIFO order of waiters,
 * a large waiter holding back later small ones, cancellation and timeout of a waiter (and a
 * cancelled front waiter letting smaller ones through), a stress with goroutines, a plain thread
 * and cancellations, and the fatal error for releasing more than held.
 *
 * "Queued" is observed in goroutine dumps: a waiter parks with reason "semacquire" only after it
 * joined the queue.
 */
#include <pthread.h>

#include "test.h"

static int count_in_dump(const char *needle) {
    int count = 0;
    for (const char *p = test_dump_text(); (p = strstr(p, needle)) != NULL; p += strlen(needle))
        count++;
    return count;
}

static void wait_queued(int n) {
    while (count_in_dump("[semacquire") < n) hoare_sleep(100 * HOARE_US);
}

/* ---------------------------------------------------------------- weights */

static void test_weights(void) {
    hoare_sem s;
    hoare_sem_init(&s, 10);
    CHECK_EQ(hoare_sem_acquire(&s, 3), 0);
    CHECK_EQ(hoare_sem_acquire(&s, 3), 0);
    CHECK_EQ(hoare_sem_tryacquire(&s, 4), 0);
    CHECK_EQ(hoare_sem_tryacquire(&s, 1), EAGAIN);
    CHECK_EQ(hoare_sem_tryacquire(&s, 0), 0);
    hoare_sem_release(&s, 4);
    CHECK_EQ(hoare_sem_tryacquire(&s, 5), EAGAIN);
    CHECK_EQ(hoare_sem_tryacquire(&s, 4), 0);
    hoare_sem_release(&s, 10);
    CHECK_EQ(hoare_sem_acquire(&s, 11), EINVAL); /* could never succeed */
    CHECK_EQ(hoare_sem_acquire(&s, -1), EINVAL);
    CHECK_EQ(hoare_sem_tryacquire(&s, -1), EINVAL);
    CHECK_EQ(hoare_sem_acquire(&s, 10), 0);
    hoare_sem_release(&s, 10);
    hoare_sem zero = {0}; /* size 0 */
    CHECK_EQ(hoare_sem_tryacquire(&zero, 1), EAGAIN);
    CHECK_EQ(hoare_sem_acquire(&zero, 0), 0);
}

/* ---------------------------------------------------------------- FIFO */

#define FIFO_WAITERS 6
static hoare_sem fifo_sem;
static int fifo_order[FIFO_WAITERS], fifo_n;
static hoare_wg fifo_wg;

static void fifo_waiter(void *arg) {
    REQUIRE(hoare_sem_acquire(&fifo_sem, 1) == 0);
    fifo_order[fifo_n++] = (int)(intptr_t)arg; /* under the semaphore (size 1) */
    hoare_sem_release(&fifo_sem, 1);
    hoare_wg_done(&fifo_wg);
}

static void test_fifo(void) {
    hoare_sem_init(&fifo_sem, 1);
    REQUIRE(hoare_sem_acquire(&fifo_sem, 1) == 0);
    hoare_wg_add(&fifo_wg, FIFO_WAITERS);
    for (int i = 0; i < FIFO_WAITERS; i++) {
        REQUIRE(hoare_go(fifo_waiter, (void *)(intptr_t)i) == 0);
        wait_queued(i + 1);
    }
    hoare_sem_release(&fifo_sem, 1);
    hoare_wg_wait(&fifo_wg);
    CHECK_EQ(fifo_n, FIFO_WAITERS);
    for (int i = 0; i < FIFO_WAITERS; i++) CHECK_EQ(fifo_order[i], i);
}

/* ---------------------------------------------------------------- a large waiter holds back small ones */

static hoare_sem big_sem;
static hoare_wg big_wg;
static int big_log[2], big_n, small_got;
static hoare_mutex big_mu;

static void big_log_add(int who) {
    hoare_mutex_lock(&big_mu);
    big_log[big_n++] = who;
    hoare_mutex_unlock(&big_mu);
}

static void large_waiter(void *arg) {
    (void)arg;
    REQUIRE(hoare_sem_acquire(&big_sem, 10) == 0);
    big_log_add(10);
    hoare_sem_release(&big_sem, 10);
    hoare_wg_done(&big_wg);
}

static void small_waiter(void *arg) {
    (void)arg;
    REQUIRE(hoare_sem_acquire(&big_sem, 1) == 0);
    __atomic_store_n(&small_got, 1, __ATOMIC_SEQ_CST);
    big_log_add(1);
    hoare_sem_release(&big_sem, 1);
    hoare_wg_done(&big_wg);
}

static void test_large_holds_back_small(void) {
    hoare_sem_init(&big_sem, 10);
    REQUIRE(hoare_sem_acquire(&big_sem, 5) == 0); /* 5 of 10 free */
    hoare_wg_add(&big_wg, 2);
    REQUIRE(hoare_go(large_waiter, NULL) == 0);
    wait_queued(1);
    CHECK_EQ(hoare_sem_tryacquire(&big_sem, 1), EAGAIN); /* 5 free, but the large one is first */
    REQUIRE(hoare_go(small_waiter, NULL) == 0);
    while (count_in_dump("[semacquire") < 2 && !__atomic_load_n(&small_got, __ATOMIC_SEQ_CST))
        hoare_sleep(100 * HOARE_US);
    CHECK_EQ(__atomic_load_n(&small_got, __ATOMIC_SEQ_CST), 0);
    hoare_sem_release(&big_sem, 5);
    hoare_wg_wait(&big_wg);
    CHECK_EQ(big_n, 2);
    CHECK_EQ(big_log[0], 10);
    CHECK_EQ(big_log[1], 1);
    CHECK_EQ(hoare_sem_tryacquire(&big_sem, 10), 0); /* everything given back */
}

/* ---------------------------------------------------------------- cancellation */

static hoare_sem cancel_sem;
static hoare_wg cancel_wg;
static int large_err = -1, small_err = -1;

static void cancel_large(void *ctx) {
    large_err = hoare_sem_acquire_ctx(&cancel_sem, ctx, 10);
    hoare_wg_done(&cancel_wg);
}

static void cancel_small(void *arg) {
    (void)arg;
    small_err = hoare_sem_acquire_ctx(&cancel_sem, NULL, 3);
    hoare_wg_done(&cancel_wg);
}

static void test_cancel_front_waiter(void) {
    hoare_sem_init(&cancel_sem, 10);
    REQUIRE(hoare_sem_acquire(&cancel_sem, 5) == 0);
    hoare_ctx *ctx = hoare_ctx_with_cancel(NULL);
    REQUIRE(ctx != NULL);
    hoare_wg_add(&cancel_wg, 1);
    REQUIRE(hoare_go(cancel_large, ctx) == 0);
    wait_queued(1);
    hoare_wg_add(&cancel_wg, 1);
    REQUIRE(hoare_go(cancel_small, NULL) == 0);
    wait_queued(2);
    hoare_ctx_cancel(ctx); /* the large waiter leaves; the small one now fits */
    hoare_wg_wait(&cancel_wg);
    CHECK_EQ(large_err, ECANCELED);
    CHECK_EQ(small_err, 0);
    hoare_sem_release(&cancel_sem, 3);
    hoare_sem_release(&cancel_sem, 5);
    CHECK_EQ(hoare_sem_tryacquire(&cancel_sem, 10), 0); /* nothing leaked by the cancelled one */
    hoare_sem_release(&cancel_sem, 10);
    /* a cancelled context fails at once, even when the weight is free */
    CHECK_EQ(hoare_sem_acquire_ctx(&cancel_sem, ctx, 1), ECANCELED);
    CHECK_EQ(hoare_sem_tryacquire(&cancel_sem, 10), 0);
    hoare_sem_release(&cancel_sem, 10);
    hoare_ctx_release(ctx);
}

static void test_timeout(void) {
    hoare_sem s;
    hoare_sem_init(&s, 2);
    REQUIRE(hoare_sem_acquire(&s, 2) == 0);
    int64_t t0 = hoare_now();
    hoare_ctx *ctx = hoare_ctx_with_timeout(NULL, 30 * HOARE_MS);
    REQUIRE(ctx != NULL);
    CHECK_EQ(hoare_sem_acquire_ctx(&s, ctx, 1), ETIMEDOUT); /* a plain thread waiting */
    int64_t took = hoare_now() - t0;
    CHECK(took >= 30 * HOARE_MS);
    CHECK(took < 5 * HOARE_SEC);
    hoare_ctx_release(ctx);
    hoare_sem_release(&s, 2);
    CHECK_EQ(hoare_sem_tryacquire(&s, 2), 0);
}

/* ---------------------------------------------------------------- stress */

#define STRESS_SIZE 7
static hoare_sem stress_sem;
static int stress_in_use, stress_over;
static hoare_wg stress_wg;
static int stress_rounds;

static void stress_loop(int seed) {
    unsigned r = (unsigned)seed * 2654435761u + 1;
    for (int i = 0; i < stress_rounds; i++) {
        r = r * 1103515245u + 12345u;
        int64_t n = 1 + (r >> 16) % 4;
        int err;
        hoare_ctx *ctx = NULL;
        if (i % 5 == 0) ctx = hoare_ctx_with_timeout(NULL, (int64_t)((r >> 8) % 50) * HOARE_US);
        err = hoare_sem_acquire_ctx(&stress_sem, ctx, n);
        if (err == 0) {
            if (__atomic_add_fetch(&stress_in_use, (int)n, __ATOMIC_SEQ_CST) > STRESS_SIZE)
                __atomic_add_fetch(&stress_over, 1, __ATOMIC_SEQ_CST);
            if (i % 3 == 0) hoare_yield();
            __atomic_sub_fetch(&stress_in_use, (int)n, __ATOMIC_SEQ_CST);
            hoare_sem_release(&stress_sem, n);
        } else if (err != ETIMEDOUT) {
            __atomic_add_fetch(&stress_over, 1, __ATOMIC_SEQ_CST);
        }
        hoare_ctx_release(ctx);
    }
}

static void stress_goroutine(void *arg) {
    stress_loop((int)(intptr_t)arg);
    hoare_wg_done(&stress_wg);
}

static void *stress_thread(void *arg) {
    stress_loop((int)(intptr_t)arg);
    return NULL;
}

static void test_stress(void) {
    stress_rounds = TEST_SCALE(5000);
    hoare_sem_init(&stress_sem, STRESS_SIZE);
    hoare_wg_add(&stress_wg, 8);
    for (int i = 0; i < 8; i++) REQUIRE(hoare_go(stress_goroutine, (void *)(intptr_t)i) == 0);
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, stress_thread, (void *)(intptr_t)99) == 0);
    hoare_wg_wait(&stress_wg);
    pthread_join(th, NULL);
    CHECK_EQ(stress_over, 0);
    CHECK_EQ(hoare_sem_tryacquire(&stress_sem, STRESS_SIZE), 0);
}

/* ---------------------------------------------------------------- fatal errors */

static void child_scenario(const char *name) {
    hoare_sem s;
    hoare_sem_init(&s, 4);
    if (strcmp(name, "release-more") == 0) {
        REQUIRE(hoare_sem_acquire(&s, 2) == 0);
        hoare_sem_release(&s, 3);
    }
    exit(0);
}

int main(int argc, char **argv) {
    if (argc > 1) child_scenario(argv[1]);
    test_begin(argv, 120);
    test_weights();
    test_fifo();
    test_large_holds_back_small();
    test_cancel_front_waiter();
    test_timeout();
    test_stress();
    char out[8192];
    int status = test_run_self("release-more", NULL, out, sizeof out);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 2);
    CHECK(strstr(out, "fatal error: semaphore: released more than held") != NULL);
    TEST_MAIN_END();
}
