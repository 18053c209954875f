/*
 * timer.c - runtime timers: one 4-ary min-heap per processor, run by the scheduler.
 *
 * A timer goes into the heap of the processor that starts it (a random one for plain threads).
 * Schedulers run their own processor's expired timers at every scheduling round; an idle thread
 * waits in the poller exactly until the earliest timer of all processors (never a fixed tick) and
 * then runs the expired timers of every processor that is idle or in a blocking region (a running
 * one's own M goes first, see OWNER_GRACE_NS); thieves run a busy victim's expired timers.
 *
 * Timer states: IDLE -> PENDING (start: in a heap, t->heap set) -> FIRING (popped by a runner,
 * t->heap NULL, fn running without any lock) -> IDLE, or back to PENDING for a periodic timer.
 * stop removes a PENDING timer, or waits until a FIRING one is done, so after stop returns the
 * callback is not running and will not run; start waits out a FIRING callback too, so a goroutine
 * woken by its own timer can re-arm it at once.
 *
 * Locks: each heap has its own lock; no two heap locks are ever held together. Callbacks run with
 * no heap lock held (they may take channel and scheduler locks).
 */
#include "proc.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>

enum { TIMER_IDLE = 0, TIMER_PENDING, TIMER_FIRING };

/* ------------------------------------------------------------------------------------------
 * The heap (caller holds h->lock) */

static void heap_set(struct timer_heap *h, int32_t i, struct timer_entry e) {
    h->v[i] = e;
    h->slots[e.slot].pos = i;
}

static hoare_rtimer *heap_timer(const struct timer_heap *h, int32_t i) {
    return h->slots[h->v[i].slot].t;
}

static void sift_up(struct timer_heap *h, int32_t i) {
    struct timer_entry e = h->v[i];
    while (i > 0) {
        int32_t parent = (i - 1) / 4;
        if (h->v[parent].when <= e.when) break;
        heap_set(h, i, h->v[parent]);
        i = parent;
    }
    heap_set(h, i, e);
}

static void sift_down(struct timer_heap *h, int32_t i) {
    struct timer_entry e = h->v[i];
    for (;;) {
        int32_t first = 4 * i + 1, best = -1;
        for (int32_t c = first; c < first + 4 && c < h->n; c++)
            if (best < 0 || h->v[c].when < h->v[best].when) best = c;
        if (best < 0 || h->v[best].when >= e.when) break;
        heap_set(h, i, h->v[best]);
        i = best;
    }
    heap_set(h, i, e);
}

static void heap_update_first(struct timer_heap *h) {
    atomic_store_explicit(&h->first, h->n ? h->v[0].when : INT64_MAX, memory_order_release);
}

static void heap_push(struct timer_heap *h, hoare_rtimer *t) {
    if (h->n == h->cap) {
        int32_t cap = h->cap ? h->cap * 2 : 64;
        struct timer_entry *v = hoare__realloc(h->v, (size_t)cap * sizeof *v);
        if (v) h->v = v;
        struct timer_slot *slots = v ? hoare__realloc(h->slots, (size_t)cap * sizeof *slots) : NULL;
        if (!slots) hoare__fatal("out of memory for a timer heap of %d timers", h->n);
        h->slots = slots;
        /* all the old slots are in use: the new ones make the free list */
        for (int32_t s = h->cap; s < cap; s++) slots[s].pos = s + 1 < cap ? s + 2 : 0;
        h->free_slot = h->cap + 1;
        h->cap = cap;
    }
    int32_t s = h->free_slot - 1;
    h->free_slot = h->slots[s].pos;
    h->slots[s].t = t;
    t->slot = s;
    heap_set(h, h->n++, (struct timer_entry){t->when, s});
    sift_up(h, h->n - 1);
    heap_update_first(h);
}

static void heap_remove(struct timer_heap *h, int32_t i) {
    int32_t s = h->v[i].slot;
    h->n--;
    if (i != h->n) {
        heap_set(h, i, h->v[h->n]);
        sift_down(h, i);
        sift_up(h, i);
    }
    h->slots[s].pos = h->free_slot;
    h->free_slot = s + 1;
    heap_update_first(h);
}

/* ------------------------------------------------------------------------------------------ */

static void wait_not_firing(hoare_rtimer *t) {
    while (atomic_load_explicit(&t->state, memory_order_acquire) == TIMER_FIRING) sched_yield();
}

static struct timer_heap *heap_for_caller(void) {
    P *p = hoare__curp();
    if (!p) {
        hoare__init();
        int32_t n = atomic_load(&hoare__sched.nprocs);
        p = atomic_load(&hoare__allp[hoare__rand_n((uint32_t)n)]);
    }
    return &p->timers;
}

