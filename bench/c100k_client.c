/*
 * c100k-client: the client half of bench/c100k. Opens many TCP connections to one loopback server, spread over
 * several 127.0.0.x source addresses (one address gives at most one ephemeral port range of connections to a
 * given server address and port, about 28k here), then keeps them open with a trickle of verified 16-byte echoes.
 * Plain non-blocking sockets on epoll: liboverlap's ovl_connect cannot bind a source address.
 *
 *   c100k-client --port P [--host 127.0.0.1] [--connections N] [--source-first 127.0.0.2] [--per-source N]
 *                [--inflight N] [--rate MSGS_PER_S] [--deadline S] [--drain S]
 *
 * It starts connecting at once. Commands come on stdin, one per line, so the driver decides when each phase
 * starts: "go" starts the trickle, "stop" (or end of input: the driver is gone) stops it. After a stop it waits at
 * most --drain seconds for the echoes in flight, prints its report and closes every connection with a reset
 * (SO_LINGER 0), so a run leaves no TIME_WAIT entries behind on a shared machine. --deadline bounds the whole run
 * whatever the driver does.
 *
 * Output on stdout, one JSON object per line: {"event":"progress",...} every second while opening,
 * {"event":"open",...} once every connection is established (or opening failed or was stopped), and
 * {"event":"done",...} at the end. Exit status 0 only if every connection opened and every echo came back intact.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* IP_BIND_ADDRESS_NO_PORT, SOCK_NONBLOCK; meson defines it already */
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

enum {
    MESSAGE_SIZE = 16,          /* connection index, sequence number, and a check word mixing both */
    EVENT_BATCH = 1024,
    TICK_NS = 10 * 1000 * 1000, /* the trickle is paced, and deadlines checked, every 10 ms */
    SPARE_DESCRIPTORS = 16,     /* stdin/out/err, epoll, timer */
};

/* epoll data for the two descriptors that are not connections */
#define TAG_STDIN UINT64_MAX
#define TAG_TIMER (UINT64_MAX - 1)

enum conn_state { CONN_UNUSED, CONN_CONNECTING, CONN_OPEN, CONN_CLOSED };

struct conn {
    int fd;
    uint8_t state;           /* enum conn_state */
    uint8_t received;        /* bytes of the echo in flight received so far */
    bool waiting;            /* an echo is in flight */
    bool echoed;             /* at least one echo came back */
    uint32_t sequence;       /* of the echo in flight */
    uint64_t sent_ns;
    unsigned char reply[MESSAGE_SIZE];
};

struct options {
    struct in_addr host;
    uint16_t port;
    uint32_t connections;
    struct in_addr source_first;
    uint32_t per_source;
    uint32_t inflight;
    double rate;
    double deadline_s;
    double drain_s;
};

enum phase { PHASE_OPENING, PHASE_OPEN, PHASE_TRICKLE, PHASE_DRAIN };

