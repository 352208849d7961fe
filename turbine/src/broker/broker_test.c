/* SPDX-License-Identifier: MIT
 * broker_test.c - the broker end to end: the real build/$MODE/turbine on a temporary data
 * directory, driven over raw sockets with the codec. Produce then fetch (bytes identical,
 * offsets dense), pipelining, acks 0/1/all, long poll woken by a produce, many partitions over
 * two cores, list offsets, delete, restart persistence with consumer offsets, and bad input
 * (oversized length, short length, unknown API, bad flags, malformed body, corrupt batch,
 * garbage, slowloris, idle) answered without affecting another connection. Fixed seeds.
 * LOOM_TEST_TAGS: tsan no-valgrind timeout=240
 */
#include "broker/broker_test_util.h"

#define BATCHES 200

static struct tb_broker broker;

static uint16_t metadata_ok(int fd)
{
    struct tb_writer t;
    tb_writer_init(&t, 256);
    uint32_t corr = tb_corr++;
    struct turbine_metadata_request head = {.topic_count = 0};
    turbine_metadata_request_begin(&t.w, corr, &head);
    CHECK_GT(turbine_proto_frame_end(&t.w), 0);
    tb_writer_send(&t, fd);
    uint8_t *frame;
    struct turbine_response resp;
    CHECK(tb_recv(fd, &frame, &resp));
    CHECK_EQ(resp.correlation_id, corr);
    struct turbine_metadata_response mr;
    uint16_t e = turbine_metadata_response_decode(&resp, &mr);
    free(frame);
    return e;
}

/* Produce BATCHES batches (acks 1), pipelined 8 at a time; fetch them all back. */
static void test_produce_fetch(int fd)
{
    CHECK_EQ(tb_create_topic(fd, "events", 1, 0), TURBINE_ERR_NONE);
    CHECK_EQ(tb_create_topic(fd, "events", 1, 0), TURBINE_ERR_TOPIC_EXISTS);
    static uint8_t sent[BATCHES][80000];
    static uint32_t sizes[BATCHES];
    static int64_t offsets[BATCHES];
    int64_t expect = 0;
    for (int i = 0; i < BATCHES; i += 8) {
        uint32_t corr[8];
        for (int k = 0; k < 8; k++) {
            int records = 1 + (i + k) % 17;
            sizes[i + k] = tb_make_batch(sent[i + k], sizeof(sent[0]), 1000 + (uint64_t)(i + k),
                                         records, (i + k) % 5 == 0 ? 4000 : 200);
            corr[k] = tb_produce_send(fd, "events", 0, 1, sent[i + k], sizes[i + k]);
        }
        for (int k = 0; k < 8; k++) { /* answered in order */
            uint16_t err;
            offsets[i + k] = tb_produce_recv(fd, corr[k], &err);
            CHECK_EQ(err, TURBINE_ERR_NONE);
            CHECK_EQ(offsets[i + k], expect); /* dense */
            expect += 1 + (i + k) % 17;
        }
    }
    /* fetch everything, in several responses of at most 64 KiB */
    int next = 0;
    int64_t pos = 0;
    while (next < BATCHES) {
        struct tb_fetched f = tb_fetch(fd, "events", 0, pos, 0, 0, 65536);
        CHECK_EQ(f.error, TURBINE_ERR_NONE);
        CHECK_EQ(f.high_watermark, expect);
        CHECK_GT(f.size, 0);
        for (uint32_t off = 0; off < f.size; next++) {
            CHECK_LT(next, BATCHES);
            uint32_t size = tb_batch_size(f.records + off);
            CHECK_EQ(size, sizes[next]);
            CHECK(tb_batch_matches(f.records + off, sent[next], size, offsets[next]));
            CHECK_EQ(turbine_batch_validate(f.records + off, size, NULL), TURBINE_BATCH_OK);
            off += size;
        }
        pos = next < BATCHES ? offsets[next] : expect;
        free(f.records);
    }
    /* at the end: nothing, no error; past the end: out of range */
    struct tb_fetched f = tb_fetch(fd, "events", 0, expect, 0, 0, 65536);
    CHECK_EQ(f.error, TURBINE_ERR_NONE);
    CHECK_EQ(f.size, 0);
    free(f.records);
    f = tb_fetch(fd, "events", 0, expect + 5, 0, 0, 65536);
    CHECK_EQ(f.error, TURBINE_ERR_OFFSET_OUT_OF_RANGE);
    free(f.records);
    f = tb_fetch(fd, "nope", 0, 0, 0, 0, 65536);
    CHECK_EQ(f.error, TURBINE_ERR_UNKNOWN_TOPIC);
    free(f.records);
    f = tb_fetch(fd, "events", 7, 0, 0, 0, 65536);
    CHECK_EQ(f.error, TURBINE_ERR_UNKNOWN_PARTITION);
    free(f.records);
    printf("  produce/fetch: %d batches, %" PRId64 " records, bytes identical\n", BATCHES, expect);
}

