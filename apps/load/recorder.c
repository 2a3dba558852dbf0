/* recorder.c: the results every request coroutine adds to.
 *
 * One weft_mutex guards the whole recorder: a request holds it for a few counter updates
 * and two histogram increments, far shorter than a request, so it is seldom contended even
 * at the rates a loopback server allows. (Per-worker recorders merged at the end would
 * avoid the lock but need a time-slice array per worker, megabytes each.)
 *
 * Invariants, under mu: answered == lat.total == sum of status[]; errors == sum of err[].n;
 * slice i covers [start + i * slice_ns, start + (i + 1) * slice_ns), and
 * nslices <= LOAD_SLICE_MAX: a time past the last slot folds the array in half (adjacent
 * slices merged) and doubles slice_ns, so any run length fits. */
#include <errno.h>
#include <string.h>

#include "load.h"

enum { SLICE_SUB_BITS = 5 }; /* 3 % buckets: enough for a plotted line */
static const int64_t first_slice_ns = 100 * 1000 * 1000;

int load_recorder_init(struct load_recorder *r, int64_t start)
{
  memset(r, 0, sizeof *r);
  weft_mutex_init(&r->mu);
  r->start = r->end = start;
  r->slice_ns = first_slice_ns;
  int rc = hist_init(&r->lat, 7);
  for (int i = 0; rc == 0 && i < LOAD_SLICE_MAX; i++)
    rc = hist_init(&r->slice[i].lat, SLICE_SUB_BITS);
  if (rc < 0)
    load_recorder_destroy(r);
  return rc;
}

void load_recorder_destroy(struct load_recorder *r)
{
  hist_destroy(&r->lat);
  for (int i = 0; i < LOAD_SLICE_MAX; i++)
    hist_destroy(&r->slice[i].lat);
}

/* Halve the resolution: slices 2i and 2i+1 become slice i. Caller holds mu. */
static void fold_slices(struct load_recorder *r)
{
  for (int i = 0; i < LOAD_SLICE_MAX / 2; i++) {
    struct load_slice *dst = &r->slice[i];
    struct load_slice *a = &r->slice[2 * i], *b = &r->slice[2 * i + 1];
    if (dst != a) {
      hist_reset(&dst->lat);
      hist_merge(&dst->lat, &a->lat);
    }
    hist_merge(&dst->lat, &b->lat);
    dst->completed = a->completed + b->completed;
  }
  for (int i = LOAD_SLICE_MAX / 2; i < LOAD_SLICE_MAX; i++) {
    hist_reset(&r->slice[i].lat);
    r->slice[i].completed = 0;
  }
  r->nslices = (r->nslices + 1) / 2;
  r->slice_ns *= 2;
}

/* The slice holding time t, folding as needed. Caller holds mu. */
static struct load_slice *slice_at(struct load_recorder *r, int64_t t)
{
  int64_t off = t > r->start ? t - r->start : 0;
  while (off / r->slice_ns >= LOAD_SLICE_MAX)
    fold_slices(r);
  int i = (int)(off / r->slice_ns);
  if (i >= r->nslices)
    r->nslices = i + 1;
  return &r->slice[i];
}

static void count_error(struct load_recorder *r, int code)
{
  int n = (int)(sizeof r->err / sizeof r->err[0]);
  int i = 0;
  while (i < r->nerr && r->err[i].code != code)
    i++;
  if (i == r->nerr && r->nerr < n)
    r->err[r->nerr++].code = code;
  r->err[i < n ? i : n - 1].n++;
  r->errors++;
}

void load_recorder_add(struct load_recorder *r, int64_t intended, int64_t sent, int64_t end,
                       int result)
{
  weft_mutex_lock(&r->mu);
  if (sent - intended > 1000 * 1000)
    r->late++;
  if (end > r->end)
    r->end = end;
  if (result > 0) {
    hist_record(&r->lat, end - intended);
    r->status[result < LOAD_MAX_STATUS ? result : 0]++;
    r->answered++;
    hist_record(&slice_at(r, intended)->lat, end - intended);
  } else {
    count_error(r, result);
  }
  slice_at(r, end)->completed++;
  weft_mutex_unlock(&r->mu);
}

void load_recorder_progress(struct load_recorder *r, struct load_progress *out)
{
  memset(out, 0, sizeof *out);
  weft_mutex_lock(&r->mu);
  out->answered = r->answered;
  out->errors = r->errors;
  for (int s = 200; s < LOAD_MAX_STATUS; s++) {
    uint64_t *bucket = s < 300   ? &out->s2xx
                       : s < 400 ? &out->s3xx
                       : s < 500 ? &out->s4xx
                                 : &out->s5xx;
    *bucket += r->status[s];
  }
  out->p99 = hist_percentile(&r->lat, 99);
  weft_mutex_unlock(&r->mu);
}
