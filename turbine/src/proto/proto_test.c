/* SPDX-License-Identifier: MIT
 * proto_test.c - the native protocol codec: every API encoded, parsed, decoded and compared;
 * every truncation of every frame rejected; limits, bad counts, bad topic names, handshake
 * negotiation, zero-copy iovecs, the error table.
 *
 * `proto_test --write-corpus DIR` also writes each encoded frame as a fuzz seed
 * (req-API / resp-API); `proto_test --hexdump` prints the produce request of docs/protocol.md.
 */
#include "harness.h"

#include <errno.h>

#include "turbine/batch.h"
#include "turbine/protocol.h"

static const char *write_corpus_dir; /* --write-corpus DIR */
static bool hexdump;                 /* --hexdump */
static uint8_t buf[1 << 16];
static struct turbine_proto_writer w;

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

static bool same(const void *a, size_t a_size, const char *b)
{
    return a_size == strlen(b) && memcmp(a, b, a_size) == 0;
}

static void begin(void)
{
    turbine_proto_writer_init(&w, buf, sizeof(buf), NULL, 0);
}

/* A request frame cut short, with its prefix kept or fixed to the cut: MALFORMED either way
 * (the header parse or the body decoder must notice), never a crash. `decode` runs the API's
 * decoder on a parsed request. */
typedef enum turbine_error (*req_decode_fn)(const struct turbine_request *req);
typedef enum turbine_error (*resp_decode_fn)(const struct turbine_response *resp);

static void check_request_truncations(const uint8_t *frame, size_t size, req_decode_fn decode)
{
    for (size_t cut = 0; cut < size; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1); /* exact size: ASan sees any over-read */
        CHECK(copy != NULL);
        memcpy(copy, frame, cut);
        struct turbine_request req;
        CHECK_EQ(turbine_request_parse(copy, cut, &req), TURBINE_ERR_MALFORMED);
        if (cut >= TURBINE_PROTO_REQ_HEADER_SIZE) {
            copy[0] = (uint8_t)((cut - 4) >> 24);
            copy[1] = (uint8_t)((cut - 4) >> 16);
            copy[2] = (uint8_t)((cut - 4) >> 8);
            copy[3] = (uint8_t)(cut - 4);
            CHECK_EQ(turbine_request_parse(copy, cut, &req), TURBINE_ERR_NONE);
            CHECK_EQ(decode(&req), TURBINE_ERR_MALFORMED);
        }
        free(copy);
    }
}

static void check_response_truncations(const uint8_t *frame, size_t size, resp_decode_fn decode)
{
    for (size_t cut = 0; cut < size; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1);
        CHECK(copy != NULL);
        memcpy(copy, frame, cut);
        struct turbine_response resp;
        CHECK_EQ(turbine_response_parse(copy, cut, &resp), TURBINE_ERR_MALFORMED);
        if (cut >= TURBINE_PROTO_RESP_HEADER_SIZE) {
            copy[0] = (uint8_t)((cut - 4) >> 24);
            copy[1] = (uint8_t)((cut - 4) >> 16);
            copy[2] = (uint8_t)((cut - 4) >> 8);
            copy[3] = (uint8_t)(cut - 4);
            CHECK_EQ(turbine_response_parse(copy, cut, &resp), TURBINE_ERR_NONE);
            CHECK_EQ(decode(&resp), TURBINE_ERR_MALFORMED);
        }
        free(copy);
    }
}

/* Ends the frame, checks it parses as a request of `api` with `corr`, saves it as a seed and
 * checks its truncations. */
static size_t end_request(struct turbine_request *req, uint16_t api, uint32_t corr,
                          const char *name, req_decode_fn decode)
{
    int64_t n = turbine_proto_frame_end(&w);
    CHECK_GT(n, 0);
    CHECK_EQ(n, w.used);
    CHECK_EQ(turbine_request_parse(buf, (size_t)n, req), TURBINE_ERR_NONE);
    CHECK_EQ(req->header.api_key, api);
    CHECK_EQ(req->header.api_version, 0);
    CHECK_EQ(req->header.correlation_id, corr);
    CHECK_EQ(req->header.flags, 0);
    uint32_t frame_bytes;
    CHECK_EQ(turbine_frame_prefix(buf, TURBINE_PROTO_FRAME_MAX_DEFAULT, TURBINE_FRAME_REQUEST,
                                  &frame_bytes),
             TURBINE_ERR_NONE);
    CHECK_EQ(frame_bytes + 4, n);
    corpus_write(name, buf, (size_t)n);
    check_request_truncations(buf, (size_t)n, decode);
    return (size_t)n;
}

static size_t end_response(struct turbine_response *resp, uint16_t api, uint32_t corr,
                           const char *name, resp_decode_fn decode)
{
    int64_t n = turbine_proto_frame_end(&w);
    CHECK_GT(n, 0);
    CHECK_EQ(turbine_response_parse(buf, (size_t)n, resp), TURBINE_ERR_NONE);
    CHECK_EQ(resp->api_key, api);
    CHECK_EQ(resp->correlation_id, corr);
    corpus_write(name, buf, (size_t)n);
    check_response_truncations(buf, (size_t)n, decode);
    return (size_t)n;
}

