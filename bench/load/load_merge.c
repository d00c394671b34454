/*
 * load_merge.c - `overlap-load merge`: read HdrHistogram interval logs (ours or the reference tools'), add their
 * histograms bucket by bucket (exact: the histograms must have the same layout, which is checked), and report as
 * a run does: messages and rates summed over the generators, percentiles from the merged histogram, errors summed,
 * one line per generator, and the spread of the generators' StartTime.
 *
 * A generator is one tag of one log (an untagged log is one generator, named after its file); NAME.connect lines
 * are that generator's connect latency. What a histogram does not carry (messages, bytes, errors, the rate asked
 * for) comes from the `#[overlap-load summary: ...]` comment when there is one; a reference tool's log has none,
 * and then the messages are its histogram's count, its window the sum of its intervals, its errors unknown.
 *
 * The input is text we did not write: every line, field and number is checked, lengths are bounded, and a bad
 * line ends the merge with its file and line number rather than being skipped.
 */
#include "load_merge.h"
#include "load_hdr.h"
#include "load_hdr_log.h"
#include "load_report.h"
#include "load_run.h"
#include "option_values.h"
#include "overlap.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LOG_BYTES (256u << 20)

const char load_merge_usage[] =
    "usage: overlap-load merge [--json] LOG...\n"
    "  LOG                  an HdrHistogram interval log (overlap-load --hdr-log, or a reference tool's) of the\n"
    "                       same precision and range as the others; 1 to 256 logs\n"
    "  --json               print the merged result as one JSON object on stdout\n"
    "  --help               this text\n";

int load_merge_options_parse(int argc, char *const argv[], struct load_merge_options *o, char *error,
                             size_t error_size)
{
    memset(o, 0, sizeof *o);
    if (error_size)
        error[0] = '\0';
    int first = 0;
    for (int i = 1; i < argc && argv[i]; i++) {
        const char *arg = argv[i];
        if (arg[0] == '-' && arg[1]) {
            if (first) {
                snprintf(error, error_size, "merge: options go before the logs ('%.64s')", arg);
                return -1;
            }
            if (!strcmp(arg, "--json"))
                o->json = true;
            else if (!strcmp(arg, "--help") || !strcmp(arg, "-h"))
                o->help = true;
            else {
                snprintf(error, error_size, "merge: unknown option '%.64s'", arg);
                return -1;
            }
            continue;
        }
        if (!arg[0]) {
            snprintf(error, error_size, "merge: an empty log file name");
            return -1;
        }
        if (!first)
            first = i;
        o->count++;
    }
    if (o->help)
        return 0;
    if (o->count < 1) {
        snprintf(error, error_size, "merge: no log given");
        return -1;
    }
    if (o->count > LOAD_MERGE_MAX_LOGS) {
        snprintf(error, error_size, "merge: %d logs, more than %d", o->count, LOAD_MERGE_MAX_LOGS);
        return -1;
    }
    o->logs = argv + first;
    for (int i = 0; i < o->count; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(o->logs[i], o->logs[j])) {
                snprintf(error, error_size, "merge: %.200s is given twice (it would be counted twice)", o->logs[i]);
                return -1;
            }
    return 0;
}

/* ---- what the logs hold ---- */

struct series {
    uint64_t *counts;           /* load_log_layout-sized once anything was added */
    uint64_t count;
};

struct generator {
    char name[72];
    const char *log;
    bool has_start;
    double start_time;          /* the log's StartTime (or BaseTime), seconds since the epoch */
    double logged_seconds;      /* the latency series' interval lengths, summed */
    struct series latency, connect;
    bool has_summary;
    double seconds, rate;
    uint64_t msgs, bytes, bytes_total, connects;
    uint64_t errors[LOAD_ERR_KINDS];
    char target[160];
};

struct merge {
    struct load_hdr_layout layout; /* of the first histogram; every other must equal it */
    bool have_layout;
    char layout_source[320];
    struct generator *generators[LOAD_MERGE_MAX_GENERATORS];
    int count;
    char error[512];
};

