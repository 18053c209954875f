/*
 * worker_pool.c - a worker pool with cancellation: a producer feeds jobs into a channel, N worker
 * goroutines (a hoare_group) take them, "work" on each for a few milliseconds, and send results
 * back. Everything runs under a context with a timeout: when it expires, the producer stops, the
 * workers abandon the job at hand, and the group reports ETIMEDOUT.
 *
 * Run twice: with a generous timeout every job completes; with a short one the pool is cut off.
 */
#include <errno.h>
#include <hoare.h>
#include <stdio.h>
#include <string.h>

#define WORKERS 4
#define JOBS 24

struct result {
    int job;
    int worker;
    long answer;
};

struct pool {
    hoare_chan *jobs;    /* int: job numbers; closed by the producer when it is done */
    hoare_chan *results; /* struct result */
    int next_worker_id;  /* under id_mu */
    hoare_mutex id_mu;
};

static const char *err_name(int err) {
    return err == 0           ? "ok"
           : err == ETIMEDOUT ? "deadline exceeded"
           : err == ECANCELED ? "cancelled"
                              : strerror(err);
}

/* Sleep for ns unless ctx is cancelled first: 0, or the context's error. */
static int work_for(hoare_ctx *ctx, int64_t ns) {
    hoare_case done[] = {HOARE_RECV(hoare_ctx_done(ctx), NULL)};
    if (hoare_select_timeout(done, 1, ns) == 0) return hoare_ctx_err(ctx);
    return 0;
}

/* Collatz steps: the "answer" to a job. */
static long collatz_steps(long n) {
    long steps = 0;
    for (; n != 1; steps++) n = n % 2 ? 3 * n + 1 : n / 2;
    return steps;
}

static int producer(hoare_ctx *ctx, void *arg) {
    struct pool *p = arg;
    int err = 0;
    for (int job = 1; job <= JOBS && !err; job++) {
        hoare_case cs[] = {HOARE_SEND(p->jobs, &job), HOARE_RECV(hoare_ctx_done(ctx), NULL)};
        if (hoare_select(cs, 2) == 1) err = hoare_ctx_err(ctx);
    }
    hoare_close(p->jobs); /* no more jobs: workers drain what is left and stop */
    return err;
}

static int worker(hoare_ctx *ctx, void *arg) {
    struct pool *p = arg;
    hoare_mutex_lock(&p->id_mu);
    int me = ++p->next_worker_id;
    hoare_mutex_unlock(&p->id_mu);
    for (;;) {
        int job;
        hoare_case cs[] = {HOARE_RECV(p->jobs, &job), HOARE_RECV(hoare_ctx_done(ctx), NULL)};
        int which = hoare_select(cs, 2);
        if (which == 1) return hoare_ctx_err(ctx); /* cancelled while idle */
        if (cs[0].err == EPIPE) return 0;          /* jobs closed and drained */
        int err = work_for(ctx, (2 + job % 4) * HOARE_MS);
        if (err) {
            printf("  worker %d: job %2d abandoned (%s)\n", me, job, err_name(err));
            return err;
        }
        struct result r = {job, me, collatz_steps(27L * job)};
        hoare_case out[] = {HOARE_SEND(p->results, &r), HOARE_RECV(hoare_ctx_done(ctx), NULL)};
        if (hoare_select(out, 2) == 1) return hoare_ctx_err(ctx);
    }
}

struct closer {
    hoare_group *group;
    hoare_chan *results; /* the closer's own reference */
    int group_err;
};

/* Wait for the group, then close the results channel so that the collector's loop ends. */
static void close_when_done(void *arg) {
    struct closer *c = arg;
    hoare_chan *results = c->results;
    c->group_err = hoare_group_wait(c->group);
    hoare_close(results); /* from here on the collector may go: touch c no more */
    hoare_chan_release(results);
}

static int run_pool(int64_t timeout) {
    printf("pool of %d workers, %d jobs, timeout %lld ms\n", WORKERS, JOBS,
           (long long)(timeout / HOARE_MS));
    hoare_ctx *ctx = hoare_ctx_with_timeout(NULL, timeout);
    hoare_group *g = hoare_group_new(ctx);
    struct pool p = {.jobs = hoare_chan_make(sizeof(int), 0),
                     .results = hoare_chan_make(sizeof(struct result), WORKERS)};
    if (!ctx || !g || !p.jobs || !p.results) {
        fprintf(stderr, "out of memory\n");
        return -1;
    }
    hoare_group_go(g, producer, &p);
    for (int i = 0; i < WORKERS; i++) hoare_group_go(g, worker, &p);

    struct closer closer = {g, hoare_chan_retain(p.results), 0};
    hoare_go(close_when_done, &closer);

    int done = 0;
    struct result r;
    while (hoare_recv(p.results, &r) == 0) { /* until the closer closes it */
        printf("  worker %d: job %2d -> %ld steps\n", r.worker, r.job, r.answer);
        done++;
    }
    printf("  %d of %d jobs done; group: %s; context: %s\n", done, JOBS, err_name(closer.group_err),
           hoare_ctx_err(ctx) ? err_name(hoare_ctx_err(ctx)) : "not cancelled");
    hoare_group_free(g);
    hoare_ctx_release(ctx);
    hoare_chan_release(p.jobs);
    hoare_chan_release(p.results);
    return done;
}

static int app(int argc, char **argv) {
    (void)argc, (void)argv;
    int all = run_pool(10 * HOARE_SEC); /* plenty of time: all jobs complete */
    int some = run_pool(15 * HOARE_MS); /* too short: the pool is cut off */
    if (all != JOBS || some < 0 || some >= JOBS) {
        fprintf(stderr, "unexpected: %d and %d jobs done\n", all, some);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) { return hoare_main(app, argc, argv); }
