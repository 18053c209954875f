/*
 * uring.c - regular-file reads and writes through io_uring (liburing), so that a goroutine waiting
 * for the disk parks instead of holding a thread (epoll cannot wait for files: without io_uring
 * they are read inside a blocking region, which hands the processor to another thread).
 *
 * A read of data already in the page cache needs no ring: preadv2(RWF_NOWAIT) serves it at once,
 * and only a read that would wait for the disk (EAGAIN), and every write, goes to the ring.
 *
 * One ring per processor, made at the processor's first file request from a goroutine. A buffered
 * read that missed the page cache completes through task work in the submitting thread, and the
 * kernel runs that work - the copy into the caller's buffer, much of a read's CPU time - under
 * the ring's own mutex, as it does each submission: with one ring for the process, the processors'
 * threads queued on that mutex (11% of a fileread-cold run's samples spun on it, and no two copies
 * made in task work could overlap). A request is a record on the requesting goroutine's stack; its
 * address is the SQE's user data. The goroutine submits to its processor's ring (under that ring's
 * sq_lock), reaps what already completed (a read served from the page cache completes during the
 * submit), and parks if its own request is still in flight. Every ring signals completions on one
 * eventfd, which the poller watches like a socket (its own tag in poll_epoll.c); the poller then
 * reaps every ring and readies the waiters. (Not IORING_REGISTER_EVENTFD_ASYNC: it signals only
 * completions made by io-wq workers, and the task work above would never signal.)
 *
 * A record's state: 0 (in flight, no waiter yet), a G pointer (its goroutine parked: set by the
 * park's commit), or DONE (the result is in res: set by the reaper, with release, after res). The
 * reaper exchanges the state to DONE and readies a G it took out; a commit that finds DONE does not
 * sleep. After DONE, only the goroutine touches its record.
 *
 * Locks: a ring's sq_lock guards its submission queue, its cq_lock its completion queue; no two of
 * these locks are held at once, and waiters are readied after cq_lock is dropped. ring_lock
 * serialises the making of rings (rare).
 *
 * Not used (the caller falls back to the blocking region): without liburing at build time; when the
 * kernel refuses the ring (too old, seccomp, kernel.io_uring_disabled); under valgrind; with
 * HOARE_IO_URING=0; from plain threads (they block anyway); for read/write at the file position
 * on kernels without IORING_FEAT_RW_CUR_POS; when a processor's ring cannot be made; when as many
 * requests as a ring's completion queue holds are in flight on it; and for a request the kernel
 * answers with EAGAIN (a file opened O_NONBLOCK).
 * hoare_file_io() says which path is in use.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "hoare.h"
#include "netpoll.h"
#include "proc.h"
#include "uring.h"

#ifdef HOARE_HAVE_URING
#include <liburing.h>
#include <sys/eventfd.h>
#include <unistd.h>
#ifdef HOARE_HAVE_VALGRIND
#include <valgrind/valgrind.h>
#endif

#define RING_ENTRIES 256
/* Most kernel worker threads (io-wq, "iou-wrk-*") a ring may start for blocking file work. */
#define MAX_WORKERS 16

#define REQ_DONE ((uintptr_t)1)

struct uring_req {
    _Atomic uintptr_t state;
    int res;
};

/* A processor's ring. */
struct ring {
    struct io_uring ring;
    unsigned cq_entries;
    hoare_lock sq_lock, cq_lock;
    _Atomic uint32_t inflight;
};

static struct {
    pthread_once_t once;
    _Atomic bool ready; /* rings can be made (set once by init, with release: the fields are set) */
    bool cur_pos;       /* offset -1 means the file position (IORING_FEAT_RW_CUR_POS) */
    int efd;            /* every ring's completion eventfd */
    pthread_mutex_t ring_lock;
    struct ring *_Atomic rings[HOARE_MAX_PROCS]; /* by processor id; made once, never freed */
    _Atomic int32_t nrings;                      /* rings[] has nothing at this index or beyond */
    _Atomic int32_t waiters;
} u = {.once = PTHREAD_ONCE_INIT, .ring_lock = PTHREAD_MUTEX_INITIALIZER};

/* A new ring signalling u.efd, or NULL (the kernel refused, or out of memory). params_out: the
 * kernel's answer (features). */
static struct ring *ring_make(struct io_uring_params *params_out) {
    struct ring *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    struct io_uring_params params;
    memset(&params, 0, sizeof params);
    if (io_uring_queue_init_params(RING_ENTRIES, &r->ring, &params) != 0) {
        free(r);
        return NULL;
    }
    if (io_uring_register_eventfd(&r->ring, u.efd) != 0) {
        io_uring_queue_exit(&r->ring);
        free(r);
        return NULL;
    }
    unsigned workers[2] = {MAX_WORKERS, 0}; /* bounded (file) work; 0: unbounded left as it is */
    (void)io_uring_register_iowq_max_workers(&r->ring, workers);
    r->cq_entries = params.cq_entries;
    if (params_out) *params_out = params;
    return r;
}

