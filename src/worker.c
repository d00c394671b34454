/*
 * worker.c - what a worker thread does: its loop (the same for every backend), the commands other threads post to
 * it, its periodic tick, and its part of a graceful stop.
 */
#include "backend.h"

#include "alloc.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

_Thread_local struct ovl__worker *ovl__current_worker;

/* ---- commands: how other threads hand work to a worker ---- */

static bool is_handoff(int kind)
{
    return kind == OVL__CMD_ADOPT || kind == OVL__CMD_CONNECT;
}

static int post(struct ovl__worker *worker, struct ovl__command *command)
{
    command->next = NULL;
    if (is_handoff(command->kind)) /* before it is queued: the worker's take must never find it uncounted */
        atomic_fetch_add_explicit(&worker->handoffs, 1, memory_order_relaxed);
    pthread_mutex_lock(&worker->command_lock);
    if (worker->command_tail)
        worker->command_tail->next = command;
    else
        worker->command_head = command;
    worker->command_tail = command;
    pthread_mutex_unlock(&worker->command_lock);
    /* seq_cst against ovl__worker_main's store of `ready`: either we see ready and wake, or it sees pending. */
    atomic_store(&worker->command_pending, 1);
    if (atomic_load(&worker->ready))
        worker->engine->backend->wake(worker);
    return 0;
}

uint32_t ovl__worker_load(struct ovl__worker *worker)
{
    return atomic_load_explicit(&worker->conns_shown, memory_order_relaxed) +
           atomic_load_explicit(&worker->handoffs, memory_order_relaxed);
}

struct ovl__worker *ovl__worker_least_loaded(ovl_engine *engine, uint32_t turn)
{
    struct ovl__worker *best = NULL;
    uint32_t best_load = UINT32_MAX;
    for (int i = 0; i < engine->thread_count; i++) {
        struct ovl__worker *worker = &engine->workers[(turn + (uint32_t)i) % (uint32_t)engine->thread_count];
        if (!atomic_load(&worker->taking))
            continue;
        uint32_t load = ovl__worker_load(worker);
        if (load < best_load) {
            best = worker;
            best_load = load;
        }
    }
    return best;
}

int ovl__worker_post(struct ovl__worker *worker, int kind, struct ovl__listen_socket *socket, ovl_conn *conn)
{
    struct ovl__command *command = ovl__zalloc(sizeof *command);
    if (!command)
        return -ENOMEM;
    command->kind = kind;
    command->listen_socket = socket;
    command->conn = conn;
    return post(worker, command);
}

int ovl__worker_adopt(struct ovl__worker *worker, struct ovl__listen_socket *socket, ovl__socket fd, const char *peer)
{
    struct ovl__command *command = ovl__zalloc(sizeof *command);
    if (!command)
        return -ENOMEM;
    command->kind = OVL__CMD_ADOPT;
    command->listen_socket = socket;
    command->socket = fd;
    snprintf(command->peer, sizeof command->peer, "%s", peer ? peer : "");
    return post(worker, command);
}

int ovl_post(ovl_engine *engine, int index, void (*fn)(void *arg), void *arg)
{
    if (!engine || !fn || index < 0 || index >= engine->thread_count)
        return -EINVAL;
    struct ovl__command *command = ovl__zalloc(sizeof *command);
    if (!command)
        return -ENOMEM;
    command->kind = OVL__CMD_POST;
    command->fn = fn;
    command->arg = arg;
    return post(&engine->workers[index], command);
}

int ovl_worker_index(const ovl_engine *engine)
{
    struct ovl__worker *worker = ovl__current_worker;
    return worker && engine && worker->engine == engine && !worker->acceptor ? worker->index : -1;
}

int ovl__worker_release(struct ovl__worker *worker, ovl_buf *buf)
{
    struct ovl__command *command = ovl__zalloc(sizeof *command);
    if (!command)
        return -ENOMEM;
    command->kind = OVL__CMD_RELEASE;
    command->buf = buf;
    return post(worker, command);
}

