/*
 * test_select.c - select semantics: Go's test/chan/select3.go (what blocks, what does not),
 * select6.go, select7.go, runtime/chan_test.go TestSelfSelect, TestSelectDuplicateChannel,
 * TestSelectFairness, TestPseudoRandomSend, TestNonblockSelectRace(2); bad input; losing cases
 * leave no trace; large selects; timeouts (accuracy, reuse, plain threads).
 */
#include "test.h"

#include <pthread.h>

#include "chan_test_util.h"

/* ---------------------------------------------------------------- test/chan/select3.go */

static hoare_chan *closedch;

typedef struct {
    void (*fn)(hoare_chan *c);
    hoare_chan *c;
    _Atomic int returned;
} block_args;
static void run_block_fn(void *p) {
    block_args *a = p;
    a->fn(a->c);
    atomic_store(&a->returned, 1);
}

/* fn(c) must return on its own (joined: a hang is caught by the watchdog). */
static void never_blocks(void (*fn)(hoare_chan *c), hoare_chan *c) {
    block_args a = {fn, c, 0};
    spawn(run_block_fn, &a);
    join(1);
    CHECK(atomic_load(&a.returned));
}
/* fn(c) must still be blocked after a while; then, if c is not NULL, closing c lets it go (and
 * c is released). */
static void always_blocks(void (*fn)(hoare_chan *c), hoare_chan *c) {
    /* A goroutine blocked for ever keeps its block_args for ever: static, so that the leak
     * checker, which does not scan goroutine stacks, sees them referenced. */
    static block_args forever[8];
    static int nforever;
    block_args *a = c ? malloc(sizeof *a) : &forever[nforever++];
    REQUIRE(a != NULL && nforever <= 8);
    *a = (block_args){fn, c, 0};
    if (c) spawn(run_block_fn, a);
    else REQUIRE(hoare_go(run_block_fn, a) == 0);
    hoare_sleep(20 * HOARE_MS);
    CHECK(!atomic_load(&a->returned));
    if (c) {
        CHECK_EQ(hoare_close(c), 0);
        join(1);
        CHECK(atomic_load(&a->returned));
        free(a);
        hoare_chan_release(c);
    }
}

