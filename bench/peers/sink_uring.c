/* SPDX-License-Identifier: MIT
 * sink_uring.c - the "ceiling" of the broker benchmark: a bare liburing TCP sink, one thread
 * pinned to one CPU, that does the least a log broker must do with a produce stream and nothing
 * more.
 *
 *     sink_uring --cpu N --port P --file PATH
 *
 * It listens on 127.0.0.1:P (multishot accept), receives every connection with a multishot recv
 * into a provided-buffer ring (as echo_uring does), cuts the byte stream into turbine request
 * frames (u32 length prefix) reading only the 16 bytes it needs (length, correlation id and,
 * for PRODUCE, acks), copies every received byte once into 1 MiB aligned staging buffers and
 * appends those to PATH with O_DIRECT writes through the ring (1 MiB, block aligned, up to
 * STAGE_COUNT in flight). Each frame is answered with a minimal PRODUCE response (header and an
 * empty topic array, 16 bytes), with the broker's meaning of acks: acks=0 never, acks=1 once
 * everything up to its last byte is written (the broker's WRITTEN), acks=all once it is also
 * fdatasync'd. Frames whose bytes are still in the partly filled buffer get a group flush: one
 * write of that buffer, padded to whole blocks, and for acks=all an fdatasync linked after it,
 * for every frame waiting; a flush starts only when no full-buffer write is in flight, and a
 * buffer never has two writes in flight (as the broker's log, which also rewrites its last
 * block as it fills).
 * What it does NOT do, and the broker does: decode or validate requests (no CRC-32C, no record
 * walk), topics and partitions (one file for everything, frame headers included), offsets,
 * an index, a page cache for reads, fetches, budgets and timeouts, fibers or a runtime. When
 * the staging buffers are all in flight, received data waits (its provided buffers are not
 * returned, so recv runs dry and TCP pushes back). SIGTERM or SIGINT ends it (exit 0);
 * $SINK_STATS prints counters on exit.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
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
#define BUF_COUNT    256   /* provided receive buffers (a power of two) */
#define BUF_BYTES    16384 /* bytes per provided buffer */
#define BUF_GROUP    0
#define STAGE_COUNT  16           /* 1 MiB staging buffers */
#define STAGE_BYTES  (1u << 20)   /* one O_DIRECT write */
#define BLOCK_BYTES  4096         /* O_DIRECT alignment */
#define FD_MAX       4096         /* connections are indexed by fd */
#define HEADER_BYTES 16           /* prefix, api, version, correlation, flags, acks */
#define RESP_BYTES   16           /* prefix, correlation, api, error, topic count */
#define OUT_BYTES    (64u * 1024) /* pending responses per connection */
#define WAITING_MAX  65536        /* acks=all frames waiting for a sync */
#define API_PRODUCE  4
#define ACKS_ALL     (-1)

_Static_assert((BUF_COUNT & (BUF_COUNT - 1)) == 0, "the buffer ring size is a power of two");
_Static_assert(STAGE_BYTES % BLOCK_BYTES == 0, "staging buffers are whole blocks");

enum kind { KIND_ACCEPT = 1, KIND_RECV, KIND_SEND, KIND_WRITE, KIND_SYNC_WRITE, KIND_SYNC };

struct conn {
    bool open, recv_armed, closing, starved, sending;
    uint8_t header[HEADER_BYTES]; /* the current frame's first bytes */
    uint32_t header_used;
    uint64_t frame_left; /* bytes of the current frame after its header */
    uint8_t out[2][OUT_BYTES];
    uint32_t out_used[2]; /* [pending] accumulates while [1 - pending] is being sent */
    uint32_t out_sent;
    int pending;
};

/* A received buffer waiting for staging room (FIFO over all connections, in arrival order). */
struct stalled {
    int fd;
    uint16_t bid;
    uint32_t length;
};

/* A frame answered once the log is written (acks=1) or durable (acks=all) up to `end`. */
struct waiting {
    int fd;
    uint32_t correlation;
    uint64_t end;
    bool sync;
};

static struct io_uring ring;
static struct io_uring_buf_ring *buf_ring;
static unsigned char *buf_base;
static unsigned bufs_returned;
static struct conn *conns;
static int listen_fd, file_fd;
static int starved_fds[FD_MAX], starved_count;
static struct stalled stalled[BUF_COUNT];
static unsigned stalled_head, stalled_count;
static struct waiting waiting[WAITING_MAX];
static unsigned waiting_head, waiting_count;
static int ready_fds[FD_MAX], ready_count;
static bool ready[FD_MAX];

