/*
 * echo_main.c - overlap-echo: the console echo server. Every byte received is sent back on the same connection,
 * from the buffer it arrived in.
 */
#include "echo_options.h"
#include "metrics_http.h"
#include "overlap.h"
#include "service_notify.h"
#include "stop_signal.h"
#ifdef _WIN32
#include "service_win.h"
#endif

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#ifndef _WIN32
#include <unistd.h>
#endif
#include <string.h>
#include <time.h>

/* Where the server's lines go: stdout (reports) and stderr (problems), or both into the --log-file. A stream per
 * kind rather than freopen: a Windows service has no standard handles, and the C runtime cannot reopen stdout
 * there (Wine's freopen refuses a stream without a descriptor). */
static FILE *report_stream, *problem_stream;

/* Every line is flushed at once: a reader (a test, a log shipper, a tail -f) sees it as it happens, and nothing is
 * lost when the process is ended. */
#if defined(__MINGW32__)
__attribute__((format(__MINGW_PRINTF_FORMAT, 2, 3)))
#elif defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void emit(FILE *stream, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vfprintf(stream, format, args);
    va_end(args);
    fflush(stream);
}

/* A problem line: to problem_stream, and to the service manager, which keeps the lines of a start that fails (the
 * Windows service reports them in the Event Log; a service's --log-file may be where the failure is). */
#if defined(__MINGW32__)
__attribute__((format(__MINGW_PRINTF_FORMAT, 1, 2)))
#elif defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static void problem(const char *format, ...)
{
    char line[1024];
    va_list args;
    va_start(args, format);
    vsnprintf(line, sizeof line, format, args);
    va_end(args);
    emit(problem_stream, "%s", line);
    service_notify_problem(line);
}

/* The engine's log hook: on a worker thread; one formatted line per call, which stdio writes whole. */
static void engine_log(void *user, ovl_log_level level, const char *message)
{
    (void)user;
    problem("overlap-echo: %s: %s\n", level == OVL_LOG_ERROR ? "error" : "warning", message);
}

