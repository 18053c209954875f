/*
 * lock.c - the runtime's own thread-level synchronisation: a futex mutex for short critical
 * sections and a one-shot note for putting a thread to sleep (scheduler threads, plain threads that
 * wait on runtime objects). Neither knows about goroutines.
 */
#include "runtime.h"

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static inline void cpu_relax(void) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

HIDDEN _Atomic uint64_t hoare__futex_calls;
HIDDEN RUNTIME_TLS bool hoare__futex_uncounted;

static inline void count_futex_call(void) {
    if (!hoare__futex_uncounted) atomic_fetch_add_explicit(&hoare__futex_calls, 1, memory_order_relaxed);
}

void hoare__futex_wait(_Atomic uint32_t *addr, uint32_t val, int64_t ns) {
    count_futex_call();
    struct timespec ts, *tsp = NULL;
    if (ns >= 0) {
        ts.tv_sec = ns / 1000000000;
        ts.tv_nsec = ns % 1000000000;
        tsp = &ts;
    }
    int saved = errno;
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, val, tsp, NULL, 0);
    errno = saved;
}

void hoare__futex_wake(_Atomic uint32_t *addr, int n) {
    count_futex_call();
    int saved = errno;
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
    errno = saved;
}

/* Spin phase 1 (pause instructions) lasts this long; phase 2 yields the CPU between polls. */
enum { SPIN_PAUSE_NS = 4 * 1000 };

bool hoare__spin_step(hoare_spin *s, int64_t budget_ns) {
    if ((++s->polls & 31) != 0 && s->yielding == 0) {
        cpu_relax();
        return true;
    }
    int64_t now = hoare__nanotime();
    if (!s->start) s->start = now;
    if (now - s->start >= budget_ns) return false;
    if (s->yielding || now - s->start >= SPIN_PAUSE_NS) {
        s->yielding = 1;
        sched_yield();
    } else {
        cpu_relax();
    }
    return true;
}

HIDDEN RUNTIME_TLS uint32_t hoare__locks_held;

/* A contended lock's spin: LOCK_PROBES probes, the pauses between them doubling from
 * LOCK_BACKOFF_MIN up to LOCK_BACKOFF_MAX (8 + 16 + ... + 128 + 11 * 128 = 1,656 pauses in all). */
enum { LOCK_PROBES = 16, LOCK_BACKOFF_MIN = 8, LOCK_BACKOFF_MAX = 128 };
/* A sleeper's longest futex wait before it tries the lock again (see hoare__unlock). */
#define LOCK_SLEEP_NS ((int64_t)1000 * 1000)

/* Classic three-state futex mutex: 0 free, 1 held, 2 held and somebody may sleep. A backed-off spin
 * first: the sections it guards are a few hundred instructions at most.
 * hoare__locks_held covers the whole time the lock is held, and a little more: it goes up before
 * the lock is taken and down after it is released, with signal fences so that the compiler keeps
 * that order. The preemption handler, which runs on this thread, must never see 0 while a runtime
 * lock is held (a goroutine preempted with a lock held stays on this thread; the next one here to
 * take the lock would block the thread for good). The fast paths are in runtime.h. */

/* hoare__lock's first try failed: the lock is held. */
void hoare__lock_contended(hoare_lock *l) {
    /* Probe with exponential backoff (8, 16 ... LOCK_BACKOFF_MAX pauses between probes, about
     * 41 us in all at 25 ns a pause) before sleeping. Every probe pulls the lock's line away from
     * the holder, whose next unlock must fetch it back; probing rarely lets the holder's core run
     * several critical sections in a row without a transfer. mpmc (4 senders and 4 receivers on
     * one channel, 2 cores) went from 110 to 26 ns an item with it; a probe after every pause made
     * the line move on nearly every operation. The first probe waits 8 pauses (200 ns, two
     * transfers of a line between cores): starting at 1 pause, mpmc took 65 ns an item instead of
     * 51 and buffered 41 instead of 36 on a later VM, in alternating runs. */
    uint32_t c = 1;
    for (int probe = 0, pauses = LOCK_BACKOFF_MIN; probe < LOCK_PROBES;
         probe++, pauses = pauses < LOCK_BACKOFF_MAX ? pauses * 2 : LOCK_BACKOFF_MAX) {
        for (int i = 0; i < pauses; i++) cpu_relax();
        c = 0;
        if (atomic_load_explicit(&l->state, memory_order_relaxed) == 0 &&
            atomic_compare_exchange_weak_explicit(&l->state, &c, 1, memory_order_acquire,
                                                  memory_order_relaxed))
            return;
    }
    if (c != 2) c = atomic_exchange_explicit(&l->state, 2, memory_order_acquire);
    while (c != 0) {
        hoare__futex_wait(&l->state, 2, LOCK_SLEEP_NS);
        c = atomic_exchange_explicit(&l->state, 2, memory_order_acquire);
    }
}

bool hoare__trylock(hoare_lock *l) {
    hoare__locks_held++;
    atomic_signal_fence(memory_order_seq_cst);
    uint32_t c = 0;
    if (atomic_compare_exchange_strong_explicit(&l->state, &c, 1, memory_order_acquire,
                                                memory_order_relaxed))
        return true;
    atomic_signal_fence(memory_order_seq_cst);
    hoare__locks_held--;
    return false;
}

/* Unlock is a load and a store, not a read-modify-write: a locked instruction costs 6-9 ns on
 * these VMs, and a goroutine hand-off takes and drops channel locks four times. While the lock is
 * held only a sleeper can change its state, and only from 1 to 2; if that happens between the
 * unlocker's load and its store, the store erases the mark and the sleeper is not woken. Sleepers
 * therefore sleep at most LOCK_SLEEP_NS at a time: a lost wake-up costs that much, on a path that
 * is already past 41 us of spinning. This is the slow path: the load saw 2. */
void hoare__unlock_wake(hoare_lock *l) {
    atomic_store_explicit(&l->state, 0, memory_order_release);
    hoare__futex_wake(&l->state, 1);
}

/* Note: key 0 = not signalled, 1 = signalled. One sleeper, any number of wakers. */
void hoare__note_clear(hoare_note *n) { atomic_store_explicit(&n->key, 0, memory_order_relaxed); }

void hoare__note_wakeup(hoare_note *n) {
    if (atomic_exchange_explicit(&n->key, 1, memory_order_release) == 0)
        hoare__futex_wake(&n->key, 1);
}

bool hoare__note_sleep(hoare_note *n, int64_t ns) {
    int64_t deadline = ns >= 0 ? hoare__nanotime() + ns : 0;
    while (atomic_load_explicit(&n->key, memory_order_acquire) == 0) {
        int64_t left = -1;
        if (ns >= 0) {
            left = deadline - hoare__nanotime();
            if (left <= 0) return false;
        }
        hoare__futex_wait(&n->key, 0, left);
    }
    return true;
}

int64_t hoare__nanotime(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
