/*
 * sched.c - the M:N work-stealing scheduler: goroutine creation and exit, the context switch with
 * its sanitizer annotations, park/ready, run queues, stealing, idle threads, GOMAXPROCS.
 *
 * Switching. A goroutine that stops running (park, yield, exit) switches directly to the next
 * goroutine of its P when there is one (one context switch: what makes channel ping-pong cheap),
 * and to the M's scheduler context (g0, on the thread's own stack) otherwise, which may block the
 * thread. What the departing goroutine needs done once its stack is no longer in use - publish it
 * to wakers and drop their locks (park), requeue it (yield), free its slot (exit) - is left in the
 * M's "pending" fields and done first thing by whichever context runs next on that M
 * (run_pending). So no other thread can resume a goroutine before it has fully switched out.
 *
 * Who owns what:
 *  - G.status moves RUNNABLE -> RUNNING (the M that takes it), RUNNING -> WAITING (run_pending of
 *    the parking M, before commit publishes it), WAITING -> RUNNABLE (the one waker, by CAS; or
 *    by load-check-store in hoare__ready_exclusive, for wakers that are the only one by construction).
 *  - A P's run queue tail is written by the M owning the P; head by CAS from the owner or a thief.
 *    runnext is made non-NULL only by the owner and emptied by the owner or a thief by CAS, so the
 *    owner may fill an empty runnext with a plain store. The global queue, the idle P and idle M lists are guarded by
 *    sched.lock.
 *  - Spinning: an M looking for work without finding it yet is "spinning" (sched.nmspinning).
 *    Readying work wakes an idle M only when there is an idle P and no spinner; a spinner that
 *    gives up decrements nmspinning and then re-checks every queue (the decrement is a full fence),
 *    so work queued concurrently is never stranded.
 *  - Before it gives up its P, a spinner polls for new work for a short while (IDLE_SPIN_NS): work
 *    that plain threads hand over (spawns, channel hand-offs with main()) then finds a thread that
 *    is awake, instead of costing a futex wake per hand-off.
 *
 * Plain threads live in thread.c, the deadlock check in deadlock.c; how a waiting plain thread
 * runs goroutines itself is under "Lending" below.
 */
#include "proc.h"

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arch.h"
#include "trace.h"

#ifdef HOARE_ASAN
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef HOARE_TSAN
#include <sanitizer/tsan_interface.h>
#endif

HIDDEN struct sched hoare__sched;
HIDDEN P *_Atomic hoare__allp[HOARE_MAX_PROCS];
#define sched hoare__sched

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static _Atomic bool initialised;
static _Atomic uint64_t goid_gen;   /* ids handed out in batches to Ps and plain threads */
static _Atomic int32_t mid_gen;

HIDDEN RUNTIME_TLS M *hoare__tls_m;       /* the M this thread is, NULL on plain threads */
#define tls_m hoare__tls_m

/* Read thread-local state through opaque calls: after a switch the goroutine may be on another
 * thread, and the compiler must not reuse a thread-local address computed before it. */
NOIPA M *hoare__getm(void) { return tls_m; }
/* The same, for use at the start of a function before any switch (the compiler may keep it). */
static inline M *getm_here(void) { return tls_m; }

P *hoare__curp(void) {
    M *m = getm_here();
    return m ? m->p : NULL;
}

G *hoare__curg(void) {
    M *m = getm_here();
    return m ? m->curg : NULL;
}

static void ensure_init(void);

/* ------------------------------------------------------------------------------------------
 * Random numbers: wyrand per M (or per plain thread), seeded from the clock and the address. */

static RUNTIME_TLS uint64_t tls_rand_state;

uint64_t hoare__rand64(void) {
    M *m = getm_here();
    uint64_t *s = m ? &m->rand_state : &tls_rand_state;
    if (*s == 0) *s = (uint64_t)hoare__nanotime() ^ (uint64_t)(uintptr_t)s;
    *s += 0xa0761d6478bd642full;
    __uint128_t t = (__uint128_t)*s * (*s ^ 0xe7037ed1a0b428dbull);
    return (uint64_t)(t >> 64) ^ (uint64_t)t;
}

uint32_t hoare__rand(void) { return (uint32_t)hoare__rand64(); }

uint32_t hoare__rand_n(uint32_t n) {
    /* Lemire's multiply-shift; the bias for n << 2^32 is negligible */
    return (uint32_t)(((uint64_t)hoare__rand() * n) >> 32);
}

static inline void cpu_relax(void) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Stores before it become visible to other threads before stores after it (x86 keeps stores in
 * order already). */
static inline void store_store_barrier(void) {
#if defined(__aarch64__)
    __asm__ __volatile__("dmb ishst" ::: "memory");
#else
    __asm__ __volatile__("" ::: "memory");
#endif
}

HIDDEN _Atomic int64_t hoare__coarse_now;

/* ------------------------------------------------------------------------------------------
 * Run queues */

/* The global queue is a list guarded by sched.lock (runq_n long) plus a lock-free stack where
 * goroutines readied or spawned outside a processor (plain threads, blocking regions) are pushed
 * without the lock; whoever takes from the global queue first moves the stack, reversed, to the
 * list's tail. sched.runq_size counts both, and is raised before a push, so that work is never
 * invisible to a thread that checks for it (it may briefly count a goroutine not yet pushed).
 *
 * The list is a sequence of runs of at most GLOBRUNQ_RUN goroutines, each put there together; a
 * run's first goroutine knows its last one and its length (G.run_tail, G.run_n), and
 * sched.runq_head is always a run's first. A taker cuts whole runs under the lock and walks them
 * into its local queue after dropping it: each goroutine of a long queue is a cache and TLB miss
 * (its descriptor sits on its own stack page, 300 ns on some VMs), and walked under the lock, 128
 * of them kept the other processors waiting for it (wakeall: a fifth of the wake-up's samples). */
enum { GLOBRUNQ_RUN = RUNQ_SIZE / 2 + 1 }; /* what a taker with an empty local queue takes */

/* Mark a list of n goroutines (linked by schedlink) as runs of at most GLOBRUNQ_RUN. Called by
 * whoever built the list, outside sched.lock: the goroutines are in its cache. */
static void globrunq_mark_runs(G *head, int32_t n) {
    while (n > 0) {
        G *first = head, *last = head;
        int32_t k = 1;
        for (; k < GLOBRUNQ_RUN && k < n; k++) last = last->schedlink;
        first->run_tail = last;
        first->run_n = k;
        n -= k;
        head = last->schedlink;
    }
}

/* Put g on the global queue. Caller holds sched.lock. */
static void globrunq_put_locked(G *g) {
    g->schedlink = NULL;
    g->run_tail = g;
    g->run_n = 1;
    if (sched.runq_tail) sched.runq_tail->schedlink = g;
    else sched.runq_head = g;
    sched.runq_tail = g;
    sched.runq_n++;
    atomic_fetch_add_explicit(&sched.runq_size, 1, memory_order_relaxed);
}

/* Append a list of n goroutines linked by schedlink, marked as runs (globrunq_mark_runs). Caller
 * holds sched.lock. */
static void globrunq_put_batch_locked(G *head, G *tail, int32_t n) {
    tail->schedlink = NULL;
    if (sched.runq_tail) sched.runq_tail->schedlink = head;
    else sched.runq_head = head;
    sched.runq_tail = tail;
    sched.runq_n += n;
    atomic_fetch_add_explicit(&sched.runq_size, n, memory_order_relaxed);
}

/* Put g on the global queue without the lock. */
static void globrunq_put(G *g) {
    atomic_fetch_add_explicit(&sched.runq_size, 1, memory_order_seq_cst);
    G *head = atomic_load_explicit(&sched.inject, memory_order_relaxed);
    do g->schedlink = head;
    while (!atomic_compare_exchange_weak_explicit(&sched.inject, &head, g, memory_order_release,
                                                  memory_order_relaxed));
}

/* Move the lock-free stack to the list (oldest first). Caller holds sched.lock. */
static void inject_drain_locked(void) {
    G *g = atomic_exchange_explicit(&sched.inject, NULL, memory_order_acquire);
    if (!g) return;
    G *tail = g, *head = NULL;
    int32_t n = 0;
    while (g) {
        G *next = g->schedlink;
        g->schedlink = head;
        head = g;
        g = next;
        n++;
    }
    globrunq_mark_runs(head, n); /* the walk just touched them */
    if (sched.runq_tail) sched.runq_tail->schedlink = head;
    else sched.runq_head = head;
    sched.runq_tail = tail;
    sched.runq_n += n;
}

/* Cut up to max goroutines (0: no limit) off the global queue for p, as a list: whole runs while
 * they fit, or part of the first run if it alone does not (a walk of that part). Caller holds
 * sched.lock; it hands the list to globrunq_spread once it has dropped the lock. */
static G *globrunq_take_locked(P *p, int32_t max) {
    inject_drain_locked();
    int32_t size = sched.runq_n;
    if (size == 0) return NULL;
    int32_t n = size / atomic_load_explicit(&sched.nprocs, memory_order_relaxed) + 1;
    if (n > size) n = size;
    if (max > 0 && n > max) n = max;
    /* all but the one returned go to p's local queue: half its room at most */
    uint32_t room = RUNQ_SIZE - (atomic_load(&p->runq_tail) - atomic_load(&p->runq_head));
    if (n > (int32_t)room / 2 + 1) n = (int32_t)room / 2 + 1;
    G *head = sched.runq_head, *tail = NULL;
    int32_t got = 0;
    while (sched.runq_head && got + sched.runq_head->run_n <= n) {
        G *run = sched.runq_head;
        tail = run->run_tail;
        got += run->run_n;
        sched.runq_head = tail->schedlink;
    }
    if (got == 0) {
        /* the first run is longer than n: cut n off it, and the rest is a run of its own */
        G *run = sched.runq_head;
        tail = run;
        for (int32_t i = 1; i < n; i++) tail = tail->schedlink;
        G *rest = tail->schedlink;
        rest->run_tail = run->run_tail;
        rest->run_n = run->run_n - n;
        sched.runq_head = rest;
        got = n;
    }
    tail->schedlink = NULL;
    if (!sched.runq_head) sched.runq_tail = NULL;
    sched.runq_n -= got;
    atomic_fetch_sub_explicit(&sched.runq_size, got, memory_order_relaxed);
    return head;
}

