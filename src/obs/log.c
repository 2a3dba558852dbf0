/* log.c: handlers, loggers and records (weft/log.h).
 *
 * A record is formatted whole into a buffer on the caller's stack (moved to the heap when
 * it outgrows it) and then written with one write(2) loop, or fwrite + fflush, under the
 * handler's lock: records never interleave, whatever the fd (a pipe splits writes above
 * PIPE_BUF; a lock does not).
 *
 * Handlers and loggers are immutable after creation except for the handler's level
 * (atomic, relaxed: a level change need not order anything else; a record started just
 * before a change may still be written). A logger is a chain: each one adds a group or
 * attributes (deep copies, freed with it) to its parent's, and formatting walks the chain
 * from the root, outermost first.
 *
 * The default logger is swapped atomically; replaced loggers are kept (reachable) for the
 * life of the process, since a thread may be using one it loaded just before the swap.
 *
 * Lock order: a handler's mu is a leaf; nothing else is taken while it is held. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "obs/log_internal.h"
#include "weft/error.h"
#include "weft/log.h"
#include "weft/trace.h"

struct weft_log_handler {
  atomic_long refs;   /* unused for the static default */
  bool is_static;     /* the built-in default: never freed; immutable */
  bool json;          /* immutable */
  int flags;          /* WEFT_LOG_*; immutable */
  atomic_int level;   /* relaxed: see the file comment */
  FILE *file;         /* output, if not NULL; borrowed; immutable */
  int fd;             /* else this fd; borrowed; immutable */
  pthread_mutex_t mu; /* serialises writes to the output; guards nothing else */
};

/* Copied attributes: one allocation holding the block, the attribute arrays (nested
 * groups' too) and the strings. */
struct attr_block {
  const struct attr_block *parent; /* context blocks: the enclosing context's; borrowed */
  size_t n;
  weft_log_attr *attrs;
};

struct weft_logger {
  atomic_long refs;         /* unused for the static default */
  bool is_static;           /* immutable */
  weft_log_handler *h;      /* a reference; immutable */
  weft_logger *parent;      /* a reference, or NULL for a root; immutable */
  char *group;              /* with_group: the group opened here (owned), else NULL */
  struct attr_block *attrs; /* with: the attributes added here (owned), else NULL */
};

static weft_log_handler default_handler = {
    .is_static = true, .fd = 2, .mu = PTHREAD_MUTEX_INITIALIZER};
static weft_logger default_logger = {.is_static = true, .h = &default_handler};
static _Atomic(weft_logger *) current = &default_logger;

/* Loggers replaced as the default, kept alive. Guarded by retired_mu. */
static pthread_mutex_t retired_mu = PTHREAD_MUTEX_INITIALIZER;
static weft_logger **retired;
static size_t nretired;

static const char ctx_key; /* the context key of attribute blocks: its address */

/* ---- copying attributes ---- */

static size_t str_len(const char *p, size_t n)
{
  return !p ? 0 : n == SIZE_MAX ? strlen(p) : n;
}

/* Attribute and string bytes a deep copy of a[0, n) needs. */
static void copy_size(const weft_log_attr *a, size_t n, size_t *nattrs, size_t *nbytes)
{
  *nattrs += n;
  for (size_t i = 0; i < n; i++) {
    *nbytes += str_len(a[i].key, SIZE_MAX) + 1;
    if (a[i].kind == WEFT_LOG_KIND_STRING)
      *nbytes += str_len(a[i].v.s.p, a[i].v.s.n) + 1;
    else if (a[i].kind == WEFT_LOG_KIND_GROUP)
      copy_size(a[i].v.group.attrs, a[i].v.group.n, nattrs, nbytes);
  }
}

static const char *copy_str(char **next, const char *s, size_t n)
{
  char *d = *next;
  if (n)
    memcpy(d, s, n);
  d[n] = '\0';
  *next += n + 1;
  return d;
}

