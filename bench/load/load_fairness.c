/*
 * load_fairness.c - min / median / max of messages per connection and Jain's fairness index (load_fairness.h).
 */
#include "load_fairness.h"

#include <stdlib.h>
#include <string.h>

static int compare_counts(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

void load_fairness_of(uint64_t *counts, size_t n, struct load_fairness *f)
{
    memset(f, 0, sizeof *f);
    f->connections = n;
    f->jain = 1.0;
    if (n == 0)
        return;
    qsort(counts, n, sizeof *counts, compare_counts);
    f->min = counts[0];
    f->median = counts[(n + 1) / 2 - 1];
    f->max = counts[n - 1];
    /* In doubles: the sum of squares of counts in the millions overflows 64 bits at a few thousand connections. */
    double sum = 0, squares = 0;
    for (size_t i = 0; i < n; i++) {
        sum += (double)counts[i];
        squares += (double)counts[i] * (double)counts[i];
    }
    if (squares > 0)
        f->jain = sum * sum / ((double)n * squares);
}
