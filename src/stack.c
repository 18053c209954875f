/*
 * stack.c - goroutine stacks and descriptors.
 *
 * A slot is [guard][usable stack][G], carved from slabs that are mmap'd with MAP_NORESERVE and
 * committed lazily by the kernel as the stack is touched. The G descriptor sits at the top of its
 * own slot, so a goroutine parked in a shallow call chain costs one touched page for stack and
 * descriptor together (one page fault for a fresh slot, none for a reused one). Transparent huge
 * pages are turned off for slabs (MADV_NOHUGEPAGE), or a lazily committed stack could become 2 MiB
 * of resident memory.
 *
 * Guards: MADV_GUARD_INSTALL (Linux 6.13+) marks the guard pages in the page tables without
 * splitting the mapping, so a slab stays one VMA however many stacks it holds, and 1,111,111 live
 * goroutines fit under the default vm.max_map_count (65530). Where the kernel lacks it, the fallback
 * is mprotect(PROT_NONE), which splits the mapping: about vm.max_map_count / 2 live goroutines at
 * most (raise the sysctl, or set HOARE_STACK_GUARD=0 to run without guards). All the guards of a
 * slab are installed when the slab is mapped, in as few system calls as the kernel allows
 * (process_madvise takes up to 1024 ranges at once), and without pool_lock held: carving a slot out
 * of a slab, spawning and exiting never make a system call. Slabs are never unmapped: slots are
 * reused, and dumps enumerate every slot through the slab list.
 *
 * Sub-page slots: a stack_size below a page gives a slot of CANARY + stack + G bytes (16-byte
 * multiple), packed several to a page in groups of SMALL_GROUP bytes with a guard page at the bottom
 * of each group. A goroutine in the lowest slot of a group that overflows hits the guard; one higher
 * up runs into the slot below it, first through a canary word just under its stack, which is checked
 * every time the goroutine switches out (hoare__stack_check): either way the process ends with a
 * "stack overflow" report naming the goroutine. Groups are aligned to SMALL_GROUP, so a fault address
 * can be matched to the running goroutine's group without a lookup.
 *
 * Pools: each processor keeps a private cache of free slots (no locking) for the default size and one
 * other size; overflow goes to a global pool per slot size, guarded by pool_lock. A global pool has
 * three lists, taken in this order: `free` (freed since the last scavenge round), `cold` (free for
 * at least one whole round) and `released` (pages given back). The monitor calls
 * hoare__stack_scavenge about once a second: it releases the pages of the cold slots (MADV_DONTNEED,
 * all but the descriptor's page) outside the lock, then moves `free` to `cold` (Go's scavenger
 * returns memory in the background the same way). Sub-page slots share pages with their neighbours
 * and keep their memory.
 *
 * Warming: a program that keeps adding goroutines needs a fresh page for each (its descriptor and
 * the top of its stack), and committing it costs a few microseconds of kernel time, more than the
 * rest of a start. So once fresh slots are carved, a processor that would otherwise idle commits
 * more ahead of demand (hoare__stack_warm, called by the scheduler's idle search, WARM_BATCH at a
 * time) into the default class's `warm` list, up to WARM_MAX slots: the spawner then takes slots
 * whose page is already there, and the two cores share the page commits. Warm slots are taken after
 * the other lists (their pages are no better than a cold slot's) and before fresh carving. At most
 * WARM_MAX pages are held that way.
 */
#include "stack.h"

#include "arch.h"
#include "proc.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
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
    SLAB_MIN_BYTES = 32 << 20,     /* a slab of page-size slots is at least this big */
    SMALL_GROUP = 256 * 1024,      /* sub-page slots: a guard page, then slots, per group */
    SMALL_SLAB_GROUPS = 64,        /* groups per slab of sub-page slots (16 MiB) */
    CANARY_BYTES = 16,             /* below a sub-page slot's stack (keeps the stack 16-aligned) */
    SMALL_MIN_STACK = 1024,        /* smallest usable sub-page stack (start and park need ~600 B) */
    CACHE_MAX = 64,                /* per-processor cache, slots per list */
    CACHE_BATCH = 32,              /* slots moved between a cache and the global pool at once */
    MAX_IOV = 1024,                /* ranges per process_madvise call (UIO_MAXIOV) */
    WARM_BATCH = 16,               /* slots an idle processor commits per hoare__stack_warm call */
    WARM_MAX = 256,                /* warm slots held at most (1 MiB of 4 KiB pages) */
};
#define SCAVENGE_NS (1000 * 1000 * 1000LL)

