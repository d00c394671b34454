/*
 * load_merge.h - `overlap-load merge [--json] LOG...`: add the interval logs of several generators (--hdr-log, or
 * any HdrHistogram interval log of the same precision and range) exactly, and print one report as a run does.
 */
#ifndef OVL_LOAD_MERGE_H
#define OVL_LOAD_MERGE_H

#include <stdbool.h>
#include <stddef.h>

enum { LOAD_MERGE_MAX_LOGS = 256, LOAD_MERGE_MAX_GENERATORS = 256 };

struct load_merge_options {
    bool json;
    bool help;
    int count;                  /* logs, 1..LOAD_MERGE_MAX_LOGS */
    char *const *logs;
};

/* argv[0] is "merge". Pure, like load_options_parse: 0, or -1 with the reason in `error`. */
int load_merge_options_parse(int argc, char *const argv[], struct load_merge_options *options, char *error,
                             size_t error_size);
extern const char load_merge_usage[];

/* Read, check, add and report. Returns the exit code: 0, 1 (a log that cannot be read or merged, errors in the
 * generators' runs, no message), never 2 (the caller handles arguments). */
int load_merge(const struct load_merge_options *options);

#endif
