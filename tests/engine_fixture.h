/*
 * engine_fixture.h - the in-process server of the engine tests: an ovl_engine with one listener on a loopback
 * ephemeral port (port 0), serving echo (or the test's own callbacks), on the backend the suite's environment names.
 *
 * Unlike support.h, these helpers assert (Criterion): a fixture that cannot start fails the test with the engine's
 * own error. It is apart from support.c because the programs that only drive processes (overlap-echo.exe under
 * Wine, overlap-proxy, the services) do not link liboverlap. Callbacks run on worker threads and only count into
 * the atomics below; the test reads them on its own thread.
 */
#ifndef OVL_TEST_ENGINE_FIXTURE_H
#define OVL_TEST_ENGINE_FIXTURE_H

#include "overlap.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct server_opts {
    const char *host;            /* NULL: 127.0.0.1 (unless every_interface) */
    bool every_interface;        /* listen with host NULL: every interface, dual stack */
    int threads;                 /* 0: 1 */
    uint32_t buffer_size;        /* 0 (here and below): the engine's default */
    uint32_t buffer_count;       /* 0: the engine's growing pool */
    uint32_t max_conns, max_pending, idle_timeout_ms, drain_timeout_ms, stop_grace_ms;
    int connect_timeout_ms;
    const char *backend;         /* NULL: $OVERLAP_TEST_BACKEND, or the engine's default when that is unset */
    void (*log)(void *user, ovl_log_level level, const char *message); /* config.log */
    const ovl_callbacks *callbacks; /* NULL: echo (server_echo_callbacks) */
    bool listen_later;           /* start the engine without a listener; the test calls server_listen (or never) */
};

struct server {
    ovl_engine *engine;
    ovl_listener *listener;
    int port;                    /* the listener's, 0 without one */
    atomic_int opened;
    atomic_int closed;
    atomic_int closed_by[OVL_CLOSE_STALLED + 1]; /* by ovl_close_reason */
    atomic_int send_failures;    /* ovl_send_buf failures in the echo */
    void *app;                   /* a test's own state, for its callbacks (the listener's user is the server) */
    struct server_opts opts;
};

/* The echo: on_open counts `opened`, on_data sends the buffer back (zero copy), on_close counts `closed` and
 * `closed_by`. A test's own callbacks may use these functions too. */
void server_echo_open(ovl_conn *conn, void *user);
void server_echo_data(ovl_conn *conn, ovl_buf *buf);
void server_count_close(ovl_conn *conn, ovl_close_reason reason, int err);
extern const ovl_callbacks server_echo_callbacks;

/* $OVERLAP_TEST_BACKEND ("io_uring", "epoll"): meson runs a suite once per Linux backend with it; NULL when unset. */
const char *test_backend(void);

/* Create the engine only (zeroes *server first). */
void server_create(struct server *server, const struct server_opts *opts);
/* Listen on opts.host port 0 with opts.callbacks and the server as the listener's user; sets port. */
void server_listen(struct server *server);
void server_start_engine(struct server *server);
/* server_create, then server_listen and server_start_engine (only the start with listen_later), and check that the
 * engine runs the backend asked for. */
void server_start(struct server *server, const struct server_opts *opts);
/* Destroy the engine (a graceful stop first if it runs); safe to call twice. */
void server_destroy(struct server *server);

/* Return once every worker has run what was posted to it before this call (a hand-over and a post go through
 * one queue, in order): a connection one worker accepted and handed to another is then open and counted in
 * conns_accepted. */
void server_settle(struct server *server);

/* Wait up to ms for *value to reach want; returns the last value read. */
int server_wait_atomic(atomic_int *value, int want, int ms);

#endif
