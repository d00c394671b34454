/*
 * load_run.h - one load run on liboverlap (connections, verified echoes, latency), and the --once seed client.
 */
#ifndef OVL_LOAD_RUN_H
#define OVL_LOAD_RUN_H

#include "load_fairness.h"
#include "load_histogram.h"
#include "load_options.h"

#include <stdint.h>

/* Why something counted as an error. Every one of them makes the exit code non-zero. */
enum load_error_kind {
    LOAD_ERR_CONNECT,        /* ovl_connect found no address that accepted (refused, unreachable, ...) */
    LOAD_ERR_MISMATCH,       /* an echoed byte differs from the byte sent at that stream offset, or extra bytes */
    LOAD_ERR_SHORT,          /* the connection ended (or the run ended) with sent bytes never echoed */
    LOAD_ERR_SERVER_CLOSED,  /* the server closed a connection nobody asked to close, though nothing was owed */
    LOAD_ERR_RESET,          /* the server reset a connection */
    LOAD_ERR_IO,             /* another socket error */
    LOAD_ERR_KINDS
};

/* JSON key and readable name of each kind. */
extern const char *const load_error_keys[LOAD_ERR_KINDS];
extern const char *const load_error_names[LOAD_ERR_KINDS];

/* Everything one run measured. Large (the histograms): allocate it, do not put it on the stack. */
struct load_result {
    double rate;                   /* the --rate this run used (0 = closed loop); with --share, this generator's
                                      part of it: the rate it intends */
    double start_wait;             /* --start-at: seconds waited with the connections open (0: none) */
    double start_late;             /* --start-at: seconds it had already passed when the connections were open */
    double seconds;                /* the measured window */
    uint64_t msgs;                 /* messages whose echo was complete and verified inside the window */
    uint64_t bytes;                /* echoed bytes verified inside the window (each way) */
    uint64_t bytes_total;          /* echoed bytes verified over the whole run, warmup and end included: what the
                                      server received and sent, when there was no error */
    uint64_t connects;             /* connections established, the whole run (ramp-up and churn included) */
    uint64_t window_connects;      /* of which inside the measured window */
    uint64_t errors[LOAD_ERR_KINDS];
    struct load_histogram latency; /* per message, ns: send (or scheduled send) to last echoed byte */
    struct load_histogram connect_latency; /* ovl_connect to on_open, ns */
    struct load_histogram send_lag;        /* open loop: the client's own delay per message, ns: actual send -
                                              max(scheduled send, pipeline room); part of latency */
    struct load_fairness fairness; /* messages per connection slot in the window (computed once the run ended) */
    double cpu_user, cpu_system;   /* this process over the measured window, seconds */
    uint64_t reuse_ok, reuse_fallback, context_updates; /* the engine's IOCP socket reuse counters (0 elsewhere) */
    int threads;                   /* worker threads used */
    char backend[16];              /* "io_uring", "epoll", "iocp" */
    char notice[160];              /* the engine's backend notice, or "" */
    char target[160];              /* "localhost:27015" */
    char first_error[320];         /* the first error seen, with its connection and detail, or "" */
};

uint64_t load_result_errors(const struct load_result *result);

/* Run the load the options describe (with `rate` instead of options->rate: the --target-p99 search varies it).
 * Returns 0 with `result` filled (errors included), or -1 when the run could not happen at all: bad host, engine
 * failure, or no connection could be opened; the reason is then in result->first_error. */
int load_run(const struct load_options *options, double rate, struct load_result *result);

/* The seed client: connect, send "this is a test", shut down the write side, read until the server closes, print
 * "Bytes Sent: 14", "Bytes received: N" (one line per received chunk) and "Connection closed". Returns the exit
 * code. */
int load_once(const struct load_options *options);

/* Monotonic clock, nanoseconds. */
uint64_t load_now_ns(void);
/* Wall clock, seconds since the epoch. */
double load_wall_s(void);
/* Sleep until the monotonic clock reads `deadline` (ns). */
void load_sleep_until(uint64_t deadline);
/* This process's CPU time so far, seconds. */
void load_cpu_times(double *user, double *system);
/* What --threads 0 stands for, under every model: the CPUs this process may use (ovl_cpu_count: its affinity; a CPU
 * quota is not seen), at most the engine's thread limit (OVL_MAX_THREADS). */
int load_threads_for_cpus(void);

#endif
