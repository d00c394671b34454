/*
 * conn.c - what happens to a connection, whatever the backend: the send queue, half-close, graceful drain, close
 * reasons, and when a connection may be freed.
 *
 * Two rules keep this safe. A connection is freed only from ovl__worker_flush(), at the top of the worker loop,
 * never inside a callback or a completion handler that may still touch it; and only once no backend operation is in
 * flight on it (conn->inflight == 0). Sends are started from the same flush, after a whole batch of completions has
 * been handled, so several ovl_send calls in one batch leave in one system call.
 */
#include "backend.h"

#include "alloc.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static inline const struct ovl__backend *backend_of(const ovl_conn *conn)
{
    return conn->worker->engine->backend;
}

ovl_conn *ovl__conn_new(ovl_engine *engine, ovl__socket fd, const ovl_callbacks *callbacks, void *user)
{
    ovl_conn *conn = ovl__zalloc(sizeof *conn + engine->backend->conn_extra);
    if (!conn)
        return NULL;
    conn->fd = fd;
    if (callbacks)
        conn->callbacks = *callbacks;
    conn->user = user;
    conn->max_pending = engine->config.max_pending;
    return conn;
}

void ovl__conn_attach(struct ovl__worker *worker, ovl_conn *conn)
{
    conn->worker = worker;
    conn->next = worker->conns;
    if (worker->conns)
        worker->conns->prev = conn;
    worker->conns = conn;
    worker->conn_count++;
    ovl__pool_fit(&worker->pool, worker->conn_count);
    atomic_store_explicit(&worker->conns_shown, worker->conn_count, memory_order_relaxed);
    atomic_fetch_add_explicit(&worker->engine->open_conns, 1, memory_order_relaxed);
}

void ovl__conn_free_unattached(ovl_conn *conn)
{
    ovl__free(conn);
}

static void mark_dead(ovl_conn *conn)
{
    if (conn->flags & OVL__C_DEAD)
        return;
    conn->flags |= OVL__C_DEAD;
    conn->dead_next = conn->worker->dead_head;
    conn->worker->dead_head = conn;
}

static void kick(ovl_conn *conn)
{
    if (conn->flags & (OVL__C_KICKED | OVL__C_SENDING | OVL__C_CLOSING))
        return;
    conn->flags |= OVL__C_KICKED;
    conn->kick_next = NULL;
    if (conn->worker->kick_head)
        conn->worker->kick_tail->kick_next = conn;
    else
        conn->worker->kick_head = conn;
    conn->worker->kick_tail = conn;
}

void ovl__conn_close(ovl_conn *conn, ovl_close_reason reason, int err)
{
    if (conn->flags & OVL__C_CLOSING)
        return;
    conn->flags |= OVL__C_CLOSING;
    ovl__timer_stop(conn->worker, &conn->timer);
    conn->close_reason = reason;
    conn->close_err = err;
    if (conn->flags & (OVL__C_RECV_WAIT | OVL__C_PAUSED))
        conn->worker->wait_dirty = true;
    if (conn->inflight > 0)
        backend_of(conn)->cancel(conn);
    else
        mark_dead(conn);
}

void ovl__conn_op_done(ovl_conn *conn)
{
    conn->inflight--;
    if ((conn->flags & OVL__C_CLOSING) && conn->inflight == 0)
        mark_dead(conn);
}

void ovl__conn_failed(ovl_conn *conn, int err)
{
    struct ovl__counters *counters = &conn->worker->counters;
    if (conn->flags & OVL__C_CLOSING)
        return;
    if (ovl__is_timeout_error(err))
        ovl__count(&counters->peer_timeouts, 1);
    if (ovl__is_reset_error(err)) {
        ovl__count(&counters->resets, 1);
        ovl__conn_close(conn, OVL_CLOSE_RESET, err);
    } else {
        ovl__count(&counters->errors, 1);
        ovl__conn_close(conn, OVL_CLOSE_ERROR, err);
    }
}

/* Both directions are finished: close. While draining with our side shut but the peer's still open, close() could
 * turn late input into a reset that destroys echoes still in flight, so read and discard until the peer closes. */
static void maybe_finish(ovl_conn *conn)
{
    uint32_t f = conn->flags;
    if ((f & OVL__C_CLOSING) || !(f & OVL__C_SHUT_DONE))
        return;
    if (f & OVL__C_EOF_IN) {
        /* An EOF held behind paused input closes once that input is delivered (deliver_held -> eof_now). */
        if (!(f & OVL__C_HOLD_EOF))
            ovl__conn_close(conn, (f & OVL__C_DRAINING) ? OVL_CLOSE_ENGINE_STOP : OVL_CLOSE_PEER, 0);
    } else if ((f & OVL__C_READ_DONE) && !(f & OVL__C_LINGER)) {
        conn->flags |= OVL__C_LINGER;
        if (!(f & (OVL__C_RECV_ARMED | OVL__C_RECV_WAIT)))
            backend_of(conn)->recv_start(conn);
    }
}