/* acks 0 has no response (the next response is the next request's); acks all on an fsync
 * topic; a corrupt batch is refused. */
static void test_acks(int fd)
{
    CHECK_EQ(tb_create_topic(fd, "acks", 1, TURBINE_TOPIC_DURABILITY_FSYNC), TURBINE_ERR_NONE);
    uint8_t batch[8192];
    uint32_t size = tb_make_batch(batch, sizeof(batch), 7, 3, 100);
    tb_produce_send(fd, "acks", 0, 0, batch, size); /* no response */
    uint16_t err;
    int64_t off = tb_produce(fd, "acks", 0, 1, batch, size, &err);
    CHECK_EQ(err, TURBINE_ERR_NONE);
    CHECK_EQ(off, 3);
    off = tb_produce(fd, "acks", 0, -1, batch, size, &err);
    CHECK_EQ(err, TURBINE_ERR_NONE);
    CHECK_EQ(off, 6);
    batch[size - 1] ^= 1; /* CRC mismatch */
    off = tb_produce(fd, "acks", 0, -1, batch, size, &err);
    CHECK_EQ(err, TURBINE_ERR_CORRUPT_RECORD);
    CHECK_EQ(off, -1);
    batch[size - 1] ^= 1;
    uint32_t corr = tb_produce_send(fd, "acks", 0, 2, batch, size); /* acks 2 */
    uint8_t *frame;
    struct turbine_response resp;
    CHECK(tb_recv(fd, &frame, &resp));
    CHECK_EQ(resp.correlation_id, corr);
    CHECK_EQ(resp.error, TURBINE_ERR_INVALID_REQUEST);
    free(frame);
    off = tb_produce(fd, "nope", 0, 1, batch, size, &err);
    CHECK_EQ(err, TURBINE_ERR_UNKNOWN_TOPIC);
    struct tb_fetched f = tb_fetch(fd, "acks", 0, 0, 1000, 3 * size, 1 << 20);
    CHECK_EQ(f.error, TURBINE_ERR_NONE);
    CHECK_EQ(f.size, 3 * size);
    CHECK(tb_batch_matches(f.records, batch, size, 0)); /* the acks 0 batch is there */
    free(f.records);
    printf("  acks 0/1/all and a corrupt batch: ok\n");
}

