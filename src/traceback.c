/*
 * traceback.c - unwinding and symbolising stacks for dumps, fatal errors and crash reports.
 *
 * With elfutils' libdw (HOARE_HAVE_LIBDW, found at build time) the frames are unwound by libdw's
 * frame unwinder (dwfl_getthread_frames, driven by .eh_frame CFI, so -O2 code without frame
 * pointers unwinds) from a set of registers we supply:
 *  - a switched-out goroutine: the callee-saved registers and return address that
 *    hoare__ctx_switch left at its saved stack pointer (layout in src/arch/switch_*.S);
 *  - the calling thread: getcontext();
 *  - a signal: the interrupted registers in the handler's ucontext.
 * Stack memory is read in place when it lies in the unwound goroutine's own stack (always mapped:
 * slabs are never unmapped), else with process_vm_readv on our own process; so a stale or garbage
 * frame (a dump is a snapshot while goroutines run on) yields EFAULT, never a crash. Sanitizers do
 * not see the reads. Symbolised frames are cached by address. Addresses are symbolised by libdw too: function names from the symbol table
 * (static functions included), file:line from the line table, and inlined calls expanded from the
 * DWARF scopes (dwarf_getscopes), as Go lists inlined frames.
 *
 * One Dwfl (the process's modules, built at first use, rebuilt when an address falls outside every
 * known module, e.g. after a dlopen) is guarded by dw_lock. Callers in signal handlers may find the
 * lock held (a crash inside a dump): they wait a bounded time and then print raw addresses.
 *
 * Without libdw: the calling thread's frames come from glibc's backtrace(), and every address
 * prints as module+0xoffset (dladdr); a switched-out goroutine shows where it will resume and its
 * start function only.
 */
#include "traceback.h"

#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#ifdef HOARE_HAVE_LIBDW
#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#endif

