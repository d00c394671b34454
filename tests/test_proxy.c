/*
 * test_proxy.c - overlap-proxy run as a process ($OVERLAP_PROXY) between loopback clients and either a real
 * overlap-echo ($OVERLAP_ECHO) or an upstream socket the test holds itself, so each test can watch both ends:
 * streams and many connections intact (overlap-load through it), the upstream refusing, client close, half-close
 * and reset, upstream close and reset, client bytes held while the upstream connect is delayed, a client that
 * never reads (bounded memory), argument and bind errors, and the graceful stop.
 *
 * Every child is started here and ends by its PID (support.c kills what a failed assertion leaves behind).
 */
#include "echo_client.h"
#include "support.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#define IO_TIMEOUT_MS 10000
#define START_TIMEOUT_MS 10000
#define EXIT_TIMEOUT_MS 15000

static void end_children(void)
{
    sup_proc_kill_all();
}

TestSuite(proxy, .fini = end_children, .timeout = 120);

static char *program(const char *variable)
{
    char *path = getenv(variable);
    cr_assert(path && *path, "%s is not set (run through meson test)", variable);
    cr_assert(access(path, X_OK) == 0, "%s=%s: %s", variable, path, strerror(errno));
    return path;
}

/* Start a server (on --host 127.0.0.1) and read its stdout up to its first "listening on ADDRESS:PORT";
 * returns PORT. */
static int start_listening(sup_proc *proc, char *const argv[])
{
    int rc = sup_proc_spawn(proc, argv);
    cr_assert_eq(rc, 0, "spawn %s: %s", argv[0], strerror(-rc));
    int port = sup_proc_listening_port(proc, NULL, 0, START_TIMEOUT_MS);
    if (port < 0) {
        sup_proc_wait(proc, 1000);
        cr_assert_fail("no 'listening on' line with a port from %s (%s, %s); stdout: %s stderr: %s", argv[0],
                       strerror(-port), sup_proc_describe(proc), proc->out, proc->err);
    }
    return port;
}

static int start_echo(sup_proc *proc)
{
    char *argv[] = {program("OVERLAP_ECHO"), "--host", "127.0.0.1", "--port", "0", "--threads", "1", NULL};
    return start_listening(proc, argv);
}

/* overlap-proxy on an ephemeral 127.0.0.1 port forwarding to 127.0.0.1:upstream_port, plus `extra` options. */
static int start_proxy(sup_proc *proc, int upstream_port, char *const extra[])
{
    static char to[64];
    snprintf(to, sizeof to, "127.0.0.1:%d", upstream_port);
    char *argv[32] = {program("OVERLAP_PROXY"), "--listen", "0", "--host", "127.0.0.1", "--to", to,
                      "--threads", "2"};
    size_t n = 9;
    for (size_t i = 0; extra && extra[i] && n < 31; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    return start_listening(proc, argv);
}

/* SIGTERM, then a clean exit with the summary line. */
static void stop_server(sup_proc *proc, const char *summary)
{
    cr_assert_eq(sup_proc_kill(proc, SIGTERM), 0, "kill %d", (int)proc->pid);
    int rc = sup_proc_wait(proc, EXIT_TIMEOUT_MS);
    cr_assert_eq(rc, 0, "still running %d ms after SIGTERM; stdout: %s stderr: %s", EXIT_TIMEOUT_MS, proc->out,
                 proc->err);
    cr_assert_eq(sup_proc_exit_code(proc), 0, "after SIGTERM: %s; stdout: %s stderr: %s", sup_proc_describe(proc),
                 proc->out, proc->err);
    cr_assert(strstr(proc->out, summary), "no '%s' summary; stdout: %s stderr: %s", summary, proc->out, proc->err);
}

static unsigned long long summary_number(const char *text, const char *label)
{
    const char *at = strstr(text, label);
    cr_assert(at, "'%s' not in: %s", label, text);
    return strtoull(at + strlen(label), NULL, 10);
}

/* Collect the child's stderr until it contains `needle` (the child keeps running). */
static bool stderr_shows(sup_proc *proc, const char *needle, int timeout_ms)
{
    int64_t deadline = sup_now_ms() + timeout_ms;
    do {
        if (proc->err && strstr(proc->err, needle))
            return true;
        sup_proc_wait(proc, 50);
    } while (sup_now_ms() < deadline && !proc->exited);
    return proc->err && strstr(proc->err, needle);
}

static long rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    cr_assert(f, "%s: %s", path, strerror(errno));
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    fclose(f);
    cr_assert(kib > 0, "no VmRSS in %s", path);
    return kib;
}

