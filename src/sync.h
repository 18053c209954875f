/*
 * sync.h - internal interface of the sync area: the runtime semaphore (sema.c) that the sync
 * primitives park on, and context watches (context.c) that let a waiter (the weighted semaphore)
 * give up when a context is cancelled.
 */
#ifndef HOARE_SYNC_H
#define HOARE_SYNC_H

#include "runtime.h"

/* The public structs keep runtime locks in plain uint32_t fields (the public header cannot name
 * hoare_lock); this views such a field as the lock it holds. */
_Static_assert(sizeof(hoare_lock) == sizeof(uint32_t) && _Alignof(hoare_lock) == _Alignof(uint32_t),
               "hoare_lock must fit a uint32_t field");
static inline hoare_lock *hoare__lock_in(uint32_t *word) { return (hoare_lock *)(void *)word; }

/* Busy-wait hint for short spins. */
static inline void hoare__cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

/* ---------------------------------------------------------------- runtime semaphore (sema.c)
 * Go's runtime semaphore: *addr counts available wake-ups. semacquire waits until *addr > 0 and
 * decrements it; semrelease adds to *addr and wakes waiters queued on addr. Waiters are kept in
 * address-keyed FIFO queues in a fixed hash table of buckets; addr itself is only used as a key
 * once the count was added, so a releaser never touches *addr after a waiter may have returned. */

/* Wait until *addr > 0, then decrement it. lifo queues the caller at the front of addr's queue
 * (for a waiter that already waited once). reason: Go's wait reason, shown in dumps. */
HIDDEN void hoare__semacquire(uint32_t *addr, bool lifo, const char *reason);
/* Add n to *addr and wake up to n waiters queued on addr. handoff (n == 1 only): the count goes
 * straight to the woken waiter (no newcomer can take it) and a releasing goroutine yields to it. */
HIDDEN void hoare__semrelease(uint32_t *addr, uint32_t n, bool handoff);

/* ---------------------------------------------------------------- context watches (context.c)
 * A watch calls fn(arg, err) once when its context is cancelled. fn runs with the context's lock
 * held (and possibly its ancestors' locks), on any thread, including timer callbacks: it must be
 * short and must not park; it may take runtime locks that are never held while taking a context
 * lock, and it may ready goroutines. Lock order: ancestor context -> context -> anything fn takes. */
typedef struct hoare_ctx_watch {
    void (*fn)(void *arg, int err);
    void *arg;
    struct hoare_ctx_watch *next, *prev; /* in the context's watch list, guarded by its lock */
    bool linked;
} hoare_ctx_watch;
/* Register w (fn and arg set by the caller): 0, or the context's error if it is already cancelled
 * (w is then not registered and fn will not run). ctx NULL or background: 0, fn never runs. */
HIDDEN int hoare__ctx_watch(hoare_ctx *ctx, hoare_ctx_watch *w);
/* Unregister w. Once it returns, fn is not running and will not run: w may be freed. */
HIDDEN void hoare__ctx_unwatch(hoare_ctx *ctx, hoare_ctx_watch *w);

#endif /* HOARE_SYNC_H */
