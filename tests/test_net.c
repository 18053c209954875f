/*
 * test_net.c - hoare_net_listen / hoare_net_dial: tcp, tcp4, tcp6 and unix (path and abstract),
 * address parsing (ports, IPv6 zones) and its errors, host names (localhost only), refused
 * connections, socket options.
 * Loopback addresses and a temporary directory only.
 */
#include "test.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdbool.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

struct echo_arg {
    int lfd;
    hoare_wg *wg;
};

/* Accept one connection and echo it until EOF. */
static void echo_once(void *p) {
    struct echo_arg *a = p;
    int fd = hoare_fd_accept(a->lfd, NULL, NULL);
    CHECK(fd >= 0);
    char buf[256];
    ssize_t n;
    while (fd >= 0 && (n = hoare_fd_read(fd, buf, sizeof buf)) > 0)
        CHECK_EQ(hoare_fd_write(fd, buf, (size_t)n), n);
    if (fd >= 0) hoare_fd_close(fd);
    hoare_wg_done(a->wg);
}

static int local_port(int fd) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    REQUIRE(getsockname(fd, (struct sockaddr *)&ss, &len) == 0);
    if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static int family_of(int fd, bool peer) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int r = peer ? getpeername(fd, (struct sockaddr *)&ss, &len)
                 : getsockname(fd, (struct sockaddr *)&ss, &len);
    return r == 0 ? ss.ss_family : -1;
}

/* Dial listener lfd at (network, address), exchange a message through an echo goroutine. */
static void roundtrip(int lfd, const char *network, const char *address, int want_family) {
    hoare_wg wg = HOARE_WG_INIT;
    struct echo_arg a = {lfd, &wg};
    hoare_wg_add(&wg, 1);
    REQUIRE(hoare_go(echo_once, &a) == 0);
    int fd = hoare_net_dial(network, address, 5 * HOARE_SEC);
    CHECK(fd >= 0);
    if (fd >= 0) {
        CHECK_EQ(family_of(fd, true), want_family);
        CHECK(fcntl(fd, F_GETFL) & O_NONBLOCK);
        CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        if (want_family != AF_UNIX) {
            int nodelay = 0;
            socklen_t olen = sizeof nodelay;
            CHECK(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, &olen) == 0 && nodelay);
        }
        CHECK_EQ(hoare_fd_write(fd, "hello, net", 10), 10);
        char buf[16] = {0};
        size_t got = 0;
        while (got < 10) {
            ssize_t n = hoare_fd_read(fd, buf + got, sizeof buf - got);
            if (n <= 0) break;
            got += (size_t)n;
        }
        CHECK_EQ(got, 10);
        CHECK(memcmp(buf, "hello, net", 10) == 0);
        hoare_fd_close(fd);
    } else {
        /* Unblock the echo goroutine's accept. */
        hoare_fd_close(lfd);
    }
    hoare_wg_wait(&wg);
}

static void test_tcp4(void) {
    int lfd = hoare_net_listen("tcp4", "127.0.0.1:0");
    REQUIRE(lfd >= 0);
    CHECK_EQ(family_of(lfd, false), AF_INET);
    int reuse = 0;
    socklen_t olen = sizeof reuse;
    CHECK(getsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &reuse, &olen) == 0 && reuse);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", local_port(lfd));
    roundtrip(lfd, "tcp4", addr, AF_INET);
    roundtrip(lfd, "tcp", addr, AF_INET);
    snprintf(addr, sizeof addr, "127.0.0.1:+%d", local_port(lfd)); /* a sign, as Go allows */
    roundtrip(lfd, "tcp4", addr, AF_INET);
    /* A host name (resolved by getaddrinfo in a blocking region): localhost is loopback. */
    snprintf(addr, sizeof addr, "localhost:%d", local_port(lfd));
    roundtrip(lfd, "tcp4", addr, AF_INET);
    /* Empty host: the local system. */
    snprintf(addr, sizeof addr, ":%d", local_port(lfd));
    roundtrip(lfd, "tcp4", addr, AF_INET);
    hoare_fd_close(lfd);
}

