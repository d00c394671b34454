/*
 * load_options.h - overlap-load's command line, parsed without side effects: argv in, a struct or one line of
 * error text out (so tests and a fuzzer can call it).
 */
#ifndef OVL_LOAD_OPTIONS_H
#define OVL_LOAD_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine_options.h"

/* Who drives the connections (--model). */
enum load_model {
    LOAD_MODEL_URING,          /* the engine (load_run.c), on whatever --backend says: io_uring, epoll or IOCP */
    LOAD_MODEL_EPOLL,          /* --threads threads, each an epoll set over non-blocking sockets (Linux) */
    LOAD_MODEL_THREADS,        /* one thread per connection, blocking sockets (POSIX) */
    LOAD_MODELS
};
extern const char *const load_model_names[LOAD_MODELS]; /* "uring", "epoll", "threads" */

struct load_options {
    const char *host;          /* "localhost" */
    const char *port;          /* "27015" */
    uint32_t connections;      /* 50 */
    uint32_t size;             /* bytes per message, 64 */
    uint32_t pipeline;         /* messages in flight per connection, 1 = ping-pong */
    double duration;           /* measured seconds, 5 */
    double warmup;             /* seconds before measuring, 1 */
    double rate;               /* total messages per second, open loop; 0 = closed loop (as fast as echoes come) */
    uint32_t churn;            /* reconnect after this many echoes; 0 = keep connections */
    double connect_rate;       /* initial connections opened per second at most; 0 = all at once */
    double target_p99_us;      /* search the highest rate whose p99 stays under this; 0 = no search */
    enum load_model model;     /* LOAD_MODEL_URING */
    bool threads_given;        /* --threads was given (the epoll model's own default is 2) */
    struct engine_options engine; /* the engine's options (programs/common): threads 1 (never more than
                                     connections), the rest at the engine's defaults; load_run sets the drain */
    const char *hdr_log;       /* HdrHistogram interval log to write, or NULL */
    double hdr_interval;       /* seconds per logged interval, 1 */
    const char *hdr_tag;       /* the log's tag for this generator; NULL = the host name */
    double start_at;           /* wall-clock start of the load, seconds since the epoch; 0 = at once */
    uint32_t share_index;      /* --share A/B: this generator takes messages A-1, A-1+B, ... of the --rate */
    uint32_t share_count;      /* schedule (1-based A); 0 = no share */
    bool json;
    bool once;
    bool progress;             /* the progress line even when stderr is not a terminal */
    bool help;
    bool version;
};

/* Fill `options` from argv (argv[0] is the program). Returns 0, or -1 with a one-line reason in `error`. Pointers
 * in `options` point into argv or to string literals. */
int load_options_parse(int argc, char *const argv[], struct load_options *options, char *error, size_t error_size);

/* The usage text, for --help and for argument errors. */
extern const char load_usage[];

#endif
