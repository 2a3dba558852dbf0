/* test_errors.c: weft_strerror and weft_errname, for every code of WEFT_ERRNO_MAP (negative
 * and positive), 0, errno values outside the map and codes that are no errno at all. */
#include <limits.h>
#include <string.h>

#include "weft_test.h"

struct code {
  int value;
  const char *name;
  const char *msg;
};

static const struct code codes[] = {
#define WEFT_TEST_CODE(name, msg) {name, #name, msg},
    WEFT_ERRNO_MAP(WEFT_TEST_CODE)
#undef WEFT_TEST_CODE
};
#define NCODES (sizeof codes / sizeof codes[0])

static void test_every_mapped_code(void **state)
{
  (void)state;
  assert_true(NCODES >= 14);
  for (size_t i = 0; i < NCODES; i++) {
    const struct code *c = &codes[i];
    assert_true(c->value > 0);
    assert_string_equal(weft_strerror(-c->value), c->msg);
    assert_string_equal(weft_strerror(c->value), c->msg);
    assert_string_equal(weft_errname(-c->value), c->name);
    assert_string_equal(weft_errname(c->value), c->name);
  }
}

/* The table is append-only and its entries must stay distinct: a duplicate value would make
 * one name unreachable (and the generated switch would not compile). */
static void test_codes_distinct_and_described(void **state)
{
  (void)state;
  for (size_t i = 0; i < NCODES; i++) {
    assert_true(strlen(codes[i].msg) > 0);
    for (size_t j = i + 1; j < NCODES; j++) {
      assert_int_not_equal(codes[i].value, codes[j].value);
      assert_string_not_equal(codes[i].name, codes[j].name);
      assert_string_not_equal(codes[i].msg, codes[j].msg);
    }
  }
}

static void test_the_codes_weft_documents(void **state)
{
  (void)state;
  /* The codes DESIGN.md and the headers promise, by value. */
  assert_string_equal(weft_errname(-ECANCELED), "ECANCELED");
  assert_string_equal(weft_errname(-ETIMEDOUT), "ETIMEDOUT");
  assert_string_equal(weft_errname(-EPIPE), "EPIPE");
  assert_string_equal(weft_errname(-EAGAIN), "EAGAIN");
  assert_string_equal(weft_errname(-EWOULDBLOCK), "EAGAIN"); /* the same value on Linux */
  assert_string_equal(weft_strerror(-ETIMEDOUT), "deadline exceeded");
  assert_string_equal(weft_strerror(-EPIPE), "channel or connection closed");
}

static void test_zero(void **state)
{
  (void)state;
  assert_string_equal(weft_strerror(0), "success");
  assert_string_equal(weft_errname(0), "OK");
}

/* An errno weft does not map: strerror's text, name UNKNOWN, whatever the sign. */
static void test_errno_outside_the_map(void **state)
{
  (void)state;
  const int others[] = {ENOTDIR, EACCES, ENOSPC, EADDRINUSE, EHOSTUNREACH};
  for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
    char expect[256];
    snprintf(expect, sizeof expect, "%s", strerror(others[i]));
    assert_string_equal(weft_strerror(-others[i]), expect);
    assert_string_equal(weft_strerror(others[i]), expect);
    assert_string_equal(weft_errname(-others[i]), "UNKNOWN");
    assert_string_equal(weft_errname(others[i]), "UNKNOWN");
  }
}

/* Codes that are no errno at all, including the extremes of int (negating INT_MIN would
 * overflow: UBSan in the asan build catches an implementation that does). */
static void test_unknown_codes(void **state)
{
  (void)state;
  const int unknown[] = {9999, -9999, 4095, -4096, INT_MAX, -INT_MAX, INT_MIN};
  for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
    const char *msg = weft_strerror(unknown[i]);
    assert_non_null(msg);
    assert_true(strlen(msg) > 0);
    assert_string_equal(weft_errname(unknown[i]), "UNKNOWN");
  }
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_mapped_code),
      cmocka_unit_test(test_codes_distinct_and_described),
      cmocka_unit_test(test_the_codes_weft_documents),
      cmocka_unit_test(test_zero),
      cmocka_unit_test(test_errno_outside_the_map),
      cmocka_unit_test(test_unknown_codes),
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL, 0);
}
