/*
 * preempt_lib.c - a shared library for test_preempt: code outside the main executable, where
 * goroutines are never preempted (src/preempt.c; as Go never preempts C code).
 */
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

/* Spin for ns nanoseconds in this library's own code; return how much *counter moved meanwhile. */
__attribute__((visibility("default"))) int preempt_lib_spin(int64_t ns, _Atomic int *counter) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t end = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec + ns;
    int before = atomic_load(counter);
    for (unsigned long i = 1;; i++) {
        if (i % (1u << 16) != 0) continue;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        if ((int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec >= end) break;
    }
    return atomic_load(counter) - before;
}
