/* SPDX-License-Identifier: MIT
 * client_scenarios.h - the client's tests against the fake broker, written once against the
 * public API and run by client_test.c from a plain thread and by client_fiber_test.c from a
 * loom fiber: the same calls block a thread in one and suspend a fiber in the other.
 */
#ifndef TURBINE_CLIENT_SCENARIOS_H
#define TURBINE_CLIENT_SCENARIOS_H

#include "fake_broker.h"
#include "loom/clock.h"
#include "loom/fiber.h"
#include "loom/reactor.h"
#include "turbine/client.h"

static void sc_sleep_ms(int ms)
{
    if (loom_on_reactor())
        loom_sleep((int64_t)ms * LOOM_NS_PER_MS);
    else
        usleep((useconds_t)ms * 1000);
}

static int64_t sc_ms_since(int64_t start_ns)
{
    return (loom_clock_ns() - start_ns) / LOOM_NS_PER_MS;
}

/* Runs fn(args[i]) for i < n at once: threads, or fibers of this core. */
typedef int (*sc_fn)(void *arg);

struct sc_thread_arg {
    sc_fn fn;
    void *arg;
};

static void *sc_thread_main(void *p)
{
    struct sc_thread_arg *a = p;
    a->fn(a->arg);
    return NULL;
}

static void sc_concurrently(sc_fn fn, void **args, int n)
{
    if (loom_on_reactor()) {
        struct loom_fiber *f[16];
        struct loom_fiber_attr attr = {.name = "sc", .joinable = true};
        for (int i = 0; i < n; i++)
            CHECK_EQ(loom_spawn(&f[i], fn, args[i], &attr), 0);
        for (int i = 0; i < n; i++)
            CHECK_EQ(loom_fiber_join(f[i], LOOM_NO_DEADLINE, NULL), 0);
        return;
    }
    pthread_t t[16];
    struct sc_thread_arg a[16];
    for (int i = 0; i < n; i++) {
        a[i] = (struct sc_thread_arg){fn, args[i]};
        CHECK_EQ(pthread_create(&t[i], NULL, sc_thread_main, &a[i]), 0);
    }
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
}

static struct turbine_client *sc_client(struct fake_broker *fb, int32_t request_timeout_ms)
{
    struct turbine_client_config config;
    turbine_client_config_default(&config);
    config.port = fb->port;
    config.request_timeout_ms = request_timeout_ms;
    config.reconnect_backoff_ms = 10;
    config.reconnect_backoff_max_ms = 100;
    config.connect_timeout_ms = 1000;
    struct turbine_client *c;
    CHECK_EQ(turbine_client_create(&config, &c), 0);
    CHECK_EQ(turbine_client_wait_connected(c, 5000), 0);
    return c;
}

static void sc_add_topic(struct fake_broker *fb, const char *name, int partitions)
{
    fb_lock(fb);
    CHECK_EQ(fb_add_topic(fb, name, strlen(name), partitions), TURBINE_ERR_NONE);
    fb_unlock(fb);
}

/* ---- deliveries --------------------------------------------------------------------------- */

#define SC_RECORDS 256

struct sc_deliveries {
    int slow_us; /* each callback takes this long (the IO context is busy delivering) */
    int count;
    int32_t partition[SC_RECORDS];
    int64_t offset[SC_RECORDS];
    int error[SC_RECORDS];
    int order[SC_RECORDS]; /* record ids in callback order */
};

struct sc_rec {
    struct sc_deliveries *d;
    int id;
};

static struct sc_rec sc_recs[SC_RECORDS];

/* Runs on the client's IO context; flush() orders it before the test reads (client lock). */
static void sc_delivered(const struct turbine_delivery *delivery, void *arg)
{
    struct sc_rec *r = arg;
    r->d->partition[r->id] = delivery->partition;
    r->d->offset[r->id] = delivery->offset;
    r->d->error[r->id] = delivery->error;
    r->d->order[r->d->count++] = r->id;
    if (r->d->slow_us > 0) {
        int64_t until = loom_clock_ns() + (int64_t)r->d->slow_us * 1000;
        while (loom_clock_ns() < until) { /* busy: a fiber's callback must not yield */
        }
    }
}

