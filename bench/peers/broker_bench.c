/* SPDX-License-Identifier: MIT
 * broker_bench.c - the turbine broker under produce, fetch and end-to-end load, against a bare
 * liburing sink that appends the same byte stream with O_DIRECT (the ceiling) and a TCP
 * ping-pong (the latency floor), all in one run.
 *
 *     broker_bench [--quick] [--rounds N] [--seconds S] [--warmup S] [--turbine PATH]
 *
 * Servers run on CPU 0 (`turbine broker --smp 1 --cpuset 0`, a private data directory and free
 * ports; bench/peers/sink_uring --cpu 0; bench/peers/echo_uring --cpu 0), this program, the
 * load generator, pinned to CPU 1: one io_uring, raw turbine protocol frames built with
 * turbine's codec, no client library. Records are 1 KiB values (no key), 16 per RecordBatch v2
 * (16,445-byte batches, one batch per PRODUCE request), CONNECTIONS connections with WINDOW
 * requests in flight each. Each round starts a fresh broker and a fresh sink:
 *   sink acks=1, sink acks=all                         -> ceiling (msgs/s)
 *   broker acks=1 and acks=all, on 1 and on 8 partitions -> produce_* (msgs/s)
 *   FETCH of everything the 8-partition runs produced   -> fetch_1KB (MB/s of batch bytes)
 *   one producer paced at 100 MB/s (1 partition, acks=1) and one long-polling consumer
 *                                                      -> e2e_p50/p99/p999_100MBps (us)
 *   the same frames at the same rate over one connection to echo_uring, each timed from its
 *   send to its last byte echoed                       -> tcp_pingpong_p99 (us)
 * Medians over the rounds (3; --quick: 1 short round). The 8-partition figures use the same
 * ceiling: the sink does not look at partitions, and its stream is byte for byte the same size.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <liburing.h>

#include "benchlib.h"
#include "turbine/batch.h"
#include "turbine/protocol.h"
#include "turbine_assert.h"
#include "util/histogram.h"

#define SERVER_CPU      0
#define CLIENT_CPU      1
#define ROUNDS_MAX      9
#define CONNECTIONS     4
#define WINDOW          8  /* PRODUCE requests in flight per connection */
#define RECORDS         16 /* per batch */
#define RECORD_BYTES    1024
#define PARTITIONS_MAX  8
#define E2E_RATE_BPS    100e6 /* record value bytes per second */
#define E2E_WINDOW      64
#define FETCH_PART_MAX  (1 << 20) /* partition_max_bytes */
#define RECV_BYTES      (8u << 20)
#define CONN_MAX        (CONNECTIONS + 2)
#define START_NS        10000000000LL
#define STOP_NS         20000000000LL
#define TOPIC_1P        "bench1"
#define TOPIC_8P        "bench8"
#define TOPIC_E2E       "benche2e"
#define SAMPLES_PER_RUN 8

enum role { PRODUCER, CONSUMER, ECHO };

/* One connection of the load generator. Frames to send live in `slots` (WINDOW of them, one
 * frame each, contiguous): the ones queued are [send_first, send_first + queued), sent with
 * one sendmsg at a time; responses arrive in request order and free the oldest slot. */
struct lconn {
    int fd;
    enum role role;
    uint8_t *slots;
    size_t frame_bytes;
    unsigned window;
    unsigned in_flight;   /* frames sent or queued, not yet answered */
    unsigned queued;      /* frames not yet handed to sendmsg */
    unsigned next_slot;   /* the slot of the next frame built */
    unsigned send_first;  /* the slot of the oldest queued frame */
    size_t send_offset;   /* bytes of that frame already sent */
    unsigned sending;     /* frames in the sendmsg in flight (0: none) */
    size_t sending_bytes; /* bytes in it */
    uint32_t next_corr;
    uint32_t frames_out; /* frames handed to the kernel, for e2e timing */
    struct msghdr msg;
    struct iovec iov[2];
    uint8_t *rbuf;
    size_t rstart, rend;
    bool recv_armed;
    /* consumer */
    int partitions[PARTITIONS_MAX], partition_count;
    int64_t fetch_offset[PARTITIONS_MAX];
    const char *topic;
    int32_t max_wait_ms;
};

/* What a run measured. */
struct result {
    double msgs_per_s, mb_per_s;
    uint64_t p50_ns, p99_ns, p999_ns;
    double cpu_us_per_msg; /* the server's user + system CPU time per record */
    double server_util;    /* the server's CPU time / wall time of the interval */
};

static struct {
    int rounds;
    double seconds, warmup;
    char turbine[PATH_MAX];
} opt = {.rounds = 3, .seconds = 3.0, .warmup = 1.0};

static char sink_path[PATH_MAX], echo_path[PATH_MAX], data_dir[PATH_MAX];
static struct io_uring ring;
static struct lconn conns[CONN_MAX];
static int conn_count;
static uint8_t batch[RECORDS * (RECORD_BYTES + 32) + 128];
static size_t batch_bytes;
static volatile pid_t child;
static struct turbine_histogram latency;
/* the current run */
static struct {
    int64_t start_ns, measure_ns, end_ns;
    uint64_t acked_records;   /* acknowledged after measure_ns */
    uint64_t fetched_bytes;   /* batch bytes fetched */
    uint64_t fetched_records; /* records fetched */
    int64_t *send_ns;         /* e2e: when batch i was handed to the kernel */
    size_t send_cap;
    uint64_t echoed_bytes;
    double cpu_start_us, cpu_end_us; /* the server's CPU time at measure_ns and end_ns */
    int64_t cpu_start_ns, cpu_end_ns;
    bool failed;
} run;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
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

