/*
 * stack.c - goroutine stacks and descriptors.
 *
 * A slot is [guard][usable stack][G], carved from slabs that are mmap'd with MAP_NORESERVE and
 * committed lazily by the kernel as the stack is touched. The G descriptor sits at the top of its
 * own slot, so a goroutine parked in a shallow call chain costs one touched page for stack and
 * descriptor together. Transparent huge pages are turned off for slabs (MADV_NOHUGEPAGE), or a
 * lazily committed stack could become 2 MiB of resident memory.
 *
 * Guards: MADV_GUARD_INSTALL (Linux 6.13+) marks the guard pages in the page tables without
 * splitting the mapping, so a slab stays one VMA however many stacks it holds, and 1,111,111 live
 * goroutines fit under the default vm.max_map_count (65530). Where the kernel lacks it, the fallback
 * is mprotect(PROT_NONE), which splits the mapping: about vm.max_map_count / 2 live goroutines at
 * most (raise the sysctl, or set HOARE_STACK_GUARD=0 to run without guards). Slabs are never
 * unmapped: slots are reused, and dumps enumerate every slot through the slab list.
 *
 * Pools: each processor keeps a private cache of free default-size slots (no locking); overflow
 * goes to a global pool per slot size, guarded by pool_lock. Slots beyond POOL_KEEP_RESIDENT in a
 * global pool give their stack pages back to the kernel (MADV_DONTNEED, all but the top page).
 */
#include "stack.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifdef HOARE_ASAN
#include <sanitizer/asan_interface.h>
#endif
#ifdef HOARE_HAVE_VALGRIND
#include <valgrind/valgrind.h>
#endif

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

enum {
    GUARD_BYTES = 16 * 1024,       /* large frames can skip a single page */
    SLAB_MIN_BYTES = 8 << 20,      /* a slab is at least this big (fewer mappings, fewer syscalls) */
    CACHE_MAX = 64,                /* per-processor cache, slots */
    CACHE_BATCH = 32,              /* slots moved between a cache and the global pool at once */
    POOL_KEEP_RESIDENT = 16384,    /* global pool slots that keep their pages (~64 MiB) */
};

/* One size class: all slots of one usable stack size. Classes are few (usually just the default). */
typedef struct size_class {
    struct size_class *next;
    size_t stack_size;   /* usable bytes */
    size_t slot_size;    /* guard + stack + G, page multiple */
    G *free;             /* global pool, linked by schedlink */
    size_t nfree;
} size_class;

typedef struct slab {
    struct slab *next;
    char *base;
    size_t slot_size;
    size_t nslots;
    _Atomic size_t carved; /* slots handed out so far (the rest are untouched memory) */
} slab;

static hoare_lock pool_lock;     /* guards classes, their free lists, slab carving */
static size_class *classes;
static _Atomic(slab *) slabs;    /* prepend-only list (readers need no lock) */
static slab *carving;            /* the slab last carved from (any class; checked against it) */
static size_t page_size;
static int guard_mode = -1;      /* -1 unknown, 0 none, 1 madvise guard, 2 mprotect guard */
static size_t default_stack;

static size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

size_t hoare__guard_size(void) { return guard_mode > 0 ? GUARD_BYTES : 0; }

size_t hoare__default_stack(void) {
    if (default_stack == 0) {
        size_t s = HOARE_DEFAULT_STACK;
        const char *env = getenv("HOARE_STACK_SIZE");
        if (env && *env) {
            char *end;
            unsigned long long v = strtoull(env, &end, 10);
            if (*end == 'k' || *end == 'K') v <<= 10;
            else if (*end == 'm' || *end == 'M') v <<= 20;
            if (v >= 16 * 1024) s = (size_t)v;
        }
        __atomic_store_n(&default_stack, s, __ATOMIC_RELAXED);
    }
    return default_stack;
}

static size_class *class_for(size_t stack_size) {
    for (size_class *c = classes; c; c = c->next)
        if (c->stack_size == stack_size) return c;
    size_class *c = hoare__calloc(1, sizeof *c);
    if (!c) return NULL;
    c->stack_size = stack_size;
    c->slot_size = round_up(GUARD_BYTES + stack_size + sizeof(G), page_size);
    c->next = classes;
    classes = c;
    return c;
}

static void install_guard(char *lo) {
    if (guard_mode == 1 && hoare__madvise(lo, GUARD_BYTES, MADV_GUARD_INSTALL) != 0) {
        guard_mode = 2; /* kernel without guard regions: fall back for this and later slots */
    }
    if (guard_mode == 2) mprotect(lo, GUARD_BYTES, PROT_NONE);
}

