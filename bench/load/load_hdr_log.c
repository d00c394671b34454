/*
 * load_hdr_log.c - writing HdrHistogram interval logs (see load_hdr_log.h).
 */
#include "load_hdr_log.h"
#include "overlap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const struct load_hdr_layout load_log_layout = {
    .lowest = 1,
    .highest = LOAD_LOG_HIGHEST_US,
    .digits = 3,
    .unit_magnitude = 0,
    .sub_half_magnitude = 10,
    .counts_len = LOAD_LOG_COUNTS,
};

struct load_hdr_writer {
    FILE *file;
    char *path;
    char tag[72];
    char *text;                /* room for one encoded histogram */
    size_t text_size;
    bool failed;
    char error[160];
};

int load_hdr_writer_open(struct load_hdr_writer **out, const char *path, const char *tag, char *error,
                         size_t error_size)
{
    *out = NULL;
    struct load_hdr_layout check;
    if (load_hdr_layout_init(&check, load_log_layout.lowest, load_log_layout.highest, load_log_layout.digits) < 0 ||
        memcmp(&check, &load_log_layout, sizeof check) != 0) {
        snprintf(error, error_size, "--hdr-log: internal error: the log's histogram layout is not HdrHistogram's");
        return -1;
    }
#ifndef OVL_HAVE_ZLIB
    (void)path;
    (void)tag;
    snprintf(error, error_size, "--hdr-log: not built with zlib (HdrHistogram logs are compressed with it)");
    return -1;
#else
    struct load_hdr_writer *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(error, error_size, "--hdr-log: out of memory");
        return -1;
    }
    w->text_size = load_hdr_encoded_bound(&load_log_layout);
    w->text = malloc(w->text_size);
    w->path = malloc(strlen(path) + 1);
    if (!w->text || !w->path) {
        free(w->text);
        free(w->path);
        free(w);
        snprintf(error, error_size, "--hdr-log: out of memory");
        return -1;
    }
    strcpy(w->path, path);
    snprintf(w->tag, sizeof w->tag, "%s", tag);
    w->file = fopen(path, "w");
    if (!w->file) {
        snprintf(error, error_size, "--hdr-log %s: %s", path, strerror(errno));
        free(w->text);
        free(w->path);
        free(w);
        return -1;
    }
    *out = w;
    return 0;
#endif
}

void load_hdr_writer_start(struct load_hdr_writer *w, double start_wall_s)
{
    time_t seconds = (time_t)start_wall_s;
    struct tm utc;
    char date[64] = "";
#ifdef _WIN32
    if (gmtime_s(&utc, &seconds) == 0)
#else
    if (gmtime_r(&seconds, &utc))
#endif
        strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &utc);
    fprintf(w->file, "#[overlap-load %s interval log: values in microseconds; Tag=%s is the message latency, "
                     "Tag=%s.connect the connect latency]\n", ovl_version(), w->tag, w->tag);
    fprintf(w->file, "#[Histogram log format version 1.3]\n");
    fprintf(w->file, "#[StartTime: %.3f (seconds since epoch), %s]\n", start_wall_s, date);
    fprintf(w->file, "#[BaseTime: %.3f (seconds since epoch)]\n", start_wall_s);
    fprintf(w->file, "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n");
    fflush(w->file);
}

int load_hdr_writer_interval(struct load_hdr_writer *w, bool connect, double start_s, double length_s,
                             const uint64_t *counts)
{
    if (w->failed)
        return -1;
    uint64_t max = 0;
    for (unsigned i = LOAD_LOG_COUNTS; i > 0; i--)
        if (counts[i - 1]) {
            max = load_hdr_highest_at(&load_log_layout, i - 1);
            break;
        }
    if (load_hdr_encode(&load_log_layout, counts, w->text, w->text_size, w->error, sizeof w->error) < 0) {
        w->failed = true;
        return -1;
    }
    fprintf(w->file, "Tag=%s%s,%.3f,%.3f,%.3f,%s\n", w->tag, connect ? ".connect" : "", start_s, length_s,
            (double)max, w->text);
    fflush(w->file);
    return 0;
}

void load_hdr_writer_summary(struct load_hdr_writer *w, const struct load_options *o, const struct load_result *r)
{
    fprintf(w->file, "#[overlap-load summary: generator=%s target=%s seconds=%.6f msgs=%llu bytes=%llu "
                     "bytes_total=%llu connects=%llu connects_in_window=%llu", w->tag, r->target, r->seconds,
            (unsigned long long)r->msgs, (unsigned long long)r->bytes, (unsigned long long)r->bytes_total,
            (unsigned long long)r->connects,
            (unsigned long long)r->window_connects);
    for (int k = 0; k < LOAD_ERR_KINDS; k++)
        fprintf(w->file, " errors.%s=%llu", load_error_keys[k], (unsigned long long)r->errors[k]);
    fprintf(w->file, " rate=%.3f connections=%u size=%u pipeline=%u", r->rate, o->connections, o->size, o->pipeline);
    if (o->share_count)
        fprintf(w->file, " share=%u/%u total_rate=%.3f", o->share_index, o->share_count, o->rate);
    if (o->start_at > 0)
        fprintf(w->file, " start_at=%.3f start_late=%.6f", o->start_at, r->start_late);
    fprintf(w->file, "]\n");
}

int load_hdr_writer_close(struct load_hdr_writer *w, char *error, size_t error_size)
{
    if (!w)
        return 0;
    int rc = 0;
    if (w->failed) {
        snprintf(error, error_size, "--hdr-log %s: %s", w->path, w->error);
        rc = -1;
    }
    if (ferror(w->file) | fclose(w->file)) {
        if (!rc)
            snprintf(error, error_size, "--hdr-log %s: %s", w->path, strerror(errno));
        rc = -1;
    }
    free(w->text);
    free(w->path);
    free(w);
    return rc;
}
