/* SPDX-License-Identifier: MIT
 * batch_test.c - RecordBatch v2 against reference bytes from librdkafka, and every rule of the
 * validator on crafted bytes.
 *
 * The reference: librdkafka 2.0.2 produces to its own mock cluster through a relay in this
 * program (librdkafka's connect_cb points every broker connection at the relay), which copies
 * each RecordBatch out of the Produce requests it forwards. Uncompressed batches must
 * re-encode to the same bytes with our encoder; compressed ones must pass the outer checks and
 * fail the CRC with any byte changed. `batch_test --write-corpus DIR` writes the reference
 * and crafted batches as the fuzz corpus seed (ok-* must pass, eNN-* must fail with status NN:
 * the corpus test below holds them to their names).
 *
 * LOOM_TEST_TAGS: timeout=120
 */
#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "turbine/batch.h"

#define CORPUS_DIR "turbine/src/log/fuzz_corpus/batch"

static const char *write_corpus_dir; /* --write-corpus DIR */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng_next(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

static void corpus_write(const char *name, const void *data, size_t size)
{
    if (write_corpus_dir == NULL)
        return;
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", write_corpus_dir, name);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    CHECK_EQ(fwrite(data, 1, size, f), size);
    fclose(f);
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void recrc(uint8_t *batch, size_t size)
{
    put32(batch + TURBINE_BATCH_OFF_CRC, turbine_crc32c(0, batch + TURBINE_BATCH_OFF_ATTRIBUTES,
                                                        size - TURBINE_BATCH_OFF_ATTRIBUTES));
}

/* Validates and checks the status; under --write-corpus saves the bytes as eNN-name. */
static void expect_status(const char *name, const uint8_t *data, size_t size,
                          enum turbine_batch_status expected)
{
    struct turbine_batch_info info;
    enum turbine_batch_status s = turbine_batch_validate(data, size, &info);
    if (s != expected)
        test_fail_(__FILE__, __LINE__, "%s: status %d (%s) at offset %zu, expected %d (%s)", name,
                   s, turbine_batch_status_str(s), info.error_offset, expected,
                   turbine_batch_status_str(expected));
    char file[256];
    if (expected == TURBINE_BATCH_OK)
        snprintf(file, sizeof(file), "ok-%s", name);
    else
        snprintf(file, sizeof(file), "e%02d-%s", (int)expected, name);
    corpus_write(file, data, size);
}

/* ---- CRC-32C ------------------------------------------------------------------------------ */

/* Bit by bit, from the definition (reflected polynomial 0x82F63B78). */
static uint32_t crc32c_bitwise(uint32_t crc, const uint8_t *p, size_t n)
{
    crc = ~crc;
    while (n--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1)));
    }
    return ~crc;
}

static void test_crc32c(void)
{
    CHECK_EQ(turbine_crc32c(0, "123456789", 9), 0xE3069283u);
    CHECK_EQ(crc32c_bitwise(0, (const uint8_t *)"123456789", 9), 0xE3069283u);
    CHECK_EQ(turbine_crc32c(0, "", 0), 0);
    static uint8_t buf[4096 + 64];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)rng_next();
    for (int i = 0; i < 2000; i++) { /* every alignment, lengths across ISA-L's block sizes */
        size_t off = rng_next() % 64, len = rng_next() % 4096;
        uint32_t whole = turbine_crc32c(0, buf + off, len);
        CHECK_EQ(whole, crc32c_bitwise(0, buf + off, len));
        size_t cut = len ? rng_next() % len : 0;
        CHECK_EQ(turbine_crc32c(turbine_crc32c(0, buf + off, cut), buf + off + cut, len - cut),
                 whole);
    }
}

/* ---- encoder and iterator ----------------------------------------------------------------- */

static const struct turbine_batch_params plain_params = {
    .base_offset = 0,
    .partition_leader_epoch = -1,
    .attributes = 0,
    .producer_id = -1,
    .producer_epoch = -1,
    .base_sequence = -1,
};

