/*
 * test_chan_go.c - Go's own channel tests, in C: runtime/chan_test.go TestChan, TestMultiConsumer,
 * TestNonblockRecvRace; test/chan/nonblock.go, fifo.go, sieve1.go, goroutines.go.
 * Where Go sleeps to let a goroutine block, we wait until its waiter record is queued instead.
 */
#include "test.h"

#include "chan_test_util.h"

/* ---------------------------------------------------------------- TestChan */

typedef struct {
    hoare_chan *c;
    int flag;
} flag_args;
static void recv_then_flag(void *p) {
    flag_args *a = p;
    CHECK_EQ(hoare_recv(a->c, NULL), 0);
    __atomic_store_n(&a->flag, 1, __ATOMIC_SEQ_CST);
}
static void send_then_flag(void *p) {
    flag_args *a = p;
    CHECK_EQ(hoare_send(a->c, &(int){0}), 0);
    __atomic_store_n(&a->flag, 1, __ATOMIC_SEQ_CST);
}

static void recv_expect_closed(void *p) {
    flag_args *a = p;
    int v = 7;
    int err = hoare_recv(a->c, &v);
    __atomic_store_n(&a->flag, err == EPIPE && v == 0, __ATOMIC_SEQ_CST);
}

typedef struct {
    hoare_chan *c, *out;
    int n;
} stream_args;
static void send_sequence(void *p) {
    stream_args *a = p;
    for (int i = 0; i < a->n; i++) CHECK_EQ(hoare_send(a->c, &i), 0);
}
/* Receive n values and report how often each of 0..n-1 came (as one int array of counts). */
static void count_values(void *p) {
    stream_args *a = p;
    int *seen = calloc((size_t)a->n, sizeof *seen);
    REQUIRE(seen != NULL);
    for (int i = 0; i < a->n; i++) {
        int v = -1;
        CHECK_EQ(hoare_recv(a->c, &v), 0);
        if (v >= 0 && v < a->n) seen[v]++;
        else CHECK(!"value out of range");
    }
    CHECK_EQ(hoare_send(a->out, &seen), 0);
}

