/*
 * pause_check.c - a paused connection on the IOCP backend, the Windows counterpart of tests/test_engine.c's
 * paused_connection_notices_a_reset (io_uring and epoll): a connection paused by the application (ovl_recv_pause)
 * has no receive posted, and must still notice that its peer reset it. Around that, what the watch must not break:
 * a pause that ends while the watch is posted, data waiting at the end of a pause, the peer's FIN while paused (held
 * until the resume) and a stop with a paused connection. Each with zero-byte receives off and on.
 *
 * Criterion is not built for mingw-w64, so this is a plain program, like post_check.c: it says what it checks on
 * stdout, each failure on stderr, and exits 0 only if every check held. tests/test_wine.c runs it under Wine
 * (wine/paused_connection_notices_a_reset). Every wait is bounded, and no check asserts a latency tightly: the
 * times are printed.
 */
#include "overlap.h"

#define CHECK_NAME "pause_check"
#include "check.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { WAIT_MS = 10000 };


/* What the server's callbacks do, set by the main thread between cases (while no connection is open). */
static atomic_bool pause_on_open, pause_on_data;
/* What they saw. */
static atomic_int opened, closed, close_reason, eofs, data_bytes;
static ovl_conn *current; /* the open connection: touched only on the worker thread */
static bool paused_once;  /* likewise */

static void server_open(ovl_conn *conn, void *user)
{
    (void)user;
    current = conn;
    paused_once = false;
    if (atomic_load(&pause_on_open)) {
        paused_once = true;
        ovl_recv_pause(conn);
    }
    atomic_fetch_add(&opened, 1);
}

static void server_data(ovl_conn *conn, ovl_buf *buf)
{
    if (atomic_load(&pause_on_data) && !paused_once) {
        paused_once = true;
        ovl_buf_release(buf);
        ovl_recv_pause(conn);
        atomic_fetch_add(&data_bytes, 1); /* seen: the pause is in place */
        return;
    }
    atomic_fetch_add(&data_bytes, (int)ovl_buf_len(buf));
    ovl_send_buf(conn, buf); /* echo */
}

static void server_eof(ovl_conn *conn)
{
    atomic_fetch_add(&eofs, 1);
    ovl_shutdown(conn);
}

static void server_close(ovl_conn *conn, ovl_close_reason reason, int err)
{
    (void)err;
    if (conn == current)
        current = NULL;
    atomic_store(&close_reason, (int)reason);
    atomic_fetch_add(&closed, 1);
}

/* Posted to the worker: the pause ends. */
static void resume_current(void *arg)
{
    (void)arg;
    if (current)
        ovl_recv_resume(current);
}

static uint64_t now_ms(void)
{
    return GetTickCount64();
}

/* Up to WAIT_MS for *value to reach at least want. */
static bool wait_for(atomic_int *value, int want)
{
    for (uint64_t deadline = now_ms() + WAIT_MS; atomic_load(value) < want && now_ms() < deadline;)
        Sleep(2);
    return atomic_load(value) >= want;
}

struct server {
    ovl_engine *engine;
    int port;
};

static void server_start(struct server *server, int zero_byte)
{
    ovl_config config;
    ovl_config_init(&config);
    config.threads = 1;
    config.backend = "iocp";
    config.zero_byte_receive = zero_byte;
    config.drain_timeout_ms = 5000;
    static const ovl_callbacks callbacks = {
        .on_open = server_open, .on_data = server_data, .on_eof = server_eof, .on_close = server_close};
    server->engine = check_start_server(&config, &callbacks, &server->port);
}

/* A connected client; returns once the server has opened it (and, with pause_on_open, paused it). */
static SOCKET client_connect(const struct server *server)
{
    int before = atomic_load(&opened);
    SOCKET fd = check_connect(server->port, WAIT_MS);
    if (fd == INVALID_SOCKET) {
        fprintf(stderr, "pause_check: connect: error %d\n", WSAGetLastError());
        exit(2);
    }
    CHECK(wait_for(&opened, before + 1), "the server did not open the connection");
    return fd;
}

/* SO_LINGER {1, 0}: closesocket sends a reset. */
static void client_reset(SOCKET fd)
{
    struct linger linger = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, (const char *)&linger, sizeof linger);
    closesocket(fd);
}

static int client_recv(SOCKET fd, char *buffer, int want)
{
    int got = 0;
    while (got < want) {
        int n = recv(fd, buffer + got, want - got, 0);
        if (n <= 0)
            break;
        got += n;
    }
    return got;
}

static void set_mode(bool on_open, bool on_data)
{
    atomic_store(&pause_on_open, on_open);
    atomic_store(&pause_on_data, on_data);
    atomic_store(&close_reason, 0);
    atomic_store(&eofs, 0);
    atomic_store(&data_bytes, 0);
}

/* The peer resets a paused connection: on_close must say so (before, nothing came until the pause ended). */
static void check_reset(const struct server *server, const char *mode, bool send_first)
{
    set_mode(!send_first, send_first);
    int before = atomic_load(&closed);
    SOCKET fd = client_connect(server);
    if (send_first) {
        CHECK(send(fd, "pause here", 10, 0) == 10, "send: error %d", WSAGetLastError());
        CHECK(wait_for(&data_bytes, 1), "the server got nothing to pause on");
    }
    Sleep(200); /* the watch, if there is one, is posted and waiting */
    uint64_t start = now_ms();
    client_reset(fd);
    bool ended = wait_for(&closed, before + 1);
    int reason = atomic_load(&close_reason);
    const char *seen = ended ? ovl_close_reason_name((ovl_close_reason)reason) : "nothing";
    printf("pause_check: %s, paused %s, the peer resets: %s after %llu ms\n", mode,
           send_first ? "in on_data" : "in on_open", seen, (unsigned long long)(now_ms() - start));
    CHECK(ended && reason == OVL_CLOSE_RESET, "%s: the connection paused %s ended with %s %d s after its peer reset it",
          mode, send_first ? "in on_data" : "in on_open", seen, WAIT_MS / 1000);
}