/* One size class: all slots of one usable stack size. Classes are few (usually just the default). */
typedef struct size_class {
    struct size_class *next;
    size_t stack_size;   /* usable bytes asked for (normalised) */
    size_t slot_size;    /* bytes per slot: page multiple, or a 16-byte multiple for small ones */
    bool small;          /* sub-page slots */
    G *free, *cold, *released; /* global pool, linked by schedlink */
    G *warm;             /* default class: fresh slots committed ahead of demand (see Warming) */
    size_t nfree, ncold, nwarm;
    struct slab *slab;   /* the slab being carved (NULL: none with room) */
} size_class;

typedef struct slab {
    struct slab *next;
    char *base;          /* small: aligned to SMALL_GROUP */
    size_t slot_size;
    size_t per_group;    /* small: slots per group; 0 for page-size slots */
    size_t nslots;
    size_t len;          /* bytes mapped from base */
    _Atomic size_t carved; /* slots handed out so far (the rest are untouched memory) */
} slab;

static hoare_lock pool_lock;     /* guards classes, their lists, and each class's slab carving */
static size_class *classes;
static _Atomic(slab *) slabs;    /* prepend-only list (readers need no lock) */
static size_t page_size;
static size_t default_slot;      /* slot size of the default class */
static _Atomic int guard_mode;   /* 0 none, 1 madvise guard, 2 mprotect guard */
static pthread_once_t init_once_ctl = PTHREAD_ONCE_INIT;
static _Atomic bool init_done;   /* init_once has run (its results may be read) */
static int64_t scavenge_last;    /* monitor only */
static bool scavenge_pending;    /* monitor only: cold slots were left for the next round */
static _Atomic bool freed_since_scavenge; /* a slot went to a global pool since the last round */
/* Warming is wanted: set by a spawner that found the default class's global pool empty with
 * fewer than WARM_MAX / 2 warm slots; cleared once the warm list is full, or when the current slab
 * has no room left. Written under pool_lock, read without it by idle processors. */
static _Atomic bool warm_wanted;
static size_class *default_class; /* set under pool_lock once the default class exists */
HIDDEN _Atomic uint64_t hoare__stack_warmed; /* slots committed by warming, for tests */

static size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

/* Larger than any address space (x86-64 and AArch64 user space hold 2^47-2^48 bytes): refused
 * with ENOMEM before the rounding below could overflow. */
#define MAX_STACK_BYTES ((size_t)1 << 48)

size_t hoare__default_stack(void) {
    static size_t default_stack;
    if (__atomic_load_n(&default_stack, __ATOMIC_RELAXED) == 0) {
        size_t s = HOARE_DEFAULT_STACK;
        hoare__env_size("HOARE_STACK_SIZE", 16 << 10, (size_t)1 << 30, &s); /* Go's limit: 1 GiB */
        __atomic_store_n(&default_stack, s, __ATOMIC_RELAXED);
    }
    return __atomic_load_n(&default_stack, __ATOMIC_RELAXED);
}

static void init_once(void) {
    page_size = (size_t)sysconf(_SC_PAGESIZE);
    atomic_store(&guard_mode, hoare__env_switch("HOARE_STACK_GUARD", true) ? 1 : 0);
    default_slot = round_up(GUARD_BYTES + round_up(hoare__default_stack(), 4096) + sizeof(G), page_size);
    atomic_store_explicit(&init_done, true, memory_order_release);
}

/* pthread_once costs a call and a barrier on every spawn; this is one load once it is done. */
static inline void ensure_init(void) {
    if (unlikely(!atomic_load_explicit(&init_done, memory_order_acquire)))
        pthread_once(&init_once_ctl, init_once);
}

