/* SPDX-License-Identifier: MIT
 * batch.h - Kafka RecordBatch v2 (magic 2), byte for byte: validator, zero-copy record
 * iterator, encoder, and CRC-32C.
 *
 * A batch is stored and served exactly as a producer sent it; the broker only stamps
 * baseOffset and partitionLeaderEpoch, which lie outside the CRC. Nothing here allocates or
 * copies record bytes: the validator and the iterators return pointers into the caller's
 * buffer, valid as long as that buffer is. The byte layout is in docs/storage-format.md.
 *
 * OFFSET SIZE FIELD                   (all integers big-endian)
 *      0    8 baseOffset              offset of the first record; stamped by the broker
 *      8    4 batchLength             bytes after this field (batch size - 12)
 *     12    4 partitionLeaderEpoch    stamped by the broker
 *     16    1 magic                   2
 *     17    4 crc                     CRC-32C of bytes 21..end (attributes to the last record)
 *     21    2 attributes              bits 0-2 codec, 3 log-append time, 4 transactional,
 *                                     5 control, 6 delete horizon
 *     23    4 lastOffsetDelta         recordsCount - 1 in a batch as produced
 *     27    8 baseTimestamp           timestamp of the first record
 *     35    8 maxTimestamp            largest record timestamp
 *     43    8 producerId              -1 without an idempotent producer
 *     51    2 producerEpoch
 *     53    4 baseSequence
 *     57    4 recordsCount
 *     61      records                 varint records, or one compressed blob (codec != 0)
 */
#ifndef TURBINE_BATCH_H
#define TURBINE_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define TURBINE_API __attribute__((visibility("default")))
#else
#define TURBINE_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define TURBINE_BATCH_OFF_BASE_OFFSET       0
#define TURBINE_BATCH_OFF_BATCH_LENGTH      8
#define TURBINE_BATCH_OFF_LEADER_EPOCH      12
#define TURBINE_BATCH_OFF_MAGIC             16
#define TURBINE_BATCH_OFF_CRC               17
#define TURBINE_BATCH_OFF_ATTRIBUTES        21
#define TURBINE_BATCH_OFF_LAST_OFFSET_DELTA 23
#define TURBINE_BATCH_OFF_BASE_TIMESTAMP    27
#define TURBINE_BATCH_OFF_MAX_TIMESTAMP     35
#define TURBINE_BATCH_OFF_PRODUCER_ID       43
#define TURBINE_BATCH_OFF_PRODUCER_EPOCH    51
#define TURBINE_BATCH_OFF_BASE_SEQUENCE     53
#define TURBINE_BATCH_OFF_RECORDS_COUNT     57
#define TURBINE_BATCH_HEADER_SIZE           61
/* baseOffset and batchLength: what precedes the bytes batchLength counts. */
#define TURBINE_BATCH_LOG_OVERHEAD 12
#define TURBINE_BATCH_MAGIC        2

_Static_assert(TURBINE_BATCH_OFF_BATCH_LENGTH == TURBINE_BATCH_OFF_BASE_OFFSET + 8, "i64");
_Static_assert(TURBINE_BATCH_OFF_LEADER_EPOCH == TURBINE_BATCH_OFF_BATCH_LENGTH + 4, "i32");
_Static_assert(TURBINE_BATCH_OFF_MAGIC == TURBINE_BATCH_OFF_LEADER_EPOCH + 4, "i32");
_Static_assert(TURBINE_BATCH_OFF_CRC == TURBINE_BATCH_OFF_MAGIC + 1, "i8");
_Static_assert(TURBINE_BATCH_OFF_ATTRIBUTES == TURBINE_BATCH_OFF_CRC + 4, "u32");
_Static_assert(TURBINE_BATCH_OFF_LAST_OFFSET_DELTA == TURBINE_BATCH_OFF_ATTRIBUTES + 2, "i16");
_Static_assert(TURBINE_BATCH_OFF_BASE_TIMESTAMP == TURBINE_BATCH_OFF_LAST_OFFSET_DELTA + 4, "i32");
_Static_assert(TURBINE_BATCH_OFF_MAX_TIMESTAMP == TURBINE_BATCH_OFF_BASE_TIMESTAMP + 8, "i64");
_Static_assert(TURBINE_BATCH_OFF_PRODUCER_ID == TURBINE_BATCH_OFF_MAX_TIMESTAMP + 8, "i64");
_Static_assert(TURBINE_BATCH_OFF_PRODUCER_EPOCH == TURBINE_BATCH_OFF_PRODUCER_ID + 8, "i64");
_Static_assert(TURBINE_BATCH_OFF_BASE_SEQUENCE == TURBINE_BATCH_OFF_PRODUCER_EPOCH + 2, "i16");
_Static_assert(TURBINE_BATCH_OFF_RECORDS_COUNT == TURBINE_BATCH_OFF_BASE_SEQUENCE + 4, "i32");
_Static_assert(TURBINE_BATCH_HEADER_SIZE == TURBINE_BATCH_OFF_RECORDS_COUNT + 4, "61 bytes");

