/*
 * runtime.h - the runtime's internal interface (never installed).
 *
 * Everything that parks or wakes a goroutine goes through hoare__park / hoare__ready below, so that
 * channels, select, sync, timers and the poller share one mechanism, and a plain thread (main()
 * included) that blocks on a runtime object is just another waiter: it gets a G record without a
 * stack ("thread waiter") and sleeps on a futex inside it instead of switching.
 *
 * Naming: internal symbols are hoare__name (two underscores) and have hidden visibility.
 */
#ifndef HOARE_RUNTIME_H
#define HOARE_RUNTIME_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fault.h" /* hoare__malloc & co: the calls fault injection can fail */
#include "hoare.h"

#define HIDDEN __attribute__((visibility("hidden")))
/* Thread-locals of the runtime: initial-exec, so that the shared library reads them without a call
 * to __tls_get_addr (they are few and small; glibc reserves static TLS room for them). */
#define RUNTIME_TLS __thread __attribute__((tls_model("initial-exec")))
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
/* No inlining and no inter-procedural assumptions: needed for code that reads thread-local state
 * after a goroutine switch (the thread may have changed). gcc has noipa; clang does not need it. */
#if defined(__clang__)
#define NOIPA __attribute__((noinline))
#else
#define NOIPA __attribute__((noinline, noipa))
#endif

typedef struct hoare_g G;
typedef struct hoare_m M;
typedef struct hoare_p P;

/* ---------------------------------------------------------------- locks (lock.c) */

/* A small futex mutex for the runtime's own short critical sections (channel, scheduler, timer heap).
 * It blocks the thread, never the goroutine: hold it only for a bounded, non-parking section.
 * Zero value is unlocked. */
typedef struct hoare_lock {
    _Atomic uint32_t state; /* 0 unlocked, 1 locked, 2 locked with sleepers */
} hoare_lock;
/* Take l if it is free now (true), else give up at once. */
HIDDEN bool hoare__trylock(hoare_lock *l);
/* Runtime locks this thread holds now (the preemption handler never switches while > 0). */
extern HIDDEN RUNTIME_TLS uint32_t hoare__locks_held;
/* The slow paths of hoare__lock and hoare__unlock (lock.c). */
HIDDEN void hoare__lock_contended(hoare_lock *l);
HIDDEN void hoare__unlock_wake(hoare_lock *l);

/* The fast paths are inline: a channel hand-off takes and drops locks four times. lock.c says why
 * hoare__locks_held is counted around the lock, and why unlock needs no read-modify-write. */
static inline void hoare__lock(hoare_lock *l) {
    hoare__locks_held++;
    atomic_signal_fence(memory_order_seq_cst);
    uint32_t c = 0;
    if (unlikely(!atomic_compare_exchange_strong_explicit(&l->state, &c, 1, memory_order_acquire,
                                                          memory_order_relaxed)))
        hoare__lock_contended(l);
}
static inline void hoare__unlock(hoare_lock *l) {
    if (likely(atomic_load_explicit(&l->state, memory_order_relaxed) == 1))
        atomic_store_explicit(&l->state, 0, memory_order_release);
    else
        hoare__unlock_wake(l);
    atomic_signal_fence(memory_order_seq_cst);
    hoare__locks_held--;
}

/* One-shot wake-up flag for a thread (Go's note). sleep returns once wakeup was called (or the
 * timeout, ns < 0 = none, passed: then returns false). clear re-arms it; only the sleeper clears. */
typedef struct hoare_note {
    _Atomic uint32_t key;
} hoare_note;
HIDDEN void hoare__note_clear(hoare_note *n);
HIDDEN bool hoare__note_sleep(hoare_note *n, int64_t ns);
HIDDEN void hoare__note_wakeup(hoare_note *n);

/* Polite spinning, for waits that are usually short: pause instructions for a few microseconds,
 * then sched_yield between polls (a partner waiting for this CPU gets it: spinning must not starve
 * the thread it waits for when threads outnumber CPUs). Zero-initialise, then call
 * hoare__spin_step between polls until it returns false: budget_ns have passed. */
typedef struct hoare_spin {
    int64_t start;
    uint32_t polls;
    uint32_t yielding;
} hoare_spin;
HIDDEN bool hoare__spin_step(hoare_spin *s, int64_t budget_ns);

