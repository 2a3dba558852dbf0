/* pipeline.c: pipeline stages joined by bounded channels (weft/pipeline.h).
 *
 * Coroutines, all functions of one error group (so the first error cancels the rest and
 * is what wait returns):
 *   source          one per source worker: fn(src_ctx, emitter), emits straight into the
 *                   edge;
 *   unordered map   `workers` loops: receive (honouring ctx), fn, emit straight into the
 *   and sink        edge;
 *   ordered map     a reader that numbers inputs by handing them out in order, `workers`
 *                   workers, and a sequencer that forwards each input's outputs in input
 *                   order (see pipeline_internal.h for its invariants);
 *   batch           a batcher and, with max_wait, a timer (pipeline_batch.c).
 * Every producing coroutine counts itself down on its output edge when it ends; the last
 * one closes the edge, so a stage closes its output only after all its workers finished.
 *
 * Stopping: a failed stage returns its error, the group cancels its context, and every
 * wait on an edge or the clock honours that context. Items a coroutine holds when it
 * notices are freed on the spot; weft_pipeline_wait frees what the edges still buffer
 * after every coroutine has ended.
 *
 * The design that lost: an ordered stage as a reorder buffer indexed by sequence number
 * that workers insert into (Go's common "ordered fan-out"). It needs a lock, a condition
 * for "my turn" and a separate bound; the order channel plus one done-signal per slot
 * gives the order, the bound (the window semaphore) and the wake-up with existing parts. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "pipeline_internal.h"
#include "weft/error.h"
#include "weft/runtime.h"

enum { BUILDING, RUNNING, DONE };

/* One input of an ORDERED stage and the outputs it produced. */
struct slot {
  void *item;   /* the input, until a worker takes it; owned by the slot */
  weft_wg done; /* reaches zero when the input was handled (or dropped) */
  void **outs;  /* outputs in emit order; written by one worker, read after done */
  size_t nouts, cap;
};

/* ---- helpers shared with pipeline_batch.c ---- */

void weft__pipeline_count(struct stage *st, int which, long long n)
{
  atomic_fetch_add_explicit(&st->counts[which], n, memory_order_relaxed);
  weft_counter_add_u64(st->metric[which], (uint64_t)n);
}

void weft__pipeline_drop(struct stage *st, void *item, bool in_edge)
{
  weft_pipeline_free_fn f = in_edge ? st->in->producer->free_item : st->free_item;
  if (f)
    f(item);
  weft__pipeline_count(st, WEFT_PIPELINE_DROPPED, 1);
}

void weft__pipeline_producer_done(struct edge *e)
{
  if (atomic_fetch_sub(&e->producers, 1) == 1)
    weft_chan_close(e->ch);
}

void weft__pipeline_name_self(struct stage *st)
{
  char name[32];
  snprintf(name, sizeof name, "%s/%s", st->p->name, st->name);
  weft_set_name(name);
}

/* The result of a stage function: an error the stage caused is counted. One returned once
 * the pipeline's context is done is a consequence of the cancellation (an emit that found
 * the pipeline stopping returns the cause, the first error), not a failure of its own. */
static int fn_result(struct stage *st, weft_ctx *ctx, int rc)
{
  if (rc != 0 && weft_ctx_err(ctx) == 0)
    weft__pipeline_count(st, WEFT_PIPELINE_ERROR, 1);
  return rc;
}

/* ---- emit ---- */

static int slot_append(struct slot *s, void *item)
{
  if (s->nouts == s->cap) {
    size_t cap = s->cap ? 2 * s->cap : 2;
    void **outs = realloc(s->outs, cap * sizeof *outs);
    if (!outs)
      return -ENOMEM;
    s->outs = outs;
    s->cap = cap;
  }
  s->outs[s->nouts++] = item;
  return 0;
}

int weft_pipeline_emit(weft_pipeline_emitter *out, void *item)
{
  if (!out || !item || !out->st->out)
    return -EINVAL;
  struct stage *st = out->st;
  int rc = weft_ctx_err(out->ctx);
  if (rc == 0 && out->slot)
    rc = slot_append(out->slot, item); /* counted as out when the sequencer sends it */
  else if (rc == 0) {
    rc = weft_chan_send_ctx(st->out->ch, &item, out->ctx);
    if (rc == 0)
      weft__pipeline_count(st, WEFT_PIPELINE_OUT, 1);
  }
  if (rc != 0)
    weft__pipeline_drop(st, item, false);
  return rc;
}

