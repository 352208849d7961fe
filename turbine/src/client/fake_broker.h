/* SPDX-License-Identifier: MIT
 * fake_broker.h - a tiny broker for the client's tests: one thread, one connection at a time,
 * speaking docs/protocol.md through the codec (every request is decoded with it, so a request
 * the client encodes wrongly fails the test), with in-memory partition logs and faults to
 * order: retriable produce errors, a dropped connection, silence (time-outs), held responses
 * (pipelining). State is guarded by `mu`; tests read it through fb_lock()/fb_unlock().
 */
#ifndef TURBINE_FAKE_BROKER_H
#define TURBINE_FAKE_BROKER_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "turbine/batch.h"
#include "turbine/protocol.h"

#define FB_TOPICS     16
#define FB_PARTITIONS 8
#define FB_PENDING    256
#define FB_OFFSETS    32

struct fb_log {
    uint8_t *data; /* batches back to back, base offsets stamped */
    size_t size;
    int64_t next_offset;
    int batches;
};

struct fb_topic {
    char name[64];
    int partitions;
    struct fb_log logs[FB_PARTITIONS];
};

struct fb_committed {
    char key[160]; /* group/topic/partition */
    int64_t offset;
};

struct fake_broker {
    int listen_fd;
    uint16_t port;
    pthread_t thread;
    atomic_bool stop;
    pthread_mutex_t mu;
    /* state */
    struct fb_topic topics[FB_TOPICS];
    int ntopics;
    struct fb_committed committed[FB_OFFSETS];
    int ncommitted;
    /* faults (set by the test under mu) */
    int fail_produce;            /* the next N produce partition results fail with ... */
    uint16_t fail_produce_error; /* ... this error (nothing appended) */
    int drop_at_request;         /* close the connection when request number N arrives */
    bool silent;                 /* read requests, answer none (HANDSHAKE excepted) */
    int hold;                    /* answer only once this many requests are waiting */
    int trickle;                 /* at most this many bytes read every 10 ms (0: read as bytes
                                  * come); connections made meanwhile get a 4 KiB buffer */
    /* counters */
    int connections;
    int requests;
    int produce_requests;
    int max_pending;
    int decode_errors; /* requests our codec could not decode: must stay 0 */
    int corr_errors;   /* correlation ids not increasing on a connection */
};

static inline void fb_lock(struct fake_broker *fb)
{
    pthread_mutex_lock(&fb->mu);
}

static inline void fb_unlock(struct fake_broker *fb)
{
    pthread_mutex_unlock(&fb->mu);
}

static struct fb_topic *fb_topic(struct fake_broker *fb, const char *name, size_t size)
{
    for (int i = 0; i < fb->ntopics; i++)
        if (strlen(fb->topics[i].name) == size && memcmp(fb->topics[i].name, name, size) == 0)
            return &fb->topics[i];
    return NULL;
}

/* Adds a topic (test set-up, or CREATE_TOPICS). Lock held. */
static int fb_add_topic(struct fake_broker *fb, const char *name, size_t size, int partitions)
{
    if (fb_topic(fb, name, size))
        return TURBINE_ERR_TOPIC_EXISTS;
    if (fb->ntopics == FB_TOPICS || partitions < 1 || partitions > FB_PARTITIONS || size >= 64)
        return TURBINE_ERR_INVALID_PARTITIONS;
    struct fb_topic *t = &fb->topics[fb->ntopics++];
    memset(t, 0, sizeof(*t));
    memcpy(t->name, name, size);
    t->partitions = partitions;
    return TURBINE_ERR_NONE;
}

/* ---- answering ---------------------------------------------------------------------------- */

