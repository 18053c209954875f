/*
 * test_net_http.c - the examples/http_hello server, spawned from the build tree
 * (<build>/examples/http_hello next to <build>/tests/), on 127.0.0.1 with a free port and a short
 * idle timeout: GET, keep-alive (HTTP/1.1 and 1.0), pipelining, requests split across writes,
 * HEAD, 405, 400 and close on malformed requests, idle and slow clients dropped.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "test.h"

#include <libgen.h>
#include <limits.h>
#include <stdbool.h>

#define IDLE_MS 1000 /* generous: a loaded machine can delay the client by a lot */

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
    char idle[16];
    snprintf(idle, sizeof idle, "%d", IDLE_MS);
    char *argv[] = {exe, "127.0.0.1:0", idle, NULL};
    pid_t pid = test_spawn(argv, &fa, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(out[1]);
    test_read_listening(out[0], server_addr);
    return pid;
}

static int connect_server(void) {
    int fd = hoare_net_dial("tcp", server_addr, 5 * HOARE_SEC);
    REQUIRE(fd >= 0);
    return fd;
}

static void send_all(int fd, const char *s) { CHECK_EQ(hoare_fd_write(fd, s, strlen(s)), (ssize_t)strlen(s)); }

/* Length of the complete response at the start of p (n bytes), or 0 if it is not complete. */
static size_t response_len(const char *p, size_t n, bool head) {
    const char *end = memmem(p, n, "\r\n\r\n", 4);
    if (!end) return 0;
    size_t hdr = (size_t)(end + 4 - p);
    const char *cl = memmem(p, hdr, "Content-Length: ", 16);
    size_t body = cl && !head ? strtoul(cl + 16, NULL, 10) : 0;
    return hdr + body <= n ? hdr + body : 0;
}

/* Read until `count` complete responses arrived (or EOF/error); returns the bytes, NUL-terminated.
 * *eof_after: whether the server then closed (checked with a short deadline). */
static size_t read_responses(int fd, char *buf, size_t cap, int count, bool head, bool *eof_after) {
    size_t have = 0;
    int complete = 0;
    size_t pos = 0;
    hoare_fd_set_read_deadline(fd, hoare_now() + 5 * HOARE_SEC);
    while (complete < count && have < cap - 1) {
        size_t r;
        while (complete < count && (r = response_len(buf + pos, have - pos, head)) > 0) {
            pos += r;
            complete++;
        }
        if (complete == count) break;
        ssize_t n = hoare_fd_read(fd, buf + have, cap - 1 - have);
        if (n <= 0) break;
        have += (size_t)n;
    }
    buf[have] = 0;
    if (eof_after) {
        char extra;
        hoare_fd_set_read_deadline(fd, hoare_now() + 2 * HOARE_SEC);
        *eof_after = hoare_fd_read(fd, &extra, 1) == 0;
    }
    hoare_fd_set_read_deadline(fd, 0);
    return have;
}

static int count_of(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p++) n++;
    return n;
}

