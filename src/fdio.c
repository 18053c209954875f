/*
 * fdio.c - per-descriptor poller state (Go's pollDesc) and the public descriptor calls.
 *
 * Each descriptor number has a poll_desc in a two-level table (chunks are allocated on first use and
 * never freed or moved, so a poll_desc pointer stays valid forever: the poller may look one up with
 * no lock). A poll_desc holds:
 *  - life: REGISTERED, CLOSING and a count of calls in progress (see pd_acquire). The last call out
 *    of a closing descriptor deregisters and closes it, so that its number is never reused while a
 *    call still uses it.
 *  - rg / wg: the read and write waiter slots (Go's rg/wg): PD_NIL, PD_READY (an edge arrived and was
 *    not consumed), PD_WAIT (a waiter is about to park), a G pointer (a parked waiter), or, in wg
 *    only, PD_EITHER (the waiter of hoare_fd_wait(READ|WRITE) sleeps in rg: wake that one).
 *  - rd / wd: deadlines (0 none, > 0 armed, -1 expired) and their runtime timers rt / wt.
 *  - seq: bumped at each registration and each close; the poller drops events tagged with another.
 * The full rules (who may touch what, when) are in docs/design.md ("Network poller").
 *
 * Lock order: rmu before wmu (hoare_fd_wait takes both); either of them before pd->lock; pd->lock
 * before the timer heap locks (hoare__timer_stop/start) and the scheduler's (hoare__ready is called
 * after unlocking). Timer callbacks take no poll_desc lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "netpoll.h"
#include "proc.h"
#include "uring.h"

/* Waiter slot values other than a G pointer. */
#define PD_NIL ((uintptr_t)0)
#define PD_READY ((uintptr_t)1)
#define PD_WAIT ((uintptr_t)2)
#define PD_EITHER ((uintptr_t)3)

/* The life word. */
#define PD_REGISTERED (UINT32_C(1) << 31)
#define PD_CLOSING (UINT32_C(1) << 30)
#define PD_REFS (PD_CLOSING - 1)

/* Registration flags (what the caller knows about a new descriptor). */
enum { REG_SOCKET = 1, REG_STREAM = 2, REG_NONBLOCK = 4 };
/* accept_kind bits. */
enum { ACCEPT_KNOWN = 1, ACCEPT_STREAM = 2, ACCEPT_TCP = 4 };

typedef struct poll_desc {
    _Atomic uintptr_t rg, wg;
    _Atomic uint32_t life;
    _Atomic uint32_t seq;
    _Atomic int64_t rd, wd;
    int fd;                /* the table index: constant */
    /* Set at registration (under lock, published by the release store of life): */
    bool pollable;         /* false: the backend refused it (regular file): calls just block */
    bool is_socket;        /* send(MSG_NOSIGNAL) instead of write */
    bool is_stream;        /* a stream socket (a datagram socket sends one datagram per write) */
    /* Guarded by rmu (accept holds it): what accepted sockets are, learnt at the first accept. */
    uint8_t accept_kind;
    hoare_lock lock;       /* registration, close, deadline changes and their timers */
    hoare_mutex rmu, wmu;  /* one reader and one writer at a time (Go's fdMutex read/write locks) */
    hoare_rtimer rt, wt;   /* deadline timers: started and stopped only under lock */
    bool rt_armed, wt_armed; /* guarded by lock: started since last stopped (may have fired) */
} __attribute__((aligned(64))) poll_desc;

#define PD_CHUNK_BITS 8
#define PD_CHUNK (1 << PD_CHUNK_BITS)
#define PD_MAX_FD (1 << 24)

static poll_desc *_Atomic pd_table[PD_MAX_FD / PD_CHUNK];
/* Goroutines (and threads) parked in a waiter slot and not yet running again. */
static _Atomic int32_t netpoll_waiters;

static void read_deadline_fired(void *arg, int64_t now);
static void write_deadline_fired(void *arg, int64_t now);

/* The poll_desc of fd; create: allocate its chunk if needed. NULL if fd is out of range (or, with
 * create, out of memory). */
static poll_desc *pd_get(int fd, bool create) {
    if (unlikely(fd < 0 || fd >= PD_MAX_FD)) return NULL;
    poll_desc *chunk = atomic_load_explicit(&pd_table[fd >> PD_CHUNK_BITS], memory_order_acquire);
    if (unlikely(!chunk)) {
        if (!create) return NULL;
        poll_desc *fresh = hoare__aligned_alloc(_Alignof(poll_desc), sizeof(poll_desc) * PD_CHUNK);
        if (!fresh) return NULL;
        memset(fresh, 0, sizeof(poll_desc) * PD_CHUNK);
        for (int i = 0; i < PD_CHUNK; i++) {
            poll_desc *pd = &fresh[i];
            pd->fd = (fd & ~(PD_CHUNK - 1)) + i;
            pd->rt.fn = read_deadline_fired;
            pd->rt.arg = pd;
            pd->wt.fn = write_deadline_fired;
            pd->wt.arg = pd;
        }
        poll_desc *expected = NULL;
        if (atomic_compare_exchange_strong_explicit(&pd_table[fd >> PD_CHUNK_BITS], &expected, fresh,
                                                    memory_order_acq_rel, memory_order_acquire)) {
            chunk = fresh;
        } else {
            free(fresh);
            chunk = expected;
        }
    }
    return &chunk[fd & (PD_CHUNK - 1)];
}

