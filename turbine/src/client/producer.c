/* SPDX-License-Identifier: MIT
 * producer.c - records into RecordBatch v2 batches per partition, batches into PRODUCE
 * requests, responses into per-record deliveries, retriable failures into retries.
 *
 * Per partition: at most one open batch (records are encoded into it as they come, so the
 * caller's memory is free at once), then a FIFO of closed batches, then the batches in flight.
 * A batch closes when the next record does not fit in batch_bytes, when linger_ms passed since
 * its first record, or on flush. With retries > 0 a partition has at most one batch in flight
 * and a failed batch goes back to the front of its FIFO, so records are written, and
 * delivered, in produce order per partition (a retry after a lost response may write a batch
 * twice: at-least-once). Batch bytes are sent from the batch's buffer (iovecs, no copy).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client_internal.h"

struct tp_part {
    struct tp_batch *open;
    struct tp_batch *head, *tail; /* closed, waiting to be sent */
    uint32_t in_flight;
    int64_t retry_at_ns;
};

struct tp_topic {
    struct tp_topic *next;
    char name[TURBINE_TOPIC_NAME_MAX + 1];
    uint16_t name_size;
    int32_t partitions;
    int32_t sticky; /* TURBINE_NULL_KEY_STICKY: the partition of null keys, -1 = choose */
    uint32_t rr;
    struct tp_part *parts;
};

struct turbine_producer {
    struct turbine_producer *next; /* the client's producers */
    struct turbine_client *c;
    struct turbine_producer_config config;
    struct tp_topic *topics;
    uint64_t buffered_bytes; /* of records accepted and not yet delivered */
    uint64_t outstanding;    /* records accepted and not yet delivered */
    uint32_t in_flight;      /* batches */
    uint32_t flushing;       /* flush calls waiting: every batch is ready */
    bool closing;
};

/* The batches of one PRODUCE request, grouped by topic. */
struct tp_request {
    struct turbine_producer *p;
    uint32_t count;
    struct tp_batch *batches[];
};

#define TP_REQUEST_BATCHES_MAX 256

const char *tp_topic_name(const struct tp_topic *t)
{
    return t->name;
}

void turbine_producer_config_default(struct turbine_producer_config *config)
{
    *config = (struct turbine_producer_config){
        .acks = TURBINE_ACKS_ALL,
        .linger_ms = 5,
        .batch_bytes = 16384,
        .buffer_bytes = 32u << 20,
        .retries = 5,
        .retry_backoff_ms = 100,
        .delivery_timeout_ms = 30000,
        .broker_timeout_ms = 10000,
        .max_in_flight = 5,
        .null_key = TURBINE_NULL_KEY_STICKY,
    };
}

int turbine_producer_create(struct turbine_client *c, const struct turbine_producer_config *config,
                            struct turbine_producer **out)
{
    struct turbine_producer *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    if (config)
        p->config = *config;
    else
        turbine_producer_config_default(&p->config);
    struct turbine_producer_config *k = &p->config;
    if ((k->acks != 0 && k->acks != 1 && k->acks != -1) || k->linger_ms < 0 ||
        k->batch_bytes < 128 || k->buffer_bytes < k->batch_bytes || k->retries < 0 ||
        k->retry_backoff_ms < 0 || k->delivery_timeout_ms <= 0 || k->broker_timeout_ms < 0 ||
        k->max_in_flight == 0 ||
        (k->null_key != TURBINE_NULL_KEY_STICKY && k->null_key != TURBINE_NULL_KEY_ROUND_ROBIN)) {
        free(p);
        return -EINVAL;
    }
    p->c = c;
    tc_lock(c);
    p->next = c->producers;
    c->producers = p;
    tc_unlock(c);
    *out = p;
    return 0;
}

/* ---- batches ------------------------------------------------------------------------------ */

static void batch_free(struct tp_batch *b)
{
    free(b->buf);
    free(b->recs);
    free(b);
}