/* Decoders with the out struct kept here, for the truncation checks. */
#define DEC(name, type, decoder, arg_type)                                                         \
    static type name##_out;                                                                        \
    static enum turbine_error name(const arg_type *x)                                              \
    {                                                                                              \
        return decoder(x, &name##_out);                                                            \
    }
DEC(dec_handshake_req, struct turbine_handshake_request, turbine_handshake_request_decode,
    struct turbine_request)
DEC(dec_handshake_resp, struct turbine_handshake_response, turbine_handshake_response_decode,
    struct turbine_response)
DEC(dec_metadata_req, struct turbine_metadata_request, turbine_metadata_request_decode,
    struct turbine_request)
DEC(dec_metadata_resp, struct turbine_metadata_response, turbine_metadata_response_decode,
    struct turbine_response)
DEC(dec_create_req, struct turbine_create_topics_request, turbine_create_topics_request_decode,
    struct turbine_request)
DEC(dec_delete_req, struct turbine_delete_topics_request, turbine_delete_topics_request_decode,
    struct turbine_request)
DEC(dec_topics_resp, struct turbine_topics_response, turbine_topics_response_decode,
    struct turbine_response)
DEC(dec_describe_req, struct turbine_describe_topics_request,
    turbine_describe_topics_request_decode, struct turbine_request)
DEC(dec_describe_resp, struct turbine_describe_topics_response,
    turbine_describe_topics_response_decode, struct turbine_response)
DEC(dec_produce_req, struct turbine_produce_request, turbine_produce_request_decode,
    struct turbine_request)
DEC(dec_produce_resp, struct turbine_produce_response, turbine_produce_response_decode,
    struct turbine_response)
DEC(dec_fetch_req, struct turbine_fetch_request, turbine_fetch_request_decode,
    struct turbine_request)
DEC(dec_fetch_resp, struct turbine_fetch_response, turbine_fetch_response_decode,
    struct turbine_response)
DEC(dec_list_req, struct turbine_list_offsets_request, turbine_list_offsets_request_decode,
    struct turbine_request)
DEC(dec_list_resp, struct turbine_list_offsets_response, turbine_list_offsets_response_decode,
    struct turbine_response)
DEC(dec_commit_req, struct turbine_offset_commit_request, turbine_offset_commit_request_decode,
    struct turbine_request)
DEC(dec_ofetch_req, struct turbine_offset_fetch_request, turbine_offset_fetch_request_decode,
    struct turbine_request)
DEC(dec_offsets_resp, struct turbine_offsets_response, turbine_offsets_response_decode,
    struct turbine_response)

/* ---- error table, API names, frame prefix -------------------------------------------------- */

static void test_error_table(void)
{
    for (unsigned e = 0; e <= TURBINE_ERR_MAX; e++) {
        const char *name = turbine_error_name(e);
        CHECK(name != NULL && strcmp(name, "UNKNOWN_ERROR_CODE") != 0);
        CHECK(strlen(turbine_error_message(e)) > 0);
        for (unsigned f = 0; f < e; f++)
            CHECK(strcmp(name, turbine_error_name(f)) != 0);
    }
    CHECK_STREQ(turbine_error_name(TURBINE_ERR_MALFORMED), "MALFORMED");
    CHECK_STREQ(turbine_error_name(TURBINE_ERR_MAX + 1), "UNKNOWN_ERROR_CODE");
    CHECK_STREQ(turbine_error_name(65535), "UNKNOWN_ERROR_CODE");
    CHECK(!turbine_error_retriable(TURBINE_ERR_NONE));
    CHECK(!turbine_error_retriable(TURBINE_ERR_MALFORMED));
    CHECK(turbine_error_retriable(TURBINE_ERR_TIMEOUT));
    CHECK(!turbine_error_retriable(TURBINE_ERR_MAX + 1));
    for (unsigned a = 0; a < TURBINE_API_COUNT; a++) {
        CHECK(strcmp(turbine_api_name(a), "UNKNOWN_API") != 0);
        CHECK_EQ(turbine_proto_versions()[a].api_key, a);
    }
    CHECK_STREQ(turbine_api_name(TURBINE_API_PRODUCE), "PRODUCE");
    CHECK_STREQ(turbine_api_name(TURBINE_API_COUNT), "UNKNOWN_API");
}

static void put_prefix(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void test_frame_prefix(void)
{
    uint8_t p[4];
    uint32_t n;
    const uint32_t max = TURBINE_PROTO_FRAME_MAX_DEFAULT;
    put_prefix(p, max);
    CHECK_EQ(turbine_frame_prefix(p, max, TURBINE_FRAME_REQUEST, &n), TURBINE_ERR_NONE);
    CHECK_EQ(n, max);
    put_prefix(p, max + 1);
    CHECK_EQ(turbine_frame_prefix(p, max, TURBINE_FRAME_REQUEST, &n), TURBINE_ERR_FRAME_TOO_LARGE);
    CHECK_EQ(n, max + 1);
    put_prefix(p, UINT32_MAX);
    CHECK_EQ(turbine_frame_prefix(p, max, TURBINE_FRAME_RESPONSE, &n), TURBINE_ERR_FRAME_TOO_LARGE);
    put_prefix(p, 1000);
    CHECK_EQ(turbine_frame_prefix(p, 999, TURBINE_FRAME_REQUEST, &n), TURBINE_ERR_FRAME_TOO_LARGE);
    put_prefix(p, 10);
    CHECK_EQ(turbine_frame_prefix(p, max, TURBINE_FRAME_REQUEST, &n), TURBINE_ERR_NONE);
    put_prefix(p, 9);
    CHECK_EQ(turbine_frame_prefix(p, max, TURBINE_FRAME_REQUEST, &n), TURBINE_ERR_MALFORMED);
    CHECK_EQ(turbine_frame_prefix(p, max, TURBINE_FRAME_RESPONSE, &n), TURBINE_ERR_NONE);
    put_prefix(p, 7);
    CHECK_EQ(turbine_frame_prefix(p, max, TURBINE_FRAME_RESPONSE, &n), TURBINE_ERR_MALFORMED);
    put_prefix(p, 0);
    CHECK_EQ(turbine_frame_prefix(p, max, TURBINE_FRAME_REQUEST, &n), TURBINE_ERR_MALFORMED);
}

/* A hand-made request: header + body bytes. */
static size_t raw_request(uint8_t *out, uint16_t api, uint16_t version, uint16_t flags,
                          const uint8_t *body, size_t body_size)
{
    put_prefix(out, (uint32_t)(10 + body_size));
    out[4] = (uint8_t)(api >> 8);
    out[5] = (uint8_t)api;
    out[6] = (uint8_t)(version >> 8);
    out[7] = (uint8_t)version;
    put_prefix(out + 8, 0xC0FFEE);
    out[12] = (uint8_t)(flags >> 8);
    out[13] = (uint8_t)flags;
    if (body_size > 0)
        memcpy(out + 14, body, body_size);
    return 14 + body_size;
}

static void test_request_header(void)
{
    uint8_t frame[64];
    const uint8_t body[4] = {0, 0, 0, 0}; /* METADATA: no topics */
    struct turbine_request req;
    size_t n = raw_request(frame, TURBINE_API_METADATA, 0, 0, body, 4);
    CHECK_EQ(turbine_request_parse(frame, n, &req), TURBINE_ERR_NONE);
    CHECK_EQ(dec_metadata_req(&req), TURBINE_ERR_NONE);
    CHECK_EQ(dec_metadata_req_out.topic_count, 0);
    n = raw_request(frame, 77, 0, 0, body, 4);
    CHECK_EQ(turbine_request_parse(frame, n, &req), TURBINE_ERR_UNKNOWN_API);
    CHECK_EQ(req.header.correlation_id, 0xC0FFEE); /* answerable */
    CHECK_EQ(req.header.api_key, 77);
    n = raw_request(frame, TURBINE_API_FETCH, 1, 0, body, 4);
    CHECK_EQ(turbine_request_parse(frame, n, &req), TURBINE_ERR_UNSUPPORTED_VERSION);
    CHECK_EQ(req.header.correlation_id, 0xC0FFEE);
    n = raw_request(frame, TURBINE_API_METADATA, 0, 1, body, 4);
    CHECK_EQ(turbine_request_parse(frame, n, &req), TURBINE_ERR_MALFORMED);
    n = raw_request(frame, TURBINE_API_METADATA, 0, 0, body, 4);
    CHECK_EQ(turbine_request_parse(frame, n + 1, &req), TURBINE_ERR_MALFORMED); /* size != */
}

/* ---- bad counts and names ----------------------------------------------------------------- */

static enum turbine_error metadata_body(const uint8_t *body, size_t size)
{
    static uint8_t frame[1024];
    struct turbine_request req;
    size_t n = raw_request(frame, TURBINE_API_METADATA, 0, 0, body, size);
    CHECK_EQ(turbine_request_parse(frame, n, &req), TURBINE_ERR_NONE);
    return dec_metadata_req(&req);
}

static void test_bad_counts(void)
{
    const uint8_t huge[] = {0xff, 0xff, 0xff, 0xff, 0, 1, 'a'};
    CHECK_EQ(metadata_body(huge, sizeof(huge)), TURBINE_ERR_MALFORMED);
    const uint8_t two_for_one[] = {0, 0, 0, 2, 0, 1, 'a'};
    CHECK_EQ(metadata_body(two_for_one, sizeof(two_for_one)), TURBINE_ERR_MALFORMED);
    const uint8_t trailing[] = {0, 0, 0, 1, 0, 1, 'a', 0};
    CHECK_EQ(metadata_body(trailing, sizeof(trailing)), TURBINE_ERR_MALFORMED);
    const uint8_t long_string[] = {0, 0, 0, 1, 0, 9, 'a'};
    CHECK_EQ(metadata_body(long_string, sizeof(long_string)), TURBINE_ERR_MALFORMED);
    const uint8_t ok[] = {0, 0, 0, 1, 0, 1, 'a'};
    CHECK_EQ(metadata_body(ok, sizeof(ok)), TURBINE_ERR_NONE);
    CHECK_EQ(metadata_body(NULL, 0), TURBINE_ERR_MALFORMED);

    /* A produce request whose partition count cannot fit: refused before any walk. */
    uint8_t body[64] = {0, 1, 0, 0, 0, 10, 0, 0, 0, 1, 0, 1, 't', 0x7f, 0xff, 0xff, 0xff};
    uint8_t frame[128];
    struct turbine_request req;
    size_t n = raw_request(frame, TURBINE_API_PRODUCE, 0, 0, body, 17);
    CHECK_EQ(turbine_request_parse(frame, n, &req), TURBINE_ERR_NONE);
    CHECK_EQ(dec_produce_req(&req), TURBINE_ERR_MALFORMED);
    /* Records longer than the frame. */
    const uint8_t tail[] = {0, 0, 0, 1, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xf0, 1, 2};
    memcpy(body + 13, tail, sizeof(tail));
    n = raw_request(frame, TURBINE_API_PRODUCE, 0, 0, body, 13 + sizeof(tail));
    CHECK_EQ(turbine_request_parse(frame, n, &req), TURBINE_ERR_NONE);
    CHECK_EQ(dec_produce_req(&req), TURBINE_ERR_MALFORMED);
}

static void test_topic_names(void)
{
    static char long_name[TURBINE_TOPIC_NAME_MAX + 1];
    memset(long_name, 'x', sizeof(long_name));
    CHECK(turbine_topic_name_valid(long_name, TURBINE_TOPIC_NAME_MAX));
    CHECK(!turbine_topic_name_valid(long_name, TURBINE_TOPIC_NAME_MAX + 1));
    CHECK(turbine_topic_name_valid("a.b_c-D9", 8));
    CHECK(turbine_topic_name_valid("...", 3));
    const char *bad[] = {"", ".", "..", "a b", "a/b", "t\xc3\xa9", "a\0b", "x:y"};
    size_t bad_sizes[] = {0, 1, 2, 3, 3, 3, 3, 3};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK(!turbine_topic_name_valid(bad[i], bad_sizes[i]));
        uint8_t body[16] = {0, 0, 0, 1, 0, (uint8_t)bad_sizes[i]};
        memcpy(body + 6, bad[i], bad_sizes[i]);
        /* two spare bytes: a count check cannot refuse the empty name first */
        enum turbine_error e = metadata_body(body, 6 + bad_sizes[i] + 2);
        CHECK_EQ(e, TURBINE_ERR_INVALID_TOPIC_NAME);
        /* The encoder refuses it too. */
        begin();
        turbine_metadata_request_begin(&w, 1, &(struct turbine_metadata_request){.topic_count = 1});
        turbine_proto_add_name(&w, bad[i], bad_sizes[i]);
        CHECK_EQ(turbine_proto_frame_end(&w), -EINVAL);
    }
}

/* ---- round trips -------------------------------------------------------------------------- */

static void test_handshake(void)
{
    struct turbine_request req;
    struct turbine_response resp;
    const struct turbine_api_versions client[] = {{TURBINE_API_PRODUCE, 0, 2},
                                                  {TURBINE_API_FETCH, 3, 4},
                                                  {TURBINE_API_METADATA, 0, 0},
                                                  {42, 0, 1}};
    begin();
    turbine_handshake_request_begin(&w, 7, &(struct turbine_handshake_request){"cli", 3, 4, {0}});
    for (int i = 0; i < 4; i++)
        turbine_handshake_add_api(&w, &client[i]);
    end_request(&req, TURBINE_API_HANDSHAKE, 7, "req-handshake", dec_handshake_req);
    struct turbine_handshake_request *hr = &dec_handshake_req_out;
    CHECK_EQ(dec_handshake_req(&req), TURBINE_ERR_NONE);
    CHECK(same(hr->client_id, hr->client_id_size, "cli"));
    CHECK_EQ(hr->api_count, 4);
    struct turbine_api_versions a;
    for (int i = 0; turbine_handshake_next_api(&hr->apis, &a); i++) {
        CHECK_EQ(a.api_key, client[i].api_key);
        CHECK_EQ(a.min_version, client[i].min_version);
        CHECK_EQ(a.max_version, client[i].max_version);
    }
    CHECK_EQ(hr->apis.error, TURBINE_ERR_NONE);

    /* The broker answers with its table (here: PRODUCE 1..3, FETCH 0..2, no 42). */
    const struct turbine_api_versions broker[] = {
        {TURBINE_API_PRODUCE, 1, 3}, {TURBINE_API_FETCH, 0, 2}, {TURBINE_API_METADATA, 0, 0}};
    begin();
    turbine_handshake_response_begin(&w, 7, TURBINE_ERR_UNSUPPORTED_VERSION,
                                     &(struct turbine_handshake_response){1 << 20, 5, 3, {0}});
    for (int i = 0; i < 3; i++)
        turbine_handshake_add_api(&w, &broker[i]);
    end_response(&resp, TURBINE_API_HANDSHAKE, 7, "resp-handshake", dec_handshake_resp);
    CHECK_EQ(resp.error, TURBINE_ERR_UNSUPPORTED_VERSION);
    struct turbine_handshake_response *hp = &dec_handshake_resp_out;
    CHECK_EQ(dec_handshake_resp(&resp), TURBINE_ERR_NONE); /* the body comes anyway */
    CHECK_EQ(hp->max_frame_bytes, 1 << 20);
    CHECK_EQ(hp->node_id, 5);
    CHECK_EQ(hp->api_count, 3);
    CHECK_EQ(turbine_handshake_negotiate(client, 4, hp->apis, TURBINE_API_PRODUCE), 2);
    CHECK_EQ(turbine_handshake_negotiate(client, 4, hp->apis, TURBINE_API_FETCH), -1);
    CHECK_EQ(turbine_handshake_negotiate(client, 4, hp->apis, TURBINE_API_METADATA), 0);
    CHECK_EQ(turbine_handshake_negotiate(client, 4, hp->apis, 42), -1);
    CHECK_EQ(turbine_handshake_negotiate(client, 4, hp->apis, TURBINE_API_OFFSET_COMMIT), -1);
    CHECK_EQ(hp->apis.remaining, 3); /* negotiate walked a copy */
    struct turbine_api_versions x = {1, 0, 5}, y = {1, 5, 9};
    CHECK_EQ(turbine_version_pick(&x, &y), 5);
    y.min_version = 6;
    CHECK_EQ(turbine_version_pick(&x, &y), -1);
}

static void test_metadata(void)
{
    struct turbine_request req;
    struct turbine_response resp;
    begin();
    turbine_metadata_request_begin(&w, 8, &(struct turbine_metadata_request){.topic_count = 2});
    turbine_proto_add_name(&w, "alpha", 5);
    turbine_proto_add_name(&w, "b", 1);
    end_request(&req, TURBINE_API_METADATA, 8, "req-metadata", dec_metadata_req);
    CHECK_EQ(dec_metadata_req(&req), TURBINE_ERR_NONE);
    struct turbine_proto_name nm;
    CHECK(turbine_proto_next_name(&dec_metadata_req_out.topics, &nm));
    CHECK(same(nm.name, nm.name_size, "alpha"));
    CHECK(turbine_proto_next_name(&dec_metadata_req_out.topics, &nm));
    CHECK(same(nm.name, nm.name_size, "b"));
    CHECK(!turbine_proto_next_name(&dec_metadata_req_out.topics, &nm));

    begin();
    turbine_metadata_response_begin(
        &w, 8, &(struct turbine_metadata_response){1, "127.0.0.1", 9, 9092, 2, {0}});
    turbine_metadata_add_topic(&w, &(struct turbine_metadata_topic){0, "alpha", 5, 3, {0}});
    for (int i = 0; i < 3; i++)
        turbine_metadata_add_partition(&w, &(struct turbine_metadata_partition){i, 1, 0});
    turbine_metadata_add_topic(
        &w, &(struct turbine_metadata_topic){TURBINE_ERR_UNKNOWN_TOPIC, "b", 1, 0, {0}});
    end_response(&resp, TURBINE_API_METADATA, 8, "resp-metadata", dec_metadata_resp);
    struct turbine_metadata_response *m = &dec_metadata_resp_out;
    CHECK_EQ(dec_metadata_resp(&resp), TURBINE_ERR_NONE);
    CHECK_EQ(m->node_id, 1);
    CHECK(same(m->host, m->host_size, "127.0.0.1"));
    CHECK_EQ(m->port, 9092);
    struct turbine_metadata_topic t;
    struct turbine_metadata_partition p;
    CHECK(turbine_metadata_next_topic(&m->topics, &t));
    CHECK(same(t.name, t.name_size, "alpha"));
    CHECK_EQ(t.partition_count, 3);
    for (int i = 0; i < 3; i++) {
        CHECK(turbine_metadata_next_partition(&t.partitions, &p));
        CHECK_EQ(p.partition, i);
        CHECK_EQ(p.leader, 1);
    }
    CHECK(!turbine_metadata_next_partition(&t.partitions, &p));
    CHECK(turbine_metadata_next_topic(&m->topics, &t));
    CHECK_EQ(t.error, TURBINE_ERR_UNKNOWN_TOPIC);
    CHECK_EQ(t.partition_count, 0);
    CHECK(!turbine_metadata_next_topic(&m->topics, &t));
}

static void test_create_delete(void)
{
    struct turbine_request req;
    struct turbine_response resp;
    struct turbine_create_topic in = {
        "events", 6, 12, {86400000, TURBINE_CONFIG_UNLIMITED, TURBINE_CONFIG_DEFAULT, 2}};
    begin();
    turbine_create_topics_request_begin(&w, 9,
                                        &(struct turbine_create_topics_request){5000, 1, {0}});
    turbine_create_topics_add_topic(&w, &in);
    end_request(&req, TURBINE_API_CREATE_TOPICS, 9, "req-create-topics", dec_create_req);
    CHECK_EQ(dec_create_req(&req), TURBINE_ERR_NONE);
    CHECK_EQ(dec_create_req_out.timeout_ms, 5000);
    struct turbine_create_topic t;
    CHECK(turbine_create_topics_next_topic(&dec_create_req_out.topics, &t));
    CHECK(same(t.name, t.name_size, "events"));
    CHECK_EQ(t.partitions, 12);
    CHECK_EQ(t.config.retention_ms, 86400000);
    CHECK_EQ(t.config.retention_bytes, -1);
    CHECK_EQ(t.config.segment_bytes, -2);
    CHECK_EQ(t.config.durability, TURBINE_TOPIC_DURABILITY_FSYNC);
    CHECK(!turbine_create_topics_next_topic(&dec_create_req_out.topics, &t));

    begin();
    turbine_delete_topics_request_begin(&w, 10,
                                        &(struct turbine_delete_topics_request){100, 1, {0}});
    turbine_proto_add_name(&w, "events", 6);
    end_request(&req, TURBINE_API_DELETE_TOPICS, 10, "req-delete-topics", dec_delete_req);
    CHECK_EQ(dec_delete_req(&req), TURBINE_ERR_NONE);
    CHECK_EQ(dec_delete_req_out.timeout_ms, 100);
    CHECK_EQ(dec_delete_req_out.topic_count, 1);

    uint16_t apis[2] = {TURBINE_API_CREATE_TOPICS, TURBINE_API_DELETE_TOPICS};
    for (int i = 0; i < 2; i++) {
        begin();
        turbine_topics_response_begin(&w, 11, apis[i], &(struct turbine_topics_response){2, {0}});
        turbine_topics_add_result(&w, &(struct turbine_topic_result){"events", 6, 0});
        turbine_topics_add_result(&w,
                                  &(struct turbine_topic_result){"x", 1, TURBINE_ERR_TOPIC_EXISTS});
        end_response(&resp, apis[i], 11, i ? "resp-delete-topics" : "resp-create-topics",
                     dec_topics_resp);
        CHECK_EQ(dec_topics_resp(&resp), TURBINE_ERR_NONE);
        struct turbine_topic_result r;
        CHECK(turbine_topics_next_result(&dec_topics_resp_out.topics, &r));
        CHECK(same(r.name, r.name_size, "events"));
        CHECK_EQ(r.error, 0);
        CHECK(turbine_topics_next_result(&dec_topics_resp_out.topics, &r));
        CHECK_EQ(r.error, TURBINE_ERR_TOPIC_EXISTS);
        CHECK(!turbine_topics_next_result(&dec_topics_resp_out.topics, &r));
    }
}

static void test_describe(void)
{
    struct turbine_request req;
    struct turbine_response resp;
    begin();
    turbine_describe_topics_request_begin(&w, 12,
                                          &(struct turbine_describe_topics_request){0, {0}});
    end_request(&req, TURBINE_API_DESCRIBE_TOPICS, 12, "req-describe-topics", dec_describe_req);
    CHECK_EQ(dec_describe_req(&req), TURBINE_ERR_NONE);
    CHECK_EQ(dec_describe_req_out.topic_count, 0);

    struct turbine_describe_partition parts[2] = {{0, 0, 10, 20, 21, 4096, 2},
                                                  {1, TURBINE_ERR_STORAGE_ERROR, 0, 0, 0, 0, 1}};
    begin();
    turbine_describe_topics_response_begin(&w, 12,
                                           &(struct turbine_describe_topics_response){1, {0}});
    turbine_describe_add_topic(
        &w, &(struct turbine_describe_topic){0, "ev", 2, {1000, 2000, 3000, 1}, 2, {0}});
    for (int i = 0; i < 2; i++)
        turbine_describe_add_partition(&w, &parts[i]);
    end_response(&resp, TURBINE_API_DESCRIBE_TOPICS, 12, "resp-describe-topics", dec_describe_resp);
    CHECK_EQ(dec_describe_resp(&resp), TURBINE_ERR_NONE);
    struct turbine_describe_topic t;
    CHECK(turbine_describe_next_topic(&dec_describe_resp_out.topics, &t));
    CHECK(same(t.name, t.name_size, "ev"));
    CHECK_EQ(t.config.retention_ms, 1000);
    CHECK_EQ(t.config.retention_bytes, 2000);
    CHECK_EQ(t.config.segment_bytes, 3000);
    CHECK_EQ(t.config.durability, 1);
    struct turbine_describe_partition p;
    int i = 0;
    for (; turbine_describe_next_partition(&t.partitions, &p); i++) {
        CHECK_EQ(p.partition, parts[i].partition);
        CHECK_EQ(p.error, parts[i].error);
        CHECK_EQ(p.log_start_offset, parts[i].log_start_offset);
        CHECK_EQ(p.high_watermark, parts[i].high_watermark);
        CHECK_EQ(p.log_end_offset, parts[i].log_end_offset);
        CHECK_EQ(p.size_bytes, parts[i].size_bytes);
        CHECK_EQ(p.segment_count, parts[i].segment_count);
    }
    CHECK_EQ(i, 2);
}

/* One real batch, as a producer would send it. */
static int64_t make_batch(uint8_t *out, size_t capacity, const char *value)
{
    struct turbine_batch_params params = {0, -1, 0, -1, -1, -1};
    struct turbine_record_in rec = {1700000000000, "k", 1, value, (int32_t)strlen(value), NULL, 0};
    int64_t n = turbine_batch_encode(out, capacity, &params, &rec, 1);
    CHECK_GT(n, 0);
    return n;
}

static void test_produce(void)
{
    struct turbine_request req;
    struct turbine_response resp;
    uint8_t b1[256], b2[256];
    int64_t n1 = make_batch(b1, sizeof(b1), "hello");
    int64_t n2 = make_batch(b2, sizeof(b2), "world!");
    begin();
    turbine_produce_request_begin(
        &w, 13, &(struct turbine_produce_request){TURBINE_ACKS_ALL, 1500, 2, {0}});
    turbine_proto_add_topic(&w, "t1", 2, 2);
    turbine_produce_add_partition(&w, &(struct turbine_produce_partition){0, b1, (uint32_t)n1});
    turbine_produce_add_partition(&w, &(struct turbine_produce_partition){3, b2, (uint32_t)n2});
    turbine_proto_add_topic(&w, "t2", 2, 1);
    turbine_produce_add_partition(&w, &(struct turbine_produce_partition){1, NULL, 0});
    size_t size = end_request(&req, TURBINE_API_PRODUCE, 13, "req-produce", dec_produce_req);
    CHECK_EQ(dec_produce_req(&req), TURBINE_ERR_NONE);
    struct turbine_produce_request *r = &dec_produce_req_out;
    CHECK_EQ(r->acks, -1);
    CHECK_EQ(r->timeout_ms, 1500);
    struct turbine_proto_topic t;
    struct turbine_produce_partition p;
    CHECK(turbine_proto_next_topic(&r->topics, &t));
    CHECK(same(t.name, t.name_size, "t1"));
    CHECK(turbine_produce_next_partition(&t.partitions, &p));
    CHECK_EQ(p.partition, 0);
    CHECK_EQ(p.records_size, n1);
    CHECK(memcmp(p.records, b1, (size_t)n1) == 0);
    CHECK(p.records > buf && p.records < buf + size); /* a view into the frame */
    CHECK_EQ(turbine_batch_validate(p.records, p.records_size, NULL), TURBINE_BATCH_OK);
    CHECK(turbine_produce_next_partition(&t.partitions, &p));
    CHECK_EQ(p.partition, 3);
    CHECK(memcmp(p.records, b2, (size_t)n2) == 0);
    CHECK(!turbine_produce_next_partition(&t.partitions, &p));
    CHECK(turbine_proto_next_topic(&r->topics, &t));
    CHECK(same(t.name, t.name_size, "t2"));
    CHECK(turbine_produce_next_partition(&t.partitions, &p));
    CHECK_EQ(p.records_size, 0);
    CHECK(!turbine_proto_next_topic(&r->topics, &t));

    /* The same request with the batches as iovecs: the buffer holds only the framing, and the
     * iovecs put together give the copied frame byte for byte. */
    uint8_t copy[1024];
    memcpy(copy, buf, size);
    uint8_t small[128];
    struct iovec iov[8];
    turbine_proto_writer_init(&w, small, sizeof(small), iov, 8);
    turbine_produce_request_begin(
        &w, 13, &(struct turbine_produce_request){TURBINE_ACKS_ALL, 1500, 2, {0}});
    turbine_proto_add_topic(&w, "t1", 2, 2);
    turbine_produce_add_partition(&w, &(struct turbine_produce_partition){0, b1, (uint32_t)n1});
    turbine_produce_add_partition(&w, &(struct turbine_produce_partition){3, b2, (uint32_t)n2});
    turbine_proto_add_topic(&w, "t2", 2, 1);
    turbine_produce_add_partition(&w, &(struct turbine_produce_partition){1, NULL, 0});
    CHECK_EQ(turbine_proto_frame_end(&w), size);
    CHECK_EQ(w.iov_count, 5);
    CHECK(iov[1].iov_base == b1 && iov[3].iov_base == b2);
    CHECK_EQ(w.used, size - (size_t)n1 - (size_t)n2);
    size_t at = 0;
    for (size_t i = 0; i < w.iov_count; i++) {
        CHECK(memcmp(copy + at, iov[i].iov_base, iov[i].iov_len) == 0);
        at += iov[i].iov_len;
    }
    CHECK_EQ(at, size);

    begin();
    turbine_produce_response_begin(&w, 13, &(struct turbine_produce_response){1, {0}});
    turbine_proto_add_topic(&w, "t1", 2, 2);
    turbine_produce_add_result(&w, &(struct turbine_produce_result){0, 0, 100, 7});
    turbine_produce_add_result(
        &w, &(struct turbine_produce_result){3, TURBINE_ERR_CORRUPT_RECORD, -1, -1});
    end_response(&resp, TURBINE_API_PRODUCE, 13, "resp-produce", dec_produce_resp);
    CHECK_EQ(dec_produce_resp(&resp), TURBINE_ERR_NONE);
    struct turbine_produce_result pr;
    CHECK(turbine_proto_next_topic(&dec_produce_resp_out.topics, &t));
    CHECK(turbine_produce_next_result(&t.partitions, &pr));
    CHECK_EQ(pr.base_offset, 100);
    CHECK_EQ(pr.log_start_offset, 7);
    CHECK(turbine_produce_next_result(&t.partitions, &pr));
    CHECK_EQ(pr.partition, 3);
    CHECK_EQ(pr.error, TURBINE_ERR_CORRUPT_RECORD);
    CHECK_EQ(pr.base_offset, -1);
}

static void test_fetch(void)
{
    struct turbine_request req;
    struct turbine_response resp;
    begin();
    turbine_fetch_request_begin(&w, 14, &(struct turbine_fetch_request){500, 1, 1 << 20, 1, {0}});
    turbine_proto_add_topic(&w, "t1", 2, 2);
    turbine_fetch_add_partition(&w, &(struct turbine_fetch_partition){0, 42, 65536});
    turbine_fetch_add_partition(&w, &(struct turbine_fetch_partition){1, INT64_MAX, 1});
    end_request(&req, TURBINE_API_FETCH, 14, "req-fetch", dec_fetch_req);
    CHECK_EQ(dec_fetch_req(&req), TURBINE_ERR_NONE);
    struct turbine_fetch_request *r = &dec_fetch_req_out;
    CHECK_EQ(r->max_wait_ms, 500);
    CHECK_EQ(r->min_bytes, 1);
    CHECK_EQ(r->max_bytes, 1 << 20);
    struct turbine_proto_topic t;
    struct turbine_fetch_partition p;
    CHECK(turbine_proto_next_topic(&r->topics, &t));
    CHECK(turbine_fetch_next_partition(&t.partitions, &p));
    CHECK_EQ(p.fetch_offset, 42);
    CHECK_EQ(p.partition_max_bytes, 65536);
    CHECK(turbine_fetch_next_partition(&t.partitions, &p));
    CHECK_EQ(p.fetch_offset, INT64_MAX);

    /* The broker's path: the records come from two "cache pages" by reference. */
    uint8_t b1[256], b2[256];
    int64_t n1 = make_batch(b1, sizeof(b1), "page one");
    int64_t n2 = make_batch(b2, sizeof(b2), "page two");
    uint8_t head[256];
    struct iovec iov[8];
    turbine_proto_writer_init(&w, head, sizeof(head), iov, 8);
    turbine_fetch_response_begin(&w, 14, &(struct turbine_fetch_response){1, {0}});
    turbine_proto_add_topic(&w, "t1", 2, 2);
    turbine_fetch_add_result(
        &w, &(struct turbine_fetch_result){0, 0, 50, 51, 3, NULL, (uint32_t)(n1 + n2)});
    turbine_proto_writer_external(&w, b1, (size_t)n1);
    turbine_proto_writer_external(&w, b2, (size_t)n2);
    turbine_fetch_add_result(
        &w, &(struct turbine_fetch_result){1, TURBINE_ERR_OFFSET_OUT_OF_RANGE, 9, 9, 0, NULL, 0});
    int64_t size = turbine_proto_frame_end(&w);
    CHECK_GT(size, 0);
    CHECK_EQ(w.iov_count, 4);
    CHECK(iov[1].iov_base == b1 && iov[2].iov_base == b2);
    CHECK_EQ(iov[0].iov_len, 12 + 4 + (2 + 2) + 4 + TURBINE_PROTO_FETCH_RESULT_FIXED_SIZE);
    /* Gather them as the socket would see them and decode. */
    size_t at = 0;
    for (size_t i = 0; i < w.iov_count; i++) {
        memcpy(buf + at, iov[i].iov_base, iov[i].iov_len);
        at += iov[i].iov_len;
    }
    CHECK_EQ(at, size);
    CHECK_EQ(turbine_response_parse(buf, at, &resp), TURBINE_ERR_NONE);
    corpus_write("resp-fetch", buf, at);
    check_response_truncations(buf, at, dec_fetch_resp);
    CHECK_EQ(dec_fetch_resp(&resp), TURBINE_ERR_NONE);
    struct turbine_fetch_result fr;
    CHECK(turbine_proto_next_topic(&dec_fetch_resp_out.topics, &t));
    CHECK(turbine_fetch_next_result(&t.partitions, &fr));
    CHECK_EQ(fr.high_watermark, 50);
    CHECK_EQ(fr.log_end_offset, 51);
    CHECK_EQ(fr.log_start_offset, 3);
    CHECK_EQ(fr.records_size, n1 + n2);
    CHECK(memcmp(fr.records, b1, (size_t)n1) == 0);
    CHECK(memcmp(fr.records + n1, b2, (size_t)n2) == 0);
    struct turbine_batch_info info;
    CHECK_EQ(turbine_batch_validate(fr.records, fr.records_size, &info), TURBINE_BATCH_OK);
    CHECK_EQ(info.size, n1);
    CHECK(turbine_fetch_next_result(&t.partitions, &fr));
    CHECK_EQ(fr.error, TURBINE_ERR_OFFSET_OUT_OF_RANGE);
    CHECK_EQ(fr.records_size, 0);
    CHECK(!turbine_fetch_next_result(&t.partitions, &fr));
}

static void test_list_offsets(void)
{
    struct turbine_request req;
    struct turbine_response resp;
    begin();
    turbine_list_offsets_request_begin(&w, 15, &(struct turbine_list_offsets_request){1, {0}});
    turbine_proto_add_topic(&w, "t", 1, 3);
    int64_t ts[3] = {TURBINE_OFFSET_EARLIEST, TURBINE_OFFSET_LATEST, 1700000000000};
    for (int i = 0; i < 3; i++)
        turbine_list_offsets_add_partition(&w, &(struct turbine_list_offsets_partition){i, ts[i]});
    end_request(&req, TURBINE_API_LIST_OFFSETS, 15, "req-list-offsets", dec_list_req);
    CHECK_EQ(dec_list_req(&req), TURBINE_ERR_NONE);
    struct turbine_proto_topic t;
    struct turbine_list_offsets_partition p;
    CHECK(turbine_proto_next_topic(&dec_list_req_out.topics, &t));
    for (int i = 0; i < 3; i++) {
        CHECK(turbine_list_offsets_next_partition(&t.partitions, &p));
        CHECK_EQ(p.partition, i);
        CHECK_EQ(p.timestamp, ts[i]);
    }
    begin();
    turbine_list_offsets_response_begin(&w, 15, &(struct turbine_list_offsets_response){1, {0}});
    turbine_proto_add_topic(&w, "t", 1, 1);
    turbine_list_offsets_add_result(&w,
                                    &(struct turbine_list_offsets_result){2, 0, 1700000000001, 77});
    end_response(&resp, TURBINE_API_LIST_OFFSETS, 15, "resp-list-offsets", dec_list_resp);
    CHECK_EQ(dec_list_resp(&resp), TURBINE_ERR_NONE);
    struct turbine_list_offsets_result lr;
    CHECK(turbine_proto_next_topic(&dec_list_resp_out.topics, &t));
    CHECK(turbine_list_offsets_next_result(&t.partitions, &lr));
    CHECK_EQ(lr.partition, 2);
    CHECK_EQ(lr.timestamp, 1700000000001);
    CHECK_EQ(lr.offset, 77);
}

static void test_offsets(void)
{
    struct turbine_request req;
    struct turbine_response resp;
    struct turbine_proto_topic t;
    begin();
    turbine_offset_commit_request_begin(&w, 16,
                                        &(struct turbine_offset_commit_request){"g1", 2, 1, {0}});
    turbine_proto_add_topic(&w, "t", 1, 2);
    turbine_offset_commit_add_partition(&w,
                                        &(struct turbine_offset_commit_partition){0, 10, "m", 1});
    turbine_offset_commit_add_partition(&w,
                                        &(struct turbine_offset_commit_partition){1, 0, NULL, 0});
    end_request(&req, TURBINE_API_OFFSET_COMMIT, 16, "req-offset-commit", dec_commit_req);
    CHECK_EQ(dec_commit_req(&req), TURBINE_ERR_NONE);
    CHECK(same(dec_commit_req_out.group, dec_commit_req_out.group_size, "g1"));
    struct turbine_offset_commit_partition cp;
    CHECK(turbine_proto_next_topic(&dec_commit_req_out.topics, &t));
    CHECK(turbine_offset_commit_next_partition(&t.partitions, &cp));
    CHECK_EQ(cp.offset, 10);
    CHECK(same(cp.metadata, cp.metadata_size, "m"));
    CHECK(turbine_offset_commit_next_partition(&t.partitions, &cp));
    CHECK_EQ(cp.metadata_size, 0);

    begin();
    turbine_offsets_response_begin(&w, 16, TURBINE_API_OFFSET_COMMIT,
                                   &(struct turbine_offsets_response){1, {0}});
    turbine_proto_add_topic(&w, "t", 1, 1);
    turbine_offset_commit_add_result(&w, &(struct turbine_offset_commit_result){0, 0});
    end_response(&resp, TURBINE_API_OFFSET_COMMIT, 16, "resp-offset-commit", dec_offsets_resp);
    CHECK_EQ(dec_offsets_resp(&resp), TURBINE_ERR_NONE);
    struct turbine_offset_commit_result cr;
    CHECK(turbine_proto_next_topic(&dec_offsets_resp_out.topics, &t));
    CHECK(turbine_offset_commit_next_result(&t.partitions, &cr));
    CHECK_EQ(cr.error, 0);

    begin();
    turbine_offset_fetch_request_begin(&w, 17,
                                       &(struct turbine_offset_fetch_request){"g1", 2, 1, {0}});
    turbine_proto_add_topic(&w, "t", 1, 1);
    turbine_offset_fetch_add_partition(&w, &(struct turbine_offset_fetch_partition){5});
    end_request(&req, TURBINE_API_OFFSET_FETCH, 17, "req-offset-fetch", dec_ofetch_req);
    CHECK_EQ(dec_ofetch_req(&req), TURBINE_ERR_NONE);
    struct turbine_offset_fetch_partition fp;
    CHECK(turbine_proto_next_topic(&dec_ofetch_req_out.topics, &t));
    CHECK(turbine_offset_fetch_next_partition(&t.partitions, &fp));
    CHECK_EQ(fp.partition, 5);

    begin();
    turbine_offsets_response_begin(&w, 17, TURBINE_API_OFFSET_FETCH,
                                   &(struct turbine_offsets_response){1, {0}});
    turbine_proto_add_topic(&w, "t", 1, 1);
    turbine_offset_fetch_add_result(&w, &(struct turbine_offset_fetch_result){5, 0, 99, "meta", 4});
    end_response(&resp, TURBINE_API_OFFSET_FETCH, 17, "resp-offset-fetch", dec_offsets_resp);
    CHECK_EQ(dec_offsets_resp(&resp), TURBINE_ERR_NONE);
    struct turbine_offset_fetch_result fr;
    CHECK(turbine_proto_next_topic(&dec_offsets_resp_out.topics, &t));
    CHECK(turbine_offset_fetch_next_result(&t.partitions, &fr));
    CHECK_EQ(fr.offset, 99);
    CHECK(same(fr.metadata, fr.metadata_size, "meta"));
}

/* ---- writer: capacity, error responses, pipelining ----------------------------------------- */

static void encode_metadata(uint32_t corr)
{
    turbine_metadata_request_begin(&w, corr, &(struct turbine_metadata_request){.topic_count = 1});
    turbine_proto_add_name(&w, "some-topic", 10);
}

static void test_writer(void)
{
    /* Too small: -ENOSPC and the size needed; that size suffices. */
    uint8_t small[20];
    turbine_proto_writer_init(&w, small, sizeof(small), NULL, 0);
    encode_metadata(1);
    CHECK_EQ(turbine_proto_frame_end(&w), -ENOSPC);
    size_t needed = turbine_proto_writer_needed(&w);
    CHECK_EQ(needed, 14 + 4 + 2 + 10);
    turbine_proto_writer_init(&w, buf, needed, NULL, 0);
    encode_metadata(1);
    CHECK_EQ(turbine_proto_frame_end(&w), needed);
    /* Too few iovecs. */
    uint8_t b[128];
    int64_t n = make_batch(b, sizeof(b), "v");
    struct iovec iov[2];
    turbine_proto_writer_init(&w, buf, sizeof(buf), iov, 1);
    turbine_produce_request_begin(&w, 1, &(struct turbine_produce_request){1, 0, 1, {0}});
    turbine_proto_add_topic(&w, "t", 1, 1);
    turbine_produce_add_partition(&w, &(struct turbine_produce_partition){0, b, (uint32_t)n});
    CHECK_EQ(turbine_proto_frame_end(&w), -ENOSPC);
    CHECK_EQ(turbine_proto_writer_iov_needed(&w), 2); /* the framing, the batch: no tail */

    /* An error response has no body; a non-HANDSHAKE decoder returns the error. */
    struct turbine_response resp;
    begin();
    int64_t size = turbine_error_response_encode(&w, 99, TURBINE_API_FETCH, TURBINE_ERR_MALFORMED);
    CHECK_EQ(size, TURBINE_PROTO_RESP_HEADER_SIZE);
    corpus_write("resp-error", buf, (size_t)size);
    CHECK_EQ(turbine_response_parse(buf, (size_t)size, &resp), TURBINE_ERR_NONE);
    CHECK_EQ(resp.error, TURBINE_ERR_MALFORMED);
    CHECK_EQ(resp.correlation_id, 99);
    CHECK_EQ(dec_fetch_resp(&resp), TURBINE_ERR_MALFORMED);
    struct turbine_proto_topic t;
    CHECK(!turbine_proto_next_topic(&dec_fetch_resp_out.topics, &t)); /* zeroed: empty */
    /* ... and a body after an error is malformed. */
    uint8_t bad[16] = {0, 0, 0, 9, 0, 0, 0, 99, 0, TURBINE_API_FETCH, 0, TURBINE_ERR_TIMEOUT, 0};
    CHECK_EQ(turbine_response_parse(bad, 13, &resp), TURBINE_ERR_MALFORMED);

    /* Pipelining: three frames back to back, parsed by their prefixes. */
    begin();
    for (uint32_t corr = 1; corr <= 3; corr++) {
        encode_metadata(corr);
        CHECK_GT(turbine_proto_frame_end(&w), 0);
    }
    size_t at = 0;
    for (uint32_t corr = 1; corr <= 3; corr++) {
        uint32_t frame_bytes;
        CHECK_EQ(turbine_frame_prefix(buf + at, TURBINE_PROTO_FRAME_MAX_DEFAULT,
                                      TURBINE_FRAME_REQUEST, &frame_bytes),
                 TURBINE_ERR_NONE);
        struct turbine_request req;
        CHECK_EQ(turbine_request_parse(buf + at, 4 + frame_bytes, &req), TURBINE_ERR_NONE);
        CHECK_EQ(req.header.correlation_id, corr);
        at += 4 + frame_bytes;
    }
    CHECK_EQ(at, w.used);
}

/* The example of docs/protocol.md: acks=1, one topic "t", partition 0, one record. */
static void print_hexdump(void)
{
    uint8_t batch[128];
    struct turbine_batch_params params = {0, -1, 0, -1, -1, -1};
    struct turbine_record_in rec = {1700000000000, "k", 1, "v", 1, NULL, 0};
    int64_t n = turbine_batch_encode(batch, sizeof(batch), &params, &rec, 1);
    begin();
    turbine_produce_request_begin(&w, 1, &(struct turbine_produce_request){1, 1000, 1, {0}});
    turbine_proto_add_topic(&w, "t", 1, 1);
    turbine_produce_add_partition(&w, &(struct turbine_produce_partition){0, batch, (uint32_t)n});
    int64_t size = turbine_proto_frame_end(&w);
    for (int64_t i = 0; i < size; i += 16) {
        printf("%04" PRIx64 ": ", i);
        for (int64_t j = i; j < i + 16 && j < size; j++)
            printf("%02x ", buf[j]);
        printf("\n");
    }
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--write-corpus") == 0 && i + 1 < argc)
            write_corpus_dir = argv[++i];
        else if (strcmp(argv[i], "--hexdump") == 0)
            hexdump = true;
    }
    if (hexdump) {
        print_hexdump();
        return TEST_EXIT_PASS;
    }
    test_error_table();
    test_frame_prefix();
    test_request_header();
    test_bad_counts();
    test_topic_names();
    test_handshake();
    test_metadata();
    test_create_delete();
    test_describe();
    test_produce();
    test_fetch();
    test_list_offsets();
    test_offsets();
    test_writer();
    printf("proto_test: passed\n");
    return TEST_EXIT_PASS;
}