static void test_chan(void) {
    int ncaps = TEST_TSAN ? 4 : TEST_SANITIZED ? 10 : 40;
    for (int cap = 0; cap < ncaps; cap++) {
        { /* receive from an empty channel blocks; a non-blocking receive does not */
            hoare_chan *c = make_chan(sizeof(int), (size_t)cap);
            flag_args a1 = {c, 0}, a2 = {c, 0};
            spawn(recv_then_flag, &a1);
            spawn(recv_then_flag, &a2);
            hoare_sleep(HOARE_MS);
            CHECK(!__atomic_load_n(&a1.flag, __ATOMIC_SEQ_CST) &&
                  !__atomic_load_n(&a2.flag, __ATOMIC_SEQ_CST));
            CHECK_EQ(hoare_tryrecv(c, NULL), EAGAIN);
            hoare_case cs[] = {HOARE_RECV(c, NULL)};
            CHECK_EQ(hoare_select_try(cs, 1), -1);
            CHECK_EQ(hoare_send(c, &(int){0}), 0);
            CHECK_EQ(hoare_send(c, &(int){0}), 0);
            join(2);
            CHECK(a1.flag && a2.flag);
            hoare_chan_release(c);
        }
        { /* send to a full channel blocks; a non-blocking send does not */
            hoare_chan *c = make_chan(sizeof(int), (size_t)cap);
            for (int i = 0; i < cap; i++) CHECK_EQ(hoare_send(c, &i), 0);
            flag_args a = {c, 0};
            spawn(send_then_flag, &a);
            hoare_sleep(HOARE_MS);
            CHECK(!__atomic_load_n(&a.flag, __ATOMIC_SEQ_CST));
            CHECK_EQ(hoare_trysend(c, &(int){0}), EAGAIN);
            hoare_case cs[] = {HOARE_SEND(c, &(int){0})};
            CHECK_EQ(hoare_select_try(cs, 1), -1);
            CHECK_EQ(hoare_recv(c, NULL), 0);
            join(1);
            CHECK(a.flag);
            hoare_chan_release(c);
        }
        { /* values sent before close come out in order, then zero with EPIPE */
            hoare_chan *c = make_chan(sizeof(int), (size_t)cap);
            for (int i = 0; i < cap; i++) CHECK_EQ(hoare_send(c, &i), 0);
            CHECK_EQ(hoare_close(c), 0);
            for (int i = 0; i < cap; i++) {
                int v = -1;
                CHECK_EQ(hoare_recv(c, &v), 0);
                CHECK_EQ(v, i);
            }
            int v = -1;
            CHECK_EQ(hoare_recv(c, &v), EPIPE);
            CHECK_EQ(v, 0);
            hoare_chan_release(c);
        }
        { /* close unblocks a receiver: zero value and EPIPE */
            hoare_chan *c = make_chan(sizeof(int), (size_t)cap);
            flag_args f = {c, 0};
            spawn(recv_expect_closed, &f);
            wait_queued(c, HOARE_CASE_RECV, 1);
            CHECK_EQ(hoare_close(c), 0);
            join(1);
            CHECK(f.flag);
            hoare_chan_release(c);
        }
        { /* FIFO: 100 values in order, twice; then 4 senders x L values, 4 receivers */
            hoare_chan *c = make_chan(sizeof(int), (size_t)cap);
            for (int round = 0; round < 2; round++) {
                stream_args s = {c, NULL, 100};
                spawn(send_sequence, &s);
                for (int i = 0; i < 100; i++) {
                    int v = -1;
                    CHECK_EQ(hoare_recv(c, &v), 0);
                    CHECK_EQ(v, i);
                }
                join(1);
            }
            enum { NPROD = 4 };
            int L = TEST_SCALE(1000);
            hoare_chan *done = make_chan(sizeof(int *), 0);
            stream_args s = {c, done, L};
            for (int p = 0; p < NPROD; p++) spawn(send_sequence, &s);
            for (int p = 0; p < NPROD; p++) spawn(count_values, &s);
            int total_ok = 0;
            int *sum = calloc((size_t)L, sizeof *sum);
            REQUIRE(sum != NULL);
            for (int p = 0; p < NPROD; p++) {
                int *seen = NULL;
                CHECK_EQ(hoare_recv(done, &seen), 0);
                for (int i = 0; i < L; i++) sum[i] += seen[i];
                free(seen);
            }
            for (int i = 0; i < L; i++) total_ok += sum[i] == NPROD;
            CHECK_EQ(total_ok, L);
            free(sum);
            join(2 * NPROD);
            hoare_chan_release(done);
            hoare_chan_release(c);
        }
        { /* len and cap */
            hoare_chan *c = make_chan(sizeof(int), (size_t)cap);
            CHECK(hoare_len(c) == 0 && hoare_cap(c) == (size_t)cap);
            for (int i = 0; i < cap; i++) CHECK_EQ(hoare_send(c, &i), 0);
            CHECK(hoare_len(c) == (size_t)cap && hoare_cap(c) == (size_t)cap);
            hoare_chan_release(c);
        }
    }
}

/* ---------------------------------------------------------------- test/chan/nonblock.go */

typedef struct {
    hoare_chan *c, *strobe;
    const void *value;
    size_t size;
} nb_args;
static void nb_receiver(void *p) {
    nb_args *a = p;
    unsigned char got[32] = {0};
    CHECK_EQ(hoare_recv(a->c, got), 0);
    CHECK(memcmp(got, a->value, a->size) == 0);
    CHECK_EQ(hoare_send(a->strobe, NULL), 0);
}
static void nb_sender(void *p) {
    nb_args *a = p;
    CHECK_EQ(hoare_send(a->c, a->value), 0);
    CHECK_EQ(hoare_send(a->strobe, NULL), 0);
}

