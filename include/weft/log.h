/* weft/log.h: structured logging in the manner of Go's log/slog.
 *
 *   weft_log_handler *h = weft_log_json_handler_new(NULL);  // stderr, INFO
 *   weft_logger *log = weft_logger_new(h);
 *   weft_log_handler_release(h);                             // the logger keeps its own
 *   weft_log_info(log, ctx, "request done", WEFT_STR("path", path), WEFT_INT("status", 200),
 *                 WEFT_DUR("took", ns));
 *   -> {"time":"2024-05-01T12:00:00.123456789Z","level":"INFO","msg":"request done",
 *       "trace_id":"...","span_id":"...","path":"/a","status":200,"took":1500000}
 *
 * A record: a level, a message and typed attributes (key, value). A handler formats
 * records as text (logfmt, as slog's TextHandler) or JSON (as slog's JSONHandler) and
 * writes each one whole with a single write(2) (or fwrite + fflush) under the handler's
 * lock, so records from different threads never interleave. A logger is a handler plus
 * the attributes and groups given by weft_logger_with / weft_logger_with_group.
 *
 * Order of a record's fields: time, level, source (WEFT_LOG_ADD_SOURCE), msg; then, when
 * ctx carries a trace (weft/trace.h), trace_id and span_id; then the attributes ctx
 * carries (weft_log_ctx_with; outermost context's first); then the logger's attributes
 * and groups; then the record's own attributes (inside the logger's groups). The trace
 * and context attributes stay outside the logger's groups so that they can always be
 * found at the top level.
 *
 * Cost when off: the logging macros read the handler's level (one atomic load behind a
 * function call) before evaluating ctx, message or any attribute argument. Arguments
 * with side effects therefore run only when the record is logged.
 *
 * Values: times are UTC (RFC 3339: text with milliseconds, JSON with up to nanoseconds);
 * durations print as Go's time.Duration ("1.5s") in text and integer nanoseconds in JSON;
 * doubles as Go prints float64 (NaN, +Inf and -Inf as strings in JSON, where slog would
 * write an error). Text values and keys are quoted (Go's strconv.Quote) when empty or
 * holding a space, '=', '"', a control character, invalid UTF-8, or a Unicode space or
 * format character; unassigned code points count as printable.
 *
 * Ownership: handlers and loggers are reference counted; constructors return a new
 * reference; weft_logger_new and every logger derived from it hold a reference to the
 * handler, and a derived logger to its parent. Attribute keys and values are copied by
 * weft_logger_with and weft_log_ctx_with, only borrowed for the call by the logging
 * calls. Every call may be made from any thread (coroutine or not) and never parks; a
 * record's write blocks its thread while the output (a full pipe) is not writable, and
 * holds the handler's lock meanwhile. Formatting a record uses about 2 KiB of stack. */
#ifndef WEFT_LOG_H
#define WEFT_LOG_H

#include <stdbool.h>
#include <stdio.h>

#include "common.h"
#include "ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Levels, as slog's; any int is a level (printed as "INFO+2", "DEBUG-1", ...). */
enum {
  WEFT_LOG_DEBUG = -4,
  WEFT_LOG_INFO = 0,
  WEFT_LOG_WARN = 4,
  WEFT_LOG_ERROR = 8,
};

/* ---- attributes ---- */

enum weft_log_kind {
  WEFT_LOG_KIND_NONE = 0, /* an empty attribute: skipped */
  WEFT_LOG_KIND_STRING,
  WEFT_LOG_KIND_INT64,
  WEFT_LOG_KIND_UINT64,
  WEFT_LOG_KIND_DOUBLE,
  WEFT_LOG_KIND_BOOL,
  WEFT_LOG_KIND_DURATION, /* nanoseconds */
  WEFT_LOG_KIND_TIME,     /* nanoseconds since the Unix epoch (CLOCK_REALTIME) */
  WEFT_LOG_KIND_ERRNO,    /* a weft error code: printed as weft_strerror's message */
  WEFT_LOG_KIND_ERROR,    /* a weft_error: printed as weft_error_format's text */
  WEFT_LOG_KIND_GROUP,
};

struct weft_error;

/* One attribute. Build them with the macros below; their arguments are type-checked by
 * the compiler (a char * where an integer belongs is an error, not a format bug). */
typedef struct weft_log_attr {
  const char *key; /* NULL counts as "" */
  int kind;        /* enum weft_log_kind */
  union {
    struct {
      const char *p; /* NULL prints as "" */
      size_t n;      /* SIZE_MAX: p is NUL-terminated */
    } s;
    int64_t i; /* INT64, DURATION, TIME */
    uint64_t u;
    double d;
    bool b;
    int err;
    const struct weft_error *e; /* NULL prints as "<nil>" */
    struct {
      const struct weft_log_attr *attrs;
      size_t n;
    } group;
  } v;
} weft_log_attr;

