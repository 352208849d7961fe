/* SPDX-License-Identifier: MIT
 * broker_crash_test.c - kill -9 during acks=all produce: each cycle starts the real broker on
 * the same data directory, checks that every record acknowledged so far is there at its
 * acknowledged offset with identical bytes (and that offsets are dense), then produces acks=all
 * batches to two partitions on two cores with 1..32 requests in flight (BROKER_CRASH_WINDOW
 * fixes it), and SIGKILLs the broker with requests still unanswered. Responses that reached the
 * socket before the kill count as acknowledged. Cycles: 60 (LOOM_TEST_SCALE applies),
 * BROKER_CRASH_CYCLES overrides (make soak runs more). Seeded: BROKER_CRASH_SEED (default 1).
 * LOOM_TEST_TAGS: no-valgrind timeout=280
 */
#include "broker/broker_test_util.h"

#define PARTITIONS 2
#define ACKED_MAX  200000
#define WINDOW_MAX 256

static size_t window_fixed; /* BROKER_CRASH_WINDOW: requests in flight (else 1..32 per cycle) */
static size_t window;

struct acked {
    int64_t offset;
    uint64_t seed;
};

static struct acked acked[PARTITIONS][ACKED_MAX];
static size_t acked_count[PARTITIONS];
static uint8_t scratch[1 << 16];

static uint32_t batch_of(uint64_t seed, uint8_t *out, size_t cap)
{
    return tb_make_batch(out, cap, seed, 1 + (int)(seed % 5), 300);
}

/* Every acknowledged batch of partition p is stored at its offset; offsets are dense. */
static void verify(int fd, int32_t p)
{
    int64_t pos = 0, hw = -1;
    size_t next = 0;
    while (hw < 0 || pos < hw) {
        struct tb_fetched f = tb_fetch(fd, "crash", p, pos, 0, 0, 1 << 20);
        CHECK_EQ(f.error, TURBINE_ERR_NONE);
        hw = f.high_watermark;
        if (f.size == 0) {
            free(f.records);
            break;
        }
        for (uint32_t off = 0; off < f.size;) {
            struct turbine_batch_header h;
            turbine_batch_header_decode(f.records + off, &h);
            CHECK_EQ(h.base_offset, pos); /* dense */
            uint32_t size = tb_batch_size(f.records + off);
            if (next < acked_count[p] && acked[p][next].offset == pos) {
                uint32_t want = batch_of(acked[p][next].seed, scratch, sizeof(scratch));
                CHECK_EQ(size, want);
                CHECK(tb_batch_matches(f.records + off, scratch, size, pos));
                next++;
            }
            CHECK(next >= acked_count[p] || acked[p][next].offset >= pos);
            pos += h.last_offset_delta + 1;
            off += size;
        }
        free(f.records);
    }
    if (next != acked_count[p])
        test_fail_(__FILE__, __LINE__, "partition %d: acknowledged offset %" PRId64 " missing", p,
                   acked[p][next].offset);
}

static void record_ack(uint32_t corr, const struct turbine_response *resp, uint32_t *corrs,
                       uint64_t *seeds, int32_t *parts, size_t pending)
{
    CHECK_EQ(resp->error, TURBINE_ERR_NONE);
    size_t i = 0;
    while (i < pending && corrs[i] != corr)
        i++;
    CHECK_LT(i, pending);
    struct turbine_produce_response pr;
    CHECK_EQ(turbine_produce_response_decode(resp, &pr), TURBINE_ERR_NONE);
    struct turbine_proto_topic t;
    struct turbine_produce_result r;
    CHECK(turbine_proto_next_topic(&pr.topics, &t));
    CHECK(turbine_produce_next_result(&t.partitions, &r));
    if (r.error != TURBINE_ERR_NONE) {
        fprintf(stderr, "  seed %" PRIu64 ": %s\n", seeds[i], turbine_error_name(r.error));
        return; /* not acknowledged (e.g. SHUTTING_DOWN): may or may not be there */
    }
    int32_t p = parts[i];
    CHECK_LT(acked_count[p], ACKED_MAX);
    if (acked_count[p] > 0 && r.base_offset <= acked[p][acked_count[p] - 1].offset) {
        for (size_t k = acked_count[p] > 6 ? acked_count[p] - 6 : 0; k < acked_count[p]; k++)
            fprintf(stderr, "  acked seed %" PRIu64 " (%d records) at %" PRId64 "\n",
                    acked[p][k].seed, 1 + (int)(acked[p][k].seed % 5), acked[p][k].offset);
        for (size_t k = 0; k < pending; k++)
            fprintf(stderr, "  request %zu: corr %u seed %" PRIu64 " partition %d size %u\n", k,
                    corrs[k], seeds[k], parts[k], batch_of(seeds[k], scratch, sizeof(scratch)));
        test_fail_(__FILE__, __LINE__,
                   "partition %d: request %zu (seed %" PRIu64 ") acknowledged at %" PRId64
                   " after seed %" PRIu64 " at %" PRId64,
                   p, i, seeds[i], r.base_offset, acked[p][acked_count[p] - 1].seed,
                   acked[p][acked_count[p] - 1].offset);
    }
    acked[p][acked_count[p]++] = (struct acked){.offset = r.base_offset, .seed = seeds[i]};
}

