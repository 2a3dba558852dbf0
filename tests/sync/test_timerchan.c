/* test_timerchan.c: weft_after and tickers: delivery once and never early, releasing
 * early, ticking at the period, dropping ticks while the slot is full, stopping, and the
 * timeout pattern (select over a data channel and an after channel).
 *
 * Time bounds are one-sided where the contract is (a timer never fires early) and
 * generous where it is not (a loaded 2-core VM may deliver late). Checks inside coroutines
 * use CHECK, as in test_chan.c. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coro_check.h"
#include "weft_test.h"

#define DEADLOCK_MSG "all coroutines are asleep - deadlock!"

/* ---- checks usable in any coroutine ---- */

/* a >= b, printing both */
#define CHECK_GE(a, b)                                        \
  do {                                                        \
    long long a_ = (long long)(a), b_ = (long long)(b);       \
    if (a_ < b_)                                              \
      check_failed(__FILE__, __LINE__, #a " >= " #b, a_, b_); \
  } while (0)

/* Generous upper bound for "roughly on time" on a noisy machine. */
#define LATE MS(3000)

/* ---- weft_after ---- */

static int after_main(void *arg)
{
  (void)arg;
  int64_t t0 = weft_now();
  weft_chan *ch = weft_after(MS(20));
  CHECK(ch != NULL);
  CHECK_EQ(weft_chan_cap(ch), 1);
  CHECK_EQ(weft_chan_elem_size(ch), sizeof(int64_t));
  int64_t v = 0;
  CHECK_EQ(weft_chan_recv(ch, &v, WEFT_NO_DEADLINE), 0);
  int64_t t1 = weft_now();
  CHECK_GE(v, t0 + MS(20)); /* never early: the value is the time it fired */
  CHECK_GE(t1, v);
  CHECK(t1 - t0 < MS(20) + LATE);
  /* Once only: nothing more arrives, and the channel is not closed. */
  CHECK_EQ(weft_chan_recv(ch, &v, weft_now() + MS(40)), -ETIMEDOUT);
  CHECK(!weft_chan_is_closed(ch));
  CHECK_EQ(weft_chan_len(ch), 0);
  weft_chan_release(ch);

  /* Zero and negative durations fire at once (well, soon). */
  for (int64_t ns = -MS(1); ns <= 0; ns += MS(1)) {
    t0 = weft_now();
    ch = weft_after(ns);
    CHECK_EQ(weft_chan_recv(ch, &v, t0 + LATE), 0);
    CHECK_GE(v, t0);
    weft_chan_release(ch);
  }

  /* A huge duration saturates: it never wraps into the past and fires at once. */
  ch = weft_after(INT64_MAX);
  CHECK_EQ(weft_chan_recv(ch, &v, weft_now() + MS(20)), -ETIMEDOUT);
  weft_chan_release(ch);
  weft_ticker *t = weft_ticker_new(INT64_MAX - 1);
  CHECK_EQ(weft_chan_recv(weft_ticker_chan(t), &v, weft_now() + MS(20)), -ETIMEDOUT);
  weft_ticker_stop(t);

  /* The value waits in the channel's slot until received. */
  t0 = weft_now();
  ch = weft_after(MS(1));
  weft_sleep(MS(10));
  while (weft_chan_len(ch) == 0 && weft_now() < t0 + LATE) /* only if the timer was late */
    weft_sleep(MS(1));
  CHECK_EQ(weft_chan_len(ch), 1);
  CHECK_EQ(weft_chan_try_recv(ch, &v), 0);
  CHECK_GE(v, t0 + MS(1));
  CHECK_EQ(weft_chan_try_recv(ch, &v), -EAGAIN);
  weft_chan_release(ch);
  return checks_result();
}

static void test_after_delivers_once_not_early(void **state)
{
  (void)state;
  assert_null(weft_after(MS(1))); /* no runtime */
  assert_null(weft_ticker_new(MS(1)));
  assert_int_equal(run_weft(1, after_main, NULL), 0);
  assert_int_equal(run_weft(2, after_main, NULL), 0);
}

/* Many after channels at once fire in deadline order, each once. */
struct after_many {
  atomic_long fired;
  atomic_long early;
  weft_wg wg;
};

static void after_waiter(void *arg)
{
  struct after_many *m = arg;
  int64_t ns = (int64_t)(weft_self_id() % 20) * 250000;
  int64_t t0 = weft_now();
  weft_chan *ch = weft_after(ns);
  int64_t v;
  if (weft_chan_recv(ch, &v, WEFT_NO_DEADLINE) == 0) {
    atomic_fetch_add(&m->fired, 1);
    if (v < t0 + ns)
      atomic_fetch_add(&m->early, 1);
  }
  weft_chan_release(ch);
  weft_wg_done(&m->wg);
}

static int after_many_main(void *arg)
{
  (void)arg;
  struct after_many m = {0};
  int n = SANITIZED ? 200 : 1000;
  weft_wg_add(&m.wg, n);
  for (int i = 0; i < n; i++)
    weft_go(after_waiter, &m);
  weft_wg_wait(&m.wg);
  CHECK_EQ(atomic_load(&m.fired), n);
  CHECK_EQ(atomic_load(&m.early), 0);
  return checks_result();
}

static void test_after_many(void **state)
{
  (void)state;
  run_weft_p1to4(after_many_main, NULL);
}

/* Releasing the channel before (or while) the timer fires is safe: the timer's own
 * reference keeps the channel alive for it, and nothing leaks (the sanitizer builds check
 * for use after free and leaks). */
static int after_release_main(void *arg)
{
  (void)arg;
  weft_chan *ch = weft_after(MS(2));
  weft_chan_release(ch); /* before it fires */
  weft_sleep(MS(10));    /* it fires now, into a channel only the timer holds */

  uint64_t rng = test_seed() | 1;
  for (int i = 0; i < 300; i++) {
    ch = weft_after((int64_t)(test_rand(&rng) % 400000));
    if (i % 3 == 0)
      weft_sleep((int64_t)(test_rand(&rng) % 300000)); /* sometimes after it fired */
    weft_chan_release(ch);
  }
  weft_sleep(MS(5)); /* let every timer fire */

  /* Released long before it would fire, and main returns first: the release cancels the
   * timer, so nothing is left behind when the runtime stops. */
  weft_chan_release(weft_after(MS(60000)));
  return checks_result();
}

static void test_after_release_early(void **state)
{
  (void)state;
  run_weft_p1to4(after_release_main, NULL);
}

/* The release cancels the timer: a pending after timer would count as a wake source and
 * hold deadlock detection off for a minute; cancelled, the deadlock is reported at once. */
static int after_cancel_main(void *arg)
{
  (void)arg;
  weft_chan_release(weft_after(MS(60000)));
  int v;
  weft_chan_recv(NULL, &v, WEFT_NO_DEADLINE);
  return 0;
}

static void child_after_cancelled(void)
{
  run_weft(2, after_cancel_main, NULL);
  exit(0);
}

static void test_after_release_cancels(void **state)
{
  (void)state;
  expect_child("after_cancelled", DEADLOCK_MSG, 20);
}

/* An after channel and a ticker still pending when main returns may be released and
 * stopped after weft_main has returned: their timers died with the runtime, and the
 * records are freed without touching its (freed) timer heaps. */
struct outlive {
  weft_chan *after;
  weft_ticker *ticker;
};

static int outlive_main(void *arg)
{
  struct outlive *o = arg;
  o->after = weft_after(MS(60000));
  o->ticker = weft_ticker_new(MS(60000));
  return o->after && o->ticker ? 0 : -1;
}

static void test_outlive_runtime(void **state)
{
  (void)state;
  struct outlive o = {0};
  assert_int_equal(run_weft(2, outlive_main, &o), 0);
  weft_chan_release(o.after);
  weft_ticker_stop(o.ticker);
}

/* ---- tickers ---- */

static int ticker_main(void *arg)
{
  (void)arg;
  const int64_t period = MS(10);
  int64_t t0 = weft_now();
  weft_ticker *t = weft_ticker_new(period);
  CHECK(t != NULL);
  weft_chan *ch = weft_ticker_chan(t);
  CHECK_EQ(weft_chan_cap(ch), 1);
  int64_t prev = t0;
  for (int k = 1; k <= 5; k++) {
    int64_t v = 0;
    CHECK_EQ(weft_chan_recv(ch, &v, t0 + k * period + LATE), 0);
    CHECK_GE(v, t0 + k * period); /* the k-th tick is never early */
    CHECK(v > prev);
    prev = v;
  }
  CHECK(weft_now() - t0 < 5 * period + LATE);
  weft_ticker_stop(t);
  return checks_result();
}

static void test_ticker_ticks_at_period(void **state)
{
  (void)state;
  assert_int_equal(run_weft(1, ticker_main, NULL), 0);
  assert_int_equal(run_weft(3, ticker_main, NULL), 0);
}

/* Ticks that find the slot full are dropped: after sleeping through ~30 periods, one
 * buffered tick waits (plus the few that may fire while draining), not thirty. */
static int ticker_drop_main(void *arg)
{
  (void)arg;
  const int64_t period = MS(2);
  int64_t t0 = weft_now();
  weft_ticker *t = weft_ticker_new(period);
  weft_chan *ch = weft_ticker_chan(t);
  weft_sleep(30 * period);
  CHECK(weft_chan_len(ch) <= 1);
  int64_t first = 0, v;
  CHECK_EQ(weft_chan_recv(ch, &first, weft_now() + LATE), 0);
  CHECK_GE(first, t0 + period);
  int drained = 1;
  while (weft_chan_try_recv(ch, &v) == 0)
    drained++;
  CHECK(drained <= 5);
  CHECK_EQ(weft_chan_recv(ch, &v, weft_now() + LATE), 0); /* ticking goes on */
  CHECK(v > first);
  weft_ticker_stop(t);
  return checks_result();
}

static void test_ticker_drops_while_full(void **state)
{
  (void)state;
  assert_int_equal(run_weft(1, ticker_drop_main, NULL), 0);
  assert_int_equal(run_weft(2, ticker_drop_main, NULL), 0);
}

/* A stopped ticker ticks no more and is freed (its channel reference too: the sanitizer
 * builds report a leak otherwise); a channel reference taken before stopping stays valid. */
static int ticker_stop_main(void *arg)
{
  (void)arg;
  weft_ticker_stop(NULL);
  CHECK(weft_ticker_new(0) == NULL);
  CHECK(weft_ticker_new(-MS(1)) == NULL);
  CHECK(weft_ticker_chan(NULL) == NULL);

  const int64_t period = MS(1);
  weft_ticker *t = weft_ticker_new(period);
  weft_chan *ch = weft_chan_retain(weft_ticker_chan(t));
  int64_t v;
  CHECK_EQ(weft_chan_recv(ch, &v, weft_now() + LATE), 0);
  CHECK_EQ(weft_chan_recv(ch, &v, weft_now() + LATE), 0);
  weft_ticker_stop(t);
  weft_chan_try_recv(ch, &v); /* a tick may have landed before the stop */
  weft_sleep(20 * period);
  CHECK_EQ(weft_chan_try_recv(ch, &v), -EAGAIN);
  CHECK_EQ(weft_chan_len(ch), 0);
  weft_chan_release(ch);

  /* Stopped before its first tick, and at once. */
  weft_ticker_stop(weft_ticker_new(MS(60000)));
  weft_ticker_stop(weft_ticker_new(1));
  return checks_result();
}

static void test_ticker_stop(void **state)
{
  (void)state;
  run_weft_p1to4(ticker_stop_main, NULL);
}

/* A ticker far faster than the scheduler can serve (1 us) keeps ticking without flooding
 * anything; many tickers started and stopped from several threads at once. */
struct tickers {
  atomic_long ticks;
  weft_wg wg;
};

static void ticker_user(void *arg)
{
  struct tickers *ts = arg;
  int64_t period = 1000 + (int64_t)(weft_self_id() % 7) * 150000;
  weft_ticker *t = weft_ticker_new(period);
  int64_t v, prev = 0;
  for (int i = 0; i < 3; i++) {
    if (weft_chan_recv(weft_ticker_chan(t), &v, weft_now() + LATE) == 0) {
      CHECK(v > prev);
      prev = v;
      atomic_fetch_add(&ts->ticks, 1);
    }
  }
  weft_ticker_stop(t);
  weft_wg_done(&ts->wg);
}

static int ticker_many_main(void *arg)
{
  (void)arg;
  weft_ticker *fast = weft_ticker_new(1000);
  int64_t v, prev = 0;
  for (int i = 0; i < 200; i++) {
    CHECK_EQ(weft_chan_recv(weft_ticker_chan(fast), &v, weft_now() + LATE), 0);
    CHECK(v > prev);
    prev = v;
  }
  weft_ticker_stop(fast);

  struct tickers ts = {0};
  int n = SANITIZED ? 40 : 200;
  weft_wg_add(&ts.wg, n);
  for (int i = 0; i < n; i++)
    weft_go(ticker_user, &ts);
  weft_wg_wait(&ts.wg);
  CHECK_EQ(atomic_load(&ts.ticks), 3 * n);
  return checks_result();
}

static void test_ticker_fast_and_many(void **state)
{
  (void)state;
  run_weft_p1to4(ticker_many_main, NULL);
}

/* ---- the timeout pattern: select over data and an after channel ---- */

struct delayed {
  weft_chan *data;
  int64_t delay;
  weft_wg wg;
};

static void delayed_sender(void *arg)
{
  struct delayed *d = arg;
  weft_sleep(d->delay);
  long v = 808;
  CHECK_EQ(weft_chan_send(d->data, &v, WEFT_NO_DEADLINE), 0);
  weft_wg_done(&d->wg);
}

static int timeout_pattern_main(void *arg)
{
  (void)arg;
  weft_chan *data = weft_chan_new(sizeof(long), 0);
  long in = 0;
  int64_t when = 0;

  /* No data: the after channel wins, not before its time. */
  int64_t t0 = weft_now();
  weft_chan *timeout = weft_after(MS(20));
  weft_select_case cs[] = {{.ch = data, .dir = WEFT_SELECT_RECV, .elem = &in},
                           {.ch = timeout, .dir = WEFT_SELECT_RECV, .elem = &when}};
  CHECK_EQ(weft_select(cs, 2, 0, WEFT_NO_DEADLINE), 1);
  CHECK_EQ(cs[1].result, 0);
  CHECK_GE(when, t0 + MS(20));
  CHECK_GE(weft_now(), t0 + MS(20));
  CHECK_EQ(weft_chan_try_send(data, &in), -EAGAIN); /* the select left data's queue */
  weft_chan_release(timeout);

  /* Data in time: the data case wins; the after channel is released before it fires. */
  struct delayed d = {.data = data, .delay = MS(2)};
  weft_wg_add(&d.wg, 1);
  weft_go(delayed_sender, &d);
  cs[1].ch = timeout = weft_after(MS(60000));
  CHECK_EQ(weft_select(cs, 2, 0, WEFT_NO_DEADLINE), 0);
  CHECK_EQ(in, 808);
  weft_chan_release(timeout);
  weft_wg_wait(&d.wg);

  /* In a loop with data always ready: each iteration's timer is released unfired. */
  weft_chan *ready = weft_chan_new(sizeof(long), 1);
  long v = 1;
  for (int i = 0; i < 500; i++) {
    CHECK_EQ(weft_chan_try_send(ready, &v), 0);
    weft_select_case loop[] = {{.ch = ready, .dir = WEFT_SELECT_RECV, .elem = &in},
                               {.ch = weft_after(MS(1000)), .dir = WEFT_SELECT_RECV}};
    CHECK_EQ(weft_select(loop, 2, 0, WEFT_NO_DEADLINE), 0);
    weft_chan_release(loop[1].ch);
  }
  weft_chan_release(ready);
  weft_chan_release(data);
  return checks_result();
}

static void test_timeout_pattern(void **state)
{
  (void)state;
  run_weft_p1to4(timeout_pattern_main, NULL);
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_after_delivers_once_not_early),
      cmocka_unit_test(test_after_many),
      cmocka_unit_test(test_after_release_early),
      cmocka_unit_test(test_after_release_cancels),
      cmocka_unit_test(test_outlive_runtime),
      cmocka_unit_test(test_ticker_ticks_at_period),
      cmocka_unit_test(test_ticker_drops_while_full),
      cmocka_unit_test(test_ticker_stop),
      cmocka_unit_test(test_ticker_fast_and_many),
      cmocka_unit_test(test_timeout_pattern),
  };
  const struct child_scenario children[] = {
      {"after_cancelled", child_after_cancelled},
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], children,
                        sizeof children / sizeof children[0]);
}
