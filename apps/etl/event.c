/* event.c: decoding and validating one event (etl.md, "Event") with jansson, and the
 * item that carries it.
 *
 * A message that is not a valid event never stops the pipeline: it becomes a dead letter
 * whose error says why, and whose event_id is kept when one could be read. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etl.h"

#define MAX_EVENT_BYTES (1 << 20)
#define MAX_ID_CHARS    64

static void row_free(etl_row *r)
{
  free(r->event_id);
  free(r->ts);
  free(r->user_id);
  free(r->ip);
  free(r->currency);
  free(r->tier);
  free(r->user_country);
  free(r->ip_country);
  free(r->city);
  memset(r, 0, sizeof *r);
}

void etl_item_free(etl_item *it)
{
  if (!it)
    return;
  row_free(&it->row);
  free(it->error);
  free(it->dead_id);
  etl_message_free(it->msg);
  free(it);
}

void etl_item_dead(etl_item *it, const char *kind, const char *fmt, ...)
{
  char *reason = NULL;
  va_list ap;
  va_start(ap, fmt);
  if (vasprintf(&reason, fmt, ap) < 0)
    reason = NULL;
  va_end(ap);
  free(it->error);
  free(it->dead_id);
  it->error = reason ? reason : strdup("out of memory");
  it->dead_id = it->row.event_id ? strdup(it->row.event_id) : NULL;
  it->dead_kind = kind;
  it->kind = ETL_ITEM_DEAD;
}

/* UTF-8 characters in s, or -1 when s is not valid UTF-8. */
static long utf8_chars(const char *s)
{
  long n = 0;
  for (const unsigned char *p = (const unsigned char *)s; *p; n++) {
    int len = *p < 0x80         ? 1
              : (*p >> 5) == 6  ? 2
              : (*p >> 4) == 14 ? 3
              : (*p >> 3) == 30 ? 4
                                : 0;
    if (!len)
      return -1;
    for (int i = 1; i < len; i++)
      if ((p[i] & 0xC0) != 0x80)
        return -1;
    p += len;
  }
  return n;
}

/* Read n digits at *s into *v. */
static bool digits(const char **s, int n, int *v)
{
  *v = 0;
  for (int i = 0; i < n; i++, (*s)++) {
    if (!isdigit((unsigned char)**s))
      return false;
    *v = *v * 10 + (**s - '0');
  }
  return true;
}

/* RFC 3339 date-time: 2006-01-02T15:04:05[.frac](Z|+07:00). */
static bool is_rfc3339(const char *s)
{
  int y, mo, d, h, mi, se, oh, om;
  if (!digits(&s, 4, &y) || *s++ != '-' || !digits(&s, 2, &mo) || *s++ != '-' ||
      !digits(&s, 2, &d) || (*s != 'T' && *s != 't'))
    return false;
  s++;
  if (!digits(&s, 2, &h) || *s++ != ':' || !digits(&s, 2, &mi) || *s++ != ':' ||
      !digits(&s, 2, &se))
    return false;
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60)
    return false;
  if (*s == '.') {
    if (!isdigit((unsigned char)*++s))
      return false;
    while (isdigit((unsigned char)*s))
      s++;
  }
  if (*s == 'Z' || *s == 'z')
    return s[1] == '\0';
  if (*s != '+' && *s != '-')
    return false;
  s++;
  return digits(&s, 2, &oh) && *s++ == ':' && digits(&s, 2, &om) && !*s && oh < 24 && om < 60;
}

static bool is_ip(const char *s)
{
  unsigned char buf[16];
  return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

static bool is_currency(const char *s)
{
  return strlen(s) == 3 && isupper((unsigned char)s[0]) && isupper((unsigned char)s[1]) &&
         isupper((unsigned char)s[2]) && s[0] <= 'Z' && s[1] <= 'Z' && s[2] <= 'Z';
}

/* The string member key of o, or NULL (missing or not a string). */
static const char *str_member(json_t *o, const char *key)
{
  return json_string_value(json_object_get(o, key));
}

/* Validate the fields other than event_id; NULL or the reason (static or in buf). */
static const char *check_fields(json_t *o, char *buf, size_t len)
{
  const char *ts = str_member(o, "ts"), *user = str_member(o, "user_id");
  const char *ip = str_member(o, "ip"), *cur = str_member(o, "currency");
  json_t *amount = json_object_get(o, "amount_cents");
  if (!ts)
    return "ts is missing or not a string";
  if (!user || !*user)
    return "user_id is missing or empty";
  if (!ip)
    return "ip is missing or not a string";
  if (!amount || json_is_null(amount))
    return "amount_cents is missing";
  if (!json_is_integer(amount))
    return "amount_cents is not an integer";
  if (!cur)
    return "currency is missing or not a string";
  if (!is_rfc3339(ts))
    return snprintf(buf, len, "ts \"%.64s\" is not RFC 3339", ts), buf;
  if (!is_ip(ip))
    return snprintf(buf, len, "ip \"%.64s\" is not an IPv4 or IPv6 address", ip), buf;
  if (!is_currency(cur))
    return snprintf(buf, len, "currency \"%.16s\" is not 3 upper-case letters", cur), buf;
  return NULL;
}

static void fill_row(etl_row *r, json_t *o)
{
  r->ts = strdup(str_member(o, "ts"));
  r->user_id = strdup(str_member(o, "user_id"));
  r->ip = strdup(str_member(o, "ip"));
  r->currency = strdup(str_member(o, "currency"));
  r->amount_cents = json_integer_value(json_object_get(o, "amount_cents"));
}

/* The object's checks, with it->row.event_id set as soon as it is known. */
static void decode_object(etl_item *it, json_t *o)
{
  char buf[160];
  const char *id = str_member(o, "event_id");
  if (!id)
    return etl_item_dead(it, "decode", "event_id is missing or not a string");
  long n = utf8_chars(id);
  if (n < 1 || n > MAX_ID_CHARS)
    return etl_item_dead(it, "decode", "event_id must be 1 to 64 characters");
  it->row.event_id = strdup(id);
  const char *why = check_fields(o, buf, sizeof buf);
  if (why)
    return etl_item_dead(it, "decode", "%s", why);
  fill_row(&it->row, o);
  if (!it->row.event_id || !it->row.ts || !it->row.user_id || !it->row.ip || !it->row.currency)
    return etl_item_dead(it, "decode", "out of memory");
  it->kind = ETL_ITEM_ROW;
}

void etl_event_decode(etl_item *it)
{
  const etl_message *m = it->msg;
  if (m->len > MAX_EVENT_BYTES)
    return etl_item_dead(it, "decode", "event larger than %d bytes", MAX_EVENT_BYTES);
  json_error_t jerr;
  json_t *o = json_loadb(m->data, m->len, JSON_REJECT_DUPLICATES, &jerr);
  if (!o)
    return etl_item_dead(it, "decode", "invalid JSON: %s", jerr.text);
  if (!json_is_object(o))
    etl_item_dead(it, "decode", "not a JSON object");
  else
    decode_object(it, o);
  json_decref(o);
}
