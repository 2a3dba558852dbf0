/* switch_x86_64.S: context switch for x86-64, System V ABI.
 *
 * weft__ctx_switch(struct ctx *from, struct ctx *to)
 *   Pushes the callee-saved registers (rbp, rbx, r12-r15) and the MXCSR and x87 control
 *   words onto the current stack, stores rsp in from->sp, loads to->sp and pops the same
 *   frame, then returns into the resumed context.
 *
 * weft__ctx_trampoline
 *   First code run by a new context: ctx_make (below, in C terms) leaves entry in r12 and
 *   its argument in r13. entry never returns; ud2 catches it if it does. */
	.text
	.globl weft__ctx_switch
	.hidden weft__ctx_switch
	.type weft__ctx_switch, @function
	.p2align 4
weft__ctx_switch:
	.cfi_startproc
	pushq %rbp
	pushq %rbx
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	subq $8, %rsp
	stmxcsr (%rsp)
	fnstcw 4(%rsp)
	movq %rsp, (%rdi)
	movq (%rsi), %rsp
	ldmxcsr (%rsp)
	fldcw 4(%rsp)
	addq $8, %rsp
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %rbx
	popq %rbp
	ret
	.cfi_endproc
	.size weft__ctx_switch, .-weft__ctx_switch

	.globl weft__ctx_trampoline
	.hidden weft__ctx_trampoline
	.type weft__ctx_trampoline, @function
	.p2align 4
weft__ctx_trampoline:
	.cfi_startproc
	.cfi_undefined rip
	xorl %ebp, %ebp
	movq %r13, %rdi
	callq *%r12
	ud2
	.cfi_endproc
	.size weft__ctx_trampoline, .-weft__ctx_trampoline

	.section .note.GNU-stack,"",@progbits