static int fail(struct merge *m, const char *log, unsigned line, const char *format, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(struct merge *m, const char *log, unsigned line, const char *format, ...)
{
    char text[384];
    va_list args;
    va_start(args, format);
    vsnprintf(text, sizeof text, format, args);
    va_end(args);
    if (line)
        snprintf(m->error, sizeof m->error, "merge: %s line %u: %s", log, line, text);
    else
        snprintf(m->error, sizeof m->error, "merge: %s: %s", log, text);
    return -1;
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
#ifdef _WIN32
    const char *backslash = strrchr(path, '\\');
    if (backslash && (!slash || backslash > slash))
        slash = backslash;
#endif
    return slash ? slash + 1 : path;
}

static struct generator *generator_of(struct merge *m, const char *log, const char *name, size_t name_len)
{
    for (int i = 0; i < m->count; i++) {
        struct generator *g = m->generators[i];
        if (g->log == log && strlen(g->name) == name_len && !memcmp(g->name, name, name_len))
            return g;
    }
    if (m->count >= LOAD_MERGE_MAX_GENERATORS)
        return NULL;
    struct generator *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    memcpy(g->name, name, name_len);
    g->log = log;
    m->generators[m->count++] = g;
    return g;
}

/* [text, end) as a string in buffer: -1 when empty or too long. */
static int field(const char *text, const char *end, char *buffer, size_t size)
{
    size_t len = (size_t)(end - text);
    if (len == 0 || len >= size)
        return -1;
    memcpy(buffer, text, len);
    buffer[len] = '\0';
    return 0;
}

/* A decimal number, finite, the whole of [text, end). */
static int number(const char *text, const char *end, double *out)
{
    char buffer[64];
    if (field(text, end, buffer, sizeof buffer) < 0)
        return -1;
    for (size_t i = 0; buffer[i]; i++)
        if (!isdigit((unsigned char)buffer[i]) && buffer[i] != '.' && buffer[i] != '-' && buffer[i] != '+' &&
            buffer[i] != 'e' && buffer[i] != 'E')
            return -1;
    char *stop = NULL;
    errno = 0;
    double value = strtod(buffer, &stop);
    if (errno || *stop || !isfinite(value))
        return -1;
    *out = value;
    return 0;
}

/* A count, digits only, the whole of [text, end). */
static int count_value(const char *text, const char *end, uint64_t *out)
{
    char buffer[32];
    unsigned long long value;
    if (field(text, end, buffer, sizeof buffer) < 0 || option_parse_uint(buffer, UINT64_MAX, &value) < 0)
        return -1;
    *out = value;
    return 0;
}

/* "#[overlap-load summary: key=value ...]": the figures a histogram does not carry. Unknown keys are skipped, so
 * newer writers stay readable. */
static int read_summary(struct merge *m, const char *log, unsigned line_no, const char *p, const char *end)
{
    if (end == p || end[-1] != ']')
        return fail(m, log, line_no, "the summary comment does not end with ']'");
    end--;
    struct generator *g = NULL;
    struct generator scratch;
    memset(&scratch, 0, sizeof scratch);
    /* The generator's name comes first; figures before it would have nowhere to go. */
    while (p < end) {
        while (p < end && *p == ' ')
            p++;
        const char *token = p;
        while (p < end && *p != ' ')
            p++;
        if (token == p)
            break;
        const char *eq = memchr(token, '=', (size_t)(p - token));
        if (!eq)
            return fail(m, log, line_no, "summary: '%.*s' is not key=value", (int)(p - token > 40 ? 40 : p - token),
                        token);
        size_t key_len = (size_t)(eq - token);
        const char *value = eq + 1;
#define KEY(name) (key_len == sizeof(name) - 1 && !memcmp(token, name, key_len))
        if (KEY("generator")) {
            if (p - value < 1 || p - value > 64)
                return fail(m, log, line_no, "summary: the generator name is empty or longer than 64");
            g = generator_of(m, log, value, (size_t)(p - value));
            if (!g)
                return fail(m, log, line_no, "more than %d generators", LOAD_MERGE_MAX_GENERATORS);
            continue;
        }
        struct generator *to = g ? g : &scratch;
        int bad = 0;
        if (KEY("seconds"))
            bad = number(value, p, &to->seconds) || to->seconds < 0;
        else if (KEY("rate"))
            bad = number(value, p, &to->rate) || to->rate < 0;
        else if (KEY("msgs"))
            bad = count_value(value, p, &to->msgs);
        else if (KEY("bytes"))
            bad = count_value(value, p, &to->bytes);
        else if (KEY("bytes_total"))
            bad = count_value(value, p, &to->bytes_total);
        else if (KEY("connects"))
            bad = count_value(value, p, &to->connects);
        else if (KEY("target"))
            snprintf(to->target, sizeof to->target, "%.*s", (int)(p - value > 150 ? 150 : p - value), value);
        else if (key_len > 7 && !memcmp(token, "errors.", 7)) {
            for (int k = 0; k < LOAD_ERR_KINDS; k++)
                if (key_len - 7 == strlen(load_error_keys[k]) && !memcmp(token + 7, load_error_keys[k], key_len - 7))
                    bad = count_value(value, p, &to->errors[k]);
        }
#undef KEY
        if (bad)
            return fail(m, log, line_no, "summary: bad value in '%.*s'", (int)(p - token > 60 ? 60 : p - token), token);
    }
    if (!g)
        return fail(m, log, line_no, "summary without generator=NAME");
    g->has_summary = true;
    return 0;
}

static int add_counts(struct merge *m, const char *log, unsigned line_no, struct series *s,
                      const struct load_hdr_layout *layout, const uint64_t *counts)
{
    if (!m->have_layout) {
        m->layout = *layout;
        m->have_layout = true;
        snprintf(m->layout_source, sizeof m->layout_source, "%s line %u", log, line_no);
    } else if (layout->lowest != m->layout.lowest || layout->highest != m->layout.highest ||
               layout->digits != m->layout.digits) {
        return fail(m, log, line_no, "a histogram of %d significant digits from %lld to %lld, but %s has %d digits "
                    "from %lld to %lld: adding them would not be exact", layout->digits, (long long)layout->lowest,
                    (long long)layout->highest, m->layout_source, m->layout.digits, (long long)m->layout.lowest,
                    (long long)m->layout.highest);
    }
    if (!s->counts) {
        s->counts = calloc(m->layout.counts_len, sizeof *s->counts);
        if (!s->counts)
            return fail(m, log, line_no, "out of memory");
    }
    for (unsigned i = 0; i < m->layout.counts_len; i++) {
        if (counts[i] > UINT64_MAX - s->counts[i] || counts[i] > UINT64_MAX - s->count)
            return fail(m, log, line_no, "counts overflow 64 bits");
        s->counts[i] += counts[i];
        s->count += counts[i];
    }
    return 0;
}

static int read_interval(struct merge *m, const char *log, unsigned line_no, const char *p, const char *end)
{
    const char *tag = NULL;
    size_t tag_len = 0;
    if (end - p >= 4 && !memcmp(p, "Tag=", 4)) {
        tag = p + 4;
        const char *comma = memchr(tag, ',', (size_t)(end - tag));
        if (!comma)
            return fail(m, log, line_no, "a tag and no interval");
        tag_len = (size_t)(comma - tag);
        if (tag_len < 1 || tag_len > 72)
            return fail(m, log, line_no, "a tag of %u characters (1-72)", (unsigned)tag_len);
        for (size_t i = 0; i < tag_len; i++)
            if (isspace((unsigned char)tag[i]))
                return fail(m, log, line_no, "white space in the tag");
        p = comma + 1;
    }
    double fields[3];
    for (int f = 0; f < 3; f++) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        if (!comma || number(p, comma, &fields[f]) < 0)
            return fail(m, log, line_no, "not an interval line (StartTimestamp,Interval_Length,Interval_Max,"
                        "Histogram)");
        p = comma + 1;
    }
    if (fields[1] < 0)
        return fail(m, log, line_no, "a negative interval length");
    struct load_hdr_layout layout;
    uint64_t *counts = NULL;
    char reason[256];
    if (load_hdr_decode(p, (size_t)(end - p), &layout, &counts, reason, sizeof reason) < 0)
        return fail(m, log, line_no, "%s", reason);
    bool connect = false;
    if (tag && tag_len > 8 && !memcmp(tag + tag_len - 8, ".connect", 8)) {
        connect = true;
        tag_len -= 8;
    }
    const char *name = tag ? tag : base_name(log);
    size_t name_len = tag ? tag_len : strlen(name);
    if (name_len > 64)
        name_len = 64;
    struct generator *g = generator_of(m, log, name, name_len);
    if (!g) {
        free(counts);
        return fail(m, log, line_no, "more than %d generators, or out of memory", LOAD_MERGE_MAX_GENERATORS);
    }
    int rc = add_counts(m, log, line_no, connect ? &g->connect : &g->latency, &layout, counts);
    free(counts);
    if (!connect)
        g->logged_seconds += fields[1];
    return rc;
}

