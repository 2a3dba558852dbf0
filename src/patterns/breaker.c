/* breaker.c: circuit breakers with gobreaker's semantics (weft/breaker.h).
 *
 * State (guarded by b->mu, a pthread mutex: a leaf lock, held for a few dozen
 * instructions; nothing parks under it, and the only calls made under it are the user's
 * hooks, which must not call back into the breaker, and lock-free metric updates):
 *
 *   CLOSED --trip--> OPEN --(now >= expiry, seen lazily)--> HALF_OPEN --fail--> OPEN
 *      ^                                                        |
 *      +------------------- enough successes -------------------+
 *
 * Invariants (breaker_check, debug builds): expiry is 0 in HALF_OPEN, the open deadline in
 * OPEN, 0 or the interval's end in CLOSED; counts describe the current generation only;
 * in HALF_OPEN, requests - exclusions <= max_requests; the window is empty outside CLOSED.
 *
 * Every state change goes through set_state, which asserts the transition is legal, starts
 * a new generation and calls the hook. Results carry the generation that admitted them
 * and are dropped if it has moved on, so a late result never counts against a state it
 * did not see.
 *
 * Rejected alternative: a timer that half-opens an open breaker. It would need a
 * coroutine or a runtime timer per breaker and a way to cancel it on free; the lazy check
 * costs one comparison on the next call and is what gobreaker does. */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "breaker_window.h"
#include "weft/breaker.h"

#define NS_PER_S 1000000000LL

enum { RESULT_SUCCESS, RESULT_FAILURE, RESULT_REJECTED, RESULT_EXCLUDED, RESULT_N };

static const char *const result_names[RESULT_N] = {"success", "failure", "rejected",
                                                   "excluded"};

struct weft_breaker {
  atomic_int refs;                 /* atomic: references; the last release frees */
  char *name;                      /* immutable after new */
  weft_breaker_options opts;       /* immutable, defaults resolved; name points at name */
  pthread_mutex_t mu;              /* guards everything below */
  weft_breaker_state state;        /* guarded by mu */
  uint64_t generation;             /* guarded by mu: bumped on every new generation */
  weft_breaker_counts counts;      /* guarded by mu: the current generation's */
  int64_t expiry;                  /* guarded by mu: see the invariants */
  uint64_t half_slow;              /* guarded by mu: slow results among half-open probes */
  struct weft__breaker_window win; /* guarded by mu */
  /* Metric children (NULL without a registry): borrowed from the registry, lock-free. */
  weft_gauge *m_state;
  weft_counter *m_calls[RESULT_N];
  weft_counter *m_transitions[3]; /* indexed by the state changed to */
};

const char *weft_breaker_state_name(weft_breaker_state s)
{
  switch (s) {
  case WEFT_BREAKER_CLOSED:
    return "closed";
  case WEFT_BREAKER_HALF_OPEN:
    return "half_open";
  case WEFT_BREAKER_OPEN:
    return "open";
  }
  return "unknown";
}

static void breaker_check(const weft_breaker *b)
{
#ifndef NDEBUG
  const weft_breaker_counts *c = &b->counts;
  assert(c->total_successes + c->total_failures + c->total_exclusions <= c->requests);
  switch (b->state) {
  case WEFT_BREAKER_CLOSED:
    assert(b->opts.interval > 0 || b->expiry == 0);
    break;
  case WEFT_BREAKER_HALF_OPEN:
    assert(b->expiry == 0);
    assert(c->requests - c->total_exclusions <= b->opts.max_requests);
    break;
  case WEFT_BREAKER_OPEN:
    assert(c->requests == 0);
    break;
  default:
    abort();
  }
  assert(b->state == WEFT_BREAKER_CLOSED || b->win.calls == 0);
#else
  (void)b;
#endif
}

/* ---- the state machine (b->mu held) ---- */

/* now + d, saturating: a huge timeout means "very long", never a time in the past. */
static int64_t add_sat(int64_t now, int64_t d)
{
  return d > INT64_MAX - now ? INT64_MAX : now + d;
}

