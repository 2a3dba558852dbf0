/* url.c: http(s) URL parsing and RFC 3986 reference resolution (see url.h).
 *
 * Parsing is deliberately narrow: the client only ever needs scheme, host, port and the
 * request target, so the URL is cut at the first '/', '?' or '#' after "//" into an
 * authority and the rest, and each is checked on its own. Resolution works on the five
 * generic components of RFC 3986 appendix B, so it handles any reference a server may put
 * in Location, then leaves validation to weft__url_parse. */
#include "net/url.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HOST_MAX 255

static bool is_ctl(unsigned char c)
{
  return c < 0x20 || c == 0x7f;
}

static bool has_ctl(const char *s, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (is_ctl((unsigned char)s[i]))
      return true;
  return false;
}

/* Bytes that may not appear raw in a request target (RFC 3986 plus what browsers send
 * encoded). */
static bool needs_escape(unsigned char c)
{
  return c >= 0x80 || strchr(" \"<>\\^`{|}", c) != NULL;
}

static bool is_host_char(unsigned char c)
{
  return isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

/* The request target from the text after the authority, cut at '#'. */
static char *make_target(const char *p)
{
  size_t n = strcspn(p, "#"), extra = (n == 0 || p[0] == '?') ? 1 : 0;
  size_t esc = 0;
  for (size_t i = 0; i < n; i++)
    esc += needs_escape((unsigned char)p[i]) ? 2 : 0;
  char *t = malloc(n + esc + extra + 1), *o = t;
  if (!t)
    return NULL;
  if (extra)
    *o++ = '/';
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)p[i];
    if (needs_escape(c))
      o += sprintf(o, "%%%02X", c);
    else
      *o++ = (char)c;
  }
  *o = '\0';
  return t;
}

/* Port text [p, end): empty (the default) or 1..65535. */
static int parse_port(const char *p, const char *end, int dflt)
{
  if (p == end)
    return dflt;
  if (end - p > 5)
    return -EINVAL;
  int port = 0;
  for (; p < end; p++) {
    if (!isdigit((unsigned char)*p))
      return -EINVAL;
    port = port * 10 + (*p - '0');
  }
  return port >= 1 && port <= 65535 ? port : -EINVAL;
}

/* Host and port from the authority [a, end) without user information. */
static int parse_hostport(const char *a, const char *end, struct weft__url *u)
{
  const char *h = a, *hend, *colon;
  if (*a == '[') {
    const char *rb = memchr(a, ']', (size_t)(end - a));
    if (!rb || (rb + 1 != end && rb[1] != ':'))
      return -EINVAL;
    h = a + 1;
    hend = rb;
    colon = rb + 1 == end ? NULL : rb + 1;
    char tmp[INET6_ADDRSTRLEN + 1];
    struct in6_addr in6;
    size_t hn = (size_t)(hend - h);
    if (hn == 0 || hn >= sizeof tmp)
      return -EINVAL;
    memcpy(tmp, h, hn);
    tmp[hn] = '\0';
    if (inet_pton(AF_INET6, tmp, &in6) != 1)
      return -EINVAL;
    u->host_is_v6 = true;
  } else {
    colon = memchr(a, ':', (size_t)(end - a));
    hend = colon ? colon : end;
    for (const char *q = h; q < hend; q++)
      if (!is_host_char((unsigned char)*q))
        return -EINVAL;
  }
  size_t hn = (size_t)(hend - h);
  if (hn == 0 || hn > HOST_MAX)
    return -EINVAL;
  int port = colon ? parse_port(colon + 1, end, u->https ? 443 : 80) : (u->https ? 443 : 80);
  if (port < 0)
    return port;
  u->port = port;
  u->host = strndup(h, hn);
  if (!u->host)
    return -ENOMEM;
  for (char *q = u->host; *q; q++)
    *q = (char)tolower((unsigned char)*q);
  return 0;
}

