/* metrics.c: registries, families, children and their updates (weft/metrics.h).
 *
 * Invariants:
 *   - reg->fams is sorted by name, names are unique; families are only added.
 *   - a family's children are unique by label values; each is in table (hashed) and in
 *     children (creation order); children are only added; an unlabelled family has its
 *     one child from creation (fam->only) and never another.
 *   - a child's header is written before the child is published (under fam->lock or
 *     reg->mu, whose release orders it) and never again; its data only by atomics.
 *
 * Striping. An update picks its stripe by the CPU it runs on, read from the rseq area the
 * kernel keeps current (see current_cpu), a plain load. Two threads share a stripe only when
 * one was preempted mid-update or there are more CPUs than stripes; both stay correct, as every
 * update is an atomic read-modify-write. The design that lost: a stripe per thread chosen by a
 * thread-local index, which on a machine with fewer stripes than threads (the scheduler's
 * threads plus the blocking pool's) puts running threads on one line, while CPUs never run two
 * threads at once. */
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

#include "obs/metrics_internal.h"

#if defined(__has_include) && defined(__has_builtin)
#if __has_include(<sys/rseq.h>) && __has_builtin(__builtin_thread_pointer)
#include <sys/rseq.h>
#define WEFT_HAVE_RSEQ 1
#endif
#endif

const double weft_metrics_default_buckets[WEFT_METRICS_DEFAULT_BUCKETS_N] = {
    .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10};

/* ---- validation ---- */

static int is_alpha_(int c)
{
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int is_digit(int c)
{
  return c >= '0' && c <= '9';
}

int weft__metrics_valid_name(const char *name)
{
  if (!name || !(is_alpha_(name[0]) || name[0] == ':'))
    return 0;
  for (const char *p = name + 1; *p; p++)
    if (!is_alpha_(*p) && !is_digit(*p) && *p != ':')
      return 0;
  return 1;
}

int weft__metrics_valid_label(const char *label)
{
  if (!label || !is_alpha_(label[0]) || strncmp(label, "__", 2) == 0)
    return 0;
  for (const char *p = label + 1; *p; p++)
    if (!is_alpha_(*p) && !is_digit(*p))
      return 0;
  return 1;
}

/* The length of the UTF-8 sequence starting at p (1..4), or 0 if it is malformed:
 * overlong forms, surrogates and code points above U+10FFFF are refused. */
static int utf8_seq(const unsigned char *p)
{
  unsigned c = p[0];
  if (c < 0x80)
    return 1;
  int n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
  if (n == 0 || c > 0xf4)
    return 0;
  for (int i = 1; i < n; i++)
    if ((p[i] & 0xc0) != 0x80)
      return 0;
  if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] > 0x9f) || (c == 0xf0 && p[1] < 0x90) ||
      (c == 0xf4 && p[1] > 0x8f))
    return 0;
  return n;
}

int weft__metrics_valid_utf8(const char *s)
{
  const unsigned char *p = (const unsigned char *)s;
  while (*p) {
    int n = utf8_seq(p);
    if (n == 0)
      return 0;
    p += n;
  }
  return 1;
}

static int valid_labels(int nlabels, const char *const *labels, int histogram)
{
  if (nlabels < 0 || nlabels > WEFT_METRICS_MAX_LABELS || (nlabels > 0 && !labels))
    return 0;
  for (int i = 0; i < nlabels; i++) {
    if (!weft__metrics_valid_label(labels[i]) || (histogram && !strcmp(labels[i], "le")))
      return 0;
    for (int j = 0; j < i; j++)
      if (!strcmp(labels[i], labels[j]))
        return 0;
  }
  return 1;
}

/* valid_buckets: the bounds to use (NULL, 0: the default), with a trailing +Inf dropped,
 * in *bounds, *n; 0 if they are not strictly increasing or hold NaN. */
static int valid_buckets(const double *b, int n, const double **bounds, int *count)
{
  if (!b && n == 0) {
    b = weft_metrics_default_buckets;
    n = WEFT_METRICS_DEFAULT_BUCKETS_N;
  }
  if (!b || n < 0)
    return 0;
  if (n > 0 && isinf(b[n - 1]) && b[n - 1] > 0)
    n--;
  if (n > WEFT_METRICS_MAX_BUCKETS)
    return 0;
  for (int i = 0; i < n; i++)
    if (isnan(b[i]) || (i > 0 && !(b[i] > b[i - 1])))
      return 0;
  *bounds = b;
  *count = n;
  return 1;
}

