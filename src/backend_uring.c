/*
 * backend_uring.c - the io_uring backend (Linux 5.19+): one ring per worker thread, multishot accept, multishot
 * receive into a provided buffer ring (the worker's pool), sends straight from the received buffers.
 *
 * Kernel features and their fallbacks, probed at run time:
 *   - IORING_SETUP_SINGLE_ISSUER | DEFER_TASKRUN (6.1): completions are processed only when this thread waits,
 *     in one batch; else COOP_TASKRUN (5.19); else neither.
 *   - provided buffer rings (5.19) are required: without them every idle connection would pin a buffer.
 *   - multishot receive (6.0) and multishot accept (5.19): a -EINVAL completion switches the worker to one-shot
 *     operations that are re-armed after each completion.
 *   - IORING_SETUP_TASKRUN_FLAG (5.19, with either task-run mode): the kernel raises IORING_SQ_TASKRUN in shared
 *     memory when completions wait to be run, so a worker can spin briefly on it instead of sleeping (below).
 *
 * Buffer reuse: the kernel takes provided buffers in ring order, so a ring holding the whole pool would cycle every
 * receive through all of it (64 MiB by default): each copy lands in cold cache and every slot ends up resident.
 * Free slots wait on the pool's stack instead, and the ring is topped up, before each wait, to a window of slots taken
 * from the top of the stack (the most recently used ones); slots deeper in the stack are never touched. The window
 * starts at 64 slots, or 1 MiB of them when that is fewer (16 of 64 KiB), and doubles, at most once per loop turn,
 * when receives found the ring empty or it came back more than three quarters empty - and only while the window,
 * not the supply of free slots, is what ran short. So it settles at the demand the worker has seen, and receives
 * cycle through a small, cache-warm set of slots.
 *
 * Adaptive spin: sleeping in io_uring_enter and being woken costs a lone ping-pong connection more than its round
 * trip on a VM (scheduler wake-up, IPI). When the previous wait was short - completions arrive back to back - the
 * worker submits, then spins up to spin_ns on IORING_SQ_TASKRUN before it sleeps. After a long wait it does not
 * spin, so an idle server sleeps at once and costs no CPU, and a busy one (its waits return at once) pays nothing.
 *
 * Timers: a wait passes no timeout of its own. One timeout request stays armed in the ring until the earliest
 * timer's deadline and is moved only when an earlier one comes (timeout_arm), so a sleep costs no kernel
 * timer of its own: a timeout per wait armed and cancelled an hrtimer every time the worker slept, 0.4 us of server
 * CPU per message at 60,000 msgs/s over 50 connections (4%), where each turn sleeps for about one message.
 *
 * Every submission is tagged in user_data: the low 3 bits say what it is, the rest points to its owner.
 */
#include "backend.h"

#include <errno.h>
#include <liburing.h>
#include "alloc.h"
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum tag {
    TAG_RECV = 0,
    TAG_SEND,
    TAG_CONNECT,
    TAG_ACCEPT,
    TAG_WATCH,                /* owner: a paused connection, watched for an error (a reset) while no receive is armed */
    TAG_WAKE,
    TAG_TIMEOUT,              /* owner: the worker for the standing timeout (timeout_arm), NULL for a failed update */
    TAG_IGNORE = 7            /* also the low bits of the all-ones user_data of liburing's own timeout requests */
};
#define TAG_MASK 7u

enum {
    RING_ENTRIES = 1024,
    CQ_ENTRIES = 16384,
    SPIN_MAX_CONNS = 1,       /* the spin is for a worker serving this many connections at most (spin_worthwhile) */
    BUFFER_GROUP = 0,
    SEND_BATCH = 16,          /* queued buffers gathered into one sendmsg */
    INITIAL_RING_WINDOW = 64, /* receive buffers in the ring at first, at most (see "Buffer reuse") ... */
    RING_FLOOR_BYTES = 1 << 20, /* ... and at most this many bytes of them: the floor the window shrinks back to
                                   stays resident after a burst filled it (16 buffers of 64 KiB) */
    ACCEPT_RETRY_MS = 100     /* pause after EMFILE/ENFILE so a full descriptor table does not spin the CPU */
};

struct uring_conn {
    struct msghdr msg;
    struct iovec iov[SEND_BATCH];
    bool recv_cancelled;      /* a cancel for the armed receive is on its way: one is enough */
    bool drain_read;          /* the armed receive is a drain-mode read (its bytes count against the stop's budget) */
    bool watching;            /* a TAG_WATCH poll is armed */
    bool connecting;          /* a TAG_CONNECT is in the kernel */
};

struct uring_accept {
    struct uring_accept *next;
    struct ovl__listen_socket *socket;
    struct ovl__timer retry;  /* arm again after EMFILE and the like */
    bool armed;
};

struct uring_worker {
    struct io_uring ring;
    struct ovl__worker *worker;
    struct ovl__pool *pool;   /* the worker's receive pool, whose free slots feed the ring */
    struct io_uring_buf_ring *buf_ring;
    unsigned buf_mask;
    unsigned buf_pending;     /* slots added to the ring but not yet published */
    uint32_t in_ring;         /* slots published or pending in the ring and not yet taken by the kernel */
    uint32_t ring_window;     /* how many slots publish_buffers keeps in the ring */
    uint32_t ring_floor;      /* the window's least: INITIAL_RING_WINDOW slots, or RING_FLOOR_BYTES of them */
    uint32_t lowest_in_ring;  /* the fewest slots left in the ring at a loop turn since window_checked_ms */
    uint64_t window_checked_ms;
    bool ring_starved;        /* a receive found the ring empty since the window was last adapted */
    bool buf_ring_registered;
    int wake_fd;
    uint64_t wake_value;
    struct uring_accept *accepts;
    unsigned accepts_armed;
    bool multishot_recv;
    bool multishot_accept;
    uint32_t accept_turn;     /* where ties for the least-loaded worker start (ovl__worker_least_loaded) */
    bool taskrun_flag;        /* IORING_SQ_TASKRUN is maintained: spinning can see completions coming */
    uint64_t spin_ns;         /* spin budget before sleeping; 0 = never spin */
    uint64_t last_wait_ns;    /* how long the previous wait for completions took */
    bool slept;               /* this turn's wait entered the kernel to wait (not a spin's catch, not a poll) */
    unsigned spin_skips;      /* waits left to sleep through without spinning, after spins that found nothing */
    unsigned spin_misses;     /* spins in a row that found nothing */
    struct __kernel_timespec timeout_ts; /* the standing timeout's wait, read by the kernel as it is submitted */
    uint64_t timeout_at_ns;   /* when the standing timeout fires (ovl__clock_ns); 0: none armed */
    bool timeout_standing;    /* the standing timeout works; else each wait passes its own (a kernel refused it) */
};

