/* SPDX-License-Identifier: MIT
 * echo_client.c - the load generator of the echo benchmark: many TCP connections driven from one
 * io_uring on one pinned thread, checking every echoed byte.
 *
 *     echo_client --port P [--cpu N] [--connections 100] [--size 64] [--mode pingpong|stream]
 *                 [--seconds 3] [--warmup 1] [--window 16]
 *
 * pingpong: each connection sends `size` bytes, waits until exactly those bytes came back, and
 * repeats. stream: each connection keeps up to `window` messages of `size` bytes outstanding,
 * sending and receiving continuously. Each connection's byte stream is a window into one random
 * pattern, starting at an offset of its own, so every received byte is compared (memcmp) with
 * what was sent on that connection: a server that drops, reorders or mixes bytes fails the run.
 *
 * The client is usually the side that saturates on a two-CPU machine, so it is kept cheap: one
 * send and one recv in flight per connection, all submitted and reaped in batches with one
 * io_uring_enter per loop turn, no copies on the send side.
 *
 * Output on stdout, one line each: "start" when the warm-up ends, then at the end
 *     requests=N bytes=N seconds=F rate=F mbps=F
 * (requests: round trips in pingpong, bytes / size in stream; rate = requests per second;
 * mbps = echoed MB/s, MB = 10^6 bytes). Exit 0 on success, 1 on any error or wrong byte.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <liburing.h>

#define RING_ENTRIES 1024
#define SIZE_MAX_B   (1u << 20)         /* largest --size */
#define PERIOD       ((1u << 20) + 251) /* pattern period, not a multiple of any message size */
#define RECV_BYTES   65536              /* recv size in stream mode */
#define STALL_NS     5000000000LL       /* no progress for this long is an error */
#define WAIT_NS      50000000LL         /* longest sleep in the loop, to look at the clock */

enum kind { KIND_SEND = 1, KIND_RECV };

struct conn {
    int fd;
    bool sending;
    bool receiving;
    uint32_t start;    /* where this connection's stream begins in the pattern */
    uint32_t msg_sent; /* bytes of the current message already sent */
    uint64_t tx_off;   /* stream bytes sent */
    uint64_t rx_off;   /* stream bytes received back (and verified) */
    uint64_t msg_end;  /* pingpong: stream offset where the current message ends */
    unsigned char *rx;
};

static struct {
    int port, cpu, connections;
    uint32_t size, window;
    bool stream;
    double seconds, warmup;
} opt = {.cpu = 1, .connections = 100, .size = 64, .window = 16, .seconds = 3, .warmup = 1};

static struct io_uring ring;
static struct conn *conns;
static unsigned char *pattern; /* PERIOD random bytes, then its first SIZE_MAX_B bytes again */
static uint64_t requests_done, bytes_done;

static void fail(const char *what, int err)
{
    fprintf(stderr, "echo_client: %s: %s\n", what, strerror(err));
    exit(1);
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static struct io_uring_sqe *get_sqe(void)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    if (sqe == NULL) {
        io_uring_submit(&ring);
        sqe = io_uring_get_sqe(&ring);
    }
    assert(sqe != NULL);
    return sqe;
}

static const unsigned char *stream_at(const struct conn *c, uint64_t offset)
{
    return pattern + (c->start + offset) % PERIOD;
}

/* Sends the rest of the current message. */
static void submit_send(struct conn *c)
{
    assert(!c->sending);
    assert(c->msg_sent < opt.size);
    struct io_uring_sqe *sqe = get_sqe();
    io_uring_prep_send(sqe, c->fd, stream_at(c, c->tx_off), opt.size - c->msg_sent, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, (uint64_t)(c - conns) << 8 | KIND_SEND);
    c->sending = true;
}

static void submit_recv(struct conn *c, uint32_t len)
{
    assert(!c->receiving);
    assert(len > 0);
    struct io_uring_sqe *sqe = get_sqe();
    io_uring_prep_recv(sqe, c->fd, c->rx, len, 0);
    io_uring_sqe_set_data64(sqe, (uint64_t)(c - conns) << 8 | KIND_RECV);
    c->receiving = true;
}

