/*
 * poll_stub.c - TEMPORARY poller until poll_epoll.c lands: an eventfd to wait on with a timeout.
 * No descriptor waits. (Removed when the epoll poller is merged.)
 */
#include "runtime.h"

#include <poll.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

static int break_fd = -1;
static _Atomic uint32_t break_pending;

void hoare__netpoll_init(void) { break_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }

G *hoare__netpoll(int64_t delay) {
    struct pollfd pfd = {.fd = break_fd, .events = POLLIN};
    struct timespec ts, *tsp = NULL;
    if (delay >= 0) {
        ts.tv_sec = delay / 1000000000;
        ts.tv_nsec = delay % 1000000000;
        tsp = &ts;
    }
    if (ppoll(&pfd, 1, tsp, NULL) > 0) {
        uint64_t v;
        if (read(break_fd, &v, sizeof v) < 0) { /* drained by someone else */ }
        atomic_store(&break_pending, 0);
    }
    return NULL;
}

void hoare__netpoll_break(void) {
    if (atomic_exchange(&break_pending, 1)) return;
    uint64_t one = 1;
    if (write(break_fd, &one, sizeof one) < 0) { /* counter full: a wake-up is pending anyway */ }
}

int32_t hoare__netpoll_waiters(void) { return 0; }
