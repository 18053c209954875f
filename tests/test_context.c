/*
 * test_context.c - contexts: background, cancel propagation down a tree (done channels close, err
 * values, siblings and parents untouched), children of cancelled parents, deadlines (min of
 * parent's and own), timeouts firing with ETIMEDOUT, release cancelling, waiting on done from
 * goroutines and select, and a stress of concurrent creation, cancellation and release.
 */
#include <pthread.h>
#include <stdbool.h>

#include "test.h"

static bool is_closed(hoare_chan *done) { return hoare_tryrecv(done, NULL) == EPIPE; }

static void test_background(void) {
    hoare_ctx *bg = hoare_ctx_background();
    REQUIRE(bg != NULL);
    CHECK_EQ(hoare_ctx_err(bg), 0);
    CHECK(hoare_ctx_done(bg) == NULL);
    CHECK_EQ(hoare_ctx_deadline(bg), INT64_MAX);
    hoare_ctx_cancel(bg); /* no effect */
    hoare_ctx_release(bg);
    CHECK_EQ(hoare_ctx_err(bg), 0);
    CHECK(hoare_ctx_retain(bg) == bg);
    CHECK_EQ(hoare_ctx_err(NULL), 0);
    CHECK(hoare_ctx_done(NULL) == NULL);
}

static void test_propagation(void) {
    hoare_ctx *root = hoare_ctx_with_cancel(NULL);
    hoare_ctx *child = hoare_ctx_with_cancel(root);
    hoare_ctx *sibling = hoare_ctx_with_cancel(root);
    hoare_ctx *grand = hoare_ctx_with_cancel(child);
    hoare_ctx *grand_timeout = hoare_ctx_with_timeout(child, 3600 * HOARE_SEC);
    hoare_ctx *great = hoare_ctx_with_cancel(grand);
    hoare_ctx *all[] = {root, child, sibling, grand, grand_timeout, great};
    for (size_t i = 0; i < 6; i++) {
        REQUIRE(all[i] != NULL);
        CHECK_EQ(hoare_ctx_err(all[i]), 0);
        CHECK(hoare_ctx_done(all[i]) != NULL);
        CHECK_EQ(hoare_tryrecv(hoare_ctx_done(all[i]), NULL), EAGAIN);
    }
    /* cancelling a middle node cancels its subtree only */
    hoare_ctx_cancel(grand);
    CHECK_EQ(hoare_ctx_err(grand), ECANCELED);
    CHECK_EQ(hoare_ctx_err(great), ECANCELED);
    CHECK(is_closed(hoare_ctx_done(great)));
    CHECK_EQ(hoare_ctx_err(child), 0);
    CHECK_EQ(hoare_ctx_err(grand_timeout), 0);
    CHECK_EQ(hoare_ctx_err(root), 0);
    /* cancelling the root reaches every descendant */
    hoare_ctx_cancel(root);
    for (size_t i = 0; i < 6; i++) {
        CHECK_EQ(hoare_ctx_err(all[i]), ECANCELED);
        CHECK(is_closed(hoare_ctx_done(all[i])));
    }
    hoare_ctx_cancel(root); /* again: no effect */
    CHECK_EQ(hoare_ctx_err(root), ECANCELED);
    /* a child of a cancelled context is born cancelled */
    hoare_ctx *late = hoare_ctx_with_cancel(child);
    REQUIRE(late != NULL);
    CHECK_EQ(hoare_ctx_err(late), ECANCELED);
    CHECK(is_closed(hoare_ctx_done(late)));
    hoare_ctx_release(late);
    /* release in any order: children before or after parents */
    hoare_ctx_release(root);
    for (size_t i = 1; i < 6; i++) hoare_ctx_release(all[i]);
}