/* Hands a finished batch (delivered or failed) to the deliverer. */
static void batch_done(struct turbine_client *c, struct tp_batch *b, int error, int64_t offset)
{
    b->error = error;
    b->base_offset = error == 0 ? offset : -1;
    b->next = NULL;
    if (c->done_tail)
        c->done_tail->next = b;
    else
        c->done_head = b;
    c->done_tail = b;
    tc_broadcast(c);
}

void tp_batch_delivered(struct turbine_client *c, struct tp_batch *b)
{
    struct turbine_producer *p = b->producer;
    TURBINE_ASSERT(p->outstanding >= (uint64_t)b->count);
    TURBINE_ASSERT(p->buffered_bytes >= b->bytes);
    p->outstanding -= (uint64_t)b->count;
    p->buffered_bytes -= b->bytes;
    for (int32_t i = 0; i < b->count; i++)
        if (b->recs[i].future)
            b->recs[i].future->done = true;
    batch_free(b);
}

static struct tp_batch *batch_new(struct turbine_producer *p, struct tp_topic *t, int32_t partition,
                                  size_t capacity)
{
    struct tp_batch *b = calloc(1, sizeof(*b));
    uint8_t *buf = malloc(capacity);
    if (!b || !buf) {
        free(b), free(buf);
        return NULL;
    }
    struct turbine_batch_params params = {.base_offset = 0,
                                          .partition_leader_epoch = -1,
                                          .attributes = 0,
                                          .producer_id = -1,
                                          .producer_epoch = -1,
                                          .base_sequence = -1};
    int rc = turbine_batch_builder_init(&b->builder, buf, capacity, &params);
    TURBINE_ASSERT(rc == 0);
    b->recs = malloc(16 * sizeof(*b->recs));
    if (!b->recs) {
        free(b), free(buf);
        return NULL;
    }
    b->cap = 16;
    b->buf = buf;
    b->producer = p;
    b->topic = t;
    b->partition = partition;
    b->created_ns = tc_now_ns();
    return b;
}

/* Closes the open batch of `part`: finished, queued to be sent. */
static void batch_close(struct tp_topic *t, struct tp_part *part)
{
    struct tp_batch *b = part->open;
    TURBINE_ASSERT(b != NULL && b->count > 0);
    int64_t size = turbine_batch_builder_finish(&b->builder);
    TURBINE_ASSERT(size > 0);
    b->size = (size_t)size;
    part->open = NULL;
    b->next = NULL;
    if (part->tail)
        part->tail->next = b;
    else
        part->head = b;
    part->tail = b;
    if (t->sticky == b->partition)
        t->sticky = -1; /* the next null key starts a batch elsewhere */
}

/* ---- topics ------------------------------------------------------------------------------- */

static struct tp_topic *topic_find(struct turbine_producer *p, const char *name)
{
    for (struct tp_topic *t = p->topics; t; t = t->next)
        if (strcmp(t->name, name) == 0)
            return t;
    return NULL;
}

static struct tp_topic *topic_add(struct turbine_producer *p, const char *name, int32_t partitions)
{
    struct tp_topic *t = calloc(1, sizeof(*t));
    struct tp_part *parts = calloc((size_t)partitions, sizeof(*parts));
    if (!t || !parts) {
        free(t), free(parts);
        return NULL;
    }
    strcpy(t->name, name);
    t->name_size = (uint16_t)strlen(name);
    t->partitions = partitions;
    t->sticky = -1;
    t->parts = parts;
    t->next = p->topics;
    p->topics = t;
    return t;
}

/* The topic's record, learning its partition count from METADATA the first time (blocking,
 * lock not held). */
static int topic_get(struct turbine_producer *p, const char *name, struct tp_topic **out)
{
    struct turbine_client *c = p->c;
    tc_lock(c);
    struct tp_topic *t = topic_find(p, name);
    tc_unlock(c);
    if (t) {
        *out = t;
        return 0;
    }
    if (tc_in_callback())
        return -EWOULDBLOCK;
    int n = turbine_admin_partitions(c, name);
    if (n < 0)
        return n;
    if (n == 0)
        return TURBINE_CLIENT_ERR(TURBINE_ERR_UNKNOWN_PARTITION);
    tc_lock(c);
    t = topic_find(p, name);
    if (!t)
        t = topic_add(p, name, n);
    tc_unlock(c);
    *out = t;
    return t ? 0 : -ENOMEM;
}

