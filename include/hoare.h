/*
 * hoare.h - Go's concurrency model for C: goroutines, channels, select, sync, time, I/O.
 *
 * The one public header of libhoare. C11, usable from C++.
 *
 * Conventions
 *  - Calls that can fail return 0 or a positive errno value (I/O calls return a byte count or a
 *    negative errno value, as the kernel does).
 *  - Zero-initialised objects are ready to use; the *_INIT macros are {0} ({} in C++, where {0}
 *    draws missing-initialiser warnings).
 *  - Times and durations are int64_t nanoseconds (HOARE_MS etc.), on the monotonic clock. A
 *    duration whose end would overflow (INT64_MAX) means for ever.
 *  - Every call works from a goroutine and from a plain thread (main() included). The runtime starts
 *    itself on first use. The program ends when main returns, as in Go.
 *  - What Go makes a panic (send on a closed channel, double close) returns EPIPE here. Misuse that
 *    cannot be reported (a negative WaitGroup counter, unlocking an unlocked mutex) is a fatal error
 *    with a message naming the problem.
 *
 * fork(): a child forked once the runtime has started has none of its threads (fork copies only
 * the calling one). As in Go, such a child may only exec or _exit: a hoare call there that would
 * wait, spawn or start the runtime is a fatal error ("... after fork()", exit status 2), never a
 * hang. A program may fork before its first hoare call, or use posix_spawn, freely.
 *
 * Threads and goroutines: goroutines migrate between OS threads. Thread-local storage (_Thread_local,
 * pthread keys) is per thread, not per goroutine: do not keep a pointer to a thread-local variable
 * across a call that may park (any blocking call of this header).
 * errno is saved and restored per goroutine at every switch. But C compilers may keep errno's
 * *address* across a call (glibc declares __errno_location const): a function that used errno
 * before a call that parks (errno = 0; r = hoare_select_timeout(...); if (errno == ETIMEDOUT))
 * may read the errno of the thread it ran on before, if it migrated meanwhile. Decide by the return
 * value where it tells enough, and otherwise read errno in a function of its own (noinline) or
 * one that did not touch errno before the call.
 */
#ifndef HOARE_H
#define HOARE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__cplusplus)
#define HOARE_NORETURN [[noreturn]]
#else
#define HOARE_NORETURN _Noreturn
#endif

/* ======================================================================================
 * Goroutines and the scheduler
 * ====================================================================================== */

/* Attributes of a new goroutine. A zero-initialised hoare_attr means the defaults.
 *
 * stack_size: the usable stack in bytes; 0 = the default (env HOARE_STACK_SIZE: bytes or with a k,
 * m or g suffix, 16 KiB to 1 GiB; else 128 KiB);
 * more than any address space holds (above 2^48) fails with ENOMEM. Stacks cannot grow (C code holds pointers into them): the size is fixed at the start. Sizes from
 * a page up get a slot of their own with a 16 KiB guard below it (virtual memory; only the pages
 * touched are resident: about 4 KiB for a goroutine parked in a shallow call chain). A frame larger
 * than the guard (a big local array, alloca) can step over it into other memory unnoticed: compile
 * code with such frames with -fstack-clash-protection (GCC, clang), which touches each page in
 * turn, so that an overflow always meets the guard.
 * A size below a page (4096) asks for a SMALL STACK: a slot of about stack_size + 272 bytes, several
 * to a page (stack_size = 2048 costs about 2.3 KB per parked goroutine, descriptor included; at
 * least 1024 bytes are given). The trade-off: small stacks have no guard page each. A guard page
 * sits below every group of them (256 KiB), and a canary word below each stack is checked whenever
 * the goroutine switches out (parks, yields, is preempted, exits). An overflow therefore still ends
 * the process with "fatal error: stack overflow in goroutine N (name)" - at the fault, or at the
 * goroutine's next switch - but an overflow that skips over the canary, or that is not followed by
 * a switch, may first have overwritten the goroutine below it in memory. So give small stacks only
 * to goroutines whose deepest call chain is known and short: the stack must hold your frames plus
 * the runtime's below each hoare call (a few hundred bytes; creating threads and reports run on
 * the scheduler's stack instead). Do not call stdio, getaddrinfo or other deep C library code
 * there, nor throw C++ exceptions (the unwinder's frames take several KiB: under valgrind a
 * 2048-byte goroutine that throws shows them reaching below its stack). Link with -Wl,-z,now (`pkg-config --libs hoare` and the CMake package add it): a lazily
 * bound function is resolved at its first call on the caller's stack, and the dynamic linker saves
 * the vector registers there (2.7 KB with AVX-512), more than a small stack holds; the same goes for
 * libraries a small-stack goroutine calls into that were loaded with dlopen(RTLD_LAZY).
 * Preemption signals do not use a goroutine's stack (on Linux 4.7+). Under AddressSanitizer
 * small stacks get four times the size asked, under ThreadSanitizer eight (their frames and
 * runtimes need it). Free small slots keep their memory (they share
 * pages); free slots of page size and more give their pages back after about two seconds unused. */
typedef struct hoare_attr {
    size_t stack_size; /* usable stack bytes; 0 = default; below 4096: a small stack (see above) */
    const char *name;  /* shown in dumps and deadlock reports; copied (first 31 bytes) */
} hoare_attr;

