/*
 * test_procs.c - GOMAXPROCS: the default follows the CPUs this process may use, HOARE_PROCS
 * overrides it, and hoare_procs changes it while goroutines run (never more goroutines running
 * at once than processors, once the change has taken effect), including while processors go idle
 * (the idle list stays a list of distinct processors below hoare_procs). The global queue keeps its
 * runs whole while goroutines come and go through it in every way.
 */
#include "test.h"

#include "proc.h"

#include <pthread.h>
#include <sched.h>
#include <stdint.h>

static _Atomic int running, max_running, stop;
static _Atomic long chunks;

static void worker(void *arg) {
    (void)arg;
    while (!atomic_load(&stop)) {
        /* not preemptible inside a chunk, so that `running` counts goroutines really running */
        hoare_preempt_disable();
        int now = atomic_fetch_add(&running, 1) + 1;
        int seen = atomic_load(&max_running);
        while (now > seen && !atomic_compare_exchange_weak(&max_running, &seen, now)) {}
        for (volatile int i = 0; i < 20000; i++) {}
        atomic_fetch_sub(&running, 1);
        atomic_fetch_add(&chunks, 1);
        hoare_preempt_enable();
        hoare_yield();
    }
}

/* Wait until max_running reaches want (parallelism observed), bounded. */
static int observe_parallelism(int want) {
    int64_t deadline = hoare_now() + 10 * HOARE_SEC;
    while (atomic_load(&max_running) < want && hoare_now() < deadline) hoare_sleep(HOARE_MS);
    return atomic_load(&max_running);
}

static void test_change_while_running(void) {
    int old = hoare_procs(2);
    enum { N = 8 };
    for (int i = 0; i < N; i++) REQUIRE(hoare_go(worker, NULL) == 0);
    CHECK_EQ(observe_parallelism(2), 2);

    CHECK_EQ(hoare_procs(1), 2);
    CHECK_EQ(hoare_procs(0), 1);
    /* Every processor beyond the first retires at its goroutine's next yield (the workers yield
     * every few microseconds, but a loaded machine may not run that thread for a while): wait
     * until it has, then measure a fresh window. */
    int64_t retire_deadline = hoare_now() + 10 * HOARE_SEC;
    while (atomic_load(&hoare__allp[1]->status) != P_RETIRED && hoare_now() < retire_deadline)
        hoare_sleep(HOARE_MS);
    CHECK_EQ(atomic_load(&hoare__allp[1]->status), P_RETIRED);
    atomic_store(&max_running, 0);
    /* observe a window of at least 2000 chunks (time alone says nothing on a loaded machine) */
    long start = atomic_load(&chunks);
    int64_t deadline = hoare_now() + 10 * HOARE_SEC;
    while (atomic_load(&chunks) - start < 2000 && hoare_now() < deadline) hoare_sleep(5 * HOARE_MS);
    CHECK(atomic_load(&chunks) - start >= 2000);
    CHECK_EQ(atomic_load(&max_running), 1);

    CHECK_EQ(hoare_procs(2), 1);
    atomic_store(&max_running, 0);
    CHECK_EQ(observe_parallelism(2), 2);

    atomic_store(&stop, 1);
    CHECK_EQ(test_wait_count(0), 0);
    hoare_procs(old);
}

static void test_bad_values(void) {
    int cur = hoare_procs(0);
    CHECK_EQ(hoare_procs(-5), cur);
    CHECK_EQ(hoare_procs(0), cur);
    CHECK_EQ(hoare_procs(100000), cur);
    CHECK_EQ(hoare_procs(0), HOARE_MAX_PROCS);
    hoare_procs(cur);
}

/* ---- shrinking while a processor goes idle: its M looked at nprocs, spun for work and then gave
 * the P up. It must retire, not join the idle list: growing again put it there a second time,
 * the list became a cycle, and the next shrink walked it off its array (test_mutex crashed in 1
 * run in 100). */

static hoare_wg idle_wg;
static void brief(void *arg) {
    (void)arg;
    hoare_wg_done(&idle_wg);
}

