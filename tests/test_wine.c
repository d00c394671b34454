/*
 * test_wine.c - the Windows (IOCP) programs, cross-built with mingw-w64, run for real under Wine and driven over
 * loopback from Linux: echoing, the seed flow, connect/disconnect cycles through the socket reuse pool (with the
 * fallback Wine forces), SO_UPDATE_ACCEPT_CONTEXT applied on every accept, graceful stop on Ctrl+C, and the
 * load client in both directions.
 *
 * $OVERLAP_WIN_DIR holds overlap-echo.exe and overlap-load.exe (scripts/test builds them in build-win/); Wine runs
 * with a private prefix under that directory. A missing Windows build fails the tests: never a silent skip.
 */
#include "support.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define WINE_START_TIMEOUT_MS 120000 /* the first start creates the Wine prefix */
#define IO_TIMEOUT_MS 20000
#define EXIT_TIMEOUT_MS 30000

static void end_children(void)
{
    sup_proc_kill_all();
}

TestSuite(wine, .fini = end_children, .timeout = 240);

static const char *win_dir(void)
{
    const char *dir = getenv("OVERLAP_WIN_DIR");
    cr_assert(dir && *dir, "OVERLAP_WIN_DIR is not set (run through meson test)");
    return dir;
}

static char *win_program(const char *name)
{
    static char paths[2][512];
    bool echo = strcmp(name, "overlap-echo.exe") == 0;
    char *path = paths[echo ? 0 : 1];
    snprintf(path, sizeof paths[0], "%s/%s%s", win_dir(), echo ? "" : "bench/", name);
    cr_assert(access(path, R_OK) == 0, "%s: %s (build the Windows programs: scripts/test does)", path,
              strerror(errno));
    return path;
}

static void wine_environment(void)
{
    static char prefix[600];
    snprintf(prefix, sizeof prefix, "%s/wineprefix", win_dir());
    setenv("WINEPREFIX", prefix, 1);
    setenv("WINEDEBUG", "-all", 1);
    setenv("WINEDLLOVERRIDES", "mscoree,mshtml=", 1);
}

static char *wine_path(void)
{
    static char *candidates[] = {"/usr/bin/wine", "/usr/lib/wine/wine64", NULL};
    for (int i = 0; candidates[i]; i++)
        if (access(candidates[i], X_OK) == 0)
            return candidates[i];
    cr_assert_fail("wine is not installed (scripts/bootstrap installs wine64)");
    return NULL;
}

/* Start `wine overlap-echo.exe` on 127.0.0.1, an ephemeral port; returns the port. */
static int start_windows_echo_with(sup_proc *proc, const char *threads, const char *zero_byte)
{
    wine_environment();
    char *argv[] = {wine_path(), win_program("overlap-echo.exe"), "--host", "127.0.0.1", "--port", "0",
                    "--threads", (char *)threads, "--zero-byte-recv", (char *)zero_byte, NULL};
    int rc = sup_proc_spawn(proc, argv);
    cr_assert(rc == 0, "spawn wine: %s", strerror(-rc));
    char line[256];
    int64_t deadline = sup_now_ms() + WINE_START_TIMEOUT_MS;
    while (sup_now_ms() < deadline) {
        rc = sup_proc_read_line(proc, line, sizeof line, (int)(deadline - sup_now_ms()));
        cr_assert(rc == 0, "overlap-echo.exe printed no 'listening on' line (%s); stderr: %s", strerror(-rc),
                  proc->err ? proc->err : "");
        int port = 0;
        if (sscanf(line, "listening on 127.0.0.1:%d", &port) == 1)
            return port;
    }
    cr_assert_fail("overlap-echo.exe did not start within %d ms", WINE_START_TIMEOUT_MS);
    return 0;
}

static int start_windows_echo(sup_proc *proc, const char *threads)
{
    return start_windows_echo_with(proc, threads, "auto");
}

/* Ctrl+C (Wine turns SIGINT into CTRL_C_EVENT), then the exit code and the summary. */
static void stop_windows_echo(sup_proc *proc)
{
    sup_proc_kill(proc, SIGINT);
    int rc = sup_proc_wait(proc, EXIT_TIMEOUT_MS);
    cr_assert(rc == 0, "overlap-echo.exe did not exit after Ctrl+C; stdout: %s stderr: %s", proc->out,
              proc->err);
    cr_assert(sup_proc_exit_code(proc) == 0, "overlap-echo.exe: %s; stderr: %s", sup_proc_describe(proc),
              proc->err);
    cr_assert(strstr(proc->out, "overlap-echo: stopped"), "no summary in: %s", proc->out);
}