static void shutdown_now(ovl_conn *conn)
{
    if (conn->flags & OVL__C_SHUT_DONE)
        return;
    conn->flags |= OVL__C_SHUT_DONE;
    /* Always a real shutdown, even when the close follows at once: close() sends no FIN while a forked child of
     * the embedding program still holds the descriptor, and the peer would wait for our EOF. ENOTCONN here means
     * the peer already reset; the receive side reports that. */
    shutdown(conn->fd, OVL__SHUT_WR);
    maybe_finish(conn);
}

void ovl__conn_opened(ovl_conn *conn)
{
    conn->flags |= OVL__C_OPEN;
    conn->flags &= ~OVL__C_CONNECTING;
    conn->active_ms = conn->worker->now_ms;
    ovl__count(&conn->worker->counters.conns_open, 1);
    if (conn->callbacks.on_open)
        conn->callbacks.on_open(conn, conn->user);
    if (conn->flags & OVL__C_CLOSING)
        return;
    if (conn->worker->stopping)
        ovl__conn_begin_drain(conn);
    else if (!(conn->flags & OVL__C_PAUSED)) /* on_open may have paused it (ovl_recv_pause) */
        backend_of(conn)->recv_start(conn);
}

/* Keepalive on every connection (config.keepalive_ms): a failure only costs the dead-peer reclaim, never the
 * connection. */
static void set_keepalive(ovl_conn *conn)
{
    int ms = conn->worker->engine->config.keepalive_ms;
    if (ms > 0)
        ovl__socket_keepalive(conn->fd, (uint32_t)ms);
}

void ovl__conn_connected(ovl_conn *conn)
{
    /* The connect deadline: the timer is the application's from on_open on. */
    ovl__timer_stop(conn->worker, &conn->timer);
    ovl__set_int_option(conn->fd, IPPROTO_TCP, TCP_NODELAY, 1);
    set_keepalive(conn);
    ovl__count(&conn->worker->counters.conns_connected, 1);
    ovl__conn_opened(conn);
}

static void stop_receiving(ovl_conn *conn);

/*
 * The pool is shared fairly. Every pool slot is charged to the connection it was received on until it is free
 * again. While more than half the pool is free, nothing more is asked of anyone than max_pending. Below that, a
 * connection with its share of slots waiting in send queues (its own, or a partner's in a proxy) stops receiving -
 * its peer's further bytes wait in the kernel - and goes on once half of them have been sent. Below the reserve,
 * every connection with any slot queued stops, so the reserve is spent only by connections that have nothing
 * queued: one slot each, which answers them. Peers that send and never read therefore hold a few slots each and
 * cannot take a worker away from the others. Slots the application keeps (ovl_buf_release later) are its own to
 * bound: the engine cannot know when it will let go of them.
 */
/* Slots not held by anyone: what the reserve is kept from. */
static inline uint32_t pool_free(const struct ovl__pool *pool)
{
    return pool->slot_count - pool->held;
}

/* The same with IOCP's parked slots (each waits in a posted receive for data, no peer holds it): what pressure is
 * judged by, so that many idle connections do not put every connection under the share rule. */
static inline uint32_t pool_unclaimed(const struct ovl__pool *pool)
{
    return pool->slot_count - pool->held + pool->parked;
}

static bool pool_may_resume(const ovl_conn *conn)
{
    const struct ovl__pool *pool = &conn->worker->pool;
    return conn->slots_queued == 0 ||
           (pool_free(pool) >= pool->reserve &&
            (pool_unclaimed(pool) >= pool->pressure || conn->slots_queued <= pool->share / 2));
}

static void pool_pause_if_due(ovl_conn *conn)
{
    const struct ovl__pool *pool = &conn->worker->pool;
    if (!conn->slots_queued || (conn->flags & (OVL__C_PAUSE_POOL | OVL__C_CLOSING)))
        return;
    if (pool_free(pool) >= pool->reserve &&
        (pool_unclaimed(pool) >= pool->pressure || conn->slots_queued < pool->share))
        return;
    struct ovl__worker *worker = conn->worker;
    conn->flags |= OVL__C_PAUSE_POOL;
    ovl__count(&worker->counters.recv_pool_pauses, 1);
    if (!(conn->flags & OVL__C_POOL_LISTED)) {
        conn->flags |= OVL__C_POOL_LISTED;
        conn->pool_prev = NULL;
        conn->pool_next = worker->pool_paused;
        if (worker->pool_paused)
            worker->pool_paused->pool_prev = conn;
        worker->pool_paused = conn;
    }
    stop_receiving(conn);
}

static void pool_unlist(ovl_conn *conn)
{
    struct ovl__worker *worker = conn->worker;
    if (conn->pool_prev)
        conn->pool_prev->pool_next = conn->pool_next;
    else
        worker->pool_paused = conn->pool_next;
    if (conn->pool_next)
        conn->pool_next->pool_prev = conn->pool_prev;
    conn->flags &= ~OVL__C_POOL_LISTED;
}

