/*
 * soak.c - a long mixed workload with leak checkpoints (`make soak DURATION=30m`).
 *
 *   soak --duration 30m --server build/rel/examples/http_hello [--round-seconds 10]
 *
 * Runs rounds until the duration is up. Each round runs, all at once and each to completion
 * (bounded work, not bounded time):
 *   - HTTP: the http_hello example (a child process, on 127.0.0.1:0) under load from client
 *     goroutines: keep-alive connections, pipelined GETs, every response checked;
 *   - channels: producers -> a buffered channel -> consumers selecting with a timeout;
 *   - timers: hoare_after, timers started, reset and stopped, tickers;
 *   - mutexes: goroutines and plain threads incrementing one counter;
 *   - spawning: waves of short goroutines (a WaitGroup each);
 *   - plain threads joining in on the channels, joined at the end of the round;
 *   - contexts with timeouts and a goroutine group.
 * After each round, every message must be accounted for (sent == received, requests == responses,
 * the counter exact). At checkpoints (every round-seconds): goroutines back to 0, no runtime timer
 * pending, this process's descriptors (/proc/self/fd) and the server's (/proc/PID/fd) back to their
 * level after warm-up (descriptors: at most FDS_IN_FLIGHT more; the first checkpoint, after
 * round-seconds of work), resident memory of both within 10% (+1 MiB for page granularity) of that
 * level, heap in use (mallinfo2) within 10% (+1 MiB). Prints each checkpoint and a final report;
 * exit status 1 if any check failed.
 *
 * glibc's mallinfo2 counts the chunks a thread keeps in its tcache (up to 7 per size, freed there
 * but not given back) as in use. A block malloc'd on one runtime thread and freed on another lands
 * in the second one's tcache, so heap in use creeps by a few KiB while goroutines wander between
 * threads (more of them with preemption on), up to that bound. Run with
 * GLIBC_TUNABLES=glibc.malloc.tcache_count=0 to see the heap itself: it stays flat.
 */
#include <hoare.h>

#include "proc.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Descriptors of connections being closed that a checkpoint may count (see the checks). */
enum { FDS_IN_FLIGHT = 2 };

extern char **environ;

static atomic_int failures;
#define FAIL(...)                                                                                  \
    do {                                                                                           \
        atomic_fetch_add(&failures, 1);                                                            \
        fprintf(stderr, "soak: FAILED: " __VA_ARGS__);                                             \
        fprintf(stderr, "\n");                                                                     \
    } while (0)

/* ---------------------------------------------------------------- totals over the run */
static struct {
    atomic_llong requests, responses, messages_sent, messages_received, timer_fires, spawned,
        mutex_ops, thread_joins, ctx_done, select_timeouts;
} total;

/* ---------------------------------------------------------------- HTTP clients */
static char http_addr[64];
enum { HTTP_CLIENTS = 8, HTTP_CONNS = 4, HTTP_REQS = 25, HTTP_PIPELINE = 5 };

static void http_client(void *arg) {
    hoare_wg *wg = arg;
    static const char req[] = "GET / HTTP/1.1\r\nHost: soak\r\n\r\n";
    for (int c = 0; c < HTTP_CONNS; c++) {
        int fd = hoare_net_dial("tcp", http_addr, 5 * HOARE_SEC);
        if (fd < 0) {
            FAIL("dial %s: %s", http_addr, strerror(-fd));
            continue;
        }
        hoare_fd_set_deadline(fd, hoare_now() + 10 * HOARE_SEC);
        char buf[8192];
        size_t have = 0;
        for (int sent = 0; sent < HTTP_REQS; sent += HTTP_PIPELINE) {
            char out[sizeof req * HTTP_PIPELINE];
            for (int k = 0; k < HTTP_PIPELINE; k++) memcpy(out + k * (sizeof req - 1), req, sizeof req - 1);
            size_t len = HTTP_PIPELINE * (sizeof req - 1);
            if (hoare_fd_write(fd, out, len) != (ssize_t)len) {
                FAIL("http write");
                break;
            }
            atomic_fetch_add(&total.requests, HTTP_PIPELINE);
            /* read HTTP_PIPELINE whole responses: each ends with the 13-byte body */
            int got = 0;
            while (got < HTTP_PIPELINE) {
                char *end = memmem(buf, have, "Hello, World!", 13);
                if (end) {
                    if (memcmp(buf, "HTTP/1.1 200 OK\r\n", 17) != 0) FAIL("http: bad response");
                    size_t used = (size_t)(end + 13 - buf);
                    memmove(buf, buf + used, have - used);
                    have -= used;
                    got++;
                    atomic_fetch_add(&total.responses, 1);
                    continue;
                }
                ssize_t n = hoare_fd_read(fd, buf + have, sizeof buf - have);
                if (n <= 0) {
                    FAIL("http read: %s", n == 0 ? "EOF" : strerror((int)-n));
                    break;
                }
                have += (size_t)n;
            }
        }
        hoare_fd_close(fd);
    }
    hoare_wg_done(wg);
}