/* Deep-copy src[0, n) into dst; nested arrays from *anext, strings from *snext. */
static void copy_attrs(weft_log_attr *dst, const weft_log_attr *src, size_t n,
                       weft_log_attr **anext, char **snext)
{
  for (size_t i = 0; i < n; i++) {
    const weft_log_attr *a = &src[i];
    dst[i] = *a;
    dst[i].key = copy_str(snext, a->key, str_len(a->key, SIZE_MAX));
    if (a->kind == WEFT_LOG_KIND_STRING) {
      size_t len = str_len(a->v.s.p, a->v.s.n);
      dst[i].v.s.p = copy_str(snext, a->v.s.p, len);
      dst[i].v.s.n = len;
    } else if (a->kind == WEFT_LOG_KIND_ERROR) {
      weft_error_retain((weft_error *)a->v.e);
    } else if (a->kind == WEFT_LOG_KIND_GROUP) {
      weft_log_attr *kids = *anext;
      *anext += a->v.group.n;
      copy_attrs(kids, a->v.group.attrs, a->v.group.n, anext, snext);
      dst[i].v.group.attrs = kids;
    }
  }
}

static struct attr_block *block_new(const weft_log_attr *a, size_t n)
{
  size_t nattrs = 0, nbytes = 0;
  copy_size(a, n, &nattrs, &nbytes);
  struct attr_block *b = malloc(sizeof *b + nattrs * sizeof(weft_log_attr) + nbytes);
  if (!b)
    return NULL;
  b->parent = NULL;
  b->n = n;
  b->attrs = (weft_log_attr *)(b + 1);
  weft_log_attr *anext = b->attrs + n;
  char *snext = (char *)(b->attrs + nattrs);
  copy_attrs(b->attrs, a, n, &anext, &snext);
  return b;
}

static void release_errors(const weft_log_attr *a, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    if (a[i].kind == WEFT_LOG_KIND_ERROR)
      weft_error_release((weft_error *)a[i].v.e);
    else if (a[i].kind == WEFT_LOG_KIND_GROUP)
      release_errors(a[i].v.group.attrs, a[i].v.group.n);
  }
}

static void block_free(void *p)
{
  struct attr_block *b = p;
  if (b)
    release_errors(b->attrs, b->n);
  free(b);
}

/* ---- handlers ---- */

static weft_log_handler *handler_new(const weft_log_options *o, bool json)
{
  weft_log_handler *h = calloc(1, sizeof *h);
  if (!h)
    return NULL;
  atomic_init(&h->refs, 1);
  h->json = json;
  h->flags = o ? o->flags : 0;
  atomic_init(&h->level, o ? o->level : WEFT_LOG_INFO);
  h->file = o ? o->file : NULL;
  h->fd = o && o->fd > 0 ? o->fd : 2;
  pthread_mutex_init(&h->mu, NULL);
  return h;
}

weft_log_handler *weft_log_text_handler_new(const weft_log_options *opts)
{
  return handler_new(opts, false);
}

weft_log_handler *weft_log_json_handler_new(const weft_log_options *opts)
{
  return handler_new(opts, true);
}

weft_log_handler *weft_log_handler_retain(weft_log_handler *h)
{
  if (h && !h->is_static)
    atomic_fetch_add_explicit(&h->refs, 1, memory_order_relaxed);
  return h;
}

void weft_log_handler_release(weft_log_handler *h)
{
  if (!h || h->is_static || atomic_fetch_sub_explicit(&h->refs, 1, memory_order_acq_rel) != 1)
    return;
  pthread_mutex_destroy(&h->mu);
  free(h);
}

void weft_log_handler_set_level(weft_log_handler *h, int level)
{
  if (!h)
    h = weft_logger_handler(NULL);
  atomic_store_explicit(&h->level, level, memory_order_relaxed);
}

int weft_log_handler_level(const weft_log_handler *h)
{
  if (!h)
    h = weft_logger_handler(NULL);
  return atomic_load_explicit(&h->level, memory_order_relaxed);
}

