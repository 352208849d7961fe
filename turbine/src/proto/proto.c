/* SPDX-License-Identifier: MIT
 * proto.c - the native protocol codec (protocol.h): frame and header parsing, body decoders
 * over a bounds-checked reader, iterators, and the frame writer.
 *
 * Every array element has a kind (a row of `kinds`): its smallest valid size, its child array
 * (a topic's partitions) and its parse and write functions. A decoder walks every element once
 * with those parse functions before it returns, so the iterators it hands out only walk bytes
 * already checked; the reader's error is sticky, so a parse function reads all its fields and
 * the caller checks once. Nothing here allocates.
 */
#include <errno.h>
#include <string.h>

#include "log/bigendian.h"
#include "turbine/protocol.h"
#include "turbine_assert.h"

/* ---- names, errors, versions -------------------------------------------------------------- */

static const char *const api_names[TURBINE_API_COUNT] = {
    "HANDSHAKE", "METADATA",     "CREATE_TOPICS", "DELETE_TOPICS", "PRODUCE",
    "FETCH",     "LIST_OFFSETS", "OFFSET_COMMIT", "OFFSET_FETCH",  "DESCRIBE_TOPICS",
};

const char *turbine_api_name(unsigned api_key)
{
    return api_key < TURBINE_API_COUNT ? api_names[api_key] : "UNKNOWN_API";
}

static const struct {
    const char *name;
    const char *message;
    bool retriable;
} errors[TURBINE_ERR_MAX + 1] = {
    [TURBINE_ERR_NONE] = {"NONE", "success", false},
    [TURBINE_ERR_UNKNOWN] = {"UNKNOWN", "an unexpected broker failure", false},
    [TURBINE_ERR_UNKNOWN_API] = {"UNKNOWN_API", "the broker does not know this API", false},
    [TURBINE_ERR_UNSUPPORTED_VERSION] = {"UNSUPPORTED_VERSION",
                                         "the broker does not support this API version", false},
    [TURBINE_ERR_MALFORMED] = {"MALFORMED", "the request bytes do not parse", false},
    [TURBINE_ERR_FRAME_TOO_LARGE] = {"FRAME_TOO_LARGE",
                                     "the declared frame length is above the maximum", false},
    [TURBINE_ERR_REQUEST_TOO_LARGE] = {"REQUEST_TOO_LARGE",
                                       "the request passes a per-request limit", false},
    [TURBINE_ERR_INVALID_REQUEST] = {"INVALID_REQUEST",
                                     "a field of the request has an invalid value", false},
    [TURBINE_ERR_UNKNOWN_TOPIC] = {"UNKNOWN_TOPIC", "the topic does not exist", true},
    [TURBINE_ERR_UNKNOWN_PARTITION] = {"UNKNOWN_PARTITION", "the partition does not exist", true},
    [TURBINE_ERR_TOPIC_EXISTS] = {"TOPIC_EXISTS", "a topic of that name exists", false},
    [TURBINE_ERR_INVALID_TOPIC_NAME] = {"INVALID_TOPIC_NAME",
                                        "topic names are 1-249 characters of [A-Za-z0-9._-]",
                                        false},
    [TURBINE_ERR_INVALID_PARTITIONS] = {"INVALID_PARTITIONS", "the partition count is out of range",
                                        false},
    [TURBINE_ERR_INVALID_CONFIG] = {"INVALID_CONFIG", "a topic setting is out of range", false},
    [TURBINE_ERR_OFFSET_OUT_OF_RANGE] = {"OFFSET_OUT_OF_RANGE",
                                         "the offset is outside the partition's log", false},
    [TURBINE_ERR_CORRUPT_RECORD] = {"CORRUPT_RECORD", "a record batch failed its CRC or framing",
                                    true},
    [TURBINE_ERR_RECORD_TOO_LARGE] = {"RECORD_TOO_LARGE",
                                      "a record batch is larger than the broker accepts", false},
    [TURBINE_ERR_TIMEOUT] = {"TIMEOUT", "the request did not complete within its timeout", true},
    [TURBINE_ERR_NOT_ENOUGH_DURABLE] = {"NOT_ENOUGH_DURABLE",
                                        "written, but not made as durable as acks asked", true},
    [TURBINE_ERR_STORAGE_ERROR] = {"STORAGE_ERROR", "the partition's storage failed", true},
    [TURBINE_ERR_DISK_FULL] = {"DISK_FULL", "the broker's disk is full", true},
    [TURBINE_ERR_SHUTTING_DOWN] = {"SHUTTING_DOWN", "the broker is shutting down", true},
    [TURBINE_ERR_NOT_LEADER] = {"NOT_LEADER", "this broker does not lead the partition", true},
    [TURBINE_ERR_INVALID_GROUP] = {"INVALID_GROUP", "the group id is empty or too long", false},
    [TURBINE_ERR_OFFSET_METADATA_TOO_LARGE] = {"OFFSET_METADATA_TOO_LARGE",
                                               "the offset metadata string is too long", false},
};

const char *turbine_error_name(unsigned error)
{
    return error <= TURBINE_ERR_MAX ? errors[error].name : "UNKNOWN_ERROR_CODE";
}

const char *turbine_error_message(unsigned error)
{
    return error <= TURBINE_ERR_MAX ? errors[error].message : "an error code this build lacks";
}

bool turbine_error_retriable(unsigned error)
{
    return error <= TURBINE_ERR_MAX && errors[error].retriable;
}

static const struct turbine_api_versions versions[TURBINE_API_COUNT] = {
    {TURBINE_API_HANDSHAKE, 0, 0},     {TURBINE_API_METADATA, 0, 0},
    {TURBINE_API_CREATE_TOPICS, 0, 0}, {TURBINE_API_DELETE_TOPICS, 0, 0},
    {TURBINE_API_PRODUCE, 0, 0},       {TURBINE_API_FETCH, 0, 0},
    {TURBINE_API_LIST_OFFSETS, 0, 0},  {TURBINE_API_OFFSET_COMMIT, 0, 0},
    {TURBINE_API_OFFSET_FETCH, 0, 0},  {TURBINE_API_DESCRIBE_TOPICS, 0, 0},
};

const struct turbine_api_versions *turbine_proto_versions(void)
{
    return versions;
}

int turbine_version_pick(const struct turbine_api_versions *ours,
                         const struct turbine_api_versions *theirs)
{
    TURBINE_ASSERT(ours->api_key == theirs->api_key);
    uint16_t low =
        ours->min_version > theirs->min_version ? ours->min_version : theirs->min_version;
    uint16_t high =
        ours->max_version < theirs->max_version ? ours->max_version : theirs->max_version;
    return low <= high ? high : -1;
}

int turbine_handshake_negotiate(const struct turbine_api_versions *ours, size_t ours_count,
                                struct turbine_proto_iter theirs, uint16_t api_key)
{
    const struct turbine_api_versions *mine = NULL;
    for (size_t i = 0; i < ours_count; i++)
        if (ours[i].api_key == api_key)
            mine = &ours[i];
    if (mine == NULL)
        return -1;
    struct turbine_api_versions peer;
    while (turbine_handshake_next_api(&theirs, &peer))
        if (peer.api_key == api_key)
            return turbine_version_pick(mine, &peer);
    return -1;
}

