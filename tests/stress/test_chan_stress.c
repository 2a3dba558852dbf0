/* test_chan_stress.c: thousands of coroutines doing random sends, receives, selects,
 * try-ops and closes on a few channels, on P = 1..4, with a printed seed (replay with
 * WEFT_TEST_SEED=...).
 *
 * Every value carries a unique id, a checksum and the index of the channel it was sent
 * on. The sender records each id's outcome (sent, -EPIPE, or not sent: timeout, -EAGAIN,
 * a select case not chosen); receivers count each id they get. At the end, with every
 * channel closed and drained:
 * - every id sent successfully was received exactly once, from the channel it went to;
 * - every id not sent (-EPIPE included) was never received;
 * - no value was corrupted; nothing is left buffered; nothing is left parked (run_weft's
 *   leak check) and nothing deadlocked (the run finishes).
 *
 * Half the channels are closed by a worker at a random point of the run; the others stay
 * open until the workers are done. One drainer per channel (blocking receives) and two
 * select drainers keep every channel moving, so blocking sends without a deadline always
 * complete or fail with -EPIPE.
 *
 * A second test, the close storm, runs thousands of short rounds: a fresh channel, four
 * senders and four receivers using every kind of operation, and a close at a random
 * moment, so that close races with parked senders, receivers, selects and deadlines far
 * more often than the few closes of the first test. The same ledger checks every id. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weft_test.h"

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#else
#define SANITIZED 0
#endif

#define NCHAN     8 /* channels 0..3 stay open until the end, 4..7 close mid-run */
#define NCLOSABLE 4
#define MAXCASES  5

enum status { UNSET = 0, SENT, SENT_EPIPE, NOT_SENT };

struct val {
  uint32_t id;
  uint32_t check;
  uint32_t chan; /* 12 bytes: not one of the channel's inlined copy sizes */
};

/* Every id's fate: what the sender saw, and how often it was received. */
struct ledger {
  long maxids;
  atomic_long next_id;
  atomic_uchar *status;   /* enum status per id */
  atomic_uchar *received; /* times received per id */
  atomic_long corrupt, wrong_chan;
  atomic_long n_sent, n_epipe, n_recv;
};

struct stress {
  struct ledger L;
  weft_chan *ch[NCHAN];
  atomic_int closed[NCHAN]; /* set by whoever closes it (once) */
  long close_at[NCHAN];     /* op count at which a worker closes it (closable ones) */
  int workers, ops;
  uint64_t seed;
  atomic_long ops_done;
  atomic_long bad_select, n_select, n_closed_by_worker;
  atomic_int next_worker;
  weft_wg workers_wg, drainers_wg;
};

static void ledger_init(struct ledger *L, long maxids)
{
  L->maxids = maxids;
  L->status = calloc((size_t)maxids, 1);
  L->received = calloc((size_t)maxids, 1);
}

static void ledger_fini(struct ledger *L)
{
  free((void *)L->status);
  free((void *)L->received);
}

static uint32_t checksum(uint32_t id, uint32_t chan)
{
  return (id * 2654435761u) ^ (chan * 40503u) ^ 0xa5a5a5a5u;
}

/* A fresh value for channel `chan` (any tag that names the channel). */
static struct val new_val(struct ledger *L, uint32_t chan)
{
  long id = atomic_fetch_add(&L->next_id, 1);
  if (id >= L->maxids) {
    fprintf(stderr, "stress: id table too small\n");
    abort();
  }
  return (struct val){(uint32_t)id, checksum((uint32_t)id, chan), chan};
}

static void set_status(struct ledger *L, const struct val *v, int rc)
{
  enum status st = rc == 0 ? SENT : rc == -EPIPE ? SENT_EPIPE : NOT_SENT;
  atomic_store(&L->status[v->id], (unsigned char)st);
  if (rc == 0)
    atomic_fetch_add(&L->n_sent, 1);
  else if (rc == -EPIPE)
    atomic_fetch_add(&L->n_epipe, 1);
}

/* A value came out of the channel tagged `chan`. */
static void got(struct ledger *L, const struct val *v, uint32_t chan)
{
  if ((long)v->id >= atomic_load(&L->next_id) || v->check != checksum(v->id, v->chan)) {
    atomic_fetch_add(&L->corrupt, 1);
    return;
  }
  if (v->chan != chan)
    atomic_fetch_add(&L->wrong_chan, 1);
  atomic_fetch_add(&L->received[v->id], 1);
  atomic_fetch_add(&L->n_recv, 1);
}

