/*
 * engine.c - the engine object: configuration, starting and joining the worker threads, listeners, outbound
 * connects, stop, and stats. What a worker thread does is worker.c's.
 */
#include "backend.h"

#include "alloc.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    DEFAULT_BUFFER_SIZE = OVL_DEFAULT_BUFFER_SIZE,
    DEFAULT_BUFFER_COUNT = OVL_DEFAULT_BUFFER_COUNT,
    MAX_BUFFER_COUNT = 32768, /* io_uring buffer rings hold at most 2^15 entries */
    DEFAULT_DRAIN_MS = 5000,
    DEFAULT_STOP_GRACE_MS = 2000,
    MAX_STOP_GRACE_MS = 600000,
    DEFAULT_BUSY_POLL_US = 50,
    DEFAULT_MAX_PENDING = 256 * 1024,
    DEFAULT_KEEPALIVE_MS = 60000,
    DEFAULT_CONNECT_TIMEOUT_MS = 10000,
    DEFAULT_STALL_TIMEOUT_MS = 60000,
    DESCRIPTORS_RESERVED = 65536, /* descriptor-table slots made at start: about 528 KiB of kernel memory at most */
    DESCRIPTORS_OWN = 64          /* beside max_conns: listening sockets, the embedder's; and 2 per worker (below) */
};

void ovl_config_init(ovl_config *config)
{
    memset(config, 0, sizeof *config);
}

/* The backends built in, best first. The default is the first that can run here; the notice says which ones before
 * it could not. A new backend is one entry. */
static const struct ovl__backend *const backends[] = {
#ifdef _WIN32
    &ovl__backend_iocp,
#else
    &ovl__backend_uring,
    &ovl__backend_epoll,
#endif
};
enum { BACKEND_COUNT = sizeof backends / sizeof backends[0] };

static const struct ovl__backend *backend_named(const char *name)
{
    for (int i = 0; i < BACKEND_COUNT; i++)
        if (strcmp(name, backends[i]->name) == 0 || (backends[i]->alias && strcmp(name, backends[i]->alias) == 0))
            return backends[i];
    return NULL;
}

/* "io_uring, epoll": the names of the backends built in, for messages. */
static void backend_names(char *out, size_t size)
{
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < BACKEND_COUNT && used < size; i++) {
        int n = snprintf(out + used, size - used, "%s%s", i ? ", " : "", backends[i]->name);
        used += n > 0 ? (size_t)n : 0;
    }
}

/* The backend for config->backend (a name, or NULL/"" for the best that runs here), with `notice` saying why the
 * default is not the first entry. 0, or a negative error with err filled. */
/* 0 when `backend` can run here, or a negative error with why in *why. */
static int backend_probe(const struct ovl__backend *backend, ovl_error_info *why)
{
    memset(why, 0, sizeof *why);
    return backend->available ? backend->available(why) : 0;
}

static int backend_choose(const char *name, const struct ovl__backend **out, char *notice, size_t notice_size,
                          ovl_error_info *err)
{
    notice[0] = '\0';
    if (name && name[0]) {
        const struct ovl__backend *backend = backend_named(name);
        if (!backend) {
            char names[96], text[160];
            backend_names(names, sizeof names);
            snprintf(text, sizeof text, "not built into this library (have: %s)", names);
            ovl__error_set(err, -ENOTSUP, text, "backend %s", name);
            return -ENOTSUP;
        }
        ovl_error_info why;
        int rc = backend_probe(backend, &why);
        if (rc < 0) {
            if (err)
                *err = why;
            return rc;
        }
        *out = backend;
        return 0;
    }
    size_t used = 0;
    ovl_error_info why;
    for (int i = 0; i < BACKEND_COUNT; i++) {
        int rc = backend_probe(backends[i], &why);
        if (rc == 0) {
            if (used)
                snprintf(notice + used, notice_size - used, "using %s", backends[i]->name);
            *out = backends[i];
            return 0;
        }
        if (i == BACKEND_COUNT - 1) {
            if (err)
                *err = why;
            return rc;
        }
        if (used < notice_size) {
            int n = snprintf(notice + used, notice_size - used, "%s unavailable (%s: %s), ", backends[i]->name,
                             why.what, why.text);
            used += n > 0 ? (size_t)n : 0;
            if (used >= notice_size)
                used = notice_size - 1;
        }
    }
    return -ENOTSUP; /* not reached: the table is never empty */
}