/* Install r as processor id's ring (ring_lock held). */
static void ring_install(int32_t id, struct ring *r) {
    atomic_store_explicit(&u.rings[id], r, memory_order_release);
    if (atomic_load_explicit(&u.nrings, memory_order_relaxed) <= id)
        atomic_store_explicit(&u.nrings, id + 1, memory_order_release);
}

/* The first ring, made here, tells whether the kernel allows rings at all. */
static void uring_init(void) {
    u.efd = -1;
    if (!hoare__env_switch("HOARE_IO_URING", true)) return;
#ifdef HOARE_HAVE_VALGRIND
    if (RUNNING_ON_VALGRIND) return; /* it does not follow the kernel's writes into buffers */
#endif
    u.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (u.efd < 0) return;
    struct io_uring_params params;
    struct ring *r = ring_make(&params);
    hoare__netpoll_init();
    if (!r || hoare__netpoll_open_uring(u.efd) != 0) {
        if (r) {
            io_uring_queue_exit(&r->ring);
            free(r);
        }
        close(u.efd);
        u.efd = -1;
        return;
    }
    u.cur_pos = params.features & IORING_FEAT_RW_CUR_POS;
    pthread_mutex_lock(&u.ring_lock);
    ring_install(0, r);
    pthread_mutex_unlock(&u.ring_lock);
    atomic_store_explicit(&u.ready, true, memory_order_release);
}

static bool uring_ready(void) {
    hoare__once(&u.once, uring_init);
    return atomic_load_explicit(&u.ready, memory_order_acquire);
}

/* The calling goroutine's processor's ring, made at its first request; NULL if it cannot be made. */
static struct ring *current_ring(void) {
    P *cur = hoare__curp();
    if (!cur) return NULL;
    int32_t id = cur->id;
    struct ring *r = atomic_load_explicit(&u.rings[id], memory_order_acquire);
    if (likely(r != NULL)) return r;
    pthread_mutex_lock(&u.ring_lock);
    r = atomic_load_explicit(&u.rings[id], memory_order_relaxed);
    if (!r && (r = ring_make(NULL)) != NULL) ring_install(id, r);
    pthread_mutex_unlock(&u.ring_lock);
    return r;
}

int32_t hoare__uring_waiters(void) { return atomic_load_explicit(&u.waiters, memory_order_relaxed); }

int32_t hoare__uring_rings(void) {
    int32_t n = atomic_load_explicit(&u.nrings, memory_order_acquire), made = 0;
    for (int32_t i = 0; i < n; i++)
        made += atomic_load_explicit(&u.rings[i], memory_order_acquire) != NULL;
    return made;
}

/* Take ring r's completions; the goroutines parked on them go on *list. */
static void ring_reap(struct ring *r, G **list) {
    hoare__lock(&r->cq_lock);
    struct io_uring_cqe *cqe;
    while (io_uring_peek_cqe(&r->ring, &cqe) == 0) {
        struct uring_req *rq = io_uring_cqe_get_data(cqe);
        /* The record came through the kernel: this acquire pairs with the submitter's release store
         * (for TSan, which cannot see the ring; the hardware needs nothing here). */
        (void)atomic_load_explicit(&rq->state, memory_order_acquire);
        rq->res = cqe->res;
        io_uring_cqe_seen(&r->ring, cqe);
        atomic_fetch_sub(&r->inflight, 1);
        uintptr_t old = atomic_exchange_explicit(&rq->state, REQ_DONE, memory_order_acq_rel);
        if (old != 0) { /* a parked goroutine */
            G *g = (G *)old;
            g->schedlink = *list;
            *list = g;
        }
    }
    hoare__unlock(&r->cq_lock);
}

void hoare__uring_reap(G **list) {
    if (!atomic_load_explicit(&u.ready, memory_order_acquire)) return;
    uint64_t count;
    (void)!read(u.efd, &count, sizeof count); /* reset before draining: a later completion signals again */
    int32_t n = atomic_load_explicit(&u.nrings, memory_order_acquire);
    for (int32_t i = 0; i < n; i++) {
        struct ring *r = atomic_load_explicit(&u.rings[i], memory_order_acquire);
        if (r) ring_reap(r, list);
    }
}