void ovl__conn_slot_freed(ovl_buf *buf)
{
    ovl_conn *owner = buf->owner;
    if (buf->owned_prev)
        buf->owned_prev->owned_next = buf->owned_next;
    else
        owner->owned = buf->owned_next;
    if (buf->owned_next)
        buf->owned_next->owned_prev = buf->owned_prev;
    buf->owner = NULL;
    buf->owned_prev = buf->owned_next = NULL;
    if (!buf->queued)
        return;
    buf->queued = false;
    owner->slots_queued--;
    if ((owner->flags & (OVL__C_PAUSE_POOL | OVL__C_POOL_CHECK)) == OVL__C_PAUSE_POOL) {
        owner->flags |= OVL__C_POOL_CHECK;
        owner->pool_check_next = owner->worker->pool_check;
        owner->worker->pool_check = owner;
    }
}

/* Hand received bytes to the application; then apply the engine's own backpressure. */
static void deliver(ovl_conn *conn, ovl_buf *buf)
{
    if ((conn->flags & (OVL__C_CLOSING | OVL__C_LINGER)) || !conn->callbacks.on_data) {
        ovl__buf_free(buf);
        return;
    }
    conn->callbacks.on_data(conn, buf);
    /* Backpressure: a peer that sends faster than it reads fills our send queue; stop reading from it (its
     * bytes wait in its own socket buffers) until the queue drains. Draining too: what it still reads is bounded
     * by the stop, but not small (a socket may hold megabytes), and the deadline bounds a peer that never reads. */
    if (conn->max_pending && conn->queue_bytes >= conn->max_pending &&
        !(conn->flags & (OVL__C_PAUSE_QUEUE | OVL__C_CLOSING))) {
        conn->flags |= OVL__C_PAUSE_QUEUE;
        ovl__count(&conn->worker->counters.recv_pauses, 1);
        stop_receiving(conn);
    }
    pool_pause_if_due(conn);
}

/* Append to a singly linked buffer list kept as head and tail (the send queue, the held input). */
static void buf_append(ovl_buf **head, ovl_buf **tail, ovl_buf *buf)
{
    buf->next = NULL;
    if (*tail)
        (*tail)->next = buf;
    else
        *head = buf;
    *tail = buf;
}

/* A receive that fills a whole buffer (more is waiting), or lands while a send to the same peer is still in flight
 * (a send that completes at once has left before the next receive is seen), shows a peer that may outrun us. Such a
 * connection receives one buffer per operation - io_uring: no multishot burst of dozens of buffers past max_pending
 * or its share of the pool before the pause can act - until a run of receives finds it keeping up again. On
 * io_uring and IOCP those receives take at most OVL__RECV_ONE_BYTES (ovl__recv_len), so a capped receive is never
 * "a whole buffer": only the sends in flight keep the connection here, and 16 capped receives without one let it
 * go back to whole buffers (a 64 KiB receive that fills its buffer brings it back). */
static void note_backlog(ovl_conn *conn, const ovl_buf *buf)
{
    if ((conn->flags & OVL__C_SENDING) || buf->len == conn->worker->pool.slot_size) {
        conn->flags |= OVL__C_RECV_ONE;
        conn->clean_receives = 0;
    } else if ((conn->flags & OVL__C_RECV_ONE) && ++conn->clean_receives >= 16) {
        conn->flags &= ~OVL__C_RECV_ONE;
    }
}

void ovl__conn_drain_read(ovl_conn *conn, size_t len)
{
    conn->drain_budget = len < conn->drain_budget ? conn->drain_budget - len : 0;
    if (conn->drain_budget == 0)
        conn->flags |= OVL__C_DRAIN_SPENT;
}

void ovl__conn_received(ovl_conn *conn, ovl_buf *buf)
{
    struct ovl__counters *counters = &conn->worker->counters;
    if (conn->flags & OVL__C_LINGER) {
        /* Stopping, our FIN sent: the peer sent this after the stop. Dropped, and counted as such. */
        ovl__count(&counters->bytes_discarded, buf->len);
        ovl__buf_free(buf);
        return;
    }
    if (buf->kind == OVL__BUF_POOL) {
        buf->owner = conn;
        buf->owned_prev = NULL;
        buf->owned_next = conn->owned;
        if (conn->owned)
            conn->owned->owned_prev = buf;
        conn->owned = buf;
        note_backlog(conn, buf);
    }
    conn->active_ms = conn->worker->now_ms;
    ovl__count(&counters->msgs_in, 1);
    ovl__count(&counters->bytes_in, buf->len);
    /* Paused by the application, or older input still waiting for delivery: keep the order, hold it. */
    if (!(conn->flags & (OVL__C_CLOSING | OVL__C_LINGER)) &&
        (conn->held_head || (conn->flags & OVL__C_PAUSE_USER))) {
        buf_append(&conn->held_head, &conn->held_tail, buf);
        return;
    }
    deliver(conn, buf);
}

/* At the end of the worker's held list: connections resumed in one turn get their held input in that order. */
static void queue_held(ovl_conn *conn)
{
    struct ovl__worker *worker = conn->worker;
    if (conn->flags & OVL__C_HELD_QUEUED)
        return;
    conn->flags |= OVL__C_HELD_QUEUED;
    conn->held_next = NULL;
    if (worker->held_head)
        worker->held_tail->held_next = conn;
    else
        worker->held_head = conn;
    worker->held_tail = conn;
}