/* Check every id's outcome against what was received; assert the ledger is clean. */
static void ledger_verify(struct ledger *L)
{
  long ids = atomic_load(&L->next_id), problems = 0, shown = 0;
  for (long id = 0; id < ids; id++) {
    unsigned st = atomic_load(&L->status[id]);
    unsigned got_n = atomic_load(&L->received[id]);
    bool ok = st == SENT ? got_n == 1 : st != UNSET && got_n == 0;
    if (!ok) {
      problems++;
      if (shown++ < 10)
        fprintf(stderr, "id %ld: status %u, received %u times\n", id, st, got_n);
    }
  }
  fprintf(stderr,
          "  %ld ids: %ld sent, %ld -EPIPE, %ld received; corrupt %ld, wrong channel %ld, "
          "id problems %ld\n",
          ids, atomic_load(&L->n_sent), atomic_load(&L->n_epipe), atomic_load(&L->n_recv),
          atomic_load(&L->corrupt), atomic_load(&L->wrong_chan), problems);
  assert_int_equal(atomic_load(&L->corrupt), 0);
  assert_int_equal(atomic_load(&L->wrong_chan), 0);
  assert_int_equal(problems, 0);
  assert_int_equal(atomic_load(&L->n_sent), atomic_load(&L->n_recv));
}

static void close_once(struct stress *s, int k)
{
  int zero = 0;
  if (atomic_compare_exchange_strong(&s->closed[k], &zero, 1))
    weft_chan_close(s->ch[k]);
}

static int64_t short_deadline(uint64_t *rng)
{
  return weft_now() + (int64_t)(test_rand(rng) % 500000); /* up to 0.5 ms */
}

static int pick_chan(uint64_t *rng)
{
  return (int)(test_rand(rng) % NCHAN);
}

/* A select over 1..MAXCASES random cases (some nil); each send case gets its own id. */
static void do_select(struct stress *s, uint64_t *rng)
{
  weft_select_case cs[MAXCASES];
  struct val out[MAXCASES], in[MAXCASES];
  int chan[MAXCASES];
  int n = 1 + (int)(test_rand(rng) % MAXCASES);
  bool live_send = false;
  for (int i = 0; i < n; i++) {
    chan[i] = pick_chan(rng);
    weft_chan *ch = test_rand(rng) % 10 == 0 ? NULL : s->ch[chan[i]];
    if (test_rand(rng) % 2) {
      out[i] = new_val(&s->L, (uint32_t)chan[i]);
      cs[i] = (weft_select_case){.ch = ch, .dir = WEFT_SELECT_SEND, .elem = &out[i]};
      live_send |= ch != NULL;
    } else {
      cs[i] = (weft_select_case){.ch = ch, .dir = WEFT_SELECT_RECV, .elem = &in[i]};
    }
  }
  unsigned mode = (unsigned)(test_rand(rng) % 4);
  int flags = mode == 0 ? WEFT_SELECT_DEFAULT : 0;
  /* Without a deadline only when a send case can always finish (drainers receive until
   * the channel is closed, and close fails it). */
  int64_t deadline = mode == 1 && live_send ? WEFT_NO_DEADLINE : short_deadline(rng);
  int idx = weft_select(cs, (size_t)n, flags, deadline);
  atomic_fetch_add(&s->n_select, 1);
  if (idx >= n || (idx >= 0 && !cs[idx].ch) ||
      (idx < 0 && idx != -EAGAIN && idx != -ETIMEDOUT) ||
      (idx == -EAGAIN && !(flags & WEFT_SELECT_DEFAULT)))
    atomic_fetch_add(&s->bad_select, 1);
  for (int i = 0; i < n; i++) {
    if (cs[i].dir == WEFT_SELECT_SEND)
      set_status(&s->L, &out[i], i == idx ? cs[i].result : -EAGAIN);
    else if (i == idx && cs[i].result == 0)
      got(&s->L, &in[i], (uint32_t)chan[i]);
  }
}