static void echo_data(ovl_conn *conn, ovl_buf *buf)
{
    /* Zero copy: the received buffer goes back out as it is and returns to the pool when the send completes.
     * A failure (connection already closing) has released the buffer; the close path reports the cause. */
    ovl_send_buf(conn, buf);
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void print_error(const ovl_error_info *err)
{
#ifdef _WIN32
    problem("overlap-echo: %s: %s (error %d)\n", err->what, err->text, -err->code);
#else
    problem("overlap-echo: %s: %s (errno %d)\n", err->what, err->text, -err->code);
#endif
}

static void print_stats_line(const ovl_stats *now, const ovl_stats *before, double seconds, bool json)
{
    double msgs = (double)(now->msgs_in - before->msgs_in) / seconds;
    double megabytes = (double)(now->bytes_in - before->bytes_in) / seconds / 1e6;
    if (json) {
        /* Every counter (OVL_STATS_FIELDS, so none can be left out), cumulative, plus the interval's rates: a
         * collector can derive anything else. */
        char line[2048];
        size_t used = (size_t)snprintf(line, sizeof line, "{\"interval_s\":%.3f,\"msgs_per_s\":%.1f,\"mb_per_s\":%.3f",
                                       seconds, msgs, megabytes);
#define ECHO_JSON_FIELD(name, kind, help)                                                                            \
    if (used < sizeof line)                                                                                          \
        used += (size_t)snprintf(line + used, sizeof line - used, ",\"" #name "\":%llu", (unsigned long long)now->name);
        OVL_STATS_FIELDS(ECHO_JSON_FIELD)
#undef ECHO_JSON_FIELD
        emit(report_stream, "%s}\n", line);
        return;
    }
    emit(report_stream,
         "open %llu  accepted %llu  msgs/s %.0f  MB/s %.2f  resets %llu  errors %llu  idle closed %llu\n",
         (unsigned long long)now->conns_open, (unsigned long long)now->conns_accepted, msgs, megabytes,
         (unsigned long long)now->resets, (unsigned long long)now->errors,
         (unsigned long long)now->idle_closed);
}

/* "listening on A, B" for the service manager's status line. */
static void describe_listeners(const ovl_listener *listener, char *out, size_t cap)
{
    size_t used = (size_t)snprintf(out, cap, "listening on");
    for (int i = 0; i < ovl_listener_count(listener) && used < cap; i++)
        used += (size_t)snprintf(out + used, cap - used, "%s %s", i ? "," : "", ovl_listener_address(listener, i));
}

/* Run the server until `wait_stop` reports a stop request (a signal, Ctrl+C, or the Windows SCM), drain, and
 * return the exit code. */
static int serve(const struct echo_options *options, int (*wait_stop)(double seconds),
                 const char *(*stop_name)(int which))
{
    ovl_config config = options->engine.config;
    config.log = engine_log;

    ovl_error_info err;
    memset(&err, 0, sizeof err);
    ovl_engine *engine = NULL;
    if (ovl_engine_create(&engine, &config, &err) < 0) {
        print_error(&err);
        return 1;
    }
    static const ovl_callbacks echo_callbacks = {.on_data = echo_data};
    ovl_listener *listeners[8] = {NULL};
    int listener_count = 0;
    /* systemd socket activation: the sockets it passed, instead of --host/--port (it keeps them across restarts). */
    int activated = service_listen_fds();
    for (int i = 0; i < activated; i++) {
        int fd = SERVICE_LISTEN_FDS_START + i;
        if (listener_count < 8 &&
            ovl_listen_socket(engine, fd, &echo_callbacks, NULL, &listeners[listener_count], &err) == 0) {
            listener_count++;
            continue;
        }
        if (listener_count < 8)
            print_error(&err);
        else
            problem("overlap-echo: socket %d from the service manager: more than 8; closed\n", fd);
#ifndef _WIN32
        close(fd); /* not served: no connection may wait on it in vain (Windows passes no sockets) */
#endif
    }
    if (activated > 0 && listener_count == 0) {
        ovl_engine_destroy(engine);
        return 1;
    }
    if (!activated && ovl_listen(engine, options->host, options->port, &echo_callbacks, NULL,
                                 &listeners[listener_count++], &err) < 0) {
        print_error(&err);
        ovl_engine_destroy(engine);
        return 1;
    }
    if (ovl_engine_start(engine, &err) < 0) {
        print_error(&err);
        ovl_engine_destroy(engine);
        return 1;
    }
    if (ovl_engine_notice(engine))
        problem("overlap-echo: %s\n", ovl_engine_notice(engine));
    char threads[128];
    engine_options_describe_threads(&options->engine, ovl_engine_threads(engine), ovl_cpu_count(), threads,
                                    sizeof threads);
    emit(report_stream, "overlap-echo %s: %s backend, %s\n", ovl_version(), ovl_engine_backend(engine), threads);
    if (activated)
        emit(report_stream, "overlap-echo: %d listening socket%s from the service manager (socket activation)\n",
             listener_count, listener_count == 1 ? "" : "s");
    for (int l = 0; l < listener_count; l++)
        for (int i = 0; i < ovl_listener_count(listeners[l]); i++)
            emit(report_stream, "listening on %s\n", ovl_listener_address(listeners[l], i));
    struct metrics_server *metrics = NULL;
    if (options->engine.metrics_port[0]) {
        const struct engine_options *engine_options = &options->engine;
        if (metrics_start(&metrics, engine, "overlap-echo", engine_options->metrics_host, engine_options->metrics_port,
                          &err) < 0) {
            print_error(&err);
            ovl_engine_destroy(engine);
            return 1;
        }
        emit(report_stream, "metrics on http://%s/metrics\n", metrics_address(metrics));
    }
    char status[512];
    describe_listeners(listeners[0], status, sizeof status);
    /* Only now: every listener accepts, so a unit ordered after this one can connect at once. */
    service_notify_ready(status);

    double started = now_seconds(), last = started;
    ovl_stats before;
    ovl_engine_stats(engine, &before);
    int signal_number = 0;
    while (!signal_number) {
        double wait = options->stats_interval > 0 ? options->stats_interval - (now_seconds() - last) : 3600;
        int which = wait_stop(wait);
        if (which) {
            signal_number = which;
        } else if (options->stats_interval > 0 && now_seconds() - last >= options->stats_interval) {
            ovl_stats now;
            ovl_engine_stats(engine, &now);
            double current = now_seconds();
            print_stats_line(&now, &before, current - last, options->stats_json);
            snprintf(status, sizeof status, "open %llu, accepted %llu, msgs/s %.0f",
                     (unsigned long long)now.conns_open, (unsigned long long)now.conns_accepted,
                     (double)(now.msgs_in - before.msgs_in) / (current - last));
            service_notify_status(status);
            before = now;
            last = current;
        }
    }

    problem("overlap-echo: %s: stopping, finishing open connections\n", stop_name(signal_number));
    ovl_stats at_stop;
    ovl_engine_stats(engine, &at_stop);
    snprintf(status, sizeof status, "%s: draining %llu open connection%s", stop_name(signal_number),
             (unsigned long long)at_stop.conns_open, at_stop.conns_open == 1 ? "" : "s");
    /* drain_timeout_ms 0 means the engine's default, 5 s (overlap.h). */
    service_notify_stopping(status, config.drain_timeout_ms ? config.drain_timeout_ms / 1000.0 : 5.0, engine);
    ovl_engine_stop(engine);
    service_notify_drained();
    ovl_stats total;
    ovl_engine_stats(engine, &total);
    emit(report_stream, "overlap-echo: stopped after %.1f s: accepted %llu, refused %llu, resets %llu, errors %llu, "
         "msgs in %llu, bytes in %llu, bytes out %llu\n",
         now_seconds() - started, (unsigned long long)total.conns_accepted,
         (unsigned long long)total.conns_refused, (unsigned long long)total.resets,
         (unsigned long long)total.errors, (unsigned long long)total.msgs_in,
         (unsigned long long)total.bytes_in, (unsigned long long)total.bytes_out);
    if (total.bytes_discarded)
        emit(report_stream, "overlap-echo: %llu bytes sent after the stop, as our FIN was on its way, discarded\n",
             (unsigned long long)total.bytes_discarded);
    if (total.idle_closed)
        emit(report_stream, "overlap-echo: %llu idle connection%s closed\n", (unsigned long long)total.idle_closed,
             total.idle_closed == 1 ? "" : "s");
    if (total.stalled_closed)
        emit(report_stream, "overlap-echo: %llu stalled connection%s closed (the peer did not read)\n",
             (unsigned long long)total.stalled_closed, total.stalled_closed == 1 ? "" : "s");
    if (total.stop_abandoned)
        emit(report_stream, "overlap-echo: %llu operation%s abandoned at the stop's hard deadline (their "
             "cancellation never completed)\n", (unsigned long long)total.stop_abandoned,
             total.stop_abandoned == 1 ? "" : "s");
    if (total.reuse_ok || total.reuse_fallback || total.context_updates)
        emit(report_stream,
             "overlap-echo: socket reuse: %llu reused, %llu fallbacks to a fresh socket, %llu context updates\n",
             (unsigned long long)total.reuse_ok, (unsigned long long)total.reuse_fallback,
             (unsigned long long)total.context_updates);
    metrics_stop(metrics);
    ovl_engine_destroy(engine);
    return 0;
}

/* --log-file: one stream for reports and problems, so their lines keep their order. Opened in append mode: an
 * operator's earlier runs stay, and a restarted service continues the same file. */
static int open_log_file(const char *path, char *reason, size_t reason_size)
{
    FILE *log = fopen(path, "a");
    if (!log) {
        int code = errno;
        snprintf(reason, reason_size, "--log-file %s: %s (errno %d)", path, strerror(code), code);
        fprintf(stderr, "overlap-echo: %s\n", reason);
        return -1;
    }
    report_stream = problem_stream = log;
    return 0;
}

int main(int argc, char **argv)
{
    report_stream = stdout;
    problem_stream = stderr;
    struct echo_options options;
    char reason[512];
    /* install writes --service first. Started by the SCM, a failure from here until the dispatcher connects would
     * leave no trace (no console, no log file yet): it is handed to the SCM, which then sees the service stop
     * with the exit code, and to the Event Log. */
    bool under_scm = argc > 1 && !strcmp(argv[1], "--service");
    (void)under_scm;
    if (echo_options_parse(argc, argv, &options, reason, sizeof reason) < 0) {
        fprintf(stderr, "overlap-echo: %s\n%s", reason, echo_usage);
#ifdef _WIN32
        if (under_scm)
            return service_win_fail(2, reason);
#endif
        return 2;
    }
    if (options.help) {
        fputs(echo_usage, stdout);
        return 0;
    }
    if (options.version) {
        printf("overlap-echo %s\n", ovl_version());
        return 0;
    }
#ifdef _WIN32
    if (options.command == ECHO_COMMAND_INSTALL)
        return service_win_install(argc, argv, &options);
    if (options.command == ECHO_COMMAND_UNINSTALL)
        return service_win_uninstall(options.service_name);
#else
    if (options.command != ECHO_COMMAND_SERVE || options.service) {
        const char *what = options.command == ECHO_COMMAND_INSTALL     ? "install"
                           : options.command == ECHO_COMMAND_UNINSTALL ? "uninstall"
                                                                       : "--service";
        fprintf(stderr, "overlap-echo: %s: the Windows service is only on Windows; on Linux run overlap-echo as a "
                        "systemd service: use contrib/overlap-echo.service (docs/OPERATING.md)\n", what);
        return 2;
    }
#endif
    /* install's own output stays on the console; the server's goes to the file from here on. */
    if (options.log_file && open_log_file(options.log_file, reason, sizeof reason) < 0) {
#ifdef _WIN32
        if (options.service)
            return service_win_fail(1, reason);
#endif
        return 1;
    }
#ifdef _WIN32
    /* The SCM's stop and shutdown controls take the place of Ctrl+C; a service has no console. */
    if (options.service)
        return service_win_run(&options, serve, problem_stream);
#endif

    /* The stop request (SIGINT/SIGTERM, Ctrl+C) is taken by this thread; the workers never see it. */
    if (stop_signal_install() < 0) {
        problem("overlap-echo: cannot install the stop signal handlers\n");
        return 1;
    }
    int code = serve(&options, stop_signal_wait, stop_signal_name);
    stop_signal_done();
    return code;
}
