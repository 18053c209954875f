/*
 * test_dns.c - name resolution against a DNS server written here (UDP on 127.0.0.1, in a goroutine):
 * it answers alpha.test (A 127.0.0.1) and six.test (AAAA ::1), answers only the A query of
 * halfsilent.test, stays silent for silent.test, and says NXDOMAIN to everything else. The resolver is pointed at it with HOARE_RESOLV_CONF (and, in a
 * child with a private mount namespace, through /etc/resolv.conf itself).
 *
 * Checks: lookups and dials by name, search domains, /etc/hosts, unknown names, a silent name
 * failing within the dial's timeout or within resolv.conf's timeout and attempts, concurrent silent
 * lookups with 1 processor leaving a ticker ticking and the thread count low, the nsswitch.conf
 * fallback to getaddrinfo.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "test.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdbool.h>
#include <sys/mount.h>
#include <sys/socket.h>

#define SKIP 77

static int dns_fd = -1;
static int dns_port;
static _Atomic int queries_silent, queries_alpha;
static char conf_path[64], hosts_path[64], nss_path[64];

/* The question's name as "a.b.c" (lowercase) and the offset just past the question; 0 if bad. */
static size_t parse_question(const unsigned char *p, size_t n, char *name, size_t cap, int *qtype) {
    size_t i = 12, o = 0;
    while (i < n && p[i]) {
        size_t l = p[i++];
        if (l > 63 || i + l > n || o + l + 2 > cap) return 0;
        if (o) name[o++] = '.';
        for (size_t k = 0; k < l; k++) {
            char c = (char)p[i + k];
            name[o++] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
        }
        i += l;
    }
    name[o] = 0;
    if (i + 5 > n) return 0;
    *qtype = p[i + 1] << 8 | p[i + 2];
    return i + 5;
}

static void dns_server(void *arg) {
    (void)arg;
    for (;;) {
        unsigned char q[512], r[600];
        struct sockaddr_storage from;
        socklen_t flen = sizeof from;
        ssize_t n = hoare_fd_recvfrom(dns_fd, q, sizeof q, &from, &flen);
        if (n == -EBADF) return;
        if (n < 12) continue;
        char name[256];
        int qtype = 0;
        size_t qend = parse_question(q, (size_t)n, name, sizeof name, &qtype);
        if (!qend) continue;
        if (strcmp(name, "silent.test") == 0) {
            atomic_fetch_add(&queries_silent, 1);
            continue; /* never answer */
        }
        if (strcmp(name, "halfsilent.test") == 0 && qtype != 1) continue; /* answers A only */
        if (strcmp(name, "alpha.test") == 0) atomic_fetch_add(&queries_alpha, 1);
        memcpy(r, q, qend);
        r[2] = 0x81; /* QR, RD */
        r[3] = 0x80; /* RA, rcode 0 */
        r[4] = 0, r[5] = 1;                   /* one question */
        r[6] = r[7] = r[8] = r[9] = r[10] = r[11] = 0;
        size_t len = qend;
        bool known = strcmp(name, "alpha.test") == 0 || strcmp(name, "six.test") == 0 ||
                     strcmp(name, "halfsilent.test") == 0;
        if (!known) {
            r[3] |= 3; /* NXDOMAIN */
        } else if ((strcmp(name, "alpha.test") == 0 || strcmp(name, "halfsilent.test") == 0) && qtype == 1) {
            static const unsigned char a[] = {0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1};
            memcpy(r + len, a, sizeof a);
            len += sizeof a;
            r[7] = 1;
        } else if (strcmp(name, "six.test") == 0 && qtype == 28) {
            static const unsigned char a[] = {0xc0, 12, 0, 28, 0, 1, 0, 0, 0, 60, 0, 16,
                                              0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
            memcpy(r + len, a, sizeof a);
            len += sizeof a;
            r[7] = 1;
        } /* else: the name exists without records of that type (NODATA) */
        hoare_fd_sendto(dns_fd, r, len, &from, flen);
    }
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    REQUIRE(f != NULL);
    fputs(text, f);
    fclose(f);
}

static void start_dns(void) {
    dns_fd = hoare_net_listen("udp4", "127.0.0.1:0");
    REQUIRE(dns_fd >= 0);
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;
    REQUIRE(getsockname(dns_fd, (struct sockaddr *)&sin, &len) == 0);
    dns_port = ntohs(sin.sin_port);
    REQUIRE(hoare_go(dns_server, NULL) == 0);
    snprintf(conf_path, sizeof conf_path, "/tmp/hoare_dns_%d.conf", (int)getpid());
    snprintf(hosts_path, sizeof hosts_path, "/tmp/hoare_dns_%d.hosts", (int)getpid());
    snprintf(nss_path, sizeof nss_path, "/tmp/hoare_dns_%d.nss", (int)getpid());
    char conf[256];
    snprintf(conf, sizeof conf, "nameserver 127.0.0.1:%d\nsearch test\noptions ndots:1\n", dns_port);
    write_file(conf_path, conf);
    write_file(hosts_path, "127.0.0.1 localhost\n127.0.0.9 fromhosts.test fromhosts\n");
    write_file(nss_path, "passwd: files\nhosts: files myhostname dns\n");
}

static bool is_v4(const struct sockaddr_storage *ss, const char *want) {
    char buf[64];
    if (ss->ss_family != AF_INET) return false;
    inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, buf, sizeof buf);
    return strcmp(buf, want) == 0;
}

