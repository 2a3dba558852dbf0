/* test_sanitizers.c: the sanitizer annotations of the coroutine switch work.
 *
 * Under ThreadSanitizer each coroutine is a TSan fiber: a real data race between two
 * coroutines running on two workers is reported, while hand-offs through weft's own
 * synchronisation (spawn, wait groups, parking and resuming on another thread, blocking
 * calls, recycled stacks and records) are not. Under AddressSanitizer each switch tells
 * ASan which stack runs: a stack-buffer-overflow inside a coroutine is reported as such.
 * The expected reports come from child processes; the no-report cases run as children
 * too, so that a report fails the test whatever the sanitizer options say. In builds
 * without the sanitizer the expected-failure tests are skipped. */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "weft_test.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#endif
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif

/* Fail unless child `name` exited 0 and printed no sanitizer report. */
static void expect_clean(const char *name)
{
  int status = 0;
  char *out = expect_child_output(name, 60, &status);
  bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0 && !strstr(out, "Sanitizer") &&
            !strstr(out, "runtime error") && strstr(out, "child: clean run done");
  if (!ok) {
    fprintf(stderr, "child %s: status %d, stderr:\n%s\n", name, status, out);
    free(out);
    fail_msg("child %s was not clean", name);
  }
  free(out);
}

/* ---- TSan: a real race between two workers ---- */

static int racy_counter;   /* plain int, written by two coroutines: the race */
static atomic_int arrived; /* relaxed only: creates no happens-before edge */

/* Spin (without parking or yielding, so that neither can run on the other's worker) until
 * both coroutines are running at once: they must be on two threads. */
static bool rendezvous(void)
{
  int64_t until = weft_now() + MS(10000);
  atomic_fetch_add_explicit(&arrived, 1, memory_order_relaxed);
  while (atomic_load_explicit(&arrived, memory_order_relaxed) < 2)
    if (weft_now() > until)
      return false;
  return true;
}

static void racer(void *arg)
{
  weft_wg *wg = arg;
  if (!rendezvous()) {
    fprintf(stderr, "child: the racers never ran at the same time\n");
    _exit(3); /* no report either way: the parent fails on the missing needle */
  }
  for (int i = 0; i < 1000; i++)
    racy_counter++;
  weft_wg_done(wg);
}

static int two_racers(void *arg)
{
  weft_wg wg = WEFT_WG_INIT;
  (void)arg;
  weft_wg_add(&wg, 2);
  weft_go_named(racer, &wg, "racer-a");
  weft_go_named(racer, &wg, "racer-b");
  weft_wg_wait(&wg);
  return 0;
}

static void child_tsan_race(void)
{
  run_weft(2, two_racers, NULL);
  fprintf(stderr, "child: no race reported (counter %d)\n", racy_counter);
}

static void test_tsan_reports_race_between_coroutines(void **state)
{
  (void)state;
#if UNDER_TSAN
  expect_child("tsan_race", "WARNING: ThreadSanitizer: data race", 60);
#else
  skip();
#endif
}

/* ---- ASan: stack-buffer-overflow on a coroutine stack ---- */

static volatile int overflow_index = 16;

__attribute__((noinline)) static int overflow_local(void)
{
  char buf[16];
  char *volatile p = buf; /* UBSan cannot size the object behind a volatile pointer */
  memset(buf, 0, sizeof buf);
  p[overflow_index] = 1; /* one past the end */
  return p[0];
}

static void overflowing(void *arg)
{
  weft_wg *wg = arg;
  weft_yield(); /* run after a switch, on a recycled worker context */
  overflow_local();
  weft_wg_done(wg);
}

static int spawn_overflowing(void *arg)
{
  weft_wg wg = WEFT_WG_INIT;
  (void)arg;
  weft_wg_add(&wg, 1);
  weft_go_named(overflowing, &wg, "overflowing");
  weft_wg_wait(&wg);
  return 0;
}

static void child_asan_overflow(void)
{
  run_weft(2, spawn_overflowing, NULL);
  fprintf(stderr, "child: no overflow reported\n");
}

static void test_asan_reports_stack_buffer_overflow(void **state)
{
  (void)state;
#if UNDER_ASAN
  expect_child("asan_overflow", "stack-buffer-overflow", 60);
#else
  skip();
#endif
}

/* ---- every mode: correct synchronisation produces no report ---- */

#define ROUNDS 200
#define NPAIRS 8

