/*
 * overlap.h - the one public header of liboverlap, a completion-based TCP connection engine.
 *
 * Model: an engine owns a pool of worker threads. Every connection (accepted or outbound) belongs to exactly one
 * worker for its whole life; all of its callbacks run on that worker's thread and never concurrently with each other.
 * Received bytes arrive in engine-owned buffers (ovl_buf) that can be handed straight back to ovl_send_buf(): the
 * echo path copies no bytes in user space, and a buffer returns to its pool when the send that carried it completes.
 *
 * Errors are returned as negative numbers: -errno on POSIX (-ECONNREFUSED, ...), the negated WSA/Win32 code on
 * Windows for what the system reports (-WSAECONNREFUSED, ...; -EINVAL, -ENOMEM and the like where the library itself
 * finds the problem). ovl_strerror() turns any of them into text. Each comment below lists the codes a function
 * returns itself; errors of the system calls it makes (socket, bind, getaddrinfo, ...) are passed on unchanged.
 *
 * Pointers: an argument must not be NULL unless its function's comment says what NULL does (the accessors do not
 * check). An ovl_error_info *err may always be NULL. What the engine is given is copied (config, callbacks, host and
 * port strings) unless a comment says otherwise (ovl_send_ref's data, ovl_connect's target). Strings the engine
 * returns belong to it: each comment says how long they live.
 *
 * Thread-safety, in short:
 *   - ovl_engine_* (create, start, stop, request_stop, wait, stats, destroy and the getters), ovl_listen,
 *     ovl_listener_*, ovl_connect, ovl_target_*, ovl_config_init, ovl_strerror, ovl_close_reason_name and
 *     ovl_version may be called from any thread (create/destroy not concurrently with anything else on the same
 *     engine, ovl_target_free not while the target is in use). ovl_engine_stop, ovl_engine_wait and
 *     ovl_engine_destroy must not be called from a worker thread (they wait for the workers); use
 *     ovl_engine_request_stop there.
 *   - ovl_conn_* and ovl_send*, ovl_shutdown, ovl_close, ovl_recv_*, ovl_buf_* act on a connection or buffer and
 *     must be called on the thread that owns it: from inside one of its callbacks, or from another callback on the
 *     same worker. One exception: a buffer from on_data may be handed to another worker's thread to be passed to
 *     ovl_send_buf there (see ovl_send_buf).
 *   - No callback runs inside an ovl_ call: what a call causes (sends, on_drain, on_close, held input, timers)
 *     happens later, from the worker's loop.
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

/* "0.1.0": the version of the library actually linked, which may differ from OVL_VERSION_STRING. A static string. */
OVL_API const char *ovl_version(void);

/* Text for an error code returned by any ovl_ function or passed to on_close (negative errno / negative WSA code;
 * the sign is ignored, 0 gives "Success"). Never NULL. The text may live in a per-thread buffer: it stays valid until
 * the next ovl_strerror call on the same thread (ovl_engine_create, ovl_engine_start, ovl_listen and
 * ovl_target_resolve make one when they fill an ovl_error_info); copy it to keep it. */
OVL_API const char *ovl_strerror(int err);

typedef struct ovl_engine ovl_engine;
typedef struct ovl_listener ovl_listener;
typedef struct ovl_conn ovl_conn;
typedef struct ovl_buf ovl_buf;
typedef struct ovl_target ovl_target;

/* Why a connection closed; passed to on_close with `err` (0 for a normal end, else a negative error). */
typedef enum ovl_close_reason {
    OVL_CLOSE_PEER = 1,        /* the peer closed its side (EOF) and ours was finished: a normal end; err is 0 */
    OVL_CLOSE_RESET,           /* the peer reset the connection; err is -ECONNRESET, -EPIPE or -ECONNABORTED
                                  (on Windows Winsock's codes: -WSAECONNRESET, -WSAECONNABORTED, ...) */
    OVL_CLOSE_ERROR,           /* another I/O error; the code is in on_close's err */
    OVL_CLOSE_LOCAL,           /* ovl_close() was called; err is 0 */
    OVL_CLOSE_ENGINE_STOP,     /* the engine stopped (graceful drain finished: err 0; its deadline passed: -ETIMEDOUT;
                                  an ovl_connect the stop overtook: 0 or -ESHUTDOWN; the hard deadline abandoned its
                                  operations, stats.stop_abandoned: -ECANCELED, see ovl_send_ref) */
    OVL_CLOSE_CONNECT_FAILED,  /* ovl_connect: no address accepted the connection; err is the last attempt's error */
    OVL_CLOSE_REFUSED,         /* accepted past max_conns (or while stopping) and closed at once (only counted in
                                  conns_refused; never passed to on_close) */
    OVL_CLOSE_IDLE,            /* no byte received or sent for idle_timeout_ms; err is -ETIMEDOUT */
    OVL_CLOSE_STALLED          /* bytes queued for sending and none of them taken by the peer for stall_timeout_ms
                                  (it does not read); err is -ETIMEDOUT */
} ovl_close_reason;

