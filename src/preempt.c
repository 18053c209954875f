/*
 * preempt.c - asynchronous preemption of goroutines that run too long without yielding.
 *
 * As in Go since 1.14: the monitor notices a processor whose time slice (schedtick) has not
 * changed for PREEMPT_AFTER_NS, marks its goroutine (g->preempt) and sends SIGURG to its thread.
 * The handler switches to another goroutine only at a safe point, else it returns and the monitor
 * asks again a round later ("try again a little later"). A safe point is:
 *  - a goroutine is running on that thread (not the scheduler context) and is the one marked, on
 *    its own stack (the interrupted stack pointer is inside it: not in the middle of a switch);
 *  - it is not inside the runtime: no runtime lock held (hoare__locks_held) and no runtime
 *    section or hoare_preempt_disable() region (g->preempt_off), not in a blocking region;
 *  - the interrupted instruction is in the program's own code: the main executable, and not the
 *    runtime's code in it (the static library's code, which the build puts in a section of its
 *    own and compiles with -fno-plt: a PLT stub for the runtime's call to another library would
 *    sit in the program's text, outside that section). Never a shared library (the C library,
 *    OpenSSL, a shared libhoare...): inside one a goroutine may hold the library's internal
 *    locks, and another goroutine on the same thread taking them would block the thread for good
 *    (the runtime's initialisers that call other libraries under a pthread_once run with
 *    preemption off too, hoare__once: a program linked statically has those libraries in its
 *    executable).
 *
 * How the switch works: the handler runs on the thread's alternate signal stack (SA_ONSTACK: a
 * goroutine with a sub-page stack has no room for the kernel's signal frame, a few KiB with the
 * vector state). Before it switches away it gives the thread a fresh alternate stack (from the M's
 * spares, or a new mapping), so the frame, holding every register of the interrupted code, stays
 * where it is while other goroutines run - and other signals use the fresh stack. The handler calls
 * the scheduler's ordinary switch; when the goroutine is resumed the handler puts its old signal
 * stack on the spares of the M it now runs on, returns, and sigreturn restores all registers,
 * vector state included. No per-architecture code is needed. The sigaltstack call is paid only when
 * a goroutine is actually preempted. A goroutine preempted on one M and resumed on another (one a
 * lent thread preempted, moved to its processor's queue when the thread left) leaves its stack to
 * the second while the first maps a new one, so an M keeps at most SIGSTACK_SPARES spares: the
 * rest are unmapped when it goes idle (hoare__sigstack_trim). Without that the soak's resident
 * memory grew by 3-4 KiB a second, for good.
 * Fallback where sigaltstack lacks SS_AUTODISARM (Linux before 4.7, qemu-user): SIGURG runs on the
 * goroutine's own stack and the frame stays there while it is switched out; sub-page goroutines
 * are then not preempted (the monitor skips them; one that the thread switches to just before the
 * signal arrives still gets the frame on its stack).
 *
 * Free when nobody waits: the monitor interrupts a goroutine only when something else wants its
 * processor - a goroutine in its run queue, in the global queue or preempted on its thread, or an
 * expired timer of its processor. A goroutine alone on its processor runs uninterrupted (the demo's
 * two counting goroutines on two processors get no signal at all).
 *
 * A plain thread that lent itself to the scheduler while it waits (sched.c, "Lending") wants its
 * thread back as soon as its wait is over: its goroutine is then asked to stop after
 * LENDER_PREEMPT_AFTER_NS instead of a full time slice.
 *
 * Where it resumes: a preempted goroutine resumes on the same thread (M.preempted list). Go can
 * move it anywhere because its compiler never keeps a thread-local address in a register; C
 * compilers do (glibc's __errno_location is declared const, so &errno is hoisted out of loops).
 * One exception: one preempted on a plain thread that lent itself moves to the run queue of the
 * processor the thread keeps when the thread leaves (sched.c, lend_leave), where another thread
 * may take it - as after any park, a hoisted &errno in the program's own code is then another
 * thread's; the runtime's own code is never interrupted (see the safe points above).
 *
 * Under TSan and valgrind preemption is off: TSan defers asynchronous signals to its own safe
 * points and keeps per-thread signal state that a switch inside a handler would corrupt; valgrind's
 * tools track handlers the same way. HOARE_PREEMPT=0 turns it off everywhere.
 */