/* Samples the server's CPU time when the measured interval starts and when it ends. */
static void sample_cpu(int64_t now, bool last)
{
    if (run.cpu_start_ns == 0 && now >= run.measure_ns)
        run.cpu_start_us = bench_process_cpu_us(child), run.cpu_start_ns = now;
    if (run.cpu_end_ns == 0 && (now >= run.end_ns || last))
        run.cpu_end_us = bench_process_cpu_us(child), run.cpu_end_ns = now;
}

static void fail(const char *what)
{
    if (!run.failed)
        fprintf(stderr, "broker_bench: %s\n", what);
    run.failed = true;
}

/* ---- child processes ---------------------------------------------------------------------- */

static pid_t spawn(char *const argv[])
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        perror("broker_bench: fork");
        return -1;
    }
    if (pid > 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    cpu_set_t set; /* this program runs on CLIENT_CPU; servers start on SERVER_CPU */
    CPU_ZERO(&set);
    CPU_SET(SERVER_CPU, &set);
    sched_setaffinity(0, sizeof(set), &set);
    int fd = open("/dev/null", O_WRONLY);
    dup2(fd, STDOUT_FILENO);
    execv(argv[0], argv);
    fprintf(stderr, "broker_bench: exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

static bool stop_child(pid_t pid)
{
    int status = 0;
    kill(pid, SIGTERM);
    for (int64_t deadline = now_ns() + STOP_NS; now_ns() < deadline; sleep_ms(5)) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            return true;
    }
    fprintf(stderr, "broker_bench: pid %d ignored SIGTERM: SIGKILL\n", (int)pid);
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return false;
}

static int connect_port(int port)
{
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

/* A port no one listens on now: the kernel's choice for a bind to port 0. (Fixed ranges
 * collided with other benchmarks on a shared machine: a server that failed to bind looked
 * started because someone else's server accepted.) */
static int free_port(void)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    TURBINE_ASSERT(fd >= 0);
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &len) != 0) {
        perror("broker_bench: bind to port 0");
        exit(1);
    }
    close(fd);
    return ntohs(addr.sin_port);
}

/* Starts `argv` and waits until `port` accepts (and the child still runs: a server that failed
 * to bind must not pass for one that started); returns its pid or -1. */
static pid_t start_server(char *const argv[], int port)
{
    pid_t pid = spawn(argv);
    if (pid < 0)
        return -1;
    child = pid;
    for (int64_t deadline = now_ns() + START_NS; now_ns() < deadline; sleep_ms(10)) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            fprintf(stderr, "broker_bench: %s exited at start (status 0x%x)\n", argv[0], status);
            child = 0;
            return -1;
        }
        int fd = connect_port(port);
        if (fd >= 0) {
            close(fd);
            sleep_ms(50);
            if (waitpid(pid, &status, WNOHANG) == 0)
                return pid;
            fprintf(stderr, "broker_bench: %s exited at start (status 0x%x)\n", argv[0], status);
            child = 0;
            return -1;
        }
    }
    fprintf(stderr, "broker_bench: %s did not accept on port %d\n", argv[0], port);
    stop_child(pid);
    child = 0;
    return -1;
}

static void on_signal(int signo)
{
    if (child > 0)
        kill(child, SIGKILL);
    signal(signo, SIG_DFL);
    raise(signo);
}

/* ---- frames ------------------------------------------------------------------------------- */

/* The one batch every PRODUCE carries: RECORDS values of RECORD_BYTES, no key. */
static void build_batch(void)
{
    static uint8_t value[RECORD_BYTES];
    for (size_t i = 0; i < sizeof(value); i++)
        value[i] = (uint8_t)('a' + i % 26);
    struct turbine_record_in records[RECORDS];
    int64_t ms = now_ns() / 1000000;
    for (int i = 0; i < RECORDS; i++)
        records[i] = (struct turbine_record_in){
            .timestamp = ms, .key_size = -1, .value = value, .value_size = RECORD_BYTES};
    struct turbine_batch_params params = {
        .producer_id = -1, .producer_epoch = -1, .base_sequence = -1};
    int64_t n = turbine_batch_encode(batch, sizeof(batch), &params, records, RECORDS);
    TURBINE_ASSERT(n > 0);
    batch_bytes = (size_t)n;
    TURBINE_ASSERT(turbine_batch_validate(batch, batch_bytes, NULL) == TURBINE_BATCH_OK);
}

/* Encodes one PRODUCE of `batch` to `topic` into `out`; returns its size. */
static size_t encode_produce(uint8_t *out, size_t cap, const char *topic, int partition,
                             int16_t acks, uint32_t corr)
{
    struct turbine_proto_writer w;
    turbine_proto_writer_init(&w, out, cap, NULL, 0);
    turbine_produce_request_begin(
        &w, corr,
        &(struct turbine_produce_request){.acks = acks, .timeout_ms = 30000, .topic_count = 1});
    turbine_proto_add_topic(&w, topic, strlen(topic), 1);
    turbine_produce_add_partition(
        &w, &(struct turbine_produce_partition){
                .partition = partition, .records = batch, .records_size = (uint32_t)batch_bytes});
    int64_t size = turbine_proto_frame_end(&w);
    TURBINE_ASSERT(size > 0);
    return (size_t)size;
}

/* Sends one request on a blocking socket and reads its response into buf; false on failure. */
static bool call(int fd, const uint8_t *frame, size_t size, uint8_t *buf, size_t cap,
                 struct turbine_response *resp)
{
    if (send(fd, frame, size, MSG_NOSIGNAL) != (ssize_t)size)
        return false;
    size_t got = 0;
    while (got < 4 || got < 4 + (size_t)get_u32(buf)) {
        if (got >= 4 && 4 + (size_t)get_u32(buf) > cap)
            return false;
        ssize_t n = recv(fd, buf + got, (got < 4 ? 4 : 4 + get_u32(buf)) - got, 0);
        if (n <= 0)
            return false;
        got += (size_t)n;
    }
    return turbine_response_parse(buf, got, resp) == TURBINE_ERR_NONE &&
           resp->error == TURBINE_ERR_NONE;
}