/* Text for a close reason: "peer closed", "reset by peer", ...; "unknown" for a value outside the enum. A static
 * string. */
OVL_API const char *ovl_close_reason_name(ovl_close_reason reason);

/*
 * Callbacks of a listener's or an outbound connection's connections. Any may be NULL.
 *
 * on_open   - the connection is established. `user` is the pointer given to ovl_listen/ovl_connect; it is also the
 *             connection's initial user pointer (ovl_conn_user), which on_open may replace with ovl_conn_set_user.
 *             Receiving starts when it returns, unless it called ovl_recv_pause or ovl_close.
 * on_data   - bytes arrived (buf is never empty). The callback owns `buf` and must, now or later on this worker
 *             thread, either pass it to ovl_send_buf (a connection of the same worker; another worker's is possible,
 *             see ovl_send_buf) or give it back with ovl_buf_release. Buffers held back stall receiving once the
 *             worker's pool runs dry (that is the engine's backpressure). NULL: received bytes are discarded.
 * on_eof    - the peer shut down its write side. NULL means: shut our write side down once queued sends are done
 *             (ovl_shutdown), which then closes the connection with OVL_CLOSE_PEER. A non-NULL callback decides itself.
 *             Not called while the engine stops: the drain then shuts our side down itself.
 * on_drain  - the send queue became empty: everything queued with ovl_send* has been handed to the kernel. Runs after
 *             the send completion that empties it, not on a closing connection.
 * on_close  - the last callback; the connection is freed when it returns (ovl_conn_user and ovl_conn_peer still work
 *             inside it). An accepted connection gets it only after on_open; an outbound one always, even when it
 *             never opened. Buffers from on_data that the application still holds stay valid (they belong to the
 *             worker, not to the connection).
 */
typedef struct ovl_callbacks {
    void (*on_open)(ovl_conn *conn, void *user);
    void (*on_data)(ovl_conn *conn, ovl_buf *buf);
    void (*on_eof)(ovl_conn *conn);
    void (*on_drain)(ovl_conn *conn);
    void (*on_close)(ovl_conn *conn, ovl_close_reason reason, int err);
} ovl_callbacks;

/* Limits ovl_engine_create holds a configuration to (programs check their options against the same numbers). */
#define OVL_MAX_THREADS 256
#define OVL_DEFAULT_BUFFER_SIZE 65536u
#define OVL_DEFAULT_BUFFER_COUNT 1024u
/* buffer_size x buffer_count (the count rounded up to a power of two): one worker's receive pool, fixed or grown */
#define OVL_MAX_POOL_BYTES (256ull << 20)

/* How bad a logged event is. */
typedef enum ovl_log_level {
    OVL_LOG_ERROR = 0,   /* the engine lost something or cannot go on as asked (a worker's wait failed, a buffer
                            slot reported twice, memory to hand a slot back) */
    OVL_LOG_WARNING      /* it recovers, but an operator should know */
} ovl_log_level;

/* Engine configuration. Start from ovl_config_init(), then change what you need. Out-of-range values make
 * ovl_engine_create fail with -EINVAL. */
