/*
 * proxy_main.c - overlap-proxy: a TCP forwarding proxy on liboverlap. Each accepted client connection gets its own
 * upstream connection to --to, opened from the client's on_open so both live on the same worker thread; bytes are
 * passed between them in the buffers they arrived in (zero copy), with backpressure in both directions and
 * half-close carried through. docs/PROXY.md describes the design.
 */
#include "overlap.h"
#include "proxy_options.h"
#include "metrics_http.h"
#include "stop_signal.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef _WIN32
#define CODE_LABEL "error"
#else
#define CODE_LABEL "errno"
#endif

/* What every pair needs to know, shared read-only by all workers once the engine runs. */
struct proxy {
    ovl_engine *engine;
    ovl_target *target;
    const char *to;     /* --to as given, for messages */
    size_t max_pending; /* bytes queued towards one side at which the other side stops being read */
};

enum { CLIENT = 0, UPSTREAM = 1 };

struct pair;

/* One connection of a pair. Its ovl_conn's user pointer points here. */
struct side {
    struct pair *pair;
    ovl_conn *conn; /* NULL before the upstream connection opens and after on_close */
    bool paused;    /* we stopped reading it: the other side's send queue (or the hold list) is full */
    bool eof;       /* its peer shut down its write side */
    bool closed;    /* on_close ran, or never will (ovl_connect failed) */
};

/* A client connection and its upstream connection. Freed when both have closed. */
struct pair {
    struct proxy *proxy;
    struct side sides[2];
    /* Client bytes that arrived before the upstream connection opened, in order. Bounded: the client is paused at
     * max_pending bytes; the array grows only for the receive the engine may deliver after a pause. */
    ovl_buf **held;
    size_t held_count, held_capacity, held_bytes;
};

static struct side *other_side(struct side *side)
{
    return &side->pair->sides[side == &side->pair->sides[CLIENT] ? UPSTREAM : CLIENT];
}

static const char *side_name(const struct side *side)
{
    return side == &side->pair->sides[CLIENT] ? "client" : "upstream";
}

static void release_held(struct pair *pair)
{
    for (size_t i = 0; i < pair->held_count; i++)
        ovl_buf_release(pair->held[i]);
    pair->held_count = 0;
    pair->held_bytes = 0;
}

static void free_pair_if_done(struct pair *pair)
{
    if (!pair->sides[CLIENT].closed || !pair->sides[UPSTREAM].closed)
        return;
    release_held(pair);
    free(pair->held);
    free(pair);
}

/* Stop reading `side` (the other one cannot take more now). on_drain of the other side, or the upstream opening,
 * resumes it. */
static void pause_side(struct side *side)
{
    if (side->paused || !side->conn)
        return;
    if (ovl_recv_pause(side->conn) == 0)
        side->paused = true;
}

static void resume_side(struct side *side)
{
    if (!side->paused || !side->conn)
        return;
    side->paused = false;
    ovl_recv_resume(side->conn); /* -ENOTCONN: it is closing, nothing left to resume */
}

/* Keep a client buffer until the upstream connection opens. */
static void hold(struct side *client, ovl_buf *buf)
{
    struct pair *pair = client->pair;
    if (pair->held_count == pair->held_capacity) {
        size_t capacity = pair->held_capacity ? pair->held_capacity * 2 : 8;
        ovl_buf **grown = realloc(pair->held, capacity * sizeof *grown);
        if (!grown) {
            fprintf(stderr, "overlap-proxy: client %s: out of memory holding bytes for %s; closing\n",
                    ovl_conn_peer(client->conn), pair->proxy->to);
            ovl_buf_release(buf);
            ovl_close(client->conn);
            return;
        }
        pair->held = grown;
        pair->held_capacity = capacity;
    }
    pair->held[pair->held_count++] = buf;
    pair->held_bytes += ovl_buf_len(buf);
    /* Also by count: a client trickling 1-byte writes must not grow the list without end. */
    if (pair->held_bytes >= pair->proxy->max_pending || pair->held_count >= 64)
        pause_side(client);
}

/* ---- both sides ---- */