/* Write all of p[0, n) to fd. errno is read at once, on this thread (nothing parks). */
static void write_all(int fd, const char *p, size_t n)
{
  while (n) {
    ssize_t k = write(fd, p, n);
    if (k > 0) {
      p += k, n -= (size_t)k;
    } else if (k < 0 && errno == EAGAIN) { /* a non-blocking fd: wait, holding the lock */
      struct pollfd pfd = {.fd = fd, .events = POLLOUT};
      poll(&pfd, 1, 1000);
    } else if (!(k < 0 && errno == EINTR)) {
      return; /* a closed pipe, a full disk: the record is lost, as with slog */
    }
  }
}

static void handler_write(weft_log_handler *h, const char *p, size_t n)
{
  pthread_mutex_lock(&h->mu);
  if (h->file) {
    fwrite(p, 1, n, h->file);
    fflush(h->file);
  } else {
    write_all(h->fd, p, n);
  }
  pthread_mutex_unlock(&h->mu);
}

/* ---- loggers ---- */

static weft_logger *logger_alloc(weft_log_handler *h, weft_logger *parent)
{
  weft_logger *l = calloc(1, sizeof *l);
  if (!l)
    return NULL;
  atomic_init(&l->refs, 1);
  l->h = weft_log_handler_retain(h);
  l->parent = weft_logger_retain(parent);
  return l;
}

weft_logger *weft_logger_new(weft_log_handler *h)
{
  return h ? logger_alloc(h, NULL) : NULL;
}

static weft_logger *or_default(weft_logger *l)
{
  return l ? l : atomic_load_explicit(&current, memory_order_acquire);
}

weft_logger *weft_logger_with_attrs(weft_logger *l, const weft_log_attr *attrs, size_t n)
{
  l = or_default(l);
  weft_logger *c = logger_alloc(l->h, l);
  if (c && !(c->attrs = block_new(attrs, n))) {
    weft_logger_release(c);
    c = NULL;
  }
  return c;
}

weft_logger *weft_logger_with_group(weft_logger *l, const char *name)
{
  l = or_default(l);
  if (!name || !*name)
    return weft_logger_retain(l);
  weft_logger *c = logger_alloc(l->h, l);
  if (c && !(c->group = strdup(name))) {
    weft_logger_release(c);
    c = NULL;
  }
  return c;
}

weft_log_handler *weft_logger_handler(weft_logger *l)
{
  return or_default(l)->h;
}

weft_logger *weft_logger_retain(weft_logger *l)
{
  if (l && !l->is_static)
    atomic_fetch_add_explicit(&l->refs, 1, memory_order_relaxed);
  return l;
}

/* Iterative up the chain, like weft_ctx_release: a long chain needs no stack. */
void weft_logger_release(weft_logger *l)
{
  while (l && !l->is_static &&
         atomic_fetch_sub_explicit(&l->refs, 1, memory_order_acq_rel) == 1) {
    weft_logger *parent = l->parent;
    weft_log_handler_release(l->h);
    block_free(l->attrs);
    free(l->group);
    free(l);
    l = parent;
  }
}

weft_logger *weft_log_default(void)
{
  return or_default(NULL);
}

void weft_log_set_default(weft_logger *l)
{
  l = l ? weft_logger_retain(l) : &default_logger;
  pthread_mutex_lock(&retired_mu);
  weft_logger *old = atomic_exchange_explicit(&current, l, memory_order_acq_rel);
  if (!old->is_static) {
    weft_logger **r = realloc(retired, (nretired + 1) * sizeof *r);
    if (r) /* else old leaks: still safer than freeing it under a reader */
      retired = r, retired[nretired++] = old;
  }
  pthread_mutex_unlock(&retired_mu);
}

int weft_log_enabled(weft_logger *l, int level)
{
  return level >= atomic_load_explicit(&or_default(l)->h->level, memory_order_relaxed);
}