/* A list from globrunq_take_locked, after sched.lock: the first goroutine to run now, the rest to
 * p's local queue (the owner's). */
static bool runq_put(P *p, G *g, bool next);
static G *globrunq_spread(P *p, G *list) {
    if (!list) return NULL;
    for (G *x = list->schedlink, *next; x; x = next) {
        next = x->schedlink;
        runq_put(p, x, false);
    }
    list->schedlink = NULL;
    return list;
}

/* The local queue is full: move half of it and g to the global queue. false if a thief got there
 * first (then the caller retries the fast path). */
static bool runq_put_slow(P *p, G *g, uint32_t head, uint32_t tail) {
    uint32_t n = (tail - head) / 2;
    if (n != RUNQ_SIZE / 2) hoare__fatal("runq_put_slow: queue is not full");
    if (!atomic_compare_exchange_strong_explicit(&p->runq_head, &head, head + n,
                                                 memory_order_release, memory_order_relaxed))
        return false;
    /* The n slots we claimed keep their contents: only the owner (us) writes slots. Link them
     * without a copy on the stack (this runs on goroutine stacks, small ones too). */
    G *first = atomic_load_explicit(&p->runq[head % RUNQ_SIZE], memory_order_relaxed);
    for (uint32_t i = 0; i < n; i++) {
        G *x = atomic_load_explicit(&p->runq[(head + i) % RUNQ_SIZE], memory_order_relaxed);
        x->schedlink = i + 1 < n ? atomic_load_explicit(&p->runq[(head + i + 1) % RUNQ_SIZE], memory_order_relaxed) : g;
    }
    first->run_tail = g; /* one run of GLOBRUNQ_RUN */
    first->run_n = (int32_t)n + 1;
    hoare__lock(&sched.lock);
    globrunq_put_batch_locked(first, g, (int32_t)n + 1);
    hoare__unlock(&sched.lock);
    return true;
}

/* Owner only. next: put g in runnext (it runs next), kicking the previous runnext to the tail.
 * Returns true if the queue proper got a goroutine (stealable work for an idle processor). */
static bool runq_put(P *p, G *g, bool next) {
    if (next) {
        /* Only the owner makes runnext non-NULL; a thief only clears it (by CAS). So an empty
         * runnext stays empty until our store: no read-modify-write needed (the usual hand-off). */
        atomic_store_explicit(&p->runnext_puts,
                              atomic_load_explicit(&p->runnext_puts, memory_order_relaxed) + 1,
                              memory_order_relaxed);
        if (!atomic_load_explicit(&p->runnext, memory_order_relaxed)) {
            atomic_store_explicit(&p->runnext, g, memory_order_release);
            return false;
        }
        G *old = atomic_exchange_explicit(&p->runnext, g, memory_order_acq_rel);
        if (!old) return false;
        g = old;
    }
    for (;;) {
        uint32_t head = atomic_load_explicit(&p->runq_head, memory_order_acquire);
        uint32_t tail = atomic_load_explicit(&p->runq_tail, memory_order_relaxed);
        if (tail - head < RUNQ_SIZE) {
            atomic_store_explicit(&p->runq[tail % RUNQ_SIZE], g, memory_order_relaxed);
            atomic_store_explicit(&p->runq_tail, tail + 1, memory_order_release);
            return true;
        }
        if (runq_put_slow(p, g, head, tail)) return true;
    }
}

/* Owner only: the queue's head (not runnext). */
static G *runq_get_queued(P *p) {
    for (;;) {
        uint32_t head = atomic_load_explicit(&p->runq_head, memory_order_acquire);
        uint32_t tail = atomic_load_explicit(&p->runq_tail, memory_order_relaxed);
        if (tail == head) return NULL;
        G *g = atomic_load_explicit(&p->runq[head % RUNQ_SIZE], memory_order_relaxed);
        if (atomic_compare_exchange_weak_explicit(&p->runq_head, &head, head + 1,
                                                  memory_order_release, memory_order_relaxed))
            return g;
    }
}

/* Owner only: runnext first, then the queue head. */
static G *runq_get(P *p) {
    G *next = atomic_load_explicit(&p->runnext, memory_order_relaxed);
    if (next && atomic_compare_exchange_strong_explicit(&p->runnext, &next, NULL,
                                                        memory_order_acq_rel, memory_order_relaxed))
        return next;
    return runq_get_queued(p);
}

static bool runq_empty(P *p) {
    uint32_t head = atomic_load_explicit(&p->runq_head, memory_order_acquire);
    uint32_t tail = atomic_load_explicit(&p->runq_tail, memory_order_acquire);
    return head == tail && atomic_load_explicit(&p->runnext, memory_order_acquire) == NULL;
}

/* Steal half of victim's queue into thief's (thief owned by the caller). Returns one goroutine to
 * run now, or NULL. Takes the victim's runnext only when its queue is empty and steal_next is set,
 * after a grace of RUNNEXT_GRACE_NS (Go's 3 us): a running victim is probably about to run it
 * itself (channel hand-off). */
enum { RUNNEXT_GRACE_NS = 3 * 1000 };

static G *runq_steal(P *thief, P *victim, bool steal_next) {
    uint32_t ttail = atomic_load_explicit(&thief->runq_tail, memory_order_relaxed);
    uint32_t room = RUNQ_SIZE - (ttail - atomic_load_explicit(&thief->runq_head, memory_order_acquire));
    for (;;) {
        uint32_t head = atomic_load_explicit(&victim->runq_head, memory_order_acquire);
        uint32_t tail = atomic_load_explicit(&victim->runq_tail, memory_order_acquire);
        uint32_t n = tail - head;
        n = n - n / 2;
        if (n == 0) {
            if (!steal_next) return NULL;
            G *next = atomic_load_explicit(&victim->runnext, memory_order_acquire);
            if (!next) return NULL;
            if (atomic_load_explicit(&victim->status, memory_order_relaxed) == P_RUNNING) {
                /* A running victim keeps runnext only while it is busy with something else. Give
                 * it RUNNEXT_GRACE_NS (a channel hand-off takes far less) without touching its
                 * lines, then take runnext only if nothing was stored there meanwhile: a victim
                 * handing off (or a spawning parent, which comes back to runnext after every
                 * child) keeps it. */
                uint32_t puts = atomic_load_explicit(&victim->runnext_puts, memory_order_relaxed);
                int64_t until = hoare__nanotime() + RUNNEXT_GRACE_NS;
                do {
                    for (int i = 0; i < 16; i++) cpu_relax();
                } while (hoare__nanotime() < until);
                if (atomic_load_explicit(&victim->runnext_puts, memory_order_relaxed) != puts)
                    return NULL;
            }
            if (atomic_compare_exchange_strong_explicit(&victim->runnext, &next, NULL,
                                                        memory_order_acq_rel, memory_order_relaxed))
                return next;
            continue;
        }
        if (n > RUNQ_SIZE / 2) continue; /* read an inconsistent head/tail pair */
        if (n > room) n = room;
        if (n == 0) return NULL;
        for (uint32_t i = 0; i < n; i++) {
            G *g = atomic_load_explicit(&victim->runq[(head + i) % RUNQ_SIZE], memory_order_relaxed);
            atomic_store_explicit(&thief->runq[(ttail + i) % RUNQ_SIZE], g, memory_order_relaxed);
        }
        if (atomic_compare_exchange_strong_explicit(&victim->runq_head, &head, head + n,
                                                    memory_order_release, memory_order_relaxed)) {
            n--;
            G *g = atomic_load_explicit(&thief->runq[(ttail + n) % RUNQ_SIZE], memory_order_relaxed);
            if (n) atomic_store_explicit(&thief->runq_tail, ttail + n, memory_order_release);
            return g;
        }
    }
}

/* The next goroutine for p from its own queues, with the global queue checked every 61st time
 * so that a pair of goroutines handing off to each other cannot starve it. */
static G *take_preempted(M *m) {
    G *g = m->preempted_head;
    if (g) {
        m->preempted_head = g->schedlink;
        if (!m->preempted_head) m->preempted_tail = NULL;
        g->schedlink = NULL;
    }
    return g;
}

static G *next_local(M *m, P *p) {
    if (unlikely(atomic_load_explicit(&p->slice_over, memory_order_relaxed))) {
        /* The slice is over (the monitor is preempting its goroutine): goroutines that hand off
         * to each other through runnext share one slice, and the preempted one was often another
         * that ran between their picks (a spinner), so the chain went on and the queue behind it
         * waited for good. Its head goes first, on a slice of its own. */
        atomic_store_explicit(&p->slice_over, 0, memory_order_relaxed);
        G *g = runq_get_queued(p);
        if (g) {
            atomic_store_explicit(&p->schedtick, atomic_load_explicit(&p->schedtick, memory_order_relaxed) + 1,
                                  memory_order_relaxed);
            return g;
        }
    }
    if (unlikely(--p->picks_left == 0)) {
        /* reset on a lent thread too, which skips the check (the global queue and the preempted
         * goroutines are the Ms'): left at 0 it wrapped, and the M the P went to next checked
         * neither for 4 billion picks; two goroutines yielding to each other then kept the
         * others out for good (test_sched's yielders, once in 5 suite runs) */
        p->picks_left = 61;
        if (m->lender) return runq_get(p);
        if (atomic_load_explicit(&sched.runq_size, memory_order_relaxed) > 0) {
            hoare__lock(&sched.lock);
            G *g = globrunq_take_locked(p, 1);
            hoare__unlock(&sched.lock);
            if (g) return globrunq_spread(p, g);
        }
        if (m->preempted_head) return take_preempted(m);
    }
    return runq_get(p);
}

/* ------------------------------------------------------------------------------------------
 * Idle Ps and Ms */

/* p, owned by nobody now, goes to the idle list. Unless hoare_procs() shrank below it since its
 * owner last looked (nprocs changes under sched.lock): then it retires instead - its queue goes to
 * the global queue - and false tells the caller to move its timers to P 0 (hoare__timers_move)
 * once it has dropped sched.lock. Only Ps below nprocs are ever on the list: hoare_procs growing
 * puts the retired ones back, and one put there twice made the list a cycle. */
