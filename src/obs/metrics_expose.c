/* metrics_expose.c: scrapes. A scrape gathers every sample of a registry into a private
 * snapshot while holding the registry's lock (registered families, then the collectors'
 * emits), releases it, sorts the snapshot and writes it as Prometheus text 0.0.4 or as
 * expvar-style JSON. Output is written without any lock held, so a slow reader of the
 * output never holds up registration or another scrape.
 *
 * The snapshot borrows names, help texts, label names and values from the registry (they
 * live as long as it does, see metrics_internal.h) and copies whatever a collector emits
 * into its arena. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#include "obs/metrics_internal.h"
#include "weft/runtime.h"

/* ---- the snapshot's arena: blocks freed together ---- */

struct weft__arena_block {
  struct weft__arena_block *next;
  size_t used, size;
  _Alignas(16) char mem[];
};

enum { ARENA_BLOCK = 16384 };

static void *snap_alloc(struct weft__snapshot *s, size_t n)
{
  n = (n + 15) & ~(size_t)15;
  struct weft__arena_block *b = s->blocks;
  if (!b || b->size - b->used < n) {
    size_t size = n > ARENA_BLOCK / 4 ? n : ARENA_BLOCK;
    if (!(b = malloc(sizeof *b + size))) {
      s->err = -ENOMEM;
      return NULL;
    }
    b->size = size;
    b->used = 0;
    /* A large block goes second so the current small one keeps serving. */
    if (size > ARENA_BLOCK && s->blocks) {
      b->next = s->blocks->next;
      s->blocks->next = b;
    } else {
      b->next = s->blocks;
      s->blocks = b;
    }
  }
  void *p = b->mem + b->used;
  b->used += n;
  return p;
}

static char *snap_strdup(struct weft__snapshot *s, const char *str)
{
  size_t n = strlen(str) + 1;
  char *p = snap_alloc(s, n);
  if (p)
    memcpy(p, str, n);
  return p;
}

static const char *const *snap_strvec(struct weft__snapshot *s, int n, const char *const *v)
{
  const char **out = snap_alloc(s, (size_t)(n ? n : 1) * sizeof *out);
  for (int i = 0; out && i < n; i++)
    if (!(out[i] = snap_strdup(s, v[i])))
      return NULL;
  return out;
}

void weft__metrics_snapshot_free(struct weft__snapshot *s)
{
  for (size_t i = 0; i < s->n; i++)
    free(s->fams[i]->samples);
  free(s->fams);
  for (struct weft__arena_block *b = s->blocks, *next; b; b = next) {
    next = b->next;
    free(b);
  }
  memset(s, 0, sizeof *s);
}

/* ---- gathering ---- */

static struct weft__snap_family *snap_family_add(struct weft__snapshot *s)
{
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 32;
    struct weft__snap_family **v = realloc(s->fams, cap * sizeof *v);
    if (!v) {
      s->err = -ENOMEM;
      return NULL;
    }
    s->fams = v;
    s->cap = cap;
  }
  struct weft__snap_family *f = snap_alloc(s, sizeof *f);
  if (f) {
    memset(f, 0, sizeof *f);
    s->fams[s->n++] = f;
  }
  return f;
}

static struct weft__snap_sample *snap_sample_add(struct weft__snapshot *s,
                                                 struct weft__snap_family *f)
{
  if (f->n == f->cap) {
    size_t cap = f->cap ? f->cap * 2 : 4;
    struct weft__snap_sample *v = realloc(f->samples, cap * sizeof *v);
    if (!v) {
      s->err = -ENOMEM;
      return NULL;
    }
    f->samples = v;
    f->cap = cap;
  }
  struct weft__snap_sample *x = &f->samples[f->n++];
  memset(x, 0, sizeof *x);
  return x;
}

/* gather_family: snapshot registered family rf. Children are listed under its read lock
 * and read after it: they are never freed while the registry lives. */
