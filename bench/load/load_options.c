/*
 * load_options.c - parse and validate overlap-load's arguments. A pure function of argv: no I/O, no globals, no
 * allocation, so a fuzzer can call it. Every number is checked whole (no atoi): a typo must name the option, not
 * quietly run 0 connections.
 */
#include "load_options.h"
#include "option_values.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

const char *const load_model_names[LOAD_MODELS] = {"uring", "epoll", "threads"};

/* The options only the engine model acts on: the plain-socket models refuse them rather than ignore them. */
static const char *const engine_model_only[] = {
    "--churn", "--connect-rate", "--target-p99", "--hdr-log", "--hdr-interval", "--hdr-tag", "--start-at", "--share",
    "--once", "--backend", "--busy-poll", "--buffer-size", "--buffer-count", "--max-pending", "--keepalive",
    "--stall-timeout", "--zero-byte-recv"};
enum { ENGINE_MODEL_ONLY = sizeof engine_model_only / sizeof engine_model_only[0] };

enum { THREADS_MODEL_MAX_CONNECTIONS = 4096, THREADS_MODEL_MAX_IN_FLIGHT = 65536 };

const char load_usage[] =
    "usage: overlap-load [HOST] [options]\n"
    "       overlap-load merge [--json] LOG...   (merge --hdr-log files of several generators; merge --help)\n"
    "  HOST                 server name or address (default localhost); every address it resolves to is tried\n"
    "  --port P             server port (default 27015)\n"
    "  --connections N      connections to open (default 50)\n"
    "  --model M            who drives the connections: uring (default: the engine, on --backend's backend),\n"
    "                       epoll (--threads threads, each an epoll set of non-blocking sockets; Linux) or\n"
    "                       threads (one blocking thread per connection, at most 4096)\n"
    "  --threads T          threads the connections are spread over: the engine's workers (default 1), or the\n"
    "                       epoll model's (default 2); at most 256 and never more than --connections; 0 = one\n"
    "                       per online CPU\n"
    "  --size BYTES         bytes per message (default 64)\n"
    "  --pipeline DEPTH     messages in flight per connection (default 1 = ping-pong)\n"
    "  --duration S         measured seconds (default 5)\n"
    "  --warmup S           seconds of load before measuring (default 1)\n"
    "  --rate MSGS_PER_S    open loop: send at this total rate, latency from each message's scheduled time\n"
    "  --churn MSGS         close each connection after MSGS echoes and reconnect\n"
    "  --connect-rate N     open the connections at most N per second (ramp-up)\n"
    "  --target-p99 US      find the highest --rate whose p99 latency stays under US microseconds\n"
    "  --backend NAME       engine backend: io_uring, epoll (iocp on Windows); default: the best available\n"
    "  --busy-poll US       io_uring: spin up to US microseconds for the next echo before sleeping (default 50;\n"
    "                       0 = always sleep)\n"
    "  --buffer-size B      bytes per receive buffer (default 65536)\n"
    "  --buffer-count N     receive buffers per worker thread, fixed (default: 1024, doubled as connections\n"
    "                       pass a quarter of them; size x count at most 256 MiB)\n"
    "  --max-pending B      stop reading a connection while B bytes wait to be sent on it (default 262144)\n"
    "  --connect-timeout S  a connect not done after S seconds is a connect error (default 10; 0 = the\n"
    "                       system's own, about two minutes)\n"
    "  --keepalive S        probe a silent server after S seconds; one gone for good is closed 1.5 x S after\n"
    "                       its last sign (default 60; 0 = off)\n"
    "  --stall-timeout S    close a connection whose server has taken none of its messages for S seconds: it\n"
    "                       does not read (default 60; 0 = off)\n"
    "  --zero-byte-recv M   IOCP: auto (default: once a thread's connections x buffer size pass 16 MiB), on,\n"
    "                       off\n"
    "  --hdr-log FILE       write the latency histograms as an HdrHistogram interval log (microseconds)\n"
    "  --hdr-interval S     seconds per logged interval (default 1)\n"
    "  --hdr-tag NAME       this generator's tag in the log (default: the host name)\n"
    "  --start-at TIME      connect, then send nothing until this wall-clock time (Unix seconds, fractions\n"
    "                       allowed): generators given the same TIME start together\n"
    "  --share A/B          with --rate: this is generator A of B splitting one schedule of --rate msgs/s\n"
    "  --json               print the result as one JSON object on stdout\n"
    "  --progress           a progress line every second on stderr (default: only when stderr is a terminal)\n"
    "  --once               send \"this is a test\", shut down the write side, print what comes back\n"
    "  --help               this text\n"
    "  --version            print the version\n";

