/*
 * tls.c - libhoare_tls: OpenSSL over hoare descriptors (see include/hoare_tls.h).
 *
 * The SSL object talks to the socket through a BIO of ours that never blocks: recv/send with
 * MSG_DONTWAIT and MSG_NOSIGNAL (no SIGPIPE, whatever the process' disposition), reporting EAGAIN
 * as "retry". OpenSSL then returns SSL_ERROR_WANT_READ / WANT_WRITE, and the goroutine parks in
 * hoare_fd_wait until the socket is ready (or its deadline passes, or it is closed), then repeats
 * the call. Parking happens only between OpenSSL calls, never inside one: OpenSSL keeps its error
 * queue per thread, and a goroutine may resume on another thread after a park. So each call clears
 * the queue, and SSL_get_error and the error text are read on the thread that made the call, before
 * any park; and preemption is off during the call (our BIO callbacks are the program's code, so
 * they would be safe points where another goroutine could take the thread mid-call).
 *
 * Ownership: a hoare_tls owns its SSL and its descriptor; one call at a time (the SSL is not safe
 * for concurrent use).
 */
#include <errno.h>
#include <openssl/err.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "hoare_tls.h"

struct hoare_tls {
    SSL *ssl;
    int fd;
    char error[160]; /* the last TLS failure's text */
};

/* ---------------------------------------------------------------- the BIO */

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static int bio_fd(BIO *b) { return (int)(intptr_t)BIO_get_data(b); }

static int bio_read(BIO *b, char *buf, int len) {
    BIO_clear_retry_flags(b);
    ssize_t n;
    while ((n = recv(bio_fd(b), buf, (size_t)len, MSG_DONTWAIT)) < 0 && errno == EINTR) {}
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) BIO_set_retry_read(b);
    return (int)n;
}

static int bio_write(BIO *b, const char *buf, int len) {
    BIO_clear_retry_flags(b);
    ssize_t n;
    while ((n = send(bio_fd(b), buf, (size_t)len, MSG_DONTWAIT | MSG_NOSIGNAL)) < 0 && errno == EINTR) {}
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) BIO_set_retry_write(b);
    return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr) {
    (void)b, (void)num, (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0; /* writes are never buffered here */
}

static int bio_create(BIO *b) {
    BIO_set_init(b, 1);
    return 1;
}

static void bio_method_init(void) {
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR, "hoare");
    if (m && BIO_meth_set_read(m, bio_read) && BIO_meth_set_write(m, bio_write) &&
        BIO_meth_set_ctrl(m, bio_ctrl) && BIO_meth_set_create(m, bio_create))
        bio_method = m;
    else if (m)
        BIO_meth_free(m);
}

/* ---------------------------------------------------------------- connections */

static hoare_tls *tls_new(SSL_CTX *ctx, int fd, bool server, const char *server_name) {
    if (!ctx || fd < 0) {
        errno = EINVAL;
        return NULL;
    }
    pthread_once(&bio_once, bio_method_init);
    hoare_tls *t = calloc(1, sizeof *t);
    BIO *bio = bio_method ? BIO_new(bio_method) : NULL;
    SSL *ssl = bio ? SSL_new(ctx) : NULL;
    if (!t || !ssl) {
        SSL_free(ssl);
        BIO_free(bio);
        free(t);
        errno = ENOMEM;
        return NULL;
    }
    BIO_set_data(bio, (void *)(intptr_t)fd);
    SSL_set_bio(ssl, bio, bio); /* the SSL owns the BIO */
    /* SSL_write may be repeated with a buffer at another address (none moves here, but cheap). */
    SSL_set_mode(ssl, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (server) {
        SSL_set_accept_state(ssl);
    } else {
        SSL_set_connect_state(ssl);
        if (server_name && (!SSL_set_tlsext_host_name(ssl, server_name) || !SSL_set1_host(ssl, server_name))) {
            SSL_free(ssl);
            free(t);
            errno = EINVAL;
            return NULL;
        }
    }
    t->ssl = ssl;
    t->fd = fd;
    return t;
}

hoare_tls *hoare_tls_server(SSL_CTX *ctx, int fd) { return tls_new(ctx, fd, true, NULL); }
hoare_tls *hoare_tls_client(SSL_CTX *ctx, int fd, const char *server_name) {
    return tls_new(ctx, fd, false, server_name);
}

/* After an OpenSSL call returned r <= 0, on the same thread with preemption still off: 1 (wait to
 * read), 2 (wait to write), 0 (the peer's close_notify), or the negative errno value that ends the
 * call. */
static int classify(hoare_tls *t, int r, int saved_errno) {
    int e = SSL_get_error(t->ssl, r);
    switch (e) {
    case SSL_ERROR_WANT_READ: return 1;
    case SSL_ERROR_WANT_WRITE: return 2;
    case SSL_ERROR_ZERO_RETURN: return 0;
    case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() == 0) return saved_errno ? -saved_errno : -ECONNRESET;
        break;
    default: break;
    }
    unsigned long code = ERR_peek_last_error();
    if (code && ERR_GET_REASON(code) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        ERR_clear_error();
        return -ECONNRESET;
    }
    ERR_error_string_n(code ? code : (unsigned long)e, t->error, sizeof t->error);
    ERR_clear_error();
    return -EPROTO;
}

