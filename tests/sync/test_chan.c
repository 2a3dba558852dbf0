/* test_chan.c: channels, one test per rule of weft/chan.h: hand-off, buffering, FIFO
 * service of parked senders and receivers, close, nil channels, deadlines, element sizes,
 * the typed helpers, reference counting and cross-thread use.
 *
 * Checks made inside coroutines use CHECK (record, print, carry on) rather than cmocka's
 * asserts, which longjmp and must not cross coroutine stacks; each scenario returns the
 * number of failed checks, and run_weft()/run_weft_p1to4() turn a non-zero count into a
 * test failure. Ordering tests that depend on which coroutine parks first run on P=1,
 * where a coroutine that was given the thread runs until it parks. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coro_check.h"
#include "weft_test.h"

/* ---- checks usable in any coroutine ---- */

/* Yield until *n reaches want. On P=1 a coroutine given the thread runs until it parks,
 * so a coroutine that counted itself just before a blocking call is then parked in it. */
static void yield_until(atomic_int *n, int want)
{
  while (atomic_load(n) < want)
    weft_yield();
}

/* ---- creation and inspection, no runtime needed ---- */

static void test_new_and_inspect(void **state)
{
  (void)state;
  assert_null(weft_chan_new(0, 4));
  assert_null(weft_chan_new(65537, 0));
  assert_null(weft_chan_new(1 << 16, SIZE_MAX / 2));
  assert_int_equal(weft_chan_len(NULL), 0);
  assert_int_equal(weft_chan_cap(NULL), 0);
  assert_int_equal(weft_chan_elem_size(NULL), 0);
  assert_false(weft_chan_is_closed(NULL));
  assert_null(weft_chan_retain(NULL));
  weft_chan_release(NULL);

  weft_chan *big = weft_chan_new(65536, 0);
  assert_non_null(big);
  assert_int_equal(weft_chan_elem_size(big), 65536);
  weft_chan_release(big);

  weft_chan *ch = weft_chan_new(sizeof(int), 3);
  assert_non_null(ch);
  assert_int_equal(weft_chan_cap(ch), 3);
  assert_int_equal(weft_chan_elem_size(ch), sizeof(int));
  assert_int_equal(weft_chan_len(ch), 0);
  assert_false(weft_chan_is_closed(ch));
  assert_ptr_equal(weft_chan_retain(ch), ch);
  weft_chan_release(ch); /* back to one reference */

  /* try_send/try_recv from a plain thread (here: the test's own, no runtime). */
  int v = -1;
  assert_int_equal(weft_chan_try_recv(ch, &v), -EAGAIN);
  assert_int_equal(v, -1); /* untouched when it would block */
  for (int i = 0; i < 3; i++)
    assert_int_equal(weft_chan_try_send(ch, &i), 0);
  assert_int_equal(weft_chan_len(ch), 3);
  assert_int_equal(weft_chan_try_send(ch, &v), -EAGAIN);
  weft_chan_close(ch);
  assert_true(weft_chan_is_closed(ch));
  assert_int_equal(weft_chan_len(ch), 3);
  assert_int_equal(weft_chan_try_send(ch, &v), -EPIPE);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(weft_chan_try_recv(ch, &v), 0);
    assert_int_equal(v, i);
  }
  v = 77;
  assert_int_equal(weft_chan_try_recv(ch, &v), -EPIPE);
  assert_int_equal(v, 0);
  weft_chan_release(ch);

  int x = 1;
  assert_int_equal(weft_chan_try_send(NULL, &x), -EAGAIN);
  assert_int_equal(weft_chan_try_recv(NULL, &x), -EAGAIN);
}

/* ---- unbuffered hand-off ---- */

struct handoff {
  weft_chan *ch;
  atomic_int phase; /* 1: about to send; 2: send returned */
  int rc;
  weft_wg wg;
};

static void handoff_sender(void *arg)
{
  struct handoff *h = arg;
  int v = 4242;
  atomic_store(&h->phase, 1);
  h->rc = weft_chan_send(h->ch, &v, WEFT_NO_DEADLINE);
  atomic_store(&h->phase, 2);
  weft_wg_done(&h->wg);
}

static int handoff_main(void *arg)
{
  struct handoff h = {.ch = weft_chan_new(sizeof(int), 0)};
  (void)arg;
  weft_wg_add(&h.wg, 1);
  weft_go(handoff_sender, &h);
  while (atomic_load(&h.phase) < 1)
    weft_yield();
  /* No receiver yet: the send cannot have completed, however long we wait. */
  weft_sleep(MS(20));
  CHECK_EQ(atomic_load(&h.phase), 1);
  CHECK_EQ(weft_chan_len(h.ch), 0);
  int v = 0;
  CHECK_EQ(weft_chan_recv(h.ch, &v, WEFT_NO_DEADLINE), 0);
  CHECK_EQ(v, 4242);
  weft_wg_wait(&h.wg);
  CHECK_EQ(h.rc, 0);
  CHECK_EQ(atomic_load(&h.phase), 2);

  /* With no receiver at all, an unbuffered send times out; so does try_send. */
  int64_t t0 = weft_now();
  CHECK_EQ(weft_chan_send(h.ch, &v, t0 + MS(10)), -ETIMEDOUT);
  CHECK(weft_now() >= t0 + MS(10));
  CHECK_EQ(weft_chan_try_send(h.ch, &v), -EAGAIN);
  weft_chan_release(h.ch);
  return checks_result();
}

static void test_unbuffered_handoff(void **state)
{
  (void)state;
  run_weft_p1to4(handoff_main, NULL);
}