/* The receive path is told to stop once, whatever the number of reasons; a receive in flight may still deliver. */
static void stop_receiving(ovl_conn *conn)
{
    if (conn->flags & OVL__C_PAUSED)
        return;
    conn->flags |= OVL__C_PAUSED;
    conn->worker->wait_dirty = conn->worker->wait_dirty || (conn->flags & OVL__C_RECV_WAIT);
    if (conn->fd != OVL__NO_SOCKET)
        backend_of(conn)->recv_pause(conn);
}

/* Draining, and everything the stop left to read has been read: no receive may start again (lingering does its
 * own). */
static inline bool read_finished(const ovl_conn *conn)
{
    return (conn->flags & (OVL__C_DRAINING | OVL__C_READ_DONE | OVL__C_LINGER)) ==
           (OVL__C_DRAINING | OVL__C_READ_DONE);
}

/* The last reason to pause is gone. Held input is delivered first, from the next flush (not from inside the
 * caller's callback); a receive still armed (its cancellation not yet completed) re-arms itself. */
static void restart_receiving(ovl_conn *conn)
{
    if (!(conn->flags & OVL__C_PAUSED) || (conn->flags & (OVL__C_PAUSE_QUEUE | OVL__C_PAUSE_USER | OVL__C_PAUSE_POOL)))
        return;
    conn->flags &= ~OVL__C_PAUSED;
    if (conn->held_head || (conn->flags & (OVL__C_HOLD_EOF | OVL__C_HOLD_READ_DONE))) {
        queue_held(conn);
        return;
    }
    if (!(conn->flags & (OVL__C_CLOSING | OVL__C_EOF_IN | OVL__C_RECV_ARMED | OVL__C_RECV_WAIT)) &&
        !read_finished(conn))
        backend_of(conn)->recv_start(conn);
}

static void resume_if_drained(ovl_conn *conn)
{
    if (!(conn->flags & OVL__C_PAUSE_QUEUE) || (conn->max_pending && conn->queue_bytes > conn->max_pending / 2))
        return;
    conn->flags &= ~OVL__C_PAUSE_QUEUE;
    restart_receiving(conn);
}

static void eof_now(ovl_conn *conn)
{
    if (conn->flags & OVL__C_LINGER) {
        ovl__conn_close(conn, OVL_CLOSE_ENGINE_STOP, 0);
        return;
    }
    if (conn->flags & OVL__C_DRAINING)
        conn->flags |= OVL__C_READ_DONE;
    if (conn->callbacks.on_eof && !(conn->flags & OVL__C_DRAINING))
        conn->callbacks.on_eof(conn);
    else
        ovl_shutdown(conn);
    maybe_finish(conn);
}

void ovl__conn_eof(ovl_conn *conn)
{
    conn->flags |= OVL__C_EOF_IN;
    if (conn->flags & OVL__C_CLOSING)
        return;
    if (conn->held_head || (conn->flags & OVL__C_PAUSE_USER)) {
        conn->flags |= OVL__C_HOLD_EOF; /* on_eof must not overtake held input, nor come while paused */
        return;
    }
    eof_now(conn);
}

static void read_done_now(ovl_conn *conn)
{
    ovl_shutdown(conn);
    maybe_finish(conn);
}

void ovl__conn_read_done(ovl_conn *conn)
{
    conn->flags |= OVL__C_READ_DONE;
    if (conn->flags & OVL__C_CLOSING)
        return;
    if (conn->held_head) {
        conn->flags |= OVL__C_HOLD_READ_DONE; /* shutting down now would refuse the held input's echoes */
        return;
    }
    read_done_now(conn);
}

/* Deliver held input of connections that resumed (or started draining), in order, then what came behind it. */
static void deliver_held(struct ovl__worker *worker)
{
    while (worker->held_head) {
        ovl_conn *conn = worker->held_head;
        worker->held_head = conn->held_next;
        if (!worker->held_head)
            worker->held_tail = NULL;
        conn->flags &= ~OVL__C_HELD_QUEUED;
        while (conn->held_head && !(conn->flags & (OVL__C_PAUSE_USER | OVL__C_CLOSING))) {
            ovl_buf *buf = conn->held_head;
            conn->held_head = buf->next;
            if (!conn->held_head)
                conn->held_tail = NULL;
            buf->next = NULL;
            deliver(conn, buf);
        }
        if (conn->held_head || (conn->flags & OVL__C_CLOSING))
            continue; /* paused again: the rest waits for the next resume; closing: conn_free drops it */
        if (conn->flags & OVL__C_HOLD_EOF) {
            conn->flags &= ~OVL__C_HOLD_EOF;
            eof_now(conn);
        } else if (conn->flags & OVL__C_HOLD_READ_DONE) {
            conn->flags &= ~OVL__C_HOLD_READ_DONE;
            read_done_now(conn);
        } else if (!(conn->flags & (OVL__C_PAUSED | OVL__C_EOF_IN | OVL__C_RECV_ARMED | OVL__C_RECV_WAIT)) &&
                   !read_finished(conn)) {
            backend_of(conn)->recv_start(conn);
        }
    }
}