static void gather_family(struct weft__snapshot *s, struct weft__metric_family *rf)
{
  struct weft__snap_family *f = snap_family_add(s);
  if (!f)
    return;
  *f = (struct weft__snap_family){.name = rf->name,
                                  .help = rf->help,
                                  .type = rf->type,
                                  .nlabels = rf->nlabels,
                                  .labels = (const char *const *)rf->labels,
                                  .nbuckets = rf->nbuckets,
                                  .bounds = rf->bounds};
  pthread_rwlock_rdlock(&rf->lock);
  size_t n = rf->nchildren;
  struct weft__metric_child **kids = snap_alloc(s, (n ? n : 1) * sizeof *kids);
  if (kids && n)
    memcpy(kids, rf->children, n * sizeof *kids);
  pthread_rwlock_unlock(&rf->lock);
  for (size_t i = 0; kids && i < n; i++) {
    struct weft__snap_sample *x = snap_sample_add(s, f);
    if (!x)
      return;
    x->values = (const char *const *)kids[i]->values;
    if (rf->type == WEFT_METRIC_HISTOGRAM &&
        !(x->cum = snap_alloc(s, ((size_t)rf->nbuckets + 1) * sizeof *x->cum))) {
      f->n--;
      return;
    }
    weft__metrics_child_read(kids[i], &x->value, x->cum, &x->sum);
  }
}

static int cmp_family(const void *a, const void *b)
{
  return strcmp((*(struct weft__snap_family *const *)a)->name,
                (*(struct weft__snap_family *const *)b)->name);
}

static int cmp_sample(const void *a, const void *b, void *arg)
{
  const struct weft__snap_sample *x = a, *y = b;
  int n = *(const int *)arg;
  for (int i = 0; i < n; i++) {
    int c = strcmp(x->values[i], y->values[i]);
    if (c)
      return c;
  }
  return 0;
}

int weft__metrics_gather(weft_metrics_registry *reg, struct weft__snapshot *s)
{
  pthread_mutex_lock(&reg->mu);
  for (size_t i = 0; i < reg->nfams && !s->err; i++)
    gather_family(s, reg->fams[i]);
  weft_metrics_emitter em = {.snap = s, .reg = reg};
  for (size_t i = 0; i < reg->ncols && !s->err; i++)
    reg->cols[i].fn(&em, reg->cols[i].arg);
  pthread_mutex_unlock(&reg->mu);
  if (s->err)
    return s->err;
  if (s->n > 1)
    qsort(s->fams, s->n, sizeof *s->fams, cmp_family);
  for (size_t i = 0; i < s->n; i++) {
    struct weft__snap_family *f = s->fams[i];
    /* qsort_r (glibc): the comparison needs the family's label count. */
    if (f->n > 1)
      qsort_r(f->samples, f->n, sizeof *f->samples, cmp_sample, &f->nlabels);
  }
  return 0;
}

/* ---- collectors' samples ---- */

static struct weft__snap_family *emitted_family(struct weft__snapshot *s, const char *name)
{
  if (s->last < s->n && !strcmp(s->fams[s->last]->name, name))
    return s->fams[s->last];
  for (size_t i = 0; i < s->n; i++) {
    if (s->fams[i]->collected && !strcmp(s->fams[i]->name, name)) {
      s->last = i;
      return s->fams[i];
    }
  }
  return NULL;
}

static int same_labels(const struct weft__snap_family *f, weft_metric_type type, int n,
                       const char *const *names)
{
  if (f->type != type || f->nlabels != n)
    return 0;
  for (int i = 0; i < n; i++)
    if (strcmp(f->labels[i], names[i]))
      return 0;
  return 1;
}

static int valid_emit(weft_metric_type type, const char *name, const char *help, int n,
                      const char *const *names, const char *const *values)
{
  if (type != WEFT_METRIC_COUNTER && type != WEFT_METRIC_GAUGE && type != WEFT_METRIC_UNTYPED)
    return 0;
  if (!weft__metrics_valid_name(name) || (help && !weft__metrics_valid_utf8(help)))
    return 0;
  if (n < 0 || n > WEFT_METRICS_MAX_LABELS || (n > 0 && (!names || !values)))
    return 0;
  for (int i = 0; i < n; i++) {
    if (!weft__metrics_valid_label(names[i]) || !values[i] ||
        !weft__metrics_valid_utf8(values[i]))
      return 0;
    for (int j = 0; j < i; j++)
      if (!strcmp(names[i], names[j]))
        return 0;
  }
  return 1;
}

