/* url.c: absolute http(s) URLs for the crawler: parsing, normalising (lower-case scheme
 * and host, default port dropped, empty path "/", fragment dropped, spaces and non-ASCII
 * bytes percent-encoded) and RFC 3986 reference resolution. Pure functions, any thread. */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crawl.h"

/* A growable string. */
typedef struct sbuf {
  char *s;
  size_t n, cap;
  bool oom;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n)
{
  if (b->oom || n > SIZE_MAX / 4 || b->n > SIZE_MAX / 4) {
    b->oom = true;
    return;
  }
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 64;
    while (cap < b->n + n + 1)
      cap *= 2;
    char *p = realloc(b->s, cap);
    if (!p) {
      b->oom = true;
      return;
    }
    b->s = p, b->cap = cap;
  }
  memcpy(b->s + b->n, s, n);
  b->n += n;
  b->s[b->n] = '\0';
}

static void sb_str(sbuf *b, const char *s)
{
  sb_add(b, s, strlen(s));
}

static char *sb_take(sbuf *b)
{
  if (b->oom) {
    free(b->s);
    return NULL;
  }
  return b->s ? b->s : strdup("");
}

/* Copy s[0..n) percent-encoding space and bytes outside ASCII; NULL on a control char. */
static char *encode_part(const char *s, size_t n)
{
  sbuf b = {0};
  static const char hex[] = "0123456789ABCDEF";
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c == 0x7f) {
      free(b.s);
      return NULL;
    }
    if (c == ' ' || c >= 0x80 || c == '"' || c == '<' || c == '>') {
      char e[3] = {'%', hex[c >> 4], hex[c & 15]};
      sb_add(&b, e, 3);
    } else {
      sb_add(&b, (const char *)&c, 1);
    }
  }
  return sb_take(&b);
}

static int parse_host_port(const char *s, size_t n, crawl_url *u)
{
  const char *at = memrchr(s, '@', n); /* user information is dropped */
  if (at)
    n -= (size_t)(at + 1 - s), s = at + 1;
  size_t hn = n;
  const char *port = NULL;
  if (n > 0 && s[0] == '[') {
    const char *close = memchr(s, ']', n);
    if (!close)
      return -EINVAL;
    hn = (size_t)(close + 1 - s);
    if (hn < n) {
      if (s[hn] != ':')
        return -EINVAL;
      port = s + hn + 1;
    }
  } else {
    const char *colon = memchr(s, ':', n);
    if (colon)
      hn = (size_t)(colon - s), port = colon + 1;
  }
  if (hn == 0)
    return -EINVAL;
  for (size_t i = 0; i < hn; i++)
    if ((unsigned char)s[i] <= ' ' || strchr("/?#@\\<>\"", s[i]))
      return -EINVAL;
  u->port = strcmp(u->scheme, "https") == 0 ? 443 : 80;
  if (port && port < s + n) {
    long p = 0;
    for (const char *q = port; q < s + n; q++) {
      if (!isdigit((unsigned char)*q) || (p = p * 10 + (*q - '0')) > 65535)
        return -EINVAL;
    }
    if (p == 0)
      return -EINVAL;
    u->port = (int)p;
  }
  if (!(u->host = strndup(s, hn)))
    return -ENOMEM;
  for (char *h = u->host; *h; h++)
    *h = (char)tolower((unsigned char)*h);
  return 0;
}

int crawl_url_parse(const char *s, crawl_url *u)
{
  memset(u, 0, sizeof *u);
  while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
    s++;
  size_t n = strlen(s);
  while (n > 0 && isspace((unsigned char)s[n - 1]))
    n--;
  if (n >= 7 && strncasecmp(s, "http://", 7) == 0)
    strcpy(u->scheme, "http"), s += 7, n -= 7;
  else if (n >= 8 && strncasecmp(s, "https://", 8) == 0)
    strcpy(u->scheme, "https"), s += 8, n -= 8;
  else
    return -EINVAL;
  const char *end = s + n;
  const char *hash = memchr(s, '#', n);
  if (hash)
    end = hash;
  size_t an = strcspn(s, "/?#");
  if (s + an > end)
    an = (size_t)(end - s);
  int rc = parse_host_port(s, an, u);
  if (rc < 0)
    return rc;
  const char *p = s + an;
  const char *qm = memchr(p, '?', (size_t)(end - p));
  const char *pend = qm ? qm : end;
  u->path = pend > p ? encode_part(p, (size_t)(pend - p)) : strdup("/");
  if (qm)
    u->query = encode_part(qm + 1, (size_t)(end - qm - 1));
  if (!u->path || (qm && !u->query)) {
    crawl_url_free(u);
    return -EINVAL;
  }
  return 0;
}

void crawl_url_free(crawl_url *u)
{
  free(u->host);
  free(u->path);
  free(u->query);
  memset(u, 0, sizeof *u);
}

char *crawl_url_authority(const crawl_url *u)
{
  int def = strcmp(u->scheme, "https") == 0 ? 443 : 80;
  char *s;
  if (u->port == def)
    return strdup(u->host);
  return asprintf(&s, "%s:%d", u->host, u->port) < 0 ? NULL : s;
}

char *crawl_url_string(const crawl_url *u)
{
  char *auth = crawl_url_authority(u);
  if (!auth)
    return NULL;
  sbuf b = {0};
  sb_str(&b, u->scheme);
  sb_str(&b, "://");
  sb_str(&b, auth);
  sb_str(&b, u->path);
  if (u->query) {
    sb_str(&b, "?");
    sb_str(&b, u->query);
  }
  free(auth);
  return sb_take(&b);
}