/* A relay of plain (non-atomic) data: each round the producer fills the box, then
 * finishes `full`; the consumer waits on it, checks and rewrites the box, then finishes
 * `empty`. Both sleep or yield at random so they resume on different workers. */
struct box {
  long data[16];
  weft_wg full, empty;
  long errors; /* written by both sides, each between a wait and a done */
  uint64_t producer_rng, consumer_rng;
};

static void producer(void *arg)
{
  struct box *b = arg;
  for (long r = 0; r < ROUNDS; r++) {
    for (int i = 0; i < 16; i++)
      b->data[i] = r * 16 + i;
    weft_wg_done(&b->full);
    weft_wg_wait(&b->empty);
    weft_wg_add(&b->empty, 1); /* before the consumer's next done: it follows our next */
    if (b->data[0] != -r)
      b->errors++;
    if (test_rand(&b->producer_rng) % 4 == 0)
      weft_sleep(10000);
  }
}

static void consumer(void *arg)
{
  struct box *b = arg;
  for (long r = 0; r < ROUNDS; r++) {
    weft_wg_wait(&b->full);
    weft_wg_add(&b->full, 1); /* before the producer's next done, as above */
    for (int i = 0; i < 16; i++)
      if (b->data[i] != r * 16 + i)
        b->errors++;
    b->data[0] = -r;
    if (test_rand(&b->consumer_rng) % 3 == 0)
      weft_yield();
    weft_wg_done(&b->empty);
  }
}

struct relay {
  struct box boxes[NPAIRS];
  weft_wg all;
  long blocking_sum;
};

static long plain_blocking(void *arg)
{
  long *cell = arg; /* written on a pool thread, read by the caller after it resumes */
  *cell = *cell * 2 + 1;
  return 0;
}

static void run_pair(void *arg);

struct pair_arg {
  struct relay *rl;
  int i;
};

static void run_consumer(void *arg)
{
  struct pair_arg *pa = arg;
  consumer(&pa->rl->boxes[pa->i]);
  weft_wg_done(&pa->rl->all);
}

static void run_pair(void *arg)
{
  struct pair_arg *pa = arg;
  struct box *b = &pa->rl->boxes[pa->i];
  long cell = pa->i;
  weft_blocking(plain_blocking, &cell);
  if (cell != pa->i * 2 + 1)
    b->errors++;
  weft_go(run_consumer, pa);
  producer(b);
  weft_wg_done(&pa->rl->all);
}

static int relay_main(void *arg)
{
  struct relay *rl = calloc(1, sizeof *rl);
  struct pair_arg pa[NPAIRS];
  long errors = 0;
  (void)arg;
  weft_wg_add(&rl->all, 2 * NPAIRS);
  for (int i = 0; i < NPAIRS; i++) {
    struct box *b = &rl->boxes[i];
    b->producer_rng = test_seed() + (uint64_t)i * 7919 + 1;
    b->consumer_rng = b->producer_rng * 31 + 17;
    weft_wg_add(&b->full, 1);
    weft_wg_add(&b->empty, 1);
    pa[i] = (struct pair_arg){rl, i};
    if (weft_go(run_pair, &pa[i]) != 0)
      errors++;
  }
  weft_wg_wait(&rl->all);
  for (int i = 0; i < NPAIRS; i++)
    errors += rl->boxes[i].errors;
  free(rl);
  return errors == 0 ? 0 : 1;
}

static void child_clean_relay(void)
{
  for (int p = 2; p <= 4; p++)
    if (run_weft(p, relay_main, NULL) != 0) {
      fprintf(stderr, "child: relay saw wrong data with P=%d\n", p);
      exit(1);
    }
  fprintf(stderr, "child: clean run done\n");
}

static void test_synchronised_handoff_is_clean(void **state)
{
  (void)state;
  expect_clean("clean_relay");
}

/* In-process as well: the same relay, with the leak check, in every mode. */
static void test_synchronised_handoff_in_process(void **state)
{
  (void)state;
  run_weft_p1to4(relay_main, NULL);
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_tsan_reports_race_between_coroutines),
      cmocka_unit_test(test_asan_reports_stack_buffer_overflow),
      cmocka_unit_test(test_synchronised_handoff_is_clean),
      cmocka_unit_test(test_synchronised_handoff_in_process),
  };
  const struct child_scenario children[] = {
      {"tsan_race", child_tsan_race},
      {"asan_overflow", child_asan_overflow},
      {"clean_relay", child_clean_relay},
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], children,
                        sizeof children / sizeof children[0]);
}
