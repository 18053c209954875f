/*
 * semaphore.c - weighted semaphore (Go's golang.org/x/sync/semaphore design).
 *
 * s->lock (a runtime lock) guards cur and the FIFO queue of waiters (head/tail, sem_waiter records
 * on the waiters' stacks). A request is granted at once only if it fits and nobody is queued, so a
 * large waiter at the front holds back later small ones. Release grants waiters from the front for
 * as long as they fit. A waiter with a context also registers a context watch: whichever of the
 * grant and the cancellation reaches the waiter first under s->lock decides its fate (state), and
 * only that one readies it. Lock order: context lock -> s->lock (the watch runs under the context's
 * lock and takes s->lock; nothing takes a context lock while holding s->lock).
 */
#include <errno.h>

#include "sync.h"

enum waiter_state {
    WAITER_NEW,       /* not queued yet (registering its context watch) */
    WAITER_QUEUED,    /* in the queue, parked or about to park */
    WAITER_GRANTED,   /* its n were added to cur; readied by the granter */
    WAITER_CANCELLED, /* its context was cancelled first; readied by the watch if it was queued */
};

typedef struct sem_waiter {
    struct sem_waiter *next, *prev; /* queue links, guarded by s->lock */
    struct sem_waiter *ready_next;  /* batch of granted waiters to ready after unlocking */
    hoare_sem *sem;
    int64_t n;
    G *g;
    enum waiter_state state; /* guarded by s->lock */
    hoare_ctx_watch watch;
} sem_waiter;

static hoare_lock *sem_lock(hoare_sem *s) { return hoare__lock_in(&s->lock); }

static void queue_remove(hoare_sem *s, sem_waiter *w) {
    if (w->prev)
        w->prev->next = w->next;
    else
        s->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        s->tail = w->prev;
}

static void queue_push(hoare_sem *s, sem_waiter *w) {
    w->next = NULL;
    w->prev = s->tail;
    if (s->tail)
        ((sem_waiter *)s->tail)->next = w;
    else
        s->head = w;
    s->tail = w;
}

/* Grant waiters from the front while they fit; return them (to ready after unlocking). Lock held. */
static sem_waiter *grant_waiters(hoare_sem *s) {
    sem_waiter *granted = NULL, **last = &granted;
    sem_waiter *w;
    while ((w = s->head) != NULL && s->size - s->cur >= w->n) {
        s->cur += w->n;
        queue_remove(s, w);
        w->state = WAITER_GRANTED;
        w->ready_next = NULL;
        *last = w;
        last = &w->ready_next;
    }
    return granted;
}

static void ready_granted(sem_waiter *w) {
    while (w) {
        sem_waiter *next = w->ready_next;
        hoare__ready(w->g); /* w may be gone from here on */
        w = next;
    }
}

void hoare_sem_init(hoare_sem *s, int64_t size) {
    *s = (hoare_sem){.size = size < 0 ? 0 : size};
}

static bool fits_now(const hoare_sem *s, int64_t n) { return s->size - s->cur >= n && !s->head; }

int hoare_sem_tryacquire(hoare_sem *s, int64_t n) {
    if (n < 0) return EINVAL;
    hoare__lock(sem_lock(s));
    bool ok = fits_now(s, n);
    if (ok) s->cur += n;
    hoare__unlock(sem_lock(s));
    return ok ? 0 : EAGAIN;
}

/* Context watch: the context was cancelled. Runs under the context's lock. */
static void waiter_cancelled(void *arg, int err) {
    (void)err;
    sem_waiter *w = arg;
    hoare_sem *s = w->sem;
    hoare__lock(sem_lock(s));
    enum waiter_state was = w->state;
    sem_waiter *granted = NULL;
    if (was == WAITER_NEW) {
        w->state = WAITER_CANCELLED; /* the waiter sees it before queuing */
    } else if (was == WAITER_QUEUED) {
        bool was_front = s->head == w;
        queue_remove(s, w);
        w->state = WAITER_CANCELLED;
        if (was_front) granted = grant_waiters(s); /* w may have held back smaller ones */
    }
    G *g = w->g;
    hoare__unlock(sem_lock(s));
    ready_granted(granted);
    if (was == WAITER_QUEUED) hoare__ready(g);
}

static bool unlock_sem(G *g, void *s) {
    (void)g;
    hoare__unlock(sem_lock(s));
    return true;
}

int hoare_sem_acquire_ctx(hoare_sem *s, hoare_ctx *ctx, int64_t n) {
    if (n < 0 || n > s->size) return EINVAL;
    int err = ctx ? hoare_ctx_err(ctx) : 0;
    if (err) return err;
    hoare__lock(sem_lock(s));
    if (fits_now(s, n)) {
        s->cur += n;
        hoare__unlock(sem_lock(s));
        return 0;
    }
    hoare__unlock(sem_lock(s));

    sem_waiter w = {.sem = s, .n = n, .g = hoare__g(), .state = WAITER_NEW};
    w.watch.fn = waiter_cancelled;
    w.watch.arg = &w;
    err = hoare__ctx_watch(ctx, &w.watch); /* not under s->lock: lock order */
    if (err) return err;
    hoare__lock(sem_lock(s));
    if (w.state == WAITER_CANCELLED) {
        hoare__unlock(sem_lock(s));
    } else if (fits_now(s, n)) {
        s->cur += n;
        w.state = WAITER_GRANTED;
        hoare__unlock(sem_lock(s));
    } else {
        w.state = WAITER_QUEUED;
        queue_push(s, &w);
        hoare__park("semacquire", unlock_sem, s);
    }
    hoare__ctx_unwatch(ctx, &w.watch); /* after it, the watch cannot touch w */
    if (w.state == WAITER_CANCELLED) return hoare_ctx_err(ctx);
    /* Granted; but if the context was cancelled meanwhile, report that, as x/sync does. */
    if (ctx && (err = hoare_ctx_err(ctx)) != 0) {
        hoare_sem_release(s, n);
        return err;
    }
    return 0;
}

int hoare_sem_acquire(hoare_sem *s, int64_t n) { return hoare_sem_acquire_ctx(s, NULL, n); }

void hoare_sem_release(hoare_sem *s, int64_t n) {
    hoare__lock(sem_lock(s));
    s->cur -= n;
    if (s->cur < 0 || n < 0) {
        hoare__unlock(sem_lock(s));
        hoare__fatal("semaphore: released more than held");
    }
    sem_waiter *granted = grant_waiters(s);
    hoare__unlock(sem_lock(s));
    ready_granted(granted);
}
