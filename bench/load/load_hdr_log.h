/*
 * load_hdr_log.h - HdrHistogram interval logs (the format of HdrHistogram's HistogramLogWriter, log format 1.3):
 * overlap-load --hdr-log writes one, `overlap-load merge` reads several (ours or the reference tools') and adds
 * them exactly.
 *
 * A log written here: a comment naming the program and the unit (microseconds), the format version, StartTime and
 * BaseTime (the wall-clock start of the measured window, seconds since the epoch), the legend, then per interval
 * one line per series, `Tag=NAME,start,length,max,HISTOGRAM`, start relative to BaseTime, max in microseconds,
 * HISTOGRAM the V2 compressed encoding in base64. Series: NAME is the message latency, NAME.connect the connect
 * latency. At the end a comment `#[overlap-load summary: key=value ...]` carries what a histogram cannot (messages,
 * bytes, errors, the rate asked for), which the merger reads; the reference tools skip it as a comment.
 */
#ifndef OVL_LOAD_HDR_LOG_H
#define OVL_LOAD_HDR_LOG_H

#include "load_hdr.h"
#include "load_options.h"
#include "load_run.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* The logged histograms: microseconds, 1 us to one hour, 3 significant digits. */
#define LOAD_LOG_HIGHEST_US 3600000000ll
enum { LOAD_LOG_COUNTS = 23 << 10 };
extern const struct load_hdr_layout load_log_layout;

/* The counts index of a latency of `ns` nanoseconds in the logged (microsecond) histograms. Rounded up, so a
 * logged value is never below the measured one, as the report's percentiles are not. */
static inline unsigned load_log_index(uint64_t ns)
{
    uint64_t us = ns / 1000 + (ns % 1000 != 0);
    if (us > (uint64_t)LOAD_LOG_HIGHEST_US)
        us = (uint64_t)LOAD_LOG_HIGHEST_US;
    return load_hdr_index(&load_log_layout, us);
}

struct load_hdr_writer;

/* Create the log file. Returns 0, or -1 with the reason (naming the option and the file) in `error`. */
int load_hdr_writer_open(struct load_hdr_writer **writer, const char *path, const char *tag, char *error,
                         size_t error_size);
/* The header: the window starts at `start_wall_s` (seconds since the epoch). */
void load_hdr_writer_start(struct load_hdr_writer *writer, double start_wall_s);
/* One interval of one series (connect: the .connect series), times in seconds from the start. */
int load_hdr_writer_interval(struct load_hdr_writer *writer, bool connect, double start_s, double length_s,
                             const uint64_t *counts);
/* The summary comment for the merger. */
void load_hdr_writer_summary(struct load_hdr_writer *writer, const struct load_options *options,
                             const struct load_result *result);
/* Close; returns -1 with the reason when anything could not be written. */
int load_hdr_writer_close(struct load_hdr_writer *writer, char *error, size_t error_size);

#endif
