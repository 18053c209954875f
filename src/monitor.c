/*
 * monitor.c - the monitor thread (Go's sysmon): a thread without a processor that watches the
 * others. It hands the processor of a thread stuck in a blocking region to another thread, and
 * asks goroutines that have run for too long without yielding to stop (preemption, see
 * preempt.c).
 *
 * It also polls the network when nobody has for 10 ms (all processors busy), and retries starting
 * a scheduler thread for goroutines queued when none could be started.
 *
 * In the background it gives back the pages of stack slots that stayed free for a while
 * (hoare__stack_scavenge) and sheds pooled objects unused for two intervals (hoare__pool_shed).
 *
 * It polls every 20 us while it finds things to do, backing off to 1 ms when it does not, and
 * sleeps while no goroutine runs at all (hoare__monitor_kick wakes it: a thread starting to run
 * goroutines, a goroutine entering a blocking region, a plain thread going to sleep) - for good,
 * or until the next background round while free slots or pooled objects remain. In that state it
 * also watches for a deadlock (deadlock.c).
 *
 * While every processor is busy (all_busy: each runs goroutines, on a runtime thread or on a plain
 * thread lent for a wait that goes on; none is idle, in a blocking region, held by a plain thread
 * between its calls, or retiring), the monitor backs off further, to 10 ms as Go's sysmon does:
 * it could only preempt after a full time slice, poll the network after 10 ms, or show a running
 * processor's timer to its thread by the coarse clock - and it sleeps no later than that timer's
 * deadline. On a machine with no spare core each round takes
 * the core from a goroutine (about 50 us of it on the VMs we measured: 5% of a core at 1 ms). A
 * change that needs it sooner kicks it: a processor going idle, a region entered, a thread taking
 * a processor, a lent thread woken (all through hoare__monitor_kick), an earlier timer
 * (hoare__monitor_timer_started).
 * A transition racing its last look costs at most one long sleep of latency, never a missed
 * deadlock: that path is the indefinite sleep's.
 */
#include "proc.h"

#include <signal.h>

enum {
    RETAKE_AFTER_NS = 20 * 1000,          /* a blocking region older than this loses its P ... */
    RETAKE_IDLE_AFTER_NS = 10 * 1000000,  /* ... or this, if there is no other work */
    NETPOLL_AFTER_NS = 10 * 1000 * 1000,  /* poll the network ourselves when nobody has for this */
    POLL_MIN_NS = 20 * 1000,
    POLL_MAX_NS = 1000 * 1000,            /* while goroutines run: bounds how long queued work can
                                             wait for an idle processor to be woken */
    POLL_BUSY_NS = 10 * 1000 * 1000,      /* while every processor is busy (Go's sysmon at most) */
};
#define BACKGROUND_NS (1000 * 1000 * 1000LL) /* idle: wake for the scavenger and the pools this often */

static hoare_note monitor_note;
static RUNTIME_TLS bool on_monitor;
HIDDEN _Atomic uint64_t hoare__monitor_rounds;

bool hoare__on_monitor(void) { return on_monitor; }
static _Atomic uint32_t monitor_sleeping;  /* 1 while in the indefinite sleep or a busy sleep */
static _Atomic int64_t busy_sleep_until;   /* while in a busy sleep: its end; else 0 */

/* The kicker made the monitor's condition false first (a P taken: npidle down; a region entered:
 * nblocking up; both seq_cst), then reads monitor_sleeping; the monitor sets monitor_sleeping, then
 * reads that condition again. Both reads are seq_cst, so one of the two sees the other's write
 * (Dekker): a plain load on x86, but on AArch64 a relaxed one may be answered before the kicker's
 * own write is visible, and the monitor could sleep for good while a P runs. */
void hoare__monitor_kick(void) {
    if (atomic_load_explicit(&monitor_sleeping, memory_order_seq_cst) &&
        atomic_exchange(&monitor_sleeping, 0)) {
        /* the coarse clock stood still while the monitor slept */
        hoare__coarse_advance(hoare__nanotime());
        hoare__note_wakeup(&monitor_note);
    }
}

/* Called after a processor's heap stored a new earliest timer. The fence orders that store before
 * our read of busy_sleep_until, as busy_sleep stores busy_sleep_until before it reads the heaps
 * (seq_cst): one of the two sees the other. Paid only for a new earliest timer (and wakep pays the
 * same fence when no thread polls). */
void hoare__monitor_timer_started(int64_t when) {
    atomic_thread_fence(memory_order_seq_cst);
    if (when < atomic_load_explicit(&busy_sleep_until, memory_order_relaxed)) hoare__monitor_kick();
}