/* A listening socket the test accepts on itself, standing in for the upstream server. */
static int upstream_listen(int backlog, int *port)
{
    int fd = sup_tcp_bind("127.0.0.1", 0, false, port);
    cr_assert(fd >= 0, "bind: %s", strerror(-fd));
    cr_assert(listen(fd, backlog) == 0, "listen: %s", strerror(errno));
    return fd;
}

static int accept_within(int listen_fd, int timeout_ms)
{
    struct pollfd p = {.fd = listen_fd, .events = POLLIN};
    int ready = poll(&p, 1, timeout_ms);
    cr_assert(ready == 1, "the proxy did not connect upstream within %d ms", timeout_ms);
    int fd = accept(listen_fd, NULL, NULL);
    cr_assert(fd >= 0, "accept: %s", strerror(errno));
    cr_assert(sup_set_timeouts(fd, IO_TIMEOUT_MS) == 0);
    return fd;
}

/* The peer ended the connection: a receive returns 0 (FIN) or ECONNRESET, never times out. */
static void expect_closed(int fd, const char *who)
{
    char byte;
    ssize_t n = recv(fd, &byte, 1, 0);
    cr_assert(n == 0 || (n < 0 && errno == ECONNRESET), "%s: expected the connection closed, recv gave %zd (%s)",
              who, n, n < 0 ? strerror(errno) : "data");
}

static void expect_bytes(int fd, const void *expected, size_t len, const char *who)
{
    char buf[256];
    cr_assert(len <= sizeof buf);
    ssize_t got = sup_recv_exact(fd, buf, len, NULL);
    cr_assert(got == (ssize_t)len, "%s: received %zd of %zu bytes", who, got, len);
    cr_assert(memcmp(buf, expected, len) == 0, "%s: bytes differ", who);
}

static int client_connect(int port)
{
    int fd = sup_connect("127.0.0.1", port, IO_TIMEOUT_MS);
    cr_assert(fd >= 0, "connect to the proxy on port %d: %s", port, strerror(-fd));
    return fd;
}

/* ---- through a real overlap-echo ---- */

/* Send `total` bytes from one thread while another reads the echo, then the half-close: every byte must come back,
 * in order, followed by EOF (the FIN travels client -> proxy -> echo and back). */
static void stream_through(int port, uint32_t seed, size_t total)
{
    struct stream s;
    stream_init(&s, port, seed, total, IO_TIMEOUT_MS);
    stream_run(&s, false, 0);
    stream_join(&s);
    char what[64];
    snprintf(what, sizeof what, "%zu bytes through the proxy", total);
    expect_stream_intact(&s, what);
    close(s.fd);
}

Test(proxy, streams_arrive_intact_and_half_close_passes_through)
{
    sup_proc echo = {0}, proxy = {0};
    int proxy_port = start_proxy(&proxy, start_echo(&echo), NULL);
    stream_through(proxy_port, 1, 8u << 20);
    stream_through(proxy_port, 2, 1);          /* one byte, then the half-close */
    stream_through(proxy_port, 3, 0);          /* a half-close with nothing before it */
    stream_through(proxy_port, 4, 1048576 + 7); /* not a multiple of any buffer size */
    stop_server(&proxy, "overlap-proxy: stopped");
    cr_assert_eq(summary_number(proxy.out, "clients "), 4, "%s", proxy.out);
    cr_assert_eq(summary_number(proxy.out, "upstream connected "), 4, "%s", proxy.out);
    cr_assert_eq(summary_number(proxy.out, "errors "), 0, "%s", proxy.out);
    stop_server(&echo, "overlap-echo: stopped");
    sup_proc_free(&proxy);
    sup_proc_free(&echo);
}

/* 200 clients at once, each sending as soon as it connects (so bytes often arrive before the upstream connection
 * is open) and half-closing. */