static bool create_topic(int port, const char *name, int partitions)
{
    int fd = connect_port(port);
    if (fd < 0)
        return false;
    uint8_t frame[512], buf[4096];
    struct turbine_proto_writer w;
    turbine_proto_writer_init(&w, frame, sizeof(frame), NULL, 0);
    turbine_create_topics_request_begin(
        &w, 1, &(struct turbine_create_topics_request){.timeout_ms = 10000, .topic_count = 1});
    struct turbine_topic_config config = {.retention_ms = TURBINE_CONFIG_DEFAULT,
                                          .retention_bytes = TURBINE_CONFIG_DEFAULT,
                                          .segment_bytes = TURBINE_CONFIG_DEFAULT,
                                          .durability = TURBINE_TOPIC_DURABILITY_FSYNC};
    turbine_create_topics_add_topic(
        &w, &(struct turbine_create_topic){.name = name,
                                           .name_size = (uint16_t)strlen(name),
                                           .partitions = partitions,
                                           .config = config});
    int64_t size = turbine_proto_frame_end(&w);
    TURBINE_ASSERT(size > 0);
    struct turbine_response resp;
    struct turbine_topics_response body;
    struct turbine_topic_result result;
    bool ok = call(fd, frame, (size_t)size, buf, sizeof(buf), &resp) &&
              turbine_topics_response_decode(&resp, &body) == TURBINE_ERR_NONE &&
              turbine_topics_next_result(&body.topics, &result) && result.error == TURBINE_ERR_NONE;
    close(fd);
    if (!ok)
        fprintf(stderr, "broker_bench: creating topic %s failed\n", name);
    return ok;
}

/* ---- the load generator's connections ----------------------------------------------------- */

enum { OP_SEND = 1, OP_RECV = 2 };

static uint64_t ud(const struct lconn *c, int op)
{
    return (uint64_t)(c - conns) << 8 | (uint64_t)op;
}

static struct io_uring_sqe *get_sqe(void)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    if (sqe == NULL) {
        io_uring_submit(&ring);
        sqe = io_uring_get_sqe(&ring);
    }
    TURBINE_ASSERT(sqe != NULL);
    return sqe;
}

static void arm_recv(struct lconn *c)
{
    if (c->rstart == c->rend)
        c->rstart = c->rend = 0;
    else if (c->rstart > RECV_BYTES / 2) {
        memmove(c->rbuf, c->rbuf + c->rstart, c->rend - c->rstart);
        c->rend -= c->rstart;
        c->rstart = 0;
    }
    TURBINE_ASSERT(c->rend < RECV_BYTES);
    struct io_uring_sqe *sqe = get_sqe();
    io_uring_prep_recv(sqe, c->fd, c->rbuf + c->rend, RECV_BYTES - c->rend, 0);
    io_uring_sqe_set_data64(sqe, ud(c, OP_RECV));
    c->recv_armed = true;
}

/* The bytes of the slot ring (producers: WINDOW frames; consumers: one request at slot 0). */
static size_t ring_bytes(const struct lconn *c)
{
    return c->window * c->frame_bytes;
}

/* Hands the queued frames to one sendmsg (two iovecs when they wrap around the slot ring). */
static void flush_send(struct lconn *c)
{
    if (c->sending || c->queued == 0)
        return;
    size_t ring_len = ring_bytes(c), pos = c->send_first * c->frame_bytes + c->send_offset;
    size_t left = c->queued * c->frame_bytes - c->send_offset;
    size_t first = ring_len - pos < left ? ring_len - pos : left;
    c->iov[0] = (struct iovec){.iov_base = c->slots + pos, .iov_len = first};
    c->iov[1] = (struct iovec){.iov_base = c->slots, .iov_len = left - first};
    memset(&c->msg, 0, sizeof(c->msg));
    c->msg.msg_iov = c->iov;
    c->msg.msg_iovlen = left > first ? 2 : 1;
    c->sending = c->queued;
    c->sending_bytes = left;
    struct io_uring_sqe *sqe = get_sqe();
    io_uring_prep_sendmsg(sqe, c->fd, &c->msg, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, ud(c, OP_SEND));
}

static void on_send(struct lconn *c, int res)
{
    TURBINE_ASSERT(c->sending > 0);
    if (res <= 0) {
        fail("send failed");
        c->sending = 0;
        return;
    }
    size_t done = c->send_offset + (size_t)res; /* from the start of the oldest queued frame */
    unsigned frames = (unsigned)(done / c->frame_bytes);
    TURBINE_ASSERT(frames <= c->queued);
    c->queued -= frames;
    c->send_first = (c->send_first + frames) % c->window;
    c->send_offset = done % c->frame_bytes;
    c->frames_out += frames;
    c->sending = 0;
}

/* Builds the next PRODUCE (or echo message) in the next slot and queues it. */
static void queue_frame(struct lconn *c, int partition)
{
    TURBINE_ASSERT(c->in_flight < c->window);
    uint8_t *frame = c->slots + (size_t)c->next_slot * c->frame_bytes;
    put_u32(frame + TURBINE_PROTO_REQ_OFF_CORRELATION, c->next_corr++);
    put_u32(frame + c->frame_bytes - batch_bytes - 8, (uint32_t)partition);
    c->next_slot = (c->next_slot + 1) % c->window;
    c->queued++;
    c->in_flight++;
}

