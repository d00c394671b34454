/*
 * load_socket.h - what overlap-load's plain-socket client models (--model epoll: load_model_epoll.c, --model
 * threads: load_model_threads.c) share. They send the engine model's pattern and check the echo with it
 * (load_pattern.h), keep its open-loop schedule (load_schedule.h), record into its histogram, count its error
 * kinds and fill its load_result, so load_report prints all three alike. This file holds the rest they have in
 * common: the target's addresses and connecting, starting and ending the threads, per-thread counters and
 * histograms merged at the end, the accounting of each echo, and how a connection's end is counted.
 * A model supplies the loop of one of its threads (as Redis' ae_epoll.c supplies aeApiPoll to ae.c).
 *
 * Threads. A model thread owns connections conns[first .. first + count): it alone touches them and its own
 * counters and histograms. The main thread moves the phase forward (load_phases.c, as for the engine model), reads
 * the counters with relaxed atomics for the progress line, and merges the histograms after joining the threads.
 *
 * The end. When the window closes (LOAD_PHASE_STOPPING) a thread sends nothing more, waits for what is in flight,
 * and shuts down the write side of a connection whose every byte came back; the server's FIN ends it. Whatever is
 * still owed when the grace period ends (LOAD_PHASE_OVER) is a short echo.
 */
#ifndef OVL_LOAD_SOCKET_H
#define OVL_LOAD_SOCKET_H

#include "load_first_error.h"
#include "load_options.h"
#include "load_phases.h"
#include "load_run.h"
#include "load_stream.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* One connection. */
struct load_socket_conn {
    int fd;                       /* -1 before the connect and once it ended */
    uint32_t index, seed;
    bool shut;                    /* our write side is shut down: the run is over and every byte came back */
    uint32_t unsent;              /* bytes of the last message not written yet (a short send) */
    bool want_out;                /* --model epoll: EPOLLOUT is asked for (unsent > 0) */
    struct load_stream stream;    /* stream.sent: bytes given to send, unsent included */
    uint64_t due, scheduled_sent; /* open loop: messages whose time has come / of which sent */
    uint64_t stamps[];            /* per message in flight (msgs_sent % pipeline): latency start, ns */
};

/* Histograms some threads record into, under their lock. A histogram is 248 KiB: one set per thread would cost the
 * threads model (a thread per connection, up to 4096) gigabytes once transparent huge pages back each touched
 * stretch, so threads share at most LOAD_SOCKET_HIST_SETS sets; a blocking thread's message takes microseconds, an
 * uncontended lock tens of nanoseconds. */
struct load_socket_hists {
    pthread_mutex_t lock;
    struct load_histogram latency, connect_latency, send_lag;
};

enum { LOAD_SOCKET_HIST_SETS = 8 };

/* One thread of a model. */
struct load_socket_thread {
    char pad[64];
    struct load_tally tally;
    _Atomic uint64_t connects, errors[LOAD_ERR_KINDS];
    _Atomic uint32_t live;        /* its connections not ended yet */
    char pad2[64];
    struct load_socket_run *run;
    uint32_t first, count;
    pthread_t id;
    bool started;
    unsigned char *buffer;        /* receive buffer, LOAD_SOCKET_BUFFER bytes */
    struct load_socket_hists *hists; /* shared with the threads i + k * LOAD_SOCKET_HIST_SETS */
};

enum { LOAD_SOCKET_BUFFER = 65536 };

struct load_socket_run {
    const struct load_options *options;
    double rate, ns_per_msg;      /* open loop: msgs/s and 1e9 / rate; 0 = closed loop */
    struct addrinfo *addresses;
    char target[160];
    unsigned char *table;
    struct load_socket_conn **conns;
    struct load_socket_thread **threads;
    uint32_t thread_count;
    struct load_socket_hists *hists[LOAD_SOCKET_HIST_SETS];
    uint32_t hist_count;
    struct load_phases phases;    /* the phase, the schedule's time zero (base_ns), connections opened / failed */
    pthread_mutex_t start_lock;   /* with `start`: the threads that connected sleep until the phase leaves OPENING */
    pthread_cond_t start;
    struct load_first_error first_error;
};

/* A model: its name in the report, and the loop of one of its threads (argument: its load_socket_thread). */
struct load_socket_model {
    const char *backend;          /* the report's "backend": "epoll", "blocking" */
    uint32_t threads;             /* how many threads share the connections (at most --connections) */
    void *(*thread_main)(void *thread);
};

/* Run the load with `model` (load_run's contract: 0 with `result` filled, errors included, or -1 when the run
 * could not happen at all, the reason in result->first_error). */
int load_socket_run(const struct load_options *options, double rate, struct load_result *result,
                    const struct load_socket_model *model);

static inline int load_socket_phase(struct load_socket_run *run)
{
    return load_phase_of(&run->phases);
}

/* Count an error of `kind`; the run's first error is kept with its detail. */
void load_socket_error(struct load_socket_thread *t, enum load_error_kind kind, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

/* Connect c (every address in turn, each bounded by --connect-timeout), TCP_NODELAY, non-blocking or blocking as
 * asked. Counts the connect (and its latency) or the connect error. 0, or -1 (c->fd stays -1). */
int load_socket_connect(struct load_socket_thread *t, struct load_socket_conn *c, bool nonblocking);

/* Wait until the main thread has started the warmup (or given up: then false). The thread sleeps on a condition
 * variable until then: with a thread per connection, a poll would wake thousands of threads every interval. */
bool load_socket_wait_start(struct load_socket_run *run);

/* The next message of c, `stamp` its latency start: counted as sent (c->unsent = its size until written). Returns
 * the message's bytes, --size of them. */
const unsigned char *load_socket_next(struct load_socket_conn *c, struct load_socket_run *run, uint64_t stamp);

/* `len` bytes echoed on c: checked and counted, and the latency of each message they complete recorded. 0, or -1
 * when they are wrong (a mismatch error was counted: end the connection with load_socket_close). */
int load_socket_echoed(struct load_socket_thread *t, struct load_socket_conn *c, const unsigned char *data,
                       size_t len, uint64_t now);

/* c's server closed it (err 0: recv returned 0) or its socket failed (err an errno): counted as the error it is
 * (short echo, closed by the server, reset, I/O), and the socket closed. */
void load_socket_ended(struct load_socket_thread *t, struct load_socket_conn *c, int err);

/* Close c: the run is over (bytes still owed are a short echo) or it failed verification (counted already). */
void load_socket_close(struct load_socket_thread *t, struct load_socket_conn *c);

/* The run ended and c's every byte came back: shut its write side (the server's FIN ends it). */
void load_socket_shut_if_done(struct load_socket_conn *c);

/* Open loop: the client's own delay of a message sent now that was due at `at` (part of latency). */
void load_socket_lag(struct load_socket_thread *t, struct load_socket_conn *c, uint64_t at, uint64_t now);

/* --model epoll (load_model_epoll.c, Linux) and --model threads (load_model_threads.c). */
int load_model_epoll(const struct load_options *options, double rate, struct load_result *result);
int load_model_threads(const struct load_options *options, double rate, struct load_result *result);

#endif
