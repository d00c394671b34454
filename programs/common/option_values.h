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
/* A decimal number 0..max: digits and a point ("2", "0.5", ".25"), no sign, exponent, hex, inf or nan. Returns 0
 * and *out, or -1. */
int option_parse_decimal(const char *text, double max, double *out);
/* Seconds, 0..86400, fractions allowed (option_parse_decimal). Returns 0 and *out, or -1. */
int option_parse_seconds(const char *text, double *out);

/* --buffer-size x --buffer-count (0 = the engine's default for either) as the engine rounds it, within
 * OVL_MAX_POOL_BYTES per worker. A count of 0 (the engine's growing pool) always fits. Returns 0, or -1 with a message naming both options in error. */
int option_check_pool(unsigned long long buffer_size, unsigned long long buffer_count, char *error,
                      size_t error_size);

/* The option at argv[*index], "--name", "--name=value" or "--name value": its name into `name` and its value into
 * *value, or NULL when the name is one of `flags` (a NULL-terminated list of options that take none). A value in
 * the next argument advances *index. Returns 0, or -1 with a message in error: an argument that is no option, a
 * flag given a value, an option missing its value. */
int option_next(int argc, char *const argv[], int *index, const char *const flags[], char *name, size_t name_size,
                const char **value, char *error, size_t error_size);

/* Split "HOST:PORT", "[IPV6]:PORT" or ":PORT" into host (empty = every interface) and port (0-65535). Returns 0,
 * or -1 with a message naming `option` in error. */
int option_parse_address(const char *text, const char *option, char *host, size_t host_cap, char *port,
                         size_t port_cap, char *error, size_t error_size);

#endif
