/* source_kafka.h: the Kafka source's private state, shared by its two files:
 * source_kafka.c (the pump, messages, the source's operations, opening and closing) and
 * kafka_group.c (commits of the low-water marks and rebalances). source_kafka.c opens
 * with the design: the pump, the wake pipe, generations, the revoke state machine and
 * the lock. Every function declared here is called by the pump only, unless it says
 * otherwise. */
#ifndef ETL_SOURCE_KAFKA_H
#define ETL_SOURCE_KAFKA_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "offsets.h"
#include "source.h"

enum {
  KAFKA_CHAN_CAPACITY = 1000, /* the contract's default channel capacity */
};
#define KAFKA_COMMIT_RETRY    ((int64_t)100 * 1000000)   /* ns after a failed commit */
#define KAFKA_COMMIT_STALE    ((int64_t)30 * 1000000000) /* ns: an unanswered commit */
#define KAFKA_DEFAULT_COMMIT  ((int64_t)1000 * 1000000)
#define KAFKA_DEFAULT_REVOKE  ((int64_t)10000 * 1000000)
#define KAFKA_DESTROY_TIMEOUT ((int64_t)15 * 1000000000) /* ns, then abandoned */
#define KAFKA_REVOKE_REFUSALS 3 /* refused revoke commits before the marks are carried */
#define KAFKA_CLOSE_POLL      ((int64_t)10 * 1000000) /* ns between closed() checks */

typedef enum revoke_phase {
  REVOKE_NONE = 0,
  REVOKE_WAIT_ACKS,
  REVOKE_WAIT_COMMIT
} revoke_phase;

/* What a revoke leaves of a partition for the next assignment (finish_revoke). */
typedef struct kafka_carry {
  int32_t partition;
  int64_t low;       /* its low-water mark: every offset below was written */
  int64_t committed; /* what the broker confirmed, -1: unknown */
} kafka_carry;

/* One assigned partition. */
typedef struct kafka_partition {
  int32_t partition;
  etl_offsets offsets; /* guarded by mu */
  int64_t fetched;     /* last offset the pump read + 1, -1 before; pump only */
} kafka_partition;

typedef struct kafka_source {
  etl_source base;
  char *topic;
  rd_kafka_t *rk;
  rd_kafka_queue_t *queue; /* the consumer queue; every event comes here */
  int wake_rd, wake_wr;    /* the pump's pipe: librdkafka's io event and our wake-ups */
  weft_chan *msgs;         /* etl_message *, pump -> next(); closed by the pump */
  weft_chan *done;         /* closed when the pump has returned */
  weft_logger *log;        /* retained; NULL: the default logger */
  int64_t commit_interval, revoke_timeout; /* ns */

  weft_mutex mu;
  kafka_partition *parts; /* guarded by mu (written by the pump only) */
  size_t nparts;          /* guarded by mu */
  uint32_t generation;    /* guarded by mu (written by the pump only) */
  bool revoking;          /* guarded by mu: hand nothing out */

  atomic_bool want_room;    /* the pump waits for room in msgs: next() wakes it */
  atomic_bool stop;         /* close() asked the pump to leave the group */
  atomic_bool abort_now;    /* close()'s context is done: the pump returns at once */
  atomic_bool close_commit; /* close()'s commit flag; set before stop */
  atomic_int fatal;         /* first fatal error, 0: none */
  atomic_llong lag;         /* lag() answer, refreshed each tick; -1 unknown */

  /* pump only */
  rd_kafka_event_t *held; /* a fetch event not yet fully moved into msgs */
  etl_message *held_msg;  /* its message waiting for room in msgs */
  bool msgs_closed;       /* msgs was closed (fatal error) */
  bool closing;           /* rd_kafka_consumer_close_queue was called */
  int64_t final_until;    /* 0, or until when the final commit is retried before leaving */
  revoke_phase phase;
  int64_t phase_deadline; /* weft_now() ns */
  int64_t next_tick;      /* next periodic commit and lag refresh */
  int64_t retry_at;       /* 0 or when a failed commit is tried again */
  int64_t commit_sent_at; /* 0, or when the commit in flight was sent (one at a time) */
  int revoke_refusals;    /* commits the group refused during this revoke */
  kafka_carry *carry;     /* the last revoke's marks, ncarry of carry_cap */
  size_t ncarry, carry_cap;

  /* metrics, NULL without a registry */
  weft_gauge_vec *lag_gauge;
  weft_counter *commits_ok, *commits_failed;
  weft_counter *rebalances_assign, *rebalances_revoke;
} kafka_source;

/* kafka_find_part: the partition's entry or NULL. Caller holds mu, or is the pump. */
kafka_partition *kafka_find_part(kafka_source *s, int32_t partition);
/* kafka_set_fatal: record the first fatal error and close msgs, so next() returns it. */
void kafka_set_fatal(kafka_source *s, int err, const char *what);
/* kafka_assign: rd_kafka_assign on the blocking pool (parts NULL: unassign all). */
void kafka_assign(kafka_source *s, const rd_kafka_topic_partition_list_t *parts);

/* kafka_group.c */
/* kafka_commit_marks: commit, asynchronously, every low-water mark above what the broker
 * confirmed; kafka_on_commit_result takes the answer from the queue. */
void kafka_commit_marks(kafka_source *s);
void kafka_on_commit_result(kafka_source *s, rd_kafka_event_t *ev);
/* kafka_may_commit: false once a close without commit began. */
bool kafka_may_commit(kafka_source *s);
/* kafka_all_committed: every assigned partition's low-water mark is confirmed committed. */
bool kafka_all_committed(kafka_source *s);
/* kafka_on_rebalance: an assignment or a revoke from the queue. */
void kafka_on_rebalance(kafka_source *s, rd_kafka_event_t *ev);
/* kafka_revoke_step: move a revoke on as far as it can go now (phase != REVOKE_NONE). */
void kafka_revoke_step(kafka_source *s);

#endif
