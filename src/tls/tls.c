/*
 * tls.c - libhoare_tls: OpenSSL over hoare descriptors (see include/hoare_tls.h).
 *
 * The SSL object talks to the socket through a BIO of ours that never blocks: recv with
 * MSG_DONTWAIT, reporting EAGAIN as "retry" (OpenSSL then returns SSL_ERROR_WANT_READ, and the
 * goroutine parks in hoare_fd_wait until the socket is readable, or its deadline passes, or it is
 * closed, then repeats the call), and send with MSG_DONTWAIT and MSG_NOSIGNAL (no SIGPIPE, whatever
 * the process' disposition), what the socket does not take going to an output queue (below) that
 * is sent after the call, parking on writability. Parking happens only between OpenSSL calls,
 * never inside one: OpenSSL keeps its error queue per thread, and a goroutine may resume on another
 * thread after a park. So each call clears the queue, and SSL_get_error and the error text are
 * read on the thread that made the call, before any park; and preemption is off during the call
 * (our BIO callbacks are the program's code, so they would be safe points where another goroutine
 * could take the thread mid-call).
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
 *    It also guards the output queue.
 * The BIO's write side never says "retry", so that no SSL_write is ever repeated: what the socket
 * does not take at once goes to the output queue, which the goroutine that made the call sends
 * afterwards, parking on writability outside the call (bio_write, flush, out_kick).
 *
 * Ownership: a hoare_tls owns its SSL and its descriptor. It is freed when its owner has closed it
 * (hoare_tls_close, hoare_tls_free) and no call on it is in progress (refs): a close beside calls
 * on other goroutines, as Go allows, refuses every OpenSSL call and send from then on (state), so
 * those calls end with -EBADF, the parked ones woken by hoare_fd_close.
 */
#include <errno.h>
#include <openssl/err.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
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
    bool may_read; /* the running OpenSSL call holds rmu: only then does the BIO read the socket */
    bool starved;  /* the BIO found the socket empty (EAGAIN) during the running call */
    /* The output queue (see bio_write): out[out_off, out_off + out_len) is what OpenSSL wrote and
     * the socket did not take yet, to be sent in order before anything else. Guarded by mu;
     * appended to by any OpenSSL call, sent (flush) only by the holder of wmu. */
    unsigned char *out;
    size_t out_off, out_len, out_cap;
    int out_err; /* the errno value with which sending failed: the queue is dropped, no more is sent */
    atomic_bool handshaken;
    /* Closing (hoare_tls_close, hoare_tls_free), guarded by mu. OPEN; CLOSING while close sends
     * close_notify (only its shutdown runs); CLOSED: every OpenSSL call and every send is refused
     * (-EBADF), so no call touches the descriptor's number once it is closed. */
    enum { T_OPEN, T_CLOSING, T_CLOSED } state;
    /* References: the owner's (dropped by close or free) and one per public call in progress.
     * Whoever drops the last frees the connection: a close while other goroutines are in calls on
     * t (as Go allows) frees it once they have returned. */
    atomic_int refs;
    /* The first TLS failure's text, written once (under mu) and never changed after: a goroutine
     * whose call failed reads it without a lock while another call on t may fail too. */
    char error[160];
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

static void out_fail(hoare_tls *t, int err) {
    t->out_err = err;
    free(t->out);
    t->out = NULL;
    t->out_off = t->out_len = t->out_cap = 0;
}

/* Append to the output queue. false: out of memory. */
static bool out_append(hoare_tls *t, const char *p, size_t n) {
    if (t->out_off + t->out_len + n > t->out_cap) {
        if (t->out_len > 0) memmove(t->out, t->out + t->out_off, t->out_len);
        t->out_off = 0;
        if (t->out_len + n > t->out_cap) {
            size_t cap = t->out_cap ? t->out_cap : 4096;
            while (cap < t->out_len + n) cap *= 2;
            unsigned char *q = realloc(t->out, cap);
            if (!q) return false;
            t->out = q;
            t->out_cap = cap;
        }
    }
    memcpy(t->out + t->out_off + t->out_len, p, n);
    t->out_len += n;
    return true;
}

/* Send from the output queue what the socket takes, with mu held: 0 (the queue is empty), 1 (the
 * socket is full), or the negative errno value with which sending failed. An empty queue's memory
 * is freed: it is only needed while the peer is slower than we are. */
