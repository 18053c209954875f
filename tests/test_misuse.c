/*
 * test_misuse.c - what the runtime does when it is misused (the table is docs/misuse.md). Misuse
 * that is reported with an error code is checked in this process; fatal misuse runs as a child
 * scenario (test_run_self) that must die with exit status 2 and a message naming the problem.
 *
 * Use-after-free misuse (releasing or freeing an object twice) is detected best-effort by a poison
 * word in the freed block; under ASan the sanitizer reports the use after free first, which is
 * accepted there.
 */
#include "test.h"

#include <pthread.h>
#include <stdbool.h>
#include <sys/socket.h>

/* ---------------------------------------------------------------- child scenarios (fatal) */

static void end_unpaired(void *arg) {
    (void)arg;
    hoare_blocking_end();
}

/* Caught at once, not only once the monitor has handed the processor away (a nested begin was
 * then reported as an unpaired end, and a receive inside a region waited for ever). */
static void begin_nested(void *arg) {
    (void)arg;
    hoare_blocking_begin();
    hoare_blocking_begin();
}

static void park_in_region(void *arg) {
    hoare_blocking_begin();
    hoare_recv(arg, NULL);
}

static int scenario(const char *name) {
    if (strcmp(name, "chan-over-release") == 0) {
        hoare_chan *c = hoare_chan_make(sizeof(int), 1);
        hoare_chan_release(c);
        hoare_chan_release(c);
    } else if (strcmp(name, "chan-retain-freed") == 0) {
        hoare_chan *c = hoare_chan_make(sizeof(int), 1);
        hoare_chan_release(c);
        hoare_chan_retain(c);
    } else if (strcmp(name, "timer-double-free") == 0) {
        hoare_timer *t = hoare_timer_start(HOARE_SEC);
        hoare_timer_free(t);
        hoare_timer_free(t);
    } else if (strcmp(name, "timer-stop-freed") == 0) {
        hoare_timer *t = hoare_timer_start(HOARE_SEC);
        hoare_timer_free(t);
        hoare_timer_stop(t);
    } else if (strcmp(name, "ticker-double-stop") == 0) {
        hoare_ticker *t = hoare_ticker_start(HOARE_SEC);
        hoare_ticker_stop(t);
        hoare_ticker_stop(t);
    } else if (strcmp(name, "ctx-double-release") == 0) {
        hoare_ctx *c = hoare_ctx_with_cancel(NULL);
        hoare_ctx_release(c);
        hoare_ctx_release(c);
    } else if (strcmp(name, "once-null-fn") == 0) {
        hoare_once once = HOARE_ONCE_INIT;
        hoare_once_do(&once, NULL, NULL);
    } else if (strcmp(name, "cond-wait-unlocked") == 0) {
        hoare_cond cv = HOARE_COND_INIT;
        hoare_mutex mu = HOARE_MUTEX_INIT;
        hoare_cond_wait(&cv, &mu);
    } else if (strcmp(name, "blocking-end-unpaired") == 0) {
        hoare_chan *done = hoare_chan_make(0, 0);
        /* from a goroutine: on a plain thread the region calls are no-ops */
        REQUIRE(hoare_go(end_unpaired, NULL) == 0);
        hoare_recv(done, NULL);
    } else if (strcmp(name, "blocking-nested") == 0) {
        hoare_chan *done = hoare_chan_make(0, 0);
        REQUIRE(hoare_go(begin_nested, NULL) == 0);
        hoare_recv(done, NULL);
    } else if (strcmp(name, "blocking-park") == 0) {
        hoare_chan *never = hoare_chan_make(0, 0);
        REQUIRE(hoare_go(park_in_region, never) == 0);
        hoare_recv(never, NULL);
    } else {
        fprintf(stderr, "unknown scenario %s\n", name);
        return 1;
    }
    return 0; /* the misuse was not caught */
}

/* Expect the child to die of a fatal error naming the problem; under ASan a use-after-free report
 * is accepted in its place (use_after_free: the misuse reads freed memory). */
static void expect_fatal(const char *name, const char *message, bool use_after_free) {
    char out[8192];
    char *env[] = {"ASAN_OPTIONS=detect_leaks=0:abort_on_error=0", NULL};
    int status = test_run_self(name, env, out, sizeof out);
    bool fatal = WIFEXITED(status) && WEXITSTATUS(status) == 2 && strstr(out, message) != NULL;
    bool asan = use_after_free && TEST_SANITIZED && strstr(out, "heap-use-after-free") != NULL;
    CHECK(fatal || asan);
    if (!(fatal || asan)) fprintf(stderr, "scenario %s: status %#x, said:\n%s\n", name, status, out);
}

/* ---------------------------------------------------------------- error codes, in process */

static void test_select_too_many_cases(void) {
    size_t n = 1000000;
    hoare_case *cs = calloc(n, sizeof *cs);
    REQUIRE(cs);
    hoare_chan *c = hoare_chan_make(0, 1);
    for (size_t i = 0; i < n; i++) cs[i] = (hoare_case)HOARE_RECV(c, NULL);
    errno = 0;
    CHECK_EQ(hoare_select_try(cs, n), -1);
    CHECK_EQ(errno, EINVAL);
    errno = 0;
    CHECK_EQ(hoare_select_timeout(cs, n, HOARE_MS), -1);
    CHECK_EQ(errno, EINVAL);
    errno = 0;
    CHECK_EQ(hoare_select(cs, n), -1);
    CHECK_EQ(errno, EINVAL);
    hoare_chan_release(c);
    free(cs);
}

