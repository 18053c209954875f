/*
 * pool.c - hoare_pool, Go's sync.Pool: a cache of reusable objects with per-processor storage.
 *
 * Each processor has its own cache per pool (pool_local): a primary array and a victim array,
 * touched only by goroutines running on that processor, with preemption disabled across the access
 * (so the goroutine cannot be switched out, and the processor cannot change hands, mid-update).
 * get and put there take no lock and no atomic read-modify-write. A full local cache moves half of
 * itself to the pool's shared arrays, and an empty one refills from them, under the pool's lock:
 * that is the slow path, as are plain threads (no processor), which use the shared arrays directly.
 *
 * Shedding (there is no garbage collector; only pools with a free_object shed, and only they are
 * registered with the monitor): the monitor advances a global epoch every
 * POOL_INTERVAL_NS. An object sits in a primary array while it is in use; at the next epoch it moves
 * to the victim array, and at the one after it is handed to the pool's free_object (Go's victim
 * cache: unused for two intervals). get takes from the victim array too, which saves it. Who ages
 * what:
 *  - a processor's local cache is aged by its own goroutines at their next get or put on the pool,
 *    or, while the processor is idle (or retired), by the monitor under sched.lock - an idle
 *    processor cannot be acquired by an M without that lock, so nobody else touches its caches;
 *  - the shared arrays are aged by the monitor under the pool's lock.
 * free_object is never called with a runtime lock held.
 *
 * Locks: pools_lock guards the list of registered pools (and pl->registered); shed_lock is held by
 * the monitor for a whole shedding round, free_object calls included, and by hoare_pool_destroy, so
 * that a destroyed pool is never touched again. Order: shed_lock, then pools_lock, then sched.lock,
 * then a pool's lock.
 */
#include "proc.h"
#include "sync.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum { LOCAL_CAP = 32 }; /* objects per local array */
#define POOL_INTERVAL_NS (1000 * 1000 * 1000LL)

typedef struct pool_local {
    uint32_t n, nv;      /* objects in obj / victim */
    uint32_t epoch;      /* the epoch the arrays were last aged for */
    void *obj[LOCAL_CAP];
    void *victim[LOCAL_CAP];
} pool_local;

/* The shared arrays (pl->shared), guarded by pl->lock. */
typedef struct pool_shared {
    void **obj, **victim;
    size_t n, nv, cap, capv;
} pool_shared;

/* A list of objects to free once the locks are dropped. */
typedef struct free_list {
    void **v;
    size_t n, cap;
} free_list;

static _Atomic uint32_t pool_epoch = 1;
static hoare_lock pools_lock;            /* guards `pools` */
static hoare_pool *pools;                /* registered pools, linked by next */
static pthread_mutex_t shed_lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t shed_last;                /* monitor only */

static bool push(void ***v, size_t *n, size_t *cap, void *x) {
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 64;
        void **nv = realloc(*v, c * sizeof *nv);
        if (!nv) return false;
        *v = nv;
        *cap = c;
    }
    (*v)[(*n)++] = x;
    return true;
}

static void free_later(free_list *f, void *obj) {
    /* without memory to remember it the object is leaked, rather than freed under a lock */
    (void)push(&f->v, &f->n, &f->cap, obj);
}

/* Age l to epoch: victims go to f, the primary array becomes the victim array; both go when two
 * epochs or more have passed. */
static void age_local(pool_local *l, uint32_t epoch, free_list *f) {
    uint32_t d = epoch - l->epoch;
    if (d == 0) return;
    for (uint32_t i = 0; i < l->nv; i++) free_later(f, l->victim[i]);
    l->nv = 0;
    if (d >= 2) {
        for (uint32_t i = 0; i < l->n; i++) free_later(f, l->obj[i]);
    } else {
        memcpy(l->victim, l->obj, l->n * sizeof l->obj[0]);
        l->nv = l->n;
    }
    l->n = 0;
    l->epoch = epoch;
}

static void run_frees(hoare_pool *pl, free_list *f) {
    if (pl->free_object)
        for (size_t i = 0; i < f->n; i++) pl->free_object(f->v[i], pl->arg);
    f->n = 0;
}

static pool_shared *shared_of(hoare_pool *pl) {
    pool_shared *s = __atomic_load_n((pool_shared **)&pl->shared, __ATOMIC_ACQUIRE);
    if (s) return s;
    s = calloc(1, sizeof *s);
    if (!s) return NULL;
    pool_shared *expect = NULL;
    if (!__atomic_compare_exchange_n((pool_shared **)&pl->shared, &expect, s, false, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE)) {
        free(s);
        return expect;
    }
    return s;
}

