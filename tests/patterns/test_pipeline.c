/* test_pipeline.c: pipeline stages (weft/pipeline.h). */
#include <stdlib.h>
#include <string.h>

#include "coro_check.h"
#include "weft/pipeline.h"
#include "weft_test.h"

/* ---- items: counted while alive, so leaks and the in-flight bound are visible ---- */

struct item {
  long id;
};

static atomic_long alive;     /* items allocated and not freed */
static atomic_long alive_max; /* the most alive at once */

static struct item *item_new(long id)
{
  struct item *it = malloc(sizeof *it);
  it->id = id;
  long n = atomic_fetch_add(&alive, 1) + 1;
  long m = atomic_load(&alive_max);
  while (n > m && !atomic_compare_exchange_weak(&alive_max, &m, n))
    ;
  return it;
}

static void item_free(void *p)
{
  atomic_fetch_sub(&alive, 1);
  free(p);
}

static void items_reset(void)
{
  atomic_store(&alive, 0);
  atomic_store(&alive_max, 0);
}

/* ---- stage functions ---- */

struct source_cfg {
  long first;       /* ids first .. first + count - 1 */
  long count;       /* < 0: until the context is done */
  int64_t sleep_ns; /* between items */
  atomic_long made; /* items emitted successfully */
};

static int count_source(weft_ctx *ctx, weft_pipeline_emitter *out, void *arg)
{
  struct source_cfg *c = arg;
  for (long i = 0; c->count < 0 || i < c->count; i++) {
    if (weft_ctx_err(ctx))
      return weft_ctx_err(ctx);
    int rc = weft_pipeline_emit(out, item_new(c->first + i));
    if (rc != 0)
      return rc;
    atomic_fetch_add(&c->made, 1);
    if (c->sleep_ns)
      weft_sleep(c->sleep_ns);
    else if (i % 64 == 63)
      weft_yield();
  }
  return 0;
}

/* Map behaviour, chosen through arg. */
struct map_cfg {
  long fail_at;    /* id that makes the stage fail with -EIO (-1: never) */
  int64_t slow_ns; /* delay for slow items */
  long slow_every; /* every slow_every-th id is slow (0: none) */
  uint64_t seed;   /* random delays up to rand_ns, when rand_ns > 0 */
  int64_t rand_ns;
  int copies_mod; /* > 0: emit id % copies_mod copies (flat map) */
};

static int64_t map_delay(struct map_cfg *c, long id)
{
  if (c->slow_every && id % c->slow_every == 0)
    return c->slow_ns;
  if (c->rand_ns > 0) {
    uint64_t s = c->seed ^ (uint64_t)(id * 2654435761u) ^ 0x9e3779b97f4a7c15u;
    return (int64_t)(test_rand(&s) % (uint64_t)c->rand_ns);
  }
  return 0;
}

static int map_fn(weft_ctx *ctx, void *in, weft_pipeline_emitter *out, void *arg)
{
  struct map_cfg *c = arg;
  struct item *it = in;
  if (c && it->id == c->fail_at) {
    item_free(it);
    return -EIO;
  }
  int64_t d = c ? map_delay(c, it->id) : 0;
  if (d > 0)
    weft_sleep(d);
  if (c && c->copies_mod > 0) {
    int n = (int)(it->id % c->copies_mod);
    for (int i = 0; i < n; i++) {
      int rc = weft_pipeline_emit(out, item_new(it->id));
      if (rc != 0) {
        item_free(it);
        return rc;
      }
    }
    item_free(it);
    return 0;
  }
  return weft_pipeline_emit(out, it);
}

/* The sink records what arrives. */
struct sink_cfg {
  long n;           /* ids 0 .. n-1 expected (seen[] sized n) */
  atomic_int *seen; /* times each id arrived */
  atomic_long got;  /* items received */
  long last;        /* last id received (single worker, ordered checks) */
  atomic_long order_errors;
  int check_order;  /* 1: ids must increase (with copies: not decrease) */
  int64_t sleep_ns; /* per item */
  long fail_at;     /* id that makes the sink fail with -EIO (-1: never) */
};

static int sink_fn(weft_ctx *ctx, void *in, void *arg)
{
  struct sink_cfg *c = arg;
  struct item *it = in;
  long id = it->id;
  item_free(it);
  if (id == c->fail_at)
    return -EIO;
  if (id >= 0 && id < c->n)
    atomic_fetch_add(&c->seen[id], 1);
  if (c->check_order && id < atomic_load(&c->last))
    atomic_fetch_add(&c->order_errors, 1);
  atomic_store(&c->last, id);
  atomic_fetch_add(&c->got, 1);
  if (c->sleep_ns)
    weft_sleep(c->sleep_ns);
  return 0;
}

static void sink_init(struct sink_cfg *c, long n)
{
  memset(c, 0, sizeof *c);
  c->n = n;
  c->seen = calloc((size_t)n, sizeof *c->seen);
  c->last = -1;
  c->fail_at = -1;
}

static int check_exactly_once(struct sink_cfg *c)
{
  int bad = 0;
  for (long i = 0; i < c->n; i++)
    if (atomic_load(&c->seen[i]) != 1)
      bad++;
  return bad;
}

/* Options helpers. */
static weft_pipeline_stage_options stage(const char *name, int workers, int flags, size_t cap)
{
  return (weft_pipeline_stage_options){.name = name,
                                       .workers = workers,
                                       .flags = flags,
                                       .capacity = cap,
                                       .free_item = item_free};
}