/* ---- buffered FIFO, len and cap ---- */

static int buffered_main(void *arg)
{
  (void)arg;
  weft_chan *ch = weft_chan_new(sizeof(long), 16);
  CHECK_EQ(weft_chan_cap(ch), 16);
  for (long i = 0; i < 16; i++) {
    CHECK_EQ(weft_chan_send(ch, &i, WEFT_NO_DEADLINE), 0); /* never parks: room */
    CHECK_EQ(weft_chan_len(ch), i + 1);
  }
  long v = -1;
  CHECK_EQ(weft_chan_try_send(ch, &v), -EAGAIN);
  CHECK_EQ(weft_chan_len(ch), 16);
  for (long i = 0; i < 16; i++) {
    CHECK_EQ(weft_chan_recv(ch, &v, WEFT_NO_DEADLINE), 0);
    CHECK_EQ(v, i);
    CHECK_EQ(weft_chan_len(ch), 15 - i);
  }
  weft_chan_release(ch);

  /* A small ring wraps many times; order holds throughout. A NULL destination discards
   * the value but still consumes it. */
  ch = weft_chan_new(sizeof(long), 3);
  long next_in = 0, next_out = 0;
  uint64_t rng = test_seed() | 1;
  for (int step = 0; step < 5000; step++) {
    if (test_rand(&rng) % 2 && weft_chan_len(ch) < 3) {
      CHECK_EQ(weft_chan_try_send(ch, &next_in), 0);
      next_in++;
    } else if (weft_chan_len(ch) > 0) {
      bool discard = test_rand(&rng) % 8 == 0;
      CHECK_EQ(weft_chan_try_recv(ch, discard ? NULL : &v), 0);
      if (!discard)
        CHECK_EQ(v, next_out);
      next_out++;
    }
    CHECK_EQ(weft_chan_len(ch), next_in - next_out);
  }
  weft_chan_release(ch);
  return checks_result();
}

static void test_buffered_fifo_len_cap(void **state)
{
  (void)state;
  run_weft_p1to4(buffered_main, NULL);
}

/* ---- try ops never park ---- */

static void set_flag(void *arg)
{
  atomic_store((atomic_int *)arg, 1);
}

static int try_never_parks_main(void *arg)
{
  atomic_int ran = 0;
  (void)arg;
  weft_chan *unbuf = weft_chan_new(sizeof(int), 0);
  weft_chan *full = weft_chan_new(sizeof(int), 1);
  weft_chan *empty = weft_chan_new(sizeof(int), 1);
  int v = 1;
  CHECK_EQ(weft_chan_try_send(full, &v), 0);
  /* On P=1 the spawned coroutine can run only if main parks or yields. */
  weft_go(set_flag, &ran);
  for (int i = 0; i < 1000; i++) {
    CHECK_EQ(weft_chan_try_send(unbuf, &v), -EAGAIN);
    CHECK_EQ(weft_chan_try_recv(unbuf, &v), -EAGAIN);
    CHECK_EQ(weft_chan_try_send(full, &v), -EAGAIN);
    CHECK_EQ(weft_chan_try_recv(empty, &v), -EAGAIN);
    CHECK_EQ(weft_chan_try_send(NULL, &v), -EAGAIN);
    CHECK_EQ(weft_chan_try_recv(NULL, &v), -EAGAIN);
  }
  CHECK_EQ(atomic_load(&ran), 0);
  while (!atomic_load(&ran))
    weft_yield();
  weft_chan_release(unbuf);
  weft_chan_release(full);
  weft_chan_release(empty);
  return checks_result();
}

static void test_try_ops_never_park(void **state)
{
  (void)state;
  assert_int_equal(run_weft(1, try_never_parks_main, NULL), 0);
}

/* try ops complete against a parked counterpart. */
struct peer {
  weft_chan *ch;
  atomic_int parked;
  int value, rc;
  weft_wg wg;
};

static void peer_recv(void *arg)
{
  struct peer *p = arg;
  atomic_store(&p->parked, 1);
  p->rc = weft_chan_recv(p->ch, &p->value, WEFT_NO_DEADLINE);
  weft_wg_done(&p->wg);
}

static void peer_send(void *arg)
{
  struct peer *p = arg;
  atomic_store(&p->parked, 1);
  p->rc = weft_chan_send(p->ch, &p->value, WEFT_NO_DEADLINE);
  weft_wg_done(&p->wg);
}

static int try_with_peer_main(void *arg)
{
  (void)arg;
  struct peer p = {.ch = weft_chan_new(sizeof(int), 0), .value = -1};
  weft_wg_add(&p.wg, 1);
  weft_go(peer_recv, &p);
  yield_until(&p.parked, 1);
  int v = 99, rc;
  while ((rc = weft_chan_try_send(p.ch, &v)) == -EAGAIN) /* until the receiver parks */
    weft_yield();
  CHECK_EQ(rc, 0);
  weft_wg_wait(&p.wg);
  CHECK_EQ(p.rc, 0);
  CHECK_EQ(p.value, 99);

  p.value = 123;
  atomic_store(&p.parked, 0);
  weft_wg_add(&p.wg, 1);
  weft_go(peer_send, &p);
  yield_until(&p.parked, 1);
  v = 0;
  while ((rc = weft_chan_try_recv(p.ch, &v)) == -EAGAIN)
    weft_yield();
  CHECK_EQ(rc, 0);
  CHECK_EQ(v, 123);
  weft_wg_wait(&p.wg);
  CHECK_EQ(p.rc, 0);
  weft_chan_release(p.ch);
  return checks_result();
}

