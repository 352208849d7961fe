/* SPDX-License-Identifier: MIT
 * batch.c - Kafka RecordBatch v2: validation, zero-copy record walking, encoding, CRC-32C.
 *
 * Every read is bounds-checked against the batch end before it happens, so the validator and
 * the iterators are safe on arbitrary bytes (the fuzz target batch_fuzz.c holds them to that).
 * The encoder and the validator share only the varint primitives and the field offsets; the
 * test pins both against batches librdkafka produced.
 */
#include "turbine/batch.h"
#include "log/bigendian.h"
#include "turbine_assert.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <isa-l/crc.h>

#define LIKELY(x)   __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)

/* batchLength counts everything after itself: the header from partitionLeaderEpoch on. */
#define BATCH_LENGTH_MIN   (TURBINE_BATCH_HEADER_SIZE - TURBINE_BATCH_LOG_OVERHEAD)
#define VARINT32_BYTES_MAX 5
#define VARINT64_BYTES_MAX 10

/* ---- zigzag varints (protobuf encoding, as Kafka's ByteUtils) ----------------------------- */

enum varint_result { VARINT_OK, VARINT_TRUNCATED, VARINT_OVERFLOW };

/* Reads an unsigned LEB128 of at most `bytes_max` bytes whose value fits `bits` bits. Kafka
 * accepts non-minimal encodings, and so do we; bits beyond the type are rejected (Kafka drops
 * them silently), so a varint has one meaning. */
static enum varint_result read_uvarint(const uint8_t **pp, const uint8_t *end, int bytes_max,
                                       int bits, uint64_t *out)
{
    const uint8_t *p = *pp;
    uint64_t value = 0;
    for (int i = 0; i < bytes_max; i++) {
        if (UNLIKELY(p == end))
            return VARINT_TRUNCATED;
        uint8_t byte = *p++;
        value |= (uint64_t)(byte & 0x7f) << (7 * i);
        if (LIKELY(!(byte & 0x80))) {
            if (i == bytes_max - 1 && (byte >> (bits - 7 * i)) != 0)
                return VARINT_OVERFLOW;
            *pp = p;
            *out = value;
            return VARINT_OK;
        }
    }
    return VARINT_OVERFLOW;
}

static inline __attribute__((always_inline)) enum varint_result
read_varint32(const uint8_t **pp, const uint8_t *end, int32_t *out)
{
    const uint8_t *p = *pp;
    if (LIKELY(p < end && *p < 0x80)) { /* one byte: -64..63, most lengths and deltas */
        *out = (int32_t)(*p >> 1) ^ -(int32_t)(*p & 1);
        *pp = p + 1;
        return VARINT_OK;
    }
    uint64_t u;
    enum varint_result r = read_uvarint(pp, end, VARINT32_BYTES_MAX, 32, &u);
    if (r == VARINT_OK)
        *out = (int32_t)((uint32_t)(u >> 1) ^ (uint32_t) - (int32_t)(u & 1));
    return r;
}

static inline __attribute__((always_inline)) enum varint_result
read_varint64(const uint8_t **pp, const uint8_t *end, int64_t *out)
{
    const uint8_t *p = *pp;
    if (LIKELY(p < end && *p < 0x80)) {
        *out = (int64_t)(*p >> 1) ^ -(int64_t)(*p & 1);
        *pp = p + 1;
        return VARINT_OK;
    }
    uint64_t u;
    enum varint_result r = read_uvarint(pp, end, VARINT64_BYTES_MAX, 64, &u);
    if (r == VARINT_OK)
        *out = (int64_t)((u >> 1) ^ (uint64_t) - (int64_t)(u & 1));
    return r;
}

