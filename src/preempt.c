/*
 * preempt.c - preemption of goroutines that run too long without yielding. (Placeholder until
 * the signal-based mechanism lands: the check only reports that nothing was done.)
 */
#include "proc.h"

/* Track time slices: the monitor remembers each P's schedtick and since when it has seen it. */
bool hoare__preempt_check(P *p, int64_t now) {
    uint32_t tick = atomic_load_explicit(&p->schedtick, memory_order_relaxed);
    if (tick != p->monitor_schedtick) {
        p->monitor_schedtick = tick;
        p->monitor_since = now;
    }
    return false;
}
