/*
 * diag.c - diagnostics: fatal errors, the goroutine list (dumps and deadlock reports), and the
 * stack overflow handler.
 *
 * The goroutine list is built from the stack slabs (every slot that was ever carved; free slots
 * are skipped) plus the plain threads' waiter records, so it needs no lock and no registration on
 * the spawn path. A dump is a snapshot taken while goroutines run: entries may be stale by the
 * time they are printed.
 *
 * Tracebacks (traceback.c): the caller first, then every goroutine with its frames, unwound from
 * the saved context of a switched-out goroutine; one running on another thread says so.
 *
 * Signals: every scheduler thread has an alternate signal stack.
 *  - A SIGSEGV whose address falls in the guard of the running goroutine's stack (for a sub-page
 *    slot: anywhere below its stack in its group, see stack.c) prints which goroutine overflowed,
 *    its stack size and its frames, then every goroutine; exit status 2. A sub-page goroutine
 *    whose canary is found broken at a switch gets the first line of that report (no frames: its
 *    stack is not to be trusted).
 *  - Any other SIGSEGV, SIGBUS, SIGFPE, SIGILL or SIGABRT in goroutine code prints the signal, the
 *    faulting address, the goroutine with its frames and every other one, then the process dies
 *    of the signal (default action restored: core dumps and exit statuses stay as C expects).
 *    On other threads the previous handler runs (or the default action). SIGFPE, SIGILL and
 *    SIGABRT are taken only if the program left them at their default.
 *  - SIGQUIT left at its default prints every goroutine and exits with status 2, as Go does.
 *  - HOARE_TRACEBACK=crash: fatal errors and SIGQUIT abort (a core dump) instead of exiting 2.
 */
#include "proc.h"
#include "trace.h"
#include "traceback.h"

#include <dlfcn.h>
#include <link.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

static const char *status_name(uint32_t s) {
    switch (s) {
    case G_RUNNABLE: return "runnable";
    case G_RUNNING: return "running";
    case G_BLOCKING: return "blocking";
    case G_DEAD: return "dead";
    default: return "waiting";
    }
}

/* What a dump prints, and which goroutine or thread waiter is the caller (its frames are this
 * thread's, from from_pc; skip_self: it was printed already). */
struct dump {
    int fd;
    G *self;
    uintptr_t from_pc;
    bool skip_self;
};

static void header(int fd, const G *g, uint32_t st) {
    char state[96];
    const char *reason = atomic_load_explicit(&g->wait_reason, memory_order_relaxed);
    int64_t since = atomic_load_explicit(&g->wait_since, memory_order_relaxed);
    if (st == G_WAITING && reason) {
        int64_t mins = since ? (hoare__nanotime() - since) / (60 * HOARE_SEC) : 0;
        if (mins > 0) snprintf(state, sizeof state, "%s, %lld minutes", reason, (long long)mins);
        else snprintf(state, sizeof state, "%s", reason);
    } else {
        snprintf(state, sizeof state, "%s", status_name(st));
    }
    if (g->flags & G_THREAD) hoare__fdprintf(fd, "thread (waiter %llu) [%s]:\n", (unsigned long long)g->id, state);
    else hoare__fdprintf(fd, "goroutine %llu [%s]:\n", (unsigned long long)g->id, state);
    if (g->name[0]) hoare__fdprintf(fd, "\tname %s\n", g->name);
}

static void dump_one(G *g, void *arg) {
    struct dump *d = arg;
    uint32_t st = atomic_load_explicit(&g->status, memory_order_acquire);
    if (st == G_FREE || (g == d->self && d->skip_self)) return;
    header(d->fd, g, st);
    if (g == d->self) hoare__traceback_here(d->fd, d->from_pc);
    else if (g->flags & G_THREAD) hoare__fdprintf(d->fd, "\tthread blocked in the runtime; stack unavailable\n");
    else if (st == G_RUNNING || st == G_BLOCKING) hoare__fdprintf(d->fd, "\tgoroutine running on other thread; stack unavailable\n");
    else if (st != G_DEAD) hoare__traceback_g(d->fd, g);
    if (!(g->flags & G_THREAD)) hoare__traceback_creator(d->fd, g);
    hoare__fdprintf(d->fd, "\n");
}

struct each_args {
    void (*fn)(G *, void *);
    void *arg;
};

