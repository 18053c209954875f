/*
 * net.c - hoare_net_listen / hoare_net_dial: sockets for "tcp", "tcp4", "tcp6", "udp", "udp4",
 * "udp6" and "unix" by address string, registered with the poller (see fdio.c).
 *
 * Numeric hosts are parsed here; names go to the resolver (resolve.c), which parks the goroutine
 * and is bounded by the dial's deadline. The descriptors are created non-blocking and close-on-exec.
 */
#include <errno.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "netpoll.h"
#include "resolve.h"

enum net_kind { NET_TCP, NET_TCP4, NET_TCP6, NET_UDP, NET_UDP4, NET_UDP6, NET_UNIX };

static bool is_udp(enum net_kind k) { return k == NET_UDP || k == NET_UDP4 || k == NET_UDP6; }

/* Larger than any system's maximum: listen(2) caps it at net.core.somaxconn. */
#define LISTEN_BACKLOG 65535

static int parse_network(const char *network, enum net_kind *kind) {
    if (!network) return -EINVAL;
    if (strcmp(network, "tcp") == 0) *kind = NET_TCP;
    else if (strcmp(network, "tcp4") == 0) *kind = NET_TCP4;
    else if (strcmp(network, "tcp6") == 0) *kind = NET_TCP6;
    else if (strcmp(network, "udp") == 0) *kind = NET_UDP;
    else if (strcmp(network, "udp4") == 0) *kind = NET_UDP4;
    else if (strcmp(network, "udp6") == 0) *kind = NET_UDP6;
    else if (strcmp(network, "unix") == 0) *kind = NET_UNIX;
    else return -EINVAL;
    return 0;
}

/* Split "host:port", "[host]:port" or ":port" (Go's SplitHostPort). */
static int split_host_port(const char *address, char *host, size_t host_cap, char *port,
                           size_t port_cap) {
    const char *colon, *h = address, *h_end;
    if (address[0] == '[') {
        h = address + 1;
        h_end = strchr(h, ']');
        if (!h_end || h_end[1] != ':') return -EINVAL;
        colon = h_end + 1;
    } else {
        colon = strrchr(address, ':');
        if (!colon) return -EINVAL; /* missing port */
        h_end = colon;
        if (memchr(address, ':', (size_t)(colon - address))) return -EINVAL; /* too many colons */
    }
    size_t hlen = (size_t)(h_end - h), plen = strlen(colon + 1);
    if (hlen >= host_cap || plen >= port_cap || plen == 0) return -EINVAL;
    memcpy(host, h, hlen);
    host[hlen] = 0;
    memcpy(port, colon + 1, plen + 1);
    return 0;
}

static void add_v4(struct hoare__addr_list *l, struct in_addr a, int port) {
    struct sockaddr_in *sin = (struct sockaddr_in *)&l->addr[l->n];
    memset(sin, 0, sizeof *sin);
    sin->sin_family = AF_INET;
    sin->sin_addr = a;
    sin->sin_port = htons((uint16_t)port);
    l->len[l->n++] = sizeof *sin;
}

static void add_v6(struct hoare__addr_list *l, struct in6_addr a, uint32_t scope, int port) {
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&l->addr[l->n];
    memset(sin6, 0, sizeof *sin6);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_addr = a;
    sin6->sin6_scope_id = scope;
    sin6->sin6_port = htons((uint16_t)port);
    l->len[l->n++] = sizeof *sin6;
}

/* The port an address gives, as Go reads it: a decimal number, a sign allowed ("+80" is 80), in
 * 0..65535; else a service name of the services database for proto ("tcp" or "udp"). -EINVAL for
 * a number out of range or an unknown service (Go's "invalid port", "unknown port"). */
static int parse_port(const char *port, const char *proto) {
    const char *digits = port + (port[0] == '+' || port[0] == '-');
    size_t n = strspn(digits, "0123456789");
    if (n > 0 && digits[n] == 0) {
        long v = n > 5 ? 65536 : strtol(digits, NULL, 10);
        return v > 65535 || (port[0] == '-' && v > 0) ? -EINVAL : (int)v;
    }
    struct servent se, *res = NULL;
    char buf[1024];
    hoare_blocking_begin(); /* usually a file, but NSS may be configured otherwise */
    int rc = getservbyname_r(port, proto, &se, buf, sizeof buf, &res);
    hoare_blocking_end();
    return rc == 0 && res ? ntohs((uint16_t)res->s_port) : -EINVAL;
}

/* An IPv6 literal, with a zone or not ("fe80::1%eth0", "::1%2"): its address and scope id. As in
 * Go, a zone is an interface name, else a decimal index, else scope 0 (getaddrinfo's
 * AI_NUMERICHOST would refuse interface names except on link-local addresses). */
