/* log_fmt.c: value encodings for the log handlers, each a port of what Go's log/slog
 * (and the strconv, time and encoding/json code it calls) writes, so that weft's records
 * read byte for byte like a Go service's.
 *
 * Unicode: Go decides quoting and escaping with its full Unicode tables (IsPrint,
 * IsSpace). Here the non-printing runes are the C1 controls, the space and separator
 * characters, the format characters (Cf), private use and non-characters; unassigned code
 * points count as printable (Go would escape them). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "obs/log_internal.h"

static const char hexdigits[] = "0123456789abcdef";

bool weft__logbuf_grow(struct weft__logbuf *b, size_t need)
{
  if (b->oom)
    return false;
  size_t cap = b->cap ? b->cap : 256;
  while (cap - b->n < need)
    cap *= 2;
  char *p = b->heap ? realloc(b->p, cap) : malloc(cap);
  if (!p) {
    b->oom = true;
    return false;
  }
  if (!b->heap && b->n)
    memcpy(p, b->p, b->n);
  b->p = p;
  b->cap = cap;
  b->heap = true;
  return true;
}

void weft__logbuf_free(struct weft__logbuf *b)
{
  if (b->heap)
    free(b->p);
  b->heap = false;
  b->p = NULL;
}

void weft__log_uint(struct weft__logbuf *b, uint64_t v)
{
  char tmp[24], *e = tmp + sizeof tmp, *s = e;
  do
    *--s = (char)('0' + v % 10);
  while (v /= 10);
  weft__logbuf_put(b, s, (size_t)(e - s));
}

void weft__log_int(struct weft__logbuf *b, int64_t v)
{
  if (v < 0) {
    weft__logbuf_putc(b, '-');
    weft__log_uint(b, (uint64_t)0 - (uint64_t)v);
  } else {
    weft__log_uint(b, (uint64_t)v);
  }
}

/* ---- UTF-8 and Unicode classes ---- */

/* Decode the rune at s[0, n) as Go's utf8.DecodeRune: its width, *r the rune, or -1 with
 * width 1 for an invalid byte (overlong forms, surrogates and > U+10FFFF are invalid). */
static size_t decode_rune(const unsigned char *s, size_t n, int32_t *r)
{
  unsigned c = s[0];
  size_t w;
  uint32_t v, min;
  if (c < 0x80) {
    *r = (int32_t)c;
    return 1;
  }
  if (c >= 0xc2 && c <= 0xdf)
    w = 2, v = c & 0x1f, min = 0x80;
  else if (c >= 0xe0 && c <= 0xef)
    w = 3, v = c & 0x0f, min = 0x800;
  else if (c >= 0xf0 && c <= 0xf4)
    w = 4, v = c & 0x07, min = 0x10000;
  else
    goto bad;
  if (n < w)
    goto bad;
  for (size_t i = 1; i < w; i++) {
    if ((s[i] & 0xc0) != 0x80)
      goto bad;
    v = v << 6 | (s[i] & 0x3f);
  }
  if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
    goto bad;
  *r = (int32_t)v;
  return w;
bad:
  *r = -1;
  return 1;
}

/* unicode.IsSpace for runes >= 0x80. */
static bool is_space(int32_t r)
{
  return r == 0x85 || r == 0xa0 || r == 0x1680 || (r >= 0x2000 && r <= 0x200a) || r == 0x2028 ||
         r == 0x2029 || r == 0x202f || r == 0x205f || r == 0x3000;
}

/* Format characters (Cf), as of Unicode 15. */
static bool is_format(int32_t r)
{
  return r == 0xad || (r >= 0x600 && r <= 0x605) || r == 0x61c || r == 0x6dd || r == 0x70f ||
         r == 0x890 || r == 0x891 || r == 0x8e2 || r == 0x180e ||
         (r >= 0x200b && r <= 0x200f) || (r >= 0x202a && r <= 0x202e) ||
         (r >= 0x2060 && r <= 0x2064) || (r >= 0x2066 && r <= 0x206f) || r == 0xfeff ||
         (r >= 0xfff9 && r <= 0xfffb) || r == 0x110bd || r == 0x110cd ||
         (r >= 0x13430 && r <= 0x1343f) || (r >= 0x1bca0 && r <= 0x1bca3) ||
         (r >= 0x1d173 && r <= 0x1d17a) || r == 0xe0001 || (r >= 0xe0020 && r <= 0xe007f);
}

