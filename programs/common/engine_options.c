/*
 * engine_options.c - the engine's options, parsed into an ovl_config (engine_options.h).
 */
#include "engine_options.h"
#include "option_values.h"

#include <stdio.h>
#include <string.h>

void engine_options_init(struct engine_options *options, unsigned takes)
{
    /* ovl_config_init's state (every field 0, its default), without a call into the library: the parsers link on
     * their own (scripts/fuzz). */
    memset(options, 0, sizeof *options);
    options->takes = takes;
}

bool engine_options_takes(const struct engine_options *options, const char *name)
{
    static const struct {
        const char *name;
        unsigned needs; /* ENGINE_OPTIONS_*, 0 = every program */
    } table[] = {
        {"--threads", 0}, {"--buffer-size", 0}, {"--buffer-count", 0}, {"--max-pending", 0},
        {"--keepalive", 0}, {"--stall-timeout", 0}, {"--backend", 0}, {"--busy-poll", 0}, {"--zero-byte-recv", 0},
        {"--connect-timeout", ENGINE_OPTIONS_CONNECTS}, {"--drain-timeout", ENGINE_OPTIONS_SERVES},
        {"--idle-timeout", ENGINE_OPTIONS_SERVES}, {"--metrics", ENGINE_OPTIONS_SERVES},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (!strcmp(name, table[i].name))
            return (table[i].needs & options->takes) == table[i].needs;
    return false;
}

unsigned engine_options_milliseconds(double seconds)
{
    double ms = seconds * 1000.0;
    unsigned whole = (unsigned)ms;
    return (double)whole < ms ? whole + 1 : whole;
}

/* Seconds where 0 means "off", as an ovl_config field where 0 means "default" and a negative value "off". */
static int off_or_milliseconds(double seconds)
{
    return seconds == 0 ? -1 : (int)engine_options_milliseconds(seconds);
}

static int parse_count(const char *name, const char *value, unsigned long long min, unsigned long long max,
                       const char *what, unsigned long long *out, char *error, size_t error_size)
{
    if (option_parse_uint(value, max, out) == 0 && *out >= min)
        return 0;
    snprintf(error, error_size, "%s: '%s' is not %s", name, value, what);
    return -1;
}

static int parse_seconds(const char *name, const char *value, double max, const char *what, double *out,
                         char *error, size_t error_size)
{
    if (option_parse_seconds(value, out) == 0 && *out <= max)
        return 0;
    snprintf(error, error_size, "%s: '%s' is not %s", name, value, what);
    return -1;
}

int engine_options_parse(struct engine_options *options, const char *name, const char *value, char *error,
                         size_t error_size)
{
    ovl_config *config = &options->config;
    unsigned long long number = 0;
    double seconds = 0;
    if (!engine_options_takes(options, name)) {
        snprintf(error, error_size, "unknown option '%s'", name);
        return -1;
    }
    if (!strcmp(name, "--threads")) {
        char what[48];
        snprintf(what, sizeof what, "a thread count (0-%d, 0 = CPUs)", OVL_MAX_THREADS);
        if (parse_count(name, value, 0, OVL_MAX_THREADS, what, &number, error, error_size) < 0)
            return -1;
        config->threads = (int)number;
    } else if (!strcmp(name, "--buffer-size")) {
        if (parse_count(name, value, 64, 1u << 24, "a size in bytes (64-16777216)", &number, error, error_size) < 0)
            return -1;
        config->buffer_size = (uint32_t)number;
    } else if (!strcmp(name, "--buffer-count")) {
        if (parse_count(name, value, 1, 32768, "a count (1-32768)", &number, error, error_size) < 0)
            return -1;
        config->buffer_count = (uint32_t)number;
    } else if (!strcmp(name, "--max-pending")) {
        if (parse_count(name, value, 1, UINT32_MAX, "a size in bytes (1-4294967295)", &number, error,
                        error_size) < 0)
            return -1;
        config->max_pending = (uint32_t)number;
    } else if (!strcmp(name, "--drain-timeout")) {
        if (parse_seconds(name, value, 86400, "a number of seconds", &seconds, error, error_size) < 0)
            return -1;
        config->drain_timeout_ms = engine_options_milliseconds(seconds); /* 0 = the default */
    } else if (!strcmp(name, "--idle-timeout")) {
        if (parse_seconds(name, value, 86400, "a number of seconds", &seconds, error, error_size) < 0)
            return -1;
        config->idle_timeout_ms = engine_options_milliseconds(seconds); /* 0 = never */
    } else if (!strcmp(name, "--keepalive")) {
        if (parse_seconds(name, value, 32767, "a number of seconds (1-32767, 0 = off)", &seconds, error,
                          error_size) < 0)
            return -1;
        if (seconds != 0 && seconds < 1) {
            snprintf(error, error_size, "--keepalive: '%s' is not a number of seconds (1-32767, 0 = off)", value);
            return -1;
        }
        config->keepalive_ms = off_or_milliseconds(seconds);
    } else if (!strcmp(name, "--stall-timeout")) {
        if (parse_seconds(name, value, 2000000, "a number of seconds (0-2000000, 0 = off)", &seconds, error,
                          error_size) < 0)
            return -1;
        config->stall_timeout_ms = off_or_milliseconds(seconds);
    } else if (!strcmp(name, "--connect-timeout")) {
        if (parse_seconds(name, value, 3600, "a number of seconds (0-3600, 0 = the system's)", &seconds, error,
                          error_size) < 0)
            return -1;
        config->connect_timeout_ms = off_or_milliseconds(seconds);
    } else if (!strcmp(name, "--backend")) {
        config->backend = value;
    } else if (!strcmp(name, "--busy-poll")) {
        if (parse_count(name, value, 0, 100000, "a number of microseconds (0-100000)", &number, error,
                        error_size) < 0)
            return -1;
        config->busy_poll_us = number == 0 ? -1 : (int)number; /* the option's 0 = never; the config's 0 = default */
    } else if (!strcmp(name, "--zero-byte-recv")) {
        if (!strcmp(value, "auto")) {
            config->zero_byte_receive = 0;
        } else if (!strcmp(value, "on")) {
            config->zero_byte_receive = 1;
        } else if (!strcmp(value, "off")) {
            config->zero_byte_receive = -1;
        } else {
            snprintf(error, error_size, "--zero-byte-recv: '%s' is not auto, on or off", value);
            return -1;
        }
    } else { /* --metrics: engine_options_takes knows no other */
        return option_parse_address(value, "--metrics", options->metrics_host, sizeof options->metrics_host,
                                    options->metrics_port, sizeof options->metrics_port, error, error_size);
    }
    return 0;
}

int engine_options_check(const struct engine_options *options, char *error, size_t error_size)
{
    return option_check_pool(options->config.buffer_size, options->config.buffer_count, error, error_size);
}

void engine_options_describe_threads(const struct engine_options *options, int threads, int cpus, char *out,
                                     size_t out_size)
{
    int written = snprintf(out, out_size, "%d worker thread%s", threads, threads == 1 ? "" : "s");
    if (options->config.threads == 0 && written > 0 && (size_t)written < out_size) {
        snprintf(out + written, out_size - (size_t)written, " (default: %d CPU%s%s; --threads N to change)", cpus,
                 cpus == 1 ? "" : "s", cpus > 1 ? " less one" : "");
    }
}
