/*
 * test_echo_server.c - overlap-echo run as a process (its path is in $OVERLAP_ECHO): the command line, the
 * "listening on" lines, echoing, a bind failure's message, and the drain on SIGTERM/SIGINT.
 *
 * Each child is started by this test process and gets SIGKILL if the test process dies (support.c), so a failed
 * test leaves no server behind; tests signal only the PIDs they started.
 */
#include "overlap.h"
#include "support.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define IO_TIMEOUT_MS 10000
#define START_TIMEOUT_MS 10000
#define EXIT_TIMEOUT_MS 10000

/* A failed assertion skips the test's own cleanup: end whatever it started. */
static void end_children(void)
{
    sup_proc_kill_all();
}

TestSuite(echo_server, .fini = end_children);

static char *echo_path(void)
{
    char *path = getenv("OVERLAP_ECHO");
    cr_assert(path && *path, "OVERLAP_ECHO is not set (run through meson test)");
    cr_assert(access(path, X_OK) == 0, "OVERLAP_ECHO=%s: %s", path, strerror(errno));
    return path;
}

/* argv = { $OVERLAP_ECHO, args..., [--backend $OVERLAP_TEST_BACKEND,] NULL }. The backend goes last, after the
 * arguments under test, and only to a server that is meant to start (args contain --port). */
static void build_argv(char **argv, size_t cap, char *const args[])
{
    size_t n = 0;
    bool serving = false;
    argv[n++] = echo_path();
    for (size_t i = 0; args && args[i] && n + 3 < cap; i++) {
        if (strcmp(args[i], "--port") == 0 && args[i + 1])
            serving = true;
        argv[n++] = args[i];
    }
    char *backend = getenv("OVERLAP_TEST_BACKEND");
    if (serving && backend && *backend) {
        argv[n++] = "--backend";
        argv[n++] = backend;
    }
    argv[n] = NULL;
}

static void run_echo(sup_proc *proc, char *const args[])
{
    char *argv[32];
    build_argv(argv, 32, args);
    int rc = sup_proc_run(proc, argv, EXIT_TIMEOUT_MS);
    if (rc != 0)
        sup_proc_kill(proc, SIGKILL);
    cr_assert(rc == 0, "overlap-echo did not exit within %d ms: %s; stdout: %s stderr: %s", EXIT_TIMEOUT_MS,
              strerror(-rc), proc->out ? proc->out : "", proc->err ? proc->err : "");
}

/* Start overlap-echo and read its stdout up to the first "listening on ADDRESS" line; returns the port in it and
 * the line in `line`. */
static int start_echo(sup_proc *proc, char *const args[], char *line, size_t cap)
{
    char *argv[32];
    build_argv(argv, 32, args);
    int rc = sup_proc_spawn(proc, argv);
    cr_assert_eq(rc, 0, "spawn %s: %s", argv[0], strerror(-rc));
    int port = sup_proc_listening_port(proc, line, cap, START_TIMEOUT_MS);
    if (port < 0) {
        sup_proc_wait(proc, 1000);
        cr_assert_fail("no \"listening on\" line with a port from overlap-echo (%s, %s); stdout: %s stderr: %s",
                       strerror(-port), sup_proc_describe(proc), proc->out, proc->err);
    }
    return port;
}

/* Signal the server, wait for it, and expect a clean exit with the summary line. */
static void stop_echo(sup_proc *proc, int sig)
{
    cr_assert_eq(sup_proc_kill(proc, sig), 0, "kill(%d, %d) failed", (int)proc->pid, sig);
    int rc = sup_proc_wait(proc, EXIT_TIMEOUT_MS);
    cr_assert_eq(rc, 0, "overlap-echo still runs %d ms after signal %d; stdout: %s stderr: %s", EXIT_TIMEOUT_MS, sig,
                 proc->out, proc->err);
    cr_assert_eq(sup_proc_exit_code(proc), 0, "overlap-echo after signal %d: %s; stdout: %s stderr: %s", sig,
                 sup_proc_describe(proc), proc->out, proc->err);
    bool summary = strncmp(proc->out, "overlap-echo: stopped", 21) == 0 || strstr(proc->out, "\noverlap-echo: stopped");
    cr_assert(summary, "no \"overlap-echo: stopped\" summary line; stdout: %s stderr: %s", proc->out, proc->err);
}

