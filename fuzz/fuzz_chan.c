/*
 * fuzz_chan.c - libFuzzer target: random concurrent programs on channels, select and sync, checked
 * by an oracle of what Go guarantees.
 *
 * The input decodes into a program: 1..3 channels (capacity 0..3, elements uint64_t) and 1..4
 * workers, each a goroutine or a plain thread running up to 16 operations: send, receive, the try
 * forms, select (blocking, try, with a timeout; any mix of send and receive cases), close, spawn (a
 * child goroutine running another worker's script, added to the parent's WaitGroup), WaitGroup
 * wait, sleep, yield, and a mutex section (lock or trylock).
 *
 * Deadlock is made decidable: the harness (the fuzzer's thread) waits for the workers with a short
 * timeout; whenever no worker finished during one, it closes the next channel. Once every channel
 * is closed no operation of the program can block for ever (channel operations end with EPIPE,
 * mutex sections and WaitGroup waits only wait for those), so every worker must end: a worker still
 * running HANG_SEC later is a hang, reported as a finding (with the goroutine dump).
 *
 * Every value sent is unique (channel, sender, sequence number). After the run, the harness drains
 * what is still buffered and checks:
 *   - every value whose send returned 0 was received exactly once, on the channel it was sent to;
 *     no value whose send failed (EPIPE, EAGAIN, a select case not chosen) was ever received;
 *   - FIFO: a receiver never gets two values of one sender on one channel out of order;
 *   - closed channels: a send that started after a close returned 0 fails with EPIPE; EPIPE (send
 *     or receive) only once a close started, a receive's EPIPE with a zero-filled element; nothing
 *     is left buffered in a channel once a receive saw it drained; exactly one close per channel
 *     returned 0;
 *   - select: the chosen case reports 0 or EPIPE, the others keep their err field untouched; try
 *     and timeout forms fail with EAGAIN/ETIMEDOUT without touching any case;
 *   - the mutex is held by one worker at a time; a WaitGroup wait returns after the children ended;
 *   - every goroutine ended (hoare_count() back to 0) and every thread was joined: each input leaves
 *     the process-global runtime as it found it.
 * A violation prints what was seen and aborts: libFuzzer saves the input as a crash.
 */
#include <hoare.h>

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CHANS 3
#define MAX_WORKERS 4
#define MAX_OPS 16
#define MAX_CTX (MAX_WORKERS + MAX_WORKERS * MAX_OPS) /* workers and their children */
#define MAX_SEQ (MAX_OPS * 2 * MAX_CHANS)             /* send attempts of one context */
#define QUIET_NS (3 * HOARE_MS)                       /* no worker ended: close a channel */
#define HANG_SEC 20

enum op {
    OP_SEND, OP_RECV, OP_TRYSEND, OP_TRYRECV, OP_SELECT, OP_CLOSE, OP_SPAWN, OP_WGWAIT,
    OP_SLEEP, OP_YIELD, OP_MUTEX, OP_COUNT
};

typedef struct script {
    int n;
    uint8_t op[MAX_OPS], arg[MAX_OPS];
} script;

typedef struct recv_rec {
    uint8_t chan;
    uint64_t value;
} recv_rec;

/* One execution context (a worker or a spawned child). Written by its own thread of control only,
 * read by the harness after the run (the done channel, thread joins and WaitGroups order it). */
typedef struct ctx {
    int id;
    int depth;  /* 0: worker, 1: child (does not spawn) */
    int parent; /* a child's parent context */
    const script *s;
    hoare_wg wg; /* the children */
    atomic_int children_done;
    int children;
    uint32_t seq;
    uint8_t sent_ok[MAX_SEQ];
    int nrecv;
    recv_rec recv[MAX_OPS + 1];
} ctx;

static struct {
    int nchan, nworkers;
    hoare_chan *ch[MAX_CHANS];
    size_t cap[MAX_CHANS];
    script scripts[MAX_WORKERS];
    bool is_thread[MAX_WORKERS];
    ctx ctxs[MAX_CTX];
    atomic_int nctx;
    atomic_int close_started[MAX_CHANS], close_done[MAX_CHANS], close_ok[MAX_CHANS];
    atomic_int saw_drained[MAX_CHANS];
    hoare_mutex mu;
    atomic_int mu_holders;
    hoare_chan *done; /* a worker's end, elem size 0 */
} P;

static void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fuzz_chan oracle: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}

/* value: magic | channel | sender context | sequence */
#define MAGIC UINT64_C(0xA5)
static uint64_t make_value(int chan, int sender, uint32_t seq) {
    return MAGIC << 56 | (uint64_t)chan << 48 | (uint64_t)sender << 32 | seq;
}

