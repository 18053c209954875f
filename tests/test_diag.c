/*
 * test_diag.c - diagnostics: the deadlock report (Go's message, the goroutine list, exit status 2),
 * no report where something can still wake somebody (a timer, a thread outside the runtime), the
 * HOARE_DEADLOCK=0 opt-out, and the goroutine dump format.
 */
#include "test.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* ---- child scenarios */

static void recv_forever(void *arg) { hoare_recv(arg, NULL); }

static int child_chan_deadlock(void) {
    hoare_chan *a = hoare_chan_make(sizeof(int), 0), *b = hoare_chan_make(sizeof(int), 0);
    hoare_attr attr = {.name = "stuck-worker"};
    hoare_go_with(&attr, recv_forever, a);
    alarm(20); /* if no deadlock is reported: exit by SIGALRM, not status 2 */
    hoare_recv(b, NULL); /* nobody will ever send */
    return 0;
}

static hoare_wg never_done;

static void wait_forever(void *arg) {
    (void)arg;
    hoare_wg_wait(&never_done);
}

static int child_wg_deadlock(void) {
    hoare_wg_add(&never_done, 1);
    for (int i = 0; i < 3; i++) hoare_go(wait_forever, NULL);
    alarm(20);
    hoare_wg_wait(&never_done);
    return 0;
}

static void send_later(void *arg) {
    hoare_sleep(50 * HOARE_MS);
    int v = 1;
    hoare_send(arg, &v);
}

/* Everybody blocked but a timer will fire: not a deadlock. */
static int child_timer_pending(void) {
    hoare_chan *c = hoare_chan_make(sizeof(int), 0);
    hoare_go(send_later, c);
    int v = 0;
    hoare_recv(c, &v);
    return v == 1 ? 0 : 1;
}

static void *thread_sends_later(void *arg) {
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL); /* outside the runtime: the deadlock check must allow for it */
    int v = 7;
    hoare_send(arg, &v);
    return NULL;
}

/* Everybody in the runtime is blocked, but another thread is busy outside it: not a deadlock. */
static int child_thread_outside(void) {
    hoare_chan *c = hoare_chan_make(sizeof(int), 0);
    hoare_go(recv_forever, hoare_chan_make(0, 0)); /* a goroutine stuck for good, too */
    pthread_t t;
    pthread_create(&t, NULL, thread_sends_later, c);
    int v = 0;
    hoare_recv(c, &v);
    pthread_join(t, NULL);
    return v == 7 ? 0 : 1;
}

static void alarm_exit(int sig) {
    (void)sig;
    _exit(42);
}

static int child_deadlock_off(void) {
    signal(SIGALRM, alarm_exit);
    alarm(1);
    hoare_recv(hoare_chan_make(0, 0), NULL);
    return 0;
}

/* ---- the parent's checks */

static void test_deadlock_reported(void) {
    char out[1 << 16];
    int status = test_run_self("chan-deadlock", NULL, out, sizeof out);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 2);
    CHECK(strstr(out, "fatal error: all goroutines are asleep - deadlock!") != NULL);
    CHECK(strstr(out, "[chan receive]") != NULL);
    CHECK(strstr(out, "name stuck-worker") != NULL);
    CHECK(strstr(out, "thread (waiter") != NULL); /* main, blocked in hoare_recv */

    /* Several times: the monitor once slept for good when it looked while the last M, its
     * processor given up, was not yet counted idle (about 1 run in 100 under TSan). */
    for (int i = 0; i < 8; i++) {
        status = test_run_self("wg-deadlock", NULL, out, sizeof out);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 2);
        CHECK(strstr(out, "all goroutines are asleep - deadlock!") != NULL);
        CHECK(strstr(out, "[sync.WaitGroup.Wait]") != NULL);
    }
}

static void test_no_false_reports(void) {
    char out[1 << 16];
    /* these children end with a goroutine stuck for good: not a leak to report */
    char *no_leak_check[] = {"ASAN_OPTIONS=detect_leaks=0", NULL};
    int status = test_run_self("timer-pending", no_leak_check, out, sizeof out);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    status = test_run_self("thread-outside", no_leak_check, out, sizeof out);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fprintf(stderr, "child said: %s\n", out);
}

static void test_deadlock_opt_out(void) {
    char out[4096];
    char *env[] = {"HOARE_DEADLOCK=0", NULL};
    int status = test_run_self("deadlock-off", env, out, sizeof out);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 42);
}

/* ---- hoare_dump lists goroutines with their wait reasons and names */

static void test_dump(void) {
    hoare_chan *c = hoare_chan_make(sizeof(int), 0);
    hoare_attr attr = {.name = "dump-me"};
    REQUIRE(hoare_go_with(&attr, recv_forever, c) == 0);
    /* wait until it is parked */
    const char *buf = test_dump_until("[chan receive]:\n\tname dump-me\n", 10);
    REQUIRE(buf != NULL);
    CHECK(strstr(buf, "minutes") == NULL); /* it has waited milliseconds */
    CHECK(strncmp(buf, "goroutine ", 10) == 0);
    hoare_close(c); /* lets it go */
    hoare_chan_release(c);
}

int main(int argc, char **argv) {
    if (argc > 1) {
        if (!strcmp(argv[1], "chan-deadlock")) return child_chan_deadlock();
        if (!strcmp(argv[1], "wg-deadlock")) return child_wg_deadlock();
        if (!strcmp(argv[1], "timer-pending")) return child_timer_pending();
        if (!strcmp(argv[1], "thread-outside")) return child_thread_outside();
        if (!strcmp(argv[1], "deadlock-off")) return child_deadlock_off();
        return 99;
    }
    test_begin(argv, 120);
    /* Under qemu-user the emulator's own threads are in the process: the (conservative) thread
     * count never lets the check report, so there is nothing to test there. */
    if (!getenv("HOARE_TEST_EMULATOR")) test_deadlock_reported();
    test_no_false_reports();
    test_deadlock_opt_out();
    test_dump();
    TEST_MAIN_END();
}