static void fb_metadata(struct fake_broker *fb, struct turbine_proto_writer *w, uint32_t corr,
                        const struct turbine_request *req)
{
    struct turbine_metadata_request md;
    if (turbine_metadata_request_decode(req, &md) != TURBINE_ERR_NONE) {
        fb->decode_errors++;
        turbine_error_response_encode(w, corr, req->header.api_key, TURBINE_ERR_MALFORMED);
        return;
    }
    struct turbine_metadata_response head = {
        .node_id = 1, .host = "127.0.0.1", .host_size = 9, .port = fb->port};
    head.topic_count = md.topic_count ? md.topic_count : (uint32_t)fb->ntopics;
    turbine_metadata_response_begin(w, corr, &head);
    struct turbine_proto_name name;
    for (uint32_t i = 0; i < head.topic_count; i++) {
        struct fb_topic *t = NULL;
        struct turbine_metadata_topic mt = {0};
        if (md.topic_count) {
            turbine_proto_next_name(&md.topics, &name);
            t = fb_topic(fb, name.name, name.name_size);
            mt.name = name.name;
            mt.name_size = name.name_size;
        } else {
            t = &fb->topics[i];
            mt.name = t->name;
            mt.name_size = (uint16_t)strlen(t->name);
        }
        mt.error = t ? TURBINE_ERR_NONE : TURBINE_ERR_UNKNOWN_TOPIC;
        mt.partition_count = t ? (uint32_t)t->partitions : 0;
        turbine_metadata_add_topic(w, &mt);
        for (uint32_t p = 0; p < mt.partition_count; p++) {
            struct turbine_metadata_partition mp = {.partition = (int32_t)p, .leader = 1};
            turbine_metadata_add_partition(w, &mp);
        }
    }
}

static uint16_t fb_append(struct fake_broker *fb, struct fb_topic *t, int32_t partition,
                          const uint8_t *records, uint32_t size, int64_t *base)
{
    if (!t)
        return TURBINE_ERR_UNKNOWN_TOPIC;
    if (partition < 0 || partition >= t->partitions)
        return TURBINE_ERR_UNKNOWN_PARTITION;
    struct turbine_batch_info info;
    if (turbine_batch_validate(records, size, &info) != TURBINE_BATCH_OK || info.size != size)
        return TURBINE_ERR_CORRUPT_RECORD;
    if (fb->fail_produce > 0) {
        fb->fail_produce--;
        return fb->fail_produce_error;
    }
    struct fb_log *log = &t->logs[partition];
    uint8_t *data = realloc(log->data, log->size + size);
    CHECK(data != NULL);
    memcpy(data + log->size, records, size);
    turbine_batch_set_base_offset(data + log->size, log->next_offset);
    *base = log->next_offset;
    log->data = data;
    log->size += size;
    log->next_offset += info.header.records_count;
    log->batches++;
    return TURBINE_ERR_NONE;
}

/* Returns false when no response is due (acks 0). */
static bool fb_produce(struct fake_broker *fb, struct turbine_proto_writer *w, uint32_t corr,
                       const struct turbine_request *req)
{
    struct turbine_produce_request pr;
    fb->produce_requests++;
    if (turbine_produce_request_decode(req, &pr) != TURBINE_ERR_NONE) {
        fb->decode_errors++;
        turbine_error_response_encode(w, corr, req->header.api_key, TURBINE_ERR_MALFORMED);
        return true;
    }
    struct turbine_produce_response head = {.topic_count = pr.topic_count};
    if (pr.acks != 0)
        turbine_produce_response_begin(w, corr, &head);
    struct turbine_proto_topic topic;
    struct turbine_produce_partition part;
    while (turbine_proto_next_topic(&pr.topics, &topic)) {
        if (pr.acks != 0)
            turbine_proto_add_topic(w, topic.name, topic.name_size, topic.partition_count);
        struct fb_topic *t = fb_topic(fb, topic.name, topic.name_size);
        while (turbine_produce_next_partition(&topic.partitions, &part)) {
            struct turbine_produce_result r = {.partition = part.partition, .base_offset = -1};
            r.error =
                fb_append(fb, t, part.partition, part.records, part.records_size, &r.base_offset);
            if (pr.acks != 0)
                turbine_produce_add_result(w, &r);
        }
    }
    return pr.acks != 0;
}

/* Batches of `log` from the one holding `offset`, at least one, up to max_bytes. */
static void fb_slice(struct fb_log *log, int64_t offset, int32_t max_bytes, const uint8_t **data,
                     uint32_t *size)
{
    size_t at = 0, start = log->size, end = log->size;
    while (at < log->size) {
        struct turbine_batch_header h;
        turbine_batch_header_decode(log->data + at, &h);
        size_t bsize = TURBINE_BATCH_LOG_OVERHEAD + (size_t)h.batch_length;
        if (start == log->size && h.base_offset + h.last_offset_delta >= offset)
            start = at;
        if (start != log->size && at + bsize - start > (size_t)max_bytes && at > start) {
            end = at;
            break;
        }
        at += bsize;
    }
    *data = log->data + start;
    *size = (uint32_t)(end - start);
}

