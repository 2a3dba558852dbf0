/* values.h: the value syntaxes the programs in apps/ share, each a pure function: no
 * state, any thread, never parks. Every parser returns 0 with *out set, or -EINVAL with
 * *out untouched. */
#ifndef WEFT_APPS_COMMON_VALUES_H
#define WEFT_APPS_COMMON_VALUES_H

#include <stdbool.h>
#include <stdint.h>

/* A duration into nanoseconds: Go's time.ParseDuration ("500ms", "2s", "1m30s", units ns,
 * us, ms, s, m, h), plus a bare number meaning seconds, alone ("90") or ending a sum
 * ("1m30"). Negative values and sums above 9e18 ns are refused. */
int app_parse_duration(const char *s, int64_t *ns);

/* A decimal integer in [lo, hi], strtoll's syntax, nothing after it. */
int app_parse_int(const char *s, long long lo, long long hi, long long *out);

/* A number in [lo, hi], strtod's syntax, nothing after it; NaN is refused. */
int app_parse_float(const char *s, double lo, double hi, double *out);

/* true, 1, on, yes / false, 0, off, no. */
int app_parse_bool(const char *s, bool *out);

/* debug, info, warn (or warning), error, any case, into WEFT_LOG_*. */
int app_parse_log_level(const char *s, int *level);

#endif
