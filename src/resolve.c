/*
 * resolve.c - host names to addresses (hoare__resolve, for net.c), parking the goroutine and bounded
 * by the caller's deadline: Go's pure-Go resolver, with c-ares doing the DNS work.
 *
 * With c-ares (HOARE_HAVE_CARES, found at build time), each lookup makes its own channel, which
 * reads /etc/resolv.conf (servers, search domains, ndots, rotate; this file adds what c-ares 1.18
 * ignores there: nameserver ports, timeout, attempts), /etc/hosts and the hosts line of
 * /etc/nsswitch.conf as it is made: nothing is shared between threads, and a changed file counts
 * from the next lookup on. The channel's sockets go into a private,
 * level-triggered epoll instance that ARES_OPT_SOCK_STATE_CB keeps current. The lookup waits on
 * that one descriptor with hoare_fd_wait, its read deadline set to the earlier of c-ares' next
 * retransmission and the caller's deadline, and hands what became ready to ares_process_fd. So a
 * goroutine waiting for a silent server is parked like any reader, and gives up at its deadline.
 * A name in the hosts file is answered from there alone (Go's "files dns" order). Otherwise A and
 * AAAA are asked by separate calls; once one family answered with addresses, the other is awaited
 * FAMILY_GRACE at most, so a server that ignores one query type does not stall a dial.
 *
 * The C library's getaddrinfo (inside a blocking region, not bounded by the deadline) is used
 * instead, as Go does, when the hosts line of /etc/nsswitch.conf names a source other than files
 * and dns (mdns, myhostname, resolve, ...: only the C library knows them), when c-ares was not
 * found at build time, or with HOARE_RESOLVER=system. HOARE_RESOLVER=cares forces c-ares;
 * HOARE_RESOLV_CONF names another resolv.conf for it.
 */
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#ifdef HOARE_HAVE_CARES
#include <ares.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

#include "resolve.h"

/* Append addresses of family (AF_UNSPEC: both) from sa to out, with port. */
static void add_addr(struct hoare__addr_list *out, const struct sockaddr *sa, int family, int port) {
    if (out->n >= HOARE_MAX_ADDRS) return;
    if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6) return;
    if (family != AF_UNSPEC && sa->sa_family != family) return;
    socklen_t len = sa->sa_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    struct sockaddr_storage *ss = &out->addr[out->n];
    memset(ss, 0, sizeof *ss);
    memcpy(ss, sa, len);
    if (sa->sa_family == AF_INET) ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
    else ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
    out->len[out->n++] = len;
}

/* ---------------------------------------------------------------- the C library */

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

static int resolve_system(const char *host, int family, int port, struct hoare__addr_list *out) {
    struct addrinfo hints = {.ai_family = family, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    hoare_blocking_begin();
    int rc = getaddrinfo(host, NULL, &hints, &res);
    int saved = errno;
    hoare_blocking_end();
    if (rc != 0) return gai_errno(rc, saved);
    int before = out->n;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) add_addr(out, ai->ai_addr, family, port);
    freeaddrinfo(res);
    return out->n > before ? 0 : -ENOENT;
}

#ifdef HOARE_HAVE_CARES
/* ---------------------------------------------------------------- c-ares */

/* Does the hosts line of nsswitch.conf name only files and dns (or is there none)? Actions in
 * brackets ([NOTFOUND=return]) do not matter here. */
static bool nsswitch_files_dns_only(void) {
    FILE *f = fopen("/etc/nsswitch.conf", "re");
    if (!f) return true;
    char line[512];
    bool ok = true;
    while (fgets(line, sizeof line, f)) {
        char *p = line + strspn(line, " \t");
        if (strncmp(p, "hosts:", 6) != 0) continue;
        char *hash = strchr(p, '#');
        if (hash) *hash = 0;
        char *save = NULL;
        bool in_action = false;
        for (char *w = strtok_r(p + 6, " \t\n", &save); w; w = strtok_r(NULL, " \t\n", &save)) {
            if (in_action || w[0] == '[') {
                in_action = strchr(w, ']') == NULL;
                continue;
            }
            if (strcmp(w, "files") != 0 && strcmp(w, "dns") != 0) ok = false;
        }
    }
    fclose(f);
    return ok;
}

static pthread_once_t ares_once = PTHREAD_ONCE_INIT;
static int ares_init_status;
static void ares_init_once(void) { ares_init_status = ares_library_init(ARES_LIB_INIT_ALL); }