int32_t hoare__netpoll_waiters(void) {
    return atomic_load_explicit(&netpoll_waiters, memory_order_relaxed) + hoare__uring_waiters();
}

/* ---------------------------------------------------------------- waiter slots */

static inline _Atomic uintptr_t *pd_slot(poll_desc *pd, int mode) {
    return mode == NETPOLL_WRITE ? &pd->wg : &pd->rg;
}

/* Go's netpollunblock: take the waiter out of the slot of mode. ioready: readiness (the slot becomes
 * READY) rather than an error condition (the slot becomes NIL; the waiter then finds the error).
 * Returns the parked G to make ready, or NULL. */
static G *pd_unblock(poll_desc *pd, int mode, bool ioready) {
    _Atomic uintptr_t *slot = pd_slot(pd, mode);
    uintptr_t old = atomic_load(slot);
    for (;;) {
        if (old == PD_READY) return NULL;
        if (old == PD_NIL && !ioready) return NULL;
        if (atomic_compare_exchange_weak(slot, &old, ioready ? PD_READY : PD_NIL)) break;
    }
    if (old == PD_EITHER) return pd_unblock(pd, NETPOLL_READ, ioready);
    if (old == PD_NIL || old == PD_WAIT) return NULL; /* a waiter at PD_WAIT finds the new state */
    return (G *)old;
}

/* The error a waiter for modes must return now: -EBADF once closing, -ETIMEDOUT once a deadline of
 * one of the modes expired, else 0. */
static int pd_check(poll_desc *pd, int modes) {
    if (atomic_load(&pd->life) & PD_CLOSING) return -EBADF;
    if ((modes & NETPOLL_READ) && atomic_load(&pd->rd) < 0) return -ETIMEDOUT;
    if ((modes & NETPOLL_WRITE) && atomic_load(&pd->wd) < 0) return -ETIMEDOUT;
    return 0;
}

/* A waiter's record of one park, on its own stack. */
struct pd_parking {
    _Atomic uintptr_t *slot;
    bool published; /* commit put the waiter in the slot: it is counted in netpoll_waiters */
};

/* Runs once the waiter is switched out: publish it in the slot unless readiness or an error came
 * since PD_WAIT was stored (then the slot is no longer PD_WAIT and the waiter resumes at once).
 * The waiter is counted from here until it runs again (not only until a waker takes it out of the
 * slot): the deadlock check must not see a woken plain thread that has not resumed yet as idle. */
static bool pd_commit(G *g, void *arg) {
    struct pd_parking *pk = arg;
    uintptr_t expected = PD_WAIT;
    /* Read before the CAS: once g is in the slot it may run at once and change its flags (the main
     * goroutine clears G_MAIN when it returns: TSan's report in redis_clients). */
    bool plain_thread = g->flags & G_THREAD;
    atomic_fetch_add(&netpoll_waiters, 1);
    pk->published = true; /* before the CAS: once g is in the slot, g may run at once */
    if (!atomic_compare_exchange_strong(pk->slot, &expected, (uintptr_t)g)) {
        pk->published = false;
        atomic_fetch_sub(&netpoll_waiters, 1);
        return false;
    }
    /* A goroutine's thread goes on to schedule and polls when idle; a plain thread sleeps, so make
     * sure some scheduler thread wakes up to poll for it. */
    if (plain_thread) hoare__wakep();
    return true;
}

/* Go's netpollblock plus the error checks: wait until an edge for modes arrives (modes READ|WRITE
 * waits in rg; the caller has put PD_EITHER in wg). Returns 0 when the caller should retry its
 * operation (ready, or woken without an error), or the negative errno that ends it. The caller holds
 * the mutex of each mode, so nobody else waits in these slots. */
static int pd_wait(poll_desc *pd, int modes) {
    _Atomic uintptr_t *slot = pd_slot(pd, modes == NETPOLL_WRITE ? NETPOLL_WRITE : NETPOLL_READ);
    uintptr_t old = atomic_load(slot);
    for (;;) {
        if (old == PD_READY) {
            if (atomic_compare_exchange_weak(slot, &old, PD_NIL)) return 0;
            continue;
        }
        if (old != PD_NIL) hoare__fatal("netpoll: two waiters for descriptor %d", pd->fd);
        if (atomic_compare_exchange_weak(slot, &old, PD_WAIT)) break;
    }
    /* Stores of closing/deadlines happen before their pd_unblock reads the slot; this load comes
     * after our PD_WAIT store: one side sees the other (all seq_cst). */
    int err = pd_check(pd, modes);
    if (err == 0) {
        struct pd_parking pk = {slot, false};
        hoare__park("IO wait", pd_commit, &pk);
        if (pk.published) atomic_fetch_sub(&netpoll_waiters, 1);
    }
    old = atomic_exchange(slot, PD_NIL);
    if (old > PD_WAIT) hoare__fatal("netpoll: corrupted waiter slot of descriptor %d", pd->fd);
    if (old == PD_READY) return 0;
    return pd_check(pd, modes);
}

