/* SPDX-License-Identifier: MIT
 * proto_fuzz.c - libFuzzer target for the native protocol: the frame-prefix check, the
 * request and response parsers and every body decoder, with every iterator walked.
 *
 * Each input goes through as it is and with its length prefix repaired to the input's size
 * (random bytes almost never carry the right prefix, so without the repair the body decoders
 * would go unexercised), once as a request and once as a response. Whatever decodes is encoded
 * again from the decoded views: the encoding is canonical (fixed-width fields, no varints), so
 * the result must be the input byte for byte. make fuzz builds it with clang into
 * build/fuzz/proto_fuzz; make test replays fuzz_corpus/proto/ through it (proto_fuzz_test).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "turbine/protocol.h"

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "proto_fuzz: %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static struct turbine_proto_writer w;

/* An iterator walked to its end must have returned every element without error. */
#define WALKED(it) FUZZ_CHECK((it).remaining == 0 && (it).error == TURBINE_ERR_NONE)

static void names(struct turbine_proto_iter it)
{
    struct turbine_proto_name n;
    while (turbine_proto_next_name(&it, &n)) {
        FUZZ_CHECK(turbine_topic_name_valid(n.name, n.name_size));
        turbine_proto_add_name(&w, n.name, n.name_size);
    }
    WALKED(it);
}

static void apis(struct turbine_proto_iter it)
{
    struct turbine_api_versions a;
    while (turbine_handshake_next_api(&it, &a))
        turbine_handshake_add_api(&w, &a);
    WALKED(it);
}

/* The partitions of one topic, for each nested kind. */
#define PARTS(fn, type, next, add)                                                                 \
    static void fn(struct turbine_proto_iter *it)                                                  \
    {                                                                                              \
        type p;                                                                                    \
        while (next(it, &p))                                                                       \
            add(&w, &p);                                                                           \
        WALKED(*it);                                                                               \
    }
PARTS(produce_parts, struct turbine_produce_partition, turbine_produce_next_partition,
      turbine_produce_add_partition)
PARTS(produce_results, struct turbine_produce_result, turbine_produce_next_result,
      turbine_produce_add_result)
PARTS(fetch_parts, struct turbine_fetch_partition, turbine_fetch_next_partition,
      turbine_fetch_add_partition)
PARTS(fetch_results, struct turbine_fetch_result, turbine_fetch_next_result,
      turbine_fetch_add_result)
PARTS(list_parts, struct turbine_list_offsets_partition, turbine_list_offsets_next_partition,
      turbine_list_offsets_add_partition)
PARTS(list_results, struct turbine_list_offsets_result, turbine_list_offsets_next_result,
      turbine_list_offsets_add_result)
PARTS(commit_parts, struct turbine_offset_commit_partition, turbine_offset_commit_next_partition,
      turbine_offset_commit_add_partition)
PARTS(commit_results, struct turbine_offset_commit_result, turbine_offset_commit_next_result,
      turbine_offset_commit_add_result)
PARTS(ofetch_parts, struct turbine_offset_fetch_partition, turbine_offset_fetch_next_partition,
      turbine_offset_fetch_add_partition)
PARTS(ofetch_results, struct turbine_offset_fetch_result, turbine_offset_fetch_next_result,
      turbine_offset_fetch_add_result)
PARTS(metadata_parts, struct turbine_metadata_partition, turbine_metadata_next_partition,
      turbine_metadata_add_partition)
PARTS(describe_parts, struct turbine_describe_partition, turbine_describe_next_partition,
      turbine_describe_add_partition)

static void topics(struct turbine_proto_iter it, void (*parts)(struct turbine_proto_iter *))
{
    struct turbine_proto_topic t;
    while (turbine_proto_next_topic(&it, &t)) {
        FUZZ_CHECK(turbine_topic_name_valid(t.name, t.name_size));
        FUZZ_CHECK(t.partitions.remaining == t.partition_count);
        turbine_proto_add_topic(&w, t.name, t.name_size, t.partition_count);
        parts(&t.partitions);
    }
    WALKED(it);
}