static void write_all(int fd, const char *b, size_t n) {
    for (size_t off = 0; off < n;) {
        ssize_t w = write(fd, b + off, n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        off += (size_t)w;
    }
}

void hoare__fdprintf(int fd, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > 0) write_all(fd, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

/* A frame's text, built before it is written (and cached: see print_frame). */
struct text {
    char b[4096];
    size_t n;
};

static __attribute__((format(printf, 2, 3))) void text_printf(struct text *t, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->b + t->n, sizeof t->b - t->n, fmt, ap);
    va_end(ap);
    if (n > 0) t->n += (size_t)n < sizeof t->b - t->n ? (size_t)n : sizeof t->b - t->n - 1;
}

static void text_write(int fd, const struct text *t) { write_all(fd, t->b, t->n); }

enum { MAX_FRAMES = 100 }; /* as Go: deeper stacks end with "...additional frames elided..." */

struct frames {
    uintptr_t pc[MAX_FRAMES + 1];
    bool exact[MAX_FRAMES + 1]; /* pc is the faulting/current instruction, not a return address */
    int n;
};

/* Read one word of our own memory; false if it is not mapped. */
static bool read_word(uintptr_t addr, uint64_t *out) {
    struct iovec local = {out, sizeof *out}, remote = {(void *)addr, sizeof *out};
    return process_vm_readv(getpid(), &local, 1, &remote, 1, 0) == (ssize_t)sizeof *out;
}

static void module_offset(uintptr_t pc, char *buf, size_t cap) {
    Dl_info info;
    if (dladdr((void *)pc, &info) && info.dli_fname)
        snprintf(buf, cap, "%s+0x%lx", info.dli_fname, (unsigned long)(pc - (uintptr_t)info.dli_fbase));
    else
        snprintf(buf, cap, "0x%lx", (unsigned long)pc);
}

/* A frame without debug information: name from the dynamic symbols if any, module+offset. */
static void format_raw_frame(struct text *t, uintptr_t pc) {
    Dl_info info;
    char where[512];
    module_offset(pc, where, sizeof where);
    const char *name = dladdr((void *)pc, &info) && info.dli_sname ? info.dli_sname : "?";
    text_printf(t, "%s(...)\n\t%s\n", name, where);
}

static void print_raw_frame(int fd, uintptr_t pc) {
    struct text t = {.n = 0};
    format_raw_frame(&t, pc);
    text_write(fd, &t);
}

/* ------------------------------------------------------------------------------------------
 * Registers to start from, in DWARF numbering */

#if defined(__x86_64__)
enum { NREGS = 17 }; /* rax rdx rcx rbx rsi rdi rbp rsp r8-r15, then rip as 16 */
#elif defined(__aarch64__)
enum { NREGS = 32 }; /* x0-x30, sp */
#endif

struct regs {
    uint64_t r[NREGS];
    uint64_t pc;
    bool pc_is_return; /* pc is a return address (a saved context, getcontext) */
};

/* The context hoare__ctx_switch saved at sp. */
static bool regs_from_saved(struct regs *rg, uintptr_t sp) {
    memset(rg, 0, sizeof *rg);
    uint64_t w[12];
#if defined(__x86_64__)
    /* +0 MXCSR/x87  +8 r15 +16 r14 +24 r13 +32 r12 +40 rbx +48 rbp +56 return address */
    for (int i = 0; i < 8; i++)
        if (!read_word(sp + 8 * (uintptr_t)i, &w[i])) return false;
    rg->r[15] = w[1], rg->r[14] = w[2], rg->r[13] = w[3], rg->r[12] = w[4];
    rg->r[3] = w[5], rg->r[6] = w[6], rg->r[7] = sp + 64;
    rg->pc = w[7];
#elif defined(__aarch64__)
    /* +0 x19 ... +72 x28, +80 x29, +88 x30 (lr), frame of 176 bytes */
    for (int i = 0; i < 12; i++)
        if (!read_word(sp + 8 * (uintptr_t)i, &w[i])) return false;
    for (int i = 0; i < 12; i++) rg->r[19 + i] = w[i];
    rg->r[31] = sp + 176;
    rg->pc = w[11];
#endif
    rg->pc_is_return = true;
    return rg->pc != 0;
}

static void regs_from_ucontext(struct regs *rg, const ucontext_t *uc, bool pc_is_return) {
    memset(rg, 0, sizeof *rg);
#if defined(__x86_64__)
    static const int map[NREGS] = {REG_RAX, REG_RDX, REG_RCX, REG_RBX, REG_RSI, REG_RDI,
                                   REG_RBP, REG_RSP, REG_R8,  REG_R9,  REG_R10, REG_R11,
                                   REG_R12, REG_R13, REG_R14, REG_R15, REG_RIP};
    for (int i = 0; i < NREGS; i++) rg->r[i] = (uint64_t)uc->uc_mcontext.gregs[map[i]];
    rg->pc = (uint64_t)uc->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
    for (int i = 0; i < 31; i++) rg->r[i] = uc->uc_mcontext.regs[i];
    rg->r[31] = uc->uc_mcontext.sp;
    rg->pc = uc->uc_mcontext.pc;
#endif
    rg->pc_is_return = pc_is_return;
}

#ifdef HOARE_HAVE_LIBDW

/* The lock around libdw's state. */
static pthread_mutex_t dw_lock = PTHREAD_MUTEX_INITIALIZER;

/* Wait up to about 2 s: the holder may be this very thread (a crash inside a dump). */
static bool dw_acquire(void) {
    for (int i = 0; i < 2000; i++) {
        if (pthread_mutex_trylock(&dw_lock) == 0) return true;
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return false;
}

static Dwfl *dwfl;               /* guarded by dw_lock, as everything below */
static bool dwfl_can_unwind;     /* dwfl_attach_state succeeded */
static const struct regs *unwind_regs; /* the registers of the unwind in progress (dw_lock) */
static uintptr_t unwind_lo, unwind_hi; /* its goroutine's stack, read directly (0, 0: none) */

/* A word of the stack being unwound: mapped for good (slabs are never unmapped), so read in
 * place, without a system call; sanitizers must not look (redzones, other fibers' frames). */
__attribute__((no_sanitize("address", "thread"))) static uint64_t read_stack_word(uintptr_t addr) {
    return *(volatile const uint64_t *)addr;
}

static pid_t cb_next_thread(Dwfl *d, void *arg, void **thread_argp) {
    (void)d, (void)arg, (void)thread_argp;
    return 0; /* no thread list: only dwfl_getthread_frames on the one we describe */
}

static bool cb_get_thread(Dwfl *d, pid_t tid, void *arg, void **thread_argp) {
    (void)d, (void)tid, (void)arg;
    *thread_argp = NULL;
    return true;
}

static bool cb_memory_read(Dwfl *d, Dwarf_Addr addr, Dwarf_Word *result, void *arg) {
    (void)d, (void)arg;
    uint64_t w;
    /* (addr + 8 would wrap for a garbage address at the top of the address space) */
    if (addr >= unwind_lo && addr < unwind_hi && unwind_hi - addr >= 8 && (addr & 7) == 0)
        w = read_stack_word((uintptr_t)addr);
    else if (!read_word((uintptr_t)addr, &w)) return false;
    *result = w;
    return true;
}

static bool cb_set_initial_registers(Dwfl_Thread *thread, void *arg) {
    (void)arg;
    const struct regs *rg = unwind_regs;
    if (!dwfl_thread_state_registers(thread, 0, NREGS, (const Dwarf_Word *)rg->r)) return false;
    dwfl_thread_state_register_pc(thread, rg->pc);
    return true;
}

static const Dwfl_Thread_Callbacks thread_callbacks = {
    .next_thread = cb_next_thread,
    .get_thread = cb_get_thread,
    .memory_read = cb_memory_read,
    .set_initial_registers = cb_set_initial_registers,
};

static const Dwfl_Callbacks proc_callbacks = {
    .find_elf = dwfl_linux_proc_find_elf,
    .find_debuginfo = dwfl_standard_find_debuginfo,
};

/* (Re)build the module list of this process. Caller holds dw_lock. */
static void cache_clear(void);

static Dwfl *dwfl_get(bool rebuild) {
    if (dwfl && !rebuild) return dwfl;
    if (dwfl) dwfl_end(dwfl);
    cache_clear();
    dwfl = dwfl_begin(&proc_callbacks);
    if (!dwfl) return NULL;
    if (dwfl_linux_proc_report(dwfl, getpid()) != 0 || dwfl_report_end(dwfl, NULL, NULL) != 0) {
        dwfl_end(dwfl);
        dwfl = NULL;
        return NULL;
    }
    dwfl_can_unwind = dwfl_attach_state(dwfl, NULL, getpid(), &thread_callbacks, NULL);
    return dwfl;
}

/* The module holding pc. An address outside every known module rebuilds the list (a dlopen since),
 * at most once a second: a garbage frame must not re-read every ELF file each time. */
static Dwfl_Module *module_of(uintptr_t pc) {
    static int64_t last_rebuild;
    Dwfl *d = dwfl_get(false);
    Dwfl_Module *mod = d ? dwfl_addrmodule(d, pc) : NULL;
    int64_t now = hoare__nanotime();
    if (!mod && d && now - last_rebuild > HOARE_SEC) {
        last_rebuild = now;
        if ((d = dwfl_get(true))) mod = dwfl_addrmodule(d, pc);
    }
    return mod;
}

static int frame_cb(Dwfl_Frame *state, void *arg) {
    struct frames *f = arg;
    Dwarf_Addr pc;
    bool activation;
    if (!dwfl_frame_pc(state, &pc, &activation) || pc == 0) return DWARF_CB_ABORT;
    f->pc[f->n] = (uintptr_t)pc;
    f->exact[f->n] = activation;
    f->n++;
    return f->n > MAX_FRAMES ? DWARF_CB_ABORT : DWARF_CB_OK;
}

/* Unwind from rg. Caller holds dw_lock. */
static void unwind(const struct regs *rg, struct frames *f) {
    f->n = 0;
    if (!module_of((uintptr_t)rg->pc) || !dwfl_can_unwind) {
        f->pc[0] = (uintptr_t)rg->pc;
        f->exact[0] = !rg->pc_is_return;
        f->n = 1;
        return;
    }
    unwind_regs = rg;
    dwfl_getthread_frames(dwfl, 1, frame_cb, f);
    unwind_regs = NULL;
    unwind_lo = unwind_hi = 0;
    if (f->n == 0) {
        f->pc[0] = (uintptr_t)rg->pc;
        f->n = 1;
    }
    /* libdw takes the first frame for an interrupted instruction */
    f->exact[0] = !rg->pc_is_return;
}

static const char *die_name(Dwarf_Die *die) {
    Dwarf_Attribute attr;
    if (dwarf_attr_integrate(die, DW_AT_name, &attr)) return dwarf_formstring(&attr);
    return NULL;
}

static const char *symbol_name(Dwfl_Module *mod, uintptr_t pc, uintptr_t *start) {
    GElf_Off off = 0;
    GElf_Sym sym;
    const char *name = mod ? dwfl_module_addrinfo(mod, pc, &off, &sym, NULL, NULL, NULL) : NULL;
    if (start) *start = pc - (uintptr_t)off;
    return name;
}

/* Name of the function containing pc (the innermost inlined one), for "created by" and stops. */
static const char *function_name(Dwfl_Module *mod, uintptr_t lookup) {
    Dwarf_Addr bias;
    Dwarf_Die *cu = dwfl_module_addrdie(mod, lookup, &bias);
    if (cu) {
        Dwarf_Die *scopes;
        int n = dwarf_getscopes(cu, lookup - bias, &scopes);
        const char *name = NULL;
        for (int i = 0; i < n && !name; i++) {
            int tag = dwarf_tag(&scopes[i]);
            if (tag == DW_TAG_inlined_subroutine || tag == DW_TAG_subprogram) name = die_name(&scopes[i]);
        }
        if (n > 0) free(scopes);
        if (name) return name;
    }
    return symbol_name(mod, lookup, NULL);
}

/* Format one physical frame with its inlined calls, innermost first. Returns false if it is the
 * runtime's goroutine entry (the end of a goroutine's stack). */
static bool format_frame(struct text *t, uintptr_t pc, bool exact) {
    uintptr_t lookup = exact ? pc : pc - 1;
    Dwfl_Module *mod = module_of(lookup);
    if (!mod) {
        format_raw_frame(t, pc);
        return true;
    }
    uintptr_t fstart = 0;
    const char *sym = symbol_name(mod, lookup, &fstart);
    if (sym && (!strcmp(sym, "hoare__g_start") || !strcmp(sym, "hoare__ctx_trampoline"))) return false;
    Dwarf_Addr mstart = 0;
    const char *modname = dwfl_module_info(mod, NULL, &mstart, NULL, NULL, NULL, NULL, NULL);
    Dwfl_Line *line = dwfl_module_getsrc(mod, lookup);
    int lineno = 0;
    const char *file = line ? dwfl_lineinfo(line, NULL, &lineno, NULL, NULL, NULL) : NULL;
    Dwarf_Addr bias;
    Dwarf_Die *cu = file ? dwfl_module_addrdie(mod, lookup, &bias) : NULL;
    if (!file || !cu) {
        text_printf(t, "%s(...)\n\t%s+0x%lx\n", sym ? sym : "?", modname ? modname : "?",
                (unsigned long)(pc - (uintptr_t)mstart));
        return true;
    }
    Dwarf_Die *scopes = NULL;
    int n = dwarf_getscopes(cu, lookup - bias, &scopes);
    Dwarf_Files *files = NULL;
    size_t nfiles = 0;
    dwarf_getsrcfiles(cu, &files, &nfiles);
    bool printed_outer = false;
    for (int i = 0; i < n; i++) {
        int tag = dwarf_tag(&scopes[i]);
        if (tag == DW_TAG_inlined_subroutine) {
            const char *name = die_name(&scopes[i]);
            text_printf(t, "%s(...)\n\t%s:%d\n", name ? name : "?", file, lineno);
            /* the caller's position is this inlined call's site */
            Dwarf_Attribute a;
            Dwarf_Word v;
            if (dwarf_formudata(dwarf_attr(&scopes[i], DW_AT_call_file, &a), &v) == 0 && files) {
                const char *f = dwarf_filesrc(files, v, NULL, NULL);
                if (f) file = f;
            }
            if (dwarf_formudata(dwarf_attr(&scopes[i], DW_AT_call_line, &a), &v) == 0) lineno = (int)v;
        } else if (tag == DW_TAG_subprogram) {
            const char *name = die_name(&scopes[i]);
            text_printf(t, "%s(...)\n\t%s:%d +0x%lx\n", name ? name : sym ? sym : "?", file, lineno,
                    (unsigned long)(pc - fstart));
            printed_outer = true;
            break;
        }
    }
    if (n > 0) free(scopes);
    if (!printed_outer)
        text_printf(t, "%s(...)\n\t%s:%d +0x%lx\n", sym ? sym : "?", file, lineno, (unsigned long)(pc - fstart));
    return true;
}

/* Symbolised frames, by address: goroutines parked in the same place share their frames, and a
 * dump of many of them would otherwise symbolise the same addresses again and again. Guarded by
 * dw_lock; emptied when the module list is rebuilt. */
enum { CACHE_SLOTS = 4096 };
static struct cached_frame {
    uintptr_t pc;   /* 0: empty */
    bool exact, stop;
    bool creator;   /* a "created by" site, not a frame */
    char *text;
} frame_cache[CACHE_SLOTS];

static struct cached_frame *cache_slot(uintptr_t pc, bool creator) {
    return &frame_cache[(((pc ^ creator) * 0x9E3779B97F4A7C15ull) >> 52) % CACHE_SLOTS];
}

static void cache_clear(void) {
    for (int i = 0; i < CACHE_SLOTS; i++) {
        free(frame_cache[i].text);
        frame_cache[i] = (struct cached_frame){0};
    }
}

/* Print one frame (from the cache when it can). false: the end of a goroutine's stack. */
static bool print_frame(int fd, uintptr_t pc, bool exact) {
    struct cached_frame *c = cache_slot(pc, false);
    if (c->pc == pc && !c->creator && c->exact == exact) {
        if (c->text) write_all(fd, c->text, strlen(c->text));
        return !c->stop;
    }
    struct text t = {.n = 0};
    bool more = format_frame(&t, pc, exact);
    t.b[t.n] = 0;
    free(c->text);
    *c = (struct cached_frame){.pc = pc, .exact = exact, .stop = !more, .text = strdup(t.b)};
    text_write(fd, &t);
    return more;
}

static void print_frames(int fd, const struct frames *f, int from) {
    for (int i = from; i < f->n && i < MAX_FRAMES; i++)
        if (!print_frame(fd, f->pc[i], f->exact[i])) return;
    if (f->n > MAX_FRAMES) hoare__fdprintf(fd, "...additional frames elided...\n");
}

static bool is_trampoline(uintptr_t pc) {
    Dwfl_Module *mod = module_of(pc);
    const char *sym = mod ? symbol_name(mod, pc, NULL) : NULL;
    return sym && !strcmp(sym, "hoare__ctx_trampoline");
}

static void start_function(int fd, const G *g) {
    print_frame(fd, g->start_pc, true);
}

/* Unwind g's saved context into f. false: it has none (or ran meanwhile: see below). Caller
 * holds dw_lock. */
static bool unwind_switched_out(G *g, struct frames *f) {
    /* A dump does not stop the world: g may be resumed (and its stack rewritten) while we read it.
     * The frames count only if g was not switched in meanwhile (resumes, seqlock-like: execute
     * counts before g writes anything). */
    uint32_t resumes = atomic_load_explicit(&g->resumes, memory_order_acquire);
    uint32_t st = atomic_load_explicit(&g->status, memory_order_acquire);
    if (st != G_WAITING && st != G_RUNNABLE) return false;
    struct regs rg;
    uintptr_t sp = (uintptr_t)g->sp, lo = (uintptr_t)g->stack_lo;
    if (sp < lo || sp >= lo + g->stack_size || !regs_from_saved(&rg, sp)) return false;
    if (is_trampoline((uintptr_t)rg.pc)) {
        f->n = 0; /* created, has not run yet */
    } else {
        unwind_lo = lo;
        unwind_hi = lo + g->stack_size;
        unwind(&rg, f);
    }
#ifdef HOARE_TSAN
    atomic_signal_fence(memory_order_seq_cst); /* TSan models no fences (nor sees the stack reads) */
#else
    atomic_thread_fence(memory_order_acquire); /* the stack reads before the count's second read */
#endif
    return atomic_load_explicit(&g->resumes, memory_order_relaxed) == resumes;
}

void hoare__traceback_g(int fd, G *g) {
    if (!dw_acquire()) { /* where it will resume, unchecked */
        struct regs rg;
        uintptr_t sp = (uintptr_t)g->sp, lo = (uintptr_t)g->stack_lo;
        if (sp >= lo && sp < lo + g->stack_size && regs_from_saved(&rg, sp)) print_raw_frame(fd, (uintptr_t)rg.pc);
        return;
    }
    struct frames f;
    bool ok = false;
    for (int attempt = 0; attempt < 3 && !ok; attempt++) ok = unwind_switched_out(g, &f);
    if (!ok) hoare__fdprintf(fd, "\t(it ran while its stack was read: no frames)\n");
    else if (f.n == 0) start_function(fd, g);
    else print_frames(fd, &f, 0);
    pthread_mutex_unlock(&dw_lock);
}

void hoare__traceback_here(int fd, uintptr_t from_pc) {
    ucontext_t uc;
    if (getcontext(&uc) != 0) return;
    struct regs rg;
    regs_from_ucontext(&rg, &uc, true);
    if (!dw_acquire()) return;
    struct frames f;
    unwind(&rg, &f);
    int from = 0;
    for (int i = 0; i < f.n; i++)
        if (f.pc[i] == from_pc) {
            from = i;
            break;
        }
    print_frames(fd, &f, from);
    pthread_mutex_unlock(&dw_lock);
}

void hoare__traceback_signal(int fd, void *uctx) {
    struct regs rg;
    regs_from_ucontext(&rg, uctx, false);
    if (!dw_acquire()) {
        print_raw_frame(fd, (uintptr_t)rg.pc);
        return;
    }
    struct frames f;
    unwind(&rg, &f);
    print_frames(fd, &f, 0);
    pthread_mutex_unlock(&dw_lock);
}

void hoare__traceback_creator(int fd, const G *g) {
    char in[48] = "";
    if (g->creator_id) snprintf(in, sizeof in, " in goroutine %llu", (unsigned long long)g->creator_id);
    uintptr_t pc = g->creator_pc;
    if (!pc || !dw_acquire()) {
        char where[512];
        module_offset(pc, where, sizeof where);
        hoare__fdprintf(fd, "created by ?%s\n\t%s\n", in, where);
        return;
    }
    /* cached as "NAME\n\tWHERE\n" under the key (pc, creator) */
    struct cached_frame *c = cache_slot(pc, true);
    if (c->pc != pc || !c->creator) {
        Dwfl_Module *mod = module_of(pc - 1);
        const char *name = mod ? function_name(mod, pc - 1) : NULL;
        Dwfl_Line *line = mod ? dwfl_module_getsrc(mod, pc - 1) : NULL;
        int lineno = 0;
        const char *file = line ? dwfl_lineinfo(line, NULL, &lineno, NULL, NULL, NULL) : NULL;
        uintptr_t fstart = pc;
        if (mod) symbol_name(mod, pc - 1, &fstart);
        struct text t = {.n = 0};
        if (file) {
            text_printf(&t, "%s\n\t%s:%d +0x%lx\n", name ? name : "?", file, lineno, (unsigned long)(pc - fstart));
        } else {
            char where[512];
            module_offset(pc, where, sizeof where);
            text_printf(&t, "%s\n\t%s\n", name ? name : "?", where);
        }
        t.b[t.n] = 0;
        free(c->text);
        *c = (struct cached_frame){.pc = pc, .creator = true, .text = strdup(t.b)};
    }
    const char *text = c->text ? c->text : "?\n\t?\n";
    const char *nl = strchr(text, '\n');
    hoare__fdprintf(fd, "created by %.*s%s%s", (int)(nl - text), text, in, nl);
    pthread_mutex_unlock(&dw_lock);
}

#else /* no libdw: raw addresses */

void hoare__traceback_g(int fd, G *g) {
    struct regs rg;
    uintptr_t sp = (uintptr_t)g->sp, lo = (uintptr_t)g->stack_lo;
    if (sp >= lo && sp < lo + g->stack_size && regs_from_saved(&rg, sp)) print_raw_frame(fd, (uintptr_t)rg.pc - 1);
    hoare__fdprintf(fd, "...\n");
    print_raw_frame(fd, g->start_pc);
}

void hoare__traceback_here(int fd, uintptr_t from_pc) {
    void *pcs[MAX_FRAMES + 1];
    int n = backtrace(pcs, MAX_FRAMES + 1), from = 0;
    for (int i = 0; i < n; i++)
        if ((uintptr_t)pcs[i] == from_pc) {
            from = i;
            break;
        }
    for (int i = from; i < n && i < MAX_FRAMES; i++) print_raw_frame(fd, (uintptr_t)pcs[i]);
}

void hoare__traceback_signal(int fd, void *uctx) {
    struct regs rg;
    regs_from_ucontext(&rg, uctx, false);
    print_raw_frame(fd, (uintptr_t)rg.pc);
}

void hoare__traceback_creator(int fd, const G *g) {
    char where[512];
    Dl_info info;
    module_offset(g->creator_pc, where, sizeof where);
    const char *name = dladdr((void *)g->creator_pc, &info) && info.dli_sname ? info.dli_sname : "?";
    if (g->creator_id) hoare__fdprintf(fd, "created by %s in goroutine %llu\n\t%s\n", name, (unsigned long long)g->creator_id, where);
    else hoare__fdprintf(fd, "created by %s\n\t%s\n", name, where);
}

#endif
