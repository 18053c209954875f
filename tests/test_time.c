/*
 * test_time.c - sleep, after, tickers and timers: accuracy bounds, release before firing, ticks
 * dropped for a slow reader, stop/reset racing expiry and each other, thousands of timers stopped
 * out of order, durations of for ever (INT64_MAX), many sleepers, sleepers not kept behind a
 * spawning loop, and sleepers costing no CPU.
 */
#include "test.h"

#include <dirent.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* ---- a 1 ms sleep wakes within 1 ms late (median; never early) */

static void sleep_accuracy(void *arg) {
    enum { N = 21 };
    int64_t late[N];
    int early = 0;
    for (int i = 0; i < N; i++) {
        int64_t t0 = hoare_now();
        hoare_sleep(HOARE_MS);
        int64_t d = hoare_now() - t0;
        early += d < HOARE_MS;
        late[i] = d - HOARE_MS;
    }
    qsort(late, N, sizeof late[0], cmp_i64);
    CHECK_EQ(early, 0);
    CHECK(late[N / 2] < (TEST_SANITIZED ? 3 : 1) * HOARE_MS);
    if (late[N / 2] >= HOARE_MS) fprintf(stderr, "median lateness of a 1 ms sleep: %lld ns\n", (long long)late[N / 2]);
    hoare_wg_done(arg);
}

static void test_sleep_accuracy(void) {
    hoare_wg wg = HOARE_WG_INIT;
    hoare_wg_add(&wg, 1);
    REQUIRE(hoare_go(sleep_accuracy, &wg) == 0);
    hoare_wg_wait(&wg);
    /* and on a plain thread */
    int64_t t0 = hoare_now();
    hoare_sleep(2 * HOARE_MS);
    CHECK(hoare_now() - t0 >= 2 * HOARE_MS);
    hoare_sleep(0);
    hoare_sleep(-5);
}

/* ---- hoare_after delivers hoare_now() once, on time */

static void test_after(void) {
    int64_t t0 = hoare_now();
    hoare_chan *c = hoare_after(20 * HOARE_MS);
    REQUIRE(c != NULL);
    CHECK_EQ(hoare_cap(c), 1);
    int64_t when = 0;
    CHECK_EQ(hoare_recv(c, &when), 0);
    int64_t waited = hoare_now() - t0;
    CHECK(waited >= 20 * HOARE_MS);
    CHECK(waited < 500 * HOARE_MS);
    CHECK(when >= t0 + 20 * HOARE_MS && when <= hoare_now());
    CHECK_EQ(hoare_tryrecv(c, &when), EAGAIN); /* once */
    hoare_chan_release(c);

    /* in a select with a timeout-style race */
    hoare_chan *never = hoare_chan_make(sizeof(int), 0);
    hoare_chan *soon = hoare_after(5 * HOARE_MS);
    int x;
    hoare_case cs[] = {HOARE_RECV(never, &x), HOARE_RECV(soon, &when)};
    CHECK_EQ(hoare_select(cs, 2), 1);
    hoare_chan_release(soon);
    hoare_chan_release(never);
}

/* ---- released before it fires: nothing leaks, nothing is used after free (ASan/LSan check) */

static void test_after_released_early(void) {
    for (int i = 0; i < TEST_SCALE(2000); i++) hoare_chan_release(hoare_after(HOARE_SEC * 3600));
    /* and released while firing: deadlines around now */
    for (int i = 0; i < TEST_SCALE(20000); i++) {
        hoare_chan *c = hoare_after(i % 50 * HOARE_US);
        if (i % 3 == 0) hoare_sleep(i % 40 * HOARE_US);
        hoare_chan_release(c);
    }
}

/* ---- a ticker drops the ticks a slow reader misses */

