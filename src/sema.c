/*
 * sema.c - the runtime semaphore the sync primitives park on (Go's runtime/sema.go design).
 *
 * A semaphore is any uint32_t: its value counts wake-ups not yet taken. Waiters are records on the
 * waiting goroutine's (or thread's) stack, kept in a fixed hash table of buckets keyed by address.
 * Each bucket has a runtime lock and a list of per-address queues: the first waiter of an address
 * is the queue's head, linked to the next address's head (next_addr) and to its own queue's last
 * waiter (tail). Distinct contended addresses in one bucket are few, so a list does (Go uses a treap).
 *
 * Invariants
 *  - bucket->lock guards the bucket's queues and every queued waiter's links.
 *  - bucket->nwait counts waiters that are queued or about to queue after re-checking the count
 *    under the lock. A releaser adds to *addr and then reads nwait; a waiter adds to nwait and then
 *    re-reads *addr (all sequentially consistent), so at least one of them sees the other: either
 *    the waiter takes the count or the releaser finds the waiter queued.
 *  - A waiter is dequeued exactly once, under the lock, and then readied exactly once, after the
 *    lock is dropped. After hoare__ready the releaser never touches the waiter record (it may be
 *    gone) nor, beyond the initial add, *addr (the object may be freed once its waiters returned).
 *    Handoff is the exception (see hoare__semrelease): it is only used by a mutex in starvation
 *    mode, whose memory cannot be released while the woken waiter has not taken the lock.
 *  - A woken waiter that finds no count (a newcomer took it first) queues again: wake-ups are
 *    hints, counts are the truth.
 */
#include "sync.h"

#define SEMA_BUCKETS 251

typedef struct sema_waiter {
    uint32_t *addr;
    G *g;
    struct sema_waiter *next;      /* next waiter on the same address (or in a release batch) */
    struct sema_waiter *tail;      /* queue head only: last waiter on the address */
    struct sema_waiter *next_addr; /* queue head only: head of the next address's queue */
    bool handed_off;               /* the releaser took a count for this waiter */
} sema_waiter;

typedef struct sema_bucket {
    hoare_lock lock;
    _Atomic uint32_t nwait;
    sema_waiter *queues;
} __attribute__((aligned(64))) sema_bucket;

static sema_bucket buckets[SEMA_BUCKETS];

static sema_bucket *bucket_of(const uint32_t *addr) {
    return &buckets[((uintptr_t)addr >> 3) % SEMA_BUCKETS];
}

static bool try_take(uint32_t *addr) {
    uint32_t v = __atomic_load_n(addr, __ATOMIC_SEQ_CST);
    while (v != 0) {
        if (__atomic_compare_exchange_n(addr, &v, v - 1, true, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
            return true;
    }
    return false;
}

/* The link that points at addr's queue head (or the list's NULL end). Bucket lock held. */
static sema_waiter **find_queue(sema_bucket *b, const uint32_t *addr) {
    sema_waiter **link = &b->queues;
    while (*link && (*link)->addr != addr) link = &(*link)->next_addr;
    return link;
}

static void enqueue(sema_bucket *b, sema_waiter *w, bool lifo) {
    sema_waiter **link = find_queue(b, w->addr);
    sema_waiter *head = *link;
    w->next = NULL;
    if (!head) {
        w->tail = w;
        w->next_addr = NULL;
        *link = w;
    } else if (lifo) { /* w becomes the head and takes over the head's bookkeeping */
        w->next = head;
        w->tail = head->tail;
        w->next_addr = head->next_addr;
        *link = w;
    } else {
        head->tail->next = w;
        head->tail = w;
    }
}

static sema_waiter *dequeue(sema_bucket *b, const uint32_t *addr) {
    sema_waiter **link = find_queue(b, addr);
    sema_waiter *head = *link;
    if (!head) return NULL;
    sema_waiter *second = head->next;
    if (second) {
        second->tail = head->tail;
        second->next_addr = head->next_addr;
        *link = second;
    } else {
        *link = head->next_addr;
    }
    head->next = NULL;
    return head;
}

static bool unlock_bucket(G *g, void *bucket) {
    (void)g;
    hoare__unlock(&((sema_bucket *)bucket)->lock);
    return true;
}

void hoare__semacquire(uint32_t *addr, bool lifo, const char *reason) {
    if (try_take(addr)) return;
    sema_bucket *b = bucket_of(addr);
    sema_waiter w = {.addr = addr, .g = hoare__g()};
    for (;;) {
        hoare__lock(&b->lock);
        atomic_fetch_add(&b->nwait, 1);
        if (try_take(addr)) {
            atomic_fetch_sub(&b->nwait, 1);
            hoare__unlock(&b->lock);
            return;
        }
        enqueue(b, &w, lifo);
        hoare__park(reason, unlock_bucket, b); /* the releaser decremented nwait */
        if (w.handed_off || try_take(addr)) return;
    }
}

void hoare__semrelease(uint32_t *addr, uint32_t n, bool handoff) {
    __atomic_fetch_add(addr, n, __ATOMIC_SEQ_CST);
    sema_bucket *b = bucket_of(addr);
    if (atomic_load(&b->nwait) == 0) return;
    hoare__lock(&b->lock);
    sema_waiter *woken = NULL, **last = &woken;
    for (uint32_t i = 0; i < n && atomic_load_explicit(&b->nwait, memory_order_relaxed) != 0; i++) {
        sema_waiter *w = dequeue(b, addr);
        if (!w) break;
        atomic_fetch_sub(&b->nwait, 1);
        *last = w;
        last = &w->next;
    }
    hoare__unlock(&b->lock);
    bool yield = false;
    while (woken) {
        sema_waiter *w = woken;
        woken = w->next;
        G *g = w->g;
        if (handoff && try_take(addr)) {
            w->handed_off = true;
            yield = true;
        }
        hoare__ready(g); /* w may be gone from here on */
    }
    if (yield && hoare__curg()) hoare_yield();
}
