/* weft/metrics.h: counters, gauges and histograms, exposed in Prometheus text format.
 *
 * A registry holds metric families. A family has a name, a help text, a type and label
 * names fixed when it is created; its children (one per combination of label values) are
 * found with weft_*_vec_with(vec, "value", ...), which returns a handle to cache: updating
 * a handle takes no lock. An unlabelled family has exactly one child, returned directly by
 * weft_counter_new(), weft_gauge_new() and weft_histogram_new().
 *
 * Cost. Counters and histograms are striped: each child keeps one cache line (histograms:
 * a few) per CPU, up to 32, chosen by the CPU the caller runs on (rseq), and a scrape sums the
 * stripes. An increment is one relaxed atomic add on a line no other running CPU writes; a
 * float add or an observation adds a compare-and-swap on the same line. A gauge is one atomic
 * word (set cannot be striped). Memory: a counter child takes 64 bytes per stripe, a histogram
 * child 8 * (buckets + 2) bytes per stripe rounded up to 64.
 *
 * Collectors compute samples at scrape time (weft_metrics_register_collector): the
 * runtime's own metrics and the process's are collectors, and so are those of any module
 * that already counts something itself.
 *
 * Lifetimes. Families and children belong to their registry and live until it is freed;
 * children are never removed. Every handle is borrowed from the registry. Passing NULL as
 * a registry means the default registry (weft_metrics_default()).
 *
 * Threads. Every function here may be called from any thread or coroutine and never
 * parks. Creation and scrapes take short pthread locks; updates of a child take none.
 *
 * Names: metric names match [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]*
 * and may not start with "__"; histograms may not use the label "le". Label values and
 * help texts are UTF-8. Follow Prometheus' conventions: base units as a suffix (_seconds,
 * _bytes), counters end in _total. */
#ifndef WEFT_METRICS_H
#define WEFT_METRICS_H

#include <stdio.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The Content-Type of weft_metrics_write_prometheus's output (text format 0.0.4). */
#define WEFT_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
/* The Content-Type of weft_metrics_write_json's output. */
#define WEFT_METRICS_JSON_CONTENT_TYPE "application/json; charset=utf-8"

/* The most label names a family may have. */
#define WEFT_METRICS_MAX_LABELS 16
/* The most buckets a histogram may have (besides +Inf). */
#define WEFT_METRICS_MAX_BUCKETS 256

typedef struct weft_metrics_registry weft_metrics_registry;
typedef struct weft_counter_vec weft_counter_vec;
typedef struct weft_gauge_vec weft_gauge_vec;
typedef struct weft_histogram_vec weft_histogram_vec;
typedef struct weft_counter weft_counter;
typedef struct weft_gauge weft_gauge;
typedef struct weft_histogram weft_histogram;
typedef struct weft_metrics_emitter weft_metrics_emitter;

/* A family's type, as written on its # TYPE line. */
typedef enum weft_metric_type {
  WEFT_METRIC_COUNTER = 1, /* only goes up (or resets when the process restarts) */
  WEFT_METRIC_GAUGE,       /* goes up and down */
  WEFT_METRIC_HISTOGRAM,   /* observations counted in buckets (registered families only) */
  WEFT_METRIC_UNTYPED      /* unknown: collectors passing values through */
} weft_metric_type;

/* ---- registries ---- */

/* weft_metrics_registry_new: an empty registry (no runtime or process metrics: add them
 * with weft_metrics_register_runtime / _process). Returns NULL when out of memory.
 * Any thread. The caller owns it: free it with weft_metrics_registry_free. */
WEFT_API weft_metrics_registry *weft_metrics_registry_new(void);

/* weft_metrics_registry_free: free reg with all its families, children and collector
 * registrations. Nothing may use reg or a handle from it during or after the call. NULL and
 * the default registry are ignored. Any thread. */
WEFT_API void weft_metrics_registry_free(weft_metrics_registry *reg);

/* weft_metrics_default: the process-wide registry, created on first use with the runtime
 * and process collectors registered (weft_metrics_register_runtime / _process). Never
 * freed. Returns NULL only if memory ran out on first use. Any thread; never parks. */
WEFT_API weft_metrics_registry *weft_metrics_default(void);

/* ---- creating families ----
 * reg: the registry (NULL: default). name: the metric name. help: one line describing it
 * (NULL: ""). nlabels: 0 .. WEFT_METRICS_MAX_LABELS; labels: that many label names, in the
 * order label values are given to weft_*_vec_with and written in samples. Every string is
 * copied. *out receives the family, borrowed from the registry.
 *
 * Returns 0; -EINVAL for a bad name, label name, label count, bucket list or NULL out;
 * -EEXIST if reg already has a family of that name: then *out is that family if it has the
 * same type, label names (and for histograms buckets), so two parts of a program may share
 * one family, else NULL; -ENOMEM. On any error other than that -EEXIST, *out is NULL.
 * Any thread; never parks. */

