/* metrics_chan.c: channels registered by name, exposed as gauges at each scrape:
 *   weft_chan_length{chan="jobs"}    buffered elements now
 *   weft_chan_capacity{chan="jobs"}  capacity
 * so the dashboard and Prometheus see every bounded queue of a pipeline fill up.
 *
 * chans_mu guards the list; it is a leaf lock taken by the collector under the registry's
 * lock (a channel's own lock is taken briefly inside weft_chan_len, never the other way
 * round). The list holds a reference to each channel until it is unregistered. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "weft/chan.h"
#include "weft/metrics.h"

struct watched {
  weft_metrics_registry *reg;
  weft_chan *ch; /* a reference of ours */
  char *name;
  struct watched *next;
};

static pthread_mutex_t chans_mu = PTHREAD_MUTEX_INITIALIZER;
static struct watched *chans; /* guarded by chans_mu */

static void collect_chans(weft_metrics_emitter *em, void *arg)
{
  weft_metrics_registry *reg = arg;
  static const char *const label[] = {"chan"};
  pthread_mutex_lock(&chans_mu);
  for (struct watched *w = chans; w; w = w->next) {
    if (w->reg != reg)
      continue;
    const char *value[] = {w->name};
    weft_metrics_emit(em, "weft_chan_length", "Elements buffered in a registered channel.",
                      WEFT_METRIC_GAUGE, (double)weft_chan_len(w->ch), 1, label, value);
    weft_metrics_emit(em, "weft_chan_capacity", "Capacity of a registered channel.",
                      WEFT_METRIC_GAUGE, (double)weft_chan_cap(w->ch), 1, label, value);
  }
  pthread_mutex_unlock(&chans_mu);
}

int weft_metrics_register_chan(weft_metrics_registry *reg, const char *name, weft_chan *ch)
{
  if (!name || !*name || !ch)
    return -EINVAL;
  if (!reg && !(reg = weft_metrics_default()))
    return -ENOMEM;
  struct watched *w = calloc(1, sizeof *w);
  if (!w || !(w->name = strdup(name))) {
    free(w);
    return -ENOMEM;
  }
  int err = weft_metrics_register_collector(reg, collect_chans, reg);
  if (err && err != -EEXIST) {
    free(w->name);
    free(w);
    return err;
  }
  err = 0; /* -EEXIST above: the collector was there already, as it should be */
  w->reg = reg;
  w->ch = weft_chan_retain(ch);
  pthread_mutex_lock(&chans_mu);
  for (struct watched *o = chans; o; o = o->next) {
    if (o->reg == reg && (o->ch == ch || !strcmp(o->name, name)))
      err = -EEXIST;
  }
  if (err != -EEXIST) {
    w->next = chans;
    chans = w;
  }
  pthread_mutex_unlock(&chans_mu);
  if (err == -EEXIST) {
    weft_chan_release(w->ch);
    free(w->name);
    free(w);
    return -EEXIST;
  }
  return 0;
}

int weft_metrics_unregister_chan(weft_metrics_registry *reg, weft_chan *ch)
{
  if (!reg)
    reg = weft_metrics_default();
  struct watched *found = NULL;
  pthread_mutex_lock(&chans_mu);
  for (struct watched **p = &chans; *p; p = &(*p)->next) {
    if ((*p)->reg == reg && (*p)->ch == ch) {
      found = *p;
      *p = found->next;
      break;
    }
  }
  pthread_mutex_unlock(&chans_mu);
  if (!found)
    return -ENOENT;
  weft_chan_release(found->ch);
  free(found->name);
  free(found);
  return 0;
}