static void each_live(G *g, void *arg) {
    struct each_args *a = arg;
    if (atomic_load_explicit(&g->status, memory_order_acquire) != G_FREE) a->fn(g, a->arg);
}

void hoare__each_g(void (*fn)(G *g, void *arg), void *arg) {
    struct each_args a = {fn, arg};
    hoare__each_slot(each_live, &a);
}

/* The caller's goroutine, or its thread's waiter record while it waits (a deadlock found by a
 * blocking plain thread); NULL on a scheduler context or a running plain thread. */
static G *current(void) {
    M *m = hoare__getm();
    if (m) return m->curg;
    G *g = hoare__thread_waiter_peek();
    return g && atomic_load_explicit(&g->status, memory_order_relaxed) == G_WAITING ? g : NULL;
}

/* Every goroutine, the calling goroutine first, then the plain threads waiting in the runtime; a
 * calling plain thread that is not waiting comes last, as "thread [running]". */
static void dump_all_from(int fd, uintptr_t from_pc) {
    struct dump d = {fd, current(), from_pc, false};
    if (d.self && !(d.self->flags & G_THREAD)) {
        dump_one(d.self, &d);
        d.skip_self = true;
    }
    hoare__each_g(dump_one, &d);
    hoare__each_thread_waiter(dump_one, &d);
    if (!d.self && !hoare__getm() && !hoare__on_monitor()) {
        hoare__fdprintf(fd, "thread [running]:\n");
        hoare__traceback_here(fd, from_pc);
        hoare__fdprintf(fd, "\n");
    }
}

/* Stack a report needs: libdw's line tables take far more than a goroutine has left, in blocks
 * (alloca) large enough to skip a guard. */
enum { REPORT_STACK = 512 * 1024 };

struct dump_args {
    int fd;
    uintptr_t from_pc;
};

/* Concurrent hoare_dump calls write one after the other, never interleaved. */
static pthread_mutex_t dump_lock = PTHREAD_MUTEX_INITIALIZER;

static void dump_call(void *arg) {
    struct dump_args *a = arg;
    pthread_mutex_lock(&dump_lock);
    dump_all_from(a->fd, a->from_pc);
    pthread_mutex_unlock(&dump_lock);
}

/* On the scheduler's stack when the goroutine has less than REPORT_STACK left (as fatal reports):
 * run on a 128 KiB stack, symbolising wrote below the guard into whatever memory lay there. */
__attribute__((noinline)) void hoare_dump(int fd) {
    struct dump_args a = {fd, (uintptr_t)__builtin_return_address(0)};
    hoare__on_sched_stack(dump_call, &a, REPORT_STACK);
}

static bool traceback_crash; /* HOARE_TRACEBACK=crash: abort (core dump) instead of exit status 2 */

/* Leave after a fatal report: exit status 2, or abort for a core dump. */
static __attribute__((noreturn)) void die(void) {
    hoare__trace_finish();
    if (traceback_crash) {
        signal(SIGABRT, SIG_DFL);
        abort();
    }
    _exit(2);
}

struct fatal_args {
    const char *fmt;
    va_list *ap;
    uintptr_t from_pc;
};

static void fatal_report(void *arg) {
    struct fatal_args *a = arg;
    char msg[512];
    vsnprintf(msg, sizeof msg, a->fmt, *a->ap);
    hoare__fdprintf(2, "fatal error: %s\n\n", msg);
    dump_all_from(2, a->from_pc);
    die();
}

__attribute__((noinline)) void hoare__fatal(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    struct fatal_args a = {fmt, &ap, (uintptr_t)__builtin_return_address(0)};
    /* formatting and the dump need more stack than a goroutine may have left */
    hoare__on_sched_stack(fatal_report, &a, REPORT_STACK);
    __builtin_unreachable();
}

/* ------------------------------------------------------------------------------------------
 * Signals: stack overflow, crashes in goroutine code, SIGQUIT */

static struct sigaction previous[NSIG];

static void write_str(const char *s) {
    size_t n = strlen(s);
    while (n) {
        ssize_t w = write(2, s, n);
        if (w <= 0) return;
        s += w;
        n -= (size_t)w;
    }
}

static void write_num(unsigned long long v) {
    char buf[24];
    int i = sizeof buf;
    buf[--i] = 0;
    do buf[--i] = (char)('0' + v % 10);
    while ((v /= 10) && i > 0);
    write_str(buf + i);
}

