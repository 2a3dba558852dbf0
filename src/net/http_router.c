/* http_router.c: a request router with the semantics of Go 1.22's ServeMux.
 *
 * Patterns. "[METHOD ][HOST]/PATH" parses into a method ("" for any), a host ("" for any)
 * and a list of segments: literals (percent-decoded, as Go decodes them), {name},
 * {name...} (last only), an anonymous multi for a trailing '/', and {$} (last only).
 *
 * The tree (Go's routingNode). Level 1 branches on the host, level 2 on the method, every
 * further level on one path segment. A node's literal children are an array sorted by key
 * and searched by bisection; its {name} child, its multi route and its {$} route have
 * slots of their own (Go keys them "", "*" and "/" among the literals, which lets a
 * literal "*" segment or a decoded "%2F" segment collide with them; separate slots avoid
 * that).
 *
 * Invariants (checked after every registration in debug builds, see router_check):
 *  - every route is in rt->routes and at exactly one place in the tree;
 *  - literal children are sorted strictly by key (bytewise, a prefix first);
 *  - a multi or {$} route is the last segment of its pattern;
 *  - no two registered patterns conflict (checked against every route with the same host
 *    at registration: O(n) per registration, like Go).
 * The last is what makes the lookup a plain depth-first search that tries the literal
 * child, then the {name} child, then the multi route at each node, and stops at the first
 * route found: among the patterns matching a request, the first found is the most
 * specific (Go's argument in routing_tree.go). A node's depth fixes how much of the path
 * it consumes, so each node is visited at most once per lookup, and the recursion is as
 * deep as the longest pattern, never as deep as the request's path.
 *
 * Concurrency. The router has no lock: registration must be over before lookups start
 * (the header says so); lookups only read, from any number of threads.
 *
 * Matching reads the raw (still percent-encoded) path from the request target and decodes
 * each segment before comparing it, as Go does, so "%2F" stays inside one segment and a
 * {name...} value may contain '/'. The design that lost: matching the request's decoded
 * path (weft_http_request_path), which would split "a%2Fb" into two segments. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "net/http_internal_router.h"
#include "weft/http.h"

enum seg_kind {
  SEG_LITERAL, /* one segment equal to s (decoded) */
  SEG_WILD,    /* {s}: one segment, not a trailing slash */
  SEG_MULTI,   /* {s...}, or s = "" for a trailing '/': the rest of the path */
  SEG_DOLLAR,  /* {$}: a trailing slash and nothing after it */
};

struct seg {
  enum seg_kind kind;
  char *s;    /* LITERAL: text, may hold NUL; WILD, MULTI: name; DOLLAR: NULL */
  size_t len; /* bytes at s */
};

struct route {
  char *str;        /* the pattern as registered */
  char *method;     /* "" for any */
  char *host;       /* "" for any */
  struct seg *segs; /* at least one */
  size_t nsegs;
  size_t nnamed; /* WILD and named MULTI segments: the values a match captures */
  weft_http_handler_fn fn;
  void *arg;
};

struct rnode;

struct rkid {
  char *key; /* a host, a method or a decoded literal segment (may hold NUL) */
  size_t len;
  struct rnode *node;
};

struct rnode {
  struct route *route;  /* the pattern ending here, or NULL for an interior node */
  struct rkid *kids;    /* literal children, sorted by key */
  size_t nkids, cap;    /* entries and room in kids */
  struct rnode *wild;   /* the {name} child, or NULL */
  struct route *multi;  /* the pattern with a multi here, or NULL */
  struct route *dollar; /* the pattern with {$} here, or NULL */
};

struct weft_http_router {
  struct rnode root;     /* kids keyed by host, "" for patterns without one */
  struct route **routes; /* every pattern, in registration order (conflict checks) */
  size_t nroutes, cap;   /* entries and room in routes */
  char **methods;        /* sorted distinct methods of patterns, HEAD too if GET (Allow) */
  size_t nmethods, mcap; /* entries and room in methods */
  weft_http_handler_fn not_found; /* NULL: the default 404 */
  void *not_found_arg;
  weft_http_handler_fn not_allowed; /* NULL: the default 405 */
  void *not_allowed_arg;
  bool no_redirects; /* redirects answered as not found (set_redirects off) */
};

/* ---- percent-decoding, as Go's url.PathUnescape is used by ServeMux ---- */

