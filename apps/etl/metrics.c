/* metrics.c: weft-etl's Prometheus families (etl.md, "Observability"), in the process's
 * registry so the debug server's dashboard shows them too.
 *
 * Who keeps what:
 *   events in and out per stage   weft_pipeline_items_total{pipeline="etl",stage,result}
 *                                 (kept by weft/pipeline.h)
 *   depth of every channel        weft_chan_length / weft_chan_capacity{chan="etl/<stage>"}
 *                                 (registered by weft/pipeline.h)
 *   breaker state per API         weft_breaker_state{breaker="users|geo|fx"} and its
 *                                 calls and transitions (kept by weft/breaker.h)
 *   enrichment latency, retries   etl_enrich_call_duration_seconds{api},
 *                                 etl_enrich_calls_total{api,result},
 *                                 etl_enrich_retries_total{api}      (here)
 *   dead letters, rows written    etl_dead_letters_total{reason}, etl_rows_written_total
 *                                 {status}, etl_sink_batches_total, etl_sink_batch_duration_
 *                                 seconds                            (here)
 *   consumer lag                  etl_consumer_lag: the source's lag() read at each scrape
 *                                 (-1 when unknown: files and stdin) (here) */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/metrics.h"
#include "etl.h"

static void collect(weft_metrics_emitter *em, void *arg)
{
  etl_app *app = arg;
  /* The source is closed by etl_run after the pipeline; a scrape after that reads -1. */
  pthread_mutex_lock(&app->source_mu);
  double lag = app->source ? (double)app->source->ops->lag(app->source) : -1;
  pthread_mutex_unlock(&app->source_mu);
  weft_metrics_emit(em, "etl_consumer_lag",
                    "Messages behind the end of the log, over the assigned partitions "
                    "(-1: unknown).",
                    WEFT_METRIC_GAUGE, lag, 0, NULL, NULL);
  weft_metrics_emit(
      em, "etl_draining", "1 once a signal asked the pipeline to drain.", WEFT_METRIC_GAUGE,
      (double)atomic_load_explicit(&app->draining, memory_order_relaxed), 0, NULL, NULL);
}

int etl_metrics_init(etl_app *app)
{
  etl_metrics *m = &app->m;
  static const double buckets[] = {.001, .0025, .005, .01, .025, .05, .1,
                                   .25,  .5,    1,    2.5, 5,    10};
  int nb = (int)(sizeof buckets / sizeof *buckets);
  int rc = weft_histogram_vec_new(app->reg, "etl_enrich_call_duration_seconds",
                                  "Enrichment calls (retries included) by API.", nb, buckets, 1,
                                  (const char *[]){"api"}, &m->latency);
  rc = rc ? rc
          : weft_counter_vec_new(app->reg, "etl_enrich_calls_total",
                                 "Enrichment calls by API and result (ok, not_found, failed, "
                                 "rejected by the breaker, canceled).",
                                 2, (const char *[]){"api", "result"}, &m->calls);
  rc = rc ? rc
          : weft_counter_vec_new(app->reg, "etl_enrich_retries_total",
                                 "Attempts retried after a timeout, connection error or 5xx.",
                                 1, (const char *[]){"api"}, &m->retries);
  rc = rc ? rc
          : weft_counter_vec_new(app->reg, "etl_dead_letters_total",
                                 "Dead letters written, by reason (decode, enrich).", 1,
                                 (const char *[]){"reason"}, &m->dead);
  rc = rc ? rc
          : weft_counter_vec_new(app->reg, "etl_rows_written_total",
                                 "enriched_events rows written, by status.", 1,
                                 (const char *[]){"status"}, &m->rows);
  rc = rc ? rc
          : weft_counter_new(app->reg, "etl_sink_batches_total", "Batches committed.",
                             &m->batches);
  rc = rc ? rc
          : weft_histogram_new(app->reg, "etl_sink_batch_duration_seconds",
                               "Time to write and commit one batch.", nb, buckets,
                               &m->batch_time);
  return rc ? rc : app_metrics_register_std(app->reg, collect, app);
}

void etl_metrics_fini(etl_app *app)
{
  weft_metrics_unregister_collector(app->reg, collect, app);
}

static const char *const call_result_names[ETL_CALL_RESULTS] = {
    [ETL_CALL_OK] = "ok",
    [ETL_CALL_NOT_FOUND] = "not_found",
    [ETL_CALL_REJECTED] = "rejected",
    [ETL_CALL_CANCELED] = "canceled",
    [ETL_CALL_FAILED] = "failed",
};

/* The child of vec for values[0..n), from slot, looked up and cached at first use. NULL
 * when out of memory (counted nowhere, as before caching). */
static weft_counter *counter_child(_Atomic(weft_counter *) *slot, weft_counter_vec *vec, int n,
                                   const char *const *values)
{
  weft_counter *c = atomic_load_explicit(slot, memory_order_acquire);
  if (!c && (c = weft_counter_vec_with_values(vec, n, values)) != NULL)
    atomic_store_explicit(slot, c, memory_order_release);
  return c;
}

static weft_histogram *latency_child(etl_metrics *m, int api)
{
  weft_histogram *h = atomic_load_explicit(&m->latency_of[api], memory_order_acquire);
  if (!h && (h = weft_histogram_vec_with(m->latency, etl_api_names[api])) != NULL)
    atomic_store_explicit(&m->latency_of[api], h, memory_order_release);
  return h;
}

void etl_metrics_call(etl_app *app, int api, etl_call_result result, int64_t ns)
{
  etl_metrics *m = &app->m;
  weft_histogram *h = latency_child(m, api);
  if (h)
    weft_histogram_observe_ns(h, ns);
  const char *values[] = {etl_api_names[api], call_result_names[result]};
  weft_counter *c = counter_child(&m->calls_of[api][result], m->calls, 2, values);
  if (c)
    weft_counter_inc(c);
}

void etl_metrics_retry(etl_app *app, int api)
{
  etl_metrics *m = &app->m;
  weft_counter *c = counter_child(&m->retries_of[api], m->retries, 1, &etl_api_names[api]);
  if (c)
    weft_counter_inc(c);
}

void etl_metrics_written(etl_app *app, etl_item *const *items, size_t n, int64_t ns)
{
  for (size_t i = 0; i < n; i++) {
    const etl_item *it = items[i];
    weft_counter *c =
        it->kind == ETL_ITEM_DEAD
            ? weft_counter_vec_with(app->m.dead, it->dead_kind ? it->dead_kind : "decode")
            : weft_counter_vec_with(app->m.rows, it->row.missing[0] ? "partial" : "complete");
    if (c)
      weft_counter_inc(c);
  }
  weft_counter_inc(app->m.batches);
  weft_histogram_observe_ns(app->m.batch_time, ns);
}

char *etl_metrics_text(etl_app *app, size_t *len)
{
  return app_metrics_text(app->reg, len);
}