static uint32_t round_up_power_of_two(uint32_t n)
{
    uint32_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

/* How often the idle sweep runs: a quarter of the timeout, so a connection closes at most 25 % late, but at
 * most once a second (one walk of the connection list per second costs nothing) and at least every 10 ms. */
static uint32_t idle_tick_ms(uint32_t timeout_ms)
{
    if (!timeout_ms)
        return 0;
    uint32_t tick = timeout_ms / 4;
    return tick < 10 ? 10 : tick > 1000 ? 1000 : tick;
}

/* The shorter of the idle and stall timeouts that are on, or 0. */
static uint32_t sweep_timeout_ms(const ovl_config *config)
{
    uint32_t idle = config->idle_timeout_ms;
    uint32_t stall = config->stall_timeout_ms > 0 ? (uint32_t)config->stall_timeout_ms : 0;
    return !idle ? stall : !stall ? idle : idle < stall ? idle : stall;
}

/* $OVERLAP_TEST_FAULTS (internal.h, OVL__FAULT_*): what the tests ask to go wrong, as comma-separated names, each
 * matched whole ("no-swallow-cancels" is not "swallow-cancels"); unknown names are ignored. */
static unsigned test_faults(void)
{
    const char *list = getenv("OVERLAP_TEST_FAULTS");
    unsigned faults = 0;
    static const char name[] = "swallow-cancels";
    for (const char *at = list; at && *at;) {
        size_t length = strcspn(at, ",");
        if (length == sizeof name - 1 && !memcmp(at, name, length))
            faults |= OVL__FAULT_SWALLOW_CANCELS;
        at += length + (at[length] == ',');
    }
    return faults;
}

int ovl_engine_create(ovl_engine **out, const ovl_config *config, ovl_error_info *err)
{
    ovl_config defaults;
    if (!config) {
        ovl_config_init(&defaults);
        config = &defaults;
    }
    if (!out || config->threads < 0 || config->threads > OVL_MAX_THREADS || config->backlog < 0 ||
        (config->buffer_size && (config->buffer_size < 64 || config->buffer_size > (1u << 24))) ||
        config->buffer_count > MAX_BUFFER_COUNT || config->busy_poll_us > 100000 ||
        config->keepalive_ms > 32767000 || config->stop_grace_ms > MAX_STOP_GRACE_MS) {
        ovl__error_set(err, -EINVAL, "threads 0..256, buffer size 64..16777216, buffer count up to 32768, "
                       "keepalive up to 32767 s, stop grace up to 600 s", "engine configuration");
        return -EINVAL;
    }
    uint32_t buffer_size = config->buffer_size ? config->buffer_size : DEFAULT_BUFFER_SIZE;
    uint32_t pool_limit = 0, pool_count = 0;
    if (config->buffer_count) { /* a fixed pool */
        pool_count = pool_limit = round_up_power_of_two(config->buffer_count);
        uint64_t pool_bytes = (uint64_t)buffer_size * pool_count;
        if (pool_bytes > OVL_MAX_POOL_BYTES) {
            ovl__error_set(err, -EINVAL, "at most 256 MiB per worker",
                           "receive pool of %llu MiB (buffer size x count)", (unsigned long long)(pool_bytes >> 20));
            return -EINVAL;
        }
    } else { /* grows with the connections, from the default count, to the most that fits */
        pool_limit = MAX_BUFFER_COUNT;
        while ((uint64_t)buffer_size * pool_limit > OVL_MAX_POOL_BYTES)
            pool_limit /= 2;
        pool_count = pool_limit < DEFAULT_BUFFER_COUNT ? pool_limit : DEFAULT_BUFFER_COUNT;
    }
    const struct ovl__backend *backend = NULL;
    char notice[320];
    int chosen = backend_choose(config->backend, &backend, notice, sizeof notice, err);
    if (chosen < 0)
        return chosen;
    int rc = ovl__net_init();
    if (rc < 0) {
        ovl__error_set(err, rc, NULL, "network initialisation");
        return rc;
    }
    ovl_engine *engine = ovl__zalloc(sizeof *engine);
    if (!engine) {
        ovl__net_cleanup();
        ovl__error_set(err, -ENOMEM, NULL, "allocate the engine");
        return -ENOMEM;
    }
    engine->config = *config;
    engine->config.backend = backend->name;
    memcpy(engine->notice, notice, sizeof notice);
    if (!engine->config.threads)
        engine->config.threads = ovl_default_threads();
    engine->config.buffer_size = buffer_size;
    engine->config.buffer_count = pool_count;
    engine->pool_limit = pool_limit;
    if (!engine->config.drain_timeout_ms)
        engine->config.drain_timeout_ms = DEFAULT_DRAIN_MS;
    if (!engine->config.stop_grace_ms)
        engine->config.stop_grace_ms = DEFAULT_STOP_GRACE_MS;
    engine->faults = test_faults();
    if (engine->faults)
        ovl__log(engine, OVL_LOG_WARNING, "OVERLAP_TEST_FAULTS=%s: a test fault is on (stops will hang on purpose "
                 "until their hard deadline); unset it outside tests", getenv("OVERLAP_TEST_FAULTS"));
    if (!engine->config.max_pending)
        engine->config.max_pending = DEFAULT_MAX_PENDING;
    if (!engine->config.busy_poll_us)
        engine->config.busy_poll_us = DEFAULT_BUSY_POLL_US;
    if (!engine->config.keepalive_ms)
        engine->config.keepalive_ms = DEFAULT_KEEPALIVE_MS;
    if (!engine->config.connect_timeout_ms)
        engine->config.connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
    if (!engine->config.stall_timeout_ms)
        engine->config.stall_timeout_ms = DEFAULT_STALL_TIMEOUT_MS;
    engine->backend = backend;
    engine->thread_count = engine->config.threads;
    engine->loop_count = engine->thread_count + (backend->acceptor ? 1 : 0);
    engine->workers = ovl__calloc((size_t)engine->loop_count, sizeof *engine->workers);
    if (!engine->workers) {
        ovl__free(engine);
        ovl__net_cleanup();
        ovl__error_set(err, -ENOMEM, NULL, "allocate the workers");
        return -ENOMEM;
    }
    pthread_mutex_init(&engine->lock, NULL);
    pthread_mutex_init(&engine->join_lock, NULL);
    pthread_mutex_init(&engine->start_lock, NULL);
    pthread_cond_init(&engine->start_cond, NULL);
    for (int i = 0; i < engine->loop_count; i++) {
        struct ovl__worker *worker = &engine->workers[i];
        worker->engine = engine;
        worker->index = i;
        worker->acceptor = i == engine->thread_count;
        worker->accepts = worker->acceptor || !backend->acceptor;
        /* The sweep also gives cold receive buffers back (ovl__pool_trim): once a second at least. */
        worker->tick_ms = sweep_timeout_ms(&engine->config) ? idle_tick_ms(sweep_timeout_ms(&engine->config)) : 1000;
        pthread_mutex_init(&worker->command_lock, NULL);
    }
    *out = engine;
    return 0;
}

const char *ovl_engine_backend(const ovl_engine *engine)
{
    return engine->backend->name;
}

const char *ovl_engine_notice(const ovl_engine *engine)
{
    return engine->notice[0] ? engine->notice : NULL;
}

int ovl_cpu_count(void)
{
    return ovl__cpu_count();
}

int ovl_default_threads(void)
{
    /* One CPU is left to what runs beside the workers: the kernel's network work (softirq), the clients when they
     * share the host, the rest of the machine. Measured on 2 CPUs with the client on the same host, 2 workers had
     * 6-8x the p99 of 1 and fewer msgs/s: three busy threads on two cores wait whole scheduler slices
     * (docs/BENCHMARKS.md, "The default worker count"). */
    int cpus = ovl__cpu_count();
    int threads = cpus > 1 ? cpus - 1 : 1;
    return threads < OVL_MAX_THREADS ? threads : OVL_MAX_THREADS;
}

int ovl_engine_threads(const ovl_engine *engine)
{
    return engine->thread_count;
}

int ovl_engine_start(ovl_engine *engine, ovl_error_info *err)
{
    if (!engine) {
        ovl__error_set(err, -EINVAL, NULL, "start: no engine");
        return -EINVAL;
    }
    pthread_mutex_lock(&engine->lock);
    if (engine->started) {
        pthread_mutex_unlock(&engine->lock);
        return -EALREADY;
    }
#ifndef _WIN32
    /* Workers take no signals: the embedding program decides which thread handles SIGINT/SIGTERM. */
    sigset_t all, previous;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &previous);
#endif
    /* Room for the connections in the descriptor table before the workers run, so that no accept waits for the
     * table to grow (platform.h). */
    unsigned long descriptors = DESCRIPTORS_RESERVED;
    unsigned long own = DESCRIPTORS_OWN + 2ul * (unsigned long)engine->loop_count; /* a ring or epoll set, an eventfd */
    if (engine->config.max_conns && engine->config.max_conns < DESCRIPTORS_RESERVED - own)
        descriptors = engine->config.max_conns + own;
    ovl__descriptor_table_reserve(descriptors);
    int rc = 0;
    int created = 0;
    /* Counted before any worker runs: one that stops at once must find the others still counted. */
    int accepting = 0;
    for (int i = 0; i < engine->loop_count; i++)
        accepting += engine->workers[i].accepts;
    atomic_store(&engine->accepting_workers, accepting);
    /* The acceptor (last) starts only once every worker thread did: it waits for their set-up (worker.c). */
    for (; created < engine->loop_count; created++) {
        struct ovl__worker *worker = &engine->workers[created];
        worker->thread_started = true;
        rc = -pthread_create(&worker->thread, NULL, ovl__worker_main, worker);
        if (rc) {
            worker->thread_started = false;
            if (worker->acceptor)
                ovl__error_set(err, rc, NULL, "start the acceptor thread");
            else
                ovl__error_set(err, rc, NULL, "start worker thread %d", created);
            break;
        }
    }
#ifndef _WIN32
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
#endif
    pthread_mutex_lock(&engine->start_lock);
    while (engine->workers_ready < created)
        pthread_cond_wait(&engine->start_cond, &engine->start_lock);
    pthread_mutex_unlock(&engine->start_lock);
    for (int i = 0; i < created && rc == 0; i++)
        if (engine->workers[i].init_result < 0) {
            rc = engine->workers[i].init_result;
            if (err)
                *err = engine->workers[i].init_error;
        }
    engine->started = true;
    pthread_mutex_unlock(&engine->lock);
    for (int i = created; i < engine->loop_count; i++)
        if (engine->workers[i].accepts)
            atomic_fetch_sub(&engine->accepting_workers, 1); /* never ran */
    if (rc < 0) {
        ovl_engine_stop(engine);
        return rc;
    }
    return 0;
}

