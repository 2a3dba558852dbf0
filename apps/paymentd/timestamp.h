/* timestamp.h: confirmed_at, RFC 3339 UTC with microseconds ("2026-01-02T03:04:05.123456Z"),
 * to and from numbers by calendar arithmetic: no gmtime_r, strftime, strptime or timegm
 * (time zone locks and format parsing) on the path of every confirmation. Proleptic
 * Gregorian calendar, years 1970..9999. Any thread. */
#ifndef PAYMENTD_TIMESTAMP_H
#define PAYMENTD_TIMESTAMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The text's length, without its NUL. */
#define PAY_TIMESTAMP_LEN 27

/* pay_timestamp_format: write sec.usec (seconds since the epoch) into buf (size at least
 * PAY_TIMESTAMP_LEN + 1). */
void pay_timestamp_format(int64_t sec, int32_t usec, char *buf);

/* pay_timestamp_parse: the numbers of exactly that form; false for anything else (other
 * lengths, offsets other than Z, a field out of range). */
bool pay_timestamp_parse(const char *s, int64_t *sec, int32_t *usec);

/* pay_timestamp_now: the current time (CLOCK_REALTIME) formatted. */
void pay_timestamp_now(char *buf);

#endif