HIDDEN bool hoare__preempt_check(P *p, int64_t now);

/* Goroutines queued while every processor idles and no thread looks for work: the thread that
 * should have run them could not be started (out of memory or threads, see startm). */
static bool work_stranded(void) {
    return atomic_load(&hoare__sched.runq_size) > 0 && atomic_load(&hoare__sched.nmspinning) == 0 &&
           atomic_load(&hoare__sched.npidle) == atomic_load(&hoare__sched.nprocs);
}

static bool nothing_runs(void) {
    return atomic_load(&hoare__sched.npidle) == atomic_load(&hoare__sched.nprocs) &&
           atomic_load(&hoare__sched.nblocking) == 0 && !work_stranded();
}

/* Every processor runs goroutines (see the top of the file). The reads are seq_cst against the
 * kickers' (idle count, regions), and P_RUNNING is read with acquire, so that p->m is the M that
 * took it (acquirep). */
static bool all_busy(void) {
    if (atomic_load(&hoare__sched.npidle) != 0 || atomic_load(&hoare__sched.nblocking) != 0)
        return false;
    int32_t nprocs = atomic_load(&hoare__sched.nprocs);
    for (int32_t i = 0; i < HOARE_MAX_PROCS; i++) {
        P *p = atomic_load_explicit(&hoare__allp[i], memory_order_acquire);
        if (!p) break;
        uint32_t status = atomic_load_explicit(&p->status, memory_order_acquire);
        if (status == P_RETIRED) continue;
        if (status != P_RUNNING || i >= nprocs || (atomic_load(&p->blocking) & REGION_IN))
            return false;
        M *m = __atomic_load_n(&p->m, __ATOMIC_ACQUIRE);
        if (!m) return false;
        if (m->plain_thread) {
            /* a plain thread counts while it lends itself for a wait that goes on: its waker
             * kicks us (hoare__ready_thread), as its goroutine must then be preempted soon */
            G *lender = __atomic_load_n(&m->lender, __ATOMIC_ACQUIRE);
            if (!lender || atomic_load(&lender->wake_key) == WAKE_WOKEN) return false;
        }
    }
    return true;
}

/* The earliest timer deadline of all processors (INT64_MAX: none). */
static int64_t earliest_timer(void) {
    int64_t first = INT64_MAX;
    for (int32_t i = 0; i < HOARE_MAX_PROCS; i++) {
        P *p = atomic_load_explicit(&hoare__allp[i], memory_order_acquire);
        if (!p) break;
        int64_t w = atomic_load(&p->timers.first);
        if (w < first) first = w;
    }
    return first;
}

/* Sleep up to POLL_BUSY_NS, no later than the earliest timer, if every processor is busy; false
 * (no sleep) if not, or if that timer is due within POLL_MAX_NS. */
static bool busy_sleep(void) {
    int64_t now = hoare__nanotime();
    int64_t until = now + POLL_BUSY_NS;
    atomic_store(&busy_sleep_until, until);
    hoare__note_clear(&monitor_note);
    atomic_store(&monitor_sleeping, 1);
    int64_t timer = earliest_timer();
    if (timer < until) until = timer;
    bool sleep = until - now > POLL_MAX_NS && all_busy();
    if (sleep) hoare__note_sleep(&monitor_note, until - now);
    atomic_store(&monitor_sleeping, 0);
    atomic_store(&busy_sleep_until, 0);
    return sleep;
}

