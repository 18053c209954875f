/*
 * context.c - cancellation contexts (Go's context package: WithCancel, WithDeadline, WithTimeout).
 *
 * A context is cancelled once: err goes from 0 to ECANCELED/ETIMEDOUT, its done channel is closed,
 * its watches run and its children are cancelled with the same error. A child registers with its
 * parent at creation (unless the parent is background, which is never cancelled); a child's
 * deadline is min(parent's, own), and it has its own timer only when its deadline is earlier.
 *
 * Locks and ownership
 *  - c->lock guards c->parent, c->children, c->watches and c->cancel_up, the sibling links
 *    (sib_next, sib_pprev) of c's children, and the write of c->err (read lock-free with acquire). Lock order: parent
 *    before child (cancellation walks down holding each level's lock), then whatever watches take
 *    (the weighted semaphore's lock), then channel locks (closing done).
 *  - refs counts user references (with_* returns one, retain adds one); when the last goes, the
 *    context is cancelled (as Go's cancel func), detached from its parent and unpinned.
 *  - pins keeps the memory: one for the user references as a whole, one per attached child (the
 *    child's parent link). The last unpin frees. Frees happen only on user threads with no lock
 *    held (in release, or when a child detaching itself drops its pin on the parent), never in a
 *    timer callback: the release path stops the timer before dropping the user pin, so the timer
 *    callback always runs while the user pin is held, and a canceller (user call, release, timer)
 *    always holds a pin, so dropping a child's pin inside the cancellation never reaches zero.
 *  - The parent link is claimed by exactly one side under the child's lock: the child detaching
 *    itself (cancel, release), or the parent's cancellation; whoever clears child->parent drops the
 *    child's pin on the parent. A parent's cancellation empties its children list; a child that
 *    claimed its link first then finds itself no longer listed (sib_pprev NULL).
 *  - A timer-driven cancellation neither detaches from the parent nor stops timers (it runs in a
 *    timer callback); the user's cancel or release does both. Children cancelled by a parent keep
 *    their (now harmless) timer pending until they are cancelled or released themselves.
 */
#include <errno.h>
#include <stdlib.h>

#include "sync.h"

struct hoare_ctx {
    _Atomic int32_t refs;
    _Atomic int32_t pins;
    hoare_lock lock;
    int err;
    int64_t deadline;
    hoare_chan *done;
    hoare_ctx *parent;
    hoare_ctx *children;
    hoare_ctx *sib_next, **sib_pprev;
    hoare_ctx *cancel_up; /* during a cancellation that holds c->lock: the level above */
    hoare_ctx_watch *watches;
    bool has_timer;
    hoare_rtimer timer;
    /* CTX_LIVE from creation until freed; far from the first words, which an allocator may reuse
     * in a freed block: a release or retain after the free finds it cleared (best-effort misuse
     * detection, as for channels). */
    uint32_t live;
};
#define CTX_LIVE 0xc0de1e55u

/* A user reference must be held: fatal error naming the misuse otherwise. */
static void check_live(const hoare_ctx *c, const char *fn) {
    if (unlikely(c->live != CTX_LIVE))
        hoare__fatal("%s: context %p was already freed (released more times than retained)", fn,
                     (const void *)c);
}

static hoare_ctx background = {.deadline = INT64_MAX};

static bool is_root(const hoare_ctx *c) { return c == NULL || c == &background; }

hoare_ctx *hoare_ctx_background(void) { return &background; }

static void ctx_free(hoare_ctx *c) {
    c->live = 0;
    if (c->has_timer) hoare__timer_stop(&c->timer);
    hoare_chan_release(c->done);
    free(c);
}

static void unpin(hoare_ctx *c) {
    if (atomic_fetch_sub(&c->pins, 1) == 1) ctx_free(c);
}

static void link_child(hoare_ctx *p, hoare_ctx *c) {
    c->sib_next = p->children;
    if (p->children) p->children->sib_pprev = &c->sib_next;
    c->sib_pprev = &p->children;
    p->children = c;
}

static void unlink_child(hoare_ctx *c) {
    *c->sib_pprev = c->sib_next;
    if (c->sib_next) c->sib_next->sib_pprev = c->sib_pprev;
    c->sib_next = NULL;
    c->sib_pprev = NULL;
}

/* Mark c cancelled with err: error, done channel, watches. c->lock held. */
static void cancel_self(hoare_ctx *c, int err) {
    __atomic_store_n(&c->err, err, __ATOMIC_RELEASE);
    hoare_close(c->done);
    hoare_ctx_watch *w = c->watches;
    c->watches = NULL;
    while (w) {
        hoare_ctx_watch *next = w->next;
        w->linked = false;
        w->fn(w->arg, err); /* w may be gone once its owner gets c->lock */
        w = next;
    }
}

/* Cancel c and every descendant not yet cancelled with err: c->lock held (and still held on
 * return), c not cancelled yet. Depth first without recursion (a chain of contexts may be as deep
 * as a program makes it; the timer's callback runs on a scheduler stack): the locks of the path
 * from c down are held, parent before child, and each level's cancel_up leads back up. */
static void cancel_locked(hoare_ctx *c, int err) {
    hoare_ctx *top = c;
    cancel_self(c, err);
    for (;;) {
        hoare_ctx *child = c->children;
        if (!child) {
            if (c == top) return;
            hoare_ctx *up = c->cancel_up;
            hoare__unlock(&c->lock);
            c = up;
            continue;
        }
        c->children = child->sib_next;
        if (child->sib_next) child->sib_next->sib_pprev = &c->children;
        child->sib_next = NULL;
        child->sib_pprev = NULL;
        hoare__lock(&child->lock);
        if (child->parent == c) {
            child->parent = NULL;
            atomic_fetch_sub(&c->pins, 1); /* never the last: c's canceller holds a pin on c */
        }
        if (child->err) {
            hoare__unlock(&child->lock);
        } else {
            cancel_self(child, err);
            child->cancel_up = c;
            c = child;
        }
    }
}

