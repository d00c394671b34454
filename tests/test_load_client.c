/*
 * test_load_client.c - overlap-load ($OVERLAP_LOAD) run as a process against overlap-echo ($OVERLAP_ECHO) on an
 * ephemeral loopback port, and against a server of this test that corrupts one byte, which must be caught.
 */
#include "support.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define RUN_TIMEOUT_MS 30000

static void end_children(void)
{
    sup_proc_kill_all();
}

TestSuite(load, .fini = end_children, .timeout = 120);

static char *program(const char *variable)
{
    char *path = getenv(variable);
    cr_assert(path && *path, "%s is not set (run through meson test)", variable);
    cr_assert(access(path, X_OK) == 0, "%s=%s: %s", variable, path, strerror(errno));
    return path;
}

static int start_echo(sup_proc *server)
{
    char *argv[] = {program("OVERLAP_ECHO"), "--host", "127.0.0.1", "--port", "0", "--threads", "1", NULL};
    cr_assert(sup_proc_spawn(server, argv) == 0);
    char line[256];
    for (;;) {
        int rc = sup_proc_read_line(server, line, sizeof line, 10000);
        cr_assert(rc == 0, "overlap-echo did not start: %s; stderr %s", strerror(-rc), server->err);
        int port = 0;
        if (sscanf(line, "listening on 127.0.0.1:%d", &port) == 1)
            return port;
    }
}

static void stop_echo(sup_proc *server)
{
    sup_proc_kill(server, SIGTERM);
    cr_assert(sup_proc_wait(server, 10000) == 0 && sup_proc_exit_code(server) == 0, "overlap-echo: %s",
              sup_proc_describe(server));
    sup_proc_free(server);
}

