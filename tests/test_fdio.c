/*
 * test_fdio.c - descriptor calls: parking reads and writes, deadlines (read, write, accept,
 * connect), short reads with data still queued, peer reset, SIGPIPE, close waking waiters,
 * hoare_fd_wait, readv/writev, plain threads, descriptor number reuse under load, non-pollable files.
 *
 * Synchronisation with parked goroutines uses hoare__netpoll_waiters() (how many wait in the
 * poller): "wait until the reader is parked" is then exact, not a sleep.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "test.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <stddef.h>
#include <unistd.h>

#include "runtime.h"

static void socket_pair(int sv[2]) {
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
}

/* Wait until at least n callers are parked in the poller. */
static void wait_parked(int32_t n) {
    while (hoare__netpoll_waiters() < n) hoare_sleep(HOARE_MS / 2);
}

/* A listening TCP socket on 127.0.0.1 (port chosen by the kernel); *port gets the port. */
static int listen_loopback(int *port) {
    int lfd = hoare_net_listen("tcp4", "127.0.0.1:0");
    REQUIRE(lfd >= 0);
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;
    REQUIRE(getsockname(lfd, (struct sockaddr *)&sin, &len) == 0);
    *port = ntohs(sin.sin_port);
    return lfd;
}

static int dial_loopback(int port) {
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    int fd = hoare_net_dial("tcp", addr, 5 * HOARE_SEC);
    REQUIRE(fd >= 0);
    return fd;
}

/* A connected TCP pair over loopback. */
static void tcp_pair(int *client, int *server) {
    int port;
    int lfd = listen_loopback(&port);
    *client = dial_loopback(port);
    *server = hoare_fd_accept(lfd, NULL, NULL);
    REQUIRE(*server >= 0);
    hoare_fd_close(lfd);
}

/* ------------------------------------------------------------------ read parks until data */

struct rw_arg {
    int fd;
    _Atomic ssize_t result;
    char buf[64];
    int64_t elapsed;
    hoare_wg *wg;
};

static void reader(void *p) {
    struct rw_arg *a = p;
    int64_t t0 = hoare_now();
    a->result = hoare_fd_read(a->fd, a->buf, sizeof a->buf);
    a->elapsed = hoare_now() - t0;
    hoare_wg_done(a->wg);
}

static void test_read_parks(void) {
    int sv[2];
    socket_pair(sv);
    hoare_wg wg = HOARE_WG_INIT;
    struct rw_arg a = {.fd = sv[0], .wg = &wg};
    hoare_wg_add(&wg, 1);
    REQUIRE(hoare_go(reader, &a) == 0);
    wait_parked(1);
    CHECK_EQ(hoare_fd_write(sv[1], "ping", 4), 4);
    hoare_wg_wait(&wg);
    CHECK_EQ(a.result, 4);
    CHECK(memcmp(a.buf, "ping", 4) == 0);
    /* Data already there is read without waiting. */
    CHECK_EQ(hoare_fd_write(sv[1], "abc", 3), 3);
    char buf[8];
    CHECK_EQ(hoare_fd_read(sv[0], buf, sizeof buf), 3);
    CHECK_EQ(hoare_fd_write(sv[1], "de", 2), 2);
    CHECK_EQ(hoare_fd_read(sv[0], buf, sizeof buf), 2);
    /* EOF */
    CHECK_EQ(hoare_fd_close(sv[1]), 0);
    CHECK_EQ(hoare_fd_read(sv[0], buf, sizeof buf), 0);
    CHECK_EQ(hoare_fd_close(sv[0]), 0);
}

/* ------------------------------------------------------------------ a short read, data still queued */

/* Read `want` (a short read: the buffer is larger) and then the rest, which was queued before the
 * first read: the second read must return it at once. The queued data brought no edge after the
 * first read, so a reader that parked there (taking the short read for an empty queue) would wait
 * for the deadline. */
static void check_read_after_short(int fd, const char *want, const char *rest) {
    /* The only reason for this sleep: let the poller take the edges of the queued data, so that
     * none is left to wake a reader that wrongly parks (the outcome below does not depend on it). */
    hoare_sleep(5 * HOARE_MS);
    CHECK_EQ(hoare_fd_wait(fd, 1), 0); /* forgets the edges taken */
    char buf[64];
    CHECK_EQ(hoare_fd_read(fd, buf, sizeof buf), (ssize_t)strlen(want));
    CHECK(memcmp(buf, want, strlen(want)) == 0);
    CHECK_EQ(hoare_fd_set_read_deadline(fd, hoare_now() + 2 * HOARE_SEC), 0);
    int64_t t0 = hoare_now();
    CHECK_EQ(hoare_fd_read(fd, buf, sizeof buf), (ssize_t)strlen(rest));
    CHECK(memcmp(buf, rest, strlen(rest)) == 0);
    CHECK(hoare_now() - t0 < HOARE_SEC);
    CHECK_EQ(hoare_fd_set_read_deadline(fd, 0), 0);
}

