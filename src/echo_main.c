/*
 * echo_main.c - overlap-echo: the console echo server. Every byte received is sent back on the same connection,
 * from the buffer it arrived in.
 */
#include "echo_options.h"
#include "overlap.h"
#include "stop_signal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
    fprintf(stderr, "overlap-echo: %s: %s (error %d)\n", err->what, err->text, -err->code);
#else
    fprintf(stderr, "overlap-echo: %s: %s (errno %d)\n", err->what, err->text, -err->code);
#endif
}

static void print_stats_line(const ovl_stats *now, const ovl_stats *before, double seconds, bool json)
{
    double msgs = (double)(now->msgs_in - before->msgs_in) / seconds;
    double megabytes = (double)(now->bytes_in - before->bytes_in) / seconds / 1e6;
    if (json) {
        /* Every counter, cumulative, plus the interval's rates: a collector can derive anything else. */
        printf("{\"interval_s\":%.3f,\"msgs_per_s\":%.1f,\"mb_per_s\":%.3f,\"conns_open\":%llu,"
               "\"conns_accepted\":%llu,\"conns_closed\":%llu,\"conns_refused\":%llu,\"resets\":%llu,"
               "\"errors\":%llu,\"idle_closed\":%llu,\"bytes_in\":%llu,\"bytes_out\":%llu,\"msgs_in\":%llu,"
               "\"msgs_out\":%llu,\"recv_nobufs\":%llu,\"recv_pauses\":%llu,\"reuse_ok\":%llu,"
               "\"reuse_fallback\":%llu}\n",
               seconds, msgs, megabytes, (unsigned long long)now->conns_open,
               (unsigned long long)now->conns_accepted, (unsigned long long)now->conns_closed,
               (unsigned long long)now->conns_refused, (unsigned long long)now->resets,
               (unsigned long long)now->errors, (unsigned long long)now->idle_closed,
               (unsigned long long)now->bytes_in, (unsigned long long)now->bytes_out,
               (unsigned long long)now->msgs_in, (unsigned long long)now->msgs_out,
               (unsigned long long)now->recv_nobufs, (unsigned long long)now->recv_pauses,
               (unsigned long long)now->reuse_ok, (unsigned long long)now->reuse_fallback);
        return;
    }
    printf("open %llu  accepted %llu  msgs/s %.0f  MB/s %.2f  resets %llu  errors %llu  idle closed %llu\n",
           (unsigned long long)now->conns_open, (unsigned long long)now->conns_accepted, msgs, megabytes,
           (unsigned long long)now->resets, (unsigned long long)now->errors,
           (unsigned long long)now->idle_closed);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct echo_options options;
    char reason[256];
    if (echo_options_parse(argc, argv, &options, reason, sizeof reason) < 0) {
        fprintf(stderr, "overlap-echo: %s\n%s", reason, echo_usage);
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

    /* The stop request (SIGINT/SIGTERM, Ctrl+C) is taken by this thread; the workers never see it. */
    if (stop_signal_install() < 0) {
        fprintf(stderr, "overlap-echo: cannot install the stop signal handlers\n");
        return 1;
    }

    ovl_config config;
    ovl_config_init(&config);
    config.threads = options.threads;
    config.max_conns = options.max_conns;
    config.buffer_size = options.buffer_size;
    config.buffer_count = options.buffer_count;
    config.max_pending = options.max_pending;
    config.backend = options.backend;
    config.zero_byte_receive = options.zero_byte_receive;
    config.drain_timeout_ms = (uint32_t)(options.drain_timeout * 1000.0);
    /* Rounded up (no libm): a tiny positive value must not turn into 0, which means "off". At most 86400 s. */
    double idle_ms = options.idle_timeout * 1000.0;
    config.idle_timeout_ms = (uint32_t)idle_ms;
    if ((double)config.idle_timeout_ms < idle_ms)
        config.idle_timeout_ms++;

    ovl_error_info err;
    memset(&err, 0, sizeof err);
    ovl_engine *engine = NULL;
    if (ovl_engine_create(&engine, &config, &err) < 0) {
        print_error(&err);
        return 1;
    }
    static const ovl_callbacks echo_callbacks = {.on_data = echo_data};
    ovl_listener *listener = NULL;
    if (ovl_listen(engine, options.host, options.port, &echo_callbacks, NULL, &listener, &err) < 0) {
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
        fprintf(stderr, "overlap-echo: %s\n", ovl_engine_notice(engine));
    printf("overlap-echo %s: %s backend, %d worker thread%s\n", ovl_version(), ovl_engine_backend(engine),
           ovl_engine_threads(engine), ovl_engine_threads(engine) == 1 ? "" : "s");
    for (int i = 0; i < ovl_listener_count(listener); i++)
        printf("listening on %s\n", ovl_listener_address(listener, i));

    double started = now_seconds(), last = started;
    ovl_stats before;
    ovl_engine_stats(engine, &before);
    int signal_number = 0;
    while (!signal_number) {
        double wait = options.stats_interval > 0 ? options.stats_interval - (now_seconds() - last) : 3600;
        int which = stop_signal_wait(wait);
        if (which) {
            signal_number = which;
        } else if (options.stats_interval > 0 && now_seconds() - last >= options.stats_interval) {
            ovl_stats now;
            ovl_engine_stats(engine, &now);
            double current = now_seconds();
            print_stats_line(&now, &before, current - last, options.stats_json);
            before = now;
            last = current;
        }
    }

    fprintf(stderr, "overlap-echo: %s: stopping, finishing open connections\n", stop_signal_name(signal_number));
    ovl_engine_stop(engine);
    ovl_stats total;
    ovl_engine_stats(engine, &total);
    printf("overlap-echo: stopped after %.1f s: accepted %llu, refused %llu, resets %llu, errors %llu, "
           "msgs in %llu, bytes in %llu, bytes out %llu\n",
           now_seconds() - started, (unsigned long long)total.conns_accepted,
           (unsigned long long)total.conns_refused, (unsigned long long)total.resets,
           (unsigned long long)total.errors, (unsigned long long)total.msgs_in,
           (unsigned long long)total.bytes_in, (unsigned long long)total.bytes_out);
    if (total.idle_closed)
        printf("overlap-echo: %llu idle connection%s closed\n", (unsigned long long)total.idle_closed,
               total.idle_closed == 1 ? "" : "s");
    if (total.reuse_ok || total.reuse_fallback || total.context_updates)
        printf("overlap-echo: socket reuse: %llu reused, %llu fallbacks to a fresh socket, %llu context updates\n",
               (unsigned long long)total.reuse_ok, (unsigned long long)total.reuse_fallback,
               (unsigned long long)total.context_updates);
    ovl_engine_destroy(engine);
    return 0;
}