struct client {
    struct options options;
    struct conn *conns;
    int epoll_fd, timer_fd;
    enum phase phase;
    uint32_t next_to_connect, connecting, opened;
    bool open_reported, open_failed, stop_requested, stdin_closed;
    uint64_t started_ns, open_done_ns, trickle_started_ns, trickle_stopped_ns, drain_deadline_ns, deadline_ns;
    uint64_t last_progress_ns;
    uint64_t echoes_sent, echoes_ok, in_flight, errors, latency_sum_ns, latency_max_ns;
    uint32_t trickle_cursor;
    char first_error[256];
    char stdin_line[64];
    size_t stdin_len;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Counts an error and keeps the first one's text for the report; every message names the operation and errno. */
static void client_error(struct client *client, const char *format, ...)
{
    client->errors++;
    if (client->first_error[0])
        return;
    va_list args;
    va_start(args, format);
    vsnprintf(client->first_error, sizeof client->first_error, format, args);
    va_end(args);
    fprintf(stderr, "c100k-client: %s\n", client->first_error);
}

static struct in_addr source_address(const struct client *client, uint32_t index)
{
    struct in_addr address = {
        .s_addr = htonl(ntohl(client->options.source_first.s_addr) + index / client->options.per_source)};
    return address;
}

/* The message for (index, sequence); the check word makes a byte landing on the wrong connection fail too. */
static void message_for(uint32_t index, uint32_t sequence, unsigned char out[MESSAGE_SIZE])
{
    uint64_t check = ((uint64_t)index << 32 | sequence) * 0x9E3779B97F4A7C15u;
    check ^= check >> 29;
    memcpy(out, &index, 4);
    memcpy(out + 4, &sequence, 4);
    memcpy(out + 8, &check, 8);
}

static void write_json_string(const char *text)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

static double seconds_between(uint64_t from_ns, uint64_t to_ns)
{
    return to_ns > from_ns ? (double)(to_ns - from_ns) / 1e9 : 0.0;
}

static void report_open(struct client *client, const char *why_not)
{
    uint64_t end = client->open_done_ns ? client->open_done_ns : now_ns();
    double seconds = seconds_between(client->started_ns, end);
    printf("{\"event\":\"open\",\"ok\":%s,\"connections\":%" PRIu32 ",\"opened\":%" PRIu32
           ",\"seconds\":%.3f,\"connects_per_s\":%.1f,\"reason\":",
           why_not ? "false" : "true", client->options.connections, client->opened, seconds,
           seconds > 0 ? client->opened / seconds : 0.0);
    write_json_string(why_not ? why_not : "");
    printf("}\n");
    client->open_reported = true;
}

static void conn_fail_open(struct client *client, uint32_t index, const char *operation, int code)
{
    char source[INET_ADDRSTRLEN], target[INET_ADDRSTRLEN];
    struct in_addr from = source_address(client, index);
    inet_ntop(AF_INET, &from, source, sizeof source);
    inet_ntop(AF_INET, &client->options.host, target, sizeof target);
    client_error(client, "%s %s -> %s:%u (connection %" PRIu32 ", %" PRIu32 " open): %s (errno %d)", operation,
                 source, target, client->options.port, index, client->opened, strerror(code), code);
    client->open_failed = true;
}

static int conn_watch(struct client *client, uint32_t index, int operation, uint32_t events)
{
    struct epoll_event event = {.events = events, .data.u64 = index};
    if (epoll_ctl(client->epoll_fd, operation, client->conns[index].fd, &event) < 0) {
        int code = errno;
        client_error(client, "epoll_ctl connection %" PRIu32 ": %s (errno %d)", index, strerror(code), code);
        return -1;
    }
    return 0;
}

static void conn_established(struct client *client, uint32_t index)
{
    struct conn *conn = &client->conns[index];
    conn->state = CONN_OPEN;
    client->opened++;
    /* Level-triggered EPOLLIN: an idle connection costs nothing until its echo (or an unexpected close) arrives. */
    if (conn_watch(client, index, EPOLL_CTL_MOD, EPOLLIN | EPOLLRDHUP) < 0)
        client->open_failed = true;
}

/* Starts the non-blocking connect of connection INDEX from its source address. */
static void conn_start(struct client *client, uint32_t index)
{
    struct conn *conn = &client->conns[index];
    conn->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (conn->fd < 0) {
        conn_fail_open(client, index, "socket", errno);
        return;
    }
    /* Port chosen at connect time, per (source, destination) pair: without this, bind would reserve a port for
     * the source address alone, whatever the destination (the kernel's bind-before-connect trap). */
    int one = 1;
    if (setsockopt(conn->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one) < 0) {
        conn_fail_open(client, index, "setsockopt IP_BIND_ADDRESS_NO_PORT", errno);
        close(conn->fd);
        conn->fd = -1;
        return;
    }
    struct sockaddr_in from = {.sin_family = AF_INET, .sin_addr = source_address(client, index)};
    if (bind(conn->fd, (struct sockaddr *)&from, sizeof from) < 0) {
        conn_fail_open(client, index, "bind", errno);
        close(conn->fd);
        conn->fd = -1;
        return;
    }
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_addr = client->options.host,
                             .sin_port = htons(client->options.port)};
    conn->state = CONN_CONNECTING;
    int rc = connect(conn->fd, (struct sockaddr *)&to, sizeof to);
    if (rc < 0 && errno != EINPROGRESS) {
        conn_fail_open(client, index, "connect", errno);
        close(conn->fd);
        conn->fd = -1;
        conn->state = CONN_UNUSED;
        return;
    }
    if (conn_watch(client, index, EPOLL_CTL_ADD, rc == 0 ? EPOLLIN | EPOLLRDHUP : EPOLLOUT) < 0) {
        client->open_failed = true;
        close(conn->fd);
        conn->fd = -1;
        conn->state = CONN_UNUSED;
        return;
    }
    if (rc == 0) { /* loopback may finish the handshake inside connect() */
        conn->state = CONN_OPEN;
        client->opened++;
    } else {
        client->connecting++;
    }
}