char *weft_log_level_string(int level, char *buf)
{
  const char *base = level < WEFT_LOG_INFO    ? "DEBUG"
                     : level < WEFT_LOG_WARN  ? "INFO"
                     : level < WEFT_LOG_ERROR ? "WARN"
                                              : "ERROR";
  int off = level < WEFT_LOG_INFO    ? level - WEFT_LOG_DEBUG
            : level < WEFT_LOG_WARN  ? level
            : level < WEFT_LOG_ERROR ? level - WEFT_LOG_WARN
                                     : level - WEFT_LOG_ERROR;
  size_t n = strlen(base);
  memcpy(buf, base, n);
  if (off) { /* at most 5 + 1 + 10 characters */
    buf[n++] = off < 0 ? '-' : '+';
    struct weft__logbuf b = {.p = buf + n, .cap = 11};
    weft__log_uint(&b, off < 0 ? (uint64_t)0 - (uint64_t)(int64_t)off : (uint64_t)off);
    n += b.n;
  }
  buf[n] = '\0';
  return buf;
}

/* ---- context attributes ---- */

weft_ctx *weft_log_ctx_with_attrs(weft_ctx *ctx, const weft_log_attr *attrs, size_t n)
{
  struct attr_block *b = block_new(attrs, n);
  if (!b)
    return NULL;
  /* The enclosing block lives as long as the context holding it, which the new context
   * holds a reference to. */
  b->parent = ctx ? weft_ctx_value(ctx, &ctx_key) : NULL;
  weft_ctx *c = weft_ctx_with_value_free(ctx, &ctx_key, b, block_free);
  if (!c)
    block_free(b);
  return c;
}

/* ---- formatting a record ----
 *
 * Groups are a stack of names. In text they only prefix keys ("g.h.k"). In JSON a group
 * opens an object lazily, when its first attribute is written, so that groups that end
 * up empty are left out as slog leaves them out: names[0, nopen) are open objects,
 * names[nopen, nnames) are waiting for an attribute. Groups nested deeper than
 * MAX_GROUPS are inlined. */
#define MAX_GROUPS 32

struct fmt {
  struct weft__logbuf *b;
  bool json;
  bool sep; /* something precedes the next key at this level (comma or space) */
  int nnames, nopen;
  const char *names[MAX_GROUPS];
};

/* Open the JSON objects of the groups waiting for an attribute. */
static void open_groups(struct fmt *f)
{
  for (; f->nopen < f->nnames; f->nopen++) {
    if (f->sep)
      weft__logbuf_putc(f->b, ',');
    const char *g = f->names[f->nopen];
    weft__log_json_string(f->b, g, strlen(g));
    weft__logbuf_put(f->b, ":{", 2);
    f->sep = false;
  }
}

/* A text key with its group prefix, quoted as one string when any part needs it. */
static void text_key(struct fmt *f, const char *key, size_t klen)
{
  if (!f->nnames) {
    weft__log_text_string(f->b, key, klen);
    return;
  }
  char stack[128];
  struct weft__logbuf k = {.p = stack, .cap = sizeof stack};
  for (int i = 0; i < f->nnames; i++) {
    weft__logbuf_put(&k, f->names[i], strlen(f->names[i]));
    weft__logbuf_putc(&k, '.');
  }
  weft__logbuf_put(&k, key, klen);
  if (k.oom)
    f->b->oom = true;
  else
    weft__log_text_string(f->b, k.p, k.n);
  weft__logbuf_free(&k);
}

static void put_key(struct fmt *f, const char *key)
{
  size_t klen = str_len(key, SIZE_MAX);
  if (f->json) {
    open_groups(f);
    if (f->sep)
      weft__logbuf_putc(f->b, ',');
    weft__log_json_string(f->b, key ? key : "", klen);
    weft__logbuf_putc(f->b, ':');
  } else {
    if (f->sep)
      weft__logbuf_putc(f->b, ' ');
    text_key(f, key ? key : "", klen);
    weft__logbuf_putc(f->b, '=');
  }
  f->sep = true;
}

