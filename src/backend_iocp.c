/*
 * backend_iocp.c - the Windows backend: I/O completion ports, AcceptEx / WSARecv / WSASend / ConnectEx, and
 * DisconnectEx(TF_REUSE_SOCKET) feeding a socket reuse pool.
 *
 * Ports and threads. Each worker thread owns one completion port and dequeues it in batches with
 * GetQueuedCompletionStatusEx. A connection's socket is associated with its owner's port, so all of its
 * completions reach that one thread: that is what lets liboverlap promise that a connection's callbacks never run
 * concurrently, with no lock per connection and per-worker buffer pools and counters (the same shape as the
 * io_uring ring per worker). A listening socket can be associated with only one port, and every AcceptEx
 * completion goes there: a worker that owned it would hold every accept of the engine while its own connections,
 * or an embedder's callback that blocks, keep it busy. So the listening sockets belong to the acceptor, one more
 * thread with a port of its own that never owns a connection (backend.h, `acceptor`: the engine runs it as one more
 * loop of worker.c, so its timers, counters and stop deadline are the workers'). It keeps `ACCEPTS_POSTED` AcceptEx
 * calls posted per listening socket and hands each accepted socket to the least-loaded worker of the moment it
 * completes - or, for a socket drawn from a worker's reuse pool (already on that worker's port), to that worker -
 * by associating it with the worker's port and posting it to the worker's command queue. It exists with one worker
 * too: one code path, and that worker's callbacks never delay an accept.
 *
 * Operations. Every OVERLAPPED sits in a struct iocp_op that says what it is and whom it belongs to; the op is
 * filled completely before the call that posts it, because another thread may dequeue the completion before the
 * call returns (for accepts, the handing-over makes that real). A connection counts its posted operations in
 * conn->inflight and is freed only when the last one has completed (conn.c). Closing cancels with CancelIoEx.
 *
 * Skip-on-success. Where every TCP provider is an IFS provider (XP1_IFS_HANDLES, checked with WSAEnumProtocols,
 * as libuv does), sockets get FILE_SKIP_COMPLETION_PORT_ON_SUCCESS: a call that completes at once posts no packet
 * and is handled by the calling thread through the worker's ready list. Layered non-IFS providers (some
 * firewalls) would lose such completions, so then the mode stays off. The mode is set per socket and whether it
 * took is kept per socket: where it did not, a call completing at once still posts a packet and is handled from
 * there only. A call that fails at once never posts a packet either, and goes through the same ready list.
 *
 * Socket reuse. A connection closed in good order is disconnected with DisconnectEx(TF_REUSE_SOCKET) and its
 * socket kept in its worker's reuse pool for its role: Microsoft lets an accepted socket go to AcceptEx again and a
 * connected one (which stays bound) to ConnectEx only, so AcceptEx draws from the accepted pool, ConnectEx from the
 * connected one. A provider may refuse a reused socket: Wine 8 only shuts the socket down, so ConnectEx on it fails
 * with WSAEISCONN and AcceptEx with WSAEINVAL. Such a socket is closed, `reuse_fallback` counted, and the same accept
 * or connect is made at once with a fresh socket, so no connection attempt is lost.
 */
#include "alloc.h"
#include "backend.h"

#include <mstcpip.h>
#include <mswsock.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

/* SIO_TCP_INITIAL_RTO (Windows 8 and later; mstcpip.h): older mingw-w64 headers lack it. */
#ifndef SIO_TCP_INITIAL_RTO
#define SIO_TCP_INITIAL_RTO _WSAIOW(IOC_VENDOR, 17)
typedef struct {
    USHORT Rtt;
    UCHAR MaxSynRetransmissions;
} TCP_INITIAL_RTO_PARAMETERS;
#endif
#ifndef TCP_INITIAL_RTO_NO_SYN_RETRANSMISSIONS
#define TCP_INITIAL_RTO_UNSPECIFIED_RTT ((USHORT)-1)
#define TCP_INITIAL_RTO_UNSPECIFIED_MAX_SYN_RETRANSMISSIONS ((UCHAR)-1)
#define TCP_INITIAL_RTO_NO_SYN_RETRANSMISSIONS ((UCHAR)-2)
#endif

enum {
    ACCEPTS_POSTED = 32,         /* AcceptEx calls kept posted per listening socket */
    COMPLETION_BATCH = 128,      /* entries per GetQueuedCompletionStatusEx */
    SEND_BATCH = 16,             /* queued buffers gathered into one WSASend */
    REUSE_POOL_MAX = 256,        /* sockets kept per worker, role and family */
    ACCEPT_RETRY_MS = 100,
    RETIRE_TIMEOUT_MS = 2000,    /* a DisconnectEx still pending after this is cancelled (see on_retire_timer) */
    RESOURCE_RETRY_MS = 10,      /* a receive or send refused for lack of resources is tried again after this, */
    RESOURCE_RETRY_MAX = 8,      /* this many times in a row before the connection is closed */
    ADDRESS_SPACE = sizeof(SOCKADDR_STORAGE) + 16 /* what AcceptEx wants per address */
};

/* Automatic zero-byte receives once a worker's posted receive buffers would pass this many bytes (Windows locks a
 * posted buffer's pages for as long as it waits): above 256 connections at the default 64 KiB buffers, 1024 at
 * 16 KiB - or once they would hold more than half of its pool (small buffers, a small fixed pool), where idle
 * connections would leave the busy ones below the pool's reserve. */
#define ZERO_BYTE_ABOVE_BYTES (16u << 20)
#define KEY_WAKE ((ULONG_PTR)1)

/* What a pooled socket was: Microsoft allows a socket accepted by AcceptEx and disconnected with TF_REUSE_SOCKET
 * to go to AcceptEx again, and a ConnectEx socket (which stays bound) to ConnectEx only. */
enum reuse_role { ROLE_ACCEPTED, ROLE_CONNECTED };

enum op_kind {
    OP_RECV = 1, OP_RECV_ZERO, OP_RECV_WATCH, OP_SEND, OP_CONNECT, OP_ACCEPT, OP_DISCONNECT, OP_DRAIN_READ
};

struct iocp_op {
    OVERLAPPED overlapped;
    enum op_kind kind;
    void *owner;
    SOCKET socket;               /* the handle the operation was issued on, for WSAGetOverlappedResult */
    struct iocp_op *ready_next;  /* on the worker's ready list: completed without a packet */
    DWORD ready_bytes;
    int ready_error;
};

struct iocp_conn {
    struct iocp_op recv, send, connect;
    struct iocp_op watch;        /* a zero-byte WSARecv watching a paused connection for its peer's reset */
    WSABUF send_buffers[SEND_BATCH];
    ovl_buf *recv_slot;
    const struct addrinfo *connect_address;
    bool connect_reused;
    ovl_conn *conn;              /* back from the retry timer */
    struct ovl__timer retry;     /* a receive or send to try again (retry_ops) after a resource error */
    unsigned retry_ops;          /* RETRY_RECV | RETRY_SEND, each holding one count in conn->inflight */
    unsigned retries;            /* resource errors in a row */
    bool skip;                   /* skip-on-success took on conn->fd (valid once skip_known) */
    bool skip_known;
    bool peer_closed_first;      /* the peer's FIN came before our side shut down: no TIME_WAIT here */
    bool watching;               /* the watch is posted (one count in conn->inflight) */
    bool unread_waits;           /* paused, and the watch found bytes waiting: no watch until the pause ends */
    bool recv_deferred;          /* the pause ended with the watch posted: the receive is posted when the watch
                                    completes (OVL__C_RECV_ARMED and one count in conn->inflight meanwhile) */
    enum reuse_role role;
};

struct iocp_accept {
    struct iocp_op op;
    struct iocp_accept *next;
    struct ovl__listen_socket *listen_socket;
    struct ovl__worker *target;  /* the worker that will own the accepted connection */
    SOCKET socket;
    bool reused;
    bool armed;
    bool listen_skip;            /* skip-on-success took on the listening socket */
    struct ovl__timer retry;     /* post again after a failure to post */
    char addresses[2 * ADDRESS_SPACE];
};

struct iocp_retire {
    struct iocp_op op;
    struct iocp_retire *prev, *next;
    int family;
    enum reuse_role role;
    int stage;                   /* 0 pending, 1 cancel requested, 2 socket closed and given up on (by its timer,
                                    or at the stop's hard deadline: retire_give_up) */
    struct ovl__timer timer;     /* stage 0: time to cancel; stage 1: time to give up */
};

