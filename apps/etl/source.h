/* source.h: where weft-etl's events come from, behind a small vtable: Kafka (a consumer
 * group, source_kafka.c), a file of JSON lines or stdin (source_file.c).
 *
 * The delivery contract (etl.md, "Delivery") rests on one rule: a message is acknowledged
 * with ack() only after the sink has durably written its row or its dead letter. A source
 * that can be replayed (Kafka) commits, per partition, the contiguous low-water mark of the
 * acknowledged offsets and nothing beyond it, so a crash replays what was not yet written
 * and the sink's idempotent upserts store it once.
 *
 * Who may call what: next() is called by one coroutine at a time (the pipeline's source
 * stage); ack() by any coroutine, any number at once, including after the message's
 * partition was revoked (then it is ignored); close() once, after the last next() returned
 * and the sink has written or dropped every message it was given. */
#ifndef ETL_SOURCE_H
#define ETL_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <weft/weft.h>

/* Where a message came from: what ack() needs, and the dead letter's origin. */
typedef struct etl_origin {
  int32_t partition;   /* Kafka partition; -1 for a file or stdin */
  int64_t offset;      /* Kafka offset; the 1-based line number for a file or stdin */
  uint32_t generation; /* Kafka: the assignment it was read under (acks of an older one
                          are ignored); 0 otherwise */
} etl_origin;

/* One raw message. Owned by whoever holds it; freed with etl_message_free. */
typedef struct etl_message {
  char *data; /* the bytes, NUL-terminated for convenience (len excludes the NUL) */
  size_t len;
  etl_origin origin;
  /* The dead letter's origin text: "kafka:TOPIC/PARTITION/OFFSET", "file:PATH:LINE" (PATH
   * absolute), or "" for stdin. */
  char origin_text[320];
} etl_message;

void etl_message_free(etl_message *m);

typedef struct etl_source etl_source;

typedef struct etl_source_ops {
  const char *name; /* "kafka", "file", "stdin" */
  /* next: the next message. Parks until there is one, or until ctx is done.
   * Returns 0 and *out (the caller owns it), -EPIPE at the end of a file or stdin (never
   * for Kafka), the context's error once it is done, or another negative errno for a
   * fatal source error (the reason is logged by the source). Coroutine, may park. */
  int (*next)(etl_source *s, weft_ctx *ctx, etl_message **out);
  /* ack: the message at o is durably written (row or dead letter). Any coroutine; never
   * parks for long (it may take a mutex). */
  void (*ack)(etl_source *s, const etl_origin *o);
  /* lag: messages behind the end of the log, summed over the assigned partitions, or -1
   * when unknown (files: -1). Any coroutine; never parks. */
  int64_t (*lag)(etl_source *s);
  /* close: commit what was acknowledged (when commit is true; a second signal passes
   * false), leave the consumer group, free s. Gives up when ctx is done. 0 or a negative
   * errno. Coroutine, may park. */
  int (*close)(etl_source *s, weft_ctx *ctx, bool commit);
} etl_source_ops;

/* Every source begins with this header. */
struct etl_source {
  const etl_source_ops *ops;
};

/* Opening a source. On failure each writes a one-line reason into err.
 * etl_source_open parses spec: "kafka://HOST:PORT[,HOST:PORT]/TOPIC?group=NAME",
 * "file:PATH" or "-" (stdin), and opens it. Returns 0, -EINVAL (bad spec), -ENOTSUP
 * (Kafka: not in this build), -ENOENT or another negative errno. Coroutine, may park. */
int etl_source_open(const char *spec, weft_logger *log, etl_source **out, char *err,
                    size_t errlen);
int etl_source_file_open(const char *path, etl_source **out, char *err, size_t errlen);
int etl_source_stdin_open(etl_source **out, char *err, size_t errlen);

/* The Kafka source's settings, from the spec and the command line. */
typedef struct etl_kafka_options {
  const char *brokers;        /* "HOST:PORT[,HOST:PORT]" */
  const char *topic;          /* one topic */
  const char *group;          /* consumer group id */
  int64_t session_timeout;    /* ns; 0: librdkafka's default (tests use short ones) */
  int64_t commit_interval;    /* ns between commits of the low-water marks; 0: 1 s */
  int64_t revoke_timeout;     /* ns a revoked partition waits for its acks; 0: 10 s */
  const char *const *extra;   /* more librdkafka "key", "value" pairs, NULL-terminated;
                                 NULL for none (tests: mock cluster settings) */
  weft_logger *log;           /* may be NULL */
  weft_metrics_registry *reg; /* consumer lag gauge etc.; may be NULL */
} etl_kafka_options;

int etl_source_kafka_open(const etl_kafka_options *o, etl_source **out, char *err,
                          size_t errlen);

#endif
