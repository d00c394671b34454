/*
 * overlap.h - the one public header of liboverlap, a completion-based TCP connection engine.
 *
 * Model: an engine owns a pool of worker threads. Every connection (accepted or outbound) belongs to exactly one
 * worker for its whole life; all of its callbacks run on that worker's thread and never concurrently with each other.
 * Received bytes arrive in engine-owned buffers (ovl_buf) that can be handed straight back to ovl_send_buf(): the
 * echo path copies no bytes in user space, and a buffer returns to its pool when the send that carried it completes.
 *
 * Errors are returned as negative numbers: -errno on POSIX (-ECONNREFUSED, ...), the negated WSA/Win32 code on
 * Windows. ovl_strerror() turns any of them into text.
 *
 * Thread-safety, in short:
 *   - ovl_engine_* (create, start, stop, request_stop, wait, stats, destroy), ovl_listen, ovl_listener_*, ovl_connect,
 *     ovl_target_*, ovl_strerror and ovl_version may be called from any thread (create/destroy not concurrently with
 *     anything else on the same engine). ovl_engine_stop and ovl_engine_wait must not be called from a worker thread
 *     (they wait for the workers); use ovl_engine_request_stop there.
 *   - ovl_conn_* and ovl_send*, ovl_shutdown, ovl_close, ovl_buf_* act on a connection or buffer and must be called
 *     on the thread that owns it: from inside one of its callbacks, or from another callback on the same worker.
 */
#ifndef OVERLAP_H
#define OVERLAP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define OVL_VERSION_MAJOR 0
#define OVL_VERSION_MINOR 1
#define OVL_VERSION_PATCH 0
#define OVL_VERSION_STRING "0.1.0"

#if defined(_WIN32) && defined(OVL_SHARED_BUILD)
#define OVL_API __declspec(dllexport)
#elif defined(__GNUC__)
#define OVL_API __attribute__((visibility("default")))
#else
#define OVL_API
#endif

/* "0.1.0": the version of the library actually linked, which may differ from OVL_VERSION_STRING. */
OVL_API const char *ovl_version(void);

/* Text for an error code returned by any ovl_ function (negative errno / negative WSA code). Never NULL. The
 * returned pointer stays valid until the next call on the same thread. */
OVL_API const char *ovl_strerror(int err);

typedef struct ovl_engine ovl_engine;
typedef struct ovl_listener ovl_listener;
typedef struct ovl_conn ovl_conn;
typedef struct ovl_buf ovl_buf;
typedef struct ovl_target ovl_target;

/* Why a connection closed; passed to on_close. */
typedef enum ovl_close_reason {
    OVL_CLOSE_PEER = 1,        /* the peer closed its side (EOF) and ours was finished: a normal end */
    OVL_CLOSE_RESET,           /* the peer reset the connection (ECONNRESET, EPIPE) */
    OVL_CLOSE_ERROR,           /* another I/O error; the code is in on_close's err */
    OVL_CLOSE_LOCAL,           /* ovl_close() was called */
    OVL_CLOSE_ENGINE_STOP,     /* the engine stopped (graceful drain finished or its deadline passed) */
    OVL_CLOSE_CONNECT_FAILED,  /* ovl_connect: no address accepted the connection; err is the last attempt's error */
    OVL_CLOSE_REFUSED,         /* accepted past max_conns and closed at once (only counted, on_close is not called) */
    OVL_CLOSE_IDLE             /* no byte received or sent for idle_timeout_ms; err is -ETIMEDOUT */
} ovl_close_reason;

/* Text for a close reason: "peer closed", "reset", ... */
OVL_API const char *ovl_close_reason_name(ovl_close_reason reason);

/*
 * Callbacks of a listener's or an outbound connection's connections. Any may be NULL.
 *
 * on_open   - the connection is established. `user` is the pointer given to ovl_listen/ovl_connect; it is also the
 *             connection's initial user pointer (ovl_conn_user), which on_open may replace with ovl_conn_set_user.
 * on_data   - bytes arrived. The callback owns `buf` and must, now or later on this worker thread, either pass it to
 *             ovl_send_buf (any connection of the same worker) or give it back with ovl_buf_release. Buffers held
 *             back stall receiving once the worker's pool runs dry (that is the engine's backpressure).
 * on_eof    - the peer shut down its write side. NULL means: shut our write side down once queued sends are done
 *             (ovl_shutdown), which then closes the connection with OVL_CLOSE_PEER. A non-NULL callback decides itself.
 * on_drain  - everything queued with ovl_send* has been handed to the kernel.
 * on_close  - the last callback; the connection is freed when it returns. Buffers from on_data that the application
 *             still holds stay valid (they belong to the worker, not to the connection).
 */