struct reuse_entry {
    SOCKET socket;
    enum reuse_role role;
};

/* A pool per role and family: a socket only ever goes back to the call that made it. */
struct reuse_pool {
    pthread_mutex_t lock;        /* the acceptor thread draws from other workers' pools */
    struct reuse_entry sockets[2][2][REUSE_POOL_MAX]; /* [role][0 IPv4, 1 IPv6] */
    int count[2][2];
};

struct iocp_worker {
    HANDLE port;
    bool abandoned;              /* the stop gave up on pending operations: armed accepts are never freed */
    struct iocp_op *ready_head, *ready_tail;
    struct iocp_accept *accepts;
    unsigned accepts_armed;
    unsigned retiring;           /* DisconnectEx calls in flight and not given up on */
    struct iocp_retire *retire_list;
    uint32_t accept_turn;        /* where ties for the least-loaded target start (ovl__worker_least_loaded) */
    struct reuse_pool reuse;
};

static struct {
    pthread_once_t once;
    LPFN_ACCEPTEX accept_ex;
    LPFN_CONNECTEX connect_ex;
    LPFN_DISCONNECTEX disconnect_ex;
    LPFN_GETACCEPTEXSOCKADDRS get_accept_ex_sockaddrs;
    bool skip_allowed;           /* every TCP provider is IFS: FILE_SKIP_COMPLETION_PORT_ON_SUCCESS may be tried */
    bool initial_rto;            /* SIO_TCP_INITIAL_RTO may be tried: build 16299 or later (loopback_connect_options) */
    atomic_bool initial_rto_off[2];     /* [0 IPv4, 1 IPv6]: the control code is not supported for that family */
    atomic_bool initial_rto_applied[2]; /* it took on a socket of that family once: reused ones may carry it */
    atomic_uint initial_rto_failures;   /* failures on one socket, for the log's back-off */
    int error;
} winsock = {.once = PTHREAD_ONCE_INIT};

static inline struct iocp_worker *state_of(struct ovl__worker *worker)
{
    return worker->backend_state;
}

static inline struct iocp_conn *conn_state(ovl_conn *conn)
{
    return (struct iocp_conn *)conn->backend_data;
}

static inline int family_index(int family)
{
    return family == AF_INET6 ? 1 : 0;
}

/* ---- one-time set-up: extension functions, the IFS check ---- */

static int load_extension(SOCKET socket, GUID guid, void *out)
{
    DWORD bytes = 0;
    if (WSAIoctl(socket, SIO_GET_EXTENSION_FUNCTION_POINTER, &guid, sizeof guid, out, sizeof(void *), &bytes, NULL,
                 NULL) != 0)
        return -WSAGetLastError();
    return 0;
}

/* Skip-on-success is only safe when every TCP provider hands out real kernel handles. */
static bool all_providers_ifs(void)
{
    DWORD size = 0;
    if (WSAEnumProtocolsW(NULL, NULL, &size) != SOCKET_ERROR || WSAGetLastError() != WSAENOBUFS)
        return false;
    WSAPROTOCOL_INFOW *protocols = ovl__malloc(size);
    if (!protocols)
        return false;
    int count = WSAEnumProtocolsW(NULL, protocols, &size);
    bool all = count > 0;
    for (int i = 0; i < count; i++)
        if ((protocols[i].iAddressFamily == AF_INET || protocols[i].iAddressFamily == AF_INET6) &&
            protocols[i].iSocketType == SOCK_STREAM && !(protocols[i].dwServiceFlags1 & XP1_IFS_HANDLES))
            all = false;
    ovl__free(protocols);
    return all;
}

/* The Windows build number from RtlGetVersion (GetVersionEx answers by the program's manifest), 0 if unknown. */
static DWORD windows_build(void)
{
    typedef LONG(WINAPI * rtl_get_version_fn)(OSVERSIONINFOW *);
    HMODULE ntdll = GetModuleHandleW(L"ntdll.dll");
    rtl_get_version_fn get_version =
        ntdll ? (rtl_get_version_fn)(void (*)(void))GetProcAddress(ntdll, "RtlGetVersion") : NULL;
    OSVERSIONINFOW info = {.dwOSVersionInfoSize = sizeof info};
    if (!get_version || get_version(&info) != 0)
        return 0;
    return info.dwMajorVersion >= 10 ? info.dwBuildNumber : 0; /* Windows 11 is 10.0 too */
}

static void load_winsock(void)
{
    SOCKET probe = ovl__socket_open(AF_INET);
    if (probe == INVALID_SOCKET) {
        winsock.error = -WSAGetLastError();
        return;
    }
    GUID accept_guid = WSAID_ACCEPTEX, connect_guid = WSAID_CONNECTEX, disconnect_guid = WSAID_DISCONNECTEX;
    GUID addresses_guid = WSAID_GETACCEPTEXSOCKADDRS;
    int rc = load_extension(probe, accept_guid, &winsock.accept_ex);
    if (!rc)
        rc = load_extension(probe, connect_guid, &winsock.connect_ex);
    if (!rc)
        rc = load_extension(probe, disconnect_guid, &winsock.disconnect_ex);
    if (!rc)
        rc = load_extension(probe, addresses_guid, &winsock.get_accept_ex_sockaddrs);
    winsock.error = rc;
    winsock.skip_allowed = all_providers_ifs();
    winsock.initial_rto = windows_build() >= 16299;
    closesocket(probe);
}

/* ---- ready list: completions that will get no packet ---- */

static void make_ready(struct iocp_worker *iw, struct iocp_op *op, DWORD bytes, int error)
{
    op->ready_bytes = bytes;
    op->ready_error = error;
    op->ready_next = NULL;
    if (iw->ready_tail)
        iw->ready_tail->ready_next = op;
    else
        iw->ready_head = op;
    iw->ready_tail = op;
}

/* After a call that takes an OVERLAPPED: decide whether a packet will come or we complete it ourselves. `skip`
 * says whether skip-on-success took on the socket the call was made on. */
static void after_post(struct iocp_worker *iw, struct iocp_op *op, bool skip, bool succeeded_now, DWORD bytes)
{
    if (succeeded_now) {
        if (skip)
            make_ready(iw, op, bytes, 0);
        return;
    }
    int error = WSAGetLastError();
    if (error != WSA_IO_PENDING)
        make_ready(iw, op, 0, error);
}

static void prepare(struct iocp_op *op, enum op_kind kind, void *owner, SOCKET socket)
{
    memset(&op->overlapped, 0, sizeof op->overlapped);
    op->kind = kind;
    op->owner = owner;
    op->socket = socket;
}

static int attach_socket(struct iocp_worker *iw, SOCKET socket)
{
    if (!CreateIoCompletionPort((HANDLE)socket, iw->port, 0, 0))
        return ovl__win_error(GetLastError());
    return 0;
}

/* Skip-on-success for one socket; true if it took. The call can fail for one socket (a provider layered on it)
 * while others have it: an operation completing at once on that socket still posts a packet, and handling it from
 * the ready list too would handle it twice. So the result is kept per socket (as libuv does) and consulted for
 * every call made on it. */
static bool set_skip_mode(SOCKET socket)
{
    return winsock.skip_allowed &&
           SetFileCompletionNotificationModes((HANDLE)socket,
                                              FILE_SKIP_COMPLETION_PORT_ON_SUCCESS | FILE_SKIP_SET_EVENT_ON_HANDLE);
}

/* A connection's socket gets its mode on its owner's thread before its first operation. An accepted socket is
 * handed over by the acceptor without its result, and a socket drawn from a reuse pool had it set by its previous
 * connection: the call is repeated then, and on the same socket and provider it gives the same result. */
static bool conn_skip(ovl_conn *conn)
{
    struct iocp_conn *ic = conn_state(conn);
    if (!ic->skip_known) {
        ic->skip = set_skip_mode(conn->fd);
        ic->skip_known = true;
    }
    return ic->skip;
}

/* ---- the reuse pool ---- */

/* A socket for `role` from iw's pool, or INVALID_SOCKET. Each entry carries its role as well: one found in the
 * wrong pool (which the pools by role make impossible) is closed and counted on `counting`, never handed over, so
 * the Wine tests can assert that reuse_wrong_role stays 0. */
