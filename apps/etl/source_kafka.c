/* source_kafka.c: the Kafka source, a member of a consumer group on one topic
 * (librdkafka's high-level consumer, eager "range" assignor). This file: the pump, the
 * messages, the source's operations, opening and closing; kafka_group.c: commits and
 * rebalances; source_kafka.h: the state they share; offsets.c: one partition's tracker.
 *
 * No thread of the scheduler ever blocks in librdkafka. Every event of the consumer
 * (messages, rebalances, commit results, errors) goes to one queue whose io event writes
 * a byte to a pipe when the queue turns non-empty; one background coroutine, the pump,
 * waits on that pipe and drains the queue with rd_kafka_queue_poll(q, 0). The pump alone
 * talks to librdkafka; the few calls that wait for librdkafka's own threads (subscribe,
 * assign, destroy) run on the blocking pool. Commits are asynchronous (rd_kafka_commit_queue
 * with the result routed to the same queue) and leaving the group goes through
 * rd_kafka_consumer_close_queue.
 *
 *   librdkafka ──queue──▶ pump ──msgs (bounded)──▶ next() ──▶ pipeline ──▶ ack()
 *                          ▲  wake pipe: librdkafka, next() (room again), ack() (revoke
 *                          │  waits for acks), close()
 *
 * The pump wakes on: the queue turning non-empty, the next commit tick, a revoke or
 * commit-retry deadline, and a byte from next(), ack() or close(). Because the queue's
 * io event fires only on empty-to-non-empty, the pump drains it fully each time, except
 * while a message waits for room in msgs: it then stops taking events (so librdkafka's
 * own bounded fetch queue is the backpressure) and next() wakes it when there is room.
 *
 * Offsets: each assigned partition has a tracker (offsets.h). next() records a message as
 * handed out; ack() marks it; the pump commits each partition's low-water mark every
 * commit_interval and on revoke and close, only when it advanced; a failed commit is
 * retried 100 ms later (REBALANCE_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, ...).
 *
 * Generations: each assignment gets a new generation; messages carry the one they were
 * read under. On revoke the source stops handing out (revoking), drops whatever of the
 * old generation still sits in msgs uncommitted (the new owner reads it again), waits up
 * to revoke_timeout for the acks of what it handed out, commits the low-water marks, waits
 * for the commit (same bound) and only then lets librdkafka go on (rd_kafka_assign(NULL)).
 * Acks of another generation, or of a partition no longer assigned, are ignored.
 *
 * Revoke state machine (pump only; revoke_step changes it):
 *
 *   NONE ──revoke event──▶ WAIT_ACKS ──acked or deadline──▶ WAIT_COMMIT
 *     ▲                                        committed, refused │ (KAFKA_REVOKE_REFUSALS)
 *     │                                          or deadline     │
 *     └──────────────── assign(NULL), trackers freed ◀─────────┘
 *
 * Lock: mu guards the partition table, generation and revoking; it is a leaf (nothing is
 * called with it held but the tracker and the metrics), never held across a park. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "source_kafka.h"

/* ---- small helpers ---- */

static kafka_source *from(etl_source *src)
{
  return (kafka_source *)src;
}

/* wake: make the pump's pipe readable. Any thread; never parks. A full pipe is already
 * readable, so EAGAIN is fine. */
static void wake(kafka_source *s)
{
  ssize_t n = write(s->wake_wr, "w", 1);
  (void)n;
}

/* drain_wake: empty the pipe (non-blocking). Pump only. */
static void drain_wake(kafka_source *s)
{
  char buf[64];
  while (read(s->wake_rd, buf, sizeof buf) > 0) {
  }
}

/* find_part: the partition's entry or NULL. Caller holds mu, or is the pump. */
kafka_partition *kafka_find_part(kafka_source *s, int32_t partition)
{
  for (size_t i = 0; i < s->nparts; i++)
    if (s->parts[i].partition == partition)
      return &s->parts[i];
  return NULL;
}

