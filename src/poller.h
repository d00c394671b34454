/*
 * poller.h - what the readiness layer (ready.c) needs of a readiness poller. epoll is the one on Linux
 * (poller_epoll.c); kqueue, poll(2) or event ports would each be one small file beside it, plus an entry in
 * engine.c's backend table.
 *
 * A poller is a set of registered descriptors and a wake-up. It says when a descriptor is readable or writable;
 * everything else - reading to EAGAIN, the ready list, accepting, connecting - is the layer's.
 */
#ifndef OVL_POLLER_H
#define OVL_POLLER_H

#include "internal.h"

/* What a poller reports for a descriptor (several may come together). */
enum {
    OVL__POLL_IN = 1u << 0,    /* input to read (or a connection to accept) */
    OVL__POLL_OUT = 1u << 1,   /* room to write; a connect finished */
    OVL__POLL_RDHUP = 1u << 2, /* the peer shut its write side */
    OVL__POLL_HUP = 1u << 3,   /* both directions are closed */
    OVL__POLL_ERR = 1u << 4    /* an error is pending on the socket (SO_ERROR) */
};

struct ovl__poll_event {
    void *owner;               /* what was registered with the descriptor */
    unsigned events;           /* OVL__POLL_* */
    bool listener;             /* registered with watch_listener */
};

struct ovl__poller {
    /* Create the poller and its wake-up; *state is the poller's own. 0, or a negative error with err filled. */
    int (*open)(void **state, ovl_error_info *err);
    void (*close)(void *state);
    /* Any thread: make a wait in progress (or the next one) return. */
    void (*wake)(void *state);
    /* A connected socket, registered once for every OVL__POLL_* condition, edge-triggered: each condition is
     * reported when it arises, not again while it lasts. 0 or a negative errno. */
    int (*watch)(void *state, int fd, void *owner);
    /* A listening socket, level-triggered, waking one waiting worker per connection where the system can. */
    int (*watch_listener)(void *state, int fd, void *owner);
    void (*unwatch)(void *state, int fd);
    /* Wait at most timeout_ns (-1 = no limit, 0 = do not block), counted from now_ns (ovl__clock_ns), and fill up
     * to `max` events; a wake-up ends the wait without an event. The count, or a negative errno with *call naming
     * the system call that failed. */
    int (*wait)(void *state, struct ovl__poll_event *events, int max, int64_t timeout_ns, uint64_t now_ns,
                const char **call);
};

extern const struct ovl__poller ovl__poller_epoll;

#endif