#define WEFT__ATTR(k, kd, field, ...) \
  ((weft_log_attr){.key = (k), .kind = WEFT_LOG_KIND_##kd, .v.field = __VA_ARGS__})

#define WEFT_STR(k, val)      WEFT__ATTR(k, STRING, s, {(val), SIZE_MAX})
#define WEFT_STRN(k, p, len)  WEFT__ATTR(k, STRING, s, {(p), (len)})
#define WEFT_INT(k, val)      WEFT__ATTR(k, INT64, i, (val))
#define WEFT_UINT(k, val)     WEFT__ATTR(k, UINT64, u, (val))
#define WEFT_F64(k, val)      WEFT__ATTR(k, DOUBLE, d, (val))
#define WEFT_BOOL(k, val)     WEFT__ATTR(k, BOOL, b, (val))
#define WEFT_DUR(k, ns)       WEFT__ATTR(k, DURATION, i, (ns))
#define WEFT_TIME(k, unix_ns) WEFT__ATTR(k, TIME, i, (unix_ns))
#define WEFT_ERRNO(k, code)   WEFT__ATTR(k, ERRNO, err, (code))
#define WEFT_ERR(k, weft_err) WEFT__ATTR(k, ERROR, e, (weft_err))
/* WEFT_GROUP(k, attrs...): at least one attribute; an empty key inlines them, a group
 * whose attributes all end up empty is left out (as slog does). */
#define WEFT_GROUP(k, ...)         \
  ((weft_log_attr){                \
      .key = (k),                  \
      .kind = WEFT_LOG_KIND_GROUP, \
      .v.group = {(const weft_log_attr[]){__VA_ARGS__}, WEFT_LOG_NATTRS(__VA_ARGS__)}})

/* WEFT_LOG_NATTRS(attrs...): how many attributes (a compile-time constant). */
#define WEFT_LOG_NATTRS(...) \
  (sizeof((const weft_log_attr[]){__VA_ARGS__}) / sizeof(weft_log_attr))

/* ---- handlers ---- */

typedef struct weft_log_handler weft_log_handler;

enum {
  WEFT_LOG_ADD_SOURCE = 1 << 0, /* add source: text "file:line", JSON {function,file,line} */
  WEFT_LOG_NO_TIME = 1 << 1,    /* leave the time out (tests, or a collector that adds it) */
};

typedef struct weft_log_options {
  int level;  /* the minimum level logged; zero is WEFT_LOG_INFO */
  int flags;  /* WEFT_LOG_ADD_SOURCE, WEFT_LOG_NO_TIME */
  FILE *file; /* output through fwrite + fflush, if not NULL (borrowed: outlives it) */
  int fd;     /* else output to fd when > 0 (borrowed), else to stderr (fd 2) */
} weft_log_options;

/* weft_log_text_handler_new / weft_log_json_handler_new: a handler (opts NULL: INFO, no
 * flags, stderr). Returns a new reference, or NULL when out of memory. Any thread. */
WEFT_API weft_log_handler *weft_log_text_handler_new(const weft_log_options *opts);
WEFT_API weft_log_handler *weft_log_json_handler_new(const weft_log_options *opts);

/* weft_log_handler_set_level: change the minimum level; takes effect for records
 * started after the call (an atomic store). Any thread. h NULL: the default logger's. */
WEFT_API void weft_log_handler_set_level(weft_log_handler *h, int level);
/* weft_log_handler_level: the minimum level. h NULL: the default logger's. */
WEFT_API int weft_log_handler_level(const weft_log_handler *h);

WEFT_API weft_log_handler *weft_log_handler_retain(weft_log_handler *h);
/* weft_log_handler_release: drop a reference; the last one frees h (it does not close
 * the fd or FILE). NULL ignored. */
WEFT_API void weft_log_handler_release(weft_log_handler *h);

/* ---- loggers ---- */

typedef struct weft_logger weft_logger;

/* weft_logger_new: a logger writing to h (a reference to h is taken; the caller keeps
 * its own). Returns a new reference, or NULL when h is NULL or out of memory. */
WEFT_API weft_logger *weft_logger_new(weft_log_handler *h);

/* weft_logger_with(l, attrs...): a logger that adds attrs (copied) to every record, after
 * l's own. l NULL: the default logger. Returns a new reference, or NULL when out of
 * memory. */
#define weft_logger_with(l, ...)                                    \
  weft_logger_with_attrs((l), (const weft_log_attr[]){__VA_ARGS__}, \
                         WEFT_LOG_NATTRS(__VA_ARGS__))
WEFT_API weft_logger *weft_logger_with_attrs(weft_logger *l, const weft_log_attr *attrs,
                                             size_t n);

/* weft_logger_with_group: a logger whose later attributes (from weft_logger_with and
 * each record) go into group name (copied): "name.key=" in text, "name":{...} in JSON.
 * A group that receives no attribute is left out. An empty name returns l retained.
 * Returns a new reference, or NULL when out of memory. */
WEFT_API weft_logger *weft_logger_with_group(weft_logger *l, const char *name);

/* weft_logger_handler: l's handler (borrowed). l NULL: the default logger's. */
WEFT_API weft_log_handler *weft_logger_handler(weft_logger *l);

WEFT_API weft_logger *weft_logger_retain(weft_logger *l);
WEFT_API void weft_logger_release(weft_logger *l); /* NULL ignored */

/* weft_log_default: the process-wide default logger (borrowed; valid for the life of the
 * process): at first a text handler on stderr at INFO. Logging calls given NULL use it. */
WEFT_API weft_logger *weft_log_default(void);

/* weft_log_set_default: make l the default (a reference is taken). The logger it
 * replaces is kept alive until the process ends, since other threads may still be using
 * it. l NULL: back to the built-in stderr logger. */
WEFT_API void weft_log_set_default(weft_logger *l);

/* ---- logging ---- */

/* weft_log_enabled: 1 if l (NULL: the default) logs records of level, else 0. */
WEFT_API int weft_log_enabled(weft_logger *l, int level);

/* Where a record was logged (WEFT_LOG_ADD_SOURCE). */
typedef struct weft_log_source {
  const char *file;
  int line;
  const char *func;
} weft_log_source;

/* weft_log_record: log one record (the function behind the macros, for wrappers): l
 * NULL is the default logger; ctx may be NULL; src may be NULL; attrs[0, n) are
 * borrowed for the call. Checks the level again; drops the record when out of memory. */
WEFT_API void weft_log_record(weft_logger *l, weft_ctx *ctx, int level,
                              const weft_log_source *src, const char *msg,
                              const weft_log_attr *attrs, size_t n);

/* weft_log(l, ctx, level, msg, attrs...), weft_log_debug/info/warn/error(l, ctx, msg,
 * attrs...): log a record. Statements, not expressions. ctx, msg and the attributes are
 * evaluated only when the level is enabled. */
#define weft_log(l, ctx, level, ...) WEFT__LOG((l), (ctx), (level), __VA_ARGS__, WEFT__LOG_END)
#define weft_log_debug(l, ctx, ...)  weft_log(l, ctx, WEFT_LOG_DEBUG, __VA_ARGS__)
#define weft_log_info(l, ctx, ...)   weft_log(l, ctx, WEFT_LOG_INFO, __VA_ARGS__)
#define weft_log_warn(l, ctx, ...)   weft_log(l, ctx, WEFT_LOG_WARN, __VA_ARGS__)
#define weft_log_error(l, ctx, ...)  weft_log(l, ctx, WEFT_LOG_ERROR, __VA_ARGS__)

/* The trailing empty attribute lets a record have no attributes in C11 (a variadic macro
 * needs at least one argument); it is not passed on. */
#define WEFT__LOG_END ((weft_log_attr){.kind = WEFT_LOG_KIND_NONE})
#define WEFT__LOG(l, ctx, level, msg, ...)                                                     \
  do {                                                                                         \
    weft_logger *weft__log_l = (l);                                                            \
    int weft__log_level = (level);                                                             \
    if (weft_log_enabled(weft__log_l, weft__log_level))                                        \
      weft_log_record(weft__log_l, (ctx), weft__log_level,                                     \
                      &(const weft_log_source){__FILE__, __LINE__, __func__}, (msg),           \
                      (const weft_log_attr[]){__VA_ARGS__}, WEFT_LOG_NATTRS(__VA_ARGS__) - 1); \
  } while (0)

/* weft_log_ctx_with(ctx, attrs...): a child of ctx (NULL: background) carrying attrs
 * (copied): every record logged with it or its descendants gets them, after those of
 * the contexts above it. Returns a new reference, or NULL when out of memory. */
#define weft_log_ctx_with(ctx, ...)                                    \
  weft_log_ctx_with_attrs((ctx), (const weft_log_attr[]){__VA_ARGS__}, \
                          WEFT_LOG_NATTRS(__VA_ARGS__))
WEFT_API weft_ctx *weft_log_ctx_with_attrs(weft_ctx *ctx, const weft_log_attr *attrs, size_t n);

/* weft_log_level_string: level as slog prints it ("INFO", "WARN+1", "DEBUG-4") into buf
 * (at least WEFT_LOG_LEVEL_SIZE bytes); returns buf. */
#define WEFT_LOG_LEVEL_SIZE 24
WEFT_API char *weft_log_level_string(int level, char *buf);

#ifdef __cplusplus
}
#endif
#endif
