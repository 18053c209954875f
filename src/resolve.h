/*
 * resolve.h - host name resolution for net.c (resolve.c). Internal.
 */
#ifndef HOARE_RESOLVE_H
#define HOARE_RESOLVE_H

#include <sys/socket.h>

#include "runtime.h"

/* The most addresses of one host name kept (a dial tries them in turn). */
#define HOARE_MAX_ADDRS 8

struct hoare__addr_list {
    int n;
    struct sockaddr_storage addr[HOARE_MAX_ADDRS];
    socklen_t len[HOARE_MAX_ADDRS];
};

/* Resolve host name (not a numeric address, not empty) to its addresses of family (AF_INET,
 * AF_INET6 or AF_UNSPEC) with port (host order), appended to out, before deadline (hoare_now()
 * clock, 0: none). Parks the calling goroutine while the DNS servers are asked. 0 or a negative
 * errno value: -ENOENT (no such host, or no address of the family), -ETIMEDOUT (the deadline, or
 * every server stayed silent), -EAGAIN (servers failed or refused), -ENOMEM, -EINVAL. */
HIDDEN int hoare__resolve(const char *host, int family, int port, int64_t deadline,
                          struct hoare__addr_list *out);

#endif /* HOARE_RESOLVE_H */
