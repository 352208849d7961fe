/* SPDX-License-Identifier: MIT
 * consumer.c - assigned partitions read with FETCH (long poll), records handed out in place
 * from the response frame, positions moved by seek (LIST_OFFSETS) and kept by group commits
 * (OFFSET_COMMIT, OFFSET_FETCH).
 *
 * A poll walks the last fetch response: topics, partitions, batches (each validated, CRC
 * included, before its records are read), records at or past the partition's position; each
 * record handed out moves the position one past it. Only when that response is used up is the
 * next FETCH sent, for every assigned partition at its position. Assign, unassign and seek
 * leave the current response to be dropped at the next poll, so messages handed out stay
 * valid until then.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "client_internal.h"

#define POSITION_EARLIEST (-2) /* resolved before the next fetch */
#define POSITION_LATEST   (-1)

struct tk_part {
    char topic[TURBINE_TOPIC_NAME_MAX + 1];
    uint16_t topic_size;
    int32_t partition;
    int64_t position; /* >= 0, or POSITION_EARLIEST / POSITION_LATEST to resolve */
};

struct turbine_consumer {
    struct turbine_client *c;
    struct turbine_consumer_config config;
    char group[256];
    struct tk_part *parts; /* sorted by (topic, partition): topics are contiguous */
    size_t count, cap;
    /* the response being walked */
    uint8_t *frame;
    bool used_up; /* every record of `frame` walked */
    bool discard;
    struct turbine_fetch_response body;
    struct turbine_proto_topic topic;
    bool have_topic;
    struct tk_part *cur;
    const uint8_t *batch_next, *batch_end;
    bool in_batch;
    struct turbine_record_iter it;
    struct turbine_batch_header header;
};

void turbine_consumer_config_default(struct turbine_consumer_config *config)
{
    *config = (struct turbine_consumer_config){
        .group = NULL,
        .max_wait_ms = 500,
        .min_bytes = 1,
        .max_bytes = 52428800,
        .partition_max_bytes = 1048576,
        .reset = TURBINE_RESET_EARLIEST,
    };
}

int turbine_consumer_create(struct turbine_client *c, const struct turbine_consumer_config *config,
                            struct turbine_consumer **out)
{
    struct turbine_consumer *k = calloc(1, sizeof(*k));
    if (!k)
        return -ENOMEM;
    if (config)
        k->config = *config;
    else
        turbine_consumer_config_default(&k->config);
    struct turbine_consumer_config *g = &k->config;
    if (g->max_wait_ms < 0 || g->min_bytes < 0 || g->max_bytes <= 0 ||
        g->partition_max_bytes <= 0 || (g->group && strlen(g->group) >= sizeof(k->group)) ||
        g->reset > TURBINE_RESET_NONE) {
        free(k);
        return -EINVAL;
    }
    if (g->group) {
        strcpy(k->group, g->group);
        g->group = k->group;
    }
    k->c = c;
    tc_lock(c);
    c->consumers++;
    tc_unlock(c);
    *out = k;
    return 0;
}

static void walk_reset(struct turbine_consumer *k)
{
    free(k->frame);
    k->frame = NULL;
    k->used_up = false;
    k->discard = false;
    k->have_topic = false;
    k->cur = NULL;
    k->batch_next = k->batch_end = NULL;
    k->in_batch = false;
}

void turbine_consumer_destroy(struct turbine_consumer *k)
{
    if (!k)
        return;
    tc_lock(k->c);
    TURBINE_ASSERT(k->c->consumers > 0);
    k->c->consumers--;
    tc_unlock(k->c);
    walk_reset(k);
    free(k->parts);
    free(k);
}

/* ---- assignments -------------------------------------------------------------------------- */

static int part_cmp(const char *topic, size_t topic_size, int32_t partition,
                    const struct tk_part *p)
{
    int rc = memcmp(topic, p->topic, topic_size < p->topic_size ? topic_size : p->topic_size);
    if (rc == 0 && topic_size != p->topic_size)
        rc = topic_size < p->topic_size ? -1 : 1;
    if (rc == 0 && partition != p->partition)
        rc = partition < p->partition ? -1 : 1;
    return rc;
}

