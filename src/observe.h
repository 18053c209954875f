/*
 * observe.h - the one flag word behind the scheduler's observation hooks: execution traces
 * (trace.h) and statistics (stats.h). Internal.
 *
 * While neither is on, a hook costs one relaxed load and one predictable branch; where a site
 * feeds both (a goroutine starts running, is made runnable, is created), one combined hook tests
 * the word once (observe_* in trace.h).
 */
#ifndef HOARE_OBSERVE_H
#define HOARE_OBSERVE_H

#include "runtime.h"

enum { OBSERVE_TRACE = 1, OBSERVE_STATS = 2 };

/* Set and cleared with atomic or/and by hoare_trace_start/stop and the first hoare_stats_read. */
extern HIDDEN _Atomic uint32_t hoare__observe;

static inline uint32_t observing(void) {
#ifdef HOARE_NO_TRACE_HOOKS
    return 0; /* every hook compiled out: only to measure what they cost (bench/trace_overhead.sh) */
#else
    return atomic_load_explicit(&hoare__observe, memory_order_relaxed);
#endif
}

#endif /* HOARE_OBSERVE_H */