/* Run a load client (argv[0] "wine" for overlap-load.exe, or the Linux overlap-load) to completion. */
static int run_client(sup_proc *run, char *const argv[])
{
    int rc = sup_proc_run(run, argv, 120000);
    cr_assert(rc == 0, "%s did not finish: %s; stdout %s stderr %s", argv[0], strerror(-rc), run->out, run->err);
    return sup_proc_exit_code(run);
}

static char *linux_load(void)
{
    char *path = getenv("OVERLAP_LOAD");
    cr_assert(path && access(path, X_OK) == 0, "OVERLAP_LOAD is not set or not executable");
    return path;
}

static double json_number(const char *json, const char *key)
{
    const char *at = strstr(json, key);
    cr_assert(at, "'%s' not in %s", key, json);
    return strtod(at + strlen(key), NULL);
}

static void assert_clean_run(const sup_proc *run, int code, double min_msgs)
{
    cr_assert(code == 0, "load run failed (exit %d): %s %s", code, run->out, run->err);
    cr_assert(json_number(run->out, "\"errors\":{\"total\":") == 0, "%s", run->out);
    cr_assert(json_number(run->out, "\"msgs\":") >= min_msgs, "%s", run->out);
}

static unsigned long long summary_number(const char *text, const char *label)
{
    const char *at = strstr(text, label);
    cr_assert(at, "'%s' not in: %s", label, text);
    return strtoull(at + strlen(label), NULL, 10);
}

Test(wine, seed_flow_echoes_exactly)
{
    sup_proc server = {0};
    int port = start_windows_echo(&server, "2");
    int fd = sup_connect("127.0.0.1", port, IO_TIMEOUT_MS);
    cr_assert(fd >= 0, "connect: %s", strerror(-fd));
    cr_assert(sup_send_all(fd, "this is a test", 14) == 0);
    cr_assert(shutdown(fd, SHUT_WR) == 0);
    char reply[64];
    ssize_t got = sup_recv_to_eof(fd, reply, sizeof reply, NULL);
    cr_assert(got == 14, "received %zd bytes", got);
    cr_assert(memcmp(reply, "this is a test", 14) == 0);
    close(fd);
    stop_windows_echo(&server);
    sup_proc_free(&server);
}

static void streams_and_many_connections(const char *zero_byte)
{
    sup_proc server = {0};
    int port = start_windows_echo_with(&server, "2", zero_byte);
    /* 4 MiB through one connection, sent and read back in 64 KiB steps (the window keeps both sides moving). */
    int fd = sup_connect("127.0.0.1", port, IO_TIMEOUT_MS);
    cr_assert(fd >= 0);
    enum { CHUNK = 65536, TOTAL = 4 << 20 };
    static unsigned char out[CHUNK], in[CHUNK];
    for (uint64_t offset = 0; offset < TOTAL; offset += CHUNK) {
        sup_pattern_fill(out, CHUNK, 7, offset);
        cr_assert(sup_send_all(fd, out, CHUNK) == 0);
        ssize_t got = sup_recv_exact(fd, in, CHUNK, NULL);
        cr_assert(got == CHUNK, "at %llu: received %zd", (unsigned long long)offset, got);
        size_t bad = sup_pattern_check(in, CHUNK, 7, offset);
        cr_assert(bad == CHUNK, "byte %llu differs", (unsigned long long)(offset + bad));
    }
    close(fd);
    /* 100 connections open at once, each with its own bytes. */
    enum { CONNS = 100 };
    int fds[CONNS];
    for (int i = 0; i < CONNS; i++) {
        fds[i] = sup_connect("127.0.0.1", port, IO_TIMEOUT_MS);
        cr_assert(fds[i] >= 0, "connection %d: %s", i, strerror(-fds[i]));
    }
    for (int i = 0; i < CONNS; i++) {
        unsigned char message[100];
        sup_pattern_fill(message, sizeof message, (uint32_t)(1000 + i), 0);
        cr_assert(sup_send_all(fds[i], message, sizeof message) == 0);
    }
    for (int i = 0; i < CONNS; i++) {
        unsigned char reply[100];
        cr_assert(sup_recv_exact(fds[i], reply, sizeof reply, NULL) == (ssize_t)sizeof reply, "conn %d", i);
        cr_assert(sup_pattern_check(reply, sizeof reply, (uint32_t)(1000 + i), 0) == sizeof reply, "conn %d", i);
        close(fds[i]);
    }
    stop_windows_echo(&server);
    /* Wine ignores SO_UPDATE_ACCEPT_CONTEXT silently; the server counts each one it applied. */
    unsigned long long accepted = summary_number(server.out, "accepted ");
    cr_assert(accepted == CONNS + 1, "accepted %llu", accepted);
    cr_assert(summary_number(server.out, "fallbacks to a fresh socket, ") == accepted,
              "every accepted socket gets SO_UPDATE_ACCEPT_CONTEXT: %s", server.out);
    sup_proc_free(&server);
}

