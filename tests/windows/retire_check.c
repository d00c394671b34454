/*
 * retire_check.c - a stop whose hard deadline comes before the give-up of a socket being retired, on the IOCP
 * backend. A connection whose peer closed first is retired with DisconnectEx(TF_REUSE_SOCKET); at a stop, a
 * DisconnectEx still pending is given up on 1 s later. With drain_timeout_ms + stop_grace_ms under that, the stop's
 * hard deadline comes first: it must give the socket up the same way, not count it in stop_abandoned (which made the
 * worker keep its receive pool and state, and log an error). Wine never completes such a DisconnectEx, so under Wine
 * the disconnect is always still pending at the deadline.
 *
 * A plain program like pause_check.c (Criterion is not built for mingw-w64): it says what it checks on stdout, each
 * failure on stderr, and exits 0 only if every check held. tests/test_wine.c runs it under Wine
 * (wine/stop_with_a_short_grace_gives_retiring_sockets_up). Every wait is bounded; the times are printed only.
 */
#include "overlap.h"

#define CHECK_NAME "retire_check"
#include "check.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

enum { WAIT_MS = 10000 };


static atomic_int closed, close_reason, errors_logged;

static void server_data(ovl_conn *conn, ovl_buf *buf)
{
    ovl_send_buf(conn, buf); /* echo */
}

static void server_eof(ovl_conn *conn)
{
    ovl_shutdown(conn); /* the peer's FIN came first: the socket is retired, not closed */
}

static void server_close(ovl_conn *conn, ovl_close_reason reason, int err)
{
    (void)conn;
    (void)err;
    atomic_store(&close_reason, (int)reason);
    atomic_fetch_add(&closed, 1);
}

static void log_line(void *user, ovl_log_level level, const char *message)
{
    (void)user;
    printf("retire_check: log: %s\n", message);
    if (level == OVL_LOG_ERROR)
        atomic_fetch_add(&errors_logged, 1);
}

int main(void)
{
    check_begin();
    ovl_config config;
    ovl_config_init(&config);
    config.threads = 1;
    config.backend = "iocp";
    config.drain_timeout_ms = 100;
    config.stop_grace_ms = 200; /* the hard deadline 300 ms after the stop, before the retire's give-up at 1 s */
    config.log = log_line;
    static const ovl_callbacks callbacks = {.on_data = server_data, .on_eof = server_eof, .on_close = server_close};
    int port = 0;
    ovl_engine *engine = check_start_server(&config, &callbacks, &port);
    SOCKET fd = check_connect(port, WAIT_MS);
    if (fd == INVALID_SOCKET) {
        fprintf(stderr, "retire_check: connect: error %d\n", WSAGetLastError());
        return 2;
    }
    /* Our FIN first: the server answers with its own and retires its socket. Ours stays open, so nothing completes
     * the server's DisconnectEx early. */
    char byte = 0;
    CHECK(send(fd, "x", 1, 0) == 1 && recv(fd, &byte, 1, 0) == 1 && byte == 'x', "no echo");
    CHECK(shutdown(fd, SD_SEND) == 0, "shutdown: error %d", WSAGetLastError());
    CHECK(recv(fd, &byte, 1, 0) == 0, "no EOF from the server after ours");
    for (ULONGLONG deadline = GetTickCount64() + WAIT_MS; atomic_load(&closed) < 1 && GetTickCount64() < deadline;)
        Sleep(2);
    CHECK(atomic_load(&closed) == 1 && atomic_load(&close_reason) == OVL_CLOSE_PEER,
          "the connection did not end as peer closed (%d closed, reason %d)", atomic_load(&closed),
          atomic_load(&close_reason));
    Sleep(100); /* the DisconnectEx is posted */

    ULONGLONG start = GetTickCount64();
    ovl_engine_stop(engine);
    ULONGLONG took = GetTickCount64() - start;
    ovl_stats stats;
    ovl_engine_stats(engine, &stats);
    printf("retire_check: the stop took %llu ms (drain 100 ms, grace 200 ms), stop_abandoned %llu\n",
           (unsigned long long)took, (unsigned long long)stats.stop_abandoned);
    CHECK(stats.stop_abandoned == 0, "stop_abandoned %llu: a socket being retired counted as abandoned",
          (unsigned long long)stats.stop_abandoned);
    CHECK(atomic_load(&errors_logged) == 0, "%d errors logged", atomic_load(&errors_logged));
    ovl_engine_destroy(engine);
    closesocket(fd);
    return check_end();
}
