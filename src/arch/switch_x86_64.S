/*
 * switch_x86_64.S - goroutine context switch for x86-64 (System V ABI).
 *
 * void hoare__ctx_switch(void **save_sp, void *new_sp)
 *   Pushes the callee-saved state (rbp rbx r12-r15, MXCSR, x87 control word) on the current stack,
 *   stores the stack pointer in *save_sp, loads new_sp, pops the same state and returns into the
 *   other context. Caller-saved registers need no saving: this is an ordinary call to the compiler.
 *
 * Frame at a saved stack pointer (what arch.h's hoare__ctx_make builds for a new goroutine):
 *   +0 MXCSR (4 bytes), x87 control word (2 bytes)   +8 r15  +16 r14  +24 r13  +32 r12
 *   +40 rbx  +48 rbp  +56 return address
 *
 * hoare__ctx_trampoline: where a new context "returns" to the first time; calls hoare__g_start,
 * which never returns.
 *
 * void hoare__call_on_stack(void (*fn)(void *), void *arg, void *sp)
 *   Calls fn(arg) with the stack pointer set to sp (16-byte aligned), then comes back to the
 *   caller's stack: runtime work that needs more stack than a small goroutine has runs on its
 *   thread's scheduler stack (sched.c's hoare__on_sched_stack).
 */
        .text
        .globl  hoare__ctx_switch
        .hidden hoare__ctx_switch
        .type   hoare__ctx_switch, @function
        .p2align 4
hoare__ctx_switch:
        .cfi_startproc
        pushq   %rbp
        pushq   %rbx
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        subq    $8, %rsp
        stmxcsr (%rsp)
        fnstcw  4(%rsp)
        movq    %rsp, (%rdi)
        movq    %rsi, %rsp
        ldmxcsr (%rsp)
        fldcw   4(%rsp)
        addq    $8, %rsp
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %rbx
        popq    %rbp
        ret
        .cfi_endproc
        .size   hoare__ctx_switch, .-hoare__ctx_switch

        .globl  hoare__ctx_trampoline
        .hidden hoare__ctx_trampoline
        .type   hoare__ctx_trampoline, @function
        .p2align 4
hoare__ctx_trampoline:
        .cfi_startproc
        .cfi_undefined rip
        xorl    %ebp, %ebp
        call    hoare__g_start
        ud2
        .cfi_endproc
        .size   hoare__ctx_trampoline, .-hoare__ctx_trampoline

        .globl  hoare__call_on_stack
        .hidden hoare__call_on_stack
        .type   hoare__call_on_stack, @function
        .p2align 4
hoare__call_on_stack:
        .cfi_startproc
        pushq   %rbp
        .cfi_def_cfa_offset 16
        .cfi_offset rbp, -16
        movq    %rsp, %rbp
        .cfi_def_cfa_register rbp
        movq    %rdx, %rsp
        movq    %rdi, %rax
        movq    %rsi, %rdi
        call    *%rax
        movq    %rbp, %rsp
        popq    %rbp
        .cfi_def_cfa rsp, 8
        ret
        .cfi_endproc
        .size   hoare__call_on_stack, .-hoare__call_on_stack

        .section .note.GNU-stack,"",@progbits
