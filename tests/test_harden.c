/*
 * test_harden.c - regression tests for the bugs the fuzzer (fuzz/) and fault injection found, one
 * function per bug, each failing (or crashing under ASan) before its fix.
 */
#include "test.h"

/* select_commit read the select's state (on the selecting goroutine's stack) after arming the
 * timeout timer. With no channel case there is no channel lock to hold the goroutine back: the
 * timer could fire on another thread, the goroutine return from hoare_select_timeout and reuse its
 * stack while the commit still read it (ASan: unknown-crash in select_commit; in the optimised
 * build, a garbage case count unlocked random memory). Found once by fuzz_chan (its input is
 * fuzz/corpus/chan/regress-select-commit-timer). The window is a few instructions wide: this
 * stress (short timeouts that park, more scheduler threads than cores to fire them) makes it
 * possible, not likely; it did not reproduce the bug in our runs, the fuzzer did. */
static atomic_int timed_done;
static void timed_empty_selects(void *arg) {
    int n = (int)(intptr_t)arg;
    for (int i = 0; i < n; i++) {
        int r = hoare_select_timeout(NULL, 0, (int64_t)(i % 8) * HOARE_US);
        CHECK(r == -1);
        /* deeper frames overwrite where the select's state was */
        volatile char scrub[512];
        for (size_t k = 0; k < sizeof scrub; k++) scrub[k] = (char)0xff;
    }
    atomic_fetch_add(&timed_done, 1);
}

static void test_select_timeout_no_cases(void) {
    int g = 8, n = TEST_SCALE(50000);
    int old = hoare_procs(8); /* more scheduler threads to run the timers on */
    for (int i = 0; i < g; i++) REQUIRE(hoare_go(timed_empty_selects, (void *)(intptr_t)n) == 0);
    while (atomic_load(&timed_done) < g) hoare_sleep(HOARE_MS);
    CHECK_EQ(test_wait_count(0), 0);
    hoare_procs(old);
}

int main(int argc, char **argv) {
    (void)argc;
    test_begin(argv, 120);
    test_select_timeout_no_cases();
    TEST_MAIN_END();
}