/* The main program was linked without -z now and LD_BIND_NOW is unset: its first call of each
 * function goes through the dynamic linker's resolver, which needs more than a small stack has
 * (hoare.h, hoare_attr). Set once at start; the overflow report names it as the likely cause. */
static bool program_binds_lazily;

static int note_main_program_binding(struct dl_phdr_info *info, size_t size, void *arg) {
    (void)size;
    (void)arg;
    if (info->dlpi_name && info->dlpi_name[0]) return 0; /* not the main program */
    bool now = false;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        if (info->dlpi_phdr[i].p_type != PT_DYNAMIC) continue;
        const ElfW(Dyn) *d = (const ElfW(Dyn) *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
        for (; d->d_tag != DT_NULL; d++)
            now |= d->d_tag == DT_BIND_NOW || (d->d_tag == DT_FLAGS && (d->d_un.d_val & DF_BIND_NOW)) ||
                   (d->d_tag == DT_FLAGS_1 && (d->d_un.d_val & DF_1_NOW));
        program_binds_lazily = !now;
    }
    return 1;
}

/* "fatal error: stack overflow in goroutine N (name): ..." (async-signal-safe, little stack). */
static void overflow_line(const G *g) {
    write_str("fatal error: stack overflow in goroutine ");
    write_num(g->id);
    if (g->name[0]) {
        write_str(" (");
        write_str(g->name);
        write_str(")");
    }
    write_str(": its stack is ");
    write_num(g->stack_size);
    if (g->flags & G_MAIN) /* hoare_main sized it from the main-thread stack limit */
        write_str(" bytes, the main-thread stack limit: raise it (ulimit -s, RLIMIT_STACK)\n\n");
    else
        write_str(" bytes; start it with a larger hoare_attr.stack_size or set HOARE_STACK_SIZE\n\n");
    if ((g->flags & G_SMALL_STACK) && program_binds_lazily)
        write_str("This program binds functions lazily, and the dynamic linker resolves one at its first "
                  "call on the caller's stack, with kilobytes of saved registers: link it with "
                  "-Wl,-z,now (pkg-config --libs hoare adds it).\n\n");
}

static void die_on(void *arg) {
    (void)arg;
    die();
}

/* A sub-page goroutine's canary was found broken at a switch: its stack is not to be trusted, so
 * no frames; the rest runs on the scheduler stack. */
void hoare__stack_overflow_fatal(const G *g) {
    overflow_line(g);
    hoare__on_sched_stack(die_on, NULL, 0);
    _exit(2);
}

static const char *signal_text(int sig) {
    switch (sig) {
    case SIGSEGV: return "SIGSEGV: segmentation violation";
    case SIGBUS: return "SIGBUS: bus error";
    case SIGFPE: return "SIGFPE: floating-point exception";
    case SIGILL: return "SIGILL: illegal instruction";
    case SIGABRT: return "SIGABRT: abort";
    case SIGQUIT: return "SIGQUIT: quit";
    default: return "signal";
    }
}