static void nil_send(hoare_chan *c) { hoare_send(c, &(int){7}); }
static void nil_recv(hoare_chan *c) { hoare_recv(c, NULL); }
static void nil_cases_with_default(hoare_chan *c) {
    hoare_case cs[] = {HOARE_SEND(c, &(int){7}), HOARE_RECV(c, NULL)};
    errno = 0;
    CHECK_EQ(hoare_select_try(cs, 1), -1);
    CHECK_EQ(errno, EAGAIN);
    CHECK_EQ(hoare_select_try(cs + 1, 1), -1);
    CHECK_EQ(hoare_select_try(cs, 2), -1);
}
static void send_with_room(hoare_chan *unused) {
    (void)unused;
    hoare_chan *ch = make_chan(sizeof(int), 1);
    CHECK_EQ(hoare_send(ch, &(int){7}), 0);
    hoare_chan_release(ch);
}
static void recv_closed_ten_times(hoare_chan *unused) {
    (void)unused;
    for (int i = 0; i < 10; i++) {
        int x = 5;
        CHECK_EQ(hoare_recv(closedch, &x), EPIPE);
        CHECK_EQ(x, 0);
    }
}
static void recv_one(hoare_chan *c) { hoare_recv(c, NULL); }
static void empty_select(hoare_chan *c) {
    (void)c;
    hoare_select(NULL, 0);
}
static void select_nil_recv(hoare_chan *c) {
    hoare_case cs[] = {HOARE_RECV(c, NULL)};
    hoare_select(cs, 1);
    CHECK(!"unreachable");
}
static void select_nil_send(hoare_chan *c) {
    hoare_case cs[] = {HOARE_SEND(c, &(int){7})};
    hoare_select(cs, 1);
    CHECK(!"unreachable");
}
static void select_nil_both(hoare_chan *c) {
    hoare_case cs[] = {HOARE_RECV(c, NULL), HOARE_SEND(c, &(int){7})};
    hoare_select(cs, 2);
    CHECK(!"unreachable");
}
/* Blocked until the test closes c: then the receive reports the close. */
static void select_recv_until_closed(hoare_chan *c) {
    hoare_case cs[] = {HOARE_RECV(c, NULL)};
    CHECK_EQ(hoare_select(cs, 1), 0);
    CHECK_EQ(cs[0].err, EPIPE);
}
static void select_default_only(hoare_chan *c) {
    (void)c;
    errno = 0;
    CHECK_EQ(hoare_select_try(NULL, 0), -1);
    CHECK_EQ(errno, EAGAIN);
}
static void select_ready_send(hoare_chan *unused) {
    (void)unused;
    hoare_chan *ch = make_chan(sizeof(int), 1);
    hoare_case cs[] = {HOARE_SEND(ch, &(int){7})};
    CHECK_EQ(hoare_select_try(cs, 1), 0);
    CHECK_EQ(cs[0].err, 0);
    hoare_chan_release(ch);
}
static void select_ready_recv(hoare_chan *unused) {
    (void)unused;
    hoare_chan *ch = make_chan(sizeof(int), 1);
    CHECK_EQ(hoare_send(ch, &(int){7}), 0);
    int x = 0;
    hoare_case cs[] = {HOARE_RECV(ch, &x)};
    CHECK_EQ(hoare_select_try(cs, 1), 0);
    CHECK_EQ(x, 7);
    hoare_chan_release(ch);
}
static void select_closed_recv(hoare_chan *unused) {
    (void)unused;
    int x = 3;
    hoare_case cs[] = {HOARE_RECV(closedch, &x)};
    CHECK_EQ(hoare_select(cs, 1), 0);
    CHECK_EQ(cs[0].err, EPIPE);
    CHECK_EQ(x, 0);
}
/* Send and receive on the same unbuffered channel: the select must not pair with itself. */
static void select_sees_itself(hoare_chan *c) {
    int x = 1;
    hoare_case cs[] = {HOARE_SEND(c, &x), HOARE_RECV(c, &x)};
    int i = hoare_select(cs, 2);
    CHECK(i == 0 || i == 1);
    CHECK_EQ(cs[i].err, EPIPE); /* only the final close lets it go */
}

static void test_select3(void) {
    closedch = make_chan(sizeof(int), 0);
    CHECK_EQ(hoare_close(closedch), 0);

    always_blocks(nil_send, NULL);
    always_blocks(nil_recv, NULL);
    never_blocks(nil_cases_with_default, NULL);
    never_blocks(send_with_room, NULL);
    never_blocks(recv_closed_ten_times, NULL);
    CHECK_EQ(hoare_send(closedch, &(int){7}), EPIPE); /* Go panics */
    always_blocks(recv_one, make_chan(sizeof(int), 0));
    always_blocks(empty_select, NULL);
    always_blocks(select_nil_recv, NULL);
    always_blocks(select_nil_send, NULL);
    always_blocks(select_nil_both, NULL);
    always_blocks(select_recv_until_closed, make_chan(sizeof(int), 0));
    never_blocks(select_default_only, NULL);
    never_blocks(nil_cases_with_default, NULL);
    never_blocks(select_ready_send, NULL);
    never_blocks(select_ready_recv, NULL);
    never_blocks(select_closed_recv, NULL);
    hoare_case cs[] = {HOARE_SEND(closedch, &(int){7})};
    CHECK_EQ(hoare_select(cs, 1), 0);
    CHECK_EQ(cs[0].err, EPIPE); /* Go panics */
    always_blocks(select_sees_itself, make_chan(sizeof(int), 0));
    hoare_chan_release(closedch);
}

/* ---------------------------------------------------------------- bad input, results */

