/*
 * test_fdio_race.c - stress: closes racing with readers and writers (parked or about to be),
 * deadlines being moved while readiness arrives, descriptor numbers reused round after round. Every
 * call must return something sane, no waiter may be lost (the watchdog catches a hang), and no
 * descriptor may leak.
 *
 * Rounds run one after another: within a round no descriptor is created, so a call that starts
 * after its descriptor was closed meets a closed number (-EBADF), never a reused one (which would be
 * the caller's bug, as with close(2)). Each descriptor is closed by exactly one party.
 */
#include "test.h"

#include <dirent.h>
#include <sys/socket.h>

#include "runtime.h"

static _Atomic int bad_results;

static void bad(const char *what, long long result) {
    atomic_fetch_add(&bad_results, 1);
    fprintf(stderr, "unexpected: %s returned %lld\n", what, result);
}

static int open_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    REQUIRE(d != NULL);
    int n = 0;
    while (readdir(d)) n++;
    closedir(d);
    return n;
}

struct round {
    int sv[2];
    uint32_t seed;
    bool closer_closes_both; /* else the writer closes its end when it stops */
    hoare_wg *wg;
};

static uint32_t next_rand(uint32_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static void race_reader(void *p) {
    struct round *r = p;
    uint32_t seed = r->seed * 3 + 1;
    char buf[512];
    for (;;) {
        if (next_rand(&seed) % 4 == 0)
            hoare_fd_set_read_deadline(r->sv[0], hoare_now() + (int64_t)(next_rand(&seed) % 500) * HOARE_US);
        ssize_t n = hoare_fd_read(r->sv[0], buf, sizeof buf);
        if (n > 0 || n == -ETIMEDOUT) continue;
        if (n != 0 && n != -EBADF && n != -ECONNRESET) bad("read", n);
        break;
    }
    hoare_wg_done(r->wg);
}

static void race_writer(void *p) {
    struct round *r = p;
    uint32_t seed = r->seed * 5 + 2;
    static const char chunk[4096];
    for (;;) {
        if (next_rand(&seed) % 8 == 0)
            hoare_fd_set_write_deadline(r->sv[1], hoare_now() + (int64_t)(next_rand(&seed) % 500) * HOARE_US);
        ssize_t n = hoare_fd_write(r->sv[1], chunk, 1 + next_rand(&seed) % sizeof chunk);
        if (n > 0 || n == -ETIMEDOUT) continue;
        if (n != -EBADF && n != -EPIPE && n != -ECONNRESET) bad("write", n);
        break;
    }
    if (!r->closer_closes_both) {
        int e = hoare_fd_close(r->sv[1]);
        if (e != 0) bad("close of the writer's end", e);
    }
    hoare_wg_done(r->wg);
}

/* Closes the reader's end after a short random while, and the writer's if it is its job. */
static void race_closer(void *p) {
    struct round *r = p;
    uint32_t seed = r->seed * 7 + 3;
    uint32_t wait = next_rand(&seed) % 3;
    if (wait == 1) hoare_yield();
    else if (wait == 2) hoare_sleep((int64_t)(next_rand(&seed) % 300) * HOARE_US);
    int e = hoare_fd_close(r->sv[0]);
    if (e != 0) bad("close of the reader's end", e);
    if (r->closer_closes_both) {
        e = hoare_fd_close(r->sv[1]);
        if (e != 0) bad("close of the writer's end", e);
    }
    hoare_wg_done(r->wg);
}

enum { PAIRS = 8 };

static void run_round(int round_no) {
    hoare_wg wg = HOARE_WG_INIT;
    struct round r[PAIRS];
    for (int i = 0; i < PAIRS; i++) {
        uint32_t seed = (uint32_t)(round_no * PAIRS + i) * 2654435761u | 1;
        r[i] = (struct round){.seed = seed, .closer_closes_both = seed % 3 == 0, .wg = &wg};
        REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, r[i].sv) == 0);
    }
    hoare_wg_add(&wg, 3 * PAIRS);
    for (int i = 0; i < PAIRS; i++) {
        REQUIRE(hoare_go(race_reader, &r[i]) == 0);
        REQUIRE(hoare_go(race_writer, &r[i]) == 0);
        REQUIRE(hoare_go(race_closer, &r[i]) == 0);
    }
    hoare_wg_wait(&wg);
}

int main(int argc, char **argv) {
    test_begin(argv, 120);
    run_round(0); /* first, so that the runtime's own descriptors (poller) exist before counting */
    int before = open_fds();
    for (int i = 1; i <= TEST_SCALE(1000); i++) run_round(i);
    CHECK_EQ(atomic_load(&bad_results), 0);
    CHECK_EQ(hoare__netpoll_waiters(), 0);
    CHECK_EQ(open_fds(), before); /* every descriptor was closed */
    TEST_MAIN_END();
}
