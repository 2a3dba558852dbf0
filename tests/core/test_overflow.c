/* test_overflow.c: stack overflow reports. With guard pages an overflow faults in the
 * guard page and the SIGSEGV handler names the coroutine; with arena stacks (canaries
 * only) a clobbered canary is caught at the coroutine's next switch. Both run as child
 * processes that must die with the report. A coroutine that uses most of a small stack
 * without overflowing runs normally in either mode. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "core/sched.h"
#include "weft_test.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

#define SMALL_STACK (16 * 1024)

/* What fill_most leaves free below its frame for the calls it then makes (yield, sleep):
 * weft's own path needs about 3.5 KiB; ThreadSanitizer's runtime sometimes runs much
 * deeper on the coroutine's stack (it does its housekeeping on whatever stack calls in). */
#if defined(__SANITIZE_THREAD__) || UNDER_ASAN
#define STACK_MARGIN (10 * 1024)
#else
#define STACK_MARGIN (6 * 1024)
#endif

static void run_guard_mode(int procs, int guard, int (*fn)(void *))
{
  weft_config cfg = {.procs = procs, .stack_guard = guard, .leak_check = WEFT_LEAK_REPORT};
  int rc = weft_main_with(&cfg, fn, NULL); /* a child expected to die: no cmocka here */
  fprintf(stderr, "child: weft_main returned %d, no overflow reported\n", rc);
  exit(0);
}

static void expect_in(const char *out, const char *needle)
{
  if (!strstr(out, needle)) {
    fprintf(stderr, "expected \"%s\" in child stderr:\n%s\n", needle, out);
    fail();
  }
}

/* ---- guard pages: unbounded recursion ---- */

static volatile int sink;

/* Each frame holds a buffer it writes, so the compiler can neither drop nor tail-call it. */
__attribute__((noinline)) static int recurse(int depth)
{
  volatile char buf[512];
  memset((char *)buf, depth & 0xff, sizeof buf);
  if (depth < 0)
    return 0; /* never: keeps the recursion unbounded but not provably infinite */
  return recurse(depth + 1) + buf[depth % sizeof buf];
}

static void deep_recursor(void *arg)
{
  weft_wg *wg = arg;
  sink = recurse(1);
  weft_wg_done(wg);
}

static int spawn_deep_recursor(void *arg)
{
  weft_wg wg = WEFT_WG_INIT;
  (void)arg;
  weft_wg_add(&wg, 1);
  weft_go_with(deep_recursor, &wg,
               (&(weft_go_options){.name = "deep-recursor", .stack_size = SMALL_STACK}));
  weft_wg_wait(&wg);
  return 0;
}

static void child_guard_overflow(void)
{
  run_guard_mode(2, 1, spawn_deep_recursor);
}

static void test_guard_page_overflow_names_coroutine(void **state)
{
  (void)state;
  char *out = expect_child_died("guard_overflow", 30);
#if UNDER_ASAN
  /* ASan may see the fault first and report it itself. */
  if (!strstr(out, "overflowed its")) {
    expect_in(out, "AddressSanitizer");
    expect_in(out, "stack-overflow");
    free(out);
    return;
  }
#endif
  expect_in(out, "overflowed its 16384-byte stack");
  expect_in(out, "coroutine ");
  expect_in(out, "\"deep-recursor\"");
  expect_in(out, "created at ");
  expect_in(out, "test_overflow.c:");
  expect_in(out, "in deep_recursor");
  free(out);
}

/* ---- canaries: frames that reach the low end of an arena stack ---- */

/* Recurse while the next frame still fits well above the stack's low end, then write
 * its lowest 64 bytes as a slightly larger frame would: the canary is clobbered, nothing
 * below the stack is touched. */
__attribute__((noinline)) static int descend(char *lo, int depth)
{
  volatile char buf[256];
  memset((char *)buf, 0x5a, sizeof buf);
  if ((char *)buf - lo > 2 * (long)sizeof buf)
    return descend(lo, depth + 1) + buf[depth % sizeof buf];
  for (volatile char *p = lo; p < lo + 64; p++)
    *p = 0x5a;
  return buf[0];
}

