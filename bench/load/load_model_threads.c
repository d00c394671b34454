/*
 * load_model_threads.c - overlap-load --model threads: one thread per connection with a blocking socket, the
 * simplest client there is: write the message (or the --pipeline window), read until its whole echo is back,
 * verify, record, again. Verification, histogram, schedule and report are the other models' (load_socket.h).
 *
 * The sockets block with a 100 ms timeout (SO_RCVTIMEO, SO_SNDTIMEO), so that a thread whose server stopped
 * answering still sees the end of the run. With --rate a thread sleeps until its next message is due, sends it and
 * reads its echo: one message at a time (load_options refuses --pipeline above 1 with --rate), so a slow echo makes
 * the next message late, and its latency, measured from its scheduled time, says so.
 */
#include "load_pattern.h"
#include "load_schedule.h"
#include "load_socket.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#define TIMEOUT_NS 100000000ull /* the socket timeout: how often a blocked thread looks at the run's phase */

/* Write the rest of c's last message, however many sends it takes. 0, or -1 when c ended (counted) or the run is
 * over. */
static int write_all(struct load_socket_thread *t, struct load_socket_conn *c)
{
    struct load_socket_run *run = t->run;
    uint32_t size = run->options->size;
    const unsigned char *message = load_pattern_at(run->table, c->seed, c->stream.sent - size);
    while (c->unsent) {
        ssize_t n = send(c->fd, message + (size - c->unsent), c->unsent, MSG_NOSIGNAL);
        if (n > 0) {
            c->unsent -= (uint32_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            if (load_socket_phase(run) == LOAD_PHASE_OVER)
                return -1;
        } else {
            load_socket_ended(t, c, n < 0 ? errno : EPIPE);
            return -1;
        }
    }
    return 0;
}

/* Send what may go now; with --rate, sleep (at most TIMEOUT_NS) until the next message is due. 0, or -1 when the
 * connection is done for. */
static int send_due(struct load_socket_thread *t, struct load_socket_conn *c, int phase)
{
    struct load_socket_run *run = t->run;
    const struct load_options *o = run->options;
    uint64_t now = load_now_ns();
    if (phase >= LOAD_PHASE_STOPPING) {
        load_socket_shut_if_done(c);
        return 0;
    }
    if (run->rate <= 0) {
        while (c->stream.msgs_sent - c->stream.msgs_done < o->pipeline) {
            load_socket_next(c, run, now);
            if (write_all(t, c) < 0)
                return -1;
        }
        return 0;
    }
    if (c->stream.msgs_sent != c->stream.msgs_done)
        return 0; /* its echo first */
    uint64_t at = load_schedule_at(atomic_load(&run->phases.base_ns), run->ns_per_msg, o->connections, c->index,
                                   c->scheduled_sent);
    if (now < at) {
        load_sleep_until(at - now > TIMEOUT_NS ? now + TIMEOUT_NS : at);
        return 0;
    }
    c->scheduled_sent++;
    load_socket_lag(t, c, at, now);
    load_socket_next(c, run, at);
    return write_all(t, c);
}

static void *threads_thread_main(void *arg)
{
    struct load_socket_thread *t = arg;
    struct load_socket_run *run = t->run;
    struct load_socket_conn *c = run->conns[t->first];
    if (load_socket_connect(t, c, false) < 0)
        return NULL;
    struct timeval timeout = {.tv_sec = 0, .tv_usec = (suseconds_t)(TIMEOUT_NS / 1000)};
    if (setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout) < 0 ||
        setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout) < 0) {
        load_socket_ended(t, c, errno);
        return NULL;
    }
    if (!load_socket_wait_start(run))
        goto out;
    while (c->fd >= 0) {
        int phase = load_socket_phase(run);
        if (phase == LOAD_PHASE_OVER || send_due(t, c, phase) < 0)
            break;
        if (c->stream.sent == c->stream.verified && !c->shut)
            continue; /* nothing owed: --rate slept towards its next message */
        ssize_t n = recv(c->fd, t->buffer, LOAD_SOCKET_BUFFER, 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            continue;
        if (n <= 0) {
            load_socket_ended(t, c, n == 0 ? 0 : errno);
            break;
        }
        if (load_socket_echoed(t, c, t->buffer, (size_t)n, load_now_ns()) < 0)
            break;
    }
out:
    load_socket_close(t, c);
    return NULL;
}

int load_model_threads(const struct load_options *o, double rate, struct load_result *result)
{
    struct load_socket_model model = {.backend = "blocking", .threads = o->connections,
                                      .thread_main = threads_thread_main};
    return load_socket_run(o, rate, result, &model);
}
