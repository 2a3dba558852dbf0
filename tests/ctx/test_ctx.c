/* test_ctx.c: every rule of weft/ctx.h and of the context table in REFERENCE.md:
 * background; cancel (idempotent, concurrent); propagation down deep and wide trees and
 * never up; a done parent at creation; causes; deadlines; values and without-cancel; the
 * done channel in a select; weft_ctx_wait; after-func and its stop; flat memory over a
 * million short-lived children of one parent; and cancellation racing with completion,
 * creation and release on P = 1..4. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctx_check.h"
#include "weft/ctx.h"

#if SANITIZED
/* From the sanitizers' allocator interface (its header ships with clang, not gcc). */
size_t __sanitizer_get_current_allocated_bytes(void);
#endif

/* ---- background ---- */

static int k_a, k_b, k_c; /* value keys: compared by address */

static void never_called(void *arg)
{
  (void)arg;
  CHECK(!"after-func ran on a context that can never be done");
}

static int background_main(void *arg)
{
  (void)arg;
  weft_ctx *b = weft_ctx_background();
  CHECK(b != NULL);
  CHECK(weft_ctx_background() == b);
  weft_ctx_cancel(b);
  weft_ctx_cancel_cause(b, -EIO);
  CHECK_EQ(weft_ctx_err(b), 0);
  CHECK_EQ(weft_ctx_cause(b), 0);
  CHECK(weft_ctx_deadline(b) == WEFT_NO_DEADLINE);
  CHECK(weft_ctx_done(b) == NULL);
  CHECK(weft_ctx_value(b, &k_a) == NULL);
  CHECK(weft_ctx_retain(b) == b);
  weft_ctx_release(b);
  weft_ctx_release(b);
  weft_ctx_release(b); /* static: more releases than retains change nothing */
  CHECK(weft_ctx_after_func(b, never_called, NULL) == NULL);
  int64_t t0 = weft_now();
  CHECK_EQ(weft_ctx_wait(b, t0 + MS(5)), -ETIMEDOUT);
  CHECK(weft_now() - t0 >= MS(5));
  /* NULL parents mean background. */
  weft_ctx *c = weft_ctx_with_cancel(NULL);
  CHECK_EQ(weft_ctx_err(c), 0);
  CHECK(weft_ctx_deadline(c) == WEFT_NO_DEADLINE);
  weft_ctx_release(c);
  /* NULL contexts answer like background. */
  CHECK_EQ(weft_ctx_err(NULL), 0);
  CHECK_EQ(weft_ctx_cause(NULL), 0);
  CHECK(weft_ctx_done(NULL) == NULL);
  CHECK(weft_ctx_deadline(NULL) == WEFT_NO_DEADLINE);
  weft_ctx_cancel(NULL);
  weft_ctx_release(NULL);
  return 0;
}

static void test_background(void **state)
{
  (void)state;
  run_checked(1, background_main, NULL);
}

/* ---- cancel: idempotent ---- */

static int cancel_idempotent_main(void *arg)
{
  (void)arg;
  weft_ctx *c = weft_ctx_with_cancel(NULL);
  weft_chan *done = weft_ctx_done(c);
  CHECK(done != NULL);
  CHECK(!weft_chan_is_closed(done));
  CHECK_EQ(weft_chan_try_recv(done, NULL), -EAGAIN);
  CHECK_EQ(weft_ctx_err(c), 0);
  CHECK_EQ(weft_ctx_cause(c), 0);
  weft_ctx_cancel(c);
  CHECK_EQ(weft_ctx_err(c), -ECANCELED);
  CHECK_EQ(weft_ctx_cause(c), -ECANCELED);
  CHECK(weft_chan_is_closed(done));
  CHECK_EQ(weft_chan_try_recv(done, NULL), -EPIPE);
  weft_ctx_cancel(c); /* a second close of done would abort */
  weft_ctx_cancel_cause(c, -EIO);
  CHECK_EQ(weft_ctx_err(c), -ECANCELED);
  CHECK_EQ(weft_ctx_cause(c), -ECANCELED);
  CHECK(weft_ctx_done(c) == done);
  weft_ctx_release(c);

  /* done asked for only after the cancel: already closed. */
  c = weft_ctx_with_cancel(NULL);
  weft_ctx_cancel(c);
  CHECK(weft_chan_is_closed(weft_ctx_done(c)));
  weft_ctx_release(c);

  /* Only cancel nodes can be cancelled: on a value or without-cancel node it is a no-op. */
  weft_ctx *p = weft_ctx_with_cancel(NULL);
  weft_ctx *v = weft_ctx_with_value(p, &k_a, &k_a);
  weft_ctx *w = weft_ctx_without_cancel(p);
  weft_ctx_cancel(v);
  weft_ctx_cancel_cause(w, -EIO);
  CHECK_EQ(weft_ctx_err(p), 0);
  CHECK_EQ(weft_ctx_err(v), 0);
  weft_ctx_release(w);
  weft_ctx_release(v);
  weft_ctx_release(p);
  return 0;
}

static void test_cancel_idempotent(void **state)
{
  (void)state;
  run_checked(1, cancel_idempotent_main, NULL);
}

/* ---- cancel: concurrent ---- */

#define RACERS 16

