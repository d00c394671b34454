/*
 * platform.h - the few differences between POSIX and Windows sockets that the shared code meets: the socket type,
 * how it is closed, how an error is read, and one-time network set-up. Backends use the native APIs directly.
 */
#ifndef OVL_PLATFORM_H
#define OVL_PLATFORM_H

#ifdef _WIN32
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>

#include <errno.h>
#include <stdint.h>
/* The C runtime has no ESHUTDOWN; Winsock's code carries the same meaning (and FormatMessage text). */
#ifndef ESHUTDOWN
#define ESHUTDOWN WSAESHUTDOWN
#endif

typedef SOCKET ovl__socket;
#define OVL__NO_SOCKET INVALID_SOCKET
#define OVL__SHUT_WR SD_SEND
#define ovl__socket_close closesocket
/* Winsock reports errors through WSAGetLastError, never errno. */
static inline int ovl__socket_error(void)
{
    return -WSAGetLastError();
}
#else
#include <errno.h>
#include <stdint.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

typedef int ovl__socket;
#define OVL__NO_SOCKET (-1)
#define OVL__SHUT_WR SHUT_WR
#define ovl__socket_close close
static inline int ovl__socket_error(void)
{
    return -errno;
}
#endif

/* WSAStartup on Windows (reference counted by Winsock); nothing elsewhere. Returns 0 or a negative error. */
int ovl__net_init(void);
void ovl__net_cleanup(void);
/* A new TCP socket for `family` (overlapped and not inheritable on Windows, close-on-exec on POSIX). */
ovl__socket ovl__socket_open(int family);
/* CPUs this process may run on (its affinity), at least 1. */
int ovl__cpu_count(void);
/* Is this error a peer reset (ECONNRESET, EPIPE, WSAECONNRESET, WSAECONNABORTED, ...)? */
int ovl__is_reset_error(int err);
/* Memory pages: a range of whole pages whose content is no longer needed goes back to the system (reads after it
 * see zeroes, or the old bytes on Windows). */
#define OVL__PAGE 4096u
void ovl__memory_release(void *start, size_t length);
/* Bytes received by the kernel and not yet read (FIONREAD), 0 if it cannot tell. */
uint64_t ovl__socket_unread(ovl__socket socket);
/* Is this error a timeout (the peer stopped answering: keepalive or retransmissions)? */
int ovl__is_timeout_error(int err);
/* TCP keepalive: the first probe after idle_ms without traffic, then every idle_ms / 6 (at least 1 s); 3 probes
 * (Windows: its fixed 10). Returns 0 or a negative error. */
int ovl__socket_keepalive(ovl__socket socket, uint32_t idle_ms);
#ifdef _WIN32
/* A Win32 error code (GetLastError) as liboverlap reports errors: the C runtime's errno for the few that mean the
 * same (ERROR_NOT_ENOUGH_MEMORY is -ENOMEM), Winsock's code for network ones (ERROR_NETNAME_DELETED is
 * -WSAECONNRESET), else the code itself, negated. Small Win32 codes must not reach ovl_strerror unmapped: below 200
 * it reads a C runtime errno (8 would read "Exec format error"). */
int ovl__win_error(unsigned long code);
#endif
/* Grow the process's descriptor table now to hold `count` descriptors (at most the RLIMIT_NOFILE soft limit). Linux
 * grows the table as descriptors are opened, doubling it, and in a process with more than one thread each growth
 * waits for an RCU grace period (synchronize_rcu) in the thread that opened the descriptor: a worker accepting
 * blocked 4-14 ms at a time, so the first messages of 1,000 connections opened at once waited 15-30 ms where a
 * single-threaded server answered in 5. The table never shrinks. Nothing to do on Windows. */
void ovl__descriptor_table_reserve(unsigned long count);
/* setsockopt for an int option, with the cast Winsock needs. */
int ovl__set_int_option(ovl__socket socket, int level, int name, int value);

#endif