static void test_bad_input(void) {
    hoare_chan *c = make_chan(sizeof(int), 1);
    hoare_case bad_dir[] = {{c, NULL, 3, 0}};
    hoare_case zero_dir[] = {{c, NULL, 0, 0}};
    hoare_case null_elem[] = {HOARE_SEND(c, NULL)};
    int (*const fns[])(hoare_case *, size_t) = {hoare_select, hoare_select_try};
    for (int f = 0; f < 2; f++) {
        errno = 0;
        CHECK_EQ(fns[f](NULL, 1), -1);
        CHECK_EQ(errno, EINVAL);
        errno = 0;
        CHECK_EQ(fns[f](bad_dir, 1), -1);
        CHECK_EQ(errno, EINVAL);
        errno = 0;
        CHECK_EQ(fns[f](zero_dir, 1), -1);
        CHECK_EQ(errno, EINVAL);
        errno = 0;
        CHECK_EQ(fns[f](null_elem, 1), -1);
        CHECK_EQ(errno, EINVAL);
    }
    errno = 0;
    CHECK_EQ(hoare_select_timeout(bad_dir, 1, HOARE_SEC), -1);
    CHECK_EQ(errno, EINVAL);
    /* Too many cases (checked before anything is read). */
    hoare_case one = HOARE_RECV(c, NULL);
    errno = 0;
    CHECK_EQ(hoare_select(&one, 65537), -1);
    CHECK_EQ(errno, EINVAL);
    /* A bad case anywhere rejects the whole select, even when an earlier case is ready. */
    CHECK_EQ(hoare_send(c, &(int){1}), 0);
    hoare_case mixed[] = {HOARE_RECV(c, NULL), {c, NULL, 7, 0}};
    errno = 0;
    CHECK_EQ(hoare_select(mixed, 2), -1);
    CHECK_EQ(errno, EINVAL);
    CHECK_EQ(hoare_len(c), 1);
    /* A NULL elem is fine for receives and for elem_size 0 channels. */
    hoare_case ok[] = {HOARE_RECV(c, NULL)};
    CHECK_EQ(hoare_select(ok, 1), 0);
    CHECK_EQ(hoare_len(c), 0);
    hoare_chan *sig = make_chan(0, 1);
    hoare_case sig_send[] = {HOARE_SEND(sig, NULL)};
    CHECK_EQ(hoare_select(sig_send, 1), 0);
    CHECK_EQ(hoare_len(sig), 1);
    hoare_chan_release(sig);
    hoare_chan_release(c);
}

/* A send case blocked in select gets EPIPE when the channel is closed; the other cases and err of
 * the losers are left alone. */
static void blocked_select_send(void *p) {
    hoare_chan **chans = p;
    int x = 1;
    hoare_case cs[] = {HOARE_RECV(chans[1], NULL), HOARE_SEND(chans[0], &x)};
    cs[0].err = 1234;
    CHECK_EQ(hoare_select(cs, 2), 1);
    CHECK_EQ(cs[1].err, EPIPE);
    CHECK_EQ(cs[0].err, 1234);
}
static void test_blocked_send_case_closed(void) {
    hoare_chan *chans[2] = {make_chan(sizeof(int), 0), make_chan(sizeof(int), 0)};
    spawn(blocked_select_send, chans);
    wait_queued(chans[0], HOARE_CASE_SEND, 1);
    CHECK_EQ(hoare_close(chans[0]), 0);
    join(1);
    CHECK_EQ(hoare_tryrecv(chans[1], NULL), EAGAIN);
    CHECK_EQ(queued(chans[1], HOARE_CASE_RECV), 0);
    hoare_chan_release(chans[0]);
    hoare_chan_release(chans[1]);
}

/* ---------------------------------------------------------------- losing cases leave no trace */

typedef struct {
    hoare_chan *a, *b, *c;
    int got;
} trace_args;
static void select_three(void *p) {
    trace_args *t = p;
    int v = -1, out = 99;
    hoare_case cs[] = {HOARE_RECV(t->a, &v), HOARE_SEND(t->b, &out), HOARE_RECV(t->c, &v)};
    int i = hoare_select(cs, 3);
    CHECK_EQ(i, 2);
    CHECK_EQ(cs[2].err, 0);
    t->got = v;
}
static void test_losers_leave_no_trace(void) {
    for (int round = 0; round < 50; round++) {
        trace_args t = {make_chan(sizeof(int), 0), make_chan(sizeof(int), 0),
                        make_chan(sizeof(int), 0), 0};
        spawn(select_three, &t);
        wait_queued(t.c, HOARE_CASE_RECV, 1);
        CHECK_EQ(queued(t.a, HOARE_CASE_RECV), 1);
        CHECK_EQ(queued(t.b, HOARE_CASE_SEND), 1);
        CHECK_EQ(hoare_send(t.c, &round), 0);
        join(1);
        CHECK_EQ(t.got, round);
        /* The losers were dequeued: nobody receives on a, nobody sends on b any more. */
        CHECK_EQ(queued(t.a, HOARE_CASE_RECV), 0);
        CHECK_EQ(queued(t.b, HOARE_CASE_SEND), 0);
        CHECK_EQ(hoare_trysend(t.a, &round), EAGAIN);
        CHECK_EQ(hoare_tryrecv(t.b, NULL), EAGAIN);
        hoare_chan_release(t.a);
        hoare_chan_release(t.b);
        hoare_chan_release(t.c);
    }
}

