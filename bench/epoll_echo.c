/*
 * A plain epoll echo server, the reference point for bench/compare: one thread, level-triggered epoll,
 * non-blocking sockets, 64 KiB reads, TCP_NODELAY. What a write leaves unsent is kept in a per-connection
 * buffer and sent on EPOLLOUT; reading from that connection pauses until the buffer is empty, so a peer that
 * does not read cannot make us buffer more than one read. Closes on EOF or error.
 *   epoll_echo PORT [HOST]     (HOST default 127.0.0.1)
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
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE (64 * 1024)

struct conn {
    int fd;
    size_t off, len; /* unsent bytes are buf[off, len) */
    char buf[BUF_SIZE];
};

static void conn_close(int ep, struct conn *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c);
}

/* Sends what is buffered; returns -1 on error, 0 when all is sent, 1 when the socket is full. */
static int conn_flush(struct conn *c)
{
    while (c->off < c->len) {
        ssize_t n = send(c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN ? 1 : -1;
        }
        c->off += (size_t)n;
    }
    c->off = c->len = 0;
    return 0;
}

static void conn_event(int ep, struct conn *c, unsigned events)
{
    struct epoll_event ev = { .data.ptr = c };
    if (events & (EPOLLERR | EPOLLHUP)) {
        conn_close(ep, c);
        return;
    }
    if (c->len) { /* waiting for room to send the rest */
        int r = conn_flush(c);
        if (r < 0) {
            conn_close(ep, c);
            return;
        }
        if (r > 0)
            return;
        ev.events = EPOLLIN;
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        return;
    }
    ssize_t n = recv(c->fd, c->buf, BUF_SIZE, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        conn_close(ep, c);
        return;
    }
    if (n < 0)
        return;
    c->len = (size_t)n;
    int r = conn_flush(c);
    if (r < 0) {
        conn_close(ep, c);
    } else if (r > 0) {
        ev.events = EPOLLOUT;
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: epoll_echo PORT [HOST]\n");
        return 2;
    }
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[1])) };
    if (inet_pton(AF_INET, argc > 2 ? argv[2] : "127.0.0.1", &addr.sin_addr) != 1) {
        fprintf(stderr, "epoll_echo: bad address\n");
        return 2;
    }
    int one = 1;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(lfd, 4096) < 0) {
        perror("epoll_echo: listen");
        return 1;
    }
    int ep = epoll_create1(0);
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL }; /* NULL marks the listener */
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    printf("listening on 127.0.0.1:%s\n", argv[1]);
    fflush(stdout);

    struct epoll_event events[256];
    for (;;) {
        int n = epoll_wait(ep, events, 256, -1);
        if (n < 0 && errno != EINTR) {
            perror("epoll_echo: epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            if (events[i].data.ptr) {
                conn_event(ep, events[i].data.ptr, events[i].events);
                continue;
            }
            int fd;
            while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                struct conn *c = malloc(sizeof *c);
                if (!c) {
                    close(fd);
                    continue;
                }
                c->fd = fd;
                c->off = c->len = 0;
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                struct epoll_event cev = { .events = EPOLLIN, .data.ptr = c };
                epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
            }
        }
    }
}