/* A fetch waiting at the end is answered as soon as another connection produces. */
static void test_long_poll(int fd)
{
    CHECK_EQ(tb_create_topic(fd, "poll", 4, 0), TURBINE_ERR_NONE);
    /* nothing comes: answered empty after max_wait */
    int64_t t0 = tb_now_ms();
    struct tb_fetched f = tb_fetch(fd, "poll", 0, 0, 200, 1, 65536);
    int64_t waited = tb_now_ms() - t0;
    CHECK_EQ(f.size, 0);
    CHECK_GE(waited, 190);
    CHECK_LT(waited, 2000);
    free(f.records);
    uint8_t batch[4096];
    uint32_t size = tb_make_batch(batch, sizeof(batch), 99, 2, 50);
    int64_t worst = 0, worst_after = 0;
    for (int round = 0; round < 5; round++) {
        int32_t parts[4] = {0, 1, 2, 3};
        int64_t offs[4];
        /* every partition at its end offset */
        for (int p = 0; p < 4; p++) {
            struct tb_fetched e = tb_fetch(fd, "poll", p, 0, 0, 0, 1);
            offs[p] = e.high_watermark;
            free(e.records);
        }
        struct tb_fetched probe[4];
        int64_t p0 = tb_now_us();
        tb_fetch_many(fd, "poll", 4, parts, offs, 0, 0, 65536, probe);
        if (round == 0)
            printf("    a 4-partition fetch takes %" PRId64 " us\n", tb_now_us() - p0);
        for (int p = 0; p < 4; p++)
            free(probe[p].records);
        int pipefd[2];
        CHECK_EQ(pipe(pipefd), 0);
        pid_t child = fork();
        CHECK_GE(child, 0);
        if (child == 0) {
            int fd2 = tb_connect(broker.port);
            usleep(150 * 1000);
            uint16_t err;
            int64_t start = tb_now_us();
            tb_produce(fd2, "poll", round % 4, 1, batch, size, &err);
            int64_t acked = tb_now_us();
            if (write(pipefd[1], &start, sizeof(start)) != sizeof(start) ||
                write(pipefd[1], &acked, sizeof(acked)) != sizeof(acked))
                _exit(1);
            _exit(err == TURBINE_ERR_NONE ? 0 : 1);
        }
        struct tb_fetched out[4];
        t0 = tb_now_ms();
        tb_fetch_many(fd, "poll", 4, parts, offs, 5000, 1, 65536, out);
        int64_t answered = tb_now_us();
        int status;
        CHECK_EQ(waitpid(child, &status, 0), child);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        int64_t produced;
        int64_t acked;
        CHECK_EQ(read(pipefd[0], &produced, sizeof(produced)), (ssize_t)sizeof(produced));
        CHECK_EQ(read(pipefd[0], &acked, sizeof(acked)), (ssize_t)sizeof(acked));
        close(pipefd[0]);
        close(pipefd[1]);
        CHECK_EQ(out[round % 4].size, size);
        CHECK_LT(answered / 1000 - t0, 3000); /* not the 5 s max_wait */
        int64_t late = answered - produced;   /* from the produce request to the fetch answer */
        CHECK_LT(late, test_under_tsan() || test_under_asan() ? 3000000 : 100000);
        worst = late > worst ? late : worst;
        int64_t after_ack = answered - acked;
        worst_after = after_ack > worst_after ? after_ack : worst_after;
        for (int p = 0; p < 4; p++)
            free(out[p].records);
    }
    printf("  long poll: answered at most %" PRId64 " us after the produce was sent (the write to "
           "disk included), %" PRId64 " us after its acknowledgement\n",
           worst, worst_after);
}

/* 16 partitions over two cores: produce to each, one fetch of all, list offsets. */
static void test_partitions(int fd)
{
    enum { N = 16 };
    CHECK_EQ(tb_create_topic(fd, "wide", N, 0), TURBINE_ERR_NONE);
    uint8_t batch[N][4096];
    uint32_t size[N];
    for (int p = 0; p < N; p++) {
        size[p] = tb_make_batch(batch[p], sizeof(batch[p]), 500 + (uint64_t)p, 1 + p, 64);
        for (int k = 0; k < 2; k++) {
            uint16_t err;
            int64_t off = tb_produce(fd, "wide", p, 1, batch[p], size[p], &err);
            CHECK_EQ(err, TURBINE_ERR_NONE);
            CHECK_EQ(off, k * (1 + p));
        }
    }
    int32_t parts[N];
    int64_t offs[N];
    for (int p = 0; p < N; p++) {
        parts[p] = p;
        offs[p] = 1 + p; /* the second batch */
    }
    struct tb_fetched out[N];
    tb_fetch_many(fd, "wide", N, parts, offs, 0, 0, 1 << 20, out);
    for (int p = 0; p < N; p++) {
        CHECK_EQ(out[p].error, TURBINE_ERR_NONE);
        CHECK_EQ(out[p].size, size[p]);
        CHECK(tb_batch_matches(out[p].records, batch[p], size[p], 1 + p));
        CHECK_EQ(out[p].high_watermark, 2 * (1 + p));
        free(out[p].records);
    }
    /* list offsets: earliest, latest, by time */
    struct tb_writer t;
    tb_writer_init(&t, 1024);
    uint32_t corr = tb_corr++;
    struct turbine_list_offsets_request head = {.topic_count = 1};
    turbine_list_offsets_request_begin(&t.w, corr, &head);
    turbine_proto_add_topic(&t.w, "wide", 4, 3);
    struct turbine_list_offsets_partition q[3] = {
        {3, TURBINE_OFFSET_EARLIEST}, {3, TURBINE_OFFSET_LATEST}, {3, 1700000000000 + 503}};
    for (int i = 0; i < 3; i++)
        turbine_list_offsets_add_partition(&t.w, &q[i]);
    CHECK_GT(turbine_proto_frame_end(&t.w), 0);
    tb_writer_send(&t, fd);
    uint8_t *frame;
    struct turbine_response resp;
    CHECK(tb_recv(fd, &frame, &resp));
    struct turbine_list_offsets_response lr;
    CHECK_EQ(turbine_list_offsets_response_decode(&resp, &lr), TURBINE_ERR_NONE);
    struct turbine_proto_topic tt;
    CHECK(turbine_proto_next_topic(&lr.topics, &tt));
    struct turbine_list_offsets_result r;
    CHECK(turbine_list_offsets_next_result(&tt.partitions, &r));
    CHECK_EQ(r.offset, 0);
    CHECK(turbine_list_offsets_next_result(&tt.partitions, &r));
    CHECK_EQ(r.offset, 8);
    CHECK(turbine_list_offsets_next_result(&tt.partitions, &r));
    CHECK_EQ(r.error, TURBINE_ERR_NONE);
    CHECK_EQ(r.offset, 0);
    CHECK_EQ(r.timestamp, 1700000000000 + 503);
    free(frame);
    printf("  %d partitions over 2 cores: produce, fetch, list offsets ok\n", N);
}

