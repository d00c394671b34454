/*
 * load_report.h - what overlap-load prints: the progress line, the readable summary, the JSON object.
 */
#ifndef OVL_LOAD_REPORT_H
#define OVL_LOAD_REPORT_H

#include "load_options.h"
#include "load_run.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* One progress line: rates over the last interval, errors and connections so far. */
struct load_progress {
    double elapsed;            /* seconds into the current phase */
    const char *label;         /* "connect", "warmup" or "" (measuring) */
    double msgs_per_s, mb_per_s;
    uint64_t p99_ns;           /* p99 of the measured window so far (0 before it starts) */
    uint64_t errors;
    uint64_t connections;      /* open or opening */
};

void load_report_progress(FILE *out, const struct load_progress *progress);

/* A latency distribution as the report shows it (from our histogram, or from merged interval logs). */
enum { LOAD_REPORT_QUANTILES = 4 };
extern const double load_report_quantiles[LOAD_REPORT_QUANTILES]; /* p50, p90, p99, p99.9 */
struct load_latency {
    uint64_t count;
    double min_ns, mean_ns, max_ns;
    double q_ns[LOAD_REPORT_QUANTILES];
};
void load_latency_of_histogram(const struct load_histogram *h, struct load_latency *latency);
/* The pieces of the summary and the JSON, for the merged report. */
void load_report_latency_line(FILE *out, const char *label, const struct load_latency *latency);
void load_report_errors_line(FILE *out, const uint64_t errors[LOAD_ERR_KINDS], const char *first_error);
void load_report_json_latency(FILE *out, const struct load_latency *latency);
void load_report_json_string(FILE *out, const char *text);
/* "35.1 us", "1.20 ms", "2.05 s". */
const char *load_report_duration(char *text, size_t size, double ns);

/* --target-p99: the runs tried, in order. */
enum { LOAD_SEARCH_MAX = 16 };
struct load_trial {
    double rate;               /* 0: the closed-loop run that finds the ceiling */
    double msgs_per_s;
    uint64_t p99_ns;
    uint64_t errors;
    bool met;                  /* p99 under the target, no error */
};
struct load_search {
    double target_p99_us;
    int count;
    struct load_trial trials[LOAD_SEARCH_MAX];
    int best;                  /* index of the highest rate that met the target, or -1 */
};

/* The summary of a run (with `search`, of a --target-p99 search whose best run, or last one when none met the
 * target, is `result`). `search` may be NULL. */
void load_report_text(FILE *out, const struct load_options *options, const struct load_result *result,
                      const struct load_search *search);
/* The same as one JSON object on one line. */
void load_report_json(FILE *out, const struct load_options *options, const struct load_result *result,
                      const struct load_search *search);

#endif