typedef struct ovl_config {
    int threads;               /* worker threads, 0..OVL_MAX_THREADS; 0 = ovl_default_threads(): one less than the
                                  CPUs the process may run on, at least 1 */
    uint32_t buffer_size;      /* bytes per receive buffer, 64..16777216; 0 = 65536: a burst of up to 64 KiB is one
                                  receive and one send (a small message still touches one page of it) */
    uint32_t buffer_count;     /* receive buffers per worker, rounded up to a power of two, at most 32768, and
                                  buffer_size x buffer_count at most OVL_MAX_POOL_BYTES: a fixed pool. 0 = a pool
                                  that grows: 1024 buffers (fewer if they would pass OVL_MAX_POOL_BYTES), doubled
                                  whenever the worker's open connections pass a quarter of them, up to 32768 or
                                  OVL_MAX_POOL_BYTES (4096 of 64 KiB). Pages no receive touched cost no memory, and
                                  the pool's fairness thresholds (half and a quarter of it) move with it */
    uint32_t max_conns;        /* open connections at most: an accept beyond it is closed at once (conns_refused);
                                  outbound connections count toward it but are never refused. 0 = no limit */
    int backlog;               /* listen backlog, not negative; 0 = SOMAXCONN */
    uint32_t drain_timeout_ms; /* graceful stop: how long connections may keep echoing; 0 = 5000 */
    uint32_t stop_grace_ms;    /* hard stop: how long, after the drain deadline, the closing connections and the
                                  backend's own operations (accepts, IOCP disconnects) get to complete their
                                  cancellations; then every socket still open is closed, and the worker waits as long
                                  again for the completions that closing brings. What has still not completed is
                                  abandoned (stats.stop_abandoned, a warning through `log`) and the worker ends: a
                                  stop takes at most drain_timeout_ms + 2 x stop_grace_ms (plus a timer tick).
                                  0 = 2000, at most 600000 */
    uint32_t max_pending;      /* per connection: when this many bytes are queued for sending and not yet sent,
                                  receiving pauses until half of them are; a peer that sends but never reads
                                  cannot hog memory or the buffer pool. 0 = 262144; per connection
                                  ovl_conn_set_max_pending overrides it */
    const char *backend;       /* "io_uring" (or "uring"), "epoll", "iocp", or NULL / "" for the best this system
                                  supports. Not kept after ovl_engine_create */
    int zero_byte_receive;     /* IOCP: post 0-byte receives so an idle connection holds no buffer; 1 = always,
                                  -1 = never, 0 = automatic: once a worker's connections times
                                  buffer_size pass 16 MiB (above 256 connections at 64 KiB), or its
                                  connections pass half its receive pool */
    uint32_t idle_timeout_ms;  /* close an open connection (OVL_CLOSE_IDLE) when no byte was received or sent on it
                                  for this long; checked every quarter of it (at least every 10 ms, at most every
                                  second), so a connection closes between 1 and 1.25 times this after its last byte
                                  (at most 1 s late; timeouts under 40 ms up to 10 ms late). Not while the engine
                                  stops, not while an outbound connection is still connecting, and not while it
                                  waits for its peer (bytes queued for sending: see stall_timeout_ms) or is paused
                                  (ovl_recv_pause, max_pending): that is not idleness. 0 = off */
    int busy_poll_us;          /* io_uring: when completions have been arriving back to back, a worker serving one
                                  connection spins up to this long before it sleeps, which halves a lone
                                  connection's round trip on a VM (a worker with several waits for a batch: a spin
                                  would enter the kernel per message); after a longer wait it sleeps at once (an
                                  idle server uses no CPU). 0 = 50,
                                  negative = never spin, at most 100000. Only where the ring reports pending
                                  completions (IORING_SETUP_TASKRUN_FLAG, Linux 5.19+); other backends ignore it. */
    int keepalive_ms;          /* TCP keepalive on every connection, so that a peer that vanished (powered off, cable
                                  pulled, its reset lost) is reclaimed: the first probe after this long without
                                  traffic, then one every sixth of it (at least 1 s), and after 3 unanswered the
                                  connection ends with ETIMEDOUT (stats.peer_timeouts), 1.5 times this after the
                                  peer's last sign. That holds while nothing we sent is unacknowledged; with data in
                                  flight the system's retransmission timeout applies instead (about 15 minutes on
                                  Linux), and stall_timeout_ms ends a peer that takes none of the queue. 0 = 60000,
                                  negative = off (the system's default, normally none), at most 32767000. Windows
                                  sends 10 probes (its fixed count) at that interval. */
    int stall_timeout_ms;      /* close a connection (OVL_CLOSE_STALLED, stats.stalled_closed) whose queued bytes the
                                  peer has not taken any of for this long: it does not read (nginx's send_timeout).
                                  Checked like idle_timeout_ms. A peer that reads slowly but reads is never
                                  stalled. 0 = 60000, negative = off */
    int connect_timeout_ms;    /* ovl_connect: an attempt still not connected after this long (every address tried
                                  in it included) ends with OVL_CLOSE_CONNECT_FAILED and -ETIMEDOUT, so a peer that
                                  drops SYNs cannot hold a connection and its descriptor for the system's couple of
                                  minutes. 0 = 10000, negative = the system's own timeout */
    int reuse_port;            /* Linux: SO_REUSEPORT on every listening socket, so that several processes share a
                                  port (the kernel spreads connections over them) and a new one can take over from
                                  an old one that stops (which closes its listening sockets as soon as it stops
                                  accepting). 0 = off; Windows has no such option (ovl_listen fails with
                                  -EOPNOTSUPP) */
    /* The engine never prints: what it has to say goes here, a line without the newline, called on the worker thread
     * it happened on, or on IOCP's acceptor thread (where ovl_worker_index is -1), so it must be thread-safe and
     * quick. NULL = nothing is said (the counters still count). */
    void (*log)(void *log_user, ovl_log_level level, const char *message);
    void *log_user;
} ovl_config;

