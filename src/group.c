/*
 * group.c - goroutine groups (Go's golang.org/x/sync/errgroup design).
 *
 * Each hoare_group_go counts one goroutine in wg (and holds one slot of `slots` when a limit is
 * set) from before the goroutine starts until after it finished: wait waits on wg, so the group
 * outlives its goroutines. The first non-zero error wins a CAS on err and cancels ctx; wait then
 * cancels ctx too (as errgroup does) and returns err. limit is only changed while no goroutine of
 * the group is active (active == 0), so the goroutines read it without a lock.
 */
#include <errno.h>
#include <stdlib.h>

#include "sync.h"

struct hoare_group {
    hoare_ctx *ctx; /* owned: one reference */
    hoare_wg wg;
    hoare_sem slots;
    int limit;
    _Atomic int32_t active;
    int err;
};

typedef struct group_task {
    hoare_group *group;
    int (*fn)(hoare_ctx *ctx, void *arg);
    void *arg;
} group_task;

hoare_group *hoare_group_new(hoare_ctx *parent) {
    hoare_group *g = hoare__calloc(1, sizeof *g);
    if (!g) goto nomem;
    g->ctx = hoare_ctx_with_cancel(parent);
    if (!g->ctx) goto nomem;
    return g;
nomem:
    free(g);
    errno = ENOMEM;
    return NULL;
}

hoare_ctx *hoare_group_ctx(hoare_group *g) { return g->ctx; }

void hoare_group_set_limit(hoare_group *g, int n) {
    int32_t active = atomic_load(&g->active);
    if (active != 0)
        hoare__fatal("errgroup: modify limit while %d goroutines in the group are still active",
                     (int)active);
    g->limit = n > 0 ? n : 0;
    if (g->limit) hoare_sem_init(&g->slots, g->limit);
}

/* The goroutine's end (or its failed start): give back what hoare_group_go took, wg last (after
 * it, the group may be freed). */
static void task_finished(hoare_group *g) {
    if (g->limit) hoare_sem_release(&g->slots, 1);
    atomic_fetch_sub(&g->active, 1);
    hoare_wg_done(&g->wg);
}

static void task_run(void *arg) {
    group_task task = *(group_task *)arg;
    free(arg);
    hoare_group *g = task.group;
    int err = task.fn(g->ctx, task.arg);
    int none = 0;
    if (err && __atomic_compare_exchange_n(&g->err, &none, err, false, __ATOMIC_SEQ_CST,
                                           __ATOMIC_RELAXED))
        hoare_ctx_cancel(g->ctx);
    task_finished(g);
}

int hoare_group_go(hoare_group *g, int (*fn)(hoare_ctx *ctx, void *arg), void *arg) {
    if (!fn) return EINVAL;
    group_task *task = hoare__malloc(sizeof *task);
    if (!task) return ENOMEM;
    *task = (group_task){g, fn, arg};
    if (g->limit) hoare_sem_acquire(&g->slots, 1);
    atomic_fetch_add(&g->active, 1);
    hoare_wg_add(&g->wg, 1);
    int err = hoare_go(task_run, task);
    if (err) {
        free(task);
        task_finished(g);
    }
    return err;
}

int hoare_group_wait(hoare_group *g) {
    hoare_wg_wait(&g->wg);
    hoare_ctx_cancel(g->ctx);
    return __atomic_load_n(&g->err, __ATOMIC_SEQ_CST);
}

void hoare_group_free(hoare_group *g) {
    if (!g) return;
    hoare_wg_wait(&g->wg); /* also for goroutines started after a wait */
    hoare_ctx_release(g->ctx);
    free(g);
}