/* Encodes the consumer's next FETCH into its slot and queues it. */
static void queue_fetch(struct lconn *c)
{
    TURBINE_ASSERT(c->in_flight == 0 && c->queued == 0);
    struct turbine_proto_writer w;
    turbine_proto_writer_init(&w, c->slots, 4096, NULL, 0);
    int32_t parts = c->partition_count;
    turbine_fetch_request_begin(&w, c->next_corr++,
                                &(struct turbine_fetch_request){.max_wait_ms = c->max_wait_ms,
                                                                .min_bytes = 1,
                                                                .max_bytes = FETCH_PART_MAX * parts,
                                                                .topic_count = 1});
    turbine_proto_add_topic(&w, c->topic, strlen(c->topic), (uint32_t)parts);
    for (int i = 0; i < parts; i++)
        turbine_fetch_add_partition(
            &w, &(struct turbine_fetch_partition){.partition = c->partitions[i],
                                                  .fetch_offset = c->fetch_offset[i],
                                                  .partition_max_bytes = FETCH_PART_MAX});
    int64_t size = turbine_proto_frame_end(&w);
    TURBINE_ASSERT(size > 0);
    c->frame_bytes = (size_t)size;
    c->window = 1;
    c->next_slot = c->send_first = 0;
    c->send_offset = 0;
    c->queued = 1;
    c->in_flight = 1;
}

static void on_produce_response(struct lconn *c, const struct turbine_response *resp)
{
    struct turbine_produce_response body;
    if (turbine_produce_response_decode(resp, &body) != TURBINE_ERR_NONE) {
        fail("a PRODUCE failed or its response does not decode");
        return;
    }
    struct turbine_proto_topic topic;
    while (turbine_proto_next_topic(&body.topics, &topic)) {
        struct turbine_produce_result r;
        while (turbine_produce_next_result(&topic.partitions, &r)) {
            if (r.error != TURBINE_ERR_NONE) {
                fprintf(stderr, "broker_bench: PRODUCE partition %d: %s\n", (int)r.partition,
                        turbine_error_name(r.error));
                fail("PRODUCE error");
            }
        }
    }
    TURBINE_ASSERT(c->in_flight > 0);
    c->in_flight--;
    if (now_ns() >= run.measure_ns && now_ns() < run.end_ns)
        run.acked_records += RECORDS;
}

/* Counts the whole batches of one partition's records and moves its fetch offset past them;
 * for e2e, times each batch from when its PRODUCE was sent (base offset / RECORDS). */
static void consume_records(struct lconn *c, int index, const uint8_t *p, size_t size, int64_t now)
{
    while (size >= TURBINE_BATCH_HEADER_SIZE) {
        struct turbine_batch_header h;
        turbine_batch_header_decode(p, &h);
        size_t extent = 12 + (size_t)h.batch_length;
        if (extent > size)
            break;
        run.fetched_bytes += extent;
        run.fetched_records += (uint64_t)h.records_count;
        c->fetch_offset[index] = h.base_offset + h.last_offset_delta + 1;
        size_t k = (size_t)(h.base_offset / RECORDS);
        if (run.send_ns != NULL && k < run.send_cap && run.send_ns[k] >= run.measure_ns)
            turbine_histogram_record_n(&latency, (uint64_t)(now - run.send_ns[k]),
                                       (uint64_t)h.records_count);
        p += extent, size -= extent;
    }
}

static void on_fetch_response(struct lconn *c, const struct turbine_response *resp)
{
    struct turbine_fetch_response body;
    if (turbine_fetch_response_decode(resp, &body) != TURBINE_ERR_NONE) {
        fail("a FETCH failed or its response does not decode");
        return;
    }
    int64_t now = now_ns();
    bool caught_up = true;
    struct turbine_proto_topic topic;
    while (turbine_proto_next_topic(&body.topics, &topic)) {
        struct turbine_fetch_result r;
        while (turbine_fetch_next_result(&topic.partitions, &r)) {
            if (r.error != TURBINE_ERR_NONE) {
                fprintf(stderr, "broker_bench: FETCH partition %d: %s\n", (int)r.partition,
                        turbine_error_name(r.error));
                fail("FETCH error");
            }
            int i = 0;
            while (i < c->partition_count && c->partitions[i] != r.partition)
                i++;
            TURBINE_ASSERT(i < c->partition_count);
            consume_records(c, i, r.records, r.records_size, now);
            if (c->fetch_offset[i] < r.high_watermark)
                caught_up = false;
        }
    }
    c->in_flight = 0;
    /* the fetch run ends a consumer once it has read everything; e2e consumers poll on */
    if (!caught_up || c->max_wait_ms > 0)
        queue_fetch(c);
}

/* Echo: a message is back once all its bytes are; nothing is parsed. */
static void on_echo_bytes(struct lconn *c, size_t n)
{
    uint64_t before = run.echoed_bytes / c->frame_bytes;
    run.echoed_bytes += n;
    uint64_t after = run.echoed_bytes / c->frame_bytes;
    int64_t now = now_ns();
    for (uint64_t k = before; k < after; k++) {
        if (k < run.send_cap && run.send_ns[k] >= run.measure_ns)
            turbine_histogram_record(&latency, (uint64_t)(now - run.send_ns[k]));
        TURBINE_ASSERT(c->in_flight > 0);
        c->in_flight--;
    }
    c->rstart = c->rend = 0;
}

