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

int option_parse_seconds(const char *text, double *out)
{
    if (!text || !(isdigit((unsigned char)*text) || *text == '.'))
        return -1;
    char *end = NULL;
    errno = 0;
    double value = strtod(text, &end);
    if (errno || *end || !isfinite(value) || value < 0 || value > 86400)
        return -1;
    *out = value;
    return 0;
}

int option_check_pool(unsigned long long buffer_size, unsigned long long buffer_count, char *error,
                      size_t error_size)
{
    unsigned long long size = buffer_size ? buffer_size : OVL_DEFAULT_BUFFER_SIZE;
    unsigned long long count = 1, asked = buffer_count ? buffer_count : OVL_DEFAULT_BUFFER_COUNT;
    while (count < asked)
        count <<= 1;
    if (size * count <= OVL_MAX_POOL_BYTES)
        return 0;
    snprintf(error, error_size, "--buffer-size %llu x --buffer-count %llu%s is %llu MiB of receive buffers per "
             "worker thread; at most %llu MiB", size, asked, count != asked ? " (rounded up to a power of two)" : "",
             size * count >> 20, (unsigned long long)(OVL_MAX_POOL_BYTES >> 20));
    return -1;
}