/* unicode.IsPrint for runes >= 0x80 (see the file comment for what is approximated). */
static bool is_print(int32_t r)
{
  if (r < 0xa0 || is_space(r) || is_format(r))
    return false;
  if ((r >= 0xe000 && r <= 0xf8ff) || r >= 0xf0000) /* private use */
    return false;
  if ((r >= 0xfdd0 && r <= 0xfdef) || (r & 0xfffe) == 0xfffe) /* non-characters */
    return false;
  return true;
}

/* ---- text strings ---- */

bool weft__log_text_needs_quoting(const char *s, size_t n)
{
  if (n == 0)
    return true;
  const unsigned char *u = (const unsigned char *)s;
  for (size_t i = 0; i < n;) {
    unsigned c = u[i];
    if (c < 0x80) {
      /* JSON's safe set (printable ASCII and DEL, less '"' and '\\') plus '\\', less ' '
       * and '='. */
      if (c != '\\' && (c == ' ' || c == '=' || c == '"' || c < 0x20))
        return true;
      i++;
      continue;
    }
    int32_t r;
    i += decode_rune(u + i, n - i, &r);
    if (r < 0 || r == 0xfffd || is_space(r) || !is_print(r))
      return true;
  }
  return false;
}

static void put_hex(struct weft__logbuf *b, const char *prefix, uint32_t v, int digits)
{
  weft__logbuf_put(b, prefix, 2);
  for (int s = (digits - 1) * 4; s >= 0; s -= 4)
    weft__logbuf_putc(b, hexdigits[(v >> s) & 15]);
}

/* strconv's appendEscapedRune for a rune that is not printed as itself. */
static void quote_escape(struct weft__logbuf *b, int32_t r)
{
  static const char esc[] = "abtnvfr"; /* \a (7) through \r (13) */
  if (r >= 7 && r <= 13) {
    weft__logbuf_putc(b, '\\');
    weft__logbuf_putc(b, esc[r - 7]);
  } else if (r < 0x20 || r == 0x7f) {
    put_hex(b, "\\x", (uint32_t)r, 2);
  } else if (r < 0x10000) {
    put_hex(b, "\\u", (uint32_t)r, 4);
  } else {
    put_hex(b, "\\U", (uint32_t)r, 8);
  }
}

void weft__log_quote(struct weft__logbuf *b, const char *s, size_t n)
{
  const unsigned char *u = (const unsigned char *)s;
  weft__logbuf_putc(b, '"');
  for (size_t i = 0; i < n;) {
    int32_t r;
    size_t w = decode_rune(u + i, n - i, &r);
    if (r < 0)
      put_hex(b, "\\x", u[i], 2);
    else if (r == '"' || r == '\\')
      weft__logbuf_putc(b, '\\'), weft__logbuf_putc(b, (char)r);
    else if ((r >= 0x20 && r < 0x7f) || (r >= 0x80 && is_print(r)))
      weft__logbuf_put(b, s + i, w);
    else
      quote_escape(b, r);
    i += w;
  }
  weft__logbuf_putc(b, '"');
}

void weft__log_text_string(struct weft__logbuf *b, const char *s, size_t n)
{
  if (weft__log_text_needs_quoting(s, n))
    weft__log_quote(b, s, n);
  else
    weft__logbuf_put(b, s, n);
}

/* ---- JSON strings ---- */

void weft__log_json_string(struct weft__logbuf *b, const char *s, size_t n)
{
  const unsigned char *u = (const unsigned char *)s;
  size_t start = 0, i = 0;
  weft__logbuf_putc(b, '"');
  while (i < n) {
    unsigned c = u[i];
    if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
      i++;
      continue;
    }
    int32_t r = (int32_t)c;
    size_t w = c < 0x80 ? 1 : decode_rune(u + i, n - i, &r);
    if (r >= 0 && r != 0x2028 && r != 0x2029 && c >= 0x80) {
      i += w;
      continue;
    }
    weft__logbuf_put(b, s + start, i - start);
    if (r < 0 || r == 0x2028 || r == 0x2029)
      put_hex(b, "\\u", r < 0 ? 0xfffd : (uint32_t)r, 4);
    else if (c == '"' || c == '\\')
      weft__logbuf_putc(b, '\\'), weft__logbuf_putc(b, (char)c);
    else if (c == '\n')
      weft__logbuf_put(b, "\\n", 2);
    else if (c == '\r')
      weft__logbuf_put(b, "\\r", 2);
    else if (c == '\t')
      weft__logbuf_put(b, "\\t", 2);
    else
      put_hex(b, "\\u", c, 4);
    i += w;
    start = i;
  }
  weft__logbuf_put(b, s + start, n - start);
  weft__logbuf_putc(b, '"');
}

