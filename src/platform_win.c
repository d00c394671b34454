/*
 * platform_win.c - platform.h for Windows (Winsock 2.2).
 */
#include "platform.h"

#include <errno.h>

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
    DWORD cpus = GetActiveProcessorCount(ALL_PROCESSOR_GROUPS);
    return cpus > 0 ? (int)cpus : 1;
}

int ovl__is_reset_error(int err)
{
    /* ERROR_NETNAME_DELETED is how a completion port reports a connection the peer reset. */
    return err == -WSAECONNRESET || err == -WSAECONNABORTED || err == -WSAENETRESET || err == -WSAESHUTDOWN ||
           err == -ERROR_NETNAME_DELETED || err == -ERROR_CONNECTION_ABORTED || err == -EPIPE;
}

int ovl__set_int_option(ovl__socket socket, int level, int name, int value)
{
    return setsockopt(socket, level, name, (const char *)&value, sizeof value);
}
