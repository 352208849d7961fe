/* SPDX-License-Identifier: MIT
 * echo_uring.c - the "limit" baseline for the echo benchmark: a bare liburing TCP echo server,
 * one thread pinned to one CPU, no runtime at all.
 *
 *     echo_uring --cpu N --port P
 *
 * Listens on 127.0.0.1:P with a multishot accept; each connection has one multishot recv into a
 * provided-buffer ring, and the received buffers are sent back as they are (no copy) and only
 * then returned to the ring. A connection keeps at most one send in flight: data received
 * meanwhile waits in its FIFO and goes out in order with the next sendmsg (up to SEND_IOV_MAX
 * buffers in one), and a short send resends the rest. When the ring runs dry the recv ends with
 * -ENOBUFS and is re-armed once buffers come back. The ring is set up as a production server's
 * would be: SINGLE_ISSUER | DEFER_TASKRUN | SUBMIT_ALL, a larger CQ, a registered ring fd.
 * SIGTERM or SIGINT ends it cleanly (exit 0).
 */
#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <liburing.h>

#define RING_ENTRIES 1024
/* The buffer ring is FIFO, so every buffer in it is touched once per lap: 256 x 16 KiB keeps that
 * lap (4 MiB) cache-sized. 512 x 64 KiB measured ~15% more server CPU per MB (cold copies). */
#define BUF_COUNT    256   /* provided buffers (a power of two) */
#define BUF_BYTES    16384 /* bytes per provided buffer */
#define BUF_GROUP    0
#define FD_MAX       65536   /* connections are indexed by fd */
#define SEND_IOV_MAX 16      /* queued buffers sent back with one sendmsg */
#define NONE         0xffffu /* no buffer (end of a FIFO) */

_Static_assert((BUF_COUNT & (BUF_COUNT - 1)) == 0, "the buffer ring size is a power of two");
_Static_assert(BUF_COUNT < NONE, "buffer ids fit 16 bits with NONE to spare");

/* user_data: the operation kind in the low byte, the fd above it */
enum kind { KIND_ACCEPT = 1, KIND_RECV, KIND_SEND };

/* A received buffer waiting to be (or being) sent back: bytes [offset, length) remain. */
struct buf_meta {
    uint32_t length;
    uint32_t offset;
    uint16_t next; /* next buffer in the connection's FIFO, or NONE */
};

struct conn {
    bool open;
    bool recv_armed;
    bool sending;
    bool closing;  /* EOF or error seen: close once nothing is in flight or queued */
    bool broken;   /* a send failed: drop what is queued */
    bool starved;  /* recv ended with -ENOBUFS: re-arm when buffers return */
    bool ready;    /* in ready_fds */
    uint16_t head; /* FIFO of buffers to send back, oldest first */
    uint16_t tail;
    unsigned in_flight; /* buffers in the sendmsg now in flight, starting at head */
    struct msghdr msg;
    struct iovec iov[SEND_IOV_MAX];
};

static struct io_uring ring;
static struct io_uring_buf_ring *buf_ring;
static unsigned char *buf_base;
static struct buf_meta metas[BUF_COUNT];
static struct conn *conns;
static int listen_fd;
static unsigned bufs_returned;  /* added to the ring since the last advance */
static int starved_fds[FD_MAX]; /* connections whose recv waits for buffers */
static int ready_fds[FD_MAX];   /* connections with data to send back after this CQE batch */
static int ready_count;
static int starved_count;
static volatile sig_atomic_t stop;
static struct { /* printed on exit when $ECHO_STATS is set */
    unsigned long long enters, cqes, recvs, recv_bytes, sends, short_sends, starved;
} stats;

static void die(const char *what, int err)
{
    fprintf(stderr, "echo_uring: %s: %s\n", what, strerror(err));
    exit(1);
}

static struct io_uring_sqe *get_sqe(void)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    if (sqe == NULL) { /* SQ full: hand what we have to the kernel, then there is room */
        io_uring_submit(&ring);
        sqe = io_uring_get_sqe(&ring);
    }
    assert(sqe != NULL);
    return sqe;
}

static uint64_t user_data(enum kind kind, int fd)
{
    return (uint64_t)fd << 8 | (uint64_t)kind;
}

static void arm_accept(void)
{
    struct io_uring_sqe *sqe = get_sqe();
    io_uring_prep_multishot_accept(sqe, listen_fd, NULL, NULL, 0);
    io_uring_sqe_set_data64(sqe, user_data(KIND_ACCEPT, listen_fd));
}

static void arm_recv(int fd)
{
    struct io_uring_sqe *sqe = get_sqe();
    io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BUF_GROUP;
    io_uring_sqe_set_data64(sqe, user_data(KIND_RECV, fd));
    conns[fd].recv_armed = true;
}

/* Gives buffer `bid` back to the kernel (visible after the next publish_buffers()). */
static void return_buffer(uint16_t bid)
{
    io_uring_buf_ring_add(buf_ring, buf_base + (size_t)bid * BUF_BYTES, BUF_BYTES, bid,
                          io_uring_buf_ring_mask(BUF_COUNT), (int)bufs_returned);
    bufs_returned++;
}