/* ------------------------------------------------------------------------------------------
 * Batched madvise: process_madvise on our own process takes up to 1024 ranges per call (Linux
 * 6.13+ accepts any advice for the caller itself); elsewhere one madvise per range. */

static int self_pidfd = -1;
static pid_t self_pidfd_pid;
static hoare_lock pidfd_lock;

static bool advise_batch(struct iovec *iov, size_t n, int advice, bool one_by_one) {
    hoare__lock(&pidfd_lock);
    if (self_pidfd_pid != getpid()) { /* first use, or we are a forked child */
        if (self_pidfd >= 0) close(self_pidfd);
        self_pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
        self_pidfd_pid = getpid();
    }
    int fd = self_pidfd;
    hoare__unlock(&pidfd_lock);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += iov[i].iov_len;
    if (fd >= 0 && syscall(SYS_process_madvise, fd, iov, n, advice, 0) == (long)total) return true;
    if (!one_by_one) return false;
    for (size_t i = 0; i < n; i++)
        if (madvise(iov[i].iov_base, iov[i].iov_len, advice) != 0) return false;
    return true;
}

/* Install guards on n ranges (page aligned). Called without pool_lock. */
static void install_guards(struct iovec *iov, size_t n) {
    for (size_t done = 0; done < n;) {
        size_t k = n - done < MAX_IOV ? n - done : MAX_IOV;
        if (atomic_load(&guard_mode) == 1 && !advise_batch(iov + done, k, MADV_GUARD_INSTALL, true))
            atomic_store(&guard_mode, 2); /* kernel without guard regions: mprotect from now on */
        if (atomic_load(&guard_mode) == 2)
            for (size_t i = done; i < done + k; i++) mprotect(iov[i].iov_base, iov[i].iov_len, PROT_NONE);
        done += k;
    }
}

/* ------------------------------------------------------------------------------------------
 * Slabs and carving */

static char *slot_lo(const slab *s, size_t i) {
    if (s->per_group)
        return s->base + (i / s->per_group) * SMALL_GROUP + page_size + (i % s->per_group) * s->slot_size;
    return s->base + i * s->slot_size;
}

/* Map a slab for class c (its shape read under pool_lock by the caller, passed here) and install
 * all its guards. Called without pool_lock. */
static slab *new_slab(size_t slot_size, bool small) {
    size_t len, nslots, per_group = 0, ngroups = 0;
    if (small) {
        per_group = (SMALL_GROUP - page_size) / slot_size;
        ngroups = SMALL_SLAB_GROUPS;
        len = ngroups * SMALL_GROUP;
        nslots = ngroups * per_group;
    } else {
        nslots = SLAB_MIN_BYTES / slot_size;
        if (nslots == 0) nslots = 1;
        len = nslots * slot_size;
    }
    size_t map_len = small ? len + SMALL_GROUP : len;
    char *map = hoare__mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (map == MAP_FAILED) {
        errno = (errno == ENOMEM) ? ENOMEM : EAGAIN;
        return NULL;
    }
    char *base = map;
    if (small) { /* align the groups, give back the slack at both ends */
        base = (char *)round_up((uintptr_t)map, SMALL_GROUP);
        if (base > map) munmap(map, (size_t)(base - map));
        if (map + map_len > base + len) munmap(base + len, (size_t)(map + map_len - (base + len)));
    }
    madvise(base, len, MADV_NOHUGEPAGE);
    slab *s = hoare__calloc(1, sizeof *s);
    if (!s) {
        munmap(base, len);
        errno = ENOMEM;
        return NULL;
    }
    s->base = base;
    s->slot_size = slot_size;
    s->per_group = per_group;
    s->nslots = nslots;
    s->len = len;
    if (atomic_load(&guard_mode)) {
        size_t nguards = small ? ngroups : nslots;
        struct iovec *iov = hoare__malloc(nguards * sizeof *iov);
        if (!iov) {
            free(s);
            munmap(base, len);
            errno = ENOMEM;
            return NULL;
        }
        for (size_t i = 0; i < nguards; i++) {
            iov[i].iov_base = small ? base + i * SMALL_GROUP : base + i * slot_size;
            iov[i].iov_len = small ? page_size : GUARD_BYTES;
        }
        install_guards(iov, nguards);
        free(iov);
    }
    return s;
}