static void side_data(ovl_conn *conn, ovl_buf *buf)
{
    struct side *from = ovl_conn_user(conn);
    struct side *to = other_side(from);
    if (!to->conn) {
        if (!to->closed)
            hold(from, buf); /* only the client side can get here: the upstream is still connecting */
        else
            ovl_buf_release(buf); /* the other side is gone and this one is being closed */
        return;
    }
    /* Zero copy: the buffer joins the other connection's send queue and returns to the pool once sent. A failure
     * (-EPIPE: the other side is closing) has released it; that side's on_close ends this one. */
    if (ovl_send_buf(to->conn, buf) == 0 && ovl_conn_pending(to->conn) >= from->pair->proxy->max_pending)
        pause_side(from);
}

/* The peer of `from` will send no more: pass the EOF on once everything it sent has gone out the other side. */
static void side_eof(ovl_conn *conn)
{
    struct side *from = ovl_conn_user(conn);
    struct side *to = other_side(from);
    from->eof = true;
    if (to->conn)
        ovl_shutdown(to->conn); /* after its queue drains; -ENOTCONN when it is closing already */
    else if (to->closed)
        ovl_shutdown(conn); /* nothing can come back from a side that is gone: finish this one normally */
    /* else the upstream is still connecting: upstream_open sends the held bytes, then shuts it down */
}

/* Everything queued on `conn` has gone: the side feeding it may be read again. */
static void side_drain(ovl_conn *conn)
{
    struct side *to = ovl_conn_user(conn);
    resume_side(other_side(to));
}

static void side_close(ovl_conn *conn, ovl_close_reason reason, int err)
{
    struct side *side = ovl_conn_user(conn);
    if (!side)
        return; /* a client whose pair could not be allocated */
    struct pair *pair = side->pair;
    struct side *other = other_side(side);
    if (reason == OVL_CLOSE_CONNECT_FAILED)
        fprintf(stderr, "overlap-proxy: connect %s: %s (" CODE_LABEL " %d)\n", pair->proxy->to, ovl_strerror(err),
                -err);
    else if (reason == OVL_CLOSE_ERROR)
        fprintf(stderr, "overlap-proxy: %s %s: %s (" CODE_LABEL " %d)\n", side_name(side), ovl_conn_peer(conn),
                ovl_strerror(err), -err);
    side->conn = NULL;
    side->closed = true;
    side->paused = false;
    /* A normal end (both directions finished) leaves the other side to finish its own queue; so does the engine's
     * stop, which drains every connection itself. Anything else (reset, error, connect failure, idle timeout, a
     * close of ours) means the bytes in flight cannot all arrive: end the other side now. */
    if (other->conn && reason != OVL_CLOSE_PEER && reason != OVL_CLOSE_ENGINE_STOP)
        ovl_close(other->conn);
    else if (other->paused)
        resume_side(other); /* nothing will drain towards us any more */
    if (side == &pair->sides[UPSTREAM] || other->closed)
        release_held(pair);
    free_pair_if_done(pair);
}

/* ---- the upstream side ---- */

static void upstream_open(ovl_conn *conn, void *user)
{
    struct side *upstream = user;
    struct pair *pair = upstream->pair;
    struct side *client = &pair->sides[CLIENT];
    upstream->conn = conn;
    /* The bytes queued here come from the client, not from this connection's own input: the engine's automatic
     * pause would stop reading the upstream's replies while the client waits for them (see overlap.h). */
    ovl_conn_set_max_pending(conn, 0);
    if (client->closed) {
        ovl_close(conn);
        return;
    }
    for (size_t i = 0; i < pair->held_count; i++)
        ovl_send_buf(conn, pair->held[i]);
    pair->held_count = 0;
    pair->held_bytes = 0;
    if (client->eof)
        ovl_shutdown(conn);
    if (ovl_conn_pending(conn) < pair->proxy->max_pending)
        resume_side(client);
    /* else on_drain resumes it */
}

static const ovl_callbacks upstream_callbacks = {
    .on_open = upstream_open,
    .on_data = side_data,
    .on_eof = side_eof,
    .on_drain = side_drain,
    .on_close = side_close,
};

/* ---- the client side ---- */

