/*
 * poll_epoll.c - the Linux epoll backend of the network poller (see netpoll.h and docs/design.md ("Network poller")).
 *
 * One epoll instance for the process. Each descriptor is registered once, edge-triggered, for read,
 * write and peer hang-up; its event data carries the descriptor number and the registration's
 * sequence number (fd in the low 32 bits, seq in the high 32 bits), so that an event gathered for a
 * descriptor that was closed meanwhile (and whose number was reused) is recognised and dropped by the
 * generic layer. An eventfd, registered level-triggered, lets hoare__netpoll_break interrupt a
 * blocking hoare__netpoll.
 *
 * Replacing this file (kqueue, io_uring) replaces the backend: it has to provide hoare__netpoll_init,
 * hoare__netpoll, hoare__netpoll_break, hoare__netpoll_open and hoare__netpoll_close, and report
 * readiness through hoare__netpoll_ready.
 */
#ifdef HOARE_HAVE_VALGRIND
#include <valgrind/valgrind.h>
#endif
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "netpoll.h"
#include "uring.h"

/* The event data of the break eventfd: no descriptor registration can produce it (seq 0xffffffff
 * and fd -1 together). */
#define BREAK_TAG UINT64_MAX
/* The event data of the io_uring completion eventfd (uring.c): likewise never a registration's. */
#define URING_TAG (UINT64_MAX - 1)
#define EVENTS_PER_POLL 128

static struct {
    pthread_mutex_t init_lock; /* serialises attempts to create the poller */
    _Atomic bool ready;      /* epfd and breakfd are set (release by init, acquire by users) */
    int epfd;
    int breakfd;
    /* 1 while a break was written to breakfd and not yet consumed: later breaks are redundant. */
    _Atomic uint32_t break_pending;
    /* epoll_pwait2 (ns timeout) exists: 1 yes, 0 no (fall back to epoll_wait, ms rounded up). */
    _Atomic int have_pwait2;
    /* when a poll last returned: the monitor polls itself if nobody has for a while */
    _Atomic int64_t last_poll;
} netpoll = {.init_lock = PTHREAD_MUTEX_INITIALIZER, .have_pwait2 = 1};

/* Create the epoll instance and the break eventfd. Out of descriptors or memory (EMFILE, ENFILE,
 * ENOMEM) is not fatal: the runtime runs without a poller, descriptor calls fail with that error,
 * and a later call tries again. Called with init_lock held. */
static int netpoll_create(void) {
    int epfd = hoare__epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) return errno;
    int breakfd = hoare__eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (breakfd < 0) {
        int err = errno;
        close(epfd);
        return err;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = BREAK_TAG};
    if (hoare__epoll_ctl(epfd, EPOLL_CTL_ADD, breakfd, &ev) != 0) {
        int err = errno;
        close(breakfd);
        close(epfd);
        return err;
    }
    netpoll.epfd = epfd;
    netpoll.breakfd = breakfd;
#ifdef HOARE_HAVE_VALGRIND
    /* valgrind does not know epoll_pwait2 (and warns about it): use epoll_wait there */
    if (RUNNING_ON_VALGRIND) atomic_store(&netpoll.have_pwait2, 0);
#endif
    atomic_store_explicit(&netpoll.ready, true, memory_order_release);
    return 0;
}

int64_t hoare__netpoll_last(void) { return atomic_load_explicit(&netpoll.last_poll, memory_order_relaxed); }

int hoare__netpoll_init(void) {
    if (likely(atomic_load_explicit(&netpoll.ready, memory_order_acquire))) return 0;
    pthread_mutex_lock(&netpoll.init_lock);
    int err = atomic_load_explicit(&netpoll.ready, memory_order_acquire) ? 0 : netpoll_create();
    pthread_mutex_unlock(&netpoll.init_lock);
    return err;
}

int hoare__netpoll_open(int fd, uint32_t seq) {
    struct epoll_event ev = {
        .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
        .data.u64 = (uint64_t)seq << 32 | (uint32_t)fd,
    };
    if (hoare__epoll_ctl(netpoll.epfd, EPOLL_CTL_ADD, fd, &ev) == 0) return 0;
    /* Still registered: the same open file under this number was never deregistered (it was closed
     * with close(2) while a duplicate kept it alive). Take it over with the new tag. */
    if (errno == EEXIST && hoare__epoll_ctl(netpoll.epfd, EPOLL_CTL_MOD, fd, &ev) == 0) return 0;
    return errno;
}

