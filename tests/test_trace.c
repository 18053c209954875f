/*
 * test_trace.c - execution traces: hoare_trace_start/stop's errors, a small traced program in
 * which every kind of event appears (checked, and the JSON parsed, by tests/trace_check.py), and
 * HOARE_TRACE=<file> for a whole run (complete when main returns).
 */
#include "test.h"

#include <fcntl.h>
#include <stdbool.h>
#include <time.h>

#ifndef HOARE_TEST_SRC_DIR
#error "HOARE_TEST_SRC_DIR: the tests' source directory (for trace_check.py)"
#endif

static int check_trace(const char *path, const char *names) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "python3 %s/trace_check.py events %s %s", HOARE_TEST_SRC_DIR, path, names);
    int status = system(cmd);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* ---- the traced program */

static void echo(void *arg) {
    hoare_chan **c = arg;
    long v;
    while (hoare_recv(c[0], &v) == 0) hoare_send(c[1], &v);
}

/* Busy for ms milliseconds, nearly all of it in this program's own code (where preemption may
 * stop it), not in the clock's vDSO (where it may not). */
static void spin_ms(int64_t ms) {
    int64_t end = hoare_now() + ms * HOARE_MS;
    unsigned long x = 0;
    while (hoare_now() < end)
        for (int i = 0; i < 100000; i++) {
            x += (unsigned long)i;
            __asm__ __volatile__("" : "+r"(x));
        }
}

static void spinner(void *arg) {
    hoare_wg *wg = arg;
    spin_ms(1);
    hoare_wg_done(wg);
}

static void long_runner(void *arg) {
    hoare_wg *wg = arg;
    spin_ms(40); /* over a time slice, with more runners than processors: preempted */
    hoare_wg_done(wg);
}

static void in_blocking_region(void *arg) {
    hoare_wg *wg = arg;
    hoare_blocking_begin();
    struct timespec ts = {0, 60 * 1000 * 1000}; /* over 10 ms: the monitor hands the P off */
    nanosleep(&ts, NULL);
    hoare_blocking_end();
    hoare_wg_done(wg);
}

static void workload(void *arg) {
    hoare_wg *done = arg;
    /* create, block, unblock, exit, flows */
    hoare_chan *c[2] = {hoare_chan_make(sizeof(long), 0), hoare_chan_make(sizeof(long), 0)};
    hoare_attr attr = {.name = "echo"};
    REQUIRE(hoare_go_with(&attr, echo, c) == 0);
    for (long i = 0; i < 100; i++) {
        long v = i;
        hoare_send(c[0], &v);
        hoare_recv(c[1], &v);
    }
    hoare_close(c[0]);
    /* a blocking region with a handoff, and preemption */
    hoare_wg wg = HOARE_WG_INIT;
    hoare_wg_add(&wg, 4);
    hoare_go(in_blocking_region, &wg);
    for (int i = 0; i < 3; i++) hoare_go(long_runner, &wg); /* preemption needs a waiter */
    hoare_wg_wait(&wg);
    /* steals: goroutines spawned here run child first, the parent waits in runnext, the other
     * processor steals; repeated until the statistics count one */
    hoare_stats s0, s1;
    hoare_stats_read(&s0);
    int64_t deadline = hoare_now() + 10 * HOARE_SEC;
    do {
        hoare_wg_add(&wg, 20);
        for (int i = 0; i < 20; i++) hoare_go(spinner, &wg);
        hoare_wg_wait(&wg);
        hoare_stats_read(&s1);
    } while (s1.steals == s0.steals && hoare_now() < deadline);
    CHECK(s1.steals > s0.steals);
    hoare_chan_release(c[0]);
    hoare_chan_release(c[1]);
    hoare_wg_done(done);
}

static void test_errors(void) {
    CHECK_EQ(hoare_trace_stop(), EINVAL);
    CHECK_EQ(hoare_trace_start(-1), EBADF);
    CHECK_EQ(hoare_trace_start(1000000), EBADF);
}

static void test_every_event(void) {
    char path[] = "/tmp/hoare_trace_XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    hoare_procs(2);
    CHECK_EQ(hoare_trace_start(fd), 0);
    CHECK_EQ(hoare_trace_start(fd), EBUSY);
    hoare_wg done = HOARE_WG_INIT;
    hoare_wg_add(&done, 1);
    hoare_go(workload, &done);
    hoare_wg_wait(&done);
    test_wait_count(0); /* every goroutine has exited: the exits are in the trace */
    /* and a processor has gone idle ('proc stop'): its M spins a while first, and in a slow
     * (ASan) run neither processor had idled before the trace stopped, once in a suite run */
    hoare_stats st;
    int64_t idle_deadline = hoare_now() + 10 * HOARE_SEC;
    do {
        hoare_sleep(HOARE_MS);
        hoare_stats_read(&st);
    } while (st.procs_idle == 0 && hoare_now() < idle_deadline);
    CHECK_EQ(hoare_trace_stop(), 0);
    CHECK_EQ(hoare_trace_stop(), EINVAL);
    close(fd);
    const char *names = TEST_TSAN /* no preemption under TSan */
        ? "create block unblock exit steal 'proc start' 'proc stop' handoff 'blocking region' echo"
        : "create block unblock exit preempt steal 'proc start' 'proc stop' handoff 'blocking region' echo";
    CHECK_EQ(check_trace(path, names), 0);
    /* a second session in another file works too */
    char path2[] = "/tmp/hoare_trace_XXXXXX";
    fd = mkstemp(path2);
    REQUIRE(fd >= 0);
    CHECK_EQ(hoare_trace_start(fd), 0);
    hoare_wg_add(&done, 1);
    hoare_go(spinner, &done);
    hoare_wg_wait(&done);
    test_wait_count(0);
    CHECK_EQ(hoare_trace_stop(), 0);
    close(fd);
    CHECK_EQ(check_trace(path2, "create exit"), 0);
    unlink(path);
    unlink(path2);
}

static int child_env_trace(void) {
    hoare_wg wg = HOARE_WG_INIT;
    hoare_wg_add(&wg, 3);
    for (int i = 0; i < 3; i++) hoare_go(spinner, &wg);
    hoare_wg_wait(&wg);
    return 0; /* the trace is finished by exit */
}

static void test_env_trace(void) {
    char path[] = "/tmp/hoare_trace_XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    close(fd);
    char var[64], out[4096];
    snprintf(var, sizeof var, "HOARE_TRACE=%s", path);
    char *env[] = {var, NULL};
    int status = test_run_self("env-trace", env, out, sizeof out);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK_EQ(check_trace(path, "create exit"), 0);
    unlink(path);
}

int main(int argc, char **argv) {
    if (argc > 1) {
        if (!strcmp(argv[1], "env-trace")) return child_env_trace();
        return 99;
    }
    test_begin(argv, 120);
    test_errors();
    test_every_event();
    test_env_trace();
    TEST_MAIN_END();
}