/* Set every field to 0, which means its default. */
OVL_API void ovl_config_init(ovl_config *config);

/* Where a failed call went wrong, for messages like "bind [::]:27015: Address already in use (errno 98)".
 * `code` is the negative error; `what` names the operation and address ("bind [::]:27015"), `text` explains the
 * code (strerror, gai_strerror or FormatMessage text); both are NUL-terminated, cut to fit. Filled only when a call
 * fails, and not on every failure (-ENOMEM and the cases its function's comment names leave it as it was): zero it
 * before the call if you print it whatever happens. */
typedef struct ovl_error_info {
    int code;
    char what[128];
    char text[160];
} ovl_error_info;

/* Create an engine (no threads yet) from `config` (NULL = every default), which is copied. With backend NULL or ""
 * the preferred backend is taken if it can run here, else the next one (ovl_engine_notice says why). Returns 0 and
 * *out, or a negative error with err filled: -EINVAL (out NULL, or a config field out of range), -ENOTSUP (`backend`
 * names one not built into this library), the probe's error (-EPERM, -ENOSYS, -ENOMEM, ...) when the backend named
 * cannot run here, -ENOMEM; on Windows WSAStartup's error. err is filled in every case. */
OVL_API int ovl_engine_create(ovl_engine **out, const ovl_config *config, ovl_error_info *err);
/* Start the worker threads; each sets up its backend (ring, epoll instance or completion port) and its buffer pool
 * before this returns. Listeners and connects added before start begin now. Returns 0, -EINVAL (engine NULL, err
 * filled), -EALREADY when the engine was started before (err not filled), or the error of a thread or worker that
 * could not start (-EAGAIN from pthread_create, -ENOMEM, io_uring_setup's error, ...) with err filled. After a
 * failure the engine is stopped for good: only ovl_engine_destroy is left to call. On Linux it first grows the
 * process's descriptor table to hold the RLIMIT_NOFILE soft limit's worth (at most 65,536 slots; max_conns, 64 and 2
 * per worker when that is fewer) by duplicating a descriptor of its own to the top and closing both: grown later,
 * with threads running, the table makes an accepting worker wait for an RCU grace period at each doubling. */
OVL_API int ovl_engine_start(ovl_engine *engine, ovl_error_info *err);
/* Name of the backend in use: "io_uring", "epoll", "iocp". A static string. */
OVL_API const char *ovl_engine_backend(const ovl_engine *engine);
/* NULL, or one line saying why the default backend is not the preferred one ("io_uring unavailable
 * (io_uring_setup: Operation not permitted), using epoll"), for the program to show. It belongs to the engine and
 * lives until ovl_engine_destroy. */
OVL_API const char *ovl_engine_notice(const ovl_engine *engine);
/* Number of worker threads (config threads, 0 resolved to ovl_default_threads()). */
OVL_API int ovl_engine_threads(const ovl_engine *engine);
/* CPUs this process may run on: its affinity (taskset, cpuset, job object), at least 1. */
OVL_API int ovl_cpu_count(void);
/* The worker count `threads` 0 stands for: ovl_cpu_count() less one, at least 1 and at most OVL_MAX_THREADS. One
 * CPU stays for the kernel's network work and whatever shares the host; a dedicated host whose clients are remote
 * may gain from one worker per CPU (measure it: docs/BENCHMARKS.md). */
OVL_API int ovl_default_threads(void);
/* Run fn(arg) on worker `worker` (0 .. threads-1) at its next loop turn, after what it is doing: how an embedder
 * moves work off a worker (to its own threads, for blocking calls) and back onto the worker that owns a connection
 * (ovl_conn_worker). fn runs on that worker's thread like a callback: it may use every call of the connections that
 * worker owns - but a connection may have closed meanwhile, so find it through state the worker keeps (on_close
 * tells when to forget it), never through a pointer held elsewhere. Posts to one worker run in the order they were
 * made. One that has not run when the worker ends (the engine stopped) runs in ovl_engine_destroy, on its thread,
 * with no connection left, so that arg is never lost. Returns 0, -EINVAL (engine or fn NULL, worker out of range),
 * -ENOMEM. Any thread, callbacks included. */
