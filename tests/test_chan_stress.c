/*
 * test_chan_stress.c - channels under contention: exactly-once delivery with 8 producers and 8
 * consumers while a close races the senders (goroutines only, and goroutines mixed with plain
 * threads), concurrent retain/release, and try-send/close from runtime timer callbacks.
 */
#include "test.h"

#include <pthread.h>

#include "chan.h"

static hoare_chan *make_chan(size_t elem_size, size_t cap) {
    hoare_chan *c = hoare_chan_make(elem_size, cap);
    REQUIRE(c != NULL);
    return c;
}

/* ---------------------------------------------------------------- exactly once under close */

enum { PRODUCERS = 8, CONSUMERS = 8 };

typedef struct {
    hoare_chan *c, *done;
    int per_producer;
    int close_after;            /* a consumer closes c once this many values were received */
    _Atomic int received_total;
    _Atomic int closes;         /* close calls that returned 0 */
    _Atomic uint8_t *received;  /* per value: times received */
    _Atomic uint8_t *delivered; /* per value: 1 if its send returned 0 */
    _Atomic int epipe_sends;
} eo_state;

typedef struct {
    eo_state *st;
    int id;
} eo_worker;

static void eo_produce(eo_worker *w) {
    eo_state *st = w->st;
    for (int i = 0; i < st->per_producer; i++) {
        int v = w->id * st->per_producer + i;
        int err = hoare_send(st->c, &v);
        if (err == 0) {
            atomic_store(&st->delivered[v], 1);
            continue;
        }
        CHECK_EQ(err, EPIPE);
        atomic_fetch_add(&st->epipe_sends, 1);
        /* Closed stays closed: every later send fails too. */
        CHECK_EQ(hoare_trysend(st->c, &v), EPIPE);
        break;
    }
}

static void eo_consume(eo_worker *w) {
    eo_state *st = w->st;
    int v = -1;
    int err;
    while ((err = hoare_recv(st->c, &v)) == 0) {
        CHECK(v >= 0 && v < PRODUCERS * st->per_producer);
        if (v < 0 || v >= PRODUCERS * st->per_producer) continue;
        atomic_fetch_add(&st->received[v], 1);
        if (atomic_fetch_add(&st->received_total, 1) + 1 == st->close_after &&
            hoare_close(st->c) == 0)
            atomic_fetch_add(&st->closes, 1);
    }
    CHECK_EQ(err, EPIPE);
    CHECK_EQ(v, 0); /* zero-filled on EPIPE */
}

static void eo_goroutine_producer(void *p) {
    eo_produce(p);
    REQUIRE(hoare_send(((eo_worker *)p)->st->done, NULL) == 0);
}
static void eo_goroutine_consumer(void *p) {
    eo_consume(p);
    REQUIRE(hoare_send(((eo_worker *)p)->st->done, NULL) == 0);
}
static void *eo_thread_producer(void *p) {
    eo_produce(p);
    return NULL;
}
static void *eo_thread_consumer(void *p) {
    eo_consume(p);
    return NULL;
}

