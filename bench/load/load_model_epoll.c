/*
 * load_model_epoll.c - overlap-load --model epoll: --threads threads (2 unless given), each with its own epoll set
 * over its share of non-blocking connections, the way a hand-written epoll client drives a server: one send() per
 * message (per reply, in closed loop), recv() until EAGAIN on readiness. Verification, histogram, schedule and
 * report are the other models' (load_socket.h).
 *
 * Open loop. The schedule's positions (load_schedule.h: position i + k N is message k of slot i) are walked in
 * order; each position of one of this thread's connections makes that connection's next message due. A timerfd
 * set to the next such position, absolute on the monotonic clock, wakes the thread with nanosecond resolution
 * (epoll_wait's timeout is in milliseconds).
 */
#include "load_pattern.h"
#include "load_schedule.h"
#include "load_socket.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#define WAIT_MS 100             /* the longest a thread sleeps before it looks at the run's phase again */

enum { EVENTS = 256 };

struct epoll_thread {
    struct load_socket_thread *t;
    int ep, timer;              /* timer: -1 in closed loop */
    uint64_t position;          /* open loop: the next schedule position not walked yet */
};

/* Write what is left of c's last message; more waits for EPOLLOUT. */
static void write_rest(struct epoll_thread *e, struct load_socket_conn *c)
{
    const struct load_options *o = e->t->run->options;
    const unsigned char *message = load_pattern_at(e->t->run->table, c->seed, c->stream.sent - o->size);
    ssize_t n = send(c->fd, message + (o->size - c->unsent), c->unsent, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
        load_socket_ended(e->t, c, errno);
        return;
    }
    if (n > 0)
        c->unsent -= (uint32_t)n;
    bool want_out = c->unsent > 0;
    if (want_out != c->want_out) {
        c->want_out = want_out;
        struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c};
        epoll_ctl(e->ep, EPOLL_CTL_MOD, c->fd, &ev);
    }
}

/* Send what c may send now: up to --pipeline in flight, one send() each, in open loop only what is due. */
static void pump(struct epoll_thread *e, struct load_socket_conn *c, uint64_t now)
{
    struct load_socket_run *run = e->t->run;
    const struct load_options *o = run->options;
    int phase = load_socket_phase(run);
    if (phase >= LOAD_PHASE_STOPPING) {
        load_socket_shut_if_done(c);
        return;
    }
    while (c->fd >= 0 && !c->unsent && c->stream.msgs_sent - c->stream.msgs_done < o->pipeline) {
        uint64_t stamp = now;
        if (run->rate > 0) {
            if (c->scheduled_sent >= c->due)
                break;
            stamp = load_schedule_at(atomic_load(&run->phases.base_ns), run->ns_per_msg, o->connections, c->index,
                                     c->scheduled_sent++);
            load_socket_lag(e->t, c, stamp, now);
        }
        load_socket_next(c, run, stamp);
        write_rest(e, c);
    }
}

static void on_readable(struct epoll_thread *e, struct load_socket_conn *c)
{
    struct load_socket_thread *t = e->t;
    for (;;) {
        ssize_t n = recv(c->fd, t->buffer, LOAD_SOCKET_BUFFER, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n <= 0) {
            load_socket_ended(t, c, n == 0 ? 0 : errno);
            return;
        }
        if (load_socket_echoed(t, c, t->buffer, (size_t)n, load_now_ns()) < 0)
            return;
        if ((size_t)n < LOAD_SOCKET_BUFFER)
            break; /* the socket is most likely empty: save the recv that would say EAGAIN */
    }
    pump(e, c, load_now_ns());
}

/* Open loop: walk the schedule up to now, making this thread's connections' messages due and sending them; then
 * arm the timer for the thread's next position. */