/* Decodes a request and encodes it again into w; false when it does not decode. */
static bool request_again(const struct turbine_request *req)
{
    uint32_t corr = req->header.correlation_id;
    switch (req->header.api_key) {
    case TURBINE_API_HANDSHAKE: {
        struct turbine_handshake_request r;
        if (turbine_handshake_request_decode(req, &r) != TURBINE_ERR_NONE)
            return false;
        turbine_handshake_request_begin(&w, corr, &r);
        apis(r.apis);
        return true;
    }
    case TURBINE_API_METADATA: {
        struct turbine_metadata_request r;
        if (turbine_metadata_request_decode(req, &r) != TURBINE_ERR_NONE)
            return false;
        turbine_metadata_request_begin(&w, corr, &r);
        names(r.topics);
        return true;
    }
    case TURBINE_API_CREATE_TOPICS: {
        struct turbine_create_topics_request r;
        struct turbine_create_topic t;
        if (turbine_create_topics_request_decode(req, &r) != TURBINE_ERR_NONE)
            return false;
        turbine_create_topics_request_begin(&w, corr, &r);
        while (turbine_create_topics_next_topic(&r.topics, &t))
            turbine_create_topics_add_topic(&w, &t);
        WALKED(r.topics);
        return true;
    }
    case TURBINE_API_DELETE_TOPICS: {
        struct turbine_delete_topics_request r;
        if (turbine_delete_topics_request_decode(req, &r) != TURBINE_ERR_NONE)
            return false;
        turbine_delete_topics_request_begin(&w, corr, &r);
        names(r.topics);
        return true;
    }
    case TURBINE_API_DESCRIBE_TOPICS: {
        struct turbine_describe_topics_request r;
        if (turbine_describe_topics_request_decode(req, &r) != TURBINE_ERR_NONE)
            return false;
        turbine_describe_topics_request_begin(&w, corr, &r);
        names(r.topics);
        return true;
    }
    case TURBINE_API_PRODUCE: {
        struct turbine_produce_request r;
        if (turbine_produce_request_decode(req, &r) != TURBINE_ERR_NONE)
            return false;
        turbine_produce_request_begin(&w, corr, &r);
        topics(r.topics, produce_parts);
        return true;
    }
    case TURBINE_API_FETCH: {
        struct turbine_fetch_request r;
        if (turbine_fetch_request_decode(req, &r) != TURBINE_ERR_NONE)
            return false;
        turbine_fetch_request_begin(&w, corr, &r);
        topics(r.topics, fetch_parts);
        return true;
    }
    case TURBINE_API_LIST_OFFSETS: {
        struct turbine_list_offsets_request r;
        if (turbine_list_offsets_request_decode(req, &r) != TURBINE_ERR_NONE)
            return false;
        turbine_list_offsets_request_begin(&w, corr, &r);
        topics(r.topics, list_parts);
        return true;
    }
    case TURBINE_API_OFFSET_COMMIT: {
        struct turbine_offset_commit_request r;
        if (turbine_offset_commit_request_decode(req, &r) != TURBINE_ERR_NONE)
            return false;
        turbine_offset_commit_request_begin(&w, corr, &r);
        topics(r.topics, commit_parts);
        return true;
    }
    case TURBINE_API_OFFSET_FETCH: {
        struct turbine_offset_fetch_request r;
        if (turbine_offset_fetch_request_decode(req, &r) != TURBINE_ERR_NONE)
            return false;
        turbine_offset_fetch_request_begin(&w, corr, &r);
        topics(r.topics, ofetch_parts);
        return true;
    }
    }
    FUZZ_CHECK(!"request_parse passed an unknown API");
    return false;
}

static bool response_topics_again(const struct turbine_response *resp)
{
    uint32_t corr = resp->correlation_id;
    switch (resp->api_key) {
    case TURBINE_API_PRODUCE: {
        struct turbine_produce_response r;
        if (turbine_produce_response_decode(resp, &r) != TURBINE_ERR_NONE)
            return false;
        turbine_produce_response_begin(&w, corr, &r);
        topics(r.topics, produce_results);
        return true;
    }
    case TURBINE_API_FETCH: {
        struct turbine_fetch_response r;
        if (turbine_fetch_response_decode(resp, &r) != TURBINE_ERR_NONE)
            return false;
        turbine_fetch_response_begin(&w, corr, &r);
        topics(r.topics, fetch_results);
        return true;
    }
    case TURBINE_API_LIST_OFFSETS: {
        struct turbine_list_offsets_response r;
        if (turbine_list_offsets_response_decode(resp, &r) != TURBINE_ERR_NONE)
            return false;
        turbine_list_offsets_response_begin(&w, corr, &r);
        topics(r.topics, list_results);
        return true;
    }
    case TURBINE_API_OFFSET_COMMIT:
    case TURBINE_API_OFFSET_FETCH: {
        struct turbine_offsets_response r;
        if (turbine_offsets_response_decode(resp, &r) != TURBINE_ERR_NONE)
            return false;
        turbine_offsets_response_begin(&w, corr, resp->api_key, &r);
        topics(r.topics,
               resp->api_key == TURBINE_API_OFFSET_COMMIT ? commit_results : ofetch_results);
        return true;
    }
    }
    return false;
}