#include "proc.h"

#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>

#ifdef HOARE_HAVE_VALGRIND
#include <valgrind/valgrind.h>
#endif

enum {
    PREEMPT_AFTER_NS = 10 * 1000 * 1000, /* Go's time slice */
    LENDER_PREEMPT_AFTER_NS = 50 * 1000, /* the slice left when a lent thread's wait is over */
    RESEND_AFTER_NS = 1000 * 1000,       /* a request that met no safe point is repeated this late:
                                            every signal can cut a system call short (EINTR) */
    MAX_RANGES = 8,                      /* the executable's executable segments */
    SIGSTACK_SPARES = 2,                 /* spare alternate stacks an idle M keeps */
};

struct text_range {
    uintptr_t lo, hi;
};

static struct text_range ranges[MAX_RANGES];
static int nranges;
static bool preempt_enabled;
static struct sigaction previous_urg;
HIDDEN _Atomic uint64_t hoare__preempt_signals, hoare__preempt_switches;
HIDDEN bool hoare__sigstack_autodisarm;

/* The main executable's code (dl_iterate_phdr names it ""): the only code preempted. Shared
 * libraries are left alone, as Go never preempts C code: inside one a goroutine may hold the
 * library's own locks (malloc's, OpenSSL's), which another goroutine on the same thread would then
 * wait for for good, or be in the middle of using its thread-locals (errno, OpenSSL's error
 * queue), which a goroutine preempted on a lending thread and resumed on another would then mix
 * up. */
static int collect_ranges(struct dl_phdr_info *info, size_t size, void *arg) {
    (void)size;
    (void)arg;
    if (info->dlpi_name && info->dlpi_name[0]) return 0;
    for (int i = 0; i < info->dlpi_phnum && nranges < MAX_RANGES; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X)) continue;
        ranges[nranges].lo = info->dlpi_addr + ph->p_vaddr;
        ranges[nranges].hi = ranges[nranges].lo + ph->p_memsz;
        nranges++;
    }
    return 0;
}

/* The runtime's own code in a program linked with the static library (CMakeLists.txt renames its
 * text sections): it keeps M and P pointers in registers, which a goroutine moved to another
 * thread after its preemption (sched.c, "Lending") would then use. Undefined (NULL) otherwise. */
extern const char __start_hoare_text[] __attribute__((weak, visibility("hidden")));
extern const char __stop_hoare_text[] __attribute__((weak, visibility("hidden")));

static bool in_program_code(uintptr_t pc) {
    if (pc >= (uintptr_t)__start_hoare_text && pc < (uintptr_t)__stop_hoare_text) return false;
    for (int i = 0; i < nranges; i++)
        if (pc >= ranges[i].lo && pc < ranges[i].hi) return true;
    return false;
}