OVL_API int ovl_post(ovl_engine *engine, int worker, void (*fn)(void *arg), void *arg);
/* The index of the worker of `engine` running on the calling thread, or -1 when this thread is none of them. */
OVL_API int ovl_worker_index(const ovl_engine *engine);
/* Graceful stop, without waiting: stop accepting, let every connection finish echoing what it already received
 * (up to drain_timeout_ms), close them all with OVL_CLOSE_ENGINE_STOP (connects still in progress at once). From
 * then on ovl_listen and ovl_connect fail with -ESHUTDOWN. Only the first call counts; before ovl_engine_start it
 * makes the workers end as soon as they start. Safe from any thread, callbacks included. */
OVL_API void ovl_engine_request_stop(ovl_engine *engine);
/* Wait until every worker has ended, which they do only after a stop request (waiting without one blocks until some
 * thread or callback makes it), then close the listening sockets. Returns at once if the engine never started.
 * Not from a worker thread (it would wait for itself). */
OVL_API void ovl_engine_wait(ovl_engine *engine);
/* ovl_engine_request_stop + ovl_engine_wait. Not from a worker thread. Returns in bounded time on every backend:
 * each worker ends at most drain_timeout_ms + 2 x stop_grace_ms after it saw the request (ovl_engine_stop_bound_ms),
 * unless a callback of the application blocks it; operations whose cancellation never completed by then are
 * abandoned (stats.stop_abandoned). */
OVL_API void ovl_engine_stop(ovl_engine *engine);
/* That bound in milliseconds, from this engine's configuration (defaults applied): for a service manager's wait
 * hint. */
OVL_API uint64_t ovl_engine_stop_bound_ms(const ovl_engine *engine);
/* Free the engine (stopping it first if it runs, so not from a worker thread), its listeners, its buffers (those the
 * application still holds included) and every string it returned. NULL is fine. ovl_connect attempts no worker ever
 * ran (engine never started) are freed without on_close. Targets are not the engine's: ovl_target_free them. */
OVL_API void ovl_engine_destroy(ovl_engine *engine);

/* Every counter, in ovl_stats' order: X(name, kind, help), kind being counter (only grows) or gauge. The one list
 * the structure, the engine's sum and the programs' stats lines (and metrics) are made from; help is one line. */
#define OVL_STATS_FIELDS(X)                                                                                          \
    X(conns_open, gauge, "connections open now")                                                                     \
    X(conns_accepted, counter, "connections accepted")                                                               \
    X(conns_connected, counter, "outbound connections established")                                                  \
    X(conns_closed, counter, "connections closed after they opened, for any reason")                                 \
    X(conns_refused, counter, "connections accepted past max_conns, or while stopping, and closed at once")          \
    X(connect_failures, counter, "outbound connection attempts where no address worked, or that timed out")          \
    X(resets, counter, "connections ended by a peer reset, and peers that reset before they were accepted")          \
    X(errors, counter, "connections ended by another I/O error, accept errors, sockets that could not be set up")    \
    X(bytes_in, counter, "bytes received and delivered (not those in bytes_discarded)")                              \
    X(bytes_out, counter, "bytes sent")                                                                              \
    X(msgs_in, counter, "receive completions")                                                                       \
    X(msgs_out, counter, "send completions")                                                                         \
    X(recv_nobufs, counter, "times a receive waited for a receive buffer")                                           \
    X(recv_pauses, counter, "times a connection stopped receiving because max_pending bytes were queued")            \
    X(reuse_ok, counter, "IOCP: sockets reused after DisconnectEx(TF_REUSE_SOCKET)")                                 \
    X(reuse_fallback, counter, "IOCP: reused sockets the provider refused, replaced by fresh ones")                  \
    X(context_updates, counter, "IOCP: SO_UPDATE_ACCEPT_CONTEXT / SO_UPDATE_CONNECT_CONTEXT applied")                \
    X(reuse_timeouts, counter, "IOCP: DisconnectEx calls still pending after 2 s, cancelled, sockets closed")      \
    X(io_retries, counter, "IOCP: receives and sends tried again after WSAENOBUFS or too many overlapped requests")  \
    X(reuse_wrong_role, counter, "IOCP: pooled sockets met by the other call (AcceptEx vs ConnectEx), closed")     \
    X(idle_closed, counter, "connections closed by the idle timeout")                                                \
    X(stalled_closed, counter, "connections closed by the stall timeout: their peer took none of their bytes")       \
    X(bytes_discarded, counter, "bytes that arrived after our FIN during a stop, read and dropped")                  \
    X(peer_timeouts, counter, "connections whose peer stopped answering (keepalive or retransmissions)")             \
    X(recv_pool_pauses, counter, "times a connection stopped receiving for its share of the receive buffers")     \
    X(bytes_pending, gauge, "bytes queued for sending whose send has not completed yet, over all connections")      \
    X(stop_abandoned, counter, "operations a stop gave up on: pending after its hard deadline, their memory leaked") \
    X(recv_buffers, gauge, "receive buffers in the workers' pools (a growing pool doubles with its connections)")