static int sc_produce(struct turbine_producer *p, struct sc_deliveries *d, const char *topic,
                      int id, const char *key, const char *value)
{
    sc_recs[id] = (struct sc_rec){d, id};
    struct turbine_header_in h = {.key = "id", .key_size = 2, .value = &id, .value_size = 4};
    struct turbine_produce_record rec = {
        .topic = topic,
        .partition = TURBINE_PARTITION_ANY,
        .key = key,
        .key_size = key ? (int32_t)strlen(key) : -1,
        .value = value,
        .value_size = (int32_t)strlen(value),
        .headers = &h,
        .headers_count = 1,
        .timestamp = 1700000000000 + id,
    };
    return turbine_produce(p, &rec, sc_delivered, &sc_recs[id]);
}

static struct turbine_producer *sc_producer(struct turbine_client *c, int16_t acks, int linger_ms,
                                            uint32_t batch_bytes)
{
    struct turbine_producer_config config;
    turbine_producer_config_default(&config);
    config.acks = acks;
    config.linger_ms = linger_ms;
    config.batch_bytes = batch_bytes;
    config.retry_backoff_ms = 10;
    struct turbine_producer *p;
    CHECK_EQ(turbine_producer_create(c, &config, &p), 0);
    return p;
}

/* Every record of partition `p` of `topic` in the fake's log: values in order. */
static int sc_log_values(struct fake_broker *fb, const char *topic, int p, char values[][32],
                         int max)
{
    fb_lock(fb);
    struct fb_log *log = &fb_topic(fb, topic, strlen(topic))->logs[p];
    int n = 0;
    size_t at = 0;
    while (at < log->size) {
        struct turbine_batch_info info;
        CHECK_EQ(turbine_batch_validate(log->data + at, log->size - at, &info), TURBINE_BATCH_OK);
        struct turbine_record_iter it;
        struct turbine_record r;
        turbine_record_iter_init(&it, log->data + at, info.size);
        while (turbine_record_iter_next(&it, &r) && n < max) {
            CHECK_LT(r.value_size, 32);
            memcpy(values[n], r.value, (size_t)r.value_size);
            values[n++][r.value_size] = 0;
        }
        at += info.size;
    }
    fb_unlock(fb);
    return n;
}

/* ---- scenarios ---------------------------------------------------------------------------- */

/* Admin calls; a request the fake does not know comes back as UNKNOWN_API. */
static void sc_admin(struct fake_broker *fb)
{
    struct turbine_client *c = sc_client(fb, 5000);
    CHECK_EQ(turbine_client_api_version(c, TURBINE_API_PRODUCE), 0);
    CHECK_EQ(turbine_admin_create_topic(c, "admin-a", 3, NULL), 0);
    CHECK_EQ(turbine_admin_create_topic(c, "admin-a", 3, NULL),
             TURBINE_CLIENT_ERR(TURBINE_ERR_TOPIC_EXISTS));
    CHECK_EQ(turbine_admin_create_topic(c, "admin-b", 1, NULL), 0);
    CHECK_EQ(turbine_admin_create_topic(c, "bad/name", 1, NULL), -EINVAL);
    CHECK_EQ(turbine_admin_partitions(c, "admin-a"), 3);
    CHECK_EQ(turbine_admin_partitions(c, "nope"), TURBINE_CLIENT_ERR(TURBINE_ERR_UNKNOWN_TOPIC));
    struct turbine_topic_info *list;
    size_t count;
    CHECK_EQ(turbine_admin_list_topics(c, &list, &count), 0);
    CHECK_EQ(count, 2);
    CHECK_STREQ(list[0].name, "admin-a");
    CHECK_EQ(list[0].partitions, 3);
    CHECK_STREQ(list[1].name, "admin-b");
    free(list);
    struct turbine_topic_description *d;
    CHECK_EQ(turbine_admin_describe_topic(c, "admin-a", &d),
             TURBINE_CLIENT_ERR(TURBINE_ERR_UNKNOWN_API));
    CHECK_EQ(turbine_admin_delete_topic(c, "admin-a"), 0);
    CHECK_EQ(turbine_admin_delete_topic(c, "admin-b"), 0);
    CHECK_EQ(turbine_admin_delete_topic(c, "admin-b"),
             TURBINE_CLIENT_ERR(TURBINE_ERR_UNKNOWN_TOPIC));
    turbine_client_destroy(c);
}