static uint64_t next_value(ctx *c, int chan, uint32_t *seq) {
    *seq = c->seq++;
    if (*seq >= MAX_SEQ) fail("sequence overflow (harness bug)");
    return make_value(chan, c->id, *seq);
}

static void sent(ctx *c, int chan, uint32_t seq, int r, bool closed_before, const char *what) {
    if (r == 0) {
        if (closed_before) fail("%s on channel %d returned 0 after its close returned", what, chan);
        c->sent_ok[seq] = 1;
    } else if (r == EPIPE) {
        if (!atomic_load(&P.close_started[chan])) fail("%s on open channel %d: EPIPE", what, chan);
    } else if (r != EAGAIN || strcmp(what, "trysend") != 0) {
        fail("%s on channel %d returned %d", what, chan, r);
    }
}

static void received(ctx *c, int chan, uint64_t v, int r, const char *what) {
    if (r == 0) {
        if (c->nrecv > MAX_OPS) fail("receive log overflow (harness bug)");
        c->recv[c->nrecv++] = (recv_rec){(uint8_t)chan, v};
    } else if (r == EPIPE) {
        if (!atomic_load(&P.close_started[chan])) fail("%s on open channel %d: EPIPE", what, chan);
        if (v != 0) fail("%s on closed channel %d: element not zero-filled (%llx)", what, chan,
                         (unsigned long long)v);
        atomic_store(&P.saw_drained[chan], 1);
    } else if (r != EAGAIN || strcmp(what, "tryrecv") != 0) {
        fail("%s on channel %d returned %d", what, chan, r);
    }
}

static void do_close(int chan) {
    atomic_store(&P.close_started[chan], 1);
    int r = hoare_close(P.ch[chan]);
    if (r == 0) {
        atomic_fetch_add(&P.close_ok[chan], 1);
        atomic_store(&P.close_done[chan], 1);
    } else if (r != EPIPE) {
        fail("close of channel %d returned %d", chan, r);
    }
}

/* errno through calls the compiler cannot see into: a goroutine may resume on another thread, and
 * the compiler may keep errno's address across the select (see hoare.h). */
__attribute__((noinline)) static int get_errno(void) { return errno; }
__attribute__((noinline)) static void clear_errno(void) { errno = 0; }

static void op_select(ctx *c, uint8_t arg) {
    /* arg: bits 0-1 mode (0 block, 1 try, 2 timeout 1 ms, 3 timeout 0), bits 2-7 for each channel
     * a receive case and a send case */
    hoare_case cs[2 * MAX_CHANS];
    int chan_of[2 * MAX_CHANS];
    uint32_t seq_of[2 * MAX_CHANS];
    uint64_t val[2 * MAX_CHANS];
    bool closed_before[2 * MAX_CHANS];
    size_t n = 0;
    for (int k = 0; k < P.nchan; k++) {
        if (arg & (4u << (2 * k))) {
            val[n] = UINT64_MAX;
            cs[n] = (hoare_case)HOARE_RECV(P.ch[k], &val[n]);
            chan_of[n++] = k;
        }
        if (arg & (8u << (2 * k))) {
            closed_before[n] = atomic_load(&P.close_done[k]);
            val[n] = next_value(c, k, &seq_of[n]);
            cs[n] = (hoare_case)HOARE_SEND(P.ch[k], &val[n]);
            chan_of[n++] = k;
        }
    }
    for (size_t i = 0; i < n; i++) cs[i].err = 77;
    int mode = arg & 3;
    if (mode == 0 && n == 0) mode = 1; /* an empty blocking select blocks for ever */
    clear_errno();
    int r = mode == 0 ? hoare_select(cs, n)
          : mode == 1 ? hoare_select_try(cs, n)
          : hoare_select_timeout(cs, n, mode == 2 ? HOARE_MS : 0);
    int e = get_errno();
    if (r < 0) {
        if (mode == 0) fail("blocking select returned -1 (errno %d)", e);
        if (e != (mode == 2 ? ETIMEDOUT : EAGAIN)) fail("select mode %d: -1 with errno %d", mode, e);
    } else if ((size_t)r >= n) {
        fail("select returned %d of %zu cases", r, n);
    }
    for (size_t i = 0; i < n; i++) {
        if ((int)i != r) {
            if (cs[i].err != 77) fail("select: case %zu not chosen but err set to %d", i, cs[i].err);
            continue;
        }
        if (cs[i].dir == HOARE_CASE_SEND)
            sent(c, chan_of[i], seq_of[i], cs[i].err, closed_before[i], "select send");
        else
            received(c, chan_of[i], val[i], cs[i].err, "select recv");
    }
}

static void run_ctx(ctx *c);


static void child_main(void *arg) {
    ctx *c = arg;
    ctx *parent = &P.ctxs[c->parent];
    run_ctx(c);
    atomic_fetch_add(&parent->children_done, 1);
    hoare_wg_done(&parent->wg);
}