typedef struct ovl_callbacks {
    void (*on_open)(ovl_conn *conn, void *user);
    void (*on_data)(ovl_conn *conn, ovl_buf *buf);
    void (*on_eof)(ovl_conn *conn);
    void (*on_drain)(ovl_conn *conn);
    void (*on_close)(ovl_conn *conn, ovl_close_reason reason, int err);
} ovl_callbacks;

/* Engine configuration. Start from ovl_config_init(), then change what you need. */
typedef struct ovl_config {
    int threads;               /* worker threads; 0 = number of online CPUs */
    uint32_t buffer_size;      /* bytes per receive buffer; 0 = 16384 */
    uint32_t buffer_count;     /* receive buffers per worker, rounded up to a power of two; 0 = 1024 */
    uint32_t max_conns;        /* open connections the engine accepts at most (outbound included); 0 = no limit */
    int backlog;               /* listen backlog; 0 = SOMAXCONN */
    uint32_t drain_timeout_ms; /* graceful stop: how long connections may keep echoing; 0 = 5000 */
    uint32_t max_pending;      /* per connection: when this many bytes are queued for sending and not yet sent,
                                  receiving pauses until half of them are; a peer that sends but never reads
                                  cannot hog memory or the buffer pool. 0 = 262144 */
    const char *backend;       /* "io_uring", "epoll", "iocp" or NULL for the best this system supports */
    int zero_byte_receive;     /* IOCP: post 0-byte receives so an idle connection holds no buffer; 1 = always,
                                  -1 = never, 0 = automatic: when a worker has more than 1024 connections */
    uint32_t idle_timeout_ms;  /* close an open connection (OVL_CLOSE_IDLE) when no byte was received or sent on it
                                  for this long; checked every quarter of it (at most every second), so a
                                  connection closes between 1 and 1.25 times this after its last byte (at most
                                  1 s late). Not while the engine stops. 0 = off */
    int busy_poll_us;          /* io_uring: when completions have been arriving back to back, a worker spins up to
                                  this long before it sleeps, which halves a lone connection's round trip on a VM;
                                  after a longer wait it sleeps at once (an idle server uses no CPU). 0 = 50,
                                  negative = never spin. Other backends ignore it. */
} ovl_config;

OVL_API void ovl_config_init(ovl_config *config);

/* Where a failed call went wrong, for messages like "bind [::]:27015: Address already in use (errno 98)".
 * `code` is the negative error; `what` names the operation and address ("bind [::]:27015"), `text` explains the
 * code (strerror, gai_strerror or FormatMessage text). */
typedef struct ovl_error_info {
    int code;
    char what[128];
    char text[160];
} ovl_error_info;

/* Create an engine (no threads yet). Returns 0 or a negative error (-EINVAL for a bad config, -ENOTSUP when the
 * named backend is not built in or cannot run here; err says which). */
OVL_API int ovl_engine_create(ovl_engine **out, const ovl_config *config, ovl_error_info *err);
/* Start the worker threads. Listeners added before start begin accepting now. */
OVL_API int ovl_engine_start(ovl_engine *engine, ovl_error_info *err);
/* Name of the backend in use: "io_uring", "epoll", "iocp". */
OVL_API const char *ovl_engine_backend(const ovl_engine *engine);
/* NULL, or one line saying why the default backend is not the preferred one ("io_uring unavailable
 * (io_uring_setup: Operation not permitted), using epoll"), for the program to show. */
OVL_API const char *ovl_engine_notice(const ovl_engine *engine);
/* Number of worker threads. */
OVL_API int ovl_engine_threads(const ovl_engine *engine);
/* Graceful stop, without waiting: stop accepting, let every connection finish echoing what it already received
 * (up to drain_timeout_ms), close them all with OVL_CLOSE_ENGINE_STOP. Safe from any thread, callbacks included. */
