/*
 * stats.c - hoare_stats_read: what monitoring needs, summed from every M's counters (stats.h) and
 * the scheduler's state, without stopping anything.
 */
#include "stats.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proc.h"

HIDDEN struct m_stats hoare__thread_stats;
static hoare_lock thread_parks_lock; /* guards inserting reasons into hoare__thread_stats */

/* Count a park whose reason is not in its home slot: probe the table (the owner is the only
 * writer of an M's table; plain threads share theirs under a lock). */
void hoare__stats_count_park(struct m_stats *s, const char *reason) {
    bool shared = s == &hoare__thread_stats;
    if (shared) hoare__lock(&thread_parks_lock);
    uint32_t h = stats_slot(reason);
    bool counted = false;
    for (uint32_t i = 0; i < STATS_SLOTS && !counted; i++) {
        uint32_t k = (h + i) % STATS_SLOTS;
        const char *r = atomic_load_explicit(&s->parks[k].reason, memory_order_relaxed);
        if (!r) atomic_store_explicit(&s->parks[k].reason, r = reason, memory_order_release);
        if (r == reason) {
            if (shared) atomic_fetch_add_explicit(&s->parks[k].count, 1, memory_order_relaxed);
            else stats_inc(&s->parks[k].count);
            counted = true;
        }
    }
    if (!counted) atomic_fetch_add_explicit(&s->parks_other, 1, memory_order_relaxed);
    if (shared) hoare__unlock(&thread_parks_lock);
}

void hoare__stats_count_wait(struct m_stats *s, int64_t ns) {
    /* bucket 0: under 1 µs; bucket i: [2^(i-1), 2^i) µs; the last one: everything above */
    uint64_t us = ns > 0 ? (uint64_t)ns / 1000 : 0;
    int b = us == 0 ? 0 : 64 - __builtin_clzll(us);
    if (b >= HOARE_STATS_WAIT_BUCKETS) b = HOARE_STATS_WAIT_BUCKETS - 1;
    stats_inc(&s->wait[b]);
}

static void add_reason(hoare_stats *out, const char *reason, uint64_t n) {
    if (!reason || !n) return;
    for (size_t i = 0; i < out->nreasons; i++)
        if (!strcmp(out->parks_by_reason[i].reason, reason)) {
            out->parks_by_reason[i].count += n;
            return;
        }
    if (out->nreasons < HOARE_STATS_REASONS) {
        out->parks_by_reason[out->nreasons].reason = reason;
        out->parks_by_reason[out->nreasons++].count = n;
    }
}

static void add(hoare_stats *out, struct m_stats *s) {
    out->goroutines_created += atomic_load_explicit(&s->created, memory_order_relaxed);
    out->switches += atomic_load_explicit(&s->switches, memory_order_relaxed);
    out->steals += atomic_load_explicit(&s->steals, memory_order_relaxed);
    out->preemptions += atomic_load_explicit(&s->preemptions, memory_order_relaxed);
    out->parks += atomic_load_explicit(&s->parks_other, memory_order_relaxed);
    for (int i = 0; i < STATS_SLOTS; i++) {
        const char *r = atomic_load_explicit(&s->parks[i].reason, memory_order_acquire);
        uint64_t n = atomic_load_explicit(&s->parks[i].count, memory_order_relaxed);
        out->parks += n;
        add_reason(out, r, n);
    }
    for (int i = 0; i < HOARE_STATS_WAIT_BUCKETS; i++)
        out->runq_wait[i] += atomic_load_explicit(&s->wait[i], memory_order_relaxed);
}

/* HOARE_STATS=1: count from the start (called at runtime start). */
void hoare__stats_init(void) {
    if (hoare__env_switch("HOARE_STATS", false)) atomic_fetch_or(&hoare__observe, OBSERVE_STATS);
}

int hoare_stats_read(hoare_stats *out) {
    if (!out) return EINVAL;
    hoare__init();
    if (!(observing() & OBSERVE_STATS)) atomic_fetch_or(&hoare__observe, OBSERVE_STATS);
    memset(out, 0, sizeof *out);
    for (M *m = atomic_load(&hoare__sched.allm); m; m = m->alllink) add(out, &m->stats);
    add(out, &hoare__thread_stats);
    int64_t alive = atomic_load(&hoare__sched.ngoroutines);
    out->goroutines = alive > 0 ? (uint64_t)alive : 0;
    hoare__lock(&hoare__sched.lock);
    out->threads = (uint32_t)hoare__sched.nm;
    out->threads_idle = (uint32_t)hoare__sched.nmidle;
    hoare__unlock(&hoare__sched.lock);
    out->procs = (uint32_t)atomic_load(&hoare__sched.nprocs);
    int32_t idle = atomic_load(&hoare__sched.npidle);
    out->procs_idle = idle > 0 ? (uint32_t)idle : 0;
    return 0;
}
