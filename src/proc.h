/*
 * proc.h - processors (P), machines (M) and the scheduler's shared state (sched.c). Internal.
 *
 * G/M/P as in Go: an M is an OS thread; it needs a P to run goroutines; there are hoare_procs() Ps.
 * Each P has a bounded lock-free run queue (owner pushes at tail; owner and thieves take at head
 * with CAS) and a runnext slot, a cache of free goroutine slots, and a timer heap.
 */
#ifndef HOARE_PROC_H
#define HOARE_PROC_H

#include <pthread.h>
#include <signal.h>

#include "runtime.h"
#include "stack.h"
#include "stats.h"

#define RUNQ_SIZE 256
#define HOARE_CACHE_LINE 64 /* bytes; what false sharing is measured in */

/* A processor's timers: a 4-ary min-heap on `when`, guarded by lock. `first` mirrors the root's
 * `when` (INT64_MAX if empty) so that schedulers can peek without locking. Timers live in scattered
 * descriptors, a page apart (a goroutine's own timer is in its G), and a store into one is a cache
 * miss, on some VMs a hypervisor fault: so sifting touches only the heap's two arrays. Each entry
 * keeps a copy of its timer's `when` and the number of its slot; the slot (one per pending timer,
 * its number kept in the timer, written once at push) holds the timer and the entry's position,
 * updated at each move. */
struct timer_entry {
    int64_t when;
    int32_t slot;
};
struct timer_slot {
    hoare_rtimer *t;
    int32_t pos; /* in v; a free slot holds the next free one + 1 here (0: none) */
};
struct timer_heap {
    hoare_lock lock;
    struct timer_entry *v; /* cap entries, n in use */
    struct timer_slot *slots; /* cap slots, n in use */
    int32_t n, cap;
    int32_t free_slot; /* first free slot + 1 (0: none) */
    _Atomic int64_t first;
};

enum p_status {
    P_IDLE = 0,   /* on the idle list, no M */
    P_RUNNING,    /* owned by an M (which may be inside a blocking region: see P.blocking) */
    P_RETIRED,    /* id >= hoare_procs(): not used until procs grows again */
};

struct hoare_p {
    int32_t id;
    _Atomic uint32_t status;         /* enum p_status */
    M *m;                            /* owner while RUNNING/BLOCKING (stored atomically: the
                                        monitor reads it) */
    P *link;                         /* idle list, guarded by sched.lock */
    _Atomic uint32_t schedtick;      /* time slices started on this P (owner writes, monitor reads) */
    uint32_t picks_left;             /* owner only: at 0 (every 61st local pick) check the global queue */
    uint32_t spawn_chain;            /* owner only: children run first since a goroutine last
                                        switched out (hoare_go_with bounds it) */
    _Atomic uint32_t slice_over;     /* the monitor found the time slice over while goroutines
                                        wait: the owner's next pick takes its queue's head before
                                        runnext (next_local) */
    _Atomic uint32_t runq_head;      /* next to take: owner and thieves, by CAS */
    _Atomic uint32_t runq_tail;      /* next free slot: written by the owner only */
    G *_Atomic runq[RUNQ_SIZE];
    _Atomic(G *) runnext;            /* runs next; set by the owner, taken by the owner or a thief */
    _Atomic uint32_t runnext_puts;   /* stores into runnext (owner writes, thieves read) */
    g_cache gcache;                  /* owner only */
    uint64_t goid_next, goid_end;    /* owner only: a batch of goroutine ids */
    struct timer_heap timers;
    /* Blocking regions: while its M is inside one, blocking = (tick << 2) | REGION_IN (plus
     * REGION_THREAD for a plain thread holding the P between runtime calls), with a tick that
     * grows at every region. Whoever clears it by CAS owns the P: the M at blocking_end (it keeps
     * the P) or the monitor (it hands the P to another M). The tick rules out ABA. */
    _Atomic uint64_t blocking;
    uint64_t blocking_tick;          /* owner only */
    /* the monitor's view of the region (Go's syscalltick/syscallwhen): the word it last saw, and
     * when it first saw it - no clock read on the region's own path */
    uint64_t monitor_region_word;
    int64_t monitor_region_since;
    /* preemption: the monitor's view of the time slice (see monitor.c) */
    uint32_t monitor_schedtick;
    int64_t monitor_since;
    int64_t monitor_preempt_sent;    /* last SIGURG for this slice: resent at most every ms */
};

