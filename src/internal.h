/*
 * internal.h - the engine's shared data structures: engine, workers, listeners, connections, buffers.
 *
 * Everything here is backend-neutral. A backend (backend_uring.c, ...) implements struct ovl__backend from
 * backend.h and calls back into the shared connection logic (conn.c) when its operations complete; it never runs
 * user callbacks itself. That keeps the rules (ordering of sends, when a connection may be freed, what a close
 * reason means) written once.
 */
#ifndef OVL_INTERNAL_H
#define OVL_INTERNAL_H

#include "overlap.h"
#include "platform.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

struct ovl__backend;
struct ovl__worker;

/* The structure that holds `member` at `ptr`. */
#define ovl__container_of(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* Where a buffer's memory comes from, which decides how it is given back. */
enum ovl__buf_kind {
    OVL__BUF_POOL = 1, /* a slot of the worker's receive pool */
    OVL__BUF_HEAP,     /* ovl_send: a copy, data follows the header */
    OVL__BUF_REF       /* ovl_send_ref: caller memory, only the header is ours */
};

/* A pool slot's owner. Tracked so that a slot can never be handed back twice (and so to two connections). */
enum ovl__buf_state {
    OVL__BUF_FREE = 1, /* in the pool, the kernel may fill it */
    OVL__BUF_USER      /* delivered to on_data, owned by the application or a send queue */
};

struct ovl_buf {
    ovl_buf *next;               /* link in a connection's send queue */
    char *data;                  /* first byte not yet sent / delivered */
    size_t len;                  /* bytes from data on */
    struct ovl__worker *worker;  /* owner of a pool slot */
    ovl_conn *owner;             /* pool slot: the connection it was received on, charged for it until it is free */
    ovl_buf *owned_prev, *owned_next; /* the owner's list of the slots charged to it */
    char *home;                  /* pool slot: its memory (data points into it) */
    uint32_t slot;               /* pool slot index */
    uint8_t kind;
    uint8_t state;
    bool queued;                 /* pool slot in a send queue: counted in its owner's slots_queued */
    bool released;               /* free pool slot whose pages are not resident: never touched, or given back
                                    (ovl__pool_release_slot); cleared when it is taken */
};

/* Receive buffers of one worker: slabs cut into equal slots, plus a header per slot. A pool left to grow
 * (slot_limit > slot_count) doubles when its worker's connections call for it: each doubling is one more chunk, a slab
 * and its headers, so headers never move (the application holds ovl_buf pointers) and untouched pages cost nothing. */
#define OVL__POOL_CHUNKS 16   /* 1 .. 32768 slots in doublings */
#define OVL__POOL_PER_CONN 4  /* a growing pool keeps this many slots per open connection */
struct ovl__pool {
    ovl_buf **slots;             /* slot index -> its header, slot_limit entries */
    uint32_t slot_size;
    uint32_t slot_count;         /* slots now */
    uint32_t slot_limit;         /* the most it grows to; slot_count for a fixed pool */
    uint32_t chunk_count;
    struct {
        char *slab;
        ovl_buf *headers;
    } chunks[OVL__POOL_CHUNKS];
    uint32_t held;               /* slots currently outside the pool */
    uint32_t *free_slots;        /* indexes of FREE slots, a stack: the most recently freed on top, warm in cache */
    uint32_t free_count;
    /* Fairness (conn.c, "The pool is shared fairly"): below `pressure` free slots a connection with `share` of its
     * slots in send queues stops receiving, and below `reserve` so does every connection with any there. */
    uint32_t share;
    uint32_t pressure;
    uint32_t reserve;
    uint32_t parked;             /* held slots only waiting in a posted receive (IOCP): free as far as fairness goes */
    /* Memory given back (ovl__pool_trim): free_slots[0 .. untouched) have not been taken since the last trim. */
    uint32_t untouched;
    uint64_t trimmed_at_ms;
};

/* Take the top of the pool's free stack - the most recently freed slot, warm in cache - and return its index. The
 * caller has checked free_count. */
static inline uint32_t ovl__pool_pop(struct ovl__pool *pool)
{
    uint32_t slot = pool->free_slots[--pool->free_count];
    if (pool->free_count < pool->untouched)
        pool->untouched = pool->free_count;
    return slot;
}

/* Counters of one worker. Only the worker writes them (plain load+store, no locked instruction); any thread reads. */
struct ovl__counters {
#define OVL__COUNTER_MEMBER(name, kind, help) _Atomic uint64_t name;
    OVL_STATS_FIELDS(OVL__COUNTER_MEMBER)
#undef OVL__COUNTER_MEMBER
};

