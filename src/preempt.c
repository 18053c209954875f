/*
 * preempt.c - preemption of goroutines that run too long without yielding. (Placeholder until
 * the signal-based mechanism lands: the check only reports that nothing was done.)
 */
#include "proc.h"

bool hoare__preempt_check(P *p, int64_t now) {
    (void)p;
    (void)now;
    return false;
}
