/*
 * test_lend.c - a plain thread that waits lends itself to the scheduler (src/sched.c, "Lending"):
 *  - it runs the goroutine it hands off to on its own thread;
 *  - woken while it runs a goroutine that never yields, it gets its thread back promptly (the
 *    goroutine is preempted), and that goroutine then runs on elsewhere;
 *  - goroutines it readies run even while it stays away from the runtime;
 *  - its errno is its own again after the wait;
 *  - goroutines spawned onto the processor a thread holds run after the thread exits;
 *  - its own signal handlers never run on a sub-page goroutine stack;
 *  - goroutines entering a blocking region do not keep it (in hoare_go, or in its wait);
 *  - the processor it gave up still takes goroutines from the global queue after it ran many
 *    goroutines on it (a HOARE_PROCS=1 child);
 *  - with HOARE_LEND=0 a thread may wait holding a pthread mutex that a goroutine it spawned takes
 *    (a child; lent, it could run that goroutine and deadlock on its own mutex, hoare.h).
 * Lending (on unless HOARE_LEND=0; set here) relies on preemption, which is off under TSan: the
 * checks that need it are skipped there.
 */
#include "test.h"

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/syscall.h>

static pid_t gettid_(void) { return (pid_t)syscall(SYS_gettid); }

/* Answers every value with the id of the thread it runs on, until c is closed; holds a reference
 * to c (the spawner retains one for it). */
static void echo(void *arg) {
    hoare_chan *c = arg;
    int v;
    while (hoare_recv(c, &v) == 0) {
        v = (int)gettid_();
        if (hoare_send(c, &v) != 0) break;
    }
    hoare_chan_release(c);
}

/* ---- child scenario (HOARE_PROCS=1): the thread runs a spinner, then is woken by another
 * thread; it must return although the spinner never yields, and the spinner must go on. */

static _Atomic uint64_t spins;
static _Atomic bool stop_spinning;
static _Atomic pid_t spinner_tid;
static void spinner(void *arg) {
    (void)arg;
    atomic_store(&spinner_tid, gettid_());
    while (!atomic_load_explicit(&stop_spinning, memory_order_relaxed))
        atomic_fetch_add_explicit(&spins, 1, memory_order_relaxed);
}

static void *send_later(void *arg) {
    usleep(200 * 1000); /* after the warm-up below */
    int v = 7;
    hoare_send(arg, &v);
    return NULL;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0) {}
}

static int child_woken_while_spinner_runs(void) {
    hoare_chan *c = hoare_chan_make(sizeof(int), 0);
    pthread_t waker; /* started first: starting a thread takes long enough to lose the P */
    REQUIRE(pthread_create(&waker, NULL, send_later, c) == 0);
    hoare_chan *echo_c = hoare_chan_make(sizeof(int), 0);
    REQUIRE(hoare_go(echo, hoare_chan_retain(echo_c)) == 0);
    /* round trips until the thread has lent itself and kept the only processor (at first the
     * scheduler thread that started the echo goroutine has it, until it goes idle) */
    int v = 0;
    for (int i = 0; i < 100 && v != gettid_(); i++) {
        REQUIRE(hoare_send(echo_c, &v) == 0 && hoare_recv(echo_c, &v) == 0);
        if (v != gettid_()) sleep_ms(1);
    }
    if (v != gettid_()) {
        fprintf(stderr, "the echo goroutine never ran on the waiting thread\n");
        return 1;
    }
    int64_t t0 = hoare_now();
    REQUIRE(hoare_go(spinner, NULL) == 0); /* onto the processor this thread holds */
    REQUIRE(hoare_recv(c, &v) == 0 && v == 7);
    int64_t took = hoare_now() - t0;
    pthread_join(waker, NULL);
    if (atomic_load(&spinner_tid) != gettid_()) {
        fprintf(stderr, "the spinner did not run on the waiting thread\n");
        return 1;
    }
    if (took > 2 * HOARE_SEC) {
        fprintf(stderr, "the woken thread came back after %lld ms\n", (long long)(took / HOARE_MS));
        return 1;
    }
    /* the spinner, preempted here, goes on elsewhere */
    uint64_t before = atomic_load(&spins);
    for (int i = 0; i < 200 && atomic_load(&spins) == before; i++) sleep_ms(10);
    if (atomic_load(&spins) == before) {
        fprintf(stderr, "the spinner stopped once the thread left\n");
        return 1;
    }
    atomic_store(&stop_spinning, true);
    hoare_close(echo_c);
    hoare_chan_release(echo_c);
    hoare_chan_release(c);
    printf("woken after %lld us\n", (long long)(took / 1000));
    return 0;
}