struct concurrent {
  weft_ctx *root;
  weft_ctx *kids[RACERS];
  atomic_int go, ran;
  weft_wg wg, after_wg;
};

static void concurrent_after(void *arg)
{
  struct concurrent *s = arg;
  atomic_fetch_add(&s->ran, 1);
  weft_wg_done(&s->after_wg);
}

static void concurrent_racer(void *arg)
{
  struct concurrent *s = arg;
  static atomic_int next;
  int i = atomic_fetch_add(&next, 1) % RACERS;
  while (!atomic_load(&s->go))
    weft_yield();
  weft_ctx_cancel_cause(s->root, -(1000 + i));
  CHECK_EQ(weft_ctx_err(s->root), -ECANCELED);
  CHECK(weft_ctx_cause(s->root) <= -1000 && weft_ctx_cause(s->root) > -1000 - RACERS);
  weft_wg_done(&s->wg);
}

static int concurrent_cancel_main(void *arg)
{
  (void)arg;
  struct concurrent s = {.root = weft_ctx_with_cancel(NULL)};
  for (int i = 0; i < RACERS; i++)
    s.kids[i] = weft_ctx_with_cancel(s.root);
  weft_wg_add(&s.after_wg, 1);
  weft_ctx_stop *stop = weft_ctx_after_func(s.root, concurrent_after, &s);
  weft_wg_add(&s.wg, RACERS);
  for (int i = 0; i < RACERS; i++)
    CHECK_EQ(weft_go(concurrent_racer, &s), 0);
  weft_sleep(MS(1));
  atomic_store(&s.go, 1);
  weft_wg_wait(&s.wg);
  weft_wg_wait(&s.after_wg);
  CHECK_EQ(atomic_load(&s.ran), 1); /* after-func ran once however many cancels */
  CHECK_EQ(weft_ctx_stop_func(stop), 0);
  int cause = weft_ctx_cause(s.root);
  for (int i = 0; i < RACERS; i++) {
    CHECK_EQ(weft_ctx_err(s.kids[i]), -ECANCELED);
    CHECK_EQ(weft_ctx_cause(s.kids[i]), cause); /* the winner's cause everywhere */
    weft_ctx_release(s.kids[i]);
  }
  weft_ctx_release(s.root);
  return 0;
}

static void test_cancel_concurrent(void **state)
{
  (void)state;
  run_checked_p1to4(concurrent_cancel_main, NULL);
}

/* ---- propagation: deep and wide trees; never upwards ---- */

#define DEPTH 300

static int deep_main(void *arg)
{
  (void)arg;
  weft_ctx *chain[DEPTH];
  int64_t far = weft_now() + MS(3600 * 1000);
  chain[0] = weft_ctx_with_cancel(NULL);
  for (int i = 1; i < DEPTH; i++) {
    switch (i % 4) {
    case 0:
      chain[i] = weft_ctx_with_cancel(chain[i - 1]);
      break;
    case 1:
      chain[i] = weft_ctx_with_value(chain[i - 1], &k_a, &chain[i]);
      break;
    case 2:
      chain[i] = weft_ctx_with_deadline(chain[i - 1], far + i);
      break;
    default:
      chain[i] = weft_ctx_with_cancel(chain[i - 1]);
      break;
    }
    CHECK(chain[i] != NULL);
  }
  /* Cancelling the middle reaches below it only. */
  int mid = DEPTH / 2; /* a cancel node: mid % 4 == 2 */
  weft_ctx_cancel_cause(chain[mid], -EPIPE);
  for (int i = 0; i < mid; i++)
    CHECK_EQ(weft_ctx_err(chain[i]), 0);
  for (int i = mid; i < DEPTH; i++) {
    CHECK_EQ(weft_ctx_err(chain[i]), -ECANCELED);
    CHECK_EQ(weft_ctx_cause(chain[i]), -EPIPE);
  }
  /* The root reaches the rest; below mid the first cause stays. */
  weft_ctx_cancel_cause(chain[0], -EIO);
  void *want = NULL; /* the nearest value node's value */
  for (int i = 0; i < DEPTH; i++) {
    CHECK_EQ(weft_ctx_err(chain[i]), -ECANCELED);
    CHECK_EQ(weft_ctx_cause(chain[i]), i < mid ? -EIO : -EPIPE);
    if (i % 4 == 1)
      want = &chain[i];
    CHECK(weft_ctx_value(chain[i], &k_a) == want);
  }
  for (int i = DEPTH - 1; i >= 0; i--)
    weft_ctx_release(chain[i]);
  return 0;
}

static void test_deep_tree(void **state)
{
  (void)state;
  run_checked(2, deep_main, NULL);
}

#define WIDE (SANITIZED ? 500 : 3000)

