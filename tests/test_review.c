/*
 * test_review.c - regression tests for bugs found in review. Each test states the behaviour the engine promises;
 * each failed on the code it was written against (see the message in each test for what it showed then).
 *
 *   linger_after_paused_drain    io_uring: a drain read started by resume_if_drained after READ_DONE completes
 *                                with EAGAIN once LINGER is set, and nothing reads again: the stop waits for the
 *                                drain deadline and ends the connection with -ETIMEDOUT.
 *   pending_connect_at_stop      ovl_connect returned 0, the engine stops before the connect completes: neither
 *                                on_open nor on_close ever runs.
 *   wait_vs_listen_in_callback   ovl_engine_wait holds engine->lock while joining; ovl_listen from a callback
 *                                blocks on it and the worker never ends.
 *   accepts_spread_over_workers  io_uring: multishot accepts on the shared listening socket hand every
 *                                connection to one worker.
 *   peer_in_on_close             the socket is closed before on_close, so ovl_conn_peer() there says "(unknown)".
 */
#include <criterion/criterion.h>
#include <overlap.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int connect_loopback(int port, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0, "connect: %s", strerror(errno));
    return fd;
}

static ovl_engine *start_engine(ovl_config *cfg, const ovl_callbacks *cb, ovl_listener **listener)
{
    ovl_engine *engine;
    ovl_error_info err;
    cr_assert_eq(ovl_engine_create(&engine, cfg, &err), 0, "%s: %s", err.what, err.text);
    if (listener)
        cr_assert_eq(ovl_listen(engine, "127.0.0.1", "0", cb, NULL, listener, &err), 0, "%s: %s", err.what, err.text);
    cr_assert_eq(ovl_engine_start(engine, &err), 0, "%s: %s", err.what, err.text);
    return engine;
}

/* ---- linger_after_paused_drain ---- */

#define LINGER_TOTAL (8u << 20)
static ovl_buf *linger_held[4096];
static int linger_nheld;
static size_t linger_got;
static _Atomic int linger_err = 12345;

static void linger_data(ovl_conn *conn, ovl_buf *buf)
{
    /* hold everything, then queue it all at once: the connection pauses with its socket already read empty */
    linger_got += ovl_buf_len(buf);
    linger_held[linger_nheld++] = buf;
    if (linger_got == LINGER_TOTAL) {
        for (int i = 0; i < linger_nheld; i++)
            ovl_send_buf(conn, linger_held[i]);
        linger_nheld = 0;
    }
}

static void linger_close(ovl_conn *conn, ovl_close_reason reason, int err)
{
    (void)conn;
    (void)reason;
    atomic_store(&linger_err, err);
}

Test(review, linger_after_paused_drain, .timeout = 30)
{
    ovl_config cfg;
    ovl_config_init(&cfg);
    cfg.threads = 1;
    cfg.backend = "io_uring";
    cfg.max_pending = 1; /* resume only when the queue is empty: resume and LINGER in the same completion */
    cfg.drain_timeout_ms = 3000;
    static const ovl_callbacks cb = {.on_data = linger_data, .on_close = linger_close};
    ovl_listener *listener;
    ovl_engine *engine = start_engine(&cfg, &cb, &listener);
    int fd = connect_loopback(ovl_listener_port(listener), 16384);
    char *block = calloc(1, LINGER_TOTAL);
    size_t off = 0;
    while (off < LINGER_TOTAL) {
        ssize_t n = send(fd, block + off, LINGER_TOTAL - off, 0);
        cr_assert_gt(n, 0);
        off += (size_t)n;
    }
    ovl_stats s;
    for (int i = 0; i < 500; i++) {
        ovl_engine_stats(engine, &s);
        if (s.bytes_in == LINGER_TOTAL && s.recv_pauses)
            break;
        usleep(10000);
    }
    cr_assert(s.bytes_in == LINGER_TOTAL && s.recv_pauses, "setup: the server did not pause");
    usleep(200000);
    ovl_engine_request_stop(engine);
    usleep(200000); /* the drain read finds the socket empty: READ_DONE while still paused */
    size_t back = 0;
    ssize_t n;
    while ((n = recv(fd, block, LINGER_TOTAL, 0)) > 0)
        back += (size_t)n;
    cr_assert_eq(back, LINGER_TOTAL, "echo incomplete: %zu", back);
    int64_t t0 = now_ms();
    close(fd);
    ovl_engine_wait(engine);
    int64_t waited = now_ms() - t0;
    cr_expect_lt(waited, 1000,
                 "the peer read everything and closed, yet the stop took %lld ms (drain deadline 3000 ms): "
                 "the connection stopped receiving in LINGER",
                 (long long)waited);
    cr_expect_eq(atomic_load(&linger_err), 0, "on_close err %d (-ETIMEDOUT: closed by the drain deadline)",
                 atomic_load(&linger_err));
    ovl_engine_destroy(engine);
    free(block);
}