/* attributes */
#define TURBINE_BATCH_ATTR_CODEC_MASK      0x0007
#define TURBINE_BATCH_ATTR_LOG_APPEND_TIME 0x0008
#define TURBINE_BATCH_ATTR_TRANSACTIONAL   0x0010
#define TURBINE_BATCH_ATTR_CONTROL         0x0020
#define TURBINE_BATCH_ATTR_DELETE_HORIZON  0x0040

enum turbine_batch_codec {
    TURBINE_BATCH_CODEC_NONE = 0,
    TURBINE_BATCH_CODEC_GZIP = 1,
    TURBINE_BATCH_CODEC_SNAPPY = 2,
    TURBINE_BATCH_CODEC_LZ4 = 3,
    TURBINE_BATCH_CODEC_ZSTD = 4,
};

/* What the validator and the record iterator report. Stable numbers (docs/storage-format.md
 * lists them); 0 is success, every other value names the first rule the bytes break. They are
 * an on-disk/diagnostic vocabulary, not errno: the Kafka listener maps them all to
 * CORRUPT_MESSAGE, the native protocol to its own codes. */
enum turbine_batch_status {
    TURBINE_BATCH_OK = 0,
    /* framing and header */
    TURBINE_BATCH_TRUNCATED = 1,       /* fewer bytes than the header or batchLength needs */
    TURBINE_BATCH_BAD_LENGTH = 2,      /* batchLength < 49 (shorter than the header) */
    TURBINE_BATCH_BAD_MAGIC = 3,       /* magic != 2 */
    TURBINE_BATCH_BAD_CRC = 4,         /* stored crc != CRC-32C(attributes..end) */
    TURBINE_BATCH_BAD_CODEC = 5,       /* attributes codec 5, 6 or 7 */
    TURBINE_BATCH_BAD_COUNT = 6,       /* recordsCount < 1 */
    TURBINE_BATCH_BAD_LAST_OFFSET = 7, /* lastOffsetDelta != recordsCount - 1 */
    /* records (uncompressed batches only) */
    TURBINE_BATCH_RECORD_TRUNCATED = 8,    /* a record's length varint or length passes the end */
    TURBINE_BATCH_RECORD_BAD_VARINT = 9,   /* varint longer than 5 (10) bytes or out of range */
    TURBINE_BATCH_RECORD_BAD_LENGTH = 10,  /* record length < 1, a fixed field passes it, or the
                                              fields end before it */
    TURBINE_BATCH_RECORD_BAD_OFFSET = 11,  /* offsetDelta != the record's index */
    TURBINE_BATCH_RECORD_BAD_KEY = 12,     /* key length < -1 or past the record */
    TURBINE_BATCH_RECORD_BAD_VALUE = 13,   /* value length < -1 or past the record */
    TURBINE_BATCH_RECORD_BAD_HEADERS = 14, /* header count < 0, a header key length < 0, a
                                              header value length < -1, or past the record */
    TURBINE_BATCH_TOO_FEW_RECORDS = 15,    /* the records end before recordsCount of them */
    TURBINE_BATCH_TRAILING_BYTES = 16,     /* bytes remain after recordsCount records */
    /* not a fault of the bytes: the iterator cannot walk a compressed batch */
    TURBINE_BATCH_COMPRESSED = 17,
};
#define TURBINE_BATCH_STATUS_MAX TURBINE_BATCH_COMPRESSED

/* A short fixed description of `status`, e.g. "batch CRC-32C mismatch"; "unknown batch
 * status" for a value outside the enum. Never NULL. */
TURBINE_API const char *turbine_batch_status_str(int status);

/* The 61-byte header, decoded to host order (not the wire layout). */
struct turbine_batch_header {
    int64_t base_offset;
    int32_t batch_length;
    int32_t partition_leader_epoch;
    int8_t magic;
    uint32_t crc;
    int16_t attributes;
    int32_t last_offset_delta;
    int64_t base_timestamp;
    int64_t max_timestamp;
    int64_t producer_id;
    int16_t producer_epoch;
    int32_t base_sequence;
    int32_t records_count;
};