/* The assignment, or where it would be inserted (*found false). */
static size_t part_search(struct turbine_consumer *k, const char *topic, size_t topic_size,
                          int32_t partition, bool *found)
{
    size_t lo = 0, hi = k->count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int rc = part_cmp(topic, topic_size, partition, &k->parts[mid]);
        if (rc == 0) {
            *found = true;
            return mid;
        }
        if (rc < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    *found = false;
    return lo;
}

static struct tk_part *part_find(struct turbine_consumer *k, const char *topic, int32_t partition)
{
    bool found;
    size_t i = part_search(k, topic, strlen(topic), partition, &found);
    return found ? &k->parts[i] : NULL;
}

/* Distinct topics among the assignments (contiguous: they are sorted). */
static uint32_t topic_count(const struct turbine_consumer *k)
{
    uint32_t n = 0;
    for (size_t i = 0; i < k->count; i++)
        if (i == 0 || k->parts[i].topic_size != k->parts[i - 1].topic_size ||
            memcmp(k->parts[i].topic, k->parts[i - 1].topic, k->parts[i].topic_size) != 0)
            n++;
    return n;
}

/* ---- LIST_OFFSETS, OFFSET_FETCH, OFFSET_COMMIT -------------------------------------------- */

struct one_part {
    const char *topic;
    int32_t partition;
    int64_t value; /* timestamp, or offset to commit */
    const char *metadata;
    const char *group;
};

static void list_offsets_encode(struct turbine_proto_writer *w, void *ctx)
{
    struct one_part *o = ctx;
    struct turbine_list_offsets_request head = {.topic_count = 1};
    turbine_list_offsets_request_begin(w, 0, &head);
    turbine_proto_add_topic(w, o->topic, strlen(o->topic), 1);
    struct turbine_list_offsets_partition p = {.partition = o->partition, .timestamp = o->value};
    turbine_list_offsets_add_partition(w, &p);
}

/* The offset LIST_OFFSETS gives for `timestamp` (or EARLIEST/LATEST). */
static int64_t list_offset(struct turbine_consumer *k, const char *topic, int32_t partition,
                           int64_t timestamp)
{
    struct one_part o = {.topic = topic, .partition = partition, .value = timestamp};
    uint8_t *frame;
    struct turbine_response resp;
    int rc = tc_call(k->c, list_offsets_encode, &o, TC_REQ_RESEND, 0, &frame, &resp);
    if (rc < 0)
        return rc;
    struct turbine_list_offsets_response body;
    enum turbine_error e = turbine_list_offsets_response_decode(&resp, &body);
    int64_t result = e ? TURBINE_CLIENT_ERR(e) : -EPROTO;
    struct turbine_proto_topic t;
    struct turbine_list_offsets_result r;
    while (e == TURBINE_ERR_NONE && turbine_proto_next_topic(&body.topics, &t))
        while (turbine_list_offsets_next_result(&t.partitions, &r))
            if (r.partition == partition)
                result = r.error ? TURBINE_CLIENT_ERR(r.error) : r.offset;
    free(frame);
    return result;
}

static void offset_fetch_encode(struct turbine_proto_writer *w, void *ctx)
{
    struct one_part *o = ctx;
    struct turbine_offset_fetch_request head = {
        .group = o->group, .group_size = (uint16_t)strlen(o->group), .topic_count = 1};
    turbine_offset_fetch_request_begin(w, 0, &head);
    turbine_proto_add_topic(w, o->topic, strlen(o->topic), 1);
    struct turbine_offset_fetch_partition p = {.partition = o->partition};
    turbine_offset_fetch_add_partition(w, &p);
}

int64_t turbine_consumer_committed(struct turbine_consumer *k, const char *topic, int32_t partition)
{
    if (!k->config.group || !topic || !turbine_topic_name_valid(topic, strlen(topic)))
        return -EINVAL;
    struct one_part o = {.topic = topic, .partition = partition, .group = k->group};
    uint8_t *frame;
    struct turbine_response resp;
    int rc = tc_call(k->c, offset_fetch_encode, &o, TC_REQ_RESEND, 0, &frame, &resp);
    if (rc < 0)
        return rc;
    struct turbine_offsets_response body;
    enum turbine_error e = turbine_offsets_response_decode(&resp, &body);
    int64_t result = e ? TURBINE_CLIENT_ERR(e) : -EPROTO;
    struct turbine_proto_topic t;
    struct turbine_offset_fetch_result r;
    while (e == TURBINE_ERR_NONE && turbine_proto_next_topic(&body.topics, &t))
        while (turbine_offset_fetch_next_result(&t.partitions, &r))
            if (r.partition == partition)
                result = r.error ? TURBINE_CLIENT_ERR(r.error) : r.offset;
    free(frame);
    return result;
}

/* Commits: o->topic NULL = every assigned partition at its position. */
struct commit {
    struct turbine_consumer *k;
    struct one_part *one;
};

static void offset_commit_encode(struct turbine_proto_writer *w, void *ctx)
{
    struct commit *cm = ctx;
    struct turbine_consumer *k = cm->k;
    struct turbine_offset_commit_request head = {.group = k->group,
                                                 .group_size = (uint16_t)strlen(k->group)};
    if (cm->one) {
        head.topic_count = 1;
        turbine_offset_commit_request_begin(w, 0, &head);
        turbine_proto_add_topic(w, cm->one->topic, strlen(cm->one->topic), 1);
        const char *md = cm->one->metadata ? cm->one->metadata : "";
        struct turbine_offset_commit_partition p = {.partition = cm->one->partition,
                                                    .offset = cm->one->value,
                                                    .metadata = md,
                                                    .metadata_size = (uint16_t)strlen(md)};
        turbine_offset_commit_add_partition(w, &p);
        return;
    }
    head.topic_count = topic_count(k);
    turbine_offset_commit_request_begin(w, 0, &head);
    for (size_t i = 0; i < k->count;) {
        size_t n = 1;
        while (i + n < k->count && k->parts[i + n].topic_size == k->parts[i].topic_size &&
               memcmp(k->parts[i + n].topic, k->parts[i].topic, k->parts[i].topic_size) == 0)
            n++;
        turbine_proto_add_topic(w, k->parts[i].topic, k->parts[i].topic_size, (uint32_t)n);
        for (size_t j = i; j < i + n; j++) {
            struct turbine_offset_commit_partition p = {.partition = k->parts[j].partition,
                                                        .offset = k->parts[j].position,
                                                        .metadata = "",
                                                        .metadata_size = 0};
            turbine_offset_commit_add_partition(w, &p);
        }
        i += n;
    }
}

static int commit(struct turbine_consumer *k, struct one_part *one)
{
    if (!k->config.group)
        return -EINVAL;
    struct commit cm = {.k = k, .one = one};
    uint8_t *frame;
    struct turbine_response resp;
    int rc = tc_call(k->c, offset_commit_encode, &cm, TC_REQ_RESEND, 0, &frame, &resp);
    if (rc < 0)
        return rc;
    struct turbine_offsets_response body;
    enum turbine_error e = turbine_offsets_response_decode(&resp, &body);
    rc = e ? TURBINE_CLIENT_ERR(e) : 0;
    struct turbine_proto_topic t;
    struct turbine_offset_commit_result r;
    while (e == TURBINE_ERR_NONE && turbine_proto_next_topic(&body.topics, &t))
        while (turbine_offset_commit_next_result(&t.partitions, &r))
            if (r.error && rc == 0)
                rc = TURBINE_CLIENT_ERR(r.error);
    free(frame);
    return rc;
}

int turbine_consumer_commit(struct turbine_consumer *k)
{
    for (size_t i = 0; i < k->count; i++)
        if (k->parts[i].position < 0)
            return -EINVAL; /* a position not resolved yet: poll first */
    return k->count ? commit(k, NULL) : 0;
}

int turbine_consumer_commit_offset(struct turbine_consumer *k, const char *topic, int32_t partition,
                                   int64_t offset, const char *metadata)
{
    if (!topic || !turbine_topic_name_valid(topic, strlen(topic)) || offset < 0 ||
        (metadata && strlen(metadata) > UINT16_MAX))
        return -EINVAL;
    struct one_part o = {
        .topic = topic, .partition = partition, .value = offset, .metadata = metadata};
    return commit(k, &o);
}

/* ---- assign and seek ---------------------------------------------------------------------- */

static int64_t resolve(struct turbine_consumer *k, const char *topic, int32_t partition,
                       int64_t offset)
{
    if (offset >= 0)
        return offset;
    if (offset == TURBINE_OFFSET_COMMITTED) {
        int64_t committed = turbine_consumer_committed(k, topic, partition);
        if (committed < -1)
            return committed;
        if (committed >= 0)
            return committed;
        if (k->config.reset == TURBINE_RESET_NONE)
            return TURBINE_CLIENT_ERR(TURBINE_ERR_OFFSET_OUT_OF_RANGE);
        offset = k->config.reset == TURBINE_RESET_LATEST ? TURBINE_OFFSET_LATEST
                                                         : TURBINE_OFFSET_EARLIEST;
    }
    return list_offset(k, topic, partition, offset);
}

int64_t turbine_consumer_assign(struct turbine_consumer *k, const char *topic, int32_t partition,
                                int64_t offset)
{
    if (!topic || !turbine_topic_name_valid(topic, strlen(topic)) || partition < 0 ||
        offset < TURBINE_OFFSET_COMMITTED)
        return -EINVAL;
    if (offset == TURBINE_OFFSET_COMMITTED && !k->config.group)
        return -EINVAL;
    int64_t position = resolve(k, topic, partition, offset);
    if (position < 0)
        return position;
    bool found;
    size_t i = part_search(k, topic, strlen(topic), partition, &found);
    if (!found) {
        if (k->count == k->cap) {
            size_t cap = k->cap ? k->cap * 2 : 8;
            struct tk_part *parts = realloc(k->parts, cap * sizeof(*parts));
            if (!parts)
                return -ENOMEM;
            k->parts = parts;
            k->cap = cap;
        }
        memmove(&k->parts[i + 1], &k->parts[i], (k->count - i) * sizeof(k->parts[0]));
        k->count++;
        memset(&k->parts[i], 0, sizeof(k->parts[i]));
        strcpy(k->parts[i].topic, topic);
        k->parts[i].topic_size = (uint16_t)strlen(topic);
        k->parts[i].partition = partition;
    }
    k->parts[i].position = position;
    k->discard = true;
    return position;
}

int turbine_consumer_unassign(struct turbine_consumer *k, const char *topic, int32_t partition)
{
    bool found;
    if (!topic)
        return -EINVAL;
    size_t i = part_search(k, topic, strlen(topic), partition, &found);
    if (!found)
        return -ENOENT;
    memmove(&k->parts[i], &k->parts[i + 1], (k->count - i - 1) * sizeof(k->parts[0]));
    k->count--;
    k->discard = true;
    return 0;
}

int64_t turbine_consumer_seek(struct turbine_consumer *k, const char *topic, int32_t partition,
                              int64_t offset)
{
    if (!topic)
        return -EINVAL;
    struct tk_part *p = part_find(k, topic, partition);
    if (!p)
        return -ENOENT;
    if (offset < 0)
        return turbine_consumer_seek_time(k, topic, partition, offset);
    p->position = offset;
    k->discard = true;
    return offset;
}

int64_t turbine_consumer_seek_time(struct turbine_consumer *k, const char *topic, int32_t partition,
                                   int64_t timestamp)
{
    if (!topic || timestamp < TURBINE_OFFSET_EARLIEST)
        return -EINVAL;
    if (!part_find(k, topic, partition))
        return -ENOENT;
    int64_t offset = list_offset(k, topic, partition, timestamp);
    if (offset == -1) /* no record that new: the end */
        offset = list_offset(k, topic, partition, TURBINE_OFFSET_LATEST);
    if (offset < 0)
        return offset;
    part_find(k, topic, partition)->position = offset;
    k->discard = true;
    return offset;
}

int64_t turbine_consumer_position(struct turbine_consumer *k, const char *topic, int32_t partition)
{
    struct tk_part *p = topic ? part_find(k, topic, partition) : NULL;
    return p ? p->position : -ENOENT;
}

void turbine_message_headers(const struct turbine_message *m, struct turbine_header_iter *iter)
{
    struct turbine_record r = {
        .headers = m->headers, .headers_size = m->headers_size, .headers_count = m->headers_count};
    turbine_header_iter_init(iter, &r);
}

/* ---- fetch and poll ----------------------------------------------------------------------- */

struct fetch {
    struct turbine_consumer *k;
    int32_t wait_ms;
};

static void fetch_encode(struct turbine_proto_writer *w, void *ctx)
{
    struct fetch *f = ctx;
    struct turbine_consumer *k = f->k;
    struct turbine_fetch_request head = {.max_wait_ms = f->wait_ms,
                                         .min_bytes = k->config.min_bytes,
                                         .max_bytes = k->config.max_bytes};
    head.topic_count = topic_count(k);
    turbine_fetch_request_begin(w, 0, &head);
    for (size_t i = 0; i < k->count;) {
        size_t n = 1;
        while (i + n < k->count && k->parts[i + n].topic_size == k->parts[i].topic_size &&
               memcmp(k->parts[i + n].topic, k->parts[i].topic, k->parts[i].topic_size) == 0)
            n++;
        turbine_proto_add_topic(w, k->parts[i].topic, k->parts[i].topic_size, (uint32_t)n);
        for (size_t j = i; j < i + n; j++) {
            struct turbine_fetch_partition p = {.partition = k->parts[j].partition,
                                                .fetch_offset = k->parts[j].position,
                                                .partition_max_bytes =
                                                    k->config.partition_max_bytes};
            turbine_fetch_add_partition(w, &p);
        }
        i += n;
    }
}

/* Resolves positions left by an out-of-range reset. */
static int resolve_positions(struct turbine_consumer *k)
{
    for (size_t i = 0; i < k->count; i++) {
        struct tk_part *p = &k->parts[i];
        if (p->position >= 0)
            continue;
        int64_t offset = list_offset(k, p->topic, p->partition, p->position);
        if (offset < 0)
            return (int)offset;
        p->position = offset;
    }
    return 0;
}

static int fetch(struct turbine_consumer *k, int32_t wait_ms)
{
    int rc = resolve_positions(k);
    if (rc < 0)
        return rc;
    struct fetch f = {.k = k, .wait_ms = wait_ms};
    int32_t slack = k->c->config.request_timeout_ms < 5000 ? k->c->config.request_timeout_ms : 5000;
    struct turbine_response resp;
    rc = tc_call(k->c, fetch_encode, &f, TC_REQ_RESEND, wait_ms + slack, &k->frame, &resp);
    if (rc < 0)
        return rc;
    enum turbine_error e = turbine_fetch_response_decode(&resp, &k->body);
    if (e != TURBINE_ERR_NONE) {
        walk_reset(k);
        return TURBINE_CLIENT_ERR(e);
    }
    return 0;
}

/* Moves to the next partition result of the response; false when it is used up. */
static int next_partition(struct turbine_consumer *k, bool *more)
{
    struct turbine_fetch_result res;
    for (;;) {
        if (k->have_topic && turbine_fetch_next_result(&k->topic.partitions, &res))
            break;
        k->have_topic = turbine_proto_next_topic(&k->body.topics, &k->topic);
        if (!k->have_topic) {
            *more = false;
            return 0;
        }
    }
    *more = true;
    bool found;
    size_t i = part_search(k, k->topic.name, k->topic.name_size, res.partition, &found);
    k->cur = found ? &k->parts[i] : NULL;
    k->batch_next = k->batch_end = NULL;
    if (!k->cur)
        return 0;
    if (res.error == TURBINE_ERR_OFFSET_OUT_OF_RANGE) {
        if (k->config.reset == TURBINE_RESET_NONE)
            return TURBINE_CLIENT_ERR(res.error);
        k->cur->position =
            k->config.reset == TURBINE_RESET_LATEST ? POSITION_LATEST : POSITION_EARLIEST;
        return 0;
    }
    if (res.error != TURBINE_ERR_NONE)
        return turbine_error_retriable(res.error) ? 0 : TURBINE_CLIENT_ERR(res.error);
    k->batch_next = res.records;
    k->batch_end = res.records + res.records_size;
    return 0;
}

/* Starts the next batch of the current partition. */
static int next_batch(struct turbine_consumer *k)
{
    struct turbine_batch_info info;
    size_t left = (size_t)(k->batch_end - k->batch_next);
    enum turbine_batch_status st = turbine_batch_validate(k->batch_next, left, &info);
    if (st == TURBINE_BATCH_TRUNCATED) {
        k->batch_next = k->batch_end; /* a partial last batch: fetched again next time */
        return 0;
    }
    if (st != TURBINE_BATCH_OK)
        return TURBINE_CLIENT_ERR(TURBINE_ERR_CORRUPT_RECORD);
    const uint8_t *batch = k->batch_next;
    k->batch_next += info.size;
    k->header = info.header;
    int64_t last = info.header.base_offset + info.header.last_offset_delta;
    bool skip = (info.header.attributes & TURBINE_BATCH_ATTR_CONTROL) ||
                (info.header.attributes & TURBINE_BATCH_ATTR_CODEC_MASK);
    if (last < k->cur->position)
        return 0;
    if (skip) {
        tc_lock(k->c);
        k->c->stats.records_skipped += (uint64_t)info.header.records_count;
        tc_unlock(k->c);
        k->cur->position = last + 1;
        return 0;
    }
    st = turbine_record_iter_init(&k->it, batch, info.size);
    if (st != TURBINE_BATCH_OK)
        return TURBINE_CLIENT_ERR(TURBINE_ERR_CORRUPT_RECORD);
    k->in_batch = true;
    return 0;
}

/* Hands out records of the current response into messages[*n ..). */
static int drain(struct turbine_consumer *k, struct turbine_message *messages, int max, int *n)
{
    while (*n < max && k->frame && !k->used_up) {
        if (k->in_batch) {
            struct turbine_record r;
            if (turbine_record_iter_next(&k->it, &r)) {
                int64_t offset = k->header.base_offset + r.offset_delta;
                if (offset < k->cur->position)
                    continue;
                bool append_time = k->header.attributes & TURBINE_BATCH_ATTR_LOG_APPEND_TIME;
                messages[(*n)++] = (struct turbine_message){
                    .topic = k->cur->topic,
                    .partition = k->cur->partition,
                    .offset = offset,
                    .timestamp = append_time ? k->header.max_timestamp
                                             : k->header.base_timestamp + r.timestamp_delta,
                    .key = r.key,
                    .key_size = r.key_size,
                    .value = r.value,
                    .value_size = r.value_size,
                    .headers = r.headers,
                    .headers_size = r.headers_size,
                    .headers_count = r.headers_count,
                };
                k->cur->position = offset + 1;
                continue;
            }
            k->in_batch = false;
            if (turbine_record_iter_status(&k->it) != TURBINE_BATCH_OK)
                return TURBINE_CLIENT_ERR(TURBINE_ERR_CORRUPT_RECORD);
        }
        int rc;
        if (k->cur && k->batch_next < k->batch_end) {
            rc = next_batch(k);
        } else {
            bool more;
            rc = next_partition(k, &more);
            if (!more) {
                k->used_up = true; /* freed by the next poll: messages point into it */
                return rc;
            }
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

int turbine_consumer_poll(struct turbine_consumer *k, struct turbine_message *messages, int max,
                          int32_t timeout_ms)
{
    if (k->count == 0 || max <= 0)
        return -EINVAL;
    if (k->discard || k->used_up)
        walk_reset(k);
    int64_t deadline = tc_deadline_ms(timeout_ms < 0 ? 0 : timeout_ms);
    int n = 0;
    bool fetched = false;
    for (;;) {
        int rc = drain(k, messages, max, &n);
        if (rc < 0 || n > 0)
            return rc < 0 ? rc : n;
        int64_t left_ms = (deadline - tc_now_ns()) / TC_NS_PER_MS;
        if (fetched && left_ms <= 0)
            return 0;
        if (left_ms < 0)
            left_ms = 0;
        walk_reset(k); /* nothing handed out from it in this call */
        rc = fetch(k, (int32_t)(left_ms < k->config.max_wait_ms ? left_ms : k->config.max_wait_ms));
        fetched = true;
        if (rc < 0 && !turbine_client_retriable(rc))
            return rc;
    }
}