static void test_lookups(void) {
    struct sockaddr_storage a[8];
    CHECK(strcmp(hoare_net_resolver(), "cares") == 0);
    CHECK_EQ(hoare_net_lookup("ip4", "alpha.test", a, 8, 5 * HOARE_SEC), 1);
    CHECK(is_v4(&a[0], "127.0.0.1"));
    CHECK_EQ(hoare_net_lookup("ip", "alpha.test", a, 8, 5 * HOARE_SEC), 1); /* AAAA: no data */
    CHECK_EQ(hoare_net_lookup("ip6", "six.test", a, 8, 5 * HOARE_SEC), 1);
    CHECK(a[0].ss_family == AF_INET6);
    CHECK_EQ(hoare_net_lookup("ip4", "six.test", a, 8, 5 * HOARE_SEC), -ENOENT);
    /* the search domain (one label, ndots 1) */
    CHECK_EQ(hoare_net_lookup("ip4", "alpha", a, 8, 5 * HOARE_SEC), 1);
    CHECK(is_v4(&a[0], "127.0.0.1"));
    CHECK_EQ(hoare_net_lookup("ip", "nosuch.test", a, 8, 5 * HOARE_SEC), -ENOENT);
    /* a server that ignores AAAA queries: the A answer is used after a short grace, well before
     * the timeout */
    int64_t t0 = hoare_now();
    CHECK_EQ(hoare_net_lookup("ip", "halfsilent.test", a, 8, 5 * HOARE_SEC), 1);
    CHECK(is_v4(&a[0], "127.0.0.1"));
    CHECK(hoare_now() - t0 < 2 * HOARE_SEC);
    /* numeric addresses need no server */
    CHECK_EQ(hoare_net_lookup("ip", "127.0.0.5", a, 8, 0), 1);
    CHECK(is_v4(&a[0], "127.0.0.5"));
    CHECK_EQ(hoare_net_lookup("ip6", "127.0.0.5", a, 8, 0), -ENOENT);
    CHECK_EQ(hoare_net_lookup("ipx", "alpha.test", a, 8, 0), -EINVAL);
    CHECK(hoare_net_lookup("ip4", "localhost", a, 8, 5 * HOARE_SEC) >= 1); /* /etc/hosts */
    /* an absolute name matches the hosts file too (our server says NXDOMAIN to it) */
    CHECK(hoare_net_lookup("ip4", "localhost.", a, 8, 5 * HOARE_SEC) >= 1);
    CHECK(is_v4(&a[0], "127.0.0.1"));
}

