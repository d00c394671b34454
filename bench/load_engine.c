/*
 * load_engine.c - overlap-load's run, on liboverlap itself: connections opened with ovl_connect, messages sent
 * zero-copy from one immutable pattern table (ovl_send_ref), every echoed byte compared with the table at its
 * stream offset, latency per message into per-worker histograms.
 *
 * The pattern: byte i of connection c's stream is table[(seed(c) + i) % 251]. The period 251 is prime, so a
 * message that comes back shifted (lost, repeated or reordered bytes) or from another connection (another seed)
 * differs. The table holds 251 + size bytes, so every message is one contiguous slice of it: no per-message copy
 * or allocation, on the sending or the verifying side.
 *
 * Each connection belongs to one engine worker, and each worker has its own counters and histograms (written only
 * by it, read by the main thread with relaxed atomics for the counters, and after the engine stopped for the
 * histograms): no lock on the message path.
 */
#include "load.h"
#include "overlap.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _WIN32
#define WIN32_LEAN_AND_MEAN
#include <io.h>
#include <windows.h>
#define isatty _isatty
#else
#include <sys/resource.h>
#include <unistd.h>
#endif
#ifdef OVL_HAVE_MIMALLOC
#include <mimalloc.h>
#define load_zalloc(size) mi_zalloc(size)
#define load_free(pointer) mi_free(pointer)
#else
#define load_zalloc(size) calloc(1, size)
#define load_free(pointer) free(pointer)
#endif

enum { PATTERN_PERIOD = 251, P99_EVERY = 4096 };

struct load_worker {
    _Atomic uint64_t msgs, bytes, connects, connect_failures, verify_errors, resets, io_errors, early_closes;
    _Atomic uint64_t p99_ns;     /* published now and then for the progress line */
    uint64_t since_p99;
    struct load_hist latency;
    struct load_hist connect_latency;
};

struct load_ctx {
    const struct load_options *options;
    ovl_engine *engine;
    ovl_target *target;
    unsigned char *table;
    struct load_worker *workers;
    int worker_count;
    _Atomic int measuring;
    _Atomic int stopping;
    _Atomic uint32_t opened, failed;
    _Atomic int error_claimed;
    char first_error[256];
    ovl_callbacks callbacks;
};

struct load_conn {
    struct load_ctx *ctx;
    uint32_t seed;
    uint64_t sent;               /* bytes queued */
    uint64_t verified;           /* bytes echoed and checked */
    uint64_t completed;          /* messages fully echoed */
    uint64_t connect_started;
    bool shut;                   /* churn: all echoes received, our side shut down */
    bool failed;                 /* verification failed: being closed */
    uint64_t send_times[];       /* ring of `pipeline` send timestamps, by message index */
};

static inline void add(_Atomic uint64_t *counter, uint64_t n)
{
    atomic_store_explicit(counter, atomic_load_explicit(counter, memory_order_relaxed) + n, memory_order_relaxed);
}

static inline uint64_t get(const _Atomic uint64_t *counter)
{
    return atomic_load_explicit(counter, memory_order_relaxed);
}

uint64_t load_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void load_sleep(double seconds)
{
    if (seconds <= 0)
        return;
#ifdef _WIN32
    Sleep((DWORD)(seconds * 1000.0));
#else
    struct timespec ts = {.tv_sec = (time_t)seconds, .tv_nsec = (long)((seconds - (double)(time_t)seconds) * 1e9)};
    while (nanosleep(&ts, &ts) != 0) {
    }
#endif
}

static void cpu_times(double *user, double *system)
{
#ifdef _WIN32
    FILETIME created, exited, kernel, usermode;
    GetProcessTimes(GetCurrentProcess(), &created, &exited, &kernel, &usermode);
    *user = (double)(((uint64_t)usermode.dwHighDateTime << 32) | usermode.dwLowDateTime) / 1e7;
    *system = (double)(((uint64_t)kernel.dwHighDateTime << 32) | kernel.dwLowDateTime) / 1e7;
#else
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    *user = (double)usage.ru_utime.tv_sec + (double)usage.ru_utime.tv_usec / 1e6;
    *system = (double)usage.ru_stime.tv_sec + (double)usage.ru_stime.tv_usec / 1e6;
#endif
}

