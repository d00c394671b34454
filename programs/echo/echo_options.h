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
    ECHO_COMMAND_INSTALL,   /* overlap-echo install [--name N] [--start auto|delayed|demand] [options] */
    ECHO_COMMAND_UNINSTALL  /* overlap-echo uninstall [--name N] */
};

/* install --start: when the SCM starts the service. */
enum echo_start {
    ECHO_START_AUTO = 0, /* at boot */
    ECHO_START_DELAYED,  /* at boot, after the automatic services (SERVICE_CONFIG_DELAYED_AUTO_START_INFO) */
    ECHO_START_DEMAND    /* sc start NAME */
};

/* install/uninstall --name: the service name, also a registry key (Services\NAME, EventLog\Application\NAME) and
 * the virtual account NT SERVICE\NAME, hence a short, plain set of characters. */
#define ECHO_SERVICE_NAME_DEFAULT "overlap-echo"
#define ECHO_SERVICE_NAME_MAX 64

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
    enum echo_start start;   /* install --start (default auto) */
    const char *service_name; /* install/uninstall --name (default ECHO_SERVICE_NAME_DEFAULT) */
    int first_server_arg;    /* argv index of the first option after the command word (1 when there is none) */
    bool help;
    bool version;
};

/* Fill `options` from argv. Returns 0, or -1 with a one-line reason in `error`. */
int echo_options_parse(int argc, char *const argv[], struct echo_options *options, char *error, size_t error_size);

/* The usage text, for --help and for argument errors. */
extern const char echo_usage[];

#endif