static SOCKET reuse_take(struct ovl__worker *counting, struct iocp_worker *iw, enum reuse_role role, int family)
{
    struct reuse_entry entry = {.socket = INVALID_SOCKET, .role = role};
    int f = family_index(family);
    pthread_mutex_lock(&iw->reuse.lock);
    if (iw->reuse.count[role][f] > 0)
        entry = iw->reuse.sockets[role][f][--iw->reuse.count[role][f]];
    pthread_mutex_unlock(&iw->reuse.lock);
    if (entry.role != role) {
        closesocket(entry.socket);
        ovl__count(&counting->counters.reuse_wrong_role, 1);
        return INVALID_SOCKET;
    }
    return entry.socket;
}

static void reuse_put(struct iocp_worker *iw, enum reuse_role role, int family, SOCKET socket)
{
    int f = family_index(family);
    pthread_mutex_lock(&iw->reuse.lock);
    if (iw->reuse.count[role][f] < REUSE_POOL_MAX) {
        iw->reuse.sockets[role][f][iw->reuse.count[role][f]++] = (struct reuse_entry){.socket = socket, .role = role};
        socket = INVALID_SOCKET;
    }
    pthread_mutex_unlock(&iw->reuse.lock);
    if (socket != INVALID_SOCKET)
        closesocket(socket);
}

/* ---- set-up and tear-down ---- */

static int worker_init(struct ovl__worker *worker, ovl_error_info *err)
{
    pthread_once(&winsock.once, load_winsock);
    if (winsock.error) {
        ovl__error_set(err, winsock.error, NULL, "load AcceptEx/ConnectEx/DisconnectEx");
        return winsock.error;
    }
    struct iocp_worker *iw = ovl__zalloc(sizeof *iw);
    if (!iw) {
        ovl__error_set(err, -ENOMEM, NULL, "allocate the IOCP worker state");
        return -ENOMEM;
    }
    iw->port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 1);
    if (!iw->port) {
        int rc = ovl__win_error(GetLastError());
        ovl__error_set(err, rc, NULL, "CreateIoCompletionPort");
        ovl__free(iw);
        return rc;
    }
    pthread_mutex_init(&iw->reuse.lock, NULL);
    worker->backend_state = iw;
    return 0;
}

static void wake(struct ovl__worker *worker)
{
    struct iocp_worker *iw = state_of(worker);
    if (iw)
        PostQueuedCompletionStatus(iw->port, 0, KEY_WAKE, NULL);
}

/* ---- accepting (the acceptor) ----
 *
 * The engine runs the acceptor as one more loop of worker.c (backend.h, `acceptor`): its own completion port, its
 * own timer heap (the retries below), its own counters, and the stop's hard deadline like any worker. It owns the
 * listening sockets and never a connection: each accepted socket goes to a worker's port and command queue. */

static void post_accept(struct ovl__worker *worker, struct iocp_accept *accept);

static void schedule_accept_retry(struct ovl__worker *worker, struct iocp_accept *accept)
{
    ovl__timer_start_ms(worker, &accept->retry, ACCEPT_RETRY_MS);
}

static void accept_retry_fired(struct ovl__worker *worker, struct ovl__timer *timer)
{
    struct iocp_accept *accept = ovl__container_of(timer, struct iocp_accept, retry);
    if (!accept->armed && !worker->stopping)
        post_accept(worker, accept);
}

static void post_accept(struct ovl__worker *worker, struct iocp_accept *accept)
{
    struct iocp_worker *iw = state_of(worker);
    ovl_engine *engine = worker->engine;
    struct ovl__listen_socket *listen_socket = accept->listen_socket;
    ovl__timer_stop(worker, &accept->retry);
    /* Whose reuse pool to draw from: a pooled socket is associated with its worker's port already, so that worker
     * will own the connection; a fresh socket's owner is chosen when the accept completes (on_accept), by the load
     * of that moment, not of now. No worker taking connections (all stopping): a fresh socket. */
    accept->target = ovl__worker_least_loaded(engine, iw->accept_turn++);
    SOCKADDR_STORAGE local;
    int local_length = sizeof local;
    getsockname(listen_socket->fd, (struct sockaddr *)&local, &local_length);
    int family = local.ss_family;
    for (;;) {
        struct iocp_worker *target_state = accept->target ? state_of(accept->target) : NULL;
        accept->socket = target_state ? reuse_take(worker, target_state, ROLE_ACCEPTED, family) : INVALID_SOCKET;
        accept->reused = accept->socket != INVALID_SOCKET;
        if (!accept->reused)
            accept->socket = ovl__socket_open(family);
        if (accept->socket == INVALID_SOCKET) {
            ovl__count(&worker->counters.errors, 1);
            schedule_accept_retry(worker, accept);
            return;
        }
        prepare(&accept->op, OP_ACCEPT, accept, listen_socket->fd);
        accept->armed = true;
        iw->accepts_armed++;
        DWORD bytes = 0;
        BOOL ok = winsock.accept_ex(listen_socket->fd, accept->socket, accept->addresses, 0, ADDRESS_SPACE,
                                    ADDRESS_SPACE, &bytes, &accept->op.overlapped);
        int error = ok ? 0 : WSAGetLastError();
        if (ok || error == WSA_IO_PENDING) {
            if (ok && accept->listen_skip)
                make_ready(iw, &accept->op, bytes, 0);
            return;
        }
        accept->armed = false;
        iw->accepts_armed--;
        closesocket(accept->socket);
        accept->socket = INVALID_SOCKET;
        if (accept->reused) {
            ovl__count(&worker->counters.reuse_fallback, 1); /* refused reused socket: again, fresh */
            continue;
        }
        ovl__count(&worker->counters.errors, 1);
        schedule_accept_retry(worker, accept);
        return;
    }
}

static void accept_start(struct ovl__worker *worker, struct ovl__listen_socket *listen_socket)
{
    if (!worker->acceptor)
        return; /* the acceptor owns every listening socket's port (the engine sends it alone the listeners) */
    struct iocp_worker *iw = state_of(worker);
    if (attach_socket(iw, listen_socket->fd) < 0) {
        ovl__count(&worker->counters.errors, 1);
        return;
    }
    bool listen_skip = set_skip_mode(listen_socket->fd);
    for (int i = 0; i < ACCEPTS_POSTED; i++) {
        struct iocp_accept *accept = ovl__zalloc(sizeof *accept);
        if (!accept) {
            ovl__count(&worker->counters.errors, 1);
            break;
        }
        accept->listen_socket = listen_socket;
        accept->listen_skip = listen_skip;
        accept->socket = INVALID_SOCKET;
        accept->retry.fire = accept_retry_fired;
        accept->next = iw->accepts;
        iw->accepts = accept;
        post_accept(worker, accept);
    }
}

static void accept_stop(struct ovl__worker *worker)
{
    struct iocp_worker *iw = state_of(worker);
    for (struct iocp_accept *accept = iw->accepts; accept; accept = accept->next) {
        ovl__timer_stop(worker, &accept->retry);
        if (accept->armed)
            CancelIoEx((HANDLE)accept->listen_socket->fd, &accept->op.overlapped);
    }
    /* Stopping: no socket will be reused, so pending disconnects are cancelled at the next timer run. */
    uint64_t now = ovl__clock_ns();
    for (struct iocp_retire *retire = iw->retire_list; retire; retire = retire->next)
        if (retire->stage == 0)
            ovl__timer_start(worker, &retire->timer, now);
}