/* The first error seen anywhere, for the report and for messages like "connect localhost:27015: refused". */
static void note_error(struct load_ctx *ctx, const char *format, const char *a, const char *b)
{
    if (atomic_exchange(&ctx->error_claimed, 1))
        return;
    snprintf(ctx->first_error, sizeof ctx->first_error, format, a, b);
}

static struct load_worker *worker_of(struct load_ctx *ctx, ovl_conn *conn)
{
    return &ctx->workers[ovl_conn_worker(conn)];
}

static bool may_send(const struct load_conn *lc)
{
    const struct load_options *o = lc->ctx->options;
    if (atomic_load_explicit(&lc->ctx->stopping, memory_order_relaxed) || lc->failed)
        return false;
    return !o->churn || lc->sent / o->size < o->churn;
}

static void send_message(ovl_conn *conn, struct load_conn *lc)
{
    const struct load_options *o = lc->ctx->options;
    uint64_t index = lc->sent / o->size;
    lc->send_times[index % o->pipeline] = load_now_ns();
    size_t start = (size_t)((lc->seed + lc->sent) % PATTERN_PERIOD);
    if (ovl_send_ref(conn, lc->ctx->table + start, o->size) == 0)
        lc->sent += o->size;
}

static void on_open(ovl_conn *conn, void *user)
{
    struct load_conn *lc = user;
    struct load_ctx *ctx = lc->ctx;
    struct load_worker *w = worker_of(ctx, conn);
    add(&w->connects, 1);
    load_hist_record(&w->connect_latency, load_now_ns() - lc->connect_started);
    atomic_fetch_add(&ctx->opened, 1);
    for (uint32_t i = 0; i < ctx->options->pipeline && may_send(lc); i++)
        send_message(conn, lc);
}

/* Compare `len` received bytes with the pattern from stream offset lc->verified. */
static bool verify(const struct load_conn *lc, const unsigned char *data, size_t len, size_t *bad)
{
    const unsigned char *table = lc->ctx->table;
    size_t table_len = PATTERN_PERIOD + lc->ctx->options->size;
    size_t position = (size_t)((lc->seed + lc->verified) % PATTERN_PERIOD);
    size_t done = 0;
    while (done < len) {
        size_t n = len - done;
        if (n > table_len - position)
            n = table_len - position;
        if (memcmp(data + done, table + position, n) != 0) {
            for (size_t i = 0; i < n; i++)
                if (data[done + i] != table[position + i]) {
                    *bad = done + i;
                    return false;
                }
        }
        done += n;
        position = (position + n) % PATTERN_PERIOD;
    }
    return true;
}

static void on_data(ovl_conn *conn, ovl_buf *buf)
{
    struct load_conn *lc = ovl_conn_user(conn);
    struct load_ctx *ctx = lc->ctx;
    struct load_worker *w = worker_of(ctx, conn);
    const struct load_options *o = ctx->options;
    size_t len = ovl_buf_len(buf);
    size_t bad = 0;
    if (lc->failed || !verify(lc, ovl_buf_data(buf), len, &bad) || lc->verified + len > lc->sent) {
        if (!lc->failed) {
            char where[96];
            snprintf(where, sizeof where, "stream byte %llu", (unsigned long long)(lc->verified + bad));
            note_error(ctx, "verify: %s of %s differs from what was sent", where, ovl_conn_peer(conn));
            add(&w->verify_errors, 1);
            lc->failed = true;
            ovl_close(conn);
        }
        ovl_buf_release(buf);
        return;
    }
    ovl_buf_release(buf);
    lc->verified += len;
    bool measuring = atomic_load_explicit(&ctx->measuring, memory_order_relaxed) &&
                     !atomic_load_explicit(&ctx->stopping, memory_order_relaxed);
    if (measuring)
        add(&w->bytes, len);
    uint64_t now = 0;
    while (lc->verified >= (lc->completed + 1) * o->size) {
        if (!now)
            now = load_now_ns();
        uint64_t sent_at = lc->send_times[lc->completed % o->pipeline];
        lc->completed++;
        if (measuring) {
            load_hist_record(&w->latency, now - sent_at);
            add(&w->msgs, 1);
            if (++w->since_p99 >= P99_EVERY) {
                w->since_p99 = 0;
                atomic_store_explicit(&w->p99_ns, load_hist_quantile(&w->latency, 0.99), memory_order_relaxed);
            }
        }
        if (may_send(lc))
            send_message(conn, lc);
    }
    if (o->churn && lc->completed >= o->churn && !lc->shut) {
        lc->shut = true; /* every echo is in: end in good order, the server closes, on_close reconnects */
        ovl_shutdown(conn);
    }
}

