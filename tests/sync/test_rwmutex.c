/* test_rwmutex.c: weft_rwmutex: many readers hold it at once; a writer excludes readers
 * and other writers (and its writes happen before later readers' reads, which
 * ThreadSanitizer checks on plain data); a pending writer blocks new readers and is not
 * starved by a stream of them; wait reasons "rwmutex read" and "rwmutex write" show in
 * dumps; runlock or unlock of an unlocked rwmutex aborts. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weft_test.h"
#include "sync_check.h"

/* ---- many readers at once ---- */

#define NREADERS 6

struct readers {
  weft_rwmutex rw;
  atomic_int active;
  atomic_int all_in; /* every reader saw all NREADERS holding it together */
  weft_wg wg;
};

static void reader_meets_others(void *arg)
{
  struct readers *r = arg;
  weft_rwmutex_rlock(&r->rw);
  atomic_fetch_add(&r->active, 1);
  /* Hold it until every reader holds it: only possible if they share it. */
  int64_t end = weft_now() + MS(5000);
  while (atomic_load(&r->active) < NREADERS && weft_now() < end)
    weft_sleep(MS(1));
  if (atomic_load(&r->active) == NREADERS)
    atomic_fetch_add(&r->all_in, 1);
  weft_sleep(MS(2));
  weft_rwmutex_runlock(&r->rw);
  weft_wg_done(&r->wg);
}

static int readers_main(void *arg)
{
  struct readers r = {.rw = WEFT_RWMUTEX_INIT, .wg = WEFT_WG_INIT};
  (void)arg;
  weft_wg_add(&r.wg, NREADERS);
  for (int i = 0; i < NREADERS; i++)
    if (weft_go(reader_meets_others, &r) != 0)
      return -1;
  weft_wg_wait(&r.wg);
  CHECK(atomic_load(&r.all_in) == NREADERS);
  /* All gone: a writer gets it at once. */
  weft_rwmutex_lock(&r.rw);
  weft_rwmutex_unlock(&r.rw);
  return 0;
}

