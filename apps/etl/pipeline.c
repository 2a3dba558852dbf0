/* pipeline.c: the stages of etl.md ("Shape") on weft/pipeline.h, and the drain.
 *
 *   source ─▶ decode ─▶ enrich (--enrich-concurrency, unordered) ─▶ batch ─▶ sink (1)
 *
 * Every edge holds --channel-capacity items. One error group: a stage that returns an
 * error stops them all (exit 1). The sink writes a batch in one transaction and only then
 * acks its messages on the source, so a message is acked only once durably written.
 *
 * Stopping:
 *   end of input   the source returns 0; everything drains; exit 0.
 *   first signal   weft_pipeline_drain: the source stops taking messages and what it
 *                  emitted drains through enrich and sink; then the source is closed with
 *                  a commit; exit 0. The whole drain is bounded by --drain-timeout.
 *   second signal  or the drain timeout: _exit(1) at once, nothing more committed (what
 *                  was not acked is read again by the next run).
 *   fail policy    the enrich worker that could not enrich an event drops it (never
 *                  acked) and drains the pipeline as a signal would: what was complete is
 *                  written; exit 1. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "etl.h"

#define DECODE_WORKERS 4

static int source_fn(weft_ctx *ctx, weft_pipeline_emitter *out, void *arg)
{
  etl_app *app = arg;
  for (;;) {
    etl_message *m = NULL;
    int rc = app->source->ops->next(app->source, ctx, &m);
    if (rc == -EPIPE)
      return 0; /* end of the file or stdin */
    if (rc)
      return rc; /* after a drain the context's error counts as a clean end */
    etl_item *it = calloc(1, sizeof *it);
    if (!it) {
      etl_message_free(m);
      return -ENOMEM;
    }
    it->msg = m;
    if ((rc = weft_pipeline_emit(out, it)))
      return rc;
  }
}

static void item_free(void *item)
{
  etl_item_free(item);
}

static int decode_fn(weft_ctx *ctx, void *item, weft_pipeline_emitter *out, void *arg)
{
  (void)ctx, (void)arg;
  etl_event_decode(item);
  return weft_pipeline_emit(out, item);
}

/* --on-enrich-failure fail: drop it unacked and stop taking events. */
static void fail_pipeline(etl_app *app, etl_item *it)
{
  weft_log_error(app->log, NULL, "enrichment failed: stopping (--on-enrich-failure fail)",
                 WEFT_STR("event_id", it->row.event_id), WEFT_STR("missing", it->row.missing));
  atomic_store_explicit(&app->failed, 1, memory_order_relaxed);
  etl_item_free(it);
  weft_pipeline_drain(app->pipeline);
}

static int enrich_fn(weft_ctx *ctx, void *item, weft_pipeline_emitter *out, void *arg)
{
  etl_app *app = arg;
  etl_item *it = item;
  if (it->kind == ETL_ITEM_ROW) {
    int rc = etl_enrich(app->enricher, ctx, it);
    if (rc)
      return etl_item_free(it), rc;
    if (it->row.missing[0] && app->o->on_failure == ETL_FAIL)
      return fail_pipeline(app, it), 0;
    if (it->row.missing[0] && app->o->on_failure == ETL_DLQ)
      etl_item_dead(it, "enrich", "enrichment failed: %s", it->row.missing);
  }
  return weft_pipeline_emit(out, it);
}

static int sink_fn(weft_ctx *ctx, void *item, void *arg)
{
  etl_app *app = arg;
  weft_pipeline_batch *b = item;
  (void)ctx;
  int64_t start = weft_now();
  etl_item *const *items = (etl_item *const *)b->items;
  int rc = app->sink->ops->write(app->sink, items, b->len);
  if (rc == 0) {
    etl_metrics_written(app, items, b->len, weft_now() - start);
    for (size_t i = 0; i < b->len; i++)
      app->source->ops->ack(app->source, &items[i]->msg->origin);
  } else {
    weft_log_error(app->log, NULL, "sink write failed", WEFT_ERRNO("err", rc),
                   WEFT_INT("rows", (int64_t)b->len));
  }
  weft_pipeline_batch_free(b);
  return rc;
}