static inline void ovl__count(_Atomic uint64_t *counter, uint64_t n)
{
    atomic_store_explicit(counter, atomic_load_explicit(counter, memory_order_relaxed) + n, memory_order_relaxed);
}

static inline void ovl__uncount(_Atomic uint64_t *counter, uint64_t n)
{
    atomic_store_explicit(counter, atomic_load_explicit(counter, memory_order_relaxed) - n, memory_order_relaxed);
}

/* One bound, listening socket of a listener (a listener has one per address). */
struct ovl__listen_socket {
    struct ovl_listener *listener;
    ovl__socket fd;
    char address[64];
};

struct ovl_listener {
    ovl_engine *engine;
    ovl_callbacks callbacks;
    void *user;
    int port;
    int count;
    struct ovl__listen_socket sockets[8];
    struct ovl_listener *next;
};

/* A deadline in the worker's timer heap (timer.c). Intrusive: arming never allocates. */
struct ovl__timer {
    uint64_t at_ns;              /* deadline (ovl__clock_ns) */
    struct ovl__timer *child, *sibling, *prev; /* heap links; prev: the parent of a first child, else the sibling
                                                  before it */
    void (*fire)(struct ovl__worker *worker, struct ovl__timer *timer);
    bool armed;
};

struct ovl_target {
    struct addrinfo *addresses;
    int count;
    char name[128];
};

/* Connection flags. */
enum {
    OVL__C_OPEN = 1u << 0,         /* on_open ran */
    OVL__C_CONNECTING = 1u << 1,   /* outbound, not yet connected */
    OVL__C_EOF_IN = 1u << 2,       /* the peer shut down its write side */
    OVL__C_SHUT_WANTED = 1u << 3,  /* ovl_shutdown: shut our write side once the queue is empty */
    OVL__C_SHUT_DONE = 1u << 4,    /* our write side is shut */
    OVL__C_CLOSING = 1u << 5,
    OVL__C_SENDING = 1u << 6,      /* a send operation is in flight */
    OVL__C_KICKED = 1u << 7,       /* on the worker's list of connections with sends to start */
    OVL__C_DEAD = 1u << 8,         /* on the worker's list of connections to free */
    OVL__C_DRAINING = 1u << 9,     /* the engine is stopping: deliver what is already buffered, then finish */
    OVL__C_READ_DONE = 1u << 10,   /* draining found nothing more to read */
    OVL__C_LINGER = 1u << 11,      /* draining, our side shut: discard input until the peer closes */
    OVL__C_RECV_ARMED = 1u << 12,  /* a receive operation is in flight */
    OVL__C_RECV_WAIT = 1u << 13,   /* waiting for a pool slot before receiving again */
    OVL__C_PAUSED = 1u << 14,      /* receiving is stopped for one of the reasons below; backends do not re-arm */
    OVL__C_PAUSE_QUEUE = 1u << 15, /* too much queued for sending: paused until half of it drains */
    OVL__C_PAUSE_USER = 1u << 16,  /* ovl_recv_pause: paused until ovl_recv_resume */
    OVL__C_HELD_QUEUED = 1u << 17, /* on the worker's list of connections whose held input is to be delivered */
    OVL__C_HOLD_EOF = 1u << 18,    /* the peer's EOF came behind held input: reported once that is delivered */
    OVL__C_HOLD_READ_DONE = 1u << 19, /* draining found the end behind held input: likewise */
    OVL__C_PAUSE_POOL = 1u << 20,  /* holds its share of the receive pool: paused until it holds less */
    OVL__C_POOL_LISTED = 1u << 21, /* on the worker's list of connections paused for the pool */
    OVL__C_RECV_ONE = 1u << 22,    /* backlogged: receive one buffer per operation, never a multishot burst */
    OVL__C_POOL_CHECK = 1u << 23,  /* on the worker's list of pool-paused connections to look at again */
    OVL__C_DRAIN_SPENT = 1u << 24  /* draining: what the kernel held at the stop has been read */
};

