/* source_file.c: the file and stdin sources of source.h (JSON lines), and
 * etl_source_open, which picks a source from --source.
 *
 * Reading never blocks a scheduler thread: a regular file is read in chunks through
 * weft_blocking (a regular file never reports "would block", so the poller cannot help);
 * anything else (stdin as a pipe, a socket, a tty) is read with weft_read_ctx on the
 * poller, which also ends the wait as soon as the pipeline stops the source.
 *
 * Lines: numbered from 1; a trailing CR is dropped; blank lines are skipped (they keep
 * their number); a line longer than MAX_LINE is delivered cut at MAX_LINE + 1 bytes (the
 * decoder then rejects it as too large) and the rest of it is skipped. There is nothing
 * to commit: ack is a no-op and a rerun reads the file again (the sink's upserts store
 * each event once).
 *
 * Threads: next() is called by one coroutine at a time (source.h), so the reader's state
 * needs no lock. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "etl.h"

#define MAX_LINE (1 << 20)
#define CHUNK    (64 << 10)
/* source.h's origin_text holds 320 bytes: a longer path is cut there (files are opened
 * by the paths their operators give, which are far shorter). */
#define ORIGIN_PATH_MAX 290

typedef struct file_source {
  etl_source base;
  int fd;
  bool is_stdin;
  bool pollable;       /* read on the poller (not a regular file) */
  bool eof;            /* read returned 0 */
  bool skipping;       /* discarding the rest of an over-long line */
  char path[PATH_MAX]; /* absolute; "" for stdin */
  int64_t line;        /* the number of the last line taken */
  char *buf;           /* bytes read, not yet taken: buf[start..len) */
  size_t start, len, cap;
} file_source;

void etl_message_free(etl_message *m)
{
  if (!m)
    return;
  free(m->data);
  free(m);
}

typedef struct read_call {
  int fd;
  void *buf;
  size_t len;
} read_call;

static long read_blocking(void *arg)
{
  read_call *c = arg;
  ssize_t n = read(c->fd, c->buf, c->len);
  return n < 0 ? -errno : n;
}

/* Read more bytes after buf[len]. 0, or a negative errno (the context's included). */
static int fill(file_source *s, weft_ctx *ctx)
{
  if (s->start > 0) {
    memmove(s->buf, s->buf + s->start, s->len - s->start);
    s->len -= s->start;
    s->start = 0;
  }
  if (s->cap - s->len < CHUNK) {
    char *nb = realloc(s->buf, s->cap + CHUNK);
    if (!nb)
      return -ENOMEM;
    s->buf = nb, s->cap += CHUNK;
  }
  int err = weft_ctx_err(ctx);
  if (err)
    return err;
  read_call c = {s->fd, s->buf + s->len, s->cap - s->len};
  long n =
      s->pollable ? weft_read_ctx(s->fd, c.buf, c.len, ctx) : weft_blocking(read_blocking, &c);
  if (n < 0)
    return (int)n;
  s->eof = n == 0;
  s->len += (size_t)n;
  return 0;
}

static bool is_blank(const char *p, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
      return false;
  return true;
}

static int make_message(file_source *s, const char *p, size_t n, etl_message **out)
{
  etl_message *m = calloc(1, sizeof *m);
  if (!m || !(m->data = malloc(n + 1)))
    return free(m), -ENOMEM;
  if (n && p[n - 1] == '\r')
    n--;
  memcpy(m->data, p, n);
  m->data[n] = '\0';
  m->len = n;
  m->origin = (etl_origin){.partition = -1, .offset = s->line};
  if (!s->is_stdin)
    snprintf(m->origin_text, sizeof m->origin_text, "file:%.*s:%lld", ORIGIN_PATH_MAX, s->path,
             (long long)s->line);
  *out = m;
  return 0;
}

/* Take the next whole line (or the tail at the end of input) from the buffer: 1 with
 * *p and *n set, 0 when more must be read. */
static int take_line(file_source *s, const char **p, size_t *n)
{
  size_t avail = s->len - s->start;
  if (avail == 0) /* also before the first read, when buf is still NULL */
    return 0;
  char *b = s->buf + s->start, *nl = memchr(b, '\n', avail);
  if (!nl && !s->eof && avail <= MAX_LINE)
    return 0;
  size_t len = nl ? (size_t)(nl - b) : avail > MAX_LINE ? MAX_LINE + 1 : avail;
  *p = b, *n = len;
  s->start += nl ? len + 1 : len;
  return 1;
}