enum { REGION_IN = 1, REGION_THREAD = 2 }; /* P.blocking's flags */

enum pend_kind { PEND_NONE = 0, PEND_PARK, PEND_YIELD, PEND_SPAWN, PEND_PREEMPT, PEND_EXIT, PEND_BLOCKED };

struct hoare_m {
    int32_t id;
    P *p;                  /* attached processor (NULL while idle or in a blocking region) */
    G *curg;               /* goroutine running on this M, NULL on the scheduler context */
    G g0;                  /* the scheduler context: runs on the thread's own stack */
    hoare_note park;       /* sleeps here when idle */
    M *link;               /* idle list, guarded by sched.lock */
    M *alllink;            /* all Ms, prepend-only */
    bool spinning;         /* looking for work; counted in sched.nmspinning */
    G *preempted_head;     /* goroutines preempted on this M: they resume on this M only (so the */
    G *preempted_tail;     /* compiler's cached thread-local addresses stay right); owner only */
    P *nextp;              /* P handed over by the waker */
    int64_t lend_until;    /* lending: the thread leaves once the coarse clock passes this
                            * (owner only) */
    bool lend_masked;      /* lending: asynchronous signals blocked, lend_saved_mask to restore */
    sigset_t lend_saved_mask;
    uint64_t region_word;  /* P.blocking as set by this M's last blocking region (owner only) */
    G *lender;             /* the waiter record of the plain thread this M is, while the thread
                            * runs goroutines as it waits (NULL for the runtime's own Ms) */
    bool plain_thread;     /* a plain thread's M for lending (sched.c), not one the runtime started */
    void *sigstack;        /* the thread's current alternate signal stack (HOARE_SIGSTACK_SIZE) */
    void *sigstack_free;   /* spare ones, linked through their first word (preempt.c); owner only */
    int *errno_loc;        /* this thread's errno: saved/restored per goroutine at each switch
                            * without a call to __errno_location (m is re-read after a switch) */
    pthread_t thread;
    uint64_t rand_state;
    /* What the context we switch to must do first for the one we left (see run_pending). */
    enum pend_kind pend_kind;
    G *pend_g;
    bool (*pend_commit)(G *g, void *arg);
    void *pend_arg;
    struct m_stats stats;  /* stats.h: counters this M writes, hoare_stats_read sums */
};

/* Scheduler-wide state. Lock order: sched.lock before a timer heap lock; channel and sync locks are
 * never held while taking sched.lock except through hoare__ready (which takes it only briefly for the
 * global queue).
 *
 * The fields are grouped on cache lines by how often they are written: every hand-off reads nprocs
 * and npidle (wakep), an M writes nmspinning each time it starts or stops looking for work, spawns
 * write ngoroutines, and plain threads push onto inject. Sharing a line with a field written that
 * often turned each read into a transfer between the cores (bench/analysis.md: select, from a
 * plain thread and in a goroutine). */
struct sched {
    /* read on every hand-off, written when a processor goes idle or the count changes */
    _Alignas(HOARE_CACHE_LINE) _Atomic int32_t nprocs; /* hoare_procs() */
    _Atomic int32_t npidle;

    /* written by Ms as they start and stop spinning */
    _Alignas(HOARE_CACHE_LINE) _Atomic int32_t nmspinning;

    /* the lock and what it guards */
    _Alignas(HOARE_CACHE_LINE) hoare_lock lock;
    P *idle_p;
    M *idle_m;
    int32_t nmidle;
    int32_t nm;                   /* Ms created */
    G *runq_head, *runq_tail;     /* global run queue: a list of runs (sched.c) */
    int32_t runq_n;               /* ... this long, */
    int32_t nthreads_blocked;     /* plain threads asleep without timeout */
    int32_t nthreads_exited;      /* plain threads ended by hoare_exit */
    uint64_t deadlock_epoch;      /* bumped by every event that can end a deadlock (an M woken, a
                                   * blocked thread woken) */

    /* the global queue's lock-free part, polled by spinning Ms */
    _Alignas(HOARE_CACHE_LINE) _Atomic(G *) inject; /* a lock-free stack of goroutines newer than
                                                     * the list (see sched.c) */
    _Atomic int32_t runq_size;    /* list and stack together */