/* Run fn(argc, argv) as the main goroutine and return its value: the idiomatic form of a program is
 *
 *     static int app(int argc, char **argv) { ... }
 *     int main(int argc, char **argv) { return hoare_main(app, argc, argv); }
 *
 * As in Go, the program's main logic is then a goroutine: its sends, receives and spawns hand off
 * to other goroutines at goroutine speed (a plain thread's cannot: see "Plain threads" below). The
 * main goroutine is named "main" in dumps and traces; its stack is as large as the process's
 * main-thread stack limit (RLIMIT_STACK, 8 MiB when unlimited), committed lazily. hoare_main returns
 * as soon as fn returns, even while other goroutines still run; returning from main() then ends
 * the program, as in Go. Meanwhile the calling thread waits like any plain thread (below): it may
 * run goroutines for a moment, then sleeps without using CPU.
 * A deadlock inside fn is reported like any other ("all goroutines are asleep", status 2).
 * hoare_exit in fn is Go's Goexit in main: hoare_main never returns, the other goroutines go on,
 * and once none is left the program ends with "no goroutines (main called hoare_exit)" (status 2).
 * Called from a goroutine it is a fatal error (call fn directly there); fn NULL is a fatal error.
 * It may be called again, or from several plain threads at once: each call runs its own main
 * goroutine. */
int hoare_main(int (*fn)(int argc, char **argv), int argc, char **argv);

/* Plain threads: every call of this header works from threads the runtime did not start (main()
 * without hoare_main, thread pools, callbacks from C libraries). The goroutines a plain thread
 * readies or spawns go to a processor it keeps between calls, and a thread that must wait first
 * runs them itself - the one it just handed a value to, first - so that a hand-off between it and
 * a goroutine costs what one between goroutines does. It returns once its wait is over (a goroutine
 * that does not yield is preempted for that; one that disabled preemption and never yields keeps
 * it). With nothing of its own to run, it spins for a few tens of microseconds (keeping its
 * processor), then gives the processor to a scheduler thread and sleeps in the kernel, costing no
 * CPU however long it waits; a wait spent running goroutines for over a millisecond hands the
 * processor on too. A thread spawning faster than its goroutines start runs some of them before
 * hoare_go returns (for at most about 50 us). What this means for the thread:
 *  - its errno is its own again after every call;
 *  - it gets the runtime's alternate signal stack in place of any it had (its own comes back when
 *    it exits): goroutines' preemption uses it;
 *  - SIGURG, the preemption signal (as in Go), is unblocked in it if it was blocked (blocked again
 *    when it exits): a thread that blocks every signal would otherwise run a goroutine that never
 *    yields for good. Do not block SIGURG again in a thread that has waited in hoare;
 *  - its signal handlers may run while one of the runtime's goroutines (not one with a sub-page
 *    stack) runs on it, on that goroutine's stack;
 *  - the goroutines it runs meanwhile run on this OS thread: one that takes a lock the thread holds
 *    while it waits (a pthread mutex, a file lock) finds it held by its own thread - a normal
 *    mutex then deadlocks, a recursive one lets it in. Do not wait (nor call hoare_go) while
 *    holding such a lock that goroutines take, or set HOARE_LEND=0.
 * With HOARE_LEND=0 in the environment, or without preemption (TSan, valgrind, HOARE_PREEMPT=0),
 * a waiting plain thread only spins for a few tens of microseconds and then sleeps, and what it
 * readies or spawns goes to the global run queue. */

/* Start fn(arg) as a goroutine. 0, or EAGAIN/ENOMEM when none can be created (the runtime stays
 * usable), EINVAL when fn is NULL. */
int hoare_go(void (*fn)(void *), void *arg);
/* Same, with attributes (a may be NULL). */
int hoare_go_with(const hoare_attr *a, void (*fn)(void *), void *arg);
/* Gosched: let other goroutines run. On a plain thread: sched_yield(). */
void hoare_yield(void);
/* Goexit: end the calling goroutine. On a plain thread: pthread_exit(NULL). */
HOARE_NORETURN void hoare_exit(void);
/* The calling goroutine's id (> 0, unique for the life of the process); 0 on a plain thread. */
uint64_t hoare_id(void);
/* GOMAXPROCS. n > 0 sets it (at any time) and returns the previous value; n <= 0 only reads.
 * Default: the CPUs this process may use (affinity mask and cgroup CPU quota); env HOARE_PROCS
 * overrides. At most HOARE_MAX_PROCS. */
#define HOARE_MAX_PROCS 256
int hoare_procs(int n);
/* Goroutines alive now (started and not yet returned). */
size_t hoare_count(void);

/* Preemption: a goroutine that runs over 10 ms without yielding is switched out at the next
 * safe point (in the program's own code, the main executable: never inside a shared library - the
 * C library, OpenSSL... - nor the runtime, as Go never preempts C code) so that others run, and
 * resumes later on the same thread. Code that must not be switched out while it runs -
 * e.g. it holds a pthread mutex that other goroutines take - brackets itself with these (they nest).
 * HOARE_PREEMPT=0 turns preemption off.
 * The runtime asks with a signal (SIGURG, as Go 1.14+; its handler is SA_RESTART): system calls a
 * goroutine makes directly (outside hoare_blocking_begin/end) may return EINTR while other
 * goroutines wait for its processor, above all sleeps and waits the kernel never restarts
 * (nanosleep/usleep, poll, select, epoll_wait, sem_wait...): retry them, or use the hoare
 * equivalents (hoare_sleep, hoare_fd_*, channels), which park the goroutine instead. */
void hoare_preempt_disable(void);
void hoare_preempt_enable(void);

/* ======================================================================================
 * Diagnostics
 * ====================================================================================== */

/* Write every goroutine with its traceback, Go style (see Tracebacks below), the caller first, to
 * the file descriptor fd. Safe to call at any time. It writes with write(2) on the calling thread,
 * as Go's runtime prints: into a pipe, a dump longer than the pipe's buffer (64 KiB on Linux)
 * blocks the thread until somebody reads, so read it on another thread (or from a goroutine on
 * another processor), or dump into a file. Concurrent dumps are written one after the other.
 * Goroutines keep running meanwhile: one that runs again while its stack is being read is listed
 * without frames. */
