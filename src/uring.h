/*
 * uring.h - regular-file I/O through io_uring (uring.c), for fdio.c and the poller. Internal.
 */
#ifndef HOARE_URING_H
#define HOARE_URING_H

#include <sys/types.h>

#include "runtime.h"

/* Operations. READ/WRITE take a buffer and a length, READV/WRITEV an iovec array and its count. */
enum { HOARE_URING_READ, HOARE_URING_WRITE, HOARE_URING_READV, HOARE_URING_WRITEV };

/* Returned when the request cannot go through io_uring now (unavailable, a plain thread, too many
 * in flight, a kernel refusal): the caller does the blocking call instead. */
#define HOARE_URING_UNAVAILABLE ((ssize_t)INT64_MIN)

/* Run one request on fd at offset off (-1: the file position, updated as read(2) would), parking
 * the calling goroutine until it completes: the count, a negative errno value, or
 * HOARE_URING_UNAVAILABLE. */
HIDDEN ssize_t hoare__uring_rw(int op, int fd, const void *p, size_t n, int64_t off);

/* The poller, when the ring's eventfd fired: push the goroutines whose requests completed on
 * *list (linked by schedlink). */
HIDDEN void hoare__uring_reap(G **list);

/* Rings made so far, one per processor that sent a request to one (tests). */
HIDDEN int32_t hoare__uring_rings(void);

/* Goroutines parked on a request (they count as poller waiters: an idle thread must poll). */
HIDDEN int32_t hoare__uring_waiters(void);

#endif /* HOARE_URING_H */
