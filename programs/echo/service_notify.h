/*
 * service_notify.h - tell the service manager how overlap-echo is doing: systemd through sd_notify
 * (service_notify_systemd.c, when built with libsystemd), the Windows Service Control Manager through
 * SetServiceStatus (service_win.c, when started with --service). Where neither applies the calls do nothing: a
 * build without libsystemd compiles them away, and outside a service they return at once.
 */
#ifndef OVL_SERVICE_NOTIFY_H
#define OVL_SERVICE_NOTIFY_H

#include "overlap.h"

#if defined(OVL_HAVE_SYSTEMD)
/* systemd socket activation: how many listening sockets it passed (LISTEN_FDS for this process), numbered from
 * SERVICE_LISTEN_FDS_START; 0 when started otherwise. The environment variables are unset afterwards. */
int service_listen_fds(void);
#elif defined(_WIN32)
static inline int service_listen_fds(void) { return 0; }
#endif
#define SERVICE_LISTEN_FDS_START 3

#if defined(OVL_HAVE_SYSTEMD) || defined(_WIN32)
/* Every listener is up and the workers run: systemd READY=1, Windows SERVICE_RUNNING. `status` is one line
 * ("listening on 127.0.0.1:27015"). */
void service_notify_ready(const char *status);
/* A line for `systemctl status` (STATUS=); the SCM has no such field. */
void service_notify_status(const char *status);
/* The graceful drain of `engine` starts and takes at most `drain_seconds`: systemd STOPPING=1 (with the stop timeout
 * extended to cover the drain), Windows SERVICE_STOP_PENDING with a wait hint and a checkpoint that advances while
 * the drain makes progress (ovl_engine_stats of `engine`: connections closing, bytes echoed). */
void service_notify_stopping(const char *status, double drain_seconds, ovl_engine *engine);
#else
/* No service manager here: it passes no sockets. */
static inline int service_listen_fds(void) { return 0; }
static inline void service_notify_ready(const char *status) { (void)status; }
static inline void service_notify_status(const char *status) { (void)status; }
static inline void service_notify_stopping(const char *status, double drain_seconds, ovl_engine *engine)
{
    (void)status;
    (void)drain_seconds;
    (void)engine;
}
#endif

#if defined(_WIN32)
/* The drain is over (ovl_engine_stop returned): stop watching the engine, before it is destroyed. */
void service_notify_drained(void);
/* A problem line (without the newline) that overlap-echo printed; kept until the service runs, and reported to the
 * Event Log if it does not get there. Any thread. */
void service_notify_problem(const char *line);
#else
static inline void service_notify_drained(void) {}
/* systemd's journal has stderr already. */
static inline void service_notify_problem(const char *line) { (void)line; }
#endif

#endif
