/*
 * referee-client: echo clients shaped unlike overlap-load, built on nothing of ours (plain sockets), so that a
 * server is not measured only by a client tuned alongside it. Two models, each verifying every echo byte:
 *
 *   epoll    T threads, each an epoll loop over its share of the connections: non-blocking sockets, one send per
 *            reply as soon as the echo of the previous message is complete (the shape of most event-loop clients)
 *   threads  one blocking thread per connection: write a message, read its echo, repeat (the shape of the most
 *            used echo benchmark)
 *
 *   referee-client --model epoll|threads --port P [--host 127.0.0.1] [--connections N] [--size B] [--threads T]
 *                  [--duration S]
 *
 * Prints one JSON line: {"model":...,"connections":N,"msgs":M,"seconds":S,"msgs_per_s":R,"errors":E}. Exit status
 * 0 when every connection opened and every echo matched. Every run stops by itself after --duration.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { MAX_CONNECTIONS = 4096, MAX_THREADS = 64, MAX_SIZE = 65536 };

static struct {
    const char *model;
    struct sockaddr_in address;
    int connections, threads;
    size_t size;
    double duration;
} opt = {.model = "epoll", .connections = 50, .threads = 2, .size = 64, .duration = 3};

static atomic_int stop_now;
static atomic_long total_msgs, total_errors;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The byte at offset i of message m: a pattern that a misplaced or repeated echo does not match. */
static char pattern(uint64_t m, size_t i)
{
    return (char)('a' + (m * 7 + i) % 26);
}

static void fill(char *buf, uint64_t m)
{
    for (size_t i = 0; i < opt.size; i++)
        buf[i] = pattern(m, i);
}

static int open_connection(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&opt.address, sizeof opt.address) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* ---- threads: one blocking connection per thread ---- */

static void *blocking_connection(void *arg)
{
    (void)arg;
    char out[MAX_SIZE], in[MAX_SIZE];
    long msgs = 0, errors = 0;
    int fd = open_connection();
    if (fd < 0) {
        atomic_fetch_add(&total_errors, 1);
        return NULL;
    }
    struct timeval timeout = {1, 0}; /* a server that stops answering cannot hold the run past its end */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    for (uint64_t m = 0; !atomic_load_explicit(&stop_now, memory_order_relaxed); m++) {
        fill(out, m);
        if (send(fd, out, opt.size, MSG_NOSIGNAL) != (ssize_t)opt.size) {
            errors++;
            break;
        }
        size_t got = 0;
        while (got < opt.size) {
            ssize_t n = recv(fd, in + got, opt.size - got, 0);
            if (n <= 0) {
                if (!(n < 0 && errno == EAGAIN && atomic_load(&stop_now)))
                    errors++;
                goto done;
            }
            got += (size_t)n;
        }
        if (memcmp(in, out, opt.size) != 0) {
            errors++;
            break;
        }
        msgs++;
    }
done:
    close(fd);
    atomic_fetch_add(&total_msgs, msgs);
    atomic_fetch_add(&total_errors, errors);
    return NULL;
}

/* ---- epoll: T event loops ---- */

struct peer {
    int fd;
    uint64_t message; /* the message whose echo is awaited */
    size_t got;       /* bytes of its echo received */
};

static void *event_loop(void *arg)
{
    int index = (int)(intptr_t)arg;
    int first = opt.connections * index / opt.threads, last = opt.connections * (index + 1) / opt.threads;
    int count = last - first;
    long msgs = 0, errors = 0;
    struct peer *peers = calloc((size_t)count, sizeof *peers);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    char out[MAX_SIZE], in[MAX_SIZE];
    if (!peers || ep < 0) {
        atomic_fetch_add(&total_errors, count);
        free(peers);
        return NULL;
    }
    int open = 0;
    for (int i = 0; i < count; i++) {
        peers[i].fd = open_connection();
        if (peers[i].fd < 0) {
            errors++;
            continue;
        }
        fcntl(peers[i].fd, F_SETFL, fcntl(peers[i].fd, F_GETFL) | O_NONBLOCK);
        struct epoll_event event = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, peers[i].fd, &event);
        fill(out, 0);
        if (send(peers[i].fd, out, opt.size, MSG_NOSIGNAL) != (ssize_t)opt.size)
            errors++;
        open++;
    }
    struct epoll_event events[64];
    while (open > 0 && !atomic_load_explicit(&stop_now, memory_order_relaxed)) {
        int n = epoll_wait(ep, events, 64, 100);
        for (int e = 0; e < n; e++) {
            struct peer *p = &peers[events[e].data.u32];
            for (;;) {
                ssize_t r = recv(p->fd, in, opt.size - p->got, 0);
                if (r < 0 && (errno == EAGAIN || errno == EINTR))
                    break;
                if (r <= 0) {
                    errors++;
                    epoll_ctl(ep, EPOLL_CTL_DEL, p->fd, NULL);
                    open--;
                    break;
                }
                for (ssize_t i = 0; i < r; i++)
                    if (in[i] != pattern(p->message, p->got + (size_t)i))
                        errors++;
                p->got += (size_t)r;
                if (p->got < opt.size)
                    continue;
                msgs++;
                p->message++;
                p->got = 0;
                fill(out, p->message);
                if (send(p->fd, out, opt.size, MSG_NOSIGNAL) != (ssize_t)opt.size)
                    errors++; /* 64 KiB at most, into an empty send buffer: a short send is a failure here */
            }
        }
    }
    for (int i = 0; i < count; i++)
        if (peers[i].fd >= 0)
            close(peers[i].fd);
    close(ep);
    free(peers);
    atomic_fetch_add(&total_msgs, msgs);
    atomic_fetch_add(&total_errors, errors);
    return NULL;
}