static void on_recv(struct lconn *c, int res)
{
    c->recv_armed = false;
    if (res <= 0) {
        fail(res == 0 ? "the server closed a connection" : "recv failed");
        return;
    }
    c->rend += (size_t)res;
    if (c->role == ECHO) {
        on_echo_bytes(c, (size_t)res);
    } else {
        while (c->rend - c->rstart >= 4) {
            size_t size = 4 + (size_t)get_u32(c->rbuf + c->rstart);
            TURBINE_ASSERT(size <= RECV_BYTES);
            if (c->rend - c->rstart < size)
                break;
            struct turbine_response resp;
            if (turbine_response_parse(c->rbuf + c->rstart, size, &resp) != TURBINE_ERR_NONE)
                fail("a response does not parse");
            else if (c->role == PRODUCER)
                on_produce_response(c, &resp);
            else
                on_fetch_response(c, &resp);
            c->rstart += size;
        }
    }
    arm_recv(c);
}

/* ---- runs --------------------------------------------------------------------------------- */

enum run_kind { RUN_PRODUCE, RUN_FETCH, RUN_E2E, RUN_ECHO };

static struct lconn *add_conn(int port, enum role role)
{
    TURBINE_ASSERT(conn_count < CONN_MAX);
    struct lconn *c = &conns[conn_count++];
    uint8_t *rbuf = c->rbuf, *slots = c->slots;
    memset(c, 0, sizeof(*c));
    c->rbuf = rbuf, c->slots = slots;
    c->role = role;
    c->fd = connect_port(port);
    if (c->fd < 0) {
        fail("connect failed");
        conn_count--;
        return NULL;
    }
    arm_recv(c);
    return c;
}

/* A producer (or echo client) whose slots all hold the PRODUCE frame of `topic`. */
static struct lconn *add_producer(int port, enum role role, const char *topic, int16_t acks,
                                  unsigned window)
{
    struct lconn *c = add_conn(port, role);
    if (c == NULL)
        return NULL;
    c->window = window;
    c->frame_bytes = encode_produce(c->slots, RECV_BYTES, topic, 0, acks, 0);
    for (unsigned i = 1; i < window; i++)
        memcpy(c->slots + i * c->frame_bytes, c->slots, c->frame_bytes);
    return c;
}

static bool all_idle(void)
{
    for (int i = 0; i < conn_count; i++) {
        if (conns[i].in_flight > 0)
            return false;
    }
    return true;
}

static bool run_done(enum run_kind kind, int64_t now, const struct lconn *pacer)
{
    if (run.failed || now > run.end_ns + STOP_NS)
        return true;
    switch (kind) {
    case RUN_PRODUCE:
    case RUN_ECHO:
        return now >= run.end_ns && all_idle();
    case RUN_FETCH:
        return all_idle() || now >= run.end_ns;
    case RUN_E2E:
        return now >= run.end_ns && run.fetched_records >= (uint64_t)pacer->next_corr * RECORDS;
    }
    return true;
}

/* Drives the connections until the run is done. `pacer` (e2e, echo) sends one frame every
 * `interval_ns`, timed from when it was due; producers otherwise keep their window full. */
static void pump(enum run_kind kind, int partitions, struct lconn *pacer, int64_t interval_ns)
{
    int64_t next_due = run.start_ns;
    for (;;) {
        int64_t now = now_ns();
        sample_cpu(now, false);
        if (run_done(kind, now, pacer))
            break;
        if (kind == RUN_PRODUCE && now < run.end_ns) {
            for (int i = 0; i < conn_count; i++) {
                struct lconn *c = &conns[i];
                while (c->in_flight < c->window) {
                    int p = (int)((unsigned)i + CONNECTIONS * c->next_corr) % partitions;
                    queue_frame(c, p);
                }
            }
        }
        while (pacer != NULL && next_due <= now && now < run.end_ns &&
               pacer->in_flight < pacer->window) {
            TURBINE_ASSERT(pacer->next_corr < run.send_cap);
            run.send_ns[pacer->next_corr] = next_due;
            queue_frame(pacer, 0);
            next_due += interval_ns;
        }
        for (int i = 0; i < conn_count; i++)
            flush_send(&conns[i]);
        int64_t wait_ns = 50000000;
        if (pacer != NULL && now < run.end_ns)
            wait_ns = next_due > now ? next_due - now : 0;
        struct __kernel_timespec ts = {.tv_sec = wait_ns / 1000000000,
                                       .tv_nsec = wait_ns % 1000000000};
        struct io_uring_cqe *cqe;
        int rc = io_uring_submit_and_wait_timeout(&ring, &cqe, 1, &ts, NULL);
        if (rc < 0 && rc != -ETIME && rc != -EINTR) {
            fail("io_uring_submit_and_wait_timeout failed");
            break;
        }
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&ring, head, cqe)
        {
            struct lconn *c = &conns[cqe->user_data >> 8];
            if ((cqe->user_data & 0xff) == OP_SEND)
                on_send(c, cqe->res);
            else
                on_recv(c, cqe->res);
            seen++;
        }
        io_uring_cq_advance(&ring, seen);
    }
    sample_cpu(now_ns(), true);
}

static void run_begin(void)
{
    int rc = io_uring_queue_init(256, &ring, 0);
    TURBINE_ASSERT(rc == 0);
    int64_t *send_ns = run.send_ns;
    size_t send_cap = run.send_cap;
    memset(&run, 0, sizeof(run));
    run.send_ns = send_ns, run.send_cap = send_cap;
    conn_count = 0;
    turbine_histogram_reset(&latency);
}

static void run_end(void)
{
    for (int i = 0; i < conn_count; i++)
        close(conns[i].fd);
    io_uring_queue_exit(&ring);
}

static void set_times(double seconds)
{
    run.start_ns = now_ns();
    run.measure_ns = run.start_ns + (int64_t)(opt.warmup * 1e9);
    run.end_ns = run.measure_ns + (int64_t)(seconds * 1e9);
}