static void open_connection(struct load_ctx *ctx, uint32_t index);

static void on_close(ovl_conn *conn, ovl_close_reason reason, int err)
{
    struct load_conn *lc = ovl_conn_user(conn);
    struct load_ctx *ctx = lc->ctx;
    struct load_worker *w = worker_of(ctx, conn);
    bool stopping = atomic_load(&ctx->stopping);
    switch (reason) {
    case OVL_CLOSE_CONNECT_FAILED:
        add(&w->connect_failures, 1);
        atomic_fetch_add(&ctx->failed, 1);
        note_error(ctx, "connect %s: %s", ovl_target_name(ctx->target), ovl_strerror(err));
        break;
    case OVL_CLOSE_RESET:
        if (!stopping) {
            add(&w->resets, 1);
            note_error(ctx, "connection %s: %s", ovl_conn_peer(conn), "reset by the server");
        }
        break;
    case OVL_CLOSE_ERROR:
        if (!stopping) {
            add(&w->io_errors, 1);
            note_error(ctx, "connection %s: %s", ovl_conn_peer(conn), ovl_strerror(err));
        }
        break;
    case OVL_CLOSE_PEER:
        if (!lc->shut && !stopping) {
            add(&w->early_closes, 1);
            note_error(ctx, "connection %s: %s", ovl_conn_peer(conn), "closed by the server before its echoes came back");
        } else if (lc->shut && lc->verified < lc->sent && !stopping) {
            add(&w->early_closes, 1);
            note_error(ctx, "connection %s: %s", ovl_conn_peer(conn), "short echo");
        }
        break;
    default:
        break;
    }
    bool reconnect = ctx->options->churn && lc->shut && reason == OVL_CLOSE_PEER && !stopping;
    uint32_t seed = lc->seed;
    load_free(lc);
    if (reconnect)
        open_connection(ctx, seed + 1);
}

static void open_connection(struct load_ctx *ctx, uint32_t index)
{
    size_t size = sizeof(struct load_conn) + ctx->options->pipeline * sizeof(uint64_t);
    struct load_conn *lc = load_zalloc(size);
    if (!lc) {
        atomic_fetch_add(&ctx->failed, 1);
        note_error(ctx, "connect %s: %s", ovl_target_name(ctx->target), "out of memory");
        return;
    }
    lc->ctx = ctx;
    lc->seed = (index * 37u + 11u) % PATTERN_PERIOD;
    lc->connect_started = load_now_ns();
    int rc = ovl_connect(ctx->engine, ctx->target, &ctx->callbacks, lc);
    if (rc < 0) {
        load_free(lc);
        atomic_fetch_add(&ctx->failed, 1);
        note_error(ctx, "connect %s: %s", ovl_target_name(ctx->target), ovl_strerror(rc));
    }
}

static void sum_counters(struct load_ctx *ctx, struct load_result *r)
{
    r->msgs = r->bytes = r->connects = r->connect_failures = 0;
    r->verify_errors = r->resets = r->io_errors = r->early_closes = 0;
    for (int i = 0; i < ctx->worker_count; i++) {
        struct load_worker *w = &ctx->workers[i];
        r->msgs += get(&w->msgs);
        r->bytes += get(&w->bytes);
        r->connects += get(&w->connects);
        r->connect_failures += get(&w->connect_failures);
        r->verify_errors += get(&w->verify_errors);
        r->resets += get(&w->resets);
        r->io_errors += get(&w->io_errors);
        r->early_closes += get(&w->early_closes);
    }
}

static void print_progress(struct load_ctx *ctx, double elapsed, uint64_t msgs, uint64_t bytes, double interval,
                           const struct load_result *now)
{
    uint64_t p99 = 0;
    for (int i = 0; i < ctx->worker_count; i++) {
        uint64_t p = atomic_load_explicit(&ctx->workers[i].p99_ns, memory_order_relaxed);
        if (p > p99)
            p99 = p;
    }
    fprintf(stderr, "[%5.1fs] %10.0f msgs/s %9.2f MB/s  p99 %8.1f us  errors %llu\n", elapsed,
            (double)msgs / interval, (double)bytes / interval / 1e6, (double)p99 / 1e3,
            (unsigned long long)load_errors(now));
}