static void fb_fetch(struct fake_broker *fb, struct turbine_proto_writer *w, uint32_t corr,
                     const struct turbine_request *req)
{
    struct turbine_fetch_request fr;
    if (turbine_fetch_request_decode(req, &fr) != TURBINE_ERR_NONE) {
        fb->decode_errors++;
        turbine_error_response_encode(w, corr, req->header.api_key, TURBINE_ERR_MALFORMED);
        return;
    }
    struct turbine_fetch_response head = {.topic_count = fr.topic_count};
    turbine_fetch_response_begin(w, corr, &head);
    struct turbine_proto_topic topic;
    struct turbine_fetch_partition part;
    while (turbine_proto_next_topic(&fr.topics, &topic)) {
        turbine_proto_add_topic(w, topic.name, topic.name_size, topic.partition_count);
        struct fb_topic *t = fb_topic(fb, topic.name, topic.name_size);
        while (turbine_fetch_next_partition(&topic.partitions, &part)) {
            struct turbine_fetch_result r = {.partition = part.partition};
            if (!t || part.partition < 0 || part.partition >= t->partitions) {
                r.error = t ? TURBINE_ERR_UNKNOWN_PARTITION : TURBINE_ERR_UNKNOWN_TOPIC;
            } else {
                struct fb_log *log = &t->logs[part.partition];
                r.high_watermark = r.log_end_offset = log->next_offset;
                if (part.fetch_offset > log->next_offset)
                    r.error = TURBINE_ERR_OFFSET_OUT_OF_RANGE;
                else
                    fb_slice(log, part.fetch_offset, part.partition_max_bytes, &r.records,
                             &r.records_size);
            }
            turbine_fetch_add_result(w, &r);
        }
    }
}

/* The first offset whose record timestamp is >= ts, or -1. */
static int64_t fb_offset_for_time(struct fb_log *log, int64_t ts)
{
    size_t at = 0;
    while (at < log->size) {
        struct turbine_batch_header h;
        turbine_batch_header_decode(log->data + at, &h);
        size_t bsize = TURBINE_BATCH_LOG_OVERHEAD + (size_t)h.batch_length;
        struct turbine_record_iter it;
        struct turbine_record r;
        turbine_record_iter_init(&it, log->data + at, bsize);
        while (turbine_record_iter_next(&it, &r))
            if (h.base_timestamp + r.timestamp_delta >= ts)
                return h.base_offset + r.offset_delta;
        at += bsize;
    }
    return -1;
}

static void fb_list_offsets(struct fake_broker *fb, struct turbine_proto_writer *w, uint32_t corr,
                            const struct turbine_request *req)
{
    struct turbine_list_offsets_request lr;
    if (turbine_list_offsets_request_decode(req, &lr) != TURBINE_ERR_NONE) {
        fb->decode_errors++;
        turbine_error_response_encode(w, corr, req->header.api_key, TURBINE_ERR_MALFORMED);
        return;
    }
    struct turbine_list_offsets_response head = {.topic_count = lr.topic_count};
    turbine_list_offsets_response_begin(w, corr, &head);
    struct turbine_proto_topic topic;
    struct turbine_list_offsets_partition part;
    while (turbine_proto_next_topic(&lr.topics, &topic)) {
        turbine_proto_add_topic(w, topic.name, topic.name_size, topic.partition_count);
        struct fb_topic *t = fb_topic(fb, topic.name, topic.name_size);
        while (turbine_list_offsets_next_partition(&topic.partitions, &part)) {
            struct turbine_list_offsets_result r = {.partition = part.partition, .timestamp = -1};
            if (!t || part.partition >= t->partitions) {
                r.error = TURBINE_ERR_UNKNOWN_PARTITION;
                r.offset = -1;
            } else if (part.timestamp == TURBINE_OFFSET_EARLIEST) {
                r.offset = 0;
            } else if (part.timestamp == TURBINE_OFFSET_LATEST) {
                r.offset = t->logs[part.partition].next_offset;
            } else {
                r.offset = fb_offset_for_time(&t->logs[part.partition], part.timestamp);
                r.timestamp = part.timestamp;
            }
            turbine_list_offsets_add_result(w, &r);
        }
    }
}

