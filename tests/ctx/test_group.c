/* test_group.c: weft/group.h against x/sync/errgroup's rules: the first error returned wins
 * and cancels the context with itself as the cause; wait returns it and cancels; a limit
 * bounds how many functions run at once; try_go at the limit; limit 0 blocks go; changing
 * the limit while functions are active, or freeing a running group, aborts; many groups
 * (nested too) at once on P = 1..4. */
#include <stdlib.h>
#include <string.h>

#include "ctx_check.h"
#include "weft/group.h"

/* ---- the first error returned wins and cancels the context with itself as cause ---- */

struct first {
  atomic_int late_saw_cause; /* the cause the late function saw on the group's ctx */
  atomic_int ok_ran;
};

static int fail_now(weft_ctx *ctx, void *arg)
{
  (void)ctx;
  (void)arg;
  return -EPIPE;
}

/* Waits for the group's context (cancelled by fail_now), then fails differently. */
static int fail_late(weft_ctx *ctx, void *arg)
{
  struct first *f = arg;
  CHECK_EQ(weft_ctx_wait(ctx, weft_now() + MS(10000)), -ECANCELED);
  atomic_store(&f->late_saw_cause, weft_ctx_cause(ctx));
  return -EIO;
}

static int succeed(weft_ctx *ctx, void *arg)
{
  (void)ctx;
  atomic_fetch_add(&((struct first *)arg)->ok_ran, 1);
  return 0;
}

static int first_error_main(void *arg)
{
  (void)arg;
  struct first f = {0};
  weft_ctx *parent = weft_ctx_with_cancel(NULL);
  weft_group *g = weft_group_new(parent);
  CHECK(g != NULL);
  weft_ctx *ctx = weft_group_ctx(g);
  CHECK_EQ(weft_group_go(g, fail_late, &f), 0); /* started first, returns last */
  CHECK_EQ(weft_group_go(g, succeed, &f), 0);
  CHECK_EQ(weft_group_go(g, fail_now, &f), 0);
  CHECK_EQ(weft_ctx_wait(ctx, weft_now() + MS(10000)), -ECANCELED);
  CHECK_EQ(weft_ctx_cause(ctx), -EPIPE); /* cancelled by the failure, before wait */
  CHECK_EQ(weft_group_wait(g), -EPIPE);  /* the first returned, not the first started */
  CHECK_EQ(atomic_load(&f.late_saw_cause), -EPIPE);
  CHECK_EQ(atomic_load(&f.ok_ran), 1);
  CHECK_EQ(weft_ctx_cause(ctx), -EPIPE); /* wait's cancel does not replace the cause */
  CHECK_EQ(weft_ctx_err(parent), 0);     /* the parent is untouched */
  CHECK_EQ(weft_group_wait(g), -EPIPE);  /* again: the same */
  weft_group_free(g);
  weft_ctx_release(parent);
  return 0;
}

static void test_first_error(void **state)
{
  (void)state;
  run_checked_p1to4(first_error_main, NULL);
}

/* ---- wait returns 0 and cancels when nothing fails; parents; NULL parent ---- */

static int check_not_done(weft_ctx *ctx, void *arg)
{
  (void)arg;
  weft_yield();
  CHECK_EQ(weft_ctx_err(ctx), 0); /* not cancelled while functions still run */
  return 0;
}

static int wait_for_parent(weft_ctx *ctx, void *arg)
{
  (void)arg;
  CHECK_EQ(weft_ctx_wait(ctx, weft_now() + MS(10000)), -ECANCELED);
  CHECK_EQ(weft_ctx_cause(ctx), -EBUSY);
  return 0; /* a function that stops because of a cancel need not fail */
}

