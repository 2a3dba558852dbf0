/* watchdog.c: weft_watchdog_start/stop (weft/watchdog.h): a coroutine that reports
 * coroutines parked too long on a sync wait, the partial deadlocks Go cannot see.
 *
 * State: wd.running (atomic) says a watchdog exists; start and stop race only through it.
 * The options, the stop channel and the table of waits already reported are set by start
 * before the coroutine is spawned and then belong to the watchdog coroutine alone, until
 * it sets wd.exited; stop reads nothing else. The table lists, sorted by id, every wait
 * past the threshold at the last scan with how often it was reported; a wait is one
 * (id, since) pair, so a coroutine that woke and parked again starts afresh. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/dump.h"
#include "weft/chan.h"
#include "weft/runtime.h"
#include "weft/watchdog.h"

#define DEFAULT_THRESHOLD (10 * (int64_t)1000000000)
#define DEFAULT_REPEAT    10
#define MIN_INTERVAL      1000000

static const char *const default_reasons[] = {
    "chan send", "chan receive", "select",    "mutex", "rwmutex",
    "cond wait", "wait group",   "semaphore", NULL,
};

struct waited {
  uint64_t id;
  int64_t since;
  int times; /* reports made for this wait */
};

static struct {
  atomic_bool running; /* a watchdog exists (start .. the end of stop) */
  atomic_bool exited;  /* its coroutine is done reporting */
  weft_watchdog_options o;
  weft_chan *stop; /* closed by stop */
  uint64_t self;   /* the watchdog coroutine's id; written by it */
  struct waited *table;
  long n;
} wd;

static bool reason_watched(const char *reason)
{
  for (const char *const *r = wd.o.reasons; reason && *r; r++)
    if (strncmp(reason, *r, strlen(*r)) == 0)
      return true;
  return false;
}

/* Snapshot filter, under a registry lock: parked on a watched reason. */
static bool blocked(const struct coro *c, void *arg)
{
  (void)arg;
  if (c->id == wd.self || atomic_load_explicit(&c->state, memory_order_relaxed) != CORO_PARKED)
    return false;
  return reason_watched(atomic_load_explicit(&c->wait_reason, memory_order_relaxed));
}

static int cmp_waited(const void *a, const void *b)
{
  const struct waited *x = a, *y = b;
  return x->id < y->id ? -1 : x->id > y->id;
}

struct due {
  struct waited *v; /* sorted by id */
  long n;
};

static bool is_due(const struct coro *c, void *arg)
{
  struct due *d = arg;
  struct waited key = {.id = c->id};
  return bsearch(&key, d->v, (size_t)d->n, sizeof key, cmp_waited) != NULL;
}

static void deliver(const struct weft__dump_entry *e, const struct waited *w, int64_t now,
                    struct weft__sym *sym)
{
  char *text = NULL;
  size_t len = 0;
  FILE *m = open_memstream(&text, &len);
  if (!m)
    return;
  weft__dump_write_entry(m, sym, e, now);
  fclose(m);
  weft_watchdog_report r = {.id = e->id,
                            .name = e->name,
                            .reason = e->reason ? e->reason : "?",
                            .waited_ns = now - e->since,
                            .times = w->times,
                            .entry = text};
  if (wd.o.report) {
    wd.o.report(&r, wd.o.arg);
  } else {
    FILE *out = wd.o.out ? wd.o.out : stderr;
    fprintf(out, "weft watchdog: coroutine %llu blocked on %s for %.1f s (report %d)\n%s\n",
            (unsigned long long)r.id, r.reason, (double)r.waited_ns / 1e9, r.times, text);
    fflush(out);
  }
  free(text);
}

/* Unwind and report the waits in due (sorted by id). */
static void report_due(struct due *d)
{
  struct weft__dump_snap s;
  if (d->n == 0 || weft__dump_snapshot(&s, WEFT__SNAP_STACKS, is_due, d, 0))
    return;
  struct weft__sym *sym = weft__sym_open(&s);
  for (long i = 0; i < s.n; i++) {
    struct waited key = {.id = s.e[i].id};
    struct waited *w = bsearch(&key, d->v, (size_t)d->n, sizeof key, cmp_waited);
    /* Still the same wait (it may have woken between the two looks). */
    if (w && s.e[i].state == CORO_PARKED && s.e[i].since == w->since)
      deliver(&s.e[i], w, s.now, sym);
  }
  weft__sym_close(sym);
  weft__dump_snap_free(&s);
}

