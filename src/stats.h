/*
 * stats.h - runtime statistics counters (stats.c reads them for hoare_stats_read). Internal.
 *
 * Counting starts at the first hoare_stats_read (HOARE_STATS=1: at the runtime's start), so a
 * program that never asks pays one predictable branch per counting site (as the trace hooks).
 *
 * Each M owns a struct m_stats (in its M) and is its only writer: increments are a relaxed load
 * and store (no atomic read-modify-write, no shared cache line), and hoare_stats_read sums every
 * M's counters with relaxed loads while the program runs (no stop-the-world; a read is a snapshot
 * that may be a few events behind). What happens on plain threads (no M) is counted in one global
 * struct with atomic adds (those paths sleep on futexes anyway).
 * The park reasons of an M sit in a small table keyed by the reason's address (string literals):
 * the usual park finds its reason in its home slot (a multiply and a shift away); the same words at two addresses are merged by
 * the reader.
 *
 * Run-queue wait: one in STATS_SAMPLE readies (and spawns) stamps the goroutine with the time
 * (G.runnable_since); when it next starts running, the wait goes into a log2 histogram in µs. The
 * sampling keeps the clock reads off most hand-offs (Go samples the same way).
 */
#ifndef HOARE_STATS_H
#define HOARE_STATS_H

#include "observe.h"
#include "runtime.h"

enum { STATS_SLOTS = 32, STATS_SAMPLE = 8 };

/* A reason's home slot: a multiplicative hash of its address (string literals). */
static inline uint32_t stats_slot(const char *reason) {
    return (uint32_t)(((uint64_t)(uintptr_t)reason * 0x9E3779B97F4A7C15ull) >> 59);
}

struct m_stats {
    _Atomic uint64_t switches, steals, created, preemptions;
    struct {
        const char *_Atomic reason; /* set once by the owner, then read by readers */
        _Atomic uint64_t count;
    } parks[STATS_SLOTS];
    _Atomic uint64_t parks_other;   /* reasons beyond the table */
    _Atomic uint64_t wait[HOARE_STATS_WAIT_BUCKETS];
    _Atomic uint32_t sample;        /* readies seen, for sampling: owner only (the global one: atomic adds) */
};

/* The counters of plain threads (declared before the inline functions that use it). */
HIDDEN extern struct m_stats hoare__thread_stats;
/* Counting is on from the first hoare_stats_read (or from the start with HOARE_STATS=1): until
 * then each counting site costs one predictable branch (observe.h). */
static inline bool stats_on(void) {
    return unlikely(observing() & OBSERVE_STATS);
}
HIDDEN void hoare__stats_init(void);
HIDDEN void hoare__stats_count_park(struct m_stats *s, const char *reason);
HIDDEN void hoare__stats_count_wait(struct m_stats *s, int64_t ns);

static inline void stats_inc(_Atomic uint64_t *c) {
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1, memory_order_relaxed);
}

/* g starts running on the M owning s (called from the combined hooks, trace.c). */
static inline void stats_execute(struct m_stats *s, G *g) {
    if (!stats_on()) return;
    stats_inc(&s->switches);
    if (unlikely(g->runnable_since != 0)) {
        hoare__stats_count_wait(s, hoare__nanotime() - g->runnable_since);
        g->runnable_since = 0;
    }
}

/* g was made runnable (s NULL on a plain thread). */
static inline void stats_ready(struct m_stats *s, G *g) {
    if (!stats_on()) return;
    uint32_t n;
    if (likely(s != NULL)) {
        n = atomic_load_explicit(&s->sample, memory_order_relaxed) + 1;
        atomic_store_explicit(&s->sample, n, memory_order_relaxed);
    } else {
        n = atomic_fetch_add_explicit(&hoare__thread_stats.sample, 1, memory_order_relaxed) + 1;
    }
    if (unlikely(n % STATS_SAMPLE == 0)) g->runnable_since = hoare__nanotime();
}

static inline void stats_create(struct m_stats *s, G *g) {
    if (!stats_on()) return;
    if (s) stats_inc(&s->created);
    else atomic_fetch_add_explicit(&hoare__thread_stats.created, 1, memory_order_relaxed);
    stats_ready(s, g);
}

static inline void stats_park(struct m_stats *s, const char *reason) {
    if (!stats_on()) return;
    if (s) {
        uint32_t h = stats_slot(reason);
        if (likely(atomic_load_explicit(&s->parks[h].reason, memory_order_relaxed) == reason)) {
            stats_inc(&s->parks[h].count);
            return;
        }
    }
    hoare__stats_count_park(s ? s : &hoare__thread_stats, reason);
}

static inline void stats_preempt(struct m_stats *s) {
    if (stats_on()) stats_inc(&s->preemptions);
}

/* Pass-through for the steal site: counts a successful steal, returns g. */
static inline G *stats_steal(struct m_stats *s, G *g) {
    if (g && stats_on()) stats_inc(&s->steals);
    return g;
}

#endif /* HOARE_STATS_H */
