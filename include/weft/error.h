/* weft/error.h: error codes.
 *
 * Every weft call that can fail returns 0 (or a count) on success and a negative errno
 * value on failure. weft never reports errors through errno: a coroutine may resume on
 * another thread after it parks, and errno is per thread. */
#ifndef WEFT_ERROR_H
#define WEFT_ERROR_H

#include <errno.h>

#include "common.h"

/* Codes beyond errno's range, returned negated like errno values (-WEFT_EDNS). */
#define WEFT_EDNS     10001 /* a host name did not resolve, or the resolver failed */
#define WEFT_ETLS     10002 /* a TLS handshake, record or alert failed */
#define WEFT_ECERT    10003 /* the peer's certificate failed verification */
#define WEFT_EOPEN    10004 /* a circuit breaker is open and rejected the call */
#define WEFT_ETOOMANY 10005 /* a half-open circuit breaker already admitted its quota */
#define WEFT_EDBCONN  10006 /* a database connection could not be made (weft/pg.h) */

/* The codes weft itself returns, with their names and messages. Append-only. */
#define WEFT_ERRNO_MAP(X)                              \
  X(ECANCELED, "operation canceled")                   \
  X(ETIMEDOUT, "deadline exceeded")                    \
  X(EPIPE, "channel or connection closed")             \
  X(EAGAIN, "operation would block")                   \
  X(EINVAL, "invalid argument")                        \
  X(ENOMEM, "out of memory")                           \
  X(EBADF, "bad or closed file descriptor")            \
  X(EPERM, "operation not permitted in this context")  \
  X(EBUSY, "resource busy")                            \
  X(ENOSYS, "not supported on this system")            \
  X(EMFILE, "too many open files")                     \
  X(ECONNREFUSED, "connection refused")                \
  X(ECONNRESET, "connection reset by peer")            \
  X(EINTR, "interrupted")                              \
  X(EPROTO, "protocol error")                          \
  X(EFBIG, "message too large")                        \
  X(EMSGSIZE, "line or message too long")              \
  X(EBADMSG, "malformed message")                      \
  X(EALREADY, "already done")                          \
  X(ENOENT, "not found")                               \
  X(WEFT_EDNS, "name resolution failed")               \
  X(WEFT_ETLS, "TLS failure")                          \
  X(WEFT_ECERT, "TLS certificate verification failed") \
  X(EEXIST, "already exists")                          \
  X(WEFT_EOPEN, "circuit breaker is open")             \
  X(WEFT_ETOOMANY, "too many requests")                \
  X(WEFT_EDBCONN, "database connection failed")

/* weft_strerror: a short message for a weft error code (negative or positive errno).
 * Unknown codes fall back to strerror's text. Any thread; never blocks. The string is
 * static for weft's codes; for others it is glibc's strerror text (valid until the
 * thread's next strerror call). */
WEFT_API const char *weft_strerror(int err);

/* weft_errname: the symbolic name of an error code ("ECANCELED"), or "UNKNOWN".
 * Any thread; never blocks. */
WEFT_API const char *weft_errname(int err);

/* ---- error values ----
 * A weft_error is an error value for programs built on weft: a code (a negative errno, as
 * everywhere in weft), a message, and the error that caused it, so that a failure deep in
 * a call chain reaches the top with its story: "fetch http://a/: connect 10.0.0.1:80:
 * connection refused". NULL means no error. Values are immutable and reference counted;
 * every constructor returns a new reference (NULL only when there is nothing to say or
 * memory ran out: see weft_error_new). Any thread; never parks. */
typedef struct weft_error weft_error;

/* weft_error_new: an error with code (negative errno; 0 takes cause's code, or -EIO),
 * a printf-style message (may be NULL: then the code's text), and cause (a reference is
 * taken; may be NULL). On out-of-memory returns a static error with code -ENOMEM. */
WEFT_API weft_error *weft_error_new(int code, weft_error *cause, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* weft_error_from_code: an error for a bare code (0 gives NULL). */
WEFT_API weft_error *weft_error_from_code(int code);

WEFT_API weft_error *weft_error_retain(weft_error *err);
WEFT_API void weft_error_release(weft_error *err);

/* weft_error_code: the code (0 for NULL). */
WEFT_API int weft_error_code(const weft_error *err);
/* weft_error_cause: the error that caused err (borrowed), or NULL. */
WEFT_API weft_error *weft_error_cause(const weft_error *err);
/* weft_error_is: 1 if err or any error in its cause chain has code, else 0 (Go's
 * errors.Is for codes). */
WEFT_API int weft_error_is(const weft_error *err, int code);
/* weft_error_format: write "msg: cause's msg: ..." into buf (always NUL-terminated when
 * len > 0); returns the length the full text needs, as snprintf does. */
WEFT_API size_t weft_error_format(const weft_error *err, char *buf, size_t len);

#endif