/* Decodes the header at `data`, which holds at least TURBINE_BATCH_HEADER_SIZE bytes. Checks
 * nothing: see turbine_batch_validate(). */
TURBINE_API void turbine_batch_header_decode(const void *data, struct turbine_batch_header *header);

/* What turbine_batch_validate() learnt. Fields are filled as far as validation got. */
struct turbine_batch_info {
    struct turbine_batch_header header; /* decoded when size >= 61, else zeros */
    size_t size;                /* bytes of the whole batch, 12 + batchLength (0 if unknown) */
    size_t error_offset;        /* on failure: offset in the batch where the rule broke */
    int32_t records;            /* records walked (uncompressed), or recordsCount (compressed) */
    int64_t max_timestamp_seen; /* largest baseTimestamp + timestampDelta walked (uncompressed);
                                   the header's maxTimestamp for compressed batches */
};

/* Validates the batch that starts at `data` (`size` bytes available; more may follow: the
 * batch's own extent is 12 + batchLength, reported in info->size, so a caller walks a buffer of
 * batches by advancing info->size). Checks, in order: framing (header and batchLength fit in
 * `size`), batchLength >= 49, magic 2, the CRC-32C, codec 0-4, recordsCount >= 1 and
 * lastOffsetDelta == recordsCount - 1 (Kafka's rule for batches as produced; compaction's gaps
 * never reach this validator). Uncompressed batches then have every record walked, in place:
 * lengths, varints, offsetDelta == index, key/value/header lengths, exactly recordsCount
 * records filling the batch. A compressed batch is checked as the outer batch only.
 * `info` may be NULL. Returns TURBINE_BATCH_OK or the first rule broken. Reads only
 * data[0 .. min(size, 12 + batchLength)). */
TURBINE_API enum turbine_batch_status turbine_batch_validate(const void *data, size_t size,
                                                             struct turbine_batch_info *info);

/* Stamps the fields outside the CRC (the broker's two writes). `data` holds a header. */
TURBINE_API void turbine_batch_set_base_offset(void *data, int64_t base_offset);
TURBINE_API void turbine_batch_set_partition_leader_epoch(void *data, int32_t epoch);

/* ---- records ------------------------------------------------------------------------------ */

/* One record, pointing into the batch. A null key or value has size -1 and pointer NULL. */
struct turbine_record {
    int8_t attributes;       /* unused by Kafka; 0 as produced */
    int64_t timestamp_delta; /* from the batch's baseTimestamp */
    int32_t offset_delta;    /* from the batch's baseOffset */
    const uint8_t *key;
    int32_t key_size;
    const uint8_t *value;
    int32_t value_size;
    int32_t headers_count;
    const uint8_t *headers; /* headers_count encoded headers: see turbine_header_iter */
    size_t headers_size;
};

/* Walks the records of an uncompressed batch without copying. Caller-owned; holds pointers
 * into the batch, which must outlive it. */
struct turbine_record_iter {
    const uint8_t *batch;
    const uint8_t *next; /* the next record's length varint */
    const uint8_t *end;  /* the batch end */
    int32_t index;       /* records returned so far */
    int32_t count;       /* recordsCount */
    enum turbine_batch_status status;
};

/* Starts walking the batch at `data` (`size` bytes available). It checks the framing and the
 * header (as turbine_batch_validate() does, but not the CRC: call the validator first for
 * untrusted bytes) and returns TURBINE_BATCH_OK, the rule broken, or TURBINE_BATCH_COMPRESSED
 * for a compressed batch. On failure the iterator yields nothing. */
TURBINE_API enum turbine_batch_status turbine_record_iter_init(struct turbine_record_iter *iter,
                                                               const void *data, size_t size);

/* Decodes the next record into `record` and returns true; false at the end or on malformed
 * bytes, after which turbine_record_iter_status() tells which (OK = all recordsCount records
 * read and nothing trails). Safe on any bytes: never reads outside the batch. */
TURBINE_API bool turbine_record_iter_next(struct turbine_record_iter *iter,
                                          struct turbine_record *record);

/* TURBINE_BATCH_OK while walking and after a clean end, else the rule broken. */
TURBINE_API enum turbine_batch_status
turbine_record_iter_status(const struct turbine_record_iter *iter);

/* Offset in the batch where the iterator stopped (the failing record on error). */
TURBINE_API size_t turbine_record_iter_offset(const struct turbine_record_iter *iter);