static void short_reads(void *wg) {
    /* TCP stops a read at the urgent mark: "abc" | urgent "X" (out of band) | "def". */
    int c, s;
    tcp_pair(&c, &s);
    CHECK_EQ(send(c, "abc", 3, 0), 3);
    CHECK_EQ(send(c, "X", 1, MSG_OOB), 1);
    CHECK_EQ(send(c, "def", 3, 0), 3);
    /* Loopback: once nothing is left unacknowledged, all of it is in s's receive queue. */
    for (int unacked = -1; ioctl(c, SIOCOUTQ, &unacked) == 0 && unacked > 0;) hoare_sleep(HOARE_MS);
    check_read_after_short(s, "abc", "def");
    hoare_fd_close(c);
    hoare_fd_close(s);

    /* A Unix stream socket stops a read after the bytes that carried descriptors (SCM_RIGHTS). */
    int sv[2];
    socket_pair(sv);
    CHECK_EQ(hoare_fd_set_read_deadline(sv[0], 0), 0); /* registers it, so the data brings edges */
    char control[CMSG_SPACE(sizeof(int))] = {0};
    struct iovec iov = {"abc", 3};
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &sv[1], sizeof(int));
    CHECK_EQ(sendmsg(sv[1], &msg, 0), 3);
    CHECK_EQ(send(sv[1], "def", 3, 0), 3);
    check_read_after_short(sv[0], "abc", "def"); /* read(2) closes the descriptor received */
    hoare_fd_close(sv[0]);
    hoare_fd_close(sv[1]);
    hoare_wg_done(wg);
}

/* In a goroutine: its sleep is a runtime timer, which an idle thread waits for in the poller. */
static void test_short_read_not_empty(void) {
    hoare_wg wg = HOARE_WG_INIT;
    hoare_wg_add(&wg, 1);
    REQUIRE(hoare_go(short_reads, &wg) == 0);
    hoare_wg_wait(&wg);
}

/* ------------------------------------------------------------------ deadlines */

static void test_read_deadline(void) {
    int sv[2];
    socket_pair(sv);
    char buf[8];
    int64_t t0 = hoare_now();
    CHECK_EQ(hoare_fd_set_read_deadline(sv[0], t0 + 50 * HOARE_MS), 0);
    CHECK_EQ(hoare_fd_read(sv[0], buf, sizeof buf), -ETIMEDOUT);
    int64_t el = hoare_now() - t0;
    CHECK(el >= 49 * HOARE_MS);
    CHECK(el < 3 * HOARE_SEC);
    /* Expired stays expired, even with data there (as Go). */
    CHECK_EQ(hoare_fd_write(sv[1], "x", 1), 1);
    CHECK_EQ(hoare_fd_read(sv[0], buf, sizeof buf), -ETIMEDOUT);
    /* Writes are not affected by the read deadline. */
    CHECK_EQ(hoare_fd_write(sv[0], "y", 1), 1);
    /* Clearing it makes reads work again. */
    CHECK_EQ(hoare_fd_set_read_deadline(sv[0], 0), 0);
    CHECK_EQ(hoare_fd_read(sv[0], buf, sizeof buf), 1);
    /* A deadline in the past fails at once; one far away does not interfere. */
    CHECK_EQ(hoare_fd_set_read_deadline(sv[0], hoare_now() - HOARE_SEC), 0);
    CHECK_EQ(hoare_fd_read(sv[0], buf, sizeof buf), -ETIMEDOUT);
    CHECK_EQ(hoare_fd_set_read_deadline(sv[0], hoare_now() + 3600 * HOARE_SEC), 0);
    CHECK_EQ(hoare_fd_write(sv[1], "z", 1), 1);
    CHECK_EQ(hoare_fd_read(sv[0], buf, sizeof buf), 1);

    /* A deadline set while a goroutine waits wakes it. */
    hoare_wg wg = HOARE_WG_INIT;
    struct rw_arg a = {.fd = sv[0], .wg = &wg};
    hoare_wg_add(&wg, 1);
    REQUIRE(hoare_go(reader, &a) == 0);
    wait_parked(1);
    CHECK_EQ(hoare_fd_set_deadline(sv[0], hoare_now() + 20 * HOARE_MS), 0);
    hoare_wg_wait(&wg);
    CHECK_EQ(a.result, -ETIMEDOUT);
    /* Moving a deadline back to the past wakes a waiter at once, too. */
    CHECK_EQ(hoare_fd_set_deadline(sv[0], hoare_now() + 3600 * HOARE_SEC), 0);
    hoare_wg_add(&wg, 1);
    REQUIRE(hoare_go(reader, &a) == 0);
    wait_parked(1);
    CHECK_EQ(hoare_fd_set_read_deadline(sv[0], 1), 0);
    hoare_wg_wait(&wg);
    CHECK_EQ(a.result, -ETIMEDOUT);
    CHECK(a.elapsed < 3 * HOARE_SEC);
    CHECK_EQ(hoare_fd_close(sv[0]), 0);
    CHECK_EQ(hoare_fd_close(sv[1]), 0);
    /* Not a descriptor of ours any more. */
    CHECK_EQ(hoare_fd_set_deadline(sv[0], 0), EBADF);
}

