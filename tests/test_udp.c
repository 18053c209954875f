/*
 * test_udp.c - datagram sockets: "udp"/"udp4"/"udp6" listen and dial, hoare_fd_recvfrom /
 * hoare_fd_sendto, read/write on connected sockets (one datagram each, empty ones included,
 * truncation), recvmsg/sendmsg, read deadlines, close waking a reader, and an echo server serving
 * hundreds of client goroutines that retry on their read deadline (loopback UDP may drop when a
 * receive queue overflows); examples/udp_echo serving 100 of them.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "test.h"

#include <arpa/inet.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/uio.h>

static int local_port(int fd) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    REQUIRE(getsockname(fd, (struct sockaddr *)&ss, &len) == 0);
    return ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                    : ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* Echo every datagram back to its sender until the socket is closed. */
static void echo_server(void *p) {
    int fd = *(int *)p;
    char buf[2048];
    for (;;) {
        struct sockaddr_storage from;
        socklen_t flen = sizeof from;
        ssize_t n = hoare_fd_recvfrom(fd, buf, sizeof buf, &from, &flen);
        if (n == -EBADF) return;
        if (n < 0) continue;
        hoare_fd_sendto(fd, buf, (size_t)n, &from, flen);
    }
}

static void test_basics(void) {
    int srv = hoare_net_listen("udp4", "127.0.0.1:0");
    REQUIRE(srv >= 0);
    int type = 0;
    socklen_t tl = sizeof type;
    CHECK(getsockopt(srv, SOL_SOCKET, SO_TYPE, &type, &tl) == 0 && type == SOCK_DGRAM);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", local_port(srv));
    int c = hoare_net_dial("udp", addr, HOARE_SEC);
    REQUIRE(c >= 0);
    /* write/read move one datagram each; the sender's address comes with recvfrom */
    CHECK_EQ(hoare_fd_write(c, "hello", 5), 5);
    CHECK_EQ(hoare_fd_write(c, "world!", 6), 6);
    char buf[64];
    struct sockaddr_in from;
    socklen_t flen = sizeof from;
    CHECK_EQ(hoare_fd_recvfrom(srv, buf, sizeof buf, &from, &flen), 5);
    CHECK(memcmp(buf, "hello", 5) == 0);
    CHECK_EQ(flen, sizeof from);
    CHECK_EQ(ntohs(from.sin_port), local_port(c));
    CHECK_EQ(hoare_fd_recvfrom(srv, buf, 3, NULL, NULL), 3); /* truncated: the rest is dropped */
    CHECK(memcmp(buf, "wor", 3) == 0);
    CHECK_EQ(hoare_fd_sendto(srv, "back", 4, &from, flen), 4);
    CHECK_EQ(hoare_fd_read(c, buf, sizeof buf), 4);
    CHECK(memcmp(buf, "back", 4) == 0);
    /* an empty datagram is one too */
    CHECK_EQ(hoare_fd_write(c, "", 0), 0);
    CHECK_EQ(hoare_fd_recvfrom(srv, buf, sizeof buf, NULL, NULL), 0);
    /* msg forms, scatter/gather */
    struct iovec out[2] = {{"ab", 2}, {"cde", 3}};
    struct msghdr mo = {.msg_iov = out, .msg_iovlen = 2};
    CHECK_EQ(hoare_fd_sendmsg(c, &mo, 0), 5);
    char b1[1], b2[8];
    struct iovec in[2] = {{b1, 1}, {b2, 8}};
    struct sockaddr_in mfrom;
    struct msghdr mi = {.msg_name = &mfrom, .msg_namelen = sizeof mfrom, .msg_iov = in, .msg_iovlen = 2};
    CHECK_EQ(hoare_fd_recvmsg(srv, &mi, 0), 5);
    CHECK(b1[0] == 'a' && memcmp(b2, "bcde", 4) == 0);
    CHECK_EQ(ntohs(mfrom.sin_port), local_port(c));
    CHECK_EQ(hoare_fd_recvmsg(srv, &mi, MSG_PEEK), -EINVAL);
    /* a read deadline ends a wait for a datagram that never comes */
    int64_t t0 = hoare_now();
    hoare_fd_set_read_deadline(srv, t0 + 100 * HOARE_MS);
    CHECK_EQ(hoare_fd_recvfrom(srv, buf, sizeof buf, NULL, NULL), -ETIMEDOUT);
    CHECK(hoare_now() - t0 >= 100 * HOARE_MS);
    hoare_fd_set_read_deadline(srv, 0);
    /* sendto an address on a connected socket's peer is fine; a bad address length is not */
    CHECK_EQ(hoare_fd_sendto(srv, "x", 1, &from, 3), -EINVAL);
    CHECK_EQ(hoare_fd_recvfrom(srv, buf, sizeof buf, &from, NULL), -EINVAL);
    /* positioned I/O makes no sense on a socket */
    CHECK_EQ(hoare_fd_pread(c, buf, 1, 0), -ESPIPE);
    hoare_fd_close(c);
    hoare_fd_close(srv);
}

