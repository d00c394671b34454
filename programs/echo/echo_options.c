/*
 * echo_options.c - parse and validate overlap-echo's arguments. Every value is checked fully (no atoi): a typo
 * must produce a message naming the option, not a server on port 0.
 */
#include "echo_options.h"
#include "option_values.h"
#include "overlap.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char echo_usage[] =
    "usage: overlap-echo [options]\n"
    "       overlap-echo install [--name N] [--start auto|delayed|demand] [options]\n"
    "                                      Windows: register the service N (default overlap-echo)\n"
    "       overlap-echo uninstall [--name N]   Windows: stop (drain) and remove it\n"
    "  --host H           address or name to listen on (default: every interface, IPv6 dual-stack)\n"
    "  --port P           TCP port (default 27015; 0 picks a free one)\n"
    "  --threads N        worker threads, at most 256 (default: the CPUs it may use, less one)\n"
    "  --max-conns N      refuse connections past N open ones (default and 0: no limit)\n"
    "  --reuse-port       Linux: share the port with other processes (SO_REUSEPORT): run a new one, then stop\n"
    "                     the old one, and no connection is refused (docs/OPERATING.md)\n"
    "  --buffer-size B    bytes per receive buffer (default 65536)\n"
    "  --buffer-count N   receive buffers per worker thread, fixed (default: 1024, doubled as connections pass\n"
    "                     a quarter of them; size x count at most 256 MiB)\n"
    "  --max-pending B    stop reading a connection with B bytes not yet echoed (default 262144)\n"
    "  --stats-format F   text (default) or json: one JSON object per line, for log collectors\n"
    "  --stats SECONDS    print a stats line every SECONDS (at least 0.1)\n"
    "  --metrics A:P      serve Prometheus metrics at http://A:P/metrics (\":9100\": every interface)\n"
    "  --drain-timeout S  on SIGINT/SIGTERM, finish echoing for at most S seconds (default 5)\n"
    "  --idle-timeout S   close connections that received and sent nothing for S seconds (default: never)\n"
    "  --keepalive S      probe a silent peer after S seconds; one gone for good is closed 1.5 x S after\n"
    "                     its last sign (default 60; 0 = off)\n"
    "  --stall-timeout S  close a connection whose peer has taken none of its echoes for S seconds: it\n"
    "                     does not read (default 60; 0 = off)\n"
    "  --zero-byte-recv M IOCP: auto (default: once a thread's connections x buffer size pass 16 MiB), on, off\n"
    "  --backend NAME     io_uring (default; epoll where io_uring is forbidden), epoll; iocp on Windows\n"
    "  --busy-poll US     io_uring, a worker with one connection: spin up to US microseconds for the next\n"
    "                     completion before sleeping (default 50; 0 = always sleep, for shared machines)\n"
    "  --log-file FILE    append the output to FILE instead of the console (a Windows service has none)\n"
    "  --service          Windows: run under the Service Control Manager (install puts it in the command)\n"
    "  --name N           install, uninstall: the service's name (default overlap-echo; up to 64 letters,\n"
    "                     digits, '-', '_', '.'): one per instance, each with its own account NT SERVICE\\N\n"
    "  --start M          install: auto (default: at boot), delayed (at boot, after the automatic services)\n"
    "                     or demand (sc start N)\n"
    "  --help             this text\n"
    "  --version          print the version\n";

/* ASCII letters and digits, '-', '_', '.', not starting with a punctuation mark: safe as a registry key, an
 * account name (NT SERVICE\NAME) and a word on a command line, and the same on every code page. */
static bool valid_service_name(const char *name)
{
    size_t length = strlen(name);
    if (length == 0 || length > ECHO_SERVICE_NAME_MAX || !isalnum((unsigned char)name[0]))
        return false;
    for (size_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!(c < 128 && (isalnum(c) || c == '-' || c == '_' || c == '.')))
            return false;
    }
    return true;
}