static void test_encode_walk(void)
{
    struct turbine_header_in headers[] = {
        {"h1", 2, "v1", 2},
        {"", 0, NULL, -1}, /* empty key, null value */
        {"h3", 2, "", 0},
    };
    struct turbine_record_in records[] = {
        {1000, "k0", 2, "value0", 6, NULL, 0},
        {990, NULL, -1, "v", 1, headers, 3}, /* null key, negative timestamp delta */
        {5000, "", 0, NULL, -1, headers, 1}, /* empty key, null value (tombstone) */
        {1000, "k3", 2, "", 0, NULL, 0},
    };
    uint8_t buf[512];
    int64_t size = turbine_batch_encode(buf, sizeof(buf), &plain_params, records, 4);
    CHECK_GT(size, TURBINE_BATCH_HEADER_SIZE);
    struct turbine_batch_info info;
    CHECK_EQ(turbine_batch_validate(buf, (size_t)size, &info), TURBINE_BATCH_OK);
    CHECK_EQ(info.size, size);
    CHECK_EQ(info.records, 4);
    CHECK_EQ(info.header.base_timestamp, 1000);
    CHECK_EQ(info.header.max_timestamp, 5000);
    CHECK_EQ(info.max_timestamp_seen, 5000);
    CHECK_EQ(info.header.last_offset_delta, 3);
    CHECK_EQ(info.header.magic, 2);
    /* A buffer of batches: the validator stops at the first one's end. */
    CHECK_EQ(turbine_batch_validate(buf, sizeof(buf), &info), TURBINE_BATCH_OK);
    CHECK_EQ(info.size, size);

    struct turbine_record_iter iter;
    struct turbine_record r;
    CHECK_EQ(turbine_record_iter_init(&iter, buf, (size_t)size), TURBINE_BATCH_OK);
    int i = 0;
    while (turbine_record_iter_next(&iter, &r)) {
        const struct turbine_record_in *in = &records[i];
        CHECK_EQ(r.offset_delta, i);
        CHECK_EQ(1000 + r.timestamp_delta, in->timestamp);
        CHECK_EQ(r.key_size, in->key_size);
        CHECK_EQ(r.value_size, in->value_size);
        CHECK(r.key_size < 0 ? r.key == NULL : memcmp(r.key, in->key, (size_t)r.key_size) == 0);
        CHECK(r.value_size < 0 ? r.value == NULL
                               : memcmp(r.value, in->value, (size_t)r.value_size) == 0);
        /* zero copy: the pointers are into buf */
        CHECK(r.value == NULL || (r.value > buf && r.value < buf + size));
        CHECK_EQ(r.headers_count, in->headers_count);
        struct turbine_header_iter hi;
        struct turbine_header h;
        int j = 0;
        turbine_header_iter_init(&hi, &r);
        while (turbine_header_iter_next(&hi, &h)) {
            CHECK_EQ(h.key_size, in->headers[j].key_size);
            CHECK(memcmp(h.key, in->headers[j].key, (size_t)h.key_size) == 0);
            CHECK_EQ(h.value_size, in->headers[j].value_size);
            CHECK(h.value_size < 0
                      ? h.value == NULL
                      : memcmp(h.value, in->headers[j].value, (size_t)h.value_size) == 0);
            j++;
        }
        CHECK_EQ(j, in->headers_count);
        i++;
    }
    CHECK_EQ(i, 4);
    CHECK_EQ(turbine_record_iter_status(&iter), TURBINE_BATCH_OK);
    CHECK_EQ(turbine_record_iter_offset(&iter), size);
    expect_status("encoder-4-records", buf, (size_t)size, TURBINE_BATCH_OK);

    /* The broker's stamps are outside the CRC. */
    turbine_batch_set_base_offset(buf, 123456789012345);
    turbine_batch_set_partition_leader_epoch(buf, 7);
    CHECK_EQ(turbine_batch_validate(buf, (size_t)size, &info), TURBINE_BATCH_OK);
    CHECK_EQ(info.header.base_offset, 123456789012345);
    CHECK_EQ(info.header.partition_leader_epoch, 7);
}

static void test_builder_errors(void)
{
    uint8_t buf[128];
    struct turbine_batch_builder b;
    struct turbine_batch_params params = plain_params;
    params.attributes = TURBINE_BATCH_CODEC_GZIP;
    CHECK_EQ(turbine_batch_builder_init(&b, buf, sizeof(buf), &params), -EINVAL);
    CHECK_EQ(turbine_batch_builder_init(&b, buf, 60, &plain_params), -ENOSPC);
    CHECK_EQ(turbine_batch_builder_init(&b, buf, sizeof(buf), &plain_params), 0);
    CHECK_EQ(turbine_batch_builder_finish(&b), -EINVAL); /* no records */

    struct turbine_record_in bad_key = {0, "x", -2, NULL, -1, NULL, 0};
    CHECK_EQ(turbine_batch_builder_append(&b, &bad_key), -EINVAL);
    struct turbine_header_in null_key = {NULL, -1, "v", 1};
    struct turbine_record_in bad_header = {0, NULL, -1, NULL, -1, &null_key, 1};
    CHECK_EQ(turbine_batch_builder_append(&b, &bad_header), -EINVAL);

    static const char big[100] = {0};
    struct turbine_record_in small = {10, "k", 1, big, 30, NULL, 0};
    struct turbine_record_in large = {11, "k", 1, big, 100, NULL, 0};
    CHECK_EQ(turbine_batch_builder_append(&b, &small), 0);
    size_t used = b.used;
    CHECK_EQ(turbine_batch_builder_append(&b, &large), -ENOSPC);
    CHECK_EQ(b.used, used); /* unchanged: the batch so far is still finishable */
    CHECK_EQ(turbine_record_encoded_size(&small, 0, 0), used - TURBINE_BATCH_HEADER_SIZE);
    int64_t size = turbine_batch_builder_finish(&b);
    CHECK_EQ(size, used);
    CHECK_EQ(turbine_batch_validate(buf, (size_t)size, NULL), TURBINE_BATCH_OK);
}

/* ---- every rule, on crafted bytes ---------------------------------------------------------- */

/* A batch of `count` declared records around the raw record bytes `records`. */
static size_t craft(uint8_t *out, const uint8_t *records, size_t records_size, int32_t count)
{
    struct turbine_record_in one = {100, "k", 1, "v", 1, NULL, 0};
    int64_t size = turbine_batch_encode(out, 1024, &plain_params, &one, 1);
    CHECK_GT(size, 0);
    memcpy(out + TURBINE_BATCH_HEADER_SIZE, records, records_size);
    size_t total = TURBINE_BATCH_HEADER_SIZE + records_size;
    put32(out + TURBINE_BATCH_OFF_BATCH_LENGTH, (uint32_t)(total - TURBINE_BATCH_LOG_OVERHEAD));
    put32(out + TURBINE_BATCH_OFF_RECORDS_COUNT, (uint32_t)count);
    put32(out + TURBINE_BATCH_OFF_LAST_OFFSET_DELTA, (uint32_t)(count - 1));
    recrc(out, total);
    return total;
}

