/*
 * test_tls.c - TLS over hoare descriptors.
 *
 * With libhoare_tls linked (HOARE_TEST_HAVE_TLS): in-process client and server goroutines over
 * loopback with a certificate made by `openssl req`: verification against the certificate (and
 * its failure for another name), many concurrent echo connections on one processor, a handshake
 * that ends at the descriptor's deadline; zero-length reads and writes; a reader whose data is
 * already inside OpenSSL; a renegotiation started by the peer refused; full duplex (a reader and
 * a writer goroutine on each side of several connections at once, content checked), with TLS 1.3
 * key updates on the way; hoare_tls_close.
 *
 * With examples/https_hello built: the server serves `curl -k` and `openssl s_client`; with one
 * processor (HOARE_PROCS=1), 200 slow TLS clients (silent, or stuck in the middle of a ClientHello)
 * hold no threads (the server's thread count stays small) and do not keep curl from being served,
 * and are dropped at the idle timeout.
 *
 * Exits 77 (skipped) with the reason when openssl, curl or the TLS parts are missing.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "test.h"

#include <arpa/inet.h>
#include <libgen.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <limits.h>
#include <stdbool.h>

#ifdef HOARE_TEST_HAVE_TLS
#include <hoare_tls.h>
#include <openssl/err.h>
#endif

#define SKIP 77

static char dir[64], cert[96], key[96];
static char server_addr[64];

static bool have_program(const char *name) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", name);
    return system(cmd) == 0;
}

/* Run a shell command, its stdout into out (NUL-terminated). Returns the exit status. */
static int run(const char *cmd, char *out, size_t cap) {
    FILE *p = popen(cmd, "r");
    REQUIRE(p != NULL);
    size_t have = 0, n;
    while (have < cap - 1 && (n = fread(out + have, 1, cap - 1 - have, p)) > 0) have += n;
    out[have] = 0;
    return pclose(p);
}

static void make_certificate(void) {
    snprintf(dir, sizeof dir, "/tmp/hoare_tls_%d", (int)getpid());
    snprintf(cert, sizeof cert, "%s/cert.pem", dir);
    snprintf(key, sizeof key, "%s/key.pem", dir);
    char cmd[512], out[256];
    snprintf(cmd, sizeof cmd,
             "mkdir -p %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "-keyout %s -out %s -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost 2>&1",
             dir, key, cert);
    REQUIRE(run(cmd, out, sizeof out) == 0);
}

#ifdef HOARE_TEST_HAVE_TLS
static SSL_CTX *server_ctx, *client_ctx;

static void make_contexts(void) {
    server_ctx = SSL_CTX_new(TLS_server_method());
    REQUIRE(server_ctx && SSL_CTX_use_certificate_chain_file(server_ctx, cert) == 1 &&
            SSL_CTX_use_PrivateKey_file(server_ctx, key, SSL_FILETYPE_PEM) == 1);
    client_ctx = SSL_CTX_new(TLS_client_method());
    REQUIRE(client_ctx && SSL_CTX_load_verify_locations(client_ctx, cert, NULL) == 1);
    SSL_CTX_set_verify(client_ctx, SSL_VERIFY_PEER, NULL);
}

static int local_port(int fd) {
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;
    REQUIRE(getsockname(fd, (struct sockaddr *)&sin, &len) == 0);
    return ntohs(sin.sin_port);
}

/* Server side of one connection: echo until the client closes. */
static void echo_conn(void *p) {
    hoare_tls *t = hoare_tls_server(server_ctx, (int)(intptr_t)p);
    REQUIRE(t != NULL);
    hoare_fd_set_deadline(hoare_tls_fd(t), hoare_now() + 60 * HOARE_SEC);
    char buf[256];
    ssize_t n;
    while ((n = hoare_tls_read(t, buf, sizeof buf)) > 0)
        if (hoare_tls_write(t, buf, (size_t)n) != n) break;
    hoare_tls_free(t);
}

struct accept_arg {
    int lfd, count;
};
static void acceptor(void *p) {
    struct accept_arg *a = p;
    for (int i = 0; i < a->count; i++) {
        int fd = hoare_fd_accept(a->lfd, NULL, NULL);
        if (fd < 0) break;
        REQUIRE(hoare_go(echo_conn, (void *)(intptr_t)fd) == 0);
    }
}

