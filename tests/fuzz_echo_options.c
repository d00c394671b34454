/*
 * fuzz_echo_options.c - libFuzzer target for overlap-echo's command line parser (programs/echo/echo_options.c).
 *
 * The input is split at NUL bytes into arguments (fuzz_argv.h; argv[0] is "overlap-echo"), the way a shell hands them over, so
 * the fuzzer reaches every option with any value, "--name=value" forms, missing values and stray arguments. Besides
 * what AddressSanitizer and UBSan catch, the result must make sense: -1 with a one-line message, or 0 with every
 * field inside the range the parser promises (a value it let through would reach the engine).
 * Built and run by scripts/fuzz (clang -fsanitize=fuzzer,address,undefined); seeds in tests/corpus/echo_options/.
 */
#include "echo_options.h"

#include "fuzz_argv.h"
#include "overlap.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_echo_options: %s\n", what);
        abort();
    }
}

static int in_argv(const char *p, char *const argv[], int argc)
{
    for (int i = 1; i < argc; i++)
        if (p >= argv[i] && p <= argv[i] + strlen(argv[i]))
            return 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text, *argv[FUZZ_MAX_ARGS + 1];
    int argc = fuzz_split_args(data, size, "overlap-echo", &text, argv);
    if (!argc)
        return 0;

    struct echo_options options;
    char error[256];
    memset(error, 0x55, sizeof error); /* a parser that forgets the message leaves no terminator */
    int rc = echo_options_parse(argc, argv, &options, error, sizeof error);
    check(rc == 0 || rc == -1, "result is neither 0 nor -1");
    if (rc < 0) {
        size_t len = strnlen(error, sizeof error);
        check(len > 0 && len < sizeof error, "failure without a terminated message");
    } else {
        check(options.port != NULL, "no port");
        char *end = NULL;
        unsigned long port = strtoul(options.port, &end, 10);
        check(*options.port >= '0' && *options.port <= '9' && *end == '\0' && port <= 65535,
              "port outside 0-65535, or not only digits, accepted");
        check(options.host == NULL || (*options.host && in_argv(options.host, argv, argc)), "host");
        const ovl_config *config = &options.engine.config;
        check(config->backend == NULL || in_argv(config->backend, argv, argc), "backend");
        check(config->threads >= 0 && config->threads <= OVL_MAX_THREADS, "threads outside 0-256");
        check(config->buffer_count == 0 || /* the engine's growing pool stops at the bound itself */
                  (uint64_t)(config->buffer_size ? config->buffer_size : OVL_DEFAULT_BUFFER_SIZE) *
                          config->buffer_count <= OVL_MAX_POOL_BYTES,
              "a receive pool above 256 MiB per worker accepted");
        check(options.stats_interval == 0 || options.stats_interval >= 0.1, "--stats below 0.1 s accepted");
        check(config->buffer_size == 0 || (config->buffer_size >= 64 && config->buffer_size <= (1u << 24)),
              "buffer size outside 64-16777216");
        check(config->buffer_count <= 32768, "buffer count above 32768");
        check(isfinite(options.stats_interval) && options.stats_interval >= 0 && options.stats_interval <= 86400,
              "--stats outside 0-86400 s");
        check(config->drain_timeout_ms <= 86400000u && config->idle_timeout_ms <= 86400000u,
              "a timeout above 86400 s");
        check(config->keepalive_ms >= -1 && config->keepalive_ms <= 32767000, "keepalive outside 0-32767 s");
        check(config->stall_timeout_ms >= -1 && config->stall_timeout_ms <= 2000000000, "stall timeout");
        check(config->connect_timeout_ms == 0, "--connect-timeout taken by a program that does not connect");
        check(config->zero_byte_receive >= -1 && config->zero_byte_receive <= 1, "zero-byte mode");
        check(config->busy_poll_us >= -1 && config->busy_poll_us <= 100000, "busy-poll outside 0-100000");
    }
    free(text);
    return 0;
}