Test(proxy, many_concurrent_connections_each_get_their_bytes)
{
    sup_proc echo = {0}, proxy = {0};
    int proxy_port = start_proxy(&proxy, start_echo(&echo), NULL);
    enum { CONNS = 200, SIZE = 3000 };
    static int fds[CONNS];
    static unsigned char message[SIZE], reply[SIZE + 1];
    for (int i = 0; i < CONNS; i++) {
        fds[i] = client_connect(proxy_port);
        sup_pattern_fill(message, SIZE, (uint32_t)(100 + i), 0);
        cr_assert(sup_send_all(fds[i], message, SIZE) == 0, "conn %d: send", i);
        cr_assert(shutdown(fds[i], SHUT_WR) == 0);
    }
    for (int i = 0; i < CONNS; i++) {
        size_t got = 0;
        ssize_t rc = sup_recv_to_eof(fds[i], reply, sizeof reply, &got);
        cr_assert(rc == SIZE, "conn %d: %zd (%zu bytes) before EOF", i, rc, got);
        cr_assert(sup_pattern_check(reply, SIZE, (uint32_t)(100 + i), 0) == SIZE, "conn %d: bytes differ", i);
        close(fds[i]);
    }
    stop_server(&proxy, "overlap-proxy: stopped");
    cr_assert_eq(summary_number(proxy.out, "clients "), CONNS, "%s", proxy.out);
    stop_server(&echo, "overlap-echo: stopped");
    sup_proc_free(&proxy);
    sup_proc_free(&echo);
}

static double json_number(const char *json, const char *key)
{
    const char *at = strstr(json, key);
    cr_assert(at, "'%s' not in %s", key, json);
    return strtod(at + strlen(key), NULL);
}

/* overlap-load verifies every echoed byte of every connection against its own pattern. */
static double load_msgs_per_s(int port, const char *connections)
{
    char port_text[16];
    snprintf(port_text, sizeof port_text, "%d", port);
    char *argv[] = {program("OVERLAP_LOAD"), "127.0.0.1", "--port", port_text, "--connections",
                    (char *)connections, "--threads", "1", "--duration", "2", "--warmup", "0.5", "--json", NULL};
    sup_proc run = {0};
    int rc = sup_proc_run(&run, argv, 60000);
    cr_assert(rc == 0, "overlap-load did not finish: %s; %s %s", strerror(-rc), run.out, run.err);
    cr_assert(sup_proc_exit_code(&run) == 0, "overlap-load: %s: %s %s", sup_proc_describe(&run), run.out, run.err);
    cr_assert(json_number(run.out, "\"errors\":{\"total\":") == 0, "%s", run.out);
    double msgs = json_number(run.out, "\"msgs\":");
    cr_assert(msgs >= 1000, "only %.0f messages: %s", msgs, run.out);
    double rate = json_number(run.out, "\"msgs_per_s\":");
    sup_proc_free(&run);
    return rate;
}

Test(proxy, load_client_through_proxy_sees_no_errors)
{
    sup_proc echo = {0}, proxy = {0};
    int echo_port = start_echo(&echo);
    int proxy_port = start_proxy(&proxy, echo_port, NULL);
    double through = load_msgs_per_s(proxy_port, "100");
    double direct = load_msgs_per_s(echo_port, "100");
    cr_log_info("overlap-load, 100 connections, 64-byte messages: %.0f msgs/s through the proxy, %.0f direct",
                through, direct);
    stop_server(&proxy, "overlap-proxy: stopped");
    cr_assert_eq(summary_number(proxy.out, "errors "), 0, "%s", proxy.out);
    stop_server(&echo, "overlap-echo: stopped");
    sup_proc_free(&proxy);
    sup_proc_free(&echo);
}

/* ---- failures upstream ---- */

Test(proxy, upstream_refusing_closes_the_client_and_the_proxy_keeps_serving)
{
    int refusing_port = 0;
    int refusing = sup_tcp_bind("127.0.0.1", 0, false, &refusing_port); /* bound, not listening: refuses */
    cr_assert(refusing >= 0, "bind: %s", strerror(-refusing));
    sup_proc proxy = {0};
    int proxy_port = start_proxy(&proxy, refusing_port, NULL);
    char expected[128];
    snprintf(expected, sizeof expected, "overlap-proxy: connect 127.0.0.1:%d: Connection refused (errno %d)",
             refusing_port, ECONNREFUSED);
    for (int i = 0; i < 3; i++) {
        int fd = client_connect(proxy_port);
        cr_assert(sup_send_all(fd, "hello", 5) == 0); /* held for an upstream that never opens, then dropped */
        expect_closed(fd, "client of a refused upstream");
        close(fd);
    }
    cr_assert(stderr_shows(&proxy, expected, IO_TIMEOUT_MS), "no '%s' in stderr: %s", expected, proxy.err);
    cr_assert(!proxy.exited, "the proxy exited: %s", sup_proc_describe(&proxy));
    stop_server(&proxy, "overlap-proxy: stopped");
    cr_assert_eq(summary_number(proxy.out, "connect failures "), 3, "%s", proxy.out);
    sup_proc_free(&proxy);
    close(refusing);
}

