/*
 * test_load_fairness.c - overlap-load's fairness figures (bench/load/load_fairness.c) on vectors whose answer is
 * known by hand: min / median / max of messages per connection and Jain's index (sum x)^2 / (n sum x^2).
 */
#include <criterion/criterion.h>

#include "load_fairness.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Allocation failure on demand: this test is linked with -Wl,--wrap=malloc (tests/meson.build), so the malloc calls
 * of load_fairness.c and of this file come here; other libraries' (libc's, Criterion's) do not. */
void *__real_malloc(size_t size);
void *__wrap_malloc(size_t size);
static bool malloc_fails;

void *__wrap_malloc(size_t size)
{
    return malloc_fails ? NULL : __real_malloc(size);
}

static struct load_fairness of(uint64_t *counts, size_t n)
{
    struct load_fairness f;
    load_fairness_of(counts, n, &f);
    return f;
}

Test(load_fairness, equal_counts_are_perfectly_fair)
{
    uint64_t counts[] = {7, 7, 7, 7};
    struct load_fairness f = of(counts, 4);
    cr_assert_eq(f.connections, 4);
    cr_assert(f.min == 7 && f.median == 7 && f.max == 7);
    cr_assert_float_eq(f.jain, 1.0, 1e-12);
}

Test(load_fairness, one_connection_with_everything_is_one_over_n)
{
    uint64_t counts[] = {0, 0, 100, 0, 0};
    struct load_fairness f = of(counts, 5);
    cr_assert(f.min == 0 && f.median == 0 && f.max == 100);
    cr_assert_float_eq(f.jain, 0.2, 1e-12);
}

Test(load_fairness, a_quarter_starved)
{
    /* Every 4th connection never answered: (3 * 10)^2 / (4 * 3 * 100) = 0.75. Unsorted on purpose. */
    uint64_t counts[] = {10, 10, 0, 10};
    struct load_fairness f = of(counts, 4);
    cr_assert(f.min == 0 && f.median == 10 && f.max == 10, "min %llu median %llu max %llu",
              (unsigned long long)f.min, (unsigned long long)f.median, (unsigned long long)f.max);
    cr_assert_float_eq(f.jain, 0.75, 1e-12);
}

Test(load_fairness, median_is_the_ceil_half_th_smallest)
{
    uint64_t even[] = {4, 1, 3, 2};
    cr_assert_eq(of(even, 4).median, 2); /* the 2nd smallest of 4 */
    uint64_t odd[] = {5, 1, 4, 2, 3};
    cr_assert_eq(of(odd, 5).median, 3);
    uint64_t one[] = {9};
    struct load_fairness f = of(one, 1);
    cr_assert(f.min == 9 && f.median == 9 && f.max == 9);
    cr_assert_float_eq(f.jain, 1.0, 1e-12);
}

Test(load_fairness, general_vector)
{
    /* x = 1, 2, 3: (6)^2 / (3 * 14) = 36 / 42. */
    uint64_t counts[] = {3, 1, 2};
    cr_assert_float_eq(of(counts, 3).jain, 36.0 / 42.0, 1e-12);
}

Test(load_fairness, nothing_counted_is_fair_by_definition)
{
    struct load_fairness f = of(NULL, 0);
    cr_assert(f.connections == 0 && f.min == 0 && f.median == 0 && f.max == 0);
    cr_assert_float_eq(f.jain, 1.0, 1e-12);
    uint64_t zeros[] = {0, 0, 0};
    f = of(zeros, 3);
    cr_assert(f.connections == 3 && f.max == 0);
    cr_assert_float_eq(f.jain, 1.0, 1e-12);
}

Test(load_fairness, large_counts_do_not_overflow)
{
    /* Squares of 2^33 overflow 64 bits; the index must still be 1 for equal counts. */
    uint64_t counts[] = {1ull << 33, 1ull << 33};
    cr_assert_float_eq(of(counts, 2).jain, 1.0, 1e-12);
}

static uint64_t count_of(const void *counts, size_t i)
{
    return ((const uint64_t *)counts)[i];
}

/* What write() puts out for f, as a string to free. */
static char *written(void (*write)(FILE *, const struct load_fairness *), const struct load_fairness *f)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    cr_assert(out);
    write(out, f);
    cr_assert(fclose(out) == 0);
    return text;
}

Test(load_fairness, measured_from_a_callback_and_written_as_figures)
{
    const uint64_t counts[] = {10, 10, 0, 10};
    struct load_fairness f;
    load_fairness_measure(&f, 4, count_of, counts);
    cr_assert(f.connections == 4 && f.min == 0 && f.median == 10 && f.max == 10);
    cr_assert_float_eq(f.jain, 0.75, 1e-12);
    char *text = written(load_fairness_write_text, &f), *json = written(load_fairness_write_json, &f);
    cr_assert(strstr(text, "min 0, median 10, max 10; Jain's index 0.7500"), "%s", text);
    cr_assert_str_eq(json, "\"fairness\":{\"connections\":4,\"min\":0,\"median\":10,\"max\":10,\"jain\":0.750000}");
    free(text);
    free(json);
}

/* When the counts cannot be copied there are no figures: the report must not show an index of 0, which reads as
 * every connection but one starved. The line says n/a, the JSON member is null. */
Test(load_fairness, counts_that_could_not_be_copied_are_not_a_figure)
{
    const uint64_t counts[] = {7, 7, 7, 7};
    struct load_fairness f;
    malloc_fails = true;
    load_fairness_measure(&f, 4, count_of, counts);
    malloc_fails = false;
    char *text = written(load_fairness_write_text, &f), *json = written(load_fairness_write_json, &f);
    cr_assert(strstr(text, "fairness") && strstr(text, "n/a") && !strstr(text, "Jain's index"), "%s", text);
    cr_assert_str_eq(json, "\"fairness\":null", "%s", json);
    free(text);
    free(json);
}