/* ---- in-process checks */

static void test_runs_partner_here(void) {
    hoare_chan *c = hoare_chan_make(sizeof(int), 0);
    REQUIRE(hoare_go(echo, hoare_chan_retain(c)) == 0);
    int here = 0;
    for (int i = 0; i < 1000; i++) {
        int v = i;
        REQUIRE(hoare_send(c, &v) == 0 && hoare_recv(c, &v) == 0);
        if (v == gettid_()) here++;
    }
    printf("the echo goroutine ran on this thread %d times of 1000\n", here);
    CHECK(here > 500);
    hoare_close(c);
    hoare_chan_release(c);
}

/* The thread readies a goroutine onto the processor it keeps, then stays away from the runtime:
 * the goroutine must run anyway (the monitor hands the processor on). */
static _Atomic int ran_while_away;
static void mark_when_received(void *arg) {
    int v;
    if (hoare_recv(arg, &v) == 0) atomic_store(&ran_while_away, 1);
    hoare_chan_release(arg);
}

static void test_readied_runs_while_thread_away(void) {
    for (int round = 0; round < 20; round++) {
        atomic_store(&ran_while_away, 0);
        hoare_chan *c = hoare_chan_make(sizeof(int), 1);
        REQUIRE(hoare_go(mark_when_received, hoare_chan_retain(c)) == 0);
        int v = round;
        REQUIRE(hoare_send(c, &v) == 0);
        for (int i = 0; i < 5000 && !atomic_load(&ran_while_away); i++) sleep_ms(1);
        CHECK(atomic_load(&ran_while_away));
        hoare_chan_release(c);
    }
}

/* errno's address must not be kept across a hoare call (hoare.h): glibc's __errno_location is
 * const, and the goroutine may resume on another thread. */
static __attribute__((noipa)) void set_errno(int v) { errno = v; }

static void set_errno_and_send(void *arg) {
    set_errno(77);
    int v = 1;
    hoare_send(arg, &v);
    set_errno(78);
}

static void test_errno_kept(void) {
    hoare_chan *c = hoare_chan_make(sizeof(int), 0);
    for (int i = 0; i < 100; i++) {
        REQUIRE(hoare_go(set_errno_and_send, c) == 0);
        errno = 1234;
        int v;
        REQUIRE(hoare_recv(c, &v) == 0);
        CHECK_EQ(errno, 1234);
    }
    hoare_chan_release(c);
}

static hoare_wg orphans;
static void orphan(void *arg) {
    (void)arg;
    hoare_wg_done(&orphans);
}

static void *spawn_and_exit(void *arg) {
    hoare_chan *c = hoare_chan_make(sizeof(int), 0);
    REQUIRE(hoare_go(echo, hoare_chan_retain(c)) == 0);
    int v = 0;
    REQUIRE(hoare_send(c, &v) == 0 && hoare_recv(c, &v) == 0); /* now it holds a processor */
    hoare_close(c);
    hoare_chan_release(c);
    for (int i = 0; i < 1000; i++) REQUIRE(hoare_go(orphan, arg) == 0);
    return NULL;
}

static void test_spawns_outlive_thread(void) {
    hoare_wg_add(&orphans, 1000);
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, spawn_and_exit, NULL) == 0);
    pthread_join(t, NULL);
    hoare_wg_wait(&orphans); /* bounded by the watchdog */
    CHECK(1);
}

/* A handler that needs a few KiB of stack: on a sub-page goroutine stack it would overwrite the
 * neighbouring slots (and the canary check would end the program). */
static _Atomic int handled;
static void deep_handler(int sig) {
    (void)sig;
    volatile char scratch[8192];
    memset((char *)scratch, 0x5a, sizeof scratch);
    atomic_fetch_add(&handled, scratch[100] == 0x5a);
}

static _Atomic bool keep_signalling;
static void *signaller(void *arg) {
    pthread_t target = *(pthread_t *)arg;
    while (atomic_load(&keep_signalling)) {
        pthread_kill(target, SIGUSR1);
        usleep(50);
    }
    return NULL;
}