static int32_t choose_partition(struct turbine_producer *p, struct tp_topic *t,
                                const struct turbine_produce_record *rec)
{
    if (rec->partition != TURBINE_PARTITION_ANY)
        return rec->partition;
    if (rec->key_size >= 0)
        return tp_partition_for_key(rec->key, (size_t)rec->key_size, t->partitions);
    if (p->config.null_key == TURBINE_NULL_KEY_ROUND_ROBIN)
        return (int32_t)(t->rr++ % (uint32_t)t->partitions);
    if (t->sticky < 0)
        t->sticky = (int32_t)(t->rr++ % (uint32_t)t->partitions);
    return t->sticky;
}

/* ---- produce ------------------------------------------------------------------------------ */

static bool record_valid(const struct turbine_produce_record *rec)
{
    if (!rec->topic || !turbine_topic_name_valid(rec->topic, strlen(rec->topic)))
        return false;
    if (rec->key_size < -1 || rec->value_size < -1 || rec->headers_count < 0)
        return false;
    if ((rec->key_size > 0 && !rec->key) || (rec->value_size > 0 && !rec->value))
        return false;
    if (rec->headers_count > 0 && !rec->headers)
        return false;
    return rec->partition >= TURBINE_PARTITION_ANY;
}

static int64_t realtime_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Room for one more record entry in the open batch, before the record is appended (a new
 * batch starts with room for 16). */
static int rec_reserve(struct tp_batch *b)
{
    if (b && b->count == b->cap) {
        int32_t cap = b->cap * 2;
        struct tp_rec *recs = realloc(b->recs, (size_t)cap * sizeof(*recs));
        if (!recs)
            return -ENOMEM;
        b->recs = recs;
        b->cap = cap;
    }
    return 0;
}

/* Appends `in` to the partition's open batch, opening one (lock held). */
static int append_record(struct turbine_producer *p, struct tp_topic *t, int32_t partition,
                         const struct turbine_record_in *in, int64_t encoded)
{
    struct tp_part *part = &t->parts[partition];
    if (part->open) {
        int rc = turbine_batch_builder_append(&part->open->builder, in);
        if (rc == 0)
            return 0;
        if (rc != -ENOSPC)
            return rc;
        batch_close(t, part);
    }
    size_t capacity = p->config.batch_bytes;
    if ((size_t)encoded + TURBINE_BATCH_HEADER_SIZE + 16 > capacity)
        capacity = (size_t)encoded + TURBINE_BATCH_HEADER_SIZE + 16; /* a batch of its own */
    struct tp_batch *b = batch_new(p, t, partition, capacity);
    if (!b)
        return -ENOMEM;
    int rc = turbine_batch_builder_append(&b->builder, in);
    if (rc < 0) {
        batch_free(b);
        return rc;
    }
    part->open = b;
    return 0;
}

static int produce(struct turbine_producer *p, const struct turbine_produce_record *rec,
                   turbine_delivery_fn fn, void *arg, struct turbine_future *future)
{
    if (!record_valid(rec))
        return -EINVAL;
    struct tp_topic *t;
    int rc = topic_get(p, rec->topic, &t);
    if (rc < 0)
        return rc;
    if (rec->partition >= t->partitions)
        return -EINVAL;
    struct turbine_record_in in = {
        .timestamp = rec->timestamp == TURBINE_TIMESTAMP_NOW ? realtime_ms() : rec->timestamp,
        .key = rec->key,
        .key_size = rec->key_size,
        .value = rec->value,
        .value_size = rec->value_size,
        .headers = rec->headers,
        .headers_count = rec->headers_count,
    };
    int64_t encoded = turbine_record_encoded_size(&in, 0, 0);
    if (encoded < 0)
        return (int)encoded;
    struct turbine_client *c = p->c;
    tc_lock(c);
    if (p->closing)
        rc = -ECANCELED;
    else if ((uint64_t)encoded + TURBINE_BATCH_HEADER_SIZE + 256 > c->max_frame)
        rc = -EMSGSIZE;
    else if (p->buffered_bytes + (uint64_t)encoded > p->config.buffer_bytes)
        rc = -ENOBUFS;
    int32_t partition = rc == 0 ? choose_partition(p, t, rec) : -1;
    if (rc == 0)
        rc = rec_reserve(t->parts[partition].open);
    if (rc == 0)
        rc = append_record(p, t, partition, &in, encoded);
    if (rc == 0) {
        struct tp_batch *b = t->parts[partition].open;
        TURBINE_ASSERT(b->count < b->cap);
        b->recs[b->count++] =
            (struct tp_rec){.fn = fn, .arg = arg, .future = future, .timestamp = in.timestamp};
        TURBINE_ASSERT(b->count == b->builder.count);
        b->bytes += (uint64_t)encoded;
        p->buffered_bytes += (uint64_t)encoded;
        p->outstanding++;
        /* A new batch gives the IO loop a linger deadline; a full one is ready now. */
        if (b->count == 1 || p->config.linger_ms == 0 || b->builder.capacity - b->builder.used < 64)
            tc_broadcast(c);
    }
    tc_unlock(c);
    return rc < 0 ? rc : partition;
}