static struct fb_committed *fb_commit_slot(struct fake_broker *fb, const char *group,
                                           uint16_t group_size, const char *topic,
                                           uint16_t topic_size, int32_t partition, bool create)
{
    char key[160];
    snprintf(key, sizeof(key), "%.*s/%.*s/%d", group_size, group, topic_size, topic, partition);
    for (int i = 0; i < fb->ncommitted; i++)
        if (strcmp(fb->committed[i].key, key) == 0)
            return &fb->committed[i];
    if (!create || fb->ncommitted == FB_OFFSETS)
        return NULL;
    struct fb_committed *c = &fb->committed[fb->ncommitted++];
    strcpy(c->key, key);
    return c;
}

static void fb_offsets(struct fake_broker *fb, struct turbine_proto_writer *w, uint32_t corr,
                       const struct turbine_request *req)
{
    bool commit = req->header.api_key == TURBINE_API_OFFSET_COMMIT;
    struct turbine_offset_commit_request cr;
    struct turbine_offset_fetch_request fr;
    enum turbine_error e = commit ? turbine_offset_commit_request_decode(req, &cr)
                                  : turbine_offset_fetch_request_decode(req, &fr);
    if (e != TURBINE_ERR_NONE) {
        fb->decode_errors++;
        turbine_error_response_encode(w, corr, req->header.api_key, TURBINE_ERR_MALFORMED);
        return;
    }
    const char *group = commit ? cr.group : fr.group;
    uint16_t group_size = commit ? cr.group_size : fr.group_size;
    struct turbine_proto_iter topics = commit ? cr.topics : fr.topics;
    struct turbine_offsets_response head = {.topic_count =
                                                commit ? cr.topic_count : fr.topic_count};
    turbine_offsets_response_begin(w, corr, req->header.api_key, &head);
    struct turbine_proto_topic topic;
    while (turbine_proto_next_topic(&topics, &topic)) {
        turbine_proto_add_topic(w, topic.name, topic.name_size, topic.partition_count);
        struct turbine_offset_commit_partition cp;
        struct turbine_offset_fetch_partition fp;
        while (commit ? turbine_offset_commit_next_partition(&topic.partitions, &cp)
                      : turbine_offset_fetch_next_partition(&topic.partitions, &fp)) {
            int32_t partition = commit ? cp.partition : fp.partition;
            struct fb_committed *slot = fb_commit_slot(fb, group, group_size, topic.name,
                                                       topic.name_size, partition, commit);
            if (commit) {
                slot->offset = cp.offset;
                struct turbine_offset_commit_result r = {.partition = partition};
                turbine_offset_commit_add_result(w, &r);
            } else {
                struct turbine_offset_fetch_result r = {
                    .partition = partition, .offset = slot ? slot->offset : -1, .metadata = ""};
                turbine_offset_fetch_add_result(w, &r);
            }
        }
    }
}

static void fb_topics(struct fake_broker *fb, struct turbine_proto_writer *w, uint32_t corr,
                      const struct turbine_request *req)
{
    bool create = req->header.api_key == TURBINE_API_CREATE_TOPICS;
    struct turbine_create_topics_request cr;
    struct turbine_delete_topics_request dr;
    enum turbine_error e = create ? turbine_create_topics_request_decode(req, &cr)
                                  : turbine_delete_topics_request_decode(req, &dr);
    if (e != TURBINE_ERR_NONE) {
        fb->decode_errors++;
        turbine_error_response_encode(w, corr, req->header.api_key, TURBINE_ERR_MALFORMED);
        return;
    }
    struct turbine_topics_response head = {.topic_count = create ? cr.topic_count : dr.topic_count};
    turbine_topics_response_begin(w, corr, req->header.api_key, &head);
    struct turbine_create_topic ct;
    struct turbine_proto_name name;
    while (create ? turbine_create_topics_next_topic(&cr.topics, &ct)
                  : turbine_proto_next_name(&dr.topics, &name)) {
        struct turbine_topic_result r;
        if (create) {
            r.name = ct.name, r.name_size = ct.name_size;
            r.error = (uint16_t)fb_add_topic(fb, ct.name, ct.name_size, ct.partitions);
        } else {
            r.name = name.name, r.name_size = name.name_size;
            struct fb_topic *t = fb_topic(fb, name.name, name.name_size);
            r.error = t ? TURBINE_ERR_NONE : TURBINE_ERR_UNKNOWN_TOPIC;
            if (t) {
                for (int p = 0; p < t->partitions; p++)
                    free(t->logs[p].data);
                *t = fb->topics[--fb->ntopics];
            }
        }
        turbine_topics_add_result(w, &r);
    }
}

