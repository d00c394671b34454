/*
 * ready.c - the readiness layer: readiness turned into the completions conn.c expects, for any poller that reports
 * readiness (poller.h). epoll is the one under it on Linux (poller_epoll.c); the layer itself makes no epoll call,
 * so a kqueue or poll(2) backend is a poller file and a table entry, not a copy of this file.
 *
 * One poller per worker thread with its own wake-up, and the poller's timeout for the worker's timers.
 *
 * Connections are registered once, edge-triggered, for input, output, the peer's shutdown and errors, and never
 * modified. Why edges: conn.c arms and disarms receiving (a slot wait, EOF, draining) and a send blocks and unblocks
 * all the time; with level triggering each change would be a system call to keep a disarmed socket from being
 * reported on every turn. With edges the layer remembers "readable" and "writable" itself and a change of interest
 * costs no system call. The price is the edge rule - never stop reading short of EAGAIN without remembering that
 * more may be there - and the ready list keeps it: a connection that used up its RECV_BURST reads for this turn, or
 * that must read without a new edge (draining, re-armed after a slot wait), is read again on the next turn.
 * Listening sockets are the exception: level-triggered, one waiter woken per connection where the poller can
 * (EPOLLEXCLUSIVE), so a backlog left after ACCEPT_BURST is simply reported again.
 *
 * Operations are emulated as backend.h asks: each one pending on a connection (its registration, an armed receive,
 * a send waiting for output readiness, a connect in progress) holds one count of conn->inflight and is finished by
 * exactly one ovl__conn_op_done, from its handler or from cancel(). Holding a count for the registration makes
 * conn.c call cancel() for every registered connection before freeing it, so the descriptor always leaves the
 * poller before conn_free closes it: close() alone would leave an epoll registration alive (and pointing at freed
 * memory) while a forked child of the embedding program still holds the descriptor.
 */
#include "ready.h"

#include "alloc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

enum {
    EVENT_BATCH = 256,        /* events taken per wait */
    RECV_BURST = 16,          /* reads per connection per loop turn, and at most RECV_BURST_BYTES of buffers: one
                                 flooding peer cannot starve the others */
    RECV_BURST_BYTES = 256 << 10,
    RECV_BURST_BACKLOGGED = 4, /* the same for a connection that fills whole buffers (OVL__C_RECV_ONE), at most
                                  RECV_BURST_BACKLOGGED_BYTES: a hundred of them flooding at once must not make a
                                  loop turn milliseconds long */
    RECV_BURST_BACKLOGGED_BYTES = 64 << 10,
    ACCEPT_BURST = 64,        /* accepts per listening socket per loop turn */
    SEND_BATCH = 16,          /* queued buffers gathered into one sendmsg */
    ACCEPT_RETRY_MS = 100     /* pause after EMFILE/ENFILE so a full descriptor table does not spin the CPU */
};

/* Operations pending on a connection; each holds one count of conn->inflight. */
enum {
    OP_WATCH = 1u << 0,       /* the descriptor is registered with the poller */
    OP_RECV = 1u << 1,        /* receiving is armed (OVL__C_RECV_ARMED) */
    OP_SEND = 1u << 2,        /* a send started and waits for output readiness */
    OP_CONNECT = 1u << 3      /* a non-blocking connect waits for output readiness */
};

struct ready_accept {
    struct ready_accept *next;
    struct ovl__listen_socket *socket;
    bool watched;
    struct ovl__timer retry;  /* watch again after EMFILE and the like */
};

struct ready_worker {
    const struct ovl__poller *poller;
    void *poll_state;         /* the poller's */
    struct ready_accept *accepts;
    uint32_t accept_turn;     /* where ties for the least-loaded worker start (take_accepted) */
    struct ready_link ready;  /* connections to read on the next turn without waiting for an edge */
    uint32_t burst, burst_backlogged; /* reads per connection per turn (RECV_BURST..., for this buffer size) */
    struct ovl__poll_event events[EVENT_BATCH];
};

static inline struct ready_worker *state_of(struct ovl__worker *worker)
{
    return worker->backend_state;
}

static inline struct ready_conn *conn_state(ovl_conn *conn)
{
    return (struct ready_conn *)conn->backend_data;
}

/* ---- the ready list ---- */

