/* histogram.c: the log-bucketed histogram (see histogram.h for the bucket layout).
 *
 * Bucket index of v, with S = sub_bits and e = floor(log2 v):
 *   v < 2^S:   v itself (exact);
 *   otherwise: (e - S) * 2^S + (v >> (e - S)), where v >> (e - S) lies in [2^S, 2^(S+1)),
 * so each power of two [2^e, 2^(e+1)) maps onto 2^S consecutive buckets of width
 * 2^(e-S), following straight on from the previous one. */
#include "histogram.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int bucket_of(const hist *h, uint64_t v)
{
  int s = h->sub_bits;
  if (v < (1ULL << s))
    return (int)v;
  int e = 63 - __builtin_clzll(v);
  return ((e - s) << s) + (int)(v >> (e - s));
}

/* The lowest value that falls into bucket b, and the bucket's width. */
static void bucket_range(const hist *h, int b, uint64_t *low, uint64_t *width)
{
  int s = h->sub_bits;
  if (b < (2 << s)) {
    *low = (uint64_t)b;
    *width = 1;
    return;
  }
  int shift = (b >> s) - 1; /* e - s */
  uint64_t top = (uint64_t)b - ((uint64_t)shift << s);
  *low = top << shift;
  *width = 1ULL << shift;
}

int hist_init(hist *h, int sub_bits)
{
  memset(h, 0, sizeof *h);
  if (sub_bits < 1 || sub_bits > 12)
    return -EINVAL;
  h->sub_bits = sub_bits;
  /* The largest value, 2^63 - 1, has e = 62. */
  h->nbuckets = ((62 - sub_bits) << sub_bits) + (2 << sub_bits);
  h->counts = calloc((size_t)h->nbuckets, sizeof *h->counts);
  return h->counts ? 0 : -ENOMEM;
}

void hist_destroy(hist *h)
{
  free(h->counts);
  h->counts = NULL;
}

void hist_reset(hist *h)
{
  memset(h->counts, 0, sizeof *h->counts * (size_t)h->nbuckets);
  h->total = 0;
  h->sum = 0;
}

void hist_record(hist *h, int64_t v)
{
  if (v < 0)
    v = 0;
  h->counts[bucket_of(h, (uint64_t)v)]++;
  if (h->total == 0 || v < h->min)
    h->min = v;
  if (h->total == 0 || v > h->max)
    h->max = v;
  h->total++;
  h->sum += (double)v;
}

int hist_merge(hist *dst, const hist *src)
{
  if (dst->sub_bits != src->sub_bits)
    return -EINVAL;
  if (src->total == 0)
    return 0;
  for (int b = 0; b < dst->nbuckets; b++)
    dst->counts[b] += src->counts[b];
  if (dst->total == 0 || src->min < dst->min)
    dst->min = src->min;
  if (dst->total == 0 || src->max > dst->max)
    dst->max = src->max;
  dst->total += src->total;
  dst->sum += src->sum;
  return 0;
}

int64_t hist_percentile(const hist *h, double q)
{
  if (h->total == 0)
    return 0;
  if (q <= 0)
    return h->min;
  if (q >= 100)
    return h->max;
  /* The rank of the sample wanted, 1-based: the smallest with q% at or below it. */
  uint64_t rank = (uint64_t)((q / 100.0) * (double)h->total + 0.9999999);
  if (rank < 1)
    rank = 1;
  uint64_t seen = 0;
  for (int b = 0; b < h->nbuckets; b++) {
    seen += h->counts[b];
    if (seen < rank)
      continue;
    uint64_t low, width;
    bucket_range(h, b, &low, &width);
    int64_t mid = (int64_t)(low + (width - 1) / 2);
    /* The exact extremes are better than a midpoint outside them. */
    return mid < h->min ? h->min : mid > h->max ? h->max : mid;
  }
  return h->max;
}

double hist_mean(const hist *h)
{
  return h->total ? h->sum / (double)h->total : 0;
}
