/*
 * backend.h - the small interface every I/O backend implements (one file per backend).
 *
 * The shape follows Redis' ae_*.c: a handful of operations over a private per-worker state. A backend owns how
 * operations are started and how their completions are collected; conn.c owns what a completion means.
 *
 * Rules every backend keeps:
 *   - all functions except wake() run on the worker's own thread;
 *   - recv_start never delivers data on the spot (it is called from inside conn.c, even from inside a delivery for
 *     the same connection); send_start may complete at once and call ovl__conn_sent / ovl__conn_failed;
 *   - worker_destroy runs after the worker thread has ended (from ovl_engine_destroy), so wake() stays safe to call
 *     until then;
 *   - every operation started on a connection increments conn->inflight, and its completion calls
 *     ovl__conn_op_done() after reporting the result, so a connection is never freed under an operation;
 *   - a pool slot filled by the kernel is reported exactly once (ovl__conn_received) or given back exactly once
 *     (ovl__buf_free, onto the pool's free stack), never both.
 */
#ifndef OVL_BACKEND_H
#define OVL_BACKEND_H

#include "internal.h"

struct ovl__poller;

struct ovl__backend {
    const char *name;
    const char *alias;                 /* another name config.backend may use, or NULL */
    const struct ovl__poller *poller;  /* a readiness backend (ready.c): the poller under it; else NULL */
    size_t conn_extra;                 /* bytes of backend state per connection */
    /* The backend accepts on a thread of its own (IOCP: a listening socket's completions all go to the one port
     * it is associated with, and a worker that owned it would hold every accept while its connections or a
     * callback keep it busy). The engine then runs one more loop after the workers, workers[thread_count], marked
     * `acceptor`: it alone gets OVL__CMD_LISTEN and accept_start, alone counts in accepting_workers (so it closes
     * the listening sockets when it stops), and hands each accepted socket to a worker (ovl__worker_adopt). It owns
     * no connection and no receive pool, takes no ovl_post, and ovl__worker_least_loaded never picks it. */
    bool acceptor;
    /* Optional: can this backend run here (a kernel or sandbox may forbid it)? 0, or a negative error with err
     * filled. Used to pick the default backend. */
    int (*available)(ovl_error_info *err);
    /* Set up the worker's state on the worker thread (rings must be created by the thread that submits). */
    int (*worker_init)(struct ovl__worker *worker, ovl_error_info *err);
    /* One wait of the worker loop (worker.c, worker_loop): wait at most timeout_ns (-1 = until something happens,
     * 0 = do not block; the backend may shorten it, e.g. to 0 while it has work no event will announce) for
     * completions or readiness, stamp the clock (ovl__worker_clock) as the wait returns, then handle what it
     * brought. Timers and commands are the loop's. */
    void (*poll)(struct ovl__worker *worker, int64_t timeout_ns);
    /* Optional: operations of the backend's own that must complete before the loop may end once the last
     * connection is gone (accepts being cancelled, sockets being retired). */
    bool (*busy)(struct ovl__worker *worker);
    /* Optional: the stop's hard deadline passed (worker.c, stop_timer_fired) with operations still pending: close
     * every socket they are on - connections', accepted sockets waiting in accepts, retiring ones - so that the
     * system completes them (IOCP: closesocket ends pending I/O with ERROR_OPERATION_ABORTED). Each connection is
     * already closing; its completions arrive as usual, and conn.c closes no descriptor the backend set to
     * OVL__NO_SOCKET. */
    void (*stop_force)(struct ovl__worker *worker);
    /* Optional: the worker gives up on its own operations still pending after that (the loop ends now). Returns
     * how many; their memory must then outlive worker_destroy (leaked), since the system may still write to it. */
    unsigned (*stop_abandon)(struct ovl__worker *worker);
    void (*worker_destroy)(struct ovl__worker *worker);
    /* Any thread: make the worker look at its command queue. */
    void (*wake)(struct ovl__worker *worker);
    void (*accept_start)(struct ovl__worker *worker, struct ovl__listen_socket *socket);
    /* Stop accepting on every socket (engine stopping). */
    void (*accept_stop)(struct ovl__worker *worker);
    /* Start receiving (continuously, or - when the connection is draining - only what is already buffered). */
    void (*recv_start)(ovl_conn *conn);
    /* The connection just started draining: make the receive path deliver only what is already buffered, then
     * call ovl__conn_read_done (a continuous receive in flight is cancelled; recv_start then reads the rest). */
    void (*recv_drain)(ovl_conn *conn);
    /* Stop receiving for now (too much queued for sending, the pool's share, ovl_recv_pause); a receive in flight
     * may still complete and be delivered. Nothing is re-armed while OVL__C_PAUSED is set; conn.c calls
     * recv_start to resume. Called whether or not a receive is armed (OVL__C_RECV_ARMED): a paused connection must
     * still notice a reset, so the backend keeps watching the socket for errors. */
    void (*recv_pause)(ovl_conn *conn);
    /* Send conn->queue_head.. (at least the head). conn->sending_bytes is set by the backend. */
    void (*send_start)(ovl_conn *conn);
    /* Open a socket for this address and connect it; returns 0 or a negative error (then the next is tried). */
    int (*connect_start)(ovl_conn *conn, const struct addrinfo *address);
    /* Cancel every operation in flight on the connection (their completions still arrive). */
    void (*cancel)(ovl_conn *conn);
    /* Optional: take over the socket of a connection being freed (IOCP: DisconnectEx(TF_REUSE_SOCKET) and a reuse
     * pool). Returns true if it did; otherwise the socket is closed. */
    bool (*socket_retire)(ovl_conn *conn);
};

void ovl__worker_drain_expired(struct ovl__worker *worker);

#ifdef _WIN32
extern const struct ovl__backend ovl__backend_iocp;
#else
extern const struct ovl__backend ovl__backend_uring;
extern const struct ovl__backend ovl__backend_epoll;
#endif

#endif
