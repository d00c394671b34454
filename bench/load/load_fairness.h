/*
 * load_fairness.h - how evenly a run's connections were served: the messages each connection (each connection slot,
 * under --churn) had echoed in the measured window, summed up as min / median / max and Jain's fairness index.
 * A server that starves some connections shows here even when its p50 looks good.
 */
#ifndef OVL_LOAD_FAIRNESS_H
#define OVL_LOAD_FAIRNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct load_fairness {
    bool measured;             /* false: no figures (never measured, or the counts could not be copied); the report
                                  says n/a, the JSON null, rather than show zeros that read as starvation */
    uint64_t connections;      /* n: the connection slots counted */
    uint64_t min, median, max; /* messages per slot; median is the ceil(n / 2)-th smallest (the report's quantile
                                  rule, load_histogram_quantile); all 0 when n = 0 */
    double jain;               /* (sum x)^2 / (n sum x^2): 1 when every slot had as many, 1/n when one had them all;
                                  1 by definition when n = 0 or every count is 0 (nobody was treated worse) */
};

/* The fairness of `counts[0..n)`. Sorts `counts` in place (the caller's copy: the median needs the order). */
void load_fairness_of(uint64_t *counts, size_t n, struct load_fairness *fairness);

/* The fairness of n connection slots, slot i's count being count(context, i): copied into an array of its own,
 * which is sorted. When that array cannot be allocated, fairness->measured is false. */
void load_fairness_measure(struct load_fairness *fairness, size_t n, uint64_t (*count)(const void *context, size_t i),
                           const void *context);

/* The report's fairness line (text) and its "fairness" member (JSON, after a comma the caller wrote): the figures,
 * or n/a and null when there are none. */
void load_fairness_write_text(FILE *out, const struct load_fairness *fairness);
void load_fairness_write_json(FILE *out, const struct load_fairness *fairness);

#endif