static void test_try_ops_with_parked_peer(void **state)
{
  (void)state;
  run_weft_p1to4(try_with_peer_main, NULL);
}

/* ---- parked senders and receivers are served first come, first served ---- */

#define NWAITERS 5

struct fifo {
  weft_chan *ch;
  atomic_int parked;
  long got[NWAITERS];
  int rc[NWAITERS];
  weft_wg wg;
};

struct fifo_arg {
  struct fifo *f;
  long i;
};

static void fifo_receiver(void *arg)
{
  struct fifo_arg *a = arg;
  struct fifo *f = a->f;
  f->got[a->i] = 0x5a5a5a5a;
  atomic_fetch_add(&f->parked, 1);
  f->rc[a->i] = weft_chan_recv(f->ch, &f->got[a->i], WEFT_NO_DEADLINE);
  weft_wg_done(&f->wg);
}

static void fifo_sender(void *arg)
{
  struct fifo_arg *a = arg;
  struct fifo *f = a->f;
  long v = a->i;
  atomic_fetch_add(&f->parked, 1);
  f->rc[a->i] = weft_chan_send(f->ch, &v, WEFT_NO_DEADLINE);
  weft_wg_done(&f->wg);
}

/* Spawn NWAITERS coroutines running fn, each parked before the next starts (P=1). */
static void park_in_order(struct fifo *f, struct fifo_arg *args, void (*fn)(void *))
{
  atomic_store(&f->parked, 0);
  weft_wg_add(&f->wg, NWAITERS);
  for (int i = 0; i < NWAITERS; i++) {
    args[i] = (struct fifo_arg){f, i};
    weft_go(fn, &args[i]);
    yield_until(&f->parked, i + 1);
  }
}

static int fifo_receivers_main(void *arg)
{
  struct fifo f = {.ch = weft_chan_new(sizeof(long), (size_t)(intptr_t)arg)};
  struct fifo_arg args[NWAITERS];
  park_in_order(&f, args, fifo_receiver);
  for (long i = 0; i < NWAITERS; i++)
    CHECK_EQ(weft_chan_send(f.ch, &i, WEFT_NO_DEADLINE), 0); /* a receiver waits: no park */
  weft_wg_wait(&f.wg);
  for (int i = 0; i < NWAITERS; i++) {
    CHECK_EQ(f.rc[i], 0);
    CHECK_EQ(f.got[i], i); /* the i-th to park got the i-th value */
  }
  CHECK_EQ(weft_chan_len(f.ch), 0);
  weft_chan_release(f.ch);
  return checks_result();
}

static void test_parked_receivers_fifo(void **state)
{
  (void)state;
  assert_int_equal(run_weft(1, fifo_receivers_main, (void *)0), 0);
  assert_int_equal(run_weft(1, fifo_receivers_main, (void *)4), 0);
}

static int fifo_senders_main(void *arg)
{
  (void)arg;
  struct fifo f = {.ch = weft_chan_new(sizeof(long), 0)};
  struct fifo_arg args[NWAITERS];
  park_in_order(&f, args, fifo_sender);
  for (long i = 0; i < NWAITERS; i++) {
    long v = -1;
    CHECK_EQ(weft_chan_recv(f.ch, &v, WEFT_NO_DEADLINE), 0);
    CHECK_EQ(v, i); /* straight from the i-th parked sender */
  }
  weft_wg_wait(&f.wg);
  for (int i = 0; i < NWAITERS; i++)
    CHECK_EQ(f.rc[i], 0);
  weft_chan_release(f.ch);
  return checks_result();
}

static void test_parked_senders_fifo(void **state)
{
  (void)state;
  assert_int_equal(run_weft(1, fifo_senders_main, NULL), 0);
}

/* A full buffered channel with parked senders: the buffered values come out first, then
 * the senders' values in the order the senders parked; each receive moves one parked
 * sender's value into the buffer, so len stays at cap until the senders are done. */
static int full_buffer_senders_main(void *arg)
{
  (void)arg;
  struct fifo f = {.ch = weft_chan_new(sizeof(long), 3)};
  struct fifo_arg args[NWAITERS];
  for (long v = 100; v < 103; v++)
    CHECK_EQ(weft_chan_send(f.ch, &v, WEFT_NO_DEADLINE), 0);
  park_in_order(&f, args, fifo_sender);
  CHECK_EQ(weft_chan_len(f.ch), 3);
  long want[] = {100, 101, 102, 0, 1, 2, 3, 4};
  for (int k = 0; k < 8; k++) {
    long v = -1;
    CHECK_EQ(weft_chan_try_recv(f.ch, &v), 0);
    CHECK_EQ(v, want[k]);
    CHECK_EQ(weft_chan_len(f.ch), k < NWAITERS ? 3 : 7 - k);
  }
  long v;
  CHECK_EQ(weft_chan_try_recv(f.ch, &v), -EAGAIN);
  weft_wg_wait(&f.wg);
  for (int i = 0; i < NWAITERS; i++)
    CHECK_EQ(f.rc[i], 0);
  weft_chan_release(f.ch);
  return checks_result();
}

static void test_full_buffer_then_parked_senders(void **state)
{
  (void)state;
  assert_int_equal(run_weft(1, full_buffer_senders_main, NULL), 0);
}

/* ---- close ---- */

/* Close wakes every parked receiver with -EPIPE and a zeroed element. arg: the capacity;
 * on P>1 the receivers are only probably parked, which does not change the outcome. */
