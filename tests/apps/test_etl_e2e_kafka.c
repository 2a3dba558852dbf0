/* End-to-end delivery tests of weft-etl with a Kafka source (shared/specs/etl.md,
 * "Delivery" and "Shutdown"): the built weft-etl runs as a child process against a
 * librdkafka mock cluster owned by this process (3 brokers, one topic of 4 partitions,
 * fresh for each test), with the three APIs played by a fake HTTP server in this process
 * and a SQLite sink in a fresh temporary directory (removed at the end).
 *
 * Message i goes to partition i % PARTS with event_id "ev-i", so its offset is i / PARTS
 * (one producer, one in flight, in order); a few messages are undecodable on purpose and
 * must end in dead_letters with origin "kafka:TOPIC/PARTITION/OFFSET". Every check reads
 * the database: each produced message is stored exactly once (a row or a dead letter),
 * and the group's committed offsets are read with a separate consumer (on this plain
 * thread; no runtime here). The users API counts its requests: each decoded delivery
 * calls it once, so it measures deliveries, duplicates included.
 *
 * Each child is killed after a deadline, so every test is bounded in time. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <sqlite3.h>

#include "child.h"
#include "fakeapi.h"
#include "fixture.h"
#include "weft_test.h"

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#else
#define SANITIZED 0
#endif
/* Waits scale in sanitized builds (the child is slower, the mock's joins are not). */
#define SLOW(ms) ((ms) * (SANITIZED ? 3 : 1))

#define TOPIC          "events"
#define PARTS          4
#define MAX_EVENTS     4096
#define FETCH_API      1
#define OFFSET_COMMIT  8
#define SESSION_PARAMS "&session_timeout_ms=3000&heartbeat_ms=300&commit_interval_ms=200"
#define BAD_EVERY      97 /* message i with i % BAD_EVERY == 13 is undecodable (when on) */

/* ---- the cluster ---- */

typedef struct cluster {
  rd_kafka_t *owner; /* the handle the mock cluster belongs to */
  rd_kafka_mock_cluster_t *mock;
  char bootstraps[256];
  char source[400]; /* weft-etl's --source, group "g" */
  int produced;
  bool with_bad; /* undecodable messages among those produced */
} cluster;

static rd_kafka_conf_t *conf_with(const char *const *kv)
{
  char err[256];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  for (int i = 0; kv[i]; i += 2)
    assert_int_equal(rd_kafka_conf_set(conf, kv[i], kv[i + 1], err, sizeof err),
                     RD_KAFKA_CONF_OK);
  return conf;
}

static void cluster_start(cluster *c, bool with_bad)
{
  char err[256];
  memset(c, 0, sizeof *c);
  c->with_bad = with_bad;
  c->owner = rd_kafka_new(RD_KAFKA_PRODUCER,
                          conf_with((const char *[]){"log_level", "3", NULL}), err, sizeof err);
  assert_non_null(c->owner);
  c->mock = rd_kafka_mock_cluster_new(c->owner, 3);
  assert_non_null(c->mock);
  snprintf(c->bootstraps, sizeof c->bootstraps, "%s",
           rd_kafka_mock_cluster_bootstraps(c->mock));
  assert_int_equal(rd_kafka_mock_topic_create(c->mock, TOPIC, PARTS, 3), 0);
  snprintf(c->source, sizeof c->source, "kafka://%s/" TOPIC "?group=g" SESSION_PARAMS,
           c->bootstraps);
}

static void cluster_stop(cluster *c)
{
  rd_kafka_mock_cluster_destroy(c->mock);
  rd_kafka_destroy(c->owner);
}

static bool is_bad(const cluster *c, int i)
{
  return c->with_bad && i % BAD_EVERY == 13;
}

static int bad_count(const cluster *c)
{
  int n = 0;
  for (int i = 0; i < c->produced; i++)
    n += is_bad(c, i);
  return n;
}

