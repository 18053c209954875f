/*
 * diag.c - diagnostics: fatal errors, the goroutine list (dumps and deadlock reports), and the
 * stack overflow handler.
 *
 * The goroutine list is built from the stack slabs (every slot that was ever carved; free slots
 * are skipped) plus the plain threads' waiter records, so it needs no lock and no registration on
 * the spawn path. A dump is a snapshot taken while goroutines run: entries may be stale by the
 * time they are printed.
 *
 * Stack overflow: every scheduler thread has an alternate signal stack; a SIGSEGV whose address
 * falls in the guard of the running goroutine's stack prints which goroutine overflowed and its
 * stack size, then exits with status 2. Any other SIGSEGV goes to the previous handler (or the
 * default action).
 */
#include "proc.h"

#include <dlfcn.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
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

static void print_symbol(int fd, const char *label, uintptr_t pc) {
    Dl_info info;
    if (pc && dladdr((void *)pc, &info) && info.dli_sname)
        dprintf(fd, "\t%s %s+0x%lx\n", label, info.dli_sname, (unsigned long)(pc - (uintptr_t)info.dli_saddr));
    else
        dprintf(fd, "\t%s 0x%lx\n", label, (unsigned long)pc);
}

static void dump_one(G *g, void *arg) {
    int fd = *(int *)arg;
    uint32_t st = atomic_load_explicit(&g->status, memory_order_acquire);
    if (st == G_FREE) return;
    char state[96];
    if (st == G_WAITING && g->wait_reason) {
        int64_t mins = g->wait_since ? (hoare__nanotime() - g->wait_since) / (60 * HOARE_SEC) : 0;
        if (mins > 0) snprintf(state, sizeof state, "%s, %lld minutes", g->wait_reason, (long long)mins);
        else snprintf(state, sizeof state, "%s", g->wait_reason);
    } else {
        snprintf(state, sizeof state, "%s", status_name(st));
    }
    if (g->flags & G_THREAD) {
        dprintf(fd, "thread (waiter %llu) [%s]:\n\n", (unsigned long long)g->id, state);
        return;
    }
    dprintf(fd, "goroutine %llu [%s]:\n", (unsigned long long)g->id, state);
    if (g->name[0]) dprintf(fd, "\tname %s\n", g->name);
    print_symbol(fd, "started at", g->start_pc);
    char label[64];
    snprintf(label, sizeof label, "created by goroutine %llu at", (unsigned long long)g->creator_id);
    print_symbol(fd, g->creator_id ? label : "created by a thread at", g->creator_pc);
    dprintf(fd, "\n");
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

HIDDEN void hoare__each_thread_waiter(void (*fn)(G *g, void *arg), void *arg);

void hoare__dump_all(int fd) {
    hoare__each_g(dump_one, &fd);
    hoare__each_thread_waiter(dump_one, &fd);
}

void hoare_dump(int fd) { hoare__dump_all(fd); }

void hoare__fatal(const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    dprintf(2, "fatal error: %s\n\n", msg);
    hoare__dump_all(2);
    _exit(2);
}

/* ------------------------------------------------------------------------------------------
 * Stack overflow */

static struct sigaction previous_segv, previous_bus;

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

static void on_fault(int sig, siginfo_t *info, void *uctx) {
    M *m = hoare__getm();
    G *g = m ? m->curg : NULL;
    if (g) {
        char *addr = info->si_addr;
        char *guard_lo = g->stack_lo - hoare__guard_size();
        if (addr >= guard_lo - 65536 && addr < g->stack_lo) {
            /* async-signal-safe output only */
            write_str("fatal error: stack overflow in goroutine ");
            write_num(g->id);
            if (g->name[0]) {
                write_str(" (");
                write_str(g->name);
                write_str(")");
            }
            write_str(": its stack is ");
            write_num(g->stack_size);
            write_str(" bytes; start it with a larger hoare_attr.stack_size or set HOARE_STACK_SIZE\n");
            _exit(2);
        }
    }
    struct sigaction *prev = sig == SIGSEGV ? &previous_segv : &previous_bus;
    if (prev->sa_flags & SA_SIGINFO) {
        if (prev->sa_sigaction) {
            prev->sa_sigaction(sig, info, uctx);
            return;
        }
    } else if (prev->sa_handler != SIG_DFL && prev->sa_handler != SIG_IGN) {
        prev->sa_handler(sig);
        return;
    }
    /* default action: re-raised when the faulting instruction runs again */
    signal(sig, SIG_DFL);
}

/* Each scheduler thread gets an alternate signal stack, so that an overflowing goroutine's fault
 * handler does not run on the exhausted stack. */
HIDDEN void hoare__signals_thread_init(void) {
    enum { ALT_SIZE = 64 * 1024 };
    stack_t ss;
    ss.ss_sp = hoare__mmap(NULL, ALT_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (ss.ss_sp == MAP_FAILED) return;
    ss.ss_size = ALT_SIZE;
    ss.ss_flags = 0;
    sigaltstack(&ss, NULL);
}

HIDDEN void hoare__signals_init(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &previous_segv);
    sigaction(SIGBUS, &sa, &previous_bus);
}