struct ovl_conn {
    ovl_conn *prev, *next;       /* the worker's list of live connections */
    ovl_conn *kick_next;         /* worker's kick list */
    ovl_conn *dead_next;         /* worker's free list */
    ovl_conn *wait_next;         /* backend: waiting for a pool slot */
    struct ovl__worker *worker;
    ovl_callbacks callbacks;
    void *user;
    ovl__socket fd;
    uint32_t flags;
    int inflight;                /* backend operations not yet completed */
    ovl_close_reason close_reason;
    int close_err;
    ovl_buf *queue_head, *queue_tail;
    size_t queue_bytes;
    size_t sending_bytes;        /* bytes of the send operation in flight */
    size_t max_pending;          /* queued bytes that pause receiving (config.max_pending); 0 = never */
    uint32_t slots_queued;       /* pool slots received on it that wait in a send queue (the pool's fairness rule) */
    ovl_buf *owned;              /* pool slots received on it and not yet free, wherever they are */
    uint32_t clean_receives;     /* receives in a row that found it not backlogged (ends OVL__C_RECV_ONE) */
    uint64_t drain_budget;       /* draining: bytes the kernel still held for us when the stop came, yet to read */
    ovl_conn *pool_prev, *pool_next; /* worker's list of connections paused for the pool */
    ovl_conn *pool_check_next;   /* worker's list of those to look at again */
    /* Input that arrived after ovl_recv_pause (receives the kernel had already completed, e.g. the rest of a
     * multishot receive), delivered in order after ovl_recv_resume, before anything newer. */
    ovl_buf *held_head, *held_tail;
    ovl_conn *held_next;         /* worker's list of connections with held input to deliver */
    const ovl_target *target;    /* outbound: addresses to try */
    const struct addrinfo *next_address;
    int last_error;
    uint64_t active_ms;          /* worker->now_ms when a byte was last received or sent (idle timeout) */
    uint64_t sent_ms;            /* worker->now_ms when the peer last took queued bytes, or the queue last filled
                                    from empty (stall timeout) */
    struct ovl__timer timer;     /* ovl_conn_timer (and the connect deadline before on_open) */
    void (*on_timer)(ovl_conn *conn);
    char peer[64];
    /* backend-specific state follows (backend->conn_extra bytes) */
    _Alignas(16) unsigned char backend_data[];
};

struct ovl__command {
    struct ovl__command *next;
    enum { OVL__CMD_LISTEN, OVL__CMD_CONNECT, OVL__CMD_ADOPT, OVL__CMD_RELEASE, OVL__CMD_POST } kind;
    struct ovl__listen_socket *listen_socket;
    ovl_conn *conn;
    ovl_buf *buf;                /* RELEASE: a pool slot of this worker, let go on another worker's thread */
    ovl__socket socket;          /* ADOPT: a socket accepted on another worker's behalf */
    void (*fn)(void *arg);       /* POST: ovl_post's function and argument */
    void *arg;
    char peer[64];
};

/* The worker's armed timers, earliest deadline at the root (timer.c). */
struct ovl__timer_heap {
    struct ovl__timer *root;
    uint32_t count;
};

struct ovl__worker {
    ovl_engine *engine;
    int index;
    bool acceptor;               /* the backend's acceptor (workers[thread_count], backend.h): it owns the listening
                                    sockets and never a connection, a receive pool or a post */
    bool accepts;                /* takes part in accepting (accepting_workers): every worker, or the acceptor alone */
    pthread_t thread;
    bool thread_started;
    _Atomic int ready;           /* backend set up: wake() may be used */
    void *backend_state;
    struct ovl__pool pool;
    struct ovl__counters counters;
    ovl_conn *conns;             /* live connections (doubly linked) */
    uint32_t conn_count;
    _Atomic uint32_t conns_shown;  /* conn_count, for other threads choosing where a new connection goes */
    _Atomic uint32_t handoffs;     /* connections handed to this worker (OVL__CMD_ADOPT, OVL__CMD_CONNECT) that it
                                      has not taken yet: with conns_shown, its load */
    _Atomic int taking;            /* running and not stopping: new connections may be handed to it */
    ovl_conn *kick_head;         /* connections with queued output to send, in the order they queued it ... */
    ovl_conn *kick_tail;         /* ... first in, first sent: a batch of replies leaves as its requests came */
    ovl_conn *dead_head;
    ovl_conn *wait_head;         /* connections waiting for a free pool slot before receiving, the longest */
    ovl_conn *wait_tail;         /* waiting first: they receive again in the order they ran short */
    ovl_conn *held_head, *held_tail; /* connections whose held input is delivered at the next flush, in the
                                        order they resumed */
    bool wait_dirty;             /* a waiting connection closed: walk the wait list */
    ovl_conn *pool_paused;       /* connections paused for their share of the pool (OVL__C_POOL_LISTED) */
    ovl_conn *pool_check;        /* of those, the ones a freed slot may let go on (OVL__C_POOL_CHECK) */
    bool pool_walk_all;          /* the pool rose past a threshold: look at every paused one */
    bool stopping;               /* stop command seen */
    uint32_t tick_ms;            /* ovl__worker_tick runs this often (timeouts, pool trim) */
    struct ovl__timer tick_timer;  /* the next ovl__worker_tick */
    struct ovl__timer drain_timer; /* stopping: the end of the graceful drain (drain_timeout_ms) */
    struct ovl__timer stop_timer;  /* stopping: the hard deadline (drain + stop_grace_ms), then the last wait */
    uint8_t stop_stage;            /* 0; 1 sockets closed at the hard deadline; 2 give up on what is pending */
    uint64_t drain_expired_ms;     /* now_ms when the drain deadline closed what was left, 0 before */
    bool abandoned;                /* the loop ended with operations pending: their memory is never freed */
    ovl_conn *abandoned_conns;     /* those connections (linked by next), kept reachable for leak checkers */
    struct ovl__worker *abandoned_next; /* workers[0] of an engine that leaked its workers: the next such array */
    uint64_t now_ms;             /* ovl__clock_ns in ms, read once per loop turn (ovl__worker_clock), not per message */
    uint64_t now_ns;             /* the same reading in ns: when the last wait returned */
    uint64_t poll_ns;            /* the clock as the loop computed the wait's timeout: when the wait began */
    struct ovl__timer_heap timers;
    pthread_mutex_t command_lock;
    struct ovl__command *command_head, *command_tail;
    _Atomic int command_pending;
    int init_result;
    ovl_error_info init_error;
};