static int wide_main(void *arg)
{
  (void)arg;
  weft_ctx *root = weft_ctx_with_cancel(NULL);
  weft_ctx **kids = calloc(WIDE, sizeof *kids), **grand = calloc(WIDE, sizeof *grand);
  for (int i = 0; i < WIDE; i++) {
    kids[i] = i % 2 ? weft_ctx_with_cancel(root) : weft_ctx_with_timeout(root, MS(3600000));
    grand[i] = weft_ctx_with_cancel(kids[i]);
  }
  /* A child's cancel reaches neither its parent nor its siblings. */
  weft_ctx_cancel(kids[7]);
  CHECK_EQ(weft_ctx_err(grand[7]), -ECANCELED);
  CHECK_EQ(weft_ctx_err(root), 0);
  CHECK_EQ(weft_ctx_err(kids[6]), 0);
  CHECK_EQ(weft_ctx_err(kids[8]), 0);
  CHECK_EQ(weft_ctx_err(grand[8]), 0);
  /* Some children go away before the parent is cancelled. */
  for (int i = 0; i < WIDE; i += 3) {
    weft_ctx_release(grand[i]);
    weft_ctx_release(kids[i]);
    kids[i] = grand[i] = NULL;
  }
  weft_ctx_cancel_cause(root, -EPIPE);
  for (int i = 0; i < WIDE; i++) {
    if (!kids[i])
      continue;
    CHECK_EQ(weft_ctx_err(kids[i]), -ECANCELED);
    CHECK_EQ(weft_ctx_err(grand[i]), -ECANCELED);
    CHECK_EQ(weft_ctx_cause(grand[i]), i == 7 ? -ECANCELED : -EPIPE);
    CHECK(weft_chan_is_closed(weft_ctx_done(grand[i])));
    weft_ctx_release(kids[i]); /* parent first: the grandchild keeps it alive */
    weft_ctx_release(grand[i]);
  }
  weft_ctx_release(root);
  free(kids);
  free(grand);
  return 0;
}

static void test_wide_tree(void **state)
{
  (void)state;
  run_checked(2, wide_main, NULL);
}

/* ---- a parent already done cancels the child at creation ---- */

static void count_after(void *arg)
{
  atomic_fetch_add((atomic_int *)arg, 1);
}

static int done_parent_main(void *arg)
{
  (void)arg;
  weft_ctx *p = weft_ctx_with_cancel(NULL);
  weft_ctx_cancel_cause(p, -EPIPE);
  weft_ctx *kids[4] = {
      weft_ctx_with_cancel(p),
      weft_ctx_with_deadline(p, weft_now() + MS(3600000)),
      weft_ctx_with_timeout(p, MS(3600000)),
      weft_ctx_with_value(p, &k_a, NULL),
  };
  for (int i = 0; i < 4; i++) {
    CHECK(kids[i] != NULL);
    CHECK_EQ(weft_ctx_err(kids[i]), -ECANCELED);
    CHECK_EQ(weft_ctx_cause(kids[i]), -EPIPE);
    CHECK(weft_chan_is_closed(weft_ctx_done(kids[i])));
    CHECK_EQ(weft_ctx_wait(kids[i], WEFT_NO_DEADLINE), -ECANCELED);
  }
  /* A grandchild of a done parent is done too. */
  weft_ctx *g = weft_ctx_with_cancel(kids[3]);
  CHECK_EQ(weft_ctx_cause(g), -EPIPE);
  weft_ctx_release(g);
  for (int i = 0; i < 4; i++)
    weft_ctx_release(kids[i]);
  weft_ctx_release(p);

  /* A parent that timed out passes on -ETIMEDOUT. */
  p = weft_ctx_with_deadline(NULL, weft_now() - 1);
  weft_ctx *c = weft_ctx_with_cancel(p);
  CHECK_EQ(weft_ctx_err(c), -ETIMEDOUT);
  CHECK_EQ(weft_ctx_cause(c), -ETIMEDOUT);
  weft_ctx_release(c);
  weft_ctx_release(p);
  return 0;
}

static void test_done_parent(void **state)
{
  (void)state;
  run_checked(1, done_parent_main, NULL);
}

/* ---- causes ---- */

static int cause_main(void *arg)
{
  (void)arg;
  weft_ctx *p = weft_ctx_with_cancel(NULL);
  weft_ctx *v = weft_ctx_with_value(p, &k_a, NULL);
  weft_ctx *c = weft_ctx_with_cancel(v);
  weft_ctx *own = weft_ctx_with_cancel(p);
  CHECK_EQ(weft_ctx_cause(c), 0); /* nothing until done */
  weft_ctx_cancel_cause(own, -EBUSY);
  weft_ctx_cancel_cause(p, -EPIPE);
  weft_ctx_cancel_cause(p, -EIO); /* the first cause wins */
  weft_ctx_cancel(p);
  CHECK_EQ(weft_ctx_err(p), -ECANCELED); /* err stays "canceled" */
  CHECK_EQ(weft_ctx_cause(p), -EPIPE);
  CHECK_EQ(weft_ctx_cause(v), -EPIPE); /* a descendant: the ancestor's cause */
  CHECK_EQ(weft_ctx_cause(c), -EPIPE);
  CHECK_EQ(weft_ctx_err(c), -ECANCELED);
  CHECK_EQ(weft_ctx_cause(own), -EBUSY); /* cancelled first on its own: keeps its cause */
  weft_ctx_cancel_cause(c, -EIO);        /* already done through p: no change */
  CHECK_EQ(weft_ctx_cause(c), -EPIPE);
  weft_ctx_release(own);
  weft_ctx_release(c);
  weft_ctx_release(v);
  weft_ctx_release(p);

  /* Cause 0 is no cause: cause is then err. */
  p = weft_ctx_with_cancel(NULL);
  weft_ctx_cancel_cause(p, 0);
  CHECK_EQ(weft_ctx_cause(p), -ECANCELED);
  weft_ctx_release(p);

  /* A deadline's cause is -ETIMEDOUT, also on descendants; a later cancel changes
   * nothing. */
  p = weft_ctx_with_timeout(NULL, MS(1));
  c = weft_ctx_with_cancel(p);
  CHECK_EQ(weft_ctx_wait(c, weft_now() + MS(10000)), -ETIMEDOUT);
  weft_ctx_cancel_cause(p, -EIO);
  CHECK_EQ(weft_ctx_err(p), -ETIMEDOUT);
  CHECK_EQ(weft_ctx_cause(p), -ETIMEDOUT);
  CHECK_EQ(weft_ctx_cause(c), -ETIMEDOUT);
  weft_ctx_release(c);
  weft_ctx_release(p);
  return 0;
}

