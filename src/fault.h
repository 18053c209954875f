/*
 * fault.h - fault injection for tests (internal). Every allocation and every system call that
 * acquires a resource in the runtime (malloc, calloc, realloc, aligned_alloc, mmap, madvise,
 * epoll_create1, epoll_ctl, eventfd, pthread_create) is written hoare__name(...) instead of name(...).
 *
 * Normal builds: the macros below are the plain calls (zero cost).
 * Builds with -DHOARE_FAULT_INJECTION=ON (fault.c): each wrapped call first counts itself; the call
 * with the number set by hoare__fault_set() (or env HOARE_FAULT_AT=N, read at the first call) fails
 * as the real call fails when the system is out of the resource: NULL or MAP_FAILED or -1 with errno
 * ENOMEM (allocations, mmap, madvise, epoll_ctl), EMFILE (epoll_create1, eventfd), or EAGAIN
 * returned (pthread_create). One call fails, the later ones succeed again ("the fault is gone").
 */
#ifndef HOARE_FAULT_H
#define HOARE_FAULT_H

#ifdef HOARE_FAULT_INJECTION
#include <errno.h>
#include <stdint.h>
#include <sys/mman.h>

#define HOARE_FAULT_HIDDEN __attribute__((visibility("hidden")))
/* Count one call; true when this one must fail. */
HOARE_FAULT_HIDDEN int hoare__fault_hit(void);
/* Test API (tests include this header): fail the n-th wrapped call counted from now (n >= 1), or
 * none (n = 0); resets the count. */
HOARE_FAULT_HIDDEN void hoare__fault_set(uint64_t n);
/* Wrapped calls counted since the last hoare__fault_set (or the start). */
HOARE_FAULT_HIDDEN uint64_t hoare__fault_calls(void);
/* Whether the set call has failed already. */
HOARE_FAULT_HIDDEN int hoare__fault_fired(void);

#define HOARE__FAIL_OR(call, failed, err) (hoare__fault_hit() ? (errno = (err), (failed)) : (call))
#define hoare__malloc(n) HOARE__FAIL_OR(malloc(n), NULL, ENOMEM)
#define hoare__calloc(n, s) HOARE__FAIL_OR(calloc(n, s), NULL, ENOMEM)
#define hoare__realloc(p, n) HOARE__FAIL_OR(realloc(p, n), NULL, ENOMEM)
#define hoare__aligned_alloc(a, n) HOARE__FAIL_OR(aligned_alloc(a, n), NULL, ENOMEM)
#define hoare__mmap(a, n, p, f, fd, o) HOARE__FAIL_OR(mmap(a, n, p, f, fd, o), MAP_FAILED, ENOMEM)
#define hoare__madvise(a, n, adv) HOARE__FAIL_OR(madvise(a, n, adv), -1, ENOMEM)
#define hoare__epoll_create1(f) HOARE__FAIL_OR(epoll_create1(f), -1, EMFILE)
#define hoare__epoll_ctl(e, op, fd, ev) HOARE__FAIL_OR(epoll_ctl(e, op, fd, ev), -1, ENOMEM)
#define hoare__eventfd(v, f) HOARE__FAIL_OR(eventfd(v, f), -1, EMFILE)
#define hoare__pthread_create(t, a, fn, arg) (hoare__fault_hit() ? EAGAIN : pthread_create(t, a, fn, arg))
#else
#define hoare__malloc(n) malloc(n)
#define hoare__calloc(n, s) calloc(n, s)
#define hoare__realloc(p, n) realloc(p, n)
#define hoare__aligned_alloc(a, n) aligned_alloc(a, n)
#define hoare__mmap(a, n, p, f, fd, o) mmap(a, n, p, f, fd, o)
#define hoare__madvise(a, n, adv) madvise(a, n, adv)
#define hoare__epoll_create1(f) epoll_create1(f)
#define hoare__epoll_ctl(e, op, fd, ev) epoll_ctl(e, op, fd, ev)
#define hoare__eventfd(v, f) eventfd(v, f)
#define hoare__pthread_create(t, a, fn, arg) pthread_create(t, a, fn, arg)
#endif

#endif
