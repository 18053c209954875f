/*
 * thread.c - plain threads (main() and any thread the runtime did not start) as first-class
 * waiters.
 *
 * A plain thread that blocks on a runtime object gets a waiter record: a G without a stack, so
 * channels, select, sync and timers treat it like a goroutine. It waits in three phases:
 *  1. it lends itself to the scheduler (sched.c, "Lending"): with the processor it kept from its
 *     last call (or a free one) it runs that processor's goroutines - first the one it just
 *     readied - until it is woken or none is left;
 *  2. it spins for a short while (THREAD_SPIN_NS), watching its wake word: a partner that answers
 *     within microseconds - a goroutine echoing a message - wakes it with one compare-and-swap and
 *     no system call on either side. It keeps its processor meanwhile, and goes back to phase 1
 *     when goroutines are queued there;
 *  3. then it gives up its processor and sleeps on a futex, costing no CPU however long the wait.
 * HOARE_LEND=0 turns phase 1 off.
 * Lending needs preemption, to get the thread back from a goroutine that does not yield: a process
 * without it (TSan, valgrind, HOARE_PREEMPT=0, kernels without SS_AUTODISARM) skips phase 1. The
 * preemption handler's frames live on the runtime's alternate signal stacks, so a thread that
 * lends gets one in place of its own for as long as it lives (its own comes back at its exit).
 *
 * The wake word (G.wake_key) moves WAKE_SPINNING -> WAKE_WOKEN (the waker, by CAS: the fast path)
 * or WAKE_SPINNING -> WAKE_SLEEPING (the waiter, giving up the spin) -> WAKE_WOKEN (the waker, who
 * then makes the futex call). A waiter without a timer of its own counts as blocked for the
 * deadlock check (deadlock.c) while it sleeps. It is counted when it moves to WAKE_SLEEPING and
 * uncounted by its waker when the waker moves it to WAKE_WOKEN, both under sched.lock: the check
 * never sees a woken thread as blocked, and a thread never parks again before its waker uncounted it.
 *
 * Records are recycled (never freed) when their thread exits, so a late waker never touches freed
 * memory. Each record also carries a cache of goroutine slots, so that a thread spawning goroutines
 * does not take the stack pool's lock for each.
 */
#include "proc.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>

/* How long a plain thread spins before it sleeps: about two futex sleep-and-wake round trips on
 * the machines we measured (18 us each), so a partner that answers within that never pays one. */
enum { THREAD_SPIN_NS = 40 * 1000 };

/* Whether the thread that has a record lends itself (LEND_UNKNOWN: not decided yet). */
enum lend_state { LEND_UNKNOWN = 0, LEND_READY, LEND_OFF };

/* A plain thread's record: the waiter G first (records are found from a G by a cast). */
typedef struct thread_rec {
    G g;
    g_cache gcache; /* owned by the thread; flushed to the global pool when it exits */
    M *lend_m;      /* the M it becomes while it lends itself; kept with the record */
    enum lend_state lend; /* for the thread that has the record now */
    stack_t own_sigstack; /* the thread's alternate signal stack before ours (SS_DISABLE: none) */
    bool urg_was_blocked; /* it blocked SIGURG, which lending needs: blocked again at its exit */
} thread_rec;

static hoare_lock pool_lock;         /* guards free_recs */
static thread_rec *free_recs;        /* linked by g.schedlink */
static _Atomic(G *) all_waiters;     /* every record ever made, prepend-only, for dumps */
static pthread_key_t rec_key;        /* its destructor recycles the thread's record */
static RUNTIME_TLS thread_rec *tls_rec;
HIDDEN RUNTIME_TLS M *hoare__tls_lend_m;

static void set_urg_blocked(bool blocked) {
    sigset_t urg;
    sigemptyset(&urg);
    sigaddset(&urg, SIGURG);
    pthread_sigmask(blocked ? SIG_BLOCK : SIG_UNBLOCK, &urg, NULL);
}