/* option_values' parsers (digits only: no sign, no white space, no exponent), with overlap-load's lower bounds.
 * *out is written only when the value is in range. */
static int parse_uint(const char *text, unsigned long long min, unsigned long long max, unsigned long long *out)
{
    unsigned long long value = 0;
    if (option_parse_uint(text, max, &value) < 0 || value < min)
        return -1;
    *out = value;
    return 0;
}

static int parse_number(const char *text, double min, double max, double *out)
{
    double value = 0;
    if (option_parse_decimal(text, max, &value) < 0 || value < min)
        return -1;
    *out = value;
    return 0;
}

static bool is_flag(const char *name)
{
    static const char *const flags[] = {"--json", "--once", "--progress", "--help", "--version", "-h"};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        if (!strcmp(name, flags[i]))
            return true;
    return false;
}

static bool is_valued(const char *name, const struct load_options *o)
{
    static const char *const valued[] = {"--host", "--port", "--connections", "--size", "--pipeline",
                                         "--duration", "--warmup", "--rate", "--churn", "--connect-rate",
                                         "--target-p99", "--hdr-log", "--hdr-interval", "--hdr-tag", "--start-at",
                                         "--share", "--model"};
    for (size_t i = 0; i < sizeof valued / sizeof valued[0]; i++)
        if (!strcmp(name, valued[i]))
            return true;
    return engine_options_takes(&o->engine, name);
}

static int set_flag(const char *name, struct load_options *o)
{
    if (!strcmp(name, "--json"))
        o->json = true;
    else if (!strcmp(name, "--once"))
        o->once = true;
    else if (!strcmp(name, "--progress"))
        o->progress = true;
    else if (!strcmp(name, "--version"))
        o->version = true;
    else
        o->help = true;
    return 0;
}

/* One option with its value. Returns 0, or -1 with the reason in error. */
static int set_value(const char *name, const char *value, struct load_options *o, char *error, size_t error_size)
{
    unsigned long long n = 0;
    if (!strcmp(name, "--host")) {
        if (!*value) {
            snprintf(error, error_size, "--host: the host name is empty");
            return -1;
        }
        o->host = value;
    } else if (!strcmp(name, "--port")) {
        if (parse_uint(value, 1, 65535, &n)) {
            snprintf(error, error_size, "--port: '%s' is not a port number (1-65535)", value);
            return -1;
        }
        o->port = value;
    } else if (!strcmp(name, "--connections")) {
        if (parse_uint(value, 1, 1000000, &n)) {
            snprintf(error, error_size, "--connections: '%s' is not a count (1-1000000)", value);
            return -1;
        }
        o->connections = (uint32_t)n;
    } else if (!strcmp(name, "--size")) {
        if (parse_uint(value, 1, 1u << 24, &n)) {
            snprintf(error, error_size, "--size: '%s' is not a message size in bytes (1-16777216)", value);
            return -1;
        }
        o->size = (uint32_t)n;
    } else if (!strcmp(name, "--pipeline")) {
        if (parse_uint(value, 1, 65536, &n)) {
            snprintf(error, error_size, "--pipeline: '%s' is not a depth (1-65536)", value);
            return -1;
        }
        o->pipeline = (uint32_t)n;
    } else if (!strcmp(name, "--duration")) {
        if (parse_number(value, 0.001, 86400, &o->duration)) {
            snprintf(error, error_size, "--duration: '%s' is not a number of seconds (0.001-86400)", value);
            return -1;
        }
    } else if (!strcmp(name, "--warmup")) {
        if (parse_number(value, 0, 86400, &o->warmup)) {
            snprintf(error, error_size, "--warmup: '%s' is not a number of seconds (0-86400)", value);
            return -1;
        }
    } else if (!strcmp(name, "--rate")) {
        if (parse_number(value, 0.001, 1e9, &o->rate)) {
            snprintf(error, error_size, "--rate: '%s' is not a message rate (0.001-1000000000 per second)", value);
            return -1;
        }
    } else if (!strcmp(name, "--churn")) {
        if (parse_uint(value, 1, UINT32_MAX, &n)) {
            snprintf(error, error_size, "--churn: '%s' is not a message count (1-4294967295)", value);
            return -1;
        }
        o->churn = (uint32_t)n;
    } else if (!strcmp(name, "--connect-rate")) {
        if (parse_number(value, 0.001, 1e7, &o->connect_rate)) {
            snprintf(error, error_size, "--connect-rate: '%s' is not a rate (0.001-10000000 per second)", value);
            return -1;
        }
    } else if (!strcmp(name, "--target-p99")) {
        if (parse_number(value, 1, 60e6, &o->target_p99_us)) {
            snprintf(error, error_size, "--target-p99: '%s' is not a latency in microseconds (1-60000000)", value);
            return -1;
        }
    } else if (!strcmp(name, "--hdr-log")) {
        if (!*value) {
            snprintf(error, error_size, "--hdr-log: the file name is empty");
            return -1;
        }
        o->hdr_log = value;
    } else if (!strcmp(name, "--hdr-interval")) {
        if (parse_number(value, 0.1, 3600, &o->hdr_interval)) {
            snprintf(error, error_size, "--hdr-interval: '%s' is not a number of seconds (0.1-3600)", value);
            return -1;
        }
    } else if (!strcmp(name, "--hdr-tag")) {
        size_t len = strlen(value);
        bool ok = len >= 1 && len <= 64;
        for (const char *p = value; ok && *p; p++)
            ok = isalnum((unsigned char)*p) || *p == '.' || *p == '_' || *p == '-';
        if (!ok) {
            snprintf(error, error_size, "--hdr-tag: '%.64s' is not a tag (1-64 letters, digits, '.', '_', '-')",
                     value);
            return -1;
        }
        o->hdr_tag = value;
    } else if (!strcmp(name, "--start-at")) {
        /* Absolute only: a small number is a relative time typed by mistake, which would start at once. */
        if (parse_number(value, 1e9, 1e10, &o->start_at)) {
            snprintf(error, error_size, "--start-at: '%s' is not a Unix time in seconds (1000000000-10000000000; "
                     "date +%%s prints the current one)", value);
            return -1;
        }
    } else if (!strcmp(name, "--model")) {
        int m = 0;
        while (m < LOAD_MODELS && strcmp(value, load_model_names[m]) != 0)
            m++;
        if (m == LOAD_MODELS) {
            snprintf(error, error_size, "--model: '%.32s' is not a client model (uring, epoll, threads)", value);
            return -1;
        }
        o->model = (enum load_model)m;
    } else if (!strcmp(name, "--share")) {
        const char *slash = strchr(value, '/');
        char index[16];
        unsigned long long b = 0;
        size_t len = slash ? (size_t)(slash - value) : 0;
        if (slash && len > 0 && len < sizeof index) {
            memcpy(index, value, len);
            index[len] = '\0';
        }
        if (!slash || len == 0 || len >= sizeof index || parse_uint(index, 1, 1024, &n) ||
            parse_uint(slash + 1, 1, 1024, &b) || n > b) {
            snprintf(error, error_size, "--share: '%s' is not A/B with 1 <= A <= B <= 1024", value);
            return -1;
        }
        o->share_index = (uint32_t)n;
        o->share_count = (uint32_t)b;
    } else {
        /* The engine's options (threads, buffers, timeouts, backend), or "unknown option". */
        return engine_options_parse(&o->engine, name, value, error, error_size);
    }
    return 0;
}

