/*
 * test_wine_proxy.c - overlap-proxy.exe (the IOCP backend, ConnectEx upstream) run under Wine between Linux loopback
 * clients and the Linux overlap-echo: a stream with its half-close, many connections, the Linux load client through
 * it, the upstream refusing, and the stop on Ctrl+C.
 *
 * $OVERLAP_WIN_DIR holds the mingw-w64 build (examples/overlap-proxy.exe) and its Wine prefix (wineprefix/). A
 * missing Windows build fails the tests: never a silent skip.
 */
#include "echo_client.h"
#include "support.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define WINE_START_TIMEOUT_MS 120000 /* a cold Wine prefix takes a while to come up */
#define IO_TIMEOUT_MS 20000
#define EXIT_TIMEOUT_MS 30000

static void end_children(void)
{
    sup_proc_kill_all();
}

TestSuite(wine_proxy, .fini = end_children, .timeout = 300);

static const char *win_dir(void)
{
    const char *dir = getenv("OVERLAP_WIN_DIR");
    cr_assert(dir && *dir, "OVERLAP_WIN_DIR is not set (run through meson test)");
    return dir;
}

static char *linux_program(const char *variable)
{
    char *path = getenv(variable);
    cr_assert(path && access(path, X_OK) == 0, "%s is not set or not executable", variable);
    return path;
}

static char *wine_path(void)
{
    static char *candidates[] = {"/usr/bin/wine", "/usr/lib/wine/wine64", NULL};
    for (int i = 0; candidates[i]; i++)
        if (access(candidates[i], X_OK) == 0)
            return candidates[i];
    cr_assert_fail("wine is not installed (scripts/bootstrap --windows installs it)");
    return NULL;
}

/* Read stdout up to the first "listening on ADDRESS:PORT" (the servers here listen on 127.0.0.1 only);
 * returns PORT. */
static int wait_listening(sup_proc *proc, const char *name, int timeout_ms)
{
    int port = sup_proc_listening_port(proc, NULL, 0, timeout_ms);
    cr_assert(port > 0, "%s printed no 'listening on' line with a port within %d ms (%s); stderr: %s", name,
              timeout_ms, strerror(-port), proc->err ? proc->err : "");
    return port;
}

static int start_linux_echo(sup_proc *proc)
{
    char *argv[] = {linux_program("OVERLAP_ECHO"), "--host", "127.0.0.1", "--port", "0", "--threads", "1", NULL};
    int rc = sup_proc_spawn(proc, argv);
    cr_assert(rc == 0, "spawn overlap-echo: %s", strerror(-rc));
    return wait_listening(proc, "overlap-echo", 10000);
}

/* `wine overlap-proxy.exe` on an ephemeral 127.0.0.1 port forwarding to 127.0.0.1:upstream_port, with `threads`
 * workers and, when metrics_port is not NULL, the metrics endpoint on an ephemeral port too. */
static int start_windows_proxy_with(sup_proc *proc, int upstream_port, const char *threads, int *metrics_port)
{
    static char prefix[600], exe[600], to[64];
    snprintf(prefix, sizeof prefix, "%s/wineprefix", win_dir());
    setenv("WINEPREFIX", prefix, 1);
    setenv("WINEDEBUG", "-all", 1);
    setenv("WINEDLLOVERRIDES", "mscoree,mshtml=", 1);
    snprintf(exe, sizeof exe, "%s/examples/overlap-proxy.exe", win_dir());
    cr_assert(access(exe, R_OK) == 0, "%s: %s (cross-build it: see docs/PROXY.md)", exe, strerror(errno));
    snprintf(to, sizeof to, "127.0.0.1:%d", upstream_port);
    char *argv[] = {wine_path(), exe, "--listen", "0", "--host", "127.0.0.1", "--to", to, "--threads", (char *)threads,
                    metrics_port ? "--metrics" : NULL, "127.0.0.1:0", NULL};
    int rc = sup_proc_spawn(proc, argv);
    cr_assert(rc == 0, "spawn wine: %s", strerror(-rc));
    int port = wait_listening(proc, "overlap-proxy.exe", WINE_START_TIMEOUT_MS);
    if (metrics_port) {
        /* "metrics on http://127.0.0.1:PORT/metrics" follows the listening line. */
        char line[256];
        const char *at = NULL;
        while (!at) {
            rc = sup_proc_read_line(proc, line, sizeof line, IO_TIMEOUT_MS);
            cr_assert(rc == 0, "no metrics line from overlap-proxy.exe: %s; stderr: %s", strerror(-rc), proc->err);
            at = strstr(line, "metrics on http://127.0.0.1:");
        }
        *metrics_port = atoi(at + strlen("metrics on http://127.0.0.1:"));
        cr_assert(*metrics_port > 0, "%s", line);
    }
    return port;
}

