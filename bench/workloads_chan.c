/* workloads_chan.c: channel, select, mutex and cancellation workloads (issues 3 and 4),
 * written to match shared/peers/go/gobench/main.go line for line: int64_t elements (Go's
 * int), the same channel capacities, producers and consumers. */
#include <stdatomic.h>

#include <weft/weft.h>

#include "bench.h"

static int64_t sink; /* defeats dead-code elimination, as Go's sink */

static void must(int rc, const char *what)
{
  if (rc != 0)
    bench_die("%s failed: %d", what, rc);
}

static weft_chan *new_chan(size_t cap)
{
  weft_chan *ch = weft_chan_new(sizeof(int64_t), cap);
  if (!ch)
    bench_die("weft_chan_new failed");
  return ch;
}

/* ---- chan_pingpong_1p / _2p: an int bounced over two unbuffered channels ---- */

struct pingpong {
  int64_t n;
  weft_chan *ping, *pong;
  weft_wg wg;
};

static void pinger(void *arg)
{
  struct pingpong *p = arg;
  for (int64_t i = 0; i < p->n; i++) {
    int64_t v = i;
    must(weft_chan_send(p->ping, &v, WEFT_NO_DEADLINE), "send");
    must(weft_chan_recv(p->pong, &v, WEFT_NO_DEADLINE), "recv");
  }
  weft_wg_done(&p->wg);
}

static void ponger(void *arg)
{
  struct pingpong *p = arg;
  for (int64_t i = 0; i < p->n; i++) {
    int64_t v;
    must(weft_chan_recv(p->ping, &v, WEFT_NO_DEADLINE), "recv");
    v++;
    must(weft_chan_send(p->pong, &v, WEFT_NO_DEADLINE), "send");
  }
  weft_wg_done(&p->wg);
}

int64_t bench_pingpong(int64_t n, int64_t *ops)
{
  struct pingpong p = {.n = n, .ping = new_chan(0), .pong = new_chan(0), .wg = WEFT_WG_INIT};
  weft_wg_add(&p.wg, 2);
  int64_t t0 = bench_now();
  must(weft_go(pinger, &p), "weft_go");
  must(weft_go(ponger, &p), "weft_go");
  weft_wg_wait(&p.wg);
  int64_t elapsed = bench_now() - t0;
  weft_chan_release(p.ping);
  weft_chan_release(p.pong);
  *ops = n;
  return elapsed;
}

/* ---- chan_spsc and chan_mpmc: a channel of capacity 1024 ---- */

struct flow {
  int64_t per; /* items per producer and per consumer */
  weft_chan *ch;
  weft_mutex mu;
  weft_wg wg;
};

static void producer(void *arg)
{
  struct flow *f = arg;
  for (int64_t i = 0; i < f->per; i++)
    must(weft_chan_send(f->ch, &i, WEFT_NO_DEADLINE), "send");
  weft_wg_done(&f->wg);
}

static void consumer(void *arg)
{
  struct flow *f = arg;
  int64_t s = 0, v;
  for (int64_t i = 0; i < f->per; i++) {
    must(weft_chan_recv(f->ch, &v, WEFT_NO_DEADLINE), "recv");
    s += v;
  }
  weft_mutex_lock(&f->mu);
  sink += s;
  weft_mutex_unlock(&f->mu);
  weft_wg_done(&f->wg);
}

static int64_t run_flow(int64_t per, int pairs)
{
  struct flow f = {.per = per, .ch = new_chan(1024), .mu = WEFT_MUTEX_INIT, .wg = WEFT_WG_INIT};
  weft_wg_add(&f.wg, 2 * pairs);
  int64_t t0 = bench_now();
  for (int i = 0; i < pairs; i++)
    must(weft_go(producer, &f), "weft_go");
  for (int i = 0; i < pairs; i++)
    must(weft_go(consumer, &f), "weft_go");
  weft_wg_wait(&f.wg);
  int64_t elapsed = bench_now() - t0;
  weft_chan_release(f.ch);
  return elapsed;
}

int64_t bench_spsc(int64_t n, int64_t *ops)
{
  *ops = n;
  return run_flow(n, 1);
}

int64_t bench_mpmc(int64_t n, int64_t *ops)
{
  *ops = n / 4 * 4;
  return run_flow(n / 4, 4);
}

/* ---- select4: 4 producers on their own channels (capacity 128), one selecting consumer */

struct sel4 {
  int64_t per;
  weft_chan *ch[4];
  weft_wg wg;
  int next; /* which channel the next producer feeds; spawner only */
};

