/* weft/sync.h: synchronisation primitives for coroutines.
 *
 * weft_wg is a wait group (Go's sync.WaitGroup): embeddable, initialised with
 * WEFT_WG_INIT or weft_wg_init(), no destroy needed once its count is zero and nobody
 * waits. */
#ifndef WEFT_SYNC_H
#define WEFT_SYNC_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Opaque storage; fields are private to weft. */
typedef struct weft_wg {
  _Alignas(8) unsigned char opaque[32];
} weft_wg;

#define WEFT_WG_INIT \
  {                  \
    {                \
      0              \
    }                \
  }

/* weft_wg_init: zero the group. Any thread. */
WEFT_API void weft_wg_init(weft_wg *wg);

/* weft_wg_add: add delta (may be negative) to the counter; when it reaches zero every
 * waiter is woken. A negative counter is a misuse: weft aborts with a dump. Any thread;
 * never parks. */
WEFT_API void weft_wg_add(weft_wg *wg, long delta);

/* weft_wg_done: weft_wg_add(wg, -1). */
WEFT_API void weft_wg_done(weft_wg *wg);

/* weft_wg_wait: park until the counter is zero (returns at once if it is).
 * Coroutine, may park (wait reason "wait group"). */
WEFT_API void weft_wg_wait(weft_wg *wg);

#ifdef __cplusplus
}
#endif
#endif