static void test_many_readers(void **state)
{
  (void)state;
  checks_reset();
  run_weft_p1to4(readers_main, NULL);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- a writer excludes readers and writers ---- */

#define EXCL_COROS (SANITIZED ? 16 : 32)
#define EXCL_ITERS (SANITIZED ? 1500 : 10000)

struct excl {
  weft_rwmutex rw;
  atomic_int readers, writers;
  long data[4]; /* plain; written by writers, read by readers */
  atomic_long writes;
  weft_wg wg;
};

static void excl_worker(void *arg)
{
  struct excl *e = arg;
  uint64_t rng = (uint64_t)(uintptr_t)&rng ^ weft_self_id() * 0x9e3779b97f4a7c15ull;
  for (int i = 0; i < EXCL_ITERS; i++) {
    bool write = test_rand(&rng) % 4 == 0;
    if (write) {
      weft_rwmutex_lock(&e->rw);
      CHECK(atomic_fetch_add(&e->writers, 1) == 0);
      CHECK(atomic_load(&e->readers) == 0);
      for (int k = 0; k < 4; k++)
        e->data[k]++;
      atomic_fetch_add(&e->writes, 1);
      if (test_rand(&rng) % 4 == 0)
        weft_yield();
      CHECK(atomic_load(&e->readers) == 0);
      atomic_fetch_sub(&e->writers, 1);
      weft_rwmutex_unlock(&e->rw);
    } else {
      weft_rwmutex_rlock(&e->rw);
      atomic_fetch_add(&e->readers, 1);
      CHECK(atomic_load(&e->writers) == 0);
      long first = e->data[0];
      if (test_rand(&rng) % 4 == 0)
        weft_yield();
      for (int k = 1; k < 4; k++)
        CHECK(e->data[k] == first); /* no writer changed it under us */
      CHECK(atomic_load(&e->writers) == 0);
      atomic_fetch_sub(&e->readers, 1);
      weft_rwmutex_runlock(&e->rw);
    }
    if (i % 5 == 0)
      weft_yield();
  }
  weft_wg_done(&e->wg);
}

static int excl_main(void *arg)
{
  struct excl e = {.rw = WEFT_RWMUTEX_INIT, .wg = WEFT_WG_INIT};
  (void)arg;
  weft_wg_add(&e.wg, EXCL_COROS);
  for (int i = 0; i < EXCL_COROS; i++)
    if (weft_go(excl_worker, &e) != 0)
      return -1;
  weft_wg_wait(&e.wg);
  weft_rwmutex_rlock(&e.rw);
  for (int k = 0; k < 4; k++)
    CHECK(e.data[k] == atomic_load(&e.writes));
  weft_rwmutex_runlock(&e.rw);
  return 0;
}

static void test_writer_excludes(void **state)
{
  (void)state;
  checks_reset();
  run_weft_p1to4(excl_main, NULL);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- a pending writer blocks new readers; it goes first ---- */

struct pending {
  weft_rwmutex rw;
  atomic_int seq;       /* order in which the writer and the late reader got in */
  atomic_int writer_at; /* seq value when the writer got it (0: not yet) */
  atomic_int reader_at; /* seq value when the late reader got it (0: not yet) */
  weft_wg wg;
};

static void pending_writer(void *arg)
{
  struct pending *p = arg;
  weft_rwmutex_lock(&p->rw);
  atomic_store(&p->writer_at, atomic_fetch_add(&p->seq, 1) + 1);
  weft_sleep(MS(5));
  CHECK(atomic_load(&p->reader_at) == 0);
  weft_rwmutex_unlock(&p->rw);
  weft_wg_done(&p->wg);
}

static void late_reader(void *arg)
{
  struct pending *p = arg;
  weft_rwmutex_rlock(&p->rw);
  atomic_store(&p->reader_at, atomic_fetch_add(&p->seq, 1) + 1);
  weft_rwmutex_runlock(&p->rw);
  weft_wg_done(&p->wg);
}

static int pending_main(void *arg)
{
  struct pending p = {.rw = WEFT_RWMUTEX_INIT, .wg = WEFT_WG_INIT};
  (void)arg;
  weft_rwmutex_rlock(&p.rw); /* main is the first reader */
  weft_wg_add(&p.wg, 2);
  if (weft_go_named(pending_writer, &p, "rw-writer") != 0)
    return -1;
  CHECK(wait_dump_count("\"rw-writer\"", "rwmutex write", 1, MS(5000)));
  /* Only a reader holds it, yet a new reader must wait behind the pending writer. */
  if (weft_go_named(late_reader, &p, "rw-late-reader") != 0)
    return -1;
  CHECK(wait_dump_count("\"rw-late-reader\"", "rwmutex read", 1, MS(5000)));
  CHECK(atomic_load(&p.reader_at) == 0 && atomic_load(&p.writer_at) == 0);
  weft_rwmutex_runlock(&p.rw);
  weft_wg_wait(&p.wg);
  CHECK(atomic_load(&p.writer_at) == 1);
  CHECK(atomic_load(&p.reader_at) == 2);
  return 0;
}

static void test_pending_writer_blocks_readers(void **state)
{
  (void)state;
  checks_reset();
  run_weft_p1to4(pending_main, NULL);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- a writer is not starved by a stream of readers ---- */

#define STREAM_READERS 4
#define STREAM_BOUND   MS(5000) /* generous: a busy 2-core machine; it takes ms */

struct stream {
  weft_rwmutex rw;
  atomic_int writer_done;
  atomic_int readers_in; /* readers holding it now */
  atomic_long reads;     /* read sections completed */
  atomic_int overlapped; /* readers saw another reader holding it */
  int64_t writer_waited; /* written by the writer before writer_done */
  weft_wg wg;
};

/* Keep read-locking, each hold overlapping the next reader's, until the writer is done
 * (or a generous bound passes: then the writer was starved and the test fails). */
static void stream_reader(void *arg)
{
  struct stream *s = arg;
  int64_t end = weft_now() + 2 * STREAM_BOUND;
  while (!atomic_load(&s->writer_done) && weft_now() < end) {
    weft_rwmutex_rlock(&s->rw);
    if (atomic_fetch_add(&s->readers_in, 1) > 0)
      atomic_store(&s->overlapped, 1);
    weft_sleep(MS(1));
    atomic_fetch_sub(&s->readers_in, 1);
    weft_rwmutex_runlock(&s->rw);
    atomic_fetch_add(&s->reads, 1);
    weft_yield();
  }
  weft_wg_done(&s->wg);
}

static void stream_writer(void *arg)
{
  struct stream *s = arg;
  int64_t t0 = weft_now();
  weft_rwmutex_lock(&s->rw);
  s->writer_waited = weft_now() - t0;
  CHECK(atomic_load(&s->readers_in) == 0);
  weft_rwmutex_unlock(&s->rw);
  atomic_store(&s->writer_done, 1);
  weft_wg_done(&s->wg);
}

static int stream_main(void *arg)
{
  struct stream s = {.rw = WEFT_RWMUTEX_INIT, .wg = WEFT_WG_INIT};
  (void)arg;
  weft_wg_add(&s.wg, STREAM_READERS + 1);
  for (int i = 0; i < STREAM_READERS; i++)
    if (weft_go(stream_reader, &s) != 0)
      return -1;
  while (atomic_load(&s.reads) < 20)
    weft_sleep(MS(1));
  if (weft_go(stream_writer, &s) != 0)
    return -1;
  weft_wg_wait(&s.wg);
  CHECK(atomic_load(&s.writer_done) == 1);
  CHECK(s.writer_waited <= STREAM_BOUND);
  CHECK(atomic_load(&s.overlapped) == 1);
  return 0;
}

static void test_writer_not_starved(void **state)
{
  (void)state;
  checks_reset();
  run_weft_p1to4(stream_main, NULL);
  ASSERT_NO_CHECK_FAILED();
}

/* ---- misuse aborts (child processes) ---- */

static int runlock_unlocked_main(void *arg)
{
  weft_rwmutex rw = WEFT_RWMUTEX_INIT;
  (void)arg;
  weft_rwmutex_runlock(&rw);
  return 0;
}

static int runlock_twice_main(void *arg)
{
  weft_rwmutex rw = WEFT_RWMUTEX_INIT;
  (void)arg;
  weft_rwmutex_rlock(&rw);
  weft_rwmutex_runlock(&rw);
  weft_rwmutex_runlock(&rw);
  return 0;
}

static int runlock_write_locked_main(void *arg)
{
  weft_rwmutex rw = WEFT_RWMUTEX_INIT;
  (void)arg;
  weft_rwmutex_lock(&rw);
  weft_rwmutex_runlock(&rw);
  return 0;
}

static int unlock_unlocked_main(void *arg)
{
  weft_rwmutex rw = WEFT_RWMUTEX_INIT;
  (void)arg;
  weft_rwmutex_unlock(&rw);
  return 0;
}

static int unlock_twice_main(void *arg)
{
  weft_rwmutex rw = WEFT_RWMUTEX_INIT;
  (void)arg;
  weft_rwmutex_lock(&rw);
  weft_rwmutex_unlock(&rw);
  weft_rwmutex_unlock(&rw);
  return 0;
}

static int unlock_read_locked_main(void *arg)
{
  weft_rwmutex rw = WEFT_RWMUTEX_INIT;
  (void)arg;
  weft_rwmutex_rlock(&rw);
  weft_rwmutex_unlock(&rw);
  return 0;
}

#define CHILD(name)                                 \
  static void child_##name(void)                    \
  {                                                 \
    run_weft(2, name##_main, NULL);                 \
    fprintf(stderr, "child " #name ": returned\n"); \
    exit(0);                                        \
  }
CHILD(runlock_unlocked)
CHILD(runlock_twice)
CHILD(runlock_write_locked)
CHILD(unlock_unlocked)
CHILD(unlock_twice)
CHILD(unlock_read_locked)

static void test_misuse_aborts(void **state)
{
  (void)state;
  expect_child("runlock_unlocked", "runlock of unlocked rwmutex", 30);
  expect_child("runlock_twice", "runlock of unlocked rwmutex", 30);
  expect_child("runlock_write_locked", "runlock of unlocked rwmutex", 30);
  expect_child("unlock_unlocked", "unlock of unlocked rwmutex", 30);
  expect_child("unlock_twice", "unlock of unlocked rwmutex", 30);
  expect_child("unlock_read_locked", "unlock of unlocked rwmutex", 30);
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_many_readers),
      cmocka_unit_test(test_writer_excludes),
      cmocka_unit_test(test_pending_writer_blocks_readers),
      cmocka_unit_test(test_writer_not_starved),
      cmocka_unit_test(test_misuse_aborts),
  };
  const struct child_scenario children[] = {
      {"runlock_unlocked", child_runlock_unlocked},
      {"runlock_twice", child_runlock_twice},
      {"runlock_write_locked", child_runlock_write_locked},
      {"unlock_unlocked", child_unlock_unlocked},
      {"unlock_twice", child_unlock_twice},
      {"unlock_read_locked", child_unlock_read_locked},
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], children,
                        sizeof children / sizeof children[0]);
}
