/*
 * http_hello.c - an HTTP/1.1 server answering "Hello, World!" to every GET, one goroutine per
 * connection.
 *
 *   http_hello 127.0.0.1:8080 [idle_timeout_ms]
 *
 * Prints "listening on HOST:PORT" once it listens (port 0 picks a free one). Keep-alive as HTTP/1.1
 * says (persistent unless "Connection: close"; HTTP/1.0 only with "Connection: keep-alive"), pipelined
 * requests answered in order, several responses per write. HEAD gets the headers of GET, other
 * methods 405, a request with a body in chunked encoding 501 and a close, anything malformed (bad
 * request line or header, HTTP/1.1 without Host, headers longer than the buffer) 400 and a close.
 * A client idle or slow for idle_timeout_ms (default 30000) is dropped: the connection's deadline
 * (read and write) is pushed forward as requests complete.
 *
 * Per request: no allocation, no system call besides the read and the write (the read that would
 * fail with EAGAIN is skipped by the runtime after a short read).
 */
#include <hoare.h>

#include "http_parse.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#define IN_CAP 8192   /* request headers must fit */
#define OUT_CAP 16384 /* responses collected for one write */
#define RESPONSE_MAX 512

static int64_t idle_timeout = 30 * HOARE_SEC;

static const char body[] = "Hello, World!";

struct conn {
    int fd;
    time_t date_sec;
    char date[32]; /* "Mon, 02 Jan 2006 15:04:05 GMT" for date_sec */
    size_t outlen;
    char out[OUT_CAP];
    char in[IN_CAP];
};

