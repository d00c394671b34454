/*
 * service_win.h - overlap-echo as a Windows service: "overlap-echo --service" runs under the Service Control
 * Manager (stop and shutdown controls start the same graceful drain as Ctrl+C), "overlap-echo install [options]"
 * registers it, "overlap-echo uninstall" stops and removes it. Windows only; Linux uses
 * contrib/overlap-echo.service.
 */
#ifndef OVL_SERVICE_WIN_H
#define OVL_SERVICE_WIN_H

#include <stdio.h>

struct echo_options;

/* The server of echo_main.c: runs until wait_stop returns non-zero (the stop request; stop_name describes it),
 * drains, and returns the exit code (0 after a graceful stop). */
typedef int (*echo_serve_fn)(const struct echo_options *options, int (*wait_stop)(double seconds),
                             const char *(*stop_name)(int which));

/* Hand the main thread to the SCM dispatcher and run `serve` as the service; its own errors go to `problems` (the
 * --log-file, or stderr). Returns the exit code: serve's, or 1 when the process was not started by the SCM
 * (StartServiceCtrlDispatcher fails with 1063). */
int service_win_run(const struct echo_options *options, echo_serve_fn serve, FILE *problems);
/* The process was started by the SCM (argv[1] is --service) but fails before serving: bad options (exit_code 2), a
 * --log-file that does not open (1). Connects to the SCM anyway, writes `reason` to the Event Log and reports
 * SERVICE_STOPPED with exit_code, so that "sc query" and the failure actions see the failure. Returns exit_code. */
int service_win_fail(int exit_code, const char *reason);
/* CreateService options->service_name: this executable, --service and the server options of argv (everything after
 * "install" except --start and --name), under the virtual account NT SERVICE\<name>. Returns 0, or 1 with the
 * error printed. */
int service_win_install(int argc, char **argv, const struct echo_options *options);
/* Stop the service `name` if it runs (waiting for its drain), then DeleteService. Returns 0, or 1 with the error
 * printed. */
int service_win_uninstall(const char *name);

#endif
