/* timestamp.c: see timestamp.h. Days and civil dates convert through eras of 400 years
 * (146,097 days, the Gregorian cycle), counted from 0000-03-01 so that the leap day is the
 * last day of a "year" and month lengths need no table. */
#include <string.h>
#include <time.h>

#include "timestamp.h"

enum { DAYS_PER_ERA = 146097, EPOCH_SHIFT = 719468 /* 0000-03-01 to 1970-01-01 */ };

/* Days since 1970-01-01 of y-m-d (m 1..12, d 1..31). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;                                  /* 0..399 */
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1; /* 0..365 */
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;          /* 0..146096 */
  return era * DAYS_PER_ERA + doe - EPOCH_SHIFT;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
  z += EPOCH_SHIFT;
  int64_t era = (z >= 0 ? z : z - DAYS_PER_ERA + 1) / DAYS_PER_ERA;
  int64_t doe = z - era * DAYS_PER_ERA;                                /* 0..146096 */
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* 0..399 */
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);               /* 0..365 */
  int64_t mp = (5 * doy + 2) / 153;                                    /* 0..11 */
  *d = (int)(doy - (153 * mp + 2) / 5 + 1);
  *m = (int)(mp < 10 ? mp + 3 : mp - 9);
  *y = yoe + era * 400 + (*m <= 2);
}

static void put_digits(char *p, long v, int n)
{
  for (int i = n - 1; i >= 0; i--, v /= 10)
    p[i] = (char)('0' + v % 10);
}

void pay_timestamp_format(int64_t sec, int32_t usec, char *buf)
{
  int64_t days = sec / 86400, rem = sec % 86400, y;
  if (rem < 0)
    rem += 86400, days--;
  int m, d;
  civil_from_days(days, &y, &m, &d);
  memcpy(buf, "0000-00-00T00:00:00.000000Z", PAY_TIMESTAMP_LEN + 1);
  put_digits(buf, (long)y, 4);
  put_digits(buf + 5, m, 2);
  put_digits(buf + 8, d, 2);
  put_digits(buf + 11, (long)(rem / 3600), 2);
  put_digits(buf + 14, (long)(rem / 60 % 60), 2);
  put_digits(buf + 17, (long)(rem % 60), 2);
  put_digits(buf + 20, usec, 6);
}

/* n digits at p as a number, or -1 if one is not a digit. */
static long get_digits(const char *p, int n)
{
  long v = 0;
  for (int i = 0; i < n; i++) {
    if (p[i] < '0' || p[i] > '9')
      return -1;
    v = v * 10 + (p[i] - '0');
  }
  return v;
}

bool pay_timestamp_parse(const char *s, int64_t *sec, int32_t *usec)
{
  static const char shape[] = "dddd-dd-ddTdd:dd:dd.ddddddZ";
  if (strlen(s) != PAY_TIMESTAMP_LEN)
    return false;
  for (int i = 0; i < PAY_TIMESTAMP_LEN; i++)
    if (shape[i] != 'd' && s[i] != shape[i])
      return false;
  long y = get_digits(s, 4), m = get_digits(s + 5, 2), d = get_digits(s + 8, 2);
  long hh = get_digits(s + 11, 2), mm = get_digits(s + 14, 2), ss = get_digits(s + 17, 2);
  long us = get_digits(s + 20, 6);
  static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (y < 1970 || m < 1 || m > 12 || d < 1 || d > mdays[m - 1] || hh < 0 || hh > 23 || mm < 0 ||
      mm > 59 || ss < 0 || ss > 59 || us < 0)
    return false;
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (m == 2 && d == 29 && !leap)
    return false;
  *sec = days_from_civil(y, (int)m, (int)d) * 86400 + hh * 3600 + mm * 60 + ss;
  *usec = (int32_t)us;
  return true;
}

void pay_timestamp_now(char *buf)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  pay_timestamp_format((int64_t)ts.tv_sec, (int32_t)(ts.tv_nsec / 1000), buf);
}