void ovl_engine_request_stop(ovl_engine *engine)
{
    if (atomic_exchange(&engine->stop_requested, 1))
        return;
    /* No command to allocate: a stop must work when memory has run out. Each worker sees the flag at its next look
     * at its queue (seq_cst against ovl__worker_main's store of `ready`, as in worker.c's post()). */
    for (int i = 0; i < engine->loop_count; i++) {
        struct ovl__worker *worker = &engine->workers[i];
        atomic_store(&worker->command_pending, 1);
        if (atomic_load(&worker->ready))
            engine->backend->wake(worker);
    }
}

void ovl_engine_wait(ovl_engine *engine)
{
    /* Not engine->lock while joining: a callback may be blocked on it in ovl_listen, and its worker would then
     * never end. */
    pthread_mutex_lock(&engine->join_lock);
    pthread_mutex_lock(&engine->lock);
    bool join = engine->started && !engine->joined;
    pthread_mutex_unlock(&engine->lock);
    if (join) {
        for (int i = 0; i < engine->loop_count; i++)
            if (engine->workers[i].thread_started)
                pthread_join(engine->workers[i].thread, NULL);
        pthread_mutex_lock(&engine->lock);
        engine->joined = true;
        for (ovl_listener *listener = engine->listeners; listener; listener = listener->next)
            ovl__listener_close(listener);
        pthread_mutex_unlock(&engine->lock);
    }
    pthread_mutex_unlock(&engine->join_lock);
}

