/*
 * runner.c - the ThreadSanitizer stand-in for Criterion's runner (see criterion/criterion.h here).
 *
 * Like Criterion: every test runs in a child process of its own (forked from this single-threaded parent, which
 * is what ThreadSanitizer supports), .timeout is enforced, a failed cr_assert ends the test after running the
 * suite's .fini, a failed cr_expect marks it failed and lets it go on. A child that exits with ThreadSanitizer's
 * exit code (66: it printed reports) fails too. Options: --filter GLOB ("suite/name"), --verbose (accepted),
 * --jobs N (accepted; tests run one at a time).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* fnmatch, outside meson */
#endif
#include "criterion/criterion.h"

#include <fnmatch.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { EXIT_SKIPPED = 77, EXIT_TSAN_REPORTS = 66 };

static struct cr__test *tests;
static struct cr__suite *suites;
static const struct cr__test *current;
static bool expect_failed;
static jmp_buf test_end;

void cr__register_test(struct cr__test *test)
{
    test->next = tests;
    tests = test;
}

void cr__register_suite(struct cr__suite *suite)
{
    suite->next = suites;
    suites = suite;
}

static const struct cr__suite *suite_of(const struct cr__test *test)
{
    for (const struct cr__suite *suite = suites; suite; suite = suite->next)
        if (strcmp(suite->name, test->suite) == 0)
            return suite;
    return NULL;
}

static void report(const char *file, int line, const char *condition, const char *format, va_list args)
{
    fprintf(stderr, "[----] %s:%d: Assertion Failed\n[----]   ", file, line);
    if (format && *format)
        vfprintf(stderr, format, args);
    else
        fprintf(stderr, "%s", condition);
    fprintf(stderr, "\n");
}

_Noreturn void cr__fail(const char *file, int line, const char *condition, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    report(file, line, condition, format, args);
    va_end(args);
    longjmp(test_end, 1);
}

void cr__expect_failed(const char *file, int line, const char *condition, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    report(file, line, condition, format, args);
    va_end(args);
    expect_failed = true;
}

_Noreturn void cr__skip(const char *format, ...)
{
    va_list args;
    va_start(args, format);
    fprintf(stderr, "[SKIP] %s::%s: ", current->suite, current->name);
    vfprintf(stderr, format, args);
    fprintf(stderr, "\n");
    va_end(args);
    longjmp(test_end, 2);
}

void cr__log(const char *level, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    fprintf(stderr, "[%s] ", level);
    vfprintf(stderr, format, args);
    fprintf(stderr, "\n");
    va_end(args);
}

/* In the child: run one test with its suite's .init/.fini; the exit status says how it went. */
static _Noreturn void run_child(const struct cr__test *test)
{
    current = test;
    const struct cr__suite *suite = suite_of(test);
    double timeout = test->opts.timeout > 0 ? test->opts.timeout : suite ? suite->opts.timeout : 0;
    if (timeout > 0)
        alarm((unsigned)(timeout + 0.999));
    int how = setjmp(test_end);
    if (how == 0) {
        if (suite && suite->opts.init)
            suite->opts.init();
        if (test->opts.init)
            test->opts.init();
        test->run();
    }
    if (test->opts.fini)
        test->opts.fini();
    if (suite && suite->opts.fini)
        suite->opts.fini();
    fflush(NULL);
    exit(how == 2 ? EXIT_SKIPPED : how == 1 || expect_failed ? 1 : 0);
}

static int compare(const void *a, const void *b)
{
    const struct cr__test *x = *(const struct cr__test *const *)a, *y = *(const struct cr__test *const *)b;
    int c = strcmp(x->suite, y->suite);
    return c ? c : strcmp(x->name, y->name);
}

int main(int argc, char **argv)
{
    const char *filter = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--filter") == 0 && i + 1 < argc)
            filter = argv[++i];
        else if (strncmp(argv[i], "--filter=", 9) == 0)
            filter = argv[i] + 9;
        else if (strcmp(argv[i], "--jobs") == 0 || strcmp(argv[i], "-j") == 0)
            i++;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    size_t count = 0;
    for (struct cr__test *test = tests; test; test = test->next)
        count++;
    struct cr__test **list = calloc(count ? count : 1, sizeof *list);
    if (!list)
        return 2;
    count = 0;
    for (struct cr__test *test = tests; test; test = test->next)
        list[count++] = test;
    qsort(list, count, sizeof *list, compare);

    int tested = 0, passed = 0, failed = 0, crashed = 0;
    for (size_t i = 0; i < count; i++) {
        const struct cr__test *test = list[i];
        char full[256];
        snprintf(full, sizeof full, "%s/%s", test->suite, test->name);
        const struct cr__suite *suite = suite_of(test);
        if ((filter && fnmatch(filter, full, 0) != 0) || test->opts.disabled || (suite && suite->opts.disabled))
            continue;
        fprintf(stderr, "[RUN ] %s::%s\n", test->suite, test->name);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 2;
        }
        if (pid == 0)
            run_child(test);
        int status = 0;
        while (waitpid(pid, &status, 0) < 0)
            ;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        if (WIFEXITED(status) && WEXITSTATUS(status) == EXIT_SKIPPED)
            continue;
        tested++;
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
            passed++;
            fprintf(stderr, "[PASS] %s::%s: (%.2fs)\n", test->suite, test->name, took);
        } else if (WIFEXITED(status)) {
            failed++;
            fprintf(stderr, "[FAIL] %s::%s: (%.2fs)%s\n", test->suite, test->name, took,
                    WEXITSTATUS(status) == EXIT_TSAN_REPORTS ? " ThreadSanitizer reported races" : "");
        } else {
            crashed++;
            fprintf(stderr, "[FAIL] %s::%s: CRASH! signal %d%s (%.2fs)\n", test->suite, test->name,
                    WTERMSIG(status), WTERMSIG(status) == SIGALRM ? " (timed out)" : "", took);
        }
    }
    fprintf(stderr, "[====] Synthesis: Tested: %d | Passing: %d | Failing: %d | Crashing: %d \n", tested, passed,
            failed, crashed);
    free(list);
    return failed || crashed ? 1 : 0;
}
