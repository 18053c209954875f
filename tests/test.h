/*
 * test.h - the tiny harness shared by the tests.
 *
 * CHECK(cond) records a failure (with file:line) and goes on; TEST_MAIN_END prints the
 * "N passed, N failed" line and returns the exit status. Each test arms a watchdog (alarm) so that a
 * hang fails instead of blocking the suite. Sizes shrink under sanitizers with TEST_SCALE(n).
 * test_run_self(arg) re-executes this test binary with argv[1] = arg (a "child scenario"), captures
 * its stderr and returns its exit status: for fatal errors, deadlocks, overflows.
 * test_dump_text() returns hoare_dump's text; test_dump_until(needle, seconds) dumps until it shows
 * needle (a goroutine parked for a reason), which is how tests wait for a park without sleeping.
 */
#ifndef HOARE_TEST_H
#define HOARE_TEST_H

#include <hoare.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static int test_checks_passed, test_checks_failed;
static const char *test_argv0;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (cond) {                                                                                \
            __atomic_fetch_add(&test_checks_passed, 1, __ATOMIC_RELAXED);                          \
        } else {                                                                                   \
            __atomic_fetch_add(&test_checks_failed, 1, __ATOMIC_RELAXED);                          \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
        }                                                                                          \
    } while (0)

#define CHECK_EQ(a, b)                                                                             \
    do {                                                                                           \
        long long va_ = (long long)(a), vb_ = (long long)(b);                                      \
        if (va_ == vb_) {                                                                          \
            __atomic_fetch_add(&test_checks_passed, 1, __ATOMIC_RELAXED);                          \
        } else {                                                                                   \
            __atomic_fetch_add(&test_checks_failed, 1, __ATOMIC_RELAXED);                          \
            fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %lld, %s == %lld\n", __FILE__,          \
                    __LINE__, #a, va_, #b, vb_);                                                   \
        }                                                                                          \
    } while (0)

/* Abort the run at once (the state is too broken to go on). */
#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #cond);             \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

#ifdef HOARE_TEST_SANITIZER
#define TEST_SANITIZED 1
#else
#define TEST_SANITIZED 0
#endif
#ifdef HOARE_TEST_TSAN
#define TEST_TSAN 1
#else
#define TEST_TSAN 0
#endif
/* Full size in the optimised build, a tenth under ASan, 1/250 under TSan (whose runtime counts
 * every live goroutine against its limit of 8128 threads). */
#define TEST_SCALE(n) (TEST_TSAN ? ((n) / 250 > 0 ? (n) / 250 : 1) : TEST_SANITIZED ? ((n) / 10 > 0 ? (n) / 10 : 1) : (n))

static void test_watchdog(int sig) {
    (void)sig;
    static const char msg[] = "test watchdog: timed out\n";
    if (write(2, msg, sizeof msg - 1) < 0) { /* nothing more to do */ }
    hoare_dump(2);
    _exit(3);
}

/* Under valgrind (which preloads its vgpreload objects into the program): every thread runs in
 * turn, many times slower. */
static inline bool test_under_valgrind(void) {
    const char *preload = getenv("LD_PRELOAD");
    return preload && strstr(preload, "vgpreload");
}

/* Start of main: remember argv[0] and arm the watchdog (seconds; four times as long under a
 * sanitizer or valgrind). */
static inline void test_begin(char **argv, unsigned seconds) {
    test_argv0 = argv[0];
    signal(SIGALRM, test_watchdog);
    alarm(TEST_SANITIZED || test_under_valgrind() ? seconds * 4 : seconds);
}

/* Wait (bounded) until exactly `n` goroutines are alive: goroutines that signalled completion may
 * still be on their way out. Returns the last count seen. */
static inline size_t test_wait_count(size_t n) {
    int64_t deadline = hoare_now() + 20 * HOARE_SEC;
    while (hoare_count() != n && hoare_now() < deadline) hoare_sleep(HOARE_MS);
    return hoare_count();
}

#define TEST_MAIN_END()                                                                            \
    do {                                                                                           \
        printf("%d passed, %d failed\n", test_checks_passed, test_checks_failed);                  \
        fflush(stdout);                                                                            \
        return test_checks_failed ? 1 : 0;                                                         \
    } while (0)

/* posix_spawn argv (argv[0] a path) with file actions fa and environment env. A cross build runs
 * its tests in an emulator (HOARE_TEST_EMULATOR, e.g. "qemu-aarch64 -L /usr/aarch64-linux-gnu"),
 * and the programs they start go through it too. */
static inline pid_t test_spawn(char *const argv[], const posix_spawn_file_actions_t *fa, char *const env[]) {
    char *full[32], emulator[256] = "";
    int n = 0;
    const char *emu = getenv("HOARE_TEST_EMULATOR");
    if (emu && *emu) {
        snprintf(emulator, sizeof emulator, "%s", emu);
        for (char *w = strtok(emulator, " "); w && n < 12; w = strtok(NULL, " ")) full[n++] = w;
    }
    for (int i = 0; argv[i] && n < 31; i++) full[n++] = argv[i];
    full[n] = NULL;
    pid_t pid;
    REQUIRE(posix_spawnp(&pid, full[0], fa, NULL, full, env) == 0);
    return pid;
}

/* Run this binary again with argv[1] = arg and extra environment entries (NULL-terminated list or
 * NULL). Its stderr goes to out (NUL-terminated, truncated to cap). Returns the wait status. */
static inline int test_run_self(const char *arg, char *const *extra_env, char *out, size_t cap) {
    int pipefd[2];
    REQUIRE(pipe(pipefd) == 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], 2);
    posix_spawn_file_actions_addclose(&fa, pipefd[0]);
    size_t nenv = 0, nextra = 0;
    while (environ[nenv]) nenv++;
    while (extra_env && extra_env[nextra]) nextra++;
    char **env = calloc(nenv + nextra + 1, sizeof *env);
    REQUIRE(env != NULL);
    for (size_t i = 0; i < nextra; i++) env[i] = extra_env[i];
    for (size_t i = 0; i < nenv; i++) env[nextra + i] = environ[i];
    char *argv[] = {(char *)test_argv0, (char *)arg, NULL};
    pid_t pid = test_spawn(argv, &fa, env);
    free(env);
    posix_spawn_file_actions_destroy(&fa);
    close(pipefd[1]);
    size_t len = 0;
    for (;;) {
        char buf[4096];
        ssize_t n = read(pipefd[0], buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        size_t take = (size_t)n;
        if (len + take > cap - 1) take = cap - 1 - len;
        memcpy(out + len, buf, take);
        len += take;
    }
    out[len] = 0;
    close(pipefd[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    return status;
}

/* Run child scenario `scenario` and check that it died of a fatal error (exit status 2) whose
 * message contains `message`. */
static inline void test_expect_fatal(const char *scenario, const char *message) {
    char out[8192];
    int status = test_run_self(scenario, NULL, out, sizeof out);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 2);
    CHECK(strstr(out, message) != NULL);
    if (!strstr(out, message)) fprintf(stderr, "child %s said: %s\n", scenario, out);
}

/* A server example started by a test prints "listening on HOST:PORT" first: read that line from
 * fd (then closed) into addr (64 bytes). */
static inline void test_read_listening(int fd, char addr[64]) {
    char line[128];
    size_t len = 0;
    while (len < sizeof line - 1) {
        ssize_t n = read(fd, line + len, 1);
        if (n <= 0 || line[len] == '\n') break;
        len++;
    }
    line[len] = 0;
    close(fd);
    REQUIRE(sscanf(line, "listening on %63s", addr) == 1);
}

/* hoare_dump's whole text, NUL-terminated, in a buffer of its own (one caller at a time; callers
 * may write into it): written into a pipe made large enough to hold it (hoare_dump would block on
 * a full one), then read back. */
static inline char *test_dump_text(void) {
    static char buf[1 << 20];
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    (void)fcntl(fds[1], F_SETPIPE_SZ, (int)sizeof buf); /* best effort: the default is 64 KiB */
    hoare_dump(fds[1]);
    close(fds[1]);
    size_t len = 0;
    ssize_t n;
    while (len < sizeof buf - 1 && (n = read(fds[0], buf + len, sizeof buf - 1 - len)) > 0)
        len += (size_t)n;
    buf[len] = 0;
    close(fds[0]);
    return buf;
}

/* Dump every millisecond until the text contains needle (a goroutine has parked, say), for at
 * most `seconds`: that text, or NULL. */
static inline char *test_dump_until(const char *needle, int seconds) {
    for (int64_t deadline = hoare_now() + seconds * HOARE_SEC;;) {
        char *text = test_dump_text();
        if (strstr(text, needle)) return text;
        if (hoare_now() >= deadline) return NULL;
        hoare_sleep(HOARE_MS);
    }
}

#endif /* HOARE_TEST_H */
