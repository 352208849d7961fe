/* SPDX-License-Identifier: MIT
 * protocol.h - turbine's native wire protocol: frames, request and response headers, the body
 * of every API, stable error codes; a zero-copy decoder and an encoder into caller buffers.
 *
 * No networking here: the broker and the client library move the bytes. Decoding allocates
 * nothing and copies nothing: a decoder checks a whole body before it returns (every length
 * and count against the bytes that remain, topic names, no trailing bytes), then strings and
 * record bytes are (pointer, size) views into the frame and arrays are walked with iterators,
 * valid as long as the frame is. Encoding writes into a caller-owned buffer and, optionally, an
 * iovec array, so record bytes (a fetch's cache pages, a producer's batches) can be sent from
 * the caller's memory instead of being copied. The byte layout is in docs/protocol.md.
 *
 * All integers are big-endian. A frame is a u32 length (the bytes that follow) and then:
 *
 * Request                                   Response
 * OFFSET SIZE FIELD                         OFFSET SIZE FIELD
 *      0    4 frame_bytes                        0    4 frame_bytes
 *      4    2 api_key                            4    4 correlation_id  (the request's)
 *      6    2 api_version                        8    2 api_key         (the request's)
 *      8    4 correlation_id                    10    2 error           (enum turbine_error)
 *     12    2 flags (0; others reserved)        12      body (empty when error != NONE,
 *     14      body                                       except for HANDSHAKE)
 *
 * Strings are u16 length + bytes, record bytes u32 length + bytes, arrays u32 count + elements.
 * A connection may pipeline requests; the broker answers them in request order.
 */
#ifndef TURBINE_PROTOCOL_H
#define TURBINE_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "turbine/batch.h" /* TURBINE_API */