void hoare_dump(int fd);
/* Deadlock detection: when every goroutine is asleep on a runtime object (no timer, no I/O wait, no
 * goroutine runnable) and every other thread of the process is too, the runtime prints
 * "fatal error: all goroutines are asleep - deadlock!" and the goroutine list to stderr and exits
 * with status 2, as Go does. Env HOARE_DEADLOCK=0 turns it off. */

/* Tracebacks: hoare_dump, deadlock reports and fatal errors list every goroutine in Go's layout:
 *   goroutine 7 [chan receive]:
 *   	name worker                      (when it has one)
 *   leaf(...)                          (innermost frame first; inlined calls are frames too)
 *   	/src/prog.c:12 +0x1f             (file:line, or module+0xoffset without debug information)
 *   created by main in goroutine 2
 *   	/src/prog.c:30 +0x47
 * A goroutine running on another thread says so. Frames and source lines need libdw (elfutils) at
 * build time and the program built with -g; without libdw addresses print as module+0xoffset.
 * Signals, as Go: SIGQUIT (if the program left it at its default) prints every goroutine and exits
 * with status 2. SIGSEGV (other than a stack overflow), SIGBUS, SIGFPE, SIGILL or SIGABRT in a
 * goroutine prints the signal, the faulting address, that goroutine and every other one, and the
 * process then dies of the signal. Env HOARE_TRACEBACK=crash: fatal errors and SIGQUIT abort (a core
 * dump) instead of exiting with status 2. */

/* Execution traces in the Trace Event Format (JSON: open in https://ui.perfetto.dev or
 * chrome://tracing): one track per thread with a slice per goroutine run (named by the goroutine's
 * name, else "goroutine N"); create, block (with the reason), unblock, exit, preempt, steal,
 * proc start/stop and handoff events; blocking regions; flow arrows from creator or unblocker.
 * Env HOARE_TRACE=<file> traces the whole run (the file is complete when main returns or exit is
 * called). start: 0, EBADF (fd not open), EBUSY (a trace is running). stop: 0, EINVAL (no trace
 * running), or the first error writing to fd (which stays open: the caller closes it).
 * While tracing is off each event costs one predictable branch; while on, each thread buffers
 * its events (bounded memory) and writes them in batches. */
int hoare_trace_start(int fd);
int hoare_trace_stop(void);

/* Runtime statistics, read while the program runs (no stop-the-world; a snapshot). The counters
 * (goroutines_created, switches, steals, preemptions, parks, runq_wait) count from the first call
 * of hoare_stats_read, or from the start with env HOARE_STATS=1; until then counting costs one
 * predictable branch per event. */
#define HOARE_STATS_REASONS 24
#define HOARE_STATS_WAIT_BUCKETS 24
typedef struct hoare_stats {
    uint64_t goroutines;         /* alive now */
    uint64_t goroutines_created; /* since counting began (see above) */
    uint32_t threads;            /* scheduler threads (Go's Ms) */
    uint32_t threads_idle;       /* ...of them idle */
    uint32_t procs;              /* hoare_procs() */
    uint32_t procs_idle;         /* processors without a thread */
    uint64_t switches;           /* times a goroutine started or resumed running on a thread */
    uint64_t steals;             /* successful steals from another processor's queue */
    uint64_t preemptions;        /* goroutines switched out by asynchronous preemption */
    uint64_t parks;              /* goroutines and threads that parked, in total */
    size_t nreasons;             /* entries used in parks_by_reason */
    struct {
        const char *reason;      /* Go's wait reason ("chan receive", "sleep", ...) */
        uint64_t count;
    } parks_by_reason[HOARE_STATS_REASONS];
    /* How long runnable goroutines waited before running (1 in 8 readies and spawns is timed): runq_wait[0] counts waits under 1 us, runq_wait[i] waits in
     * [2^(i-1), 2^i) us, the last bucket everything longer. */
    uint64_t runq_wait[HOARE_STATS_WAIT_BUCKETS];
} hoare_stats;
/* Fill *s: 0, or EINVAL for NULL. */
int hoare_stats_read(hoare_stats *s);

/* ======================================================================================
 * Channels and select
 * ====================================================================================== */

typedef struct hoare_chan hoare_chan;

/* A channel of elements of elem_size bytes (0 allowed: signal channels) and capacity cap
 * (0: unbuffered). NULL with errno EINVAL (elem_size above 64 KiB, or cap * elem_size too large) or
 * ENOMEM. The caller owns one reference. */
hoare_chan *hoare_chan_make(size_t elem_size, size_t cap);
/* Reference counting: make returns one reference; the channel is freed when the last is released.
 * retain returns c (NULL stays NULL). Releasing a channel does not close it. A select blocked on
 * the channel keeps it alive until the select returns. A send or receive blocked on a channel
 * whose last reference is released stays blocked for ever (nobody can reach the channel any more,
 * like a goroutine blocked on an unreachable channel in Go).
 * Releasing more references than were held is a fatal error (when it can be detected). */
hoare_chan *hoare_chan_retain(hoare_chan *c);
void hoare_chan_release(hoare_chan *c);

/* Send *elem (elem_size bytes copied). 0 delivered; EPIPE: closed before or while waiting, not
 * delivered; EINVAL: elem NULL with elem_size > 0. c == NULL blocks forever. */
int hoare_send(hoare_chan *c, const void *elem);
/* Receive into *elem (may be NULL to discard). 0 received; EPIPE: closed and drained, *elem
 * zero-filled. c == NULL blocks forever. */
int hoare_recv(hoare_chan *c, void *elem);
/* Non-blocking forms: EAGAIN instead of blocking (also for c == NULL). Never park: callable from
 * anywhere, runtime timer callbacks included. */
int hoare_trysend(hoare_chan *c, const void *elem);
int hoare_tryrecv(hoare_chan *c, void *elem);
/* Close: 0; EPIPE if already closed; EINVAL for NULL. Wakes every waiter: receivers drain what is
 * buffered then get EPIPE, blocked senders get EPIPE. */