static pool_local **locals_of(hoare_pool *pl) {
    pool_local **v = __atomic_load_n((pool_local ***)&pl->locals, __ATOMIC_ACQUIRE);
    if (v) return v;
    v = calloc(HOARE_MAX_PROCS, sizeof *v);
    if (!v) return NULL;
    pool_local **expect = NULL;
    if (!__atomic_compare_exchange_n((pool_local ***)&pl->locals, &expect, v, false, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE)) {
        free(v);
        return expect;
    }
    return v;
}

/* Only pools with a free_object are registered and aged: without one nothing is ever shed. A new
 * registration kicks the monitor, which may be asleep with nothing to shed (hoare__pools_exist). */
static void register_pool(hoare_pool *pl) {
    if (!pl->free_object || __atomic_load_n(&pl->registered, __ATOMIC_ACQUIRE)) return;
    hoare__init();
    hoare__lock(&pools_lock);
    bool registered = !pl->registered;
    if (registered) {
        pl->next = pools;
        __atomic_store_n(&pools, pl, __ATOMIC_SEQ_CST); /* the monitor peeks without the lock */
        __atomic_store_n(&pl->registered, 1, __ATOMIC_RELEASE);
    }
    hoare__unlock(&pools_lock);
    if (registered) hoare__monitor_kick();
}

bool hoare__pools_exist(void) { return __atomic_load_n(&pools, __ATOMIC_SEQ_CST) != NULL; }

/* The caller's processor, with preemption disabled (*g set, to re-enable); NULL on a plain thread
 * or inside a blocking region (the processor may be handed away at any time there). */
static P *pin(G **gp) {
    G *g = hoare__curg();
    *gp = g;
    if (!g) return NULL;
    g->preempt_off++;
    atomic_signal_fence(memory_order_seq_cst); /* the preemption handler reads preempt_off */
    M *m = hoare__getm();
    if (atomic_load_explicit(&g->status, memory_order_relaxed) == G_BLOCKING) return NULL;
    return m->p;
}

static void unpin(G *g) {
    if (!g) return;
    atomic_signal_fence(memory_order_seq_cst);
    g->preempt_off--;
}

/* Shared slow paths (pl->lock) */

static void *shared_get(hoare_pool *pl, pool_local *refill) {
    pool_shared *s = shared_of(pl);
    if (!s) return NULL;
    void *obj = NULL;
    hoare_lock *lk = hoare__lock_in(&pl->lock);
    hoare__lock(lk);
    if (s->n) obj = s->obj[--s->n];
    else if (s->nv) obj = s->victim[--s->nv];
    /* bring up to half a local cache along */
    while (obj && refill && refill->n < LOCAL_CAP / 2 && (s->n || s->nv))
        refill->obj[refill->n++] = s->n ? s->obj[--s->n] : s->victim[--s->nv];
    hoare__unlock(lk);
    return obj;
}

/* Put obj (and the upper half of l's primary array, if l) into the shared array. */
static int shared_put(hoare_pool *pl, void *obj, pool_local *l) {
    pool_shared *s = shared_of(pl);
    if (!s) return ENOMEM;
    int err = 0;
    hoare_lock *lk = hoare__lock_in(&pl->lock);
    hoare__lock(lk);
    if (!push(&s->obj, &s->n, &s->cap, obj)) err = ENOMEM;
    while (!err && l && l->n > LOCAL_CAP / 2 && push(&s->obj, &s->n, &s->cap, l->obj[l->n - 1])) l->n--;
    hoare__unlock(lk);
    return err;
}

/* ------------------------------------------------------------------------------------------
 * Public */

void *hoare_pool_get(hoare_pool *pl) {
    if (!pl) return NULL;
    G *g = NULL;
    void *obj = NULL;
    bool local = false; /* the local cache (and the shared arrays, if it was empty) were tried */
    free_list f = {0};
    pool_local **locals = __atomic_load_n((pool_local ***)&pl->locals, __ATOMIC_ACQUIRE);
    P *p = locals ? pin(&g) : NULL;
    pool_local *l = p ? __atomic_load_n(&locals[p->id], __ATOMIC_RELAXED) : NULL;
    if (l) {
        local = true;
        if (pl->free_object) age_local(l, atomic_load_explicit(&pool_epoch, memory_order_relaxed), &f);
        if (l->n) obj = l->obj[--l->n];
        else if (l->nv) obj = l->victim[--l->nv];
        else obj = shared_get(pl, l);
    }
    unpin(g);
    if (f.n) run_frees(pl, &f);
    free(f.v);
    if (!obj && !local && locals) obj = shared_get(pl, NULL);
    if (!obj && pl->new_object) obj = pl->new_object(pl->arg);
    return obj;
}

