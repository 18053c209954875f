/*
 * fault.c - the counter behind fault.h (fault injection builds only; an empty unit otherwise).
 * The count is process-wide and atomic: calls from any thread count, in the order they reach it.
 * Env HOARE_FAULT_TRACE=1 prints the call stack of the failing call to stderr.
 */
#ifdef HOARE_FAULT_INJECTION
#include "fault.h"

#include <execinfo.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

static _Atomic uint64_t calls;
static _Atomic uint64_t fail_at; /* 0: none */
static atomic_int fired;
static atomic_int env_read;

int hoare__fault_hit(void) {
    if (!atomic_load_explicit(&env_read, memory_order_acquire)) {
        int expect = 0;
        if (atomic_compare_exchange_strong(&env_read, &expect, 1)) {
            const char *e = getenv("HOARE_FAULT_AT");
            if (e && *e) atomic_store(&fail_at, strtoull(e, NULL, 10));
        }
    }
    uint64_t n = atomic_fetch_add(&calls, 1) + 1;
    if (n != atomic_load(&fail_at)) return 0;
    atomic_store(&fired, 1);
    if (getenv("HOARE_FAULT_TRACE")) { /* where the failing call is, for the test's report */
        void *pcs[8];
        backtrace_symbols_fd(pcs, backtrace(pcs, 8), 2);
    }
    return 1;
}

void hoare__fault_set(uint64_t n) {
    atomic_store(&env_read, 1);
    atomic_store(&fail_at, 0);
    atomic_store(&fired, 0);
    atomic_store(&calls, 0);
    atomic_store(&fail_at, n);
}

uint64_t hoare__fault_calls(void) { return atomic_load(&calls); }

int hoare__fault_fired(void) { return atomic_load(&fired); }
#else
typedef int hoare__fault_unused; /* ISO C: a translation unit is not empty */
#endif