/* Counters, summed over workers. Readable at any time from any thread (each counter is read atomically; the
 * set is not a single snapshot). In detail:
 *   conns_refused     accepted past max_conns, or while the engine stopped, and closed at once
 *   connect_failures  ovl_connect attempts where no address worked (or connect_timeout_ms passed)
 *   errors            connections ended by another I/O error, plus accept errors and accepted sockets that could
 *                     not be set up; peer_timeouts are among them
 *   msgs_in, msgs_out receive and send completions (a receive's buffer delivered or discarded)
 *   recv_nobufs       times a receive waited for a buffer: the pool was empty (io_uring: or the window of buffers
 *                     it keeps in the kernel ring was still growing to the load)
 *   context_updates   IOCP: one per connection; Wine ignores them silently, so tests count them
 *   bytes_discarded   bytes that arrived after our side was shut down while the engine stopped (sent by the peer
 *                     after the stop, as our FIN was on its way): read and dropped, so that the close does not turn
 *                     into a reset
 *   recv_pool_pauses  times a connection stopped receiving because it held its share of the worker's receive
 *                     buffers while they ran low, or any while the pool was down to its reserve
 *   stop_abandoned    operations (a connection's receive, send or connect, an accept) whose completion had not
 *                     come stop_grace_ms after their sockets were closed at the stop's hard deadline: the worker
 *                     ended without them, and the memory they may still write (the connection, the worker's receive
 *                     buffers) is never freed. 0 unless the system lost a cancellation. (An IOCP DisconnectEx still
 *                     pending then is given up on, as 1 s after the stop begins: it writes only its own context.)
 *   recv_buffers      receive buffers in the workers' pools: buffer_count each, and a pool left to grow (buffer_count
 *                     0) doubles while its worker's open connections are more than a quarter of it. A pool never
 *                     shrinks (its untouched and cold pages cost no memory on Linux); the gauge keeps its last value
 *                     after a stop, until ovl_engine_destroy */
typedef struct ovl_stats {
#define OVL__STATS_MEMBER(name, kind, help) uint64_t name;
    OVL_STATS_FIELDS(OVL__STATS_MEMBER)
#undef OVL__STATS_MEMBER
} ovl_stats;

/* Fill *out (all zero before start). Any thread, at any time until ovl_engine_destroy - during a stop too, while
 * another thread waits in ovl_engine_stop (conns_open falling, conns_closed rising show its progress). */
OVL_API void ovl_engine_stats(ovl_engine *engine, ovl_stats *out);

/* Listen on host:port. host NULL or "" = every interface (IPv6 dual-stack where the OS allows it, IPv4 otherwise);
 * a name or literal binds every address getaddrinfo returns for it (the first 8). port "0" picks a free port (the
 * same one on every address). Connections accepted get (a copy of) `callbacks` and start with user pointer `user`.
 * Before or after ovl_engine_start; the listener lives until ovl_engine_destroy (ovl_engine_wait closes its sockets;
 * there is no closing one alone). `out` may be NULL.
 * Returns 0 and *out, or a negative error with err filled ("bind [::1]:27015", "Address already in use"): -EINVAL
 * (engine, port or callbacks NULL), -ESHUTDOWN (a stop was requested), the socket/bind/listen error (-EADDRINUSE,
 * -EACCES, ...), -EHOSTUNREACH (unknown host), -EADDRNOTAVAIL (another resolver failure, or no IPv4/IPv6 address;
 * on Windows the resolver's WSA code instead of both), -ENOMEM. Any thread, callbacks included. */
OVL_API int ovl_listen(ovl_engine *engine, const char *host, const char *port, const ovl_callbacks *callbacks,
                       void *user, ovl_listener **out, ovl_error_info *err);
/* Listen on a socket that is already bound and listening (systemd socket activation, a socket handed over by
 * another process): the engine takes it over as ovl_listen's own (settings applied, closed at the stop). Returns 0
 * and *out, or a negative error with err filled: -EINVAL (engine or callbacks NULL), -ENOTSOCK or -EINVAL (not a
 * listening TCP socket), -ESHUTDOWN. On Windows `socket` is a SOCKET. */
OVL_API int ovl_listen_socket(ovl_engine *engine, intptr_t socket, const ovl_callbacks *callbacks, void *user,
                              ovl_listener **out, ovl_error_info *err);
/* Port the listener is bound to (useful after port "0"). */
OVL_API int ovl_listener_port(const ovl_listener *listener);
/* Number of sockets (addresses, 1..8) the listener has, and each one as "[::]:27015" / "127.0.0.1:27015" (NULL for
 * an index out of range). The string belongs to the listener and lives until ovl_engine_destroy. */
