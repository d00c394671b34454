/*
 * load_histogram.h - latency histogram in the HdrHistogram manner: log-linear buckets over nanoseconds, 256 linear
 * sub-buckets per power of two (relative error below 0.4%), exact below 512 ns, values up to 2^40 ns (about 18
 * minutes; larger ones land in the top bucket, the exact maximum is kept aside). Fixed size, no allocation:
 * recording is an index computation and an increment, cheap enough for every message.
 */
#ifndef OVL_LOAD_HISTOGRAM_H
#define OVL_LOAD_HISTOGRAM_H

#include <stdint.h>

enum {
    LOAD_HIST_SUB_BITS = 9,   /* 512 sub-buckets in the first range, half of them new in each further octave */
    LOAD_HIST_MAX_BITS = 40,  /* values below 2^40 ns keep their precision */
    LOAD_HIST_BUCKETS = (1 << LOAD_HIST_SUB_BITS) +
                        (LOAD_HIST_MAX_BITS - LOAD_HIST_SUB_BITS) * (1 << (LOAD_HIST_SUB_BITS - 1))
};

struct load_histogram {
    uint64_t count;
    uint64_t min, max;        /* exact; min is UINT64_MAX while empty */
    uint64_t sum;             /* for the mean; 2^64 ns is 584 years of summed latency */
    uint64_t buckets[LOAD_HIST_BUCKETS];
};

void load_histogram_init(struct load_histogram *h);
void load_histogram_record(struct load_histogram *h, uint64_t ns);
void load_histogram_merge(struct load_histogram *into, const struct load_histogram *from);
/* The value at quantile q (0..1): the highest value of the bucket holding the ceil(q * count)-th smallest sample,
 * never more than the exact maximum (so a reported p99 never understates). 0 when empty. */
uint64_t load_histogram_quantile(const struct load_histogram *h, double q);
/* Mean in nanoseconds; 0 when empty. */
double load_histogram_mean(const struct load_histogram *h);

#endif
