/*
 * load_socket.c - the run of overlap-load's plain-socket client models (load_socket.h): the target's addresses,
 * connecting, the accounting of echoes and ends, the threads started and joined, and the final sums; the phases
 * themselves are load_phases.c's.
 */
#include "load_socket.h"
#include "load_pattern.h"
#include "load_report.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define THREAD_STACK (256u * 1024)      /* a model thread keeps nothing large on its stack; 4096 of them must fit */

void load_socket_error(struct load_socket_thread *t, enum load_error_kind kind, const char *format, ...)
{
    struct load_socket_run *run = t->run;
    load_bump(&t->errors[kind], 1);
    va_list args;
    va_start(args, format);
    load_first_error_record(&run->first_error, format, args);
    va_end(args);
}

static int set_blocking(int fd, bool blocking)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0)
        return -1;
    return fcntl(fd, F_SETFL, blocking ? flags & ~O_NONBLOCK : flags | O_NONBLOCK);
}

/* One address: a non-blocking connect bounded by --connect-timeout. The socket, or -1 with errno set. */
static int connect_one(const struct addrinfo *ai, int timeout_ms)
{
    int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0)
        return -1;
    int err = 0;
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0 || set_blocking(fd, false) < 0)
        err = errno;
    else if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        err = errno;
        if (err == EINPROGRESS) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            int rc;
            while ((rc = poll(&p, 1, timeout_ms)) < 0 && errno == EINTR) {
            }
            socklen_t len = sizeof err;
            if (rc == 0)
                err = ETIMEDOUT;
            else if (rc < 0)
                err = errno;
            else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                err = errno;
        }
    }
    if (err) {
        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

/* --connect-timeout as the engine reads it (overlap.h connect_timeout_ms): 0 = 10 s, negative = the system's own
 * (-1 here: poll without a timeout; the kernel gives up after its SYN retries, about two minutes). */
static int connect_timeout_ms(const struct load_options *o)
{
    int ms = o->engine.config.connect_timeout_ms;
    return ms == 0 ? 10000 : ms < 0 ? -1 : ms;
}

int load_socket_connect(struct load_socket_thread *t, struct load_socket_conn *c, bool nonblocking)
{
    struct load_socket_run *run = t->run;
    int timeout_ms = connect_timeout_ms(run->options);
    uint64_t started = load_now_ns();
    int err = ECONNREFUSED;
    for (const struct addrinfo *ai = run->addresses; ai; ai = ai->ai_next) {
        int fd = connect_one(ai, timeout_ms);
        if (fd < 0) {
            err = errno;
            continue;
        }
        int one = 1;
        if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0 || (!nonblocking && set_blocking(fd, true) < 0)) {
            err = errno;
            close(fd);
            continue;
        }
        uint64_t now = load_now_ns();
        c->fd = fd;
        c->stream.free_at = now;
        pthread_mutex_lock(&t->hists->lock);
        load_histogram_record(&t->hists->connect_latency, now - started);
        pthread_mutex_unlock(&t->hists->lock);
        load_bump(&t->connects, 1);
        atomic_fetch_add(&t->live, 1);
        atomic_fetch_add(&run->phases.opened, 1);
        return 0;
    }
    load_socket_error(t, LOAD_ERR_CONNECT, "connect %s: %s", run->target, strerror(err));
    atomic_fetch_add(&run->phases.failed, 1);
    return -1;
}

bool load_socket_wait_start(struct load_socket_run *run)
{
    pthread_mutex_lock(&run->start_lock);
    while (load_socket_phase(run) == LOAD_PHASE_OPENING)
        pthread_cond_wait(&run->start, &run->start_lock);
    pthread_mutex_unlock(&run->start_lock);
    return load_socket_phase(run) != LOAD_PHASE_OVER;
}

const unsigned char *load_socket_next(struct load_socket_conn *c, struct load_socket_run *run, uint64_t stamp)
{
    const struct load_options *o = run->options;
    const unsigned char *message = load_pattern_at(run->table, c->seed, c->stream.sent);
    c->stamps[c->stream.msgs_sent % o->pipeline] = stamp;
    c->stream.msgs_sent++;
    c->stream.sent += o->size;
    c->unsent = o->size;
    return message;
}

static void close_conn(struct load_socket_thread *t, struct load_socket_conn *c)
{
    close(c->fd);
    c->fd = -1;
    atomic_fetch_sub(&t->live, 1);
}