static bool pidle_put_locked(P *p) {
    trace_proc(p, false);
    __atomic_store_n(&p->m, NULL, __ATOMIC_RELAXED);
    if (unlikely(p->id >= atomic_load_explicit(&sched.nprocs, memory_order_relaxed))) {
        G *g;
        while ((g = runq_get(p))) globrunq_put_locked(g);
        atomic_store_explicit(&p->status, P_RETIRED, memory_order_relaxed);
        return false;
    }
    atomic_store_explicit(&p->status, P_IDLE, memory_order_relaxed);
    p->link = sched.idle_p;
    sched.idle_p = p;
    atomic_fetch_add(&sched.npidle, 1);
    /* a monitor sleeping long while every processor was busy must watch again: work queued behind
     * a goroutine that does not yield can now go to this processor (seq_cst increment first) */
    hoare__monitor_kick();
    return true;
}

/* pidle_put_locked with sched.lock taken here. */
static void pidle_put(P *p) {
    hoare__lock(&sched.lock);
    bool idle = pidle_put_locked(p);
    hoare__unlock(&sched.lock);
    if (!idle) hoare__timers_move(p, atomic_load(&hoare__allp[0]));
}

static P *pidle_get_locked(void) {
    P *p = sched.idle_p;
    if (p) {
        sched.idle_p = p->link;
        atomic_fetch_sub(&sched.npidle, 1);
    }
    return p;
}

/* m takes p. The monitor sleeps while no P runs; it must be awake (polling) while one does, for
 * preemption and for the deadlock check when they all go idle again: wake it if it sleeps (one
 * load when it does not; pidle_get_locked's seq_cst decrement comes first, see monitor.c). The
 * status is stored with release: a monitor that reads P_RUNNING reads this p->m too. */
static void acquirep(M *m, P *p) {
    trace_proc(p, true);
    m->p = p;
    __atomic_store_n(&p->m, m, __ATOMIC_RELAXED);
    atomic_store_explicit(&p->status, P_RUNNING, memory_order_release);
    hoare__monitor_kick();
}

static void *mstart(void *arg);
struct new_m_args {
    P *p;
    bool spinning;
    bool ok; /* out: the thread runs */
};
static void new_m(void *arg);

/* Start (or wake) an M to run p (an idle P is taken if p is NULL). spinning: the M is counted in
 * nmspinning already. */
static void startm(P *p, bool spinning) {
    hoare__lock(&sched.lock);
    if (!p) {
        p = pidle_get_locked();
        if (!p) {
            hoare__unlock(&sched.lock);
            if (spinning) atomic_fetch_sub(&sched.nmspinning, 1);
            return;
        }
    }
    hoare__monitor_kick();
    sched.deadlock_epoch++;
    M *m = sched.idle_m;
    if (m) {
        sched.idle_m = m->link;
        sched.nmidle--;
        hoare__unlock(&sched.lock);
        m->spinning = spinning;
        m->nextp = p;
        hoare__note_wakeup(&m->park);
        return;
    }
    sched.nm++;
    hoare__unlock(&sched.lock);
    struct new_m_args a = {p, spinning, false};
    /* pthread_create needs more stack than a sub-page goroutine has */
    hoare__on_sched_stack(new_m, &a, 0);
    if (a.ok) return;
    /* No thread could be created: give the P back; the running Ms carry on. */
    hoare__lock(&sched.lock);
    sched.nm--;
    hoare__unlock(&sched.lock);
    pidle_put(p);
    if (spinning) atomic_fetch_sub(&sched.nmspinning, 1);
}

/* Every signal but the synchronous ones (faults) and preemption's. */
static void async_signals(sigset_t *set) {
    sigfillset(set);
    sigdelset(set, SIGSEGV);
    sigdelset(set, SIGBUS);
    sigdelset(set, SIGFPE);
    sigdelset(set, SIGILL);
    sigdelset(set, SIGURG); /* preemption */
}

/* size zeroed bytes on cache lines of their own (NULL: out of memory): what an M's or a P's owner
 * writes at every switch must not share a line with whatever else malloc puts beside it. */
static void *alloc_lines(size_t size) {
    size = (size + HOARE_CACHE_LINE - 1) / HOARE_CACHE_LINE * HOARE_CACHE_LINE;
    void *v = hoare__aligned_alloc(HOARE_CACHE_LINE, size);
    if (v) memset(v, 0, size);
    return v;
}

static M *m_alloc(void) { return alloc_lines(sizeof(M)); }

static void new_m(void *arg) {
    struct new_m_args *a = arg;
    P *p = a->p;
    bool spinning = a->spinning;
    M *m = m_alloc();
    if (m) {
        m->id = atomic_fetch_add(&mid_gen, 1) + 1;
        m->spinning = spinning;
        m->nextp = p;
        m->g0.flags = G_G0;
        /* Scheduler threads take no asynchronous signals: they stay with the user's threads. */
        sigset_t all, old;
        async_signals(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, 1 << 20);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int rc = hoare__pthread_create(&m->thread, &attr, mstart, m);
        pthread_attr_destroy(&attr);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (rc == 0) {
            a->ok = true;
            return;
        }
        free(m);
    }
}

/* p, owned by nobody now, goes to an M if there is work for it (its own, the global queue's,
 * another processor's to steal) or if timers or descriptors need an M to wait in the poller (none
 * does), else to the idle list. */
static void p_hand_on(P *p) {
    if (hoare__p_has_work(p) || hoare__any_local_work() ||
        ((hoare__timers_next() != INT64_MAX || hoare__netpoll_waiters() > 0) &&
         !atomic_load(&sched.netpoll_blocked))) {
        startm(p, false);
    } else {
        pidle_put(p);
    }
}

/* New work exists: make sure some M will look for it (Go's wakep). */
void hoare__wakep(void) {
    /* the caller queued work: order that before our reads (a spinner giving up decrements
     * nmspinning, then looks at the queues) */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&sched.npidle, memory_order_relaxed) == 0) return;
    int32_t zero = 0;
    if (atomic_load_explicit(&sched.nmspinning, memory_order_relaxed) != 0 ||
        !atomic_compare_exchange_strong(&sched.nmspinning, &zero, 1))
        return;
    startm(NULL, true);
}

/* A plain thread that can lend itself (see "Lending") holds a processor between its runtime calls,
 * as a goroutine holds it in a blocking region: P.blocking holds the region word the thread
 * recorded in m->region_word, so that the monitor can take the processor away once the thread
 * stays out long (hoare__retake_blocked). thread_p_take takes it back for one runtime call, or
 * takes an idle one (NULL: none, or lm is NULL); thread_p_hold lets go again. So the goroutines a
 * thread readies or spawns go to its own processor's queues, and run on the thread itself when it
 * next waits, without waking another thread. */
static bool retire_p(M *m);
static bool retire(P *p, M *m);

static P *thread_p_take(M *lm) {
    if (!lm) return NULL;
    P *p = lm->p;
    if (p) {
        uint64_t mine = lm->region_word;
        if (atomic_compare_exchange_strong(&p->blocking, &mine, 0)) {
            if (likely(p->id < atomic_load_explicit(&sched.nprocs, memory_order_relaxed)) ||
                !retire_p(lm))
                return p;
        }
        lm->p = NULL; /* the monitor handed it on, or it retired */
    }
    /* a thread never queues for the lock here: it can do without a processor */
    if (atomic_load_explicit(&sched.npidle, memory_order_relaxed) == 0 || !hoare__trylock(&sched.lock))
        return NULL;
    p = pidle_get_locked();
    hoare__unlock(&sched.lock);
    if (p) acquirep(lm, p);
    return p;
}

static void thread_p_hold(M *lm, P *p) {
    lm->region_word = (++p->blocking_tick << 2) | REGION_THREAD | REGION_IN;
    atomic_store_explicit(&p->blocking, lm->region_word, memory_order_release);
}

void hoare__lend_drop(M *lm) {
    P *p = lm->p;
    lm->p = NULL;
    if (p) hoare__retake_blocked(p, lm->region_word);
}

/* ------------------------------------------------------------------------------------------
 * The context switch and what runs right after it */

/* The longest a waiting thread runs goroutines before it hands its P to an M (see "Lending"). */
enum { LEND_MAX_NS = 1000 * 1000 };

/* A lent thread's wait is over, or it has lent itself long enough: it leaves at the next switch.
 * The monitor's coarse clock is precise enough for the second. */
static inline bool lender_leaving(M *m) {
    return m->lender &&
           (atomic_load_explicit(&m->lender->wake_key, memory_order_acquire) == WAKE_WOKEN ||
            atomic_load_explicit(&hoare__coarse_now, memory_order_relaxed) > m->lend_until);
}

/* A lent thread is about to run g: a goroutine with a sub-page stack runs with asynchronous
 * signals blocked (the thread's own handlers would run on that stack, which has no room for
 * them). Blocked until the thread leaves (lend_leave): two system calls per lending at most. */
static void lend_mask_signals(M *m, G *g) {
    if (!(g->flags & G_SMALL_STACK) || m->lend_masked) return;
    sigset_t async;
    async_signals(&async);
    pthread_sigmask(SIG_BLOCK, &async, &m->lend_saved_mask);
    m->lend_masked = true;
}

/* Switch from `from` to `to` on this M. from_dies: from's stack will never run again. */
static inline void switch_context(G *from, G *to, bool from_dies) {
    hoare__stack_check(from); /* a sub-page slot's canary (stack.h) */
#ifdef HOARE_ASAN
    /* g0's bounds are the thread's stack (set at M start), a goroutine's its slot's */
    __sanitizer_start_switch_fiber(from_dies ? NULL : &from->asan_fake_stack, to->stack_lo, to->stack_size);
#else
    (void)from_dies;
#endif
#ifdef HOARE_TSAN
    __tsan_switch_to_fiber(to->tsan_fiber, 0);
#endif
    hoare__ctx_switch(&from->sp, to->sp);
}

static void run_pending(M *m);

/* Back on `self` after a switch (possibly on another thread). */
static inline void resumed(G *self) {
#ifdef HOARE_ASAN
    __sanitizer_finish_switch_fiber(self->asan_fake_stack, NULL, NULL);
#endif
    M *m = hoare__getm();
    run_pending(m);
    if (!(self->flags & G_G0)) *m->errno_loc = self->saved_errno;
}

/* g starts running on m. A goroutine taken from runnext inherits the time slice (the monitor
 * sees no new tick), so a pair handing off to each other cannot keep others off the processor. */
