/*
 * support.h - helpers shared by the test programs: blocking loopback client sockets with timeouts, exact sends and
 * receives, a position-dependent byte pattern, and child processes whose stdout/stderr are captured.
 *
 * Everything returns values (0, a count, or -errno) instead of asserting, so each test decides what a failure means
 * and says so in its own message. Every wait here is bounded: a broken server makes a test fail, never hang.
 */
#ifndef OVL_TEST_SUPPORT_H
#define OVL_TEST_SUPPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- sockets ---- */

/* Connect a blocking TCP socket to host:port (numeric host: "127.0.0.1", "::1"), with SO_RCVTIMEO/SO_SNDTIMEO set
 * to timeout_ms. Returns the fd or -errno. */
int sup_connect(const char *host, int port, int timeout_ms);
/* sup_connect with SO_RCVBUF set to rcvbuf bytes (0: the kernel's default) before it connects: a client whose
 * small receive window makes the server's sends wait. */
int sup_connect_rcvbuf(const char *host, int port, int rcvbuf, int timeout_ms);
/* Set SO_RCVTIMEO and SO_SNDTIMEO. Returns 0 or -errno. */
int sup_set_timeouts(int fd, int timeout_ms);
/* A plain TCP socket bound to host:port (port 0 = any free one), listening if `listen_too`. A bound socket that
 * does not listen refuses connections, which makes a port that is sure to answer ECONNREFUSED. Returns the fd and
 * the bound port in *port_out, or -errno. */
int sup_tcp_bind(const char *host, int port, bool listen_too, int *port_out);
/* 0 when this host can bind and connect on ::1, else -errno (IPv6 disabled in a container, for example). */
int sup_ipv6_loopback(void);
/* Send every byte (MSG_NOSIGNAL). Returns 0, or -errno (-EAGAIN: the send timeout passed). */
int sup_send_all(int fd, const void *data, size_t len);
/* Receive exactly len bytes. Returns len, a smaller count when the peer closed first, or -errno (-EAGAIN: the
 * receive timeout passed); *got (if not NULL) is always the count received. */
ssize_t sup_recv_exact(int fd, void *buf, size_t len, size_t *got);
/* Receive until the peer closes. Returns the count (at most cap), -EMSGSIZE if more than cap bytes came, or -errno;
 * *got (if not NULL) is always the count stored in buf. */
ssize_t sup_recv_to_eof(int fd, void *buf, size_t cap, size_t *got);
/* One request/response on an open connection: len bytes of pattern `seed` from `offset`, sent, then read back and
 * checked. Returns 0, -errno, -ECONNABORTED (EOF before the whole echo) or -EPROTO (the echo differs). */
int sup_exchange(int fd, uint32_t seed, uint64_t offset, size_t len);
/* Wait up to ms for the peer to end the connection: 0 (EOF), -ECONNRESET, -ETIMEDOUT, or -EPROTO when data came
 * instead. *took_ms (if not NULL) is the time waited. */
int sup_wait_closed(int fd, int ms, int64_t *took_ms);
/* Close with SO_LINGER {1, 0}: the kernel sends RST instead of FIN. */
void sup_close_reset(int fd);
/* Sockets whose local port is `port` in state TIME_WAIT (06 in /proc/net/tcp), or -errno. */
int sup_count_time_wait(int port);
/* Raise the RLIMIT_NOFILE soft limit to the hard limit; returns the new soft limit. */
long sup_raise_nofile(void);
/* Milliseconds on CLOCK_MONOTONIC. */
int64_t sup_now_ms(void);
void sup_sleep_ms(int ms);

/* A client that sends and never reads, connected to 127.0.0.1:port, with small socket buffers (so that what the
 * kernel holds for it stays small and many of them fit on a test machine). Returns the fd or -errno. */
int sup_non_reader_connect(int port);
/* Send from every socket (without blocking) until quiet_ms pass without one byte taken, or max_ms in all, and at
 * most cap bytes on each (0 = no cap: the kernel's buffers on both sides then take megabytes per socket). Returns
 * the bytes sent. */
uint64_t sup_flood_until_stalled(const int *fds, int count, uint64_t cap, int quiet_ms, int max_ms);

/* ---- pattern ---- */

/* Byte i of stream `seed` is a hash of (seed, offset + i): a dropped, repeated, reordered or foreign byte shows. */
void sup_pattern_fill(void *buf, size_t len, uint32_t seed, uint64_t offset);
/* Index of the first byte that differs from the pattern, or len when all match. */
size_t sup_pattern_check(const void *buf, size_t len, uint32_t seed, uint64_t offset);
uint8_t sup_pattern_byte(uint32_t seed, uint64_t position);