int hoare_close(hoare_chan *c);
/* Buffered elements now, and capacity; 0 for NULL. */
size_t hoare_len(const hoare_chan *c);
size_t hoare_cap(const hoare_chan *c);

/* One case of a select. Build with HOARE_RECV / HOARE_SEND (usable in array initialisers). The
 * same channel may appear in several cases. */
enum { HOARE_CASE_RECV = 1, HOARE_CASE_SEND = 2 };
typedef struct hoare_case {
    hoare_chan *chan; /* NULL: the case never proceeds */
    void *elem;       /* receive: where to store (may be NULL); send: what to send */
    int dir;          /* HOARE_CASE_RECV or HOARE_CASE_SEND */
    int err;          /* out: 0, or EPIPE (receive: closed and drained; send: closed, not sent) */
} hoare_case;
#define HOARE_RECV(c, p) { (c), (void *)(p), HOARE_CASE_RECV, 0 }
#define HOARE_SEND(c, p) { (c), (void *)(p), HOARE_CASE_SEND, 0 }

/* Block until one case proceeds; return its index i (cs[i].err says how; other cases are left as
 * they were). Among ready cases the choice is uniformly random. n == 0 blocks forever.
 * -1 with errno EINVAL for a malformed select (cs NULL with n > 0, more than 65536 cases, dir not
 * RECV/SEND, a send case with elem NULL on a channel with elem_size > 0), ENOMEM (more than 16
 * cases need scratch memory). */
int hoare_select(hoare_case *cs, size_t n);
/* -1 with errno EAGAIN when no case can proceed now (Go's default case). */
int hoare_select_try(hoare_case *cs, size_t n);
/* -1 with errno ETIMEDOUT when ns nanoseconds pass before a case proceeds (ns <= 0: as
 * hoare_select_try). */
int hoare_select_timeout(hoare_case *cs, size_t n, int64_t ns);

/* Typed conveniences (GNU C / C23 typeof). HOARE_SEND_V(c, 42) sends a value; the value's size
 * must equal the channel's element size, else EINVAL. HOARE_RECV_V(c, &x) likewise. */
int hoare_send_sized(hoare_chan *c, const void *elem, size_t elem_size);
int hoare_recv_sized(hoare_chan *c, void *elem, size_t elem_size);
#if !defined(__cplusplus)
/* (T[1]){v} rather than &(T){v}: a one-element array accepts a struct value as its initialiser. */
#define HOARE_SEND_V(c, v) hoare_send_sized((c), (__typeof__(v)[1]){(v)}, sizeof(v))
#define HOARE_RECV_V(c, p) hoare_recv_sized((c), (p), sizeof *(p))
/* A typed channel: HOARE_CHAN(int) ch = HOARE_CHAN_MAKE(int, 16); HOARE_CHAN_SEND(ch, 7);
 * int x; HOARE_CHAN_RECV(ch, &x); the compiler checks the element type. */
#define HOARE_CHAN(T) struct { hoare_chan *raw; T *elem_type; }
#define HOARE_CHAN_MAKE(T, cap) { hoare_chan_make(sizeof(T), (cap)), (T *)0 }
#define HOARE_CHAN_SEND(ch, v) hoare_send((ch).raw, (__typeof__(*(ch).elem_type)[1]){(v)})
#define HOARE_CHAN_RECV(ch, p) hoare_recv((ch).raw, (1 ? (p) : (ch).elem_type))
#endif

/* ======================================================================================
 * Time
 * ====================================================================================== */

#define HOARE_US INT64_C(1000)
#define HOARE_MS INT64_C(1000000)
#define HOARE_SEC INT64_C(1000000000)

/* Monotonic nanoseconds. */
int64_t hoare_now(void);
/* Park the goroutine for ns nanoseconds (on a plain thread: sleep the thread). ns <= 0 returns. */
void hoare_sleep(int64_t ns);
/* A capacity-1 channel of int64_t that receives hoare_now() once, ns from now. The caller owns the
 * channel and releases it, also before it fires (the pending timer is then stopped and freed). */
hoare_chan *hoare_after(int64_t ns);

/* Go's time.Ticker: a channel (capacity 1, int64_t) that receives hoare_now() every period; ticks a
 * slow reader misses are dropped. NULL with errno EINVAL (period <= 0) or ENOMEM. reset: the next
 * tick comes a new period from now, and no stale tick is received after it returns (Go 1.23); 0,
 * or EINVAL (period <= 0, or t NULL). stop frees the ticker and drops its reference to the channel
 * (retain the channel first to keep using it). */
typedef struct hoare_ticker hoare_ticker;
hoare_ticker *hoare_ticker_start(int64_t period);
hoare_chan *hoare_ticker_chan(hoare_ticker *t);
int hoare_ticker_reset(hoare_ticker *t, int64_t period);
void hoare_ticker_stop(hoare_ticker *t);

/* Go's time.Timer: a channel (capacity 1, int64_t) that receives hoare_now() once, ns from now.
 * stop returns 1 if it stopped the timer before it fired, 0 if it had fired or was stopped.
 * reset re-arms it for ns from now (returns as stop would have). As in Go 1.23, after stop or
 * reset returns no stale value is received: a fired value not yet taken is discarded. Stop and
 * reset may be called from several goroutines and threads at once. free stops
 * it and drops its reference to the channel (retain the channel first to keep using it). NULL
 * with errno ENOMEM. Using a timer (or ticker) after its free (stop) is a fatal error when it can be
 * detected. */
typedef struct hoare_timer hoare_timer;
hoare_timer *hoare_timer_start(int64_t ns);
hoare_chan *hoare_timer_chan(hoare_timer *t);
int hoare_timer_stop(hoare_timer *t);
int hoare_timer_reset(hoare_timer *t, int64_t ns);
void hoare_timer_free(hoare_timer *t);