/* At the end of the worker's wait list: waiters receive again in the order they ran short. */
static void wait_append(struct ovl__worker *worker, ovl_conn *conn)
{
    conn->wait_next = NULL;
    if (worker->wait_head)
        worker->wait_tail->wait_next = conn;
    else
        worker->wait_head = conn;
    worker->wait_tail = conn;
}

void ovl__conn_wait_for_slot(ovl_conn *conn)
{
    struct ovl__worker *worker = conn->worker;
    ovl__count(&worker->counters.recv_nobufs, 1);
    conn->flags |= OVL__C_RECV_WAIT;
    conn->inflight++;
    wait_append(worker, conn);
}

void ovl__conn_sent(ovl_conn *conn, size_t bytes)
{
    struct ovl__counters *counters = &conn->worker->counters;
    conn->flags &= ~OVL__C_SENDING;
    conn->active_ms = conn->worker->now_ms;
    if (bytes)
        conn->sent_ms = conn->active_ms;
    ovl__count(&counters->msgs_out, 1);
    ovl__count(&counters->bytes_out, bytes);
    conn->queue_bytes -= bytes;
    ovl__uncount(&counters->bytes_pending, bytes);
    while (bytes > 0 && conn->queue_head) {
        ovl_buf *head = conn->queue_head;
        if (bytes < head->len) {
            head->data += bytes;
            head->len -= bytes;
            break;
        }
        bytes -= head->len;
        conn->queue_head = head->next;
        if (!conn->queue_head)
            conn->queue_tail = NULL;
        ovl__buf_free(head);
    }
    if (conn->flags & OVL__C_CLOSING)
        return;
    resume_if_drained(conn);
    if (conn->queue_head) {
        kick(conn);
        return;
    }
    if (conn->callbacks.on_drain)
        conn->callbacks.on_drain(conn);
    if ((conn->flags & OVL__C_SHUT_WANTED) && !conn->queue_head && !(conn->flags & OVL__C_CLOSING))
        shutdown_now(conn);
}

/* config.connect_timeout_ms passed with the attempt still connecting (the connection's timer serves as its
 * deadline until it opens: the application cannot arm one before on_open). */
static void connect_expired(ovl_conn *conn)
{
    if (!(conn->flags & OVL__C_CONNECTING))
        return;
    conn->next_address = NULL;
    conn->flags &= ~OVL__C_CONNECTING;
    ovl__count(&conn->worker->counters.connect_failures, 1);
    ovl__conn_close(conn, OVL_CLOSE_CONNECT_FAILED, -ETIMEDOUT);
}

void ovl__conn_connect_next(ovl_conn *conn, int err)
{
    if (err)
        conn->last_error = err;
    if (conn->flags & OVL__C_CLOSING)
        return;
    int timeout_ms = conn->worker->engine->config.connect_timeout_ms;
    if (!(conn->flags & OVL__C_CONNECTING) && timeout_ms > 0)
        (void)ovl_conn_timer(conn, (uint64_t)timeout_ms * 1000u, connect_expired); /* cannot fail: not closing */
    conn->flags |= OVL__C_CONNECTING;
    while (conn->next_address) {
        const struct addrinfo *address = conn->next_address;
        conn->next_address = address->ai_next;
        int rc = backend_of(conn)->connect_start(conn, address);
        if (rc == 0)
            return;
        conn->last_error = rc;
    }
    conn->flags &= ~OVL__C_CONNECTING;
    ovl__count(&conn->worker->counters.connect_failures, 1);
    ovl__conn_close(conn, OVL_CLOSE_CONNECT_FAILED, conn->last_error ? conn->last_error : -EHOSTUNREACH);
}

void ovl__conn_begin_drain(ovl_conn *conn)
{
    if (conn->flags & (OVL__C_CLOSING | OVL__C_DRAINING))
        return;
    if (conn->flags & OVL__C_CONNECTING) {
        ovl__conn_close(conn, OVL_CLOSE_ENGINE_STOP, 0);
        return;
    }
    conn->flags |= OVL__C_DRAINING;
    /* What it already received is echoed: our buffers, and what the kernel holds for us now - read that much and
     * no more (a peer that keeps sending would otherwise put the end off until the deadline), then our FIN. The
     * application's pause ends here; the engine's own (max_pending, the pool's share) hold on, and the deadline
     * bounds a peer that does not read. Held input goes first; an EOF held behind it finishes the connection once
     * it is delivered. */
    conn->drain_budget = ovl__socket_unread(conn->fd);
    conn->flags &= ~OVL__C_PAUSE_USER;
    bool paused = (conn->flags & (OVL__C_PAUSE_QUEUE | OVL__C_PAUSE_POOL)) != 0;
    if (!paused)
        conn->flags &= ~OVL__C_PAUSED;
    if (conn->held_head || (conn->flags & OVL__C_HOLD_EOF))
        queue_held(conn);
    if (conn->flags & OVL__C_HOLD_EOF)
        return;
    if (conn->flags & OVL__C_EOF_IN) {
        conn->flags |= OVL__C_READ_DONE;
        ovl_shutdown(conn);
        maybe_finish(conn);
        return;
    }
    if (!paused)
        backend_of(conn)->recv_drain(conn); /* else restart_receiving reads on, in drain mode */
    else if (conn->flags & OVL__C_RECV_ARMED)
        backend_of(conn)->recv_pause(conn); /* a lazy pause's receive (io_uring) ends now: restart_receiving
                                               starts no drain-mode read while it is armed */
}

