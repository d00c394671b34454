/*
 * option_values.c - strict parsing of command-line values (option_values.h).
 */
#include "option_values.h"
#include "overlap.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdbool.h>

int option_parse_uint(const char *text, unsigned long long max, unsigned long long *out)
{
    if (!text || !isdigit((unsigned char)*text))
        return -1;
    char *end = NULL;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno || *end || value > max)
        return -1;
    *out = value;
    return 0;
}

int option_parse_decimal(const char *text, double max, double *out)
{
    if (!text || !*text)
        return -1;
    /* strtod would also take "1e3" and "0x1p3" after a first digit: a typo must not become a number. */
    for (const char *p = text; *p; p++)
        if (!isdigit((unsigned char)*p) && *p != '.')
            return -1;
    char *end = NULL;
    errno = 0;
    double value = strtod(text, &end);
    if (errno || *end || !isfinite(value) || value < 0 || value > max)
        return -1;
    *out = value;
    return 0;
}

int option_parse_seconds(const char *text, double *out)
{
    return option_parse_decimal(text, 86400, out);
}

int option_check_pool(unsigned long long buffer_size, unsigned long long buffer_count, char *error,
                      size_t error_size)
{
    unsigned long long size = buffer_size ? buffer_size : OVL_DEFAULT_BUFFER_SIZE;
    unsigned long long count = 1, asked = buffer_count;
    if (!buffer_count)
        return 0; /* the engine's growing pool: it stops where size x count reaches the bound */
    while (count < asked)
        count <<= 1;
    if (size * count <= OVL_MAX_POOL_BYTES)
        return 0;
    snprintf(error, error_size, "--buffer-size %llu x --buffer-count %llu%s is %llu MiB of receive buffers per "
             "worker thread; at most %llu MiB", size, asked, count != asked ? " (rounded up to a power of two)" : "",
             size * count >> 20, (unsigned long long)(OVL_MAX_POOL_BYTES >> 20));
    return -1;
}

int option_next(int argc, char *const argv[], int *index, const char *const flags[], char *name, size_t name_size,
                const char **value, char *error, size_t error_size)
{
    const char *arg = argv[*index];
    const char *eq = strchr(arg, '=');
    size_t name_len = eq ? (size_t)(eq - arg) : strlen(arg);
    if (strncmp(arg, "--", 2) != 0 || name_len >= name_size) {
        snprintf(error, error_size, "unexpected argument '%s'", arg);
        return -1;
    }
    memcpy(name, arg, name_len);
    name[name_len] = '\0';
    bool flag = false;
    for (size_t i = 0; flags[i] && !flag; i++)
        flag = !strcmp(name, flags[i]);
    if (flag) {
        if (eq) {
            snprintf(error, error_size, "%s takes no value", name);
            return -1;
        }
        *value = NULL;
        return 0;
    }
    if (eq) {
        *value = eq + 1;
    } else if (*index + 1 < argc) {
        *value = argv[++*index];
    } else {
        snprintf(error, error_size, "%s needs a value", name);
        return -1;
    }
    return 0;
}

int option_parse_address(const char *text, const char *option, char *host, size_t host_cap, char *port,
                          size_t port_cap, char *error, size_t error_size)
{
    const char *colon = strrchr(text, ':');
    const char *host_start = text, *host_end = colon;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close || close[1] != ':') {
            snprintf(error, error_size, "%s: '%s' is not [IPV6]:PORT", option, text);
            return -1;
        }
        host_start = text + 1;
        host_end = close;
        colon = close + 1;
    } else if (colon && strchr(text, ':') != colon) {
        snprintf(error, error_size, "%s: write an IPv6 address as [ADDRESS]:PORT ('%s')", option, text);
        return -1;
    }
    if (!colon || !colon[1]) {
        snprintf(error, error_size, "%s: '%s' has no port (ADDR:PORT)", option, text);
        return -1;
    }
    const char *digits = colon + 1;
    size_t port_len = strlen(digits);
    bool numeric = port_len > 0 && port_len < 6;
    for (size_t i = 0; numeric && i < port_len; i++)
        numeric = digits[i] >= '0' && digits[i] <= '9';
    if (!numeric || atoi(digits) > 65535) {
        snprintf(error, error_size, "%s: '%s' is not a port number (0-65535)", option, digits);
        return -1;
    }
    size_t host_len = (size_t)(host_end - host_start);
    if (host_len >= host_cap || port_len >= port_cap) {
        snprintf(error, error_size, "%s: '%s' is too long", option, text);
        return -1;
    }
    memcpy(host, host_start, host_len);
    host[host_len] = '\0';
    memcpy(port, digits, port_len + 1);
    return 0;
}
