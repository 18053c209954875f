/*
 * switch_aarch64.S - goroutine context switch for AArch64 (AAPCS64).
 *
 * void hoare__ctx_switch(void **save_sp, void *new_sp)
 *   Saves the callee-saved state (x19-x28, fp x29, lr x30, d8-d15, FPCR) in a 176-byte frame on the
 *   current stack, stores sp in *save_sp, loads new_sp, restores the same frame and returns to the
 *   restored lr.
 *
 * Frame at a saved stack pointer (what arch.h's hoare__ctx_make builds for a new goroutine):
 *   +0 x19 x20  +16 x21 x22  +32 x23 x24  +48 x25 x26  +64 x27 x28  +80 x29 x30
 *   +96 d8 d9  +112 d10 d11  +128 d12 d13  +144 d14 d15  +160 FPCR  (+168 padding)
 *
 * hoare__ctx_trampoline: where a new context "returns" to the first time; calls hoare__g_start,
 * which never returns.
 *
 * void hoare__call_on_stack(void (*fn)(void *), void *arg, void *sp)
 *   Calls fn(arg) with sp as the stack pointer (16-byte aligned), then comes back to the caller's
 *   stack (sched.c's hoare__on_sched_stack).
 */
        .text
        .globl  hoare__ctx_switch
        .hidden hoare__ctx_switch
        .type   hoare__ctx_switch, %function
        .p2align 4
hoare__ctx_switch:
        sub     sp, sp, #176
        stp     x19, x20, [sp, #0]
        stp     x21, x22, [sp, #16]
        stp     x23, x24, [sp, #32]
        stp     x25, x26, [sp, #48]
        stp     x27, x28, [sp, #64]
        stp     x29, x30, [sp, #80]
        stp     d8, d9, [sp, #96]
        stp     d10, d11, [sp, #112]
        stp     d12, d13, [sp, #128]
        stp     d14, d15, [sp, #144]
        mrs     x2, fpcr
        str     x2, [sp, #160]
        mov     x2, sp
        str     x2, [x0]
        mov     sp, x1
        ldp     x19, x20, [sp, #0]
        ldp     x21, x22, [sp, #16]
        ldp     x23, x24, [sp, #32]
        ldp     x25, x26, [sp, #48]
        ldp     x27, x28, [sp, #64]
        ldp     x29, x30, [sp, #80]
        ldp     d8, d9, [sp, #96]
        ldp     d10, d11, [sp, #112]
        ldp     d12, d13, [sp, #128]
        ldp     d14, d15, [sp, #144]
        ldr     x2, [sp, #160]
        msr     fpcr, x2
        add     sp, sp, #176
        ret
        .size   hoare__ctx_switch, .-hoare__ctx_switch

        .globl  hoare__ctx_trampoline
        .hidden hoare__ctx_trampoline
        .type   hoare__ctx_trampoline, %function
        .p2align 4
hoare__ctx_trampoline:
        mov     x29, #0
        mov     x30, #0
        bl      hoare__g_start
        brk     #0
        .size   hoare__ctx_trampoline, .-hoare__ctx_trampoline

        .globl  hoare__call_on_stack
        .hidden hoare__call_on_stack
        .type   hoare__call_on_stack, %function
        .p2align 4
hoare__call_on_stack:
        .cfi_startproc
        stp     x29, x30, [sp, #-16]!
        .cfi_def_cfa_offset 16
        .cfi_offset x29, -16
        .cfi_offset x30, -8
        mov     x29, sp
        .cfi_def_cfa_register x29
        mov     sp, x2
        mov     x3, x0
        mov     x0, x1
        blr     x3
        mov     sp, x29
        ldp     x29, x30, [sp], #16
        .cfi_def_cfa sp, 0
        ret
        .cfi_endproc
        .size   hoare__call_on_stack, .-hoare__call_on_stack

        .section .note.GNU-stack,"",%progbits