static void test_dial_by_name(void) {
    int lfd = hoare_net_listen("tcp4", "127.0.0.1:0");
    REQUIRE(lfd >= 0);
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;
    REQUIRE(getsockname(lfd, (struct sockaddr *)&sin, &len) == 0);
    char addr[64];
    snprintf(addr, sizeof addr, "alpha.test:%d", ntohs(sin.sin_port));
    int fd = hoare_net_dial("tcp", addr, 5 * HOARE_SEC);
    CHECK(fd >= 0);
    hoare_fd_set_deadline(lfd, hoare_now() + 5 * HOARE_SEC);
    int afd = hoare_fd_accept(lfd, NULL, NULL);
    CHECK(afd >= 0);
    if (fd >= 0) hoare_fd_close(fd);
    if (afd >= 0) hoare_fd_close(afd);
    hoare_fd_close(lfd);
    /* UDP dials resolve the same way */
    snprintf(addr, sizeof addr, "alpha.test:%d", dns_port);
    fd = hoare_net_dial("udp", addr, 5 * HOARE_SEC);
    CHECK(fd >= 0);
    if (fd >= 0) hoare_fd_close(fd);
    CHECK_EQ(hoare_net_dial("tcp", "nosuch.test:80", 5 * HOARE_SEC), -ENOENT);
}

/* A dial to a name whose server never answers ends at the dial's timeout (the resolver alone would
 * wait for 5 s per attempt). */
static void test_silent_timeout(void) {
    int q0 = atomic_load(&queries_silent);
    int64_t t0 = hoare_now();
    int fd = hoare_net_dial("tcp", "silent.test:80", 300 * HOARE_MS);
    int64_t took = hoare_now() - t0;
    CHECK_EQ(fd, -ETIMEDOUT);
    CHECK(took >= 290 * HOARE_MS);
    CHECK(took < 3 * HOARE_SEC);
    CHECK(atomic_load(&queries_silent) > q0); /* the server was asked */
    struct sockaddr_storage a[2];
    t0 = hoare_now();
    CHECK_EQ(hoare_net_lookup("ip", "silent.test", a, 2, 200 * HOARE_MS), -ETIMEDOUT);
    CHECK(hoare_now() - t0 < 3 * HOARE_SEC);
}

/* resolv.conf's "options timeout:1 attempts:1" (or the same in RES_OPTIONS) bound a lookup without
 * a deadline when the server stays silent: about 1 s, not 15 s (c-ares' own defaults: 75 s). The
 * lookup's 10 s timeout only bounds the test when the options are ignored. */
static void silent_lookup_takes(const char *options, const char *res_options) {
    char path[96], conf[256];
    snprintf(path, sizeof path, "%s.options", conf_path);
    snprintf(conf, sizeof conf, "nameserver 127.0.0.1:%d\n%s", dns_port, options);
    write_file(path, conf);
    setenv("HOARE_RESOLV_CONF", path, 1);
    if (res_options) setenv("RES_OPTIONS", res_options, 1);
    struct sockaddr_storage a[2];
    int64_t t0 = hoare_now();
    CHECK_EQ(hoare_net_lookup("ip4", "silent.test", a, 2, 10 * HOARE_SEC), -ETIMEDOUT);
    int64_t took = hoare_now() - t0;
    CHECK(took >= 900 * HOARE_MS); /* one wait of timeout:1 */
    CHECK(took < 4 * HOARE_SEC);
    unsetenv("RES_OPTIONS");
    setenv("HOARE_RESOLV_CONF", conf_path, 1);
    unlink(path);
}

static void test_resolv_options(void) {
    silent_lookup_takes("options timeout:1 attempts:1\n", NULL);
    silent_lookup_takes("options attempts:4 timeout:30\n", "timeout:1 attempts:1");
}

/* HOARE_RESOLV_CONF naming a device (a mistake) is refused, not read without end. */
static void test_conf_not_a_file(void) {
    setenv("HOARE_RESOLV_CONF", "/dev/zero", 1);
    struct sockaddr_storage a[2];
    CHECK_EQ(hoare_net_lookup("ip", "example.test", a, 2, 2 * HOARE_SEC), -EINVAL);
    setenv("HOARE_RESOLV_CONF", conf_path, 1);
}

