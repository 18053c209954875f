/*
 * test_select_stress.c - select under contention: Go's test/chan/doubleselect.go and
 * runtime/chan_test.go TestSelectStress; 1,000 goroutines in one select on a shared channel;
 * several channels firing at one select at once (exactly one case wins, per-channel order kept);
 * close racing selects; timeouts racing deliveries (exactly once).
 */
#include "test.h"

#include "chan_test_util.h"

/* ---------------------------------------------------------------- test/chan/doubleselect.go */

/* If two cases of one select ever both ran, a value would come out twice. */
typedef struct {
    hoare_chan *c[4], *cmux;
    int n;
    _Atomic int muxes_left;
} ds_state;

static void ds_sender(void *p) {
    ds_state *st = p;
    for (int i = 0; i < st->n; i++) {
        hoare_case cs[] = {HOARE_SEND(st->c[0], &i), HOARE_SEND(st->c[1], &i),
                           HOARE_SEND(st->c[2], &i), HOARE_SEND(st->c[3], &i)};
        int k = hoare_select(cs, 4);
        CHECK(k >= 0 && k < 4 && cs[k].err == 0);
    }
    for (int k = 0; k < 4; k++) CHECK_EQ(hoare_close(st->c[k]), 0);
}

typedef struct {
    ds_state *st;
    hoare_chan *in;
} mux_args;
static void ds_mux(void *p) {
    mux_args *a = p;
    int v;
    while (hoare_recv(a->in, &v) == 0) CHECK_EQ(hoare_send(a->st->cmux, &v), 0);
    if (atomic_fetch_sub(&a->st->muxes_left, 1) == 1) CHECK_EQ(hoare_close(a->st->cmux), 0);
}

static void test_doubleselect(void) {
    ds_state st = {.cmux = make_chan(sizeof(int), 0), .n = TEST_SCALE(100000), .muxes_left = 4};
    for (int k = 0; k < 4; k++) st.c[k] = make_chan(sizeof(int), 0);
    mux_args m[4];
    spawn(ds_sender, &st);
    for (int k = 0; k < 4; k++) {
        m[k] = (mux_args){&st, st.c[k]};
        spawn(ds_mux, &m[k]);
    }
    unsigned char *seen = calloc((size_t)st.n, 1);
    REQUIRE(seen != NULL);
    int v, dups = 0, count = 0;
    while (hoare_recv(st.cmux, &v) == 0) {
        REQUIRE(v >= 0 && v < st.n);
        dups += seen[v]++ != 0;
        count++;
    }
    join(5);
    CHECK_EQ(dups, 0);
    CHECK_EQ(count, st.n);
    free(seen);
    for (int k = 0; k < 4; k++) hoare_chan_release(st.c[k]);
    hoare_chan_release(st.cmux);
}

/* ---------------------------------------------------------------- TestSelectStress */

typedef struct {
    hoare_chan *c[4];
    int n;
} ss_state;
typedef struct {
    ss_state *st;
    int k;
} ss_args;
static void ss_send(void *p) {
    ss_args *a = p;
    for (int i = 0; i < a->st->n; i++) CHECK_EQ(hoare_send(a->st->c[a->k], &(int){0}), 0);
}
static void ss_recv(void *p) {
    ss_args *a = p;
    for (int i = 0; i < a->st->n; i++) CHECK_EQ(hoare_recv(a->st->c[a->k], NULL), 0);
}
/* One select sends N values on each channel; a channel drops out (nil) once it had N. */
static void ss_select_send(void *p) {
    ss_state *st = p;
    hoare_chan *c1[4];
    int n[4] = {0};
    memcpy(c1, st->c, sizeof c1);
    for (int i = 0; i < 4 * st->n; i++) {
        int zero = 0;
        hoare_case cs[] = {HOARE_SEND(c1[3], &zero), HOARE_SEND(c1[2], &zero),
                           HOARE_SEND(c1[0], &zero), HOARE_SEND(c1[1], &zero)};
        static const int chan_of[] = {3, 2, 0, 1};
        int k = hoare_select(cs, 4);
        REQUIRE(k >= 0);
        CHECK_EQ(cs[k].err, 0);
        if (++n[chan_of[k]] == st->n) c1[chan_of[k]] = NULL;
    }
}
static void ss_select_recv(void *p) {
    ss_state *st = p;
    hoare_chan *c1[4];
    int n[4] = {0};
    memcpy(c1, st->c, sizeof c1);
    for (int i = 0; i < 4 * st->n; i++) {
        hoare_case cs[] = {HOARE_RECV(c1[0], NULL), HOARE_RECV(c1[1], NULL),
                           HOARE_RECV(c1[2], NULL), HOARE_RECV(c1[3], NULL)};
        int k = hoare_select(cs, 4);
        REQUIRE(k >= 0);
        CHECK_EQ(cs[k].err, 0);
        if (++n[k] == st->n) c1[k] = NULL;
    }
}
static void test_select_stress(void) {
    ss_state st = {{make_chan(sizeof(int), 0), make_chan(sizeof(int), 0), make_chan(sizeof(int), 2),
                    make_chan(sizeof(int), 3)},
                   TEST_SCALE(20000)};
    ss_args a[4];
    for (int k = 0; k < 4; k++) {
        a[k] = (ss_args){&st, k};
        spawn(ss_send, &a[k]);
        spawn(ss_recv, &a[k]);
    }
    spawn(ss_select_send, &st);
    spawn(ss_select_recv, &st);
    join(10);
    for (int k = 0; k < 4; k++) {
        CHECK_EQ(hoare_len(st.c[k]), 0);
        CHECK_EQ(queued(st.c[k], HOARE_CASE_RECV) + queued(st.c[k], HOARE_CASE_SEND), 0);
        hoare_chan_release(st.c[k]);
    }
}