static inline uint64_t tagged(const void *owner, enum tag tag)
{
    return (uint64_t)(uintptr_t)owner | tag;
}

static inline struct uring_worker *state_of(struct ovl__worker *worker)
{
    return worker->backend_state;
}

static inline struct uring_conn *conn_state(ovl_conn *conn)
{
    return (struct uring_conn *)conn->backend_data;
}

static void publish_buffers(struct uring_worker *uw);

static struct io_uring_sqe *get_sqe(struct uring_worker *uw)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&uw->ring);
    for (unsigned attempt = 0; !sqe; attempt++) {
        /* Submission queue full: hand what we have to the kernel, which frees every slot (no SQPOLL here). Top the
         * buffer ring up first, or receives in this batch could find it empty while free slots wait on the stack.
         * A kernel that refuses for now (-EBUSY: completions overflowed the CQ ring; -EAGAIN, -ENOMEM, -EINTR)
         * gets them flushed into the room the handled completions left (poll_completions marks each one seen as it
         * goes) and is asked again, after a millisecond once in a while. Any other refusal means this ring cannot
         * work at all; the library does not abort, so it says so once a second and keeps trying: the operation
         * that needs this entry cannot be dropped without losing track of its connection. */
        publish_buffers(uw);
        int rc = io_uring_submit(&uw->ring);
        if (rc < 0) {
            io_uring_get_events(&uw->ring);
            bool transient = rc == -EBUSY || rc == -EAGAIN || rc == -ENOMEM || rc == -EINTR;
            if (attempt % 1000 == 999) {
                if (!transient || attempt % 1000000 == 999)
                    ovl__log(uw->worker->engine, OVL_LOG_ERROR, "io_uring_submit: %s (errno %d), %u tries%s",
                             ovl_strerror(rc), -rc, attempt + 1, transient ? "; retrying" : "; the worker is stuck");
                struct timespec pause = {0, 1000000};
                nanosleep(&pause, NULL);
            }
        }
        sqe = io_uring_get_sqe(&uw->ring);
    }
    return sqe;
}

/* ---- set-up ---- */

static int ring_init(struct uring_worker *uw, ovl_error_info *err)
{
    static const unsigned flag_sets[] = {
        IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
        IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
        0,
    };
    int rc = -EINVAL;
    for (size_t i = 0; i < sizeof flag_sets / sizeof flag_sets[0]; i++) {
        struct io_uring_params params;
        memset(&params, 0, sizeof params);
        params.flags = flag_sets[i] | IORING_SETUP_CQSIZE;
        params.cq_entries = CQ_ENTRIES;
        rc = io_uring_queue_init_params(RING_ENTRIES, &uw->ring, &params);
        if (rc == 0) {
            uw->taskrun_flag = (flag_sets[i] & IORING_SETUP_TASKRUN_FLAG) != 0;
            return 0;
        }
        if (rc != -EINVAL)
            break; /* EPERM, ENOSYS, ENOMEM: no flag set will do better */
    }
    ovl__error_set(err, rc, NULL, "io_uring_setup");
    return rc;
}

struct probe_result {
    int rc;
    const char *what;
};

static void *probe_main(void *arg)
{
    struct probe_result *result = arg;
    struct io_uring probe;
    result->what = "io_uring_setup";
    result->rc = io_uring_queue_init(2, &probe, 0);
    if (result->rc < 0)
        return NULL;
    /* Provided buffer rings (5.19) are required (buffers_init): a kernel with io_uring but without them must get
     * epoll, not an ovl_engine_start that fails. */
    void *ring = ovl__malloc_aligned(4096, 4096);
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof reg);
    reg.ring_addr = (unsigned long)ring;
    reg.ring_entries = 1;
    reg.bgid = BUFFER_GROUP;
    result->what = "io_uring_register_buf_ring (needs Linux 5.19)";
    result->rc = ring ? io_uring_register_buf_ring(&probe, &reg, 0) : -ENOMEM;
    io_uring_queue_exit(&probe);
    ovl__free_aligned(ring);
    return NULL;
}

/* Containers and hardened kernels forbid io_uring (seccomp, kernel.io_uring_disabled): find out before choosing it.
 * The probe ring lives on a thread of its own: when a ring is torn down the kernel queues task work with
 * TWA_SIGNAL on every thread that used it (io_ring_exit_work), which interrupts that thread's next blocking call,
 * and a socket call under SO_RCVTIMEO/SO_SNDTIMEO is then not restarted but fails with EINTR (seen on 6.18).
 * Probing on the caller's thread made ovl_engine_create break the embedding program's next connect() or recv(). */
static int available(ovl_error_info *err)
{
    struct probe_result result = {0, "io_uring_setup"};
    pthread_t thread;
    int created = pthread_create(&thread, NULL, probe_main, &result);
    if (created == 0)
        pthread_join(thread, NULL);
    else
        probe_main(&result); /* no thread to spare: probe here, at the price above */
    if (result.rc < 0) {
        ovl__error_set(err, result.rc, NULL, "%s", result.what);
        return result.rc;
    }
    return 0;
}

/* Slots published beyond the window (it shrank) stay in the ring until receives take them, last of all the
 * newest: give their pages back meanwhile. The kernel writing into one later faults in a fresh page. */
