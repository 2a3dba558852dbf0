/* worker.c: confirmations on the worker pool, idempotency and the in-flight set.
 *
 * A job is shared by the handler that queued it and the worker that runs it, so it is
 * reference counted: the handler may give up first (504 at --request-timeout) while the
 * job still completes, and whoever drops the last reference frees it.
 *
 * The in-flight set holds the id of every job from its submission until its worker has
 * finished with it (stored, replayed or refused). Its invariant: at most one job per id
 * is queued or running, so two concurrent confirmations of one id never both reach the
 * store; the second is refused with 409 in_progress. An id leaves the set before the job
 * returns, so a client that got its answer and retries sees the stored record.
 *
 * The set covers one process. A store shared by several (PostgreSQL) has claims
 * (store.h): the worker claims the id in the store, which answers for every process at
 * once (confirmed: replay or conflict; claimed elsewhere: 409 in_progress), then
 * completes the claim after --work-ms, or drops it when the job fails. The set still
 * turns local duplicates away without a round trip to the database. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "paymentd.h"
#include "timestamp.h"

struct pay_inflight_node {
  pay_inflight_node *next; /* guarded by the set's mu */
  char id[PAY_ID_MAX + 1];
};

typedef struct pay_job {
  atomic_int refs;            /* the handler's and the worker's */
  pay_app *app;               /* borrowed */
  pay_inflight_node inflight; /* in app->inflight from submission to the worker's end */
  pay_record req;             /* the validated request; read-only */
  pay_record out;             /* written by the worker before the job ends, read after */
} pay_job;

static size_t hash_id(const char *id)
{
  size_t h = 14695981039346656037u; /* FNV-1a */
  for (; *id; id++)
    h = (h ^ (unsigned char)*id) * 1099511628211u;
  return h % PAY_INFLIGHT_BUCKETS;
}

void pay_inflight_init(pay_inflight *f)
{
  memset(f, 0, sizeof *f);
  weft_mutex_init(&f->mu);
}

/* Add n (its id set); -EBUSY when the id is already in flight. */
static int inflight_add(pay_inflight *f, pay_inflight_node *n)
{
  const char *id = n->id;
  size_t h = hash_id(id);
  int rc = 0;
  weft_mutex_lock(&f->mu);
  for (pay_inflight_node *p = f->buckets[h]; p && rc == 0; p = p->next)
    if (strcmp(p->id, id) == 0)
      rc = -EBUSY;
  if (rc == 0) {
    n->next = f->buckets[h];
    f->buckets[h] = n;
  }
  weft_mutex_unlock(&f->mu);
  return rc;
}

static void inflight_remove(pay_inflight *f, pay_inflight_node *n)
{
  weft_mutex_lock(&f->mu);
  for (pay_inflight_node **pp = &f->buckets[hash_id(n->id)]; *pp; pp = &(*pp)->next)
    if (*pp == n) {
      *pp = n->next;
      break;
    }
  weft_mutex_unlock(&f->mu);
}

static void job_release(pay_job *job)
{
  if (atomic_fetch_sub(&job->refs, 1) == 1)
    free(job);
}

static bool same_values(const pay_record *a, const pay_record *b)
{
  return a->amount_cents == b->amount_cents && strcmp(a->currency, b->currency) == 0 &&
         strcmp(a->account, b->account) == 0;
}

/* A stored record against the request: replayed or conflict. */
static long answer_stored(pay_job *job)
{
  return same_values(&job->out, &job->req) ? PAY_REPLAYED : PAY_CONFLICT;
}

