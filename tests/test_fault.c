/*
 * test_fault.c - fault injection (builds with -DHOARE_FAULT_INJECTION=ON; skipped otherwise).
 *
 * A scripted workload (child scenario "workload") touches every kind of resource the runtime
 * acquires: channels, goroutines (default and a larger stack class), select scratch memory, timers,
 * tickers, contexts, groups, sockets and the poller. Every public call that fails must fail with its
 * documented error; the workload then retries it, and the retry must succeed (the fault is gone).
 * Every message whose send returned 0 must be received, in order.
 *
 * The test runs the workload once without a fault to count the runtime's wrapped calls (K), then
 * once for every N in 1..K (plus a margin: thread start-up varies a little) with the N-th call
 * failing (HOARE_FAULT_AT=N). Each run must end with status 0, or with a fatal error whose message
 * names the problem (the runtime cannot go on without, e.g., its first processor); never with a
 * crash, a sanitizer report (ASan checks leaks at exit) or a hang.
 *
 * The same workload also runs under a low address-space limit (RLIMIT_AS) and with descriptors
 * exhausted: scenarios "rlimit-as" and "no-fds".
 */
#include "test.h"

#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "fault.h"

/* errno read through a call the compiler cannot see into (see hoare.h on errno and migration) */
__attribute__((noinline)) static int get_errno(void) { return errno; }

static int retries;

/* Retry `call` (an expression that yields success as true) while it fails with an allowed error. */
#define RETRY(ok_expr, err_expr, ...)                                                              \
    do {                                                                                           \
        for (int tries_ = 0;; tries_++) {                                                          \
            if (ok_expr) break;                                                                    \
            int e_ = (err_expr);                                                                   \
            int allowed_[] = {__VA_ARGS__};                                                        \
            int fine_ = 0;                                                                         \
            for (size_t k_ = 0; k_ < sizeof allowed_ / sizeof *allowed_; k_++) fine_ |= e_ == allowed_[k_]; \
            if (!fine_ || tries_ > 3) {                                                            \
                fprintf(stderr, "%s:%d: %s failed with %d (%s)\n", __FILE__, __LINE__, #ok_expr,   \
                        e_, strerror(e_));                                                         \
                exit(1);                                                                           \
            }                                                                                      \
            retries++;                                                                             \
        }                                                                                          \
    } while (0)

#define NMSG 100

static void producer(void *arg) {
    hoare_chan *c = arg;
    for (uint64_t i = 0; i < NMSG; i++) REQUIRE(hoare_send(c, &i) == 0);
    REQUIRE(hoare_close(c) == 0);
    hoare_chan_release(c);
}

static hoare_wg wg;
static void sleeper(void *arg) {
    hoare_chan *u = arg;
    hoare_sleep(100 * HOARE_US);
    uint64_t one = 1;
    REQUIRE(hoare_send(u, &one) == 0);
    hoare_wg_done(&wg);
}

static void big_stack(void *arg) {
    volatile char buf[256 * 1024];
    buf[0] = 1;
    buf[sizeof buf - 1] = 2;
    REQUIRE(hoare_send(arg, NULL) == 0);
}

static int group_task(hoare_ctx *ctx, void *arg) {
    (void)ctx;
    return *(int *)arg;
}

static void echo(void *arg) {
    int fd = (int)(intptr_t)arg;
    char buf[64];
    ssize_t n;
    while ((n = hoare_fd_read(fd, buf, sizeof buf)) > 0)
        if (hoare_fd_write(fd, buf, (size_t)n) != n) break;
    hoare_fd_close(fd);
}

static void start(void (*fn)(void *), void *arg) {
    int r;
    RETRY((r = hoare_go(fn, arg)) == 0, r, EAGAIN, ENOMEM);
}

static hoare_chan *make_chan(size_t elem, size_t cap) {
    hoare_chan *c;
    RETRY((c = hoare_chan_make(elem, cap)) != NULL, get_errno(), ENOMEM);
    return c;
}

