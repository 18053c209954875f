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
 * Full duplex, as Go's tls.Conn: a read and a write may run at once (more readers, or writers,
 * take turns). Three locks:
 *  - rmu, a hoare_mutex, held by a read for the whole call, parks included; wmu likewise by a write
 *    or a shutdown. The handshake takes both, rmu first: the only order in which both are taken.
 *    Reads and writes run the handshake first when it is not done, so that afterwards a write
 *    never has to read (see "Nobody sleeps forever" at call()); the peer may not start another
 *    one (TLS 1.2 renegotiation is refused).
 *  - mu, a pthread mutex, for the SSL object (not safe for concurrent use): held around each single
 *    OpenSSL call, never across a park, with preemption off. Users reach it with hoare_tls_lock.
 *
 * Ownership: a hoare_tls owns its SSL and its descriptor.
 */
#include <errno.h>
#include <openssl/err.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "hoare_tls.h"

struct hoare_tls {
    SSL *ssl;
    int fd;
    /* Whole calls: rmu is held by a read from start to end (parks included), wmu by a write or a
     * shutdown; the handshake takes both, rmu first (the only order in which both are taken). */
    hoare_mutex rmu, wmu;
    /* The SSL object and the fields below: held around each single OpenSSL call, never across a
     * park (preemption is off meanwhile, as for the call itself). */
    pthread_mutex_t mu;
    bool may_read;  /* the running OpenSSL call holds rmu: only then does the BIO take bytes off the socket */
    bool starved;   /* the BIO found the socket empty (EAGAIN) during the running call */
    atomic_bool handshaken;
    char error[160]; /* the last TLS failure's text */
};

/* ---------------------------------------------------------------- the BIO */

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

/* The callbacks run inside an OpenSSL call, hence with t->mu held. */

static int bio_read(BIO *b, char *buf, int len) {
    hoare_tls *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (!t->may_read) { /* see "Nobody sleeps forever" below */
        t->starved = true;
        BIO_set_retry_read(b);
        return -1;
    }
    ssize_t n;
    while ((n = recv(t->fd, buf, (size_t)len, MSG_DONTWAIT)) < 0 && errno == EINTR) {}
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        t->starved = true;
        BIO_set_retry_read(b);
    }
    return (int)n;
}

