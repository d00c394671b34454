/*
 * test_timer.c - ovl_conn_timer (deadlines, re-arming, cancelling, order, a closing connection's timer) and the
 * application's receive flow control (ovl_recv_pause / ovl_recv_resume, ovl_conn_set_max_pending), on a real engine
 * with one worker on an ephemeral loopback port, driven by blocking clients.
 *
 * Callbacks run on the worker thread and record into atomics or a mutex-guarded struct; assertions happen on the
 * test's thread. Times are only asserted from below (a timer never fires early): how late it fires depends on the
 * machine's load and is not a unit test's business.
 */
#include "engine_fixture.h"
#include "overlap.h"
#include "support.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define IO_TIMEOUT_MS 10000
#define MAX_CONNS 512

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* What the server does with each connection; one behaviour per test. */
enum behaviour {
    ARM_ONCE,            /* arm `delay_us` at open; on_timer sends "T" */
    ARM_LATE_THEN_EARLY, /* arm 10 s, then move it to `delay_us`; on_timer sends "T" */
    ARM_THEN_CANCEL,     /* arm `delay_us`, cancel at once */
    ARM_ON_LAST_OPEN,    /* when `expected` connections are open, arm connection i at (expected - i) * delay_us */
    ARM_RANDOM_REARM,    /* random delays up to delay_us, re-armed from on_timer until 3 fires */
    PAUSE_ON_FIRST_DATA, /* echo; on the first bytes pause receiving and resume from a timer delay_us later */
    PAUSE_ON_OPEN,       /* echo; pause receiving in on_open and resume from a timer delay_us later */
    ARM_FOREVER,         /* arm the longest delay ovl_conn_timer accepts */
    NO_AUTO_PAUSE,       /* echo with max_pending 0: receiving never pauses by itself */
    ARM_ON_REQUEST       /* no echo: 'A' arms `delay_us` (on_timer sends "T"), 'P' is answered "P" at once */
};

struct per_conn {
    ovl_conn *conn;
    int index;
    int fires;
    uint64_t deadline_us;  /* the latest deadline armed */
    bool early;            /* a fire came before its deadline */
    bool paused_once;
};

static struct {
    pthread_mutex_t lock;
    enum behaviour behaviour;
    uint64_t delay_us;
    int expected;
    int opened;
    atomic_int opened_atomic;
    struct per_conn conns[MAX_CONNS];
    int order[MAX_CONNS];   /* connection indexes in firing order */
    atomic_int fired;
    atomic_int early;
    _Atomic uint64_t resumed_at_us;
    _Atomic uint64_t data_after_pause_us;
    atomic_int timer_errors;
    atomic_bool paused_now;
    atomic_int data_while_paused;
    atomic_int closes;
    _Atomic uint64_t eof_at_us;
    atomic_int close_reason, close_err;
    bool shutdown_before_resume; /* PAUSE_ON_FIRST_DATA: ovl_shutdown from the timer, while input is held */
    int open_delay_ms;      /* on_open blocks the worker this long, so the client's bytes and FIN are all in first */
    int arm_sleep_ms;       /* ARM_ON_REQUEST: the callback that arms the timer then blocks the worker this long */
    _Atomic uint64_t bytes_delivered;
    uint32_t buffer_size;   /* engine config, 0 = default */
    uint32_t drain_ms;      /* engine config, 0 = default */
} t = {.lock = PTHREAD_MUTEX_INITIALIZER};

static struct server server;

static void arm(struct per_conn *pc, uint64_t delay_us, void (*fn)(ovl_conn *))
{
    pc->deadline_us = now_us() + delay_us;
    if (ovl_conn_timer(pc->conn, delay_us, fn) != 0)
        atomic_fetch_add(&t.timer_errors, 1);
}