static void release_ring_surplus(struct uring_worker *uw)
{
    uint16_t newest = (uint16_t)(IO_URING_READ_ONCE(uw->buf_ring->tail) - 1);
    for (uint32_t k = 0; uw->ring_window + k < uw->in_ring; k++)
        ovl__pool_release_slot(uw->pool, uw->buf_ring->bufs[(uint16_t)(newest - k) & uw->buf_mask].bid);
}

/* Once per loop turn, before the top-up: double the window if the ring ran dry or nearly so, and the stack holds
 * more free slots than the window lets through (when the application holds the slots, a wider window cannot help).
 * A window that a whole second never drew below three quarters full is twice what the load needs: halve it, so
 * that after a burst the slots it took sink in the free stack and ovl__pool_trim gives their memory back. */
static void adapt_ring_window(struct ovl__worker *worker, struct uring_worker *uw)
{
    uint32_t limit = uw->pool->slot_count;
    bool ran_short = uw->ring_starved || uw->in_ring < uw->ring_window / 4;
    uw->ring_starved = false;
    if (ran_short && uw->ring_window < limit && uw->pool->free_count > uw->ring_window - uw->in_ring)
        uw->ring_window = uw->ring_window < limit / 2 ? uw->ring_window * 2 : limit;
    if (uw->in_ring < uw->lowest_in_ring)
        uw->lowest_in_ring = uw->in_ring;
    if (worker->now_ms - uw->window_checked_ms >= 1000) {
        if (uw->lowest_in_ring > uw->ring_window / 4 * 3 && uw->ring_window / 2 >= uw->ring_floor)
            uw->ring_window /= 2;
        uw->window_checked_ms = worker->now_ms;
        uw->lowest_in_ring = uw->ring_window;
        release_ring_surplus(uw);
    }
}

/* Tops the ring up to its window from the top of the free stack, then publishes. */
static void publish_buffers(struct uring_worker *uw)
{
    struct ovl__pool *pool = uw->pool;
    while (pool && uw->in_ring < uw->ring_window && pool->free_count > 0) {
        uint32_t slot = ovl__pool_pop(pool);
        io_uring_buf_ring_add(uw->buf_ring, pool->slots[slot]->home, pool->slot_size, (unsigned short)slot,
                              uw->buf_mask, (int)uw->buf_pending++);
        uw->in_ring++;
    }
    if (uw->buf_pending) {
        io_uring_buf_ring_advance(uw->buf_ring, (int)uw->buf_pending);
        uw->buf_pending = 0;
    }
}

static int buffers_init(struct ovl__worker *worker, struct uring_worker *uw, ovl_error_info *err)
{
    unsigned entries = worker->pool.slot_limit; /* the window may grow with the pool */
    uw->buf_ring = ovl__malloc_aligned(entries * sizeof(struct io_uring_buf), 4096);
    if (!uw->buf_ring) {
        ovl__error_set(err, -ENOMEM, NULL, "allocate a buffer ring of %u entries", entries);
        return -ENOMEM;
    }
    io_uring_buf_ring_init(uw->buf_ring);
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof reg);
    reg.ring_addr = (unsigned long)uw->buf_ring;
    reg.ring_entries = entries;
    reg.bgid = BUFFER_GROUP;
    int rc = io_uring_register_buf_ring(&uw->ring, &reg, 0);
    if (rc < 0) {
        ovl__error_set(err, rc, NULL, "io_uring_register_buf_ring (needs Linux 5.19)");
        return rc;
    }
    uw->buf_ring_registered = true;
    uw->buf_mask = io_uring_buf_ring_mask(entries);
    uw->pool = &worker->pool;
    uint32_t slots = worker->pool.slot_count; /* the ring holds at most the pool's slots, whatever its entries */
    uint32_t floor = RING_FLOOR_BYTES / worker->pool.slot_size;
    floor = floor < 8 ? 8 : floor > INITIAL_RING_WINDOW ? INITIAL_RING_WINDOW : floor;
    uw->ring_floor = slots < floor ? slots : floor;
    uw->ring_window = uw->ring_floor;
    publish_buffers(uw);
    return 0;
}

static void arm_wake(struct uring_worker *uw, struct ovl__worker *worker)
{
    struct io_uring_sqe *sqe = get_sqe(uw);
    io_uring_prep_read(sqe, uw->wake_fd, &uw->wake_value, sizeof uw->wake_value, 0);
    io_uring_sqe_set_data64(sqe, tagged(worker, TAG_WAKE));
}

static void worker_destroy(struct ovl__worker *worker);

static int worker_init(struct ovl__worker *worker, ovl_error_info *err)
{
    struct uring_worker *uw = ovl__zalloc(sizeof *uw);
    if (!uw) {
        ovl__error_set(err, -ENOMEM, NULL, "allocate the io_uring worker state");
        return -ENOMEM;
    }
    uw->wake_fd = -1;
    uw->worker = worker;
    uw->multishot_recv = true;
    uw->multishot_accept = true;
    uw->timeout_standing = true;
    worker->backend_state = uw;
    int rc = ring_init(uw, err);
    if (rc < 0) {
        ovl__free(uw);
        worker->backend_state = NULL;
        return rc;
    }
    rc = buffers_init(worker, uw, err);
    if (rc == 0) {
        uw->wake_fd = eventfd(0, EFD_CLOEXEC);
        if (uw->wake_fd < 0) {
            rc = -errno;
            ovl__error_set(err, rc, NULL, "eventfd");
        }
    }
    if (rc < 0) {
        worker_destroy(worker);
        return rc;
    }
    arm_wake(uw, worker);
    int spin_us = worker->engine->config.busy_poll_us;
    uw->spin_ns = uw->taskrun_flag && spin_us > 0 ? (uint64_t)spin_us * 1000u : 0;
    return 0;
}

static void worker_destroy(struct ovl__worker *worker)
{
    struct uring_worker *uw = state_of(worker);
    if (!uw)
        return;
    if (uw->buf_ring_registered)
        io_uring_unregister_buf_ring(&uw->ring, BUFFER_GROUP);
    io_uring_queue_exit(&uw->ring);
    if (uw->wake_fd >= 0)
        close(uw->wake_fd);
    while (uw->accepts) {
        struct uring_accept *accept = uw->accepts;
        uw->accepts = accept->next;
        ovl__free(accept);
    }
    ovl__free_aligned(uw->buf_ring);
    ovl__free(uw);
    worker->backend_state = NULL;
}

