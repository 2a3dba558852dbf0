/* load.h: weft-load's parts and what they share.
 *
 *   main.c      flags -> struct load_config, exit codes (0 done, 1 unreachable, 2 usage)
 *   template.c  request templates: {{id}}, {{seq}}, {{rand:N}} substitution
 *   driver.c    the run: open loop (constant rate) or closed loop, live progress
 *   conn.c      the lean keep-alive HTTP/1.1 connection for http:// targets
 *   recorder.c  results shared by the request coroutines: counts, histograms, time slices
 *   histogram.c the log-bucketed latency histogram
 *   report.c    the summary as text and JSON
 *   plot.c      the latency-over-time SVG
 *
 * Every latency is measured from the request's intended send time: in the open loop the
 * time the schedule gave it (start + seq / rate), whether or not a connection was free
 * then; in the closed loop the time it was sent, which is all a closed loop can know. */
#ifndef WEFT_LOAD_H
#define WEFT_LOAD_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "histogram.h"
#include "weft/weft.h"

/* ---- templates ---- */

/* A compiled template: literal text with substitutions between. */
typedef struct load_template load_template;

/* load_template_compile: parse text. {{id}} is replaced by "<stamp>-<seq>" (unique per
 * request and per run), {{seq}} by the request's sequence number (from 0), {{rand:N}} by
 * a random integer in [0, N). Returns NULL with a message in err (errlen bytes) for an
 * unknown or unterminated substitution. */
load_template *load_template_compile(const char *text, size_t len, char *err, size_t errlen);
void load_template_free(load_template *t);
/* load_template_is_constant: true when the template has no substitution. */
bool load_template_is_constant(const load_template *t);
/* load_template_render: the text for request seq into *buf (grown as needed, *cap its
 * size); returns the length (the buffer is NUL-terminated). rng: the caller's state. */
size_t load_template_render(const load_template *t, const char *stamp, uint64_t seq,
                            uint64_t *rng, char **buf, size_t *cap);

/* ---- the lean connection (conn.c) ---- */

/* One keep-alive HTTP/1.1 connection to a plain http:// target, owned by one coroutine. */
struct load_conn;
/* load_conn_new: not yet connected; addr ("host:port") and prefix (everything of the head
 * after the request target: " HTTP/1.1\r\n", Host and the other headers, each ending in
 * CRLF) are borrowed for its life. NULL when out of memory. */
struct load_conn *load_conn_new(const char *addr, const char *prefix);
void load_conn_free(struct load_conn *lc);
/* load_conn_do: send one request (Content-Length when send_length) and read the whole
 * response, (re)connecting as needed; a reused connection that fails before any byte of
 * the answer is retried once on a new one. Returns the status, or a negative error:
 * weft_dial's, -ECONNRESET, -EPIPE, -EPROTO (not HTTP), -ETIMEDOUT (deadline), ctx's.
 * Coroutine, may park; honours ctx. */
int load_conn_do(struct load_conn *lc, weft_ctx *ctx, int64_t deadline, const char *method,
                 const char *target, const char *body, size_t body_len, bool send_length);

/* ---- configuration ---- */

enum { LOAD_MAX_HEADERS = 64 };

struct load_config {
  double rate;           /* requests per second (open loop), or 0: closed loop */
  int connections;       /* closed loop: workers; open loop: connections at the start */
  int max_connections;   /* open loop: the pool may grow to this */
  int64_t duration;      /* ns, or 0: stop by count */
  uint64_t requests;     /* count, or 0: stop by duration */
  int64_t timeout;       /* per request, ns */
  int64_t progress;      /* ns between progress lines, 0: none */
  const char *method;    /* GET unless a body is given (then POST) */
  const char *url;       /* the URL template as given */
  load_template *url_t;  /* compiled */
  load_template *body_t; /* compiled, or NULL: no body */
  const char *headers[2 * LOAD_MAX_HEADERS + 1]; /* name, value, ..., NULL (owned) */
  int nheaders;
  const char *json_path; /* --json FILE or "-" (stdout), or NULL */
  const char *svg_path;  /* --svg FILE, or NULL */
  bool quiet;
  bool weft_client; /* --client weft: weft_http_client for http:// too */
};

/* ---- results ---- */

enum { LOAD_MAX_STATUS = 600, LOAD_SLICE_MAX = 200 };

/* One time slice of the run: latencies of requests intended in it, completions in it. */
struct load_slice {
  hist lat;           /* latency of requests whose intended time fell in the slice */
  uint64_t completed; /* requests that ended (answered or failed) in the slice */
};

/* Results, shared by every request coroutine. Everything below mu is guarded by mu. */
struct load_recorder {
  weft_mutex mu;
  int64_t start;                    /* run start, monotonic ns; set before any request */
  int64_t end;                      /* the last request's end */
  hist lat;                         /* latency of every answered request */
  uint64_t status[LOAD_MAX_STATUS]; /* answers by status code */
  uint64_t answered;                /* requests with a response, any status */
  uint64_t errors;                  /* requests that got no response */
  struct load_err {
    int code; /* negative errno */
    uint64_t n;
  } err[16]; /* transport errors by kind; the last slot takes the rest */
  int nerr;
  uint64_t late;    /* open loop: sent more than 1 ms after the intended time */
  int64_t slice_ns; /* width of a slice; doubles when the run outgrows the array */
  int nslices;      /* slices in use */
  struct load_slice slice[LOAD_SLICE_MAX];
};

int load_recorder_init(struct load_recorder *r, int64_t start);
void load_recorder_destroy(struct load_recorder *r);
/* load_recorder_add: one finished request: intended time, the time it was sent, the time
 * it ended, and its status (> 0) or transport error (< 0). Coroutine, may park (mu). */
void load_recorder_add(struct load_recorder *r, int64_t intended, int64_t sent, int64_t end,
                       int result);
/* A consistent copy of the counters for progress lines (no histograms but p99). */
struct load_progress {
  uint64_t answered, errors, s2xx, s3xx, s4xx, s5xx;
  int64_t p99;
};
void load_recorder_progress(struct load_recorder *r, struct load_progress *out);

/* ---- the run ---- */

struct load_run {
  const struct load_config *cfg;
  struct load_recorder rec;
  int64_t elapsed;  /* from start to the last request's end */
  bool interrupted; /* SIGINT or SIGTERM ended it early */
  int max_workers;  /* connections used at most */
  char stamp[24];   /* this run's part of {{id}} */
};

/* load_run: check the target answers a TCP connect, then run to the end. Returns 0, or a
 * negative errno when the target is unreachable (message printed). Coroutine. */
int load_run(struct load_run *run, const struct load_config *cfg);

/* ---- output ---- */

void load_report_text(const struct load_run *run, FILE *out);
/* load_report_json: write the JSON report to path ("-": stdout). 0 or -errno. */
int load_report_json(const struct load_run *run, const char *path);
/* load_plot_svg: write the latency-over-time SVG to path. 0 or -errno. */
int load_plot_svg(const struct load_run *run, const char *path);

#endif
