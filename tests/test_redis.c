/*
 * test_redis.c - a real database server driven from thousands of goroutines: starts redis-server
 * (Debian's redis-server package) on a free loopback port, runs examples/redis_clients against it
 * (hiredis in non-blocking mode on hoare's poller, one connection per goroutine) and checks that
 * every command went through and that the client used a handful of threads, not one per
 * connection (2,000 goroutines). Exits 77 (skipped) with the reason when redis-server or the
 * example is missing.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "test.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <sys/socket.h>

#define SKIP 77

static int free_port(void) {
    int fd = hoare_net_listen("tcp4", "127.0.0.1:0");
    REQUIRE(fd >= 0);
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;
    REQUIRE(getsockname(fd, (struct sockaddr *)&sin, &len) == 0);
    hoare_fd_close(fd);
    return ntohs(sin.sin_port);
}

/* PING until the server answers (bounded). */
static bool wait_ready(const char *addr) {
    int64_t deadline = hoare_now() + 20 * HOARE_SEC;
    while (hoare_now() < deadline) {
        int fd = hoare_net_dial("tcp", addr, HOARE_SEC);
        if (fd >= 0) {
            char buf[16] = "";
            hoare_fd_set_deadline(fd, hoare_now() + HOARE_SEC);
            bool ok = hoare_fd_write(fd, "PING\r\n", 6) == 6 && hoare_fd_read(fd, buf, sizeof buf - 1) > 0 &&
                      strncmp(buf, "+PONG", 5) == 0;
            hoare_fd_close(fd);
            if (ok) return true;
        }
        hoare_sleep(50 * HOARE_MS);
    }
    return false;
}

int main(int argc, char **argv) {
    test_begin(argv, 240);
    char self[PATH_MAX], exe[PATH_MAX + 32];
    REQUIRE(realpath(test_argv0, self) != NULL);
    snprintf(exe, sizeof exe, "%s/../examples/redis_clients", dirname(self));
    if (access(exe, X_OK) != 0) {
        printf("skip: examples/redis_clients not built (hiredis missing: Debian package libhiredis-dev)\n");
        return SKIP;
    }
    if (system("command -v redis-server >/dev/null 2>&1") != 0) {
        printf("skip: no redis-server (Debian package redis-server)\n");
        return SKIP;
    }
    int port = free_port();
    char port_s[16], addr[64];
    snprintf(port_s, sizeof port_s, "%d", port);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    char *rargv[] = {"redis-server", "--port", port_s, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                     "--dir", "/tmp", "--maxclients", "10000", "--loglevel", "warning", NULL};
    pid_t redis = test_spawn(rargv, &fa, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (!wait_ready(addr)) {
        kill(redis, SIGKILL);
        waitpid(redis, NULL, 0);
        printf("skip: redis-server did not start on %s\n", addr);
        return SKIP;
    }

    /* The example: thousands of goroutines (fewer under sanitizers), two processors. */
    int n = TEST_TSAN ? 20 : TEST_SANITIZED ? 300 : 2000;
    char n_s[16];
    snprintf(n_s, sizeof n_s, "%d", n);
    int out[2];
    REQUIRE(pipe(out) == 0);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    char *cargv[] = {exe, addr, n_s, "10", NULL};
    size_t nenv = 0;
    while (environ[nenv]) nenv++;
    char **env = calloc(nenv + 2, sizeof *env);
    REQUIRE(env != NULL);
    env[0] = "HOARE_PROCS=2";
    for (size_t i = 0; i < nenv; i++) env[i + 1] = environ[i];
    pid_t client = test_spawn(cargv, &fa, env);
    free(env);
    posix_spawn_file_actions_destroy(&fa);
    close(out[1]);
    char line[256];
    size_t have = 0;
    ssize_t r;
    /* bounded: a run takes seconds; a stuck one is killed and reported rather than left to the
     * suite's timeout */
    hoare_fd_set_read_deadline(out[0], hoare_now() + 120 * HOARE_SEC);
    while (have < sizeof line - 1 && (r = hoare_fd_read(out[0], line + have, sizeof line - 1 - have)) > 0)
        have += (size_t)r;
    line[have] = 0;
    if (r == -ETIMEDOUT) {
        fprintf(stderr, "redis_clients did not finish within 120 s: killed\n");
        kill(client, SIGKILL);
    }
    hoare_fd_close(out[0]);
    int status = 0;
    while (waitpid(client, &status, 0) < 0 && errno == EINTR) {}
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    printf("%s", line);
    int got_n = 0, threads = 0;
    long commands = 0, counter = 0;
    CHECK_EQ(sscanf(line, "ok: %d goroutines, %ld commands, counter %ld, at most %d threads", &got_n, &commands,
                    &counter, &threads), 4);
    CHECK_EQ(got_n, n);
    CHECK_EQ(counter, 10L * n);
    CHECK(commands >= 30L * n);
    CHECK(threads > 0 && threads <= 8); /* 2 processors: main, monitor, a few Ms; not one per connection */

    kill(redis, SIGTERM);
    while (waitpid(redis, &status, 0) < 0 && errno == EINTR) {}
    TEST_MAIN_END();
}
