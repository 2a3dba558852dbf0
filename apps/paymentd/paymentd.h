/* paymentd.h: the pieces of paymentd and what they share.
 *
 * main.c parses the flags into a pay_opts, opens the store, starts the pool, the HTTP
 * server and the debug server, and runs the shutdown. api.c answers HTTP: it checks and
 * validates every request itself (bad input never reaches a worker) and hands each valid
 * confirmation to worker.c, which queues it on the weft_pool without ever waiting for
 * room (a full queue is a 429) and keeps the set of ids in flight. metrics.c owns the
 * Prometheus families. store.h is the storage interface. */
#ifndef PAYMENTD_H
#define PAYMENTD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <weft/weft.h>

#include "store.h"

/* The flags (paymentd.md), after defaults. Read-only once the service runs. */
typedef struct pay_opts {
  const char *listen;       /* API address */
  const char *debug_listen; /* "": no debug server */
  int workers;              /* 0: the number of scheduler threads */
  long queue;               /* job queue capacity */
  const char *store;        /* "sqlite:PATH", "memory:" or a postgres:// URL */
  int64_t work_ms;          /* simulated processing latency per confirmation */
  int64_t request_timeout;  /* ns */
  int64_t shutdown_timeout; /* ns */
  bool log_json;            /* else text */
  int log_level;            /* WEFT_LOG_* */
  const char *auth_tokens;  /* a file of bearer tokens, or NULL */
} pay_opts;

/* ---- worker.c: the in-flight set and the jobs ---- */

#define PAY_INFLIGHT_BUCKETS 1024

typedef struct pay_inflight_node pay_inflight_node;
typedef struct pay_inflight {
  weft_mutex mu; /* guards buckets; never held across a park */
  pay_inflight_node *buckets[PAY_INFLIGHT_BUCKETS]; /* guarded by mu */
} pay_inflight;

/* ---- metrics.c ---- */

/* The routes of the metrics' route label. */
enum pay_route {
  PAY_ROUTE_CONFIRM,
  PAY_ROUTE_GET,
  PAY_ROUTE_HEALTHZ,
  PAY_ROUTE_METRICS,
  PAY_ROUTE_UNKNOWN,
  PAY_ROUTES
};

/* Status codes 100..599: the request counters' cache (metrics.c). */
enum { PAY_CODE_MIN = 100, PAY_CODES = 500 };

typedef struct pay_metrics {
  weft_counter_vec *requests;   /* paymentd_http_requests_total{route,code} */
  weft_histogram_vec *duration; /* paymentd_http_request_duration_seconds{route} */
  /* The children of those two by route (and code), looked up once: a family's lookup by
   * label takes its lock and hashes the strings, and a child is never dropped. */
  weft_histogram *duration_by_route[PAY_ROUTES];           /* set at init */
  _Atomic(weft_counter *) (*requests_by_route)[PAY_CODES]; /* [PAY_ROUTES]; filled lazily */
  weft_counter *rejected;                                  /* paymentd_rejected_total */
  weft_counter_vec *confirmations; /* paymentd_confirmations_total{result} */
  weft_histogram *processing;      /* paymentd_processing_duration_seconds */
} pay_metrics;

/* The service's state, shared by every coroutine. */
typedef struct pay_app {
  const pay_opts *o;
  int workers;                /* resolved --workers */
  pay_store *store;           /* read-only pointer once serving */
  weft_pool *pool;            /* read-only pointer once serving */
  weft_logger *log;           /* read-only once serving */
  weft_metrics_registry *reg; /* the process's registry (the dashboard's too) */
  pay_metrics m;              /* families: read-only pointers once serving */
  pay_inflight inflight;      /* its own lock */
  char **tokens;              /* bearer tokens; read-only once serving */
  size_t ntokens;             /* 0 with no --auth-tokens */
  bool auth;                  /* --auth-tokens was given */
  atomic_int shutting_down;   /* atomic, relaxed: a flag read on each request; seeing
                                 it late only lets one more job into a closed pool,
                                 which refuses it with -EPIPE (503) */
} pay_app;

/* The outcome of a confirmation (>= 0), else a negative errno. */
enum pay_result { PAY_CONFIRMED = 0, PAY_REPLAYED = 1, PAY_CONFLICT = 2 };

/* pay_confirm: queue the validated request req and wait for its outcome under ctx until
 * deadline (weft_now() ns). On PAY_CONFIRMED and PAY_REPLAYED *out is the stored record.
 * Returns a pay_result, or -EBUSY (id in flight: 409 in_progress), -EAGAIN (queue full:
 * 429), -EPIPE (pool closed: 503), -ETIMEDOUT or ctx's error (504: the job goes on),
 * -ECANCELED (abandoned at a shutdown deadline: 503), -EIO (store failed: 500), -ENOMEM.
 * Coroutine, may park. */
int pay_confirm(pay_app *app, const pay_record *req, weft_ctx *ctx, int64_t deadline,
                pay_record *out);
/* pay_pool_start: the pool of app->workers over --queue. 0 or a negative errno. */
int pay_pool_start(pay_app *app);
void pay_inflight_init(pay_inflight *f);

/* ---- api.c ---- */

/* The HTTP handler (arg: the app). */
void pay_api_serve(weft_http_response *w, weft_http_request *r, void *arg);
/* pay_api_init: build the router. 0 or a negative errno. */
int pay_api_init(pay_app *app);
void pay_api_free(void);
/* pay_load_tokens: read --auth-tokens. 0, or -errno after writing the reason into err. */
int pay_load_tokens(pay_app *app, const char *path, char *err, size_t errlen);

/* ---- metrics.c ---- */

int pay_metrics_init(pay_app *app);
/* pay_metrics_fini: stop reading the pool at scrapes (before it is freed). */
void pay_metrics_fini(pay_app *app);
void pay_metrics_request(pay_app *app, enum pay_route route, int code, int64_t ns);
void pay_metrics_confirmation(pay_app *app, int result);
void pay_metrics_rejected(pay_app *app);
void pay_metrics_processing(pay_app *app, int64_t ns);
/* pay_metrics_text: the Prometheus text of the registry (new, free()), or NULL. */
char *pay_metrics_text(pay_app *app, size_t *len);

#endif