/* Run overlap-load 127.0.0.1 --port PORT extra... --json; returns its exit code, output in *run. */
static int run_load(sup_proc *run, int port, char *const extra[])
{
    char port_text[16];
    snprintf(port_text, sizeof port_text, "%d", port);
    char *argv[32] = {program("OVERLAP_LOAD"), "127.0.0.1", "--port", port_text};
    int n = 4;
    for (int i = 0; extra[i] && n < 30; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    int rc = sup_proc_run(run, argv, RUN_TIMEOUT_MS);
    cr_assert(rc == 0, "overlap-load did not finish: %s; stdout %s stderr %s", strerror(-rc), run->out, run->err);
    return sup_proc_exit_code(run);
}

/* A number from the JSON report, found by key path text like "\"errors\":{\"total\":". */
static double json_number(const char *json, const char *key)
{
    const char *at = strstr(json, key);
    cr_assert(at, "'%s' not in %s", key, json);
    return strtod(at + strlen(key), NULL);
}

/* The report must be valid JSON for a real parser, not just contain the keys. */
static void assert_json_parses(const char *json)
{
    char path[] = "/tmp/overlap-load-json-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert(write(fd, json, strlen(json)) == (ssize_t)strlen(json));
    close(fd);
    char command[256];
    snprintf(command, sizeof command, "python3 -c 'import json,sys; json.load(open(sys.argv[1]))' %s", path);
    int status = system(command);
    unlink(path);
    cr_assert(status == 0, "the --json output does not parse: %s", json);
}

Test(load, ping_pong_verifies_every_byte)
{
    sup_proc server = {0}, run = {0};
    int port = start_echo(&server);
    char *extra[] = {"--connections", "8", "--duration", "1", "--warmup", "0.2", "--json", NULL};
    int code = run_load(&run, port, extra);
    cr_assert(code == 0, "exit %d; stdout %s stderr %s", code, run.out, run.err);
    assert_json_parses(run.out);
    cr_assert(json_number(run.out, "\"errors\":{\"total\":") == 0, "%s", run.out);
    double msgs = json_number(run.out, "\"msgs\":");
    cr_assert(msgs > 100, "only %.0f messages in a second: %s", msgs, run.out);
    cr_assert(json_number(run.out, "\"bytes\":") == msgs * 64, "bytes must be msgs x 64: %s", run.out);
    cr_assert(json_number(run.out, "\"connects\":") == 8, "%s", run.out);
    double p50 = json_number(run.out, "\"latency_us\":{\"count\":");
    cr_assert(p50 == msgs, "every message has a latency sample: %s", run.out);
    sup_proc_free(&run);
    stop_echo(&server);
}

Test(load, pipelined_large_messages)
{
    sup_proc server = {0}, run = {0};
    int port = start_echo(&server);
    char *extra[] = {"--connections", "4", "--size", "4096", "--pipeline", "8", "--duration", "1", "--warmup", "0.2",
                     "--json", NULL};
    int code = run_load(&run, port, extra);
    cr_assert(code == 0, "exit %d; stdout %s stderr %s", code, run.out, run.err);
    assert_json_parses(run.out);
    cr_assert(json_number(run.out, "\"errors\":{\"total\":") == 0, "%s", run.out);
    cr_assert(json_number(run.out, "\"msgs\":") > 100, "%s", run.out);
    sup_proc_free(&run);
    stop_echo(&server);
}

Test(load, once_prints_the_seed_lines)
{
    sup_proc server = {0}, run = {0};
    int port = start_echo(&server);
    char *extra[] = {"--once", NULL};
    int code = run_load(&run, port, extra);
    cr_assert(code == 0, "exit %d; stderr %s", code, run.err);
    cr_assert_str_eq(run.out, "Bytes Sent: 14\nBytes received: 14\nConnection closed\n");
    sup_proc_free(&run);
    stop_echo(&server);
}

Test(load, churn_reconnects)
{
    sup_proc server = {0}, run = {0};
    int port = start_echo(&server);
    char *extra[] = {"--connections", "4", "--churn", "5", "--duration", "1", "--warmup", "0.2", "--json", NULL};
    int code = run_load(&run, port, extra);
    cr_assert(code == 0, "exit %d; stdout %s stderr %s", code, run.out, run.err);
    cr_assert(json_number(run.out, "\"errors\":{\"total\":") == 0, "%s", run.out);
    double connects = json_number(run.out, "\"connects\":");
    double msgs = json_number(run.out, "\"msgs\":");
    cr_assert(connects > 20, "churn made only %.0f connections: %s", connects, run.out);
    cr_assert(msgs / connects < 10, "about 5 echoes per connection expected: %s", run.out);
    sup_proc_free(&run);
    stop_echo(&server);
}

Test(load, refused_connection_is_reported)
{
    int port = 0;
    int holder = sup_tcp_bind("127.0.0.1", 0, false, &port); /* bound, not listening: connections are refused */
    cr_assert(holder >= 0);
    sup_proc run = {0};
    char *extra[] = {"--duration", "1", NULL};
    int code = run_load(&run, port, extra);
    cr_assert(code != 0, "must fail when nothing listens");
    char expected[128];
    snprintf(expected, sizeof expected, "overlap-load: connect 127.0.0.1:%d: Connection refused", port);
    cr_assert(strstr(run.err, expected), "stderr: %s", run.err);
    sup_proc_free(&run);
    close(holder);
}

Test(load, bad_arguments_are_named)
{
    sup_proc run = {0};
    char *argv[] = {program("OVERLAP_LOAD"), "--size", "zero", NULL};
    cr_assert(sup_proc_run(&run, argv, RUN_TIMEOUT_MS) == 0);
    cr_assert(sup_proc_exit_code(&run) == 2);
    cr_assert(strstr(run.err, "--size: 'zero'") && strstr(run.err, "usage:"), "stderr: %s", run.err);
    sup_proc_free(&run);
}

/* ---- a server that flips one byte of what it echoes ---- */

struct corrupting_server {
    int listen_fd;
    _Atomic int stop;
};

static void *corrupt_loop(void *arg)
{
    struct corrupting_server *server = arg;
    int fd = accept(server->listen_fd, NULL, NULL);
    if (fd < 0)
        return NULL;
    sup_set_timeouts(fd, 200);
    unsigned char buf[4096];
    uint64_t total = 0;
    while (!atomic_load(&server->stop)) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n == 0)
            break;
        if (n < 0)
            continue;
        /* Echo faithfully for a while, then flip a bit of one byte. */
        if (total < 1000 && total + (uint64_t)n >= 1000)
            buf[1000 - total - 1] ^= 0x01;
        total += (uint64_t)n;
        if (sup_send_all(fd, buf, (size_t)n) < 0)
            break;
    }
    close(fd);
    return NULL;
}

Test(load, corrupted_echo_is_a_verification_error)
{
    struct corrupting_server server = {0};
    int port = 0;
    server.listen_fd = sup_tcp_bind("127.0.0.1", 0, true, &port);
    cr_assert(server.listen_fd >= 0);
    pthread_t thread;
    cr_assert(pthread_create(&thread, NULL, corrupt_loop, &server) == 0);
    sup_proc run = {0};
    char *extra[] = {"--connections", "1", "--duration", "1", "--warmup", "0", "--json", NULL};
    int code = run_load(&run, port, extra);
    atomic_store(&server.stop, 1);
    pthread_join(thread, NULL);
    close(server.listen_fd);
    cr_assert(code == 1, "a corrupted echo must fail the run (exit %d): %s %s", code, run.out, run.err);
    assert_json_parses(run.out);
    cr_assert(json_number(run.out, "\"verify\":") == 1, "%s", run.out);
    cr_assert(strstr(run.out, "stream byte 999"), "the first wrong byte is named: %s", run.out);
    sup_proc_free(&run);
}