/* ---------------------------------------------------------------- 1,000 in one select */

enum { CROWD = 1000 };
typedef struct {
    hoare_chan *shared, *results;
    hoare_chan *own[CROWD];
} crowd_state;
typedef struct {
    crowd_state *st;
    int id;
} crowd_args;
/* What a member reports. outcome: 0 value from shared, 1 value from own, 2 shared closed. */
typedef struct {
    int id, outcome, value;
} crowd_result;
static void crowd_member(void *p) {
    crowd_args *a = p;
    int v = -1;
    hoare_case cs[] = {HOARE_RECV(a->st->shared, &v), HOARE_RECV(a->st->own[a->id], &v)};
    int k = hoare_select(cs, 2);
    crowd_result r = {a->id, k == 0 ? (cs[0].err ? 2 : 0) : 1, v};
    CHECK(k == 0 || (k == 1 && cs[1].err == 0));
    CHECK_EQ(hoare_send(a->st->results, &r), 0);
}
static void test_crowd_select(void) {
    crowd_state *st = malloc(sizeof *st);
    crowd_args *args = malloc(CROWD * sizeof *args);
    REQUIRE(st && args);
    st->shared = make_chan(sizeof(int), 0);
    st->results = make_chan(sizeof(crowd_result), CROWD);
    for (int i = 0; i < CROWD; i++) st->own[i] = make_chan(sizeof(int), 0);
    for (int i = 0; i < CROWD; i++) {
        args[i] = (crowd_args){st, i};
        spawn(crowd_member, &args[i]);
    }
    while (queued(st->shared, HOARE_CASE_RECV) < CROWD) hoare_sleep(HOARE_MS);
    /* Half get a value on the shared channel: each value to exactly one member. */
    int outcome_of[CROWD];
    for (int i = 0; i < CROWD; i++) outcome_of[i] = -1;
    int shared_values = 0;
    for (int v = 0; v < CROWD / 2; v++) CHECK_EQ(hoare_send(st->shared, &v), 0);
    for (int i = 0; i < CROWD / 2; i++) {
        crowd_result r;
        CHECK_EQ(hoare_recv(st->results, &r), 0);
        CHECK_EQ(r.outcome, 0);
        CHECK_EQ(outcome_of[r.id], -1);
        outcome_of[r.id] = r.outcome;
        shared_values += r.value;
    }
    CHECK_EQ(shared_values, (CROWD / 2) * (CROWD / 2 - 1) / 2); /* 0 + 1 + ... each once */
    CHECK_EQ(queued(st->shared, HOARE_CASE_RECV), CROWD / 2);
    /* A quarter on their own channels. */
    int sent_own = 0;
    for (int i = 0; i < CROWD && sent_own < CROWD / 4; i++) {
        if (outcome_of[i] != -1) continue;
        CHECK_EQ(hoare_send(st->own[i], &i), 0);
        outcome_of[i] = 1;
        sent_own++;
    }
    /* The rest wake up on the close. */
    CHECK_EQ(hoare_close(st->shared), 0);
    int counts[3] = {0};
    for (int i = 0; i < CROWD / 2; i++) {
        crowd_result r;
        CHECK_EQ(hoare_recv(st->results, &r), 0);
        if (r.outcome == 1) {
            CHECK_EQ(outcome_of[r.id], 1);
            CHECK_EQ(r.value, r.id);
        } else {
            CHECK_EQ(r.outcome, 2);
            CHECK_EQ(outcome_of[r.id], -1);
            CHECK_EQ(r.value, 0);
        }
        counts[r.outcome]++;
    }
    CHECK_EQ(counts[1], CROWD / 4);
    CHECK_EQ(counts[2], CROWD / 4);
    join(CROWD);
    for (int i = 0; i < CROWD; i++) {
        CHECK_EQ(queued(st->own[i], HOARE_CASE_RECV), 0);
        hoare_chan_release(st->own[i]);
    }
    hoare_chan_release(st->shared);
    hoare_chan_release(st->results);
    free(st);
    free(args);
}