Test(wine, streams_and_many_connections_echo_intact)
{
    streams_and_many_connections("off");
}

/* The same with 0-byte receives: each completion is followed by a non-blocking receive into a pool slot. */
Test(wine, zero_byte_receives_echo_intact)
{
    streams_and_many_connections("on");
}

Test(wine, connect_disconnect_cycles_lose_nothing)
{
    /* Sequential connections closed in good order go through DisconnectEx(TF_REUSE_SOCKET); under Wine the
     * disconnect never completes once the peer has closed, so the server gives those sockets up (reuse_fallback)
     * and keeps accepting with fresh ones. Every cycle must echo. */
    sup_proc server = {0};
    int port = start_windows_echo(&server, "2");
    enum { CYCLES = 200 };
    for (int i = 0; i < CYCLES; i++) {
        int fd = sup_connect("127.0.0.1", port, IO_TIMEOUT_MS);
        cr_assert(fd >= 0, "cycle %d: connect: %s", i, strerror(-fd));
        unsigned char message[32], reply[32];
        sup_pattern_fill(message, sizeof message, (uint32_t)i, 0);
        cr_assert(sup_send_all(fd, message, sizeof message) == 0);
        cr_assert(shutdown(fd, SHUT_WR) == 0);
        ssize_t got = sup_recv_to_eof(fd, reply, sizeof reply, NULL);
        cr_assert(got == (ssize_t)sizeof reply, "cycle %d: received %zd", i, got);
        cr_assert(sup_pattern_check(reply, sizeof reply, (uint32_t)i, 0) == sizeof reply, "cycle %d", i);
        close(fd);
    }
    stop_windows_echo(&server);
    cr_assert(summary_number(server.out, "accepted ") == CYCLES, "%s", server.out);
    cr_assert(summary_number(server.out, "errors ") == 0, "%s", server.out);
    cr_log_info("windows server summary: %s", server.out);
    sup_proc_free(&server);
}

Test(wine, ctrl_c_drains_open_connections)
{
    sup_proc server = {0};
    int port = start_windows_echo(&server, "1");
    int fd = sup_connect("127.0.0.1", port, IO_TIMEOUT_MS);
    cr_assert(fd >= 0);
    unsigned char a[1000], b[5000], reply[5000];
    sup_pattern_fill(a, sizeof a, 3, 0);
    sup_pattern_fill(b, sizeof b, 3, sizeof a);
    cr_assert(sup_send_all(fd, a, sizeof a) == 0);
    cr_assert(sup_recv_exact(fd, reply, sizeof a, NULL) == (ssize_t)sizeof a);
    cr_assert(sup_send_all(fd, b, sizeof b) == 0);
    sup_sleep_ms(200);
    cr_assert(sup_proc_kill(&server, SIGINT) == 0);
    size_t got = 0;
    ssize_t rc = sup_recv_to_eof(fd, reply, sizeof reply, &got);
    cr_assert(rc == (ssize_t)sizeof b, "after Ctrl+C received %zu bytes (rc %zd), expected %zu then EOF", got, rc,
              sizeof b);
    cr_assert(sup_pattern_check(reply, sizeof b, 3, sizeof a) == sizeof b);
    close(fd);
    int wait_rc = sup_proc_wait(&server, EXIT_TIMEOUT_MS);
    cr_assert(wait_rc == 0 && sup_proc_exit_code(&server) == 0, "exit: %s; stderr %s",
              sup_proc_describe(&server), server.err);
    cr_assert(strstr(server.err, "Ctrl+C"), "stderr: %s", server.err);
    sup_proc_free(&server);
}

Test(wine, linux_load_against_windows_server)
{
    sup_proc server = {0};
    int port = start_windows_echo(&server, "2");
    char port_text[16];
    snprintf(port_text, sizeof port_text, "%d", port);
    sup_proc ping = {0}, pipelined = {0};
    char *ping_argv[] = {linux_load(), "127.0.0.1", "--port", port_text, "--connections", "10", "--duration", "2",
                         "--warmup", "0.5", "--json", NULL};
    assert_clean_run(&ping, run_client(&ping, ping_argv), 100);
    char *pipe_argv[] = {linux_load(), "127.0.0.1", "--port", port_text, "--connections", "4", "--size", "4096",
                         "--pipeline", "8", "--duration", "2", "--warmup", "0.5", "--json", NULL};
    assert_clean_run(&pipelined, run_client(&pipelined, pipe_argv), 100);
    cr_log_info("linux overlap-load -> wine overlap-echo.exe: %s", ping.out);
    sup_proc_free(&ping);
    sup_proc_free(&pipelined);
    stop_windows_echo(&server);
    sup_proc_free(&server);
}