static void test_ticker_drops(void) {
    hoare_ticker *t = hoare_ticker_start(5 * HOARE_MS);
    REQUIRE(t != NULL);
    hoare_chan *c = hoare_ticker_chan(t);
    int64_t v;
    CHECK_EQ(hoare_recv(c, &v), 0); /* first tick */
    hoare_sleep(60 * HOARE_MS);     /* ~12 ticks due; the channel holds one */
    CHECK_EQ(hoare_len(c), 1);
    CHECK_EQ(hoare_tryrecv(c, &v), 0);
    CHECK_EQ(hoare_tryrecv(c, &v), EAGAIN);
    /* ticking goes on at the period, not in a burst of the missed ones: in 50 ms at most 10 ticks
     * plus the one that may have been on its way (a loaded machine only gives fewer) */
    int64_t t0 = hoare_now();
    int got = 0;
    while (hoare_now() - t0 < 50 * HOARE_MS) got += hoare_recv(c, &v) == 0;
    CHECK(got >= 1 && got <= 12);
    CHECK_EQ(hoare_ticker_reset(t, 1 * HOARE_MS), 0);
    CHECK_EQ(hoare_recv(c, &v), 0);
    /* no stale tick after a reset: a tick taken after it is stamped after it */
    hoare_sleep(5 * HOARE_MS); /* a tick waits in the channel */
    int64_t reset_at = hoare_now();
    CHECK_EQ(hoare_ticker_reset(t, 2 * HOARE_MS), 0);
    CHECK_EQ(hoare_recv(c, &v), 0);
    CHECK(v >= reset_at + 2 * HOARE_MS);
    CHECK_EQ(hoare_ticker_reset(t, 0), EINVAL);
    CHECK_EQ(hoare_ticker_reset(NULL, HOARE_MS), EINVAL);
    hoare_ticker_stop(t);
    CHECK(hoare_ticker_start(0) == NULL && errno == EINVAL);
}

/* ---- one-shot timer: stop, reset, and both racing the expiry */

static void test_timer_stop_reset(void) {
    hoare_timer *t = hoare_timer_start(HOARE_SEC * 10);
    REQUIRE(t != NULL);
    CHECK_EQ(hoare_timer_stop(t), 1);
    CHECK_EQ(hoare_timer_stop(t), 0);
    int64_t v, t0 = hoare_now(); /* before the reset: the timer counts from inside it */
    CHECK_EQ(hoare_timer_reset(t, 5 * HOARE_MS), 0);
    CHECK_EQ(hoare_recv(hoare_timer_chan(t), &v), 0);
    CHECK(v >= t0 + 5 * HOARE_MS && v <= hoare_now());
    CHECK_EQ(hoare_timer_stop(t), 0); /* already fired */

    /* Racing expiry: after stop or reset returns, no stale value is ever received. */
    int stale = 0, stopped = 0;
    for (int i = 0; i < TEST_SCALE(20000); i++) {
        hoare_timer_reset(t, i % 30 * HOARE_US);
        if (i % 2) hoare_sleep(i % 20 * HOARE_US);
        if (i % 4 < 2) {
            stopped += hoare_timer_stop(t);
            stale += hoare_tryrecv(hoare_timer_chan(t), &v) == 0;
        } else {
            hoare_timer_reset(t, HOARE_SEC * 10);
            stale += hoare_tryrecv(hoare_timer_chan(t), &v) == 0;
        }
    }
    CHECK_EQ(stale, 0);
    CHECK(stopped > 0);
    hoare_timer_free(t);
}

/* ---- thousands of pending timers, a third stopped in a scattered order (removals from the middle
 * of a heap that grows meanwhile): each stop of a pending timer reports it, the stopped ones never
 * fire, every other fires once and never before its deadline */

static void test_many_timers_stopped_from_middle(void) {
    enum { N = 3000 };
    static hoare_timer *timers[N];
    static int64_t due[N];
    uint32_t seed = 12345;
    int64_t t0 = hoare_now();
    for (int i = 0; i < N; i++) {
        seed = seed * 1103515245u + 12345u;
        int64_t after = 300 * HOARE_MS + (int64_t)(seed >> 8) % (300 * HOARE_MS);
        due[i] = hoare_now() + after;
        REQUIRE((timers[i] = hoare_timer_start(after)) != NULL);
    }
    static bool stopped[N];
    int nstopped = 0;
    for (int k = 0; k < N; k++) {
        int i = (int)((uint32_t)k * 7919u % N); /* every index once, scattered */
        if (i % 3 == 0) nstopped += stopped[i] = hoare_timer_stop(timers[i]) == 1;
    }
    /* all stops came before the earliest deadline, unless the machine stalled for 300 ms */
    if (hoare_now() < t0 + 300 * HOARE_MS) CHECK_EQ(nstopped, N / 3);
    int early = 0, missing = 0, stale = 0;
    int64_t v;
    for (int i = 0; i < N; i++) {
        if (stopped[i]) continue;
        if (hoare_recv(hoare_timer_chan(timers[i]), &v) != 0) missing++;
        else early += v < due[i];
    }
    hoare_sleep(10 * HOARE_MS);
    for (int i = 0; i < N; i++) {
        /* a second value, or a value from a timer whose stop said it was pending */
        stale += hoare_tryrecv(hoare_timer_chan(timers[i]), &v) == 0;
        hoare_timer_free(timers[i]);
    }
    CHECK_EQ(early, 0);
    CHECK_EQ(missing, 0);
    CHECK_EQ(stale, 0);
}