static void put_string(struct fmt *f, const char *s, size_t n)
{
  if (!s)
    s = "", n = 0;
  if (f->json)
    weft__log_json_string(f->b, s, n);
  else
    weft__log_text_string(f->b, s, n);
}

static void put_cstr(struct fmt *f, const char *s)
{
  put_string(f, s, str_len(s, SIZE_MAX));
}

static void put_error(struct fmt *f, const weft_error *e)
{
  char stack[256];
  if (!e) {
    put_cstr(f, "<nil>");
    return;
  }
  size_t need = weft_error_format(e, stack, sizeof stack);
  if (need < sizeof stack) {
    put_string(f, stack, need);
    return;
  }
  char *p = malloc(need + 1);
  if (!p) {
    f->b->oom = true;
    return;
  }
  weft_error_format(e, p, need + 1);
  put_string(f, p, need);
  free(p);
}

static void put_value(struct fmt *f, const weft_log_attr *a)
{
  struct weft__logbuf *b = f->b;
  switch (a->kind) {
  case WEFT_LOG_KIND_STRING:
    put_string(f, a->v.s.p, str_len(a->v.s.p, a->v.s.n));
    break;
  case WEFT_LOG_KIND_INT64:
    weft__log_int(b, a->v.i);
    break;
  case WEFT_LOG_KIND_UINT64:
    weft__log_uint(b, a->v.u);
    break;
  case WEFT_LOG_KIND_DOUBLE:
    (f->json ? weft__log_json_double : weft__log_text_double)(b, a->v.d);
    break;
  case WEFT_LOG_KIND_BOOL:
    weft__logbuf_put(b, a->v.b ? "true" : "false", a->v.b ? 4 : 5);
    break;
  case WEFT_LOG_KIND_DURATION:
    if (f->json)
      weft__log_int(b, a->v.i);
    else
      weft__log_duration(b, a->v.i);
    break;
  case WEFT_LOG_KIND_TIME:
    if (f->json)
      weft__logbuf_putc(b, '"');
    weft__log_time(b, a->v.i, !f->json);
    if (f->json)
      weft__logbuf_putc(b, '"');
    break;
  case WEFT_LOG_KIND_ERRNO:
    put_cstr(f, a->v.err ? weft_strerror(a->v.err) : "<nil>");
    break;
  case WEFT_LOG_KIND_ERROR:
    put_error(f, a->v.e);
    break;
  }
}

static void put_attr(struct fmt *f, const weft_log_attr *a);

static void put_group(struct fmt *f, const weft_log_attr *a)
{
  bool push = a->key && *a->key && f->nnames < MAX_GROUPS;
  if (push)
    f->names[f->nnames++] = a->key;
  for (size_t i = 0; i < a->v.group.n; i++)
    put_attr(f, &a->v.group.attrs[i]);
  if (!push)
    return;
  if (f->json && f->nopen == f->nnames) { /* it was opened: close it */
    weft__logbuf_putc(f->b, '}');
    f->nopen--;
    f->sep = true;
  }
  f->nnames--;
}

static void put_attr(struct fmt *f, const weft_log_attr *a)
{
  if (a->kind == WEFT_LOG_KIND_NONE || a->kind > WEFT_LOG_KIND_GROUP)
    return;
  if (a->kind == WEFT_LOG_KIND_GROUP) {
    put_group(f, a);
    return;
  }
  put_key(f, a->key);
  put_value(f, a);
}

static void put_source(struct fmt *f, const weft_log_source *src)
{
  put_key(f, "source");
  if (f->json) {
    weft__logbuf_put(f->b, "{\"function\":", 12);
    put_cstr(f, src->func);
    weft__logbuf_put(f->b, ",\"file\":", 8);
    put_cstr(f, src->file);
    weft__logbuf_put(f->b, ",\"line\":", 8);
    weft__log_int(f->b, src->line);
    weft__logbuf_putc(f->b, '}');
  } else {
    char s[32];
    struct weft__logbuf v = {.p = s, .cap = sizeof s};
    weft__logbuf_put(&v, src->file ? src->file : "", str_len(src->file, SIZE_MAX));
    weft__logbuf_putc(&v, ':');
    weft__log_int(&v, src->line);
    if (v.oom)
      f->b->oom = true;
    else
      weft__log_text_string(f->b, v.p, v.n);
    weft__logbuf_free(&v);
  }
}

