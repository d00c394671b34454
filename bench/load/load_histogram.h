/*
 * load_histogram.h - the latency histogram: an HdrHistogram (load_hdr.h) over nanoseconds with 3 significant
 * digits: 2048 sub-buckets of 1 ns (exact below 2048 ns), then 1024 per power of two, so a bucket is never wider
 * than 1/1024 of its values (0.1%); values up to 2^40 ns (about 18 minutes; larger ones land in the top bucket,
 * the exact maximum is kept aside). Fixed size, no allocation: recording is an index computation and an
 * increment, cheap enough for every message. Its counts array is HdrHistogram's, index for index.
 */
#ifndef OVL_LOAD_HISTOGRAM_H
#define OVL_LOAD_HISTOGRAM_H

#include "load_hdr.h"

#include <stdint.h>

#define LOAD_HIST_LOWEST 1                          /* ns */
#define LOAD_HIST_HIGHEST ((1ll << 40) - 1)         /* ns */
#define LOAD_HIST_DIGITS 3
enum {
    LOAD_HIST_SUB_HALF_MAGNITUDE = 10,              /* 2048 sub-buckets: 2^ceil(log2(2 * 10^3)) */
    LOAD_HIST_BUCKETS = 31 << LOAD_HIST_SUB_HALF_MAGNITUDE, /* (30 buckets + 1) * 1024: HdrHistogram's length */
};

struct load_histogram {
    uint64_t count;
    uint64_t min, max;        /* exact; min is UINT64_MAX while empty */
    uint64_t sum;             /* for the mean; 2^64 ns is 584 years of summed latency */
    uint64_t buckets[LOAD_HIST_BUCKETS];
};

/* The layout above as HdrHistogram computes it (load_hdr_layout_init of LOWEST, HIGHEST, DIGITS). */
extern const struct load_hdr_layout load_histogram_layout;

void load_histogram_init(struct load_histogram *h);
void load_histogram_record(struct load_histogram *h, uint64_t ns);
void load_histogram_merge(struct load_histogram *into, const struct load_histogram *from);
/* The value at quantile q (0..1): the highest value of the bucket holding the ceil(q * count)-th smallest sample,
 * never more than the exact maximum (so a reported p99 never understates). 0 when empty. */
uint64_t load_histogram_quantile(const struct load_histogram *h, double q);
/* Mean in nanoseconds; 0 when empty. */
double load_histogram_mean(const struct load_histogram *h);

#endif