static void rec_release(void *p) {
    thread_rec *r = p;
    hoare__g_cache_flush(&r->gcache);
    if (r->lend == LEND_READY) {
        M *m = r->lend_m;
        hoare__lend_drop(m);
        /* The thread gets its own alternate stack back; ours stays with the M for the record's
         * next thread - unless somebody replaced or freed it meanwhile (a sanitizer's thread
         * exit frees the current one). */
        stack_t cur;
        if (sigaltstack(NULL, &cur) == 0 && cur.ss_sp == m->sigstack)
            sigaltstack(&r->own_sigstack, NULL);
        else
            m->sigstack = NULL;
        if (r->urg_was_blocked) set_urg_blocked(true);
        hoare__tls_lend_m = NULL;
    }
    hoare__lock(&pool_lock);
    r->g.schedlink = (G *)free_recs;
    free_recs = r;
    hoare__unlock(&pool_lock);
}

/* Lending is on unless HOARE_LEND=0. */
static bool lend_on;

void hoare__threads_init(void) {
    pthread_key_create(&rec_key, rec_release);
    lend_on = hoare__env_switch("HOARE_LEND", true);
}

void hoare__each_thread_waiter(void (*fn)(G *g, void *arg), void *arg) {
    for (G *g = atomic_load(&all_waiters); g; g = g->alllink)
        if (atomic_load(&g->status) == G_WAITING && !(g->flags & G_HIDDEN)) fn(g, arg);
}

static thread_rec *thread_record(void) {
    thread_rec *r = tls_rec;
    if (likely(r != NULL)) return r;
    hoare__init();
    hoare__lock(&pool_lock);
    r = free_recs;
    if (r) free_recs = (thread_rec *)r->g.schedlink;
    hoare__unlock(&pool_lock);
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) hoare__fatal("out of memory for a thread waiter record");
        r->g.flags = G_THREAD;
        r->g.id = hoare__new_goid(NULL);
        G *head = atomic_load(&all_waiters);
        do r->g.alllink = head;
        while (!atomic_compare_exchange_weak(&all_waiters, &head, &r->g));
    }
    r->g.schedlink = NULL;
    r->g.flags &= ~(uint32_t)G_HIDDEN;
    r->lend = LEND_UNKNOWN;
    atomic_store(&r->g.status, G_RUNNING);
    tls_rec = r;
    pthread_setspecific(rec_key, r);
    return r;
}

G *hoare__g(void) {
    M *m = hoare__getm();
    if (m && m->curg) return m->curg;
    return &thread_record()->g;
}

G *hoare__thread_waiter_peek(void) { return tls_rec ? &tls_rec->g : NULL; }

g_cache *hoare__thread_gcache(void) { return &thread_record()->gcache; }

/* The thread's M for lending, set up at its first wait (NULL: this thread does not lend). */
static M *lend_m(thread_rec *r) {
    if (likely(r->lend == LEND_READY)) return r->lend_m;
    if (r->lend == LEND_OFF) return NULL;
    r->lend = LEND_OFF;
    if (!lend_on || !hoare__preempt_enabled() || !hoare__sigstack_autodisarm) return NULL;
    /* The preemption handler's frames live on our alternate stack (preempt.c): it replaces the
     * thread's own for the thread's life (a sanitizer gives every thread one). */
    if (sigaltstack(NULL, &r->own_sigstack) != 0 || (r->own_sigstack.ss_flags & SS_ONSTACK))
        return NULL;
    if (r->own_sigstack.ss_flags & SS_DISABLE)
        r->own_sigstack = (stack_t){.ss_sp = NULL, .ss_size = 0, .ss_flags = SS_DISABLE};
    if (!r->lend_m && !(r->lend_m = hoare__lend_m_new())) return NULL;
    M *m = r->lend_m;
    if (!m->sigstack) {
        m->sigstack = hoare__mmap(NULL, HOARE_SIGSTACK_SIZE, PROT_READ | PROT_WRITE,
                                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m->sigstack == MAP_FAILED) {
            m->sigstack = NULL;
            return NULL;
        }
    }
    stack_t ss = {.ss_sp = m->sigstack, .ss_size = HOARE_SIGSTACK_SIZE, .ss_flags = SS_AUTODISARM};
    if (sigaltstack(&ss, NULL) != 0) return NULL;
    /* A goroutine that never yields gives the thread back only when preempted: a thread that
     * blocked SIGURG (servers often block every signal but in one thread) would run it for good. */
    sigset_t mask;
    r->urg_was_blocked = pthread_sigmask(SIG_SETMASK, NULL, &mask) == 0 && sigismember(&mask, SIGURG);
    if (r->urg_was_blocked) set_urg_blocked(false);
    hoare__m_bind_thread(m);
    r->lend = LEND_READY;
    hoare__tls_lend_m = m;
    return m;
}