static void ready_push(struct ready_worker *rw, struct ready_conn *ec)
{
    if (ec->ready.next)
        return;
    ec->ready.prev = rw->ready.prev;
    ec->ready.next = &rw->ready;
    rw->ready.prev->next = &ec->ready;
    rw->ready.prev = &ec->ready;
}

static void ready_remove(struct ready_conn *ec)
{
    if (!ec->ready.next)
        return;
    ec->ready.prev->next = ec->ready.next;
    ec->ready.next->prev = ec->ready.prev;
    ec->ready.prev = ec->ready.next = NULL;
}

/* ---- set-up ---- */

void ovl__ready_worker_destroy(struct ovl__worker *worker)
{
    struct ready_worker *rw = state_of(worker);
    if (!rw)
        return;
    rw->poller->close(rw->poll_state);
    while (rw->accepts) {
        struct ready_accept *accept = rw->accepts;
        rw->accepts = accept->next;
        ovl__free(accept);
    }
    ovl__free(rw);
    worker->backend_state = NULL;
}

int ovl__ready_worker_init(struct ovl__worker *worker, ovl_error_info *err)
{
    struct ready_worker *rw = ovl__zalloc(sizeof *rw);
    if (!rw) {
        ovl__error_set(err, -ENOMEM, NULL, "allocate the %s worker state", worker->engine->backend->name);
        return -ENOMEM;
    }
    rw->poller = worker->engine->backend->poller;
    rw->ready.prev = rw->ready.next = &rw->ready;
    uint32_t size = worker->engine->config.buffer_size;
    rw->burst = RECV_BURST_BYTES / size < RECV_BURST ? RECV_BURST_BYTES / size : RECV_BURST;
    rw->burst_backlogged = RECV_BURST_BACKLOGGED_BYTES / size < RECV_BURST_BACKLOGGED
                               ? RECV_BURST_BACKLOGGED_BYTES / size : RECV_BURST_BACKLOGGED;
    if (rw->burst == 0)
        rw->burst = 1;
    if (rw->burst_backlogged == 0)
        rw->burst_backlogged = 1;
    int rc = rw->poller->open(&rw->poll_state, err);
    if (rc < 0) {
        ovl__free(rw);
        return rc;
    }
    worker->backend_state = rw;
    return 0;
}

void ovl__ready_wake(struct ovl__worker *worker)
{
    struct ready_worker *rw = state_of(worker);
    if (rw)
        rw->poller->wake(rw->poll_state);
}

/* ---- accepting ---- */

static int watch_listener(struct ready_worker *rw, struct ready_accept *accept)
{
    int rc = rw->poller->watch_listener(rw->poll_state, accept->socket->fd, accept);
    if (rc == 0)
        accept->watched = true;
    return rc;
}

static void unwatch_listener(struct ready_worker *rw, struct ready_accept *accept)
{
    if (accept->watched)
        rw->poller->unwatch(rw->poll_state, accept->socket->fd);
    accept->watched = false;
}

static void retry_later(struct ovl__worker *worker, struct ready_accept *accept)
{
    ovl__timer_start_ms(worker, &accept->retry, ACCEPT_RETRY_MS);
}

static void accept_some(struct ovl__worker *worker, struct ready_accept *accept);

static void accept_retry_fired(struct ovl__worker *worker, struct ovl__timer *timer)
{
    struct ready_accept *accept = ovl__container_of(timer, struct ready_accept, retry);
    if (worker->stopping)
        return;
    if (watch_listener(state_of(worker), accept) == 0)
        accept_some(worker, accept);
    else
        retry_later(worker, accept);
}

/* Every worker waits on the listening sockets and the kernel wakes one per connection, but it wakes the first
 * waiter in line whenever that one is waiting: an idle worker that answers quickly got nearly every connection (319
 * of 400 over 4 workers, the others 34, 25 and 22). A connection goes to a worker with fewer connections instead
 * (one wake-up of that worker), as the io_uring backend's acceptor hands each one on. It stays here when this
 * worker is among the least loaded; when that worker has not taken the last one handed to it yet (it may be held
 * up in a callback, and the kernel's choice of a waiting worker is the better one then); at max_conns (this worker
 * refuses it at once, without a hand-over); and when the hand-over fails. */
