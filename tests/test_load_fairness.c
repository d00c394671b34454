/*
 * test_load_fairness.c - overlap-load's fairness figures (bench/load/load_fairness.c) on vectors whose answer is
 * known by hand: min / median / max of messages per connection and Jain's index (sum x)^2 / (n sum x^2).
 */
#include <criterion/criterion.h>

#include "load_fairness.h"

#include <math.h>

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