void hoare__timer_start(hoare_rtimer *t, int64_t when) {
    /* INT64_MAX is a heap's "no timer" (h->first): a timer for never is pending all the same (a
     * goroutine sleeping for ever is not deadlocked, as in Go), so it waits one ns less */
    if (when == INT64_MAX) when = INT64_MAX - 1;
    wait_not_firing(t);
    if (atomic_load(&t->state) != TIMER_IDLE) hoare__fatal("timer started twice");
    struct timer_heap *h = heap_for_caller();
    hoare__lock(&h->lock);
    t->when = when;
    atomic_store_explicit(&t->state, TIMER_PENDING, memory_order_relaxed);
    atomic_store_explicit(&t->heap, h, memory_order_release);
    heap_push(h, t);
    bool earliest = heap_timer(h, 0) == t;
    hoare__unlock(&h->lock);
    if (earliest) hoare__timer_wake_scheduler(when);
}

bool hoare__timer_stop(hoare_rtimer *t) {
    for (;;) {
        struct timer_heap *h = atomic_load_explicit(&t->heap, memory_order_acquire);
        if (h) {
            hoare__lock(&h->lock);
            if (atomic_load_explicit(&t->heap, memory_order_relaxed) == h) {
                heap_remove(h, h->slots[t->slot].pos);
                atomic_store_explicit(&t->heap, NULL, memory_order_relaxed);
                atomic_store_explicit(&t->state, TIMER_IDLE, memory_order_release);
                hoare__unlock(&h->lock);
                return true;
            }
            hoare__unlock(&h->lock);
            continue; /* fired or moved meanwhile: look again */
        }
        uint32_t st = atomic_load_explicit(&t->state, memory_order_acquire);
        if (st == TIMER_IDLE) return false;
        if (st == TIMER_FIRING) {
            wait_not_firing(t);
            /* a periodic timer is PENDING again: go round and remove it */
            if (atomic_load(&t->state) == TIMER_IDLE) return false;
        }
        /* PENDING with no heap: a move between heaps is under way */
        sched_yield();
    }
}

/* Next firing time of a periodic timer that fired for `when`, skipping missed periods. */
static int64_t next_period(const hoare_rtimer *t, int64_t now) {
    int64_t next;
    if (__builtin_add_overflow(t->when, t->period, &next)) return INT64_MAX - 1; /* never: see start */
    if (next <= now) next += (now - next) / t->period * t->period + t->period;
    return next;
}

static void sleep_fire(void *arg, int64_t now);

/* Run p's expired timers. Sleep timers that expire together (hoare_sleep's, whose callback only
 * readies its goroutine) are taken in one hold of the lock and their goroutines readied as one batch;
 * any other timer is run alone, with no lock held, as it may stop other timers. */
static int64_t run_heap(P *p, int64_t now) {
    struct timer_heap *h = &p->timers;
    enum { SLEEP_BATCH = 1024 };
    while (atomic_load_explicit(&h->first, memory_order_acquire) <= now) {
        hoare_batch wake = {.timers_of = p};
        hoare_rtimer *t = NULL;
        int n = 0;
        hoare__lock(&h->lock);
        while (h->n > 0 && h->v[0].when <= now && n < SLEEP_BATCH) {
            t = heap_timer(h, 0);
            heap_remove(h, 0);
            atomic_store_explicit(&t->heap, NULL, memory_order_relaxed);
            if (t->fn != sleep_fire) break;
            /* Its goroutine is parked until readied below: nobody else touches this timer. */
            atomic_store_explicit(&t->state, TIMER_IDLE, memory_order_relaxed);
            hoare__batch_add(&wake, t->arg);
            n++;
            t = NULL;
        }
        bool periodic = false;
        if (t) {
            atomic_store_explicit(&t->state, TIMER_FIRING, memory_order_release);
            /* Read before fn: a one-shot timer's owner may reuse it as soon as fn has readied it. */
            periodic = t->period > 0;
        }
        hoare__unlock(&h->lock);
        hoare__batch_ready(&wake);
        if (!t) {
            if (n == 0) break;
            continue;
        }

        t->fn(t->arg, now);

        if (periodic) {
            hoare__lock(&h->lock);
            t->when = next_period(t, now);
            atomic_store_explicit(&t->state, TIMER_PENDING, memory_order_relaxed);
            atomic_store_explicit(&t->heap, h, memory_order_release);
            heap_push(h, t);
            hoare__unlock(&h->lock);
        } else {
            atomic_store_explicit(&t->state, TIMER_IDLE, memory_order_release);
        }
    }
    return atomic_load_explicit(&h->first, memory_order_acquire);
}