/* Produces until `sends` requests went out, then kills the broker with some unanswered. */
static void produce_and_kill(struct tb_broker *b, uint64_t *seed_state, uint64_t *next_seed)
{
    window = window_fixed ? window_fixed : 1 + tb_splitmix(seed_state) % 32;
    int fd = tb_connect(b->port);
    int sends = 5 + (int)(tb_splitmix(seed_state) % (10 * window));
    uint32_t corrs[16 * WINDOW_MAX];
    uint64_t seeds[16 * WINDOW_MAX];
    int32_t parts[16 * WINDOW_MAX];
    size_t sent = 0, answered = 0;
    while ((int)sent < sends) {
        while (sent - answered < window && (int)sent < sends) {
            seeds[sent] = (*next_seed)++;
            parts[sent] = (int32_t)(seeds[sent] % PARTITIONS);
            uint32_t size = batch_of(seeds[sent], scratch, sizeof(scratch));
            corrs[sent] =
                tb_produce_send(fd, "crash", parts[sent], TURBINE_ACKS_ALL, scratch, size);
            sent++;
        }
        if ((int)sent == sends)
            break;
        uint8_t *frame;
        struct turbine_response resp;
        CHECK(tb_recv(fd, &frame, &resp));
        record_ack(resp.correlation_id, &resp, corrs, seeds, parts, sent);
        free(frame);
        answered++;
    }
    usleep((useconds_t)(tb_splitmix(seed_state) % 3000)); /* the kill lands anywhere */
    tb_stop(b, SIGKILL);
    /* what reached the socket before the kill was acknowledged */
    uint8_t *frame;
    struct turbine_response resp;
    while (answered < sent && tb_recv(fd, &frame, &resp)) {
        record_ack(resp.correlation_id, &resp, corrs, seeds, parts, sent);
        free(frame);
        answered++;
    }
    close(fd);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    int64_t cycles =
        getenv("BROKER_CRASH_CYCLES") ? atoll(getenv("BROKER_CRASH_CYCLES")) : test_scale(60);
    uint64_t seed_state =
        getenv("BROKER_CRASH_SEED") ? strtoull(getenv("BROKER_CRASH_SEED"), NULL, 10) : 1;
    struct tb_broker b;
    tb_init(&b, "crash");
    tb_start(&b, 2, NULL);
    int fd = tb_connect(b.port);
    CHECK_EQ(tb_create_topic(fd, "crash", PARTITIONS, TURBINE_TOPIC_DURABILITY_FSYNC),
             TURBINE_ERR_NONE);
    close(fd);
    if (getenv("BROKER_CRASH_WINDOW") != NULL)
        window_fixed = strtoull(getenv("BROKER_CRASH_WINDOW"), NULL, 10);
    CHECK(window_fixed <= WINDOW_MAX);
    uint64_t next_seed = 1;
    int64_t t0 = tb_now_ms();
    for (int64_t cycle = 0; cycle < cycles; cycle++) {
        produce_and_kill(&b, &seed_state, &next_seed);
        tb_start(&b, 2, NULL);
        fd = tb_connect(b.port);
        for (int32_t p = 0; p < PARTITIONS; p++)
            verify(fd, p);
        close(fd);
    }
    tb_stop_clean(&b);
    printf("  %" PRId64 " kill -9 cycles in %" PRId64 " ms: %zu + %zu acknowledged batches all "
           "present at their offsets\n",
           cycles, tb_now_ms() - t0, acked_count[0], acked_count[1]);
    tb_cleanup(&b);
    return 0;
}
