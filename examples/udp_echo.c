/*
 * udp_echo.c - a UDP echo server: a few goroutines take turns reading datagrams from one socket
 * and send each back to its sender.
 *
 *   udp_echo [udp|udp4|udp6] ADDRESS      e.g. udp_echo 127.0.0.1:9000
 *
 * Prints "listening on HOST:PORT" once it is bound (port 0 picks a free one).
 */
#include <hoare.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#define SERVERS 4

static void serve(void *arg) {
    int fd = (int)(intptr_t)arg;
    char buf[65536];
    for (;;) {
        struct sockaddr_storage from;
        socklen_t flen = sizeof from;
        ssize_t n = hoare_fd_recvfrom(fd, buf, sizeof buf, &from, &flen);
        if (n == -EBADF) return;
        if (n < 0) continue; /* e.g. an ICMP error reported on the socket */
        hoare_fd_sendto(fd, buf, (size_t)n, &from, flen);
    }
}

/* The program's main goroutine (see main below). */
static int app(int argc, char **argv) {
    const char *network = argc == 3 ? argv[1] : "udp";
    const char *address = argc == 3 ? argv[2] : argc == 2 ? argv[1] : NULL;
    if (!address) {
        fprintf(stderr, "usage: %s [udp|udp4|udp6] ADDRESS\n", argv[0]);
        return 2;
    }
    int fd = hoare_net_listen(network, address);
    if (fd < 0) {
        fprintf(stderr, "listen %s %s: %s\n", network, address, strerror(-fd));
        return 1;
    }
    struct sockaddr_storage ss;
    socklen_t slen = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (getsockname(fd, (struct sockaddr *)&ss, &slen) == 0) {
        if (ss.ss_family == AF_INET6) {
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof host);
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        } else {
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof host);
            port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        }
    }
    printf(ss.ss_family == AF_INET6 ? "listening on [%s]:%d\n" : "listening on %s:%d\n", host, port);
    fflush(stdout);
    for (int i = 1; i < SERVERS; i++) hoare_go(serve, (void *)(intptr_t)fd);
    serve((void *)(intptr_t)fd); /* main takes its turns too */
    return 0;
}

int main(int argc, char **argv) { return hoare_main(app, argc, argv); }
