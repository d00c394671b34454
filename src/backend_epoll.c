/*
 * backend_epoll.c - the epoll backend: readiness turned into the completions conn.c expects. It runs where
 * io_uring cannot (kernels before 5.19, seccomp profiles and the io_uring_disabled sysctl that forbid it); it needs
 * Linux 4.5 for EPOLLEXCLUSIVE and nothing newer.
 *
 * One epoll instance per worker thread, an eventfd for wake(), and epoll_wait's timeout for the timers (the drain
 * deadline, the 100 ms accept pause after EMFILE/ENFILE, the idle sweep's tick); a timerfd would only add a
 * descriptor.
 *
 * Connections are registered once, edge-triggered, for EPOLLIN | EPOLLOUT | EPOLLRDHUP, and never modified. Why
 * edges: conn.c arms and disarms receiving (a slot wait, EOF, draining) and a send blocks and unblocks all the time;
 * with level triggering each change would be an epoll_ctl(MOD) to keep a disarmed socket from being reported on
 * every turn. With edges the backend remembers "readable" and "writable" itself and a change of interest costs no
 * system call. The price is the edge rule - never stop reading short of EAGAIN without remembering that more may
 * be there - and the ready list keeps it: a connection that used up its RECV_BURST reads for this turn, or that must
 * read without a new edge (draining, re-armed after a slot wait), is read again on the next turn. Listening
 * sockets are the exception: level-triggered with EPOLLEXCLUSIVE (one worker woken per connection, not all), so a
 * backlog left after ACCEPT_BURST is simply reported again.
 *
 * Operations are emulated as backend.h asks: each one pending on a connection (its registration, an armed receive,
 * a send waiting for EPOLLOUT, a connect in progress) holds one count of conn->inflight and is finished by exactly
 * one ovl__conn_op_done, from its handler or from cancel(). Holding a count for the registration makes conn.c
 * call cancel() for every registered connection before freeing it, so the descriptor always leaves the epoll set
 * before conn_free closes it: close() alone would leave the registration alive (and pointing at freed memory)
 * while a forked child of the embedding program still holds the descriptor.
 */
#include "backend.h"

#include "alloc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

enum tag {
    TAG_CONN = 0,
    TAG_ACCEPT,
    TAG_WAKE
};
#define TAG_MASK 3u

enum {
    EVENT_BATCH = 256,        /* events taken per epoll_wait */
    RECV_BURST = 16,          /* reads per connection per loop turn: one flooding peer cannot starve the others */
    RECV_BURST_BACKLOGGED = 4, /* the same for a connection that fills whole buffers (OVL__C_RECV_ONE): a hundred
                                 of them flooding at once must not make a loop turn milliseconds long */
    ACCEPT_BURST = 64,        /* accepts per listening socket per loop turn */
    SEND_BATCH = 16,          /* queued buffers gathered into one sendmsg */
    ACCEPT_RETRY_MS = 100     /* pause after EMFILE/ENFILE so a full descriptor table does not spin the CPU */
};

/* Operations pending on a connection; each holds one count of conn->inflight. */
enum {
    OP_WATCH = 1u << 0,       /* the descriptor is in the epoll set */
    OP_RECV = 1u << 1,        /* receiving is armed (OVL__C_RECV_ARMED) */
    OP_SEND = 1u << 2,        /* a send started and waits for EPOLLOUT */
    OP_CONNECT = 1u << 3      /* a non-blocking connect waits for EPOLLOUT */
};

struct ready_link {
    struct ready_link *prev, *next; /* NULL while not on a list */
};

struct epoll_conn {
    struct ready_link ready;  /* first member: a link is its epoll_conn */
    ovl_conn *conn;
    unsigned ops;
    bool readable;            /* an edge said so and no read has seen EAGAIN since */
    bool writable;
    bool peer_done;           /* FIN, reset or error seen: read to EAGAIN or 0, never stop at a short read */
    int error;                /* registration failed: reported by the armed receive */
};