static bool uring_commit(G *g, void *arg) {
    struct uring_req *rq = arg;
    uintptr_t expected = 0;
    return atomic_compare_exchange_strong_explicit(&rq->state, &expected, (uintptr_t)g,
                                                   memory_order_acq_rel, memory_order_acquire);
}

/* Submit one request to ring r and wait for it. */
static ssize_t uring_submit_wait(struct ring *r, int op, int fd, const void *p, size_t n, int64_t off) {
    struct uring_req rq;
    rq.res = 0;
    atomic_store_explicit(&rq.state, 0, memory_order_release); /* publishes res to the reaper */
    hoare__lock(&r->sq_lock);
    if (atomic_load(&r->inflight) >= r->cq_entries) {
        hoare__unlock(&r->sq_lock);
        return HOARE_URING_UNAVAILABLE;
    }
    /* The queue is emptied by every submit below, so an entry is always free here. */
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    switch (op) {
    case HOARE_URING_READ: io_uring_prep_read(sqe, fd, (void *)p, (unsigned)n, (uint64_t)off); break;
    case HOARE_URING_WRITE: io_uring_prep_write(sqe, fd, p, (unsigned)n, (uint64_t)off); break;
    case HOARE_URING_READV: io_uring_prep_readv(sqe, fd, p, (unsigned)n, (uint64_t)off); break;
    default: io_uring_prep_writev(sqe, fd, p, (unsigned)n, (uint64_t)off); break;
    }
    io_uring_sqe_set_data(sqe, &rq);
    atomic_fetch_add(&r->inflight, 1);
    atomic_fetch_add(&u.waiters, 1);
    int err;
    while ((err = io_uring_submit(&r->ring)) == -EINTR || err == -EAGAIN || err == -EBUSY) {}
    hoare__unlock(&r->sq_lock);
    if (err < 0) hoare__fatal("io_uring: submit failed: %s", strerror(-err));
    G *done = NULL;
    ring_reap(r, &done);
    if (done) hoare__ready_list(done);
    if (atomic_load_explicit(&rq.state, memory_order_acquire) != REQ_DONE) {
        hoare__park("IO wait", uring_commit, &rq);
        /* only the reaper readies us, after DONE: this acquire pairs with its exchange */
        if (atomic_load_explicit(&rq.state, memory_order_acquire) != REQ_DONE)
            hoare__fatal("io_uring: woken before the request completed");
    }
    atomic_fetch_sub(&u.waiters, 1);
    if (rq.res == -EAGAIN) return HOARE_URING_UNAVAILABLE;
    return rq.res;
}

ssize_t hoare__uring_rw(int op, int fd, const void *p, size_t n, int64_t off) {
    if (!hoare__curg() || !uring_ready() || (off < 0 && !u.cur_pos)) return HOARE_URING_UNAVAILABLE;
    if (n > (op == HOARE_URING_READ || op == HOARE_URING_WRITE ? (size_t)INT32_MAX : (size_t)IOV_MAX))
        return HOARE_URING_UNAVAILABLE;
    if (op == HOARE_URING_READ && n > 0) {
        /* Data in the page cache needs no ring: RWF_NOWAIT reads what is cached now, or fails with
         * EAGAIN when the read would wait for the disk. A short read (part cached) is finished
         * through the ring, so that a file still reads whole as with pread(2). */
        struct iovec iov = {(void *)p, n};
        ssize_t got = preadv2(fd, &iov, 1, off, RWF_NOWAIT);
        if (got == (ssize_t)n || got == 0) return got;
        if (got > 0) {
            struct ring *r = current_ring();
            ssize_t more = r ? uring_submit_wait(r, op, fd, (const char *)p + got, n - (size_t)got,
                                                 off < 0 ? off : off + got)
                             : HOARE_URING_UNAVAILABLE;
            /* the rest unavailable here, or an error after some bytes: the next call does it */
            return more > 0 ? got + more : got;
        }
        if (errno != EAGAIN && errno != EOPNOTSUPP && errno != EINVAL) return -errno;
    }
    struct ring *r = current_ring();
    return r ? uring_submit_wait(r, op, fd, p, n, off) : HOARE_URING_UNAVAILABLE;
}

const char *hoare_file_io(void) { return uring_ready() ? "io_uring" : "blocking"; }

#else /* no liburing at build time */

ssize_t hoare__uring_rw(int op, int fd, const void *p, size_t n, int64_t off) {
    (void)op, (void)fd, (void)p, (void)n, (void)off;
    return HOARE_URING_UNAVAILABLE;
}
void hoare__uring_reap(G **list) { (void)list; }
int32_t hoare__uring_waiters(void) { return 0; }
int32_t hoare__uring_rings(void) { return 0; }
const char *hoare_file_io(void) { return "blocking"; }

#endif