/* ---- options ---- */

static long number(const char *option, const char *text, long min, long max)
{
    char *end = NULL;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (!text[0] || *end || errno || value < min || value > max) {
        fprintf(stderr, "referee-client: %s: '%s' is not a number from %ld to %ld\n", option, text, min, max);
        exit(2);
    }
    return value;
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    int port = 0;
    for (int i = 1; i < argc; i++) {
        const char *name = argv[i];
        if (i + 1 >= argc) {
            fprintf(stderr, "referee-client: %s needs a value\n", name);
            return 2;
        }
        const char *value = argv[++i];
        if (!strcmp(name, "--model"))
            opt.model = value;
        else if (!strcmp(name, "--host"))
            host = value;
        else if (!strcmp(name, "--port"))
            port = (int)number(name, value, 1, 65535);
        else if (!strcmp(name, "--connections"))
            opt.connections = (int)number(name, value, 1, MAX_CONNECTIONS);
        else if (!strcmp(name, "--threads"))
            opt.threads = (int)number(name, value, 1, MAX_THREADS);
        else if (!strcmp(name, "--size"))
            opt.size = (size_t)number(name, value, 1, MAX_SIZE);
        else if (!strcmp(name, "--duration"))
            opt.duration = (double)number(name, value, 1, 3600);
        else {
            fprintf(stderr, "referee-client: unknown option '%s'\n", name);
            return 2;
        }
    }
    bool threads_model = !strcmp(opt.model, "threads");
    if (!threads_model && strcmp(opt.model, "epoll") != 0) {
        fprintf(stderr, "referee-client: --model: '%s' is not epoll or threads\n", opt.model);
        return 2;
    }
    if (!port || inet_pton(AF_INET, host, &opt.address.sin_addr) != 1) {
        fprintf(stderr, "referee-client: --port is required and --host must be an IPv4 address\n");
        return 2;
    }
    opt.address.sin_family = AF_INET;
    opt.address.sin_port = htons((uint16_t)port);
    if (opt.threads > opt.connections)
        opt.threads = opt.connections;
    int thread_count = threads_model ? opt.connections : opt.threads;
    pthread_t *threads = calloc((size_t)thread_count, sizeof *threads);
    if (!threads)
        return 1;
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    pthread_attr_setstacksize(&attributes, 4 * MAX_SIZE + 65536);
    double start = now_s();
    int started = 0;
    for (; started < thread_count; started++)
        if (pthread_create(&threads[started], &attributes,
                           threads_model ? blocking_connection : event_loop, (void *)(intptr_t)started) != 0)
            break;
    struct timespec pause = {(time_t)opt.duration, 0};
    nanosleep(&pause, NULL);
    atomic_store(&stop_now, 1);
    double seconds = now_s() - start;
    for (int i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    long msgs = atomic_load(&total_msgs), errors = atomic_load(&total_errors) + (thread_count - started);
    printf("{\"model\":\"%s\",\"connections\":%d,\"size\":%zu,\"msgs\":%ld,\"seconds\":%.3f,\"msgs_per_s\":%.1f,"
           "\"errors\":%ld}\n",
           opt.model, opt.connections, opt.size, msgs, seconds, (double)msgs / seconds, errors);
    free(threads);
    return errors ? 1 : 0;
}