static void take_accepted(struct ovl__worker *worker, struct ready_accept *accept, int fd)
{
    ovl_engine *engine = worker->engine;
    uint32_t max = engine->config.max_conns;
    if (engine->thread_count > 1 &&
        !(max && atomic_load_explicit(&engine->open_conns, memory_order_relaxed) >= max)) {
        struct ovl__worker *target = ovl__worker_least_loaded(engine, state_of(worker)->accept_turn++);
        if (target && target != worker &&
            atomic_load_explicit(&target->handoffs, memory_order_relaxed) == 0 &&
            ovl__worker_load(target) < ovl__worker_load(worker) &&
            ovl__worker_adopt(target, accept->socket, fd, NULL) == 0)
            return;
    }
    ovl__worker_accepted(worker, accept->socket, fd, NULL);
}

static void accept_some(struct ovl__worker *worker, struct ready_accept *accept)
{
    struct ready_worker *rw = state_of(worker);
    for (int i = 0; i < ACCEPT_BURST && accept->watched && !worker->stopping; i++) {
        int fd = accept4(accept->socket->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            take_accepted(worker, accept, fd);
            continue;
        }
        int e = errno;
        if (e == EAGAIN || e == EWOULDBLOCK)
            return; /* backlog empty, or another worker took the connection */
        if (e == EINTR)
            continue;
        /* A peer that reset before we accepted: its reset, not our error. */
        ovl__count(ovl__is_reset_error(-e) ? &worker->counters.resets : &worker->counters.errors, 1);
        if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
            /* Out of descriptors or memory: the connection stays in the backlog and the level-triggered listener
             * would be reported again at once - a busy loop. Serve the connections we have and try again later. */
            unwatch_listener(rw, accept);
            retry_later(worker, accept);
            return;
        }
        /* ECONNABORTED, EPROTO, EPERM (a firewall): that one connection failed, the next may not. */
    }
}

void ovl__ready_accept_start(struct ovl__worker *worker, struct ovl__listen_socket *socket)
{
    struct ready_worker *rw = state_of(worker);
    struct ready_accept *accept = ovl__zalloc(sizeof *accept);
    if (!accept) {
        ovl__count(&worker->counters.errors, 1);
        return;
    }
    accept->socket = socket;
    accept->retry.fire = accept_retry_fired;
    accept->next = rw->accepts;
    rw->accepts = accept;
    /* Every worker accepts on this socket: after a wake-up another worker may have taken the connection, and a
     * blocking accept4 would then stall this thread. O_NONBLOCK lives on the shared file description, which is
     * what every worker of this engine wants. */
    int flags = fcntl(socket->fd, F_GETFL);
    if (flags >= 0 && !(flags & O_NONBLOCK))
        fcntl(socket->fd, F_SETFL, flags | O_NONBLOCK);
    if (watch_listener(rw, accept) < 0) {
        ovl__count(&worker->counters.errors, 1);
        retry_later(worker, accept);
        return;
    }
    accept_some(worker, accept);
}

void ovl__ready_accept_stop(struct ovl__worker *worker)
{
    struct ready_worker *rw = state_of(worker);
    for (struct ready_accept *accept = rw->accepts; accept; accept = accept->next) {
        unwatch_listener(rw, accept);
        ovl__timer_stop(worker, &accept->retry);
    }
}

/* ---- connections: registration ---- */

static int watch(ovl_conn *conn)
{
    struct ready_conn *ec = conn_state(conn);
    if (ec->ops & OP_WATCH)
        return 0;
    ec->conn = conn;
    struct ready_worker *rw = state_of(conn->worker);
    int rc = rw->poller->watch(rw->poll_state, conn->fd, conn);
    if (rc < 0)
        return rc;
    ec->ops |= OP_WATCH;
    conn->inflight++;
    return 0;
}

/* The receive is no longer armed; the caller reports why, then calls ovl__conn_op_done. */
static void recv_finish(ovl_conn *conn)
{
    struct ready_conn *ec = conn_state(conn);
    ec->ops &= ~OP_RECV;
    conn->flags &= ~OVL__C_RECV_ARMED;
    ready_remove(ec);
}

/* Draining: read only what is already buffered, then report read_done (LINGER reads on, discarding). */
static inline bool drain_read(const ovl_conn *conn)
{
    return (conn->flags & OVL__C_DRAINING) && !(conn->flags & OVL__C_LINGER);
}

/* ---- receiving ---- */

