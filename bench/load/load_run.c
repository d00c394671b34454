/*
 * load_run.c - one load run on liboverlap itself: connections opened with ovl_connect, messages sent zero-copy from
 * one immutable pattern table (ovl_send_ref), every echoed byte compared with the table at its stream offset, the
 * latency of every message recorded in per-worker histograms. Also the --once seed client.
 *
 * The pattern and its check are load_pattern.h's, shared with the plain-socket models (load_socket.h).
 *
 * Threads. Each connection (a "slot": churn reconnects reuse it) belongs to one engine worker; each worker has its
 * own counters and histograms, written only by it. The main thread reads the counters with relaxed atomics for the
 * progress line and merges the histograms after the engine stopped: no lock on the message path.
 *
 * Open loop (--rate). Message k of slot i is scheduled at base + (i + k N) / rate: the N slots take turns, so the
 * total rate is `rate` and no two slots send at once. Latency is measured from the scheduled time, not from the
 * actual send, so a server that stalls is charged for every message it held up (no coordinated omission). A
 * message is sent when its time has come and fewer than --pipeline are in flight; one that cannot be sent then
 * waits, its clock already running. Which of a slot's messages are due is arithmetic on the clock (due_by), so an
 * echo arrival sends what is due at once; a per-connection engine timer (ovl_conn_timer) wakes the slot at its next
 * scheduled instant when nothing else does.
 *
 * The end. When the measured window closes, connections stop sending, wait for what is in flight, verify it, and
 * shut their write side down; the server closes, and only then is the engine stopped. Bytes a server never echoes
 * within the grace period count as short echoes.
 */
#include "load_first_error.h"
#include "load_hdr_log.h"
#include "load_pattern.h"
#include "load_phases.h"
#include "load_report.h"
#include "load_schedule.h"
#include "load_stream.h"
#include "load_run.h"
#include "overlap.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef _WIN32
#define WIN32_LEAN_AND_MEAN
#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>
#ifndef ESHUTDOWN /* the C runtime has none; the engine returns Winsock's, as overlap.h says */
#define ESHUTDOWN WSAESHUTDOWN
#endif
#else
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif
#endif


#define CHECK_NS 100000000ull     /* open loop: a slot looks at the run's phase at least this often */
#define PUBLISH_NS 250000000ull   /* how often a worker republishes its p99 for the progress line */

int load_threads_for_cpus(void)
{
    int count = ovl_cpu_count();
    return count > OVL_MAX_THREADS ? OVL_MAX_THREADS : count;
}

const char *const load_error_keys[LOAD_ERR_KINDS] = {"connect", "mismatch", "short_echo", "server_closed", "reset",
                                                     "io"};
const char *const load_error_names[LOAD_ERR_KINDS] = {"connect failed", "wrong bytes", "short echo",
                                                      "closed by server", "reset", "I/O error"};

struct load_run;
struct load_slot;

/* Everything one worker thread owns. The leading pad keeps the counters off the cache line the previous worker's
 * histogram ends on. */
struct load_worker {
    char pad[64];
    struct load_tally tally;
    _Atomic uint64_t connects, window_connects, errors[LOAD_ERR_KINDS];
    _Atomic uint64_t p99_ns;
    char pad2[64];
    uint64_t published_at;
    struct load_run *run;
    struct load_histogram latency;
    struct load_histogram connect_latency;
    struct load_histogram send_lag;
    /* --hdr-log: the logged (microsecond) histograms, cumulative; the main thread reads them each interval and
     * logs the difference. NULL without --hdr-log. */
    _Atomic uint64_t *log_latency, *log_connect;
};

/* One of the N connections, and its successors under --churn. */
struct load_slot {
    struct load_run *run;
    struct load_worker *worker;   /* set on the first open; churn reconnects stay on it */
    ovl_conn *conn;               /* open connection, or NULL */
    uint32_t index;
    uint32_t generation;          /* connections started for this slot */
    uint32_t seed;                /* pattern offset of the current connection */
    bool opened_once;
    bool shut;                    /* our write side is shut down: the connection is ending in good order */
    bool failed;                  /* verification failed: closing */
    struct load_stream stream;
    uint64_t due;                 /* open loop: this slot's messages whose scheduled time has come */
    uint64_t scheduled_sent;      /* open loop: of which sent */
    uint64_t connect_started;
    uint64_t stamps[];            /* per message in flight (index msgs_sent % pipeline): latency start, ns */
};

