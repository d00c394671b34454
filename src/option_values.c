/*
 * option_values.c - strict parsing of command-line values (option_values.h).
 */
#include "option_values.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
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
