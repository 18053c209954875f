/*
 * chan_test_util.h - helpers shared by the channel and select tests: checked channel creation,
 * spawn/join of goroutines that report their end on a channel, and counting the waiter records
 * queued on a channel (to know a goroutine has committed to blocking, deterministically).
 */
#ifndef HOARE_CHAN_TEST_UTIL_H
#define HOARE_CHAN_TEST_UTIL_H

#include "test.h"

#include "chan.h"

static inline hoare_chan *make_chan(size_t elem_size, size_t cap) {
    hoare_chan *c = hoare_chan_make(elem_size, cap);
    REQUIRE(c != NULL);
    return c;
}

/* Goroutines started with spawn() report their end on `exited` (each test file makes it), and the
 * test joins them before reading results: no CHECK runs after its goroutine was joined. */
static hoare_chan *exited;
typedef struct {
    void (*fn)(void *);
    void *arg;
} spawn_rec;

static inline void spawned(void *p) {
    spawn_rec r = *(spawn_rec *)p;
    free(p);
    r.fn(r.arg);
    REQUIRE(hoare_send(exited, NULL) == 0);
}

static inline void spawn(void (*fn)(void *), void *arg) {
    spawn_rec *r = malloc(sizeof *r);
    REQUIRE(r != NULL);
    *r = (spawn_rec){fn, arg};
    REQUIRE(hoare_go(spawned, r) == 0);
}

static inline void join(int n) {
    for (int i = 0; i < n; i++) REQUIRE(hoare_recv(exited, NULL) == 0);
}

/* Waiter records queued on c (recv or send side), read under the channel lock. */
static inline size_t queued(hoare_chan *c, int dir) {
    hoare__lock(&c->lock);
    size_t n = 0;
    for (chan_waiter *w = dir == HOARE_CASE_RECV ? c->recvq.first : c->sendq.first; w; w = w->next)
        n++;
    hoare__unlock(&c->lock);
    return n;
}

/* Wait until n waiters are queued: they have committed to blocking (deterministic, not a guess). */
static inline void wait_queued(hoare_chan *c, int dir, size_t n) {
    while (queued(c, dir) < n) hoare_sleep(50 * HOARE_US);
}

#endif