struct client_arg {
    const char *addr, *name;
    int rounds, result; /* result: 0 all echoed, else the first error */
    char error[160];
    hoare_wg *wg;
};
static void client(void *p) {
    struct client_arg *a = p;
    int fd = hoare_net_dial("tcp", a->addr, 10 * HOARE_SEC);
    a->result = fd < 0 ? fd : 0;
    if (fd >= 0) {
        hoare_tls *t = hoare_tls_client(client_ctx, fd, a->name);
        REQUIRE(t != NULL);
        hoare_fd_set_deadline(fd, hoare_now() + 60 * HOARE_SEC);
        a->result = hoare_tls_handshake(t);
        for (int r = 0; r < a->rounds && a->result == 0; r++) {
            char msg[64], back[64];
            int len = snprintf(msg, sizeof msg, "message %d from %p", r, (void *)a);
            if (hoare_tls_write(t, msg, (size_t)len) != len) a->result = -EIO;
            size_t have = 0;
            while (a->result == 0 && have < (size_t)len) {
                ssize_t n = hoare_tls_read(t, back + have, sizeof back - have);
                if (n <= 0) a->result = n ? (int)n : -EPIPE;
                else have += (size_t)n;
            }
            if (a->result == 0 && memcmp(msg, back, (size_t)len) != 0) a->result = -EBADMSG;
        }
        snprintf(a->error, sizeof a->error, "%s", hoare_tls_error(t));
        if (a->result == 0) CHECK_EQ(hoare_tls_shutdown(t), 0);
        hoare_tls_free(t);
    }
    if (a->wg) hoare_wg_done(a->wg);
}

static void test_in_process(void) {
    int lfd = hoare_net_listen("tcp4", "127.0.0.1:0");
    REQUIRE(lfd >= 0);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", local_port(lfd));
    int n = TEST_TSAN ? 20 : TEST_SANITIZED ? 100 : 300;
    struct accept_arg aa = {lfd, n + 2};
    REQUIRE(hoare_go(acceptor, &aa) == 0);

    /* verified against the certificate, and refused for a name it does not carry */
    struct client_arg one = {addr, "localhost", 3, -1, "", NULL};
    client(&one);
    CHECK_EQ(one.result, 0);
    struct client_arg other = {addr, "otherhost", 1, -1, "", NULL};
    client(&other);
    CHECK_EQ(other.result, -EPROTO);
    CHECK(strstr(other.error, "certificate verify failed") != NULL);

    /* many connections at once, on one processor */
    int old = hoare_procs(1);
    hoare_wg wg = HOARE_WG_INIT;
    struct client_arg *args = calloc((size_t)n, sizeof *args);
    REQUIRE(args != NULL);
    for (int i = 0; i < n; i++) {
        args[i] = (struct client_arg){addr, "localhost", 5, -1, "", &wg};
        hoare_wg_add(&wg, 1);
        REQUIRE(hoare_go(client, &args[i]) == 0);
    }
    hoare_wg_wait(&wg);
    int good = 0;
    for (int i = 0; i < n; i++) {
        good += args[i].result == 0;
        if (args[i].result != 0 && good + 5 > i) fprintf(stderr, "client %d: %s (%s)\n", i, strerror(-args[i].result), args[i].error);
    }
    CHECK_EQ(good, n);
    free(args);
    hoare_procs(old);
    hoare_fd_close(lfd);

    /* a handshake with a silent peer ends at the descriptor's deadline */
    lfd = hoare_net_listen("tcp4", "127.0.0.1:0");
    REQUIRE(lfd >= 0);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", local_port(lfd));
    int c = hoare_net_dial("tcp", addr, HOARE_SEC);
    int s = hoare_fd_accept(lfd, NULL, NULL);
    REQUIRE(c >= 0 && s >= 0);
    hoare_tls *t = hoare_tls_server(server_ctx, s);
    REQUIRE(t != NULL);
    hoare_fd_set_deadline(s, hoare_now() + 100 * HOARE_MS);
    CHECK_EQ(hoare_tls_handshake(t), -ETIMEDOUT);
    hoare_tls_free(t);
    /* and the peer going away mid-handshake is a reset, not a hang */
    c = hoare_net_dial("tcp", addr, HOARE_SEC);
    s = hoare_fd_accept(lfd, NULL, NULL);
    REQUIRE(c >= 0 && s >= 0);
    t = hoare_tls_server(server_ctx, s);
    hoare_fd_close(c);
    CHECK_EQ(hoare_tls_handshake(t), -ECONNRESET);
    hoare_tls_free(t);
    hoare_fd_close(lfd);
}

/* ---------------------------------------------------------------- pairs of connections */

struct handshake_arg {
    hoare_tls *t;
    int result;
    hoare_wg *wg;
};
static void handshake_goroutine(void *p) {
    struct handshake_arg *a = p;
    a->result = hoare_tls_handshake(a->t);
    hoare_wg_done(a->wg);
}

/* A client (of the context cctx) on descriptor c and a server on s, connected to each other,
 * handshake done, each with a deadline that only a hang would reach. */
