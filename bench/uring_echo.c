/*
 * The io_uring reference point for bench/compare: the least an io_uring echo server does per message, to show
 * where the kernel's floor lies next to overlap-echo. One thread, one ring (SINGLE_ISSUER | DEFER_TASKRUN where
 * the kernel has them), multishot accept, multishot receive into a provided buffer ring of 1024 x 64 KiB (the
 * buffers of overlap-echo's default pool, as it starts; 16 KiB until 2026-12-02), and each received buffer sent back as it is, then returned to the ring.
 * Sends keep their order: one send in flight per connection, the other received buffers queued behind it.
 * No timers, no statistics, no flow control: a peer that never reads can hold every buffer (it is a reference,
 * not a server). Closes on EOF or error once queued bytes are sent.
 *   uring_echo PORT [HOST]     (HOST default 127.0.0.1)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum { BUF_COUNT = 1024, BUF_SIZE = 65536, NO_BUF = 0xffff };
enum tag { TAG_ACCEPT = 1, TAG_RECV, TAG_SEND };

struct conn {
    int fd;
    bool receiving, sending, closing, starved;
    uint16_t head, tail;       /* queue of received buffers to send back, linked through next_buf */
    struct conn *next_starved; /* waiting for a free buffer after -ENOBUFS */
};

static struct io_uring ring;
static struct io_uring_buf_ring *buf_ring;
static char *slab;
static uint16_t next_buf[BUF_COUNT];
static uint32_t buf_len[BUF_COUNT], buf_sent[BUF_COUNT];
static struct conn *starved;

static void maybe_close(struct conn *c);

static void die(const char *what, int err)
{
    fprintf(stderr, "uring_echo: %s: %s (errno %d)\n", what, strerror(err), err);
    exit(1);
}

static struct io_uring_sqe *sqe_get(void)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    if (!sqe) {
        io_uring_submit(&ring);
        sqe = io_uring_get_sqe(&ring);
    }
    if (!sqe)
        die("io_uring_get_sqe", EBUSY);
    return sqe;
}

static void arm_recv(struct conn *c)
{
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = 0;
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | TAG_RECV);
    c->receiving = true;
}

static void arm_send(struct conn *c)
{
    uint16_t bid = c->head;
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_send(sqe, c->fd, slab + (size_t)bid * BUF_SIZE + buf_sent[bid], buf_len[bid] - buf_sent[bid],
                       MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | TAG_SEND);
    c->sending = true;
}

static void put_buf(uint16_t bid)
{
    io_uring_buf_ring_add(buf_ring, slab + (size_t)bid * BUF_SIZE, BUF_SIZE, bid, io_uring_buf_ring_mask(BUF_COUNT),
                          0);
    io_uring_buf_ring_advance(buf_ring, 1);
    while (starved) { /* a buffer is back: the connections that ran out receive again */
        struct conn *c = starved;
        starved = c->next_starved;
        c->starved = false;
        if (c->closing)
            maybe_close(c);
        else
            arm_recv(c);
    }
}

/* Frees the connection once nothing is in flight; queued buffers go back to the ring. */
static void maybe_close(struct conn *c)
{
    if (!c->closing || c->receiving || c->sending || c->starved)
        return;
    while (c->head != NO_BUF) {
        uint16_t bid = c->head;
        c->head = next_buf[bid];
        put_buf(bid);
    }
    close(c->fd);
    free(c);
}

static void on_accept(int res)
{
    if (res < 0) {
        if (res != -EMFILE && res != -ENFILE && res != -ECONNABORTED)
            fprintf(stderr, "uring_echo: accept: %s (errno %d)\n", strerror(-res), -res);
        return;
    }
    struct conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(res);
        return;
    }
    int one = 1;
    setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = res;
    c->head = c->tail = NO_BUF;
    arm_recv(c);
}

static void on_recv(struct conn *c, const struct io_uring_cqe *cqe)
{
    if (!(cqe->flags & IORING_CQE_F_MORE))
        c->receiving = false;
    if (cqe->res > 0 && (cqe->flags & IORING_CQE_F_BUFFER)) {
        uint16_t bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
        buf_len[bid] = (uint32_t)cqe->res;
        buf_sent[bid] = 0;
        next_buf[bid] = NO_BUF;
        if (c->head == NO_BUF)
            c->head = bid;
        else
            next_buf[c->tail] = bid;
        c->tail = bid;
        if (!c->sending && !c->closing)
            arm_send(c);
        if (c->closing)
            maybe_close(c);
        else if (!c->receiving)
            arm_recv(c);
        return;
    }
    if (cqe->flags & IORING_CQE_F_BUFFER)
        put_buf((uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT));
    if (cqe->res == -ENOBUFS && !c->receiving && !c->closing) {
        c->starved = true;
        c->next_starved = starved;
        starved = c;
    } else if (!c->receiving) {
        c->closing = true; /* EOF or error: send what is queued, then close */
        if (!c->sending && c->head != NO_BUF)
            arm_send(c);
        maybe_close(c);
    }
}