static int read_log(struct merge *m, const char *log)
{
    FILE *file = fopen(log, "rb");
    if (!file)
        return fail(m, log, 0, "%s", strerror(errno));
    size_t size = 0, capacity = 1 << 16;
    char *text = malloc(capacity + 1);
    if (!text) {
        fclose(file);
        return fail(m, log, 0, "out of memory");
    }
    for (;;) {
        size_t n = fread(text + size, 1, capacity - size, file);
        size += n;
        if (size < capacity)
            break;
        if (capacity >= MAX_LOG_BYTES) {
            fclose(file);
            free(text);
            return fail(m, log, 0, "larger than %u MiB", MAX_LOG_BYTES >> 20);
        }
        capacity *= 2;
        char *grown = realloc(text, capacity + 1);
        if (!grown) {
            fclose(file);
            free(text);
            return fail(m, log, 0, "out of memory");
        }
        text = grown;
    }
    int read_error = ferror(file);
    fclose(file);
    if (read_error) {
        free(text);
        return fail(m, log, 0, "read error");
    }
    text[size] = '\0';
    bool has_start = false, has_base = false;
    double start = 0, base = 0;
    int before = m->count;
    int rc = 0;
    unsigned line_no = 0;
    for (const char *p = text; p < text + size && rc == 0;) {
        const char *newline = memchr(p, '\n', (size_t)(text + size - p));
        const char *end = newline ? newline : text + size;
        const char *next = newline ? newline + 1 : text + size;
        line_no++;
        if (end > p && end[-1] == '\r')
            end--;
        if (memchr(p, '\0', (size_t)(end - p))) {
            rc = fail(m, log, line_no, "a NUL byte: not a text log");
        } else if (end == p) {
        } else if (end - p >= 13 && !memcmp(p, "#[StartTime: ", 13)) {
            const char *stop = p + 13;
            while (stop < end && (isdigit((unsigned char)*stop) || *stop == '.'))
                stop++;
            if (number(p + 13, stop, &start) < 0 || start < 0)
                rc = fail(m, log, line_no, "StartTime is not a number of seconds");
            has_start = true;
        } else if (end - p >= 12 && !memcmp(p, "#[BaseTime: ", 12)) {
            const char *stop = p + 12;
            while (stop < end && (isdigit((unsigned char)*stop) || *stop == '.'))
                stop++;
            if (number(p + 12, stop, &base) < 0 || base < 0)
                rc = fail(m, log, line_no, "BaseTime is not a number of seconds");
            has_base = true;
        } else if (end - p >= 24 && !memcmp(p, "#[overlap-load summary: ", 24)) {
            rc = read_summary(m, log, line_no, p + 24, end);
        } else if (*p == '#' || *p == '"') {
            /* a comment, or the legend */
        } else {
            rc = read_interval(m, log, line_no, p, end);
        }
        p = next;
    }
    free(text);
    if (rc == 0 && m->count == before)
        rc = fail(m, log, 0, "no interval histogram in it");
    for (int i = before; i < m->count; i++) {
        m->generators[i]->has_start = has_start || has_base;
        m->generators[i]->start_time = has_start ? start : base;
    }
    return rc;
}