OVL_API void ovl_engine_request_stop(ovl_engine *engine);
/* Wait until every worker has finished after a stop request. Not from a worker thread. */
OVL_API void ovl_engine_wait(ovl_engine *engine);
/* ovl_engine_request_stop + ovl_engine_wait. */
OVL_API void ovl_engine_stop(ovl_engine *engine);
/* Free the engine (stopping it first if it runs), its listeners and its buffers. */
OVL_API void ovl_engine_destroy(ovl_engine *engine);

/* Counters, summed over workers. Readable at any time from any thread (each counter is read atomically; the
 * set is not a single snapshot). */
typedef struct ovl_stats {
    uint64_t conns_open;        /* connections open now */
    uint64_t conns_accepted;    /* accepted since start */
    uint64_t conns_connected;   /* outbound connections established */
    uint64_t conns_closed;      /* closed (any reason) */
    uint64_t conns_refused;     /* accepted past max_conns and closed at once */
    uint64_t connect_failures;  /* ovl_connect attempts where no address worked */
    uint64_t resets;            /* connections ended by a peer reset */
    uint64_t errors;            /* connections ended by another I/O error, plus accept errors */
    uint64_t bytes_in, bytes_out;
    uint64_t msgs_in;           /* receive completions delivered to on_data */
    uint64_t msgs_out;          /* send completions */
    uint64_t recv_nobufs;       /* times a receive waited because the buffer pool was empty */
    uint64_t recv_pauses;       /* times a connection stopped receiving because max_pending bytes were queued */
    uint64_t reuse_ok;          /* IOCP: sockets reused after DisconnectEx(TF_REUSE_SOCKET) */
    uint64_t reuse_fallback;    /* IOCP: reused sockets the provider refused, replaced by fresh ones */
    uint64_t context_updates;   /* IOCP: SO_UPDATE_ACCEPT_CONTEXT / SO_UPDATE_CONNECT_CONTEXT applied (one per
                                   connection; Wine ignores them silently, so tests count them) */
    uint64_t idle_closed;       /* connections closed by idle_timeout_ms */
} ovl_stats;

OVL_API void ovl_engine_stats(ovl_engine *engine, ovl_stats *out);

/* Listen on host:port. host NULL or "" = every interface (IPv6 dual-stack where the OS allows it, IPv4 otherwise);
 * a name or literal binds every address getaddrinfo returns for it. port "0" picks a free port (the same one on
 * every address). Connections accepted get `callbacks` and start with user pointer `user`.
 * Returns 0 and *out, or a negative error with err filled ("bind [::1]:27015", "Address already in use"). */
OVL_API int ovl_listen(ovl_engine *engine, const char *host, const char *port, const ovl_callbacks *callbacks,
                       void *user, ovl_listener **out, ovl_error_info *err);
/* Port the listener is bound to (useful after port "0"). */
OVL_API int ovl_listener_port(const ovl_listener *listener);
/* Number of sockets (addresses) the listener has, and each one as "[::]:27015" / "127.0.0.1:27015". */
OVL_API int ovl_listener_count(const ovl_listener *listener);
OVL_API const char *ovl_listener_address(const ovl_listener *listener, int index);

/* Resolved destination for outbound connections: every address getaddrinfo returns for host:port, in its order.
 * Resolving once and connecting many times keeps the resolver out of reconnect loops.
 * Returns 0 and *out (free it with ovl_target_free once no ovl_connect attempt uses it any more), or a negative
 * error with err filled ("resolve example.invalid:80", gai_strerror text). Any thread. */
OVL_API int ovl_target_resolve(ovl_target **out, const char *host, const char *port, ovl_error_info *err);
/* Free a target (NULL is fine). Not while a connection attempt to it may still be trying addresses: after the
 * engine stopped, or after every on_open/on_close of the connections made to it. */
OVL_API void ovl_target_free(ovl_target *target);
/* "localhost:27015" as given to ovl_target_resolve. */
OVL_API const char *ovl_target_name(const ovl_target *target);

/* Open an outbound connection to `target` (which must outlive the attempt; the engine does not copy it). Every
 * address is tried in order until one connects; on success on_open runs, otherwise on_close runs with
 * OVL_CLOSE_CONNECT_FAILED and the last error. Called from a worker thread, the connection belongs to that worker;
 * otherwise workers take turns. Returns 0 or a negative error (-ENOMEM, -ESHUTDOWN when the engine is stopping). */
