/*
 * chan.c - channels: make/retain/release, send, receive, their non-blocking forms, close, len, cap.
 *
 * Go's runtime/chan.go design, in C. Every operation takes the channel's one lock, looks for a
 * waiting partner first (direct hand-off into or out of the partner's own memory), then at the
 * buffer, and only then enqueues a waiter record on its own stack and parks; the commit step of
 * hoare__park drops the lock once the goroutine is switched out, so a waker can never ready a
 * goroutine that has not finished parking. The non-blocking forms never park, so timer callbacks
 * may call them. Invariants: docs/design.md ("Channels and select").
 */
#include <errno.h>
#include <stdlib.h>

#include "chan.h"
#include "proc.h"

/* Go refuses element types above 64 KiB; so do we (a waiter copies one element under the lock). */
#define CHAN_MAX_ELEM_SIZE ((size_t)1 << 16)
/* refs after the final release: far from any count a live channel can have. */
#define CHAN_REFS_FREED (INT64_MIN / 2)

hoare_chan *hoare_chan_make(size_t elem_size, size_t cap) {
    size_t buf_bytes = 0;
    if (elem_size > CHAN_MAX_ELEM_SIZE ||
        __builtin_mul_overflow(elem_size, cap, &buf_bytes) ||
        buf_bytes > (size_t)PTRDIFF_MAX - sizeof(hoare_chan) - _Alignof(max_align_t) ||
        cap > (size_t)PTRDIFF_MAX) {
        errno = EINVAL;
        return NULL;
    }
    /* The buffer follows the struct, aligned for any element type. */
    size_t header = (sizeof(hoare_chan) + _Alignof(max_align_t) - 1) & ~(_Alignof(max_align_t) - 1);
    hoare_chan *c = hoare__malloc(header + buf_bytes);
    if (!c) {
        errno = ENOMEM;
        return NULL;
    }
    memset(c, 0, sizeof *c);
    c->elem_size = elem_size;
    c->cap = cap;
    /* never NULL, also with no buffer: chan_slot's arithmetic on NULL is undefined behaviour */
    c->buf = (unsigned char *)c + header;
    atomic_store_explicit(&c->refs, 1, memory_order_relaxed);
    return c;
}

hoare_chan *hoare_chan_retain(hoare_chan *c) {
    if (!c) return NULL;
    int64_t old = atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    if (unlikely(old <= 0))
        hoare__fatal("hoare_chan_retain: channel %p was already freed (released too often)",
                     (void *)c);
    return c;
}

void hoare__chan_unref(hoare_chan *c) {
    int64_t old = atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel);
    if (likely(old > 1)) return;
    if (unlikely(old <= 0))
        hoare__fatal("hoare_chan_release: channel %p released more times than it was retained",
                     (void *)c);
    /* Last reference: no select waits on c (each select record holds one); a plain sender or
     * receiver may still be queued, and will never be woken. Nobody else can reach c. */
    if (c->on_free) c->on_free(c->on_free_arg);
    atomic_store_explicit(&c->refs, CHAN_REFS_FREED, memory_order_relaxed);
    free(c);
}

void hoare_chan_release(hoare_chan *c) {
    if (c) hoare__chan_unref(c);
}

void hoare__chan_on_free(hoare_chan *c, void (*fn)(void *arg), void *arg) {
    c->on_free = fn;
    c->on_free_arg = arg;
}

static bool never_wake(G *g, void *arg) {
    (void)g;
    (void)arg;
    return true;
}

_Noreturn void hoare__block_forever(const char *reason) {
    for (;;) hoare__park(reason, never_wake, NULL);
}

/* park commit: the waiter record is queued, now let wakers at it. */
static bool unlock_chan(G *g, void *arg) {
    (void)g;
    hoare__unlock(&((hoare_chan *)arg)->lock);
    return true;
}

/* Queue a waiter record for the caller on q, park, and return the waker's verdict. c->lock held
 * on entry, released by the park. Unlike a select's records, this one holds no reference: only a
 * reference holder can wake us, and once woken we never touch c again. If the last reference goes
 * while we wait, nobody can ever wake us (Go's goroutine blocked on an unreachable channel). */
static bool chan_wait(hoare_chan *c, chan_waitq *q, void *elem, const char *reason) {
    chan_waiter w = {.g = hoare__g_here(), .elem = elem, .c = c};
    waitq_enqueue(q, &w);
    hoare__park(reason, unlock_chan, c);
    return w.success;
}

/* ---------------------------------------------------------------- send */

/* The lock-free "would block" test for a non-blocking send (Go's full()). The caller reads closed
 * first: "not closed, then full" implies a moment when the channel was open and full, because a
 * closed channel never reopens and an open channel only stops being ready by a send or receive. */
static inline bool chan_full_now(const hoare_chan *c) {
    if (c->cap == 0) return __atomic_load_n(&c->recvq.first, __ATOMIC_ACQUIRE) == NULL;
    return atomic_load_explicit(&c->count, memory_order_acquire) == c->cap;
}

