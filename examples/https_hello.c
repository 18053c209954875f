/*
 * https_hello.c - the HTTP example over TLS: "Hello, World!" to every GET, one goroutine per
 * connection, OpenSSL through libhoare_tls (a goroutine waiting in a handshake or for a request is
 * parked: a slow client costs no thread).
 *
 *   https_hello CERT.pem KEY.pem 127.0.0.1:8443 [idle_timeout_ms]
 *
 * Prints "listening on HOST:PORT" once it listens. HTTP/1.1 keep-alive (unless "Connection:
 * close", or HTTP/1.0 without "Connection: keep-alive"), pipelined requests answered in order;
 * requests with a body are refused (400) and the connection closed. The handshake and each request
 * must complete within idle_timeout_ms (default 10000). The accept loop backs off on EMFILE/ENFILE
 * as http_hello does.
 */
#include <hoare.h>
#include <hoare_tls.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define IN_CAP 8192

static SSL_CTX *ctx;
static int64_t idle_timeout = 10 * HOARE_SEC;

/* The value of header name in the header block [hdrs, end) into value (NUL-terminated, cut to
 * cap); false if there is no such header. */
static bool header_get(const char *hdrs, const char *end, const char *name, char *value, size_t cap) {
    size_t nlen = strlen(name);
    for (const char *line = hdrs; line < end;) {
        const char *nl = memchr(line, '\n', (size_t)(end - line));
        if (!nl) break;
        if ((size_t)(nl - line) > nlen && strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
            size_t vlen = (size_t)(nl - line) - nlen - 1;
            if (vlen >= cap) vlen = cap - 1;
            memcpy(value, line + nlen + 1, vlen);
            value[vlen] = 0;
            return true;
        }
        line = nl + 1;
    }
    return false;
}

static bool header_has(const char *hdrs, const char *end, const char *name, const char *tok) {
    char value[256];
    return header_get(hdrs, end, name, value, sizeof value) && strcasestr(value, tok);
}

static void serve(void *arg) {
    hoare_tls *t = arg;
    int fd = hoare_tls_fd(t);
    char in[IN_CAP];
    size_t have = 0;
    hoare_fd_set_deadline(fd, hoare_now() + idle_timeout);
    if (hoare_tls_handshake(t) != 0) goto out;
    for (;;) {
        char *end = memmem(in, have, "\r\n\r\n", 4);
        if (!end) {
            if (have == IN_CAP) break; /* headers too long */
            ssize_t n = hoare_tls_read(t, in + have, IN_CAP - have);
            if (n <= 0) break;
            have += (size_t)n;
            continue;
        }
        size_t req_len = (size_t)(end + 4 - in);
        const char *eol = memchr(in, '\n', req_len);
        bool http11 = eol && eol - in >= 9 && memcmp(eol - 9, "HTTP/1.1", 8) == 0;
        bool is_get = have >= 4 && memcmp(in, "GET ", 4) == 0;
        bool is_head = have >= 5 && memcmp(in, "HEAD ", 5) == 0;
        const char *hdrs = eol ? eol + 1 : end;
        char cl[32];
        bool has_body = (header_get(hdrs, end + 2, "Content-Length", cl, sizeof cl) && strtol(cl, NULL, 10) != 0) ||
                        header_has(hdrs, end + 2, "Transfer-Encoding", "");
        bool keep = http11 ? !header_has(hdrs, end + 2, "Connection", "close")
                           : header_has(hdrs, end + 2, "Connection", "keep-alive");
        char out[512];
        int len;
        if (has_body) {
            len = snprintf(out, sizeof out, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            keep = false;
        } else if (is_get || is_head) {
            len = snprintf(out, sizeof out, "HTTP/1.%d 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain; charset=utf-8\r\n%s\r\n%s",
                           http11, keep ? (http11 ? "" : "Connection: keep-alive\r\n") : "Connection: close\r\n",
                           is_head ? "" : "Hello, World!");
        } else {
            len = snprintf(out, sizeof out, "HTTP/1.%d 405 Method Not Allowed\r\nAllow: GET, HEAD\r\nContent-Length: 0\r\n%s\r\n",
                           http11, keep ? "" : "Connection: close\r\n");
        }
        if (hoare_tls_write(t, out, (size_t)len) != len) break;
        if (!keep) break;
        memmove(in, in + req_len, have - req_len);
        have -= req_len;
        hoare_fd_set_deadline(fd, hoare_now() + idle_timeout);
    }
out:
    hoare_tls_close(t); /* close_notify if the handshake was done, as Go's Close (bounded by the deadline) */
}

/* The program's main goroutine (see main below). */
static int app(int argc, char **argv) {
    if (argc < 4 || argc > 5) {
        fprintf(stderr, "usage: %s CERT.pem KEY.pem HOST:PORT [idle_timeout_ms]\n", argv[0]);
        return 2;
    }
    if (argc == 5) idle_timeout = strtoll(argv[4], NULL, 10) * HOARE_MS;
    if (idle_timeout <= 0) idle_timeout = 10 * HOARE_SEC;
    ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx || SSL_CTX_use_certificate_chain_file(ctx, argv[1]) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, argv[2], SSL_FILETYPE_PEM) != 1) {
        fprintf(stderr, "certificate or key: ");
        ERR_print_errors_fp(stderr);
        return 1;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    int lfd = hoare_net_listen("tcp", argv[3]);
    if (lfd < 0) {
        fprintf(stderr, "listen %s: %s\n", argv[3], strerror(-lfd));
        return 1;
    }
    struct sockaddr_in sin;
    socklen_t slen = sizeof sin;
    if (getsockname(lfd, (struct sockaddr *)&sin, &slen) == 0 && sin.sin_family == AF_INET) {
        char host[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &sin.sin_addr, host, sizeof host);
        printf("listening on %s:%d\n", host, ntohs(sin.sin_port));
    } else {
        printf("listening on %s\n", argv[3]);
    }
    fflush(stdout);
    int64_t backoff = 0;
    for (;;) {
        int fd = hoare_fd_accept(lfd, NULL, NULL);
        if (fd < 0) {
            if (fd != -EMFILE && fd != -ENFILE && fd != -ENOBUFS && fd != -ENOMEM) {
                fprintf(stderr, "accept: %s\n", strerror(-fd));
                return 1;
            }
            backoff = backoff ? 2 * backoff : 5 * HOARE_MS; /* Go's http.Server: 5 ms .. 1 s */
            if (backoff > HOARE_SEC) backoff = HOARE_SEC;
            hoare_sleep(backoff);
            continue;
        }
        backoff = 0;
        hoare_tls *t = hoare_tls_server(ctx, fd);
        if (!t) {
            hoare_fd_close(fd);
            continue;
        }
        if (hoare_go(serve, t) != 0) hoare_tls_free(t);
    }
}

int main(int argc, char **argv) { return hoare_main(app, argc, argv); }