/* ---- the report ---- */

static void latency_of(const struct load_hdr_layout *l, const struct series *s, struct load_latency *out)
{
    memset(out, 0, sizeof *out);
    if (!s->counts || !s->count)
        return;
    out->count = s->count;
    unsigned first = 0, last = 0;
    double sum = 0;
    for (unsigned i = 0; i < l->counts_len; i++)
        if (s->counts[i]) {
            last = i;
            uint64_t lowest = load_hdr_lowest_at(l, i), size = load_hdr_highest_at(l, i) - lowest + 1;
            sum += (double)s->counts[i] * (double)(lowest + size / 2);
        }
    for (unsigned i = 0; i < l->counts_len; i++)
        if (s->counts[i]) {
            first = i;
            break;
        }
    /* The logs hold microseconds; the report's figures are nanoseconds. */
    out->min_ns = (double)load_hdr_lowest_at(l, first) * 1e3;
    out->max_ns = (double)load_hdr_highest_at(l, last) * 1e3;
    out->mean_ns = sum / (double)s->count * 1e3;
    for (int q = 0; q < LOAD_REPORT_QUANTILES; q++) {
        unsigned i = load_hdr_quantile_index(s->counts, l->counts_len, s->count, load_report_quantiles[q]);
        if (i < l->counts_len)
            out->q_ns[q] = (double)load_hdr_highest_at(l, i) * 1e3;
    }
}