static int wait_main(void *arg)
{
  (void)arg;
  weft_group *g = weft_group_new(NULL); /* NULL parent: valid */
  weft_ctx *ctx = weft_group_ctx(g);
  for (int i = 0; i < 8; i++)
    CHECK_EQ(weft_group_go(g, check_not_done, NULL), 0);
  CHECK_EQ(weft_group_wait(g), 0);
  CHECK_EQ(weft_ctx_err(ctx), -ECANCELED);
  CHECK_EQ(weft_ctx_cause(ctx), -ECANCELED);
  weft_group_free(g);

  /* An empty group: wait returns at once, and still cancels. */
  g = weft_group_new(NULL);
  CHECK_EQ(weft_group_wait(g), 0);
  CHECK_EQ(weft_ctx_err(weft_group_ctx(g)), -ECANCELED);
  weft_group_free(g);

  /* The parent's cancel reaches the functions; it is not an error of the group. */
  weft_ctx *parent = weft_ctx_with_cancel(NULL);
  g = weft_group_new(parent);
  for (int i = 0; i < 4; i++)
    CHECK_EQ(weft_group_go(g, wait_for_parent, NULL), 0);
  weft_sleep(MS(2));
  weft_ctx_cancel_cause(parent, -EBUSY);
  CHECK_EQ(weft_group_wait(g), 0);
  weft_group_free(g);

  /* A parent already done: the context is done from the start; functions still run. */
  g = weft_group_new(parent);
  CHECK_EQ(weft_ctx_err(weft_group_ctx(g)), -ECANCELED);
  CHECK_EQ(weft_group_go(g, fail_now, NULL), 0);
  CHECK_EQ(weft_group_wait(g), -EPIPE);
  CHECK_EQ(weft_ctx_cause(weft_group_ctx(g)), -EBUSY); /* the parent's cause came first */
  weft_group_free(g);
  weft_ctx_release(parent);

  /* The context may be kept past the group. */
  g = weft_group_new(NULL);
  ctx = weft_ctx_retain(weft_group_ctx(g));
  CHECK_EQ(weft_group_go(g, NULL, NULL), -EINVAL);
  CHECK_EQ(weft_group_try_go(g, NULL, NULL), -EINVAL);
  CHECK_EQ(weft_group_wait(g), 0);
  weft_group_free(g);
  CHECK_EQ(weft_ctx_err(ctx), -ECANCELED);
  weft_ctx_release(ctx);
  weft_group_free(NULL);
  return 0;
}

static void test_wait_cancels(void **state)
{
  (void)state;
  run_checked_p1to4(wait_main, NULL);
}

/* ---- a limit bounds concurrency; try_go and go_until at the limit ---- */

#define LIMIT       3
#define LIMITED_FNS (TSAN ? 24 : 60)

struct limited {
  weft_group *g;
  weft_chan *gate; /* closed to let the blocked functions finish */
  atomic_int active, max, started;
  weft_wg feeder_done;
};

static int limited_fn(weft_ctx *ctx, void *arg)
{
  struct limited *l = arg;
  (void)ctx;
  int now = atomic_fetch_add(&l->active, 1) + 1;
  for (int m = atomic_load(&l->max);
       now > m && !atomic_compare_exchange_weak(&l->max, &m, now);)
    ;
  atomic_fetch_add(&l->started, 1);
  weft_chan_recv(l->gate, NULL, weft_now() + MS(20000)); /* -EPIPE once the gate opens */
  weft_yield();
  atomic_fetch_sub(&l->active, 1);
  return 0;
}

/* Starts the rest with go, which parks at the limit. */
static void feeder(void *arg)
{
  struct limited *l = arg;
  for (int i = LIMIT; i < LIMITED_FNS; i++)
    CHECK_EQ(weft_group_go(l->g, limited_fn, l), 0);
  weft_wg_done(&l->feeder_done);
}

static int limit_main(void *arg)
{
  (void)arg;
  struct limited l = {.g = weft_group_new(NULL), .gate = weft_chan_new(1, 0)};
  CHECK_EQ(weft_group_set_limit(l.g, LIMIT), 0);
  for (int i = 0; i < LIMIT; i++)
    CHECK_EQ(weft_group_try_go(l.g, limited_fn, &l), 0); /* slots free: never parks */
  CHECK(wait_at_least(&l.started, LIMIT, MS(10000)));
  /* At the limit: try_go fails, go_until times out, and nothing more starts. */
  CHECK_EQ(weft_group_try_go(l.g, limited_fn, &l), -EAGAIN);
  int64_t t0 = weft_now();
  CHECK_EQ(weft_group_go_until(l.g, limited_fn, &l, t0 + MS(20)), -ETIMEDOUT);
  CHECK(weft_now() - t0 >= MS(20));
  CHECK_EQ(weft_group_go_until(l.g, limited_fn, &l, weft_now() - 1), -ETIMEDOUT);
  weft_wg_add(&l.feeder_done, 1);
  weft_go(feeder, &l);
  weft_sleep(MS(5));
  CHECK_EQ(atomic_load(&l.started), LIMIT); /* the feeder is parked in go */
  weft_chan_close(l.gate);
  weft_wg_wait(&l.feeder_done);
  CHECK_EQ(weft_group_wait(l.g), 0);
  CHECK_EQ(atomic_load(&l.started), LIMITED_FNS);
  CHECK_EQ(atomic_load(&l.max), LIMIT); /* reached, never passed */
  CHECK_EQ(atomic_load(&l.active), 0);

  /* Once nothing is active the limit may change: lift it, then set a new one. */
  CHECK_EQ(weft_group_set_limit(l.g, -1), 0);
  CHECK_EQ(weft_group_set_limit(l.g, 1), 0);
  struct first f = {0};
  CHECK_EQ(weft_group_try_go(l.g, succeed, &f), 0);
  CHECK_EQ(weft_group_wait(l.g), 0);
  CHECK_EQ(atomic_load(&f.ok_ran), 1);
  weft_group_free(l.g);
  weft_chan_release(l.gate);
  return 0;
}