static void request_stop(struct client *client)
{
    client->stop_requested = true;
    if (client->phase == PHASE_TRICKLE)
        client->trickle_stopped_ns = now_ns();
    if (client->phase == PHASE_OPEN || client->phase == PHASE_TRICKLE) {
        client->phase = PHASE_DRAIN;
        client->drain_deadline_ns = now_ns() + (uint64_t)(client->options.drain_s * 1e9);
    }
}

/* Keeps up to --inflight connects in progress until every connection is started or one failed. */
static void open_more(struct client *client)
{
    while (client->phase == PHASE_OPENING && !client->open_failed && !client->stop_requested &&
           client->next_to_connect < client->options.connections && client->connecting < client->options.inflight)
        conn_start(client, client->next_to_connect++);
    if (client->phase != PHASE_OPENING)
        return;
    if (client->opened == client->options.connections) {
        client->open_done_ns = now_ns();
        client->phase = PHASE_OPEN;
        report_open(client, NULL);
    } else if ((client->open_failed || client->stop_requested) && client->connecting == 0) {
        client->open_done_ns = now_ns();
        client->phase = PHASE_OPEN;
        report_open(client, client->open_failed ? client->first_error : "stopped before every connection opened");
    }
    if (client->phase == PHASE_OPEN && client->stop_requested) /* a stop that came while opening */
        request_stop(client);
}

static void conn_connect_done(struct client *client, uint32_t index)
{
    struct conn *conn = &client->conns[index];
    int code = 0;
    socklen_t length = sizeof code;
    client->connecting--;
    if (getsockopt(conn->fd, SOL_SOCKET, SO_ERROR, &code, &length) < 0)
        code = errno;
    if (code) {
        conn_fail_open(client, index, "connect", code);
        epoll_ctl(client->epoll_fd, EPOLL_CTL_DEL, conn->fd, NULL);
        close(conn->fd);
        conn->fd = -1;
        conn->state = CONN_UNUSED;
        return;
    }
    conn_established(client, index);
}

/* An open connection stopped being usable: stop watching it, keep the descriptor until the end (close resets). */
static void conn_lost(struct client *client, uint32_t index)
{
    struct conn *conn = &client->conns[index];
    epoll_ctl(client->epoll_fd, EPOLL_CTL_DEL, conn->fd, NULL);
    conn->state = CONN_CLOSED;
    if (conn->waiting)
        client->in_flight--;
    conn->waiting = false;
}

