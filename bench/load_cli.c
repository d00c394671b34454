/*
 * load_cli.c - overlap-load's command line, parsed and checked without side effects (tests and fuzzers call it).
 */
#include "load.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char load_usage[] =
    "usage: overlap-load [HOST] [options]\n"
    "  HOST               server name or address (default localhost; every address is tried)\n"
    "  --port P           server port (default 27015)\n"
    "  --connections N    connections (default 50)\n"
    "  --threads T        engine worker threads (default 1)\n"
    "  --size BYTES       bytes per message (default 64)\n"
    "  --pipeline DEPTH   messages in flight per connection (default 1: ping-pong)\n"
    "  --duration S       measured seconds (default 5)\n"
    "  --warmup S         seconds before measuring (default 1)\n"
    "  --churn MSGS       close each connection after MSGS echoes and reconnect\n"
    "  --connect-rate N   open at most N connections per second\n"
    "  --json             print one JSON object with every figure on stdout\n"
    "  --progress         print a progress line every second on stderr (default: when stderr is a terminal)\n"
    "  --once             send \"this is a test\", shut down, read to EOF, print what happened\n"
    "  --help, --version\n"
    "Every echoed byte is verified; any error makes the exit code 1.\n";

static int parse_count(const char *text, unsigned long long min, unsigned long long max, unsigned long long *out)
{
    if (!text || !*text || *text == '-' || *text == '+')
        return -1;
    char *end = NULL;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno || *end || value < min || value > max)
        return -1;
    *out = value;
    return 0;
}

static int parse_seconds(const char *text, double min, double *out)
{
    if (!text || !*text)
        return -1;
    char *end = NULL;
    errno = 0;
    double value = strtod(text, &end);
    if (errno || *end || !isfinite(value) || value < min || value > 86400)
        return -1;
    *out = value;
    return 0;
}

int load_options_parse(int argc, char *const argv[], struct load_options *o, char *error, size_t error_size)
{
    memset(o, 0, sizeof *o);
    o->host = "localhost";
    o->port = "27015";
    o->connections = 50;
    o->threads = 1;
    o->size = 64;
    o->pipeline = 1;
    o->duration = 5;
    o->warmup = 1;
    bool host_seen = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "--", 2) != 0) {
            if (host_seen || !*arg) {
                snprintf(error, error_size, "unexpected argument '%s'", arg);
                return -1;
            }
            o->host = arg;
            host_seen = true;
            continue;
        }
        char name[32];
        const char *eq = strchr(arg, '=');
        size_t name_len = eq ? (size_t)(eq - arg) : strlen(arg);
        if (name_len >= sizeof name) {
            snprintf(error, error_size, "unknown option '%.40s'", arg);
            return -1;
        }
        memcpy(name, arg, name_len);
        name[name_len] = '\0';
        bool *flag = !strcmp(name, "--json")       ? &o->json
                     : !strcmp(name, "--once")     ? &o->once
                     : !strcmp(name, "--progress") ? &o->progress
                     : !strcmp(name, "--help")     ? &o->help
                     : !strcmp(name, "--version")  ? &o->version
                                                   : NULL;
        if (flag) {
            if (eq) {
                snprintf(error, error_size, "%s takes no value", name);
                return -1;
            }
            *flag = true;
            continue;
        }
        const char *value;
        if (eq)
            value = eq + 1;
        else if (i + 1 < argc)
            value = argv[++i];
        else {
            snprintf(error, error_size, "%s needs a value", name);
            return -1;
        }
        unsigned long long n = 0;
        if (!strcmp(name, "--port")) {
            if (parse_count(value, 1, 65535, &n)) {
                snprintf(error, error_size, "--port: '%s' is not a port number (1-65535)", value);
                return -1;
            }
            o->port = value;
        } else if (!strcmp(name, "--connections")) {
            if (parse_count(value, 1, 1000000, &n)) {
                snprintf(error, error_size, "--connections: '%s' is not a count (1-1000000)", value);
                return -1;
            }
            o->connections = (uint32_t)n;
        } else if (!strcmp(name, "--threads")) {
            if (parse_count(value, 1, 1024, &n)) {
                snprintf(error, error_size, "--threads: '%s' is not a thread count (1-1024)", value);
                return -1;
            }
            o->threads = (int)n;
        } else if (!strcmp(name, "--size")) {
            if (parse_count(value, 1, 16u << 20, &n)) {
                snprintf(error, error_size, "--size: '%s' is not a message size (1-16777216 bytes)", value);
                return -1;
            }
            o->size = (uint32_t)n;
        } else if (!strcmp(name, "--pipeline")) {
            if (parse_count(value, 1, 4096, &n)) {
                snprintf(error, error_size, "--pipeline: '%s' is not a depth (1-4096)", value);
                return -1;
            }
            o->pipeline = (uint32_t)n;
        } else if (!strcmp(name, "--duration")) {
            if (parse_seconds(value, 0.01, &o->duration)) {
                snprintf(error, error_size, "--duration: '%s' is not a number of seconds (0.01-86400)", value);
                return -1;
            }
        } else if (!strcmp(name, "--warmup")) {
            if (parse_seconds(value, 0, &o->warmup)) {
                snprintf(error, error_size, "--warmup: '%s' is not a number of seconds (0-86400)", value);
                return -1;
            }
        } else if (!strcmp(name, "--churn")) {
            if (parse_count(value, 1, UINT32_MAX, &n)) {
                snprintf(error, error_size, "--churn: '%s' is not a message count", value);
                return -1;
            }
            o->churn = (uint32_t)n;
        } else if (!strcmp(name, "--connect-rate")) {
            if (parse_seconds(value, 0.001, &o->connect_rate)) {
                snprintf(error, error_size, "--connect-rate: '%s' is not a rate per second", value);
                return -1;
            }
        } else {
            snprintf(error, error_size, "unknown option '%s'", name);
            return -1;
        }
    }
    return 0;
}