void kafka_set_fatal(kafka_source *s, int err, const char *what)
{
  int none = 0;
  if (atomic_compare_exchange_strong(&s->fatal, &none, err))
    weft_log_error(s->log, NULL, "kafka source failed", WEFT_STR("what", what),
                   WEFT_ERRNO("err", err));
  if (!s->msgs_closed) { /* next() returns the error once msgs is empty */
    s->msgs_closed = true;
    weft_chan_close(s->msgs);
  }
}

/* ---- calls that wait for librdkafka's threads: on the blocking pool ---- */

typedef struct assign_call {
  rd_kafka_t *rk;
  const rd_kafka_topic_partition_list_t *parts; /* NULL: unassign everything */
} assign_call;

static long assign_blocking(void *arg)
{
  assign_call *c = arg;
  return -(long)rd_kafka_assign(c->rk, c->parts);
}

void kafka_assign(kafka_source *s, const rd_kafka_topic_partition_list_t *parts)
{
  assign_call c = {s->rk, parts};
  long err = weft_blocking(assign_blocking, &c);
  if (err != 0)
    weft_log_warn(s->log, NULL, "kafka assign failed",
                  WEFT_STR("reason", rd_kafka_err2str((rd_kafka_resp_err_t)-err)));
}

static long destroy_blocking(void *arg)
{
  rd_kafka_destroy_flags(arg, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
  return 0;
}

/* ---- messages (pump only) ---- */

/* copy_message: a new etl_message of km, or NULL to skip it (an error message, or a
 * partition not assigned now). A copy that fails is fatal (skipping would lose it). */
static etl_message *copy_message(kafka_source *s, const rd_kafka_message_t *km)
{
  if (km->err) {
    if (km->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
      weft_log_warn(s->log, NULL, "kafka consume error",
                    WEFT_STR("reason", rd_kafka_err2str(km->err)));
    return NULL;
  }
  kafka_partition *p = kafka_find_part(s, km->partition);
  if (!p || s->phase != REVOKE_NONE || atomic_load(&s->stop))
    return NULL;
  etl_message *m = calloc(1, sizeof *m);
  char *data = malloc(km->len + 1);
  if (!m || !data) {
    free(m);
    free(data);
    kafka_set_fatal(s, -ENOMEM, "message copy");
    return NULL;
  }
  if (km->len > 0)
    memcpy(data, km->payload, km->len);
  data[km->len] = '\0';
  m->data = data;
  m->len = km->len;
  m->origin = (etl_origin){km->partition, km->offset, s->generation};
  snprintf(m->origin_text, sizeof m->origin_text, "kafka:%s/%d/%lld", s->topic,
           (int)km->partition, (long long)km->offset);
  p->fetched = km->offset + 1;
  return m;
}

/* flush_held: move the held fetch event's messages into msgs while there is room.
 * Returns true when nothing is held any more; false when msgs is full (want_room set,
 * so next() wakes the pump). */
static bool flush_held(kafka_source *s)
{
  while (s->held) {
    if (!s->held_msg) {
      const rd_kafka_message_t *km = rd_kafka_event_message_next(s->held);
      if (!km) {
        rd_kafka_event_destroy(s->held);
        s->held = NULL;
      } else {
        s->held_msg = copy_message(s, km);
      }
      continue;
    }
    if (s->msgs_closed || atomic_load(&s->stop) || s->phase != REVOKE_NONE) {
      etl_message_free(s->held_msg); /* never handed out: read again by the next owner */
      s->held_msg = NULL;
      continue;
    }
    if (weft_chan_try_send(s->msgs, &s->held_msg) == 0) {
      s->held_msg = NULL;
      continue;
    }
    atomic_store(&s->want_room, true);
    if (weft_chan_try_send(s->msgs, &s->held_msg) != 0) /* next() may have taken one */
      return false;
    s->held_msg = NULL;
  }
  return true;
}

static void on_error(kafka_source *s, rd_kafka_event_t *ev)
{
  if (rd_kafka_event_error_is_fatal(ev)) {
    char reason[256];
    rd_kafka_fatal_error(s->rk, reason, sizeof reason);
    weft_log_error(s->log, NULL, "kafka fatal error", WEFT_STR("reason", reason));
    kafka_set_fatal(s, -EIO, "kafka");
    return;
  }
  weft_log_warn(s->log, NULL, "kafka error",
                WEFT_STR("reason", rd_kafka_event_error_string(ev)));
}

/* serve_queue: take events until the queue is empty or a message waits for room. */
static void serve_queue(kafka_source *s)
{
  rd_kafka_event_t *ev;
  while (!s->held && (ev = rd_kafka_queue_poll(s->queue, 0)) != NULL) {
    switch (rd_kafka_event_type(ev)) {
    case RD_KAFKA_EVENT_FETCH:
      s->held = ev; /* flush_held destroys it */
      flush_held(s);
      continue;
    case RD_KAFKA_EVENT_REBALANCE:
      kafka_on_rebalance(s, ev);
      break;
    case RD_KAFKA_EVENT_OFFSET_COMMIT:
      kafka_on_commit_result(s, ev);
      break;
    case RD_KAFKA_EVENT_ERROR:
      on_error(s, ev);
      break;
    default:
      break;
    }
    rd_kafka_event_destroy(ev);
  }
}

/* ---- the pump ---- */

/* refresh_lag: high watermark - read position, summed over the assigned partitions whose
 * both are known (librdkafka's cached watermarks: no request). */
static void refresh_lag(kafka_source *s)
{
  int64_t sum = -1;
  for (size_t i = 0; i < s->nparts; i++) {
    int64_t lo, hi;
    kafka_partition *p = &s->parts[i];
    if (p->fetched < 0 ||
        rd_kafka_get_watermark_offsets(s->rk, s->topic, p->partition, &lo, &hi) != 0 || hi < 0)
      continue;
    int64_t lag = hi > p->fetched ? hi - p->fetched : 0;
    sum = (sum < 0 ? 0 : sum) + lag;
    if (s->lag_gauge) {
      char label[16];
      snprintf(label, sizeof label, "%d", (int)p->partition);
      weft_gauge_set(weft_gauge_vec_with(s->lag_gauge, label), (double)lag);
    }
  }
  atomic_store(&s->lag, sum);
}

/* tick: the periodic commit (and its retry) and the lag refresh. */
static void tick(kafka_source *s)
{
  int64_t now = weft_now();
  bool commit_now = s->retry_at && now >= s->retry_at;
  if (now >= s->next_tick) {
    refresh_lag(s);
    s->next_tick = now + s->commit_interval;
    commit_now = true;
  }
  if (commit_now && s->phase == REVOKE_NONE && kafka_may_commit(s)) {
    s->retry_at = 0;
    kafka_commit_marks(s);
  }
}

/* final_commit_pending: on a close with commit, the marks are committed while this
 * member is still in the group, retried (the coordinator may be moving: "waiting for
 * coordinator", REBALANCE_IN_PROGRESS) until they land or revoke_timeout passes; only then
 * does it leave. Leaving first could end the consumer before a failed commit was retried. */
static bool final_commit_pending(kafka_source *s)
{
  if (!atomic_load(&s->close_commit) || s->phase != REVOKE_NONE)
    return false;
  int64_t now = weft_now();
  if (!s->final_until) {
    s->final_until = now + s->revoke_timeout;
    s->retry_at = 0;
    kafka_commit_marks(s);
  }
  if (kafka_all_committed(s))
    return false;
  if (now >= s->final_until) {
    weft_log_warn(s->log, NULL, "kafka: final commit not confirmed in time; leaving the group");
    return false;
  }
  return true; /* tick() retries at retry_at */
}

/* start_close: leave the group. A revoke this triggers commits what is left. */
static void start_close(kafka_source *s)
{
  s->closing = true;
  rd_kafka_error_t *err = rd_kafka_consumer_close_queue(s->rk, s->queue);
  if (err) {
    weft_log_warn(s->log, NULL, "kafka close failed",
                  WEFT_STR("reason", rd_kafka_error_string(err)));
    rd_kafka_error_destroy(err);
  }
}

static int64_t next_deadline(kafka_source *s)
{
  int64_t d = s->next_tick;
  if (s->phase != REVOKE_NONE && s->phase_deadline < d)
    d = s->phase_deadline;
  if (s->retry_at && s->retry_at < d)
    d = s->retry_at;
  if (s->final_until && !s->closing && s->final_until < d)
    d = s->final_until;
  if (s->closing && weft_now() + KAFKA_CLOSE_POLL < d) /* closed() raises no event */
    d = weft_now() + KAFKA_CLOSE_POLL;
  return d;
}

static void pump(void *arg)
{
  kafka_source *s = arg;
  s->next_tick = weft_now() + s->commit_interval;
  while (!atomic_load(&s->abort_now)) {
    drain_wake(s);
    if (atomic_load(&s->stop) && !s->closing && !final_commit_pending(s))
      start_close(s);
    if (flush_held(s))
      serve_queue(s);
    if (s->phase != REVOKE_NONE)
      kafka_revoke_step(s);
    tick(s);
    if (s->closing && s->phase == REVOKE_NONE && rd_kafka_consumer_closed(s->rk))
      break;
    weft_wait_readable(s->wake_rd, next_deadline(s));
  }
  if (s->held_msg)
    etl_message_free(s->held_msg);
  if (s->held)
    rd_kafka_event_destroy(s->held);
  s->held_msg = NULL;
  s->held = NULL;
  if (!s->msgs_closed)
    weft_chan_close(s->msgs);
  s->msgs_closed = true;
  weft_chan_close(s->done);
}

/* ---- the source's operations ---- */

/* hand_out: record m as handed out, or false to drop it (old generation, revoking, or a
 * partition no longer ours: the next owner reads it again). */
static bool hand_out(kafka_source *s, etl_message *m, int *err)
{
  bool ok = false;
  weft_mutex_lock(&s->mu);
  kafka_partition *p = kafka_find_part(s, m->origin.partition);
  if (p && !s->revoking && m->origin.generation == s->generation) {
    *err = etl_offsets_hand_out(&p->offsets, m->origin.offset);
    ok = *err == 0;
  }
  weft_mutex_unlock(&s->mu);
  return ok;
}

static int kafka_next(etl_source *src, weft_ctx *ctx, etl_message **out)
{
  kafka_source *s = from(src);
  for (;;) {
    etl_message *m = NULL;
    int err = atomic_load(&s->fatal);
    if (err)
      return err;
    int rc = weft_chan_recv_ctx(s->msgs, &m, ctx);
    if (rc == -EPIPE)
      return atomic_load(&s->fatal) ? atomic_load(&s->fatal) : -EIO;
    if (rc < 0)
      return rc;
    if (atomic_exchange(&s->want_room, false))
      wake(s);
    if (hand_out(s, m, &err)) {
      *out = m;
      return 0;
    }
    etl_message_free(m);
    if (err) { /* untracked, L could pass it: stop rather than lose it */
      atomic_store(&s->fatal, err);
      return err;
    }
  }
}

static void kafka_ack(etl_source *src, const etl_origin *o)
{
  kafka_source *s = from(src);
  bool wake_pump = false;
  weft_mutex_lock(&s->mu);
  kafka_partition *p = kafka_find_part(s, o->partition);
  if (p && o->generation == s->generation && etl_offsets_ack(&p->offsets, o->offset))
    wake_pump = s->revoking && etl_offsets_pending(&p->offsets) == 0;
  weft_mutex_unlock(&s->mu);
  if (wake_pump) /* after unlocking: the revoke may go on */
    wake(s);
}

static int64_t kafka_lag(etl_source *src)
{
  return atomic_load(&from(src)->lag);
}

/* destroy_bounded: rd_kafka_destroy on the blocking pool, given up after
 * KAFKA_DESTROY_TIMEOUT. librdkafka's destroy can hang (its main thread spinning while it
 * waits for its own references, seen here about once in twenty closes under a loaded mock
 * coordinator; upstream reports the like); the handle then stays with its pool thread
 * and the process goes on to exit. Safe because nothing librdkafka still holds points
 * into s: no callback takes an opaque, and the queue was destroyed first. */
static void destroy_bounded(kafka_source *s)
{
  weft_ctx *limit = weft_ctx_with_timeout(NULL, KAFKA_DESTROY_TIMEOUT);
  long ignored;
  if (!limit) {
    weft_blocking(destroy_blocking, s->rk);
    return;
  }
  if (weft_blocking_ctx(limit, destroy_blocking, s->rk, &ignored, NULL) != 0)
    weft_log_error(s->log, NULL, "kafka: the client did not shut down in time; abandoned");
  weft_ctx_release(limit);
}

static void kafka_free(kafka_source *s)
{
  if (s->queue) {
    rd_kafka_queue_io_event_enable(s->queue, -1, NULL, 0);
    rd_kafka_queue_destroy(s->queue);
  }
  if (s->rk)
    destroy_bounded(s);
  etl_message *m;
  while (s->msgs && weft_chan_try_recv(s->msgs, &m) == 0)
    etl_message_free(m);
  weft_chan_release(s->msgs);
  weft_chan_release(s->done);
  for (size_t i = 0; i < s->nparts; i++)
    etl_offsets_free(&s->parts[i].offsets);
  free(s->parts);
  free(s->carry);
  if (s->wake_rd >= 0)
    weft_close(s->wake_rd);
  if (s->wake_wr >= 0)
    close(s->wake_wr);
  weft_logger_release(s->log);
  free(s->topic);
  free(s);
}

static int kafka_close(etl_source *src, weft_ctx *ctx, bool commit)
{
  kafka_source *s = from(src);
  atomic_store(&s->close_commit, commit);
  atomic_store(&s->stop, true);
  wake(s);
  int rc = weft_chan_recv_ctx(s->done, NULL, ctx);
  if (rc != -EPIPE) { /* ctx is done: give up leaving the group politely */
    atomic_store(&s->abort_now, true);
    wake(s);
    weft_chan_recv(s->done, NULL, WEFT_NO_DEADLINE);
  } else {
    rc = 0;
  }
  kafka_free(s);
  return rc;
}

static const etl_source_ops kafka_ops = {
    .name = "kafka",
    .next = kafka_next,
    .ack = kafka_ack,
    .lag = kafka_lag,
    .close = kafka_close,
};

/* ---- opening ---- */

static int conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *err,
                    size_t errlen)
{
  char why[256];
  if (rd_kafka_conf_set(conf, key, value, why, sizeof why) == RD_KAFKA_CONF_OK)
    return 0;
  snprintf(err, errlen, "kafka: %s=%s: %s", key, value, why);
  return -EINVAL;
}

static int make_conf(const etl_kafka_options *o, rd_kafka_conf_t **out, char *err,
                     size_t errlen)
{
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  char ms[32];
  int rc = conf_set(conf, "bootstrap.servers", o->brokers, err, errlen);
  const char *fixed[] = {"group.id",
                         o->group,
                         "enable.auto.commit",
                         "false",
                         "enable.auto.offset.store",
                         "false",
                         "auto.offset.reset",
                         "earliest",
                         "partition.assignment.strategy",
                         "range",
                         NULL};
  for (int i = 0; rc == 0 && fixed[i]; i += 2)
    rc = conf_set(conf, fixed[i], fixed[i + 1], err, errlen);
  if (rc == 0 && o->session_timeout > 0) {
    snprintf(ms, sizeof ms, "%lld", (long long)(o->session_timeout / 1000000));
    rc = conf_set(conf, "session.timeout.ms", ms, err, errlen);
  }
  for (int i = 0; rc == 0 && o->extra && o->extra[i] && o->extra[i + 1]; i += 2)
    rc = conf_set(conf, o->extra[i], o->extra[i + 1], err, errlen);
  if (rc < 0) {
    rd_kafka_conf_destroy(conf);
    return rc;
  }
  rd_kafka_conf_set_events(conf, RD_KAFKA_EVENT_REBALANCE | RD_KAFKA_EVENT_OFFSET_COMMIT |
                                     RD_KAFKA_EVENT_ERROR);
  *out = conf;
  return 0;
}

static void make_metrics(kafka_source *s, weft_metrics_registry *reg)
{
  weft_counter_vec *commits = NULL, *rebalances = NULL;
  (void)weft_gauge_vec_new(reg, "etl_consumer_lag",
                           "Messages behind the end of the log, per assigned partition", 1,
                           (const char *[]){"partition"}, &s->lag_gauge);
  (void)weft_counter_vec_new(reg, "etl_kafka_commits_total",
                             "Offset commits of the low-water marks, by result", 1,
                             (const char *[]){"result"}, &commits);
  (void)weft_counter_vec_new(reg, "etl_kafka_rebalances_total",
                             "Consumer group rebalances, by type", 1, (const char *[]){"type"},
                             &rebalances);
  s->commits_ok = weft_counter_vec_with(commits, "ok");
  s->commits_failed = weft_counter_vec_with(commits, "error");
  s->rebalances_assign = weft_counter_vec_with(rebalances, "assign");
  s->rebalances_revoke = weft_counter_vec_with(rebalances, "revoke");
}

static long subscribe_blocking(void *arg)
{
  kafka_source *s = arg;
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(l, s->topic, RD_KAFKA_PARTITION_UA);
  rd_kafka_resp_err_t err = rd_kafka_subscribe(s->rk, l);
  rd_kafka_topic_partition_list_destroy(l);
  return -(long)err;
}

/* open_client: the consumer, its queue and the pump's pipe. */
static int open_client(kafka_source *s, rd_kafka_conf_t *conf, char *err, size_t errlen)
{
  char why[512];
  int fds[2];
  s->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof why);
  if (!s->rk) {
    rd_kafka_conf_destroy(conf);
    snprintf(err, errlen, "kafka: %s", why);
    return -EINVAL;
  }
  rd_kafka_poll_set_consumer(s->rk); /* the main queue's events go to the consumer queue */
  s->queue = rd_kafka_queue_get_consumer(s->rk);
  if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) {
    int e = errno;
    snprintf(err, errlen, "kafka: pipe: %s", strerror(e));
    return -e;
  }
  s->wake_rd = fds[0];
  s->wake_wr = fds[1];
  rd_kafka_queue_io_event_enable(s->queue, s->wake_wr, "k", 1);
  long rc = weft_blocking(subscribe_blocking, s);
  if (rc != 0) {
    snprintf(err, errlen, "kafka: subscribe %s: %s", s->topic,
             rd_kafka_err2str((rd_kafka_resp_err_t)-rc));
    return -EINVAL;
  }
  return 0;
}