static void test_release_cancels(void) {
    hoare_ctx *parent = hoare_ctx_with_cancel(NULL);
    hoare_ctx *child = hoare_ctx_with_cancel(parent);
    hoare_ctx *extra = hoare_ctx_retain(parent);
    CHECK(extra == parent);
    hoare_ctx_release(parent); /* one reference left: still alive, not cancelled */
    CHECK_EQ(hoare_ctx_err(parent), 0);
    CHECK_EQ(hoare_ctx_err(child), 0);
    hoare_ctx_release(extra); /* the last one: cancels and frees the parent */
    CHECK_EQ(hoare_ctx_err(child), ECANCELED);
    CHECK(is_closed(hoare_ctx_done(child)));
    hoare_ctx_release(child);
    /* releasing a child detaches it: the parent goes on */
    parent = hoare_ctx_with_cancel(NULL);
    child = hoare_ctx_with_cancel(parent);
    hoare_ctx_release(child);
    CHECK_EQ(hoare_ctx_err(parent), 0);
    hoare_ctx_release(parent);
}

/* ---------------------------------------------------------------- deadlines and timeouts */

static void test_deadlines(void) {
    int64_t now = hoare_now();
    hoare_ctx *outer = hoare_ctx_with_deadline(NULL, now + 3600 * HOARE_SEC);
    CHECK_EQ(hoare_ctx_deadline(outer), now + 3600 * HOARE_SEC);
    hoare_ctx *later = hoare_ctx_with_deadline(outer, now + 7200 * HOARE_SEC);
    CHECK_EQ(hoare_ctx_deadline(later), now + 3600 * HOARE_SEC); /* the parent's is earlier */
    hoare_ctx *sooner = hoare_ctx_with_deadline(outer, now + 1800 * HOARE_SEC);
    CHECK_EQ(hoare_ctx_deadline(sooner), now + 1800 * HOARE_SEC);
    hoare_ctx *plain = hoare_ctx_with_cancel(outer);
    CHECK_EQ(hoare_ctx_deadline(plain), now + 3600 * HOARE_SEC);
    hoare_ctx *none = hoare_ctx_with_cancel(NULL);
    CHECK_EQ(hoare_ctx_deadline(none), INT64_MAX);
    hoare_ctx_release(none);
    hoare_ctx *past = hoare_ctx_with_deadline(outer, now - 1);
    CHECK_EQ(hoare_ctx_err(past), ETIMEDOUT);
    CHECK(is_closed(hoare_ctx_done(past)));
    CHECK_EQ(hoare_ctx_err(outer), 0);
    hoare_ctx *huge = hoare_ctx_with_timeout(NULL, INT64_MAX); /* no overflow: no deadline */
    CHECK_EQ(hoare_ctx_deadline(huge), INT64_MAX);
    CHECK_EQ(hoare_ctx_err(huge), 0);
    hoare_ctx_release(huge);
    hoare_ctx_release(past);
    hoare_ctx_release(plain);
    hoare_ctx_release(sooner);
    hoare_ctx_release(later);
    hoare_ctx_release(outer);
}

static hoare_wg timeout_wg;
static int64_t timeout_woke_at;
static int timeout_recv;

static void timeout_waiter(void *ctx) {
    timeout_recv = hoare_recv(hoare_ctx_done(ctx), NULL);
    timeout_woke_at = hoare_now();
    hoare_wg_done(&timeout_wg);
}