#define CRAFT(name, count, expected, ...)                                                          \
    do {                                                                                           \
        static const uint8_t rec_[] = {__VA_ARGS__};                                               \
        size_t n_ = craft(buf, rec_, sizeof(rec_), count);                                         \
        expect_status(name, buf, n_, expected);                                                    \
    } while (0)

static void test_header_rules(void)
{
    uint8_t buf[1024], good[1024];
    struct turbine_record_in one = {100, "key", 3, "value", 5, NULL, 0};
    size_t size = (size_t)turbine_batch_encode(good, sizeof(good), &plain_params, &one, 1);
    struct turbine_batch_info info;

    expect_status("empty", good, 0, TURBINE_BATCH_TRUNCATED);
    expect_status("trunc-11", good, 11, TURBINE_BATCH_TRUNCATED);
    expect_status("trunc-60", good, 60, TURBINE_BATCH_TRUNCATED);
    expect_status("trunc-last-byte", good, size - 1, TURBINE_BATCH_TRUNCATED);
    CHECK_EQ(turbine_batch_validate(good, size - 1, &info), TURBINE_BATCH_TRUNCATED);
    CHECK_EQ(info.size, size); /* framing says how much is missing */

    memcpy(buf, good, size);
    put32(buf + TURBINE_BATCH_OFF_BATCH_LENGTH, 48);
    expect_status("batch-length-48", buf, size, TURBINE_BATCH_BAD_LENGTH);
    put32(buf + TURBINE_BATCH_OFF_BATCH_LENGTH, 0x80000000u);
    expect_status("batch-length-negative", buf, size, TURBINE_BATCH_BAD_LENGTH);
    put32(buf + TURBINE_BATCH_OFF_BATCH_LENGTH, (uint32_t)(size - 12 + 1));
    expect_status("batch-length-plus-1", buf, size, TURBINE_BATCH_TRUNCATED);
    put32(buf + TURBINE_BATCH_OFF_BATCH_LENGTH, (uint32_t)(size - 12 - 1));
    expect_status("batch-length-minus-1", buf, size, TURBINE_BATCH_BAD_CRC);
    recrc(buf, size - 1); /* one byte short with a right CRC: the record no longer fits */
    expect_status("batch-length-minus-1-crc", buf, size, TURBINE_BATCH_RECORD_TRUNCATED);

    memcpy(buf, good, size);
    buf[TURBINE_BATCH_OFF_MAGIC] = 1;
    expect_status("magic-1", buf, size, TURBINE_BATCH_BAD_MAGIC);
    CHECK_EQ(turbine_batch_validate(buf, size, &info), TURBINE_BATCH_BAD_MAGIC);
    CHECK_EQ(info.error_offset, TURBINE_BATCH_OFF_MAGIC);

    memcpy(buf, good, size);
    buf[size - 1] ^= 0x20;
    expect_status("crc-value-byte", buf, size, TURBINE_BATCH_BAD_CRC);
    memcpy(buf, good, size);
    buf[TURBINE_BATCH_OFF_CRC] ^= 1;
    expect_status("crc-field", buf, size, TURBINE_BATCH_BAD_CRC);

    memcpy(buf, good, size);
    buf[TURBINE_BATCH_OFF_ATTRIBUTES + 1] = 5;
    recrc(buf, size);
    expect_status("codec-5", buf, size, TURBINE_BATCH_BAD_CODEC);

    memcpy(buf, good, size);
    put32(buf + TURBINE_BATCH_OFF_RECORDS_COUNT, 0);
    put32(buf + TURBINE_BATCH_OFF_LAST_OFFSET_DELTA, 0xffffffffu);
    recrc(buf, size);
    expect_status("count-0", buf, size, TURBINE_BATCH_BAD_COUNT);
    put32(buf + TURBINE_BATCH_OFF_RECORDS_COUNT, 0x80000000u);
    recrc(buf, size);
    expect_status("count-negative", buf, size, TURBINE_BATCH_BAD_COUNT);

    memcpy(buf, good, size);
    put32(buf + TURBINE_BATCH_OFF_LAST_OFFSET_DELTA, 1);
    recrc(buf, size);
    expect_status("last-offset-delta-1-of-1", buf, size, TURBINE_BATCH_BAD_LAST_OFFSET);
    CHECK_EQ(turbine_batch_validate(buf, size, &info), TURBINE_BATCH_BAD_LAST_OFFSET);
    CHECK_EQ(info.error_offset, TURBINE_BATCH_OFF_LAST_OFFSET_DELTA);
}