/* --model epoll or threads: what the model cannot do is refused, naming the option and the model. */
static int check_socket_model(const struct load_options *o, const char *engine_only_given, char *error,
                              size_t error_size)
{
    const char *model = load_model_names[o->model];
#ifndef __linux__
    if (o->model == LOAD_MODEL_EPOLL) {
        snprintf(error, error_size, "--model epoll: epoll is Linux's; use --model uring (the engine) here");
        return -1;
    }
#endif
#ifdef _WIN32
    if (o->model == LOAD_MODEL_THREADS) {
        snprintf(error, error_size, "--model threads: not built on Windows (POSIX threads and sockets); use "
                 "--model uring (the engine, on IOCP)");
        return -1;
    }
#endif
    if (engine_only_given) {
        snprintf(error, error_size, "%s: only --model uring (the engine) has it, not --model %s", engine_only_given,
                 model);
        return -1;
    }
    if (o->model == LOAD_MODEL_THREADS) {
        if (o->threads_given) {
            snprintf(error, error_size, "--threads: --model threads runs one thread per connection (--connections)");
            return -1;
        }
        if (o->connections > THREADS_MODEL_MAX_CONNECTIONS) {
            snprintf(error, error_size, "--connections: %u is more than --model threads runs (one thread each, at "
                     "most %d)", o->connections, THREADS_MODEL_MAX_CONNECTIONS);
            return -1;
        }
        /* A blocking thread writes its whole pipeline before it reads: more than the sockets' buffers hold in
         * flight and neither side reads again. */
        if ((uint64_t)o->size * o->pipeline > THREADS_MODEL_MAX_IN_FLIGHT) {
            snprintf(error, error_size, "--pipeline: --size %u x --pipeline %u is more than --model threads keeps "
                     "in flight (%d bytes: it writes without reading)", o->size, o->pipeline,
                     THREADS_MODEL_MAX_IN_FLIGHT);
            return -1;
        }
        if (o->rate > 0 && o->pipeline > 1) {
            snprintf(error, error_size, "--pipeline: with --rate, --model threads sends one message at a time (a "
                     "blocking thread cannot wait for the clock and the socket at once); use --model epoll");
            return -1;
        }
    }
    return 0;
}

