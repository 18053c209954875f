/*
 * select.c - hoare_select, hoare_select_try, hoare_select_timeout: Go's selectgo, in C.
 *
 *  1. Poll order: the cases with a channel, uniformly shuffled (so the choice among ready cases is
 *     uniform). Lock order: the same cases sorted by channel address; each distinct channel is
 *     locked once, in that order (the one lock order for several channel locks in the runtime).
 *  2. Pass 0, no locks held: each case that looks ready (lock-free peek), in poll order, is tried
 *     under its own channel's lock; the first that proceeds wins. Else pass 1, all locks held: the
 *     first case in poll order that can proceed now wins.
 *  3. Otherwise (unless non-blocking) enqueue one waiter record per case, on this stack, reset
 *     g->select_done to 0 and park; the park commit arms the timeout timer (if any) and drops the
 *     locks. A waker must CAS g->select_done 0 -> 1 to use any of our records (waitq_dequeue), and
 *     so does the timeout timer: exactly one case (or the timeout) wins.
 *  4. After the wake-up: stop the timer (waiting out a running callback), lock everything again,
 *     take the losing records out of their queues, unlock. The winner is g->param (NULL: timeout).
 * Invariants: docs/design.md ("Channels and select").
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>

#include "chan.h"
#include "proc.h"

/* As Go: more cases than this is a malformed select. */
#define SELECT_MAX_CASES 65536u
/* Selects up to this many cases keep their scratch arrays on the stack (no malloc). */
#define SELECT_STACK_CASES 16u

enum select_mode { SELECT_TRY, SELECT_BLOCK, SELECT_TIMED };

/* Everything a select needs across its park: lives on the selecting goroutine's stack. */
typedef struct select_state {
    hoare_case *cs;
    uint32_t *pollorder;   /* indices of the cases with a channel, shuffled */
    uint32_t *lockorder;   /* the same, sorted by channel address */
    chan_waiter *waiters;  /* waiters[k] stands for case lockorder[k] */
    uint32_t nchan;        /* cases with a channel */
    bool timed;
    int64_t deadline;
} select_state;

static inline hoare_chan *case_chan(const select_state *st, uint32_t k) {
    return st->cs[st->lockorder[k]].chan;
}

static void select_lock(const select_state *st) {
    hoare_chan *prev = NULL;
    for (uint32_t k = 0; k < st->nchan; k++) {
        hoare_chan *c = case_chan(st, k);
        if (c != prev) hoare__lock(&c->lock);
        prev = c;
    }
}

/* Unlock in reverse lock order. Once the lowest channel is unlocked we touch nothing of st: from the
 * park commit, the selecting goroutine may then run, finish and reuse its stack. Before that it is
 * stuck re-locking the lowest channel, which we still hold. */
static void select_unlock(const select_state *st) {
    for (uint32_t k = st->nchan; k-- > 0;) {
        hoare_chan *c = case_chan(st, k);
        if (k > 0 && c == case_chan(st, k - 1)) continue; /* unlocked at k - 1 */
        hoare__unlock(&c->lock);
    }
}

/* Sort order[0..n) by channel address: heap sort for large n (no quadratic sort). */
static void sift_down(const hoare_case *cs, uint32_t *order, uint32_t root, uint32_t n) {
    uint32_t item = order[root];
    uintptr_t key = (uintptr_t)cs[item].chan;
    for (;;) {
        uint32_t child = 2 * root + 1;
        if (child >= n) break;
        if (child + 1 < n && (uintptr_t)cs[order[child + 1]].chan > (uintptr_t)cs[order[child]].chan)
            child++;
        if ((uintptr_t)cs[order[child]].chan <= key) break;
        order[root] = order[child];
        root = child;
    }
    order[root] = item;
}