void ovl__ready_recv_start(ovl_conn *conn)
{
    struct ready_worker *rw = state_of(conn->worker);
    struct ready_conn *ec = conn_state(conn);
    if (ec->ops & OP_RECV)
        return;
    int rc = watch(conn);
    ec->ops |= OP_RECV;
    conn->flags |= OVL__C_RECV_ARMED;
    conn->inflight++;
    if (rc < 0)
        ec->error = rc;
    /* Nothing is read here: recv_start runs inside conn.c's callbacks, and a read would re-enter them. The next
     * turn reads it if an edge was already seen (e.g. before a slot wait) or if draining must look for itself. */
    if (rc < 0 || ec->readable || drain_read(conn))
        ready_push(rw, ec);
}

/* Stop the armed receive; `readable` is kept, so recv_start reads on at the next turn when conn.c resumes. */
void ovl__ready_recv_pause(ovl_conn *conn)
{
    /* Registered even when paused before its first receive (in on_open): an error must still reach it. */
    if (watch(conn) < 0 || !(conn_state(conn)->ops & OP_RECV))
        return;
    recv_finish(conn);
    ovl__conn_op_done(conn);
}

void ovl__ready_recv_drain(ovl_conn *conn)
{
    struct ready_conn *ec = conn_state(conn);
    if (ec->ops & OP_RECV)
        ready_push(state_of(conn->worker), ec); /* the armed receive reads to EAGAIN in drain mode next turn */
    else if (!(conn->flags & OVL__C_RECV_WAIT))
        ovl__ready_recv_start(conn);
}

static void do_recv(struct ovl__worker *worker, ovl_conn *conn)
{
    struct ready_worker *rw = state_of(worker);
    struct ready_conn *ec = conn_state(conn);
    if ((ec->ops & OP_RECV) && ec->error) {
        int err = ec->error;
        ec->error = 0;
        recv_finish(conn);
        ovl__conn_failed(conn, err);
        ovl__conn_op_done(conn);
        return;
    }
    /* Callbacks run inside this loop may close the connection (cancel clears OP_RECV) or change its mode. */
    for (int reads = 0; ec->ops & OP_RECV; reads++) {
        bool drain = drain_read(conn);
        if (!drain && !ec->readable)
            return; /* wait for the next edge */
        if (drain && ovl__drain_read_all(conn)) {
            /* Everything the kernel held at the stop is read: the rest came after it. */
            recv_finish(conn);
            ovl__conn_read_done(conn);
            ovl__conn_op_done(conn);
            return;
        }
        if ((uint32_t)reads >= ((conn->flags & OVL__C_RECV_ONE) ? rw->burst_backlogged : rw->burst)) {
            ready_push(rw, ec);
            return;
        }
        struct ovl__pool *pool = &worker->pool;
        if (pool->free_count == 0) {
            /* Pool empty: the bytes stay in the socket and `readable` stays set; conn.c calls recv_start again
             * once a slot comes back. */
            recv_finish(conn);
            ovl__conn_wait_for_slot(conn);
            ovl__conn_op_done(conn);
            return;
        }
        uint32_t slot = pool->free_slots[pool->free_count - 1];
        size_t size = pool->slot_size, len = drain ? ovl__drain_read_len(conn, size) : size;
        ssize_t n = recv(conn->fd, pool->slots[slot]->home, len, 0);
        if (n > 0) {
            ovl__pool_pop(pool); /* `slot`, the top */
            ovl_buf *buf = ovl__pool_take(pool, slot, (size_t)n);
            if (!buf) {
                recv_finish(conn);
                ovl__conn_failed(conn, -EFAULT); /* the free list and the slot states disagree */
                ovl__conn_op_done(conn);
                return;
            }
            /* A short read emptied the receive queue, so the next arrival raises a new edge. Not so for a FIN
             * already queued behind the data (its edge is spent): with peer_done, and when draining, read on. */
            if ((size_t)n < len && !ec->peer_done && !drain)
                ec->readable = false;
            if (drain)
                ovl__conn_drain_read(conn, (size_t)n);
            ovl__conn_received(conn, buf);
            continue;
        }
        if (n == 0) {
            recv_finish(conn);
            ovl__conn_eof(conn);
            ovl__conn_op_done(conn);
            return;
        }
        int e = errno;
        if (e == EINTR)
            continue;
        if (e == EAGAIN || e == EWOULDBLOCK) {
            ec->readable = false;
            if (drain) {
                recv_finish(conn);
                ovl__conn_read_done(conn);
                ovl__conn_op_done(conn);
            }
            return;
        }
        recv_finish(conn);
        ovl__conn_failed(conn, -e);
        ovl__conn_op_done(conn);
        return;
    }
}