/* Keyed records land where Kafka puts them; consume them back, bytes and order intact. */
static void sc_produce_consume(struct fake_broker *fb)
{
    sc_add_topic(fb, "orders", 4);
    struct turbine_client *c = sc_client(fb, 5000);
    struct turbine_producer *p = sc_producer(c, TURBINE_ACKS_ALL, 5, 16384);
    static struct sc_deliveries d;
    memset(&d, 0, sizeof(d));
    const int n = 200;
    char key[32], value[32];
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "key-%d", i % 37);
        snprintf(value, sizeof(value), "value-%d", i);
        int part = sc_produce(p, &d, "orders", i, key, value);
        CHECK_EQ(part, turbine_partition_for_key(key, strlen(key), 4));
    }
    CHECK_EQ(turbine_producer_flush(p, 5000), 0);
    CHECK_EQ(d.count, n);
    int64_t next[4] = {0};
    for (int k = 0; k < n; k++) {
        int i = d.order[k];
        CHECK_EQ(d.error[i], 0);
        if (d.offset[i] == next[d.partition[i]]) /* callbacks in offset order per partition */
            next[d.partition[i]]++;
        else
            CHECK_EQ(d.offset[i], next[d.partition[i]]);
    }
    struct turbine_future f;
    struct turbine_produce_record rec = {.topic = "orders",
                                         .partition = 2,
                                         .key = NULL,
                                         .key_size = -1,
                                         .value = "future",
                                         .value_size = 6,
                                         .timestamp = TURBINE_TIMESTAMP_NOW};
    CHECK_EQ(turbine_produce_future(p, &rec, &f), 2);
    CHECK_EQ(turbine_future_wait(&f), 0);
    CHECK_EQ(f.result.offset, next[2]);
    turbine_producer_destroy(p);

    struct turbine_consumer_config kc;
    turbine_consumer_config_default(&kc);
    kc.group = "g1";
    kc.max_wait_ms = 50;
    struct turbine_consumer *k;
    CHECK_EQ(turbine_consumer_create(c, &kc, &k), 0);
    for (int i = 0; i < 4; i++)
        CHECK_EQ(turbine_consumer_assign(k, "orders", i, TURBINE_OFFSET_COMMITTED), 0);
    int got = 0, seen[4] = {0};
    struct turbine_message m[32];
    int64_t start = loom_clock_ns();
    while (got < n + 1 && sc_ms_since(start) < 5000) {
        int r = turbine_consumer_poll(k, m, 32, 100);
        CHECK_GE(r, 0);
        for (int j = 0; j < r; j++, got++) {
            CHECK_EQ(m[j].offset, seen[m[j].partition]++);
            if (m[j].key_size < 0) {
                CHECK_EQ(m[j].value_size, 6);
                continue;
            }
            struct turbine_header_iter hi;
            struct turbine_header h;
            turbine_message_headers(&m[j], &hi);
            CHECK(turbine_header_iter_next(&hi, &h));
            int id;
            memcpy(&id, h.value, 4);
            snprintf(key, sizeof(key), "key-%d", id % 37);
            snprintf(value, sizeof(value), "value-%d", id);
            CHECK_EQ(m[j].key_size, (int)strlen(key));
            CHECK(memcmp(m[j].key, key, strlen(key)) == 0);
            CHECK(memcmp(m[j].value, value, strlen(value)) == 0);
            CHECK_EQ(m[j].partition, d.partition[id]);
            CHECK_EQ(m[j].offset, d.offset[id]);
            CHECK_EQ(m[j].timestamp, 1700000000000 + id);
            CHECK_STREQ(m[j].topic, "orders");
        }
    }
    CHECK_EQ(got, n + 1);
    CHECK_EQ(turbine_consumer_poll(k, m, 32, 0), 0); /* nothing more */
    CHECK_EQ(turbine_consumer_commit(k), 0);
    for (int i = 0; i < 4; i++)
        CHECK_EQ(turbine_consumer_committed(k, "orders", i), seen[i]);
    CHECK_EQ(turbine_consumer_commit_offset(k, "orders", 0, 1, "meta"), 0);
    CHECK_EQ(turbine_consumer_committed(k, "orders", 0), 1);
    /* seek: earliest, by time, latest */
    CHECK_EQ(turbine_consumer_seek_time(k, "orders", 1, TURBINE_OFFSET_EARLIEST), 0);
    CHECK_EQ(turbine_consumer_seek_time(k, "orders", 1, TURBINE_OFFSET_LATEST), seen[1]);
    int first_p1 = -1;
    for (int i = 0; i < n && first_p1 < 0; i++)
        if (d.partition[i] == 1 && i >= 100)
            first_p1 = i;
    CHECK_EQ(turbine_consumer_seek_time(k, "orders", 1, 1700000000000 + first_p1),
             d.offset[first_p1]);
    CHECK_EQ(turbine_consumer_position(k, "orders", 1), d.offset[first_p1]);
    CHECK_EQ(turbine_consumer_seek(k, "orders", 9, 0), -ENOENT);
    CHECK_EQ(turbine_consumer_unassign(k, "orders", 0), 0);
    CHECK_EQ(turbine_consumer_unassign(k, "orders", 2), 0);
    CHECK_EQ(turbine_consumer_unassign(k, "orders", 3), 0);
    CHECK_GT(turbine_consumer_poll(k, m, 1, 1000), 0);
    CHECK_EQ(m[0].offset, d.offset[first_p1]);
    turbine_consumer_destroy(k);
    fb_lock(fb);
    CHECK_EQ(fb->decode_errors, 0);
    CHECK_EQ(fb->corr_errors, 0);
    fb_unlock(fb);
    turbine_client_destroy(c);
}

