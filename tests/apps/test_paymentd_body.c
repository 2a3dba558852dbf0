/* Unit tests of paymentd's body parser (apps/paymentd/body.c, linked in directly): its fast
 * path for flat objects must give exactly what jansson's tree gives (the code, the message
 * and the fields) for every body; checked on fixed cases and on hundreds of thousands of
 * generated bodies, valid and broken, and on byte-level mutations of them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../apps/paymentd/body.h"
#include "weft_test.h"

static unsigned long long rng = 88172645463325252ull;

static unsigned next_rand(void)
{
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (unsigned)(rng >> 11);
}

static const char *pick(const char *const *v, size_t n)
{
  return v[next_rand() % n];
}

/* Both parsers on body: same code, message and (when valid) fields. */
static void expect_same(const char *body, size_t len)
{
  pay_record a, b;
  memset(&a, 0x5a, sizeof a);
  memset(&b, 0x5a, sizeof b);
  const char *ma = NULL, *mb = NULL;
  const char *ca = pay_body_parse(body, len, &a, &ma);
  const char *cb = pay_body_parse_jansson(body, len, &b, &mb);
  if ((ca == NULL) != (cb == NULL) || (ca && (strcmp(ca, cb) || strcmp(ma, mb))) ||
      (!ca && (a.amount_cents != b.amount_cents || strcmp(a.currency, b.currency) ||
               strcmp(a.account, b.account)))) {
    fprintf(stderr, "differ on [%.*s]: fast %s (%s), jansson %s (%s)\n", (int)len, body,
            ca ? ca : "ok", ma ? ma : "", cb ? cb : "ok", mb ? mb : "");
    fail();
  }
}

static void expect(const char *body, const char *code)
{
  pay_record r;
  const char *msg = NULL;
  const char *got = pay_body_parse(body, strlen(body), &r, &msg);
  if (code == NULL ? got != NULL : (got == NULL || strcmp(got, code))) {
    fprintf(stderr, "[%s]: got %s (%s), want %s\n", body, got ? got : "ok", msg ? msg : "",
            code ? code : "ok");
    fail();
  }
  expect_same(body, strlen(body));
}

static void test_cases(void **state)
{
  (void)state;
  expect("{\"amount_cents\":1999,\"currency\":\"EUR\",\"account\":\"acct-1\"}", NULL);
  expect(" {\n\t\"account\" : \"a\" , \"currency\":\"USD\",\"amount_cents\":1 } \r\n", NULL);
  expect("{\"amount_cents\":1000000000000,\"currency\":\"EUR\",\"account\":\"x\",\"n\":-5}",
         NULL);
  expect("{\"amount_cents\":2,\"amount_cents\":3,\"currency\":\"EUR\",\"account\":\"x\"}",
         NULL);
  expect("{\"amount_cents\":1000000000001,\"currency\":\"EUR\",\"account\":\"x\"}",
         "invalid_field");
  expect("{\"amount_cents\":0,\"currency\":\"EUR\",\"account\":\"x\"}", "invalid_field");
  expect("{\"amount_cents\":-0,\"currency\":\"EUR\",\"account\":\"x\"}", "invalid_field");
  expect("{\"amount_cents\":100.0,\"currency\":\"EUR\",\"account\":\"x\"}", "invalid_field");
  expect("{\"amount_cents\":1e2,\"currency\":\"EUR\",\"account\":\"x\"}", "invalid_field");
  expect("{\"amount_cents\":\"100\",\"currency\":\"EUR\",\"account\":\"x\"}", "invalid_field");
  expect("{\"amount_cents\":012,\"currency\":\"EUR\",\"account\":\"x\"}", "invalid_json");
  expect("{\"amount_cents\":99999999999999999999,\"currency\":\"EUR\",\"account\":\"x\"}",
         "invalid_field");
  expect("{\"amount_cents\":5,\"currency\":\"eur\",\"account\":\"x\"}", "invalid_field");
  expect("{\"amount_cents\":5,\"currency\":\"EURO\",\"account\":\"x\"}", "invalid_field");
  expect("{\"amount_cents\":5,\"currency\":\"EUR\",\"account\":\"\"}", "invalid_field");
  expect("{\"amount_cents\":5,\"currency\":\"EUR\",\"account\":\"\\u00e9t\\u00e9\"}", NULL);
  expect("{\"amount_cents\":5,\"currency\":\"EUR\",\"account\":\"a\\u0000b\"}",
         "invalid_json"); /* jansson refuses \u0000 */
  expect("{\"amount_cents\":5,\"currency\":\"EUR\",\"account\":{\"x\":1}}", "invalid_field");
  expect("{\"amount_cents\":5,\"currency\":\"EUR\",\"account\":\"x\",\"extra\":[1,{}]}", NULL);
  expect("{\"amount_cents\":5,\"currency\":\"EUR\",\"account\":\"x\"", "invalid_json");
  expect("{\"amount_cents\":5,\"currency\":\"EUR\",\"account\":\"x\"}}", "invalid_json");
  expect("{\"amount_cents\":5,,\"currency\":\"EUR\",\"account\":\"x\"}", "invalid_json");
  expect("{\"amount_cents\":5,\"currency\":\"EUR\",\"account\":\"x\",}", "invalid_json");
  expect("[1,2]", "invalid_json");
  expect("", "invalid_json");
  expect("{}", "invalid_field");
  expect("null", "invalid_json");
  char acct[80];
  memset(acct, 'a', 65);
  acct[65] = '\0';
  char body[200];
  snprintf(body, sizeof body, "{\"amount_cents\":5,\"currency\":\"EUR\",\"account\":\"%s\"}",
           acct);
  expect(body, "invalid_field"); /* 65 characters */
  acct[64] = '\0';
  snprintf(body, sizeof body, "{\"amount_cents\":5,\"currency\":\"EUR\",\"account\":\"%s\"}",
           acct);
  expect(body, NULL); /* 64 */
}

