/*
 * test_group.c - goroutine groups (errgroup): all succeed; the first error cancels the siblings'
 * context and is what wait returns; a parent's cancellation reaches the group; set_limit bounds
 * the active goroutines; free without wait; changing the limit while active is fatal.
 */
#include <stdbool.h>

#include "test.h"

/* ---------------------------------------------------------------- all succeed */

static int ran;

static int succeed(hoare_ctx *ctx, void *arg) {
    (void)ctx;
    __atomic_add_fetch(&ran, (int)(intptr_t)arg, __ATOMIC_SEQ_CST);
    return 0;
}

static void test_all_succeed(void) {
    hoare_group *g = hoare_group_new(NULL);
    REQUIRE(g != NULL);
    for (int i = 1; i <= 10; i++) CHECK_EQ(hoare_group_go(g, succeed, (void *)(intptr_t)i), 0);
    CHECK_EQ(hoare_group_go(g, NULL, NULL), EINVAL);
    CHECK_EQ(hoare_group_wait(g), 0);
    CHECK_EQ(ran, 55);
    CHECK_EQ(hoare_ctx_err(hoare_group_ctx(g)), ECANCELED); /* wait cancels the context */
    hoare_group_free(g);
}

/* ---------------------------------------------------------------- first error cancels siblings
 * Siblings wait for the group's context to be cancelled (they would wait forever otherwise), note
 * the error they saw, and return a different error; the failing goroutine returns EIO. */

#define SIBLINGS 5
static int sibling_errs[SIBLINGS];
static hoare_wg siblings_waiting;

static int sibling(hoare_ctx *ctx, void *arg) {
    hoare_wg_done(&siblings_waiting);
    CHECK_EQ(hoare_recv(hoare_ctx_done(ctx), NULL), EPIPE);
    sibling_errs[(intptr_t)arg] = hoare_ctx_err(ctx);
    return EPERM; /* after the first error: not reported */
}

static int fail_after_siblings(hoare_ctx *ctx, void *arg) {
    (void)ctx;
    (void)arg;
    hoare_wg_wait(&siblings_waiting);
    return EIO;
}

static void test_first_error(void) {
    hoare_group *g = hoare_group_new(NULL);
    REQUIRE(g != NULL);
    hoare_wg_add(&siblings_waiting, SIBLINGS);
    for (int i = 0; i < SIBLINGS; i++) CHECK_EQ(hoare_group_go(g, sibling, (void *)(intptr_t)i), 0);
    CHECK_EQ(hoare_group_go(g, fail_after_siblings, NULL), 0);
    CHECK_EQ(hoare_group_wait(g), EIO);
    for (int i = 0; i < SIBLINGS; i++) CHECK_EQ(sibling_errs[i], ECANCELED);
    hoare_group_free(g);
}

/* ---------------------------------------------------------------- parent cancellation */

static int wait_for_cancel(hoare_ctx *ctx, void *arg) {
    (void)arg;
    hoare_recv(hoare_ctx_done(ctx), NULL);
    return hoare_ctx_err(ctx);
}

static void test_parent_cancels(void) {
    hoare_ctx *parent = hoare_ctx_with_timeout(NULL, 20 * HOARE_MS);
    hoare_group *g = hoare_group_new(parent);
    REQUIRE(g != NULL);
    for (int i = 0; i < 3; i++) CHECK_EQ(hoare_group_go(g, wait_for_cancel, NULL), 0);
    CHECK_EQ(hoare_group_wait(g), ETIMEDOUT); /* the parent's deadline, seen by the goroutines */
    hoare_group_free(g);
    hoare_ctx_release(parent);
}

/* ---------------------------------------------------------------- limit */

static int active, max_active;

static int limited(hoare_ctx *ctx, void *arg) {
    (void)ctx;
    (void)arg;
    int now = __atomic_add_fetch(&active, 1, __ATOMIC_SEQ_CST);
    int seen = __atomic_load_n(&max_active, __ATOMIC_SEQ_CST);
    while (now > seen && !__atomic_compare_exchange_n(&max_active, &seen, now, false,
                                                      __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {}
    for (int i = 0; i < 20; i++) hoare_yield();
    __atomic_sub_fetch(&active, 1, __ATOMIC_SEQ_CST);
    return 0;
}

static void test_limit(void) {
    hoare_group *g = hoare_group_new(NULL);
    REQUIRE(g != NULL);
    hoare_group_set_limit(g, 2);
    for (int i = 0; i < 20; i++) CHECK_EQ(hoare_group_go(g, limited, NULL), 0);
    CHECK_EQ(hoare_group_wait(g), 0);
    CHECK(max_active <= 2);
    CHECK(max_active >= 1);
    hoare_group_set_limit(g, 0); /* allowed again: nothing active */
    max_active = 0;
    for (int i = 0; i < 4; i++) CHECK_EQ(hoare_group_go(g, limited, NULL), 0);
    hoare_group_free(g); /* waits */
    CHECK_EQ(active, 0);
}

/* ---------------------------------------------------------------- fatal errors */

static hoare_wg block_forever_release;

static int block_forever(hoare_ctx *ctx, void *arg) {
    (void)ctx;
    (void)arg;
    hoare_wg_wait(&block_forever_release);
    return 0;
}

static void child_scenario(const char *name) {
    if (strcmp(name, "limit-while-active") == 0) {
        hoare_group *g = hoare_group_new(NULL);
        hoare_wg_add(&block_forever_release, 1);
        hoare_group_go(g, block_forever, NULL);
        hoare_group_set_limit(g, 3);
    }
    exit(0);
}

int main(int argc, char **argv) {
    if (argc > 1) child_scenario(argv[1]);
    test_begin(argv, 60);
    test_all_succeed();
    test_first_error();
    test_parent_cancels();
    test_limit();
    char out[8192];
    int status = test_run_self("limit-while-active", NULL, out, sizeof out);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 2);
    CHECK(strstr(out, "fatal error: errgroup: modify limit while 1 goroutines") != NULL);
    TEST_MAIN_END();
}