static void cpu_result(struct result *out, uint64_t records)
{
    double cpu = run.cpu_end_us - run.cpu_start_us;
    double wall_us = (double)(run.cpu_end_ns - run.cpu_start_ns) / 1e3;
    out->cpu_us_per_msg = records > 0 ? cpu / (double)records : 0;
    out->server_util = wall_us > 0 ? cpu / wall_us : 0;
}

/* Produce throughput: CONNECTIONS connections, WINDOW PRODUCEs in flight each. */
static bool run_produce(int port, const char *topic, int partitions, int16_t acks,
                        struct result *out)
{
    run_begin();
    for (int i = 0; i < CONNECTIONS; i++)
        add_producer(port, PRODUCER, topic, acks, WINDOW);
    set_times(opt.seconds);
    if (!run.failed)
        pump(RUN_PRODUCE, partitions, NULL, 0);
    run_end();
    out->msgs_per_s = (double)run.acked_records / opt.seconds;
    out->mb_per_s = out->msgs_per_s * RECORD_BYTES / 1e6;
    cpu_result(out, run.acked_records);
    return !run.failed && run.acked_records > 0;
}

/* Fetch throughput: CONNECTIONS consumers, each reading its share of `partitions` partitions
 * from offset 0 to the end, one FETCH in flight, no long poll. */
static bool run_fetch(int port, const char *topic, int partitions, struct result *out)
{
    run_begin();
    for (int i = 0; i < CONNECTIONS && i < partitions; i++) {
        struct lconn *c = add_conn(port, CONSUMER);
        if (c == NULL)
            break;
        c->topic = topic;
        for (int p = i; p < partitions; p += CONNECTIONS)
            c->partitions[c->partition_count++] = p;
        queue_fetch(c);
    }
    run.start_ns = run.measure_ns = now_ns();
    run.end_ns = run.start_ns + (int64_t)(opt.seconds * 1e9);
    if (!run.failed)
        pump(RUN_FETCH, partitions, NULL, 0);
    double seconds = (double)(now_ns() - run.start_ns) / 1e9;
    run_end();
    out->mb_per_s = (double)run.fetched_bytes / 1e6 / seconds;
    out->msgs_per_s = (double)run.fetched_records / seconds;
    cpu_result(out, run.fetched_records);
    return !run.failed && run.fetched_records > 0;
}

static void latency_result(struct result *out)
{
    out->p50_ns = turbine_histogram_percentile(&latency, 50);
    out->p99_ns = turbine_histogram_percentile(&latency, 99);
    out->p999_ns = turbine_histogram_percentile(&latency, 99.9);
}

static int64_t e2e_interval_ns(void)
{
    return (int64_t)(1e9 * RECORDS * RECORD_BYTES / E2E_RATE_BPS);
}

/* End-to-end: one producer paced at E2E_RATE_BPS (acks=1) and one consumer long-polling the
 * same partition; each record timed from when its PRODUCE was due to when its FETCH response
 * arrived. */
static bool run_e2e(int port, struct result *out)
{
    run_begin();
    struct lconn *producer =
        add_producer(port, PRODUCER, TOPIC_E2E, TURBINE_ACKS_LEADER, E2E_WINDOW);
    struct lconn *consumer = add_conn(port, CONSUMER);
    if (producer != NULL && consumer != NULL) {
        consumer->topic = TOPIC_E2E;
        consumer->partition_count = 1;
        consumer->max_wait_ms = 500;
        queue_fetch(consumer);
        set_times(opt.seconds);
        pump(RUN_E2E, 1, producer, e2e_interval_ns());
        uint64_t produced = (uint64_t)producer->next_corr * RECORDS;
        if (run.fetched_records != produced) {
            fprintf(stderr, "broker_bench: e2e: %llu records produced, %llu fetched\n",
                    (unsigned long long)produced, (unsigned long long)run.fetched_records);
            fail("e2e: not every record was consumed");
        }
    }
    run_end();
    latency_result(out);
    if (!run.failed && turbine_histogram_count(&latency) == 0)
        fprintf(stderr,
                "broker_bench: e2e: no record timed (%llu records fetched; PRODUCEs: %u sent, "
                "%u unanswered)\n",
                (unsigned long long)run.fetched_records, producer != NULL ? producer->next_corr : 0,
                producer != NULL ? producer->in_flight : 0);
    return !run.failed && turbine_histogram_count(&latency) > 0;
}

/* The latency floor: the same frames at the same rate over one connection to echo_uring. */
static bool run_pingpong(int port, struct result *out)
{
    run_begin();
    struct lconn *c = add_producer(port, ECHO, TOPIC_E2E, TURBINE_ACKS_LEADER, E2E_WINDOW);
    set_times(opt.seconds);
    if (c != NULL)
        pump(RUN_ECHO, 1, c, e2e_interval_ns());
    run_end();
    latency_result(out);
    if (!run.failed && c != NULL && turbine_histogram_count(&latency) == 0)
        fprintf(stderr, "broker_bench: ping-pong: no message timed (%u sent, %u not back)\n",
                c->next_corr, c->in_flight);
    return !run.failed && turbine_histogram_count(&latency) > 0;
}

/* ---- rounds and figures ------------------------------------------------------------------- */

enum figure {
    FIG_CEIL_1,
    FIG_CEIL_ALL,
    FIG_P_1,
    FIG_P_ALL,
    FIG_P_1_8P,
    FIG_P_ALL_8P,
    FIG_FETCH,
    FIG_E2E,
    FIG_PING,
    FIGURE_COUNT
};
static const char *const figure_names[FIGURE_COUNT] = {
    "ceiling acks=1",  "ceiling acks=all",   "broker acks=1",
    "broker acks=all", "broker acks=1 8p",   "broker acks=all 8p",
    "broker fetch 8p", "broker e2e 100MB/s", "tcp ping-pong 100MB/s"};