/* Once one family's query has answered with addresses, the other's answer is awaited this long
 * at most (RFC 8305's resolution delay, generously): a server that ignores AAAA queries must not
 * cost a dial its whole timeout. */
#define FAMILY_GRACE (100 * HOARE_MS)

/* One getaddrinfo call of a lookup: one per family asked (AF_INET first, then AF_INET6). */
struct family_query {
    struct lookup *lk;
    int family;
    bool done;   /* its callback ran */
    int status;  /* its ARES_* status */
    struct hoare__addr_list found;
};

/* One lookup: owned by the goroutine that runs it (c-ares calls back on that goroutine only). */
struct lookup {
    int epfd;      /* the private epoll instance holding the channel's sockets */
    int port;
    int pending;   /* calls whose callback has not run */
    int64_t answered; /* when a call first answered with addresses (0: none yet) */
    int nq;
    struct family_query q[2];
};

static void sock_state(void *data, ares_socket_t s, int readable, int writable) {
    struct lookup *lk = data;
    if (!readable && !writable) {
        (void)epoll_ctl(lk->epfd, EPOLL_CTL_DEL, s, NULL);
        return;
    }
    struct epoll_event ev = {.events = (readable ? EPOLLIN : 0) | (writable ? EPOLLOUT : 0), .data.fd = s};
    if (epoll_ctl(lk->epfd, EPOLL_CTL_MOD, s, &ev) != 0 && errno == ENOENT)
        (void)epoll_ctl(lk->epfd, EPOLL_CTL_ADD, s, &ev);
}

static void addrinfo_done(void *arg, int status, int timeouts, struct ares_addrinfo *res) {
    struct family_query *q = arg;
    q->done = true;
    q->status = status;
    q->lk->pending--;
    if (status != ARES_SUCCESS) return;
    for (struct ares_addrinfo_node *n = res->nodes; n; n = n->ai_next)
        add_addr(&q->found, n->ai_addr, q->family, q->lk->port);
    if (q->found.n == 0) q->status = ARES_ENODATA;
    else if (!q->lk->answered) q->lk->answered = hoare_now();
    ares_freeaddrinfo(res);
}

static int ares_errno(int status) {
    switch (status) {
    case ARES_SUCCESS: return 0;
    case ARES_ENOTFOUND:
    case ARES_ENODATA:
    case ARES_EBADNAME:
    case ARES_EBADFAMILY: return -ENOENT;
    case ARES_ETIMEOUT: return -ETIMEDOUT;
    case ARES_ENOMEM: return -ENOMEM;
    default: return -EAGAIN; /* server failure, refusal, bad responses: temporary */
    }
}

/* Wait for the channel's sockets until every call is done, the grace after a first answer is over,
 * or the deadline passes. 0 or a negative errno value (-ETIMEDOUT at the deadline). */