Test(proxy, upstream_closing_reaches_the_client_after_its_last_bytes)
{
    int port = 0;
    int listener = upstream_listen(16, &port);
    sup_proc proxy = {0};
    int proxy_port = start_proxy(&proxy, port, NULL);

    /* Upstream sends and closes: the client gets the bytes, then EOF; its own close then ends the pair. */
    int client = client_connect(proxy_port);
    int upstream = accept_within(listener, IO_TIMEOUT_MS);
    cr_assert(sup_send_all(upstream, "goodbye", 7) == 0);
    close(upstream);
    expect_bytes(client, "goodbye", 7, "client");
    expect_closed(client, "client after the upstream closed");
    close(client);

    /* Upstream half-closes: the client sees EOF but can still send, and the upstream still receives. */
    client = client_connect(proxy_port);
    upstream = accept_within(listener, IO_TIMEOUT_MS);
    cr_assert(shutdown(upstream, SHUT_WR) == 0);
    expect_closed(client, "client after the upstream half-closed");
    cr_assert(sup_send_all(client, "still here", 10) == 0);
    expect_bytes(upstream, "still here", 10, "upstream after its half-close");
    close(client);
    expect_closed(upstream, "upstream after the client closed");
    close(upstream);

    /* Upstream resets: the client connection is closed too. */
    client = client_connect(proxy_port);
    upstream = accept_within(listener, IO_TIMEOUT_MS);
    cr_assert(sup_send_all(client, "ping", 4) == 0);
    expect_bytes(upstream, "ping", 4, "upstream");
    sup_close_reset(upstream);
    expect_closed(client, "client after the upstream reset");
    close(client);

    stop_server(&proxy, "overlap-proxy: stopped");
    cr_assert_eq(summary_number(proxy.out, "clients "), 3, "%s", proxy.out);
    sup_proc_free(&proxy);
    close(listener);
}

/* ---- the client ending ---- */

Test(proxy, client_close_half_close_and_reset_reach_the_upstream)
{
    int port = 0;
    int listener = upstream_listen(16, &port);
    sup_proc proxy = {0};
    int proxy_port = start_proxy(&proxy, port, NULL);

    /* Close: the upstream gets the bytes, then EOF. */
    int client = client_connect(proxy_port);
    int upstream = accept_within(listener, IO_TIMEOUT_MS);
    cr_assert(sup_send_all(client, "last words", 10) == 0);
    close(client);
    expect_bytes(upstream, "last words", 10, "upstream");
    expect_closed(upstream, "upstream after the client closed");
    close(upstream);

    /* Half-close: the upstream sees EOF and its reply still reaches the client, then the client sees EOF. */
    client = client_connect(proxy_port);
    upstream = accept_within(listener, IO_TIMEOUT_MS);
    cr_assert(sup_send_all(client, "request", 7) == 0);
    cr_assert(shutdown(client, SHUT_WR) == 0);
    expect_bytes(upstream, "request", 7, "upstream");
    expect_closed(upstream, "upstream after the client's half-close");
    cr_assert(sup_send_all(upstream, "response", 8) == 0);
    close(upstream);
    expect_bytes(client, "response", 8, "client after its half-close");
    expect_closed(client, "client after the response");
    close(client);

    /* Reset (SO_LINGER 0): the upstream connection is closed too. */
    client = client_connect(proxy_port);
    upstream = accept_within(listener, IO_TIMEOUT_MS);
    cr_assert(sup_send_all(client, "abc", 3) == 0);
    expect_bytes(upstream, "abc", 3, "upstream");
    sup_close_reset(client);
    expect_closed(upstream, "upstream after the client reset");
    close(upstream);

    stop_server(&proxy, "overlap-proxy: stopped");
    cr_assert_eq(summary_number(proxy.out, "clients "), 3, "%s", proxy.out);
    cr_assert(summary_number(proxy.out, "resets ") >= 1, "the client's reset was not counted: %s", proxy.out);
    sup_proc_free(&proxy);
    close(listener);
}

