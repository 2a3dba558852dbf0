/* error.c: weft_strerror and weft_errname, generated from WEFT_ERRNO_MAP. */
#include <limits.h>
#include <string.h>

#include "weft/error.h"

/* The errno value behind a code of either sign. INT_MIN has no positive counterpart (and
 * is no errno): negating it would overflow, so it is kept as it is, an unknown code. */
static int errno_of(int err)
{
  return err < 0 && err != INT_MIN ? -err : err;
}

const char *weft_strerror(int err)
{
  err = errno_of(err);
  switch (err) {
#define WEFT_STRERROR_CASE(name, msg) \
  case name:                          \
    return msg;
    WEFT_ERRNO_MAP(WEFT_STRERROR_CASE)
#undef WEFT_STRERROR_CASE
  case 0:
    return "success";
  default:
    return strerror(err);
  }
}

const char *weft_errname(int err)
{
  err = errno_of(err);
  switch (err) {
#define WEFT_ERRNAME_CASE(name, msg) \
  case name:                         \
    return #name;
    WEFT_ERRNO_MAP(WEFT_ERRNAME_CASE)
#undef WEFT_ERRNAME_CASE
  case 0:
    return "OK";
  default:
    return "UNKNOWN";
  }
}
