/*
 * test_chan_basic.c - channel API contract: make/retain/release, len/cap, send/recv/try forms,
 * close (Go's test/closedchan.go and test/chancap.go), nil channels, elem_size 0, bad input, the
 * typed macros, wait reasons in dumps, plain threads, and the fatal error for over-release.
 */
#include "test.h"

#include <pthread.h>
#include <stdint.h>

#include "chan_test_util.h"

/* ---------------------------------------------------------------- make, len, cap, references */

static void test_make_errors(void) {
    errno = 0;
    CHECK(hoare_chan_make(((size_t)1 << 16) + 1, 1) == NULL);
    CHECK_EQ(errno, EINVAL);
    errno = 0;
    CHECK(hoare_chan_make(8, SIZE_MAX / 4) == NULL); /* elem_size * cap overflows */
    CHECK_EQ(errno, EINVAL);
    errno = 0;
    CHECK(hoare_chan_make(1, SIZE_MAX) == NULL);
    CHECK_EQ(errno, EINVAL);
    if (!TEST_SANITIZED) { /* sanitizer allocators abort on absurd sizes instead of failing */
        errno = 0;
        CHECK(hoare_chan_make(8, (size_t)1 << 50) == NULL);
        CHECK_EQ(errno, ENOMEM);
    }
    /* Limits that are fine. */
    hoare_chan *c = make_chan((size_t)1 << 16, 2);
    CHECK_EQ(hoare_cap(c), 2);
    hoare_chan_release(c);
    c = make_chan(0, (size_t)1 << 40); /* no buffer memory for elem_size 0 */
    CHECK_EQ(hoare_cap(c), (size_t)1 << 40);
    hoare_chan_release(c);
}

/* Go's test/chancap.go */
static void test_len_cap(void) {
    hoare_chan *c = make_chan(sizeof(int), 10);
    CHECK_EQ(hoare_len(c), 0);
    CHECK_EQ(hoare_cap(c), 10);
    for (int i = 0; i < 3; i++) CHECK_EQ(hoare_send(c, &i), 0);
    CHECK_EQ(hoare_len(c), 3);
    CHECK_EQ(hoare_cap(c), 10);
    hoare_chan_release(c);
    c = make_chan(sizeof(int), 0);
    CHECK_EQ(hoare_len(c), 0);
    CHECK_EQ(hoare_cap(c), 0);
    hoare_chan_release(c);
    CHECK_EQ(hoare_len(NULL), 0);
    CHECK_EQ(hoare_cap(NULL), 0);
}

static int freed_count;
static void count_free(void *arg) {
    CHECK(arg == &freed_count);
    __atomic_fetch_add(&freed_count, 1, __ATOMIC_SEQ_CST);
}

static void test_refcount(void) {
    CHECK(hoare_chan_retain(NULL) == NULL);
    hoare_chan_release(NULL); /* no-op */
    hoare_chan *c = make_chan(sizeof(int), 1);
    hoare__chan_on_free(c, count_free, &freed_count);
    freed_count = 0;
    CHECK(hoare_chan_retain(c) == c);
    CHECK(hoare_chan_retain(c) == c);
    hoare_chan_release(c);
    hoare_chan_release(c);
    CHECK_EQ(freed_count, 0);
    int v = 5;
    CHECK_EQ(hoare_send(c, &v), 0); /* still usable */
    hoare_chan_release(c);
    CHECK_EQ(freed_count, 1);
}

/* A blocked waiter keeps the channel alive after every user reference is gone (Go's GC would). */
typedef struct {
    hoare_chan *abandoned, *wake;
} abandon_args;
static void select_on_abandoned(void *p) {
    abandon_args *a = p;
    int x = 0;
    hoare_case cs[] = {HOARE_RECV(a->abandoned, &x), HOARE_RECV(a->wake, &x)};
    int i = hoare_select(cs, 2);
    CHECK_EQ(i, 1);
    CHECK_EQ(x, 77);
    /* Our waiter record held the last reference; select dropped it on the way out. */
    CHECK_EQ(__atomic_load_n(&freed_count, __ATOMIC_SEQ_CST), 1);
}
static void test_waiter_keeps_channel(void) {
    abandon_args a = {make_chan(sizeof(int), 0), make_chan(sizeof(int), 0)};
    freed_count = 0;
    hoare__chan_on_free(a.abandoned, count_free, &freed_count);
    hoare_chan *abandoned = a.abandoned;
    spawn(select_on_abandoned, &a);
    wait_queued(abandoned, HOARE_CASE_RECV, 1);
    hoare_chan_release(abandoned);
    CHECK_EQ(__atomic_load_n(&freed_count, __ATOMIC_SEQ_CST), 0); /* the waiter keeps it */
    int v = 77;
    CHECK_EQ(hoare_send(a.wake, &v), 0);
    join(1);
    CHECK_EQ(__atomic_load_n(&freed_count, __ATOMIC_SEQ_CST), 1);
    hoare_chan_release(a.wake);
}