struct ovl_engine {
    ovl_config config;
    const struct ovl__backend *backend;
    char notice[320];            /* why the default backend was not the preferred one, or "" */
    uint32_t pool_limit;         /* the most receive buffers a worker's pool grows to (config.buffer_count: fixed) */
    int thread_count;            /* workers: the threads that own connections (ovl_post, ovl_conn_worker) */
    int loop_count;              /* threads running worker.c's loop: the workers, then the acceptor if any */
    struct ovl__worker *workers; /* loop_count of them */
    ovl_listener *listeners;
    pthread_mutex_t lock;        /* listeners list, start/stop transitions; never held while joining */
    pthread_mutex_t join_lock;   /* serialises ovl_engine_wait callers (workers never take it) */
    _Atomic uint32_t open_conns; /* engine-wide, for max_conns */
    _Atomic uint32_t next_worker;
    _Atomic int stop_requested;
    _Atomic int accepting_workers; /* loops that accept (ovl__worker.accepts) and have not yet stopped accepting; the
                                      last one closes the listening sockets (a process sharing the port with
                                      SO_REUSEPORT gets what comes next) */
    bool started;
    bool joined;
    unsigned faults;             /* OVL__FAULT_*: faults the tests inject ($OVERLAP_TEST_FAULTS), else 0 */
    /* start handshake: workers report their backend set-up result */
    pthread_mutex_t start_lock;
    pthread_cond_t start_cond;
    int workers_ready;
};

/* Faults a test injects through the environment ($OVERLAP_TEST_FAULTS, a comma-separated list, read by
 * ovl_engine_create): test-only, so that a loss only a misbehaving system causes can be made to happen. */
enum {
    /* "swallow-cancels": on a stopping worker, the backend drops the completion of every cancelled operation, as a
     * system that holds a cancelled AcceptEx or WSARecv for ever would: only the hard stop deadline ends the worker. */
    OVL__FAULT_SWALLOW_CANCELS = 1u << 0
};

/* The library's one clock: monotonic nanoseconds (timers, the spin, and worker->now_ms derived from it). */
static inline uint64_t ovl__clock_ns(void)
{
#ifdef _WIN32
    LARGE_INTEGER frequency, count;
    QueryPerformanceFrequency(&frequency); /* fixed at boot; reading it is cheap and needs no shared state */
    QueryPerformanceCounter(&count);
    return (uint64_t)(count.QuadPart / frequency.QuadPart) * 1000000000u +
           (uint64_t)(count.QuadPart % frequency.QuadPart) * 1000000000u / (uint64_t)frequency.QuadPart;
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
#endif
}

/* Backends call this once per loop turn, right after their wait returns and before they handle what it brought:
 * the connection logic then stamps activity by copying worker->now_ms, without a clock read per message. */