/* ---- sources, unordered maps and sinks ---- */

static int source_run(weft_ctx *ctx, void *arg)
{
  struct stage *st = arg;
  weft_pipeline *p = st->p;
  weft__pipeline_name_self(st);
  weft_pipeline_emitter em = {.st = st, .ctx = ctx};
  int rc = st->fn.source(p->src_ctx, &em, st->arg);
  /* A source stopped by drain ended cleanly, unless the pipeline itself is stopping. */
  if (rc != 0 && atomic_load(&p->draining) && weft_ctx_err(ctx) == 0 &&
      rc == weft_ctx_err(p->src_ctx))
    rc = 0;
  rc = fn_result(st, ctx, rc);
  weft__pipeline_producer_done(st->out);
  return rc;
}

/* One item through a map or sink function. */
static int call_fn(struct stage *st, weft_ctx *ctx, void *item, weft_pipeline_emitter *em)
{
  if (st->kind == KIND_SINK) {
    int rc = st->fn.sink(ctx, item, st->arg);
    if (rc == 0)
      weft__pipeline_count(st, WEFT_PIPELINE_OUT, 1);
    return rc;
  }
  return st->fn.map(ctx, item, em, st->arg);
}

static int worker_run(weft_ctx *ctx, void *arg)
{
  struct stage *st = arg;
  weft__pipeline_name_self(st);
  weft_pipeline_emitter em = {.st = st, .ctx = ctx};
  int rc;
  for (;;) {
    void *item;
    rc = weft_chan_recv_ctx(st->in->ch, &item, ctx);
    if (rc != 0)
      break;
    weft__pipeline_count(st, WEFT_PIPELINE_IN, 1);
    rc = fn_result(st, ctx, call_fn(st, ctx, item, &em));
    if (rc != 0)
      break;
  }
  if (rc == -EPIPE) /* the input ended: done */
    rc = 0;
  if (st->out)
    weft__pipeline_producer_done(st->out);
  return rc;
}

/* ---- ordered maps ---- */

/* Hand one input to a worker through a new slot, queued on order first. Returns 0, the
 * receive's result (-EPIPE at the end), ctx's error, or -ENOMEM. */
static int reader_step(struct stage *st, weft_ctx *ctx)
{
  int rc = weft_sem_acquire_ctx(st->sem, 1, ctx);
  if (rc != 0)
    return rc;
  void *item;
  rc = weft_chan_recv_ctx(st->in->ch, &item, ctx);
  if (rc != 0)
    goto err_release;
  weft__pipeline_count(st, WEFT_PIPELINE_IN, 1);
  struct slot *s = calloc(1, sizeof *s);
  if (!s) {
    weft__pipeline_drop(st, item, true);
    rc = -ENOMEM;
    goto err_release;
  }
  s->item = item;
  weft_wg_init(&s->done);
  weft_wg_add(&s->done, 1);
  weft_chan_send(st->order, &s, WEFT_NO_DEADLINE); /* never parks: the window bounds it */
  rc = weft_chan_send_ctx(st->work, &s, ctx);
  if (rc != 0) { /* no worker took it: the sequencer still waits for it */
    weft__pipeline_drop(st, s->item, true);
    s->item = NULL;
    weft_wg_done(&s->done);
  }
  return rc;
err_release:
  weft_sem_release(st->sem, 1);
  return rc;
}

static int reader_run(weft_ctx *ctx, void *arg)
{
  struct stage *st = arg;
  weft__pipeline_name_self(st);
  int rc;
  do
    rc = reader_step(st, ctx);
  while (rc == 0);
  weft_chan_close(st->order);
  weft_chan_close(st->work);
  return rc == -EPIPE ? 0 : rc;
}

/* Workers take every slot handed to them until the reader closes work, and mark each done
 * (the sequencer waits for it); once the pipeline stops they drop inputs instead. A
 * worker whose function fails returns at once, so the group cancels without delay. */