static void test_record_rules(void)
{
    uint8_t buf[1024];
    /* Varints are zigzag: 12 is length 6, 1 is -1. A minimal record is length 6: attributes 0,
     * timestampDelta 0, offsetDelta 0, key -1 (null), value -1 (null), 0 headers. */
    CRAFT("record-ok", 1, TURBINE_BATCH_OK, 12, 0, 0, 0, 1, 1, 0);
    CRAFT("record-len-past-end", 1, TURBINE_BATCH_RECORD_TRUNCATED, 14, 0, 0, 0, 1, 1, 0);
    CRAFT("record-len-varint-cut", 1, TURBINE_BATCH_RECORD_TRUNCATED, 0x80);
    CRAFT("record-len-0", 1, TURBINE_BATCH_RECORD_BAD_LENGTH, 0);
    CRAFT("record-len-negative", 1, TURBINE_BATCH_RECORD_BAD_LENGTH, 1, 0, 0, 0, 1, 1, 0);
    CRAFT("record-len-spare-byte", 1, TURBINE_BATCH_RECORD_BAD_LENGTH, 14, 0, 0, 0, 1, 1, 0, 0);
    CRAFT("record-len-short", 1, TURBINE_BATCH_RECORD_BAD_HEADERS, 10, 0, 0, 0, 1, 1, 0);
    CRAFT("record-fields-cut", 1, TURBINE_BATCH_RECORD_BAD_LENGTH, 2, 0);
    /* varints: 6 bytes for an int32, bits beyond 32, 11 bytes for an int64, bit 64 */
    CRAFT("varint32-6-bytes", 1, TURBINE_BATCH_RECORD_BAD_VARINT, 0x8c, 0x80, 0x80, 0x80, 0x80,
          0x00);
    CRAFT("varint32-33-bits", 1, TURBINE_BATCH_RECORD_BAD_VARINT, 0x8c, 0x80, 0x80, 0x80, 0x10);
    CRAFT("varint32-non-minimal", 1, TURBINE_BATCH_OK, 0x8c, 0x80, 0x80, 0x80, 0x00, 0, 0, 0, 1, 1,
          0);
    CRAFT("varint64-11-bytes", 1, TURBINE_BATCH_RECORD_BAD_VARINT, 32, 0, 0x80, 0x80, 0x80, 0x80,
          0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 0, 1, 1, 0);
    CRAFT("varint64-65-bits", 1, TURBINE_BATCH_RECORD_BAD_VARINT, 30, 0, 0x80, 0x80, 0x80, 0x80,
          0x80, 0x80, 0x80, 0x80, 0x80, 0x02, 0, 1, 1, 0);
    CRAFT("varint64-64-bits", 1, TURBINE_BATCH_OK, 30, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
          0xff, 0xff, 0x01, 0, 1, 1, 0);
    /* offsets: the first record must be delta 0, the next 1 */
    CRAFT("offset-delta-1", 1, TURBINE_BATCH_RECORD_BAD_OFFSET, 12, 0, 0, 2, 1, 1, 0);
    CRAFT("offset-delta-negative", 1, TURBINE_BATCH_RECORD_BAD_OFFSET, 12, 0, 0, 1, 1, 1, 0);
    CRAFT("offset-delta-repeated", 2, TURBINE_BATCH_RECORD_BAD_OFFSET, 12, 0, 0, 0, 1, 1, 0, 12, 0,
          0, 0, 1, 1, 0);
    CRAFT("offset-delta-two-ok", 2, TURBINE_BATCH_OK, 12, 0, 0, 0, 1, 1, 0, 12, 0, 0, 2, 1, 1, 0);
    /* keys and values */
    CRAFT("key-minus-2", 1, TURBINE_BATCH_RECORD_BAD_KEY, 12, 0, 0, 0, 3, 1, 0);
    CRAFT("key-past-record", 1, TURBINE_BATCH_RECORD_BAD_KEY, 14, 0, 0, 0, 16, 'a', 1, 0);
    CRAFT("key-empty", 1, TURBINE_BATCH_OK, 12, 0, 0, 0, 0, 1, 0);
    CRAFT("value-minus-2", 1, TURBINE_BATCH_RECORD_BAD_VALUE, 12, 0, 0, 0, 1, 3, 0);
    CRAFT("value-past-record", 1, TURBINE_BATCH_RECORD_BAD_VALUE, 14, 0, 0, 0, 1, 16, 'a', 0);
    /* headers */
    CRAFT("headers-minus-1", 1, TURBINE_BATCH_RECORD_BAD_HEADERS, 12, 0, 0, 0, 1, 1, 1);
    CRAFT("header-key-null", 1, TURBINE_BATCH_RECORD_BAD_HEADERS, 14, 0, 0, 0, 1, 1, 2, 1);
    CRAFT("header-value-minus-2", 1, TURBINE_BATCH_RECORD_BAD_HEADERS, 18, 0, 0, 0, 1, 1, 2, 2, 'h',
          3);
    CRAFT("header-value-null", 1, TURBINE_BATCH_OK, 18, 0, 0, 0, 1, 1, 2, 2, 'h', 1);
    CRAFT("header-count-past", 1, TURBINE_BATCH_RECORD_BAD_HEADERS, 18, 0, 0, 0, 1, 1, 4, 2, 'h',
          1);
    /* record count against the bytes */
    CRAFT("too-few-records", 2, TURBINE_BATCH_TOO_FEW_RECORDS, 12, 0, 0, 0, 1, 1, 0);
    CRAFT("trailing-record", 1, TURBINE_BATCH_TRAILING_BYTES, 12, 0, 0, 0, 1, 1, 0, 12, 0, 0, 2, 1,
          1, 0);
    CRAFT("trailing-byte", 1, TURBINE_BATCH_TRAILING_BYTES, 12, 0, 0, 0, 1, 1, 0, 0);

    for (int s = 0; s <= TURBINE_BATCH_STATUS_MAX + 1; s++)
        CHECK(turbine_batch_status_str(s) != NULL && turbine_batch_status_str(s)[0] != '\0');
    CHECK_STREQ(turbine_batch_status_str(-1), "unknown batch status");

    /* The iterator refuses compressed batches and reports where it stopped. */
    uint8_t rec[] = {12, 0, 0, 0, 1, 1, 0};
    size_t n = craft(buf, rec, sizeof(rec), 1);
    buf[TURBINE_BATCH_OFF_ATTRIBUTES + 1] = TURBINE_BATCH_CODEC_LZ4;
    struct turbine_record_iter iter;
    struct turbine_record r;
    CHECK_EQ(turbine_record_iter_init(&iter, buf, n), TURBINE_BATCH_COMPRESSED);
    CHECK(!turbine_record_iter_next(&iter, &r));
    CHECK_EQ(turbine_record_iter_status(&iter), TURBINE_BATCH_COMPRESSED);
    n = craft(buf, (const uint8_t[]){12, 0, 0, 0, 1, 1, 0, 12, 0, 0, 0, 1, 1, 0}, 14, 2);
    CHECK_EQ(turbine_record_iter_init(&iter, buf, n), TURBINE_BATCH_OK);
    CHECK(turbine_record_iter_next(&iter, &r));
    CHECK(!turbine_record_iter_next(&iter, &r));
    CHECK_EQ(turbine_record_iter_status(&iter), TURBINE_BATCH_RECORD_BAD_OFFSET);
    CHECK_EQ(turbine_record_iter_offset(&iter), TURBINE_BATCH_HEADER_SIZE + 7);
}