static inline void ovl__worker_clock(struct ovl__worker *worker)
{
    worker->now_ns = ovl__clock_ns();
    worker->now_ms = worker->now_ns / 1000000u;
}

/* A receive buffer's bytes, or for a backlogged connection (OVL__C_RECV_ONE, conn.c note_backlog) at most
 * OVL__RECV_ONE_BYTES of them: a peer that outruns us is read in small steps whatever the buffer size, so that a
 * hundred of them do not make a loop turn (and a well-behaved neighbour's answer) four times longer with 64 KiB
 * buffers than with 16 KiB ones. io_uring and IOCP, one buffer per operation, use it; epoll bounds the bytes of a
 * turn's reads instead (ready.c). Never 0: io_uring before 6.0 took a 0-length buffer-select receive literally. */
#define OVL__RECV_ONE_BYTES 16384u
static inline uint32_t ovl__recv_len(const ovl_conn *conn)
{
    uint32_t size = conn->worker->pool.slot_size;
    return (conn->flags & OVL__C_RECV_ONE) && size > OVL__RECV_ONE_BYTES ? OVL__RECV_ONE_BYTES : size;
}

/* Draining (not lingering): how many bytes one read may take - what is left of the input the kernel held at the
 * stop - given a buffer of `size`. */
static inline size_t ovl__drain_read_len(const ovl_conn *conn, size_t size)
{
    return conn->drain_budget && conn->drain_budget < size ? (size_t)conn->drain_budget : size;
}

/* Draining: what the kernel held at the stop has been read; report read_done, read no more. */
static inline bool ovl__drain_read_all(const ovl_conn *conn)
{
    return (conn->flags & (OVL__C_DRAINING | OVL__C_LINGER | OVL__C_CLOSING | OVL__C_DRAIN_SPENT)) ==
           (OVL__C_DRAINING | OVL__C_DRAIN_SPENT);
}

/* The worker running on this thread, or NULL. */
extern _Thread_local struct ovl__worker *ovl__current_worker;

/* error.c */
/* Say it through config.log, if the embedder set one. */
void ovl__log(const ovl_engine *engine, ovl_log_level level, const char *format, ...)
    __attribute__((format(printf, 3, 4)));
void ovl__error_set(ovl_error_info *err, int code, const char *text, const char *what_format, ...)
    __attribute__((format(printf, 4, 5)));

/* address.c */
void ovl__format_address(const struct sockaddr *address, char *out, size_t out_size);
int ovl__listener_open(ovl_engine *engine, ovl_listener *listener, const char *host, const char *port,
                       ovl_error_info *err);
/* Take over a socket that is already listening (ovl_listen_socket). */
int ovl__listener_adopt(ovl_engine *engine, ovl_listener *listener, ovl__socket fd, ovl_error_info *err);
void ovl__listener_close(ovl_listener *listener);

/* buffer.c */
int ovl__pool_init(struct ovl__pool *pool, struct ovl__worker *worker, uint32_t slot_size, uint32_t slot_count,
                   uint32_t slot_limit);
/* A growing pool doubles until it holds OVL__POOL_PER_CONN slots per connection (or reaches its limit). */
void ovl__pool_fit(struct ovl__pool *pool, uint32_t conns);
void ovl__pool_destroy(struct ovl__pool *pool);
ovl_buf *ovl__pool_take(struct ovl__pool *pool, uint32_t slot, size_t len);
void ovl__buf_free(ovl_buf *buf);
/* Give one free slot's pages back to the system (once: until it is used again). */
void ovl__pool_release_slot(struct ovl__pool *pool, uint32_t slot);
/* Give the memory of slots that stayed free since the last call back to the system (once a second at most). */
void ovl__pool_trim(struct ovl__pool *pool, uint64_t now_ms);

/* conn.c: called by backends when operations complete, and by the engine */
ovl_conn *ovl__conn_new(ovl_engine *engine, ovl__socket fd, const ovl_callbacks *callbacks, void *user);
void ovl__conn_attach(struct ovl__worker *worker, ovl_conn *conn);
void ovl__conn_free_unattached(ovl_conn *conn);
void ovl__conn_opened(ovl_conn *conn);
void ovl__conn_connected(ovl_conn *conn);
void ovl__conn_wait_for_slot(ovl_conn *conn);
void ovl__conn_received(ovl_conn *conn, ovl_buf *buf);
/* Whether a paused connection is still paused, once pool slots that came back since its pause (their resume waits
 * for ovl__worker_flush) are counted: for a backend that pauses lazily and sees input meanwhile. */
