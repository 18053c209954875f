/*
 * test_net_emfile.c - descriptor exhaustion: examples/http_hello runs with RLIMIT_NOFILE 32
 * (`ulimit -n 32` in the shell that execs it). More clients than it has descriptors for all get
 * their answer; while idle connections hold every descriptor, its accept loop backs off (5 ms
 * doubling to 1 s) instead of spinning or dying; once they close, it serves again.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "test.h"

#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdbool.h>

#define NOFILE 32
#define CLIENTS 96 /* three times the descriptors the server may have */

static char server_addr[64];

static pid_t start_server(void) {
    char self[PATH_MAX], exe[PATH_MAX + 32];
    REQUIRE(realpath(test_argv0, self) != NULL);
    snprintf(exe, sizeof exe, "%s/../examples/http_hello", dirname(self));
    REQUIRE(access(exe, X_OK) == 0);
    int out[2];
    REQUIRE(pipe(out) == 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0); /* the retry messages */
    char *argv[] = {"/bin/sh", "-c", "ulimit -n 32 && exec \"$0\" \"$@\"", exe, "127.0.0.1:0", "10000", NULL};
    pid_t pid = test_spawn(argv, &fa, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(out[1]);
    test_read_listening(out[0], server_addr);
    return pid;
}

/* CPU time (user + system) the process used, in clock ticks. */
static long cpu_ticks(pid_t pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p) return -1;
    long utime = 0, stime = 0;
    /* fields after the command: state(3) ... utime(14) stime(15) */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %ld %ld", &utime, &stime) != 2) return -1;
    return utime + stime;
}

/* One GET with Connection: close; true if "200 OK" came back. */
static bool get_once(void) {
    int fd = hoare_net_dial("tcp", server_addr, 10 * HOARE_SEC);
    if (fd < 0) return false;
    static const char req[] = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    bool ok = false;
    hoare_fd_set_deadline(fd, hoare_now() + 20 * HOARE_SEC);
    if (hoare_fd_write(fd, req, sizeof req - 1) == (ssize_t)(sizeof req - 1)) {
        char buf[512];
        size_t have = 0;
        ssize_t n;
        while (have < sizeof buf - 1 && (n = hoare_fd_read(fd, buf + have, sizeof buf - 1 - have)) > 0)
            have += (size_t)n;
        buf[have] = 0;
        ok = strstr(buf, "200 OK") && strstr(buf, "Hello, World!");
    }
    hoare_fd_close(fd);
    return ok;
}

struct client_arg {
    _Atomic int *ok;
    hoare_wg *wg;
};
static void client(void *p) {
    struct client_arg *a = p;
    if (get_once()) atomic_fetch_add(a->ok, 1);
    hoare_wg_done(a->wg);
}

int main(int argc, char **argv) {
    test_begin(argv, 120);
    pid_t pid = start_server();

    /* More concurrent clients than descriptors: all are answered, in turn. */
    _Atomic int ok = 0;
    hoare_wg wg = HOARE_WG_INIT;
    struct client_arg arg = {&ok, &wg};
    for (int i = 0; i < CLIENTS; i++) {
        hoare_wg_add(&wg, 1);
        REQUIRE(hoare_go(client, &arg) == 0);
    }
    hoare_wg_wait(&wg);
    CHECK_EQ(atomic_load(&ok), CLIENTS);

    /* Idle connections hold every descriptor (the rest wait in the listen queue): the accept loop
     * backs off, so the server uses little CPU meanwhile, and stays up. */
    int held[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        held[i] = hoare_net_dial("tcp", server_addr, 10 * HOARE_SEC);
        CHECK(held[i] >= 0);
    }
    hoare_sleep(200 * HOARE_MS); /* the server reaches EMFILE */
    long t0 = cpu_ticks(pid);
    hoare_sleep(1500 * HOARE_MS);
    long used = cpu_ticks(pid) - t0;
    long hz = sysconf(_SC_CLK_TCK);
    CHECK(t0 >= 0);
    CHECK(used < hz / 2); /* spinning would take the whole 1.5 s of a CPU */
    if (used >= hz / 2) fprintf(stderr, "server used %ld of %ld ticks while out of descriptors\n", used, hz * 3 / 2);
    int status = 0;
    CHECK_EQ(waitpid(pid, &status, WNOHANG), 0); /* still running */

    /* Descriptors free up: the server accepts again and answers a new client. */
    for (int i = 0; i < CLIENTS; i++)
        if (held[i] >= 0) hoare_fd_close(held[i]);
    CHECK(get_once());

    CHECK_EQ(kill(pid, SIGTERM), 0);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM);
    TEST_MAIN_END();
}
