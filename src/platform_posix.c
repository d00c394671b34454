/*
 * platform_posix.c - platform.h for Linux and other POSIX systems.
 */
#include "platform.h"

#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#ifdef __linux__
#include <sys/eventfd.h>
#endif
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

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
#ifdef CPU_COUNT
    /* The CPUs this process may run on: taskset or a cpuset (a container's too), not the whole machine. A CPU quota
     * (cgroup cpu.max, docker --cpus) is not an affinity and is not seen here. */
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof allowed, &allowed) == 0 && CPU_COUNT(&allowed) > 0)
        return CPU_COUNT(&allowed);
#endif
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus > 0 ? (int)cpus : 1;
}

void ovl__descriptor_table_reserve(unsigned long count)
{
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < count)
        count = (unsigned long)limit.rlim_cur;
    if (count < 2 || count > INT_MAX)
        return;
    /* The table grows to cover the highest descriptor asked for: a duplicate there, closed at once. Any descriptor
     * will do as the source: an eventfd needs no address family or file a sandbox may forbid. */
#ifdef __linux__
    int source = eventfd(0, EFD_CLOEXEC);
#else
    int source = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
#endif
    if (source < 0)
        return;
    int high = fcntl(source, F_DUPFD_CLOEXEC, (int)(count - 1));
    if (high >= 0)
        close(high);
    close(source);
}

int ovl__is_reset_error(int err)
{
    return err == -ECONNRESET || err == -EPIPE || err == -ECONNABORTED;
}

void ovl__memory_release(void *start, size_t length)
{
    madvise(start, length, MADV_DONTNEED);
}

uint64_t ovl__socket_unread(ovl__socket socket)
{
    int unread = 0;
    return ioctl(socket, FIONREAD, &unread) == 0 && unread > 0 ? (uint64_t)unread : 0;
}

int ovl__is_timeout_error(int err)
{
    return err == -ETIMEDOUT;
}

int ovl__socket_keepalive(ovl__socket socket, uint32_t idle_ms)
{
    int idle = (int)((idle_ms + 999) / 1000), interval = idle / 6 > 1 ? idle / 6 : 1;
    if (ovl__set_int_option(socket, SOL_SOCKET, SO_KEEPALIVE, 1) < 0)
        return -errno;
#ifdef TCP_KEEPIDLE
    if (ovl__set_int_option(socket, IPPROTO_TCP, TCP_KEEPIDLE, idle) < 0 ||
        ovl__set_int_option(socket, IPPROTO_TCP, TCP_KEEPINTVL, interval) < 0 ||
        ovl__set_int_option(socket, IPPROTO_TCP, TCP_KEEPCNT, 3) < 0)
        return -errno;
#endif
    return 0;
}

int ovl__set_int_option(ovl__socket socket, int level, int name, int value)
{
    return setsockopt(socket, level, name, &value, sizeof value);
}