static void sort_by_chan(const hoare_case *cs, uint32_t *order, uint32_t n) {
    if (n <= SELECT_STACK_CASES) { /* insertion sort: cheaper for the usual handful of cases */
        for (uint32_t i = 1; i < n; i++) {
            uint32_t item = order[i], j = i;
            for (; j > 0 && (uintptr_t)cs[order[j - 1]].chan > (uintptr_t)cs[item].chan; j--)
                order[j] = order[j - 1];
            order[j] = item;
        }
        return;
    }
    for (uint32_t i = n / 2; i-- > 0;) sift_down(cs, order, i, n);
    for (uint32_t end = n; end-- > 1;) {
        uint32_t top = order[0];
        order[0] = order[end];
        order[end] = top;
        sift_down(cs, order, 0, end);
    }
}

/* Try one case, its channel's lock held: true if it proceeded (err set; the partner to ready, if
 * any, in *wake). */
static bool case_try_locked(hoare_case *cas, G **wake) {
    hoare_chan *c = cas->chan;
    if (cas->dir == HOARE_CASE_RECV) {
        chan_waiter *s = waitq_dequeue(&c->sendq);
        if (s) {
            *wake = chan_recv_from_waiter(c, s, cas->elem);
            cas->err = 0;
        } else if (chan_count(c) > 0) {
            chan_buf_take(c, cas->elem);
            cas->err = 0;
        } else if (chan_closed(c)) {
            chan_zero(c, cas->elem);
            cas->err = EPIPE;
        } else {
            return false;
        }
    } else {
        chan_waiter *r;
        if (chan_closed(c)) {
            cas->err = EPIPE;
        } else if ((r = waitq_dequeue(&c->recvq)) != NULL) {
            *wake = chan_send_to_waiter(c, r, cas->elem);
            cas->err = 0;
        } else if (chan_count(c) < c->cap) {
            chan_buf_put(c, cas->elem);
            cas->err = 0;
        } else {
            return false;
        }
    }
    return true;
}

/* Lock-free guess whether a case could proceed now (a hint: the locked test decides). */
static inline bool case_looks_ready(const hoare_case *cas) {
    const hoare_chan *c = cas->chan;
    if (atomic_load_explicit(&c->closed, memory_order_relaxed)) return true;
    if (cas->dir == HOARE_CASE_RECV)
        return __atomic_load_n(&c->sendq.first, __ATOMIC_RELAXED) != NULL || chan_count(c) > 0;
    return __atomic_load_n(&c->recvq.first, __ATOMIC_RELAXED) != NULL || chan_count(c) < c->cap;
}

/* Pass 0, no locks held: in poll order, each case that looks ready is tried under its own channel's
 * lock alone. A case that proceeds does so atomically under that lock, so it is a valid outcome,
 * and the poll order keeps the choice uniform among ready cases. Finding nothing proves nothing
 * (the cases were seen at different moments): the caller then runs pass 1 with every lock held.
 * Returns the index of the case that proceeded, or -1. */
static int select_poll_each(const select_state *st) {
    for (uint32_t k = 0; k < st->nchan; k++) {
        uint32_t i = st->pollorder[k];
        hoare_case *cas = &st->cs[i];
        if (!case_looks_ready(cas)) continue;
        hoare_chan *c = cas->chan;
        G *wake = NULL;
        hoare__lock(&c->lock);
        bool done = case_try_locked(cas, &wake);
        hoare__unlock(&c->lock);
        if (done) {
            if (wake) hoare__ready_exclusive(wake);
            return (int)i;
        }
    }
    return -1;
}

/* Pass 1, all locks held: try each case in poll order. Returns the index of the case that
 * proceeded (its err set) and the partner to ready in *wake, or -1. */
static int select_poll(const select_state *st, G **wake) {
    for (uint32_t k = 0; k < st->nchan; k++) {
        uint32_t i = st->pollorder[k];
        if (case_try_locked(&st->cs[i], wake)) return (int)i;
    }
    return -1;
}