static int setup(struct load_ctx *ctx, const struct load_options *o, int threads, struct load_result *result)
{
    memset(ctx, 0, sizeof *ctx);
    ctx->options = o;
    ovl_error_info err;
    memset(&err, 0, sizeof err);
    if (ovl_target_resolve(&ctx->target, o->host, o->port, &err) < 0) {
        snprintf(result->first_error, sizeof result->first_error, "%s: %s", err.what, err.text);
        return -1;
    }
    ovl_config config;
    ovl_config_init(&config);
    config.threads = threads;
    config.drain_timeout_ms = 2000;
    if (ovl_engine_create(&ctx->engine, &config, &err) < 0 || ovl_engine_start(ctx->engine, &err) < 0) {
        snprintf(result->first_error, sizeof result->first_error, "%s: %s", err.what, err.text);
        ovl_engine_destroy(ctx->engine);
        ovl_target_free(ctx->target);
        return -1;
    }
    ctx->worker_count = ovl_engine_threads(ctx->engine);
    ctx->workers = load_zalloc((size_t)ctx->worker_count * sizeof *ctx->workers);
    size_t table_len = PATTERN_PERIOD + (o->size ? o->size : 1);
    ctx->table = load_zalloc(table_len);
    if (!ctx->workers || !ctx->table) {
        snprintf(result->first_error, sizeof result->first_error, "out of memory");
        return -1;
    }
    for (size_t k = 0; k < table_len; k++)
        ctx->table[k] = (unsigned char)(((k % PATTERN_PERIOD) * 97u + 31u) % PATTERN_PERIOD);
    return 0;
}

static void teardown(struct load_ctx *ctx)
{
    ovl_engine_destroy(ctx->engine);
    ovl_target_free(ctx->target);
    load_free(ctx->workers);
    load_free(ctx->table);
}

int load_run(const struct load_options *o, struct load_result *result)
{
    memset(result, 0, sizeof *result);
    struct load_ctx *ctx = load_zalloc(sizeof *ctx);
    if (!ctx) {
        snprintf(result->first_error, sizeof result->first_error, "out of memory");
        return -1;
    }
    if (setup(ctx, o, o->threads, result) < 0) {
        load_free(ctx);
        return -1;
    }
    ctx->callbacks = (ovl_callbacks){.on_open = on_open, .on_data = on_data, .on_close = on_close};

    /* Open every connection (paced by --connect-rate), then wait until each has opened or failed. */
    uint64_t begin = load_now_ns();
    for (uint32_t i = 0; i < o->connections; i++) {
        open_connection(ctx, i);
        if (o->connect_rate > 0)
            load_sleep(1.0 / o->connect_rate);
    }
    uint64_t deadline = load_now_ns() + 10000000000ull;
    while (atomic_load(&ctx->opened) + atomic_load(&ctx->failed) < o->connections && load_now_ns() < deadline)
        load_sleep(0.005);
    double open_seconds = (double)(load_now_ns() - begin) / 1e9;
    if (atomic_load(&ctx->opened) == 0) {
        snprintf(result->first_error, sizeof result->first_error, "%s",
                 ctx->first_error[0] ? ctx->first_error : "no connection opened within 10 s");
        atomic_store(&ctx->stopping, 1);
        ovl_engine_stop(ctx->engine);
        sum_counters(ctx, result);
        teardown(ctx);
        load_free(ctx);
        return -1;
    }
    (void)open_seconds;

    load_sleep(o->warmup);
    bool progress = o->progress || isatty(2);
    double user0, system0;
    cpu_times(&user0, &system0);
    uint64_t start = load_now_ns();
    atomic_store(&ctx->measuring, 1);
    uint64_t last_msgs = 0, last_bytes = 0, last = start;
    uint64_t end = start + (uint64_t)(o->duration * 1e9);
    for (uint64_t now = start; now < end; now = load_now_ns()) {
        uint64_t next = last + 1000000000ull;
        uint64_t until = next < end ? next : end;
        if (until > now)
            load_sleep((double)(until - now) / 1e9);
        uint64_t t = load_now_ns();
        if (t < next)
            continue;
        if (progress) {
            sum_counters(ctx, result);
            print_progress(ctx, (double)(t - start) / 1e9, result->msgs - last_msgs, result->bytes - last_bytes,
                           (double)(t - last) / 1e9, result);
            last_msgs = result->msgs;
            last_bytes = result->bytes;
        }
        last = t;
    }
    atomic_store(&ctx->stopping, 1);
    uint64_t stop = load_now_ns();
    double user1, system1;
    cpu_times(&user1, &system1);
    sum_counters(ctx, result);
    result->seconds = (double)(stop - start) / 1e9;
    result->cpu_user = user1 - user0;
    result->cpu_system = system1 - system0;

    ovl_engine_stop(ctx->engine);
    ovl_stats stats;
    ovl_engine_stats(ctx->engine, &stats);
    result->reuse_ok = stats.reuse_ok;
    result->reuse_fallback = stats.reuse_fallback;
    result->context_updates = stats.context_updates;
    /* After the stop the histograms are quiet; errors seen while stopping are not counted (stopping is set). */
    struct load_result after;
    memset(&after, 0, sizeof after);
    sum_counters(ctx, &after);
    result->connects = after.connects;
    result->connect_failures = after.connect_failures;
    for (int i = 0; i < ctx->worker_count; i++) {
        load_hist_merge(&result->latency, &ctx->workers[i].latency);
        load_hist_merge(&result->connect_latency, &ctx->workers[i].connect_latency);
    }
    if (ctx->first_error[0])
        snprintf(result->first_error, sizeof result->first_error, "%s", ctx->first_error);
    teardown(ctx);
    load_free(ctx);
    return 0;
}

