/*
 * main_goroutine.c - hoare_main: the program's main function as a goroutine, as Go's main is.
 *
 * The calling thread starts the main goroutine (named "main", with a stack as large as the
 * process's main-thread stack limit, committed lazily like every stack) and waits for it as a
 * plain thread: it may run goroutines for its first millisecond (sched.c, "Lending"), then hands
 * its processor to a scheduler thread and sleeps until the function returned. The program's main logic thus hands off to other goroutines at goroutine speed.
 *
 * Handshake (call.state): the caller parks with a commit that moves RUNNING -> CALLER_PARKED; the
 * main goroutine, once the function returned, swaps in DONE and readies the caller only if it had
 * parked. Whichever comes second sees the other's state, so the result is handed over exactly once
 * and the caller never parks after the main goroutine is done.
 */
#include "runtime.h"

#include <string.h>
#include <sys/resource.h>

enum { MAIN_RUNNING, MAIN_CALLER_PARKED, MAIN_DONE };

struct main_call {
    int (*fn)(int argc, char **argv);
    int argc;
    char **argv;
    int result;
    G *caller;
    _Atomic uint32_t state;
};

/* The main-thread stack limit (RLIMIT_STACK), 8 MiB when unlimited or unknown. */
static size_t main_stack_size(void) {
    enum { UNLIMITED_STACK = 8 << 20, MIN_STACK = 64 << 10, MAX_STACK = 1 << 30 };
    struct rlimit rl;
    if (getrlimit(RLIMIT_STACK, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return UNLIMITED_STACK;
    if (rl.rlim_cur < MIN_STACK) return MIN_STACK;
    if (rl.rlim_cur > MAX_STACK) return MAX_STACK;
    return (size_t)rl.rlim_cur;
}

static void main_goroutine(void *arg) {
    struct main_call *call = arg;
    G *self = hoare__curg();
    self->flags |= G_MAIN; /* only this goroutine writes its flags now */
    call->result = call->fn(call->argc, call->argv);
    self->flags &= ~(uint32_t)G_MAIN;
    G *caller = call->caller; /* the call record dies with the caller's frame once it is readied */
    if (atomic_exchange(&call->state, MAIN_DONE) == MAIN_CALLER_PARKED) hoare__ready(caller);
}

static bool caller_commit(G *g, void *arg) {
    (void)g;
    struct main_call *call = arg;
    uint32_t running = MAIN_RUNNING;
    return atomic_compare_exchange_strong(&call->state, &running, MAIN_CALLER_PARKED);
}

int hoare_main(int (*fn)(int argc, char **argv), int argc, char **argv) {
    if (!fn) hoare__fatal("hoare_main: the main function is NULL");
    if (hoare__curg())
        hoare__fatal("hoare_main called from goroutine %llu: call it from a plain thread, such as "
                     "main(); a goroutine can call the function directly",
                     (unsigned long long)hoare_id());
    hoare__init();
    G *caller = hoare__g();
    struct main_call call = {fn, argc, argv, 0, caller, MAIN_RUNNING};
    hoare_attr attr = {.stack_size = main_stack_size(), .name = "main"};
    int err = hoare_go_with(&attr, main_goroutine, &call);
    if (err) hoare__fatal("hoare_main: cannot start the main goroutine: %s", strerror(err));
    /* the main goroutine stands for this thread in dumps */
    caller->flags |= G_HIDDEN;
    hoare__park("hoare_main", caller_commit, &call);
    caller->flags &= ~(uint32_t)G_HIDDEN;
    return call.result;
}