/* Decodes a response with no error (HANDSHAKE: any) and encodes it again into w. */
static bool response_again(const struct turbine_response *resp)
{
    uint32_t corr = resp->correlation_id;
    switch (resp->api_key) {
    case TURBINE_API_HANDSHAKE: {
        struct turbine_handshake_response r;
        if (turbine_handshake_response_decode(resp, &r) != TURBINE_ERR_NONE)
            return false;
        turbine_handshake_response_begin(&w, corr, resp->error, &r);
        apis(r.apis);
        return true;
    }
    case TURBINE_API_METADATA: {
        struct turbine_metadata_response r;
        struct turbine_metadata_topic t;
        if (turbine_metadata_response_decode(resp, &r) != TURBINE_ERR_NONE)
            return false;
        turbine_metadata_response_begin(&w, corr, &r);
        while (turbine_metadata_next_topic(&r.topics, &t)) {
            turbine_metadata_add_topic(&w, &t);
            metadata_parts(&t.partitions);
        }
        WALKED(r.topics);
        return true;
    }
    case TURBINE_API_CREATE_TOPICS:
    case TURBINE_API_DELETE_TOPICS: {
        struct turbine_topics_response r;
        struct turbine_topic_result t;
        if (turbine_topics_response_decode(resp, &r) != TURBINE_ERR_NONE)
            return false;
        turbine_topics_response_begin(&w, corr, resp->api_key, &r);
        while (turbine_topics_next_result(&r.topics, &t))
            turbine_topics_add_result(&w, &t);
        WALKED(r.topics);
        return true;
    }
    case TURBINE_API_DESCRIBE_TOPICS: {
        struct turbine_describe_topics_response r;
        struct turbine_describe_topic t;
        if (turbine_describe_topics_response_decode(resp, &r) != TURBINE_ERR_NONE)
            return false;
        turbine_describe_topics_response_begin(&w, corr, &r);
        while (turbine_describe_next_topic(&r.topics, &t)) {
            turbine_describe_add_topic(&w, &t);
            describe_parts(&t.partitions);
        }
        WALKED(r.topics);
        return true;
    }
    }
    return response_topics_again(resp);
}

static void check_again(const uint8_t *data, size_t size, uint8_t *out)
{
    int64_t n = turbine_proto_frame_end(&w);
    FUZZ_CHECK(n >= 0 && (size_t)n == size);
    FUZZ_CHECK(memcmp(out, data, size) == 0);
}

static void check_request(const uint8_t *data, size_t size)
{
    struct turbine_request req;
    enum turbine_error e = turbine_request_parse(data, size, &req);
    FUZZ_CHECK(e <= TURBINE_ERR_MAX);
    FUZZ_CHECK(strcmp(turbine_error_name(e), "UNKNOWN_ERROR_CODE") != 0);
    if (e != TURBINE_ERR_NONE)
        return;
    FUZZ_CHECK(req.body_size + 14 == size);
    uint8_t *out = malloc(size);
    FUZZ_CHECK(out != NULL);
    turbine_proto_writer_init(&w, out, size, NULL, 0);
    if (request_again(&req))
        check_again(data, size, out);
    free(out);
}

static void check_response(const uint8_t *data, size_t size)
{
    struct turbine_response resp;
    if (turbine_response_parse(data, size, &resp) != TURBINE_ERR_NONE)
        return;
    FUZZ_CHECK(resp.body_size + 12 == size);
    uint8_t *out = malloc(size);
    FUZZ_CHECK(out != NULL);
    turbine_proto_writer_init(&w, out, size, NULL, 0);
    if (resp.error > TURBINE_ERR_MAX) {
        /* a code this build lacks: still parsed, not re-encoded (the encoder takes the enum) */
    } else if (resp.error != TURBINE_ERR_NONE && resp.api_key != TURBINE_API_HANDSHAKE) {
        FUZZ_CHECK(resp.body_size == 0);
        FUZZ_CHECK(turbine_error_response_encode(&w, resp.correlation_id, resp.api_key,
                                                 resp.error) == (int64_t)size);
        FUZZ_CHECK(memcmp(out, data, size) == 0);
    } else if (resp.api_key < TURBINE_API_COUNT && response_again(&resp)) {
        check_again(data, size, out);
    }
    free(out);
}

static void check_prefix(const uint8_t *data, size_t size)
{
    if (size < 4)
        return;
    const uint32_t maxes[] = {0, 9, 10, 4096, TURBINE_PROTO_FRAME_MAX_DEFAULT, UINT32_MAX};
    for (size_t i = 0; i < sizeof(maxes) / sizeof(maxes[0]); i++) {
        for (int kind = 0; kind < 2; kind++) {
            uint32_t n;
            enum turbine_error e = turbine_frame_prefix(data, maxes[i], kind, &n);
            if (e == TURBINE_ERR_NONE)
                FUZZ_CHECK(n <= maxes[i] && n >= (kind == TURBINE_FRAME_REQUEST ? 10u : 8u));
            else if (e == TURBINE_ERR_FRAME_TOO_LARGE)
                FUZZ_CHECK(n > maxes[i]);
            else
                FUZZ_CHECK(e == TURBINE_ERR_MALFORMED);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_prefix(data, size);
    check_request(data, size);
    check_response(data, size);
    if (size < 4)
        return 0;
    /* The same bytes with the prefix repaired, so mutations reach the bodies. */
    uint8_t *copy = malloc(size);
    FUZZ_CHECK(copy != NULL);
    memcpy(copy, data, size);
    uint32_t n = (uint32_t)(size - 4);
    copy[0] = (uint8_t)(n >> 24);
    copy[1] = (uint8_t)(n >> 16);
    copy[2] = (uint8_t)(n >> 8);
    copy[3] = (uint8_t)n;
    check_request(copy, size);
    check_response(copy, size);
    free(copy);
    return 0;
}

#ifdef TURBINE_FUZZ_REPLAY
#include "fuzz_replay.h"

int main(int argc, char **argv)
{
    return fuzz_replay_main(argc, argv, "turbine/src/proto/fuzz_corpus/proto");
}
#endif