/* ---------------------------------------------------------------- test/chan/select6.go */

typedef struct {
    hoare_chan *c1, *c2, *c3;
} s6_args;
static void s6_recv_c1(void *p) { CHECK_EQ(hoare_recv(((s6_args *)p)->c1, NULL), 0); }
static void s6_select(void *p) {
    s6_args *a = p;
    hoare_case cs[] = {HOARE_RECV(a->c1, NULL), HOARE_RECV(a->c2, NULL)};
    CHECK_EQ(hoare_select(cs, 2), 1);
    CHECK_EQ(hoare_send(a->c3, &(bool){true}), 0);
    CHECK_EQ(hoare_recv(a->c1, NULL), 0);
}
static void s6_send_c2(void *p) { CHECK_EQ(hoare_send(((s6_args *)p)->c2, &(bool){true}), 0); }

/* Issue 2075: a select that lost on c1 must not corrupt c1's queue for later waiters. */
static void test_select6(void) {
    s6_args a = {make_chan(sizeof(bool), 0), make_chan(sizeof(bool), 0), make_chan(sizeof(bool), 0)};
    spawn(s6_recv_c1, &a);
    spawn(s6_select, &a);
    spawn(s6_send_c2, &a);
    CHECK_EQ(hoare_recv(a.c3, NULL), 0);
    CHECK_EQ(hoare_send(a.c1, &(bool){true}), 0);
    CHECK_EQ(hoare_send(a.c1, &(bool){true}), 0);
    join(3);
    hoare_chan_release(a.c1);
    hoare_chan_release(a.c2);
    hoare_chan_release(a.c3);
}

/* ---------------------------------------------------------------- test/chan/select7.go */

static void recv1(void *c) { CHECK_EQ(hoare_recv(c, NULL), 0); }
static void recv2(void *c) {
    hoare_case cs[] = {HOARE_RECV(c, NULL)};
    CHECK_EQ(hoare_select(cs, 1), 0);
}
static void recv3(void *c) {
    hoare_chan *c2 = make_chan(sizeof(int), 0);
    hoare_case cs[] = {HOARE_RECV(c, NULL), HOARE_RECV(c2, NULL)};
    CHECK_EQ(hoare_select(cs, 2), 0);
    hoare_chan_release(c2);
}
static void send1(void (*recv)(void *)) {
    hoare_chan *c = make_chan(sizeof(int), 0);
    spawn(recv, c);
    hoare_yield();
    CHECK_EQ(hoare_send(c, &(int){1}), 0);
    join(1);
    hoare_chan_release(c);
}
static void send2(void (*recv)(void *)) {
    hoare_chan *c = make_chan(sizeof(int), 0);
    spawn(recv, c);
    hoare_yield();
    hoare_case cs[] = {HOARE_SEND(c, &(int){1})};
    CHECK_EQ(hoare_select(cs, 1), 0);
    join(1);
    hoare_chan_release(c);
}
static void send3(void (*recv)(void *)) {
    hoare_chan *c = make_chan(sizeof(int), 0), *c2 = make_chan(sizeof(int), 0);
    spawn(recv, c);
    hoare_yield();
    hoare_case cs[] = {HOARE_SEND(c, &(int){1}), HOARE_SEND(c2, &(int){1})};
    CHECK_EQ(hoare_select(cs, 2), 0);
    join(1);
    hoare_chan_release(c);
    hoare_chan_release(c2);
}
static void test_select7(void) {
    void (*const recvs[])(void *) = {recv1, recv2, recv3};
    void (*const sends[])(void (*)(void *)) = {send1, send2, send3};
    for (int r = 0; r < 3; r++)
        for (int s = 0; s < 3; s++) sends[s](recvs[r]);
}

/* ---------------------------------------------------------------- TestSelfSelect */