void ovl_engine_stop(ovl_engine *engine)
{
    ovl_engine_request_stop(engine);
    ovl_engine_wait(engine);
}

/* The worker arrays of engines whose stop abandoned operations (ovl_engine_destroy), linked by
 * workers[0].abandoned_next. */
static pthread_mutex_t abandoned_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ovl__worker *abandoned_workers;

uint64_t ovl_engine_stop_bound_ms(const ovl_engine *engine)
{
    return engine ? (uint64_t)engine->config.drain_timeout_ms + 2u * (uint64_t)engine->config.stop_grace_ms : 0;
}

void ovl_engine_destroy(ovl_engine *engine)
{
    if (!engine)
        return;
    ovl_engine_stop(engine);
    /* Commands never run (engine not started, or posted after the worker ended). Posts run first, while every
     * worker's pool and backend are still there (their fn may release a buffer or post again, which this loop
     * runs too); the rest only give back what they hold. */
    struct ovl__command *leftover = NULL;
    for (bool ran = true; ran;) {
        ran = false;
        for (int i = 0; i < engine->loop_count; i++) {
            struct ovl__command *list = ovl__worker_take_commands(&engine->workers[i]);
            while (list) {
                struct ovl__command *command = list;
                list = command->next;
                if (command->kind == OVL__CMD_POST) {
                    command->fn(command->arg); /* ovl_post: arg is the embedder's to release */
                    ovl__free(command);
                    ran = true;
                } else {
                    command->next = leftover;
                    leftover = command;
                }
            }
        }
    }
    while (leftover) {
        struct ovl__command *command = leftover;
        leftover = command->next;
        if (command->conn)
            ovl__conn_free_unattached(command->conn);
        if (command->kind == OVL__CMD_ADOPT)
            ovl__socket_close(command->socket);
        ovl__free(command);
    }
    bool leak_workers = false;
    for (int i = 0; i < engine->loop_count; i++) {
        struct ovl__worker *worker = &engine->workers[i];
        if (worker->backend_state)
            engine->backend->worker_destroy(worker);
        /* A worker that abandoned operations at its stop deadline leaks its receive buffers on purpose: a receive
         * the system still holds may write into them (and its connection, already leaked, points at them). */
        if (worker->abandoned)
            leak_workers = true;
        else
            ovl__pool_destroy(&worker->pool);
        pthread_mutex_destroy(&worker->command_lock);
    }
    while (engine->listeners) {
        ovl_listener *listener = engine->listeners;
        engine->listeners = listener->next;
        ovl__listener_close(listener);
        ovl__free(listener);
    }
    pthread_mutex_destroy(&engine->lock);
    pthread_mutex_destroy(&engine->join_lock);
    pthread_mutex_destroy(&engine->start_lock);
    pthread_cond_destroy(&engine->start_cond);
    if (leak_workers) {
        /* What was leaked on purpose (the pools, abandoned connections, the backend's abandoned state) stays
         * reachable from here: a leak checker does not report it, a debugger finds it. */
        pthread_mutex_lock(&abandoned_lock);
        engine->workers[0].abandoned_next = abandoned_workers;
        abandoned_workers = engine->workers;
        pthread_mutex_unlock(&abandoned_lock);
    } else {
        ovl__free(engine->workers);
    }
    ovl__free(engine);
    ovl__net_cleanup();
}