static int local_port(int fd, bool peer)
{
    struct sockaddr_in address;
    socklen_t len = sizeof address;
    int rc = peer ? getpeername(fd, (struct sockaddr *)&address, &len)
                  : getsockname(fd, (struct sockaddr *)&address, &len);
    cr_assert(rc == 0, "getsockname: %s", strerror(errno));
    return ntohs(address.sin_port);
}

/* Is the accepted connection one of the test's own filler connections? */
static bool is_filler(int accepted, const int *fillers, int count)
{
    int port = local_port(accepted, true);
    for (int i = 0; i < count; i++)
        if (local_port(fillers[i], false) == port)
            return true;
    return false;
}

/* The upstream's accept queue is full, so the proxy's SYN is dropped and retried about a second later: the client's
 * first megabytes arrive while the upstream connection is not open. The proxy holds a bounded part, pauses the
 * client, and delivers every byte in order once the upstream connection opens. */
Test(proxy, bytes_sent_before_the_upstream_opens_are_held_and_delivered)
{
    int port = 0;
    int listener = upstream_listen(0, &port);
    /* Fill the accept queue (a backlog of 0 still admits one; two make sure) without accepting. */
    int fillers[2];
    for (int i = 0; i < 2; i++) {
        fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        cr_assert(fillers[i] >= 0);
        struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                      .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int rc = connect(fillers[i], (struct sockaddr *)&address, sizeof address);
        cr_assert(rc == 0 || errno == EINPROGRESS, "filler connect: %s", strerror(errno));
    }
    sup_sleep_ms(100);
    sup_proc proxy = {0};
    int proxy_port = start_proxy(&proxy, port, NULL);
    long rss_before = rss_kib(proxy.pid);

    enum { TOTAL = 8 << 20 };
    struct stream w; /* only its sending side: the upstream end is read here */
    stream_init(&w, proxy_port, 9, TOTAL, IO_TIMEOUT_MS);
    int client = w.fd;
    cr_assert(pthread_create(&w.sender, NULL, stream_send, &w) == 0);
    sup_sleep_ms(400);
    long rss_waiting = rss_kib(proxy.pid);
    /* Make room: accept whatever comes; the fillers are told apart by their port (their SYN retries race the
     * proxy's). */
    int upstream = -1;
    int64_t deadline = sup_now_ms() + IO_TIMEOUT_MS;
    while (upstream < 0 && sup_now_ms() < deadline) {
        int fd = accept_within(listener, (int)(deadline - sup_now_ms()));
        if (is_filler(fd, fillers, 2))
            close(fd);
        else
            upstream = fd;
    }
    cr_assert(upstream >= 0, "the proxy's connection was never accepted");
    static unsigned char in[TOTAL + 1];
    size_t got = 0;
    ssize_t rc = sup_recv_to_eof(upstream, in, sizeof in, &got);
    pthread_join(w.sender, NULL);
    cr_assert(w.send_err == 0, "client send: %s", strerror(w.send_err));
    cr_assert(rc == TOTAL, "upstream received %zd (%zu) of %d bytes before EOF", rc, got, TOTAL);
    size_t bad = sup_pattern_check(in, TOTAL, 9, 0);
    cr_assert(bad == TOTAL, "byte %zu differs", bad);
    cr_log_info("proxy RSS %ld KiB at start, %ld KiB while holding for the delayed upstream", rss_before,
                rss_waiting);
    cr_assert(rss_waiting - rss_before < 4096, "holding grew the proxy by %ld KiB", rss_waiting - rss_before);
    close(upstream);
    close(client);
    for (int i = 0; i < 2; i++)
        close(fillers[i]);
    stop_server(&proxy, "overlap-proxy: stopped");
    sup_proc_free(&proxy);
    close(listener);
}

/* A client that sends without reading: its echoes back up through the proxy into overlap-echo, which stops reading,
 * which stops the proxy reading the client. What the client manages to send stays bounded (kernel socket buffers
 * plus each side's max pending); the proxy holds only a few buffers for it, so its memory stays flat and another
 * client on the same worker thread still streams through at the same time (had the proxy kept reading the
 * flooder, its queued buffers would empty the worker's pool and stall every connection); and every byte still
 * comes back in order once the client reads. */