static void on_timer(ovl_conn *conn)
{
    struct per_conn *pc = ovl_conn_user(conn);
    uint64_t now = now_us();
    pthread_mutex_lock(&t.lock); /* the test thread reads the per-connection records under it */
    if (now < pc->deadline_us) {
        pc->early = true;
        atomic_fetch_add(&t.early, 1);
    }
    int position = atomic_fetch_add(&t.fired, 1);
    if (position < MAX_CONNS)
        t.order[position] = pc->index;
    pc->fires++;
    switch (t.behaviour) {
    case ARM_RANDOM_REARM:
        if (pc->fires < 3)
            arm(pc, (uint64_t)rand() % (t.delay_us + 1), on_timer);
        break;
    case PAUSE_ON_FIRST_DATA:
    case PAUSE_ON_OPEN:
        if (t.shutdown_before_resume && ovl_shutdown(conn) != 0)
            atomic_fetch_add(&t.timer_errors, 1);
        atomic_store(&t.paused_now, false);
        atomic_store(&t.resumed_at_us, now);
        if (ovl_recv_resume(conn) != 0)
            atomic_fetch_add(&t.timer_errors, 1);
        break;
    default:
        ovl_send(conn, "T", 1);
        break;
    }
    pthread_mutex_unlock(&t.lock);
}

static void on_open(ovl_conn *conn, void *user)
{
    (void)user;
    if (t.open_delay_ms)
        sup_sleep_ms(t.open_delay_ms);
    pthread_mutex_lock(&t.lock);
    int index = t.opened++;
    atomic_fetch_add(&t.opened_atomic, 1);
    struct per_conn *pc = &t.conns[index];
    pc->conn = conn;
    pc->index = index;
    ovl_conn_set_user(conn, pc);
    switch (t.behaviour) {
    case ARM_ONCE:
        arm(pc, t.delay_us, on_timer);
        break;
    case ARM_LATE_THEN_EARLY:
        arm(pc, 600u * 1000 * 1000, on_timer);
        arm(pc, t.delay_us, on_timer);
        break;
    case ARM_THEN_CANCEL:
        arm(pc, t.delay_us, on_timer);
        ovl_conn_timer(conn, 0, NULL);
        break;
    case ARM_ON_LAST_OPEN:
        if (t.opened == t.expected)
            for (int i = 0; i < t.expected; i++)
                arm(&t.conns[i], (uint64_t)(t.expected - i) * t.delay_us, on_timer);
        break;
    case ARM_RANDOM_REARM:
        arm(pc, (uint64_t)rand() % (t.delay_us + 1), on_timer);
        break;
    case NO_AUTO_PAUSE:
        ovl_conn_set_max_pending(conn, 0);
        break;
    case ARM_FOREVER:
        arm(pc, UINT64_MAX / 2000, on_timer);
        break;
    case PAUSE_ON_OPEN:
        pc->paused_once = true;
        atomic_store(&t.paused_now, true);
        if (ovl_recv_pause(conn) != 0)
            atomic_fetch_add(&t.timer_errors, 1);
        arm(pc, t.delay_us, on_timer);
        break;
    case PAUSE_ON_FIRST_DATA:
    case ARM_ON_REQUEST:
        break;
    }
    pthread_mutex_unlock(&t.lock);
}

static void on_data(ovl_conn *conn, ovl_buf *buf)
{
    struct per_conn *pc = ovl_conn_user(conn);
    atomic_fetch_add(&t.bytes_delivered, ovl_buf_len(buf));
    if (atomic_load(&t.paused_now))
        atomic_fetch_add(&t.data_while_paused, 1);
    if (t.behaviour == PAUSE_ON_OPEN && !atomic_load(&t.data_after_pause_us))
        atomic_store(&t.data_after_pause_us, now_us());
    if (t.behaviour == ARM_ON_REQUEST) {
        const char *bytes = ovl_buf_data(buf);
        for (size_t i = 0; i < ovl_buf_len(buf); i++) {
            pthread_mutex_lock(&t.lock);
            if (bytes[i] == 'A')
                arm(pc, t.delay_us, on_timer);
            else
                ovl_send(conn, "P", 1);
            pthread_mutex_unlock(&t.lock);
            if (bytes[i] == 'A' && t.arm_sleep_ms)
                sup_sleep_ms(t.arm_sleep_ms);
        }
        ovl_buf_release(buf);
        return;
    }
    if (t.behaviour == PAUSE_ON_FIRST_DATA) {
        if (pc->paused_once && !atomic_load(&t.data_after_pause_us))
            atomic_store(&t.data_after_pause_us, now_us());
        if (!pc->paused_once) {
            pc->paused_once = true;
            atomic_store(&t.paused_now, true);
            if (ovl_recv_pause(conn) != 0)
                atomic_fetch_add(&t.timer_errors, 1);
            arm(pc, t.delay_us, on_timer);
        }
    }
    ovl_send_buf(conn, buf);
}

