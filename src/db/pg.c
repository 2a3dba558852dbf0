/* pg.c: one PostgreSQL connection driven through libpq's asynchronous API (weft/pg.h).
 *
 * Every wait for the server is a poller wait on the connection's socket, bounded by the
 * caller's context and absolute deadline, so no thread ever blocks on the network: the
 * calling coroutine parks and its thread runs others. libweft_pg is a library of its own
 * and libweft.so exports only public names, so the waits use the public calls: a call
 * with both a context that can end and an earlier deadline waits on a child context with
 * that deadline (struct bound), made once per call rather than once per wait.
 *
 * The socket is libpq's: it opens it (one per address tried while connecting) and closes
 * it, on PQfinish but also on its own when the connection fails (pqDropConnection inside
 * PQconsumeInput or PQconnectPoll). The poller must never hold a registration for an fd
 * number that libpq may close and the kernel may hand to someone else: a later
 * registration of that number would be taken for already done and never get events. So
 * weft waits on a duplicate (wait_fd) that this file owns: it shares the socket with
 * libpq's fd (epoll and poll see the same readiness) and is registered, forgotten and
 * closed by weft alone (weft_close). While connecting, libpq may swap sockets at every
 * PQconnectPoll step, so each wait there uses a fresh duplicate closed right after; once
 * connected the socket stays the same and one duplicate lives as long as the connection.
 * The cost: two fds per connection, and a socket libpq dropped stays open (to no use)
 * until weft_pg_close, which a pool does at once for a broken connection.
 * The design that lost: registering PQsocket itself and forgetting it before PQfinish (or
 * when PQsocket changes): it misses libpq's own closes, and a change of socket that reuses
 * the same fd number is invisible to a comparison of numbers.
 *
 * State: a connection is usable until `broken` is set, which happens on any error that
 * leaves the protocol state unknown: a failed send or read, a deadline or context ending
 * in the middle of a query (the server may still answer it later), a result that this
 * API does not handle (COPY), or libpq reporting CONNECTION_BAD. A server error
 * (PGRES_FATAL_ERROR on a healthy connection) is not one: the server is ready for the
 * next query. Once broken it stays broken; weft_pg_exec then fails at once.
 *
 * Who may call what: a weft_pg belongs to one coroutine at a time; nothing here is
 * shared, so nothing is locked. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weft/ctx.h"
#include "weft/error.h"
#include "weft/io.h"
#include "weft/pg.h"
#include "weft/runtime.h"

/* PostgreSQL's protocol counts parameters in 16 bits. */
#define PG_MAX_PARAMS 65535

struct weft_pg {
  PGconn *conn; /* owned; non-blocking once connected */
  int wait_fd;  /* owned duplicate of PQsocket for poller waits, or -1 (see the top) */
  bool broken;  /* set once, never cleared (see the top) */
};

/* What one weft_pg call waits under: a context that can end, or a deadline, or neither.
 * Never both: a deadline earlier than the context's own becomes a child context. */
struct bound {
  weft_ctx *ctx;    /* borrowed or owned; NULL when the deadline alone bounds the waits */
  int64_t deadline; /* WEFT_NO_DEADLINE when ctx is set */
  weft_ctx *owned;  /* the child context made here, released by bound_end; or NULL */
};

/* Set b up for ctx (may be NULL) and deadline. Returns 0 or -ENOMEM. */
static int bound_begin(struct bound *b, weft_ctx *ctx, int64_t deadline)
{
  *b = (struct bound){.ctx = NULL, .deadline = deadline, .owned = NULL};
  if (!ctx || !weft_ctx_done(ctx))
    return 0; /* a context that can never end bounds nothing */
  b->ctx = ctx;
  b->deadline = WEFT_NO_DEADLINE;
  if (deadline == WEFT_NO_DEADLINE || deadline >= weft_ctx_deadline(ctx))
    return 0;
  b->owned = weft_ctx_with_deadline(ctx, deadline);
  b->ctx = b->owned;
  return b->owned ? 0 : -ENOMEM;
}

static void bound_end(struct bound *b)
{
  weft_ctx_release(b->owned);
}

/* Park until fd is readable (dir 0) or writable (1) under b. Returns 0, -ETIMEDOUT, the
 * context's error or -EBADF. */
static int bound_wait(const struct bound *b, int fd, int dir)
{
  if (b->ctx)
    return dir ? weft_wait_writable_ctx(fd, b->ctx) : weft_wait_readable_ctx(fd, b->ctx);
  return dir ? weft_wait_writable(fd, b->deadline) : weft_wait_readable(fd, b->deadline);
}

/* Copy libpq's error message, first line only, into err (errlen may be 0). */
static void write_reason(char *err, size_t errlen, const char *prefix, const char *msg)
{
  if (!err || errlen == 0)
    return;
  size_t n = strcspn(msg, "\n");
  snprintf(err, errlen, "%s%.*s", prefix, (int)n, msg);
}