static void conn_readable(struct client *client, uint32_t index, uint32_t events)
{
    struct conn *conn = &client->conns[index];
    if (!conn->waiting) {
        unsigned char scratch[256];
        ssize_t n = recv(conn->fd, scratch, sizeof scratch, 0);
        if (n > 0)
            client_error(client, "recv connection %" PRIu32 ": %zd bytes nobody asked for", index, n);
        else if (n == 0 || (events & (EPOLLRDHUP | EPOLLHUP)))
            client_error(client, "recv connection %" PRIu32 ": the server closed the connection", index);
        else if (errno == EAGAIN || errno == EINTR)
            return;
        else
            client_error(client, "recv connection %" PRIu32 ": %s (errno %d)", index, strerror(errno), errno);
        conn_lost(client, index);
        return;
    }
    ssize_t n = recv(conn->fd, conn->reply + conn->received, MESSAGE_SIZE - conn->received, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        if (n == 0)
            client_error(client, "recv connection %" PRIu32 ": the server closed the connection mid-echo", index);
        else
            client_error(client, "recv connection %" PRIu32 ": %s (errno %d)", index, strerror(errno), errno);
        conn_lost(client, index);
        return;
    }
    conn->received = (uint8_t)(conn->received + n);
    if (conn->received < MESSAGE_SIZE)
        return;
    unsigned char expected[MESSAGE_SIZE];
    message_for(index, conn->sequence, expected);
    conn->waiting = false;
    client->in_flight--;
    conn->received = 0;
    if (memcmp(expected, conn->reply, MESSAGE_SIZE) != 0) {
        client_error(client, "echo on connection %" PRIu32 " (sequence %" PRIu32 ") differs from what was sent",
                     index, conn->sequence);
        conn_lost(client, index);
        return;
    }
    uint64_t latency = now_ns() - conn->sent_ns;
    client->echoes_ok++;
    client->latency_sum_ns += latency;
    if (latency > client->latency_max_ns)
        client->latency_max_ns = latency;
    conn->echoed = true;
}

static void conn_send_echo(struct client *client, uint32_t index)
{
    struct conn *conn = &client->conns[index];
    unsigned char message[MESSAGE_SIZE];
    conn->sequence++;
    message_for(index, conn->sequence, message);
    conn->sent_ns = now_ns();
    ssize_t n = send(conn->fd, message, MESSAGE_SIZE, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n != MESSAGE_SIZE) {
        /* 16 bytes into an idle socket's empty send buffer: anything short of all of them is a failure. */
        if (n < 0)
            client_error(client, "send connection %" PRIu32 ": %s (errno %d)", index, strerror(errno), errno);
        else
            client_error(client, "send connection %" PRIu32 ": %zd of %d bytes sent", index, n, MESSAGE_SIZE);
        conn_lost(client, index);
        return;
    }
    conn->waiting = true;
    client->in_flight++;
    client->echoes_sent++;
}

/* Sends the echoes the rate allows by now, walking the connections round-robin so each gets its turn. */
static void trickle(struct client *client, uint64_t now)
{
    uint64_t due = (uint64_t)(client->options.rate * seconds_between(client->trickle_started_ns, now));
    uint32_t count = client->options.connections;
    while (client->echoes_sent < due) {
        uint32_t tried = 0;
        while (tried < count) {
            struct conn *conn = &client->conns[client->trickle_cursor];
            if (conn->state == CONN_OPEN && !conn->waiting)
                break;
            client->trickle_cursor = (client->trickle_cursor + 1) % count;
            tried++;
        }
        if (tried == count) /* every connection has an echo in flight (or is gone): catch up on a later tick */
            return;
        uint32_t index = client->trickle_cursor;
        client->trickle_cursor = (client->trickle_cursor + 1) % count;
        conn_send_echo(client, index);
    }
}

static void handle_command(struct client *client, const char *line)
{
    if (!strcmp(line, "go")) {
        if (client->phase == PHASE_OPEN) {
            client->phase = PHASE_TRICKLE;
            client->trickle_started_ns = now_ns();
        }
    } else if (!strcmp(line, "stop")) {
        request_stop(client);
    } else {
        fprintf(stderr, "c100k-client: unknown command '%s' on stdin (go, stop)\n", line);
    }
}

