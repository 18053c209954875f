/*
 * sync.c - Mutex, RWMutex, WaitGroup, Once and Cond (Go's sync package design), parking on the
 * runtime semaphore of sema.c, so that they park goroutines and sleep plain threads alike.
 *
 * Memory: like Go's, these objects touch their own memory after they let another waiter go (a
 * mutex's unlock re-reads the state word, a WaitGroup waiter re-checks the counter). Free one only
 * when no call on it can still be running: for a mutex, after its last unlock returned; for a
 * WaitGroup with several waiters, after all of them returned.
 */
#include <errno.h>

#include "proc.h"
#include "sync.h"

/* ======================================================================== Mutex
 * state: bit 0 locked, bit 1 woken (a waiter was woken or is spinning: unlock need not wake
 * another), bit 2 starving (hand-off mode), bits 3.. the number of waiters parked or about to park.
 * sema: the runtime semaphore waiters park on.
 *
 * Normal mode: waiters queue FIFO, but a woken waiter competes with newcomers (who are running and
 * usually win); a waiter that lost keeps its place at the front of the queue (LIFO requeue). A
 * waiter that waited more than STARVATION_NS switches the mutex to starvation mode: unlock then
 * hands the mutex straight to the first waiter, newcomers queue at the back and never spin. The
 * last waiter, or one that waited less than STARVATION_NS, switches back to normal mode. */

enum {
    MUTEX_LOCKED = 1,
    MUTEX_WOKEN = 2,
    MUTEX_STARVING = 4,
    MUTEX_WAITER_SHIFT = 3,
    MUTEX_ONE_WAITER = 1 << MUTEX_WAITER_SHIFT,
};
#define STARVATION_NS (1 * HOARE_MS)
#define SPIN_ROUNDS 4
#define SPIN_PAUSES 30

