/* data.c: the fake answers of the three APIs, a pure function of (api, seed, id).
 *
 * Every field comes from one 64-bit hash of the API, the seed and the id: the same request
 * gets the same bytes in every process started with the same seed, however busy it is and
 * whatever faults it injects (those draw from a separate, per-request stream: faults.c).
 * Objects are written with snprintf, keys in a fixed order, in exactly the bytes jansson's
 * compact encoding (JSON_REAL_PRECISION(6)) gave when it wrote them: building a jansson
 * object only to serialize it cost more than the rest of an answer. The one field that
 * comes from the request, the id, goes through json_escape, which refuses what jansson
 * refused (bytes that are not UTF-8) and escapes what it escaped. */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "upstream.h"

#define COUNT(a) (sizeof(a) / sizeof *(a))

/* Tiers weighted as a freemium product's would be: 50% free, 25%, 15%, 10%. */
static const char *tier_of(uint64_t h)
{
  unsigned p = (unsigned)(h % 100);
  return p < 50 ? "free" : p < 75 ? "silver" : p < 90 ? "gold" : "platinum";
}

static const char *const countries[] = {"US", "DE", "FR", "GB", "JP", "BR", "IN", "CA",
                                        "AU", "ES", "IT", "NL", "SE", "MX", "KR", "ZA"};

/* Cities with their countries, so that a geo answer is plausible. */
static const struct {
  const char *country, *city;
} places[] = {
    {"US", "New York"},  {"US", "San Francisco"}, {"DE", "Berlin"},    {"DE", "Munich"},
    {"FR", "Paris"},     {"GB", "London"},        {"JP", "Tokyo"},     {"BR", "São Paulo"},
    {"IN", "Bengaluru"}, {"CA", "Toronto"},       {"AU", "Sydney"},    {"ES", "Madrid"},
    {"IT", "Milan"},     {"NL", "Amsterdam"},     {"SE", "Stockholm"}, {"KR", "Seoul"}};

const char *up_api_prefix(up_api api)
{
  static const char *const prefixes[] = {"/users/", "/geo/", "/rates/"};
  return prefixes[api];
}

/* FNV-1a of id, then mixed with the API and the seed. */
static uint64_t hash_id(up_api api, uint64_t seed, const char *id)
{
  uint64_t h = 0xcbf29ce484222325u;
  for (const unsigned char *p = (const unsigned char *)id; *p; p++)
    h = (h ^ *p) * 0x100000001b3u;
  return up_mix64(h ^ up_mix64(seed * 3 + (uint64_t)api + 1));
}

/* A rate in US dollars per unit: log-uniform over [0.0005, 2), USD exactly 1. */
static double usd_rate(const char *currency, uint64_t h)
{
  if (strcmp(currency, "USD") == 0)
    return 1.0;
  double u = (double)(h >> 11) * 0x1p-53;
  return 0.0005 * exp(u * log(2.0 / 0.0005));
}

/* The length of the UTF-8 sequence at p (at most n bytes), 0 when it is not one:
 * shortest form, no surrogates, at most U+10FFFF (what jansson accepts). */
static size_t utf8_len(const unsigned char *p, size_t n)
{
  unsigned c = p[0], cp, len;
  if (c < 0x80)
    return 1;
  if (c >= 0xC2 && c <= 0xDF)
    len = 2, cp = c & 0x1F;
  else if (c >= 0xE0 && c <= 0xEF)
    len = 3, cp = c & 0x0F;
  else if (c >= 0xF0 && c <= 0xF4)
    len = 4, cp = c & 0x07;
  else
    return 0;
  if (n < len)
    return 0;
  for (unsigned i = 1; i < len; i++) {
    if ((p[i] & 0xC0) != 0x80)
      return 0;
    cp = cp << 6 | (p[i] & 0x3F);
  }
  bool shortest = len == 2 || (len == 3 && cp >= 0x800) || (len == 4 && cp >= 0x10000);
  return shortest && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF) ? len : 0;
}

/* id as a JSON string (quotes included) at out (room for len bytes, NUL-terminated).
 * Returns its length, -EILSEQ when id is not UTF-8, -ENOSPC when it does not fit. */
static int json_escape(const char *id, char *out, size_t len)
{
  const unsigned char *p = (const unsigned char *)id;
  size_t n = strlen(id), o = 0;
  char esc[8];
  if (len < 3)
    return -ENOSPC;
  out[o++] = '"';
  for (size_t i = 0; i < n;) {
    size_t k = utf8_len(p + i, n - i);
    if (k == 0)
      return -EILSEQ;
    const char *e = NULL;
    switch (p[i]) {
    case '"':
      e = "\\\"";
      break;
    case '\\':
      e = "\\\\";
      break;
    case '\b':
      e = "\\b";
      break;
    case '\f':
      e = "\\f";
      break;
    case '\n':
      e = "\\n";
      break;
    case '\r':
      e = "\\r";
      break;
    case '\t':
      e = "\\t";
      break;
    default:
      if (p[i] < 0x20)
        snprintf(esc, sizeof esc, "\\u%04X", p[i]), e = esc;
    }
    const char *src = e ? e : id + i;
    size_t m = e ? strlen(e) : k;
    if (o + m + 2 > len)
      return -ENOSPC;
    memcpy(out + o, src, m);
    o += m, i += k;
  }
  out[o++] = '"';
  out[o] = '\0';
  return (int)o;
}

/* v as jansson writes a real with JSON_REAL_PRECISION(6): "%.6g", ".0" added when that
 * looks like an integer, the exponent without '+' and leading zeros. */
static void format_real(double v, char *out, size_t len)
{
  char tmp[64], *e;
  snprintf(tmp, sizeof tmp, "%.6g", v);
  if (!strpbrk(tmp, ".eE"))
    strcat(tmp, ".0");
  if ((e = strpbrk(tmp, "eE")) != NULL) {
    char *src = e + 1, *dst = e + 1;
    if (*src == '-')
      *dst++ = *src++;
    else if (*src == '+')
      src++;
    while (*src == '0' && src[1])
      src++;
    memmove(dst, src, strlen(src) + 1);
  }
  snprintf(out, len, "%s", tmp);
}

int up_answer(up_api api, uint64_t seed, const char *id, char *buf, size_t len)
{
  uint64_t h = hash_id(api, seed, id);
  char q[1024];
  int n = json_escape(id, q, sizeof q);
  if (n < 0)
    return n;
  switch (api) {
  case UP_USERS:
    n = snprintf(buf, len, "{\"user_id\":%s,\"tier\":\"%s\",\"country\":\"%s\"}", q, tier_of(h),
                 countries[(h >> 16) % COUNT(countries)]);
    break;
  case UP_GEO: {
    size_t i = (size_t)((h >> 16) % COUNT(places));
    n = snprintf(buf, len, "{\"ip\":%s,\"country\":\"%s\",\"city\":\"%s\"}", q,
                 places[i].country, places[i].city);
    break;
  }
  case UP_FX: {
    char rate[64];
    format_real(usd_rate(id, h), rate, sizeof rate);
    n = snprintf(buf, len, "{\"currency\":%s,\"usd_rate\":%s}", q, rate);
    break;
  }
  }
  return n < 0 || (size_t)n >= len ? -ENOSPC : n;
}
