/*
 * stop_signal_posix.c - SIGINT/SIGTERM taken synchronously with sigtimedwait, so no handler runs in a random
 * thread and nothing async-signal-unsafe is ever called from one.
 */
#include "stop_signal.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>

static sigset_t stop_signals;

int stop_signal_install(void)
{
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    signal(SIGPIPE, SIG_IGN);
    return pthread_sigmask(SIG_BLOCK, &stop_signals, NULL) == 0 ? 0 : -1;
}

void stop_signal_done(void)
{
    /* The process ends when main returns; nothing waits for it. */
}

int stop_signal_wait(double seconds)
{
    if (seconds < 0)
        seconds = 0;
    struct timespec timeout = {.tv_sec = (time_t)seconds,
                               .tv_nsec = (long)((seconds - (double)(time_t)seconds) * 1e9)};
    int rc = sigtimedwait(&stop_signals, NULL, &timeout);
    return rc > 0 ? rc : 0;
}

const char *stop_signal_name(int which)
{
    return strsignal(which);
}