static void test_null_functions(void) {
    CHECK_EQ(hoare_go(NULL, NULL), EINVAL);
    CHECK_EQ(hoare_go_with(NULL, NULL, NULL), EINVAL);
    hoare_group *g = hoare_group_new(NULL);
    CHECK_EQ(hoare_group_go(g, NULL, NULL), EINVAL);
    hoare_group_free(g);
}

/* Releasing a channel a select still waits on: the select's own reference keeps it alive; the
 * select ends normally (here by a second channel's close) and the channel is freed after (ASan: no
 * error). The select had a 200 ms timeout once: on a loaded machine it could time out before the
 * dump below saw it parked, and the loop then waited for good. */
static atomic_int select_result = -2;
static hoare_chan *select_end;
static void select_on(void *arg) {
    hoare_case cs[] = {HOARE_RECV((hoare_chan *)arg, NULL), HOARE_RECV(select_end, NULL)};
    int k = hoare_select(cs, 2);
    atomic_store(&select_result, k == 1 && cs[1].err == EPIPE ? 1 : -1);
}
static void test_release_under_select(void) {
    hoare_chan *c = hoare_chan_make(sizeof(int), 0);
    select_end = hoare_chan_make(0, 0);
    REQUIRE(hoare_go(select_on, c) == 0);
    /* release only once the select is parked (else the goroutine would use a freed channel):
     * the goroutine dump says so */
    REQUIRE(test_dump_until("[select", 20) != NULL);
    hoare_chan_release(c);
    hoare_close(select_end);
    while (atomic_load(&select_result) == -2) hoare_sleep(HOARE_MS);
    CHECK_EQ(atomic_load(&select_result), 1);
    hoare_chan_release(select_end);
    CHECK_EQ(test_wait_count(0), 0);
}

/* hoare_exit from a plain thread ends the thread (pthread_exit); its joiner sees NULL. */
static void *exit_thread(void *arg) {
    (void)arg;
    hoare_exit();
}
static void test_exit_plain_thread(void) {
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, exit_thread, NULL) == 0);
    void *ret = (void *)1;
    CHECK_EQ(pthread_join(t, &ret), 0);
    CHECK(ret == NULL);
}

/* close(2) instead of hoare_fd_close on a descriptor the poller knows, then the number is reused:
 * the runtime registers the new descriptor afresh (a stale registration is taken over) and the
 * calls on it work. */
static void test_close2_reuse(void) {
    int sv[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK_EQ(hoare_fd_write(sv[0], "a", 1), 1);
    char b;
    CHECK_EQ(hoare_fd_read(sv[1], &b, 1), 1);
    int old = sv[1];
    close(sv[1]); /* the misuse */
    close(sv[0]);
    int nv[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, nv) == 0);
    int reused = nv[0] == old ? nv[0] : nv[1] == old ? nv[1] : -1;
    int peer = reused == nv[0] ? nv[1] : nv[0];
    CHECK(reused == old);
    if (reused == old) {
        /* a read that must wait for the peer's write, then one that finds data at once */
        hoare_fd_set_deadline(reused, hoare_now() + 5 * HOARE_SEC);
        CHECK_EQ(write(peer, "xy", 2), 2);
        char buf[4];
        CHECK_EQ(hoare_fd_read(reused, buf, sizeof buf), 2);
        CHECK_EQ(hoare_fd_write(reused, "z", 1), 1);
        CHECK_EQ(read(peer, buf, 1), 1);
        CHECK_EQ(hoare_fd_close(reused), 0);
    }
    close(peer);
}

int main(int argc, char **argv) {
    test_begin(argv, 120);
    if (argc > 1) return scenario(argv[1]);

    test_select_too_many_cases();
    test_null_functions();
    test_release_under_select();
    test_exit_plain_thread();
    test_close2_reuse();

    expect_fatal("chan-over-release", "released more times than it was retained", true);
    expect_fatal("chan-retain-freed", "was already freed", true);
    expect_fatal("timer-double-free", "fatal error: hoare_timer_free: ", true);
    expect_fatal("timer-stop-freed", "fatal error: hoare_timer_stop: ", true);
    expect_fatal("ticker-double-stop", "fatal error: hoare_ticker_stop: ", true);
    expect_fatal("ctx-double-release", "fatal error: hoare_ctx_release: ", true);
    expect_fatal("once-null-fn", "fatal error: hoare_once_do: fn is NULL", false);
    expect_fatal("cond-wait-unlocked", "fatal error: sync: unlock of unlocked mutex", false);
    expect_fatal("blocking-end-unpaired", "fatal error: hoare_blocking_end without hoare_blocking_begin", false);
    expect_fatal("blocking-nested", "fatal error: hoare_blocking_begin inside a blocking region", false);
    expect_fatal("blocking-park", "parks (chan receive) inside a blocking region", false);
    TEST_MAIN_END();
}
