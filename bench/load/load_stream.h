/*
 * load_stream.h - one connection's message stream and a thread's message counters, as every client model keeps
 * them (the engine's workers in load_run.c, the plain-socket threads in load_socket.c): what was sent and echoed,
 * and the accounting of an echo that arrived.
 */
#ifndef OVL_LOAD_STREAM_H
#define OVL_LOAD_STREAM_H

#include "load_histogram.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One connection (or connection slot, under --churn: window_msgs) of a run. */
struct load_stream {
    uint64_t sent, verified;      /* bytes queued / bytes echoed and verified, current connection */
    uint64_t msgs_sent, msgs_done;/* messages queued / fully echoed, current connection */
    uint64_t window_msgs;         /* messages echoed in the measured window, every connection of the slot */
    uint64_t free_at;             /* open loop: when the pipeline last had room again (or the connection opened) */
};

/* A thread's message counters: written by it alone, read by the main thread for the progress line and the end. */
struct load_tally {
    _Atomic uint64_t msgs, bytes;          /* in the measured window */
    _Atomic uint64_t all_msgs, all_bytes;  /* warmup and end included */
};

static inline void load_bump(_Atomic uint64_t *counter, uint64_t n)
{
    /* Single writer (the owning thread): a plain load and store, no locked instruction. */
    atomic_store_explicit(counter, atomic_load_explicit(counter, memory_order_relaxed) + n, memory_order_relaxed);
}

static inline uint64_t load_peek(const _Atomic uint64_t *counter)
{
    return atomic_load_explicit(counter, memory_order_relaxed);
}

/* `len` more echoed bytes of s, already checked, arrived at `now`: count them and the messages they complete, and
 * (when `measuring`) record each completed message's latency from its stamp (stamps[k % pipeline]) into `latency`
 * and, with --hdr-log, into `logged` (its counts, or NULL). */
void load_stream_echoed(struct load_stream *s, const uint64_t *stamps, uint32_t size, uint32_t pipeline, size_t len,
                        uint64_t now, bool measuring, struct load_tally *tally, struct load_histogram *latency,
                        _Atomic uint64_t *logged);

#endif