int hoare__netpoll_open_uring(int efd) {
    /* Edge-triggered: every completion the kernel signals is a new edge; the reaper resets the
     * counter before draining, so none is missed. */
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.u64 = URING_TAG};
    return epoll_ctl(netpoll.epfd, EPOLL_CTL_ADD, efd, &ev) == 0 ? 0 : errno;
}

void hoare__netpoll_close(int fd) {
    /* Errors (ENOENT, EBADF) only mean there is nothing left to deregister. */
    (void)hoare__epoll_ctl(netpoll.epfd, EPOLL_CTL_DEL, fd, NULL);
}

void hoare__netpoll_break(void) {
    /* without a poller nobody can be blocked in it */
    if (!atomic_load_explicit(&netpoll.ready, memory_order_acquire)) return;
    if (atomic_exchange(&netpoll.break_pending, 1) != 0) return; /* a break is already on its way */
    uint64_t one = 1;
    while (write(netpoll.breakfd, &one, sizeof one) < 0 && errno == EINTR) {}
    /* EAGAIN (counter saturated) cannot happen: the poller drains the counter before clearing
     * break_pending, so at most one unconsumed increment exists. */
}

/* Consume a pending break so that the next blocking poll sleeps again. */
static void consume_break(void) {
    uint64_t count;
    while (read(netpoll.breakfd, &count, sizeof count) < 0 && errno == EINTR) {}
    atomic_store(&netpoll.break_pending, 0);
}

static int wait_events(struct epoll_event *evs, int64_t delay) {
    if (delay > 0 && atomic_load_explicit(&netpoll.have_pwait2, memory_order_relaxed)) {
        struct timespec ts = {.tv_sec = delay / HOARE_SEC, .tv_nsec = delay % HOARE_SEC};
        long n = syscall(SYS_epoll_pwait2, netpoll.epfd, evs, EVENTS_PER_POLL, &ts, NULL, 0);
        if (n >= 0 || errno != ENOSYS) return (int)n;
        atomic_store_explicit(&netpoll.have_pwait2, 0, memory_order_relaxed);
    }
    int ms;
    if (delay < 0) ms = -1;
    else if (delay == 0) ms = 0;
    else if (delay >= (int64_t)INT32_MAX * HOARE_MS) ms = INT32_MAX;
    else ms = (int)((delay + HOARE_MS - 1) / HOARE_MS); /* round up: never wake before a timer */
    return epoll_wait(netpoll.epfd, evs, EVENTS_PER_POLL, ms);
}

G *hoare__netpoll(int64_t delay) {
    if (!atomic_load_explicit(&netpoll.ready, memory_order_acquire)) {
        if (delay == 0) return NULL; /* nothing was ever registered: nothing to report */
        if (hoare__netpoll_init() != 0) {
            /* No poller (out of descriptors): nothing is registered, the caller only waits for a
             * timer. Sleep in short steps, since a break cannot reach this thread. */
            int64_t step = delay < 0 || delay > HOARE_MS ? HOARE_MS : delay;
            struct timespec ts = {.tv_sec = 0, .tv_nsec = step};
            nanosleep(&ts, NULL);
            return NULL;
        }
    }
    struct epoll_event evs[EVENTS_PER_POLL];
    int n;
    for (;;) {
        n = wait_events(evs, delay);
        if (n >= 0) break;
        if (errno != EINTR) hoare__fatal("netpoll: epoll_wait failed: %s", strerror(errno));
        /* Interrupted: a bounded wait returns so that the caller recomputes its timeout. */
        if (delay > 0) return NULL;
    }
    atomic_store_explicit(&netpoll.last_poll, hoare__nanotime(), memory_order_relaxed);
    G *list = NULL;
    for (int i = 0; i < n; i++) {
        uint64_t data = evs[i].data.u64;
        uint32_t events = evs[i].events;
        if (data == BREAK_TAG) {
            /* A non-blocking poll leaves the break for the thread that blocks (or will). */
            if (delay != 0) consume_break();
            continue;
        }
        if (data == URING_TAG) {
            hoare__uring_reap(&list);
            continue;
        }
        int modes = 0;
        if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) modes |= NETPOLL_READ;
        if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) modes |= NETPOLL_WRITE;
        hoare__netpoll_ready((int)(uint32_t)data, (uint32_t)(data >> 32), modes, &list);
    }
    return list;
}