void hoare__netpoll_ready(int fd, uint32_t seq, int modes, G **list) {
    poll_desc *pd = pd_get(fd, false);
    if (!pd || atomic_load(&pd->seq) != seq) return; /* an event of a closed registration */
    for (int mode = NETPOLL_READ; mode <= NETPOLL_WRITE; mode <<= 1) {
        if (!(modes & mode)) continue;
        G *g = pd_unblock(pd, mode, true);
        if (!g) continue;
        if (g->flags & G_THREAD) { /* plain threads are woken here, not run by the scheduler */
            hoare__ready(g);
            continue;
        }
        g->schedlink = *list;
        *list = g;
    }
}

/* ---------------------------------------------------------------- deadlines */

static void deadline_fired(poll_desc *pd, int mode) {
    _Atomic int64_t *dl = mode == NETPOLL_READ ? &pd->rd : &pd->wd;
    /* The timer is armed only while the deadline it was armed for is current (setters and close
     * stop it before changing rd/wd), so firing means expiry. */
    if (atomic_load(dl) <= 0) return;
    atomic_store(dl, -1);
    G *g = pd_unblock(pd, mode, false);
    if (g) hoare__ready(g);
}
static void read_deadline_fired(void *arg, int64_t now) { deadline_fired(arg, NETPOLL_READ); }
static void write_deadline_fired(void *arg, int64_t now) { deadline_fired(arg, NETPOLL_WRITE); }

/* Make sure the deadline timer of mode is idle (stopped, or fired and finished: hoare__timer_stop
 * waits for a running callback, which takes no poll_desc lock). Called under pd->lock. */
static void pd_disarm_locked(poll_desc *pd, int mode) {
    bool *armed = mode == NETPOLL_READ ? &pd->rt_armed : &pd->wt_armed;
    if (!*armed) return;
    hoare__timer_stop(mode == NETPOLL_READ ? &pd->rt : &pd->wt);
    *armed = false;
}

/* Set the deadline of one mode; called under pd->lock. Returns a waiter to wake (deadline already
 * past), or NULL. */
static G *pd_set_deadline_locked(poll_desc *pd, int mode, int64_t deadline, int64_t now) {
    _Atomic int64_t *dl = mode == NETPOLL_READ ? &pd->rd : &pd->wd;
    if (atomic_load(dl) == deadline) return NULL; /* unchanged (also: none stays none) */
    pd_disarm_locked(pd, mode);
    if (deadline == 0) {
        atomic_store(dl, 0);
        return NULL;
    }
    if (deadline <= now) {
        atomic_store(dl, -1);
        return pd_unblock(pd, mode, false);
    }
    atomic_store(dl, deadline);
    if (mode == NETPOLL_READ) {
        pd->rt_armed = true;
        hoare__timer_start(&pd->rt, deadline);
    } else {
        pd->wt_armed = true;
        hoare__timer_start(&pd->wt, deadline);
    }
    return NULL;
}

/* ---------------------------------------------------------------- life: register, acquire, close */

/* Register fd with the backend and reset its poll_desc. Called under pd->lock, with no call in
 * progress on the descriptor (life 0, or a stale registration of a number the kernel reused). */
static int pd_register_locked(poll_desc *pd, int fd, int reg) {
    hoare__init();
    int perr = hoare__netpoll_init();
    if (perr) return perr;
    bool is_socket = reg & REG_SOCKET, is_stream = reg & REG_STREAM;
    pd_disarm_locked(pd, NETPOLL_READ); /* only after misuse: a number closed with close(2) */
    pd_disarm_locked(pd, NETPOLL_WRITE);
    if (!(reg & REG_SOCKET)) {
        struct stat st;
        if (fstat(fd, &st) != 0) return errno;
        is_socket = S_ISSOCK(st.st_mode);
        if (is_socket) {
            int type = 0;
            socklen_t len = sizeof type;
            is_stream = getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM;
        }
    }
    atomic_store(&pd->rg, PD_NIL);
    atomic_store(&pd->wg, PD_NIL);
    atomic_store(&pd->rd, 0);
    atomic_store(&pd->wd, 0);
    pd->is_socket = is_socket;
    pd->is_stream = is_stream;
    pd->accept_kind = 0; /* a listener's, learnt anew (the number may be another kind of socket now) */
    uint32_t seq = atomic_fetch_add(&pd->seq, 1) + 1;
    int err = hoare__netpoll_open(fd, seq);
    if (err == EPERM) {
        pd->pollable = false; /* a regular file or directory: always ready, calls just block */
    } else if (err) {
        return err;
    } else {
        pd->pollable = true;
        if (!(reg & REG_NONBLOCK)) {
            int fl = fcntl(fd, F_GETFL);
            if (fl < 0 || (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)) {
                err = errno;
                hoare__netpoll_close(fd);
                return err;
            }
        }
    }
    atomic_store_explicit(&pd->life, PD_REGISTERED, memory_order_release);
    return 0;
}