static void test_tcp6(void) {
    int lfd = hoare_net_listen("tcp6", "[::1]:0");
    REQUIRE(lfd >= 0);
    CHECK_EQ(family_of(lfd, false), AF_INET6);
    int v6only = 0;
    socklen_t olen = sizeof v6only;
    CHECK(getsockopt(lfd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &olen) == 0 && v6only);
    char addr[64];
    snprintf(addr, sizeof addr, "[::1]:%d", local_port(lfd));
    roundtrip(lfd, "tcp6", addr, AF_INET6);
    roundtrip(lfd, "tcp", addr, AF_INET6);
    /* An address with a zone (an interface name or number), as link-local addresses need. */
    snprintf(addr, sizeof addr, "[::1%%lo]:%d", local_port(lfd));
    roundtrip(lfd, "tcp6", addr, AF_INET6);
    snprintf(addr, sizeof addr, "[::1%%%u]:%d", if_nametoindex("lo"), local_port(lfd));
    roundtrip(lfd, "tcp", addr, AF_INET6);
    hoare_fd_close(lfd);
    struct sockaddr_storage ss;
    CHECK_EQ(hoare_net_lookup("ip", "fe80::1%lo", &ss, 1, 0), 1);
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&ss;
    CHECK(ss.ss_family == AF_INET6 && sin6->sin6_scope_id == if_nametoindex("lo"));
    CHECK(sin6->sin6_scope_id != 0 && IN6_IS_ADDR_LINKLOCAL(&sin6->sin6_addr));
    CHECK_EQ(hoare_net_lookup("ip4", "fe80::1%lo", &ss, 1, 0), -ENOENT);

    /* "tcp" on the wildcard: one dual-stack socket, reached over IPv4 and IPv6 loopback. */
    lfd = hoare_net_listen("tcp", ":0");
    REQUIRE(lfd >= 0);
    CHECK_EQ(family_of(lfd, false), AF_INET6);
    CHECK(getsockopt(lfd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &olen) == 0 && !v6only);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", local_port(lfd));
    roundtrip(lfd, "tcp", addr, AF_INET);
    snprintf(addr, sizeof addr, "[::1]:%d", local_port(lfd));
    roundtrip(lfd, "tcp6", addr, AF_INET6);
    hoare_fd_close(lfd);
}

static void test_unix(void) {
    char dir[] = "/tmp/hoare_net_XXXXXX";
    REQUIRE(mkdtemp(dir) != NULL);
    char path[128];
    snprintf(path, sizeof path, "%s/sock", dir);
    int lfd = hoare_net_listen("unix", path);
    REQUIRE(lfd >= 0);
    struct stat st;
    CHECK(stat(path, &st) == 0 && S_ISSOCK(st.st_mode));
    roundtrip(lfd, "unix", path, AF_UNIX);
    hoare_fd_close(lfd);
    /* The path stays (the caller removes it), so listening again fails. */
    CHECK_EQ(hoare_net_listen("unix", path), -EADDRINUSE);
    unlink(path);
    rmdir(dir);
    /* Abstract name. */
    char name[64];
    snprintf(name, sizeof name, "@hoare-test-%d", (int)getpid());
    lfd = hoare_net_listen("unix", name);
    REQUIRE(lfd >= 0);
    roundtrip(lfd, "unix", name, AF_UNIX);
    hoare_fd_close(lfd);
    /* Nobody listening. */
    CHECK_EQ(hoare_net_dial("unix", name, 0), -ECONNREFUSED);
    snprintf(path, sizeof path, "%s/none", dir);
    CHECK_EQ(hoare_net_dial("unix", path, 0), -ENOENT);
    char longpath[200];
    memset(longpath, 'a', sizeof longpath - 1);
    longpath[sizeof longpath - 1] = 0;
    CHECK_EQ(hoare_net_listen("unix", longpath), -ENAMETOOLONG);
    CHECK_EQ(hoare_net_listen("unix", ""), -EINVAL);
}