/* ---- listeners and outbound connections ---- */

/* A listener whose sockets are open: every worker accepts on every socket (the kernel hands each new connection to
 * one of them), or the backend's acceptor alone does (backend.h). */
static void listener_publish(ovl_engine *engine, ovl_listener *listener, ovl_listener **out)
{
    pthread_mutex_lock(&engine->lock);
    listener->next = engine->listeners;
    engine->listeners = listener;
    /* Added while the last accepting loop stopped accepting (after its check of stop_requested): nobody will accept
     * on it, so it closes now, as the others did. */
    if (atomic_load(&engine->stop_requested) && engine->started && atomic_load(&engine->accepting_workers) <= 0)
        ovl__listener_close(listener);
    pthread_mutex_unlock(&engine->lock);
    for (int w = 0; w < engine->loop_count; w++)
        for (int s = 0; s < listener->count && engine->workers[w].accepts; s++)
            ovl__worker_post(&engine->workers[w], OVL__CMD_LISTEN, &listener->sockets[s], NULL);
    if (out)
        *out = listener;
}

static ovl_listener *listener_new(ovl_engine *engine, const ovl_callbacks *callbacks, void *user)
{
    ovl_listener *listener = ovl__zalloc(sizeof *listener);
    if (listener) {
        listener->engine = engine;
        listener->callbacks = *callbacks;
        listener->user = user;
    }
    return listener;
}