static void wake(struct ovl__worker *worker)
{
    struct uring_worker *uw = state_of(worker);
    uint64_t one = 1;
    if (uw && write(uw->wake_fd, &one, sizeof one) < 0) {
        /* EAGAIN: the counter is already non-zero, so the worker wakes anyway. */
    }
}

/* ---- accepting ---- */

static void arm_accept(struct uring_worker *uw, struct uring_accept *accept)
{
    struct io_uring_sqe *sqe = get_sqe(uw);
    if (uw->multishot_accept)
        io_uring_prep_multishot_accept(sqe, accept->socket->fd, NULL, NULL, SOCK_CLOEXEC);
    else
        io_uring_prep_accept(sqe, accept->socket->fd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, tagged(accept, TAG_ACCEPT));
    accept->armed = true;
    uw->accepts_armed++;
}

/* A multishot accept keeps its place at the head of the listening socket's exclusive wait queue, so whichever
 * worker armed one first would get every connection. Worker 0 alone accepts, and hands each connection to the
 * least-loaded worker through its command queue (one eventfd wake-up each); a lone worker keeps them all. */
/* The pause after EMFILE is over. */
static void accept_retry_fired(struct ovl__worker *worker, struct ovl__timer *timer)
{
    struct uring_accept *accept = ovl__container_of(timer, struct uring_accept, retry);
    if (!worker->stopping && !accept->armed)
        arm_accept(state_of(worker), accept);
}

static void accept_start(struct ovl__worker *worker, struct ovl__listen_socket *socket)
{
    struct uring_worker *uw = state_of(worker);
    if (worker->index != 0)
        return;
    struct uring_accept *accept = ovl__zalloc(sizeof *accept);
    if (!accept) {
        ovl__count(&worker->counters.errors, 1);
        return;
    }
    accept->socket = socket;
    accept->retry.fire = accept_retry_fired;
    accept->next = uw->accepts;
    uw->accepts = accept;
    arm_accept(uw, accept);
}

static void accept_stop(struct ovl__worker *worker)
{
    struct uring_worker *uw = state_of(worker);
    for (struct uring_accept *accept = uw->accepts; accept; accept = accept->next) {
        ovl__timer_stop(worker, &accept->retry);
        if (!accept->armed)
            continue;
        struct io_uring_sqe *sqe = get_sqe(uw);
        io_uring_prep_cancel64(sqe, tagged(accept, TAG_ACCEPT), 0);
        io_uring_sqe_set_data64(sqe, tagged(NULL, TAG_IGNORE));
    }
}

static void on_accept(struct ovl__worker *worker, struct uring_accept *accept, const struct io_uring_cqe *cqe)
{
    struct uring_worker *uw = state_of(worker);
    bool more = cqe->flags & IORING_CQE_F_MORE;
    if (!more) {
        accept->armed = false;
        uw->accepts_armed--;
    }
    int res = cqe->res;
    if (res >= 0) {
        ovl_engine *engine = worker->engine;
        struct ovl__worker *target = worker->stopping ? NULL : ovl__worker_least_loaded(engine, uw->accept_turn++);
        if (!target || target == worker)
            ovl__worker_accepted(worker, accept->socket, res, NULL);
        else if (ovl__worker_adopt(target, accept->socket, res, NULL) < 0) {
            close(res);
            ovl__count(&worker->counters.errors, 1);
        }
    } else if (res == -EINVAL && uw->multishot_accept) {
        uw->multishot_accept = false; /* kernel without multishot accept: one accept per submission */
    } else if (res != -ECANCELED) {
        /* A peer that reset before we accepted: its reset, not our error. */
        ovl__count(ovl__is_reset_error(res) ? &worker->counters.resets : &worker->counters.errors, 1);
        if (!more && !worker->stopping &&
            (res == -EMFILE || res == -ENFILE || res == -ENOBUFS || res == -ENOMEM)) {
            /* Out of descriptors or memory: serve the connections we have and try again shortly. */
            ovl__timer_start_ms(worker, &accept->retry, ACCEPT_RETRY_MS);
            return;
        }
    }
    if (!more && !worker->stopping && res != -ECANCELED)
        arm_accept(uw, accept);
}

/* ---- receiving ---- */