static void test_cause(void **state)
{
  (void)state;
  run_checked(2, cause_main, NULL);
}

/* ---- deadlines ---- */

static int deadline_main(void *arg)
{
  (void)arg;
  int64_t now = weft_now();
  /* An earlier parent deadline wins; a child's earlier one is its own. */
  weft_ctx *p = weft_ctx_with_deadline(NULL, now + MS(60000));
  weft_ctx *later = weft_ctx_with_deadline(p, now + MS(120000));
  weft_ctx *earlier = weft_ctx_with_deadline(p, now + MS(30000));
  weft_ctx *v = weft_ctx_with_value(earlier, &k_a, NULL);
  weft_ctx *plain = weft_ctx_with_cancel(p);
  CHECK(weft_ctx_deadline(p) == now + MS(60000));
  CHECK(weft_ctx_deadline(later) == now + MS(60000));
  CHECK(weft_ctx_deadline(earlier) == now + MS(30000));
  CHECK(weft_ctx_deadline(v) == now + MS(30000));
  CHECK(weft_ctx_deadline(plain) == now + MS(60000));
  weft_ctx_release(plain);
  weft_ctx_release(v);
  weft_ctx_release(earlier);
  weft_ctx_release(later);
  weft_ctx_release(p);

  /* Past (and present) deadlines cancel at once with -ETIMEDOUT. */
  for (int64_t d = -MS(1000); d <= 0; d += MS(1000)) {
    weft_ctx *c = weft_ctx_with_deadline(NULL, weft_now() + d);
    CHECK_EQ(weft_ctx_err(c), -ETIMEDOUT);
    CHECK(weft_chan_is_closed(weft_ctx_done(c)));
    weft_ctx_release(c);
  }
  weft_ctx *c = weft_ctx_with_timeout(NULL, -1);
  CHECK_EQ(weft_ctx_err(c), -ETIMEDOUT);
  weft_ctx_release(c);
  /* A timeout too large for the clock means no deadline. */
  c = weft_ctx_with_timeout(NULL, INT64_MAX);
  CHECK(weft_ctx_deadline(c) == WEFT_NO_DEADLINE);
  CHECK_EQ(weft_ctx_err(c), 0);
  weft_ctx_release(c);

  /* A timeout never fires early; a child with a later deadline fires with its parent. */
  int64_t t0 = weft_now();
  p = weft_ctx_with_timeout(NULL, MS(30));
  c = weft_ctx_with_timeout(p, MS(3600000));
  CHECK(weft_ctx_deadline(p) >= t0 + MS(30));
  CHECK(weft_ctx_deadline(c) == weft_ctx_deadline(p));
  CHECK_EQ(weft_ctx_err(p), 0);
  CHECK_EQ(weft_ctx_wait(c, WEFT_NO_DEADLINE), -ETIMEDOUT);
  CHECK(weft_now() >= weft_ctx_deadline(p));
  CHECK(weft_now() - t0 >= MS(30));
  CHECK_EQ(weft_ctx_err(p), -ETIMEDOUT);
  weft_ctx_release(c);
  weft_ctx_release(p);

  /* Cancelled before its deadline: stays -ECANCELED after the deadline passes. */
  c = weft_ctx_with_timeout(NULL, MS(5));
  weft_ctx_cancel(c);
  weft_sleep(MS(15));
  CHECK_EQ(weft_ctx_err(c), -ECANCELED);
  CHECK_EQ(weft_ctx_cause(c), -ECANCELED);
  weft_ctx_release(c);

  /* Released before its deadline: the timer goes with it (nothing fires into freed
   * memory; sanitizers watch). */
  for (int i = 0; i < 100; i++)
    weft_ctx_release(weft_ctx_with_timeout(NULL, MS(1) + i * 10000));
  weft_sleep(MS(10));
  return 0;
}

static void test_deadline(void **state)
{
  (void)state;
  run_checked(2, deadline_main, NULL);
}

/* ---- values and without-cancel ---- */

