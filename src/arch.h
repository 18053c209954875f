/*
 * arch.h - the per-architecture context switch (src/arch/switch_*.S) and how a new context's first
 * frame is laid out, so that switching to it "returns" into hoare__ctx_trampoline.
 */
#ifndef HOARE_ARCH_H
#define HOARE_ARCH_H

#include <stdint.h>
#include <string.h>

/* Save the callee-saved state on the current stack into *save_sp; resume the context at new_sp. */
void hoare__ctx_switch(void **save_sp, void *new_sp);
/* First code of every goroutine: calls hoare__g_start() (sched.c), which never returns. */
void hoare__ctx_trampoline(void);
/* Call fn(arg) on another stack: sp is its (16-byte aligned) top. */
void hoare__call_on_stack(void (*fn)(void *), void *arg, void *sp);

/* Build the first frame of a context whose stack ends (exclusive) at top; return its stack pointer. */
static inline void *hoare__ctx_make(char *top) {
    uintptr_t t = (uintptr_t)top & ~(uintptr_t)15;
#if defined(__x86_64__)
    /* 8 slots popped by the switch (MXCSR/FPU word, 6 registers, return address), then 16 bytes so
     * that the trampoline's call happens on a 16-byte aligned stack; the top slot is a zero return
     * address that ends backtraces. */
    uint64_t *sp = (uint64_t *)(t - 16 - 64);
    memset(sp, 0, 64 + 16);
    sp[0] = 0x1F80u | ((uint64_t)0x037Fu << 32); /* default MXCSR, default x87 control word */
    sp[7] = (uint64_t)(uintptr_t)hoare__ctx_trampoline;
    return sp;
#elif defined(__aarch64__)
    uint64_t *sp = (uint64_t *)(t - 176);
    memset(sp, 0, 176);
    sp[11] = (uint64_t)(uintptr_t)hoare__ctx_trampoline; /* x30 */
    return sp;
#else
#error "hoare: no context switch for this architecture"
#endif
}

#endif /* HOARE_ARCH_H */
