/*
 * net.c - hoare_net_listen / hoare_net_dial: sockets for "tcp", "tcp4", "tcp6" and "unix" by
 * address string, registered with the poller (see fdio.c).
 *
 * Numeric hosts are parsed here; names go to getaddrinfo inside hoare_blocking_begin/end (it may
 * block the thread on DNS). The descriptors are created non-blocking and close-on-exec.
 */
#include <errno.h>
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

enum net_kind { NET_TCP, NET_TCP4, NET_TCP6, NET_UNIX };

/* The most addresses of one host name a dial tries. */
#define MAX_ADDRS 8
/* Larger than any system's maximum: listen(2) caps it at net.core.somaxconn. */
#define LISTEN_BACKLOG 65535

struct addr_list {
    int n;
    struct sockaddr_storage addr[MAX_ADDRS];
    socklen_t len[MAX_ADDRS];
};

static int parse_network(const char *network, enum net_kind *kind) {
    if (!network) return -EINVAL;
    if (strcmp(network, "tcp") == 0) *kind = NET_TCP;
    else if (strcmp(network, "tcp4") == 0) *kind = NET_TCP4;
    else if (strcmp(network, "tcp6") == 0) *kind = NET_TCP6;
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

/* A decimal port 0..65535; -1 for a service name; -2 for a number out of range. */
static int numeric_port(const char *port) {
    size_t digits = strspn(port, "0123456789");
    if (digits == 0 || port[digits]) return -1;
    long v = digits > 5 ? 65536 : strtol(port, NULL, 10);
    return v > 65535 ? -2 : (int)v;
}

static void add_v4(struct addr_list *l, struct in_addr a, int port) {
    struct sockaddr_in *sin = (struct sockaddr_in *)&l->addr[l->n];
    memset(sin, 0, sizeof *sin);
    sin->sin_family = AF_INET;
    sin->sin_addr = a;
    sin->sin_port = htons((uint16_t)port);
    l->len[l->n++] = sizeof *sin;
}

static void add_v6(struct addr_list *l, struct in6_addr a, int port) {
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&l->addr[l->n];
    memset(sin6, 0, sizeof *sin6);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_addr = a;
    sin6->sin6_port = htons((uint16_t)port);
    l->len[l->n++] = sizeof *sin6;
}

static int gai_errno(int rc, int saved_errno) {
    switch (rc) {
    case EAI_NONAME:
#ifdef EAI_NODATA
    case EAI_NODATA:
#endif
    case EAI_ADDRFAMILY:
        return -ENOENT;
    case EAI_AGAIN: return -EAGAIN;
    case EAI_MEMORY: return -ENOMEM;
    case EAI_SYSTEM: return saved_errno ? -saved_errno : -EIO;
    default: return -EINVAL;
    }
}

/* Resolve host:port for kind (not unix). Empty host: the wildcard addresses when listening (IPv6
 * first for "tcp": a dual-stack socket), the loopback addresses when dialing. */
static int resolve(enum net_kind kind, const char *address, bool listening, struct addr_list *out) {
    char host[256], port[64];
    int err = split_host_port(address, host, sizeof host, port, sizeof port);
    if (err) return err;
    bool want4 = kind != NET_TCP6, want6 = kind != NET_TCP4;
    out->n = 0;
    int pnum = numeric_port(port);
    if (pnum == -2) return -EINVAL;
    if (pnum >= 0) {
        struct in_addr a4;
        struct in6_addr a6;
        if (host[0] == 0) {
            if (listening) {
                if (want6) add_v6(out, in6addr_any, pnum);
                if (want4) add_v4(out, (struct in_addr){htonl(INADDR_ANY)}, pnum);
            } else {
                if (want4) add_v4(out, (struct in_addr){htonl(INADDR_LOOPBACK)}, pnum);
                if (want6) add_v6(out, in6addr_loopback, pnum);
            }
            return 0;
        }
        if (inet_pton(AF_INET, host, &a4) == 1) {
            if (!want4) return -EAFNOSUPPORT;
            add_v4(out, a4, pnum);
            return 0;
        }
        if (inet_pton(AF_INET6, host, &a6) == 1) {
            /* IPv4-mapped addresses count as IPv4, as in Go. */
            if (IN6_IS_ADDR_V4MAPPED(&a6) ? !want4 : !want6) return -EAFNOSUPPORT;
            add_v6(out, a6, pnum);
            return 0;
        }
    }
    struct addrinfo hints = {
        .ai_family = kind == NET_TCP4 ? AF_INET : kind == NET_TCP6 ? AF_INET6 : AF_UNSPEC,
        .ai_socktype = SOCK_STREAM,
        .ai_flags = (pnum >= 0 ? AI_NUMERICSERV : 0) | (listening ? AI_PASSIVE : 0),
    };
    struct addrinfo *res = NULL;
    hoare_blocking_begin();
    int rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    int saved = errno;
    hoare_blocking_end();
    if (rc != 0) return gai_errno(rc, saved);
    for (struct addrinfo *ai = res; ai && out->n < MAX_ADDRS; ai = ai->ai_next) {
        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
            ai->ai_addrlen > sizeof out->addr[0])
            continue;
        memcpy(&out->addr[out->n], ai->ai_addr, ai->ai_addrlen);
        out->len[out->n++] = ai->ai_addrlen;
    }
    freeaddrinfo(res);
    return out->n ? 0 : -ENOENT;
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

/* A new non-blocking socket, registered with the poller; TCP_NODELAY for TCP (as Go). */
static int new_socket(int family) {
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    if (family != AF_UNIX) {
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    int err = hoare__fd_register_new(fd, true);
    if (err) {
        close(fd);
        return -err;
    }
    return fd;
}

/* Bind and listen on one address; a descriptor or a negative errno value. */
static int listen_on(const struct sockaddr *sa, socklen_t len, bool v6only) {
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1, err = 0;
    if (sa->sa_family != AF_UNIX && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0)
        err = -errno;
    if (!err && sa->sa_family == AF_INET6) {
        int v = v6only;
        if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v, sizeof v) != 0) err = -errno;
    }
    if (!err && bind(fd, sa, len) != 0) err = -errno;
    if (!err && listen(fd, LISTEN_BACKLOG) != 0) err = -errno;
    if (!err) err = -hoare__fd_register_new(fd, true);
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
        return err ? err : listen_on((struct sockaddr *)&sun, len, false);
    }
    struct addr_list addrs;
    err = resolve(kind, address, true, &addrs);
    if (err) return err;
    /* The first address; for "tcp" on the IPv6 wildcard, a dual-stack socket, falling back to the
     * IPv4 wildcard (next in the list) where IPv6 is unavailable. */
    for (int i = 0; i < addrs.n; i++) {
        const struct sockaddr *sa = (const struct sockaddr *)&addrs.addr[i];
        bool wildcard6 = sa->sa_family == AF_INET6 &&
                         IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)sa)->sin6_addr);
        int fd = listen_on(sa, addrs.len[i], !(kind == NET_TCP && wildcard6));
        if (fd >= 0) return fd;
        err = fd;
        if (!(wildcard6 && (fd == -EAFNOSUPPORT || fd == -EADDRNOTAVAIL))) break;
    }
    return err;
}

/* Dial one address before the deadline (0: none). */
static int dial_one(const struct sockaddr *sa, socklen_t len, int64_t deadline) {
    int fd = new_socket(sa->sa_family);
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
    int64_t deadline = timeout_ns > 0 ? hoare_now() + timeout_ns : 0;
    if (kind == NET_UNIX) {
        struct sockaddr_un sun;
        socklen_t len;
        err = unix_address(address, &sun, &len);
        return err ? err : dial_one((struct sockaddr *)&sun, len, deadline);
    }
    struct addr_list addrs;
    err = resolve(kind, address, false, &addrs);
    if (err) return err;
    for (int i = 0; i < addrs.n; i++) {
        int fd = dial_one((const struct sockaddr *)&addrs.addr[i], addrs.len[i], deadline);
        if (fd >= 0) return fd;
        err = fd;
        if (err == -ETIMEDOUT) break;
    }
    return err;
}