static void op_spawn(ctx *c, uint8_t arg) {
    if (c->depth > 0) return;
    int id = atomic_fetch_add(&P.nctx, 1);
    if (id >= MAX_CTX) fail("context overflow (harness bug)");
    ctx *child = &P.ctxs[id];
    child->id = id;
    child->depth = 1;
    child->s = &P.scripts[arg % P.nworkers];
    child->parent = c->id;
    c->children++;
    hoare_wg_add(&c->wg, 1);
    int r = hoare_go(child_main, child);
    if (r != 0) fail("hoare_go returned %d", r);
}

static void op_mutex(uint8_t arg) {
    if (arg & 1) {
        if (hoare_mutex_trylock(&P.mu) != 0) return;
    } else {
        hoare_mutex_lock(&P.mu);
    }
    if (atomic_fetch_add(&P.mu_holders, 1) != 0) fail("mutex held twice");
    if (arg & 2) hoare_yield();
    if (arg & 4) hoare_sleep(20 * HOARE_US);
    atomic_fetch_sub(&P.mu_holders, 1);
    hoare_mutex_unlock(&P.mu);
}

static void run_ctx(ctx *c) {
    const script *s = c->s;
    for (int i = 0; i < s->n; i++) {
        uint8_t arg = s->arg[i];
        int ch = arg % P.nchan;
        uint64_t v;
        uint32_t seq;
        bool closed_before;
        int r;
        switch (s->op[i]) {
        case OP_SEND:
        case OP_TRYSEND:
            closed_before = atomic_load(&P.close_done[ch]);
            v = next_value(c, ch, &seq);
            r = s->op[i] == OP_SEND ? hoare_send(P.ch[ch], &v) : hoare_trysend(P.ch[ch], &v);
            sent(c, ch, seq, r, closed_before, s->op[i] == OP_SEND ? "send" : "trysend");
            break;
        case OP_RECV:
        case OP_TRYRECV:
            v = UINT64_MAX;
            r = s->op[i] == OP_RECV ? hoare_recv(P.ch[ch], &v) : hoare_tryrecv(P.ch[ch], &v);
            received(c, ch, v, r, s->op[i] == OP_RECV ? "recv" : "tryrecv");
            break;
        case OP_SELECT: op_select(c, arg); break;
        case OP_CLOSE: do_close(ch); break;
        case OP_SPAWN: op_spawn(c, arg); break;
        case OP_WGWAIT:
            hoare_wg_wait(&c->wg);
            if (atomic_load(&c->children_done) != c->children) fail("WaitGroup wait returned early");
            break;
        case OP_SLEEP: hoare_sleep((arg % 4) * 50 * HOARE_US); break;
        case OP_YIELD: hoare_yield(); break;
        case OP_MUTEX: op_mutex(arg); break;
        }
    }
    hoare_wg_wait(&c->wg);
    if (atomic_load(&c->children_done) != c->children) fail("WaitGroup wait returned early");
}

static void worker_end(ctx *c) {
    run_ctx(c);
    int r = hoare_send(P.done, NULL);
    if (r != 0) fail("done send returned %d", r);
}
static void worker_g(void *arg) { worker_end(arg); }
static void *worker_t(void *arg) {
    worker_end(arg);
    return NULL;
}

/* Decode the input. Every byte string is a valid program. */
static void decode(const uint8_t *d, size_t n) {
    size_t i = 0;
#define NEXT() (i < n ? d[i++] : 0)
    uint8_t b = NEXT();
    P.nchan = 1 + b % MAX_CHANS;
    P.nworkers = 1 + (b >> 2) % MAX_WORKERS;
    for (int k = 0; k < P.nchan; k++) P.cap[k] = (b >> (4 + k)) & 1 ? NEXT() % 4 : 0;
    uint8_t kinds = NEXT();
    for (int w = 0; w < P.nworkers; w++) {
        P.is_thread[w] = (kinds >> w) & 1;
        script *s = &P.scripts[w];
        s->n = NEXT() % (MAX_OPS + 1);
        for (int k = 0; k < s->n; k++) {
            s->op[k] = NEXT() % OP_COUNT;
            s->arg[k] = NEXT();
        }
    }
#undef NEXT
}

static void check_value(int chan, uint64_t v, int last[MAX_CTX], uint8_t counts[MAX_CTX][MAX_SEQ],
                        const char *who) {
    int sender = (int)(v >> 32 & 0xffff);
    uint32_t seq = (uint32_t)v;
    int nctx = atomic_load(&P.nctx);
    if (v >> 56 != MAGIC || (int)(v >> 48 & 0xff) != chan || sender >= nctx || seq >= P.ctxs[sender].seq)
        fail("%s received %llx on channel %d: never sent there", who, (unsigned long long)v, chan);
    if ((int)seq <= last[sender])
        fail("%s received seq %u of sender %d on channel %d after seq %d: not FIFO", who, seq, sender,
             chan, last[sender]);
    last[sender] = (int)seq;
    if (counts[sender][seq] < 255) counts[sender][seq]++;
}