static void canary_clobberer(void *arg)
{
  weft_wg *wg = arg;
  sink = descend(weft__current()->stack->lo, 0);
  weft_sleep(MS(1)); /* the switch away checks the canary */
  fprintf(stderr, "clobberer resumed after its canary was overwritten\n");
  weft_wg_done(wg);
}

/* Keeps the worker busy so that the clobberer's switch goes to another coroutine, not to
 * the scheduler loop: the report must still name the clobberer. */
static void bystander(void *arg)
{
  int64_t until = weft_now() + MS(10000);
  (void)arg;
  while (weft_now() < until)
    weft_yield();
}

static int spawn_canary_clobberer(void *arg)
{
  weft_wg wg = WEFT_WG_INIT;
  (void)arg;
  weft_wg_add(&wg, 1);
  weft_go_named(bystander, NULL, "bystander");
  weft_go_with(canary_clobberer, &wg,
               (&(weft_go_options){.name = "clobberer", .stack_size = SMALL_STACK}));
  weft_wg_wait(&wg);
  return 0;
}

static void child_canary_overflow(void)
{
  run_guard_mode(1, 0, spawn_canary_clobberer);
}

static void test_canary_overflow_reported_at_switch(void **state)
{
  (void)state;
  char *out = expect_child_died("canary_overflow", 30);
  expect_in(out, "overflowed its 16384-byte stack");
  expect_in(out, "clobberer");
  expect_in(out, "created at ");
  expect_in(out, "in canary_clobberer");
  /* weft__die's "in <coroutine>" line names the coroutine that overflowed. */
  const char *in = strstr(out, "\nin coroutine ");
  assert_non_null(in);
  const char *eol = strchr(in + 1, '\n');
  char *line = strndup(in + 1, eol ? (size_t)(eol - in - 1) : strlen(in + 1));
  if (!strstr(line, "\"clobberer\"")) {
    fprintf(stderr, "the report blames the wrong coroutine: %s\n%s\n", line, out);
    fail();
  }
  free(line);
  assert_null(strstr(out, "clobberer resumed"));
  free(out);
}

/* ---- positive: using most of a small stack is fine in both modes ---- */

static atomic_int deep_ok;

static void fill_most(void *arg)
{
  weft_wg *wg = arg;
  char *lo = weft__current()->stack->lo;
  char here;
  /* Stop a comfortable margin above the low end. */
  size_t room = (size_t)(&here - lo);
  size_t use = room > STACK_MARGIN ? room - STACK_MARGIN : 0;
  volatile char *buf = __builtin_alloca(use + 1);
  memset((char *)buf, 1, use + 1);
  weft_yield();
  weft_sleep(MS(1));
  /* The frames below it (yield, sleep) left the buffer alone. */
  if (buf[0] == 1 && buf[use / 2] == 1 && buf[use] == 1)
    atomic_fetch_add(&deep_ok, 1);
  weft_wg_done(wg);
}

static int spawn_fill_most(void *arg)
{
  weft_wg wg = WEFT_WG_INIT;
  (void)arg;
  weft_wg_add(&wg, 8);
  for (int i = 0; i < 8; i++)
    if (weft_go_with(fill_most, &wg, (&(weft_go_options){.stack_size = SMALL_STACK})) != 0)
      return -1;
  weft_wg_wait(&wg);
  return 0;
}

static void test_deep_but_within_stack_runs(void **state)
{
  (void)state;
  for (int guard = 0; guard <= 1; guard++) {
    weft_config cfg = {.procs = 2, .stack_guard = guard, .leak_check = WEFT_LEAK_REPORT};
    atomic_store(&deep_ok, 0);
    assert_int_equal(run_weft_with(&cfg, spawn_fill_most, NULL), 0);
    assert_int_equal(weft_leaked(), 0);
    assert_int_equal(atomic_load(&deep_ok), 8);
  }
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_guard_page_overflow_names_coroutine),
      cmocka_unit_test(test_canary_overflow_reported_at_switch),
      cmocka_unit_test(test_deep_but_within_stack_runs),
  };
  const struct child_scenario children[] = {
      {"guard_overflow", child_guard_overflow},
      {"canary_overflow", child_canary_overflow},
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], children,
                        sizeof children / sizeof children[0]);
}