static void do_op(struct stress *s, uint64_t *rng)
{
  unsigned op = (unsigned)(test_rand(rng) % 100);
  int k = pick_chan(rng);
  struct val v;
  if (op < 20) {
    /* Blocking sends to a channel known closed are mostly skipped: debug builds log each
     * one (try-sends and select sends to it go on at full rate). */
    if (atomic_load(&s->closed[k]) && test_rand(rng) % 8)
      return;
    v = new_val(&s->L, (uint32_t)k);
    int64_t deadline = op < 5 ? WEFT_NO_DEADLINE : short_deadline(rng);
    set_status(&s->L, &v, weft_chan_send(s->ch[k], &v, deadline));
  } else if (op < 40) {
    if (weft_chan_recv(s->ch[k], &v, short_deadline(rng)) == 0)
      got(&s->L, &v, (uint32_t)k);
  } else if (op < 50) {
    v = new_val(&s->L, (uint32_t)k);
    set_status(&s->L, &v, weft_chan_try_send(s->ch[k], &v));
  } else if (op < 60) {
    if (weft_chan_try_recv(s->ch[k], &v) == 0)
      got(&s->L, &v, (uint32_t)k);
  } else if (op < 90) {
    do_select(s, rng);
  } else if (op < 95) {
    weft_yield();
  } else {
    if (weft_chan_len(s->ch[k]) > weft_chan_cap(s->ch[k]))
      atomic_fetch_add(&s->L.corrupt, 1);
  }
  long n = atomic_fetch_add(&s->ops_done, 1);
  for (int c = NCHAN - NCLOSABLE; c < NCHAN; c++)
    if (n == s->close_at[c]) {
      close_once(s, c);
      atomic_fetch_add(&s->n_closed_by_worker, 1);
    }
}

static void worker(void *arg)
{
  struct stress *s = arg;
  int me = atomic_fetch_add(&s->next_worker, 1);
  uint64_t rng = (s->seed ^ ((uint64_t)me * 0x9e3779b97f4a7c15ull)) | 1;
  for (int i = 0; i < s->ops; i++)
    do_op(s, &rng);
  weft_wg_done(&s->workers_wg);
}

struct drainer_arg {
  struct stress *s;
  int chan;
};

static void drainer(void *arg)
{
  struct drainer_arg *d = arg;
  struct val v;
  while (weft_chan_recv(d->s->ch[d->chan], &v, WEFT_NO_DEADLINE) == 0)
    got(&d->s->L, &v, (uint32_t)d->chan);
  weft_wg_done(&d->s->drainers_wg);
}

/* Receives from every channel through selects with no deadline until all are closed. */
static void select_drainer(void *arg)
{
  struct stress *s = arg;
  weft_select_case cs[NCHAN];
  struct val in;
  int open = NCHAN;
  for (int k = 0; k < NCHAN; k++)
    cs[k] = (weft_select_case){.ch = s->ch[k], .dir = WEFT_SELECT_RECV, .elem = &in};
  while (open > 0) {
    int idx = weft_select(cs, NCHAN, 0, WEFT_NO_DEADLINE);
    if (idx < 0 || idx >= NCHAN || !cs[idx].ch) {
      atomic_fetch_add(&s->bad_select, 1);
      break;
    }
    if (cs[idx].result == -EPIPE) {
      cs[idx].ch = NULL;
      open--;
    } else {
      got(&s->L, &in, (uint32_t)idx);
    }
  }
  weft_wg_done(&s->drainers_wg);
}

static int stress_main(void *arg)
{
  struct stress *s = arg;
  size_t caps[NCHAN] = {0, 1, 4, 32, 0, 1, 4, 32};
  for (int k = 0; k < NCHAN; k++)
    s->ch[k] = weft_chan_new(sizeof(struct val), caps[k]);
  long total_ops = (long)s->workers * s->ops;
  uint64_t rng = s->seed | 1;
  for (int k = NCHAN - NCLOSABLE; k < NCHAN; k++)
    s->close_at[k] = total_ops / 10 + (long)(test_rand(&rng) % (uint64_t)(total_ops * 8 / 10));

  struct drainer_arg d[NCHAN];
  weft_wg_add(&s->drainers_wg, NCHAN + 2);
  for (int k = 0; k < NCHAN; k++) {
    d[k] = (struct drainer_arg){s, k};
    weft_go(drainer, &d[k]);
  }
  weft_go(select_drainer, s);
  weft_go(select_drainer, s);

  weft_wg_add(&s->workers_wg, s->workers);
  for (int i = 0; i < s->workers; i++)
    if (weft_go(worker, s) != 0)
      return -1;
  weft_wg_wait(&s->workers_wg);
  for (int k = 0; k < NCHAN; k++)
    close_once(s, k);
  weft_wg_wait(&s->drainers_wg);

  int bad = 0;
  for (int k = 0; k < NCHAN; k++) {
    if (weft_chan_len(s->ch[k]) != 0) {
      fprintf(stderr, "channel %d: %zu values left after draining\n", k,
              weft_chan_len(s->ch[k]));
      bad++;
    }
    weft_chan_release(s->ch[k]);
  }
  return bad;
}