/* ---- 4 stages, 10,000 items: each arrives exactly once ---- */

enum { N_ITEMS = 10000 };

static int four_stage_main(void *arg)
{
  (void)arg;
  items_reset();
  struct source_cfg src = {.first = 0, .count = N_ITEMS};
  struct sink_cfg sink;
  sink_init(&sink, N_ITEMS);
  weft_pipeline *p = weft_pipeline_new(NULL, &(weft_pipeline_options){.name = "four"});
  weft_pipeline_stage_options so = stage("source", 1, 0, 16);
  weft_pipeline_stage_options a = stage("a", 4, WEFT_PIPELINE_UNORDERED, 16);
  weft_pipeline_stage_options b = stage("b", 3, WEFT_PIPELINE_ORDERED, 16);
  weft_pipeline_stage_options k = stage("sink", 2, 0, 0);
  CHECK_EQ(weft_pipeline_add_source(p, count_source, &src, &so), 0);
  CHECK_EQ(weft_pipeline_add_map(p, map_fn, NULL, &a), 0);
  CHECK_EQ(weft_pipeline_add_map(p, map_fn, NULL, &b), 0);
  CHECK_EQ(weft_pipeline_add_sink(p, sink_fn, &sink, &k), 0);
  CHECK_EQ(weft_pipeline_run(p), 0);
  CHECK_EQ(check_exactly_once(&sink), 0);
  CHECK_EQ(atomic_load(&sink.got), N_ITEMS);
  CHECK_EQ(weft_pipeline_stage_count(p, "source", WEFT_PIPELINE_OUT), N_ITEMS);
  CHECK_EQ(weft_pipeline_stage_count(p, "a", WEFT_PIPELINE_IN), N_ITEMS);
  CHECK_EQ(weft_pipeline_stage_count(p, "b", WEFT_PIPELINE_OUT), N_ITEMS);
  CHECK_EQ(weft_pipeline_stage_count(p, "sink", WEFT_PIPELINE_OUT), N_ITEMS);
  CHECK_EQ(weft_pipeline_stage_count(p, "sink", WEFT_PIPELINE_DROPPED), 0);
  CHECK_EQ(weft_pipeline_wait(p), 0); /* again: the same */
  weft_pipeline_free(p);
  CHECK_EQ(atomic_load(&alive), 0);
  free(sink.seen);
  return 0;
}