static bool ipv6_literal(const char *host, struct in6_addr *a, uint32_t *scope) {
    const char *zone = strchr(host, '%');
    char addr[INET6_ADDRSTRLEN];
    size_t len = zone ? (size_t)(zone - host) : strlen(host);
    if (len >= sizeof addr || (zone && !zone[1])) return false;
    memcpy(addr, host, len);
    addr[len] = 0;
    if (inet_pton(AF_INET6, addr, a) != 1) return false;
    *scope = 0;
    if (zone) {
        zone++;
        *scope = if_nametoindex(zone);
        if (!*scope && strspn(zone, "0123456789") == strlen(zone)) *scope = (uint32_t)strtoul(zone, NULL, 10);
    }
    return true;
}

/* Addresses of host (numeric or a name; empty: none) with port for the families wanted, before
 * deadline (0: none). */
static int resolve_host(const char *host, bool want4, bool want6, int pnum, int64_t deadline,
                        struct hoare__addr_list *out) {
    struct in_addr a4;
    struct in6_addr a6;
    uint32_t scope;
    if (inet_pton(AF_INET, host, &a4) == 1) {
        if (!want4) return -EAFNOSUPPORT;
        add_v4(out, a4, pnum);
        return 0;
    }
    if (ipv6_literal(host, &a6, &scope)) {
        /* IPv4-mapped addresses count as IPv4, as in Go. */
        if (IN6_IS_ADDR_V4MAPPED(&a6) ? !want4 : !want6) return -EAFNOSUPPORT;
        add_v6(out, a6, scope, pnum);
        return 0;
    }
    if (strchr(host, '%')) return -ENOENT; /* no host name has one (Go does not ask DNS either) */
    int family = want4 && want6 ? AF_UNSPEC : want4 ? AF_INET : AF_INET6;
    return hoare__resolve(host, family, pnum, deadline, out);
}

/* Resolve host:port for kind (not unix) before deadline (0: none). Empty host: the wildcard
 * addresses when listening (IPv6 first for "tcp"/"udp": a dual-stack socket), the loopback
 * addresses when dialing. */
static int resolve(enum net_kind kind, const char *address, bool listening, int64_t deadline,
                   struct hoare__addr_list *out) {
    char host[256], port[64];
    int err = split_host_port(address, host, sizeof host, port, sizeof port);
    if (err) return err;
    bool want4 = kind != NET_TCP6 && kind != NET_UDP6, want6 = kind != NET_TCP4 && kind != NET_UDP4;
    out->n = 0;
    int pnum = parse_port(port, is_udp(kind) ? "udp" : "tcp");
    if (pnum < 0) return pnum;
    if (host[0] == 0) {
        if (listening) {
            if (want6) add_v6(out, in6addr_any, 0, pnum);
            if (want4) add_v4(out, (struct in_addr){htonl(INADDR_ANY)}, pnum);
        } else {
            if (want4) add_v4(out, (struct in_addr){htonl(INADDR_LOOPBACK)}, pnum);
            if (want6) add_v6(out, in6addr_loopback, 0, pnum);
        }
        return 0;
    }
    return resolve_host(host, want4, want6, pnum, deadline, out);
}

int hoare_net_lookup(const char *network, const char *host, void *addrs, int cap, int64_t timeout_ns) {
    bool want4 = true, want6 = true;
    if (network && strcmp(network, "ip4") == 0) want6 = false;
    else if (network && strcmp(network, "ip6") == 0) want4 = false;
    else if (network && strcmp(network, "ip") != 0) return -EINVAL;
    if (!host || !host[0] || cap < 0 || (cap > 0 && !addrs)) return -EINVAL;
    struct hoare__addr_list list = {0};
    int err = resolve_host(host, want4, want6, 0, timeout_ns > 0 ? hoare__deadline_in(timeout_ns) : 0, &list);
    if (err) return err == -EAFNOSUPPORT ? -ENOENT : err;
    int n = list.n < cap ? list.n : cap;
    struct sockaddr_storage *out = addrs;
    for (int i = 0; i < n; i++) {
        memset(&out[i], 0, sizeof out[i]);
        memcpy(&out[i], &list.addr[i], list.len[i]);
    }
    return n;
}

static int unix_address(const char *path, struct sockaddr_un *sun, socklen_t *len) {
    size_t n = strlen(path);
    if (n == 0) return -EINVAL;
    if (n >= sizeof sun->sun_path) return -ENAMETOOLONG;
    memset(sun, 0, sizeof *sun);
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, path, n);
    if (path[0] == '@') { /* abstract: a leading NUL, and the length counts exactly the name */
        sun->sun_path[0] = 0;
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    } else {
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    }
    return 0;
}