static void execute(M *m, G *g, bool inherit_slice) {
    /* the count is visible before anything g writes to its stack once it runs (a dump's check) */
    atomic_store_explicit(&g->resumes, atomic_load_explicit(&g->resumes, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    store_store_barrier();
    atomic_store_explicit(&g->status, G_RUNNING, memory_order_relaxed);
    g->m = m;
    __atomic_store_n(&m->curg, g, __ATOMIC_RELEASE); /* the monitor reads it */
    observe_go_start(m, g);
    P *p = m->p;
    if (!inherit_slice && p)
        atomic_store_explicit(&p->schedtick, atomic_load_explicit(&p->schedtick, memory_order_relaxed) + 1,
                              memory_order_relaxed);
}

/* The current goroutine g stops running; m->pend_* say what to do with it. Runs the next local
 * goroutine directly, or the scheduler context. Returns when g runs again (unless it died). */
static void switch_out(M *m, G *g) {
    bool dies = m->pend_kind == PEND_EXIT;
    g->saved_errno = dies ? 0 : *m->errno_loc;
    P *p = m->p;
    if (p) p->spawn_chain = 0;
    /* Expired timers of this P send us through the scheduler context, which runs them: goroutines
     * handing off to each other directly (a spawning loop) must not starve them. The coarse clock
     * (the monitor's) is enough: timers are not that precise. */
    bool timers_due = p && atomic_load_explicit(&p->timers.first, memory_order_relaxed) <=
                               atomic_load_explicit(&hoare__coarse_now, memory_order_relaxed);
    /* A lent thread (see "Lending") that is leaving goes back to its loop at once. */
    G *next = p && !timers_due && !lender_leaving(m) &&
                      p->id < atomic_load_explicit(&sched.nprocs, memory_order_relaxed)
                  ? next_local(m, p) : NULL;
    g->m = NULL;
    if (next) {
        if (unlikely(m->lender != NULL)) lend_mask_signals(m, next);
        execute(m, next, true);
        switch_context(g, next, dies);
    } else {
        /* This M goes looking for work: count it as spinning before g's park commit publishes g,
         * so that whoever readies g next (often a plain thread answering at once) sees a spinner
         * and wakes no other thread. */
        if (p && !m->spinning && !m->lender &&
            2 * atomic_load_explicit(&sched.nmspinning, memory_order_relaxed) <
                atomic_load_explicit(&sched.nprocs, memory_order_relaxed) -
                    atomic_load_explicit(&sched.npidle, memory_order_relaxed)) {
            m->spinning = true;
            atomic_fetch_add(&sched.nmspinning, 1);
        }
        m->curg = NULL;
        observe_go_stop(m);
        switch_context(g, &m->g0, dies);
    }
    resumed(g);
}

static void exit_finish(M *m, G *g);

void hoare__preempt_switch(M *m, G *g) {
    g->preempt_off++;
    atomic_store_explicit(&g->preempt, 0, memory_order_relaxed);
    m->pend_kind = PEND_PREEMPT;
    m->pend_g = g;
    switch_out(m, g);
    g->preempt_off--;
}

/* Runs on whatever context comes next on m, often a goroutine's own stack: pend_kind stays set
 * until the work is done, so that the preemption handler (which refuses while it is set) never
 * switches out in the middle of it. */
static void run_pending(M *m) {
    enum pend_kind kind = m->pend_kind;
    if (kind == PEND_NONE) return;
    G *g = m->pend_g;
    switch (kind) {
    case PEND_PARK:
        atomic_store_explicit(&g->status, G_WAITING, memory_order_release);
        if (m->pend_commit && !m->pend_commit(g, m->pend_arg)) {
            atomic_store_explicit(&g->status, G_RUNNABLE, memory_order_relaxed);
            runq_put(m->p, g, true);
        }
        break;
    case PEND_YIELD:
        atomic_store_explicit(&g->status, G_RUNNABLE, memory_order_relaxed);
        runq_put(m->p, g, false);
        break;
    case PEND_SPAWN:
        /* The parent of a goroutine that runs first: it runs next (see hoare__ready on waking).
         * An idle processor is woken to take it, as Go's newproc wakes one for the child: a child
         * that runs long (a reader looping over cached file pages) would otherwise keep the rest
         * of the spawning loop waiting for the monitor's next round (fileread-warm 30 -> 23 ms;
         * a loop of children that end at once pays a wake-up per idle spin, 10-15 ns a spawn). */
        atomic_store_explicit(&g->status, G_RUNNABLE, memory_order_relaxed);
        runq_put(m->p, g, true);
        hoare__wakep();
        break;
    case PEND_PREEMPT:
        /* behind this M's other preempted goroutines; it resumes on this M only */
        atomic_store_explicit(&g->status, G_RUNNABLE, memory_order_relaxed);
        g->schedlink = NULL;
        if (m->preempted_tail) m->preempted_tail->schedlink = g;
        else m->preempted_head = g;
        m->preempted_tail = g;
        break;
    case PEND_BLOCKED:
        /* a goroutine leaving a blocking region without a P waits for any P (so does one entering
         * a region on a lent thread: any runtime M's P) */
        atomic_store_explicit(&g->status, G_RUNNABLE, memory_order_relaxed);
        globrunq_put(g);
        hoare__wakep();
        break;
    case PEND_EXIT:
        exit_finish(m, g);
        break;
    case PEND_NONE:
        break;
    }
    m->pend_g = NULL;
    atomic_signal_fence(memory_order_seq_cst);
    m->pend_kind = PEND_NONE;
}

/* ------------------------------------------------------------------------------------------
 * Parking and readying */

void hoare__park(const char *reason, bool (*commit)(G *g, void *arg), void *arg) {
    if (unlikely(hoare__forked_child)) hoare__fatal_forked(reason);
    M *m = getm_here();
    G *g = m ? m->curg : NULL;
    if (!g) {
        if (m) hoare__fatal("park on a scheduler thread outside a goroutine (%s)", reason);
        stats_park(NULL, reason); /* a goroutine's park is counted at its switch (observe_go_*) */
        hoare__park_thread(hoare__g(), reason, commit, arg);
        return;
    }
    /* whether or not the monitor took the P yet: the region would otherwise end on a thread
     * that is not the one it began on, or never (nblocking held up, no deadlock report) */
    if (unlikely(!m->p || atomic_load_explicit(&g->status, memory_order_relaxed) == G_BLOCKING))
        hoare__fatal("goroutine %llu parks (%s) inside a blocking region", (unsigned long long)g->id, reason);
    g->preempt_off++;
    atomic_store_explicit(&g->wait_reason, reason, memory_order_relaxed);
    atomic_store_explicit(&g->wait_since, atomic_load_explicit(&hoare__coarse_now, memory_order_relaxed),
                          memory_order_relaxed);
    m->pend_kind = PEND_PARK;
    m->pend_g = g;
    m->pend_commit = commit;
    m->pend_arg = arg;
    switch_out(m, g);
    g->preempt_off--;
}

/* g is RUNNABLE and ours: queue it (runnext of the current P, else the global queue). */
static inline void ready_runnable(G *g) {
    M *m = getm_here();
    observe_go_ready(m, g);
    if (likely(m != NULL)) {
        G *cur = m->curg;
        if (cur) cur->preempt_off++;
        P *p = m->p;
        /* Inside a blocking region the monitor may hand m->p to another M at any time: not ours
         * to queue on. */
        if (cur && atomic_load_explicit(&cur->status, memory_order_relaxed) == G_BLOCKING) p = NULL;
        if (!p) {
            globrunq_put(g);
            hoare__wakep();
        } else if (runq_put(p, g, true)) {
            hoare__wakep();
        }
        if (cur) cur->preempt_off--;
        /* Only runnext got g: it runs when the current goroutine parks, the usual hand-off.
         * Waking an idle thread here would cost a futex wake per hand-off; if the current
         * goroutine keeps running instead, the monitor sees the stranded runnext and wakes an
         * idle processor. */
        return;
    }
    M *lm = hoare__thread_lend_m();
    P *held = thread_p_take(lm);
    if (held) {
        /* a plain thread holding a processor: g runs when the thread next waits (or is stolen) */
        bool queued = runq_put(held, g, true);
        thread_p_hold(lm, held);
        if (queued) hoare__wakep();
    } else {
        globrunq_put(g);
        hoare__wakep();
    }
}

void hoare__ready(G *g) {
    if (g->flags & G_THREAD) {
        hoare__ready_thread(g);
        return;
    }
    uint32_t expect = G_WAITING;
    if (!atomic_compare_exchange_strong_explicit(&g->status, &expect, G_RUNNABLE,
                                                 memory_order_acq_rel, memory_order_relaxed))
        hoare__fatal("ready of goroutine %llu which is not waiting (status %u)",
                     (unsigned long long)g->id, expect);
    ready_runnable(g);
}

void hoare__ready_exclusive(G *g) {
    if (g->flags & G_THREAD) {
        hoare__ready_thread(g);
        return;
    }
    /* No other waker can exist, so a plain store does what the CAS does; a ready of a goroutine
     * that is not waiting is still caught (it cannot race with another ready here). */
    uint32_t status = atomic_load_explicit(&g->status, memory_order_acquire);
    if (unlikely(status != G_WAITING))
        hoare__fatal("ready of goroutine %llu which is not waiting (status %u)",
                     (unsigned long long)g->id, status);
    atomic_store_explicit(&g->status, G_RUNNABLE, memory_order_relaxed);
    ready_runnable(g);
}

static inline void batch_append(hoare_batch *b, G *g) {
    g->schedlink = NULL;
    if (b->tail) b->tail->schedlink = g;
    else b->head = g;
    b->tail = g;
    b->n++;
}

void hoare__batch_add(hoare_batch *b, G *g) {
    if (g->flags & G_THREAD) {
        g->schedlink = b->threads;
        b->threads = g;
        return;
    }
    uint32_t status = atomic_load_explicit(&g->status, memory_order_acquire);
    if (unlikely(status != G_WAITING))
        hoare__fatal("ready of goroutine %llu which is not waiting (status %u)",
                     (unsigned long long)g->id, status);
    atomic_store_explicit(&g->status, G_RUNNABLE, memory_order_relaxed);
    trace_go_unblock(g);
    batch_append(b, g);
}

void hoare__batch_ready(hoare_batch *b) {
    while (b->threads) {
        G *t = b->threads;
        b->threads = t->schedlink;
        t->schedlink = NULL;
        hoare__ready_thread(t);
    }
    if (!b->n) return;
    /* As many as fit go to the caller's local queue (if it has a processor), the rest to the
     * global queue in one operation; then as many idle processors started as there are goroutines
     * for them (Go's injectglist). */
    M *m = getm_here();
    G *cur = m ? m->curg : NULL;
    if (cur) cur->preempt_off++;
    P *p = m ? m->p : NULL;
    if (cur && atomic_load_explicit(&cur->status, memory_order_relaxed) == G_BLOCKING) p = NULL;
    int32_t n = b->n, local = 0;
    /* Timers' goroutines go before the one in their processor's runnext, which queues behind them
     * (Go's timers put theirs in runnext, kicking the one there to the tail). A goroutine spawning
     * in a loop is back in runnext after every child (child first): left ahead of them, it kept
     * them queued, each woken sleeper holding its stack, for as long as the loop went on (with one
     * processor, all 100,000 sleepers of the sleepers benchmark were alive at once). Taken by CAS,
     * as a thief takes it: the timers may be another processor's (the poller's M may fire them,
     * see timer.c). */
    P *owner = b->timers_of;
    G *next = owner ? atomic_load_explicit(&owner->runnext, memory_order_acquire) : NULL;
    if (next && atomic_compare_exchange_strong_explicit(&owner->runnext, &next, NULL, memory_order_acq_rel,
                                                        memory_order_relaxed)) {
        next->schedlink = NULL;
        b->tail->schedlink = next;
        b->tail = next;
        n++;
    }
    if (p) {
        uint32_t used = atomic_load_explicit(&p->runq_tail, memory_order_relaxed) -
                        atomic_load_explicit(&p->runq_head, memory_order_acquire);
        int32_t room = (int32_t)(RUNQ_SIZE - used); /* thieves only ever make more */
        while (b->head && local < room) {
            G *g = b->head;
            b->head = g->schedlink;
            runq_put(p, g, false);
            local++;
        }
    }
    if (b->head) {
        globrunq_mark_runs(b->head, n - local); /* just touched, by batch_add */
        hoare__lock(&sched.lock);
        globrunq_put_batch_locked(b->head, b->tail, n - local);
        hoare__unlock(&sched.lock);
    }
    b->head = b->tail = NULL;
    b->n = 0;
    b->timers_of = NULL;
    if (cur) cur->preempt_off--;
    int32_t idle = atomic_load(&sched.npidle);
    for (int32_t i = 0; i < n && i < idle; i++) startm(NULL, false);
}

void hoare__ready_list(G *list) {
    hoare_batch b = {0};
    while (list) {
        G *g = list;
        list = g->schedlink;
        if (g->flags & G_THREAD) {
            g->schedlink = b.threads;
            b.threads = g;
            continue;
        }
        uint32_t expect = G_WAITING;
        if (!atomic_compare_exchange_strong(&g->status, &expect, G_RUNNABLE))
            hoare__fatal("ready of goroutine %llu which is not waiting", (unsigned long long)g->id);
        trace_go_unblock(g);
        batch_append(&b, g);
    }
    hoare__batch_ready(&b);
}

/* ------------------------------------------------------------------------------------------
 * Finding work: the scheduler context's loop */

/* Try every other P, in random order, a few times. */
static G *steal_work(M *m) {
    P *p = m->p;
    int32_t n = atomic_load(&sched.nprocs);
    for (int pass = 0; pass < 4; pass++) {
        uint32_t start = hoare__rand_n((uint32_t)n);
        for (int32_t i = 0; i < n; i++) {
            P *v = atomic_load_explicit(&hoare__allp[(start + (uint32_t)i) % (uint32_t)n], memory_order_acquire);
            if (!v || v == p) continue;
            /* run the victim's expired timers too: its M may be busy with a long goroutine */
            if (pass == 3) {
                int64_t now = hoare__nanotime();
                if (atomic_load_explicit(&v->timers.first, memory_order_relaxed) <= now) hoare__timers_run(v, now);
            }
            G *g = stats_steal(&m->stats, trace_steal(v, runq_steal(p, v, pass == 3)));
            if (g) return g;
        }
        G *g = runq_get(p); /* timers run above may have readied goroutines onto our P */
        if (g) return g;
    }
    return NULL;
}

static void stop_spinning(M *m) {
    if (!m->spinning) return;
    m->spinning = false;
    /* The last spinner to find work wakes another if there is more work (Go's resetspinning
     * wakes one unconditionally: with work handed over one goroutine at a time, by a plain thread,
     * that is a futex wake per hand-off). The decrement is a full fence, so work queued by somebody
     * who saw us spinning (and woke nobody) is visible to the check. */
    if (atomic_fetch_sub(&sched.nmspinning, 1) == 1 &&
        (atomic_load(&sched.runq_size) > 0 || hoare__any_local_work()))
        hoare__wakep();
}

bool hoare__any_local_work(void) {
    int32_t n = atomic_load(&sched.nprocs);
    for (int32_t i = 0; i < n; i++) {
        P *v = atomic_load(&hoare__allp[i]);
        if (v && !runq_empty(v)) return true;
    }
    return false;
}

static bool retire_p(M *m);

/* A spinner that found nothing polls for new work a little longer before it gives up its P (see
 * the header): up to IDLE_SPIN_NS, about two futex wake-ups' worth. Not while goroutines wait for
 * descriptors and no thread waits in the poller: their events would wait for the spin to end.
 * It polls the global queue, where plain threads without a P put the goroutines they ready, but
 * leaves the other processors' local queues alone: what a running processor queues there is
 * mostly its own goroutine's channel partners, which it runs as soon as that goroutine parks.
 * Taken at once, they would split every hand-off across two cores (select went from 360 to 600
 * ns a receive, buffered from 75 to 100 ns an item). A processor that has just run out of work
 * still steals at once (find_runnable), and the spinner does when its spin ends. */
static G *idle_spin(M *m) {
    enum { IDLE_SPIN_NS = 40 * 1000 };
    P *p = m->p;
    if (hoare__netpoll_waiters() > 0 && !atomic_load(&sched.netpoll_blocked)) return NULL;
    hoare_spin spin = {0};
    while (hoare__spin_step(&spin, IDLE_SPIN_NS)) {
        /* a spinner never queues for the lock: whoever holds it is taking the work already */
        if (atomic_load_explicit(&sched.runq_size, memory_order_relaxed) > 0 &&
            hoare__trylock(&sched.lock)) {
            G *g = globrunq_take_locked(p, 0);
            hoare__unlock(&sched.lock);
            if (g) return globrunq_spread(p, g);
        }
        if ((spin.polls & 31) != 0) continue;
        /* now and then: our timers, stack slots to warm (useful work: the spin starts over
         * after it) */
        if (p->id >= atomic_load(&sched.nprocs) || m->preempted_head) return NULL;
        if (hoare__stack_warm()) spin = (hoare_spin){0};
        int64_t now = hoare__nanotime();
        if (atomic_load_explicit(&p->timers.first, memory_order_relaxed) <= now) {
            hoare__timers_run(p, now);
            G *g = runq_get(p);
            if (g) return g;
        }
    }
    return NULL;
}

/* Block until a goroutine can run on this M; return it with m->p set. */
static G *find_runnable(M *m) {
    for (;;) {
        P *p = m->p;
        if (p && p->id >= atomic_load(&sched.nprocs) && retire_p(m)) p = NULL;
        if (p) {
            int64_t now = hoare__nanotime();
            if (atomic_load_explicit(&p->timers.first, memory_order_relaxed) <= now)
                hoare__timers_run(p, now);
            G *g = next_local(m, p);
            if (g) {
                stop_spinning(m);
                return g;
            }
            if (atomic_load_explicit(&sched.runq_size, memory_order_relaxed) > 0) {
                hoare__lock(&sched.lock);
                g = globrunq_take_locked(p, 0);
                hoare__unlock(&sched.lock);
                if (g) {
                    stop_spinning(m);
                    return globrunq_spread(p, g);
                }
            }
            if (hoare__netpoll_waiters() > 0 && !atomic_load(&sched.netpoll_blocked)) {
                G *list = hoare__netpoll(0);
                if (list) {
                    g = list;
                    G *rest = g->schedlink;
                    uint32_t expect = G_WAITING;
                    if (!atomic_compare_exchange_strong(&g->status, &expect, G_RUNNABLE))
                        hoare__fatal("poller returned goroutine %llu not waiting", (unsigned long long)g->id);
                    hoare__ready_list(rest);
                    stop_spinning(m);
                    return g;
                }
            }
            if (m->preempted_head) {
                stop_spinning(m);
                return take_preempted(m);
            }
            int32_t busy = atomic_load(&sched.nprocs) - atomic_load(&sched.npidle);
            if (m->spinning || 2 * atomic_load(&sched.nmspinning) < busy) {
                if (!m->spinning) {
                    m->spinning = true;
                    atomic_fetch_add(&sched.nmspinning, 1);
                }
                g = steal_work(m);
                /* no goroutine to run: commit stack slots ahead of a growing program, then look
                 * again (a batch takes some tens of microseconds) */
                if (!g && hoare__stack_warm()) continue;
                if (!g) g = idle_spin(m);
                if (g) {
                    stop_spinning(m);
                    return g;
                }
            }
            /* Nothing: give up the P. */
            hoare__lock(&sched.lock);
            g = globrunq_take_locked(p, 0);
            if (g) {
                hoare__unlock(&sched.lock);
                stop_spinning(m);
                return globrunq_spread(p, g);
            }
            bool idle = pidle_put_locked(p);
            m->p = NULL;
            hoare__unlock(&sched.lock);
            if (!idle) hoare__timers_move(p, atomic_load(&hoare__allp[0]));
            if (m->spinning) {
                m->spinning = false;
                atomic_fetch_sub(&sched.nmspinning, 1); /* seq_cst: a full fence before the re-check */
                if (hoare__any_local_work() || atomic_load(&sched.runq_size) > 0 ||
                    hoare__stack_warm_wanted()) {
                    hoare__lock(&sched.lock);
                    P *q = pidle_get_locked();
                    hoare__unlock(&sched.lock);
                    if (q) {
                        acquirep(m, q);
                        m->spinning = true;
                        atomic_fetch_add(&sched.nmspinning, 1);
                        continue;
                    }
                }
            }
        }
        /* No P. Wait in the poller if timers or descriptors need somebody to, else sleep. */
        int64_t next_timer = hoare__timers_next();
        uint32_t zero = 0;
        if ((next_timer != INT64_MAX || hoare__netpoll_waiters() > 0) &&
            atomic_compare_exchange_strong(&sched.netpoll_blocked, &zero, 1)) {
            int64_t now = hoare__nanotime();
            int64_t delay = next_timer == INT64_MAX ? -1 : (next_timer > now ? next_timer - now : 0);
            atomic_store(&sched.netpoll_until, next_timer);
            G *list = delay == 0 ? NULL : hoare__netpoll(delay);
            atomic_store(&sched.netpoll_until, INT64_MAX);
            atomic_store(&sched.netpoll_blocked, 0);
            hoare__timers_run(NULL, hoare__nanotime()); /* readies onto the global queue (no P) */
            hoare__lock(&sched.lock);
            P *q = pidle_get_locked();
            hoare__unlock(&sched.lock);
            if (q) {
                acquirep(m, q);
                if (list) {
                    G *g = list;
                    uint32_t expect = G_WAITING;
                    if (!atomic_compare_exchange_strong(&g->status, &expect, G_RUNNABLE))
                        hoare__fatal("poller returned goroutine %llu not waiting", (unsigned long long)g->id);
                    hoare__ready_list(g->schedlink);
                    return g;
                }
                continue;
            }
            hoare__ready_list(list);
            continue;
        }
        hoare__lock(&sched.lock);
        /* Re-check under the lock: work may have been queued while we had no P. */
        if (atomic_load(&sched.runq_size) > 0 && sched.idle_p) {
            acquirep(m, pidle_get_locked());
            hoare__unlock(&sched.lock);
            continue;
        }
        m->link = sched.idle_m;
        sched.idle_m = m;
        sched.nmidle++;
        /* The last M going idle may complete a deadlock (Go's checkdead runs here). The monitor
         * may have looked while this M, its P given up, still counted as busy, and gone to sleep
         * for good: the epoch tells it to look again, the kick wakes it. */
        if (sched.nmidle == sched.nm) {
            sched.deadlock_epoch++;
            hoare__monitor_kick();
        }
        hoare__note_clear(&m->park);
        hoare__unlock(&sched.lock);
        hoare__sigstack_trim(m);
        hoare__note_sleep(&m->park, -1);
        /* woken by startm with a P */
        acquirep(m, m->nextp);
        m->nextp = NULL;
    }
}

static void schedule(M *m) {
    for (;;) {
        run_pending(m);
        G *g = find_runnable(m);
        /* hide g's provenance: gcc 12 -O3 mistakes it for a zero-sized object (false
         * -Wstringop-overflow on the status store) */
        __asm__("" : "+r"(g));
        execute(m, g, false);
        switch_context(&m->g0, g, false);
        resumed(&m->g0);
    }
}

/* ------------------------------------------------------------------------------------------
 * Lending: a plain thread that waits runs goroutines meanwhile.
 *
 * A plain thread that parks (thread.c) first becomes an M for a while: it takes an idle P (or the
 * one it still holds from its last call) and runs that P's goroutines on its own stack, until its
 * waiter record is woken or nothing of its own is left (lend_find). So a thread handing off to a
 * goroutine runs that goroutine itself, on its own core, at goroutine speed - the goroutine it just
 * readied is in its P's runnext - instead of waking another thread and waiting for it. Afterwards
 * it keeps the P as in a blocking region (thread_p_hold): the goroutines it readies or spawns
 * meanwhile go to that P's queues, and the monitor takes it away if the thread stays out long.
 *
 * Rules that keep the thread's own wait prompt and its state its own:
 *  - it runs only its own P's goroutines: the global queue and other processors' belong to the
 *    Ms (a thread that took them would interrupt them at each of its wake-ups);
 *  - once woken, the thread switches to no other goroutine (switch_out goes back to its loop, a
 *    spawn does not run the child first, every yield switches), so it is back at the first switch;
 *  - a wait that lasts (LEND_MAX_NS) is not worth a thread that does not steal and takes no work
 *    from the global queue: the thread then hands its P to an M (once) and sleeps, as if it had
 *    never lent itself;
 *  - a goroutine entering a blocking region moves to a runtime M first (hoare_blocking_begin):
 *    the thread would otherwise sit in the goroutine's system call;
 *  - a goroutine that does not yield is preempted by the monitor once the thread is woken
 *    (preempt.c): lending exists only where preemption works;
 *  - goroutines preempted here are moved to its processor's run queue when the thread leaves
 *    (lend_leave), where other threads may take them (see preempt.c on thread-locals);
 *  - the thread's errno is its own again when it returns;
 *  - before a goroutine with a sub-page stack runs, asynchronous signals are blocked until the
 *    thread leaves (lend_mask_signals). */

M *hoare__lend_m_new(void) {
    M *m = m_alloc();
    if (!m) return NULL;
    m->id = atomic_fetch_add(&mid_gen, 1) + 1;
    m->g0.flags = G_G0;
    m->plain_thread = true;
    M *head = atomic_load(&sched.allm);
    do m->alllink = head;
    while (!atomic_compare_exchange_weak(&sched.allm, &head, m));
    return m;
}

/* Run g from the lending thread's loop. */
static void lend_run(M *m, G *g) {
    lend_mask_signals(m, g);
    execute(m, g, false);
    switch_context(&m->g0, g, false);
    resumed(&m->g0);
}

/* The thread becomes m (holding its P) until `until` at most; returns its errno, for lend_leave. */
static int lend_enter(M *m, G *waiter, int64_t until) {
    int saved_errno = errno;
    tls_m = m;
    m->lend_until = until;
    __atomic_store_n(&m->lender, waiter, __ATOMIC_RELEASE); /* the monitor reads it */
    return saved_errno;
}

static void lend_leave(M *m, int saved_errno) {
    /* Goroutines preempted on the thread go to the queue of the P it keeps (where the thread's
     * next wait, a thief or the monitor's retake finds them), else to the global queue. Not the
     * global queue first: a busy processor's goroutine would be preempted for them, and tied to
     * its thread with them while this P went idle. */
    bool more = false;
    for (G *g; (g = take_preempted(m));) {
        if (m->p) runq_put(m->p, g, false);
        else globrunq_put(g);
        more = true;
    }
    __atomic_store_n(&m->lender, NULL, __ATOMIC_RELEASE);
    tls_m = NULL;
    if (m->lend_masked) {
        pthread_sigmask(SIG_SETMASK, &m->lend_saved_mask, NULL);
        m->lend_masked = false;
    }
    P *p = m->p;
    if (p) {
        thread_p_hold(m, p);
        more |= !runq_empty(p);
    }
    if (more) hoare__wakep();
    errno = saved_errno;
}

/* The next goroutine for a lent thread: only its own P's (and the ones preempted on it). NULL
 * when the thread is woken or has nothing of its own left: it keeps the P (other processors' work
 * is theirs, and taking it would tie their goroutines to the thread's waits) while it spins, and
 * lends itself again if work comes to the P (hoare__lend_wanted); it gives the P up before it
 * sleeps (hoare__lend_drop). After LEND_MAX_NS of lending it gives it up at once. */
static G *lend_find(M *m) {
    P *p = m->p;
    if (!p) return NULL; /* lost in a blocking region */
    if (!lender_leaving(m)) {
        if (p->id >= atomic_load(&sched.nprocs) && retire_p(m)) return NULL;
        int64_t now = hoare__nanotime();
        if (atomic_load_explicit(&p->timers.first, memory_order_relaxed) <= now)
            hoare__timers_run(p, now);
        G *g = next_local(m, p);
        if (g) return g;
        if (m->preempted_head) return take_preempted(m);
        return NULL;
    }
    if (atomic_load_explicit(&m->lender->wake_key, memory_order_relaxed) == WAKE_WOKEN)
        return NULL;
    /* A long wait: the P goes on as if the thread had never lent itself - to an M if there is
     * work, or timers and descriptors that need an M in the poller (an idle M would wait there;
     * this thread will not). */
    m->p = NULL;
    __atomic_store_n(&p->m, NULL, __ATOMIC_RELAXED);
    p_hand_on(p);
    return NULL;
}

bool hoare__lend_wanted(M *m) {
    P *p = m->p; /* a hint: the monitor may have handed it on (hoare__lend finds out) */
    return p && !runq_empty(p);
}

bool hoare__lend(M *m, G *waiter) {
    P *p = thread_p_take(m);
    if (!p) return false;
    int saved_errno = lend_enter(m, waiter, hoare__nanotime() + LEND_MAX_NS);
    for (;;) {
        run_pending(m);
        G *g = lend_find(m);
        if (!g) break;
        lend_run(m, g);
    }
    lend_leave(m, saved_errno);
    return atomic_load_explicit(&waiter->wake_key, memory_order_acquire) == WAKE_WOKEN;
}

/* A plain thread spawning onto its P faster than the goroutines start runs them itself before it
 * goes on, as a goroutine runs its child first: their slots come back hot to its P, and no thread
 * is woken for them. It stops when its queue is empty or HELP_NS have passed (checked whenever a
 * goroutine switches back to it). Its record reads WOKEN (it is not waiting), so a goroutine that
 * does not yield is preempted as for a woken lender. */
static void thread_help(M *lm, P *p) {
    enum { HELP_NS = 50 * 1000 };
    G *self = hoare__thread_waiter_peek();
    atomic_store_explicit(&self->wake_key, WAKE_WOKEN, memory_order_relaxed);
    int64_t end = hoare__nanotime() + HELP_NS;
    int saved_errno = lend_enter(lm, self, end);
    /* the clock is read every 8th goroutine: a read costs about as much as a short goroutine */
    uint32_t runs = 0;
    for (G *g; lm->p == p && (g = runq_get(p));) {
        lend_run(lm, g);
        if ((++runs & 7) == 0 && hoare__nanotime() > end) break;
    }
    lend_leave(lm, saved_errno);
}

HIDDEN void hoare__signals_thread_init(void);

void hoare__m_bind_thread(M *m) {
    m->thread = pthread_self();
    m->errno_loc = &errno;
    pthread_attr_t attr;
    if (pthread_getattr_np(m->thread, &attr) == 0) {
        void *lo;
        size_t size;
        pthread_attr_getstack(&attr, &lo, &size);
        m->g0.stack_lo = lo;
        m->g0.stack_size = size;
        pthread_attr_destroy(&attr);
    }
}

static void *mstart(void *arg) {
    M *m = arg;
    tls_m = m;
    hoare__m_bind_thread(m);
    hoare__signals_thread_init();
#ifdef HOARE_TSAN
    m->g0.tsan_fiber = __tsan_get_current_fiber();
#endif
    m->g0.id = 0;
    M *head = atomic_load(&sched.allm);
    do m->alllink = head;
    while (!atomic_compare_exchange_weak(&sched.allm, &head, m));
    acquirep(m, m->nextp);
    m->nextp = NULL;
    schedule(m);
    return NULL;
}

/* ------------------------------------------------------------------------------------------
 * Goroutine creation and exit */

/* First code of a new goroutine (called by hoare__ctx_trampoline on its own stack). */
HIDDEN void hoare__g_start(void);
void hoare__g_start(void) {
#ifdef HOARE_ASAN
    __sanitizer_finish_switch_fiber(NULL, NULL, NULL);
#endif
    M *m = hoare__getm();
    run_pending(m);
    G *g = m->curg;
    *m->errno_loc = 0;
    g->fn(g->arg);
    hoare_exit();
}

static void exit_finish(M *m, G *g) {
#ifdef HOARE_TSAN
    __tsan_destroy_fiber(g->tsan_fiber);
    g->tsan_fiber = NULL;
#endif
    hoare__g_free(g, m->p ? &m->p->gcache : NULL);
}

void hoare_exit(void) {
    M *m = hoare__getm();
    G *g = m ? m->curg : NULL;
    if (!g) {
        /* Go's Goexit from main: the others go on; once none is left, that is a deadlock */
        hoare__deadlock_thread_exits();
        pthread_exit(NULL);
    }
    if (g->flags & G_MAIN) hoare__deadlock_main_goexits();
    g->preempt_off++;
    atomic_store_explicit(&g->status, G_DEAD, memory_order_relaxed);
    trace_go_exit(g);
    atomic_fetch_sub(&sched.ngoroutines, 1);
    m->pend_kind = PEND_EXIT;
    m->pend_g = g;
    switch_out(m, g);
    __builtin_unreachable();
}

uint64_t hoare__new_goid(P *p) {
    enum { BATCH = 16 };
    if (!p) return atomic_fetch_add(&goid_gen, 1) + 1;
    if (p->goid_next == p->goid_end) {
        p->goid_next = atomic_fetch_add(&goid_gen, BATCH) + 1;
        p->goid_end = p->goid_next + BATCH;
    }
    return p->goid_next++;
}

/* A plain thread spawning in a loop would run ahead of the processors by thousands of goroutines,
 * each on a stack slot of its own that nobody has touched yet (a page fault each, ~10 us on some
 * VMs), where a goroutine spawning runs its child first and reuses one hot slot. So past a backlog
 * of SPAWN_BACKLOG goroutines per processor in the global queue, the spawner yields its CPU until
 * the processors have taken half of it. Bounded: processors busy with goroutines that do not yield
 * must not hold the spawner back, so a wait of SPAWN_WAIT_NS in which the backlog did not shrink
 * turns the pressure off for this thread's next SPAWN_SKIP spawns. */
static RUNTIME_TLS uint32_t tls_backpressure_skip;

static void spawn_backpressure(void) {
    enum { SPAWN_BACKLOG = 64, SPAWN_WAIT_NS = 50 * 1000, SPAWN_SKIP = 4096 };
    if (tls_backpressure_skip) {
        tls_backpressure_skip--;
        return;
    }
    int32_t high = SPAWN_BACKLOG * atomic_load_explicit(&sched.nprocs, memory_order_relaxed);
    int32_t size = atomic_load_explicit(&sched.runq_size, memory_order_relaxed);
    if (size <= high) return;
    int32_t start = size;
    int64_t deadline = hoare__nanotime() + SPAWN_WAIT_NS;
    do {
        sched_yield();
        size = atomic_load_explicit(&sched.runq_size, memory_order_relaxed);
    } while (size > high / 2 && hoare__nanotime() < deadline);
    if (size >= start) tls_backpressure_skip = SPAWN_SKIP;
}

int hoare_go_with(const hoare_attr *a, void (*fn)(void *), void *arg) {
    if (!fn) return EINVAL;
    ensure_init();
    M *m = getm_here();
    G *cur = m ? m->curg : NULL;
    if (cur) cur->preempt_off++;
    M *lm = m ? NULL : hoare__thread_lend_m();
    P *held = thread_p_take(lm); /* a plain thread spawns onto the processor it holds */
    P *p = m ? m->p : held;
    /* inside a blocking region the monitor may hand m->p to another M at any time */
    if (cur && atomic_load_explicit(&cur->status, memory_order_relaxed) == G_BLOCKING) p = NULL;
    G *g = hoare__g_alloc(a ? a->stack_size : 0, p ? &p->gcache : cur ? NULL : hoare__thread_gcache());
    if (!g) {
        if (cur) cur->preempt_off--;
        if (held) thread_p_hold(lm, held);
        return errno == ENOMEM ? ENOMEM : EAGAIN;
    }
    g->fn = fn;
    g->arg = arg;
    g->id = hoare__new_goid(p);
    g->schedlink = NULL;
    g->m = NULL;
    atomic_store_explicit(&g->wait_reason, NULL, memory_order_relaxed);
    g->param = NULL;
    g->trace_flow = 0;
    atomic_store_explicit(&g->preempt, 0, memory_order_relaxed);
    g->preempt_off = 0;
    g->start_pc = (uintptr_t)fn;
    g->creator_pc = (uintptr_t)__builtin_return_address(0);
    g->creator_id = cur ? cur->id : 0;
    g->name[0] = 0;
    if (a && a->name) {
        strncpy(g->name, a->name, sizeof g->name - 1);
        g->name[sizeof g->name - 1] = 0;
    }
    g->sp = hoare__ctx_make(g->stack_lo + g->stack_size);
#ifdef HOARE_TSAN
    g->tsan_fiber = __tsan_create_fiber(0);
#endif
    observe_go_create(m, g);
    atomic_fetch_add_explicit(&sched.ngoroutines, 1, memory_order_relaxed);
    atomic_store_explicit(&g->status, G_RUNNABLE, memory_order_release);
    /* Child first, up to a chain of SPAWN_CHAIN_MAX: the new goroutine runs now and its parent
     * next (in runnext, where an idle processor may steal it). A spawning loop then never builds a
     * backlog of goroutines that have not started, so their slots come hot from the processor's
     * cache, and a tree of goroutines unfolds depth first with few alive at once. But goroutines
     * that each spawn their successor and exit would run child first for ever, never switching
     * out: every parent would wait behind its child (a backlog growing by one a spawn), and
     * nothing else on the processor - its queue, its timers - would run again. Past the bound
     * the child is queued instead and the parent goes on, as in Go; the next switch resets it. */
    enum { SPAWN_CHAIN_MAX = 32 };
    if (cur && p && !lender_leaving(m) && p->spawn_chain >= SPAWN_CHAIN_MAX) {
        runq_put(p, g, false);
        hoare__wakep();
        cur->preempt_off--;
        return 0;
    }
    if (cur && p && !lender_leaving(m)) {
        if (unlikely(m->lender != NULL)) lend_mask_signals(m, g);
        p->spawn_chain++;
        g->m = m;
        m->pend_kind = PEND_SPAWN;
        m->pend_g = cur;
        cur->saved_errno = *m->errno_loc;
        cur->m = NULL;
        execute(m, g, false);
        switch_context(cur, g, false);
        resumed(cur);
        cur->preempt_off--;
        return 0;
    }
    if (held) {
        /* g runs when the thread next waits; a backlog, now (see thread_help) */
        if (runq_put(held, g, true)) thread_help(lm, held);
        else thread_p_hold(lm, held);
    } else if (cur && p) {
        /* A goroutine on a lent thread that is leaving (woken, or lent for LEND_MAX_NS): g runs
         * next, and the spawner yields now, so that the thread leaves; a spawning loop would
         * otherwise keep it, without child-first, until its time slice ends. */
        runq_put(p, g, true);
        m->pend_kind = PEND_YIELD;
        m->pend_g = cur;
        switch_out(m, cur);
        cur->preempt_off--;
        return 0;
    } else {
        globrunq_put(g);
        hoare__wakep();
    }
    if (cur) cur->preempt_off--;
    else spawn_backpressure();
    return 0;
}

int hoare_go(void (*fn)(void *), void *arg) { return hoare_go_with(NULL, fn, arg); }

/* ------------------------------------------------------------------------------------------
 * Blocking regions (Go's entersyscall/exitsyscall): the M keeps its P, marked so that the monitor
 * can hand it to another M if the call lasts; at the end the M takes its P back if it can, else
 * another idle P, else it queues its goroutine and goes idle. */

void hoare_blocking_begin(void) {
    M *m = hoare__getm();
    G *g = m ? m->curg : NULL;
    if (!g) return;
    if (unlikely(atomic_load_explicit(&g->status, memory_order_relaxed) == G_BLOCKING))
        hoare__fatal("hoare_blocking_begin inside a blocking region (goroutine %llu)", (unsigned long long)g->id);
    while (unlikely(m->lender != NULL)) {
        /* A lent thread (see "Lending") must not block in the goroutine's call: its own wait, or
         * the hoare_go it is helping (thread_help), would last as long. The goroutine moves to a
         * runtime thread first - through the global queue, which lent threads never take from
         * (an M may pass it on to its own queue, which a thread may lend itself to later: hence
         * the loop) - and enters its region there. */
        g->preempt_off++;
        m->pend_kind = PEND_BLOCKED;
        m->pend_g = g;
        switch_out(m, g);
        g->preempt_off--;
        m = hoare__getm();
    }
    P *p = m->p;
    /* not preemptible from here to the end of the region: the region owns the M's state */
    g->preempt_off++;
    atomic_store_explicit(&g->status, G_BLOCKING, memory_order_relaxed);
    trace_blocking(g, true);
    atomic_fetch_add_explicit(&sched.nblocking, 1, memory_order_seq_cst); /* before the kick */
    m->region_word = (++p->blocking_tick << 2) | REGION_IN;
    atomic_store_explicit(&p->blocking, m->region_word, memory_order_release);
    hoare__monitor_kick();
}

void hoare_blocking_end(void) {
    M *m = hoare__getm();
    G *g = m ? m->curg : NULL;
    if (!g) return;
    P *p = m->p;
    if (!p || atomic_load_explicit(&g->status, memory_order_relaxed) != G_BLOCKING)
        hoare__fatal("hoare_blocking_end without hoare_blocking_begin (goroutine %llu)",
                     (unsigned long long)g->id);
    uint64_t mine = m->region_word;
    trace_blocking(g, false);
    atomic_fetch_sub_explicit(&sched.nblocking, 1, memory_order_relaxed);
    if (likely(atomic_compare_exchange_strong(&p->blocking, &mine, 0))) {
        atomic_store_explicit(&g->status, G_RUNNING, memory_order_relaxed);
        g->preempt_off--;
        return;
    }
    /* The monitor gave our P away. Any idle P will do; if none, wait in the global queue. */
    m->p = NULL;
    hoare__lock(&sched.lock);
    P *q = pidle_get_locked();
    hoare__unlock(&sched.lock);
    if (q) {
        acquirep(m, q);
        atomic_store_explicit(&g->status, G_RUNNING, memory_order_relaxed);
        g->preempt_off--;
        return;
    }
    m->pend_kind = PEND_BLOCKED;
    m->pend_g = g;
    switch_out(m, g);
    g->preempt_off--;
}

bool hoare__p_has_queued(P *p) { return !runq_empty(p); }

bool hoare__p_has_work(P *p) {
    return !runq_empty(p) || atomic_load(&sched.runq_size) > 0 ||
           atomic_load_explicit(&p->timers.first, memory_order_relaxed) != INT64_MAX;
}

bool hoare__retake_blocked(P *p, uint64_t word) {
    if (!atomic_compare_exchange_strong(&p->blocking, &word, 0)) return false;
    /* The P is ours; its old M will find out at hoare_blocking_end. */
    trace_handoff(p);
    __atomic_store_n(&p->m, NULL, __ATOMIC_RELAXED);
    if (p->id >= atomic_load(&sched.nprocs) && retire(p, NULL)) return true;
    p_hand_on(p);
    return true;
}

void hoare_yield(void) {
    M *m = hoare__getm();
    G *g = m ? m->curg : NULL;
    if (!g) {
        sched_yield();
        return;
    }
    P *p = m->p;
    if (!p) return; /* inside a blocking region: nothing to yield to */
    /* Nothing else to run here or globally: stealers will find us if they are idle. A lent
     * thread that wants to go back to its own code, or a P that must retire (procs shrank), takes
     * every yield. */
    if (runq_empty(p) && atomic_load_explicit(&sched.runq_size, memory_order_relaxed) == 0 &&
        !m->preempted_head && !lender_leaving(m) &&
        p->id < atomic_load_explicit(&sched.nprocs, memory_order_relaxed))
        return;
    g->preempt_off++;
    m->pend_kind = PEND_YIELD;
    m->pend_g = g;
    switch_out(m, g);
    g->preempt_off--;
}

uint64_t hoare_id(void) {
    G *g = hoare__curg();
    return g ? g->id : 0;
}

size_t hoare_count(void) {
    int64_t n = atomic_load(&sched.ngoroutines);
    return n > 0 ? (size_t)n : 0;
}

/* ------------------------------------------------------------------------------------------
 * Processors: how many, and changing that while running */

static int default_procs(void) {
    long procs;
    if (hoare__env_long("HOARE_PROCS", 1, LONG_MAX, &procs)) return procs > HOARE_MAX_PROCS ? HOARE_MAX_PROCS : (int)procs;
    int n = 1;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
    else n = (int)sysconf(_SC_NPROCESSORS_ONLN);
    /* cgroup v2 CPU quota: "max 100000" or "<quota> <period>" */
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (f) {
        char line[512], path[600];
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "0::", 3) != 0) continue;
            line[strcspn(line, "\n")] = 0;
            snprintf(path, sizeof path, "/sys/fs/cgroup%s/cpu.max", line + 3);
            FILE *q = fopen(path, "r");
            if (q) {
                char quota[32];
                long period;
                if (fscanf(q, "%31s %ld", quota, &period) == 2 && strcmp(quota, "max") != 0 && period > 0) {
                    long cpus = (atol(quota) + period - 1) / period;
                    if (cpus > 0 && cpus < n) n = (int)cpus;
                }
                fclose(q);
            }
        }
        fclose(f);
    }
    if (n < 1) n = 1;
    return n > HOARE_MAX_PROCS ? HOARE_MAX_PROCS : n;
}

