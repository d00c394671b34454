/*
 * post_check.c - ovl_post on the IOCP backend, the Windows counterpart of tests/test_post.c (which runs on io_uring
 * and epoll): posts from any thread run on the named worker, in order, woken through the worker's completion port;
 * a worker posts to another; what a connection's worker hands to a blocking thread comes back to that worker and is
 * sent; what never ran is run by ovl_engine_destroy. With the argument `blocked-worker` it checks instead that a
 * posted function that blocks worker 0 does not hold up the engine's accepts (issue 16: the acceptor thread).
 *
 * Criterion is not built for mingw-w64, so this is a plain program: it says what it checks on stdout, each failure
 * on stderr, and exits 0 only if every check held. tests/test_wine.c runs it under Wine (wine/post_on_iocp). Every
 * wait is bounded.
 */
#include "overlap.h"

#define CHECK_NAME "post_check"
#include "check.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { THREADS = 3, POSTS = 200, HOPS = 300, CLIENTS = 6, MAX_CONNS = 8 };


static ovl_engine *engine_new(int threads)
{
    ovl_config config;
    ovl_config_init(&config);
    config.threads = threads;
    config.backend = "iocp";
    ovl_engine *engine = NULL;
    ovl_error_info err;
    memset(&err, 0, sizeof err);
    int rc = ovl_engine_create(&engine, &config, &err);
    if (rc < 0) {
        fprintf(stderr, "post_check: ovl_engine_create: %s: %s\n", err.what, err.text);
        exit(2);
    }
    return engine;
}

static void engine_start(ovl_engine *engine)
{
    ovl_error_info err;
    memset(&err, 0, sizeof err);
    if (ovl_engine_start(engine, &err) < 0) {
        fprintf(stderr, "post_check: ovl_engine_start: %s: %s\n", err.what, err.text);
        exit(2);
    }
}

/* A listener on 127.0.0.1 (a free port) with `callbacks` and `user`; returns its port. */
static int listen_loopback(ovl_engine *engine, const ovl_callbacks *callbacks, void *user)
{
    ovl_listener *listener = NULL;
    ovl_error_info err;
    memset(&err, 0, sizeof err);
    if (ovl_listen(engine, "127.0.0.1", "0", callbacks, user, &listener, &err) < 0) {
        fprintf(stderr, "post_check: ovl_listen: %s: %s\n", err.what, err.text);
        exit(2);
    }
    return ovl_listener_port(listener);
}

/* Up to 20 s for *value to reach want (a behaviour check, not a timing one). */
static bool wait_until(atomic_int *value, int want)
{
    for (int i = 0; i < 10000 && atomic_load(value) != want; i++)
        Sleep(2);
    return atomic_load(value) == want;
}

/* ---- posts from the main thread run on the named worker, in order ---- */

struct ordered {
    ovl_engine *engine;
    int worker, sequence;
};

static atomic_int ordered_ran, ordered_wrong_worker, ordered_out_of_order;
static int ordered_next[THREADS]; /* touched only by worker i's thread */

static void ordered_run(void *arg)
{
    struct ordered *post = arg;
    if (ovl_worker_index(post->engine) != post->worker)
        atomic_fetch_add(&ordered_wrong_worker, 1);
    if (ordered_next[post->worker] != post->sequence)
        atomic_fetch_add(&ordered_out_of_order, 1);
    ordered_next[post->worker] = post->sequence + 1;
    atomic_fetch_add(&ordered_ran, 1);
}

