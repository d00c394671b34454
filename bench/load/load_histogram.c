/*
 * load_histogram.c - the latency histogram (see load_histogram.h): HdrHistogram's index arithmetic (load_hdr.h)
 * on a fixed layout, so the compiler folds the layout's constants into the recording path.
 */
#include "load_histogram.h"

#include <string.h>

const struct load_hdr_layout load_histogram_layout = {
    .lowest = LOAD_HIST_LOWEST,
    .highest = LOAD_HIST_HIGHEST,
    .digits = LOAD_HIST_DIGITS,
    .unit_magnitude = 0,
    .sub_half_magnitude = LOAD_HIST_SUB_HALF_MAGNITUDE,
    .counts_len = LOAD_HIST_BUCKETS,
};

static unsigned bucket_of(uint64_t v)
{
    static const struct load_hdr_layout layout = {
        .lowest = LOAD_HIST_LOWEST, .highest = LOAD_HIST_HIGHEST, .digits = LOAD_HIST_DIGITS,
        .unit_magnitude = 0, .sub_half_magnitude = LOAD_HIST_SUB_HALF_MAGNITUDE, .counts_len = LOAD_HIST_BUCKETS};
    if (v > (uint64_t)LOAD_HIST_HIGHEST)
        v = (uint64_t)LOAD_HIST_HIGHEST;
    return load_hdr_index(&layout, v);
}

void load_histogram_init(struct load_histogram *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

void load_histogram_record(struct load_histogram *h, uint64_t ns)
{
    h->buckets[bucket_of(ns)]++;
    h->count++;
    h->sum += ns;
    if (ns > h->max)
        h->max = ns;
    if (ns < h->min)
        h->min = ns;
}

void load_histogram_merge(struct load_histogram *into, const struct load_histogram *from)
{
    if (!from->count)
        return;
    for (unsigned i = 0; i < LOAD_HIST_BUCKETS; i++)
        into->buckets[i] += from->buckets[i];
    into->count += from->count;
    into->sum += from->sum;
    if (from->max > into->max)
        into->max = from->max;
    if (from->min < into->min)
        into->min = from->min;
}

uint64_t load_histogram_quantile(const struct load_histogram *h, double q)
{
    if (!h->count)
        return 0;
    if (q >= 1.0)
        return h->max;
    if (q <= 0.0)
        return h->min;
    unsigned i = load_hdr_quantile_index(h->buckets, LOAD_HIST_BUCKETS, h->count, q);
    if (i == LOAD_HIST_BUCKETS)
        return h->max;
    uint64_t top = load_hdr_highest_at(&load_histogram_layout, i);
    if (top > h->max)
        top = h->max;
    if (top < h->min)
        top = h->min;
    return top;
}

double load_histogram_mean(const struct load_histogram *h)
{
    return h->count ? (double)h->sum / (double)h->count : 0.0;
}
