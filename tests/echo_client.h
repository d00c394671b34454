/*
 * echo_client.h - blocking test clients of an echo server, with Criterion assertions: one checked exchange, and
 * streaming clients (one thread sends a position-dependent pattern in uneven chunks, another receives and checks
 * every byte). Shared by the fault tests against the Linux server (test_faults.c) and against the Windows server
 * under Wine (test_wine.c), and the proxy tests (test_proxy.c, test_wine_proxy.c).
 */
#ifndef OVL_TEST_ECHO_CLIENT_H
#define OVL_TEST_ECHO_CLIENT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Send len bytes of pattern `seed` from `offset` on fd and assert they come back intact. */
void expect_exchange(int fd, const char *what, uint32_t seed, uint64_t offset, size_t len);

struct stream {
    int fd;
    uint32_t seed;
    uint64_t limit;              /* bytes to send, then shut the write side; UINT64_MAX = until sending fails */
    bool shut_on_eof;            /* receiver: on EOF shut our write side too, which ends a blocked sender */
    int pace_us;                 /* pause after each chunk sent; 0 = as fast as the connection takes it */
    _Atomic uint64_t sent, received;
    _Atomic uint64_t attempted;  /* sent + the chunk being sent (part of it may have left when a send fails) */
    int send_err, recv_err;      /* errno, 0 = none */
    uint64_t bad_at;             /* offset of the first wrong echoed byte, UINT64_MAX = none */
    bool eof;
    int64_t ended_ms;            /* when the receiver saw EOF or an error (sup_now_ms) */
    pthread_t sender, receiver;
};

/* Connect to 127.0.0.1:port (socket timeouts timeout_ms) and prepare a stream of `limit` bytes; asserts. */
void stream_init(struct stream *s, int port, uint32_t seed, uint64_t limit, int timeout_ms);
/* Start both threads of an initialised stream. */
void stream_run(struct stream *s, bool shut_on_eof, int pace_us);
/* The two thread bodies, for tests that start one side later (a reader that does not read yet). */
void *stream_send(void *arg);
void *stream_receive(void *arg);
void stream_join(struct stream *s);
/* A stream that must have come back whole: every byte right, then EOF, no error either way. */
void expect_stream_intact(struct stream *s, const char *what);

#endif