static void check_ordered(void)
{
    printf("post_check: %d posts to each of %d workers from the main thread\n", POSTS, THREADS);
    ovl_engine *engine = engine_new(THREADS);
    engine_start(engine);
    CHECK(ovl_worker_index(engine) == -1, "the main thread is no worker");
    static struct ordered posts[THREADS][POSTS];
    for (int sequence = 0; sequence < POSTS; sequence++)
        for (int worker = 0; worker < THREADS; worker++) {
            posts[worker][sequence] = (struct ordered){engine, worker, sequence};
            CHECK(ovl_post(engine, worker, ordered_run, &posts[worker][sequence]) == 0, "post %d to worker %d",
                  sequence, worker);
        }
    CHECK(wait_until(&ordered_ran, THREADS * POSTS), "%d of %d posts ran", atomic_load(&ordered_ran),
          THREADS * POSTS);
    CHECK(atomic_load(&ordered_wrong_worker) == 0, "%d posts ran on another worker",
          atomic_load(&ordered_wrong_worker));
    CHECK(atomic_load(&ordered_out_of_order) == 0, "%d posts ran out of order", atomic_load(&ordered_out_of_order));
    CHECK(ovl_post(engine, -1, ordered_run, NULL) == -EINVAL, "worker -1 accepted");
    CHECK(ovl_post(engine, THREADS, ordered_run, NULL) == -EINVAL, "worker == threads accepted");
    CHECK(ovl_post(engine, 0, NULL, NULL) == -EINVAL, "no function accepted");
    ovl_engine_destroy(engine);
}

/* ---- a worker posts to the next one: each hop wakes another completion port from a worker thread ---- */

struct hops {
    ovl_engine *engine;
    atomic_int done, wrong_worker;
    int count, expected_worker;   /* touched by one worker at a time: each hop is posted by the previous one */
};

static void hop(void *arg)
{
    struct hops *hops = arg;
    int self = ovl_worker_index(hops->engine);
    if (self != hops->expected_worker)
        atomic_fetch_add(&hops->wrong_worker, 1);
    if (++hops->count >= HOPS) {
        atomic_store(&hops->done, 1);
        return;
    }
    hops->expected_worker = (self + 1) % THREADS;
    if (ovl_post(hops->engine, hops->expected_worker, hop, hops) < 0)
        atomic_store(&hops->done, -1);
}

static void check_hops(void)
{
    printf("post_check: %d hops from worker to worker\n", HOPS);
    static struct hops hops;
    hops.engine = engine_new(THREADS);
    engine_start(hops.engine);
    hops.expected_worker = 0;
    CHECK(ovl_post(hops.engine, 0, hop, &hops) == 0, "first hop");
    CHECK(wait_until(&hops.done, 1), "the hops stopped after %d (done %d)", hops.count, atomic_load(&hops.done));
    CHECK(atomic_load(&hops.wrong_worker) == 0, "%d hops ran on another worker", atomic_load(&hops.wrong_worker));
    ovl_engine_destroy(hops.engine);
}

/* ---- a connection's work leaves its worker for a blocking thread and comes back ---- */

struct round_trip {
    ovl_engine *engine;
    pthread_t threads[64];               /* joined before destroy (no post may overlap it) */
    atomic_int thread_count;
    ovl_conn *conns[THREADS][MAX_CONNS]; /* [worker][slot]: touched only by that worker */
    atomic_int replies, wrong_worker;
};

struct job {
    struct round_trip *server;
    int worker, slot;
    size_t len;
    char data[256];
};

static void reply_on_worker(void *arg)
{
    struct job *job = arg;
    if (ovl_worker_index(job->server->engine) != job->worker)
        atomic_fetch_add(&job->server->wrong_worker, 1);
    ovl_conn *conn = job->server->conns[job->worker][job->slot];
    if (conn && ovl_send(conn, job->data, job->len) == 0)
        atomic_fetch_add(&job->server->replies, 1);
    free(job);
}

static void *blocking_work(void *arg)
{
    struct job *job = arg;
    Sleep(2); /* stands for a blocking call no worker may make */
    for (size_t i = 0; i < job->len; i++)
        if (job->data[i] >= 'a' && job->data[i] <= 'z')
            job->data[i] = (char)(job->data[i] - 'a' + 'A');
    if (ovl_post(job->server->engine, job->worker, reply_on_worker, job) < 0)
        free(job);
    return NULL;
}