static void fb_handshake(struct turbine_proto_writer *w, uint32_t corr,
                         const struct turbine_request *req, int *decode_errors)
{
    struct turbine_handshake_request hr;
    if (turbine_handshake_request_decode(req, &hr) != TURBINE_ERR_NONE)
        (*decode_errors)++;
    struct turbine_handshake_response head = {
        .max_frame_bytes = 1 << 20, .node_id = 1, .api_count = TURBINE_API_COUNT};
    turbine_handshake_response_begin(w, corr, TURBINE_ERR_NONE, &head);
    for (unsigned i = 0; i < TURBINE_API_COUNT; i++)
        turbine_handshake_add_api(w, &turbine_proto_versions()[i]);
}

/* Answers one request frame into `w`. Lock held. Returns false when none is due. */
static bool fb_answer(struct fake_broker *fb, struct turbine_proto_writer *w, const uint8_t *frame,
                      size_t size)
{
    struct turbine_request req;
    enum turbine_error e = turbine_request_parse(frame, size, &req);
    uint32_t corr = req.header.correlation_id;
    if (e != TURBINE_ERR_NONE) {
        fb->decode_errors++;
        turbine_error_response_encode(w, corr, req.header.api_key, e);
        return true;
    }
    switch (req.header.api_key) {
    case TURBINE_API_HANDSHAKE:
        fb_handshake(w, corr, &req, &fb->decode_errors);
        return true;
    case TURBINE_API_METADATA:
        fb_metadata(fb, w, corr, &req);
        return true;
    case TURBINE_API_PRODUCE:
        return fb_produce(fb, w, corr, &req);
    case TURBINE_API_FETCH:
        fb_fetch(fb, w, corr, &req);
        return true;
    case TURBINE_API_LIST_OFFSETS:
        fb_list_offsets(fb, w, corr, &req);
        return true;
    case TURBINE_API_OFFSET_COMMIT:
    case TURBINE_API_OFFSET_FETCH:
        fb_offsets(fb, w, corr, &req);
        return true;
    case TURBINE_API_CREATE_TOPICS:
    case TURBINE_API_DELETE_TOPICS:
        fb_topics(fb, w, corr, &req);
        return true;
    default:
        turbine_error_response_encode(w, corr, req.header.api_key, TURBINE_ERR_UNKNOWN_API);
        return true;
    }
}

/* ---- the connection ----------------------------------------------------------------------- */

static bool fb_write_all(int fd, const uint8_t *data, size_t size)
{
    while (size > 0) {
        ssize_t n = send(fd, data, size, MSG_NOSIGNAL);
        if (n <= 0)
            return false;
        data += n;
        size -= (size_t)n;
    }
    return true;
}

/* Answers the pending frames (in order) unless held or silent. Returns false to close. */
static bool fb_flush(struct fake_broker *fb, int fd, uint8_t **pending, size_t *sizes, int *count)
{
    fb_lock(fb);
    if (*count > fb->max_pending)
        fb->max_pending = *count;
    if (*count < fb->hold) {
        fb_unlock(fb);
        return true;
    }
    fb->hold = 0;
    size_t cap = 4u << 20;
    uint8_t *out = malloc(cap);
    CHECK(out != NULL);
    bool ok = true;
    bool fetch_empty_wait = false;
    for (int i = 0; i < *count && ok; i++) {
        struct turbine_proto_writer w;
        turbine_proto_writer_init(&w, out, cap, NULL, 0);
        bool handshake = pending[i][5] == TURBINE_API_HANDSHAKE && pending[i][4] == 0;
        bool fetch = pending[i][5] == TURBINE_API_FETCH && pending[i][4] == 0;
        if (fb->silent && !handshake) {
            free(pending[i]);
            continue;
        }
        if (!fb_answer(fb, &w, pending[i], sizes[i])) {
            free(pending[i]);
            continue;
        }
        if (w.in_frame)
            CHECK_GT(turbine_proto_frame_end(&w), 0);
        CHECK(w.error == 0);
        /* An empty fetch waits a little, as a long poll would (without waking on produce). */
        fetch_empty_wait = fetch && w.used < 64;
        fb_unlock(fb);
        if (fetch_empty_wait)
            usleep(20 * 1000);
        ok = fb_write_all(fd, out, w.used);
        fb_lock(fb);
        free(pending[i]);
    }
    fb_unlock(fb);
    free(out);
    *count = 0;
    return ok;
}