struct totals {
    double window, msgs_per_s, mb_per_s, skew, earliest, intended;
    uint64_t msgs, bytes, bytes_total, connects, errors[LOAD_ERR_KINDS], error_total;
    int with_start, without_summary;
    struct series latency, connect;
};

static double generator_seconds(const struct generator *g)
{
    return g->has_summary ? g->seconds : g->logged_seconds;
}

static uint64_t generator_msgs(const struct generator *g)
{
    return g->has_summary ? g->msgs : g->latency.count;
}

static uint64_t generator_errors(const struct generator *g)
{
    uint64_t total = 0;
    for (int k = 0; k < LOAD_ERR_KINDS; k++)
        total += g->errors[k];
    return total;
}

static int add_series(struct merge *m, struct series *into, const struct series *from)
{
    if (!from->counts)
        return 0;
    if (!into->counts) {
        into->counts = calloc(m->layout.counts_len, sizeof *into->counts);
        if (!into->counts) {
            snprintf(m->error, sizeof m->error, "merge: out of memory");
            return -1;
        }
    }
    if (from->count > UINT64_MAX - into->count) {
        snprintf(m->error, sizeof m->error, "merge: the merged counts overflow 64 bits");
        return -1;
    }
    /* Each count is at most the series' total, so no bucket can overflow when the totals do not. */
    for (unsigned i = 0; i < m->layout.counts_len; i++)
        into->counts[i] += from->counts[i];
    into->count += from->count;
    return 0;
}

static int sum_up(struct merge *m, struct totals *t)
{
    memset(t, 0, sizeof *t);
    double latest = 0;
    for (int i = 0; i < m->count; i++) {
        const struct generator *g = m->generators[i];
        double seconds = generator_seconds(g);
        uint64_t msgs = generator_msgs(g);
        t->msgs += msgs;
        t->bytes += g->bytes;
        t->bytes_total += g->bytes_total;
        t->connects += g->has_summary ? g->connects : g->connect.count;
        if (seconds > 0) {
            t->msgs_per_s += (double)msgs / seconds;
            t->mb_per_s += (double)g->bytes / 1e6 / seconds;
        }
        if (seconds > t->window)
            t->window = seconds;
        t->intended += g->rate;
        for (int k = 0; k < LOAD_ERR_KINDS; k++)
            t->errors[k] += g->errors[k];
        t->error_total += generator_errors(g);
        if (!g->has_summary)
            t->without_summary++;
        if (g->has_start) {
            if (!t->with_start || g->start_time < t->earliest)
                t->earliest = g->start_time;
            if (!t->with_start || g->start_time > latest)
                latest = g->start_time;
            t->with_start++;
        }
        if (add_series(m, &t->latency, &g->latency) < 0 || add_series(m, &t->connect, &g->connect) < 0)
            return -1;
    }
    t->skew = t->with_start ? latest - t->earliest : 0;
    return 0;
}

