/*
 * load_phases.h - the main thread's side of a run, the same for every client model: wait until each connection has
 * opened or failed, then the warmup, the measured window, and the stop with its grace period for echoes in flight,
 * with a progress line on stderr each second. The order of the phases, their timing and the phase the model's
 * threads read are kept here, once; a model (load_run.c: the engine; load_socket.c: the plain-socket models)
 * supplies what it counts through hooks, as a backend supplies its poll to a loop that fixes the order.
 *
 * Threads. The main thread alone calls these functions. A model's threads read `phase` and `base_ns`, and count
 * `opened` and `failed`, with atomics.
 */
#ifndef OVL_LOAD_PHASES_H
#define OVL_LOAD_PHASES_H

#include "load_options.h"
#include "load_run.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* The phases in order. OVER only for the socket models: their threads are told to end (load_socket.c). */
enum load_phase { LOAD_PHASE_OPENING, LOAD_PHASE_WARMUP, LOAD_PHASE_MEASURE, LOAD_PHASE_STOPPING, LOAD_PHASE_OVER };

#define LOAD_PHASES_OPEN_TIMEOUT_NS 10000000000ull /* connects still pending this long are given up on */
#define LOAD_PHASES_GRACE_NS 2000000000ull         /* after the window: time for echoes in flight to come back */

/* What the progress line shows of a model, read while its threads run (relaxed atomics). */
struct load_phases_counts {
    uint64_t msgs, bytes;       /* echoed so far, warmup included: the line's rates are their differences */
    uint64_t errors;
    uint64_t p99_ns;            /* of the window so far, or 0 when the model does not publish one */
};

struct load_phases_hooks {
    void (*counts)(void *model, struct load_phases_counts *counts);
    /* Connections open or opening: the progress line shows it, the stop waits (up to its grace) for none. */
    uint64_t (*live)(void *model);
    /* Optional (NULL): the run has just entered `phase`, at `now` (the socket models wake their threads; the
     * engine model starts its --hdr-log at the window). */
    void (*entered)(void *model, enum load_phase phase, uint64_t now);
    /* Optional (NULL): during the window, every load_phases.tick_ns (--hdr-log's intervals). */
    void (*tick)(void *model, uint64_t now);
};

struct load_phases {
    _Atomic int phase;            /* enum load_phase */
    _Atomic uint64_t base_ns;     /* open loop: the schedule's time zero; 0 until set (at the warmup, or before) */
    _Atomic uint32_t opened, failed; /* connection slots whose first connection opened / never could */
    /* The main thread's own. */
    const struct load_phases_hooks *hooks;
    void *model;
    uint64_t tick_ns;             /* 0: no tick */
    uint64_t tick_last_ns;
    bool progress;                /* a line a second: --progress, or stderr is a terminal */
    uint64_t progress_start_ns, progress_last_ns, last_msgs, last_bytes;
};

/* Phase OPENING; the progress line's clock starts now. */
void load_phases_init(struct load_phases *phases, const struct load_options *options,
                      const struct load_phases_hooks *hooks, void *model);

/* The phase, as a model's thread reads it. */
static inline int load_phase_of(struct load_phases *phases)
{
    return atomic_load_explicit(&phases->phase, memory_order_acquire);
}

/* Enter `phase` (the hooks' entered is told). */
void load_phases_enter(struct load_phases *phases, enum load_phase phase);

/* The progress line's elapsed time and rates start again from `now` (a new stretch of the run). */
void load_phases_progress_restart(struct load_phases *phases, uint64_t now);

/* Sleep until `end` (monotonic ns), with the progress line ("connect", "waiting", "warmup", "" while measuring). */
void load_phases_wait(struct load_phases *phases, uint64_t end, const char *label);

/* Wait until each of `connections` has opened or failed, or `deadline`. True when at least one opened. */
bool load_phases_open(struct load_phases *phases, uint32_t connections, uint64_t deadline);

/* From `now`: the schedule's time zero (unless set before, by --start-at), the warmup, the measured window, the
 * stop. Fills result->seconds, cpu_user and cpu_system, and returns the window's end (monotonic ns). */
uint64_t load_phases_window(struct load_phases *phases, const struct load_options *options, uint64_t now,
                            struct load_result *result);

/* Enter STOPPING (nothing more is sent) and wait, up to the grace period, for every connection to end. */
void load_phases_stop(struct load_phases *phases);

/* --share A/B: this generator's part of the one schedule of --rate messages per second is every B-th message from
 * the (A-1)-th, a schedule of rate / B (load_main passes that rate) shifted by (A - 1) / rate: the shift, ns. */
uint64_t load_phases_share_offset_ns(const struct load_options *options);

#endif