/* One element type: a receiver that blocks takes a non-blocking send; a sender's value is there
 * for a non-blocking receive. */
static void nonblock_type(size_t buffer, size_t size, const void *to_receiver, const void *from_sender) {
    hoare_chan *c = make_chan(size, buffer), *strobe = make_chan(0, 0);
    unsigned char got[32];
    CHECK_EQ(hoare_tryrecv(c, got), EAGAIN); /* nobody is sending */

    nb_args r = {c, strobe, to_receiver, size};
    spawn(nb_receiver, &r);
    wait_queued(c, HOARE_CASE_RECV, 1);
    CHECK_EQ(hoare_trysend(c, to_receiver), 0);
    CHECK_EQ(hoare_recv(strobe, NULL), 0);
    join(1);

    nb_args s = {c, strobe, from_sender, size};
    spawn(nb_sender, &s);
    if (buffer > 0)
        CHECK_EQ(hoare_recv(strobe, NULL), 0);
    else
        wait_queued(c, HOARE_CASE_SEND, 1);
    memset(got, 0, sizeof got);
    CHECK_EQ(hoare_tryrecv(c, got), 0);
    CHECK(memcmp(got, from_sender, size) == 0);
    if (buffer == 0) CHECK_EQ(hoare_recv(strobe, NULL), 0);
    join(1);
    hoare_chan_release(c);
    hoare_chan_release(strobe);
}

static void test_nonblock(void) {
    for (size_t buffer = 0; buffer < 2; buffer++) {
        int32_t i32r = 123, i32s = 234;
        int64_t i64r = 123456, i64s = 234567;
        bool br = true, bs = true;
        char sr[16] = "hello", ss[16] = "hello again";
        nonblock_type(buffer, sizeof i32r, &i32r, &i32s);
        nonblock_type(buffer, sizeof i64r, &i64r, &i64s);
        nonblock_type(buffer, sizeof br, &br, &bs);
        nonblock_type(buffer, sizeof sr, sr, ss);
    }
}

/* ---------------------------------------------------------------- test/chan/fifo.go */

typedef struct {
    hoare_chan *ch, *in, *out;
    int val;
} chain_args;
static void chain(void *p) {
    chain_args *a = p;
    CHECK_EQ(hoare_recv(a->in, NULL), 0);
    int v = -1;
    CHECK_EQ(hoare_recv(a->ch, &v), 0);
    CHECK_EQ(v, a->val);
    CHECK_EQ(hoare_send(a->out, &(int){1}), 0);
}

static void test_fifo(void) {
    enum { N = 10 };
    /* asynchronous */
    hoare_chan *ch = make_chan(sizeof(int), N);
    for (int i = 0; i < N; i++) CHECK_EQ(hoare_send(ch, &i), 0);
    for (int i = 0; i < N; i++) {
        int v = -1;
        CHECK_EQ(hoare_recv(ch, &v), 0);
        CHECK_EQ(v, i);
    }
    hoare_chan_release(ch);
    /* synchronous: a daisy chain makes the receivers take their turn in order */
    ch = make_chan(sizeof(int), 0);
    hoare_chan *links[N + 1];
    chain_args a[N];
    for (int i = 0; i <= N; i++) links[i] = make_chan(sizeof(int), 0);
    for (int i = 0; i < N; i++) {
        a[i] = (chain_args){ch, links[i], links[i + 1], i};
        spawn(chain, &a[i]);
    }
    CHECK_EQ(hoare_send(links[0], &(int){0}), 0);
    for (int i = 0; i < N; i++) CHECK_EQ(hoare_send(ch, &i), 0);
    CHECK_EQ(hoare_recv(links[N], NULL), 0);
    join(N);
    for (int i = 0; i <= N; i++) hoare_chan_release(links[i]);
    hoare_chan_release(ch);
}

/* ---------------------------------------------------------------- test/chan/sieve1.go */