static void test_limit(void **state)
{
  (void)state;
  run_checked_p1to4(limit_main, NULL);
}

/* ---- limit 0: go parks forever (go_until shows it, bounded), try_go fails ---- */

static int never_runs(weft_ctx *ctx, void *arg)
{
  (void)ctx;
  (void)arg;
  CHECK(!"a function ran in a group with limit 0");
  return 0;
}

static int limit_zero_main(void *arg)
{
  (void)arg;
  weft_group *g = weft_group_new(NULL);
  CHECK_EQ(weft_group_set_limit(g, 0), 0);
  CHECK_EQ(weft_group_try_go(g, never_runs, NULL), -EAGAIN);
  int64_t t0 = weft_now();
  CHECK_EQ(weft_group_go_until(g, never_runs, NULL, t0 + MS(30)), -ETIMEDOUT);
  CHECK(weft_now() - t0 >= MS(30));
  CHECK_EQ(weft_group_wait(g), 0);
  weft_group_free(g);
  return 0;
}

static void test_limit_zero(void **state)
{
  (void)state;
  run_checked_p1to4(limit_zero_main, NULL);
  /* go itself parks for good: with nothing else alive, deadlock detection reports it. */
  expect_child("go_limit_zero", "deadlock", 60);
}

/* ---- misuse aborts with a clear message ---- */

static int block_on_gate(weft_ctx *ctx, void *arg)
{
  (void)ctx;
  weft_chan_recv(arg, NULL, weft_now() + MS(60000));
  return 0;
}

static int set_limit_active_main(void *arg)
{
  (void)arg;
  weft_chan *gate = weft_chan_new(1, 0);
  weft_group *g = weft_group_new(NULL);
  weft_group_set_limit(g, 2);
  weft_group_go(g, block_on_gate, gate);
  fprintf(stderr, "child: changing the limit with one function active\n");
  weft_group_set_limit(g, 5); /* aborts */
  fprintf(stderr, "child: set_limit returned\n");
  return 0;
}

static void child_set_limit_active(void)
{
  run_weft(2, set_limit_active_main, NULL);
  exit(0);
}

static int free_running_main(void *arg)
{
  (void)arg;
  weft_chan *gate = weft_chan_new(1, 0);
  weft_group *g = weft_group_new(NULL);
  weft_group_go(g, block_on_gate, gate);
  weft_group_free(g); /* aborts */
  fprintf(stderr, "child: free returned\n");
  return 0;
}

static void child_free_running(void)
{
  run_weft(1, free_running_main, NULL);
  exit(0);
}

static int go_limit_zero_main(void *arg)
{
  (void)arg;
  weft_group *g = weft_group_new(NULL);
  weft_group_set_limit(g, 0);
  fprintf(stderr, "child: go on a group with limit 0\n");
  weft_group_go(g, never_runs, NULL); /* parks forever */
  fprintf(stderr, "child: go returned\n");
  return 0;
}

static void child_go_limit_zero(void)
{
  run_weft(1, go_limit_zero_main, NULL);
  exit(0);
}

static void test_misuse_aborts(void **state)
{
  (void)state;
  expect_child("set_limit_active", "weft_group_set_limit(5) while 1 function", 60);
  expect_child("free_running", "weft_group_free while 1 function", 60);
}

/* ---- outside the runtime: spawning fails cleanly ---- */

static void test_no_runtime(void **state)
{
  (void)state;
  weft_group *g = weft_group_new(NULL);
  assert_non_null(g);
  assert_int_equal(weft_group_try_go(g, fail_now, NULL), -EPERM); /* fn not run */
  assert_int_equal(weft_group_set_limit(g, 4), 0);                /* nothing active: allowed */
  assert_int_equal(weft_group_try_go(g, fail_now, NULL), -EPERM); /* slot given back */
  assert_int_equal(weft_ctx_err(weft_group_ctx(g)), 0);
  weft_group_free(g);
}

/* ---- many groups at once, nested, on P = 1..4 ---- */