static void expect_roundtrip(const char *host, int port, uint32_t seed, size_t len)
{
    int fd = sup_connect(host, port, IO_TIMEOUT_MS);
    cr_assert(fd >= 0, "connect %s port %d: %s", host, port, strerror(-fd));
    char *out = malloc(len), *in = malloc(len);
    cr_assert(out && in);
    sup_pattern_fill(out, len, seed, 0);
    int rc = sup_send_all(fd, out, len);
    cr_assert_eq(rc, 0, "send: %s", strerror(-rc));
    shutdown(fd, SHUT_WR);
    size_t got = 0;
    ssize_t n = sup_recv_to_eof(fd, in, len, &got);
    cr_assert(n >= 0, "via %s: receive failed after %zu of %zu bytes: %s", host, got, len, strerror((int)-n));
    cr_assert_eq(got, len, "via %s: %zu bytes back before EOF, sent %zu", host, got, len);
    cr_assert_eq(sup_pattern_check(in, len, seed, 0), len, "via %s: the echo differs", host);
    close(fd);
    free(out);
    free(in);
}

/* Hosts without IPv6 (a container with it disabled) skip the IPv6 parts, saying so: never silently. */
static void require_ipv6(const char *test)
{
    int rc = sup_ipv6_loopback();
    if (rc < 0) {
        fprintf(stderr, "%s: SKIPPED: no IPv6 loopback on this host: ::1: %s\n", test, strerror(-rc));
        cr_skip_test("no IPv6 loopback on this host: ::1: %s", strerror(-rc));
    }
}

/* ---- command line ---- */

Test(echo_server, help, .timeout = 20)
{
    sup_proc p;
    run_echo(&p, (char *[]){ "--help", NULL });
    cr_assert_eq(sup_proc_exit_code(&p), 0, "--help: %s; stderr: %s", sup_proc_describe(&p), p.err);
    cr_assert(strstr(p.out, "usage") || strstr(p.out, "Usage"), "--help printed no usage: %s", p.out);
    cr_expect(strstr(p.out, "--port") && strstr(p.out, "--threads") && strstr(p.out, "--host"),
              "usage does not list --host/--port/--threads: %s", p.out);
    sup_proc_free(&p);
}

/* --stats-format json carries every engine counter: the line is made from OVL_STATS_FIELDS, and this checks each
 * name of that list against what the program printed (3a54125's hand-written line left out three). */