/* The timeout: runs on a scheduler thread; it competes with the channels for select_done. */
static void select_timeout_fire(void *arg, int64_t now) {
    (void)now;
    G *g = arg;
    uint32_t undecided = 0;
    if (atomic_compare_exchange_strong_explicit(&g->select_done, &undecided, 1, memory_order_acq_rel,
                                                memory_order_relaxed))
        hoare__ready(g);
}

/* park commit: the goroutine is switched out, so the timer may now fire and wakers may come. The
 * timer is armed before the locks go, so that no channel waker can have readied g yet: g's wake-up
 * path always finds an armed (or fired) timer to stop. But the timer itself may fire (on another
 * thread) as soon as it is armed: with no channel lock to hold g back, g may then return and reuse
 * its stack, where st lives. So nothing of st is read after the timer is armed unless a channel
 * lock is still held. */
static bool select_commit(G *g, void *arg) {
    select_state *st = arg;
    uint32_t nchan = st->nchan;
    if (st->timed) hoare__timer_start(&g->sleep_timer, st->deadline);
    if (nchan) select_unlock(st);
    return true;
}

/* Passes 2 and 3, all locks held on entry: wait, then clean up. Returns the winning case or -1
 * (timeout). */
static int select_wait(select_state *st, bool no_cases) {
    G *g = hoare__g_here();
    atomic_store_explicit(&g->select_done, 0, memory_order_relaxed);
    g->param = NULL;
    for (uint32_t k = 0; k < st->nchan; k++) {
        uint32_t i = st->lockorder[k];
        hoare_case *cas = &st->cs[i];
        chan_waiter *w = &st->waiters[k];
        *w = (chan_waiter){.g = g, .elem = cas->elem, .c = cas->chan, .case_index = i,
                           .is_select = true};
        waitq_enqueue(cas->dir == HOARE_CASE_RECV ? &cas->chan->recvq : &cas->chan->sendq, w);
        chan_ref_waiter(cas->chan);
    }
    if (st->timed) {
        /* The timer may still be finishing a callback that readied us from an earlier wait
         * (hoare_sleep's): wait that out before touching its fields. */
        hoare__timer_stop(&g->sleep_timer);
        g->sleep_timer.fn = select_timeout_fire;
        g->sleep_timer.arg = g;
        g->sleep_timer.period = 0;
    }
    hoare__park(no_cases ? "select (no cases)" : "select", select_commit, st);

    if (st->timed) hoare__timer_stop(&g->sleep_timer);
    chan_waiter *won = g->param; /* written by the waker that won select_done; NULL: timeout */
    if (st->nchan > 1 || !won) {
        select_lock(st);
        for (uint32_t k = 0; k < st->nchan; k++) {
            chan_waiter *w = &st->waiters[k];
            if (w == won) continue;
            hoare_case *cas = &st->cs[w->case_index];
            waitq_remove(cas->dir == HOARE_CASE_RECV ? &w->c->recvq : &w->c->sendq, w);
        }
        select_unlock(st);
    }
    for (uint32_t k = 0; k < st->nchan; k++) hoare__chan_unref(st->waiters[k].c);
    if (!won) return -1;
    st->cs[won->case_index].err = won->success ? 0 : EPIPE;
    return (int)won->case_index;
}

