/*
 * deadlock.c - deadlock detection (Go's checkdead), done by the monitor thread, off every hot path.
 *
 * The program is deadlocked when nothing can ever wake anybody:
 *  - every M is idle (none runs a goroutine, spins for work or polls the network), no goroutine
 *    is runnable, none is inside a blocking region, no timer is pending, no goroutine waits for a
 *    descriptor;
 *  - some goroutine or plain thread waits, or a plain thread or hoare_main's goroutine ended by
 *    hoare_exit (Go's Goexit from main: the program goes on until nothing is left, then reports
 *    "no goroutines");
 *  - every thread of the process that is not the runtime's is asleep in the runtime without a
 *    timer (counted in sched.nthreads_blocked by thread.c).
 * The first two are cheap and read under sched.lock ("a candidate"). The last needs the process's
 * thread count, which only the kernel knows (/proc/self/stat): that read is done only by the
 * monitor, outside the lock, once the candidate state has lasted QUIET_NS with no event that could
 * end it (sched.deadlock_epoch unchanged: no M woken, no blocked thread woken). The candidate state
 * and the epoch are checked again after the read; a thread the runtime does not know about that
 * runs then makes the counts differ, so the check is conservative: it never reports a program in
 * which some thread may still act.
 *
 * A candidate that is not a deadlock (a thread busy outside the runtime) is looked at again after
 * doubling intervals, up to RECHECK_MAX_NS; any event resets the interval, so a real deadlock is
 * reported within QUIET_NS plus one monitor round of its start.
 */
#include "proc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
    QUIET_NS = 100 * 1000 * 1000,
    RECHECK_MAX_NS = 800 * 1000 * 1000,
};

/* The monitor's view of the current candidate (monitor thread only). */
static struct {
    bool valid;
    uint64_t epoch;
    int64_t since;
    int64_t interval;
} watch;

static int check_enabled = -1;

void hoare__deadlock_count_locked(int delta) {
    hoare__sched.nthreads_blocked += delta;
    hoare__sched.deadlock_epoch++;
    /* a thread going to sleep while no processor runs may complete a deadlock: the monitor
     * sleeps until kicked in that state */
    if (delta > 0) hoare__monitor_kick();
}

HIDDEN _Atomic uint64_t hoare__deadlock_probes;

uint64_t hoare__deadlock_epoch(void) {
    hoare__lock(&hoare__sched.lock);
    uint64_t epoch = hoare__sched.deadlock_epoch;
    hoare__unlock(&hoare__sched.lock);
    return epoch;
}

/* The main thread (the thread group's leader) ended by hoare_exit: the kernel keeps counting it
 * until the whole process exits. Guarded by sched.lock. */
static bool leader_exited;

void hoare__deadlock_thread_exits(void) {
    hoare__init();
    bool leader = gettid() == getpid();
    hoare__lock(&hoare__sched.lock);
    hoare__sched.nthreads_exited++;
    if (leader) leader_exited = true;
    hoare__sched.deadlock_epoch++;
    hoare__monitor_kick();
    hoare__unlock(&hoare__sched.lock);
}

/* hoare_main's goroutine ended by hoare_exit: its caller, blocked for ever, does not count as a
 * thread left. Guarded by sched.lock. */
static bool main_goexited;

void hoare__deadlock_main_goexits(void) {
    hoare__lock(&hoare__sched.lock);
    main_goexited = true;
    hoare__unlock(&hoare__sched.lock);
}

/* Threads in this process (field 20 of /proc/self/stat), -1 if unknown. */
static int process_threads(void) {
    atomic_fetch_add_explicit(&hoare__deadlock_probes, 1, memory_order_relaxed);
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f) return -1;
    char buf[1024];
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = 0;
    char *s = strrchr(buf, ')');
    if (!s) return -1;
    int field = 2;
    for (; *s && field < 20; s++)
        if (*s == ' ') field++;
    return atoi(s);
}

/* The cheap conditions. Caller holds sched.lock. */
static bool candidate_locked(void) {
    struct sched *s = &hoare__sched;
    if (s->nmidle != s->nm) return false; /* some M runs, spins or polls */
    if (atomic_load(&s->netpoll_blocked) || atomic_load(&s->nblocking) > 0) return false;
    if (atomic_load(&s->runq_size) > 0 || hoare__any_local_work()) return false;
    if (hoare__timers_next() != INT64_MAX || hoare__netpoll_waiters() > 0) return false;
    return atomic_load(&s->ngoroutines) > 0 || s->nthreads_blocked > 0 || s->nthreads_exited > 0;
}

/* The threads the count must leave out: the Ms and the monitor (and TSan's background thread),
 * and a main thread that ended by hoare_exit. */
static int runtime_threads_locked(void) {
    int n = hoare__sched.nm + 1 + (leader_exited ? 1 : 0);
#ifdef HOARE_TSAN
    n += 1;
#endif
    return n;
}

int64_t hoare__deadlock_watch(int64_t now) {
    if (check_enabled < 0) {
        check_enabled = hoare__env_switch("HOARE_DEADLOCK", true);
    }
    if (!check_enabled) return -1;
    hoare__lock(&hoare__sched.lock);
    bool candidate = candidate_locked();
    uint64_t epoch = hoare__sched.deadlock_epoch;
    hoare__unlock(&hoare__sched.lock);
    if (!candidate) {
        watch.valid = false;
        return -1;
    }
    if (!watch.valid || watch.epoch != epoch) {
        watch.valid = true;
        watch.epoch = epoch;
        watch.since = now;
        watch.interval = QUIET_NS;
        return watch.interval;
    }
    if (now - watch.since < watch.interval) return watch.interval - (now - watch.since);

    int threads = process_threads();
    hoare__lock(&hoare__sched.lock);
    bool dead = candidate_locked() && hoare__sched.deadlock_epoch == epoch && threads >= 0 &&
                threads - runtime_threads_locked() == hoare__sched.nthreads_blocked;
    bool none_left = atomic_load(&hoare__sched.ngoroutines) == 0 &&
                     hoare__sched.nthreads_blocked == (main_goexited ? 1 : 0);
    hoare__unlock(&hoare__sched.lock);
    if (dead && none_left) hoare__fatal("no goroutines (main called hoare_exit) - deadlock!");
    if (dead) hoare__fatal("all goroutines are asleep - deadlock!");
    /* some thread outside the runtime may still act: look again, less often */
    watch.since = now;
    if (watch.interval < RECHECK_MAX_NS) watch.interval *= 2;
    return watch.interval;
}