/* ---------------------------------------------------------------- many fire at once */

/* Four senders hammer the four channels of one selecting receiver: every select takes exactly
 * one value, and each channel's values come out in the order they were sent. */
typedef struct {
    hoare_chan *c;
    int n;
} burst_args;
static void burst_sender(void *p) {
    burst_args *a = p;
    for (int i = 0; i < a->n; i++) CHECK_EQ(hoare_send(a->c, &i), 0);
}
static void test_burst(void) {
    static const size_t caps[] = {0, 4};
    for (int ci = 0; ci < 2; ci++) {
        int n = TEST_SCALE(20000);
        burst_args a[4];
        for (int k = 0; k < 4; k++) {
            a[k] = (burst_args){make_chan(sizeof(int), caps[ci]), n};
            spawn(burst_sender, &a[k]);
        }
        int next[4] = {0}, disorder = 0;
        for (int i = 0; i < 4 * n; i++) {
            int v[4] = {-1, -1, -1, -1};
            hoare_case cs[] = {HOARE_RECV(a[0].c, &v[0]), HOARE_RECV(a[1].c, &v[1]),
                               HOARE_RECV(a[2].c, &v[2]), HOARE_RECV(a[3].c, &v[3])};
            int k = hoare_select(cs, 4);
            REQUIRE(k >= 0 && k < 4);
            for (int j = 0; j < 4; j++) CHECK(j == k || v[j] == -1); /* losers untouched */
            disorder += v[k] != next[k];
            next[k] = v[k] + 1;
        }
        CHECK_EQ(disorder, 0);
        for (int k = 0; k < 4; k++) CHECK_EQ(next[k], n);
        join(4);
        for (int k = 0; k < 4; k++) hoare_chan_release(a[k].c);
    }
}

/* ---------------------------------------------------------------- close racing selects */

/* Receivers select on {closing, data}; senders select on {data, quit}. The close of `closing`
 * races the deliveries; every value a sender saw delivered was received exactly once. */
enum { RACERS = 4 };
typedef struct {
    hoare_chan *closing, *data, *quit, *receivers_done;
    int per_sender;
    _Atomic int delivered, received, closes_seen;
    _Atomic uint8_t *got;
} cr_state;
typedef struct {
    cr_state *st;
    int id;
} cr_args;
static void cr_sender(void *p) {
    cr_args *a = p;
    cr_state *st = a->st;
    for (int i = 0; i < st->per_sender; i++) {
        int v = a->id * st->per_sender + i;
        hoare_case cs[] = {HOARE_SEND(st->data, &v), HOARE_RECV(st->quit, NULL)};
        if (hoare_select(cs, 2) == 1) return;
        CHECK_EQ(cs[0].err, 0);
        atomic_fetch_add(&st->delivered, 1);
    }
}
static void cr_receiver(void *p) {
    cr_args *a = p;
    cr_state *st = a->st;
    for (;;) {
        int v = -1;
        hoare_case cs[] = {HOARE_RECV(st->closing, NULL), HOARE_RECV(st->data, &v)};
        int k = hoare_select(cs, 2);
        if (k == 0) {
            CHECK_EQ(cs[0].err, EPIPE);
            atomic_fetch_add(&st->closes_seen, 1);
            REQUIRE(hoare_send(st->receivers_done, NULL) == 0);
            return;
        }
        REQUIRE(v >= 0 && v < RACERS * st->per_sender);
        CHECK_EQ(atomic_fetch_add(&st->got[v], 1), 0);
        /* The first quarter of all values closes `closing`. */
        if (atomic_fetch_add(&st->received, 1) + 1 == RACERS * st->per_sender / 4)
            CHECK_EQ(hoare_close(st->closing), 0);
    }
}
static void test_close_races_select(void) {
    for (int round = 0; round < 3; round++) {
        cr_state st = {.closing = make_chan(0, 0),
                       .data = make_chan(sizeof(int), (size_t)round),
                       .quit = make_chan(0, 0),
                       .receivers_done = make_chan(0, RACERS),
                       .per_sender = TEST_SCALE(10000)};
        st.got = calloc((size_t)(RACERS * st.per_sender), 1);
        REQUIRE(st.got != NULL);
        cr_args a[2 * RACERS];
        for (int i = 0; i < RACERS; i++) {
            a[i] = (cr_args){&st, i};
            a[RACERS + i] = (cr_args){&st, i};
            spawn(cr_sender, &a[i]);
            spawn(cr_receiver, &a[RACERS + i]);
        }
        /* The receivers stop once they saw the close; then stop the senders, and what they left
         * in the buffer counts as received too. */
        for (int i = 0; i < RACERS; i++) REQUIRE(hoare_recv(st.receivers_done, NULL) == 0);
        CHECK_EQ(atomic_load(&st.closes_seen), RACERS);
        CHECK_EQ(hoare_close(st.quit), 0);
        join(2 * RACERS);
        int v;
        while (hoare_tryrecv(st.data, &v) == 0) CHECK_EQ(atomic_fetch_add(&st.got[v], 1), 0);
        int got = 0;
        for (int i = 0; i < RACERS * st.per_sender; i++) got += st.got[i];
        CHECK_EQ(got, atomic_load(&st.delivered));
        CHECK(atomic_load(&st.delivered) < RACERS * st.per_sender);
        free((void *)st.got);
        hoare_chan_release(st.closing);
        hoare_chan_release(st.data);
        hoare_chan_release(st.quit);
        hoare_chan_release(st.receivers_done);
    }
}