/* ---------------------------------------------------------------- bad input */

static void test_bad_input(void) {
    hoare_chan *c = make_chan(sizeof(int), 1);
    CHECK_EQ(hoare_send(c, NULL), EINVAL);
    CHECK_EQ(hoare_trysend(c, NULL), EINVAL);
    CHECK_EQ(hoare_len(c), 0);
    CHECK_EQ(hoare_close(NULL), EINVAL);
    int v = 1;
    CHECK_EQ(hoare_trysend(NULL, &v), EAGAIN);
    CHECK_EQ(hoare_tryrecv(NULL, &v), EAGAIN);
    CHECK_EQ(hoare_close(c), 0);
    CHECK_EQ(hoare_close(c), EPIPE);
    CHECK_EQ(hoare_send(c, &v), EPIPE);
    CHECK_EQ(hoare_trysend(c, &v), EPIPE);
    hoare_chan_release(c);
}

/* ---------------------------------------------------------------- close (test/closedchan.go) */

/* The three ways closedchan.go reaches a channel: direct, one-case select, select with a dummy. */
enum via { VIA_DIRECT, VIA_SELECT, VIA_SELECT2, VIA_COUNT };
static hoare_chan *dummy_chan;

static int op_recv(enum via via, hoare_chan *c, int *x) {
    if (via == VIA_DIRECT) return hoare_recv(c, x);
    hoare_case cs[] = {HOARE_RECV(dummy_chan, NULL), HOARE_RECV(c, x)};
    int i = via == VIA_SELECT ? hoare_select(cs + 1, 1) + 1 : hoare_select(cs, 2);
    CHECK_EQ(i, 1);
    return cs[1].err;
}
/* EAGAIN: not selected (Go's default case). */
static int op_nbrecv(enum via via, hoare_chan *c, int *x) {
    if (via == VIA_DIRECT) return hoare_tryrecv(c, x);
    hoare_case cs[] = {HOARE_RECV(dummy_chan, NULL), HOARE_RECV(c, x)};
    int i = via == VIA_SELECT ? hoare_select_try(cs + 1, 1) + 1 : hoare_select_try(cs, 2);
    if (i <= 0) {
        CHECK_EQ(errno, EAGAIN);
        return EAGAIN;
    }
    return cs[1].err;
}
static int op_send(enum via via, hoare_chan *c, int x) {
    if (via == VIA_DIRECT) return hoare_send(c, &x);
    hoare_case cs[] = {HOARE_RECV(dummy_chan, NULL), HOARE_SEND(c, &x)};
    int i = via == VIA_SELECT ? hoare_select(cs + 1, 1) + 1 : hoare_select(cs, 2);
    CHECK_EQ(i, 1);
    return cs[1].err;
}
static int op_nbsend(enum via via, hoare_chan *c, int x) {
    if (via == VIA_DIRECT) return hoare_trysend(c, &x);
    hoare_case cs[] = {HOARE_SEND(c, &x), HOARE_RECV(dummy_chan, NULL)};
    int i = via == VIA_SELECT ? hoare_select_try(cs, 1) : hoare_select_try(cs, 2);
    if (i < 0) return EAGAIN;
    CHECK_EQ(i, 0);
    return cs[0].err;
}

static void closed_drained(enum via via, hoare_chan *c) {
    for (int i = 0; i < 3; i++) {
        int x = 99;
        CHECK_EQ(op_recv(via, c, &x), EPIPE);
        CHECK_EQ(x, 0);
        x = 99;
        CHECK_EQ(op_nbrecv(via, c, &x), EPIPE); /* selected, not "would block" */
        CHECK_EQ(x, 0);
    }
    CHECK_EQ(op_nbsend(via, c, 1), EPIPE);
    int x = 99;
    CHECK_EQ(op_recv(via, c, &x), EPIPE); /* the value was discarded */
    CHECK_EQ(x, 0);
    CHECK_EQ(op_send(via, c, 2), EPIPE);
    CHECK_EQ(op_recv(via, c, &x), EPIPE);
    CHECK_EQ(x, 0);
}