struct epoll_accept {
    struct epoll_accept *next;
    struct ovl__listen_socket *socket;
    bool watched;
    struct ovl__timer retry;  /* watch again after EMFILE and the like */
};

struct epoll_worker {
    int epoll_fd;
    int wake_fd;
    struct epoll_accept *accepts;
    struct ready_link ready;  /* connections to read on the next turn without waiting for an edge */
    bool pwait2;              /* epoll_pwait2 works here (not ENOSYS) */
    struct epoll_event events[EVENT_BATCH];
};

static inline uint64_t tagged(const void *owner, enum tag tag)
{
    return (uint64_t)(uintptr_t)owner | tag;
}

static inline struct epoll_worker *state_of(struct ovl__worker *worker)
{
    return worker->backend_state;
}

static inline struct epoll_conn *conn_state(ovl_conn *conn)
{
    return (struct epoll_conn *)conn->backend_data;
}

/* ---- the ready list ---- */

static void ready_push(struct epoll_worker *ew, struct epoll_conn *ec)
{
    if (ec->ready.next)
        return;
    ec->ready.prev = ew->ready.prev;
    ec->ready.next = &ew->ready;
    ew->ready.prev->next = &ec->ready;
    ew->ready.prev = &ec->ready;
}

static void ready_remove(struct epoll_conn *ec)
{
    if (!ec->ready.next)
        return;
    ec->ready.prev->next = ec->ready.next;
    ec->ready.next->prev = ec->ready.prev;
    ec->ready.prev = ec->ready.next = NULL;
}

/* ---- set-up ---- */

static void worker_destroy(struct ovl__worker *worker);

