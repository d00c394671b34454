/*
 * load_first_error.h - the first error of a run, kept whole for the report. Any thread may record one (an engine
 * worker, a socket model's thread, the main thread), and several may at the same moment (two connections reset
 * together); only the first is kept. The thread that claims the record writes the text, and only then publishes
 * it: a reader on another thread sees the whole message or none, never one half written or two mixed, whenever it
 * reads (the main thread reads it while the threads may still run, when no connection opened).
 */
#ifndef OVL_LOAD_FIRST_ERROR_H
#define OVL_LOAD_FIRST_ERROR_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

struct load_first_error {
    _Atomic int state;            /* empty, being written (by the one thread that claimed it), or kept */
    char text[320];
};

/* Keep the message if no error was recorded before; otherwise do nothing. Any thread. Zeroed memory is an empty
 * record. */
void load_first_error_record(struct load_first_error *error, const char *format, va_list args);

/* Copy the kept message into out[0..size): true; false with out "" when none is kept (yet). Any thread. */
bool load_first_error_copy(struct load_first_error *error, char *out, size_t size);

#endif