struct load_run {
    const struct load_options *options;
    double rate;
    double ns_per_msg;            /* open loop: 1e9 / rate */
    ovl_engine *engine;
    ovl_target *target;
    unsigned char *table;
    struct load_worker *workers;
    int worker_count;
    struct load_slot **slots;
    ovl_callbacks callbacks;
    struct load_phases phases;    /* the phase, the schedule's time zero (base_ns), slots opened / failed */
    _Atomic uint64_t start_ns;    /* --start-at on the monotonic clock: closed loop sends nothing before; 0 = none */
    _Atomic int64_t live;         /* connections started and not closed yet (clock connections not included) */
    _Atomic uint64_t main_errors[LOAD_ERR_KINDS]; /* errors seen on the main thread (no worker to count them) */
    struct load_first_error first_error;
    /* --hdr-log, on the main thread: the workers' logged counts summed at the last interval end, and now. */
    struct load_hdr_writer *hdr;
    uint64_t hdr_start_ns, hdr_last_ns, hdr_interval_ns;
    uint64_t *hdr_seen[2], *hdr_now[2];
};

double load_wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* --hdr-tag, or the host name with what a tag cannot hold replaced, or "load". */
static void hdr_default_tag(const struct load_options *o, char *tag, size_t size)
{
    if (o->hdr_tag) {
        snprintf(tag, size, "%s", o->hdr_tag);
        return;
    }
    char host[256] = "";
    if (gethostname(host, sizeof host - 1) != 0 || !host[0])
        snprintf(host, sizeof host, "load");
    host[64] = '\0';
    for (char *p = host; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '.' ||
              *p == '_' || *p == '-'))
            *p = '-';
    snprintf(tag, size, "%s", host);
}