static int out_send(hoare_tls *t) {
    if (t->state == T_CLOSED && !t->out_err) out_fail(t, EBADF); /* nothing more goes out */
    while (t->out_len > 0) {
        ssize_t n = send(t->fd, t->out + t->out_off, t->out_len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 1;
        if (n < 0) out_fail(t, errno);
        if (n < 0) break;
        t->out_off += (size_t)n;
        t->out_len -= (size_t)n;
    }
    if (t->out_err) return -t->out_err;
    free(t->out);
    t->out = NULL;
    t->out_off = t->out_cap = 0;
    return 0;
}

/* Never says "retry". OpenSSL requires an SSL_write that returned WANT_WRITE to be repeated with
 * the same arguments, and meanwhile nothing else may write: with a read and a write running at
 * once (a read writes too: alerts, KeyUpdate) that cannot be promised ("bad length"). So what
 * OpenSSL writes is always taken whole: sent at once if nothing is queued before it, what the
 * socket does not take appended to the output queue, which the goroutine that made the call sends
 * after the call, parking on writability outside it (flush). A write call makes at most WRITE_CHUNK
 * bytes of records at a time and flushes them before the next: the queue holds at most what one
 * call produced plus what a read added meanwhile. */
static int bio_write(BIO *b, const char *buf, int len) {
    hoare_tls *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    size_t done = 0;
    if (!t->out_err && t->out_len == 0) {
        ssize_t n;
        while ((n = send(t->fd, buf, (size_t)len, MSG_DONTWAIT | MSG_NOSIGNAL)) < 0 && errno == EINTR) {}
        if (n >= 0) done = (size_t)n;
        else if (errno != EAGAIN && errno != EWOULDBLOCK) out_fail(t, errno);
    }
    if (!t->out_err && done < (size_t)len && !out_append(t, buf + done, (size_t)len - done))
        out_fail(t, ENOMEM);
    if (t->out_err) {
        errno = t->out_err;
        return -1;
    }
    return len;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr) {
    (void)b, (void)num, (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0; /* the queue is flushed after the call, by its caller */
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
    atomic_init(&t->refs, 1);
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
    C_WAIT_WRITE = 2, /* park until it is writable, then again (not with our BIO, which takes all) */
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
    if (!t->error[0]) ERR_error_string_n(code ? code : (unsigned long)e, t->error, sizeof t->error);
    ERR_clear_error();
    return -EPROTO;
}

/* The OpenSSL calls of this file, one kind each. */
enum { OP_HANDSHAKE, OP_READ, OP_WRITE, OP_SHUTDOWN };

#define WRITE_CHUNK (64 * 1024) /* application bytes per SSL_write: 4 records */

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

/* Make one OpenSSL call under the short lock; returns what it came to (*n: bytes moved; *queued:
 * the output queue is not empty).
 * Preemption is off for the call: OpenSSL keeps per-thread state (the error queue, marks set and
 * popped inside one call), and our BIO callbacks, being the program's code, would otherwise be
 * safe points where another goroutine could take this thread in the middle of the call.
 *
 * Nobody sleeps forever. A reader and a writer run OpenSSL calls in turn, each parking between its
 * calls, so one could take away what the other parks for. Not writability: only wmu's holder parks
 * on it, with bytes queued that only it sends (see out_kick), and room comes back as the peer
 * reads. Readability could be: a call that took bytes off the socket, or left a record inside
 * OpenSSL, while a reader is parked would leave that reader asleep. So:
 *  - only a call that holds rmu (a read, the handshake) takes bytes off the socket: for any other
 *    the BIO says "retry", which a write after the handshake never meets (it only sends: messages
 *    from the peer - KeyUpdate, NewSessionTicket - are taken in by reads, and with renegotiation
 *    refused nothing makes a write read; one that would fails with -EPROTO, not a hang);
 *  - a reader parks only when its SSL_read stopped because the socket was empty (t->starved) and
 *    OpenSSL holds no decrypted data (SSL_pending), checked under the short lock. OpenSSL should
 *    not say WANT_READ with a whole record in its buffers either, but should it (SSL_has_pending
 *    while the socket was not found empty), it is called again at once.
 * Between that check and the park only rmu's holder - the parked reader - could read the socket,
 * so any byte the peer sends from then on wakes it. */
static int call(hoare_tls *t, int op, void *buf, size_t len, size_t *n, bool *queued) {
    lock(t);
    if (t->state == T_CLOSED || (t->state == T_CLOSING && op != OP_SHUTDOWN)) {
        *queued = false;
        unlock(t);
        return -EBADF;
    }
    if ((op == OP_WRITE || op == OP_SHUTDOWN) && t->out_err) {
        /* sending failed before: so do writes from now on, without OpenSSL (which may still hold
         * a record the BIO refused, and would take the next write for a wrong retry of it) */
        *queued = false;
        unlock(t);
        return -t->out_err;
    }
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
        if (!t->error[0])
            snprintf(t->error, sizeof t->error, "hoare_tls: a %s needs to read (a handshake?)",
                     op == OP_WRITE ? "write" : "shutdown");
        c = -EPROTO;
    } else if (c == C_WAIT_READ && (SSL_pending(t->ssl) > 0 || (SSL_has_pending(t->ssl) && !t->starved))) {
        c = C_AGAIN; /* what the read waits for is inside OpenSSL already */
    }
    t->may_read = false;
    *queued = t->out_len > 0;
    unlock(t);
    return c;
}

/* Send the output queue until it is empty, parking on writability (under the write deadline)
 * outside the short lock: 0 or a negative errno value. The caller holds wmu. A failure to wait
 * leaves the connection unable to write, as in Go (part of a record may have gone out). */
static int flush(hoare_tls *t) {
    for (;;) {
        lock(t);
        int r = out_send(t);
        unlock(t);
        if (r <= 0) return r;
        int w = hoare_fd_wait(t->fd, 2);
        if (w) {
            lock(t);
            if (!t->out_err) out_fail(t, -w);
            unlock(t);
            return w;
        }
    }
}

/* Who sends the output queue: the holder of wmu (a write, a shutdown, the handshake) sends it all
 * before releasing wmu. A read that queued bytes (an alert, a KeyUpdate) takes wmu if it is free
 * and sends them itself; if a write holds it, that write sends them. Should the write have looked
 * at the queue for the last time just before the read added to it, it looks again after releasing
 * wmu (wunlock): the read's trylock failed before that release, so the append came before the
 * second look, which finds it (or finds it sent, or finds wmu taken by another holder, who in turn
 * looks again after releasing). A read never waits for wmu: a writer parked on a full socket while
 * the peer waits for us to read would otherwise stop our reads too. */
static void out_kick(hoare_tls *t) {
    for (;;) {
        lock(t);
        bool pending = t->out_len > 0;
        unlock(t);
        if (!pending || hoare_mutex_trylock(&t->wmu) != 0) return;
        flush(t); /* a failure stays in t->out_err, for the next write to report */
        hoare_mutex_unlock(&t->wmu);
    }
}

/* Release wmu, then look at the queue again (see out_kick). */
static void wunlock(hoare_tls *t) {
    hoare_mutex_unlock(&t->wmu);
    out_kick(t);
}

/* Make the call until it succeeds or ends: C_DONE, C_EOF or a negative errno value. The caller
 * holds the whole-call lock(s) of op. */
static int run(hoare_tls *t, int op, void *buf, size_t len, size_t *n) {
    for (;;) {
        bool queued;
        int c = call(t, op, buf, len, n, &queued);
        if (queued && op == OP_READ) {
            out_kick(t);
        } else if (queued) {
            int f = flush(t); /* e.g. a handshake's flight, before waiting for the answer */
            if (f < 0 && c > C_EOF) return f;
        }
        if (c == C_WAIT_READ || c == C_WAIT_WRITE) {
            int w = hoare_fd_wait(t->fd, c);
            if (w) return w;
        } else if (c != C_AGAIN) {
            return c;
        }
    }
}

/* A public call's reference (see refs). */
static void enter(hoare_tls *t) { atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed); }
static void destroy(hoare_tls *t);
static void leave(hoare_tls *t) {
    if (atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) == 1) destroy(t);
}