/* Every stage also selects on quit (closed at the end) so that the pipeline can be torn down. */
static hoare_chan *sieve_quit;
static hoare_chan *sieve_stages; /* the sieve reports how many goroutines it started */

/* Send v on out unless quit closes first: false when it is time to stop. */
static bool send_or_quit(hoare_chan *out, int v) {
    hoare_case cs[] = {HOARE_SEND(out, &v), HOARE_RECV(sieve_quit, NULL)};
    return hoare_select(cs, 2) == 0;
}
static bool recv_or_quit(hoare_chan *in, int *v) {
    hoare_case cs[] = {HOARE_RECV(in, v), HOARE_RECV(sieve_quit, NULL)};
    return hoare_select(cs, 2) == 0;
}

static void generate(void *p) {
    for (int i = 2; send_or_quit(p, i); i++) {}
    hoare_chan_release(p);
}

typedef struct {
    hoare_chan *in, *out;
    int prime;
} filter_args;
static void filter(void *p) {
    filter_args a = *(filter_args *)p;
    free(p);
    int i;
    while (recv_or_quit(a.in, &i))
        if (i % a.prime != 0 && !send_or_quit(a.out, i)) break;
    hoare_chan_release(a.in);
    hoare_chan_release(a.out);
}

static void sieve(void *p) {
    hoare_chan *primes = p;
    hoare_chan *ch = make_chan(sizeof(int), 0);
    spawn(generate, hoare_chan_retain(ch));
    int stages = 1;
    int prime;
    while (recv_or_quit(ch, &prime) && send_or_quit(primes, prime)) {
        hoare_chan *ch1 = make_chan(sizeof(int), 0);
        filter_args *f = malloc(sizeof *f);
        REQUIRE(f != NULL);
        *f = (filter_args){hoare_chan_retain(ch), hoare_chan_retain(ch1), prime};
        spawn(filter, f);
        stages++;
        hoare_chan_release(ch);
        ch = ch1;
    }
    hoare_chan_release(ch);
    CHECK_EQ(hoare_send(sieve_stages, &stages), 0);
}

static void test_sieve(void) {
    static const int want[] = {2,  3,  5,  7,  11, 13, 17, 19, 23, 29, 31, 37, 41,
                               43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97};
    hoare_chan *primes = make_chan(sizeof(int), 0);
    sieve_quit = make_chan(0, 0);
    sieve_stages = make_chan(sizeof(int), 1);
    spawn(sieve, primes);
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        int x = 0;
        CHECK_EQ(hoare_recv(primes, &x), 0);
        CHECK_EQ(x, want[i]);
    }
    CHECK_EQ(hoare_close(sieve_quit), 0);
    int stages = 0;
    CHECK_EQ(hoare_recv(sieve_stages, &stages), 0);
    join(1 + stages);
    hoare_chan_release(sieve_stages);
    hoare_chan_release(sieve_quit);
    hoare_chan_release(primes);
}

/* ---------------------------------------------------------------- test/chan/goroutines.go */

typedef struct {
    hoare_chan *left, *right;
} pass_args;
static void pass_left(void *p) {
    pass_args *a = p;
    int v = 0;
    CHECK_EQ(hoare_recv(a->right, &v), 0);
    CHECK_EQ(hoare_send(a->left, &v), 0);
}
static void send_first(void *p) {
    CHECK_EQ(hoare_send(p, &(int){1}), 0);
}

static void test_goroutines(void) {
    int n = TEST_SCALE(10000);
    hoare_chan **chans = calloc((size_t)n + 1, sizeof *chans);
    pass_args *args = calloc((size_t)n, sizeof *args);
    REQUIRE(chans && args);
    for (int i = 0; i <= n; i++) chans[i] = make_chan(sizeof(int), 0);
    for (int i = 0; i < n; i++) {
        args[i] = (pass_args){chans[i], chans[i + 1]};
        spawn(pass_left, &args[i]);
    }
    spawn(send_first, chans[n]);
    int v = 0;
    CHECK_EQ(hoare_recv(chans[0], &v), 0);
    CHECK_EQ(v, 1);
    join(n + 1);
    for (int i = 0; i <= n; i++) hoare_chan_release(chans[i]);
    free(chans);
    free(args);
}