int etl_source_kafka_open(const etl_kafka_options *o, etl_source **out, char *err,
                          size_t errlen)
{
  if (!o || !o->brokers || !o->topic || !o->group || !*o->topic || !*o->group || !out) {
    snprintf(err, errlen, "kafka: brokers, topic and group are required");
    return -EINVAL;
  }
  rd_kafka_conf_t *conf;
  int rc = make_conf(o, &conf, err, errlen);
  if (rc < 0)
    return rc;
  kafka_source *s = calloc(1, sizeof *s);
  if (!s) {
    rd_kafka_conf_destroy(conf);
    snprintf(err, errlen, "kafka: out of memory");
    return -ENOMEM;
  }
  s->base.ops = &kafka_ops;
  s->wake_rd = s->wake_wr = -1;
  s->topic = strdup(o->topic);
  s->log = o->log ? weft_logger_retain(o->log) : NULL;
  s->commit_interval = o->commit_interval > 0 ? o->commit_interval : KAFKA_DEFAULT_COMMIT;
  s->revoke_timeout = o->revoke_timeout > 0 ? o->revoke_timeout : KAFKA_DEFAULT_REVOKE;
  weft_mutex_init(&s->mu);
  atomic_store(&s->lag, -1);
  s->msgs = weft_chan_new(sizeof(etl_message *), KAFKA_CHAN_CAPACITY);
  s->done = weft_chan_new(1, 0);
  if (o->reg)
    make_metrics(s, o->reg);
  if (!s->topic || !s->msgs || !s->done) {
    rd_kafka_conf_destroy(conf);
    snprintf(err, errlen, "kafka: out of memory");
    rc = -ENOMEM;
    goto err_free;
  }
  rc = open_client(s, conf, err, errlen);
  if (rc < 0)
    goto err_free;
  rc = weft_go_named(pump, s, "kafka pump");
  if (rc < 0) {
    snprintf(err, errlen, "kafka: cannot start the pump: %s", strerror(-rc));
    goto err_free;
  }
  *out = &s->base;
  return 0;
err_free:
  kafka_free(s); /* the consumer never joined: destroying it leaves nothing behind */
  return rc;
}