static int close_receivers_main(void *arg)
{
  struct fifo f = {.ch = weft_chan_new(sizeof(long), (size_t)(intptr_t)arg)};
  struct fifo_arg args[NWAITERS];
  park_in_order(&f, args, fifo_receiver);
  if (weft_procs() > 1)
    weft_sleep(MS(5));
  weft_chan_close(f.ch);
  weft_wg_wait(&f.wg);
  for (int i = 0; i < NWAITERS; i++) {
    CHECK_EQ(f.rc[i], -EPIPE);
    CHECK_EQ(f.got[i], 0);
  }
  long v = 1;
  CHECK_EQ(weft_chan_recv(f.ch, &v, WEFT_NO_DEADLINE), -EPIPE); /* at once, forever */
  CHECK_EQ(v, 0);
  weft_chan_release(f.ch);
  return checks_result();
}

static void test_close_wakes_receivers(void **state)
{
  (void)state;
  assert_int_equal(run_weft(1, close_receivers_main, (void *)0), 0);
  assert_int_equal(run_weft(1, close_receivers_main, (void *)2), 0);
  run_weft_p1to4(close_receivers_main, (void *)0);
}

/* Close fails every parked sender with -EPIPE; their values are never received, while
 * what was buffered before the close still drains, then -EPIPE forever. */
static int close_senders_main(void *arg)
{
  size_t cap = (size_t)(intptr_t)arg;
  struct fifo f = {.ch = weft_chan_new(sizeof(long), cap)};
  struct fifo_arg args[NWAITERS];
  for (long v = 100; v < 100 + (long)cap; v++)
    CHECK_EQ(weft_chan_send(f.ch, &v, WEFT_NO_DEADLINE), 0);
  park_in_order(&f, args, fifo_sender);
  if (weft_procs() > 1)
    weft_sleep(MS(5));
  weft_chan_close(f.ch);
  weft_wg_wait(&f.wg);
  for (int i = 0; i < NWAITERS; i++)
    CHECK_EQ(f.rc[i], -EPIPE);
  CHECK(weft_chan_is_closed(f.ch));
  CHECK_EQ(weft_chan_len(f.ch), cap);
  long v;
  for (long k = 0; k < (long)cap; k++) {
    CHECK_EQ(weft_chan_recv(f.ch, &v, WEFT_NO_DEADLINE), 0);
    CHECK_EQ(v, 100 + k);
  }
  for (int k = 0; k < 3; k++) {
    v = 7;
    CHECK_EQ(weft_chan_recv(f.ch, &v, WEFT_NO_DEADLINE), -EPIPE);
    CHECK_EQ(v, 0);
    v = 7;
    CHECK_EQ(weft_chan_try_recv(f.ch, &v), -EPIPE);
    CHECK_EQ(v, 0);
  }
  CHECK_EQ(weft_chan_len(f.ch), 0);
  weft_chan_release(f.ch);
  return checks_result();
}

static void test_close_fails_senders(void **state)
{
  (void)state;
  assert_int_equal(run_weft(1, close_senders_main, (void *)0), 0);
  assert_int_equal(run_weft(1, close_senders_main, (void *)3), 0);
  run_weft_p1to4(close_senders_main, (void *)2);
}

static int closed_ops_main(void *arg)
{
  (void)arg;
  weft_chan *ch = weft_chan_new(sizeof(int), 4);
  int v = 5;
  CHECK_EQ(weft_chan_send(ch, &v, WEFT_NO_DEADLINE), 0);
  weft_chan_close(ch);
  CHECK_EQ(weft_chan_send(ch, &v, WEFT_NO_DEADLINE), -EPIPE);
  CHECK_EQ(weft_chan_send(ch, &v, weft_now() + MS(1)), -EPIPE);
  CHECK_EQ(weft_chan_try_send(ch, &v), -EPIPE);
  CHECK_EQ(weft_chan_len(ch), 1); /* the failed sends added nothing */
  CHECK_EQ(weft_chan_recv(ch, &v, weft_now() + MS(1)), 0);
  CHECK_EQ(v, 5);
  /* A deadline changes nothing on a closed, drained channel: -EPIPE at once. */
  CHECK_EQ(weft_chan_recv(ch, &v, weft_now() + MS(10000)), -EPIPE);
  CHECK_EQ(weft_chan_recv(ch, NULL, WEFT_NO_DEADLINE), -EPIPE);
  weft_chan_release(ch);

  ch = weft_chan_new(sizeof(int), 0);
  weft_chan_close(ch);
  CHECK_EQ(weft_chan_send(ch, &v, WEFT_NO_DEADLINE), -EPIPE);
  CHECK_EQ(weft_chan_recv(ch, &v, WEFT_NO_DEADLINE), -EPIPE);
  weft_chan_release(ch);
  return checks_result();
}

static void test_send_on_closed(void **state)
{
  (void)state;
  run_weft_p1to4(closed_ops_main, NULL);
}

static int close_twice_main(void *arg)
{
  (void)arg;
  weft_chan *ch = weft_chan_new(sizeof(int), 1);
  weft_chan_close(ch);
  weft_chan_close(ch);
  return 0;
}

static void child_close_twice(void)
{
  run_weft(1, close_twice_main, NULL);
  fprintf(stderr, "child: second close returned\n");
  exit(0);
}

static int close_nil_main(void *arg)
{
  (void)arg;
  weft_chan_close(NULL);
  return 0;
}

static void child_close_nil(void)
{
  run_weft(1, close_nil_main, NULL);
  fprintf(stderr, "child: close of NULL returned\n");
  exit(0);
}