/* Cancel c (if not yet) with err. from_user: also detach c from its parent and stop its timer
 * (not allowed in c's own timer callback). */
static void ctx_cancel(hoare_ctx *c, int err, bool from_user) {
    hoare__lock(&c->lock);
    if (!c->err) cancel_locked(c, err);
    hoare_ctx *parent = NULL;
    if (from_user) {
        parent = c->parent;
        c->parent = NULL;
    }
    hoare__unlock(&c->lock);
    if (parent) {
        hoare__lock(&parent->lock);
        if (c->sib_pprev) unlink_child(c);
        hoare__unlock(&parent->lock);
        unpin(parent);
    }
    if (from_user && c->has_timer) hoare__timer_stop(&c->timer);
}

static void deadline_passed(void *arg, int64_t now) {
    (void)now;
    ctx_cancel(arg, ETIMEDOUT, false);
}

static hoare_ctx *ctx_new(hoare_ctx *parent, int64_t deadline) {
    hoare_ctx *c = hoare__calloc(1, sizeof *c);
    if (!c) goto nomem;
    c->done = hoare_chan_make(0, 0);
    if (!c->done) goto nomem;
    atomic_init(&c->refs, 1);
    atomic_init(&c->pins, 1);
    c->live = CTX_LIVE;
    int64_t parent_deadline = hoare_ctx_deadline(parent);
    bool own_timer = deadline < parent_deadline;
    c->deadline = own_timer ? deadline : parent_deadline;
    if (!is_root(parent)) {
        hoare__lock(&parent->lock);
        int perr = parent->err;
        if (perr) { /* born cancelled, not attached */
            c->err = perr;
            hoare_close(c->done);
        } else {
            atomic_fetch_add(&parent->pins, 1);
            c->parent = parent;
            link_child(parent, c);
        }
        hoare__unlock(&parent->lock);
    }
    if (own_timer && !hoare_ctx_err(c)) { /* a parent may cancel c from now on */
        if (deadline <= hoare__nanotime()) {
            ctx_cancel(c, ETIMEDOUT, true);
        } else {
            c->has_timer = true;
            c->timer.fn = deadline_passed;
            c->timer.arg = c;
            c->timer.period = 0;
            hoare__timer_start(&c->timer, deadline);
        }
    }
    return c;
nomem:
    free(c);
    errno = ENOMEM;
    return NULL;
}

hoare_ctx *hoare_ctx_with_cancel(hoare_ctx *parent) { return ctx_new(parent, INT64_MAX); }

hoare_ctx *hoare_ctx_with_deadline(hoare_ctx *parent, int64_t deadline) {
    return ctx_new(parent, deadline);
}

hoare_ctx *hoare_ctx_with_timeout(hoare_ctx *parent, int64_t ns) {
    return ctx_new(parent, hoare__deadline_in(ns));
}

void hoare_ctx_cancel(hoare_ctx *ctx) {
    if (!is_root(ctx)) ctx_cancel(ctx, ECANCELED, true);
}

hoare_chan *hoare_ctx_done(hoare_ctx *ctx) { return is_root(ctx) ? NULL : ctx->done; }

int hoare_ctx_err(const hoare_ctx *ctx) {
    return is_root(ctx) ? 0 : __atomic_load_n(&ctx->err, __ATOMIC_ACQUIRE);
}

int64_t hoare_ctx_deadline(const hoare_ctx *ctx) { return is_root(ctx) ? INT64_MAX : ctx->deadline; }

hoare_ctx *hoare_ctx_retain(hoare_ctx *ctx) {
    if (is_root(ctx)) return ctx;
    check_live(ctx, "hoare_ctx_retain");
    if (unlikely(atomic_fetch_add(&ctx->refs, 1) <= 0))
        hoare__fatal("hoare_ctx_retain: context %p has no reference left (released too often)",
                     (void *)ctx);
    return ctx;
}

void hoare_ctx_release(hoare_ctx *ctx) {
    if (is_root(ctx)) return;
    check_live(ctx, "hoare_ctx_release");
    int32_t old = atomic_fetch_sub(&ctx->refs, 1);
    if (unlikely(old <= 0)) /* children still pin the memory: not freed, but over-released */
        hoare__fatal("hoare_ctx_release: context %p released more times than retained", (void *)ctx);
    if (old != 1) return;
    ctx_cancel(ctx, ECANCELED, true); /* also stops the timer: then the user pin may go */
    unpin(ctx);
}

int hoare__ctx_watch(hoare_ctx *ctx, hoare_ctx_watch *w) {
    if (is_root(ctx)) return 0;
    hoare__lock(&ctx->lock);
    int err = ctx->err;
    if (!err) {
        w->prev = NULL;
        w->next = ctx->watches;
        if (ctx->watches) ctx->watches->prev = w;
        ctx->watches = w;
        w->linked = true;
    }
    hoare__unlock(&ctx->lock);
    return err;
}

void hoare__ctx_unwatch(hoare_ctx *ctx, hoare_ctx_watch *w) {
    if (is_root(ctx)) return;
    hoare__lock(&ctx->lock);
    if (w->linked) {
        if (w->prev)
            w->prev->next = w->next;
        else
            ctx->watches = w->next;
        if (w->next) w->next->prev = w->prev;
        w->linked = false;
    }
    hoare__unlock(&ctx->lock);
}