/* ---- stripes ---- */

static unsigned stripes_count(void)
{
  static atomic_uint cached;
  unsigned n = atomic_load_explicit(&cached, memory_order_relaxed);
  if (n)
    return n;
  long cpus = sysconf(_SC_NPROCESSORS_CONF);
  for (n = 1; n < (unsigned)cpus && n < WEFT__METRICS_MAX_STRIPES; n *= 2)
    ;
  atomic_store_explicit(&cached, n, memory_order_relaxed);
  return n;
}

/* current_cpu: the CPU running the caller. glibc 2.35+ registers every thread with rseq,
 * and the kernel keeps the thread's rseq area's cpu_id current: reading it directly is
 * one load (0.3 ns here) where sched_getcpu(), which reads the same field behind a call,
 * costs 1.6 ns. Without rseq, sched_getcpu(); -1 there (no getcpu) is fine too. */
static inline int current_cpu(void)
{
#if defined(WEFT_HAVE_RSEQ)
  if (__rseq_size > 0) {
    const struct rseq *rs =
        (const struct rseq *)((char *)__builtin_thread_pointer() + __rseq_offset);
    int cpu = (int)*(volatile const uint32_t *)&rs->cpu_id;
    if (cpu >= 0)
      return cpu;
  }
#endif
  return sched_getcpu();
}

/* stripe: the caller's stripe of child c (any CPU number masks to a valid one). */
static inline char *stripe(const struct weft__metric_child *c)
{
  unsigned i = c->mask ? (unsigned)current_cpu() & c->mask : 0;
  return c->data + (size_t)i * c->stride;
}

static inline void add_double(_Atomic uint64_t *w, double v)
{
  uint64_t old = atomic_load_explicit(w, memory_order_relaxed);
  while (!atomic_compare_exchange_weak_explicit(w, &old,
                                                weft__dbl_bits(weft__bits_dbl(old) + v),
                                                memory_order_relaxed, memory_order_relaxed))
    ;
}

/* ---- children ---- */

static uint64_t hash_values(int n, const char *const *values)
{
  uint64_t h = 1469598103934665603ull; /* FNV-1a; 0xff separates: it is never UTF-8 */
  for (int i = 0; i < n; i++) {
    for (const unsigned char *p = (const unsigned char *)values[i]; *p; p++)
      h = (h ^ *p) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;
  }
  return h;
}

static int same_values(const struct weft__metric_child *c, int n, const char *const *values)
{
  for (int i = 0; i < n; i++)
    if (strcmp(c->values[i], values[i]))
      return 0;
  return 1;
}

static void child_free(struct weft__metric_child *c, int nlabels)
{
  if (!c)
    return;
  for (int i = 0; i < nlabels && c->values; i++)
    free(c->values[i]);
  free(c->values);
  free(c->data);
  free(c);
}

static size_t data_stride(const struct weft__metric_family *f)
{
  size_t bytes = f->type == WEFT_METRIC_HISTOGRAM ? (size_t)(f->nbuckets + 2) * 8
                                                  : sizeof(struct weft__counter_stripe);
  return (bytes + WEFT__CACHE_LINE - 1) / WEFT__CACHE_LINE * WEFT__CACHE_LINE;
}

static struct weft__metric_child *child_new(struct weft__metric_family *f, uint64_t hash,
                                            const char *const *values)
{
  struct weft__metric_child *c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  c->fam = f;
  c->hash = hash;
  unsigned stripes = f->type == WEFT_METRIC_GAUGE ? 1 : f->nstripes;
  c->mask = stripes - 1;
  c->stride = (unsigned)data_stride(f);
  size_t bytes = (size_t)stripes * c->stride;
  c->data = aligned_alloc(WEFT__CACHE_LINE, bytes);
  c->values = calloc((size_t)f->nlabels + 1, sizeof *c->values);
  if (!c->data || !c->values)
    goto err_free;
  memset(c->data, 0, bytes); /* all-zero words are 0 and 0.0 */
  for (int i = 0; i < f->nlabels; i++)
    if (!(c->values[i] = strdup(values[i])))
      goto err_free;
  return c;
err_free:
  child_free(c, f->nlabels);
  return NULL;
}