static int ordered_worker_run(weft_ctx *ctx, void *arg)
{
  struct stage *st = arg;
  weft__pipeline_name_self(st);
  struct slot *s;
  while (weft_chan_recv(st->work, &s, WEFT_NO_DEADLINE) == 0) {
    void *item = s->item;
    s->item = NULL;
    if (weft_ctx_err(ctx) != 0) {
      weft__pipeline_drop(st, item, true);
      weft_wg_done(&s->done);
      continue;
    }
    weft_pipeline_emitter em = {.st = st, .ctx = ctx, .slot = s};
    int rc = fn_result(st, ctx, st->fn.map(ctx, item, &em, st->arg));
    weft_wg_done(&s->done); /* after this the slot is the sequencer's */
    if (rc != 0)
      return rc;
  }
  return 0;
}

/* Send (or, once sending failed, drop) one slot's outputs in order, then free it. */
static int sequence_slot(struct stage *st, weft_ctx *ctx, struct slot *s, int rc)
{
  weft_wg_wait(&s->done);
  for (size_t i = 0; i < s->nouts; i++) {
    if (rc == 0)
      rc = weft_chan_send_ctx(st->out->ch, &s->outs[i], ctx);
    if (rc == 0)
      weft__pipeline_count(st, WEFT_PIPELINE_OUT, 1);
    else
      weft__pipeline_drop(st, s->outs[i], false);
  }
  free(s->outs);
  free(s);
  weft_sem_release(st->sem, 1);
  return rc;
}

static int sequencer_run(weft_ctx *ctx, void *arg)
{
  struct stage *st = arg;
  weft__pipeline_name_self(st);
  int rc = 0;
  struct slot *s;
  while (weft_chan_recv(st->order, &s, WEFT_NO_DEADLINE) == 0)
    rc = sequence_slot(st, ctx, s, rc);
  weft__pipeline_producer_done(st->out);
  return rc;
}

/* ---- building ---- */

weft_pipeline *weft_pipeline_new(weft_ctx *parent, const weft_pipeline_options *opts)
{
  weft_pipeline_options o = opts ? *opts : (weft_pipeline_options){0};
  weft_pipeline *p = calloc(1, sizeof *p);
  if (!p)
    return NULL;
  p->name = strdup(o.name ? o.name : "pipeline");
  p->ctx = weft_ctx_with_cancel(parent);
  if (!p->name || !p->ctx)
    goto err_free;
  p->metrics = o.metrics;
  p->clock = o.clock ? o.clock : weft_clock_real();
  p->capacity = o.capacity ? o.capacity : WEFT_PIPELINE_DEFAULT_CAPACITY;
  return p;
err_free:
  weft_ctx_release(p->ctx);
  free(p->name);
  free(p);
  return NULL;
}

static struct stage *find_stage(weft_pipeline *p, const char *name)
{
  for (size_t i = 0; i < p->nstages; i++)
    if (strcmp(p->stages[i]->name, name) == 0)
      return p->stages[i];
  return NULL;
}

static int grow(void *arrayp, size_t n, size_t *cap)
{
  void ***array = arrayp;
  if (n < *cap)
    return 0;
  size_t ncap = *cap ? 2 * *cap : 8;
  void **a = realloc(*array, ncap * sizeof *a);
  if (!a)
    return -ENOMEM;
  *array = a;
  *cap = ncap;
  return 0;
}

static struct edge *new_edge(weft_pipeline *p, struct stage *producer, size_t capacity)
{
  if (grow(&p->edges, p->nedges, &p->edges_cap) != 0)
    return NULL;
  struct edge *e = calloc(1, sizeof *e);
  if (!e)
    return NULL;
  e->producer = producer;
  e->capacity = capacity;
  p->edges[p->nedges++] = e;
  return e;
}

static void stage_free(struct stage *st)
{
  if (st) {
    free(st->name);
    free(st);
  }
}

/* A new stage of kind named from o (not yet linked), or NULL when out of memory. */
static struct stage *stage_new(weft_pipeline *p, enum stage_kind kind,
                               const weft_pipeline_stage_options *o)
{
  struct stage *st = calloc(1, sizeof *st);
  if (!st)
    return NULL;
  char def[32];
  snprintf(def, sizeof def, "stage%zu", p->nstages);
  st->name = strdup(o->name ? o->name : def);
  if (!st->name) {
    free(st);
    return NULL;
  }
  st->p = p;
  st->kind = kind;
  st->workers = o->workers ? o->workers : 1;
  st->flags = o->flags;
  st->free_item = o->free_item;
  return st;
}