/* ======================================================================================
 * Sync: mutex, rwmutex, wait group, once, cond, weighted semaphore
 * All park goroutines (not threads) and also work from plain threads, mixed on one object. Zero
 * value ready to use (except hoare_sem: hoare_sem_init). The fields are private. Free an object only
 * once no call on it can still be running (as in C generally: e.g. after its last unlock returned).
 * ====================================================================================== */

/* The *_INIT macros: all zero. */
#ifdef __cplusplus
#define HOARE_ZERO_INIT_ {}
#else
#define HOARE_ZERO_INIT_ {0}
#endif

/* Mutual exclusion lock (Go's sync.Mutex). Uncontended lock and unlock are one atomic operation
 * each. Fair in the end: a waiter that waited more than 1 ms switches the mutex to hand-off mode,
 * where unlock passes it straight to the longest waiter. Not recursive. */
typedef struct hoare_mutex {
    int32_t state;
    uint32_t sema;
} hoare_mutex;
#define HOARE_MUTEX_INIT HOARE_ZERO_INIT_
/* Lock, parking the caller while another holds it. */
void hoare_mutex_lock(hoare_mutex *mu);
/* 0 (now locked by the caller), or EBUSY when the mutex is held (or being handed off). */
int hoare_mutex_trylock(hoare_mutex *mu);
/* Fatal error "sync: unlock of unlocked mutex" if the mutex is not locked. May be unlocked by
 * another goroutine or thread than the one that locked it. */
void hoare_mutex_unlock(hoare_mutex *mu);

/* Readers-writer lock (Go's sync.RWMutex): many readers or one writer. A writer waiting in lock
 * holds back new readers, so that readers cannot starve it. Not recursive for readers either
 * (rlock while a writer waits would deadlock). */
typedef struct hoare_rwmutex {
    hoare_mutex w;
    uint32_t writer_sem;
    uint32_t reader_sem;
    int32_t reader_count;
    int32_t reader_wait;
} hoare_rwmutex;
#define HOARE_RWMUTEX_INIT HOARE_ZERO_INIT_
/* Lock for reading: waits while a writer holds the lock or waits for it. */
void hoare_rwmutex_rlock(hoare_rwmutex *rw);
/* 0, or EBUSY when a writer holds it or waits for it. */
int hoare_rwmutex_tryrlock(hoare_rwmutex *rw);
/* Fatal error "sync: RUnlock of unlocked RWMutex" without a read lock held. */
void hoare_rwmutex_runlock(hoare_rwmutex *rw);
/* Lock for writing: waits for the readers inside to leave and for other writers. */
void hoare_rwmutex_lock(hoare_rwmutex *rw);
/* 0, or EBUSY when it is held (by readers or a writer). */
int hoare_rwmutex_trylock(hoare_rwmutex *rw);
/* Fatal error "sync: Unlock of unlocked RWMutex" without the write lock held. */
void hoare_rwmutex_unlock(hoare_rwmutex *rw);

/* WaitGroup (Go's sync.WaitGroup): add(n) before starting n tasks, done() at the end of each,
 * wait() until the counter is 0. A negative counter is a fatal error "sync: negative WaitGroup
 * counter"; so is add with a positive delta from 0 while a wait is still returning. With several
 * waiters, free it only after all of them returned. */
typedef struct hoare_wg {
    uint64_t state; /* high 32 bits: counter, low 32 bits: waiters */
    uint32_t sema;
} hoare_wg;
#define HOARE_WG_INIT HOARE_ZERO_INIT_
/* Add delta (may be negative) to the counter; at 0, every waiter is released. */
void hoare_wg_add(hoare_wg *wg, int delta);
/* add(-1) */
void hoare_wg_done(hoare_wg *wg);
/* Return when the counter is 0 (at once if it is). */
void hoare_wg_wait(hoare_wg *wg);

/* fn(arg) runs exactly once, by the first caller; every caller returns after it finished (and sees
 * its effects). fn must return (not hoare_exit) and must not call hoare_once_do on the same once. */
typedef struct hoare_once {
    uint32_t done;
    hoare_mutex mu;
} hoare_once;
#define HOARE_ONCE_INIT HOARE_ZERO_INIT_
/* Run fn(arg) if no call on this once has run it yet; wait for it if another caller runs it.
 * fn NULL is a fatal error. */
void hoare_once_do(hoare_once *once, void (*fn)(void *), void *arg);

/* Condition variable used with a hoare_mutex (Go's sync.Cond). Wakeups are in wait order; a waiter
 * may not assume its condition holds when it wakes (check it in a loop). */
typedef struct hoare_cond {
    uint32_t wait_ticket;
    uint32_t notify_ticket;
    void *head;
    void *tail;
    uint32_t lock;
} hoare_cond;
#define HOARE_COND_INIT HOARE_ZERO_INIT_
/* mu must be locked by the caller: unlocks mu, parks until signalled, relocks mu. */
void hoare_cond_wait(hoare_cond *cv, hoare_mutex *mu);
/* Wake the longest waiter, if any. The mutex need not be held. */
void hoare_cond_signal(hoare_cond *cv);
/* Wake every waiter. */
void hoare_cond_broadcast(hoare_cond *cv);

/* Weighted semaphore (Go's x/sync/semaphore): FIFO, a large waiter holds back later small ones.
 * Zero value has size 0: call hoare_sem_init first (not while it is in use). */
typedef struct hoare_sem {
    int64_t size;
    int64_t cur;
    uint32_t lock;
    void *head;
    void *tail;
} hoare_sem;
/* Capacity size (negative: 0), nothing acquired. */
void hoare_sem_init(hoare_sem *s, int64_t size);
/* Acquire n, waiting as long as needed: 0; EINVAL if n < 0 or n > size (would never succeed). */
int hoare_sem_acquire(hoare_sem *s, int64_t n);
/* Same, but give up when ctx (NULL: background) is cancelled: then nothing is acquired and the
 * context's error (ECANCELED/ETIMEDOUT) is returned, also if it was cancelled before the call. */