Test(echo_server, json_stats_carry_every_counter, .timeout = 20)
{
    sup_proc p;
    start_echo(&p, (char *[]){ "--stats", "0.1", "--stats-format", "json", NULL }, NULL, 0);
    char line[4096] = "";
    /* The first line, however late a busy machine lets it come (it is due 0.1 s after the start). */
    cr_assert(sup_wait_stats_line(&p, line, sizeof line, 10000), "no JSON stats line in 10 s: %s", p.out);
    static const char *const names[] = {
#define NAME_OF(name, kind, help) #name,
        OVL_STATS_FIELDS(NAME_OF)
#undef NAME_OF
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        cr_expect(sup_json_number(line, names[i]) >= 0, "counter %s is not in the JSON stats line: %s", names[i],
                  line);
    stop_echo(&p, SIGTERM);
    sup_proc_free(&p);
}

Test(echo_server, version, .timeout = 20)
{
    sup_proc p;
    run_echo(&p, (char *[]){ "--version", NULL });
    cr_assert_eq(sup_proc_exit_code(&p), 0, "--version: %s; stderr: %s", sup_proc_describe(&p), p.err);
    cr_assert(strstr(p.out, OVL_VERSION_STRING) != NULL, "--version printed \"%s\", want it to contain %s", p.out,
              OVL_VERSION_STRING);
    sup_proc_free(&p);
}

/* A bad argument: non-zero exit, a message on stderr naming the problem, and no server started. */
static void expect_rejected(char *const args[], const char *needle)
{
    sup_proc p;
    run_echo(&p, args);
    int code = sup_proc_exit_code(&p);
    cr_assert(code > 0, "%s %s: %s, want a non-zero exit; stdout: %s", args[0], args[1] ? args[1] : "",
              sup_proc_describe(&p), p.out);
    cr_assert(strstr(p.err, needle) != NULL, "%s %s: stderr does not name \"%s\": %s", args[0], args[1] ? args[1] : "",
              needle, p.err);
    cr_expect(strstr(p.out, "listening on") == NULL, "a server started anyway: %s", p.out);
    sup_proc_free(&p);
}

Test(echo_server, rejects_non_numeric_port, .timeout = 20)
{
    expect_rejected((char *[]){ "--port", "abc", NULL }, "--port");
    expect_rejected((char *[]){ "--port", "abc", NULL }, "abc");
}

Test(echo_server, rejects_out_of_range_port, .timeout = 20)
{
    expect_rejected((char *[]){ "--port", "65536", NULL }, "--port");
}

Test(echo_server, rejects_negative_threads, .timeout = 20)
{
    expect_rejected((char *[]){ "--threads", "-1", NULL }, "--threads");
}

/* Sizes and counts that would take the machine, or mean nothing, are refused with the option and its limit. */
Test(echo_server, rejects_unbounded_sizes, .timeout = 20)
{
    expect_rejected((char *[]){ "--threads", "1024", NULL }, "--threads: '1024' is not a thread count (0-256");
    /* 16 MiB x 32768 = 512 GiB of receive buffers per worker */
    expect_rejected((char *[]){ "--buffer-size", "16777216", "--buffer-count", "32768", NULL },
                    "is 524288 MiB of receive buffers per worker thread; at most 256 MiB");
    expect_rejected((char *[]){ "--buffer-size", "65536", "--buffer-count", "5000", NULL },
                    "--buffer-count 5000 (rounded up to a power of two) is 512 MiB");
    expect_rejected((char *[]){ "--stats", "0.000001", NULL }, "--stats: '0.000001' is not a number of seconds "
                    "(at least 0.1)");
    expect_rejected((char *[]){ "--metrics", "9100", NULL }, "--metrics: '9100' has no port (ADDR:PORT)");
    expect_rejected((char *[]){ "--metrics", "::1:9100", NULL }, "--metrics: write an IPv6 address as [ADDRESS]:PORT");
    expect_rejected((char *[]){ "--metrics", "127.0.0.1:http", NULL }, "--metrics: 'http' is not a port number");
    expect_rejected((char *[]){ "--max-conns", "-1", NULL }, "--max-conns: '-1' is not a count (0-4294967295, 0 = no "
                    "limit)");
}

Test(echo_server, rejects_unknown_option, .timeout = 20)
{
    expect_rejected((char *[]){ "--bogus-option", NULL }, "--bogus-option");
}

Test(echo_server, rejects_missing_value, .timeout = 20)
{
    expect_rejected((char *[]){ "--port", NULL }, "--port");
}

/* ---- serving ---- */

/* The seed's flow against the program: "this is a test", half-close, exactly 14 bytes back, then EOF. */
Test(echo_server, seed_flow_then_sigint, .timeout = 40)
{
    sup_proc p;
    char line[256];
    int port = start_echo(&p, (char *[]){ "--host", "127.0.0.1", "--port", "0", "--threads", "1", NULL }, line,
                          sizeof(line));
    int fd = sup_connect("127.0.0.1", port, IO_TIMEOUT_MS);
    cr_assert(fd >= 0, "connect: %s", strerror(-fd));
    static const char msg[] = "this is a test";
    int rc = sup_send_all(fd, msg, 14);
    cr_assert_eq(rc, 0, "send: %s", strerror(-rc));
    shutdown(fd, SHUT_WR);
    char buf[64];
    size_t got = 0;
    ssize_t n = sup_recv_to_eof(fd, buf, sizeof(buf), &got);
    cr_assert(n >= 0, "receive failed after %zu bytes: %s", got, strerror((int)-n));
    cr_assert_eq(got, 14, "got %zu bytes back, want 14: \"%.*s\"", got, (int)got, buf);
    cr_assert(memcmp(buf, msg, 14) == 0, "got \"%.14s\"", buf);
    close(fd);
    stop_echo(&p, SIGINT);
    sup_proc_free(&p);
}

/* Without --threads the server runs one worker less than the CPUs it may use (at least one) and says so, with the
 * CPU count it went by: a cpuset or taskset narrows it. */
static void expect_default_workers(int cpus)
{
    sup_proc p;
    char line[256], want[160];
    start_echo(&p, (char *[]){ "--host", "127.0.0.1", "--port", "0", NULL }, line, sizeof(line));
    int workers = cpus > 1 ? cpus - 1 : 1;
    snprintf(want, sizeof(want), " backend, %d worker thread%s (default: %d CPU%s%s; --threads N to change)\n",
             workers, workers == 1 ? "" : "s", cpus, cpus == 1 ? "" : "s", cpus > 1 ? " less one" : "");
    cr_assert(strstr(p.out, want), "want \"%s\" in the start line; stdout: %s", want, p.out);
    stop_echo(&p, SIGTERM);
    sup_proc_free(&p);
}

Test(echo_server, default_worker_count_leaves_a_cpu, .timeout = 40)
{
    cpu_set_t allowed;
    cr_assert_eq(sched_getaffinity(0, sizeof allowed, &allowed), 0, "sched_getaffinity: %s", strerror(errno));
    expect_default_workers(CPU_COUNT(&allowed));
    /* One CPU allowed (this test's process only: criterion runs each test in a process of its own). */
    int first = 0;
    while (!CPU_ISSET(first, &allowed))
        first++;
    CPU_ZERO(&allowed);
    CPU_SET(first, &allowed);
    cr_assert_eq(sched_setaffinity(0, sizeof allowed, &allowed), 0, "sched_setaffinity: %s", strerror(errno));
    expect_default_workers(1);
}

Test(echo_server, listening_line_ipv4, .timeout = 40)
{
    sup_proc p;
    char line[256], want[64];
    int port = start_echo(&p, (char *[]){ "--host", "127.0.0.1", "--port", "0", "--threads", "1", NULL }, line,
                          sizeof(line));
    snprintf(want, sizeof(want), "listening on 127.0.0.1:%d", port);
    cr_assert_str_eq(line, want);
    expect_roundtrip("127.0.0.1", port, 11, 200000);
    stop_echo(&p, SIGTERM);
    sup_proc_free(&p);
}

Test(echo_server, listening_line_ipv6, .timeout = 40)
{
    require_ipv6("echo_server::listening_line_ipv6");
    sup_proc p;
    char line[256], want[64];
    int port = start_echo(&p, (char *[]){ "--host", "::1", "--port", "0", "--threads", "1", NULL }, line,
                          sizeof(line));
    snprintf(want, sizeof(want), "listening on [::1]:%d", port);
    cr_assert_str_eq(line, want);
    expect_roundtrip("::1", port, 12, 200000);
    stop_echo(&p, SIGTERM);
    sup_proc_free(&p);
}

/* No --host: every interface, dual-stack where the OS allows it, reachable over both families. */
Test(echo_server, default_host_dual_stack, .timeout = 40)
{
    require_ipv6("echo_server::default_host_dual_stack");
    sup_proc p;
    char line[256], want[64];
    int port = start_echo(&p, (char *[]){ "--port", "0", "--threads", "2", "--buffer-size", "4096", NULL }, line,
                          sizeof(line));
    snprintf(want, sizeof(want), "listening on [::]:%d", port);
    cr_expect_str_eq(line, want);
    expect_roundtrip("127.0.0.1", port, 13, 300000);
    expect_roundtrip("::1", port, 14, 300000);
    stop_echo(&p, SIGTERM);
    sup_proc_free(&p);
}

Test(echo_server, port_in_use, .timeout = 30)
{
    int port = 0;
    int holder = sup_tcp_bind("127.0.0.1", 0, true, &port);
    cr_assert(holder >= 0, "bind: %s", strerror(-holder));
    char port_text[16], want[96];
    snprintf(port_text, sizeof(port_text), "%d", port);
    snprintf(want, sizeof(want), "bind 127.0.0.1:%d: Address already in use (errno 98)", port);

    sup_proc p;
    run_echo(&p, (char *[]){ "--host", "127.0.0.1", "--port", port_text, "--threads", "1", NULL });
    int code = sup_proc_exit_code(&p);
    cr_assert(code > 0, "overlap-echo on a held port: %s, want a non-zero exit; stdout: %s stderr: %s",
              sup_proc_describe(&p), p.out, p.err);
    cr_assert(strstr(p.err, want) != NULL, "stderr does not contain \"%s\": %s", want, p.err);
    cr_expect(strstr(p.out, "listening on") == NULL, "it claims to listen: %s", p.out);
    sup_proc_free(&p);
    close(holder);
}

/* SIGTERM with a connection open: what the server already received is echoed in full, then EOF, exit 0. */
Test(echo_server, sigterm_drains_open_connection, .timeout = 40)
{
    sup_proc p;
    char line[256];
    int port = start_echo(&p, (char *[]){ "--host", "127.0.0.1", "--port", "0", "--threads", "1", NULL }, line,
                          sizeof(line));
    int fd = sup_connect("127.0.0.1", port, IO_TIMEOUT_MS);
    cr_assert(fd >= 0, "connect: %s", strerror(-fd));

    const size_t a_len = 16 * 1024, b_len = 48 * 1024;
    char *buf = malloc(b_len), *in = malloc(b_len);
    cr_assert(buf && in);
    sup_pattern_fill(buf, a_len, 31, 0);
    int rc = sup_send_all(fd, buf, a_len);
    cr_assert_eq(rc, 0, "send A: %s", strerror(-rc));
    size_t got = 0;
    ssize_t n = sup_recv_exact(fd, in, a_len, &got);
    cr_assert(n == (ssize_t)a_len, "A's echo: %zu of %zu bytes (%s)", got, a_len, n < 0 ? strerror((int)-n) : "EOF");
    cr_assert_eq(sup_pattern_check(in, a_len, 31, 0), a_len, "A's echo differs");

    sup_pattern_fill(buf, b_len, 31, a_len);
    rc = sup_send_all(fd, buf, b_len);
    cr_assert_eq(rc, 0, "send B: %s", strerror(-rc));
    sup_sleep_ms(100);
    cr_assert_eq(sup_proc_kill(&p, SIGTERM), 0);

    n = sup_recv_to_eof(fd, in, b_len, &got);
    cr_assert(n >= 0, "after SIGTERM: receive failed after %zu of %zu bytes of B's echo: %s", got, b_len,
              strerror((int)-n));
    cr_assert_eq(got, b_len, "after SIGTERM: %zu of %zu bytes of B's echo, then EOF", got, b_len);
    cr_assert_eq(sup_pattern_check(in, b_len, 31, a_len), b_len, "B's echo differs");
    close(fd);

    rc = sup_proc_wait(&p, EXIT_TIMEOUT_MS);
    cr_assert_eq(rc, 0, "overlap-echo still runs %d ms after SIGTERM; stdout: %s stderr: %s", EXIT_TIMEOUT_MS, p.out,
                 p.err);
    cr_assert_eq(sup_proc_exit_code(&p), 0, "after SIGTERM: %s; stderr: %s", sup_proc_describe(&p), p.err);
    bool summary = strstr(p.out, "\noverlap-echo: stopped") != NULL;
    cr_assert(summary, "no \"overlap-echo: stopped\" summary line; stdout: %s", p.out);
    free(buf);
    free(in);
    sup_proc_free(&p);
}