static int file_next(etl_source *base, weft_ctx *ctx, etl_message **out)
{
  file_source *s = (file_source *)base;
  for (;;) {
    const char *p;
    size_t n;
    bool was_skipping = s->skipping;
    if (take_line(s, &p, &n)) {
      bool whole = s->start > 0 && s->buf[s->start - 1] == '\n';
      s->skipping = !whole && !s->eof && n > MAX_LINE;
      if (was_skipping) /* the tail of an over-long line */
        continue;
      s->line++;
      if (!is_blank(p, n))
        return make_message(s, p, n, out);
      continue;
    }
    if (s->eof && s->start == s->len)
      return -EPIPE;
    int rc = fill(s, ctx);
    if (rc)
      return rc;
  }
}

static void file_ack(etl_source *s, const etl_origin *o)
{
  (void)s, (void)o; /* nothing to commit: a rerun reads the file again */
}

static int64_t file_lag(etl_source *s)
{
  (void)s;
  return -1;
}

static int file_close(etl_source *base, weft_ctx *ctx, bool commit)
{
  file_source *s = (file_source *)base;
  (void)ctx, (void)commit;
  if (s->pollable)
    weft_fd_forget(s->fd);
  if (!s->is_stdin)
    close(s->fd);
  free(s->buf);
  free(s);
  return 0;
}

static const etl_source_ops file_ops = {"file", file_next, file_ack, file_lag, file_close};
static const etl_source_ops stdin_ops = {"stdin", file_next, file_ack, file_lag, file_close};

static int open_fd(int fd, bool is_stdin, etl_source **out, char *err, size_t errlen)
{
  struct stat st;
  file_source *s = calloc(1, sizeof *s);
  if (!s)
    return snprintf(err, errlen, "out of memory"), -ENOMEM;
  s->base.ops = is_stdin ? &stdin_ops : &file_ops;
  s->fd = fd;
  s->is_stdin = is_stdin;
  s->pollable = fstat(fd, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode);
  *out = &s->base;
  return 0;
}

int etl_source_file_open(const char *path, etl_source **out, char *err, size_t errlen)
{
  char abs[PATH_MAX];
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0 || !realpath(path, abs)) {
    int e = -errno;
    snprintf(err, errlen, "--source file:%s: %s", path, strerror(errno));
    if (fd >= 0)
      close(fd);
    return e;
  }
  int rc = open_fd(fd, false, out, err, errlen);
  if (rc)
    return close(fd), rc;
  snprintf(((file_source *)*out)->path, PATH_MAX, "%s", abs);
  return 0;
}

int etl_source_stdin_open(etl_source **out, char *err, size_t errlen)
{
  return open_fd(STDIN_FILENO, true, out, err, errlen);
}

#ifdef ETL_HAVE_KAFKA
/* The Kafka source's settings beyond the group, as optional query parameters of
 * --source ("...?group=NAME&session_timeout_ms=6000&heartbeat_ms=500"), each also from
 * the environment (ETL_KAFKA_SESSION_TIMEOUT_MS, ...; the --source parameter wins). Unset:
 * librdkafka's defaults (session 45 s, heartbeat 3 s), commits every 1 s, a revoked
 * partition waits 10 s for its acks. Tests shorten them: a killed member leaves the group
 * only after its session timeout. */
static const struct {
  const char *param, *env;
} kafka_params[] = {{"session_timeout_ms", "ETL_KAFKA_SESSION_TIMEOUT_MS"},
                    {"heartbeat_ms", "ETL_KAFKA_HEARTBEAT_MS"},
                    {"commit_interval_ms", "ETL_KAFKA_COMMIT_INTERVAL_MS"},
                    {"revoke_timeout_ms", "ETL_KAFKA_REVOKE_TIMEOUT_MS"}};
enum { KP_SESSION, KP_HEARTBEAT, KP_COMMIT, KP_REVOKE, KP_COUNT };

/* The parsed --source of the open Kafka source (one per process): the options' strings
 * point into it while the source lives. */
static struct {
  char *spec;
  const char *extra[3]; /* librdkafka pairs, NULL-terminated */
  char heartbeat[24];   /* heartbeat.interval.ms */
} kafka_spec;

