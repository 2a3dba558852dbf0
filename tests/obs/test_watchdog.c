/* test_watchdog.c: the watchdog reports a coroutine blocked on a channel past the
 * threshold, once (or again after repeat_after thresholds), with its reason and dump
 * entry; a wait that ends in time, or a sleep, is not reported. */
#include <stdlib.h>
#include <string.h>

#include "coro_check.h"
#include "weft_test.h"

#define MAX_REPORTS 64

struct seen {
  atomic_int n;
  uint64_t id[MAX_REPORTS];
  int times[MAX_REPORTS];
  char reason[MAX_REPORTS][32];
  bool has_entry[MAX_REPORTS], has_frame[MAX_REPORTS];
};

static void on_report(const weft_watchdog_report *r, void *arg)
{
  struct seen *s = arg;
  int i = atomic_load(&s->n);
  if (i >= MAX_REPORTS)
    return;
  s->id[i] = r->id;
  s->times[i] = r->times;
  snprintf(s->reason[i], sizeof s->reason[i], "%s", r->reason);
  s->has_entry[i] = strstr(r->entry, "[chan receive]:\n") != NULL;
  s->has_frame[i] = strstr(r->entry, "stuck_in_recv(...)") != NULL ||
                    strstr(r->entry, "built without libunwind") != NULL;
  atomic_store(&s->n, i + 1);
}

struct world {
  weft_chan *gate;
  weft_wg done;
  uint64_t stuck_id;
};

__attribute__((noinline)) static void stuck_in_recv(weft_chan *ch, int64_t deadline)
{
  int v;
  weft_chan_recv(ch, &v, deadline);
  __asm__ volatile("" ::: "memory");
}

static void stuck_entry(void *arg)
{
  struct world *w = arg;
  w->stuck_id = weft_self_id();
  stuck_in_recv(w->gate, WEFT_NO_DEADLINE);
  weft_wg_done(&w->done);
}

/* Blocked on the same channel, but only for 30 ms. */
static void brief_entry(void *arg)
{
  struct world *w = arg;
  stuck_in_recv(w->gate, weft_now() + MS(30));
  weft_wg_done(&w->done);
}

static void sleeper(void *arg)
{
  weft_sleep(MS(400));
  weft_wg_done(&((struct world *)arg)->done);
}

static int once_main(void *arg)
{
  struct seen *s = arg;
  struct world w = {.gate = weft_chan_new(sizeof(int), 0)};
  weft_wg_init(&w.done);
  weft_watchdog_options o = {.threshold_ns = MS(100),
                             .interval_ns = MS(10),
                             .repeat_after = 100,
                             .report = on_report,
                             .arg = s};
  CHECK_EQ(weft_watchdog_start(&o), 0);
  CHECK_EQ(weft_watchdog_start(&o), -EBUSY);
  weft_wg_add(&w.done, 3);
  weft_go(stuck_entry, &w);
  weft_go(brief_entry, &w);
  weft_go(sleeper, &w); /* "sleep" is not a watched reason */
  weft_sleep(MS(60));
  CHECK_EQ(atomic_load(&s->n), 0); /* not yet past the threshold */
  weft_sleep(MS(440));
  CHECK_EQ(weft_watchdog_stop(), 0);
  CHECK_EQ(weft_watchdog_stop(), -ESRCH);
  int n = atomic_load(&s->n);
  CHECK_EQ(n, 1);
  if (n >= 1) {
    CHECK_EQ(s->id[0], w.stuck_id);
    CHECK_EQ(s->times[0], 1);
    CHECK(strcmp(s->reason[0], "chan receive") == 0);
    CHECK(s->has_entry[0]);
    CHECK(s->has_frame[0]);
  }
  weft_chan_close(w.gate);
  weft_wg_wait(&w.done);
  weft_chan_release(w.gate);
  return 0;
}

static void test_reported_once(void **state)
{
  static struct seen s;
  checks_reset();
  for (int p = 1; p <= 4; p += 3) {
    memset(&s, 0, sizeof s);
    CHECK_EQ(run_weft(p, once_main, &s), 0);
  }
  ASSERT_NO_CHECK_FAILED();
}

/* Still stuck after repeat_after more thresholds: reported again. */
static int repeat_main(void *arg)
{
  struct seen *s = arg;
  struct world w = {.gate = weft_chan_new(sizeof(int), 0)};
  weft_wg_init(&w.done);
  weft_watchdog_options o = {.threshold_ns = MS(50),
                             .interval_ns = MS(5),
                             .repeat_after = 1,
                             .report = on_report,
                             .arg = s};
  CHECK_EQ(weft_watchdog_start(&o), 0);
  weft_wg_add(&w.done, 1);
  weft_go(stuck_entry, &w);
  weft_sleep(MS(400)); /* reports near 50, 100, 150, ... ms */
  CHECK_EQ(weft_watchdog_stop(), 0);
  int n = atomic_load(&s->n);
  CHECK(n >= 3);
  for (int i = 0; i < n; i++)
    CHECK_EQ(s->times[i], i + 1);
  weft_chan_close(w.gate);
  weft_wg_wait(&w.done);
  weft_chan_release(w.gate);
  return 0;
}

static void test_repeat(void **state)
{
  static struct seen s;
  checks_reset();
  CHECK_EQ(run_weft(2, repeat_main, &s), 0);
  ASSERT_NO_CHECK_FAILED();
}

/* Without a callback the report is written to out. */
static int file_main(void *arg)
{
  char *buf = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&buf, &len);
  struct world w = {.gate = weft_chan_new(sizeof(int), 0)};
  weft_wg_init(&w.done);
  weft_watchdog_options o = {.threshold_ns = MS(50), .interval_ns = MS(10), .out = out};
  CHECK_EQ(weft_watchdog_start(&o), 0);
  weft_wg_add(&w.done, 1);
  weft_go_named(stuck_entry, &w, "stuck");
  weft_sleep(MS(200));
  CHECK_EQ(weft_watchdog_stop(), 0);
  fclose(out);
  CHECK(strstr(buf, "weft watchdog: coroutine ") != NULL);
  CHECK(strstr(buf, " blocked on chan receive for ") != NULL);
  CHECK(strstr(buf, "\"stuck\" [chan receive]:\n") != NULL);
  free(buf);
  weft_chan_close(w.gate);
  weft_wg_wait(&w.done);
  weft_chan_release(w.gate);
  return 0;
}

static void test_file_writer(void **state)
{
  checks_reset();
  CHECK_EQ(run_weft(2, file_main, NULL), 0);
  ASSERT_NO_CHECK_FAILED();
}

static void test_errors(void **state)
{
  assert_int_equal(weft_watchdog_start(NULL), -EPERM);
  assert_int_equal(weft_watchdog_stop(), -ESRCH);
  weft_watchdog_options bad = {.threshold_ns = -1};
  assert_int_equal(weft_watchdog_start(&bad), -EINVAL);
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_reported_once),
      cmocka_unit_test(test_repeat),
      cmocka_unit_test(test_file_writer),
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL, 0);
}