static void on_accept(struct ovl__worker *worker, struct iocp_accept *accept, int error)
{
    struct iocp_worker *iw = state_of(worker);
    accept->armed = false;
    iw->accepts_armed--;
    SOCKET socket = accept->socket;
    accept->socket = INVALID_SOCKET;
    if (error) {
        closesocket(socket);
        if (worker->stopping)
            return;
        if (accept->reused && error == WSAEINVAL) {
            ovl__count(&worker->counters.reuse_fallback, 1);
            post_accept(worker, accept);
        } else if (error == WSAEMFILE || error == WSAENOBUFS) {
            ovl__count(&worker->counters.errors, 1);
            schedule_accept_retry(worker, accept);
        } else if (ovl__is_reset_error(-error) || error == WSAENOTCONN) {
            /* The peer reset before AcceptEx completed: Windows reports ERROR_NETNAME_DELETED (or WSAECONNRESET),
             * Wine WSAENOTCONN. Its reset, not our error. */
            ovl__count(&worker->counters.resets, 1);
            post_accept(worker, accept);
        } else {
            ovl__count(&worker->counters.errors, 1);
            post_accept(worker, accept);
        }
        return;
    }
    if (worker->stopping) {
        /* Completed after the stop (the listening socket may be closed by now): refused, as accepts past the stop
         * are. */
        closesocket(socket);
        ovl__count(&worker->counters.conns_refused, 1);
        return;
    }
    SOCKET listen_fd = accept->listen_socket->fd;
    /* Without this, getpeername and shutdown fail on the socket on Windows (Wine accepts and ignores it). A socket
     * it fails on is not used half set up: closed, as libuv does, and the accept posted again. */
    if (setsockopt(socket, SOL_SOCKET, SO_UPDATE_ACCEPT_CONTEXT, (const char *)&listen_fd, sizeof listen_fd) != 0) {
        int error = WSAGetLastError();
        closesocket(socket);
        ovl__count(ovl__is_reset_error(-error) || error == WSAENOTCONN ? &worker->counters.resets
                                                                        : &worker->counters.errors,
                   1);
        if (!worker->stopping)
            post_accept(worker, accept);
        return;
    }
    ovl__count(&worker->counters.context_updates, 1);
    if (accept->reused)
        ovl__count(&worker->counters.reuse_ok, 1);
    char peer[64] = "";
    struct sockaddr *local = NULL, *remote = NULL;
    int local_length = 0, remote_length = 0;
    winsock.get_accept_ex_sockaddrs(accept->addresses, 0, ADDRESS_SPACE, ADDRESS_SPACE, &local, &local_length,
                                    &remote, &remote_length);
    if (remote && remote_length > 0)
        ovl__format_address(remote, peer, sizeof peer);
    /* A reused socket is on its worker's port already: that worker takes it (if it is stopping by now, it refuses
     * it). A fresh one goes to the least-loaded worker of this moment; with none taking connections (every worker
     * stopping, the acceptor not yet), it is refused here, as a stopping worker would. */
    struct ovl__worker *target = accept->reused ? accept->target
                                                : ovl__worker_least_loaded(worker->engine, iw->accept_turn++);
    if (!target) {
        closesocket(socket);
        ovl__count(&worker->counters.conns_refused, 1);
    } else if (!accept->reused && attach_socket(state_of(target), socket) < 0) {
        closesocket(socket);
        ovl__count(&worker->counters.errors, 1);
    } else if (ovl__worker_adopt(target, accept->listen_socket, socket, peer) < 0) {
        closesocket(socket);
        ovl__count(&worker->counters.errors, 1);
    }
    post_accept(worker, accept);
}

/* ---- receiving ---- */

static void recv_start(ovl_conn *conn)
{
    struct iocp_worker *iw = state_of(conn->worker);
    struct iocp_conn *ic = conn_state(conn);
    ic->unread_waits = false; /* the pause is over (or draining reads on): a later one watches again */
    conn_skip(conn); /* before the call: SetFileCompletionNotificationModes would overwrite its WSA error */
    if ((conn->flags & OVL__C_DRAINING) && !(conn->flags & OVL__C_LINGER)) {
        /* Only what is already buffered: a non-blocking read on this thread, from the ready list. */
        prepare(&ic->recv, OP_DRAIN_READ, conn, conn->fd);
        conn->flags |= OVL__C_RECV_ARMED;
        conn->inflight++;
        make_ready(iw, &ic->recv, 0, 0);
        return;
    }
    if (ic->watching) {
        /* Never two receives posted: Wine completed only the watch for the peer's FIN and the posted receive waited
         * for ever (review: 6 stops in 296 ran to the drain deadline), and cancelling the watch is what the drain
         * avoids (CancelIoEx on a pending receive, recv_drain). The watch completes for bytes, a FIN or a reset
         * alike, and on_watch posts the receive then. */
        ic->recv_deferred = true;
        conn->flags |= OVL__C_RECV_ARMED;
        conn->inflight++;
        return;
    }
    struct ovl__worker *worker = conn->worker;
    int zero_byte = worker->engine->config.zero_byte_receive;
    if (zero_byte > 0 || (zero_byte == 0 && ((uint64_t)worker->conn_count * worker->pool.slot_size >
                                                 ZERO_BYTE_ABOVE_BYTES ||
                                             worker->conn_count > worker->pool.slot_count / 2))) {
        /* Completes when bytes (or the peer's FIN) arrive, holding no buffer meanwhile; read_now then takes a
         * pool slot for a non-blocking receive. */
        prepare(&ic->recv, OP_RECV_ZERO, conn, conn->fd);
        conn->flags |= OVL__C_RECV_ARMED;
        conn->inflight++;
        WSABUF none = {.len = 0, .buf = NULL};
        DWORD bytes = 0, flags = 0;
        int rc = WSARecv(conn->fd, &none, 1, &bytes, &flags, &ic->recv.overlapped, NULL);
        after_post(iw, &ic->recv, ic->skip, rc == 0, bytes);
        return;
    }
    struct ovl__pool *pool = &conn->worker->pool;
    if (pool->free_count == 0) {
        ovl__conn_wait_for_slot(conn);
        return;
    }
    ovl_buf *slot = ovl__pool_take(pool, ovl__pool_pop(pool), 0);
    if (!slot) {
        ovl__conn_failed(conn, -EFAULT);
        return;
    }
    ic->recv_slot = slot;
    pool->parked++; /* waits for data, not for a peer: free as far as the pool's fairness goes */
    prepare(&ic->recv, OP_RECV, conn, conn->fd);
    conn->flags |= OVL__C_RECV_ARMED;
    conn->inflight++;
    WSABUF buffer = {.len = ovl__recv_len(conn), .buf = slot->data};
    DWORD bytes = 0, flags = 0;
    int rc = WSARecv(conn->fd, &buffer, 1, &bytes, &flags, &ic->recv.overlapped, NULL);
    after_post(iw, &ic->recv, ic->skip, rc == 0, bytes);
}

static void recv_drain(ovl_conn *conn)
{
    if (conn->flags & OVL__C_RECV_ARMED) {
        /* No CancelIoEx: cancelling a pending TCP receive is reported to leave the connection read-closed or to
         * reset it at close (libuv: a cancelled read "will generate an RST"). A posted receive completes by itself
         * when bytes come, and then reads on in drain mode. While it waits, the kernel holds nothing for us: if it
         * held nothing at the stop either, the read is done now, and what the posted receive gets later came after
         * the stop (lingering, it is discarded and counted). */
        if (conn->drain_budget == 0 && !(conn->flags & OVL__C_READ_DONE)) {
            conn->flags |= OVL__C_DRAIN_SPENT;
            ovl__conn_read_done(conn);
        }
    } else if (!(conn->flags & OVL__C_RECV_WAIT)) {
        recv_start(conn);
    }
}

/* The peer's FIN. Whoever sends the first FIN holds TIME_WAIT, and a DisconnectEx on such a socket may wait it
 * out (240 s by default) before completing; only a socket whose peer closed first is worth retiring. */
static void peer_eof(ovl_conn *conn)
{
    if (!(conn->flags & OVL__C_SHUT_DONE))
        conn_state(conn)->peer_closed_first = true;
    ovl__conn_eof(conn);
}

/*
 * Watching a paused connection. Paused, nothing is posted on the socket, and a reset by the peer would go unnoticed
 * until the pause ends, a send fails, or the stall timeout or keepalive ends it (io_uring watches with an error-only
 * poll, epoll sees EPOLLERR). A zero-byte WSARecv consumes nothing and completes when bytes, the peer's FIN or a
 * reset arrive; on_watch tells them apart. It only watches until the first byte: once bytes wait it would complete
 * again at once if posted again (a spin), so then it is not posted until the pause ends. It covers a paused peer
 * that is quiet, not a backpressured one that keeps sending (ProcessSocketNotifications would: docs/WINDOWS.md).
 *
 * It is an op of its own, beside the receive's, and not OVL__C_RECV_ARMED, so conn.c sees no receive posted: the
 * pause can end (or the drain start) while it waits. The receive asked for then is posted when the watch completes
 * (recv_deferred): never two receives at once, since Wine completed only the watch for a FIN and the other waited
 * for ever. The watch's completion on a connection no longer paused posts that receive, which reads what woke it;
 * an error in it ends the connection.
 * Like every op it holds a count in conn->inflight: a close cancels it with the rest (CancelIoEx on the socket), the
 * stop's hard deadline closes its socket, and a socket is retired only once it has completed.
 */
