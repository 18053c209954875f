/*
 * echo.c - a TCP (or unix socket) echo server, one goroutine per connection.
 *
 *   echo 127.0.0.1:7000        (or: echo unix /tmp/echo.sock)
 *
 * Prints "listening" once it listens. Each connection gets back what it sends until it closes its
 * side; a connection idle for a minute is dropped.
 */
#include <hoare.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define IDLE_TIMEOUT (60 * HOARE_SEC)

static void echo_conn(void *arg) {
    int fd = (int)(intptr_t)arg;
    char buf[16384];
    for (;;) {
        hoare_fd_set_read_deadline(fd, hoare_now() + IDLE_TIMEOUT);
        ssize_t n = hoare_fd_read(fd, buf, sizeof buf);
        if (n <= 0 || hoare_fd_write(fd, buf, (size_t)n) != n) break;
    }
    hoare_fd_close(fd);
}

/* The program's main goroutine (see main below). */
static int app(int argc, char **argv) {
    const char *network = argc == 3 ? argv[1] : "tcp";
    const char *address = argc == 3 ? argv[2] : argc == 2 ? argv[1] : NULL;
    if (!address) {
        fprintf(stderr, "usage: %s [tcp|tcp4|tcp6|unix] ADDRESS\n", argv[0]);
        return 2;
    }
    int lfd = hoare_net_listen(network, address);
    if (lfd < 0) {
        fprintf(stderr, "listen %s %s: %s\n", network, address, strerror(-lfd));
        return 1;
    }
    printf("listening\n");
    fflush(stdout);
    int64_t backoff = 0;
    for (;;) {
        int fd = hoare_fd_accept(lfd, NULL, NULL);
        if (fd < 0) {
            /* Out of descriptors or memory: sleep 5 ms, doubling up to 1 s (as Go's http.Server),
             * so that connections can finish, then accept again. */
            if (fd != -EMFILE && fd != -ENFILE && fd != -ENOBUFS && fd != -ENOMEM) {
                fprintf(stderr, "accept: %s\n", strerror(-fd));
                return 1;
            }
            backoff = backoff ? 2 * backoff : 5 * HOARE_MS;
            if (backoff > HOARE_SEC) backoff = HOARE_SEC;
            hoare_sleep(backoff);
            continue;
        }
        backoff = 0;
        if (hoare_go(echo_conn, (void *)(intptr_t)fd) != 0) hoare_fd_close(fd);
    }
}

int main(int argc, char **argv) { return hoare_main(app, argc, argv); }