/* Register a descriptor this module just created (accept, dial, listen): the kernel handed this
 * number out, so a registration the slot holds is stale (the number's previous descriptor was
 * closed with close(2))... unless calls are in progress on it. Those started after the number was
 * reused - late calls of a goroutine that used the previous descriptor after its hoare_fd_close -
 * and registered it for the new descriptor already (pd_acquire): resetting the slot under them
 * would lose a parked waiter and their count. They keep it; only the backend registration is made
 * sure of. 0 or an errno value. */
int hoare__fd_register_new(int fd, bool stream_socket) {
    poll_desc *pd = pd_get(fd, true);
    if (!pd) return fd < 0 ? EBADF : ENOMEM;
    hoare__lock(&pd->lock);
    uint32_t life = atomic_load(&pd->life);
    int err;
    if ((life & PD_REGISTERED) && (life & PD_REFS))
        err = pd->pollable ? hoare__netpoll_open(fd, atomic_load(&pd->seq)) : 0;
    else
        err = pd_register_locked(pd, fd, REG_SOCKET | REG_NONBLOCK | (stream_socket ? REG_STREAM : 0));
    hoare__unlock(&pd->lock);
    return err;
}

/* Begin a call on fd: register it on first use, count the call in. Returns the poll_desc, or NULL
 * with *err a negative errno (-EBADF when closing or not a descriptor). */
static poll_desc *pd_acquire(int fd, int *err) {
    poll_desc *pd = pd_get(fd, true);
    if (unlikely(!pd)) {
        *err = fd < 0 || fd >= PD_MAX_FD ? -EBADF : -ENOMEM;
        return NULL;
    }
    uint32_t v = atomic_load_explicit(&pd->life, memory_order_relaxed);
    for (;;) {
        if (unlikely((v & (PD_REGISTERED | PD_CLOSING)) != PD_REGISTERED)) {
            /* Not registered yet, or closing: decide under the lock (a close may be completing:
             * its number can be reused as soon as close(2) returns, before life is cleared). */
            hoare__lock(&pd->lock);
            v = atomic_load(&pd->life);
            int e = 0;
            if (v == 0) e = pd_register_locked(pd, fd, 0);
            else if (v & PD_CLOSING) e = EBADF;
            hoare__unlock(&pd->lock);
            if (e) {
                *err = -e;
                return NULL;
            }
            v = atomic_load_explicit(&pd->life, memory_order_relaxed);
            continue;
        }
        if (atomic_compare_exchange_weak_explicit(&pd->life, &v, v + 1, memory_order_acquire,
                                                  memory_order_relaxed))
            return pd;
    }
}

/* Deregister and close: the last call out of a closing descriptor does it. */
static void pd_destroy(poll_desc *pd) {
    hoare__lock(&pd->lock);
    if (pd->pollable) hoare__netpoll_close(pd->fd);
    atomic_fetch_add(&pd->seq, 1); /* events gathered before the deregistration are now stale */
    atomic_store(&pd->rg, PD_NIL);
    atomic_store(&pd->wg, PD_NIL);
    atomic_store(&pd->rd, 0);
    atomic_store(&pd->wd, 0);
    close(pd->fd); /* Linux releases the number even when this fails (EINTR included) */
    atomic_store_explicit(&pd->life, 0, memory_order_release);
    hoare__unlock(&pd->lock);
}

/* End a call begun by pd_acquire. */
static void pd_release(poll_desc *pd) {
    uint32_t v = atomic_fetch_sub_explicit(&pd->life, 1, memory_order_acq_rel) - 1;
    if (unlikely(v == (PD_REGISTERED | PD_CLOSING))) pd_destroy(pd);
}

int hoare_fd_close(int fd) {
    poll_desc *pd = pd_get(fd, true);
    if (!pd) return close(fd) == 0 ? 0 : errno; /* beyond the table: never registered */
    if (atomic_load(&pd->life) == 0) {
        /* Never registered (or closed): close it, unless a first call registers it meanwhile
         * (registration holds the lock too). */
        hoare__lock(&pd->lock);
        bool unregistered = atomic_load(&pd->life) == 0;
        int err = unregistered && close(fd) != 0 ? errno : 0;
        hoare__unlock(&pd->lock);
        if (unregistered) return err;
    }
    int err;
    if (!pd_acquire(fd, &err)) return -err;
    if (atomic_fetch_or(&pd->life, PD_CLOSING) & PD_CLOSING) {
        pd_release(pd);
        return EBADF; /* a concurrent close won */
    }
    /* No deadline can be armed from now on (setters check CLOSING under the lock). */
    hoare__lock(&pd->lock);
    pd_disarm_locked(pd, NETPOLL_READ);
    pd_disarm_locked(pd, NETPOLL_WRITE);
    hoare__unlock(&pd->lock);
    G *r = pd_unblock(pd, NETPOLL_READ, false);
    G *w = pd_unblock(pd, NETPOLL_WRITE, false);
    if (r) hoare__ready(r);
    if (w) hoare__ready(w);
    pd_release(pd); /* closes now, or when the last call in progress returns */
    return 0;
}