int load_socket_echoed(struct load_socket_thread *t, struct load_socket_conn *c, const unsigned char *data,
                       size_t len, uint64_t now)
{
    struct load_socket_run *run = t->run;
    const struct load_options *o = run->options;
    char why[160];
    if (load_pattern_check(run->table, o->size, c->seed, c->stream.verified, c->stream.sent - c->unsent, data, len, why,
                           sizeof why) < 0) {
        load_socket_error(t, LOAD_ERR_MISMATCH, "connection %u (%s): %s", c->index, run->target, why);
        close_conn(t, c);
        return -1;
    }
    pthread_mutex_lock(&t->hists->lock);
    load_stream_echoed(&c->stream, c->stamps, o->size, o->pipeline, len, now,
                       load_socket_phase(run) == LOAD_PHASE_MEASURE, &t->tally, &t->hists->latency, NULL);
    pthread_mutex_unlock(&t->hists->lock);
    return 0;
}

void load_socket_ended(struct load_socket_thread *t, struct load_socket_conn *c, int err)
{
    const char *target = t->run->target;
    uint64_t owed = c->stream.sent - c->stream.verified;
    if (err == 0 && owed)
        load_socket_error(t, LOAD_ERR_SHORT, "connection %u to %s: closed by the server with %llu of %llu bytes not "
                          "echoed", c->index, target, (unsigned long long)owed, (unsigned long long)c->stream.sent);
    else if (err == 0 && !c->shut)
        load_socket_error(t, LOAD_ERR_SERVER_CLOSED, "connection %u to %s: closed by the server", c->index, target);
    else if (err == ECONNRESET || err == EPIPE)
        load_socket_error(t, LOAD_ERR_RESET, "connection %u to %s: reset by the server (%llu bytes not echoed)",
                          c->index, target, (unsigned long long)owed);
    else if (err)
        load_socket_error(t, LOAD_ERR_IO, "connection %u to %s: %s", c->index, target, strerror(err));
    close_conn(t, c);
}

void load_socket_close(struct load_socket_thread *t, struct load_socket_conn *c)
{
    if (c->fd < 0)
        return;
    uint64_t owed = c->stream.sent - c->stream.verified;
    if (owed)
        load_socket_error(t, LOAD_ERR_SHORT, "connection %u to %s: %llu bytes sent were never echoed (waited %.1f s "
                          "after the end)", c->index, t->run->target, (unsigned long long)owed,
                          (double)LOAD_PHASES_GRACE_NS / 1e9);
    close_conn(t, c);
}

void load_socket_shut_if_done(struct load_socket_conn *c)
{
    if (c->shut || c->fd < 0 || c->unsent || c->stream.verified != c->stream.sent)
        return;
    c->shut = true;
    shutdown(c->fd, SHUT_WR);
}

void load_socket_lag(struct load_socket_thread *t, struct load_socket_conn *c, uint64_t at, uint64_t now)
{
    /* From when the message could have gone (its time had come and the pipeline had room) to now. */
    uint64_t could = at > c->stream.free_at ? at : c->stream.free_at;
    if (load_socket_phase(t->run) == LOAD_PHASE_MEASURE) {
        pthread_mutex_lock(&t->hists->lock);
        load_histogram_record(&t->hists->send_lag, now > could ? now - could : 0);
        pthread_mutex_unlock(&t->hists->lock);
    }
}

/* ---- the main thread ---- */

static void sum_counters(struct load_socket_run *run, struct load_result *r)
{
    r->msgs = r->bytes = r->bytes_total = r->connects = 0;
    memset(r->errors, 0, sizeof r->errors);
    for (uint32_t i = 0; i < run->thread_count; i++) {
        struct load_socket_thread *t = run->threads[i];
        r->msgs += load_peek(&t->tally.msgs);
        r->bytes += load_peek(&t->tally.bytes);
        r->bytes_total += load_peek(&t->tally.all_bytes);
        r->connects += load_peek(&t->connects);
        for (int k = 0; k < LOAD_ERR_KINDS; k++)
            r->errors[k] += load_peek(&t->errors[k]);
    }
}

