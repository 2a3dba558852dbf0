/* data.c: the fake answers of the three APIs, a pure function of (api, seed, id).
 *
 * Every field comes from one 64-bit hash of the API, the seed and the id: the same request
 * gets the same bytes in every process started with the same seed, however busy it is and
 * whatever faults it injects (those draw from a separate, per-request stream: faults.c).
 * Objects are encoded by jansson with JSON_PRESERVE_ORDER: jansson seeds its hash table
 * from /dev/urandom, so without it two processes could order the keys differently. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
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

static json_t *answer_object(up_api api, const char *id, uint64_t h)
{
  size_t n = strlen(id);
  switch (api) {
  case UP_USERS:
    return json_pack("{s:s%,s:s,s:s}", "user_id", id, n, "tier", tier_of(h), "country",
                     countries[(h >> 16) % COUNT(countries)]);
  case UP_GEO: {
    size_t i = (size_t)((h >> 16) % COUNT(places));
    return json_pack("{s:s%,s:s,s:s}", "ip", id, n, "country", places[i].country, "city",
                     places[i].city);
  }
  case UP_FX:
    return json_pack("{s:s%,s:f}", "currency", id, n, "usd_rate", usd_rate(id, h));
  }
  return NULL;
}

int up_answer(up_api api, uint64_t seed, const char *id, char *buf, size_t len)
{
  json_t *obj = answer_object(api, id, hash_id(api, seed, id));
  if (!obj)
    return -EILSEQ; /* id is not UTF-8: jansson refuses it */
  size_t n =
      json_dumpb(obj, buf, len, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
  json_decref(obj);
  if (n == 0 || n >= len)
    return -ENOSPC;
  buf[n] = '\0';
  return (int)n;
}