/* produce: n more messages, message i to partition i % PARTS. */
static void produce(cluster *c, int n)
{
  char err[256];
  assert_true(c->produced + n <= MAX_EVENTS);
  rd_kafka_t *p = rd_kafka_new(
      RD_KAFKA_PRODUCER,
      conf_with((const char *[]){"bootstrap.servers", c->bootstraps, "linger.ms", "5",
                                 "max.in.flight", "1", "log_level", "3", NULL}),
      err, sizeof err);
  assert_non_null(p);
  for (int i = c->produced; i < c->produced + n; i++) {
    char v[400];
    int len = is_bad(c, i)
                  ? snprintf(v, sizeof v, "not json %d", i)
                  : snprintf(v, sizeof v,
                             "{\"event_id\":\"ev-%d\",\"ts\":\"2024-05-01T12:00:00Z\","
                             "\"user_id\":\"u%d\",\"ip\":\"10.0.%d.%d\",\"amount_cents\":%d,"
                             "\"currency\":\"EUR\"}",
                             i, i % 50, i / 256, i % 256, 100 + i);
    while (rd_kafka_producev(p, RD_KAFKA_V_TOPIC(TOPIC), RD_KAFKA_V_PARTITION(i % PARTS),
                             RD_KAFKA_V_VALUE(v, (size_t)len),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                             RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
      rd_kafka_poll(p, 10);
  }
  assert_int_equal(rd_kafka_flush(p, 20000), 0);
  rd_kafka_destroy(p);
  c->produced += n;
}

/* committed: the group's committed offsets (RD_KAFKA_OFFSET_INVALID: none). Blocks. */
static void committed(const cluster *c, int64_t out[PARTS])
{
  char err[256];
  rd_kafka_t *rk =
      rd_kafka_new(RD_KAFKA_CONSUMER,
                   conf_with((const char *[]){"bootstrap.servers", c->bootstraps, "group.id",
                                              "g", "log_level", "3", NULL}),
                   err, sizeof err);
  assert_non_null(rk);
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(PARTS);
  for (int p = 0; p < PARTS; p++)
    rd_kafka_topic_partition_list_add(l, TOPIC, p);
  assert_int_equal(rd_kafka_committed(rk, l, 15000), RD_KAFKA_RESP_ERR_NO_ERROR);
  for (int p = 0; p < PARTS; p++)
    out[p] = rd_kafka_topic_partition_list_find(l, TOPIC, p)->offset;
  rd_kafka_topic_partition_list_destroy(l);
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
}

/* wait_committed: until every partition's committed offset is want; false after
 * timeout_ms. */
static bool wait_committed(const cluster *c, int64_t want, int timeout_ms)
{
  int64_t end = mono_ms() + timeout_ms, off[PARTS];
  for (;;) {
    int ok = 0;
    committed(c, off);
    for (int p = 0; p < PARTS; p++)
      ok += off[p] == want;
    if (ok == PARTS)
      return true;
    if (mono_ms() > end)
      return false;
    sleep_ms(200);
  }
}

/* ---- the child ---- */

typedef struct daemon child;

/* start_etl: weft-etl on the cluster's topic (group "g") into db, with the common flags
 * and then extra (NULL: none). */
static void start_etl(child *c, const cluster *cl, const char *db, const char *const *extra)
{
  char sink[400];
  snprintf(sink, sizeof sink, "sqlite:%s", db);
  const char *args[48] = {"--source",
                          cl->source,
                          "--users",
                          fake.url,
                          "--geo",
                          fake.url,
                          "--fx",
                          fake.url,
                          "--sink",
                          sink,
                          "--listen",
                          "127.0.0.1:0",
                          "--debug-listen",
                          "",
                          "--log-format",
                          "text",
                          "--batch-wait",
                          "10ms",
                          "--drain-timeout",
                          "20s"};
  int n = 20;
  for (int i = 0; extra && extra[i] && n < 47; i++)
    args[n++] = extra[i];
  args[n] = NULL;
  memset(c, 0, sizeof *c);
  spawn_daemon_into(c, "etl", args, NULL, -1);
}

/* stop_etl: SIGTERM, and the exit code it drained with (must be 0). */
static void stop_etl(child *c)
{
  kill(c->pid, SIGTERM);
  int rc = wait_exit_code(c, SLOW(30000));
  if (rc != 0)
    dump_log(c);
  assert_int_equal(rc, 0);
}

static void kill_etl(child *c)
{
  kill_daemon(c);
  if (!(c->reaped && WIFSIGNALED(c->status))) { /* it had ended by itself: show why */
    fprintf(stderr, "weft-etl ended before its SIGKILL (status 0x%x)\n", c->status);
    dump_log(c);
  }
  assert_true(c->reaped && WIFSIGNALED(c->status));
}

/* ---- the database ---- */

/* What one database holds: which events have a row, which messages a dead letter. */
typedef struct stored {
  unsigned char row[MAX_EVENTS];   /* rows with event_id ev-i */
  unsigned char dead[MAX_EVENTS];  /* dead letters whose origin is message i */
  int rows, dead_letters, foreign; /* foreign: rows or dead letters of no message */
} stored;

/* db_count: what sql counts; -1 while the database or its tables do not exist. */
static long long db_count(const char *db, const char *sql)
{
  sqlite3 *h;
  sqlite3_stmt *st;
  long long v = -1;
  if (access(db, F_OK) != 0)
    return -1;
  if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
    sqlite3_close(h);
    return -1;
  }
  sqlite3_busy_timeout(h, 5000);
  if (sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK) {
    if (sqlite3_step(st) == SQLITE_ROW)
      v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
  }
  sqlite3_close(h);
  return v;
}

static const char COUNT_ALL[] =
    "SELECT (SELECT count(*) FROM enriched_events) + (SELECT count(*) FROM dead_letters)";

/* read_stored: every row and dead letter of db into s, mapped back to its message. */
static void read_stored(const char *db, stored *s)
{
  sqlite3 *h;
  sqlite3_stmt *st;
  memset(s, 0, sizeof *s);
  assert_int_equal(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
  sqlite3_busy_timeout(h, 5000);
  assert_int_equal(sqlite3_prepare_v2(h, "SELECT event_id FROM enriched_events", -1, &st, NULL),
                   SQLITE_OK);
  while (sqlite3_step(st) == SQLITE_ROW) {
    int i;
    s->rows++;
    if (sscanf((const char *)sqlite3_column_text(st, 0), "ev-%d", &i) == 1 && i >= 0 &&
        i < MAX_EVENTS)
      s->row[i]++;
    else
      s->foreign++;
  }
  sqlite3_finalize(st);
  assert_int_equal(sqlite3_prepare_v2(h, "SELECT origin FROM dead_letters", -1, &st, NULL),
                   SQLITE_OK);
  while (sqlite3_step(st) == SQLITE_ROW) {
    int p, off;
    const unsigned char *o = sqlite3_column_text(st, 0);
    s->dead_letters++;
    if (o && sscanf((const char *)o, "kafka:" TOPIC "/%d/%d", &p, &off) == 2 && p >= 0 &&
        p < PARTS && off >= 0 && off * PARTS + p < MAX_EVENTS)
      s->dead[off * PARTS + p]++;
    else
      s->foreign++;
  }
  sqlite3_finalize(st);
  sqlite3_close(h);
}

/* wait_all: until db holds want rows and dead letters; false after timeout_ms. */
static bool wait_all(const char *db, long long want, int timeout_ms)
{
  int64_t end = mono_ms() + timeout_ms;
  while (db_count(db, COUNT_ALL) < want) {
    if (mono_ms() > end)
      return false;
    sleep_ms(20);
  }
  return true;
}

/* expect_exactly_once: every produced message is stored once across the databases (a
 * row for an event, a dead letter for an undecodable message), and nothing else. */
static void expect_exactly_once(const cluster *c, const stored *const *dbs, int ndb)
{
  int missing = 0, twice = 0, wrong = 0;
  for (int i = 0; i < c->produced; i++) {
    int rows = 0, dead = 0;
    for (int d = 0; d < ndb; d++)
      rows += dbs[d]->row[i], dead += dbs[d]->dead[i];
    if (rows + dead == 0)
      missing++;
    else if (ndb == 1 && rows + dead > 1)
      twice++;
    else if (is_bad(c, i) ? rows > 0 || dead == 0 : dead > 0 || rows == 0)
      wrong++;
  }
  for (int d = 0; d < ndb; d++)
    assert_int_equal(dbs[d]->foreign, 0);
  if (missing || twice || wrong)
    fail_msg("%d of %d messages missing, %d stored twice, %d stored as the wrong kind", missing,
             c->produced, twice, wrong);
}

/* ---- fixtures ---- */

static int setup(void **state)
{
  (void)state;
  if (!app_find_bin(NULL, "apps/etl/weft-etl")) {
    fprintf(stderr, "weft-etl not built (%s): skipped\n", app_bin);
    skip();
  }
  app_make_tmp_dir("etl-kafka");
  fake_start();
  return 0;
}

static int teardown(void **state)
{
  (void)state;
  fake_stop();
  reap_children(); /* after a failed check: no child outlives its test */
  app_remove_tmp_dir();
  return 0;
}

static void db_in_tmp(char *buf, size_t len, const char *name)
{
  snprintf(buf, len, "%s/%s", tmp_dir, name);
}

/* ---- the tests ---- */

/* SIGTERM drains: exit 0; what was read is stored (each partition's stored offsets are
 * a prefix, since it hands out in order and the drain writes everything it handed out);
 * the committed offsets are those prefixes' ends; a restart stores the rest, each once. */
static void test_sigterm_drains_and_commits(void **state)
{
  (void)state;
  enum { N = 2000 };
  static cluster cl;
  static stored st;
  char db[320];
  db_in_tmp(db, sizeof db, "term.db");
  cluster_start(&cl, false);
  produce(&cl, N);
  atomic_store(&fake.delay_ms, 20); /* ~400 events/s: slow enough to stop it midway */
  child c;
  int64_t t0 = mono_ms();
  start_etl(
      &c, &cl, db,
      ARGS("--enrich-concurrency", "8", "--channel-capacity", "50", "--batch-size", "50"));
  if (!wait_all(db, 200, SLOW(30000))) {
    dump_log(&c);
    fail_msg("nothing stored within 30 s");
  }
  int64_t t_first = mono_ms();
  stop_etl(&c);
  int64_t t_stop = mono_ms();
  read_stored(db, &st);
  assert_true(st.rows < N); /* stopped midway, or the test proves nothing */
  int64_t off[PARTS], prefix[PARTS];
  committed(&cl, off);
  for (int p = 0; p < PARTS; p++) {
    prefix[p] = 0;
    while (prefix[p] * PARTS + p < N && st.row[prefix[p] * PARTS + p])
      prefix[p]++;
    for (int64_t o = prefix[p]; o * PARTS + p < N; o++)
      assert_int_equal(st.row[o * PARTS + p], 0); /* a gap: something read was not stored */
    int64_t want = prefix[p] ? prefix[p] : RD_KAFKA_OFFSET_INVALID;
    if (off[p] != want && !(prefix[p] == 0 && off[p] == 0))
      fail_msg("partition %d: committed %lld, stored prefix %lld", p, (long long)off[p],
               (long long)prefix[p]);
  }
  int read = atomic_load(&fake.hits[USERS]);
  printf("sigterm: %d of %d stored at the signal (users API asked %d times), committed "
         "%lld/%lld/%lld/%lld; first rows after %lld ms, drain %lld ms\n",
         st.rows, N, read, (long long)off[0], (long long)off[1], (long long)off[2],
         (long long)off[3], (long long)(t_first - t0), (long long)(t_stop - t_first));
  assert_int_equal(read, st.rows); /* every event read (enriched) was stored */

  atomic_store(&fake.delay_ms, 0);
  start_etl(&c, &cl, db, NULL);
  if (!wait_all(db, N, SLOW(30000))) {
    dump_log(&c);
    fail_msg("the restart did not store the rest");
  }
  stop_etl(&c);
  read_stored(db, &st);
  expect_exactly_once(&cl, (const stored *[]){&st}, 1);
  assert_int_equal(st.rows, N);
  committed(&cl, off);
  for (int p = 0; p < PARTS; p++)
    assert_int_equal(off[p], N / PARTS);
  printf("sigterm: after the restart %d rows; users API asked %d times for %d events\n",
         st.rows, atomic_load(&fake.hits[USERS]), N);
  cluster_stop(&cl);
}

/* Broker errors: Fetch and OffsetCommit answered with retriable errors, and one broker
 * down for a while: everything arrives, each once, and the commits land. */
static void test_broker_errors(void **state)
{
  (void)state;
  enum { N = 2000 };
  static cluster cl;
  static stored st;
  char db[320];
  db_in_tmp(db, sizeof db, "errors.db");
  cluster_start(&cl, true);
  produce(&cl, N);                  /* a producer cannot deliver to a broker that is down */
  atomic_store(&fake.delay_ms, 20); /* ~400 events/s: the broker goes down midway */
  rd_kafka_mock_push_request_errors(
      cl.mock, FETCH_API, 4, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
      RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
      RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
  rd_kafka_mock_push_request_errors(
      cl.mock, OFFSET_COMMIT, 4, RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS,
      RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE, RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
      RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT);
  child c;
  int64_t t0 = mono_ms();
  start_etl(&c, &cl, db, ARGS("--enrich-concurrency", "8"));
  if (!wait_all(db, 100, SLOW(30000))) {
    dump_log(&c);
    fail_msg("nothing stored within 30 s");
  }
  rd_kafka_mock_broker_set_down(cl.mock, 2); /* its partitions, maybe the coordinator */
  long long at_down = db_count(db, COUNT_ALL);
  sleep_ms(2000);
  long long at_up = db_count(db, COUNT_ALL);
  atomic_store(&fake.delay_ms, 0);
  rd_kafka_mock_broker_set_up(cl.mock, 2);
  rd_kafka_mock_push_request_errors(cl.mock, FETCH_API, 2,
                                    RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                                    RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE);
  if (!wait_all(db, N, SLOW(40000))) {
    dump_log(&c);
    fail_msg("not everything arrived after the broker errors");
  }
  int64_t t_stored = mono_ms();
  /* the commits land once the group is whole again (the member may have been evicted
   * while the coordinator was down: it rejoins, and its marks are carried over) */
  if (!wait_committed(&cl, N / PARTS, SLOW(30000))) {
    dump_log(&c);
    fail_msg("the offsets were not committed within 30 s of the last row");
  }
  int64_t t_committed = mono_ms();
  stop_etl(&c);
  int64_t t_end = mono_ms();
  read_stored(db, &st);
  expect_exactly_once(&cl, (const stored *[]){&st}, 1);
  int64_t off[PARTS];
  committed(&cl, off);
  for (int p = 0; p < PARTS; p++)
    if (off[p] != N / PARTS) {
      dump_log(&c);
      fail_msg("partition %d: committed %lld, want %d", p, (long long)off[p], N / PARTS);
    }
  printf("broker errors: broker 2 down for 2 s from %lld to %lld stored; %d rows + %d dead "
         "letters of %d stored after %lld ms, committed %lld ms later, exit after %lld ms; "
         "users API asked %d times\n",
         at_down, at_up, st.rows, st.dead_letters, N, (long long)(t_stored - t0),
         (long long)(t_committed - t_stored), (long long)(t_end - t0),
         atomic_load(&fake.hits[USERS]));
  cluster_stop(&cl);
}

/* Chaos: SIGKILL at random moments (seeded), restart each time, then let it finish:
 * every message in enriched_events or dead_letters exactly once. */
static void test_chaos_sigkill(void **state)
{
  (void)state;
  enum { N = 3000, KILLS = 4 };
  static cluster cl;
  static stored st;
  char db[320];
  db_in_tmp(db, sizeof db, "chaos.db");
  uint64_t rnd = test_seed() | 1;
  cluster_start(&cl, true);
  produce(&cl, N);
  atomic_store(&fake.delay_ms, 20); /* ~400 events/s: the kills land while it writes */
  child c;
  int64_t t0 = mono_ms();
  long long at_kill[KILLS];
  for (int k = 0; k < KILLS; k++) {
    long long before = db_count(db, COUNT_ALL);
    start_etl(&c, &cl, db, ARGS("--enrich-concurrency", "8"));
    /* a random moment once it writes again (after its join); the second kill: maybe
     * still in the join */
    int64_t end = mono_ms() + SLOW(15000);
    while (k != 1 && db_count(db, COUNT_ALL) <= (before < 0 ? 0 : before) && mono_ms() < end)
      sleep_ms(5);
    sleep_ms((int)(test_rand(&rnd) % (k != 1 ? 1500 : 5000)));
    kill_etl(&c);
    at_kill[k] = db_count(db, COUNT_ALL);
  }
  atomic_store(&fake.delay_ms, 0);
  start_etl(&c, &cl, db, NULL);
  if (!wait_all(db, N, SLOW(40000))) {
    dump_log(&c);
    fail_msg("not everything stored after the restarts");
  }
  stop_etl(&c);
  int64_t t_end = mono_ms();
  read_stored(db, &st);
  expect_exactly_once(&cl, (const stored *[]){&st}, 1);
  assert_int_equal(st.dead_letters, bad_count(&cl));
  assert_int_equal(st.rows + st.dead_letters, N);
  int decoded_deliveries = atomic_load(&fake.hits[USERS]);
  printf("chaos: %d kills (stored at each: %lld %lld %lld %lld), %d rows + %d dead letters "
         "of %d in %lld ms; events delivered to enrichment %d (%d duplicates), stored once\n",
         KILLS, at_kill[0], at_kill[1], at_kill[2], at_kill[3], st.rows, st.dead_letters, N,
         (long long)(t_end - t0), decoded_deliveries, decoded_deliveries - st.rows);
  cluster_stop(&cl);
}

/* Two processes in one group share the partitions (each stores some); one is killed and
 * the other takes its partitions over after the session timeout; nothing is lost. Each
 * process writes its own database, so who stored what is known. */
static void test_two_processes_takeover(void **state)
{
  (void)state;
  enum { N = 2000 };
  static cluster cl;
  static stored sa, sb;
  char dba[320], dbb[320];
  db_in_tmp(dba, sizeof dba, "a.db");
  db_in_tmp(dbb, sizeof dbb, "b.db");
  cluster_start(&cl, false);
  produce(&cl, N / 2);
  atomic_store(&fake.delay_ms, 20); /* ~100 events/s each with 2 workers: both get some */
  child a, b;
  int64_t t0 = mono_ms();
  start_etl(&a, &cl, dba, ARGS("--enrich-concurrency", "2"));
  start_etl(&b, &cl, dbb, ARGS("--enrich-concurrency", "2"));
  int64_t end = mono_ms() + SLOW(30000);
  while ((db_count(dba, COUNT_ALL) < 20 || db_count(dbb, COUNT_ALL) < 20) && mono_ms() < end)
    sleep_ms(20);
  if (db_count(dba, COUNT_ALL) < 20 || db_count(dbb, COUNT_ALL) < 20) {
    dump_log(&a);
    dump_log(&b);
    fail_msg("the two processes did not share the partitions");
  }
  kill_etl(&a);
  int64_t t_kill = mono_ms();
  long long a_rows = db_count(dba, COUNT_ALL), b_before = db_count(dbb, COUNT_ALL);
  atomic_store(&fake.delay_ms, 0);
  produce(&cl, N / 2);
  end = mono_ms() + SLOW(40000);
  for (;;) {
    read_stored(dba, &sa);
    read_stored(dbb, &sb);
    int have = 0;
    for (int i = 0; i < N; i++)
      have += sa.row[i] + sb.row[i] > 0;
    if (have == N)
      break;
    if (mono_ms() > end) {
      dump_log(&b);
      fail_msg("%d of %d stored after the takeover", have, N);
    }
    sleep_ms(50);
  }
  int64_t t_all = mono_ms();
  sleep_ms(500); /* the periodic commit */
  stop_etl(&b);
  read_stored(dba, &sa);
  read_stored(dbb, &sb);
  expect_exactly_once(&cl, (const stored *[]){&sa, &sb}, 2);
  /* b took a's partitions over: it stored events of every partition after the kill */
  int b_parts = 0;
  for (int p = 0; p < PARTS; p++) {
    bool any = false;
    for (int i = N / 2 + p; i < N; i += PARTS)
      any |= sb.row[i] != 0;
    b_parts += any;
  }
  assert_int_equal(b_parts, PARTS);
  int overlap = 0;
  for (int i = 0; i < N; i++)
    overlap += sa.row[i] && sb.row[i];
  int64_t off[PARTS];
  committed(&cl, off);
  for (int p = 0; p < PARTS; p++)
    assert_int_equal(off[p], N / PARTS);
  printf("two processes: a stored %lld before its kill, b %lld then; b stored all %d after "
         "%lld ms (takeover incl. session timeout); %d events stored by both; total %lld ms\n",
         a_rows, b_before, N, (long long)(t_all - t_kill), overlap, (long long)(t_all - t0));
  cluster_stop(&cl);
}

/* A second signal exits 1 at once, committing nothing more: with no periodic commit
 * (a 10 min interval) the group has no committed offset though rows were written, and a
 * restart stores everything, each once. */
static void test_second_signal_no_commit(void **state)
{
  (void)state;
  enum { N = 2000 };
  static cluster cl;
  static stored st;
  char db[320];
  db_in_tmp(db, sizeof db, "second.db");
  cluster_start(&cl, false);
  snprintf(cl.source, sizeof cl.source,
           "kafka://%s/" TOPIC "?group=g&session_timeout_ms=3000&commit_interval_ms=600000",
           cl.bootstraps);
  produce(&cl, N);
  atomic_store(&fake.delay_ms, 50); /* the drain of 1000s of events takes seconds */
  child c;
  start_etl(&c, &cl, db, ARGS("--enrich-concurrency", "8"));
  if (!wait_all(db, 50, SLOW(30000))) {
    dump_log(&c);
    fail_msg("nothing stored within 30 s");
  }
  kill(c.pid, SIGTERM);
  sleep_ms(200);
  kill(c.pid, SIGTERM);
  assert_int_equal(wait_exit_code(&c, SLOW(10000)), 1);
  long long at_exit = db_count(db, COUNT_ALL);
  assert_true(at_exit > 0 && at_exit < N);
  int64_t off[PARTS];
  committed(&cl, off);
  for (int p = 0; p < PARTS; p++)
    assert_int_equal(off[p], RD_KAFKA_OFFSET_INVALID);
  atomic_store(&fake.delay_ms, 0);
  start_etl(&c, &cl, db, NULL);
  if (!wait_all(db, N, SLOW(30000))) {
    dump_log(&c);
    fail_msg("the restart did not store everything");
  }
  stop_etl(&c);
  read_stored(db, &st);
  expect_exactly_once(&cl, (const stored *[]){&st}, 1);
  printf("second signal: exit 1 with %lld of %d stored, nothing committed; after the "
         "restart %d rows (users API asked %d times)\n",
         at_exit, N, st.rows, atomic_load(&fake.hits[USERS]));
  cluster_stop(&cl);
}

int main(int argc, char **argv)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_sigterm_drains_and_commits, setup, teardown),
      cmocka_unit_test_setup_teardown(test_second_signal_no_commit, setup, teardown),
      cmocka_unit_test_setup_teardown(test_broker_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_chaos_sigkill, setup, teardown),
      cmocka_unit_test_setup_teardown(test_two_processes_takeover, setup, teardown),
  };
  return weft_test_main(argc, argv, tests, sizeof tests / sizeof tests[0], NULL, 0);
}