/* ---- pending_connect_at_stop ---- */

static _Atomic int pc_open, pc_close;
static void pc_on_open(ovl_conn *conn, void *user)
{
    (void)conn;
    (void)user;
    pc_open++;
}
static void pc_on_close(ovl_conn *conn, ovl_close_reason reason, int err)
{
    (void)conn;
    (void)reason;
    (void)err;
    pc_close++;
}

static void pending_connect_at_stop(const char *backend)
{
    /* a listener with a full accept queue drops further SYNs: a connect to it stays pending */
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(l, (struct sockaddr *)&a, sizeof a);
    listen(l, 0);
    socklen_t length = sizeof a;
    getsockname(l, (struct sockaddr *)&a, &length);
    int c1 = socket(AF_INET, SOCK_STREAM, 0);
    connect(c1, (struct sockaddr *)&a, sizeof a);
    int c2 = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    connect(c2, (struct sockaddr *)&a, sizeof a);
    char port[16];
    snprintf(port, sizeof port, "%d", ntohs(a.sin_port));
    ovl_config cfg;
    ovl_config_init(&cfg);
    cfg.threads = 1;
    cfg.backend = backend;
    ovl_engine *engine = start_engine(&cfg, NULL, NULL);
    ovl_target *target;
    ovl_error_info err;
    cr_assert_eq(ovl_target_resolve(&target, "127.0.0.1", port, &err), 0);
    static const ovl_callbacks cb = {.on_open = pc_on_open, .on_close = pc_on_close};
    cr_assert_eq(ovl_connect(engine, target, &cb, NULL), 0);
    usleep(300000);
    cr_assert_eq(pc_open + pc_close, 0, "setup: the connect was expected to be still pending");
    ovl_engine_stop(engine);
    cr_expect_eq(pc_open + pc_close, 1, "ovl_connect returned 0 but after the stop on_open ran %d times and on_close %d",
                 pc_open, pc_close);
    ovl_engine_destroy(engine);
    ovl_target_free(target);
    close(c1);
    close(c2);
    close(l);
}

Test(review, pending_connect_at_stop_io_uring, .timeout = 30)
{
    pending_connect_at_stop("io_uring");
}

Test(review, pending_connect_at_stop_epoll, .timeout = 30)
{
    pending_connect_at_stop("epoll");
}

/* ---- wait_vs_listen_in_callback ---- */

static ovl_engine *wl_engine;
static _Atomic int wl_listen_returned;

static void wl_data(ovl_conn *conn, ovl_buf *buf)
{
    (void)conn;
    ovl_buf_release(buf);
    static const ovl_callbacks none = {0};
    ovl_listener *second;
    ovl_error_info err;
    ovl_listen(wl_engine, "127.0.0.1", "0", &none, NULL, &second, &err); /* "callable from any thread" */
    wl_listen_returned = 1;
}

static void *wl_client(void *arg)
{
    int port = *(int *)arg;
    usleep(200000); /* the main thread is inside ovl_engine_wait */
    int fd = connect_loopback(port, 0);
    send(fd, "x", 1, 0);
    usleep(300000);
    ovl_engine_request_stop(wl_engine);
    sleep(3);
    /* still here: ovl_engine_wait did not return */
    fprintf(stderr, "wait_vs_listen_in_callback: ovl_engine_wait blocked 3 s after the stop (ovl_listen returned: %d)\n",
            wl_listen_returned);
    _exit(1);
}