static void tls_pair_on(SSL_CTX *cctx, int c, int s, hoare_tls **client, hoare_tls **server) {
    *client = hoare_tls_client(cctx, c, "localhost");
    *server = hoare_tls_server(server_ctx, s);
    REQUIRE(*client && *server);
    int64_t deadline = hoare_now() + (TEST_SANITIZED ? 60 : 10) * HOARE_SEC;
    hoare_fd_set_deadline(c, deadline);
    hoare_fd_set_deadline(s, deadline);
    hoare_wg wg = HOARE_WG_INIT;
    struct handshake_arg sa = {*server, -1, &wg};
    hoare_wg_add(&wg, 1);
    REQUIRE(hoare_go(handshake_goroutine, &sa) == 0);
    int r = hoare_tls_handshake(*client);
    hoare_wg_wait(&wg);
    REQUIRE(r == 0 && sa.result == 0);
}
/* The same over loopback TCP, through the listener lfd (at addr). */
static void tls_pair_with(SSL_CTX *cctx, int lfd, const char *addr, hoare_tls **client, hoare_tls **server) {
    int c = hoare_net_dial("tcp", addr, 10 * HOARE_SEC);
    int s = hoare_fd_accept(lfd, NULL, NULL);
    REQUIRE(c >= 0 && s >= 0);
    tls_pair_on(cctx, c, s, client, server);
}
static void tls_pair(int lfd, const char *addr, hoare_tls **client, hoare_tls **server) {
    tls_pair_with(client_ctx, lfd, addr, client, server);
}

/* Zero-length reads and writes return 0 at once, without touching the connection: no wait for a
 * record, no data consumed, nothing sent. */
static void test_zero_length(int lfd, const char *addr) {
    hoare_tls *c, *s;
    tls_pair(lfd, addr, &c, &s);
    /* a read that waited for a record would end at this deadline */
    hoare_fd_set_read_deadline(hoare_tls_fd(c), hoare_now() + 2 * HOARE_SEC);
    char buf[16] = "";
    int64_t start = hoare_now();
    CHECK_EQ(hoare_tls_read(c, buf, 0), 0);
    CHECK_EQ(hoare_tls_read(c, NULL, 0), 0);
    CHECK(hoare_now() - start < HOARE_SEC);
    CHECK_EQ(hoare_tls_write(c, buf, 0), 0);
    CHECK_EQ(hoare_tls_write(s, NULL, 0), 0);
    /* with a record waiting, it is left for the next read */
    CHECK_EQ(hoare_tls_write(s, "hello", 5), 5);
    hoare_sleep(50 * HOARE_MS);
    CHECK_EQ(hoare_tls_read(c, buf, 0), 0);
    CHECK_EQ(hoare_tls_read(c, buf, sizeof buf), 5);
    CHECK(memcmp(buf, "hello", 5) == 0);
    /* the zero-length writes sent nothing: the server's next read is the client's next write */
    CHECK_EQ(hoare_tls_write(c, "world", 5), 5);
    hoare_fd_set_read_deadline(hoare_tls_fd(s), hoare_now() + 10 * HOARE_SEC);
    CHECK_EQ(hoare_tls_read(s, buf, sizeof buf), 5);
    CHECK(memcmp(buf, "world", 5) == 0);
    hoare_tls_free(c);
    hoare_tls_free(s);

    /* before the handshake too: none is started (no ClientHello goes out) */
    int cfd = hoare_net_dial("tcp", addr, 10 * HOARE_SEC);
    int sfd = hoare_fd_accept(lfd, NULL, NULL);
    REQUIRE(cfd >= 0 && sfd >= 0);
    c = hoare_tls_client(client_ctx, cfd, "localhost");
    REQUIRE(c != NULL);
    hoare_fd_set_deadline(cfd, hoare_now() + 2 * HOARE_SEC);
    start = hoare_now();
    CHECK_EQ(hoare_tls_read(c, buf, 0), 0);
    CHECK_EQ(hoare_tls_write(c, buf, 0), 0);
    CHECK(hoare_now() - start < HOARE_SEC);
    hoare_sleep(20 * HOARE_MS);
    CHECK(recv(sfd, buf, sizeof buf, MSG_DONTWAIT) < 0 && errno == EAGAIN);
    hoare_tls_free(c);
    hoare_fd_close(sfd);
}

/* ---------------------------------------------------------------- full duplex */

/* The byte at offset i of the stream with this seed. */
static inline unsigned char pattern(uint64_t seed, uint64_t i) {
    uint64_t x = (i >> 3) * 0x9E3779B97F4A7C15ull + seed;
    x ^= x >> 29;
    return (unsigned char)(x >> (8 * (i & 7)));
}

/* A small deterministic generator for chunk sizes. */
static inline uint32_t next_rand(uint64_t *state) {
    *state = *state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(*state >> 33);
}

struct stream_arg {
    hoare_tls *t;
    uint64_t seed; /* of the stream this goroutine writes, or reads */
    size_t total;
    int key_updates; /* writer: how many times it asks for a key update (TLS 1.3) on the way */
    int asked;       /* writer: how many times it did (once per write at most) */
    int result; /* 0: all written (then close_notify), or all read with the right content (then 0) */
    hoare_wg *wg;
};

