/* etl.h: the pieces of weft-etl and what they share (etl.md).
 *
 *   source ──▶ decode ──▶ enrich (N workers, unordered) ──▶ batch ──▶ sink
 *
 * main.c parses the flags into an etl_opts, opens the sink and the source, starts the
 * servers and runs pipeline.c, which joins the stages with weft/pipeline.h. Every stage
 * passes one etl_item along: the source fills msg, event.c decodes it into row (or a dead
 * letter), enrich.c fills in the enrichments, and the sink (sink.c, sink_sqlite.c) writes
 * a batch in one transaction and only then acks each item's message on the source
 * (source.h: the delivery rule). metrics.c owns the Prometheus families.
 *
 * Ownership: an item belongs to the stage holding it; etl_item_free frees it with its
 * message. The app (etl_app) is read-only once the pipeline runs, except the fields that
 * say otherwise. */
#ifndef ETL_H
#define ETL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <weft/weft.h>

#include "source.h"

/* --on-enrich-failure */
typedef enum etl_policy { ETL_PARTIAL = 0, ETL_DLQ, ETL_FAIL } etl_policy;

/* The flags (etl.md), after defaults. Read-only once the service runs. */
typedef struct etl_opts {
  const char *source;       /* "kafka://...", "file:PATH" or "-" */
  const char *sink;         /* "sqlite:PATH" or "postgres://..." */
  const char *api[3];       /* base URLs of users, geo, fx (ETL_API_*) */
  const char *listen;       /* /metrics and /healthz */
  const char *debug_listen; /* "": no debug server */
  int enrich_concurrency;   /* enrich workers */
  size_t channel_capacity;  /* every edge */
  size_t batch_size;        /* rows per transaction at most */
  int64_t batch_wait;       /* ns a row waits for its batch at most */
  int64_t call_timeout;     /* ns, per attempt */
  int retries;              /* attempts per call */
  int breaker_failures;     /* consecutive failed calls that open a breaker */
  int64_t breaker_open;     /* ns a breaker stays open before one probe */
  int64_t drain_timeout;    /* ns a graceful stop may take */
  etl_policy on_failure;
  bool log_json; /* else text */
  int log_level; /* WEFT_LOG_* */
} etl_opts;

/* ---- the record that travels down the pipeline ---- */

enum { ETL_API_USERS = 0, ETL_API_GEO, ETL_API_FX, ETL_API_COUNT };

/* One row of enriched_events. Strings are malloc'd; NULL columns are NULL pointers. */
typedef struct etl_row {
  char *event_id, *ts, *user_id, *ip, *currency; /* from the event; never NULL */
  int64_t amount_cents;
  char *tier, *user_country; /* users; NULL when not had or 404 */
  char *ip_country, *city;   /* geo */
  bool has_usd;              /* fx answered with a rate */
  int64_t amount_usd_cents;  /* when has_usd */
  char missing[16];          /* "users,geo,fx" order; "" when complete */
} etl_row;

/* What an item is, after the stage that last touched it. */
typedef enum etl_item_kind { ETL_ITEM_RAW = 0, ETL_ITEM_ROW, ETL_ITEM_DEAD } etl_item_kind;

typedef struct etl_item {
  etl_message *msg; /* raw bytes and origin; acked after the sink's commit */
  etl_item_kind kind;
  etl_row row;           /* ETL_ITEM_ROW (event fields also set for a failed enrichment) */
  char *error;           /* ETL_ITEM_DEAD: the reason (malloc'd) */
  char *dead_id;         /* ETL_ITEM_DEAD: the event_id when one was read, else NULL */
  const char *dead_kind; /* "decode" or "enrich": the dead-letter metric's reason */
} etl_item;

void etl_item_free(etl_item *it);
/* etl_item_dead: turn it into a dead letter with reason (printf). Never fails: when
 * memory runs out the reason is a fixed text. */