static void workload(void) {
    /* channels and goroutines; every message sent is received, in order */
    hoare_chan *c = make_chan(sizeof(uint64_t), 4);
    start(producer, hoare_chan_retain(c));
    for (uint64_t i = 0; i < NMSG; i++) {
        uint64_t v = UINT64_MAX;
        REQUIRE(hoare_recv(c, &v) == 0);
        REQUIRE(v == i);
    }
    REQUIRE(hoare_recv(c, NULL) == EPIPE);
    hoare_chan_release(c);

    /* many goroutines, each with a timer */
    hoare_chan *u = make_chan(sizeof(uint64_t), 0);
    for (int i = 0; i < 20; i++) {
        hoare_wg_add(&wg, 1);
        start(sleeper, u);
    }
    for (int i = 0; i < 20; i++) REQUIRE(hoare_recv(u, NULL) == 0);
    hoare_wg_wait(&wg);
    hoare_chan_release(u);

    /* a goroutine of another stack class */
    hoare_chan *sig = make_chan(0, 0);
    hoare_attr attr = {.stack_size = 512 * 1024, .name = "big"};
    int r;
    RETRY((r = hoare_go_with(&attr, big_stack, sig)) == 0, r, EAGAIN, ENOMEM);
    REQUIRE(hoare_recv(sig, NULL) == 0);
    hoare_chan_release(sig);

    /* a select over more cases than fit on the stack (scratch memory) */
    enum { NC = 20 };
    hoare_chan *cs[NC];
    hoare_case cases[NC];
    for (int i = 0; i < NC; i++) {
        cs[i] = make_chan(sizeof(uint64_t), 1);
        cases[i] = (hoare_case)HOARE_RECV(cs[i], NULL);
    }
    uint64_t seven = 7, got = 0;
    REQUIRE(hoare_send(cs[13], &seven) == 0);
    cases[13].elem = &got;
    RETRY((r = hoare_select_try(cases, NC)) >= 0, get_errno(), ENOMEM);
    REQUIRE(r == 13 && got == 7);
    RETRY((r = hoare_select_timeout(cases, NC, HOARE_MS)) < 0 && get_errno() == ETIMEDOUT, get_errno(), ENOMEM);
    for (int i = 0; i < NC; i++) hoare_chan_release(cs[i]);

    /* timers, tickers, after */
    hoare_chan *a;
    RETRY((a = hoare_after(HOARE_MS)) != NULL, get_errno(), ENOMEM);
    REQUIRE(hoare_recv(a, NULL) == 0);
    hoare_chan_release(a);
    hoare_timer *t;
    RETRY((t = hoare_timer_start(HOARE_MS)) != NULL, get_errno(), ENOMEM);
    REQUIRE(hoare_recv(hoare_timer_chan(t), NULL) == 0);
    hoare_timer_free(t);
    hoare_ticker *tk;
    RETRY((tk = hoare_ticker_start(HOARE_MS)) != NULL, get_errno(), ENOMEM);
    REQUIRE(hoare_recv(hoare_ticker_chan(tk), NULL) == 0);
    hoare_ticker_stop(tk);

    /* contexts and groups */
    hoare_ctx *ctx;
    RETRY((ctx = hoare_ctx_with_timeout(NULL, HOARE_MS)) != NULL, get_errno(), ENOMEM);
    REQUIRE(hoare_recv(hoare_ctx_done(ctx), NULL) == EPIPE);
    REQUIRE(hoare_ctx_err(ctx) == ETIMEDOUT);
    hoare_ctx_release(ctx);
    hoare_group *g;
    RETRY((g = hoare_group_new(NULL)) != NULL, get_errno(), ENOMEM);
    static int zero = 0, five = 5;
    RETRY((r = hoare_group_go(g, group_task, &zero)) == 0, r, EAGAIN, ENOMEM);
    RETRY((r = hoare_group_go(g, group_task, &five)) == 0, r, EAGAIN, ENOMEM);
    REQUIRE(hoare_group_wait(g) == 5);
    hoare_group_free(g);

    /* sockets on loopback and the poller */
    int lfd;
    RETRY((lfd = hoare_net_listen("tcp", "127.0.0.1:0")) >= 0, -lfd, ENOMEM, EMFILE, ENOBUFS);
    struct sockaddr_in sa;
    socklen_t slen = sizeof sa;
    REQUIRE(getsockname(lfd, (struct sockaddr *)&sa, &slen) == 0);
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(sa.sin_port));
    int cfd, sfd;
    for (int tries = 0;; tries++) {
        RETRY((cfd = hoare_net_dial("tcp", addr, 5 * HOARE_SEC)) >= 0, -cfd, ENOMEM, EMFILE, ENOBUFS);
        sfd = hoare_fd_accept(lfd, NULL, NULL);
        if (sfd >= 0) break;
        /* The connection was accepted but could not be registered: accept closed it (as Go does)
         * and the client has to dial again. */
        REQUIRE((sfd == -ENOMEM || sfd == -EMFILE) && tries < 3);
        retries++;
        REQUIRE(hoare_fd_close(cfd) == 0);
    }
    start(echo, (void *)(intptr_t)sfd);
    for (int i = 0; i < 3; i++) {
        char out[16], in[16] = {0};
        int len = snprintf(out, sizeof out, "ping %d", i);
        ssize_t w;
        RETRY((w = hoare_fd_write(cfd, out, (size_t)len)) == len, (int)-w, ENOMEM);
        ssize_t got_n = 0;
        while (got_n < len) {
            ssize_t n = hoare_fd_read(cfd, in + got_n, sizeof in - 1 - (size_t)got_n);
            if (n == -ENOMEM) continue;
            REQUIRE(n > 0);
            got_n += n;
        }
        REQUIRE(memcmp(in, out, (size_t)len) == 0);
    }
    REQUIRE(hoare_fd_close(cfd) == 0);
    REQUIRE(hoare_fd_close(lfd) == 0);
    /* nothing left behind */
    REQUIRE(test_wait_count(0) == 0);
}