static void recv_start(ovl_conn *conn)
{
    struct uring_worker *uw = state_of(conn->worker);
    struct io_uring_sqe *sqe = get_sqe(uw);
    bool drain = (conn->flags & OVL__C_DRAINING) && !(conn->flags & OVL__C_LINGER);
    conn_state(conn)->drain_read = drain;
    if (drain) /* only what is already buffered */
        io_uring_prep_recv(sqe, conn->fd, NULL, (unsigned)ovl__drain_read_len(conn, uw->pool->slot_size),
                           MSG_DONTWAIT);
    else if (uw->multishot_recv && !(conn->flags & OVL__C_RECV_ONE))
        io_uring_prep_recv_multishot(sqe, conn->fd, NULL, 0, 0);
    else /* a length below the buffer's caps the bytes the kernel puts in it */
        io_uring_prep_recv(sqe, conn->fd, NULL, ovl__recv_len(conn), 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BUFFER_GROUP;
    io_uring_sqe_set_data64(sqe, tagged(conn, TAG_RECV));
    conn_state(conn)->recv_cancelled = false;
    conn->flags |= OVL__C_RECV_ARMED;
    conn->inflight++;
}

/* Cancel the connection's operation of kind TAG by its user_data; the cancel's own completion is ignored. */
static void cancel_operation(ovl_conn *conn, enum tag tag)
{
    struct io_uring_sqe *sqe = get_sqe(state_of(conn->worker));
    io_uring_prep_cancel64(sqe, tagged(conn, tag), 0);
    io_uring_sqe_set_data64(sqe, tagged(NULL, TAG_IGNORE));
}

/* End the armed receive: it completes with -ECANCELED (after any data already in flight) and is not re-armed
 * while paused. */
static void recv_cancel(ovl_conn *conn)
{
    struct uring_conn *uc = conn_state(conn);
    if ((conn->flags & OVL__C_RECV_ARMED) && !uc->recv_cancelled) {
        uc->recv_cancelled = true;
        cancel_operation(conn, TAG_RECV);
    }
}

/* Paused, nothing reads the socket: a peer that resets would go unnoticed until the pause ends (a send in flight
 * sees it; an empty queue does not). A multishot poll with an empty mask watches: the kernel adds errors, hang-ups
 * and the peer's FIN, and a FIN does not end it. It stays until the connection closes. */
static void watch_start(ovl_conn *conn)
{
    struct uring_conn *uc = conn_state(conn);
    if (uc->watching || (conn->flags & OVL__C_CLOSING))
        return;
    uc->watching = true;
    struct io_uring_sqe *sqe = get_sqe(state_of(conn->worker));
    io_uring_prep_poll_multishot(sqe, conn->fd, 0);
    io_uring_sqe_set_data64(sqe, tagged(conn, TAG_WATCH));
    conn->inflight++;
}

/* The engine's own pauses (the pool's share, max_pending) are lazy for a connection that keeps up (a multishot
 * receive armed, not backlogged): its receive stays armed, and is cancelled only when it brings more input while
 * still paused. Most such pauses end before that - a ping-pong peer sends nothing until its echo, whose completion
 * ends the pause - and cost no cancel, re-arm or watch (1000 ping-pong connections on a worker's 1024 buffers paused
 * under the pool's reserve rule for one echo in fourteen, each a cancel, a re-arm and a poll). The armed receive sees
 * a reset itself, so no watch is needed while it stays. The application's pause, and a backlogged connection
 * (OVL__C_RECV_ONE: it may be a peer that sends and never reads), stop at once, and so does a draining one: the
 * drain reads in drain mode (what the kernel held at the stop) once the pause ends, which an armed receive would
 * keep from starting (conn.c's begin_drain calls this again for a connection paused lazily before the stop). */
static void recv_pause(ovl_conn *conn)
{
    bool lazy = (conn->flags & OVL__C_RECV_ARMED) &&
                !(conn->flags & (OVL__C_PAUSE_USER | OVL__C_RECV_ONE | OVL__C_DRAINING)) &&
                state_of(conn->worker)->multishot_recv;
    if (lazy)
        return;
    recv_cancel(conn);
    watch_start(conn);
}

static void on_watch(ovl_conn *conn, const struct io_uring_cqe *cqe)
{
    bool more = cqe->flags & IORING_CQE_F_MORE;
    if (!more)
        conn_state(conn)->watching = false; /* before a failure closes it: nothing left to cancel */
    if (cqe->res > 0 && !(conn->flags & OVL__C_CLOSING)) {
        int error = 0;
        socklen_t length = sizeof error;
        if (getsockopt(conn->fd, SOL_SOCKET, SO_ERROR, &error, &length) == 0 && error)
            ovl__conn_failed(conn, -error);
        /* No error (the peer's FIN, or both sides shut): the receive path sees it once the pause ends. */
    }
    if (!more)
        ovl__conn_op_done(conn);
}

static void recv_drain(ovl_conn *conn)
{
    if (conn->flags & OVL__C_RECV_ARMED) {
        /* The continuous receive ends with -ECANCELED (or its last data); on_recv then reads the rest. */
        recv_cancel(conn);
    } else if (!(conn->flags & OVL__C_RECV_WAIT)) {
        recv_start(conn);
    }
}

static void on_recv(struct ovl__worker *worker, ovl_conn *conn, const struct io_uring_cqe *cqe)
{
    struct uring_worker *uw = state_of(worker);
    bool more = cqe->flags & IORING_CQE_F_MORE;
    int res = cqe->res;
    if (!more)
        conn->flags &= ~OVL__C_RECV_ARMED;
    /* A completion that carries a buffer hands us that slot exactly once, whatever its result: deliver it or
     * give it back, never both. One without the flag owns no slot, so there is nothing to give back. */
    ovl_buf *buf = NULL;
    if (cqe->flags & IORING_CQE_F_BUFFER) {
        if (uw->in_ring > 0) /* a slot reported that we never published (refused below) must not wrap the count */
            uw->in_ring--;
        buf = ovl__pool_take(&worker->pool, cqe->flags >> IORING_CQE_BUFFER_SHIFT, res > 0 ? (size_t)res : 0);
    }
    bool rearm = false;
    if (res > 0 && buf) {
        /* Paused lazily before this input came (recv_pause), and still paused: the peer sends on, end the multishot.
         * A pause this input starts stays lazy. */
        bool paused_before = (conn->flags & OVL__C_PAUSED) && ovl__conn_pause_holds(conn);
        if (conn_state(conn)->drain_read)
            ovl__conn_drain_read(conn, (size_t)res);
        ovl__conn_received(conn, buf);
        rearm = !more;
        if (rearm && ovl__drain_read_all(conn)) {
            rearm = false; /* everything the kernel held at the stop is read: the rest came after it */
            ovl__conn_read_done(conn);
        }
        /* Backlogged: end the multishot (-ECANCELED re-arms a single receive). */
        bool still_paused = paused_before && (conn->flags & OVL__C_PAUSED);
        if (more && ((conn->flags & OVL__C_RECV_ONE) || still_paused) && !(conn->flags & OVL__C_CLOSING))
            recv_cancel(conn);
    } else {
        if (buf)
            ovl__buf_free(buf);
        if (res > 0) {
            ovl__conn_failed(conn, -EFAULT); /* data without a slot: the kernel broke its contract */
        } else if (res == 0) {
            if (!more)
                ovl__conn_eof(conn);
        } else if (res == -ENOBUFS) {
            /* Ring empty: the bytes stay in the socket; receive again once a slot comes back. The loop widens the
             * window if free slots were waiting on the stack. */
            uw->ring_starved = true;
            if (!(conn->flags & OVL__C_CLOSING) && !more)
                ovl__conn_wait_for_slot(conn);
        } else if (res == -ECANCELED) {
            /* Cancelled by a close (CLOSING stops the re-arm below), by recv_drain (re-read in drain mode), or by
             * recv_pause. A pause can end before this completion arrives: resume_if_drained then saw RECV_ARMED
             * still set and left the re-arm to us, so unless still paused, receive again or the connection stalls
             * for good. */
            rearm = true;
        } else if (res == -EAGAIN || res == -EWOULDBLOCK) {
            /* A drain read prepared before LINGER began (resume_if_drained after READ_DONE) must not end
             * receiving: lingering reads on until the peer closes. */
            if (conn->flags & OVL__C_LINGER)
                rearm = true;
            else
                ovl__conn_read_done(conn);
        } else if (res == -EINVAL && uw->multishot_recv) {
            uw->multishot_recv = false; /* kernel before 6.0: one receive per submission */
            rearm = true;
        } else {
            ovl__conn_failed(conn, res);
        }
    }
    if (rearm && !(conn->flags & (OVL__C_CLOSING | OVL__C_EOF_IN | OVL__C_RECV_ARMED | OVL__C_RECV_WAIT |
                                  OVL__C_PAUSED)))
        recv_start(conn);
    else if (!more && (conn->flags & OVL__C_PAUSED) && !(conn->flags & (OVL__C_RECV_ARMED | OVL__C_EOF_IN)))
        watch_start(conn); /* a lazy pause's receive ended: watch from now on */
    if (!more)
        ovl__conn_op_done(conn);
}

/* ---- sending ---- */

static void send_start(ovl_conn *conn)
{
    struct uring_worker *uw = state_of(conn->worker);
    struct io_uring_sqe *sqe = get_sqe(uw);
    ovl_buf *head = conn->queue_head;
    if (!head->next) {
        /* sqe->len is 32 bits: send a huge buffer in pieces (a short completion continues it). */
        size_t len = head->len > (1u << 30) ? (1u << 30) : head->len;
        io_uring_prep_send(sqe, conn->fd, head->data, len, MSG_NOSIGNAL);
        conn->sending_bytes = len;
    } else {
        struct uring_conn *uc = conn_state(conn);
        size_t count = 0, bytes = 0;
        for (ovl_buf *buf = head; buf && count < SEND_BATCH; buf = buf->next, count++) {
            uc->iov[count].iov_base = buf->data;
            uc->iov[count].iov_len = buf->len;
            bytes += buf->len;
        }
        memset(&uc->msg, 0, sizeof uc->msg);
        uc->msg.msg_iov = uc->iov;
        uc->msg.msg_iovlen = count;
        io_uring_prep_sendmsg(sqe, conn->fd, &uc->msg, MSG_NOSIGNAL);
        conn->sending_bytes = bytes;
    }
    io_uring_sqe_set_data64(sqe, tagged(conn, TAG_SEND));
    conn->inflight++;
}

static void on_send(ovl_conn *conn, const struct io_uring_cqe *cqe)
{
    int res = cqe->res;
    if (res > 0 || (res == 0 && conn->sending_bytes == 0)) {
        /* A short count is legal: ovl__conn_sent keeps the rest queued and sends it next. */
        ovl__conn_sent(conn, (size_t)res);
    } else {
        conn->flags &= ~OVL__C_SENDING;
        if (res != -ECANCELED || !(conn->flags & OVL__C_CLOSING))
            ovl__conn_failed(conn, res == 0 ? -EIO : res);
    }
    ovl__conn_op_done(conn);
}

/* ---- connecting ---- */

static int connect_start(ovl_conn *conn, const struct addrinfo *address)
{
    int fd = socket(address->ai_family, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
    if (fd < 0)
        return -errno;
    conn->fd = fd;
    struct io_uring_sqe *sqe = get_sqe(state_of(conn->worker));
    io_uring_prep_connect(sqe, fd, address->ai_addr, address->ai_addrlen);
    io_uring_sqe_set_data64(sqe, tagged(conn, TAG_CONNECT));
    conn_state(conn)->connecting = true;
    conn->inflight++;
    return 0;
}

static void on_connect(ovl_conn *conn, const struct io_uring_cqe *cqe)
{
    conn_state(conn)->connecting = false;
    if (cqe->res == 0 && !(conn->flags & OVL__C_CLOSING)) {
        ovl__conn_connected(conn);
    } else if (cqe->res < 0) {
        close(conn->fd);
        conn->fd = -1;
        ovl__conn_connect_next(conn, cqe->res);
    }
    ovl__conn_op_done(conn);
}

/* Everything on the connection's descriptor, whatever it is: for the stop's hard deadline (stop_force), where the
 * descriptor is open and the flags may not tell what the kernel still holds. */
static void cancel_all_on_descriptor(ovl_conn *conn)
{
    if (conn->fd < 0)
        return;
    struct io_uring_sqe *sqe = get_sqe(state_of(conn->worker));
    io_uring_prep_cancel_fd(sqe, conn->fd, IORING_ASYNC_CANCEL_ALL);
    io_uring_sqe_set_data64(sqe, tagged(NULL, TAG_IGNORE));
}

/* A close: cancel the operations the connection still has in the kernel, each by its own user_data. Not by
 * descriptor: a close from the handler of a completion that ends the last operation (a peer's FIN ends the
 * receive) left nothing to cancel, and the cancel, submitted after the connection was freed and its descriptor
 * closed, failed with -EBADF, once per connection that ended so. */
static void cancel(ovl_conn *conn)
{
    recv_cancel(conn);
    if (conn->flags & OVL__C_SENDING)
        cancel_operation(conn, TAG_SEND);
    if (conn_state(conn)->watching)
        cancel_operation(conn, TAG_WATCH);
    if (conn_state(conn)->connecting)
        cancel_operation(conn, TAG_CONNECT);
}

/* ---- the standing timeout ---- */

/* Bounds the coming waits WAIT_NS after worker->poll_ns: arms the standing timeout, or moves it earlier. One armed
 * at or before that deadline stays: it fires early at worst, once, and the loop arms the next.
 *
 * The kernel gets the wait relative to its submission (a few microseconds after poll_ns, so it fires that much late)
 * rather than as an absolute IORING_TIMEOUT_ABS deadline: in a time namespace io_uring reads an absolute one in the
 * host's CLOCK_MONOTONIC, not the namespace's that ovl__clock_ns reads, so every deadline could lie in the past (the
 * timeout fires at once, again and again: a spinning worker) or days ahead (timers that never fire). A successful
 * move posts no completion (IOSQE_CQE_SKIP_SUCCESS), which would otherwise end the wait it was submitted with. */
static void timeout_arm(struct ovl__worker *worker, struct uring_worker *uw, uint64_t wait_ns)
{
    uint64_t deadline = worker->poll_ns + wait_ns;
    if (uw->timeout_at_ns && uw->timeout_at_ns <= deadline)
        return;
    uw->timeout_ts.tv_sec = (long long)(wait_ns / 1000000000u);
    uw->timeout_ts.tv_nsec = (long long)(wait_ns % 1000000000u);
    struct io_uring_sqe *sqe = get_sqe(uw);
    if (uw->timeout_at_ns) {
        io_uring_prep_timeout_update(sqe, &uw->timeout_ts, tagged(worker, TAG_TIMEOUT), 0);
        io_uring_sqe_set_data64(sqe, tagged(NULL, TAG_TIMEOUT));
        sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    } else {
        io_uring_prep_timeout(sqe, &uw->timeout_ts, 0, 0);
        io_uring_sqe_set_data64(sqe, tagged(worker, TAG_TIMEOUT));
    }
    uw->timeout_at_ns = deadline;
}

/* The standing timeout fired (-ETIME) or was cancelled: none is armed now. Its update failed (a successful one
 * posts nothing): -ENOENT and -EALREADY say the timeout fired first (its own completion follows or came). Any other
 * failure, or a timeout that fired before the deadline it was armed for (a clock that is not ours), means this
 * kernel cannot keep one: each wait passes its own timeout from now on, so the loop cannot spin on it. */
static void on_timeout(struct ovl__worker *worker, struct uring_worker *uw, bool update, int res)
{
    if (!update) {
        bool early = res == -ETIME && worker->now_ns < uw->timeout_at_ns;
        uw->timeout_at_ns = 0;
        if ((res != -ETIME && res != -ECANCELED && res != 0) || early)
            uw->timeout_standing = false;
    } else if (res < 0 && res != -ENOENT && res != -EALREADY) {
        uw->timeout_standing = false;
    }
}

/* ---- the loop ---- */

static void dispatch(struct ovl__worker *worker, const struct io_uring_cqe *cqe)
{
    struct uring_worker *uw = state_of(worker);
    enum tag tag = (enum tag)(cqe->user_data & TAG_MASK);
    void *owner = (void *)(uintptr_t)(cqe->user_data & ~(uint64_t)TAG_MASK);
    if (cqe->res == -ECANCELED && tag != TAG_IGNORE && worker->stopping &&
        (worker->engine->faults & OVL__FAULT_SWALLOW_CANCELS))
        return; /* test fault (internal.h): a cancellation that never completes */
    switch (tag) {
    case TAG_RECV:
        on_recv(worker, owner, cqe);
        break;
    case TAG_SEND:
        on_send(owner, cqe);
        break;
    case TAG_CONNECT:
        on_connect(owner, cqe);
        break;
    case TAG_ACCEPT:
        on_accept(worker, owner, cqe);
        break;
    case TAG_WATCH:
        on_watch(owner, cqe);
        break;
    case TAG_WAKE:
        arm_wake(uw, worker);
        break;
    case TAG_TIMEOUT:
        on_timeout(worker, uw, owner == NULL, cqe->res);
        break;
    case TAG_IGNORE:
        break;
    }
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Something new since `ready` completions were in the ring (0: any completion at all): posted, or as task work
 * the next kernel entry runs. */
static inline bool completions_after(struct uring_worker *uw, unsigned ready)
{
    return io_uring_cq_ready(&uw->ring) > ready || (IO_URING_READ_ONCE(*uw->ring.sq.kflags) & IORING_SQ_TASKRUN);
}

/* Spin only while it pays: the previous wait was short, and recent spins found something. A spin that finds
 * nothing (the peer needs this very CPU to answer, as on a shared 2-core machine) makes the next ones wait
 * exponentially longer before trying again, so an overloaded machine is not made worse. */
static bool spin_worthwhile(struct ovl__worker *worker, struct uring_worker *uw)
{
    if (!uw->spin_ns || uw->last_wait_ns >= uw->spin_ns || worker->stopping)
        return false;
    /* Several peers: their input arrives spread out, and a spin enters the kernel for each completion it sees (one
     * entry per message under such a trickle, even when each turn finds only one). A wait takes whatever has come
     * by the time it is woken, several completions for one entry under load; the spin is for the lone peer whose
     * next message comes back within it. */
    if (worker->conn_count > SPIN_MAX_CONNS)
        return false;
    if (uw->spin_skips > 0) {
        uw->spin_skips--;
        return false;
    }
    return true;
}

/* Submit what is queued and wait for completions or the earliest timer (timer_ns); spin first when that is
 * worthwhile.
 *
 * The wait asks for one completion. A send to a socket with room completes within the submission, so a turn that
 * queued sends often returns at once with nothing but their completions, and takes the receives that came
 * meanwhile on the next entry. Waiting for one completion beyond the sends (2026-11 to 2026-12-02) saved those
 * entries but slept through them instead: under 1,000 blocking-thread clients on two CPUs each sleep handed the
 * CPU to a client thread, and the worker, woken, waited for a slice behind them; p99 26.7 ms against 17.4 without
 * it (bench/uring_echo 16.4), p99.9 79 against 22 ms, while enters per message at 50 connections stayed at or below
 * uring_echo's (docs/BENCHMARKS.md, "Replies in order, and a wait that does not sleep through them"). The spin,
 * for a lone peer, looks for something beyond the sends' completions, and a spin that finds nothing hands them over
 * without entering again. */
static int wait_for_completions(struct ovl__worker *worker, struct uring_worker *uw, int64_t timer_ns)
{
    if (timer_ns == 0)
        return io_uring_submit_and_get_events(&uw->ring);
    uint64_t start = worker->poll_ns;
    uint64_t spin_ns = timer_ns > 0 && (uint64_t)timer_ns < uw->spin_ns ? (uint64_t)timer_ns : uw->spin_ns;
    int rc;
    if (!completions_after(uw, 0) && spin_worthwhile(worker, uw)) {
        if (io_uring_sq_ready(&uw->ring) > 0) {
            rc = io_uring_submit(&uw->ring);
            if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
                return rc;
        }
        unsigned ready = io_uring_cq_ready(&uw->ring); /* the sends that completed within the submission */
        for (unsigned turn = 0; !completions_after(uw, ready); turn++) {
            cpu_relax();
            if ((turn & 15) == 15 && ovl__clock_ns() - start >= spin_ns)
                break;
        }
        if (completions_after(uw, ready)) {
            uw->spin_misses = 0;
            uw->last_wait_ns = ovl__clock_ns() - start;
            if (IO_URING_READ_ONCE(*uw->ring.sq.kflags) & IORING_SQ_TASKRUN)
                return io_uring_get_events(&uw->ring);
            return 0; /* posted to the ring already: no entry needed */
        }
        if (uw->spin_misses < 10)
            uw->spin_misses++;
        uw->spin_skips = 4u << uw->spin_misses;
        if (ready > 0)
            return 0; /* hand over the sends' completions; the next turn sleeps */
    }
    int64_t wait_ns = timer_ns;
    if (wait_ns > 0 && uw->timeout_standing) {
        timeout_arm(worker, uw, (uint64_t)wait_ns);
        rc = io_uring_submit_and_wait(&uw->ring, 1);
    } else if (wait_ns > 0) {
        /* One io_uring_enter with IORING_ENTER_EXT_ARG (5.11); liburing queues a timeout request on older kernels,
         * whose completion carries a user_data of all ones, tagged TAG_IGNORE. */
        struct __kernel_timespec wait = {.tv_sec = wait_ns / 1000000000, .tv_nsec = wait_ns % 1000000000};
        struct io_uring_cqe *cqe;
        rc = io_uring_submit_and_wait_timeout(&uw->ring, &cqe, 1, &wait, NULL);
    } else {
        rc = io_uring_submit_and_wait(&uw->ring, 1);
    }
    uw->slept = true; /* poll_completions measures the wait (last_wait_ns) as it stamps the clock */
    return rc;
}

/* The stop's hard deadline: what is still pending was cancelled and has not completed. Shut every connection's
 * socket down (a receive or send still in the kernel then completes: the peer is gone for it) and cancel what is on
 * it once more; cancel the accepts again. The descriptors are closed when the connections are freed (or
 * abandoned): a cancel by descriptor must find them open. */
static void stop_force(struct ovl__worker *worker)
{
    struct uring_worker *uw = state_of(worker);
    for (ovl_conn *conn = worker->conns; conn; conn = conn->next) {
        if (conn->fd < 0 || conn->inflight == 0)
            continue;
        shutdown(conn->fd, SHUT_RDWR);
        cancel_all_on_descriptor(conn);
    }
    for (struct uring_accept *accept = uw->accepts; accept; accept = accept->next) {
        if (!accept->armed)
            continue;
        struct io_uring_sqe *sqe = get_sqe(uw);
        io_uring_prep_cancel64(sqe, tagged(accept, TAG_ACCEPT), 0);
        io_uring_sqe_set_data64(sqe, tagged(NULL, TAG_IGNORE));
    }
}

/* Accepts whose cancellation never completed. The kernel writes nothing into an accept's memory (no address is
 * asked for; user_data only comes back), and no completion is read after this: worker_destroy may free them. */
static unsigned stop_abandon(struct ovl__worker *worker)
{
    struct uring_worker *uw = state_of(worker);
    unsigned pending = uw->accepts_armed;
    uw->accepts_armed = 0;
    return pending;
}

/* Accepts being cancelled still hold their listening socket. */
static bool accepts_pending(struct ovl__worker *worker)
{
    return state_of(worker)->accepts_armed > 0;
}

static void poll_completions(struct ovl__worker *worker, int64_t timeout_ns)
{
    struct uring_worker *uw = state_of(worker);
    adapt_ring_window(worker, uw);
    publish_buffers(uw);
    uw->slept = false;
    int rc = wait_for_completions(worker, uw, timeout_ns);
    ovl__worker_clock(worker);
    if (uw->slept && uw->spin_ns)
        uw->last_wait_ns = worker->now_ns - worker->poll_ns;
    if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY && rc != -ETIME) {
        ovl__log(worker->engine, OVL_LOG_ERROR, "io_uring_enter: %s (errno %d)", ovl_strerror(rc), -rc);
        ovl__worker_drain_expired(worker);
    }
    /* Each completion is marked seen before it is handled: its CQ slot is free again if handling it has to wait
     * for room in the submission queue (get_sqe). The copy keeps the entry from being overwritten meanwhile. */
    /* Not io_uring_peek_cqe: on an empty ring with task work pending it enters the kernel, a syscall per turn.
     * At most a ring's worth per turn, as when the head moved after the batch: completions that keep coming
     * (COOP_TASKRUN runs task work on any entry, get_sqe submits) must not starve timers and commands. */
    for (unsigned handled = 0; handled < CQ_ENTRIES && io_uring_cq_ready(&uw->ring); handled++) {
        unsigned head;
        struct io_uring_cqe *cqe, entry;
        io_uring_for_each_cqe(&uw->ring, head, cqe)
        {
            entry = *cqe;
            break;
        }
        io_uring_cq_advance(&uw->ring, 1);
        dispatch(worker, &entry);
    }
}

const struct ovl__backend ovl__backend_uring = {
    .name = "io_uring",
    .alias = "uring",
    .conn_extra = sizeof(struct uring_conn),
    .available = available,
    .worker_init = worker_init,
    .poll = poll_completions,
    .busy = accepts_pending,
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
};