/* linger_ms holds a batch; batch_bytes closes it; every batch sent is valid. */
static void sc_batching(struct fake_broker *fb)
{
    sc_add_topic(fb, "batched", 1);
    struct turbine_client *c = sc_client(fb, 5000);
    struct turbine_producer *p = sc_producer(c, 1, 60000, 1024);
    static struct sc_deliveries d;
    memset(&d, 0, sizeof(d));
    fb_lock(fb);
    int before = fb->produce_requests;
    fb_unlock(fb);
    for (int i = 0; i < 3; i++)
        CHECK_EQ(sc_produce(p, &d, "batched", i, NULL, "small"), 0);
    sc_sleep_ms(50);
    fb_lock(fb);
    CHECK_EQ(fb->produce_requests, before); /* lingering */
    fb_unlock(fb);
    CHECK_EQ(turbine_producer_flush(p, 5000), 0);
    fb_lock(fb);
    CHECK_EQ(fb_topic(fb, "batched", 7)->logs[0].batches, 1);
    CHECK_EQ(fb_topic(fb, "batched", 7)->logs[0].next_offset, 3);
    fb_unlock(fb);
    char value[128];
    memset(value, 'x', 100);
    value[100] = 0;
    for (int i = 0; i < 100; i++)
        CHECK_EQ(sc_produce(p, &d, "batched", i, NULL, value), 0);
    CHECK_EQ(turbine_producer_flush(p, 5000), 0);
    fb_lock(fb);
    struct fb_log *log = &fb_topic(fb, "batched", 7)->logs[0];
    CHECK_EQ(log->next_offset, 103);
    CHECK_GE(log->batches, 1 + 100 * 100 / 1024);
    size_t at = 0;
    while (at < log->size) {
        struct turbine_batch_info info;
        CHECK_EQ(turbine_batch_validate(log->data + at, log->size - at, &info), TURBINE_BATCH_OK);
        CHECK_LE(info.size, 1024);
        at += info.size;
    }
    fb_unlock(fb);
    turbine_producer_destroy(p);
    turbine_client_destroy(c);
}

/* Slow delivery callbacks: whoever delivers drops the client lock for long, so responses
 * (and batches answered before their send returned) come in meanwhile. Every batch must
 * still go out, one at a time, and flush must end. (The IO loop once slept through such a
 * response with nothing left to wake it.) */