struct sel4_producer {
  struct sel4 *s;
  weft_chan *ch;
};

static void sel4_producer(void *arg)
{
  struct sel4_producer *p = arg;
  for (int64_t i = 0; i < p->s->per; i++)
    must(weft_chan_send(p->ch, &i, WEFT_NO_DEADLINE), "send");
  weft_wg_done(&p->s->wg);
}

static void sel4_consumer(void *arg)
{
  struct sel4 *s = arg;
  int64_t v, sum = 0;
  weft_select_case cases[4];
  for (int i = 0; i < 4; i++)
    cases[i] = (weft_select_case){.ch = s->ch[i], .dir = WEFT_SELECT_RECV, .elem = &v};
  for (int64_t got = 0; got < 4 * s->per; got++) {
    if (weft_select(cases, 4, 0, WEFT_NO_DEADLINE) < 0)
      bench_die("select failed");
    sum += v;
  }
  sink += sum;
  weft_wg_done(&s->wg);
}

int64_t bench_select4(int64_t n, int64_t *ops)
{
  struct sel4 s = {.per = n / 4, .wg = WEFT_WG_INIT};
  struct sel4_producer prod[4];
  for (int i = 0; i < 4; i++) {
    s.ch[i] = new_chan(128);
    prod[i] = (struct sel4_producer){&s, s.ch[i]};
  }
  weft_wg_add(&s.wg, 5);
  int64_t t0 = bench_now();
  for (int i = 0; i < 4; i++)
    must(weft_go(sel4_producer, &prod[i]), "weft_go");
  must(weft_go(sel4_consumer, &s), "weft_go");
  weft_wg_wait(&s.wg);
  int64_t elapsed = bench_now() - t0;
  for (int i = 0; i < 4; i++)
    weft_chan_release(s.ch[i]);
  *ops = s.per * 4;
  return elapsed;
}

/* ---- mutex_contended: 8 coroutines each do n/8 lock/increment/unlock ---- */

struct contended {
  int64_t per;
  weft_mutex mu;
  int64_t counter; /* guarded by mu */
  weft_wg wg;
};

static void locker(void *arg)
{
  struct contended *c = arg;
  for (int64_t i = 0; i < c->per; i++) {
    weft_mutex_lock(&c->mu);
    c->counter++;
    weft_mutex_unlock(&c->mu);
  }
  weft_wg_done(&c->wg);
}

int64_t bench_mutex_contended(int64_t n, int64_t *ops)
{
  struct contended c = {.per = n / 8, .mu = WEFT_MUTEX_INIT, .wg = WEFT_WG_INIT};
  weft_wg_add(&c.wg, 8);
  int64_t t0 = bench_now();
  for (int i = 0; i < 8; i++)
    must(weft_go(locker, &c), "weft_go");
  weft_wg_wait(&c.wg);
  int64_t elapsed = bench_now() - t0;
  if (c.counter != c.per * 8)
    bench_die("mutex_contended: lost updates");
  *ops = c.per * 8;
  return elapsed;
}

/* ---- cancel_fanout: 10,000 coroutines block on one context's done signal ---- */

#define FANOUT 10000

struct fanout {
  weft_ctx *ctx;
  weft_wg ready, done;
};

static void fanout_waiter(void *arg)
{
  struct fanout *f = arg;
  weft_wg_done(&f->ready);
  weft_ctx_wait(f->ctx, WEFT_NO_DEADLINE);
  weft_wg_done(&f->done);
}

double bench_cancel_fanout(void)
{
  struct fanout f = {.ready = WEFT_WG_INIT, .done = WEFT_WG_INIT};
  f.ctx = weft_ctx_with_cancel(NULL);
  if (!f.ctx || !weft_ctx_done(f.ctx))
    bench_die("weft_ctx_with_cancel failed");
  weft_wg_add(&f.ready, FANOUT);
  weft_wg_add(&f.done, FANOUT);
  for (int i = 0; i < FANOUT; i++)
    must(weft_go(fanout_waiter, &f), "weft_go");
  weft_wg_wait(&f.ready);
  weft_sleep(20 * 1000000); /* let the last ones park, as the Go peer does */
  int64_t t0 = bench_now();
  weft_ctx_cancel(f.ctx);
  weft_wg_wait(&f.done);
  double us = (double)(bench_now() - t0) / 1e3;
  weft_ctx_release(f.ctx);
  return us;
}
