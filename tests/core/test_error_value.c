/* test_error_value.c: weft_error values: codes, messages, cause chains, formatting,
 * reference counting (ASan checks nothing leaks or is freed twice). */
#include <string.h>

#include "weft_test.h"

static void test_chain_formats_and_matches(void **state)
{
  (void)state;
  weft_error *root = weft_error_from_code(-ECONNREFUSED);
  weft_error *mid = weft_error_new(0, root, "connect %s", "127.0.0.1:9");
  weft_error *top = weft_error_new(-EIO, mid, "fetch %s", "http://x/");
  weft_error_release(root);
  weft_error_release(mid);
  char buf[256];
  size_t n = weft_error_format(top, buf, sizeof buf);
  assert_string_equal(buf, "fetch http://x/: connect 127.0.0.1:9: connection refused");
  assert_int_equal(n, strlen(buf));
  assert_int_equal(weft_error_code(top), -EIO);
  assert_int_equal(weft_error_code(weft_error_cause(top)), -ECONNREFUSED); /* took root's */
  assert_true(weft_error_is(top, -ECONNREFUSED));
  assert_true(weft_error_is(top, ECONNREFUSED));
  assert_false(weft_error_is(top, -EPIPE));
  weft_error_release(top);
}

static void test_truncation_reports_needed_length(void **state)
{
  (void)state;
  weft_error *e = weft_error_new(-ETIMEDOUT, NULL, "waiting for %d replies", 3);
  char tiny[8];
  size_t need = weft_error_format(e, tiny, sizeof tiny);
  assert_int_equal(need, strlen("waiting for 3 replies"));
  assert_string_equal(tiny, "waiting");
  assert_int_equal(weft_error_format(e, NULL, 0), need);
  weft_error_release(e);
}

static void test_null_and_codes(void **state)
{
  (void)state;
  char buf[64] = "x";
  assert_null(weft_error_from_code(0));
  assert_int_equal(weft_error_code(NULL), 0);
  assert_null(weft_error_cause(NULL));
  assert_false(weft_error_is(NULL, -EIO));
  assert_int_equal(weft_error_format(NULL, buf, sizeof buf), 0);
  assert_string_equal(buf, "");
  weft_error *e = weft_error_new(ECANCELED, NULL, NULL); /* positive codes are negated */
  assert_int_equal(weft_error_code(e), -ECANCELED);
  weft_error_format(e, buf, sizeof buf);
  assert_string_equal(buf, "operation canceled");
  weft_error_release(e);
}

static void test_long_message_and_long_chain(void **state)
{
  (void)state;
  char big[1000];
  memset(big, 'a', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  weft_error *e = weft_error_new(-EINVAL, NULL, "%s", big);
  for (int i = 0; i < 100000; i++) { /* released iteratively: no deep recursion */
    weft_error *next = weft_error_new(0, e, "level %d", i);
    weft_error_release(e);
    e = next;
  }
  assert_true(weft_error_is(e, -EINVAL));
  weft_error *retained = weft_error_retain(e);
  weft_error_release(e);
  assert_int_equal(weft_error_code(retained), -EINVAL);
  weft_error_release(retained);
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_chain_formats_and_matches),
      cmocka_unit_test(test_truncation_reports_needed_length),
      cmocka_unit_test(test_null_and_codes),
      cmocka_unit_test(test_long_message_and_long_chain),
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL, 0);
}