static void client_open(ovl_conn *conn, void *user)
{
    struct proxy *proxy = user;
    struct pair *pair = calloc(1, sizeof *pair);
    if (!pair) {
        fprintf(stderr, "overlap-proxy: client %s: out of memory; closing\n", ovl_conn_peer(conn));
        ovl_conn_set_user(conn, NULL);
        ovl_close(conn);
        return;
    }
    pair->proxy = proxy;
    pair->sides[CLIENT].pair = pair;
    pair->sides[CLIENT].conn = conn;
    pair->sides[UPSTREAM].pair = pair;
    ovl_conn_set_user(conn, &pair->sides[CLIENT]);
    ovl_conn_set_max_pending(conn, 0);
    /* Called on this worker's thread, so the upstream connection belongs to the same worker: buffers pass between
     * the two without a copy and their callbacks never run concurrently. */
    int rc = ovl_connect(proxy->engine, proxy->target, &upstream_callbacks, &pair->sides[UPSTREAM]);
    if (rc < 0) {
        /* -ENOMEM, or -ESHUTDOWN when a stop request came between the accept and now. */
        fprintf(stderr, "overlap-proxy: connect %s: %s (" CODE_LABEL " %d)\n", proxy->to, ovl_strerror(rc), -rc);
        pair->sides[UPSTREAM].closed = true; /* no on_close will come for it */
        ovl_close(conn);
    }
}

static const ovl_callbacks client_callbacks = {
    .on_open = client_open,
    .on_data = side_data,
    .on_eof = side_eof,
    .on_drain = side_drain,
    .on_close = side_close,
};

/* ---- the program ---- */