static void test_timeout(void) {
    int64_t t0 = hoare_now();
    hoare_ctx *ctx = hoare_ctx_with_timeout(NULL, 50 * HOARE_MS);
    hoare_ctx *child = hoare_ctx_with_cancel(ctx);
    hoare_ctx *grand = hoare_ctx_with_timeout(child, 3600 * HOARE_SEC);
    REQUIRE(ctx && child && grand);
    CHECK_EQ(hoare_ctx_deadline(grand), hoare_ctx_deadline(ctx));
    hoare_wg_add(&timeout_wg, 1);
    REQUIRE(hoare_go(timeout_waiter, grand) == 0);
    CHECK_EQ(hoare_recv(hoare_ctx_done(ctx), NULL), EPIPE); /* a plain thread waits too */
    int64_t took = hoare_now() - t0;
    hoare_wg_wait(&timeout_wg);
    CHECK(took >= 50 * HOARE_MS);
    CHECK(took < 5 * HOARE_SEC);
    CHECK_EQ(timeout_recv, EPIPE);
    CHECK(timeout_woke_at - t0 >= 50 * HOARE_MS);
    CHECK_EQ(hoare_ctx_err(ctx), ETIMEDOUT);
    CHECK_EQ(hoare_ctx_err(child), ETIMEDOUT); /* the parent's error */
    CHECK_EQ(hoare_ctx_err(grand), ETIMEDOUT);
    hoare_ctx_cancel(ctx); /* too late: keeps ETIMEDOUT */
    CHECK_EQ(hoare_ctx_err(ctx), ETIMEDOUT);
    hoare_ctx_release(grand);
    hoare_ctx_release(child);
    hoare_ctx_release(ctx);
}

static void test_cancel_before_deadline(void) {
    /* a deadline far enough that the cancel comes first even under valgrind */
    hoare_ctx *ctx = hoare_ctx_with_timeout(NULL, 500 * HOARE_MS);
    hoare_ctx_cancel(ctx);
    CHECK_EQ(hoare_ctx_err(ctx), ECANCELED);
    hoare_sleep(600 * HOARE_MS); /* the deadline passes: the error stays */
    CHECK_EQ(hoare_ctx_err(ctx), ECANCELED);
    hoare_ctx_release(ctx);
}

/* ---------------------------------------------------------------- select on done */

static hoare_wg select_wg;
static int select_index = -1;

static void select_worker(void *ctx) {
    hoare_chan *never = hoare_chan_make(sizeof(int), 0);
    int v;
    hoare_case cs[] = {HOARE_RECV(never, &v), HOARE_RECV(hoare_ctx_done(ctx), NULL)};
    select_index = hoare_select(cs, 2);
    hoare_chan_release(never);
    hoare_wg_done(&select_wg);
}

static void test_select_done(void) {
    hoare_ctx *ctx = hoare_ctx_with_cancel(NULL);
    hoare_wg_add(&select_wg, 1);
    REQUIRE(hoare_go(select_worker, ctx) == 0);
    hoare_ctx_cancel(ctx);
    hoare_wg_wait(&select_wg);
    CHECK_EQ(select_index, 1);
    hoare_ctx_release(ctx);
}

/* ---------------------------------------------------------------- stress
 * Goroutines and a thread create children and grandchildren of a shared parent (some with short
 * timeouts), wait on some, cancel and release them in varying order, while the parent gets
 * cancelled in the middle. Checks: every context ends cancelled with a valid error; no crash or
 * race (ASan/TSan builds). */

static hoare_ctx *stress_parent;
static hoare_wg stress_wg, stress_started;
static int stress_bad;
static int stress_rounds;

static void stress_loop(int seed) {
    for (int i = 0; i < stress_rounds; i++) {
        int mode = (seed + i) % 4;
        hoare_ctx *c = mode == 0 ? hoare_ctx_with_timeout(stress_parent, (i % 7) * 10 * HOARE_US)
                                 : hoare_ctx_with_cancel(stress_parent);
        hoare_ctx *g = hoare_ctx_with_timeout(c, (i % 5) * 20 * HOARE_US);
        if (!c || !g) {
            __atomic_add_fetch(&stress_bad, 1, __ATOMIC_RELAXED);
            continue;
        }
        if (mode == 1) hoare_recv(hoare_ctx_done(g), NULL); /* its timeout closes it */
        if (mode == 2) hoare_ctx_cancel(c);
        if (mode == 3) {
            hoare_ctx_release(c); /* parent first: cancels g */
            if (hoare_ctx_err(g) == 0) __atomic_add_fetch(&stress_bad, 1, __ATOMIC_RELAXED);
            hoare_ctx_release(g);
            continue;
        }
        hoare_ctx_cancel(g);
        int e = hoare_ctx_err(g);
        if (e != ECANCELED && e != ETIMEDOUT) __atomic_add_fetch(&stress_bad, 1, __ATOMIC_RELAXED);
        hoare_ctx_release(g);
        hoare_ctx_release(c);
    }
}