/* Write total bytes of the pattern in chunks of 1 byte to 100 KB, then close_notify. */
static void stream_writer(void *p) {
    struct stream_arg *a = p;
    uint64_t rnd = a->seed;
    enum { CAP = 100000 };
    unsigned char *buf = malloc(CAP);
    REQUIRE(buf != NULL);
    size_t done = 0, next_update = a->key_updates ? a->total / (size_t)(a->key_updates + 1) : SIZE_MAX;
    while (done < a->total && a->result == 0) {
        size_t n = next_rand(&rnd) % 4 == 0 ? 1 + next_rand(&rnd) % 64 : 1 + next_rand(&rnd) % CAP;
        if (n > a->total - done) n = a->total - done;
        for (size_t i = 0; i < n; i++) buf[i] = pattern(a->seed, done + i);
        if (done >= next_update) {
            /* the writer's own goroutine, between its writes; the reader may be inside an OpenSSL
             * call at this moment: hence the connection's lock */
            hoare_tls_lock(a->t);
            int ok = SSL_key_update(hoare_tls_ssl(a->t), SSL_KEY_UPDATE_REQUESTED);
            hoare_tls_unlock(a->t);
            if (ok != 1) {
                a->result = -ENOTRECOVERABLE;
                break;
            }
            a->asked++;
            while (next_update <= done) next_update += a->total / (size_t)(a->key_updates + 1);
        }
        ssize_t w = hoare_tls_write(a->t, buf, n);
        if (w != (ssize_t)n) a->result = w < 0 ? (int)w : -EIO;
        done += n;
    }
    if (a->result == 0) a->result = hoare_tls_shutdown(a->t);
    free(buf);
    hoare_wg_done(a->wg);
}

/* Read total bytes, checking each, in reads of 1 byte to 70 KB; then the peer's close_notify. */
static void stream_reader(void *p) {
    struct stream_arg *a = p;
    uint64_t rnd = ~a->seed;
    enum { CAP = 70000 };
    unsigned char *buf = malloc(CAP);
    REQUIRE(buf != NULL);
    size_t done = 0;
    while (done < a->total && a->result == 0) {
        size_t want = next_rand(&rnd) % 4 == 0 ? 1 + next_rand(&rnd) % 16 : 1 + next_rand(&rnd) % CAP;
        ssize_t n = hoare_tls_read(a->t, buf, want);
        if (n <= 0) {
            a->result = n ? (int)n : -EPIPE;
            break;
        }
        for (size_t i = 0; i < (size_t)n && a->result == 0; i++)
            if (buf[i] != pattern(a->seed, done + i)) a->result = -EBADMSG;
        done += (size_t)n;
    }
    if (a->result == 0 && done != a->total) a->result = -EOVERFLOW;
    if (a->result == 0) {
        ssize_t n = hoare_tls_read(a->t, buf, CAP);
        a->result = n == 0 ? 0 : n > 0 ? -EOVERFLOW : (int)n;
    }
    free(buf);
    hoare_wg_done(a->wg);
}

/* Counts the KeyUpdate messages a connection receives (its msg_callback). */
static void count_key_updates(int write_p, int version, int content_type, const void *buf, size_t len,
                              SSL *ssl, void *arg) {
    (void)version, (void)ssl;
    const unsigned char *msg = buf;
    if (!write_p && content_type == SSL3_RT_HANDSHAKE && len > 0 && msg[0] == SSL3_MT_KEY_UPDATE) ++*(int *)arg;
}

/* conns connections, each with a reader and a writer goroutine on both sides at once: total bytes
 * each way, content checked, ending with each side's close_notify. Each writer asks for
 * key_updates key updates on the way (SSL_KEY_UPDATE_REQUESTED: the peer updates its keys too). */
