/* format.h: printf into a caller's small buffer, or the heap when it does not fit, for
 * the printf forms of the writers (bufio.c, http_response.c). */
#ifndef WEFT_NET_FORMAT_H
#define WEFT_NET_FORMAT_H

#include <stdarg.h>
#include <stddef.h>

/* weft__vformat: format into small (of size bytes) or, when longer, a malloc'd buffer
 * stored in *out (free it when *out != small). Returns the length, -EINVAL for a format
 * error or -ENOMEM. ap is consumed. */
long weft__vformat(char *small, size_t size, char **out, const char *fmt, va_list ap);

#endif