#define GROUPS    (TSAN ? 8 : 32)
#define GROUP_FNS (TSAN ? 8 : 24)
#define SUBGROUPS 3

struct many {
  uint64_t seed;
  weft_wg done;
  atomic_int bad;
};

struct member {
  int fail_with; /* 0: succeed */
  int yields;
};

static int succeed_quietly(weft_ctx *ctx, void *arg)
{
  (void)ctx;
  (void)arg;
  weft_yield();
  return 0;
}

/* A member: maybe runs a nested group under the group's context, then returns. */
static int member_fn(weft_ctx *ctx, void *arg)
{
  struct member *m = arg;
  for (int i = 0; i < m->yields; i++) {
    if (weft_ctx_err(ctx))
      break; /* stop early once the group is cancelled */
    weft_yield();
  }
  if (m->yields % 5 == 0) { /* nested: a subgroup whose ctx hangs off ours */
    bool was_done = weft_ctx_err(ctx) != 0;
    weft_group *sub = weft_group_new(ctx);
    if (was_done) /* a done parent: the subgroup's context is done from the start */
      CHECK(weft_ctx_err(weft_group_ctx(sub)) != 0);
    for (int i = 0; i < SUBGROUPS; i++)
      weft_group_go(sub, succeed_quietly, NULL);
    CHECK_EQ(weft_group_wait(sub), 0);
    weft_group_free(sub);
  }
  return m->fail_with;
}

struct one_group {
  struct many *many;
  int index;
};

static void run_one_group(void *arg)
{
  struct one_group *og = arg;
  uint64_t rng = og->many->seed + (uint64_t)og->index * 0x9E3779B97F4A7C15ull;
  struct member members[GROUP_FNS];
  weft_group *g = weft_group_new(NULL);
  int limit = (int)(test_rand(&rng) % 6) - 1; /* -1 (none) .. 4 */
  if (limit == 0)
    limit = -1;
  CHECK_EQ(weft_group_set_limit(g, limit), 0);
  bool any_fail = false;
  for (int i = 0; i < GROUP_FNS; i++) {
    uint64_t x = test_rand(&rng);
    members[i] = (struct member){.fail_with = x % 7 == 0 ? -(int)(100 + i) : 0,
                                 .yields = (int)((x >> 8) % 20)};
    any_fail |= members[i].fail_with != 0;
    int rc = (x >> 16) % 3 == 0 ? weft_group_try_go(g, member_fn, &members[i])
                                : weft_group_go(g, member_fn, &members[i]);
    if (rc == -EAGAIN) /* try_go at the limit: then wait for a slot */
      rc = weft_group_go(g, member_fn, &members[i]);
    CHECK_EQ(rc, 0);
  }
  int err = weft_group_wait(g);
  if (!any_fail) {
    CHECK_EQ(err, 0);
    CHECK_EQ(weft_ctx_cause(weft_group_ctx(g)), -ECANCELED);
  } else {
    bool known = false;
    for (int i = 0; i < GROUP_FNS; i++)
      known |= members[i].fail_with == err && err != 0;
    CHECK(known);                                     /* one of the errors returned */
    CHECK_EQ(weft_ctx_cause(weft_group_ctx(g)), err); /* and it is the cause */
  }
  weft_group_free(g);
  weft_wg_done(&og->many->done);
}

static int many_main(void *arg)
{
  struct many *m = arg;
  struct one_group ogs[GROUPS];
  weft_wg_init(&m->done);
  weft_wg_add(&m->done, GROUPS);
  for (int i = 0; i < GROUPS; i++) {
    ogs[i] = (struct one_group){m, i};
    CHECK_EQ(weft_go(run_one_group, &ogs[i]), 0);
  }
  weft_wg_wait(&m->done);
  return 0;
}

static void test_many_groups(void **state)
{
  (void)state;
  struct many m = {.seed = test_seed()};
  for (int round = 0; round < (SANITIZED ? 2 : 5); round++) {
    m.seed += 7919;
    run_checked_p1to4(many_main, &m);
  }
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_first_error),   cmocka_unit_test(test_wait_cancels),
      cmocka_unit_test(test_limit),         cmocka_unit_test(test_limit_zero),
      cmocka_unit_test(test_misuse_aborts), cmocka_unit_test(test_no_runtime),
      cmocka_unit_test(test_many_groups),
  };
  const struct child_scenario children[] = {
      {"set_limit_active", child_set_limit_active},
      {"free_running", child_free_running},
      {"go_limit_zero", child_go_limit_zero},
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], children,
                        sizeof children / sizeof children[0]);
}