/* ---- --once: the seed tutorial's client ---- */

struct once_state {
    _Atomic int done;
    ovl_close_reason reason;
    int err;
    char target[160];
};

static void once_open(ovl_conn *conn, void *user)
{
    (void)user;
    static const char message[] = "this is a test";
    if (ovl_send(conn, message, sizeof message - 1) == 0)
        printf("Bytes Sent: %zu\n", sizeof message - 1);
    ovl_shutdown(conn);
}

static void once_data(ovl_conn *conn, ovl_buf *buf)
{
    (void)conn;
    printf("Bytes received: %zu\n", ovl_buf_len(buf));
    ovl_buf_release(buf);
}

static void once_close(ovl_conn *conn, ovl_close_reason reason, int err)
{
    struct once_state *state = ovl_conn_user(conn);
    state->reason = reason;
    state->err = err;
    if (reason == OVL_CLOSE_PEER)
        printf("Connection closed\n");
    atomic_store(&state->done, 1);
}

int load_once(const struct load_options *o)
{
    struct load_ctx ctx;
    struct load_result result;
    memset(&result, 0, sizeof result);
    if (setup(&ctx, o, 1, &result) < 0) {
        fprintf(stderr, "overlap-load: %s\n", result.first_error);
        return 1;
    }
    struct once_state state;
    memset(&state, 0, sizeof state);
    static const ovl_callbacks callbacks = {.on_open = once_open, .on_data = once_data, .on_close = once_close};
    int rc = ovl_connect(ctx.engine, ctx.target, &callbacks, &state);
    uint64_t deadline = load_now_ns() + 10000000000ull;
    while (rc == 0 && !atomic_load(&state.done) && load_now_ns() < deadline)
        load_sleep(0.002);
    int status = 0;
    if (rc < 0) {
        fprintf(stderr, "overlap-load: connect %s: %s\n", ovl_target_name(ctx.target), ovl_strerror(rc));
        status = 1;
    } else if (!atomic_load(&state.done)) {
        fprintf(stderr, "overlap-load: %s: no answer within 10 s\n", ovl_target_name(ctx.target));
        status = 1;
    } else if (state.reason == OVL_CLOSE_CONNECT_FAILED) {
        fprintf(stderr, "overlap-load: connect %s: %s\n", ovl_target_name(ctx.target), ovl_strerror(state.err));
        status = 1;
    } else if (state.reason != OVL_CLOSE_PEER) {
        fprintf(stderr, "overlap-load: %s: %s%s%s\n", ovl_target_name(ctx.target), ovl_close_reason_name(state.reason),
                state.err ? ": " : "", state.err ? ovl_strerror(state.err) : "");
        status = 1;
    }
    fflush(stdout);
    ovl_engine_stop(ctx.engine);
    teardown(&ctx);
    return status;
}