static void test_closedchan(void) {
    dummy_chan = make_chan(1, 0);
    for (int via = 0; via < VIA_COUNT; via++) {
        hoare_chan *c = make_chan(sizeof(int), 0);
        CHECK_EQ(hoare_close(c), 0);
        closed_drained(via, c);
        hoare_chan_release(c);
        /* Buffered: the last value is still delivered after close, by each kind of receive. */
        for (int how = 0; how < 2; how++) {
            c = make_chan(sizeof(int), 2);
            int one = 1;
            CHECK_EQ(hoare_send(c, &one), 0);
            CHECK_EQ(hoare_close(c), 0);
            CHECK_EQ(hoare_len(c), 1);
            int x = 0;
            CHECK_EQ(how == 0 ? op_recv(via, c, &x) : op_nbrecv(via, c, &x), 0);
            CHECK_EQ(x, 1);
            closed_drained(via, c);
            hoare_chan_release(c);
        }
    }
    hoare_chan_release(dummy_chan);
}

/* Close wakes every blocked receiver (zero-filled, EPIPE) and every blocked sender (EPIPE). */
typedef struct {
    hoare_chan *c, *results;
    int dir;
} blocked_args;
static void blocked_op(void *p) {
    blocked_args *a = p;
    int64_t x = 12345;
    int err = a->dir == HOARE_CASE_RECV ? hoare_recv(a->c, &x) : hoare_send(a->c, &x);
    int64_t r = err == EPIPE && (a->dir == HOARE_CASE_SEND || x == 0) ? 1 : -1;
    CHECK_EQ(hoare_send(a->results, &r), 0);
}
static void test_close_wakes_waiters(void) {
    enum { N = 10 };
    for (int dir = HOARE_CASE_RECV; dir <= HOARE_CASE_SEND; dir++) {
        for (size_t cap = 0; cap <= 2; cap += 2) {
            hoare_chan *c = make_chan(sizeof(int64_t), cap);
            hoare_chan *results = make_chan(sizeof(int64_t), N);
            int64_t fill = 7;
            if (dir == HOARE_CASE_SEND)
                for (size_t i = 0; i < cap; i++) CHECK_EQ(hoare_send(c, &fill), 0);
            blocked_args a = {c, results, dir};
            for (int i = 0; i < N; i++) spawn(blocked_op, &a);
            wait_queued(c, dir, N);
            CHECK_EQ(hoare_close(c), 0);
            for (int i = 0; i < N; i++) {
                int64_t r = 0;
                CHECK_EQ(hoare_recv(results, &r), 0);
                CHECK_EQ(r, 1);
            }
            join(N);
            /* Buffered values sent before the close are still there; nothing the senders tried. */
            CHECK_EQ(hoare_len(c), dir == HOARE_CASE_SEND ? cap : 0);
            for (size_t i = 0; dir == HOARE_CASE_SEND && i < cap; i++) {
                int64_t x = 0;
                CHECK_EQ(hoare_recv(c, &x), 0);
                CHECK_EQ(x, 7);
            }
            int64_t x = 1;
            CHECK_EQ(hoare_recv(c, &x), EPIPE);
            CHECK_EQ(x, 0);
            hoare_chan_release(c);
            hoare_chan_release(results);
        }
    }
}

/* A close with more waiters than one of its batches (it queues them as it walks, holding the
 * channel lock): plain receivers and selects that also wait on a second channel, which a poker
 * sends on while the close runs. Every waiter ends exactly once, by the close or by the poke, and
 * one that comes straight back to the closed channel gets EPIPE (it waits for the close to end). */
enum { MANY_WAITERS = 1000 };
typedef struct {
    hoare_chan *c, *poke;
    _Atomic int outcome[MANY_WAITERS]; /* 1 closed, 2 poked, more: woken twice */
    _Atomic int poked;
} many_state;
typedef struct {
    many_state *st;
    int id;
} many_args;

