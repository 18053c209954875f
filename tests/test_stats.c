/*
 * test_stats.c - hoare_stats_read agrees with what the test did: goroutines created and alive,
 * parks counted by reason, switches, processors, the run-queue wait histogram.
 */
#include "test.h"

#include <stdbool.h>

static uint64_t parks_of(const hoare_stats *s, const char *reason) {
    for (size_t i = 0; i < s->nreasons; i++)
        if (!strcmp(s->parks_by_reason[i].reason, reason)) return s->parks_by_reason[i].count;
    return 0;
}

static void park_once(void *arg) {
    hoare_recv(arg, NULL); /* parks once: "chan receive", until the channel is closed */
}

enum { N = 100 };

static void test_counts(void) {
    hoare_stats s0, s1, s2;
    CHECK_EQ(hoare_stats_read(NULL), EINVAL);
    CHECK_EQ(hoare_stats_read(&s0), 0);
    hoare_chan *c = hoare_chan_make(0, 0);
    for (int i = 0; i < N; i++) REQUIRE(hoare_go(park_once, c) == 0);
    /* wait until every one of them parked */
    int64_t deadline = hoare_now() + 20 * HOARE_SEC;
    do {
        hoare_sleep(HOARE_MS);
        hoare_stats_read(&s1);
    } while (parks_of(&s1, "chan receive") - parks_of(&s0, "chan receive") < N && hoare_now() < deadline);
    CHECK_EQ(s1.goroutines_created - s0.goroutines_created, N);
    CHECK_EQ(s1.goroutines, s0.goroutines + N);
    CHECK_EQ(parks_of(&s1, "chan receive") - parks_of(&s0, "chan receive"), N);
    CHECK(s1.parks - s0.parks >= N);
    hoare_close(c);
    CHECK_EQ(test_wait_count(s0.goroutines), s0.goroutines);
    hoare_stats_read(&s2);
    CHECK_EQ(s2.goroutines_created - s0.goroutines_created, N);
    CHECK_EQ(parks_of(&s2, "chan receive") - parks_of(&s0, "chan receive"), N); /* no more parks */
    CHECK(s2.switches - s0.switches >= 2 * N); /* each ran, parked, ran again */
    CHECK_EQ(s2.procs, (uint32_t)hoare_procs(0));
    CHECK(s2.procs_idle <= s2.procs);
    CHECK(s2.threads >= 1 && s2.threads_idle <= s2.threads);
    uint64_t waits = 0;
    for (int i = 0; i < HOARE_STATS_WAIT_BUCKETS; i++) waits += s2.runq_wait[i] - s0.runq_wait[i];
    CHECK(waits > 0); /* 1 in 8 of the 2N readies and spawns are timed */
    hoare_chan_release(c);
}

static void spawner(void *arg) {
    hoare_chan *c = arg;
    for (int i = 0; i < N; i++) REQUIRE(hoare_go(park_once, c) == 0); /* from a goroutine */
    hoare_close(c);
}

static void test_created_by_goroutines(void) {
    hoare_stats s0, s1;
    hoare_stats_read(&s0);
    hoare_chan *c = hoare_chan_make(0, 0);
    REQUIRE(hoare_go(spawner, c) == 0);
    CHECK_EQ(test_wait_count(s0.goroutines), s0.goroutines);
    hoare_stats_read(&s1);
    CHECK_EQ(s1.goroutines_created - s0.goroutines_created, N + 1);
    hoare_chan_release(c);
}

int main(int argc, char **argv) {
    (void)argc;
    test_begin(argv, 120);
    test_counts();
    test_created_by_goroutines();
    TEST_MAIN_END();
}