/* Fill the descriptor table (under a low RLIMIT_NOFILE); free_fds(k) gives k back. */
static struct rlimit nofile;
static int held[64], nheld;
static void exhaust_fds(void) {
    REQUIRE(getrlimit(RLIMIT_NOFILE, &nofile) == 0);
    struct rlimit rl = {64, nofile.rlim_max};
    REQUIRE(setrlimit(RLIMIT_NOFILE, &rl) == 0);
    for (;;) {
        int fd = dup(2);
        if (fd < 0) break;
        REQUIRE(nheld < 64);
        held[nheld++] = fd;
    }
}
static void free_fds(int k) {
    for (int i = 0; i < k && nheld > 0; i++) close(held[--nheld]);
}

static void wait_block(void *c) { hoare_recv(c, NULL); }

int main(int argc, char **argv) {
    test_begin(argv, 240);
#ifdef HOARE_FAULT_INJECTION
    if (argc > 1 && strcmp(argv[1], "workload") == 0) {
        workload();
        fprintf(stderr, "calls=%llu fired=%d retries=%d\n", (unsigned long long)hoare__fault_calls(),
                hoare__fault_fired(), retries);
        return 0;
    }
#endif
    if (argc > 1 && strcmp(argv[1], "no-fds") == 0) {
        /* Descriptors exhausted before the runtime starts: the first calls that need one fail with
         * EMFILE, channels and goroutines still work, and once descriptors are free again the
         * poller starts and serves sockets. */
        exhaust_fds();
        int lfd = hoare_net_listen("tcp", "127.0.0.1:0");
        REQUIRE(lfd == -EMFILE);
        /* one descriptor free: the socket can be created, the poller cannot (it needs two) */
        free_fds(1);
        int s = socket(AF_INET, SOCK_STREAM, 0);
        REQUIRE(s >= 0);
        close(s);
        lfd = hoare_net_listen("tcp", "127.0.0.1:0");
        REQUIRE(lfd == -EMFILE);
        hoare_chan *c = hoare_chan_make(sizeof(int), 1);
        REQUIRE(c != NULL);
        REQUIRE(HOARE_SEND_V(c, 5) == 0);
        hoare_chan_release(c);
        /* timers work without the poller */
        hoare_chan *a = hoare_after(HOARE_MS);
        REQUIRE(a && hoare_recv(a, NULL) == 0);
        hoare_chan_release(a);
        hoare_sleep(HOARE_MS);
        free_fds(64);
        REQUIRE(setrlimit(RLIMIT_NOFILE, &nofile) == 0);
        workload();
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "rlimit-as") == 0) {
        /* Address space nearly exhausted: goroutines are refused with EAGAIN/ENOMEM until some end. */
        workload(); /* the runtime is started and warm */
        struct rlimit rl;
        REQUIRE(getrlimit(RLIMIT_AS, &rl) == 0);
        /* a limit a little above what is mapped now */
        FILE *f = fopen("/proc/self/statm", "r");
        REQUIRE(f);
        unsigned long pages = 0;
        REQUIRE(fscanf(f, "%lu", &pages) == 1);
        fclose(f);
        rl.rlim_cur = pages * (unsigned long)sysconf(_SC_PAGESIZE) + 64ul * 1024 * 1024;
        REQUIRE(setrlimit(RLIMIT_AS, &rl) == 0);
        hoare_chan *block = hoare_chan_make(0, 0);
        REQUIRE(block);
        int started = 0, r = 0;
        hoare_attr attr = {.stack_size = 1024 * 1024};
        while ((r = hoare_go_with(&attr, wait_block, block)) == 0) started++;
        REQUIRE(r == EAGAIN || r == ENOMEM);
        REQUIRE(started > 0);
        REQUIRE(hoare_close(block) == 0);
        REQUIRE(test_wait_count(0) == 0); /* then nobody uses the channel */
        hoare_chan_release(block);
        fprintf(stderr, "started=%d then %s\n", started, strerror(r));
        workload(); /* the runtime serves again */
        return 0;
    }

    char out[16384];
    int status;
    status = test_run_self("no-fds", NULL, out, sizeof out);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) fprintf(stderr, "no-fds: %#x\n%s\n", status, out);
    if (TEST_SANITIZED) {
        printf("rlimit-as: skipped (the sanitizers reserve terabytes of shadow address space)\n");
    } else {
        status = test_run_self("rlimit-as", NULL, out, sizeof out);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) fprintf(stderr, "rlimit-as: %#x\n%s\n", status, out);
    }