HIDDEN void hoare__futex_wait(_Atomic uint32_t *addr, uint32_t val, int64_t ns);
/* Futex calls made so far by all threads but the monitor (whose timed polls are not hand-offs):
 * what the tests count to show that hand-offs do not cost a thread wake-up each. A relaxed
 * increment next to a system call. The monitor sets hoare__futex_uncounted for itself. */
extern HIDDEN _Atomic uint64_t hoare__futex_calls;
extern HIDDEN RUNTIME_TLS bool hoare__futex_uncounted;
HIDDEN void hoare__futex_wake(_Atomic uint32_t *addr, int n);

/* ---------------------------------------------------------------- timers (timer.c) */

/* A runtime timer. fn(arg, now) runs on a scheduler thread when `when` passes (then again every
 * `period` ns if period > 0). fn must be short and must not park: it may ready goroutines, try-send
 * on channels, and take runtime locks. The struct is owned by its user; it must not be freed while
 * started (stop it first: after hoare__timer_stop returns, fn is not running and will not run). */
typedef struct hoare_rtimer {
    int64_t when;
    int64_t period;
    void (*fn)(void *arg, int64_t now);
    void *arg;
    /* internal */
    _Atomic(struct timer_heap *) heap; /* the heap holding it, NULL when not pending */
    _Atomic uint32_t state;            /* TIMER_IDLE, TIMER_PENDING, TIMER_FIRING */
    int32_t slot;                      /* its slot in heap->slots, guarded by heap->lock */
} hoare_rtimer;
/* Arm t (fn, arg, period set by the caller) to fire at absolute time when. t must be idle. */
HIDDEN void hoare__timer_start(hoare_rtimer *t, int64_t when);
/* Disarm: true if it was pending (and now will not fire); false if it already fired or was not
 * started. Waits for a concurrently running fn to finish. */
HIDDEN bool hoare__timer_stop(hoare_rtimer *t);
/* Run expired timers of p; return the earliest pending `when` (INT64_MAX if none). Called by the
 * scheduler. p NULL: an M without a processor runs every P's, a running P's only once they are
 * overdue by a grace (timer.c), and returns when to look again; hoare__timers_next says that too. */
HIDDEN int64_t hoare__timers_run(P *p, int64_t now);
HIDDEN int64_t hoare__timers_next(void);
/* When a plain thread or a goroutine sets a timer that is the earliest of its processor, a sleeping
 * scheduler thread (the poller's) or the monitor may need to wake up earlier than it planned. */
HIDDEN void hoare__timer_wake_scheduler(int64_t when);

/* ---------------------------------------------------------------- goroutines (sched.c) */

enum g_status {
    G_FREE = 0,  /* slot not in use (in a pool) */
    G_RUNNABLE,  /* on a run queue */
    G_RUNNING,   /* on an M */
    G_WAITING,   /* parked: wait_reason says why */
    G_BLOCKING,  /* inside hoare_blocking_begin/end */
    G_DEAD,      /* returned, slot about to be freed */
};

enum g_flags {
    G_THREAD = 1, /* a plain thread's waiter record: no stack, parks on wake_key */
    G_G0 = 2,     /* an M's scheduler context (runs on the thread's own stack) */
    G_SMALL_STACK = 4, /* a sub-page slot: no guard of its own, a canary below the stack (stack.c) */
    G_HIDDEN = 8, /* a thread waiter left out of dumps (hoare_main's caller: the main goroutine
                   * stands for it) */
    G_MAIN = 16,  /* hoare_main's goroutine while its function runs (hoare_exit there is Go's
                   * Goexit from main) */
};

struct hoare_g {
    void *sp;                 /* saved stack pointer while switched out */
    _Atomic uint32_t status;  /* enum g_status */
    uint32_t flags;           /* enum g_flags */
    uint64_t id;              /* > 0, unique; thread waiters have ids too (not shown by hoare_id) */
    G *schedlink;             /* run queue, free list, wait list link: owned by whoever holds g */
    M *m;                     /* the M running it, NULL when not running */
    void (*fn)(void *);
    void *arg;