/* pingpong: once the message is wholly sent and wholly back, count it and start the next. */
static void pingpong_advance(struct conn *c)
{
    if (!c->sending && !c->receiving && c->msg_sent == opt.size && c->rx_off == c->msg_end) {
        requests_done++;
        c->msg_sent = 0;
        c->msg_end += opt.size;
    }
    if (!c->sending && c->msg_sent < opt.size) /* a new message, or the rest of a short send */
        submit_send(c);
    if (!c->receiving && c->rx_off < c->msg_end)
        submit_recv(c, (uint32_t)(c->msg_end - c->rx_off));
}

/* stream: keep sending while fewer than `window` messages are outstanding; always receive. */
static void stream_advance(struct conn *c)
{
    uint64_t limit = (uint64_t)opt.window * opt.size;
    if (!c->sending && c->tx_off - c->rx_off + (opt.size - c->msg_sent) <= limit)
        submit_send(c);
    if (!c->receiving)
        submit_recv(c, RECV_BYTES);
}

static void on_send(struct conn *c, int res)
{
    c->sending = false;
    if (res <= 0)
        fail("send", res < 0 ? -res : EPIPE);
    c->tx_off += (uint32_t)res;
    c->msg_sent += (uint32_t)res;
    if (opt.stream && c->msg_sent == opt.size)
        c->msg_sent = 0;
}

static void on_recv(struct conn *c, int res)
{
    c->receiving = false;
    if (res < 0)
        fail("recv", -res);
    if (res == 0) {
        fprintf(stderr, "echo_client: the server closed connection %d\n", (int)(c - conns));
        exit(1);
    }
    if (c->rx_off + (uint32_t)res > c->tx_off) {
        fprintf(stderr, "echo_client: connection %d got %d bytes more than it sent\n",
                (int)(c - conns), (int)(c->rx_off + (uint32_t)res - c->tx_off));
        exit(1);
    }
    if (memcmp(c->rx, stream_at(c, c->rx_off), (size_t)res) != 0) {
        fprintf(stderr, "echo_client: connection %d: wrong bytes echoed at offset %llu\n",
                (int)(c - conns), (unsigned long long)c->rx_off);
        exit(1);
    }
    c->rx_off += (uint32_t)res;
    bytes_done += (uint32_t)res;
}

static void handle(const struct io_uring_cqe *cqe)
{
    struct conn *c = &conns[cqe->user_data >> 8];
    if ((cqe->user_data & 0xff) == KIND_SEND)
        on_send(c, cqe->res);
    else
        on_recv(c, cqe->res);
    if (opt.stream)
        stream_advance(c);
    else
        pingpong_advance(c);
}

static void setup_pattern(void)
{
    pattern = malloc(PERIOD + SIZE_MAX_B);
    if (pattern == NULL)
        fail("malloc", ENOMEM);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (uint32_t i = 0; i < PERIOD; i++) {
        x ^= x << 13; /* xorshift64 */
        x ^= x >> 7;
        x ^= x << 17;
        pattern[i] = (unsigned char)(x >> 24);
    }
    memcpy(pattern + PERIOD, pattern, SIZE_MAX_B);
}

