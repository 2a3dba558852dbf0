/* xoshiro.h: xoshiro256** (Blackman and Vigna), a small fast generator for ids and
 * jitter that need to be unpredictable enough, not secret; seeded through splitmix64.
 * Header-only, for trace ids (ctx/trace.c) and retry jitter (patterns/retry.c). The state
 * must not be all zero (splitmix64 output never is, four times in a row). */
#ifndef WEFT_CTX_XOSHIRO_H
#define WEFT_CTX_XOSHIRO_H

#include <stdint.h>

static inline uint64_t weft__splitmix64(uint64_t *x)
{
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static inline uint64_t weft__rotl64(uint64_t x, int k)
{
  return (x << k) | (x >> (64 - k));
}

/* weft__xoshiro_seed: fill s from seed through splitmix64. */
static inline void weft__xoshiro_seed(uint64_t s[4], uint64_t seed)
{
  for (int i = 0; i < 4; i++)
    s[i] = weft__splitmix64(&seed);
}

static inline uint64_t weft__xoshiro_next(uint64_t s[4])
{
  uint64_t r = weft__rotl64(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = weft__rotl64(s[3], 45);
  return r;
}

#endif