/* ---- reference bytes from librdkafka ------------------------------------------------------ */

#define CAPTURED_MAX 64

struct captured {
    uint8_t *bytes;
    size_t size;
    int16_t produce_version;
};

static struct {
    pthread_mutex_t lock;
    struct captured batches[CAPTURED_MAX];
    int count;
    int parse_errors;
} capture = {.lock = PTHREAD_MUTEX_INITIALIZER};

struct relay_conn {
    int client, broker;
    uint8_t *pending; /* client -> broker bytes not yet parsed into whole requests */
    size_t pending_size;
};

struct relay {
    int listen_fd;
    struct sockaddr_in listen_addr, broker_addr;
    int stop_pipe[2];
    pthread_t thread;
};

/* Reads a big-endian field at *p if it fits before end; false otherwise. */
static bool take(const uint8_t **p, const uint8_t *end, size_t n, uint64_t *out)
{
    if ((size_t)(end - *p) < n)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v << 8 | (*p)[i];
    *p += n;
    *out = v;
    return true;
}

static bool skip_string(const uint8_t **p, const uint8_t *end)
{
    uint64_t len;
    if (!take(p, end, 2, &len))
        return false;
    if ((int16_t)len < 0)
        return true; /* null */
    if ((size_t)(end - *p) < len)
        return false;
    *p += len;
    return true;
}

static void parse_error(void)
{
    pthread_mutex_lock(&capture.lock);
    capture.parse_errors++;
    pthread_mutex_unlock(&capture.lock);
}

static void capture_batches(const uint8_t *p, size_t size, int16_t version)
{
    while (size >= TURBINE_BATCH_LOG_OVERHEAD) {
        size_t batch_size = TURBINE_BATCH_LOG_OVERHEAD +
                            (((size_t)p[8] << 24) | (p[9] << 16) | (p[10] << 8) | p[11]);
        if (batch_size > size)
            break;
        pthread_mutex_lock(&capture.lock);
        if (capture.count < CAPTURED_MAX) {
            struct captured *c = &capture.batches[capture.count++];
            c->bytes = malloc(batch_size);
            memcpy(c->bytes, p, batch_size);
            c->size = batch_size;
            c->produce_version = version;
        }
        pthread_mutex_unlock(&capture.lock);
        p += batch_size;
        size -= batch_size;
    }
    if (size != 0)
        parse_error();
}

/* Produce request v3..v8 (librdkafka 2.0.2 speaks up to v7; v9 would be flexible):
 *   header v1: api_key i16, api_version i16, correlation_id i32, client_id string
 *   transactional_id string, acks i16, timeout_ms i32,
 *   [topic string, [partition i32, records bytes (i32 length)]] */
static void parse_request(const uint8_t *p, const uint8_t *end)
{
    uint64_t api_key, version, v, topics, partitions, len;
    if (!take(&p, end, 2, &api_key) || api_key != 0)
        return;
    bool ok = take(&p, end, 2, &version) && version >= 3 && version <= 8 && take(&p, end, 4, &v) &&
              skip_string(&p, end) && skip_string(&p, end) && take(&p, end, 2, &v) &&
              take(&p, end, 4, &v) && take(&p, end, 4, &topics);
    for (uint64_t t = 0; ok && t < topics; t++) {
        ok = skip_string(&p, end) && take(&p, end, 4, &partitions);
        for (uint64_t i = 0; ok && i < partitions; i++) {
            ok = take(&p, end, 4, &v) && take(&p, end, 4, &len) && (size_t)(end - p) >= len;
            if (ok) {
                capture_batches(p, len, (int16_t)version);
                p += len;
            }
        }
    }
    if (!ok || p != end)
        parse_error();
}

static void relay_parse(struct relay_conn *c, const uint8_t *data, size_t n)
{
    c->pending = realloc(c->pending, c->pending_size + n);
    memcpy(c->pending + c->pending_size, data, n);
    c->pending_size += n;
    size_t used = 0;
    while (c->pending_size - used >= 4) {
        const uint8_t *f = c->pending + used;
        size_t frame = (size_t)f[0] << 24 | (size_t)f[1] << 16 | (size_t)f[2] << 8 | f[3];
        if (c->pending_size - used - 4 < frame)
            break;
        parse_request(f + 4, f + 4 + frame);
        used += 4 + frame;
    }
    memmove(c->pending, c->pending + used, c->pending_size - used);
    c->pending_size -= used;
}

static bool write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

#define RELAY_CONNS_MAX 16

static void relay_close(struct relay_conn *c)
{
    close(c->client);
    close(c->broker);
    free(c->pending);
    *c = (struct relay_conn){-1, -1, NULL, 0};
}