int weft__url_parse(const char *s, struct weft__url *u)
{
  memset(u, 0, sizeof *u);
  if (!s || has_ctl(s, strlen(s)))
    return -EINVAL;
  const char *p;
  if (strncasecmp(s, "http://", 7) == 0) {
    p = s + 7;
  } else if (strncasecmp(s, "https://", 8) == 0) {
    u->https = true;
    p = s + 8;
  } else {
    return -EINVAL;
  }
  const char *aend = p + strcspn(p, "/?#");
  for (const char *q = p; q < aend; q++)
    if (*q == '@')
      p = q + 1; /* user information: dropped */
  int rc = parse_hostport(p, aend, u);
  if (rc < 0)
    goto err_free;
  u->target = make_target(aend);
  if (!u->target) {
    rc = -ENOMEM;
    goto err_free;
  }
  return 0;

err_free:
  weft__url_free(u);
  return rc;
}

void weft__url_free(struct weft__url *u)
{
  free(u->host);
  free(u->target);
  u->host = u->target = NULL;
}

/* Built by copying, not snprintf: an HTTP client request computes it two or three times. */
int weft__url_authority(const struct weft__url *u, bool with_port, char *buf, size_t len)
{
  bool port = with_port || u->port != (u->https ? 443 : 80);
  char digits[8], *d = digits + sizeof digits;
  for (unsigned p = (unsigned)u->port; port && (d == digits + sizeof digits || p); p /= 10)
    *--d = (char)('0' + p % 10);
  size_t host = strlen(u->host), ndigits = (size_t)(digits + sizeof digits - d);
  size_t n = host + (u->host_is_v6 ? 2 : 0) + (port ? 1 + ndigits : 0);
  if (n >= len)
    return -ENOSPC;
  char *o = buf;
  if (u->host_is_v6)
    *o++ = '[';
  memcpy(o, u->host, host);
  o += host;
  if (u->host_is_v6)
    *o++ = ']';
  if (port) {
    *o++ = ':';
    memcpy(o, d, ndigits);
    o += ndigits;
  }
  *o = '\0';
  return (int)n;
}

/* ---- reference resolution (RFC 3986 section 5.2) ---- */

/* One component: defined or not (an empty query "?" is defined), and its text. */
struct part {
  const char *s;
  size_t n;
  bool def;
};

struct ref {
  struct part scheme, auth, path, query;
};

/* Split s[0, n) per the regular expression of RFC 3986 appendix B (fragment dropped). */
static void split_ref(const char *s, size_t n, struct ref *r)
{
  memset(r, 0, sizeof *r);
  const char *end = s + n, *p = s;
  const char *hash = memchr(s, '#', n);
  if (hash)
    end = hash;
  size_t sn = strcspn(p, ":/?#");
  if (sn > 0 && p + sn < end && p[sn] == ':') {
    r->scheme = (struct part){p, sn, true};
    p += sn + 1;
  }
  if (end - p >= 2 && p[0] == '/' && p[1] == '/') {
    p += 2;
    const char *a = p;
    while (p < end && *p != '/' && *p != '?')
      p++;
    r->auth = (struct part){a, (size_t)(p - a), true};
  }
  const char *q = memchr(p, '?', (size_t)(end - p));
  const char *pend = q ? q : end;
  r->path = (struct part){p, (size_t)(pend - p), true};
  if (q)
    r->query = (struct part){q + 1, (size_t)(end - q - 1), true};
}

static bool starts(const char *in, size_t n, const char *pre)
{
  size_t k = strlen(pre);
  return n >= k && memcmp(in, pre, k) == 0;
}

static bool equals(const char *in, size_t n, const char *s)
{
  return n == strlen(s) && memcmp(in, s, n) == 0;
}

/* Drop the last segment and its '/' from out[0, *on). */
static void pop_segment(const char *out, size_t *on)
{
  while (*on > 0 && out[*on - 1] != '/')
    (*on)--;
  if (*on > 0)
    (*on)--;
}

/* remove_dot_segments of RFC 3986 section 5.2.4: out (at least n bytes) gets the result;
 * returns its length. */