/* time, level, source, msg. */
static void put_builtins(struct fmt *f, int flags, int level, const weft_log_source *src,
                         const char *msg)
{
  char lv[WEFT_LOG_LEVEL_SIZE];
  if (f->json)
    weft__logbuf_putc(f->b, '{');
  if (!(flags & WEFT_LOG_NO_TIME)) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    put_key(f, "time");
    if (f->json)
      weft__logbuf_putc(f->b, '"');
    weft__log_time(f->b, (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec, !f->json);
    if (f->json)
      weft__logbuf_putc(f->b, '"');
  }
  put_key(f, "level");
  put_cstr(f, weft_log_level_string(level, lv));
  if ((flags & WEFT_LOG_ADD_SOURCE) && src)
    put_source(f, src);
  put_key(f, "msg");
  put_cstr(f, msg);
}

/* trace_id and span_id, then the context's attribute blocks, outermost first (found by
 * walking up from the innermost: chains are short, and this needs neither stack nor
 * heap). */
static void put_ctx(struct fmt *f, weft_ctx *ctx)
{
  weft_trace t;
  if (!ctx)
    return;
  if (weft_trace_from_ctx(ctx, &t) == 0) {
    char hex[33];
    put_key(f, "trace_id");
    put_cstr(f, weft_trace_id_hex(t.trace_id, hex));
    put_key(f, "span_id");
    put_cstr(f, weft_trace_span_hex(t.span_id, hex));
  }
  const struct attr_block *inner = weft_ctx_value(ctx, &ctx_key);
  size_t depth = 0;
  for (const struct attr_block *b = inner; b; b = b->parent)
    depth++;
  while (depth--) {
    const struct attr_block *b = inner;
    for (size_t i = 0; i < depth; i++)
      b = b->parent;
    for (size_t i = 0; i < b->n; i++)
      put_attr(f, &b->attrs[i]);
  }
}

/* The logger chain, root first (the same walk as put_ctx). */
static void put_logger(struct fmt *f, const weft_logger *l)
{
  size_t depth = 0;
  for (const weft_logger *p = l; p; p = p->parent)
    depth++;
  while (depth--) {
    const weft_logger *p = l;
    for (size_t i = 0; i < depth; i++)
      p = p->parent;
    if (p->group && f->nnames < MAX_GROUPS)
      f->names[f->nnames++] = p->group;
    for (size_t i = 0; p->attrs && i < p->attrs->n; i++)
      put_attr(f, &p->attrs->attrs[i]);
  }
}

void weft_log_record(weft_logger *l, weft_ctx *ctx, int level, const weft_log_source *src,
                     const char *msg, const weft_log_attr *attrs, size_t n)
{
  l = or_default(l);
  weft_log_handler *h = l->h;
  if (level < atomic_load_explicit(&h->level, memory_order_relaxed))
    return;
  char stack[1024];
  struct weft__logbuf b = {.p = stack, .cap = sizeof stack};
  struct fmt f = {.b = &b, .json = h->json};
  put_builtins(&f, h->flags, level, src, msg);
  put_ctx(&f, ctx);
  put_logger(&f, l);
  for (size_t i = 0; i < n; i++)
    put_attr(&f, &attrs[i]);
  if (f.json)
    for (int i = 0; i <= f.nopen; i++) /* the open groups, then the record */
      weft__logbuf_putc(&b, '}');
  weft__logbuf_putc(&b, '\n');
  if (!b.oom)
    handler_write(h, b.p, b.n);
  weft__logbuf_free(&b);
}