    /* parking: written by the goroutine before it parks, read by dumps at any time (relaxed) */
    _Atomic(const char *) wait_reason; /* Go's words: "chan receive", "sleep", ... */
    _Atomic int64_t wait_since;        /* about hoare_now() at park (the monitor's coarse clock) */

    /* wake-up handshake, for channels/select/sync: meaning defined by the waker's module */
    void *param;                    /* e.g. the waiter record that fired */
    _Atomic uint32_t select_done;   /* select: 0 while undecided; the winner CASes it to 1 */
    _Atomic uint32_t wake_key;      /* thread waiters: wake word and futex (thread.c) */
    bool deadlock_counted;          /* thread waiters: counted as blocked (sched.lock guards) */
    /* The global queue (sched.c) is a sequence of runs. On a run's first goroutine: the run's
     * length here and its last goroutine in run_tail, so that a taker cuts whole runs without
     * walking them. Both fill holes of this layout (a sub-page slot has no bytes to spare). */
    int32_t run_n;

    hoare_rtimer sleep_timer; /* for hoare_sleep and select timeouts of this goroutine */

    char *stack_lo;           /* lowest usable byte of the stack (above the guard) */
    size_t stack_size;        /* usable bytes (the G itself sits just above them) */
    int saved_errno;
    _Atomic uint32_t preempt; /* set by the monitor: switch away at the next safe point */
    uint32_t preempt_off;     /* > 0: not preemptible (runtime sections, hoare_preempt_disable) */
    /* Times it was switched in (sched.c, execute; written only there). A dump reads a switched-out
     * goroutine's stack as it is and keeps the frames only if this did not change meanwhile. */
    _Atomic uint32_t resumes;

    void *asan_fake_stack;
    void *tsan_fiber;
    uintptr_t start_pc;       /* fn, for dumps */
    uintptr_t creator_pc;     /* where hoare_go was called, for dumps */
    uint64_t creator_id;
    union {
        G *alllink;           /* thread waiters: list of all of them, for dumps */
        G *run_tail;          /* goroutines (never thread waiters) in the global queue: above */
    };
    uint64_t trace_flow;      /* trace.c: the flow arrow to draw when it next runs (0: none) */
    int64_t runnable_since;   /* stats.h: sampled time it became runnable (0: not sampled) */
    char name[32];
};

/* The calling goroutine, or (on a plain thread) the thread's waiter record: never NULL. */
HIDDEN G *hoare__g(void);
/* The calling goroutine, or NULL on a plain thread (or an M's scheduler context). */
HIDDEN G *hoare__curg(void);

/* Park the caller with a reason in Go's words. commit(g, arg) runs once the goroutine is switched
 * out (so it may publish g to wakers and drop the locks that protect that); if it returns false, g
 * resumes at once. On a plain thread: commit runs, then the thread sleeps until hoare__ready(g).
 * The caller sets whatever its waker will read (g->param etc.) before parking.
 * Rule: nothing that can ready g may be published before commit runs - in particular a timer whose
 * callback readies g (g->sleep_timer) is started inside commit, never before hoare__park. An early
 * hoare__ready finds g not yet WAITING and is a fatal error. */
HIDDEN void hoare__park(const char *reason, bool (*commit)(G *g, void *arg), void *arg);
/* Make a parked g runnable. Exactly one ready per park. Callable from anywhere: goroutines (puts g in
 * the current processor's runnext, so it runs next), plain threads, timer callbacks, the poller. */
HIDDEN void hoare__ready(G *g);
/* hoare__ready for a waker that is the only possible one by construction: it took g's waiter record
 * out of a queue under the lock that g's park commit released (channels, select after winning
 * select_done). Saves the status CAS (an atomic read-modify-write per hand-off). */
HIDDEN void hoare__ready_exclusive(G *g);
/* Ready a list (linked by schedlink) of parked goroutines and thread waiters at once (the poller,
 * cond broadcast): one global queue operation for all the goroutines, and as many idle processors
 * started as there are goroutines for them. */
HIDDEN void hoare__ready_list(G *list);
/* The same for a waker that is the only possible one (as hoare__ready_exclusive) and collects many
 * waiters in one pass (channel close, sleep timers): hoare__batch_add marks g runnable at once (no
 * second pass over cold descriptors), hoare__batch_ready queues them all. Zero-initialise; timers
 * set timers_of to the processor whose timers fired (its runnext then queues behind them). */
