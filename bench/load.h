/*
 * load.h - overlap-load's pieces: options (load_cli.c), the latency histogram (load_hist.c), the run on the
 * engine (load_engine.c), the report (load_out.c). main() lives in load_main_entry.c.
 */
#ifndef OVL_LOAD_H
#define OVL_LOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct load_options {
    const char *host;          /* "localhost" */
    const char *port;          /* "27015" */
    uint32_t connections;      /* 50 */
    int threads;               /* 1 */
    uint32_t size;             /* bytes per message, 64 */
    uint32_t pipeline;         /* messages in flight per connection, 1 */
    double duration;           /* measured seconds, 5 */
    double warmup;             /* seconds before measuring, 1 */
    uint32_t churn;            /* reconnect after this many echoes; 0 = never */
    double connect_rate;       /* connections opened per second at most; 0 = all at once */
    bool json;
    bool once;
    bool progress;             /* force the progress line even when stderr is not a terminal */
    bool help;
    bool version;
};

/* Parse argv into options. Returns 0, or -1 with a one-line reason in `error`. No side effects. */
int load_options_parse(int argc, char *const argv[], struct load_options *options, char *error, size_t error_size);
extern const char load_usage[];

/* Latency histogram: log buckets with 1/1024 relative precision, values in nanoseconds up to ~2^62. */
enum { LOAD_HIST_SUB = 1024, LOAD_HIST_BUCKETS = 1024 + 54 * 512 };
struct load_hist {
    uint64_t count;
    uint64_t max;
    uint64_t sum;
    uint32_t buckets[LOAD_HIST_BUCKETS];
};
void load_hist_record(struct load_hist *hist, uint64_t value);
void load_hist_merge(struct load_hist *into, const struct load_hist *from);
/* Value at quantile q (0..1), an upper bound of the bucket it falls in; 0 when empty. */
uint64_t load_hist_quantile(const struct load_hist *hist, double q);

/* Everything a run measured. */
struct load_result {
    double seconds;            /* measured window */
    uint64_t msgs, bytes;      /* echoes completed and bytes verified in the window */
    uint64_t connects, connect_failures;
    uint64_t verify_errors, resets, io_errors, early_closes;
    struct load_hist latency;  /* per message, ns */
    struct load_hist connect_latency;
    char first_error[320];
    double cpu_user, cpu_system; /* this process over the measured window, seconds */
    uint64_t reuse_ok, reuse_fallback, context_updates; /* the engine's socket reuse counters (IOCP) */
};

static inline uint64_t load_errors(const struct load_result *r)
{
    return r->connect_failures + r->verify_errors + r->resets + r->io_errors + r->early_closes;
}

/* Run the load described by options; fills result. Returns 0, or -1 when it could not run at all (the reason is in
 * result->first_error). */
int load_run(const struct load_options *options, struct load_result *result);
/* The seed client: connect, send "this is a test", shut down, read to EOF, print the three lines. Exit code. */
int load_once(const struct load_options *options);

void load_report_text(const struct load_options *options, const struct load_result *result);
void load_report_json(const struct load_options *options, const struct load_result *result);

/* Monotonic nanoseconds. */
uint64_t load_now_ns(void);
void load_sleep(double seconds);

#endif