static void round_trip_open(ovl_conn *conn, void *user)
{
    struct round_trip *server = user;
    int worker = ovl_conn_worker(conn);
    for (int slot = 0; slot < MAX_CONNS; slot++)
        if (!server->conns[worker][slot]) {
            server->conns[worker][slot] = conn;
            return;
        }
    ovl_close(conn);
}

static void round_trip_close(ovl_conn *conn, ovl_close_reason reason, int err)
{
    (void)reason;
    (void)err;
    struct round_trip *server = ovl_conn_user(conn);
    int worker = ovl_conn_worker(conn);
    for (int slot = 0; slot < MAX_CONNS; slot++)
        if (server->conns[worker][slot] == conn)
            server->conns[worker][slot] = NULL;
}

static void round_trip_data(ovl_conn *conn, ovl_buf *buf)
{
    struct round_trip *server = ovl_conn_user(conn);
    int worker = ovl_conn_worker(conn);
    struct job *job = calloc(1, sizeof *job);
    int index = atomic_fetch_add(&server->thread_count, 1);
    if (!job || index >= 64) {
        free(job);
        ovl_buf_release(buf);
        ovl_close(conn);
        return;
    }
    job->server = server;
    job->worker = worker;
    for (int slot = 0; slot < MAX_CONNS; slot++)
        if (server->conns[worker][slot] == conn)
            job->slot = slot;
    job->len = ovl_buf_len(buf) < sizeof job->data ? ovl_buf_len(buf) : sizeof job->data;
    memcpy(job->data, ovl_buf_data(buf), job->len);
    ovl_buf_release(buf);
    if (pthread_create(&server->threads[index], NULL, blocking_work, job) != 0) {
        server->threads[index] = 0;
        free(job);
    }
}

static void check_round_trip(void)
{
    printf("post_check: %d connections whose replies are made on a blocking thread and posted back\n", CLIENTS);
    static struct round_trip server;
    server.engine = engine_new(THREADS);
    ovl_callbacks callbacks = {.on_open = round_trip_open, .on_data = round_trip_data, .on_close = round_trip_close};
    int port = listen_loopback(server.engine, &callbacks, &server);
    engine_start(server.engine);
    SOCKET fds[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        fds[i] = check_connect(port, 10000);
        CHECK(fds[i] != INVALID_SOCKET, "client %d: connect: error %d", i, WSAGetLastError());
        CHECK(send(fds[i], "hello, worker", 13, 0) == 13, "client %d: send: error %d", i, WSAGetLastError());
    }
    for (int i = 0; i < CLIENTS; i++) {
        char reply[32];
        int got = 0;
        while (got < 13) {
            int n = recv(fds[i], reply + got, (int)sizeof reply - got, 0);
            if (n <= 0)
                break;
            got += n;
        }
        CHECK(got == 13 && memcmp(reply, "HELLO, WORKER", 13) == 0, "client %d got %d bytes '%.*s'", i, got, got,
              reply);
        closesocket(fds[i]);
    }
    CHECK(atomic_load(&server.replies) == CLIENTS, "%d of %d replies sent", atomic_load(&server.replies), CLIENTS);
    CHECK(atomic_load(&server.wrong_worker) == 0, "%d replies ran on another worker than their connection's",
          atomic_load(&server.wrong_worker));
    /* Stop first: the last callback that started a thread has returned, and the count is final. */
    ovl_engine_stop(server.engine);
    for (int i = 0; i < atomic_load(&server.thread_count) && i < 64; i++)
        if (server.threads[i])
            pthread_join(server.threads[i], NULL);
    ovl_engine_destroy(server.engine);
}

/* ---- what never ran is run by ovl_engine_destroy ---- */

static void count_run(void *arg)
{
    atomic_fetch_add((atomic_int *)arg, 1);
}