struct new_slab_args {
    size_t slot_size;
    bool small;
    slab *s;  /* out */
    int err;  /* out, when s is NULL */
};

static void new_slab_call(void *arg) {
    struct new_slab_args *a = arg;
    a->s = new_slab(a->slot_size, a->small);
    if (!a->s) a->err = errno;
}

/* Reserve up to want fresh slots of c's current slab: their indexes are [*first, *first + n). Caller
 * holds pool_lock. Enumerators may see them at once: fresh memory is zero, and a zero G is G_FREE. */
static size_t reserve(size_class *c, size_t want, slab **sp, size_t *first) {
    slab *s = c->slab;
    size_t i = atomic_load_explicit(&s->carved, memory_order_relaxed);
    size_t n = s->nslots - i < want ? s->nslots - i : want;
    atomic_store_explicit(&s->carved, i + n, memory_order_release);
    if (i + n == s->nslots) c->slab = NULL;
    *sp = s;
    *first = i;
    return n;
}

/* Set up a fresh slot's descriptor (its memory is still zero). No lock needed: the slot is ours. */
static G *init_slot(const slab *s, size_t i) {
    char *lo = slot_lo(s, i);
    G *g = (G *)(lo + s->slot_size - sizeof(G));
    char *top;
    if (s->per_group) {
        uint64_t *canary = (uint64_t *)(void *)lo;
        canary[0] = canary[1] = (uint64_t)HOARE_STACK_CANARY;
        g->flags = G_SMALL_STACK;
        g->stack_lo = lo + CANARY_BYTES;
        top = (char *)((uintptr_t)g & ~(uintptr_t)15);
    } else {
        g->stack_lo = lo + GUARD_BYTES;
        /* the usable stack ends where the G begins, rounded down to 64 bytes */
        top = (char *)((uintptr_t)g & ~(uintptr_t)63);
    }
    g->stack_size = (size_t)(top - g->stack_lo);
#ifdef HOARE_HAVE_VALGRIND
    VALGRIND_STACK_REGISTER(g->stack_lo, top);
#endif
    return g;
}

/* Commit the descriptor pages of fresh page-size slots [first, first + n) of s in one system call
 * (MADV_POPULATE_WRITE through process_madvise) instead of a page fault each. Best effort. */
static void populate(const slab *s, size_t first, size_t n) {
    enum { MADV_POPULATE_WRITE_ = 23 };
    struct iovec iov[CACHE_BATCH];
    if (s->per_group || n < 2 || n > CACHE_BATCH) return;
    for (size_t k = 0; k < n; k++) {
        iov[k].iov_base = (void *)(((uintptr_t)slot_lo(s, first + k) + s->slot_size - 1) & ~(uintptr_t)(page_size - 1));
        iov[k].iov_len = page_size;
    }
    advise_batch(iov, n, MADV_POPULATE_WRITE_, false);
}

/* ------------------------------------------------------------------------------------------
 * Classes and the global pool (pool_lock held) */

static size_class *class_for(size_t stack_size, bool small) {
    for (size_class *c = classes; c; c = c->next)
        if (c->stack_size == stack_size && c->small == small) return c;
    size_class *c = hoare__calloc(1, sizeof *c);
    if (!c) return NULL;
    c->stack_size = stack_size;
    c->small = small;
    c->slot_size = small ? round_up(CANARY_BYTES + stack_size + sizeof(G), 16)
                         : round_up(GUARD_BYTES + stack_size + sizeof(G), page_size);
    c->next = classes;
    classes = c;
    if (!small && c->slot_size == default_slot) default_class = c;
    return c;
}

static size_t slot_size_of(const G *g) {
    size_t below = (g->flags & G_SMALL_STACK) ? CANARY_BYTES : GUARD_BYTES;
    return (size_t)((const char *)g + sizeof(G) - (g->stack_lo - below));
}