static void watch_start(ovl_conn *conn)
{
    struct iocp_conn *ic = conn_state(conn);
    /* Open only: a ConnectEx socket is not connected yet. A posted receive reports a reset itself. */
    if (ic->watching || ic->unread_waits || !(conn->flags & OVL__C_OPEN) ||
        (conn->flags & (OVL__C_CLOSING | OVL__C_EOF_IN | OVL__C_RECV_ARMED)) || conn->fd == INVALID_SOCKET)
        return;
    struct iocp_worker *iw = state_of(conn->worker);
    conn_skip(conn);
    prepare(&ic->watch, OP_RECV_WATCH, conn, conn->fd);
    ic->watching = true;
    conn->inflight++;
    WSABUF none = {.len = 0, .buf = NULL};
    DWORD bytes = 0, flags = 0;
    int rc = WSARecv(conn->fd, &none, 1, &bytes, &flags, &ic->watch.overlapped, NULL);
    after_post(iw, &ic->watch, ic->skip, rc == 0, bytes); /* an error now comes through the ready list */
}

static void rearm_recv(ovl_conn *conn)
{
    if (!(conn->flags & (OVL__C_CLOSING | OVL__C_EOF_IN | OVL__C_RECV_ARMED | OVL__C_RECV_WAIT | OVL__C_PAUSED)))
        recv_start(conn);
    else if (conn->flags & OVL__C_PAUSED)
        watch_start(conn);
}

/* ---- resource errors: WSAENOBUFS, and WSAEWOULDBLOCK ("too many outstanding overlapped requests") ---- */

enum { RETRY_RECV = 1, RETRY_SEND = 2 };

static void send_start(ovl_conn *conn);

static void retry_fired(struct ovl__worker *worker, struct ovl__timer *timer)
{
    (void)worker;
    struct iocp_conn *ic = ovl__container_of(timer, struct iocp_conn, retry);
    ovl_conn *conn = ic->conn;
    unsigned ops = ic->retry_ops;
    ic->retry_ops = 0;
    /* Post again first, then let go of the counts the waits held: the connection cannot end in between. One that
     * started closing meanwhile posts nothing more: its send is over, and letting go lets conn.c free it. */
    if (conn->flags & OVL__C_CLOSING) {
        if (ops & RETRY_SEND)
            conn->flags &= ~OVL__C_SENDING;
    } else {
        if (ops & RETRY_SEND)
            send_start(conn); /* OVL__C_SENDING stayed set, so conn.c started no other send meanwhile */
        if (ops & RETRY_RECV)
            rearm_recv(conn);
    }
    if (ops & RETRY_SEND)
        ovl__conn_op_done(conn);
    if (ops & RETRY_RECV)
        ovl__conn_op_done(conn);
}

/* A receive or send that failed for lack of system resources is no fault of the connection's: try it again after
 * a short delay, a bounded number of times in a row. Returns false when the error is another one, or the tries are
 * spent (the caller then fails the connection). The wait holds one count in conn->inflight, like an operation. */
static bool retry_later(ovl_conn *conn, unsigned op, int error)
{
    struct iocp_conn *ic = conn_state(conn);
    if ((error != WSAENOBUFS && error != WSAEWOULDBLOCK) || (conn->flags & OVL__C_CLOSING) ||
        ic->retries >= RESOURCE_RETRY_MAX)
        return false;
    ic->retries++;
    ic->conn = conn;
    ic->retry.fire = retry_fired;
    ic->retry_ops |= op;
    conn->inflight++;
    if (!ic->retry.armed)
        ovl__timer_start_ms(conn->worker, &ic->retry, RESOURCE_RETRY_MS);
    ovl__count(&conn->worker->counters.io_retries, 1);
    return true;
}

/* A posted receive holds one slot at most: let it complete, and do not post the next one (rearm_recv posts the
 * watch instead). With none posted, the watch starts now. */
static void recv_pause(ovl_conn *conn)
{
    watch_start(conn);
}

static void on_recv(ovl_conn *conn, DWORD bytes, int error)
{
    struct iocp_conn *ic = conn_state(conn);
    ovl_buf *slot = ic->recv_slot;
    ic->recv_slot = NULL;
    conn->worker->pool.parked--;
    conn->flags &= ~OVL__C_RECV_ARMED;
    bool rearm = false;
    if (!error && bytes > 0) {
        ic->retries = 0;
        slot->len = bytes;
        ovl__conn_received(conn, slot);
        rearm = true;
    } else {
        ovl__buf_free(slot);
        if (!error)
            peer_eof(conn);
        else if (error == ERROR_OPERATION_ABORTED || error == WSA_OPERATION_ABORTED)
            rearm = (conn->flags & OVL__C_DRAINING) != 0;
        else if (!retry_later(conn, RETRY_RECV, error))
            ovl__conn_failed(conn, -error);
    }
    if (rearm)
        rearm_recv(conn);
    ovl__conn_op_done(conn);
}

/* One non-blocking receive into a pool slot, for a draining connection or after a zero-byte receive completed.
 * Nothing to read means: draining - the buffered input is all delivered; zero-byte - wait again. */
static void read_now(ovl_conn *conn, int error)
{
    conn->flags &= ~OVL__C_RECV_ARMED;
    bool aborted = error == ERROR_OPERATION_ABORTED || error == WSA_OPERATION_ABORTED;
    if (error && !aborted) {
        if (!retry_later(conn, RETRY_RECV, error)) /* a zero-byte WSARecv refused for lack of resources */
            ovl__conn_failed(conn, -error);
    } else if (aborted && !(conn->flags & OVL__C_DRAINING)) {
        /* cancelled by a close: nothing to do */
    } else if (!(conn->flags & OVL__C_CLOSING)) {
        u_long nonblocking = 1;
        ioctlsocket(conn->fd, FIONBIO, &nonblocking);
        struct ovl__pool *pool = &conn->worker->pool;
        if (pool->free_count == 0) {
            ovl__conn_wait_for_slot(conn);
        } else {
            ovl_buf *slot = ovl__pool_take(pool, ovl__pool_pop(pool), 0);
            size_t len = (conn->flags & OVL__C_DRAINING) ? ovl__drain_read_len(conn, pool->slot_size)
                                                         : ovl__recv_len(conn);
            int n = slot ? recv(conn->fd, slot->data, (int)len, 0) : SOCKET_ERROR;
            error = n < 0 ? WSAGetLastError() : 0;
            if (n > 0) {
                conn_state(conn)->retries = 0;
                slot->len = (size_t)n;
                bool drained = (conn->flags & (OVL__C_DRAINING | OVL__C_LINGER)) == OVL__C_DRAINING;
                if (drained)
                    ovl__conn_drain_read(conn, (size_t)n);
                ovl__conn_received(conn, slot);
                if (drained && ovl__drain_read_all(conn))
                    ovl__conn_read_done(conn); /* everything the kernel held at the stop is read */
                else
                    rearm_recv(conn);
            } else {
                if (slot)
                    ovl__buf_free(slot);
                if (n == 0)
                    peer_eof(conn);
                else if (error == WSAEWOULDBLOCK && (conn->flags & OVL__C_DRAINING) &&
                         !(conn->flags & OVL__C_LINGER))
                    ovl__conn_read_done(conn);
                else if (error == WSAEWOULDBLOCK)
                    rearm_recv(conn);
                else
                    ovl__conn_failed(conn, -error);
            }
        }
    }
    ovl__conn_op_done(conn);
}

/* The watch completed. Still paused with nothing else posted: a peek says what woke it. The socket is made
 * non-blocking with FIONBIO first, as read_now does (allowed on a socket associated with a port - only
 * WSAEventSelect or WSAAsyncSelect forbid it - and posted overlapped calls are unaffected): a plain recv on it would
 * block if nothing were there, and nothing may hold up the worker. 0 is the peer's FIN, delivered as a receive would
 * deliver it (held while the application's pause lasts); an error is the reset; bytes mean the peer is not quiet,
 * and the watch ends until the pause does. An error in the completion itself (Wine: WSAECONNRESET; Windows reports
 * ERROR_NETNAME_DELETED to GetQueuedCompletionStatus, and both count as resets) ends the connection whether or not
 * it is still paused; a lack of resources only ends the watch. */