Test(proxy, client_that_never_reads_is_paused_with_bounded_memory)
{
    sup_proc echo = {0}, proxy = {0};
    /* One worker with a 256-slot pool of 16 KiB (4 MiB): the other client shares it, and touching every slot once
     * (the kernel cycles through a buffer ring) cannot pass for growth. */
    char *options[] = {"--threads", "1", "--buffer-count", "256", "--buffer-size", "16384", NULL};
    int proxy_port = start_proxy(&proxy, start_echo(&echo), options);
    stream_through(proxy_port, 20, 8u << 20);
    long rss_before = rss_kib(proxy.pid);

    int fd = client_connect(proxy_port);
    cr_assert(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == 0);
    enum { LIMIT = 256 << 20, CHUNK = 65536 };
    static unsigned char chunk[CHUNK];
    size_t sent = 0;
    while (sent < LIMIT) {
        sup_pattern_fill(chunk, CHUNK, 21, sent);
        ssize_t n = send(fd, chunk, CHUNK, MSG_NOSIGNAL);
        if (n > 0) {
            sent += (size_t)n; /* a partial send: the pattern continues at `sent` on the next fill */
            continue;
        }
        cr_assert(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK), "send: %s", strerror(errno));
        /* Stalled for 1.5 s: backpressure holds all the way back. */
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        if (poll(&p, 1, 1500) == 0)
            break;
    }
    long rss_flooded = rss_kib(proxy.pid);
    cr_log_info("a client that never reads sent %zu bytes before it stalled; proxy RSS %ld KiB -> %ld KiB", sent,
                rss_before, rss_flooded);
    cr_assert(sent < 96u << 20, "the client sent %zu bytes without reading: nothing pushed back", sent);
    cr_assert(rss_flooded - rss_before < 8192, "proxy RSS grew by %ld KiB", rss_flooded - rss_before);

    /* The flooder is stalled, not the worker: another client streams 4 MiB through the same thread now. */
    stream_through(proxy_port, 22, 4u << 20);

    /* Read it all back: nothing was lost or reordered while paused. */
    cr_assert(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) == 0);
    static unsigned char in[CHUNK];
    for (size_t received = 0; received < sent;) {
        size_t want = sent - received < CHUNK ? sent - received : CHUNK;
        ssize_t n = recv(fd, in, want, 0);
        cr_assert(n > 0, "after %zu of %zu bytes: recv gave %zd (%s)", received, sent, n, strerror(errno));
        size_t bad = sup_pattern_check(in, (size_t)n, 21, received);
        cr_assert(bad == (size_t)n, "byte %zu differs", received + bad);
        received += (size_t)n;
    }
    close(fd);
    stop_server(&proxy, "overlap-proxy: stopped");
    stop_server(&echo, "overlap-echo: stopped");
    sup_proc_free(&proxy);
    sup_proc_free(&echo);
}

/* ---- the command line and the stop ---- */

static void expect_failure(char *const argv[], int code, const char *message)
{
    sup_proc run = {0};
    int rc = sup_proc_run(&run, argv, EXIT_TIMEOUT_MS);
    cr_assert(rc == 0, "%s did not exit: %s", argv[0], strerror(-rc));
    cr_assert_eq(sup_proc_exit_code(&run), code, "%s: expected exit %d: %s; stderr: %s", argv[1], code,
                 sup_proc_describe(&run), run.err);
    cr_assert(strstr(run.err, message), "expected '%s' in stderr: %s", message, run.err);
    sup_proc_free(&run);
}