static unsigned char *stage[STAGE_COUNT];
static bool stage_busy[STAGE_COUNT]; /* a full-buffer write is in flight */
static int stage_cur;                /* the buffer being filled */
static uint32_t stage_fill;          /* bytes in it */
static uint64_t stage_file_off;      /* where it goes in the file */
static uint64_t log_end;             /* bytes appended (received) so far */
static uint64_t written_end;         /* bytes written (a contiguous prefix) */
static uint64_t durable_end;         /* bytes written and fdatasync'd */
static uint64_t flush_target;        /* what the flush in flight covers */
static unsigned writes_in_flight;    /* full-buffer writes */
static unsigned waiting_sync;        /* acks=all frames waiting */
static bool flush_in_flight, flush_syncs;
static int flush_stage = -1; /* the buffer the flush in flight writes part of */
/* A buffer that filled while a flush wrote part of it: its full write waits for the flush, so
 * that no two writes of the same blocks are ever in flight together. */
static int deferred_stage = -1;
static uint64_t deferred_off;
static volatile sig_atomic_t stop;
static struct {
    unsigned long long recv_bytes, frames, writes, syncs, stalls;
} stats;

static void die(const char *what, int err)
{
    fprintf(stderr, "sink_uring: %s: %s\n", what, strerror(err));
    exit(1);
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

static uint64_t user_data(enum kind kind, int fd)
{
    return (uint64_t)fd << 8 | (uint64_t)kind;
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
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

static void return_buffer(uint16_t bid)
{
    io_uring_buf_ring_add(buf_ring, buf_base + (size_t)bid * BUF_BYTES, BUF_BYTES, bid,
                          io_uring_buf_ring_mask(BUF_COUNT), (int)bufs_returned);
    bufs_returned++;
}

static void publish_buffers(void)
{
    if (bufs_returned == 0)
        return;
    io_uring_buf_ring_advance(buf_ring, (int)bufs_returned);
    bufs_returned = 0;
    while (starved_count > 0) {
        int fd = starved_fds[--starved_count];
        if (conns[fd].open && conns[fd].starved) {
            conns[fd].starved = false;
            arm_recv(fd);
        }
    }
}

static void mark_ready(int fd)
{
    if (!ready[fd]) {
        ready[fd] = true;
        ready_fds[ready_count++] = fd;
    }
}

/* Queues the 16-byte PRODUCE response to `correlation` on `fd`. */
static void respond(int fd, uint32_t correlation)
{
    struct conn *c = &conns[fd];
    if (!c->open)
        return;
    uint8_t *r = c->out[c->pending] + c->out_used[c->pending];
    assert(c->out_used[c->pending] + RESP_BYTES <= OUT_BYTES);
    put_u32(r, RESP_BYTES - 4);
    put_u32(r + 4, correlation);
    r[8] = 0, r[9] = API_PRODUCE, r[10] = 0, r[11] = 0; /* api_key, error NONE */
    put_u32(r + 12, 0);                                 /* topics: none */
    c->out_used[c->pending] += RESP_BYTES;
    mark_ready(fd);
}

static void send_pending(int fd)
{
    struct conn *c = &conns[fd];
    assert(!c->sending);
    if (c->out_used[c->pending] == 0)
        return;
    c->pending = 1 - c->pending; /* what accumulated is now being sent */
    c->out_sent = 0;
    c->sending = true;
    int s = 1 - c->pending;
    struct io_uring_sqe *sqe = get_sqe();
    io_uring_prep_send(sqe, fd, c->out[s], c->out_used[s], MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, user_data(KIND_SEND, fd));
}

static void flush_ready(void)
{
    for (int i = 0; i < ready_count; i++) {
        int fd = ready_fds[i];
        ready[fd] = false;
        if (conns[fd].open && !conns[fd].sending)
            send_pending(fd);
    }
    ready_count = 0;
}

static void on_send(struct io_uring_cqe *cqe, int fd)
{
    struct conn *c = &conns[fd];
    assert(c->sending);
    int s = 1 - c->pending;
    if (cqe->res <= 0) {
        c->sending = false;
        c->out_used[s] = 0;
        return; /* the recv sees the error and closes */
    }
    c->out_sent += (uint32_t)cqe->res;
    if (c->out_sent < c->out_used[s]) { /* short send: the rest */
        struct io_uring_sqe *sqe = get_sqe();
        io_uring_prep_send(sqe, fd, c->out[s] + c->out_sent, c->out_used[s] - c->out_sent,
                           MSG_NOSIGNAL);
        io_uring_sqe_set_data64(sqe, user_data(KIND_SEND, fd));
        return;
    }
    c->out_used[s] = 0;
    c->sending = false;
    if (c->out_used[c->pending] > 0)
        mark_ready(fd);
}

/* The staging buffer after `stage_cur`, once its write has completed (-1 if none is free). */
static int next_free_stage(void)
{
    for (int i = 1; i <= STAGE_COUNT; i++) {
        int s = (stage_cur + i) % STAGE_COUNT;
        if (!stage_busy[s])
            return s;
    }
    return -1;
}

static void write_full(int s, uint64_t off)
{
    struct io_uring_sqe *sqe = get_sqe();
    io_uring_prep_write(sqe, file_fd, stage[s], STAGE_BYTES, off);
    io_uring_sqe_set_data64(sqe, user_data(KIND_WRITE, s));
    stats.writes++;
}

/* Writes the full current buffer and moves to the next one; false when none is free. */
static bool rotate_stage(void)
{
    int next = next_free_stage();
    if (next < 0)
        return false;
    assert(stage_fill == STAGE_BYTES);
    if (flush_in_flight && flush_stage == stage_cur) {
        assert(deferred_stage < 0); /* the flush ends before the next buffer fills */
        deferred_stage = stage_cur, deferred_off = stage_file_off;
    } else {
        write_full(stage_cur, stage_file_off);
    }
    stage_busy[stage_cur] = true;
    writes_in_flight++;
    stage_cur = next;
    stage_fill = 0;
    stage_file_off += STAGE_BYTES;
    return true;
}

/* Copies data[0 .. length) into the staging buffers; false (nothing copied) without room. */
static bool stage_bytes(const uint8_t *data, uint32_t length)
{
    /* room: the rest of the current buffer plus every free one after it */
    uint64_t room = STAGE_BYTES - stage_fill;
    for (int i = 1; i < STAGE_COUNT; i++)
        room += stage_busy[(stage_cur + i) % STAGE_COUNT] ? 0 : STAGE_BYTES;
    if (room <= length)
        return false;
    while (length > 0) {
        uint32_t n = STAGE_BYTES - stage_fill;
        n = n < length ? n : length;
        memcpy(stage[stage_cur] + stage_fill, data, n);
        stage_fill += n, data += n, length -= n, log_end += n;
        if (stage_fill == STAGE_BYTES && !rotate_stage())
            assert(!"room was counted");
    }
    return true;
}

/* Cuts frames from data[0 .. length) of `fd`, whose bytes end at log position `end`. */
static void parse_frames(int fd, const uint8_t *data, uint32_t length, uint64_t end)
{
    struct conn *c = &conns[fd];
    uint64_t pos = end - length;
    while (length > 0) {
        if (c->header_used < HEADER_BYTES) {
            uint32_t n = HEADER_BYTES - c->header_used;
            n = n < length ? n : length;
            memcpy(c->header + c->header_used, data, n);
            c->header_used += n, data += n, length -= n, pos += n;
            if (c->header_used < HEADER_BYTES)
                return;
            uint32_t frame_bytes = get_u32(c->header);
            assert(frame_bytes + 4 >= HEADER_BYTES); /* the load generator's frames */
            c->frame_left = frame_bytes + 4 - HEADER_BYTES;
        }
        uint64_t n = c->frame_left < length ? c->frame_left : length;
        c->frame_left -= n, data += n, length -= (uint32_t)n, pos += n;
        if (c->frame_left > 0)
            return;
        /* a whole frame: answer it */
        stats.frames++;
        c->header_used = 0;
        uint32_t correlation = get_u32(c->header + 8);
        int16_t acks = (int16_t)((uint16_t)c->header[14] << 8 | c->header[15]);
        bool produce = c->header[4] == 0 && c->header[5] == API_PRODUCE;
        if (produce && acks == 0)
            continue;
        if (produce) { /* acks=1 or all: once written or durable */
            assert(waiting_count < WAITING_MAX);
            waiting[(waiting_head + waiting_count++) % WAITING_MAX] = (struct waiting){
                .fd = fd, .correlation = correlation, .end = pos, .sync = acks == ACKS_ALL};
            waiting_sync += acks == ACKS_ALL;
        } else {
            respond(fd, correlation);
        }
    }
}

/* Stages and parses one received buffer; false when there was no room (nothing done). */
static bool consume(int fd, uint16_t bid, uint32_t length)
{
    const uint8_t *data = buf_base + (size_t)bid * BUF_BYTES;
    if (!stage_bytes(data, length))
        return false;
    parse_frames(fd, data, length, log_end);
    return_buffer(bid);
    return true;
}

static void drain_stalled(void)
{
    while (stalled_count > 0) {
        struct stalled *s = &stalled[stalled_head];
        if (conns[s->fd].open && !consume(s->fd, s->bid, s->length))
            return;
        if (!conns[s->fd].open)
            return_buffer(s->bid);
        stalled_head = (stalled_head + 1) % BUF_COUNT;
        stalled_count--;
    }
}

static void close_conn(int fd)
{
    struct conn *c = &conns[fd];
    if (c->recv_armed || c->sending)
        return; /* once they end */
    close(fd);
    c->open = false;
}

static void on_recv(struct io_uring_cqe *cqe, int fd)
{
    struct conn *c = &conns[fd];
    if (!(cqe->flags & IORING_CQE_F_MORE))
        c->recv_armed = false;
    if (cqe->res > 0) {
        uint16_t bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
        stats.recv_bytes += (unsigned)cqe->res;
        if (stalled_count > 0 || !consume(fd, bid, (uint32_t)cqe->res)) {
            stats.stalls++;
            assert(stalled_count < BUF_COUNT);
            stalled[(stalled_head + stalled_count++) % BUF_COUNT] =
                (struct stalled){.fd = fd, .bid = bid, .length = (uint32_t)cqe->res};
        }
        if (!c->recv_armed)
            arm_recv(fd);
        return;
    }
    if (cqe->res == -ENOBUFS) {
        c->starved = true;
        starved_fds[starved_count++] = fd;
        return;
    }
    c->closing = true;
    close_conn(fd);
}

/* Answers the waiting frames, oldest first, that are now written (acks=1) or durable. */
static void answer_waiting(void)
{
    while (waiting_count > 0) {
        struct waiting *w = &waiting[waiting_head];
        if (w->end > (w->sync ? durable_end : written_end))
            return;
        respond(w->fd, w->correlation);
        waiting_sync -= w->sync;
        waiting_head = (waiting_head + 1) % WAITING_MAX;
        waiting_count--;
    }
}

/* Group commit: for every frame waiting, one write of the partly filled buffer (padded to whole
 * blocks) and, if an acks=all frame waits, an fdatasync linked after it. It starts once no
 * full-buffer write is in flight, so that on completion everything below its target is written
 * (fdatasync covers only completed writes). */
static void maybe_flush(void)
{
    if (flush_in_flight || writes_in_flight > 0 || waiting_count == 0)
        return;
    if (waiting[waiting_head].end <= written_end && waiting_sync == 0)
        return; /* answered by answer_waiting() */
    flush_target = log_end;
    flush_syncs = waiting_sync > 0;
    if (stage_fill > 0) {
        uint32_t bytes = (stage_fill + BLOCK_BYTES - 1) / BLOCK_BYTES * BLOCK_BYTES;
        struct io_uring_sqe *sqe = get_sqe();
        io_uring_prep_write(sqe, file_fd, stage[stage_cur], bytes, stage_file_off);
        if (flush_syncs)
            sqe->flags |= IOSQE_IO_LINK;
        io_uring_sqe_set_data64(sqe, user_data(KIND_SYNC_WRITE, flush_syncs ? 0 : 1));
        stats.writes++;
    }
    if (flush_syncs) {
        struct io_uring_sqe *sqe = get_sqe();
        io_uring_prep_fsync(sqe, file_fd, IORING_FSYNC_DATASYNC);
        io_uring_sqe_set_data64(sqe, user_data(KIND_SYNC, 0));
        stats.syncs++;
    } else if (stage_fill == 0) {
        written_end = flush_target; /* nothing staged past the full buffers, all written */
        answer_waiting();
        return;
    }
    flush_in_flight = true;
    flush_stage = stage_cur;
}

/* The flush's last operation completed (its write, or the fdatasync after it). */
static void on_flush(struct io_uring_cqe *cqe, bool synced)
{
    if (cqe->res < 0)
        die(synced ? "fdatasync" : "O_DIRECT write", -cqe->res);
    flush_in_flight = false;
    flush_stage = -1;
    if (deferred_stage >= 0) {
        write_full(deferred_stage, deferred_off);
        deferred_stage = -1;
    }
    written_end = flush_target;
    if (synced)
        durable_end = flush_target;
    answer_waiting();
}

static void on_accept(struct io_uring_cqe *cqe)
{
    if (!(cqe->flags & IORING_CQE_F_MORE) && !stop)
        arm_accept();
    if (cqe->res < 0)
        return;
    int fd = cqe->res;
    if (fd >= FD_MAX) {
        close(fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    memset(&conns[fd], 0, sizeof(conns[fd]));
    conns[fd].open = true;
    arm_recv(fd);
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
        if (conns[fd].closing)
            close_conn(fd);
        break;
    case KIND_WRITE: /* fd is the staging buffer */
        if (cqe->res != (int)STAGE_BYTES)
            die("O_DIRECT write", cqe->res < 0 ? -cqe->res : EIO);
        stage_busy[fd] = false;
        writes_in_flight--;
        if (writes_in_flight == 0 && !flush_in_flight && stage_file_off > written_end) {
            written_end = stage_file_off; /* every full buffer before the current one */
            answer_waiting();
        }
        break;
    case KIND_SYNC_WRITE: /* fd 1: the flush's last operation */
        if (fd == 1)
            on_flush(cqe, false);
        else if (cqe->res < 0)
            die("O_DIRECT write", -cqe->res);
        break;
    case KIND_SYNC:
        on_flush(cqe, true);
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

static void setup_buffers(void)
{
    size_t ring_bytes = BUF_COUNT * sizeof(struct io_uring_buf);
    buf_ring = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (buf_ring == MAP_FAILED)
        die("mmap buffer ring", errno);
    int rc = posix_memalign((void **)&buf_base, 4096, (size_t)BUF_COUNT * BUF_BYTES);
    if (rc != 0)
        die("posix_memalign", rc);
    io_uring_buf_ring_init(buf_ring);
    struct io_uring_buf_reg reg = {
        .ring_addr = (uint64_t)(uintptr_t)buf_ring, .ring_entries = BUF_COUNT, .bgid = BUF_GROUP};
    rc = io_uring_register_buf_ring(&ring, &reg, 0);
    if (rc < 0)
        die("io_uring_register_buf_ring", -rc);
    for (uint16_t bid = 0; bid < BUF_COUNT; bid++)
        return_buffer(bid);
    publish_buffers();
    for (int s = 0; s < STAGE_COUNT; s++) {
        rc = posix_memalign((void **)&stage[s], BLOCK_BYTES, STAGE_BYTES);
        if (rc != 0)
            die("posix_memalign", rc);
        memset(stage[s], 0, STAGE_BYTES);
    }
}

static void setup(int cpu, int port, const char *path)
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
    io_uring_register_ring_fd(&ring);
    setup_buffers();
    file_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_DIRECT | O_CLOEXEC, 0644);
    if (file_fd < 0)
        die(path, errno);
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
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int main(int argc, char **argv)
{
    static const struct option options[] = {{"cpu", required_argument, NULL, 'c'},
                                            {"port", required_argument, NULL, 'p'},
                                            {"file", required_argument, NULL, 'f'},
                                            {0}};
    int cpu = 0, port = 0, opt;
    const char *path = NULL;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        if (opt == 'c')
            cpu = atoi(optarg);
        else if (opt == 'p')
            port = atoi(optarg);
        else if (opt == 'f')
            path = optarg;
        else
            goto usage;
    }
    if (port <= 0 || port > 65535 || cpu < 0 || path == NULL)
        goto usage;
    setup(cpu, port, path);
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
        drain_stalled();
        maybe_flush();
        flush_ready();
    }
    if (getenv("SINK_STATS") != NULL)
        fprintf(stderr,
                "sink_uring: %llu bytes received, %llu frames, %llu writes, %llu syncs, %llu "
                "stalls\n",
                stats.recv_bytes, stats.frames, stats.writes, stats.syncs, stats.stalls);
    close(file_fd);
    close(listen_fd);
    io_uring_queue_exit(&ring);
    return 0;
usage:
    fprintf(stderr, "usage: sink_uring [--cpu N] --port P --file PATH\n");
    return 2;
}