/* Carve a fresh slot of class c. Called with pool_lock held. */
static G *carve(size_class *c) {
    slab *s = carving;
    if (!s || s->slot_size != c->slot_size || s->carved == s->nslots) {
        s = NULL;
        for (slab *t = atomic_load(&slabs); t; t = t->next)
            if (t->slot_size == c->slot_size && t->carved < t->nslots) { s = t; break; }
    }
    if (!s) {
        size_t nslots = SLAB_MIN_BYTES / c->slot_size;
        if (nslots == 0) nslots = 1;
        size_t len = nslots * c->slot_size;
        char *base = hoare__mmap(NULL, len, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (base == MAP_FAILED) {
            errno = (errno == ENOMEM) ? ENOMEM : EAGAIN;
            return NULL;
        }
        madvise(base, len, MADV_NOHUGEPAGE);
        s = hoare__calloc(1, sizeof *s);
        if (!s) {
            munmap(base, len);
            errno = ENOMEM;
            return NULL;
        }
        s->base = base;
        s->slot_size = c->slot_size;
        s->nslots = nslots;
        s->next = atomic_load(&slabs);
        atomic_store_explicit(&slabs, s, memory_order_release);
    }
    carving = s;
    char *lo = s->base + s->carved * c->slot_size;
    if (guard_mode) install_guard(lo);
    G *g = (G *)(lo + c->slot_size - sizeof(G));
    memset(g, 0, sizeof *g);
    /* the usable stack ends where the G begins, rounded down to 64 bytes */
    char *top = (char *)((uintptr_t)g & ~(uintptr_t)63);
    g->stack_lo = lo + GUARD_BYTES;
    g->stack_size = (size_t)(top - g->stack_lo);
#ifdef HOARE_HAVE_VALGRIND
    VALGRIND_STACK_REGISTER(g->stack_lo, top);
#endif
    /* Publish the slot to enumerators only once its G is initialised. */
    atomic_store_explicit(&s->carved, s->carved + 1, memory_order_release);
    return g;
}

static void init_once(void) {
    if (page_size) return;
    page_size = (size_t)sysconf(_SC_PAGESIZE);
    const char *env = getenv("HOARE_STACK_GUARD");
    guard_mode = (env && env[0] == '0') ? 0 : 1;
}

/* The slot size a G was carved with (it sits at the very end of its slot). */
static size_t slot_size_of(const G *g) {
    return (size_t)((const char *)g + sizeof(G) - (g->stack_lo - GUARD_BYTES));
}

static bool is_default_slot(const G *g) {
    return slot_size_of(g) ==
           round_up(GUARD_BYTES + round_up(hoare__default_stack(), 4096) + sizeof(G), page_size);
}

G *hoare__g_alloc(size_t stack_size, g_cache *cache) {
    if (stack_size == 0) stack_size = hoare__default_stack();
    stack_size = round_up(stack_size, 4096);
    bool cacheable = cache && stack_size == round_up(hoare__default_stack(), 4096);
    if (cacheable && cache->list) {
        G *g = cache->list;
        cache->list = g->schedlink;
        cache->n--;
        g->schedlink = NULL;
        return g;
    }
    hoare__lock(&pool_lock);
    init_once();
    size_class *c = class_for(stack_size);
    G *g = NULL;
    if (!c) {
        errno = ENOMEM;
    } else if (c->free) {
        g = c->free;
        c->free = g->schedlink;
        c->nfree--;
        /* refill the cache with a batch while we hold the lock */
        while (cacheable && c->free && cache->n < CACHE_BATCH) {
            G *x = c->free;
            c->free = x->schedlink;
            c->nfree--;
            x->schedlink = cache->list;
            cache->list = x;
            cache->n++;
        }
    } else {
        g = carve(c);
    }
    hoare__unlock(&pool_lock);
    if (g) g->schedlink = NULL;
    return g;
}

/* Give the pages of a pooled slot's stack back to the kernel, keeping the G's page. */
static void release_pages(G *g) {
    uintptr_t top_page = (uintptr_t)g & ~(uintptr_t)(page_size - 1);
    if (top_page > (uintptr_t)g->stack_lo)
        madvise(g->stack_lo, top_page - (uintptr_t)g->stack_lo, MADV_DONTNEED);
}

static void pool_put_locked(G *g) {
    size_class *c = classes;
    while (c && c->slot_size != slot_size_of(g)) c = c->next;
    if (!c) hoare__fatal("stack pool: slot of unknown size %zu", slot_size_of(g));
    if (c->nfree >= POOL_KEEP_RESIDENT) release_pages(g);
    g->schedlink = c->free;
    c->free = g;
    c->nfree++;
}

void hoare__g_free(G *g, g_cache *cache) {
    atomic_store_explicit(&g->status, G_FREE, memory_order_release);
#ifdef HOARE_ASAN
    /* The dead goroutine's frames left their redzones poisoned. */
    ASAN_UNPOISON_MEMORY_REGION(g->stack_lo, g->stack_size);
#endif
    if (cache && cache->n < CACHE_MAX && is_default_slot(g)) {
        g->schedlink = cache->list;
        cache->list = g;
        cache->n++;
        return;
    }
    hoare__lock(&pool_lock);
    pool_put_locked(g);
    /* a full cache sends half of itself along */
    while (cache && cache->n > CACHE_MAX / 2) {
        G *x = cache->list;
        cache->list = x->schedlink;
        cache->n--;
        pool_put_locked(x);
    }
    hoare__unlock(&pool_lock);
}

void hoare__g_cache_flush(g_cache *cache) {
    hoare__lock(&pool_lock);
    while (cache->list) {
        G *x = cache->list;
        cache->list = x->schedlink;
        pool_put_locked(x);
    }
    cache->n = 0;
    hoare__unlock(&pool_lock);
}

void hoare__each_slot(void (*fn)(G *g, void *arg), void *arg) {
    for (slab *s = atomic_load_explicit(&slabs, memory_order_acquire); s; s = s->next) {
        size_t n = atomic_load_explicit(&s->carved, memory_order_acquire);
        for (size_t i = 0; i < n; i++)
            fn((G *)(s->base + (i + 1) * s->slot_size - sizeof(G)), arg);
    }
}