WEFT_API int weft_counter_vec_new(weft_metrics_registry *reg, const char *name,
                                  const char *help, int nlabels, const char *const *labels,
                                  weft_counter_vec **out);
WEFT_API int weft_gauge_vec_new(weft_metrics_registry *reg, const char *name, const char *help,
                                int nlabels, const char *const *labels, weft_gauge_vec **out);
/* buckets: nbuckets upper bounds, strictly increasing, none NaN; a last +Inf is dropped (it
 * is always there). buckets NULL with nbuckets 0: weft_metrics_default_buckets. */
WEFT_API int weft_histogram_vec_new(weft_metrics_registry *reg, const char *name,
                                    const char *help, int nbuckets, const double *buckets,
                                    int nlabels, const char *const *labels,
                                    weft_histogram_vec **out);

/* Unlabelled shortcuts: create the family and return its only child in *out. Same return
 * codes (-EINVAL for a NULL out); on -EEXIST *out is the existing family's child when it
 * is compatible. */
WEFT_API int weft_counter_new(weft_metrics_registry *reg, const char *name, const char *help,
                              weft_counter **out);
WEFT_API int weft_gauge_new(weft_metrics_registry *reg, const char *name, const char *help,
                            weft_gauge **out);
WEFT_API int weft_histogram_new(weft_metrics_registry *reg, const char *name, const char *help,
                                int nbuckets, const double *buckets, weft_histogram **out);

/* Go's prometheus.DefBuckets, in seconds, for network request latencies:
 * {.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}. */
#define WEFT_METRICS_DEFAULT_BUCKETS_N 11
extern WEFT_API const double weft_metrics_default_buckets[WEFT_METRICS_DEFAULT_BUCKETS_N];

/* weft_metrics_linear_buckets: out[i] = start + i * width for i < count.
 * Returns 0, or -EINVAL if count < 1, width <= 0 or out is NULL. Any thread. */
WEFT_API int weft_metrics_linear_buckets(double start, double width, int count, double *out);

/* weft_metrics_exponential_buckets: out[i] = start * factor^i for i < count.
 * Returns 0, or -EINVAL if count < 1, start <= 0, factor <= 1 or out is NULL. Any thread. */
WEFT_API int weft_metrics_exponential_buckets(double start, double factor, int count,
                                              double *out);

/* ---- children ----
 * weft_*_vec_with(vec, "v1", "v2", ...): the child for these label values (as many as the
 * family has label names, in the same order), created on first use. The macros count the
 * values; weft_*_vec_with_values takes them as an array. Values are copied.
 * Returns the child, borrowed from the registry: cache it, looking it up costs a hash and
 * a read lock. Returns NULL if vec is NULL, the count differs from the family's, a value
 * is NULL or not UTF-8, or memory ran out. Every update function accepts NULL and then
 * does nothing, so a mistake loses samples rather than crashing. Any thread; never parks.
 * For an unlabelled family, weft_*_vec_with_values(vec, 0, NULL) returns its child. */
#define WEFT__NVALUES(...) (int)(sizeof((const char *[]){__VA_ARGS__}) / sizeof(const char *))
#define weft_counter_vec_with(vec, ...) \
  weft_counter_vec_with_values((vec), WEFT__NVALUES(__VA_ARGS__), (const char *[]){__VA_ARGS__})
#define weft_gauge_vec_with(vec, ...) \
  weft_gauge_vec_with_values((vec), WEFT__NVALUES(__VA_ARGS__), (const char *[]){__VA_ARGS__})
#define weft_histogram_vec_with(vec, ...)                           \
  weft_histogram_vec_with_values((vec), WEFT__NVALUES(__VA_ARGS__), \
                                 (const char *[]){__VA_ARGS__})

WEFT_API weft_counter *weft_counter_vec_with_values(weft_counter_vec *vec, int n,
                                                    const char *const *values);
WEFT_API weft_gauge *weft_gauge_vec_with_values(weft_gauge_vec *vec, int n,
                                                const char *const *values);
WEFT_API weft_histogram *weft_histogram_vec_with_values(weft_histogram_vec *vec, int n,
                                                        const char *const *values);

/* ---- updates: any thread or coroutine, never park, take no lock ---- */