static void on_watch(ovl_conn *conn, int error)
{
    struct iocp_conn *ic = conn_state(conn);
    ic->watching = false;
    bool deferred = ic->recv_deferred; /* the pause ended meanwhile: the receive is posted now (recv_start) */
    if (deferred) {
        ic->recv_deferred = false;
        conn->flags &= ~OVL__C_RECV_ARMED;
        conn->inflight--; /* the watch's own count keeps the connection until ovl__conn_op_done below */
    }
    bool aborted = error == ERROR_OPERATION_ABORTED || error == WSA_OPERATION_ABORTED;
    if ((conn->flags & OVL__C_CLOSING) || aborted || error == WSAENOBUFS || error == WSAEWOULDBLOCK) {
        /* cancelled by a close, or no resources to watch with: nothing to do */
    } else if (error) {
        ovl__conn_failed(conn, -error);
    } else if ((conn->flags & OVL__C_PAUSED) && !(conn->flags & (OVL__C_RECV_ARMED | OVL__C_EOF_IN))) {
        u_long nonblocking = 1;
        ioctlsocket(conn->fd, FIONBIO, &nonblocking);
        char byte;
        int n = recv(conn->fd, &byte, 1, MSG_PEEK);
        int peek_error = n < 0 ? WSAGetLastError() : 0;
        if (n > 0)
            ic->unread_waits = true;
        else if (n == 0)
            peer_eof(conn);
        else if (peek_error == WSAEWOULDBLOCK)
            watch_start(conn); /* woken with nothing there after all: watch on, as read_now does */
        else
            ovl__conn_failed(conn, -peek_error);
    }
    if (deferred && !(conn->flags & OVL__C_PAUSED))
        rearm_recv(conn);
    ovl__conn_op_done(conn);
}

/* ---- sending ---- */

static void send_start(ovl_conn *conn)
{
    struct iocp_worker *iw = state_of(conn->worker);
    struct iocp_conn *ic = conn_state(conn);
    conn_skip(conn);
    DWORD count = 0;
    size_t bytes = 0;
    for (ovl_buf *buf = conn->queue_head; buf && count < SEND_BATCH; buf = buf->next, count++) {
        /* WSABUF lengths are 32-bit: a larger buffer goes in pieces (a short completion continues it). */
        ULONG length = buf->len > 0x40000000u ? 0x40000000u : (ULONG)buf->len;
        ic->send_buffers[count].buf = buf->data;
        ic->send_buffers[count].len = length;
        bytes += length;
        if (length != buf->len) {
            count++;
            break;
        }
    }
    conn->sending_bytes = bytes;
    prepare(&ic->send, OP_SEND, conn, conn->fd);
    conn->inflight++;
    DWORD sent = 0;
    int rc = WSASend(conn->fd, ic->send_buffers, count, &sent, 0, &ic->send.overlapped, NULL);
    after_post(iw, &ic->send, ic->skip, rc == 0, sent);
}

static void on_send(ovl_conn *conn, DWORD bytes, int error)
{
    if (!error && (bytes > 0 || conn->sending_bytes == 0)) {
        /* Short completions happen (Wine makes them): ovl__conn_sent keeps the rest queued and sends it next. */
        conn_state(conn)->retries = 0;
        ovl__conn_sent(conn, bytes);
    } else if (error && retry_later(conn, RETRY_SEND, error)) {
        /* OVL__C_SENDING stays set: the same bytes go again when the timer fires */
    } else {
        conn->flags &= ~OVL__C_SENDING;
        bool aborted = error == ERROR_OPERATION_ABORTED || error == WSA_OPERATION_ABORTED;
        if (!aborted || !(conn->flags & OVL__C_CLOSING))
            ovl__conn_failed(conn, error ? -error : -EIO);
    }
    ovl__conn_op_done(conn);
}

/* ---- connecting ---- */

static bool is_loopback(const struct sockaddr *address)
{
    if (address->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)address)->sin_addr.s_addr) >> 24) == 127;
    if (address->sa_family != AF_INET6)
        return false;
    const IN6_ADDR *a6 = &((const struct sockaddr_in6 *)address)->sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(a6) || (IN6_IS_ADDR_V4MAPPED(a6) && a6->s6_addr[12] == 127);
}

/* A SYN to a closed loopback port is answered by a reset, and Windows, unlike Linux, sends the SYN again: the
 * connect is refused only after the retransmissions, about 2 s later. SIO_TCP_INITIAL_RTO with
 * TCP_INITIAL_RTO_NO_SYN_RETRANSMISSIONS (honoured from Windows 10 1709, build 16299, as libuv checks) makes that
 * refusal immediate. Only for loopback targets, as libuv and Go do: there no SYN is lost, so a reset is final; on a
 * network, no retransmission would let one lost SYN fail the connect. A reused socket may carry the setting of
 * its last connect, so for other targets it is set back to the system's (both fields unspecified), and a reused
 * socket where that fails is not used (returns false: the caller takes a fresh socket).
 *
 * The call is an optimisation, and a failure on one socket says nothing about the others. Microsoft documents
 * WSAEOPNOTSUPP for a transport provider without the control code, and WSAEINVAL for a control code the system does
 * not know, an input it does not accept, or a socket it does not apply to. So WSAEOPNOTSUPP, and WSAEINVAL on a
 * fresh socket (every fresh socket of the family is alike), mean "not here": the setting is not tried again for that
 * family (one warning). Anything else, or WSAEINVAL on a reused socket (which has connected before), is that
 * socket's: the connect goes on without it, the next socket tries again, and the failures are logged at 1, 2, 4, 8...
 * so a log is not flooded. Wine reports Windows 7 and is not asked; asked anyway, it answers WSAEOPNOTSUPP. */
static bool loopback_connect_options(ovl_conn *conn, SOCKET socket, const struct sockaddr *target, bool reused)
{
    bool loopback = is_loopback(target);
    int f = family_index(target->sa_family);
    if (!winsock.initial_rto || (!loopback && !reused))
        return true;
    if (loopback ? atomic_load_explicit(&winsock.initial_rto_off[f], memory_order_relaxed)
                 : !atomic_load_explicit(&winsock.initial_rto_applied[f], memory_order_relaxed))
        return true; /* not supported here; or (a reset) no socket of the family ever took the setting */
    TCP_INITIAL_RTO_PARAMETERS rto;
    memset(&rto, 0, sizeof rto);
    rto.Rtt = TCP_INITIAL_RTO_UNSPECIFIED_RTT;
    rto.MaxSynRetransmissions =
        loopback ? TCP_INITIAL_RTO_NO_SYN_RETRANSMISSIONS : TCP_INITIAL_RTO_UNSPECIFIED_MAX_SYN_RETRANSMISSIONS;
    DWORD bytes = 0;
    if (WSAIoctl(socket, SIO_TCP_INITIAL_RTO, &rto, sizeof rto, NULL, 0, &bytes, NULL, NULL) == 0) {
        if (loopback)
            atomic_store_explicit(&winsock.initial_rto_applied[f], true, memory_order_relaxed);
        return true;
    }
    int error = WSAGetLastError();
    const char *family = f ? "IPv6" : "IPv4";
    if (error == WSAEOPNOTSUPP || (error == WSAEINVAL && !reused)) {
        if (!atomic_exchange(&winsock.initial_rto_off[f], true))
            ovl__log(conn->worker->engine, OVL_LOG_WARNING,
                     "SIO_TCP_INITIAL_RTO on an %s socket: %s (error %d): not supported here, not tried again for "
                     "%s; a refused loopback connect then waits for the SYN retransmissions (about 2 s)",
                     family, ovl_strerror(-error), error, family);
        if (loopback)
            return true;
    }
    unsigned failures = atomic_fetch_add_explicit(&winsock.initial_rto_failures, 1, memory_order_relaxed) + 1;
    if ((failures & (failures - 1)) == 0)
        ovl__log(conn->worker->engine, OVL_LOG_WARNING,
                 "SIO_TCP_INITIAL_RTO on %s %s socket: %s (error %d; %u such failure%s so far): %s",
                 reused ? "a reused" : "an", family, ovl_strerror(-error), error, failures, failures == 1 ? "" : "s",
                 loopback ? "this connect goes on without it, the next one tries again"
                          : "the reused socket is not used, a fresh one connects");
    return loopback;
}