static P *make_p(int32_t id) {
    P *p = atomic_load(&hoare__allp[id]);
    if (p) return p;
    p = alloc_lines(sizeof *p);
    if (!p) hoare__fatal("out of memory for processor %d", id);
    p->id = id;
    atomic_store(&p->status, P_RETIRED); /* until it goes to the idle list */
    p->picks_left = 61;
    atomic_store(&p->timers.first, INT64_MAX);
    atomic_store_explicit(&hoare__allp[id], p, memory_order_release);
    return p;
}

/* p is no longer wanted (procs shrank): hand its work to the others. m owns p (NULL: nobody
 * does, e.g. the monitor took it from a blocking region). false if procs grew back in the
 * meantime and p is wanted again. */
static bool retire(P *p, M *m) {
    hoare__g_cache_flush(&p->gcache);
    hoare__timers_move(p, atomic_load(&hoare__allp[0]));
    hoare__lock(&sched.lock);
    if (p->id < atomic_load(&sched.nprocs)) {
        hoare__unlock(&sched.lock);
        return false;
    }
    G *g;
    while ((g = runq_get(p))) globrunq_put_locked(g);
    atomic_store(&p->status, P_RETIRED);
    __atomic_store_n(&p->m, NULL, __ATOMIC_RELAXED);
    if (m) {
        /* Goroutines preempted here lose their tie to this thread: with no processor it cannot
         * run them (they may then see another thread's thread-locals, as in preempt.c). */
        while ((g = take_preempted(m))) globrunq_put_locked(g);
        m->p = NULL;
    }
    hoare__unlock(&sched.lock);
    if (m && m->spinning) {
        m->spinning = false;
        atomic_fetch_sub(&sched.nmspinning, 1);
    }
    hoare__wakep();
    return true;
}