/* Odd-numbered workers are plain threads when mixed. */
static void exactly_once(size_t cap, bool mixed, int per_producer) {
    int total = PRODUCERS * per_producer;
    eo_state st = {.c = make_chan(sizeof(int), cap), .done = make_chan(0, PRODUCERS + CONSUMERS),
                   .per_producer = per_producer, .close_after = total / 2};
    st.received = calloc((size_t)total, 1);
    st.delivered = calloc((size_t)total, 1);
    REQUIRE(st.received && st.delivered);
    eo_worker prod[PRODUCERS], cons[CONSUMERS];
    pthread_t threads[PRODUCERS + CONSUMERS];
    int nthreads = 0, ngoroutines = 0;
    for (int i = 0; i < CONSUMERS; i++) {
        cons[i] = (eo_worker){&st, i};
        if (mixed && i % 2) {
            REQUIRE(pthread_create(&threads[nthreads++], NULL, eo_thread_consumer, &cons[i]) == 0);
        } else {
            REQUIRE(hoare_go(eo_goroutine_consumer, &cons[i]) == 0);
            ngoroutines++;
        }
    }
    for (int i = 0; i < PRODUCERS; i++) {
        prod[i] = (eo_worker){&st, i};
        if (mixed && i % 2) {
            REQUIRE(pthread_create(&threads[nthreads++], NULL, eo_thread_producer, &prod[i]) == 0);
        } else {
            REQUIRE(hoare_go(eo_goroutine_producer, &prod[i]) == 0);
            ngoroutines++;
        }
    }
    for (int i = 0; i < ngoroutines; i++) REQUIRE(hoare_recv(st.done, NULL) == 0);
    for (int i = 0; i < nthreads; i++) pthread_join(threads[i], NULL);

    CHECK_EQ(atomic_load(&st.closes), 1);
    int delivered = 0, mismatches = 0, duplicates = 0;
    for (int v = 0; v < total; v++) {
        delivered += st.delivered[v];
        duplicates += st.received[v] > 1;
        mismatches += st.received[v] != st.delivered[v];
    }
    CHECK_EQ(duplicates, 0);
    CHECK_EQ(mismatches, 0); /* sent with 0 <=> received exactly once; EPIPE <=> never */
    CHECK_EQ(delivered, atomic_load(&st.received_total));
    CHECK(delivered >= total / 2 && delivered < total); /* the close did cut the senders short */
    CHECK(atomic_load(&st.epipe_sends) > 0);
    CHECK_EQ(hoare_len(st.c), 0);
    free((void *)st.received);
    free((void *)st.delivered);
    hoare_chan_release(st.c);
    hoare_chan_release(st.done);
}

static void test_exactly_once(void) {
    int per_producer = TEST_SCALE(20000);
    static const size_t caps[] = {0, 1, 16};
    for (int mixed = 0; mixed < 2; mixed++)
        for (size_t i = 0; i < sizeof caps / sizeof *caps; i++)
            exactly_once(caps[i], mixed, per_producer);
}

/* ---------------------------------------------------------------- threads and goroutines */

/* Ping-pong between a plain thread and a goroutine over unbuffered channels, both directions
 * blocking: each side parks its own way (futex / goroutine switch). */
typedef struct {
    hoare_chan *ping, *pong, *done;
    int rounds;
} pp_args;
static void pp_goroutine(void *p) {
    pp_args *a = p;
    for (int i = 0; i < a->rounds; i++) {
        int v = -1;
        CHECK_EQ(hoare_recv(a->ping, &v), 0);
        CHECK_EQ(v, i);
        v = -v;
        CHECK_EQ(hoare_send(a->pong, &v), 0);
    }
    REQUIRE(hoare_send(a->done, NULL) == 0);
}
static void *pp_thread(void *p) {
    pp_args *a = p;
    for (int i = 0; i < a->rounds; i++) {
        CHECK_EQ(hoare_send(a->ping, &i), 0);
        int v = 1;
        CHECK_EQ(hoare_recv(a->pong, &v), 0);
        CHECK_EQ(v, -i);
    }
    return NULL;
}
static void test_thread_goroutine_ping_pong(void) {
    enum { PAIRS = 4 };
    pp_args a[PAIRS];
    pthread_t th[PAIRS];
    hoare_chan *done = make_chan(0, PAIRS);
    for (int i = 0; i < PAIRS; i++) {
        a[i] = (pp_args){make_chan(sizeof(int), 0), make_chan(sizeof(int), 0), done,
                         TEST_SCALE(20000)};
        REQUIRE(hoare_go(pp_goroutine, &a[i]) == 0);
        REQUIRE(pthread_create(&th[i], NULL, pp_thread, &a[i]) == 0);
    }
    for (int i = 0; i < PAIRS; i++) {
        pthread_join(th[i], NULL);
        REQUIRE(hoare_recv(done, NULL) == 0);
        hoare_chan_release(a[i].ping);
        hoare_chan_release(a[i].pong);
    }
    hoare_chan_release(done);
}

/* ---------------------------------------------------------------- references */

static _Atomic int frees;
static void count_free(void *arg) {
    (void)arg;
    atomic_fetch_add(&frees, 1);
}