static void many_waiter(void *p) {
    many_args *a = p;
    many_state *st = a->st;
    int outcome = 1;
    if (a->id % 2 == 0) {
        CHECK_EQ(hoare_recv(st->c, NULL), EPIPE);
    } else {
        hoare_case cs[] = {HOARE_RECV(st->c, NULL), HOARE_RECV(st->poke, NULL)};
        bool by_poke = hoare_select(cs, 2) == 1;
        CHECK_EQ(by_poke ? cs[1].err : cs[0].err, by_poke ? 0 : EPIPE);
        outcome = by_poke ? 2 : 1;
    }
    atomic_fetch_add(&st->outcome[a->id], outcome);
    CHECK_EQ(hoare_recv(st->c, NULL), EPIPE);
}

/* pokes until the close has returned (it was poking before the close began) */
static _Atomic bool many_closed;
static void many_poker(void *p) {
    many_state *st = p;
    while (!atomic_load(&many_closed))
        if (hoare_trysend(st->poke, NULL) == 0) atomic_fetch_add(&st->poked, 1);
        else hoare_yield();
}

static void test_close_wakes_many_waiters(void) {
    many_state *st = calloc(1, sizeof *st);
    REQUIRE(st != NULL);
    st->c = make_chan(0, 0);
    st->poke = make_chan(0, 0);
    many_args *a = calloc(MANY_WAITERS, sizeof *a);
    REQUIRE(a != NULL);
    for (int i = 0; i < MANY_WAITERS; i++) {
        a[i] = (many_args){st, i};
        spawn(many_waiter, &a[i]);
    }
    wait_queued(st->c, HOARE_CASE_RECV, MANY_WAITERS);
    atomic_store(&many_closed, false);
    spawn(many_poker, st);
    while (atomic_load(&st->poked) == 0) hoare_sleep(10 * HOARE_US);
    CHECK_EQ(hoare_close(st->c), 0);
    atomic_store(&many_closed, true);
    join(MANY_WAITERS + 1);
    int closed = 0, poked = 0;
    for (int i = 0; i < MANY_WAITERS; i++) {
        int o = atomic_load(&st->outcome[i]);
        CHECK(o == 1 || (o == 2 && i % 2 == 1));
        closed += o == 1;
        poked += o == 2;
    }
    CHECK_EQ(closed + poked, MANY_WAITERS);
    CHECK_EQ(poked, atomic_load(&st->poked));
    hoare_chan_release(st->c);
    hoare_chan_release(st->poke);
    free(a);
    free(st);
}

/* ---------------------------------------------------------------- FIFO with blocked senders */

typedef struct {
    hoare_chan *c;
    int value;
} send_args;
static void send_one(void *p) {
    send_args *a = p;
    CHECK_EQ(hoare_send(a->c, &a->value), 0);
}
/* A full buffer with queued senders: receivers get buffer order, then the senders' in queue order
 * (the receiver moves the first sender's value into the freed slot). */
static void test_full_buffer_fifo(void) {
    hoare_chan *c = make_chan(sizeof(int), 3);
    for (int i = 0; i < 3; i++) CHECK_EQ(hoare_send(c, &i), 0);
    send_args a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (send_args){c, 3 + i};
        spawn(send_one, &a[i]);
        wait_queued(c, HOARE_CASE_SEND, (size_t)i + 1);
    }
    CHECK_EQ(hoare_trysend(c, &(int){100}), EAGAIN);
    for (int i = 0; i < 7; i++) {
        int x = -1;
        CHECK_EQ(hoare_recv(c, &x), 0);
        CHECK_EQ(x, i);
        CHECK_EQ(hoare_len(c), i < 4 ? 3 : (size_t)(6 - i));
    }
    CHECK_EQ(hoare_tryrecv(c, NULL), EAGAIN);
    join(4);
    hoare_chan_release(c);
}

/* Unbuffered: blocked receivers are served in arrival order. */
static void recv_into(void *p) {
    send_args *a = p;
    CHECK_EQ(hoare_recv(a->c, &a->value), 0);
}
static void test_unbuffered_receiver_fifo(void) {
    hoare_chan *c = make_chan(sizeof(int), 0);
    send_args a[5];
    for (int i = 0; i < 5; i++) {
        a[i] = (send_args){c, -1};
        spawn(recv_into, &a[i]);
        wait_queued(c, HOARE_CASE_RECV, (size_t)i + 1);
    }
    for (int i = 0; i < 5; i++) CHECK_EQ(hoare_send(c, &i), 0);
    /* A send returns after the copy into the receiver's slot: the values are already there. */
    for (int i = 0; i < 5; i++) CHECK_EQ(__atomic_load_n(&a[i].value, __ATOMIC_SEQ_CST), i);
    join(5);
    hoare_chan_release(c);
}