static weft_pipeline *build(etl_app *app)
{
  const etl_opts *o = app->o;
  weft_pipeline *p = weft_pipeline_new(
      NULL, &(weft_pipeline_options){
                .name = "etl", .metrics = app->reg, .capacity = o->channel_capacity});
  if (!p)
    return NULL;
  int rc = weft_pipeline_add_source(
      p, source_fn, app,
      &(weft_pipeline_stage_options){.name = "source", .free_item = item_free});
  rc = rc ? rc
          : weft_pipeline_add_map(p, decode_fn, app,
                                  &(weft_pipeline_stage_options){.name = "decode",
                                                                 .workers = DECODE_WORKERS,
                                                                 .free_item = item_free});
  rc =
      rc ? rc
         : weft_pipeline_add_map(
               p, enrich_fn, app,
               &(weft_pipeline_stage_options){
                   .name = "enrich", .workers = o->enrich_concurrency, .free_item = item_free});
  rc = rc ? rc
          : weft_pipeline_add_batch(
                p, &(weft_pipeline_batch_options){
                       .name = "batch", .max_items = o->batch_size, .max_wait = o->batch_wait});
  rc = rc ? rc
          : weft_pipeline_add_sink(p, sink_fn, app,
                                   &(weft_pipeline_stage_options){.name = "sink"});
  if (rc)
    return weft_pipeline_free(p), NULL;
  return p;
}

/* What the signal watcher shares with etl_run. */
typedef struct watch {
  etl_app *app;
  weft_signal_ctx *sc;
  weft_chan *finished; /* closed by etl_run once the pipeline and the source are done */
  weft_wg *wg;         /* done when the watcher returns */
} watch;

/* Wait for a signal; drain; exit 1 at once on a second one or the drain timeout. */
static void watch_main(void *arg)
{
  watch *w = arg;
  etl_app *app = w->app;
  weft_select_case first[2] = {
      {.ch = w->finished, .dir = WEFT_SELECT_RECV},
      {.ch = weft_ctx_done(weft_signal_ctx_ctx(w->sc)), .dir = WEFT_SELECT_RECV}};
  if (weft_select(first, 2, 0, WEFT_NO_DEADLINE) == 1) {
    int signo = weft_signal_ctx_signal(w->sc);
    weft_log_info(app->log, NULL, "draining",
                  WEFT_STR("signal", signo ? strsignal(signo) : "?"),
                  WEFT_DUR("timeout", app->o->drain_timeout));
    atomic_store_explicit(&app->draining, 1, memory_order_relaxed);
    weft_pipeline_drain(app->pipeline);
    weft_select_case again[2] = {{.ch = w->finished, .dir = WEFT_SELECT_RECV},
                                 {.ch = weft_signal_ctx_again(w->sc), .dir = WEFT_SELECT_RECV}};
    int which = weft_select(again, 2, 0, weft_now() + app->o->drain_timeout);
    if (which != 0) {
      weft_log_error(app->log, NULL,
                     which == 1 ? "second signal: exiting now"
                                : "drain timed out: exiting now");
      _exit(1);
    }
  }
  weft_wg_done(w->wg);
}

int etl_run(etl_app *app, weft_signal_ctx *sc)
{
  weft_pipeline *p = build(app);
  weft_chan *finished = weft_chan_new(1, 0);
  if (!p || !finished) {
    weft_pipeline_free(p);
    weft_chan_release(finished);
    return 1;
  }
  app->pipeline = p;
  weft_wg wg = WEFT_WG_INIT;
  watch w = {app, sc, finished, &wg};
  weft_wg_add(&wg, 1);
  if (weft_go_named(watch_main, &w, "etl signals") < 0)
    weft_wg_done(&wg);
  int rc = weft_pipeline_run(p);
  if (rc)
    weft_log_error(app->log, NULL, "pipeline stopped", WEFT_ERRNO("err", rc));
  weft_ctx *cctx = weft_ctx_with_timeout(NULL, app->o->drain_timeout);
  pthread_mutex_lock(&app->source_mu);
  etl_source *src = app->source;
  app->source = NULL;
  pthread_mutex_unlock(&app->source_mu);
  int crc = src->ops->close(src, cctx, true);
  weft_ctx_release(cctx);
  if (crc)
    weft_log_error(app->log, NULL, "closing the source failed", WEFT_ERRNO("err", crc));
  weft_chan_close(finished);
  weft_wg_wait(&wg);
  weft_chan_release(finished);
  app->pipeline = NULL;
  weft_pipeline_free(p);
  bool failed = atomic_load_explicit(&app->failed, memory_order_relaxed);
  return rc || crc || failed ? 1 : 0;
}
