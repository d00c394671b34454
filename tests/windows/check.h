/*
 * check.h - what the IOCP check programs share (abandon_check.c, pause_check.c, post_check.c, retire_check.c):
 * plain programs (Criterion is not built for mingw-w64) that say what they check on stdout, each failure on stderr,
 * and exit 0 only if every check held.
 * Define CHECK_NAME (the program's name, the prefix of every line) before including it.
 */
#ifndef OVERLAP_TESTS_WINDOWS_CHECK_H
#define OVERLAP_TESTS_WINDOWS_CHECK_H

#include "overlap.h"

#include <winsock2.h>
#include <ws2tcpip.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

#define CHECK(cond, ...)                                                                                             \
    do {                                                                                                             \
        if (!(cond)) {                                                                                               \
            fprintf(stderr, CHECK_NAME ": %s:%d: %s: ", __FILE__, __LINE__, #cond);                                  \
            fprintf(stderr, __VA_ARGS__);                                                                            \
            fprintf(stderr, "\n");                                                                                   \
            failures++;                                                                                              \
        }                                                                                                            \
    } while (0)

/* Unbuffered output (the lines interleave with the library's, and a hang still shows how far it got) and Winsock. */
static inline void check_begin(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    WSADATA wsa;
    if (WSAStartup(MAKEWORD(2, 2), &wsa) != 0) {
        fprintf(stderr, CHECK_NAME ": WSAStartup failed\n");
        exit(2);
    }
}

/* The verdict line the Wine tests and tests/windows/native_tests.py look for, and the exit code. */
static inline int check_end(void)
{
    WSACleanup();
    printf(CHECK_NAME ": %s (%d failure%s)\n", failures ? "FAILED" : "ok", failures, failures == 1 ? "" : "s");
    return failures ? 1 : 0;
}

/* A client connected to 127.0.0.1:port, its receives bounded by timeout_ms (0: none), or INVALID_SOCKET with the
 * error in WSAGetLastError(). */
static inline SOCKET check_connect(int port, DWORD timeout_ms)
{
    struct sockaddr_in address;
    memset(&address, 0, sizeof address);
    address.sin_family = AF_INET;
    address.sin_port = htons((u_short)port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    SOCKET fd = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    if (fd == INVALID_SOCKET)
        return fd;
    if (timeout_ms)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, (const char *)&timeout_ms, sizeof timeout_ms);
    if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) {
        int error = WSAGetLastError();
        closesocket(fd);
        WSASetLastError(error);
        return INVALID_SOCKET;
    }
    return fd;
}

/* An engine made from `config`, listening on 127.0.0.1 (a free port, into *port) with `callbacks`, started. Exits 2
 * with the engine's error when it cannot start: there is nothing to check then. */
static inline ovl_engine *check_start_server(const ovl_config *config, const ovl_callbacks *callbacks, int *port)
{
    ovl_error_info err;
    memset(&err, 0, sizeof err);
    ovl_engine *engine = NULL;
    ovl_listener *listener = NULL;
    if (ovl_engine_create(&engine, config, &err) < 0 ||
        ovl_listen(engine, "127.0.0.1", "0", callbacks, NULL, &listener, &err) < 0 ||
        ovl_engine_start(engine, &err) < 0) {
        fprintf(stderr, CHECK_NAME ": start: %s: %s\n", err.what, err.text);
        exit(2);
    }
    *port = ovl_listener_port(listener);
    return engine;
}

#endif