static int worker_init(struct ovl__worker *worker, ovl_error_info *err)
{
    struct epoll_worker *ew = ovl__zalloc(sizeof *ew);
    if (!ew) {
        ovl__error_set(err, -ENOMEM, NULL, "allocate the epoll worker state");
        return -ENOMEM;
    }
    ew->epoll_fd = -1;
    ew->pwait2 = true;
    ew->wake_fd = -1;
    ew->ready.prev = ew->ready.next = &ew->ready;
    worker->backend_state = ew;
    int rc = 0;
    if ((ew->epoll_fd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
        rc = -errno;
        ovl__error_set(err, rc, NULL, "epoll_create1");
    }
    if (rc == 0 && (ew->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
        rc = -errno;
        ovl__error_set(err, rc, NULL, "eventfd");
    }
    if (rc == 0) {
        struct epoll_event event = {.events = EPOLLIN, .data.u64 = tagged(worker, TAG_WAKE)};
        if (epoll_ctl(ew->epoll_fd, EPOLL_CTL_ADD, ew->wake_fd, &event) < 0) {
            rc = -errno;
            ovl__error_set(err, rc, NULL, "epoll_ctl add eventfd");
        }
    }
    if (rc < 0) {
        worker_destroy(worker);
        return rc;
    }
    return 0;
}

static void worker_destroy(struct ovl__worker *worker)
{
    struct epoll_worker *ew = state_of(worker);
    if (!ew)
        return;
    if (ew->epoll_fd >= 0)
        close(ew->epoll_fd);
    if (ew->wake_fd >= 0)
        close(ew->wake_fd);
    while (ew->accepts) {
        struct epoll_accept *accept = ew->accepts;
        ew->accepts = accept->next;
        ovl__free(accept);
    }
    ovl__free(ew);
    worker->backend_state = NULL;
}

static void wake(struct ovl__worker *worker)
{
    struct epoll_worker *ew = state_of(worker);
    uint64_t one = 1;
    if (ew && write(ew->wake_fd, &one, sizeof one) < 0) {
        /* EAGAIN: the counter is already non-zero, so the worker wakes anyway. */
    }
}

/* ---- accepting ---- */

static int watch_listener(struct epoll_worker *ew, struct epoll_accept *accept)
{
    struct epoll_event event = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.u64 = tagged(accept, TAG_ACCEPT)};
    if (epoll_ctl(ew->epoll_fd, EPOLL_CTL_ADD, accept->socket->fd, &event) < 0)
        return -errno;
    accept->watched = true;
    return 0;
}

static void unwatch_listener(struct epoll_worker *ew, struct epoll_accept *accept)
{
    /* EPOLLEXCLUSIVE registrations cannot be modified (EINVAL), only removed and added again. */
    if (accept->watched)
        epoll_ctl(ew->epoll_fd, EPOLL_CTL_DEL, accept->socket->fd, NULL);
    accept->watched = false;
}

static void retry_later(struct ovl__worker *worker, struct epoll_accept *accept)
{
    ovl__timer_start(worker, &accept->retry, ovl__clock_ns() + ACCEPT_RETRY_MS * 1000000ull);
}

static void accept_some(struct ovl__worker *worker, struct epoll_accept *accept);

static void accept_retry_fired(struct ovl__worker *worker, struct ovl__timer *timer)
{
    struct epoll_accept *accept = ovl__container_of(timer, struct epoll_accept, retry);
    if (worker->stopping)
        return;
    if (watch_listener(state_of(worker), accept) == 0)
        accept_some(worker, accept);
    else
        retry_later(worker, accept);
}

static void accept_some(struct ovl__worker *worker, struct epoll_accept *accept)
{
    struct epoll_worker *ew = state_of(worker);
    for (int i = 0; i < ACCEPT_BURST && accept->watched && !worker->stopping; i++) {
        int fd = accept4(accept->socket->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            ovl__worker_accepted(worker, accept->socket, fd);
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
            unwatch_listener(ew, accept);
            retry_later(worker, accept);
            return;
        }
        /* ECONNABORTED, EPROTO, EPERM (a firewall): that one connection failed, the next may not. */
    }
}

static void accept_start(struct ovl__worker *worker, struct ovl__listen_socket *socket)
{
    struct epoll_worker *ew = state_of(worker);
    struct epoll_accept *accept = ovl__zalloc(sizeof *accept);
    if (!accept) {
        ovl__count(&worker->counters.errors, 1);
        return;
    }
    accept->socket = socket;
    accept->retry.fire = accept_retry_fired;
    accept->next = ew->accepts;
    ew->accepts = accept;
    /* Every worker accepts on this socket: after a wake-up another worker may have taken the connection, and a
     * blocking accept4 would then stall this thread. O_NONBLOCK lives on the shared file description, which is
     * what every worker of this engine wants. */
    int flags = fcntl(socket->fd, F_GETFL);
    if (flags >= 0 && !(flags & O_NONBLOCK))
        fcntl(socket->fd, F_SETFL, flags | O_NONBLOCK);
    if (watch_listener(ew, accept) < 0) {
        ovl__count(&worker->counters.errors, 1);
        retry_later(worker, accept);
        return;
    }
    accept_some(worker, accept);
}

static void accept_stop(struct ovl__worker *worker)
{
    struct epoll_worker *ew = state_of(worker);
    for (struct epoll_accept *accept = ew->accepts; accept; accept = accept->next) {
        unwatch_listener(ew, accept);
        ovl__timer_stop(worker, &accept->retry);
    }
}

/* ---- connections: registration ---- */

static int watch(ovl_conn *conn)
{
    struct epoll_conn *ec = conn_state(conn);
    if (ec->ops & OP_WATCH)
        return 0;
    ec->conn = conn;
    struct epoll_event event = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                .data.u64 = tagged(conn, TAG_CONN)};
    if (epoll_ctl(state_of(conn->worker)->epoll_fd, EPOLL_CTL_ADD, conn->fd, &event) < 0)
        return -errno;
    ec->ops |= OP_WATCH;
    conn->inflight++;
    return 0;
}

