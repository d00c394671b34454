/*
 * load_first_error.c - the first error of a run, claimed once, written whole, then published (load_first_error.h).
 */
#include "load_first_error.h"

#include <stdio.h>

enum { EMPTY, WRITING, KEPT };

void load_first_error_record(struct load_first_error *e, const char *format, va_list args)
{
    int empty = EMPTY;
    /* One thread wins the claim; the others return at once (their error is counted by kind, not kept). */
    if (!atomic_compare_exchange_strong_explicit(&e->state, &empty, WRITING, memory_order_acquire,
                                                 memory_order_relaxed))
        return;
    vsnprintf(e->text, sizeof e->text, format, args);
    /* Release: a reader that sees KEPT sees every byte written above. */
    atomic_store_explicit(&e->state, KEPT, memory_order_release);
}

bool load_first_error_copy(struct load_first_error *e, char *out, size_t size)
{
    if (atomic_load_explicit(&e->state, memory_order_acquire) != KEPT) {
        out[0] = '\0';
        return false;
    }
    snprintf(out, size, "%s", e->text);
    return true;
}
