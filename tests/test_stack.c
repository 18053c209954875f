/*
 * test_stack.c - stacks: 1,111,111 goroutines alive at once under the default vm.max_map_count
 * (guard pages that do not split mappings), the stack overflow messages (child processes; the main
 * goroutine's names the main-thread stack limit; a later slot of a size the cache does not hold), a
 * large requested stack, and sizes no address space holds (ENOMEM).
 */
#include "test.h"

#include <stdint.h>
#include <sys/resource.h>

static hoare_wg started, gate, finished;

static void parked(void *arg) {
    (void)arg;
    hoare_wg_done(&started);
    hoare_wg_wait(&gate);
    hoare_wg_done(&finished);
}

static int count_mappings(void) {
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return -1;
    int n = 0, c;
    while ((c = fgetc(f)) != EOF) n += c == '\n';
    fclose(f);
    return n;
}

static void test_many_live(void) {
    long n = TEST_SCALE(1111111L);
    hoare_wg_add(&started, (int)n);
    hoare_wg_add(&gate, 1);
    hoare_wg_add(&finished, (int)n);
    for (long i = 0; i < n; i++) REQUIRE(hoare_go(parked, NULL) == 0);
    hoare_wg_wait(&started);
    CHECK(hoare_count() >= (size_t)n);
    int maps = count_mappings();
    /* one mapping per slab of stacks, not one or two per stack */
    CHECK(maps > 0 && maps < 20000);
    hoare_wg_done(&gate);
    hoare_wg_wait(&finished);
}

/* ---- overflow: a runaway recursion in a goroutine with a small stack */

static volatile int runaway_limit = 1 << 30; /* never reached: the stack is far smaller */

static int runaway(int depth) {
    volatile char frame[512];
    frame[0] = (char)depth;
    if (depth >= runaway_limit) return 0;
    return runaway(depth + 1) + frame[0];
}

static void overflow(void *arg) {
    (void)arg;
    printf("%d\n", runaway(0));
}

static int child_overflow(void) {
    hoare_attr attr = {.stack_size = 64 * 1024, .name = "runaway"};
    hoare_go_with(&attr, overflow, NULL);
    hoare_sleep(10 * HOARE_SEC); /* the overflow ends the process long before */
    return 0;
}

/* Every slot has its guard, not only the first carved of a size: an overflow in the seventh slot of
 * a third size, which the spawning thread's cache does not hold (the cache keeps the default size
 * and one other), is caught as well. */
static void park_forever(void *arg) {
    (void)arg;
    hoare_wg_wait(&gate);
}

static int child_overflow_in_batch(void) {
    hoare_wg_add(&gate, 1);
    hoare_attr other = {.stack_size = 64 * 1024};
    REQUIRE(hoare_go_with(&other, park_forever, NULL) == 0); /* the cache's second size */
    hoare_attr third = {.stack_size = 96 * 1024};
    for (int i = 0; i < 5; i++) REQUIRE(hoare_go_with(&third, park_forever, NULL) == 0);
    hoare_attr attr = {.stack_size = 96 * 1024, .name = "runaway"};
    hoare_go_with(&attr, overflow, NULL);
    hoare_sleep(10 * HOARE_SEC);
    return 0;
}

/* The main goroutine's stack follows RLIMIT_STACK: its overflow says to raise that. */
static int app_runaway(int argc, char **argv) {
    (void)argc, (void)argv;
    return runaway(0);
}

static int child_main_overflow(void) {
    struct rlimit rl;
    REQUIRE(getrlimit(RLIMIT_STACK, &rl) == 0);
    rl.rlim_cur = 256 * 1024;
    REQUIRE(setrlimit(RLIMIT_STACK, &rl) == 0);
    return hoare_main(app_runaway, 0, NULL);
}

static void test_main_overflow_message(void) {
    char out[8192];
    int status = test_run_self("main-overflow", NULL, out, sizeof out);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 2);
    CHECK(strstr(out, "stack overflow in goroutine") != NULL);
    CHECK(strstr(out, "(main)") != NULL);
    CHECK(strstr(out, "main-thread stack limit") != NULL);
    CHECK(strstr(out, "hoare_attr.stack_size") == NULL);
    if (!strstr(out, "main-thread stack limit")) fprintf(stderr, "child said: %s\n", out);
}

/* The child's report names the goroutine "runaway" and a usable stack of at least kib KiB. */
static void check_overflow_report(const char *child, long kib) {
    char out[8192];
    int status = test_run_self(child, NULL, out, sizeof out);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 2);
    CHECK(strstr(out, "stack overflow in goroutine") != NULL);
    CHECK(strstr(out, "(runaway)") != NULL);
    /* the size reported is the usable stack: at least the size asked for (the slot is rounded up
     * to whole pages, and all of it below the descriptor is usable) */
    const char *at = strstr(out, "its stack is ");
    long reported = at ? strtol(at + strlen("its stack is "), NULL, 10) : 0;
    CHECK(reported >= kib * 1024 && reported < kib * 1024 + 8192);
    if (!strstr(out, "stack overflow")) fprintf(stderr, "%s child said: %s\n", child, out);
}

static void test_overflow_message(void) {
    check_overflow_report("overflow", 64);
    check_overflow_report("overflow-in-batch", 96);
}

/* sizes no address space holds fail with ENOMEM: they overflowed the rounding before, giving a
 * small stack (SIZE_MAX) or a crash inside hoare_go_with (SIZE_MAX - 4095) */
static void never_runs(void *arg) { (void)arg; }

static void test_huge_sizes(void) {
    size_t sizes[] = {SIZE_MAX, SIZE_MAX - 4095, SIZE_MAX - 16383, SIZE_MAX / 2, (size_t)1 << 49};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        hoare_attr attr = {.stack_size = sizes[i]};
        CHECK_EQ(hoare_go_with(&attr, never_runs, NULL), ENOMEM);
    }
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "overflow") == 0) return child_overflow();
    if (argc > 1 && strcmp(argv[1], "main-overflow") == 0) return child_main_overflow();
    if (argc > 1 && strcmp(argv[1], "overflow-in-batch") == 0) return child_overflow_in_batch();
    test_begin(argv, 240);
    test_huge_sizes();
    test_many_live();
    /* qemu-user does not deliver a guard page's fault to the program's handler */
    if (!getenv("HOARE_TEST_EMULATOR")) {
        test_overflow_message();
        test_main_overflow_message();
    }
    TEST_MAIN_END();
}