ovl_conn *ovl__worker_accepted(struct ovl__worker *worker, struct ovl__listen_socket *socket, ovl__socket fd,
                                const char *peer)
{
    ovl_engine *engine = worker->engine;
    uint32_t max = engine->config.max_conns;
    if (worker->stopping ||
        (max && atomic_load_explicit(&engine->open_conns, memory_order_relaxed) >= max)) {
        /* Refused promptly: the peer sees the connection end at once instead of hanging in a backlog. */
        ovl__socket_close(fd);
        ovl__count(&worker->counters.conns_refused, 1);
        return NULL;
    }
#ifdef _WIN32
    ovl__set_int_option(fd, IPPROTO_TCP, TCP_NODELAY, 1); /* Linux: inherited from the listening socket */
#endif
    ovl_conn *conn = ovl__conn_new(engine, fd, &socket->listener->callbacks, socket->listener->user);
    if (!conn) {
        ovl__socket_close(fd);
        ovl__count(&worker->counters.errors, 1);
        return NULL;
    }
    ovl__conn_attach(worker, conn);
    if (peer && *peer) /* the acceptor's text (IOCP's AcceptEx addresses), before on_open can ask for it */
        snprintf(conn->peer, sizeof conn->peer, "%s", peer);
#ifdef _WIN32
    set_keepalive(conn); /* Linux: inherited from the listening socket */
#endif
    ovl__count(&worker->counters.conns_accepted, 1);
    ovl__conn_opened(conn);
    return conn;
}

/* The connection's end as the application and the counters see it: on_close, the socket closed (or retired), the
 * worker's list and the open counts left. */
static void conn_finish(ovl_conn *conn, bool retire)
{
    struct ovl__worker *worker = conn->worker;
    const struct ovl__backend *backend = backend_of(conn);
    /* on_close first: the socket is still open (ovl_conn_peer works there) and its descriptor number cannot have
     * been reused yet. An outbound connection hears back even if it never opened (ovl_connect returned 0). */
    if (((conn->flags & OVL__C_OPEN) || conn->target) && conn->callbacks.on_close)
        conn->callbacks.on_close(conn, conn->close_reason, conn->close_err);
    if (conn->fd != OVL__NO_SOCKET && !(retire && backend->socket_retire && backend->socket_retire(conn)))
        ovl__socket_close(conn->fd);
    conn->fd = OVL__NO_SOCKET;
    if (conn->prev)
        conn->prev->next = conn->next;
    else
        worker->conns = conn->next;
    if (conn->next)
        conn->next->prev = conn->prev;
    conn->prev = conn->next = NULL;
    worker->conn_count--;
    atomic_store_explicit(&worker->conns_shown, worker->conn_count, memory_order_relaxed);
    atomic_fetch_sub_explicit(&worker->engine->open_conns, 1, memory_order_relaxed);
    ovl__uncount(&worker->counters.bytes_pending, conn->queue_bytes); /* never sent: the connection ended */
    if (conn->flags & OVL__C_OPEN) {
        ovl__uncount(&worker->counters.conns_open, 1);
        ovl__count(&worker->counters.conns_closed, 1);
    }
}

unsigned ovl__conn_abandon(ovl_conn *conn)
{
    /* Nothing else is touched: the send queue and held input stay with the leaked connection (a send the system
     * still holds may read them; the worker's pool, which a receive may still write, is leaked with it). The
     * caller's memory of an ovl_send_ref cannot be kept that way: on_close says -ECANCELED instead of the drain's
     * -ETIMEDOUT, which tells the application that a send may still read it (overlap.h, ovl_send_ref). */
    unsigned pending = conn->inflight > 0 ? (unsigned)conn->inflight : 0;
    conn->close_err = -ECANCELED;
    conn_finish(conn, false);
    conn->next = conn->worker->abandoned_conns;
    conn->worker->abandoned_conns = conn;
    return pending;
}

