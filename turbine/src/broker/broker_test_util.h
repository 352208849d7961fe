/* SPDX-License-Identifier: MIT
 * broker_test_util.h - what the broker's end-to-end tests share: spawning the real
 * build/$MODE/turbine on a temporary data directory and a free port, blocking sockets, and
 * requests and responses through the codec (turbine/protocol.h). Header-only (static).
 */
#ifndef TURBINE_BROKER_TEST_UTIL_H
#define TURBINE_BROKER_TEST_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "turbine/batch.h"
#include "turbine/protocol.h"

struct tb_broker {
    pid_t pid;
    int port;
    char dir[256];
    char log[300];
    char bin[512];
};

static inline int64_t tb_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int64_t tb_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static inline int tb_free_port(void)
{
    int probe = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof(a);
    CHECK_EQ(bind(probe, (struct sockaddr *)&a, sizeof(a)), 0);
    CHECK_EQ(getsockname(probe, (struct sockaddr *)&a, &alen), 0);
    close(probe);
    return ntohs(a.sin_port);
}

/* A fresh data directory and port; the binary next to the test's directory. */
static inline void tb_init(struct tb_broker *b, const char *name)
{
    memset(b, 0, sizeof(*b));
    snprintf(b->bin, sizeof(b->bin), "%s/../turbine", test_self_dir());
    if (access(b->bin, X_OK) != 0)
        test_skip("build/$MODE/turbine is not built");
    snprintf(b->dir, sizeof(b->dir), "/tmp/turbine-%s-XXXXXX", name);
    CHECK(mkdtemp(b->dir) != NULL);
    snprintf(b->log, sizeof(b->log), "%s.log", b->dir);
    b->port = tb_free_port();
}

static inline void tb_print_log(const struct tb_broker *b)
{
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "tail -n 40 %s 1>&2", b->log);
    if (system(cmd) < 0)
        perror("system");
}

/* Starts the broker (`smp` cores, extra NULL-terminated flags) and waits for it to serve. */
static inline void tb_start(struct tb_broker *b, unsigned smp, const char *const *extra)
{
    char port[16], smp_s[16];
    snprintf(port, sizeof(port), "%d", b->port);
    snprintf(smp_s, sizeof(smp_s), "%u", smp);
    const char *argv[64] = {b->bin,     "broker", "--data-dir",    b->dir, "--port",    port,
                            "--smp",    smp_s,    "--admin-port",  "0",    "--poll-us", "0",
                            "--memory", "512M",   "--cache-bytes", "16M"};
    int argc = 16;
    for (int i = 0; extra && extra[i]; i++)
        argv[argc++] = extra[i];
    argv[argc] = NULL;
    int fd = open(b->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    CHECK_GE(fd, 0);
    off_t start = lseek(fd, 0, SEEK_END);
    b->pid = fork();
    CHECK_GE(b->pid, 0);
    if (b->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed test leaves no broker serving its port */
        dup2(fd, 1);
        dup2(fd, 2);
        execv(b->bin, (char *const *)argv);
        _exit(127);
    }
    close(fd);
    for (int64_t end = tb_now_ms() + 20000; tb_now_ms() < end;) {
        char buf[4096] = {0};
        int r = open(b->log, O_RDONLY);
        ssize_t n = pread(r, buf, sizeof(buf) - 1, start);
        close(r);
        if (n > 0 && strstr(buf, "serving") != NULL)
            return;
        int status;
        if (waitpid(b->pid, &status, WNOHANG) == b->pid) {
            tb_print_log(b);
            test_fail_(__FILE__, __LINE__, "the broker exited at start (status %d)", status);
        }
        usleep(5000);
    }
    tb_print_log(b);
    test_fail_(__FILE__, __LINE__, "the broker did not start serving");
}

/* Sends `sig` and waits; returns the wait status. */
static inline int tb_stop(struct tb_broker *b, int sig)
{
    kill(b->pid, sig);
    int status = 0;
    CHECK_EQ(waitpid(b->pid, &status, 0), b->pid);
    b->pid = 0;
    return status;
}

static inline void tb_stop_clean(struct tb_broker *b)
{
    int status = tb_stop(b, SIGTERM);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        tb_print_log(b);
        test_fail_(__FILE__, __LINE__, "the broker did not stop cleanly (status %d)", status);
    }
}