OVL_API int ovl_listener_count(const ovl_listener *listener);
OVL_API const char *ovl_listener_address(const ovl_listener *listener, int index);

/* Resolved destination for outbound connections: every address getaddrinfo returns for host:port, in its order
 * (host NULL or "" = "localhost"). Resolving once and connecting many times keeps the resolver out of reconnect
 * loops. A target belongs to no engine and is read-only once made: any connects, threads and engines may share it.
 * Blocks while the resolver works.
 * Returns 0 and *out (free it with ovl_target_free once no ovl_connect attempt uses it any more), or a negative
 * error with err filled: -EINVAL (out or port NULL), -ENOMEM, -EHOSTUNREACH (unknown host), -EADDRNOTAVAIL
 * (another resolver failure; on Windows the resolver's WSA code instead of both) ("resolve example.invalid:80",
 * gai_strerror text). Any thread. */
OVL_API int ovl_target_resolve(ovl_target **out, const char *host, const char *port, ovl_error_info *err);
/* Free a target (NULL is fine). Not while a connection attempt to it may still be trying addresses: after the
 * engine stopped, or after every on_open/on_close of the connections made to it. */
OVL_API void ovl_target_free(ovl_target *target);
/* "localhost:27015": host:port as given to ovl_target_resolve (cut to 127 bytes). It belongs to the target and
 * lives until ovl_target_free. */
OVL_API const char *ovl_target_name(const ovl_target *target);
/* Would connecting to `target` reach `listener` itself (an address it listens on, or one of this host's addresses
 * when it listens on every interface, and the same port)? A proxy forwarding there would connect to itself for
 * ever, a new connection per connection. Returns 1 and the listener's address (as ovl_listener_address) in *which,
 * or 0. Any thread. */
OVL_API int ovl_target_reaches(const ovl_target *target, const ovl_listener *listener, const char **which);

/* Open an outbound connection to `target` (which must outlive the attempt; the engine does not copy it). Every
 * address is tried in order until one connects; on success on_open runs, otherwise on_close runs with
 * OVL_CLOSE_CONNECT_FAILED and the last error (-ECONNREFUSED, ...); a stop that overtakes the attempt closes it
 * with OVL_CLOSE_ENGINE_STOP. After a 0 return on_close always comes (later, never inside this call), unless no
 * worker ever ran the attempt (see ovl_engine_destroy). `callbacks` is copied. Called from a worker thread of this
 * engine, the connection belongs to that worker; otherwise workers take turns. Before ovl_engine_start the attempt
 * waits for the start. Returns 0 or a negative error: -EINVAL (engine, target or callbacks NULL), -ESHUTDOWN (a stop
 * was requested), -ENOMEM. Any thread, callbacks included. */
OVL_API int ovl_connect(ovl_engine *engine, const ovl_target *target, const ovl_callbacks *callbacks, void *user);

/* Queue bytes for sending, in call order; they leave from the worker's loop, and on_drain tells when the queue is
 * empty. They are sent even if the peer half-closed; sends after ovl_shutdown or on a closing connection fail with
 * -EPIPE. Other errors: -EINVAL (conn NULL, or data NULL with len > 0), -ENOMEM. Nothing to send (len 0, an empty
 * buffer) returns 0 and does nothing.
 *   ovl_send     copies data (convenient, one allocation).
 *   ovl_send_ref sends from caller memory without copying; it must stay valid and unchanged until on_drain reports
 *                the queue empty (or ovl_conn_pending returns 0) or on_close runs. After an error it is not used.
 *                Except when on_close says OVL_CLOSE_ENGINE_STOP with -ECANCELED: the stop gave up on a send the
 *                system had not completed, which may still read the memory; keep it (leak it) then.
 *   ovl_send_buf sends a buffer from on_data as it is (zero copy); the buffer returns to its pool when done. The call
 *                takes the buffer whatever it returns (on an error it is released), except -EINVAL (conn or buf
 *                NULL). A buffer of another worker is copied and its slot given back to that worker, so a proxy may
 *                hand a buffer to the thread of a connection on another worker and send it there. */
OVL_API int ovl_send(ovl_conn *conn, const void *data, size_t len);
OVL_API int ovl_send_ref(ovl_conn *conn, const void *data, size_t len);
OVL_API int ovl_send_buf(ovl_conn *conn, ovl_buf *buf);
/* Shut down our write side once every queued send is done (like shutdown(SD_SEND)): the peer sees EOF. Receiving
 * goes on; when the peer's EOF has come too, the connection closes with OVL_CLOSE_PEER. Later sends fail with -EPIPE.
 * Returns 0 (repeated calls too), -ENOTCONN when the connection is closing, -EINVAL for NULL. */