/* ---------------------------------------------------------------- TestMultiConsumer */

static const int pn[] = {2, 3, 7, 11, 13, 17, 19, 23, 27, 31};
enum { NPN = sizeof pn / sizeof *pn, NWORK = 23 };

typedef struct {
    hoare_chan *q, *r, *workers_done;
    int w;
} mc_worker_args;
static void mc_worker(void *p) {
    mc_worker_args *a = p;
    int v;
    while (hoare_recv(a->q, &v) == 0) {
        if (pn[a->w % NPN] == v) hoare_yield(); /* mess with the FIFO-ish nature of range */
        CHECK_EQ(hoare_send(a->r, &v), 0);
    }
    CHECK_EQ(hoare_send(a->workers_done, NULL), 0);
}

typedef struct {
    hoare_chan *q, *r, *workers_done;
    int niter;
    long long expect;
} mc_feeder_args;
static void mc_feeder(void *p) {
    mc_feeder_args *a = p;
    for (int i = 0; i < a->niter; i++) {
        int v = pn[i % NPN];
        a->expect += v;
        CHECK_EQ(hoare_send(a->q, &v), 0);
    }
    CHECK_EQ(hoare_close(a->q), 0); /* no more work */
    for (int i = 0; i < NWORK; i++) CHECK_EQ(hoare_recv(a->workers_done, NULL), 0);
    CHECK_EQ(hoare_close(a->r), 0); /* ... so there can be no more results */
}

static void test_multi_consumer(void) {
    hoare_chan *q = make_chan(sizeof(int), NWORK * 3), *r = make_chan(sizeof(int), NWORK * 3);
    hoare_chan *workers_done = make_chan(0, NWORK);
    mc_worker_args w[NWORK];
    for (int i = 0; i < NWORK; i++) {
        w[i] = (mc_worker_args){q, r, workers_done, i};
        spawn(mc_worker, &w[i]);
    }
    mc_feeder_args f = {q, r, workers_done, TEST_SCALE(271828), 0};
    spawn(mc_feeder, &f);
    long long n = 0, s = 0;
    int v;
    while (hoare_recv(r, &v) == 0) {
        n++;
        s += v;
    }
    join(NWORK + 1);
    CHECK_EQ(n, f.niter);
    CHECK_EQ(s, f.expect);
    hoare_chan_release(q);
    hoare_chan_release(r);
    hoare_chan_release(workers_done);
}

/* ---------------------------------------------------------------- TestNonblockRecvRace */

static void must_recv_now(void *p) {
    int err = hoare_tryrecv(p, NULL);
    CHECK(err == 0 || err == EPIPE); /* ready: a value, or closed - never "would block" */
}
static void test_nonblock_recv_race(void) {
    int n = TEST_SCALE(10000);
    for (int i = 0; i < n; i++) {
        hoare_chan *c = make_chan(sizeof(int), 1);
        CHECK_EQ(hoare_send(c, &(int){1}), 0);
        spawn(must_recv_now, c);
        CHECK_EQ(hoare_close(c), 0);
        int err = hoare_recv(c, NULL);
        CHECK(err == 0 || err == EPIPE);
        join(1);
        hoare_chan_release(c);
    }
}

int main(int argc, char **argv) {
    (void)argc;
    test_begin(argv, 60);
    exited = make_chan(0, 256);
    test_chan();
    test_nonblock();
    test_fifo();
    test_sieve();
    test_goroutines();
    test_multi_consumer();
    test_nonblock_recv_race();
    hoare_chan_release(exited);
    TEST_MAIN_END();
}
