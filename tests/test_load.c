/*
 * test_load.c - overlap-load ($OVERLAP_LOAD) run as a process against overlap-echo ($OVERLAP_ECHO) on an ephemeral
 * loopback port, and against servers of this test written with plain sockets: one that flips a byte (must be
 * caught, exit non-zero) and one that echoes in small pieces (normal TCP, must not be an error).
 *
 * Self-contained: the processes' output goes to temporary files, which the test reads; every process started here
 * is ended here, by its PID. Every run is short (1 s or less measured, few connections): the machines that run
 * this have 2 cores.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define RUN_TIMEOUT_MS 60000
#define START_TIMEOUT_MS 10000

/* ---- processes ---- */

struct proc {
    pid_t pid;
    int status;
    bool exited;
    char out_path[64], err_path[64];
    char *out, *err;             /* the files' contents once read */
    struct rusage usage;         /* once exited: its peak resident set (ru_maxrss, KiB) among others */
};

enum { MAX_PROCS = 8 };
static pid_t started[MAX_PROCS];

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static void end_children(void)
{
    for (int i = 0; i < MAX_PROCS; i++)
        if (started[i] > 0) {
            kill(started[i], SIGKILL);
            waitpid(started[i], NULL, 0);
            started[i] = 0;
        }
}

TestSuite(load, .fini = end_children, .timeout = 120);

static char *program(const char *variable)
{
    char *path = getenv(variable);
    cr_assert(path && access(path, X_OK) == 0, "%s is not set or not executable (run through meson test)", variable);
    return path;
}

static char *read_file(const char *path)
{
    FILE *file = fopen(path, "rb");
    cr_assert(file, "%s: %s", path, strerror(errno));
    size_t size = 0, capacity = 4096;
    char *text = malloc(capacity);
    cr_assert(text);
    size_t n;
    while ((n = fread(text + size, 1, capacity - size - 1, file)) > 0) {
        size += n;
        if (capacity - size < 2) {
            capacity *= 2;
            text = realloc(text, capacity);
            cr_assert(text);
        }
    }
    fclose(file);
    text[size] = '\0';
    return text;
}

/* Start argv with stdout and stderr going to temporary files. */
static void proc_start(struct proc *p, char *const argv[])
{
    memset(p, 0, sizeof *p);
    snprintf(p->out_path, sizeof p->out_path, "/tmp/test-load-out-XXXXXX");
    snprintf(p->err_path, sizeof p->err_path, "/tmp/test-load-err-XXXXXX");
    int out = mkstemp(p->out_path), err = mkstemp(p->err_path);
    cr_assert(out >= 0 && err >= 0, "mkstemp: %s", strerror(errno));
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out, 1);
    posix_spawn_file_actions_adddup2(&actions, err, 2);
    posix_spawn_file_actions_addclose(&actions, out);
    posix_spawn_file_actions_addclose(&actions, err);
    int rc = posix_spawn(&p->pid, argv[0], &actions, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    close(out);
    close(err);
    cr_assert(rc == 0, "posix_spawn %s: %s", argv[0], strerror(rc));
    for (int i = 0; i < MAX_PROCS; i++)
        if (started[i] <= 0) {
            started[i] = p->pid;
            break;
        }
}

static void forget(pid_t pid)
{
    for (int i = 0; i < MAX_PROCS; i++)
        if (started[i] == pid)
            started[i] = 0;
}

/* Wait for the process to exit (SIGKILL after timeout_ms), then read its output. Returns false on timeout. */
static bool proc_wait(struct proc *p, unsigned timeout_ms)
{
    uint64_t deadline = now_ms() + timeout_ms;
    bool in_time = true;
    for (;;) {
        pid_t rc = wait4(p->pid, &p->status, WNOHANG, &p->usage);
        if (rc == p->pid)
            break;
        if (now_ms() > deadline) {
            kill(p->pid, SIGKILL);
            wait4(p->pid, &p->status, 0, &p->usage);
            in_time = false;
            break;
        }
        sleep_ms(10);
    }
    forget(p->pid);
    p->exited = true;
    p->out = read_file(p->out_path);
    p->err = read_file(p->err_path);
    unlink(p->out_path);
    unlink(p->err_path);
    return in_time;
}

static int exit_code(const struct proc *p)
{
    return WIFEXITED(p->status) ? WEXITSTATUS(p->status) : 128 + WTERMSIG(p->status);
}

static void proc_free(struct proc *p)
{
    free(p->out);
    free(p->err);
    p->out = p->err = NULL;
}

/* ---- overlap-echo ---- */

/* Start overlap-echo on 127.0.0.1, an ephemeral port; returns the port from its "listening on" line. */
/* overlap-echo on 127.0.0.1, an ephemeral port and one worker, with `extra` arguments (NULL-terminated, or NULL);
 * returns the port it listens on. */
static int echo_start_with(struct proc *server, char *const extra[])
{
    char *argv[16] = {program("OVERLAP_ECHO"), "--host", "127.0.0.1", "--port", "0", "--threads", "1"};
    size_t argc = 7;
    for (size_t i = 0; extra && extra[i]; i++) {
        cr_assert(argc + 1 < sizeof argv / sizeof argv[0], "too many overlap-echo arguments");
        argv[argc++] = extra[i];
    }
    argv[argc] = NULL;
    proc_start(server, argv);
    uint64_t deadline = now_ms() + START_TIMEOUT_MS;
    while (now_ms() < deadline) {
        char *text = read_file(server->out_path);
        const char *line = strstr(text, "listening on 127.0.0.1:");
        int port = line ? atoi(line + strlen("listening on 127.0.0.1:")) : 0;
        free(text);
        if (port > 0)
            return port;
        cr_assert(waitpid(server->pid, &server->status, WNOHANG) == 0, "overlap-echo exited before listening");
        sleep_ms(20);
    }
    cr_assert_fail("overlap-echo printed no 'listening on 127.0.0.1:' line in %d ms", START_TIMEOUT_MS);
    return 0;
}

