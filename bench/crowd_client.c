/*
 * A crowd arriving at once: opens N connections to an echo server as fast as non-blocking connects go, sends one
 * 64-byte message on each as soon as it is connected, and times each message's echo (verified byte for byte). It
 * measures what a server does while a crowd is still arriving - accepting, setting up, answering the first
 * message - which a steady load never shows: a fresh server pays it once, a warm one may not at all.
 *
 *   crowd-client PORT [CONNECTIONS] [HOST]     (CONNECTIONS 1-60000, default 1000; HOST default 127.0.0.1)
 *
 * Prints one line: the first echo's latency (p50, p99, max, ms), how long the connects took, and when the sends
 * went out. Exit status 0 when every echo came back intact within 10 s, 1 otherwise.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { SIZE = 64, MAX_CONNECTIONS = 60000, DEADLINE_MS = 10000 };

struct conn {
    int fd;
    double sent_ms;   /* 0 until the message went out */
    double echo_ms;   /* its echo's latency, 0 until complete */
    size_t got;
    unsigned char in[SIZE];
};

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Connection I's message: its index and a pattern, so an echo delivered to the wrong connection is caught. */
static void message(unsigned i, unsigned char *out)
{
    for (unsigned k = 0; k < SIZE; k++)
        out[k] = (unsigned char)((i * 131u + k * 7u) & 0xff);
}

static long number(const char *text, const char *what, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (end == text || *end || errno || v < lo || v > hi || text[0] < '0' || text[0] > '9') {
        fprintf(stderr, "crowd-client: %s must be %ld to %ld, not '%s'\n", what, lo, hi, text);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: crowd-client PORT [CONNECTIONS] [HOST]\n");
        return 2;
    }
    unsigned port = (unsigned)number(argv[1], "PORT", 1, 65535);
    unsigned n = argc > 2 ? (unsigned)number(argv[2], "CONNECTIONS", 1, MAX_CONNECTIONS) : 1000;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, argc > 3 ? argv[3] : "127.0.0.1", &addr.sin_addr) != 1) {
        fprintf(stderr, "crowd-client: HOST must be an IPv4 address, not '%s'\n", argv[3]);
        return 2;
    }
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < n + 16) {
        limit.rlim_cur = limit.rlim_max == RLIM_INFINITY || limit.rlim_max >= n + 16 ? n + 16 : limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
        if (limit.rlim_cur < n + 16) {
            fprintf(stderr, "crowd-client: RLIMIT_NOFILE allows %llu descriptors, %u connections need %u\n",
                    (unsigned long long)limit.rlim_cur, n, n + 16);
            return 2;
        }
    }
    struct conn *conns = calloc(n, sizeof *conns);
    double *lat = calloc(n, sizeof *lat), *sent_at = calloc(n, sizeof *sent_at);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (!conns || !lat || !sent_at || ep < 0) {
        fprintf(stderr, "crowd-client: out of memory or epoll_create1: %s\n", strerror(errno));
        return 1;
    }
    int one = 1;
    unsigned done = 0, sent = 0, echoed = 0, broken = 0; /* ended (either way), sent, echoed, echoed wrong */
    double start = now_ms();
    for (unsigned i = 0; i < n; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0 || setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0 ||
            (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS)) {
            fprintf(stderr, "crowd-client: connection %u: %s\n", i, strerror(errno));
            return 1;
        }
        conns[i].fd = fd;
        struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.u32 = i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
    double connected_ms = now_ms() - start;
    struct epoll_event events[256];
    while (done < n && now_ms() - start < DEADLINE_MS) {
        int k = epoll_wait(ep, events, 256, 100);
        for (int j = 0; j < k; j++) {
            struct conn *c = &conns[events[j].data.u32];
            unsigned i = events[j].data.u32;
            if ((events[j].events & (EPOLLERR | EPOLLHUP)) && c->echo_ms == 0) {
                fprintf(stderr, "crowd-client: connection %u failed before its echo\n", i);
                done++;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                continue;
            }
            if ((events[j].events & EPOLLOUT) && c->sent_ms == 0) {
                unsigned char out[SIZE];
                message(i, out);
                c->sent_ms = now_ms();
                if (send(c->fd, out, SIZE, MSG_NOSIGNAL) != SIZE) { /* 64 B fit a fresh socket's buffer */
                    fprintf(stderr, "crowd-client: connection %u: send: %s\n", i, strerror(errno));
                    return 1;
                }
                sent_at[sent++] = c->sent_ms - start;
                struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
            }
            if (events[j].events & EPOLLIN) {
                ssize_t m = recv(c->fd, c->in + c->got, SIZE - c->got, 0);
                if (m <= 0) {
                    fprintf(stderr, "crowd-client: connection %u: %s before its echo\n", i,
                            m == 0 ? "closed" : strerror(errno));
                    done++;
                    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                    continue;
                }
                c->got += (size_t)m;
                if (c->got == SIZE) {
                    c->echo_ms = now_ms() - c->sent_ms;
                    unsigned char want[SIZE];
                    message(i, want);
                    if (memcmp(want, c->in, SIZE) != 0) {
                        fprintf(stderr, "crowd-client: connection %u: the echo differs from what was sent\n", i);
                        broken++;
                    }
                    lat[echoed++] = c->echo_ms;
                    done++;
                    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                }
            }
        }
    }
    double total_ms = now_ms() - start;
    qsort(lat, echoed, sizeof *lat, by_value);
    qsort(sent_at, sent, sizeof *sent_at, by_value);
    if (echoed > 0)
        printf("%u connections: first echo p50 %.2f ms, p99 %.2f ms, max %.2f ms; connects %.1f ms, sends at "
               "%.1f-%.1f ms, all echoed by %.1f ms\n", n, lat[echoed / 2], lat[(size_t)echoed * 99 / 100],
               lat[echoed - 1], connected_ms, sent_at[0], sent_at[sent - 1], total_ms);
    if (echoed < n || broken)
        fprintf(stderr, "crowd-client: %u of %u echoes came back intact within %d ms\n", echoed - broken, n,
                DEADLINE_MS);
    for (unsigned i = 0; i < n; i++)
        close(conns[i].fd);
    return echoed == n && !broken ? 0 : 1;
}