/* A body from fragments: right and wrong keys, values of every kind, odd spacing. */
static size_t generate(char *buf, size_t cap)
{
  static const char *const keys[] = {
      "\"amount_cents\"", "\"currency\"",      "\"account\"", "\"other\"",
      "\"amount\"",       "\"acc\\u006funt\"", "\"\""};
  static const char *const values[] = {"1",
                                       "1999",
                                       "0",
                                       "-1",
                                       "-0",
                                       "1000000000000",
                                       "1000000000001",
                                       "999999999999999999",
                                       "9999999999999999999",
                                       "12.5",
                                       "1e3",
                                       "1E3",
                                       "01",
                                       "-",
                                       "\"EUR\"",
                                       "\"eur\"",
                                       "\"EU\"",
                                       "\"EURO\"",
                                       "\"acct-42\"",
                                       "\"\"",
                                       "\"a b\"",
                                       "\"\\\"q\\\"\"",
                                       "\"\\u00e9\"",
                                       "\"caf\xc3\xa9\"",
                                       "\"\xff\"",
                                       "true",
                                       "false",
                                       "null",
                                       "[]",
                                       "[1,\"x\"]",
                                       "{}",
                                       "{\"a\":1}",
                                       "\"tab\there\""};
  static const char *const ws[] = {"", "", "", " ", "\n", "\t", "\r\n  "};
  size_t n = 0;
  int fields = (int)(next_rand() % 6);
  n += (size_t)snprintf(buf + n, cap - n, "%s{%s", pick(ws, 7), pick(ws, 7));
  for (int i = 0; i < fields && n < cap - 200; i++)
    n += (size_t)snprintf(buf + n, cap - n, "%s%s%s:%s%s%s%s", i ? "," : "", pick(ws, 7),
                          pick(keys, 7), pick(ws, 7), pick(values, 33), pick(ws, 7),
                          next_rand() % 50 ? "" : ",");
  n += (size_t)snprintf(buf + n, cap - n, "}%s%s", pick(ws, 7), next_rand() % 40 ? "" : "x");
  return n;
}

static void test_generated(void **state)
{
  (void)state;
  char buf[2048];
  for (int i = 0; i < 300000; i++) {
    size_t n = generate(buf, sizeof buf);
    expect_same(buf, n);
    /* Mutations: a byte changed, a byte dropped, a cut. */
    if (n > 0) {
      char m[2048];
      memcpy(m, buf, n);
      size_t at = next_rand() % n;
      static const char bytes[] = "{}[]:,\"\\ 0123456789-.eE\x01\x80\xff"
                                  "aZ";
      m[at] = bytes[next_rand() % (sizeof bytes - 1)];
      expect_same(m, n);
      memmove(m + at, m + at + 1, n - at - 1);
      expect_same(m, n - 1);
      expect_same(buf, at);
    }
  }
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cases),
      cmocka_unit_test(test_generated),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