struct hoare_ctx; /* see Cancellation below */
int hoare_sem_acquire_ctx(hoare_sem *s, struct hoare_ctx *ctx, int64_t n);
/* 0, or EAGAIN when n is not available now (or others wait before), EINVAL if n < 0. */
int hoare_sem_tryacquire(hoare_sem *s, int64_t n);
/* Give back n, waking waiters that now fit, in order. Releasing more than held is a fatal error
 * "semaphore: released more than held". */
void hoare_sem_release(hoare_sem *s, int64_t n);

/* ======================================================================================
 * Cancellation (Go's context) and goroutine groups (Go's errgroup)
 * ====================================================================================== */

/* A context carries a cancellation signal and a deadline down a tree of calls and goroutines.
 * Cancelling a context cancels all contexts derived from it, with the same error. Thread-safe. */
typedef struct hoare_ctx hoare_ctx;
/* The root context: never cancelled, no deadline. Not to be released (releasing it does nothing).
 * NULL is accepted wherever a context is, and means background. */
hoare_ctx *hoare_ctx_background(void);
/* Child contexts; parent NULL means background. Each returns a new reference (NULL with errno ENOMEM).
 * A child is cancelled when its parent is (with the parent's error), when hoare_ctx_cancel is
 * called, or at its deadline (ETIMEDOUT). A child of a cancelled parent is born cancelled. */
hoare_ctx *hoare_ctx_with_cancel(hoare_ctx *parent);
/* The child's deadline is min(deadline, the parent's deadline); one already past gives a context
 * born cancelled with ETIMEDOUT. */
hoare_ctx *hoare_ctx_with_deadline(hoare_ctx *parent, int64_t deadline /* hoare_now() clock */);
/* with_deadline(parent, hoare_now() + ns). */
hoare_ctx *hoare_ctx_with_timeout(hoare_ctx *parent, int64_t ns);
/* Cancel with ECANCELED (no effect if already cancelled). Go's cancel func. */
void hoare_ctx_cancel(hoare_ctx *ctx);
/* A channel (elem size 0) closed when ctx is cancelled; owned by ctx (valid until its release).
 * Receive from it, or use it in a select, to wait for cancellation.
 * NULL for the background context (never closes, as in Go). */
hoare_chan *hoare_ctx_done(hoare_ctx *ctx);
/* 0 while not cancelled; then ECANCELED or ETIMEDOUT (deadline passed). Once the done channel is
 * closed, err is already set. */
int hoare_ctx_err(const hoare_ctx *ctx);
/* The deadline, or INT64_MAX if none. */
int64_t hoare_ctx_deadline(const hoare_ctx *ctx);
/* Add a reference (for another owner, e.g. a goroutine that outlives the creator); returns ctx. */
hoare_ctx *hoare_ctx_retain(hoare_ctx *ctx);
/* Drop a reference (releasing more than were held is a fatal error when it can be detected).
 * Releasing the last reference also cancels the context (like calling Go's
 * cancel func) and frees it, so that its resources and its children are let go. With a single
 * owner, release is Go's `defer cancel()`; to cancel while others still hold references, call
 * hoare_ctx_cancel. */
void hoare_ctx_release(hoare_ctx *ctx);

/* A group of goroutines working on one task: the first to return an error cancels the group's
 * context; wait waits for all and returns that first error (0 if none). */
typedef struct hoare_group hoare_group;
/* parent NULL means background. NULL with errno ENOMEM. */
hoare_group *hoare_group_new(hoare_ctx *parent);
/* The group's context (owned by the group, a child of parent): pass it to the goroutines. It is
 * cancelled by the first error and when wait returns. */
hoare_ctx *hoare_group_ctx(hoare_group *g);
/* Start fn(ctx, arg) in a new goroutine: 0, EINVAL (fn NULL), ENOMEM, or the error of hoare_go.
 * fn returns 0 or an error value. */
int hoare_group_go(hoare_group *g, int (*fn)(hoare_ctx *ctx, void *arg), void *arg);
/* Limit active goroutines (Go's SetLimit); hoare_group_go then waits for a slot. n <= 0: no limit.
 * Changing the limit while goroutines of the group are active is a fatal error. */
void hoare_group_set_limit(hoare_group *g, int n);
/* Wait for every goroutine started so far, cancel the group's context, return the first error. */
int hoare_group_wait(hoare_group *g);
/* Wait for the group's goroutines (as wait does), then free the group and its context (g NULL:
 * nothing). */
void hoare_group_free(hoare_group *g);

/* ======================================================================================
 * I/O that parks the goroutine, not the thread
 * Descriptors used with these calls are switched to non-blocking mode (which the open file shares
 * with its duplicates and with other processes) and registered with the poller on first use.
 * Close them with hoare_fd_close, never close(2): the poller would go on believing the number is
 * registered, and a descriptor that later gets the same number would inherit that state: not
 * watched by the poller, not made non-blocking, under the old descriptor's deadlines. Its calls
 * could then block the thread (no deadline interrupts that), wait for readiness that is never
 * reported (until a deadline, if any), or fail at once with the old expired deadline's -ETIMEDOUT.
 * Descriptors the poller refuses (regular files) are read and written through io_uring
 * where the kernel allows it (the goroutine parks), else with ordinary blocking calls inside a
 * blocking region: see hoare_file_io.
 * Writes never raise SIGPIPE (EPIPE is returned): sockets are written with MSG_NOSIGNAL; for pipes
 * SIGPIPE is blocked in the writing thread around the write and a SIGPIPE it caused is discarded.
 * From a plain thread the calls block the thread (it waits for the poller like a goroutine does).
 * Two goroutines may read (or write) one descriptor at once: they take turns, each call is whole.
 * Out of descriptors when the poller is first needed: the calls return -EMFILE (or -ENFILE,
 * -ENOMEM) until it can be created.
 * Return: bytes (>= 0) or a negative errno value: -ETIMEDOUT at the deadline, -EBADF once
 * hoare_fd_close was called (also for calls waiting at that moment), -EPIPE/-ECONNRESET from the
 * peer.
 * ====================================================================================== */