typedef struct {
    hoare_chan *c;
    int p;
    size_t cap;
} self_args;
static void self_select(void *arg) {
    self_args *a = arg;
    int n = TEST_SCALE(1000);
    for (int i = 0; i < n; i++) {
        int v = -1, mine = a->p;
        hoare_case fwd[] = {HOARE_SEND(a->c, &mine), HOARE_RECV(a->c, &v)};
        hoare_case rev[] = {HOARE_RECV(a->c, &v), HOARE_SEND(a->c, &mine)};
        bool forward = a->p == 0 || i % 2 == 0;
        hoare_case *cs = forward ? fwd : rev;
        int k = hoare_select(cs, 2);
        bool received = cs[k].dir == HOARE_CASE_RECV;
        if (a->cap == 0 && received && v == a->p) {
            CHECK(!"self receive");
            return;
        }
    }
}
static void test_self_select(void) {
    static const size_t caps[] = {0, 10};
    for (int k = 0; k < 2; k++) {
        hoare_chan *c = make_chan(sizeof(int), caps[k]);
        self_args a[2] = {{c, 0, caps[k]}, {c, 1, caps[k]}};
        spawn(self_select, &a[0]);
        spawn(self_select, &a[1]);
        join(2);
        hoare_chan_release(c);
    }
}

/* ---------------------------------------------------------------- TestSelectDuplicateChannel */

typedef struct {
    hoare_chan *c, *d, *e;
} dup_args;
static void dup_a(void *p) {
    dup_args *a = p;
    hoare_case cs[] = {HOARE_RECV(a->c, NULL), HOARE_RECV(a->c, NULL), HOARE_RECV(a->d, NULL)};
    CHECK_EQ(hoare_select(cs, 3), 2);
    CHECK_EQ(hoare_send(a->e, &(int){9}), 0);
}
static void dup_b(void *p) { CHECK_EQ(hoare_recv(((dup_args *)p)->c, NULL), 0); }
static void test_select_duplicate_channel(void) {
    dup_args a = {make_chan(sizeof(int), 0), make_chan(sizeof(int), 0), make_chan(sizeof(int), 0)};
    spawn(dup_a, &a);
    wait_queued(a.c, HOARE_CASE_RECV, 2); /* A is queued first on c, twice */
    spawn(dup_b, &a);
    wait_queued(a.c, HOARE_CASE_RECV, 3); /* then B */
    CHECK_EQ(hoare_send(a.d, &(int){7}), 0); /* wakes A, which dequeues itself from c */
    CHECK_EQ(hoare_recv(a.e, NULL), 0);
    CHECK_EQ(queued(a.c, HOARE_CASE_RECV), 1);
    CHECK_EQ(hoare_send(a.c, &(int){8}), 0); /* must wake B, not the departed A */
    join(2);
    hoare_chan_release(a.c);
    hoare_chan_release(a.d);
    hoare_chan_release(a.e);
}

/* ---------------------------------------------------------------- randomness */

/* |count - n p| within 10 standard deviations (Go's bound in TestSelectFairness). */
static bool within_10_sigma(int count, int n, double p) {
    double dev = count - n * p;
    return dev * dev <= 100 * n * p * (1 - p);
}

typedef struct {
    hoare_chan *c1, *c2, *c3, *c4, *out, *done;
} fair_args;
static void fair_selector(void *p) {
    fair_args *a = p;
    for (;;) {
        unsigned char b = 0;
        hoare_case in[] = {HOARE_RECV(a->c3, &b), HOARE_RECV(a->c4, &b), HOARE_RECV(a->c1, &b),
                           HOARE_RECV(a->c2, &b)};
        hoare_select(in, 4);
        hoare_case out[] = {HOARE_SEND(a->out, &b), HOARE_RECV(a->done, NULL)};
        if (hoare_select(out, 2) == 1) return;
    }
}
static void test_select_fairness(void) {
    int trials = TEST_SCALE(10000);
    fair_args a = {make_chan(1, (size_t)trials + 1), make_chan(1, (size_t)trials + 1),
                   make_chan(1, 0), make_chan(1, 0), make_chan(1, 0), make_chan(0, 0)};
    for (int i = 0; i < trials + 1; i++) {
        CHECK_EQ(hoare_send(a.c1, &(unsigned char){1}), 0);
        CHECK_EQ(hoare_send(a.c2, &(unsigned char){2}), 0);
    }
    spawn(fair_selector, &a);
    int cnt1 = 0, cnt2 = 0;
    for (int i = 0; i < trials; i++) {
        unsigned char b = 0;
        CHECK_EQ(hoare_recv(a.out, &b), 0);
        if (b == 1) cnt1++;
        else if (b == 2) cnt2++;
        else CHECK(!"unexpected value");
    }
    if (!within_10_sigma(cnt1, trials, 0.5))
        fprintf(stderr, "unfair select: %d trials, %d vs %d\n", trials, cnt1, cnt2);
    CHECK(within_10_sigma(cnt1, trials, 0.5));
    CHECK_EQ(hoare_close(a.done), 0);
    join(1);
    hoare_chan *all[] = {a.c1, a.c2, a.c3, a.c4, a.out, a.done};
    for (size_t i = 0; i < 6; i++) hoare_chan_release(all[i]);
}

