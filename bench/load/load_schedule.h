/*
 * load_schedule.h - the open-loop schedule (--rate), for every client model. Message k of slot i of N is due at
 * base + (i + k N) / rate: the N slots take turns, so the total rate is `rate` and no two slots send at once. Its
 * position i + k N counts the messages of all slots in the order they are due.
 */
#ifndef OVL_LOAD_SCHEDULE_H
#define OVL_LOAD_SCHEDULE_H

#include <stdint.h>

/* When message `k` of slot `index` is due (ns on the monotonic clock); ns_per_msg = 1e9 / rate. */
static inline uint64_t load_schedule_at(uint64_t base, double ns_per_msg, uint32_t connections, uint32_t index,
                                        uint64_t k)
{
    return base + (uint64_t)(((double)index + (double)k * (double)connections) * ns_per_msg);
}

/* How many of slot `index`'s messages are due at or before `now`. */
static inline uint64_t load_schedule_due(uint64_t base, double ns_per_msg, uint32_t connections, uint32_t index,
                                         uint64_t now)
{
    if (now < base)
        return 0;
    double position = (double)(now - base) / ns_per_msg - (double)index;
    if (position < 0)
        return 0;
    return (uint64_t)(position / (double)connections) + 1;
}

#endif