struct iovec;

ssize_t hoare_fd_read(int fd, void *buf, size_t len);
/* Reads into the first IOV_MAX (1024) buffers at most: iovcnt may be larger, the read is shorter. */
ssize_t hoare_fd_readv(int fd, const struct iovec *iov, int iovcnt);
/* Writes all of buf unless an error or the deadline stops it; returns what was written if > 0
 * (then the error is reported by the next call). */
ssize_t hoare_fd_write(int fd, const void *buf, size_t len);
/* As hoare_fd_write, all iovcnt buffers, which may be more than IOV_MAX (1024): they go out in
 * system calls of IOV_MAX at most, as Go's writev. Except on a datagram socket, where one call is
 * one datagram: more than IOV_MAX buffers are -EMSGSIZE there. */
ssize_t hoare_fd_writev(int fd, const struct iovec *iov, int iovcnt);
/* A connected socket (non-blocking, close-on-exec, registered; TCP_NODELAY for TCP, as Go), or a
 * negative errno value. Waits under the read deadline of fd. */
int hoare_fd_accept(int fd, void *addr /* struct sockaddr * or NULL */, void *addrlen /* socklen_t * */);
/* 0 or a negative errno value. Waits under the write deadline of fd. */
int hoare_fd_connect(int fd, const void *addr /* struct sockaddr * */, unsigned addrlen);
/* Wait until fd is readable (events 1), writable (2) or either (3): 0 or a negative errno value.
 * Level-triggered: returns at once if fd is ready now (hang-up and error count as ready). Honours
 * the read deadline for 1, the write deadline for 2, both for 3. */
int hoare_fd_wait(int fd, int events);
/* Go's SetDeadline / SetReadDeadline / SetWriteDeadline: absolute hoare_now() time, 0 = none; a
 * time already past makes waiting calls return -ETIMEDOUT at once. 0 or an errno value (EBADF). */
int hoare_fd_set_deadline(int fd, int64_t deadline);
int hoare_fd_set_read_deadline(int fd, int64_t deadline);
int hoare_fd_set_write_deadline(int fd, int64_t deadline);
/* Deregister, wake waiters (they get -EBADF), close. 0 or an errno value (EBADF when already
 * closing). Calls in progress on fd end with -EBADF; the descriptor number is released (close(2))
 * when the last of them returns, so it is never reused under a running call. */
int hoare_fd_close(int fd);

/* Networks: "tcp", "tcp4", "tcp6", "udp", "udp4", "udp6" (see Datagrams below), "unix".
 * Addresses: "host:port", "[::1]:port", "[fe80::1%eth0]:port" (a zone: an interface name or
 * index), ":port", or a path for "unix" ("@name": Linux abstract socket). A port is a decimal
 * number 0-65535 (a sign allowed, as in Go: "+80") or a service name of /etc/services ("http").
 * Return a descriptor (>= 0, registered, usable with the calls above) or a negative errno value
 * (-EINVAL malformed address - a bad port or an unknown service too - or unknown network, -ENOENT
 * unknown host, -EAFNOSUPPORT address of the wrong family for the network). Host
 * names are resolved as hoare_net_lookup does; the dial's timeout bounds the lookup too.
 * listen: SO_REUSEADDR; ":port" (empty host) listens on all addresses, for "tcp" on IPv6 and IPv4
 * (dual stack) where possible; port 0 picks a free port (getsockname tells which); the listen
 * backlog is the system's maximum. A unix socket's path is not removed at close.
 * dial: TCP_NODELAY; an empty host dials the local system; each address of the host is tried in
 * turn until one connects or the timeout passes (-ETIMEDOUT). */
int hoare_net_listen(const char *network, const char *address);
int hoare_net_dial(const char *network, const char *address, int64_t timeout_ns /* 0: none */);

/* ======================================================================================
 * Datagrams, positioned file I/O, name lookup
 * ====================================================================================== */

/* Datagram sockets: hoare_net_listen("udp" | "udp4" | "udp6", "host:port") returns a bound socket
 * (":port": all addresses, dual stack for "udp"); hoare_net_dial("udp", "host:port", timeout) a
 * connected one, on which hoare_fd_read/hoare_fd_write move one datagram each (an empty write
 * sends an empty datagram; a read returns 0 for an empty one, and a datagram longer than the
 * buffer is truncated, as recv(2) does).
 * recvfrom: one datagram, its sender in addr (struct sockaddr *, NULL: not wanted) and *addrlen
 * (socklen_t *, in: the capacity of addr). Waits under the read deadline. */
ssize_t hoare_fd_recvfrom(int fd, void *buf, size_t len, void *addr /* struct sockaddr * or NULL */,
                          void *addrlen /* socklen_t * */);
/* One datagram to addr (struct sockaddr *, addrlen bytes; NULL/0 on a connected socket). Returns
 * len or a negative errno value (-EMSGSIZE: too big for one datagram). Waits under the write
 * deadline. */
ssize_t hoare_fd_sendto(int fd, const void *buf, size_t len, const void *addr, unsigned addrlen);
/* recvmsg(2)/sendmsg(2) (ancillary data, scatter/gather, descriptor passing), flags must be 0;
 * waiting and deadlines as above. */