static int start_windows_proxy(sup_proc *proc, int upstream_port)
{
    return start_windows_proxy_with(proc, upstream_port, "2", NULL);
}

/* Ctrl+C (Wine turns SIGINT into CTRL_C_EVENT), then the exit code and the summary. */
static void stop_windows_proxy(sup_proc *proc)
{
    sup_proc_kill(proc, SIGINT);
    int rc = sup_proc_wait(proc, EXIT_TIMEOUT_MS);
    cr_assert(rc == 0, "overlap-proxy.exe did not exit after Ctrl+C; stdout: %s stderr: %s", proc->out, proc->err);
    cr_assert(sup_proc_exit_code(proc) == 0, "overlap-proxy.exe: %s; stderr: %s", sup_proc_describe(proc),
              proc->err);
    cr_assert(strstr(proc->out, "overlap-proxy: stopped"), "no summary in: %s", proc->out);
}

static void stop_linux_echo(sup_proc *proc)
{
    sup_proc_kill(proc, SIGTERM);
    cr_assert(sup_proc_wait(proc, EXIT_TIMEOUT_MS) == 0 && sup_proc_exit_code(proc) == 0,
              "overlap-echo: %s; stderr: %s", sup_proc_describe(proc), proc->err);
}

static unsigned long long summary_number(const char *text, const char *label)
{
    const char *at = strstr(text, label);
    cr_assert(at, "'%s' not in: %s", label, text);
    return strtoull(at + strlen(label), NULL, 10);
}

/* GET /metrics from the proxy's endpoint: the value of one metric ("overlap_errors_total"). */
static unsigned long long metric(int metrics_port, const char *name)
{
    int fd = sup_connect("127.0.0.1", metrics_port, IO_TIMEOUT_MS);
    cr_assert(fd >= 0, "connect to the metrics endpoint: %s", strerror(-fd));
    const char *request = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    cr_assert(sup_send_all(fd, request, strlen(request)) == 0);
    static char page[32768];
    ssize_t got = sup_recv_to_eof(fd, page, sizeof page - 1, NULL);
    close(fd);
    cr_assert(got > 0, "no answer from the metrics endpoint");
    page[got] = '\0';
    char key[128];
    snprintf(key, sizeof key, "\n%s ", name);
    const char *at = strstr(page, key);
    cr_assert(at, "'%s' not in: %s", name, page);
    return strtoull(at + strlen(key), NULL, 10);
}

static double json_number(const char *json, const char *key)
{
    const char *at = strstr(json, key);
    cr_assert(at, "'%s' not in %s", key, json);
    return strtod(at + strlen(key), NULL);
}