static void sc_slow_callbacks(struct fake_broker *fb)
{
    sc_add_topic(fb, "lagging", 1);
    struct turbine_client *c = sc_client(fb, 5000);
    struct turbine_producer *p = sc_producer(c, 1, 60000, 256); /* about 2 records a batch */
    static struct sc_deliveries d;
    memset(&d, 0, sizeof(d));
    d.slow_us = 300;
    char value[101];
    memset(value, 'v', 100);
    value[100] = 0;
    int n = 200;
    for (int i = 0; i < n; i++)
        CHECK_EQ(sc_produce(p, &d, "lagging", i, NULL, value), 0);
    CHECK_EQ(turbine_producer_flush(p, 10000), 0);
    CHECK_EQ(d.count, n);
    for (int i = 0; i < n; i++) {
        CHECK_EQ(d.order[i], i);
        CHECK_EQ(d.error[i], 0);
        CHECK_EQ(d.offset[i], i);
    }
    fb_lock(fb);
    struct fb_log *log = &fb_topic(fb, "lagging", 7)->logs[0];
    CHECK_EQ(log->next_offset, n);
    CHECK_GE(log->batches, n / 3);
    fb_unlock(fb);
    turbine_producer_destroy(p);
    turbine_client_destroy(c);
}

/* A broker that reads slowly (1 KiB every 10 ms) but keeps reading: a send that cannot finish
 * by its request's deadline fails then, however much each write moves, and the connection is
 * dropped. (It once ended only when the whole frame was out: seconds here.) */
static void sc_slow_reader(struct fake_broker *fb)
{
    sc_add_topic(fb, "trickle", 1);
    fb_lock(fb);
    fb->trickle = 1024;
    fb_unlock(fb);
    struct turbine_client *c = sc_client(fb, 300);
    struct turbine_producer_config config;
    turbine_producer_config_default(&config);
    config.acks = 1;
    config.linger_ms = 0;
    config.batch_bytes = 256 * 1024;
    config.retries = 0;
    struct turbine_producer *p;
    CHECK_EQ(turbine_producer_create(c, &config, &p), 0);
    static struct sc_deliveries d;
    memset(&d, 0, sizeof(d));
    static char big[100 * 1024 + 1];
    memset(big, 'b', sizeof(big) - 1);
    int n = 40; /* about 4 MiB: more than the socket buffers hold, 40 s at the trickle */
    int64_t start = loom_clock_ns();
    for (int i = 0; i < n; i++)
        CHECK_EQ(sc_produce(p, &d, "trickle", i, NULL, big), 0);
    struct turbine_client_stats st;
    do {
        sc_sleep_ms(5);
        turbine_client_stats(c, &st);
    } while (st.disconnects == 0 && sc_ms_since(start) < 10000);
    CHECK_GE(st.disconnects, 1);
    CHECK_GE(st.timeouts, 1);
    CHECK_LT(sc_ms_since(start), 1500); /* the 300 ms deadline, and slack */
    /* the broker reads at full speed again (it serves one connection at a time: the client's
     * next connection waits until the dropped one's bytes are read) */
    fb_lock(fb);
    fb->trickle = 0;
    fb_unlock(fb);
    CHECK_EQ(turbine_producer_flush(p, 10000), 0);
    CHECK_EQ(d.count, n);
    int failed = 0;
    for (int i = 0; i < n; i++)
        failed += d.error[i] != 0;
    CHECK_GT(failed, 0);
    memset(&d, 0, sizeof(d));
    CHECK_EQ(sc_produce(p, &d, "trickle", 0, NULL, "after"), 0);
    CHECK_EQ(turbine_producer_flush(p, 5000), 0);
    CHECK_EQ(d.count, 1);
    CHECK_EQ(d.error[0], 0);
    turbine_producer_destroy(p);
    turbine_client_destroy(c);
}

/* acks 0: no response, deliveries once written (offset -1). */
static void sc_acks0(struct fake_broker *fb)
{
    sc_add_topic(fb, "fire", 2);
    struct turbine_client *c = sc_client(fb, 5000);
    struct turbine_producer *p = sc_producer(c, 0, 1, 16384);
    static struct sc_deliveries d;
    memset(&d, 0, sizeof(d));
    for (int i = 0; i < 20; i++)
        CHECK_GE(sc_produce(p, &d, "fire", i, NULL, "fire"), 0);
    CHECK_EQ(turbine_producer_flush(p, 5000), 0);
    CHECK_EQ(d.count, 20);
    for (int i = 0; i < 20; i++) {
        CHECK_EQ(d.error[i], 0);
        CHECK_EQ(d.offset[i], -1);
    }
    /* the fake has them once a later request is answered (in order on the connection) */
    CHECK_EQ(turbine_admin_partitions(c, "fire"), 2);
    fb_lock(fb);
    struct fb_topic *t = fb_topic(fb, "fire", 4);
    CHECK_EQ(t->logs[0].next_offset + t->logs[1].next_offset, 20);
    fb_unlock(fb);
    turbine_producer_destroy(p);
    turbine_client_destroy(c);
}

