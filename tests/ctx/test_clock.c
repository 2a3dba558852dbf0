/* test_clock.c: the real clock and the fake clock of weft/clock.h. */
#include "coro_check.h"
#include "weft/clock.h"
#include "weft_test.h"

struct sleepy {
  weft_clock *clock;
  weft_ctx *ctx;
  int64_t deadline;
  int rc;
  int64_t woke_at;
  weft_wg done;
};

static void sleeper(void *arg)
{
  struct sleepy *s = arg;
  s->rc = weft_clock_sleep_until(s->clock, s->ctx, s->deadline);
  s->woke_at = weft_clock_now(s->clock);
  weft_wg_done(&s->done);
}

static void wait_sleepers(weft_fake_clock *fc, int n)
{
  for (int i = 0; i < 2000 && weft_fake_clock_sleepers(fc) < n; i++)
    weft_sleep(MS(1));
  CHECK_EQ(weft_fake_clock_sleepers(fc), n);
}

static int fake_main(void *arg)
{
  weft_fake_clock *fc = weft_fake_clock_new(1000);
  weft_clock *c = weft_fake_clock_clock(fc);
  CHECK_EQ(weft_clock_now(c), 1000);
  CHECK_EQ(weft_clock_sleep_until(c, NULL, 500), 0); /* already due: no wait */

  struct sleepy a = {.clock = c, .deadline = 1000 + MS(100)};
  struct sleepy b = {.clock = c, .deadline = 1000 + MS(300)};
  struct sleepy d = {.clock = c, .deadline = 1000 + MS(200), .ctx = weft_ctx_with_cancel(NULL)};
  for (struct sleepy *s = &a; s; s = s == &a ? &b : s == &b ? &d : NULL) {
    weft_wg_init(&s->done);
    weft_wg_add(&s->done, 1);
    weft_go(sleeper, s);
  }
  wait_sleepers(fc, 3);
  weft_fake_clock_advance(fc, MS(99)); /* nobody due */
  weft_sleep(MS(20));
  CHECK_EQ(weft_fake_clock_sleepers(fc), 3);
  weft_fake_clock_advance(fc, MS(1)); /* a is due, exactly at its deadline */
  weft_wg_wait(&a.done);
  CHECK_EQ(a.rc, 0);
  CHECK_EQ(a.woke_at, 1000 + MS(100));
  weft_ctx_cancel(d.ctx); /* d gives up */
  weft_wg_wait(&d.done);
  CHECK_EQ(d.rc, -ECANCELED);
  CHECK_EQ(weft_fake_clock_sleepers(fc), 1);
  weft_fake_clock_set(fc, 1000 + MS(1000)); /* b, long past */
  weft_wg_wait(&b.done);
  CHECK_EQ(b.rc, 0);
  weft_fake_clock_set(fc, 5); /* never backwards */
  CHECK_EQ(weft_clock_now(c), 1000 + MS(1000));
  weft_ctx_release(d.ctx);
  weft_fake_clock_free(fc);
  return 0;
}

static void test_fake(void **state)
{
  checks_reset();
  run_weft_p1to4(fake_main, NULL);
  ASSERT_NO_CHECK_FAILED();
}

/* Many sleepers racing cancellation against advance: each ends exactly once, no leak. */
static int race_main(void *arg)
{
  enum { N = 200 };
  static struct sleepy s[N];
  weft_fake_clock *fc = weft_fake_clock_new(0);
  for (int i = 0; i < N; i++) {
    s[i] = (struct sleepy){.clock = weft_fake_clock_clock(fc),
                           .deadline = (i % 10) + 1,
                           .ctx = weft_ctx_with_cancel(NULL)};
    weft_wg_init(&s[i].done);
    weft_wg_add(&s[i].done, 1);
    weft_go(sleeper, &s[i]);
  }
  for (int t = 1; t <= 10; t++) {
    for (int i = t % 2; i < N; i += 7)
      weft_ctx_cancel(s[i].ctx);
    weft_fake_clock_advance(fc, 1);
    weft_yield();
  }
  for (int i = 0; i < N; i++) {
    weft_wg_wait(&s[i].done);
    CHECK(s[i].rc == 0 || s[i].rc == -ECANCELED);
    weft_ctx_release(s[i].ctx);
  }
  CHECK_EQ(weft_fake_clock_sleepers(fc), 0);
  weft_fake_clock_free(fc);
  return 0;
}

static void test_race(void **state)
{
  checks_reset();
  run_weft_p1to4(race_main, NULL);
  ASSERT_NO_CHECK_FAILED();
}

static int real_main(void *arg)
{
  int64_t t0 = weft_clock_now(NULL);
  CHECK_EQ(weft_clock_sleep(NULL, NULL, MS(20)), 0);
  CHECK(weft_clock_now(weft_clock_real()) - t0 >= MS(20));
  weft_ctx *ctx = weft_ctx_with_timeout(NULL, MS(10));
  CHECK_EQ(weft_clock_sleep(NULL, ctx, MS(5000)), -ETIMEDOUT);
  weft_ctx_release(ctx);
  return 0;
}

static void test_real(void **state)
{
  checks_reset();
  CHECK_EQ(run_weft(2, real_main, NULL), 0);
  ASSERT_NO_CHECK_FAILED();
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fake),
      cmocka_unit_test(test_race),
      cmocka_unit_test(test_real),
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL, 0);
}