static void test_close_twice_aborts(void **state)
{
  (void)state;
  expect_child("close_twice", "close of closed channel", 30);
}

static void test_close_nil_aborts(void **state)
{
  (void)state;
  expect_child("close_nil", "close of nil channel", 30);
}

/* ---- nil channels ---- */

static int nil_chan_main(void *arg)
{
  (void)arg;
  int v = 3;
  int64_t t0 = weft_now(), deadline = t0 + MS(20);
  CHECK_EQ(weft_chan_send(NULL, &v, deadline), -ETIMEDOUT);
  CHECK(weft_now() >= deadline);
  deadline = weft_now() + MS(20);
  CHECK_EQ(weft_chan_recv(NULL, &v, deadline), -ETIMEDOUT);
  CHECK(weft_now() >= deadline);
  CHECK_EQ(v, 3);                                     /* nothing was received */
  CHECK_EQ(weft_chan_send(NULL, &v, t0), -ETIMEDOUT); /* past deadline */
  CHECK_EQ(weft_chan_recv(NULL, &v, t0), -ETIMEDOUT);
  CHECK_EQ(weft_chan_send_sized(NULL, &v, sizeof v, weft_now() + MS(1)), -ETIMEDOUT);
  return checks_result();
}

static void test_nil_channel_deadline(void **state)
{
  (void)state;
  assert_int_equal(run_weft(1, nil_chan_main, NULL), 0);
  assert_int_equal(run_weft(3, nil_chan_main, NULL), 0);
}

static int nil_forever_main(void *arg)
{
  (void)arg;
  int v;
  weft_chan_recv(NULL, &v, WEFT_NO_DEADLINE);
  return 0;
}

static void child_nil_forever(void)
{
  run_weft(2, nil_forever_main, NULL);
  fprintf(stderr, "child: receive on a nil channel returned\n");
  exit(0);
}

static void test_nil_channel_forever_is_deadlock(void **state)
{
  (void)state;
  expect_child("nil_forever", "all coroutines are asleep - deadlock!", 30);
}

/* ---- deadlines on full and empty channels ---- */

static int deadline_main(void *arg)
{
  size_t cap = (size_t)(intptr_t)arg;
  weft_chan *ch = weft_chan_new(sizeof(int), cap);
  int v = 9;
  int64_t deadline = weft_now() + MS(15);
  CHECK_EQ(weft_chan_recv(ch, &v, deadline), -ETIMEDOUT); /* empty */
  CHECK(weft_now() >= deadline);
  CHECK_EQ(v, 9);
  /* The timed-out receiver left the queue: a send finds nobody waiting. */
  v = 1;
  CHECK_EQ(weft_chan_try_send(ch, &v), cap ? 0 : -EAGAIN);
  CHECK_EQ(weft_chan_len(ch), cap ? 1 : 0);
  for (int i = 2; i <= (int)cap; i++)
    CHECK_EQ(weft_chan_try_send(ch, &i), 0);
  CHECK_EQ(weft_chan_len(ch), cap);

  v = 500;
  deadline = weft_now() + MS(15);
  CHECK_EQ(weft_chan_send(ch, &v, deadline), -ETIMEDOUT); /* full */
  CHECK(weft_now() >= deadline);
  CHECK_EQ(weft_chan_len(ch), cap); /* nothing added */
  /* The timed-out sender left the queue: its value never shows up. */
  for (int i = 1; i <= (int)cap; i++) {
    CHECK_EQ(weft_chan_try_recv(ch, &v), 0);
    CHECK_EQ(v, i);
  }
  CHECK_EQ(weft_chan_try_recv(ch, &v), -EAGAIN);

  /* A deadline already past does not stop an operation that can proceed at once. */
  if (cap) {
    v = 77;
    CHECK_EQ(weft_chan_send(ch, &v, weft_now() - 1), 0);
    v = 0;
    CHECK_EQ(weft_chan_recv(ch, &v, 0), 0);
    CHECK_EQ(v, 77);
  }
  CHECK_EQ(weft_chan_recv(ch, &v, 0), -ETIMEDOUT);
  weft_chan_release(ch);
  return checks_result();
}

static void test_deadlines_full_and_empty(void **state)
{
  (void)state;
  run_weft_p1to4(deadline_main, (void *)0);
  run_weft_p1to4(deadline_main, (void *)2);
}

/* A deadline that expires while a value is on its way: the value is either received or
 * still in the channel, never lost or duplicated. */
struct race {
  weft_chan *ch;
  atomic_long received;
  weft_wg wg;
};

static void racing_receiver(void *arg)
{
  struct race *r = arg;
  long v;
  for (int i = 0; i < 200; i++) {
    if (weft_chan_recv(r->ch, &v, weft_now() + 20000 * (i % 7)) == 0)
      atomic_fetch_add(&r->received, v);
  }
  weft_wg_done(&r->wg);
}

static int deadline_race_main(void *arg)
{
  struct race r = {.ch = weft_chan_new(sizeof(long), (size_t)(intptr_t)arg)};
  long sent = 0;
  weft_wg_add(&r.wg, 4);
  for (int i = 0; i < 4; i++)
    weft_go(racing_receiver, &r);
  for (long i = 1; i <= 600; i++) {
    if (weft_chan_send(r.ch, &i, weft_now() + 30000 * (i % 5)) == 0)
      sent += i;
  }
  weft_wg_wait(&r.wg);
  long v;
  while (weft_chan_try_recv(r.ch, &v) == 0)
    atomic_fetch_add(&r.received, v);
  CHECK_EQ(atomic_load(&r.received), sent);
  weft_chan_release(r.ch);
  return checks_result();
}