static int echo_start(struct proc *server)
{
    return echo_start_with(server, NULL);
}

/* SIGTERM: overlap-echo finishes its connections and exits 0. */
static void echo_stop(struct proc *server)
{
    kill(server->pid, SIGTERM);
    cr_assert(proc_wait(server, 15000), "overlap-echo did not exit after SIGTERM");
    cr_expect(exit_code(server) == 0, "overlap-echo exit %d; stderr: %s", exit_code(server), server->err);
    proc_free(server);
}

/* ---- overlap-load ---- */

/* Run overlap-load HOST --port PORT extra... to completion; returns its exit code, output in *run. */
static int load(struct proc *run, const char *host, int port, const char *const extra[])
{
    char port_text[16];
    snprintf(port_text, sizeof port_text, "%d", port);
    char *argv[32];
    int n = 0;
    argv[n++] = program("OVERLAP_LOAD");
    if (host)
        argv[n++] = (char *)host;
    if (port) {
        argv[n++] = "--port";
        argv[n++] = port_text;
    }
    for (int i = 0; extra[i] && n < 31; i++)
        argv[n++] = (char *)extra[i];
    argv[n] = NULL;
    proc_start(run, argv);
    cr_assert(proc_wait(run, RUN_TIMEOUT_MS), "overlap-load did not finish in %d ms; stdout %s stderr %s",
              RUN_TIMEOUT_MS, run->out, run->err);
    cr_log_info("overlap-load exit %d\nstdout: %s\nstderr: %s", exit_code(run), run->out, run->err);
    return exit_code(run);
}

/* The number after `key` ("\"msgs\":") in the JSON text; the key must be there. */
static double json_number(const char *json, const char *key)
{
    const char *at = strstr(json, key);
    cr_assert(at, "'%s' not in %s", key, json);
    return strtod(at + strlen(key), NULL);
}

/* The JSON parses with Python's json module and `check` (a Python expression over d) holds. */
static void json_check(const char *json, const char *check)
{
    char path[] = "/tmp/test-load-json-XXXXXX", script[] = "/tmp/test-load-py-XXXXXX";
    int fd = mkstemp(path), script_fd = mkstemp(script);
    cr_assert(fd >= 0 && script_fd >= 0);
    size_t len = strlen(json);
    cr_assert(write(fd, json, len) == (ssize_t)len);
    close(fd);
    FILE *py = fdopen(script_fd, "w");
    cr_assert(py);
    fprintf(py, "import json, sys\nd = json.load(open(sys.argv[1]))\nsys.exit(0 if (%s) else 3)\n", check);
    fclose(py);
    char command[256];
    snprintf(command, sizeof command, "python3 %s %s", script, path);
    int rc = system(command);
    unlink(path);
    unlink(script);
    cr_assert(WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "JSON check '%s' failed (status %d) on: %s", check, rc, json);
}

static void assert_clean(const struct proc *run, int code, double min_msgs)
{
    cr_assert(code == 0, "exit %d; stdout %s stderr %s", code, run->out, run->err);
    cr_assert(json_number(run->out, "\"errors\":{\"total\":") == 0, "%s", run->out);
    cr_assert(json_number(run->out, "\"msgs\":") >= min_msgs, "%s", run->out);
}

/* ---- a server of this test, plain sockets: echoes with one byte flipped, or in small pieces ---- */

enum bad_mode { FLIP_ONE_BYTE, SMALL_PIECES };

struct bad_server {
    int listen_fd;
    int port;
    enum bad_mode mode;
    uint64_t flip_at;            /* FLIP_ONE_BYTE: stream offset of the byte flipped, on the first connection */
    _Atomic int stop;
    _Atomic int flipped;
    pthread_t thread;
};