/* find_child: the child with these values, or NULL. Caller holds f->lock. */
static struct weft__metric_child *find_child(const struct weft__metric_family *f, uint64_t hash,
                                             const char *const *values)
{
  if (!f->tsize)
    return NULL;
  for (struct weft__metric_child *c = f->table[hash & (f->tsize - 1)]; c; c = c->hnext)
    if (c->hash == hash && same_values(c, f->nlabels, values))
      return c;
  return NULL;
}

/* grow_table: double the hash table when it is as full as it is long. Caller holds
 * f->lock for writing. Returns 0 or -ENOMEM (the old table stays). */
static int grow_table(struct weft__metric_family *f)
{
  if (f->nchildren < f->tsize)
    return 0;
  size_t size = f->tsize ? f->tsize * 2 : 16;
  struct weft__metric_child **t = calloc(size, sizeof *t);
  if (!t)
    return -ENOMEM;
  for (size_t i = 0; i < f->tsize; i++) {
    for (struct weft__metric_child *c = f->table[i], *next; c; c = next) {
      next = c->hnext;
      c->hnext = t[c->hash & (size - 1)];
      t[c->hash & (size - 1)] = c;
    }
  }
  free(f->table);
  f->table = t;
  f->tsize = size;
  return 0;
}

/* insert_child: add c, or return the equal child another thread added first (then c is
 * freed). Returns NULL when out of memory (c freed). */
static struct weft__metric_child *insert_child(struct weft__metric_family *f,
                                               struct weft__metric_child *c)
{
  pthread_rwlock_wrlock(&f->lock);
  struct weft__metric_child *found = find_child(f, c->hash, (const char *const *)c->values);
  if (found)
    goto out_free;
  if (f->nchildren == f->cap) {
    size_t cap = f->cap ? f->cap * 2 : 8;
    struct weft__metric_child **v = realloc(f->children, cap * sizeof *v);
    if (!v)
      goto out_free;
    f->children = v;
    f->cap = cap;
  }
  if (grow_table(f) < 0)
    goto out_free;
  f->children[f->nchildren++] = c;
  c->hnext = f->table[c->hash & (f->tsize - 1)];
  f->table[c->hash & (f->tsize - 1)] = c;
  pthread_rwlock_unlock(&f->lock);
  return c;
out_free:
  pthread_rwlock_unlock(&f->lock);
  child_free(c, f->nlabels);
  return found;
}

static struct weft__metric_child *family_with(struct weft__metric_family *f, int n,
                                              const char *const *values)
{
  if (!f || n != f->nlabels || (n > 0 && !values))
    return NULL;
  if (n == 0)
    return f->only;
  for (int i = 0; i < n; i++)
    if (!values[i])
      return NULL;
  uint64_t hash = hash_values(n, values);
  pthread_rwlock_rdlock(&f->lock);
  struct weft__metric_child *c = find_child(f, hash, values);
  pthread_rwlock_unlock(&f->lock);
  if (c)
    return c;
  for (int i = 0; i < n; i++)
    if (!weft__metrics_valid_utf8(values[i]))
      return NULL;
  c = child_new(f, hash, values);
  return c ? insert_child(f, c) : NULL;
}

weft_counter *weft_counter_vec_with_values(weft_counter_vec *vec, int n,
                                           const char *const *values)
{
  return (weft_counter *)family_with(vec ? &vec->f : NULL, n, values);
}

weft_gauge *weft_gauge_vec_with_values(weft_gauge_vec *vec, int n, const char *const *values)
{
  return (weft_gauge *)family_with(vec ? &vec->f : NULL, n, values);
}

weft_histogram *weft_histogram_vec_with_values(weft_histogram_vec *vec, int n,
                                               const char *const *values)
{
  return (weft_histogram *)family_with(vec ? &vec->f : NULL, n, values);
}

/* ---- families ---- */

static void family_free(struct weft__metric_family *f)
{
  if (!f)
    return;
  for (size_t i = 0; i < f->nchildren; i++)
    child_free(f->children[i], f->nlabels);
  free(f->children);
  free(f->table);
  for (int i = 0; i < f->nlabels && f->labels; i++)
    free(f->labels[i]);
  free(f->labels);
  free(f->bounds);
  free(f->name);
  free(f->help);
  pthread_rwlock_destroy(&f->lock);
  free(f);
}