static void *relay_main(void *arg)
{
    struct relay *relay = arg;
    struct relay_conn conns[RELAY_CONNS_MAX];
    int nconns = 0;
    static uint8_t buf[1 << 16];
    for (;;) {
        struct pollfd fds[2 + 2 * RELAY_CONNS_MAX];
        fds[0] = (struct pollfd){relay->stop_pipe[0], POLLIN, 0};
        fds[1] = (struct pollfd){relay->listen_fd, POLLIN, 0};
        for (int i = 0; i < nconns; i++) {
            fds[2 + 2 * i] = (struct pollfd){conns[i].client, POLLIN, 0};
            fds[3 + 2 * i] = (struct pollfd){conns[i].broker, POLLIN, 0};
        }
        if (poll(fds, (nfds_t)(2 + 2 * nconns), -1) < 0)
            continue;
        if (fds[0].revents)
            break;
        /* fds[] follows conns[] as polled: close and compact after the walk, accept last. */
        for (int i = 0; i < nconns; i++) {
            for (int side = 0; side < 2; side++) {
                if (!fds[2 + 2 * i + side].revents)
                    continue;
                int from = side ? conns[i].broker : conns[i].client;
                int to = side ? conns[i].client : conns[i].broker;
                ssize_t n = read(from, buf, sizeof(buf));
                if (n > 0 && side == 0)
                    relay_parse(&conns[i], buf, (size_t)n); /* before the broker can answer */
                if (n <= 0 || !write_all(to, buf, (size_t)n)) {
                    relay_close(&conns[i]);
                    break;
                }
            }
        }
        int kept = 0;
        for (int i = 0; i < nconns; i++)
            if (conns[i].client >= 0)
                conns[kept++] = conns[i];
        nconns = kept;
        if ((fds[1].revents & POLLIN) && nconns < RELAY_CONNS_MAX) {
            int client = accept(relay->listen_fd, NULL, NULL);
            int broker = socket(AF_INET, SOCK_STREAM, 0);
            CHECK(client >= 0 && broker >= 0);
            CHECK_EQ(
                connect(broker, (struct sockaddr *)&relay->broker_addr, sizeof(relay->broker_addr)),
                0);
            conns[nconns++] = (struct relay_conn){client, broker, NULL, 0};
        }
    }
    for (int i = 0; i < nconns; i++)
        relay_close(&conns[i]);
    return NULL;
}

static void relay_start(struct relay *relay, const char *broker)
{
    char host[64];
    int port;
    CHECK_EQ(sscanf(broker, "%63[^:]:%d", host, &port), 2);
    relay->broker_addr = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(port)};
    CHECK_EQ(inet_pton(AF_INET, host, &relay->broker_addr.sin_addr), 1);
    relay->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    relay->listen_addr = (struct sockaddr_in){.sin_family = AF_INET};
    relay->listen_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_EQ(
        bind(relay->listen_fd, (struct sockaddr *)&relay->listen_addr, sizeof(relay->listen_addr)),
        0);
    socklen_t len = sizeof(relay->listen_addr);
    CHECK_EQ(getsockname(relay->listen_fd, (struct sockaddr *)&relay->listen_addr, &len), 0);
    CHECK_EQ(listen(relay->listen_fd, 16), 0);
    CHECK_EQ(pipe(relay->stop_pipe), 0);
    CHECK_EQ(pthread_create(&relay->thread, NULL, relay_main, relay), 0);
}

static void relay_stop(struct relay *relay)
{
    CHECK_EQ(write(relay->stop_pipe[1], "x", 1), 1);
    pthread_join(relay->thread, NULL);
    close(relay->listen_fd);
    close(relay->stop_pipe[0]);
    close(relay->stop_pipe[1]);
}

static struct relay *active_relay;

/* librdkafka's connect_cb: every broker connection goes to the relay instead. */
static int connect_to_relay(int sockfd, const struct sockaddr *addr, int addrlen, const char *id,
                            void *opaque)
{
    struct relay *relay = active_relay; /* `opaque` is the producer's, shared with dr_cb */
    if (connect(sockfd, (struct sockaddr *)&relay->listen_addr, sizeof(relay->listen_addr)) == 0)
        return 0;
    if (errno != EINPROGRESS)
        return errno;
    struct pollfd pfd = {sockfd, POLLOUT, 0};
    if (poll(&pfd, 1, 5000) != 1)
        return ETIMEDOUT;
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(sockfd, SOL_SOCKET, SO_ERROR, &err, &len);
    return err;
}

#define MESSAGES 24

struct message {
    char key[32], value[1200];
    int key_size, value_size; /* -1 = null */
    int64_t timestamp;
    int headers;
};

static void make_messages(struct message *m, int run)
{
    for (int i = 0; i < MESSAGES; i++) {
        m[i].key_size = i % 5 == 3   ? -1
                        : i % 7 == 4 ? 0
                                     : snprintf(m[i].key, 32, "key-%d-%d", run, i);
        m[i].value_size = i == 5 ? -1 : i == 6 ? 0 : (int)(rng_next() % (i % 4 == 0 ? 1200 : 60));
        for (int j = 0; j < m[i].value_size; j++)
            m[i].value[j] = "abcdefgh "[rng_next() % (j % 3 ? 9 : 2)];
        /* not monotonic: some records are older than the first (negative deltas) */
        m[i].timestamp = 1700000000000 + i * 13 - (i % 4 == 2 ? 500 : 0);
        m[i].headers = i % 3;
    }
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    if (msg->err)
        fprintf(stderr, "delivery failed: %s\n", rd_kafka_err2str(msg->err));
    else
        (*(int *)opaque)++;
}