int turbine_produce(struct turbine_producer *p, const struct turbine_produce_record *rec,
                    turbine_delivery_fn fn, void *arg)
{
    return produce(p, rec, fn, arg, NULL);
}

int turbine_produce_future(struct turbine_producer *p, const struct turbine_produce_record *rec,
                           struct turbine_future *future)
{
    memset(future, 0, sizeof(*future));
    future->client = p->c;
    future->result.offset = -1;
    return produce(p, rec, NULL, NULL, future);
}

int turbine_future_wait(struct turbine_future *future)
{
    struct turbine_client *c = future->client;
    TURBINE_ASSERT(c != NULL);
    tc_lock(c);
    while (!future->done)
        tc_wait(c, LOOM_NO_DEADLINE);
    tc_unlock(c);
    return future->result.error;
}

int turbine_producer_flush(struct turbine_producer *p, int32_t timeout_ms)
{
    struct turbine_client *c = p->c;
    int64_t deadline = tc_deadline_ms(timeout_ms);
    tc_lock(c);
    p->flushing++;
    tc_broadcast(c);
    int rc = 0;
    while (p->outstanding > 0 && rc == 0)
        rc = tc_wait(c, deadline);
    p->flushing--;
    rc = p->outstanding > 0 ? -ETIMEDOUT : 0;
    tc_unlock(c);
    return rc;
}

/* ---- requests ----------------------------------------------------------------------------- */

static void produce_encode(struct turbine_proto_writer *w, void *ctx)
{
    struct tp_request *pr = ctx;
    uint32_t topics = 0;
    for (uint32_t i = 0; i < pr->count; i++)
        if (i == 0 || pr->batches[i]->topic != pr->batches[i - 1]->topic)
            topics++;
    struct turbine_produce_request head = {.acks = pr->p->config.acks,
                                           .timeout_ms = pr->p->config.broker_timeout_ms,
                                           .topic_count = topics};
    turbine_produce_request_begin(w, 0, &head);
    for (uint32_t i = 0; i < pr->count;) {
        struct tp_topic *t = pr->batches[i]->topic;
        uint32_t n = 0;
        while (i + n < pr->count && pr->batches[i + n]->topic == t)
            n++;
        turbine_proto_add_topic(w, t->name, t->name_size, n);
        for (uint32_t j = i; j < i + n; j++) {
            struct turbine_produce_partition part = {.partition = pr->batches[j]->partition,
                                                     .records = pr->batches[j]->buf,
                                                     .records_size =
                                                         (uint32_t)pr->batches[j]->size};
            turbine_produce_add_partition(w, &part);
        }
        i += n;
    }
}