/* The five components of a reference (RFC 3986 section 3); .s NULL when undefined. */
typedef struct part {
  const char *s;
  size_t n;
} part;
typedef struct ref {
  part scheme, auth, path, query;
} ref;

static void split_ref(const char *s, ref *r)
{
  memset(r, 0, sizeof *r);
  size_t n = strcspn(s, "#");
  size_t i = 0;
  if (isalpha((unsigned char)s[0])) {
    while (i < n && (isalnum((unsigned char)s[i]) || strchr("+-.", s[i])))
      i++;
    if (i < n && s[i] == ':')
      r->scheme = (part){s, i}, s += i + 1, n -= i + 1;
  }
  if (n >= 2 && s[0] == '/' && s[1] == '/') {
    size_t a = 2 + strcspn(s + 2, "/?#");
    if (a > n)
      a = n;
    r->auth = (part){s + 2, a - 2};
    s += a, n -= a;
  }
  size_t pn = strcspn(s, "?#");
  if (pn > n)
    pn = n;
  r->path = (part){s, pn};
  if (pn < n && s[pn] == '?')
    r->query = (part){s + pn + 1, n - pn - 1};
}

/* RFC 3986 5.2.4 remove_dot_segments on in[0..n) into out. */
static void remove_dots(const char *in, size_t n, sbuf *out)
{
  while (n > 0) {
    if (n >= 3 && strncmp(in, "../", 3) == 0) {
      in += 3, n -= 3;
    } else if (n >= 2 && strncmp(in, "./", 2) == 0) {
      in += 2, n -= 2;
    } else if (n >= 3 && strncmp(in, "/./", 3) == 0) {
      in += 2, n -= 2;
    } else if (n == 2 && strncmp(in, "/.", 2) == 0) {
      in = "/", n = 1;
    } else if ((n >= 4 && strncmp(in, "/../", 4) == 0) ||
               (n == 3 && strncmp(in, "/..", 3) == 0)) {
      in = n == 3 ? "/" : in + 3;
      n = n == 3 ? 1 : n - 3;
      while (out->n > 0 && out->s[out->n - 1] != '/')
        out->n--;
      if (out->n > 0)
        out->n--;
      if (out->s)
        out->s[out->n] = '\0';
    } else if ((n == 1 && in[0] == '.') || (n == 2 && strncmp(in, "..", 2) == 0)) {
      n = 0;
    } else {
      size_t seg = 1;
      while (seg < n && in[seg] != '/')
        seg++;
      sb_add(out, in, seg);
      in += seg, n -= seg;
    }
  }
}

static void merge_path(const ref *b, const ref *r, sbuf *out)
{
  sbuf m = {0};
  if (b->auth.s && b->path.n == 0) {
    sb_str(&m, "/");
  } else {
    const char *slash = b->path.n ? memrchr(b->path.s, '/', b->path.n) : NULL;
    if (slash)
      sb_add(&m, b->path.s, (size_t)(slash + 1 - b->path.s));
  }
  sb_add(&m, r->path.s, r->path.n);
  if (!m.oom && m.s)
    remove_dots(m.s, m.n, out);
  out->oom |= m.oom;
  free(m.s);
}

/* Remove tab and newline anywhere, as browsers do with href values. */
static char *strip_tabs(const char *s)
{
  sbuf b = {0};
  for (; *s; s++)
    if (*s != '\t' && *s != '\n' && *s != '\r')
      sb_add(&b, s, 1);
  return sb_take(&b);
}

char *crawl_url_resolve(const char *base, const char *rawref)
{
  while (*rawref == ' ' || *rawref == '\f')
    rawref++;
  char *refs = strip_tabs(rawref);
  if (!refs)
    return NULL;
  ref b, r;
  split_ref(base, &b);
  split_ref(refs, &r);
  const part *scheme = r.scheme.s ? &r.scheme : &b.scheme;
  const part *auth = r.scheme.s || r.auth.s ? &r.auth : &b.auth;
  const part *query = &r.query;
  sbuf path = {0};
  if (r.scheme.s || r.auth.s) {
    remove_dots(r.path.s, r.path.n, &path);
  } else if (r.path.n == 0) {
    sb_add(&path, b.path.s, b.path.n);
    if (!r.query.s)
      query = &b.query;
  } else if (r.path.s[0] == '/') {
    remove_dots(r.path.s, r.path.n, &path);
  } else {
    merge_path(&b, &r, &path);
  }
  sbuf t = {0};
  if (scheme->s)
    sb_add(&t, scheme->s, scheme->n);
  sb_str(&t, ":");
  if (auth->s) {
    sb_str(&t, "//");
    sb_add(&t, auth->s, auth->n);
  }
  if (path.s)
    sb_add(&t, path.s, path.n);
  if (query->s) {
    sb_str(&t, "?");
    sb_add(&t, query->s, query->n);
  }
  free(path.s);
  free(refs);
  char *joined = sb_take(&t);
  if (!joined)
    return NULL;
  crawl_url u;
  char *out = NULL;
  if (crawl_url_parse(joined, &u) == 0) {
    out = crawl_url_string(&u);
    crawl_url_free(&u);
  }
  free(joined);
  return out;
}
