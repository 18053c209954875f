/*
 * stack.h - goroutine stacks and descriptors (stack.c). Internal.
 */
#ifndef HOARE_STACK_H
#define HOARE_STACK_H

#include "runtime.h"

/* A processor's private cache of free default-size slots (guarded by owning the P). */
typedef struct g_cache {
    G *list;  /* linked by schedlink */
    uint32_t n;
} g_cache;

#define HOARE_DEFAULT_STACK (128u * 1024u)

/* Allocate a descriptor with a stack of at least stack_size usable bytes (0 = default), status
 * G_FREE, stack unpoisoned. cache may be NULL (plain thread). NULL with errno ENOMEM/EAGAIN. */
HIDDEN G *hoare__g_alloc(size_t stack_size, g_cache *cache);
/* Return a dead goroutine's slot to the pool. Must not run on g's own stack. */
HIDDEN void hoare__g_free(G *g, g_cache *cache);
/* Move a cache's slots to the global pool (a processor going away). */
HIDDEN void hoare__g_cache_flush(g_cache *cache);
/* Call fn on every slot ever carved (used or free): the runtime's list of all goroutines. */
HIDDEN void hoare__each_slot(void (*fn)(G *g, void *arg), void *arg);
/* Bytes below the usable stack that fault on access (0 when guards are off). */
HIDDEN size_t hoare__guard_size(void);
/* The default usable stack size (HOARE_STACK_SIZE env or HOARE_DEFAULT_STACK). */
HIDDEN size_t hoare__default_stack(void);

#endif