/* ---- sending ---- */

static void do_send(ovl_conn *conn)
{
    struct ready_conn *ec = conn_state(conn);
    struct iovec iov[SEND_BATCH];
    size_t count = 0, bytes = 0;
    for (ovl_buf *buf = conn->queue_head; buf && count < SEND_BATCH; buf = buf->next, count++) {
        iov[count].iov_base = buf->data;
        iov[count].iov_len = buf->len;
        bytes += buf->len;
    }
    conn->sending_bytes = bytes;
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = iov;
    msg.msg_iovlen = count;
    ssize_t n;
    do
        n = sendmsg(conn->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT); /* MSG_NOSIGNAL: EPIPE, never SIGPIPE */
    while (n < 0 && errno == EINTR);
    int e = n < 0 ? errno : 0;
    if (e == EAGAIN || e == EWOULDBLOCK) {
        ec->writable = false; /* stays pending: output readiness continues it */
        return;
    }
    ec->ops &= ~OP_SEND;
    if (n > 0 || (n == 0 && bytes == 0)) {
        /* A short count means the send buffer filled up (the kernel then sets SOCK_NOSPACE, so an output edge
         * follows); ovl__conn_sent keeps the rest queued and kicks, and send_start waits for that edge. */
        if ((size_t)n < bytes)
            ec->writable = false;
        ovl__conn_sent(conn, (size_t)n);
    } else {
        conn->flags &= ~OVL__C_SENDING;
        ovl__conn_failed(conn, n == 0 ? -EIO : -e);
    }
    ovl__conn_op_done(conn);
}

void ovl__ready_send_start(ovl_conn *conn)
{
    struct ready_conn *ec = conn_state(conn);
    int rc = watch(conn);
    if (rc < 0) {
        conn->flags &= ~OVL__C_SENDING;
        ovl__conn_failed(conn, rc);
        return;
    }
    ec->ops |= OP_SEND;
    conn->inflight++;
    if (ec->writable)
        do_send(conn);
}

/* ---- connecting ---- */