static size_class *class_of(const G *g) {
    size_t size = slot_size_of(g);
    bool small = (g->flags & G_SMALL_STACK) != 0;
    for (size_class *c = classes; c; c = c->next)
        if (c->slot_size == size && c->small == small) return c;
    hoare__fatal("stack pool: slot of unknown size %zu", size);
}

static G *pool_take_locked(size_class *c) {
    G *g;
    if ((g = c->free)) {
        c->free = g->schedlink;
        c->nfree--;
    } else if ((g = c->cold)) {
        c->cold = g->schedlink;
        c->ncold--;
    } else if ((g = c->released)) {
        c->released = g->schedlink;
    } else if ((g = c->warm)) {
        c->warm = g->schedlink;
        c->nwarm--;
    }
    return g;
}

static void pool_put_locked(G *g) {
    size_class *c = class_of(g);
    g->schedlink = c->free;
    c->free = g;
    c->nfree++;
    if (!c->small && !atomic_load_explicit(&freed_since_scavenge, memory_order_relaxed))
        atomic_store_explicit(&freed_since_scavenge, true, memory_order_relaxed);
}

/* ------------------------------------------------------------------------------------------
 * Allocation and freeing */

/* The cache list for slots of this size: 0 default, 1 the other one; -1 none (list 1 holds
 * another size and is not empty). */
static int cache_list(const g_cache *cache, size_t slot_size) {
    if (slot_size == default_slot) return 0;
    if (cache->size == slot_size || cache->n[1] == 0) return 1;
    return -1;
}

G *hoare__g_alloc(size_t stack_size, g_cache *cache) {
    ensure_init();
    if (stack_size == 0) stack_size = hoare__default_stack();
    if (stack_size > MAX_STACK_BYTES) {
        errno = ENOMEM;
        return NULL;
    }
    bool small = stack_size < page_size;
#if defined(HOARE_ASAN)
    /* AddressSanitizer's frames carry redzones: a sub-page stack gets four times the room */
    if (small) stack_size *= 4;
#elif defined(HOARE_TSAN)
    /* ThreadSanitizer's runtime runs on the goroutine's stack at every instrumented access */
    if (small) stack_size *= 8;
#endif
    stack_size = small ? round_up(stack_size < SMALL_MIN_STACK ? SMALL_MIN_STACK : stack_size, 16)
                       : round_up(stack_size, 4096);
    size_t slot_size = small ? round_up(CANARY_BYTES + stack_size + sizeof(G), 16)
                             : round_up(GUARD_BYTES + stack_size + sizeof(G), page_size);
    int li = cache ? cache_list(cache, slot_size) : -1;
    if (li >= 0 && cache->list[li] && (li == 0 || cache->size == slot_size)) {
        G *g = cache->list[li];
        cache->list[li] = g->schedlink;
        cache->n[li]--;
        g->schedlink = NULL;
        return g;
    }
    hoare__lock(&pool_lock);
    size_class *c = class_for(stack_size, small);
    if (!c) {
        hoare__unlock(&pool_lock);
        errno = ENOMEM;
        return NULL;
    }
    slab *extra = NULL, *fresh_slab = NULL;
    size_t fresh = 0, fresh_first = 0;
    G *g = pool_take_locked(c);
    if (g) {
        /* refill the cache with a batch while we hold the lock */
        if (li >= 0) {
            if (li == 1) cache->size = slot_size;
            G *x;
            while (cache->n[li] < CACHE_BATCH && (x = pool_take_locked(c))) {
                x->schedlink = cache->list[li];
                cache->list[li] = x;
                cache->n[li]++;
            }
        }
    } else {
        if (!c->slab) {
            /* map a new slab without the lock (its guards are system calls) */
            size_t slot = c->slot_size;
            hoare__unlock(&pool_lock);
            struct new_slab_args a = {slot, small, NULL, 0};
            hoare__on_sched_stack(new_slab_call, &a, 0); /* mmap, malloc: more stack than small slots have */
            slab *s = a.s;
            if (!s) {
                errno = a.err;
                return NULL;
            }
            hoare__lock(&pool_lock);
            if (c->slab) { /* another thread mapped one meanwhile: use that, drop ours */
                extra = s;
            } else {
                s->next = atomic_load_explicit(&slabs, memory_order_relaxed);
                atomic_store_explicit(&slabs, s, memory_order_release);
                c->slab = s;
            }
        }
        /* a batch of fresh slots (the rest go to the cache), touched only once the lock is dropped */
        fresh = reserve(c, li >= 0 ? CACHE_BATCH : 1, &fresh_slab, &fresh_first);
    }
    /* The program is growing: let an idle processor commit slots ahead of it. One wake-up per
     * WARM_MAX / 2 slots taken at most: it warms until the list is full. */
    bool warm = c == default_class && c->nwarm < WARM_MAX / 2 && !c->free && !c->cold &&
                !c->released && !atomic_load_explicit(&warm_wanted, memory_order_relaxed);
    if (warm) atomic_store(&warm_wanted, true); /* seq_cst: against a spinner giving up */
    hoare__unlock(&pool_lock);
    if (warm) hoare__wakep();
    if (fresh) {
        populate(fresh_slab, fresh_first, fresh);
        g = init_slot(fresh_slab, fresh_first);
        if (li == 1) cache->size = slot_size;
        for (size_t k = 1; k < fresh; k++) {
            G *x = init_slot(fresh_slab, fresh_first + k);
            x->schedlink = cache->list[li];
            cache->list[li] = x;
            cache->n[li]++;
        }
    }
    if (extra) {
        munmap(extra->base, extra->len);
        free(extra);
    }
    g->schedlink = NULL;
    return g;
}