static void offsets_request(int fd, bool commit, int64_t offset, const char *meta,
                            int64_t *got_offset, char *got_meta)
{
    struct tb_writer t;
    tb_writer_init(&t, 1024);
    uint32_t corr = tb_corr++;
    if (commit) {
        struct turbine_offset_commit_request head = {
            .group = "readers", .group_size = 7, .topic_count = 1};
        turbine_offset_commit_request_begin(&t.w, corr, &head);
        turbine_proto_add_topic(&t.w, "wide", 4, 2);
        struct turbine_offset_commit_partition p = {.partition = 5,
                                                    .offset = offset,
                                                    .metadata = meta,
                                                    .metadata_size = (uint16_t)strlen(meta)};
        turbine_offset_commit_add_partition(&t.w, &p);
        p.partition = 99; /* unknown */
        turbine_offset_commit_add_partition(&t.w, &p);
    } else {
        struct turbine_offset_fetch_request head = {
            .group = "readers", .group_size = 7, .topic_count = 1};
        turbine_offset_fetch_request_begin(&t.w, corr, &head);
        turbine_proto_add_topic(&t.w, "wide", 4, 2);
        struct turbine_offset_fetch_partition p = {.partition = 5};
        turbine_offset_fetch_add_partition(&t.w, &p);
        p.partition = 6; /* nothing committed */
        turbine_offset_fetch_add_partition(&t.w, &p);
    }
    CHECK_GT(turbine_proto_frame_end(&t.w), 0);
    tb_writer_send(&t, fd);
    uint8_t *frame;
    struct turbine_response resp;
    CHECK(tb_recv(fd, &frame, &resp));
    CHECK_EQ(resp.correlation_id, corr);
    CHECK_EQ(resp.error, TURBINE_ERR_NONE);
    struct turbine_offsets_response orr;
    CHECK_EQ(turbine_offsets_response_decode(&resp, &orr), TURBINE_ERR_NONE);
    struct turbine_proto_topic tt;
    CHECK(turbine_proto_next_topic(&orr.topics, &tt));
    if (commit) {
        struct turbine_offset_commit_result r;
        CHECK(turbine_offset_commit_next_result(&tt.partitions, &r));
        CHECK_EQ(r.error, TURBINE_ERR_NONE);
        CHECK(turbine_offset_commit_next_result(&tt.partitions, &r));
        CHECK_EQ(r.error, TURBINE_ERR_UNKNOWN_PARTITION);
    } else {
        struct turbine_offset_fetch_result r;
        CHECK(turbine_offset_fetch_next_result(&tt.partitions, &r));
        CHECK_EQ(r.error, TURBINE_ERR_NONE);
        *got_offset = r.offset;
        memcpy(got_meta, r.metadata, r.metadata_size);
        got_meta[r.metadata_size] = '\0';
        CHECK(turbine_offset_fetch_next_result(&tt.partitions, &r));
        CHECK_EQ(r.offset, -1);
    }
    free(frame);
}

