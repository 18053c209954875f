/*
 * stack.h - goroutine stacks and descriptors (stack.c). Internal.
 */
#ifndef HOARE_STACK_H
#define HOARE_STACK_H

#include "runtime.h"

/* A processor's private cache of free slots (guarded by owning the P): list[0] holds default-size
 * slots, list[1] slots of one other size (the last one freed there: `size` says which). */
typedef struct g_cache {
    G *list[2];   /* linked by schedlink */
    uint32_t n[2];
    size_t size;  /* slot size of list[1]'s slots (0: none yet) */
} g_cache;

#define HOARE_DEFAULT_STACK (128u * 1024u)

/* Allocate a descriptor with a stack of at least stack_size usable bytes (0 = default; below a page:
 * a sub-page slot, see stack.c), status G_FREE, stack unpoisoned. cache may be NULL (plain thread).
 * No system call unless a new slab must be mapped. NULL with errno ENOMEM/EAGAIN. */
HIDDEN G *hoare__g_alloc(size_t stack_size, g_cache *cache);
/* Return a dead goroutine's slot to the pool. Must not run on g's own stack. Never a system call. */
HIDDEN void hoare__g_free(G *g, g_cache *cache);
/* Move a cache's slots to the global pool (a processor going away). */
HIDDEN void hoare__g_cache_flush(g_cache *cache);
/* Call fn on every slot ever carved (used or free): the runtime's list of all goroutines. */
HIDDEN void hoare__each_slot(void (*fn)(G *g, void *arg), void *arg);
/* The default usable stack size (HOARE_STACK_SIZE env or HOARE_DEFAULT_STACK). */
HIDDEN size_t hoare__default_stack(void);
/* A fault at addr while g runs: is it g overflowing its stack (into a guard, or for a sub-page slot
 * into the slots below it in its group)? */
HIDDEN bool hoare__stack_fault_is_overflow(const G *g, const void *addr);
/* Monitor: give back the pages of slots that stayed free for a whole scavenge interval (a no-op
 * until the interval has passed). Returns true while free slots may still need releasing later. */
HIDDEN bool hoare__stack_scavenge(int64_t now);
/* An idle processor's contribution while the program adds goroutines: commit up to WARM_BATCH
 * fresh slots ahead of demand (see stack.c, "Warming"). False when none are wanted. Takes
 * pool_lock; runs on the scheduler context. */
HIDDEN bool hoare__stack_warm(void);
extern HIDDEN _Atomic uint64_t hoare__stack_warmed; /* slots it committed so far, for tests */
/* Warming is wanted (read by a spinner before it sleeps: a waker saw it spinning and woke nobody). */
HIDDEN bool hoare__stack_warm_wanted(void);
/* Run fn(arg) where there is stack to spare: on the thread's scheduler stack when the caller runs on
 * a sub-page stack, or on a goroutine stack with less than `need` bytes left; else right here. For
 * runtime work that needs more than a few hundred bytes of stack (creating a thread, mapping a
 * slab; fatal reports, whose symbolisation needs far more than a default stack has left); fn must
 * not park or switch. */
HIDDEN void hoare__on_sched_stack(void (*fn)(void *), void *arg, size_t need);
/* Fatal "stack overflow" report naming g; async-signal-safe, little stack (diag.c). */
HIDDEN __attribute__((noreturn)) void hoare__stack_overflow_fatal(const G *g);

/* Sub-page slots have no guard of their own: a canary word sits just below the usable stack and is
 * checked whenever the goroutine switches out. */
#define HOARE_STACK_CANARY 0x5a17c0ffee15dead
static inline void hoare__stack_check(const G *g) {
    if (unlikely(g->flags & G_SMALL_STACK) &&
        unlikely(((const uint64_t *)(const void *)g->stack_lo)[-1] != (uint64_t)HOARE_STACK_CANARY))
        hoare__stack_overflow_fatal(g);
}

#endif