/* new_emitted_family: a snapshot family for a collector's first sample named name. */
static struct weft__snap_family *new_emitted_family(struct weft__snapshot *s, const char *name,
                                                    const char *help, weft_metric_type type,
                                                    int n, const char *const *names)
{
  const char *nm = snap_strdup(s, name), *hp = snap_strdup(s, help ? help : "");
  const char *const *labels = snap_strvec(s, n, names);
  if (!nm || !hp || !labels)
    return NULL;
  struct weft__snap_family *f = snap_family_add(s);
  if (!f)
    return NULL;
  *f = (struct weft__snap_family){
      .name = nm, .help = hp, .type = type, .nlabels = n, .labels = labels, .collected = 1};
  s->last = s->n - 1;
  return f;
}

int weft_metrics_emit(weft_metrics_emitter *em, const char *name, const char *help,
                      weft_metric_type type, double value, int nlabels,
                      const char *const *names, const char *const *values)
{
  if (!em || !valid_emit(type, name, help, nlabels, names, values))
    return -EINVAL;
  struct weft__snapshot *s = em->snap;
  if (s->err)
    return s->err;
  struct weft__snap_family *f = emitted_family(s, name);
  if (f && !same_labels(f, type, nlabels, names))
    return -EINVAL;
  if (!f && weft__metrics_find_family(em->reg, name)) /* the caller holds reg->mu */
    return -EEXIST;
  if (!f && !(f = new_emitted_family(s, name, help, type, nlabels, names)))
    return -ENOMEM;
  const char *const *vals = snap_strvec(s, nlabels, values);
  struct weft__snap_sample *x = vals ? snap_sample_add(s, f) : NULL;
  if (!x)
    return -ENOMEM;
  x->values = vals;
  x->value = value;
  return 0;
}

/* ---- values ---- */

/* go_g: v as Go's strconv.FormatFloat(v, 'g', -1, 64): the fewest significant digits that
 * read back as v; an exponent (at least two digits) when it is below -4 or at least 6
 * (Go's choice for the shortest form), else plain decimals. */
static void go_g(char buf[WEFT__METRICS_VALUE_MAX], double v)
{
  char e[WEFT__METRICS_VALUE_MAX];
  int p = 1;
  for (; p < 17; p++) {
    snprintf(e, sizeof e, "%.*e", p - 1, v);
    if (strtod(e, NULL) == v)
      break;
  }
  snprintf(e, sizeof e, "%.*e", p - 1, v);
  int exp = atoi(strchr(e, 'e') + 1);
  if (exp < -4 || exp >= 6)
    memcpy(buf, e, strlen(e) + 1);
  else
    snprintf(buf, WEFT__METRICS_VALUE_MAX, "%.*f", p - 1 - exp > 0 ? p - 1 - exp : 0, v);
}

char *weft__metrics_format_value(char buf[WEFT__METRICS_VALUE_MAX], double v)
{
  if (isnan(v))
    strcpy(buf, "NaN");
  else if (isinf(v))
    strcpy(buf, v > 0 ? "+Inf" : "-Inf");
  else if (v == 0)
    strcpy(buf, "0"); /* -0 too, as Go */
  else if (fabs(v) < 9007199254740992.0 && v == trunc(v))
    snprintf(buf, WEFT__METRICS_VALUE_MAX, "%.0f", v);
  else
    go_g(buf, v);
  return buf;
}

/* ---- text format 0.0.4 ---- */

/* put_escaped: s with \ and newline escaped, and " too inside label values. */
static void put_escaped(FILE *out, const char *s, int quote)
{
  for (; *s; s++) {
    if (*s == '\\')
      fputs("\\\\", out);
    else if (*s == '\n')
      fputs("\\n", out);
    else if (*s == '"' && quote)
      fputs("\\\"", out);
    else
      putc(*s, out);
  }
}

/* put_labels: {a="x",b="y"[,le="bound"]}, nothing when there are no labels at all. */
static void put_labels(FILE *out, const struct weft__snap_family *f,
                       const struct weft__snap_sample *x, const char *le)
{
  if (f->nlabels == 0 && !le)
    return;
  putc('{', out);
  for (int i = 0; i < f->nlabels; i++) {
    fprintf(out, "%s%s=\"", i ? "," : "", f->labels[i]);
    put_escaped(out, x->values[i], 1);
    putc('"', out);
  }
  if (le)
    fprintf(out, "%sle=\"%s\"", f->nlabels ? "," : "", le);
  putc('}', out);
}