static void report_text(FILE *out, struct merge *m, const struct load_merge_options *o, const struct totals *t)
{
    char a[32];
    fprintf(out, "overlap-load %s merge: %d generator%s from %d log%s (HdrHistogram, %d significant digits, values "
                 "up to %lld us)\n", ovl_version(), m->count, m->count == 1 ? "" : "s", o->count,
            o->count == 1 ? "" : "s", m->layout.digits, (long long)m->layout.highest);
    for (int i = 0; i < m->count; i++) {
        const struct generator *g = m->generators[i];
        struct load_latency l;
        latency_of(&m->layout, &g->latency, &l);
        double seconds = generator_seconds(g);
        fprintf(out, "  %-11s %s: %llu msgs in %.2f s (%.0f msgs/s", g->name, g->log,
                (unsigned long long)generator_msgs(g), seconds,
                seconds > 0 ? (double)generator_msgs(g) / seconds : 0.0);
        if (g->rate > 0)
            fprintf(out, ", intended %.0f", g->rate);
        fprintf(out, "), p99 %s", load_report_duration(a, sizeof a, l.q_ns[2]));
        if (g->has_summary)
            fprintf(out, ", errors %llu", (unsigned long long)generator_errors(g));
        else
            fprintf(out, ", errors unknown (no overlap-load summary)");
        if (g->has_start && t->with_start)
            fprintf(out, ", started +%.3f s", g->start_time - t->earliest);
        fprintf(out, "\n");
    }
    if (t->with_start > 1)
        fprintf(out, "  %-11s %.3f s between the earliest and the latest StartTime (clock offsets and start delays "
                     "together)\n", "start skew", t->skew);
    fprintf(out, "  %-11s %.2f s (the longest generator's)\n", "window", t->window);
    fprintf(out, "  %-11s %llu (%.0f msgs/s summed), %.2f MB echoed (%.2f MB/s summed each way)\n", "messages",
            (unsigned long long)t->msgs, t->msgs_per_s, (double)t->bytes / 1e6, t->mb_per_s);
    if (t->bytes_total)
        fprintf(out, "  %-11s %llu bytes each way over the whole runs, warmup included (what the server should "
                     "count in and out)\n", "traffic", (unsigned long long)t->bytes_total);
    if (t->intended > 0)
        fprintf(out, "  %-11s intended %.0f msgs/s summed, achieved %.0f msgs/s summed (%.1f%%)\n", "rate",
                t->intended, t->msgs_per_s, 100.0 * t->msgs_per_s / t->intended);
    struct load_latency l;
    latency_of(&m->layout, &t->latency, &l);
    load_report_latency_line(out, "latency", &l);
    fprintf(out, "  %-11s %llu\n", "connects", (unsigned long long)t->connects);
    latency_of(&m->layout, &t->connect, &l);
    load_report_latency_line(out, "connect", &l);
    load_report_errors_line(out, t->errors, NULL);
    if (t->without_summary)
        fprintf(out, "  %-11s %d generator%s without an overlap-load summary: messages from the histogram, errors "
                     "unknown\n", "note", t->without_summary, t->without_summary == 1 ? "" : "s");
}