/* Threads of this process now. */
static int thread_count(void) {
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

struct silent_arg {
    hoare_wg *wg;
    _Atomic int *timeouts;
};
static void silent_lookup(void *p) {
    struct silent_arg *a = p;
    struct sockaddr_storage ss;
    if (hoare_net_lookup("ip", "silent.test", &ss, 1, 3 * HOARE_SEC) == -ETIMEDOUT)
        atomic_fetch_add(a->timeouts, 1);
    hoare_wg_done(a->wg);
}

/* The goroutine that must keep running while the others wait: it wakes for each tick of a 10 ms
 * ticker, and at the latest every 20 ms on its own (a select with a timeout), so that `beats` and
 * `max_gap` measure whether the processor is free for it, and `ticks` whether the ticker ticks.
 * (The ticker alone is not enough at this base: its periodic timer can stall for seconds while
 * every other goroutine is parked, a scheduler matter that select timeouts and sleeps escape.) */
struct tick_arg {
    hoare_chan *stop;
    _Atomic int ticks, beats;
    int max_threads;
    int64_t last, max_gap;
};
static void tick_counter(void *p) {
    struct tick_arg *a = p;
    hoare_ticker *t = hoare_ticker_start(10 * HOARE_MS);
    for (;;) {
        int64_t v;
        hoare_case cases[2] = {HOARE_RECV(hoare_ticker_chan(t), &v), HOARE_RECV(a->stop, NULL)};
        int i = hoare_select_timeout(cases, 2, 20 * HOARE_MS);
        if (i == 1) break;
        if (i == 0) atomic_fetch_add(&a->ticks, 1);
        atomic_fetch_add(&a->beats, 1);
        int64_t now = hoare_now();
        if (now - a->last > a->max_gap) a->max_gap = now - a->last;
        a->last = now;
        int th = thread_count();
        if (th > a->max_threads) a->max_threads = th;
    }
    hoare_ticker_stop(t);
}

/* With one processor (a child started with HOARE_PROCS=1, with its own server), goroutines waiting
 * for a silent server are parked: a ticker keeps ticking for another goroutine, and no thread is
 * spent per lookup. */
static int child_one_proc(void) {
    enum { N = 64 };
    if (hoare_procs(0) != 1) {
        fprintf(stderr, "HOARE_PROCS=1 not in effect\n");
        return 1;
    }
    start_dns();
    setenv("HOARE_RESOLV_CONF", conf_path, 1);
    hoare_wg wg = HOARE_WG_INIT;
    _Atomic int timeouts = 0;
    struct silent_arg arg = {&wg, &timeouts};
    struct tick_arg ta = {.stop = hoare_chan_make(0, 0), .last = hoare_now()};
    REQUIRE(hoare_go(tick_counter, &ta) == 0);
    int64_t t0 = hoare_now();
    for (int i = 0; i < N; i++) {
        hoare_wg_add(&wg, 1);
        REQUIRE(hoare_go(silent_lookup, &arg) == 0);
    }
    hoare_wg_wait(&wg);
    int64_t took = hoare_now() - t0;
    hoare_close(ta.stop);
    test_wait_count(1); /* the DNS server goroutine remains */
    CHECK_EQ(atomic_load(&timeouts), N);
    CHECK(took < 8 * HOARE_SEC);
    /* 3 s: 300 beats if the processor were always free; a loaded machine gives fewer, a processor
     * held by the lookups none for 3 s */
    CHECK(atomic_load(&ta.beats) >= 20);
    CHECK(ta.max_gap < HOARE_SEC);
    CHECK(atomic_load(&ta.ticks) >= 1);
    if (ta.max_gap >= HOARE_SEC) fprintf(stderr, "beats %d, longest gap %lld ms, lookups took %lld ms\n", atomic_load(&ta.beats), (long long)(ta.max_gap / HOARE_MS), (long long)(took / HOARE_MS));
    /* main, the monitor, a few scheduler threads: far fewer than the lookups */
    CHECK(ta.max_threads > 0 && ta.max_threads <= 8);
    if (ta.max_threads > 8) fprintf(stderr, "threads: %d\n", ta.max_threads);
    hoare_chan_release(ta.stop);
    hoare_fd_close(dns_fd);
    unlink(conf_path);
    unlink(hosts_path);
    unlink(nss_path);
    return test_checks_failed ? 1 : 0;
}

static void test_silent_concurrent_one_proc(void) {
    char out[4096];
    char *env[] = {"HOARE_PROCS=1", NULL};
    int st = test_run_self("one_proc", env, out, sizeof out);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) fprintf(stderr, "one_proc child: %s\n", out);
}

/* A child with a private mount namespace: /etc/resolv.conf (read when no HOARE_RESOLV_CONF is set)
 * is the test's file; then /etc/nsswitch.conf with a source c-ares does not know moves lookups to
 * getaddrinfo. Exits SKIP when namespaces are not allowed here. */
