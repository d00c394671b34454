/*
 * proxy_options.c - parse and validate overlap-proxy's arguments. Every value is checked fully (no atoi), so a typo
 * names the option instead of starting a proxy that forwards to port 0.
 */
#include "proxy_options.h"
#include "option_values.h"
#include "overlap.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char proxy_usage[] =
    "usage: overlap-proxy --listen PORT --to HOST:PORT [options]\n"
    "  --listen PORT      TCP port to accept clients on (0 picks a free one)\n"
    "  --to HOST:PORT     where each client connection is forwarded ([ADDR]:PORT for an IPv6 literal)\n"
    "  --host H           address or name to listen on (default: every interface, IPv6 dual-stack)\n"
    "  --threads N        worker threads, at most 256 (default: the CPUs it may use, less one)\n"
    "  --max-conns N      client connections at most; more are closed at once (default: no limit)\n"
    "  --buffer-size B    bytes per receive buffer (default 65536)\n"
    "  --buffer-count N   receive buffers per worker thread, fixed (default: 1024, doubled as connections pass\n"
    "                     a quarter of them; size x count at most 256 MiB)\n"
    "  --max-pending B    stop reading one side while B bytes wait to be sent to the other (default 131072)\n"
    "  --idle-timeout S   close both connections of a pair silent for S seconds (default: never)\n"
    "  --connect-timeout S give up an upstream connect after S seconds; the client is closed (default 10;\n"
    "                     0 = the system's own, about two minutes)\n"
    "  --keepalive S      probe a silent peer after S seconds; one gone for good is closed 1.5 x S after\n"
    "                     its last sign (default 60; 0 = off)\n"
    "  --stall-timeout S  close a connection whose peer has taken none of its queued bytes for S\n"
    "                     seconds: it does not read (default 60; 0 = off)\n"
    "  --drain-timeout S  on SIGINT/SIGTERM, keep forwarding for at most S seconds (default 5)\n"
    "  --backend NAME     io_uring (default; epoll where io_uring is forbidden), epoll; iocp on Windows\n"
    "  --busy-poll US     io_uring: spin up to US microseconds for the next completion (default 50; 0 = never)\n"
    "  --zero-byte-recv M IOCP: auto (default: once a thread's connections x buffer size pass 16 MiB), on, off\n"
    "  --stats SECONDS    print a stats line every SECONDS (at least 0.1)\n"
    "  --metrics A:P      serve Prometheus metrics at http://A:P/metrics (\":9100\": every interface)\n"
    "  --help             this text\n"
    "  --version          print the version\n";

/* "host:port", "[v6]:port". A bare IPv6 literal is refused: its last colon would silently become the port. */
static int parse_destination(const char *text, struct proxy_options *options, char *error, size_t error_size)
{
    const char *host = text, *host_end, *port;
    if (*text == '[') {
        host = text + 1;
        host_end = strchr(host, ']');
        if (!host_end || host_end[1] != ':') {
            snprintf(error, error_size, "--to: '%s' is not [ADDRESS]:PORT", text);
            return -1;
        }
        port = host_end + 2;
    } else {
        host_end = strrchr(text, ':');
        if (!host_end) {
            snprintf(error, error_size, "--to: '%s' has no port (HOST:PORT)", text);
            return -1;
        }
        if (memchr(text, ':', (size_t)(host_end - text))) {
            snprintf(error, error_size, "--to: '%s': write an IPv6 address as [ADDRESS]:PORT", text);
            return -1;
        }
        port = host_end + 1;
    }
    size_t host_len = (size_t)(host_end - host);
    if (host_len == 0 || host_len >= sizeof options->to_host) {
        snprintf(error, error_size, "--to: '%s' has no host name or address", text);
        return -1;
    }
    unsigned long long number = 0;
    if (option_parse_uint(port, 65535, &number) || number == 0) {
        snprintf(error, error_size, "--to: '%s' is not a port number (1-65535)", port);
        return -1;
    }
    memcpy(options->to_host, host, host_len);
    options->to_host[host_len] = '\0';
    snprintf(options->to_port, sizeof options->to_port, "%u", (unsigned)(number & 0xffff)); /* <= 65535 */
    options->to = text;
    return 0;
}

int proxy_options_parse(int argc, char *const argv[], struct proxy_options *options, char *error, size_t error_size)
{
    memset(options, 0, sizeof *options);
    engine_options_init(&options->engine, ENGINE_OPTIONS_CONNECTS | ENGINE_OPTIONS_SERVES);
    options->max_pending = PROXY_DEFAULT_MAX_PENDING;
    static const char *const flags[] = {"--help", "--version", NULL};
    for (int i = 1; i < argc; i++) {
        char name[32];
        const char *value;
        if (option_next(argc, argv, &i, flags, name, sizeof name, &value, error, error_size) < 0)
            return -1;
        if (!value) {
            if (!strcmp(name, "--help"))
                options->help = true;
            else
                options->version = true;
            continue;
        }
        unsigned long long number = 0;
        if (!strcmp(name, "--listen")) {
            if (option_parse_uint(value, 65535, &number)) {
                snprintf(error, error_size, "--listen: '%s' is not a port number (0-65535)", value);
                return -1;
            }
            options->listen_port = value;
        } else if (!strcmp(name, "--to")) {
            if (parse_destination(value, options, error, error_size) < 0)
                return -1;
        } else if (!strcmp(name, "--host")) {
            options->host = *value ? value : NULL;
        } else if (!strcmp(name, "--max-conns")) {
            /* The engine counts both connections of a pair: the limit it gets is twice this. */
            if (option_parse_uint(value, UINT32_MAX / 2, &number)) {
                snprintf(error, error_size, "--max-conns: '%s' is not a count (0-%u, 0 = no limit)", value,
                         UINT32_MAX / 2);
                return -1;
            }
            options->max_conns = (uint32_t)number;
        } else if (!strcmp(name, "--max-pending")) {
            if (option_parse_uint(value, UINT32_MAX, &number) || number < 1) {
                snprintf(error, error_size, "--max-pending: '%s' is not a size in bytes (1-4294967295)", value);
                return -1;
            }
            options->max_pending = (uint32_t)number;
        } else if (!strcmp(name, "--stats")) {
            if (option_parse_seconds(value, &options->stats_interval) || options->stats_interval < 0.1) {
                snprintf(error, error_size, "--stats: '%s' is not a number of seconds (at least 0.1)", value);
                return -1;
            }
        } else if (engine_options_parse(&options->engine, name, value, error, error_size) < 0) {
            return -1;
        }
    }
    if (options->help || options->version)
        return 0;
    if (!options->listen_port) {
        snprintf(error, error_size, "--listen PORT is required");
        return -1;
    }
    if (!options->to) {
        snprintf(error, error_size, "--to HOST:PORT is required");
        return -1;
    }
    return engine_options_check(&options->engine, error, error_size);
}