/* A new non-blocking socket of type (SOCK_STREAM or SOCK_DGRAM), registered with the poller;
 * TCP_NODELAY for TCP (as Go). */
static int new_socket(int family, int type) {
    int fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    if (family != AF_UNIX && type == SOCK_STREAM) {
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    int err = hoare__fd_register_new(fd, type == SOCK_STREAM);
    if (err) {
        close(fd);
        return -err;
    }
    return fd;
}

/* Bind and listen on one address (type SOCK_STREAM), or just bind (SOCK_DGRAM); a descriptor or a
 * negative errno value. */
static int listen_on(const struct sockaddr *sa, socklen_t len, int type, bool v6only) {
    int fd = socket(sa->sa_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1, err = 0;
    /* As Go: SO_REUSEADDR for stream listeners only (for UDP it would let two sockets share a port). */
    if (type == SOCK_STREAM && sa->sa_family != AF_UNIX &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0)
        err = -errno;
    if (!err && sa->sa_family == AF_INET6) {
        int v = v6only;
        if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v, sizeof v) != 0) err = -errno;
    }
    if (!err && bind(fd, sa, len) != 0) err = -errno;
    if (!err && type == SOCK_STREAM && listen(fd, LISTEN_BACKLOG) != 0) err = -errno;
    if (!err) err = -hoare__fd_register_new(fd, type == SOCK_STREAM);
    if (err) {
        close(fd);
        return err;
    }
    return fd;
}

int hoare_net_listen(const char *network, const char *address) {
    enum net_kind kind;
    int err = parse_network(network, &kind);
    if (err || !address) return -EINVAL;
    if (kind == NET_UNIX) {
        struct sockaddr_un sun;
        socklen_t len;
        err = unix_address(address, &sun, &len);
        return err ? err : listen_on((struct sockaddr *)&sun, len, SOCK_STREAM, false);
    }
    struct hoare__addr_list addrs;
    err = resolve(kind, address, true, 0, &addrs);
    if (err) return err;
    /* The first address; for "tcp"/"udp" on the IPv6 wildcard, a dual-stack socket, falling back to
     * the IPv4 wildcard (next in the list) where IPv6 is unavailable. */
    int type = is_udp(kind) ? SOCK_DGRAM : SOCK_STREAM;
    for (int i = 0; i < addrs.n; i++) {
        const struct sockaddr *sa = (const struct sockaddr *)&addrs.addr[i];
        bool wildcard6 = sa->sa_family == AF_INET6 &&
                         IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)sa)->sin6_addr);
        int fd = listen_on(sa, addrs.len[i], type, !((kind == NET_TCP || kind == NET_UDP) && wildcard6));
        if (fd >= 0) return fd;
        err = fd;
        if (!(wildcard6 && (fd == -EAFNOSUPPORT || fd == -EADDRNOTAVAIL))) break;
    }
    return err;
}

/* Dial one address before the deadline (0: none). A datagram socket's connect only sets its peer. */
static int dial_one(const struct sockaddr *sa, socklen_t len, int type, int64_t deadline) {
    int fd = new_socket(sa->sa_family, type);
    if (fd < 0) return fd;
    int err = deadline ? hoare_fd_set_write_deadline(fd, deadline) : 0;
    if (!err) err = -hoare_fd_connect(fd, sa, len);
    if (!err && deadline) err = hoare_fd_set_write_deadline(fd, 0);
    if (err) {
        hoare_fd_close(fd);
        return -err;
    }
    return fd;
}

int hoare_net_dial(const char *network, const char *address, int64_t timeout_ns) {
    enum net_kind kind;
    int err = parse_network(network, &kind);
    if (err || !address) return -EINVAL;
    int64_t deadline = timeout_ns > 0 ? hoare__deadline_in(timeout_ns) : 0;
    if (kind == NET_UNIX) {
        struct sockaddr_un sun;
        socklen_t len;
        err = unix_address(address, &sun, &len);
        return err ? err : dial_one((struct sockaddr *)&sun, len, SOCK_STREAM, deadline);
    }
    struct hoare__addr_list addrs;
    err = resolve(kind, address, false, deadline, &addrs);
    if (err) return err;
    int type = is_udp(kind) ? SOCK_DGRAM : SOCK_STREAM;
    for (int i = 0; i < addrs.n; i++) {
        int fd = dial_one((const struct sockaddr *)&addrs.addr[i], addrs.len[i], type, deadline);
        if (fd >= 0) return fd;
        err = fd;
        if (err == -ETIMEDOUT) break;
    }
    return err;
}