static void walk_schedule(struct epoll_thread *e, uint64_t now)
{
    struct load_socket_run *run = e->t->run;
    uint32_t n = run->options->connections, first = e->t->first, end = e->t->first + e->t->count;
    uint64_t base = atomic_load(&run->phases.base_ns);
    uint64_t reached = now < base ? 0 : (uint64_t)((double)(now - base) / run->ns_per_msg) + 1;
    for (;;) {
        /* The next position that is this thread's: skip the other threads' slots of this round. */
        uint64_t p = e->position;
        uint32_t i = (uint32_t)(p % n);
        if (i < first)
            p += first - i;
        else if (i >= end)
            p += n - i + first;
        e->position = p;
        if (p >= reached)
            break;
        struct load_socket_conn *c = run->conns[p % n];
        c->due = p / n + 1;
        if (c->fd >= 0)
            pump(e, c, now);
        e->position = p + 1;
    }
    uint64_t at = load_schedule_at(base, run->ns_per_msg, n, (uint32_t)(e->position % n), e->position / n);
    struct itimerspec when = {.it_value = {.tv_sec = (time_t)(at / 1000000000ull),
                                           .tv_nsec = (long)(at % 1000000000ull)}};
    timerfd_settime(e->timer, TFD_TIMER_ABSTIME, &when, NULL);
}

static void *epoll_thread_main(void *arg)
{
    struct epoll_thread e = {.t = arg, .ep = -1, .timer = -1};
    struct load_socket_thread *t = e.t;
    struct load_socket_run *run = t->run;
    e.ep = epoll_create1(EPOLL_CLOEXEC);
    if (run->rate > 0)
        e.timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (e.ep < 0 || (run->rate > 0 && e.timer < 0)) {
        load_socket_error(t, LOAD_ERR_IO, "epoll thread: %s", strerror(errno));
        atomic_fetch_add(&run->phases.failed, t->count);
        goto out;
    }
    for (uint32_t k = 0; k < t->count; k++) {
        struct load_socket_conn *c = run->conns[t->first + k];
        if (load_socket_phase(run) == LOAD_PHASE_OVER)
            break; /* the run gave up waiting for the connections (a server dropping SYNs): stop opening more */
        if (load_socket_connect(t, c, true) < 0)
            continue;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(e.ep, EPOLL_CTL_ADD, c->fd, &ev);
    }
    if (e.timer >= 0) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
        epoll_ctl(e.ep, EPOLL_CTL_ADD, e.timer, &ev);
    }
    if (!load_socket_wait_start(run))
        goto out;
    uint64_t now = load_now_ns();
    if (run->rate > 0)
        walk_schedule(&e, now);
    else
        for (uint32_t k = 0; k < t->count; k++)
            if (run->conns[t->first + k]->fd >= 0)
                pump(&e, run->conns[t->first + k], now);
    bool stopping = false;
    struct epoll_event events[EVENTS];
    while (load_socket_phase(run) != LOAD_PHASE_OVER && atomic_load(&t->live) > 0) {
        if (!stopping && load_socket_phase(run) >= LOAD_PHASE_STOPPING) {
            stopping = true; /* nothing more is sent; connections whose every echo came back end now */
            for (uint32_t k = 0; k < t->count; k++)
                load_socket_shut_if_done(run->conns[t->first + k]);
        }
        int ready = epoll_wait(e.ep, events, EVENTS, WAIT_MS);
        for (int k = 0; k < ready; k++) {
            struct load_socket_conn *c = events[k].data.ptr;
            if (!c) {
                uint64_t expirations;
                if (read(e.timer, &expirations, sizeof expirations) < 0) {
                    /* EAGAIN: the timer was re-armed since it fired; the walk below is right either way */
                }
                if (!stopping)
                    walk_schedule(&e, load_now_ns());
                continue;
            }
            if (c->fd < 0)
                continue;
            if (events[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                on_readable(&e, c);
            if (c->fd >= 0 && c->unsent && (events[k].events & EPOLLOUT)) {
                write_rest(&e, c);
                if (c->fd >= 0 && !c->unsent)
                    pump(&e, c, load_now_ns());
            }
        }
    }
out:
    for (uint32_t k = 0; k < t->count; k++)
        load_socket_close(t, run->conns[t->first + k]);
    if (e.timer >= 0)
        close(e.timer);
    if (e.ep >= 0)
        close(e.ep);
    return NULL;
}

int load_model_epoll(const struct load_options *o, double rate, struct load_result *result)
{
    uint32_t threads = 2;
    if (o->threads_given) {
        threads = (uint32_t)o->engine.config.threads;
        if (threads == 0) /* the CPUs this process may use, as the engine model counts them */
            threads = (uint32_t)load_threads_for_cpus();
    }
    if (threads > o->connections)
        threads = o->connections;
    struct load_socket_model model = {.backend = "epoll", .threads = threads, .thread_main = epoll_thread_main};
    return load_socket_run(o, rate, result, &model);
}