static void test_four_stages_exactly_once(void **state)
{
  (void)state;
  checks_reset();
  run_weft_p1to4(four_stage_main, NULL);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- ORDERED keeps input order with 8 workers and random delays; UNORDERED is faster ---- */

struct order_run {
  int flags;
  long n;
  struct map_cfg map;
  int64_t elapsed;
  long order_errors;
};

static int order_main(void *arg)
{
  struct order_run *r = arg;
  items_reset();
  struct source_cfg src = {.first = 0, .count = r->n};
  struct sink_cfg sink;
  sink_init(&sink, r->n);
  sink.check_order = 1;
  weft_pipeline *p = weft_pipeline_new(NULL, NULL);
  weft_pipeline_stage_options so = stage("source", 1, 0, 8);
  weft_pipeline_stage_options m = stage("work", 8, r->flags, 8);
  weft_pipeline_stage_options k = stage("sink", 1, 0, 0);
  weft_pipeline_add_source(p, count_source, &src, &so);
  weft_pipeline_add_map(p, map_fn, &r->map, &m);
  weft_pipeline_add_sink(p, sink_fn, &sink, &k);
  int64_t t0 = weft_now();
  CHECK_EQ(weft_pipeline_run(p), 0);
  r->elapsed = weft_now() - t0;
  r->order_errors = atomic_load(&sink.order_errors);
  CHECK_EQ(check_exactly_once(&sink), 0);
  weft_pipeline_free(p);
  CHECK_EQ(atomic_load(&alive), 0);
  free(sink.seen);
  return 0;
}

static void test_ordered_random_delays(void **state)
{
  (void)state;
  checks_reset();
  uint64_t seed = test_seed();
  for (int procs = 1; procs <= 4; procs++) {
    struct order_run r = {.flags = WEFT_PIPELINE_ORDERED,
                          .n = N_ITEMS,
                          .map = {.fail_at = -1, .seed = seed, .rand_ns = 40000}};
    assert_int_equal(run_weft(procs, order_main, &r), 0);
    assert_int_equal(r.order_errors, 0);
  }
  ASSERT_NO_CHECK_FAILED();
}

static void test_unordered_faster(void **state)
{
  (void)state;
  checks_reset();
  /* Every 20th item takes 5 ms. ORDERED: a slow item holds back the 8-item window, so
   * the slow items run one after another; UNORDERED: 8 at a time. */
  struct map_cfg m = {.fail_at = -1, .slow_every = 20, .slow_ns = MS(5)};
  struct order_run o = {.flags = WEFT_PIPELINE_ORDERED, .n = 1000, .map = m};
  struct order_run u = {.flags = WEFT_PIPELINE_UNORDERED, .n = 1000, .map = m};
  assert_int_equal(run_weft(2, order_main, &o), 0);
  assert_int_equal(run_weft(2, order_main, &u), 0);
  print_message("ordered %.1f ms, unordered %.1f ms\n", o.elapsed / 1e6, u.elapsed / 1e6);
  assert_int_equal(o.order_errors, 0);
  assert_true(u.order_errors > 0); /* it did reorder */
  assert_true(u.elapsed * 2 < o.elapsed);
  ASSERT_NO_CHECK_FAILED();
}

/* ORDERED flat map: each input emits id % 3 outputs, which leave in input order. */
static int flatmap_main(void *arg)
{
  (void)arg;
  items_reset();
  enum { N = 3000 };
  struct source_cfg src = {.first = 0, .count = N};
  struct sink_cfg sink;
  sink_init(&sink, N);
  sink.check_order = 1;
  struct map_cfg m = {.fail_at = -1, .copies_mod = 3, .seed = 7, .rand_ns = 20000};
  weft_pipeline *p = weft_pipeline_new(NULL, NULL);
  weft_pipeline_stage_options so = stage("source", 1, 0, 4);
  weft_pipeline_stage_options fm = stage("flat", 6, WEFT_PIPELINE_ORDERED, 4);
  weft_pipeline_stage_options k = stage("sink", 1, 0, 0);
  weft_pipeline_add_source(p, count_source, &src, &so);
  weft_pipeline_add_map(p, map_fn, &m, &fm);
  weft_pipeline_add_sink(p, sink_fn, &sink, &k);
  CHECK_EQ(weft_pipeline_run(p), 0);
  CHECK_EQ(atomic_load(&sink.order_errors), 0);
  for (long i = 0; i < N; i++)
    CHECK_EQ(atomic_load(&sink.seen[i]), i % 3);
  CHECK_EQ(weft_pipeline_stage_count(p, "flat", WEFT_PIPELINE_OUT), N); /* 0+1+2 per 3 */
  weft_pipeline_free(p);
  CHECK_EQ(atomic_load(&alive), 0);
  free(sink.seen);
  return 0;
}

static void test_ordered_flat_map(void **state)
{
  (void)state;
  checks_reset();
  run_weft_p1to4(flatmap_main, NULL);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- batching ---- */

struct batch_sink {
  weft_chan *sizes; /* long: each batch's length, in order */
  long next_id;     /* items must arrive in order */
  long order_errors;
};

static int batch_sink_fn(weft_ctx *ctx, void *in, void *arg)
{
  struct batch_sink *s = arg;
  weft_pipeline_batch *b = in;
  for (size_t i = 0; i < b->len; i++) {
    struct item *it = b->items[i];
    if (it->id != s->next_id++)
      s->order_errors++;
  }
  long len = (long)b->len;
  weft_pipeline_batch_free(b);
  return weft_chan_send_ctx(s->sizes, &len, ctx);
}

static int batch_size_main(void *arg)
{
  (void)arg;
  items_reset();
  struct source_cfg src = {.first = 0, .count = 1000};
  struct batch_sink bs = {.sizes = weft_chan_new(sizeof(long), 64)};
  weft_pipeline *p = weft_pipeline_new(NULL, NULL);
  weft_pipeline_stage_options so = stage("source", 1, 0, 8);
  weft_pipeline_add_source(p, count_source, &src, &so);
  CHECK_EQ(
      weft_pipeline_add_batch(
          p, &(weft_pipeline_batch_options){.name = "batch", .max_items = 64, .capacity = 2}),
      0);
  weft_pipeline_add_sink(p, batch_sink_fn, &bs, &(weft_pipeline_stage_options){.name = "sink"});
  CHECK_EQ(weft_pipeline_run(p), 0);
  weft_chan_close(bs.sizes);
  long len, n = 0, total = 0;
  while (weft_chan_recv(bs.sizes, &len, WEFT_NO_DEADLINE) == 0) {
    CHECK_EQ(len, n < 15 ? 64 : 40); /* 15 full batches, then the partial 40 */
    n++;
    total += len;
  }
  CHECK_EQ(n, 16);
  CHECK_EQ(total, 1000);
  CHECK_EQ(bs.order_errors, 0);
  CHECK_EQ(weft_pipeline_stage_count(p, "batch", WEFT_PIPELINE_IN), 1000);
  CHECK_EQ(weft_pipeline_stage_count(p, "batch", WEFT_PIPELINE_OUT), 16);
  weft_pipeline_free(p);
  weft_chan_release(bs.sizes);
  CHECK_EQ(atomic_load(&alive), 0);
  return 0;
}

static void test_batch_by_size(void **state)
{
  (void)state;
  checks_reset();
  run_weft_p1to4(batch_size_main, NULL);
  ASSERT_NO_CHECK_FAILED();
}

/* A source driven by the test: each long received on cmds emits that many items; -1 ends. */
struct driven_source {
  weft_chan *cmds;
  long next;
};

static int driven_source_fn(weft_ctx *ctx, weft_pipeline_emitter *out, void *arg)
{
  struct driven_source *d = arg;
  long n;
  int rc;
  while ((rc = weft_chan_recv_ctx(d->cmds, &n, ctx)) == 0 && n >= 0)
    for (long i = 0; i < n; i++)
      if ((rc = weft_pipeline_emit(out, item_new(d->next++))) != 0)
        return rc;
  return rc == -EPIPE ? 0 : rc;
}

static void wait_count(weft_pipeline *p, const char *stage, weft_pipeline_count which, long n)
{
  for (int i = 0; i < 4000 && weft_pipeline_stage_count(p, stage, which) < n; i++)
    weft_sleep(MS(1) / 2);
  CHECK_EQ(weft_pipeline_stage_count(p, stage, which), n);
}

static void wait_sleepers(weft_fake_clock *fc, int n)
{
  for (int i = 0; i < 4000 && weft_fake_clock_sleepers(fc) != n; i++)
    weft_sleep(MS(1) / 2);
  CHECK_EQ(weft_fake_clock_sleepers(fc), n);
}

/* No batch arrives within a short real-time wait. */
static void expect_no_batch(weft_chan *sizes)
{
  long len;
  CHECK_EQ(weft_chan_recv(sizes, &len, weft_now() + MS(20)), -ETIMEDOUT);
}

static long next_batch(weft_chan *sizes)
{
  long len = -1;
  CHECK_EQ(weft_chan_recv(sizes, &len, weft_now() + MS(5000)), 0);
  return len;
}

static int batch_time_main(void *arg)
{
  (void)arg;
  items_reset();
  weft_fake_clock *fc = weft_fake_clock_new(MS(1000));
  struct driven_source d = {.cmds = weft_chan_new(sizeof(long), 4)};
  struct batch_sink bs = {.sizes = weft_chan_new(sizeof(long), 16)};
  weft_pipeline *p = weft_pipeline_new(
      NULL, &(weft_pipeline_options){.clock = weft_fake_clock_clock(fc), .capacity = 16});
  weft_pipeline_stage_options so = stage("source", 1, 0, 0);
  weft_pipeline_add_source(p, driven_source_fn, &d, &so);
  weft_pipeline_add_batch(
      p, &(weft_pipeline_batch_options){.name = "batch", .max_items = 10, .max_wait = MS(50)});
  weft_pipeline_add_sink(p, batch_sink_fn, &bs, &(weft_pipeline_stage_options){.name = "sink"});
  CHECK_EQ(weft_pipeline_start(p), 0);

  /* 3 items at t=0: armed for t=50. Nothing at 49; the batch at exactly 50. */
  WEFT_CHAN_SEND(d.cmds, long, 3);
  wait_count(p, "batch", WEFT_PIPELINE_IN, 3);
  wait_sleepers(fc, 1);
  weft_fake_clock_advance(fc, MS(49));
  expect_no_batch(bs.sizes);
  weft_fake_clock_advance(fc, MS(1));
  CHECK_EQ(next_batch(bs.sizes), 3);

  /* 3 items at t=50 (due 100); at t=80, 10 more: 7 fill the batch (sent by size), 3 start
   * the next one, due 130. The timer wakes at 100 for the old deadline and sends nothing. */
  WEFT_CHAN_SEND(d.cmds, long, 3);
  wait_count(p, "batch", WEFT_PIPELINE_IN, 6);
  wait_sleepers(fc, 1);
  weft_fake_clock_advance(fc, MS(30));
  WEFT_CHAN_SEND(d.cmds, long, 10);
  CHECK_EQ(next_batch(bs.sizes), 10);
  wait_count(p, "batch", WEFT_PIPELINE_IN, 16);
  weft_fake_clock_advance(fc, MS(20)); /* t=100 */
  wait_sleepers(fc, 1);                /* asleep again, now until 130 */
  expect_no_batch(bs.sizes);
  weft_fake_clock_advance(fc, MS(29));
  expect_no_batch(bs.sizes);
  weft_fake_clock_advance(fc, MS(1)); /* t=130 */
  CHECK_EQ(next_batch(bs.sizes), 3);

  /* 2 more, then the end of input: the partial batch leaves without the clock moving. */
  WEFT_CHAN_SEND(d.cmds, long, 2);
  WEFT_CHAN_SEND(d.cmds, long, -1);
  CHECK_EQ(weft_pipeline_wait(p), 0);
  CHECK_EQ(next_batch(bs.sizes), 2);
  CHECK_EQ(bs.order_errors, 0);
  CHECK_EQ(weft_pipeline_stage_count(p, "batch", WEFT_PIPELINE_OUT), 4);
  CHECK_EQ(weft_fake_clock_sleepers(fc), 0);
  weft_pipeline_free(p);
  weft_chan_release(d.cmds);
  weft_chan_release(bs.sizes);
  weft_fake_clock_free(fc);
  CHECK_EQ(atomic_load(&alive), 0);
  return 0;
}

static void test_batch_by_time(void **state)
{
  (void)state;
  checks_reset();
  run_weft_p1to4(batch_time_main, NULL);
  ASSERT_NO_CHECK_FAILED();
}

/* Cancelled while a batch is being gathered: its items are freed. */
static int batch_cancel_main(void *arg)
{
  (void)arg;
  items_reset();
  weft_fake_clock *fc = weft_fake_clock_new(0);
  struct driven_source d = {.cmds = weft_chan_new(sizeof(long), 4)};
  struct batch_sink bs = {.sizes = weft_chan_new(sizeof(long), 16)};
  weft_pipeline *p =
      weft_pipeline_new(NULL, &(weft_pipeline_options){.clock = weft_fake_clock_clock(fc)});
  weft_pipeline_stage_options so = stage("source", 1, 0, 0);
  weft_pipeline_add_source(p, driven_source_fn, &d, &so);
  weft_pipeline_add_batch(
      p, &(weft_pipeline_batch_options){.name = "batch", .max_items = 100, .max_wait = MS(50)});
  weft_pipeline_add_sink(p, batch_sink_fn, &bs, &(weft_pipeline_stage_options){.name = "sink"});
  CHECK_EQ(weft_pipeline_start(p), 0);
  WEFT_CHAN_SEND(d.cmds, long, 5);
  wait_count(p, "batch", WEFT_PIPELINE_IN, 5);
  weft_pipeline_cancel(p);
  CHECK_EQ(weft_pipeline_wait(p), -ECANCELED);
  CHECK_EQ(weft_pipeline_stage_count(p, "batch", WEFT_PIPELINE_DROPPED), 1);
  CHECK_EQ(weft_fake_clock_sleepers(fc), 0);
  weft_pipeline_free(p);
  weft_chan_release(d.cmds);
  weft_chan_release(bs.sizes);
  weft_fake_clock_free(fc);
  CHECK_EQ(atomic_load(&alive), 0);
  return 0;
}

static void test_batch_cancel_frees(void **state)
{
  (void)state;
  checks_reset();
  run_weft_p1to4(batch_cancel_main, NULL);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- the first error stops every stage; wait returns it; every item is freed ---- */

struct error_case {
  int map_flags;
  int fail_in_sink;
};

static int first_error_main(void *arg)
{
  struct error_case *ec = arg;
  items_reset();
  struct source_cfg src = {.first = 0, .count = -1}; /* until cancelled */
  struct map_cfg m = {.fail_at = ec->fail_in_sink ? -1 : 500};
  struct sink_cfg sink;
  sink_init(&sink, 1);
  sink.fail_at = ec->fail_in_sink ? 700 : -1;
  weft_pipeline *p = weft_pipeline_new(NULL, NULL);
  weft_pipeline_stage_options so = stage("source", 2, 0, 32);
  weft_pipeline_stage_options a = stage("a", 4, ec->map_flags, 32);
  weft_pipeline_stage_options b = stage("b", 4, ec->map_flags, 32);
  weft_pipeline_stage_options k = stage("sink", 3, 0, 0);
  weft_pipeline_add_source(p, count_source, &src, &so);
  weft_pipeline_add_map(p, map_fn, NULL, &a);
  weft_pipeline_add_map(p, map_fn, &m, &b);
  weft_pipeline_add_sink(p, sink_fn, &sink, &k);
  CHECK_EQ(weft_pipeline_run(p), -EIO);
  const char *failed = ec->fail_in_sink ? "sink" : "b";
  CHECK_EQ(weft_pipeline_stage_count(p, failed, WEFT_PIPELINE_ERROR), 1);
  CHECK_EQ(weft_pipeline_stage_count(p, "a", WEFT_PIPELINE_ERROR), 0);
  CHECK_EQ(weft_ctx_err(weft_pipeline_ctx(p)), 0); /* only the stages' child was cancelled */
  weft_pipeline_free(p);
  CHECK_EQ(atomic_load(&alive), 0); /* everything in flight was freed */
  free(sink.seen);
  return 0;
}

static void test_first_error_stops_all(void **state)
{
  (void)state;
  checks_reset();
  struct error_case cases[] = {
      {WEFT_PIPELINE_UNORDERED, 0},
      {WEFT_PIPELINE_ORDERED, 0},
      {WEFT_PIPELINE_ORDERED, 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    run_weft_p1to4(first_error_main, &cases[i]);
  ASSERT_NO_CHECK_FAILED();
}

/* A failing source stops the pipeline too; what it emitted before is freed or delivered. */
static int failing_source(weft_ctx *ctx, weft_pipeline_emitter *out, void *arg)
{
  struct source_cfg *c = arg;
  int rc = count_source(ctx, out, c);
  return rc != 0 ? rc : -EIO;
}

static int source_error_main(void *arg)
{
  (void)arg;
  items_reset();
  struct source_cfg src = {.first = 0, .count = 300};
  struct sink_cfg sink;
  sink_init(&sink, 300);
  sink.sleep_ns = 10000;
  weft_pipeline *p = weft_pipeline_new(NULL, NULL);
  weft_pipeline_stage_options so = stage("source", 1, 0, 64);
  weft_pipeline_stage_options a = stage("a", 2, WEFT_PIPELINE_ORDERED, 64);
  weft_pipeline_stage_options k = stage("sink", 1, 0, 0);
  weft_pipeline_add_source(p, failing_source, &src, &so);
  weft_pipeline_add_map(p, map_fn, NULL, &a);
  weft_pipeline_add_sink(p, sink_fn, &sink, &k);
  CHECK_EQ(weft_pipeline_run(p), -EIO);
  CHECK_EQ(weft_pipeline_stage_count(p, "source", WEFT_PIPELINE_ERROR), 1);
  CHECK(atomic_load(&sink.got) < 300); /* stopped before the slow sink caught up */
  weft_pipeline_free(p);
  CHECK_EQ(atomic_load(&alive), 0);
  free(sink.seen);
  return 0;
}

static void test_source_error(void **state)
{
  (void)state;
  checks_reset();
  run_weft_p1to4(source_error_main, NULL);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- the parent's cancellation stops every stage promptly ---- */

static int parent_cancel_simple(void *arg)
{
  int flags = *(int *)arg;
  items_reset();
  weft_ctx *parent = weft_ctx_with_cancel(NULL);
  struct source_cfg src = {.first = 0, .count = -1};
  struct sink_cfg sink;
  sink_init(&sink, 1);
  sink.sleep_ns = MS(1); /* slow: the edges fill up and everyone parks */
  weft_pipeline *p = weft_pipeline_new(parent, NULL);
  weft_pipeline_stage_options so = stage("source", 1, 0, 16);
  weft_pipeline_stage_options a = stage("a", 4, flags, 16);
  weft_pipeline_stage_options k = stage("sink", 2, 0, 0);
  weft_pipeline_add_source(p, count_source, &src, &so);
  weft_pipeline_add_map(p, map_fn, NULL, &a);
  weft_pipeline_add_sink(p, sink_fn, &sink, &k);
  CHECK_EQ(weft_pipeline_start(p), 0);
  while (atomic_load(&sink.got) < 50)
    weft_sleep(MS(1));
  int64_t t0 = weft_now();
  weft_ctx_cancel(parent);
  CHECK_EQ(weft_pipeline_wait(p), -ECANCELED);
  int64_t stop_ns = weft_now() - t0;
  CHECK(stop_ns < MS(1000));
  CHECK(weft_pipeline_stage_count(p, "a", WEFT_PIPELINE_DROPPED) +
            weft_pipeline_stage_count(p, "source", WEFT_PIPELINE_DROPPED) >
        0);
  weft_pipeline_free(p);
  weft_ctx_release(parent);
  CHECK_EQ(atomic_load(&alive), 0);
  free(sink.seen);
  return 0;
}

static void test_parent_cancel(void **state)
{
  (void)state;
  checks_reset();
  int flags[] = {WEFT_PIPELINE_UNORDERED, WEFT_PIPELINE_ORDERED};
  for (int i = 0; i < 2; i++)
    run_weft_p1to4(parent_cancel_simple, &flags[i]);
  ASSERT_NO_CHECK_FAILED();
}

/* A parent deadline: wait returns -ETIMEDOUT. */
static int parent_deadline_main(void *arg)
{
  (void)arg;
  items_reset();
  weft_ctx *parent = weft_ctx_with_timeout(NULL, MS(30));
  struct source_cfg src = {.first = 0, .count = -1, .sleep_ns = 100000};
  struct sink_cfg sink;
  sink_init(&sink, 1);
  weft_pipeline *p = weft_pipeline_new(parent, NULL);
  weft_pipeline_stage_options so = stage("source", 1, 0, 4);
  weft_pipeline_stage_options k = stage("sink", 1, 0, 0);
  weft_pipeline_add_source(p, count_source, &src, &so);
  weft_pipeline_add_sink(p, sink_fn, &sink, &k);
  CHECK_EQ(weft_pipeline_run(p), -ETIMEDOUT);
  CHECK(atomic_load(&sink.got) > 0);
  weft_pipeline_free(p);
  weft_ctx_release(parent);
  CHECK_EQ(atomic_load(&alive), 0);
  free(sink.seen);
  return 0;
}

static void test_parent_deadline(void **state)
{
  (void)state;
  checks_reset();
  assert_int_equal(run_weft(2, parent_deadline_main, NULL), 0);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- graceful drain: the sources stop, everything they emitted reaches the sink ---- */

static int drain_main(void *arg)
{
  int flags = *(int *)arg;
  items_reset();
  struct source_cfg src = {.first = 0, .count = -1};
  struct sink_cfg sink;
  sink_init(&sink, 1);
  sink.sleep_ns = 10000;
  weft_pipeline *p = weft_pipeline_new(NULL, NULL);
  weft_pipeline_stage_options so = stage("source", 1, 0, 32);
  weft_pipeline_stage_options a = stage("a", 4, flags, 32);
  weft_pipeline_stage_options k = stage("sink", 2, 0, 0);
  weft_pipeline_add_source(p, count_source, &src, &so);
  weft_pipeline_add_map(p, map_fn, NULL, &a);
  weft_pipeline_add_sink(p, sink_fn, &sink, &k);
  CHECK_EQ(weft_pipeline_start(p), 0);
  while (atomic_load(&sink.got) < 300)
    weft_sleep(MS(1));
  weft_pipeline_drain(p);
  CHECK_EQ(weft_pipeline_wait(p), 0);
  CHECK_EQ(atomic_load(&sink.got), atomic_load(&src.made)); /* nothing lost */
  CHECK_EQ(weft_pipeline_stage_count(p, "a", WEFT_PIPELINE_DROPPED), 0);
  CHECK_EQ(weft_pipeline_stage_count(p, "source", WEFT_PIPELINE_ERROR), 0);
  weft_pipeline_free(p);
  CHECK_EQ(atomic_load(&alive), 0);
  free(sink.seen);
  return 0;
}

static void test_drain(void **state)
{
  (void)state;
  checks_reset();
  int flags[] = {WEFT_PIPELINE_UNORDERED, WEFT_PIPELINE_ORDERED};
  for (int i = 0; i < 2; i++)
    run_weft_p1to4(drain_main, &flags[i]);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- fan-in: three sources merge into one edge ---- */

static int fan_in_main(void *arg)
{
  (void)arg;
  items_reset();
  enum { PER = 2000 };
  struct source_cfg src[3] = {
      {.first = 0, .count = PER},
      {.first = PER, .count = PER, .sleep_ns = 1000},
      {.first = 2 * PER, .count = PER},
  };
  struct sink_cfg sink;
  sink_init(&sink, 3 * PER);
  weft_pipeline *p = weft_pipeline_new(NULL, NULL);
  const char *names[3] = {"kafka", "file", "stdin"};
  for (int i = 0; i < 3; i++) {
    weft_pipeline_stage_options so = stage(names[i], 1, 0, (size_t)(4 << i));
    CHECK_EQ(weft_pipeline_add_source(p, count_source, &src[i], &so), 0);
  }
  weft_pipeline_stage_options a = stage("a", 3, WEFT_PIPELINE_UNORDERED, 8);
  weft_pipeline_stage_options k = stage("sink", 2, 0, 0);
  weft_pipeline_add_map(p, map_fn, NULL, &a);
  weft_pipeline_add_sink(p, sink_fn, &sink, &k);
  CHECK_EQ(weft_pipeline_run(p), 0);
  CHECK_EQ(check_exactly_once(&sink), 0);
  for (int i = 0; i < 3; i++)
    CHECK_EQ(weft_pipeline_stage_count(p, names[i], WEFT_PIPELINE_OUT), PER);
  weft_pipeline_free(p);
  CHECK_EQ(atomic_load(&alive), 0);
  free(sink.seen);
  return 0;
}

static void test_fan_in(void **state)
{
  (void)state;
  checks_reset();
  run_weft_p1to4(fan_in_main, NULL);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- backpressure: a slow sink bounds the items in flight ---- */

static int backpressure_main(void *arg)
{
  (void)arg;
  items_reset();
  struct source_cfg src = {.first = 0, .count = 3000};
  struct sink_cfg sink;
  sink_init(&sink, 3000);
  sink.sleep_ns = 20000; /* 20 us per item, one worker: far slower than the rest */
  weft_pipeline *p = weft_pipeline_new(NULL, NULL);
  weft_pipeline_stage_options so = stage("source", 1, 0, 8);
  weft_pipeline_stage_options a = stage("a", 4, WEFT_PIPELINE_UNORDERED, 8);
  weft_pipeline_stage_options b = stage("b", 4, WEFT_PIPELINE_ORDERED, 8); /* window 8 */
  weft_pipeline_stage_options k = stage("sink", 1, 0, 0);
  weft_pipeline_add_source(p, count_source, &src, &so);
  weft_pipeline_add_map(p, map_fn, NULL, &a);
  weft_pipeline_add_map(p, map_fn, NULL, &b);
  weft_pipeline_add_sink(p, sink_fn, &sink, &k);
  CHECK_EQ(weft_pipeline_run(p), 0);
  CHECK_EQ(check_exactly_once(&sink), 0);
  /* edges 8 + 8 + 8, workers: source 1, a 4, b's window 8, sink 1 */
  long bound = 3 * 8 + 1 + 4 + 8 + 1;
  long max = atomic_load(&alive_max);
  print_message("in flight: at most %ld items (bound %ld)\n", max, bound);
  CHECK(max <= bound);
  CHECK(max >= 24); /* the edges did fill: the bound is what held it */
  weft_pipeline_free(p);
  CHECK_EQ(atomic_load(&alive), 0);
  free(sink.seen);
  return 0;
}

static void test_backpressure(void **state)
{
  (void)state;
  checks_reset();
  run_weft_p1to4(backpressure_main, NULL);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- metrics ---- */

static int metrics_main(void *arg)
{
  (void)arg;
  items_reset();
  weft_metrics_registry *reg = weft_metrics_registry_new();
  struct source_cfg src = {.first = 0, .count = 100};
  struct sink_cfg sink;
  sink_init(&sink, 100);
  weft_pipeline *p =
      weft_pipeline_new(NULL, &(weft_pipeline_options){.name = "m", .metrics = reg});
  weft_pipeline_stage_options so = stage("source", 1, 0, 8);
  weft_pipeline_stage_options a = stage("double", 2, WEFT_PIPELINE_ORDERED, 5);
  weft_pipeline_stage_options k = stage("sink", 1, 0, 0);
  weft_pipeline_add_source(p, count_source, &src, &so);
  weft_pipeline_add_map(p, map_fn, NULL, &a);
  weft_pipeline_add_sink(p, sink_fn, &sink, &k);
  CHECK_EQ(weft_pipeline_run(p), 0);
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  CHECK_EQ(weft_metrics_write_prometheus(reg, f), 0);
  fclose(f);
  const char *want[] = {
      "weft_pipeline_items_total{pipeline=\"m\",stage=\"double\",result=\"in\"} 100\n",
      "weft_pipeline_items_total{pipeline=\"m\",stage=\"double\",result=\"out\"} 100\n",
      "weft_pipeline_items_total{pipeline=\"m\",stage=\"sink\",result=\"out\"} 100\n",
      "weft_pipeline_items_total{pipeline=\"m\",stage=\"source\",result=\"out\"} 100\n",
      "weft_pipeline_items_total{pipeline=\"m\",stage=\"source\",result=\"error\"} 0\n",
      "weft_chan_capacity{chan=\"m/source\"} 8\n",
      "weft_chan_capacity{chan=\"m/double\"} 5\n",
      "weft_chan_length{chan=\"m/double\"} 0\n",
  };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    if (!strstr(buf, want[i])) {
      fprintf(stderr, "missing: %s", want[i]);
      CHECK(0);
    }
  free(buf);
  /* A second pipeline shares the family; its edges get their own series. */
  struct source_cfg src2 = {.first = 0, .count = 10};
  weft_pipeline *q =
      weft_pipeline_new(NULL, &(weft_pipeline_options){.name = "n", .metrics = reg});
  weft_pipeline_add_source(q, count_source, &src2, &so);
  weft_pipeline_add_sink(q, sink_fn, &sink, &k);
  CHECK_EQ(weft_pipeline_run(q), 0);
  f = open_memstream(&buf, &len);
  CHECK_EQ(weft_metrics_write_prometheus(reg, f), 0);
  fclose(f);
  CHECK(strstr(buf,
               "weft_pipeline_items_total{pipeline=\"n\",stage=\"sink\",result=\"out\"} 10\n"));
  CHECK(strstr(buf, "weft_chan_capacity{chan=\"n/source\"} 8\n"));
  CHECK(strstr(buf, "weft_chan_capacity{chan=\"m/source\"} 8\n"));
  free(buf);
  weft_pipeline_free(q);
  weft_pipeline_free(p); /* unregisters the edges */
  weft_metrics_registry_free(reg);
  free(sink.seen);
  return 0;
}

static void test_metrics(void **state)
{
  (void)state;
  checks_reset();
  assert_int_equal(run_weft(2, metrics_main, NULL), 0);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- misuse ---- */

static int dummy_source(weft_ctx *ctx, weft_pipeline_emitter *out, void *arg)
{
  (void)ctx;
  (void)arg;
  CHECK_EQ(weft_pipeline_emit(out, NULL), -EINVAL);
  CHECK_EQ(weft_pipeline_emit(NULL, out), -EINVAL);
  return 0;
}

static int misuse_main(void *arg)
{
  (void)arg;
  weft_pipeline *p = weft_pipeline_new(NULL, NULL);
  weft_pipeline_stage_options named = {.name = "x"};
  CHECK_EQ(weft_pipeline_add_map(p, map_fn, NULL, NULL), -EINVAL); /* no source yet */
  CHECK_EQ(weft_pipeline_add_sink(p, sink_fn, NULL, NULL), -EINVAL);
  CHECK_EQ(weft_pipeline_start(p), -EINVAL);
  CHECK_EQ(weft_pipeline_wait(p), -EINVAL); /* never started */
  CHECK_EQ(weft_pipeline_add_source(p, NULL, NULL, NULL), -EINVAL);
  CHECK_EQ(weft_pipeline_add_source(p, dummy_source, NULL, &named), 0);
  CHECK_EQ(weft_pipeline_add_source(p, dummy_source, NULL, &named), -EEXIST);
  weft_pipeline_stage_options other_free = {.name = "y", .free_item = item_free};
  CHECK_EQ(weft_pipeline_add_source(p, dummy_source, NULL, &other_free), -EINVAL);
  CHECK_EQ(weft_pipeline_start(p), -EINVAL); /* no sink */
  CHECK_EQ(weft_pipeline_add_map(p, map_fn, NULL, &(weft_pipeline_stage_options){.flags = 8}),
           -EINVAL);
  CHECK_EQ(
      weft_pipeline_add_map(p, map_fn, NULL, &(weft_pipeline_stage_options){.workers = -1}),
      -EINVAL);
  CHECK_EQ(weft_pipeline_add_batch(p, &(weft_pipeline_batch_options){.max_items = 0}), -EINVAL);
  CHECK_EQ(weft_pipeline_add_batch(p, NULL), -EINVAL);
  CHECK_EQ(weft_pipeline_add_map(p, map_fn, NULL, NULL), 0); /* default name "stage1" */
  CHECK_EQ(weft_pipeline_add_source(p, dummy_source, NULL, NULL), -EINVAL); /* after a map */
  struct sink_cfg sink;
  sink_init(&sink, 1);
  CHECK_EQ(weft_pipeline_add_sink(p, sink_fn, &sink, NULL), 0);
  CHECK_EQ(weft_pipeline_add_sink(p, sink_fn, &sink, NULL), -EINVAL); /* one sink */
  CHECK_EQ(weft_pipeline_add_map(p, map_fn, NULL, NULL), -EINVAL);    /* after the sink */
  CHECK_EQ(weft_pipeline_stage_count(p, "nope", WEFT_PIPELINE_IN), -ENOENT);
  CHECK_EQ(weft_pipeline_stage_count(p, "x", (weft_pipeline_count)9), -EINVAL);
  CHECK_EQ(weft_pipeline_stage_count(p, "stage1", WEFT_PIPELINE_IN), 0);
  CHECK_EQ(weft_pipeline_run(p), 0);
  CHECK_EQ(weft_pipeline_start(p), -EBUSY);
  CHECK_EQ(weft_pipeline_add_map(p, map_fn, NULL, NULL), -EBUSY);
  weft_pipeline_free(p);
  weft_pipeline_free(NULL);
  weft_pipeline_batch_free(NULL);
  /* A pipeline built and never started frees cleanly. */
  p = weft_pipeline_new(NULL, NULL);
  weft_pipeline_add_source(p, dummy_source, NULL, NULL);
  weft_pipeline_drain(p); /* before start: no effect */
  weft_pipeline_free(p);
  free(sink.seen);
  return 0;
}

static void test_misuse(void **state)
{
  (void)state;
  checks_reset();
  assert_int_equal(run_weft(1, misuse_main, NULL), 0);
  ASSERT_NO_CHECK_FAILED();
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_four_stages_exactly_once),
      cmocka_unit_test(test_ordered_random_delays),
      cmocka_unit_test(test_unordered_faster),
      cmocka_unit_test(test_ordered_flat_map),
      cmocka_unit_test(test_batch_by_size),
      cmocka_unit_test(test_batch_by_time),
      cmocka_unit_test(test_batch_cancel_frees),
      cmocka_unit_test(test_first_error_stops_all),
      cmocka_unit_test(test_source_error),
      cmocka_unit_test(test_parent_cancel),
      cmocka_unit_test(test_parent_deadline),
      cmocka_unit_test(test_drain),
      cmocka_unit_test(test_fan_in),
      cmocka_unit_test(test_backpressure),
      cmocka_unit_test(test_metrics),
      cmocka_unit_test(test_misuse),
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL, 0);
}