/* Whether a wait reported `times` times is due again after waiting `waited`. */
static bool due_again(int times, int64_t waited)
{
  int64_t t = wd.o.threshold_ns;
  if (times == 0)
    return true;
  if (wd.o.repeat_after < 0)
    return false;
  return waited >= t + (int64_t)times * wd.o.repeat_after * t;
}

static void scan(void)
{
  struct weft__dump_snap s;
  if (weft__dump_snapshot(&s, 0, blocked, NULL, 0))
    return;
  struct waited *next = malloc(sizeof *next * (size_t)(s.n ? s.n : 1));
  struct due d = {malloc(sizeof *d.v * (size_t)(s.n ? s.n : 1)), 0};
  long nn = 0;
  for (long i = 0; next && d.v && i < s.n; i++) {
    const struct weft__dump_entry *e = &s.e[i];
    int64_t waited = s.now - e->since;
    if (!e->since || waited < wd.o.threshold_ns)
      continue;
    struct waited key = {.id = e->id}, *old;
    old = bsearch(&key, wd.table, (size_t)wd.n, sizeof key, cmp_waited);
    struct waited w = {e->id, e->since, old && old->since == e->since ? old->times : 0};
    if (due_again(w.times, waited)) {
      w.times++;
      d.v[d.n++] = w;
    }
    next[nn++] = w;
  }
  weft__dump_snap_free(&s);
  if (!next || !d.v) {
    free(next);
    free(d.v);
    return;
  }
  qsort(next, (size_t)nn, sizeof *next, cmp_waited);
  qsort(d.v, (size_t)d.n, sizeof *d.v, cmp_waited);
  free(wd.table);
  wd.table = next;
  wd.n = nn;
  report_due(&d);
  free(d.v);
}

static void watchdog_main(void *arg)
{
  (void)arg;
  wd.self = weft_self_id();
  for (;;) {
    char dummy;
    int rc = weft_chan_recv(wd.stop, &dummy, weft_now() + wd.o.interval_ns);
    if (rc != -ETIMEDOUT)
      break; /* closed: stop */
    scan();
  }
  free(wd.table);
  wd.table = NULL;
  wd.n = 0;
  atomic_store_explicit(&wd.exited, true, memory_order_release);
}

int weft_watchdog_start(const weft_watchdog_options *opts)
{
  weft_watchdog_options o = opts ? *opts : (weft_watchdog_options){0};
  if (o.threshold_ns < 0 || o.interval_ns < 0)
    return -EINVAL;
  if (!weft_procs())
    return -EPERM;
  if (atomic_exchange(&wd.running, true))
    return -EBUSY;
  if (!o.threshold_ns)
    o.threshold_ns = DEFAULT_THRESHOLD;
  if (!o.interval_ns)
    o.interval_ns = o.threshold_ns / 4 > MIN_INTERVAL ? o.threshold_ns / 4 : MIN_INTERVAL;
  if (!o.repeat_after)
    o.repeat_after = DEFAULT_REPEAT;
  if (!o.reasons)
    o.reasons = default_reasons;
  wd.o = o;
  wd.self = 0;
  atomic_store(&wd.exited, false);
  wd.stop = weft_chan_new(1, 0);
  static const weft_go_options go = {.name = "weft watchdog", .stack_size = 256 * 1024};
  int err = wd.stop ? weft_go_with(watchdog_main, NULL, &go) : -ENOMEM;
  if (err) {
    weft_chan_release(wd.stop);
    wd.stop = NULL;
    atomic_store(&wd.running, false);
  }
  return err;
}

int weft_watchdog_stop(void)
{
  if (!atomic_load(&wd.running) || !wd.stop)
    return -ESRCH;
  weft_chan_close(wd.stop);
  while (!atomic_load_explicit(&wd.exited, memory_order_acquire))
    weft_sleep(1000000);
  weft_chan_release(wd.stop);
  wd.stop = NULL;
  atomic_store(&wd.running, false);
  return 0;
}
