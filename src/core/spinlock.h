/* spinlock.h: a test-and-test-and-set lock for short critical sections (a few dozen
 * instructions: run-queue overflow, timer heaps, registries). After a few hundred spins it
 * yields the CPU, so a holder preempted by the kernel does not stall the machine. */
#ifndef WEFT_CORE_SPINLOCK_H
#define WEFT_CORE_SPINLOCK_H

#include <sched.h>
#include <stdatomic.h>

typedef struct spinlock {
  atomic_int held;
} spinlock;

#define SPINLOCK_INIT \
  {                   \
    0                 \
  }

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ volatile("yield" ::: "memory");
#endif
}

static inline void spin_lock(spinlock *l)
{
  for (unsigned spins = 0;; spins++) {
    if (!atomic_load_explicit(&l->held, memory_order_relaxed) &&
        !atomic_exchange_explicit(&l->held, 1, memory_order_acquire))
      return;
    if (spins < 200)
      cpu_relax();
    else
      sched_yield();
  }
}

static inline void spin_unlock(spinlock *l)
{
  atomic_store_explicit(&l->held, 0, memory_order_release);
}

#endif
