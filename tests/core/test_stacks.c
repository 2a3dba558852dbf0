/* test_stacks.c: coroutine stacks at scale (see src/core/stack.h).
 *
 * - Arena mode (stack_guard = 0): 100,000 coroutines alive at once, all parked on one
 *   wait group, then released.
 * - Guard-page mode keeps guarded stacks under its map budget (3/8 of vm.max_map_count):
 *   spawning more coroutines than that still works, the rest get arena stacks, and the
 *   process stays under the kernel's map limit.
 *   (Not under ThreadSanitizer: it cannot keep that many fibers alive.)
 * - Release builds only: one million coroutines alive at once with 16 KiB stacks, in
 *   bounded time and memory (the figures are printed).
 *
 * Each scenario counts, per coroutine, that it ran exactly once and finished. */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "core/stack.h"
#include "weft_test.h"

#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || UNDER_TSAN
#define UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_SANITIZER 1
#endif
#endif

/* ThreadSanitizer counts every coroutine (a TSan fiber) against its limit of 8128
 * threads alive at once, and dies beyond it. */
#if UNDER_TSAN
#define ARENA_COROS 2000
#elif UNDER_SANITIZER
#define ARENA_COROS 20000
#else
#define ARENA_COROS 100000
#endif
#define MILLION 1000000

/* ---- /proc helpers ---- */

static long read_long_file(const char *path, long dflt)
{
  long v = dflt;
  FILE *f = fopen(path, "r");
  if (f) {
    if (fscanf(f, "%ld", &v) != 1)
      v = dflt;
    fclose(f);
  }
  return v;
}

/* A "Key:   123 kB" field of /proc/self/status, in KiB; -1 if absent. */
static long status_kib(const char *key)
{
  char line[256];
  long v = -1;
  size_t klen = strlen(key);
  FILE *f = fopen("/proc/self/status", "r");
  if (!f)
    return -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, key, klen) == 0 && line[klen] == ':')
      v = strtol(line + klen + 1, NULL, 10);
  fclose(f);
  return v;
}

#if !UNDER_SANITIZER
/* A "Key:   123 kB" field of /proc/meminfo, in KiB; -1 if absent. */
static long meminfo_kib(const char *key)
{
  char line[256];
  long v = -1;
  size_t klen = strlen(key);
  FILE *f = fopen("/proc/meminfo", "r");
  if (!f)
    return -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, key, klen) == 0 && line[klen] == ':')
      v = strtol(line + klen + 1, NULL, 10);
  fclose(f);
  return v;
}
#endif

static long map_count(void)
{
  char line[512];
  long n = 0;
  FILE *f = fopen("/proc/self/maps", "r");
  if (!f)
    return -1;
  while (fgets(line, sizeof line, f))
    n += strchr(line, '\n') != NULL;
  fclose(f);
  return n;
}

/* ---- the scenario: n coroutines park on a gate, then all are released ---- */

struct mass {
  long n;
  size_t stack_size;  /* per coroutine (weft_go_with), 0 for the default */
  atomic_int *ran;    /* per coroutine: times it started */
  atomic_int *done;   /* per coroutine: times it finished */
  atomic_long parked; /* coroutines that reached the gate */
  weft_wg gate, all;
  long errors;
  /* measured with every coroutine parked */
  long guarded_at_peak, maps_at_peak, rss_kib_at_peak;
  long rss_kib_released; /* once they have all exited (their stacks are free) */
  double spawn_s, release_s;
};

struct mass_arg {
  struct mass *m;
  long i;
};

static struct mass_arg *args;

static void gate_waiter(void *arg)
{
  struct mass_arg *a = arg;
  struct mass *m = a->m;
  atomic_fetch_add_explicit(&m->ran[a->i], 1, memory_order_relaxed);
  atomic_fetch_add(&m->parked, 1);
  weft_wg_wait(&m->gate);
  atomic_fetch_add_explicit(&m->done[a->i], 1, memory_order_relaxed);
  weft_wg_done(&m->all);
}

static int mass_main(void *arg)
{
  struct mass *m = arg;
  weft_go_options opts = {.stack_size = m->stack_size};
  int64_t t0 = weft_now();
  weft_wg_add(&m->gate, 1);
  weft_wg_add(&m->all, m->n);
  for (long i = 0; i < m->n; i++) {
    args[i] = (struct mass_arg){m, i};
    if (weft_go_with(gate_waiter, &args[i], &opts) != 0) {
      m->errors++;
      weft_wg_add(&m->all, -1);
    }
    if (i % 4096 == 0)
      weft_yield(); /* let the spawned ones reach the gate meanwhile */
  }
  int64_t deadline = weft_now() + MS(60000);
  while (atomic_load(&m->parked) < m->n - m->errors && weft_now() < deadline)
    weft_sleep(MS(1));
  int64_t t1 = weft_now();
  m->spawn_s = (double)(t1 - t0) / 1e9;
  m->guarded_at_peak = weft__stack_guarded_count();
  m->rss_kib_at_peak = status_kib("VmRSS");
  m->maps_at_peak = map_count();
  weft_wg_done(&m->gate);
  weft_wg_wait(&m->all);
  m->release_s = (double)(weft_now() - t1) / 1e9;
  deadline = weft_now() + MS(10000);
  while (weft_coroutine_count() > 1 && weft_now() < deadline)
    weft_sleep(MS(1));
  m->rss_kib_released = status_kib("VmRSS");
  return 0;
}