static void duplex_round(int lfd, const char *addr, int conns, size_t total, int key_updates) {
    hoare_tls **t = calloc((size_t)conns * 2, sizeof *t);
    struct stream_arg *args = calloc((size_t)conns * 4, sizeof *args);
    int *updates = calloc((size_t)conns * 2, sizeof *updates);
    REQUIRE(t && args && updates);
    hoare_wg wg = HOARE_WG_INIT;
    for (int i = 0; i < conns; i++) tls_pair(lfd, addr, &t[2 * i], &t[2 * i + 1]);
    for (int i = 0; i < conns * 2; i++) {
        SSL_set_msg_callback(hoare_tls_ssl(t[i]), count_key_updates);
        SSL_set_msg_callback_arg(hoare_tls_ssl(t[i]), &updates[i]);
    }
    for (int i = 0; i < conns * 2; i++) {
        /* t[i] writes the stream with seed i + 1 and reads its peer's (i ^ 1) */
        uint64_t mine = (uint64_t)i + 1, peers = (uint64_t)(i ^ 1) + 1;
        args[2 * i] = (struct stream_arg){t[i], mine, total, key_updates, 0, 0, &wg};
        args[2 * i + 1] = (struct stream_arg){t[i], peers, total, 0, 0, 0, &wg};
        hoare_wg_add(&wg, 2);
        REQUIRE(hoare_go(stream_writer, &args[2 * i]) == 0);
        REQUIRE(hoare_go(stream_reader, &args[2 * i + 1]) == 0);
    }
    hoare_wg_wait(&wg);
    for (int i = 0; i < conns * 4; i++) {
        if (args[i].result != 0)
            fprintf(stderr, "duplex: connection %d %s: %s (%s)\n", i / 4, i % 2 ? "reader" : "writer",
                    strerror(-args[i].result), hoare_tls_error(args[i].t));
        CHECK_EQ(args[i].result, 0);
    }
    for (int i = 0; i < conns * 2; i++) {
        /* at least one for each the peer's writer asked for (a request and an answer due at the
         * same time go as one); it asks at most once per write, so fewer times than key_updates
         * when the stream is short (sanitizers), but many times all the same */
        int peer_asked = args[2 * (i ^ 1)].asked;
        CHECK(updates[i] >= peer_asked && peer_asked >= (key_updates ? 8 : 0));
        hoare_tls_free(t[i]);
    }
    free(t);
    free(args);
    free(updates);
}

static void test_duplex(int lfd, const char *addr) {
    size_t total = TEST_TSAN ? 1u << 20 : TEST_SANITIZED ? 2u << 20 : 8u << 20;
    int old = hoare_procs(1);
    duplex_round(lfd, addr, 3, total, 0);
    hoare_procs(4);
    duplex_round(lfd, addr, 3, total, 0);
    duplex_round(lfd, addr, 3, total, 32);
    hoare_procs(1);
    duplex_round(lfd, addr, 3, total, 32);
    hoare_procs(old);
}

/* A reader must not park on the socket while what it waits for is already inside OpenSSL: here a
 * client that reads ahead (the whole socket into OpenSSL's buffer) without SSL_MODE_AUTO_RETRY,
 * whose first read meets the server's TLS 1.3 session tickets with the data behind them already
 * buffered and the socket empty. (OpenSSL 3.0 itself goes on to the data while a record is
 * buffered; tls.c checks before parking all the same.) */
static void test_buffered_data(int lfd, const char *addr) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    REQUIRE(ctx && SSL_CTX_load_verify_locations(ctx, cert, NULL) == 1);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_clear_mode(ctx, SSL_MODE_AUTO_RETRY);
    hoare_tls *c, *s;
    tls_pair_with(ctx, lfd, addr, &c, &s);
    CHECK_EQ(hoare_tls_write(s, "behind the tickets", 18), 18);
    hoare_sleep(50 * HOARE_MS); /* all of it in the client's socket */
    hoare_fd_set_read_deadline(hoare_tls_fd(c), hoare_now() + 2 * HOARE_SEC);
    char buf[32];
    CHECK_EQ(hoare_tls_read(c, buf, sizeof buf), 18);
    CHECK(memcmp(buf, "behind the tickets", 18) == 0);
    hoare_tls_free(c);
    hoare_tls_free(s);
    SSL_CTX_free(ctx);
}

/* A goroutine's read of up to 64 bytes on t, or its write of len bytes of zeros. */
struct io_arg {
    hoare_tls *t;
    size_t len;
    ssize_t result;
    hoare_wg *wg;
};
static void parked_read(void *p) {
    struct io_arg *a = p;
    char buf[64];
    a->result = hoare_tls_read(a->t, buf, sizeof buf);
    hoare_wg_done(a->wg);
}
static void parked_write(void *p) {
    struct io_arg *a = p;
    char *big = calloc(1, a->len);
    REQUIRE(big != NULL);
    a->result = hoare_tls_write(a->t, big, a->len);
    free(big);
    hoare_wg_done(a->wg);
}

/* A renegotiation (TLS 1.2) that the peer starts is refused: the client's read would otherwise
 * turn into a handshake, and a write beside it would have to do a handshake's reading. The server
 * (allowed to, for the test) asks for one with a HelloRequest and sends data; the client answers
 * with a no_renegotiation alert, which OpenSSL's server takes as fatal, and reads the data. (Our
 * servers refuse one that a client starts too: OpenSSL 3 does, unless told otherwise.) */