/* The receive is no longer armed; the caller reports why, then calls ovl__conn_op_done. */
static void recv_finish(ovl_conn *conn)
{
    struct epoll_conn *ec = conn_state(conn);
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

static void recv_start(ovl_conn *conn)
{
    struct epoll_worker *ew = state_of(conn->worker);
    struct epoll_conn *ec = conn_state(conn);
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
        ready_push(ew, ec);
}

/* Stop the armed receive; `readable` is kept, so recv_start reads on at the next turn when conn.c resumes. */
static void recv_pause(ovl_conn *conn)
{
    /* Registered even when paused before its first receive (in on_open): EPOLLERR must still reach it. */
    if (watch(conn) < 0 || !(conn_state(conn)->ops & OP_RECV))
        return;
    recv_finish(conn);
    ovl__conn_op_done(conn);
}

static void recv_drain(ovl_conn *conn)
{
    struct epoll_conn *ec = conn_state(conn);
    if (ec->ops & OP_RECV)
        ready_push(state_of(conn->worker), ec); /* the armed receive reads to EAGAIN in drain mode next turn */
    else if (!(conn->flags & OVL__C_RECV_WAIT))
        recv_start(conn);
}

static void do_recv(struct ovl__worker *worker, ovl_conn *conn)
{
    struct epoll_worker *ew = state_of(worker);
    struct epoll_conn *ec = conn_state(conn);
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
        if (reads >= ((conn->flags & OVL__C_RECV_ONE) ? RECV_BURST_BACKLOGGED : RECV_BURST)) {
            ready_push(ew, ec);
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
        ssize_t n = recv(conn->fd, pool->slab + (size_t)slot * size, len, 0);
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
    struct epoll_conn *ec = conn_state(conn);
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
        ec->writable = false; /* stays pending: EPOLLOUT continues it */
        return;
    }
    ec->ops &= ~OP_SEND;
    if (n > 0 || (n == 0 && bytes == 0)) {
        /* A short count means the send buffer filled up (the kernel then sets SOCK_NOSPACE, so an EPOLLOUT edge
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

static void send_start(ovl_conn *conn)
{
    struct epoll_conn *ec = conn_state(conn);
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

static int connect_start(ovl_conn *conn, const struct addrinfo *address)
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
    struct epoll_conn *ec = conn_state(conn);
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

static void on_connect(ovl_conn *conn, uint32_t events)
{
    struct epoll_conn *ec = conn_state(conn);
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
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
    epoll_ctl(state_of(conn->worker)->epoll_fd, EPOLL_CTL_DEL, conn->fd, NULL);
    close(conn->fd);
    conn->fd = -1;
    ovl__conn_connect_next(conn, -error);
    ovl__conn_op_done(conn); /* the old registration */
    ovl__conn_op_done(conn); /* the connect */
}

/* Nothing is in the kernel: finish every pending operation now, so inflight reaches 0 and conn.c frees the
 * connection (closing its descriptor) in the next flush. */
static void cancel(ovl_conn *conn)
{
    struct epoll_conn *ec = conn_state(conn);
    unsigned ops = ec->ops;
    ready_remove(ec);
    ec->ops = 0;
    if (ops & OP_WATCH)
        epoll_ctl(state_of(conn->worker)->epoll_fd, EPOLL_CTL_DEL, conn->fd, NULL);
    if (ops & OP_RECV)
        conn->flags &= ~OVL__C_RECV_ARMED;
    if (ops & OP_SEND)
        conn->flags &= ~OVL__C_SENDING;
    for (unsigned bit = 1; bit <= OP_CONNECT; bit <<= 1)
        if (ops & bit)
            ovl__conn_op_done(conn);
}

static void on_conn_event(struct ovl__worker *worker, ovl_conn *conn, uint32_t events)
{
    struct epoll_conn *ec = conn_state(conn);
    if (!(ec->ops & OP_WATCH))
        return; /* cancelled by a callback earlier in this batch; freed only in the next flush */
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        ec->readable = true;
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        ec->peer_done = true;
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        ec->writable = true;
    if (ec->ops & OP_CONNECT) {
        on_connect(conn, events);
        return;
    }
    if ((events & EPOLLERR) && !(ec->ops & (OP_RECV | OP_SEND)) && !(conn->flags & OVL__C_CLOSING)) {
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
    struct epoll_worker *ew = state_of(worker);
    if (ew->ready.next != &ew->ready)
        return true;
    /* Flush walks the wait list before it starts sends, and our sends complete inside flush: slots they freed
     * (or a waiting connection that closed) are seen only by the next flush, which no event would bring. */
    return worker->wait_head && (worker->wait_dirty || worker->pool.held < worker->pool.slot_count);
}

/* epoll_pwait2 (5.11) waits with a nanosecond timeout, which ovl_conn_timer needs; epoll_wait's milliseconds are
 * the fallback on older kernels (timers then fire up to 1 ms late). */
static int wait_for_events(struct epoll_worker *ew, int64_t timeout_ns)
{
    if (ew->pwait2) {
        struct timespec timeout = {.tv_sec = timeout_ns / 1000000000, .tv_nsec = timeout_ns % 1000000000};
        int count = epoll_pwait2(ew->epoll_fd, ew->events, EVENT_BATCH, timeout_ns < 0 ? NULL : &timeout, NULL);
        if (count >= 0 || errno != ENOSYS)
            return count;
        ew->pwait2 = false;
    }
    int64_t ms = timeout_ns < 0 ? -1 : (timeout_ns + 999999) / 1000000;
    return epoll_wait(ew->epoll_fd, ew->events, EVENT_BATCH, ms > INT_MAX ? INT_MAX : (int)ms);
}

static void run_ready(struct ovl__worker *worker)
{
    struct epoll_worker *ew = state_of(worker);
    if (ew->ready.next == &ew->ready)
        return;
    /* Take the list as it is: connections pushed while it runs wait for the next turn. cancel() may unlink
     * entries from this local list; that needs only their own links. */
    struct ready_link batch = {ew->ready.prev, ew->ready.next};
    batch.next->prev = &batch;
    batch.prev->next = &batch;
    ew->ready.prev = ew->ready.next = &ew->ready;
    while (batch.next != &batch) {
        struct epoll_conn *ec = (struct epoll_conn *)batch.next;
        ready_remove(ec);
        do_recv(worker, ec->conn);
    }
}

static void dispatch(struct ovl__worker *worker, const struct epoll_event *event)
{
    struct epoll_worker *ew = state_of(worker);
    enum tag tag = (enum tag)(event->data.u64 & TAG_MASK);
    void *owner = (void *)(uintptr_t)(event->data.u64 & ~(uint64_t)TAG_MASK);
    switch (tag) {
    case TAG_CONN:
        on_conn_event(worker, owner, event->events);
        break;
    case TAG_ACCEPT:
        accept_some(worker, owner);
        break;
    case TAG_WAKE: {
        uint64_t value;
        if (read(ew->wake_fd, &value, sizeof value) < 0) {
            /* EAGAIN: another wake-up already reset it. */
        }
        break;
    }
    }
}

static void poll_events(struct ovl__worker *worker, int64_t timeout_ns)
{
    struct epoll_worker *ew = state_of(worker);
    int count = wait_for_events(ew, work_waiting(worker) ? 0 : timeout_ns);
    ovl__worker_clock(worker);
    if (count < 0) {
        int e = errno;
        if (e != EINTR) {
            ovl__log(worker->engine, OVL_LOG_ERROR, "%s: %s (errno %d)", ew->pwait2 ? "epoll_pwait2" : "epoll_wait",
                     ovl_strerror(-e), e);
            ovl__worker_drain_expired(worker);
        }
        count = 0;
    }
    for (int i = 0; i < count; i++)
        dispatch(worker, &ew->events[i]);
    run_ready(worker);
}

const struct ovl__backend ovl__backend_epoll = {
    .name = "epoll",
    .conn_extra = sizeof(struct epoll_conn),
    .worker_init = worker_init,
    .poll = poll_events,
    .worker_destroy = worker_destroy,
    .wake = wake,
    .accept_start = accept_start,
    .accept_stop = accept_stop,
    .recv_start = recv_start,
    .recv_drain = recv_drain,
    .recv_pause = recv_pause,
    .send_start = send_start,
    .connect_start = connect_start,
    .cancel = cancel,
};
