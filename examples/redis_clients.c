/*
 * redis_clients.c - a real database client in goroutines: hiredis (its plain C API in non-blocking
 * mode) on hoare's poller. Each of N goroutines dials its own connection with hoare_net_dial and
 * hands the descriptor to hiredis; when a command cannot be written or its reply has not arrived,
 * the goroutine parks in hoare_fd_wait. Thousands of connections, a handful of threads.
 *
 *   redis_clients HOST:PORT [goroutines (2000)] [rounds (10)]
 *
 * Each goroutine does `rounds` times: SET its key, GET it back (checked), INCR a shared counter.
 * At the end the counter must be goroutines * rounds. Prints
 * "ok: G goroutines, C commands, counter N, at most T threads" and exits 0, or says what failed and
 * exits 1.
 */
#include <hoare.h>

#include <dirent.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static const char *address;
static int rounds = 10;
static _Atomic int failures;
static _Atomic long commands;
/* Connections being set up at once: a burst of thousands of connects would overflow the server's
 * listen backlog (redis: 511), whose dropped handshakes the kernel retries only after seconds. */
static hoare_sem connecting;

/* A hiredis context over a connection dialled by hoare (non-blocking, registered with the poller).
 * hiredis is told the descriptor is non-blocking, so it never waits itself. */
static redisContext *connect_redis(void) {
    int fd = hoare_net_dial("tcp", address, 10 * HOARE_SEC);
    if (fd < 0) return NULL;
    redisContext *c = redisConnectFd(fd);
    if (!c || c->err) {
        if (c) redisFreeKeepFd(c);
        hoare_fd_close(fd);
        return NULL;
    }
    c->flags &= ~REDIS_BLOCK;
    hoare_fd_set_deadline(fd, hoare_now() + 30 * HOARE_SEC); /* a bound on the whole run */
    return c;
}

/* hiredis frees the context; the descriptor goes back through hoare (never close(2) it). */
static void disconnect_redis(redisContext *c) { hoare_fd_close(redisFreeKeepFd(c)); }

/* One command: write it (parking while the socket is full), then read until a whole reply is
 * parsed (parking while nothing arrived). The reply, or NULL on an error. */
static redisReply *command(redisContext *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int r = redisvAppendCommand(c, fmt, ap);
    va_end(ap);
    if (r != REDIS_OK) return NULL;
    int done = 0;
    while (!done) {
        if (redisBufferWrite(c, &done) != REDIS_OK) return NULL;
        if (!done && hoare_fd_wait(c->fd, 2) != 0) return NULL;
    }
    for (;;) {
        void *reply = NULL;
        if (redisGetReplyFromReader(c, &reply) != REDIS_OK) return NULL;
        if (reply) {
            atomic_fetch_add_explicit(&commands, 1, memory_order_relaxed);
            return reply;
        }
        if (hoare_fd_wait(c->fd, 1) != 0 || redisBufferRead(c) != REDIS_OK) return NULL;
    }
}

static void client(void *arg) {
    hoare_wg *wg = arg;
    hoare_sem_acquire(&connecting, 1);
    redisContext *c = connect_redis();
    redisReply *pong = c ? command(c, "PING") : NULL; /* accepted by the server */
    hoare_sem_release(&connecting, 1);
    if (pong) freeReplyObject(pong);
    if (!pong) {
        if (c) disconnect_redis(c);
        atomic_fetch_add(&failures, 1);
        hoare_wg_done(wg);
        return;
    }
    char key[32], value[32];
    snprintf(key, sizeof key, "hoare:key:%p", (void *)&key);
    for (int i = 0; i < rounds; i++) {
        snprintf(value, sizeof value, "v%d", i);
        redisReply *set = command(c, "SET %s %s", key, value);
        redisReply *get = set ? command(c, "GET %s", key) : NULL;
        redisReply *incr = get ? command(c, "INCR hoare:counter") : NULL;
        bool ok = incr && get->type == REDIS_REPLY_STRING && strcmp(get->str, value) == 0 &&
                  incr->type == REDIS_REPLY_INTEGER;
        if (set) freeReplyObject(set);
        if (get) freeReplyObject(get);
        if (incr) freeReplyObject(incr);
        if (!ok) {
            atomic_fetch_add(&failures, 1);
            break;
        }
    }
    redisReply *del = command(c, "DEL %s", key);
    if (del) freeReplyObject(del);
    disconnect_redis(c);
    hoare_wg_done(wg);
}

static int thread_count(void) {
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* Samples the thread count until stop is closed. */
static void sampler(void *arg) {
    hoare_chan *stop = ((void **)arg)[0];
    int *max = ((void **)arg)[1];
    hoare_wg *done = ((void **)arg)[2];
    for (;;) {
        int n = thread_count();
        if (n > *max) *max = n;
        hoare_case stopped = HOARE_RECV(stop, NULL);
        if (hoare_select_timeout(&stopped, 1, 10 * HOARE_MS) == 0) break;
    }
    hoare_wg_done(done);
}

/* The program's main goroutine (see main below). */
static int app(int argc, char **argv) {
    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: %s HOST:PORT [goroutines] [rounds]\n", argv[0]);
        return 2;
    }
    address = argv[1];
    int n = argc > 2 ? atoi(argv[2]) : 2000;
    if (argc > 3) rounds = atoi(argv[3]);
    if (n <= 0 || rounds <= 0) return 2;
    signal(SIGPIPE, SIG_IGN); /* hiredis writes with write(2): a server gone away means EPIPE */
    struct rlimit rl; /* a descriptor per connection */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    hoare_sem_init(&connecting, 128);
    redisContext *c = connect_redis();
    redisReply *r = c ? command(c, "SET hoare:counter 0") : NULL;
    if (!r) {
        fprintf(stderr, "cannot reach redis at %s\n", address);
        return 1;
    }
    freeReplyObject(r);
    int max_threads = 0;
    hoare_chan *stop = hoare_chan_make(0, 0);
    hoare_wg sampled = HOARE_WG_INIT;
    void *sargs[3] = {stop, &max_threads, &sampled};
    hoare_wg_add(&sampled, 1);
    if (hoare_go(sampler, sargs) != 0) hoare_wg_done(&sampled); /* no sampling, then */
    hoare_wg wg = HOARE_WG_INIT;
    for (int i = 0; i < n; i++) {
        hoare_wg_add(&wg, 1);
        if (hoare_go(client, &wg) != 0) {
            atomic_fetch_add(&failures, 1);
            hoare_wg_done(&wg);
        }
    }
    hoare_wg_wait(&wg);
    hoare_close(stop);
    hoare_wg_wait(&sampled); /* its max is final, and its select has let go of stop */
    r = command(c, "GET hoare:counter");
    long counter = r && r->type == REDIS_REPLY_STRING ? atol(r->str) : -1;
    if (r) freeReplyObject(r);
    disconnect_redis(c);
    hoare_chan_release(stop);
    if (atomic_load(&failures) || counter != (long)n * rounds) {
        fprintf(stderr, "failed: %d goroutines failed, counter %ld (want %ld)\n", atomic_load(&failures),
                counter, (long)n * rounds);
        return 1;
    }
    printf("ok: %d goroutines, %ld commands, counter %ld, at most %d threads\n", n,
           atomic_load(&commands), counter, max_threads);
    return 0;
}

int main(int argc, char **argv) { return hoare_main(app, argc, argv); }