static void put_sample(FILE *out, const struct weft__snap_family *f,
                       const struct weft__snap_sample *x, const char *suffix, const char *le,
                       double v)
{
  char num[WEFT__METRICS_VALUE_MAX];
  fputs(f->name, out);
  fputs(suffix, out);
  put_labels(out, f, x, le);
  putc(' ', out);
  fputs(weft__metrics_format_value(num, v), out);
  putc('\n', out);
}

static void put_histogram(FILE *out, const struct weft__snap_family *f,
                          const struct weft__snap_sample *x)
{
  char le[WEFT__METRICS_VALUE_MAX];
  for (int b = 0; b < f->nbuckets; b++)
    put_sample(out, f, x, "_bucket", weft__metrics_format_value(le, f->bounds[b]),
               (double)x->cum[b]);
  put_sample(out, f, x, "_bucket", "+Inf", (double)x->cum[f->nbuckets]);
  put_sample(out, f, x, "_sum", NULL, x->sum);
  put_sample(out, f, x, "_count", NULL, (double)x->cum[f->nbuckets]);
}

static const char *type_name(weft_metric_type t)
{
  switch (t) {
  case WEFT_METRIC_COUNTER:
    return "counter";
  case WEFT_METRIC_GAUGE:
    return "gauge";
  case WEFT_METRIC_HISTOGRAM:
    return "histogram";
  default:
    return "untyped";
  }
}

static void put_family(FILE *out, const struct weft__snap_family *f)
{
  fprintf(out, "# HELP %s ", f->name);
  put_escaped(out, f->help, 0);
  fprintf(out, "\n# TYPE %s %s\n", f->name, type_name(f->type));
  for (size_t i = 0; i < f->n; i++) {
    if (f->type == WEFT_METRIC_HISTOGRAM)
      put_histogram(out, f, &f->samples[i]);
    else
      put_sample(out, f, &f->samples[i], "", NULL, f->samples[i].value);
  }
}

int weft_metrics_write_prometheus(weft_metrics_registry *reg, FILE *out)
{
  if (!out)
    return -EINVAL;
  if (!(reg = weft__metrics_resolve(reg)))
    return -ENOMEM;
  struct weft__snapshot s = {0};
  int rc = weft__metrics_gather(reg, &s);
  for (size_t i = 0; rc == 0 && i < s.n; i++)
    put_family(out, s.fams[i]);
  weft__metrics_snapshot_free(&s);
  if (rc == 0 && (fflush(out) != 0 || ferror(out)))
    rc = -EIO;
  return rc;
}

/* ---- JSON (expvar) ---- */

/* json_num: v as a JSON integer when whole and exact, a real, or a string for NaN and
 * the infinities, which JSON cannot say. */
static json_t *json_num(double v)
{
  if (isnan(v))
    return json_string("NaN");
  if (isinf(v))
    return json_string(v > 0 ? "+Inf" : "-Inf");
  if (fabs(v) < 9007199254740992.0 && v == trunc(v))
    return json_integer((json_int_t)v);
  return json_real(v);
}

/* set_new: obj[key] = v, counting a failure (v NULL, or no memory) in *err. */
static void set_new(json_t *obj, const char *key, json_t *v, int *err)
{
  if (!v || json_object_set_new(obj, key, v) < 0)
    *err = -ENOMEM;
}

static void append_new(json_t *arr, json_t *v, int *err)
{
  if (!v || json_array_append_new(arr, v) < 0)
    *err = -ENOMEM;
}

static json_t *json_histogram(const struct weft__snap_family *f,
                              const struct weft__snap_sample *x, int *err)
{
  json_t *h = json_object(), *buckets = json_array();
  for (int b = 0; buckets && b < f->nbuckets; b++)
    append_new(buckets, json_pack("[oI]", json_num(f->bounds[b]), (json_int_t)x->cum[b]), err);
  if (h) {
    set_new(h, "buckets", buckets, err);
    set_new(h, "count", json_integer((json_int_t)x->cum[f->nbuckets]), err);
    set_new(h, "sum", json_num(x->sum), err);
  } else {
    json_decref(buckets);
    *err = -ENOMEM;
  }
  return h;
}