/* Among k ready cases (some nil cases and a never-ready one around them) each wins 1/k. */
static void test_uniform_choice(void) {
    enum { K = 5 };
    int n = TEST_SCALE(20000);
    hoare_chan *ready[K], *never = make_chan(sizeof(int), 0);
    for (int k = 0; k < K; k++) {
        ready[k] = make_chan(0, 1);
        CHECK_EQ(hoare_send(ready[k], NULL), 0);
    }
    hoare_case cs[K + 3];
    cs[0] = (hoare_case)HOARE_RECV(NULL, NULL);
    cs[1] = (hoare_case)HOARE_RECV(never, NULL);
    for (int k = 0; k < K; k++) cs[2 + k] = (hoare_case)HOARE_RECV(ready[k], NULL);
    cs[K + 2] = (hoare_case)HOARE_SEND(NULL, NULL);
    int wins[K + 3] = {0};
    for (int i = 0; i < n; i++) {
        int w = hoare_select_try(cs, K + 3);
        REQUIRE(w >= 2 && w < K + 2);
        wins[w]++;
        CHECK_EQ(hoare_send(ready[w - 2], NULL), 0); /* make it ready again */
    }
    for (int k = 0; k < K; k++) CHECK(within_10_sigma(wins[2 + k], n, 1.0 / K));
    for (int k = 0; k < K; k++) hoare_chan_release(ready[k]);
    hoare_chan_release(never);
}

/* TestPseudoRandomSend: a select of two sends on one channel picks both. */
typedef struct {
    hoare_chan *c;
    int n;
    int *got;
} prs_args;
static void prs_receiver(void *p) {
    prs_args *a = p;
    for (int i = 0; i < a->n; i++) {
        hoare_yield();
        CHECK_EQ(hoare_recv(a->c, &a->got[i]), 0);
    }
}
static void test_pseudo_random_send(void) {
    enum { N = 100 };
    static const size_t caps[] = {0, N};
    for (int k = 0; k < 2; k++) {
        int got[N];
        prs_args a = {make_chan(sizeof(int), caps[k]), N, got};
        spawn(prs_receiver, &a);
        for (int i = 0; i < N; i++) {
            hoare_case cs[] = {HOARE_SEND(a.c, &(int){1}), HOARE_SEND(a.c, &(int){0})};
            CHECK(hoare_select(cs, 2) >= 0);
        }
        join(1);
        int n0 = 0, n1 = 0;
        for (int i = 0; i < N; i++) {
            n0 += (got[i] + 1) % 2;
            n1 += got[i];
        }
        if (n0 <= N / 10 || n1 <= N / 10)
            fprintf(stderr, "want pseudorandom, got %d zeros and %d ones (cap %zu)\n", n0, n1,
                    caps[k]);
        CHECK(n0 > N / 10 && n1 > N / 10);
        hoare_chan_release(a.c);
    }
}

/* ---------------------------------------------------------------- TestNonblockSelectRace(2) */