/* "udp" on ":port" is dual stack; "udp6" takes IPv6 only. */
static void test_udp6(void) {
    int srv = hoare_net_listen("udp", ":0");
    if (srv == -EAFNOSUPPORT) return;
    REQUIRE(srv >= 0);
    char addr[64];
    const char *targets[] = {"127.0.0.1", "[::1]"};
    for (int i = 0; i < 2; i++) {
        snprintf(addr, sizeof addr, "%s:%d", targets[i], local_port(srv));
        int c = hoare_net_dial("udp", addr, HOARE_SEC);
        if (c < 0 && i == 1) break; /* no IPv6 loopback here */
        REQUIRE(c >= 0);
        CHECK_EQ(hoare_fd_write(c, "6", 1), 1);
        char b[4];
        struct sockaddr_storage from;
        socklen_t flen = sizeof from;
        CHECK_EQ(hoare_fd_recvfrom(srv, b, sizeof b, &from, &flen), 1);
        CHECK(from.ss_family == AF_INET6);
        hoare_fd_close(c);
    }
    hoare_fd_close(srv);
    CHECK_EQ(hoare_net_dial("udp6", "127.0.0.1:53", 0), -EAFNOSUPPORT);
    CHECK_EQ(hoare_net_listen("udp4", "[::1]:0"), -EAFNOSUPPORT);
}

/* Closing wakes a goroutine parked in recvfrom. */
static void closer(void *p) {
    hoare_sleep(50 * HOARE_MS);
    hoare_fd_close(*(int *)p);
}
static void test_close_wakes(void) {
    int fd = hoare_net_listen("udp4", "127.0.0.1:0");
    REQUIRE(fd >= 0);
    REQUIRE(hoare_go(closer, &fd) == 0);
    char b[4];
    CHECK_EQ(hoare_fd_recvfrom(fd, b, sizeof b, NULL, NULL), -EBADF);
}

struct client_arg {
    const char *addr;
    int rounds;
    _Atomic int *ok, *retries;
    hoare_wg *wg;
};

static void client(void *p) {
    struct client_arg *a = p;
    int fd = hoare_net_dial("udp", a->addr, 5 * HOARE_SEC);
    int good = 0;
    if (fd >= 0) {
        for (int r = 0; r < a->rounds; r++) {
            char msg[64], reply[64];
            int len = snprintf(msg, sizeof msg, "client %p round %d", (void *)a, r);
            for (int attempt = 0; attempt < 50; attempt++) {
                if (hoare_fd_write(fd, msg, (size_t)len) != len) break;
                hoare_fd_set_read_deadline(fd, hoare_now() + 200 * HOARE_MS);
                ssize_t n;
                /* a late echo of an earlier attempt is skipped */
                while ((n = hoare_fd_read(fd, reply, sizeof reply)) > 0 &&
                       (n != len || memcmp(reply, msg, (size_t)len) != 0)) {}
                if (n == len) {
                    good++;
                    break;
                }
                if (n != -ETIMEDOUT) break;
                atomic_fetch_add(a->retries, 1);
            }
        }
        hoare_fd_close(fd);
    }
    if (good == a->rounds) atomic_fetch_add(a->ok, 1);
    hoare_wg_done(a->wg);
}

/* Hundreds of goroutines each send datagrams to an echo server (several goroutines serving one
 * socket) and wait for the echo under a read deadline. */
static void test_echo_many(void) {
    enum { SERVERS = 4 };
    int n = TEST_TSAN ? 50 : TEST_SANITIZED ? 200 : 500;
    int srv = hoare_net_listen("udp4", "127.0.0.1:0");
    REQUIRE(srv >= 0);
    int big = 4 << 20;
    (void)setsockopt(srv, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    for (int i = 0; i < SERVERS; i++) REQUIRE(hoare_go(echo_server, &srv) == 0);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", local_port(srv));
    _Atomic int ok = 0, retries = 0;
    hoare_wg wg = HOARE_WG_INIT;
    struct client_arg *args = calloc((size_t)n, sizeof *args);
    REQUIRE(args != NULL);
    for (int i = 0; i < n; i++) {
        args[i] = (struct client_arg){addr, 10, &ok, &retries, &wg};
        hoare_wg_add(&wg, 1);
        REQUIRE(hoare_go(client, &args[i]) == 0);
    }
    hoare_wg_wait(&wg);
    CHECK_EQ(atomic_load(&ok), n);
    printf("udp echo: %d clients x 10 datagrams, %d retries after a read deadline\n", n,
           atomic_load(&retries));
    hoare_fd_close(srv);
    CHECK(test_wait_count(0) == 0);
    free(args);
}

/* examples/udp_echo, spawned from the build tree, echoes datagrams from many goroutines. */
static void test_example(void) {
    char self[PATH_MAX], exe[PATH_MAX + 32];
    REQUIRE(realpath(test_argv0, self) != NULL);
    snprintf(exe, sizeof exe, "%s/../examples/udp_echo", dirname(self));
    if (access(exe, X_OK) != 0) return; /* examples not built */
    int out[2];
    REQUIRE(pipe(out) == 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    char *argv[] = {exe, "udp4", "127.0.0.1:0", NULL};
    pid_t pid = test_spawn(argv, &fa, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(out[1]);
    char line[128], addr[64];
    size_t len = 0;
    while (len < sizeof line - 1 && read(out[0], line + len, 1) == 1 && line[len] != '\n') len++;
    line[len] = 0;
    close(out[0]);
    REQUIRE(sscanf(line, "listening on %63s", addr) == 1);
    enum { N = 100 };
    _Atomic int ok = 0, retries = 0;
    hoare_wg wg = HOARE_WG_INIT;
    struct client_arg args[N];
    for (int i = 0; i < N; i++) {
        args[i] = (struct client_arg){addr, 5, &ok, &retries, &wg};
        hoare_wg_add(&wg, 1);
        REQUIRE(hoare_go(client, &args[i]) == 0);
    }
    hoare_wg_wait(&wg);
    CHECK_EQ(atomic_load(&ok), N);
    kill(pid, SIGTERM);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
}

int main(int argc, char **argv) {
    test_begin(argv, 120);
    test_basics();
    test_udp6();
    test_close_wakes();
    test_echo_many();
    test_example();
    TEST_MAIN_END();
}