static int value_main(void *arg)
{
  (void)arg;
  char a[] = "a", b[] = "b", c2[] = "c";
  weft_ctx *v1 = weft_ctx_with_value(NULL, &k_a, a);
  weft_ctx *cn = weft_ctx_with_timeout(v1, MS(3600000));
  weft_ctx *v2 = weft_ctx_with_value(cn, &k_b, b);
  weft_ctx *v3 = weft_ctx_with_value(v2, &k_a, c2); /* shadows v1's k_a */
  CHECK(weft_ctx_value(v3, &k_a) == c2);            /* the nearest wins */
  CHECK(weft_ctx_value(v3, &k_b) == b);
  CHECK(weft_ctx_value(v2, &k_a) == a); /* up through a cancel node */
  CHECK(weft_ctx_value(cn, &k_a) == a);
  CHECK(weft_ctx_value(v1, &k_b) == NULL);
  CHECK(weft_ctx_value(v3, &k_c) == NULL);
  CHECK(weft_ctx_value(v3, NULL) == NULL);
  /* A value node has its parent's deadline and is done exactly when it is. */
  CHECK(weft_ctx_deadline(v3) == weft_ctx_deadline(cn));
  CHECK(weft_ctx_done(v3) == weft_ctx_done(cn));

  /* without-cancel keeps the values but is never done and has no deadline. */
  weft_ctx *w = weft_ctx_without_cancel(v3);
  CHECK(weft_ctx_value(w, &k_a) == c2);
  CHECK(weft_ctx_value(w, &k_b) == b);
  CHECK(weft_ctx_deadline(w) == WEFT_NO_DEADLINE);
  CHECK(weft_ctx_done(w) == NULL);
  CHECK(weft_ctx_after_func(w, never_called, NULL) == NULL);
  weft_ctx *under_w = weft_ctx_with_cancel(w);
  weft_ctx_cancel_cause(cn, -EPIPE);
  CHECK_EQ(weft_ctx_err(v3), -ECANCELED);
  CHECK_EQ(weft_ctx_cause(v3), -EPIPE);
  CHECK_EQ(weft_ctx_err(w), 0);
  CHECK_EQ(weft_ctx_cause(w), 0);
  CHECK_EQ(weft_ctx_err(under_w), 0); /* not reached through without-cancel */
  CHECK(weft_ctx_value(under_w, &k_a) == c2);
  CHECK_EQ(weft_ctx_wait(w, weft_now() + MS(2)), -ETIMEDOUT);
  weft_ctx_cancel(under_w); /* and it still cancels on its own */
  CHECK_EQ(weft_ctx_err(under_w), -ECANCELED);
  CHECK_EQ(weft_ctx_err(w), 0);
  weft_ctx_release(under_w);
  weft_ctx_release(w);
  weft_ctx_release(v3);
  weft_ctx_release(v2);
  weft_ctx_release(cn);
  weft_ctx_release(v1);
  return 0;
}

static void test_values(void **state)
{
  (void)state;
  run_checked(1, value_main, NULL);
}

/* ---- the done channel as a select case among data channels ---- */

struct feed {
  weft_chan *data;
  weft_ctx *ctx;
  weft_wg wg;
};

static void feeder(void *arg)
{
  struct feed *f = arg;
  for (int i = 1; i <= 10; i++)
    CHECK_EQ(WEFT_CHAN_SEND(f->data, int, i), 0);
  weft_ctx_cancel_cause(f->ctx, -EPIPE);
  weft_wg_done(&f->wg);
}

static int select_main(void *arg)
{
  (void)arg;
  struct feed f = {.data = WEFT_CHAN_NEW(int, 0), .ctx = weft_ctx_with_cancel(NULL)};
  weft_chan *never = WEFT_CHAN_NEW(int, 0);
  weft_wg_add(&f.wg, 1);
  weft_go(feeder, &f);
  int sum = 0, got = 0, v;
  for (;;) {
    weft_select_case cs[3] = {
        {.ch = f.data, .dir = WEFT_SELECT_RECV, .elem = &v},
        {.ch = weft_ctx_done(f.ctx), .dir = WEFT_SELECT_RECV},
        {.ch = never, .dir = WEFT_SELECT_SEND, .elem = &v},
    };
    int i = weft_select(cs, 3, 0, weft_now() + MS(10000));
    if (i == 0) {
      sum += v;
      got++;
      continue;
    }
    CHECK_EQ(i, 1);
    CHECK_EQ(cs[1].result, -EPIPE); /* a closed done channel reads as closed */
    break;
  }
  /* Values sent before the cancel all arrived (the hand-off is synchronous). */
  CHECK_EQ(got, 10);
  CHECK_EQ(sum, 55);
  CHECK_EQ(weft_ctx_cause(f.ctx), -EPIPE);
  weft_wg_wait(&f.wg);
  /* Once done, the done case stays ready: beside a ready data case each is chosen (at
   * random; missing one in 64 tries has odds of 2^-64). */
  weft_chan *full = WEFT_CHAN_NEW(int, 1);
  int picked[2] = {0, 0};
  for (int i = 0; i < 64; i++) {
    weft_chan_try_send(full, &i);
    weft_select_case cs[2] = {
        {.ch = full, .dir = WEFT_SELECT_RECV, .elem = &v},
        {.ch = weft_ctx_done(f.ctx), .dir = WEFT_SELECT_RECV},
    };
    int k = weft_select(cs, 2, WEFT_SELECT_DEFAULT, WEFT_NO_DEADLINE);
    CHECK(k == 0 || k == 1);
    if (k == 0 || k == 1)
      picked[k]++;
  }
  CHECK(picked[0] > 0 && picked[1] > 0);
  weft_chan_release(full);
  weft_chan_release(never);
  weft_chan_release(f.data);
  weft_ctx_release(f.ctx);
  return 0;
}