static void test_write_deadline(void) {
    int c, s;
    tcp_pair(&c, &s);
    int small = 4096;
    setsockopt(c, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    setsockopt(s, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    static char big[1 << 20];
    int64_t t0 = hoare_now();
    CHECK_EQ(hoare_fd_set_write_deadline(c, t0 + 100 * HOARE_MS), 0);
    /* Nobody reads: writes block, then the deadline stops them; the first may report a partial
     * count, a later one the error. */
    ssize_t n = 0;
    int rounds = 0;
    while ((n = hoare_fd_write(c, big, sizeof big)) > 0 && ++rounds < 100) {
        CHECK(n < (ssize_t)sizeof big);
    }
    CHECK_EQ(n, -ETIMEDOUT);
    int64_t el = hoare_now() - t0;
    CHECK(el >= 99 * HOARE_MS);
    CHECK(el < 3 * HOARE_SEC);
    /* The read side of the same descriptor still works. */
    CHECK_EQ(hoare_fd_write(s, "r", 1), 1);
    char buf[4];
    CHECK_EQ(hoare_fd_read(c, buf, sizeof buf), 1);
    hoare_fd_close(c);
    hoare_fd_close(s);
}

static void test_accept_deadline(void) {
    int port;
    int lfd = listen_loopback(&port);
    int64_t t0 = hoare_now();
    CHECK_EQ(hoare_fd_set_read_deadline(lfd, t0 + 50 * HOARE_MS), 0);
    CHECK_EQ(hoare_fd_accept(lfd, NULL, NULL), -ETIMEDOUT);
    int64_t el = hoare_now() - t0;
    CHECK(el >= 49 * HOARE_MS);
    CHECK(el < 3 * HOARE_SEC);
    /* With the deadline cleared, a pending connection is accepted. */
    CHECK_EQ(hoare_fd_set_read_deadline(lfd, 0), 0);
    int c = dial_loopback(port);
    struct sockaddr_in peer;
    socklen_t plen = sizeof peer;
    int s = hoare_fd_accept(lfd, &peer, &plen);
    CHECK(s >= 0);
    CHECK_EQ(peer.sin_family, AF_INET);
    CHECK_EQ(ntohl(peer.sin_addr.s_addr), INADDR_LOOPBACK);
    /* Accepted descriptors: non-blocking, close-on-exec, TCP_NODELAY (as Go). */
    CHECK(fcntl(s, F_GETFL) & O_NONBLOCK);
    CHECK(fcntl(s, F_GETFD) & FD_CLOEXEC);
    int nodelay = 0;
    socklen_t olen = sizeof nodelay;
    CHECK(getsockopt(s, IPPROTO_TCP, TCP_NODELAY, &nodelay, &olen) == 0 && nodelay);
    hoare_fd_close(s);
    hoare_fd_close(c);
    hoare_fd_close(lfd);
}

/* A listener that never accepts, with a full queue: SYNs to it are dropped, so connects hang. */
static int full_listener(int *port, int *queued, int nqueued) {
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(lfd >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    REQUIRE(bind(lfd, (struct sockaddr *)&sin, sizeof sin) == 0);
    REQUIRE(listen(lfd, 0) == 0);
    socklen_t len = sizeof sin;
    REQUIRE(getsockname(lfd, (struct sockaddr *)&sin, &len) == 0);
    *port = ntohs(sin.sin_port);
    for (int i = 0; i < nqueued; i++) {
        queued[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        REQUIRE(queued[i] >= 0);
        (void)connect(queued[i], (struct sockaddr *)&sin, sizeof sin);
    }
    return lfd;
}

static void test_connect_deadline(void) {
    int port, queued[4];
    int lfd = full_listener(&port, queued, 4);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                              .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    int64_t t0 = hoare_now();
    CHECK_EQ(hoare_fd_set_write_deadline(fd, t0 + 100 * HOARE_MS), 0);
    CHECK_EQ(hoare_fd_connect(fd, &sin, sizeof sin), -ETIMEDOUT);
    int64_t el = hoare_now() - t0;
    CHECK(el >= 99 * HOARE_MS);
    CHECK(el < 3 * HOARE_SEC);
    hoare_fd_close(fd);
    /* The same through hoare_net_dial's timeout. */
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    t0 = hoare_now();
    CHECK_EQ(hoare_net_dial("tcp", addr, 100 * HOARE_MS), -ETIMEDOUT);
    el = hoare_now() - t0;
    CHECK(el >= 99 * HOARE_MS);
    CHECK(el < 3 * HOARE_SEC);
    for (int i = 0; i < 4; i++) close(queued[i]);
    close(lfd);
}

/* ------------------------------------------------------------------ peer reset, SIGPIPE */

struct bulk_arg {
    int fd;
    ssize_t first, second;
    hoare_wg *wg;
};

static void bulk_writer(void *p) {
    struct bulk_arg *a = p;
    size_t len = 16 << 20;
    char *buf = calloc(1, len);
    REQUIRE(buf);
    a->first = hoare_fd_write(a->fd, buf, len);
    a->second = hoare_fd_write(a->fd, buf, len);
    free(buf);
    hoare_wg_done(a->wg);
}

static void test_peer_reset(void) {
    int c, s;
    tcp_pair(&c, &s);
    hoare_wg wg = HOARE_WG_INIT;
    struct bulk_arg a = {.fd = c, .wg = &wg};
    hoare_wg_add(&wg, 1);
    REQUIRE(hoare_go(bulk_writer, &a) == 0);
    /* Read a little so that the writer is surely under way, then reset the connection. */
    char buf[4096];
    CHECK(hoare_fd_read(s, buf, sizeof buf) > 0);
    struct linger lg = {1, 0};
    REQUIRE(setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0);
    CHECK_EQ(hoare_fd_close(s), 0); /* RST */
    hoare_wg_wait(&wg);
    /* 16 MiB cannot have gone through: the first write stopped early (partial count or error),
     * the second reports the reset. */
    CHECK(a.first < (ssize_t)(16 << 20));
    CHECK(a.second == -ECONNRESET || a.second == -EPIPE);
    hoare_fd_close(c);

    /* A pipe without reader: EPIPE, and no SIGPIPE (its default action would kill us). */
    signal(SIGPIPE, SIG_DFL);
    int pfd[2];
    REQUIRE(pipe(pfd) == 0);
    close(pfd[0]);
    CHECK_EQ(hoare_fd_write(pfd[1], "x", 1), -EPIPE);
    struct iovec iov[2] = {{"a", 1}, {"b", 1}};
    CHECK_EQ(hoare_fd_writev(pfd[1], iov, 2), -EPIPE);
    sigset_t pending;
    sigpending(&pending);
    CHECK(!sigismember(&pending, SIGPIPE));
    CHECK_EQ(hoare_fd_close(pfd[1]), 0);
    /* A socket whose peer is gone: EPIPE, no SIGPIPE either. */
    int sv[2];
    socket_pair(sv);
    close(sv[1]);
    CHECK_EQ(hoare_fd_write(sv[0], "x", 1), -EPIPE);
    CHECK_EQ(hoare_fd_close(sv[0]), 0);
}

/* ------------------------------------------------------------------ close wakes waiters */

struct close_arg {
    int fd;
    int kind; /* 0 read, 1 write (buffer full), 2 accept, 3 wait */
    _Atomic ssize_t result;
    hoare_wg *wg;
};

static void close_waiter(void *p) {
    struct close_arg *a = p;
    static char big[1 << 20];
    char buf[16];
    switch (a->kind) {
    case 0: a->result = hoare_fd_read(a->fd, buf, sizeof buf); break;
    case 1: {
        ssize_t n;
        while ((n = hoare_fd_write(a->fd, big, sizeof big)) > 0) {}
        a->result = n;
        break;
    }
    case 2: a->result = hoare_fd_accept(a->fd, NULL, NULL); break;
    default: a->result = hoare_fd_wait(a->fd, 1); break;
    }
    if (a->wg) hoare_wg_done(a->wg);
}

static void *close_waiter_thread(void *p) {
    close_waiter(p);
    return NULL;
}

static void test_close_wakes(void) {
    for (int kind = 0; kind < 4; kind++) {
        int fds[2], lfd = -1, port;
        if (kind == 2) {
            lfd = listen_loopback(&port);
            fds[0] = lfd;
            fds[1] = -1;
        } else {
            socket_pair(fds);
        }
        hoare_wg wg = HOARE_WG_INIT;
        struct close_arg a = {.fd = fds[0], .kind = kind, .wg = &wg};
        hoare_wg_add(&wg, 1);
        REQUIRE(hoare_go(close_waiter, &a) == 0);
        wait_parked(1);
        CHECK_EQ(hoare_fd_close(fds[0]), 0);
        hoare_wg_wait(&wg);
        CHECK_EQ(a.result, -EBADF);
        /* The waiter is out: the number is closed now. */
        CHECK(fcntl(fds[0], F_GETFD) < 0 && errno == EBADF);
        CHECK_EQ(hoare_fd_close(fds[0]), EBADF);
        if (fds[1] >= 0) hoare_fd_close(fds[1]);
    }
    /* A plain thread waiting in a read is woken too. */
    int sv[2];
    socket_pair(sv);
    struct close_arg a = {.fd = sv[0], .kind = 0};
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, close_waiter_thread, &a) == 0);
    wait_parked(1);
    CHECK_EQ(hoare_fd_close(sv[0]), 0);
    pthread_join(th, NULL);
    CHECK_EQ(a.result, -EBADF);
    hoare_fd_close(sv[1]);
    /* Calls on a closed descriptor. */
    char c;
    CHECK_EQ(hoare_fd_read(sv[0], &c, 1), -EBADF);
    CHECK_EQ(hoare_fd_read(-1, &c, 1), -EBADF);
    CHECK_EQ(hoare_fd_write(-5, &c, 1), -EBADF);
}

/* ------------------------------------------------------------------ hoare_fd_wait */

static void test_wait(void) {
    int sv[2];
    socket_pair(sv);
    CHECK_EQ(hoare_fd_wait(sv[0], 0), -EINVAL);
    CHECK_EQ(hoare_fd_wait(sv[0], 4), -EINVAL);
    CHECK_EQ(hoare_fd_wait(sv[0], 2), 0); /* writable now */
    CHECK_EQ(hoare_fd_wait(sv[0], 3), 0);
    /* Level-triggered: data already there is reported, twice. */
    CHECK_EQ(hoare_fd_write(sv[1], "a", 1), 1);
    CHECK_EQ(hoare_fd_wait(sv[0], 1), 0);
    CHECK_EQ(hoare_fd_wait(sv[0], 1), 0);
    char buf[4];
    CHECK_EQ(hoare_fd_read(sv[0], buf, sizeof buf), 1);
    /* Deadline. */
    int64_t t0 = hoare_now();
    CHECK_EQ(hoare_fd_set_read_deadline(sv[0], t0 + 30 * HOARE_MS), 0);
    CHECK_EQ(hoare_fd_wait(sv[0], 1), -ETIMEDOUT);
    CHECK(hoare_now() - t0 >= 29 * HOARE_MS);
    CHECK_EQ(hoare_fd_set_read_deadline(sv[0], 0), 0);
    /* A parked waiter wakes when data comes. */
    hoare_wg wg = HOARE_WG_INIT;
    struct close_arg a = {.fd = sv[0], .kind = 3, .wg = &wg};
    hoare_wg_add(&wg, 1);
    REQUIRE(hoare_go(close_waiter, &a) == 0);
    wait_parked(1);
    CHECK_EQ(hoare_fd_write(sv[1], "b", 1), 1);
    hoare_wg_wait(&wg);
    CHECK_EQ(a.result, 0);
    CHECK_EQ(hoare_fd_read(sv[0], buf, sizeof buf), 1);
    hoare_fd_close(sv[0]);
    hoare_fd_close(sv[1]);

}

struct either_arg {
    int fd;
    _Atomic int result;
    _Atomic bool done;
    hoare_wg *wg;
};

static void either_waiter(void *p) {
    struct either_arg *a = p;
    a->result = hoare_fd_wait(a->fd, 3);
    a->done = true;
    hoare_wg_done(a->wg);
}

/* Fill the send buffer of fd (nothing is read on the other side). */
static void fill(int fd) {
    static char big[1 << 16];
    while (send(fd, big, sizeof big, MSG_DONTWAIT) > 0) {}
}

static void test_wait_either(void) {
    int c, s;
    tcp_pair(&c, &s);
    fill(c);
    char buf[1 << 16];
    /* Nothing to read, nothing writable: waits until the deadline. */
    CHECK_EQ(hoare_fd_set_deadline(c, hoare_now() + 30 * HOARE_MS), 0);
    CHECK_EQ(hoare_fd_wait(c, 3), -ETIMEDOUT);
    CHECK_EQ(hoare_fd_set_deadline(c, 0), 0);
    hoare_wg wg = HOARE_WG_INIT;
    struct either_arg a = {.fd = c, .wg = &wg};
    /* Woken by readability. */
    hoare_wg_add(&wg, 1);
    REQUIRE(hoare_go(either_waiter, &a) == 0);
    wait_parked(1);
    CHECK_EQ(hoare_fd_write(s, "r", 1), 1);
    hoare_wg_wait(&wg);
    CHECK_EQ(a.result, 0);
    CHECK_EQ(hoare_fd_read(c, buf, 1), 1);
    /* Woken by writability: the peer drains until the waiter is done. */
    a.done = false;
    hoare_wg_add(&wg, 1);
    REQUIRE(hoare_go(either_waiter, &a) == 0);
    wait_parked(1);
    while (!a.done) {
        if (recv(s, buf, sizeof buf, MSG_DONTWAIT) <= 0) hoare_sleep(HOARE_MS / 2);
    }
    hoare_wg_wait(&wg);
    CHECK_EQ(a.result, 0);
    /* Woken by close. */
    fill(c);
    a.done = false;
    hoare_wg_add(&wg, 1);
    REQUIRE(hoare_go(either_waiter, &a) == 0);
    wait_parked(1);
    hoare_fd_close(c);
    hoare_wg_wait(&wg);
    CHECK_EQ(a.result, -EBADF);
    hoare_fd_close(s);
}

/* ------------------------------------------------------------------ readv / writev */

struct sink_arg {
    int fd;
    size_t want, got;
    uint32_t sum;
    hoare_wg *wg;
};

static void sink(void *p) {
    struct sink_arg *a = p;
    char buf[3000];
    while (a->got < a->want) {
        ssize_t n = hoare_fd_read(a->fd, buf, sizeof buf);
        if (n <= 0) break;
        for (ssize_t i = 0; i < n; i++) a->sum = a->sum * 31 + (unsigned char)buf[i];
        a->got += (size_t)n;
    }
    hoare_wg_done(a->wg);
}

static void test_vectored(void) {
    int c, s;
    tcp_pair(&c, &s);
    /* writev larger than the socket buffers: partial writes continue mid-vector. */
    enum { PARTS = 5, PART = 300000 };
    static char parts[PARTS][PART];
    struct iovec iov[PARTS + 1];
    uint32_t sum = 0;
    for (int i = 0; i < PARTS; i++) {
        for (int j = 0; j < PART; j++) parts[i][j] = (char)(i * 7 + j * 13);
        iov[i].iov_base = parts[i];
        iov[i].iov_len = PART;
    }
    iov[PARTS] = (struct iovec){NULL, 0};
    for (int i = 0; i < PARTS; i++)
        for (int j = 0; j < PART; j++) sum = sum * 31 + (unsigned char)parts[i][j];
    hoare_wg wg = HOARE_WG_INIT;
    struct sink_arg a = {.fd = s, .want = (size_t)PARTS * PART, .wg = &wg};
    hoare_wg_add(&wg, 1);
    REQUIRE(hoare_go(sink, &a) == 0);
    CHECK_EQ(hoare_fd_writev(c, iov, PARTS + 1), (ssize_t)PARTS * PART);
    hoare_wg_wait(&wg);
    CHECK_EQ(a.got, (size_t)PARTS * PART);
    CHECK_EQ(a.sum, sum);
    /* readv */
    CHECK_EQ(hoare_fd_write(s, "hello world", 11), 11);
    char x[5], y[16];
    struct iovec riov[2] = {{x, sizeof x}, {y, sizeof y}};
    CHECK_EQ(hoare_fd_readv(c, riov, 2), 11);
    CHECK(memcmp(x, "hello", 5) == 0 && memcmp(y, " world", 6) == 0);
    CHECK_EQ(hoare_fd_readv(c, riov, -1), -EINVAL);
    hoare_fd_close(c);
    hoare_fd_close(s);

    /* More buffers than IOV_MAX: writev writes them all (in several system calls), readv fills the
     * first IOV_MAX. A Unix socket: what was written is all queued before the reads. */
    enum { MANY = IOV_MAX + 476 };
    static char out[MANY], in[MANY];
    static struct iovec wmany[MANY], rmany[MANY];
    for (int i = 0; i < MANY; i++) {
        out[i] = (char)(i * 7);
        wmany[i] = (struct iovec){&out[i], 1};
        rmany[i] = (struct iovec){&in[i], 1};
    }
    int sv[2];
    socket_pair(sv);
    CHECK_EQ(hoare_fd_set_read_deadline(sv[1], hoare_now() + 5 * HOARE_SEC), 0); /* if nothing came */
    CHECK_EQ(hoare_fd_writev(sv[0], wmany, MANY), MANY);
    CHECK_EQ(hoare_fd_readv(sv[1], rmany, MANY), IOV_MAX);
    CHECK_EQ(hoare_fd_readv(sv[1], rmany + IOV_MAX, MANY - IOV_MAX), MANY - IOV_MAX);
    CHECK(memcmp(in, out, MANY) == 0);
    hoare_fd_close(sv[0]);
    hoare_fd_close(sv[1]);
    /* A datagram cannot be split: the kernel refuses one of more than IOV_MAX buffers; a read of
     * one into more buffers is just a read. */
    REQUIRE(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv) == 0);
    CHECK_EQ(hoare_fd_writev(sv[0], wmany, IOV_MAX + 1), -EMSGSIZE);
    CHECK_EQ(hoare_fd_writev(sv[0], wmany, 3), 3);
    CHECK_EQ(hoare_fd_readv(sv[1], rmany, MANY), 3);
    hoare_fd_close(sv[0]);
    hoare_fd_close(sv[1]);
}

/* ------------------------------------------------------------------ plain threads, two readers */

static void delayed_writer(void *p) {
    int fd = *(int *)p;
    hoare_sleep(20 * HOARE_MS);
    hoare_fd_write(fd, "late", 4);
}

static void test_plain_thread_and_turns(void) {
    int pfd[2];
    REQUIRE(pipe2(pfd, O_CLOEXEC) == 0);
    REQUIRE(hoare_go(delayed_writer, &pfd[1]) == 0);
    char buf[8];
    CHECK_EQ(hoare_fd_read(pfd[0], buf, sizeof buf), 4); /* main() parks in the poller */
    CHECK(fcntl(pfd[0], F_GETFL) & O_NONBLOCK);
    /* Two readers on one descriptor take turns: each gets one of two messages. */
    hoare_wg wg = HOARE_WG_INIT;
    struct rw_arg r1 = {.fd = pfd[0], .wg = &wg}, r2 = {.fd = pfd[0], .wg = &wg};
    hoare_wg_add(&wg, 2);
    REQUIRE(hoare_go(reader, &r1) == 0);
    REQUIRE(hoare_go(reader, &r2) == 0);
    wait_parked(1);
    CHECK_EQ(hoare_fd_write(pfd[1], "1", 1), 1);
    /* Only once the first message was taken may the second be written (else one read gets both). */
    while (r1.result == 0 && r2.result == 0) hoare_sleep(HOARE_MS / 2);
    wait_parked(1);
    CHECK_EQ(hoare_fd_write(pfd[1], "2", 1), 1);
    hoare_wg_wait(&wg);
    CHECK_EQ(r1.result, 1);
    CHECK_EQ(r2.result, 1);
    CHECK(r1.buf[0] != r2.buf[0]);
    hoare_fd_close(pfd[0]);
    hoare_fd_close(pfd[1]);
}

/* ------------------------------------------------------------------ reuse of descriptor numbers */

struct churn_arg {
    int rounds;
    _Atomic int *errors;
    hoare_wg *wg;
};

static void churn(void *p) {
    struct churn_arg *a = p;
    for (int i = 0; i < a->rounds; i++) {
        int sv[2];
        socket_pair(sv);
        uint32_t v = (uint32_t)i * 2654435761u, got = 0;
        hoare_fd_write(sv[1], &v, sizeof v);
        if (hoare_fd_read(sv[0], &got, sizeof got) != sizeof got || got != v) atomic_fetch_add(a->errors, 1);
        hoare_fd_close(sv[0]);
        hoare_fd_close(sv[1]);
    }
    hoare_wg_done(a->wg);
}

struct pingpong_arg {
    int fd, rounds;
    _Atomic int *errors;
    hoare_wg *wg;
};

static void pinger(void *p) {
    struct pingpong_arg *a = p;
    for (int i = 0; i < a->rounds; i++) {
        uint32_t v = (uint32_t)i, got;
        if (hoare_fd_write(a->fd, &v, 4) != 4 || hoare_fd_read(a->fd, &got, 4) != 4 || got != v + 1)
            atomic_fetch_add(a->errors, 1);
    }
    hoare_fd_close(a->fd);
    hoare_wg_done(a->wg);
}

static void ponger(void *p) {
    struct pingpong_arg *a = p;
    uint32_t v;
    while (hoare_fd_read(a->fd, &v, 4) == 4) {
        v++;
        if (hoare_fd_write(a->fd, &v, 4) != 4) break;
    }
    hoare_fd_close(a->fd);
    hoare_wg_done(a->wg);
}

static void test_churn(void) {
    enum { PAIRS = 8 };
    _Atomic int errors = 0;
    hoare_wg wg = HOARE_WG_INIT;
    struct churn_arg ca = {.rounds = TEST_SCALE(2000), .errors = &errors, .wg = &wg};
    struct pingpong_arg pa[PAIRS][2];
    for (int i = 0; i < PAIRS; i++) {
        hoare_wg_add(&wg, 3);
        REQUIRE(hoare_go(churn, &ca) == 0);
        int sv[2];
        socket_pair(sv);
        pa[i][0] = (struct pingpong_arg){sv[0], TEST_SCALE(2000), &errors, &wg};
        pa[i][1] = (struct pingpong_arg){sv[1], 0, &errors, &wg};
        REQUIRE(hoare_go(pinger, &pa[i][0]) == 0);
        REQUIRE(hoare_go(ponger, &pa[i][1]) == 0);
    }
    hoare_wg_wait(&wg);
    CHECK_EQ(atomic_load(&errors), 0);
    CHECK_EQ(hoare__netpoll_waiters(), 0);
}

/* ------------------------------------------------------------------ a regular file */

static void test_regular_file(void) {
    char path[] = "/tmp/hoare_fdio_XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    unlink(path);
    CHECK_EQ(hoare_fd_write(fd, "file data", 9), 9);
    REQUIRE(lseek(fd, 0, SEEK_SET) == 0);
    char buf[16];
    CHECK_EQ(hoare_fd_read(fd, buf, sizeof buf), 9);
    CHECK(memcmp(buf, "file data", 9) == 0);
    CHECK_EQ(hoare_fd_read(fd, buf, sizeof buf), 0);
    CHECK_EQ(hoare_fd_wait(fd, 1), 0);
    CHECK_EQ(hoare_fd_close(fd), 0);
    /* Closing a descriptor never used with these calls just closes it. */
    int sv[2];
    socket_pair(sv);
    CHECK_EQ(hoare_fd_close(sv[0]), 0);
    CHECK_EQ(hoare_fd_close(sv[0]), EBADF);
    close(sv[1]);
}

/* ------------------------------------------------------------------ descriptor numbers reused */

/* A call that starts on a number after hoare_fd_close, once the kernel has given the number to a
 * socket that dial or accept is about to register, registers it for that socket and parks. The
 * state is made here directly: a reader parked on a number whose descriptor goes away behind the
 * runtime's back, then a dial that gets the number. The dial's registration once reset the slot
 * under the reader (it never woke; its call count was lost). It must keep the reader, who then
 * reads from the new socket. */
static void test_number_reused_under_a_call(void) {
    /* TSan reports the close(2) behind the runtime's back as racing with the parked read: it is
     * the point of the scenario */
    if (TEST_TSAN) return;
    int port;
    int lfd = listen_loopback(&port);
    int sv[2];
    socket_pair(sv);
    int x = sv[0];
    hoare_wg wg = HOARE_WG_INIT;
    struct rw_arg a = {.fd = x, .wg = &wg};
    hoare_wg_add(&wg, 1);
    REQUIRE(hoare_fd_set_read_deadline(x, hoare_now() + 10 * HOARE_SEC) == 0);
    REQUIRE(hoare_go(reader, &a) == 0);
    wait_parked(1);
    REQUIRE(close(x) == 0); /* the number is free in the kernel; the reader still counts on it */
    int c = dial_loopback(port);
    if (c != x) {
        fprintf(stderr, "number reuse: dial got %d, not %d: not checked\n", c, x);
        REQUIRE(hoare_fd_set_read_deadline(x, 1) == 0); /* let the reader go */
    } else {
        int srv = hoare_fd_accept(lfd, NULL, NULL);
        REQUIRE(srv >= 0);
        CHECK_EQ(hoare_fd_write(srv, "hi", 2), 2);
        hoare_fd_close(srv);
    }
    hoare_wg_wait(&wg);
    if (c == x) {
        /* the data, or what the new socket said when the reader woke before its connect was
         * done (-ENOTCONN): either way it woke (the lost reader never did: its deadline was disarmed) */
        CHECK(a.result == 2 || a.result == -ENOTCONN);
        CHECK(a.elapsed < 5 * HOARE_SEC);
        CHECK_EQ(hoare_fd_close(c), 0);
        CHECK(fcntl(x, F_GETFD) < 0); /* closed, not held for ever by a lost call count */
    } else {
        hoare_fd_close(c);
        hoare_fd_close(x);
    }
    hoare_fd_close(sv[1]);
    hoare_fd_close(lfd);
}

/* What accepted sockets are is learnt per listener: a TCP listener on the number of a closed
 * Unix-socket listener once inherited its answer, and its sockets went without TCP_NODELAY. */
static void test_listener_number_reused(void) {
    int u = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(u >= 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path + 1, sizeof sun.sun_path - 1, "hoare-test-fdio-%d", (int)getpid());
    socklen_t sl = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(sun.sun_path + 1));
    REQUIRE(bind(u, (struct sockaddr *)&sun, sl) == 0 && listen(u, 4) == 0);
    int uc = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(uc >= 0 && connect(uc, (struct sockaddr *)&sun, sl) == 0);
    int ua = hoare_fd_accept(u, NULL, NULL);
    REQUIRE(ua >= 0);
    hoare_fd_close(ua);
    close(uc);
    hoare_fd_close(u);
    int port;
    int lfd = listen_loopback(&port);
    if (lfd != u) fprintf(stderr, "listener number reuse: got %d, not %d: checked anyway\n", lfd, u);
    int c = dial_loopback(port);
    int srv = hoare_fd_accept(lfd, NULL, NULL);
    REQUIRE(srv >= 0);
    int nodelay = 0;
    socklen_t len = sizeof nodelay;
    REQUIRE(getsockopt(srv, IPPROTO_TCP, TCP_NODELAY, &nodelay, &len) == 0);
    CHECK_EQ(nodelay, 1);
    hoare_fd_close(srv);
    hoare_fd_close(c);
    hoare_fd_close(lfd);
}

int main(int argc, char **argv) {
    test_begin(argv, 60);
    test_read_parks();
    test_short_read_not_empty();
    test_read_deadline();
    test_write_deadline();
    test_accept_deadline();
    test_connect_deadline();
    test_peer_reset();
    test_close_wakes();
    test_wait();
    test_wait_either();
    test_vectored();
    test_plain_thread_and_turns();
    test_churn();
    test_regular_file();
    test_number_reused_under_a_call();
    test_listener_number_reused();
    TEST_MAIN_END();
}
