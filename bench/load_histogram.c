/*
 * load_histogram.c - the log-linear latency histogram (see load_histogram.h for the layout).
 *
 * A value v >= 512 has its highest set bit at position msb >= 9; it is shifted right by msb - 8 so that 9 bits
 * remain (256..511), and those select one of 256 buckets of that octave. Below 512 every nanosecond has its own
 * bucket. This is HdrHistogram's scheme with a unit of 1 ns and 2.4 significant decimal digits.
 */
#include "load_histogram.h"

#include <string.h>

enum {
    SUB = 1 << LOAD_HIST_SUB_BITS,
    HALF = SUB / 2,
};

static unsigned bucket_of(uint64_t v)
{
    if (v < SUB)
        return (unsigned)v;
    if (v >> LOAD_HIST_MAX_BITS)
        v = (1ull << LOAD_HIST_MAX_BITS) - 1;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - (LOAD_HIST_SUB_BITS - 1);
    unsigned sub = (unsigned)(v >> shift);
    return SUB + (shift - 1) * HALF + (sub - HALF);
}

static uint64_t bucket_top(unsigned index)
{
    if (index < SUB)
        return index;
    unsigned shift = (index - SUB) / HALF + 1;
    uint64_t sub = (index - SUB) % HALF + HALF;
    return ((sub + 1) << shift) - 1;
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
    /* The rank of the sample wanted: ceil(q * count), at least 1. */
    double exact = q * (double)h->count;
    uint64_t rank = (uint64_t)exact;
    if ((double)rank < exact)
        rank++;
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < LOAD_HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t top = bucket_top(i);
            if (top > h->max)
                top = h->max;
            if (top < h->min)
                top = h->min;
            return top;
        }
    }
    return h->max;
}

double load_histogram_mean(const struct load_histogram *h)
{
    return h->count ? (double)h->sum / (double)h->count : 0.0;
}