static int sc_partitions_call(void *arg)
{
    struct turbine_client *c = arg;
    CHECK_EQ(turbine_admin_partitions(c, "piped"), 5);
    return 0;
}

/* Five calls at once are on the wire together and each gets its own answer. */
static void sc_pipelining(struct fake_broker *fb)
{
    sc_add_topic(fb, "piped", 5);
    struct turbine_client *c = sc_client(fb, 5000);
    fb_lock(fb);
    fb->hold = 5;
    fb->max_pending = 0;
    fb_unlock(fb);
    void *args[5] = {c, c, c, c, c};
    sc_concurrently(sc_partitions_call, args, 5);
    fb_lock(fb);
    CHECK_EQ(fb->max_pending, 5);
    CHECK_EQ(fb->corr_errors, 0);
    fb_unlock(fb);
    turbine_client_destroy(c);
}

/* Retriable errors are retried with order kept; a non-retriable one fails its records. */
static void sc_retries(struct fake_broker *fb)
{
    sc_add_topic(fb, "retry", 1);
    struct turbine_client *c = sc_client(fb, 5000);
    struct turbine_producer *p = sc_producer(c, 1, 0, 256);
    static struct sc_deliveries d;
    memset(&d, 0, sizeof(d));
    fb_lock(fb);
    fb->fail_produce = 3;
    fb->fail_produce_error = TURBINE_ERR_NOT_LEADER;
    fb_unlock(fb);
    char value[32];
    for (int i = 0; i < 60; i++) {
        snprintf(value, sizeof(value), "v%d", i);
        CHECK_EQ(sc_produce(p, &d, "retry", i, NULL, value), 0);
    }
    CHECK_EQ(turbine_producer_flush(p, 5000), 0);
    struct turbine_client_stats st;
    turbine_client_stats(c, &st);
    CHECK_GE(st.batch_retries, 3);
    for (int i = 0; i < 60; i++) {
        CHECK_EQ(d.error[i], 0);
        CHECK_EQ(d.offset[i], i);
        CHECK_EQ(d.order[i], i);
    }
    static char values[128][32];
    CHECK_EQ(sc_log_values(fb, "retry", 0, values, 128), 60);
    for (int i = 0; i < 60; i++) {
        snprintf(value, sizeof(value), "v%d", i);
        CHECK_STREQ(values[i], value);
    }
    fb_lock(fb);
    fb->fail_produce = 1;
    fb->fail_produce_error = TURBINE_ERR_RECORD_TOO_LARGE;
    fb_unlock(fb);
    memset(&d, 0, sizeof(d));
    CHECK_EQ(sc_produce(p, &d, "retry", 0, NULL, "doomed"), 0);
    CHECK_EQ(turbine_producer_flush(p, 5000), 0);
    CHECK_EQ(d.error[0], TURBINE_CLIENT_ERR(TURBINE_ERR_RECORD_TOO_LARGE));
    CHECK_EQ(d.offset[0], -1);
    turbine_producer_destroy(p);
    turbine_client_destroy(c);
}