#ifndef HOARE_FAULT_INJECTION
    printf("fault walk: skipped (built without HOARE_FAULT_INJECTION; the ASan build has it)\n");
#else
    char *env0[] = {"HOARE_FAULT_AT=0", NULL};
    status = test_run_self("workload", env0, out, sizeof out);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    unsigned long long k = 0;
    const char *p = strstr(out, "calls=");
    CHECK(p && sscanf(p, "calls=%llu", &k) == 1 && k > 0);
    printf("workload: %llu wrapped calls\n", k);
    int ok = 0, fatal = 0, bad = 0;
    for (unsigned long long n = 1; n <= k + k / 5 + 5; n++) {
        char e[64];
        snprintf(e, sizeof e, "HOARE_FAULT_AT=%llu", n);
        char *env[] = {e, NULL};
        status = test_run_self("workload", env, out, sizeof out);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
            ok++;
        } else if (WIFEXITED(status) && WEXITSTATUS(status) == 2 &&
                   (strstr(out, "fatal error: out of memory") || strstr(out, "fatal error: cannot start"))) {
            /* the resources the runtime cannot run without (see the file comment) */
            fatal++;
            char *nl = strchr(strstr(out, "fatal error: "), '\n');
            if (nl) *nl = 0;
            printf("N=%llu: %s\n", n, strstr(out, "fatal error: "));
        } else {
            bad++;
            fprintf(stderr, "N=%llu: status %#x, output:\n%s\n", n, status, out);
        }
    }
    printf("fault walk: %d ran through, %d fatal with a message, %d bad\n", ok, fatal, bad);
    CHECK_EQ(bad, 0);
#endif
    TEST_MAIN_END();
}