M *hoare__thread_lend_m_slow(void) { return lend_m(thread_record()); }

/* Phase 2: true if woken while spinning. A wait with a timer that fires later than the spin could
 * last (a sleep) skips it. A lending thread (m) keeps its processor meanwhile, and lends itself
 * again when goroutines are queued there (readied by a goroutine running elsewhere). */
static bool spin_for_wake(G *g, M *m) {
    if (atomic_load_explicit(&g->sleep_timer.state, memory_order_relaxed) != 0 &&
        g->sleep_timer.when - hoare__nanotime() > THREAD_SPIN_NS)
        return false;
    hoare_spin spin = {0};
    do {
        if (atomic_load_explicit(&g->wake_key, memory_order_acquire) == WAKE_WOKEN) return true;
        if (m && (spin.polls & 15) == 0 && hoare__lend_wanted(m) && hoare__lend(m, g)) return true;
    } while (hoare__spin_step(&spin, THREAD_SPIN_NS));
    return atomic_load_explicit(&g->wake_key, memory_order_acquire) == WAKE_WOKEN;
}

void hoare__park_thread(G *g, const char *reason, bool (*commit)(G *, void *), void *arg) {
    atomic_store_explicit(&g->wait_reason, reason, memory_order_relaxed);
    atomic_store_explicit(&g->wait_since, atomic_load_explicit(&hoare__coarse_now, memory_order_relaxed),
                          memory_order_relaxed);
    atomic_store_explicit(&g->wake_key, WAKE_SPINNING, memory_order_relaxed);
    atomic_store_explicit(&g->status, G_WAITING, memory_order_release);
    if (commit && !commit(g, arg)) {
        atomic_store(&g->status, G_RUNNING);
        return;
    }
    M *m = lend_m((thread_rec *)g);
    if ((m && hoare__lend(m, g)) || spin_for_wake(g, m)) {
        atomic_store(&g->status, G_RUNNING);
        return;
    }
    /* Phase 3: a sleeping thread keeps no processor. */
    if (m) hoare__lend_drop(m);
    uint32_t spinning = WAKE_SPINNING;
    if (atomic_load_explicit(&g->sleep_timer.state, memory_order_relaxed) != 0) {
        /* a timer will wake it: no deadlock to count */
        atomic_compare_exchange_strong(&g->wake_key, &spinning, WAKE_SLEEPING);
    } else {
        hoare__lock(&hoare__sched.lock);
        if (atomic_compare_exchange_strong(&g->wake_key, &spinning, WAKE_SLEEPING)) {
            g->deadlock_counted = true;
            hoare__deadlock_count_locked(+1);
        }
        hoare__unlock(&hoare__sched.lock);
    }
    while (atomic_load_explicit(&g->wake_key, memory_order_acquire) != WAKE_WOKEN)
        hoare__futex_wait(&g->wake_key, WAKE_SLEEPING, -1);
    atomic_store(&g->status, G_RUNNING);
}

void hoare__ready_thread(G *g) {
    uint32_t expect = G_WAITING;
    if (!atomic_compare_exchange_strong(&g->status, &expect, G_RUNNABLE))
        hoare__fatal("ready of a thread that is not waiting (status %u)", expect);
    /* Fast path: the waiter still spins, or lends itself (a monitor sleeping long while every
     * processor is busy must come and preempt its goroutine: the seq_cst CAS before its check). */
    uint32_t spinning = WAKE_SPINNING;
    if (atomic_compare_exchange_strong(&g->wake_key, &spinning, WAKE_WOKEN)) {
        hoare__monitor_kick();
        return;
    }
    /* It sleeps (it moved to WAKE_SLEEPING, and only we can move it on). It set deadlock_counted
     * under the lock after that move: read it under the lock too. */
    hoare__lock(&hoare__sched.lock);
    if (g->deadlock_counted) {
        g->deadlock_counted = false;
        hoare__deadlock_count_locked(-1);
    }
    atomic_store_explicit(&g->wake_key, WAKE_WOKEN, memory_order_release);
    hoare__unlock(&hoare__sched.lock);
    hoare__futex_wake(&g->wake_key, 1);
}
