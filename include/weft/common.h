/* weft/common.h: definitions shared by every public header. */
#ifndef WEFT_COMMON_H
#define WEFT_COMMON_H

#include <stddef.h>
#include <stdint.h>

#if defined(WEFT_BUILDING)
#define WEFT_API __attribute__((visibility("default")))
#else
#define WEFT_API
#endif

/* Deadlines are absolute CLOCK_MONOTONIC times in nanoseconds (see weft_now()).
 * WEFT_NO_DEADLINE never expires. */
#define WEFT_NO_DEADLINE INT64_MAX

#endif