static struct result samples[FIGURE_COUNT][ROUNDS_MAX];
static bool failed[FIGURE_COUNT];

static void record(enum figure f, int round, bool ok)
{
    if (!ok) {
        fprintf(stderr, "broker_bench: round %d: %s failed\n", round + 1, figure_names[f]);
        failed[f] = true;
    }
    run.failed = false;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void sink_round(int round)
{
    int port = free_port();
    char port_s[16], file[PATH_MAX + 16];
    snprintf(port_s, sizeof(port_s), "%d", port);
    snprintf(file, sizeof(file), "%s/sink.log", data_dir);
    char *argv[] = {sink_path, "--cpu", "0", "--port", port_s, "--file", file, NULL};
    pid_t pid = start_server(argv, port);
    if (pid < 0) {
        record(FIG_CEIL_1, round, false);
        record(FIG_CEIL_ALL, round, false);
        return;
    }
    record(FIG_CEIL_1, round,
           run_produce(port, TOPIC_1P, 1, TURBINE_ACKS_LEADER, &samples[FIG_CEIL_1][round]));
    record(FIG_CEIL_ALL, round,
           run_produce(port, TOPIC_1P, 1, TURBINE_ACKS_ALL, &samples[FIG_CEIL_ALL][round]));
    stop_child(pid);
    child = 0;
    unlink(file);
}

static void broker_round(int round)
{
    int port = free_port();
    char port_s[16], dir[PATH_MAX + 32];
    snprintf(port_s, sizeof(port_s), "%d", port);
    snprintf(dir, sizeof(dir), "%s/broker%d", data_dir, round);
    /* --poll-us 0: the sink blocks in the kernel as soon as it is idle, so the broker does too;
     * spinning would bill idle time as server CPU per record */
    char *argv[] = {opt.turbine,    "broker", "--smp",       "1",    "--cpuset", "0",
                    "--poll-us",    "0",      "--data-dir",  dir,    "--port",   port_s,
                    "--admin-port", "0",      "--log-level", "warn", NULL};
    pid_t pid = start_server(argv, port);
    bool ok = pid > 0 && create_topic(port, TOPIC_1P, 1) && create_topic(port, TOPIC_8P, 8) &&
              create_topic(port, TOPIC_E2E, 1);
    struct {
        enum figure f;
        const char *topic;
        int partitions;
        int16_t acks;
    } produce[] = {{FIG_P_1, TOPIC_1P, 1, TURBINE_ACKS_LEADER},
                   {FIG_P_ALL, TOPIC_1P, 1, TURBINE_ACKS_ALL},
                   {FIG_P_1_8P, TOPIC_8P, 8, TURBINE_ACKS_LEADER},
                   {FIG_P_ALL_8P, TOPIC_8P, 8, TURBINE_ACKS_ALL}};
    for (size_t i = 0; i < sizeof(produce) / sizeof(produce[0]); i++)
        record(produce[i].f, round,
               ok && run_produce(port, produce[i].topic, produce[i].partitions, produce[i].acks,
                                 &samples[produce[i].f][round]));
    record(FIG_FETCH, round, ok && run_fetch(port, TOPIC_8P, 8, &samples[FIG_FETCH][round]));
    record(FIG_E2E, round, ok && run_e2e(port, &samples[FIG_E2E][round]));
    if (pid > 0 && !stop_child(pid))
        fprintf(stderr, "broker_bench: the broker did not stop on SIGTERM\n");
    child = 0;
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void echo_round(int round)
{
    int port = free_port();
    char port_s[16];
    snprintf(port_s, sizeof(port_s), "%d", port);
    char *argv[] = {echo_path, "--cpu", "0", "--port", port_s, NULL};
    pid_t pid = start_server(argv, port);
    record(FIG_PING, round, pid > 0 && run_pingpong(port, &samples[FIG_PING][round]));
    if (pid > 0)
        stop_child(pid);
    child = 0;
}

enum field { MSGS, MBS, P50, P99, P999, CPU, UTIL };

static double field_of(const struct result *r, enum field field)
{
    switch (field) {
    case MSGS:
        return r->msgs_per_s;
    case MBS:
        return r->mb_per_s;
    case P50:
        return (double)r->p50_ns / 1e3;
    case P99:
        return (double)r->p99_ns / 1e3;
    case P999:
        return (double)r->p999_ns / 1e3;
    case CPU:
        return r->cpu_us_per_msg;
    case UTIL:
        return r->server_util * 100;
    }
    return 0;
}

/* The median of `field` over the rounds; runs[] gets each round's value. */
static double median(enum figure f, enum field field, double *runs)
{
    double sorted[ROUNDS_MAX];
    for (int r = 0; r < opt.rounds; r++)
        runs[r] = sorted[r] = field_of(&samples[f][r], field);
    return bench_median_f64(sorted, opt.rounds);
}

static void report(const char *name, enum figure f, enum field field, const char *unit,
                   const char *baseline, enum figure base, enum field base_field)
{
    if (failed[f] || (baseline != NULL && failed[base])) {
        printf("info: %s: skipped, a run failed\n", name);
        return;
    }
    double runs[ROUNDS_MAX], base_runs[ROUNDS_MAX];
    double value = median(f, field, runs);
    double base_value = baseline != NULL ? median(base, base_field, base_runs) : 0;
    bench_report(name, value, unit, baseline, base_value, runs, opt.rounds);
}

static void report_all(void)
{
    for (int f = 0; f < FIGURE_COUNT; f++) {
        if (failed[f])
            continue;
        double runs[ROUNDS_MAX];
        if (f == FIG_E2E || f == FIG_PING)
            printf("info: %s: p50 %.1f us, p99 %.1f us, p99.9 %.1f us\n", figure_names[f],
                   median((enum figure)f, P50, runs), median((enum figure)f, P99, runs),
                   median((enum figure)f, P999, runs));
        else
            printf("info: %s: %.0f msgs/s, %.1f MB/s, server %.2f us CPU/msg, %.0f%% of a CPU\n",
                   figure_names[f], median((enum figure)f, MSGS, runs),
                   median((enum figure)f, MBS, runs), median((enum figure)f, CPU, runs),
                   median((enum figure)f, UTIL, runs));
    }
    fflush(stdout);
    report("produce_acks1_1KB", FIG_P_1, MSGS, "msgs/s", "ceiling", FIG_CEIL_1, MSGS);
    report("produce_acksall_1KB", FIG_P_ALL, MSGS, "msgs/s", "ceiling", FIG_CEIL_ALL, MSGS);
    report("produce_acks1_1KB_8p", FIG_P_1_8P, MSGS, "msgs/s", "ceiling", FIG_CEIL_1, MSGS);
    report("produce_acksall_1KB_8p", FIG_P_ALL_8P, MSGS, "msgs/s", "ceiling", FIG_CEIL_ALL, MSGS);
    report("produce_acks1_1KB_cpu", FIG_P_1, CPU, "us/msg", "ceiling", FIG_CEIL_1, CPU);
    report("produce_acksall_1KB_cpu", FIG_P_ALL, CPU, "us/msg", "ceiling", FIG_CEIL_ALL, CPU);
    report("fetch_1KB", FIG_FETCH, MBS, "MB/s", NULL, FIG_FETCH, MBS);
    report("e2e_p50_100MBps", FIG_E2E, P50, "us", "tcp_pingpong_p50", FIG_PING, P50);
    report("e2e_p99_100MBps", FIG_E2E, P99, "us", "tcp_pingpong_p99", FIG_PING, P99);
    report("e2e_p999_100MBps", FIG_E2E, P999, "us", "tcp_pingpong_p999", FIG_PING, P999);
}

static void find_programs(void)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0) {
        perror("broker_bench: readlink /proc/self/exe");
        exit(1);
    }
    self[n] = '\0';
    const char *dir = dirname(self);
    snprintf(sink_path, PATH_MAX, "%.*s/peers/sink_uring", PATH_MAX - 32, dir);
    snprintf(echo_path, PATH_MAX, "%.*s/peers/echo_uring", PATH_MAX - 32, dir);
    if (opt.turbine[0] == '\0')
        snprintf(opt.turbine, PATH_MAX, "%.*s/../turbine", PATH_MAX - 32, dir);
    if (access(sink_path, X_OK) != 0 || access(echo_path, X_OK) != 0 ||
        access(opt.turbine, X_OK) != 0) {
        fprintf(stderr, "broker_bench: %s, %s or %s is missing (run make)\n", sink_path, echo_path,
                opt.turbine);
        exit(1);
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: broker_bench [--quick] [--rounds N] [--seconds S] [--warmup S] "
                    "[--turbine PATH]\n");
    exit(2);
}

