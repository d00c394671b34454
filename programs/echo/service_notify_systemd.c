/*
 * service_notify_systemd.c - readiness and stop notices for systemd (Type=notify), sent with sd_notify from
 * libsystemd. sd_notify does nothing when NOTIFY_SOCKET is unset (started by hand), so the same binary runs as a
 * service and in a terminal. Only the main thread calls these.
 */
#include "service_notify.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <systemd/sd-daemon.h>

/* Headroom over the drain for the summary, freeing the engine and exiting. */
#define STOP_MARGIN_SECONDS 5.0

/* A failed notice is reported, not fatal: the server itself works, but systemd will not see it ready (and stops
 * it after TimeoutStartSec), so the journal must say why. One message per kind of notice is enough. */
static void report_failure(int rc, const char *what, int *reported)
{
    if (rc >= 0 || *reported)
        return;
    *reported = 1;
    char text[128];
    /* GNU strerror_r may return a static string instead of filling the buffer. */
    const char *reason = strerror_r(-rc, text, sizeof text);
    fprintf(stderr, "overlap-echo: sd_notify %s: %s (errno %d)\n", what, reason, -rc);
}

void service_notify_ready(const char *status)
{
    static int reported;
    report_failure(sd_notifyf(0, "READY=1\nSTATUS=%s", status), "READY=1", &reported);
}

void service_notify_status(const char *status)
{
    static int reported;
    report_failure(sd_notifyf(0, "STATUS=%s", status), "STATUS", &reported);
}

void service_notify_stopping(const char *status, double drain_seconds, ovl_engine *engine)
{
    (void)engine; /* systemd judges a stop by its timeout alone */
    static int reported;
    /* EXTEND_TIMEOUT_USEC keeps systemd from killing a drain longer than the unit's TimeoutStopSec. */
    uint64_t extend_usec = (uint64_t)((drain_seconds + STOP_MARGIN_SECONDS) * 1e6);
    report_failure(sd_notifyf(0, "STOPPING=1\nEXTEND_TIMEOUT_USEC=%llu\nSTATUS=%s", (unsigned long long)extend_usec,
                              status),
                   "STOPPING=1", &reported);
}

int service_listen_fds(void)
{
    int count = sd_listen_fds(1);
    if (count < 0) {
        char text[128];
        fprintf(stderr, "overlap-echo: sd_listen_fds: %s (errno %d)\n", strerror_r(-count, text, sizeof text), -count);
        return 0;
    }
    return count;
}
