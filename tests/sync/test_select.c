/* test_select.c: weft_select: default, random choice among ready cases, send and receive
 * cases, closed and nil channels, deadlines, waking by exactly one case, many selects
 * across threads, the heap path (more than 8 cases) and duplicate channels.
 *
 * Checks inside coroutines use CHECK (record, print, carry on), as in test_chan.c; each
 * scenario returns its failure count. Tests that need a coroutine to be parked before the
 * next step run on P=1, where a coroutine given the thread runs until it parks. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coro_check.h"
#include "weft_test.h"

#define DEADLOCK_MSG "all coroutines are asleep - deadlock!"

/* ---- checks usable in any coroutine ---- */

#define CHECK_IN(x, lo, hi)                                                 \
  do {                                                                      \
    long long x_ = (long long)(x);                                          \
    if (x_ < (lo) || x_ > (hi))                                             \
      check_failed(__FILE__, __LINE__, #x " in [" #lo ", " #hi "]", x_, 0); \
  } while (0)

static void yield_until(atomic_int *n, int want)
{
  while (atomic_load(n) < want)
    weft_yield();
}

static weft_select_case recv_case(weft_chan *ch, void *elem)
{
  return (weft_select_case){.ch = ch, .dir = WEFT_SELECT_RECV, .elem = elem, .result = 99};
}

static weft_select_case send_case(weft_chan *ch, void *elem)
{
  return (weft_select_case){.ch = ch, .dir = WEFT_SELECT_SEND, .elem = elem, .result = 99};
}

/* ---- default: never parks ---- */

static void set_flag(void *arg)
{
  atomic_store((atomic_int *)arg, 1);
}

static int default_main(void *arg)
{
  atomic_int ran = 0;
  (void)arg;
  weft_chan *empty = weft_chan_new(sizeof(int), 2);
  weft_chan *full = weft_chan_new(sizeof(int), 1);
  weft_chan *unbuf = weft_chan_new(sizeof(int), 0);
  int one = 1, in = 7, in2 = 8;
  CHECK_EQ(weft_chan_try_send(full, &one), 0);
  weft_go(set_flag, &ran); /* on P=1 it runs only if main parks or yields */
  for (int i = 0; i < 1000; i++) {
    weft_select_case cs[] = {recv_case(empty, &in),  send_case(full, &one),
                             recv_case(unbuf, &in2), send_case(unbuf, &one),
                             recv_case(NULL, &in),   send_case(NULL, &one)};
    CHECK_EQ(weft_select(cs, 6, WEFT_SELECT_DEFAULT, WEFT_NO_DEADLINE), -EAGAIN);
    CHECK_EQ(weft_select(cs, 6, WEFT_SELECT_DEFAULT, weft_now() + MS(1000)), -EAGAIN);
    CHECK_EQ(weft_select(NULL, 0, WEFT_SELECT_DEFAULT, WEFT_NO_DEADLINE), -EAGAIN);
    CHECK_EQ(in, 7);
    CHECK_EQ(in2, 8);
  }
  CHECK_EQ(atomic_load(&ran), 0);
  CHECK_EQ(weft_chan_len(full), 1);
  CHECK_EQ(weft_chan_len(empty), 0);

  /* A ready case is taken even with the flag. */
  weft_select_case cs[] = {recv_case(empty, &in), recv_case(full, &in)};
  CHECK_EQ(weft_select(cs, 2, WEFT_SELECT_DEFAULT, WEFT_NO_DEADLINE), 1);
  CHECK_EQ(cs[1].result, 0);
  CHECK_EQ(in, 1);
  CHECK_EQ(cs[0].result, 99); /* only the chosen case's result is set */
  CHECK_EQ(atomic_load(&ran), 0);
  while (!atomic_load(&ran))
    weft_yield();
  weft_chan_release(empty);
  weft_chan_release(full);
  weft_chan_release(unbuf);
  return checks_result();
}

static void test_default_never_parks(void **state)
{
  (void)state;
  assert_int_equal(run_weft(1, default_main, NULL), 0);

  /* With the flag, any thread may select: here the test's own, outside the runtime. */
  weft_chan *ch = weft_chan_new(sizeof(int), 1);
  int v = 5, out = 0;
  weft_select_case cs[] = {recv_case(ch, &out), send_case(ch, &v)};
  assert_int_equal(weft_select(cs, 2, WEFT_SELECT_DEFAULT, WEFT_NO_DEADLINE), 1);
  assert_int_equal(weft_select(cs, 2, WEFT_SELECT_DEFAULT, WEFT_NO_DEADLINE), 0);
  assert_int_equal(out, 5);
  weft_select_case none[] = {recv_case(ch, &out)};
  assert_int_equal(weft_select(none, 1, WEFT_SELECT_DEFAULT, WEFT_NO_DEADLINE), -EAGAIN);
  weft_chan_release(ch);
}

/* ---- uniform choice among ready cases ---- */

/* n cases over always-ready channels: receive cases on channels kept full, send cases on
 * channels kept empty (each refilled or drained after it is chosen). Returns the counts. */
static void count_choices(weft_chan **chs, const int *dirs, size_t n, long rounds, long *count)
{
  weft_select_case *cs = calloc(n, sizeof *cs);
  long v = 1, out;
  for (size_t i = 0; i < n; i++)
    cs[i] = dirs[i] == WEFT_SELECT_SEND ? send_case(chs[i], &v) : recv_case(chs[i], &out);
  for (long r = 0; r < rounds; r++) {
    int idx = weft_select(cs, n, 0, WEFT_NO_DEADLINE);
    if (idx < 0 || (size_t)idx >= n) {
      CHECK(0);
      break;
    }
    CHECK_EQ(cs[idx].result, 0);
    count[idx]++;
    if (cs[idx].dir == WEFT_SELECT_SEND)
      CHECK_EQ(weft_chan_try_recv(chs[idx], &out), 0);
    else
      CHECK_EQ(weft_chan_try_send(chs[idx], &v), 0);
  }
  free(cs);
}

static weft_chan *ready_chan(int dir)
{
  weft_chan *ch = weft_chan_new(sizeof(long), 1);
  long v = 1;
  if (dir == WEFT_SELECT_RECV)
    weft_chan_try_send(ch, &v);
  return ch;
}

static int uniform_main(void *arg)
{
  (void)arg;
  /* Two receive cases, 10,000 selects: each chosen 40% to 60% of the time. */
  weft_chan *chs[3] = {ready_chan(WEFT_SELECT_RECV), ready_chan(WEFT_SELECT_RECV),
                       ready_chan(WEFT_SELECT_SEND)};
  int dirs[3] = {WEFT_SELECT_RECV, WEFT_SELECT_RECV, WEFT_SELECT_SEND};
  long count[3] = {0};
  count_choices(chs, dirs, 2, 10000, count);
  CHECK_IN(count[0], 4000, 6000);
  CHECK_IN(count[1], 4000, 6000);
  /* Two receives and a send, 9,000 selects: each about 3,000. */
  long count3[3] = {0};
  count_choices(chs, dirs, 3, 9000, count3);
  for (int i = 0; i < 3; i++)
    CHECK_IN(count3[i], 2400, 3600);
  for (int i = 0; i < 3; i++)
    weft_chan_release(chs[i]);
  return checks_result();
}

static void test_uniform_choice(void **state)
{
  (void)state;
  assert_int_equal(run_weft(1, uniform_main, NULL), 0);
  assert_int_equal(run_weft(4, uniform_main, NULL), 0);
}

/* ---- send and receive cases mixed ---- */

struct mixed {
  weft_chan *a, *b;
  atomic_int parked;
  int idx, result;
  long in, out;
  weft_wg wg;
};

/* Select {receive from a, send out on b}. */
static void mixed_selector(void *arg)
{
  struct mixed *m = arg;
  weft_select_case cs[] = {recv_case(m->a, &m->in), send_case(m->b, &m->out)};
  atomic_store(&m->parked, 1);
  m->idx = weft_select(cs, 2, 0, WEFT_NO_DEADLINE);
  m->result = m->idx >= 0 ? cs[m->idx].result : 0;
  weft_wg_done(&m->wg);
}

static int mixed_main(void *arg)
{
  (void)arg;
  struct mixed m = {.a = weft_chan_new(sizeof(long), 0), .b = weft_chan_new(sizeof(long), 0)};
  long v;
  /* A receiver on b completes the send case; a stays untouched. */
  m.out = 71;
  weft_wg_add(&m.wg, 1);
  weft_go(mixed_selector, &m);
  yield_until(&m.parked, 1);
  CHECK_EQ(weft_chan_recv(m.b, &v, WEFT_NO_DEADLINE), 0);
  CHECK_EQ(v, 71);
  weft_wg_wait(&m.wg);
  CHECK_EQ(m.idx, 1);
  CHECK_EQ(m.result, 0);
  CHECK_EQ(weft_chan_try_send(m.a, &v), -EAGAIN); /* nobody waits on a any more */

  /* A sender on a completes the receive case; the send case is withdrawn: its value
   * never reaches a later receiver on b. */
  atomic_store(&m.parked, 0);
  m.out = 72;
  weft_wg_add(&m.wg, 1);
  weft_go(mixed_selector, &m);
  yield_until(&m.parked, 1);
  v = 55;
  CHECK_EQ(weft_chan_send(m.a, &v, WEFT_NO_DEADLINE), 0);
  weft_wg_wait(&m.wg);
  CHECK_EQ(m.idx, 0);
  CHECK_EQ(m.result, 0);
  CHECK_EQ(m.in, 55);
  CHECK_EQ(weft_chan_recv(m.b, &v, weft_now() + MS(5)), -ETIMEDOUT);
  CHECK_EQ(weft_chan_try_recv(m.b, &v), -EAGAIN);
  weft_chan_release(m.a);
  weft_chan_release(m.b);
  return checks_result();
}

static void test_mixed_send_and_receive(void **state)
{
  (void)state;
  run_weft_p1to4(mixed_main, NULL);
}

/* A select sending meets a select receiving on the same channel. */
struct meet {
  weft_chan *ch;
  weft_chan *nobody_recvs, *nobody_sends; /* extra cases that can never proceed */
  long got;
  int idx_send, idx_recv;
  weft_wg wg;
};

static void meet_sender(void *arg)
{
  struct meet *m = arg;
  for (long i = 1; i <= 500; i++) {
    long v = i;
    weft_select_case cs[] = {send_case(m->nobody_recvs, &v), send_case(m->ch, &v)};
    int idx = weft_select(cs, 2, 0, WEFT_NO_DEADLINE);
    CHECK_EQ(idx, 1);
  }
  weft_wg_done(&m->wg);
}

static void meet_receiver(void *arg)
{
  struct meet *m = arg;
  for (long i = 1; i <= 500; i++) {
    long v = 0, w = 0;
    weft_select_case cs[] = {recv_case(m->nobody_sends, &w), recv_case(m->ch, &v)};
    int idx = weft_select(cs, 2, 0, WEFT_NO_DEADLINE);
    CHECK_EQ(idx, 1);
    CHECK_EQ(v, i);
  }
  weft_wg_done(&m->wg);
}

static int meet_main(void *arg)
{
  (void)arg;
  struct meet m = {.ch = weft_chan_new(sizeof(long), 0),
                   .nobody_recvs = weft_chan_new(sizeof(long), 0),
                   .nobody_sends = weft_chan_new(sizeof(long), 0)};
  weft_wg_add(&m.wg, 2);
  weft_go(meet_receiver, &m);
  weft_go(meet_sender, &m);
  weft_wg_wait(&m.wg);
  long v;
  CHECK_EQ(weft_chan_try_recv(m.nobody_recvs, &v), -EAGAIN);
  CHECK_EQ(weft_chan_try_send(m.nobody_sends, &v), -EAGAIN);
  weft_chan_release(m.ch);
  weft_chan_release(m.nobody_recvs);
  weft_chan_release(m.nobody_sends);
  return checks_result();
}

static void test_select_meets_select(void **state)
{
  (void)state;
  run_weft_p1to4(meet_main, NULL);
}

/* ---- closed channels ---- */

struct closed_wait {
  weft_chan *ch, *idle;
  atomic_int parked;
  int idx, result;
  long elem;
  int dir;
  weft_wg wg;
};

static void closed_waiter(void *arg)
{
  struct closed_wait *c = arg;
  long idle_in;
  c->elem = 0x7777;
  weft_select_case cs[] = {recv_case(c->idle, &idle_in), c->dir == WEFT_SELECT_RECV
                                                             ? recv_case(c->ch, &c->elem)
                                                             : send_case(c->ch, &c->elem)};
  atomic_store(&c->parked, 1);
  c->idx = weft_select(cs, 2, 0, WEFT_NO_DEADLINE);
  c->result = c->idx >= 0 ? cs[c->idx].result : 0;
  weft_wg_done(&c->wg);
}

static int closed_main(void *arg)
{
  (void)arg;
  weft_chan *closed = weft_chan_new(sizeof(long), 2);
  weft_chan *empty = weft_chan_new(sizeof(long), 0);
  long v = 10;
  CHECK_EQ(weft_chan_try_send(closed, &v), 0);
  v = 11;
  CHECK_EQ(weft_chan_try_send(closed, &v), 0);
  weft_chan_close(closed);

  /* Buffered values first, with result 0; then -EPIPE and a zeroed element, every time. */
  for (int i = 0; i < 100; i++) {
    long in = 0x5555, in2 = 0x6666;
    weft_select_case cs[] = {recv_case(empty, &in2), recv_case(closed, &in)};
    CHECK_EQ(weft_select(cs, 2, 0, WEFT_NO_DEADLINE), 1);
    CHECK_EQ(cs[1].result, i < 2 ? 0 : -EPIPE);
    CHECK_EQ(in, i < 2 ? 10 + i : 0);
    CHECK_EQ(in2, 0x6666);
  }
  /* A closed channel is ready: with the default flag it is chosen, not -EAGAIN. */
  long in3 = 9;
  weft_select_case with_default[] = {recv_case(empty, NULL), recv_case(closed, &in3)};
  CHECK_EQ(weft_select(with_default, 2, WEFT_SELECT_DEFAULT, WEFT_NO_DEADLINE), 1);
  CHECK_EQ(with_default[1].result, -EPIPE);
  CHECK_EQ(in3, 0);
  /* A send case on a closed channel is ready, and fails with -EPIPE. */
  weft_select_case cs[] = {recv_case(empty, NULL), send_case(closed, &v)};
  CHECK_EQ(weft_select(cs, 2, 0, WEFT_NO_DEADLINE), 1);
  CHECK_EQ(cs[1].result, -EPIPE);
  CHECK_EQ(weft_chan_len(closed), 0);
  weft_chan_release(closed);

  /* A parked select is woken by close: receive case (zeroed element) and send case. */
  for (int dir = WEFT_SELECT_RECV; dir <= WEFT_SELECT_SEND; dir++) {
    struct closed_wait c = {.ch = weft_chan_new(sizeof(long), 0), .idle = empty, .dir = dir};
    weft_wg_add(&c.wg, 1);
    weft_go(closed_waiter, &c);
    yield_until(&c.parked, 1);
    if (weft_procs() > 1)
      weft_sleep(MS(2)); /* probably parked; either way the outcome is the same */
    weft_chan_close(c.ch);
    weft_wg_wait(&c.wg);
    CHECK_EQ(c.idx, 1);
    CHECK_EQ(c.result, -EPIPE);
    CHECK_EQ(c.elem, dir == WEFT_SELECT_RECV ? 0 : 0x7777);
    weft_chan_release(c.ch);
  }
  CHECK_EQ(weft_chan_try_send(empty, &v), -EAGAIN); /* no stale waiter left on it */
  weft_chan_release(empty);
  return checks_result();
}

static void test_closed_channel_cases(void **state)
{
  (void)state;
  run_weft_p1to4(closed_main, NULL);
}

/* ---- nil channels ---- */

static int nil_cases_main(void *arg)
{
  (void)arg;
  weft_chan *ready = weft_chan_new(sizeof(long), 1);
  long v = 3, in = 0;
  CHECK_EQ(weft_chan_try_send(ready, &v), 0);
  for (int i = 0; i < 1000; i++) {
    weft_select_case cs[] = {recv_case(NULL, &in), send_case(NULL, &v), recv_case(ready, &in),
                             recv_case(NULL, &in), send_case(NULL, &v)};
    CHECK_EQ(weft_select(cs, 5, 0, WEFT_NO_DEADLINE), 2);
    CHECK_EQ(in, 3);
    CHECK_EQ(weft_chan_try_send(ready, &v), 0);
  }
  weft_chan_release(ready);

  weft_select_case nils[] = {recv_case(NULL, &in), send_case(NULL, &v)};
  CHECK_EQ(weft_select(nils, 2, WEFT_SELECT_DEFAULT, WEFT_NO_DEADLINE), -EAGAIN);
  int64_t deadline = weft_now() + MS(20);
  CHECK_EQ(weft_select(nils, 2, 0, deadline), -ETIMEDOUT);
  CHECK(weft_now() >= deadline);
  deadline = weft_now() + MS(10);
  CHECK_EQ(weft_select(NULL, 0, 0, deadline), -ETIMEDOUT);
  CHECK(weft_now() >= deadline);
  CHECK_EQ(weft_select(nils, 2, 0, weft_now() - 1), -ETIMEDOUT);
  return checks_result();
}

static void test_nil_cases_never_chosen(void **state)
{
  (void)state;
  run_weft_p1to4(nil_cases_main, NULL);
}

static int nil_forever_main(void *arg)
{
  long in;
  weft_select_case cs[] = {recv_case(NULL, &in), send_case(NULL, &in)};
  weft_select(cs, arg ? 2 : 0, 0, WEFT_NO_DEADLINE);
  return 0;
}

static void child_select_nil_forever(void)
{
  run_weft(2, nil_forever_main, (void *)1);
  fprintf(stderr, "child: select over nil channels returned\n");
  exit(0);
}

static void child_select_empty_forever(void)
{
  run_weft(1, nil_forever_main, NULL);
  fprintf(stderr, "child: empty select returned\n");
  exit(0);
}

static void test_nil_select_forever_is_deadlock(void **state)
{
  (void)state;
  expect_child("select_nil_forever", DEADLOCK_MSG, 30);
  expect_child("select_empty_forever", DEADLOCK_MSG, 30);
}

/* ---- deadlines ---- */

static int deadline_main(void *arg)
{
  (void)arg;
  weft_chan *unbuf = weft_chan_new(sizeof(long), 0);
  weft_chan *full = weft_chan_new(sizeof(long), 1);
  weft_chan *empty = weft_chan_new(sizeof(long), 1);
  long one = 1, mine = 999, in = 5, in2 = 6;
  CHECK_EQ(weft_chan_try_send(full, &one), 0);
  weft_select_case cs[] = {recv_case(unbuf, &in), send_case(full, &mine),
                           recv_case(empty, &in2), send_case(unbuf, &mine)};
  int64_t deadline = weft_now() + MS(20);
  CHECK_EQ(weft_select(cs, 4, 0, deadline), -ETIMEDOUT);
  CHECK(weft_now() >= deadline);
  CHECK_EQ(in, 5);
  CHECK_EQ(in2, 6);
  /* Every waiter left its queue: nothing of the select's is found or consumed. */
  long v = 2;
  CHECK_EQ(weft_chan_try_send(unbuf, &v), -EAGAIN);
  CHECK_EQ(weft_chan_try_recv(unbuf, &v), -EAGAIN);
  CHECK_EQ(weft_chan_try_send(empty, &v), 0);
  CHECK_EQ(weft_chan_len(empty), 1);
  CHECK_EQ(weft_chan_try_recv(full, &v), 0);
  CHECK_EQ(v, 1);
  CHECK_EQ(weft_chan_try_recv(full, &v), -EAGAIN); /* 999 was never sent */

  /* A deadline already past does not stop a ready case; with none ready, -ETIMEDOUT. */
  weft_select_case ready[] = {recv_case(unbuf, &in), recv_case(empty, &in)};
  CHECK_EQ(weft_select(ready, 2, 0, weft_now() - 1), 1);
  CHECK_EQ(in, 2);
  CHECK_EQ(weft_select(ready, 2, 0, 0), -ETIMEDOUT);
  weft_chan_release(unbuf);
  weft_chan_release(full);
  weft_chan_release(empty);
  return checks_result();
}

static void test_deadline(void **state)
{
  (void)state;
  run_weft_p1to4(deadline_main, NULL);
}

/* ---- a parked select is woken by exactly one case ---- */

struct one_of {
  weft_chan *a, *b, *c;
  atomic_int parked;
  int idx;
  long in;
  weft_wg wg;
};

static void one_of_selector(void *arg)
{
  struct one_of *o = arg;
  weft_select_case cs[] = {recv_case(o->a, &o->in), recv_case(o->b, &o->in),
                           recv_case(o->c, &o->in)};
  atomic_store(&o->parked, 1);
  o->idx = weft_select(cs, 3, 0, WEFT_NO_DEADLINE);
  weft_wg_done(&o->wg);
}

static int one_of_main(void *arg)
{
  (void)arg;
  struct one_of o = {.a = weft_chan_new(sizeof(long), 0),
                     .b = weft_chan_new(sizeof(long), 0),
                     .c = weft_chan_new(sizeof(long), 1)};
  weft_wg_add(&o.wg, 1);
  weft_go(one_of_selector, &o);
  yield_until(&o.parked, 1); /* P=1: parked on all three */
  long v = 1;
  CHECK_EQ(weft_chan_try_send(o.a, &v), 0);
  /* The select is done (not yet resumed): its waiters on b and c take nothing. */
  v = 2;
  CHECK_EQ(weft_chan_try_send(o.b, &v), -EAGAIN);
  v = 3;
  CHECK_EQ(weft_chan_try_send(o.c, &v), 0);
  CHECK_EQ(weft_chan_len(o.c), 1);
  weft_wg_wait(&o.wg);
  CHECK_EQ(o.idx, 0);
  CHECK_EQ(o.in, 1);
  CHECK_EQ(weft_chan_try_send(o.b, &v), -EAGAIN); /* and after it returned */
  CHECK_EQ(weft_chan_len(o.c), 1);
  CHECK_EQ(weft_chan_try_recv(o.c, &v), 0);
  CHECK_EQ(v, 3);
  weft_chan_release(o.a);
  weft_chan_release(o.b);
  weft_chan_release(o.c);
  return checks_result();
}

static void test_woken_by_exactly_one(void **state)
{
  (void)state;
  assert_int_equal(run_weft(1, one_of_main, NULL), 0);
}

/* Plain receivers and selects parked on one channel are served in the order they
 * parked (P=1). */
struct mixed_fifo {
  weft_chan *ch, *idle;
  atomic_int parked;
  long got[4];
  weft_wg wg;
};

struct mixed_fifo_arg {
  struct mixed_fifo *m;
  int i;
};

static void fifo_plain(void *arg)
{
  struct mixed_fifo_arg *a = arg;
  atomic_fetch_add(&a->m->parked, 1);
  CHECK_EQ(weft_chan_recv(a->m->ch, &a->m->got[a->i], WEFT_NO_DEADLINE), 0);
  weft_wg_done(&a->m->wg);
}

static void fifo_select(void *arg)
{
  struct mixed_fifo_arg *a = arg;
  long other;
  weft_select_case cs[] = {recv_case(a->m->idle, &other),
                           recv_case(a->m->ch, &a->m->got[a->i])};
  atomic_fetch_add(&a->m->parked, 1);
  CHECK_EQ(weft_select(cs, 2, 0, WEFT_NO_DEADLINE), 1);
  weft_wg_done(&a->m->wg);
}

static int mixed_fifo_main(void *arg)
{
  (void)arg;
  struct mixed_fifo m = {.ch = weft_chan_new(sizeof(long), 0),
                         .idle = weft_chan_new(sizeof(long), 0)};
  struct mixed_fifo_arg args[4];
  weft_wg_add(&m.wg, 4);
  for (int i = 0; i < 4; i++) {
    args[i] = (struct mixed_fifo_arg){&m, i};
    weft_go(i % 2 ? fifo_select : fifo_plain, &args[i]);
    yield_until(&m.parked, i + 1);
  }
  for (long v = 0; v < 4; v++)
    CHECK_EQ(weft_chan_send(m.ch, &v, WEFT_NO_DEADLINE), 0);
  weft_wg_wait(&m.wg);
  for (int i = 0; i < 4; i++)
    CHECK_EQ(m.got[i], i);
  CHECK_EQ(weft_chan_try_send(m.idle, &m.got[0]), -EAGAIN); /* the selects left idle */
  weft_chan_release(m.ch);
  weft_chan_release(m.idle);
  return checks_result();
}

static void test_select_waiters_fifo(void **state)
{
  (void)state;
  assert_int_equal(run_weft(1, mixed_fifo_main, NULL), 0);
}

/* Two senders race to complete one parked select: exactly one wins each round. */
struct duel {
  weft_chan *ch[2];
  atomic_int round_done; /* the last round whose select returned */
  atomic_int wins;
  int idx;
  long in;
  weft_wg wg;
};

struct duelist {
  struct duel *d;
  int which;
  int round;
};

static void duel_selector(void *arg)
{
  struct duelist *a = arg;
  struct duel *d = a->d;
  weft_select_case cs[] = {recv_case(d->ch[0], &d->in), recv_case(d->ch[1], &d->in)};
  d->idx = weft_select(cs, 2, 0, WEFT_NO_DEADLINE);
  atomic_store(&d->round_done, a->round);
  weft_wg_done(&d->wg);
}

static void duel_sender(void *arg)
{
  struct duelist *a = arg;
  struct duel *d = a->d;
  long v = a->round * 2 + a->which;
  for (;;) {
    int rc = weft_chan_try_send(d->ch[a->which], &v);
    if (rc == 0) {
      atomic_fetch_add(&d->wins, 1);
      break;
    }
    if (atomic_load(&d->round_done) == a->round)
      break;
    weft_yield();
  }
  weft_wg_done(&d->wg);
}

static int duel_main(void *arg)
{
  (void)arg;
  struct duel d = {.ch = {weft_chan_new(sizeof(long), 0), weft_chan_new(sizeof(long), 0)},
                   .round_done = -1};
  int rounds = SANITIZED ? 100 : 500;
  for (int r = 0; r < rounds; r++) {
    struct duelist args[3] = {{&d, 0, r}, {&d, 0, r}, {&d, 1, r}};
    atomic_store(&d.wins, 0);
    weft_wg_add(&d.wg, 3);
    weft_go(duel_selector, &args[0]);
    weft_go(duel_sender, &args[1]);
    weft_go(duel_sender, &args[2]);
    weft_wg_wait(&d.wg);
    CHECK_EQ(atomic_load(&d.wins), 1);
    CHECK(d.idx == 0 || d.idx == 1);
    CHECK_EQ(d.in, r * 2 + d.idx);
  }
  weft_chan_release(d.ch[0]);
  weft_chan_release(d.ch[1]);
  return checks_result();
}

static void test_racing_wakers_one_wins(void **state)
{
  (void)state;
  run_weft_p1to4(duel_main, NULL);
}

/* ---- many selects and senders across threads ---- */

#define MS_CHANS 4

struct many {
  weft_chan *ch[MS_CHANS];
  int producers, per_producer;
  atomic_uchar *seen;
  atomic_long dup, bad, timeouts;
  atomic_int next_producer;
  weft_wg prod, cons;
};

/* Sends its values through selects over a random subset of send cases (the others nil). */
static void many_producer(void *arg)
{
  struct many *m = arg;
  int id = atomic_fetch_add(&m->next_producer, 1);
  uint64_t rng = test_seed() + (uint64_t)id * 0x9e3779b97f4a7c15ull;
  for (long i = 0; i < m->per_producer; i++) {
    long v = (long)id * m->per_producer + i;
    weft_select_case cs[MS_CHANS];
    unsigned mask = 0;
    while (!mask)
      mask = (unsigned)(test_rand(&rng) % (1u << MS_CHANS));
    for (int k = 0; k < MS_CHANS; k++)
      cs[k] = send_case(mask & (1u << k) ? m->ch[k] : NULL, &v);
    int idx = weft_select(cs, MS_CHANS, 0, WEFT_NO_DEADLINE);
    CHECK(idx >= 0 && (mask & (1u << idx)));
    if (idx >= 0)
      CHECK_EQ(cs[idx].result, 0);
  }
  weft_wg_done(&m->prod);
}

/* Receives through selects over every channel not yet closed, half of them with a short
 * deadline, until all are closed. */
static void many_consumer(void *arg)
{
  struct many *m = arg;
  long total = (long)m->producers * m->per_producer;
  weft_select_case cs[MS_CHANS];
  long in;
  int open = MS_CHANS;
  for (int k = 0; k < MS_CHANS; k++)
    cs[k] = recv_case(m->ch[k], &in);
  for (unsigned n = 0; open > 0; n++) {
    int64_t deadline = n % 2 ? weft_now() + 200000 : WEFT_NO_DEADLINE;
    int idx = weft_select(cs, MS_CHANS, 0, deadline);
    if (idx == -ETIMEDOUT) {
      atomic_fetch_add(&m->timeouts, 1);
      continue;
    }
    if (idx < 0 || idx >= MS_CHANS || !cs[idx].ch) {
      atomic_fetch_add(&m->bad, 1);
      break;
    }
    if (cs[idx].result == -EPIPE) {
      cs[idx].ch = NULL; /* closed: switch the case off */
      open--;
      continue;
    }
    if (in < 0 || in >= total)
      atomic_fetch_add(&m->bad, 1);
    else if (atomic_fetch_add(&m->seen[in], 1) != 0)
      atomic_fetch_add(&m->dup, 1);
  }
  weft_wg_done(&m->cons);
}

static int many_main(void *arg)
{
  (void)arg;
  struct many m = {.producers = 8, .per_producer = SANITIZED ? 500 : 5000};
  size_t caps[MS_CHANS] = {0, 0, 1, 8};
  for (int k = 0; k < MS_CHANS; k++)
    m.ch[k] = weft_chan_new(sizeof(long), caps[k]);
  long total = (long)m.producers * m.per_producer;
  m.seen = calloc((size_t)total, sizeof *m.seen);
  int consumers = 6;
  weft_wg_add(&m.cons, consumers);
  for (int i = 0; i < consumers; i++)
    weft_go(many_consumer, &m);
  weft_wg_add(&m.prod, m.producers);
  for (int i = 0; i < m.producers; i++)
    weft_go(many_producer, &m);
  weft_wg_wait(&m.prod);
  for (int k = 0; k < MS_CHANS; k++)
    weft_chan_close(m.ch[k]);
  weft_wg_wait(&m.cons);
  CHECK_EQ(atomic_load(&m.dup), 0);
  CHECK_EQ(atomic_load(&m.bad), 0);
  long missing = 0;
  for (long i = 0; i < total; i++)
    missing += atomic_load(&m.seen[i]) != 1;
  CHECK_EQ(missing, 0);
  for (int k = 0; k < MS_CHANS; k++) {
    CHECK_EQ(weft_chan_len(m.ch[k]), 0);
    weft_chan_release(m.ch[k]);
  }
  free(m.seen);
  return checks_result();
}

static void test_many_selects_across_threads(void **state)
{
  (void)state;
  run_weft_p1to4(many_main, NULL);
}

/* ---- more than 8 cases: the heap path ---- */

#define BIG 20

struct big {
  weft_chan *ch[BIG];
  atomic_int parked;
  int idx;
  long in;
  weft_wg wg;
};

static void big_selector(void *arg)
{
  struct big *b = arg;
  weft_select_case cs[BIG];
  for (int i = 0; i < BIG; i++)
    cs[i] = recv_case(b->ch[i], &b->in);
  atomic_store(&b->parked, 1);
  b->idx = weft_select(cs, BIG, 0, WEFT_NO_DEADLINE);
  weft_wg_done(&b->wg);
}

static int big_main(void *arg)
{
  (void)arg;
  struct big b = {0};
  for (int i = 0; i < BIG; i++)
    b.ch[i] = weft_chan_new(sizeof(long), 0);
  weft_wg_add(&b.wg, 1);
  weft_go(big_selector, &b);
  yield_until(&b.parked, 1);
  long v = 1717;
  while (weft_chan_try_send(b.ch[17], &v) == -EAGAIN) /* P>1: until it is parked */
    weft_yield();
  for (int i = 0; i < BIG; i++)
    CHECK_EQ(weft_chan_try_send(b.ch[i], &v), -EAGAIN);
  weft_wg_wait(&b.wg);
  CHECK_EQ(b.idx, 17);
  CHECK_EQ(b.in, 1717);
  for (int i = 0; i < BIG; i++)
    CHECK_EQ(weft_chan_try_send(b.ch[i], &v), -EAGAIN); /* every waiter removed */
  for (int i = 0; i < BIG; i++)
    weft_chan_release(b.ch[i]);

  /* Uniform over 20 ready cases: 20,000 selects, each chosen about 1,000 times. */
  weft_chan *chs[BIG];
  int dirs[BIG];
  long count[BIG] = {0};
  for (int i = 0; i < BIG; i++) {
    dirs[i] = i % 3 ? WEFT_SELECT_RECV : WEFT_SELECT_SEND;
    chs[i] = ready_chan(dirs[i]);
  }
  count_choices(chs, dirs, BIG, 20000, count);
  for (int i = 0; i < BIG; i++) {
    CHECK_IN(count[i], 700, 1300);
    weft_chan_release(chs[i]);
  }

  /* Deadline on the heap path: every waiter is removed afterwards. */
  weft_chan *many[BIG];
  weft_select_case cs[BIG];
  long in;
  for (int i = 0; i < BIG; i++) {
    many[i] = weft_chan_new(sizeof(long), 0);
    cs[i] = i % 2 ? recv_case(many[i], &in) : send_case(many[i], &v);
  }
  CHECK_EQ(weft_select(cs, BIG, 0, weft_now() + MS(5)), -ETIMEDOUT);
  for (int i = 0; i < BIG; i++) {
    CHECK_EQ(weft_chan_try_send(many[i], &v), -EAGAIN);
    CHECK_EQ(weft_chan_try_recv(many[i], &in), -EAGAIN);
    weft_chan_release(many[i]);
  }
  return checks_result();
}

static void test_more_than_eight_cases(void **state)
{
  (void)state;
  run_weft_p1to4(big_main, NULL);
}

static int bad_args_main(void *arg)
{
  (void)arg;
  weft_chan *ch = weft_chan_new(sizeof(long), 1);
  long v = 1;
  weft_select_case bad[] = {recv_case(ch, &v), recv_case(ch, &v)};
  bad[1].dir = (enum weft_select_dir)7;
  CHECK_EQ(weft_select(bad, 2, 0, WEFT_NO_DEADLINE), -EINVAL);
  CHECK_EQ(weft_select(bad, 2, WEFT_SELECT_DEFAULT, WEFT_NO_DEADLINE), -EINVAL);
  CHECK_EQ(weft_select(NULL, 1, 0, WEFT_NO_DEADLINE), -EINVAL);
  /* A send case needs a value, even on a nil channel; nothing is sent. */
  weft_select_case no_value[] = {recv_case(NULL, &v), send_case(ch, NULL)};
  CHECK_EQ(weft_select(no_value, 2, WEFT_SELECT_DEFAULT, WEFT_NO_DEADLINE), -EINVAL);
  no_value[1].ch = NULL;
  CHECK_EQ(weft_select(no_value, 2, 0, weft_now() + MS(1)), -EINVAL);
  CHECK_EQ(weft_chan_len(ch), 0);
  CHECK_EQ(weft_select(bad, 65537, WEFT_SELECT_DEFAULT, WEFT_NO_DEADLINE), -EINVAL);

  /* The largest select: 65,536 cases, all on one channel (deduplicated locks). */
  size_t n = 65536;
  weft_select_case *cs = calloc(n, sizeof *cs);
  for (size_t i = 0; i < n; i++)
    cs[i] = i % 2 ? recv_case(ch, &v) : recv_case(NULL, &v);
  CHECK_EQ(weft_select(cs, n, WEFT_SELECT_DEFAULT, WEFT_NO_DEADLINE), -EAGAIN);
  v = 42;
  CHECK_EQ(weft_chan_try_send(ch, &v), 0);
  v = 0;
  int idx = weft_select(cs, n, 0, WEFT_NO_DEADLINE);
  CHECK(idx > 0 && idx % 2 == 1);
  CHECK_EQ(v, 42);
  free(cs);
  weft_chan_release(ch);
  return checks_result();
}

static void test_bad_arguments_and_largest(void **state)
{
  (void)state;
  assert_int_equal(run_weft(1, bad_args_main, NULL), 0);
}

/* ---- duplicate channels ---- */

struct dup {
  weft_chan *u;
  atomic_int parked;
  int idx, result;
  long in, out;
  weft_wg wg;
};

/* Select {receive u, receive u, send u}: three cases on one unbuffered channel. */
static void dup_selector(void *arg)
{
  struct dup *d = arg;
  weft_select_case cs[] = {recv_case(d->u, &d->in), recv_case(d->u, &d->in),
                           send_case(d->u, &d->out)};
  atomic_store(&d->parked, 1);
  d->idx = weft_select(cs, 3, 0, WEFT_NO_DEADLINE);
  d->result = d->idx >= 0 ? cs[d->idx].result : 0;
  weft_wg_done(&d->wg);
}

static int dup_main(void *arg)
{
  (void)arg;
  /* Uniform among duplicates of one ready channel. */
  weft_chan *a = ready_chan(WEFT_SELECT_RECV);
  weft_chan *chs[3] = {a, a, a};
  int dirs[3] = {WEFT_SELECT_RECV, WEFT_SELECT_RECV, WEFT_SELECT_RECV};
  long count[3] = {0};
  count_choices(chs, dirs, 3, 9000, count);
  for (int i = 0; i < 3; i++)
    CHECK_IN(count[i], 2400, 3600);
  weft_chan_release(a);

  /* A select never matches itself: send and receive on one unbuffered channel time out. */
  weft_chan *u = weft_chan_new(sizeof(long), 0);
  long in = 0, out = 9;
  weft_select_case self[] = {send_case(u, &out), recv_case(u, &in)};
  int64_t deadline = weft_now() + MS(10);
  CHECK_EQ(weft_select(self, 2, 0, deadline), -ETIMEDOUT);
  CHECK(weft_now() >= deadline);
  CHECK_EQ(weft_chan_try_send(u, &out), -EAGAIN);
  CHECK_EQ(weft_chan_try_recv(u, &in), -EAGAIN);

  /* Parked on u three times: a sender completes one receive case, once; the other
   * waiters (same wait set) are skipped. */
  struct dup d = {.u = u, .out = 33};
  weft_wg_add(&d.wg, 1);
  weft_go(dup_selector, &d);
  yield_until(&d.parked, 1);
  long v = 44;
  while (weft_chan_try_send(u, &v) == -EAGAIN)
    weft_yield();
  CHECK_EQ(weft_chan_try_send(u, &v), -EAGAIN);
  weft_wg_wait(&d.wg);
  CHECK(d.idx == 0 || d.idx == 1);
  CHECK_EQ(d.in, 44);
  CHECK_EQ(weft_chan_try_recv(u, &v), -EAGAIN); /* the send case was withdrawn */

  /* And a receiver completes the send case. */
  atomic_store(&d.parked, 0);
  weft_wg_add(&d.wg, 1);
  weft_go(dup_selector, &d);
  yield_until(&d.parked, 1);
  v = 0;
  while (weft_chan_try_recv(u, &v) == -EAGAIN)
    weft_yield();
  CHECK_EQ(v, 33);
  weft_wg_wait(&d.wg);
  CHECK_EQ(d.idx, 2);
  CHECK_EQ(d.result, 0);
  weft_chan_release(u);

  /* Send and receive cases on one buffered channel with room and data: both ready. */
  weft_chan *bch = weft_chan_new(sizeof(long), 4);
  v = 1;
  CHECK_EQ(weft_chan_try_send(bch, &v), 0);
  CHECK_EQ(weft_chan_try_send(bch, &v), 0);
  long seen[2] = {0};
  for (int i = 0; i < 1000; i++) {
    weft_select_case both[] = {send_case(bch, &v), recv_case(bch, &in)};
    int idx = weft_select(both, 2, 0, WEFT_NO_DEADLINE);
    CHECK(idx == 0 || idx == 1);
    if (idx == 0 || idx == 1)
      seen[idx]++;
    /* back to two buffered values */
    if (idx == 0)
      CHECK_EQ(weft_chan_try_recv(bch, &in), 0);
    else
      CHECK_EQ(weft_chan_try_send(bch, &v), 0);
    CHECK_EQ(weft_chan_len(bch), 2);
  }
  CHECK_IN(seen[0], 350, 650);
  weft_chan_release(bch);
  return checks_result();
}

static void test_duplicate_channels(void **state)
{
  (void)state;
  assert_int_equal(run_weft(1, dup_main, NULL), 0);
  assert_int_equal(run_weft(3, dup_main, NULL), 0);
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_default_never_parks),
      cmocka_unit_test(test_uniform_choice),
      cmocka_unit_test(test_mixed_send_and_receive),
      cmocka_unit_test(test_select_meets_select),
      cmocka_unit_test(test_closed_channel_cases),
      cmocka_unit_test(test_nil_cases_never_chosen),
      cmocka_unit_test(test_nil_select_forever_is_deadlock),
      cmocka_unit_test(test_deadline),
      cmocka_unit_test(test_woken_by_exactly_one),
      cmocka_unit_test(test_select_waiters_fifo),
      cmocka_unit_test(test_racing_wakers_one_wins),
      cmocka_unit_test(test_many_selects_across_threads),
      cmocka_unit_test(test_more_than_eight_cases),
      cmocka_unit_test(test_bad_arguments_and_largest),
      cmocka_unit_test(test_duplicate_channels),
  };
  const struct child_scenario children[] = {
      {"select_nil_forever", child_select_nil_forever},
      {"select_empty_forever", child_select_empty_forever},
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], children,
                        sizeof children / sizeof children[0]);
}