/* Bad input on other connections; `fd` must still be served afterwards. */
static void test_bad_input(int fd)
{
    uint8_t *frame;
    struct turbine_response resp;
    /* oversized declared length: FRAME_TOO_LARGE, then closed */
    int b = tb_connect(broker.port);
    uint8_t big[14] = {0x7f, 0xff, 0xff, 0xff, 0, 4, 0, 0, 0, 0, 0, 9, 0, 0};
    tb_send(b, big, sizeof(big));
    CHECK(tb_recv(b, &frame, &resp));
    CHECK_EQ(resp.error, TURBINE_ERR_FRAME_TOO_LARGE);
    free(frame);
    CHECK(tb_closed_within(b, 2000));
    close(b);
    /* a length below the header: MALFORMED, closed */
    b = tb_connect(broker.port);
    uint8_t small[7] = {0, 0, 0, 3, 1, 2, 3};
    tb_send(b, small, sizeof(small));
    CHECK(tb_recv(b, &frame, &resp));
    CHECK_EQ(resp.error, TURBINE_ERR_MALFORMED);
    free(frame);
    CHECK(tb_closed_within(b, 2000));
    close(b);
    /* unknown API, unsupported version, flags: answered, the connection stays */
    b = tb_connect(broker.port);
    uint8_t unknown[14] = {0, 0, 0, 10, 0, 99, 0, 0, 0, 0, 0, 42, 0, 0};
    tb_send(b, unknown, sizeof(unknown));
    CHECK(tb_recv(b, &frame, &resp));
    CHECK_EQ(resp.correlation_id, 42);
    CHECK_EQ(resp.error, TURBINE_ERR_UNKNOWN_API);
    free(frame);
    uint8_t version[18] = {0, 0, 0, 14, 0, 1, 0, 9, 0, 0, 0, 43, 0, 0, 0, 0, 0, 0};
    tb_send(b, version, sizeof(version));
    CHECK(tb_recv(b, &frame, &resp));
    CHECK_EQ(resp.correlation_id, 43);
    CHECK_EQ(resp.error, TURBINE_ERR_UNSUPPORTED_VERSION);
    free(frame);
    uint8_t flags[18] = {0, 0, 0, 14, 0, 1, 0, 0, 0, 0, 0, 44, 0, 1, 0, 0, 0, 0};
    tb_send(b, flags, sizeof(flags));
    CHECK(tb_recv(b, &frame, &resp));
    CHECK_EQ(resp.error, TURBINE_ERR_MALFORMED);
    free(frame);
    /* a body whose count cannot fit */
    uint8_t body[18] = {0, 0, 0, 14, 0, 1, 0, 0, 0, 0, 0, 45, 0, 0, 0xff, 0xff, 0xff, 0xff};
    tb_send(b, body, sizeof(body));
    CHECK(tb_recv(b, &frame, &resp));
    CHECK_EQ(resp.correlation_id, 45);
    CHECK_EQ(resp.error, TURBINE_ERR_MALFORMED);
    free(frame);
    CHECK_EQ(metadata_ok(b), TURBINE_ERR_NONE); /* still served */
    close(b);
    /* random frames with plausible lengths (seeded): answered or closed, never a crash */
    uint64_t seed = 12345;
    for (int i = 0; i < 200; i++) {
        int g = tb_connect(broker.port);
        uint8_t junk[256];
        uint32_t len = 10 + (uint32_t)(tb_splitmix(&seed) % 200);
        for (size_t k = 0; k < sizeof(junk); k++)
            junk[k] = (uint8_t)tb_splitmix(&seed);
        junk[0] = 0;
        junk[1] = 0;
        junk[2] = (uint8_t)(len >> 8);
        junk[3] = (uint8_t)len;
        junk[4] = 0;
        junk[5] = (uint8_t)(junk[5] % 12);
        junk[6] = 0;
        junk[7] = 0;
        junk[12] = 0;
        junk[13] = 0;
        tb_send(g, junk, 4 + len);
        if (tb_recv(g, &frame, &resp))
            free(frame);
        close(g);
    }
    int other = tb_connect(broker.port);
    CHECK_EQ(metadata_ok(other), TURBINE_ERR_NONE);
    close(other);
    printf("  bad input: answered with its error code, other connections unaffected\n");
}

/* A frame that stalls half-way is cut off; an idle connection is closed. */
static void test_timeouts(int fd)
{
    int s = tb_connect(broker.port);
    uint8_t part[6] = {0, 0, 0, 14, 0, 1};
    tb_send(s, part, sizeof(part));
    int64_t t0 = tb_now_ms();
    CHECK(tb_closed_within(s, 5000));
    int64_t cut = tb_now_ms() - t0;
    CHECK_GE(cut, 250);
    close(s);
    int idle = tb_connect(broker.port);
    t0 = tb_now_ms();
    CHECK(tb_closed_within(idle, 5000));
    CHECK_GE(tb_now_ms() - t0, 1900);
    close(idle);
    printf("  slowloris frame cut after %" PRId64 " ms; idle connection closed\n", cut);
    (void)fd;
}