static void test_no_renegotiation(int lfd, const char *addr) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    REQUIRE(ctx && SSL_CTX_load_verify_locations(ctx, cert, NULL) == 1);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    REQUIRE(SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION) == 1);
    hoare_tls *c, *s;
    tls_pair_with(ctx, lfd, addr, &c, &s);
    hoare_tls_lock(s);
    SSL *ssl = hoare_tls_ssl(s);
    SSL_clear_options(ssl, SSL_OP_NO_RENEGOTIATION);
    CHECK_EQ(SSL_renegotiate(ssl), 1);
    CHECK_EQ(SSL_do_handshake(ssl), 1); /* HelloRequest sent; the ClientHello is for a read */
    ERR_clear_error();
    hoare_tls_unlock(s);
    CHECK_EQ(hoare_tls_write(s, "after", 5), 5);
    hoare_fd_set_read_deadline(hoare_tls_fd(s), hoare_now() + 3 * HOARE_SEC);
    hoare_wg wg = HOARE_WG_INIT;
    struct io_arg server_read = {s, 0, 1, &wg};
    hoare_wg_add(&wg, 1);
    REQUIRE(hoare_go(parked_read, &server_read) == 0);
    char buf[64];
    CHECK_EQ(hoare_tls_read(c, buf, sizeof buf), 5);
    CHECK(memcmp(buf, "after", 5) == 0);
    hoare_wg_wait(&wg);
    CHECK_EQ(server_read.result, -EPROTO);
    CHECK(strstr(hoare_tls_error(s), "no renegotiation") != NULL);
    hoare_tls_lock(c);
    CHECK_EQ(SSL_total_renegotiations(hoare_tls_ssl(c)), 0);
    hoare_tls_unlock(c);
    hoare_tls_free(c);
    hoare_tls_free(s);
    SSL_CTX_free(ctx);
}

/* hoare_tls_close sends close_notify: the peer's read returns 0 (hoare_tls_free sends nothing:
 * -ECONNRESET). Before the handshake it sends nothing; after a failed write it returns that
 * failure, and frees the connection all the same. */
static void test_close(int lfd, const char *addr) {
    hoare_tls *c, *s;
    tls_pair(lfd, addr, &c, &s);
    char buf[64];
    /* the client reads first, taking the server's session tickets in: it closes with nothing
     * unread, so its socket ends with a FIN rather than a reset */
    CHECK_EQ(hoare_tls_write(s, "first", 5), 5);
    CHECK_EQ(hoare_tls_read(c, buf, sizeof buf), 5);
    CHECK_EQ(hoare_tls_write(c, "last", 4), 4);
    CHECK_EQ(hoare_tls_close(c), 0);
    CHECK_EQ(hoare_tls_read(s, buf, sizeof buf), 4);
    CHECK_EQ(hoare_tls_read(s, buf, sizeof buf), 0);
    CHECK_EQ(hoare_tls_close(s), 0); /* the peer is gone: ours still goes (into its socket) */
    tls_pair(lfd, addr, &c, &s);
    hoare_tls_free(c);
    CHECK_EQ(hoare_tls_read(s, buf, sizeof buf), -ECONNRESET);
    hoare_tls_free(s);
    CHECK_EQ(hoare_tls_close(NULL), 0);

    /* before the handshake: nothing is sent, the peer sees the end of the stream */
    int cfd = hoare_net_dial("tcp", addr, 10 * HOARE_SEC);
    int sfd = hoare_fd_accept(lfd, NULL, NULL);
    REQUIRE(cfd >= 0 && sfd >= 0);
    c = hoare_tls_client(client_ctx, cfd, "localhost");
    REQUIRE(c != NULL);
    CHECK_EQ(hoare_tls_close(c), 0);
    hoare_fd_set_read_deadline(sfd, hoare_now() + 10 * HOARE_SEC);
    CHECK_EQ(hoare_fd_read(sfd, buf, sizeof buf), 0);
    hoare_fd_close(sfd);

    /* a write that met its deadline (the peer does not read) leaves the connection unable to
     * write: close reports it, and frees (ASan would see a leak) */
    tls_pair(lfd, addr, &c, &s);
    enum { BIG = 32 << 20 };
    char *big = calloc(1, BIG);
    REQUIRE(big != NULL);
    hoare_fd_set_write_deadline(hoare_tls_fd(c), hoare_now() + 200 * HOARE_MS);
    CHECK_EQ(hoare_tls_write(c, big, BIG), -ETIMEDOUT);
    CHECK_EQ(hoare_tls_write(c, "x", 1), -ETIMEDOUT);
    CHECK_EQ(hoare_tls_close(c), -ETIMEDOUT);
    free(big);
    hoare_tls_free(s);
}

/* ---------------------------------------------------------------- close beside calls */

/* Until the goroutine named name is parked in "IO wait" (polled with dumps). */
static void wait_until_io_wait(const char *name) {
    char want[96];
    snprintf(want, sizeof want, "[IO wait]:\n\tname %s\n", name);
    REQUIRE(test_dump_until(want, 20) != NULL);
}