/* label_key: a=\"x\",b=\"y\" as in the text format, in a malloc'd string. */
static char *label_key(const struct weft__snap_family *f, const struct weft__snap_sample *x)
{
  char *buf = NULL;
  size_t len = 0;
  FILE *m = open_memstream(&buf, &len);
  if (!m)
    return NULL;
  for (int i = 0; i < f->nlabels; i++) {
    fprintf(m, "%s%s=\"", i ? "," : "", f->labels[i]);
    put_escaped(m, x->values[i], 1);
    putc('"', m);
  }
  if (fclose(m) != 0) {
    free(buf);
    return NULL;
  }
  return buf;
}

static json_t *json_family(const struct weft__snap_family *f, int *err)
{
  if (f->nlabels == 0 && f->n == 1)
    return f->type == WEFT_METRIC_HISTOGRAM ? json_histogram(f, &f->samples[0], err)
                                            : json_num(f->samples[0].value);
  json_t *obj = json_object();
  for (size_t i = 0; obj && i < f->n; i++) {
    const struct weft__snap_sample *x = &f->samples[i];
    char *key = label_key(f, x);
    if (!key) {
      *err = -ENOMEM;
      break;
    }
    set_new(obj, key,
            f->type == WEFT_METRIC_HISTOGRAM ? json_histogram(f, x, err) : json_num(x->value),
            err);
    free(key);
  }
  return obj;
}

static json_t *json_cmdline(void)
{
  json_t *arr = json_array();
  int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return arr;
  char buf[8192];
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  for (ssize_t i = 0; arr && n > 0 && i < n; i += (ssize_t)strlen(buf + i) + 1) {
    buf[n] = '\0';
    if (json_array_append_new(arr, json_string(buf + i)) < 0)
      break;
  }
  return arr;
}

static json_t *json_runtime(int *err)
{
  weft_runtime_stats st;
  if (weft_runtime_stats_read(&st) != 0)
    return json_null();
  json_t *idle = json_array();
  int n = st.procs < WEFT_STATS_MAX_PROCS ? st.procs : WEFT_STATS_MAX_PROCS;
  for (int i = 0; idle && i < n; i++)
    append_new(idle, json_integer(st.proc_idle_ns[i]), err);
  json_t *rt = json_pack(
      "{sI sI sI sI sI sI sI sI sI sI sI sI sI sI so}", "coroutines", (json_int_t)st.coroutines,
      "runnable", (json_int_t)st.runnable, "procs", (json_int_t)st.procs, "blocking_threads",
      (json_int_t)st.blocking_threads, "blocking_busy", (json_int_t)st.blocking_busy,
      "blocking_queued", (json_int_t)st.blocking_queued, "switches", (json_int_t)st.switches,
      "steals", (json_int_t)st.steals, "poller_waits", (json_int_t)st.poller_waits, "timers",
      (json_int_t)st.timers, "io_waiters", (json_int_t)st.io_waiters, "stack_bytes",
      (json_int_t)st.stack_bytes, "uptime_ns", (json_int_t)st.uptime_ns, "now_ns",
      (json_int_t)weft_now(), "proc_idle_ns", idle);
  return rt;
}

int weft_metrics_write_json(weft_metrics_registry *reg, FILE *out)
{
  if (!out)
    return -EINVAL;
  if (!(reg = weft__metrics_resolve(reg)))
    return -ENOMEM;
  int err = 0;
  json_t *root = json_object();
  if (!root)
    return -ENOMEM;
  set_new(root, "cmdline", json_cmdline(), &err);
  set_new(root, "runtime", json_runtime(&err), &err);
  struct weft__snapshot s = {0};
  if (!err)
    err = weft__metrics_gather(reg, &s);
  for (size_t i = 0; !err && i < s.n; i++) {
    const struct weft__snap_family *f = s.fams[i];
    if (strcmp(f->name, "cmdline") && strcmp(f->name, "runtime"))
      set_new(root, f->name, json_family(f, &err), &err);
  }
  weft__metrics_snapshot_free(&s);
  if (!err &&
      (json_dumpf(root, out, JSON_SORT_KEYS | JSON_COMPACT | JSON_REAL_PRECISION(15)) < 0 ||
       putc('\n', out) == EOF || fflush(out) != 0 || ferror(out)))
    err = -EIO;
  json_decref(root);
  return err;
}
