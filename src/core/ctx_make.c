/* ctx_make.c: build the first frame of a new context for the assembly back ends.
 *
 * The frame mirrors what weft__ctx_switch pops, so that the first switch "returns" into
 * weft__ctx_trampoline, which calls entry(arg). */
#include <stdint.h>
#include <string.h>

#include "core/arch/switch.h"

#if !defined(WEFT_PORTABLE_SWITCH)

void weft__ctx_trampoline(void);

#if defined(__x86_64__)
/* Stack from the top: 16 bytes of padding, the return address (trampoline) at an address
 * that is 8 mod 16 so that rsp is 16-aligned inside the trampoline, then rbp, rbx, r12
 * (entry), r13 (arg), r14, r15 and the 8-byte MXCSR / x87 control word slot. */
void weft__ctx_make(struct ctx *c, void *stack_lo, size_t size, void (*entry)(void *),
                    void *arg)
{
  uintptr_t top = ((uintptr_t)stack_lo + size) & ~(uintptr_t)15;
  uint64_t *ret_slot = (uint64_t *)(top - 24);
  uint64_t *sp = ret_slot - 7;
  uint32_t csr[2] = {0x1F80, 0x037F}; /* MXCSR and x87 control word defaults */

  ret_slot[0] = (uint64_t)(uintptr_t)weft__ctx_trampoline;
  ret_slot[-1] = 0;                          /* rbp */
  ret_slot[-2] = 0;                          /* rbx */
  ret_slot[-3] = (uint64_t)(uintptr_t)entry; /* r12 */
  ret_slot[-4] = (uint64_t)(uintptr_t)arg;   /* r13 */
  ret_slot[-5] = 0;                          /* r14 */
  ret_slot[-6] = 0;                          /* r15 */
  memcpy(sp, csr, sizeof csr);
  c->sp = sp;
}
#elif defined(__aarch64__)
/* Frame popped by switch_aarch64.S (its header has the layout; the two change together):
 * 22 8-byte slots from sp up, x19..x28 (0-9), x29 (10), x30 (11), d8..d15 (12-19), FPCR
 * (20) and padding (21), 176 bytes, below 16 bytes of padding at the top of the stack.
 * x19 carries entry, x20 arg; lr is the trampoline. The rest stays zero: fp 0 ends frame
 * chains, and FPCR 0 is the default (round to nearest, no flush-to-zero, no default NaN),
 * so a new coroutine starts with the default floating-point environment. After the pop sp
 * is top - 16, 16-byte aligned as AAPCS64 requires. */
void weft__ctx_make(struct ctx *c, void *stack_lo, size_t size, void (*entry)(void *),
                    void *arg)
{
  uintptr_t top = ((uintptr_t)stack_lo + size) & ~(uintptr_t)15;
  uint64_t *sp = (uint64_t *)(top - 22 * 8 - 16);

  memset(sp, 0, 22 * 8);
  sp[0] = (uint64_t)(uintptr_t)entry;                 /* x19 */
  sp[1] = (uint64_t)(uintptr_t)arg;                   /* x20 */
  sp[11] = (uint64_t)(uintptr_t)weft__ctx_trampoline; /* x30 */
  c->sp = sp;
}
#endif

#endif