/* ---------------------------------------------------------------- channels and select */
enum { PRODUCERS = 4, CONSUMERS = 4, MESSAGES = 5000 };
struct pipe_state {
    hoare_chan *data;
    hoare_wg producers, consumers;
    atomic_llong sent, received, sum_sent, sum_received;
};

static void producer(void *arg) {
    struct pipe_state *ps = arg;
    for (long long i = 1; i <= MESSAGES; i++) {
        if (hoare_send(ps->data, &i) != 0) FAIL("send");
        atomic_fetch_add(&ps->sent, 1);
        atomic_fetch_add(&ps->sum_sent, i);
    }
    hoare_wg_done(&ps->producers);
}

static void consume(struct pipe_state *ps) {
    for (;;) {
        long long v = 0;
        hoare_case cs[] = {HOARE_RECV(ps->data, &v)};
        int r = hoare_select_timeout(cs, 1, 2 * HOARE_MS);
        if (r < 0) {
            atomic_fetch_add(&total.select_timeouts, 1);
            continue;
        }
        if (cs[0].err == EPIPE) break;
        atomic_fetch_add(&ps->received, 1);
        atomic_fetch_add(&ps->sum_received, v);
    }
}
static void consumer(void *arg) {
    struct pipe_state *ps = arg;
    consume(ps);
    hoare_wg_done(&ps->consumers);
}
/* a plain thread joins in as a consumer */
static void *thread_consumer(void *arg) {
    consume(arg);
    return NULL;
}

/* ---------------------------------------------------------------- timers */
enum { TIMER_GOROUTINES = 50 };
static void timer_user(void *arg) {
    hoare_wg *wg = arg;
    uint64_t id = hoare_id();
    hoare_chan *a = hoare_after((int64_t)(id % 2000) * HOARE_US);
    if (!a || hoare_recv(a, NULL) != 0) FAIL("after");
    else atomic_fetch_add(&total.timer_fires, 1);
    hoare_chan_release(a);
    hoare_timer *t = hoare_timer_start(HOARE_SEC);
    hoare_timer_reset(t, (int64_t)(id % 3) * HOARE_MS);
    if (id % 2) {
        if (hoare_recv(hoare_timer_chan(t), NULL) == 0) atomic_fetch_add(&total.timer_fires, 1);
    } else {
        hoare_timer_stop(t);
    }
    hoare_timer_free(t);
    hoare_ticker *tk = hoare_ticker_start(300 * HOARE_US);
    for (int i = 0; i < 3; i++)
        if (hoare_recv(hoare_ticker_chan(tk), NULL) == 0) atomic_fetch_add(&total.timer_fires, 1);
    hoare_ticker_stop(tk);
    hoare_sleep((int64_t)(id % 500) * HOARE_US);
    hoare_wg_done(wg);
}

/* ---------------------------------------------------------------- mutexes */
enum { MUTEX_GOROUTINES = 16, MUTEX_THREADS = 2, MUTEX_OPS = 2000 };
static hoare_mutex mu;
static long long counter;
static void mutex_work(void) {
    for (int i = 0; i < MUTEX_OPS; i++) {
        hoare_mutex_lock(&mu);
        counter++;
        if (i % 64 == 0) hoare_yield();
        hoare_mutex_unlock(&mu);
    }
}
static void mutex_g(void *arg) {
    mutex_work();
    hoare_wg_done(arg);
}
static void *mutex_t(void *arg) {
    (void)arg;
    mutex_work();
    return NULL;
}

