/*
 * fuzz_load_options.c - libFuzzer target for overlap-load's command line parser (bench/load/load_options.c), built the
 * same way as fuzz_echo_options.c: the input split at NUL bytes into argv; besides what the sanitizers catch, an
 * accepted command line must hold only values inside the ranges the parser promises, and a refused one must come
 * with a one-line message. Built and run by scripts/fuzz; seeds in tests/corpus/load_options/.
 */
#include "load_options.h"

#include "fuzz_argv.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_load_options: %s\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text, *argv[FUZZ_MAX_ARGS + 1];
    int argc = fuzz_split_args(data, size, "overlap-load", &text, argv);
    if (!argc)
        return 0;

    struct load_options o;
    char error[256];
    memset(error, 0x55, sizeof error);
    int rc = load_options_parse(argc, argv, &o, error, sizeof error);
    check(rc == 0 || rc == -1, "result is neither 0 nor -1");
    if (rc < 0) {
        size_t len = strnlen(error, sizeof error);
        check(len > 0 && len < sizeof error, "failure without a terminated message");
    } else {
        check(o.host && *o.host && o.port && *o.port, "host and port");
        char *end = NULL;
        unsigned long port = strtoul(o.port, &end, 10);
        check(*o.port >= '0' && *o.port <= '9' && *end == '\0' && port >= 1 && port <= 65535, "port");
        check(o.connections >= 1, "no connections");
        check(o.threads >= 1 && (uint32_t)o.threads <= o.connections, "threads");
        check(o.size >= 1 && o.pipeline >= 1, "size and pipeline");
        double values[] = {o.duration, o.warmup, o.rate, o.connect_rate, o.target_p99_us};
        for (size_t i = 0; i < sizeof values / sizeof values[0]; i++)
            check(isfinite(values[i]) && values[i] >= 0, "a negative or non-finite number accepted");
        check(o.duration > 0, "zero duration");
        check(o.busy_poll_us >= -1 && o.busy_poll_us <= 100000, "busy-poll outside 0-100000");
    }
    free(text);
    return 0;
}