static uintptr_t signal_pc(void *uctx) {
    ucontext_t *uc = uctx;
#if defined(__x86_64__)
    return (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
    return (uintptr_t)uc->uc_mcontext.pc;
#endif
}

/* The goroutine g took sig at uctx: it first with its frames, then every other one. */
static void report_goroutine(G *g, void *uctx) {
    hoare__fdprintf(2, "goroutine %llu [running]:\n", (unsigned long long)g->id);
    if (g->name[0]) hoare__fdprintf(2, "\tname %s\n", g->name);
    hoare__traceback_signal(2, uctx);
    hoare__traceback_creator(2, g);
    hoare__fdprintf(2, "\n");
    struct dump d = {2, g, 0, true};
    hoare__each_g(dump_one, &d);
    hoare__each_thread_waiter(dump_one, &d);
}

/* Die of sig as if no handler had been installed (core dump, exit status). A fault re-executes the
 * faulting instruction on return; a sent signal is raised again, pending until we return. */
static void die_of(int sig, siginfo_t *info) {
    signal(sig, SIG_DFL);
    if (info->si_code <= 0 || sig == SIGABRT) raise(sig);
}

static void chain(int sig, siginfo_t *info, void *uctx) {
    struct sigaction *prev = &previous[sig];
    if (prev->sa_flags & SA_SIGINFO) {
        if (prev->sa_sigaction) {
            prev->sa_sigaction(sig, info, uctx);
            return;
        }
    } else if (prev->sa_handler != SIG_DFL && prev->sa_handler != SIG_IGN) {
        prev->sa_handler(sig);
        return;
    }
    die_of(sig, info);
}

static void on_fault(int sig, siginfo_t *info, void *uctx) {
    M *m = hoare__getm();
    G *g = m ? m->curg : NULL;
    if (!g) {
        chain(sig, info, uctx); /* not goroutine code: the program's handler or the default */
        return;
    }
    if (sig == SIGSEGV && hoare__stack_fault_is_overflow(g, info->si_addr)) {
        overflow_line(g);
        report_goroutine(g, uctx);
        die();
    }
    hoare__fdprintf(2, "%s\nPC=0x%lx addr=%p sigcode=%d\n\n", signal_text(sig), (unsigned long)signal_pc(uctx),
            info->si_addr, info->si_code);
    report_goroutine(g, uctx);
    die_of(sig, info);
}

/* SIGQUIT left at its default: every goroutine, then exit status 2 (as Go). The handler runs on a
 * plain thread: scheduler threads block asynchronous signals. */
static void on_quit(int sig, siginfo_t *info, void *uctx) {
    (void)info;
    hoare__fdprintf(2, "%s\nPC=0x%lx\n\n", signal_text(sig), (unsigned long)signal_pc(uctx));
    M *m = hoare__getm();
    G *g = m ? m->curg : NULL;
    if (g) {
        report_goroutine(g, uctx);
    } else {
        hoare__fdprintf(2, "thread [running]:\n");
        hoare__traceback_signal(2, uctx);
        hoare__fdprintf(2, "\n");
        struct dump d = {2, NULL, 0, false};
        hoare__each_g(dump_one, &d);
        hoare__each_thread_waiter(dump_one, &d);
    }
    die();
}

/* Each scheduler thread gets an alternate signal stack, so that an overflowing goroutine's fault
 * handler does not run on the exhausted stack (the preemption handler runs there too, preempt.c).
 * It is large enough for libdw's unwinder; pages are committed only when touched. */
HIDDEN void hoare__signals_thread_init(void) {
    stack_t ss;
    ss.ss_sp = hoare__mmap(NULL, HOARE_SIGSTACK_SIZE, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (ss.ss_sp == MAP_FAILED) return;
    ss.ss_size = HOARE_SIGSTACK_SIZE;
    /* SS_AUTODISARM: the preemption handler replaces it from inside (preempt.c) */
    ss.ss_flags = hoare__sigstack_autodisarm ? (int)SS_AUTODISARM : 0;
    if (sigaltstack(&ss, NULL) == 0 && hoare__tls_m) hoare__tls_m->sigstack = ss.ss_sp;
}

/* Faults run on the alternate stack (an overflowing or small goroutine stack has no room for
 * libdw); SIGQUIT, which only plain threads take, runs on the thread's own stack (the alternate
 * stack a sanitizer may have given a plain thread is too small). */
static void install(int sig, void (*fn)(int, siginfo_t *, void *), bool only_if_default) {
    struct sigaction sa, old;
    sigaction(sig, NULL, &old);
    if (only_if_default && (old.sa_flags & SA_SIGINFO || old.sa_handler != SIG_DFL)) return;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = fn;
    sa.sa_flags = SA_SIGINFO | (sig == SIGQUIT ? 0 : SA_ONSTACK);
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, &previous[sig]);
}

#ifdef HOARE_TSAN
/* The crash, overflow and SIGQUIT reports are not async-signal-safe (libdw allocates), which TSan
 * reports as an error; Go's crash output makes the same trade. A program's own definition wins. */
__attribute__((weak)) const char *__tsan_default_options(void);
__attribute__((weak)) const char *__tsan_default_options(void) { return "report_signal_unsafe=0"; }
#endif

HIDDEN void hoare__signals_init(void) {
    const char *tb = getenv("HOARE_TRACEBACK");
    traceback_crash = tb && !strcmp(tb, "crash");
    const char *bind_now = getenv("LD_BIND_NOW");
    if (!bind_now || !bind_now[0]) dl_iterate_phdr(note_main_program_binding, NULL);
    install(SIGSEGV, on_fault, false);
    install(SIGBUS, on_fault, false);
    install(SIGFPE, on_fault, true);
    install(SIGILL, on_fault, true);
    install(SIGABRT, on_fault, true);
    install(SIGQUIT, on_quit, true);
}