/* ---------------------------------------------------------------- elem_size 0, discard, big */

static void test_signal_channels(void) {
    hoare_chan *c = make_chan(0, 3);
    for (int i = 0; i < 3; i++) CHECK_EQ(hoare_trysend(c, NULL), 0);
    CHECK_EQ(hoare_trysend(c, NULL), EAGAIN);
    CHECK_EQ(hoare_len(c), 3);
    char junk = 'j';
    CHECK_EQ(hoare_recv(c, &junk), 0); /* nothing is written for elem_size 0 */
    CHECK_EQ(junk, 'j');
    CHECK_EQ(hoare_tryrecv(c, NULL), 0);
    CHECK_EQ(hoare_close(c), 0);
    CHECK_EQ(hoare_recv(c, NULL), 0);
    CHECK_EQ(hoare_recv(c, NULL), EPIPE);
    hoare_chan_release(c);
}

static void test_discard_and_large_elements(void) {
    hoare_chan *c = make_chan(sizeof(int), 2);
    int v = 3;
    CHECK_EQ(hoare_send(c, &v), 0);
    v = 4;
    CHECK_EQ(hoare_send(c, &v), 0);
    CHECK_EQ(hoare_recv(c, NULL), 0); /* discards 3 */
    int x = 0;
    CHECK_EQ(hoare_recv(c, &x), 0);
    CHECK_EQ(x, 4);
    hoare_chan_release(c);

    enum { BIG = 4096 };
    static unsigned char out[BIG], in[BIG];
    for (int i = 0; i < BIG; i++) out[i] = (unsigned char)(i * 7);
    c = make_chan(BIG, 1);
    CHECK_EQ(hoare_send(c, out), 0);
    CHECK_EQ(hoare_recv(c, in), 0);
    CHECK(memcmp(in, out, BIG) == 0);
    hoare_chan_release(c);
}

/* ---------------------------------------------------------------- typed macros */

typedef struct {
    int a;
    double b;
} pair;

static void test_typed(void) {
    hoare_chan *c = make_chan(sizeof(int), 2);
    CHECK_EQ(HOARE_SEND_V(c, 42), 0);
    CHECK_EQ(HOARE_SEND_V(c, (short)1), EINVAL); /* 2 bytes on a 4-byte channel */
    CHECK_EQ(HOARE_SEND_V(c, 43LL), EINVAL);
    int x = 0;
    CHECK_EQ(HOARE_RECV_V(c, &x), 0);
    CHECK_EQ(x, 42);
    long long wrong = 0;
    CHECK_EQ(HOARE_RECV_V(c, &wrong), EINVAL);
    CHECK_EQ(hoare_len(c), 0);
    hoare_chan_release(c);

    c = make_chan(sizeof(pair), 1);
    pair sent = {3, 1.5}, got = {0, 0};
    CHECK_EQ(HOARE_SEND_V(c, sent), 0);
    CHECK_EQ(HOARE_RECV_V(c, &got), 0);
    CHECK(got.a == 3 && got.b == 1.5);
    CHECK_EQ(HOARE_SEND_V(c, 1), EINVAL);
    hoare_chan_release(c);

    HOARE_CHAN(pair) pc = HOARE_CHAN_MAKE(pair, 4);
    REQUIRE(pc.raw != NULL);
    CHECK_EQ(hoare_cap(pc.raw), 4);
    pair p = {7, 2.5};
    CHECK_EQ(HOARE_CHAN_SEND(pc, p), 0);
    CHECK_EQ(HOARE_CHAN_SEND(pc, ((pair){8, 3.5})), 0);
    pair q = {0, 0};
    CHECK_EQ(HOARE_CHAN_RECV(pc, &q), 0);
    CHECK(q.a == 7 && q.b == 2.5);
    CHECK_EQ(HOARE_CHAN_RECV(pc, &q), 0);
    CHECK(q.a == 8 && q.b == 3.5);
    hoare_close(pc.raw);
    CHECK_EQ(HOARE_CHAN_RECV(pc, &q), EPIPE);
    CHECK(q.a == 0 && q.b == 0);
    hoare_chan_release(pc.raw);

    HOARE_CHAN(int) ic = HOARE_CHAN_MAKE(int, 1);
    CHECK_EQ(HOARE_CHAN_SEND(ic, 'A'), 0); /* converted to int, as an assignment would */
    int y = 0;
    CHECK_EQ(HOARE_CHAN_RECV(ic, &y), 0);
    CHECK_EQ(y, 'A');
    hoare_chan_release(ic.raw);
}