/* ---------------------------------------------------------------- spawning */
enum { WAVES = 20, WAVE = 100 };
static void tiny(void *arg) {
    if (hoare_id() % 4 == 0) hoare_yield();
    hoare_wg_done(arg);
}
static void spawner(void *arg) {
    hoare_wg *outer = arg;
    for (int w = 0; w < WAVES; w++) {
        hoare_wg wg = HOARE_WG_INIT;
        for (int i = 0; i < WAVE; i++) {
            hoare_wg_add(&wg, 1);
            if (hoare_go(tiny, &wg) != 0) {
                FAIL("spawn");
                hoare_wg_done(&wg);
            } else {
                atomic_fetch_add(&total.spawned, 1);
            }
        }
        hoare_wg_wait(&wg);
    }
    hoare_wg_done(outer);
}

/* ---------------------------------------------------------------- contexts and groups */
static int group_task(hoare_ctx *ctx, void *arg) {
    (void)arg;
    hoare_ctx *c = hoare_ctx_with_timeout(ctx, (int64_t)(hoare_id() % 1000) * HOARE_US);
    if (!c) return ENOMEM;
    hoare_recv(hoare_ctx_done(c), NULL);
    int err = hoare_ctx_err(c);
    hoare_ctx_release(c);
    atomic_fetch_add(&total.ctx_done, 1);
    return err == ETIMEDOUT || err == ECANCELED ? 0 : EIO;
}
static void contexts(void *arg) {
    hoare_group *g = hoare_group_new(NULL);
    hoare_group_set_limit(g, 8);
    for (int i = 0; i < 50; i++)
        if (hoare_group_go(g, group_task, NULL) != 0) FAIL("group_go");
    if (hoare_group_wait(g) != 0) FAIL("group task error");
    hoare_group_free(g);
    hoare_wg_done(arg);
}

/* ---------------------------------------------------------------- one round */
static void round_run(void) {
    hoare_wg all = HOARE_WG_INIT;
    struct pipe_state ps = {0};
    ps.data = hoare_chan_make(sizeof(long long), 16);
    counter = 0;
    for (int i = 0; i < HTTP_CLIENTS; i++) {
        hoare_wg_add(&all, 1);
        hoare_go(http_client, &all);
    }
    for (int i = 0; i < PRODUCERS; i++) {
        hoare_wg_add(&ps.producers, 1);
        hoare_go(producer, &ps);
    }
    for (int i = 0; i < CONSUMERS; i++) {
        hoare_wg_add(&ps.consumers, 1);
        hoare_go(consumer, &ps);
    }
    pthread_t tc, tm[MUTEX_THREADS];
    pthread_create(&tc, NULL, thread_consumer, &ps);
    for (int i = 0; i < MUTEX_THREADS; i++) pthread_create(&tm[i], NULL, mutex_t, NULL);
    for (int i = 0; i < TIMER_GOROUTINES; i++) {
        hoare_wg_add(&all, 1);
        hoare_go(timer_user, &all);
    }
    for (int i = 0; i < MUTEX_GOROUTINES; i++) {
        hoare_wg_add(&all, 1);
        hoare_go(mutex_g, &all);
    }
    hoare_wg_add(&all, 2);
    hoare_go(spawner, &all);
    hoare_go(contexts, &all);

    hoare_wg_wait(&ps.producers);
    hoare_close(ps.data);
    hoare_wg_wait(&ps.consumers);
    pthread_join(tc, NULL);
    for (int i = 0; i < MUTEX_THREADS; i++) pthread_join(tm[i], NULL);
    atomic_fetch_add(&total.thread_joins, 1 + MUTEX_THREADS);
    hoare_wg_wait(&all);
    hoare_chan_release(ps.data);

    if (ps.sent != (long long)PRODUCERS * MESSAGES || ps.received != ps.sent || ps.sum_received != ps.sum_sent)
        FAIL("messages: sent %lld, received %lld", (long long)ps.sent, (long long)ps.received);
    atomic_fetch_add(&total.messages_sent, ps.sent);
    atomic_fetch_add(&total.messages_received, ps.received);
    long long want = (long long)(MUTEX_GOROUTINES + MUTEX_THREADS) * MUTEX_OPS;
    if (counter != want) FAIL("mutex counter %lld, expected %lld", counter, want);
    atomic_fetch_add(&total.mutex_ops, counter);
}