static void test_errors(void) {
    CHECK_EQ(hoare_net_listen("sctp", "127.0.0.1:0"), -EINVAL);
    CHECK_EQ(hoare_net_listen(NULL, "127.0.0.1:0"), -EINVAL);
    CHECK_EQ(hoare_net_listen("tcp", NULL), -EINVAL);
    CHECK_EQ(hoare_net_dial("tcp", "127.0.0.1", 0), -EINVAL);      /* missing port */
    CHECK_EQ(hoare_net_dial("tcp", "::1:80", 0), -EINVAL);         /* too many colons */
    CHECK_EQ(hoare_net_dial("tcp", "[::1]80", 0), -EINVAL);        /* no colon after ] */
    CHECK_EQ(hoare_net_dial("tcp", "127.0.0.1:", 0), -EINVAL);     /* empty port */
    CHECK_EQ(hoare_net_dial("tcp", "127.0.0.1:99999", 0), -EINVAL); /* not a port */
    /* Ports as Go reads them: a decimal number (with a sign: "+80" is port 80, see test_tcp4) or a
     * service name; anything else is a malformed address. */
    CHECK_EQ(hoare_net_dial("tcp", "127.0.0.1:-1", 0), -EINVAL);
    CHECK_EQ(hoare_net_dial("tcp", "[::1]:0x50", 0), -EINVAL);
    CHECK_EQ(hoare_net_dial("tcp", "127.0.0.1: 80", 0), -EINVAL);
    CHECK_EQ(hoare_net_dial("tcp", "127.0.0.1:no-such-service", 0), -EINVAL);
    CHECK_EQ(hoare_net_dial("tcp4", "[::1]:80", 0), -EAFNOSUPPORT);
    CHECK_EQ(hoare_net_dial("tcp6", "127.0.0.1:80", 0), -EAFNOSUPPORT);
    CHECK_EQ(hoare_net_listen("tcp6", "127.0.0.1:0"), -EAFNOSUPPORT);
    /* Refused: a port that was just free. */
    int lfd = hoare_net_listen("tcp4", "127.0.0.1:0");
    REQUIRE(lfd >= 0);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", local_port(lfd));
    hoare_fd_close(lfd);
    CHECK_EQ(hoare_net_dial("tcp", addr, 0), -ECONNREFUSED);
    /* In use. */
    lfd = hoare_net_listen("tcp4", "127.0.0.1:0");
    REQUIRE(lfd >= 0);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", local_port(lfd));
    CHECK_EQ(hoare_net_listen("tcp4", addr), -EADDRINUSE);
    hoare_fd_close(lfd);
    /* A name that does not exist: /etc/hosts has no such entry, and the only DNS server named in
     * the test's resolv.conf is a closed loopback port (only loopback may be a test's target). */
    char conf[64];
    snprintf(conf, sizeof conf, "/tmp/hoare_net_%d.conf", (int)getpid());
    FILE *f = fopen(conf, "w");
    REQUIRE(f != NULL);
    fputs("nameserver 127.0.0.1:1\n", f);
    fclose(f);
    setenv("HOARE_RESOLV_CONF", conf, 1);
    int r = hoare_net_dial("tcp", "no-such-host.invalid:80", HOARE_SEC);
    CHECK(r == -ENOENT || r == -EAGAIN);
    unsetenv("HOARE_RESOLV_CONF");
    unlink(conf);
}

struct dial_arg {
    const char *address;
    int result;
    hoare_wg *wg;
};

static void dialer(void *p) {
    struct dial_arg *a = p;
    a->result = hoare_net_dial("tcp", a->address, 5 * HOARE_SEC);
    hoare_wg_done(a->wg);
}

/* Many goroutines dial and are accepted at once, from a plain thread. */
static void test_concurrent_dials(void) {
    enum { N = 64 };
    int lfd = hoare_net_listen("tcp", "127.0.0.1:0");
    REQUIRE(lfd >= 0);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", local_port(lfd));
    hoare_wg wg = HOARE_WG_INIT;
    struct dial_arg args[N];
    for (int i = 0; i < N; i++) {
        args[i] = (struct dial_arg){addr, -1, &wg};
        hoare_wg_add(&wg, 1);
        REQUIRE(hoare_go(dialer, &args[i]) == 0);
    }
    int accepted[N];
    for (int i = 0; i < N; i++) {
        accepted[i] = hoare_fd_accept(lfd, NULL, NULL);
        CHECK(accepted[i] >= 0);
    }
    hoare_wg_wait(&wg);
    for (int i = 0; i < N; i++) {
        CHECK(args[i].result >= 0);
        if (args[i].result >= 0) hoare_fd_close(args[i].result);
        if (accepted[i] >= 0) hoare_fd_close(accepted[i]);
    }
    hoare_fd_close(lfd);
}

int main(int argc, char **argv) {
    test_begin(argv, 60);
    test_tcp4();
    test_tcp6();
    test_unix();
    test_errors();
    test_concurrent_dials();
    TEST_MAIN_END();
}