/* A batch's send ended with `error` (0: written at `offset`). */
static void batch_sent(struct turbine_client *c, struct tp_batch *b, int error, int64_t offset,
                       int64_t now)
{
    struct turbine_producer *p = b->producer;
    struct tp_part *part = &b->topic->parts[b->partition];
    TURBINE_ASSERT(part->in_flight > 0 && p->in_flight > 0);
    part->in_flight--;
    p->in_flight--;
    bool retry = error != 0 && turbine_client_retriable(error) &&
                 b->attempts <= p->config.retries && !p->closing &&
                 now < b->created_ns + (int64_t)p->config.delivery_timeout_ms * TC_NS_PER_MS;
    if (!retry) {
        batch_done(c, b, error, offset);
        return;
    }
    b->next = part->head; /* first again: order is kept (one in flight with retries) */
    part->head = b;
    if (!part->tail)
        part->tail = b;
    part->retry_at_ns = now + (int64_t)p->config.retry_backoff_ms * TC_NS_PER_MS;
    c->stats.batch_retries++;
    tc_broadcast(c);
}

static void produce_done(struct turbine_client *c, void *ctx, int rc, uint8_t *frame, size_t size)
{
    struct tp_request *pr = ctx;
    int errors[TP_REQUEST_BATCHES_MAX];
    int64_t offsets[TP_REQUEST_BATCHES_MAX];
    for (uint32_t i = 0; i < pr->count; i++) {
        errors[i] = rc < 0 ? rc : frame ? -EPROTO : 0; /* acks 0: done once written */
        offsets[i] = -1;
    }
    struct turbine_response resp;
    struct turbine_produce_response body;
    enum turbine_error e = TURBINE_ERR_NONE;
    if (frame) {
        e = turbine_response_parse(frame, size, &resp);
        if (e == TURBINE_ERR_NONE)
            e = turbine_produce_response_decode(&resp, &body);
    }
    struct turbine_proto_topic topic;
    struct turbine_produce_result res;
    while (frame && e == TURBINE_ERR_NONE && turbine_proto_next_topic(&body.topics, &topic)) {
        while (turbine_produce_next_result(&topic.partitions, &res)) {
            for (uint32_t i = 0; i < pr->count; i++) {
                struct tp_batch *b = pr->batches[i];
                if (b->partition == res.partition && errors[i] == -EPROTO &&
                    b->topic->name_size == topic.name_size &&
                    memcmp(b->topic->name, topic.name, topic.name_size) == 0) {
                    errors[i] = res.error ? TURBINE_CLIENT_ERR(res.error) : 0;
                    offsets[i] = res.base_offset;
                    break;
                }
            }
        }
    }
    if (frame && e != TURBINE_ERR_NONE)
        for (uint32_t i = 0; i < pr->count; i++)
            errors[i] = TURBINE_CLIENT_ERR(e);
    int64_t now = tc_now_ns();
    for (uint32_t i = 0; i < pr->count; i++)
        batch_sent(c, pr->batches[i], errors[i], offsets[i], now);
    free(frame);
    free(pr);
}

/* Fails the partition's waiting batches older than delivery_timeout_ms (none in flight, so
 * the order of deliveries is kept). */
static void expire_part(struct turbine_client *c, struct turbine_producer *p, struct tp_topic *t,
                        struct tp_part *part, int64_t now)
{
    int64_t age = (int64_t)p->config.delivery_timeout_ms * TC_NS_PER_MS;
    if (part->in_flight > 0)
        return;
    if (!part->head && part->open && part->open->created_ns + age <= now)
        batch_close(t, part);
    while (part->head && part->head->created_ns + age <= now) {
        struct tp_batch *b = part->head;
        part->head = b->next;
        if (!part->head)
            part->tail = NULL;
        batch_done(c, b, -ETIMEDOUT, -1);
    }
}

/* Takes the next batch of `part` to send, closing its open batch when it is due. */
static struct tp_batch *part_take(struct turbine_producer *p, struct tp_topic *t,
                                  struct tp_part *part, int64_t now, int64_t *next)
{
    uint32_t cap = p->config.retries > 0 ? 1 : p->config.max_in_flight;
    if (part->in_flight >= cap)
        return NULL;
    if (part->retry_at_ns > now) {
        *next = part->retry_at_ns < *next ? part->retry_at_ns : *next;
        return NULL;
    }
    if (!part->head && part->open) {
        int64_t due = part->open->created_ns + (int64_t)p->config.linger_ms * TC_NS_PER_MS;
        if (p->flushing || now >= due)
            batch_close(t, part);
        else
            *next = due < *next ? due : *next;
    }
    struct tp_batch *b = part->head;
    if (b) {
        part->head = b->next;
        if (!part->head)
            part->tail = NULL;
        b->next = NULL;
        part->in_flight++;
        p->in_flight++;
        b->attempts++;
    }
    return b;
}