/* As Go's Close: a close while other goroutines are in calls on the connection ends those calls
 * (-EBADF) and frees it once they have returned (ASan would see a use after free, or a leak). A
 * reader parked for data (close_notify is sent); then a writer parked on a full socket, beside
 * which no close_notify is sent. */
static void test_close_beside_calls(int lfd, const char *addr) {
    hoare_tls *c, *s;
    tls_pair(lfd, addr, &c, &s);
    hoare_wg wg = HOARE_WG_INIT;
    struct io_arg reader = {c, 0, 1, &wg};
    hoare_attr attr = {.name = "tls-reader"};
    hoare_wg_add(&wg, 1);
    REQUIRE(hoare_go_with(&attr, parked_read, &reader) == 0);
    wait_until_io_wait("tls-reader");
    CHECK_EQ(hoare_tls_close(c), 0); /* close_notify: no write was in progress */
    hoare_wg_wait(&wg);
    CHECK_EQ(reader.result, -EBADF);
    char buf[16];
    CHECK_EQ(hoare_tls_read(s, buf, sizeof buf), 0); /* the close_notify */
    hoare_tls_free(s);

    tls_pair(lfd, addr, &c, &s);
    struct io_arg writer = {c, 64 << 20, 1, &wg};
    attr.name = "tls-writer";
    hoare_wg_add(&wg, 1);
    REQUIRE(hoare_go_with(&attr, parked_write, &writer) == 0);
    wait_until_io_wait("tls-writer"); /* the peer does not read: the socket fills */
    CHECK_EQ(hoare_tls_close(c), 0);
    hoare_wg_wait(&wg);
    CHECK_EQ(writer.result, -EBADF);
    hoare_tls_free(s);
}

/* ---------------------------------------------------------------- a read that must send */

/* A read that makes OpenSSL queue a record of its own sends it itself when no write holds the
 * connection (out_kick): here the fatal alert a client answers a forged record with, while the
 * client's socket is full, so that the alert waits in the output queue. The read parks until the
 * server drains the socket, and the alert arrives after the filler. Nothing else would send it:
 * the client never writes. A Unix socket pair, whose buffers stay as full as they were filled (a
 * loopback TCP connection's grow meanwhile). */