static int set_deadlines(int fd, int modes, int64_t deadline) {
    int err;
    poll_desc *pd = pd_acquire(fd, &err);
    if (!pd) return -err;
    if (deadline < 0) deadline = 1; /* any past time */
    G *r = NULL, *w = NULL;
    int64_t now = hoare__nanotime();
    hoare__lock(&pd->lock);
    if (atomic_load(&pd->life) & PD_CLOSING) {
        err = EBADF;
    } else {
        if (modes & NETPOLL_READ) r = pd_set_deadline_locked(pd, NETPOLL_READ, deadline, now);
        if (modes & NETPOLL_WRITE) w = pd_set_deadline_locked(pd, NETPOLL_WRITE, deadline, now);
        err = 0;
    }
    hoare__unlock(&pd->lock);
    if (r) hoare__ready(r);
    if (w) hoare__ready(w);
    pd_release(pd);
    return err;
}

int hoare_fd_set_deadline(int fd, int64_t deadline) {
    return set_deadlines(fd, NETPOLL_READ | NETPOLL_WRITE, deadline);
}
int hoare_fd_set_read_deadline(int fd, int64_t deadline) {
    return set_deadlines(fd, NETPOLL_READ, deadline);
}
int hoare_fd_set_write_deadline(int fd, int64_t deadline) {
    return set_deadlines(fd, NETPOLL_WRITE, deadline);
}

/* ---------------------------------------------------------------- calls */

/* An operation: one non-blocking attempt, returning >= 0 or -1 with errno. */
typedef ssize_t (*io_attempt)(poll_desc *pd, void *arg);

static ssize_t uring_io(poll_desc *pd, io_attempt op, void *arg);

/* op on a descriptor the poller refused (a regular file): through io_uring where it can (uring.c),
 * else the blocking call in a blocking region. */
static ssize_t file_io(poll_desc *pd, io_attempt op, void *arg) {
    ssize_t n = uring_io(pd, op, arg);
    if (n != HOARE_URING_UNAVAILABLE) return n;
    hoare_blocking_begin();
    do n = op(pd, arg);
    while (n < 0 && errno == EINTR);
    int err = errno;
    hoare_blocking_end();
    return n >= 0 ? n : -err;
}

/* Attempt op until it succeeds or fails with something other than EAGAIN, waiting for readiness of
 * mode in between. The caller holds the mode's mutex and a reference. */
static ssize_t pd_io(poll_desc *pd, int mode, io_attempt op, void *arg) {
    int err = pd_check(pd, mode);
    if (err) return err;
    if (!pd->pollable) return file_io(pd, op, arg);
    for (;;) {
        ssize_t n = op(pd, arg);
        if (n >= 0) return n;
        err = errno;
        if (err == EINTR) continue;
        if (err != EAGAIN && err != EWOULDBLOCK) return -err;
        err = pd_wait(pd, mode);
        if (err) return err;
    }
}

struct buf_arg {
    void *buf;
    size_t len;
};
struct iov_arg {
    const struct iovec *iov;
    int iovcnt;
};

static ssize_t attempt_read(poll_desc *pd, void *arg) {
    struct buf_arg *a = arg;
    return read(pd->fd, a->buf, a->len);
}
static ssize_t attempt_readv(poll_desc *pd, void *arg) {
    struct iov_arg *a = arg;
    return readv(pd->fd, a->iov, a->iovcnt);
}

/* Writes to a pipe or FIFO without readers raise SIGPIPE: block it in this thread around the write
 * and consume the one the write queued, so that only EPIPE remains. (Sockets use MSG_NOSIGNAL.) */
static ssize_t write_without_sigpipe(int fd, const struct iovec *iov, int iovcnt) {
    sigset_t pipe_set, old;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    ssize_t n = writev(fd, iov, iovcnt);
    int err = errno;
    if (n < 0 && err == EPIPE) {
        static const struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR) {}
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = err;
    return n;
}

static ssize_t attempt_writev(poll_desc *pd, void *arg) {
    struct iov_arg *a = arg;
    if (pd->is_socket) {
        struct msghdr msg = {.msg_iov = (struct iovec *)a->iov, .msg_iovlen = (size_t)a->iovcnt};
        return sendmsg(pd->fd, &msg, MSG_NOSIGNAL);
    }
    return write_without_sigpipe(pd->fd, a->iov, a->iovcnt);
}
static ssize_t attempt_write(poll_desc *pd, void *arg) {
    struct buf_arg *a = arg;
    if (pd->is_socket) return send(pd->fd, a->buf, a->len, MSG_NOSIGNAL);
    struct iovec iov = {a->buf, a->len};
    return write_without_sigpipe(pd->fd, &iov, 1);
}

ssize_t hoare_fd_read(int fd, void *buf, size_t len) {
    int err;
    poll_desc *pd = pd_acquire(fd, &err);
    if (!pd) return err;
    hoare_mutex_lock(&pd->rmu);
    struct buf_arg a = {buf, len};
    ssize_t n = pd_io(pd, NETPOLL_READ, attempt_read, &a);
    hoare_mutex_unlock(&pd->rmu);
    pd_release(pd);
    return n;
}