static void producer_collect(struct turbine_client *c, struct turbine_producer *p, int64_t now,
                             int64_t *next)
{
    for (;;) {
        struct tp_request *pr =
            malloc(sizeof(*pr) + TP_REQUEST_BATCHES_MAX * sizeof(struct tp_batch *));
        if (!pr)
            return; /* tried again on the next loop */
        pr->p = p;
        pr->count = 0;
        uint64_t bytes = 0;
        for (struct tp_topic *t = p->topics; t; t = t->next) {
            for (int32_t i = 0; i < t->partitions && pr->count < TP_REQUEST_BATCHES_MAX; i++) {
                if (bytes >= c->max_frame / 2)
                    break;
                expire_part(c, p, t, &t->parts[i], now);
                struct tp_batch *b = part_take(p, t, &t->parts[i], now, next);
                if (b) {
                    pr->batches[pr->count++] = b;
                    bytes += b->size;
                }
            }
        }
        if (pr->count == 0) {
            free(pr);
            return;
        }
        struct tc_req *r;
        int rc = tc_encode(produce_encode, pr, true, &r);
        if (rc < 0) {
            for (uint32_t i = 0; i < pr->count; i++)
                batch_sent(c, pr->batches[i], rc, -1, now);
            free(pr);
            continue;
        }
        r->fn = produce_done;
        r->ctx = pr;
        r->flags = p->config.acks == 0 ? TC_REQ_NO_RESPONSE : 0;
        r->deadline_ns = now + (int64_t)c->config.request_timeout_ms * TC_NS_PER_MS;
        c->stats.batches_sent += pr->count;
        tc_submit_locked(c, r);
        /* expire() ran before this request existed: the loop must not sleep past it */
        *next = r->deadline_ns < *next ? r->deadline_ns : *next;
    }
}

void tp_collect(struct turbine_client *c, int64_t now, int64_t *next)
{
    for (struct turbine_producer *p = c->producers; p; p = p->next) {
        if (p->closing)
            continue;
        if (c->state == TC_READY) {
            producer_collect(c, p, now, next);
            continue;
        }
        /* Not connected: records still fail at their delivery timeout. */
        for (struct tp_topic *t = p->topics; t; t = t->next)
            for (int32_t i = 0; i < t->partitions; i++)
                expire_part(c, p, t, &t->parts[i], now);
        int64_t tick = now + 100 * TC_NS_PER_MS;
        *next = tick < *next ? tick : *next;
    }
}

/* ---- destroy ------------------------------------------------------------------------------ */

void turbine_producer_destroy(struct turbine_producer *p)
{
    if (!p)
        return;
    struct turbine_client *c = p->c;
    tc_lock(c);
    p->closing = true;
    for (struct tp_topic *t = p->topics; t; t = t->next) {
        for (int32_t i = 0; i < t->partitions; i++) {
            struct tp_part *part = &t->parts[i];
            if (part->open)
                batch_close(t, part);
            while (part->head) {
                struct tp_batch *b = part->head;
                part->head = b->next;
                batch_done(c, b, -ECANCELED, -1);
            }
            part->tail = NULL;
        }
    }
    /* Batches in flight end by response or deadline; their callbacks run before we return. */
    while (p->in_flight > 0 || p->outstanding > 0) {
        tc_deliver(c);
        if (p->in_flight > 0 || p->outstanding > 0)
            tc_wait(c, LOOM_NO_DEADLINE);
    }
    struct turbine_producer **link = &c->producers;
    while (*link != p)
        link = &(*link)->next;
    *link = p->next;
    tc_unlock(c);
    while (p->topics) {
        struct tp_topic *t = p->topics;
        p->topics = t->next;
        free(t->parts);
        free(t);
    }
    free(p);
}