static int bio_write(BIO *b, const char *buf, int len) {
    hoare_tls *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t n;
    while ((n = send(t->fd, buf, (size_t)len, MSG_DONTWAIT | MSG_NOSIGNAL)) < 0 && errno == EINTR) {}
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
    if (!t || !ssl || pthread_mutex_init(&t->mu, NULL) != 0) {
        SSL_free(ssl);
        BIO_free(bio);
        free(t);
        errno = ENOMEM;
        return NULL;
    }
    BIO_set_data(bio, t);
    SSL_set_bio(ssl, bio, bio); /* the SSL owns the BIO */
    /* SSL_write may be repeated with a buffer at another address (none moves here, but cheap). */
    SSL_set_mode(ssl, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* A renegotiation (TLS 1.2) started by the peer would put the connection back in a handshake
     * in the middle of a read, and a write beside it would then have to do the handshake's
     * reading: it is refused (a no_renegotiation alert), as Go refuses it by default. */
    SSL_set_options(ssl, SSL_OP_NO_RENEGOTIATION);
    if (server) {
        SSL_set_accept_state(ssl);
    } else {
        SSL_set_connect_state(ssl);
        if (server_name && (!SSL_set_tlsext_host_name(ssl, server_name) || !SSL_set1_host(ssl, server_name))) {
            SSL_free(ssl);
            pthread_mutex_destroy(&t->mu);
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

/* What an OpenSSL call came to (call() below): */
enum {
    C_EOF = 0,        /* the peer's close_notify */
    C_WAIT_READ = 1,  /* park until the socket is readable (hoare_fd_wait's events), then again */
    C_WAIT_WRITE = 2, /* park until it is writable, then again */
    C_DONE = 3,       /* succeeded */
    C_AGAIN = 4,      /* again at once: what it waits for is already inside OpenSSL */
};                    /* or a negative errno value that ends the call */

/* After an OpenSSL call returned r <= 0, on the same thread with preemption still off and t->mu
 * held: what it came to. */
static int classify(hoare_tls *t, int r, int saved_errno) {
    int e = SSL_get_error(t->ssl, r);
    switch (e) {
    case SSL_ERROR_WANT_READ: return C_WAIT_READ;
    case SSL_ERROR_WANT_WRITE: return C_WAIT_WRITE;
    case SSL_ERROR_ZERO_RETURN: return C_EOF;
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

/* The short lock. Preemption is off while it is held: a goroutine switched out holding it would
 * resume on the same thread, which another goroutine waiting for the lock would be blocking. */
static void lock(hoare_tls *t) {
    hoare_preempt_disable();
    pthread_mutex_lock(&t->mu);
}
static void unlock(hoare_tls *t) {
    pthread_mutex_unlock(&t->mu);
    hoare_preempt_enable();
}

/* Make one OpenSSL call under the short lock; returns what it came to (*n: bytes moved).
 * Preemption is off for the call: OpenSSL keeps per-thread state (the error queue, marks set and
 * popped inside one call), and our BIO callbacks, being the program's code, would otherwise be
 * safe points where another goroutine could take this thread in the middle of the call.
 *
 * Nobody sleeps forever. A reader and a writer run OpenSSL calls in turn, each parking between its
 * calls, so one could take away what the other parks for. Writability cannot be taken away (it
 * comes back as the peer reads). Readability can: a call that took bytes off the socket, or left a
 * record inside OpenSSL, while a reader is parked would leave that reader asleep. So:
 *  - only a call that holds rmu (a read, the handshake) takes bytes off the socket: for any other
 *    the BIO says "retry", which a write after the handshake never meets (it only sends: messages
 *    from the peer - KeyUpdate, NewSessionTicket - are taken in by reads, and with renegotiation
 *    refused nothing makes a write read; one that would fails with -EPROTO, not a hang);
 *  - a reader parks only when its SSL_read stopped because the socket was empty (t->starved) and
 *    OpenSSL holds no decrypted data (SSL_pending), checked under the short lock. OpenSSL may also
 *    say WANT_READ with a whole record still in its buffers (SSL_has_pending), e.g. after a
 *    post-handshake message without SSL_MODE_AUTO_RETRY: then it is called again at once.
 * Between that check and the park only rmu's holder - the parked reader - could read the socket,
 * so any byte the peer sends from then on wakes it. */
static int call(hoare_tls *t, int op, void *buf, size_t len, size_t *n) {
    lock(t);
    t->may_read = op == OP_READ || op == OP_HANDSHAKE;
    t->starved = false;
    ERR_clear_error();
    errno = 0;
    int r;
    switch (op) {
    case OP_HANDSHAKE: r = SSL_do_handshake(t->ssl); break;
    case OP_READ: r = SSL_read_ex(t->ssl, buf, len, n); break;
    case OP_WRITE: r = SSL_write_ex(t->ssl, buf, len, n); break;
    default: r = SSL_shutdown(t->ssl); r = r >= 0 ? 1 : r; break;
    }
    int c = r == 1 ? C_DONE : classify(t, r, errno);
    if (c == C_WAIT_READ && !t->may_read) {
        /* a write or shutdown would have to read: only a handshake does that (a renegotiation
         * started with the SSL object, which is not supported) */
        snprintf(t->error, sizeof t->error, "hoare_tls: a %s needs to read (a handshake?)",
                 op == OP_WRITE ? "write" : "shutdown");
        c = -EPROTO;
    } else if (c == C_WAIT_READ && (SSL_pending(t->ssl) > 0 || (SSL_has_pending(t->ssl) && !t->starved))) {
        c = C_AGAIN;
    }
    t->may_read = false;
    unlock(t);
    return c;
}

/* Make the call until it succeeds or ends: C_DONE, C_EOF or a negative errno value. The caller
 * holds the whole-call lock(s) of op. */
static int run(hoare_tls *t, int op, void *buf, size_t len, size_t *n) {
    for (;;) {
        int c = call(t, op, buf, len, n);
        if (c == C_WAIT_READ || c == C_WAIT_WRITE) {
            int w = hoare_fd_wait(t->fd, c);
            if (w) return w;
        } else if (c != C_AGAIN) {
            return c;
        }
    }
}

int hoare_tls_handshake(hoare_tls *t) {
    if (atomic_load_explicit(&t->handshaken, memory_order_acquire)) return 0;
    hoare_mutex_lock(&t->rmu);
    hoare_mutex_lock(&t->wmu);
    int c = C_DONE;
    if (!atomic_load_explicit(&t->handshaken, memory_order_relaxed)) {
        c = run(t, OP_HANDSHAKE, NULL, 0, NULL);
        if (c == C_DONE) atomic_store_explicit(&t->handshaken, true, memory_order_release);
    }
    hoare_mutex_unlock(&t->wmu);
    hoare_mutex_unlock(&t->rmu);
    return c == C_DONE ? 0 : c == C_EOF ? -ECONNRESET : c;
}

ssize_t hoare_tls_read(hoare_tls *t, void *buf, size_t len) {
    /* SSL_read_ex with len 0 waits for a record and then reports a failure (the record's data
     * stays, but the call says -ECONNRESET): answer here, as read(2) does */
    if (len == 0) return 0;
    /* the handshake first, under both locks, so that what follows never has to both read and write */
    int h = hoare_tls_handshake(t);
    if (h) return h;
    hoare_mutex_lock(&t->rmu);
    size_t n = 0;
    int c = run(t, OP_READ, buf, len, &n);
    hoare_mutex_unlock(&t->rmu);
    return c == C_DONE ? (ssize_t)n : c;
}

ssize_t hoare_tls_write(hoare_tls *t, const void *buf, size_t len) {
    if (len == 0) return 0; /* nothing to send, and no handshake started for it: as for reads */
    int h = hoare_tls_handshake(t);
    if (h) return h;
    hoare_mutex_lock(&t->wmu);
    size_t done = 0;
    int c = C_DONE;
    while (done < len && c == C_DONE) {
        size_t n = 0;
        c = run(t, OP_WRITE, (char *)buf + done, len - done, &n);
        done += n;
    }
    hoare_mutex_unlock(&t->wmu);
    return c == C_DONE ? (ssize_t)len : c == C_EOF ? -EPIPE : c;
}

int hoare_tls_shutdown(hoare_tls *t) {
    hoare_mutex_lock(&t->wmu);
    /* 1 or 0 from SSL_shutdown (0: ours sent, the peer's not awaited) both count as done */
    int c = run(t, OP_SHUTDOWN, NULL, 0, NULL);
    hoare_mutex_unlock(&t->wmu);
    return c == C_DONE ? 0 : c == C_EOF ? -EPIPE : c;
}

void hoare_tls_free(hoare_tls *t) {
    if (!t) return;
    SSL_free(t->ssl);
    pthread_mutex_destroy(&t->mu);
    hoare_fd_close(t->fd);
    free(t);
}

void hoare_tls_lock(hoare_tls *t) { lock(t); }
void hoare_tls_unlock(hoare_tls *t) { unlock(t); }

int hoare_tls_fd(const hoare_tls *t) { return t->fd; }
SSL *hoare_tls_ssl(hoare_tls *t) { return t->ssl; }
const char *hoare_tls_error(const hoare_tls *t) { return t->error; }
