/*
 * trace.c - execution traces in the Trace Event Format (JSON; Perfetto and chrome://tracing open
 * it): hoare_trace_start/stop, HOARE_TRACE=<file>.
 *
 * What a trace holds (all on the track of the thread where it happened, pid = the process):
 *  - a complete slice ("X") per stretch of a goroutine running on a thread, named by the goroutine
 *    (its name, else "goroutine N"), with its id and processor in args;
 *  - instants ("i") create, block (args.reason: the wait reason), unblock, exit, preempt, steal,
 *    proc start / proc stop (the thread takes / gives up a processor), handoff (the monitor took
 *    the processor of a thread stuck in a blocking region);
 *  - slices "blocking region" (hoare_blocking_begin to end), nested in the goroutine's slice;
 *  - flow arrows ("s" at the creator / unblocker, "f" at the start of the target's next slice),
 *    named "create" and "unblock".
 *
 * Recording: each thread appends fixed-size binary events to its own buffer (struct tbuf) under
 * the buffer's own lock, which only the owner and hoare_trace_stop take (no lock shared between
 * threads per event). A full buffer is formatted to JSON and written by its owner under
 * trace_lock; so memory is bounded by one buffer per thread that recorded (buffers of exited
 * threads are reused). Lock order: a tbuf lock, then trace_lock (stop takes them in that order
 * too); either may be taken with scheduler locks held, and neither is held while taking another
 * runtime lock.
 *
 * Sessions: every start opens a new session number; a buffer still holding events of an older
 * session is reset on its next use, and events that arrive after stop (hooks racing with it) find
 * no active session and are dropped.
 */
#include "trace.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

HIDDEN _Atomic uint32_t hoare__observe;

enum ev_kind {
    EV_SLICE, EV_BLOCKING, EV_FLOW_END, EV_CREATE, EV_BLOCK, EV_UNBLOCK, EV_EXIT, EV_PREEMPT,
    EV_PROC_START, EV_PROC_STOP, EV_STEAL, EV_HANDOFF,
};

enum { NAME_LEN = 40, BUF_EVENTS = 1024, OUT_CAP = 64 * 1024 };

struct tev {
    int64_t ts, dur;
    uint64_t gid, arg, flow;
    const char *reason; /* a string literal (wait reasons are) */
    uint16_t kind;
    int32_t p;
    char name[NAME_LEN];
};

/* One thread's buffer. Every field is guarded by lock (the owner, or the stopper). */
struct tbuf {
    hoare_lock lock;
    _Atomic int32_t owner;  /* kernel thread id of the owner, 0: free for reuse */
    int32_t tid;            /* the track: the owner's thread id */
    char tname[24];
    uint32_t session;       /* the session its events belong to */
    bool named;             /* its thread-name record was written in this session */
    uint64_t flow_seq;
    /* the goroutine slice open on this thread, and the blocking region open in it */
    bool open;
    int64_t open_ts;
    uint64_t open_gid;
    int32_t open_p;
    char open_name[NAME_LEN];
    bool blk_open;
    int64_t blk_ts;
    uint32_t n;
    struct tbuf *next;      /* all buffers: prepend-only */
    struct tev ev[BUF_EVENTS];
};

static hoare_lock trace_lock;        /* guards the output state below */
static int out_fd = -1;
static int out_err;                  /* first write error of the session */
static bool out_comma;               /* an event was written: the next needs a comma */
static char out_text[OUT_CAP];
static size_t out_len;
static uint32_t session_gen;
static int64_t t0;
static _Atomic uint32_t active_session; /* 0: not tracing */
static _Atomic(struct tbuf *) all_bufs;
static pthread_key_t buf_key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static RUNTIME_TLS struct tbuf *tls_buf;
static int env_fd = -1;              /* HOARE_TRACE's file */

/* ------------------------------------------------------------------------------------------
 * Output (trace_lock held) */

static void out_flush(void) {
    size_t off = 0;
    while (off < out_len && !out_err) {
        ssize_t w = write(out_fd, out_text + off, out_len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) out_err = w < 0 ? errno : EIO;
        else off += (size_t)w;
    }
    out_len = 0;
}

