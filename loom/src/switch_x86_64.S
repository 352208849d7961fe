/* SPDX-License-Identifier: MIT
 * switch_x86_64.S - the fiber context switch (x86-64 System V).
 *
 * A context is its saved stack pointer; the six callee-saved general registers are pushed on
 * the stack being left. Caller-saved registers are already saved by the compiler around the
 * call. MXCSR and the x87 control word are not switched: loom never changes them per fiber
 * (ldmxcsr alone would cost more than the rest of the switch), so all fibers share the
 * thread's floating-point environment.
 *
 * New contexts start in loom__ctx_entry with the fiber pointer in r12 (see fiber.c).
 */
#if defined(__x86_64__)
    .text
    .globl loom__ctx_switch
    .hidden loom__ctx_switch
    .type loom__ctx_switch, @function
    .p2align 4
/* void loom__ctx_switch(struct loom__ctx *from (rdi), struct loom__ctx *to (rsi)) */
loom__ctx_switch:
    .cfi_startproc
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq (%rsi), %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    /* A plain ret, on purpose. "pop %rcx; jmp *%rcx" wins the isolated ping-pong benchmark
     * (4.3 ns against 11 ns here: ret mispredicts when the two contexts were entered from
     * different call sites) but leaves the call's return-stack entry unpopped, so every
     * later ret in the resumed code mispredicts: measured loom_yield 16 -> 48 ns and the
     * fiber NOP path 0.76 -> 0.61 of raw liburing. Real paths win with ret. */
    ret
    .cfi_endproc
    .size loom__ctx_switch, .-loom__ctx_switch

    .globl loom__ctx_entry
    .hidden loom__ctx_entry
    .type loom__ctx_entry, @function
    .p2align 4
/* First code of a new fiber: rsp is 16-byte aligned here, r12 holds the fiber. */
loom__ctx_entry:
    .cfi_startproc
    .cfi_undefined rip
    xorl %ebp, %ebp
    movq %r12, %rdi
    call loom__fiber_entry
    ud2
    .cfi_endproc
    .size loom__ctx_entry, .-loom__ctx_entry
#else
#error "loom: only x86-64 has a context switch so far"
#endif
    .section .note.GNU-stack,"",@progbits