/* The hooks of the main thread's phases (load_phases.h). */
static void run_counts(void *model, struct load_phases_counts *counts)
{
    struct load_socket_run *run = model;
    for (uint32_t i = 0; i < run->thread_count; i++) {
        struct load_socket_thread *t = run->threads[i];
        counts->msgs += load_peek(&t->tally.all_msgs);
        counts->bytes += load_peek(&t->tally.all_bytes);
        for (int k = 0; k < LOAD_ERR_KINDS; k++)
            counts->errors += load_peek(&t->errors[k]);
    }
}

static uint64_t run_live(void *model)
{
    struct load_socket_run *run = model;
    uint64_t live = 0;
    for (uint32_t i = 0; i < run->thread_count; i++)
        live += atomic_load(&run->threads[i]->live);
    return live;
}

/* The run left OPENING (for the warmup, or OVER when it gave up): wake the threads in load_socket_wait_start. The
 * phase was stored before; taking the lock to broadcast means a thread between its look at the phase and its wait
 * is not missed. */
static void run_entered(void *model, enum load_phase phase, uint64_t now)
{
    struct load_socket_run *run = model;
    (void)now;
    if (phase != LOAD_PHASE_WARMUP && phase != LOAD_PHASE_OVER)
        return;
    pthread_mutex_lock(&run->start_lock);
    pthread_cond_broadcast(&run->start);
    pthread_mutex_unlock(&run->start_lock);
}

static const struct load_phases_hooks run_hooks = {.counts = run_counts, .live = run_live, .entered = run_entered};

static int setup(struct load_socket_run *run, const struct load_options *o, const struct load_socket_model *model,
                 struct load_result *result)
{
    snprintf(run->target, sizeof run->target, "%s:%s", o->host, o->port);
    snprintf(result->target, sizeof result->target, "%s", run->target);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_protocol = IPPROTO_TCP};
    int rc = getaddrinfo(o->host, o->port, &hints, &run->addresses);
    if (rc != 0) {
        snprintf(result->first_error, sizeof result->first_error, "resolve %s: %s", run->target, gai_strerror(rc));
        return -1;
    }
    run->table = load_pattern_table(o->size);
    run->conns = calloc(o->connections, sizeof *run->conns);
    run->threads = calloc(model->threads, sizeof *run->threads);
    if (!run->table || !run->conns || !run->threads)
        goto oom;
    for (uint32_t i = 0; i < o->connections; i++) {
        struct load_socket_conn *c = calloc(1, sizeof *c + o->pipeline * sizeof(uint64_t));
        if (!c)
            goto oom;
        c->fd = -1;
        c->index = i;
        c->seed = load_pattern_seed(i, 1);
        run->conns[i] = c;
    }
    run->hist_count = model->threads < LOAD_SOCKET_HIST_SETS ? model->threads : LOAD_SOCKET_HIST_SETS;
    for (uint32_t i = 0; i < run->hist_count; i++) {
        struct load_socket_hists *hists = malloc(sizeof *hists);
        if (!hists)
            goto oom;
        pthread_mutex_init(&hists->lock, NULL);
        load_histogram_init(&hists->latency);
        load_histogram_init(&hists->connect_latency);
        load_histogram_init(&hists->send_lag);
        run->hists[i] = hists;
    }
    run->thread_count = model->threads;
    for (uint32_t i = 0; i < model->threads; i++) {
        struct load_socket_thread *t = calloc(1, sizeof *t);
        if (!t)
            goto oom;
        run->threads[i] = t;
        t->hists = run->hists[i % run->hist_count];
        t->buffer = malloc(LOAD_SOCKET_BUFFER);
        if (!t->buffer)
            goto oom;
        t->run = run;
        t->first = (uint32_t)((uint64_t)o->connections * i / model->threads);
        t->count = (uint32_t)((uint64_t)o->connections * (i + 1) / model->threads) - t->first;
    }
    return 0;
oom:
    snprintf(result->first_error, sizeof result->first_error, "out of memory");
    return -1;
}

static void teardown(struct load_socket_run *run)
{
    if (run->threads)
        for (uint32_t i = 0; i < run->thread_count; i++)
            if (run->threads[i]) {
                free(run->threads[i]->buffer);
                free(run->threads[i]);
            }
    if (run->conns)
        for (uint32_t i = 0; i < run->options->connections; i++)
            if (run->conns[i]) {
                if (run->conns[i]->fd >= 0)
                    close(run->conns[i]->fd);
                free(run->conns[i]);
            }
    for (uint32_t i = 0; i < run->hist_count; i++)
        if (run->hists[i]) {
            pthread_mutex_destroy(&run->hists[i]->lock);
            free(run->hists[i]);
        }
    free(run->threads);
    free(run->conns);
    free(run->table);
    if (run->addresses)
        freeaddrinfo(run->addresses);
}

