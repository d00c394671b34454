/*
 * load_hist.c - a log-bucketed latency histogram in the manner of HdrHistogram: exact below 1024 ns, then 512
 * buckets per power of two (relative error under 0.2%), fixed memory, O(1) recording.
 */
#include "load.h"

static unsigned bucket_of(uint64_t value)
{
    if (value < LOAD_HIST_SUB)
        return (unsigned)value;
    unsigned exponent = 63u - (unsigned)__builtin_clzll(value); /* >= 10 */
    unsigned shift = exponent - 9;
    unsigned sub = (unsigned)(value >> shift); /* 512 .. 1023 */
    return LOAD_HIST_SUB + (exponent - 10) * 512 + (sub - 512);
}

static uint64_t bucket_top(unsigned index)
{
    if (index < LOAD_HIST_SUB)
        return index;
    unsigned exponent = (index - LOAD_HIST_SUB) / 512 + 10;
    unsigned sub = (index - LOAD_HIST_SUB) % 512 + 512;
    unsigned shift = exponent - 9;
    return (((uint64_t)sub + 1) << shift) - 1;
}

void load_hist_record(struct load_hist *hist, uint64_t value)
{
    unsigned index = bucket_of(value);
    if (index >= LOAD_HIST_BUCKETS)
        index = LOAD_HIST_BUCKETS - 1;
    hist->buckets[index]++;
    hist->count++;
    hist->sum += value;
    if (value > hist->max)
        hist->max = value;
}

void load_hist_merge(struct load_hist *into, const struct load_hist *from)
{
    for (unsigned i = 0; i < LOAD_HIST_BUCKETS; i++)
        into->buckets[i] += from->buckets[i];
    into->count += from->count;
    into->sum += from->sum;
    if (from->max > into->max)
        into->max = from->max;
}

uint64_t load_hist_quantile(const struct load_hist *hist, double q)
{
    if (!hist->count)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)hist->count + 0.5);
    if (rank < 1)
        rank = 1;
    if (rank > hist->count)
        rank = hist->count;
    uint64_t seen = 0;
    for (unsigned i = 0; i < LOAD_HIST_BUCKETS; i++) {
        seen += hist->buckets[i];
        if (seen >= rank) {
            uint64_t top = bucket_top(i);
            return top < hist->max ? top : hist->max;
        }
    }
    return hist->max;
}