static void begin_stop(struct ovl__worker *worker)
{
    if (worker->stopping)
        return;
    worker->stopping = true;
    atomic_store(&worker->taking, 0); /* a stopping worker would only refuse what is handed to it, or never see it */
    ovl_engine *engine = worker->engine;
    engine->backend->accept_stop(worker);
    if (worker->accepts && atomic_fetch_sub(&engine->accepting_workers, 1) == 1) {
        /* Nobody accepts any more: close the listening sockets now, not after the drain, so that connections go
         * to a process sharing the port (SO_REUSEPORT; the kernel's tcp_migrate_req moves what was queued here to
         * it) or are refused at once instead of waiting in a backlog nobody reads. */
        pthread_mutex_lock(&engine->lock);
        for (ovl_listener *listener = engine->listeners; listener; listener = listener->next)
            ovl__listener_close(listener);
        pthread_mutex_unlock(&engine->lock);
    }
    for (ovl_conn *conn = worker->conns; conn; conn = conn->next)
        ovl__conn_begin_drain(conn);
    if (worker->conn_count)
        ovl__timer_start_ms(worker, &worker->drain_timer, engine->config.drain_timeout_ms);
    /* Armed whatever is open: the backend's own operations (accepts being cancelled) can hold the loop too. The
     * loop ends before it fires unless something the system was asked to cancel has not completed. */
    ovl__timer_start_ms(worker, &worker->stop_timer,
                        (uint64_t)engine->config.drain_timeout_ms + engine->config.stop_grace_ms);
}

void ovl__worker_tick(struct ovl__worker *worker)
{
    /* Stopping: the drain deadline bounds every connection already. Connecting: the connect timeout does.
     * ovl__conn_close only marks a connection (it is freed in the next flush), so the walk stays valid. A
     * connection with bytes queued waits for its peer to read them: not idle, but stalled once the peer has taken
     * none of them for stall_timeout_ms. A paused one waits for something else (its partner in a proxy, the
     * application): not idle either. */
    ovl__pool_trim(&worker->pool, worker->now_ms);
    uint32_t idle = worker->engine->config.idle_timeout_ms;
    int stall_config = worker->engine->config.stall_timeout_ms;
    uint32_t stall = stall_config > 0 ? (uint32_t)stall_config : 0;
    if ((!idle && !stall) || worker->stopping)
        return;
    uint64_t now = worker->now_ms;
    for (ovl_conn *conn = worker->conns; conn; conn = conn->next) {
        if ((conn->flags & (OVL__C_OPEN | OVL__C_CLOSING | OVL__C_DRAINING)) != OVL__C_OPEN)
            continue;
        if (conn->queue_head) {
            if (stall && now - conn->sent_ms >= stall) {
                ovl__count(&worker->counters.stalled_closed, 1);
                ovl__conn_close(conn, OVL_CLOSE_STALLED, -ETIMEDOUT);
            }
        } else if (idle && !(conn->flags & OVL__C_PAUSED) && now - conn->active_ms >= idle) {
            ovl__count(&worker->counters.idle_closed, 1);
            ovl__conn_close(conn, OVL_CLOSE_IDLE, -ETIMEDOUT);
        }
    }
}

/* How the log names a loop: "worker 3", or "acceptor". */
static const char *loop_name(const struct ovl__worker *worker, char *out, size_t size)
{
    if (worker->acceptor)
        snprintf(out, size, "acceptor");
    else
        snprintf(out, size, "worker %d", worker->index);
    return out;
}

static void drain_timer_fired(struct ovl__worker *worker, struct ovl__timer *timer)
{
    (void)timer;
    worker->drain_expired_ms = worker->now_ms;
    ovl__worker_drain_expired(worker);
}

/* The hard stop deadline, stop_grace_ms after the drain's: whatever still holds the loop is an operation whose
 * cancellation has not completed (Windows can hold a cancelled AcceptEx or WSARecv). Its socket is closed, which
 * completes what is pending on it; stop_grace_ms later the loop gives up on what still has not completed
 * (stop_abandon). Without this a stop could wait for ever, and ovl_engine_stop with it. */
