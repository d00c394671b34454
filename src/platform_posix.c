/*
 * platform_posix.c - platform.h for Linux and other POSIX systems.
 */
#include "platform.h"

int ovl__net_init(void)
{
    return 0;
}

void ovl__net_cleanup(void)
{
}

ovl__socket ovl__socket_open(int family)
{
    return socket(family, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
}

int ovl__cpu_count(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus > 0 ? (int)cpus : 1;
}

int ovl__is_reset_error(int err)
{
    return err == -ECONNRESET || err == -EPIPE || err == -ECONNABORTED;
}

int ovl__set_int_option(ovl__socket socket, int level, int name, int value)
{
    return setsockopt(socket, level, name, &value, sizeof value);
}