static void new_generation(weft_breaker *b, int64_t now)
{
  b->generation++;
  memset(&b->counts, 0, sizeof b->counts);
  b->half_slow = 0;
  switch (b->state) {
  case WEFT_BREAKER_CLOSED:
    b->expiry = b->opts.interval > 0 ? add_sat(now, b->opts.interval) : 0;
    break;
  case WEFT_BREAKER_OPEN:
    b->expiry = add_sat(now, b->opts.timeout);
    break;
  case WEFT_BREAKER_HALF_OPEN:
    b->expiry = 0;
    break;
  }
}

static bool transition_is_legal(weft_breaker_state from, weft_breaker_state to)
{
  return (from == WEFT_BREAKER_CLOSED && to == WEFT_BREAKER_OPEN) ||
         (from == WEFT_BREAKER_OPEN && to == WEFT_BREAKER_HALF_OPEN) ||
         (from == WEFT_BREAKER_HALF_OPEN && to != WEFT_BREAKER_HALF_OPEN);
}

/* set_state: the one place the state changes. The hook runs under the lock, so hooks see
 * the changes one at a time and in order (documented: it must not call back). */
static void set_state(weft_breaker *b, weft_breaker_state to, int64_t now)
{
  weft_breaker_state from = b->state;
  if (!transition_is_legal(from, to)) { /* a broken invariant: never the caller's doing */
    fprintf(stderr, "weft: breaker %s: illegal transition %s -> %s\n", b->name,
            weft_breaker_state_name(from), weft_breaker_state_name(to));
    abort();
  }
  b->state = to;
  new_generation(b, now);
  weft__breaker_window_clear(&b->win);
  weft_gauge_set(b->m_state, (double)to);
  weft_counter_inc(b->m_transitions[to]);
  if (b->opts.on_state_change)
    b->opts.on_state_change(b->name, from, to, b->opts.arg);
}

/* current_state: apply the lazy, time-driven changes: an interval's end while closed, the
 * open timeout. */
static weft_breaker_state current_state(weft_breaker *b, int64_t now)
{
  if (b->state == WEFT_BREAKER_CLOSED && b->expiry != 0 && now >= b->expiry)
    new_generation(b, now);
  else if (b->state == WEFT_BREAKER_OPEN && now >= b->expiry)
    set_state(b, WEFT_BREAKER_HALF_OPEN, now);
  return b->state;
}

static bool has_window(const weft_breaker *b)
{
  return b->win.cfg.type != WEFT_BREAKER_WINDOW_NONE;
}

/* Closed: the result is counted (and recorded in the window); trip if a policy says so. */
static void on_result_closed(weft_breaker *b, bool failed, bool slow, int64_t now)
{
  bool trip = false;
  if (failed && b->opts.ready_to_trip)
    trip = b->opts.ready_to_trip(&b->counts, b->opts.arg);
  else if (failed && b->opts.trip_after_failures > 0)
    trip = b->counts.consecutive_failures >= b->opts.trip_after_failures;
  if (has_window(b)) {
    weft__breaker_window_record(&b->win, now, failed, slow);
    trip = trip || weft__breaker_window_should_trip(&b->win, now);
  }
  if (trip)
    set_state(b, WEFT_BREAKER_OPEN, now);
}

/* Half-open: gobreaker's rule, or with a window resilience4j's verdict on the probes. */
static void on_result_half_open(weft_breaker *b, bool failed, bool slow, int64_t now)
{
  const weft_breaker_counts *c = &b->counts;
  if (!has_window(b)) {
    if (failed)
      set_state(b, WEFT_BREAKER_OPEN, now);
    else if (c->consecutive_successes >= b->opts.max_requests)
      set_state(b, WEFT_BREAKER_CLOSED, now);
    return;
  }
  b->half_slow += slow;
  uint64_t judged = c->total_successes + c->total_failures;
  if (judged < b->opts.max_requests)
    return;
  bool reopen = weft__breaker_rates_trip(&b->win.cfg, judged, c->total_failures, b->half_slow);
  set_state(b, reopen ? WEFT_BREAKER_OPEN : WEFT_BREAKER_CLOSED, now);
}

/* ---- the public calls ---- */

