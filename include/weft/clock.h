/* weft/clock.h: a clock the resilience patterns read and sleep on, real or fake.
 *
 * Retry back-off, circuit breakers, rate limiters and pools take a weft_clock (NULL: the
 * real one, weft_now and parking sleeps). Tests pass a fake clock whose time moves only
 * when the test advances it, so every timeout and transition is exact and instant.
 *
 * A fake clock's sleepers park on it (wait reason "fake clock") until weft_fake_clock_
 * advance moves time to or past their deadline, or their context is done. */
#ifndef WEFT_CLOCK_H
#define WEFT_CLOCK_H

#include <stdint.h>

#include "common.h"
#include "ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct weft_clock weft_clock;

/* weft_clock_real: the process's clock (weft_now, weft_sleep_ctx). Never freed. */
WEFT_API weft_clock *weft_clock_real(void);

/* weft_clock_now: the time on c (NULL: real), monotonic nanoseconds. Any thread. */
WEFT_API int64_t weft_clock_now(weft_clock *c);

/* weft_clock_sleep_until: park until c reads deadline or later, or ctx is done (NULL: never).
 * Returns 0 when the deadline was reached, else ctx's error. Coroutine, may park. */
WEFT_API int weft_clock_sleep_until(weft_clock *c, weft_ctx *ctx, int64_t deadline);

/* weft_clock_sleep: weft_clock_sleep_until(c, ctx, now + ns). */
WEFT_API int weft_clock_sleep(weft_clock *c, weft_ctx *ctx, int64_t ns);

/* ---- fake clock for tests ---- */

typedef struct weft_fake_clock weft_fake_clock;

/* weft_fake_clock_new: a fake clock reading start. NULL when out of memory. Any thread. */
WEFT_API weft_fake_clock *weft_fake_clock_new(int64_t start);
/* weft_fake_clock_free: free fc; nobody may be sleeping on it. NULL is ignored. */
WEFT_API void weft_fake_clock_free(weft_fake_clock *fc);
/* weft_fake_clock_clock: fc as a weft_clock (borrowed; lives as long as fc). */
WEFT_API weft_clock *weft_fake_clock_clock(weft_fake_clock *fc);
/* weft_fake_clock_advance: move time forward by ns (>= 0) and wake every sleeper whose
 * deadline is reached. Any thread; never parks. */
WEFT_API void weft_fake_clock_advance(weft_fake_clock *fc, int64_t ns);
/* weft_fake_clock_set: move time to t (ignored if earlier than now), as advance. */
WEFT_API void weft_fake_clock_set(weft_fake_clock *fc, int64_t t);
/* weft_fake_clock_sleepers: coroutines sleeping on fc now; lets a test wait until the code
 * under test has gone to sleep before it advances. Any thread. */
WEFT_API int weft_fake_clock_sleepers(weft_fake_clock *fc);

#ifdef __cplusplus
}
#endif
#endif