static void read_commands(struct client *client)
{
    char chunk[256];
    ssize_t n = read(STDIN_FILENO, chunk, sizeof chunk);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) { /* the driver is gone or done: stop, and stop listening to stdin */
        if (n < 0)
            fprintf(stderr, "c100k-client: read stdin: %s (errno %d)\n", strerror(errno), errno);
        epoll_ctl(client->epoll_fd, EPOLL_CTL_DEL, STDIN_FILENO, NULL);
        client->stdin_closed = true;
        request_stop(client);
        return;
    }
    for (ssize_t i = 0; i < n; i++) {
        if (chunk[i] == '\n') {
            client->stdin_line[client->stdin_len] = '\0';
            handle_command(client, client->stdin_line);
            client->stdin_len = 0;
        } else if (client->stdin_len < sizeof client->stdin_line - 1) {
            client->stdin_line[client->stdin_len++] = chunk[i];
        }
    }
}

static void on_tick(struct client *client)
{
    uint64_t expirations;
    if (read(client->timer_fd, &expirations, sizeof expirations) < 0 && errno != EAGAIN)
        fprintf(stderr, "c100k-client: read timerfd: %s (errno %d)\n", strerror(errno), errno);
    uint64_t now = now_ns();
    if (client->phase == PHASE_OPENING && now - client->last_progress_ns >= 1000000000u) {
        client->last_progress_ns = now;
        printf("{\"event\":\"progress\",\"opened\":%" PRIu32 ",\"seconds\":%.3f}\n", client->opened,
               seconds_between(client->started_ns, now));
    }
    if (client->phase == PHASE_TRICKLE)
        trickle(client, now);
}

static int parse_number(const char *text, double low, double high, double *out)
{
    char *end;
    errno = 0;
    double value = strtod(text, &end);
    if (errno || end == text || *end || value < low || value > high)
        return -1;
    *out = value;
    return 0;
}

static int parse_loopback(const char *text, struct in_addr *out)
{
    /* Loopback only: this program opens a hundred thousand connections and must never aim them elsewhere. */
    return inet_pton(AF_INET, text, out) == 1 && (ntohl(out->s_addr) >> 24) == 127 ? 0 : -1;
}

static const char usage[] =
    "usage: c100k-client --port P [--host 127.0.0.1] [--connections N] [--source-first 127.0.0.2]\n"
    "                    [--per-source N] [--inflight N] [--rate MSGS_PER_S] [--deadline S] [--drain S]\n"
    "commands on stdin: go (start the trickle), stop (or end of input); JSON lines on stdout\n";