static int child_namespace(void) {
    if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
        fprintf(stderr, "skip: no private mount namespace here (%s)\n", strerror(errno));
        return SKIP;
    }
    const char *conf = getenv("HOARE_RESOLV_CONF");
    REQUIRE(conf != NULL);
    if (mount(conf, "/etc/resolv.conf", NULL, MS_BIND, NULL) != 0) {
        fprintf(stderr, "skip: cannot bind-mount /etc/resolv.conf (%s)\n", strerror(errno));
        return SKIP;
    }
    unsetenv("HOARE_RESOLV_CONF");
    unsetenv("HOARE_RESOLVER");
    struct sockaddr_storage a[4];
    CHECK(strcmp(hoare_net_resolver(), "cares") == 0);
    CHECK_EQ(hoare_net_lookup("ip4", "alpha.test", a, 4, 5 * HOARE_SEC), 1);
    CHECK(is_v4(&a[0], "127.0.0.1"));
    CHECK_EQ(hoare_net_dial("tcp", "silent.test:80", 300 * HOARE_MS), -ETIMEDOUT);
    /* /etc/hosts comes first: this name is in the test's hosts file only */
    const char *hosts = getenv("TEST_HOSTS");
    REQUIRE(hosts && mount(hosts, "/etc/hosts", NULL, MS_BIND, NULL) == 0);
    CHECK_EQ(hoare_net_lookup("ip4", "fromhosts.test", a, 4, 5 * HOARE_SEC), 1);
    CHECK(is_v4(&a[0], "127.0.0.9"));
    CHECK_EQ(hoare_net_lookup("ip4", "fromhosts", a, 4, 5 * HOARE_SEC), 1); /* and the alias */
    const char *nss = getenv("TEST_NSS");
    REQUIRE(nss && mount(nss, "/etc/nsswitch.conf", NULL, MS_BIND, NULL) == 0);
    CHECK(strcmp(hoare_net_resolver(), "system") == 0);
    CHECK(hoare_net_lookup("ip4", "localhost", a, 4, 5 * HOARE_SEC) >= 1);
    return test_checks_failed ? 1 : 0;
}

static void test_namespace(void) {
    char conf_env[128], nss_env[128], hosts_env[128], out[4096];
    snprintf(conf_env, sizeof conf_env, "HOARE_RESOLV_CONF=%s", conf_path);
    snprintf(nss_env, sizeof nss_env, "TEST_NSS=%s", nss_path);
    snprintf(hosts_env, sizeof hosts_env, "TEST_HOSTS=%s", hosts_path);
    char *env[] = {conf_env, nss_env, hosts_env, NULL};
    int st = test_run_self("namespace", env, out, sizeof out);
    if (WIFEXITED(st) && WEXITSTATUS(st) == SKIP) {
        printf("namespace part skipped: %s", out);
        return;
    }
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) fprintf(stderr, "child: %s\n", out);
}

static void test_system_resolver(void) {
    setenv("HOARE_RESOLVER", "system", 1);
    CHECK(strcmp(hoare_net_resolver(), "system") == 0);
    struct sockaddr_storage a[4];
    CHECK(hoare_net_lookup("ip4", "localhost", a, 4, 0) >= 1);
    CHECK(is_v4(&a[0], "127.0.0.1"));
    setenv("HOARE_RESOLVER", "cares", 1);
}

int main(int argc, char **argv) {
    test_begin(argv, 120);
    if (argc > 1 && strcmp(argv[1], "namespace") == 0) return child_namespace();
    /* c-ares even where this machine's nsswitch.conf would send lookups to the C library */
    setenv("HOARE_RESOLVER", "cares", 1);
    if (argc > 1 && strcmp(argv[1], "one_proc") == 0) return child_one_proc();
    if (strcmp(hoare_net_resolver(), "cares") != 0) {
        printf("skip: built without c-ares\n");
        return SKIP;
    }
    start_dns();
    setenv("HOARE_RESOLV_CONF", conf_path, 1);
    test_lookups();
    test_dial_by_name();
    test_silent_timeout();
    test_resolv_options();
    test_conf_not_a_file();
    test_silent_concurrent_one_proc();
    test_system_resolver();
    test_namespace();
    hoare_fd_close(dns_fd);
    unlink(conf_path);
    unlink(hosts_path);
    unlink(nss_path);
    TEST_MAIN_END();
}