int weft_breaker_allow(weft_breaker *b, weft_breaker_ticket *ticket)
{
  if (!b || !ticket)
    return -EINVAL;
  int64_t now = weft_clock_now(b->opts.clock);
  int rc = 0;
  pthread_mutex_lock(&b->mu);
  weft_breaker_state st = current_state(b, now);
  weft_breaker_counts *c = &b->counts;
  if (st == WEFT_BREAKER_OPEN)
    rc = -WEFT_EOPEN;
  else if (st == WEFT_BREAKER_HALF_OPEN &&
           c->requests - c->total_exclusions >= b->opts.max_requests)
    rc = -WEFT_ETOOMANY;
  if (rc == 0) {
    c->requests++;
    ticket->generation = b->generation;
    ticket->start = now;
  }
  breaker_check(b);
  pthread_mutex_unlock(&b->mu);
  if (rc != 0)
    weft_counter_inc(b->m_calls[RESULT_REJECTED]);
  return rc;
}

static int classify(const weft_breaker *b, int err)
{
  if (b->opts.is_excluded && b->opts.is_excluded(err, b->opts.arg))
    return RESULT_EXCLUDED;
  bool ok = b->opts.is_successful ? b->opts.is_successful(err, b->opts.arg) : err == 0;
  return ok ? RESULT_SUCCESS : RESULT_FAILURE;
}

static void count_result(weft_breaker_counts *c, int result)
{
  if (result == RESULT_EXCLUDED) {
    c->total_exclusions++;
  } else if (result == RESULT_SUCCESS) {
    c->total_successes++;
    c->consecutive_successes++;
    c->consecutive_failures = 0;
  } else {
    c->total_failures++;
    c->consecutive_failures++;
    c->consecutive_successes = 0;
  }
}

void weft_breaker_done(weft_breaker *b, const weft_breaker_ticket *ticket, int err)
{
  if (!b || !ticket)
    return;
  int64_t now = weft_clock_now(b->opts.clock);
  pthread_mutex_lock(&b->mu);
  /* Classified under the lock, so the callbacks never run concurrently for one breaker. */
  int result = classify(b, err);
  weft_breaker_state st = current_state(b, now);
  if (ticket->generation == b->generation) {
    count_result(&b->counts, result);
    if (result != RESULT_EXCLUDED) {
      bool failed = result == RESULT_FAILURE;
      bool slow = has_window(b) && now - ticket->start >= b->win.cfg.slow_call_duration;
      if (st == WEFT_BREAKER_CLOSED)
        on_result_closed(b, failed, slow, now);
      else if (st == WEFT_BREAKER_HALF_OPEN)
        on_result_half_open(b, failed, slow, now);
    }
  }
  breaker_check(b);
  pthread_mutex_unlock(&b->mu);
  weft_counter_inc(b->m_calls[result]);
}

int weft_breaker_execute(weft_breaker *b, int (*fn)(void *arg), void *arg)
{
  if (!b || !fn)
    return -EINVAL;
  weft_breaker_ticket t;
  int rc = weft_breaker_allow(b, &t);
  if (rc != 0)
    return rc;
  rc = fn(arg); /* no lock held: fn may park */
  weft_breaker_done(b, &t, rc);
  return rc;
}

weft_breaker_state weft_breaker_state_get(weft_breaker *b)
{
  if (!b)
    return WEFT_BREAKER_CLOSED;
  int64_t now = weft_clock_now(b->opts.clock);
  pthread_mutex_lock(&b->mu);
  weft_breaker_state st = current_state(b, now);
  pthread_mutex_unlock(&b->mu);
  return st;
}

weft_breaker_counts weft_breaker_counts_get(weft_breaker *b)
{
  if (!b)
    return (weft_breaker_counts){0};
  int64_t now = weft_clock_now(b->opts.clock);
  pthread_mutex_lock(&b->mu);
  current_state(b, now);
  weft_breaker_counts c = b->counts;
  pthread_mutex_unlock(&b->mu);
  return c;
}

const char *weft_breaker_name(const weft_breaker *b)
{
  return b ? b->name : "";
}

/* ---- creation ---- */

