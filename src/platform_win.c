/*
 * platform_win.c - platform.h for Windows (Winsock 2.2).
 */
#include "platform.h"

#include <errno.h>
#include <mstcpip.h>

int ovl__net_init(void)
{
    WSADATA data;
    int rc = WSAStartup(MAKEWORD(2, 2), &data);
    return rc == 0 ? 0 : -rc;
}

void ovl__net_cleanup(void)
{
    WSACleanup();
}

ovl__socket ovl__socket_open(int family)
{
    /* Overlapped, so the completion port can drive it; not inherited by child processes. */
    return WSASocketW(family, SOCK_STREAM, IPPROTO_TCP, NULL, 0, WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
}

int ovl__cpu_count(void)
{
    /* The CPUs this process may run on (a job object or `start /affinity` narrows them); the machine's when the
     * process spans processor groups, where the mask says nothing about the other groups. */
    DWORD_PTR process_mask, system_mask;
    USHORT groups[4];
    USHORT group_count = 4;
    if (GetProcessAffinityMask(GetCurrentProcess(), &process_mask, &system_mask) && process_mask &&
        GetProcessGroupAffinity(GetCurrentProcess(), &group_count, groups) && group_count == 1) {
        int cpus = 0;
        for (; process_mask; process_mask &= process_mask - 1)
            cpus++;
        return cpus;
    }
    DWORD cpus = GetActiveProcessorCount(ALL_PROCESSOR_GROUPS);
    return cpus > 0 ? (int)cpus : 1;
}

int ovl__is_reset_error(int err)
{
    /* ERROR_NETNAME_DELETED is how a completion port reports a connection the peer reset. */
    return err == -WSAECONNRESET || err == -WSAECONNABORTED || err == -WSAENETRESET || err == -WSAESHUTDOWN ||
           err == -ERROR_NETNAME_DELETED || err == -ERROR_CONNECTION_ABORTED || err == -EPIPE;
}

void ovl__descriptor_table_reserve(unsigned long count)
{
    (void)count; /* handles are not a table that grows under a lock */
}

void ovl__memory_release(void *start, size_t length)
{
    /* The content may be discarded instead of paged out, and the pages leave the working set (VirtualUnlock on
     * pages that are not locked does that and reports ERROR_NOT_LOCKED). */
    VirtualAlloc(start, length, MEM_RESET, PAGE_READWRITE);
    VirtualUnlock(start, length);
}

uint64_t ovl__socket_unread(ovl__socket socket)
{
    u_long unread = 0;
    return ioctlsocket(socket, FIONREAD, &unread) == 0 ? (uint64_t)unread : 0;
}

int ovl__is_timeout_error(int err)
{
    /* ERROR_SEM_TIMEOUT is how a completion port reports a connection whose keepalive probes went unanswered. */
    return err == -WSAETIMEDOUT || err == -ERROR_SEM_TIMEOUT || err == -ETIMEDOUT;
}

int ovl__socket_keepalive(ovl__socket socket, uint32_t idle_ms)
{
    /* SIO_KEEPALIVE_VALS works on every Windows version; the probe count is fixed by the system (10). */
    struct tcp_keepalive values = {.onoff = 1, .keepalivetime = idle_ms,
                                   .keepaliveinterval = idle_ms / 6 > 1000 ? idle_ms / 6 : 1000};
    DWORD returned = 0;
    if (WSAIoctl(socket, SIO_KEEPALIVE_VALS, &values, sizeof values, NULL, 0, &returned, NULL, NULL) != 0)
        return ovl__socket_error();
    return 0;
}

int ovl__set_int_option(ovl__socket socket, int level, int name, int value)
{
    return setsockopt(socket, level, name, (const char *)&value, sizeof value);
}

int ovl__win_error(unsigned long code)
{
    switch (code) {
    case ERROR_NOT_ENOUGH_MEMORY:
    case ERROR_OUTOFMEMORY:
        return -ENOMEM;
    case ERROR_INVALID_PARAMETER:
    case ERROR_INVALID_HANDLE:
        return -EINVAL;
    case ERROR_ACCESS_DENIED:
        return -EACCES;
    case ERROR_TOO_MANY_OPEN_FILES:
        return -EMFILE;
    case ERROR_NETNAME_DELETED:
        return -WSAECONNRESET;
    case ERROR_SEM_TIMEOUT:
        return -WSAETIMEDOUT;
    case ERROR_CONNECTION_REFUSED:
    case ERROR_PORT_UNREACHABLE:
        return -WSAECONNREFUSED;
    case ERROR_CONNECTION_ABORTED:
        return -WSAECONNABORTED;
    case ERROR_HOST_UNREACHABLE:
        return -WSAEHOSTUNREACH;
    case ERROR_NETWORK_UNREACHABLE:
        return -WSAENETUNREACH;
    default:
        return code < 200 ? -(int)(code + 0x20000000u) : -(int)code; /* customer bit: never a C runtime errno */
    }
}