/* ---------------------------------------------------------------- plain threads */

typedef struct {
    hoare_chan *in, *out;
    int n;
} relay_args;
static void *thread_relay(void *p) {
    relay_args a = *(relay_args *)p; /* the caller's copy is gone once our last send is through */
    for (int i = 0; i < a.n; i++) {
        int x;
        CHECK_EQ(hoare_recv(a.in, &x), 0);
        x++;
        CHECK_EQ(hoare_send(a.out, &x), 0);
    }
    return NULL;
}
static void goroutine_relay(void *p) {
    thread_relay(p);
}
/* main (a plain thread) -> pthread -> goroutine -> main, unbuffered all the way. */
static void test_plain_threads(void) {
    int n = TEST_SCALE(2000);
    hoare_chan *a = make_chan(sizeof(int), 0), *b = make_chan(sizeof(int), 0),
               *c = make_chan(sizeof(int), 0);
    relay_args ta = {a, b, n}, ga = {b, c, n};
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, thread_relay, &ta) == 0);
    spawn(goroutine_relay, &ga);
    for (int i = 0; i < n; i++) {
        CHECK_EQ(hoare_send(a, &i), 0);
        int x = -1;
        CHECK_EQ(hoare_recv(c, &x), 0);
        CHECK_EQ(x, i + 2);
    }
    pthread_join(th, NULL);
    join(1);
    hoare_chan_release(a);
    hoare_chan_release(b);
    hoare_chan_release(c);
}

/* ---------------------------------------------------------------- nil channels, wait reasons */

static void nil_send(void *p) {
    (void)p;
    hoare_send(NULL, &(int){1});
    CHECK(!"send on a nil channel returned");
}
static void nil_recv(void *p) {
    (void)p;
    hoare_recv(NULL, NULL);
    CHECK(!"receive on a nil channel returned");
}
static void nil_select(void *p) {
    (void)p;
    hoare_case cs[] = {HOARE_RECV(NULL, NULL), HOARE_SEND(NULL, &(int){1})};
    hoare_select(cs, 2);
    CHECK(!"select on nil channels returned");
}
static void empty_select(void *p) {
    (void)p;
    hoare_select(NULL, 0);
    CHECK(!"empty select returned");
}
static void parked_recv(void *p) {
    CHECK_EQ(hoare_recv(p, NULL), EPIPE);
}
static void parked_send(void *p) {
    CHECK_EQ(hoare_send(p, &(int){1}), EPIPE);
}
static void parked_select(void *p) {
    hoare_case cs[] = {HOARE_RECV(p, NULL), HOARE_RECV(NULL, NULL)};
    CHECK_EQ(hoare_select(cs, 2), 0);
}

/* "[reason," or "[reason]" appears in the dump. */
static bool dump_has(const char *dump, const char *reason) {
    size_t len = strlen(reason);
    for (const char *p = dump; (p = strchr(p, '[')) != NULL; p++)
        if (strncmp(p + 1, reason, len) == 0 && (p[1 + len] == ',' || p[1 + len] == ']'))
            return true;
    return false;
}

static void read_dump(char *buf, size_t cap) {
    FILE *f = tmpfile();
    REQUIRE(f != NULL);
    hoare_dump(fileno(f));
    rewind(f);
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = 0;
    fclose(f);
}

