/*
 * fuzz_argv.h - how both command-line fuzz targets turn a fuzzer input into argv: split at NUL bytes, the way a
 * shell hands arguments over, so the fuzzer reaches every option with any value, "--name=value" forms, missing
 * values and stray arguments.
 */
#ifndef OVL_FUZZ_ARGV_H
#define OVL_FUZZ_ARGV_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { FUZZ_MAX_ARGS = 64 };

/* Fills argv (FUZZ_MAX_ARGS + 1 entries) with argv0 and the input's NUL-separated pieces, NULL-terminated, and
 * returns argc; the pieces live in a private NUL-terminated copy (*text, to free), since parsers keep pointers into
 * argv. Returns 0 when out of memory. */
static inline int fuzz_split_args(const uint8_t *data, size_t size, char *argv0, char **text, char *argv[])
{
    *text = malloc(size + 1);
    if (!*text)
        return 0;
    memcpy(*text, data, size);
    (*text)[size] = '\0';
    int argc = 0;
    argv[argc++] = argv0;
    for (size_t start = 0; start <= size && argc < FUZZ_MAX_ARGS;) {
        argv[argc++] = *text + start;
        start += strlen(*text + start) + 1;
    }
    argv[argc] = NULL;
    return argc;
}

#endif