    /* written per spawn, exit, blocking region or poller wait */
    _Alignas(HOARE_CACHE_LINE) _Atomic int64_t ngoroutines; /* alive goroutines */
    _Atomic int32_t nblocking;    /* goroutines inside blocking regions */
    _Atomic uint32_t netpoll_blocked; /* an M is blocked in hoare__netpoll */
    _Atomic int64_t netpoll_until;    /* ...until this time (INT64_MAX: forever) */
    _Atomic(M *) allm;
}; /* its alignment rounds its size up to whole lines: no other global shares them */

#define HOARE_SIGSTACK_SIZE (256 * 1024) /* libdw's unwinder runs on it (crash reports) */
#ifndef SS_AUTODISARM
#define SS_AUTODISARM (1U << 31) /* Linux 4.7+; glibc's headers lack it */
#endif

extern HIDDEN struct sched hoare__sched;
/* Preemption counters (preempt.c), for tests: SIGURGs the monitor sent, and switches they caused. */
extern HIDDEN _Atomic uint64_t hoare__preempt_signals, hoare__preempt_switches;
/* The monitor's rounds since the start (monitor.c), for tests. */
extern HIDDEN _Atomic uint64_t hoare__monitor_rounds;
/* sigaltstack takes SS_AUTODISARM here (probed by hoare__preempt_init before any M starts). */
extern HIDDEN bool hoare__sigstack_autodisarm;
/* hoare_now() as of the monitor's last round (or of the poller's M at a timer's deadline): cheap
 * timestamps for dumps (wait durations), and the clock a switch checks its P's timers by. */
extern HIDDEN _Atomic int64_t hoare__coarse_now;
/* Move the coarse clock forward to now (never back: two threads may set it). */
static inline void hoare__coarse_advance(int64_t now) {
    int64_t c = atomic_load_explicit(&hoare__coarse_now, memory_order_relaxed);
    while (c < now && !atomic_compare_exchange_weak_explicit(&hoare__coarse_now, &c, now,
                                                             memory_order_relaxed, memory_order_relaxed)) {}
}
extern HIDDEN P *_Atomic hoare__allp[HOARE_MAX_PROCS];

/* The calling thread's M: read it directly only before any switch in the reading function. */
extern HIDDEN RUNTIME_TLS M *hoare__tls_m;
/* hoare__g() without a call on a goroutine; valid only before any switch in the calling function. */
static inline G *hoare__g_here(void) {
    M *m = hoare__tls_m;
    G *g = m ? m->curg : NULL;
    return likely(g != NULL) ? g : hoare__g();
}
/* The calling thread's M (NULL on a plain thread), read afresh (the goroutine may have migrated). */
HIDDEN M *hoare__getm(void);
/* The P of the calling goroutine/scheduler context, NULL on a plain thread. */
HIDDEN P *hoare__curp(void);
HIDDEN void hoare__wakep(void);
HIDDEN void hoare__monitor_start(void);
HIDDEN void hoare__preempt_init(void);
/* Called by the preemption signal handler on a goroutine at a safe point: switch away. */
HIDDEN void hoare__preempt_switch(M *m, G *g);
/* Unmap m's spare alternate stacks beyond the few it keeps (preempt.c). On m's own thread, in its
 * scheduler context: no signal handler of the thread is then running on a spare. */
HIDDEN void hoare__sigstack_trim(M *m);
/* Alternate stacks the preemption handler mapped, less those hoare__sigstack_trim unmapped (which
 * may include an M's first one, so this can undercount), for tests. */
extern HIDDEN _Atomic int64_t hoare__sigstacks_extra;
/* True on the monitor thread (whose reports, e.g. a deadlock, are about the others). */
HIDDEN bool hoare__on_monitor(void);
/* Wake the monitor if it sleeps: for want of running goroutines, or long while every processor
 * is busy (monitor.c). */
HIDDEN void hoare__monitor_kick(void);
/* A timer was started that is the earliest of its processor: wake the monitor if it sleeps past
 * `when` (the coarse clock must show the timer at its deadline). */
HIDDEN void hoare__monitor_timer_started(int64_t when);
/* Monitor: take p from an M that has been inside a blocking region since before `since`. */
HIDDEN bool hoare__retake_blocked(P *p, uint64_t word);
HIDDEN bool hoare__p_has_work(P *p);
/* Monitor: p has had goroutines waiting behind a long-running one; wake an idle processor. */
HIDDEN bool hoare__p_has_queued(P *p);
HIDDEN void hoare__timers_move(P *from, P *to);
/* A goroutine id: from p's batch, or (p NULL) straight from the global counter. */
HIDDEN uint64_t hoare__new_goid(P *p);
/* Some P's local run queue is not empty. */
HIDDEN bool hoare__any_local_work(void);

