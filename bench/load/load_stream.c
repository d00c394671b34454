/*
 * load_stream.c - the accounting of an echo, for every client model (load_stream.h).
 */
#include "load_stream.h"
#include "load_hdr_log.h"

void load_stream_echoed(struct load_stream *s, const uint64_t *stamps, uint32_t size, uint32_t pipeline, size_t len,
                        uint64_t now, bool measuring, struct load_tally *tally, struct load_histogram *latency,
                        _Atomic uint64_t *logged)
{
    s->verified += len;
    uint64_t complete = s->verified / size;
    load_bump(&tally->all_bytes, len);
    load_bump(&tally->all_msgs, complete - s->msgs_done);
    if (measuring) {
        load_bump(&tally->bytes, len);
        load_bump(&tally->msgs, complete - s->msgs_done);
        s->window_msgs += complete - s->msgs_done;
    }
    while (s->msgs_done < complete) {
        if (s->msgs_sent - s->msgs_done == pipeline)
            s->free_at = now;
        uint64_t stamp = stamps[s->msgs_done % pipeline];
        s->msgs_done++;
        if (measuring) {
            uint64_t ns = now > stamp ? now - stamp : 0;
            load_histogram_record(latency, ns);
            if (logged)
                load_bump(&logged[load_log_index(ns)], 1);
        }
    }
}