/* ---- doubles ---- */

/* The shortest decimal digits that read back as d (> 0, finite): digits into dig (no
 * trailing zeros), returns their count; *dp is the decimal point's position (Go's
 * decimalSlice: value = 0.dig * 10^dp). */
static int shortest_digits(double d, char *dig, int *dp)
{
  char tmp[40];
  for (int p = 1; p <= 17; p++) {
    snprintf(tmp, sizeof tmp, "%.*e", p - 1, d);
    if (strtod(tmp, NULL) == d)
      break;
  }
  int nd = 0;
  const char *c = tmp;
  for (; *c && *c != 'e'; c++)
    if (*c >= '0' && *c <= '9')
      dig[nd++] = *c;
  while (nd > 1 && dig[nd - 1] == '0')
    nd--;
  *dp = atoi(c + 1) + 1;
  return nd;
}

/* strconv's %e: d.ddde±XX with prec fraction digits (at least two exponent digits). */
static void fmt_e(struct weft__logbuf *b, const char *dig, int nd, int dp, int prec)
{
  weft__logbuf_putc(b, dig[0]);
  if (prec > 0) {
    weft__logbuf_putc(b, '.');
    for (int i = 1; i <= prec; i++)
      weft__logbuf_putc(b, i < nd ? dig[i] : '0');
  }
  int exp = dp - 1;
  weft__logbuf_putc(b, 'e');
  weft__logbuf_putc(b, exp < 0 ? '-' : '+');
  if (exp < 0)
    exp = -exp;
  if (exp < 10)
    weft__logbuf_putc(b, '0');
  weft__log_int(b, exp);
}

/* strconv's %f with prec fraction digits. */
static void fmt_f(struct weft__logbuf *b, const char *dig, int nd, int dp, int prec)
{
  if (dp > 0) {
    for (int i = 0; i < dp; i++)
      weft__logbuf_putc(b, i < nd ? dig[i] : '0');
  } else {
    weft__logbuf_putc(b, '0');
  }
  if (prec > 0) {
    weft__logbuf_putc(b, '.');
    for (int i = 0; i < prec; i++) {
      int j = dp + i;
      weft__logbuf_putc(b, j >= 0 && j < nd ? dig[j] : '0');
    }
  }
}

/* NaN and infinities as strconv spells them; false for finite d. */
static bool special(struct weft__logbuf *b, double d, bool quoted)
{
  const char *s = isnan(d) ? "NaN" : isinf(d) ? (d > 0 ? "+Inf" : "-Inf") : NULL;
  if (!s)
    return false;
  if (quoted)
    weft__logbuf_putc(b, '"');
  weft__logbuf_put(b, s, strlen(s));
  if (quoted)
    weft__logbuf_putc(b, '"');
  return true;
}

void weft__log_text_double(struct weft__logbuf *b, double d)
{
  char dig[24];
  int dp;
  if (special(b, d, false))
    return;
  if (signbit(d))
    weft__logbuf_putc(b, '-'), d = -d;
  if (d == 0) {
    weft__logbuf_putc(b, '0');
    return;
  }
  int nd = shortest_digits(d, dig, &dp), exp = dp - 1;
  if (exp < -4 || exp >= 6) /* 'g' with the shortest precision decides with 6 */
    fmt_e(b, dig, nd, dp, nd - 1);
  else
    fmt_f(b, dig, nd, dp, nd - dp > 0 ? nd - dp : 0);
}

void weft__log_json_double(struct weft__logbuf *b, double d)
{
  char dig[24];
  int dp;
  if (special(b, d, true))
    return;
  if (signbit(d))
    weft__logbuf_putc(b, '-'), d = -d;
  if (d == 0) {
    weft__logbuf_putc(b, '0');
    return;
  }
  int nd = shortest_digits(d, dig, &dp);
  if (d < 1e-6 || d >= 1e21) {
    size_t at = b->n;
    fmt_e(b, dig, nd, dp, nd - 1);
    /* encoding/json: "e-07" becomes "e-7" */
    if (!b->oom && b->n - at >= 4 && b->p[b->n - 4] == 'e' && b->p[b->n - 3] == '-' &&
        b->p[b->n - 2] == '0') {
      b->p[b->n - 2] = b->p[b->n - 1];
      b->n--;
    }
  } else {
    fmt_f(b, dig, nd, dp, nd - dp > 0 ? nd - dp : 0);
  }
}