/* Publishes the returned buffers and re-arms the recvs that ran out of them. */
static void publish_buffers(void)
{
    if (bufs_returned == 0)
        return;
    io_uring_buf_ring_advance(buf_ring, (int)bufs_returned);
    bufs_returned = 0;
    while (starved_count > 0) {
        int fd = starved_fds[--starved_count];
        if (conns[fd].starved) { /* not closed meanwhile */
            conns[fd].starved = false;
            arm_recv(fd);
        }
    }
}

static void setup_buffers(void)
{
    size_t ring_bytes = BUF_COUNT * sizeof(struct io_uring_buf);
    buf_ring = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (buf_ring == MAP_FAILED)
        die("mmap buffer ring", errno);
    int rc = posix_memalign((void **)&buf_base, 4096, (size_t)BUF_COUNT * BUF_BYTES);
    if (rc != 0)
        die("posix_memalign buffers", rc);
    io_uring_buf_ring_init(buf_ring);
    struct io_uring_buf_reg reg = {
        .ring_addr = (uint64_t)(uintptr_t)buf_ring, .ring_entries = BUF_COUNT, .bgid = BUF_GROUP};
    rc = io_uring_register_buf_ring(&ring, &reg, 0);
    if (rc < 0)
        die("io_uring_register_buf_ring", -rc);
    for (uint16_t bid = 0; bid < BUF_COUNT; bid++)
        return_buffer(bid);
    io_uring_buf_ring_advance(buf_ring, (int)bufs_returned);
    bufs_returned = 0;
}

static void close_if_idle(int fd)
{
    struct conn *c = &conns[fd];
    if (!c->closing || c->recv_armed || c->sending || (c->head != NONE && !c->broken))
        return;               /* after EOF, what was received still goes back first */
    while (c->head != NONE) { /* data that can no longer be sent back */
        uint16_t bid = c->head;
        c->head = metas[bid].next;
        return_buffer(bid);
    }
    c->starved = false; /* a stale entry in starved_fds is skipped */
    close(fd);
    c->open = false;
}

/* Sends back the oldest queued buffers (up to SEND_IOV_MAX) with one sendmsg. */
static void send_queued(int fd)
{
    struct conn *c = &conns[fd];
    assert(!c->sending);
    assert(c->head != NONE);
    unsigned n = 0;
    for (uint16_t bid = c->head; bid != NONE && n < SEND_IOV_MAX; bid = metas[bid].next, n++) {
        c->iov[n].iov_base = buf_base + (size_t)bid * BUF_BYTES + metas[bid].offset;
        c->iov[n].iov_len = metas[bid].length - metas[bid].offset;
    }
    memset(&c->msg, 0, sizeof(c->msg));
    c->msg.msg_iov = c->iov;
    c->msg.msg_iovlen = n;
    c->in_flight = n;
    c->sending = true;
    stats.sends++;
    struct io_uring_sqe *sqe = get_sqe();
    if (n == 1) /* the common case: a plain send skips copying in a msghdr */
        io_uring_prep_send(sqe, fd, c->iov[0].iov_base, c->iov[0].iov_len, MSG_NOSIGNAL);
    else
        io_uring_prep_sendmsg(sqe, fd, &c->msg, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, user_data(KIND_SEND, fd));
}

/* Data was queued on `fd`: it is sent once the whole CQE batch is seen, so that everything
 * received on a connection in one batch goes back with one sendmsg. */
static void mark_ready(int fd)
{
    if (!conns[fd].ready) {
        conns[fd].ready = true;
        ready_fds[ready_count++] = fd;
    }
}

static void flush_ready(void)
{
    for (int i = 0; i < ready_count; i++) {
        struct conn *c = &conns[ready_fds[i]];
        c->ready = false;
        if (c->open && !c->sending && !c->broken && c->head != NONE)
            send_queued(ready_fds[i]);
    }
    ready_count = 0;
}