static void parse(int argc, char **argv)
{
    static const struct option options[] = {
        {"quick", no_argument, NULL, 'q'},         {"rounds", required_argument, NULL, 'r'},
        {"seconds", required_argument, NULL, 's'}, {"warmup", required_argument, NULL, 'w'},
        {"turbine", required_argument, NULL, 't'}, {0}};
    int o;
    while ((o = getopt_long(argc, argv, "", options, NULL)) != -1) {
        if (o == 'q')
            opt.rounds = 1, opt.seconds = 1.0, opt.warmup = 0.3;
        else if (o == 'r')
            opt.rounds = atoi(optarg);
        else if (o == 's')
            opt.seconds = atof(optarg);
        else if (o == 'w')
            opt.warmup = atof(optarg);
        else if (o == 't')
            snprintf(opt.turbine, sizeof(opt.turbine), "%s", optarg);
        else
            usage();
    }
    if (opt.rounds < 1 || opt.rounds > ROUNDS_MAX || opt.seconds <= 0 || opt.warmup < 0)
        usage();
}

int main(int argc, char **argv)
{
    parse(argc, argv);
    find_programs();
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(CLIENT_CPU, &set);
    if (sched_setaffinity(0, sizeof(set), &set) != 0) {
        perror("broker_bench: sched_setaffinity (needs 2 CPUs)");
        return 1;
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(data_dir, sizeof(data_dir), "%s/turbine-bench.XXXXXX",
             tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
    if (mkdtemp(data_dir) == NULL) {
        perror("broker_bench: mkdtemp");
        return 1;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    build_batch();
    run.send_cap = (size_t)((opt.warmup + opt.seconds + 1) * 1e9 / (double)e2e_interval_ns());
    run.send_ns = calloc(run.send_cap, sizeof(int64_t));
    for (int i = 0; i < CONN_MAX; i++) {
        conns[i].rbuf = malloc(RECV_BYTES);
        conns[i].slots = malloc(RECV_BYTES);
        TURBINE_ASSERT(conns[i].rbuf != NULL && conns[i].slots != NULL);
    }
    TURBINE_ASSERT(run.send_ns != NULL);
    for (int r = 0; r < opt.rounds; r++) {
        sink_round(r);
        broker_round(r);
        echo_round(r);
    }
    nftw(data_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    report_all();
    for (int f = 0; f < FIGURE_COUNT; f++) {
        if (failed[f])
            return 1;
    }
    return 0;
}
