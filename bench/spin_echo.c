/*
 * A busy-polling echo server, the latency floor for bench/compare's workload d (one connection, 64 B ping-pong):
 * a thread per connection spins on a non-blocking recv and answers each read with blocking sends. It never
 * sleeps, so no wake-up (scheduler, IPI) lies on a message's path, and it makes the fewest system calls a
 * message can take through the kernel's sockets: one recv that finds the bytes, one send. A server built on those
 * sockets can hardly answer a lone peer sooner; what separates another server's p50 from this one's is mostly its
 * own path, what separates this one's from the client's round trip is the kernel's. It is a floor within the
 * machine's noise, not a proof: its spin competes with the client for the two CPUs like any server's.
 *
 * Each connection holds a CPU while it is open, so it serves at most MAX_CONNS at a time and closes any
 * connection beyond them at once: it is a referee for one or two connections, not a server.
 *   spin_echo PORT [HOST]     (HOST default 127.0.0.1)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE (64 * 1024)
#define MAX_CONNS 4

static atomic_int live; /* connections being served */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Sends all of BUF[0, LEN) on the blocking socket FD; false when the peer is gone. */
static int send_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return 0;
        buf += n;
        len -= (size_t)n;
    }
    return 1;
}

static void *serve(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char *buf = malloc(BUF_SIZE);
    while (buf) {
        ssize_t n = recv(fd, buf, BUF_SIZE, MSG_DONTWAIT);
        if (n > 0) {
            if (!send_all(fd, buf, (size_t)n))
                break;
        } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            break;
        } else {
            cpu_relax();
        }
    }
    free(buf);
    close(fd);
    atomic_fetch_sub(&live, 1);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: spin_echo PORT [HOST]\n");
        return 2;
    }
    char *end;
    long port = strtol(argv[1], &end, 10);
    if (end == argv[1] || *end || argv[1][0] < '0' || argv[1][0] > '9' || port < 1 || port > 65535) {
        fprintf(stderr, "spin_echo: PORT must be 1 to 65535, not '%s'\n", argv[1]);
        return 2;
    }
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, argc > 2 ? argv[2] : "127.0.0.1", &addr.sin_addr) != 1) {
        fprintf(stderr, "spin_echo: HOST must be an IPv4 address, not %s\n", argv[2]);
        return 2;
    }
    int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(lfd, 128) < 0) {
        fprintf(stderr, "spin_echo: listen on %s:%ld: %s\n", argc > 2 ? argv[2] : "127.0.0.1", port, strerror(errno));
        return 1;
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE)
                sleep(1);
            continue;
        }
        if (atomic_fetch_add(&live, 1) >= MAX_CONNS) {
            atomic_fetch_sub(&live, 1);
            close(fd);
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        pthread_t thread;
        if (pthread_create(&thread, &attr, serve, (void *)(intptr_t)fd) != 0) {
            atomic_fetch_sub(&live, 1);
            close(fd);
        }
    }
}