static bool watch(int64_t now) {
    bool acted = false;
    /* Try again to start a thread for stranded work (not counted as acted: while threads cannot be
     * created, the retries back off like the polling). */
    if (work_stranded()) hoare__wakep();
    /* While every processor is busy nobody waits in the poller: descriptors that became ready
     * would wait until a processor runs out of work. Poll for them (Go's sysmon does too). */
    if (hoare__netpoll_waiters() > 0 && !atomic_load(&hoare__sched.netpoll_blocked) &&
        now - hoare__netpoll_last() > NETPOLL_AFTER_NS) {
        G *list = hoare__netpoll(0);
        if (list) {
            hoare__ready_list(list);
            acted = true;
        }
    }
    /* Every P that exists: one beyond hoare_procs() that still runs (it retires at its next
     * scheduling point) is watched too, so that its goroutine is asked to stop. Ps are made in
     * order of id. */
    for (int32_t i = 0; i < HOARE_MAX_PROCS; i++) {
        P *p = atomic_load_explicit(&hoare__allp[i], memory_order_acquire);
        if (!p) break;
        if (atomic_load_explicit(&p->status, memory_order_relaxed) != P_RUNNING) continue;
        uint64_t word = atomic_load_explicit(&p->blocking, memory_order_acquire);
        if (word & REGION_IN) {
            /* A region is timed from the round that first saw it (its word has a tick of its
             * own): regions cost no clock read, and one that ends between two rounds is never
             * seen twice. A goroutine's region brings the next round soon (it kicks us). */
            if (word != p->monitor_region_word) {
                p->monitor_region_word = word;
                p->monitor_region_since = now;
                acted |= !(word & REGION_THREAD);
                continue;
            }
            int64_t age = now - p->monitor_region_since;
            /* A goroutine's region is usually a long system call: its P is wanted as soon as no
             * other is idle. A plain thread holding its P between runtime calls (sched.c,
             * "Lending") is usually back within microseconds: only work takes it away. */
            bool thread_holds = word & REGION_THREAD;
            if (age > RETAKE_IDLE_AFTER_NS || (age > RETAKE_AFTER_NS && hoare__p_has_work(p)) ||
                (age > RETAKE_AFTER_NS && !thread_holds && atomic_load(&hoare__sched.npidle) == 0))
                acted |= hoare__retake_blocked(p, word);
            continue;
        }
        /* Goroutines queued behind one that has kept the processor since our last look, while
         * another processor idles: wake it to steal them (readying into runnext does not). */
        uint32_t tick = atomic_load_explicit(&p->schedtick, memory_order_relaxed);
        if (tick == p->monitor_schedtick && hoare__p_has_queued(p) &&
            atomic_load(&hoare__sched.npidle) > 0 && atomic_load(&hoare__sched.nmspinning) == 0) {
            hoare__wakep();
            acted = true;
        }
        acted |= hoare__preempt_check(p, now);
    }
    return acted;
}

static void *monitor_main(void *arg) {
    (void)arg;
    hoare__futex_uncounted = true;
    on_monitor = true;
    int64_t delay = POLL_MIN_NS;
    int quiet_rounds = 0;
    bool background = false; /* free slots or pooled objects wait for a later round */
    for (;;) {
        if (nothing_runs()) {
            /* while nothing runs, the program may be deadlocked (deadlock.c says how long to
             * sleep before it looks again) */
            uint64_t epoch = hoare__deadlock_epoch();
            int64_t sleep_ns = hoare__deadlock_watch(hoare__nanotime());
            hoare__note_clear(&monitor_note);
            atomic_store(&monitor_sleeping, 1);
            /* a pool registered since the last round kicked us, or sees monitor_sleeping here and
             * we see it (both seq_cst) */
            background |= hoare__pools_exist();
            if (background && (sleep_ns < 0 || sleep_ns > BACKGROUND_NS)) sleep_ns = BACKGROUND_NS;
            /* An event since the watch (a thread going to sleep, counted and kicking under
             * sched.lock) may have kicked before monitor_sleeping was set: the epoch shows it, and
             * the monitor looks again instead of sleeping through a deadlock. */
            if (nothing_runs() && hoare__deadlock_epoch() == epoch)
                hoare__note_sleep(&monitor_note, sleep_ns);
            atomic_store(&monitor_sleeping, 0);
            delay = POLL_MIN_NS;
            quiet_rounds = 0;
        } else if (delay < POLL_MAX_NS || !busy_sleep()) {
            hoare__note_clear(&monitor_note);
            hoare__note_sleep(&monitor_note, delay);
        }
        atomic_fetch_add_explicit(&hoare__monitor_rounds, 1, memory_order_relaxed);
        int64_t now = hoare__nanotime();
        hoare__coarse_advance(now);
        background = hoare__stack_scavenge(now);
        background |= hoare__pool_shed(now);
        if (watch(now)) {
            quiet_rounds = 0;
            delay = POLL_MIN_NS;
        } else if (++quiet_rounds > 50 && delay < POLL_MAX_NS) {
            delay *= 2;
        }
    }
    return NULL;
}

void hoare__monitor_start(void) {
    atomic_store_explicit(&hoare__coarse_now, hoare__nanotime(), memory_order_relaxed);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    /* deadlock reports are printed from here: libdw unwinding (under TSan above all) needs room */
    pthread_attr_setstacksize(&attr, 2 << 20);
    if (hoare__pthread_create(&t, &attr, monitor_main, NULL) != 0)
        hoare__fatal("cannot start the monitor thread");
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}