static int32_t load_state(const int32_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static bool cas_state(int32_t *p, int32_t *old, int32_t new) {
    return __atomic_compare_exchange_n(p, old, new, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED);
}

/* Spinning makes sense only if the holder may be running on another processor: some processor
 * other than ours is busy (Go's canSpin, without its local run queue test). */
static bool can_spin(int round) {
    if (round >= SPIN_ROUNDS) return false;
    int32_t procs = atomic_load_explicit(&hoare__sched.nprocs, memory_order_relaxed);
    int32_t idle = atomic_load_explicit(&hoare__sched.npidle, memory_order_relaxed) +
                   atomic_load_explicit(&hoare__sched.nmspinning, memory_order_relaxed);
    return procs > idle + 1;
}

static void spin(void) {
    for (int i = 0; i < SPIN_PAUSES; i++) hoare__cpu_relax();
}

static NOIPA void mutex_lock_slow(hoare_mutex *mu) {
    int64_t wait_start = 0;
    bool starving = false; /* this waiter waited longer than STARVATION_NS */
    bool awoke = false;    /* this waiter set MUTEX_WOKEN (or was woken): it must clear it */
    int round = 0;
    int32_t old = load_state(&mu->state);
    for (;;) {
        /* Spin while locked in normal mode; set WOKEN so that unlock does not wake another. */
        if ((old & (MUTEX_LOCKED | MUTEX_STARVING)) == MUTEX_LOCKED && can_spin(round)) {
            if (!awoke && !(old & MUTEX_WOKEN) && (old >> MUTEX_WAITER_SHIFT) != 0 &&
                cas_state(&mu->state, &old, old | MUTEX_WOKEN))
                awoke = true;
            spin();
            round++;
            old = load_state(&mu->state);
            continue;
        }
        int32_t new = old;
        if (!(old & MUTEX_STARVING)) new |= MUTEX_LOCKED; /* newcomers never take a starving mutex */
        if (old & (MUTEX_LOCKED | MUTEX_STARVING)) new += MUTEX_ONE_WAITER;
        if (starving && (old & MUTEX_LOCKED)) new |= MUTEX_STARVING;
        if (awoke) {
            if (!(new & MUTEX_WOKEN)) hoare__fatal("sync: inconsistent mutex state");
            new &= ~MUTEX_WOKEN;
        }
        if (!cas_state(&mu->state, &old, new)) continue; /* old was reloaded */
        if (!(old & (MUTEX_LOCKED | MUTEX_STARVING))) return; /* took it */
        bool requeue_front = wait_start != 0;
        if (!wait_start) wait_start = hoare__nanotime();
        hoare__semacquire(&mu->sema, requeue_front, "sync.Mutex.Lock");
        starving = starving || hoare__nanotime() - wait_start > STARVATION_NS;
        old = load_state(&mu->state);
        if (old & MUTEX_STARVING) {
            /* Handed off: the mutex is ours; we are no longer a waiter. */
            if ((old & (MUTEX_LOCKED | MUTEX_WOKEN)) || (old >> MUTEX_WAITER_SHIFT) == 0)
                hoare__fatal("sync: inconsistent mutex state");
            int32_t delta = MUTEX_LOCKED - MUTEX_ONE_WAITER;
            if (!starving || (old >> MUTEX_WAITER_SHIFT) == 1) delta -= MUTEX_STARVING;
            __atomic_add_fetch(&mu->state, delta, __ATOMIC_SEQ_CST);
            return;
        }
        awoke = true;
        round = 0;
    }
}

void hoare_mutex_lock(hoare_mutex *mu) {
    int32_t unlocked = 0;
    if (likely(__atomic_compare_exchange_n(&mu->state, &unlocked, MUTEX_LOCKED, false,
                                           __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)))
        return;
    mutex_lock_slow(mu);
}

int hoare_mutex_trylock(hoare_mutex *mu) {
    int32_t old = load_state(&mu->state);
    if (old & (MUTEX_LOCKED | MUTEX_STARVING)) return EBUSY;
    if (!__atomic_compare_exchange_n(&mu->state, &old, old | MUTEX_LOCKED, false, __ATOMIC_ACQUIRE,
                                     __ATOMIC_RELAXED))
        return EBUSY;
    return 0;
}

/* new: the state just after clearing MUTEX_LOCKED, not zero (there are waiters or flags). */
static NOIPA void mutex_unlock_slow(hoare_mutex *mu, int32_t new) {
    if (!((new + MUTEX_LOCKED) & MUTEX_LOCKED)) hoare__fatal("sync: unlock of unlocked mutex");
    if (new & MUTEX_STARVING) {
        hoare__semrelease(&mu->sema, 1, true); /* hand the mutex to the first waiter */
        return;
    }
    int32_t old = new;
    for (;;) {
        /* Nobody to wake, or someone already took it, is awake, or the mutex is handed off. */
        if ((old >> MUTEX_WAITER_SHIFT) == 0 || (old & (MUTEX_LOCKED | MUTEX_WOKEN | MUTEX_STARVING)))
            return;
        if (cas_state(&mu->state, &old, (old - MUTEX_ONE_WAITER) | MUTEX_WOKEN)) {
            hoare__semrelease(&mu->sema, 1, false);
            return;
        }
    }
}

void hoare_mutex_unlock(hoare_mutex *mu) {
    int32_t new = __atomic_add_fetch(&mu->state, -MUTEX_LOCKED, __ATOMIC_RELEASE);
    if (unlikely(new != 0)) mutex_unlock_slow(mu, new);
}

/* ======================================================================== RWMutex
 * reader_count: readers holding or waiting; a writer subtracts RW_MAX_READERS from it, so a
 * negative count tells readers a writer is pending (they then park on reader_sem).
 * reader_wait: readers the pending writer still waits for (the writer parks on writer_sem).
 * w serialises writers. */

#define RW_MAX_READERS (1 << 30)

void hoare_rwmutex_rlock(hoare_rwmutex *rw) {
    if (__atomic_add_fetch(&rw->reader_count, 1, __ATOMIC_SEQ_CST) < 0)
        hoare__semacquire(&rw->reader_sem, false, "sync.RWMutex.RLock");
}

int hoare_rwmutex_tryrlock(hoare_rwmutex *rw) {
    int32_t c = __atomic_load_n(&rw->reader_count, __ATOMIC_RELAXED);
    do {
        if (c < 0) return EBUSY;
    } while (!__atomic_compare_exchange_n(&rw->reader_count, &c, c + 1, true, __ATOMIC_SEQ_CST,
                                          __ATOMIC_RELAXED));
    return 0;
}

void hoare_rwmutex_runlock(hoare_rwmutex *rw) {
    int32_t r = __atomic_add_fetch(&rw->reader_count, -1, __ATOMIC_SEQ_CST);
    if (likely(r >= 0)) return;
    if (r + 1 == 0 || r + 1 == -RW_MAX_READERS) hoare__fatal("sync: RUnlock of unlocked RWMutex");
    /* A writer is pending: the last reader it waits for lets it in. */
    if (__atomic_add_fetch(&rw->reader_wait, -1, __ATOMIC_SEQ_CST) == 0)
        hoare__semrelease(&rw->writer_sem, 1, false);
}

void hoare_rwmutex_lock(hoare_rwmutex *rw) {
    hoare_mutex_lock(&rw->w);
    int32_t readers = __atomic_add_fetch(&rw->reader_count, -RW_MAX_READERS, __ATOMIC_SEQ_CST) +
                      RW_MAX_READERS;
    if (readers != 0 && __atomic_add_fetch(&rw->reader_wait, readers, __ATOMIC_SEQ_CST) != 0)
        hoare__semacquire(&rw->writer_sem, false, "sync.RWMutex.Lock");
}

int hoare_rwmutex_trylock(hoare_rwmutex *rw) {
    if (hoare_mutex_trylock(&rw->w) != 0) return EBUSY;
    int32_t none = 0;
    if (!__atomic_compare_exchange_n(&rw->reader_count, &none, -RW_MAX_READERS, false,
                                     __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {
        hoare_mutex_unlock(&rw->w);
        return EBUSY;
    }
    return 0;
}

void hoare_rwmutex_unlock(hoare_rwmutex *rw) {
    int32_t readers = __atomic_add_fetch(&rw->reader_count, RW_MAX_READERS, __ATOMIC_SEQ_CST);
    if (readers >= RW_MAX_READERS) hoare__fatal("sync: Unlock of unlocked RWMutex");
    if (readers > 0) hoare__semrelease(&rw->reader_sem, (uint32_t)readers, false);
    hoare_mutex_unlock(&rw->w);
}

/* ======================================================================== WaitGroup
 * state: counter in the high 32 bits, waiters in the low 32 bits. When the counter drops to 0 with
 * waiters, the state is reset to 0 and the waiters are released in one batch. */

void hoare_wg_add(hoare_wg *wg, int delta) {
    uint64_t state = __atomic_add_fetch(&wg->state, (uint64_t)(int64_t)delta << 32, __ATOMIC_SEQ_CST);
    int32_t counter = (int32_t)(state >> 32);
    uint32_t waiters = (uint32_t)state;
    if (counter < 0) hoare__fatal("sync: negative WaitGroup counter");
    if (waiters != 0 && delta > 0 && counter == delta)
        hoare__fatal("sync: WaitGroup misuse: Add called concurrently with Wait");
    if (counter > 0 || waiters == 0) return;
    /* Counter 0 with waiters: nobody may change the state now but us. */
    if (__atomic_load_n(&wg->state, __ATOMIC_SEQ_CST) != state)
        hoare__fatal("sync: WaitGroup misuse: Add called concurrently with Wait");
    __atomic_store_n(&wg->state, 0, __ATOMIC_SEQ_CST);
    hoare__semrelease(&wg->sema, waiters, false);
}

void hoare_wg_done(hoare_wg *wg) { hoare_wg_add(wg, -1); }

void hoare_wg_wait(hoare_wg *wg) {
    uint64_t state = __atomic_load_n(&wg->state, __ATOMIC_SEQ_CST);
    for (;;) {
        if ((int32_t)(state >> 32) == 0) return;
        if (__atomic_compare_exchange_n(&wg->state, &state, state + 1, true, __ATOMIC_SEQ_CST,
                                        __ATOMIC_SEQ_CST)) {
            hoare__semacquire(&wg->sema, false, "sync.WaitGroup.Wait");
            if (__atomic_load_n(&wg->state, __ATOMIC_SEQ_CST) != 0)
                hoare__fatal("sync: WaitGroup is reused before previous Wait has returned");
            return;
        }
    }
}

/* ======================================================================== Once
 * done is set (release) only after fn returned, with mu held: a caller that sees it set (acquire)
 * sees fn's effects; one that does not queues on mu behind the caller running fn. */

void hoare_once_do(hoare_once *once, void (*fn)(void *), void *arg) {
    if (likely(__atomic_load_n(&once->done, __ATOMIC_ACQUIRE))) return;
    if (unlikely(!fn)) hoare__fatal("hoare_once_do: fn is NULL");
    hoare_mutex_lock(&once->mu);
    if (!__atomic_load_n(&once->done, __ATOMIC_RELAXED)) {
        fn(arg);
        __atomic_store_n(&once->done, 1, __ATOMIC_RELEASE);
    }
    hoare_mutex_unlock(&once->mu);
}

/* ======================================================================== Cond
 * Go's notifyList: a waiter takes a ticket (wait_ticket++, atomically, while still holding the
 * user's mutex), then queues with it under cv->lock unless it was already notified. notify_ticket
 * is the next ticket to wake: signal wakes ticket notify_ticket (if it is queued; if not, its owner
 * is between taking the ticket and queuing and will see it is notified), broadcast wakes all.
 * cv->lock guards notify_ticket's writes and the queue (head/tail, linked by cond_waiter.next). */

typedef struct cond_waiter {
    struct cond_waiter *next;
    G *g;
    uint32_t ticket;
} cond_waiter;

static bool ticket_before(uint32_t a, uint32_t b) { return (int32_t)(a - b) < 0; }

static bool unlock_cond(G *g, void *cv) {
    (void)g;
    hoare__unlock(hoare__lock_in(&((hoare_cond *)cv)->lock));
    return true;
}

void hoare_cond_wait(hoare_cond *cv, hoare_mutex *mu) {
    uint32_t ticket = __atomic_fetch_add(&cv->wait_ticket, 1, __ATOMIC_SEQ_CST);
    hoare_mutex_unlock(mu);
    hoare_lock *l = hoare__lock_in(&cv->lock);
    hoare__lock(l);
    if (ticket_before(ticket, __atomic_load_n(&cv->notify_ticket, __ATOMIC_RELAXED))) {
        hoare__unlock(l);
    } else {
        cond_waiter w = {.g = hoare__g(), .ticket = ticket};
        if (cv->tail)
            ((cond_waiter *)cv->tail)->next = &w;
        else
            cv->head = &w;
        cv->tail = &w;
        hoare__park("sync.Cond.Wait", unlock_cond, cv);
    }
    hoare_mutex_lock(mu);
}

void hoare_cond_signal(hoare_cond *cv) {
    if (__atomic_load_n(&cv->wait_ticket, __ATOMIC_SEQ_CST) ==
        __atomic_load_n(&cv->notify_ticket, __ATOMIC_SEQ_CST))
        return;
    hoare_lock *l = hoare__lock_in(&cv->lock);
    hoare__lock(l);
    uint32_t ticket = cv->notify_ticket;
    if (ticket == __atomic_load_n(&cv->wait_ticket, __ATOMIC_SEQ_CST)) {
        hoare__unlock(l);
        return;
    }
    __atomic_store_n(&cv->notify_ticket, ticket + 1, __ATOMIC_SEQ_CST);
    cond_waiter *prev = NULL, *w = cv->head;
    while (w && w->ticket != ticket) {
        prev = w;
        w = w->next;
    }
    if (w) {
        if (prev)
            prev->next = w->next;
        else
            cv->head = w->next;
        if (cv->tail == w) cv->tail = prev;
    }
    hoare__unlock(l);
    if (w) hoare__ready(w->g); /* w stays valid until its owner is readied */
}

void hoare_cond_broadcast(hoare_cond *cv) {
    if (__atomic_load_n(&cv->wait_ticket, __ATOMIC_SEQ_CST) ==
        __atomic_load_n(&cv->notify_ticket, __ATOMIC_SEQ_CST))
        return;
    hoare_lock *l = hoare__lock_in(&cv->lock);
    hoare__lock(l);
    __atomic_store_n(&cv->notify_ticket, __atomic_load_n(&cv->wait_ticket, __ATOMIC_SEQ_CST),
                     __ATOMIC_SEQ_CST);
    cond_waiter *w = cv->head;
    cv->head = cv->tail = NULL;
    hoare__unlock(l);
    /* link the goroutines, then ready them as one batch (a w may be gone once its g is ready) */
    G *wake = NULL, *last = NULL;
    for (; w; w = w->next) {
        G *g = w->g;
        g->schedlink = NULL;
        if (last) last->schedlink = g;
        else wake = g;
        last = g;
    }
    hoare__ready_list(wake);
}