void hoare__g_free(G *g, g_cache *cache) {
    atomic_store_explicit(&g->status, G_FREE, memory_order_release);
#ifdef HOARE_ASAN
    /* The dead goroutine's frames left their redzones poisoned. */
    ASAN_UNPOISON_MEMORY_REGION(g->stack_lo, g->stack_size);
#endif
    size_t slot_size = slot_size_of(g);
    int li = cache ? cache_list(cache, slot_size) : -1;
    if (li >= 0 && cache->n[li] < CACHE_MAX) {
        if (li == 1) cache->size = slot_size;
        g->schedlink = cache->list[li];
        cache->list[li] = g;
        cache->n[li]++;
        return;
    }
    hoare__lock(&pool_lock);
    pool_put_locked(g);
    /* a full cache sends half of itself along */
    while (li >= 0 && cache->n[li] > CACHE_MAX / 2) {
        G *x = cache->list[li];
        cache->list[li] = x->schedlink;
        cache->n[li]--;
        pool_put_locked(x);
    }
    hoare__unlock(&pool_lock);
}

void hoare__g_cache_flush(g_cache *cache) {
    hoare__lock(&pool_lock);
    for (int li = 0; li < 2; li++) {
        while (cache->list[li]) {
            G *x = cache->list[li];
            cache->list[li] = x->schedlink;
            pool_put_locked(x);
        }
        cache->n[li] = 0;
    }
    hoare__unlock(&pool_lock);
}

/* ------------------------------------------------------------------------------------------
 * Warming (idle processors) */

bool hoare__stack_warm_wanted(void) { return atomic_load(&warm_wanted); }

bool hoare__stack_warm(void) {
    if (!atomic_load_explicit(&warm_wanted, memory_order_relaxed)) return false;
    hoare__lock(&pool_lock);
    size_class *c = default_class;
    if (!c || !c->slab || c->nwarm >= WARM_MAX) {
        /* full, or no slab with room (mapping one is the spawner's business) */
        atomic_store_explicit(&warm_wanted, false, memory_order_relaxed);
        hoare__unlock(&pool_lock);
        return false;
    }
    slab *s;
    size_t first, n = reserve(c, WARM_BATCH, &s, &first);
    hoare__unlock(&pool_lock);
    populate(s, first, n);
    /* linked in address order */
    G *head = NULL, *tail = NULL;
    for (size_t k = n; k-- > 0;) {
        G *x = init_slot(s, first + k);
        x->schedlink = head;
        head = x;
        if (!tail) tail = x;
    }
    hoare__lock(&pool_lock);
    tail->schedlink = c->warm;
    c->warm = head;
    c->nwarm += n;
    atomic_fetch_add_explicit(&hoare__stack_warmed, n, memory_order_relaxed);
    if (c->nwarm >= WARM_MAX) atomic_store_explicit(&warm_wanted, false, memory_order_relaxed);
    hoare__unlock(&pool_lock);
    return true;
}