bool turbine_topic_name_valid(const char *name, size_t size)
{
    if (size < 1 || size > TURBINE_TOPIC_NAME_MAX)
        return false;
    if ((size == 1 && name[0] == '.') || (size == 2 && name[0] == '.' && name[1] == '.'))
        return false;
    for (size_t i = 0; i < size; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

/* ---- frames ------------------------------------------------------------------------------- */

enum turbine_error turbine_frame_prefix(const void *prefix, uint32_t frame_max_bytes,
                                        enum turbine_frame_kind kind, uint32_t *frame_bytes)
{
    TURBINE_ASSERT(prefix != NULL && frame_bytes != NULL);
    uint32_t n = get_be32(prefix);
    uint32_t min = kind == TURBINE_FRAME_REQUEST
                       ? TURBINE_PROTO_REQ_HEADER_SIZE - TURBINE_PROTO_PREFIX_SIZE
                       : TURBINE_PROTO_RESP_HEADER_SIZE - TURBINE_PROTO_PREFIX_SIZE;
    *frame_bytes = n;
    if (n > frame_max_bytes)
        return TURBINE_ERR_FRAME_TOO_LARGE;
    if (n < min)
        return TURBINE_ERR_MALFORMED;
    return TURBINE_ERR_NONE;
}

enum turbine_error turbine_request_parse(const void *frame, size_t size,
                                         struct turbine_request *req)
{
    TURBINE_ASSERT(frame != NULL || size == 0);
    const uint8_t *p = frame;
    memset(req, 0, sizeof(*req));
    if (size < TURBINE_PROTO_REQ_HEADER_SIZE)
        return TURBINE_ERR_MALFORMED;
    req->header.api_key = get_be16(p + TURBINE_PROTO_REQ_OFF_API_KEY);
    req->header.api_version = get_be16(p + TURBINE_PROTO_REQ_OFF_VERSION);
    req->header.correlation_id = get_be32(p + TURBINE_PROTO_REQ_OFF_CORRELATION);
    req->header.flags = get_be16(p + TURBINE_PROTO_REQ_OFF_FLAGS);
    if ((uint64_t)get_be32(p) + TURBINE_PROTO_PREFIX_SIZE != size || req->header.flags != 0)
        return TURBINE_ERR_MALFORMED;
    req->body = p + TURBINE_PROTO_REQ_HEADER_SIZE;
    req->body_size = (uint32_t)(size - TURBINE_PROTO_REQ_HEADER_SIZE);
    if (req->header.api_key >= TURBINE_API_COUNT)
        return TURBINE_ERR_UNKNOWN_API;
    if (req->header.api_version > versions[req->header.api_key].max_version)
        return TURBINE_ERR_UNSUPPORTED_VERSION;
    return TURBINE_ERR_NONE;
}

enum turbine_error turbine_response_parse(const void *frame, size_t size,
                                          struct turbine_response *resp)
{
    TURBINE_ASSERT(frame != NULL || size == 0);
    const uint8_t *p = frame;
    memset(resp, 0, sizeof(*resp));
    if (size < TURBINE_PROTO_RESP_HEADER_SIZE)
        return TURBINE_ERR_MALFORMED;
    resp->correlation_id = get_be32(p + TURBINE_PROTO_RESP_OFF_CORRELATION);
    resp->api_key = get_be16(p + TURBINE_PROTO_RESP_OFF_API_KEY);
    resp->error = get_be16(p + TURBINE_PROTO_RESP_OFF_ERROR);
    if ((uint64_t)get_be32(p) + TURBINE_PROTO_PREFIX_SIZE != size)
        return TURBINE_ERR_MALFORMED;
    resp->body = p + TURBINE_PROTO_RESP_HEADER_SIZE;
    resp->body_size = (uint32_t)(size - TURBINE_PROTO_RESP_HEADER_SIZE);
    if (resp->error != TURBINE_ERR_NONE && resp->api_key != TURBINE_API_HANDSHAKE &&
        resp->body_size != 0)
        return TURBINE_ERR_MALFORMED;
    return TURBINE_ERR_NONE;
}

/* ---- reader ------------------------------------------------------------------------------- */

/* A bounds-checked cursor. The first failure sticks: later reads return zeros and empty
 * views, so a parse function reads all its fields and the caller checks `err` once. */
struct rd {
    const uint8_t *p;
    const uint8_t *end;
    uint16_t err;
};

static bool rd_need(struct rd *r, size_t n)
{
    if (r->err != TURBINE_ERR_NONE)
        return false;
    if ((size_t)(r->end - r->p) < n) {
        r->err = TURBINE_ERR_MALFORMED;
        return false;
    }
    return true;
}

static uint8_t rd_u8(struct rd *r)
{
    if (!rd_need(r, 1))
        return 0;
    return *r->p++;
}

static uint16_t rd_u16(struct rd *r)
{
    if (!rd_need(r, 2))
        return 0;
    uint16_t v = get_be16(r->p);
    r->p += 2;
    return v;
}

static uint32_t rd_u32(struct rd *r)
{
    if (!rd_need(r, 4))
        return 0;
    uint32_t v = get_be32(r->p);
    r->p += 4;
    return v;
}

static uint64_t rd_u64(struct rd *r)
{
    if (!rd_need(r, 8))
        return 0;
    uint64_t v = get_be64(r->p);
    r->p += 8;
    return v;
}

static int16_t rd_i16(struct rd *r)
{
    return (int16_t)rd_u16(r);
}

static int32_t rd_i32(struct rd *r)
{
    return (int32_t)rd_u32(r);
}

static int64_t rd_i64(struct rd *r)
{
    return (int64_t)rd_u64(r);
}

static void rd_str(struct rd *r, const char **s, uint16_t *size)
{
    uint16_t n = rd_u16(r);
    *s = NULL;
    *size = 0;
    if (!rd_need(r, n))
        return;
    *s = (const char *)r->p;
    *size = n;
    r->p += n;
}

static void rd_topic(struct rd *r, const char **s, uint16_t *size)
{
    rd_str(r, s, size);
    if (r->err == TURBINE_ERR_NONE && !turbine_topic_name_valid(*s, *size))
        r->err = TURBINE_ERR_INVALID_TOPIC_NAME;
}

static void rd_records(struct rd *r, const uint8_t **data, uint32_t *size)
{
    uint32_t n = rd_u32(r);
    *data = NULL;
    *size = 0;
    if (!rd_need(r, n))
        return;
    *data = r->p;
    *size = n;
    r->p += n;
}

static void rd_config(struct rd *r, struct turbine_topic_config *c)
{
    c->retention_ms = rd_i64(r);
    c->retention_bytes = rd_i64(r);
    c->segment_bytes = rd_i64(r);
    c->durability = rd_u8(r);
}

/* ---- writer primitives -------------------------------------------------------------------- */

static void wr_fail(struct turbine_proto_writer *w, int error)
{
    if (w->error == 0)
        w->error = error;
}

static void wr(struct turbine_proto_writer *w, const void *src, size_t n)
{
    if (n == 0)
        return;
    if (n <= w->capacity && w->used <= w->capacity - n)
        memcpy(w->buffer + w->used, src, n);
    else
        wr_fail(w, -ENOSPC);
    w->used += n;
}

static void wr_u8(struct turbine_proto_writer *w, uint8_t v)
{
    wr(w, &v, 1);
}

static void wr_u16(struct turbine_proto_writer *w, uint16_t v)
{
    uint8_t b[2];
    put_be16(b, v);
    wr(w, b, 2);
}

static void wr_u32(struct turbine_proto_writer *w, uint32_t v)
{
    uint8_t b[4];
    put_be32(b, v);
    wr(w, b, 4);
}

static void wr_u64(struct turbine_proto_writer *w, uint64_t v)
{
    uint8_t b[8];
    put_be64(b, v);
    wr(w, b, 8);
}

static void wr_str(struct turbine_proto_writer *w, const char *s, size_t size)
{
    TURBINE_ASSERT(s != NULL || size == 0);
    if (size > UINT16_MAX) {
        wr_fail(w, -EINVAL);
        size = 0;
    }
    wr_u16(w, (uint16_t)size);
    if (size > 0)
        wr(w, s, size);
}

static void wr_topic(struct turbine_proto_writer *w, const char *s, size_t size)
{
    if (s == NULL || !turbine_topic_name_valid(s, size))
        wr_fail(w, -EINVAL);
    wr_str(w, s, s == NULL ? 0 : size);
}

static void wr_config(struct turbine_proto_writer *w, const struct turbine_topic_config *c)
{
    wr_u64(w, (uint64_t)c->retention_ms);
    wr_u64(w, (uint64_t)c->retention_bytes);
    wr_u64(w, (uint64_t)c->segment_bytes);
    wr_u8(w, c->durability);
}

static void iov_push(struct turbine_proto_writer *w, const void *base, size_t len)
{
    TURBINE_ASSERT(w->iov != NULL);
    if (len == 0)
        return;
    if (w->iov_count < w->iov_capacity)
        w->iov[w->iov_count] = (struct iovec){(void *)base, len};
    else
        wr_fail(w, -ENOSPC);
    w->iov_count++;
}

/* Describes the buffer bytes written since the last iovec as one more iovec. */
static void close_segment(struct turbine_proto_writer *w)
{
    if (w->iov == NULL || w->used == w->segment_start)
        return;
    TURBINE_ASSERT(w->used > w->segment_start);
    bool fits = w->used <= w->capacity;
    iov_push(w, fits ? w->buffer + w->segment_start : NULL, w->used - w->segment_start);
    w->segment_start = w->used;
}

static void external_add(struct turbine_proto_writer *w, const void *data, size_t size)
{
    TURBINE_ASSERT(w->iov != NULL && w->in_frame);
    close_segment(w);
    iov_push(w, data, size);
    w->frame_external += size;
}

static void wr_records(struct turbine_proto_writer *w, const uint8_t *data, uint32_t size)
{
    wr_u32(w, size);
    if (size == 0)
        return;
    if (data == NULL) {
        TURBINE_ASSERT(w->iov != NULL); /* the caller's bytes can only go by reference */
        w->external_due = size;
    } else if (w->iov == NULL) {
        wr(w, data, size);
    } else {
        external_add(w, data, size);
    }
}

void turbine_proto_writer_external(struct turbine_proto_writer *w, const void *data, size_t size)
{
    TURBINE_ASSERT(data != NULL || size == 0);
    TURBINE_ASSERT(size <= w->external_due);
    w->external_due -= size;
    external_add(w, data, size);
}

void turbine_proto_writer_init(struct turbine_proto_writer *w, void *buffer, size_t capacity,
                               struct iovec *iov, size_t iov_capacity)
{
    TURBINE_ASSERT(buffer != NULL || capacity == 0);
    TURBINE_ASSERT(iov != NULL || iov_capacity == 0);
    memset(w, 0, sizeof(*w));
    w->buffer = buffer;
    w->capacity = capacity;
    w->iov = iov;
    w->iov_capacity = iov_capacity;
}

size_t turbine_proto_writer_needed(const struct turbine_proto_writer *w)
{
    return w->used;
}

size_t turbine_proto_writer_iov_needed(const struct turbine_proto_writer *w)
{
    return w->iov_count;
}

/* ---- element kinds ------------------------------------------------------------------------ */

enum kind {
    K_NONE,
    K_API,
    K_NAME,
    /* topics nesting partitions: turbine_proto_topic */
    K_TOPIC_PRODUCE,
    K_TOPIC_PRODUCE_RESULT,
    K_TOPIC_FETCH,
    K_TOPIC_FETCH_RESULT,
    K_TOPIC_LIST_OFFSETS,
    K_TOPIC_LIST_OFFSETS_RESULT,
    K_TOPIC_COMMIT,
    K_TOPIC_COMMIT_RESULT,
    K_TOPIC_OFFSET_FETCH,
    K_TOPIC_OFFSET_FETCH_RESULT,
    /* their partitions */
    K_PRODUCE_PARTITION,
    K_PRODUCE_RESULT,
    K_FETCH_PARTITION,
    K_FETCH_RESULT,
    K_LIST_OFFSETS_PARTITION,
    K_LIST_OFFSETS_RESULT,
    K_COMMIT_PARTITION,
    K_COMMIT_RESULT,
    K_OFFSET_FETCH_PARTITION,
    K_OFFSET_FETCH_RESULT,
    /* the others */
    K_METADATA_TOPIC,
    K_METADATA_PARTITION,
    K_CREATE_TOPIC,
    K_TOPIC_RESULT,
    K_DESCRIBE_TOPIC,
    K_DESCRIBE_PARTITION,
    K_COUNT,
};

typedef void (*parse_fn)(struct rd *r, uint16_t kind, void *out);
typedef void (*write_fn)(struct turbine_proto_writer *w, const void *in);

struct kind_info {
    uint16_t min_size; /* bytes of the smallest valid element: a count check before a walk */
    uint16_t child;    /* the kind of its nested array, or K_NONE */
    bool fixed;        /* every element is min_size bytes */
    parse_fn parse;
    write_fn write;
};

static const struct kind_info kinds[K_COUNT];

/* Any element, for walking an array without keeping what it holds. */
union any_elem {
    struct turbine_api_versions api;
    struct turbine_proto_name name;
    struct turbine_proto_topic topic;
    struct turbine_produce_partition produce_partition;
    struct turbine_produce_result produce_result;
    struct turbine_fetch_partition fetch_partition;
    struct turbine_fetch_result fetch_result;
    struct turbine_list_offsets_partition list_partition;
    struct turbine_list_offsets_result list_result;
    struct turbine_offset_commit_partition commit_partition;
    struct turbine_offset_commit_result commit_result;
    struct turbine_offset_fetch_partition offset_fetch_partition;
    struct turbine_offset_fetch_result offset_fetch_result;
    struct turbine_metadata_topic metadata_topic;
    struct turbine_metadata_partition metadata_partition;
    struct turbine_create_topic create_topic;
    struct turbine_topic_result topic_result;
    struct turbine_describe_topic describe_topic;
    struct turbine_describe_partition describe_partition;
};

/* Reads an array of `kind` elements: the u32 count, checked against the bytes left before any
 * element is looked at, then every element, so `it` walks checked bytes only and ends exactly
 * where the array does. */
static void rd_array(struct rd *r, uint16_t kind, uint32_t *count, struct turbine_proto_iter *it)
{
    TURBINE_ASSERT(kind > K_NONE && kind < K_COUNT);
    uint32_t n = rd_u32(r);
    *count = 0;
    *it = (struct turbine_proto_iter){.next = r->p, .end = r->p, .kind = kind};
    if (r->err != TURBINE_ERR_NONE)
        return;
    if ((uint64_t)n * kinds[kind].min_size > (uint64_t)(r->end - r->p)) {
        r->err = TURBINE_ERR_MALFORMED;
        return;
    }
    struct rd e = {r->p, r->end, TURBINE_ERR_NONE};
    union any_elem scratch;
    for (uint32_t i = 0; i < n && e.err == TURBINE_ERR_NONE; i++)
        kinds[kind].parse(&e, kind, &scratch);
    if (e.err != TURBINE_ERR_NONE) {
        r->err = e.err;
        return;
    }
    TURBINE_ASSERT(e.p >= r->p && e.p <= r->end);
    *count = n;
    it->end = e.p;
    it->remaining = n;
    r->p = e.p;
}

static bool iter_next(struct turbine_proto_iter *it, uint16_t kind, void *out)
{
    if (it->remaining == 0 || it->error != TURBINE_ERR_NONE)
        return false; /* also an iterator a failed decoder zeroed */
    TURBINE_ASSERT(it->kind == kind);
    struct rd r = {it->next, it->end, TURBINE_ERR_NONE};
    kinds[kind].parse(&r, kind, out);
    if (r.err != TURBINE_ERR_NONE) {
        it->error = r.err;
        return false;
    }
    it->next = r.p;
    it->remaining--;
    /* The decoder measured the array: its last element ends at `end`. */
    TURBINE_ASSERT(it->remaining > 0 || it->next == it->end);
    return true;
}

/* Element parsers. */

static void parse_api(struct rd *r, uint16_t kind, void *out)
{
    struct turbine_api_versions *a = out;
    a->api_key = rd_u16(r);
    a->min_version = rd_u16(r);
    a->max_version = rd_u16(r);
}

static void parse_name(struct rd *r, uint16_t kind, void *out)
{
    struct turbine_proto_name *n = out;
    rd_topic(r, &n->name, &n->name_size);
}

static void parse_topic(struct rd *r, uint16_t kind, void *out)
{
    struct turbine_proto_topic *t = out;
    rd_topic(r, &t->name, &t->name_size);
    rd_array(r, kinds[kind].child, &t->partition_count, &t->partitions);
}

static void parse_produce_partition(struct rd *r, uint16_t kind, void *out)
{
    struct turbine_produce_partition *p = out;
    p->partition = rd_i32(r);
    rd_records(r, &p->records, &p->records_size);
}

static void parse_produce_result(struct rd *r, uint16_t kind, void *out)
{
    struct turbine_produce_result *p = out;
    p->partition = rd_i32(r);
    p->error = rd_u16(r);
    p->base_offset = rd_i64(r);
    p->log_start_offset = rd_i64(r);
}

static void parse_fetch_partition(struct rd *r, uint16_t kind, void *out)
{
    struct turbine_fetch_partition *p = out;
    p->partition = rd_i32(r);
    p->fetch_offset = rd_i64(r);
    p->partition_max_bytes = rd_i32(r);
}

static void parse_fetch_result(struct rd *r, uint16_t kind, void *out)
{
    struct turbine_fetch_result *p = out;
    p->partition = rd_i32(r);
    p->error = rd_u16(r);
    p->high_watermark = rd_i64(r);
    p->log_end_offset = rd_i64(r);
    p->log_start_offset = rd_i64(r);
    rd_records(r, &p->records, &p->records_size);
}

static void parse_list_partition(struct rd *r, uint16_t kind, void *out)
{
    struct turbine_list_offsets_partition *p = out;
    p->partition = rd_i32(r);
    p->timestamp = rd_i64(r);
}

static void parse_list_result(struct rd *r, uint16_t kind, void *out)
{
    struct turbine_list_offsets_result *p = out;
    p->partition = rd_i32(r);
    p->error = rd_u16(r);
    p->timestamp = rd_i64(r);
    p->offset = rd_i64(r);
}

static void parse_commit_partition(struct rd *r, uint16_t kind, void *out)
{
    struct turbine_offset_commit_partition *p = out;
    p->partition = rd_i32(r);
    p->offset = rd_i64(r);
    rd_str(r, &p->metadata, &p->metadata_size);
}

static void parse_commit_result(struct rd *r, uint16_t kind, void *out)
{
    struct turbine_offset_commit_result *p = out;
    p->partition = rd_i32(r);
    p->error = rd_u16(r);
}

static void parse_offset_fetch_partition(struct rd *r, uint16_t kind, void *out)
{
    struct turbine_offset_fetch_partition *p = out;
    p->partition = rd_i32(r);
}

static void parse_offset_fetch_result(struct rd *r, uint16_t kind, void *out)
{
    struct turbine_offset_fetch_result *p = out;
    p->partition = rd_i32(r);
    p->error = rd_u16(r);
    p->offset = rd_i64(r);
    rd_str(r, &p->metadata, &p->metadata_size);
}

static void parse_metadata_topic(struct rd *r, uint16_t kind, void *out)
{
    struct turbine_metadata_topic *t = out;
    t->error = rd_u16(r);
    rd_topic(r, &t->name, &t->name_size);
    rd_array(r, K_METADATA_PARTITION, &t->partition_count, &t->partitions);
}

static void parse_metadata_partition(struct rd *r, uint16_t kind, void *out)
{
    struct turbine_metadata_partition *p = out;
    p->partition = rd_i32(r);
    p->leader = rd_i32(r);
    p->error = rd_u16(r);
}

static void parse_create_topic(struct rd *r, uint16_t kind, void *out)
{
    struct turbine_create_topic *t = out;
    rd_topic(r, &t->name, &t->name_size);
    t->partitions = rd_i32(r);
    rd_config(r, &t->config);
}

static void parse_topic_result(struct rd *r, uint16_t kind, void *out)
{
    struct turbine_topic_result *t = out;
    rd_topic(r, &t->name, &t->name_size);
    t->error = rd_u16(r);
}

static void parse_describe_topic(struct rd *r, uint16_t kind, void *out)
{
    struct turbine_describe_topic *t = out;
    t->error = rd_u16(r);
    rd_topic(r, &t->name, &t->name_size);
    rd_config(r, &t->config);
    rd_array(r, K_DESCRIBE_PARTITION, &t->partition_count, &t->partitions);
}

static void parse_describe_partition(struct rd *r, uint16_t kind, void *out)
{
    struct turbine_describe_partition *p = out;
    p->partition = rd_i32(r);
    p->error = rd_u16(r);
    p->log_start_offset = rd_i64(r);
    p->high_watermark = rd_i64(r);
    p->log_end_offset = rd_i64(r);
    p->size_bytes = rd_i64(r);
    p->segment_count = rd_u32(r);
}

/* Element writers (the mirror images). */

static void write_api(struct turbine_proto_writer *w, const void *in)
{
    const struct turbine_api_versions *a = in;
    wr_u16(w, a->api_key);
    wr_u16(w, a->min_version);
    wr_u16(w, a->max_version);
}

static void write_name(struct turbine_proto_writer *w, const void *in)
{
    const struct turbine_proto_name *n = in;
    wr_topic(w, n->name, n->name_size);
}

static void write_topic(struct turbine_proto_writer *w, const void *in)
{
    const struct turbine_proto_topic *t = in;
    wr_topic(w, t->name, t->name_size);
    wr_u32(w, t->partition_count);
}

static void write_produce_partition(struct turbine_proto_writer *w, const void *in)
{
    const struct turbine_produce_partition *p = in;
    wr_u32(w, (uint32_t)p->partition);
    wr_records(w, p->records, p->records_size);
}

static void write_produce_result(struct turbine_proto_writer *w, const void *in)
{
    const struct turbine_produce_result *p = in;
    wr_u32(w, (uint32_t)p->partition);
    wr_u16(w, p->error);
    wr_u64(w, (uint64_t)p->base_offset);
    wr_u64(w, (uint64_t)p->log_start_offset);
}

static void write_fetch_partition(struct turbine_proto_writer *w, const void *in)
{
    const struct turbine_fetch_partition *p = in;
    wr_u32(w, (uint32_t)p->partition);
    wr_u64(w, (uint64_t)p->fetch_offset);
    wr_u32(w, (uint32_t)p->partition_max_bytes);
}

static void write_fetch_result(struct turbine_proto_writer *w, const void *in)
{
    const struct turbine_fetch_result *p = in;
    size_t start = w->used;
    wr_u32(w, (uint32_t)p->partition);
    wr_u16(w, p->error);
    wr_u64(w, (uint64_t)p->high_watermark);
    wr_u64(w, (uint64_t)p->log_end_offset);
    wr_u64(w, (uint64_t)p->log_start_offset);
    TURBINE_ASSERT(w->used - start == TURBINE_PROTO_FETCH_RESULT_OFF_RECORDS_SIZE);
    wr_records(w, p->records, p->records_size);
}

static void write_list_partition(struct turbine_proto_writer *w, const void *in)
{
    const struct turbine_list_offsets_partition *p = in;
    wr_u32(w, (uint32_t)p->partition);
    wr_u64(w, (uint64_t)p->timestamp);
}

static void write_list_result(struct turbine_proto_writer *w, const void *in)
{
    const struct turbine_list_offsets_result *p = in;
    wr_u32(w, (uint32_t)p->partition);
    wr_u16(w, p->error);
    wr_u64(w, (uint64_t)p->timestamp);
    wr_u64(w, (uint64_t)p->offset);
}

static void write_commit_partition(struct turbine_proto_writer *w, const void *in)
{
    const struct turbine_offset_commit_partition *p = in;
    wr_u32(w, (uint32_t)p->partition);
    wr_u64(w, (uint64_t)p->offset);
    wr_str(w, p->metadata, p->metadata_size);
}

static void write_commit_result(struct turbine_proto_writer *w, const void *in)
{
    const struct turbine_offset_commit_result *p = in;
    wr_u32(w, (uint32_t)p->partition);
    wr_u16(w, p->error);
}

static void write_offset_fetch_partition(struct turbine_proto_writer *w, const void *in)
{
    const struct turbine_offset_fetch_partition *p = in;
    wr_u32(w, (uint32_t)p->partition);
}

static void write_offset_fetch_result(struct turbine_proto_writer *w, const void *in)
{
    const struct turbine_offset_fetch_result *p = in;
    wr_u32(w, (uint32_t)p->partition);
    wr_u16(w, p->error);
    wr_u64(w, (uint64_t)p->offset);
    wr_str(w, p->metadata, p->metadata_size);
}

static void write_metadata_topic(struct turbine_proto_writer *w, const void *in)
{
    const struct turbine_metadata_topic *t = in;
    wr_u16(w, t->error);
    wr_topic(w, t->name, t->name_size);
    wr_u32(w, t->partition_count);
}

static void write_metadata_partition(struct turbine_proto_writer *w, const void *in)
{
    const struct turbine_metadata_partition *p = in;
    wr_u32(w, (uint32_t)p->partition);
    wr_u32(w, (uint32_t)p->leader);
    wr_u16(w, p->error);
}

static void write_create_topic(struct turbine_proto_writer *w, const void *in)
{
    const struct turbine_create_topic *t = in;
    wr_topic(w, t->name, t->name_size);
    wr_u32(w, (uint32_t)t->partitions);
    wr_config(w, &t->config);
}

static void write_topic_result(struct turbine_proto_writer *w, const void *in)
{
    const struct turbine_topic_result *t = in;
    wr_topic(w, t->name, t->name_size);
    wr_u16(w, t->error);
}

static void write_describe_topic(struct turbine_proto_writer *w, const void *in)
{
    const struct turbine_describe_topic *t = in;
    wr_u16(w, t->error);
    wr_topic(w, t->name, t->name_size);
    wr_config(w, &t->config);
    wr_u32(w, t->partition_count);
}

static void write_describe_partition(struct turbine_proto_writer *w, const void *in)
{
    const struct turbine_describe_partition *p = in;
    wr_u32(w, (uint32_t)p->partition);
    wr_u16(w, p->error);
    wr_u64(w, (uint64_t)p->log_start_offset);
    wr_u64(w, (uint64_t)p->high_watermark);
    wr_u64(w, (uint64_t)p->log_end_offset);
    wr_u64(w, (uint64_t)p->size_bytes);
    wr_u32(w, p->segment_count);
}

/* Smallest valid sizes: a topic name has at least 1 byte, an array at least its count. */
#define NAME_MIN  3 /* u16 length + 1 byte */
#define TOPIC_MIN (NAME_MIN + 4)
#define TOPIC(child)                                                                               \
    {                                                                                              \
        TOPIC_MIN, child, false, parse_topic, write_topic                                          \
    }

static const struct kind_info kinds[K_COUNT] = {
    [K_API] = {TURBINE_PROTO_API_VERSIONS_SIZE, K_NONE, true, parse_api, write_api},
    [K_NAME] = {NAME_MIN, K_NONE, false, parse_name, write_name},
    [K_TOPIC_PRODUCE] = TOPIC(K_PRODUCE_PARTITION),
    [K_TOPIC_PRODUCE_RESULT] = TOPIC(K_PRODUCE_RESULT),
    [K_TOPIC_FETCH] = TOPIC(K_FETCH_PARTITION),
    [K_TOPIC_FETCH_RESULT] = TOPIC(K_FETCH_RESULT),
    [K_TOPIC_LIST_OFFSETS] = TOPIC(K_LIST_OFFSETS_PARTITION),
    [K_TOPIC_LIST_OFFSETS_RESULT] = TOPIC(K_LIST_OFFSETS_RESULT),
    [K_TOPIC_COMMIT] = TOPIC(K_COMMIT_PARTITION),
    [K_TOPIC_COMMIT_RESULT] = TOPIC(K_COMMIT_RESULT),
    [K_TOPIC_OFFSET_FETCH] = TOPIC(K_OFFSET_FETCH_PARTITION),
    [K_TOPIC_OFFSET_FETCH_RESULT] = TOPIC(K_OFFSET_FETCH_RESULT),
    [K_PRODUCE_PARTITION] = {8, K_NONE, false, parse_produce_partition, write_produce_partition},
    [K_PRODUCE_RESULT] = {TURBINE_PROTO_PRODUCE_RESULT_SIZE, K_NONE, true, parse_produce_result,
                          write_produce_result},
    [K_FETCH_PARTITION] = {TURBINE_PROTO_FETCH_PARTITION_SIZE, K_NONE, true, parse_fetch_partition,
                           write_fetch_partition},
    [K_FETCH_RESULT] = {TURBINE_PROTO_FETCH_RESULT_FIXED_SIZE, K_NONE, false, parse_fetch_result,
                        write_fetch_result},
    [K_LIST_OFFSETS_PARTITION] = {TURBINE_PROTO_LIST_OFFSETS_PARTITION_SIZE, K_NONE, true,
                                  parse_list_partition, write_list_partition},
    [K_LIST_OFFSETS_RESULT] = {TURBINE_PROTO_LIST_OFFSETS_RESULT_SIZE, K_NONE, true,
                               parse_list_result, write_list_result},
    [K_COMMIT_PARTITION] = {14, K_NONE, false, parse_commit_partition, write_commit_partition},
    [K_COMMIT_RESULT] = {TURBINE_PROTO_OFFSET_COMMIT_RESULT_SIZE, K_NONE, true, parse_commit_result,
                         write_commit_result},
    [K_OFFSET_FETCH_PARTITION] = {TURBINE_PROTO_OFFSET_FETCH_PARTITION_SIZE, K_NONE, true,
                                  parse_offset_fetch_partition, write_offset_fetch_partition},
    [K_OFFSET_FETCH_RESULT] = {16, K_NONE, false, parse_offset_fetch_result,
                               write_offset_fetch_result},
    [K_METADATA_TOPIC] = {2 + TOPIC_MIN, K_METADATA_PARTITION, false, parse_metadata_topic,
                          write_metadata_topic},
    [K_METADATA_PARTITION] = {TURBINE_PROTO_METADATA_PARTITION_SIZE, K_NONE, true,
                              parse_metadata_partition, write_metadata_partition},
    [K_CREATE_TOPIC] = {NAME_MIN + 4 + TURBINE_PROTO_TOPIC_CONFIG_SIZE, K_NONE, false,
                        parse_create_topic, write_create_topic},
    [K_TOPIC_RESULT] = {NAME_MIN + 2, K_NONE, false, parse_topic_result, write_topic_result},
    [K_DESCRIBE_TOPIC] = {2 + NAME_MIN + TURBINE_PROTO_TOPIC_CONFIG_SIZE + 4, K_DESCRIBE_PARTITION,
                          false, parse_describe_topic, write_describe_topic},
    [K_DESCRIBE_PARTITION] = {TURBINE_PROTO_DESCRIBE_PARTITION_SIZE, K_NONE, true,
                              parse_describe_partition, write_describe_partition},
};

static bool kind_is_topic(uint16_t kind)
{
    return kind >= K_TOPIC_PRODUCE && kind <= K_TOPIC_OFFSET_FETCH_RESULT;
}

/* ---- iterators ---------------------------------------------------------------------------- */

bool turbine_proto_next_name(struct turbine_proto_iter *it, struct turbine_proto_name *out)
{
    return iter_next(it, K_NAME, out);
}

bool turbine_proto_next_topic(struct turbine_proto_iter *it, struct turbine_proto_topic *out)
{
    if (it->remaining == 0)
        return false;
    TURBINE_ASSERT(kind_is_topic(it->kind));
    return iter_next(it, it->kind, out);
}

#define NEXT_FN(fn, type, kind)                                                                    \
    bool fn(struct turbine_proto_iter *it, type *out)                                              \
    {                                                                                              \
        return iter_next(it, kind, out);                                                           \
    }

NEXT_FN(turbine_handshake_next_api, struct turbine_api_versions, K_API)
NEXT_FN(turbine_metadata_next_topic, struct turbine_metadata_topic, K_METADATA_TOPIC)
NEXT_FN(turbine_metadata_next_partition, struct turbine_metadata_partition, K_METADATA_PARTITION)
NEXT_FN(turbine_create_topics_next_topic, struct turbine_create_topic, K_CREATE_TOPIC)
NEXT_FN(turbine_topics_next_result, struct turbine_topic_result, K_TOPIC_RESULT)
NEXT_FN(turbine_describe_next_topic, struct turbine_describe_topic, K_DESCRIBE_TOPIC)
NEXT_FN(turbine_describe_next_partition, struct turbine_describe_partition, K_DESCRIBE_PARTITION)
NEXT_FN(turbine_produce_next_partition, struct turbine_produce_partition, K_PRODUCE_PARTITION)
NEXT_FN(turbine_produce_next_result, struct turbine_produce_result, K_PRODUCE_RESULT)
NEXT_FN(turbine_fetch_next_partition, struct turbine_fetch_partition, K_FETCH_PARTITION)
NEXT_FN(turbine_fetch_next_result, struct turbine_fetch_result, K_FETCH_RESULT)
NEXT_FN(turbine_list_offsets_next_partition, struct turbine_list_offsets_partition,
        K_LIST_OFFSETS_PARTITION)
NEXT_FN(turbine_list_offsets_next_result, struct turbine_list_offsets_result, K_LIST_OFFSETS_RESULT)
NEXT_FN(turbine_offset_commit_next_partition, struct turbine_offset_commit_partition,
        K_COMMIT_PARTITION)
NEXT_FN(turbine_offset_commit_next_result, struct turbine_offset_commit_result, K_COMMIT_RESULT)
NEXT_FN(turbine_offset_fetch_next_partition, struct turbine_offset_fetch_partition,
        K_OFFSET_FETCH_PARTITION)
NEXT_FN(turbine_offset_fetch_next_result, struct turbine_offset_fetch_result, K_OFFSET_FETCH_RESULT)

/* ---- body decoders ------------------------------------------------------------------------ */

static enum turbine_error req_start(const struct turbine_request *req, uint16_t api, struct rd *r)
{
    TURBINE_ASSERT(req->header.api_key == api);
    TURBINE_ASSERT(req->body != NULL || req->body_size == 0);
    *r = (struct rd){req->body, req->body + req->body_size, TURBINE_ERR_NONE};
    if (req->header.api_version > versions[api].max_version)
        return TURBINE_ERR_UNSUPPORTED_VERSION;
    return TURBINE_ERR_NONE;
}

static enum turbine_error resp_start(const struct turbine_response *resp, uint16_t api,
                                     struct rd *r)
{
    TURBINE_ASSERT(resp->api_key == api);
    TURBINE_ASSERT(resp->body != NULL || resp->body_size == 0);
    *r = (struct rd){resp->body, resp->body + resp->body_size, TURBINE_ERR_NONE};
    if (api != TURBINE_API_HANDSHAKE && resp->error != TURBINE_ERR_NONE)
        return resp->error;
    return TURBINE_ERR_NONE;
}

/* The body ends where its last array does: trailing bytes are MALFORMED. */
static enum turbine_error rd_finish(const struct rd *r)
{
    if (r->err != TURBINE_ERR_NONE)
        return r->err;
    return r->p == r->end ? TURBINE_ERR_NONE : TURBINE_ERR_MALFORMED;
}

#define START(call)                                                                                \
    do {                                                                                           \
        memset(out, 0, sizeof(*out));                                                              \
        enum turbine_error e_ = (call);                                                            \
        if (e_ != TURBINE_ERR_NONE)                                                                \
            return e_;                                                                             \
    } while (0)

enum turbine_error turbine_handshake_request_decode(const struct turbine_request *req,
                                                    struct turbine_handshake_request *out)
{
    struct rd r;
    START(req_start(req, TURBINE_API_HANDSHAKE, &r));
    rd_str(&r, &out->client_id, &out->client_id_size);
    rd_array(&r, K_API, &out->api_count, &out->apis);
    return rd_finish(&r);
}

enum turbine_error turbine_handshake_response_decode(const struct turbine_response *resp,
                                                     struct turbine_handshake_response *out)
{
    struct rd r;
    START(resp_start(resp, TURBINE_API_HANDSHAKE, &r));
    out->max_frame_bytes = rd_u32(&r);
    out->node_id = rd_i32(&r);
    rd_array(&r, K_API, &out->api_count, &out->apis);
    return rd_finish(&r);
}

enum turbine_error turbine_metadata_request_decode(const struct turbine_request *req,
                                                   struct turbine_metadata_request *out)
{
    struct rd r;
    START(req_start(req, TURBINE_API_METADATA, &r));
    rd_array(&r, K_NAME, &out->topic_count, &out->topics);
    return rd_finish(&r);
}

enum turbine_error turbine_metadata_response_decode(const struct turbine_response *resp,
                                                    struct turbine_metadata_response *out)
{
    struct rd r;
    START(resp_start(resp, TURBINE_API_METADATA, &r));
    out->node_id = rd_i32(&r);
    rd_str(&r, &out->host, &out->host_size);
    out->port = rd_u16(&r);
    rd_array(&r, K_METADATA_TOPIC, &out->topic_count, &out->topics);
    return rd_finish(&r);
}

enum turbine_error turbine_create_topics_request_decode(const struct turbine_request *req,
                                                        struct turbine_create_topics_request *out)
{
    struct rd r;
    START(req_start(req, TURBINE_API_CREATE_TOPICS, &r));
    out->timeout_ms = rd_i32(&r);
    rd_array(&r, K_CREATE_TOPIC, &out->topic_count, &out->topics);
    return rd_finish(&r);
}

enum turbine_error turbine_delete_topics_request_decode(const struct turbine_request *req,
                                                        struct turbine_delete_topics_request *out)
{
    struct rd r;
    START(req_start(req, TURBINE_API_DELETE_TOPICS, &r));
    out->timeout_ms = rd_i32(&r);
    rd_array(&r, K_NAME, &out->topic_count, &out->topics);
    return rd_finish(&r);
}

enum turbine_error turbine_topics_response_decode(const struct turbine_response *resp,
                                                  struct turbine_topics_response *out)
{
    TURBINE_ASSERT(resp->api_key == TURBINE_API_CREATE_TOPICS ||
                   resp->api_key == TURBINE_API_DELETE_TOPICS);
    struct rd r;
    START(resp_start(resp, resp->api_key, &r));
    rd_array(&r, K_TOPIC_RESULT, &out->topic_count, &out->topics);
    return rd_finish(&r);
}

enum turbine_error
turbine_describe_topics_request_decode(const struct turbine_request *req,
                                       struct turbine_describe_topics_request *out)
{
    struct rd r;
    START(req_start(req, TURBINE_API_DESCRIBE_TOPICS, &r));
    rd_array(&r, K_NAME, &out->topic_count, &out->topics);
    return rd_finish(&r);
}

enum turbine_error
turbine_describe_topics_response_decode(const struct turbine_response *resp,
                                        struct turbine_describe_topics_response *out)
{
    struct rd r;
    START(resp_start(resp, TURBINE_API_DESCRIBE_TOPICS, &r));
    rd_array(&r, K_DESCRIBE_TOPIC, &out->topic_count, &out->topics);
    return rd_finish(&r);
}

enum turbine_error turbine_produce_request_decode(const struct turbine_request *req,
                                                  struct turbine_produce_request *out)
{
    struct rd r;
    START(req_start(req, TURBINE_API_PRODUCE, &r));
    out->acks = rd_i16(&r);
    out->timeout_ms = rd_i32(&r);
    rd_array(&r, K_TOPIC_PRODUCE, &out->topic_count, &out->topics);
    return rd_finish(&r);
}

enum turbine_error turbine_produce_response_decode(const struct turbine_response *resp,
                                                   struct turbine_produce_response *out)
{
    struct rd r;
    START(resp_start(resp, TURBINE_API_PRODUCE, &r));
    rd_array(&r, K_TOPIC_PRODUCE_RESULT, &out->topic_count, &out->topics);
    return rd_finish(&r);
}

enum turbine_error turbine_fetch_request_decode(const struct turbine_request *req,
                                                struct turbine_fetch_request *out)
{
    struct rd r;
    START(req_start(req, TURBINE_API_FETCH, &r));
    out->max_wait_ms = rd_i32(&r);
    out->min_bytes = rd_i32(&r);
    out->max_bytes = rd_i32(&r);
    rd_array(&r, K_TOPIC_FETCH, &out->topic_count, &out->topics);
    return rd_finish(&r);
}

enum turbine_error turbine_fetch_response_decode(const struct turbine_response *resp,
                                                 struct turbine_fetch_response *out)
{
    struct rd r;
    START(resp_start(resp, TURBINE_API_FETCH, &r));
    rd_array(&r, K_TOPIC_FETCH_RESULT, &out->topic_count, &out->topics);
    return rd_finish(&r);
}

enum turbine_error turbine_list_offsets_request_decode(const struct turbine_request *req,
                                                       struct turbine_list_offsets_request *out)
{
    struct rd r;
    START(req_start(req, TURBINE_API_LIST_OFFSETS, &r));
    rd_array(&r, K_TOPIC_LIST_OFFSETS, &out->topic_count, &out->topics);
    return rd_finish(&r);
}

enum turbine_error turbine_list_offsets_response_decode(const struct turbine_response *resp,
                                                        struct turbine_list_offsets_response *out)
{
    struct rd r;
    START(resp_start(resp, TURBINE_API_LIST_OFFSETS, &r));
    rd_array(&r, K_TOPIC_LIST_OFFSETS_RESULT, &out->topic_count, &out->topics);
    return rd_finish(&r);
}

enum turbine_error turbine_offset_commit_request_decode(const struct turbine_request *req,
                                                        struct turbine_offset_commit_request *out)
{
    struct rd r;
    START(req_start(req, TURBINE_API_OFFSET_COMMIT, &r));
    rd_str(&r, &out->group, &out->group_size);
    rd_array(&r, K_TOPIC_COMMIT, &out->topic_count, &out->topics);
    return rd_finish(&r);
}

enum turbine_error turbine_offset_fetch_request_decode(const struct turbine_request *req,
                                                       struct turbine_offset_fetch_request *out)
{
    struct rd r;
    START(req_start(req, TURBINE_API_OFFSET_FETCH, &r));
    rd_str(&r, &out->group, &out->group_size);
    rd_array(&r, K_TOPIC_OFFSET_FETCH, &out->topic_count, &out->topics);
    return rd_finish(&r);
}

enum turbine_error turbine_offsets_response_decode(const struct turbine_response *resp,
                                                   struct turbine_offsets_response *out)
{
    TURBINE_ASSERT(resp->api_key == TURBINE_API_OFFSET_COMMIT ||
                   resp->api_key == TURBINE_API_OFFSET_FETCH);
    uint16_t kind = resp->api_key == TURBINE_API_OFFSET_COMMIT ? K_TOPIC_COMMIT_RESULT
                                                               : K_TOPIC_OFFSET_FETCH_RESULT;
    struct rd r;
    START(resp_start(resp, resp->api_key, &r));
    rd_array(&r, kind, &out->topic_count, &out->topics);
    return rd_finish(&r);
}

/* ---- encoders ----------------------------------------------------------------------------- */

static void level_push(struct turbine_proto_writer *w, uint16_t kind, uint32_t count)
{
    TURBINE_ASSERT(w->depth < sizeof(w->levels) / sizeof(w->levels[0]));
    w->levels[w->depth].kind = kind;
    w->levels[w->depth].remaining = count;
    w->depth++;
}

/* Pops the arrays that are complete; returns the kind the writer expects next (K_NONE when
 * the frame is complete). */
static uint16_t level_expect(struct turbine_proto_writer *w)
{
    while (w->depth > 0 && w->levels[w->depth - 1].remaining == 0)
        w->depth--;
    return w->depth > 0 ? w->levels[w->depth - 1].kind : K_NONE;
}

/* Writes one element of the array the writer expects; an element with a nested array opens
 * it with the count the element carries (`child_count`). */
static void add(struct turbine_proto_writer *w, uint16_t kind, const void *in, uint32_t child_count)
{
    TURBINE_ASSERT(w->in_frame && w->external_due == 0);
    uint16_t expected = level_expect(w);
    TURBINE_ASSERT(expected == kind); /* an add out of order, or more than the count said */
    w->levels[w->depth - 1].remaining--;
    size_t before = w->used;
    kinds[kind].write(w, in);
    /* Fixed-size elements are exactly the size the decoder's count check assumes. */
    TURBINE_ASSERT(!kinds[kind].fixed || w->used - before == kinds[kind].min_size);
    if (kinds[kind].child != K_NONE)
        level_push(w, kinds[kind].child, child_count);
}

static void request_begin(struct turbine_proto_writer *w, uint16_t api, uint32_t corr)
{
    TURBINE_ASSERT(!w->in_frame && w->external_due == 0);
    TURBINE_ASSERT(api < TURBINE_API_COUNT);
    w->in_frame = true;
    w->frame_start = w->used;
    w->frame_external = 0;
    w->depth = 0;
    wr_u32(w, 0); /* frame_bytes, written by turbine_proto_frame_end() */
    wr_u16(w, api);
    wr_u16(w, versions[api].max_version);
    wr_u32(w, corr);
    wr_u16(w, 0);
    TURBINE_ASSERT(w->used - w->frame_start == TURBINE_PROTO_REQ_HEADER_SIZE);
}

static void response_begin(struct turbine_proto_writer *w, uint16_t api, uint32_t corr,
                           enum turbine_error error)
{
    TURBINE_ASSERT(!w->in_frame && w->external_due == 0);
    TURBINE_ASSERT(error <= TURBINE_ERR_MAX);
    w->in_frame = true;
    w->frame_start = w->used;
    w->frame_external = 0;
    w->depth = 0;
    wr_u32(w, 0);
    wr_u32(w, corr);
    wr_u16(w, api);
    wr_u16(w, (uint16_t)error);
    TURBINE_ASSERT(w->used - w->frame_start == TURBINE_PROTO_RESP_HEADER_SIZE);
}

int64_t turbine_proto_frame_end(struct turbine_proto_writer *w)
{
    TURBINE_ASSERT(w->in_frame);
    TURBINE_ASSERT(w->external_due == 0);      /* every promised record byte was supplied */
    TURBINE_ASSERT(level_expect(w) == K_NONE); /* every array got its count of elements */
    close_segment(w);
    w->in_frame = false;
    uint64_t size = (uint64_t)(w->used - w->frame_start) + w->frame_external;
    if (size - TURBINE_PROTO_PREFIX_SIZE > UINT32_MAX)
        wr_fail(w, -EMSGSIZE);
    if (w->error != 0)
        return w->error;
    TURBINE_ASSERT(w->frame_start + TURBINE_PROTO_PREFIX_SIZE <= w->capacity);
    put_be32(w->buffer + w->frame_start, (uint32_t)(size - TURBINE_PROTO_PREFIX_SIZE));
    return (int64_t)size;
}

int64_t turbine_error_response_encode(struct turbine_proto_writer *w, uint32_t correlation_id,
                                      uint16_t api_key, enum turbine_error error)
{
    TURBINE_ASSERT(error != TURBINE_ERR_NONE);
    response_begin(w, api_key, correlation_id, error);
    return turbine_proto_frame_end(w);
}

void turbine_handshake_request_begin(struct turbine_proto_writer *w, uint32_t corr,
                                     const struct turbine_handshake_request *head)
{
    request_begin(w, TURBINE_API_HANDSHAKE, corr);
    wr_str(w, head->client_id, head->client_id_size);
    wr_u32(w, head->api_count);
    level_push(w, K_API, head->api_count);
}

void turbine_handshake_response_begin(struct turbine_proto_writer *w, uint32_t corr,
                                      enum turbine_error error,
                                      const struct turbine_handshake_response *head)
{
    response_begin(w, TURBINE_API_HANDSHAKE, corr, error);
    wr_u32(w, head->max_frame_bytes);
    wr_u32(w, (uint32_t)head->node_id);
    wr_u32(w, head->api_count);
    level_push(w, K_API, head->api_count);
}

void turbine_metadata_request_begin(struct turbine_proto_writer *w, uint32_t corr,
                                    const struct turbine_metadata_request *head)
{
    request_begin(w, TURBINE_API_METADATA, corr);
    wr_u32(w, head->topic_count);
    level_push(w, K_NAME, head->topic_count);
}

void turbine_metadata_response_begin(struct turbine_proto_writer *w, uint32_t corr,
                                     const struct turbine_metadata_response *head)
{
    response_begin(w, TURBINE_API_METADATA, corr, TURBINE_ERR_NONE);
    wr_u32(w, (uint32_t)head->node_id);
    wr_str(w, head->host, head->host_size);
    wr_u16(w, head->port);
    wr_u32(w, head->topic_count);
    level_push(w, K_METADATA_TOPIC, head->topic_count);
}

void turbine_create_topics_request_begin(struct turbine_proto_writer *w, uint32_t corr,
                                         const struct turbine_create_topics_request *head)
{
    request_begin(w, TURBINE_API_CREATE_TOPICS, corr);
    wr_u32(w, (uint32_t)head->timeout_ms);
    wr_u32(w, head->topic_count);
    level_push(w, K_CREATE_TOPIC, head->topic_count);
}

void turbine_delete_topics_request_begin(struct turbine_proto_writer *w, uint32_t corr,
                                         const struct turbine_delete_topics_request *head)
{
    request_begin(w, TURBINE_API_DELETE_TOPICS, corr);
    wr_u32(w, (uint32_t)head->timeout_ms);
    wr_u32(w, head->topic_count);
    level_push(w, K_NAME, head->topic_count);
}

void turbine_topics_response_begin(struct turbine_proto_writer *w, uint32_t corr, uint16_t api_key,
                                   const struct turbine_topics_response *head)
{
    TURBINE_ASSERT(api_key == TURBINE_API_CREATE_TOPICS || api_key == TURBINE_API_DELETE_TOPICS);
    response_begin(w, api_key, corr, TURBINE_ERR_NONE);
    wr_u32(w, head->topic_count);
    level_push(w, K_TOPIC_RESULT, head->topic_count);
}

void turbine_describe_topics_request_begin(struct turbine_proto_writer *w, uint32_t corr,
                                           const struct turbine_describe_topics_request *head)
{
    request_begin(w, TURBINE_API_DESCRIBE_TOPICS, corr);
    wr_u32(w, head->topic_count);
    level_push(w, K_NAME, head->topic_count);
}

void turbine_describe_topics_response_begin(struct turbine_proto_writer *w, uint32_t corr,
                                            const struct turbine_describe_topics_response *head)
{
    response_begin(w, TURBINE_API_DESCRIBE_TOPICS, corr, TURBINE_ERR_NONE);
    wr_u32(w, head->topic_count);
    level_push(w, K_DESCRIBE_TOPIC, head->topic_count);
}

void turbine_produce_request_begin(struct turbine_proto_writer *w, uint32_t corr,
                                   const struct turbine_produce_request *head)
{
    request_begin(w, TURBINE_API_PRODUCE, corr);
    wr_u16(w, (uint16_t)head->acks);
    wr_u32(w, (uint32_t)head->timeout_ms);
    wr_u32(w, head->topic_count);
    level_push(w, K_TOPIC_PRODUCE, head->topic_count);
}

void turbine_produce_response_begin(struct turbine_proto_writer *w, uint32_t corr,
                                    const struct turbine_produce_response *head)
{
    response_begin(w, TURBINE_API_PRODUCE, corr, TURBINE_ERR_NONE);
    wr_u32(w, head->topic_count);
    level_push(w, K_TOPIC_PRODUCE_RESULT, head->topic_count);
}

void turbine_fetch_request_begin(struct turbine_proto_writer *w, uint32_t corr,
                                 const struct turbine_fetch_request *head)
{
    request_begin(w, TURBINE_API_FETCH, corr);
    wr_u32(w, (uint32_t)head->max_wait_ms);
    wr_u32(w, (uint32_t)head->min_bytes);
    wr_u32(w, (uint32_t)head->max_bytes);
    wr_u32(w, head->topic_count);
    level_push(w, K_TOPIC_FETCH, head->topic_count);
}

void turbine_fetch_response_begin(struct turbine_proto_writer *w, uint32_t corr,
                                  const struct turbine_fetch_response *head)
{
    response_begin(w, TURBINE_API_FETCH, corr, TURBINE_ERR_NONE);
    wr_u32(w, head->topic_count);
    level_push(w, K_TOPIC_FETCH_RESULT, head->topic_count);
}

void turbine_list_offsets_request_begin(struct turbine_proto_writer *w, uint32_t corr,
                                        const struct turbine_list_offsets_request *head)
{
    request_begin(w, TURBINE_API_LIST_OFFSETS, corr);
    wr_u32(w, head->topic_count);
    level_push(w, K_TOPIC_LIST_OFFSETS, head->topic_count);
}

void turbine_list_offsets_response_begin(struct turbine_proto_writer *w, uint32_t corr,
                                         const struct turbine_list_offsets_response *head)
{
    response_begin(w, TURBINE_API_LIST_OFFSETS, corr, TURBINE_ERR_NONE);
    wr_u32(w, head->topic_count);
    level_push(w, K_TOPIC_LIST_OFFSETS_RESULT, head->topic_count);
}

void turbine_offset_commit_request_begin(struct turbine_proto_writer *w, uint32_t corr,
                                         const struct turbine_offset_commit_request *head)
{
    request_begin(w, TURBINE_API_OFFSET_COMMIT, corr);
    wr_str(w, head->group, head->group_size);
    wr_u32(w, head->topic_count);
    level_push(w, K_TOPIC_COMMIT, head->topic_count);
}

void turbine_offset_fetch_request_begin(struct turbine_proto_writer *w, uint32_t corr,
                                        const struct turbine_offset_fetch_request *head)
{
    request_begin(w, TURBINE_API_OFFSET_FETCH, corr);
    wr_str(w, head->group, head->group_size);
    wr_u32(w, head->topic_count);
    level_push(w, K_TOPIC_OFFSET_FETCH, head->topic_count);
}

void turbine_offsets_response_begin(struct turbine_proto_writer *w, uint32_t corr, uint16_t api_key,
                                    const struct turbine_offsets_response *head)
{
    TURBINE_ASSERT(api_key == TURBINE_API_OFFSET_COMMIT || api_key == TURBINE_API_OFFSET_FETCH);
    response_begin(w, api_key, corr, TURBINE_ERR_NONE);
    wr_u32(w, head->topic_count);
    level_push(w,
               api_key == TURBINE_API_OFFSET_COMMIT ? K_TOPIC_COMMIT_RESULT
                                                    : K_TOPIC_OFFSET_FETCH_RESULT,
               head->topic_count);
}

void turbine_proto_add_name(struct turbine_proto_writer *w, const char *name, size_t name_size)
{
    struct turbine_proto_name n = {name, (uint16_t)name_size};
    if (name_size > UINT16_MAX)
        wr_fail(w, -EINVAL);
    add(w, K_NAME, &n, 0);
}

void turbine_proto_add_topic(struct turbine_proto_writer *w, const char *name, size_t name_size,
                             uint32_t partition_count)
{
    uint16_t kind = level_expect(w);
    TURBINE_ASSERT(kind_is_topic(kind));
    struct turbine_proto_topic t = {name, (uint16_t)name_size, partition_count, {0}};
    if (name_size > UINT16_MAX)
        wr_fail(w, -EINVAL);
    add(w, kind, &t, partition_count);
}

#define ADD_FN(fn, type, kind, child_count)                                                        \
    void fn(struct turbine_proto_writer *w, const type *in)                                        \
    {                                                                                              \
        add(w, kind, in, child_count);                                                             \
    }

ADD_FN(turbine_handshake_add_api, struct turbine_api_versions, K_API, 0)
ADD_FN(turbine_metadata_add_topic, struct turbine_metadata_topic, K_METADATA_TOPIC,
       in->partition_count)
ADD_FN(turbine_metadata_add_partition, struct turbine_metadata_partition, K_METADATA_PARTITION, 0)
ADD_FN(turbine_create_topics_add_topic, struct turbine_create_topic, K_CREATE_TOPIC, 0)
ADD_FN(turbine_topics_add_result, struct turbine_topic_result, K_TOPIC_RESULT, 0)
ADD_FN(turbine_describe_add_topic, struct turbine_describe_topic, K_DESCRIBE_TOPIC,
       in->partition_count)
ADD_FN(turbine_describe_add_partition, struct turbine_describe_partition, K_DESCRIBE_PARTITION, 0)
ADD_FN(turbine_produce_add_partition, struct turbine_produce_partition, K_PRODUCE_PARTITION, 0)
ADD_FN(turbine_produce_add_result, struct turbine_produce_result, K_PRODUCE_RESULT, 0)
ADD_FN(turbine_fetch_add_partition, struct turbine_fetch_partition, K_FETCH_PARTITION, 0)
ADD_FN(turbine_fetch_add_result, struct turbine_fetch_result, K_FETCH_RESULT, 0)
ADD_FN(turbine_list_offsets_add_partition, struct turbine_list_offsets_partition,
       K_LIST_OFFSETS_PARTITION, 0)
ADD_FN(turbine_list_offsets_add_result, struct turbine_list_offsets_result, K_LIST_OFFSETS_RESULT,
       0)
ADD_FN(turbine_offset_commit_add_partition, struct turbine_offset_commit_partition,
       K_COMMIT_PARTITION, 0)
ADD_FN(turbine_offset_commit_add_result, struct turbine_offset_commit_result, K_COMMIT_RESULT, 0)
ADD_FN(turbine_offset_fetch_add_partition, struct turbine_offset_fetch_partition,
       K_OFFSET_FETCH_PARTITION, 0)
ADD_FN(turbine_offset_fetch_add_result, struct turbine_offset_fetch_result, K_OFFSET_FETCH_RESULT,
       0)