static void test_select_done(void **state)
{
  (void)state;
  run_checked_p1to4(select_main, NULL);
}

/* ---- weft_ctx_wait ---- */

struct canceller {
  weft_ctx *ctx;
  int64_t after;
  weft_wg wg;
};

static void cancel_later(void *arg)
{
  struct canceller *c = arg;
  weft_sleep(c->after);
  weft_ctx_cancel(c->ctx);
  weft_wg_done(&c->wg);
}

static int wait_main(void *arg)
{
  (void)arg;
  weft_ctx *c = weft_ctx_with_cancel(NULL);
  int64_t t0 = weft_now();
  CHECK_EQ(weft_ctx_wait(c, t0 + MS(10)), -ETIMEDOUT); /* deadline, not done */
  CHECK(weft_now() - t0 >= MS(10));
  CHECK_EQ(weft_ctx_err(c), 0);
  CHECK_EQ(weft_ctx_wait(c, weft_now() - 1), -ETIMEDOUT); /* past deadline */

  struct canceller k = {.ctx = c, .after = MS(5)};
  weft_wg_add(&k.wg, 1);
  weft_go(cancel_later, &k);
  CHECK_EQ(weft_ctx_wait(c, weft_now() + MS(10000)), -ECANCELED);
  weft_wg_wait(&k.wg);
  t0 = weft_now();
  CHECK_EQ(weft_ctx_wait(c, WEFT_NO_DEADLINE), -ECANCELED); /* done: at once */
  CHECK(weft_now() - t0 < MS(1000));
  weft_ctx_release(c);

  c = weft_ctx_with_timeout(NULL, MS(5)); /* the context's own deadline */
  CHECK_EQ(weft_ctx_wait(c, WEFT_NO_DEADLINE), -ETIMEDOUT);
  CHECK_EQ(weft_ctx_err(c), -ETIMEDOUT);
  weft_ctx_release(c);
  return 0;
}

static void test_wait(void **state)
{
  (void)state;
  run_checked_p1to4(wait_main, NULL);
}

/* ---- after-func ---- */

struct after {
  atomic_int runs;
  atomic_ullong coro;  /* the coroutine it ran in */
  atomic_int err_seen; /* the context's err inside fn */
  weft_ctx *ctx;
  weft_wg wg;
};

static void after_fn(void *arg)
{
  struct after *a = arg;
  atomic_store(&a->coro, weft_self_id());
  atomic_store(&a->err_seen, weft_ctx_err(a->ctx));
  atomic_fetch_add(&a->runs, 1);
  weft_wg_done(&a->wg);
}

static int after_main(void *arg)
{
  (void)arg;
  /* Runs once, in its own coroutine, once the context is done. */
  struct after a = {.ctx = weft_ctx_with_cancel(NULL)};
  weft_ctx *child = weft_ctx_with_cancel(a.ctx);
  struct after b = {.ctx = child};
  weft_wg_add(&a.wg, 1);
  weft_wg_add(&b.wg, 1);
  weft_ctx_stop *sa = weft_ctx_after_func(a.ctx, after_fn, &a);
  weft_ctx_stop *sb = weft_ctx_after_func(child, after_fn, &b); /* through the parent */
  CHECK(sa && sb);
  weft_sleep(MS(5));
  CHECK_EQ(atomic_load(&a.runs), 0);
  weft_ctx_cancel(a.ctx);
  weft_ctx_cancel(a.ctx);
  weft_wg_wait(&a.wg);
  weft_wg_wait(&b.wg);
  weft_sleep(MS(5));
  CHECK_EQ(atomic_load(&a.runs), 1);
  CHECK_EQ(atomic_load(&b.runs), 1);
  CHECK(atomic_load(&a.coro) != 0 && atomic_load(&a.coro) != weft_self_id());
  CHECK(atomic_load(&b.coro) != atomic_load(&a.coro));
  CHECK_EQ(atomic_load(&a.err_seen), -ECANCELED);
  CHECK_EQ(weft_ctx_stop_func(sa), 0); /* it had run: not prevented */
  CHECK_EQ(weft_ctx_stop_func(sb), 0);

  /* Already done: runs at once (in its own coroutine). */
  struct after d = {.ctx = a.ctx};
  weft_wg_add(&d.wg, 1);
  weft_ctx_stop *sd = weft_ctx_after_func(a.ctx, after_fn, &d);
  weft_wg_wait(&d.wg);
  CHECK_EQ(atomic_load(&d.runs), 1);
  CHECK(atomic_load(&d.coro) != weft_self_id());
  CHECK_EQ(weft_ctx_stop_func(sd), 0);
  weft_ctx_release(child);
  weft_ctx_release(a.ctx);

  /* Stopped before: prevented, never runs. */
  atomic_int runs = 0;
  weft_ctx *c = weft_ctx_with_cancel(NULL);
  weft_ctx_stop *s1 = weft_ctx_after_func(c, count_after, &runs);
  weft_ctx_stop *s2 = weft_ctx_after_func(c, count_after, &runs);
  CHECK_EQ(weft_ctx_stop_func(s1), 1);
  weft_ctx_cancel(c);
  CHECK(wait_at_least(&runs, 1, MS(5000)));
  weft_sleep(MS(10));
  CHECK_EQ(atomic_load(&runs), 1); /* s2 only */
  CHECK_EQ(weft_ctx_stop_func(s2), 0);
  CHECK_EQ(weft_ctx_stop_func(NULL), 0);
  weft_ctx_release(c);

  /* The handle keeps what it needs: the context may go first. */
  c = weft_ctx_with_cancel(NULL);
  s1 = weft_ctx_after_func(c, count_after, &runs);
  weft_ctx_release(c);
  CHECK_EQ(weft_ctx_stop_func(s1), 1);
  CHECK(weft_ctx_after_func(c = weft_ctx_with_cancel(NULL), NULL, NULL) == NULL);
  weft_ctx_release(c);
  return 0;
}

