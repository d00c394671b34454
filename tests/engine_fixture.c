/*
 * engine_fixture.c - the in-process server of the engine tests (see engine_fixture.h).
 */
#include "engine_fixture.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <stdlib.h>
#include <string.h>

#include "support.h"

void server_echo_open(ovl_conn *conn, void *user)
{
    (void)conn;
    struct server *server = user;
    atomic_fetch_add(&server->opened, 1);
}

void server_echo_data(ovl_conn *conn, ovl_buf *buf)
{
    /* Zero copy: the received buffer goes back out as it is (ovl_send_buf releases it on failure). */
    if (ovl_send_buf(conn, buf) < 0) {
        struct server *server = ovl_conn_user(conn);
        atomic_fetch_add(&server->send_failures, 1);
    }
}

void server_count_close(ovl_conn *conn, ovl_close_reason reason, int err)
{
    (void)err;
    struct server *server = ovl_conn_user(conn);
    if (reason >= OVL_CLOSE_PEER && reason <= OVL_CLOSE_STALLED)
        atomic_fetch_add(&server->closed_by[reason], 1);
    atomic_fetch_add(&server->closed, 1);
}

const ovl_callbacks server_echo_callbacks = {
    .on_open = server_echo_open,
    .on_data = server_echo_data,
    .on_close = server_count_close,
};

const char *test_backend(void)
{
    const char *name = getenv("OVERLAP_TEST_BACKEND");
    return name && *name ? name : NULL;
}

/* The backend the server asks for: its own, else the suite's, else NULL (the engine's default). */
static const char *wanted_backend(const struct server *server)
{
    return server->opts.backend ? server->opts.backend : test_backend();
}

void server_create(struct server *server, const struct server_opts *opts)
{
    memset(server, 0, sizeof(*server));
    server->opts = *opts;
    ovl_config config;
    ovl_config_init(&config);
    config.threads = opts->threads > 0 ? opts->threads : 1;
    config.buffer_size = opts->buffer_size;
    config.buffer_count = opts->buffer_count;
    config.max_conns = opts->max_conns;
    config.max_pending = opts->max_pending;
    config.idle_timeout_ms = opts->idle_timeout_ms;
    config.drain_timeout_ms = opts->drain_timeout_ms;
    config.stop_grace_ms = opts->stop_grace_ms;
    config.connect_timeout_ms = opts->connect_timeout_ms;
    config.backend = wanted_backend(server);
    config.log = opts->log;
    ovl_error_info err;
    memset(&err, 0, sizeof(err));
    int rc = ovl_engine_create(&server->engine, &config, &err);
    cr_assert_eq(rc, 0, "ovl_engine_create = %d: %s: %s", rc, err.what, err.text);
}

void server_listen(struct server *server)
{
    const char *host = server->opts.every_interface ? NULL : server->opts.host ? server->opts.host : "127.0.0.1";
    const ovl_callbacks *callbacks = server->opts.callbacks ? server->opts.callbacks : &server_echo_callbacks;
    ovl_error_info err;
    memset(&err, 0, sizeof(err));
    int rc = ovl_listen(server->engine, host, "0", callbacks, server, &server->listener, &err);
    cr_assert_eq(rc, 0, "ovl_listen(%s, 0) = %d: %s: %s", host ? host : "NULL", rc, err.what, err.text);
    server->port = ovl_listener_port(server->listener);
    cr_assert(server->port > 0 && server->port < 65536, "ovl_listener_port = %d", server->port);
}

void server_start_engine(struct server *server)
{
    ovl_error_info err;
    memset(&err, 0, sizeof(err));
    int rc = ovl_engine_start(server->engine, &err);
    cr_assert_eq(rc, 0, "ovl_engine_start = %d: %s: %s", rc, err.what, err.text);
}

void server_start(struct server *server, const struct server_opts *opts)
{
    server_create(server, opts);
    if (!opts->listen_later)
        server_listen(server);
    server_start_engine(server);
    cr_log_info("engine: backend %s, %d thread(s), port %d", ovl_engine_backend(server->engine),
                ovl_engine_threads(server->engine), server->port);
    const char *want = wanted_backend(server);
    if (want)
        cr_assert_str_eq(ovl_engine_backend(server->engine), want, "%s%s but the engine runs %s",
                         opts->backend ? "asked for " : "OVERLAP_TEST_BACKEND=", want,
                         ovl_engine_backend(server->engine));
}

void server_destroy(struct server *server)
{
    if (server->engine)
        ovl_engine_destroy(server->engine);
    server->engine = NULL;
}

static void settle_run(void *arg)
{
    atomic_fetch_add((atomic_int *)arg, 1);
}

void server_settle(struct server *server)
{
    atomic_int ran = 0;
    int workers = ovl_engine_threads(server->engine);
    for (int w = 0; w < workers; w++)
        cr_assert_eq(ovl_post(server->engine, w, settle_run, &ran), 0, "ovl_post to worker %d", w);
    cr_assert_eq(server_wait_atomic(&ran, workers, 10000), workers, "the workers did not run what was posted to "
                 "them within 10 s");
}

int server_wait_atomic(atomic_int *value, int want, int ms)
{
    int64_t deadline = sup_now_ms() + ms;
    int v;
    while ((v = atomic_load(value)) < want && sup_now_ms() < deadline)
        sup_sleep_ms(5);
    return v;
}