ssize_t hoare_fd_readv(int fd, const struct iovec *iov, int iovcnt) {
    if (iovcnt < 0) return -EINVAL;
    int err;
    poll_desc *pd = pd_acquire(fd, &err);
    if (!pd) return err;
    hoare_mutex_lock(&pd->rmu);
    /* Into the first IOV_MAX buffers at most (the kernel's limit): a read may be short anyway. */
    struct iov_arg a = {iov, iovcnt < IOV_MAX ? iovcnt : IOV_MAX};
    ssize_t n = pd_io(pd, NETPOLL_READ, attempt_readv, &a);
    hoare_mutex_unlock(&pd->rmu);
    pd_release(pd);
    return n;
}

ssize_t hoare_fd_write(int fd, const void *buf, size_t len) {
    int err;
    poll_desc *pd = pd_acquire(fd, &err);
    if (!pd) return err;
    hoare_mutex_lock(&pd->wmu);
    size_t done = 0;
    ssize_t n = 0;
    /* A datagram socket sends one datagram per write, an empty one too (as Go). */
    bool once = pd->is_socket && !pd->is_stream;
    while (done < len || once) {
        once = false;
        struct buf_arg a = {(char *)buf + done, len - done};
        n = pd_io(pd, NETPOLL_WRITE, attempt_write, &a);
        if (n < 0) break;
        done += (size_t)n;
    }
    hoare_mutex_unlock(&pd->wmu);
    pd_release(pd);
    return done > 0 || n >= 0 ? (ssize_t)done : n;
}

ssize_t hoare_fd_writev(int fd, const struct iovec *iov, int iovcnt) {
    if (iovcnt < 0) return -EINVAL;
    int err;
    poll_desc *pd = pd_acquire(fd, &err);
    if (!pd) return err;
    hoare_mutex_lock(&pd->wmu);
    size_t done = 0;
    ssize_t n = 0;
    /* The caller's array is const: an entry written in part is finished on its own (a one-entry
     * vector), then the rest of the array continues as given, IOV_MAX entries (the kernel's limit)
     * at most per system call, as Go's writev. Not on a datagram socket, where one system call is
     * one datagram: there more entries get the kernel's EMSGSIZE. */
    int most = pd->is_socket && !pd->is_stream ? iovcnt : IOV_MAX;
    struct iovec part = {NULL, 0};
    while (iovcnt > 0 || part.iov_len > 0) {
        struct iov_arg a = part.iov_len > 0 ? (struct iov_arg){&part, 1}
                                            : (struct iov_arg){iov, iovcnt < most ? iovcnt : most};
        n = pd_io(pd, NETPOLL_WRITE, attempt_writev, &a);
        if (n < 0) break;
        done += (size_t)n;
        size_t skip = (size_t)n;
        if (part.iov_len > 0) {
            part.iov_base = (char *)part.iov_base + skip;
            part.iov_len -= skip;
            continue;
        }
        while (iovcnt > 0 && skip >= iov->iov_len) {
            skip -= iov->iov_len;
            iov++;
            iovcnt--;
        }
        if (skip > 0) { /* iov[0] went out in part */
            part = (struct iovec){(char *)iov->iov_base + skip, iov->iov_len - skip};
            iov++;
            iovcnt--;
        }
    }
    hoare_mutex_unlock(&pd->wmu);
    pd_release(pd);
    return done > 0 || n >= 0 ? (ssize_t)done : n;
}

/* ---------------------------------------------------------------- datagrams */

struct from_arg {
    void *buf;
    size_t len;
    void *addr;
    void *addrlen;
};
static ssize_t attempt_recvfrom(poll_desc *pd, void *arg) {
    struct from_arg *a = arg;
    return recvfrom(pd->fd, a->buf, a->len, 0, a->addr, a->addrlen);
}

ssize_t hoare_fd_recvfrom(int fd, void *buf, size_t len, void *addr, void *addrlen) {
    if (addr && !addrlen) return -EINVAL;
    int err;
    poll_desc *pd = pd_acquire(fd, &err);
    if (!pd) return err;
    hoare_mutex_lock(&pd->rmu);
    struct from_arg a = {buf, len, addr, addr ? addrlen : NULL};
    ssize_t n = pd_io(pd, NETPOLL_READ, attempt_recvfrom, &a);
    hoare_mutex_unlock(&pd->rmu);
    pd_release(pd);
    return n;
}

struct to_arg {
    const void *buf;
    size_t len;
    const void *addr;
    socklen_t addrlen;
};
static ssize_t attempt_sendto(poll_desc *pd, void *arg) {
    struct to_arg *a = arg;
    return sendto(pd->fd, a->buf, a->len, MSG_NOSIGNAL, a->addr, a->addrlen);
}

ssize_t hoare_fd_sendto(int fd, const void *buf, size_t len, const void *addr, unsigned addrlen) {
    int err;
    poll_desc *pd = pd_acquire(fd, &err);
    if (!pd) return err;
    hoare_mutex_lock(&pd->wmu);
    struct to_arg a = {buf, len, addr, addr ? (socklen_t)addrlen : 0};
    ssize_t n = pd_io(pd, NETPOLL_WRITE, attempt_sendto, &a); /* one datagram: all or nothing */
    hoare_mutex_unlock(&pd->wmu);
    pd_release(pd);
    return n;
}

