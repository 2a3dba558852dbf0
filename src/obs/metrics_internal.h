/* metrics_internal.h: the structures behind weft/metrics.h, shared by metrics.c (registry,
 * families, children, updates), metrics_expose.c (scrapes: gather, text, JSON) and the
 * collectors in metrics_runtime.c and metrics_process.c.
 *
 * Ownership: a registry owns its families; a family owns its children; nothing is freed
 * before weft_metrics_registry_free, so pointers to names, label values and bounds stay
 * valid for as long as the registry may be used, with or without its locks.
 *
 * Lock order: registry mu -> family lock; registry mu -> whatever a collector takes (the
 * runtime collector: the blocking pool's lock). Updates of a child take no lock. */
#ifndef WEFT_OBS_METRICS_INTERNAL_H
#define WEFT_OBS_METRICS_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "weft/metrics.h"

#define WEFT__CACHE_LINE 64
/* Stripes per counter or histogram child: the CPUs, rounded up to a power of two, at most
 * this many (more CPUs share stripes, which stays correct: every update is atomic). */
#define WEFT__METRICS_MAX_STRIPES 32

/* One child: a combination of label values and its value. The header is read-only after
 * creation (updates read mask, stride, fam and data); the value lives in data, 64-byte
 * aligned, apart from the header:
 *   counter:   per stripe {n: integer adds, fbits: float adds as double bits}
 *   gauge:     one word, double bits
 *   histogram: per stripe {sum: double bits, counts[nbuckets + 1]: per bucket, not
 *              cumulative, the last for observations above every bound}. */
struct weft__metric_child {
  struct weft__metric_child *hnext; /* hash chain; guarded by fam->lock */
  uint64_t hash;                    /* of the label values; read-only */
  struct weft__metric_family *fam;  /* read-only */
  char **values;                    /* fam->nlabels copies; read-only */
  unsigned mask;                    /* stripes - 1; read-only */
  unsigned stride;                  /* bytes per stripe; read-only */
  char *data;                       /* the value, 64-byte aligned; atomics, relaxed */
};

struct weft_counter {
  struct weft__metric_child c;
};
struct weft_gauge {
  struct weft__metric_child c;
};
struct weft_histogram {
  struct weft__metric_child c;
};

/* A counter stripe. Relaxed atomics suffice: a scrape wants each stripe's latest value,
 * not an order between them, and totals are exact once writers are done (their adds are
 * read-modify-writes, in one modification order per word). */
struct weft__counter_stripe {
  _Atomic uint64_t n;     /* integer adds */
  _Atomic uint64_t fbits; /* non-integer adds, a double's bits */
  char pad[WEFT__CACHE_LINE - 2 * sizeof(uint64_t)];
};

/* A family: the registered unit, with its name, help, type and label names. */
struct weft__metric_family {
  char *name;                        /* read-only */
  char *help;                        /* read-only, never NULL */
  weft_metric_type type;             /* read-only */
  int nlabels;                       /* read-only */
  char **labels;                     /* read-only */
  int nbuckets;                      /* histograms: finite bounds; read-only */
  double *bounds;                    /* ascending; read-only */
  unsigned nstripes;                 /* read-only */
  pthread_rwlock_t lock;             /* guards table, tsize, children, nchildren, cap */
  struct weft__metric_child **table; /* hash table of children, tsize a power of two */
  size_t tsize;
  struct weft__metric_child **children; /* in creation order */
  size_t nchildren, cap;
  struct weft__metric_child *only; /* nlabels == 0: the one child (read-only), else NULL */
};

struct weft_counter_vec {
  struct weft__metric_family f;
};
struct weft_gauge_vec {
  struct weft__metric_family f;
};
struct weft_histogram_vec {
  struct weft__metric_family f;
};

struct weft__collector {
  weft_metrics_collect_fn fn;
  void *arg;
};

struct weft_metrics_registry {
  /* Guards fams, nfams, capfams, cols, ncols, capcols. Held for a whole gather, collector
   * calls included (so unregistering waits for a running collector); never across a
   * park, never while writing output. */
  pthread_mutex_t mu;
  struct weft__metric_family **fams; /* sorted by name */
  size_t nfams, capfams;
  struct weft__collector *cols; /* in registration order */
  size_t ncols, capcols;
  int is_default; /* read-only: weft_metrics_default's, never freed */
};

/* ---- scrapes: a private snapshot of every sample, gathered under the locks ---- */

struct weft__snap_sample {
  const char *const *values; /* the family's nlabels label values */
  double value;              /* counters, gauges, untyped */
  uint64_t *cum;             /* histograms: cumulative counts, nbuckets + 1 (+Inf last) */
  double sum;                /* histograms */
};

struct weft__snap_family {
  const char *name;
  const char *help;
  weft_metric_type type;
  int nlabels;
  const char *const *labels;
  int nbuckets;
  const double *bounds;
  int collected; /* 1: emitted by a collector, 0: a registered family */
  struct weft__snap_sample *samples;
  size_t n, cap;
};

struct weft__arena_block;

struct weft__snapshot {
  struct weft__snap_family **fams; /* sorted by name once gathered */
  size_t n, cap;
  struct weft__arena_block *blocks; /* every allocation of the snapshot */
  size_t last;                      /* the family the last emit went to (a cache) */
  int err;                          /* the first failure (-ENOMEM), sticky */
};

struct weft_metrics_emitter {
  struct weft__snapshot *snap;
  weft_metrics_registry *reg;
};

/* weft__metrics_resolve: reg, or the default registry for NULL. */
weft_metrics_registry *weft__metrics_resolve(weft_metrics_registry *reg);

/* weft__metrics_find_family: reg's family named name, or NULL. Caller holds reg->mu. */
struct weft__metric_family *weft__metrics_find_family(weft_metrics_registry *reg,
                                                      const char *name);

/* weft__metrics_valid_name / _label / _utf8: the validation rules of weft/metrics.h. */
int weft__metrics_valid_name(const char *name);
int weft__metrics_valid_label(const char *label);
int weft__metrics_valid_utf8(const char *s);

/* weft__metrics_child_read: a child's value: counters and gauges in *value; histograms
 * their cumulative bucket counts in cum[0..nbuckets] (+Inf last) and their sum in *sum. */
void weft__metrics_child_read(const struct weft__metric_child *c, double *value, uint64_t *cum,
                              double *sum);

/* weft__metrics_gather: fill s (zeroed by the caller) with every sample of reg, sorted.
 * Returns 0 or -ENOMEM; free s with weft__metrics_snapshot_free either way. */
int weft__metrics_gather(weft_metrics_registry *reg, struct weft__snapshot *s);
void weft__metrics_snapshot_free(struct weft__snapshot *s);

/* weft__metrics_format_value: v as the text format writes it (see weft/metrics.h) into
 * buf, NUL-terminated. Returns buf. */
#define WEFT__METRICS_VALUE_MAX 32
char *weft__metrics_format_value(char buf[WEFT__METRICS_VALUE_MAX], double v);

/* Double <-> bits, for doubles kept in atomic 64-bit words. */
static inline uint64_t weft__dbl_bits(double d)
{
  uint64_t b;
  memcpy(&b, &d, sizeof b);
  return b;
}

static inline double weft__bits_dbl(uint64_t b)
{
  double d;
  memcpy(&d, &b, sizeof d);
  return d;
}

#endif