typedef struct {
    hoare_chan *c, *done;
    int rounds;
} ref_args;
static void churn_refs(ref_args *a) {
    for (int i = 0; i < a->rounds; i++) {
        hoare_chan *mine = hoare_chan_retain(a->c);
        CHECK(mine == a->c);
        int err = hoare_trysend(mine, &i);
        CHECK(err == 0 || err == EAGAIN);
        err = hoare_tryrecv(mine, NULL);
        CHECK(err == 0 || err == EAGAIN);
        hoare_chan_release(mine);
    }
}
static void churn_goroutine(void *p) {
    churn_refs(p);
    REQUIRE(hoare_send(((ref_args *)p)->done, NULL) == 0);
}
static void *churn_thread(void *p) {
    churn_refs(p);
    return NULL;
}
static void test_concurrent_refs(void) {
    enum { WORKERS = 8 };
    atomic_store(&frees, 0);
    ref_args a = {make_chan(sizeof(int), 4), make_chan(0, WORKERS), TEST_SCALE(50000)};
    hoare__chan_on_free(a.c, count_free, NULL);
    pthread_t th[WORKERS / 2];
    for (int i = 0; i < WORKERS / 2; i++) {
        REQUIRE(hoare_go(churn_goroutine, &a) == 0);
        REQUIRE(pthread_create(&th[i], NULL, churn_thread, &a) == 0);
    }
    for (int i = 0; i < WORKERS / 2; i++) {
        REQUIRE(hoare_recv(a.done, NULL) == 0);
        pthread_join(th[i], NULL);
    }
    CHECK_EQ(atomic_load(&frees), 0);
    hoare_chan_release(a.c);
    CHECK_EQ(atomic_load(&frees), 1);
    hoare_chan_release(a.done);
}

/* ---------------------------------------------------------------- from timer callbacks */

/* Timer callbacks run on scheduler threads and must not park: the try forms and close are
 * callable there, and wake parked receivers. */
typedef struct {
    hoare_rtimer timer;
    hoare_chan *c, *done;
    _Atomic int fired, sent;
} tick_state;
static void tick_send(void *arg, int64_t now) {
    tick_state *t = arg;
    int64_t v = now;
    if (hoare_trysend(t->c, &v) == 0) atomic_fetch_add(&t->sent, 1);
    if (atomic_fetch_add(&t->fired, 1) + 1 == 5) CHECK_EQ(hoare_close(t->c), 0);
}

static void timer_receiver(void *p) {
    tick_state *t = p;
    int64_t v = 0, prev = 0;
    int got = 0, err;
    while ((err = hoare_recv(t->c, &v)) == 0) {
        CHECK(v > prev);
        prev = v;
        got++;
    }
    CHECK_EQ(err, EPIPE);
    /* Every tick that went in came out; the channel closed from the fifth callback. */
    CHECK_EQ(got, atomic_load(&t->sent));
    CHECK(got >= 1);
    REQUIRE(hoare_send(t->done, NULL) == 0);
}

static void test_timer_callbacks(void) {
    for (size_t cap = 0; cap <= 1; cap++) {
        tick_state t = {.c = make_chan(sizeof(int64_t), cap), .done = make_chan(0, 1)};
        REQUIRE(hoare_go(timer_receiver, &t) == 0);
        t.timer.fn = tick_send;
        t.timer.arg = &t;
        t.timer.period = 2 * HOARE_MS;
        hoare__timer_start(&t.timer, hoare_now() + HOARE_MS);
        while (atomic_load(&t.fired) < 5) hoare_sleep(HOARE_MS);
        hoare__timer_stop(&t.timer); /* waits out a running callback: the close is done */
        REQUIRE(hoare_recv(t.done, NULL) == 0);
        int64_t v = 0;
        CHECK_EQ(hoare_trysend(t.c, &v), EPIPE);
        CHECK_EQ(hoare_tryrecv(t.c, &v), EPIPE);
        hoare_chan_release(t.c);
        hoare_chan_release(t.done);
    }
}

int main(int argc, char **argv) {
    (void)argc;
    test_begin(argv, 60);
    test_exactly_once();
    test_thread_goroutine_ping_pong();
    test_concurrent_refs();
    test_timer_callbacks();
    TEST_MAIN_END();
}