static void test_after_func(void **state)
{
  (void)state;
  run_checked_p1to4(after_main, NULL);
}

/* stop racing cancel: exactly one of "prevented" and "ran". */

#define STOP_ROUNDS (SANITIZED ? 200 : 2000)

struct stop_race {
  weft_ctx *ctx;
  atomic_int ran, go;
  weft_wg wg;
};

static void stop_race_fn(void *arg)
{
  atomic_fetch_add(&((struct stop_race *)arg)->ran, 1);
}

static void stop_race_cancel(void *arg)
{
  struct stop_race *r = arg;
  while (!atomic_load(&r->go))
    weft_yield();
  weft_ctx_cancel(r->ctx);
  weft_wg_done(&r->wg);
}

static int stop_race_main(void *arg)
{
  (void)arg;
  int prevented = 0, ran = 0;
  for (int i = 0; i < STOP_ROUNDS; i++) {
    struct stop_race r = {.ctx = weft_ctx_with_cancel(NULL)};
    weft_ctx_stop *s = weft_ctx_after_func(r.ctx, stop_race_fn, &r);
    weft_wg_add(&r.wg, 1);
    weft_go(stop_race_cancel, &r);
    atomic_store(&r.go, 1);
    if (i % 2)
      weft_yield();
    int p = weft_ctx_stop_func(s);
    weft_wg_wait(&r.wg);
    if (p) {
      prevented++;
      weft_sleep(0);
      CHECK_EQ(atomic_load(&r.ran), 0);
    } else {
      ran++;
      CHECK(wait_at_least(&r.ran, 1, MS(5000)));
    }
    weft_ctx_release(r.ctx);
  }
  CHECK_EQ(prevented + ran, STOP_ROUNDS);
  return 0;
}

static void test_after_func_stop_race(void **state)
{
  (void)state;
  run_checked_p1to4(stop_race_main, NULL);
}

/* ---- memory stays flat: a million short-lived children of one long-lived parent ---- */

#define CYCLES (SANITIZED ? 100000 : 1000000)