typedef struct {
    hoare_chan *c1, *c2, *done;
} nbs_args;
static void nbs_try(void *p) {
    nbs_args *a = p;
    hoare_case cs[] = {HOARE_RECV(a->c1, NULL), HOARE_RECV(a->c2, NULL)};
    bool selected = hoare_select_try(cs, 2) >= 0;
    CHECK_EQ(hoare_send(a->done, &selected), 0);
}
/* At every moment after the goroutine starts, c1 or c2 is ready: the default must never run. */
static void test_nonblock_select_race(void) {
    int n = TEST_SCALE(20000);
    hoare_chan *done = make_chan(sizeof(bool), 1);
    for (int variant = 0; variant < 2; variant++) {
        int defaults = 0;
        for (int i = 0; i < n; i++) {
            nbs_args a = {make_chan(sizeof(int), 1), make_chan(sizeof(int), variant ? 0 : 1), done};
            CHECK_EQ(hoare_send(a.c1, &(int){1}), 0);
            spawn(nbs_try, &a);
            if (variant) CHECK_EQ(hoare_close(a.c2), 0);
            else CHECK_EQ(hoare_send(a.c2, &(int){1}), 0);
            CHECK(hoare_tryrecv(a.c1, NULL) != EPIPE);
            bool selected = false;
            CHECK_EQ(hoare_recv(done, &selected), 0);
            defaults += !selected;
            join(1);
            hoare_chan_release(a.c1);
            hoare_chan_release(a.c2);
        }
        CHECK_EQ(defaults, 0);
    }
    hoare_chan_release(done);
}

/* ---------------------------------------------------------------- large selects */

enum { BIG = 100 };
typedef struct {
    hoare_chan *chans[BIG / 2];
    int index, value;
} big_args;
/* BIG cases over BIG / 2 channels: each channel twice, once as receive and once as send. */
static void big_select(void *p) {
    big_args *a = p;
    hoare_case cs[BIG];
    int vals[BIG];
    for (int i = 0; i < BIG; i++) {
        vals[i] = -1;
        if (i % 2) cs[i] = (hoare_case)HOARE_SEND(a->chans[i / 2], &vals[i]);
        else cs[i] = (hoare_case)HOARE_RECV(a->chans[i / 2], &vals[i]);
    }
    a->index = hoare_select(cs, BIG);
    a->value = a->index >= 0 ? vals[a->index] : -2;
}
static void test_large_select(void) {
    for (int round = 0; round < 20; round++) {
        big_args a;
        for (int i = 0; i < BIG / 2; i++) a.chans[i] = make_chan(sizeof(int), 0);
        spawn(big_select, &a);
        int pick = (round * 7) % (BIG / 2);
        for (int i = 0; i < BIG / 2; i++) wait_queued(a.chans[i], HOARE_CASE_SEND, 1);
        CHECK_EQ(hoare_send(a.chans[pick], &round), 0);
        join(1);
        CHECK_EQ(a.index, 2 * pick);
        CHECK_EQ(a.value, round);
        for (int i = 0; i < BIG / 2; i++) {
            CHECK_EQ(queued(a.chans[i], HOARE_CASE_RECV) + queued(a.chans[i], HOARE_CASE_SEND), 0);
            hoare_chan_release(a.chans[i]);
        }
    }
    /* Non-blocking large select: the one ready case is found. */
    hoare_chan *chans[BIG];
    hoare_case cs[BIG];
    for (int i = 0; i < BIG; i++) {
        chans[i] = make_chan(sizeof(int), 1);
        cs[i] = (hoare_case)HOARE_RECV(chans[i], NULL);
    }
    CHECK_EQ(hoare_select_try(cs, BIG), -1);
    CHECK_EQ(hoare_send(chans[63], &(int){1}), 0);
    CHECK_EQ(hoare_select_try(cs, BIG), 63);
    for (int i = 0; i < BIG; i++) hoare_chan_release(chans[i]);
}

/* ---------------------------------------------------------------- timeouts */