static __attribute__((format(printf, 1, 2))) void out(const char *fmt, ...) {
    if (out_len > OUT_CAP - 1024) out_flush();
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out_text + out_len, OUT_CAP - out_len, fmt, ap);
    va_end(ap);
    if (n > 0) out_len += (size_t)n < OUT_CAP - out_len ? (size_t)n : OUT_CAP - out_len - 1;
}

/* JSON string contents (names are the program's). */
static void out_escaped(const char *s) {
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') out("\\%c", c);
        else if (c < 0x20) out("\\u%04x", c);
        else out("%c", c);
    }
}

static void out_event_head(const char *ph, const char *name, int32_t tid, int64_t ts) {
    out("%s{\"ph\":\"%s\",\"pid\":%d,\"tid\":%d,\"ts\":%.3f,\"name\":\"", out_comma ? ",\n" : "", ph,
        (int)getpid(), (int)tid, (double)(ts - t0) / 1000.0);
    out_comma = true;
    out_escaped(name);
    out("\"");
}

static void out_instant(const char *name, int32_t tid, int64_t ts) {
    out_event_head("i", name, tid, ts);
    out(",\"s\":\"t\",\"cat\":\"sched\"");
}

static void out_flow(const char *ph, uint64_t flow, int32_t tid, int64_t ts) {
    out_event_head(ph, flow & 1 ? "create" : "unblock", tid, ts);
    out(",\"cat\":\"flow\",\"id\":\"0x%llx\"%s}", (unsigned long long)flow, ph[0] == 'f' ? ",\"bp\":\"e\"" : "");
}

static void out_thread_name(struct tbuf *b) {
    out("%s{\"ph\":\"M\",\"pid\":%d,\"tid\":%d,\"name\":\"thread_name\",\"args\":{\"name\":\"%s\"}}",
        out_comma ? ",\n" : "", (int)getpid(), (int)b->tid, b->tname);
    out_comma = true;
}

static void out_ev(const struct tbuf *b, const struct tev *e) {
    int32_t tid = b->tid;
    unsigned long long gid = (unsigned long long)e->gid;
    switch ((enum ev_kind)e->kind) {
    case EV_SLICE:
        out_event_head("X", e->name, tid, e->ts);
        out(",\"dur\":%.3f,\"cat\":\"goroutine\",\"args\":{\"goid\":%llu,\"p\":%d}}", (double)e->dur / 1000.0, gid, (int)e->p);
        break;
    case EV_BLOCKING:
        out_event_head("X", "blocking region", tid, e->ts);
        out(",\"dur\":%.3f,\"cat\":\"sched\",\"args\":{\"goid\":%llu}}", (double)e->dur / 1000.0, gid);
        break;
    case EV_FLOW_END:
        out_flow("f", e->flow, tid, e->ts);
        break;
    case EV_CREATE:
        out_instant("create", tid, e->ts);
        out(",\"args\":{\"goid\":%llu,\"parent\":%llu}}", gid, (unsigned long long)e->arg);
        out_flow("s", e->flow, tid, e->ts);
        break;
    case EV_UNBLOCK:
        out_instant("unblock", tid, e->ts);
        out(",\"args\":{\"goid\":%llu,\"by\":%llu}}", gid, (unsigned long long)e->arg);
        out_flow("s", e->flow, tid, e->ts);
        break;
    case EV_BLOCK:
        out_instant("block", tid, e->ts);
        out(",\"args\":{\"goid\":%llu,\"reason\":\"", gid);
        out_escaped(e->reason ? e->reason : "?");
        out("\"}}");
        break;
    case EV_EXIT:
    case EV_PREEMPT:
        out_instant(e->kind == EV_EXIT ? "exit" : "preempt", tid, e->ts);
        out(",\"args\":{\"goid\":%llu}}", gid);
        break;
    case EV_PROC_START:
    case EV_PROC_STOP:
    case EV_HANDOFF:
        out_instant(e->kind == EV_PROC_START ? "proc start" : e->kind == EV_PROC_STOP ? "proc stop" : "handoff", tid, e->ts);
        out(",\"args\":{\"p\":%d}}", (int)e->p);
        break;
    case EV_STEAL:
        out_instant("steal", tid, e->ts);
        out(",\"args\":{\"victim\":%d,\"p\":%d,\"goid\":%llu}}", (int)e->p, (int)e->arg, gid);
        break;
    }
}

