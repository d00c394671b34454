/*
 * criterion.h - a stand-in for Criterion's header, used only by the ThreadSanitizer build (build-tsan/, see
 * scripts/test-sanitizers and tests/meson.build).
 *
 * Why: Criterion 2.4.1 shares memory with its test processes through BoxFort's "inheritable arena", which it
 * places by probing random addresses with mincore(). ThreadSanitizer reserves every gap of the x86-64 address space
 * for its shadow and meta regions, so every probe looks taken and Criterion aborts before the first test ("Could
 * not initialize inheritable arena"). This header gives the same test sources the subset of Criterion they use
 * (Test, TestSuite with .init/.fini, .timeout, cr_assert*, cr_expect*, cr_skip_test, cr_log_*), and runner.c runs
 * each test in a forked child like Criterion does, with the same [PASS]/[FAIL] lines and exit status.
 */
#ifndef OVL_TSAN_CRITERION_H
#define OVL_TSAN_CRITERION_H

#include <stdbool.h>
#include <string.h>

struct cr__opts {
    int unused_;                 /* lets the macros write { 0, __VA_ARGS__ } with or without options */
    double timeout;              /* seconds, 0 = none */
    void (*init)(void);
    void (*fini)(void);
    bool disabled;
    const char *description;
};

struct cr__test {
    const char *suite, *name;
    void (*run)(void);
    struct cr__opts opts;
    struct cr__test *next;
};

struct cr__suite {
    const char *name;
    struct cr__opts opts;
    struct cr__suite *next;
};

void cr__register_test(struct cr__test *test);
void cr__register_suite(struct cr__suite *suite);
/* A failed assertion: print file:line, the condition and the message, run the suite's .fini, end the test. */
_Noreturn void cr__fail(const char *file, int line, const char *condition, const char *format, ...);
/* A failed expectation: print it, mark the test failed, go on. */
void cr__expect_failed(const char *file, int line, const char *condition, const char *format, ...);
_Noreturn void cr__skip(const char *format, ...);
void cr__log(const char *level, const char *format, ...);

#define Test(suite, name, ...)                                                                                     \
    static void suite##_##name##_run(void);                                                                        \
    static struct cr__test suite##_##name##_test = {#suite, #name, suite##_##name##_run, {0, __VA_ARGS__}, 0};     \
    __attribute__((constructor)) static void suite##_##name##_register(void)                                       \
    {                                                                                                              \
        cr__register_test(&suite##_##name##_test);                                                                 \
    }                                                                                                              \
    static void suite##_##name##_run(void)

#define TestSuite(suite, ...)                                                                                      \
    static struct cr__suite suite##_suite = {#suite, {0, __VA_ARGS__}, 0};                                         \
    __attribute__((constructor)) static void suite##_suite_register(void)                                          \
    {                                                                                                              \
        cr__register_suite(&suite##_suite);                                                                        \
    }

/* Messages are string literals followed by their arguments, as in the tests; "" makes the message optional. */
#define cr_assert(condition, ...)                                                                                  \
    do {                                                                                                           \
        if (!(condition))                                                                                          \
            cr__fail(__FILE__, __LINE__, #condition, "" __VA_ARGS__);                                              \
    } while (0)
#define cr_expect(condition, ...)                                                                                  \
    do {                                                                                                           \
        if (!(condition))                                                                                          \
            cr__expect_failed(__FILE__, __LINE__, #condition, "" __VA_ARGS__);                                     \
    } while (0)
#define cr_assert_fail(...) cr__fail(__FILE__, __LINE__, "cr_assert_fail", "" __VA_ARGS__)
#define cr_expect_fail(...) cr__expect_failed(__FILE__, __LINE__, "cr_expect_fail", "" __VA_ARGS__)
#define cr_skip_test(...) cr__skip("" __VA_ARGS__)

#define cr_assert_eq(a, b, ...) cr_assert((a) == (b), __VA_ARGS__)
#define cr_assert_neq(a, b, ...) cr_assert((a) != (b), __VA_ARGS__)
#define cr_assert_lt(a, b, ...) cr_assert((a) < (b), __VA_ARGS__)
#define cr_assert_leq(a, b, ...) cr_assert((a) <= (b), __VA_ARGS__)
#define cr_assert_gt(a, b, ...) cr_assert((a) > (b), __VA_ARGS__)
#define cr_assert_geq(a, b, ...) cr_assert((a) >= (b), __VA_ARGS__)
#define cr_assert_null(p, ...) cr_assert((p) == NULL, __VA_ARGS__)
#define cr_assert_not_null(p, ...) cr_assert((p) != NULL, __VA_ARGS__)
#define cr_assert_not(condition, ...) cr_assert(!(condition), __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...) cr_assert(strcmp((a), (b)) == 0, __VA_ARGS__)
#define cr_assert_str_neq(a, b, ...) cr_assert(strcmp((a), (b)) != 0, __VA_ARGS__)
#define cr_expect_eq(a, b, ...) cr_expect((a) == (b), __VA_ARGS__)
#define cr_expect_neq(a, b, ...) cr_expect((a) != (b), __VA_ARGS__)
#define cr_expect_lt(a, b, ...) cr_expect((a) < (b), __VA_ARGS__)
#define cr_expect_leq(a, b, ...) cr_expect((a) <= (b), __VA_ARGS__)
#define cr_expect_gt(a, b, ...) cr_expect((a) > (b), __VA_ARGS__)
#define cr_expect_geq(a, b, ...) cr_expect((a) >= (b), __VA_ARGS__)
#define cr_expect_null(p, ...) cr_expect((p) == NULL, __VA_ARGS__)
#define cr_expect_not_null(p, ...) cr_expect((p) != NULL, __VA_ARGS__)
#define cr_expect_not(condition, ...) cr_expect(!(condition), __VA_ARGS__)
#define cr_expect_str_eq(a, b, ...) cr_expect(strcmp((a), (b)) == 0, __VA_ARGS__)
#define cr_expect_str_neq(a, b, ...) cr_expect(strcmp((a), (b)) != 0, __VA_ARGS__)

#define cr_log_info(...) cr__log("----", __VA_ARGS__)
#define cr_log_warn(...) cr__log("WARN", __VA_ARGS__)
#define cr_log_error(...) cr__log("ERR ", __VA_ARGS__)

#endif