/* ------------------------------------------------------------------------------------------
 * Scavenging (monitor thread) */

bool hoare__stack_scavenge(int64_t now) {
    ensure_init();
    if (now - scavenge_last < SCAVENGE_NS)
        return scavenge_pending || atomic_load_explicit(&freed_since_scavenge, memory_order_relaxed);
    scavenge_last = now;
    atomic_store_explicit(&freed_since_scavenge, false, memory_order_relaxed);
    bool pending = false;
    struct iovec iov[MAX_IOV];
    hoare__lock(&pool_lock);
    for (size_class *c = classes; c; c = c->next) {
        if (c->small) continue; /* sub-page slots share their pages */
        G *cold = c->cold;
        c->cold = c->free;
        c->ncold = c->nfree;
        c->free = NULL;
        c->nfree = 0;
        pending |= c->cold != NULL;
        if (!cold) continue;
        /* Release outside the lock: the detached slots are ours alone meanwhile. */
        hoare__unlock(&pool_lock);
        G *tail = NULL;
        size_t n = 0;
        for (G *g = cold; g; g = g->schedlink) {
            uintptr_t top_page = (uintptr_t)g & ~(uintptr_t)(page_size - 1);
            if (top_page > (uintptr_t)g->stack_lo) {
                iov[n].iov_base = g->stack_lo;
                iov[n].iov_len = top_page - (uintptr_t)g->stack_lo;
                if (++n == MAX_IOV) {
                    advise_batch(iov, n, MADV_DONTNEED, true);
                    n = 0;
                }
            }
            tail = g;
        }
        if (n) advise_batch(iov, n, MADV_DONTNEED, true);
        hoare__lock(&pool_lock);
        tail->schedlink = c->released;
        c->released = cold;
    }
    hoare__unlock(&pool_lock);
    scavenge_pending = pending;
    return pending;
}

/* ------------------------------------------------------------------------------------------
 * Running on the scheduler stack */

void hoare__on_sched_stack(void (*fn)(void *), void *arg, size_t need) {
    M *m = hoare__getm();
    G *g = m ? m->curg : NULL;
    char here;
    if (!g || &here < g->stack_lo || &here >= g->stack_lo + g->stack_size ||
        (!(g->flags & G_SMALL_STACK) && (size_t)(&here - g->stack_lo) >= need)) {
        fn(arg); /* room enough here, or already off the goroutine's stack */
        return;
    }
    /* While a goroutine runs on m, m's scheduler context is switched out: everything below its
     * saved stack pointer is free (256 bytes spared for what the switch left there). */
    uintptr_t sp = ((uintptr_t)m->g0.sp - 256) & ~(uintptr_t)15;
    hoare__call_on_stack(fn, arg, (void *)sp);
}

/* ------------------------------------------------------------------------------------------
 * Enumeration and faults */

void hoare__each_slot(void (*fn)(G *g, void *arg), void *arg) {
    for (slab *s = atomic_load_explicit(&slabs, memory_order_acquire); s; s = s->next) {
        size_t n = atomic_load_explicit(&s->carved, memory_order_acquire);
        for (size_t i = 0; i < n; i++) fn((G *)(slot_lo(s, i) + s->slot_size - sizeof(G)), arg);
    }
}

bool hoare__stack_fault_is_overflow(const G *g, const void *addr) {
    const char *a = addr;
    if (a >= g->stack_lo) return false;
    if (g->flags & G_SMALL_STACK) {
        /* anywhere below the stack in its group (guard or lower slots), or just below the group */
        const char *group = (const char *)((uintptr_t)g->stack_lo & ~(uintptr_t)(SMALL_GROUP - 1));
        return a >= group - 65536;
    }
    return a >= g->stack_lo - GUARD_BYTES - 65536;
}