/* The engine's log hook: on a worker thread; one line per call. */
static void engine_log(void *user, ovl_log_level level, const char *message)
{
    (void)user;
    fprintf(stderr, "overlap-proxy: %s: %s\n", level == OVL_LOG_ERROR ? "error" : "warning", message);
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void print_error(const ovl_error_info *err, int rc, const char *operation)
{
    if (err->what[0])
        fprintf(stderr, "overlap-proxy: %s: %s (" CODE_LABEL " %d)\n", err->what, err->text, -err->code);
    else
        fprintf(stderr, "overlap-proxy: %s: %s (" CODE_LABEL " %d)\n", operation, ovl_strerror(rc), -rc);
}

static void print_stats_line(const ovl_stats *now, const ovl_stats *before, double seconds)
{
    printf("open %llu  clients %llu  connect failures %llu  MB/s in %.2f  resets %llu  errors %llu\n",
           (unsigned long long)now->conns_open, (unsigned long long)now->conns_accepted,
           (unsigned long long)now->connect_failures,
           (double)(now->bytes_in - before->bytes_in) / seconds / 1e6, (unsigned long long)now->resets,
           (unsigned long long)now->errors);
}

int main(int argc, char **argv)
{
#ifdef _WIN32
    /* The C runtime has no line buffering (_IOLBF is full buffering, and a size under 2 is refused): unbuffered,
     * so a pipe or file sees each line when it is printed, not at exit. */
    setvbuf(stdout, NULL, _IONBF, 0);
#else
    setvbuf(stdout, NULL, _IOLBF, 0);
#endif
    struct proxy_options options;
    char reason[300];
    if (proxy_options_parse(argc, argv, &options, reason, sizeof reason) < 0) {
        fprintf(stderr, "overlap-proxy: %s\n%s", reason, proxy_usage);
        return 2;
    }
    if (options.help) {
        fputs(proxy_usage, stdout);
        return 0;
    }
    if (options.version) {
        printf("overlap-proxy %s\n", ovl_version());
        return 0;
    }
    /* The stop request (SIGINT/SIGTERM, Ctrl+C) is taken by this thread; the workers never see it. */
    if (stop_signal_install() < 0) {
        fprintf(stderr, "overlap-proxy: cannot install the stop signal handlers\n");
        return 1;
    }

    struct proxy proxy = {.to = options.to, .max_pending = options.max_pending};
    ovl_error_info err;
    memset(&err, 0, sizeof err);
    /* Resolved once: a resolver that is slow or down must not stall every new client. */
    int rc = ovl_target_resolve(&proxy.target, options.to_host, options.to_port, &err);
    if (rc < 0) {
        print_error(&err, rc, "resolve");
        return 1;
    }

    ovl_config config = options.engine.config;
    config.log = engine_log;
    config.max_conns = options.max_conns * 2; /* the engine counts the client and the upstream connection */
    rc = ovl_engine_create(&proxy.engine, &config, &err);
    if (rc < 0) {
        print_error(&err, rc, "engine");
        ovl_target_free(proxy.target);
        return 1;
    }
    ovl_listener *listener = NULL;
    rc = ovl_listen(proxy.engine, options.host, options.listen_port, &client_callbacks, &proxy, &listener, &err);
    const char *self = NULL;
    if (rc >= 0 && ovl_target_reaches(proxy.target, listener, &self)) {
        /* Every client would open a connection to the proxy itself, which would open another, until no
         * descriptor is left. */
        fprintf(stderr, "overlap-proxy: --to %s reaches this proxy's own listening address %s: a forwarding loop; "
                "refusing to start\n", options.to, self);
        ovl_engine_destroy(proxy.engine);
        ovl_target_free(proxy.target);
        return 2;
    }
    if (rc >= 0)
        rc = ovl_engine_start(proxy.engine, &err);
    if (rc < 0) {
        print_error(&err, rc, "listen");
        ovl_engine_destroy(proxy.engine);
        ovl_target_free(proxy.target);
        return 1;
    }
    if (ovl_engine_notice(proxy.engine))
        fprintf(stderr, "overlap-proxy: %s\n", ovl_engine_notice(proxy.engine));
    char threads[128];
    engine_options_describe_threads(&options.engine, ovl_engine_threads(proxy.engine), ovl_cpu_count(), threads,
                                    sizeof threads);
    printf("overlap-proxy %s: %s backend, %s, forwarding to %s\n", ovl_version(), ovl_engine_backend(proxy.engine),
           threads, ovl_target_name(proxy.target));
    for (int i = 0; i < ovl_listener_count(listener); i++)
        printf("listening on %s\n", ovl_listener_address(listener, i));
    struct metrics_server *metrics = NULL;
    if (options.engine.metrics_port[0]) {
        rc = metrics_start(&metrics, proxy.engine, "overlap-proxy", options.engine.metrics_host,
                           options.engine.metrics_port, &err);
        if (rc < 0) {
            print_error(&err, rc, "metrics");
            ovl_engine_destroy(proxy.engine);
            ovl_target_free(proxy.target);
            return 1;
        }
        printf("metrics on http://%s/metrics\n", metrics_address(metrics));
    }

    double started = now_seconds(), last = started;
    ovl_stats before;
    ovl_engine_stats(proxy.engine, &before);
    int signal_number = 0;
    while (!signal_number) {
        double wait = options.stats_interval > 0 ? options.stats_interval - (now_seconds() - last) : 3600;
        signal_number = stop_signal_wait(wait);
        if (!signal_number && options.stats_interval > 0 && now_seconds() - last >= options.stats_interval) {
            ovl_stats now;
            ovl_engine_stats(proxy.engine, &now);
            double current = now_seconds();
            print_stats_line(&now, &before, current - last);
            before = now;
            last = current;
        }
    }

    fprintf(stderr, "overlap-proxy: %s: stopping, finishing open connections\n", stop_signal_name(signal_number));
    ovl_engine_stop(proxy.engine);
    ovl_stats total;
    ovl_engine_stats(proxy.engine, &total);
    printf("overlap-proxy: stopped after %.1f s: clients %llu, refused %llu, upstream connected %llu, connect "
           "failures %llu, resets %llu, errors %llu, bytes in %llu, bytes out %llu\n",
           now_seconds() - started, (unsigned long long)total.conns_accepted,
           (unsigned long long)total.conns_refused, (unsigned long long)total.conns_connected,
           (unsigned long long)total.connect_failures, (unsigned long long)total.resets,
           (unsigned long long)total.errors, (unsigned long long)total.bytes_in,
           (unsigned long long)total.bytes_out);
    metrics_stop(metrics);
    ovl_engine_destroy(proxy.engine);
    ovl_target_free(proxy.target);
    fflush(stdout);
    stop_signal_done(); /* a console close waits for this, not a fixed time */
    return 0;
}
