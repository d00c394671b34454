/*
 * echo_options.h - overlap-echo's command line, parsed without side effects (so tests and fuzzers can call it).
 */
#ifndef OVL_ECHO_OPTIONS_H
#define OVL_ECHO_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "option_values.h"

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
    int threads;             /* 0 = online CPUs */
    uint32_t max_conns;      /* 0 = no limit */
    uint32_t buffer_size;    /* 0 = engine default */
    uint32_t buffer_count;   /* 0 = engine default */
    uint32_t max_pending;    /* 0 = engine default */
    double stats_interval;   /* seconds, 0 = no periodic stats */
    bool stats_json;         /* --stats-format json: one JSON object per interval, for log collectors */
    double drain_timeout;    /* seconds, 0 = engine default */
    double idle_timeout;     /* seconds, 0 = never close idle connections */
    const char *backend;     /* NULL = best available */
    int zero_byte_receive;   /* IOCP: 1 on, -1 off, 0 automatic */
    int busy_poll_us;        /* io_uring spin before sleeping: -1 = engine default, 0 = never */
    const char *log_file;    /* NULL = the console; else append stdout and stderr to it */
    struct common_options common; /* --keepalive, --stall-timeout, --metrics */
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