int ovl_listen(ovl_engine *engine, const char *host, const char *port, const ovl_callbacks *callbacks, void *user,
               ovl_listener **out, ovl_error_info *err)
{
    if (!engine || !port || !callbacks) {
        ovl__error_set(err, -EINVAL, "engine, port and callbacks are required", "listen");
        return -EINVAL;
    }
    if (atomic_load(&engine->stop_requested)) {
        ovl__error_set(err, -ESHUTDOWN, NULL, "listen %s:%s", host ? host : "*", port);
        return -ESHUTDOWN;
    }
#ifdef _WIN32
    if (engine->config.reuse_port) {
        ovl__error_set(err, -EOPNOTSUPP, "Windows has no SO_REUSEPORT", "listen %s:%s", host ? host : "*", port);
        return -EOPNOTSUPP;
    }
#endif
    ovl_listener *listener = listener_new(engine, callbacks, user);
    if (!listener) {
        ovl__error_set(err, -ENOMEM, NULL, "listen %s:%s", host ? host : "*", port);
        return -ENOMEM;
    }
    int rc = ovl__listener_open(engine, listener, host, port, err);
    if (rc < 0) {
        ovl__free(listener);
        return rc;
    }
    listener_publish(engine, listener, out);
    return 0;
}

int ovl_listen_socket(ovl_engine *engine, intptr_t socket, const ovl_callbacks *callbacks, void *user,
                      ovl_listener **out, ovl_error_info *err)
{
    if (!engine || !callbacks) {
        ovl__error_set(err, -EINVAL, "engine and callbacks are required", "listen on socket %lld", (long long)socket);
        return -EINVAL;
    }
    if (atomic_load(&engine->stop_requested)) {
        ovl__error_set(err, -ESHUTDOWN, NULL, "listen on socket %lld", (long long)socket);
        return -ESHUTDOWN;
    }
    ovl_listener *listener = listener_new(engine, callbacks, user);
    if (!listener) {
        ovl__error_set(err, -ENOMEM, NULL, "listen on socket %lld", (long long)socket);
        return -ENOMEM;
    }
    int rc = ovl__listener_adopt(engine, listener, (ovl__socket)socket, err);
    if (rc < 0) {
        ovl__free(listener);
        return rc;
    }
    listener_publish(engine, listener, out);
    return 0;
}

int ovl_listener_port(const ovl_listener *listener)
{
    return listener->port;
}

int ovl_listener_count(const ovl_listener *listener)
{
    return listener->count;
}

const char *ovl_listener_address(const ovl_listener *listener, int index)
{
    if (index < 0 || index >= listener->count)
        return NULL;
    return listener->sockets[index].address;
}

int ovl_connect(ovl_engine *engine, const ovl_target *target, const ovl_callbacks *callbacks, void *user)
{
    if (!engine || !target || !target->addresses || !callbacks)
        return -EINVAL;
    if (atomic_load(&engine->stop_requested))
        return -ESHUTDOWN;
    ovl_conn *conn = ovl__conn_new(engine, OVL__NO_SOCKET, callbacks, user);
    if (!conn)
        return -ENOMEM;
    conn->target = target;
    conn->next_address = target->addresses;
    struct ovl__worker *worker = ovl__current_worker;
    if (worker && worker->engine == engine && !worker->acceptor) { /* the acceptor: from the embedder's log hook */
        /* Stopping: refuse now. Accepting it would promise an on_close, and an application that reconnects from
         * on_close would then loop on this worker for ever. */
        if (worker->stopping) {
            ovl__conn_free_unattached(conn);
            return -ESHUTDOWN;
        }
        ovl__conn_attach(worker, conn);
        ovl__conn_connect_next(conn, 0);
        return 0;
    }
    uint32_t turn = atomic_fetch_add_explicit(&engine->next_worker, 1, memory_order_relaxed);
    struct ovl__worker *owner = ovl__worker_least_loaded(engine, turn);
    if (!owner) /* not started yet: the command waits for the worker */
        owner = &engine->workers[turn % (uint32_t)engine->thread_count];
    int rc = ovl__worker_post(owner, OVL__CMD_CONNECT, NULL, conn);
    if (rc < 0)
        ovl__conn_free_unattached(conn);
    return rc;
}

/* ---- stats ---- */

void ovl_engine_stats(ovl_engine *engine, ovl_stats *out)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; i < engine->loop_count; i++) { /* the acceptor counts what the accepts meet */
        struct ovl__counters *c = &engine->workers[i].counters;
#define OVL__SUM(name, kind, help) out->name += atomic_load_explicit(&c->name, memory_order_relaxed);
        OVL_STATS_FIELDS(OVL__SUM)
#undef OVL__SUM
    }
}