/* Checks shared by every add: returns 0 or the error to report. */
static int check_add(weft_pipeline *p, const char *name, bool source)
{
  if (!p)
    return -EINVAL;
  if (p->state != BUILDING)
    return -EBUSY;
  if (p->has_sink ||
      (source && p->nstages > 0 && p->stages[p->nstages - 1]->kind != KIND_SOURCE))
    return -EINVAL;
  if (!source && p->nstages == 0)
    return -EINVAL;
  if (name && find_stage(p, name))
    return -EEXIST;
  return 0;
}

/* Link st after the last stage, with an output edge of capacity cap unless it is the
 * sink. Takes st (freed on failure). */
static int link_stage(weft_pipeline *p, struct stage *st, size_t cap)
{
  if (grow(&p->stages, p->nstages, &p->stages_cap) != 0)
    goto err_free;
  cap = cap ? cap : p->capacity;
  if (st->kind == KIND_SOURCE && p->nedges > 0) { /* merge into the sources' edge */
    st->out = p->edges[0];
    if (cap > st->out->capacity)
      st->out->capacity = cap;
  } else {
    st->in = p->nedges ? p->edges[p->nedges - 1] : NULL;
    if (st->kind != KIND_SINK && !(st->out = new_edge(p, st, cap)))
      goto err_free;
  }
  if (st->kind == KIND_SINK)
    p->has_sink = true;
  p->stages[p->nstages++] = st;
  return 0;
err_free:
  stage_free(st);
  return -ENOMEM;
}

int weft_pipeline_add_source(weft_pipeline *p, weft_pipeline_source_fn fn, void *arg,
                             const weft_pipeline_stage_options *opts)
{
  weft_pipeline_stage_options o = opts ? *opts : (weft_pipeline_stage_options){0};
  int rc = check_add(p, o.name, true);
  if (rc != 0)
    return rc;
  if (!fn || o.workers < 0 ||
      (p->nedges > 0 && o.free_item != p->edges[0]->producer->free_item))
    return -EINVAL;
  struct stage *st = stage_new(p, KIND_SOURCE, &o);
  if (!st)
    return -ENOMEM;
  st->fn.source = fn;
  st->arg = arg;
  return link_stage(p, st, o.capacity);
}

/* Add a map (map set) or the sink (sink set). */
static int add_worker_stage(weft_pipeline *p, weft_pipeline_map_fn map,
                            weft_pipeline_sink_fn sink, void *arg,
                            const weft_pipeline_stage_options *opts)
{
  weft_pipeline_stage_options o = opts ? *opts : (weft_pipeline_stage_options){0};
  int rc = check_add(p, o.name, false);
  if (rc != 0)
    return rc;
  if ((!map && !sink) || o.workers < 0 || (o.flags & ~WEFT_PIPELINE_ORDERED))
    return -EINVAL;
  struct stage *st = stage_new(p, sink ? KIND_SINK : KIND_MAP, &o);
  if (!st)
    return -ENOMEM;
  if (sink) {
    st->flags = 0;
    st->fn.sink = sink;
  } else {
    st->fn.map = map;
  }
  st->arg = arg;
  size_t cap = o.capacity ? o.capacity : p->capacity;
  st->window = o.window ? o.window : (size_t)st->workers > cap ? (size_t)st->workers : cap;
  return link_stage(p, st, o.capacity);
}

int weft_pipeline_add_map(weft_pipeline *p, weft_pipeline_map_fn fn, void *arg,
                          const weft_pipeline_stage_options *opts)
{
  return add_worker_stage(p, fn, NULL, arg, opts);
}

int weft_pipeline_add_sink(weft_pipeline *p, weft_pipeline_sink_fn fn, void *arg,
                           const weft_pipeline_stage_options *opts)
{
  return add_worker_stage(p, NULL, fn, arg, opts);
}

int weft_pipeline_add_batch(weft_pipeline *p, const weft_pipeline_batch_options *opts)
{
  if (!opts)
    return -EINVAL;
  int rc = check_add(p, opts->name, false);
  if (rc != 0)
    return rc;
  if (opts->max_items == 0 || opts->max_wait < 0)
    return -EINVAL;
  weft_pipeline_stage_options o = {.name = opts->name,
                                   .free_item = weft__pipeline_batch_free_cb};
  struct stage *st = stage_new(p, KIND_BATCH, &o);
  if (!st)
    return -ENOMEM;
  st->max_items = opts->max_items;
  st->max_wait = opts->max_wait;
  return link_stage(p, st, opts->capacity);
}

