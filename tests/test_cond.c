/*
 * test_cond.c - hoare_cond: ping-pong between a goroutine and a plain thread, broadcast wakes every
 * waiter, signal wakes waiters one at a time in wait order, signal/broadcast without waiters.
 */
#include <pthread.h>

#include "test.h"

/* ---------------------------------------------------------------- ping-pong */

static hoare_mutex pp_mu;
static hoare_cond pp_cv;
static int pp_turn;     /* 0: ping's turn, 1: pong's; guarded by pp_mu */
static int pp_last = 1; /* who played last; guarded by pp_mu */
static int pp_rounds;
static int pp_out_of_turn, pp_plays;
static hoare_wg pp_wg;

static void player(int me) {
    for (int i = 0; i < pp_rounds; i++) {
        hoare_mutex_lock(&pp_mu);
        while (pp_turn != me) hoare_cond_wait(&pp_cv, &pp_mu);
        if (pp_last == me) pp_out_of_turn++;
        pp_last = me;
        pp_plays++;
        pp_turn = !me;
        hoare_cond_signal(&pp_cv);
        hoare_mutex_unlock(&pp_mu);
    }
}

static void ping(void *arg) {
    (void)arg;
    player(0);
    hoare_wg_done(&pp_wg);
}

static void pong(void *arg) {
    (void)arg;
    player(1);
    hoare_wg_done(&pp_wg);
}

static void *pong_thread(void *arg) {
    (void)arg;
    player(1);
    return NULL;
}

static void test_ping_pong(void) {
    pp_rounds = TEST_SCALE(10000);
    /* goroutine against goroutine */
    hoare_wg_add(&pp_wg, 2);
    REQUIRE(hoare_go(ping, NULL) == 0);
    REQUIRE(hoare_go(pong, NULL) == 0);
    hoare_wg_wait(&pp_wg);
    CHECK_EQ(pp_turn, 0);
    /* goroutine against plain thread */
    hoare_wg_add(&pp_wg, 1);
    REQUIRE(hoare_go(ping, NULL) == 0);
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, pong_thread, NULL) == 0);
    hoare_wg_wait(&pp_wg);
    pthread_join(th, NULL);
    CHECK_EQ(pp_turn, 0);
    CHECK_EQ(pp_out_of_turn, 0);
    CHECK_EQ(pp_plays, 4 * pp_rounds);
}

/* ---------------------------------------------------------------- broadcast */

#define BWAITERS 20
static hoare_mutex b_mu;
static hoare_cond b_cv;
static int b_waiting, b_go; /* guarded by b_mu */
static hoare_wg b_wg;

static void b_waiter(void *arg) {
    (void)arg;
    hoare_mutex_lock(&b_mu);
    b_waiting++;
    hoare_cond_broadcast(&b_cv); /* tell the main thread (it waits on the same cond) */
    while (!b_go) hoare_cond_wait(&b_cv, &b_mu);
    hoare_mutex_unlock(&b_mu);
    hoare_wg_done(&b_wg);
}

static void test_broadcast(void) {
    hoare_wg_add(&b_wg, BWAITERS);
    for (int i = 0; i < BWAITERS; i++) REQUIRE(hoare_go(b_waiter, NULL) == 0);
    hoare_mutex_lock(&b_mu);
    while (b_waiting < BWAITERS) hoare_cond_wait(&b_cv, &b_mu);
    b_go = 1;
    hoare_cond_broadcast(&b_cv);
    hoare_mutex_unlock(&b_mu);
    hoare_wg_wait(&b_wg); /* every waiter returned */
    CHECK_EQ(b_waiting, BWAITERS);
}

/* ---------------------------------------------------------------- signal order
 * Waiters queue one after the other (each announces itself under the mutex before the next starts,
 * so their tickets are in start order). Each signal hands one token: the waiter woken takes it and
 * records its id. Signals must wake them in wait order. */

#define SWAITERS 8
static hoare_mutex s_mu;
static hoare_cond s_cv;
static int s_tokens, s_queued; /* guarded by s_mu */
static int s_order[SWAITERS], s_n;
static hoare_wg s_step, s_all;

static void s_waiter(void *arg) {
    int id = (int)(intptr_t)arg;
    hoare_mutex_lock(&s_mu);
    s_queued++;
    hoare_wg_done(&s_step); /* queued: our ticket is taken in cond_wait before mu is let go */
    while (s_tokens == 0) hoare_cond_wait(&s_cv, &s_mu);
    s_tokens--;
    s_order[s_n++] = id;
    hoare_mutex_unlock(&s_mu);
    hoare_wg_done(&s_step);
    hoare_wg_done(&s_all);
}

static void test_signal_order(void) {
    hoare_wg_add(&s_all, SWAITERS);
    for (int i = 0; i < SWAITERS; i++) {
        hoare_wg_add(&s_step, 1);
        REQUIRE(hoare_go(s_waiter, (void *)(intptr_t)i) == 0);
        hoare_wg_wait(&s_step);
        /* it is queued once it released the mutex in cond_wait: taking the mutex waits for that */
        hoare_mutex_lock(&s_mu);
        hoare_mutex_unlock(&s_mu);
    }
    for (int i = 0; i < SWAITERS; i++) {
        hoare_wg_add(&s_step, 1);
        hoare_mutex_lock(&s_mu);
        s_tokens++;
        hoare_cond_signal(&s_cv);
        hoare_mutex_unlock(&s_mu);
        hoare_wg_wait(&s_step); /* that one waiter took the token */
    }
    hoare_wg_wait(&s_all);
    CHECK_EQ(s_n, SWAITERS);
    for (int i = 0; i < SWAITERS; i++) CHECK_EQ(s_order[i], i);
}

static void test_no_waiters(void) {
    hoare_cond cv = HOARE_COND_INIT;
    hoare_cond_signal(&cv);
    hoare_cond_broadcast(&cv);
    CHECK_EQ(cv.wait_ticket, 0);
    CHECK_EQ(cv.notify_ticket, 0);
}

int main(int argc, char **argv) {
    (void)argc;
    test_begin(argv, 120);
    test_no_waiters();
    test_ping_pong();
    test_broadcast();
    test_signal_order();
    TEST_MAIN_END();
}