/* The processing of one confirmation on a store with claims (store.h). */
static long process_claimed(weft_ctx *ctx, pay_job *job)
{
  pay_store *st = job->app->store;
  pay_claim claim;
  int rc = st->ops->claim(st, &job->req, &claim, &job->out);
  if (rc == -EEXIST)
    return answer_stored(job);
  if (rc != 0)
    return rc == -EBUSY ? -EBUSY : -EIO;
  if (job->app->o->work_ms > 0 && /* cut short only at a shutdown deadline */
      weft_sleep_ctx(ctx, job->app->o->work_ms * 1000000) != 0) {
    st->ops->drop(st, &claim); /* abandoned: another process may take the id at once */
    return -ECANCELED;
  }
  job->out = job->req;
  pay_timestamp_now(job->out.confirmed_at);
  rc = st->ops->complete(st, &claim, &job->out);
  if (rc == 0)
    return PAY_CONFIRMED;
  if (rc != -ESTALE) {
    st->ops->drop(st, &claim);
    return -EIO;
  }
  /* The claim was lost (taken over after its lease): answer from what is stored. */
  rc = st->ops->get(st, job->req.id, &job->out);
  if (rc == 0)
    return answer_stored(job);
  return rc == -ENOENT ? -EBUSY : -EIO;
}

/* The processing of one confirmation, on a worker. */
static long process(weft_ctx *ctx, pay_job *job)
{
  if (job->app->store->ops->claim)
    return process_claimed(ctx, job);
  pay_store *st = job->app->store;
  int rc = st->ops->get(st, job->req.id, &job->out);
  if (rc == 0)
    return answer_stored(job);
  if (rc != -ENOENT)
    return -EIO;
  if (job->app->o->work_ms > 0) /* the card processor; cut short only at a shutdown deadline */
    weft_sleep_ctx(ctx, job->app->o->work_ms * 1000000);
  job->out = job->req;
  pay_timestamp_now(job->out.confirmed_at);
  rc = st->ops->insert(st, &job->out);
  if (rc == -EEXIST) /* stored meanwhile by someone else (another process) */
    return process(ctx, job);
  return rc == 0 ? PAY_CONFIRMED : -EIO;
}

static long job_run(weft_ctx *ctx, void *arg)
{
  pay_job *job = arg;
  int64_t start = weft_now();
  long rc = process(ctx, job);
  pay_metrics_processing(job->app, weft_now() - start);
  if (rc >= 0)
    pay_metrics_confirmation(job->app, (int)rc);
  inflight_remove(&job->app->inflight, &job->inflight);
  job_release(job);
  return rc;
}

/* A job abandoned at a shutdown deadline: it never ran, so drop what it held. */
static void job_abandon(void *arg)
{
  pay_job *job = arg;
  inflight_remove(&job->app->inflight, &job->inflight);
  job_release(job);
}

int pay_pool_start(pay_app *app)
{
  /* No metrics registry: paymentd_queue_depth, _workers_busy and
   * paymentd_processing_duration_seconds say what the pool's own families would, and
   * without them the pool reads no clock per job. */
  weft_pool_options po = {.workers = app->workers,
                          .queue_capacity = (size_t)app->o->queue,
                          .name = "paymentd",
                          .on_abandon = job_abandon};
  return weft_pool_new(&po, &app->pool);
}

/* Wait for the job; copy its record out. The job is freed by whoever is last. */
static int wait_job(weft_pool_job *pj, pay_job *job, weft_ctx *ctx, int64_t deadline,
                    pay_record *out)
{
  long result = -EIO;
  int rc = weft_pool_job_wait_until(pj, ctx, deadline, &result);
  weft_pool_job_free(pj);
  if (rc == 0 && result >= 0)
    *out = job->out;
  job_release(job);
  if (rc != 0)
    return rc == -ECANCELED ? -ETIMEDOUT : rc; /* the request's context: a 504 */
  return (int)result;
}

int pay_confirm(pay_app *app, const pay_record *req, weft_ctx *ctx, int64_t deadline,
                pay_record *out)
{
  pay_job *job = malloc(sizeof *job);
  if (!job)
    return -ENOMEM;
  *job = (pay_job){.app = app, .req = *req};
  strcpy(job->inflight.id, req->id);
  atomic_init(&job->refs, 2);
  int rc = inflight_add(&app->inflight, &job->inflight);
  if (rc != 0) {
    free(job);
    return rc;
  }
  weft_pool_job *pj;
  rc = weft_pool_try_submit(app->pool, job_run, job, &pj);
  if (rc != 0) {
    inflight_remove(&app->inflight, &job->inflight);
    free(job);
    return rc == -EAGAIN || rc == -EPIPE ? rc : -ENOMEM;
  }
  return wait_job(pj, job, ctx, deadline, out);
}