static void test_deadline_races_lose_nothing(void **state)
{
  (void)state;
  run_weft_p1to4(deadline_race_main, (void *)0);
  run_weft_p1to4(deadline_race_main, (void *)3);
}

/* ---- element sizes ---- */

struct three {
  unsigned char b[3];
};

struct kib {
  unsigned char b[1024];
};

static void fill(unsigned char *p, size_t n, unsigned seed)
{
  for (size_t i = 0; i < n; i++)
    p[i] = (unsigned char)(seed * 131 + i * 7 + 1);
}

static bool matches(const unsigned char *p, size_t n, unsigned seed)
{
  for (size_t i = 0; i < n; i++)
    if (p[i] != (unsigned char)(seed * 131 + i * 7 + 1))
      return false;
  return true;
}

struct sized {
  weft_chan *ch;
  size_t size;
  int n;
  weft_wg wg;
};

static void sized_sender(void *arg)
{
  struct sized *s = arg;
  unsigned char *buf = malloc(s->size);
  for (int i = 0; i < s->n; i++) {
    fill(buf, s->size, (unsigned)i);
    CHECK_EQ(weft_chan_send(s->ch, buf, WEFT_NO_DEADLINE), 0);
  }
  free(buf);
  weft_chan_close(s->ch);
  weft_wg_done(&s->wg);
}

/* Receive into a buffer with guard bytes on both sides: exactly size bytes are written. */
static void sized_round(size_t size, size_t cap)
{
  struct sized s = {.ch = weft_chan_new(size, cap), .size = size, .n = 50};
  unsigned char *buf = malloc(size + 32);
  weft_wg_add(&s.wg, 1);
  weft_go(sized_sender, &s);
  for (int i = 0; i < s.n; i++) {
    memset(buf, 0xee, size + 32);
    CHECK_EQ(weft_chan_recv(s.ch, buf + 16, WEFT_NO_DEADLINE), 0);
    CHECK(matches(buf + 16, size, (unsigned)i));
    CHECK(buf[15] == 0xee && buf[16 + size] == 0xee);
  }
  memset(buf, 0xee, size + 32);
  CHECK_EQ(weft_chan_recv(s.ch, buf + 16, WEFT_NO_DEADLINE), -EPIPE);
  for (size_t k = 0; k < size; k++)
    CHECK_EQ(buf[16 + k], 0); /* zeroed element, exactly size bytes */
  CHECK(buf[15] == 0xee && buf[16 + size] == 0xee);
  weft_wg_wait(&s.wg);
  free(buf);
  weft_chan_release(s.ch);
}

static int sizes_main(void *arg)
{
  (void)arg;
  size_t sizes[] = {1, sizeof(struct three), 7, sizeof(struct kib), 65536};
  size_t caps[] = {0, 1, 5};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
    for (size_t j = 0; j < 3; j++)
      sized_round(sizes[i], caps[j]);

  /* Typed 3-byte and 1 KiB values through a buffered channel, no coroutine needed. */
  weft_chan *ch = WEFT_CHAN_NEW(struct three, 2);
  struct three t = {{1, 2, 3}}, u = {{0}};
  /* WEFT_CHAN_SEND takes a scalar value ((T){value}); structures go through _sized. */
  CHECK_EQ(weft_chan_send_sized(ch, &t, sizeof t, WEFT_NO_DEADLINE), 0);
  CHECK_EQ(WEFT_CHAN_RECV(ch, &u), 0);
  CHECK(memcmp(&t, &u, sizeof t) == 0);
  weft_chan_release(ch);
  ch = WEFT_CHAN_NEW(struct kib, 1);
  static struct kib k1, k2;
  fill(k1.b, sizeof k1.b, 9);
  CHECK_EQ(weft_chan_send(ch, &k1, WEFT_NO_DEADLINE), 0);
  CHECK_EQ(weft_chan_recv(ch, &k2, WEFT_NO_DEADLINE), 0);
  CHECK(matches(k2.b, sizeof k2.b, 9));
  weft_chan_release(ch);
  return checks_result();
}

static void test_odd_element_sizes(void **state)
{
  (void)state;
  assert_int_equal(run_weft(1, sizes_main, NULL), 0);
  assert_int_equal(run_weft(2, sizes_main, NULL), 0);
}

/* ---- typed helpers ---- */

static int typed_main(void *arg)
{
  (void)arg;
  weft_chan *ch = WEFT_CHAN_NEW(int, 4);
  CHECK_EQ(weft_chan_elem_size(ch), sizeof(int));
  CHECK_EQ(WEFT_CHAN_SEND(ch, int, 42), 0);
  CHECK_EQ(WEFT_CHAN_SEND(ch, long long, 43), -EINVAL); /* wrong size: nothing sent */
  CHECK_EQ(WEFT_CHAN_SEND(ch, char, 44), -EINVAL);
  CHECK_EQ(weft_chan_len(ch), 1);
  short s = 0;
  long long ll = 0;
  CHECK_EQ(WEFT_CHAN_RECV(ch, &s), -EINVAL); /* wrong size: nothing taken */
  CHECK_EQ(WEFT_CHAN_RECV(ch, &ll), -EINVAL);
  CHECK_EQ(s, 0);
  CHECK_EQ(weft_chan_len(ch), 1);
  int x = 0;
  CHECK_EQ(WEFT_CHAN_RECV(ch, &x), 0);
  CHECK_EQ(x, 42);
  CHECK_EQ(weft_chan_send_sized(ch, &x, sizeof x + 1, WEFT_NO_DEADLINE), -EINVAL);
  CHECK_EQ(weft_chan_recv_sized(ch, &x, 0, WEFT_NO_DEADLINE), -EINVAL);
  CHECK_EQ(weft_chan_recv_sized(ch, &x, sizeof x, weft_now() + MS(1)), -ETIMEDOUT);
  weft_chan_close(ch);
  CHECK_EQ(WEFT_CHAN_SEND(ch, int, 1), -EPIPE);
  x = 5;
  CHECK_EQ(WEFT_CHAN_RECV(ch, &x), -EPIPE);
  CHECK_EQ(x, 0);
  weft_chan_release(ch);
  return checks_result();
}

