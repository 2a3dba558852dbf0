/* metrics.c: paymentd's Prometheus families (paymentd.md), in the process's registry so
 * that the debug server's dashboard shows them too, beside the runtime's own metrics
 * (coroutines, scheduler threads) and the process's (resident memory).
 *
 * The queue and worker gauges are not kept up to date by the request path: a collector
 * reads the pool's stats at each scrape, so they cost nothing between scrapes. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/metrics.h"
#include "paymentd.h"

static const char *const route_names[PAY_ROUTES] = {[PAY_ROUTE_CONFIRM] = "confirm",
                                                    [PAY_ROUTE_GET] = "get_payment",
                                                    [PAY_ROUTE_HEALTHZ] = "healthz",
                                                    [PAY_ROUTE_METRICS] = "metrics",
                                                    [PAY_ROUTE_UNKNOWN] = "unknown"};

static void collect(weft_metrics_emitter *em, void *arg)
{
  pay_app *app = arg;
  weft_pool_stats st = {0};
  if (app->pool)
    weft_pool_stats_read(app->pool, &st);
  weft_metrics_emit(em, "paymentd_queue_depth", "Confirmations waiting for a worker.",
                    WEFT_METRIC_GAUGE, (double)st.queue_depth, 0, NULL, NULL);
  weft_metrics_emit(em, "paymentd_queue_capacity", "Capacity of the job queue.",
                    WEFT_METRIC_GAUGE, (double)app->o->queue, 0, NULL, NULL);
  weft_metrics_emit(em, "paymentd_workers", "Worker coroutines.", WEFT_METRIC_GAUGE,
                    (double)app->workers, 0, NULL, NULL);
  weft_metrics_emit(em, "paymentd_workers_busy", "Workers processing a confirmation.",
                    WEFT_METRIC_GAUGE, (double)st.busy, 0, NULL, NULL);
}

int pay_metrics_init(pay_app *app)
{
  pay_metrics *m = &app->m;
  static const double work_buckets[] = {.001, .0025, .005, .01, .025, .05,
                                        .1,   .25,   .5,   1,   2.5,  5};
  int rc = weft_counter_vec_new(app->reg, "paymentd_http_requests_total",
                                "HTTP requests by route and status code.", 2,
                                (const char *[]){"route", "code"}, &m->requests);
  rc = rc ? rc
          : weft_histogram_vec_new(app->reg, "paymentd_http_request_duration_seconds",
                                   "HTTP request latency by route.", 0, NULL, 1,
                                   (const char *[]){"route"}, &m->duration);
  rc = rc ? rc
          : weft_counter_new(app->reg, "paymentd_rejected_total",
                             "Confirmations refused with 429 (queue full).", &m->rejected);
  rc = rc ? rc
          : weft_counter_vec_new(app->reg, "paymentd_confirmations_total",
                                 "Processed confirmations by result.", 1,
                                 (const char *[]){"result"}, &m->confirmations);
  rc = rc ? rc
          : weft_histogram_new(app->reg, "paymentd_processing_duration_seconds",
                               "Time a worker spends on one confirmation.",
                               (int)(sizeof work_buckets / sizeof *work_buckets), work_buckets,
                               &m->processing);
  for (int r = 0; !rc && r < PAY_ROUTES; r++)
    if (!(m->duration_by_route[r] = weft_histogram_vec_with(m->duration, route_names[r])))
      rc = -ENOMEM;
  if (!rc && !(m->requests_by_route = calloc(PAY_ROUTES, sizeof *m->requests_by_route)))
    rc = -ENOMEM;
  return rc ? rc : app_metrics_register_std(app->reg, collect, app);
}

/* The counter of route and code, looked up in the family the first time only. Two
 * coroutines racing on a first lookup get the same child and store the same pointer. */
static weft_counter *request_counter(pay_metrics *m, enum pay_route route, int code)
{
  bool cached = code >= PAY_CODE_MIN && code < PAY_CODE_MIN + PAY_CODES;
  _Atomic(weft_counter *) *slot =
      cached ? &m->requests_by_route[route][code - PAY_CODE_MIN] : NULL;
  weft_counter *ctr = slot ? atomic_load_explicit(slot, memory_order_acquire) : NULL;
  if (ctr)
    return ctr;
  char c[12];
  snprintf(c, sizeof c, "%d", code);
  ctr = weft_counter_vec_with(m->requests, route_names[route], c);
  if (ctr && slot)
    atomic_store_explicit(slot, ctr, memory_order_release);
  return ctr;
}

void pay_metrics_request(pay_app *app, enum pay_route route, int code, int64_t ns)
{
  weft_counter *ctr = request_counter(&app->m, route, code);
  if (ctr)
    weft_counter_inc(ctr);
  weft_histogram_observe_ns(app->m.duration_by_route[route], ns);
}

void pay_metrics_confirmation(pay_app *app, int result)
{
  static const char *const names[] = {"confirmed", "replayed", "conflict"};
  weft_counter *c = weft_counter_vec_with(app->m.confirmations, names[result]);
  if (c)
    weft_counter_inc(c);
}

void pay_metrics_rejected(pay_app *app)
{
  weft_counter_inc(app->m.rejected);
}

void pay_metrics_processing(pay_app *app, int64_t ns)
{
  weft_histogram_observe_ns(app->m.processing, ns);
}

char *pay_metrics_text(pay_app *app, size_t *len)
{
  return app_metrics_text(app->reg, len);
}

void pay_metrics_fini(pay_app *app)
{
  weft_metrics_unregister_collector(app->reg, collect, app);
  free(app->m.requests_by_route);
  app->m.requests_by_route = NULL;
}
