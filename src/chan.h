/*
 * chan.h - channel internals shared by chan.c and select.c, and the free hook timer.c uses.
 *
 * The design is Go's (runtime/chan.go, select.go): one hoare_lock per channel guards everything in
 * it; blocked goroutines and threads wait in FIFO queues of waiter records that live on the waiter's
 * own stack and point at its element slot, so that the other side copies the value straight into
 * (or out of) the waiter's memory and then readies it. See docs/design.md ("Channels and select") for the invariants.
 */
#ifndef HOARE_CHAN_H
#define HOARE_CHAN_H

#include <string.h>

#include "runtime.h"

/* A goroutine (or thread) waiting on one channel: Go's sudog.
 * Ownership: while it is in a queue, only holders of that channel's lock touch it. The waker that
 * dequeues it (and, for a select waiter, wins g->select_done) owns it until it calls hoare__ready:
 * it fills elem (receive) or reads it (send), sets success, sets g->param to it. After the wake-up
 * the waiter owns it again. A select waiter that lost the CAS may be dequeued by a waker (who then
 * drops it) or removed by its own G in select's last pass, both under the channel lock. */
typedef struct chan_waiter chan_waiter;
struct chan_waiter {
    G *g;
    void *elem;               /* receive: where to store (NULL: discard); send: the value */
    chan_waiter *next, *prev; /* queue links, guarded by c->lock; both NULL when not queued */
    hoare_chan *c;
    uint32_t case_index;      /* select: which case this record stands for */
    bool is_select;           /* wakers must win g->select_done before using it */
    bool success;             /* set by the waker: true communicated, false woken by close */
};

typedef struct chan_waitq {
    chan_waiter *first; /* written under the lock with atomic stores, read lock-free (try ops) */
    chan_waiter *last;
} chan_waitq;

struct hoare_chan {
    hoare_lock lock;          /* guards every field below except the atomics read lock-free */
    _Atomic uint32_t closed;  /* written under lock; read lock-free by the try fast paths */
    size_t elem_size;         /* immutable */
    size_t cap;               /* immutable */
    _Atomic size_t count;     /* buffered elements; written under lock, read lock-free by len */
    /* Kept at offset >= 32 so that a release after the free can still see the poison value in an
     * allocator that reuses the first words of a freed block (best-effort misuse detection). */
    _Atomic int64_t refs;     /* user references + one per queued select waiter record */
    size_t sendx, recvx;      /* ring indices into buf */
    chan_waitq recvq, sendq;
    void (*on_free)(void *arg);
    void *on_free_arg;
    unsigned char *buf;       /* cap * elem_size bytes right after the struct (never NULL) */
};

/* fn(arg) runs during the final release, before the channel's memory is freed (one hook per
 * channel; a second call replaces the first). */
HIDDEN void hoare__chan_on_free(hoare_chan *c, void (*fn)(void *arg), void *arg);

/* Drop one reference (the user's or a waiter's). */
HIDDEN void hoare__chan_unref(hoare_chan *c);

/* Block the caller forever (nil channel, empty select). */
HIDDEN _Noreturn void hoare__block_forever(const char *reason);

/* ---------------------------------------------------------------- helpers for chan.c/select.c */

/* One element from src to dst (dst NULL: discard). Common sizes get an inlined fixed-size copy
 * instead of a call to memcpy. */
static inline void chan_copy(const hoare_chan *c, void *dst, const void *src) {
    if (!dst) return;
    switch (c->elem_size) {
    case 0: break;
    case 1: memcpy(dst, src, 1); break;
    case 2: memcpy(dst, src, 2); break;
    case 4: memcpy(dst, src, 4); break;
    case 8: memcpy(dst, src, 8); break;
    case 16: memcpy(dst, src, 16); break;
    default: memcpy(dst, src, c->elem_size); break;
    }
}
static inline void chan_zero(const hoare_chan *c, void *dst) {
    if (c->elem_size && dst) memset(dst, 0, c->elem_size);
}
static inline unsigned char *chan_slot(const hoare_chan *c, size_t i) {
    return c->buf + i * c->elem_size;
}
static inline size_t chan_count(const hoare_chan *c) {
    return atomic_load_explicit(&c->count, memory_order_relaxed);
}
static inline void chan_set_count(hoare_chan *c, size_t n) {
    atomic_store_explicit(&c->count, n, memory_order_relaxed);
}
static inline bool chan_closed(const hoare_chan *c) {
    return atomic_load_explicit(&c->closed, memory_order_relaxed) != 0;
}