/* breaker_resolve: fill opts' defaults; -EINVAL if they are invalid. */
static int breaker_resolve(weft_breaker_options *o)
{
  if (o->max_requests == 0)
    o->max_requests = 1;
  if (o->interval < 0)
    o->interval = 0;
  if (o->timeout <= 0)
    o->timeout = 60 * NS_PER_S;
  /* gobreaker's default: trip when consecutive failures > 5; with a window, none. */
  if (!o->ready_to_trip && o->trip_after_failures == 0 &&
      o->window.type == WEFT_BREAKER_WINDOW_NONE)
    o->trip_after_failures = 6;
  if (!o->clock)
    o->clock = weft_clock_real();
  return weft__breaker_window_resolve(&o->window);
}

static int metrics_init(weft_breaker *b, weft_metrics_registry *reg)
{
  static const char *const l_state[] = {"breaker"};
  static const char *const l_calls[] = {"breaker", "result"};
  static const char *const l_trans[] = {"breaker", "to"};
  weft_gauge_vec *gv = NULL;
  weft_counter_vec *cv = NULL, *tv = NULL;
  /* -EEXIST with a family: another breaker made it first; share it. */
  weft_gauge_vec_new(reg, "weft_breaker_state",
                     "Circuit breaker state: 0 closed, 1 half-open, 2 open.", 1, l_state, &gv);
  weft_counter_vec_new(reg, "weft_breaker_calls_total",
                       "Calls through a circuit breaker by result.", 2, l_calls, &cv);
  weft_counter_vec_new(reg, "weft_breaker_transitions_total",
                       "Circuit breaker state changes by the state entered.", 2, l_trans, &tv);
  if (!gv || !cv || !tv)
    return -ENOMEM;
  b->m_state = weft_gauge_vec_with(gv, b->name);
  for (int r = 0; r < RESULT_N; r++)
    b->m_calls[r] = weft_counter_vec_with(cv, b->name, result_names[r]);
  for (int s = 0; s < 3; s++)
    b->m_transitions[s] = weft_counter_vec_with(tv, b->name, weft_breaker_state_name(s));
  if (!b->m_state)
    return -ENOMEM;
  weft_gauge_set(b->m_state, WEFT_BREAKER_CLOSED);
  return 0;
}

weft_breaker *weft_breaker_new(const weft_breaker_options *opts)
{
  weft_breaker *b = calloc(1, sizeof *b);
  if (!b)
    return NULL;
  if (opts)
    b->opts = *opts;
  if (breaker_resolve(&b->opts) != 0)
    goto err_free;
  b->name = strdup(opts && opts->name ? opts->name : "");
  if (!b->name)
    goto err_free;
  b->opts.name = b->name;
  if (weft__breaker_window_init(&b->win, &b->opts.window) != 0)
    goto err_free_name;
  if (b->opts.metrics && metrics_init(b, b->opts.metrics) != 0)
    goto err_free_window;
  pthread_mutex_init(&b->mu, NULL);
  atomic_init(&b->refs, 1);
  b->state = WEFT_BREAKER_CLOSED;
  new_generation(b, weft_clock_now(b->opts.clock));
  return b;

err_free_window:
  weft__breaker_window_destroy(&b->win);
err_free_name:
  free(b->name);
err_free:
  free(b);
  return NULL;
}

weft_breaker *weft_breaker_retain(weft_breaker *b)
{
  if (b)
    atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
  return b;
}

void weft_breaker_release(weft_breaker *b)
{
  if (!b || atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1)
    return;
  pthread_mutex_destroy(&b->mu);
  weft__breaker_window_destroy(&b->win);
  free(b->name);
  free(b);
}

/* ---- the registry ----
 * A hash table of breakers keyed by name, chained, doubled when it holds twice as many
 * breakers as buckets. reg->lock (a pthread rwlock, a leaf: only the breaker's creation,
 * which takes the metrics registry's lock, happens under it) guards buckets, nbuckets and
 * len; each entry holds one reference to its breaker. Lookups of existing keys share the
 * read lock; a miss retakes it for writing and looks again, so concurrent first uses of a
 * key create one breaker. */

struct registry_entry {
  struct registry_entry *next; /* guarded by lock */
  uint64_t hash;               /* immutable */
  weft_breaker *b;             /* immutable; its name is the key */
};