static void on_close(ovl_conn *conn, ovl_close_reason reason, int err)
{
    (void)conn;
    atomic_store(&t.close_reason, (int)reason);
    atomic_store(&t.close_err, err);
    atomic_fetch_add(&t.closes, 1);
}

static void on_eof(ovl_conn *conn)
{
    atomic_store(&t.eof_at_us, now_us());
    ovl_shutdown(conn);
}

static const ovl_callbacks callbacks = {.on_open = on_open, .on_data = on_data, .on_eof = on_eof,
                                        .on_close = on_close};

static void start(enum behaviour behaviour, uint64_t delay_us, int expected)
{
    t.behaviour = behaviour;
    t.delay_us = delay_us;
    t.expected = expected;
    srand(12345);
    /* One thread: ARM_ON_LAST_OPEN arms other connections' timers, so they must share the worker. */
    server_start(&server, &(struct server_opts){ .threads = 1, .buffer_size = t.buffer_size,
                                                 .drain_timeout_ms = t.drain_ms, .callbacks = &callbacks });
}

static void stop(void)
{
    server_destroy(&server);
}

TestSuite(timer, .fini = stop, .timeout = 60);

static int connect_client(void)
{
    int fd = sup_connect("127.0.0.1", server.port, IO_TIMEOUT_MS);
    cr_assert(fd >= 0, "connect 127.0.0.1:%d: %s", server.port, strerror(-fd));
    return fd;
}

static void expect_byte(int fd, char want, const char *what)
{
    char got = 0;
    ssize_t n = sup_recv_exact(fd, &got, 1, NULL);
    cr_assert_eq(n, 1, "%s: receive = %zd (%s)", what, n, n < 0 ? strerror((int)-n) : "EOF");
    cr_assert_eq(got, want, "%s: got '%c', want '%c'", what, got, want);
}

static bool wait_fired(int want, int ms)
{
    int64_t end = sup_now_ms() + ms;
    while (atomic_load(&t.fired) < want && sup_now_ms() < end)
        sup_sleep_ms(2);
    return atomic_load(&t.fired) >= want;
}

Test(timer, fires_once_not_before_its_deadline)
{
    start(ARM_ONCE, 30000, 1);
    uint64_t before = now_us();
    int fd = connect_client();
    expect_byte(fd, 'T', "the timer's byte");
    cr_assert_geq(now_us() - before, 30000, "the timer's byte came %llu us after connecting; armed for 30000",
                  (unsigned long long)(now_us() - before));
    sup_sleep_ms(100);
    cr_assert_eq(atomic_load(&t.fired), 1, "a one-shot timer fired %d times", atomic_load(&t.fired));
    cr_assert_eq(atomic_load(&t.early), 0, "the timer fired before its deadline");
    cr_assert_eq(atomic_load(&t.timer_errors), 0);
    close(fd);
}

Test(timer, arming_again_moves_the_deadline)
{
    start(ARM_LATE_THEN_EARLY, 20000, 1);
    int fd = connect_client();
    int64_t before = sup_now_ms();
    /* The client gives up after IO_TIMEOUT_MS (10 s): only the moved deadline (20 ms, not 600 s) can answer. */
    expect_byte(fd, 'T', "the re-armed timer's byte (600 s deadline moved to 20 ms)");
    (void)before;
    cr_assert_eq(atomic_load(&t.fired), 1);
    cr_assert_eq(atomic_load(&t.early), 0);
    close(fd);
}

/* ARM_ON_REQUEST's rounds: 'A' (arm), PROBE_AFTER_MS later 'P' (answered at once), then both answers. The count
 * of rounds whose probe was answered before the timer fired. */
static int probe_rounds(int fd, int rounds, int probe_after_ms)
{
    int late = 0;
    for (int round = 0; round < rounds; round++) {
        cr_assert_eq(sup_send_all(fd, "A", 1), 0);
        sup_sleep_ms(probe_after_ms);
        cr_assert_eq(sup_send_all(fd, "P", 1), 0);
        char got[2];
        ssize_t n = sup_recv_exact(fd, got, 2, NULL);
        cr_assert_eq(n, 2, "round %d: receive = %zd (%s)", round, n, n < 0 ? strerror((int)-n) : "EOF");
        cr_assert((got[0] == 'T' && got[1] == 'P') || (got[0] == 'P' && got[1] == 'T'), "round %d: got '%c%c'",
                  round, got[0], got[1]);
        late += got[0] == 'P';
    }
    return late;
}