/* Plain threads (thread.c). */
/* The wake word of a thread waiter record (G.wake_key): see thread.c. */
enum { WAKE_SPINNING = 0, WAKE_WOKEN = 1, WAKE_SLEEPING = 2 };
/* The calling plain thread's M for lending (NULL: the thread cannot lend). Its p, when not NULL,
 * is a processor the thread holds between runtime calls (sched.c, "Lending"). */
extern HIDDEN RUNTIME_TLS M *hoare__tls_lend_m;
HIDDEN M *hoare__thread_lend_m_slow(void);
static inline M *hoare__thread_lend_m(void) {
    M *m = hoare__tls_lend_m;
    return likely(m != NULL) ? m : hoare__thread_lend_m_slow();
}
HIDDEN void hoare__threads_init(void);
/* hoare__park and hoare__ready for a thread waiter record g (the calling thread's own, for park). */
HIDDEN void hoare__park_thread(G *g, const char *reason, bool (*commit)(G *, void *), void *arg);
HIDDEN void hoare__ready_thread(G *g);
/* The calling plain thread's waiter record if it has one (never allocates: signal handlers). */
HIDDEN G *hoare__thread_waiter_peek(void);
/* The calling plain thread's cache of goroutine slots (for spawning). */
HIDDEN g_cache *hoare__thread_gcache(void);
/* Call fn for every thread waiter record that waits now (dumps). */
HIDDEN void hoare__each_thread_waiter(void (*fn)(G *g, void *arg), void *arg);

/* Lending (sched.c): a plain thread that waits runs goroutines on an idle processor meanwhile. */
/* A new M for a plain thread to lend (its thread-specific fields are set by the thread). */
HIDDEN M *hoare__lend_m_new(void);
/* m is the calling thread's: its pthread, errno and stack (m's scheduler context, g0). */
HIDDEN void hoare__m_bind_thread(M *m);
/* Run goroutines on the calling thread until waiter is woken (true), or until there is nothing
 * to run (false: the thread keeps the processor, unless it lent itself for long). false at once if
 * no processor is free. */
HIDDEN bool hoare__lend(M *m, G *waiter);
/* The processor the thread keeps has goroutines queued: worth lending again (a hint). */
HIDDEN bool hoare__lend_wanted(M *m);
/* The thread goes to sleep or exits: give up the processor it holds, if any. */
HIDDEN void hoare__lend_drop(M *m);
/* Lending is possible in this process (it relies on preemption to return promptly). */
HIDDEN bool hoare__preempt_enabled(void);


/* Deadlock detection (deadlock.c). */
/* A thread starts (+1) or stops (-1) sleeping without a timer. Caller holds sched.lock. */
HIDDEN void hoare__deadlock_count_locked(int delta);
/* The monitor, while no processor runs: check for a deadlock; returns how long the monitor may
 * sleep before it must call again (-1: until kicked). Fatal when the program is deadlocked. */
HIDDEN int64_t hoare__deadlock_watch(int64_t now);
/* A plain thread ends by hoare_exit: once no goroutine and no other thread is left, the program
 * is deadlocked (Go: "no goroutines (main called runtime.Goexit) - deadlock!"). */
HIDDEN void hoare__deadlock_thread_exits(void);
/* hoare_main's goroutine ends by hoare_exit: its caller waits for ever, and once no goroutine and
 * no other thread is left the program is deadlocked, with the same report. */
HIDDEN void hoare__deadlock_main_goexits(void);
/* sched.deadlock_epoch, read under sched.lock (the monitor, before it sleeps). */
HIDDEN uint64_t hoare__deadlock_epoch(void);
/* Reads of the process's thread count so far (tests: the idle path makes none). */
extern HIDDEN _Atomic uint64_t hoare__deadlock_probes;
/* Monitor: shed pooled objects unused for two intervals (pool.c); true while pools exist. */
HIDDEN bool hoare__pool_shed(int64_t now);
/* Pools with a free_object are registered (seq_cst, against the monitor going to sleep). */
HIDDEN bool hoare__pools_exist(void);

#endif