/* The idle list under sched.lock: distinct processors below nprocs, as many as npidle. */
static bool idle_list_sound(void) {
    hoare__lock(&hoare__sched.lock);
    int32_t nprocs = atomic_load(&hoare__sched.nprocs), count = 0;
    bool sound = true, seen[HOARE_MAX_PROCS] = {false};
    for (P *p = hoare__sched.idle_p; p && sound; p = p->link) {
        sound = p->id < nprocs && !seen[p->id] && atomic_load(&p->status) == P_IDLE;
        if (sound) seen[p->id] = true;
        count++;
    }
    sound = sound && count == atomic_load(&hoare__sched.npidle);
    hoare__unlock(&hoare__sched.lock);
    return sound;
}

static void test_shrink_while_going_idle(void) {
    int old = hoare_procs(2);
    int rounds = TEST_SCALE(10000), unsound = 0;
    /* stops at the first unsound list: a cycle would take the next shrink off its array */
    for (int i = 0; i < rounds && !unsound; i++) {
        /* wake the processors, then shrink while their Ms spin for more work and give up */
        hoare_wg_add(&idle_wg, 2);
        REQUIRE(hoare_go(brief, NULL) == 0);
        REQUIRE(hoare_go(brief, NULL) == 0);
        hoare_wg_wait(&idle_wg);
        hoare_procs(1);
        for (int64_t until = hoare_now() + (i % 8) * 10 * HOARE_US; hoare_now() < until;) {}
        unsound += !idle_list_sound();
        hoare_procs(2);
        unsound += !idle_list_sound();
    }
    CHECK_EQ(unsound, 0);
    hoare_procs(old);
}

/* ---- the global queue's runs (sched.c): each run's first goroutine holds its length and its last
 * goroutine, and takers cut whole runs without walking them. Checked under sched.lock while a
 * close readies thousands at once (marked runs), plain threads spawn (the lock-free stack,
 * drained into runs), and processors take from it (whole runs, and first runs cut in part). */

static bool global_queue_sound(void) {
    hoare__lock(&hoare__sched.lock);
    int32_t total = 0;
    bool sound = true;
    G *last = NULL;
    for (G *run = hoare__sched.runq_head; run && sound; run = last->schedlink) {
        sound = run->run_n >= 1 && run->run_n <= RUNQ_SIZE / 2 + 1;
        last = run;
        for (int32_t i = 1; sound && i < run->run_n; i++) sound = (last = last->schedlink) != NULL;
        sound = sound && last == run->run_tail;
        total += run->run_n;
    }
    sound = sound && total == hoare__sched.runq_n && last == hoare__sched.runq_tail;
    hoare__unlock(&hoare__sched.lock);
    return sound;
}

/* Under TSan every spawn also creates a fiber (a 768 KiB state cleared each time): fewer, still
 * several runs' worth of waiters for the close. */
enum { QUEUE_WAITERS = TEST_TSAN ? 1000 : 5000, QUEUE_SPAWNS = TEST_TSAN ? 2000 : 20000 };
static hoare_wg queue_wg;
static void queue_waiter(void *arg) {
    CHECK_EQ(hoare_recv((hoare_chan *)arg, NULL), EPIPE);
    hoare_wg_done(&queue_wg);
}
static void queue_brief(void *arg) {
    (void)arg;
    hoare_wg_done(&queue_wg);
}
static void *queue_spawner(void *arg) {
    (void)arg;
    for (int i = 0; i < QUEUE_SPAWNS; i++) REQUIRE(hoare_go(queue_brief, NULL) == 0);
    return NULL;
}
static void queue_closer(void *arg) {
    hoare_chan *gate = arg;
    for (int i = 0; i < QUEUE_WAITERS; i++) REQUIRE(hoare_go(queue_waiter, gate) == 0);
    hoare_yield(); /* the waiters park (child first: most have already) */
    REQUIRE(hoare_close(gate) == 0);
    hoare_wg_done(&queue_wg);
}

static _Atomic bool queue_checking;
static _Atomic int queue_unsound, queue_checks;
static void *queue_checker(void *arg) {
    (void)arg;
    while (atomic_load(&queue_checking)) {
        if (!global_queue_sound()) atomic_fetch_add(&queue_unsound, 1);
        atomic_fetch_add(&queue_checks, 1);
        /* the walk holds sched.lock: leave the processors time to use the queue */
        struct timespec pause = {0, 200 * 1000};
        nanosleep(&pause, NULL);
    }
    return NULL;
}

