/*
 * test_net_many.c - 10,000 concurrent loopback TCP connections echoing, one goroutine per
 * connection on both sides.
 *
 * Both ends of 10,000 connections need 20,000 descriptors, the hard limit here: so the server
 * runs in this process and the clients in a child process (test_run_self "clients"), each raising
 * RLIMIT_NOFILE to its hard limit. Where the hard limit is lower, the count shrinks to fit.
 * Every client connection echoes once, waits until all connections have (so all are open at
 * once), echoes again, and closes. The server checks that it saw all of them open at the same time.
 */
#include "test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "runtime.h"

#define DIALERS 100

/* Raise the soft descriptor limit to the hard one; return how many connections fit (with room for
 * the listener, stdio, the poller and the test harness). */
static int connections_that_fit(void) {
    struct rlimit rl;
    REQUIRE(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        REQUIRE(setrlimit(RLIMIT_NOFILE, &rl) == 0);
    }
    long room = rl.rlim_cur == RLIM_INFINITY ? 1000000 : (long)rl.rlim_cur - 64;
    long want = getenv("HOARE_TEST_CONNS") ? atol(getenv("HOARE_TEST_CONNS")) : TEST_SCALE(10000);
    return (int)(want < room ? want : room);
}

/* ------------------------------------------------------------------ server (this process) */

static _Atomic int server_open, server_max_open, server_errors;
static hoare_wg server_wg = HOARE_WG_INIT;

static void server_conn(void *p) {
    int fd = (int)(intptr_t)p;
    int open = atomic_fetch_add(&server_open, 1) + 1;
    int max = atomic_load(&server_max_open);
    while (open > max && !atomic_compare_exchange_weak(&server_max_open, &max, open)) {}
    char buf[64];
    ssize_t n;
    while ((n = hoare_fd_read(fd, buf, sizeof buf)) > 0) {
        if (hoare_fd_write(fd, buf, (size_t)n) != n) {
            atomic_fetch_add(&server_errors, 1);
            break;
        }
    }
    if (n < 0) atomic_fetch_add(&server_errors, 1);
    atomic_fetch_sub(&server_open, 1);
    hoare_fd_close(fd);
    hoare_wg_done(&server_wg);
}

static void acceptor(void *p) {
    int lfd = (int)(intptr_t)p;
    for (;;) {
        int fd = hoare_fd_accept(lfd, NULL, NULL);
        if (fd == -EBADF) break; /* listener closed: done */
        if (fd < 0) {
            atomic_fetch_add(&server_errors, 1);
            continue;
        }
        hoare_wg_add(&server_wg, 1);
        if (hoare_go(server_conn, (void *)(intptr_t)fd) != 0) {
            atomic_fetch_add(&server_errors, 1);
            hoare_fd_close(fd);
            hoare_wg_done(&server_wg);
        }
    }
    hoare_wg_done(&server_wg);
}

/* ------------------------------------------------------------------ clients (child process) */

static int nconns;
static char server_addr[64];
static _Atomic int client_errors;
static hoare_wg all_echoed = HOARE_WG_INIT, all_done = HOARE_WG_INIT;

/* Send 8 bytes, read them back. */
static bool echo_once(int fd, uint64_t v) {
    if (hoare_fd_write(fd, &v, sizeof v) != sizeof v) return false;
    uint64_t got = 0;
    size_t have = 0;
    while (have < sizeof got) {
        ssize_t n = hoare_fd_read(fd, (char *)&got + have, sizeof got - have);
        if (n <= 0) return false;
        have += (size_t)n;
    }
    return got == v;
}

static void client_conn(void *p) {
    intptr_t packed = (intptr_t)p;
    int fd = (int)(packed & 0xffffffff), id = (int)(packed >> 32);
    if (!echo_once(fd, (uint64_t)id * 7919)) atomic_fetch_add(&client_errors, 1);
    hoare_wg_done(&all_echoed);
    hoare_wg_wait(&all_echoed); /* every connection is open and has echoed */
    if (!echo_once(fd, (uint64_t)id * 104729 + 1)) atomic_fetch_add(&client_errors, 1);
    hoare_fd_close(fd);
    hoare_wg_done(&all_done);
}

/* Dial a share of the connections one after another (bounding the SYNs in flight). */
static void dialer(void *p) {
    int first = (int)(intptr_t)p;
    for (int id = first; id < nconns; id += DIALERS) {
        int fd = hoare_net_dial("tcp", server_addr, 30 * HOARE_SEC);
        if (fd < 0) {
            fprintf(stderr, "dial %d: %s\n", id, strerror(-fd));
            atomic_fetch_add(&client_errors, 1);
            hoare_wg_done(&all_echoed);
            hoare_wg_done(&all_done);
            continue;
        }
        if (hoare_go(client_conn, (void *)((intptr_t)id << 32 | fd)) != 0) {
            atomic_fetch_add(&client_errors, 1);
            hoare_fd_close(fd);
            hoare_wg_done(&all_echoed);
            hoare_wg_done(&all_done);
        }
    }
}

static int run_clients(void) {
    const char *port = getenv("HOARE_TEST_PORT");
    const char *count = getenv("HOARE_TEST_CONNS");
    REQUIRE(port && count);
    nconns = atoi(count);
    REQUIRE(connections_that_fit() >= nconns);
    snprintf(server_addr, sizeof server_addr, "127.0.0.1:%s", port);
    hoare_wg_add(&all_echoed, nconns);
    hoare_wg_add(&all_done, nconns);
    for (int i = 0; i < DIALERS; i++) REQUIRE(hoare_go(dialer, (void *)(intptr_t)i) == 0);
    hoare_wg_wait(&all_done);
    int errors = atomic_load(&client_errors);
    if (errors) fprintf(stderr, "clients: %d errors\n", errors);
    return errors ? 1 : 0;
}

int main(int argc, char **argv) {
    test_begin(argv, 240);
    if (argc > 1 && strcmp(argv[1], "clients") == 0) return run_clients();

    int n = connections_that_fit();
    int lfd = hoare_net_listen("tcp4", "127.0.0.1:0");
    REQUIRE(lfd >= 0);
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;
    REQUIRE(getsockname(lfd, (struct sockaddr *)&sin, &len) == 0);
    hoare_wg_add(&server_wg, 1);
    REQUIRE(hoare_go(acceptor, (void *)(intptr_t)lfd) == 0);

    char env_port[32], env_conns[32];
    snprintf(env_port, sizeof env_port, "HOARE_TEST_PORT=%d", ntohs(sin.sin_port));
    snprintf(env_conns, sizeof env_conns, "HOARE_TEST_CONNS=%d", n);
    char *env[] = {env_port, env_conns, NULL};
    static char out[1 << 16];
    int64_t t0 = hoare_now();
    int status = test_run_self("clients", env, out, sizeof out);
    int64_t elapsed = hoare_now() - t0;
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) fprintf(stderr, "child: %s\n", out);

    hoare_fd_close(lfd); /* stops the acceptor */
    hoare_wg_wait(&server_wg);
    CHECK_EQ(atomic_load(&server_max_open), n);
    CHECK_EQ(atomic_load(&server_errors), 0);
    CHECK_EQ(atomic_load(&server_open), 0);
    CHECK_EQ(hoare__netpoll_waiters(), 0);
    printf("%d connections in %.2f s\n", n, (double)elapsed / HOARE_SEC);
    TEST_MAIN_END();
}
