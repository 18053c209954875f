/*
 * test_gdb.c - the gdb extension (gdb/hoare-gdb.py): gdb runs a child scenario of this test until
 * it stops itself (SIGTRAP) with named goroutines parked, lists them live, writes a core file
 * (gcore: no dependence on the system's core_pattern), and a second gdb lists the goroutines of the
 * core file and unwinds one of them ("goroutine N bt").
 * Skipped (with the reason) without gdb, where ptrace is refused, under sanitizers (their shadow
 * memory makes core files huge) and under emulation.
 */
#include "test.h"

#include <stdbool.h>

#ifndef HOARE_SOURCE_DIR
#error "HOARE_SOURCE_DIR: the source tree (for gdb/hoare-gdb.py)"
#endif

static void leaf_waits(hoare_chan *c) {
    hoare_recv(c, NULL);
}

static void middle(void *arg) {
    leaf_waits(arg);
    __asm__ __volatile__("" ::: "memory");
}

static int child_parked(void) {
    hoare_chan *c = hoare_chan_make(0, 0);
    hoare_attr a = {.name = "gdb-first"}, b = {.name = "gdb-second"};
    hoare_go_with(&a, middle, c);
    hoare_go_with(&b, middle, c);
    while (hoare_count() != 2) hoare_sleep(HOARE_MS);
    hoare_sleep(20 * HOARE_MS); /* both parked */
    raise(SIGTRAP);             /* gdb stops here */
    return 0;
}

/* Run a shell command, its stdout and stderr into out. */
static int run(const char *cmd, char *out, size_t cap) {
    FILE *p = popen(cmd, "r");
    REQUIRE(p != NULL);
    size_t len = fread(out, 1, cap - 1, p);
    out[len] = 0;
    return pclose(p);
}

static bool has(const char *out, const char *what) {
    bool ok = strstr(out, what) != NULL;
    if (!ok) fprintf(stderr, "missing \"%s\" in:\n%s\n", what, out);
    return ok;
}

int main(int argc, char **argv) {
    if (argc > 1) return strcmp(argv[1], "parked") == 0 ? child_parked() : 99;
    test_begin(argv, 240);
    if (TEST_SANITIZED || getenv("HOARE_TEST_EMULATOR")) {
        printf("skipped: core files of sanitizer or emulated builds are not tested\n");
        TEST_MAIN_END();
    }
    if (system("command -v gdb >/dev/null 2>&1") != 0) {
        printf("skipped: gdb is not installed\n");
        TEST_MAIN_END();
    }
    alarm(0);
    alarm(240);
    char core[] = "/tmp/hoare_gdb_XXXXXX";
    int fd = mkstemp(core);
    REQUIRE(fd >= 0);
    close(fd);
    const char *script = HOARE_SOURCE_DIR "/gdb/hoare-gdb.py";
    static char cmd[8192], out[1 << 16];
    /* HOARE_STACK_GUARD=0: gcore reads memory in large chunks and drops a chunk that holds a
     * guard page, stacks included (a kernel core dump has no such problem) */
    snprintf(cmd, sizeof cmd,
             "HOARE_STACK_GUARD=0 gdb -nx -batch -ex run -ex 'gcore %s' -ex 'source %s' -ex 'info goroutines' "
             "-ex kill --args %s parked 2>&1",
             core, script, test_argv0);
    run(cmd, out, sizeof out);
    if (strstr(out, "ptrace: Operation not permitted") || strstr(out, "Couldn't get CS register")) {
        printf("skipped: gdb may not trace processes here (ptrace refused)\n");
        unlink(core);
        TEST_MAIN_END();
    }
    CHECK(has(out, "gdb-first"));
    CHECK(has(out, "gdb-second"));
    CHECK(has(out, "chan receive"));

    snprintf(cmd, sizeof cmd, "gdb -nx -batch -ex 'source %s' -ex 'info goroutines' %s %s 2>&1", script,
             test_argv0, core);
    run(cmd, out, sizeof out);
    CHECK(has(out, "gdb-first"));
    CHECK(has(out, "gdb-second"));
    /* the id of gdb-first, from its line: "     7  waiting   chan receive   gdb-first" */
    const char *line = strstr(out, "gdb-first");
    unsigned long goid = 0;
    if (line) {
        while (line > out && line[-1] != '\n') line--;
        goid = strtoul(line, NULL, 10);
    }
    CHECK(goid > 0);
    snprintf(cmd, sizeof cmd, "gdb -nx -batch -ex 'source %s' -ex 'goroutine %lu bt' %s %s 2>&1", script,
             goid, test_argv0, core);
    run(cmd, out, sizeof out);
    CHECK(has(out, "[chan receive]: gdb-first"));
    CHECK(has(out, "leaf_waits"));
    CHECK(has(out, "middle"));
    CHECK(has(out, "test_gdb.c:"));
    unlink(core);
    TEST_MAIN_END();
}
