/*
 * test_chan_typed.c - the typed channel macros check types at compile time: this test runs the C
 * compiler ($CC, else cc) on small programs and expects the well-typed one to compile and each
 * ill-typed one to be rejected (-Werror, since some mismatches are only warnings in C). Skipped
 * when no compiler is installed.
 */
#include "test.h"

#include <fcntl.h>
#include <spawn.h>

/* "-I<source>/include", from this file's path <source>/tests/test_chan_typed.c. */
static char include_flag[4096];
static void find_include_dir(void) {
    snprintf(include_flag, sizeof include_flag, "-I%s", __FILE__);
    for (int up = 0; up < 2; up++) {
        char *slash = strrchr(include_flag, '/');
        REQUIRE(slash != NULL);
        *slash = 0;
    }
    strncat(include_flag, "/include", sizeof include_flag - strlen(include_flag) - 1);
}

static const char prelude[] = "#include <hoare.h>\n"
                              "typedef struct { int a; double b; } pair;\n"
                              "typedef struct { int a; double b; } other;\n"
                              "int f(void);\n"
                              "int f(void) {\n";

static const char good[] =
    "HOARE_CHAN(pair) pc = HOARE_CHAN_MAKE(pair, 1);\n"
    "HOARE_CHAN(int) ic = HOARE_CHAN_MAKE(int, 1);\n"
    "pair p = {1, 2.0}, q;\n"
    "int x = 0;\n"
    "return HOARE_CHAN_SEND(pc, p) + HOARE_CHAN_RECV(pc, &q) + HOARE_CHAN_SEND(ic, 7) +\n"
    "       HOARE_CHAN_SEND(ic, 'c') + HOARE_CHAN_RECV(ic, &x) + HOARE_SEND_V(pc.raw, p) +\n"
    "       HOARE_RECV_V(pc.raw, &q) + HOARE_SEND_V(ic.raw, 42) + HOARE_RECV_V(ic.raw, &x);\n";

/* Each must fail to compile. */
static const char *const bad[] = {
    /* a struct into an int channel */
    "HOARE_CHAN(int) ic = HOARE_CHAN_MAKE(int, 1); pair p = {1, 2.0};\n"
    "return HOARE_CHAN_SEND(ic, p);\n",
    /* another struct type */
    "HOARE_CHAN(pair) pc = HOARE_CHAN_MAKE(pair, 1); other o = {1, 2.0};\n"
    "return HOARE_CHAN_SEND(pc, o);\n",
    /* a number into a struct channel */
    "HOARE_CHAN(pair) pc = HOARE_CHAN_MAKE(pair, 1);\n"
    "return HOARE_CHAN_SEND(pc, 3);\n",
    /* receive into the wrong type */
    "HOARE_CHAN(int) ic = HOARE_CHAN_MAKE(int, 1); long l;\n"
    "return HOARE_CHAN_RECV(ic, &l);\n",
    /* receive into another struct */
    "HOARE_CHAN(pair) pc = HOARE_CHAN_MAKE(pair, 1); other o;\n"
    "return HOARE_CHAN_RECV(pc, &o);\n",
    /* a pointer into an int channel */
    "HOARE_CHAN(int) ic = HOARE_CHAN_MAKE(int, 1); int *ptr = 0;\n"
    "return HOARE_CHAN_SEND(ic, ptr);\n",
};

/* 0 compiled, 1 rejected, -1 no compiler. */
static int compile(const char *body) {
    char path[] = "/tmp/hoare_typed_XXXXXX.c";
    int fd = mkstemps(path, 2);
    REQUIRE(fd >= 0);
    FILE *f = fdopen(fd, "w");
    REQUIRE(f != NULL);
    fprintf(f, "%s%s}\n", prelude, body);
    fclose(f);
    const char *cc = getenv("CC");
    if (!cc || !*cc) cc = "cc";
    char *argv[] = {(char *)cc, "-std=gnu11", "-fsyntax-only", "-Werror", "-Wall",
                    include_flag, path, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    int err = posix_spawnp(&pid, cc, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    int status = 0;
    if (err == 0)
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    unlink(path);
    if (err != 0 || (WIFEXITED(status) && WEXITSTATUS(status) == 127)) return -1;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    (void)argc;
    test_begin(argv, 120);
    find_include_dir();
    int r = compile(good);
    if (r < 0) {
        printf("no C compiler found: skipped\n");
        TEST_MAIN_END();
    }
    CHECK_EQ(r, 0);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int rejected = compile(bad[i]);
        if (rejected != 1) fprintf(stderr, "accepted an ill-typed program:\n%s\n", bad[i]);
        CHECK_EQ(rejected, 1);
    }
    TEST_MAIN_END();
}