static inline void waitq_set_first(chan_waitq *q, chan_waiter *w) {
    __atomic_store_n(&q->first, w, __ATOMIC_RELAXED);
}

/* Append w (c->lock held). */
static inline void waitq_enqueue(chan_waitq *q, chan_waiter *w) {
    w->next = NULL;
    w->prev = q->last;
    if (q->last)
        q->last->next = w;
    else
        waitq_set_first(q, w);
    q->last = w;
}

/* Take the first waiter that may be used (c->lock held): a select waiter whose G already won
 * another case (or timed out) is dropped from the queue and skipped. */
static inline chan_waiter *waitq_dequeue(chan_waitq *q) {
    for (;;) {
        chan_waiter *w = q->first;
        if (!w) return NULL;
        chan_waiter *next = w->next;
        waitq_set_first(q, next);
        if (next)
            next->prev = NULL;
        else
            q->last = NULL;
        w->next = NULL;
        if (w->is_select) {
            uint32_t undecided = 0;
            if (!atomic_compare_exchange_strong_explicit(&w->g->select_done, &undecided, 1,
                                                         memory_order_acq_rel,
                                                         memory_order_relaxed))
                continue;
        }
        return w;
    }
}

/* Remove w if it is still queued (c->lock held). A waiter with no links is either the only one in
 * the queue or was already dequeued by a waker that lost the select race. */
static inline void waitq_remove(chan_waitq *q, chan_waiter *w) {
    chan_waiter *prev = w->prev, *next = w->next;
    if (prev) {
        prev->next = next;
        if (next)
            next->prev = prev;
        else
            q->last = prev;
    } else if (next) {
        next->prev = NULL;
        waitq_set_first(q, next);
    } else if (q->first == w) {
        waitq_set_first(q, NULL);
        q->last = NULL;
    }
    w->next = w->prev = NULL;
}

/* The waker's side of a hand-off, c->lock held: record the outcome in w and return the G to ready
 * once the lock is dropped. */
static inline G *chan_waiter_done(chan_waiter *w, bool success) {
    w->success = success;
    w->g->param = w;
    return w->g;
}

/* Send src to a dequeued receiver (Go's send): straight into its slot. c->lock held. */
static inline G *chan_send_to_waiter(hoare_chan *c, chan_waiter *r, const void *src) {
    chan_copy(c, r->elem, src);
    return chan_waiter_done(r, true);
}

/* Receive into dst from a dequeued sender (Go's recv), c->lock held. Unbuffered: straight from the
 * sender. Buffered (then full): take the head and put the sender's value in the freed tail slot. */
static inline G *chan_recv_from_waiter(hoare_chan *c, chan_waiter *s, void *dst) {
    if (c->cap == 0) {
        chan_copy(c, dst, s->elem);
    } else {
        unsigned char *head = chan_slot(c, c->recvx);
        chan_copy(c, dst, head);
        chan_copy(c, head, s->elem);
        if (++c->recvx == c->cap) c->recvx = 0;
        c->sendx = c->recvx;
    }
    return chan_waiter_done(s, true);
}

/* Buffer operations, c->lock held, room / an element known to be there. */
static inline void chan_buf_put(hoare_chan *c, const void *src) {
    chan_copy(c, chan_slot(c, c->sendx), src);
    if (++c->sendx == c->cap) c->sendx = 0;
    chan_set_count(c, chan_count(c) + 1);
}
static inline void chan_buf_take(hoare_chan *c, void *dst) {
    chan_copy(c, dst, chan_slot(c, c->recvx));
    if (++c->recvx == c->cap) c->recvx = 0;
    chan_set_count(c, chan_count(c) - 1);
}

/* A select's waiter record keeps its channel alive: woken through another case, the select still
 * locks this channel to take the record out. */
static inline void chan_ref_waiter(hoare_chan *c) {
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
}

#endif /* HOARE_CHAN_H */
