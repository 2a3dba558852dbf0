/* kafka_group.c: the Kafka source's side of the consumer group: committing each
 * partition's low-water mark (asynchronously, retried when refused) and the eager
 * rebalances, with the revoke state machine drawn in source_kafka.c. Pump only: every
 * function here runs on the pump coroutine; mu is taken only around the trackers. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "source_kafka.h"

/* ---- commits (pump only) ---- */

static void commit_done_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                           rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
  /* Never called: the event API returns the result as an event (on_commit_result). */
  (void)rk, (void)err, (void)offsets, (void)opaque;
}

/* commit_marks: commit every partition's low-water mark that is above what the broker
 * confirmed. Asynchronous: on_commit_result sees the answer. */
void kafka_commit_marks(kafka_source *s)
{
  /* One commit in flight at a time: while the coordinator is unknown librdkafka holds
   * commits back and fails them all at once later, so retries sent meanwhile would only
   * pile up. The mark sent next is the newest anyway. A result that never comes (it
   * should not) stops blocking after KAFKA_COMMIT_STALE. */
  int64_t now = weft_now();
  if (s->commit_sent_at && now - s->commit_sent_at < KAFKA_COMMIT_STALE) {
    s->retry_at = now + KAFKA_COMMIT_RETRY;
    return;
  }
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)s->nparts + 1);
  weft_mutex_lock(&s->mu);
  for (size_t i = 0; i < s->nparts; i++) {
    int64_t low = etl_offsets_low_water(&s->parts[i].offsets);
    if (low >= 0 && low > s->parts[i].offsets.committed)
      rd_kafka_topic_partition_list_add(l, s->topic, s->parts[i].partition)->offset = low;
  }
  weft_mutex_unlock(&s->mu);
  if (l->cnt > 0) {
    rd_kafka_resp_err_t err = rd_kafka_commit_queue(s->rk, l, s->queue, commit_done_cb, NULL);
    if (err) {
      weft_counter_inc(s->commits_failed);
      s->retry_at = now + KAFKA_COMMIT_RETRY;
    } else {
      s->commit_sent_at = now;
    }
  }
  rd_kafka_topic_partition_list_destroy(l);
}

/* generation_refused: the group takes no commit from this member's generation now (it
 * rebalances, or moved on): retried later, in the next generation. */
static bool generation_refused(rd_kafka_resp_err_t err)
{
  return err == RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS ||
         err == RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION ||
         err == RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID;
}

void kafka_on_commit_result(kafka_source *s, rd_kafka_event_t *ev)
{
  rd_kafka_resp_err_t err = rd_kafka_event_error(ev);
  const rd_kafka_topic_partition_list_t *l = rd_kafka_event_topic_partition_list(ev);
  s->commit_sent_at = 0;
  /* A partition counts as committed only when neither the request nor its own entry
   * failed: a request-level error need not be copied into every entry, and believing
   * such an entry would keep its mark from ever being sent again. */
  bool request_failed = err != RD_KAFKA_RESP_ERR_NO_ERROR;
  weft_mutex_lock(&s->mu);
  for (int i = 0; l && i < l->cnt; i++) {
    kafka_partition *p = kafka_find_part(s, l->elems[i].partition);
    if (l->elems[i].err && !err)
      err = l->elems[i].err;
    else if (!request_failed && !l->elems[i].err && p &&
             l->elems[i].offset > p->offsets.committed)
      p->offsets.committed = l->elems[i].offset;
  }
  weft_mutex_unlock(&s->mu);
  if (!err) {
    weft_counter_inc(s->commits_ok);
    return;
  }
  weft_counter_inc(s->commits_failed);
  if (generation_refused(err) && s->phase != REVOKE_NONE)
    s->revoke_refusals++;
  weft_log(s->log, NULL, generation_refused(err) ? WEFT_LOG_DEBUG : WEFT_LOG_WARN,
           "kafka commit failed, retrying", WEFT_STR("reason", rd_kafka_err2str(err)));
  s->retry_at = weft_now() + KAFKA_COMMIT_RETRY;
}

/* all_acked / all_committed: the revoke's two conditions. Pump only. */
static bool all_acked(kafka_source *s)
{
  size_t pending = 0;
  weft_mutex_lock(&s->mu);
  for (size_t i = 0; i < s->nparts; i++)
    pending += etl_offsets_pending(&s->parts[i].offsets);
  weft_mutex_unlock(&s->mu);
  return pending == 0;
}

bool kafka_all_committed(kafka_source *s)
{
  bool done = true;
  weft_mutex_lock(&s->mu);
  for (size_t i = 0; i < s->nparts; i++)
    if (etl_offsets_low_water(&s->parts[i].offsets) > s->parts[i].offsets.committed)
      done = false;
  weft_mutex_unlock(&s->mu);
  return done;
}

/* may_commit: false once a close without commit began. */
bool kafka_may_commit(kafka_source *s)
{
  return !atomic_load(&s->stop) || atomic_load(&s->close_commit);
}

/* ---- rebalances (pump only) ---- */

/* find_carry: what the last revoke left of partition, or NULL. Pump only. */
static kafka_carry *find_carry(kafka_source *s, int32_t partition)
{
  for (size_t i = 0; i < s->ncarry; i++)
    if (s->carry[i].partition == partition)
      return &s->carry[i];
  return NULL;
}

/* set_assignment: new trackers for the partitions of l, in a new generation, and the
 * start offsets to give assign(): a partition this consumer held in the assignment just
 * revoked resumes at its low-water mark (everything below it was written), which may be
 * above the committed offset when the revoke's commit failed. */