static void test_global_queue_runs(void) {
    int old = hoare_procs(2);
    atomic_store(&queue_checking, true);
    pthread_t checker, spawners[2];
    REQUIRE(pthread_create(&checker, NULL, queue_checker, NULL) == 0);
    for (int round = 0; round < 3; round++) {
        hoare_chan *gate = hoare_chan_make(0, 0);
        REQUIRE(gate != NULL);
        hoare_wg_add(&queue_wg, QUEUE_WAITERS + 1 + 2 * QUEUE_SPAWNS);
        for (int i = 0; i < 2; i++) REQUIRE(pthread_create(&spawners[i], NULL, queue_spawner, NULL) == 0);
        REQUIRE(hoare_go(queue_closer, gate) == 0);
        for (int i = 0; i < 2; i++) pthread_join(spawners[i], NULL);
        hoare_wg_wait(&queue_wg);
        hoare_chan_release(gate);
    }
    atomic_store(&queue_checking, false);
    pthread_join(checker, NULL);
    CHECK(atomic_load(&queue_checks) > 0);
    CHECK_EQ(atomic_load(&queue_unsound), 0);
    CHECK(global_queue_sound());
    hoare_procs(old);
}

/* ---- children: HOARE_PROCS, and the affinity mask */

static int child_print_procs(void) {
    fprintf(stderr, "procs=%d\n", hoare_procs(0));
    return 0;
}

static void nothing(void *arg) { hoare_wg_done(arg); }

static int child_spawn(void) {
    hoare_wg wg = HOARE_WG_INIT;
    hoare_wg_add(&wg, 1);
    if (hoare_go(nothing, &wg) != 0) return 1;
    hoare_wg_wait(&wg);
    return 0;
}

static int child_one_cpu(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(0, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) return 1;
    return child_print_procs();
}

static void test_env_and_affinity(void) {
    char out[4096];
    char *env3[] = {"HOARE_PROCS=3", NULL};
    int status = test_run_self("print", env3, out, sizeof out);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(strstr(out, "procs=3") != NULL);

    char *noenv[] = {"HOARE_PROCS=", NULL};
    status = test_run_self("one-cpu", noenv, out, sizeof out);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(strstr(out, "procs=1") != NULL);

    /* more than the limit is the limit; a malformed value is reported and ignored (atoi once read
     * "4294967297" as 1 and "2abc" as 2) */
    char *huge[] = {"HOARE_PROCS=4294967297", NULL};
    status = test_run_self("one-cpu", huge, out, sizeof out);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(strstr(out, "procs=256") != NULL);
    const char *bad[] = {"HOARE_PROCS=1e3", "HOARE_PROCS=2abc", "HOARE_PROCS=0", "HOARE_PROCS=-3",
                         "HOARE_PROCS=99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *env[] = {(char *)bad[i], NULL};
        status = test_run_self("one-cpu", env, out, sizeof out);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        CHECK(strstr(out, "procs=1") != NULL);
        CHECK(strstr(out, "expected a number") != NULL);
    }
    /* the other variables likewise: a switch takes 0/1, off/on...; a size takes k/m/g */
    char *switches[] = {"HOARE_PREEMPT=off", "HOARE_LEND=bogus", "HOARE_STACK_SIZE=2G", NULL};
    status = test_run_self("spawn", switches, out, sizeof out);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(strstr(out, "HOARE_PREEMPT") == NULL);
    CHECK(strstr(out, "HOARE_LEND=bogus: expected 0 or 1") != NULL);
    CHECK(strstr(out, "HOARE_STACK_SIZE=2G: expected a size") != NULL);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "print") == 0) return child_print_procs();
    if (argc > 1 && strcmp(argv[1], "one-cpu") == 0) return child_one_cpu();
    if (argc > 1 && strcmp(argv[1], "spawn") == 0) return child_spawn();
    test_begin(argv, 120);
    test_bad_values();
    test_change_while_running();
    test_shrink_while_going_idle();
    test_global_queue_runs();
    test_env_and_affinity();
    TEST_MAIN_END();
}