/* weft_counter_inc: add 1. */
WEFT_API void weft_counter_inc(weft_counter *c);
/* weft_counter_add_u64: add n (an integer add: the fastest path). */
WEFT_API void weft_counter_add_u64(weft_counter *c, uint64_t n);
/* weft_counter_add: add v. Returns 0, or -EINVAL (nothing added) when v is negative or
 * NaN: a counter only goes up. Whole v below 2^53 take the integer path. */
WEFT_API int weft_counter_add(weft_counter *c, double v);
/* weft_counter_value: the current total (the sum of the stripes; 0 for NULL). */
WEFT_API double weft_counter_value(const weft_counter *c);

/* weft_gauge_set / _add / _sub / _inc / _dec: set the value, or change it by v, 1, -1. */
WEFT_API void weft_gauge_set(weft_gauge *g, double v);
WEFT_API void weft_gauge_add(weft_gauge *g, double v);
WEFT_API void weft_gauge_sub(weft_gauge *g, double v);
WEFT_API void weft_gauge_inc(weft_gauge *g);
WEFT_API void weft_gauge_dec(weft_gauge *g);
/* weft_gauge_value: the current value (0 for NULL). */
WEFT_API double weft_gauge_value(const weft_gauge *g);

/* weft_histogram_observe: count v in the first bucket whose bound is >= v (Prometheus'
 * "le": less or equal) and add it to the sum. NaN is counted in +Inf only and makes the
 * sum NaN, as in Go. */
WEFT_API void weft_histogram_observe(weft_histogram *h, double v);
/* weft_histogram_observe_ns: observe a duration given in nanoseconds, in seconds. */
WEFT_API void weft_histogram_observe_ns(weft_histogram *h, int64_t ns);
/* weft_histogram_count / _sum: observations so far and their sum (0 for NULL). Read
 * while others observe, the two may be a few observations apart. */
WEFT_API uint64_t weft_histogram_count(const weft_histogram *h);
WEFT_API double weft_histogram_sum(const weft_histogram *h);

/* ---- collectors ----
 * A collector is called at every scrape (both formats) to emit samples it computes then.
 * It runs on the scraping thread with the registry's lock held: it must not park, must not
 * create families or (un)register collectors on the same registry, and should be quick.
 * arg is the pointer given at registration. */
typedef void (*weft_metrics_collect_fn)(weft_metrics_emitter *em, void *arg);

/* weft_metrics_register_collector: call fn(em, arg) at each scrape of reg (NULL: default).
 * Returns 0; -EINVAL if fn is NULL; -EEXIST if this fn and arg are already registered;
 * -ENOMEM. Any thread; never parks. */
WEFT_API int weft_metrics_register_collector(weft_metrics_registry *reg,
                                             weft_metrics_collect_fn fn, void *arg);

/* weft_metrics_unregister_collector: stop calling fn(em, arg). When it returns, no call is
 * running or will start, so arg may be freed. Returns 0 or -ENOENT. Any thread (not from a
 * collector); waits for a scrape in progress, never parks. */
WEFT_API int weft_metrics_unregister_collector(weft_metrics_registry *reg,
                                               weft_metrics_collect_fn fn, void *arg);

/* weft_metrics_emit: from a collector, one sample: name{names[i]=values[i]...} value.
 * type: WEFT_METRIC_COUNTER, _GAUGE or _UNTYPED. help: NULL for "". Samples of one name
 * form one family: emit them with the same type and label names (the first help wins);
 * emitting one label set twice is the collector's mistake and is not detected.
 * Returns 0; -EINVAL for a bad name, label name or value, type, or a type or label names
 * differing from an earlier sample of the same name; -EEXIST if the name is a family
 * registered in the registry; -ENOMEM. A sample that is refused is left out of the
 * scrape. Collector only (em is valid during its call). */
WEFT_API int weft_metrics_emit(weft_metrics_emitter *em, const char *name, const char *help,
                               weft_metric_type type, double value, int nlabels,
                               const char *const *names, const char *const *values);

/* weft_metrics_register_chan: expose channel ch under name at each scrape of reg (NULL:
 * default) as weft_chan_length{chan=name} (buffered elements) and
 * weft_chan_capacity{chan=name}: the depth of every bounded queue in a pipeline, on the
 * dashboard too. Takes a reference to ch until weft_metrics_unregister_chan. Returns 0,
 * -EINVAL (no name or channel), -EEXIST (ch or name already registered on reg), -ENOMEM.
 * Unregister every channel of a registry before freeing it. Any thread; never parks. */
struct weft_chan;
WEFT_API int weft_metrics_register_chan(weft_metrics_registry *reg, const char *name,
                                        struct weft_chan *ch);
/* weft_metrics_unregister_chan: stop exposing ch and drop the reference. Returns 0 or
 * -ENOENT. Any thread (not from a collector); never parks. */