int echo_options_parse(int argc, char *const argv[], struct echo_options *options, char *error, size_t error_size)
{
    memset(options, 0, sizeof *options);
    engine_options_init(&options->engine, ENGINE_OPTIONS_SERVES);
    options->port = "27015";
    options->service_name = ECHO_SERVICE_NAME_DEFAULT;
    options->first_server_arg = 1;
    /* The service commands are words, not options, so that "overlap-echo install --port 7" reads as it acts. */
    if (argc > 1 && !strcmp(argv[1], "install")) {
        options->command = ECHO_COMMAND_INSTALL;
        options->first_server_arg = 2;
    } else if (argc > 1 && !strcmp(argv[1], "uninstall")) {
        options->command = ECHO_COMMAND_UNINSTALL;
        options->first_server_arg = 2;
        /* Only which service: its options were given to install. */
        int extra = 2; /* the first argument that is not part of --name */
        if (argc > 2 && !strcmp(argv[2], "--name"))
            extra = 4;
        else if (argc > 2 && !strncmp(argv[2], "--name=", 7))
            extra = 3;
        if (argc > extra) {
            snprintf(error, error_size, "uninstall takes only --name NAME (got '%s')", argv[extra]);
            return -1;
        }
    }
    static const char *const flags[] = {"--help", "--version", "--service", "--reuse-port", NULL};
    for (int i = options->first_server_arg; i < argc; i++) {
        char name[32];
        const char *value;
        if (option_next(argc, argv, &i, flags, name, sizeof name, &value, error, error_size) < 0)
            return -1;
        if (!value) {
            if (!strcmp(name, "--help")) {
                options->help = true;
            } else if (!strcmp(name, "--version")) {
                options->version = true;
            } else if (!strcmp(name, "--reuse-port")) {
                options->engine.config.reuse_port = true;
            } else {
                /* install writes --service into the service's command line itself; twice would be a typo. */
                if (options->command == ECHO_COMMAND_INSTALL) {
                    snprintf(error, error_size, "--service: install adds it to the service's command line itself");
                    return -1;
                }
                options->service = true;
            }
            continue;
        }
        unsigned long long number = 0;
        if (!strcmp(name, "--host")) {
            options->host = *value ? value : NULL;
        } else if (!strcmp(name, "--port")) {
            if (option_parse_uint(value, 65535, &number)) {
                snprintf(error, error_size, "--port: '%s' is not a port number (0-65535)", value);
                return -1;
            }
            options->port = value;
        } else if (!strcmp(name, "--max-conns")) {
            if (option_parse_uint(value, UINT32_MAX, &number)) {
                snprintf(error, error_size, "--max-conns: '%s' is not a count (0-%u, 0 = no limit)", value,
                         UINT32_MAX);
                return -1;
            }
            options->engine.config.max_conns = (uint32_t)number;
        } else if (!strcmp(name, "--stats")) {
            if (option_parse_seconds(value, &options->stats_interval) || options->stats_interval < 0.1) {
                snprintf(error, error_size, "--stats: '%s' is not a number of seconds (at least 0.1)", value);
                return -1;
            }
        } else if (!strcmp(name, "--stats-format")) {
            if (strcmp(value, "text") != 0 && strcmp(value, "json") != 0) {
                snprintf(error, error_size, "--stats-format: '%s' is not text or json", value);
                return -1;
            }
            options->stats_json = strcmp(value, "json") == 0;
        } else if (!strcmp(name, "--log-file")) {
            if (!*value) {
                snprintf(error, error_size, "--log-file: the file name is empty");
                return -1;
            }
            options->log_file = value;
        } else if (!strcmp(name, "--start")) {
            if (options->command != ECHO_COMMAND_INSTALL) {
                snprintf(error, error_size, "--start: only with install (overlap-echo install --start %s ...)", value);
                return -1;
            }
            if (!strcmp(value, "auto")) {
                options->start = ECHO_START_AUTO;
            } else if (!strcmp(value, "delayed")) {
                options->start = ECHO_START_DELAYED;
            } else if (!strcmp(value, "demand")) {
                options->start = ECHO_START_DEMAND;
            } else {
                snprintf(error, error_size, "--start: '%s' is not auto, delayed or demand", value);
                return -1;
            }
        } else if (!strcmp(name, "--name")) {
            if (options->command == ECHO_COMMAND_SERVE) {
                snprintf(error, error_size, "--name: only with install or uninstall (overlap-echo install --name %s "
                                            "...); the service learns its name from the SCM", value);
                return -1;
            }
            if (!valid_service_name(value)) {
                snprintf(error, error_size, "--name: '%.80s' is not a service name (1-%d letters, digits, '-', '_' "
                                            "or '.', starting with a letter or digit)", value, ECHO_SERVICE_NAME_MAX);
                return -1;
            }
            options->service_name = value;
        } else if (engine_options_parse(&options->engine, name, value, error, error_size) < 0) {
            return -1;
        }
    }
    return engine_options_check(&options->engine, error, error_size);
}