static int send_all(int fd, const unsigned char *data, size_t len)
{
    while (len) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* One connection at a time (the tests give it one), blocking I/O with a poll so that stop is seen. */
static void *bad_server_main(void *arg)
{
    struct bad_server *s = arg;
    bool first = true;
    while (!atomic_load(&s->stop)) {
        struct pollfd listen_poll = {.fd = s->listen_fd, .events = POLLIN};
        if (poll(&listen_poll, 1, 50) <= 0)
            continue;
        int fd = accept(s->listen_fd, NULL, NULL);
        if (fd < 0)
            continue;
        uint64_t offset = 0;
        unsigned piece = 1;
        while (!atomic_load(&s->stop)) {
            struct pollfd conn_poll = {.fd = fd, .events = POLLIN};
            if (poll(&conn_poll, 1, 50) <= 0)
                continue;
            unsigned char data[65536];
            ssize_t n = recv(fd, data, sizeof data, 0);
            if (n <= 0)
                break;
            if (s->mode == FLIP_ONE_BYTE) {
                if (first && s->flip_at >= offset && s->flip_at < offset + (uint64_t)n) {
                    data[s->flip_at - offset] ^= 0x20;
                    atomic_store(&s->flipped, 1);
                }
                if (send_all(fd, data, (size_t)n) < 0)
                    break;
            } else {
                /* 1..7 bytes at a time, each its own segment (TCP_NODELAY is not needed: the sleeps split them). */
                size_t done = 0;
                while (done < (size_t)n) {
                    size_t len = piece < (size_t)n - done ? piece : (size_t)n - done;
                    if (send_all(fd, data + done, len) < 0)
                        break;
                    done += len;
                    piece = piece % 7 + 1;
                    if (done < (size_t)n) {
                        struct timespec pause = {.tv_sec = 0, .tv_nsec = 20000};
                        nanosleep(&pause, NULL);
                    }
                }
            }
            offset += (uint64_t)n;
        }
        first = false;
        close(fd);
    }
    return NULL;
}

/* A listening socket on 127.0.0.1, an ephemeral port (in *port). */
static int listen_loopback(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(fd >= 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof address;
    cr_assert(bind(fd, (struct sockaddr *)&address, sizeof address) == 0, "bind: %s", strerror(errno));
    cr_assert(listen(fd, 64) == 0);
    cr_assert(getsockname(fd, (struct sockaddr *)&address, &len) == 0);
    *port = ntohs(address.sin_port);
    return fd;
}

static void bad_server_start(struct bad_server *s, enum bad_mode mode)
{
    memset(s, 0, sizeof *s);
    s->mode = mode;
    s->flip_at = 1000;
    s->listen_fd = listen_loopback(&s->port);
    cr_assert(pthread_create(&s->thread, NULL, bad_server_main, s) == 0);
}

static void bad_server_stop(struct bad_server *s)
{
    atomic_store(&s->stop, 1);
    pthread_join(s->thread, NULL);
    close(s->listen_fd);
}

/* ---- a server of this test that never answers every 4th connection it accepts ---- */

enum { PARTIAL_MAX = 64 };

struct partial_server {
    int listen_fd;
    int port;
    _Atomic int stop;
    _Atomic int accepted, starved;
    pthread_t thread;
};

/* One thread, poll over the listener and every connection: connections 4, 8, 12, ... (1-based) are accepted and
 * held open but never read, so their clients wait for echoes that never come. */
static void *partial_server_main(void *arg)
{
    struct partial_server *s = arg;
    struct pollfd fds[1 + PARTIAL_MAX];
    bool answer[1 + PARTIAL_MAX];
    int count = 1;
    fds[0] = (struct pollfd){.fd = s->listen_fd, .events = POLLIN};
    while (!atomic_load(&s->stop)) {
        if (poll(fds, (nfds_t)count, 50) <= 0)
            continue;
        for (int i = count - 1; i >= 1; i--) {
            if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            unsigned char data[65536];
            ssize_t n = recv(fds[i].fd, data, sizeof data, 0);
            if (n <= 0 || send_all(fds[i].fd, data, (size_t)n) < 0) {
                close(fds[i].fd);
                fds[i] = fds[count - 1];
                answer[i] = answer[count - 1];
                count--;
            }
        }
        if ((fds[0].revents & POLLIN) && count < 1 + PARTIAL_MAX) {
            int fd = accept(s->listen_fd, NULL, NULL);
            if (fd < 0)
                continue;
            int k = atomic_fetch_add(&s->accepted, 1) + 1;
            fds[count] = (struct pollfd){.fd = fd, .events = k % 4 == 0 ? 0 : POLLIN};
            answer[count] = k % 4 != 0;
            if (!answer[count])
                atomic_fetch_add(&s->starved, 1);
            count++;
        }
    }
    for (int i = 1; i < count; i++)
        close(fds[i].fd);
    return NULL;
}

static void partial_server_start(struct partial_server *s)
{
    memset(s, 0, sizeof *s);
    s->listen_fd = listen_loopback(&s->port);
    cr_assert(pthread_create(&s->thread, NULL, partial_server_main, s) == 0);
}

static void partial_server_stop(struct partial_server *s)
{
    atomic_store(&s->stop, 1);
    pthread_join(s->thread, NULL);
    close(s->listen_fd);
}

/* ---- a server of this test that resets every connection at once ---- */

enum { RESET_MAX = 8 };

struct reset_server {
    int listen_fd;
    int port;
    int expected;                /* connections to wait for */
    _Atomic int reset;           /* how many it reset */
    pthread_t thread;
};

/* Accept `expected` connections, wait until each has sent something (so each owes an echo), then reset them all
 * in one go (SO_LINGER 0): the client's connections fail at the same moment, on as many threads as it has. */
static void *reset_server_main(void *arg)
{
    struct reset_server *s = arg;
    int fds[RESET_MAX];
    int count = 0;
    uint64_t deadline = now_ms() + 10000;
    while (count < s->expected && now_ms() < deadline) {
        struct pollfd listen_poll = {.fd = s->listen_fd, .events = POLLIN};
        if (poll(&listen_poll, 1, 50) > 0) {
            int fd = accept(s->listen_fd, NULL, NULL);
            if (fd >= 0)
                fds[count++] = fd;
        }
    }
    for (int i = 0; i < count; i++) {
        struct pollfd conn_poll = {.fd = fds[i], .events = POLLIN};
        if (poll(&conn_poll, 1, (int)(deadline > now_ms() ? deadline - now_ms() : 0)) > 0) {
            unsigned char data[65536];
            if (recv(fds[i], data, sizeof data, 0) < 0) {
                /* the reset below happens either way */
            }
        }
    }
    struct linger abort_close = {.l_onoff = 1, .l_linger = 0};
    for (int i = 0; i < count; i++)
        setsockopt(fds[i], SOL_SOCKET, SO_LINGER, &abort_close, sizeof abort_close);
    for (int i = 0; i < count; i++)
        close(fds[i]);
    atomic_store(&s->reset, count);
    return NULL;
}

static void reset_server_start(struct reset_server *s, int expected)
{
    memset(s, 0, sizeof *s);
    s->expected = expected;
    s->listen_fd = listen_loopback(&s->port);
    cr_assert(pthread_create(&s->thread, NULL, reset_server_main, s) == 0);
}

static void reset_server_stop(struct reset_server *s)
{
    pthread_join(s->thread, NULL);
    close(s->listen_fd);
}

/* A port nothing listens on: bound, then closed (nobody else takes it in the moment the test needs). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof address;
    cr_assert(bind(fd, (struct sockaddr *)&address, sizeof address) == 0);
    cr_assert(getsockname(fd, (struct sockaddr *)&address, &len) == 0);
    close(fd);
    return ntohs(address.sin_port);
}

/* ---- the tests ---- */

Test(load, ping_pong_is_clean_and_json_parses)
{
    struct proc server, run;
    int port = echo_start(&server);
    const char *args[] = {"--connections", "4", "--duration", "1", "--warmup", "0.2", "--json", NULL};
    int code = load(&run, "127.0.0.1", port, args);
    assert_clean(&run, code, 200);
    json_check(run.out, "d['errors']['total'] == 0 and d['msgs'] > 200 and abs(d['bytes'] - 64 * d['msgs']) <= 4 * 64 and "
                        "d['config']['connections'] == 4 and d['config']['pipeline'] == 1 and "
                        "0 < d['latency_us']['p50'] <= d['latency_us']['p90'] <= d['latency_us']['p99'] <= "
                        "d['latency_us']['p99_9'] <= d['latency_us']['max'] and d['latency_us']['samples'] == d['msgs'] "
                        "and d['connects'] == 4 and abs(d['msgs_per_s'] * d['seconds'] - d['msgs']) < 2 and "
                        "0.9 < d['seconds'] < 10");
    /* The window is about --duration; its upper bound is far from it because a busy machine wakes the run's main
     * thread late (1.8 s was seen at load average 20): the test checks the report, not the machine's speed. */
    /* The readable summary goes to stderr when stdout carries the JSON. */
    cr_expect(strstr(run.err, "latency") && strstr(run.err, "p99.9"), "stderr: %s", run.err);
    proc_free(&run);
    echo_stop(&server);
}

Test(load, readable_summary_without_json)
{
    struct proc server, run;
    int port = echo_start(&server);
    const char *args[] = {"--connections", "2", "--duration", "0.5", "--warmup", "0", NULL};
    int code = load(&run, "127.0.0.1", port, args);
    cr_assert(code == 0, "exit %d: %s %s", code, run.out, run.err);
    cr_assert(strstr(run.out, "msgs/s") && strstr(run.out, "p50") && strstr(run.out, "p99.9") &&
                  strstr(run.out, "max") && strstr(run.out, "errors      0"),
              "stdout: %s", run.out);
    cr_assert(run.out[0] == 'o' && !strchr(run.out, '{'), "not the readable summary: %s", run.out);
    proc_free(&run);
    echo_stop(&server);
}

Test(load, pipelined_large_messages_are_clean)
{
    struct proc server, run;
    int port = echo_start(&server);
    const char *args[] = {"--connections", "2", "--size", "5000", "--pipeline", "8", "--duration", "1", "--warmup",
                          "0.2", "--json", NULL};
    int code = load(&run, "127.0.0.1", port, args);
    assert_clean(&run, code, 100);
    /* bytes counts what arrived in the window, msgs the messages completed in it: they differ by the partial
     * messages at its edges, at most what is in flight. */
    json_check(run.out, "abs(d['bytes'] - 5000 * d['msgs']) <= 2 * 8 * 5000 and d['config']['size'] == 5000 and "
                        "d['config']['pipeline'] == 8 and d['mb_per_s'] > 0");
    proc_free(&run);
    echo_stop(&server);
}

Test(load, flipped_byte_is_a_verification_error)
{
    struct bad_server bad;
    bad_server_start(&bad, FLIP_ONE_BYTE);
    struct proc run;
    const char *args[] = {"--connections", "1", "--size", "100", "--duration", "1", "--warmup", "0", "--json", NULL};
    int code = load(&run, "127.0.0.1", bad.port, args);
    bad_server_stop(&bad);
    cr_assert(atomic_load(&bad.flipped), "the test server never reached byte %llu", (unsigned long long)bad.flip_at);
    cr_assert(code != 0, "a corrupted echo passed: %s", run.out);
    cr_assert(json_number(run.out, "\"mismatch\":") >= 1, "%s", run.out);
    cr_assert(strstr(run.out, "echoed byte 1000 (message 10, byte 0)"), "the first error names the byte: %s", run.out);
    cr_assert(strstr(run.err, "error"), "stderr: %s", run.err);
    json_check(run.out, "d['errors']['mismatch'] >= 1 and d['errors']['total'] >= 1 and d['first_error']");
    proc_free(&run);
}

Test(load, echo_in_small_pieces_is_not_an_error)
{
    struct bad_server pieces;
    bad_server_start(&pieces, SMALL_PIECES);
    struct proc run;
    const char *args[] = {"--connections", "1", "--size", "300", "--pipeline", "3", "--duration", "1", "--warmup",
                          "0", "--json", NULL};
    int code = load(&run, "127.0.0.1", pieces.port, args);
    bad_server_stop(&pieces);
    assert_clean(&run, code, 10);
    proc_free(&run);
}

Test(load, once_prints_the_seed_lines)
{
    struct proc server, run;
    int port = echo_start(&server);
    const char *args[] = {"--once", NULL};
    int code = load(&run, "127.0.0.1", port, args);
    cr_assert(code == 0, "exit %d: %s %s", code, run.out, run.err);
    cr_assert_str_eq(run.out, "Bytes Sent: 14\nBytes received: 14\nConnection closed\n");
    proc_free(&run);
    echo_stop(&server);
}

Test(load, churn_reconnects_and_reports_connects)
{
    struct proc server, run;
    int port = echo_start(&server);
    const char *args[] = {"--connections", "2", "--churn", "3", "--duration", "1", "--warmup", "0.2", "--json", NULL};
    int code = load(&run, "127.0.0.1", port, args);
    assert_clean(&run, code, 30);
    double connects = json_number(run.out, "\"connects\":");
    double in_window = json_number(run.out, "\"connects_in_window\":");
    cr_assert(connects > 20 && in_window > 10, "only %.0f connects (%.0f in the window): %s", connects, in_window,
              run.out);
    /* Each connection carries 3 echoes, so the connects in the window are about a third of the messages. */
    double msgs = json_number(run.out, "\"msgs\":");
    cr_assert(in_window * 3 > msgs * 0.8 && in_window * 3 < msgs * 1.2 + 10, "%.0f connects for %.0f messages",
              in_window, msgs);
    json_check(run.out, "d['connects_per_s'] > 10 and d['connect_latency_us']['samples'] == d['connects'] and "
                        "d['connect_latency_us']['p99'] > 0");
    proc_free(&run);
    echo_stop(&server);
}

Test(load, open_loop_never_outruns_its_schedule)
{
    struct proc server, run;
    int port = echo_start(&server);
    const char *args[] = {"--connections", "4", "--rate", "2000", "--duration", "1", "--warmup", "0.2", "--json",
                          NULL};
    int code = load(&run, "127.0.0.1", port, args);
    assert_clean(&run, code, 1);
    /* Behaviour only: how close a busy machine lets the client keep the schedule is for a benchmark (an assertion
     * on it failed CI at 1,275 of 2,000 msgs/s, and a floor of 1,000 messages in the window still asked for half
     * the rate). The schedule is an upper bound a busy machine cannot push it past: by the window's end 2000 x 1.2
     * s of messages were due, however late some of them left. */
    double msgs = json_number(run.out, "\"msgs\":");
    cr_assert(msgs > 0 && msgs <= 2000 * 1.2 + 4, "asked 2000 msgs/s for 1 s after 0.2 s, got %.0f messages: %s",
              msgs, run.out);
    json_check(run.out, "d['config']['rate'] == 2000 and d['latency_us']['p99'] > 0 and "
                        "d['client_lag_us']['samples'] > 0");
    proc_free(&run);
    echo_stop(&server);
}

/* SIGTERM while overlap-load keeps 8 pipelined 4 KiB messages in flight on each of 20 connections: whatever
 * overlap-echo had read when the stop came, it echoes before its FIN; what the clients sent after that is counted as
 * discarded, not read and lost. In the summary, bytes in == bytes out (3a54125: one pipeline window per connection
 * more in than out). */
Test(load, stop_under_pipelined_load_echoes_what_it_read)
{
    struct proc server, run;
    int port = echo_start_with(&server, (char *[]){"--stats", "0.1", "--stats-format", "json", NULL});
    char port_text[16];
    snprintf(port_text, sizeof port_text, "%d", port);
    char *argv[] = {program("OVERLAP_LOAD"), "127.0.0.1", "--port", port_text, "--connections", "20", "--pipeline",
                    "8", "--size", "4096", "--duration", "30", "--warmup", "0", NULL};
    proc_start(&run, argv);
    /* The stop comes under load: once a stats line shows 20 connections open and bytes read (not after a fixed
     * sleep, which a slow start under a sanitizer could outlast). overlap-load's 30 s are only a bound: it is ended
     * once the server has exited, and only the server's summary is asserted. */
    uint64_t deadline = now_ms() + START_TIMEOUT_MS;
    bool loaded = false;
    while (!loaded && now_ms() < deadline) {
        sleep_ms(50);
        char *text = read_file(server.out_path);
        const char *last = NULL;
        for (const char *at = text; (at = strstr(at, "\"conns_open\":")) != NULL; at++)
            last = at;
        if (last) {
            const char *in = strstr(last, "\"bytes_in\":");
            loaded = atoi(last + strlen("\"conns_open\":")) == 20 && in &&
                     strtoull(in + strlen("\"bytes_in\":"), NULL, 10) > 0;
        }
        free(text);
    }
    cr_assert(loaded, "overlap-echo's stats showed no load from 20 connections in %d ms: %s", START_TIMEOUT_MS,
              server.out_path);
    kill(server.pid, SIGTERM);
    cr_assert(proc_wait(&server, 15000), "overlap-echo did not exit after SIGTERM");
    kill(run.pid, SIGTERM);
    cr_assert(proc_wait(&run, RUN_TIMEOUT_MS), "overlap-load did not end after SIGTERM");
    const char *summary = strstr(server.out, "overlap-echo: stopped");
    cr_assert(summary, "no summary: %s", server.out);
    const char *in = strstr(summary, "bytes in "), *out = strstr(summary, "bytes out ");
    cr_assert(in && out, "%s", summary);
    unsigned long long bytes_in = strtoull(in + strlen("bytes in "), NULL, 10);
    unsigned long long bytes_out = strtoull(out + strlen("bytes out "), NULL, 10);
    cr_log_info("stop under pipelined load: %s", summary);
    cr_assert(bytes_in > 0, "%s", summary);
    cr_assert_eq(bytes_in, bytes_out, "read %llu bytes and echoed %llu: %s", bytes_in, bytes_out, summary);
    cr_expect(exit_code(&server) == 0, "overlap-echo exit %d", exit_code(&server));
    proc_free(&server);
    proc_free(&run);
}

Test(load, connect_rate_ramps_up)
{
    struct proc server, run;
    int port = echo_start(&server);
    const char *args[] = {"--connections", "5", "--connect-rate", "20", "--duration", "0.5", "--warmup", "0",
                          "--json", NULL};
    uint64_t begin = now_ms();
    int code = load(&run, "127.0.0.1", port, args);
    uint64_t took = now_ms() - begin;
    assert_clean(&run, code, 10);
    cr_assert(json_number(run.out, "\"connects\":") == 5, "%s", run.out);
    /* 5 connections at 20/s: the last starts 200 ms after the first. */
    cr_assert(took >= 700, "the run took %llu ms: the connections were not paced", (unsigned long long)took);
    json_check(run.out, "d['connect_latency_us']['samples'] == 5 and d['config']['connect_rate'] == 20");
    proc_free(&run);
    echo_stop(&server);
}

Test(load, target_p99_search_reports_a_rate)
{
    struct proc server, run;
    int port = echo_start(&server);
    /* A 200 ms target: every rate below the ceiling meets it on loopback. */
    const char *args[] = {"--connections", "2", "--target-p99", "200000", "--duration", "0.3", "--warmup", "0",
                          "--json", NULL};
    int code = load(&run, "127.0.0.1", port, args);
    cr_assert(code == 0, "exit %d: %s %s", code, run.out, run.err);
    json_check(run.out, "d['search']['best_rate'] > 0 and len(d['search']['trials']) >= 2 and "
                        "d['search']['trials'][0]['rate'] == 0 and d['errors']['total'] == 0");
    proc_free(&run);
    echo_stop(&server);
}

Test(load, server_not_there_is_connection_refused)
{
    struct proc run;
    int port = free_port();
    const char *args[] = {"--connections", "2", "--duration", "1", NULL};
    int code = load(&run, "localhost", port, args);
    cr_assert(code != 0, "exit 0 without a server: %s", run.out);
    char expected[128];
    snprintf(expected, sizeof expected, "overlap-load: connect localhost:%d: Connection refused\n", port);
    cr_assert(strstr(run.err, expected), "stderr: %s", run.err);
    proc_free(&run);

    const char *once[] = {"--once", NULL};
    code = load(&run, "localhost", port, once);
    cr_assert(code != 0);
    cr_assert(strstr(run.err, expected), "stderr: %s", run.err);
    proc_free(&run);
}

Test(load, bad_arguments_get_a_message_and_usage)
{
    static const char *const cases[][4] = {
        {"--connections", "0", "--connections", NULL},
        {"--size", "12x", "--size", NULL},
        {"--pipeline", "-1", "--pipeline", NULL},
        {"--duration", "soon", "--duration", NULL},
        {"--rate", "0", "--rate", NULL},
        {"--frobnicate", NULL, "unknown option '--frobnicate'", NULL},
        {"--port", NULL, "--port needs a value", NULL},
        {"--json=1", NULL, "--json takes no value", NULL},
        {"--hdr-interval", "0", "--hdr-interval", NULL},
        {"--hdr-interval", "2", "give --hdr-log too", NULL},
        {"--hdr-tag", "a,b", "--hdr-tag", NULL},
        {"--hdr-log", "", "--hdr-log", NULL},
        {"--start-at", "5", "is not a Unix time", NULL},
        {"--share", "3/2", "--share", NULL},
        {"--share", "1/2", "give --rate", NULL},
        {"--model", "io_uring", "--model: 'io_uring' is not a client model", NULL},
        /* The engine's options, parsed by programs/common: named in the message; those of a server refused. */
        {"--threads", "257", "--threads: '257' is not a thread count (0-256", NULL},
        {"--busy-poll", "-1", "--busy-poll", NULL},
        {"--buffer-count", "32768", "--buffer-size 65536 x --buffer-count 32768 is 2048 MiB", NULL},
        {"--connect-timeout", "1e1", "--connect-timeout", NULL},
        {"--backend", NULL, "--backend needs a value", NULL},
        {"--metrics", ":9100", "unknown option '--metrics'", NULL},
        {"--drain-timeout", "1", "unknown option '--drain-timeout'", NULL},
        {"--idle-timeout", "1", "unknown option '--idle-timeout'", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct proc run;
        const char *args[] = {cases[i][0], cases[i][1], NULL};
        int code = load(&run, NULL, 0, args);
        cr_assert(code == 2, "%s %s: exit %d", cases[i][0], cases[i][1] ? cases[i][1] : "", code);
        cr_assert(strstr(run.err, "overlap-load: ") && strstr(run.err, cases[i][2]) && strstr(run.err, "usage:"),
                  "%s: stderr %s", cases[i][0], run.err);
        proc_free(&run);
    }
    struct proc help;
    const char *args[] = {"--help", NULL};
    cr_assert(load(&help, NULL, 0, args) == 0);
    cr_assert(strstr(help.out, "--target-p99") && strstr(help.out, "--churn"), "%s", help.out);
    proc_free(&help);
}

/* ---- client models and fairness ---- */

static const char *const models[] = {"uring", "epoll", "threads"};

Test(load, every_model_echoes_cleanly)
{
    struct proc server, run;
    int port = echo_start(&server);
    for (size_t m = 0; m < sizeof models / sizeof models[0]; m++) {
        const char *args[] = {"--model", models[m], "--connections", "4", "--pipeline", "2", "--size", "300",
                              "--duration", "1", "--warmup", "0.2", "--json", NULL};
        int code = load(&run, "127.0.0.1", port, args);
        assert_clean(&run, code, 100);
        char check[512];
        snprintf(check, sizeof check,
                 "d['config']['model'] == '%s' and d['connects'] == 4 and d['latency_us']['samples'] == d['msgs'] "
                 "and d['latency_us']['p99'] > 0 and d['connect_latency_us']['samples'] == 4 and "
                 "d['bytes_total'] >= 300 * d['msgs'] and d['fairness']['connections'] == 4 and "
                 "0 < d['fairness']['min'] <= d['fairness']['median'] <= d['fairness']['max'] and "
                 "0.25 <= d['fairness']['jain'] <= 1",
                 models[m]);
        json_check(run.out, check);
        cr_expect(strstr(run.err, "fairness"), "%s: no fairness line: %s", models[m], run.err);
        proc_free(&run);
    }
    echo_stop(&server);
}

/* A thread per connection must not bring a latency histogram (248 KiB) of its own per thread: with transparent huge
 * pages each touched one took up to 2 MiB, and 1000 connections took 1 GB. Threads now share a few sets. */
Test(load, threads_model_memory_does_not_grow_with_threads)
{
    struct proc server, run;
    int port = echo_start(&server);
    const char *args[] = {"--model", "threads", "--connections", "500", "--duration", "1", "--warmup", "0.2",
                          "--json", NULL};
    int code = load(&run, "127.0.0.1", port, args);
    assert_clean(&run, code, 1); /* how many is a rate (500 threads under TSan): the memory is what is asserted */
    /* A sanitizer's shadow memory and per-thread state are not overlap-load's: there the bound says nothing. */
    const char *sanitize = getenv("OVERLAP_SANITIZE");
    if (sanitize && *sanitize && strcmp(sanitize, "none") != 0)
        fprintf(stderr, "load::threads_model_memory_does_not_grow_with_threads: peak not checked under %s (%ld KiB)\n",
                sanitize, run.usage.ru_maxrss);
    else
        cr_expect_lt(run.usage.ru_maxrss, 128 * 1024, "500 threads peaked at %ld KiB", run.usage.ru_maxrss);
    proc_free(&run);
    echo_stop(&server);
}

Test(load, every_model_keeps_an_open_loop_schedule)
{
    struct proc server, run;
    int port = echo_start(&server);
    for (size_t m = 0; m < sizeof models / sizeof models[0]; m++) {
        const char *args[] = {"--model", models[m], "--connections", "3", "--rate", "1000", "--duration", "1",
                              "--warmup", "0.2", "--json", NULL};
        int code = load(&run, "127.0.0.1", port, args);
        assert_clean(&run, code, 1);
        /* Never ahead of the schedule: 1000 x 1.2 s were due by the window's end. */
        double msgs = json_number(run.out, "\"msgs\":");
        cr_assert(msgs <= 1000 * 1.2 + 3, "%s: %.0f messages at 1000/s for 1 s: %s", models[m], msgs, run.out);
        json_check(run.out, "d['client_lag_us']['samples'] > 0 and d['config']['rate'] == 1000");
        proc_free(&run);
    }
    echo_stop(&server);
}

/* --threads 0 is the CPUs overlap-load may use (its affinity, which it inherits from this test), for the engine
 * model and the epoll model alike: one helper counts them for both. */
Test(load, threads_0_is_the_cpus_it_may_use_under_every_model)
{
    struct proc server, run;
    int port = echo_start(&server);
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(sched_getcpu() > 0 ? sched_getcpu() : 0, &one);
    cr_assert(sched_setaffinity(0, sizeof one, &one) == 0, "sched_setaffinity: %s", strerror(errno));
    for (size_t m = 0; m < 2; m++) { /* uring, epoll: --model threads has a thread per connection */
        const char *args[] = {"--model", models[m], "--threads", "0", "--connections", "4", "--duration", "0.3",
                              "--warmup", "0", "--json", NULL};
        int code = load(&run, "127.0.0.1", port, args);
        assert_clean(&run, code, 1);
        cr_assert(json_number(run.out, "\"threads\":") == 1, "%s: one CPU allowed: %s", models[m], run.out);
        proc_free(&run);
    }
    echo_stop(&server);
}

Test(load, a_model_refuses_what_it_cannot_honour)
{
    static const char *const cases[][4] = {
        {"epoll", "--churn", "5", "--churn: only --model uring"},
        {"threads", "--busy-poll", "0", "--busy-poll: only --model uring"},
        {"epoll", "--backend", "epoll", "--backend: only --model uring"},
        {"threads", "--target-p99", "100", "--target-p99: only --model uring"},
        {"epoll", "--hdr-log", "/tmp/never-written.hlog", "--hdr-log: only --model uring"},
        {"threads", "--threads", "2", "--threads: --model threads"},
        {"threads", "--connections", "5000", "--connections: 5000"},
        {"threads", "--pipeline", "32", "--pipeline:"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct proc run;
        /* --pipeline 32 with --size 4096 is 128 KiB in flight: more than a blocking thread may write unread. */
        const char *args[] = {"--model", cases[i][0], cases[i][1], cases[i][2], "--size", "4096", NULL};
        int code = load(&run, "127.0.0.1", 9, args);
        cr_assert(code == 2, "--model %s %s %s: exit %d", cases[i][0], cases[i][1], cases[i][2], code);
        cr_assert(strstr(run.err, cases[i][3]), "--model %s %s: stderr %s", cases[i][0], cases[i][1], run.err);
        proc_free(&run);
    }
    struct proc run;
    const char *rate[] = {"--model", "threads", "--rate", "100", "--pipeline", "2", NULL};
    cr_assert(load(&run, "127.0.0.1", 9, rate) == 2);
    cr_assert(strstr(run.err, "--pipeline: with --rate, --model threads"), "stderr %s", run.err);
    proc_free(&run);
}

/* A server that drops SYNs (its accept queue full, nobody accepting): the socket models, like the engine, give up
 * on a connect after --connect-timeout's default of 10 s. They waited for the kernel's own give-up (about two
 * minutes) instead, and overlap-load with them. */
Test(load, socket_models_bound_a_connect_nobody_answers)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(fd >= 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof address;
    cr_assert(bind(fd, (struct sockaddr *)&address, sizeof address) == 0, "bind: %s", strerror(errno));
    cr_assert(listen(fd, 0) == 0);
    cr_assert(getsockname(fd, (struct sockaddr *)&address, &len) == 0);
    int port = ntohs(address.sin_port);
    /* Fill the accept queue, so the connects under test get no SYN-ACK. */
    int fillers[4];
    for (int i = 0; i < 4; i++) {
        fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fillers[i], (struct sockaddr *)&address, sizeof address);
    }
    sleep_ms(200);
    for (size_t m = 1; m < sizeof models / sizeof models[0]; m++) { /* the socket models; uring has its own test */
        struct proc run;
        const char *args[] = {"--model", models[m], "--connections", "2", "--duration", "1", "--warmup", "0",
                              "--json", NULL};
        int code = load(&run, "127.0.0.1", port, args);
        cr_assert_eq(code, 1, "%s: exit %d; stdout %s stderr %s", models[m], code, run.out, run.err);
        cr_assert(strstr(run.err, "timed out"), "%s: no connect timeout in: %s", models[m], run.err);
        proc_free(&run);
    }
    for (int i = 0; i < 4; i++)
        close(fillers[i]);
    close(fd);
}

Test(load, fairness_shows_starved_connections)
{
    for (size_t m = 0; m < sizeof models / sizeof models[0]; m++) {
        struct partial_server partial;
        partial_server_start(&partial);
        struct proc run;
        const char *args[] = {"--model", models[m], "--connections", "8", "--duration", "1", "--warmup", "0.2",
                              "--json", NULL};
        int code = load(&run, "127.0.0.1", partial.port, args);
        partial_server_stop(&partial);
        cr_assert_eq(atomic_load(&partial.starved), 2, "%s: %d connections accepted", models[m],
                     atomic_load(&partial.accepted));
        /* The starved connections' messages are never echoed: short echoes at the end, exit 1. */
        cr_assert(code == 1, "%s: exit %d", models[m], code);
        json_check(run.out, "d['fairness']['connections'] == 8 and d['fairness']['min'] == 0 and "
                            "d['fairness']['max'] > 0 and d['fairness']['jain'] < 0.9 and "
                            "d['errors']['short_echo'] == 2");
        proc_free(&run);
    }
}

/* Two connections reset at once, each seen by a thread of its own: both are counted, and the first error is one
 * whole message, not two mixed or one cut short. Under ThreadSanitizer (scripts/test-sanitizers tsan) this is also
 * the check that recording an error from several threads at once, and reading it, is not a data race. */
Test(load, two_connections_failing_at_once_give_one_whole_first_error)
{
    for (size_t m = 0; m < sizeof models / sizeof models[0]; m++) {
        struct reset_server server;
        reset_server_start(&server, 2);
        struct proc run;
        /* Two threads (--model threads has one per connection and takes no --threads). */
        bool threads = strcmp(models[m], "threads") == 0;
        const char *args[] = {"--model", models[m], "--connections", "2", "--duration", "0.5", "--warmup", "0",
                              "--json", threads ? NULL : "--threads", "2", NULL};
        int code = load(&run, "127.0.0.1", server.port, args);
        reset_server_stop(&server);
        cr_assert_eq(atomic_load(&server.reset), 2, "%s: the server reset %d connections", models[m],
                     atomic_load(&server.reset));
        cr_assert(code == 1, "%s: exit %d; stdout %s stderr %s", models[m], code, run.out, run.err);
        char check[512];
        snprintf(check, sizeof check,
                 "d['errors']['reset'] == 2 and d['errors']['total'] == 2 and "
                 "__import__('re').fullmatch(r'connection [01] to 127\\.0\\.0\\.1:%d: reset by the server "
                 "\\(\\d+ bytes not echoed\\)', d['first_error']) is not None",
                 server.port);
        json_check(run.out, check);
        proc_free(&run);
    }
}

/* While the connections open, the threads that have connected wait for the start. They polled for it every
 * millisecond: 200 threads woke 200,000 times a second for as long as the last connect took. Here the last of 200
 * connects hangs until --connect-timeout (1 s): a listener nobody accepts from, whose queue holds all but one, so
 * the last SYN is dropped. Then nothing is echoed: each thread blocks in recv, waking at its socket timeout (every
 * 100 ms) until the grace period ends. A count of wake-ups (the process's voluntary context switches), not a time:
 * waiting on a condition variable costs a thread a few, polling costs it about a thousand over that second. */
Test(load, threads_waiting_for_the_start_do_not_poll)
{
    enum { CONNECTIONS = 200 };
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(fd >= 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof address;
    cr_assert(bind(fd, (struct sockaddr *)&address, sizeof address) == 0, "bind: %s", strerror(errno));
    cr_assert(listen(fd, CONNECTIONS - 2) == 0); /* the accept queue holds backlog + 1 */
    cr_assert(getsockname(fd, (struct sockaddr *)&address, &len) == 0);
    struct proc run;
    const char *args[] = {"--model", "threads", "--connections", "200", "--connect-timeout", "1", "--duration",
                          "0.2", "--warmup", "0", "--json", NULL};
    /* The premise: one connect timed out while the others had opened and waited. The kernel checks the accept
     * queue when a SYN arrives, so SYNs that cross may all be let in before the queue fills (seen once in a full
     * run of this suite: all 200 connected); such a run shows nothing, and the test tries again. */
    bool premise = false;
    for (int attempt = 0; attempt < 5 && !premise; attempt++) {
        if (attempt > 0) {
            proc_free(&run);
            close(fd); /* a fresh listener: the last one's queue is full */
            fd = socket(AF_INET, SOCK_STREAM, 0);
            address.sin_port = 0;
            cr_assert(fd >= 0 && bind(fd, (struct sockaddr *)&address, sizeof address) == 0 &&
                      listen(fd, CONNECTIONS - 2) == 0 && getsockname(fd, (struct sockaddr *)&address, &len) == 0);
        }
        int code = load(&run, "127.0.0.1", ntohs(address.sin_port), args);
        cr_assert_eq(code, 1, "exit %d; stdout %s stderr %s", code, run.out, run.err);
        premise = json_number(run.out, "\"connect\":") == 1 &&
                  json_number(run.out, "\"connects\":") == CONNECTIONS - 1;
    }
    close(fd);
    cr_assert(premise, "in 5 runs, never exactly one connect timed out: %s", run.out);
    cr_log_info("threads_waiting_for_the_start_do_not_poll: %ld voluntary context switches", run.usage.ru_nvcsw);
    cr_assert_lt(run.usage.ru_nvcsw, 100 * CONNECTIONS, "%ld voluntary context switches for %d threads",
                 run.usage.ru_nvcsw, CONNECTIONS);
    proc_free(&run);
}