WEFT_API int weft_metrics_unregister_chan(weft_metrics_registry *reg, struct weft_chan *ch);

/* weft_metrics_register_runtime: add a collector of the runtime's own metrics, read with
 * weft_runtime_stats_read (nothing is emitted while no runtime runs). Gauges:
 *   weft_coroutines (Go: go_goroutines), weft_threads (go_threads: scheduler threads plus
 *   the blocking pool's), weft_procs (scheduler threads), weft_runnable, weft_timers,
 *   weft_io_waiters, weft_blocking_threads, weft_blocking_busy, weft_blocking_queued,
 *   weft_stack_bytes;
 * counters: weft_sched_switches_total, weft_sched_steals_total, weft_poller_waits_total,
 *   weft_proc_idle_seconds_total{proc="0".."P-1"} (utilisation: 1 - rate(idle)).
 * Returns 0, -EEXIST if already registered on reg, -ENOMEM. Any thread. */
WEFT_API int weft_metrics_register_runtime(weft_metrics_registry *reg);

/* weft_metrics_register_process: add a collector of the process's metrics, named and
 * computed as Go's process collector does, from /proc: process_cpu_seconds_total
 * (user + system), process_open_fds, process_max_fds (soft RLIMIT_NOFILE),
 * process_resident_memory_bytes, process_virtual_memory_bytes, process_start_time_seconds
 * (Unix time). Returns 0, -EEXIST if already registered on reg, -ENOMEM. Any thread. */
WEFT_API int weft_metrics_register_process(weft_metrics_registry *reg);

/* ---- exposition ---- */

/* weft_metrics_write_prometheus: write every family of reg (NULL: default), registered and
 * collected, in the Prometheus text format 0.0.4 (serve it as WEFT_METRICS_CONTENT_TYPE):
 *   - families sorted by name; for each "# HELP name text" (\ and newline escaped as \\ and
 *     \n), "# TYPE name counter|gauge|histogram|untyped", then its samples; every line
 *     ends in \n;
 *   - samples sorted by their label values (compared in label order, bytewise), labels in
 *     the order of the family's label names, values escaped (\\, \", \n); a labelled
 *     family with no child yet writes HELP and TYPE only;
 *   - histograms: name_bucket{...,le="bound"} cumulative counts ascending, le="+Inf" equal
 *     to name_count, then name_sum and name_count;
 *   - values: integers of magnitude below 2^53 in plain digits ("1048576"), others in the
 *     shortest form that reads back exactly, as Go's strconv 'g' ("0.25", "1.5e-07",
 *     "1.2345675e+06"), and NaN, +Inf, -Inf.
 * The samples are gathered under the registry's lock and written after it is released.
 * Returns 0; -EINVAL if out is NULL; -ENOMEM; -EIO if writing failed. Any thread;
 * never parks (but blocks on out if out blocks: prefer a memory stream in a coroutine). */
WEFT_API int weft_metrics_write_prometheus(weft_metrics_registry *reg, FILE *out);

/* weft_metrics_write_json: the same samples as one JSON object for /debug/vars (expvar),
 * keys sorted at every level, ending in a newline:
 *   "cmdline": the process's arguments, an array of strings (from /proc/self/cmdline);
 *   "runtime": weft_runtime_stats as an object with integer members coroutines, runnable,
 *      procs, blocking_threads, blocking_busy, blocking_queued, switches, steals,
 *      poller_waits, timers, io_waiters, stack_bytes, uptime_ns, now_ns (weft_now() at the
 *      read) and proc_idle_ns (an array with one cumulative idle time per scheduler thread,
 *      so utilisation over an interval is 1 - d(proc_idle_ns[i]) / d(now_ns)); null while
 *      no runtime runs;
 *   one member per family (a family named cmdline or runtime is left out), its value:
 *     counter, gauge, untyped without labels: a number;
 *     histogram without labels: {"buckets": [[bound, cumulative count], ...] for the finite
 *       bounds ascending (+Inf is "count"), "count": n, "sum": s};
 *     with labels: an object whose keys are the label sets written as in the text format
 *       without braces ("code=\"200\",method=\"GET\""), each with the value above; a
 *       labelled family with no child yet is {}.
 *   Numbers are JSON integers when whole and below 2^53 in magnitude, else reals; NaN,
 *   +Inf and -Inf, which JSON lacks, are the strings "NaN", "+Inf", "-Inf".
 * Returns 0; -EINVAL if out is NULL; -ENOMEM; -EIO if writing failed. Any thread; never
 * parks (blocks on out if out blocks). */
WEFT_API int weft_metrics_write_json(weft_metrics_registry *reg, FILE *out);

#ifdef __cplusplus
}
#endif
#endif