/* Write b's events (b->lock held; takes trace_lock). */
static void buf_flush(struct tbuf *b) {
    hoare__lock(&trace_lock);
    if (out_fd >= 0) {
        if (!b->named) out_thread_name(b);
        b->named = true;
        for (uint32_t i = 0; i < b->n; i++) out_ev(b, &b->ev[i]);
    }
    hoare__unlock(&trace_lock);
    b->n = 0;
}

/* ------------------------------------------------------------------------------------------
 * Recording */

static void buf_release(void *p) {
    struct tbuf *b = p;
    hoare__lock(&b->lock);
    if (b->n && b->session == atomic_load(&active_session)) buf_flush(b);
    atomic_store(&b->owner, 0);
    hoare__unlock(&b->lock);
}

static void make_key(void) { pthread_key_create(&buf_key, buf_release); }

static struct tbuf *buf_acquire(void) {
    int32_t tid = (int32_t)syscall(SYS_gettid);
    struct tbuf *b = NULL;
    for (struct tbuf *x = atomic_load(&all_bufs); x && !b; x = x->next) {
        int32_t free_owner = 0;
        if (atomic_compare_exchange_strong(&x->owner, &free_owner, tid)) b = x;
    }
    if (!b) {
        b = calloc(1, sizeof *b);
        if (!b) return NULL;
        atomic_store(&b->owner, tid);
        struct tbuf *head = atomic_load(&all_bufs);
        do b->next = head;
        while (!atomic_compare_exchange_weak(&all_bufs, &head, b));
    }
    hoare__lock(&b->lock);
    b->tid = tid;
    M *m = hoare__getm();
    if (m) snprintf(b->tname, sizeof b->tname, "M%d", (int)m->id);
    else snprintf(b->tname, sizeof b->tname, "thread %d", (int)tid);
    b->session = 0; /* reset at first use */
    hoare__unlock(&b->lock);
    pthread_once(&key_once, make_key);
    pthread_setspecific(buf_key, b);
    tls_buf = b;
    return b;
}

/* The caller's buffer, locked and ready for this session's events; NULL when not tracing. */
static struct tbuf *buf_lock(void) {
    struct tbuf *b = tls_buf;
    if (!b && !(b = buf_acquire())) return NULL;
    hoare__lock(&b->lock);
    uint32_t s = atomic_load_explicit(&active_session, memory_order_acquire);
    if (s == 0) {
        hoare__unlock(&b->lock);
        return NULL;
    }
    if (b->session != s) {
        b->session = s;
        b->n = 0;
        b->named = false;
        b->open = false;
        b->blk_open = false;
    }
    return b;
}

static struct tev *ev_add(struct tbuf *b, enum ev_kind kind, int64_t ts) {
    if (b->n == BUF_EVENTS) buf_flush(b);
    struct tev *e = &b->ev[b->n++];
    memset(e, 0, offsetof(struct tev, name) + 1);
    e->kind = (uint16_t)kind;
    e->ts = ts;
    return e;
}

static void close_slice(struct tbuf *b, int64_t now) {
    if (!b->open) return;
    struct tev *e = ev_add(b, EV_SLICE, b->open_ts);
    e->dur = now - b->open_ts;
    e->gid = b->open_gid;
    e->p = b->open_p;
    memcpy(e->name, b->open_name, NAME_LEN);
    b->open = false;
}

static uint64_t new_flow(struct tbuf *b, bool create) {
    return ((uint64_t)(uint32_t)b->tid << 32) | (++b->flow_seq << 1) | (create ? 1 : 0);
}

static uint64_t cur_id(void) {
    G *g = hoare__curg();
    return g ? g->id : 0;
}

