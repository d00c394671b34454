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
