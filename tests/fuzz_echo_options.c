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
        check(options.backend == NULL || in_argv(options.backend, argv, argc), "backend");
        check(options.threads >= 0 && options.threads <= OVL_MAX_THREADS, "threads outside 0-256");
        check((uint64_t)(options.buffer_size ? options.buffer_size : OVL_DEFAULT_BUFFER_SIZE) *
                      (options.buffer_count ? options.buffer_count : OVL_DEFAULT_BUFFER_COUNT) <= OVL_MAX_POOL_BYTES,
              "a receive pool above 256 MiB per worker accepted");
        check(options.stats_interval == 0 || options.stats_interval >= 0.1, "--stats below 0.1 s accepted");
        check(options.buffer_size == 0 || (options.buffer_size >= 64 && options.buffer_size <= (1u << 24)),
              "buffer size outside 64-16777216");
        check(options.buffer_count <= 32768, "buffer count above 32768");
        double seconds[] = { options.stats_interval, options.drain_timeout, options.idle_timeout };
        for (size_t i = 0; i < sizeof seconds / sizeof seconds[0]; i++)
            check(isfinite(seconds[i]) && seconds[i] >= 0 && seconds[i] <= 86400, "seconds outside 0-86400");
        check(options.zero_byte_receive >= -1 && options.zero_byte_receive <= 1, "zero-byte mode");
        check(options.busy_poll_us >= -1 && options.busy_poll_us <= 100000, "busy-poll outside 0-100000");
    }
    free(text);
    return 0;
}