static uintptr_t interrupted_pc(void *uctx) {
    ucontext_t *uc = uctx;
#if defined(__x86_64__)
    return (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
    return (uintptr_t)uc->uc_mcontext.pc;
#endif
}

static uintptr_t interrupted_sp(void *uctx) {
    ucontext_t *uc = uctx;
#if defined(__x86_64__)
    return (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
#elif defined(__aarch64__)
    return (uintptr_t)uc->uc_mcontext.sp;
#endif
}

/* The interrupted code runs on g's own stack: not on the scheduler's, and not in the middle of a
 * switch where m->curg already names the next goroutine but the old stack is still in use. */
static bool on_own_stack(const G *g, void *uctx) {
    uintptr_t sp = interrupted_sp(uctx), lo = (uintptr_t)g->stack_lo;
    return sp > lo && sp <= lo + g->stack_size;
}

static void chain_previous(int sig, siginfo_t *info, void *uctx) {
    if (previous_urg.sa_flags & SA_SIGINFO) {
        if (previous_urg.sa_sigaction) previous_urg.sa_sigaction(sig, info, uctx);
    } else if (previous_urg.sa_handler != SIG_DFL && previous_urg.sa_handler != SIG_IGN) {
        previous_urg.sa_handler(sig);
    }
}

static void on_preempt_signal(int sig, siginfo_t *info, void *uctx) {
    M *m = hoare__getm();
    G *g = m ? m->curg : NULL;
    if (!g || !atomic_load_explicit(&g->preempt, memory_order_relaxed)) {
        chain_previous(sig, info, uctx);
        return;
    }
    P *p = m->p;
    char here; /* the frame must be on the thread's current alternate stack, the one we rotate */
    bool on_our_sigstack = !hoare__sigstack_autodisarm ||
                           (m->sigstack && &here >= (char *)m->sigstack &&
                            &here < (char *)m->sigstack + HOARE_SIGSTACK_SIZE);
    if (g->preempt_off || hoare__locks_held || !p || m->pend_kind != PEND_NONE ||
        !on_our_sigstack ||
        (atomic_load_explicit(&p->blocking, memory_order_relaxed) & REGION_IN) ||
        !on_own_stack(g, uctx) ||
        !in_program_code(interrupted_pc(uctx)))
        return; /* not a safe point: the monitor asks again later */
    if (!hoare__sigstack_autodisarm) {
        /* fallback (see hoare__preempt_init): the frame is on g's own stack and stays there */
        atomic_fetch_add_explicit(&hoare__preempt_switches, 1, memory_order_relaxed);
        hoare__preempt_switch(m, g);
        return;
    }
    /* Our frame stays on this signal stack while g is switched out: the thread gets another one. */
    void *mine = m->sigstack;
    void *next = m->sigstack_free;
    if (next) {
        m->sigstack_free = *(void **)next;
    } else {
        next = mmap(NULL, HOARE_SIGSTACK_SIZE, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (next == MAP_FAILED) return;
        atomic_fetch_add_explicit(&hoare__sigstacks_extra, 1, memory_order_relaxed);
    }
    /* Allowed inside the handler because the stacks are SS_AUTODISARM: the kernel disarms the
     * current one on entry, and sigreturn re-arms whatever uc_stack names (set below). */
    stack_t ss = {.ss_sp = next, .ss_size = HOARE_SIGSTACK_SIZE, .ss_flags = SS_AUTODISARM};
    if (!mine || sigaltstack(&ss, NULL) != 0) {
        *(void **)next = m->sigstack_free;
        m->sigstack_free = next;
        return;
    }
    m->sigstack = next;
    atomic_fetch_add_explicit(&hoare__preempt_switches, 1, memory_order_relaxed);
    hoare__preempt_switch(m, g);
    /* Resumed, on this M or (its processor retired) another: our stack is a spare once we return,
     * and sigreturn must re-arm the thread's current one. The spare's lowest word is far below the
     * frames in use at its top. A signal arriving meanwhile goes to the thread's current alternate
     * stack, never to this one. */
    M *now = hoare__getm();
    ucontext_t *uc = uctx;
    uc->uc_stack.ss_sp = now->sigstack;
    uc->uc_stack.ss_size = HOARE_SIGSTACK_SIZE;
    uc->uc_stack.ss_flags = SS_AUTODISARM;
    *(void **)mine = now->sigstack_free;
    now->sigstack_free = mine;
}

_Atomic int64_t hoare__sigstacks_extra;

void hoare__sigstack_trim(M *m) {
    void **link = &m->sigstack_free;
    for (int kept = 0; *link && kept < SIGSTACK_SPARES; kept++) link = (void **)*link;
    void *extra = *link;
    *link = NULL;
    while (extra) {
        void *next = *(void **)extra;
        munmap(extra, HOARE_SIGSTACK_SIZE);
        atomic_fetch_sub_explicit(&hoare__sigstacks_extra, 1, memory_order_relaxed);
        extra = next;
    }
}

/* Does sigaltstack take SS_AUTODISARM (Linux 4.7+; not qemu-user 7)? Probed on the calling thread,
 * whose own alternate stack is put back. */
static bool probe_autodisarm(void) {
    static char probe[HOARE_SIGSTACK_SIZE];
    stack_t old, ss = {.ss_sp = probe, .ss_size = sizeof probe, .ss_flags = SS_AUTODISARM};
    if (sigaltstack(NULL, &old) != 0 || (old.ss_flags & SS_ONSTACK)) return false;
    if (sigaltstack(&ss, NULL) != 0) return false;
    if (old.ss_flags & SS_DISABLE) {
        stack_t off = {.ss_sp = NULL, .ss_size = 0, .ss_flags = SS_DISABLE};
        sigaltstack(&off, NULL);
    } else {
        sigaltstack(&old, NULL);
    }
    return true;
}

void hoare__preempt_init(void) {
    hoare__sigstack_autodisarm = probe_autodisarm();
#ifdef HOARE_TSAN
    preempt_enabled = false;
#else
    preempt_enabled = hoare__env_switch("HOARE_PREEMPT", true);
#endif
#ifdef HOARE_HAVE_VALGRIND
    /* valgrind's tools track signal handlers and do not expect one to switch stacks and return
     * much later */
    if (RUNNING_ON_VALGRIND) preempt_enabled = false;
#endif
    if (!preempt_enabled) return;
    dl_iterate_phdr(collect_ranges, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_preempt_signal;
    /* on the alternate stack (see above); SA_NODEFER so that a goroutine switched to from inside
     * a handler can itself be preempted */
    sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_NODEFER | (hoare__sigstack_autodisarm ? SA_ONSTACK : 0);
    sigemptyset(&sa.sa_mask);
    sigaction(SIGURG, &sa, &previous_urg);
}

/* Monitor: track each P's time slice; ask a goroutine that has had it too long to stop. */
bool hoare__preempt_check(P *p, int64_t now) {
    uint32_t tick = atomic_load_explicit(&p->schedtick, memory_order_relaxed);
    if (tick != p->monitor_schedtick) {
        p->monitor_schedtick = tick;
        p->monitor_since = now;
        return false;
    }
    if (!preempt_enabled || now - p->monitor_since < LENDER_PREEMPT_AFTER_NS ||
        now - p->monitor_preempt_sent < RESEND_AFTER_NS)
        return false;
    M *m = __atomic_load_n(&p->m, __ATOMIC_ACQUIRE);
    G *g = m ? __atomic_load_n(&m->curg, __ATOMIC_ACQUIRE) : NULL;
    if (!g) return false;
    /* only a woken one: a thread that has lent itself long (LEND_MAX_NS) leaves at the next
     * switch, and interrupting its goroutine for that would move it for nothing */
    G *lender = __atomic_load_n(&m->lender, __ATOMIC_ACQUIRE);
    bool lender_waits =
        lender && atomic_load_explicit(&lender->wake_key, memory_order_relaxed) == WAKE_WOKEN;
    /* a P beyond hoare_procs() must retire: its goroutine has to stop like one somebody waits for */
    bool retiring = p->id >= atomic_load_explicit(&hoare__sched.nprocs, memory_order_relaxed);
    if (!lender_waits && now - p->monitor_since < PREEMPT_AFTER_NS) return false;
    /* fallback: the handler's frame would land on the goroutine's stack, and a sub-page one has no
     * room for it (a switch to one between here and the delivery is not covered: documented) */
    if (!hoare__sigstack_autodisarm && (g->flags & G_SMALL_STACK)) return false;
    /* Nobody waits for this processor: leave its goroutine alone (see above). The reads are racy
     * snapshots; a waiter that appears after them is seen at the next round. */
    if (!lender_waits && !retiring && !hoare__p_has_queued(p) &&
        atomic_load_explicit(&hoare__sched.runq_size, memory_order_relaxed) == 0 &&
        !__atomic_load_n(&m->preempted_head, __ATOMIC_RELAXED) &&
        atomic_load_explicit(&p->timers.first, memory_order_relaxed) > now)
        return false;
    atomic_store_explicit(&g->preempt, 1, memory_order_relaxed);
    if (now - p->monitor_since >= PREEMPT_AFTER_NS)
        atomic_store_explicit(&p->slice_over, 1, memory_order_relaxed);
    p->monitor_preempt_sent = now;
    atomic_fetch_add_explicit(&hoare__preempt_signals, 1, memory_order_relaxed);
    pthread_kill(m->thread, SIGURG);
    return true;
}

bool hoare__preempt_enabled(void) { return preempt_enabled; }

void hoare_preempt_disable(void) {
    G *g = hoare__curg();
    if (g) g->preempt_off++;
}

void hoare_preempt_enable(void) {
    G *g = hoare__curg();
    if (g && g->preempt_off > 0) g->preempt_off--;
}