/* An M without a processor (the poller's) leaves the expired timers of a processor that runs
 * goroutines (not in a blocking region) to that processor's own M for OWNER_GRACE_NS. The owner
 * notices them at its next switch by the coarse clock and readies their goroutines before its
 * runnext (hoare__batch_ready). Fired by the poller's M, they went to the global queue, and a
 * goroutine spawning in a loop (child first: its runnext is empty while it runs, so it could not be
 * queued behind them) kept the processor for as long as the loop went on, the global queue being
 * checked once in 61 picks (sleepers with one processor: a median lateness of 30 ms in one run in
 * 20; in one run in 8 under TSan on a loaded machine, nearly no sleeper ran before the loop ended).
 * At their deadline the poller's M only advances the coarse clock, which the monitor refreshes
 * every 20 us to 10 ms (never past a running processor's earliest timer) but later on an
 * overloaded machine, so that the owner sees them at once; it fires them itself once the grace
 * has passed too (a chain that stopped switching). */
enum { OWNER_GRACE_NS = 1000 * 1000 };

/* q's own M runs its timers soon: it runs goroutines and switches, or looks for work. */
static bool owner_active(P *q) {
    return atomic_load_explicit(&q->status, memory_order_relaxed) == P_RUNNING &&
           !(atomic_load_explicit(&q->blocking, memory_order_relaxed) & REGION_IN);
}

/* When an M without a processor next acts on q's timers (INT64_MAX: none pending): at the earliest
 * deadline, or for an active owner, once the coarse clock shows it, after the grace. */
static int64_t unowned_deadline(P *q) {
    int64_t first = atomic_load_explicit(&q->timers.first, memory_order_acquire);
    if (first != INT64_MAX && owner_active(q) &&
        atomic_load_explicit(&hoare__coarse_now, memory_order_relaxed) >= first)
        first += OWNER_GRACE_NS;
    return first;
}

int64_t hoare__timers_run(P *p, int64_t now) {
    if (p) return run_heap(p, now);
    int64_t next = INT64_MAX;
    for (int i = 0; i < HOARE_MAX_PROCS; i++) {
        P *q = atomic_load_explicit(&hoare__allp[i], memory_order_acquire);
        if (!q) break;
        if (atomic_load_explicit(&q->timers.first, memory_order_acquire) <= now && owner_active(q))
            hoare__coarse_advance(now);
        if (unowned_deadline(q) <= now) run_heap(q, now);
        int64_t w = unowned_deadline(q);
        if (w < next) next = w;
    }
    return next;
}

int64_t hoare__timers_next(void) {
    int64_t next = INT64_MAX;
    for (int i = 0; i < HOARE_MAX_PROCS; i++) {
        P *q = atomic_load_explicit(&hoare__allp[i], memory_order_acquire);
        if (!q) break;
        int64_t w = unowned_deadline(q);
        if (w < next) next = w;
    }
    return next;
}

/* Move every timer of `from` to `to` (a processor going away). */
void hoare__timers_move(P *from, P *to) {
    if (from == to) return;
    for (;;) {
        hoare__lock(&from->timers.lock);
        if (from->timers.n == 0) {
            hoare__unlock(&from->timers.lock);
            return;
        }
        hoare_rtimer *t = heap_timer(&from->timers, from->timers.n - 1);
        heap_remove(&from->timers, from->timers.n - 1);
        atomic_store(&t->heap, NULL); /* state stays PENDING: stop waits for the move */
        hoare__unlock(&from->timers.lock);
        hoare__lock(&to->timers.lock);
        atomic_store(&t->heap, &to->timers);
        heap_push(&to->timers, t);
        hoare__unlock(&to->timers.lock);
        hoare__timer_wake_scheduler(t->when);
    }
}

void hoare__timer_wake_scheduler(int64_t when) {
    if (atomic_load(&hoare__sched.netpoll_blocked)) {
        if (when < atomic_load(&hoare__sched.netpoll_until)) hoare__netpoll_break();
    } else {
        hoare__wakep();
    }
    hoare__monitor_timer_started(when);
}

/* ------------------------------------------------------------------------------------------
 * Public: clock and sleep */

int64_t hoare_now(void) { return hoare__nanotime(); }

static void sleep_fire(void *arg, int64_t now) {
    (void)now;
    hoare__ready(arg);
}

/* Arm the timer only once the goroutine has switched out: its callback readies it. */
static bool sleep_commit(G *g, void *arg) {
    hoare__timer_start(&g->sleep_timer, *(const int64_t *)arg);
    return true;
}

void hoare_sleep(int64_t ns) {
    if (ns <= 0) return;
    G *g = hoare__curg();
    if (!g) {
        struct timespec ts;
        int64_t deadline = hoare__deadline_in(ns);
        ts.tv_sec = deadline / 1000000000;
        ts.tv_nsec = deadline % 1000000000;
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {}
        return;
    }
    int64_t when = hoare__deadline_in(ns);
    g->sleep_timer.fn = sleep_fire;
    g->sleep_timer.arg = g;
    g->sleep_timer.period = 0;
    hoare__park("sleep", sleep_commit, &when);
}
