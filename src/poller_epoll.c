/*
 * poller_epoll.c - the readiness poller on Linux: one epoll instance per worker and an eventfd to wake it. Needs
 * Linux 4.5 for EPOLLEXCLUSIVE and nothing newer; epoll_pwait2 (5.11) is used for nanosecond timeouts where the
 * kernel has it.
 */
#include "ready.h"

#include "alloc.h"

#include <errno.h>
#include <limits.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

enum { BATCH = 256 };

/* The low bit of an event's data says what was registered: a pointer to a connection or to a listening socket's
 * accept state (both at least 2-aligned), or the wake-up (no owner). */
enum { TAG_STREAM = 0, TAG_LISTENER = 1, TAG_WAKE = 2, TAG_MASK = 3 };

struct epoll_poller {
    int epoll_fd;
    int wake_fd;
    bool pwait2;              /* epoll_pwait2 works here (not ENOSYS) */
    struct epoll_event events[BATCH];
};

static void epoll_poller_close(void *state)
{
    struct epoll_poller *poller = state;
    if (!poller)
        return;
    if (poller->epoll_fd >= 0)
        close(poller->epoll_fd);
    if (poller->wake_fd >= 0)
        close(poller->wake_fd);
    ovl__free(poller);
}

static int epoll_poller_open(void **state, ovl_error_info *err)
{
    struct epoll_poller *poller = ovl__zalloc(sizeof *poller);
    if (!poller) {
        ovl__error_set(err, -ENOMEM, NULL, "allocate the epoll poller");
        return -ENOMEM;
    }
    poller->epoll_fd = poller->wake_fd = -1;
    poller->pwait2 = true;
    int rc = 0;
    if ((poller->epoll_fd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
        rc = -errno;
        ovl__error_set(err, rc, NULL, "epoll_create1");
    } else if ((poller->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
        rc = -errno;
        ovl__error_set(err, rc, NULL, "eventfd");
    } else {
        struct epoll_event event = {.events = EPOLLIN, .data.u64 = TAG_WAKE};
        if (epoll_ctl(poller->epoll_fd, EPOLL_CTL_ADD, poller->wake_fd, &event) < 0) {
            rc = -errno;
            ovl__error_set(err, rc, NULL, "epoll_ctl add eventfd");
        }
    }
    if (rc < 0) {
        epoll_poller_close(poller);
        return rc;
    }
    *state = poller;
    return 0;
}

static void epoll_poller_wake(void *state)
{
    struct epoll_poller *poller = state;
    uint64_t one = 1;
    if (write(poller->wake_fd, &one, sizeof one) < 0) {
        /* EAGAIN: the counter is already non-zero, so the worker wakes anyway. */
    }
}

static int add(struct epoll_poller *poller, int fd, uint32_t events, uint64_t data)
{
    struct epoll_event event = {.events = events, .data.u64 = data};
    return epoll_ctl(poller->epoll_fd, EPOLL_CTL_ADD, fd, &event) < 0 ? -errno : 0;
}

static int epoll_poller_watch(void *state, int fd, void *owner)
{
    return add(state, fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, (uint64_t)(uintptr_t)owner | TAG_STREAM);
}

/* Level-triggered, EPOLLEXCLUSIVE: one worker woken per connection, not all. Such a registration cannot be
 * modified (EINVAL), only removed and added again. */
static int epoll_poller_watch_listener(void *state, int fd, void *owner)
{
    return add(state, fd, EPOLLIN | EPOLLEXCLUSIVE, (uint64_t)(uintptr_t)owner | TAG_LISTENER);
}

static void epoll_poller_unwatch(void *state, int fd)
{
    struct epoll_poller *poller = state;
    epoll_ctl(poller->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
}

/* epoll_pwait2 waits with a nanosecond timeout, which ovl_conn_timer needs; epoll_wait's milliseconds are the
 * fallback on older kernels (timers then fire up to 1 ms late). */
static int wait_raw(struct epoll_poller *poller, int max, int64_t timeout_ns, const char **call)
{
    if (poller->pwait2) {
        struct timespec timeout = {.tv_sec = timeout_ns / 1000000000, .tv_nsec = timeout_ns % 1000000000};
        *call = "epoll_pwait2";
        int count = epoll_pwait2(poller->epoll_fd, poller->events, max, timeout_ns < 0 ? NULL : &timeout, NULL);
        if (count >= 0 || errno != ENOSYS)
            return count;
        poller->pwait2 = false;
    }
    int64_t ms = timeout_ns < 0 ? -1 : (timeout_ns + 999999) / 1000000;
    *call = "epoll_wait";
    return epoll_wait(poller->epoll_fd, poller->events, max, ms > INT_MAX ? INT_MAX : (int)ms);
}

static int epoll_poller_wait(void *state, struct ovl__poll_event *events, int max, int64_t timeout_ns,
                             const char **call)
{
    struct epoll_poller *poller = state;
    int count = wait_raw(poller, max < BATCH ? max : BATCH, timeout_ns, call);
    if (count < 0)
        return -errno;
    int out = 0;
    for (int i = 0; i < count; i++) {
        const struct epoll_event *event = &poller->events[i];
        unsigned tag = (unsigned)(event->data.u64 & TAG_MASK);
        if (tag == TAG_WAKE) {
            uint64_t value;
            if (read(poller->wake_fd, &value, sizeof value) < 0) {
                /* EAGAIN: another wake-up already reset it. */
            }
            continue;
        }
        uint32_t e = event->events;
        events[out].owner = (void *)(uintptr_t)(event->data.u64 & ~(uint64_t)TAG_MASK);
        events[out].listener = tag == TAG_LISTENER;
        events[out].events = (e & EPOLLIN ? OVL__POLL_IN : 0) | (e & EPOLLOUT ? OVL__POLL_OUT : 0) |
                             (e & EPOLLRDHUP ? OVL__POLL_RDHUP : 0) | (e & EPOLLHUP ? OVL__POLL_HUP : 0) |
                             (e & EPOLLERR ? OVL__POLL_ERR : 0);
        out++;
    }
    return out;
}

const struct ovl__poller ovl__poller_epoll = {
    .open = epoll_poller_open,
    .close = epoll_poller_close,
    .wake = epoll_poller_wake,
    .watch = epoll_poller_watch,
    .watch_listener = epoll_poller_watch_listener,
    .unwatch = epoll_poller_unwatch,
    .wait = epoll_poller_wait,
};

const struct ovl__backend ovl__backend_epoll = OVL__READY_BACKEND("epoll", &ovl__poller_epoll);