static void stop_timer_fired(struct ovl__worker *worker, struct ovl__timer *timer)
{
    ovl_engine *engine = worker->engine;
    const struct ovl__backend *backend = engine->backend;
    if (worker->stop_stage > 0) {
        worker->stop_stage = 2;
        return;
    }
    /* A worker that ran late (a long callback) finds both deadlines due in one turn: the connections the drain
     * deadline has just closed still get their grace before their sockets are. */
    if (worker->drain_expired_ms && worker->now_ms < worker->drain_expired_ms + engine->config.stop_grace_ms) {
        ovl__timer_start_ms(worker, timer, worker->drain_expired_ms + engine->config.stop_grace_ms - worker->now_ms);
        return;
    }
    worker->stop_stage = 1;
    ovl__worker_drain_expired(worker); /* every connection is closing by now; this makes sure */
    bool busy = backend->busy && backend->busy(worker);
    const char *action = backend->stop_force ? "closing their sockets" : "waiting once more before giving up on them";
    if (worker->acceptor)
        ovl__log(engine, OVL_LOG_WARNING,
                 "acceptor: stop: cancelled accepts still pending %u ms after the drain deadline: %s",
                 engine->config.stop_grace_ms, action);
    else
        ovl__log(engine, OVL_LOG_WARNING,
                 "worker %d: stop: %u connection%s%s still waiting for cancelled operations %u ms after the drain "
                 "deadline: %s",
                 worker->index, worker->conn_count, worker->conn_count == 1 ? "" : "s",
                 busy ? " and the backend's own operations" : "", engine->config.stop_grace_ms, action);
    if (backend->stop_force)
        backend->stop_force(worker);
    ovl__timer_start_ms(worker, timer, engine->config.stop_grace_ms);
}

/* The last step of the hard stop: the sockets were closed stop_grace_ms ago and some completions have still not
 * come. The loop ends without them; what they may still write is leaked, never freed (ovl__conn_abandon, the
 * backend's stop_abandon, the pool in ovl_engine_destroy). */
static void stop_abandon(struct ovl__worker *worker)
{
    const struct ovl__backend *backend = worker->engine->backend;
    unsigned conns = 0, ops = 0;
    for (;;) {
        ovl__worker_flush(worker); /* frees what did complete, also after an on_close below */
        if (!worker->conns)
            break;
        ops += ovl__conn_abandon(worker->conns);
        conns++;
    }
    if (backend->stop_abandon)
        ops += backend->stop_abandon(worker);
    if (!ops)
        return;
    worker->abandoned = true;
    ovl__count(&worker->counters.stop_abandoned, ops);
    char name[32];
    ovl__log(worker->engine, OVL_LOG_ERROR,
             "%s: stop: %u operation%s (%u connection%s) still pending %u ms after their sockets were closed: "
             "abandoned, their memory is leaked",
             loop_name(worker, name, sizeof name), ops, ops == 1 ? "" : "s", conns, conns == 1 ? "" : "s",
             worker->engine->config.stop_grace_ms);
}

static void tick_timer_fired(struct ovl__worker *worker, struct ovl__timer *timer)
{
    ovl__worker_tick(worker);
    ovl__timer_start_ms(worker, timer, worker->tick_ms);
}

void ovl__worker_drain_expired(struct ovl__worker *worker)
{
    for (ovl_conn *conn = worker->conns; conn; conn = conn->next)
        ovl__conn_close(conn, OVL_CLOSE_ENGINE_STOP, -ETIMEDOUT);
}

struct ovl__command *ovl__worker_take_commands(struct ovl__worker *worker)
{
    pthread_mutex_lock(&worker->command_lock);
    struct ovl__command *list = worker->command_head;
    worker->command_head = worker->command_tail = NULL;
    pthread_mutex_unlock(&worker->command_lock);
    return list;
}