/* One header of a record: a key (never null) and a value (size -1 = null). */
struct turbine_header {
    const uint8_t *key;
    int32_t key_size;
    const uint8_t *value; /* NULL when value_size is -1 */
    int32_t value_size;
};

struct turbine_header_iter {
    const uint8_t *next;
    const uint8_t *end;
    int32_t remaining;
};

/* Walks the headers of a record returned by turbine_record_iter_next() (which has checked
 * them, so this cannot fail). */
TURBINE_API void turbine_header_iter_init(struct turbine_header_iter *iter,
                                          const struct turbine_record *record);
TURBINE_API bool turbine_header_iter_next(struct turbine_header_iter *iter,
                                          struct turbine_header *header);

/* ---- encoding ----------------------------------------------------------------------------- */

/* Input of the encoder. A NULL `key`/`value` with size -1 is null; size 0 is empty. */
struct turbine_header_in {
    const void *key;
    int32_t key_size; /* >= 0 */
    const void *value;
    int32_t value_size; /* >= -1 */
};

struct turbine_record_in {
    int64_t timestamp; /* absolute, ms */
    const void *key;
    int32_t key_size; /* >= -1 */
    const void *value;
    int32_t value_size; /* >= -1 */
    const struct turbine_header_in *headers;
    int32_t headers_count;
};

/* The header fields a producer chooses. The encoder derives the rest: batchLength, crc,
 * lastOffsetDelta, recordsCount, baseTimestamp (the first record's) and maxTimestamp (the
 * largest). */
struct turbine_batch_params {
    int64_t base_offset;
    int32_t partition_leader_epoch;
    int16_t attributes; /* codec must be NONE: the encoder does not compress */
    int64_t producer_id;
    int16_t producer_epoch;
    int32_t base_sequence;
};

/* Builds one uncompressed batch in a caller-owned buffer, record by record (a client fills a
 * buffer until it is full). Holds no pointers to the records once they are appended. */
struct turbine_batch_builder {
    uint8_t *buffer;
    size_t capacity;
    size_t used; /* header + records so far */
    struct turbine_batch_params params;
    int32_t count;
    int64_t base_timestamp;
    int64_t max_timestamp;
};

/* The bytes `record` takes in a batch when its timestamp is `timestamp_delta` past the base and
 * it is record number `offset_delta`; -EINVAL for invalid sizes. */
TURBINE_API int64_t turbine_record_encoded_size(const struct turbine_record_in *record,
                                                int64_t timestamp_delta, int32_t offset_delta);

/* Starts a batch in buffer[0 .. capacity). Returns 0, -ENOSPC if capacity < 61, or -EINVAL if
 * params->attributes has a codec. `buffer` belongs to the builder until finish. */
TURBINE_API int turbine_batch_builder_init(struct turbine_batch_builder *builder, void *buffer,
                                           size_t capacity,
                                           const struct turbine_batch_params *params);

/* Appends `record`. Returns 0; -ENOSPC if it does not fit (the builder is unchanged and may be
 * finished); -EINVAL for a size below -1 (or header key size below 0), or -EOVERFLOW when the
 * batch would pass INT32_MAX bytes or records. */
TURBINE_API int turbine_batch_builder_append(struct turbine_batch_builder *builder,
                                             const struct turbine_record_in *record);

/* Writes the header and CRC. Returns the batch size in bytes, or -EINVAL if no record was
 * appended (Kafka has no empty produced batch). The builder is spent afterwards. */
TURBINE_API int64_t turbine_batch_builder_finish(struct turbine_batch_builder *builder);

/* Encodes `count` records into one batch in out[0 .. capacity): init, append each, finish.
 * Returns the batch size, or the first error of those calls. */
TURBINE_API int64_t turbine_batch_encode(void *out, size_t capacity,
                                         const struct turbine_batch_params *params,
                                         const struct turbine_record_in *records, int32_t count);

/* ---- CRC-32C ------------------------------------------------------------------------------ */

/* CRC-32C (Castagnoli, reflected, initial and final XOR 0xFFFFFFFF) of data[0 .. size),
 * continuing from `crc` (0 to start): crc32c(crc32c(0, a), b) == crc32c(0, a ++ b).
 * turbine_crc32c(0, "123456789", 9) == 0xE3069283. Uses ISA-L's crc32_iscsi. */
TURBINE_API uint32_t turbine_crc32c(uint32_t crc, const void *data, size_t size);

#ifdef __cplusplus
}
#endif
#endif
