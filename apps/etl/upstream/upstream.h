/* upstream.h: weft-upstream, the test upstream of the enrichment pipeline (etl.md, "Test
 * upstream"): one process plays one of the three enrichment APIs with deterministic fake
 * data and the faults it is told to inject.
 *
 *   flags.c   the command line (up_opts)
 *   data.c    the fake answers, a pure function of (api, seed, path)
 *   faults.c  what the seeded PRNG decides per request (latency, 503) and the outage windows
 *   api.c     the router, the handlers, the request counter on /metrics
 *   main.c    the life cycle: serving, outage windows in refuse mode, graceful exit
 *
 * Everything in up_app is written before the server starts and read-only afterwards, except
 * the request sequence number (atomic) and the metric handles (weft/metrics.h's own). */
#ifndef WEFT_ETL_UPSTREAM_H
#define WEFT_ETL_UPSTREAM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <weft/weft.h>

#define UP_SEC ((int64_t)1000000000)
#define UP_MS  ((int64_t)1000000)

/* The API this process plays. */
typedef enum up_api { UP_USERS, UP_GEO, UP_FX } up_api;

/* What an outage window does to the API (--outage-mode). */
typedef enum up_outage_mode {
  UP_OUTAGE_REFUSE, /* the listener is closed and open connections are cut */
  UP_OUTAGE_STALL   /* connections are accepted; requests are answered only at the end */
} up_outage_mode;

/* [start, end) in nanoseconds after the process started. */
typedef struct up_window {
  int64_t start;
  int64_t end;
} up_window;

enum { UP_MAX_WINDOWS = 64 };

typedef struct up_opts {
  up_api api;
  const char *listen;                /* host:port (port 0: any) */
  int64_t latency_median;            /* ns; 0: no delay */
  int64_t latency_p99;               /* ns; 0: the median, so a constant delay */
  double error_rate;                 /* fraction of API requests answered 503, in [0, 1] */
  up_window windows[UP_MAX_WINDOWS]; /* sorted by start, disjoint (merged by flags.c) */
  int nwindows;
  up_outage_mode outage_mode;
  uint64_t seed;
  int log_level; /* WEFT_LOG_* */
} up_opts;

typedef struct up_app {
  const up_opts *o;
  int64_t started; /* weft_now() when the runtime started: outage times count from it */
  double lat_mu, lat_sigma; /* log-normal parameters of the latency in ns (sigma 0: fixed) */
  atomic_uint_fast64_t seq; /* API requests so far: the index into the PRNG's stream */
  weft_logger *log;
  weft_counter_vec *requests; /* upstream_requests_total{api,code} */
  weft_counter *by_code[5];   /* cached children for 200, 404, 405, 500, 503 (api.c) */
} up_app;

/* flags.c: parse argv into o. Returns 0, 1 for --help (usage printed), or -1 after
 * printing one line on stderr. */
int up_parse_args(int argc, char **argv, up_opts *o);
/* The API's name ("users", "geo", "fx"). */
const char *up_api_name(up_api api);

/* data.c: the answer for id (the last path segment, decoded) of api under seed: a JSON
 * object written to buf (NUL-terminated). Returns its length, or -ENOSPC. Pure: the same
 * arguments always give the same bytes. Any thread; never parks. */
int up_answer(up_api api, uint64_t seed, const char *id, char *buf, size_t len);
/* The resource prefix of api's paths ("/users/", "/geo/", "/rates/"). */
const char *up_api_prefix(up_api api);

/* faults.c */
/* Fit the latency distribution of o into app (lat_mu, lat_sigma). */
void up_faults_init(up_app *app);
/* The fault decisions for one API request: the next draw of the seeded stream. */
typedef struct up_draw {
  int64_t delay;    /* ns to wait before answering */
  bool unavailable; /* answer 503 */
} up_draw;
up_draw up_faults_draw(up_app *app);
/* The outage window holding t (ns since start), or NULL. */
const up_window *up_outage_at(const up_opts *o, int64_t t);
/* splitmix64: the mixing function behind every hash and draw here. */
uint64_t up_mix64(uint64_t x);

/* api.c */
/* Create the metric families and a router serving /healthz, /metrics and the API's route
 * (serve it with weft_http_router_serve). Returns 0 or a negative errno. Coroutine. */
int up_api_init(up_app *app, weft_http_router **out);

#endif
