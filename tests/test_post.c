/*
 * test_post.c - ovl_post: work handed to a worker from any thread runs on that worker, in order; a connection's
 * work can leave its worker for a blocking thread and come back; what never ran is run by ovl_engine_destroy.
 */
#include <criterion/criterion.h>

#include "overlap.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { THREADS = 3, POSTS = 200 };

static const char *test_backend(void)
{
    const char *name = getenv("OVERLAP_TEST_BACKEND");
    return name && *name ? name : NULL;
}

static ovl_engine *engine_new(int threads)
{
    ovl_config config;
    ovl_config_init(&config);
    config.threads = threads;
    config.backend = test_backend();
    ovl_engine *engine = NULL;
    ovl_error_info err;
    cr_assert_eq(ovl_engine_create(&engine, &config, &err), 0, "%s: %s", err.what, err.text);
    return engine;
}

/* Sleep a little, for polling loops with a deadline (a behaviour test, not a timing one). */
static void pause_briefly(void)
{
    struct timespec ts = {0, 2 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

static bool wait_until(atomic_int *value, int expected)
{
    for (int i = 0; i < 10000 && atomic_load(value) != expected; i++)
        pause_briefly();
    return atomic_load(value) == expected;
}

/* ---- posts run on the named worker, in order ---- */

struct ordered {
    ovl_engine *engine;
    int worker;
    int sequence;
    struct ordered_state *state;
};

struct ordered_state {
    atomic_int ran;
    atomic_int wrong_worker;
    atomic_int out_of_order;
    int next[THREADS];          /* touched only by worker i's thread */
};

static void ordered_run(void *arg)
{
    struct ordered *post = arg;
    struct ordered_state *state = post->state;
    if (ovl_worker_index(post->engine) != post->worker)
        atomic_fetch_add(&state->wrong_worker, 1);
    if (state->next[post->worker] != post->sequence)
        atomic_fetch_add(&state->out_of_order, 1);
    state->next[post->worker] = post->sequence + 1;
    atomic_fetch_add(&state->ran, 1);
}

Test(post, runs_on_the_named_worker_in_order, .timeout = 30)
{
    ovl_engine *engine = engine_new(THREADS);
    ovl_error_info err;
    cr_assert_eq(ovl_engine_start(engine, &err), 0, "%s", err.text);
    cr_assert_eq(ovl_worker_index(engine), -1, "the test thread is no worker");
    static struct ordered posts[THREADS][POSTS];
    static struct ordered_state state;
    for (int sequence = 0; sequence < POSTS; sequence++) {
        for (int worker = 0; worker < THREADS; worker++) {
            posts[worker][sequence] = (struct ordered){engine, worker, sequence, &state};
            cr_assert_eq(ovl_post(engine, worker, ordered_run, &posts[worker][sequence]), 0);
        }
    }
    cr_assert(wait_until(&state.ran, THREADS * POSTS), "%d of %d posts ran", atomic_load(&state.ran),
              THREADS * POSTS);
    cr_expect_eq(atomic_load(&state.wrong_worker), 0, "posts ran on another worker");
    cr_expect_eq(atomic_load(&state.out_of_order), 0, "posts to one worker ran out of order");
    ovl_engine_destroy(engine);
}

Test(post, refuses_what_cannot_run, .timeout = 30)
{
    ovl_engine *engine = engine_new(2);
    cr_expect_eq(ovl_post(engine, -1, ordered_run, NULL), -EINVAL);
    cr_expect_eq(ovl_post(engine, 2, ordered_run, NULL), -EINVAL, "worker == threads");
    cr_expect_eq(ovl_post(engine, 0, NULL, NULL), -EINVAL, "no function");
    cr_expect_eq(ovl_post(NULL, 0, ordered_run, NULL), -EINVAL, "no engine");
    cr_expect_eq(ovl_worker_index(NULL), -1);
    ovl_engine_destroy(engine); /* nothing was posted: nothing runs */
}

/* ---- what never ran is run by ovl_engine_destroy ---- */

static void count_and_free(void *arg)
{
    atomic_int *counter = arg;
    atomic_fetch_add(counter, 1);
}

Test(post, destroy_runs_what_never_ran, .timeout = 30)
{
    ovl_engine *engine = engine_new(2);
    static atomic_int ran;
    /* Never started: nothing runs until the engine goes. */
    cr_assert_eq(ovl_post(engine, 0, count_and_free, &ran), 0);
    cr_assert_eq(ovl_post(engine, 1, count_and_free, &ran), 0);
    pause_briefly();
    cr_expect_eq(atomic_load(&ran), 0, "a post ran on an engine that never started");
    ovl_engine_destroy(engine);
    cr_expect_eq(atomic_load(&ran), 2, "destroy ran %d of the 2 posts", atomic_load(&ran));
}

struct chain {
    ovl_engine *engine;
    atomic_int ran;
};

static void chain_last(void *arg)
{
    struct chain *chain = arg;
    atomic_fetch_add(&chain->ran, 1);
}

static void chain_first(void *arg)
{
    struct chain *chain = arg;
    atomic_fetch_add(&chain->ran, 1);
    /* Posting again from a post that destroy runs: to the same worker (the one whose queue is being emptied) and to
     * the other one. Neither may be lost. */
    cr_assert_eq(ovl_post(chain->engine, 0, chain_last, chain), 0);
    cr_assert_eq(ovl_post(chain->engine, 1, chain_last, chain), 0);
}

Test(post, destroy_runs_posts_made_by_posts, .timeout = 30)
{
    static struct chain chain;
    chain.engine = engine_new(2);
    cr_assert_eq(ovl_post(chain.engine, 1, chain_first, &chain), 0);
    cr_assert_eq(ovl_post(chain.engine, 0, chain_first, &chain), 0);
    ovl_engine_destroy(chain.engine);
    cr_expect_eq(atomic_load(&chain.ran), 6, "destroy ran %d of the 6 posts", atomic_load(&chain.ran));
}

/* ---- a connection's work leaves its worker and comes back ---- */

/* The server: on_data hands the bytes to a "blocking" thread, which upper-cases them and posts the reply back to the
 * connection's worker; that worker finds the connection through the table only it touches. */
enum { MAX_CONNS = 8 };

struct round_trip {
    ovl_engine *engine;
    pthread_t threads[64];               /* the blocking threads, joined before destroy (no post may overlap it) */
    atomic_int thread_count;
    ovl_conn *conns[THREADS][MAX_CONNS]; /* [worker][slot]: touched only by that worker */
    atomic_int replies;
    atomic_int wrong_worker;
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
    pause_briefly(); /* stands for a blocking call no worker may make */
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
    for (int slot = 0; slot < MAX_CONNS; slot++) {
        if (!server->conns[worker][slot]) {
            server->conns[worker][slot] = conn;
            return;
        }
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
    cr_assert(job);
    job->server = server;
    job->worker = worker;
    for (int slot = 0; slot < MAX_CONNS; slot++)
        if (server->conns[worker][slot] == conn)
            job->slot = slot;
    job->len = ovl_buf_len(buf) < sizeof job->data ? ovl_buf_len(buf) : sizeof job->data;
    memcpy(job->data, ovl_buf_data(buf), job->len);
    ovl_buf_release(buf);
    int index = atomic_fetch_add(&server->thread_count, 1);
    cr_assert(index < 64);
    cr_assert_eq(pthread_create(&server->threads[index], NULL, blocking_work, job), 0);
}

Test(post, work_leaves_the_worker_and_comes_back, .timeout = 30)
{
    static struct round_trip server;
    server.engine = engine_new(THREADS);
    ovl_callbacks callbacks = {.on_open = round_trip_open, .on_data = round_trip_data, .on_close = round_trip_close};
    ovl_listener *listener = NULL;
    ovl_error_info err;
    cr_assert_eq(ovl_listen(server.engine, "127.0.0.1", "0", &callbacks, &server, &listener, &err), 0, "%s",
                 err.text);
    cr_assert_eq(ovl_engine_start(server.engine, &err), 0, "%s", err.text);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)ovl_listener_port(listener))};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    enum { CLIENTS = 6 };
    int fds[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        cr_assert(fds[i] >= 0);
        cr_assert_eq(connect(fds[i], (struct sockaddr *)&address, sizeof address), 0);
        cr_assert_eq(send(fds[i], "hello, worker", 13, 0), 13);
    }
    for (int i = 0; i < CLIENTS; i++) {
        char reply[32];
        size_t got = 0;
        struct timeval timeout = {10, 0};
        setsockopt(fds[i], SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
        while (got < 13) {
            ssize_t n = recv(fds[i], reply + got, sizeof reply - got, 0);
            cr_assert(n > 0, "client %d: no reply (%zd)", i, n);
            got += (size_t)n;
        }
        cr_expect(got == 13 && memcmp(reply, "HELLO, WORKER", 13) == 0, "client %d got '%.*s'", i, (int)got, reply);
        close(fds[i]);
    }
    cr_expect_eq(atomic_load(&server.replies), CLIENTS);
    cr_expect_eq(atomic_load(&server.wrong_worker), 0, "a reply ran on another worker than its connection's");
    /* ovl_engine_stop first: the last callback that started a thread has returned, and the count is final. */
    ovl_engine_stop(server.engine);
    for (int i = 0; i < atomic_load(&server.thread_count); i++)
        pthread_join(server.threads[i], NULL);
    ovl_engine_destroy(server.engine);
}