/* ---- stop and reset of one timer or ticker from several goroutines and a thread at once (Go
 * allows it; each is a stop then a start inside, and two starts collided: "timer started twice") */

static hoare_timer *shared_timer;
static hoare_ticker *shared_ticker;

static void reset_shared(void *arg) {
    for (int i = 0; i < TEST_SCALE(20000); i++) {
        if (i % 3 == 2)
            hoare_timer_stop(shared_timer);
        else
            hoare_timer_reset(shared_timer, (i % 2 ? HOARE_SEC : HOARE_US));
        CHECK_EQ(hoare_ticker_reset(shared_ticker, i % 2 ? HOARE_SEC : 50 * HOARE_US), 0);
    }
    if (arg) hoare_wg_done(arg);
}

static void *reset_shared_thread(void *arg) {
    (void)arg;
    reset_shared(NULL);
    return NULL;
}

static void test_concurrent_resets(void) {
    REQUIRE((shared_timer = hoare_timer_start(HOARE_SEC)) != NULL);
    REQUIRE((shared_ticker = hoare_ticker_start(HOARE_SEC)) != NULL);
    hoare_wg wg = HOARE_WG_INIT;
    hoare_wg_add(&wg, 3);
    for (int i = 0; i < 3; i++) REQUIRE(hoare_go(reset_shared, &wg) == 0);
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, reset_shared_thread, NULL) == 0);
    hoare_wg_wait(&wg);
    pthread_join(th, NULL);
    /* both still work */
    int64_t v;
    hoare_timer_reset(shared_timer, HOARE_MS);
    CHECK_EQ(hoare_recv(hoare_timer_chan(shared_timer), &v), 0);
    CHECK_EQ(hoare_ticker_reset(shared_ticker, HOARE_MS), 0);
    CHECK_EQ(hoare_recv(hoare_ticker_chan(shared_ticker), &v), 0);
    hoare_timer_free(shared_timer);
    hoare_ticker_stop(shared_ticker);
}

/* ---- durations whose end overflows (INT64_MAX) mean for ever, not at once */

static _Atomic int forever_returned;

static void sleep_forever(void *arg) {
    (void)arg;
    hoare_sleep(INT64_MAX);
    atomic_store(&forever_returned, 1);
}

static void *sleep_forever_thread(void *arg) {
    sleep_forever(arg);
    return NULL;
}

static void select_forever(void *arg) {
    void **args = arg;
    hoare_case cs[] = {HOARE_RECV(args[0], NULL)};
    hoare_select_timeout(cs, 1, INT64_MAX);
    atomic_store(&forever_returned, 1);
    hoare_wg_done(args[1]);
}