static void update_date(struct conn *c) {
    time_t now = time(NULL);
    if (now == c->date_sec) return;
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(c->date, sizeof c->date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    c->date_sec = now;
}

static void put(struct conn *c, const char *s, size_t n) {
    memcpy(c->out + c->outlen, s, n);
    c->outlen += n;
}
#define PUT_LIT(c, s) put((c), (s), sizeof(s) - 1)

/* Append the decimal digits of v. */
static void put_uint(struct conn *c, size_t v) {
    char digits[24];
    size_t i = sizeof digits;
    do digits[--i] = (char)('0' + v % 10);
    while ((v /= 10) > 0);
    put(c, digits + i, sizeof digits - i);
}

/* Append one response (status line with its reason, e.g. "200 OK"). */
static void respond(struct conn *c, bool http11, const char *status, const char *text, bool head,
                    bool keep_alive, const char *extra_header) {
    size_t tlen = strlen(text);
    if (http11) PUT_LIT(c, "HTTP/1.1 ");
    else PUT_LIT(c, "HTTP/1.0 ");
    put(c, status, strlen(status));
    PUT_LIT(c, "\r\nContent-Length: ");
    put_uint(c, tlen);
    PUT_LIT(c, "\r\nContent-Type: text/plain; charset=utf-8\r\nDate: ");
    put(c, c->date, strlen(c->date));
    if (extra_header) put(c, extra_header, strlen(extra_header));
    if (!keep_alive) PUT_LIT(c, "\r\nConnection: close");
    else if (!http11) PUT_LIT(c, "\r\nConnection: keep-alive");
    PUT_LIT(c, "\r\n\r\n");
    if (!head) put(c, text, tlen);
}

static bool flush(struct conn *c) {
    if (c->outlen == 0) return true;
    ssize_t n = hoare_fd_write(c->fd, c->out, c->outlen);
    bool ok = n == (ssize_t)c->outlen;
    c->outlen = 0;
    return ok;
}

/* Close after a final response: stop sending, drain what the client still sends (briefly), so that
 * the close does not reset the connection before the client read the response. */
static void lingering_close(int fd) {
    shutdown(fd, SHUT_WR);
    hoare_fd_set_deadline(fd, hoare_now() + 500 * HOARE_MS);
    char sink[512];
    while (hoare_fd_read(fd, sink, sizeof sink) > 0) {}
    hoare_fd_close(fd);
}

static void serve(void *arg) {
    struct conn *c = arg;
    size_t have = 0, skip = 0; /* bytes in c->in; body bytes still to discard */
    /* The deadline is pushed forward when requests complete (not when bytes arrive: a client
     * trickling a request must not keep the connection), at most every idle_timeout/8. */
    int64_t deadline_set = hoare_now();
    hoare_fd_set_deadline(c->fd, deadline_set + idle_timeout);
    bool closing = false;
    while (!closing) {
        ssize_t n = hoare_fd_read(c->fd, c->in + have, IN_CAP - have);
        if (n <= 0) break;
        have += (size_t)n;
        size_t pos = 0;
        int answered = 0;
        update_date(c);
        while (!closing) {
            if (skip) {
                size_t take = have - pos < skip ? have - pos : skip;
                pos += take;
                skip -= take;
                if (skip) break;
            }
            struct request rq;
            enum parse_result r = parse_request(c->in + pos, have - pos, &rq);
            if (r == PARSE_INCOMPLETE) {
                if (pos == 0 && have == IN_CAP) r = PARSE_BAD; /* headers do not fit */
                else break;
            }
            if (c->outlen + RESPONSE_MAX > OUT_CAP && !flush(c)) goto out;
            if (r == PARSE_BAD) {
                respond(c, true, "400 Bad Request", "400 Bad Request", false, false, NULL);
                closing = true;
            } else if (r == PARSE_UNSUPPORTED) {
                respond(c, rq.http11, "501 Not Implemented", "501 Not Implemented", false, false, NULL);
                closing = true;
            } else {
                if (rq.is_get || rq.is_head)
                    respond(c, rq.http11, "200 OK", body, rq.is_head, rq.keep_alive, NULL);
                else
                    respond(c, rq.http11, "405 Method Not Allowed", "405 Method Not Allowed", false,
                            rq.keep_alive, "\r\nAllow: GET, HEAD");
                pos += rq.header_len;
                skip = rq.content_length;
                closing = !rq.keep_alive;
                answered++;
            }
        }
        if (!flush(c)) goto out;
        memmove(c->in, c->in + pos, have - pos);
        have -= pos;
        if (answered && !closing) {
            int64_t now = hoare_now();
            if (now - deadline_set > idle_timeout / 8) {
                hoare_fd_set_deadline(c->fd, now + idle_timeout);
                deadline_set = now;
            }
        }
    }
    if (closing) {
        lingering_close(c->fd);
        free(c);
        return;
    }
out:
    hoare_fd_close(c->fd);
    free(c);
}

/* The program's main goroutine (see main below). */
static int app(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s HOST:PORT [idle_timeout_ms]\n", argv[0]);
        return 2;
    }
    if (argc == 3) idle_timeout = strtoll(argv[2], NULL, 10) * HOARE_MS;
    if (idle_timeout <= 0) idle_timeout = 30 * HOARE_SEC;
    int lfd = hoare_net_listen("tcp", argv[1]);
    if (lfd < 0) {
        fprintf(stderr, "listen %s: %s\n", argv[1], strerror(-lfd));
        return 1;
    }
    struct sockaddr_storage ss;
    socklen_t slen = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (getsockname(lfd, (struct sockaddr *)&ss, &slen) == 0) {
        if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof host);
            port = ntohs(s6->sin6_port);
        } else {
            struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &s4->sin_addr, host, sizeof host);
            port = ntohs(s4->sin_port);
        }
    }
    printf(ss.ss_family == AF_INET6 ? "listening on [%s]:%d\n" : "listening on %s:%d\n", host, port);
    fflush(stdout);
    int64_t backoff = 0;
    for (;;) {
        int fd = hoare_fd_accept(lfd, NULL, NULL);
        if (fd < 0) {
            /* Out of descriptors or memory: as Go's http.Server, sleep 5 ms, doubling up to 1 s,
             * so that connections can finish, then accept again (neither spin nor die). */
            if (fd != -EMFILE && fd != -ENFILE && fd != -ENOBUFS && fd != -ENOMEM) {
                fprintf(stderr, "accept: %s\n", strerror(-fd));
                return 1;
            }
            backoff = backoff ? 2 * backoff : 5 * HOARE_MS;
            if (backoff > HOARE_SEC) backoff = HOARE_SEC;
            fprintf(stderr, "accept: %s; retrying in %lld ms\n", strerror(-fd), (long long)(backoff / HOARE_MS));
            hoare_sleep(backoff);
            continue;
        }
        backoff = 0;
        /* One allocation per connection (buffers too big for comfort on a goroutine stack). */
        struct conn *c = malloc(sizeof *c);
        if (!c) {
            hoare_fd_close(fd);
            continue;
        }
        c->fd = fd;
        c->date_sec = 0;
        c->outlen = 0;
        if (hoare_go(serve, c) != 0) {
            free(c);
            hoare_fd_close(fd);
        }
    }
}

int main(int argc, char **argv) { return hoare_main(app, argc, argv); }