/* A worker asleep with its next deadline a tick away (up to a second): a timer armed for 20 ms must wake it, not
 * wait for the tick or for the next input. The client asks for the timer, then 250 ms later sends a probe the
 * worker answers at once: the timer's byte must come first. A worker that slept on to the probe answers it, then
 * runs the timer behind it (P before T) unless its tick happened to come first, about one round in four. The
 * rounds allow a machine that holds the worker up for 230 ms twice. */
Test(timer, earlier_deadline_wakes_a_sleeping_worker)
{
    enum { ROUNDS = 8, PROBE_AFTER_MS = 250, LATE_ALLOWED = 2 };
    start(ARM_ON_REQUEST, 20000, 1);
    int fd = connect_client();
    int late = probe_rounds(fd, ROUNDS, PROBE_AFTER_MS);
    cr_assert_leq(late, LATE_ALLOWED, "the 20 ms timer fired after a probe sent %d ms later in %d of %d rounds",
                  PROBE_AFTER_MS, late, ROUNDS);
    cr_assert_eq(atomic_load(&t.fired), ROUNDS);
    cr_assert_eq(atomic_load(&t.early), 0);
    cr_assert_eq(atomic_load(&t.timer_errors), 0);
    close(fd);
}

/* A timer that comes due while its worker handles a batch fires at the end of that turn, before the next batch is
 * handled: for a while (ea9e86e) the timers ran against the clock read as the wait returned, so one due during a
 * long callback waited behind the whole next batch. 'A' arms 1 ms and its callback then takes 600 ms; the probe,
 * sent 200 ms after 'A', comes in meanwhile and is answered in the next turn: the timer's byte must come first. A
 * round goes wrong on a correct engine only when the machine holds the worker up for 200 ms before it reads 'A'
 * (the probe then comes in with it); the rounds allow two such. */
Test(timer, timer_due_during_a_batch_fires_before_the_next_batch)
{
    enum { ROUNDS = 5, PROBE_AFTER_MS = 200, LATE_ALLOWED = 2 };
    t.arm_sleep_ms = 600;
    start(ARM_ON_REQUEST, 1000, 1);
    int fd = connect_client();
    int late = probe_rounds(fd, ROUNDS, PROBE_AFTER_MS);
    cr_assert_leq(late, LATE_ALLOWED, "a 1 ms timer due during a %d ms callback fired after the next batch's probe "
                  "in %d of %d rounds", t.arm_sleep_ms, late, ROUNDS);
    cr_assert_eq(atomic_load(&t.fired), ROUNDS);
    cr_assert_eq(atomic_load(&t.early), 0);
    close(fd);
}

Test(timer, cancelled_timer_never_fires)
{
    start(ARM_THEN_CANCEL, 10000, 1);
    int fd = connect_client();
    /* The echo answers: the connection works, and 200 ms is twenty times the cancelled delay. */
    char out[100], in[100];
    sup_pattern_fill(out, sizeof out, 7, 0);
    cr_assert_eq(sup_send_all(fd, out, sizeof out), 0);
    cr_assert_eq(sup_recv_exact(fd, in, sizeof in, NULL), (ssize_t)sizeof in, "no echo");
    cr_assert_eq(sup_pattern_check(in, sizeof in, 7, 0), sizeof in, "the echo differs");
    sup_sleep_ms(200);
    cr_assert_eq(atomic_load(&t.fired), 0, "a cancelled timer fired");
    close(fd);
}

Test(timer, closing_connection_loses_its_timer)
{
    start(ARM_ONCE, 1000000, 1);
    int fd = connect_client();
    close(fd); /* EOF: the server shuts down and closes long before the 1 s deadline */
    ovl_stats stats;
    int64_t end = sup_now_ms() + IO_TIMEOUT_MS;
    do {
        sup_sleep_ms(5);
        ovl_engine_stats(server.engine, &stats);
    } while (stats.conns_closed < 1 && sup_now_ms() < end);
    cr_assert_eq(stats.conns_closed, 1, "the server did not close the connection");
    sup_sleep_ms(1200);
    cr_assert_eq(atomic_load(&t.fired), 0, "a closed connection's timer fired");
}