int ovl__ready_connect_start(ovl_conn *conn, const struct addrinfo *address)
{
    int fd = socket(address->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    if (fd < 0)
        return -errno;
    if (connect(fd, address->ai_addr, address->ai_addrlen) < 0 && errno != EINPROGRESS) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    conn->fd = fd;
    struct ready_conn *ec = conn_state(conn);
    ec->readable = ec->writable = ec->peer_done = false;
    ec->error = 0;
    /* Registering reports the current state, so a connect that already finished still raises its event. */
    int rc = watch(conn);
    if (rc < 0) {
        close(fd);
        conn->fd = -1;
        return rc;
    }
    ec->ops |= OP_CONNECT;
    conn->inflight++;
    return 0;
}

static void on_connect(ovl_conn *conn, unsigned events)
{
    struct ready_conn *ec = conn_state(conn);
    if (!(events & (OVL__POLL_OUT | OVL__POLL_ERR | OVL__POLL_HUP)))
        return; /* not finished yet */
    int error = 0;
    socklen_t length = sizeof error;
    if (getsockopt(conn->fd, SOL_SOCKET, SO_ERROR, &error, &length) < 0)
        error = errno;
    ec->ops &= ~OP_CONNECT;
    if (error == 0) {
        ovl__conn_connected(conn);
        ovl__conn_op_done(conn);
        return;
    }
    /* This address failed: its descriptor leaves the set before the next attempt registers a new one. */
    ec->ops &= ~OP_WATCH;
    struct ready_worker *rw = state_of(conn->worker);
    rw->poller->unwatch(rw->poll_state, conn->fd);
    close(conn->fd);
    conn->fd = -1;
    ovl__conn_connect_next(conn, -error);
    ovl__conn_op_done(conn); /* the old registration */
    ovl__conn_op_done(conn); /* the connect */
}

/* Nothing is in the kernel: finish every pending operation now, so inflight reaches 0 and conn.c frees the
 * connection (closing its descriptor) in the next flush. */
void ovl__ready_cancel(ovl_conn *conn)
{
    struct ready_conn *ec = conn_state(conn);
    unsigned ops = ec->ops;
    ready_remove(ec);
    ec->ops = 0;
    if (ops & OP_WATCH) {
        struct ready_worker *rw = state_of(conn->worker);
        rw->poller->unwatch(rw->poll_state, conn->fd);
    }
    if (ops & OP_RECV)
        conn->flags &= ~OVL__C_RECV_ARMED;
    if (ops & OP_SEND)
        conn->flags &= ~OVL__C_SENDING;
    if (conn->worker->stopping && (conn->worker->engine->faults & OVL__FAULT_SWALLOW_CANCELS))
        return; /* test fault (internal.h): cancelled operations that never finish */
    for (unsigned bit = 1; bit <= OP_CONNECT; bit <<= 1)
        if (ops & bit)
            ovl__conn_op_done(conn);
}

static void on_conn_event(struct ovl__worker *worker, ovl_conn *conn, unsigned events)
{
    struct ready_conn *ec = conn_state(conn);
    if (!(ec->ops & OP_WATCH))
        return; /* cancelled by a callback earlier in this batch; freed only in the next flush */
    if (events & (OVL__POLL_IN | OVL__POLL_RDHUP | OVL__POLL_HUP | OVL__POLL_ERR))
        ec->readable = true;
    if (events & (OVL__POLL_RDHUP | OVL__POLL_HUP | OVL__POLL_ERR))
        ec->peer_done = true;
    if (events & (OVL__POLL_OUT | OVL__POLL_HUP | OVL__POLL_ERR))
        ec->writable = true;
    if (ec->ops & OP_CONNECT) {
        on_connect(conn, events);
        return;
    }
    if ((events & OVL__POLL_ERR) && !(ec->ops & (OP_RECV | OP_SEND)) && !(conn->flags & OVL__C_CLOSING)) {
        /* Paused, nothing reading or sending: a reset must not wait for the pause to end to be noticed. */
        int error = 0;
        socklen_t length = sizeof error;
        if (getsockopt(conn->fd, SOL_SOCKET, SO_ERROR, &error, &length) == 0 && error) {
            ovl__conn_failed(conn, -error);
            return;
        }
    }
    if ((ec->ops & OP_SEND) && ec->writable)
        do_send(conn);
    if ((ec->ops & OP_RECV) && ec->readable && !ec->ready.next)
        do_recv(worker, conn); /* one on the ready list is read there, once */
}

/* ---- timers and the loop ---- */

/* Work that no event will announce: the wait must not block. */
static bool work_waiting(struct ovl__worker *worker)
{
    struct ready_worker *rw = state_of(worker);
    if (rw->ready.next != &rw->ready)
        return true;
    /* Flush walks the wait list before it starts sends, and our sends complete inside flush: slots they freed
     * (or a waiting connection that closed) are seen only by the next flush, which no event would bring. */
    return worker->wait_head && (worker->wait_dirty || worker->pool.held < worker->pool.slot_count);
}

static void run_ready(struct ovl__worker *worker)
{
    struct ready_worker *rw = state_of(worker);
    if (rw->ready.next == &rw->ready)
        return;
    /* Take the list as it is: connections pushed while it runs wait for the next turn. cancel() may unlink
     * entries from this local list; that needs only their own links. */
    struct ready_link batch = {rw->ready.prev, rw->ready.next};
    batch.next->prev = &batch;
    batch.prev->next = &batch;
    rw->ready.prev = rw->ready.next = &rw->ready;
    while (batch.next != &batch) {
        struct ready_conn *ec = (struct ready_conn *)batch.next;
        ready_remove(ec);
        do_recv(worker, ec->conn);
    }
}

void ovl__ready_poll(struct ovl__worker *worker, int64_t timeout_ns)
{
    struct ready_worker *rw = state_of(worker);
    const char *call = "wait";
    int count = rw->poller->wait(rw->poll_state, rw->events, EVENT_BATCH, work_waiting(worker) ? 0 : timeout_ns,
                                 worker->poll_ns, &call);
    ovl__worker_clock(worker);
    if (count < 0) {
        if (count != -EINTR) {
            ovl__log(worker->engine, OVL_LOG_ERROR, "%s: %s (errno %d)", call, ovl_strerror(count), -count);
            ovl__worker_drain_expired(worker);
        }
        count = 0;
    }
    for (int i = 0; i < count; i++) {
        if (rw->events[i].listener)
            accept_some(worker, rw->events[i].owner);
        else
            on_conn_event(worker, rw->events[i].owner, rw->events[i].events);
    }
    run_ready(worker);
}