/* Run the scenario on P=2 with the given guard setting; checks every coroutine ran and
 * finished exactly once and nothing leaked. */
static void run_mass(struct mass *m, int guard)
{
  m->ran = calloc((size_t)m->n, sizeof *m->ran);
  m->done = calloc((size_t)m->n, sizeof *m->done);
  args = calloc((size_t)m->n, sizeof *args);
  assert_non_null(m->ran);
  assert_non_null(m->done);
  assert_non_null(args);
  /* run_weft() always asks for guard pages; this is the same with the mode explicit. */
  weft_config cfg = {.procs = 2, .stack_guard = guard, .leak_check = WEFT_LEAK_REPORT};
  assert_int_equal(run_weft_with(&cfg, mass_main, m), 0);
  assert_int_equal(weft_leaked(), 0);
  assert_int_equal(m->errors, 0);
  assert_int_equal(atomic_load(&m->parked), m->n);
  long bad = 0;
  for (long i = 0; i < m->n; i++)
    bad += atomic_load(&m->ran[i]) != 1 || atomic_load(&m->done[i]) != 1;
  assert_int_equal(bad, 0);
  free(m->ran);
  free(m->done);
  free(args);
  args = NULL;
}

static void test_arena_100k_parked_then_released(void **state)
{
  (void)state;
  struct mass *m = calloc(1, sizeof *m);
  m->n = ARENA_COROS;
  run_mass(m, 0);
  assert_int_equal(m->guarded_at_peak, 0); /* arena mode: no guarded stack at all */
#if !UNDER_SANITIZER
  /* A parked coroutine costs about one page: its stack's top page (header, frames and
   * the next slot's canary) plus its record. Freed stacks are kept warm for reuse
   * (pages below the top one given back), so exiting must not grow the RSS. */
  assert_true(m->rss_kib_at_peak < m->n * 6);
  assert_true(m->rss_kib_released <= m->rss_kib_at_peak + m->rss_kib_at_peak / 50);
#endif
  fprintf(stderr,
          "arena: %ld coroutines parked in %.2fs, released in %.2fs, RSS %ld MiB parked, "
          "%ld MiB after exit\n",
          m->n, m->spawn_s, m->release_s, m->rss_kib_at_peak / 1024,
          m->rss_kib_released / 1024);
  free(m);
}

static void test_guard_budget_falls_back_to_arena(void **state)
{
  (void)state;
#if UNDER_TSAN
  skip(); /* needs more coroutines alive than TSan's thread limit */
#endif
  long max_maps = read_long_file("/proc/sys/vm/max_map_count", 65530);
  long limit = max_maps * 3 / 8; /* stack.c's guarded_limit */
  struct mass *m = calloc(1, sizeof *m);
  m->n = limit + 3000;
  m->stack_size = 16 * 1024;
  run_mass(m, 1);
  fprintf(stderr,
          "guard budget: %ld coroutines, %ld guarded stacks (limit %ld), %ld maps "
          "(max %ld), RSS %ld MiB\n",
          m->n, m->guarded_at_peak, limit, m->maps_at_peak, max_maps,
          m->rss_kib_at_peak / 1024);
  /* At or below the budget, yet the budget was used: the rest fell back to arenas. */
  assert_true(m->guarded_at_peak <= limit);
  assert_true(m->guarded_at_peak > limit - 64);
  assert_true(m->maps_at_peak > 0 && m->maps_at_peak < max_maps);
  free(m);
}

static void test_one_million_coroutines(void **state)
{
  (void)state;
#if UNDER_SANITIZER
  skip();
#else
  long avail_kib = meminfo_kib("MemAvailable");
  if (avail_kib >= 0 && avail_kib < 8L * 1024 * 1024) {
    fprintf(stderr, "1M coroutines: skipped, %ld MiB available (needs about 5 GiB)\n",
            avail_kib / 1024);
    skip();
  }
  struct mass *m = calloc(1, sizeof *m);
  m->n = MILLION;
  m->stack_size = 16 * 1024;
  int64_t t0 = weft_now();
  run_mass(m, 0);
  double total = (double)(weft_now() - t0) / 1e9;
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  fprintf(stderr,
          "1M coroutines (16 KiB stacks, arena): all parked after %.2fs, released in %.2fs, "
          "%.2fs in all; RSS with all parked %ld MiB, after they exited %ld MiB, peak RSS "
          "%ld MiB\n",
          m->spawn_s, m->release_s, total, m->rss_kib_at_peak / 1024,
          m->rss_kib_released / 1024, ru.ru_maxrss / 1024);
  assert_true(total < 30.0);
  /* Bounded: stacks cost the pages they touch (about one each), not their size (16 GiB
   * of address space reserved). */
  assert_true(m->rss_kib_at_peak < m->n * 6);
  assert_true(m->rss_kib_released <= m->rss_kib_at_peak + m->rss_kib_at_peak / 50);
  free(m);
#endif
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_arena_100k_parked_then_released),
      cmocka_unit_test(test_guard_budget_falls_back_to_arena),
      cmocka_unit_test(test_one_million_coroutines),
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL, 0);
}
