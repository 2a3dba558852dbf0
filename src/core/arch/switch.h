/* switch.h: the machine context switch, one implementation per architecture.
 *
 * A context is what a suspended coroutine (or a scheduler thread's own stack) needs to
 * resume: with the assembly back ends, only its stack pointer, since ctx_switch pushes the
 * callee-saved registers and floating-point control words onto the stack it leaves.
 *
 *   ctx_make(c, lo, size, entry, arg)  prepares c so that the first switch to it calls
 *                                      entry(arg) on the stack [lo, lo+size); entry must
 *                                      never return.
 *   ctx_switch(from, to)               saves the running context into from and resumes to.
 *
 * Callers: the scheduler only (sched.c), which wraps every switch in the sanitizer
 * annotations. */
#ifndef WEFT_ARCH_SWITCH_H
#define WEFT_ARCH_SWITCH_H

#include <stddef.h>

#if defined(WEFT_PORTABLE_SWITCH)
#include <ucontext.h>
struct ctx {
  ucontext_t uc;
};
#else
struct ctx {
  void *sp; /* saved stack pointer; registers live on the stack below it */
};
#endif

void weft__ctx_make(struct ctx *c, void *stack_lo, size_t size, void (*entry)(void *),
                    void *arg);
void weft__ctx_switch(struct ctx *from, struct ctx *to);

#endif
