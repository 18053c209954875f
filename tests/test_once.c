/*
 * test_once.c - hoare_once: 64 concurrent callers (goroutines and plain threads) released together;
 * fn runs exactly once, with its argument, and no caller returns before it finished. Then later
 * calls do nothing, and separate onces are independent.
 */
#include <pthread.h>

#include "test.h"

#define CALLERS 64
#define THREAD_CALLERS 4

static hoare_once once;
static int runs, finished, early_returns, wrong_arg;
static hoare_wg start_gate, callers_done;
static int marker;

static void init_fn(void *arg) {
    if (arg != &marker) wrong_arg = 1;
    __atomic_add_fetch(&runs, 1, __ATOMIC_SEQ_CST);
    for (int i = 0; i < 50; i++) hoare_yield(); /* let the other callers pile up meanwhile */
    __atomic_store_n(&finished, 1, __ATOMIC_SEQ_CST);
}

static void caller(void *arg) {
    (void)arg;
    hoare_wg_wait(&start_gate);
    hoare_once_do(&once, init_fn, &marker);
    if (!__atomic_load_n(&finished, __ATOMIC_SEQ_CST))
        __atomic_add_fetch(&early_returns, 1, __ATOMIC_SEQ_CST);
    hoare_wg_done(&callers_done);
}

static void *caller_thread(void *arg) {
    caller(arg);
    return NULL;
}

static void test_concurrent_callers(void) {
    hoare_wg_add(&start_gate, 1);
    hoare_wg_add(&callers_done, CALLERS);
    pthread_t th[THREAD_CALLERS];
    for (int i = 0; i < THREAD_CALLERS; i++)
        REQUIRE(pthread_create(&th[i], NULL, caller_thread, NULL) == 0);
    for (int i = THREAD_CALLERS; i < CALLERS; i++) REQUIRE(hoare_go(caller, NULL) == 0);
    hoare_wg_done(&start_gate); /* release everybody at once */
    hoare_wg_wait(&callers_done);
    for (int i = 0; i < THREAD_CALLERS; i++) pthread_join(th[i], NULL);
    CHECK_EQ(runs, 1);
    CHECK_EQ(early_returns, 0);
    CHECK_EQ(wrong_arg, 0);
    hoare_once_do(&once, init_fn, &marker); /* already done: nothing happens */
    CHECK_EQ(runs, 1);
}

static void count_fn(void *arg) { ++*(int *)arg; }

static void test_independent(void) {
    hoare_once a = HOARE_ONCE_INIT, b = HOARE_ONCE_INIT;
    int na = 0, nb = 0;
    hoare_once_do(&a, count_fn, &na);
    hoare_once_do(&a, count_fn, &na);
    hoare_once_do(&b, count_fn, &nb);
    CHECK_EQ(na, 1);
    CHECK_EQ(nb, 1);
}

int main(int argc, char **argv) {
    (void)argc;
    test_begin(argv, 60);
    test_concurrent_callers();
    test_independent();
    TEST_MAIN_END();
}