void etl_item_dead(etl_item *it, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- event.c ---- */

/* etl_event_decode: parse and validate it->msg into it->row (kind ROW), or make it a
 * dead letter with the reason (kind DEAD). Any thread; never parks. */
void etl_event_decode(etl_item *it);

/* ---- sink.c / sink_sqlite.c ---- */

typedef struct etl_sink etl_sink;
typedef struct etl_sink_ops {
  const char *name;
  /* write: rows and dead letters of items[0..n) in one transaction, durably. 0 or a
   * negative errno (nothing of the batch is then stored). Coroutine, may park (the
   * database work runs on the blocking pool). One caller at a time. */
  int (*write)(etl_sink *s, etl_item *const *items, size_t n);
  /* close: free s. Coroutine, may park. */
  void (*close)(etl_sink *s);
} etl_sink_ops;
struct etl_sink {
  const etl_sink_ops *ops;
};

/* etl_sink_open: "sqlite:PATH" or "postgres://..." (not in this build: -ENOTSUP). On
 * failure a one-line reason in err. Coroutine, may park. */
int etl_sink_open(const char *spec, etl_sink **out, char *err, size_t errlen);
int etl_sink_sqlite_open(const char *path, etl_sink **out, char *err, size_t errlen);
/* sink_pg.c, built with ETL_HAVE_PG: url is "postgres://..." or "postgresql://...". */
int etl_sink_pg_open(const char *url, etl_sink **out, char *err, size_t errlen);
/* etl_now_rfc3339: the current UTC time, "2006-01-02T15:04:05.000000Z". */
void etl_now_rfc3339(char *buf, size_t len);

/* ---- enrich.c ---- */

typedef struct etl_enricher etl_enricher;
struct etl_app;
/* etl_enricher_new: the HTTP client, the breakers and the retry settings from app's
 * options. NULL when out of memory. Any thread. */
etl_enricher *etl_enricher_new(struct etl_app *app);
void etl_enricher_free(etl_enricher *e);
/* etl_enrich: call the three APIs for it->row concurrently and fill in what they answer;
 * it->row.missing lists what failed. Returns 0, or ctx's error once ctx is done (the row
 * is then incomplete and must not be written). Coroutine, may park. */
int etl_enrich(etl_enricher *e, weft_ctx *ctx, etl_item *it);

/* ---- metrics.c ---- */

/* The result label of one enrichment call (etl_enrich_calls_total{result}). */
typedef enum etl_call_result {
  ETL_CALL_OK = 0,    /* "ok" */
  ETL_CALL_NOT_FOUND, /* "not_found" */
  ETL_CALL_REJECTED,  /* "rejected" (by the breaker) */
  ETL_CALL_CANCELED,  /* "canceled" */
  ETL_CALL_FAILED,    /* "failed" */
  ETL_CALL_RESULTS
} etl_call_result;

typedef struct etl_metrics {
  weft_histogram_vec *latency; /* etl_enrich_call_duration_seconds{api} */
  weft_counter_vec *retries;   /* etl_enrich_retries_total{api} */
  weft_counter_vec *calls;     /* etl_enrich_calls_total{api,result} */
  weft_counter_vec *dead;      /* etl_dead_letters_total{reason} */
  weft_counter_vec *rows;      /* etl_rows_written_total{status} */
  weft_counter *batches;       /* etl_sink_batches_total */
  weft_histogram *batch_time;  /* etl_sink_batch_duration_seconds */
  /* The children of latency, calls and retries that the enrichment calls touch, looked up
   * at first use rather than per call (a vec lookup hashes the labels under a lock). A
   * child lives as long as its vec. Atomic, release/acquire: whoever fills a slot stores
   * the pointer the vec handed out, after the vec made the child; readers then see it
   * made. NULL until first used, so /metrics shows a series only once it was counted. */
  _Atomic(weft_histogram *) latency_of[ETL_API_COUNT];
  _Atomic(weft_counter *) calls_of[ETL_API_COUNT][ETL_CALL_RESULTS];
  _Atomic(weft_counter *) retries_of[ETL_API_COUNT];
} etl_metrics;

/* ---- the app ---- */

typedef struct etl_app {
  const etl_opts *o;
  weft_logger *log;
  weft_metrics_registry *reg; /* the process's registry (the dashboard's too) */
  etl_metrics m;              /* read-only pointers once running */
  pthread_mutex_t source_mu;  /* guards source against the lag collector of metrics.c:
                                 held only around lag() and the source's removal; the
                                 stages use source without it while the pipeline runs */
  etl_source *source;         /* owned; closed by pipeline.c; see source_mu */
  etl_sink *sink;             /* owned; closed by main.c */
  etl_enricher *enricher;     /* owned */
  weft_pipeline *pipeline;    /* while it runs; NULL otherwise */
  atomic_int failed;          /* atomic, relaxed: set once by an enrich worker under
                                 --on-enrich-failure fail; read after the pipeline ended */
  atomic_int draining;        /* atomic, relaxed: /healthz reports it */
} etl_app;

int etl_metrics_init(etl_app *app);
void etl_metrics_fini(etl_app *app);
/* etl_metrics_text: the Prometheus text of the registry (new, free()), or NULL. */
char *etl_metrics_text(etl_app *app, size_t *len);
/* etl_metrics_call / etl_metrics_retry: count one call of api (its result and duration),
 * one retried attempt. Any thread; never park. */
void etl_metrics_call(etl_app *app, int api, etl_call_result result, int64_t ns);
void etl_metrics_retry(etl_app *app, int api);
void etl_metrics_written(etl_app *app, etl_item *const *items, size_t n, int64_t ns);

extern const char *const etl_api_names[ETL_API_COUNT];

/* ---- pipeline.c ---- */

/* etl_run: run the pipeline until the source ends or sc's signal drains it, then close
 * the source (committing unless a second signal came). Returns the exit code: 0 drained,
 * 1 fatal (a stage failed, the fail policy, the drain timeout). Coroutine, may park. */
int etl_run(etl_app *app, weft_signal_ctx *sc);

#endif