static void test_chan_stress(void **state)
{
  (void)state;
  uint64_t seed = test_seed();
  long epipe_total = 0;
  for (int procs = 1; procs <= 4; procs++) {
    struct stress *s = calloc(1, sizeof *s);
    s->workers = SANITIZED ? 1000 : 5000;
    s->ops = SANITIZED ? 60 : 200;
    s->seed = seed ^ ((uint64_t)procs << 40);
    ledger_init(&s->L, (long)s->workers * s->ops * MAXCASES + 16);
    int rc = run_weft(procs, stress_main, s);
    fprintf(stderr, "P=%d: %ld selects, %ld channels closed by workers, bad select %ld\n",
            procs, atomic_load(&s->n_select), atomic_load(&s->n_closed_by_worker),
            atomic_load(&s->bad_select));
    assert_int_equal(rc, 0);
    assert_int_equal(atomic_load(&s->bad_select), 0);
    ledger_verify(&s->L);
    epipe_total += atomic_load(&s->L.n_epipe);
    ledger_fini(&s->L);
    free(s);
  }
  /* Channels closed mid-run saw sends fail: the -EPIPE path was exercised. */
  assert_true(epipe_total > 0);
}

/* ---- close storm ---- */

#define STORM_SIDE  4  /* senders, and receivers, per round */
#define STORM_SENDS 40 /* at most, per sender */
#define STORM_BATCH 48 /* rounds running at once */

struct storm {
  struct ledger L;
  int rounds;
  uint64_t seed;
  atomic_long leftover, bad;
};

struct round {
  struct storm *st;
  weft_chan *ch;
  uint32_t tag; /* the round's number: values name the channel they went to */
  weft_wg wg;   /* the round's senders and receivers */
  weft_wg *batch;
};

struct side {
  struct round *r;
  uint64_t rng;
};

static void storm_sender(void *arg)
{
  struct side *me = arg;
  struct round *r = me->r;
  for (int i = 0; i < STORM_SENDS; i++) {
    struct val v = new_val(&r->st->L, r->tag);
    unsigned mode = (unsigned)(test_rand(&me->rng) % 5);
    int rc;
    if (mode == 0) {
      rc = weft_chan_send(r->ch, &v, WEFT_NO_DEADLINE);
    } else if (mode == 1) {
      rc = weft_chan_send(r->ch, &v, short_deadline(&me->rng));
    } else if (mode == 2) {
      rc = weft_chan_try_send(r->ch, &v);
    } else {
      struct val in;
      weft_select_case cs[] = {{.ch = r->ch, .dir = WEFT_SELECT_SEND, .elem = &v},
                               {.ch = NULL, .dir = WEFT_SELECT_RECV, .elem = &in}};
      int64_t deadline = mode == 3 ? WEFT_NO_DEADLINE : short_deadline(&me->rng);
      int idx = weft_select(cs, 2, 0, deadline);
      rc = idx == 0 ? cs[0].result : idx;
      if (idx != 0 && idx != -ETIMEDOUT)
        atomic_fetch_add(&r->st->bad, 1);
    }
    set_status(&r->st->L, &v, rc);
    if (rc == -EPIPE)
      break;
    if (rc == -EAGAIN)
      weft_yield();
  }
  weft_wg_done(&r->wg);
}