uint64_t load_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void load_sleep_until(uint64_t deadline)
{
#ifdef _WIN32
    uint64_t now = load_now_ns();
    if (deadline > now)
        Sleep((DWORD)((deadline - now + 999999) / 1000000));
#else
    struct timespec ts = {.tv_sec = (time_t)(deadline / 1000000000ull), .tv_nsec = (long)(deadline % 1000000000ull)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
#endif
}

void load_cpu_times(double *user, double *system)
{
#ifdef _WIN32
    FILETIME created, exited, kernel, usermode;
    GetProcessTimes(GetCurrentProcess(), &created, &exited, &kernel, &usermode);
    *user = (double)(((uint64_t)usermode.dwHighDateTime << 32) | usermode.dwLowDateTime) / 1e7;
    *system = (double)(((uint64_t)kernel.dwHighDateTime << 32) | kernel.dwLowDateTime) / 1e7;
#else
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    *user = (double)usage.ru_utime.tv_sec + (double)usage.ru_utime.tv_usec / 1e6;
    *system = (double)usage.ru_stime.tv_sec + (double)usage.ru_stime.tv_usec / 1e6;
#endif
}

static inline int phase_of(struct load_run *run)
{
    return atomic_load_explicit(&run->phases.phase, memory_order_relaxed);
}

uint64_t load_result_errors(const struct load_result *result)
{
    uint64_t total = 0;
    for (int k = 0; k < LOAD_ERR_KINDS; k++)
        total += result->errors[k];
    return total;
}

/* Count an error of `kind` on worker w; the first error of the run is kept with its detail for the report. */
static void count_error(struct load_run *run, struct load_worker *w, enum load_error_kind kind, const char *format,
                        ...) __attribute__((format(printf, 4, 5)));

static void count_error(struct load_run *run, struct load_worker *w, enum load_error_kind kind, const char *format,
                        ...)
{
    if (w)
        load_bump(&w->errors[kind], 1);
    else
        atomic_fetch_add(&run->main_errors[kind], 1);
    va_list args;
    va_start(args, format);
    load_first_error_record(&run->first_error, format, args);
    va_end(args);
}

static struct load_worker *worker_of(struct load_run *run, ovl_conn *conn)
{
    return &run->workers[ovl_conn_worker(conn)];
}

/* ---- sending and the open-loop schedule ---- */

static inline uint64_t scheduled_at(const struct load_run *run, uint64_t base, uint32_t index, uint64_t k)
{
    return load_schedule_at(base, run->ns_per_msg, run->options->connections, index, k);
}

static void send_one(struct load_slot *s, uint64_t stamp)
{
    const struct load_options *o = s->run->options;
    const unsigned char *message = load_pattern_at(s->run->table, s->seed, s->stream.sent);
    s->stamps[s->stream.msgs_sent % o->pipeline] = stamp;
    s->stream.msgs_sent++;
    s->stream.sent += o->size;
    /* A failure means the connection is closing; on_close reports why. */
    ovl_send_ref(s->conn, message, o->size);
}

/* Every echo is in and the slot has nothing more to send (the run ends, or --churn's count is reached): end the
 * connection in good order. The server answers our FIN with its own and on_close sees OVL_CLOSE_PEER. */
static void finish_if_done(struct load_slot *s)
{
    if (s->shut || s->failed || !s->conn || s->stream.verified != s->stream.sent)
        return;
    const struct load_options *o = s->run->options;
    if (phase_of(s->run) == LOAD_PHASE_STOPPING || (o->churn && s->stream.msgs_done >= o->churn)) {
        s->shut = true;
        ovl_shutdown(s->conn);
    }
}

/* Send what the slot may send now: up to --pipeline in flight, at most --churn per connection, and in open loop
 * only messages whose scheduled time has come. */
static void pump(struct load_slot *s, uint64_t now)
{
    if (!s->conn || s->shut || s->failed)
        return;
    struct load_run *run = s->run;
    const struct load_options *o = run->options;
    int phase = phase_of(run);
    if (phase == LOAD_PHASE_STOPPING) {
        finish_if_done(s);
        return;
    }
    uint64_t limit = o->churn ? o->churn : UINT64_MAX;
    uint64_t base = run->rate > 0 ? atomic_load_explicit(&run->phases.base_ns, memory_order_relaxed) : 0;
    if (run->rate <= 0 && now < atomic_load_explicit(&run->start_ns, memory_order_relaxed))
        return; /* --start-at: connected early, silent until then (on_start_timer comes back) */
    while (s->stream.msgs_sent - s->stream.msgs_done < o->pipeline && s->stream.msgs_sent < limit) {
        if (run->rate > 0) {
            if (!base || s->scheduled_sent >= s->due)
                break;
            uint64_t at = scheduled_at(run, base, s->index, s->scheduled_sent);
            send_one(s, at);
            s->scheduled_sent++;
            /* The client's own delay: from when the message could have gone (its time had come and the pipeline
             * had room) to now. Waiting for room is the server's doing and not counted here. */
            uint64_t could = at > s->stream.free_at ? at : s->stream.free_at;
            if (phase == LOAD_PHASE_MEASURE)
                load_histogram_record(&s->worker->send_lag, now > could ? now - could : 0);
        } else {
            send_one(s, now);
        }
    }
    finish_if_done(s);
}

/* Open loop: how many of the slot's messages have their scheduled time at or before `now` (message k of slot i
 * is due from base + (i + k N) / rate). */
static uint64_t due_by(const struct load_slot *s, uint64_t base, uint64_t now)
{
    return load_schedule_due(base, s->run->ns_per_msg, s->run->options->connections, s->index, now);
}

static void on_slot_timer(ovl_conn *conn);

/* Open loop: mark what is due, send what may go, and set the connection's timer for the slot's next scheduled
 * message (at most CHECK_NS ahead, so that the end of the run is seen even at very low rates). */
static void slot_tick(struct load_slot *s, uint64_t now)
{
    struct load_run *run = s->run;
    uint64_t base = atomic_load_explicit(&run->phases.base_ns, memory_order_relaxed);
    if (base) {
        uint64_t due = due_by(s, base, now);
        if (due > s->due)
            s->due = due;
    }
    pump(s, now);
    if (!s->conn || s->shut || s->failed || phase_of(run) == LOAD_PHASE_STOPPING)
        return;
    /* Before the schedule starts (connections still opening) look every millisecond, so no slot starts late. */
    uint64_t next = base ? scheduled_at(run, base, s->index, s->due) : now + 1000000;
    uint64_t delay_ns = next > now ? next - now : 0;
    if (delay_ns > CHECK_NS)
        delay_ns = CHECK_NS;
    /* Rounded up: a timer that fires a fraction of a microsecond early would find nothing due. */
    int rc = ovl_conn_timer(s->conn, (delay_ns + 999) / 1000, on_slot_timer);
    if (rc < 0 && rc != -ENOTCONN)
        count_error(run, s->worker, LOAD_ERR_IO, "connection %u: timer: %s", s->index, ovl_strerror(rc));
}

static void on_slot_timer(ovl_conn *conn)
{
    slot_tick(ovl_conn_user(conn), load_now_ns());
}

/* ---- connection callbacks ---- */

static void start_connect(struct load_run *run, struct load_slot *s, struct load_worker *w);

static void publish_p99(struct load_worker *w, uint64_t now)
{
    if (now - w->published_at < PUBLISH_NS)
        return;
    w->published_at = now;
    atomic_store_explicit(&w->p99_ns, load_histogram_quantile(&w->latency, 0.99), memory_order_relaxed);
}

/* Closed loop with --start-at: the connection opened early; its first messages go at the start. */
static void on_start_timer(ovl_conn *conn)
{
    pump(ovl_conn_user(conn), load_now_ns());
}

static void on_open(ovl_conn *conn, void *user)
{
    struct load_slot *s = user;
    struct load_run *run = s->run;
    struct load_worker *w = worker_of(run, conn);
    uint64_t now = load_now_ns();
    s->conn = conn;
    s->shut = s->failed = false;
    s->stream.sent = s->stream.verified = s->stream.msgs_sent = s->stream.msgs_done = 0;
    s->stream.free_at = now;
    load_bump(&w->connects, 1);
    if (phase_of(run) == LOAD_PHASE_MEASURE)
        load_bump(&w->window_connects, 1);
    load_histogram_record(&w->connect_latency, now - s->connect_started);
    if (w->log_connect)
        load_bump(&w->log_connect[load_log_index(now - s->connect_started)], 1);
    if (!s->opened_once) {
        s->opened_once = true;
        s->worker = w;
        atomic_fetch_add(&run->phases.opened, 1);
    }
    uint64_t start = atomic_load_explicit(&run->start_ns, memory_order_relaxed);
    if (run->rate > 0)
        slot_tick(s, now);
    else if (now < start) {
        int rc = ovl_conn_timer(conn, (start - now + 999) / 1000, on_start_timer);
        if (rc < 0 && rc != -ENOTCONN)
            count_error(run, w, LOAD_ERR_IO, "connection %u: timer: %s", s->index, ovl_strerror(rc));
    } else
        pump(s, now);
}

static void on_data(ovl_conn *conn, ovl_buf *buf)
{
    struct load_slot *s = ovl_conn_user(conn);
    struct load_run *run = s->run;
    const struct load_options *o = run->options;
    struct load_worker *w = worker_of(run, conn);
    if (s->failed) {
        ovl_buf_release(buf);
        return;
    }
    size_t len = ovl_buf_len(buf);
    char why[160];
    int bad = load_pattern_check(run->table, o->size, s->seed, s->stream.verified, s->stream.sent, ovl_buf_data(buf), len, why,
                                 sizeof why);
    if (bad < 0)
        count_error(run, w, LOAD_ERR_MISMATCH, "connection %u (%s): %s", s->index, ovl_conn_peer(conn), why);
    ovl_buf_release(buf);
    if (bad < 0) {
        s->failed = true;
        ovl_close(conn);
        return;
    }
    uint64_t now = load_now_ns();
    bool measuring = phase_of(run) == LOAD_PHASE_MEASURE;
    load_stream_echoed(&s->stream, s->stamps, o->size, o->pipeline, len, now, measuring, &w->tally, &w->latency,
                       w->log_latency);
    if (run->rate > 0)
        slot_tick(s, now);
    else
        pump(s, now);
    if (measuring)
        publish_p99(w, now);
}

/* The engine's log hook: on a worker thread; one line per call. */
static void engine_log(void *user, ovl_log_level level, const char *message)
{
    (void)user;
    fprintf(stderr, "overlap-load: %s: %s\n", level == OVL_LOG_ERROR ? "error" : "warning", message);
}

static void on_close(ovl_conn *conn, ovl_close_reason reason, int err)
{
    struct load_slot *s = ovl_conn_user(conn);
    struct load_run *run = s->run;
    struct load_worker *w = worker_of(run, conn);
    bool stopping = phase_of(run) == LOAD_PHASE_STOPPING;
    uint64_t owed = s->stream.sent - s->stream.verified;
    /* The socket is gone by now (ovl_conn_peer would not know the address): name the target. */
    const char *peer = ovl_target_name(run->target);
    s->conn = NULL;
    switch (reason) {
    case OVL_CLOSE_CONNECT_FAILED:
        count_error(run, w, LOAD_ERR_CONNECT, "connect %s: %s", ovl_target_name(run->target), ovl_strerror(err));
        break;
    case OVL_CLOSE_RESET:
        count_error(run, w, LOAD_ERR_RESET, "connection %u to %s: reset by the server (%llu bytes not echoed)",
                    s->index, peer, (unsigned long long)owed);
        break;
    case OVL_CLOSE_ERROR:
    case OVL_CLOSE_IDLE:
    case OVL_CLOSE_STALLED:
    case OVL_CLOSE_REFUSED:
        count_error(run, w, LOAD_ERR_IO, "connection %u to %s: %s", s->index, peer, ovl_strerror(err));
        break;
    case OVL_CLOSE_PEER:
        if (s->failed)
            break;
        if (owed)
            count_error(run, w, LOAD_ERR_SHORT, "connection %u to %s: closed by the server with %llu of %llu bytes "
                        "not echoed", s->index, peer, (unsigned long long)owed, (unsigned long long)s->stream.sent);
        else if (!s->shut)
            count_error(run, w, LOAD_ERR_SERVER_CLOSED, "connection %u to %s: closed by the server", s->index, peer);
        break;
    case OVL_CLOSE_ENGINE_STOP:
        if (!s->failed && owed)
            count_error(run, w, LOAD_ERR_SHORT, "connection %u to %s: %llu bytes sent were never echoed (waited "
                        "%.1f s after the end)", s->index, peer, (unsigned long long)owed, (double)LOAD_PHASES_GRACE_NS / 1e9);
        break;
    case OVL_CLOSE_LOCAL:
        break;
    }
    if (!s->opened_once && reason == OVL_CLOSE_CONNECT_FAILED)
        atomic_fetch_add(&run->phases.failed, 1);
    /* --churn: a connection that ended in good order is replaced on this worker. */
    if (run->options->churn && s->shut && reason == OVL_CLOSE_PEER && !owed && !stopping)
        start_connect(run, s, w);
    atomic_fetch_sub(&run->live, 1);
}

/* Start a connection for slot s (from the main thread, or from a worker for churn). */
static void start_connect(struct load_run *run, struct load_slot *s, struct load_worker *w)
{
    s->generation++;
    s->seed = load_pattern_seed(s->index, s->generation);
    s->connect_started = load_now_ns();
    atomic_fetch_add(&run->live, 1);
    int rc = ovl_connect(run->engine, run->target, &run->callbacks, s);
    if (rc < 0) {
        atomic_fetch_sub(&run->live, 1);
        if (rc == -ESHUTDOWN || phase_of(run) == LOAD_PHASE_STOPPING)
            return;
        count_error(run, w, LOAD_ERR_CONNECT, "connect %s: %s", ovl_target_name(run->target), ovl_strerror(rc));
        if (!s->opened_once)
            atomic_fetch_add(&run->phases.failed, 1);
    }
}

/* ---- the run ---- */

static void sum_counters(struct load_run *run, struct load_result *r)
{
    r->msgs = r->bytes = r->connects = r->window_connects = 0;
    for (int k = 0; k < LOAD_ERR_KINDS; k++)
        r->errors[k] = atomic_load(&run->main_errors[k]);
    r->bytes_total = 0;
    for (int i = 0; i < run->worker_count; i++) {
        struct load_worker *w = &run->workers[i];
        r->bytes_total += load_peek(&w->tally.all_bytes);
        r->msgs += load_peek(&w->tally.msgs);
        r->bytes += load_peek(&w->tally.bytes);
        r->connects += load_peek(&w->connects);
        r->window_connects += load_peek(&w->window_connects);
        for (int k = 0; k < LOAD_ERR_KINDS; k++)
            r->errors[k] += load_peek(&w->errors[k]);
    }
}

static uint64_t published_p99(struct load_run *run)
{
    uint64_t p99 = 0;
    for (int i = 0; i < run->worker_count; i++) {
        uint64_t p = load_peek(&run->workers[i].p99_ns);
        if (p > p99)
            p99 = p;
    }
    return p99;
}

/* --hdr-log: one interval line per series, from the last interval's end to `now`. The workers' cumulative counts
 * are read with relaxed loads: a message recorded while they are read lands in this interval or the next, and
 * after the engine has stopped the last interval takes whatever is left, so the intervals add up to the report. */
static void hdr_tick(struct load_run *run, uint64_t now)
{
    for (int series = 0; series < 2; series++) {
        uint64_t *seen = run->hdr_seen[series], *total = run->hdr_now[series];
        memset(total, 0, LOAD_LOG_COUNTS * sizeof *total);
        for (int i = 0; i < run->worker_count; i++) {
            _Atomic uint64_t *counts = series ? run->workers[i].log_connect : run->workers[i].log_latency;
            for (unsigned k = 0; k < LOAD_LOG_COUNTS; k++)
                total[k] += load_peek(&counts[k]);
        }
        for (unsigned k = 0; k < LOAD_LOG_COUNTS; k++) {
            uint64_t t = total[k];
            total[k] = t - seen[k];
            seen[k] = t;
        }
        load_hdr_writer_interval(run->hdr, series == 1, (double)(run->hdr_last_ns - run->hdr_start_ns) / 1e9,
                                 (double)(now - run->hdr_last_ns) / 1e9, total);
    }
    run->hdr_last_ns = now;
}

/* ---- the hooks of the main thread's phases (load_phases.h) ---- */

static void run_counts(void *model, struct load_phases_counts *counts)
{
    struct load_run *run = model;
    for (int k = 0; k < LOAD_ERR_KINDS; k++)
        counts->errors += atomic_load(&run->main_errors[k]);
    for (int i = 0; i < run->worker_count; i++) {
        struct load_worker *w = &run->workers[i];
        counts->msgs += load_peek(&w->tally.all_msgs);
        counts->bytes += load_peek(&w->tally.all_bytes);
        for (int k = 0; k < LOAD_ERR_KINDS; k++)
            counts->errors += load_peek(&w->errors[k]);
    }
    counts->p99_ns = published_p99(run);
}

static uint64_t run_live(void *model)
{
    int64_t live = atomic_load(&((struct load_run *)model)->live);
    return live > 0 ? (uint64_t)live : 0;
}

/* --hdr-log covers the measured window: it starts with it. */
static void run_entered(void *model, enum load_phase phase, uint64_t now)
{
    struct load_run *run = model;
    if (phase == LOAD_PHASE_MEASURE && run->hdr) {
        load_hdr_writer_start(run->hdr, load_wall_s());
        run->hdr_start_ns = run->hdr_last_ns = now;
    }
}

static void run_tick(void *model, uint64_t now)
{
    hdr_tick(model, now);
}

static const struct load_phases_hooks run_hooks = {.counts = run_counts, .live = run_live, .entered = run_entered,
                                                   .tick = run_tick};

static int setup(struct load_run *run, const struct load_options *o, double rate, struct load_result *result)
{
    run->options = o;
    run->rate = rate;
    run->ns_per_msg = rate > 0 ? 1e9 / rate : 0;
    ovl_error_info err;
    memset(&err, 0, sizeof err);
    if (ovl_target_resolve(&run->target, o->host, o->port, &err) < 0) {
        snprintf(result->first_error, sizeof result->first_error, "%s: %s", err.what, err.text);
        return -1;
    }
    snprintf(result->target, sizeof result->target, "%s", ovl_target_name(run->target));
    ovl_config config = o->engine.config;
    config.log = engine_log;
    config.drain_timeout_ms = 500; /* by engine stop, every connection has ended or been given its grace */
    if (config.threads == 0) /* --threads 0: one per CPU, but never more than connections (load_options_parse) */
        config.threads = load_threads_for_cpus();
    if ((uint32_t)config.threads > o->connections)
        config.threads = (int)o->connections;
    if (ovl_engine_create(&run->engine, &config, &err) < 0 || ovl_engine_start(run->engine, &err) < 0) {
        snprintf(result->first_error, sizeof result->first_error, "%s: %s", err.what, err.text);
        return -1;
    }
    run->worker_count = ovl_engine_threads(run->engine);
    result->threads = run->worker_count;
    snprintf(result->backend, sizeof result->backend, "%s", ovl_engine_backend(run->engine));
    const char *notice = ovl_engine_notice(run->engine);
    snprintf(result->notice, sizeof result->notice, "%s", notice ? notice : "");

    run->workers = calloc(1, (size_t)run->worker_count * sizeof *run->workers);
    run->table = load_pattern_table(o->size);
    run->slots = calloc(1, (size_t)o->connections * sizeof *run->slots);
    if (!run->workers || !run->table || !run->slots) {
        snprintf(result->first_error, sizeof result->first_error, "out of memory");
        return -1;
    }
    if (o->hdr_log) {
        char tag[72];
        hdr_default_tag(o, tag, sizeof tag);
        if (load_hdr_writer_open(&run->hdr, o->hdr_log, tag, result->first_error, sizeof result->first_error) < 0)
            return -1;
        run->hdr_interval_ns = (uint64_t)(o->hdr_interval * 1e9);
        for (int series = 0; series < 2; series++) {
            run->hdr_seen[series] = calloc(1, LOAD_LOG_COUNTS * sizeof(uint64_t));
            run->hdr_now[series] = calloc(1, LOAD_LOG_COUNTS * sizeof(uint64_t));
            if (!run->hdr_seen[series] || !run->hdr_now[series]) {
                snprintf(result->first_error, sizeof result->first_error, "out of memory");
                return -1;
            }
        }
        for (int i = 0; i < run->worker_count; i++) {
            run->workers[i].log_latency = calloc(1, LOAD_LOG_COUNTS * sizeof(_Atomic uint64_t));
            run->workers[i].log_connect = calloc(1, LOAD_LOG_COUNTS * sizeof(_Atomic uint64_t));
            if (!run->workers[i].log_latency || !run->workers[i].log_connect) {
                snprintf(result->first_error, sizeof result->first_error, "out of memory");
                return -1;
            }
        }
    }
    for (int i = 0; i < run->worker_count; i++) {
        run->workers[i].run = run;
        load_histogram_init(&run->workers[i].latency);
        load_histogram_init(&run->workers[i].connect_latency);
        load_histogram_init(&run->workers[i].send_lag);
    }
    /* Rounded to whole cache lines: slots of different workers never share one. */
    size_t slot_size = (sizeof(struct load_slot) + o->pipeline * sizeof(uint64_t) + 63) / 64 * 64;
    for (uint32_t i = 0; i < o->connections; i++) {
        run->slots[i] = calloc(1, slot_size);
        if (!run->slots[i]) {
            snprintf(result->first_error, sizeof result->first_error, "out of memory");
            return -1;
        }
        run->slots[i]->run = run;
        run->slots[i]->index = i;
    }
    run->callbacks = (ovl_callbacks){.on_open = on_open, .on_data = on_data, .on_close = on_close};
    return 0;
}

static void teardown(struct load_run *run)
{
    if (run->engine)
        ovl_engine_destroy(run->engine); /* stops it first if it still runs */
    ovl_target_free(run->target);
    if (run->workers)
        for (int i = 0; i < run->worker_count; i++) {
            free(run->workers[i].log_latency);
            free(run->workers[i].log_connect);
        }
    for (int series = 0; series < 2; series++) {
        free(run->hdr_seen[series]);
        free(run->hdr_now[series]);
    }
    if (run->slots)
        for (uint32_t i = 0; i < run->options->connections; i++)
            free(run->slots[i]);
    free(run->slots);
    free(run->workers);
    free(run->table);
}

/* Slot i's messages echoed in the window, for the fairness figures. */
static uint64_t slot_window_msgs(const void *run, size_t i)
{
    return ((const struct load_run *)run)->slots[i]->stream.window_msgs;
}

int load_run(const struct load_options *o, double rate, struct load_result *result)
{
    memset(result, 0, sizeof *result);
    load_histogram_init(&result->latency);
    load_histogram_init(&result->connect_latency);
    load_histogram_init(&result->send_lag);
    result->rate = rate;
    struct load_run *run = calloc(1, sizeof *run);
    if (!run) {
        snprintf(result->first_error, sizeof result->first_error, "out of memory");
        return -1;
    }
    int status = 0;
    if (setup(run, o, rate, result) < 0) {
        status = -1;
        goto out;
    }

    /* --start-at on the monotonic clock (the wall clock may be stepped while we wait; the schedule must not). */
    if (o->start_at > 0) {
        double ahead = o->start_at - load_wall_s();
        if (ahead > 86400) {
            snprintf(result->first_error, sizeof result->first_error, "--start-at %.3f is %.0f s from now, more "
                     "than a day: check the time given (and this host's clock)", o->start_at, ahead);
            status = -1;
            goto out;
        }
        uint64_t now = load_now_ns();
        uint64_t start_ns = ahead > 0 ? now + (uint64_t)(ahead * 1e9) : now;
        atomic_store(&run->start_ns, start_ns);
        /* The open-loop schedule is fixed now: the slots' timers sleep until their first message instead of
         * looking every millisecond while the connections wait. */
        atomic_store(&run->phases.base_ns, start_ns + load_phases_share_offset_ns(o));
    }

    load_phases_init(&run->phases, o, &run_hooks, run);
    if (run->hdr)
        run->phases.tick_ns = run->hdr_interval_ns; /* an interval line each --hdr-interval of the window */
    uint64_t begin = load_now_ns();

    /* Open the connections, at most --connect-rate per second, and wait until each has opened or failed. */
    for (uint32_t i = 0; i < o->connections; i++) {
        if (o->connect_rate > 0)
            load_phases_wait(&run->phases, begin + (uint64_t)((double)i * 1e9 / o->connect_rate), "connect");
        start_connect(run, run->slots[i], NULL);
    }
    if (!load_phases_open(&run->phases, o->connections, load_now_ns() + LOAD_PHASES_OPEN_TIMEOUT_NS)) {
        load_phases_stop(&run->phases); /* the connects still pending end with the engine */
        ovl_engine_stop(run->engine);
        if (!load_first_error_copy(&run->first_error, result->first_error, sizeof result->first_error))
            snprintf(result->first_error, sizeof result->first_error, "connect %s: no connection within %.0f s",
                     ovl_target_name(run->target), (double)LOAD_PHASES_OPEN_TIMEOUT_NS / 1e9);
        status = -1;
        goto out;
    }

    /* --start-at: the connections are open; wait, sending nothing, until the agreed time. */
    uint64_t now = load_now_ns();
    uint64_t start_ns = atomic_load(&run->start_ns);
    if (start_ns) {
        if (now < start_ns) {
            result->start_wait = (double)(start_ns - now) / 1e9;
            load_phases_progress_restart(&run->phases, now);
            load_phases_wait(&run->phases, start_ns, "waiting");
            now = start_ns;
        } else {
            result->start_late = load_wall_s() - o->start_at;
            if (result->start_late < 0)
                result->start_late = 0;
            fprintf(stderr, "overlap-load: --start-at had passed %.3f s ago when the connections were open: "
                            "starting now\n", result->start_late);
        }
    }
    /* Warm up, measure, stop sending and wait for what is in flight; then the engine stops. */
    uint64_t stop = load_phases_window(&run->phases, o, now, result);
    ovl_engine_stop(run->engine);

    /* The engine has stopped: the workers' histograms are quiet and every counter is final. */
    sum_counters(run, result);
    for (int i = 0; i < run->worker_count; i++) {
        load_histogram_merge(&result->latency, &run->workers[i].latency);
        load_histogram_merge(&result->connect_latency, &run->workers[i].connect_latency);
        load_histogram_merge(&result->send_lag, &run->workers[i].send_lag);
    }
    load_fairness_measure(&result->fairness, o->connections, slot_window_msgs, run);
    load_first_error_copy(&run->first_error, result->first_error, sizeof result->first_error);
    if (run->hdr) {
        /* The engine has stopped: the last interval takes what is left, up to the window's end. */
        hdr_tick(run, stop);
        load_hdr_writer_summary(run->hdr, o, result);
    }
    ovl_stats stats;
    ovl_engine_stats(run->engine, &stats);
    result->reuse_ok = stats.reuse_ok;
    result->reuse_fallback = stats.reuse_fallback;
    result->context_updates = stats.context_updates;
out:
    if (run->hdr) {
        char reason[320];
        if (load_hdr_writer_close(run->hdr, reason, sizeof reason) < 0 && status == 0) {
            snprintf(result->first_error, sizeof result->first_error, "%s", reason);
            status = -1;
        }
        run->hdr = NULL;
    }
    teardown(run);
    free(run);
    return status;
}

/* ---- --once: the seed tutorial's client ---- */

static const char once_message[] = "this is a test";

struct once_state {
    _Atomic int done;
    ovl_close_reason reason;
    int err;
    size_t received;
    bool mismatch;
};

static void once_open(ovl_conn *conn, void *user)
{
    (void)user;
    if (ovl_send_ref(conn, once_message, sizeof once_message - 1) == 0)
        printf("Bytes Sent: %zu\n", sizeof once_message - 1);
    ovl_shutdown(conn);
}

static void once_data(ovl_conn *conn, ovl_buf *buf)
{
    struct once_state *state = ovl_conn_user(conn);
    size_t len = ovl_buf_len(buf);
    const char *data = ovl_buf_data(buf);
    for (size_t i = 0; i < len; i++)
        if (state->received + i >= sizeof once_message - 1 || data[i] != once_message[state->received + i])
            state->mismatch = true;
    state->received += len;
    printf("Bytes received: %zu\n", len);
    ovl_buf_release(buf);
}

static void once_close(ovl_conn *conn, ovl_close_reason reason, int err)
{
    struct once_state *state = ovl_conn_user(conn);
    state->reason = reason;
    state->err = err;
    if (reason == OVL_CLOSE_PEER)
        printf("Connection closed\n");
    atomic_store(&state->done, 1);
}

int load_once(const struct load_options *o)
{
    ovl_error_info err;
    memset(&err, 0, sizeof err);
    ovl_target *target = NULL;
    if (ovl_target_resolve(&target, o->host, o->port, &err) < 0) {
        fprintf(stderr, "overlap-load: %s: %s\n", err.what, err.text);
        return 1;
    }
    ovl_config config = o->engine.config;
    config.threads = 1; /* one connection */
    config.log = engine_log;
    ovl_engine *engine = NULL;
    if (ovl_engine_create(&engine, &config, &err) < 0 || ovl_engine_start(engine, &err) < 0) {
        fprintf(stderr, "overlap-load: %s: %s\n", err.what, err.text);
        ovl_engine_destroy(engine);
        ovl_target_free(target);
        return 1;
    }
    struct once_state state;
    memset(&state, 0, sizeof state);
    static const ovl_callbacks callbacks = {.on_open = once_open, .on_data = once_data, .on_close = once_close};
    int rc = ovl_connect(engine, target, &callbacks, &state);
    uint64_t deadline = load_now_ns() + 10000000000ull;
    while (rc == 0 && !atomic_load(&state.done) && load_now_ns() < deadline)
        load_sleep_until(load_now_ns() + 1000000);
    bool done = rc == 0 && atomic_load(&state.done);
    ovl_engine_stop(engine); /* after this the callbacks are over and state is stable */
    fflush(stdout);
    int status = 1;
    if (rc < 0)
        fprintf(stderr, "overlap-load: connect %s: %s\n", ovl_target_name(target), ovl_strerror(rc));
    else if (!done)
        fprintf(stderr, "overlap-load: %s: the server did not close the connection within 10 s\n",
                ovl_target_name(target));
    else if (state.reason == OVL_CLOSE_CONNECT_FAILED)
        fprintf(stderr, "overlap-load: connect %s: %s\n", ovl_target_name(target), ovl_strerror(state.err));
    else if (state.reason != OVL_CLOSE_PEER)
        fprintf(stderr, "overlap-load: %s: %s%s%s\n", ovl_target_name(target), ovl_close_reason_name(state.reason),
                state.err ? ": " : "", state.err ? ovl_strerror(state.err) : "");
    else if (state.mismatch || state.received != sizeof once_message - 1)
        fprintf(stderr, "overlap-load: %s: the echo differs from what was sent (%zu bytes back)\n",
                ovl_target_name(target), state.received);
    else
        status = 0;
    ovl_engine_destroy(engine);
    ovl_target_free(target);
    return status;
}
