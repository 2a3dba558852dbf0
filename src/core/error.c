/* error.c: weft_strerror and weft_errname, generated from WEFT_ERRNO_MAP. */
#include <string.h>

#include "weft/error.h"

const char *weft_strerror(int err)
{
  if (err < 0)
    err = -err;
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
  if (err < 0)
    err = -err;
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