static void instant_locked(struct tbuf *b, enum ev_kind kind, G *g, const char *reason, int64_t now) {
    struct tev *e = ev_add(b, kind, now);
    e->gid = g->id;
    e->reason = reason;
}

/* The thread's goroutine stops: close its slice and say why (m's pending action). */
static void stopped(struct tbuf *b, M *m, int64_t now) {
    close_slice(b, now);
    G *g = m->pend_g;
    if (!g) return;
    switch (m->pend_kind) {
    case PEND_PARK: instant_locked(b, EV_BLOCK, g, atomic_load_explicit(&g->wait_reason, memory_order_relaxed), now); break;
    case PEND_PREEMPT: instant_locked(b, EV_PREEMPT, g, NULL, now); break;
    default: break;
    }
}

static void hoare__trace_go_start(M *m, G *g) {
    struct tbuf *b = buf_lock();
    if (!b) return;
    int64_t now = hoare__nanotime();
    stopped(b, m, now);
    b->open = true;
    b->open_ts = now;
    b->open_gid = g->id;
    b->open_p = m->p ? m->p->id : -1;
    if (g->name[0]) snprintf(b->open_name, NAME_LEN, "%s", g->name);
    else snprintf(b->open_name, NAME_LEN, "goroutine %llu", (unsigned long long)g->id);
    if (g->trace_flow) {
        ev_add(b, EV_FLOW_END, now)->flow = g->trace_flow;
        g->trace_flow = 0;
    }
    hoare__unlock(&b->lock);
}

static void trace_go_stop(M *m) {
    struct tbuf *b = buf_lock();
    if (!b) return;
    stopped(b, m, hoare__nanotime());
    hoare__unlock(&b->lock);
}

/* create / unblock g: an instant with a flow arrow to g's next slice */
static void instant(enum ev_kind kind, G *g, uint64_t *flow_of) {
    struct tbuf *b = buf_lock();
    if (!b) return;
    struct tev *e = ev_add(b, kind, hoare__nanotime());
    e->gid = g->id;
    e->arg = cur_id();
    e->flow = *flow_of = new_flow(b, kind == EV_CREATE);
    hoare__unlock(&b->lock);
}

void hoare__trace_go_create(G *g) { instant(EV_CREATE, g, &g->trace_flow); }
void hoare__trace_go_unblock(G *g) { instant(EV_UNBLOCK, g, &g->trace_flow); }

void hoare__trace_go_exit(G *g) {
    struct tbuf *b = buf_lock();
    if (!b) return;
    instant_locked(b, EV_EXIT, g, NULL, hoare__nanotime());
    hoare__unlock(&b->lock);
}

static void proc_event(enum ev_kind kind, P *p, G *g, int32_t thief) {
    struct tbuf *b = buf_lock();
    if (!b) return;
    struct tev *e = ev_add(b, kind, hoare__nanotime());
    e->p = p->id;
    e->gid = g ? g->id : 0;
    e->arg = (uint64_t)thief;
    hoare__unlock(&b->lock);
}

void hoare__trace_proc(P *p, bool start) { proc_event(start ? EV_PROC_START : EV_PROC_STOP, p, NULL, 0); }
void hoare__trace_handoff(P *p) { proc_event(EV_HANDOFF, p, NULL, 0); }

void hoare__trace_steal(P *victim, G *g) {
    P *mine = hoare__curp();
    proc_event(EV_STEAL, victim, g, mine ? mine->id : -1);
}

void hoare__trace_blocking(G *g, bool begin) {
    struct tbuf *b = buf_lock();
    if (!b) return;
    int64_t now = hoare__nanotime();
    if (begin) {
        b->blk_open = true;
        b->blk_ts = now;
    } else if (b->blk_open) {
        struct tev *e = ev_add(b, EV_BLOCKING, b->blk_ts);
        e->dur = now - b->blk_ts;
        e->gid = g->id;
        b->blk_open = false;
    }
    hoare__unlock(&b->lock);
}

/* ------------------------------------------------------------------------------------------
 * The combined hooks (trace.h): the trace's part, then the statistics' */

