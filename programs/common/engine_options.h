/*
 * engine_options.h - the options every program built on the engine shares, parsed straight into the ovl_config the
 * program will create its engine with: --threads, --buffer-size, --buffer-count, --max-pending, --drain-timeout,
 * --idle-timeout, --keepalive, --stall-timeout, --connect-timeout (programs that connect out), --backend,
 * --busy-poll, --zero-byte-recv; and --metrics, the Prometheus endpoint every server serves the same way.
 *
 * A program parses its own options first and hands every other one to engine_options_parse, so each engine flag is
 * parsed, bounded and named in its error message in one place. A program is offered only the options it acts on
 * (ENGINE_OPTIONS_*): an option it would take and ignore would tell its user something that is not so.
 */
#ifndef OVL_ENGINE_OPTIONS_H
#define OVL_ENGINE_OPTIONS_H

#include "overlap.h"

#include <stdbool.h>
#include <stddef.h>

/* The engine options a program takes besides those every program does (--threads, --buffer-size, --buffer-count,
 * --max-pending, --keepalive, --stall-timeout, --backend, --busy-poll, --zero-byte-recv: they act on every
 * connection, accepted or connected out). */
enum {
    ENGINE_OPTIONS_CONNECTS = 1u << 0, /* it connects out: --connect-timeout */
    ENGINE_OPTIONS_SERVES = 1u << 1    /* it serves until it is stopped: --drain-timeout (the graceful stop on
                                          SIGINT/SIGTERM), --idle-timeout (reclaiming silent clients) and --metrics
                                          (an endpoint scraped while it runs) */
};

struct engine_options {
    ovl_config config;       /* ovl_config_init, then what the options said (config.log is the program's) */
    unsigned takes;          /* ENGINE_OPTIONS_*: the options beyond the common ones this program takes */
    char metrics_host[64];   /* --metrics ADDR:PORT: "" with metrics_port set = every interface */
    char metrics_port[8];    /* "" = no metrics endpoint */
};

/* Nothing given yet: every field of the config at its default. `takes`: ENGINE_OPTIONS_* or 0. */
void engine_options_init(struct engine_options *options, unsigned takes);
/* Whether `name` ("--threads") is an engine option this program takes: a program that reports a missing value
 * ("--threads needs a value") apart from an unknown option asks this. */
bool engine_options_takes(const struct engine_options *options, const char *name);
/* `name` (with `value`), an option the program does not know itself: 0 when it is an engine option and was taken;
 * -1 with a message naming it in error when its value is wrong, or "unknown option" when it is none or one this
 * program does not take. */
int engine_options_parse(struct engine_options *options, const char *name, const char *value, char *error,
                         size_t error_size);
/* After the last option: what only the options together can break (the receive pool's size). 0, or -1 with a
 * message in error. */
int engine_options_check(const struct engine_options *options, char *error, size_t error_size);

/* The start line's account of the worker count: with --threads given, "N worker threads"; without, also why
 * ("1 worker thread (default: 2 CPUs less one; --threads N to change)"), so a user knows what ran and why. `cpus`
 * is what the default went by (ovl_cpu_count; passed in, so the parser links without the library, for a fuzzer). */
void engine_options_describe_threads(const struct engine_options *options, int threads, int cpus, char *out,
                                     size_t out_size);

/* Seconds (0..86400, option_parse_seconds) as milliseconds, rounded up: a tiny positive value must not turn into 0,
 * which means "default" or "off". */
unsigned engine_options_milliseconds(double seconds);

#endif
