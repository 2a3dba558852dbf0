/* switch_aarch64.S: context switch for AArch64, AAPCS64 (Linux).
 *
 * weft__ctx_switch(struct ctx *from, struct ctx *to)
 *   Stores the callee-saved registers (x19-x28, x29 fp, x30 lr, d8-d15) and FPCR in a
 *   176-byte frame on the current stack, stores sp in from->sp, loads to->sp, reloads the
 *   same frame from there and returns through the restored lr into the resumed context.
 *   Frame, in 8-byte slots from sp upward (ctx_make.c builds the same one for a new
 *   context; the two must change together):
 *     0-9   x19..x28        10  x29 (fp)       11  x30 (lr)
 *     12-19 d8..d15         20  FPCR           21  padding (keeps sp 16-byte aligned)
 *   Only the low 64 bits of v8-v15 are callee-saved under AAPCS64, hence d8-d15. FPCR
 *   (rounding mode, flush-to-zero, default NaN) travels with the coroutine as MXCSR does on
 *   x86-64; it is written only when it differs, since an FPCR write can be slow. FPSR
 *   (sticky exception flags) is not preserved, as on a call. x18 is a temporary on Linux.
 *
 * weft__ctx_trampoline
 *   First code run by a new context: the first switch "returns" here through the lr slot,
 *   with entry in x19 and its argument in x20. entry never returns; brk catches it if it
 *   does. */
	.text
	.globl weft__ctx_switch
	.hidden weft__ctx_switch
	.type weft__ctx_switch, @function
	.p2align 4
weft__ctx_switch:
	.cfi_startproc
#if defined(__ARM_FEATURE_BTI_DEFAULT)
	hint #34 /* bti c */
#endif
	sub sp, sp, #176
	.cfi_def_cfa_offset 176
	stp x19, x20, [sp, #0]
	stp x21, x22, [sp, #16]
	stp x23, x24, [sp, #32]
	stp x25, x26, [sp, #48]
	stp x27, x28, [sp, #64]
	stp x29, x30, [sp, #80]
	.cfi_rel_offset x19, 0
	.cfi_rel_offset x20, 8
	.cfi_rel_offset x21, 16
	.cfi_rel_offset x22, 24
	.cfi_rel_offset x23, 32
	.cfi_rel_offset x24, 40
	.cfi_rel_offset x25, 48
	.cfi_rel_offset x26, 56
	.cfi_rel_offset x27, 64
	.cfi_rel_offset x28, 72
	.cfi_rel_offset x29, 80
	.cfi_rel_offset x30, 88
	stp d8, d9, [sp, #96]
	stp d10, d11, [sp, #112]
	stp d12, d13, [sp, #128]
	stp d14, d15, [sp, #144]
	.cfi_rel_offset d8, 96
	.cfi_rel_offset d9, 104
	.cfi_rel_offset d10, 112
	.cfi_rel_offset d11, 120
	.cfi_rel_offset d12, 128
	.cfi_rel_offset d13, 136
	.cfi_rel_offset d14, 144
	.cfi_rel_offset d15, 152
	mrs x10, fpcr
	str x10, [sp, #160]

	mov x9, sp
	str x9, [x0]
	ldr x9, [x1]
	mov sp, x9

	/* From here on the frame is the resumed context's; the CFI above describes it too. */
	ldr x9, [sp, #160]
	cmp x9, x10
	b.eq 1f
	msr fpcr, x9
1:
	ldp d8, d9, [sp, #96]
	ldp d10, d11, [sp, #112]
	ldp d12, d13, [sp, #128]
	ldp d14, d15, [sp, #144]
	ldp x19, x20, [sp, #0]
	ldp x21, x22, [sp, #16]
	ldp x23, x24, [sp, #32]
	ldp x25, x26, [sp, #48]
	ldp x27, x28, [sp, #64]
	ldp x29, x30, [sp, #80]
	add sp, sp, #176
	.cfi_def_cfa_offset 0
	.cfi_restore x19, x20, x21, x22, x23, x24, x25, x26, x27, x28, x29, x30
	.cfi_restore d8, d9, d10, d11, d12, d13, d14, d15
	ret
	.cfi_endproc
	.size weft__ctx_switch, .-weft__ctx_switch

	.globl weft__ctx_trampoline
	.hidden weft__ctx_trampoline
	.type weft__ctx_trampoline, @function
	.p2align 4
weft__ctx_trampoline:
	.cfi_startproc
	.cfi_undefined x30
	/* Entered by ret, not by an indirect branch, so no BTI landing pad is needed. fp is 0
	 * (ctx_make zeroes slot 10), so frame-pointer walks stop here too. */
	mov x0, x20
	blr x19
	brk #0
	.cfi_endproc
	.size weft__ctx_trampoline, .-weft__ctx_trampoline

	.section .note.GNU-stack,"",@progbits

#if defined(__ARM_FEATURE_BTI_DEFAULT) || defined(__ARM_FEATURE_PAC_DEFAULT)
/* Built with -mbranch-protection: mark this object as compatible, or the linker would turn
 * the protection off for the whole binary. BTI: weft__ctx_switch starts with bti c and the
 * trampoline is entered by ret. PAC: lr is saved and restored as it is, signed or not. */
#if defined(__ARM_FEATURE_BTI_DEFAULT)
#define WEFT_FEATURE_BTI 1
#else
#define WEFT_FEATURE_BTI 0
#endif
#if defined(__ARM_FEATURE_PAC_DEFAULT)
#define WEFT_FEATURE_PAC 2
#else
#define WEFT_FEATURE_PAC 0
#endif
	.section .note.gnu.property,"a"
	.p2align 3
	.word 4           /* name size */
	.word 16          /* descriptor size */
	.word 5           /* NT_GNU_PROPERTY_TYPE_0 */
	.asciz "GNU"
	.word 0xc0000000  /* GNU_PROPERTY_AARCH64_FEATURE_1_AND */
	.word 4
	.word WEFT_FEATURE_BTI | WEFT_FEATURE_PAC
	.word 0
#endif