static int parse_options(int argc, char **argv, struct options *options)
{
    *options = (struct options){.connections = 1000, .per_source = 20000, .inflight = 256, .rate = 1000,
                                .deadline_s = 600, .drain_s = 10};
    parse_loopback("127.0.0.1", &options->host);
    parse_loopback("127.0.0.2", &options->source_first);
    bool have_port = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help")) {
            fputs(usage, stdout);
            exit(0);
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "c100k-client: %s needs a value\n%s", argv[i], usage);
            return -1;
        }
        const char *name = argv[i], *value = argv[++i];
        double number = 0;
        int bad = 0;
        if (!strcmp(name, "--host")) {
            bad = parse_loopback(value, &options->host);
        } else if (!strcmp(name, "--source-first")) {
            bad = parse_loopback(value, &options->source_first);
        } else if (!strcmp(name, "--port")) {
            bad = parse_number(value, 1, 65535, &number);
            options->port = (uint16_t)number;
            have_port = true;
        } else if (!strcmp(name, "--connections")) {
            bad = parse_number(value, 1, 16000000, &number);
            options->connections = (uint32_t)number;
        } else if (!strcmp(name, "--per-source")) {
            bad = parse_number(value, 1, 65535, &number);
            options->per_source = (uint32_t)number;
        } else if (!strcmp(name, "--inflight")) {
            bad = parse_number(value, 1, 65535, &number);
            options->inflight = (uint32_t)number;
        } else if (!strcmp(name, "--rate")) {
            bad = parse_number(value, 0, 1e7, &options->rate);
        } else if (!strcmp(name, "--deadline")) {
            bad = parse_number(value, 0.1, 86400, &options->deadline_s);
        } else if (!strcmp(name, "--drain")) {
            bad = parse_number(value, 0, 3600, &options->drain_s);
        } else {
            fprintf(stderr, "c100k-client: unknown option %s\n%s", name, usage);
            return -1;
        }
        if (bad) {
            fprintf(stderr, "c100k-client: %s: '%s' is not valid (addresses must be 127.x.x.x)\n%s", name, value,
                    usage);
            return -1;
        }
    }
    if (!have_port) {
        fprintf(stderr, "c100k-client: --port is required\n%s", usage);
        return -1;
    }
    uint32_t sources = (options->connections + options->per_source - 1) / options->per_source;
    uint32_t last = ntohl(options->source_first.s_addr) + sources - 1;
    if ((last >> 24) != 127) {
        fprintf(stderr, "c100k-client: %" PRIu32 " source addresses from --source-first leave 127.0.0.0/8\n",
                sources);
        return -1;
    }
    return 0;
}

static int client_setup(struct client *client)
{
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) < 0) {
        fprintf(stderr, "c100k-client: getrlimit RLIMIT_NOFILE: %s (errno %d)\n", strerror(errno), errno);
        return -1;
    }
    if (limit.rlim_cur < (rlim_t)client->options.connections + SPARE_DESCRIPTORS) {
        fprintf(stderr, "c100k-client: RLIMIT_NOFILE is %llu, %" PRIu32 " connections need %" PRIu32
                        " (bench/c100k raises it)\n",
                (unsigned long long)limit.rlim_cur, client->options.connections,
                client->options.connections + SPARE_DESCRIPTORS);
        return -1;
    }
    client->conns = calloc(client->options.connections, sizeof *client->conns);
    if (!client->conns) {
        fprintf(stderr, "c100k-client: calloc %" PRIu32 " connections: %s (errno %d)\n",
                client->options.connections, strerror(ENOMEM), ENOMEM);
        return -1;
    }
    for (uint32_t i = 0; i < client->options.connections; i++)
        client->conns[i].fd = -1;
    client->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    client->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (client->epoll_fd < 0 || client->timer_fd < 0) {
        fprintf(stderr, "c100k-client: %s: %s (errno %d)\n", client->epoll_fd < 0 ? "epoll_create1" : "timerfd_create",
                strerror(errno), errno);
        return -1;
    }
    struct itimerspec tick = {.it_interval = {.tv_nsec = TICK_NS}, .it_value = {.tv_nsec = TICK_NS}};
    struct epoll_event timer_event = {.events = EPOLLIN, .data.u64 = TAG_TIMER};
    struct epoll_event stdin_event = {.events = EPOLLIN, .data.u64 = TAG_STDIN};
    if (timerfd_settime(client->timer_fd, 0, &tick, NULL) < 0 ||
        epoll_ctl(client->epoll_fd, EPOLL_CTL_ADD, client->timer_fd, &timer_event) < 0 ||
        epoll_ctl(client->epoll_fd, EPOLL_CTL_ADD, STDIN_FILENO, &stdin_event) < 0) {
        fprintf(stderr, "c100k-client: timer or stdin setup: %s (errno %d)\n", strerror(errno), errno);
        return -1;
    }
    return 0;
}

