/* sink.c: choosing the sink from --sink, and what every sink shares.
 *
 * Every sink upholds the same contract (etl.md, "Output"): a batch is one transaction;
 * rows are upserted by event_id, except that a partial row never replaces a complete one;
 * a dead letter is stored once per origin (an empty origin, stdin's, is stored as NULL,
 * which is never a duplicate). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "etl.h"

int etl_sink_open(const char *spec, etl_sink **out, char *err, size_t errlen)
{
  if (strncmp(spec, "sqlite:", 7) == 0 && spec[7])
    return etl_sink_sqlite_open(spec + 7, out, err, errlen);
  if (strncmp(spec, "postgres://", 11) == 0 || strncmp(spec, "postgresql://", 13) == 0) {
#ifdef ETL_HAVE_PG
    return etl_sink_pg_open(spec, out, err, errlen);
#else
    snprintf(err, errlen, "--sink %s: PostgreSQL is not supported by this build", spec);
    return -ENOTSUP;
#endif
  }
  snprintf(err, errlen, "invalid --sink \"%s\": want sqlite:PATH or postgres://...", spec);
  return -EINVAL;
}

void etl_now_rfc3339(char *buf, size_t len)
{
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  char day[32];
  strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf, len, "%s.%06ldZ", day, ts.tv_nsec / 1000);
}