static inline void tb_cleanup(struct tb_broker *b)
{
    if (b->pid > 0)
        tb_stop(b, SIGKILL);
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf %s %s", b->dir, b->log);
    if (system(cmd) != 0)
        fprintf(stderr, "cleanup of %s failed\n", b->dir);
}

/* ---- sockets -------------------------------------------------------------------------------- */

static inline int tb_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK_GE(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_EQ(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct timeval tv = {.tv_sec = 30};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

static inline void tb_send(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        CHECK_GT(w, 0);
        p += w;
        n -= (size_t)w;
    }
}

/* Reads exactly n bytes; false at end of stream or error. */
static inline bool tb_read_exact(int fd, void *buf, size_t n)
{
    char *p = buf;
    while (n > 0) {
        ssize_t r = recv(fd, p, n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        p += r;
        n -= (size_t)r;
    }
    return true;
}

/* Reads one response frame into a malloc'd buffer (*frame) and parses it. False at end of
 * stream. */
static inline bool tb_recv(int fd, uint8_t **frame, struct turbine_response *resp)
{
    uint8_t prefix[4];
    if (!tb_read_exact(fd, prefix, 4))
        return false;
    uint32_t n;
    CHECK_EQ(turbine_frame_prefix(prefix, 1u << 30, TURBINE_FRAME_RESPONSE, &n), TURBINE_ERR_NONE);
    *frame = malloc(4 + (size_t)n);
    CHECK(*frame != NULL);
    memcpy(*frame, prefix, 4);
    CHECK(tb_read_exact(fd, *frame + 4, n));
    CHECK_EQ(turbine_response_parse(*frame, 4 + (size_t)n, resp), TURBINE_ERR_NONE);
    return true;
}

/* True when the peer closed (or reset) within timeout_ms, reading and dropping what comes. */
static inline bool tb_closed_within(int fd, int timeout_ms)
{
    for (int64_t end = tb_now_ms() + timeout_ms; tb_now_ms() < end;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        char buf[4096];
        ssize_t r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (r == 0 || (r < 0 && errno != EAGAIN))
            return true;
    }
    return false;
}

/* ---- requests ------------------------------------------------------------------------------- */

struct tb_writer {
    struct turbine_proto_writer w;
    uint8_t *buf;
};

static inline void tb_writer_init(struct tb_writer *t, size_t cap)
{
    t->buf = malloc(cap);
    CHECK(t->buf != NULL);
    turbine_proto_writer_init(&t->w, t->buf, cap, NULL, 0);
}

static inline void tb_writer_send(struct tb_writer *t, int fd)
{
    CHECK_EQ(t->w.error, 0);
    tb_send(fd, t->buf, t->w.used);
    free(t->buf);
}

static uint32_t tb_corr = 1;

static inline uint16_t tb_create_topic(int fd, const char *name, int32_t partitions,
                                       uint8_t durability)
{
    struct tb_writer t;
    tb_writer_init(&t, 1024);
    uint32_t corr = tb_corr++;
    struct turbine_create_topics_request head = {.timeout_ms = 10000, .topic_count = 1};
    turbine_create_topics_request_begin(&t.w, corr, &head);
    struct turbine_create_topic ct = {.name = name,
                                      .name_size = (uint16_t)strlen(name),
                                      .partitions = partitions,
                                      .config = {TURBINE_CONFIG_DEFAULT, TURBINE_CONFIG_DEFAULT,
                                                 TURBINE_CONFIG_DEFAULT, durability}};
    turbine_create_topics_add_topic(&t.w, &ct);
    CHECK_GT(turbine_proto_frame_end(&t.w), 0);
    tb_writer_send(&t, fd);
    uint8_t *frame;
    struct turbine_response resp;
    CHECK(tb_recv(fd, &frame, &resp));
    CHECK_EQ(resp.correlation_id, corr);
    CHECK_EQ(resp.error, TURBINE_ERR_NONE);
    struct turbine_topics_response tr;
    CHECK_EQ(turbine_topics_response_decode(&resp, &tr), TURBINE_ERR_NONE);
    struct turbine_topic_result r;
    CHECK(turbine_topics_next_result(&tr.topics, &r));
    free(frame);
    return r.error;
}

/* Encodes a produce request of one partition; returns its correlation id. */
static inline uint32_t tb_produce_send(int fd, const char *topic, int32_t partition, int16_t acks,
                                       const void *records, uint32_t size)
{
    struct tb_writer t;
    tb_writer_init(&t, 512 + size);
    uint32_t corr = tb_corr++;
    struct turbine_produce_request head = {.acks = acks, .timeout_ms = 20000, .topic_count = 1};
    turbine_produce_request_begin(&t.w, corr, &head);
    turbine_proto_add_topic(&t.w, topic, strlen(topic), 1);
    struct turbine_produce_partition pp = {
        .partition = partition, .records = records, .records_size = size};
    turbine_produce_add_partition(&t.w, &pp);
    CHECK_GT(turbine_proto_frame_end(&t.w), 0);
    tb_writer_send(&t, fd);
    return corr;
}

/* Reads a one-partition produce response; returns the base offset, *error its error. */
static inline int64_t tb_produce_recv(int fd, uint32_t corr, uint16_t *error)
{
    uint8_t *frame;
    struct turbine_response resp;
    CHECK(tb_recv(fd, &frame, &resp));
    CHECK_EQ(resp.correlation_id, corr);
    CHECK_EQ(resp.api_key, TURBINE_API_PRODUCE);
    CHECK_EQ(resp.error, TURBINE_ERR_NONE);
    struct turbine_produce_response pr;
    CHECK_EQ(turbine_produce_response_decode(&resp, &pr), TURBINE_ERR_NONE);
    struct turbine_proto_topic t;
    struct turbine_produce_result r;
    CHECK(turbine_proto_next_topic(&pr.topics, &t));
    CHECK(turbine_produce_next_result(&t.partitions, &r));
    free(frame);
    *error = r.error;
    return r.base_offset;
}

static inline int64_t tb_produce(int fd, const char *topic, int32_t partition, int16_t acks,
                                 const void *records, uint32_t size, uint16_t *error)
{
    uint32_t corr = tb_produce_send(fd, topic, partition, acks, records, size);
    return tb_produce_recv(fd, corr, error);
}

struct tb_fetched {
    uint16_t error;
    int64_t high_watermark, log_end, log_start;
    uint8_t *records; /* malloc'd */
    uint32_t size;
};

/* Fetches partitions[0..n) of `topic` from offsets[i]; results in out[i]. */
static inline void tb_fetch_many(int fd, const char *topic, int32_t n, const int32_t *partitions,
                                 const int64_t *offsets, int32_t max_wait_ms, int32_t min_bytes,
                                 int32_t max_bytes, struct tb_fetched *out)
{
    struct tb_writer t;
    tb_writer_init(&t, 512 + 16 * (size_t)n);
    uint32_t corr = tb_corr++;
    struct turbine_fetch_request head = {.max_wait_ms = max_wait_ms,
                                         .min_bytes = min_bytes,
                                         .max_bytes = max_bytes,
                                         .topic_count = 1};
    turbine_fetch_request_begin(&t.w, corr, &head);
    turbine_proto_add_topic(&t.w, topic, strlen(topic), (uint32_t)n);
    for (int32_t i = 0; i < n; i++) {
        struct turbine_fetch_partition fp = {.partition = partitions[i],
                                             .fetch_offset = offsets[i],
                                             .partition_max_bytes = max_bytes};
        turbine_fetch_add_partition(&t.w, &fp);
    }
    CHECK_GT(turbine_proto_frame_end(&t.w), 0);
    tb_writer_send(&t, fd);
    uint8_t *frame;
    struct turbine_response resp;
    CHECK(tb_recv(fd, &frame, &resp));
    CHECK_EQ(resp.correlation_id, corr);
    CHECK_EQ(resp.error, TURBINE_ERR_NONE);
    struct turbine_fetch_response fr;
    CHECK_EQ(turbine_fetch_response_decode(&resp, &fr), TURBINE_ERR_NONE);
    struct turbine_proto_topic tt;
    CHECK(turbine_proto_next_topic(&fr.topics, &tt));
    CHECK_EQ(tt.partition_count, (uint32_t)n);
    for (int32_t i = 0; i < n; i++) {
        struct turbine_fetch_result r;
        CHECK(turbine_fetch_next_result(&tt.partitions, &r));
        CHECK_EQ(r.partition, partitions[i]);
        out[i] = (struct tb_fetched){.error = r.error,
                                     .high_watermark = r.high_watermark,
                                     .log_end = r.log_end_offset,
                                     .log_start = r.log_start_offset,
                                     .size = r.records_size};
        out[i].records = malloc(r.records_size + 1);
        memcpy(out[i].records, r.records, r.records_size);
    }
    free(frame);
}

static inline struct tb_fetched tb_fetch(int fd, const char *topic, int32_t partition,
                                         int64_t offset, int32_t max_wait_ms, int32_t min_bytes,
                                         int32_t max_bytes)
{
    struct tb_fetched f;
    tb_fetch_many(fd, topic, 1, &partition, &offset, max_wait_ms, min_bytes, max_bytes, &f);
    return f;
}

/* ---- batches -------------------------------------------------------------------------------- */

static inline uint64_t tb_splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* One batch of `records` records whose values derive from `seed`; returns its size. */
static inline uint32_t tb_make_batch(uint8_t *out, size_t cap, uint64_t seed, int records,
                                     int value_max)
{
    struct turbine_record_in rec[64];
    static uint8_t values[64][4096];
    CHECK_LE(records, 64);
    CHECK_LE(value_max, 4096);
    uint64_t s = seed;
    for (int i = 0; i < records; i++) {
        int len = (int)(tb_splitmix(&s) % (uint64_t)value_max) + 1;
        for (int k = 0; k < len; k++)
            values[i][k] = (uint8_t)tb_splitmix(&s);
        rec[i] = (struct turbine_record_in){.timestamp = 1700000000000 + (int64_t)seed,
                                            .key = "k",
                                            .key_size = 1,
                                            .value = values[i],
                                            .value_size = len};
    }
    struct turbine_batch_params params = {.base_offset = 0,
                                          .partition_leader_epoch = -1,
                                          .producer_id = -1,
                                          .producer_epoch = -1,
                                          .base_sequence = -1};
    int64_t n = turbine_batch_encode(out, cap, &params, rec, records);
    CHECK_GT(n, 0);
    return (uint32_t)n;
}

/* True when stored batch `got` is produced batch `sent` with baseOffset `offset` (the fields
 * the broker stamps, baseOffset and partitionLeaderEpoch, aside; the CRC covers the rest). */
static inline bool tb_batch_matches(const uint8_t *got, const uint8_t *sent, uint32_t size,
                                    int64_t offset)
{
    struct turbine_batch_header h;
    turbine_batch_header_decode(got, &h);
    return h.base_offset == offset &&
           memcmp(got + TURBINE_BATCH_OFF_BATCH_LENGTH, sent + TURBINE_BATCH_OFF_BATCH_LENGTH, 4) ==
               0 &&
           memcmp(got + TURBINE_BATCH_OFF_MAGIC, sent + TURBINE_BATCH_OFF_MAGIC,
                  size - TURBINE_BATCH_OFF_MAGIC) == 0;
}

static inline uint32_t tb_batch_size(const uint8_t *batch)
{
    struct turbine_batch_header h;
    turbine_batch_header_decode(batch, &h);
    return (uint32_t)h.batch_length + TURBINE_BATCH_LOG_OVERHEAD;
}

#endif
