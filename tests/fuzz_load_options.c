/*
 * fuzz_load_options.c - libFuzzer target for overlap-load's command line parser (bench/load/load_options.c), built the
 * same way as fuzz_echo_options.c: the input split at NUL bytes into argv; besides what the sanitizers catch, an
 * accepted command line must hold only values inside the ranges the parser promises (the engine's options in the
 * ovl_config they were parsed into), and a refused one must come with a one-line message. Built and run by scripts/fuzz; seeds in tests/corpus/load_options/.
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
        const ovl_config *c = &o.engine.config;
        /* 0 = one per online CPU; a number is never more than the connections. */
        check(c->threads >= 0 && c->threads <= OVL_MAX_THREADS &&
              (c->threads == 0 || (uint32_t)c->threads <= o.connections), "threads");
        check(o.size >= 1 && o.pipeline >= 1, "size and pipeline");
        double values[] = {o.duration, o.warmup, o.rate, o.connect_rate, o.target_p99_us};
        for (size_t i = 0; i < sizeof values / sizeof values[0]; i++)
            check(isfinite(values[i]) && values[i] >= 0, "a negative or non-finite number accepted");
        check(o.duration > 0, "zero duration");
        check(c->busy_poll_us >= -1 && c->busy_poll_us <= 100000, "busy-poll outside 0-100000");
        check(c->buffer_size == 0 || (c->buffer_size >= 64 && c->buffer_size <= 1u << 24), "buffer size");
        check(c->buffer_count <= 32768 && c->keepalive_ms <= 32767000 && c->connect_timeout_ms <= 3600000,
              "buffer count, keepalive or connect timeout out of range");
        /* A load client serves nothing and sets its own drain: those options are refused, not ignored. */
        check(c->drain_timeout_ms == 0 && c->idle_timeout_ms == 0 && !o.engine.metrics_port[0],
              "an option overlap-load does not take was taken");
    }
    free(text);
    return 0;
}
