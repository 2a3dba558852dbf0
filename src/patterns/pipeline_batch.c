/* pipeline_batch.c: the batch stage of a pipeline (weft/pipeline.h).
 *
 * Two coroutines. The batcher gathers input items into a batch and sends it when it is
 * full, when its time is up, or (partial) when the input ends. Time runs on the pipeline's
 * weft_clock, which may be fake, so the batcher cannot select on a timer channel; the
 * timer coroutine sleeps on the clock instead and rings the batcher:
 *
 *   batcher: first item of a batch -> deadline = now + max_wait; try_send(doorbell)
 *            tick received         -> if the batch is not empty and now >= deadline: flush
 *            flush                 -> deadline = 0
 *   timer:   recv(doorbell); while deadline != 0: sleep until it; if still armed and due,
 *            try_send(tick) and wait for the next doorbell
 *
 * deadline is the only state they share (an atomic); since a newer batch's deadline is
 * never earlier than an older one's, a timer that wakes for a batch already flushed just
 * sleeps on to the new deadline, and a stale tick is harmless (the batcher re-checks the
 * clock). Both channels have capacity 1 and are written with try_send: a full one already
 * carries the news. The batcher cancels timer_ctx when it ends, which ends the timer.
 *
 * The design that lost: one coroutine per batch sleeping until its deadline. A batch
 * flushed by size leaves its sleeper behind until the deadline, and with a fake clock that
 * is forever (a leak the check would report). */
#include <errno.h>
#include <stdlib.h>

#include "pipeline_internal.h"
#include "weft/runtime.h"

void weft__pipeline_batch_free_cb(void *batch)
{
  weft_pipeline_batch_free(batch);
}

int weft__pipeline_batch_prepare(struct stage *st, weft_ctx *group_ctx)
{
  if (st->max_wait == 0)
    return 0;
  st->doorbell = weft_chan_new(sizeof(int), 1);
  st->tick = weft_chan_new(sizeof(int), 1);
  st->timer_ctx = weft_ctx_with_cancel(group_ctx);
  return st->doorbell && st->tick && st->timer_ctx ? 0 : -ENOMEM;
}

void weft__pipeline_batch_release(struct stage *st)
{
  weft_chan_release(st->doorbell);
  weft_chan_release(st->tick);
  weft_ctx_release(st->timer_ctx);
}

/* ---- timer ---- */

/* Sleep until the armed deadline passes, following it as batches are re-armed; ring the
 * batcher when it is due. Returns 0, or timer_ctx's error. */
static int timer_follow(struct stage *st)
{
  weft_clock *clock = st->p->clock;
  int64_t d;
  while ((d = atomic_load(&st->deadline)) != 0) {
    int rc = weft_clock_sleep_until(clock, st->timer_ctx, d);
    if (rc != 0)
      return rc;
    d = atomic_load(&st->deadline);
    if (d != 0 && weft_clock_now(clock) >= d) {
      int one = 1;
      weft_chan_try_send(st->tick, &one);
      return 0;
    }
  }
  return 0;
}

/* Never the cause of a failure: it ends when the batcher does (timer_ctx). */
static int timer_run(weft_ctx *ctx, void *arg)
{
  (void)ctx;
  struct stage *st = arg;
  weft__pipeline_name_self(st);
  while (weft_chan_recv_ctx(st->doorbell, NULL, st->timer_ctx) == 0)
    if (timer_follow(st) != 0)
      break;
  return 0;
}

/* ---- batcher ---- */

struct gather {
  weft_pipeline_batch *b; /* the batch being gathered, or NULL */
  int64_t deadline;       /* its flush time; 0 without max_wait */
};

/* Add item to the gathering batch (starting one, and arming the timer, if needed).
 * Returns 0 or -ENOMEM (item dropped). */
static int gather_add(struct stage *st, struct gather *g, void *item)
{
  if (!g->b) {
    g->b = malloc(sizeof *g->b + st->max_items * sizeof(void *));
    if (!g->b) {
      weft__pipeline_drop(st, item, true);
      return -ENOMEM;
    }
    g->b->len = 0;
    g->b->free_item = st->in->producer->free_item;
    if (st->max_wait > 0) {
      g->deadline = weft_clock_now(st->p->clock) + st->max_wait;
      atomic_store(&st->deadline, g->deadline);
      int one = 1;
      weft_chan_try_send(st->doorbell, &one);
    }
  }
  g->b->items[g->b->len++] = item;
  return 0;
}

/* Send the gathering batch downstream. Returns 0 or ctx's error (batch dropped). */
static int gather_flush(struct stage *st, struct gather *g, weft_ctx *ctx)
{
  weft_pipeline_batch *b = g->b;
  g->b = NULL;
  if (st->max_wait > 0)
    atomic_store(&st->deadline, 0);
  if (!b)
    return 0;
  weft_pipeline_emitter em = {.st = st, .ctx = ctx};
  return weft_pipeline_emit(&em, b);
}

/* One input item or tick. Returns 0 to go on, 1 at the end of input, or an error. */
static int batcher_step(struct stage *st, struct gather *g, weft_ctx *ctx)
{
  void *item = NULL;
  int tick;
  weft_select_case cases[2] = {
      {.ch = st->in->ch, .dir = WEFT_SELECT_RECV, .elem = &item},
      {.ch = st->tick, .dir = WEFT_SELECT_RECV, .elem = &tick},
  };
  int i = weft_select_ctx(cases, st->tick ? 2 : 1, 0, ctx);
  if (i < 0)
    return i;
  if (i == 1) {
    if (g->b && weft_clock_now(st->p->clock) >= g->deadline)
      return gather_flush(st, g, ctx);
    return 0;
  }
  if (cases[0].result == -EPIPE)
    return 1;
  weft__pipeline_count(st, WEFT_PIPELINE_IN, 1);
  int rc = gather_add(st, g, item);
  if (rc == 0 && g->b->len == st->max_items)
    rc = gather_flush(st, g, ctx);
  return rc;
}

static int batcher_run(weft_ctx *ctx, void *arg)
{
  struct stage *st = arg;
  weft__pipeline_name_self(st);
  struct gather g = {0};
  int rc;
  do
    rc = batcher_step(st, &g, ctx);
  while (rc == 0);
  if (rc == 1) /* end of input: send the partial batch */
    rc = gather_flush(st, &g, ctx);
  if (g.b) { /* stopped while gathering */
    weft__pipeline_drop(st, g.b, false);
    g.b = NULL;
  }
  weft__pipeline_producer_done(st->out);
  weft_ctx_cancel(st->timer_ctx); /* NULL without max_wait: ignored */
  return rc;
}

int weft__pipeline_batch_start(struct stage *st)
{
  int rc = weft_group_go(st->p->group, batcher_run, st);
  if (rc == 0 && st->max_wait > 0)
    rc = weft_group_go(st->p->group, timer_run, st);
  return rc;
}