Test(timer, timers_fire_in_deadline_order)
{
    enum { CONNS = 24 };
    start(ARM_ON_LAST_OPEN, 3000, CONNS);
    int fds[CONNS];
    for (int i = 0; i < CONNS; i++)
        fds[i] = connect_client();
    cr_assert(wait_fired(CONNS, IO_TIMEOUT_MS), "%d of %d timers fired", atomic_load(&t.fired), CONNS);
    /* Connection i was armed (CONNS - i) * 3 ms ahead: the last opened fires first. The check is against the
     * deadlines actually recorded, so a worker preempted between two arm calls cannot make it fail. */
    int order[CONNS];
    uint64_t deadline[CONNS];
    pthread_mutex_lock(&t.lock);
    memcpy(order, t.order, sizeof order);
    for (int i = 0; i < CONNS; i++)
        deadline[i] = t.conns[i].deadline_us;
    pthread_mutex_unlock(&t.lock);
    for (int k = 1; k < CONNS; k++)
        cr_assert_leq(deadline[order[k - 1]], deadline[order[k]],
                      "fire %d (connection %d, deadline %llu) came before fire %d (connection %d, deadline %llu)",
                      k, order[k], (unsigned long long)deadline[order[k]], k - 1, order[k - 1],
                      (unsigned long long)deadline[order[k - 1]]);
    cr_assert_eq(atomic_load(&t.early), 0);
    for (int i = 0; i < CONNS; i++)
        close(fds[i]);
}

Test(timer, many_random_timers_each_fire_exactly_as_armed)
{
    enum { CONNS = 300 };
    sup_raise_nofile();
    start(ARM_RANDOM_REARM, 20000, CONNS);
    int fds[CONNS];
    for (int i = 0; i < CONNS; i++)
        fds[i] = connect_client();
    cr_assert(wait_fired(3 * CONNS, IO_TIMEOUT_MS), "%d of %d fires", atomic_load(&t.fired), 3 * CONNS);
    sup_sleep_ms(100);
    pthread_mutex_lock(&t.lock);
    for (int i = 0; i < CONNS; i++)
        cr_assert_eq(t.conns[i].fires, 3, "connection %d: %d fires, want 3", i, t.conns[i].fires);
    pthread_mutex_unlock(&t.lock);
    cr_assert_eq(atomic_load(&t.fired), 3 * CONNS);
    cr_assert_eq(atomic_load(&t.early), 0, "%d fires came before their deadline", atomic_load(&t.early));
    cr_assert_eq(atomic_load(&t.timer_errors), 0);
    for (int i = 0; i < CONNS; i++)
        close(fds[i]);
}

Test(timer, recv_pause_holds_input_until_resume)
{
    start(PAUSE_ON_FIRST_DATA, 150000, 1);
    int fd = connect_client();
    cr_assert_eq(sup_send_all(fd, "a", 1), 0);
    expect_byte(fd, 'a', "the first echo");
    cr_assert_eq(sup_send_all(fd, "b", 1), 0);
    expect_byte(fd, 'b', "the echo after the resume");
    uint64_t resumed = atomic_load(&t.resumed_at_us), data = atomic_load(&t.data_after_pause_us);
    cr_assert(resumed && data, "resume at %llu, data at %llu", (unsigned long long)resumed,
              (unsigned long long)data);
    cr_assert_geq(data, resumed, "on_data ran %llu us before ovl_recv_resume", (unsigned long long)(resumed - data));
    cr_assert_eq(atomic_load(&t.timer_errors), 0);
    close(fd);
}