static long rss_kib(void)
{
  long pages = 0, resident = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (!f)
    return -1;
  if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
    resident = -1;
  fclose(f);
  return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Heap bytes in use: the allocator's own count (sanitizers replace malloc). */
static long long heap_in_use(void)
{
#if SANITIZED
  return (long long)__sanitizer_get_current_allocated_bytes();
#else
  return (long long)mallinfo2().uordblks;
#endif
}

static void churn(weft_ctx *parent, int n)
{
  for (int i = 0; i < n; i++) {
    weft_ctx *c;
    switch (i % 4) {
    case 0: /* cancelled, then released */
      c = weft_ctx_with_cancel(parent);
      weft_ctx_done(c);
      weft_ctx_cancel(c);
      weft_ctx_release(c);
      break;
    case 1: /* released without a cancel: unlinks itself */
      c = weft_ctx_with_cancel(parent);
      weft_ctx_release(c);
      break;
    case 2: /* with a deadline that never fires: its timer goes too */
      c = weft_ctx_with_timeout(parent, MS(3600000));
      weft_ctx_release(c);
      break;
    default: { /* a small subtree */
      weft_ctx *v = weft_ctx_with_value(parent, &k_a, NULL);
      c = weft_ctx_with_cancel(v);
      weft_ctx_release(v);
      weft_ctx_stop *s = weft_ctx_after_func(c, never_called, NULL);
      weft_ctx_stop_func(s);
      weft_ctx_release(c);
    }
    }
    if (i % 4096 == 0)
      weft_yield();
  }
}

static int flat_main(void *arg)
{
  (void)arg;
  weft_ctx *parent = weft_ctx_with_cancel(NULL);
  weft_ctx_done(parent);
  churn(parent, 20000); /* warm the allocator */
  long rss0 = rss_kib();
  long long heap0 = heap_in_use();
  churn(parent, CYCLES);
  long rss1 = rss_kib();
  long long heap1 = heap_in_use();
  fprintf(stderr, "flat: %d cycles: rss %ld -> %ld KiB, heap %lld -> %lld bytes\n", CYCLES,
          rss0, rss1, heap0, heap1);
  /* A leaked or still-linked child costs over 100 bytes: a leak would show as megabytes. */
  CHECK(heap1 - heap0 < 256 * 1024);
  if (!SANITIZED)
    CHECK(rss1 - rss0 < 8 * 1024);
  /* The parent still works and cancels what is left (nothing). */
  weft_ctx_cancel(parent);
  CHECK_EQ(weft_ctx_err(parent), -ECANCELED);
  weft_ctx_release(parent);
  return 0;
}

static void test_memory_flat(void **state)
{
  (void)state;
  run_checked(2, flat_main, NULL);
}

/* ---- cancellation racing completion, creation and release, P = 1..4 ---- */

#define RACE_ROUNDS  (TSAN ? 40 : SANITIZED ? 80 : 300)
#define RACE_WORKERS 6
#define RACE_ITERS   (SANITIZED ? 60 : 150)

struct race {
  weft_ctx *parent;
  uint64_t seed;
  weft_wg workers, afters;
  atomic_int registered, ran, prevented;
};

static void race_after(void *arg)
{
  struct race *r = arg;
  atomic_fetch_add(&r->ran, 1);
  weft_wg_done(&r->afters);
}

static void race_worker(void *arg)
{
  struct race *r = arg;
  uint64_t rng = r->seed ^ (weft_self_id() * 0x9E3779B97F4A7C15ull);
  for (int i = 0; i < RACE_ITERS; i++) {
    uint64_t x = test_rand(&rng);
    int parent_done = weft_ctx_err(r->parent) != 0;
    weft_ctx *c;
    switch (x % 3) {
    case 0:
      c = weft_ctx_with_cancel(r->parent);
      break;
    case 1:
      c = weft_ctx_with_timeout(r->parent, (int64_t)(x >> 40) % 200000);
      break;
    default:
      c = weft_ctx_with_value(r->parent, &k_a, NULL);
      break;
    }
    if (!c) {
      CHECK(!"out of memory");
      continue;
    }
    if (parent_done)
      CHECK(weft_ctx_err(c) != 0); /* a done parent cancels at creation */
    weft_ctx *g = (x >> 8) % 2 ? weft_ctx_with_cancel(c) : NULL;
    weft_ctx_stop *s = NULL;
    if ((x >> 9) % 2) {
      weft_wg_add(&r->afters, 1);
      atomic_fetch_add(&r->registered, 1);
      s = weft_ctx_after_func(g ? g : c, race_after, r);
    }
    if ((x >> 10) % 4 == 0)
      weft_ctx_cancel_cause(c, -EPIPE);
    if ((x >> 12) % 4 == 0)
      weft_yield();
    if (s && (x >> 14) % 2) { /* stop before the releases; the handle is freed either way */
      if (weft_ctx_stop_func(s)) {
        atomic_fetch_add(&r->prevented, 1);
        weft_wg_done(&r->afters);
      }
      s = NULL;
    }
    if ((x >> 15) % 2) { /* either release order */
      weft_ctx_release(c);
      weft_ctx_release(g);
    } else {
      weft_ctx_release(g);
      weft_ctx_release(c);
    }
    if (s && weft_ctx_stop_func(s)) {
      atomic_fetch_add(&r->prevented, 1);
      weft_wg_done(&r->afters);
    }
    int e = weft_ctx_err(r->parent);
    CHECK(e == 0 || e == -ECANCELED || e == -ETIMEDOUT);
  }
  weft_wg_done(&r->workers);
}

static int race_main(void *arg)
{
  uint64_t seed = *(uint64_t *)arg;
  for (int round = 0; round < RACE_ROUNDS; round++) {
    struct race r = {.seed = seed + (uint64_t)round * 7919};
    uint64_t x = test_rand(&r.seed);
    r.parent = x % 4 == 0 ? weft_ctx_with_timeout(NULL, (int64_t)(x >> 32) % 300000)
                          : weft_ctx_with_cancel(NULL);
    weft_wg_add(&r.workers, RACE_WORKERS);
    for (int i = 0; i < RACE_WORKERS; i++)
      CHECK_EQ(weft_go(race_worker, &r), 0);
    for (int spins = (int)((x >> 8) % 64); spins > 0; spins--)
      weft_yield();
    weft_ctx_cancel_cause(r.parent, -EIO);
    weft_wg_wait(&r.workers);
    weft_wg_wait(&r.afters);
    CHECK_EQ(atomic_load(&r.ran) + atomic_load(&r.prevented), atomic_load(&r.registered));
    int e = weft_ctx_err(r.parent);
    CHECK(e == -ECANCELED || e == -ETIMEDOUT);
    weft_ctx_release(r.parent);
  }
  return 0;
}

static void test_race(void **state)
{
  (void)state;
  uint64_t seed = test_seed();
  run_checked_p1to4(race_main, &seed);
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_background),
      cmocka_unit_test(test_cancel_idempotent),
      cmocka_unit_test(test_cancel_concurrent),
      cmocka_unit_test(test_deep_tree),
      cmocka_unit_test(test_wide_tree),
      cmocka_unit_test(test_done_parent),
      cmocka_unit_test(test_cause),
      cmocka_unit_test(test_deadline),
      cmocka_unit_test(test_values),
      cmocka_unit_test(test_select_done),
      cmocka_unit_test(test_wait),
      cmocka_unit_test(test_after_func),
      cmocka_unit_test(test_after_func_stop_race),
      cmocka_unit_test(test_memory_flat),
      cmocka_unit_test(test_race),
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL, 0);
}