static int post_connect(ovl_conn *conn)
{
    struct iocp_worker *iw = state_of(conn->worker);
    struct iocp_conn *ic = conn_state(conn);
    const struct addrinfo *address = ic->connect_address;
    for (;;) {
        SOCKET socket = reuse_take(conn->worker, iw, ROLE_CONNECTED, address->ai_family);
        ic->connect_reused = socket != INVALID_SOCKET;
        if (!ic->connect_reused) {
            socket = ovl__socket_open(address->ai_family);
            if (socket == INVALID_SOCKET)
                return -WSAGetLastError();
            /* ConnectEx wants a bound socket. */
            SOCKADDR_STORAGE any;
            memset(&any, 0, sizeof any);
            any.ss_family = (ADDRESS_FAMILY)address->ai_family;
            int any_length = address->ai_family == AF_INET6 ? (int)sizeof(struct sockaddr_in6)
                                                             : (int)sizeof(struct sockaddr_in);
            int rc = bind(socket, (struct sockaddr *)&any, any_length) == 0 ? attach_socket(iw, socket)
                                                                              : -WSAGetLastError();
            if (rc < 0) {
                closesocket(socket);
                return rc;
            }
        }
        if (!loopback_connect_options(conn, socket, address->ai_addr, ic->connect_reused)) {
            /* a reused socket that may still refuse to retransmit its SYN: not for a network connect */
            closesocket(socket);
            ovl__count(&conn->worker->counters.reuse_fallback, 1);
            continue;
        }
        conn->fd = socket;
        ic->skip_known = false;
        bool skip = conn_skip(conn);
        prepare(&ic->connect, OP_CONNECT, conn, socket);
        conn->inflight++;
        DWORD sent = 0;
        BOOL ok = winsock.connect_ex(socket, address->ai_addr, (int)address->ai_addrlen, NULL, 0, &sent,
                                     &ic->connect.overlapped);
        int error = ok ? 0 : WSAGetLastError();
        if (ok || error == WSA_IO_PENDING) {
            if (ok && skip)
                make_ready(iw, &ic->connect, 0, 0);
            return 0;
        }
        conn->inflight--;
        closesocket(socket);
        conn->fd = INVALID_SOCKET;
        if (ic->connect_reused && (error == WSAEISCONN || error == WSAEINVAL)) {
            ovl__count(&conn->worker->counters.reuse_fallback, 1); /* refused reused socket: again, fresh */
            continue;
        }
        return -error;
    }
}

static int connect_start(ovl_conn *conn, const struct addrinfo *address)
{
    conn_state(conn)->connect_address = address;
    conn_state(conn)->role = ROLE_CONNECTED;
    return post_connect(conn);
}

static void on_connect(ovl_conn *conn, int error)
{
    struct iocp_conn *ic = conn_state(conn);
    if (!error && !(conn->flags & OVL__C_CLOSING)) {
        if (setsockopt(conn->fd, SOL_SOCKET, SO_UPDATE_CONNECT_CONTEXT, NULL, 0) == 0)
            ovl__count(&conn->worker->counters.context_updates, 1);
        if (ic->connect_reused)
            ovl__count(&conn->worker->counters.reuse_ok, 1);
        ovl__conn_connected(conn);
    } else if (error) {
        closesocket(conn->fd);
        conn->fd = INVALID_SOCKET;
        if (conn->flags & OVL__C_CLOSING) {
            /* cancelled: conn.c reports the close */
        } else if (ic->connect_reused && (error == WSAEISCONN || error == WSAEINVAL)) {
            ovl__count(&conn->worker->counters.reuse_fallback, 1);
            int rc = post_connect(conn);
            if (rc < 0)
                ovl__conn_connect_next(conn, rc);
        } else {
            ovl__conn_connect_next(conn, -error);
        }
    }
    ovl__conn_op_done(conn);
}

static void cancel(ovl_conn *conn)
{
    struct iocp_conn *ic = conn_state(conn);
    unsigned ops = ic->retry_ops;
    if (ops) {
        /* Nothing is posted for a retry that waits: end the wait here, as a cancelled operation would end. */
        ic->retry_ops = 0;
        ovl__timer_stop(conn->worker, &ic->retry);
        if (ops & RETRY_SEND) {
            conn->flags &= ~OVL__C_SENDING;
            ovl__conn_op_done(conn);
        }
        if (ops & RETRY_RECV)
            ovl__conn_op_done(conn);
    }
    if (conn->fd != INVALID_SOCKET)
        CancelIoEx((HANDLE)conn->fd, NULL);
}

/* ---- closing: DisconnectEx(TF_REUSE_SOCKET) into the reuse pool ---- */

static void retire_unlink(struct iocp_worker *iw, struct iocp_retire *retire)
{
    if (retire->prev)
        retire->prev->next = retire->next;
    else
        iw->retire_list = retire->next;
    if (retire->next)
        retire->next->prev = retire->prev;
    retire->prev = retire->next = NULL;
    iw->retiring--;
}

/* Close the socket of a DisconnectEx that has not completed and stop waiting for it: the worker need not wait, and
 * nothing of it is counted as abandoned, since what the system may still write is the OVERLAPPED alone. So the
 * iocp_retire is kept until a completion comes (on_disconnect frees it then) or for ever; nothing else of the worker
 * is tied to it (its receive pool, its state: a stop that abandons something keeps those, stop_abandon). */
static void retire_give_up(struct iocp_worker *iw, struct iocp_retire *retire)
{
    retire->stage = 2;
    retire_unlink(iw, retire);
    closesocket(retire->op.socket);
}

/* A DisconnectEx that does not complete (Wine 8 leaves every one pending) would hold its socket for ever and keep
 * the worker from stopping: cancel it (counted in reuse_timeouts unless the engine is stopping), and if even the
 * cancellation does not complete, close the socket and stop counting it. Its memory stays until a completion
 * arrives, since the system may still write the OVERLAPPED. */
static void retire_timer_fired(struct ovl__worker *worker, struct ovl__timer *timer)
{
    struct iocp_retire *retire = ovl__container_of(timer, struct iocp_retire, timer);
    if (retire->stage == 0) {
        retire->stage = 1;
        if (!worker->stopping)
            ovl__count(&worker->counters.reuse_timeouts, 1);
        ovl__timer_start_ms(worker, timer, RETIRE_TIMEOUT_MS / 2);
        CancelIoEx((HANDLE)retire->op.socket, &retire->op.overlapped);
    } else {
        retire_give_up(state_of(worker), retire);
    }
}

static bool socket_retire(ovl_conn *conn)
{
    struct ovl__worker *worker = conn->worker;
    /* Only a socket whose peer closed first: one whose FIN we sent first is in TIME_WAIT, and its DisconnectEx
     * could take minutes; it is closed at once instead. */
    if (worker->stopping || !(conn->flags & OVL__C_OPEN) || conn->close_reason != OVL_CLOSE_PEER ||
        !conn_state(conn)->peer_closed_first)
        return false;
    SOCKADDR_STORAGE local;
    int length = sizeof local;
    if (getsockname(conn->fd, (struct sockaddr *)&local, &length) != 0)
        return false;
    struct iocp_retire *retire = ovl__zalloc(sizeof *retire);
    if (!retire)
        return false;
    retire->family = local.ss_family;
    retire->role = conn_state(conn)->role;
    retire->timer.fire = retire_timer_fired;
    prepare(&retire->op, OP_DISCONNECT, retire, conn->fd);
    struct iocp_worker *iw = state_of(worker);
    iw->retiring++;
    retire->next = iw->retire_list;
    if (iw->retire_list)
        iw->retire_list->prev = retire;
    iw->retire_list = retire;
    bool skip = conn_skip(conn);
    BOOL ok = winsock.disconnect_ex(conn->fd, &retire->op.overlapped, TF_REUSE_SOCKET, 0);
    int error = ok ? 0 : WSAGetLastError();
    if (ok || error == WSA_IO_PENDING) {
        ovl__timer_start_ms(worker, &retire->timer, RETIRE_TIMEOUT_MS);
        if (ok && skip)
            make_ready(iw, &retire->op, 0, 0);
        return true;
    }
    iw->retiring--;
    iw->retire_list = retire->next;
    if (retire->next)
        retire->next->prev = NULL;
    ovl__free(retire);
    return false;
}