bool ovl__conn_pause_holds(ovl_conn *conn);
void ovl__conn_eof(ovl_conn *conn);
void ovl__conn_read_done(ovl_conn *conn);
void ovl__conn_sent(ovl_conn *conn, size_t bytes);
void ovl__conn_failed(ovl_conn *conn, int err);
void ovl__conn_close(ovl_conn *conn, ovl_close_reason reason, int err);
void ovl__conn_op_done(ovl_conn *conn);
void ovl__conn_connect_next(ovl_conn *conn, int err);
void ovl__conn_begin_drain(ovl_conn *conn);
/* A socket was accepted for this worker: refuse it (max_conns, stopping) or open a connection. */
ovl_conn *ovl__worker_accepted(struct ovl__worker *worker, struct ovl__listen_socket *socket, ovl__socket fd,
                                const char *peer);
/* A pool slot charged to buf->owner comes back (buffer.c): uncharge it. */
void ovl__conn_slot_freed(ovl_buf *buf);
/* Draining: a read made in drain mode took `len` bytes of what the kernel held at the stop. Backends call it
 * before ovl__conn_received for such reads only (not for receives armed before the stop). */
void ovl__conn_drain_read(ovl_conn *conn, size_t len);
/* Run between completion batches: start queued sends, free closed connections. */
void ovl__worker_flush(struct ovl__worker *worker);

/* timer.c: backends bound their wait by ovl__timers_wait_ns (-1 = no timer, else nanoseconds from NOW until the
 * earliest) and call ovl__timers_run after handling what the wait brought. */
int64_t ovl__timers_wait_ns(const struct ovl__worker *worker, uint64_t now);
void ovl__timers_run(struct ovl__worker *worker);
/* Arm (or move) a timer to fire at `at_ns` (ovl__clock_ns); timer->fire must be set. Never fails. */
void ovl__timer_start(struct ovl__worker *worker, struct ovl__timer *timer, uint64_t at_ns);
/* The same, `ms` milliseconds from now. */
void ovl__timer_start_ms(struct ovl__worker *worker, struct ovl__timer *timer, uint64_t ms);
/* Disarm a timer; nothing if it is not armed. */
void ovl__timer_stop(struct ovl__worker *worker, struct ovl__timer *timer);

/* worker.c */
/* The worker thread: set up, run the loop until the worker is done. */
void *ovl__worker_main(void *arg);
/* Hand a command (OVL__CMD_LISTEN, OVL__CMD_CONNECT) to a worker from any thread. */
int ovl__worker_post(struct ovl__worker *worker, int kind, struct ovl__listen_socket *socket, ovl_conn *conn);
void ovl__worker_run_commands(struct ovl__worker *worker);
/* Take the worker's whole command queue (any thread; the loop, or ovl_engine_destroy after the join). */
struct ovl__command *ovl__worker_take_commands(struct ovl__worker *worker);
/* The worker a new connection should go to: of those running and not stopping, the one with the fewest connections,
 * counting those handed to it and not yet taken; ties go round robin from `turn`. NULL when there is none (before
 * the start, or all stopping). Any thread. */
struct ovl__worker *ovl__worker_least_loaded(ovl_engine *engine, uint32_t turn);
/* A worker's load as ovl__worker_least_loaded weighs it: its connections and those handed to it. Any thread. */
uint32_t ovl__worker_load(struct ovl__worker *worker);
/* Hand a socket accepted by this thread to `worker`, which opens the connection (IOCP: it owns the socket's
 * completion port). `peer` (or NULL) is the address text the acceptor already has. */
int ovl__worker_adopt(struct ovl__worker *worker, struct ovl__listen_socket *socket, ovl__socket fd, const char *peer);
/* Give a pool slot back to its own worker's pool, from another thread (the pool is not thread-safe). */
int ovl__worker_release(struct ovl__worker *worker, ovl_buf *buf);
/* A stopping worker gives up on a connection whose operations never completed: on_close runs, the socket is closed,
 * the connection leaves the worker's list and the counts, and its memory is leaked (the system may still write to
 * it). Returns how many operations it abandoned. */
unsigned ovl__conn_abandon(ovl_conn *conn);
/* The loop may end: stop seen and no connection left (the backend adds its own outstanding work). */
bool ovl__worker_done(const struct ovl__worker *worker);
/* The periodic tick (every worker->tick_ms): close connections idle for idle_timeout_ms, or stalled for
 * stall_timeout_ms; give cold pool memory back. */
void ovl__worker_tick(struct ovl__worker *worker);

#endif
