/*
 * stop_signal.h - how a console program learns that the user wants it to stop: SIGINT/SIGTERM on POSIX,
 * Ctrl+C, Ctrl+Break and console close on Windows.
 */
#ifndef OVL_STOP_SIGNAL_H
#define OVL_STOP_SIGNAL_H

/* Take over the stop signals. Call before starting any thread. Returns 0 or -1. */
int stop_signal_install(void);
/* Wait up to `seconds` for a stop request. Returns 0 on timeout, or an identifier of what asked to stop. */
int stop_signal_wait(double seconds);
/* The program has finished its drain and is about to exit. On Windows a console close (or logoff, shutdown) ends the
 * process as soon as the console handler returns, so the handler waits for this call rather than a fixed time;
 * elsewhere it does nothing. */
void stop_signal_done(void);
/* "Interrupt", "Terminated", "Ctrl+C", ... */
const char *stop_signal_name(int which);

#endif