/* ---- starting ---- */

static void register_metrics(weft_pipeline *p)
{
  static const char *const labels[] = {"pipeline", "stage", "result"};
  static const char *const results[NCOUNTS] = {"in", "out", "error", "dropped"};
  weft_counter_vec *vec = NULL;
  weft_counter_vec_new(p->metrics, "weft_pipeline_items_total",
                       "Items through each pipeline stage: received (in), emitted or "
                       "handled (out), failed calls (error) and items dropped on cancel.",
                       3, labels, &vec);
  for (size_t i = 0; i < p->nstages; i++)
    for (int r = 0; r < NCOUNTS; r++)
      p->stages[i]->metric[r] =
          weft_counter_vec_with(vec, p->name, p->stages[i]->name, results[r]);
  for (size_t i = 0; i < p->nedges; i++) {
    struct edge *e = p->edges[i];
    char name[256];
    snprintf(name, sizeof name, "%s/%s", p->name, e->producer->name);
    e->registered = weft_metrics_register_chan(p->metrics, name, e->ch) == 0;
  }
}

/* Create the channels and semaphores of st. Returns 0 or -ENOMEM. */
static int stage_prepare(struct stage *st, weft_ctx *gctx)
{
  if (st->out && !st->out->ch) {
    st->out->ch = weft_chan_new(sizeof(void *), st->out->capacity);
    if (!st->out->ch)
      return -ENOMEM;
  }
  if (st->kind == KIND_BATCH)
    return weft__pipeline_batch_prepare(st, gctx);
  if (!(st->flags & WEFT_PIPELINE_ORDERED))
    return 0;
  st->sem = weft_sem_new((int64_t)st->window);
  st->order = weft_chan_new(sizeof(struct slot *), st->window);
  st->work = weft_chan_new(sizeof(struct slot *), 0);
  return st->sem && st->order && st->work ? 0 : -ENOMEM;
}

/* How many coroutines write into st's output edge. */
static int stage_producers(struct stage *st)
{
  if (st->kind == KIND_BATCH || (st->flags & WEFT_PIPELINE_ORDERED))
    return 1;
  return st->workers;
}

/* Start st's coroutines; for an ORDERED stage the reader first, so that whatever part
 * started always ends once the context is cancelled. */
static int stage_start(struct stage *st)
{
  weft_group *g = st->p->group;
  int rc = 0;
  if (st->kind == KIND_BATCH)
    return weft__pipeline_batch_start(st);
  if (st->flags & WEFT_PIPELINE_ORDERED) {
    rc = weft_group_go(g, reader_run, st);
    for (int i = 0; rc == 0 && i < st->workers; i++)
      rc = weft_group_go(g, ordered_worker_run, st);
    return rc ? rc : weft_group_go(g, sequencer_run, st);
  }
  for (int i = 0; rc == 0 && i < st->workers; i++)
    rc = weft_group_go(g, st->kind == KIND_SOURCE ? source_run : worker_run, st);
  return rc;
}

static int prepare_all(weft_pipeline *p)
{
  p->group = weft_group_new(p->ctx);
  if (!p->group)
    return -ENOMEM;
  weft_ctx *gctx = weft_group_ctx(p->group);
  p->src_ctx = weft_ctx_with_cancel(gctx);
  if (!p->src_ctx)
    return -ENOMEM;
  for (size_t i = 0; i < p->nstages; i++) {
    struct stage *st = p->stages[i];
    int rc = stage_prepare(st, gctx);
    if (rc != 0)
      return rc;
    if (st->out)
      atomic_fetch_add(&st->out->producers, stage_producers(st));
  }
  if (p->metrics)
    register_metrics(p);
  return 0;
}

static void drain_edges(weft_pipeline *p)
{
  for (size_t i = 0; i < p->nedges; i++) {
    struct edge *e = p->edges[i];
    void *item;
    while (e->ch && weft_chan_try_recv(e->ch, &item) == 0)
      weft__pipeline_drop(e->producer, item, false);
  }
}