static void oracle(void) {
    static uint8_t counts[MAX_CTX][MAX_SEQ];
    static int last[MAX_CHANS][MAX_CTX];
    memset(counts, 0, sizeof counts);
    int nctx = atomic_load(&P.nctx);
    for (int r = 0; r < nctx; r++) {
        for (int k = 0; k < MAX_CHANS; k++)
            for (int s = 0; s < MAX_CTX; s++) last[k][s] = -1;
        const ctx *c = &P.ctxs[r];
        for (int i = 0; i < c->nrecv; i++)
            check_value(c->recv[i].chan, c->recv[i].value, last[c->recv[i].chan], counts, "a receiver");
    }
    /* what is still buffered: closed channels, so tryrecv drains them, in order */
    for (int k = 0; k < P.nchan; k++) {
        for (int s = 0; s < MAX_CTX; s++) last[k][s] = -1;
        int drained = 0;
        for (;;) {
            uint64_t v = UINT64_MAX;
            int r = hoare_tryrecv(P.ch[k], &v);
            if (r == EPIPE) break;
            if (r != 0) fail("drain of closed channel %d: %d", k, r);
            if (++drained > 4) fail("channel %d of capacity %zu held %d values", k, P.cap[k], drained);
            check_value(k, v, last[k], counts, "the drain");
        }
        if (drained && atomic_load(&P.saw_drained[k]))
            fail("channel %d: a receive saw it closed and drained, yet %d values remained", k, drained);
        if (atomic_load(&P.close_ok[k]) != 1)
            fail("channel %d: %d closes returned 0", k, atomic_load(&P.close_ok[k]));
    }
    for (int s = 0; s < nctx; s++)
        for (uint32_t q = 0; q < P.ctxs[s].seq; q++) {
            if (P.ctxs[s].sent_ok[q] && counts[s][q] != 1)
                fail("value %d.%u: send returned 0, received %d times", s, q, counts[s][q]);
            if (!P.ctxs[s].sent_ok[q] && counts[s][q] != 0)
                fail("value %d.%u: send failed, yet received %d times", s, q, counts[s][q]);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    memset(&P, 0, sizeof P);
    decode(data, size);
    for (int k = 0; k < P.nchan; k++) {
        P.ch[k] = hoare_chan_make(sizeof(uint64_t), P.cap[k]);
        if (!P.ch[k]) fail("chan_make failed");
    }
    P.done = hoare_chan_make(0, MAX_WORKERS);
    if (!P.done) fail("chan_make failed");
    pthread_t th[MAX_WORKERS];
    atomic_store(&P.nctx, P.nworkers);
    for (int w = 0; w < P.nworkers; w++) {
        ctx *c = &P.ctxs[w];
        c->id = w;
        c->s = &P.scripts[w];
        if (P.is_thread[w] ? pthread_create(&th[w], NULL, worker_t, c) : hoare_go(worker_g, c))
            fail("cannot start worker %d", w);
    }
    /* Wait for the workers; close one more channel whenever none ended for a while. */
    int ended = 0, next_close = 0;
    int64_t hang_deadline = 0;
    while (ended < P.nworkers) {
        hoare_case dc = HOARE_RECV(P.done, NULL);
        int r = hoare_select_timeout(&dc, 1, QUIET_NS);
        if (r == 0) {
            ended++;
        } else if (next_close < P.nchan) {
            do_close(next_close++);
            if (next_close == P.nchan) hang_deadline = hoare_now() + HANG_SEC * HOARE_SEC;
        } else if (hoare_now() > hang_deadline) {
            fprintf(stderr, "fuzz_chan oracle: hang: %d of %d workers still running with every "
                            "channel closed\n", P.nworkers - ended, P.nworkers);
            hoare_dump(2);
            abort();
        }
    }
    while (next_close < P.nchan) do_close(next_close++);
    for (int w = 0; w < P.nworkers; w++)
        if (P.is_thread[w]) pthread_join(th[w], NULL);
    /* Goroutines that signalled their end may still be on their way out. */
    int64_t deadline = hoare_now() + HANG_SEC * HOARE_SEC;
    while (hoare_count() != 0) {
        if (hoare_now() > deadline) fail("%zu goroutines left behind", hoare_count());
        hoare_sleep(20 * HOARE_US);
    }
    oracle();
    for (int k = 0; k < P.nchan; k++) hoare_chan_release(P.ch[k]);
    hoare_chan_release(P.done);
    return 0;
}