/* only_child: give unlabelled family f its one child, listed among its children. */
static int only_child(struct weft__metric_family *f)
{
  f->children = malloc(sizeof *f->children);
  if (!f->children)
    return -ENOMEM;
  f->cap = 1;
  if (!(f->only = child_new(f, hash_values(0, NULL), NULL)))
    return -ENOMEM;
  f->children[f->nchildren++] = f->only;
  return 0;
}

/* family_alloc: a new family with copies of everything and, unlabelled, its child. */
static struct weft__metric_family *family_alloc(weft_metric_type type, const char *name,
                                                const char *help, int nlabels,
                                                const char *const *labels, int nbuckets,
                                                const double *bounds)
{
  /* Every vec type is a family and nothing more: one allocation serves them all. */
  struct weft__metric_family *f = calloc(1, sizeof *f);
  if (!f)
    return NULL;
  pthread_rwlock_init(&f->lock, NULL);
  f->type = type;
  f->nlabels = nlabels;
  f->nbuckets = nbuckets;
  f->nstripes = stripes_count();
  f->name = strdup(name);
  f->help = strdup(help ? help : "");
  f->labels = calloc((size_t)nlabels + 1, sizeof *f->labels);
  f->bounds = malloc(((size_t)nbuckets + 1) * sizeof *f->bounds);
  if (!f->name || !f->help || !f->labels || !f->bounds)
    goto err_free;
  if (nbuckets)
    memcpy(f->bounds, bounds, (size_t)nbuckets * sizeof *bounds);
  for (int i = 0; i < nlabels; i++)
    if (!(f->labels[i] = strdup(labels[i])))
      goto err_free;
  if (nlabels == 0 && only_child(f) < 0)
    goto err_free;
  return f;
err_free:
  family_free(f);
  return NULL;
}

/* compatible: whether existing family f is what the caller asked to create. */
static int compatible(const struct weft__metric_family *f, weft_metric_type type, int nlabels,
                      const char *const *labels, int nbuckets, const double *bounds)
{
  if (f->type != type || f->nlabels != nlabels || f->nbuckets != nbuckets)
    return 0;
  for (int i = 0; i < nlabels; i++)
    if (strcmp(f->labels[i], labels[i]))
      return 0;
  for (int i = 0; i < nbuckets; i++)
    if (f->bounds[i] != bounds[i])
      return 0;
  return 1;
}

