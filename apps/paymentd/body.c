/* body.c: see body.h.
 *
 * Nearly every body a client sends is a flat object of plain values: ASCII strings without
 * escapes and integers of at most 18 digits. Those are read here in one pass without
 * building a tree; everything else (escapes, other bytes, nesting, fractions and
 * exponents, literals, longer numbers, malformed text) goes to jansson, which decides.
 * The fast path therefore only has to be right about what it accepts, and for that text
 * JSON has one reading: a test compares both paths on generated and mutated bodies.
 * (jansson's tree was about a tenth of a confirmation's CPU: an object, a hash table, a
 * key and a value allocated per field.) */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "body.h"

#define MAX_AMOUNT 1000000000000LL

static const char MSG_NOT_OBJECT[] = "the body must be a JSON object";
static const char MSG_AMOUNT[] = "amount_cents must be an integer from 1 to 1000000000000";
static const char MSG_AMOUNT_RANGE[] = "amount_cents is out of range";
static const char MSG_CURRENCY[] = "currency must be 3 upper-case letters";
static const char MSG_ACCOUNT[] = "account must be a string of 1 to 64 characters";

/* A field's value as the checks see it, whichever path read it. */
struct value {
  enum { V_MISSING, V_INTEGER, V_STRING, V_OTHER } kind;
  long long integer;
  const char *s; /* V_STRING: its bytes, not NUL-terminated */
  size_t len;    /* bytes */
  size_t chars;  /* Unicode code points */
};

static bool upper3(const struct value *v)
{
  if (v->len != 3)
    return false;
  for (int i = 0; i < 3; i++)
    if (v->s[i] < 'A' || v->s[i] > 'Z')
      return false;
  return true;
}

/* The contract's checks, in its order; NULL when valid (req then filled). */
static const char *check_fields(const struct value *amount, const struct value *cur,
                                const struct value *acct, pay_record *req, const char **msg)
{
  if (amount->kind != V_INTEGER || amount->integer < 1 || amount->integer > MAX_AMOUNT)
    *msg = MSG_AMOUNT;
  else if (cur->kind != V_STRING || !upper3(cur))
    *msg = MSG_CURRENCY;
  else if (acct->kind != V_STRING || acct->chars < 1 || acct->chars > PAY_ACCOUNT_MAX)
    *msg = MSG_ACCOUNT;
  else {
    req->amount_cents = amount->integer;
    memcpy(req->currency, cur->s, 3);
    req->currency[3] = '\0';
    memcpy(req->account, acct->s, acct->len);
    req->account[acct->len] = '\0';
    return NULL;
  }
  return "invalid_field";
}

/* ---- the fast path ---- */

static const char *skip_ws(const char *p, const char *end)
{
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
    p++;
  return p;
}

/* A string of printable ASCII without escapes at *p; false for anything else. */
static bool plain_string(const char **pp, const char *end, struct value *v)
{
  const char *p = *pp;
  if (p == end || *p != '"')
    return false;
  const char *s = ++p;
  while (p < end && *p != '"') {
    if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e || *p == '\\')
      return false;
    p++;
  }
  if (p == end)
    return false;
  *v = (struct value){
      .kind = V_STRING, .s = s, .len = (size_t)(p - s), .chars = (size_t)(p - s)};
  *pp = p + 1;
  return true;
}

/* An integer of 1 to 18 digits: no leading zero, and no 19th digit, fraction or exponent
 * after them. */
static bool small_integer(const char **pp, const char *end, struct value *v)
{
  const char *p = *pp;
  bool neg = p < end && *p == '-';
  p += neg;
  const char *digits = p;
  long long n = 0;
  while (p < end && *p >= '0' && *p <= '9' && p - digits < 18)
    n = n * 10 + (*p++ - '0');
  size_t count = (size_t)(p - digits);
  if (count == 0 || (count > 1 && *digits == '0'))
    return false;
  if (p < end && ((*p >= '0' && *p <= '9') || *p == '.' || *p == 'e' || *p == 'E'))
    return false;
  *v = (struct value){.kind = V_INTEGER, .integer = neg ? -n : n};
  *pp = p;
  return true;
}

static void assign(const struct value *key, const struct value *v, struct value *amount,
                   struct value *cur, struct value *acct)
{
  if (key->len == 12 && memcmp(key->s, "amount_cents", 12) == 0)
    *amount = *v;
  else if (key->len == 8 && memcmp(key->s, "currency", 8) == 0)
    *cur = *v;
  else if (key->len == 7 && memcmp(key->s, "account", 7) == 0)
    *acct = *v;
}

/* true when body is a flat object of plain values, its three fields then read. */
static bool read_flat(const char *p, const char *end, struct value *amount, struct value *cur,
                      struct value *acct)
{
  p = skip_ws(p, end);
  if (p == end || *p++ != '{')
    return false;
  p = skip_ws(p, end);
  if (p < end && *p == '}') {
    p++;
  } else {
    for (;;) {
      struct value key, v;
      if (!plain_string(&p, end, &key))
        return false;
      p = skip_ws(p, end);
      if (p == end || *p++ != ':')
        return false;
      p = skip_ws(p, end);
      if (!(p < end && *p == '"' ? plain_string(&p, end, &v) : small_integer(&p, end, &v)))
        return false;
      assign(&key, &v, amount, cur, acct);
      p = skip_ws(p, end);
      if (p < end && *p == ',') {
        p = skip_ws(p + 1, end);
        continue;
      }
      if (p == end || *p++ != '}')
        return false;
      break;
    }
  }
  return skip_ws(p, end) == end;
}

/* ---- jansson ---- */

static size_t utf8_chars(const char *s)
{
  size_t n = 0;
  for (; *s; s++)
    n += ((unsigned char)*s & 0xC0) != 0x80;
  return n;
}

static struct value value_of(json_t *j)
{
  if (!j)
    return (struct value){.kind = V_MISSING};
  if (json_is_integer(j))
    return (struct value){.kind = V_INTEGER, .integer = json_integer_value(j)};
  if (json_is_string(j)) {
    /* No NUL inside: jansson refuses \u0000 without JSON_ALLOW_NUL. */
    const char *s = json_string_value(j);
    return (struct value){.kind = V_STRING, .s = s, .len = strlen(s), .chars = utf8_chars(s)};
  }
  return (struct value){.kind = V_OTHER};
}

const char *pay_body_parse_jansson(const char *body, size_t len, pay_record *req,
                                   const char **msg)
{
  json_error_t jerr;
  json_t *j = json_loadb(body, len, 0, &jerr);
  if (!j) {
    bool big = strstr(jerr.text, "too big") != NULL; /* an integer past int64: range */
    *msg = big ? MSG_AMOUNT_RANGE : MSG_NOT_OBJECT;
    return big ? "invalid_field" : "invalid_json";
  }
  const char *code = "invalid_json";
  if (!json_is_object(j)) {
    *msg = MSG_NOT_OBJECT;
  } else {
    struct value amount = value_of(json_object_get(j, "amount_cents"));
    struct value cur = value_of(json_object_get(j, "currency"));
    struct value acct = value_of(json_object_get(j, "account"));
    code = check_fields(&amount, &cur, &acct, req, msg);
  }
  json_decref(j);
  return code;
}

const char *pay_body_parse(const char *body, size_t len, pay_record *req, const char **msg)
{
  struct value amount = {.kind = V_MISSING}, cur = amount, acct = amount;
  if (read_flat(body, body + len, &amount, &cur, &acct))
    return check_fields(&amount, &cur, &acct, req, msg);
  return pay_body_parse_jansson(body, len, req, msg);
}