static int set_assignment(kafka_source *s, rd_kafka_topic_partition_list_t *l)
{
  kafka_partition *parts = calloc(l->cnt > 0 ? (size_t)l->cnt : 1, sizeof *parts);
  if (!parts)
    return -ENOMEM;
  size_t n = 0;
  for (int i = 0; i < l->cnt; i++) {
    if (strcmp(l->elems[i].topic, s->topic) != 0)
      continue;
    kafka_partition *p = &parts[n++];
    p->partition = l->elems[i].partition;
    p->fetched = -1;
    etl_offsets_init(&p->offsets);
    kafka_carry *c = find_carry(s, p->partition);
    if (c) {
      etl_offsets_resume(&p->offsets, c->low, c->committed);
      l->elems[i].offset = c->low;
    }
  }
  s->ncarry = 0;
  weft_mutex_lock(&s->mu);
  free(s->parts);
  s->parts = parts;
  s->nparts = n;
  s->generation++;
  s->revoking = false;
  weft_mutex_unlock(&s->mu);
  return 0;
}

static void on_assign(kafka_source *s, const rd_kafka_topic_partition_list_t *given)
{
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_copy(given);
  weft_counter_inc(s->rebalances_assign);
  if (set_assignment(s, l) < 0) {
    kafka_set_fatal(s, -ENOMEM, "assignment");
    kafka_assign(s, NULL);
  } else {
    weft_log_info(s->log, NULL, "kafka partitions assigned", WEFT_INT("count", l->cnt));
    kafka_assign(s, l);
  }
  rd_kafka_topic_partition_list_destroy(l);
}

static void begin_revoke(kafka_source *s)
{
  weft_counter_inc(s->rebalances_revoke);
  weft_mutex_lock(&s->mu);
  s->revoking = true; /* next() drops what msgs still holds of this generation */
  weft_mutex_unlock(&s->mu);
  int64_t wait = atomic_load(&s->stop) ? 0 : s->revoke_timeout; /* closing: all was acked */
  s->phase = REVOKE_WAIT_ACKS;
  s->phase_deadline = weft_now() + wait;
  s->revoke_refusals = 0;
  weft_log_info(s->log, NULL, "kafka partitions revoked", WEFT_UINT("count", s->nparts));
}

/* finish_revoke: let librdkafka go on, remembering each partition's low-water mark for
 * the next assignment (set_assignment), and forget the trackers. */
static void finish_revoke(kafka_source *s)
{
  kafka_assign(s, NULL);
  if (s->nparts > s->carry_cap) { /* out of memory: nothing carried, read again */
    kafka_carry *c = realloc(s->carry, s->nparts * sizeof *c);
    if (c) {
      s->carry = c;
      s->carry_cap = s->nparts;
    }
  }
  weft_mutex_lock(&s->mu);
  s->ncarry = 0;
  for (size_t i = 0; i < s->nparts; i++) {
    etl_offsets *t = &s->parts[i].offsets;
    if (etl_offsets_low_water(t) >= 0 && s->ncarry < s->carry_cap)
      s->carry[s->ncarry++] =
          (kafka_carry){s->parts[i].partition, etl_offsets_low_water(t), t->committed};
    etl_offsets_free(t);
  }
  free(s->parts);
  s->parts = NULL;
  s->nparts = 0;
  s->generation++; /* acks still coming for the old one are ignored */
  weft_mutex_unlock(&s->mu);
  s->phase = REVOKE_NONE;
}

/* revoke_step: move the revoke state machine on as far as it can go now. A commit the
 * group refuses in this generation (REBALANCE_IN_PROGRESS: librdkafka's mock, and brokers
 * in CompletingRebalance, take no commit until every member rejoined) cannot land before
 * the revoke ends: after KAFKA_REVOKE_REFUSALS of them (one may be a passing error) the
 * revoke ends and the marks are carried to the next assignment. Other failures are
 * retried until the deadline. */
void kafka_revoke_step(kafka_source *s)
{
  int64_t now = weft_now();
  if (s->phase == REVOKE_WAIT_ACKS && (all_acked(s) || now >= s->phase_deadline)) {
    if (kafka_may_commit(s))
      kafka_commit_marks(s);
    s->phase = REVOKE_WAIT_COMMIT;
    s->phase_deadline = now + s->revoke_timeout;
  }
  if (s->phase != REVOKE_WAIT_COMMIT)
    return;
  /* Refusals end a rebalance's revoke early; a close's revoke is not a rebalance of the
   * others (this member leaves after it), so a refusal there is passing: retried until
   * the deadline. */
  bool refused = s->revoke_refusals >= KAFKA_REVOKE_REFUSALS && !atomic_load(&s->stop);
  if (!kafka_may_commit(s) || kafka_all_committed(s) || refused || now >= s->phase_deadline) {
    if (kafka_may_commit(s) && !kafka_all_committed(s))
      /* The group refused (this member was evicted, or a rebalance never settled):
       * nothing is lost, the next owner re-reads from the last committed offset and the
       * sink's upserts store those events once; but an operator should see it. */
      weft_log_warn(s->log, NULL,
                    "kafka: offsets not committed (the group refused); they will be re-read");
    finish_revoke(s);
  } else if (s->retry_at && now >= s->retry_at) {
    s->retry_at = 0;
    kafka_commit_marks(s);
  }
}

void kafka_on_rebalance(kafka_source *s, rd_kafka_event_t *ev)
{
  rd_kafka_resp_err_t err = rd_kafka_event_error(ev);
  const rd_kafka_topic_partition_list_t *l = rd_kafka_event_topic_partition_list(ev);
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS && !atomic_load(&s->stop))
    on_assign(s, l);
  else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS && s->phase == REVOKE_NONE)
    begin_revoke(s);
  else
    kafka_assign(s, NULL); /* an assignment while closing, or an error: hold nothing */
}