static void test_delete(int fd)
{
    CHECK_EQ(tb_create_topic(fd, "gone", 2, 0), TURBINE_ERR_NONE);
    uint8_t batch[4096];
    uint32_t size = tb_make_batch(batch, sizeof(batch), 3, 2, 50);
    uint16_t err;
    tb_produce(fd, "gone", 1, 1, batch, size, &err);
    CHECK_EQ(err, TURBINE_ERR_NONE);
    char path[400];
    snprintf(path, sizeof(path), "%s/gone/1", broker.dir);
    CHECK_EQ(access(path, F_OK), 0);
    struct tb_writer t;
    tb_writer_init(&t, 256);
    uint32_t corr = tb_corr++;
    struct turbine_delete_topics_request head = {.timeout_ms = 5000, .topic_count = 1};
    turbine_delete_topics_request_begin(&t.w, corr, &head);
    turbine_proto_add_name(&t.w, "gone", 4);
    CHECK_GT(turbine_proto_frame_end(&t.w), 0);
    tb_writer_send(&t, fd);
    uint8_t *frame;
    struct turbine_response resp;
    CHECK(tb_recv(fd, &frame, &resp));
    struct turbine_topics_response tr;
    CHECK_EQ(turbine_topics_response_decode(&resp, &tr), TURBINE_ERR_NONE);
    struct turbine_topic_result r;
    CHECK(turbine_topics_next_result(&tr.topics, &r));
    CHECK_EQ(r.error, TURBINE_ERR_NONE);
    free(frame);
    snprintf(path, sizeof(path), "%s/gone", broker.dir);
    CHECK_NE(access(path, F_OK), 0);
    tb_produce(fd, "gone", 1, 1, batch, size, &err);
    CHECK_EQ(err, TURBINE_ERR_UNKNOWN_TOPIC);
    CHECK_EQ(tb_create_topic(fd, "gone", 2, 0), TURBINE_ERR_NONE); /* again, empty */
    struct tb_fetched f = tb_fetch(fd, "gone", 1, 0, 0, 0, 65536);
    CHECK_EQ(f.high_watermark, 0);
    free(f.records);
    CHECK_EQ(tb_create_topic(fd, "__consumer_offsets", 1, 0), TURBINE_ERR_INVALID_TOPIC_NAME);
    printf("  delete: files removed, the name can be created again\n");
}

int main(void)
{
    alarm(230);
    signal(SIGPIPE, SIG_IGN);
    tb_init(&broker, "broker");
    const char *flags[] = {"--frame-deadline-ms", "300", "--idle-timeout-ms", "2000", NULL};
    tb_start(&broker, 2, flags);
    int fd = tb_connect(broker.port);
    test_produce_fetch(fd);
    test_acks(fd);
    test_long_poll(fd);
    test_partitions(fd);
    test_bad_input(fd);
    close(fd);
    fd = tb_connect(broker.port);
    test_delete(fd);
    offsets_request(fd, true, 1234, "position meta", NULL, NULL);
    test_timeouts(fd); /* ends with `fd` idle-closed too */
    close(fd);

    /* restart: every acknowledged record and the committed offset are back */
    tb_stop_clean(&broker);
    tb_start(&broker, 2, flags);
    fd = tb_connect(broker.port);
    struct tb_fetched f = tb_fetch(fd, "events", 0, 0, 0, 0, 1 << 20);
    CHECK_EQ(f.error, TURBINE_ERR_NONE);
    CHECK_GT(f.size, 0);
    CHECK_GT(f.high_watermark, BATCHES);
    free(f.records);
    int32_t p = 15;
    int64_t o = 0;
    struct tb_fetched w;
    tb_fetch_many(fd, "wide", 1, &p, &o, 0, 0, 1 << 20, &w);
    CHECK_EQ(w.high_watermark, 32);
    free(w.records);
    int64_t committed = 0;
    char meta[64];
    offsets_request(fd, false, 0, "", &committed, meta);
    CHECK_EQ(committed, 1234);
    CHECK_STREQ(meta, "position meta");
    close(fd);
    tb_stop_clean(&broker);
    printf("  restart: records and consumer offsets survived\n");
    tb_cleanup(&broker);
    return 0;
}
