/*
 * ready.h - the readiness layer (ready.c) as a backend: a readiness backend is a poller (poller.h) and one line,
 *
 *     const struct ovl__backend ovl__backend_epoll = OVL__READY_BACKEND("epoll", &ovl__poller_epoll);
 *
 * plus its entry in engine.c's backend table.
 */
#ifndef OVL_READY_H
#define OVL_READY_H

#include "backend.h"
#include "poller.h"

struct ready_link {
    struct ready_link *prev, *next; /* NULL while not on a list */
};

struct ready_conn {
    struct ready_link ready;  /* first member: a link is its ready_conn */
    ovl_conn *conn;
    unsigned ops;
    bool readable;            /* an edge said so and no read has seen EAGAIN since */
    bool writable;
    bool peer_done;           /* FIN, reset or error seen: read to EAGAIN or 0, never stop at a short read */
    int error;                /* registration failed: reported by the armed receive */
};

int ovl__ready_worker_init(struct ovl__worker *worker, ovl_error_info *err);
void ovl__ready_poll(struct ovl__worker *worker, int64_t timeout_ns);
void ovl__ready_worker_destroy(struct ovl__worker *worker);
void ovl__ready_wake(struct ovl__worker *worker);
void ovl__ready_accept_start(struct ovl__worker *worker, struct ovl__listen_socket *socket);
void ovl__ready_accept_stop(struct ovl__worker *worker);
void ovl__ready_recv_start(ovl_conn *conn);
void ovl__ready_recv_drain(ovl_conn *conn);
void ovl__ready_recv_pause(ovl_conn *conn);
void ovl__ready_send_start(ovl_conn *conn);
int ovl__ready_connect_start(ovl_conn *conn, const struct addrinfo *address);
void ovl__ready_cancel(ovl_conn *conn);

#define OVL__READY_BACKEND(backend_name, backend_poller)                                                             \
    {                                                                                                                \
        .name = (backend_name), .poller = (backend_poller), .conn_extra = sizeof(struct ready_conn),                \
        .worker_init = ovl__ready_worker_init, .poll = ovl__ready_poll,                                              \
        .worker_destroy = ovl__ready_worker_destroy, .wake = ovl__ready_wake,                                        \
        .accept_start = ovl__ready_accept_start, .accept_stop = ovl__ready_accept_stop,                              \
        .recv_start = ovl__ready_recv_start, .recv_drain = ovl__ready_recv_drain,                                    \
        .recv_pause = ovl__ready_recv_pause, .send_start = ovl__ready_send_start,                                    \
        .connect_start = ovl__ready_connect_start, .cancel = ovl__ready_cancel,                                      \
    }

#endif