static void report_done(struct client *client, uint64_t lost_in_flight, uint64_t echoed_connections)
{
    struct rlimit limit = {0};
    getrlimit(RLIMIT_NOFILE, &limit);
    uint32_t sources = (client->options.connections + client->options.per_source - 1) / client->options.per_source;
    bool ok = client->opened == client->options.connections && client->errors == 0;
    printf("{\"event\":\"done\",\"ok\":%s,\"connections\":%" PRIu32 ",\"opened\":%" PRIu32 ",\"sources\":%" PRIu32
           ",\"nofile\":%llu,\"trickle_s\":%.3f,\"echoes_sent\":%" PRIu64 ",\"echoes_ok\":%" PRIu64
           ",\"echoed_connections\":%" PRIu64 ",\"lost_in_flight\":%" PRIu64 ",\"errors\":%" PRIu64
           ",\"echo_mean_us\":%.1f,\"echo_max_us\":%.1f,\"first_error\":",
           ok ? "true" : "false", client->options.connections, client->opened, sources,
           (unsigned long long)limit.rlim_cur,
           client->trickle_started_ns
               ? seconds_between(client->trickle_started_ns,
                                 client->trickle_stopped_ns ? client->trickle_stopped_ns : now_ns())
               : 0.0,
           client->echoes_sent, client->echoes_ok, echoed_connections, lost_in_flight, client->errors,
           client->echoes_ok ? (double)client->latency_sum_ns / (double)client->echoes_ok / 1e3 : 0.0,
           (double)client->latency_max_ns / 1e3);
    write_json_string(client->first_error);
    printf("}\n");
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    static struct client client;
    if (parse_options(argc, argv, &client.options) < 0)
        return 2;
    if (client_setup(&client) < 0)
        return 1;
    client.started_ns = client.last_progress_ns = now_ns();
    client.deadline_ns = client.started_ns + (uint64_t)(client.options.deadline_s * 1e9);
    client.phase = PHASE_OPENING;
    open_more(&client);

    static struct epoll_event events[EVENT_BATCH];
    for (;;) {
        uint64_t now = now_ns();
        if (now >= client.deadline_ns) {
            client_error(&client, "deadline: --deadline %.1f s reached", client.options.deadline_s);
            if (!client.open_reported)
                report_open(&client, "deadline reached before every connection opened");
            break;
        }
        if (client.phase == PHASE_DRAIN && (client.in_flight == 0 || now >= client.drain_deadline_ns))
            break;
        int n = epoll_wait(client.epoll_fd, events, EVENT_BATCH, 100);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            client_error(&client, "epoll_wait: %s (errno %d)", strerror(errno), errno);
            break;
        }
        for (int i = 0; i < n; i++) {
            uint64_t tag = events[i].data.u64;
            if (tag == TAG_STDIN) {
                read_commands(&client);
            } else if (tag == TAG_TIMER) {
                on_tick(&client);
            } else {
                uint32_t index = (uint32_t)tag;
                if (client.conns[index].state == CONN_CONNECTING)
                    conn_connect_done(&client, index);
                else if (client.conns[index].state == CONN_OPEN)
                    conn_readable(&client, index, events[i].events);
            }
        }
        open_more(&client);
    }

    uint64_t lost_in_flight = client.in_flight, echoed_connections = 0;
    if (lost_in_flight)
        client_error(&client, "drain: %" PRIu64 " echoes not back within --drain %.1f s", lost_in_flight,
                     client.options.drain_s);
    for (uint32_t i = 0; i < client.options.connections; i++) {
        struct conn *conn = &client.conns[i];
        echoed_connections += conn->echoed;
        if (conn->fd < 0 || conn->state == CONN_UNUSED)
            continue;
        /* A reset instead of FIN: no TIME_WAIT entry per connection is left on the machine after the run. */
        struct linger reset = {.l_onoff = 1, .l_linger = 0};
        setsockopt(conn->fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
        close(conn->fd);
    }
    report_done(&client, lost_in_flight, echoed_connections);
    free(client.conns);
    close(client.timer_fd);
    close(client.epoll_fd);
    return client.opened == client.options.connections && client.errors == 0 ? 0 : 1;
}
