/* weft/trace.h: W3C Trace Context: the trace a piece of work belongs to, carried by a
 * context and passed between services in the `traceparent` HTTP header.
 *
 *   traceparent: 00-<32 hex trace id>-<16 hex parent span id>-<2 hex flags>
 *
 * A weft_trace names one span: the trace it belongs to, its own span id and its parent's
 * span id (all zero for a root span). Traces are plain values: copy them freely.
 *
 * Wiring: the HTTP server gives every request context a server span (the child of the
 * caller's span when the request carries a valid traceparent, else the root of a new
 * trace); weft_http_client_do sends a traceparent for a new child span of the context's
 * span (a traceparent header given by the caller wins); records logged with a context
 * that carries a trace get trace_id and span_id attributes (weft/log.h).
 *
 * Every call may be made from any thread and never parks. */
#ifndef WEFT_TRACE_H
#define WEFT_TRACE_H

#include "common.h"
#include "ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bit 0 of the flags: the caller may have recorded this trace. */
#define WEFT_TRACE_SAMPLED 0x01

/* Bytes of a traceparent header value, and of a buffer for it with its NUL. */
#define WEFT_TRACEPARENT_LEN  55
#define WEFT_TRACEPARENT_SIZE 56

typedef struct weft_trace {
  uint8_t trace_id[16]; /* never all zero in a valid trace */
  uint8_t span_id[8];   /* this span; never all zero in a valid trace */
  uint8_t parent_id[8]; /* the parent span; all zero for a root span */
  uint8_t flags;        /* WEFT_TRACE_SAMPLED */
} weft_trace;

/* weft_trace_parse: parse a traceparent header value (trailing spaces and tabs are
 * ignored). On success *out holds the caller's span: its trace id, span_id = the header's
 * parent id, parent_id zero, the header's flags; use weft_trace_child for the span that
 * handles the request. Version 00 must be exactly 55 characters; a later version may be
 * longer if a '-' follows the fourth field. Hex digits must be lower case.
 * Returns 0, or -EINVAL (header NULL, wrong length or separators, upper-case or non-hex
 * digits, version ff, an all-zero trace id or parent id); *out is then untouched. */
WEFT_API int weft_trace_parse(const char *header, weft_trace *out);

/* weft_trace_format: write t as a version 00 traceparent (t's trace id, its span id as
 * the parent id, its flags) into buf, NUL-terminated. Returns WEFT_TRACEPARENT_LEN, or
 * -EINVAL when t or buf is NULL or len < WEFT_TRACEPARENT_SIZE. */
WEFT_API int weft_trace_format(const weft_trace *t, char *buf, size_t len);

/* weft_trace_new: the root span of a new trace (random trace and span ids, both never
 * zero; parent zero; flags WEFT_TRACE_SAMPLED). Ids come from a per-thread generator
 * seeded with getrandom(2). */
WEFT_API void weft_trace_new(weft_trace *out);

/* weft_trace_child: a child span of parent: same trace id, a new random span id,
 * parent_id = parent's span id, parent's sampled flag. out may equal parent. */
WEFT_API void weft_trace_child(const weft_trace *parent, weft_trace *out);

/* weft_trace_is_valid: 1 if t's trace id and span id are both non-zero, else 0. */
WEFT_API int weft_trace_is_valid(const weft_trace *t);

/* weft_trace_id_hex / weft_trace_span_hex: t's trace id as 32 lower-case hex digits
 * (buf: at least 33 bytes) / a span id (8 bytes) as 16 (buf: at least 17), NUL-terminated.
 * Return buf. */
WEFT_API char *weft_trace_id_hex(const uint8_t id[16], char *buf);
WEFT_API char *weft_trace_span_hex(const uint8_t id[8], char *buf);

/* weft_trace_ctx_with: a child of parent (NULL: background) carrying a copy of *t.
 * Returns a new reference, or NULL when t is NULL or out of memory. */
WEFT_API weft_ctx *weft_trace_ctx_with(weft_ctx *parent, const weft_trace *t);

/* weft_trace_from_ctx: copy the trace ctx carries (the nearest one) into *out.
 * Returns 0, or -ENOENT when ctx is NULL or carries none (*out untouched). */
WEFT_API int weft_trace_from_ctx(weft_ctx *ctx, weft_trace *out);

/* weft_trace_server_ctx: the context of a server span: a cancellable child of parent
 * (weft_ctx_with_cancel) carrying the child of the span named by traceparent when it is
 * valid, else the root of a new trace. traceparent may be NULL. Returns a new reference
 * (cancel it when the request ends), or NULL when out of memory. */
WEFT_API weft_ctx *weft_trace_server_ctx(weft_ctx *parent, const char *traceparent);

/* weft_trace_outgoing: the traceparent value for an outgoing call made with ctx: a new
 * child span of ctx's trace, written into buf (len >= WEFT_TRACEPARENT_SIZE). If out is
 * not NULL it receives that child span. Returns WEFT_TRACEPARENT_LEN, -ENOENT when ctx
 * carries no trace (nothing is written), or -EINVAL for a short buffer. */
WEFT_API int weft_trace_outgoing(weft_ctx *ctx, char *buf, size_t len, weft_trace *out);

#ifdef __cplusplus
}
#endif
#endif
