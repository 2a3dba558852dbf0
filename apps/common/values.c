/* values.c: durations, integers, numbers, booleans and log levels as the programs in apps/
 * write them (values.h). Where the programs once disagreed, these accept what any of them
 * accepted: a duration may start as strtod allows ("+5s") and end in a bare number of
 * seconds ("1m30"); an integer may have leading white space. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <weft/log.h>

#include "values.h"

/* The multiplier of the unit of length n at s, or -1 for none. */
static double unit_mult(const char *s, size_t n)
{
  static const struct {
    const char *unit;
    double mult;
  } units[] = {{"ns", 1}, {"us", 1e3}, {"ms", 1e6}, {"s", 1e9}, {"m", 60e9}, {"h", 3600e9}};
  for (size_t i = 0; i < sizeof units / sizeof *units; i++)
    if (n == strlen(units[i].unit) && strncmp(s, units[i].unit, n) == 0)
      return units[i].mult;
  return -1;
}

int app_parse_duration(const char *s, int64_t *ns)
{
  double total = 0;
  if (!*s)
    return -EINVAL;
  while (*s) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || v < 0 || !isfinite(v))
      return -EINVAL;
    size_t un = strspn(end, "nsumh");
    double mult = un == 0 && !*end ? 1e9 : unit_mult(end, un); /* bare: seconds */
    if (mult < 0)
      return -EINVAL;
    total += v * mult;
    s = end + un;
  }
  if (total > 9e18)
    return -EINVAL;
  *ns = (int64_t)total;
  return 0;
}

int app_parse_int(const char *s, long long lo, long long hi, long long *out)
{
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (end == s || *end || errno || v < lo || v > hi)
    return -EINVAL;
  *out = v;
  return 0;
}

int app_parse_float(const char *s, double lo, double hi, double *out)
{
  char *end;
  double v = strtod(s, &end);
  if (end == s || *end || !(v >= lo && v <= hi))
    return -EINVAL;
  *out = v;
  return 0;
}

int app_parse_bool(const char *s, bool *out)
{
  static const char *const yes[] = {"true", "1", "on", "yes"};
  static const char *const no[] = {"false", "0", "off", "no"};
  for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) {
    if (!strcmp(s, yes[i]))
      return *out = true, 0;
    if (!strcmp(s, no[i]))
      return *out = false, 0;
  }
  return -EINVAL;
}

int app_parse_log_level(const char *s, int *level)
{
  static const struct {
    const char *name;
    int level;
  } levels[] = {{"debug", WEFT_LOG_DEBUG},
                {"info", WEFT_LOG_INFO},
                {"warn", WEFT_LOG_WARN},
                {"warning", WEFT_LOG_WARN},
                {"error", WEFT_LOG_ERROR}};
  for (size_t i = 0; i < sizeof levels / sizeof *levels; i++)
    if (strcasecmp(s, levels[i].name) == 0)
      return *level = levels[i].level, 0;
  return -EINVAL;
}