static void test_nil_channels_and_wait_reasons(void) {
    /* Blocked forever: they stay parked until the process ends, as in Go. */
    REQUIRE(hoare_go(nil_send, NULL) == 0);
    REQUIRE(hoare_go(nil_recv, NULL) == 0);
    REQUIRE(hoare_go(nil_select, NULL) == 0);
    REQUIRE(hoare_go(empty_select, NULL) == 0);
    hoare_chan *r = make_chan(sizeof(int), 0), *s = make_chan(sizeof(int), 0),
               *sel = make_chan(sizeof(int), 0);
    spawn(parked_recv, r);
    spawn(parked_send, s);
    spawn(parked_select, sel);
    wait_queued(r, HOARE_CASE_RECV, 1);
    wait_queued(s, HOARE_CASE_SEND, 1);
    wait_queued(sel, HOARE_CASE_RECV, 1);
    static const char *const reasons[] = {"chan send (nil chan)", "chan receive (nil chan)",
                                          "select", "select (no cases)", "chan send",
                                          "chan receive"};
    static char dump[1 << 16];
    /* The nil-channel goroutines have no queue to watch: poll the dump (bounded by the watchdog). */
    bool all = false;
    while (!all) {
        read_dump(dump, sizeof dump);
        all = true;
        for (size_t i = 0; i < sizeof reasons / sizeof *reasons; i++)
            all = all && dump_has(dump, reasons[i]);
        if (!all) hoare_sleep(HOARE_MS);
    }
    for (size_t i = 0; i < sizeof reasons / sizeof *reasons; i++) CHECK(dump_has(dump, reasons[i]));
    /* The nil cases of a select never proceed, however long we wait. */
    hoare_sleep(5 * HOARE_MS);
    int x = 1;
    CHECK_EQ(hoare_trysend(sel, &x), 0);
    CHECK_EQ(hoare_close(r), 0);
    CHECK_EQ(hoare_close(s), 0);
    join(3);
    hoare_chan_release(r);
    hoare_chan_release(s);
    hoare_chan_release(sel);
}

/* A plain thread blocked on a nil channel stays blocked too. */
static void *thread_nil_recv(void *p) {
    __atomic_store_n((int *)p, 1, __ATOMIC_SEQ_CST);
    hoare_recv(NULL, NULL);
    __atomic_store_n((int *)p, 2, __ATOMIC_SEQ_CST);
    return NULL;
}
static void test_nil_channel_thread(void) {
    static int state;
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, thread_nil_recv, &state) == 0);
    pthread_detach(th);
    while (__atomic_load_n(&state, __ATOMIC_SEQ_CST) == 0) hoare_sleep(HOARE_MS);
    hoare_sleep(20 * HOARE_MS);
    CHECK_EQ(__atomic_load_n(&state, __ATOMIC_SEQ_CST), 1);
}

/* ---------------------------------------------------------------- fatal over-release */

static void over_release_child(void) {
    hoare_chan *c = hoare_chan_make(sizeof(int), 1);
    hoare_chan_release(c);
    hoare_chan_release(c);
    fprintf(stderr, "second release returned\n");
    exit(0);
}

static void test_over_release_is_fatal(void) {
    static char out[1 << 14];
    int status = test_run_self("over-release", NULL, out, sizeof out);
    /* Our fatal error (exit 2) or, under ASan/TSan, the sanitizer's use-after-free report: the
     * misuse is caught either way; it must never go unnoticed. */
    CHECK(!(WIFEXITED(status) && WEXITSTATUS(status) == 0));
    if (TEST_SANITIZED) {
        CHECK(strstr(out, "fatal error: hoare_chan_release") != NULL ||
              strstr(out, "heap-use-after-free") != NULL);
    } else {
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 2);
        CHECK(strstr(out, "fatal error: hoare_chan_release") != NULL);
        CHECK(strstr(out, "released more times") != NULL);
    }
    if (!strstr(out, "fatal error") && !strstr(out, "heap-use-after-free"))
        fprintf(stderr, "child said: %s\n", out);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "over-release") == 0) over_release_child();
    test_begin(argv, 30);
    exited = make_chan(0, 64);
    test_make_errors();
    test_len_cap();
    test_refcount();
    test_waiter_keeps_channel();
    test_bad_input();
    test_closedchan();
    test_close_wakes_waiters();
    test_close_wakes_many_waiters();
    test_full_buffer_fifo();
    test_unbuffered_receiver_fifo();
    test_signal_channels();
    test_discard_and_large_elements();
    test_typed();
    test_plain_threads();
    test_nil_channels_and_wait_reasons();
    test_nil_channel_thread();
    test_over_release_is_fatal();
    hoare_chan_release(exited);
    TEST_MAIN_END();
}