static void test_read_sends_queued_alert(void) {
    int sv[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    hoare_tls *c, *s;
    tls_pair_on(client_ctx, sv[0], sv[1], &c, &s);
    int cfd = sv[0], sfd = sv[1];
    enum { CHUNK = 64 << 10 };
    char *chunk = calloc(1, CHUNK);
    REQUIRE(chunk != NULL);
    size_t filled = 0;
    for (ssize_t n; (n = send(cfd, chunk, CHUNK, MSG_DONTWAIT)) > 0;) filled += (size_t)n;
    CHECK(errno == EAGAIN || errno == EWOULDBLOCK);
    /* an application-data record whose bytes no key produced */
    unsigned char forged[5 + 32] = {0x17, 0x03, 0x03, 0x00, 32};
    for (size_t i = 5; i < sizeof forged; i++) forged[i] = (unsigned char)(i * 37);
    CHECK_EQ(hoare_fd_write(sfd, forged, sizeof forged), (ssize_t)sizeof forged);

    hoare_wg wg = HOARE_WG_INIT;
    struct io_arg reader = {c, 0, 1, &wg};
    hoare_wg_add(&wg, 1);
    REQUIRE(hoare_go_with(&(hoare_attr){.name = "tls-alerting-reader"}, parked_read, &reader) == 0);
    wait_until_io_wait("tls-alerting-reader"); /* the alert is queued behind the full socket */
    hoare_fd_set_read_deadline(sfd, hoare_now() + (TEST_SANITIZED ? 60 : 10) * HOARE_SEC);
    for (size_t got = 0; got < filled;) {
        ssize_t n = hoare_fd_read(sfd, chunk, filled - got < CHUNK ? filled - got : CHUNK);
        REQUIRE(n > 0);
        got += (size_t)n;
    }
    unsigned char header[5];
    CHECK_EQ(hoare_fd_read(sfd, header, sizeof header), (ssize_t)sizeof header);
    CHECK(header[0] == 0x17 || header[0] == 0x15); /* an alert (0x17 once encrypted: TLS 1.3) */
    hoare_wg_wait(&wg);
    CHECK(reader.result < 0 && reader.result != -ETIMEDOUT);
    free(chunk);
    hoare_tls_free(c);
    hoare_tls_free(s);
}

static void test_tls_in_process(void) {
    make_contexts();
    test_in_process();
    int lfd = hoare_net_listen("tcp4", "127.0.0.1:0");
    REQUIRE(lfd >= 0);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", local_port(lfd));
    test_zero_length(lfd, addr);
    test_buffered_data(lfd, addr);
    test_no_renegotiation(lfd, addr);
    test_duplex(lfd, addr);
    test_close(lfd, addr);
    test_close_beside_calls(lfd, addr);
    test_read_sends_queued_alert();
    hoare_fd_close(lfd);
    SSL_CTX_free(server_ctx);
    SSL_CTX_free(client_ctx);
}
#endif /* HOARE_TEST_HAVE_TLS */

static pid_t start_server(const char *exe) {
    int out[2];
    REQUIRE(pipe(out) == 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    char *argv[] = {(char *)exe, cert, key, "127.0.0.1:0", "2000", NULL};
    size_t nenv = 0;
    while (environ[nenv]) nenv++;
    char **env = calloc(nenv + 2, sizeof *env);
    REQUIRE(env != NULL);
    env[0] = "HOARE_PROCS=1";
    for (size_t i = 0; i < nenv; i++) env[i + 1] = environ[i];
    pid_t pid = test_spawn(argv, &fa, env);
    free(env);
    posix_spawn_file_actions_destroy(&fa);
    close(out[1]);
    test_read_listening(out[0], server_addr);
    return pid;
}

static int threads_of(pid_t pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    int n = -1;
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Threads: %d", &n) == 1) break;
    fclose(f);
    return n;
}

static bool curl_ok(void) {
    char cmd[256], out[512];
    snprintf(cmd, sizeof cmd, "curl -sk --max-time 20 https://%s/ https://%s/again", server_addr, server_addr);
    return run(cmd, out, sizeof out) == 0 && strcmp(out, "Hello, World!Hello, World!") == 0;
}

static void test_https_example(const char *exe) {
    pid_t pid = start_server(exe);
    CHECK(curl_ok());
    char cmd[512], out[1024];
    snprintf(cmd, sizeof cmd,
             "printf 'GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n' | "
             "timeout 20 openssl s_client -connect %s -quiet 2>/dev/null", server_addr);
    CHECK_EQ(run(cmd, out, sizeof out), 0);
    CHECK(strstr(out, "HTTP/1.1 200 OK") != NULL && strstr(out, "Hello, World!") != NULL);

    /* Slow clients: 100 silent, 100 that sent the first bytes of a ClientHello record and stall. */
    enum { SLOW = 200 };
    int slow[SLOW];
    static const unsigned char partial[] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00};
    for (int i = 0; i < SLOW; i++) {
        slow[i] = hoare_net_dial("tcp", server_addr, 10 * HOARE_SEC);
        REQUIRE(slow[i] >= 0);
        if (i % 2) CHECK_EQ(hoare_fd_write(slow[i], partial, sizeof partial), (ssize_t)sizeof partial);
    }
    hoare_sleep(300 * HOARE_MS);
    CHECK(curl_ok()); /* served while they stall */
    int threads = threads_of(pid);
    CHECK(threads > 0 && threads <= 6); /* main, monitor, a scheduler thread or two: not 200 */
    if (threads > 6) fprintf(stderr, "https_hello has %d threads with %d slow clients\n", threads, SLOW);
    /* the idle timeout (2 s) drops them: each sees the connection end */
    int dropped = 0;
    for (int i = 0; i < SLOW; i++) {
        hoare_fd_set_read_deadline(slow[i], hoare_now() + 20 * HOARE_SEC);
        char b[64];
        ssize_t n;
        while ((n = hoare_fd_read(slow[i], b, sizeof b)) > 0) {}
        dropped += n == 0 || n == -ECONNRESET;
        hoare_fd_close(slow[i]);
    }
    CHECK_EQ(dropped, SLOW);
    CHECK(curl_ok());
    CHECK_EQ(kill(pid, SIGTERM), 0);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM);
}

int main(int argc, char **argv) {
    test_begin(argv, 240);
    if (!have_program("openssl")) {
        printf("skip: no openssl program (Debian package openssl)\n");
        return SKIP;
    }
    char self[PATH_MAX], exe[PATH_MAX + 32];
    REQUIRE(realpath(test_argv0, self) != NULL);
    snprintf(exe, sizeof exe, "%s/../examples/https_hello", dirname(self));
    bool have_example = access(exe, X_OK) == 0;
#ifndef HOARE_TEST_HAVE_TLS
    if (!have_example) {
        printf("skip: built without OpenSSL (no libhoare_tls, no https_hello)\n");
        return SKIP;
    }
#endif
    make_certificate();
#ifdef HOARE_TEST_HAVE_TLS
    test_tls_in_process();
#endif
    if (!have_example) printf("https_hello not built: its part skipped\n");
    else if (!have_program("curl")) printf("no curl program (Debian package curl): https_hello part skipped\n");
    else test_https_example(exe);
    char cmd[128], out[16];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    run(cmd, out, sizeof out);
    TEST_MAIN_END();
}