static int run_lookup(ares_channel ch, struct lookup *lk, int64_t deadline) {
    while (lk->pending > 0) {
        struct timeval tv;
        int64_t now = hoare_now(), wake = deadline;
        if (lk->answered) {
            if (now >= lk->answered + FAMILY_GRACE) return 0;
            if (wake == 0 || lk->answered + FAMILY_GRACE < wake) wake = lk->answered + FAMILY_GRACE;
        }
        if (ares_timeout(ch, NULL, &tv)) {
            int64_t next = now + (int64_t)tv.tv_sec * HOARE_SEC + (int64_t)tv.tv_usec * 1000;
            if (wake == 0 || next < wake) wake = next;
        }
        int err = hoare_fd_set_read_deadline(lk->epfd, wake > 0 ? wake : 0);
        if (err) return -err;
        err = hoare_fd_wait(lk->epfd, 1);
        if (err == -ETIMEDOUT) {
            if (deadline && hoare_now() >= deadline) return -ETIMEDOUT;
            ares_process_fd(ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD); /* retransmissions, give-ups */
            continue;
        }
        if (err) return err;
        struct epoll_event evs[8];
        int n;
        while ((n = epoll_wait(lk->epfd, evs, 8, 0)) < 0 && errno == EINTR) {}
        for (int i = 0; i < n && lk->pending > 0; i++) {
            uint32_t e = evs[i].events;
            ares_socket_t s = evs[i].data.fd;
            ares_process_fd(ch, e & (EPOLLIN | EPOLLERR | EPOLLHUP) ? s : ARES_SOCKET_BAD,
                            e & EPOLLOUT ? s : ARES_SOCKET_BAD);
        }
        if (n == 0) ares_process_fd(ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    }
    return 0;
}

/* The lookup's result: the addresses found (IPv4 first) appended to out, or the error that
 * explains why there are none (a timeout over a temporary failure over "not found"). */
static int lookup_result(struct lookup *lk, int err, struct hoare__addr_list *out) {
    int before = out->n;
    for (int i = 0; i < lk->nq; i++)
        for (int k = 0; k < lk->q[i].found.n && out->n < HOARE_MAX_ADDRS; k++) {
            out->addr[out->n] = lk->q[i].found.addr[k];
            out->len[out->n++] = lk->q[i].found.len[k];
        }
    if (out->n > before) return 0;
    if (err) return err;
    int worst = -ENOENT;
    for (int i = 0; i < lk->nq; i++) {
        int e = lk->q[i].done ? ares_errno(lk->q[i].status) : -ETIMEDOUT;
        if (e == -ETIMEDOUT || (e != -ENOENT && worst == -ENOENT)) worst = e;
    }
    return worst;
}

/* What c-ares 1.18 does not take from resolv.conf itself: a port on a nameserver line
 * ("nameserver 127.0.0.1:5353", "nameserver [::1]:5353"; glibc ignores such lines altogether), and
 * "options timeout:N attempts:N" (it knows only the BIND 4 spellings retrans: and retry:). */
struct conf_extra {
    int timeout_ms; /* the wait for one server in the first round (c-ares doubles it each round) */
    int attempts;   /* rounds over the servers */
    bool ported;    /* a nameserver line has a port: then servers lists them all */
    char servers[1024];
};

/* One word of an options line (or of RES_OPTIONS). Bounds and defaults are resolv.conf(5)'s. */
static void conf_option(struct conf_extra *x, const char *w) {
    if (strncmp(w, "timeout:", 8) == 0) {
        long n = strtol(w + 8, NULL, 10);
        x->timeout_ms = (int)(n < 1 ? 1 : n > 30 ? 30 : n) * 1000;
    } else if (strncmp(w, "attempts:", 9) == 0) {
        long n = strtol(w + 9, NULL, 10);
        x->attempts = (int)(n < 1 ? 1 : n > 5 ? 5 : n);
    }
}

/* Read path, then the RES_OPTIONS environment variable (which wins, as in glibc), into x. */
static void read_conf_extra(const char *path, struct conf_extra *x) {
    *x = (struct conf_extra){.timeout_ms = 5000, .attempts = 2};
    FILE *f = fopen(path, "re");
    if (f) {
        char line[256];
        size_t len = 0;
        while (fgets(line, sizeof line, f)) {
            char *save = NULL, *w = strtok_r(line, " \t\r\n", &save);
            if (w && strcmp(w, "options") == 0) {
                while ((w = strtok_r(NULL, " \t\r\n", &save))) conf_option(x, w);
                continue;
            }
            if (!w || strcmp(w, "nameserver") != 0 || !(w = strtok_r(NULL, " \t\r\n", &save))) continue;
            char *colon = strrchr(w, ':');
            if (colon && (w[0] == '[' ? colon > w && colon[-1] == ']' : strchr(w, ':') == colon))
                x->ported = true;
            int n = snprintf(x->servers + len, sizeof x->servers - len, "%s%s", len ? "," : "", w);
            if (n < 0 || (size_t)n >= sizeof x->servers - len) break;
            len += (size_t)n;
        }
        fclose(f);
    }
    const char *env = getenv("RES_OPTIONS");
    char words[256];
    if (!env || snprintf(words, sizeof words, "%s", env) >= (int)sizeof words) return;
    char *save = NULL;
    for (char *w = strtok_r(words, " \t", &save); w; w = strtok_r(NULL, " \t", &save))
        conf_option(x, w);
}

static int resolve_ares(const char *host, int family, int port, int64_t deadline,
                        struct hoare__addr_list *out) {
    hoare__once(&ares_once, ares_init_once);
    if (ares_init_status != ARES_SUCCESS) return resolve_system(host, family, port, out);
    const char *conf = getenv("HOARE_RESOLV_CONF");
    bool own_conf = conf && *conf;
    if (!own_conf) conf = "/etc/resolv.conf";
    /* A configuration is a regular file: a device or a pipe named by mistake (/dev/zero) would
     * be read without end, by us and by c-ares. */
    struct stat st;
    if (own_conf && stat(conf, &st) == 0 && !S_ISREG(st.st_mode)) return -EINVAL;
    struct lookup lk = {.epfd = epoll_create1(EPOLL_CLOEXEC), .port = port};
    if (lk.epfd < 0) return -errno;
    struct conf_extra extra;
    read_conf_extra(conf, &extra);
    struct ares_options opts = {.sock_state_cb = sock_state,
                                .sock_state_cb_data = &lk,
                                .timeout = extra.timeout_ms,
                                .tries = extra.attempts,
                                .resolvconf_path = own_conf ? (char *)conf : NULL};
    int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
    if (own_conf) mask |= ARES_OPT_RESOLVCONF;
    ares_channel ch;
    int status = ares_init_options(&ch, &opts, mask);
    if (status != ARES_SUCCESS) {
        close(lk.epfd);
        return ares_errno(status);
    }
    if (extra.ported) (void)ares_set_servers_ports_csv(ch, extra.servers);
    /* The hosts file first, as Go does for "files dns": a name found there (in either family) is
     * not asked of DNS. */
    int before = out->n;
    /* an absolute name ("localhost.") matches the hosts file's entry without the dot, as in Go */
    char relative[256];
    size_t hlen = strlen(host);
    const char *in_hosts = host;
    if (hlen > 1 && hlen < sizeof relative && host[hlen - 1] == '.') {
        memcpy(relative, host, hlen - 1);
        relative[hlen - 1] = 0;
        in_hosts = relative;
    }
    for (int fam = AF_INET; fam != 0; fam = fam == AF_INET ? AF_INET6 : 0) {
        struct hostent *he = NULL;
        if ((family != AF_UNSPEC && family != fam) || ares_gethostbyname_file(ch, in_hosts, fam, &he) != ARES_SUCCESS)
            continue;
        for (char **a = he->h_addr_list; *a; a++) {
            struct sockaddr_storage ss = {0};
            if (fam == AF_INET) {
                struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
                sin->sin_family = AF_INET;
                memcpy(&sin->sin_addr, *a, sizeof sin->sin_addr);
            } else {
                struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
                sin6->sin6_family = AF_INET6;
                memcpy(&sin6->sin6_addr, *a, sizeof sin6->sin6_addr);
            }
            add_addr(out, (struct sockaddr *)&ss, family, port);
        }
        ares_free_hostent(he);
    }
    if (out->n > before) {
        ares_destroy(ch);
        hoare_fd_close(lk.epfd);
        return 0;
    }
    /* One call per family, so that each family's answer counts on its own (see FAMILY_GRACE). */
    if (family != AF_INET6) lk.q[lk.nq++].family = AF_INET;
    if (family != AF_INET) lk.q[lk.nq++].family = AF_INET6;
    lk.pending = lk.nq;
    for (int i = 0; i < lk.nq; i++) {
        lk.q[i].lk = &lk;
        struct ares_addrinfo_hints hints = {.ai_family = lk.q[i].family, .ai_socktype = SOCK_STREAM};
        ares_getaddrinfo(ch, host, NULL, &hints, addrinfo_done, &lk.q[i]);
    }
    int err = run_lookup(ch, &lk, deadline);
    ares_destroy(ch); /* closes its sockets (removing them from epfd); pending callbacks run now */
    hoare_fd_close(lk.epfd);
    return lookup_result(&lk, err, out);
}
#endif /* HOARE_HAVE_CARES */

int hoare__resolve(const char *host, int family, int port, int64_t deadline,
                   struct hoare__addr_list *out) {
    if (!host || !host[0]) return -EINVAL;
#ifdef HOARE_HAVE_CARES
    const char *mode = getenv("HOARE_RESOLVER");
    bool cares = mode && strcmp(mode, "cares") == 0;
    bool system = mode && strcmp(mode, "system") == 0;
    if (cares || (!system && nsswitch_files_dns_only()))
        return resolve_ares(host, family, port, deadline, out);
#else
    (void)deadline;
#endif
    return resolve_system(host, family, port, out);
}

const char *hoare_net_resolver(void) {
#ifdef HOARE_HAVE_CARES
    const char *mode = getenv("HOARE_RESOLVER");
    if (mode && strcmp(mode, "cares") == 0) return "cares";
    if (mode && strcmp(mode, "system") == 0) return "system";
    return nsswitch_files_dns_only() ? "cares" : "system";
#else
    return "system";
#endif
}
