/*
 * option_values.h - strict parsing of command-line values, shared by overlap-echo and overlap-proxy: only digits
 * (strtoull and strtod alone would skip leading white space and take a sign, so "--port ' 80'" or "--threads -0"
 * would pass).
 */
#ifndef OVL_OPTION_VALUES_H
#define OVL_OPTION_VALUES_H

#include <stddef.h>

/* A decimal integer 0..max. Returns 0 and *out, or -1. */
int option_parse_uint(const char *text, unsigned long long max, unsigned long long *out);
/* Seconds, 0..86400, fractions allowed. Returns 0 and *out, or -1. */
int option_parse_seconds(const char *text, double *out);

/* --buffer-size x --buffer-count (0 = the engine's default for either) as the engine rounds it, within
 * OVL_MAX_POOL_BYTES per worker. Returns 0, or -1 with a message naming both options in error. */
int option_check_pool(unsigned long long buffer_size, unsigned long long buffer_count, char *error,
                      size_t error_size);

/* Split "HOST:PORT", "[IPV6]:PORT" or ":PORT" into host (empty = every interface) and port (0-65535). Returns 0,
 * or -1 with a message naming `option` in error. */
int option_parse_address(const char *text, const char *option, char *host, size_t host_cap, char *port,
                         size_t port_cap, char *error, size_t error_size);

/* What overlap-echo and overlap-proxy share beyond the values above: the options that bound dead and stalled peers
 * and the metrics endpoint. Each program embeds one and hands it every option it does not know itself. */
struct common_options {
    double keepalive;        /* seconds of silence before TCP keepalive probes: -1 = engine default, 0 = off */
    double stall_timeout;    /* seconds a peer may leave queued bytes unread: -1 = engine default, 0 = off */
    char metrics_host[64];   /* --metrics ADDR:PORT: "" with metrics_port set = every interface */
    char metrics_port[8];    /* "" = no metrics endpoint */
};

/* Every field to "not given". */
void common_options_init(struct common_options *options);
/* `name` with `value`, an option the program does not know itself: 0 when it is one of the common options and was
 * taken; -1 with a message in error when its value is wrong or it is no option at all ("unknown option"). */
int common_options_parse(struct common_options *options, const char *name, const char *value, char *error,
                         size_t error_size);
/* Their ovl_config fields (left out = the engine's default, 0 = off, which is the engine's negative). */
struct ovl_config;
void common_options_apply(const struct common_options *options, struct ovl_config *config);

#endif