static void produce_run(struct relay *relay, const char *bootstraps, const char *codec,
                        bool idempotent, struct message *m)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    int delivered = 0;
    const char *settings[][2] = {
        {"bootstrap.servers", bootstraps},
        {"compression.codec", codec},
        {"linger.ms", "100"},
        {"batch.num.messages", "10000"},
        {"message.timeout.ms", "20000"},
        {"enable.idempotence", idempotent ? "true" : "false"},
        {"log_level", "3"},
        {"broker.address.family", "v4"}, /* the relay's */
    };
    for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++)
        if (rd_kafka_conf_set(conf, settings[i][0], settings[i][1], err, sizeof(err)) !=
            RD_KAFKA_CONF_OK)
            test_fail_(__FILE__, __LINE__, "conf %s: %s", settings[i][0], err);
    active_relay = relay; /* before rd_kafka_new(): it connects at once */
    rd_kafka_conf_set_connect_cb(conf, connect_to_relay);
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_conf_set_opaque(conf, &delivered);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    CHECK(rk != NULL);
    for (int i = 0; i < MESSAGES; i++) {
        rd_kafka_headers_t *headers = rd_kafka_headers_new(4);
        for (int h = 0; h < m[i].headers; h++) {
            char name[16];
            snprintf(name, sizeof(name), "hdr%d", h);
            CHECK_EQ(rd_kafka_header_add(headers, name, -1, h == 1 ? NULL : "header-value",
                                         h == 1 ? 0 : 12),
                     0);
        }
        /* librdkafka's V_ macros cast their arguments unparenthesized */
        const void *key = m[i].key_size < 0 ? NULL : m[i].key;
        const void *value = m[i].value_size < 0 ? NULL : m[i].value;
        size_t key_size = (size_t)(m[i].key_size < 0 ? 0 : m[i].key_size);
        size_t value_size = (size_t)(m[i].value_size < 0 ? 0 : m[i].value_size);
        rd_kafka_resp_err_t e = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC("ref"), RD_KAFKA_V_PARTITION(0), RD_KAFKA_V_KEY(key, key_size),
            RD_KAFKA_V_VALUE((void *)value, value_size), RD_KAFKA_V_TIMESTAMP(m[i].timestamp),
            RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_END);
        CHECK_EQ(e, 0);
    }
    CHECK_EQ(rd_kafka_flush(rk, 30000), 0);
    CHECK_EQ(delivered, MESSAGES);
    rd_kafka_destroy(rk);
}

/* Decodes the captured batch's records, checks them against the messages from *next on, and
 * re-encodes them with our encoder: the bytes must be librdkafka's. */
static void check_uncompressed(const struct captured *c, const struct message *m, int *next)
{
    static struct turbine_record_in in[MESSAGES];
    static struct turbine_header_in hin[MESSAGES * 4];
    struct turbine_batch_info info;
    CHECK_EQ(turbine_batch_validate(c->bytes, c->size, &info), TURBINE_BATCH_OK);
    struct turbine_record_iter iter;
    struct turbine_record r;
    CHECK_EQ(turbine_record_iter_init(&iter, c->bytes, c->size), TURBINE_BATCH_OK);
    int n = 0, nh = 0;
    while (turbine_record_iter_next(&iter, &r)) {
        const struct message *want = &m[*next + n];
        CHECK_LT(*next + n, MESSAGES);
        CHECK_EQ(info.header.base_timestamp + r.timestamp_delta, want->timestamp);
        CHECK_EQ(r.key_size, want->key_size);
        CHECK(r.key_size <= 0 || memcmp(r.key, want->key, (size_t)r.key_size) == 0);
        CHECK_EQ(r.value_size, want->value_size);
        CHECK(r.value_size <= 0 || memcmp(r.value, want->value, (size_t)r.value_size) == 0);
        CHECK_EQ(r.headers_count, want->headers);
        in[n] = (struct turbine_record_in){info.header.base_timestamp + r.timestamp_delta,
                                           r.key,
                                           r.key_size,
                                           r.value,
                                           r.value_size,
                                           &hin[nh],
                                           r.headers_count};
        struct turbine_header_iter hi;
        struct turbine_header h;
        turbine_header_iter_init(&hi, &r);
        while (turbine_header_iter_next(&hi, &h))
            hin[nh++] = (struct turbine_header_in){h.key, h.key_size, h.value, h.value_size};
        n++;
    }
    CHECK_EQ(turbine_record_iter_status(&iter), TURBINE_BATCH_OK);
    CHECK_EQ(n, info.header.records_count);
    *next += n;

    const struct turbine_batch_header *hd = &info.header;
    struct turbine_batch_params params = {hd->base_offset,    hd->partition_leader_epoch,
                                          hd->attributes,     hd->producer_id,
                                          hd->producer_epoch, hd->base_sequence};
    static uint8_t out[1 << 16];
    int64_t size = turbine_batch_encode(out, sizeof(out), &params, in, n);
    CHECK_EQ(size, c->size);
    for (size_t i = 0; i < c->size; i++)
        if (out[i] != c->bytes[i])
            test_fail_(__FILE__, __LINE__, "re-encoded byte %zu: 0x%02x, librdkafka 0x%02x", i,
                       out[i], c->bytes[i]);
}