static bool retire_p(M *m) { return retire(m->p, m); }

int hoare_procs(int n) {
    ensure_init();
    if (n > HOARE_MAX_PROCS) n = HOARE_MAX_PROCS;
    P *retired_idle[HOARE_MAX_PROCS];
    int nretired = 0;
    hoare__lock(&sched.lock);
    int old = atomic_load(&sched.nprocs);
    if (n <= 0 || n == old) {
        hoare__unlock(&sched.lock);
        return old;
    }
    /* the Ps exist before nprocs counts them; pidle_put_locked retires those beyond nprocs */
    for (int32_t i = old; i < n; i++) make_p(i);
    atomic_store(&sched.nprocs, n);
    if (n > old) {
        for (int32_t i = old; i < n; i++) {
            P *p = atomic_load(&hoare__allp[i]);
            if (atomic_load(&p->status) == P_RETIRED) pidle_put_locked(p);
        }
    } else {
        /* Idle Ps beyond n leave the idle list now; running ones retire at their next schedule. */
        P **link = &sched.idle_p;
        while (*link) {
            P *p = *link;
            if (p->id >= n) {
                *link = p->link;
                atomic_fetch_sub(&sched.npidle, 1);
                atomic_store(&p->status, P_RETIRED);
                retired_idle[nretired++] = p;
            } else {
                link = &p->link;
            }
        }
    }
    hoare__unlock(&sched.lock);
    /* Idle Ps retired here may still hold timers (a P goes idle with its timers pending); nobody
     * else touches a retired idle P. Running ones move their own timers when they retire. */
    for (int i = 0; i < nretired; i++) hoare__timers_move(retired_idle[i], atomic_load(&hoare__allp[0]));
    for (int i = 0; i < n; i++) hoare__wakep();
    return old;
}