static void join_all(struct load_socket_run *run)
{
    load_phases_enter(&run->phases, LOAD_PHASE_OVER);
    for (uint32_t i = 0; i < run->thread_count; i++)
        if (run->threads[i]->started) {
            pthread_join(run->threads[i]->id, NULL);
            run->threads[i]->started = false;
        }
}

static int start_threads(struct load_socket_run *run, const struct load_socket_model *model,
                         struct load_result *result)
{
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, THREAD_STACK);
    int rc = 0;
    for (uint32_t i = 0; i < run->thread_count && rc == 0; i++) {
        rc = pthread_create(&run->threads[i]->id, &attr, model->thread_main, run->threads[i]);
        run->threads[i]->started = rc == 0;
        if (rc)
            snprintf(result->first_error, sizeof result->first_error, "--connections: thread %u of %u: %s "
                     "(ulimit -u?)", i + 1, run->thread_count, strerror(rc));
    }
    pthread_attr_destroy(&attr);
    return rc ? -1 : 0;
}

/* Connection i's messages echoed in the window, for the fairness figures. */
static uint64_t conn_window_msgs(const void *run, size_t i)
{
    return ((const struct load_socket_run *)run)->conns[i]->stream.window_msgs;
}

int load_socket_run(const struct load_options *o, double rate, struct load_result *result,
                    const struct load_socket_model *model)
{
    memset(result, 0, sizeof *result);
    load_histogram_init(&result->latency);
    load_histogram_init(&result->connect_latency);
    load_histogram_init(&result->send_lag);
    result->rate = rate;
    result->threads = (int)model->threads;
    snprintf(result->backend, sizeof result->backend, "%s", model->backend);
    struct load_socket_run *run = calloc(1, sizeof *run);
    if (!run) {
        snprintf(result->first_error, sizeof result->first_error, "out of memory");
        return -1;
    }
    run->options = o;
    run->rate = rate;
    run->ns_per_msg = rate > 0 ? 1e9 / rate : 0;
    pthread_mutex_init(&run->start_lock, NULL);
    pthread_cond_init(&run->start, NULL);
    load_phases_init(&run->phases, o, &run_hooks, run);
    int status = -1;
    if (setup(run, o, model, result) < 0 || start_threads(run, model, result) < 0)
        goto out;

    /* Each thread connects its own; every connect ends by --connect-timeout (the system's own: about two
     * minutes), with time to spare. */
    int connect_ms = connect_timeout_ms(o);
    uint64_t deadline = load_now_ns() + LOAD_PHASES_OPEN_TIMEOUT_NS +
                        (uint64_t)(connect_ms > 0 ? connect_ms : 130000) * 1000000ull;
    if (!load_phases_open(&run->phases, o->connections, deadline)) {
        /* The threads may still run (the wait above gave up): the record gives a whole message or none. */
        if (!load_first_error_copy(&run->first_error, result->first_error, sizeof result->first_error))
            snprintf(result->first_error, sizeof result->first_error, "no connection opened");
        goto out;
    }
    load_phases_window(&run->phases, o, load_now_ns(), result);
    join_all(run);

    /* Every thread has ended: the counters are final and the histograms quiet. */
    sum_counters(run, result);
    result->window_connects = 0;
    for (uint32_t i = 0; i < run->hist_count; i++) {
        load_histogram_merge(&result->latency, &run->hists[i]->latency);
        load_histogram_merge(&result->connect_latency, &run->hists[i]->connect_latency);
        load_histogram_merge(&result->send_lag, &run->hists[i]->send_lag);
    }
    load_fairness_measure(&result->fairness, o->connections, conn_window_msgs, run);
    load_first_error_copy(&run->first_error, result->first_error, sizeof result->first_error);
    status = 0;
out:
    if (run->threads)
        join_all(run);
    teardown(run);
    pthread_cond_destroy(&run->start);
    pthread_mutex_destroy(&run->start_lock);
    free(run);
    return status;
}