void ovl__worker_run_commands(struct ovl__worker *worker)
{
    if (!atomic_exchange(&worker->command_pending, 0))
        return;
    struct ovl__command *list = ovl__worker_take_commands(worker);
    while (list) {
        struct ovl__command *command = list;
        list = command->next;
        if (is_handoff(command->kind))
            atomic_fetch_sub_explicit(&worker->handoffs, 1, memory_order_relaxed);
        switch (command->kind) {
        case OVL__CMD_LISTEN:
            if (!worker->stopping)
                worker->engine->backend->accept_start(worker, command->listen_socket);
            break;
        case OVL__CMD_CONNECT:
            ovl__conn_attach(worker, command->conn);
            if (worker->stopping)
                ovl__conn_close(command->conn, OVL_CLOSE_ENGINE_STOP, -ESHUTDOWN);
            else
                ovl__conn_connect_next(command->conn, 0);
            break;
        case OVL__CMD_ADOPT: {
            /* The peer text goes in before on_open: copied after it, an empty one (epoll and io_uring hand none)
             * wiped what on_open's ovl_conn_peer had cached, and a peer that reset before on_close read as
             * "(unknown)" there. */
            (void)ovl__worker_accepted(worker, command->listen_socket, command->socket, command->peer);
            break;
        }
        case OVL__CMD_RELEASE:
            ovl__buf_free(command->buf);
            break;
        case OVL__CMD_POST:
            command->fn(command->arg);
            break;
        }
        ovl__free(command);
    }
    if (!worker->stopping && atomic_load(&worker->engine->stop_requested))
        begin_stop(worker);
}

bool ovl__worker_done(const struct ovl__worker *worker)
{
    return worker->stopping && worker->conn_count == 0 && !worker->dead_head;
}

/* ---- the loop ---- */

/* The worker loop, the same for every backend (as libuv's uv_run over each platform's uv__io_poll): send what is
 * queued and free what closed, stop when done, wait for I/O or the earliest timer, run the timers that are due,
 * then the commands other threads posted. */
static void worker_loop(struct ovl__worker *worker)
{
    const struct ovl__backend *backend = worker->engine->backend;
    for (;;) {
        ovl__worker_flush(worker);
        if (ovl__worker_done(worker) && !(backend->busy && backend->busy(worker)))
            break;
        if (worker->stop_stage == 2) {
            stop_abandon(worker);
            break;
        }
        /* One clock read bounds the wait and marks its start (the io_uring spin's measure); the backend reads it
         * once more as the wait returns (ovl__worker_clock), and the timers once more after the batch. */
        worker->poll_ns = ovl__clock_ns();
        backend->poll(worker, ovl__timers_wait_ns(worker, worker->poll_ns));
        ovl__timers_run(worker);
        ovl__worker_run_commands(worker);
    }
}

void *ovl__worker_main(void *arg)
{
    struct ovl__worker *worker = arg;
    ovl_engine *engine = worker->engine;
    ovl__current_worker = worker;
    ovl__worker_clock(worker);
    int rc = 0;
    if (!worker->acceptor) { /* the acceptor receives nothing: no pool */
        rc = ovl__pool_init(&worker->pool, worker, engine->config.buffer_size, engine->config.buffer_count,
                            engine->pool_limit);
        if (rc < 0)
            ovl__error_set(&worker->init_error, rc, NULL, "allocate %u receive buffers of %u bytes",
                           engine->config.buffer_count, engine->config.buffer_size);
    }
    if (rc == 0)
        rc = engine->backend->worker_init(worker, &worker->init_error);
    if (rc == 0) {
        /* Before the report: once ovl_engine_start returns (and once the acceptor below goes on), every worker set
         * up may be woken and handed connections. */
        atomic_store(&worker->ready, 1);
        atomic_store(&worker->taking, !worker->acceptor);
    }
    pthread_mutex_lock(&engine->start_lock);
    worker->init_result = rc;
    engine->workers_ready++;
    pthread_cond_broadcast(&engine->start_cond);
    /* The acceptor, started after every worker thread, posts no accept before they are set up: a connection it
     * accepted then would find nobody to take it (ovl__worker_least_loaded) and be refused. */
    while (worker->acceptor && engine->workers_ready < engine->thread_count + 1)
        pthread_cond_wait(&engine->start_cond, &engine->start_lock);
    pthread_mutex_unlock(&engine->start_lock);
    if (rc == 0) {
        worker->drain_timer.fire = drain_timer_fired;
        worker->stop_timer.fire = stop_timer_fired;
        worker->tick_timer.fire = tick_timer_fired;
        if (!worker->acceptor) /* nothing of its own to sweep or trim */
            ovl__timer_start_ms(worker, &worker->tick_timer, worker->tick_ms);
        ovl__worker_run_commands(worker);
        worker_loop(worker);
    }
    /* The backend state and the pool live on until ovl_engine_destroy: another thread may still wake() this
     * worker, and buffers the application holds stay readable until then. */
    return NULL;
}