static void on_disconnect(struct ovl__worker *worker, struct iocp_retire *retire, int error)
{
    struct iocp_worker *iw = state_of(worker);
    if (retire->stage == 2) {
        ovl__free(retire); /* the late completion of one we gave up on: only the memory is left */
        return;
    }
    retire_unlink(iw, retire);
    ovl__timer_stop(worker, &retire->timer);
    if (error || worker->stopping) {
        closesocket(retire->op.socket);
        if (!worker->stopping && retire->stage == 0)
            ovl__count(&worker->counters.reuse_fallback, 1); /* refused; a cancelled one is in reuse_timeouts */
    } else {
        reuse_put(iw, retire->role, retire->family, retire->op.socket);
    }
    ovl__free(retire);
}

/* ---- the loop ---- */

static int op_error(const struct iocp_op *op)
{
    if (op->overlapped.Internal == 0)
        return 0;
    DWORD bytes = 0, flags = 0;
    if (WSAGetOverlappedResult(op->socket, (LPWSAOVERLAPPED)&op->overlapped, &bytes, FALSE, &flags))
        return 0;
    int error = WSAGetLastError();
    return error ? error : WSAECONNABORTED;
}

static void dispatch(struct ovl__worker *worker, struct iocp_op *op, DWORD bytes, int error)
{
    switch (op->kind) {
    case OP_RECV:
        on_recv(op->owner, bytes, error);
        break;
    case OP_DRAIN_READ:
    case OP_RECV_ZERO:
        read_now(op->owner, error);
        break;
    case OP_RECV_WATCH:
        on_watch(op->owner, error);
        break;
    case OP_SEND:
        on_send(op->owner, bytes, error);
        break;
    case OP_CONNECT:
        on_connect(op->owner, error);
        break;
    case OP_ACCEPT:
        on_accept(worker, op->owner, error);
        break;
    case OP_DISCONNECT:
        on_disconnect(worker, op->owner, error);
        break;
    }
}

/* The wait's timeout in milliseconds, rounded up (a timer never fires early): 0 while the ready list holds work. */
static DWORD next_timeout(struct ovl__worker *worker, int64_t timeout_ns)
{
    if (state_of(worker)->ready_head)
        return 0;
    if (timeout_ns < 0)
        return INFINITE;
    return (DWORD)((timeout_ns + 999999) / 1000000); /* ovl__timers_wait_ns caps it at an hour */
}

static void run_ready(struct ovl__worker *worker)
{
    struct iocp_worker *iw = state_of(worker);
    struct iocp_op *list = iw->ready_head;
    iw->ready_head = iw->ready_tail = NULL;
    while (list) {
        struct iocp_op *op = list;
        list = op->ready_next;
        dispatch(worker, op, op->ready_bytes, op->ready_error);
    }
}

/* A completion that reports a cancellation: NTSTATUS STATUS_CANCELLED in Internal, whatever the socket handle has
 * become since (closed at the hard deadline). */
static bool cancelled(const struct iocp_op *op, int error)
{
    return op->overlapped.Internal == (ULONG_PTR)0xC0000120 || error == ERROR_OPERATION_ABORTED ||
           error == WSA_OPERATION_ABORTED;
}

static void dequeue(struct ovl__worker *worker, DWORD timeout)
{
    struct iocp_worker *iw = state_of(worker);
    OVERLAPPED_ENTRY entries[COMPLETION_BATCH];
    ULONG count = 0;
    BOOL got = GetQueuedCompletionStatusEx(iw->port, entries, COMPLETION_BATCH, &count, timeout, FALSE);
    ovl__worker_clock(worker);
    if (!got)
        return; /* WAIT_TIMEOUT */
    for (ULONG i = 0; i < count; i++) {
        if (!entries[i].lpOverlapped)
            continue; /* a wake-up: commands are read after the batch */
        struct iocp_op *op = CONTAINING_RECORD(entries[i].lpOverlapped, struct iocp_op, overlapped);
        int error = op_error(op);
        if (worker->stopping && (worker->engine->faults & OVL__FAULT_SWALLOW_CANCELS) && cancelled(op, error))
            continue; /* test fault (internal.h): a cancelled AcceptEx or WSARecv the system holds for ever */
        dispatch(worker, op, entries[i].dwNumberOfBytesTransferred, error);
    }
}

/* The stop's hard deadline: operations were cancelled and have not completed. closesocket completes every
 * operation still pending on a socket (ERROR_OPERATION_ABORTED), so every socket they are on is closed: the
 * connections' (their handlers see an error on a closing connection and only let go), the sockets waiting in
 * AcceptEx (the acceptor's; the listening sockets were closed when it stopped accepting) and those being retired
 * (given up on here, retire_give_up). op->socket keeps the old handle value for WSAGetOverlappedResult, which then
 * fails: any error will do. */
static void stop_force(struct ovl__worker *worker)
{
    struct iocp_worker *iw = state_of(worker);
    for (ovl_conn *conn = worker->conns; conn; conn = conn->next)
        if (conn->fd != INVALID_SOCKET && conn->inflight > 0) {
            (void)ovl_conn_peer(conn); /* read while the socket is open: on_close still names the peer */
            closesocket(conn->fd);
            conn->fd = INVALID_SOCKET;
        }
    for (struct iocp_accept *accept = iw->accepts; accept; accept = accept->next)
        if (accept->armed && accept->socket != INVALID_SOCKET) {
            closesocket(accept->socket);
            accept->socket = INVALID_SOCKET;
        }
    /* A DisconnectEx still pending is given up on as its own timer does (1 s after the stop began: a drain plus
     * grace shorter than that gets here first). Counted in stop_abandoned it would have made the worker keep its
     * receive pool and state for an operation that writes neither. */
    while (iw->retire_list) {
        ovl__timer_stop(worker, &iw->retire_list->timer);
        retire_give_up(iw, iw->retire_list);
    }
}

/* What still has not completed stop_grace_ms after its socket was closed. The system may yet write the OVERLAPPED
 * and the address buffer of an armed accept: they are never freed (worker_destroy skips them). Retires are not
 * among them: stop_force gave them up. */
static unsigned stop_abandon(struct ovl__worker *worker)
{
    struct iocp_worker *iw = state_of(worker);
    unsigned pending = iw->accepts_armed;
    if (pending)
        iw->abandoned = true;
    return pending;
}

/* The loop may not end while accepts are being cancelled, sockets retired or completions wait on the ready list. */
static bool operations_pending(struct ovl__worker *worker)
{
    struct iocp_worker *iw = state_of(worker);
    return iw->accepts_armed > 0 || iw->retiring > 0 || iw->ready_head;
}

/* The timeout is 0 while the ready list holds work: the port is still polled every turn, so a socket whose receives
 * keep completing at once cannot starve the others, the timers or the commands. */
static void poll_port(struct ovl__worker *worker, int64_t timeout_ns)
{
    dequeue(worker, next_timeout(worker, timeout_ns));
    run_ready(worker);
}

static void worker_destroy(struct ovl__worker *worker)
{
    struct iocp_worker *iw = state_of(worker);
    if (!iw)
        return;
    if (iw->abandoned) {
        /* The system may still complete an armed accept (stop_abandon): the accepts, and this state that
         * links them, stay allocated, reachable from the leaked worker (ovl_engine_destroy). */
        for (int role = 0; role < 2; role++)
            for (int f = 0; f < 2; f++)
                while (iw->reuse.count[role][f] > 0)
                    closesocket(iw->reuse.sockets[role][f][--iw->reuse.count[role][f]].socket);
        CloseHandle(iw->port);
        iw->port = NULL;
        return;
    }
    while (iw->accepts) {
        struct iocp_accept *accept = iw->accepts;
        iw->accepts = accept->next;
        if (accept->socket != INVALID_SOCKET)
            closesocket(accept->socket);
        ovl__free(accept);
    }
    for (int role = 0; role < 2; role++)
        for (int f = 0; f < 2; f++)
            while (iw->reuse.count[role][f] > 0)
                closesocket(iw->reuse.sockets[role][f][--iw->reuse.count[role][f]].socket);
    pthread_mutex_destroy(&iw->reuse.lock);
    CloseHandle(iw->port);
    ovl__free(iw);
    worker->backend_state = NULL;
}

const struct ovl__backend ovl__backend_iocp = {
    .name = "iocp",
    .conn_extra = sizeof(struct iocp_conn),
    .acceptor = true,
    .worker_init = worker_init,
    .poll = poll_port,
    .busy = operations_pending,
    .stop_force = stop_force,
    .stop_abandon = stop_abandon,
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
    .socket_retire = socket_retire,
};