Test(review, wait_vs_listen_in_callback, .timeout = 20)
{
    ovl_config cfg;
    ovl_config_init(&cfg);
    cfg.threads = 1;
    cfg.drain_timeout_ms = 500;
    static const ovl_callbacks cb = {.on_data = wl_data};
    ovl_listener *listener;
    wl_engine = start_engine(&cfg, &cb, &listener);
    int port = ovl_listener_port(listener);
    pthread_t thread;
    pthread_create(&thread, NULL, wl_client, &port);
    ovl_engine_wait(wl_engine);
    cr_expect(wl_listen_returned, "ovl_listen in the callback never returned");
}

/* ---- accepts_spread_over_workers ---- */

static _Atomic int spread[4];
static void spread_open(ovl_conn *conn, void *user)
{
    (void)user;
    spread[ovl_conn_worker(conn)]++;
}
static void spread_data(ovl_conn *conn, ovl_buf *buf)
{
    ovl_send_buf(conn, buf);
}
static int spread_port;
static void *spread_client(void *arg)
{
    (void)arg;
    char buf[256] = "hello";
    for (int i = 0; i < 50; i++) {
        int fd = connect_loopback(spread_port, 0);
        for (int k = 0; k < 10; k++) {
            send(fd, buf, 100, 0);
            recv(fd, buf, sizeof buf, 0);
        }
        close(fd);
    }
    return NULL;
}

Test(review, accepts_spread_over_workers, .timeout = 60)
{
    ovl_config cfg;
    ovl_config_init(&cfg);
    cfg.threads = 4;
    cfg.backend = "io_uring";
    static const ovl_callbacks cb = {.on_open = spread_open, .on_data = spread_data};
    ovl_listener *listener;
    ovl_engine *engine = start_engine(&cfg, &cb, &listener);
    spread_port = ovl_listener_port(listener);
    pthread_t threads[8];
    for (int i = 0; i < 8; i++)
        pthread_create(&threads[i], NULL, spread_client, NULL);
    for (int i = 0; i < 8; i++)
        pthread_join(threads[i], NULL);
    ovl_engine_destroy(engine);
    int busiest = 0;
    for (int i = 0; i < 4; i++)
        busiest = spread[i] > busiest ? spread[i] : busiest;
    cr_expect_lt(busiest, 400 * 3 / 4, "400 connections over 4 workers: %d %d %d %d", spread[0], spread[1], spread[2],
                 spread[3]);
}

/* ---- peer_in_on_close ---- */

static char pic_peer[64];
static void pic_data(ovl_conn *conn, ovl_buf *buf)
{
    ovl_buf_release(buf);
    ovl_close(conn);
}
static void pic_close(ovl_conn *conn, ovl_close_reason reason, int err)
{
    (void)reason;
    (void)err;
    snprintf(pic_peer, sizeof pic_peer, "%s", ovl_conn_peer(conn));
}

Test(review, peer_in_on_close, .timeout = 20)
{
    ovl_config cfg;
    ovl_config_init(&cfg);
    cfg.threads = 1;
    static const ovl_callbacks cb = {.on_data = pic_data, .on_close = pic_close};
    ovl_listener *listener;
    ovl_engine *engine = start_engine(&cfg, &cb, &listener);
    int fd = connect_loopback(ovl_listener_port(listener), 0);
    struct sockaddr_in me;
    socklen_t length = sizeof me;
    getsockname(fd, (struct sockaddr *)&me, &length);
    send(fd, "x", 1, 0);
    char tmp[8];
    recv(fd, tmp, sizeof tmp, 0);
    usleep(100000);
    ovl_engine_destroy(engine);
    char expected[64];
    snprintf(expected, sizeof expected, "127.0.0.1:%d", ntohs(me.sin_port));
    cr_expect_str_eq(pic_peer, expected, "ovl_conn_peer() in on_close: \"%s\", expected \"%s\"", pic_peer, expected);
    close(fd);
}
