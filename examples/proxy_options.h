/*
 * proxy_options.h - overlap-proxy's command line, parsed without side effects (no resolving, no sockets), so a
 * typo is reported before anything starts and the parser can be tested on its own.
 */
#ifndef OVL_PROXY_OPTIONS_H
#define OVL_PROXY_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "option_values.h"

struct proxy_options {
    const char *host;         /* address to listen on; NULL = every interface */
    const char *listen_port;  /* "8080" (0 picks a free port) */
    char to_host[256];        /* upstream host from --to, brackets of an IPv6 literal removed */
    char to_port[8];          /* upstream port from --to */
    const char *to;           /* --to as given, for messages */
    int threads;              /* 0 = online CPUs */
    uint32_t max_conns;       /* client connections at most; 0 = no limit */
    uint32_t buffer_size;     /* bytes per receive buffer; 0 = engine default */
    uint32_t buffer_count;    /* receive buffers per worker; 0 = engine default */
    uint32_t max_pending;     /* bytes waiting to be sent to one side before the other side stops being read */
    double idle_timeout;      /* seconds; 0 = never close an idle pair */
    double connect_timeout;   /* seconds an upstream connect may take: -1 = engine default (10), 0 = the system's */
    double drain_timeout;     /* seconds; 0 = engine default */
    double stats_interval;    /* seconds; 0 = no periodic stats line */
    struct common_options common; /* --keepalive, --stall-timeout, --metrics */
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