Test(timer, max_pending_zero_never_pauses_by_itself)
{
    enum { TOTAL = 4 << 20 };
    start(NO_AUTO_PAUSE, 0, 1);
    int fd = connect_client();
    int size = 256 << 10;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    /* Write 4 MiB - sixteen times the default max_pending - reading nothing until it is all sent. The server
     * keeps receiving (its queue grows: the application asked for that), so the sends complete. */
    unsigned char *out = malloc(TOTAL), *in = malloc(TOTAL);
    cr_assert(out && in);
    sup_pattern_fill(out, TOTAL, 3, 0);
    cr_assert_eq(sup_send_all(fd, out, TOTAL), 0, "sending 4 MiB without reading");
    ovl_stats stats;
    ovl_engine_stats(server.engine, &stats);
    cr_assert_eq(stats.recv_pauses, 0, "receiving paused %llu times with max_pending 0",
                 (unsigned long long)stats.recv_pauses);
    size_t got = 0;
    cr_assert_eq(sup_recv_exact(fd, in, TOTAL, &got), TOTAL, "echo: %zu of %d bytes", got, TOTAL);
    cr_assert_eq(sup_pattern_check(in, TOTAL, 3, 0), (size_t)TOTAL, "the echo differs");
    free(out);
    free(in);
    close(fd);
}

Test(timer, recv_pause_in_on_open_holds_input_until_resume)
{
    start(PAUSE_ON_OPEN, 150000, 1);
    int fd = connect_client();
    cr_assert_eq(sup_send_all(fd, "a", 1), 0);
    expect_byte(fd, 'a', "the echo after the resume");
    uint64_t resumed = atomic_load(&t.resumed_at_us), data = atomic_load(&t.data_after_pause_us);
    cr_assert(resumed && data, "resume at %llu, data at %llu", (unsigned long long)resumed,
              (unsigned long long)data);
    cr_assert_geq(data, resumed, "on_data ran %llu us before ovl_recv_resume", (unsigned long long)(resumed - data));
    close(fd);
}

Test(timer, recv_pause_holds_every_buffer_already_received)
{
    /* 64-byte buffers and 4000 bytes in one write: io_uring's multishot receive has many completions in flight
     * when the first on_data pauses; none of them may reach on_data before the resume, and the echo stays in
     * order. */
    enum { TOTAL = 4000 };
    t.buffer_size = 64;
    start(PAUSE_ON_FIRST_DATA, 100000, 1);
    int fd = connect_client();
    unsigned char out[TOTAL], in[TOTAL];
    sup_pattern_fill(out, TOTAL, 11, 0);
    cr_assert_eq(sup_send_all(fd, out, TOTAL), 0);
    size_t got = 0;
    cr_assert_eq(sup_recv_exact(fd, in, TOTAL, &got), TOTAL, "echo: %zu of %d bytes", got, TOTAL);
    cr_assert_eq(sup_pattern_check(in, TOTAL, 11, 0), (size_t)TOTAL, "the echo differs (order lost?)");
    cr_assert_eq(atomic_load(&t.data_while_paused), 0, "on_data ran %d times while paused",
                 atomic_load(&t.data_while_paused));
    close(fd);
}

Test(timer, paused_connection_does_not_hold_up_a_stop)
{
    /* Paused in on_open and never resumed: a graceful stop overrides the pause, echoes what was received and
     * ends the connection without waiting out the 3 s drain deadline (that would close it with -ETIMEDOUT). */
    t.drain_ms = 3000;
    start(PAUSE_ON_OPEN, 600u * 1000 * 1000, 1);
    int fd = connect_client();
    unsigned char out[1000], in[1000];
    sup_pattern_fill(out, sizeof out, 5, 0);
    cr_assert_eq(sup_send_all(fd, out, sizeof out), 0);
    cr_assert_eq(shutdown(fd, SHUT_WR), 0);
    sup_sleep_ms(100);
    cr_assert_eq(atomic_load(&t.data_while_paused), 0, "on_data ran while paused");
    ovl_engine_stop(server.engine);
    size_t got = 0;
    cr_assert_eq(sup_recv_to_eof(fd, in, sizeof in, &got), (ssize_t)sizeof in, "echo before EOF: %zu bytes", got);
    cr_assert_eq(sup_pattern_check(in, sizeof in, 5, 0), sizeof in, "the echo differs");
    cr_assert_eq(atomic_load(&t.closes), 1);
    cr_assert_eq(atomic_load(&t.close_reason), (int)OVL_CLOSE_ENGINE_STOP);
    cr_assert_eq(atomic_load(&t.close_err), 0, "closed with %d (%s): the drain waited for its deadline",
                 atomic_load(&t.close_err), ovl_strerror(atomic_load(&t.close_err)));
    close(fd);
}

