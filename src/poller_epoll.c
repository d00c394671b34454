/*
 * poller_epoll.c - the readiness poller on Linux: one epoll instance per worker and an eventfd to wake it. Needs
 * Linux 4.5 for EPOLLEXCLUSIVE and nothing newer.
 *
 * Timers: a timerfd in the set holds the earliest deadline (absolute, CLOCK_MONOTONIC), set again only when an
 * earlier one comes, and the wait itself has no timeout. A timeout per wait armed and cancelled a kernel timer every
 * time the worker slept (57,590 in 2 s at 60,000 msgs/s over 50 connections; bench/epoll_echo, which waits without
 * one, 418). Without a timerfd each wait passes its timeout: epoll_pwait2's nanoseconds (5.11), else epoll_wait's
 * milliseconds (timers then fire up to 1 ms late).
 */
#include "ready.h"

#include "alloc.h"

#include <errno.h>
#include <limits.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

enum { BATCH = 256 };

/* The low two bits of an event's data say what was registered: a pointer to a connection or to a listening socket's
 * accept state (both at least 4-aligned), or the wake-up or the timer (no owner). */
enum { TAG_STREAM = 0, TAG_LISTENER = 1, TAG_WAKE = 2, TAG_TIMER = 3, TAG_MASK = 3 };

struct epoll_poller {
    int epoll_fd;
    int wake_fd;
    int timer_fd;             /* the earliest deadline, -1: none (each wait passes its timeout) */
    uint64_t timer_at_ns;     /* when timer_fd expires (ovl__clock_ns); 0: not armed, or its expiry was read */
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
    if (poller->timer_fd >= 0)
        close(poller->timer_fd);
    ovl__free(poller);
}

static int epoll_poller_open(void **state, ovl_error_info *err)
{
    struct epoll_poller *poller = ovl__zalloc(sizeof *poller);
    if (!poller) {
        ovl__error_set(err, -ENOMEM, NULL, "allocate the epoll poller");
        return -ENOMEM;
    }
    poller->epoll_fd = poller->wake_fd = poller->timer_fd = -1;
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
    /* No timerfd (a seccomp filter, a descriptor limit): the waits carry their timeouts, as before it. */
    poller->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (poller->timer_fd >= 0) {
        struct epoll_event event = {.events = EPOLLIN, .data.u64 = TAG_TIMER};
        if (epoll_ctl(poller->epoll_fd, EPOLL_CTL_ADD, poller->timer_fd, &event) < 0) {
            close(poller->timer_fd);
            poller->timer_fd = -1;
        }
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

/* The timerfd expires at NOW_NS + TIMEOUT_NS, or earlier: one set earlier than that stays (it fires early at worst,
 * once, and the next wait sets it again). True when the wait may go without a timeout of its own. */
static bool timer_set(struct epoll_poller *poller, int64_t timeout_ns, uint64_t now_ns)
{
    if (poller->timer_fd < 0)
        return false;
    uint64_t deadline = now_ns + (uint64_t)timeout_ns;
    if (poller->timer_at_ns && poller->timer_at_ns <= deadline)
        return true;
    struct itimerspec spec = {.it_value = {.tv_sec = (time_t)(deadline / 1000000000u),
                                           .tv_nsec = (long)(deadline % 1000000000u)}};
    if (timerfd_settime(poller->timer_fd, TFD_TIMER_ABSTIME, &spec, NULL) < 0)
        return false;
    poller->timer_at_ns = deadline;
    return true;
}

/* epoll_pwait2 waits with a nanosecond timeout, which ovl_conn_timer needs; epoll_wait's milliseconds are the
 * fallback on older kernels (timers then fire up to 1 ms late). */
static int wait_raw(struct epoll_poller *poller, int max, int64_t timeout_ns, uint64_t now_ns, const char **call)
{
    if (timeout_ns > 0 && timer_set(poller, timeout_ns, now_ns))
        timeout_ns = -1;
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
                             uint64_t now_ns, const char **call)
{
    struct epoll_poller *poller = state;
    int count = wait_raw(poller, max < BATCH ? max : BATCH, timeout_ns, now_ns, call);
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
        if (tag == TAG_TIMER) { /* expired: the loop runs the timers, and the next wait sets it again */
            uint64_t expirations;
            if (read(poller->timer_fd, &expirations, sizeof expirations) < 0) {
                /* EAGAIN: set again since it expired (timerfd_settime clears the expiry). */
            }
            poller->timer_at_ns = 0;
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