static void small_echo(void *arg) {
    hoare_chan *c = arg;
    int v;
    while (hoare_recv(c, &v) == 0) {
        v++;
        if (hoare_send(c, &v) != 0) break;
    }
    hoare_chan_release(c);
}

static void test_signals_off_small_stacks(void) {
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = deep_handler;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, &old);
    hoare_attr small = {.stack_size = 1024};
    enum { PAIRS = 8 };
    hoare_chan *cs[PAIRS];
    for (int i = 0; i < PAIRS; i++) {
        cs[i] = hoare_chan_make(sizeof(int), 0);
        REQUIRE(hoare_go_with(&small, small_echo, hoare_chan_retain(cs[i])) == 0);
    }
    pthread_t self = pthread_self(), sig;
    atomic_store(&keep_signalling, true);
    REQUIRE(pthread_create(&sig, NULL, signaller, &self) == 0);
    long rounds = TEST_SCALE(200000);
    for (long i = 0; i < rounds; i++) {
        int v = (int)i;
        REQUIRE(hoare_send(cs[i % PAIRS], &v) == 0 && hoare_recv(cs[i % PAIRS], &v) == 0);
        CHECK_EQ(v, (int)i + 1);
        if (v != (int)i + 1) break;
    }
    atomic_store(&keep_signalling, false);
    pthread_join(sig, NULL);
    sigaction(SIGUSR1, &old, NULL);
    printf("%d signals handled during %ld round trips with sub-page goroutines\n", atomic_load(&handled), rounds);
    CHECK(atomic_load(&handled) > 0);
    for (int i = 0; i < PAIRS; i++) {
        hoare_close(cs[i]);
        hoare_chan_release(cs[i]);
    }
}

/* ---- goroutines that enter a blocking region (a 300 ms sleep) do not hold up the plain thread
 * that spawned them, nor one that waits: it ran them itself (thread_help, lending) and sat in
 * their sleep - a hoare_go took a whole second in a probe */

static void blocking_sleeper(void *arg) {
    hoare_blocking_begin();
    usleep(300 * 1000);
    hoare_blocking_end();
    hoare_wg_done(arg);
}

static void soon_done(void *arg) {
    hoare_sleep(5 * HOARE_MS);
    hoare_wg_done(arg);
}

static void test_blocking_goroutines_do_not_hold_thread(void) {
    hoare_wg all = HOARE_WG_INIT;
    int64_t slowest = 0;
    hoare_wg_add(&all, 4);
    for (int i = 0; i < 4; i++) {
        int64_t t0 = hoare_now();
        REQUIRE(hoare_go(blocking_sleeper, &all) == 0);
        int64_t took = hoare_now() - t0;
        if (took > slowest) slowest = took;
    }
    /* a wait for a goroutine done in 5 ms, while a blocking one is queued on the thread's
     * processor (the thread runs it as it waits) */
    hoare_wg one = HOARE_WG_INIT;
    hoare_wg_add(&all, 2);
    hoare_wg_add(&one, 1);
    int64_t t0 = hoare_now();
    REQUIRE(hoare_go(soon_done, &one) == 0);
    REQUIRE(hoare_go(blocking_sleeper, &all) == 0);
    hoare_wg_wait(&one);
    int64_t waited = hoare_now() - t0;
    hoare_wg_done(&all);
    hoare_wg_wait(&all);
    CHECK(slowest < 100 * HOARE_MS);
    CHECK(waited < 100 * HOARE_MS);
    if (slowest >= 100 * HOARE_MS || waited >= 100 * HOARE_MS)
        fprintf(stderr, "slowest hoare_go %lld ns, spawns and wait for a 5 ms goroutine %lld ns\n",
                (long long)slowest, (long long)waited);
}

/* ---- child scenario (HOARE_PROCS=1): the thread lends itself for more than 61 picks (the local
 * picks between two looks at the global queue), then hands the processor to an M on which two
 * goroutines yield to each other for ever. A goroutine spawned from another thread (global queue,
 * no processor to spare) must still run. The count of picks once wrapped on the lent thread, and
 * the M then never looked at the global queue again. */

static _Atomic bool yielders_stop;

static void yield_times(void *arg) {
    for (int i = 0; i < 200; i++) hoare_yield();
    hoare_wg_done(arg);
}