static ssize_t attempt_recvmsg(poll_desc *pd, void *arg) { return recvmsg(pd->fd, arg, 0); }
static ssize_t attempt_sendmsg(poll_desc *pd, void *arg) { return sendmsg(pd->fd, arg, MSG_NOSIGNAL); }

ssize_t hoare_fd_recvmsg(int fd, struct msghdr *msg, int flags) {
    if (flags != 0) return -EINVAL;
    int err;
    poll_desc *pd = pd_acquire(fd, &err);
    if (!pd) return err;
    hoare_mutex_lock(&pd->rmu);
    ssize_t n = pd_io(pd, NETPOLL_READ, attempt_recvmsg, msg);
    hoare_mutex_unlock(&pd->rmu);
    pd_release(pd);
    return n;
}

ssize_t hoare_fd_sendmsg(int fd, const struct msghdr *msg, int flags) {
    if (flags != 0) return -EINVAL;
    int err;
    poll_desc *pd = pd_acquire(fd, &err);
    if (!pd) return err;
    hoare_mutex_lock(&pd->wmu);
    ssize_t n = pd_io(pd, NETPOLL_WRITE, attempt_sendmsg, (void *)msg);
    hoare_mutex_unlock(&pd->wmu);
    pd_release(pd);
    return n;
}

/* ---------------------------------------------------------------- positioned I/O */

struct pos_arg {
    void *buf;
    size_t len;
    off_t off;
};
static ssize_t attempt_pread(poll_desc *pd, void *arg) {
    struct pos_arg *a = arg;
    return pread(pd->fd, a->buf, a->len, a->off);
}
static ssize_t attempt_pwrite(poll_desc *pd, void *arg) {
    struct pos_arg *a = arg;
    return pwrite(pd->fd, a->buf, a->len, a->off);
}

/* The io_uring form of the attempt op (the attempt functions name the operation), or
 * HOARE_URING_UNAVAILABLE. */
static ssize_t uring_io(poll_desc *pd, io_attempt op, void *arg) {
    if (op == attempt_read || op == attempt_write) {
        struct buf_arg *a = arg;
        return hoare__uring_rw(op == attempt_read ? HOARE_URING_READ : HOARE_URING_WRITE, pd->fd, a->buf,
                               a->len, -1);
    }
    if (op == attempt_readv || op == attempt_writev) {
        struct iov_arg *a = arg;
        return hoare__uring_rw(op == attempt_readv ? HOARE_URING_READV : HOARE_URING_WRITEV, pd->fd, a->iov,
                               (size_t)a->iovcnt, -1);
    }
    if (op == attempt_pread || op == attempt_pwrite) {
        struct pos_arg *a = arg;
        return hoare__uring_rw(op == attempt_pread ? HOARE_URING_READ : HOARE_URING_WRITE, pd->fd, a->buf,
                               a->len, a->off);
    }
    return HOARE_URING_UNAVAILABLE;
}

/* As Go's ReadAt/WriteAt (its poll.FD.Pread/Pwrite): no turn-taking (the offset is the caller's),
 * no deadlines, no waiting for readiness: a pollable descriptor (a pipe, a socket) gets the system
 * call's own answer, ESPIPE. */
static ssize_t pd_positioned(poll_desc *pd, io_attempt op, struct pos_arg *a) {
    if (!pd->pollable) return file_io(pd, op, a);
    ssize_t n;
    do n = op(pd, a);
    while (n < 0 && errno == EINTR);
    return n >= 0 ? n : -errno;
}

ssize_t hoare_fd_pread(int fd, void *buf, size_t count, off_t offset) {
    if (offset < 0) return -EINVAL;
    int err;
    poll_desc *pd = pd_acquire(fd, &err);
    if (!pd) return err;
    struct pos_arg a = {buf, count, offset};
    ssize_t n = pd_positioned(pd, attempt_pread, &a);
    pd_release(pd);
    return n;
}

ssize_t hoare_fd_pwrite(int fd, const void *buf, size_t count, off_t offset) {
    if (offset < 0) return -EINVAL;
    int err;
    poll_desc *pd = pd_acquire(fd, &err);
    if (!pd) return err;
    size_t done = 0;
    ssize_t n = 0;
    do {
        struct pos_arg a = {(char *)buf + done, count - done, offset + (off_t)done};
        n = pd_positioned(pd, attempt_pwrite, &a);
        if (n < 0) break;
        done += (size_t)n;
    } while (done < count && n > 0);
    pd_release(pd);
    return done > 0 || n >= 0 ? (ssize_t)done : n;
}

struct accept_arg {
    void *addr;
    void *addrlen;
};
static ssize_t attempt_accept(poll_desc *pd, void *arg) {
    struct accept_arg *a = arg;
    for (;;) {
        int nfd = accept4(pd->fd, a->addr, a->addrlen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        /* The connection was reset before we took it: take the next one, as Go does. */
        if (nfd < 0 && errno == ECONNABORTED) continue;
        return nfd;
    }
}

/* What sockets accepted from listener fd are (a stream socket? TCP?), asked once per listener. */
static uint8_t accept_kind(int fd) {
    int type = 0, protocol = 0;
    socklen_t len = sizeof type;
    uint8_t kind = ACCEPT_KNOWN;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM) {
        kind |= ACCEPT_STREAM;
        len = sizeof protocol;
        if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &len) == 0 && protocol == IPPROTO_TCP)
            kind |= ACCEPT_TCP;
    }
    return kind;
}