Test(wine_proxy, forwards_to_the_linux_echo_intact)
{
    sup_proc echo = {0}, proxy = {0};
    int proxy_port = start_windows_proxy(&proxy, start_linux_echo(&echo));

    /* 2 MiB written from a thread while this one reads the echo, then the half-close comes back as EOF. */
    enum { TOTAL = 2 << 20 };
    struct stream s;
    stream_init(&s, proxy_port, 31, TOTAL, IO_TIMEOUT_MS);
    stream_run(&s, false, 0);
    stream_join(&s);
    expect_stream_intact(&s, "2 MiB through overlap-proxy.exe");
    close(s.fd);

    /* 50 connections open at once, each with its own bytes. */
    enum { CONNS = 50 };
    int fds[CONNS];
    for (int i = 0; i < CONNS; i++) {
        fds[i] = sup_connect("127.0.0.1", proxy_port, IO_TIMEOUT_MS);
        cr_assert(fds[i] >= 0, "connection %d: %s", i, strerror(-fds[i]));
        unsigned char message[200];
        sup_pattern_fill(message, sizeof message, (uint32_t)(500 + i), 0);
        cr_assert(sup_send_all(fds[i], message, sizeof message) == 0);
    }
    for (int i = 0; i < CONNS; i++) {
        unsigned char reply[200];
        cr_assert(sup_recv_exact(fds[i], reply, sizeof reply, NULL) == (ssize_t)sizeof reply, "conn %d", i);
        cr_assert(sup_pattern_check(reply, sizeof reply, (uint32_t)(500 + i), 0) == sizeof reply, "conn %d", i);
        close(fds[i]);
    }

    /* The Linux load client through the Windows proxy: every echoed byte verified. */
    char port_text[16];
    snprintf(port_text, sizeof port_text, "%d", proxy_port);
    char *load[] = {linux_program("OVERLAP_LOAD"), "127.0.0.1", "--port", port_text, "--connections", "20",
                    "--threads", "1", "--duration", "2", "--warmup", "0.5", "--json", NULL};
    sup_proc run = {0};
    int rc = sup_proc_run(&run, load, 120000);
    cr_assert(rc == 0, "overlap-load did not finish: %s", strerror(-rc));
    cr_assert(sup_proc_exit_code(&run) == 0, "overlap-load: %s: %s %s", sup_proc_describe(&run), run.out, run.err);
    cr_assert(json_number(run.out, "\"errors\":{\"total\":") == 0, "%s", run.out);
    cr_assert(json_number(run.out, "\"msgs\":") >= 100, "%s", run.out);
    cr_log_info("overlap-load through overlap-proxy.exe under Wine: %.0f msgs/s",
                json_number(run.out, "\"msgs_per_s\":"));
    sup_proc_free(&run);

    stop_windows_proxy(&proxy);
    cr_assert_eq(summary_number(proxy.out, "clients "), 1 + CONNS + 20, "%s", proxy.out);
    cr_assert_eq(summary_number(proxy.out, "upstream connected "), 1 + CONNS + 20, "%s", proxy.out);
    cr_assert_eq(summary_number(proxy.out, "errors "), 0, "%s", proxy.out);
    stop_linux_echo(&echo);
    sup_proc_free(&proxy);
    sup_proc_free(&echo);
}

Test(wine_proxy, upstream_refusing_closes_the_client_and_the_proxy_keeps_serving)
{
    int refusing_port = 0;
    int refusing = sup_tcp_bind("127.0.0.1", 0, false, &refusing_port); /* bound, not listening: refuses */
    cr_assert(refusing >= 0, "bind: %s", strerror(-refusing));
    sup_proc proxy = {0};
    int proxy_port = start_windows_proxy(&proxy, refusing_port);
    for (int i = 0; i < 2; i++) {
        int fd = sup_connect("127.0.0.1", proxy_port, IO_TIMEOUT_MS);
        cr_assert(fd >= 0, "connection %d: %s", i, strerror(-fd));
        cr_assert(sup_send_all(fd, "hello", 5) == 0);
        char byte;
        ssize_t n = recv(fd, &byte, 1, 0);
        cr_assert(n == 0 || (n < 0 && errno == ECONNRESET),
                  "connection %d: expected it closed, recv gave %zd (%s)", i, n, n < 0 ? strerror(errno) : "data");
        close(fd);
    }
    cr_assert(!proxy.exited, "overlap-proxy.exe exited: %s", sup_proc_describe(&proxy));
    stop_windows_proxy(&proxy);
    /* WSAECONNREFUSED, with the system's text for it. */
    char expected[96];
    snprintf(expected, sizeof expected, "overlap-proxy: connect 127.0.0.1:%d: ", refusing_port);
    cr_assert(strstr(proxy.err, expected), "no '%s' in stderr: %s", expected, proxy.err);
    cr_assert(strstr(proxy.err, "(error 10061)"), "no WSAECONNREFUSED in stderr: %s", proxy.err);
    cr_assert_eq(summary_number(proxy.out, "connect failures "), 2, "%s", proxy.out);
    cr_log_info("DBGERR %s", proxy.err);
    sup_proc_free(&proxy);
    close(refusing);
}