static void on_accept(struct io_uring_cqe *cqe)
{
    if (!(cqe->flags & IORING_CQE_F_MORE) && !stop)
        arm_accept();
    if (cqe->res < 0) {
        if (cqe->res != -ECANCELED)
            fprintf(stderr, "echo_uring: accept: %s\n", strerror(-cqe->res));
        return;
    }
    int fd = cqe->res;
    if (fd >= FD_MAX) {
        close(fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    conns[fd] = (struct conn){.open = true, .head = NONE, .tail = NONE};
    arm_recv(fd);
}

static void on_recv(struct io_uring_cqe *cqe, int fd)
{
    struct conn *c = &conns[fd];
    assert(c->open);
    if (!(cqe->flags & IORING_CQE_F_MORE))
        c->recv_armed = false;
    if (cqe->res > 0) {
        assert(cqe->flags & IORING_CQE_F_BUFFER);
        uint16_t bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
        metas[bid] = (struct buf_meta){.length = (uint32_t)cqe->res, .offset = 0, .next = NONE};
        if (c->head == NONE)
            c->head = bid;
        else
            metas[c->tail].next = bid;
        c->tail = bid;
        stats.recvs++;
        stats.recv_bytes += (unsigned)cqe->res;
        mark_ready(fd);
        if (!c->recv_armed && !c->closing) /* multishot ended (e.g. CQ overflow): re-arm */
            arm_recv(fd);
        return;
    }
    if (cqe->res == -ENOBUFS && !c->closing) {
        c->starved = true;
        stats.starved++;
        assert(starved_count < FD_MAX);
        starved_fds[starved_count++] = fd;
        return;
    }
    c->closing = true; /* 0 = EOF, or an error such as -ECONNRESET */
    close_if_idle(fd);
}

static void on_send(struct io_uring_cqe *cqe, int fd)
{
    struct conn *c = &conns[fd];
    assert(c->sending);
    c->sending = false;
    if (cqe->res < 0) {
        c->closing = true;
        c->broken = true;
        shutdown(fd, SHUT_RDWR); /* ends the multishot recv too */
        close_if_idle(fd);
        return;
    }
    uint32_t sent = (uint32_t)cqe->res;
    for (unsigned i = 0; i < c->in_flight && c->head != NONE; i++) {
        uint16_t bid = c->head;
        uint32_t left = metas[bid].length - metas[bid].offset;
        if (sent < left) { /* short send: the rest of this buffer goes first next time */
            stats.short_sends++;
            metas[bid].offset += sent;
            break;
        }
        sent -= left;
        c->head = metas[bid].next;
        return_buffer(bid);
    }
    if (c->head != NONE && !c->broken)
        mark_ready(fd);
    else
        close_if_idle(fd);
}

static void handle(struct io_uring_cqe *cqe)
{
    int fd = (int)(cqe->user_data >> 8);
    switch ((enum kind)(cqe->user_data & 0xff)) {
    case KIND_ACCEPT:
        on_accept(cqe);
        break;
    case KIND_RECV:
        on_recv(cqe, fd);
        break;
    case KIND_SEND:
        on_send(cqe, fd);
        break;
    default:
        assert(!"unknown user_data");
    }
}

static void on_signal(int signo)
{
    (void)signo;
    stop = 1;
}

static void setup(int cpu, int port)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof(set), &set) != 0)
        die("sched_setaffinity", errno);

    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL |
              IORING_SETUP_CQSIZE;
    p.cq_entries = RING_ENTRIES * 4;
    int rc = io_uring_queue_init_params(RING_ENTRIES, &ring, &p);
    if (rc < 0)
        die("io_uring_queue_init_params", -rc);
    if (io_uring_register_ring_fd(&ring) != 1)
        die("io_uring_register_ring_fd", EINVAL);
    setup_buffers();

    conns = calloc(FD_MAX, sizeof(*conns));
    if (conns == NULL)
        die("calloc", ENOMEM);
    listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (listen_fd < 0)
        die("socket", errno);
    int one = 1;
    setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(listen_fd, (struct sockaddr *)&addr, sizeof(addr)) != 0)
        die("bind", errno);
    if (listen(listen_fd, 1024) != 0)
        die("listen", errno);

    struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: the wait ends -EINTR */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static void usage(void)
{
    fprintf(stderr, "usage: echo_uring [--cpu N] --port P\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"cpu", required_argument, NULL, 'c'}, {"port", required_argument, NULL, 'p'}, {0}};
    int cpu = 0, port = 0, opt;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        if (opt == 'c')
            cpu = atoi(optarg);
        else if (opt == 'p')
            port = atoi(optarg);
        else
            usage();
    }
    if (port <= 0 || port > 65535 || cpu < 0)
        usage();
    setup(cpu, port);
    arm_accept();
    while (!stop) {
        publish_buffers();
        int rc = io_uring_submit_and_wait(&ring, 1);
        if (rc < 0 && rc != -EINTR && rc != -ETIME)
            die("io_uring_submit_and_wait", -rc);
        unsigned head, seen = 0;
        struct io_uring_cqe *cqe;
        io_uring_for_each_cqe(&ring, head, cqe)
        {
            handle(cqe);
            seen++;
        }
        io_uring_cq_advance(&ring, seen);
        stats.enters++;
        stats.cqes += seen;
        flush_ready();
    }
    for (int fd = 0; fd < FD_MAX; fd++) {
        if (conns[fd].open)
            close(fd);
    }
    close(listen_fd);
    io_uring_queue_exit(&ring);
    if (getenv("ECHO_STATS") != NULL)
        fprintf(stderr,
                "echo_uring: %llu loop turns, %llu CQEs, %llu recvs (%llu bytes), %llu sends "
                "(%llu short), %llu recv ran out of buffers\n",
                stats.enters, stats.cqes, stats.recvs, stats.recv_bytes, stats.sends,
                stats.short_sends, stats.starved);
    free(conns);
    free(buf_base);
    return 0;
}