typedef struct hoare_batch {
    G *head, *tail, *threads;
    int32_t n;
    P *timers_of;
} hoare_batch;
HIDDEN void hoare__batch_add(hoare_batch *b, G *g);
HIDDEN void hoare__batch_ready(hoare_batch *b);

/* A goroutine-or-thread-wide unique random number (for select's shuffle, stealing order). */
HIDDEN uint32_t hoare__rand(void);
HIDDEN uint64_t hoare__rand64(void);
HIDDEN uint32_t hoare__rand_n(uint32_t n); /* uniform in [0, n) */

/* pthread_once for initialisers that call into other libraries (liburing, c-ares): the calling
 * goroutine is not preempted inside. Preempted there, it would hold the once while another
 * goroutine on its thread waited for it in the kernel: that thread would never run it again. */
HIDDEN void hoare__once(pthread_once_t *once, void (*init)(void));

/* Start the runtime if it has not started (idempotent, thread-safe). Public calls that need the
 * scheduler call it; cheap after the first time. */
HIDDEN void hoare__init(void);

/* A child process forked while the runtime ran has none of its threads: no scheduler thread runs
 * its goroutines, no monitor watches. As in Go, fork there is for exec (or _exit) only. Set in the
 * child by a pthread_atfork handler (sched.c, "Start-up"); waiting, spawning or starting the
 * runtime there ends the child with hoare__fatal_forked instead of hanging. */
HIDDEN extern bool hoare__forked_child;
HIDDEN __attribute__((noreturn)) void hoare__fatal_forked(const char *what);

/* Fatal error: print "fatal error: <msg>" and the goroutine list, exit status 2. */
HIDDEN __attribute__((noreturn, format(printf, 1, 2))) void hoare__fatal(const char *fmt, ...);

/* Monotonic time in ns (same clock as hoare_now). */
HIDDEN int64_t hoare__nanotime(void);
/* The time ns from now (now if ns <= 0), INT64_MAX - never - where that overflows: a user's
 * INT64_MAX timeout means for ever, as in Go. */
static inline int64_t hoare__deadline_in(int64_t ns) {
    int64_t now = hoare__nanotime(), when;
    if (ns <= 0) return now;
    return __builtin_add_overflow(now, ns, &when) ? INT64_MAX : when;
}

/* ---------------------------------------------------------------- environment (env.c) */

/* A switch: unset or empty -> dflt; 0/false/off/no or 1/true/on/yes; anything else is reported on
 * stderr and gives dflt. */
HIDDEN bool hoare__env_switch(const char *name, bool dflt);
/* A decimal number in [min, max] (min >= 0): true and *out when set and valid; false when unset,
 * empty or invalid (reported on stderr). */
HIDDEN bool hoare__env_long(const char *name, long min, long max, long *out);
/* A size in bytes with an optional k/m/g suffix, in [min, max]: as hoare__env_long. */
HIDDEN bool hoare__env_size(const char *name, size_t min, size_t max, size_t *out);

/* ---------------------------------------------------------------- poller (poll_epoll.c) */

/* Wait for I/O readiness up to delay ns (0: just check, < 0: forever); return the goroutines it made
 * ready, linked by schedlink. Only one thread polls at a time (the scheduler ensures it). */
HIDDEN G *hoare__netpoll(int64_t delay);
/* Interrupt a blocking hoare__netpoll (new timer, new work). */
HIDDEN void hoare__netpoll_break(void);
/* Number of goroutines waiting on descriptors (the deadlock check counts them as alive). */
HIDDEN int32_t hoare__netpoll_waiters(void);
/* Create the poller if it does not exist yet: 0, or the errno value (EMFILE, ENOMEM) of a failed
 * attempt (the runtime runs on without; a later call tries again). */
HIDDEN int hoare__netpoll_init(void);
/* hoare_now() when a poll last returned (0: never). */
HIDDEN int64_t hoare__netpoll_last(void);

/* ---------------------------------------------------------------- diagnostics (diag.c) */

/* Call fn for every goroutine that exists (not free slots, not thread waiters). */
HIDDEN void hoare__each_g(void (*fn)(G *g, void *arg), void *arg);

#endif /* HOARE_RUNTIME_H */