static int hexval(unsigned char c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* Whether s[0, n) should be decoded: it has escapes and all are well formed. Go keeps a
 * segment with a malformed escape as it is. */
static bool should_decode(const char *s, size_t n)
{
  bool any = false;
  for (size_t i = 0; i < n; i++) {
    if (s[i] != '%')
      continue;
    if (i + 2 >= n || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0)
      return false;
    any = true;
  }
  return any;
}

/* Decode s[0, n) into out (when not NULL); returns the decoded length. */
static size_t unescape(const char *s, size_t n, char *out)
{
  bool dec = should_decode(s, n);
  size_t o = 0;
  for (size_t i = 0; i < n; i++, o++) {
    unsigned char c = s[i];
    if (dec && c == '%') {
      c = (unsigned char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
      i += 2;
    }
    if (out)
      out[o] = (char)c;
  }
  return o;
}

/* Compare raw[0, n), decoded when dec, with key[0, klen): bytewise, a prefix first. */
static int key_cmp(const char *raw, size_t n, bool dec, const char *key, size_t klen)
{
  size_t i = 0, k = 0;
  while (i < n && k < klen) {
    unsigned char c = raw[i], d = key[k++];
    if (dec && c == '%') {
      c = (unsigned char)(hexval(raw[i + 1]) * 16 + hexval(raw[i + 2]));
      i += 3;
    } else {
      i++;
    }
    if (c != d)
      return c < d ? -1 : 1;
  }
  return i < n ? 1 : k < klen ? -1 : 0;
}

/* ---- paths ---- */

/* Whether p[0, n) (p[0] == '/') is what Go's cleanPath returns for it: no empty, "." or
 * ".." segment, except that the last may be empty (a trailing slash). */
static bool path_is_clean(const char *p, size_t n)
{
  for (size_t i = 1;;) {
    size_t j = i;
    while (j < n && p[j] != '/')
      j++;
    size_t len = j - i;
    bool last = j >= n;
    if ((len == 0 && !last) || (len == 1 && p[i] == '.') ||
        (len == 2 && p[i] == '.' && p[i + 1] == '.'))
      return false;
    if (last)
      return true;
    i = j + 1;
  }
}

/* Go's cleanPath (path.Clean keeping a trailing slash) of p[0, n) into out, which has room
 * for n bytes (the result is never longer); returns its length. */
static size_t clean_path(const char *p, size_t n, char *out)
{
  size_t o = 0; /* out[0, o) is "" or "/a/b" */
  for (size_t i = 1; i <= n;) {
    size_t j = i;
    while (j < n && p[j] != '/')
      j++;
    size_t len = j - i;
    if (len == 2 && p[i] == '.' && p[i + 1] == '.') {
      while (o > 0 && out[--o] != '/')
        ; /* drop the last segment; at the root, ".." goes nowhere */
    } else if (len > 1 || (len == 1 && p[i] != '.')) {
      out[o++] = '/';
      memmove(out + o, p + i, len);
      o += len;
    }
    i = j + 1;
  }
  if (o == 0 || p[n - 1] == '/')
    out[o++] = '/';
  return o;
}

/* The host to match: Go's stripHostPort ("example.com:80" → "example.com", "[::1]:80" →
 * "::1"), except for CONNECT. */
static const char *strip_port(const char *h, bool connect, size_t *len)
{
  size_t n = strlen(h);
  *len = n;
  if (connect)
    return h;
  if (h[0] == '[') {
    const char *close = memchr(h, ']', n);
    if (close && close[1] == ':' && !strchr(close + 2, ':')) {
      *len = (size_t)(close - h - 1);
      return h + 1;
    }
    return h; /* no port, or malformed: Go keeps it as it is */
  }
  const char *colon = strchr(h, ':');
  if (colon && !strchr(colon + 1, ':'))
    *len = (size_t)(colon - h);
  return h;
}

/* ---- patterns ---- */

static bool is_tchar(unsigned char c)
{
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool valid_method(const char *s, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (!is_tchar((unsigned char)s[i]))
      return false;
  return n > 0;
}

/* A Go identifier, ASCII only (Go also accepts Unicode letters and digits). */
static bool valid_name(const char *s, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    unsigned char c = s[i];
    bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (!letter && (i == 0 || c < '0' || c > '9'))
      return false;
  }
  return n > 0;
}

static void route_free(struct route *r)
{
  if (!r)
    return;
  for (size_t i = 0; i < r->nsegs; i++)
    free(r->segs[i].s);
  free(r->segs);
  free(r->host);
  free(r->method);
  free(r->str);
  free(r);
}

static int add_seg(struct route *r, enum seg_kind kind, const char *s, size_t len)
{
  struct seg *g = &r->segs[r->nsegs];
  *g = (struct seg){.kind = kind, .len = len};
  if (kind == SEG_LITERAL) {
    g->len = unescape(s, len, NULL);
    g->s = malloc(g->len + 1);
    if (g->s)
      g->s[unescape(s, len, g->s)] = '\0';
  } else if (kind != SEG_DOLLAR) {
    g->s = strndup(s, len);
  }
  if (kind != SEG_DOLLAR && !g->s)
    return -ENOMEM;
  r->nsegs++;
  if (kind == SEG_WILD || (kind == SEG_MULTI && len > 0))
    r->nnamed++;
  return 0;
}

static bool name_taken(const struct route *r, const char *name, size_t len)
{
  for (size_t i = 0; i < r->nsegs; i++) {
    const struct seg *g = &r->segs[i];
    if ((g->kind == SEG_WILD || g->kind == SEG_MULTI) && g->len == len &&
        !memcmp(g->s, name, len))
      return true;
  }
  return false;
}

/* A "{...}" segment s[0, len) (the brace at s[0]); at_end: nothing follows it. */
static int parse_wildcard(struct route *r, const char *s, size_t len, bool at_end)
{
  if (s[len - 1] != '}' || len < 2)
    return -EINVAL;
  const char *name = s + 1;
  size_t n = len - 2;
  if (n == 1 && name[0] == '$')
    return at_end ? add_seg(r, SEG_DOLLAR, NULL, 0) : -EINVAL;
  bool multi = n >= 3 && !memcmp(name + n - 3, "...", 3);
  if (multi)
    n -= 3;
  if ((multi && !at_end) || !valid_name(name, n) || name_taken(r, name, n))
    return -EINVAL;
  return add_seg(r, multi ? SEG_MULTI : SEG_WILD, name, n);
}

/* The segments of path p[0, n) (p[0] == '/'), as Go's parsePattern reads them. */
static int parse_segments(struct route *r, const char *p, size_t n)
{
  for (size_t i = 1; i <= n;) {
    if (i == n) /* a trailing slash: the rest of the path, anonymously */
      return add_seg(r, SEG_MULTI, "", 0);
    size_t j = i;
    while (j < n && p[j] != '/')
      j++;
    const char *s = p + i, *brace = memchr(s, '{', j - i);
    int err;
    if (!brace)
      err = add_seg(r, SEG_LITERAL, s, j - i);
    else if (brace != s)
      err = -EINVAL; /* a wildcard must be the whole segment */
    else
      err = parse_wildcard(r, s, j - i, j == n);
    if (err)
      return err;
    i = j + 1;
  }
  return 0;
}

/* Split "[METHOD ][HOST]/PATH" into r's method and host; *path gets PATH. */
static int parse_head(struct route *r, const char *str, const char **path)
{
  const char *rest = str, *sp = strpbrk(str, " \t");
  size_t mlen = 0;
  if (sp) { /* Go: the method is followed by one or more spaces or tabs */
    mlen = (size_t)(sp - str);
    rest = sp + strspn(sp, " \t");
  }
  if (mlen > 0 && !valid_method(str, mlen))
    return -EINVAL;
  const char *slash = strchr(rest, '/');
  if (!slash || memchr(rest, '{', (size_t)(slash - rest)))
    return -EINVAL; /* no path, or "{" in the host (a path missing its '/') */
  bool connect = mlen == 7 && !memcmp(str, "CONNECT", 7);
  if (mlen > 0 && !connect && !path_is_clean(slash, strlen(slash)))
    return -EINVAL; /* Go: such a pattern could never match a cleaned path */
  r->method = strndup(str, mlen);
  r->host = strndup(rest, (size_t)(slash - rest));
  *path = slash;
  return r->method && r->host ? 0 : -ENOMEM;
}

static int route_parse(const char *str, struct route **out)
{
  if (!*str)
    return -EINVAL;
  struct route *r = calloc(1, sizeof *r);
  if (!r)
    return -ENOMEM;
  const char *path;
  int err = parse_head(r, str, &path);
  if (err)
    goto err_free_route;
  size_t nslash = 0;
  for (const char *c = path; *c; c++)
    nslash += *c == '/';
  r->str = strdup(str);
  r->segs = calloc(nslash, sizeof *r->segs); /* a segment follows each '/' at most */
  err = r->str && r->segs ? parse_segments(r, path, strlen(path)) : -ENOMEM;
  if (err)
    goto err_free_route;
  *out = r;
  return 0;
err_free_route:
  route_free(r);
  return err;
}

/* ---- precedence and conflicts (Go's pattern.comparePathsAndMethods) ---- */

enum rel { REL_EQUIVALENT, REL_MORE_GENERAL, REL_MORE_SPECIFIC, REL_DISJOINT, REL_OVERLAPS };

/* The relation of two patterns given the relations of two of their parts. */
static enum rel combine(enum rel r1, enum rel r2)
{
  switch (r1) {
  case REL_EQUIVALENT:
    return r2;
  case REL_DISJOINT:
    return REL_DISJOINT;
  case REL_OVERLAPS:
    return r2 == REL_DISJOINT ? REL_DISJOINT : REL_OVERLAPS;
  case REL_MORE_GENERAL:
  case REL_MORE_SPECIFIC:
    if (r2 == REL_EQUIVALENT)
      return r1;
    if ((r1 == REL_MORE_GENERAL && r2 == REL_MORE_SPECIFIC) ||
        (r1 == REL_MORE_SPECIFIC && r2 == REL_MORE_GENERAL))
      return REL_OVERLAPS;
    return r2;
  }
  weft__die("http router: bad relation %d", (int)r1);
}

static enum rel compare_methods(const struct route *a, const struct route *b)
{
  if (!strcmp(a->method, b->method))
    return REL_EQUIVALENT;
  if (!*a->method)
    return REL_MORE_GENERAL;
  if (!*b->method)
    return REL_MORE_SPECIFIC;
  if (!strcmp(a->method, "GET") && !strcmp(b->method, "HEAD"))
    return REL_MORE_GENERAL; /* GET matches HEAD too */
  if (!strcmp(a->method, "HEAD") && !strcmp(b->method, "GET"))
    return REL_MORE_SPECIFIC;
  return REL_DISJOINT;
}

static enum rel compare_segments(const struct seg *a, const struct seg *b)
{
  if (a->kind == SEG_MULTI || b->kind == SEG_MULTI) {
    if (a->kind == b->kind)
      return REL_EQUIVALENT;
    return a->kind == SEG_MULTI ? REL_MORE_GENERAL : REL_MORE_SPECIFIC;
  }
  if (a->kind == SEG_DOLLAR || b->kind == SEG_DOLLAR) /* only a multi matches a slash */
    return a->kind == b->kind ? REL_EQUIVALENT : REL_DISJOINT;
  if (a->kind == SEG_WILD || b->kind == SEG_WILD) {
    if (a->kind == b->kind)
      return REL_EQUIVALENT;
    return a->kind == SEG_WILD ? REL_MORE_GENERAL : REL_MORE_SPECIFIC;
  }
  return a->len == b->len && !memcmp(a->s, b->s, a->len) ? REL_EQUIVALENT : REL_DISJOINT;
}

static enum rel compare_paths(const struct route *a, const struct route *b)
{
  bool amulti = a->segs[a->nsegs - 1].kind == SEG_MULTI;
  bool bmulti = b->segs[b->nsegs - 1].kind == SEG_MULTI;
  if (a->nsegs != b->nsegs && !amulti && !bmulti)
    return REL_DISJOINT;
  enum rel rel = REL_EQUIVALENT;
  for (size_t i = 0; i < a->nsegs && i < b->nsegs; i++) {
    rel = combine(rel, compare_segments(&a->segs[i], &b->segs[i]));
    if (rel == REL_DISJOINT)
      return rel;
  }
  if (a->nsegs == b->nsegs)
    return rel;
  /* Only a shorter pattern ending in a multi can still match what the longer does. */
  if (a->nsegs < b->nsegs && amulti)
    return combine(rel, REL_MORE_GENERAL);
  if (b->nsegs < a->nsegs && bmulti)
    return combine(rel, REL_MORE_SPECIFIC);
  return REL_DISJOINT;
}

/* Whether a and b match some request in common with neither more specific. Patterns
 * with different hosts never conflict: a host beats no host, and two hosts are disjoint. */
static bool conflicts(const struct route *a, const struct route *b)
{
  if (strcmp(a->host, b->host))
    return false;
  enum rel rel = compare_methods(a, b);
  if (rel == REL_DISJOINT)
    return false;
  rel = combine(rel, compare_paths(a, b));
  return rel == REL_EQUIVALENT || rel == REL_OVERLAPS;
}

/* ---- the tree ---- */

/* Where key s[0, len) (decoded when dec) is among n's kids, or would go. */
static size_t kid_search(const struct rnode *n, const char *s, size_t len, bool dec,
                         bool *found)
{
  size_t lo = 0, hi = n->nkids;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = key_cmp(s, len, dec, n->kids[mid].key, n->kids[mid].len);
    if (c == 0) {
      *found = true;
      return mid;
    }
    if (c < 0)
      hi = mid;
    else
      lo = mid + 1;
  }
  *found = false;
  return lo;
}

static const struct rnode *kid_find(const struct rnode *n, const char *s, size_t len, bool dec)
{
  bool found;
  if (!n)
    return NULL;
  size_t i = kid_search(n, s, len, dec, &found);
  return found ? n->kids[i].node : NULL;
}

/* n's child for literal key s[0, len), created when missing; NULL for -ENOMEM. */
static struct rnode *kid_add(struct rnode *n, const char *s, size_t len)
{
  bool found;
  size_t i = kid_search(n, s, len, false, &found);
  if (found)
    return n->kids[i].node;
  if (n->nkids == n->cap) {
    size_t cap = n->cap ? n->cap * 2 : 4;
    struct rkid *k = realloc(n->kids, cap * sizeof *k);
    if (!k)
      return NULL;
    n->kids = k;
    n->cap = cap;
  }
  struct rnode *c = calloc(1, sizeof *c);
  char *key = malloc(len + 1);
  if (!c || !key) {
    free(c);
    free(key);
    return NULL;
  }
  memcpy(key, s, len);
  key[len] = '\0';
  memmove(&n->kids[i + 1], &n->kids[i], (n->nkids - i) * sizeof *n->kids);
  n->kids[i] = (struct rkid){key, len, c};
  n->nkids++;
  return c;
}

/* Put r in the tree. A failure (-ENOMEM) may leave empty interior nodes behind, which
 * match nothing. */
static int tree_add(weft_http_router *rt, struct route *r)
{
  struct rnode *n = kid_add(&rt->root, r->host, strlen(r->host));
  if (n)
    n = kid_add(n, r->method, strlen(r->method));
  for (size_t i = 0; n && i < r->nsegs; i++) {
    const struct seg *g = &r->segs[i];
    struct route **slot = g->kind == SEG_MULTI ? &n->multi : &n->dollar;
    switch (g->kind) {
    case SEG_LITERAL:
      n = kid_add(n, g->s, g->len);
      break;
    case SEG_WILD:
      if (!n->wild)
        n->wild = calloc(1, sizeof *n->wild);
      n = n->wild;
      break;
    case SEG_MULTI:
    case SEG_DOLLAR:
      if (*slot) /* equivalent patterns conflict: registration let one through */
        weft__die("http router: %s and %s share a leaf", (*slot)->str, r->str);
      *slot = r;
      return 0;
    }
  }
  if (!n)
    return -ENOMEM;
  if (n->route)
    weft__die("http router: %s and %s share a leaf", n->route->str, r->str);
  n->route = r;
  return 0;
}

static void node_free(struct rnode *n)
{
  for (size_t i = 0; i < n->nkids; i++) {
    node_free(n->kids[i].node);
    free(n->kids[i].node);
    free(n->kids[i].key);
  }
  free(n->kids);
  if (n->wild) {
    node_free(n->wild);
    free(n->wild);
  }
}

#ifndef NDEBUG
/* Routes in the tree under n, asserting the invariants in the file's opening comment. */
static size_t node_check(const struct rnode *n)
{
  size_t count = (n->route != NULL) + (n->multi != NULL) + (n->dollar != NULL);
  if (n->multi && n->multi->segs[n->multi->nsegs - 1].kind != SEG_MULTI)
    weft__die("http router: %s under a multi slot", n->multi->str);
  if (n->dollar && n->dollar->segs[n->dollar->nsegs - 1].kind != SEG_DOLLAR)
    weft__die("http router: %s under a {$} slot", n->dollar->str);
  for (size_t i = 0; i < n->nkids; i++) {
    const struct rkid *k = &n->kids[i];
    if (i > 0 && key_cmp(n->kids[i - 1].key, n->kids[i - 1].len, false, k->key, k->len) >= 0)
      weft__die("http router: children out of order at \"%s\"", k->key);
    count += node_check(k->node);
  }
  return count + (n->wild ? node_check(n->wild) : 0);
}

static void router_check(const weft_http_router *rt)
{
  size_t n = node_check(&rt->root);
  if (n != rt->nroutes)
    weft__die("http router: %zu routes in the tree, %zu registered", n, rt->nroutes);
}
#else
static void router_check(const weft_http_router *rt)
{
  (void)rt;
}
#endif

/* ---- lookups ---- */

/* The path still to match: s[0, len), then one more '/' when slash (the probe for Go's
 * trailing-slash redirect, which never records captures). Starts with '/' unless empty. */
struct rpath {
  const char *s;
  size_t len;
  bool slash;
};

/* A value captured on the way down, last first; lives in the matcher's stack frames. */
struct capture {
  const char *s; /* raw, still percent-encoded */
  size_t len;
  const struct capture *prev;
};

/* Room for the strings a lookup returns; used counts past cap so that -ENOSPC can say how
 * much would do. */
struct wbuf {
  char *buf;
  size_t cap, used;
};

static void wb_cat(struct wbuf *w, const char *s, size_t n)
{
  if (w->used + n <= w->cap)
    memmove(w->buf + w->used, s, n); /* s may already be in buf (a cleaned path) */
  w->used += n;
}

/* Append the decoding of s[0, n) and a NUL; returns it, or NULL when it does not fit. */
static const char *wb_decode(struct wbuf *w, const char *s, size_t n)
{
  size_t len = unescape(s, n, NULL);
  char *out = NULL;
  if (w->used + len + 1 <= w->cap) {
    out = w->buf + w->used;
    out[unescape(s, n, out)] = '\0';
  }
  w->used += len + 1;
  return out;
}

/* One lookup: the request and where its results go. */
struct req {
  const weft_http_router *rt;
  const char *method;
  const char *host; /* port stripped; hlen bytes */
  size_t hlen;
  const char *query; /* after '?': qlen bytes */
  size_t qlen;
  weft_http_route_match *m;
  struct wbuf wb;
  bool record; /* write the captures of the route found into m */
};

static bool is_named(const struct seg *g)
{
  return g->kind == SEG_WILD || (g->kind == SEG_MULTI && g->len > 0);
}

/* Write r's captures (caps, last first) into q->m, naming them by r's segments. */
static void record_captures(struct req *q, const struct route *r, const struct capture *caps)
{
  weft_http_route_match *m = q->m;
  size_t idx = r->nnamed, i = r->nsegs;
  m->nparams = r->nnamed;
  for (const struct capture *c = caps; c; c = c->prev) {
    do {
      if (i == 0 || idx == 0)
        weft__die("http router: more captures than wildcards in %s", r->str);
    } while (!is_named(&r->segs[--i]));
    const char *value = wb_decode(&q->wb, c->s, c->len);
    if (--idx < m->max_params)
      m->params[idx] = (weft_http_route_param){r->segs[i].s, value};
  }
}

static const struct route *leaf(struct req *q, const struct route *r,
                                const struct capture *caps)
{
  if (r && q->record)
    record_captures(q, r, caps);
  return r;
}

/* The route under n matching path p: literal, then {name}, then multi (Go's matchPath). */
static const struct route *match_path(struct req *q, const struct rnode *n, struct rpath p,
                                      const struct capture *caps)
{
  if (!n)
    return NULL;
  if (p.len == 0 && !p.slash)
    return leaf(q, n->route, caps);
  bool trailing = p.len + p.slash == 1; /* what is left is "/" */
  if (trailing && n->dollar)
    return leaf(q, n->dollar, caps);
  if (!trailing) {
    size_t j = 1;
    while (j < p.len && p.s[j] != '/')
      j++;
    struct capture c = {p.s + 1, j - 1, caps};
    struct rpath rest = {p.s + j, p.len - j, p.slash};
    const struct rnode *lit = kid_find(n, c.s, c.len, should_decode(c.s, c.len));
    const struct route *r = match_path(q, lit, rest, caps);
    if (!r)
      r = match_path(q, n->wild, rest, &c);
    if (r)
      return r;
  }
  if (!n->multi)
    return NULL;
  if (n->multi->segs[n->multi->nsegs - 1].len == 0) /* a trailing '/': nothing to name */
    return leaf(q, n->multi, caps);
  struct capture c = {p.s + (p.len > 0), p.len > 0 ? p.len - 1 : 0, caps};
  return leaf(q, n->multi, &c);
}

/* The route for method and p under a host's node (Go's matchMethodAndPath). */
static const struct route *match_method(struct req *q, const struct rnode *hn, struct rpath p)
{
  const struct route *r =
      match_path(q, kid_find(hn, q->method, strlen(q->method), false), p, NULL);
  if (!r && !strcmp(q->method, "HEAD"))
    r = match_path(q, kid_find(hn, "GET", 3, false), p, NULL);
  if (!r)
    r = match_path(q, kid_find(hn, "", 0, false), p, NULL);
  return r;
}

/* The most specific route for the request with path p: the host's patterns first. */
static const struct route *tree_match(struct req *q, struct rpath p)
{
  const struct route *r = NULL;
  if (q->hlen > 0)
    r = match_method(q, kid_find(&q->rt->root, q->host, q->hlen, false), p);
  return r ? r : match_method(q, kid_find(&q->rt->root, "", 0, false), p);
}

/* Whether r matches path p with nothing for a final multi to take (Go's exactMatch). */
static bool is_exact(const struct route *r, struct rpath p)
{
  if (!r)
    return false;
  if (r->segs[r->nsegs - 1].kind != SEG_MULTI)
    return true;
  if (!p.slash && p.len > 0 && p.s[p.len - 1] != '/')
    return false;
  size_t slashes = p.slash;
  for (size_t i = 0; i < p.len; i++)
    slashes += p.s[i] == '/';
  return r->nsegs == slashes;
}

/* Go's trailing-slash redirect: r (the route found for s[0, n), or NULL) is not an exact
 * match, and s + "/" would have one. */
static bool wants_slash(struct req *q, const struct route *r, const char *s, size_t n)
{
  struct rpath p = {s, n, false}, probe = {s, n, true};
  if (is_exact(r, p) || s[n - 1] == '/')
    return false;
  bool saved = q->record;
  q->record = false;
  bool yes = is_exact(tree_match(q, probe), probe);
  q->record = saved;
  return yes;
}

/* REDIRECT to s[0, n), plus "/" when slash, plus the query. */
static int redirect_to(struct req *q, const char *s, size_t n, bool slash)
{
  q->wb.used = 0;
  wb_cat(&q->wb, s, n);
  wb_cat(&q->wb, "/", slash);
  if (q->qlen) {
    wb_cat(&q->wb, "?", 1);
    wb_cat(&q->wb, q->query, q->qlen);
  }
  wb_cat(&q->wb, "", 1);
  q->m->nparams = 0;
  if (q->wb.used > q->wb.cap) {
    q->m->buf_needed = q->wb.used;
    return -ENOSPC;
  }
  q->m->location = q->wb.buf;
  return WEFT_HTTP_ROUTE_REDIRECT;
}

/* An unclean path: redirect to its cleaned form, with the trailing slash if Go would. */
static int redirect_clean(struct req *q, const char *s, size_t n)
{
  size_t need = n + 2 + (q->qlen ? q->qlen + 1 : 0); /* cleaned, '/', '?' query, NUL */
  if (q->wb.cap < need) {
    q->m->buf_needed = need;
    return -ENOSPC;
  }
  size_t c = clean_path(s, n, q->wb.buf);
  q->record = false;
  bool slash = wants_slash(q, tree_match(q, (struct rpath){q->wb.buf, c, false}), q->wb.buf, c);
  return redirect_to(q, q->wb.buf, c, slash);
}

/* Whether a pattern for method (exactly) matches s[0, n) or s + "/" (Go's matchingMethods). */
static bool method_matches(struct req *q, const char *method, const char *s, size_t n)
{
  const struct rnode *hosts[2] = {q->hlen ? kid_find(&q->rt->root, q->host, q->hlen, false)
                                          : NULL,
                                  kid_find(&q->rt->root, "", 0, false)};
  for (int i = 0; i < 2; i++) {
    const struct rnode *mn = kid_find(hosts[i], method, strlen(method), false);
    if (match_path(q, mn, (struct rpath){s, n, false}, NULL) ||
        (s[n - 1] != '/' && match_path(q, mn, (struct rpath){s, n, true}, NULL)))
      return true;
  }
  return false;
}

/* No route: METHOD_NOT_ALLOWED with the Allow list when other methods match, else
 * NOT_FOUND. rt->methods is sorted, so the list is too. */
static int not_found(struct req *q, const char *s, size_t n)
{
  const weft_http_router *rt = q->rt;
  q->record = false;
  q->wb.used = 0;
  bool get = method_matches(q, "GET", s, n), any = false;
  q->m->nparams = 0;
  for (size_t i = 0; i < rt->nmethods; i++) {
    const char *mt = rt->methods[i];
    if (!(!strcmp(mt, "HEAD") && get) && !method_matches(q, mt, s, n))
      continue;
    if (any)
      wb_cat(&q->wb, ", ", 2);
    wb_cat(&q->wb, mt, strlen(mt));
    any = true;
  }
  if (!any)
    return WEFT_HTTP_ROUTE_NOT_FOUND;
  wb_cat(&q->wb, "", 1);
  if (q->wb.used > q->wb.cap) {
    q->m->buf_needed = q->wb.used;
    return -ENOSPC;
  }
  q->m->allow = q->wb.buf;
  return WEFT_HTTP_ROUTE_METHOD_NOT_ALLOWED;
}

/* A clean path s[0, n) (or any path, for CONNECT). */
static int route_path(struct req *q, const char *s, size_t n)
{
  q->record = true;
  const struct route *r = tree_match(q, (struct rpath){s, n, false});
  if (wants_slash(q, r, s, n))
    return redirect_to(q, s, n, true);
  if (!r)
    return not_found(q, s, n);
  weft_http_route_match *m = q->m;
  if (r->nnamed > m->max_params || q->wb.used > q->wb.cap) {
    m->buf_needed = q->wb.used;
    return -ENOSPC;
  }
  m->pattern = r->str;
  m->fn = r->fn;
  m->arg = r->arg;
  return WEFT_HTTP_ROUTE_FOUND;
}

int weft_http_router_match(const weft_http_router *rt, const char *method, const char *host,
                           const char *path, weft_http_route_match *m)
{
  if (!rt || !method || !*method || !path || !m || (!m->buf && m->buf_len))
    return -EINVAL;
  m->pattern = m->allow = m->location = NULL;
  m->fn = NULL;
  m->arg = NULL;
  m->nparams = m->buf_needed = 0;
  size_t n = strcspn(path, "?#");
  const char *query = path[n] == '?' ? path + n + 1 : "";
  bool connect = !strcmp(method, "CONNECT");
  struct req q = {.rt = rt,
                  .method = method,
                  .query = query,
                  .qlen = strcspn(query, "#"),
                  .m = m,
                  .wb = {m->buf, m->buf_len, 0}};
  q.host = strip_port(host ? host : "", connect, &q.hlen);
  if (n == 0 || path[0] != '/')
    return WEFT_HTTP_ROUTE_NOT_FOUND; /* asterisk or authority form */
  if (!connect && !path_is_clean(path, n))
    return redirect_clean(&q, path, n);
  return route_path(&q, path, n);
}

/* ---- registration ---- */

weft_http_router *weft_http_router_new(void)
{
  return calloc(1, sizeof(weft_http_router));
}

void weft_http_router_free(weft_http_router *rt)
{
  if (!rt)
    return;
  node_free(&rt->root);
  for (size_t i = 0; i < rt->nroutes; i++)
    route_free(rt->routes[i]);
  free(rt->routes);
  for (size_t i = 0; i < rt->nmethods; i++)
    free(rt->methods[i]);
  free(rt->methods);
  free(rt);
}

/* Add method to rt->methods (sorted, distinct) unless there. */
static int note_method(weft_http_router *rt, const char *method)
{
  size_t i = 0;
  while (i < rt->nmethods && strcmp(rt->methods[i], method) < 0)
    i++;
  if (i < rt->nmethods && !strcmp(rt->methods[i], method))
    return 0;
  if (rt->nmethods == rt->mcap) {
    size_t cap = rt->mcap ? rt->mcap * 2 : 8;
    char **ms = realloc(rt->methods, cap * sizeof *ms);
    if (!ms)
      return -ENOMEM;
    rt->methods = ms;
    rt->mcap = cap;
  }
  char *copy = strdup(method);
  if (!copy)
    return -ENOMEM;
  memmove(&rt->methods[i + 1], &rt->methods[i], (rt->nmethods - i) * sizeof *rt->methods);
  rt->methods[i] = copy;
  rt->nmethods++;
  return 0;
}

/* Make room for one more route, and note its method for Allow lists. Extra room or an
 * extra method name that no pattern uses changes no lookup. */
static int reserve(weft_http_router *rt, const struct route *r)
{
  if (rt->nroutes == rt->cap) {
    size_t cap = rt->cap ? rt->cap * 2 : 16;
    struct route **rs = realloc(rt->routes, cap * sizeof *rs);
    if (!rs)
      return -ENOMEM;
    rt->routes = rs;
    rt->cap = cap;
  }
  if (!*r->method)
    return 0;
  int err = note_method(rt, r->method);
  if (!err && !strcmp(r->method, "GET"))
    err = note_method(rt, "HEAD");
  return err;
}

int weft_http_router_handle(weft_http_router *rt, const char *pattern, weft_http_handler_fn fn,
                            void *arg)
{
  if (!rt || !pattern || !fn)
    return -EINVAL;
  struct route *r;
  int err = route_parse(pattern, &r);
  if (err)
    return err;
  r->fn = fn;
  r->arg = arg;
  for (size_t i = 0; i < rt->nroutes; i++) {
    if (conflicts(r, rt->routes[i])) {
      err = -EEXIST;
      goto err_free_route;
    }
  }
  err = reserve(rt, r);
  if (!err)
    err = tree_add(rt, r);
  if (err)
    goto err_free_route;
  rt->routes[rt->nroutes++] = r;
  router_check(rt);
  return 0;
err_free_route:
  route_free(r);
  return err;
}

void weft_http_router_set_not_found(weft_http_router *rt, weft_http_handler_fn fn, void *arg)
{
  if (!rt)
    return;
  rt->not_found = fn;
  rt->not_found_arg = arg;
}

void weft_http_router_set_method_not_allowed(weft_http_router *rt, weft_http_handler_fn fn,
                                             void *arg)
{
  if (!rt)
    return;
  rt->not_allowed = fn;
  rt->not_allowed_arg = arg;
}

void weft_http_router_set_redirects(weft_http_router *rt, bool on)
{
  if (rt)
    rt->no_redirects = !on;
}

/* ---- serving ---- */

/* The target's path and query as sent: an origin-form target as it is, an absolute-form
 * one from its path ("/" when it has none), "" for the asterisk and authority forms. */
static const char *raw_path(const char *t)
{
  if (!t || t[0] == '/')
    return t ? t : "";
  const char *p = strstr(t, "://");
  if (!p)
    return "";
  p += 3 + strcspn(p + 3, "/?#");
  return *p == '/' ? p : "/";
}

/* 301 to loc, with Go's small HTML body for GET (and HEAD, whose body the server only
 * counts). */
static void send_redirect(weft_http_response *w, weft_http_request *r, const char *loc)
{
  if (weft_http_response_set_header(w, "Location", loc)) {
    weft_http_response_error(w, 400, NULL); /* a target no header can carry */
    return;
  }
  const char *method = weft_http_request_method(r);
  char *body = NULL;
  size_t len = 0;
  if (!strcmp(method, "GET") || !strcmp(method, "HEAD")) {
    body = malloc(strlen(loc) * 6 + 64); /* every byte escaped at worst: "&quot;" */
    if (body) {
      len = (size_t)sprintf(body, "<a href=\"");
      for (const char *c = loc; *c; c++) {
        const char *e = *c == '&'    ? "&amp;"
                        : *c == '<'  ? "&lt;"
                        : *c == '>'  ? "&gt;"
                        : *c == '"'  ? "&#34;"
                        : *c == '\'' ? "&#39;"
                                     : NULL;
        len += e ? (size_t)sprintf(body + len, "%s", e) : (size_t)sprintf(body + len, "%c", *c);
      }
      len += (size_t)sprintf(body + len, "\">Moved Permanently</a>.\n\n");
    }
  }
  weft_http_response_send(w, 301, body ? "text/html; charset=utf-8" : NULL, body, len);
  free(body);
}

static void dispatch_found(weft_http_response *w, weft_http_request *r,
                           const weft_http_route_match *m)
{
  for (size_t i = 0; i < m->nparams; i++) {
    if (weft_http_request_set_path_value(r, m->params[i].name, m->params[i].value)) {
      weft_http_response_error(w, 500, NULL);
      return;
    }
  }
  if (weft__http_request_set_pattern(r, m->pattern)) {
    weft_http_response_error(w, 500, NULL);
    return;
  }
  m->fn(w, r, m->arg);
}

static void answer_not_found(weft_http_router *rt, weft_http_response *w, weft_http_request *r)
{
  if (rt->not_found)
    rt->not_found(w, r, rt->not_found_arg);
  else
    weft_http_response_error(w, 404, "404 page not found");
}

static void dispatch(weft_http_router *rt, weft_http_response *w, weft_http_request *r,
                     const weft_http_route_match *m, int rc)
{
  switch (rc) {
  case WEFT_HTTP_ROUTE_FOUND:
    dispatch_found(w, r, m);
    return;
  case WEFT_HTTP_ROUTE_METHOD_NOT_ALLOWED:
    weft_http_response_set_header(w, "Allow", m->allow);
    if (rt->not_allowed)
      rt->not_allowed(w, r, rt->not_allowed_arg);
    else
      weft_http_response_error(w, 405, NULL);
    return;
  case WEFT_HTTP_ROUTE_REDIRECT:
    if (rt->no_redirects)
      answer_not_found(rt, w, r);
    else
      send_redirect(w, r, m->location);
    return;
  case WEFT_HTTP_ROUTE_NOT_FOUND:
    answer_not_found(rt, w, r);
    return;
  default: /* -ENOMEM for the larger buffers */
    weft_http_response_error(w, 500, NULL);
  }
}

void weft_http_router_serve(weft_http_response *w, weft_http_request *r, void *arg)
{
  weft_http_router *rt = arg;
  weft_http_route_param params[8];
  char buf[512];
  weft_http_route_match m = {
      .params = params, .max_params = 8, .buf = buf, .buf_len = sizeof buf};
  const char *method = weft_http_request_method(r), *host = weft_http_request_host(r);
  const char *path = raw_path(weft_http_request_target(r));
  int rc = weft_http_router_match(rt, method, host, path, &m);
  weft_http_route_param *big_params = NULL;
  char *big_buf = NULL;
  if (rc == -ENOSPC) { /* a long path or many wildcards: the exact sizes are known now */
    size_t np = m.nparams > m.max_params ? m.nparams : m.max_params;
    size_t nb = m.buf_needed > m.buf_len ? m.buf_needed : m.buf_len;
    big_params = malloc(np * sizeof *big_params);
    big_buf = malloc(nb);
    rc = -ENOMEM;
    if (big_params && big_buf) {
      m = (weft_http_route_match){
          .params = big_params, .max_params = np, .buf = big_buf, .buf_len = nb};
      rc = weft_http_router_match(rt, method, host, path, &m);
    }
  }
  dispatch(rt, w, r, &m, rc);
  free(big_params);
  free(big_buf);
}