static int handshake(hoare_tls *t) {
    if (atomic_load_explicit(&t->handshaken, memory_order_acquire)) return 0;
    hoare_mutex_lock(&t->rmu);
    hoare_mutex_lock(&t->wmu);
    int c = C_DONE;
    if (!atomic_load_explicit(&t->handshaken, memory_order_relaxed)) {
        c = run(t, OP_HANDSHAKE, NULL, 0, NULL);
        if (c == C_DONE) atomic_store_explicit(&t->handshaken, true, memory_order_release);
    }
    wunlock(t);
    hoare_mutex_unlock(&t->rmu);
    return c == C_DONE ? 0 : c == C_EOF ? -ECONNRESET : c;
}

int hoare_tls_handshake(hoare_tls *t) {
    enter(t);
    int r = handshake(t);
    leave(t);
    return r;
}

ssize_t hoare_tls_read(hoare_tls *t, void *buf, size_t len) {
    /* SSL_read_ex with len 0 waits for a record and then reports a failure (the record's data
     * stays, but the call says -ECONNRESET): answer here, as read(2) does */
    if (len == 0) return 0;
    enter(t);
    /* the handshake first, under both locks, so that a write never has to read */
    size_t n = 0;
    int c = handshake(t);
    if (c == 0) {
        hoare_mutex_lock(&t->rmu);
        c = run(t, OP_READ, buf, len, &n);
        hoare_mutex_unlock(&t->rmu);
    }
    leave(t);
    return c == C_DONE ? (ssize_t)n : c;
}