int weft_pipeline_start(weft_pipeline *p)
{
  if (!p)
    return -EINVAL;
  if (p->state != BUILDING)
    return -EBUSY;
  if (p->nstages == 0 || !p->has_sink)
    return -EINVAL;
  int rc = prepare_all(p);
  if (rc != 0) { /* nothing started: the pipeline is done with rc */
    p->state = DONE;
    p->result = rc;
    return rc;
  }
  p->state = RUNNING;
  /* Downstream first, so consumers are waiting when the sources begin. */
  for (size_t i = p->nstages; rc == 0 && i-- > 0;)
    rc = stage_start(p->stages[i]);
  if (rc != 0) {
    weft_ctx_cancel_cause(p->ctx, rc);
    weft_pipeline_wait(p);
    p->result = rc;
  }
  return rc;
}

/* Debug builds: after a clean end every edge was closed by its producers and drained by
 * its consumers, and every ORDERED window is whole again (pipeline_internal.h). */
static void check_clean_end(weft_pipeline *p)
{
#ifndef NDEBUG
  for (size_t i = 0; i < p->nedges; i++) {
    struct edge *e = p->edges[i];
    if (atomic_load(&e->producers) != 0 || !weft_chan_is_closed(e->ch) || weft_chan_len(e->ch))
      weft__die("weft: pipeline \"%s\": edge of \"%s\" not closed and drained at a clean end",
                p->name, e->producer->name);
  }
  for (size_t i = 0; i < p->nstages; i++) {
    struct stage *st = p->stages[i];
    if (st->sem && weft_sem_try_acquire(st->sem, (int64_t)st->window) != 0)
      weft__die("weft: pipeline \"%s\": stage \"%s\" still holds window tokens", p->name,
                st->name);
  }
#else
  (void)p;
#endif
}

int weft_pipeline_wait(weft_pipeline *p)
{
  if (!p || p->state == BUILDING)
    return -EINVAL;
  if (p->state == DONE)
    return p->result;
  p->result = weft_group_wait(p->group);
  if (p->result == 0)
    check_clean_end(p);
  drain_edges(p);
  p->state = DONE;
  return p->result;
}

int weft_pipeline_run(weft_pipeline *p)
{
  int rc = weft_pipeline_start(p);
  return rc != 0 ? rc : weft_pipeline_wait(p);
}

void weft_pipeline_drain(weft_pipeline *p)
{
  if (!p)
    return;
  atomic_store(&p->draining, true);
  /* src_ctx is set by start before any coroutine runs; a drain racing start is the
   * caller's mistake (add/start/drain from the owner). */
  if (p->src_ctx)
    weft_ctx_cancel(p->src_ctx);
}

void weft_pipeline_cancel(weft_pipeline *p)
{
  if (p)
    weft_ctx_cancel(p->ctx);
}

weft_ctx *weft_pipeline_ctx(weft_pipeline *p)
{
  return p ? p->ctx : NULL;
}

int64_t weft_pipeline_stage_count(weft_pipeline *p, const char *stage,
                                  weft_pipeline_count which)
{
  if (!p || !stage || (int)which < 0 || which >= NCOUNTS)
    return -EINVAL;
  struct stage *st = find_stage(p, stage);
  if (!st)
    return -ENOENT;
  return atomic_load_explicit(&st->counts[which], memory_order_relaxed);
}

void weft_pipeline_batch_free(weft_pipeline_batch *b)
{
  if (!b)
    return;
  for (size_t i = 0; b->free_item && i < b->len; i++)
    if (b->items[i])
      b->free_item(b->items[i]);
  free(b);
}

/* ---- freeing ---- */

static void stage_release(struct stage *st)
{
  if (st->kind == KIND_BATCH)
    weft__pipeline_batch_release(st);
  weft_sem_free(st->sem);
  weft_chan_release(st->order);
  weft_chan_release(st->work);
  stage_free(st);
}

void weft_pipeline_free(weft_pipeline *p)
{
  if (!p)
    return;
  if (p->state == RUNNING)
    weft__die("weft: weft_pipeline_free(\"%s\") while it runs: call weft_pipeline_wait first",
              p->name);
  for (size_t i = 0; i < p->nedges; i++) {
    struct edge *e = p->edges[i];
    if (e->registered)
      weft_metrics_unregister_chan(p->metrics, e->ch);
    weft_chan_release(e->ch);
    free(e);
  }
  for (size_t i = 0; i < p->nstages; i++)
    stage_release(p->stages[i]);
  weft_ctx_release(p->src_ctx);
  weft_group_free(p->group);
  weft_ctx_release(p->ctx);
  free(p->edges);
  free(p->stages);
  free(p->name);
  free(p);
}
