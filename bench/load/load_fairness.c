/*
 * load_fairness.c - min / median / max of messages per connection and Jain's fairness index, and how the report
 * writes them (load_fairness.h).
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
    f->measured = true;
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

void load_fairness_measure(struct load_fairness *f, size_t n, uint64_t (*count)(const void *context, size_t i),
                           const void *context)
{
    uint64_t *counts = malloc((n ? n : 1) * sizeof *counts);
    if (!counts) {
        memset(f, 0, sizeof *f); /* not measured: no figure at all, not a fairness of 0 */
        return;
    }
    for (size_t i = 0; i < n; i++)
        counts[i] = count(context, i);
    load_fairness_of(counts, n, f);
    free(counts);
}

void load_fairness_write_text(FILE *out, const struct load_fairness *f)
{
    if (!f->measured) {
        fprintf(out, "  %-11s n/a (the counts per connection could not be copied: out of memory)\n", "fairness");
        return;
    }
    fprintf(out, "  %-11s messages per connection min %llu, median %llu, max %llu; Jain's index %.4f "
            "(1 = all served alike)\n", "fairness", (unsigned long long)f->min, (unsigned long long)f->median,
            (unsigned long long)f->max, f->jain);
}

void load_fairness_write_json(FILE *out, const struct load_fairness *f)
{
    if (!f->measured) {
        fprintf(out, "\"fairness\":null");
        return;
    }
    fprintf(out, "\"fairness\":{\"connections\":%llu,\"min\":%llu,\"median\":%llu,\"max\":%llu,\"jain\":%.6f}",
            (unsigned long long)f->connections, (unsigned long long)f->min, (unsigned long long)f->median,
            (unsigned long long)f->max, f->jain);
}