static void check_destroy_runs_leftovers(void)
{
    printf("post_check: posts to an engine that never started, and to one that stopped, run in destroy\n");
    static atomic_int never, after_stop;
    ovl_engine *engine = engine_new(2);
    CHECK(ovl_post(engine, 0, count_run, &never) == 0, "post before start");
    CHECK(ovl_post(engine, 1, count_run, &never) == 0, "post before start");
    Sleep(5);
    CHECK(atomic_load(&never) == 0, "a post ran on an engine that never started");
    ovl_engine_destroy(engine);
    CHECK(atomic_load(&never) == 2, "destroy ran %d of the 2 posts", atomic_load(&never));
    engine = engine_new(2);
    engine_start(engine);
    ovl_engine_stop(engine);
    CHECK(ovl_post(engine, 1, count_run, &after_stop) == 0, "post after the stop");
    ovl_engine_destroy(engine);
    CHECK(atomic_load(&after_stop) == 1, "destroy ran %d of the post made after the stop", atomic_load(&after_stop));
}

/* ---- a post that blocks worker 0 does not hold up accepting (issue 16) ---- */

/* An embedder's callback that blocks (here a posted function waiting for the main thread) holds its worker, and
 * until the acceptor thread, worker 0 also held every AcceptEx completion of the engine: no client was accepted
 * anywhere while it blocked. The placement is made deterministic first: worker 0 gets a connection that stays
 * open, worker 1 none, so each new client (least-loaded placement) goes to worker 1. Each client then has 10 s to
 * be echoed by worker 1 while worker 0 blocks (seconds: a behaviour check, not a timing one). */
enum { BLOCKED_CLIENTS = 6, BLOCK_LIMIT_MS = 60000, ECHO_WAIT_MS = 10000 };

struct blocked {
    ovl_engine *engine;
    atomic_int opened, closed, blocking, release;
};

/* The reply names the worker: its index as one digit, then the bytes received. */
static void blocked_data(ovl_conn *conn, ovl_buf *buf)
{
    char index = (char)('0' + ovl_conn_worker(conn));
    ovl_send(conn, &index, 1);
    ovl_send(conn, ovl_buf_data(buf), ovl_buf_len(buf));
    ovl_buf_release(buf);
}

static void blocked_open(ovl_conn *conn, void *user)
{
    (void)conn;
    atomic_fetch_add(&((struct blocked *)user)->opened, 1);
}

static void blocked_close(ovl_conn *conn, ovl_close_reason reason, int err)
{
    (void)reason;
    (void)err;
    atomic_fetch_add(&((struct blocked *)ovl_conn_user(conn))->closed, 1);
}

static void block_worker(void *arg)
{
    struct blocked *server = arg;
    atomic_store(&server->blocking, 1);
    for (int waited = 0; waited < BLOCK_LIMIT_MS && !atomic_load(&server->release); waited += 5)
        Sleep(5); /* stands for an embedder's call that blocks */
    atomic_store(&server->blocking, 2);
}

static uint64_t now_ms(void)
{
    return GetTickCount64();
}

/* Connect, send `text`, read the reply within `wait_ms`: the worker index it names, or -1. */
static int exchange(SOCKET fd, const char *text, DWORD wait_ms)
{
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, (const char *)&wait_ms, sizeof wait_ms);
    int len = (int)strlen(text);
    if (send(fd, text, len, 0) != len)
        return -1;
    char reply[64];
    int got = 0;
    while (got < len + 1) {
        int n = recv(fd, reply + got, len + 1 - got, 0);
        if (n <= 0)
            return -1;
        got += n;
    }
    if (memcmp(reply + 1, text, (size_t)len) != 0 || reply[0] < '0' || reply[0] > '9')
        return -1;
    return reply[0] - '0';
}

/* Until the engine counts `open` connections (their worker's count, which placement reads, is updated before). */
static bool wait_open(ovl_engine *engine, uint64_t open)
{
    ovl_stats stats;
    for (int i = 0; i < 5000; i++) {
        ovl_engine_stats(engine, &stats);
        if (stats.conns_open == open)
            return true;
        Sleep(2);
    }
    return false;
}