static void conn_free(ovl_conn *conn)
{
    struct ovl__worker *worker = conn->worker;
    conn_finish(conn, true);
    while (conn->queue_head) {
        ovl_buf *head = conn->queue_head;
        conn->queue_head = head->next;
        ovl__buf_free(head);
    }
    while (conn->held_head) {
        ovl_buf *held = conn->held_head;
        conn->held_head = held->next;
        ovl__buf_free(held);
    }
    if (conn->flags & OVL__C_KICKED) {
        /* Queued output on a connection closed in the same flush (an on_close that sends on another connection,
         * then closes it): off the kick list before it is freed. */
        ovl_conn *before = NULL;
        for (ovl_conn **link = &worker->kick_head; *link; before = *link, link = &(*link)->kick_next)
            if (*link == conn) {
                *link = conn->kick_next;
                if (worker->kick_tail == conn)
                    worker->kick_tail = before;
                break;
            }
    }
    if (conn->flags & OVL__C_HELD_QUEUED) {
        ovl_conn *before = NULL;
        for (ovl_conn **link = &worker->held_head; *link; before = *link, link = &(*link)->held_next)
            if (*link == conn) {
                *link = conn->held_next;
                if (worker->held_tail == conn)
                    worker->held_tail = before;
                break;
            }
    }
    if (conn->flags & OVL__C_POOL_LISTED)
        pool_unlist(conn);
    if (conn->flags & OVL__C_POOL_CHECK)
        for (ovl_conn **link = &worker->pool_check; *link; link = &(*link)->pool_check_next)
            if (*link == conn) {
                *link = conn->pool_check_next;
                break;
            }
    /* Slots received on it that live on (in a proxy partner's queue, with the application): charged to nobody. */
    while (conn->owned) {
        ovl_buf *buf = conn->owned;
        conn->owned = buf->owned_next;
        buf->owner = NULL;
        buf->owned_prev = buf->owned_next = NULL;
        buf->queued = false;
    }
    ovl__free(conn);
}

static void walk_wait_list(struct ovl__worker *worker)
{
    bool slots_free = worker->pool.held < worker->pool.slot_count;
    if (!worker->wait_head || (!slots_free && !worker->wait_dirty))
        return;
    worker->wait_dirty = false;
    ovl_conn *list = worker->wait_head;
    worker->wait_head = worker->wait_tail = NULL;
    while (list) {
        ovl_conn *conn = list;
        list = conn->wait_next;
        if (conn->flags & OVL__C_CLOSING) {
            conn->flags &= ~OVL__C_RECV_WAIT;
            ovl__conn_op_done(conn);
        } else if (conn->flags & OVL__C_PAUSED) {
            conn->flags &= ~OVL__C_RECV_WAIT; /* resume_if_drained starts receiving again */
            conn->inflight--;
            backend_of(conn)->recv_pause(conn); /* nothing reads it now: the backend watches for a reset */
        } else if (slots_free) {
            conn->flags &= ~OVL__C_RECV_WAIT;
            conn->inflight--;
            backend_of(conn)->recv_start(conn);
        } else {
            /* No slot free: nothing was armed again in this walk, so the list holds only the ones kept before it,
             * in their order. */
            wait_append(worker, conn);
        }
    }
}

static void pool_resume_if_due(ovl_conn *conn)
{
    if (!(conn->flags & OVL__C_POOL_LISTED))
        return;
    if ((conn->flags & OVL__C_PAUSE_POOL) && !(conn->flags & OVL__C_CLOSING) && !pool_may_resume(conn))
        return;
    bool paused = (conn->flags & OVL__C_PAUSE_POOL) && !(conn->flags & OVL__C_CLOSING);
    pool_unlist(conn);
    conn->flags &= ~OVL__C_PAUSE_POOL;
    if (paused)
        restart_receiving(conn);
}

bool ovl__conn_pause_holds(ovl_conn *conn)
{
    if (conn->flags & OVL__C_POOL_CHECK)
        pool_resume_if_due(conn); /* stays on the check list: ovl__worker_flush finds it resumed, or paused again */
    return (conn->flags & OVL__C_PAUSED) != 0;
}

/* Connections paused for the pool whose queued slots came back, or all of them when the pool rose past a threshold,
 * receive again if the rule lets them. */
static void resume_pool_paused(struct ovl__worker *worker)
{
    while (worker->pool_check) {
        ovl_conn *conn = worker->pool_check;
        worker->pool_check = conn->pool_check_next;
        conn->flags &= ~OVL__C_POOL_CHECK;
        if (!worker->pool_walk_all)
            pool_resume_if_due(conn);
    }
    if (!worker->pool_walk_all)
        return;
    worker->pool_walk_all = false;
    for (ovl_conn *conn = worker->pool_paused, *next; conn; conn = next) {
        next = conn->pool_next; /* restart_receiving starts no delivery: the list changes only at conn */
        pool_resume_if_due(conn);
    }
}

void ovl__worker_flush(struct ovl__worker *worker)
{
    const struct ovl__backend *backend = worker->engine->backend;
    /* Sends and frees give pool slots back (a readiness backend completes sends right here), so the wait list is
     * walked again after each round, until a round changes nothing. */
    for (;;) {
        resume_pool_paused(worker);
        deliver_held(worker);
        walk_wait_list(worker);
        if (!worker->kick_head && !worker->dead_head && !worker->held_head && !worker->pool_check &&
            !worker->pool_walk_all)
            break;
        while (worker->kick_head) {
            ovl_conn *conn = worker->kick_head;
            worker->kick_head = conn->kick_next;
            conn->flags &= ~OVL__C_KICKED;
            if (!(conn->flags & (OVL__C_CLOSING | OVL__C_SENDING)) && conn->queue_head) {
                conn->flags |= OVL__C_SENDING;
                backend->send_start(conn);
            }
        }
        while (worker->dead_head) {
            ovl_conn *conn = worker->dead_head;
            worker->dead_head = conn->dead_next;
            conn_free(conn);
        }
    }
}

/* ---- public per-connection calls ---- */