static void test_get_keepalive(void) {
    int fd = connect_server();
    char buf[4096];
    send_all(fd, "GET / HTTP/1.1\r\nHost: test\r\n\r\n");
    read_responses(fd, buf, sizeof buf, 1, false, NULL);
    CHECK(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0);
    CHECK(strstr(buf, "\r\nContent-Length: 13\r\n") != NULL);
    CHECK(strstr(buf, "\r\nDate: ") != NULL);
    CHECK(strstr(buf, "Connection: close") == NULL);
    size_t len = strlen(buf);
    CHECK(len > 13 && strcmp(buf + len - 13, "Hello, World!") == 0);
    /* Same connection again (keep-alive), with other headers and a query. */
    send_all(fd, "GET /some/path?x=1 HTTP/1.1\r\nHost: test\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n");
    read_responses(fd, buf, sizeof buf, 1, false, NULL);
    CHECK(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0);
    /* HTTP/1.1 with Connection: close: answered, then closed. */
    bool eof = false;
    send_all(fd, "GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    read_responses(fd, buf, sizeof buf, 1, false, &eof);
    CHECK(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0);
    CHECK(strstr(buf, "\r\nConnection: close\r\n") != NULL);
    CHECK(eof);
    hoare_fd_close(fd);
}

static void test_http10(void) {
    char buf[4096];
    bool eof = false;
    /* 1.0 closes by default... */
    int fd = connect_server();
    send_all(fd, "GET / HTTP/1.0\r\n\r\n");
    read_responses(fd, buf, sizeof buf, 1, false, &eof);
    CHECK(strncmp(buf, "HTTP/1.0 200 OK\r\n", 17) == 0);
    CHECK(strstr(buf, "Hello, World!") != NULL);
    CHECK(eof);
    hoare_fd_close(fd);
    /* ...and keeps alive on request. */
    fd = connect_server();
    send_all(fd, "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
    read_responses(fd, buf, sizeof buf, 1, false, NULL);
    CHECK(strncmp(buf, "HTTP/1.0 200 OK\r\n", 17) == 0);
    CHECK(strstr(buf, "\r\nConnection: keep-alive\r\n") != NULL);
    send_all(fd, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    read_responses(fd, buf, sizeof buf, 1, false, NULL);
    CHECK(strncmp(buf, "HTTP/1.0 200 OK\r\n", 17) == 0);
    hoare_fd_close(fd);
}

static void test_pipelining_and_split(void) {
    int fd = connect_server();
    static char buf[1 << 16];
    /* Ten requests in one write, answered in order. */
    char reqs[2048] = "";
    for (int i = 0; i < 10; i++) strcat(reqs, "GET / HTTP/1.1\r\nHost: p\r\n\r\n");
    send_all(fd, reqs);
    read_responses(fd, buf, sizeof buf, 10, false, NULL);
    CHECK_EQ(count_of(buf, "HTTP/1.1 200 OK\r\n"), 10);
    CHECK_EQ(count_of(buf, "Hello, World!"), 10);
    /* One request byte by byte. */
    const char *req = "GET / HTTP/1.1\r\nHost: split\r\n\r\n";
    for (const char *p = req; *p; p++) CHECK_EQ(hoare_fd_write(fd, p, 1), 1);
    read_responses(fd, buf, sizeof buf, 1, false, NULL);
    CHECK(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0);
    /* HEAD: the headers of GET, no body; a POST with a body: 405, and the body is skipped. */
    send_all(fd, "HEAD / HTTP/1.1\r\nHost: h\r\n\r\n"
                 "POST /form HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nabcde"
                 "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    size_t n = read_responses(fd, buf, sizeof buf, 1, true, NULL);
    CHECK(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0);
    CHECK(strstr(buf, "\r\nContent-Length: 13\r\n") != NULL);
    size_t head_len = response_len(buf, n, true);
    CHECK(head_len > 0);
    /* The rest: the 405 and the 200 (maybe still arriving). */
    char *rest = buf + head_len;
    size_t have = n - head_len;
    while (count_of(rest, "Hello, World!") < 1) {
        ssize_t r = hoare_fd_read(fd, rest + have, sizeof buf - 1 - head_len - have);
        if (r <= 0) break;
        have += (size_t)r;
        rest[have] = 0;
    }
    CHECK(strncmp(rest, "HTTP/1.1 405 Method Not Allowed\r\n", 33) == 0);
    CHECK(strstr(rest, "HTTP/1.1 200 OK\r\n") != NULL);
    CHECK(strstr(rest, "abcde") == NULL);
    hoare_fd_close(fd);
}

static void test_bad_requests(void) {
    static const char *bad[] = {
        "hello\r\n\r\n",                                     /* not a request line */
        "GET /\r\n\r\n",                                     /* no version */
        "GET / HTTP/2.0\r\nHost: x\r\n\r\n",                 /* unsupported version */
        "GET / HTTP/1.1\r\n\r\n",                            /* HTTP/1.1 without Host */
        "GET / HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n", /* malformed header */
        "GET / HTTP/1.1\r\nHost : x\r\n\r\n",                /* space before the colon */
        "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        "G(T / HTTP/1.1\r\nHost: x\r\n\r\n",                 /* not a token */
    };
    char buf[4096];
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int fd = connect_server();
        bool eof = false;
        send_all(fd, bad[i]);
        read_responses(fd, buf, sizeof buf, 1, false, &eof);
        CHECK(strncmp(buf, "HTTP/1.1 400 Bad Request\r\n", 26) == 0);
        CHECK(strstr(buf, "\r\nConnection: close\r\n") != NULL);
        CHECK(eof);
        if (strncmp(buf, "HTTP/1.1 400", 12) != 0 || !eof) fprintf(stderr, "request %zu: %s\n", i, buf);
        hoare_fd_close(fd);
    }
    /* A good request followed by garbage: 200, then 400 and close. */
    int fd = connect_server();
    bool eof = false;
    send_all(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n\x01\x02garbage\r\n\r\n");
    read_responses(fd, buf, sizeof buf, 2, false, &eof);
    CHECK(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0);
    CHECK(strstr(buf, "HTTP/1.1 400 Bad Request\r\n") != NULL);
    CHECK(eof);
    hoare_fd_close(fd);
    /* Headers larger than the server's buffer. */
    fd = connect_server();
    static char huge[20000];
    strcpy(huge, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: ");
    size_t l = strlen(huge);
    memset(huge + l, 'a', sizeof huge - l - 1);
    hoare_fd_write(fd, huge, sizeof huge - 1); /* the server may close before reading it all */
    read_responses(fd, buf, sizeof buf, 1, false, NULL);
    CHECK(strncmp(buf, "HTTP/1.1 400 Bad Request\r\n", 26) == 0);
    hoare_fd_close(fd);
}

static void test_idle_and_slow_dropped(void) {
    char buf[4096];
    /* Idle: never sends anything. */
    int fd = connect_server();
    int64_t t0 = hoare_now();
    hoare_fd_set_read_deadline(fd, t0 + 10 * HOARE_SEC);
    CHECK_EQ(hoare_fd_read(fd, buf, sizeof buf), 0);
    int64_t el = hoare_now() - t0;
    CHECK(el >= (IDLE_MS - 50) * HOARE_MS);
    CHECK(el < 5 * HOARE_SEC);
    hoare_fd_close(fd);
    /* Slow: keeps sending a header, a byte at a time, never finishing it. */
    fd = connect_server();
    t0 = hoare_now();
    send_all(fd, "GET / HTTP/1.1\r\nHost: slow\r\nX-Slow: ");
    ssize_t r = 1;
    while (r > 0 && hoare_now() - t0 < 10 * HOARE_SEC) {
        hoare_sleep(IDLE_MS / 6 * HOARE_MS);
        r = hoare_fd_write(fd, "a", 1);
    }
    CHECK(r < 0); /* the server closed the connection */
    el = hoare_now() - t0;
    CHECK(el >= (IDLE_MS - 50) * HOARE_MS);
    CHECK(el < 5 * HOARE_SEC);
    hoare_fd_close(fd);
    /* A keep-alive connection is dropped once idle too; one that keeps asking is not. */
    fd = connect_server();
    t0 = hoare_now();
    while (hoare_now() - t0 < 2 * IDLE_MS * HOARE_MS) {
        send_all(fd, "GET / HTTP/1.1\r\nHost: busy\r\n\r\n");
        read_responses(fd, buf, sizeof buf, 1, false, NULL);
        CHECK(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0);
        hoare_sleep(IDLE_MS / 10 * HOARE_MS);
    }
    hoare_fd_set_read_deadline(fd, hoare_now() + 10 * HOARE_SEC);
    CHECK_EQ(hoare_fd_read(fd, buf, sizeof buf), 0);
    hoare_fd_close(fd);
}

int main(int argc, char **argv) {
    test_begin(argv, 60);
    pid_t pid = start_server();
    test_get_keepalive();
    test_http10();
    test_pipelining_and_split();
    test_bad_requests();
    test_idle_and_slow_dropped();
    /* The server survived all of it, and stops on SIGTERM. */
    CHECK_EQ(kill(pid, SIGTERM), 0);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM);
    TEST_MAIN_END();
}