/* The statistics of the goroutine that stopped on m (its park or preemption). */
static void stats_stopped(M *m) {
    G *g = m->pend_g;
    if (!g || !stats_on()) return;
    if (m->pend_kind == PEND_PARK) stats_park(&m->stats, atomic_load_explicit(&g->wait_reason, memory_order_relaxed));
    else if (m->pend_kind == PEND_PREEMPT) stats_preempt(&m->stats);
}

void hoare__observe_go_start(M *m, G *g) {
    if (trace_on()) hoare__trace_go_start(m, g);
    stats_stopped(m);
    stats_execute(&m->stats, g);
}

void hoare__observe_go_stop(M *m) {
    if (trace_on()) trace_go_stop(m);
    stats_stopped(m);
}

void hoare__observe_go_ready(M *m, G *g) {
    if (trace_on()) hoare__trace_go_unblock(g);
    stats_ready(m ? &m->stats : NULL, g);
}

void hoare__observe_go_create(M *m, G *g) {
    if (trace_on()) hoare__trace_go_create(g);
    stats_create(m ? &m->stats : NULL, g);
}

/* ------------------------------------------------------------------------------------------
 * Start and stop */

static int trace_start(int fd) {
    hoare__lock(&trace_lock);
    if (out_fd >= 0) {
        hoare__unlock(&trace_lock);
        return EBUSY;
    }
    out_fd = fd;
    out_err = 0;
    out_comma = false;
    out_len = 0;
    t0 = hoare__nanotime();
    if (++session_gen == 0) session_gen = 1;
    out("{\"displayTimeUnit\":\"ns\",\"otherData\":{\"producer\":\"hoare\",\"procs\":%d},\"traceEvents\":[\n",
        (int)atomic_load(&hoare__sched.nprocs));
    out("{\"ph\":\"M\",\"pid\":%d,\"name\":\"process_name\",\"args\":{\"name\":\"hoare\"}}", (int)getpid());
    out_comma = true;
    out_flush();
    atomic_store_explicit(&active_session, session_gen, memory_order_release);
    hoare__unlock(&trace_lock);
    atomic_fetch_or(&hoare__observe, OBSERVE_TRACE);
    return 0;
}

int hoare_trace_start(int fd) {
    if (fd < 0 || fcntl(fd, F_GETFL) < 0) return EBADF;
    hoare__init();
    return trace_start(fd);
}

int hoare_trace_stop(void) {
    hoare__lock(&trace_lock);
    uint32_t s = atomic_load(&active_session);
    if (out_fd < 0 || s == 0) {
        hoare__unlock(&trace_lock);
        return EINVAL;
    }
    atomic_fetch_and(&hoare__observe, ~(uint32_t)OBSERVE_TRACE);
    atomic_store(&active_session, 0); /* from now on events are dropped */
    hoare__unlock(&trace_lock);
    int64_t now = hoare__nanotime();
    for (struct tbuf *b = atomic_load(&all_bufs); b; b = b->next) {
        hoare__lock(&b->lock);
        if (b->session == s) {
            close_slice(b, now);
            if (b->blk_open) {
                struct tev *e = ev_add(b, EV_BLOCKING, b->blk_ts);
                e->dur = now - b->blk_ts;
                b->blk_open = false;
            }
            buf_flush(b);
            b->session = 0;
        }
        hoare__unlock(&b->lock);
    }
    hoare__lock(&trace_lock);
    out("\n]}\n");
    out_flush();
    int err = out_err;
    out_fd = -1;
    hoare__unlock(&trace_lock);
    return err;
}

static void finish_env_trace(void) {
    if (env_fd < 0) return;
    hoare_trace_stop();
    close(env_fd);
    env_fd = -1;
}

void hoare__trace_finish(void) {
    if (atomic_load(&active_session)) hoare_trace_stop();
}

void hoare__trace_init(void) {
    const char *path = getenv("HOARE_TRACE");
    if (!path || !*path) return;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        dprintf(2, "hoare: HOARE_TRACE: cannot open %s: %s\n", path, strerror(errno));
        return;
    }
    env_fd = fd;
    atexit(finish_env_trace);
    trace_start(fd); /* not hoare_trace_start: we are inside the runtime's start */
}