static int queue_push(ovl_conn *conn, ovl_buf *buf)
{
    if (conn->flags & (OVL__C_CLOSING | OVL__C_SHUT_WANTED)) {
        ovl__buf_free(buf);
        return -EPIPE;
    }
    if (!conn->queue_head)
        conn->sent_ms = conn->worker->now_ms; /* the wait for the peer starts now */
    buf_append(&conn->queue_head, &conn->queue_tail, buf);
    conn->queue_bytes += buf->len;
    ovl__count(&conn->worker->counters.bytes_pending, buf->len);
    if (buf->owner && !buf->queued) {
        buf->queued = true;
        buf->owner->slots_queued++;
    }
    kick(conn);
    return 0;
}

int ovl_send(ovl_conn *conn, const void *data, size_t len)
{
    if (!conn || (!data && len))
        return -EINVAL;
    if (len == 0)
        return 0;
    ovl_buf *buf = ovl__malloc(sizeof *buf + len);
    if (!buf)
        return -ENOMEM;
    buf->kind = OVL__BUF_HEAP;
    buf->owner = NULL;
    buf->queued = false;
    buf->data = (char *)(buf + 1);
    buf->len = len;
    memcpy(buf->data, data, len);
    return queue_push(conn, buf);
}

int ovl_send_ref(ovl_conn *conn, const void *data, size_t len)
{
    if (!conn || (!data && len))
        return -EINVAL;
    if (len == 0)
        return 0;
    ovl_buf *buf = ovl__malloc(sizeof *buf);
    if (!buf)
        return -ENOMEM;
    buf->kind = OVL__BUF_REF;
    buf->owner = NULL;
    buf->queued = false;
    buf->data = (char *)data;
    buf->len = len;
    return queue_push(conn, buf);
}

int ovl_send_buf(ovl_conn *conn, ovl_buf *buf)
{
    if (!conn || !buf)
        return -EINVAL;
    if (buf->len == 0) {
        ovl__buf_free(buf);
        return 0;
    }
    if (buf->kind == OVL__BUF_POOL && buf->worker != conn->worker) {
        /* A pool slot must go back to its own worker's pool, on that worker's thread: copy, and let its owner
         * release the slot (ovl__buf_free here would touch the other worker's pool and buffer ring). */
        int rc = ovl_send(conn, buf->data, buf->len);
        if (ovl__worker_release(buf->worker, buf) < 0)
            ovl__log(conn->worker->engine, OVL_LOG_ERROR, "out of memory; buffer slot %u of worker %d is lost",
                     buf->slot, buf->worker->index);
        return rc;
    }
    return queue_push(conn, buf);
}

int ovl_shutdown(ovl_conn *conn)
{
    if (!conn)
        return -EINVAL;
    if (conn->flags & OVL__C_CLOSING)
        return -ENOTCONN;
    conn->flags |= OVL__C_SHUT_WANTED;
    if (!conn->queue_head && !(conn->flags & OVL__C_SENDING))
        shutdown_now(conn);
    return 0;
}

void ovl_close(ovl_conn *conn)
{
    if (conn)
        ovl__conn_close(conn, OVL_CLOSE_LOCAL, 0);
}

void *ovl_conn_user(const ovl_conn *conn)
{
    return conn->user;
}

void ovl_conn_set_user(ovl_conn *conn, void *user)
{
    conn->user = user;
}

ovl_engine *ovl_conn_engine(const ovl_conn *conn)
{
    return conn->worker->engine;
}

int ovl_conn_worker(const ovl_conn *conn)
{
    return conn->worker->index;
}

size_t ovl_conn_pending(const ovl_conn *conn)
{
    return conn->queue_bytes;
}

int ovl_recv_pause(ovl_conn *conn)
{
    if (!conn)
        return -EINVAL;
    if (conn->flags & OVL__C_CLOSING)
        return -ENOTCONN;
    if (conn->flags & OVL__C_DRAINING)
        return 0; /* the engine is stopping: the drain reads on, bounded by its deadline */
    conn->flags |= OVL__C_PAUSE_USER;
    stop_receiving(conn);
    return 0;
}

int ovl_recv_resume(ovl_conn *conn)
{
    if (!conn)
        return -EINVAL;
    if (conn->flags & OVL__C_CLOSING)
        return -ENOTCONN;
    conn->flags &= ~OVL__C_PAUSE_USER;
    restart_receiving(conn);
    return 0;
}

void ovl_conn_set_max_pending(ovl_conn *conn, size_t bytes)
{
    if (!conn)
        return;
    conn->max_pending = bytes;
    resume_if_drained(conn);
}

const char *ovl_conn_peer(const ovl_conn *conn)
{
    ovl_conn *mutable_conn = (ovl_conn *)conn;
    if (!conn->peer[0]) {
        struct sockaddr_storage address;
        socklen_t length = sizeof address;
        if (conn->fd != OVL__NO_SOCKET && getpeername(conn->fd, (struct sockaddr *)&address, &length) == 0)
            ovl__format_address((struct sockaddr *)&address, mutable_conn->peer, sizeof mutable_conn->peer);
        else
            return "(unknown)";
    }
    return conn->peer;
}