static void test_forever(void) {
    hoare_chan *after = hoare_after(INT64_MAX);
    hoare_timer *timer = hoare_timer_start(INT64_MAX);
    /* due before the checks below, but not before its reset even on a slow sanitized run (a 1 ms
     * timer fired first in one CI run under ASan) */
    hoare_timer *reset = hoare_timer_start(20 * HOARE_MS);
    hoare_ticker *ticker = hoare_ticker_start(INT64_MAX);
    hoare_ticker *ticker_reset = hoare_ticker_start(HOARE_MS);
    REQUIRE(after && timer && reset && ticker && ticker_reset);
    CHECK_EQ(hoare_timer_reset(reset, INT64_MAX - 1), 1);
    CHECK_EQ(hoare_ticker_reset(ticker_reset, INT64_MAX), 0);
    REQUIRE(hoare_go(sleep_forever, NULL) == 0);
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, sleep_forever_thread, NULL) == 0);
    pthread_detach(th);
    hoare_chan *never = hoare_chan_make(0, 0); /* closed below, after the checks */
    REQUIRE(never != NULL);
    hoare_wg select_done = HOARE_WG_INIT;
    hoare_wg_add(&select_done, 1);
    void *select_args[2] = {never, &select_done};
    REQUIRE(hoare_go(select_forever, select_args) == 0);
    hoare_sleep(30 * HOARE_MS);
    int64_t v;
    CHECK_EQ(hoare_tryrecv(after, &v), EAGAIN);
    CHECK_EQ(hoare_tryrecv(hoare_timer_chan(timer), &v), EAGAIN);
    CHECK_EQ(hoare_tryrecv(hoare_timer_chan(reset), &v), EAGAIN);
    CHECK_EQ(hoare_tryrecv(hoare_ticker_chan(ticker), &v), EAGAIN);
    CHECK_EQ(hoare_tryrecv(hoare_ticker_chan(ticker_reset), &v), EAGAIN);
    CHECK_EQ(atomic_load(&forever_returned), 0);
    hoare_close(never); /* the select returns now, and the channel can go */
    hoare_wg_wait(&select_done);
    hoare_chan_release(never);
    hoare_chan_release(after);
    CHECK_EQ(hoare_timer_stop(timer), 1);
    hoare_timer_free(timer);
    hoare_timer_free(reset);
    hoare_ticker_stop(ticker);
    hoare_ticker_stop(ticker_reset);
    /* the sleepers stay asleep; the process ends with them */
}

/* In a child: its goroutines sleep for good, and a timer pending for ever keeps an idle M in the
 * poller, which changes how the later tests' timers fire (under TSan the spawning-loop test's
 * sleepers then went to the global queue, behind the loop). */
static void test_forever_child(void) {
    char out[4096];
    int status = test_run_self("forever", NULL, out, sizeof out);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) fprintf(stderr, "child: %s\n", out);
}

/* ---- 100,000 goroutines sleeping 10 ms complete promptly */

static void sleep10(void *arg) {
    hoare_sleep(10 * HOARE_MS);
    hoare_wg_done(arg);
}

static void test_many_sleepers(void) {
    int n = TEST_SCALE(100000);
    hoare_wg wg = HOARE_WG_INIT;
    int64_t t0 = hoare_now();
    hoare_wg_add(&wg, n);
    for (int i = 0; i < n; i++) REQUIRE(hoare_go(sleep10, &wg) == 0);
    hoare_wg_wait(&wg);
    int64_t took = hoare_now() - t0;
    CHECK(took >= 10 * HOARE_MS);
    CHECK(took < (TEST_SANITIZED ? 10 : 2) * HOARE_SEC);
}

/* ---- with one processor, a goroutine spawning in a loop does not keep woken sleepers waiting:
 * they run before the loop goes on. The spawner is back in runnext after every child (it runs its
 * child first); before, the sleepers it kept queued waited for the end of the loop: of those due
 * 30 ms or more before it ended, about none ran before it ended. Now nearly all do (their median
 * lateness is 1-8 ms; 25 ms was seen once with other tests running beside, so the check asks for
 * half of them, not for a lateness). */

enum { LOOP_SLEEPERS_MAX = 200000 };
static int64_t loop_sleeper_due[LOOP_SLEEPERS_MAX], loop_sleeper_woke[LOOP_SLEEPERS_MAX];

static hoare_wg loop_sleepers_done;

static void sleep_10ms_noting_wake(void *arg) {
    intptr_t i = (intptr_t)arg;
    loop_sleeper_due[i] = hoare_now() + 10 * HOARE_MS;
    hoare_sleep(10 * HOARE_MS);
    loop_sleeper_woke[i] = hoare_now();
    hoare_wg_done(&loop_sleepers_done);
}

struct spawn_loop {
    int spawned;
    int64_t end; /* when the loop stopped spawning */
    hoare_wg done;
};