#ifdef __cplusplus
extern "C" {
#endif

/* ---- frames and headers ------------------------------------------------------------------- */

#define TURBINE_PROTO_OFF_FRAME_BYTES      0
#define TURBINE_PROTO_REQ_OFF_API_KEY      4
#define TURBINE_PROTO_REQ_OFF_VERSION      6
#define TURBINE_PROTO_REQ_OFF_CORRELATION  8
#define TURBINE_PROTO_REQ_OFF_FLAGS        12
#define TURBINE_PROTO_REQ_HEADER_SIZE      14 /* prefix included */
#define TURBINE_PROTO_RESP_OFF_CORRELATION 4
#define TURBINE_PROTO_RESP_OFF_API_KEY     8
#define TURBINE_PROTO_RESP_OFF_ERROR       10
#define TURBINE_PROTO_RESP_HEADER_SIZE     12 /* prefix included */
#define TURBINE_PROTO_PREFIX_SIZE          4

_Static_assert(TURBINE_PROTO_REQ_OFF_API_KEY == TURBINE_PROTO_OFF_FRAME_BYTES + 4, "u32");
_Static_assert(TURBINE_PROTO_REQ_OFF_VERSION == TURBINE_PROTO_REQ_OFF_API_KEY + 2, "u16");
_Static_assert(TURBINE_PROTO_REQ_OFF_CORRELATION == TURBINE_PROTO_REQ_OFF_VERSION + 2, "u16");
_Static_assert(TURBINE_PROTO_REQ_OFF_FLAGS == TURBINE_PROTO_REQ_OFF_CORRELATION + 4, "u32");
_Static_assert(TURBINE_PROTO_REQ_HEADER_SIZE == TURBINE_PROTO_REQ_OFF_FLAGS + 2, "14 bytes");
_Static_assert(TURBINE_PROTO_RESP_OFF_CORRELATION == TURBINE_PROTO_PREFIX_SIZE, "after prefix");
_Static_assert(TURBINE_PROTO_RESP_OFF_API_KEY == TURBINE_PROTO_RESP_OFF_CORRELATION + 4, "u32");
_Static_assert(TURBINE_PROTO_RESP_OFF_ERROR == TURBINE_PROTO_RESP_OFF_API_KEY + 2, "u16");
_Static_assert(TURBINE_PROTO_RESP_HEADER_SIZE == TURBINE_PROTO_RESP_OFF_ERROR + 2, "12 bytes");

/* The default maximum of frame_bytes (100 MiB); the broker's is configurable and announced in
 * the HANDSHAKE response. */
#define TURBINE_PROTO_FRAME_MAX_DEFAULT (100u * 1024 * 1024)

/* Topic names: 1..249 bytes of [A-Za-z0-9._-], not "." or ".." (they name directories). */
#define TURBINE_TOPIC_NAME_MAX 249

/* API keys: stable numbers, never reused. */
enum turbine_api {
    TURBINE_API_HANDSHAKE = 0,
    TURBINE_API_METADATA = 1,
    TURBINE_API_CREATE_TOPICS = 2,
    TURBINE_API_DELETE_TOPICS = 3,
    TURBINE_API_PRODUCE = 4,
    TURBINE_API_FETCH = 5,
    TURBINE_API_LIST_OFFSETS = 6,
    TURBINE_API_OFFSET_COMMIT = 7,
    TURBINE_API_OFFSET_FETCH = 8,
    TURBINE_API_DESCRIBE_TOPICS = 9,
};
#define TURBINE_API_COUNT 10

/* The name of an API key ("PRODUCE"), or "UNKNOWN_API". Never NULL. */
TURBINE_API const char *turbine_api_name(unsigned api_key);

/* ---- error codes -------------------------------------------------------------------------- */

/* Stable numbered error codes, carried as u16 on the wire (docs/protocol.md lists each with its
 * meaning and whether a client retries). Never errno. */
enum turbine_error {
    TURBINE_ERR_NONE = 0,
    TURBINE_ERR_UNKNOWN = 1,             /* an unexpected broker failure */
    TURBINE_ERR_UNKNOWN_API = 2,         /* api_key not known to the broker */
    TURBINE_ERR_UNSUPPORTED_VERSION = 3, /* api_version outside the broker's range */
    TURBINE_ERR_MALFORMED = 4,           /* bytes that do not parse as the API's body */
    TURBINE_ERR_FRAME_TOO_LARGE = 5,     /* declared frame_bytes above the maximum */
    TURBINE_ERR_REQUEST_TOO_LARGE = 6,   /* a request over a per-request limit */
    TURBINE_ERR_INVALID_REQUEST = 7,     /* well-formed but invalid values (acks 2, ...) */
    TURBINE_ERR_UNKNOWN_TOPIC = 8,
    TURBINE_ERR_UNKNOWN_PARTITION = 9,
    TURBINE_ERR_TOPIC_EXISTS = 10,
    TURBINE_ERR_INVALID_TOPIC_NAME = 11,
    TURBINE_ERR_INVALID_PARTITIONS = 12,
    TURBINE_ERR_INVALID_CONFIG = 13,
    TURBINE_ERR_OFFSET_OUT_OF_RANGE = 14,
    TURBINE_ERR_CORRUPT_RECORD = 15, /* a batch failed its CRC or framing */
    TURBINE_ERR_RECORD_TOO_LARGE = 16,
    TURBINE_ERR_TIMEOUT = 17,
    TURBINE_ERR_NOT_ENOUGH_DURABLE = 18, /* written, but the requested durability failed */
    TURBINE_ERR_STORAGE_ERROR = 19,      /* the partition's log failed (I/O error) */
    TURBINE_ERR_DISK_FULL = 20,
    TURBINE_ERR_SHUTTING_DOWN = 21,
    TURBINE_ERR_NOT_LEADER = 22,    /* this broker does not lead the partition */
    TURBINE_ERR_INVALID_GROUP = 23, /* an empty or over-long group id */
    TURBINE_ERR_OFFSET_METADATA_TOO_LARGE = 24,
};
#define TURBINE_ERR_MAX TURBINE_ERR_OFFSET_METADATA_TOO_LARGE

/* "MALFORMED"; "UNKNOWN_ERROR_CODE" outside the enum. Never NULL. */
TURBINE_API const char *turbine_error_name(unsigned error);
/* One sentence for a person ("the request bytes do not parse"). Never NULL. */
TURBINE_API const char *turbine_error_message(unsigned error);
/* True when the same request may succeed if sent again (after a back-off or a reconnect). */
TURBINE_API bool turbine_error_retriable(unsigned error);

/* ---- parsing frames ----------------------------------------------------------------------- */

enum turbine_frame_kind { TURBINE_FRAME_REQUEST, TURBINE_FRAME_RESPONSE };

/* Reads the 4-byte length prefix at `prefix`, before anything is allocated for the frame.
 * Returns TURBINE_ERR_NONE with *frame_bytes set (the bytes that follow the prefix);
 * FRAME_TOO_LARGE if it is above `frame_max_bytes` (the server answers and closes: it must not
 * read or allocate that much); MALFORMED if it is below the kind's header (10 or 8 bytes). */
TURBINE_API enum turbine_error turbine_frame_prefix(const void *prefix, uint32_t frame_max_bytes,
                                                    enum turbine_frame_kind kind,
                                                    uint32_t *frame_bytes);

struct turbine_request_header {
    uint16_t api_key;
    uint16_t api_version;
    uint32_t correlation_id;
    uint16_t flags;
};

/* A parsed request frame: the header and a view of the body (into the frame). */
struct turbine_request {
    struct turbine_request_header header;
    const uint8_t *body;
    uint32_t body_size;
};

/* Parses the request frame frame[0 .. size), prefix included; size must be exactly
 * 4 + frame_bytes. Returns NONE; MALFORMED (size not 4 + frame_bytes, a short header, flags
 * != 0); UNKNOWN_API or UNSUPPORTED_VERSION (for this codec: see turbine_proto_versions()).
 * req->header is filled whenever the 14 header bytes are present, so even a failed request can
 * be answered with its correlation id. */
TURBINE_API enum turbine_error turbine_request_parse(const void *frame, size_t size,
                                                     struct turbine_request *req);

struct turbine_response {
    uint32_t correlation_id;
    uint16_t api_key;
    uint16_t error; /* enum turbine_error for the request as a whole */
    const uint8_t *body;
    uint32_t body_size;
};

/* Parses the response frame frame[0 .. size), as turbine_request_parse(). Returns NONE or
 * MALFORMED (a short frame, a body after a non-NONE error outside HANDSHAKE); the response's
 * own error is in resp->error. */
TURBINE_API enum turbine_error turbine_response_parse(const void *frame, size_t size,
                                                      struct turbine_response *resp);

/* ---- iterators ---------------------------------------------------------------------------- */

/* Walks an array of a decoded body. Caller-owned, copied freely (a copy walks again); points
 * into the frame, which must outlive it. The decoder has checked every element already, so a
 * walk stops early only if the iterator is misused; `error` then says why. */
struct turbine_proto_iter {
    const uint8_t *next;
    const uint8_t *end;
    uint32_t remaining; /* elements not yet returned */
    uint16_t kind;      /* internal: the element format */
    uint16_t error;     /* enum turbine_error: NONE unless a walk failed */
};

/* A name in an array of topic names (METADATA, DELETE_TOPICS, DESCRIBE_TOPICS requests). Not
 * NUL-terminated. */
struct turbine_proto_name {
    const char *name;
    uint16_t name_size;
};

/* A topic and the array of its partitions, as PRODUCE, FETCH, LIST_OFFSETS, OFFSET_COMMIT and
 * OFFSET_FETCH requests and responses nest them. For encoding only the first three count. */
struct turbine_proto_topic {
    const char *name;
    uint16_t name_size;
    uint32_t partition_count;
    struct turbine_proto_iter partitions; /* decoded: walk with the API's next_* function */
};

TURBINE_API bool turbine_proto_next_name(struct turbine_proto_iter *it,
                                         struct turbine_proto_name *out);
TURBINE_API bool turbine_proto_next_topic(struct turbine_proto_iter *it,
                                          struct turbine_proto_topic *out);

/* ---- HANDSHAKE (0) ------------------------------------------------------------------------ */

/* One API's supported versions. Array element: api_key u16, min_version u16, max_version u16. */
struct turbine_api_versions {
    uint16_t api_key;
    uint16_t min_version;
    uint16_t max_version;
};
#define TURBINE_PROTO_API_VERSIONS_SIZE 6

/* What this codec encodes and decodes: one entry per API key, TURBINE_API_COUNT of them. */
TURBINE_API const struct turbine_api_versions *turbine_proto_versions(void);

/* The highest version in both ranges, or -1 when they do not meet. */
TURBINE_API int turbine_version_pick(const struct turbine_api_versions *ours,
                                     const struct turbine_api_versions *theirs);

/* The version to use for `api_key` given our table and the peer's array (an iterator from a
 * decoded HANDSHAKE, walked on a copy): -1 when either side lacks the API or the ranges do not
 * meet (then the API is unusable with this peer). */
TURBINE_API int turbine_handshake_negotiate(const struct turbine_api_versions *ours,
                                            size_t ours_count, struct turbine_proto_iter theirs,
                                            uint16_t api_key);

/* Body: client_id string, apis array of turbine_api_versions. */
struct turbine_handshake_request {
    const char *client_id;
    uint16_t client_id_size;
    uint32_t api_count;
    struct turbine_proto_iter apis;
};

/* Body: max_frame_bytes u32 (the broker's limit), node_id i32, apis array. A broker answers a
 * HANDSHAKE of any version with this v0 body, UNSUPPORTED_VERSION in the header if it does not
 * know the request's version: a client of any age learns what the broker speaks. */
struct turbine_handshake_response {
    uint32_t max_frame_bytes;
    int32_t node_id;
    uint32_t api_count;
    struct turbine_proto_iter apis;
};

TURBINE_API bool turbine_handshake_next_api(struct turbine_proto_iter *it,
                                            struct turbine_api_versions *out);

/* ---- METADATA (1) ------------------------------------------------------------------------- */

/* Body: topics array of names; an empty array asks for every topic. */
struct turbine_metadata_request {
    uint32_t topic_count;
    struct turbine_proto_iter topics; /* turbine_proto_next_name */
};

/* Body: node_id i32, host string, port u16, topics array. */
struct turbine_metadata_response {
    int32_t node_id;
    const char *host;
    uint16_t host_size;
    uint16_t port;
    uint32_t topic_count;
    struct turbine_proto_iter topics; /* turbine_metadata_next_topic */
};

/* Topic: error u16, name string, partitions array. */
struct turbine_metadata_topic {
    uint16_t error;
    const char *name;
    uint16_t name_size;
    uint32_t partition_count;
    struct turbine_proto_iter partitions; /* turbine_metadata_next_partition */
};

/* Partition, 10 bytes: partition i32, leader i32 (node id, -1 none), error u16. */
struct turbine_metadata_partition {
    int32_t partition;
    int32_t leader;
    uint16_t error;
};
#define TURBINE_PROTO_METADATA_PARTITION_SIZE 10

TURBINE_API bool turbine_metadata_next_topic(struct turbine_proto_iter *it,
                                             struct turbine_metadata_topic *out);
TURBINE_API bool turbine_metadata_next_partition(struct turbine_proto_iter *it,
                                                 struct turbine_metadata_partition *out);

/* ---- CREATE_TOPICS (2), DELETE_TOPICS (3), DESCRIBE_TOPICS (9) ---------------------------- */

#define TURBINE_CONFIG_DEFAULT   (-2) /* the broker's default for this setting */
#define TURBINE_CONFIG_UNLIMITED (-1) /* no limit (retention) */

/* How acks=all is made durable: fsync policy of a topic. */
enum turbine_topic_durability {
    TURBINE_TOPIC_DURABILITY_DEFAULT = 0, /* the broker's setting */
    TURBINE_TOPIC_DURABILITY_WRITTEN = 1, /* acks=all once written (no fdatasync) */
    TURBINE_TOPIC_DURABILITY_FSYNC = 2,   /* acks=all once fdatasync'd (group commit) */
};

/* Per-topic settings, 25 bytes: retention_ms i64, retention_bytes i64, segment_bytes i64
 * (each TURBINE_CONFIG_DEFAULT, TURBINE_CONFIG_UNLIMITED or a value), durability u8. */
struct turbine_topic_config {
    int64_t retention_ms;
    int64_t retention_bytes;
    int64_t segment_bytes;
    uint8_t durability;
};
#define TURBINE_PROTO_TOPIC_CONFIG_SIZE 25

/* Body: timeout_ms i32, topics array. */
struct turbine_create_topics_request {
    int32_t timeout_ms;
    uint32_t topic_count;
    struct turbine_proto_iter topics; /* turbine_create_topics_next_topic */
};

/* Topic: name string, partitions i32, config. */
struct turbine_create_topic {
    const char *name;
    uint16_t name_size;
    int32_t partitions;
    struct turbine_topic_config config;
};

/* Body: timeout_ms i32, topics array of names. */
struct turbine_delete_topics_request {
    int32_t timeout_ms;
    uint32_t topic_count;
    struct turbine_proto_iter topics; /* turbine_proto_next_name */
};

/* CREATE_TOPICS and DELETE_TOPICS responses. Body: topics array of {name string, error u16}. */
struct turbine_topics_response {
    uint32_t topic_count;
    struct turbine_proto_iter topics; /* turbine_topics_next_result */
};

struct turbine_topic_result {
    const char *name;
    uint16_t name_size;
    uint16_t error;
};

/* Body: topics array of names; empty asks for every topic. */
struct turbine_describe_topics_request {
    uint32_t topic_count;
    struct turbine_proto_iter topics; /* turbine_proto_next_name */
};

/* Body: topics array. */
struct turbine_describe_topics_response {
    uint32_t topic_count;
    struct turbine_proto_iter topics; /* turbine_describe_next_topic */
};

/* Topic: error u16, name string, config, partitions array. */
struct turbine_describe_topic {
    uint16_t error;
    const char *name;
    uint16_t name_size;
    struct turbine_topic_config config; /* the effective settings, no DEFAULT */
    uint32_t partition_count;
    struct turbine_proto_iter partitions; /* turbine_describe_next_partition */
};

/* Partition, 42 bytes: partition i32, error u16, log_start_offset i64, high_watermark i64,
 * log_end_offset i64, size_bytes i64, segment_count u32. */
struct turbine_describe_partition {
    int32_t partition;
    uint16_t error;
    int64_t log_start_offset;
    int64_t high_watermark;
    int64_t log_end_offset;
    int64_t size_bytes;
    uint32_t segment_count;
};
#define TURBINE_PROTO_DESCRIBE_PARTITION_SIZE 42

TURBINE_API bool turbine_create_topics_next_topic(struct turbine_proto_iter *it,
                                                  struct turbine_create_topic *out);
TURBINE_API bool turbine_topics_next_result(struct turbine_proto_iter *it,
                                            struct turbine_topic_result *out);
TURBINE_API bool turbine_describe_next_topic(struct turbine_proto_iter *it,
                                             struct turbine_describe_topic *out);
TURBINE_API bool turbine_describe_next_partition(struct turbine_proto_iter *it,
                                                 struct turbine_describe_partition *out);

/* ---- PRODUCE (4) -------------------------------------------------------------------------- */

#define TURBINE_ACKS_NONE   0
#define TURBINE_ACKS_LEADER 1
#define TURBINE_ACKS_ALL    (-1)

/* Body: acks i16, timeout_ms i32, topics array of {name, partitions array}. With acks 0 the
 * broker sends no response. */
struct turbine_produce_request {
    int16_t acks;
    int32_t timeout_ms;
    uint32_t topic_count;
    struct turbine_proto_iter topics; /* turbine_proto_next_topic, then */
};                                    /* turbine_produce_next_partition */

/* Partition: partition i32, records u32 length + bytes (one or more RecordBatch v2, verbatim;
 * the codec does not look inside: the broker validates them with turbine_batch_validate()). */
struct turbine_produce_partition {
    int32_t partition;
    const uint8_t *records;
    uint32_t records_size;
};

/* Body: topics array of {name, partitions array}. */
struct turbine_produce_response {
    uint32_t topic_count;
    struct turbine_proto_iter topics; /* turbine_proto_next_topic, turbine_produce_next_result */
};

/* Partition, 22 bytes: partition i32, error u16, base_offset i64 (of the first batch),
 * log_start_offset i64. */
struct turbine_produce_result {
    int32_t partition;
    uint16_t error;
    int64_t base_offset;
    int64_t log_start_offset;
};
#define TURBINE_PROTO_PRODUCE_RESULT_SIZE 22

TURBINE_API bool turbine_produce_next_partition(struct turbine_proto_iter *it,
                                                struct turbine_produce_partition *out);
TURBINE_API bool turbine_produce_next_result(struct turbine_proto_iter *it,
                                             struct turbine_produce_result *out);

/* ---- FETCH (5) ---------------------------------------------------------------------------- */

/* Body: max_wait_ms i32, min_bytes i32, max_bytes i32 (of the whole response), topics array. */
struct turbine_fetch_request {
    int32_t max_wait_ms;
    int32_t min_bytes;
    int32_t max_bytes;
    uint32_t topic_count;
    struct turbine_proto_iter topics; /* turbine_proto_next_topic, turbine_fetch_next_partition */
};

/* Partition, 16 bytes: partition i32, fetch_offset i64, partition_max_bytes i32. */
struct turbine_fetch_partition {
    int32_t partition;
    int64_t fetch_offset;
    int32_t partition_max_bytes;
};
#define TURBINE_PROTO_FETCH_PARTITION_SIZE 16

/* Body: topics array of {name, partitions array}. */
struct turbine_fetch_response {
    uint32_t topic_count;
    struct turbine_proto_iter topics; /* turbine_proto_next_topic, turbine_fetch_next_result */
};

/* Partition: 34 fixed bytes, then the records:
 * OFFSET SIZE FIELD
 *      0    4 partition
 *      4    2 error
 *      6    8 high_watermark      consumers read below it
 *     14    8 log_end_offset
 *     22    8 log_start_offset
 *     30    4 records_size
 *     34      records             whole RecordBatch v2 batches, as stored
 * Encoding: `records` NULL with records_size > 0 means the caller supplies the bytes with
 * turbine_proto_writer_external() (zero copy). */
struct turbine_fetch_result {
    int32_t partition;
    uint16_t error;
    int64_t high_watermark;
    int64_t log_end_offset;
    int64_t log_start_offset;
    const uint8_t *records;
    uint32_t records_size;
};
#define TURBINE_PROTO_FETCH_RESULT_OFF_ERROR          4
#define TURBINE_PROTO_FETCH_RESULT_OFF_HIGH_WATERMARK 6
#define TURBINE_PROTO_FETCH_RESULT_OFF_LOG_END        14
#define TURBINE_PROTO_FETCH_RESULT_OFF_LOG_START      22
#define TURBINE_PROTO_FETCH_RESULT_OFF_RECORDS_SIZE   30
#define TURBINE_PROTO_FETCH_RESULT_FIXED_SIZE         34
_Static_assert(TURBINE_PROTO_FETCH_RESULT_OFF_HIGH_WATERMARK ==
                   TURBINE_PROTO_FETCH_RESULT_OFF_ERROR + 2,
               "u16");
_Static_assert(TURBINE_PROTO_FETCH_RESULT_OFF_LOG_END ==
                   TURBINE_PROTO_FETCH_RESULT_OFF_HIGH_WATERMARK + 8,
               "i64");
_Static_assert(TURBINE_PROTO_FETCH_RESULT_OFF_LOG_START ==
                   TURBINE_PROTO_FETCH_RESULT_OFF_LOG_END + 8,
               "i64");
_Static_assert(TURBINE_PROTO_FETCH_RESULT_OFF_RECORDS_SIZE ==
                   TURBINE_PROTO_FETCH_RESULT_OFF_LOG_START + 8,
               "i64");
_Static_assert(TURBINE_PROTO_FETCH_RESULT_FIXED_SIZE ==
                   TURBINE_PROTO_FETCH_RESULT_OFF_RECORDS_SIZE + 4,
               "34 bytes");

TURBINE_API bool turbine_fetch_next_partition(struct turbine_proto_iter *it,
                                              struct turbine_fetch_partition *out);
TURBINE_API bool turbine_fetch_next_result(struct turbine_proto_iter *it,
                                           struct turbine_fetch_result *out);

/* ---- LIST_OFFSETS (6) --------------------------------------------------------------------- */

#define TURBINE_OFFSET_LATEST   (-1) /* the log end offset (next offset to be written) */
#define TURBINE_OFFSET_EARLIEST (-2) /* the log start offset */

/* Body: topics array of {name, partitions array}. */
struct turbine_list_offsets_request {
    uint32_t topic_count;
    struct turbine_proto_iter topics; /* turbine_proto_next_topic, ..._next_partition */
};

/* Partition, 12 bytes: partition i32, timestamp i64 (LATEST, EARLIEST, or ms: the first offset
 * whose timestamp is >= it). */
struct turbine_list_offsets_partition {
    int32_t partition;
    int64_t timestamp;
};
#define TURBINE_PROTO_LIST_OFFSETS_PARTITION_SIZE 12

struct turbine_list_offsets_response {
    uint32_t topic_count;
    struct turbine_proto_iter topics; /* turbine_proto_next_topic, ..._next_result */
};

/* Partition, 22 bytes: partition i32, error u16, timestamp i64 (of the offset found, -1 for
 * LATEST/EARLIEST), offset i64 (-1 when no record is that new). */
struct turbine_list_offsets_result {
    int32_t partition;
    uint16_t error;
    int64_t timestamp;
    int64_t offset;
};
#define TURBINE_PROTO_LIST_OFFSETS_RESULT_SIZE 22

TURBINE_API bool turbine_list_offsets_next_partition(struct turbine_proto_iter *it,
                                                     struct turbine_list_offsets_partition *out);
TURBINE_API bool turbine_list_offsets_next_result(struct turbine_proto_iter *it,
                                                  struct turbine_list_offsets_result *out);

/* ---- OFFSET_COMMIT (7), OFFSET_FETCH (8) -------------------------------------------------- */

/* Body: group string, topics array of {name, partitions array}. OFFSET_FETCH's request has the
 * same shape with other partitions. */
struct turbine_offset_commit_request {
    const char *group;
    uint16_t group_size;
    uint32_t topic_count;
    struct turbine_proto_iter topics; /* ..., turbine_offset_commit_next_partition */
};

struct turbine_offset_fetch_request {
    const char *group;
    uint16_t group_size;
    uint32_t topic_count;
    struct turbine_proto_iter topics; /* ..., turbine_offset_fetch_next_partition */
};

/* Partition: partition i32, offset i64 (the next offset to consume), metadata string. */
struct turbine_offset_commit_partition {
    int32_t partition;
    int64_t offset;
    const char *metadata;
    uint16_t metadata_size;
};

/* OFFSET_COMMIT and OFFSET_FETCH responses. Body: topics array of {name, partitions array}. */
struct turbine_offsets_response {
    uint32_t topic_count;
    struct turbine_proto_iter topics;
};

/* OFFSET_COMMIT result partition, 6 bytes: partition i32, error u16. */
struct turbine_offset_commit_result {
    int32_t partition;
    uint16_t error;
};
#define TURBINE_PROTO_OFFSET_COMMIT_RESULT_SIZE 6

/* OFFSET_FETCH request partition, 4 bytes: partition i32. */
struct turbine_offset_fetch_partition {
    int32_t partition;
};
#define TURBINE_PROTO_OFFSET_FETCH_PARTITION_SIZE 4

/* OFFSET_FETCH result: partition i32, error u16, offset i64 (-1: none committed), metadata. */
struct turbine_offset_fetch_result {
    int32_t partition;
    uint16_t error;
    int64_t offset;
    const char *metadata;
    uint16_t metadata_size;
};

TURBINE_API bool turbine_offset_commit_next_partition(struct turbine_proto_iter *it,
                                                      struct turbine_offset_commit_partition *out);
TURBINE_API bool turbine_offset_commit_next_result(struct turbine_proto_iter *it,
                                                   struct turbine_offset_commit_result *out);
TURBINE_API bool turbine_offset_fetch_next_partition(struct turbine_proto_iter *it,
                                                     struct turbine_offset_fetch_partition *out);
TURBINE_API bool turbine_offset_fetch_next_result(struct turbine_proto_iter *it,
                                                  struct turbine_offset_fetch_result *out);

/* ---- decoding bodies ---------------------------------------------------------------------- */

/* Each decoder checks the whole body of a parsed frame whose api_key matches (asserted): every
 * count against the bytes left before any loop, every length, every topic name, nothing after
 * the last element. It returns NONE and fills `out` (iterators included); MALFORMED,
 * INVALID_TOPIC_NAME (a request naming an invalid topic: the whole request fails), or
 * UNSUPPORTED_VERSION. Response decoders return resp->error when it is not NONE (the body is
 * empty; HANDSHAKE's is decoded anyway and its decoder returns NONE). */
TURBINE_API enum turbine_error
turbine_handshake_request_decode(const struct turbine_request *req,
                                 struct turbine_handshake_request *out);
TURBINE_API enum turbine_error
turbine_handshake_response_decode(const struct turbine_response *resp,
                                  struct turbine_handshake_response *out);
TURBINE_API enum turbine_error
turbine_metadata_request_decode(const struct turbine_request *req,
                                struct turbine_metadata_request *out);
TURBINE_API enum turbine_error
turbine_metadata_response_decode(const struct turbine_response *resp,
                                 struct turbine_metadata_response *out);
TURBINE_API enum turbine_error
turbine_create_topics_request_decode(const struct turbine_request *req,
                                     struct turbine_create_topics_request *out);
TURBINE_API enum turbine_error
turbine_delete_topics_request_decode(const struct turbine_request *req,
                                     struct turbine_delete_topics_request *out);
/* CREATE_TOPICS and DELETE_TOPICS responses. */
TURBINE_API enum turbine_error turbine_topics_response_decode(const struct turbine_response *resp,
                                                              struct turbine_topics_response *out);
TURBINE_API enum turbine_error
turbine_describe_topics_request_decode(const struct turbine_request *req,
                                       struct turbine_describe_topics_request *out);
TURBINE_API enum turbine_error
turbine_describe_topics_response_decode(const struct turbine_response *resp,
                                        struct turbine_describe_topics_response *out);
TURBINE_API enum turbine_error turbine_produce_request_decode(const struct turbine_request *req,
                                                              struct turbine_produce_request *out);
TURBINE_API enum turbine_error
turbine_produce_response_decode(const struct turbine_response *resp,
                                struct turbine_produce_response *out);
TURBINE_API enum turbine_error turbine_fetch_request_decode(const struct turbine_request *req,
                                                            struct turbine_fetch_request *out);
TURBINE_API enum turbine_error turbine_fetch_response_decode(const struct turbine_response *resp,
                                                             struct turbine_fetch_response *out);
TURBINE_API enum turbine_error
turbine_list_offsets_request_decode(const struct turbine_request *req,
                                    struct turbine_list_offsets_request *out);
TURBINE_API enum turbine_error
turbine_list_offsets_response_decode(const struct turbine_response *resp,
                                     struct turbine_list_offsets_response *out);
/* OFFSET_COMMIT and OFFSET_FETCH requests (the same head; the partitions differ). */
TURBINE_API enum turbine_error
turbine_offset_commit_request_decode(const struct turbine_request *req,
                                     struct turbine_offset_commit_request *out);
TURBINE_API enum turbine_error
turbine_offset_fetch_request_decode(const struct turbine_request *req,
                                    struct turbine_offset_fetch_request *out);
/* OFFSET_COMMIT and OFFSET_FETCH responses. */
TURBINE_API enum turbine_error
turbine_offsets_response_decode(const struct turbine_response *resp,
                                struct turbine_offsets_response *out);

/* ---- encoding ----------------------------------------------------------------------------- */

/* Writes frames into buffer[0 .. capacity) and, if `iov` is given, describes them as iovecs
 * in iov[0 .. iov_capacity): the buffer's bytes and, between them, record bytes referenced in
 * place. Without `iov` record bytes are copied into the buffer. Caller-owned; the buffer, the
 * iovec array and every referenced record byte belong to the writer until the frames are sent.
 *
 * A frame is begun by an API's *_begin() call with its array counts, continued with exactly
 * that many add calls in order (depth first: a topic, then its partitions), and ended with
 * turbine_proto_frame_end(); several frames may follow each other (pipelining). Wrong counts or
 * order are programmer errors (asserted). Past the capacity the writer keeps counting, so a
 * failed encode tells the size needed (turbine_proto_writer_needed()). */
struct turbine_proto_writer {
    uint8_t *buffer;
    size_t capacity;
    size_t used; /* bytes written to the buffer, or needed once past capacity */
    struct iovec *iov;
    size_t iov_capacity;
    size_t iov_count;        /* iovecs filled, or needed once past iov_capacity */
    size_t segment_start;    /* buffer bytes not yet described by an iovec start here */
    size_t frame_start;      /* where the current frame's prefix is */
    uint64_t frame_external; /* referenced record bytes in the current frame */
    uint64_t external_due;   /* bytes promised to turbine_proto_writer_external() */
    int error;               /* 0, -ENOSPC, -EINVAL or -EMSGSIZE: the first failure */
    bool in_frame;
    uint8_t depth;
    struct {
        uint16_t kind;
        uint32_t remaining;
    } levels[3];
};

TURBINE_API void turbine_proto_writer_init(struct turbine_proto_writer *w, void *buffer,
                                           size_t capacity, struct iovec *iov, size_t iov_capacity);

/* Ends the frame: writes its length prefix and closes the last iovec. Returns the frame's size
 * in bytes (prefix, buffer and referenced bytes); -ENOSPC if the buffer or the iovec array was
 * too small (the writer is spent: init again with turbine_proto_writer_needed() bytes);
 * -EINVAL for an invalid topic name or string given to an add call; -EMSGSIZE if the frame
 * passes UINT32_MAX bytes. */
TURBINE_API int64_t turbine_proto_frame_end(struct turbine_proto_writer *w);

/* Buffer bytes and iovecs that the frames so far need. */
TURBINE_API size_t turbine_proto_writer_needed(const struct turbine_proto_writer *w);
TURBINE_API size_t turbine_proto_writer_iov_needed(const struct turbine_proto_writer *w);

/* Appends `size` record bytes at `data` as an iovec, after an add call whose records were NULL
 * (iov mode only): the calls must cover exactly the records_size promised. */
TURBINE_API void turbine_proto_writer_external(struct turbine_proto_writer *w, const void *data,
                                               size_t size);

/* A response with a non-NONE error and no body (HANDSHAKE excepted): the answer to a request
 * that failed as a whole. Ends the frame; returns as turbine_proto_frame_end(). */
TURBINE_API int64_t turbine_error_response_encode(struct turbine_proto_writer *w,
                                                  uint32_t correlation_id, uint16_t api_key,
                                                  enum turbine_error error);

/* Begins: each writes the header and the head fields of `head` (its *_count fields say how many
 * elements will be added; iterators in `head` are ignored). Requests carry this codec's
 * version of the API (turbine_proto_versions(); 0 for all today). Responses are begun with
 * error NONE, except HANDSHAKE's, whose error is given. */
TURBINE_API void turbine_handshake_request_begin(struct turbine_proto_writer *w, uint32_t corr,
                                                 const struct turbine_handshake_request *head);
TURBINE_API void turbine_handshake_response_begin(struct turbine_proto_writer *w, uint32_t corr,
                                                  enum turbine_error error,
                                                  const struct turbine_handshake_response *head);
TURBINE_API void turbine_metadata_request_begin(struct turbine_proto_writer *w, uint32_t corr,
                                                const struct turbine_metadata_request *head);
TURBINE_API void turbine_metadata_response_begin(struct turbine_proto_writer *w, uint32_t corr,
                                                 const struct turbine_metadata_response *head);
TURBINE_API void
turbine_create_topics_request_begin(struct turbine_proto_writer *w, uint32_t corr,
                                    const struct turbine_create_topics_request *head);
TURBINE_API void
turbine_delete_topics_request_begin(struct turbine_proto_writer *w, uint32_t corr,
                                    const struct turbine_delete_topics_request *head);
/* `api_key` is CREATE_TOPICS or DELETE_TOPICS. */
TURBINE_API void turbine_topics_response_begin(struct turbine_proto_writer *w, uint32_t corr,
                                               uint16_t api_key,
                                               const struct turbine_topics_response *head);
TURBINE_API void
turbine_describe_topics_request_begin(struct turbine_proto_writer *w, uint32_t corr,
                                      const struct turbine_describe_topics_request *head);
TURBINE_API void
turbine_describe_topics_response_begin(struct turbine_proto_writer *w, uint32_t corr,
                                       const struct turbine_describe_topics_response *head);
TURBINE_API void turbine_produce_request_begin(struct turbine_proto_writer *w, uint32_t corr,
                                               const struct turbine_produce_request *head);
TURBINE_API void turbine_produce_response_begin(struct turbine_proto_writer *w, uint32_t corr,
                                                const struct turbine_produce_response *head);
TURBINE_API void turbine_fetch_request_begin(struct turbine_proto_writer *w, uint32_t corr,
                                             const struct turbine_fetch_request *head);
TURBINE_API void turbine_fetch_response_begin(struct turbine_proto_writer *w, uint32_t corr,
                                              const struct turbine_fetch_response *head);
TURBINE_API void
turbine_list_offsets_request_begin(struct turbine_proto_writer *w, uint32_t corr,
                                   const struct turbine_list_offsets_request *head);
TURBINE_API void
turbine_list_offsets_response_begin(struct turbine_proto_writer *w, uint32_t corr,
                                    const struct turbine_list_offsets_response *head);
TURBINE_API void
turbine_offset_commit_request_begin(struct turbine_proto_writer *w, uint32_t corr,
                                    const struct turbine_offset_commit_request *head);
TURBINE_API void
turbine_offset_fetch_request_begin(struct turbine_proto_writer *w, uint32_t corr,
                                   const struct turbine_offset_fetch_request *head);
/* `api_key` is OFFSET_COMMIT or OFFSET_FETCH. */
TURBINE_API void turbine_offsets_response_begin(struct turbine_proto_writer *w, uint32_t corr,
                                                uint16_t api_key,
                                                const struct turbine_offsets_response *head);

/* Adds: one element of the array the writer expects next (asserted). */
TURBINE_API void turbine_proto_add_name(struct turbine_proto_writer *w, const char *name,
                                        size_t name_size);
TURBINE_API void turbine_proto_add_topic(struct turbine_proto_writer *w, const char *name,
                                         size_t name_size, uint32_t partition_count);
TURBINE_API void turbine_handshake_add_api(struct turbine_proto_writer *w,
                                           const struct turbine_api_versions *api);
TURBINE_API void turbine_metadata_add_topic(struct turbine_proto_writer *w,
                                            const struct turbine_metadata_topic *topic);
TURBINE_API void turbine_metadata_add_partition(struct turbine_proto_writer *w,
                                                const struct turbine_metadata_partition *p);
TURBINE_API void turbine_create_topics_add_topic(struct turbine_proto_writer *w,
                                                 const struct turbine_create_topic *topic);
TURBINE_API void turbine_topics_add_result(struct turbine_proto_writer *w,
                                           const struct turbine_topic_result *result);
TURBINE_API void turbine_describe_add_topic(struct turbine_proto_writer *w,
                                            const struct turbine_describe_topic *topic);
TURBINE_API void turbine_describe_add_partition(struct turbine_proto_writer *w,
                                                const struct turbine_describe_partition *p);
/* `p->records` NULL with records_size > 0: the bytes follow by turbine_proto_writer_external().
 * With iovecs, non-NULL records are referenced in place, not copied. */
TURBINE_API void turbine_produce_add_partition(struct turbine_proto_writer *w,
                                               const struct turbine_produce_partition *p);
TURBINE_API void turbine_produce_add_result(struct turbine_proto_writer *w,
                                            const struct turbine_produce_result *r);
TURBINE_API void turbine_fetch_add_partition(struct turbine_proto_writer *w,
                                             const struct turbine_fetch_partition *p);
/* As turbine_produce_add_partition() for the records: the broker's zero-copy path. */
TURBINE_API void turbine_fetch_add_result(struct turbine_proto_writer *w,
                                          const struct turbine_fetch_result *r);
TURBINE_API void turbine_list_offsets_add_partition(struct turbine_proto_writer *w,
                                                    const struct turbine_list_offsets_partition *p);
TURBINE_API void turbine_list_offsets_add_result(struct turbine_proto_writer *w,
                                                 const struct turbine_list_offsets_result *r);
TURBINE_API void
turbine_offset_commit_add_partition(struct turbine_proto_writer *w,
                                    const struct turbine_offset_commit_partition *p);
TURBINE_API void turbine_offset_commit_add_result(struct turbine_proto_writer *w,
                                                  const struct turbine_offset_commit_result *r);
TURBINE_API void turbine_offset_fetch_add_partition(struct turbine_proto_writer *w,
                                                    const struct turbine_offset_fetch_partition *p);
TURBINE_API void turbine_offset_fetch_add_result(struct turbine_proto_writer *w,
                                                 const struct turbine_offset_fetch_result *r);

/* True when name[0 .. size) is a valid topic name. */
TURBINE_API bool turbine_topic_name_valid(const char *name, size_t size);

#ifdef __cplusplus
}
#endif
#endif