/* parse_ms: a positive count of milliseconds into *ns. */
static int parse_ms(const char *v, int64_t *ns)
{
  char *end;
  long long ms = v && *v ? strtoll(v, &end, 10) : -1;
  if (ms <= 0 || *end || ms > 86400000LL)
    return -EINVAL;
  *ns = ms * 1000000;
  return 0;
}

/* "HOST:PORT[,HOST:PORT]/TOPIC?group=NAME[&PARAM=MS...]" (after "kafka://") into o, in
 * spec; ms[] gets each kafka_params value (0: unset), the environment's first. */
static int parse_kafka(char *spec, etl_kafka_options *o, int64_t ms[KP_COUNT])
{
  char *slash = strchr(spec, '/'), *q;
  for (int i = 0; i < KP_COUNT; i++)
    if (getenv(kafka_params[i].env) && parse_ms(getenv(kafka_params[i].env), &ms[i]))
      return -EINVAL;
  if (!slash || slash == spec)
    return -EINVAL;
  *slash = '\0';
  o->brokers = spec;
  o->topic = slash + 1;
  if (!(q = strchr(o->topic, '?')))
    return -EINVAL;
  *q = '\0';
  char *save = NULL;
  for (char *kv = strtok_r(q + 1, "&", &save); kv; kv = strtok_r(NULL, "&", &save)) {
    char *eq = strchr(kv, '=');
    int i = 0;
    if (!eq)
      return -EINVAL;
    *eq = '\0';
    if (strcmp(kv, "group") == 0) {
      o->group = eq + 1;
      continue;
    }
    while (i < KP_COUNT && strcmp(kv, kafka_params[i].param) != 0)
      i++;
    if (i == KP_COUNT || parse_ms(eq + 1, &ms[i]))
      return -EINVAL;
  }
  return *o->topic && o->group && *o->group && !strpbrk(o->group, "?/") ? 0 : -EINVAL;
}

static int open_kafka(const char *spec, weft_logger *log, etl_source **out, char *err,
                      size_t errlen)
{
  char *copy = strdup(spec + strlen("kafka://"));
  etl_kafka_options o = {.log = log, .reg = weft_metrics_default()};
  int64_t ms[KP_COUNT] = {0};
  if (!copy)
    return snprintf(err, errlen, "out of memory"), -ENOMEM;
  int rc = parse_kafka(copy, &o, ms);
  if (rc == 0) {
    o.session_timeout = ms[KP_SESSION];
    o.commit_interval = ms[KP_COMMIT];
    o.revoke_timeout = ms[KP_REVOKE];
    if (ms[KP_HEARTBEAT]) {
      snprintf(kafka_spec.heartbeat, sizeof kafka_spec.heartbeat, "%lld",
               (long long)(ms[KP_HEARTBEAT] / 1000000));
      kafka_spec.extra[0] = "heartbeat.interval.ms";
      kafka_spec.extra[1] = kafka_spec.heartbeat;
      o.extra = kafka_spec.extra;
    }
  }
  if (rc)
    snprintf(err, errlen,
             "invalid --source \"%s\": want kafka://HOST:PORT[,HOST:PORT]/TOPIC?group=NAME"
             "[&session_timeout_ms=N&heartbeat_ms=N&commit_interval_ms=N&revoke_timeout_ms=N]",
             spec);
  else
    rc = etl_source_kafka_open(&o, out, err, errlen);
  if (rc)
    free(copy);
  else
    kafka_spec.spec = copy; /* the options' strings stay valid while the source lives */
  return rc;
}
#endif

int etl_source_open(const char *spec, weft_logger *log, etl_source **out, char *err,
                    size_t errlen)
{
  if (strcmp(spec, "-") == 0)
    return etl_source_stdin_open(out, err, errlen);
  if (strncmp(spec, "file:", 5) == 0 && spec[5])
    return etl_source_file_open(spec + 5, out, err, errlen);
  if (strncmp(spec, "kafka://", 8) == 0) {
#ifdef ETL_HAVE_KAFKA
    return open_kafka(spec, log, out, err, errlen);
#else
    (void)log;
    snprintf(err, errlen, "--source %s: Kafka is not supported by this build", spec);
    return -ENOTSUP;
#endif
  }
  snprintf(err, errlen, "invalid --source \"%s\": want kafka://..., file:PATH or -", spec);
  return -EINVAL;
}