Test(timer, farthest_timer_leaves_stop_and_deadlines_working)
{
    /* The longest delay ovl_conn_timer accepts must not overflow a backend's wait into one that outlasts the
     * drain deadline: the stop below ends by that deadline (or the Criterion timeout fails the test). */
    t.drain_ms = 300;
    start(ARM_FOREVER, 0, 1);
    int fd = connect_client();
    int64_t end = sup_now_ms() + IO_TIMEOUT_MS;
    while (atomic_load(&t.opened_atomic) < 1 && sup_now_ms() < end)
        sup_sleep_ms(2);
    cr_assert_eq(atomic_load(&t.timer_errors), 0, "ovl_conn_timer refused its own maximum");
    ovl_engine_stop(server.engine); /* the client never closes: only the 300 ms drain deadline ends the connection */
    cr_assert_eq(atomic_load(&t.closes), 1);
    cr_assert_eq(atomic_load(&t.fired), 0);
    close(fd);
}

Test(timer, eof_waits_for_the_resume)
{
    /* One buffer's worth of bytes and the FIN right behind them: the first on_data pauses, and the end of input
     * that io_uring may already have completed must not reach on_eof before ovl_recv_resume. */
    enum { TOTAL = 64 };
    t.buffer_size = 64;
    start(PAUSE_ON_FIRST_DATA, 100000, 1);
    int fd = connect_client();
    unsigned char out[TOTAL], in[TOTAL];
    sup_pattern_fill(out, TOTAL, 13, 0);
    cr_assert_eq(sup_send_all(fd, out, TOTAL), 0);
    cr_assert_eq(shutdown(fd, SHUT_WR), 0);
    size_t got = 0;
    cr_assert_eq(sup_recv_to_eof(fd, in, sizeof in, &got), (ssize_t)TOTAL, "echo before EOF: %zu bytes", got);
    cr_assert_eq(sup_pattern_check(in, TOTAL, 13, 0), (size_t)TOTAL, "the echo differs");
    uint64_t resumed = atomic_load(&t.resumed_at_us), eof = atomic_load(&t.eof_at_us);
    cr_assert(resumed && eof, "resume at %llu, on_eof at %llu", (unsigned long long)resumed,
              (unsigned long long)eof);
    cr_assert_geq(eof, resumed, "on_eof ran %llu us before ovl_recv_resume", (unsigned long long)(resumed - eof));
    close(fd);
}

Test(timer, shutdown_while_input_is_held_delivers_it_and_the_eof)
{
    /* Four buffers and the FIN; the first on_data pauses, and while the rest (and possibly the EOF) is held the
     * application shuts its write side. ovl_shutdown must not end the connection under the held input: all of it
     * still reaches on_data, then on_eof runs, then the connection closes. */
    enum { TOTAL = 256 };
    t.buffer_size = 64;
    t.shutdown_before_resume = true;
    t.open_delay_ms = 200; /* io_uring then completes all four buffers and the EOF in one batch, behind the pause */
    start(PAUSE_ON_FIRST_DATA, 100000, 1);
    int fd = connect_client();
    unsigned char out[TOTAL], in[TOTAL];
    sup_pattern_fill(out, TOTAL, 17, 0);
    cr_assert_eq(sup_send_all(fd, out, TOTAL), 0);
    cr_assert_eq(shutdown(fd, SHUT_WR), 0);
    size_t got = 0;
    ssize_t n = sup_recv_to_eof(fd, in, sizeof in, &got);
    cr_assert(n >= 0, "recv: %s", strerror((int)-n));
    cr_assert_eq(sup_pattern_check(in, got, 17, 0), got, "the echo before our shutdown differs");
    for (int ms = 0; ms < 5000 && atomic_load(&t.closes) == 0; ms += 10)
        sup_sleep_ms(10);
    cr_assert_eq(atomic_load(&t.closes), 1, "the connection did not close");
    cr_assert_eq(atomic_load(&t.bytes_delivered), (uint64_t)TOTAL, "on_data saw %llu of %d bytes",
                 (unsigned long long)atomic_load(&t.bytes_delivered), TOTAL);
    cr_assert(atomic_load(&t.eof_at_us) != 0, "on_eof never ran");
    cr_assert_eq(atomic_load(&t.timer_errors), 0);
    close(fd);
}
