/*
 * metrics_http.c - a minimal HTTP/1.x server for GET /metrics, on liboverlap itself (metrics_http.h).
 *
 * Each scrape is one connection: the request head is read (at most REQUEST_MAX bytes, within REQUEST_TIMEOUT_US),
 * answered, and our side shut down; the client's FIN ends it. GET (or HEAD) /metrics gets 200 and the exposition
 * text, another path 404, another method 405, a head too large 431, a malformed one 400; a client too slow to send
 * its head is closed. The counters are read with ovl_engine_stats at the moment of the request.
 */
#include "metrics_http.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    REQUEST_MAX = 4096,                 /* bytes of request head: a scraper sends a few hundred */
    REQUEST_TIMEOUT_US = 5 * 1000000,   /* to send the whole head */
    BODY_MAX = 16384
};

struct metrics_server {
    ovl_engine *engine;  /* the one serving the scrapes */
    ovl_engine *source;  /* the one whose counters are shown */
    ovl_listener *listener;
    char program[64];
};

struct request {
    struct metrics_server *server;
    size_t len;
    bool answered;
    char head[REQUEST_MAX + 1];
};

size_t metrics_render(const ovl_stats *stats, const char *program, const char *backend, char *out, size_t cap)
{
    size_t used = 0;
#define APPEND(...)                                                                                                  \
    do {                                                                                                             \
        int n = snprintf(used < cap ? out + used : NULL, used < cap ? cap - used : 0, __VA_ARGS__);                  \
        used += n > 0 ? (size_t)n : 0;                                                                               \
    } while (0)
    APPEND("# HELP overlap_info The program and the engine backend that serve these metrics.\n"
           "# TYPE overlap_info gauge\n"
           "overlap_info{program=\"%s\",version=\"%s\",backend=\"%s\"} 1\n",
           program, ovl_version(), backend);
#define METRICS_FIELD(name, kind, help)                                                                              \
    APPEND("# HELP overlap_%s%s %s.\n# TYPE overlap_%s%s %s\noverlap_%s%s %llu\n", #name,                            \
           strcmp(#kind, "counter") == 0 ? "_total" : "", help, #name, strcmp(#kind, "counter") == 0 ? "_total" : "",  \
           #kind, #name, strcmp(#kind, "counter") == 0 ? "_total" : "", (unsigned long long)stats->name);
    OVL_STATS_FIELDS(METRICS_FIELD)
#undef METRICS_FIELD
#undef APPEND
    if (cap)
        out[used < cap ? used : cap - 1] = '\0';
    return used;
}

static void on_timeout(ovl_conn *conn)
{
    ovl_close(conn); /* the head did not come in time, or the client kept the connection after its answer */
}

static void respond(ovl_conn *conn, struct request *request, const char *status, const char *extra_headers,
                    const char *body, size_t body_len, bool head_only)
{
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %s\r\nContent-Length: %zu\r\nConnection: close\r\n%s\r\n", status, body_len,
                     extra_headers);
    request->answered = true;
    /* The answer fits in the kernel's buffers, so no stall timeout would end a client that never reads it nor
     * closes: it gets the same 5 s to go away as it had to ask. */
    ovl_conn_timer(conn, REQUEST_TIMEOUT_US, on_timeout);
    ovl_send(conn, head, (size_t)n);
    if (!head_only && body_len)
        ovl_send(conn, body, body_len);
    ovl_shutdown(conn); /* the FIN follows the answer; the client's own ends the connection */
}

static void respond_text(ovl_conn *conn, struct request *request, const char *status, const char *text)
{
    respond(conn, request, status, "Content-Type: text/plain; charset=utf-8\r\n", text, strlen(text), false);
}

/* A whole head is in: answer it. */
static void answer(ovl_conn *conn, struct request *request)
{
    char *line_end = strchr(request->head, '\n');
    *line_end = '\0';
    if (line_end > request->head && line_end[-1] == '\r')
        line_end[-1] = '\0';
    char method[16], target[256], version[16];
    char extra;
    if (sscanf(request->head, "%15s %255s %15s %c", method, target, version, &extra) != 3 ||
        strncmp(version, "HTTP/1.", 7) != 0) {
        respond_text(conn, request, "400 Bad Request", "a request line is METHOD /path HTTP/1.x\n");
        return;
    }
    bool head_only = strcmp(method, "HEAD") == 0;
    if (strcmp(method, "GET") != 0 && !head_only) {
        static const char text[] = "only GET /metrics is served here\n";
        respond(conn, request, "405 Method Not Allowed", "Allow: GET, HEAD\r\nContent-Type: text/plain\r\n", text,
                sizeof text - 1, false);
        return;
    }
    char *query = strchr(target, '?');
    if (query)
        *query = '\0';
    if (strcmp(target, "/metrics") != 0) {
        respond_text(conn, request, "404 Not Found", "only /metrics is served here\n");
        return;
    }
    ovl_stats stats;
    ovl_engine_stats(request->server->source, &stats);
    char *body = malloc(BODY_MAX);
    if (!body) {
        respond_text(conn, request, "503 Service Unavailable", "out of memory\n");
        return;
    }
    size_t len = metrics_render(&stats, request->server->program, ovl_engine_backend(request->server->source), body,
                                BODY_MAX);
    if (len >= BODY_MAX)
        len = BODY_MAX - 1;
    respond(conn, request, "200 OK", "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n", body, len,
            head_only);
    free(body);
}

static void on_open(ovl_conn *conn, void *user)
{
    struct request *request = calloc(1, sizeof *request);
    if (!request) {
        ovl_close(conn);
        return;
    }
    request->server = user;
    ovl_conn_set_user(conn, request);
    ovl_conn_timer(conn, REQUEST_TIMEOUT_US, on_timeout);
}

static void on_data(ovl_conn *conn, ovl_buf *buf)
{
    struct request *request = ovl_conn_user(conn);
    size_t n = ovl_buf_len(buf);
    if (!request || request->answered) {
        ovl_buf_release(buf); /* anything after the head (a body, a pipelined request) is not read */
        return;
    }
    size_t room = REQUEST_MAX - request->len, take = n < room ? n : room;
    memcpy(request->head + request->len, ovl_buf_data(buf), take);
    request->len += take;
    request->head[request->len] = '\0';
    ovl_buf_release(buf);
    if (strlen(request->head) != request->len)
        respond_text(conn, request, "400 Bad Request", "a NUL byte in the request head\n");
    else if (strstr(request->head, "\r\n\r\n") || strstr(request->head, "\n\n"))
        answer(conn, request);
    else if (request->len == REQUEST_MAX)
        respond_text(conn, request, "431 Request Header Fields Too Large", "the request head is over 4096 bytes\n");
}

static void on_eof(ovl_conn *conn)
{
    struct request *request = ovl_conn_user(conn);
    if (request && !request->answered && request->len)
        respond_text(conn, request, "400 Bad Request", "the request head ended early\n");
    else
        ovl_shutdown(conn);
}

static void on_close(ovl_conn *conn, ovl_close_reason reason, int err)
{
    (void)reason;
    (void)err;
    free(ovl_conn_user(conn));
}

static const ovl_callbacks metrics_callbacks = {
    .on_open = on_open, .on_data = on_data, .on_eof = on_eof, .on_close = on_close};

int metrics_start(struct metrics_server **out, ovl_engine *source, const char *program, const char *host,
                  const char *port, ovl_error_info *err)
{
    struct metrics_server *server = calloc(1, sizeof *server);
    if (!server) {
        if (err) {
            err->code = -ENOMEM;
            snprintf(err->what, sizeof err->what, "metrics");
            snprintf(err->text, sizeof err->text, "%s", ovl_strerror(-ENOMEM));
        }
        return -ENOMEM;
    }
    server->source = source;
    snprintf(server->program, sizeof server->program, "%s", program);
    ovl_config config;
    ovl_config_init(&config);
    config.threads = 1;
    config.buffer_count = 16;
    config.buffer_size = 4096;
    config.max_conns = 64;
    config.drain_timeout_ms = 1000;
    config.backend = ovl_engine_backend(source);
    int rc = ovl_engine_create(&server->engine, &config, err);
    if (rc == 0)
        rc = ovl_listen(server->engine, host && *host ? host : NULL, port, &metrics_callbacks, server,
                        &server->listener, err);
    if (rc == 0)
        rc = ovl_engine_start(server->engine, err);
    if (rc < 0) {
        ovl_engine_destroy(server->engine);
        free(server);
        return rc;
    }
    *out = server;
    return 0;
}

const char *metrics_address(const struct metrics_server *server)
{
    return ovl_listener_address(server->listener, 0);
}

void metrics_stop(struct metrics_server *server)
{
    if (!server)
        return;
    ovl_engine_destroy(server->engine);
    free(server);
}