/* ------------------------------------------------------------------------------------------
 * Start-up */

HIDDEN void hoare__signals_init(void);

HIDDEN bool hoare__forked_child;

/* In the child of a fork: every call that needs the runtime's threads now goes through
 * ensure_init's slow path or a park, and both end the child with a clear message. */
static void on_fork_child(void) {
    hoare__forked_child = true;
    atomic_store_explicit(&initialised, false, memory_order_relaxed);
}

void hoare__fatal_forked(const char *what) {
    /* No goroutine list (the goroutines are the parent's, copied), and plain writes: the caller may
     * be a goroutine with a sub-page stack. */
    static const char before[] = "fatal error: ";
    static const char after[] = " after fork(): this child process has none of hoare's threads; in a "
                                "child forked from a program using hoare, call only exec or _exit (as in Go)\n";
    if (write(2, before, sizeof before - 1) < 0 || write(2, what, strlen(what)) < 0 ||
        write(2, after, sizeof after - 1) < 0) {
        /* nothing more to say */
    }
    _exit(2);
}

static void do_init(void) {
    pthread_atfork(NULL, NULL, on_fork_child);
    int n = default_procs();
    hoare__threads_init();
    hoare__netpoll_init();
    hoare__signals_init();
    hoare__preempt_init();
    for (int32_t i = 0; i < n; i++) make_p(i);
    atomic_store(&sched.nprocs, n);
    for (int32_t i = n - 1; i >= 0; i--) pidle_put_locked(atomic_load(&hoare__allp[i]));
    hoare__monitor_start();
    atomic_store_explicit(&initialised, true, memory_order_release);
    hoare__trace_init();
    hoare__stats_init();
}

static void ensure_init(void) {
    if (likely(atomic_load_explicit(&initialised, memory_order_acquire))) return;
    if (hoare__forked_child) hoare__fatal_forked("hoare used");
    pthread_once(&init_once, do_init);
}

void hoare__init(void) { ensure_init(); }

void hoare__once(pthread_once_t *once, void (*init)(void)) {
    G *g = hoare__curg();
    if (g) g->preempt_off++;
    pthread_once(once, init);
    if (g) g->preempt_off--;
}