/* family_pos: where name is or would go in reg->fams. Caller holds reg->mu. */
static size_t family_pos(const weft_metrics_registry *reg, const char *name, int *found)
{
  size_t lo = 0, hi = reg->nfams;
  *found = 0;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(reg->fams[mid]->name, name);
    if (c == 0) {
      *found = 1;
      return mid;
    }
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

struct weft__metric_family *weft__metrics_find_family(weft_metrics_registry *reg,
                                                      const char *name)
{
  int found;
  size_t pos = family_pos(reg, name, &found);
  return found ? reg->fams[pos] : NULL;
}

/* family_insert: add f to reg, or report the family already named so. */
static int family_insert(weft_metrics_registry *reg, struct weft__metric_family *f,
                         struct weft__metric_family **existing)
{
  int found, rc = 0;
  pthread_mutex_lock(&reg->mu);
  size_t pos = family_pos(reg, f->name, &found);
  if (found) {
    *existing = reg->fams[pos];
    rc = -EEXIST;
    goto out;
  }
  if (reg->nfams == reg->capfams) {
    size_t cap = reg->capfams ? reg->capfams * 2 : 16;
    struct weft__metric_family **v = realloc(reg->fams, cap * sizeof *v);
    if (!v) {
      rc = -ENOMEM;
      goto out;
    }
    reg->fams = v;
    reg->capfams = cap;
  }
  memmove(reg->fams + pos + 1, reg->fams + pos, (reg->nfams - pos) * sizeof *reg->fams);
  reg->fams[pos] = f;
  reg->nfams++;
out:
  pthread_mutex_unlock(&reg->mu);
  return rc;
}

/* family_create: validate, build and register a family. See weft/metrics.h. */
static int family_create(weft_metrics_registry *reg, weft_metric_type type, const char *name,
                         const char *help, int nlabels, const char *const *labels, int nbuckets,
                         const double *buckets, struct weft__metric_family **out)
{
  const double *bounds = NULL;
  if (!out)
    return -EINVAL;
  *out = NULL;
  if (!weft__metrics_valid_name(name) || (help && !weft__metrics_valid_utf8(help)) ||
      !valid_labels(nlabels, labels, type == WEFT_METRIC_HISTOGRAM))
    return -EINVAL;
  if (type == WEFT_METRIC_HISTOGRAM && !valid_buckets(buckets, nbuckets, &bounds, &nbuckets))
    return -EINVAL;
  if (type != WEFT_METRIC_HISTOGRAM)
    nbuckets = 0;
  if (!(reg = weft__metrics_resolve(reg)))
    return -ENOMEM;
  struct weft__metric_family *f =
      family_alloc(type, name, help, nlabels, labels, nbuckets, bounds);
  if (!f)
    return -ENOMEM;
  struct weft__metric_family *existing = NULL;
  int rc = family_insert(reg, f, &existing);
  if (rc == 0) {
    *out = f;
    return 0;
  }
  family_free(f);
  if (existing && compatible(existing, type, nlabels, labels, nbuckets, bounds))
    *out = existing;
  return rc;
}

int weft_counter_vec_new(weft_metrics_registry *reg, const char *name, const char *help,
                         int nlabels, const char *const *labels, weft_counter_vec **out)
{
  struct weft__metric_family *f = NULL;
  int rc = family_create(reg, WEFT_METRIC_COUNTER, name, help, nlabels, labels, 0, NULL, &f);
  if (out)
    *out = (weft_counter_vec *)f;
  return rc;
}

int weft_gauge_vec_new(weft_metrics_registry *reg, const char *name, const char *help,
                       int nlabels, const char *const *labels, weft_gauge_vec **out)
{
  struct weft__metric_family *f = NULL;
  int rc = family_create(reg, WEFT_METRIC_GAUGE, name, help, nlabels, labels, 0, NULL, &f);
  if (out)
    *out = (weft_gauge_vec *)f;
  return rc;
}

int weft_histogram_vec_new(weft_metrics_registry *reg, const char *name, const char *help,
                           int nbuckets, const double *buckets, int nlabels,
                           const char *const *labels, weft_histogram_vec **out)
{
  struct weft__metric_family *f = NULL;
  int rc = family_create(reg, WEFT_METRIC_HISTOGRAM, name, help, nlabels, labels, nbuckets,
                         buckets, &f);
  if (out)
    *out = (weft_histogram_vec *)f;
  return rc;
}

int weft_counter_new(weft_metrics_registry *reg, const char *name, const char *help,
                     weft_counter **out)
{
  struct weft__metric_family *f = NULL;
  int rc = family_create(reg, WEFT_METRIC_COUNTER, name, help, 0, NULL, 0, NULL, &f);
  if (out)
    *out = f ? (weft_counter *)f->only : NULL;
  return out ? rc : -EINVAL;
}

int weft_gauge_new(weft_metrics_registry *reg, const char *name, const char *help,
                   weft_gauge **out)
{
  struct weft__metric_family *f = NULL;
  int rc = family_create(reg, WEFT_METRIC_GAUGE, name, help, 0, NULL, 0, NULL, &f);
  if (out)
    *out = f ? (weft_gauge *)f->only : NULL;
  return out ? rc : -EINVAL;
}

int weft_histogram_new(weft_metrics_registry *reg, const char *name, const char *help,
                       int nbuckets, const double *buckets, weft_histogram **out)
{
  struct weft__metric_family *f = NULL;
  int rc =
      family_create(reg, WEFT_METRIC_HISTOGRAM, name, help, 0, NULL, nbuckets, buckets, &f);
  if (out)
    *out = f ? (weft_histogram *)f->only : NULL;
  return out ? rc : -EINVAL;
}

int weft_metrics_linear_buckets(double start, double width, int count, double *out)
{
  if (count < 1 || !(width > 0) || !out || !isfinite(start))
    return -EINVAL;
  for (int i = 0; i < count; i++)
    out[i] = start + i * width;
  return 0;
}

int weft_metrics_exponential_buckets(double start, double factor, int count, double *out)
{
  if (count < 1 || !(start > 0) || !(factor > 1) || !out)
    return -EINVAL;
  for (int i = 0; i < count; i++, start *= factor)
    out[i] = start;
  return 0;
}

/* ---- updates ---- */

void weft_counter_inc(weft_counter *c)
{
  if (c)
    atomic_fetch_add_explicit(&((struct weft__counter_stripe *)stripe(&c->c))->n, 1,
                              memory_order_relaxed);
}

void weft_counter_add_u64(weft_counter *c, uint64_t n)
{
  if (c)
    atomic_fetch_add_explicit(&((struct weft__counter_stripe *)stripe(&c->c))->n, n,
                              memory_order_relaxed);
}

int weft_counter_add(weft_counter *c, double v)
{
  if (!(v >= 0))
    return -EINVAL;
  if (!c)
    return 0;
  struct weft__counter_stripe *s = (struct weft__counter_stripe *)stripe(&c->c);
  if (v < 9007199254740992.0 && v == (double)(uint64_t)v)
    atomic_fetch_add_explicit(&s->n, (uint64_t)v, memory_order_relaxed);
  else
    add_double(&s->fbits, v);
  return 0;
}

double weft_counter_value(const weft_counter *c)
{
  if (!c)
    return 0;
  uint64_t n = 0;
  double f = 0;
  for (unsigned i = 0; i <= c->c.mask; i++) {
    struct weft__counter_stripe *s =
        (struct weft__counter_stripe *)(c->c.data + i * c->c.stride);
    n += atomic_load_explicit(&s->n, memory_order_relaxed);
    f += weft__bits_dbl(atomic_load_explicit(&s->fbits, memory_order_relaxed));
  }
  return (double)n + f;
}

static inline _Atomic uint64_t *gauge_word(const weft_gauge *g)
{
  return (_Atomic uint64_t *)g->c.data;
}

void weft_gauge_set(weft_gauge *g, double v)
{
  if (g)
    atomic_store_explicit(gauge_word(g), weft__dbl_bits(v), memory_order_relaxed);
}

void weft_gauge_add(weft_gauge *g, double v)
{
  if (g)
    add_double(gauge_word(g), v);
}

void weft_gauge_sub(weft_gauge *g, double v)
{
  weft_gauge_add(g, -v);
}

void weft_gauge_inc(weft_gauge *g)
{
  weft_gauge_add(g, 1);
}

void weft_gauge_dec(weft_gauge *g)
{
  weft_gauge_add(g, -1);
}

double weft_gauge_value(const weft_gauge *g)
{
  return g ? weft__bits_dbl(atomic_load_explicit(gauge_word(g), memory_order_relaxed)) : 0;
}

/* bucket_index: the first bound >= v, or nbuckets (+Inf; NaN too). Linear below 32
 * bounds, where it beats a binary search (Go's client draws the line at 35). */
static inline int bucket_index(const double *bounds, int n, double v)
{
  if (n < 32) {
    int i = 0;
    while (i < n && !(v <= bounds[i]))
      i++;
    return i;
  }
  if (isnan(v))
    return n;
  int lo = 0, hi = n;
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    if (v <= bounds[mid])
      hi = mid;
    else
      lo = mid + 1;
  }
  return lo;
}