int hoare_fd_accept(int fd, void *addr, void *addrlen) {
    int err;
    poll_desc *pd = pd_acquire(fd, &err);
    if (!pd) return err;
    hoare_mutex_lock(&pd->rmu);
    struct accept_arg a = {addr, addrlen};
    ssize_t nfd = pd_io(pd, NETPOLL_READ, attempt_accept, &a);
    if (nfd >= 0 && !pd->accept_kind) pd->accept_kind = accept_kind(fd);
    uint8_t kind = pd->accept_kind;
    hoare_mutex_unlock(&pd->rmu);
    pd_release(pd);
    if (nfd < 0) return (int)nfd;
    if (kind & ACCEPT_TCP) { /* as Go does for every TCP connection */
        int one = 1;
        (void)setsockopt((int)nfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    err = hoare__fd_register_new((int)nfd, kind & ACCEPT_STREAM);
    if (err) {
        close((int)nfd);
        return -err;
    }
    return (int)nfd;
}

int hoare_fd_connect(int fd, const void *addr, unsigned addrlen) {
    int err;
    poll_desc *pd = pd_acquire(fd, &err);
    if (!pd) return err;
    hoare_mutex_lock(&pd->wmu);
    err = pd_check(pd, NETPOLL_WRITE);
    if (err == 0 && connect(fd, addr, addrlen) != 0) {
        err = errno;
        if (err == EISCONN) {
            err = 0;
        } else if (err != EINPROGRESS && err != EALREADY && err != EINTR) {
            err = -err;
        } else {
            /* In progress: wait for writability, then ask the socket how it went. A writability
             * edge may predate the connect (an unconnected socket is writable and hung up), so a
             * socket without error and without peer is still connecting. */
            for (;;) {
                err = pd_wait(pd, NETPOLL_WRITE);
                if (err) break;
                int so_error = 0;
                socklen_t len = sizeof so_error;
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len) != 0) {
                    err = -errno;
                    break;
                }
                if (so_error == EINPROGRESS || so_error == EALREADY || so_error == EINTR) continue;
                if (so_error == EISCONN) break;
                if (so_error != 0) {
                    err = -so_error;
                    break;
                }
                struct sockaddr_storage peer;
                socklen_t plen = sizeof peer;
                if (getpeername(fd, (struct sockaddr *)&peer, &plen) == 0) break;
            }
        }
    }
    hoare_mutex_unlock(&pd->wmu);
    pd_release(pd);
    return err;
}

/* Is fd ready for events now (level), by poll(2)? Hang-up and error count as ready. */
static bool ready_now(int fd, int events) {
    struct pollfd p = {.fd = fd, .events = (short)(((events & NETPOLL_READ) ? POLLIN : 0) |
                                                   ((events & NETPOLL_WRITE) ? POLLOUT : 0))};
    int n;
    while ((n = poll(&p, 1, 0)) < 0 && errno == EINTR) {}
    return n > 0;
}

int hoare_fd_wait(int fd, int events) {
    if (events < NETPOLL_READ || events > (NETPOLL_READ | NETPOLL_WRITE)) return -EINVAL;
    int err;
    poll_desc *pd = pd_acquire(fd, &err);
    if (!pd) return err;
    if (events & NETPOLL_READ) hoare_mutex_lock(&pd->rmu);
    if (events & NETPOLL_WRITE) hoare_mutex_lock(&pd->wmu);
    /* Level semantics over edge-triggered slots: forget edges seen so far, look at the level, and
     * only then wait for an edge (one arriving after the forgetting is a real change). */
    for (;;) {
        err = pd_check(pd, events);
        if (err || !pd->pollable) break;
        if (events & NETPOLL_READ) {
            uintptr_t ready = PD_READY;
            atomic_compare_exchange_strong(&pd->rg, &ready, PD_NIL);
        }
        if (events & NETPOLL_WRITE) {
            uintptr_t ready = PD_READY;
            atomic_compare_exchange_strong(&pd->wg, &ready, PD_NIL);
        }
        if (ready_now(fd, events)) break;
        if (events == (NETPOLL_READ | NETPOLL_WRITE)) {
            uintptr_t nil = PD_NIL;
            if (!atomic_compare_exchange_strong(&pd->wg, &nil, PD_EITHER)) continue; /* an edge */
            err = pd_wait(pd, events);
            uintptr_t either = PD_EITHER;
            atomic_compare_exchange_strong(&pd->wg, &either, PD_NIL);
        } else {
            err = pd_wait(pd, events);
        }
        if (err) break;
    }
    if (events & NETPOLL_WRITE) hoare_mutex_unlock(&pd->wmu);
    if (events & NETPOLL_READ) hoare_mutex_unlock(&pd->rmu);
    pd_release(pd);
    return err;
}
