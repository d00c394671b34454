/*
 * echo_client.c - blocking test clients of an echo server with Criterion assertions (echo_client.h).
 */
#include "echo_client.h"
#include "support.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void expect_exchange(int fd, const char *what, uint32_t seed, uint64_t offset, size_t len)
{
    int rc = sup_exchange(fd, seed, offset, len);
    cr_assert(rc == 0, "%s: echo of %zu bytes failed: %s", what, len,
              rc == -EPROTO ? "bytes differ" : rc == -ECONNABORTED ? "EOF" : strerror(-rc));
}

void *stream_send(void *arg)
{
    struct stream *s = arg;
    /* Sizes that line up with neither the engine's buffers nor each other. */
    static const size_t sizes[] = {65536, 7, 100003, 4097, 262144, 1, 31337};
    char *chunk = malloc(262144);
    if (!chunk) {
        s->send_err = ENOMEM;
        return NULL;
    }
    uint64_t sent = 0;
    for (unsigned k = 0; sent < s->limit; k++) {
        size_t n = sizes[k % (sizeof sizes / sizeof sizes[0])];
        if (n > s->limit - sent)
            n = (size_t)(s->limit - sent);
        sup_pattern_fill(chunk, n, s->seed, sent);
        atomic_store(&s->attempted, sent + n);
        int rc = sup_send_all(s->fd, chunk, n);
        if (rc < 0) {
            s->send_err = -rc;
            break;
        }
        sent += n;
        atomic_store(&s->sent, sent);
        if (s->pace_us)
            usleep((useconds_t)s->pace_us);
    }
    if (sent == s->limit)
        shutdown(s->fd, SHUT_WR);
    free(chunk);
    return NULL;
}

void *stream_receive(void *arg)
{
    struct stream *s = arg;
    size_t cap = 1 << 18;
    char *buf = malloc(cap);
    if (!buf) {
        s->recv_err = ENOMEM;
        return NULL;
    }
    uint64_t received = 0;
    for (;;) {
        ssize_t n = recv(s->fd, buf, cap, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            s->recv_err = errno;
            break;
        }
        if (n == 0) {
            s->eof = true;
            if (s->shut_on_eof)
                shutdown(s->fd, SHUT_WR);
            break;
        }
        size_t bad = sup_pattern_check(buf, (size_t)n, s->seed, received);
        if (bad != (size_t)n) {
            s->bad_at = received + bad;
            shutdown(s->fd, SHUT_RDWR); /* unblock the sender */
            break;
        }
        received += (uint64_t)n;
        atomic_store(&s->received, received);
    }
    s->ended_ms = sup_now_ms();
    free(buf);
    return NULL;
}

void stream_init(struct stream *s, int port, uint32_t seed, uint64_t limit, int timeout_ms)
{
    memset(s, 0, sizeof *s);
    s->seed = seed;
    s->limit = limit;
    s->bad_at = UINT64_MAX;
    s->fd = sup_connect("127.0.0.1", port, timeout_ms);
    cr_assert(s->fd >= 0, "connect: %s", strerror(-s->fd));
}

void stream_run(struct stream *s, bool shut_on_eof, int pace_us)
{
    s->shut_on_eof = shut_on_eof;
    s->pace_us = pace_us;
    cr_assert(pthread_create(&s->receiver, NULL, stream_receive, s) == 0);
    cr_assert(pthread_create(&s->sender, NULL, stream_send, s) == 0);
}

void stream_join(struct stream *s)
{
    pthread_join(s->sender, NULL);
    pthread_join(s->receiver, NULL);
}

void expect_stream_intact(struct stream *s, const char *what)
{
    cr_assert(s->bad_at == UINT64_MAX, "%s: the echo differs at byte %llu", what, (unsigned long long)s->bad_at);
    cr_assert(s->eof && !s->recv_err && !s->send_err, "%s: eof %d, receive %s, send %s", what, s->eof,
              strerror(s->recv_err), strerror(s->send_err));
    cr_assert(atomic_load(&s->received) == s->limit, "%s: %llu of %llu bytes back", what,
              (unsigned long long)atomic_load(&s->received), (unsigned long long)s->limit);
}
