/*
 * engine_options.h - the options every program built on the engine shares, parsed straight into the ovl_config the
 * program will create its engine with: --threads, --buffer-size, --buffer-count, --max-pending, --drain-timeout,
 * --idle-timeout, --keepalive, --stall-timeout, --connect-timeout (programs that connect out), --backend,
 * --busy-poll, --zero-byte-recv; and --metrics, the Prometheus endpoint every program serves the same way.
 *
 * A program parses its own options first and hands every other one to engine_options_parse, so each engine flag is
 * parsed, bounded and named in its error message in one place.
 */
#ifndef OVL_ENGINE_OPTIONS_H
#define OVL_ENGINE_OPTIONS_H

#include "overlap.h"

#include <stdbool.h>
#include <stddef.h>

struct engine_options {
    ovl_config config;       /* ovl_config_init, then what the options said (config.log is the program's) */
    bool connects;           /* the program connects out: --connect-timeout is one of its options */
    char metrics_host[64];   /* --metrics ADDR:PORT: "" with metrics_port set = every interface */
    char metrics_port[8];    /* "" = no metrics endpoint */
};

/* Nothing given yet: every field of the config at its default. */
void engine_options_init(struct engine_options *options, bool connects);
/* `name` (with `value`), an option the program does not know itself: 0 when it is an engine option and was taken;
 * -1 with a message naming it in error when its value is wrong, or "unknown option" when it is none. */
int engine_options_parse(struct engine_options *options, const char *name, const char *value, char *error,
                         size_t error_size);
/* After the last option: what only the options together can break (the receive pool's size). 0, or -1 with a
 * message in error. */
int engine_options_check(const struct engine_options *options, char *error, size_t error_size);

/* Seconds (0..86400, option_parse_seconds) as milliseconds, rounded up: a tiny positive value must not turn into 0,
 * which means "default" or "off". */
unsigned engine_options_milliseconds(double seconds);

#endif