static void storm_receiver(void *arg)
{
  struct side *me = arg;
  struct round *r = me->r;
  for (;;) {
    struct val v;
    unsigned mode = (unsigned)(test_rand(&me->rng) % 5);
    int rc;
    if (mode == 0) {
      rc = weft_chan_recv(r->ch, &v, WEFT_NO_DEADLINE);
    } else if (mode == 1) {
      rc = weft_chan_recv(r->ch, &v, short_deadline(&me->rng));
    } else if (mode == 2) {
      rc = weft_chan_try_recv(r->ch, &v);
    } else {
      struct val other;
      weft_select_case cs[] = {{.ch = NULL, .dir = WEFT_SELECT_SEND, .elem = &other},
                               {.ch = r->ch, .dir = WEFT_SELECT_RECV, .elem = &v}};
      int64_t deadline = mode == 3 ? WEFT_NO_DEADLINE : short_deadline(&me->rng);
      int idx = weft_select(cs, 2, 0, deadline);
      rc = idx == 1 ? cs[1].result : idx;
      if (idx != 1 && idx != -ETIMEDOUT)
        atomic_fetch_add(&r->st->bad, 1);
    }
    if (rc == 0)
      got(&r->st->L, &v, r->tag);
    else if (rc == -EPIPE)
      break;
    else if (rc == -EAGAIN)
      weft_yield();
  }
  weft_wg_done(&r->wg);
}

/* One round: spawn the sides, close at a random moment, wait, check nothing is left. */
static void storm_round(void *arg)
{
  struct round *r = arg;
  uint64_t rng = (r->st->seed ^ ((uint64_t)r->tag * 0x9e3779b97f4a7c15ull)) | 1;
  size_t caps[] = {0, 0, 1, 3};
  struct side sides[2 * STORM_SIDE];
  r->ch = weft_chan_new(sizeof(struct val), caps[test_rand(&rng) % 4]);
  weft_wg_add(&r->wg, 2 * STORM_SIDE);
  for (int i = 0; i < 2 * STORM_SIDE; i++) {
    sides[i] = (struct side){r, test_rand(&rng) | 1};
    weft_go(i % 2 ? storm_receiver : storm_sender, &sides[i]);
  }
  unsigned how = (unsigned)(test_rand(&rng) % 3);
  if (how == 0)
    weft_sleep((int64_t)(test_rand(&rng) % 300000));
  else
    for (unsigned n = (unsigned)(test_rand(&rng) % 30); n > 0; n--)
      weft_yield();
  weft_chan_close(r->ch);
  weft_wg_wait(&r->wg);
  if (weft_chan_len(r->ch) != 0)
    atomic_fetch_add(&r->st->leftover, 1);
  weft_chan_release(r->ch);
  weft_wg_done(r->batch);
}

static int storm_main(void *arg)
{
  struct storm *st = arg;
  struct round *rounds = calloc(STORM_BATCH, sizeof *rounds);
  for (int done = 0; done < st->rounds; done += STORM_BATCH) {
    weft_wg batch = WEFT_WG_INIT;
    int n = st->rounds - done < STORM_BATCH ? st->rounds - done : STORM_BATCH;
    weft_wg_add(&batch, n);
    for (int i = 0; i < n; i++) {
      rounds[i] = (struct round){.st = st, .tag = (uint32_t)(done + i), .batch = &batch};
      if (weft_go(storm_round, &rounds[i]) != 0)
        return -1;
    }
    weft_wg_wait(&batch);
  }
  free(rounds);
  return 0;
}

static void test_close_storm(void **state)
{
  (void)state;
  uint64_t seed = test_seed();
  for (int procs = 1; procs <= 4; procs++) {
    struct storm *st = calloc(1, sizeof *st);
    st->rounds = SANITIZED ? 400 : 8000;
    st->seed = seed ^ ((uint64_t)procs << 44) ^ 0x5707u;
    ledger_init(&st->L, (long)st->rounds * STORM_SIDE * STORM_SENDS + 16);
    int rc = run_weft(procs, storm_main, st);
    fprintf(stderr, "close storm P=%d: %d rounds, leftover %ld, bad %ld\n", procs, st->rounds,
            atomic_load(&st->leftover), atomic_load(&st->bad));
    assert_int_equal(rc, 0);
    assert_int_equal(atomic_load(&st->leftover), 0);
    assert_int_equal(atomic_load(&st->bad), 0);
    ledger_verify(&st->L);
    assert_true(atomic_load(&st->L.n_epipe) > 0);
    ledger_fini(&st->L);
    free(st);
  }
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_chan_stress),
      cmocka_unit_test(test_close_storm),
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL, 0);
}