struct weft_breaker_registry {
  weft_breaker_options tmpl;       /* immutable: resolved, name NULL */
  pthread_rwlock_t lock;           /* guards everything below */
  struct registry_entry **buckets; /* guarded by lock */
  size_t nbuckets;                 /* guarded by lock: a power of two */
  size_t len;                      /* guarded by lock */
};

static uint64_t hash_key(const char *s)
{
  uint64_t h = 1469598103934665603ULL; /* FNV-1a */
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ULL;
  return h;
}

weft_breaker_registry *weft_breaker_registry_new(const weft_breaker_options *tmpl)
{
  weft_breaker_registry *reg = calloc(1, sizeof *reg);
  if (!reg)
    return NULL;
  if (tmpl)
    reg->tmpl = *tmpl;
  reg->tmpl.name = NULL;
  reg->nbuckets = 16;
  reg->buckets = calloc(reg->nbuckets, sizeof *reg->buckets);
  if (!reg->buckets || breaker_resolve(&reg->tmpl) != 0)
    goto err_free;
  pthread_rwlock_init(&reg->lock, NULL);
  return reg;

err_free:
  free(reg->buckets);
  free(reg);
  return NULL;
}

static weft_breaker *registry_find(weft_breaker_registry *reg, const char *key, uint64_t h)
{
  for (struct registry_entry *e = reg->buckets[h & (reg->nbuckets - 1)]; e; e = e->next)
    if (e->hash == h && strcmp(e->b->name, key) == 0)
      return e->b;
  return NULL;
}

/* Double the table (lock held for writing); on out of memory keep the old one. */
static void registry_grow(weft_breaker_registry *reg)
{
  size_t n = reg->nbuckets * 2;
  struct registry_entry **nb = calloc(n, sizeof *nb);
  if (!nb)
    return;
  for (size_t i = 0; i < reg->nbuckets; i++) {
    for (struct registry_entry *e = reg->buckets[i], *next; e; e = next) {
      next = e->next;
      e->next = nb[e->hash & (n - 1)];
      nb[e->hash & (n - 1)] = e;
    }
  }
  free(reg->buckets);
  reg->buckets = nb;
  reg->nbuckets = n;
}

/* Create key's breaker (lock held for writing, key known to be absent). */
static weft_breaker *registry_add(weft_breaker_registry *reg, const char *key, uint64_t h)
{
  struct registry_entry *e = malloc(sizeof *e);
  if (!e)
    return NULL;
  weft_breaker_options o = reg->tmpl;
  o.name = key;
  e->b = weft_breaker_new(&o);
  if (!e->b) {
    free(e);
    return NULL;
  }
  e->hash = h;
  e->next = reg->buckets[h & (reg->nbuckets - 1)];
  reg->buckets[h & (reg->nbuckets - 1)] = e;
  if (++reg->len > 2 * reg->nbuckets)
    registry_grow(reg);
  return e->b;
}

weft_breaker *weft_breaker_registry_get(weft_breaker_registry *reg, const char *key)
{
  if (!reg || !key)
    return NULL;
  uint64_t h = hash_key(key);
  pthread_rwlock_rdlock(&reg->lock);
  weft_breaker *b = registry_find(reg, key, h);
  pthread_rwlock_unlock(&reg->lock);
  if (b)
    return b;
  pthread_rwlock_wrlock(&reg->lock);
  b = registry_find(reg, key, h); /* someone may have created it meanwhile */
  if (!b)
    b = registry_add(reg, key, h);
  pthread_rwlock_unlock(&reg->lock);
  return b;
}

size_t weft_breaker_registry_len(weft_breaker_registry *reg)
{
  if (!reg)
    return 0;
  pthread_rwlock_rdlock(&reg->lock);
  size_t n = reg->len;
  pthread_rwlock_unlock(&reg->lock);
  return n;
}

void weft_breaker_registry_free(weft_breaker_registry *reg)
{
  if (!reg)
    return;
  for (size_t i = 0; i < reg->nbuckets; i++) {
    for (struct registry_entry *e = reg->buckets[i], *next; e; e = next) {
      next = e->next;
      weft_breaker_release(e->b);
      free(e);
    }
  }
  pthread_rwlock_destroy(&reg->lock);
  free(reg->buckets);
  free(reg);
}
