/* Unit tests of paymentd's confirmed_at arithmetic (apps/paymentd/timestamp.c, linked in
 * directly): formatting against gmtime_r and strftime over random instants of 1970..9999
 * and the calendar's corners; parsing back to the same numbers; parsing refuses what is
 * not exactly the form (shape, length, ranges, a 29th of February of a common year). */
/* timegm: _GNU_SOURCE comes from the build */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../apps/paymentd/timestamp.h"
#include "weft_test.h"

static void expect_libc(int64_t sec, int32_t usec)
{
  char got[PAY_TIMESTAMP_LEN + 1], want[64];
  struct tm tm;
  time_t t = (time_t)sec;
  gmtime_r(&t, &tm);
  size_t n = strftime(want, sizeof want, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(want + n, sizeof want - n, ".%06dZ", (int)usec);
  pay_timestamp_format(sec, usec, got);
  assert_string_equal(got, want);
  int64_t back_sec;
  int32_t back_usec;
  assert_true(pay_timestamp_parse(got, &back_sec, &back_usec));
  assert_int_equal(back_sec, sec);
  assert_int_equal(back_usec, usec);
  assert_int_equal(back_sec, (int64_t)timegm(&tm));
}

static void test_format_matches_libc(void **state)
{
  (void)state;
  static const int64_t corners[] = {0,
                                    86399,
                                    86400,
                                    951782400 /* 2000-02-29 */,
                                    951868799,
                                    951868800 /* 2000-03-01 */,
                                    1709164800 /* 2024-02-29 */,
                                    4107542400 /* 2100-02-28 */,
                                    4107628800 /* 2100-03-01 */,
                                    253402300799 /* 9999 end */};
  for (size_t i = 0; i < sizeof corners / sizeof *corners; i++)
    expect_libc(corners[i], (int32_t)(i * 123457 % 1000000));
  srand(7);
  for (int i = 0; i < 200000; i++) {
    int64_t sec = ((int64_t)rand() << 31 | rand()) % 253402300800;
    expect_libc(sec, rand() % 1000000);
  }
}

static void expect_refused(const char *s)
{
  int64_t sec = -7;
  int32_t usec = -7;
  assert_false(pay_timestamp_parse(s, &sec, &usec));
  assert_int_equal(sec, -7); /* untouched */
  assert_int_equal(usec, -7);
}

static void test_parse_refuses(void **state)
{
  (void)state;
  expect_refused("");
  expect_refused("2026-01-02T03:04:05Z");          /* no fraction */
  expect_refused("2026-01-02T03:04:05.123Z");      /* milliseconds */
  expect_refused("2026-01-02T03:04:05.1234567Z");  /* too long */
  expect_refused("2026-01-02T03:04:05.123456+00"); /* not Z */
  expect_refused("2026-01-02 03:04:05.123456Z");
  expect_refused("2026-1-02T03:04:05.1234567Z");
  expect_refused("2026-01-02T03:04:0x.123456Z");
  expect_refused("2026-13-02T03:04:05.123456Z");
  expect_refused("2026-00-02T03:04:05.123456Z");
  expect_refused("2026-04-31T03:04:05.123456Z");
  expect_refused("2023-02-29T03:04:05.123456Z"); /* a common year */
  expect_refused("2100-02-29T03:04:05.123456Z"); /* a century, not leap */
  expect_refused("2026-01-02T24:00:00.000000Z");
  expect_refused("2026-01-02T23:60:00.000000Z");
  expect_refused("2026-01-02T23:59:60.000000Z");
  expect_refused("1969-12-31T23:59:59.999999Z");
  int64_t sec;
  int32_t usec;
  assert_true(pay_timestamp_parse("2024-02-29T23:59:59.999999Z", &sec, &usec));
  assert_int_equal(sec, 1709251199);
  assert_int_equal(usec, 999999);
}

static void test_now(void **state)
{
  (void)state;
  char buf[PAY_TIMESTAMP_LEN + 1];
  time_t before = time(NULL);
  pay_timestamp_now(buf);
  time_t after = time(NULL);
  int64_t sec;
  int32_t usec;
  assert_true(pay_timestamp_parse(buf, &sec, &usec));
  assert_true(sec >= (int64_t)before && sec <= (int64_t)after);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_format_matches_libc),
      cmocka_unit_test(test_parse_refuses),
      cmocka_unit_test(test_now),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
