/* clock.h: monotonic clocks. */
#ifndef WEFT_CORE_CLOCK_H
#define WEFT_CORE_CLOCK_H

#include <stdint.h>
#include <time.h>

/* now_ns: CLOCK_MONOTONIC, nanoseconds (vDSO, about 20 ns). */
static inline int64_t now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* coarse_now_ns: CLOCK_MONOTONIC_COARSE (a few ns, resolution of a scheduler tick): good
 * enough for "waiting since" stamps in dumps, cheap enough for every park. */
static inline int64_t coarse_now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

#endif