static void on_send(struct conn *c, int res)
{
    c->sending = false;
    if (res <= 0) {
        c->closing = true; /* the receive ends when the peer's reset or EOF reaches it */
        if (c->receiving) {
            struct io_uring_sqe *sqe = sqe_get();
            io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)c | TAG_RECV, 0);
            io_uring_sqe_set_data64(sqe, 0);
        }
        maybe_close(c);
        return;
    }
    uint16_t bid = c->head;
    buf_sent[bid] += (uint32_t)res;
    if (buf_sent[bid] == buf_len[bid]) { /* else the rest goes out next */
        c->head = next_buf[bid];
        put_buf(bid);
    }
    if (c->head != NO_BUF)
        arm_send(c);
    else
        maybe_close(c);
}

static int listen_on(const char *host, int port)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        fprintf(stderr, "uring_echo: %s is not an IPv4 address\n", host);
        exit(2);
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket", errno);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0)
        die("bind", errno);
    if (listen(fd, 4096) < 0)
        die("listen", errno);
    return fd;
}

static void ring_setup(void)
{
    static const unsigned flag_sets[] = {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
                                         IORING_SETUP_COOP_TASKRUN, 0};
    int rc = -EINVAL;
    for (size_t i = 0; i < sizeof flag_sets / sizeof flag_sets[0]; i++) {
        struct io_uring_params params;
        memset(&params, 0, sizeof params);
        params.flags = flag_sets[i] | IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
        params.cq_entries = 16384;
        rc = io_uring_queue_init_params(1024, &ring, &params);
        if (rc == 0)
            break;
    }
    if (rc < 0)
        die("io_uring_queue_init_params", -rc);
    buf_ring = aligned_alloc(4096, BUF_COUNT * sizeof(struct io_uring_buf));
    slab = aligned_alloc(4096, (size_t)BUF_COUNT * BUF_SIZE);
    if (!buf_ring || !slab)
        die("allocate the buffers", ENOMEM);
    io_uring_buf_ring_init(buf_ring);
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof reg);
    reg.ring_addr = (unsigned long)buf_ring;
    reg.ring_entries = BUF_COUNT;
    reg.bgid = 0;
    rc = io_uring_register_buf_ring(&ring, &reg, 0);
    if (rc < 0)
        die("io_uring_register_buf_ring", -rc);
    for (unsigned i = 0; i < BUF_COUNT; i++)
        io_uring_buf_ring_add(buf_ring, slab + (size_t)i * BUF_SIZE, BUF_SIZE, (unsigned short)i,
                              io_uring_buf_ring_mask(BUF_COUNT), (int)i);
    io_uring_buf_ring_advance(buf_ring, BUF_COUNT);
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: uring_echo PORT [HOST]\n");
        return 2;
    }
    int listen_fd = listen_on(argc > 2 ? argv[2] : "127.0.0.1", atoi(argv[1]));
    ring_setup();
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_multishot_accept(sqe, listen_fd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, TAG_ACCEPT);
    for (;;) {
        int rc = io_uring_submit_and_wait(&ring, 1);
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
            die("io_uring_enter", -rc);
        unsigned head, seen = 0;
        struct io_uring_cqe *cqe;
        io_uring_for_each_cqe(&ring, head, cqe)
        {
            seen++;
            struct conn *c = (struct conn *)(uintptr_t)(cqe->user_data & ~(uint64_t)3);
            switch (cqe->user_data & 3) {
            case TAG_ACCEPT:
                on_accept(cqe->res);
                if (!(cqe->flags & IORING_CQE_F_MORE)) { /* the multishot accept ended: arm it again */
                    sqe = sqe_get();
                    io_uring_prep_multishot_accept(sqe, listen_fd, NULL, NULL, SOCK_CLOEXEC);
                    io_uring_sqe_set_data64(sqe, TAG_ACCEPT);
                }
                break;
            case TAG_RECV:
                on_recv(c, cqe);
                break;
            case TAG_SEND:
                on_send(c, cqe->res);
                break;
            default: /* a cancellation's own completion */
                break;
            }
        }
        io_uring_cq_advance(&ring, seen);
    }
}