static void spawn_sleepers_for_120ms(void *arg) {
    struct spawn_loop *run = arg;
    /* 16 KiB stacks: ASan unpoisons a dead goroutine's whole stack, and at the default size that
     * made the sleepers' exits cost more than the processor could keep up with */
    hoare_attr small = {.stack_size = 16384};
    int64_t start = hoare_now();
    while (run->spawned < LOOP_SLEEPERS_MAX && hoare_now() < start + 120 * HOARE_MS) {
        hoare_wg_add(&loop_sleepers_done, 1);
        REQUIRE(hoare_go_with(&small, sleep_10ms_noting_wake, (void *)(intptr_t)run->spawned) == 0);
        run->spawned++;
    }
    run->end = hoare_now();
    hoare_wg_done(&run->done);
}

static void test_sleepers_not_kept_behind_spawner(void) {
    int old = hoare_procs(1);
    struct spawn_loop run = {.spawned = 0, .end = 0, .done = HOARE_WG_INIT};
    hoare_wg_add(&run.done, 1);
    REQUIRE(hoare_go(spawn_sleepers_for_120ms, &run) == 0);
    hoare_wg_wait(&run.done);
    hoare_wg_wait(&loop_sleepers_done);
    hoare_procs(old);
    /* of the sleepers due 30 ms or more before the loop ended, how many ran before it ended */
    int due = 0, ran = 0;
    for (int i = 0; i < run.spawned; i++) {
        if (loop_sleeper_due[i] > run.end - 30 * HOARE_MS) continue;
        due++;
        ran += loop_sleeper_woke[i] < run.end;
    }
    REQUIRE(due > 0);
    /* Under an emulator (the AArch64 subset runs in qemu-user) a spawn takes about 40 us and the
     * threads' timing is uneven; under TSan a spawn takes milliseconds (26-47 in the loop's 120 ms),
     * too few sleepers for a proportion (6 of 17 ran once in CI; 13 of 17, all, or 3 of 19 in
     * other runs). The scenario runs there too; the other builds check it. */
    if (getenv("HOARE_TEST_EMULATOR") || TEST_TSAN) {
        printf("emulated or TSan: %d of %d sleepers ran before the loop ended, not checked\n", ran, due);
        return;
    }
    CHECK(2 * ran >= due);
    if (2 * ran < due)
        fprintf(stderr, "%d of %d sleepers due 30 ms before a spawning loop ended ran before it\n",
                ran, due);
}

/* ---- sleeping goroutines cost no thread and no CPU: the scheduler sleeps until the next timer */

static int64_t process_cpu(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * HOARE_SEC + ts.tv_nsec;
}

static int thread_count(void) {
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    if (!d) return -1;
    while (readdir(d)) n++;
    closedir(d);
    return n - 2; /* . and .. */
}

static hoare_wg long_sleep_started;

static void sleep_long(void *arg) {
    (void)arg;
    hoare_wg_done(&long_sleep_started);
    hoare_sleep(3600 * HOARE_SEC); /* far beyond the test: none fires while CPU is measured */
}

static void test_sleepers_cost_nothing(void) {
    int n = TEST_SCALE(1000000);
    int threads_before = thread_count();
    hoare_wg_add(&long_sleep_started, n);
    for (int i = 0; i < n; i++) REQUIRE(hoare_go(sleep_long, NULL) == 0);
    hoare_wg_wait(&long_sleep_started);
    hoare_sleep(50 * HOARE_MS); /* let the last ones park */
    int64_t cpu0 = process_cpu();
    hoare_sleep(500 * HOARE_MS);
    int64_t cpu = process_cpu() - cpu0;
    CHECK(cpu < 50 * HOARE_MS); /* 10% of one CPU at most, in practice ~0 */
    if (cpu >= 50 * HOARE_MS) fprintf(stderr, "CPU while %d goroutines sleep: %lld ns in 500 ms\n", n, (long long)cpu);
    CHECK(thread_count() <= threads_before + hoare_procs(0) + 2);
    /* they stay asleep: this is the last test, and the process ends with them */
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "forever") == 0) {
        test_begin(argv, 60);
        test_forever();
        TEST_MAIN_END();
    }
    test_begin(argv, 180);
    test_sleep_accuracy();
    test_after();
    test_after_released_early();
    test_ticker_drops();
    test_timer_stop_reset();
    test_many_timers_stopped_from_middle();
    test_concurrent_resets();
    test_forever_child();
    test_many_sleepers();
    test_sleepers_not_kept_behind_spawner();
    test_sleepers_cost_nothing();
    TEST_MAIN_END();
}