static void fb_serve(struct fake_broker *fb, int fd)
{
    uint8_t *buf = malloc(1 << 20);
    size_t used = 0, cap = 1 << 20;
    uint8_t *pending[FB_PENDING];
    size_t sizes[FB_PENDING];
    int count = 0;
    uint32_t last_corr = 0;
    CHECK(buf != NULL);
    fb_lock(fb);
    size_t trickle = (size_t)fb->trickle;
    fb_unlock(fb);
    if (trickle) {
        int small = 4096;
        CHECK_EQ(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
    }
    while (!atomic_load(&fb->stop)) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 20) <= 0)
            continue;
        fb_lock(fb);
        trickle = (size_t)fb->trickle; /* the test may end it mid-connection */
        fb_unlock(fb);
        size_t want = cap - used;
        if (trickle && want > trickle)
            want = trickle;
        ssize_t n = recv(fd, buf + used, want, 0);
        if (n <= 0)
            break;
        if (trickle)
            usleep(10 * 1000);
        used += (size_t)n;
        size_t at = 0;
        bool drop = false;
        while (used - at >= 4 && count < FB_PENDING) {
            uint32_t frame_bytes;
            CHECK_EQ(turbine_frame_prefix(buf + at, 1 << 20, TURBINE_FRAME_REQUEST, &frame_bytes),
                     TURBINE_ERR_NONE);
            if (used - at < 4 + (size_t)frame_bytes)
                break;
            fb_lock(fb);
            fb->requests++;
            drop = fb->drop_at_request == fb->requests;
            uint32_t corr = (uint32_t)buf[at + 8] << 24 | (uint32_t)buf[at + 9] << 16 |
                            (uint32_t)buf[at + 10] << 8 | buf[at + 11];
            if (corr <= last_corr)
                fb->corr_errors++;
            last_corr = corr;
            fb_unlock(fb);
            if (drop)
                break;
            pending[count] = malloc(4 + (size_t)frame_bytes);
            memcpy(pending[count], buf + at, 4 + (size_t)frame_bytes);
            sizes[count++] = 4 + (size_t)frame_bytes;
            at += 4 + (size_t)frame_bytes;
        }
        memmove(buf, buf + at, used - at);
        used -= at;
        if (drop || !fb_flush(fb, fd, pending, sizes, &count))
            break;
    }
    for (int i = 0; i < count; i++)
        free(pending[i]);
    free(buf);
    close(fd);
}

static void *fb_main(void *arg)
{
    struct fake_broker *fb = arg;
    while (!atomic_load(&fb->stop)) {
        struct pollfd p = {.fd = fb->listen_fd, .events = POLLIN};
        if (poll(&p, 1, 20) <= 0)
            continue;
        int fd = accept4(fb->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        fb_lock(fb);
        fb->connections++;
        fb_unlock(fb);
        fb_serve(fb, fd);
    }
    return NULL;
}

/* Starts the broker on a free port of 127.0.0.1. */
static void fb_start(struct fake_broker *fb)
{
    memset(fb, 0, sizeof(*fb));
    pthread_mutex_init(&fb->mu, NULL);
    fb->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fb->listen_fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK_EQ(bind(fb->listen_fd, (struct sockaddr *)&a, sizeof(a)), 0);
    CHECK_EQ(listen(fb->listen_fd, 16), 0);
    socklen_t len = sizeof(a);
    CHECK_EQ(getsockname(fb->listen_fd, (struct sockaddr *)&a, &len), 0);
    fb->port = ntohs(a.sin_port);
    CHECK_EQ(pthread_create(&fb->thread, NULL, fb_main, fb), 0);
}

static void fb_stop(struct fake_broker *fb)
{
    atomic_store(&fb->stop, true);
    pthread_join(fb->thread, NULL);
    close(fb->listen_fd);
    for (int i = 0; i < fb->ntopics; i++)
        for (int p = 0; p < fb->topics[i].partitions; p++)
            free(fb->topics[i].logs[p].data);
    pthread_mutex_destroy(&fb->mu);
}

#endif