int load_options_parse(int argc, char *const argv[], struct load_options *o, char *error, size_t error_size)
{
    memset(o, 0, sizeof *o);
    o->host = "localhost";
    o->port = "27015";
    /* A load client connects out and serves nothing: no --drain-timeout (load_run sets its own), --idle-timeout
     * or --metrics. One worker thread unless asked: overlap-load's default, not the engine's one per CPU. */
    engine_options_init(&o->engine, ENGINE_OPTIONS_CONNECTS);
    o->engine.config.threads = 1;
    o->connections = 50;
    o->size = 64;
    o->pipeline = 1;
    o->duration = 5;
    o->warmup = 1;
    o->hdr_interval = 1;
    bool interval_given = false;
    const char *engine_only_given = NULL; /* the first option given that only the engine model acts on */
    if (error_size)
        error[0] = '\0';
    bool host_given = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!arg)
            break;
        if (arg[0] != '-') {
            if (host_given || !*arg) {
                snprintf(error, error_size, "unexpected argument '%s'", arg);
                return -1;
            }
            host_given = true;
            o->host = arg;
            continue;
        }
        char name[32];
        const char *eq = strchr(arg, '=');
        size_t name_len = eq ? (size_t)(eq - arg) : strlen(arg);
        if ((strncmp(arg, "--", 2) != 0 && strcmp(arg, "-h") != 0) || name_len >= sizeof name) {
            snprintf(error, error_size, "unknown option '%.*s'", (int)(name_len < 64 ? name_len : 64), arg);
            return -1;
        }
        memcpy(name, arg, name_len);
        name[name_len] = '\0';
        for (int k = 0; k < ENGINE_MODEL_ONLY && !engine_only_given; k++)
            if (!strcmp(name, engine_model_only[k]))
                engine_only_given = engine_model_only[k];
        if (!strcmp(name, "--threads"))
            o->threads_given = true;
        if (is_flag(name)) {
            if (eq) {
                snprintf(error, error_size, "%s takes no value", name);
                return -1;
            }
            set_flag(name, o);
            continue;
        }
        const char *value;
        if (eq)
            value = eq + 1;
        else if (i + 1 < argc && argv[i + 1])
            value = argv[++i];
        else {
            if (is_valued(name, o))
                snprintf(error, error_size, "%s needs a value", name);
            else
                snprintf(error, error_size, "unknown option '%s'", name);
            return -1;
        }
        if (!strcmp(name, "--host") && host_given) {
            snprintf(error, error_size, "the host is given twice ('%s' and '%s')", o->host, value);
            return -1;
        }
        if (set_value(name, value, o, error, error_size) < 0)
            return -1;
        if (!strcmp(name, "--host"))
            host_given = true;
        if (!strcmp(name, "--hdr-interval") || !strcmp(name, "--hdr-tag"))
            interval_given = true;
    }
    if ((uint32_t)o->engine.config.threads > o->connections)
        o->engine.config.threads = (int)o->connections; /* a worker without a connection would only idle */
    if (o->help || o->version)
        return 0;
    if (o->model != LOAD_MODEL_URING && check_socket_model(o, engine_only_given, error, error_size) < 0)
        return -1;
    if (engine_options_check(&o->engine, error, error_size) < 0)
        return -1;
    if (o->once)
        return 0;
    if (o->target_p99_us > 0 && o->rate > 0) {
        snprintf(error, error_size, "--target-p99 searches for the rate itself: leave out --rate");
        return -1;
    }
    if (interval_given && !o->hdr_log) {
        snprintf(error, error_size, "--hdr-interval and --hdr-tag describe the --hdr-log file: give --hdr-log too");
        return -1;
    }
    if (o->share_count && o->rate <= 0) {
        snprintf(error, error_size, "--share splits the schedule of a --rate: give --rate (the total of all "
                 "generators)");
        return -1;
    }
    if ((o->start_at > 0 || o->share_count) && o->target_p99_us > 0) {
        snprintf(error, error_size, "--start-at and --share start one run, --target-p99 makes several: leave one out");
        return -1;
    }
    if (o->hdr_log && o->target_p99_us > 0) {
        snprintf(error, error_size, "--hdr-log logs one run, --target-p99 makes several: leave one out");
        return -1;
    }
    if ((uint64_t)o->size * o->pipeline > (1ull << 28)) {
        snprintf(error, error_size, "--size %u x --pipeline %u is more than 256 MiB in flight per connection",
                 o->size, o->pipeline);
        return -1;
    }
    return 0;
}