static void stress_goroutine(void *arg) {
    hoare_wg_done(&stress_started);
    stress_loop((int)(intptr_t)arg);
    hoare_wg_done(&stress_wg);
}

static void *stress_thread(void *arg) {
    stress_loop((int)(intptr_t)arg);
    return NULL;
}

static void test_stress(void) {
    stress_rounds = TEST_SCALE(3000);
    stress_parent = hoare_ctx_with_timeout(NULL, 3600 * HOARE_SEC);
    hoare_wg_add(&stress_wg, 6);
    hoare_wg_add(&stress_started, 6);
    for (int i = 0; i < 6; i++) REQUIRE(hoare_go(stress_goroutine, (void *)(intptr_t)i) == 0);
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, stress_thread, (void *)(intptr_t)7) == 0);
    hoare_wg_wait(&stress_started);
    hoare_yield();
    hoare_ctx_cancel(stress_parent); /* in the middle of it all */
    hoare_wg_wait(&stress_wg);
    pthread_join(th, NULL);
    CHECK_EQ(stress_bad, 0);
    CHECK_EQ(hoare_ctx_err(stress_parent), ECANCELED);
    hoare_ctx_release(stress_parent);
}

/* ---- a deep chain: cancelled from a goroutine's default stack and by a deadline (the timer's
 * callback runs on a scheduler stack); the cancellation once recursed per level and overflowed
 * both (2,500 levels from a goroutine) */

enum { DEEP = 100000 };
static hoare_ctx *deep[DEEP];

static void build_chain(hoare_ctx *root) {
    deep[0] = root;
    for (int i = 1; i < DEEP; i++) REQUIRE((deep[i] = hoare_ctx_with_cancel(deep[i - 1])) != NULL);
}

static void release_chain(void) {
    for (int i = DEEP - 1; i >= 0; i--) hoare_ctx_release(deep[i]);
}

static void cancel_deep(void *arg) {
    build_chain(hoare_ctx_with_cancel(NULL));
    hoare_ctx_cancel(deep[0]);
    CHECK_EQ(hoare_ctx_err(deep[DEEP - 1]), ECANCELED);
    CHECK_EQ(hoare_recv(hoare_ctx_done(deep[DEEP - 1]), NULL), EPIPE);
    release_chain();
    hoare_wg_done(arg);
}

static void test_deep_chain(void) {
    hoare_wg wg = HOARE_WG_INIT;
    hoare_wg_add(&wg, 1);
    REQUIRE(hoare_go(cancel_deep, &wg) == 0);
    hoare_wg_wait(&wg);

    /* the deadline must pass after the chain is built, for the timer to walk all of it */
    build_chain(hoare_ctx_with_timeout(NULL, (TEST_SANITIZED ? 3000 : 500) * HOARE_MS));
    if (hoare_ctx_err(deep[0]) != 0) fprintf(stderr, "deep chain: the deadline passed while it was built\n");
    CHECK_EQ(hoare_recv(hoare_ctx_done(deep[DEEP - 1]), NULL), EPIPE);
    CHECK_EQ(hoare_ctx_err(deep[DEEP - 1]), ETIMEDOUT);
    CHECK_EQ(hoare_ctx_err(deep[DEEP / 2]), ETIMEDOUT);
    release_chain();
}

int main(int argc, char **argv) {
    (void)argc;
    test_begin(argv, 120);
    test_background();
    test_propagation();
    test_release_cancels();
    test_deadlines();
    test_timeout();
    test_cancel_before_deadline();
    test_select_done();
    test_stress();
    test_deep_chain();
    TEST_MAIN_END();
}
