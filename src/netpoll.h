/*
 * netpoll.h - the poller's internal interface between the generic descriptor layer (fdio.c: the
 * descriptor table, waiter slots, deadlines, the public I/O calls) and one readiness backend
 * (poll_epoll.c; a kqueue or io_uring backend would replace that file alone). Internal.
 *
 * The backend calls hoare__netpoll_ready for each event; the generic layer never touches the
 * backend's handle except through the three calls below. runtime.h declares the scheduler's side
 * (hoare__netpoll, hoare__netpoll_break, hoare__netpoll_waiters, hoare__netpoll_init).
 */
#ifndef HOARE_NETPOLL_H
#define HOARE_NETPOLL_H

#include "runtime.h"

/* Readiness modes, also the bits of hoare_fd_wait's `events`. */
enum { NETPOLL_READ = 1, NETPOLL_WRITE = 2 };

/* Backend: register fd once for edge-triggered read and write readiness (and peer hang-up), tagging
 * its events with seq so that events of an earlier descriptor with the same number can be told
 * apart. 0 or an errno value. hoare__netpoll_init must have run. */
HIDDEN int hoare__netpoll_open(int fd, uint32_t seq);
/* Backend: deregister fd (before it is closed). */
HIDDEN void hoare__netpoll_close(int fd);
/* Backend: watch the io_uring completion eventfd efd (uring.c); when it fires, the poller calls
 * hoare__uring_reap. 0 or an errno value. */
HIDDEN int hoare__netpoll_open_uring(int efd);

/* Generic layer, called by the backend from hoare__netpoll: fd (tagged seq) became ready for modes
 * (NETPOLL_READ|NETPOLL_WRITE). Goroutines to wake are pushed on *list (linked by schedlink).
 * Events whose seq is not the descriptor's current one are dropped. */
HIDDEN void hoare__netpoll_ready(int fd, uint32_t seq, int modes, G **list);

/* Generic layer, for net.c: register a socket descriptor this library just created (non-blocking
 * already; stream_socket: SOCK_STREAM). 0 or an errno value. */
HIDDEN int hoare__fd_register_new(int fd, bool stream_socket);

#endif /* HOARE_NETPOLL_H */
