/*
 * stop_signal_win.c - Ctrl+C, Ctrl+Break and console close through SetConsoleCtrlHandler. The handler runs on a
 * thread the system creates; it only records the event and signals a Win32 event the main thread waits on.
 */
#include "stop_signal.h"

#define WIN32_LEAN_AND_MEAN
#include <windows.h>

static HANDLE stop_event;
static HANDLE done_event; /* set by stop_signal_done: the drain is over */
static volatile LONG stop_which;

/* Longer than Windows itself waits for a handler (5 s for a console close, the system's timeout at logoff and
 * shutdown), so it is the system that decides, never this bound; it only keeps a program that never calls
 * stop_signal_done from holding the handler thread for ever. */
#define DONE_WAIT_MS 60000

static BOOL WINAPI on_console_event(DWORD type)
{
    switch (type) {
    case CTRL_C_EVENT:
    case CTRL_BREAK_EVENT:
    case CTRL_CLOSE_EVENT:
    case CTRL_SHUTDOWN_EVENT:
        InterlockedExchange(&stop_which, (LONG)type + 1);
        SetEvent(stop_event);
        /* For console close and shutdown the process ends when this returns: wait for the main thread's drain,
         * and no longer than it takes (the process may also end first, when main returns). */
        if (type == CTRL_CLOSE_EVENT || type == CTRL_SHUTDOWN_EVENT)
            WaitForSingleObject(done_event, DONE_WAIT_MS);
        return TRUE;
    default:
        return FALSE;
    }
}

int stop_signal_install(void)
{
    stop_event = CreateEventW(NULL, TRUE, FALSE, NULL);
    done_event = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (!stop_event || !done_event || !SetConsoleCtrlHandler(on_console_event, TRUE))
        return -1;
    return 0;
}

void stop_signal_done(void)
{
    if (done_event)
        SetEvent(done_event);
}

int stop_signal_wait(double seconds)
{
    DWORD ms = seconds <= 0 ? 0 : seconds > 86400.0 ? 86400000u : (DWORD)(seconds * 1000.0);
    if (WaitForSingleObject(stop_event, ms) == WAIT_OBJECT_0)
        return (int)InterlockedCompareExchange(&stop_which, 0, 0);
    return 0;
}

const char *stop_signal_name(int which)
{
    switch (which - 1) {
    case CTRL_C_EVENT: return "Ctrl+C";
    case CTRL_BREAK_EVENT: return "Ctrl+Break";
    case CTRL_CLOSE_EVENT: return "console closed";
    case CTRL_SHUTDOWN_EVENT: return "system shutdown";
    default: return "stop requested";
    }
}