/* ---- durations and times ---- */

/* Go's fmtFrac: the fraction of v / 10^prec without trailing zeros (and without the
 * point when it is zero), written backwards ending at *w; returns v / 10^prec. */
static uint64_t frac(char *buf, int *w, uint64_t v, int prec)
{
  bool print = false;
  for (int i = 0; i < prec; i++) {
    int digit = (int)(v % 10);
    print = print || digit != 0;
    if (print)
      buf[--*w] = (char)('0' + digit);
    v /= 10;
  }
  if (print)
    buf[--*w] = '.';
  return v;
}

static void int_back(char *buf, int *w, uint64_t v)
{
  do
    buf[--*w] = (char)('0' + v % 10);
  while (v /= 10);
}

void weft__log_duration(struct weft__logbuf *b, int64_t ns)
{
  char buf[40];
  int w = sizeof buf;
  uint64_t u = ns < 0 ? (uint64_t)0 - (uint64_t)ns : (uint64_t)ns;
  buf[--w] = 's';
  if (u == 0) {
    weft__logbuf_put(b, "0s", 2);
    return;
  }
  if (u < 1000000000u) {
    int prec = 6;
    if (u < 1000u)
      prec = 0, buf[--w] = 'n';
    else if (u < 1000000u)
      prec = 3, w -= 2, memcpy(buf + w, "\xc2\xb5", 2); /* U+00B5 micro sign */
    else
      buf[--w] = 'm';
    u = frac(buf, &w, u, prec);
    int_back(buf, &w, u);
  } else {
    u = frac(buf, &w, u, 9);
    int_back(buf, &w, u % 60);
    if ((u /= 60) > 0) {
      buf[--w] = 'm';
      int_back(buf, &w, u % 60);
      if ((u /= 60) > 0) {
        buf[--w] = 'h';
        int_back(buf, &w, u);
      }
    }
  }
  if (ns < 0)
    buf[--w] = '-';
  weft__logbuf_put(b, buf + w, sizeof buf - (size_t)w);
}

/* Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's civil_from_days):
 * no gmtime_r, which takes glibc's time zone lock on every call. */
static void civil(int64_t days, int64_t *y, int *m, int *d)
{
  days += 719468;
  int64_t era = (days >= 0 ? days : days - 146096) / 146097;
  int64_t doe = days - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  *d = (int)(doy - (153 * mp + 2) / 5 + 1);
  *m = (int)(mp < 10 ? mp + 3 : mp - 9);
  *y = yoe + era * 400 + (*m <= 2);
}

static char *two(char *s, int v)
{
  s[0] = (char)('0' + v / 10);
  s[1] = (char)('0' + v % 10);
  return s + 2;
}

void weft__log_time(struct weft__logbuf *b, int64_t unix_ns, bool millis)
{
  int64_t sec = unix_ns / 1000000000, nsec = unix_ns % 1000000000, y;
  if (nsec < 0)
    sec--, nsec += 1000000000;
  int64_t days = sec / 86400, rem = sec % 86400;
  if (rem < 0)
    days--, rem += 86400;
  int m, d;
  civil(days, &y, &m, &d);
  char s[48], *p = s;
  if (y < 0 || y > 9999)
    y = y < 0 ? 0 : 9999; /* RFC 3339 has four-digit years */
  p = two(two(p, (int)(y / 100)), (int)(y % 100));
  *p++ = '-';
  p = two(p, m);
  *p++ = '-';
  p = two(p, d);
  *p++ = 'T';
  p = two(p, (int)(rem / 3600));
  *p++ = ':';
  p = two(p, (int)(rem / 60 % 60));
  *p++ = ':';
  p = two(p, (int)(rem % 60));
  if (millis || nsec) {
    *p++ = '.';
    for (int i = 0, div = 100000000; i < (millis ? 3 : 9); i++, div /= 10)
      *p++ = (char)('0' + nsec / div % 10);
    while (!millis && p[-1] == '0')
      p--;
  }
  *p++ = 'Z';
  weft__logbuf_put(b, s, (size_t)(p - s));
}