int weft_pg_describe(const char *conninfo, char *out, size_t len)
{
  char *perr = NULL;
  PQconninfoOption *opts = PQconninfoParse(conninfo, &perr);
  if (!opts) {
    int rc = perr ? -EINVAL : -ENOMEM;
    if (len > 0) { /* libpq's reason, its lines joined into one */
      snprintf(out, len, "%s", perr ? perr : "out of memory");
      for (char *p = out; *p; p++)
        if (*p == '\n' || *p == '\r' || *p == '\t')
          *p = ' ';
      for (size_t n = strlen(out); n && out[n - 1] == ' ';)
        out[--n] = '\0';
    }
    PQfreemem(perr);
    return rc;
  }
  const char *host = "(default)", *port = "(default)", *db = "(default)";
  for (PQconninfoOption *o = opts; o->keyword; o++) {
    if (!o->val || !*o->val)
      continue;
    if (strcmp(o->keyword, "host") == 0 || strcmp(o->keyword, "hostaddr") == 0)
      host = o->val;
    else if (strcmp(o->keyword, "port") == 0)
      port = o->val;
    else if (strcmp(o->keyword, "dbname") == 0)
      db = o->val;
  }
  if (len > 0)
    snprintf(out, len, "host %s port %s database %s", host, port, db);
  PQconninfoFree(opts);
  return 0;
}

/* The ways a wait can end early while connecting, as a reason. */
static void write_wait_reason(char *err, size_t errlen, int rc)
{
  if (err && errlen > 0)
    snprintf(err, errlen, "connecting: %s", weft_strerror(rc));
}

/* Duplicate libpq's current socket (close-on-exec). Returns the new fd or -errno. */
static int dup_socket(PGconn *conn)
{
  int s = PQsocket(conn);
  if (s < 0)
    return -EBADF;
  int d = fcntl(s, F_DUPFD_CLOEXEC, 0);
  return d < 0 ? -errno : d;
}

/* One connect-phase wait on a fresh duplicate of libpq's socket (it may change at any
 * PQconnectPoll step). dir: 0 readable, 1 writable. */
static int wait_connect_step(PGconn *conn, int dir, const struct bound *b)
{
  int d = dup_socket(conn);
  if (d < 0)
    return d;
  int rc = bound_wait(b, d, dir);
  weft_close(d);
  return rc;
}

/* Drive PQconnectPoll to the end. Returns 0, -WEFT_EDBCONN, -ETIMEDOUT or ctx's error,
 * with a reason in err on failure. */
static int drive_connect(PGconn *conn, const struct bound *b, char *err, size_t errlen)
{
  /* libpq's rule: before the first PQconnectPoll, behave as if it said "writing". */
  PostgresPollingStatusType st = PGRES_POLLING_WRITING;
  if (PQstatus(conn) == CONNECTION_BAD)
    st = PGRES_POLLING_FAILED; /* a bad conninfo fails in PQconnectStartParams */
  while (st != PGRES_POLLING_OK) {
    if (st == PGRES_POLLING_FAILED) {
      write_reason(err, errlen, "", PQerrorMessage(conn));
      return -WEFT_EDBCONN;
    }
    int rc = wait_connect_step(conn, st == PGRES_POLLING_READING ? 0 : 1, b);
    if (rc == -ETIMEDOUT || rc == -ECANCELED) {
      write_wait_reason(err, errlen, rc);
      return rc;
    }
    if (rc < 0 && rc != -EBADF) { /* -EBADF: no socket; PQconnectPoll says why */
      write_wait_reason(err, errlen, rc);
      return -WEFT_EDBCONN;
    }
    st = PQconnectPoll(conn);
  }
  return 0;
}

/* From a connected PGconn to a weft_pg: non-blocking mode and the long-lived duplicate. */
static int finish_connect(weft_pg *c, char *err, size_t errlen)
{
  if (PQsetnonblocking(c->conn, 1) != 0) {
    write_reason(err, errlen, "", PQerrorMessage(c->conn));
    return -WEFT_EDBCONN;
  }
  c->wait_fd = dup_socket(c->conn);
  if (c->wait_fd < 0) {
    int rc = c->wait_fd;
    c->wait_fd = -1;
    write_wait_reason(err, errlen, rc);
    return rc == -EMFILE || rc == -ENFILE ? rc : -WEFT_EDBCONN;
  }
  return 0;
}

int weft_pg_connect(const char *conninfo, weft_ctx *ctx, int64_t deadline, weft_pg **out,
                    char *err, size_t errlen)
{
  if (err && errlen > 0)
    err[0] = '\0';
  if (!conninfo || !out)
    return -EINVAL;
  *out = NULL;
  weft_pg *c = calloc(1, sizeof *c);
  if (!c)
    return -ENOMEM;
  c->wait_fd = -1;
  /* expand_dbname: conninfo may be a URI or "key=value ..." as in PQconnectdb. */
  const char *const keys[] = {"dbname", NULL};
  const char *const vals[] = {conninfo, NULL};
  c->conn = PQconnectStartParams(keys, vals, 1);
  if (!c->conn) {
    free(c);
    return -ENOMEM;
  }
  struct bound b;
  int rc = bound_begin(&b, ctx, deadline);
  if (rc == 0)
    rc = drive_connect(c->conn, &b, err, errlen);
  bound_end(&b);
  if (rc == 0)
    rc = finish_connect(c, err, errlen);
  if (rc != 0) {
    weft_pg_close(c);
    return rc;
  }
  *out = c;
  return 0;
}