/* ---------------------------------------------------------------- measurements */
static long count_fds(pid_t pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (!d) return -1;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n - (pid == getpid()); /* the directory's own descriptor */
}

static long rss_kib(pid_t pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1) break;
    fclose(f);
    return kib;
}

static long pending_timers(void) {
    long n = 0;
    for (int i = 0; i < HOARE_MAX_PROCS; i++) {
        P *p = atomic_load(&hoare__allp[i]);
        if (!p) continue;
        hoare__lock(&p->timers.lock);
        n += p->timers.n;
        hoare__unlock(&p->timers.lock);
    }
    return n;
}

static long heap_kib(void) { return (long)(mallinfo2().uordblks / 1024); }

static bool within(long now, long base) { return now <= base + base / 10 + 1024; }

static int64_t parse_duration(const char *s) {
    char *end;
    double v = strtod(s, &end);
    double mul = *end == 'm' ? 60 : *end == 'h' ? 3600 : 1;
    return (int64_t)(v * mul * 1e9);
}

int main(int argc, char **argv) {
    int64_t duration = 60 * HOARE_SEC, checkpoint_every = 10 * HOARE_SEC;
    const char *server = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--duration") == 0) duration = parse_duration(argv[i + 1]);
        else if (strcmp(argv[i], "--server") == 0) server = argv[i + 1];
        else if (strcmp(argv[i], "--round-seconds") == 0) checkpoint_every = parse_duration(argv[i + 1]);
    }
    if (!server) {
        fprintf(stderr, "usage: %s --server PATH/http_hello [--duration 30m] [--round-seconds 10]\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    /* the server: a child process on a free loopback port */
    int out[2];
    if (pipe(out) != 0) return 2;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    posix_spawn_file_actions_addclose(&fa, out[1]);
    char *sargv[] = {(char *)server, "127.0.0.1:0", NULL};
    pid_t spid;
    if (posix_spawn(&spid, server, &fa, NULL, sargv, environ) != 0) {
        fprintf(stderr, "soak: cannot start %s\n", server);
        return 2;
    }
    posix_spawn_file_actions_destroy(&fa);
    close(out[1]);
    char line[128] = "";
    FILE *so = fdopen(out[0], "r");
    if (!so || !fgets(line, sizeof line, so) || sscanf(line, "listening on %63s", http_addr) != 1) {
        fprintf(stderr, "soak: server said %s\n", line);
        kill(spid, SIGKILL);
        return 2;
    }
    fclose(so);

    int64_t start = hoare_now(), next_checkpoint = 0;
    long base_fds = 0, base_sfds = 0, base_rss = 0, base_srss = 0, base_heap = 0;
    long max_rss = 0, max_srss = 0, max_heap = 0;
    int rounds = 0, checkpoints = 0;
    printf("soak: %.0f s, server %s (pid %d) on %s\n", (double)duration / 1e9, server, (int)spid, http_addr);
    printf("%8s %6s %9s %9s %5s %5s %8s %8s %8s %6s\n", "time_s", "round", "requests", "messages",
           "fds", "sfds", "rss_kib", "srss_kib", "heap_kib", "timers");
    fflush(stdout);
    while (rounds == 0 || hoare_now() - start < duration) {
        round_run();
        rounds++;
        int64_t now = hoare_now();
        if (next_checkpoint == 0) next_checkpoint = now + checkpoint_every; /* warm-up: one period */
        if (now < next_checkpoint && now - start < duration) continue;
        next_checkpoint = now + checkpoint_every;
        bool warmup = base_rss == 0;
        /* goroutines on their way out; server connections closing after our close */
        int64_t settle = hoare_now() + 5 * HOARE_SEC;
        while (hoare_count() != 0 && hoare_now() < settle) hoare_sleep(HOARE_MS);
        while (!warmup && count_fds(spid) > base_sfds && hoare_now() < settle) hoare_sleep(HOARE_MS);
        while (pending_timers() != 0 && hoare_now() < settle) hoare_sleep(HOARE_MS);
        long fds = count_fds(getpid()), sfds = count_fds(spid), rss = rss_kib(getpid()),
             srss = rss_kib(spid), heap = heap_kib(), timers = pending_timers();
        size_t g = hoare_count();
        printf("%8.1f %6d %9lld %9lld %5ld %5ld %8ld %8ld %8ld %6ld\n", (double)(now - start) / 1e9,
               rounds, (long long)total.responses, (long long)total.messages_received, fds, sfds,
               rss, srss, heap, timers);
        fflush(stdout);
        if (g != 0) FAIL("%zu goroutines alive between rounds", g);
        if (timers != 0) FAIL("%ld runtime timers pending between rounds", timers);
        if (warmup) { /* warm-up done: the levels to come back to */
            base_fds = fds, base_sfds = sfds, base_rss = rss, base_srss = srss, base_heap = heap;
            continue;
        }
        checkpoints++;
        /* a leak grows; a connection the client is just closing may be counted at one checkpoint
         * and not at the next, so up to FDS_IN_FLIGHT more (or any fewer) is not one */
        if (fds > base_fds + FDS_IN_FLIGHT) FAIL("descriptors: %ld, after warm-up %ld", fds, base_fds);
        if (sfds > base_sfds + FDS_IN_FLIGHT)
            FAIL("server descriptors: %ld, after warm-up %ld", sfds, base_sfds);
        if (!within(rss, base_rss)) FAIL("RSS %ld KiB, after warm-up %ld KiB", rss, base_rss);
        if (!within(srss, base_srss)) FAIL("server RSS %ld KiB, after warm-up %ld KiB", srss, base_srss);
        if (!within(heap, base_heap)) FAIL("heap in use %ld KiB, after warm-up %ld KiB", heap, base_heap);
        if (rss > max_rss) max_rss = rss;
        if (srss > max_srss) max_srss = srss;
        if (heap > max_heap) max_heap = heap;
    }
    kill(spid, SIGTERM);
    waitpid(spid, NULL, 0);
    double secs = (double)(hoare_now() - start) / 1e9;
    printf("\nsoak report: %.0f s, %d rounds, %d checkpoints after warm-up\n", secs, rounds, checkpoints);
    printf("  HTTP requests %lld, responses %lld\n", (long long)total.requests, (long long)total.responses);
    printf("  channel messages sent %lld, received %lld; select timeouts %lld\n",
           (long long)total.messages_sent, (long long)total.messages_received, (long long)total.select_timeouts);
    printf("  goroutines spawned by the churn %lld; timer deliveries %lld; contexts done %lld\n",
           (long long)total.spawned, (long long)total.timer_fires, (long long)total.ctx_done);
    printf("  mutex increments %lld; plain threads joined %lld\n", (long long)total.mutex_ops,
           (long long)total.thread_joins);
    printf("  after warm-up: fds %ld, server fds %ld, RSS %ld KiB, server RSS %ld KiB, heap %ld KiB\n",
           base_fds, base_sfds, base_rss, base_srss, base_heap);
    printf("  highest at a checkpoint: RSS %ld KiB (%+.1f%%), server RSS %ld KiB (%+.1f%%), heap %ld KiB (%+.1f%%)\n",
           max_rss, base_rss ? 100.0 * (max_rss - base_rss) / base_rss : 0.0, max_srss,
           base_srss ? 100.0 * (max_srss - base_srss) / base_srss : 0.0, max_heap,
           base_heap ? 100.0 * (max_heap - base_heap) / base_heap : 0.0);
    if (total.requests != total.responses) FAIL("requests %lld, responses %lld", (long long)total.requests, (long long)total.responses);
    printf("  result: %s (%d failed checks)\n", failures ? "FAILED" : "ok", (int)failures);
    return failures ? 1 : 0;
}