struct msghdr;
ssize_t hoare_fd_recvmsg(int fd, struct msghdr *msg, int flags);
ssize_t hoare_fd_sendmsg(int fd, const struct msghdr *msg, int flags);

/* pread(2)/pwrite(2): at offset, without moving the file position; callers need not take turns
 * (unlike hoare_fd_read), and deadlines do not apply (as Go's ReadAt/WriteAt). pwrite writes all
 * of buf unless an error stops it (then the count if > 0). On a regular file, see hoare_file_io for
 * how the goroutine waits. -ESPIPE on a pipe or a socket, -EINVAL for a negative offset. */
ssize_t hoare_fd_pread(int fd, void *buf, size_t count, off_t offset);
ssize_t hoare_fd_pwrite(int fd, const void *buf, size_t count, off_t offset);

/* How hoare_fd_read/write/readv/writev/pread/pwrite wait for regular files from goroutines:
 * "io_uring" (the goroutine parks while the kernel works; kernel worker threads "iou-wrk-*" may
 * do blocking work, at most 16) or "blocking" (the call blocks its thread inside a blocking region,
 * and the processor moves to another thread). "blocking" without liburing at build time, where
 * the kernel refuses io_uring (old kernel, seccomp, kernel.io_uring_disabled), under valgrind, or
 * with HOARE_IO_URING=0. Plain threads always make the blocking call. */
const char *hoare_file_io(void);

/* Resolve host (a name, or a numeric address: "fe80::1%eth0" sets the zone's sin6_scope_id) for
 * network "ip", "ip4" or "ip6" (NULL: "ip"): writes at most cap addresses (struct sockaddr_in /
 * sockaddr_in6, port 0) into addrs (an array of struct sockaddr_storage) and returns how many, or
 * a negative errno value: -ENOENT no such host (or no address of that family), -ETIMEDOUT when
 * timeout_ns (0: none) passed or the servers stayed silent, -EAGAIN the servers failed, -EINVAL
 * bad arguments. At most 8 addresses are kept.
 * Names are resolved as hoare_net_dial does: /etc/hosts, then DNS per /etc/resolv.conf (servers,
 * search domains, ndots, timeout, attempts) with c-ares, the goroutine parked while it waits and
 * bounded by the timeout (a dial's timeout bounds its lookup plus its connect). "options timeout:N
 * attempts:N" (also from the RES_OPTIONS environment variable, which wins; defaults 5 and 2, capped
 * at 30 and 5 as resolv.conf(5) says): each server is asked in up to N rounds; a server's answer is
 * awaited timeout seconds in the first round and, as c-ares does, twice as long in each next one
 * (timeout:1 attempts:2 with one silent server: -ETIMEDOUT after 3 s). When the hosts line
 * of /etc/nsswitch.conf names other sources than files and dns, or c-ares was missing at build
 * time, getaddrinfo(3) runs in a blocking region instead (not bounded by the timeout).
 * Environment: HOARE_RESOLVER=system|cares forces one way; HOARE_RESOLV_CONF=path reads another
 * resolv.conf (c-ares only; nameserver lines may carry a port: "nameserver 127.0.0.1:5353"; a path
 * that is not a regular file gives -EINVAL). */
int hoare_net_lookup(const char *network, const char *host, void *addrs /* struct sockaddr_storage[] */,
                     int cap, int64_t timeout_ns);
/* Which resolver lookups use now: "cares" or "system" (getaddrinfo in a blocking region). */
const char *hoare_net_resolver(void);

/* Around a call that may block the thread (file I/O, DNS, a library without non-blocking mode):
 * the thread's processor is handed to another thread while it blocks, so other goroutines run.
 * Do not call other hoare functions between begin and end. No-ops on a plain thread. */
void hoare_blocking_begin(void);
void hoare_blocking_end(void);

/* ======================================================================================
 * Pools of reusable objects
 * ====================================================================================== */

/* Go's sync.Pool: a cache of objects to reuse instead of allocating anew. put hands an object to
 * the pool, get takes one back (any one) - or, when the pool is empty, returns new_object(arg), or
 * NULL without new_object. Each processor has its own cache: get and put on it take no lock and no
 * atomic read-modify-write; only a full or empty cache goes to a shared one under a lock. Unlike
 * Go's, get does not look into other processors' caches: up to 64 objects put on one processor stay
 * out of the others' reach until its cache overflows into the shared one or they are shed.
 * There is no garbage collector, so the pool sheds instead: an object left unused in the pool for
 * two intervals (about a second each; Go's victim cache) is handed to free_object(obj, arg), by
 * the runtime's monitor thread or inside a later get or put. free_object must be quick, must not
 * block, and must not call hoare_pool_destroy; it is called for shed objects only, never for
 * objects that get returned. Without free_object nothing is shed (the pool keeps every object until
 * hoare_pool_destroy). Set the three public fields before first use; the rest is the runtime's. */
typedef struct hoare_pool {
    void *(*new_object)(void *arg);           /* optional */
    void (*free_object)(void *obj, void *arg); /* optional (see above) */
    void *arg;
    /* the runtime's */
    void *locals;
    void *shared;
    struct hoare_pool *next;
    uint32_t lock;
    uint32_t registered;
} hoare_pool;
#define HOARE_POOL_INIT HOARE_ZERO_INIT_
/* An object from the pool, else new_object(arg), else NULL. */
void *hoare_pool_get(hoare_pool *pool);
/* Give obj (not NULL) to the pool. 0, EINVAL (pool or obj NULL), ENOMEM. */
int hoare_pool_put(hoare_pool *pool, void *obj);
/* Hand every object the pool holds to free_object and release the pool's memory. The pool must not
 * be in use meanwhile; afterwards it is empty and usable again (its three public fields are kept). */
void hoare_pool_destroy(hoare_pool *pool);

#ifdef __cplusplus
}
#endif

#endif /* HOARE_H */