void weft_pg_close(weft_pg *c)
{
  if (!c)
    return;
  if (c->wait_fd >= 0)
    weft_close(c->wait_fd); /* ours; libpq's own fd is closed by PQfinish */
  PQfinish(c->conn);
  free(c);
}

bool weft_pg_broken(const weft_pg *c)
{
  return !c || c->broken;
}

PGconn *weft_pg_conn(weft_pg *c)
{
  return c ? c->conn : NULL;
}

/* Mark c broken and pass rc through. */
static int fail(weft_pg *c, int rc)
{
  c->broken = true;
  return rc;
}

/* Queue the query in libpq's output buffer (it may send part of it). */
static int send_query(weft_pg *c, const char *sql, int nparams, const char *const *values)
{
  int ok = nparams == 0 ? PQsendQuery(c->conn, sql)
                        : PQsendQueryParams(c->conn, sql, nparams, NULL, values, NULL, NULL, 0);
  return ok ? 0 : fail(c, -ECONNRESET); /* arguments were checked: the link failed */
}

/* Push the output buffer out, parking while the socket is full. Input that arrives
 * meanwhile (a notice) is consumed so that the server never waits on us while we wait on
 * it. */
static int flush_query(weft_pg *c, const struct bound *b)
{
  for (;;) {
    int r = PQflush(c->conn);
    if (r == 0)
      return 0;
    if (r < 0)
      return fail(c, -ECONNRESET);
    int rc = bound_wait(b, c->wait_fd, 1);
    if (rc != 0)
      return fail(c, rc);
    if (!PQconsumeInput(c->conn))
      return fail(c, -ECONNRESET);
  }
}

/* Park until libpq holds a whole result (or the end of the query) in its buffer. */
static int wait_not_busy(weft_pg *c, const struct bound *b)
{
  while (PQisBusy(c->conn)) {
    int rc = bound_wait(b, c->wait_fd, 0);
    if (rc != 0)
      return fail(c, rc);
    if (!PQconsumeInput(c->conn))
      return fail(c, -ECONNRESET);
  }
  return 0;
}

static bool is_copy(ExecStatusType st)
{
  return st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH;
}

/* Collect results until PQgetResult says the query is over; keep the last one (several
 * statements give one result each; an error ends the run, so it is the last). */
static int collect_results(weft_pg *c, const struct bound *b, PGresult **last)
{
  *last = NULL;
  for (;;) {
    int rc = wait_not_busy(c, b);
    if (rc != 0)
      return rc;
    PGresult *r = PQgetResult(c->conn);
    if (!r)
      return 0;
    PQclear(*last);
    *last = r;
    if (is_copy(PQresultStatus(r)))
      return 0; /* PQgetResult would hand out COPY results forever */
  }
}

/* Map the last result to the header's codes. Takes r. */
static int classify(weft_pg *c, PGresult *r, PGresult **out)
{
  ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
  if (PQstatus(c->conn) == CONNECTION_BAD || !r) {
    PQclear(r); /* e.g. 57P01 from pg_terminate_backend: the link is gone (-ECONNRESET) */
    return fail(c, -ECONNRESET);
  }
  switch (st) {
  case PGRES_COMMAND_OK:
  case PGRES_TUPLES_OK:
  case PGRES_EMPTY_QUERY:
    *out = r;
    return 0;
  case PGRES_FATAL_ERROR:
    *out = r; /* the server refused the statement and is ready for the next one */
    return -EIO;
  default:
    PQclear(r);
    return fail(c, is_copy(st) ? -EINVAL : -ECONNRESET); /* COPY: not supported here */
  }
}

int weft_pg_exec(weft_pg *c, weft_ctx *ctx, int64_t deadline, const char *sql, int nparams,
                 const char *const *values, PGresult **out)
{
  if (!out)
    return -EINVAL;
  *out = NULL;
  if (!c || !sql || nparams < 0 || nparams > PG_MAX_PARAMS || (nparams > 0 && !values))
    return -EINVAL;
  if (c->broken)
    return -ECONNRESET;
  int rc = weft_ctx_err(ctx); /* nothing sent yet: the connection stays usable */
  if (rc != 0)
    return rc;
  if (deadline != WEFT_NO_DEADLINE && deadline <= weft_now())
    return -ETIMEDOUT;
  struct bound b;
  if ((rc = bound_begin(&b, ctx, deadline)) != 0)
    return rc;
  PGresult *last = NULL;
  if ((rc = send_query(c, sql, nparams, values)) == 0 && (rc = flush_query(c, &b)) == 0)
    rc = collect_results(c, &b, &last);
  bound_end(&b);
  if (rc != 0) {
    PQclear(last);
    return rc;
  }
  return classify(c, last, out);
}