/* The OpenSSL calls of this file, one kind each. */
enum { OP_HANDSHAKE, OP_READ, OP_WRITE, OP_SHUTDOWN };

/* Make one OpenSSL call; returns as classify does, or 3 when it succeeded (*n: bytes moved).
 * Preemption is off for the call: OpenSSL keeps per-thread state (the error queue, marks set and
 * popped inside one call), and our BIO callbacks, being the program's code, would otherwise be
 * safe points where another goroutine could take this thread in the middle of the call. */
static int call(hoare_tls *t, int op, void *buf, size_t len, size_t *n) {
    hoare_preempt_disable();
    ERR_clear_error();
    errno = 0;
    int r;
    switch (op) {
    case OP_HANDSHAKE: r = SSL_do_handshake(t->ssl); break;
    case OP_READ: r = SSL_read_ex(t->ssl, buf, len, n); break;
    case OP_WRITE: r = SSL_write_ex(t->ssl, buf, len, n); break;
    default: r = SSL_shutdown(t->ssl); r = r >= 0 ? 1 : r; break;
    }
    int c = r == 1 ? 3 : classify(t, r, errno);
    hoare_preempt_enable();
    return c;
}

/* Make the call until it succeeds (3) or ends (<= 0), parking while the socket is not ready. */
static int run(hoare_tls *t, int op, void *buf, size_t len, size_t *n) {
    for (;;) {
        int c = call(t, op, buf, len, n);
        if (c == 1 || c == 2) {
            int w = hoare_fd_wait(t->fd, c);
            if (w) return w;
            continue;
        }
        return c;
    }
}

int hoare_tls_handshake(hoare_tls *t) {
    int c = run(t, OP_HANDSHAKE, NULL, 0, NULL);
    return c == 3 ? 0 : c == 0 ? -ECONNRESET : c;
}

ssize_t hoare_tls_read(hoare_tls *t, void *buf, size_t len) {
    /* SSL_read_ex with len 0 waits for a record and then reports a failure (the record's data
     * stays, but the call says -ECONNRESET): answer here, as read(2) does */
    if (len == 0) return 0;
    size_t n = 0;
    int c = run(t, OP_READ, buf, len, &n);
    return c == 3 ? (ssize_t)n : c;
}

ssize_t hoare_tls_write(hoare_tls *t, const void *buf, size_t len) {
    if (len == 0) return 0; /* nothing to send, and no handshake started for it: as for reads */
    size_t done = 0;
    while (done < len) {
        size_t n = 0;
        int c = run(t, OP_WRITE, (char *)buf + done, len - done, &n);
        if (c != 3) return c == 0 ? -EPIPE : c;
        done += n;
    }
    return (ssize_t)len;
}

int hoare_tls_shutdown(hoare_tls *t) {
    /* 1 or 0 from SSL_shutdown (0: ours sent, the peer's not awaited) both count as done */
    int c = run(t, OP_SHUTDOWN, NULL, 0, NULL);
    return c == 3 ? 0 : c;
}

void hoare_tls_free(hoare_tls *t) {
    if (!t) return;
    SSL_free(t->ssl);
    hoare_fd_close(t->fd);
    free(t);
}

int hoare_tls_fd(const hoare_tls *t) { return t->fd; }
SSL *hoare_tls_ssl(hoare_tls *t) { return t->ssl; }
const char *hoare_tls_error(const hoare_tls *t) { return t->error; }