Test(proxy, bad_arguments_and_bind_failure_are_reported)
{
    char *proxy_path = program("OVERLAP_PROXY");
    char *missing_to[] = {proxy_path, "--listen", "0", NULL};
    expect_failure(missing_to, 2, "overlap-proxy: --to HOST:PORT is required");
    char *no_port[] = {proxy_path, "--listen", "0", "--to", "localhost", NULL};
    expect_failure(no_port, 2, "overlap-proxy: --to: 'localhost' has no port (HOST:PORT)");
    char *bare_v6[] = {proxy_path, "--listen", "0", "--to", "::1:80", NULL};
    expect_failure(bare_v6, 2, "write an IPv6 address as [ADDRESS]:PORT");
    char *port_zero[] = {proxy_path, "--listen", "0", "--to", "[::1]:0", NULL};
    expect_failure(port_zero, 2, "--to: '0' is not a port number (1-65535)");
    char *bad_listen[] = {proxy_path, "--listen", "http", "--to", "127.0.0.1:80", NULL};
    expect_failure(bad_listen, 2, "--listen: 'http' is not a port number");
    char *unknown[] = {proxy_path, "--listen", "0", "--to", "127.0.0.1:80", "--frobnicate", "1", NULL};
    expect_failure(unknown, 2, "unknown option '--frobnicate'");

    int busy_port = 0;
    int busy = sup_tcp_bind("127.0.0.1", 0, true, &busy_port);
    cr_assert(busy >= 0, "bind: %s", strerror(-busy));
    char port_text[16], expected[128];
    snprintf(port_text, sizeof port_text, "%d", busy_port);
    snprintf(expected, sizeof expected, "overlap-proxy: bind 127.0.0.1:%d: Address already in use (errno %d)",
             busy_port, EADDRINUSE);
    char *in_use[] = {proxy_path, "--listen", port_text, "--host", "127.0.0.1", "--to", "127.0.0.1:80", NULL};
    expect_failure(in_use, 1, expected);
    close(busy);

    /* --to its own listening address, by any name: every client would open a connection to the proxy itself, which
     * would open another, until no descriptor is left (124 pairs at nofile 256 in under a second). */
    int own_port = 0;
    int probe = sup_tcp_bind("127.0.0.1", 0, false, &own_port);
    cr_assert(probe >= 0, "bind: %s", strerror(-probe));
    close(probe);
    char own[16], to_self[64], to_localhost[64];
    snprintf(own, sizeof own, "%d", own_port);
    snprintf(to_self, sizeof to_self, "127.0.0.1:%d", own_port);
    snprintf(to_localhost, sizeof to_localhost, "localhost:%d", own_port);
    char *loop_any[] = {proxy_path, "--listen", own, "--to", to_self, NULL};
    expect_failure(loop_any, 2, "reaches this proxy's own listening address");
    char *loop_named[] = {proxy_path, "--listen", own, "--host", "127.0.0.1", "--to", to_localhost, NULL};
    expect_failure(loop_named, 2, "a forwarding loop; refusing to start");
    char *bad_timeout[] = {proxy_path, "--listen", "0", "--to", "127.0.0.1:80", "--connect-timeout", "soon", NULL};
    expect_failure(bad_timeout, 2, "--connect-timeout: 'soon' is not a number of seconds");

    char *help[] = {proxy_path, "--help", NULL};
    sup_proc run = {0};
    cr_assert(sup_proc_run(&run, help, EXIT_TIMEOUT_MS) == 0);
    cr_assert_eq(sup_proc_exit_code(&run), 0);
    cr_assert(strstr(run.out, "usage: overlap-proxy --listen PORT --to HOST:PORT"), "%s", run.out);
    sup_proc_free(&run);
}

Test(proxy, sigterm_finishes_open_pairs_and_exits_cleanly)
{
    sup_proc echo = {0}, proxy = {0};
    int proxy_port = start_proxy(&proxy, start_echo(&echo), NULL);
    int fd = client_connect(proxy_port);
    cr_assert(sup_send_all(fd, "in flight", 9) == 0);
    expect_bytes(fd, "in flight", 9, "client");
    cr_assert_eq(sup_proc_kill(&proxy, SIGTERM), 0);
    /* The drain shuts the client's connection down: the client sees EOF, closes, and the proxy exits. */
    expect_closed(fd, "client during the stop");
    close(fd);
    int rc = sup_proc_wait(&proxy, EXIT_TIMEOUT_MS);
    cr_assert_eq(rc, 0, "the proxy still runs after SIGTERM; stderr: %s", proxy.err);
    cr_assert_eq(sup_proc_exit_code(&proxy), 0, "%s; stderr: %s", sup_proc_describe(&proxy), proxy.err);
    cr_assert(strstr(proxy.err, "stopping, finishing open connections"), "%s", proxy.err);
    cr_assert(strstr(proxy.out, "overlap-proxy: stopped after"), "%s", proxy.out);
    stop_server(&echo, "overlap-echo: stopped");
    sup_proc_free(&proxy);
    sup_proc_free(&echo);
}