Test(wine, windows_load_against_linux_and_windows_servers)
{
    /* The Linux server, started here. */
    char *echo = getenv("OVERLAP_ECHO");
    cr_assert(echo && access(echo, X_OK) == 0, "OVERLAP_ECHO is not set");
    sup_proc linux_server = {0};
    char *echo_argv[] = {echo, "--host", "127.0.0.1", "--port", "0", "--threads", "1", NULL};
    cr_assert(sup_proc_spawn(&linux_server, echo_argv) == 0);
    char line[256];
    int linux_port = 0;
    while (!linux_port) {
        cr_assert(sup_proc_read_line(&linux_server, line, sizeof line, 10000) == 0, "overlap-echo did not start");
        sscanf(line, "listening on 127.0.0.1:%d", &linux_port);
    }
    char port_text[16];
    snprintf(port_text, sizeof port_text, "%d", linux_port);
    wine_environment();
    sup_proc run = {0};
    char *argv[] = {wine_path(), win_program("overlap-load.exe"), "127.0.0.1", "--port", port_text,
                    "--connections", "10", "--duration", "2", "--warmup", "0.5", "--json", NULL};
    assert_clean_run(&run, run_client(&run, argv), 100);
    /* Every ConnectEx got SO_UPDATE_CONNECT_CONTEXT. */
    cr_assert(json_number(run.out, "\"context_updates\":") == json_number(run.out, "\"connects\":"), "%s", run.out);
    sup_proc_free(&run);
    sup_proc_kill(&linux_server, SIGTERM);
    cr_assert(sup_proc_wait(&linux_server, 10000) == 0 && sup_proc_exit_code(&linux_server) == 0);
    sup_proc_free(&linux_server);

    /* The Windows server. */
    sup_proc server = {0};
    int port = start_windows_echo(&server, "2");
    snprintf(port_text, sizeof port_text, "%d", port);
    sup_proc run2 = {0};
    char *argv2[] = {wine_path(), win_program("overlap-load.exe"), "127.0.0.1", "--port", port_text,
                     "--connections", "10", "--size", "1024", "--pipeline", "4", "--duration", "2", "--warmup", "0.5",
                     "--json", NULL};
    assert_clean_run(&run2, run_client(&run2, argv2), 100);
    sup_proc_free(&run2);
    stop_windows_echo(&server);
    sup_proc_free(&server);
}

Test(wine, windows_churn_through_connectex_and_disconnectex)
{
    sup_proc server = {0};
    int port = start_windows_echo(&server, "2");
    char port_text[16];
    snprintf(port_text, sizeof port_text, "%d", port);
    wine_environment();
    sup_proc run = {0};
    char *argv[] = {wine_path(), win_program("overlap-load.exe"), "127.0.0.1", "--port", port_text,
                    "--connections", "4", "--churn", "5", "--duration", "3", "--warmup", "0.5", "--json", NULL};
    assert_clean_run(&run, run_client(&run, argv), 50);
    double connects = json_number(run.out, "\"connects\":");
    cr_assert(connects > 40, "only %.0f connections in 3.5 s of churn: %s", connects, run.out);
    cr_assert(json_number(run.out, "\"context_updates\":") == connects, "%s", run.out);
    /* Closed sockets went through DisconnectEx(TF_REUSE_SOCKET); under Wine none can be reused, so every one that
     * came back (or timed out) is a counted fallback, and no connect was lost (errors 0 above). */
    double reused = json_number(run.out, "\"reused\":"), fallback = json_number(run.out, "\"fallback\":");
    cr_assert(reused + fallback > 0, "the reuse path did not run: %s", run.out);
    cr_log_info("wine overlap-load.exe --churn: %s", run.out);
    sup_proc_free(&run);
    stop_windows_echo(&server);
    cr_log_info("wine overlap-echo.exe: %s", server.out);
    sup_proc_free(&server);
}

Test(wine, windows_once_against_windows_server)
{
    sup_proc server = {0};
    int port = start_windows_echo(&server, "1");
    char port_text[16];
    snprintf(port_text, sizeof port_text, "%d", port);
    wine_environment();
    sup_proc run = {0};
    char *argv[] = {wine_path(), win_program("overlap-load.exe"), "127.0.0.1", "--port", port_text, "--once", NULL};
    int code = run_client(&run, argv);
    cr_assert(code == 0, "exit %d: %s %s", code, run.out, run.err);
    /* Wine's console may turn \n into \r\n. */
    cr_assert(strstr(run.out, "Bytes Sent: 14") && strstr(run.out, "Bytes received: 14") &&
                  strstr(run.out, "Connection closed"),
              "stdout: %s", run.out);
    sup_proc_free(&run);
    stop_windows_echo(&server);
    sup_proc_free(&server);
}