static void test_typed_helpers(void **state)
{
  (void)state;
  assert_int_equal(run_weft(1, typed_main, NULL), 0);
}

/* ---- reference counting ---- */

struct refs {
  weft_chan *ch;
  long sum, count;
  weft_wg wg;
};

/* Each takes its own reference (given by the spawner) and drops it when done. */
static void ref_producer(void *arg)
{
  struct refs *r = arg;
  weft_chan *ch = r->ch;
  for (long i = 1; i <= 1000; i++)
    CHECK_EQ(weft_chan_send(ch, &i, WEFT_NO_DEADLINE), 0);
  weft_chan_close(ch);
  weft_chan_release(ch);
  weft_wg_done(&r->wg);
}

static void ref_consumer(void *arg)
{
  struct refs *r = arg;
  weft_chan *ch = r->ch;
  long v;
  while (weft_chan_recv(ch, &v, WEFT_NO_DEADLINE) == 0) {
    r->sum += v;
    r->count++;
  }
  weft_chan_release(ch); /* possibly the last reference: frees the channel */
  weft_wg_done(&r->wg);
}

static void retain_release_many(void *arg)
{
  struct refs *r = arg;
  for (int i = 0; i < 10000; i++) {
    weft_chan_retain(r->ch);
    if (i % 100 == 0)
      weft_yield();
    weft_chan_release(r->ch);
  }
  weft_chan_release(r->ch); /* the reference it was given */
  weft_wg_done(&r->wg);
}

static int refcount_main(void *arg)
{
  (void)arg;
  struct refs r = {.ch = weft_chan_new(sizeof(long), 2)};
  weft_wg_add(&r.wg, 2);
  weft_chan_retain(r.ch); /* the producer's */
  weft_chan_retain(r.ch); /* the consumer's */
  weft_go(ref_consumer, &r);
  weft_go(ref_producer, &r);
  weft_chan_release(r.ch); /* the creator's: the channel lives on in the others */
  weft_wg_wait(&r.wg);
  CHECK_EQ(r.count, 1000);
  CHECK_EQ(r.sum, 1000 * 1001 / 2);

  /* Concurrent retain/release from several coroutines; the last release frees it (a
   * leak or a double free is caught by the sanitizer builds). */
  r.ch = weft_chan_new(sizeof(long), 0);
  weft_wg_add(&r.wg, 8);
  for (int i = 0; i < 8; i++) {
    weft_chan_retain(r.ch);
    weft_go(retain_release_many, &r);
  }
  weft_chan_release(r.ch);
  weft_wg_wait(&r.wg);
  return checks_result();
}

static void test_reference_counting(void **state)
{
  (void)state;
  run_weft_p1to4(refcount_main, NULL);
}

/* ---- cross-thread use ---- */

#define XN_PRODUCERS 4
#define XN_CONSUMERS 4

struct xthread {
  weft_chan *ch;
  int per_producer;
  atomic_uchar *seen; /* per value: times received */
  atomic_long dup, bad;
  weft_wg producers, consumers;
  atomic_int next_producer;
};

static void x_producer(void *arg)
{
  struct xthread *x = arg;
  long base = (long)atomic_fetch_add(&x->next_producer, 1) * x->per_producer;
  for (long i = 0; i < x->per_producer; i++) {
    long v = base + i;
    CHECK_EQ(weft_chan_send(x->ch, &v, WEFT_NO_DEADLINE), 0);
  }
  weft_wg_done(&x->producers);
}

static void x_consumer(void *arg)
{
  struct xthread *x = arg;
  long v;
  long total = (long)XN_PRODUCERS * x->per_producer;
  while (weft_chan_recv(x->ch, &v, WEFT_NO_DEADLINE) == 0) {
    if (v < 0 || v >= total)
      atomic_fetch_add(&x->bad, 1);
    else if (atomic_fetch_add(&x->seen[v], 1) != 0)
      atomic_fetch_add(&x->dup, 1);
  }
  weft_wg_done(&x->consumers);
}

static int xthread_main(void *arg)
{
  struct xthread x = {.ch = weft_chan_new(sizeof(long), (size_t)(intptr_t)arg),
                      .per_producer = SANITIZED ? 2000 : 20000};
  long total = (long)XN_PRODUCERS * x.per_producer;
  x.seen = calloc((size_t)total, sizeof *x.seen);
  weft_wg_add(&x.producers, XN_PRODUCERS);
  weft_wg_add(&x.consumers, XN_CONSUMERS);
  for (int i = 0; i < XN_CONSUMERS; i++)
    weft_go(x_consumer, &x);
  for (int i = 0; i < XN_PRODUCERS; i++)
    weft_go(x_producer, &x);
  weft_wg_wait(&x.producers);
  weft_chan_close(x.ch);
  weft_wg_wait(&x.consumers);
  CHECK_EQ(atomic_load(&x.dup), 0);
  CHECK_EQ(atomic_load(&x.bad), 0);
  long missing = 0;
  for (long i = 0; i < total; i++)
    missing += atomic_load(&x.seen[i]) != 1;
  CHECK_EQ(missing, 0);
  free(x.seen);
  weft_chan_release(x.ch);
  return checks_result();
}

