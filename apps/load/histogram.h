/* histogram.h: an HDR-style latency histogram with log-bucketed counts.
 *
 * Values (non-negative integers; weft-load records nanoseconds) fall into buckets whose
 * width grows with the value: below 2^sub_bits every value has its own bucket, and each
 * power of two above that is split into 2^sub_bits equal buckets. A bucket is therefore
 * at most 1/2^sub_bits of its lower bound wide, and a percentile read from a bucket's
 * midpoint is within half of that of the true sample: sub_bits 7 gives < 0.4 %, well under
 * the 1 % weft-load promises. Memory is fixed by sub_bits (about 7300 counters at 7), so
 * recording never allocates, and two histograms with the same sub_bits merge by adding
 * counters. The exact minimum, maximum and sum are kept beside the buckets.
 *
 * Not synchronised: a histogram belongs to one owner, or is guarded by the owner's lock.
 *
 * The alternative that lost: keeping every sample and sorting at the end is exact but
 * grows without bound in a long run and cannot be merged cheaply per time slice. */
#ifndef WEFT_LOAD_HISTOGRAM_H
#define WEFT_LOAD_HISTOGRAM_H

#include <stdint.h>

typedef struct hist {
  int sub_bits;     /* 2^sub_bits buckets per power of two; fixed at creation */
  int nbuckets;     /* length of counts */
  uint64_t *counts; /* counts[bucket_of(v)]: samples in that bucket */
  uint64_t total;   /* samples recorded */
  int64_t min, max; /* exact extremes; meaningless while total is 0 */
  double sum;       /* of all samples, for the mean */
} hist;

/* hist_init: an empty histogram with 2^sub_bits buckets per power of two (1..12).
 * Returns 0, -EINVAL or -ENOMEM. */
int hist_init(hist *h, int sub_bits);
/* hist_destroy: free the buckets; h may be re-initialised after. */
void hist_destroy(hist *h);
/* hist_reset: forget every sample, keeping the buckets. */
void hist_reset(hist *h);
/* hist_record: count one sample v (negative values count as 0). */
void hist_record(hist *h, int64_t v);
/* hist_merge: add every sample of src to dst. Returns 0, or -EINVAL when their sub_bits
 * differ (dst unchanged). */
int hist_merge(hist *dst, const hist *src);
/* hist_percentile: the value below or at which q percent (0..100) of the samples lie,
 * within the bucket error; q 0 gives the exact minimum, q 100 the exact maximum. 0 when
 * the histogram is empty. */
int64_t hist_percentile(const hist *h, double q);
/* hist_mean: the exact mean, or 0 when empty. */
double hist_mean(const hist *h);

#endif