OVL_API int ovl_shutdown(ovl_conn *conn);
/* Close now: queued sends are dropped, input not yet delivered is discarded, the timer is cancelled; on_close runs
 * (OVL_CLOSE_LOCAL) once the engine has no operation left on it. NULL, or a connection already closing, is ignored
 * (the first reason stays). */
OVL_API void ovl_close(ovl_conn *conn);

/* The connection's user pointer (set by ovl_listen/ovl_connect, changed with ovl_conn_set_user); the engine never
 * dereferences it. ovl_conn_engine: the engine the connection belongs to. Owner thread only. */
OVL_API void *ovl_conn_user(const ovl_conn *conn);
OVL_API void ovl_conn_set_user(ovl_conn *conn, void *user);
OVL_API ovl_engine *ovl_conn_engine(const ovl_conn *conn);
/* Index of the owning worker, 0 .. threads-1. */
OVL_API int ovl_conn_worker(const ovl_conn *conn);
/* Bytes queued for sending whose send has not completed yet (a send in flight included). */
OVL_API size_t ovl_conn_pending(const ovl_conn *conn);
/* Stop receiving from the connection until ovl_recv_resume: on_data (and on_eof) is not called for it meanwhile.
 * Bytes the engine had already received are held, and delivered in order after the resume (from the worker's loop,
 * not inside ovl_recv_resume), before anything newer (a proxy pauses the side whose bytes the other side cannot take
 * yet). Returns 0, -ENOTCONN when the connection is closing, -EINVAL for NULL. Calls do not nest: one resume undoes
 * any pauses; it does not lift the engine's own max_pending pause, which ends when the queue drains. While the
 * engine stops (graceful drain), pausing is ignored: the drain reads what is buffered, bounded by drain_timeout_ms. */
OVL_API int ovl_recv_pause(ovl_conn *conn);
OVL_API int ovl_recv_resume(ovl_conn *conn);
/* Change this connection's max_pending (see ovl_config): the queued bytes at which the engine pauses receiving
 * from it, checked after each on_data. A connection its queue paused resumes at once if the queue is at most half
 * the new value. 0 turns the automatic pause off (and resumes), for applications whose sends on this connection are
 * not caused by its own input (a proxy: pausing the receiver of a full queue could deadlock with a peer that waits
 * to send); they pace themselves with ovl_recv_pause/ovl_recv_resume and on_drain. NULL is ignored. */
OVL_API void ovl_conn_set_max_pending(ovl_conn *conn, size_t bytes);
/* Run on_timer(conn) once, on the connection's worker, `delay_us` microseconds from now (never earlier; later by
 * however long the worker is busy; 0 = its next loop turn). A connection has one timer: arming it again moves the
 * deadline and replaces on_timer, on_timer NULL cancels it (and returns 0, even when closing), and a connection that
 * starts closing loses it (on_timer never runs for a closing connection). Timers keep running during a graceful stop.
 * Resolution: io_uring and epoll wait with nanosecond timeouts; IOCP waits in milliseconds (Windows' timer tick,
 * ~1-16 ms, applies). Arming never allocates. Returns 0, -ENOTCONN (closing), -EINVAL (conn NULL, or delay_us
 * above UINT64_MAX / 2000, ~292 years). Owner thread only, like every ovl_conn_ call;
 * on_timer may send, close and re-arm. */
OVL_API int ovl_conn_timer(ovl_conn *conn, uint64_t delay_us, void (*on_timer)(ovl_conn *conn));
/* "[::1]:51234" - the peer's address, or "(unknown)" when the socket cannot tell (an outbound connection that never
 * connected, a peer that already reset). It belongs to the connection and lives until on_close returns. */
OVL_API const char *ovl_conn_peer(const ovl_conn *conn);

/* Bytes of a received buffer (1 .. buffer_size of them), valid until the buffer is released or passed to
 * ovl_send_buf. Only the thread that owns it may use it. */
OVL_API const void *ovl_buf_data(const ovl_buf *buf);
OVL_API size_t ovl_buf_len(const ovl_buf *buf);
/* Give a buffer from on_data back to its pool, on the worker that delivered it; it must not be used afterwards. NULL
 * is ignored; releasing twice is a bug (reported on stderr and ignored while the slot is still free). Buffers still
 * held when the workers have ended need no release: ovl_engine_destroy frees them. */
OVL_API void ovl_buf_release(ovl_buf *buf);

#ifdef __cplusplus
}
#endif

#endif