static void test_cross_thread_mpmc(void **state)
{
  (void)state;
  run_weft_p1to4(xthread_main, (void *)0);
  run_weft_p1to4(xthread_main, (void *)1);
  run_weft_p1to4(xthread_main, (void *)64);
}

/* Ping-pong between two coroutines over two unbuffered channels. */
struct pingpong {
  weft_chan *ping, *pong;
  int rounds;
  weft_wg wg;
};

static void ponger(void *arg)
{
  struct pingpong *p = arg;
  long v;
  while (weft_chan_recv(p->ping, &v, WEFT_NO_DEADLINE) == 0) {
    v++;
    CHECK_EQ(weft_chan_send(p->pong, &v, WEFT_NO_DEADLINE), 0);
  }
  weft_wg_done(&p->wg);
}

static int pingpong_main(void *arg)
{
  (void)arg;
  struct pingpong p = {.ping = weft_chan_new(sizeof(long), 0),
                       .pong = weft_chan_new(sizeof(long), 0),
                       .rounds = SANITIZED ? 2000 : 20000};
  weft_wg_add(&p.wg, 1);
  weft_go(ponger, &p);
  long v = 0;
  for (int i = 0; i < p.rounds; i++) {
    CHECK_EQ(weft_chan_send(p.ping, &v, WEFT_NO_DEADLINE), 0);
    CHECK_EQ(weft_chan_recv(p.pong, &v, WEFT_NO_DEADLINE), 0);
  }
  CHECK_EQ(v, p.rounds);
  weft_chan_close(p.ping);
  weft_wg_wait(&p.wg);
  weft_chan_release(p.ping);
  weft_chan_release(p.pong);
  return checks_result();
}

static void test_ping_pong(void **state)
{
  (void)state;
  run_weft_p1to4(pingpong_main, NULL);
}

/* A plain thread (not a coroutine) wakes a parked coroutine with try_send and close.
 *
 * The receives carry a distant deadline on purpose: deadlock detection does not know
 * about plain threads, so a coroutine parked with no deadline while only a plain thread
 * can wake it is reported as a deadlock (and the program aborts) as soon as every worker
 * is idle; the deadline's pending timer keeps the detector quiet. */
struct plain {
  weft_chan *ch;
  atomic_int stop;
};

static void *plain_thread(void *arg)
{
  struct plain *p = arg;
  int v = 31337;
  while (weft_chan_try_send(p->ch, &v) == -EAGAIN && !atomic_load(&p->stop))
    sched_yield();
  while (!atomic_load(&p->stop))
    sched_yield();
  weft_chan_close(p->ch); /* wakes main's second receive */
  return NULL;
}

static int plain_thread_main(void *arg)
{
  (void)arg;
  struct plain p = {.ch = weft_chan_new(sizeof(int), 0)};
  pthread_t t;
  if (pthread_create(&t, NULL, plain_thread, &p) != 0)
    return -1;
  int v = 0;
  CHECK_EQ(weft_chan_recv(p.ch, &v, weft_now() + MS(30000)), 0);
  CHECK_EQ(v, 31337);
  atomic_store(&p.stop, 1);
  v = 1;
  CHECK_EQ(weft_chan_recv(p.ch, &v, weft_now() + MS(30000)), -EPIPE);
  CHECK_EQ(v, 0);
  pthread_join(t, NULL); /* it has closed the channel: returns promptly */
  weft_chan_release(p.ch);
  return checks_result();
}

static void test_plain_thread_wakes_coroutine(void **state)
{
  (void)state;
  run_weft_p1to4(plain_thread_main, NULL);
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_new_and_inspect),
      cmocka_unit_test(test_unbuffered_handoff),
      cmocka_unit_test(test_buffered_fifo_len_cap),
      cmocka_unit_test(test_try_ops_never_park),
      cmocka_unit_test(test_try_ops_with_parked_peer),
      cmocka_unit_test(test_parked_receivers_fifo),
      cmocka_unit_test(test_parked_senders_fifo),
      cmocka_unit_test(test_full_buffer_then_parked_senders),
      cmocka_unit_test(test_close_wakes_receivers),
      cmocka_unit_test(test_close_fails_senders),
      cmocka_unit_test(test_send_on_closed),
      cmocka_unit_test(test_close_twice_aborts),
      cmocka_unit_test(test_close_nil_aborts),
      cmocka_unit_test(test_nil_channel_deadline),
      cmocka_unit_test(test_nil_channel_forever_is_deadlock),
      cmocka_unit_test(test_deadlines_full_and_empty),
      cmocka_unit_test(test_deadline_races_lose_nothing),
      cmocka_unit_test(test_odd_element_sizes),
      cmocka_unit_test(test_typed_helpers),
      cmocka_unit_test(test_reference_counting),
      cmocka_unit_test(test_cross_thread_mpmc),
      cmocka_unit_test(test_ping_pong),
      cmocka_unit_test(test_plain_thread_wakes_coroutine),
  };
  const struct child_scenario children[] = {
      {"close_twice", child_close_twice},
      {"close_nil", child_close_nil},
      {"nil_forever", child_nil_forever},
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], children,
                        sizeof children / sizeof children[0]);
}