/* The pause ends while the watch is posted (with_data: after the peer sent more): reading goes on as before. */
static void check_resume(const struct server *server, const char *mode, bool with_data)
{
    set_mode(!with_data, with_data);
    int before = atomic_load(&closed);
    SOCKET fd = client_connect(server);
    if (with_data) {
        CHECK(send(fd, "pause here", 10, 0) == 10, "send: error %d", WSAGetLastError());
        CHECK(wait_for(&data_bytes, 1), "the server got nothing to pause on");
        CHECK(send(fd, "waits", 5, 0) == 5, "send: error %d", WSAGetLastError());
    }
    Sleep(200);
    CHECK(atomic_load(&data_bytes) == (with_data ? 1 : 0), "%s: %d bytes delivered while paused", mode,
          atomic_load(&data_bytes) - (with_data ? 1 : 0));
    CHECK(ovl_post(server->engine, 0, resume_current, NULL) == 0, "post the resume");
    char reply[16] = "";
    if (with_data)
        CHECK(client_recv(fd, reply, 5) == 5 && memcmp(reply, "waits", 5) == 0,
              "%s: what waited during the pause came back as '%.5s'", mode, reply);
    CHECK(send(fd, "ping", 4, 0) == 4, "send: error %d", WSAGetLastError());
    memset(reply, 0, sizeof reply);
    CHECK(client_recv(fd, reply, 4) == 4 && memcmp(reply, "ping", 4) == 0, "%s: after the resume the echo was '%.4s'",
          mode, reply);
    shutdown(fd, SD_SEND);
    CHECK(client_recv(fd, reply, 1) == 0, "%s: no EOF from the server after ours", mode);
    closesocket(fd);
    CHECK(wait_for(&closed, before + 1) && atomic_load(&close_reason) == OVL_CLOSE_PEER,
          "%s: after the resume the connection ended with %d", mode, atomic_load(&close_reason));
    printf("pause_check: %s, the pause ends%s: echoes, then closes in good order\n", mode,
           with_data ? " with data waiting" : " while the watch waits");
}

/* The peer's FIN while paused: on_eof waits for the resume (it must not come while paused), then comes. */
static void check_fin(const struct server *server, const char *mode)
{
    set_mode(true, false);
    int before = atomic_load(&closed);
    SOCKET fd = client_connect(server);
    Sleep(100);
    shutdown(fd, SD_SEND);
    Sleep(300);
    CHECK(atomic_load(&eofs) == 0, "%s: on_eof came while paused", mode);
    CHECK(atomic_load(&closed) == before, "%s: the connection closed while paused after the peer's FIN", mode);
    CHECK(ovl_post(server->engine, 0, resume_current, NULL) == 0, "post the resume");
    CHECK(wait_for(&eofs, 1), "%s: no on_eof after the resume", mode);
    char byte;
    CHECK(client_recv(fd, &byte, 1) == 0, "%s: no EOF from the server", mode);
    closesocket(fd);
    CHECK(wait_for(&closed, before + 1) && atomic_load(&close_reason) == OVL_CLOSE_PEER,
          "%s: after the FIN the connection ended with %d", mode, atomic_load(&close_reason));
    printf("pause_check: %s, the peer's FIN while paused: on_eof after the resume, closes in good order\n", mode);
}

static void *stop_engine(void *arg)
{
    ovl_engine_stop(arg);
    return NULL;
}

/* A stop with a paused, quiet connection: the drain shuts our side, the peer closes, the stop ends. */
static void check_stop(struct server *server, const char *mode)
{
    set_mode(true, false);
    int before = atomic_load(&closed);
    SOCKET fd = client_connect(server);
    Sleep(200);
    uint64_t start = now_ms();
    pthread_t stopper;
    CHECK(pthread_create(&stopper, NULL, stop_engine, server->engine) == 0, "start the stopping thread");
    char byte;
    CHECK(client_recv(fd, &byte, 1) == 0, "%s: no EOF from the draining server", mode);
    closesocket(fd);
    pthread_join(stopper, NULL);
    uint64_t took = now_ms() - start;
    CHECK(atomic_load(&closed) == before + 1 && atomic_load(&close_reason) == OVL_CLOSE_ENGINE_STOP,
          "%s: the stop closed %d connections, the last with %d", mode, atomic_load(&closed) - before,
          atomic_load(&close_reason));
    CHECK(took < 4000, "%s: the stop took %llu ms with a quiet paused connection (drain timeout 5000)", mode,
          (unsigned long long)took);
    ovl_stats stats;
    ovl_engine_stats(server->engine, &stats);
    CHECK(stats.stop_abandoned == 0, "%s: %llu operations abandoned", mode,
          (unsigned long long)stats.stop_abandoned);
    printf("pause_check: %s, a stop with a paused connection: over in %llu ms\n", mode, (unsigned long long)took);
}

static void run(int zero_byte, const char *mode)
{
    struct server server;
    server_start(&server, zero_byte);
    check_reset(&server, mode, false);
    check_reset(&server, mode, true);
    check_resume(&server, mode, false);
    check_resume(&server, mode, true);
    check_fin(&server, mode);
    check_stop(&server, mode);
    ovl_engine_destroy(server.engine);
}

int main(void)
{
    check_begin();
    run(-1, "receives into buffers");
    run(1, "zero-byte receives");
    return check_end();
}
