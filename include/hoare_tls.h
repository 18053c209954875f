/*
 * hoare_tls.h - TLS over hoare descriptors with OpenSSL (libhoare_tls, an optional part built when
 * OpenSSL is found; the core library does not use OpenSSL).
 *
 * A goroutine in a handshake, read or write that has to wait for the peer parks (hoare_fd_wait),
 * as in hoare_fd_read: a slow or silent TLS client holds a parked goroutine, never a thread. The
 * descriptor's deadlines (hoare_fd_set_deadline and friends) bound every call; at the deadline the
 * call returns -ETIMEDOUT.
 *
 * Rules:
 *  - The SSL_CTX is the caller's: configure certificates, verification, protocols on it as usual
 *    (an SSL_CTX may be shared by any number of connections and threads, as OpenSSL allows).
 *  - Full duplex, as Go's tls.Conn: one goroutine may read while another writes on the same
 *    connection. At most one reader and one writer run at once: concurrent reads are serialized
 *    (each call is whole), so are concurrent writes (hoare_tls_shutdown counts as a write), and
 *    the handshake waits for both. A renegotiation (TLS 1.2) started by the peer is refused.
 *  - The SSL object (hoare_tls_ssl) is used by the calls running on other goroutines: touch it
 *    only inside hoare_tls_lock / hoare_tls_unlock (below) while any may run.
 *  - hoare_tls_close and hoare_tls_free may be called while other goroutines are in calls on the
 *    connection, as Go's Close: those calls return -EBADF (parked ones at once), and the memory
 *    is freed when the last of them returns. No call may start once close or free has returned.
 *  - Calls return 0 or a count, or a negative errno value: -ETIMEDOUT (deadline), -EBADF (the
 *    descriptor was closed), -ECONNRESET (the peer went away without close_notify), -EPROTO (a TLS
 *    failure: handshake, certificate, bad record; hoare_tls_error tells which).
 * Link with $(pkg-config --libs hoare_tls) (or -lhoare_tls $(pkg-config --libs hoare) -lssl -lcrypto),
 * in CMake with hoare::hoare_tls from find_package(hoare COMPONENTS tls).
 */
#ifndef HOARE_TLS_H
#define HOARE_TLS_H

#include <hoare.h>
#include <openssl/ssl.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct hoare_tls hoare_tls;

/* A TLS connection over fd, a connected socket (used with hoare_fd_* calls; the connection owns it
 * from now on, and hoare_tls_close or hoare_tls_free closes it). server: the accepting side;
 * client: the connecting side, server_name (may be NULL) is sent as SNI and, if the context
 * verifies peers, checked against the certificate. NULL with errno ENOMEM (or EINVAL) on failure;
 * fd is then not closed. */
hoare_tls *hoare_tls_server(SSL_CTX *ctx, int fd);
hoare_tls *hoare_tls_client(SSL_CTX *ctx, int fd, const char *server_name);

/* Run the handshake now (read and write run it first otherwise). 0 or a negative errno value. */
int hoare_tls_handshake(hoare_tls *t);
/* Up to len bytes of application data: the count, 0 once the peer sent close_notify, or a
 * negative errno value. len 0: 0 at once (no handshake, nothing consumed), as read(2). */
ssize_t hoare_tls_read(hoare_tls *t, void *buf, size_t len);
/* All of buf: len, or a negative errno value (what went out before the error is lost with the
 * connection, which cannot be used further). len 0: 0 at once, nothing sent. */
ssize_t hoare_tls_write(hoare_tls *t, const void *buf, size_t len);
/* Send close_notify (does not wait for the peer's). 0 or a negative errno value. */
int hoare_tls_shutdown(hoare_tls *t);
/* Close, as Go's tls.Conn.Close: send close_notify if the handshake was done (best effort: bounded
 * by the descriptor's write deadline; the peer's close_notify is not awaited), then free the
 * connection and close its descriptor (hoare_fd_close). 0, or the negative errno value with which
 * sending close_notify failed (e.g. the error of an earlier failed write): the connection is freed
 * either way. While a write is in progress no close_notify is sent (as in Go: the close breaks the
 * write off). NULL: nothing, 0; a second close while calls of the first still run: -EBADF. */
int hoare_tls_close(hoare_tls *t);
/* Free the connection and close its descriptor (hoare_fd_close), sending nothing: the peer's read
 * sees the connection end without close_notify (-ECONNRESET in hoare_tls_read). NULL: nothing. */
void hoare_tls_free(hoare_tls *t);

/* The descriptor, the OpenSSL object (for inspection: peer certificate, ALPN, cipher), and the
 * text of the first TLS failure (-EPROTO) of this connection ("" if none; once set it does not
 * change, so it may be read while other calls on t run: after a TLS failure the connection is
 * unusable, and the first failure is the cause). */
int hoare_tls_fd(const hoare_tls *t);
SSL *hoare_tls_ssl(hoare_tls *t);
const char *hoare_tls_error(const hoare_tls *t);
/* The lock each OpenSSL call of this library holds: hold it around any use of the SSL object
 * while another goroutine may be in a call on t (e.g. SSL_key_update from the writer goroutine
 * between its writes while a reader reads). It is a short lock, a thread's: preemption is off
 * while it is held; make no hoare_tls call and do not park or block until hoare_tls_unlock.
 * What OpenSSL sends meanwhile goes out with the next read or write on t (SSL_key_update sends
 * nothing itself: its KeyUpdate goes with the next write). Do not start handshakes through the
 * SSL object (SSL_renegotiate, post-handshake authentication on the server): a write cannot do a
 * handshake's reading. */
void hoare_tls_lock(hoare_tls *t);
void hoare_tls_unlock(hoare_tls *t);

#ifdef __cplusplus
}
#endif

#endif /* HOARE_TLS_H */