/* The broker drops the connection on a produce: the client reconnects and sends it again. */
static void sc_reconnect(struct fake_broker *fb)
{
    sc_add_topic(fb, "drop", 1);
    struct turbine_client *c = sc_client(fb, 5000);
    struct turbine_producer *p = sc_producer(c, 1, 0, 512);
    static struct sc_deliveries d;
    memset(&d, 0, sizeof(d));
    CHECK_EQ(turbine_admin_partitions(c, "drop"), 1);
    fb_lock(fb);
    fb->drop_at_request = fb->requests + 2;
    int connections = fb->connections;
    fb_unlock(fb);
    char value[32];
    for (int i = 0; i < 40; i++) {
        snprintf(value, sizeof(value), "d%d", i);
        CHECK_EQ(sc_produce(p, &d, "drop", i, NULL, value), 0);
    }
    CHECK_EQ(turbine_producer_flush(p, 5000), 0);
    for (int i = 0; i < 40; i++) {
        CHECK_EQ(d.error[i], 0);
        CHECK_EQ(d.offset[i], i);
    }
    static char values[64][32];
    CHECK_EQ(sc_log_values(fb, "drop", 0, values, 64), 40);
    struct turbine_client_stats st;
    turbine_client_stats(c, &st);
    CHECK_GE(st.disconnects, 1);
    CHECK_GE(st.connects, 2);
    fb_lock(fb);
    CHECK_GT(fb->connections, connections);
    fb_unlock(fb);
    /* reads are resent after a drop: the caller sees no error */
    fb_lock(fb);
    fb->drop_at_request = fb->requests + 1;
    fb_unlock(fb);
    CHECK_EQ(turbine_admin_partitions(c, "drop"), 1);
    turbine_producer_destroy(p);
    turbine_client_destroy(c);
}

/* A silent broker: the request times out, the connection is replaced, the next call works. */
static void sc_timeouts(struct fake_broker *fb)
{
    sc_add_topic(fb, "slow", 1);
    struct turbine_client *c = sc_client(fb, 200);
    fb_lock(fb);
    fb->silent = true;
    fb_unlock(fb);
    int64_t start = loom_clock_ns();
    CHECK_EQ(turbine_admin_partitions(c, "slow"), -ETIMEDOUT);
    CHECK_GE(sc_ms_since(start), 150);
    CHECK_LT(sc_ms_since(start), 2000);
    fb_lock(fb);
    fb->silent = false;
    fb_unlock(fb);
    CHECK_EQ(turbine_admin_partitions(c, "slow"), 1);
    struct turbine_client_stats st;
    turbine_client_stats(c, &st);
    CHECK_GE(st.timeouts, 1);
    CHECK_GE(st.disconnects, 1);
    turbine_client_destroy(c);
}

/* Nobody listens: refused, with back-off that grows; requests time out. */
static void sc_refused(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK_EQ(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t len = sizeof(a);
    CHECK_EQ(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd); /* a port nobody listens on */
    struct turbine_client_config config;
    turbine_client_config_default(&config);
    config.port = ntohs(a.sin_port);
    config.request_timeout_ms = 100;
    config.reconnect_backoff_ms = 10;
    config.reconnect_backoff_max_ms = 80;
    struct turbine_client *c;
    CHECK_EQ(turbine_client_create(&config, &c), 0);
    CHECK_EQ(turbine_client_wait_connected(c, 400), -ETIMEDOUT);
    CHECK_EQ(turbine_client_last_error(c), -ECONNREFUSED);
    CHECK_EQ(turbine_admin_partitions(c, "x"), -ETIMEDOUT);
    struct turbine_client_stats st;
    turbine_client_stats(c, &st);
    /* 10, 20, 40, 80, 80 ... ms: about 8 attempts in 500 ms, not hundreds */
    CHECK_GE(st.connect_errors, 3);
    CHECK_LE(st.connect_errors, 20);
    turbine_client_destroy(c);
}

static void sc_all(void)
{
    struct fake_broker fb;
    fb_start(&fb);
    fprintf(stderr, "scenario admin\n");
    sc_admin(&fb);
    fprintf(stderr, "scenario produce_consume\n");
    sc_produce_consume(&fb);
    fprintf(stderr, "scenario batching\n");
    sc_batching(&fb);
    fprintf(stderr, "scenario slow_callbacks\n");
    sc_slow_callbacks(&fb);
    fprintf(stderr, "scenario slow_reader\n");
    sc_slow_reader(&fb);
    fprintf(stderr, "scenario acks0\n");
    sc_acks0(&fb);
    fprintf(stderr, "scenario pipelining\n");
    sc_pipelining(&fb);
    fprintf(stderr, "scenario retries\n");
    sc_retries(&fb);
    fprintf(stderr, "scenario reconnect\n");
    sc_reconnect(&fb);
    fprintf(stderr, "scenario timeouts\n");
    sc_timeouts(&fb);
    fprintf(stderr, "scenario refused\n");
    sc_refused();
    fb_lock(&fb);
    CHECK_EQ(fb.decode_errors, 0);
    fb_unlock(&fb);
    fb_stop(&fb);
}

#endif