OVL_API int ovl_connect(ovl_engine *engine, const ovl_target *target, const ovl_callbacks *callbacks, void *user);

/* Queue bytes for sending, in call order. They are sent even if the peer half-closed; sends after ovl_shutdown or
 * on a closing connection fail with -EPIPE (and ovl_send_buf releases the buffer).
 *   ovl_send     copies data (convenient, one allocation).
 *   ovl_send_ref sends from caller memory without copying; it must stay valid and unchanged until the connection
 *                closes or on_drain reports the queue empty.
 *   ovl_send_buf sends a buffer from on_data as it is (zero copy); the buffer returns to its pool when done. */
OVL_API int ovl_send(ovl_conn *conn, const void *data, size_t len);
OVL_API int ovl_send_ref(ovl_conn *conn, const void *data, size_t len);
OVL_API int ovl_send_buf(ovl_conn *conn, ovl_buf *buf);
/* Shut down our write side once every queued send is done (like shutdown(SD_SEND)). Receiving goes on. */
OVL_API int ovl_shutdown(ovl_conn *conn);
/* Close now: queued sends are dropped, on_close runs (OVL_CLOSE_LOCAL) once the engine has no operation left on it. */
OVL_API void ovl_close(ovl_conn *conn);

/* The connection's user pointer (set by ovl_listen/ovl_connect, changed with ovl_conn_set_user); the engine never
 * dereferences it. ovl_conn_engine: the engine the connection belongs to. Owner thread only. */
OVL_API void *ovl_conn_user(const ovl_conn *conn);
OVL_API void ovl_conn_set_user(ovl_conn *conn, void *user);
OVL_API ovl_engine *ovl_conn_engine(const ovl_conn *conn);
/* Index of the owning worker, 0 .. threads-1. */
OVL_API int ovl_conn_worker(const ovl_conn *conn);
/* Bytes queued for sending and not yet handed to the kernel. */
OVL_API size_t ovl_conn_pending(const ovl_conn *conn);
/* Stop receiving from the connection until ovl_recv_resume: on_data (and on_eof) is not called for it meanwhile.
 * Bytes the engine had already received are held, and delivered in order after the resume, before anything newer
 * (a proxy pauses the side whose bytes the other side cannot take yet). Returns 0, or -ENOTCONN when the
 * connection is closing. Calls do not nest: one resume undoes any pauses. While the engine stops (graceful drain),
 * pausing is ignored: the drain reads what is buffered, bounded by drain_timeout_ms. */
OVL_API int ovl_recv_pause(ovl_conn *conn);
OVL_API int ovl_recv_resume(ovl_conn *conn);
/* Change this connection's max_pending (see ovl_config): the queued bytes at which the engine pauses receiving
 * from it. 0 turns the automatic pause off, for applications whose sends on this connection are not caused by
 * its own input (a proxy: pausing the receiver of a full queue could deadlock with a peer that waits to send);
 * they pace themselves with ovl_recv_pause/ovl_recv_resume and on_drain. */
OVL_API void ovl_conn_set_max_pending(ovl_conn *conn, size_t bytes);
/* Run on_timer(conn) once, on the connection's worker, `delay_us` microseconds from now (never earlier; later by
 * however long the worker is busy). A connection has one timer: arming it again moves the deadline, on_timer NULL
 * cancels it, and a connection that starts closing loses it (on_timer never runs for a closing connection).
 * Resolution: io_uring and epoll wait with nanosecond timeouts; IOCP waits in milliseconds (Windows' timer tick,
 * ~1-16 ms, applies). Returns 0, -ENOTCONN (closing), -ENOMEM, -EINVAL. Owner thread only, like every ovl_conn_
 * call; on_timer may send, close and re-arm. */
OVL_API int ovl_conn_timer(ovl_conn *conn, uint64_t delay_us, void (*on_timer)(ovl_conn *conn));
/* "[::1]:51234" - the peer's address. */
OVL_API const char *ovl_conn_peer(const ovl_conn *conn);

/* Bytes of a received buffer. Only the thread that owns it may use it. */
OVL_API const void *ovl_buf_data(const ovl_buf *buf);
OVL_API size_t ovl_buf_len(const ovl_buf *buf);
/* Give a buffer from on_data back to its pool. */
OVL_API void ovl_buf_release(ovl_buf *buf);

#ifdef __cplusplus
}
#endif

#endif