void weft_histogram_observe(weft_histogram *h, double v)
{
  if (!h)
    return;
  const struct weft__metric_family *f = h->c.fam;
  _Atomic uint64_t *s = (_Atomic uint64_t *)stripe(&h->c);
  int i = bucket_index(f->bounds, f->nbuckets, v);
  atomic_fetch_add_explicit(&s[1 + i], 1, memory_order_relaxed);
  add_double(&s[0], v);
}

void weft_histogram_observe_ns(weft_histogram *h, int64_t ns)
{
  weft_histogram_observe(h, (double)ns / 1e9);
}

uint64_t weft_histogram_count(const weft_histogram *h)
{
  if (!h)
    return 0;
  uint64_t n = 0;
  for (unsigned i = 0; i <= h->c.mask; i++) {
    _Atomic uint64_t *s = (_Atomic uint64_t *)(h->c.data + i * h->c.stride);
    for (int b = 0; b <= h->c.fam->nbuckets; b++)
      n += atomic_load_explicit(&s[1 + b], memory_order_relaxed);
  }
  return n;
}

double weft_histogram_sum(const weft_histogram *h)
{
  if (!h)
    return 0;
  double sum = 0;
  for (unsigned i = 0; i <= h->c.mask; i++) {
    _Atomic uint64_t *s = (_Atomic uint64_t *)(h->c.data + i * h->c.stride);
    sum += weft__bits_dbl(atomic_load_explicit(&s[0], memory_order_relaxed));
  }
  return sum;
}