ssize_t hoare_tls_write(hoare_tls *t, const void *buf, size_t len) {
    if (len == 0) return 0; /* nothing to send, and no handshake started for it: as for reads */
    enter(t);
    int h = handshake(t);
    if (h) {
        leave(t);
        return h;
    }
    hoare_mutex_lock(&t->wmu);
    size_t done = 0;
    int c = C_DONE;
    while (done < len && c == C_DONE) {
        size_t n = 0, chunk = len - done < WRITE_CHUNK ? len - done : WRITE_CHUNK;
        c = run(t, OP_WRITE, (char *)buf + done, chunk, &n);
        done += n;
    }
    wunlock(t);
    leave(t);
    return c == C_DONE ? (ssize_t)len : c == C_EOF ? -EPIPE : c;
}

int hoare_tls_shutdown(hoare_tls *t) {
    enter(t);
    hoare_mutex_lock(&t->wmu);
    /* 1 or 0 from SSL_shutdown (0: ours sent, the peer's not awaited) both count as done */
    int c = run(t, OP_SHUTDOWN, NULL, 0, NULL);
    wunlock(t);
    leave(t);
    return c == C_DONE ? 0 : c == C_EOF ? -EPIPE : c;
}

/* The end of close and free: no OpenSSL call or send from now on (calls in progress return
 * -EBADF, parked ones at once, woken by hoare_fd_close), and the owner's reference dropped. */
static void close_now(hoare_tls *t) {
    lock(t);
    t->state = T_CLOSED;
    unlock(t);
    hoare_fd_close(t->fd);
    leave(t);
}

/* OPEN -> next, or false if closing began already. */
static bool begin_close(hoare_tls *t, int next) {
    lock(t);
    bool open = t->state == T_OPEN;
    if (open) t->state = next;
    unlock(t);
    return open;
}

int hoare_tls_close(hoare_tls *t) {
    if (!t) return 0;
    if (!begin_close(t, T_CLOSING)) return -EBADF;
    int r = 0;
    /* As Go: close_notify only after a handshake (none is started for it) and only when no write
     * is in progress (a close beside a write is taken as breaking it off); the peer's is not
     * awaited; the write deadline bounds the wait for room in the socket. */
    if (atomic_load_explicit(&t->handshaken, memory_order_acquire) && hoare_mutex_trylock(&t->wmu) == 0) {
        int c = run(t, OP_SHUTDOWN, NULL, 0, NULL);
        hoare_mutex_unlock(&t->wmu);
        r = c == C_DONE ? 0 : c == C_EOF ? -EPIPE : c;
    }
    close_now(t);
    return r;
}

void hoare_tls_free(hoare_tls *t) {
    if (t && begin_close(t, T_CLOSED)) close_now(t);
}

static void destroy(hoare_tls *t) {
    SSL_free(t->ssl);
    pthread_mutex_destroy(&t->mu);
    free(t->out);
    free(t);
}

void hoare_tls_lock(hoare_tls *t) { lock(t); }
void hoare_tls_unlock(hoare_tls *t) { unlock(t); }

int hoare_tls_fd(const hoare_tls *t) { return t->fd; }
SSL *hoare_tls_ssl(hoare_tls *t) { return t->ssl; }
const char *hoare_tls_error(const hoare_tls *t) { return t->error; }