static void report_json(FILE *out, struct merge *m, const struct load_merge_options *o, const struct totals *t)
{
    fprintf(out, "{\"version\":");
    load_report_json_string(out, ovl_version());
    fprintf(out, ",\"merge\":{\"logs\":%d,\"generators\":%d,\"significant_digits\":%d,\"highest_us\":%lld,"
                 "\"start_skew_s\":", o->count, m->count, m->layout.digits, (long long)m->layout.highest);
    if (t->with_start > 1)
        fprintf(out, "%.6f}", t->skew);
    else
        fprintf(out, "null}");
    fprintf(out, ",\"seconds\":%.6f,\"msgs\":%llu,\"bytes\":%llu,\"msgs_per_s\":%.3f,\"mb_per_s\":%.6f", t->window,
            (unsigned long long)t->msgs, (unsigned long long)t->bytes, t->msgs_per_s, t->mb_per_s);
    fprintf(out, ",\"bytes_total\":%llu", (unsigned long long)t->bytes_total);
    fprintf(out, ",\"intended_rate\":%.3f,\"achieved_rate\":%.3f", t->intended, t->intended > 0 ? t->msgs_per_s : 0.0);
    struct load_latency l;
    latency_of(&m->layout, &t->latency, &l);
    fprintf(out, ",\"latency_us\":");
    load_report_json_latency(out, &l);
    fprintf(out, ",\"connects\":%llu,\"connect_latency_us\":", (unsigned long long)t->connects);
    latency_of(&m->layout, &t->connect, &l);
    load_report_json_latency(out, &l);
    fprintf(out, ",\"errors\":{\"total\":%llu", (unsigned long long)t->error_total);
    for (int k = 0; k < LOAD_ERR_KINDS; k++)
        fprintf(out, ",\"%s\":%llu", load_error_keys[k], (unsigned long long)t->errors[k]);
    fprintf(out, "},\"generators\":[");
    for (int i = 0; i < m->count; i++) {
        const struct generator *g = m->generators[i];
        double seconds = generator_seconds(g);
        fprintf(out, "%s{\"name\":", i ? "," : "");
        load_report_json_string(out, g->name);
        fprintf(out, ",\"log\":");
        load_report_json_string(out, g->log);
        fprintf(out, ",\"summary\":%s,\"start_time\":", g->has_summary ? "true" : "false");
        if (g->has_start)
            fprintf(out, "%.3f", g->start_time);
        else
            fprintf(out, "null");
        fprintf(out, ",\"seconds\":%.6f,\"msgs\":%llu,\"bytes\":%llu,\"bytes_total\":%llu,\"msgs_per_s\":%.3f,"
                "\"rate\":%.3f", seconds, (unsigned long long)generator_msgs(g), (unsigned long long)g->bytes,
                (unsigned long long)g->bytes_total,
                seconds > 0 ? (double)generator_msgs(g) / seconds : 0.0, g->rate);
        fprintf(out, ",\"errors\":");
        if (g->has_summary)
            fprintf(out, "%llu", (unsigned long long)generator_errors(g));
        else
            fprintf(out, "null");
        latency_of(&m->layout, &g->latency, &l);
        fprintf(out, ",\"latency_us\":");
        load_report_json_latency(out, &l);
        fprintf(out, "}");
    }
    fprintf(out, "]}\n");
    fflush(out);
}

int load_merge(const struct load_merge_options *o)
{
    struct merge *m = calloc(1, sizeof *m);
    if (!m) {
        fprintf(stderr, "overlap-load: merge: out of memory\n");
        return 1;
    }
    int status = 0;
    for (int i = 0; i < o->count && status == 0; i++)
        if (read_log(m, o->logs[i]) < 0)
            status = 1;
    struct totals t;
    memset(&t, 0, sizeof t);
    if (status == 0 && sum_up(m, &t) < 0)
        status = 1;
    if (status) {
        fprintf(stderr, "overlap-load: %s\n", m->error);
    } else {
        if (o->json) {
            report_json(stdout, m, o, &t);
            report_text(stderr, m, o, &t);
        } else {
            report_text(stdout, m, o, &t);
        }
        if (t.error_total) {
            fprintf(stderr, "overlap-load: merge: the generators counted %llu error%s\n",
                    (unsigned long long)t.error_total, t.error_total == 1 ? "" : "s");
            status = 1;
        } else if (!t.msgs) {
            fprintf(stderr, "overlap-load: merge: no message in the logs\n");
            status = 1;
        }
    }
    for (int i = 0; i < m->count; i++) {
        free(m->generators[i]->latency.counts);
        free(m->generators[i]->connect.counts);
        free(m->generators[i]);
    }
    free(t.latency.counts);
    free(t.connect.counts);
    free(m);
    return status;
}