static void setup_connections(void)
{
    conns = calloc((size_t)opt.connections, sizeof(*conns));
    if (conns == NULL)
        fail("calloc", ENOMEM);
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons((uint16_t)opt.port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    uint32_t rx_bytes = opt.stream ? RECV_BYTES : opt.size;
    for (int i = 0; i < opt.connections; i++) {
        struct conn *c = &conns[i];
        c->fd = socket(AF_INET, SOCK_STREAM, 0);
        if (c->fd < 0)
            fail("socket", errno);
        if (connect(c->fd, (struct sockaddr *)&addr, sizeof(addr)) != 0)
            fail("connect", errno);
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c->start = (uint32_t)(((uint64_t)i * 104729u) % PERIOD);
        c->msg_end = opt.size;
        c->rx = malloc(rx_bytes);
        if (c->rx == NULL)
            fail("malloc", ENOMEM);
    }
}

static void setup_ring(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(opt.cpu, &set);
    if (sched_setaffinity(0, sizeof(set), &set) != 0)
        fail("sched_setaffinity", errno);
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL |
              IORING_SETUP_CQSIZE;
    p.cq_entries = RING_ENTRIES * 4;
    int rc = io_uring_queue_init_params(RING_ENTRIES, &ring, &p);
    if (rc < 0)
        fail("io_uring_queue_init_params", -rc);
    if (io_uring_register_ring_fd(&ring) != 1)
        fail("io_uring_register_ring_fd", EINVAL);
}

/* Runs the loop until `deadline_ns`. */
static void run_until(int64_t deadline_ns)
{
    int64_t progress_ns = now_ns();
    uint64_t progress_bytes = bytes_done;
    struct __kernel_timespec wait = {.tv_sec = 0, .tv_nsec = WAIT_NS};
    for (;;) {
        struct io_uring_cqe *cqe;
        int rc = io_uring_submit_and_wait_timeout(&ring, &cqe, 1, &wait, NULL);
        if (rc < 0 && rc != -ETIME && rc != -EINTR)
            fail("io_uring_submit_and_wait_timeout", -rc);
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&ring, head, cqe)
        {
            handle(cqe);
            seen++;
        }
        io_uring_cq_advance(&ring, seen);
        int64_t now = now_ns();
        if (now >= deadline_ns)
            return;
        if (bytes_done != progress_bytes) {
            progress_bytes = bytes_done;
            progress_ns = now;
        } else if (now - progress_ns > STALL_NS) {
            fprintf(stderr, "echo_client: no echo for %lld ms\n", STALL_NS / 1000000);
            exit(1);
        }
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: echo_client --port P [--cpu N] [--connections N] [--size BYTES]\n"
                    "       [--mode pingpong|stream] [--seconds S] [--warmup S] [--window N]\n");
    exit(2);
}

static void parse(int argc, char **argv)
{
    static const struct option options[] = {{"port", required_argument, NULL, 'p'},
                                            {"cpu", required_argument, NULL, 'c'},
                                            {"connections", required_argument, NULL, 'n'},
                                            {"size", required_argument, NULL, 's'},
                                            {"mode", required_argument, NULL, 'm'},
                                            {"seconds", required_argument, NULL, 't'},
                                            {"warmup", required_argument, NULL, 'w'},
                                            {"window", required_argument, NULL, 'W'},
                                            {0}};
    int o;
    while ((o = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (o) {
        case 'p':
            opt.port = atoi(optarg);
            break;
        case 'c':
            opt.cpu = atoi(optarg);
            break;
        case 'n':
            opt.connections = atoi(optarg);
            break;
        case 's':
            opt.size = (uint32_t)strtoul(optarg, NULL, 0);
            break;
        case 't':
            opt.seconds = atof(optarg);
            break;
        case 'w':
            opt.warmup = atof(optarg);
            break;
        case 'W':
            opt.window = (uint32_t)strtoul(optarg, NULL, 0);
            break;
        case 'm':
            if (strcmp(optarg, "stream") != 0 && strcmp(optarg, "pingpong") != 0)
                usage();
            opt.stream = strcmp(optarg, "stream") == 0;
            break;
        default:
            usage();
        }
    }
    if (opt.port <= 0 || opt.port > 65535 || opt.connections < 1 || opt.size < 1 ||
        opt.size > SIZE_MAX_B || opt.window < 1 || opt.seconds <= 0 || opt.warmup < 0)
        usage();
}

int main(int argc, char **argv)
{
    parse(argc, argv);
    setup_ring();
    setup_pattern();
    setup_connections();
    for (int i = 0; i < opt.connections; i++) {
        if (opt.stream)
            stream_advance(&conns[i]);
        else
            pingpong_advance(&conns[i]);
    }
    run_until(now_ns() + (int64_t)(opt.warmup * 1e9));
    printf("start\n");
    fflush(stdout);
    uint64_t requests0 = requests_done, bytes0 = bytes_done;
    int64_t start = now_ns();
    run_until(start + (int64_t)(opt.seconds * 1e9));
    double seconds = (double)(now_ns() - start) / 1e9;
    uint64_t bytes = bytes_done - bytes0;
    uint64_t requests = opt.stream ? bytes / opt.size : requests_done - requests0;
    printf("requests=%llu bytes=%llu seconds=%.6f rate=%.1f mbps=%.3f\n",
           (unsigned long long)requests, (unsigned long long)bytes, seconds,
           (double)requests / seconds, (double)bytes / seconds / 1e6);
    fflush(stdout);
    if (bytes == 0) {
        fprintf(stderr, "echo_client: nothing echoed in the measured interval\n");
        return 1;
    }
    return 0;
}
