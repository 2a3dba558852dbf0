/* timerchan.c: weft_after and tickers: channels fed by timers.
 *
 * The timer callbacks run on a scheduler thread and never park: they use
 * weft_chan_try_send, so a tick is dropped while the channel's single slot is full.
 *
 * after: the callback owns its record (timer.callback_owns): it sends, drops its channel
 * reference and frees the record. The caller's reference keeps the channel alive for it.
 *
 * ticker: stopping sets `stopped`, which the callback reads before re-arming, then stops
 * the timer until it is neither pending nor firing (a callback that read `stopped` just
 * before it was set re-arms once more, and the next timer_stop removes that). */
#include <errno.h>
#include <stdlib.h>

#include "core/clock.h"
#include "core/sched.h"
#include "sync/chan_internal.h"

struct after {
  struct timer timer;
  weft_chan *ch;
};

static void after_fired(struct timer *t)
{
  struct after *a = t->arg;
  int64_t now = now_ns();
  weft_chan_try_send(a->ch, &now);
  weft_chan_release(a->ch);
  free(a);
}

weft_chan *weft_after(int64_t ns)
{
  if (!weft__sched.workers)
    return NULL;
  struct after *a = calloc(1, sizeof *a);
  weft_chan *ch = weft_chan_new(sizeof(int64_t), 1);
  if (!a || !ch) {
    free(a);
    weft_chan_release(ch);
    return NULL;
  }
  a->ch = weft_chan_retain(ch); /* the timer's own reference */
  a->timer.fn = after_fired;
  a->timer.arg = a;
  a->timer.callback_owns = true;
  if (weft__timer_start(&a->timer, now_ns() + (ns > 0 ? ns : 0)) != 0) {
    weft_chan_release(ch);
    weft_chan_release(ch);
    free(a);
    return NULL;
  }
  return ch;
}

struct weft_ticker {
  struct timer timer;
  weft_chan *ch;
  int64_t period;
  atomic_bool stopped;
};

static void tick(struct timer *t)
{
  struct weft_ticker *tk = t->arg;
  int64_t now = now_ns();
  weft_chan_try_send(tk->ch, &now);
  if (!atomic_load(&tk->stopped)) {
    int64_t next = t->when + tk->period;
    if (next <= now)
      next = now + tk->period; /* fell behind: skip the missed ticks */
    weft__timer_start(t, next);
  }
}

weft_ticker *weft_ticker_new(int64_t period)
{
  if (period <= 0 || !weft__sched.workers)
    return NULL;
  struct weft_ticker *tk = calloc(1, sizeof *tk);
  if (!tk || !(tk->ch = weft_chan_new(sizeof(int64_t), 1))) {
    free(tk);
    return NULL;
  }
  tk->period = period;
  tk->timer.fn = tick;
  tk->timer.arg = tk;
  if (weft__timer_start(&tk->timer, now_ns() + period) != 0) {
    weft_chan_release(tk->ch);
    free(tk);
    return NULL;
  }
  return tk;
}

weft_chan *weft_ticker_chan(weft_ticker *tk)
{
  return tk ? tk->ch : NULL;
}

void weft_ticker_stop(weft_ticker *tk)
{
  if (!tk)
    return;
  atomic_store(&tk->stopped, true);
  while (timer_stop(&tk->timer) || atomic_load(&tk->timer.state) != TIMER_IDLE) {
  }
  weft_chan_release(tk->ch);
  free(tk);
}
