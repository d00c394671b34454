/*
 * abandon_check.c - on_close of a connection whose operations a stop abandoned, on the IOCP backend. With
 * $OVERLAP_TEST_FAULTS=swallow-cancels the backend drops every cancelled completion once the stop began, as a
 * system that holds a cancelled WSARecv or WSASend past closesocket would; the hard deadline then abandons the
 * connections. Their on_close must say OVL_CLOSE_ENGINE_STOP with -ECANCELED, not the drain's -ETIMEDOUT: memory
 * given to ovl_send_ref may still be read by such a send, and the application has to know to keep it (overlap.h).
 *
 * A plain program like pause_check.c (Criterion is not built for mingw-w64): it says what it checks on stdout, each
 * failure on stderr, and exits 0 only if every check held. tests/test_wine.c runs it under Wine
 * (wine/abandoned_connections_close_with_ecanceled). Every wait is bounded.
 */
#include "overlap.h"

#define CHECK_NAME "abandon_check"
#include "check.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { CLIENTS = 3, WAIT_MS = 10000 };


static atomic_int opened, closed, cancelled_closes;

static void server_open(ovl_conn *conn, void *user)
{
    (void)conn;
    (void)user;
    atomic_fetch_add(&opened, 1);
}

static void server_data(ovl_conn *conn, ovl_buf *buf)
{
    ovl_send_buf(conn, buf); /* echo */
}

static void server_close(ovl_conn *conn, ovl_close_reason reason, int err)
{
    (void)conn;
    printf("abandon_check: on_close %s, err %d\n", ovl_close_reason_name(reason), err);
    if (reason == OVL_CLOSE_ENGINE_STOP && err == -ECANCELED)
        atomic_fetch_add(&cancelled_closes, 1);
    atomic_fetch_add(&closed, 1);
}

int main(void)
{
    check_begin();
    _putenv("OVERLAP_TEST_FAULTS=swallow-cancels"); /* read by ovl_engine_create */
    ovl_config config;
    ovl_config_init(&config);
    config.threads = 1;
    config.backend = "iocp";
    config.drain_timeout_ms = 200;
    config.stop_grace_ms = 200;
    static const ovl_callbacks callbacks = {.on_open = server_open, .on_data = server_data, .on_close = server_close};
    int port = 0;
    ovl_engine *engine = check_start_server(&config, &callbacks, &port);
    SOCKET fds[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        fds[i] = check_connect(port, WAIT_MS);
        if (fds[i] == INVALID_SOCKET) {
            fprintf(stderr, "abandon_check: connect: error %d\n", WSAGetLastError());
            return 2;
        }
        char byte = 0;
        CHECK(send(fds[i], "x", 1, 0) == 1 && recv(fds[i], &byte, 1, 0) == 1 && byte == 'x', "no echo on %d", i);
    }
    ULONGLONG deadline = GetTickCount64() + WAIT_MS;
    while (atomic_load(&opened) < CLIENTS && GetTickCount64() < deadline)
        Sleep(2);
    /* The clients stay open and silent: each connection's receive is cancelled at the drain deadline, and the
     * fault loses that cancellation, so only the hard deadline ends them. */
    ovl_engine_stop(engine);
    ovl_stats stats;
    ovl_engine_stats(engine, &stats);
    printf("abandon_check: stop_abandoned %llu, %d closed, %d with -ECANCELED\n",
           (unsigned long long)stats.stop_abandoned, atomic_load(&closed), atomic_load(&cancelled_closes));
    CHECK(stats.stop_abandoned >= CLIENTS, "stop_abandoned %llu: the fault should leave each receive pending",
          (unsigned long long)stats.stop_abandoned);
    CHECK(atomic_load(&closed) == CLIENTS, "%d of %d connections heard on_close", atomic_load(&closed), CLIENTS);
    CHECK(atomic_load(&cancelled_closes) == CLIENTS, "%d of %d abandoned connections closed with -ECANCELED",
          atomic_load(&cancelled_closes), CLIENTS);
    ovl_engine_destroy(engine);
    for (int i = 0; i < CLIENTS; i++)
        closesocket(fds[i]);
    return check_end();
}