/* ---------------------------------------------------------------- timeouts racing deliveries */

/* Senders and receivers both use tiny select timeouts: the timer and a channel often fire
 * together, and exactly one of them must win each select. */
typedef struct {
    hoare_chan *c, *stop;
    int per_sender;
    _Atomic int timeouts;
    _Atomic uint8_t *got;
    _Atomic int received;
} tr_state;
typedef struct {
    tr_state *st;
    int id;
} tr_args;
static void tr_sender(void *p) {
    tr_args *a = p;
    tr_state *st = a->st;
    for (int i = 0; i < st->per_sender; i++) {
        int v = a->id * st->per_sender + i;
        for (;;) {
            hoare_case cs[] = {HOARE_SEND(st->c, &v)};
            int k = hoare_select_timeout(cs, 1, (int64_t)(i % 5) * 10 * HOARE_US + HOARE_US);
            if (k == 0) {
                CHECK_EQ(cs[0].err, 0);
                break;
            }
            CHECK_EQ(errno, ETIMEDOUT);
            atomic_fetch_add(&st->timeouts, 1); /* not delivered: send it again */
        }
    }
}
static void tr_receiver(void *p) {
    tr_args *a = p;
    tr_state *st = a->st;
    for (int i = 0;; i++) {
        int v = -1;
        hoare_case cs[] = {HOARE_RECV(st->c, &v), HOARE_RECV(st->stop, NULL)};
        int k = hoare_select_timeout(cs, 2, (int64_t)(i % 7) * 10 * HOARE_US + HOARE_US);
        if (k == 1) return;
        if (k < 0) {
            CHECK(v == -1); /* a timed-out receive leaves the slot alone */
            atomic_fetch_add(&st->timeouts, 1);
            continue;
        }
        CHECK_EQ(cs[0].err, 0);
        REQUIRE(v >= 0 && v < 4 * st->per_sender);
        CHECK_EQ(atomic_fetch_add(&st->got[v], 1), 0);
        atomic_fetch_add(&st->received, 1);
    }
}
static void test_timeouts_race_deliveries(void) {
    enum { SENDERS = 4, RECEIVERS = 4 };
    tr_state st = {.c = make_chan(sizeof(int), 0), .stop = make_chan(0, 0),
                   .per_sender = TEST_SCALE(5000)};
    int total = SENDERS * st.per_sender;
    st.got = calloc((size_t)total, 1);
    REQUIRE(st.got != NULL);
    tr_args a[SENDERS + RECEIVERS];
    for (int i = 0; i < SENDERS + RECEIVERS; i++) {
        a[i] = (tr_args){&st, i};
        spawn(i < SENDERS ? tr_sender : tr_receiver, &a[i]);
    }
    join(SENDERS); /* every value was delivered to somebody once its sender returned */
    /* With nobody sending, the receivers' selects can only time out (and must). */
    int timeouts_before = atomic_load(&st.timeouts);
    while (atomic_load(&st.timeouts) < timeouts_before + RECEIVERS) hoare_sleep(HOARE_MS);
    CHECK_EQ(hoare_close(st.stop), 0);
    join(RECEIVERS);
    CHECK_EQ(atomic_load(&st.received), total);
    int once = 0;
    for (int v = 0; v < total; v++) once += st.got[v] == 1;
    CHECK_EQ(once, total);
    CHECK_EQ(queued(st.c, HOARE_CASE_RECV) + queued(st.c, HOARE_CASE_SEND), 0);
    free((void *)st.got);
    hoare_chan_release(st.c);
    hoare_chan_release(st.stop);
}

int main(int argc, char **argv) {
    (void)argc;
    test_begin(argv, 60);
    exited = make_chan(0, 64);
    test_doubleselect();
    test_select_stress();
    test_crowd_select();
    test_burst();
    test_close_races_select();
    test_timeouts_race_deliveries();
    hoare_chan_release(exited);
    TEST_MAIN_END();
}
