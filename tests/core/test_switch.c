/* test_switch.c: what the context switch must carry across a switch, on every back end
 * (x86-64 and AArch64 assembly, ucontext): the callee-saved integer and floating-point
 * registers, and the floating-point control state (MXCSR / FPCR: the rounding mode), which
 * belongs to the coroutine and not to the thread it happens to run on. */
#include <fenv.h>
#include <stdatomic.h>
#include <stdint.h>

#include "weft_test.h"

#define ROUNDS 200

/* ---- the rounding mode is per coroutine ---- */

struct rounding {
  atomic_int bad; /* rounds in which a coroutine saw a mode it did not set */
  weft_wg wg;
};

struct rounder {
  struct rounding *r;
  int mode;
};

static void rounder(void *arg)
{
  struct rounder *me = arg;
  fesetround(me->mode);
  for (int i = 0; i < ROUNDS; i++) {
    weft_yield();
    if (fegetround() != me->mode)
      atomic_fetch_add(&me->r->bad, 1);
  }
  fesetround(FE_TONEAREST);
  weft_wg_done(&me->r->wg);
}

static int rounding_main(void *arg)
{
  struct rounding r = {0};
  struct rounder modes[] = {{&r, FE_UPWARD}, {&r, FE_DOWNWARD},  {&r, FE_TOWARDZERO},
                            {&r, FE_UPWARD}, {&r, FE_TONEAREST}, {&r, FE_DOWNWARD}};
  int n = (int)(sizeof modes / sizeof modes[0]);
  (void)arg;
  weft_wg_add(&r.wg, n);
  for (int i = 0; i < n; i++)
    if (weft_go(rounder, &modes[i]) != 0)
      return -1;
  weft_wg_wait(&r.wg);
  if (fegetround() != FE_TONEAREST)
    return -2;
  return atomic_load(&r.bad) == 0 ? 0 : 1;
}

static void test_rounding_mode_is_per_coroutine(void **state)
{
  (void)state;
  run_weft_p1to4(rounding_main, NULL);
}

/* ---- callee-saved registers survive switches ---- */

struct live {
  atomic_int bad;
  atomic_int rounds; /* loop iterations in all: a lost loop counter changes it */
  weft_wg wg;
};

/* Sixteen values live across every yield: the compiler keeps what it can in callee-saved
 * registers (x19-x28 and d8-d15 on AArch64; rbx, rbp, r12-r15 on x86-64) and spills the
 * rest, so a register the switch forgets to restore shows up as a wrong sum. */
static void live_values(void *arg)
{
  struct live *l = arg;
  uint64_t seed = (uint64_t)(uintptr_t)&l + 1;
  uint64_t i0 = test_rand(&seed), i1 = test_rand(&seed), i2 = test_rand(&seed);
  uint64_t i3 = test_rand(&seed), i4 = test_rand(&seed), i5 = test_rand(&seed);
  uint64_t i6 = test_rand(&seed), i7 = test_rand(&seed);
  double d0 = (double)(i0 >> 40), d1 = (double)(i1 >> 40), d2 = (double)(i2 >> 40);
  double d3 = (double)(i3 >> 40), d4 = (double)(i4 >> 40), d5 = (double)(i5 >> 40);
  double d6 = (double)(i6 >> 40), d7 = (double)(i7 >> 40);
  uint64_t isum = i0 + i1 + i2 + i3 + i4 + i5 + i6 + i7;
  double dsum = d0 + d1 + d2 + d3 + d4 + d5 + d6 + d7;
  for (int r = 0; r < ROUNDS; r++) {
    weft_yield();
    i0 += 1, i1 += 2, i2 += 3, i3 += 4, i4 += 5, i5 += 6, i6 += 7, i7 += 8;
    d0 += 1, d1 += 2, d2 += 3, d3 += 4, d4 += 5, d5 += 6, d6 += 7, d7 += 8;
    isum += 36;
    dsum += 36; /* exact: every value stays below 2^53 */
    /* Hide the values from the optimizer, or it proves the integer check true or keeps
     * only their sum live; this way all eight must be. */
    __asm__ volatile(""
                     : "+r"(i0), "+r"(i1), "+r"(i2), "+r"(i3), "+r"(i4), "+r"(i5), "+r"(i6),
                       "+r"(i7), "+r"(isum));
    if (i0 + i1 + i2 + i3 + i4 + i5 + i6 + i7 != isum ||
        d0 + d1 + d2 + d3 + d4 + d5 + d6 + d7 != dsum)
      atomic_fetch_add(&l->bad, 1);
    atomic_fetch_add(&l->rounds, 1);
  }
  weft_wg_done(&l->wg);
}

static int live_main(void *arg)
{
  struct live l = {0};
  (void)arg;
  weft_wg_add(&l.wg, 8);
  for (int i = 0; i < 8; i++)
    if (weft_go(live_values, &l) != 0)
      return -1;
  weft_wg_wait(&l.wg);
  if (atomic_load(&l.rounds) != 8 * ROUNDS)
    return 2;
  return atomic_load(&l.bad) == 0 ? 0 : 1;
}

static void test_callee_saved_registers_survive(void **state)
{
  (void)state;
  run_weft_p1to4(live_main, NULL);
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rounding_mode_is_per_coroutine),
      cmocka_unit_test(test_callee_saved_registers_survive),
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL, 0);
}