int hoare_pool_put(hoare_pool *pl, void *obj) {
    if (!pl || !obj) return EINVAL;
    register_pool(pl);
    pool_local **locals = locals_of(pl);
    if (!locals) return ENOMEM;
    G *g;
    int err = 0;
    bool done = false;
    free_list f = {0};
    P *p = pin(&g);
    if (p) {
        pool_local *l = __atomic_load_n(&locals[p->id], __ATOMIC_RELAXED);
        if (!l) {
            l = calloc(1, sizeof *l);
            if (l) {
                l->epoch = atomic_load_explicit(&pool_epoch, memory_order_relaxed);
                __atomic_store_n(&locals[p->id], l, __ATOMIC_RELEASE);
            }
        }
        if (l) {
            if (pl->free_object) age_local(l, atomic_load_explicit(&pool_epoch, memory_order_relaxed), &f);
            if (l->n < LOCAL_CAP) l->obj[l->n++] = obj;
            else err = shared_put(pl, obj, l);
            done = true;
        }
    }
    unpin(g);
    if (f.n) run_frees(pl, &f);
    free(f.v);
    if (!done) err = shared_put(pl, obj, NULL);
    return err;
}

void hoare_pool_destroy(hoare_pool *pl) {
    if (!pl) return;
    pthread_mutex_lock(&shed_lock);
    hoare__lock(&pools_lock);
    for (hoare_pool **link = &pools; *link; link = &(*link)->next)
        if (*link == pl) {
            __atomic_store_n(link, pl->next, __ATOMIC_RELAXED);
            break;
        }
    hoare__unlock(&pools_lock);
    pthread_mutex_unlock(&shed_lock);
    free_list f = {0};
    pool_local **locals = pl->locals;
    if (locals) {
        for (int i = 0; i < HOARE_MAX_PROCS; i++) {
            pool_local *l = locals[i];
            if (!l) continue;
            for (uint32_t j = 0; j < l->n; j++) free_later(&f, l->obj[j]);
            for (uint32_t j = 0; j < l->nv; j++) free_later(&f, l->victim[j]);
            free(l);
        }
        free(locals);
    }
    pool_shared *s = pl->shared;
    if (s) {
        for (size_t j = 0; j < s->n; j++) free_later(&f, s->obj[j]);
        for (size_t j = 0; j < s->nv; j++) free_later(&f, s->victim[j]);
        free(s->obj);
        free(s->victim);
        free(s);
    }
    run_frees(pl, &f);
    free(f.v);
    void *(*new_object)(void *) = pl->new_object;
    void (*free_object)(void *, void *) = pl->free_object;
    void *arg = pl->arg;
    memset(pl, 0, sizeof *pl);
    pl->new_object = new_object;
    pl->free_object = free_object;
    pl->arg = arg;
}

/* ------------------------------------------------------------------------------------------
 * Shedding (monitor thread) */

bool hoare__pool_shed(int64_t now) {
    if (!__atomic_load_n(&pools, __ATOMIC_RELAXED)) return false;
    if (now - shed_last < POOL_INTERVAL_NS) return true;
    shed_last = now;
    uint32_t epoch = atomic_fetch_add(&pool_epoch, 1) + 1;
    pthread_mutex_lock(&shed_lock);
    hoare__lock(&pools_lock);
    hoare_pool *list = pools;
    hoare__unlock(&pools_lock);
    /* The list only loses pools under shed_lock (destroy), which we hold; new ones are prepended
     * ahead of `list` and wait for the next round. */
    free_list f = {0};
    for (hoare_pool *pl = list; pl; pl = pl->next) {
        pool_local **locals = __atomic_load_n((pool_local ***)&pl->locals, __ATOMIC_ACQUIRE);
        if (locals) {
            hoare__lock(&hoare__sched.lock);
            for (int32_t i = 0; i < HOARE_MAX_PROCS; i++) {
                P *p = atomic_load_explicit(&hoare__allp[i], memory_order_acquire);
                if (!p) break;
                /* idle or retired: no M can take it while we hold sched.lock */
                bool idle = atomic_load_explicit(&p->status, memory_order_relaxed) != P_RUNNING;
                pool_local *l = __atomic_load_n(&locals[i], __ATOMIC_ACQUIRE);
                if (l && idle) age_local(l, epoch, &f);
            }
            hoare__unlock(&hoare__sched.lock);
        }
        pool_shared *s = __atomic_load_n((pool_shared **)&pl->shared, __ATOMIC_ACQUIRE);
        if (s) {
            hoare_lock *lk = hoare__lock_in(&pl->lock);
            hoare__lock(lk);
            for (size_t j = 0; j < s->nv; j++) free_later(&f, s->victim[j]);
            void **v = s->victim;
            size_t capv = s->capv;
            s->victim = s->obj;
            s->capv = s->cap;
            s->nv = s->n;
            s->obj = v;
            s->cap = capv;
            s->n = 0;
            hoare__unlock(lk);
        }
        run_frees(pl, &f);
    }
    free(f.v);
    pthread_mutex_unlock(&shed_lock);
    return true;
}