static void yield_until_stopped(void *arg) {
    (void)arg;
    while (!atomic_load(&yielders_stop)) hoare_yield();
}

static void stop_yielders(void *arg) {
    atomic_store(&yielders_stop, true);
    int v = 1;
    hoare_send(arg, &v);
}

static void *spawn_stopper(void *arg) {
    REQUIRE(hoare_go(stop_yielders, arg) == 0);
    return NULL;
}

static int child_global_queue_after_lending(void) {
    hoare_wg wg = HOARE_WG_INIT;
    hoare_wg_add(&wg, 2);
    REQUIRE(hoare_go(yield_times, &wg) == 0);
    REQUIRE(hoare_go(yield_times, &wg) == 0);
    hoare_wg_wait(&wg); /* this thread runs their 400 yields */
    hoare_chan *done = hoare_chan_make(sizeof(int), 0);
    REQUIRE(hoare_go(yield_until_stopped, NULL) == 0);
    REQUIRE(hoare_go(yield_until_stopped, NULL) == 0);
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, spawn_stopper, done) == 0);
    int v = 0;
    REQUIRE(hoare_recv(done, &v) == 0); /* lends for 1 ms, then an M runs the yielders */
    pthread_join(t, NULL);
    hoare_chan_release(done);
    return v == 1 ? 0 : 1;
}

/* ---- child scenario (HOARE_LEND=0, HOARE_PROCS=2): the thread waits holding a pthread mutex that
 * a goroutine it spawned takes. Lent, the thread could run that goroutine itself - the one it
 * spawned last, in runnext - and deadlock on its own mutex (hoare.h); without lending that
 * goroutine blocks an M until the thread lets go, and the other M runs the sender. */
static pthread_mutex_t held_while_waiting = PTHREAD_MUTEX_INITIALIZER;

static void take_held_lock(void *arg) {
    pthread_mutex_lock(&held_while_waiting);
    pthread_mutex_unlock(&held_while_waiting);
    hoare_wg_done(arg);
}

static void send_one(void *arg) {
    int v = 1;
    hoare_send(arg, &v);
}

static int child_lock_held_without_lending(void) {
    hoare_chan *c = hoare_chan_make(sizeof(int), 0);
    hoare_wg wg = HOARE_WG_INIT;
    hoare_wg_add(&wg, 1);
    pthread_mutex_lock(&held_while_waiting);
    REQUIRE(hoare_go(send_one, c) == 0);
    REQUIRE(hoare_go(take_held_lock, &wg) == 0);
    int v = 0;
    REQUIRE(hoare_recv(c, &v) == 0 && v == 1);
    pthread_mutex_unlock(&held_while_waiting);
    hoare_wg_wait(&wg);
    hoare_chan_release(c);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "lock-held-without-lending")) {
        alarm(20); /* a deadlock ends by SIGALRM */
        return child_lock_held_without_lending();
    }
    setenv("HOARE_LEND", "1", 1); /* on, whatever the caller's environment says; children inherit it */
    if (argc > 1) {
        if (!strcmp(argv[1], "woken-while-spinner-runs")) {
            alarm(30);
            return child_woken_while_spinner_runs();
        }
        if (!strcmp(argv[1], "global-queue-after-lending")) {
            alarm(10); /* the goroutine never ran: end by SIGALRM */
            return child_global_queue_after_lending();
        }
        return 99;
    }
    test_begin(argv, 120);
    if (!TEST_TSAN) {
        char out[4096];
        char *env[] = {"HOARE_PROCS=1", NULL};
        int status = test_run_self("woken-while-spinner-runs", env, out, sizeof out);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) fprintf(stderr, "child: %s\n", out);
        test_runs_partner_here();
        status = test_run_self("global-queue-after-lending", env, out, sizeof out);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    {
        char out[4096];
        char *env[] = {"HOARE_LEND=0", "HOARE_PROCS=2", NULL};
        int status = test_run_self("lock-held-without-lending", env, out, sizeof out);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) fprintf(stderr, "child: %s\n", out);
    }
    test_readied_runs_while_thread_away();
    test_errno_kept();
    test_spawns_outlive_thread();
    test_signals_off_small_stacks();
    test_blocking_goroutines_do_not_hold_thread();
    TEST_MAIN_END();
}
