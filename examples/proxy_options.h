/*
 * proxy_options.h - overlap-proxy's command line, parsed without side effects (no resolving, no sockets), so a
 * typo is reported before anything starts and the parser can be tested on its own.
 */
#ifndef OVL_PROXY_OPTIONS_H
#define OVL_PROXY_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine_options.h"

struct proxy_options {
    const char *host;         /* address to listen on; NULL = every interface */
    const char *listen_port;  /* "8080" (0 picks a free port) */
    char to_host[256];        /* upstream host from --to, brackets of an IPv6 literal removed */
    char to_port[8];          /* upstream port from --to */
    const char *to;           /* --to as given, for messages */
    uint32_t max_conns;       /* client connections at most; 0 = no limit */
    uint32_t max_pending;     /* bytes waiting to be sent to one side before the other side stops being read */
    double stats_interval;    /* seconds; 0 = no periodic stats line */
    struct engine_options engine; /* the engine's options (threads, buffers, timeouts, backend, --metrics) */
    bool help;
    bool version;
};

#define PROXY_DEFAULT_MAX_PENDING 131072u

/* Fill `options` from argv. Returns 0, or -1 with a one-line reason in `error`. --listen and --to are required
 * unless --help or --version is given. */
int proxy_options_parse(int argc, char *const argv[], struct proxy_options *options, char *error, size_t error_size);

/* The usage text, for --help and after an argument error. */
extern const char proxy_usage[];

#endif