void weft__metrics_child_read(const struct weft__metric_child *c, double *value, uint64_t *cum,
                              double *sum)
{
  const struct weft__metric_family *f = c->fam;
  switch (f->type) {
  case WEFT_METRIC_COUNTER:
    *value = weft_counter_value((const weft_counter *)c);
    break;
  case WEFT_METRIC_HISTOGRAM:
    memset(cum, 0, ((size_t)f->nbuckets + 1) * sizeof *cum);
    *sum = 0;
    for (unsigned i = 0; i <= c->mask; i++) {
      _Atomic uint64_t *s = (_Atomic uint64_t *)(c->data + i * c->stride);
      *sum += weft__bits_dbl(atomic_load_explicit(&s[0], memory_order_relaxed));
      for (int b = 0; b <= f->nbuckets; b++)
        cum[b] += atomic_load_explicit(&s[1 + b], memory_order_relaxed);
    }
    for (int b = 1; b <= f->nbuckets; b++)
      cum[b] += cum[b - 1];
    break;
  default:
    *value = weft_gauge_value((const weft_gauge *)c);
  }
}

/* ---- registries and collectors ---- */

weft_metrics_registry *weft_metrics_registry_new(void)
{
  weft_metrics_registry *reg = calloc(1, sizeof *reg);
  if (reg)
    pthread_mutex_init(&reg->mu, NULL);
  return reg;
}

void weft_metrics_registry_free(weft_metrics_registry *reg)
{
  if (!reg || reg->is_default)
    return;
  for (size_t i = 0; i < reg->nfams; i++)
    family_free(reg->fams[i]);
  free(reg->fams);
  free(reg->cols);
  pthread_mutex_destroy(&reg->mu);
  free(reg);
}

static weft_metrics_registry *default_reg;
static pthread_once_t default_once = PTHREAD_ONCE_INIT;

static void default_init(void)
{
  weft_metrics_registry *reg = weft_metrics_registry_new();
  if (!reg)
    return;
  reg->is_default = 1;
  weft_metrics_register_runtime(reg);
  weft_metrics_register_process(reg);
  default_reg = reg;
}

weft_metrics_registry *weft_metrics_default(void)
{
  pthread_once(&default_once, default_init);
  return default_reg;
}

weft_metrics_registry *weft__metrics_resolve(weft_metrics_registry *reg)
{
  return reg ? reg : weft_metrics_default();
}

int weft_metrics_register_collector(weft_metrics_registry *reg, weft_metrics_collect_fn fn,
                                    void *arg)
{
  int rc = 0;
  if (!fn)
    return -EINVAL;
  if (!(reg = weft__metrics_resolve(reg)))
    return -ENOMEM;
  pthread_mutex_lock(&reg->mu);
  for (size_t i = 0; i < reg->ncols; i++)
    if (reg->cols[i].fn == fn && reg->cols[i].arg == arg) {
      rc = -EEXIST;
      goto out;
    }
  if (reg->ncols == reg->capcols) {
    size_t cap = reg->capcols ? reg->capcols * 2 : 8;
    struct weft__collector *v = realloc(reg->cols, cap * sizeof *v);
    if (!v) {
      rc = -ENOMEM;
      goto out;
    }
    reg->cols = v;
    reg->capcols = cap;
  }
  reg->cols[reg->ncols++] = (struct weft__collector){fn, arg};
out:
  pthread_mutex_unlock(&reg->mu);
  return rc;
}

int weft_metrics_unregister_collector(weft_metrics_registry *reg, weft_metrics_collect_fn fn,
                                      void *arg)
{
  int rc = -ENOENT;
  if (!(reg = weft__metrics_resolve(reg)))
    return -ENOENT;
  pthread_mutex_lock(&reg->mu); /* waits for a gather calling fn to finish */
  for (size_t i = 0; i < reg->ncols; i++) {
    if (reg->cols[i].fn == fn && reg->cols[i].arg == arg) {
      memmove(reg->cols + i, reg->cols + i + 1, (reg->ncols - i - 1) * sizeof *reg->cols);
      reg->ncols--;
      rc = 0;
      break;
    }
  }
  pthread_mutex_unlock(&reg->mu);
  return rc;
}