/* Any changed byte is caught: by the CRC inside its coverage, by framing or magic outside. */
static void check_corruption(const struct captured *c)
{
    uint8_t *copy = malloc(c->size);
    memcpy(copy, c->bytes, c->size);
    for (size_t i = 0; i < c->size; i++) {
        uint8_t saved = copy[i];
        copy[i] ^= (uint8_t)(1 + rng_next() % 255);
        enum turbine_batch_status s = turbine_batch_validate(copy, c->size, NULL);
        if (i < TURBINE_BATCH_OFF_BATCH_LENGTH ||
            (i >= TURBINE_BATCH_OFF_LEADER_EPOCH && i < TURBINE_BATCH_OFF_MAGIC))
            CHECK_EQ(s, TURBINE_BATCH_OK); /* baseOffset, partitionLeaderEpoch: the stamps */
        else if (i < TURBINE_BATCH_OFF_LEADER_EPOCH)
            CHECK_NE(s, TURBINE_BATCH_OK);
        else if (i == TURBINE_BATCH_OFF_MAGIC)
            CHECK_EQ(s, TURBINE_BATCH_BAD_MAGIC);
        else
            CHECK_EQ(s, TURBINE_BATCH_BAD_CRC);
        copy[i] = saved;
    }
    free(copy);
}

static void test_librdkafka(void)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    CHECK_EQ(rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err)), RD_KAFKA_CONF_OK);
    rd_kafka_t *mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    CHECK(mock_rk != NULL);
    rd_kafka_mock_cluster_t *cluster = rd_kafka_mock_cluster_new(mock_rk, 1);
    CHECK(cluster != NULL);
    CHECK_EQ(rd_kafka_mock_topic_create(cluster, "ref", 1, 1), 0);
    const char *bootstraps = rd_kafka_mock_cluster_bootstraps(cluster);
    struct relay relay;
    relay_start(&relay, bootstraps);

    static const struct {
        const char *codec;
        bool idempotent;
        int attributes_codec;
    } runs[] = {
        {"none", false, 0},  {"none", true, 0}, {"gzip", true, 1},
        {"snappy", true, 2}, {"lz4", true, 3},  {"zstd", true, 4},
    };
    static struct message m[MESSAGES];
    int checked_plain = 0, checked_compressed = 0;
    for (size_t run = 0; run < sizeof(runs) / sizeof(runs[0]); run++) {
        make_messages(m, (int)run);
        pthread_mutex_lock(&capture.lock);
        int first = capture.count;
        pthread_mutex_unlock(&capture.lock);
        produce_run(&relay, bootstraps, runs[run].codec, runs[run].idempotent, m);
        pthread_mutex_lock(&capture.lock);
        int last = capture.count, parse_errors = capture.parse_errors;
        pthread_mutex_unlock(&capture.lock);
        CHECK_EQ(parse_errors, 0);
        CHECK_GT(last, first);
        int next = 0;
        for (int b = first; b < last; b++) {
            const struct captured *c = &capture.batches[b];
            struct turbine_batch_info info;
            CHECK_EQ(turbine_batch_validate(c->bytes, c->size, &info), TURBINE_BATCH_OK);
            CHECK_EQ(info.header.attributes & TURBINE_BATCH_ATTR_CODEC_MASK,
                     runs[run].attributes_codec);
            CHECK_EQ(info.header.producer_id >= 0, runs[run].idempotent);
            printf("librdkafka %-6s%s produce v%d: batch %zu bytes, %d records, pid %" PRId64
                   " epoch %d seq %d\n",
                   runs[run].codec, runs[run].idempotent ? "+idem" : "     ", c->produce_version,
                   c->size, info.header.records_count, info.header.producer_id,
                   info.header.producer_epoch, info.header.base_sequence);
            if (runs[run].attributes_codec == 0) {
                check_uncompressed(c, m, &next);
                checked_plain++;
            } else {
                next += info.header.records_count;
                checked_compressed++;
            }
            check_corruption(c);
            char name[64];
            snprintf(name, sizeof(name), "rdkafka-%s%s-%d", runs[run].codec,
                     runs[run].idempotent ? "-idem" : "", b - first);
            expect_status(name, c->bytes, c->size, TURBINE_BATCH_OK);
        }
        CHECK_EQ(next, MESSAGES);
    }
    CHECK_GT(checked_plain, 0);
    CHECK_GT(checked_compressed, 0);
    relay_stop(&relay);
    rd_kafka_mock_cluster_destroy(cluster);
    rd_kafka_destroy(mock_rk);
    for (int b = 0; b < capture.count; b++)
        free(capture.batches[b].bytes);
}

/* ---- the fuzz corpus: named seeds hold to their names ------------------------------------- */

static void test_corpus(void)
{
    DIR *d = opendir(CORPUS_DIR);
    if (d == NULL) {
        printf("no corpus at %s\n", CORPUS_DIR);
        return;
    }
    int n = 0;
    struct dirent *e;
    static uint8_t data[1 << 20];
    while ((e = readdir(d)) != NULL) {
        int expected;
        if (strncmp(e->d_name, "ok-", 3) == 0)
            expected = TURBINE_BATCH_OK;
        else if (sscanf(e->d_name, "e%2d-", &expected) != 1)
            continue; /* fuzzer finds: batch_fuzz_test replays them */
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", CORPUS_DIR, e->d_name);
        FILE *f = fopen(path, "rb");
        CHECK(f != NULL);
        size_t size = fread(data, 1, sizeof(data), f);
        fclose(f);
        struct turbine_batch_info info;
        enum turbine_batch_status s = turbine_batch_validate(data, size, &info);
        if ((int)s != expected)
            test_fail_(__FILE__, __LINE__, "%s: status %d (%s), its name says %d", e->d_name, s,
                       turbine_batch_status_str(s), expected);
        n++;
    }
    closedir(d);
    printf("corpus: %d named seeds hold\n", n);
    CHECK_GT(n, 0);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--write-corpus") == 0)
        write_corpus_dir = argv[2];
    test_crc32c();
    test_encode_walk();
    test_builder_errors();
    test_header_rules();
    test_record_rules();
    test_librdkafka();
    test_corpus();
    return TEST_EXIT_PASS;
}
