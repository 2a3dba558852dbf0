/* format.c: see format.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "net/format.h"

long weft__vformat(char *small, size_t size, char **out, const char *fmt, va_list ap)
{
  va_list again;
  va_copy(again, ap);
  int n = vsnprintf(small, size, fmt, ap);
  *out = small;
  if (n >= 0 && (size_t)n >= size) {
    char *big = malloc((size_t)n + 1);
    if (big)
      vsnprintf(big, (size_t)n + 1, fmt, again);
    *out = big;
  }
  va_end(again);
  if (n < 0)
    return -EINVAL;
  return *out ? n : -ENOMEM;
}