static int select_run(hoare_case *cs, size_t n, enum select_mode mode, int64_t deadline) {
    if ((n > 0 && !cs) || n > SELECT_MAX_CASES) {
        errno = EINVAL;
        return -1;
    }
    uint32_t nchan = 0;
    for (size_t i = 0; i < n; i++) {
        if (cs[i].dir != HOARE_CASE_RECV && cs[i].dir != HOARE_CASE_SEND) {
            errno = EINVAL;
            return -1;
        }
        if (!cs[i].chan) continue;
        if (cs[i].dir == HOARE_CASE_SEND && !cs[i].elem && cs[i].chan->elem_size) {
            errno = EINVAL;
            return -1;
        }
        nchan++;
    }
    /* A lone non-blocking case is a try operation (Go compiles it to selectnbsend/selectnbrecv). */
    if (mode == SELECT_TRY && nchan == 1 && n == 1) {
        int err = cs[0].dir == HOARE_CASE_RECV ? hoare_tryrecv(cs[0].chan, cs[0].elem)
                                               : hoare_trysend(cs[0].chan, cs[0].elem);
        if (err == EAGAIN) {
            errno = EAGAIN;
            return -1;
        }
        cs[0].err = err;
        return 0;
    }
    if (nchan == 0) {
        if (mode == SELECT_TRY) {
            errno = EAGAIN;
            return -1;
        }
        if (mode == SELECT_BLOCK) hoare__block_forever(n == 0 ? "select (no cases)" : "select");
    }

    uint32_t stack_poll[SELECT_STACK_CASES], stack_lock[SELECT_STACK_CASES];
    chan_waiter stack_waiters[SELECT_STACK_CASES];
    select_state st = {.cs = cs, .pollorder = stack_poll, .lockorder = stack_lock,
                       .waiters = stack_waiters, .nchan = nchan, .timed = mode == SELECT_TIMED,
                       .deadline = deadline};
    void *heap_scratch = NULL;
    if (nchan > SELECT_STACK_CASES) {
        heap_scratch = hoare__malloc((size_t)nchan * (2 * sizeof(uint32_t) + sizeof(chan_waiter)));
        if (!heap_scratch) {
            errno = ENOMEM;
            return -1;
        }
        st.waiters = heap_scratch;
        st.pollorder = (uint32_t *)(st.waiters + nchan);
        st.lockorder = st.pollorder + nchan;
    }

    /* Inside-out Fisher-Yates: a uniform permutation of the cases with a channel. The indices come
     * from one 64-bit random number as mixed-radix digits (j is the high word of r * (k + 1), the
     * low word carries the rest); a fresh number is drawn before the digits used exceed 2^20, so
     * 44 bits or more stay behind each digit and the bias is negligible. */
    uint32_t k = 0;
    uint64_t r = 0, used = UINT64_MAX;
    for (uint32_t i = 0; i < (uint32_t)n; i++) {
        if (!cs[i].chan) continue;
        uint32_t j = 0;
        if (k) {
            uint64_t bound = (uint64_t)k + 1;
            if (used > ((uint64_t)1 << 20) / bound) {
                r = hoare__rand64();
                used = 1;
            }
            used *= bound;
            __uint128_t t = (__uint128_t)r * bound;
            j = (uint32_t)(t >> 64);
            r = (uint64_t)t;
        }
        st.pollorder[k] = st.pollorder[j];
        st.pollorder[j] = i;
        k++;
    }

    int chosen = select_poll_each(&st);
    if (chosen >= 0) {
        free(heap_scratch);
        return chosen;
    }
    memcpy(st.lockorder, st.pollorder, nchan * sizeof(uint32_t));
    sort_by_chan(cs, st.lockorder, nchan);

    select_lock(&st);
    G *wake = NULL;
    chosen = select_poll(&st, &wake);
    if (chosen >= 0 || mode == SELECT_TRY) {
        select_unlock(&st);
        if (wake) hoare__ready_exclusive(wake);
        if (chosen < 0) errno = EAGAIN;
    } else {
        chosen = select_wait(&st, n == 0);
        if (chosen < 0) errno = ETIMEDOUT;
    }
    free(heap_scratch);
    return chosen;
}

int hoare_select(hoare_case *cs, size_t n) {
    return select_run(cs, n, SELECT_BLOCK, 0);
}

int hoare_select_try(hoare_case *cs, size_t n) {
    return select_run(cs, n, SELECT_TRY, 0);
}

int hoare_select_timeout(hoare_case *cs, size_t n, int64_t ns) {
    if (ns <= 0) return select_run(cs, n, SELECT_TRY, 0);
    return select_run(cs, n, SELECT_TIMED, hoare__deadline_in(ns));
}