static void test_timeout_accuracy(void) {
    hoare_chan *never = make_chan(sizeof(int), 0);
    hoare_case cs[] = {HOARE_RECV(never, NULL), HOARE_SEND(never, &(int){1}), HOARE_RECV(NULL, NULL)};
    static const int64_t waits[] = {HOARE_MS, 20 * HOARE_MS, 50 * HOARE_MS};
    for (size_t i = 0; i < 3; i++) {
        int64_t t0 = hoare_now();
        errno = 0;
        CHECK_EQ(hoare_select_timeout(cs, 3, waits[i]), -1);
        CHECK_EQ(errno, ETIMEDOUT);
        int64_t took = hoare_now() - t0;
        CHECK(took >= waits[i]);
        CHECK(took < waits[i] + 500 * HOARE_MS); /* generous: the machine is shared */
        CHECK_EQ(queued(never, HOARE_CASE_RECV) + queued(never, HOARE_CASE_SEND), 0);
    }
    /* No channel at all: a sleep; n == 0 likewise. */
    int64_t t0 = hoare_now();
    CHECK_EQ(hoare_select_timeout(cs + 2, 1, 10 * HOARE_MS), -1);
    CHECK_EQ(hoare_select_timeout(NULL, 0, 10 * HOARE_MS), -1);
    CHECK(hoare_now() - t0 >= 20 * HOARE_MS);
    /* ns <= 0: non-blocking. */
    errno = 0;
    CHECK_EQ(hoare_select_timeout(cs, 3, 0), -1);
    CHECK_EQ(errno, EAGAIN);
    CHECK_EQ(hoare_select_timeout(cs, 3, -5), -1);
    hoare_chan_release(never);
}

typedef struct {
    hoare_chan *c, *done;
} late_args;
static void send_late(void *p) {
    late_args *a = p;
    hoare_sleep(HOARE_MS);
    CHECK_EQ(hoare_send(a->c, &(int){42}), 0);
    REQUIRE(hoare_send(a->done, NULL) == 0);
}
/* The timer is stopped when a case wins: the goroutine's timer is free for the next wait. */
static void timeout_then_reuse(void *p) {
    hoare_chan *c = p, *done = make_chan(0, 0);
    for (int i = 0; i < 20; i++) {
        int v = 0;
        hoare_case cs[] = {HOARE_RECV(c, &v)};
        late_args a = {c, done};
        REQUIRE(hoare_go(send_late, &a) == 0);
        CHECK_EQ(hoare_select_timeout(cs, 1, 10 * HOARE_SEC), 0);
        CHECK_EQ(v, 42);
        REQUIRE(hoare_recv(done, NULL) == 0);
        hoare_sleep(HOARE_US); /* the same g->sleep_timer */
        CHECK_EQ(hoare_select_timeout(cs, 1, HOARE_US), -1);
    }
    hoare_chan_release(done);
}
static void test_timeout_reuse(void) {
    hoare_chan *c = make_chan(sizeof(int), 0);
    spawn(timeout_then_reuse, c);
    join(1);
    timeout_then_reuse(c); /* and from this plain thread */
    hoare_chan_release(c);
}

/* A plain thread in a blocking select is woken by a goroutine. */
static void *thread_select(void *p) {
    hoare_chan **chans = p;
    int v = 0;
    hoare_case cs[] = {HOARE_RECV(chans[0], &v), HOARE_RECV(chans[1], &v)};
    CHECK_EQ(hoare_select(cs, 2), 1);
    CHECK_EQ(v, 5);
    return NULL;
}
static void goroutine_send_5(void *p) { CHECK_EQ(hoare_send(p, &(int){5}), 0); }
static void test_thread_select(void) {
    hoare_chan *chans[2] = {make_chan(sizeof(int), 0), make_chan(sizeof(int), 0)};
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, thread_select, chans) == 0);
    wait_queued(chans[1], HOARE_CASE_RECV, 1);
    spawn(goroutine_send_5, chans[1]);
    join(1);
    pthread_join(th, NULL);
    CHECK_EQ(queued(chans[0], HOARE_CASE_RECV), 0);
    hoare_chan_release(chans[0]);
    hoare_chan_release(chans[1]);
}

int main(int argc, char **argv) {
    (void)argc;
    test_begin(argv, 60);
    exited = make_chan(0, 64);
    test_select3();
    test_bad_input();
    test_blocked_send_case_closed();
    test_losers_leave_no_trace();
    test_select6();
    test_select7();
    test_self_select();
    test_select_duplicate_channel();
    test_select_fairness();
    test_uniform_choice();
    test_pseudo_random_send();
    test_nonblock_select_race();
    test_large_select();
    test_timeout_accuracy();
    test_timeout_reuse();
    test_thread_select();
    hoare_chan_release(exited);
    TEST_MAIN_END();
}