static size_t remove_dots(const char *in, size_t n, char *out)
{
  size_t on = 0;
  while (n > 0) {
    if (starts(in, n, "../") || starts(in, n, "./")) {
      size_t k = in[0] == '.' && in[1] == '.' ? 3 : 2;
      in += k, n -= k;
    } else if (starts(in, n, "/./")) {
      in += 2, n -= 2;
    } else if (equals(in, n, "/.")) {
      out[on++] = '/';
      n = 0;
    } else if (starts(in, n, "/../")) {
      in += 3, n -= 3;
      pop_segment(out, &on);
    } else if (equals(in, n, "/..")) {
      pop_segment(out, &on);
      out[on++] = '/';
      n = 0;
    } else if (equals(in, n, ".") || equals(in, n, "..")) {
      n = 0;
    } else {
      size_t k = in[0] == '/' ? 1 : 0;
      while (k < n && in[k] != '/')
        k++;
      memcpy(out + on, in, k);
      on += k, in += k, n -= k;
    }
  }
  return on;
}

/* The target path of the reference (merged with the base's when relative), dots removed,
 * in a new buffer; *len gets its length. */
static char *target_path(const struct ref *b, const struct ref *r, bool inherit, size_t *len)
{
  const struct part *bp = &b->path, *rp = &r->path;
  size_t cap = bp->n + rp->n + 2;
  char *merged = malloc(cap), *out = malloc(cap);
  if (!merged || !out)
    goto err_free;
  size_t mn = 0;
  if (!inherit || rp->s[0] == '/') {
    memcpy(merged, rp->s, rp->n);
    mn = rp->n;
  } else if (b->auth.def && bp->n == 0) {
    merged[0] = '/';
    memcpy(merged + 1, rp->s, rp->n);
    mn = rp->n + 1;
  } else {
    size_t keep = bp->n;
    while (keep > 0 && bp->s[keep - 1] != '/')
      keep--;
    memcpy(merged, bp->s, keep);
    memcpy(merged + keep, rp->s, rp->n);
    mn = keep + rp->n;
  }
  *len = remove_dots(merged, mn, out);
  free(merged);
  return out;

err_free:
  free(merged);
  free(out);
  return NULL;
}

static char *compose(const struct part *scheme, const struct part *auth, const char *path,
                     size_t pn, const struct part *query)
{
  size_t n = scheme->n + 3 + auth->n + pn + 1 + (query->def ? query->n : 0) + 1;
  char *s = malloc(n);
  if (!s)
    return NULL;
  int k = snprintf(s, n, "%.*s:%s%.*s%.*s", (int)scheme->n, scheme->s, auth->def ? "//" : "",
                   (int)auth->n, auth->s, (int)pn, path);
  if (query->def)
    snprintf(s + k, n - (size_t)k, "?%.*s", (int)query->n, query->s);
  return s;
}

int weft__url_resolve(const char *base, const char *ref, char **out)
{
  *out = NULL;
  size_t rn = strlen(ref);
  while (rn > 0 && (*ref == ' ' || *ref == '\t'))
    ref++, rn--;
  while (rn > 0 && (ref[rn - 1] == ' ' || ref[rn - 1] == '\t'))
    rn--;
  if (has_ctl(ref, rn) || has_ctl(base, strlen(base)))
    return -EINVAL;
  struct ref b, r;
  split_ref(base, strlen(base), &b);
  split_ref(ref, rn, &r);
  if (!b.scheme.def || !b.auth.def)
    return -EINVAL;
  const struct part *scheme = r.scheme.def ? &r.scheme : &b.scheme;
  const struct part *auth = r.scheme.def || r.auth.def ? &r.auth : &b.auth;
  const struct part *query = &r.query;
  bool inherit = !r.scheme.def && !r.auth.def;
  size_t pn;
  char *path;
  if (inherit && r.path.n == 0) {
    path = strndup(b.path.s, b.path.n);
    pn = b.path.n;
    if (!r.query.def)
      query = &b.query;
  } else {
    path = target_path(&b, &r, inherit, &pn);
  }
  if (!path)
    return -ENOMEM;
  *out = compose(scheme, auth, path, pn, query);
  free(path);
  return *out ? 0 : -ENOMEM;
}