/* ---- child processes ---- */

typedef struct sup_proc {
    pid_t pid;          /* 0 once reaped */
    int out_fd, err_fd; /* -1 once at EOF */
    char *out, *err;    /* everything read so far, NUL-terminated */
    size_t out_len, err_len, out_cap, err_cap;
    size_t out_pos;     /* start of the first stdout line sup_proc_read_line has not returned */
    int status;         /* waitpid status, valid when exited */
    bool exited;
} sup_proc;

/* Start argv[0] (a path) with stdout and stderr piped back. The child gets SIGKILL if the test process dies, so a
 * failed test leaves nothing behind. Returns 0 or -errno. */
int sup_proc_spawn(sup_proc *proc, char *const argv[]);
/* Next complete stdout line (without '\n') into line. Returns 0, -ETIMEDOUT, or -EPIPE when stdout closed first. */
int sup_proc_read_line(sup_proc *proc, char *line, size_t cap, int timeout_ms);
/* Read stdout lines up to the first "listening on ADDRESS:PORT" (overlap-echo, overlap-proxy and their .exe print
 * one per listener) and return PORT; the line goes to `line` unless it is NULL. timeout_ms bounds the whole wait.
 * Returns -ETIMEDOUT, -EPIPE when stdout closed first (the server exited), or -EPROTO for a line without a port
 * (or one longer than cap - 1). */
int sup_proc_listening_port(sup_proc *proc, char *line, size_t cap, int timeout_ms);
/* Wait for the child to exit, collecting its output. Returns 0 (proc->status is set) or -ETIMEDOUT. */
int sup_proc_wait(sup_proc *proc, int timeout_ms);
/* Signal the child by its PID (nothing happens once it has been reaped). */
int sup_proc_kill(sup_proc *proc, int sig);
/* SIGKILL the child if it still runs, reap it, free everything. */
void sup_proc_free(sup_proc *proc);
/* SIGKILL and reap every child sup_proc_spawn started that has not been reaped yet (for a test's .fini: a failed
 * assertion leaves the test's sup_proc behind). */
void sup_proc_kill_all(void);
/* Exit code, or -1 when the child did not exit normally (or has not exited). */
int sup_proc_exit_code(const sup_proc *proc);
/* "exit 3" / "signal 9" / "running" for messages. */
const char *sup_proc_describe(const sup_proc *proc);

/* Run argv to completion (at most timeout_ms) capturing its output. Returns 0 or -errno / -ETIMEDOUT; the
 * caller frees proc. */
int sup_proc_run(sup_proc *proc, char *const argv[], int timeout_ms);

/* The newest of the JSON lines ('{' first: overlap-echo --stats-format json) the child prints within ms, into line.
 * Returns false if none came. */
bool sup_latest_stats_line(sup_proc *proc, char *line, size_t cap, int ms);
/* The first JSON line that comes within ms, however late (a busy machine may print none for a while), into line.
 * Returns false if none came. */
bool sup_wait_stats_line(sup_proc *proc, char *line, size_t cap, int ms);
/* The number after "key": in a JSON line, or -1 when the key is not there. */
long long sup_json_number(const char *line, const char *key);
/* Read JSON stats lines (every_ms apart, at most `rounds` times) until bytes_in stops growing; the last one goes to
 * line. Returns false if none came. */
bool sup_settled_stats_line(sup_proc *proc, char *line, size_t cap, int every_ms, int rounds);
/* sup_json_number of the newest JSON line within ms, or -1. */
long long sup_latest_stat(sup_proc *proc, const char *key, int ms);

/* The number after "FIELD:" in /proc/PID/status, or -errno (-ENOENT when the field is not there). */
long sup_status_number(pid_t pid, const char *field);
/* VmRSS of a process in KiB (/proc/PID/status), or -errno. */
long sup_rss_kib(pid_t pid);
/* `root` itself, or the first of its descendants, whose /proc/PID/comm starts with `name` (comm holds at most 15
 * characters: "overlap-echo.ex"). Under Wine the spawned `wine` script execs the loader, which becomes the
 * Windows program's process, but a wrapper may start it as a child instead: this finds it either way. Returns the
 * PID or -ESRCH. */
pid_t sup_find_process(pid_t root, const char *name);

#endif