static uint64_t zigzag64(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static int uvarint_size(uint64_t u)
{
    int n = 1;
    while (u >= 0x80) {
        u >>= 7;
        n++;
    }
    return n;
}

static int varint_size(int64_t v)
{
    return uvarint_size(zigzag64(v));
}

static uint8_t *put_varint(uint8_t *p, int64_t v)
{
    uint64_t u = zigzag64(v);
    while (u >= 0x80) {
        *p++ = (uint8_t)(u | 0x80);
        u >>= 7;
    }
    *p++ = (uint8_t)u;
    return p;
}

/* ---- status strings ----------------------------------------------------------------------- */

static const char *const status_strings[] = {
    [TURBINE_BATCH_OK] = "ok",
    [TURBINE_BATCH_TRUNCATED] = "batch truncated: fewer bytes than its header or batchLength",
    [TURBINE_BATCH_BAD_LENGTH] = "batchLength too small for the 61-byte header",
    [TURBINE_BATCH_BAD_MAGIC] = "magic is not 2",
    [TURBINE_BATCH_BAD_CRC] = "batch CRC-32C mismatch",
    [TURBINE_BATCH_BAD_CODEC] = "unknown compression codec in attributes",
    [TURBINE_BATCH_BAD_COUNT] = "recordsCount below 1",
    [TURBINE_BATCH_BAD_LAST_OFFSET] = "lastOffsetDelta is not recordsCount - 1",
    [TURBINE_BATCH_RECORD_TRUNCATED] = "record runs past the batch end",
    [TURBINE_BATCH_RECORD_BAD_VARINT] = "record varint too long or out of range",
    [TURBINE_BATCH_RECORD_BAD_LENGTH] = "record length disagrees with its fields",
    [TURBINE_BATCH_RECORD_BAD_OFFSET] = "record offsetDelta is not its index in the batch",
    [TURBINE_BATCH_RECORD_BAD_KEY] = "record key length invalid or past the record",
    [TURBINE_BATCH_RECORD_BAD_VALUE] = "record value length invalid or past the record",
    [TURBINE_BATCH_RECORD_BAD_HEADERS] = "record headers invalid or past the record",
    [TURBINE_BATCH_TOO_FEW_RECORDS] = "batch ends before recordsCount records",
    [TURBINE_BATCH_TRAILING_BYTES] = "bytes left in the batch after recordsCount records",
    [TURBINE_BATCH_COMPRESSED] = "compressed batch: records not walkable in place",
};
_Static_assert(sizeof(status_strings) / sizeof(status_strings[0]) == TURBINE_BATCH_STATUS_MAX + 1,
               "a string per status");

const char *turbine_batch_status_str(int status)
{
    if (status < 0 || status > TURBINE_BATCH_STATUS_MAX)
        return "unknown batch status";
    return status_strings[status];
}

/* ---- CRC-32C ------------------------------------------------------------------------------ */

uint32_t turbine_crc32c(uint32_t crc, const void *data, size_t size)
{
    /* crc32_iscsi neither inverts its input nor its output: the standard CRC-32C pre- and
     * post-conditions are ours. It takes an int length, hence the chunks. */
    const uint8_t *p = data;
    uint32_t state = ~crc;
    while (size > 0) {
        int chunk = size > (size_t)(INT_MAX & ~4095) ? (INT_MAX & ~4095) : (int)size;
        state = crc32_iscsi((unsigned char *)p, chunk, state);
        p += chunk;
        size -= (size_t)chunk;
    }
    return ~state;
}

/* ---- header ------------------------------------------------------------------------------- */

void turbine_batch_header_decode(const void *data, struct turbine_batch_header *h)
{
    const uint8_t *p = data;
    h->base_offset = (int64_t)get_be64(p + TURBINE_BATCH_OFF_BASE_OFFSET);
    h->batch_length = (int32_t)get_be32(p + TURBINE_BATCH_OFF_BATCH_LENGTH);
    h->partition_leader_epoch = (int32_t)get_be32(p + TURBINE_BATCH_OFF_LEADER_EPOCH);
    h->magic = (int8_t)p[TURBINE_BATCH_OFF_MAGIC];
    h->crc = get_be32(p + TURBINE_BATCH_OFF_CRC);
    h->attributes = (int16_t)get_be16(p + TURBINE_BATCH_OFF_ATTRIBUTES);
    h->last_offset_delta = (int32_t)get_be32(p + TURBINE_BATCH_OFF_LAST_OFFSET_DELTA);
    h->base_timestamp = (int64_t)get_be64(p + TURBINE_BATCH_OFF_BASE_TIMESTAMP);
    h->max_timestamp = (int64_t)get_be64(p + TURBINE_BATCH_OFF_MAX_TIMESTAMP);
    h->producer_id = (int64_t)get_be64(p + TURBINE_BATCH_OFF_PRODUCER_ID);
    h->producer_epoch = (int16_t)get_be16(p + TURBINE_BATCH_OFF_PRODUCER_EPOCH);
    h->base_sequence = (int32_t)get_be32(p + TURBINE_BATCH_OFF_BASE_SEQUENCE);
    h->records_count = (int32_t)get_be32(p + TURBINE_BATCH_OFF_RECORDS_COUNT);
}

void turbine_batch_set_base_offset(void *data, int64_t base_offset)
{
    put_be64((uint8_t *)data + TURBINE_BATCH_OFF_BASE_OFFSET, (uint64_t)base_offset);
}

void turbine_batch_set_partition_leader_epoch(void *data, int32_t epoch)
{
    put_be32((uint8_t *)data + TURBINE_BATCH_OFF_LEADER_EPOCH, (uint32_t)epoch);
}

/* Framing: the batch's extent within `size` bytes, and the header. No CRC. */
static enum turbine_batch_status frame(const uint8_t *p, size_t size,
                                       struct turbine_batch_info *info)
{
    info->size = 0;
    info->error_offset = 0;
    if (size >= TURBINE_BATCH_HEADER_SIZE)
        turbine_batch_header_decode(p, &info->header);
    else
        memset(&info->header, 0, sizeof(info->header));
    if (size < TURBINE_BATCH_LOG_OVERHEAD)
        return (info->error_offset = size), TURBINE_BATCH_TRUNCATED;
    int32_t batch_length = (int32_t)get_be32(p + TURBINE_BATCH_OFF_BATCH_LENGTH);
    if (batch_length < BATCH_LENGTH_MIN)
        return (info->error_offset = TURBINE_BATCH_OFF_BATCH_LENGTH), TURBINE_BATCH_BAD_LENGTH;
    size_t batch_size = TURBINE_BATCH_LOG_OVERHEAD + (size_t)batch_length;
    info->size = batch_size;
    if (size < batch_size)
        return (info->error_offset = size), TURBINE_BATCH_TRUNCATED;
    if (info->header.magic != TURBINE_BATCH_MAGIC)
        return (info->error_offset = TURBINE_BATCH_OFF_MAGIC), TURBINE_BATCH_BAD_MAGIC;
    return TURBINE_BATCH_OK;
}

/* The header rules after the CRC: codec, count, lastOffsetDelta. */
static enum turbine_batch_status check_header(struct turbine_batch_info *info)
{
    const struct turbine_batch_header *h = &info->header;
    if ((h->attributes & TURBINE_BATCH_ATTR_CODEC_MASK) > TURBINE_BATCH_CODEC_ZSTD)
        return (info->error_offset = TURBINE_BATCH_OFF_ATTRIBUTES), TURBINE_BATCH_BAD_CODEC;
    if (h->records_count < 1)
        return (info->error_offset = TURBINE_BATCH_OFF_RECORDS_COUNT), TURBINE_BATCH_BAD_COUNT;
    if (h->last_offset_delta != h->records_count - 1) {
        info->error_offset = TURBINE_BATCH_OFF_LAST_OFFSET_DELTA;
        return TURBINE_BATCH_BAD_LAST_OFFSET;
    }
    return TURBINE_BATCH_OK;
}

/* ---- records ------------------------------------------------------------------------------ */

static enum turbine_batch_status varint_status(enum varint_result r,
                                               enum turbine_batch_status truncated)
{
    return r == VARINT_TRUNCATED ? truncated : TURBINE_BATCH_RECORD_BAD_VARINT;
}

/* A length-prefixed byte string within [*pp, end): length varint >= min_size (-1 = null). */
static enum turbine_batch_status read_bytes(const uint8_t **pp, const uint8_t *end,
                                            int32_t min_size, enum turbine_batch_status bad,
                                            const uint8_t **bytes, int32_t *size)
{
    enum varint_result r = read_varint32(pp, end, size);
    if (r != VARINT_OK)
        return varint_status(r, bad);
    if (*size < min_size)
        return bad;
    if (*size < 0) {
        *bytes = NULL;
        return TURBINE_BATCH_OK;
    }
    if ((size_t)*size > (size_t)(end - *pp))
        return bad;
    *bytes = *pp;
    *pp += *size;
    return TURBINE_BATCH_OK;
}

static enum turbine_batch_status read_headers(const uint8_t **pp, const uint8_t *end,
                                              struct turbine_record *record)
{
    const uint8_t *p = *pp;
    enum varint_result r = read_varint32(&p, end, &record->headers_count);
    if (r != VARINT_OK)
        return varint_status(r, TURBINE_BATCH_RECORD_BAD_HEADERS);
    if (record->headers_count < 0)
        return TURBINE_BATCH_RECORD_BAD_HEADERS;
    record->headers = p;
    for (int32_t i = 0; i < record->headers_count; i++) {
        struct turbine_header h;
        enum turbine_batch_status s;
        s = read_bytes(&p, end, 0, TURBINE_BATCH_RECORD_BAD_HEADERS, &h.key, &h.key_size);
        if (s != TURBINE_BATCH_OK)
            return s;
        s = read_bytes(&p, end, -1, TURBINE_BATCH_RECORD_BAD_HEADERS, &h.value, &h.value_size);
        if (s != TURBINE_BATCH_OK)
            return s;
    }
    record->headers_size = (size_t)(p - record->headers);
    *pp = p;
    return TURBINE_BATCH_OK;
}

/* Decodes the record at *pp (batch end `end`) and advances *pp past it. */
static enum turbine_batch_status record_decode(const uint8_t **pp, const uint8_t *end,
                                               struct turbine_record *record)
{
    const uint8_t *p = *pp;
    int32_t length;
    enum varint_result r = read_varint32(&p, end, &length);
    if (r != VARINT_OK)
        return varint_status(r, TURBINE_BATCH_RECORD_TRUNCATED);
    if (length < 1)
        return TURBINE_BATCH_RECORD_BAD_LENGTH;
    if ((size_t)length > (size_t)(end - p))
        return TURBINE_BATCH_RECORD_TRUNCATED;
    const uint8_t *record_end = p + length;

    record->attributes = (int8_t)*p++;
    r = read_varint64(&p, record_end, &record->timestamp_delta);
    if (r == VARINT_OK)
        r = read_varint32(&p, record_end, &record->offset_delta);
    if (r != VARINT_OK)
        return varint_status(r, TURBINE_BATCH_RECORD_BAD_LENGTH);
    enum turbine_batch_status s;
    s = read_bytes(&p, record_end, -1, TURBINE_BATCH_RECORD_BAD_KEY, &record->key,
                   &record->key_size);
    if (s == TURBINE_BATCH_OK)
        s = read_bytes(&p, record_end, -1, TURBINE_BATCH_RECORD_BAD_VALUE, &record->value,
                       &record->value_size);
    if (s == TURBINE_BATCH_OK)
        s = read_headers(&p, record_end, record);
    if (s != TURBINE_BATCH_OK)
        return s;
    if (p != record_end)
        return TURBINE_BATCH_RECORD_BAD_LENGTH;
    *pp = p;
    return TURBINE_BATCH_OK;
}

static void iter_init_at(struct turbine_record_iter *iter, const uint8_t *batch, size_t size,
                         int32_t count)
{
    iter->batch = batch;
    iter->next = batch + TURBINE_BATCH_HEADER_SIZE;
    iter->end = batch + size;
    iter->index = 0;
    iter->count = count;
    iter->status = TURBINE_BATCH_OK;
}

enum turbine_batch_status turbine_record_iter_init(struct turbine_record_iter *iter,
                                                   const void *data, size_t size)
{
    struct turbine_batch_info info;
    enum turbine_batch_status s = frame(data, size, &info);
    if (s == TURBINE_BATCH_OK)
        s = check_header(&info);
    if (s == TURBINE_BATCH_OK &&
        (info.header.attributes & TURBINE_BATCH_ATTR_CODEC_MASK) != TURBINE_BATCH_CODEC_NONE)
        s = TURBINE_BATCH_COMPRESSED;
    if (s != TURBINE_BATCH_OK) {
        iter->batch = iter->next = iter->end = data; /* yields nothing */
        iter->index = iter->count = 0;
        iter->status = s;
        return s;
    }
    iter_init_at(iter, data, info.size, info.header.records_count);
    return TURBINE_BATCH_OK;
}

bool turbine_record_iter_next(struct turbine_record_iter *iter, struct turbine_record *record)
{
    if (iter->status != TURBINE_BATCH_OK)
        return false;
    if (iter->index == iter->count) {
        if (iter->next != iter->end)
            iter->status = TURBINE_BATCH_TRAILING_BYTES;
        return false;
    }
    if (iter->next == iter->end) {
        iter->status = TURBINE_BATCH_TOO_FEW_RECORDS;
        return false;
    }
    const uint8_t *p = iter->next;
    enum turbine_batch_status s = record_decode(&p, iter->end, record);
    if (s == TURBINE_BATCH_OK && record->offset_delta != iter->index)
        s = TURBINE_BATCH_RECORD_BAD_OFFSET;
    if (s != TURBINE_BATCH_OK) {
        iter->status = s;
        return false;
    }
    TURBINE_ASSERT(p > iter->next);
    TURBINE_ASSERT(p <= iter->end);
    iter->next = p;
    iter->index++;
    return true;
}

enum turbine_batch_status turbine_record_iter_status(const struct turbine_record_iter *iter)
{
    return iter->status;
}

size_t turbine_record_iter_offset(const struct turbine_record_iter *iter)
{
    return (size_t)(iter->next - iter->batch);
}

void turbine_header_iter_init(struct turbine_header_iter *iter, const struct turbine_record *record)
{
    iter->next = record->headers;
    iter->end = record->headers + record->headers_size;
    iter->remaining = record->headers_count;
}

bool turbine_header_iter_next(struct turbine_header_iter *iter, struct turbine_header *header)
{
    if (iter->remaining == 0) {
        TURBINE_ASSERT(iter->next == iter->end);
        return false;
    }
    /* turbine_record_iter_next() checked these bytes: a failure here is a caller's bug. */
    enum turbine_batch_status s;
    s = read_bytes(&iter->next, iter->end, 0, TURBINE_BATCH_RECORD_BAD_HEADERS, &header->key,
                   &header->key_size);
    TURBINE_ASSERT(s == TURBINE_BATCH_OK);
    s = read_bytes(&iter->next, iter->end, -1, TURBINE_BATCH_RECORD_BAD_HEADERS, &header->value,
                   &header->value_size);
    TURBINE_ASSERT(s == TURBINE_BATCH_OK);
    iter->remaining--;
    return true;
}

/* ---- validation --------------------------------------------------------------------------- */

static enum turbine_batch_status walk_records(const uint8_t *p, struct turbine_batch_info *info)
{
    struct turbine_record_iter iter;
    struct turbine_record record;
    iter_init_at(&iter, p, info->size, info->header.records_count);
    int64_t max_timestamp = INT64_MIN;
    while (turbine_record_iter_next(&iter, &record)) {
        int64_t timestamp =
            (int64_t)((uint64_t)info->header.base_timestamp + (uint64_t)record.timestamp_delta);
        if (timestamp > max_timestamp)
            max_timestamp = timestamp;
    }
    info->records = iter.index;
    info->max_timestamp_seen = max_timestamp;
    if (iter.status != TURBINE_BATCH_OK)
        info->error_offset = turbine_record_iter_offset(&iter);
    else
        TURBINE_ASSERT(iter.index == info->header.records_count);
    return iter.status;
}

enum turbine_batch_status turbine_batch_validate(const void *data, size_t size,
                                                 struct turbine_batch_info *info)
{
    struct turbine_batch_info scratch;
    if (info == NULL)
        info = &scratch;
    const uint8_t *p = data;
    info->records = 0;
    info->max_timestamp_seen = INT64_MIN;
    enum turbine_batch_status s = frame(p, size, info);
    if (s != TURBINE_BATCH_OK)
        return s;
    TURBINE_ASSERT(info->size >= TURBINE_BATCH_HEADER_SIZE && info->size <= size);

    uint32_t crc = turbine_crc32c(0, p + TURBINE_BATCH_OFF_ATTRIBUTES,
                                  info->size - TURBINE_BATCH_OFF_ATTRIBUTES);
    if (crc != info->header.crc)
        return (info->error_offset = TURBINE_BATCH_OFF_CRC), TURBINE_BATCH_BAD_CRC;
    s = check_header(info);
    if (s != TURBINE_BATCH_OK)
        return s;
    if ((info->header.attributes & TURBINE_BATCH_ATTR_CODEC_MASK) != TURBINE_BATCH_CODEC_NONE) {
        info->records = info->header.records_count;
        info->max_timestamp_seen = info->header.max_timestamp;
        return TURBINE_BATCH_OK;
    }
    return walk_records(p, info);
}

/* ---- encoding ----------------------------------------------------------------------------- */

static bool size_ok(const void *bytes, int32_t size, int32_t min_size)
{
    return size >= min_size && (size <= 0 || bytes != NULL);
}

/* The record body: everything after the length varint. */
static int64_t record_body_size(const struct turbine_record_in *record, int64_t timestamp_delta,
                                int32_t offset_delta)
{
    if (!size_ok(record->key, record->key_size, -1) ||
        !size_ok(record->value, record->value_size, -1) || record->headers_count < 0 ||
        (record->headers_count > 0 && record->headers == NULL))
        return -EINVAL;
    int64_t n = 1 + varint_size(timestamp_delta) + varint_size(offset_delta);
    n += varint_size(record->key_size) + (record->key_size > 0 ? record->key_size : 0);
    n += varint_size(record->value_size) + (record->value_size > 0 ? record->value_size : 0);
    n += varint_size(record->headers_count);
    for (int32_t i = 0; i < record->headers_count; i++) {
        const struct turbine_header_in *h = &record->headers[i];
        if (!size_ok(h->key, h->key_size, 0) || !size_ok(h->value, h->value_size, -1))
            return -EINVAL;
        n += varint_size(h->key_size) + h->key_size;
        n += varint_size(h->value_size) + (h->value_size > 0 ? h->value_size : 0);
    }
    return n;
}

int64_t turbine_record_encoded_size(const struct turbine_record_in *record, int64_t timestamp_delta,
                                    int32_t offset_delta)
{
    int64_t body = record_body_size(record, timestamp_delta, offset_delta);
    if (body < 0)
        return body;
    return varint_size(body) + body;
}

static uint8_t *put_bytes(uint8_t *p, const void *bytes, int32_t size)
{
    p = put_varint(p, size);
    if (size > 0) {
        memcpy(p, bytes, (size_t)size);
        p += size;
    }
    return p;
}

int turbine_batch_builder_init(struct turbine_batch_builder *builder, void *buffer, size_t capacity,
                               const struct turbine_batch_params *params)
{
    if ((params->attributes & TURBINE_BATCH_ATTR_CODEC_MASK) != TURBINE_BATCH_CODEC_NONE)
        return -EINVAL;
    if (capacity < TURBINE_BATCH_HEADER_SIZE)
        return -ENOSPC;
    builder->buffer = buffer;
    builder->capacity = capacity;
    builder->used = TURBINE_BATCH_HEADER_SIZE;
    builder->params = *params;
    builder->count = 0;
    builder->base_timestamp = 0;
    builder->max_timestamp = INT64_MIN;
    return 0;
}

int turbine_batch_builder_append(struct turbine_batch_builder *builder,
                                 const struct turbine_record_in *record)
{
    TURBINE_ASSERT(builder->used >= TURBINE_BATCH_HEADER_SIZE);
    TURBINE_ASSERT(builder->used <= builder->capacity);
    if (builder->count == INT32_MAX)
        return -EOVERFLOW;
    int64_t base_timestamp = builder->count == 0 ? record->timestamp : builder->base_timestamp;
    int64_t timestamp_delta = (int64_t)((uint64_t)record->timestamp - (uint64_t)base_timestamp);
    int64_t body = record_body_size(record, timestamp_delta, builder->count);
    if (body < 0)
        return (int)body;
    int64_t total = varint_size(body) + body;
    if ((int64_t)builder->used - TURBINE_BATCH_LOG_OVERHEAD + total > INT32_MAX)
        return -EOVERFLOW;
    if ((uint64_t)total > builder->capacity - builder->used)
        return -ENOSPC;

    uint8_t *start = builder->buffer + builder->used;
    uint8_t *p = put_varint(start, body);
    *p++ = 0; /* record attributes: unused */
    p = put_varint(p, timestamp_delta);
    p = put_varint(p, builder->count);
    p = put_bytes(p, record->key, record->key_size);
    p = put_bytes(p, record->value, record->value_size);
    p = put_varint(p, record->headers_count);
    for (int32_t i = 0; i < record->headers_count; i++) {
        p = put_bytes(p, record->headers[i].key, record->headers[i].key_size);
        p = put_bytes(p, record->headers[i].value, record->headers[i].value_size);
    }
    TURBINE_ASSERT(p - start == total);
    builder->used += (size_t)total;
    builder->base_timestamp = base_timestamp;
    if (record->timestamp > builder->max_timestamp)
        builder->max_timestamp = record->timestamp;
    builder->count++;
    return 0;
}

int64_t turbine_batch_builder_finish(struct turbine_batch_builder *builder)
{
    if (builder->count == 0)
        return -EINVAL;
    TURBINE_ASSERT(builder->used <= builder->capacity);
    TURBINE_ASSERT(builder->used - TURBINE_BATCH_LOG_OVERHEAD <= INT32_MAX);
    const struct turbine_batch_params *params = &builder->params;
    uint8_t *b = builder->buffer;
    put_be64(b + TURBINE_BATCH_OFF_BASE_OFFSET, (uint64_t)params->base_offset);
    put_be32(b + TURBINE_BATCH_OFF_BATCH_LENGTH,
             (uint32_t)(builder->used - TURBINE_BATCH_LOG_OVERHEAD));
    put_be32(b + TURBINE_BATCH_OFF_LEADER_EPOCH, (uint32_t)params->partition_leader_epoch);
    b[TURBINE_BATCH_OFF_MAGIC] = TURBINE_BATCH_MAGIC;
    put_be16(b + TURBINE_BATCH_OFF_ATTRIBUTES, (uint16_t)params->attributes);
    put_be32(b + TURBINE_BATCH_OFF_LAST_OFFSET_DELTA, (uint32_t)(builder->count - 1));
    put_be64(b + TURBINE_BATCH_OFF_BASE_TIMESTAMP, (uint64_t)builder->base_timestamp);
    put_be64(b + TURBINE_BATCH_OFF_MAX_TIMESTAMP, (uint64_t)builder->max_timestamp);
    put_be64(b + TURBINE_BATCH_OFF_PRODUCER_ID, (uint64_t)params->producer_id);
    put_be16(b + TURBINE_BATCH_OFF_PRODUCER_EPOCH, (uint16_t)params->producer_epoch);
    put_be32(b + TURBINE_BATCH_OFF_BASE_SEQUENCE, (uint32_t)params->base_sequence);
    put_be32(b + TURBINE_BATCH_OFF_RECORDS_COUNT, (uint32_t)builder->count);
    uint32_t crc = turbine_crc32c(0, b + TURBINE_BATCH_OFF_ATTRIBUTES,
                                  builder->used - TURBINE_BATCH_OFF_ATTRIBUTES);
    put_be32(b + TURBINE_BATCH_OFF_CRC, crc);
    int64_t size = (int64_t)builder->used;
    builder->count = 0; /* spent */
    return size;
}

int64_t turbine_batch_encode(void *out, size_t capacity, const struct turbine_batch_params *params,
                             const struct turbine_record_in *records, int32_t count)
{
    struct turbine_batch_builder builder;
    int r = turbine_batch_builder_init(&builder, out, capacity, params);
    if (r < 0)
        return r;
    for (int32_t i = 0; i < count; i++) {
        r = turbine_batch_builder_append(&builder, &records[i]);
        if (r < 0)
            return r;
    }
    return turbine_batch_builder_finish(&builder);
}
