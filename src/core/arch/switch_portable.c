/* switch_portable.c: context switch through ucontext, for architectures without an
 * assembly back end. Slower (swapcontext saves the signal mask with a system call) but
 * correct everywhere glibc runs. */
#include <stdint.h>

#include "core/arch/switch.h"

static void portable_entry(unsigned hi_fn, unsigned lo_fn, unsigned hi_arg, unsigned lo_arg)
{
  void (*entry)(void *) = (void (*)(void *))(((uintptr_t)hi_fn << 16 << 16) | (uintptr_t)lo_fn);
  void *arg = (void *)(((uintptr_t)hi_arg << 16 << 16) | (uintptr_t)lo_arg);
  entry(arg);
}

void weft__ctx_make(struct ctx *c, void *stack_lo, size_t size, void (*entry)(void *),
                    void *arg)
{
  uintptr_t fn = (uintptr_t)entry, a = (uintptr_t)arg;

  getcontext(&c->uc);
  c->uc.uc_stack.ss_sp = stack_lo;
  c->uc.uc_stack.ss_size = size - 64;
  c->uc.uc_link = NULL;
  makecontext(&c->uc, (void (*)(void))portable_entry, 4, (unsigned)(fn >> 16 >> 16),
              (unsigned)fn, (unsigned)(a >> 16 >> 16), (unsigned)a);
}

void weft__ctx_switch(struct ctx *from, struct ctx *to)
{
  swapcontext(&from->uc, &to->uc);
}
