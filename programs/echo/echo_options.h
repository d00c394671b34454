/*
 * echo_options.h - overlap-echo's command line, parsed without side effects (so tests and fuzzers can call it).
 */
#ifndef OVL_ECHO_OPTIONS_H
#define OVL_ECHO_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine_options.h"

/* What the command line asks for: serve (the default), or register/remove the Windows service. */
enum echo_command {
    ECHO_COMMAND_SERVE = 0,
    ECHO_COMMAND_INSTALL,   /* overlap-echo install [--start auto|demand] [options] */
    ECHO_COMMAND_UNINSTALL  /* overlap-echo uninstall */
};

struct echo_options {
    enum echo_command command;
    const char *host;        /* NULL = every interface */
    const char *port;        /* "27015" */
    struct engine_options engine; /* the engine's options, --max-conns and --reuse-port: straight into its config */
    double stats_interval;   /* seconds, 0 = no periodic stats */
    bool stats_json;         /* --stats-format json: one JSON object per interval, for log collectors */
    const char *log_file;    /* NULL = the console; else append stdout and stderr to it */
    bool service;            /* --service: run under the Windows Service Control Manager */
    bool reuse_port;         /* --reuse-port: SO_REUSEPORT on the listening sockets */
    bool start_on_demand;    /* install --start demand (default auto: at boot) */
    int first_server_arg;    /* argv index of the first option after the command word (1 when there is none) */
    bool help;
    bool version;
};

/* Fill `options` from argv. Returns 0, or -1 with a one-line reason in `error`. */
int echo_options_parse(int argc, char *const argv[], struct echo_options *options, char *error, size_t error_size);

/* The usage text, for --help and for argument errors. */
extern const char echo_usage[];

#endif