static void check_blocked_worker(void)
{
    printf("post_check: worker 0 blocked by a posted function; %d clients must be accepted and echoed meanwhile\n",
           BLOCKED_CLIENTS);
    static struct blocked server;
    server.engine = engine_new(2);
    engine_start(server.engine);
    /* After the start: the listener reaches the accepting thread as a command. */
    ovl_callbacks callbacks = {.on_open = blocked_open, .on_data = blocked_data, .on_close = blocked_close};
    int port = listen_loopback(server.engine, &callbacks, &server);

    /* A connection held open on worker 0: the first client lands on either worker; if on worker 1, the second goes
     * to worker 0 (fewer connections) and the first is closed. */
    SOCKET held = check_connect(port, 0);
    int held_worker = held == INVALID_SOCKET ? -1 : exchange(held, "held", ECHO_WAIT_MS);
    CHECK(held_worker >= 0, "the first client was not echoed (error %d)", WSAGetLastError());
    if (held_worker == 1) {
        SOCKET first = held;
        held = check_connect(port, 0);
        held_worker = held == INVALID_SOCKET ? -1 : exchange(held, "held", ECHO_WAIT_MS);
        closesocket(first);
        CHECK(held_worker == 0, "the second client went to worker %d, not to worker 0 (no connection)", held_worker);
    }
    CHECK(wait_open(server.engine, 1), "the first client's close was not seen");

    CHECK(ovl_post(server.engine, 0, block_worker, &server) == 0, "post the blocking function");
    for (int i = 0; i < 5000 && atomic_load(&server.blocking) == 0; i++)
        Sleep(2);
    CHECK(atomic_load(&server.blocking) == 1, "worker 0 did not start blocking");

    int served = 0;
    uint64_t slowest = 0;
    for (int i = 0; i < BLOCKED_CLIENTS; i++) {
        char text[32];
        snprintf(text, sizeof text, "client %d", i);
        uint64_t start = now_ms();
        SOCKET fd = check_connect(port, 0);
        int worker = fd == INVALID_SOCKET ? -1 : exchange(fd, text, ECHO_WAIT_MS);
        uint64_t took = now_ms() - start;
        if (fd != INVALID_SOCKET)
            closesocket(fd);
        if (worker != 1) {
            CHECK(worker == 1, "client %d: %s after %llu ms while worker 0 was blocked", i,
                  worker < 0 ? "no echo" : "echoed by worker 0", (unsigned long long)took);
            break; /* the accepts are held: the others would wait as long */
        }
        served++;
        slowest = took > slowest ? took : slowest;
        CHECK(wait_open(server.engine, 1), "client %d: its close was not seen", i);
    }
    CHECK(atomic_load(&server.blocking) == 1, "worker 0 stopped blocking before the clients were done");
    printf("post_check: %d of %d clients echoed by worker 1 while worker 0 blocked (slowest %llu ms)\n", served,
           BLOCKED_CLIENTS, (unsigned long long)slowest);
    atomic_store(&server.release, 1);
    CHECK(held != INVALID_SOCKET && exchange(held, "after", ECHO_WAIT_MS) == 0,
          "the connection on worker 0 was not echoed after the block ended");
    if (held != INVALID_SOCKET)
        closesocket(held);
    ovl_engine_stop(server.engine);
    ovl_stats stats;
    ovl_engine_stats(server.engine, &stats);
    CHECK(stats.conns_accepted == stats.context_updates && stats.errors == 0,
          "accepted %llu, context updates %llu, errors %llu", (unsigned long long)stats.conns_accepted,
          (unsigned long long)stats.context_updates, (unsigned long long)stats.errors);
    ovl_engine_destroy(server.engine);
}

int main(int argc, char **argv)
{
    check_begin();
    if (argc > 1 && strcmp(argv[1], "blocked-worker") == 0) {
        check_blocked_worker();
    } else {
        check_ordered();
        check_hops();
        check_round_trip();
        check_destroy_runs_leftovers();
    }
    return check_end();
}