static int chan_send(hoare_chan *c, const void *elem, bool block) {
    if (!block && !atomic_load_explicit(&c->closed, memory_order_acquire) && chan_full_now(c))
        return EAGAIN;
    hoare__lock(&c->lock);
    if (chan_closed(c)) {
        hoare__unlock(&c->lock);
        return EPIPE;
    }
    chan_waiter *r = waitq_dequeue(&c->recvq);
    if (r) {
        G *g = chan_send_to_waiter(c, r, elem);
        hoare__unlock(&c->lock);
        hoare__ready_exclusive(g);
        return 0;
    }
    if (chan_count(c) < c->cap) {
        chan_buf_put(c, elem);
        hoare__unlock(&c->lock);
        return 0;
    }
    if (!block) {
        hoare__unlock(&c->lock);
        return EAGAIN;
    }
    return chan_wait(c, &c->sendq, (void *)elem, "chan send") ? 0 : EPIPE;
}

int hoare_send(hoare_chan *c, const void *elem) {
    if (!c) hoare__block_forever("chan send (nil chan)");
    if (!elem && c->elem_size) return EINVAL;
    return chan_send(c, elem, true);
}

int hoare_trysend(hoare_chan *c, const void *elem) {
    if (!c) return EAGAIN;
    if (!elem && c->elem_size) return EINVAL;
    return chan_send(c, elem, false);
}

int hoare_send_sized(hoare_chan *c, const void *elem, size_t elem_size) {
    if (c && elem_size != c->elem_size) return EINVAL;
    return hoare_send(c, elem);
}

/* ---------------------------------------------------------------- receive */

static inline bool chan_empty_now(const hoare_chan *c) {
    if (c->cap == 0) return __atomic_load_n(&c->sendq.first, __ATOMIC_ACQUIRE) == NULL;
    return atomic_load_explicit(&c->count, memory_order_acquire) == 0;
}

static int chan_recv(hoare_chan *c, void *elem, bool block) {
    if (!block && chan_empty_now(c)) {
        /* Go's chanrecv fast path: empty then open means "would block" at the moment of the
         * first load; empty, closed, and still empty means closed and drained (a closed channel
         * never gains elements). */
        if (!atomic_load_explicit(&c->closed, memory_order_acquire)) return EAGAIN;
        if (chan_empty_now(c)) {
            chan_zero(c, elem);
            return EPIPE;
        }
    }
    hoare__lock(&c->lock);
    chan_waiter *s = waitq_dequeue(&c->sendq);
    if (s) {
        G *g = chan_recv_from_waiter(c, s, elem);
        hoare__unlock(&c->lock);
        hoare__ready_exclusive(g);
        return 0;
    }
    if (chan_count(c) > 0) {
        chan_buf_take(c, elem);
        hoare__unlock(&c->lock);
        return 0;
    }
    if (chan_closed(c)) {
        hoare__unlock(&c->lock);
        chan_zero(c, elem);
        return EPIPE;
    }
    if (!block) {
        hoare__unlock(&c->lock);
        return EAGAIN;
    }
    /* The closer zero-fills elem when it wakes us with success false. */
    return chan_wait(c, &c->recvq, elem, "chan receive") ? 0 : EPIPE;
}

int hoare_recv(hoare_chan *c, void *elem) {
    if (!c) hoare__block_forever("chan receive (nil chan)");
    return chan_recv(c, elem, true);
}

int hoare_tryrecv(hoare_chan *c, void *elem) {
    if (!c) return EAGAIN;
    return chan_recv(c, elem, false);
}

int hoare_recv_sized(hoare_chan *c, void *elem, size_t elem_size) {
    if (c && elem_size != c->elem_size) return EINVAL;
    return hoare_recv(c, elem);
}

/* ---------------------------------------------------------------- close, len, cap */

int hoare_close(hoare_chan *c) {
    if (!c) return EINVAL;
    hoare__lock(&c->lock);
    if (chan_closed(c)) {
        hoare__unlock(&c->lock);
        return EPIPE;
    }
    atomic_store_explicit(&c->closed, 1, memory_order_release);
    /* Collect the waiters we won (linked through schedlink: we own each G from the moment we won
     * it until it is queued) and queue them CLOSE_BATCH at a time, one queue operation each. The
     * walk is a chain of cache and TLB misses, a waiter record on each waiter's stack page (about
     * 300 ns a waiter on some VMs, 30 ms for 100,000): queued as it goes, the first waiters run on
     * the idle processors while it goes on, instead of all of them after it. Queued under the
     * channel lock (order: channel -> scheduler); a woken goroutine that comes back to this channel
     * waits for the close to finish, as it would have before it ran at all. */
    enum { CLOSE_BATCH = 256 };
    hoare_batch wake = {0}; /* in queue order; each marked runnable in this one pass */
    chan_waiter *w;
    while ((w = waitq_dequeue(&c->recvq)) != NULL) {
        chan_zero(c, w->elem);
        hoare__batch_add(&wake, chan_waiter_done(w, false));
        if (wake.n == CLOSE_BATCH) hoare__batch_ready(&wake);
    }
    while ((w = waitq_dequeue(&c->sendq)) != NULL) {
        hoare__batch_add(&wake, chan_waiter_done(w, false));
        if (wake.n == CLOSE_BATCH) hoare__batch_ready(&wake);
    }
    hoare__unlock(&c->lock);
    hoare__batch_ready(&wake);
    return 0;
}

size_t hoare_len(const hoare_chan *c) {
    return c ? chan_count(c) : 0;
}

size_t hoare_cap(const hoare_chan *c) {
    return c ? c->cap : 0;
}
