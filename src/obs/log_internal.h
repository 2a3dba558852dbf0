/* log_internal.h: the pieces log.c formats records with (log_fmt.c): a growing buffer
 * and the value encodings of slog's text and JSON handlers. */
#ifndef WEFT_OBS_LOG_INTERNAL_H
#define WEFT_OBS_LOG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* A record being formatted: starts in caller-provided (stack) storage, moves to the heap
 * when it outgrows it. After a failed allocation oom is set and appends do nothing. */
struct weft__logbuf {
  char *p;
  size_t n, cap;
  bool heap; /* p is malloc'd */
  bool oom;
};

/* weft__logbuf_grow: make room for need more bytes; false (and oom set) if impossible. */
bool weft__logbuf_grow(struct weft__logbuf *b, size_t need);

static inline void weft__logbuf_put(struct weft__logbuf *b, const void *s, size_t n)
{
  if (b->cap - b->n < n && !weft__logbuf_grow(b, n))
    return;
  memcpy(b->p + b->n, s, n);
  b->n += n;
}

static inline void weft__logbuf_putc(struct weft__logbuf *b, char c)
{
  if (b->n < b->cap || weft__logbuf_grow(b, 1))
    b->p[b->n++] = c;
}

void weft__logbuf_free(struct weft__logbuf *b);

/* Integers in decimal. */
void weft__log_int(struct weft__logbuf *b, int64_t v);
void weft__log_uint(struct weft__logbuf *b, uint64_t v);

/* weft__log_text_needs_quoting: slog's needsQuoting(s): empty, or holding a space, '=',
 * '"', a control character, invalid UTF-8, U+FFFD, or a non-printing or space rune. */
bool weft__log_text_needs_quoting(const char *s, size_t n);
/* weft__log_quote: Go's strconv.Quote of s[0, n). */
void weft__log_quote(struct weft__logbuf *b, const char *s, size_t n);
/* weft__log_text_string: s as slog's TextHandler writes a string: quoted when needed. */
void weft__log_text_string(struct weft__logbuf *b, const char *s, size_t n);
/* weft__log_json_string: s as a JSON string, quotes included, escaped as slog does. */
void weft__log_json_string(struct weft__logbuf *b, const char *s, size_t n);

/* Doubles as slog writes them: text strconv 'g' -1 ("1e+06", "0.5", "NaN", "+Inf");
 * JSON as encoding/json ("1000000", "1e-7"; NaN and infinities as strings). */
void weft__log_text_double(struct weft__logbuf *b, double d);
void weft__log_json_double(struct weft__logbuf *b, double d);

/* weft__log_duration: Go's time.Duration.String ("1h2m3.5s", "1.5µs", "0s"). */
void weft__log_duration(struct weft__logbuf *b, int64_t ns);

/* weft__log_time: ns since the Unix epoch as RFC 3339 in UTC: millis true gives exactly
 * three fraction digits (slog's text), else up to nine with trailing zeros dropped
 * (RFC3339Nano, slog's JSON). */
void weft__log_time(struct weft__logbuf *b, int64_t unix_ns, bool millis);

#endif
