/* weft/error.h: error codes.
 *
 * Every weft call that can fail returns 0 (or a count) on success and a negative errno
 * value on failure. weft never reports errors through errno: a coroutine may resume on
 * another thread after it parks, and errno is per thread. */
#ifndef WEFT_ERROR_H
#define WEFT_ERROR_H

#include <errno.h>

#include "common.h"

/* The codes weft itself returns, with their names and messages. Append-only. */
#define WEFT_ERRNO_MAP(X)                             \
  X(ECANCELED, "operation canceled")                  \
  X(ETIMEDOUT, "deadline exceeded")                   \
  X(EPIPE, "channel or connection closed")            \
  X(EAGAIN, "operation would block")                  \
  X(EINVAL, "invalid argument")                       \
  X(ENOMEM, "out of memory")                          \
  X(EBADF, "bad or closed file descriptor")           \
  X(EPERM, "operation not permitted in this context") \
  X(EBUSY, "resource busy")                           \
  X(ENOSYS, "not supported on this system")           \
  X(EMFILE, "too many open files")                    \
  X(ECONNREFUSED, "connection refused")               \
  X(ECONNRESET, "connection reset by peer")           \
  X(EINTR, "interrupted")

/* weft_strerror: a short message for a weft error code (negative or positive errno).
 * Unknown codes fall back to strerror's text. Any thread; never blocks. The string is
 * static. */
WEFT_API const char *weft_strerror(int err);

/* weft_errname: the symbolic name of an error code ("ECANCELED"), or "UNKNOWN".
 * Any thread; never blocks. */
WEFT_API const char *weft_errname(int err);

#endif
