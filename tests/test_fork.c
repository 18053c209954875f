/*
 * test_fork.c - a child forked from a program whose runtime runs has none of the runtime's threads.
 * As in Go, such a child may only exec or _exit: a hoare call there that waits, spawns or needs the
 * runtime ends the child with a fatal error naming fork (status 2) instead of hanging for good.
 * Forking itself, exec and _exit in the child, and the parent's runtime afterwards are unaffected.
 */
#include "test.h"

#include <sys/wait.h>

enum { CHILD_WATCHDOG_S = 10 }; /* a child that hangs dies of SIGALRM: status 128 + 14 below */

typedef void (*child_fn)(void);

/* Fork, run fn in the child (then _exit(0)), return the child's exit status (128 + signal when
 * killed) and its stderr in err. */
static int run_forked(child_fn fn, char *err, size_t cap) {
    int pipefd[2];
    REQUIRE(pipe(pipefd) == 0);
    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        alarm(CHILD_WATCHDOG_S);
        dup2(pipefd[1], 2);
        close(pipefd[0]);
        fn();
        _exit(0);
    }
    close(pipefd[1]);
    size_t len = 0;
    ssize_t r;
    while (len + 1 < cap && (r = read(pipefd[0], err + len, cap - 1 - len)) > 0) len += (size_t)r;
    err[len] = 0;
    close(pipefd[0]);
    int status;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void receive_in_child(void) {
    hoare_chan *c = hoare_chan_make(sizeof(int), 0);
    int v;
    hoare_recv(c, &v);
}

static void nothing(void *arg) { (void)arg; }
static void spawn_in_child(void) { hoare_go(nothing, NULL); }

static void exit_in_child(void) { _exit(7); }

static void exec_in_child(void) {
    execl("/bin/sh", "sh", "-c", "exit 5", (char *)NULL);
    _exit(99);
}

static void sleep_in_child(void) { hoare_sleep(HOARE_MS); }

struct forked_from_goroutine {
    int status;
    char err[1024];
    hoare_wg done;
};

static void fork_from_goroutine(void *arg) {
    struct forked_from_goroutine *f = arg;
    f->status = run_forked(sleep_in_child, f->err, sizeof f->err);
    hoare_wg_done(&f->done);
}

/* the parent's runtime still serves after its children */
static void echo(void *arg) {
    hoare_chan *c = arg;
    int v;
    hoare_recv(c, &v);
    v++;
    hoare_send(c, &v);
}

int main(int argc, char **argv) {
    (void)argc;
    test_begin(argv, 60);
    char err[1024];

    /* start the runtime: threads exist in the parent from here on */
    hoare_chan *c = hoare_chan_make(sizeof(int), 0);
    REQUIRE(hoare_go(echo, c) == 0);
    int v = 1;
    CHECK_EQ(hoare_send(c, &v), 0);
    CHECK_EQ(hoare_recv(c, &v), 0);
    CHECK_EQ(v, 2);

    /* a plain thread's receive in the child: fatal, naming the wait and fork */
    CHECK_EQ(run_forked(receive_in_child, err, sizeof err), 2);
    CHECK(strstr(err, "fatal error: chan receive after fork()") != NULL);

    /* a spawn in the child */
    CHECK_EQ(run_forked(spawn_in_child, err, sizeof err), 2);
    CHECK(strstr(err, "after fork()") != NULL);

    /* forked from a goroutine: the child goes on as that goroutine, and its sleep is fatal */
    struct forked_from_goroutine f = {.status = -1, .err = "", .done = HOARE_WG_INIT};
    hoare_wg_add(&f.done, 1);
    REQUIRE(hoare_go(fork_from_goroutine, &f) == 0);
    hoare_wg_wait(&f.done);
    CHECK_EQ(f.status, 2);
    CHECK(strstr(f.err, "fatal error: sleep after fork()") != NULL);

    /* what a child may do: _exit, exec */
    CHECK_EQ(run_forked(exit_in_child, err, sizeof err), 7);
    CHECK_EQ(run_forked(exec_in_child, err, sizeof err), 5);

    /* and the parent goes on */
    REQUIRE(hoare_go(echo, c) == 0);
    v = 10;
    CHECK_EQ(hoare_send(c, &v), 0);
    CHECK_EQ(hoare_recv(c, &v), 0);
    CHECK_EQ(v, 11);
    hoare_chan_release(c);
    TEST_MAIN_END();
}