/* Microsoft: a socket accepted by AcceptEx and disconnected with DisconnectEx(TF_REUSE_SOCKET) may go to AcceptEx
 * again but not to ConnectEx; a ConnectEx socket reused so stays bound and may go to ConnectEx only. The proxy does
 * both on one worker, so its pooled sockets of both kinds meet there. Sequential clients churn through it, closing
 * first or after the proxy; no pooled socket may reach the other call (reuse_wrong_role).
 * Only sockets whose peer closed first are retired: here the clients' (each client's FIN comes first), never the
 * upstream ones, where the proxy forwards the client's FIN before the echo server's comes back (TIME_WAIT on the
 * proxy's side, which DisconnectEx could wait out for minutes).
 * Wine 8 leaves every DisconnectEx pending, so under Wine each retire is cancelled after 2 s (reuse_timeouts) and
 * none reaches a pool: there the roles cannot be exercised, only the choice of sockets to retire. */
Test(wine_proxy, reused_sockets_keep_their_role)
{
    sup_proc echo = {0}, proxy = {0};
    int metrics_port = 0;
    int proxy_port = start_windows_proxy_with(&proxy, start_linux_echo(&echo), "1", &metrics_port);
    enum { CYCLES = 60 };
    for (int i = 0; i < CYCLES; i++) {
        int fd = sup_connect("127.0.0.1", proxy_port, IO_TIMEOUT_MS);
        cr_assert(fd >= 0, "cycle %d: connect: %s", i, strerror(-fd));
        unsigned char message[32], reply[32];
        sup_pattern_fill(message, sizeof message, (uint32_t)(700 + i), 0);
        cr_assert(sup_send_all(fd, message, sizeof message) == 0);
        if (i % 2 == 0) {
            /* Our FIN first: the proxy's client side sees EOF before it shuts down. */
            cr_assert(shutdown(fd, SHUT_WR) == 0);
            cr_assert(sup_recv_to_eof(fd, reply, sizeof reply, NULL) == (ssize_t)sizeof reply, "cycle %d", i);
        } else {
            /* The echo back, then our close with the proxy's side still open. */
            cr_assert(sup_recv_exact(fd, reply, sizeof reply, NULL) == (ssize_t)sizeof reply, "cycle %d", i);
        }
        cr_assert(sup_pattern_check(reply, sizeof reply, (uint32_t)(700 + i), 0) == sizeof reply, "cycle %d", i);
        close(fd);
    }
    /* A retire that does not complete is given up on within 3 s: wait until the counts have settled past that. */
    unsigned long long reuse_path = 0, before = ~0ull;
    for (int round = 0; round < 20 && (round < 4 || reuse_path != before); round++) {
        before = reuse_path;
        sup_sleep_ms(1000);
        reuse_path = metric(metrics_port, "overlap_reuse_ok_total") +
                     metric(metrics_port, "overlap_reuse_fallback_total") +
                     metric(metrics_port, "overlap_reuse_timeouts_total");
    }
    unsigned long long wrong = metric(metrics_port, "overlap_reuse_wrong_role_total");
    cr_log_info("overlap-proxy.exe reuse: ok %llu, fallback %llu, timeouts %llu, wrong role %llu",
                metric(metrics_port, "overlap_reuse_ok_total"), metric(metrics_port, "overlap_reuse_fallback_total"),
                metric(metrics_port, "overlap_reuse_timeouts_total"), wrong);
    cr_assert(reuse_path > 0, "the reuse path did not run");
    /* Each retire ends once: reused, refused or timed out; one per client socket at most. */
    cr_assert(reuse_path <= CYCLES, "%llu retires for %d client sockets: upstream sockets were retired", reuse_path,
              CYCLES);
    cr_assert_eq(wrong, 0, "%llu pooled sockets reached the other call (AcceptEx vs ConnectEx)", wrong);
    stop_windows_proxy(&proxy);
    cr_assert_eq(summary_number(proxy.out, "clients "), CYCLES, "%s", proxy.out);
    cr_assert_eq(summary_number(proxy.out, "upstream connected "), CYCLES, "%s", proxy.out);
    cr_assert_eq(summary_number(proxy.out, "errors "), 0, "%s", proxy.out);
    stop_linux_echo(&echo);
    sup_proc_free(&proxy);
    sup_proc_free(&echo);
}
