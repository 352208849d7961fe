/* SPDX-License-Identifier: MIT
 * client.h - libturbine, the C client of a turbine broker: one connection with pipelined
 * requests, a producer that batches records per partition, a consumer, and topic admin.
 *
 * One API for two kinds of caller, chosen where turbine_client_create() runs:
 *   - an ordinary thread (not a loom reactor): the client starts one thread of its own that
 *     connects, sends and keeps the timers; responses are received through loom's IO thread
 *     pool (reads wait there, not on a thread per client). Blocking calls block the calling
 *     thread. Any number of threads may share the client.
 *   - a loom fiber: the client lives on that core, with an IO fiber and a reader fiber
 *     (loom/net.h); blocking calls suspend the calling fiber, never the core. Only fibers of
 *     that core may use it.
 * Requests are pipelined on one connection and matched by correlation id; a lost connection is
 * reconnected with exponential back-off; every request has a deadline. Errors are negative:
 * -errno, or TURBINE_CLIENT_ERR(code) for a broker's enum turbine_error (see
 * turbine_client_strerror()). The guide is docs/client.md.
 */
#ifndef TURBINE_CLIENT_H
#define TURBINE_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "turbine/batch.h"
#include "turbine/protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors ------------------------------------------------------------------------------- */

/* A broker's error code as a client result: -(1000 + code). -errno values stay below 1000. */
#define TURBINE_CLIENT_ERR_BASE  1000
#define TURBINE_CLIENT_ERR(code) (-(TURBINE_CLIENT_ERR_BASE + (int)(code)))

/* The enum turbine_error inside result `rc`, or TURBINE_ERR_NONE when `rc` is not one (>= 0
 * or -errno). */
TURBINE_API unsigned turbine_client_broker_error(int rc);

/* True when the operation may succeed if tried again: a retriable broker error, or a
 * connection or time-out errno (-ECONNRESET, -ECONNREFUSED, -ETIMEDOUT, -EPIPE, ...). */
TURBINE_API bool turbine_client_retriable(int rc);

/* One line for a person: "success", "broker: UNKNOWN_TOPIC: ...", or the errno's text.
 * Never NULL; a static string (thread-safe). */
TURBINE_API const char *turbine_client_strerror(int rc);

/* ---- the client (connection, admin) ------------------------------------------------------- */

#define TURBINE_CLIENT_DEFAULT_PORT 9292

struct turbine_client;
struct loom_iopool;

/* Start from turbine_client_config_default(); every field is used as it is. */
struct turbine_client_config {
    const char *host;                 /* numeric IPv4/IPv6 or "localhost" ("127.0.0.1") */
    uint16_t port;                    /* 9292 */
    const char *client_id;            /* "libturbine", sent in the handshake */
    int32_t connect_timeout_ms;       /* 5000: one connect attempt (then back-off) */
    int32_t request_timeout_ms;       /* 30000: a request's deadline from its call */
    int32_t reconnect_backoff_ms;     /* 50: first wait after a failed or lost connection */
    int32_t reconnect_backoff_max_ms; /* 5000: the wait doubles up to this */
    uint32_t max_in_flight;           /* 64: requests sent and not answered, per connection */
    struct loom_iopool *iopool;       /* threads only: NULL = a pool shared by the library */
};

TURBINE_API void turbine_client_config_default(struct turbine_client_config *config);

/* Creates a client and starts connecting in the background (the first request waits for the
 * connection, within its deadline). `config` NULL = defaults. Returns 0 and sets *out, or
 * -EINVAL (bad host, zero timeouts), -ENOMEM, or an error starting the IO thread or pool.
 * Where it is called decides the mode (header comment). */
TURBINE_API int turbine_client_create(const struct turbine_client_config *config,
                                      struct turbine_client **out);

/* Closes the connection, fails every request and record not yet done with -ECANCELED (their
 * callbacks run before it returns), stops the IO thread or fibers, frees the client. Producers
 * and consumers of the client must have been destroyed; flush producers first to deliver.
 * NULL is ignored. */
TURBINE_API void turbine_client_destroy(struct turbine_client *client);

/* Waits until the client is connected and has completed the handshake. Returns 0, or
 * -ETIMEDOUT with the last connection error kept for turbine_client_last_error(). */
TURBINE_API int turbine_client_wait_connected(struct turbine_client *client, int32_t timeout_ms);

/* The last connection error (-errno, 0 if none yet). */
TURBINE_API int turbine_client_last_error(struct turbine_client *client);

/* The version negotiated with the broker for `api_key`, or -1 (not usable / not connected). */
TURBINE_API int turbine_client_api_version(struct turbine_client *client, uint16_t api_key);

struct turbine_client_stats {
    uint64_t connects;        /* connections that completed the handshake */
    uint64_t connect_errors;  /* attempts that failed (refused, timed out, bad handshake) */
    uint64_t disconnects;     /* established connections lost or dropped */
    uint64_t requests_sent;   /* frames written (handshakes and resends included) */
    uint64_t responses;       /* frames received and matched */
    uint64_t timeouts;        /* requests failed with -ETIMEDOUT */
    uint64_t resends;         /* requests sent again on a new connection */
    uint64_t batches_sent;    /* producer batches sent (retries included) */
    uint64_t batch_retries;   /* producer batches queued again after a retriable error */
    uint64_t records_skipped; /* consumer: records of compressed or control batches skipped */
};
TURBINE_API void turbine_client_stats(struct turbine_client *client,
                                      struct turbine_client_stats *out);

/* ---- admin -------------------------------------------------------------------------------- */

/* Creates `topic` with `partitions` partitions; `config` NULL = the broker's defaults. Blocks
 * until the broker answers. Returns 0 or an error (TURBINE_CLIENT_ERR(TOPIC_EXISTS), ...). */
TURBINE_API int turbine_admin_create_topic(struct turbine_client *client, const char *topic,
                                           int32_t partitions,
                                           const struct turbine_topic_config *config);

TURBINE_API int turbine_admin_delete_topic(struct turbine_client *client, const char *topic);

/* Partition count of `topic` from METADATA (>= 1), or an error (UNKNOWN_TOPIC ...). */
TURBINE_API int turbine_admin_partitions(struct turbine_client *client, const char *topic);

struct turbine_topic_info {
    char name[TURBINE_TOPIC_NAME_MAX + 1]; /* NUL-terminated */
    int32_t partitions;
};

/* Every topic (METADATA with no names): *out is a malloc'd array of *count entries (free()
 * it; NULL when none). Returns 0 or an error. */
TURBINE_API int turbine_admin_list_topics(struct turbine_client *client,
                                          struct turbine_topic_info **out, size_t *count);

struct turbine_topic_description {
    char name[TURBINE_TOPIC_NAME_MAX + 1];
    struct turbine_topic_config config; /* effective values */
    uint32_t partition_count;
    struct turbine_describe_partition partitions[]; /* partition_count of them */
};

/* DESCRIBE_TOPICS of one topic: *out is malloc'd (free()). Returns 0 or an error. */
TURBINE_API int turbine_admin_describe_topic(struct turbine_client *client, const char *topic,
                                             struct turbine_topic_description **out);

/* ---- producer ----------------------------------------------------------------------------- */

struct turbine_producer;

/* How records without a key and without a partition are spread. */
enum turbine_partitioner_null_key {
    TURBINE_NULL_KEY_STICKY = 0,      /* one partition until its batch closes, then the next */
    TURBINE_NULL_KEY_ROUND_ROBIN = 1, /* the next partition for every record */
};

/* Start from turbine_producer_config_default(). */
struct turbine_producer_config {
    int16_t acks;                /* TURBINE_ACKS_ALL (-1), TURBINE_ACKS_LEADER (1) or 0 */
    int32_t linger_ms;           /* 5: a batch waits at most this for more records */
    uint32_t batch_bytes;        /* 16384: a batch is sent once it holds this much */
    uint64_t buffer_bytes;       /* 32 MiB: records accepted and not yet delivered */
    int32_t retries;             /* 5: sends of a batch after the first on retriable errors */
    int32_t retry_backoff_ms;    /* 100: a partition waits this before a retry */
    int32_t delivery_timeout_ms; /* 30000: a record fails once this old (-ETIMEDOUT) */
    int32_t broker_timeout_ms;   /* 10000: PRODUCE timeout_ms, the broker's wait for acks */
    uint32_t max_in_flight;      /* 5: batches per partition in flight when retries == 0;
                                    with retries > 0 it is 1, so order is kept */
    enum turbine_partitioner_null_key null_key;
};

TURBINE_API void turbine_producer_config_default(struct turbine_producer_config *config);

/* A producer on `client` (the client must outlive it). Returns 0 or -EINVAL, -ENOMEM. */
TURBINE_API int turbine_producer_create(struct turbine_client *client,
                                        const struct turbine_producer_config *config,
                                        struct turbine_producer **out);

/* Fails records not yet delivered with -ECANCELED (callbacks run before it returns) and frees
 * the producer. Call turbine_producer_flush() first to deliver them. NULL is ignored. */
TURBINE_API void turbine_producer_destroy(struct turbine_producer *producer);

#define TURBINE_PARTITION_ANY (-1) /* choose by key, or spread null keys */
#define TURBINE_TIMESTAMP_NOW (-1) /* CLOCK_REALTIME in ms at the call */

/* A record to produce. Everything is copied into a batch by turbine_produce(): the caller's
 * memory may be reused when it returns. */
struct turbine_produce_record {
    const char *topic;  /* NUL-terminated */
    int32_t partition;  /* TURBINE_PARTITION_ANY or 0 .. partitions-1 */
    const void *key;    /* NULL with key_size -1: null key */
    int32_t key_size;   /* >= -1 */
    const void *value;  /* NULL with value_size -1: null value (a tombstone) */
    int32_t value_size; /* >= -1 */
    const struct turbine_header_in *headers;
    int32_t headers_count;
    int64_t timestamp; /* ms since the epoch, or TURBINE_TIMESTAMP_NOW */
};

/* The outcome of one record, given to its delivery callback. */
struct turbine_delivery {
    const char *topic; /* valid during the callback */
    int32_t partition;
    int64_t offset;    /* >= 0 when acknowledged; -1 with acks 0 or on error */
    int64_t timestamp; /* the record's */
    int error;         /* 0 or a client error */
};

/* Runs once per record, in produce order per partition, on the client's IO context (its
 * thread, a pool thread, or its fibers) without client locks held. It must not block: no
 * blocking call of libturbine (turbine_produce() to a topic already used is fine). */
typedef void (*turbine_delivery_fn)(const struct turbine_delivery *delivery, void *arg);

/* Appends a record to its partition's batch; `fn(delivery, arg)` (may be NULL) reports its
 * outcome later. The partition: record->partition if set; else (murmur2(key) & 0x7fffffff) %
 * partitions for a key, as Kafka's Java client; else config.null_key. The topic's partition
 * count comes from METADATA the first time a topic is used (that call blocks; from a delivery
 * callback it returns -EWOULDBLOCK instead). Returns the partition (>= 0), or -EINVAL (bad
 * sizes, partition out of range), -ENOBUFS (buffer_bytes reached: flush or wait),
 * -EMSGSIZE (larger than the broker's frame), TURBINE_CLIENT_ERR(UNKNOWN_TOPIC), ... (no
 * callback runs when it fails). */
TURBINE_API int turbine_produce(struct turbine_producer *producer,
                                const struct turbine_produce_record *record, turbine_delivery_fn fn,
                                void *arg);

/* A caller-owned future of one record: pass it to turbine_produce_future(), then wait. Keep it
 * alive and unmoved until turbine_future_wait() returned (or until the producer is destroyed).
 * Fields are valid after the wait. */
struct turbine_future {
    struct turbine_delivery result;
    /* private */
    struct turbine_client *client;
    bool done;
};

/* turbine_produce() completing `future` instead of calling a function. */
TURBINE_API int turbine_produce_future(struct turbine_producer *producer,
                                       const struct turbine_produce_record *record,
                                       struct turbine_future *future);

/* Blocks until the record is delivered; returns future->result.error (0 = acknowledged, the
 * offset in future->result.offset). The record still waits for its batch (linger_ms). */
TURBINE_API int turbine_future_wait(struct turbine_future *future);

/* Sends every batch now and blocks until every record produced so far is delivered (callbacks
 * run) or `timeout_ms` passes. Returns 0 or -ETIMEDOUT. Records keep their own outcome. */
TURBINE_API int turbine_producer_flush(struct turbine_producer *producer, int32_t timeout_ms);

/* Murmur2 as Kafka's Utils.murmur2 (seed 0x9747b28c), and the partition Kafka's default
 * partitioner gives a key: (murmur2(key) & 0x7fffffff) % partitions. */
TURBINE_API int32_t turbine_murmur2(const void *data, size_t size);
TURBINE_API int32_t turbine_partition_for_key(const void *key, size_t key_size, int32_t partitions);

/* ---- consumer ----------------------------------------------------------------------------- */

struct turbine_consumer;

#define TURBINE_OFFSET_COMMITTED (-3) /* assign: the group's committed offset, else reset */

enum turbine_offset_reset {
    TURBINE_RESET_EARLIEST = 0, /* an unknown or out-of-range position goes to the log start */
    TURBINE_RESET_LATEST = 1,   /* ... to the log end */
    TURBINE_RESET_NONE = 2,     /* ... is an error from poll (OFFSET_OUT_OF_RANGE) */
};

/* Start from turbine_consumer_config_default(). */
struct turbine_consumer_config {
    const char *group;           /* for commits; NULL = none (commit calls give -EINVAL) */
    int32_t max_wait_ms;         /* 500: FETCH long poll, capped by poll's timeout */
    int32_t min_bytes;           /* 1 */
    int32_t max_bytes;           /* 52428800: record bytes per fetch */
    int32_t partition_max_bytes; /* 1048576 */
    enum turbine_offset_reset reset;
};

TURBINE_API void turbine_consumer_config_default(struct turbine_consumer_config *config);

/* A consumer on `client` (which must outlive it). One thread or fiber at a time may use a
 * consumer. Returns 0, -EINVAL or -ENOMEM. */
TURBINE_API int turbine_consumer_create(struct turbine_client *client,
                                        const struct turbine_consumer_config *config,
                                        struct turbine_consumer **out);
TURBINE_API void turbine_consumer_destroy(struct turbine_consumer *consumer);

/* Adds topic/partition at `offset`: >= 0, TURBINE_OFFSET_EARLIEST, TURBINE_OFFSET_LATEST or
 * TURBINE_OFFSET_COMMITTED (resolved now, blocking). Assigning an assigned partition seeks it.
 * Returns the position (>= 0) or an error. */
TURBINE_API int64_t turbine_consumer_assign(struct turbine_consumer *consumer, const char *topic,
                                            int32_t partition, int64_t offset);

/* Removes an assignment. Returns 0 or -ENOENT. */
TURBINE_API int turbine_consumer_unassign(struct turbine_consumer *consumer, const char *topic,
                                          int32_t partition);

/* Sets the next offset to read: an offset >= 0, or through LIST_OFFSETS a `timestamp` (ms:
 * the first record at or after it), TURBINE_OFFSET_EARLIEST or TURBINE_OFFSET_LATEST (see
 * turbine_consumer_seek_time). Records buffered from an earlier fetch are dropped. Returns
 * the new position or an error (-ENOENT: not assigned). */
TURBINE_API int64_t turbine_consumer_seek(struct turbine_consumer *consumer, const char *topic,
                                          int32_t partition, int64_t offset);
TURBINE_API int64_t turbine_consumer_seek_time(struct turbine_consumer *consumer, const char *topic,
                                               int32_t partition, int64_t timestamp);

/* The next offset poll will return for topic/partition, or -ENOENT. */
TURBINE_API int64_t turbine_consumer_position(struct turbine_consumer *consumer, const char *topic,
                                              int32_t partition);

/* One consumed record. Pointers are into the consumer's fetch buffer: valid until the next
 * turbine_consumer_poll() or destroy. */
struct turbine_message {
    const char *topic; /* NUL-terminated */
    int32_t partition;
    int64_t offset;
    int64_t timestamp;
    const uint8_t *key; /* NULL with key_size -1 for a null key */
    int32_t key_size;
    const uint8_t *value;
    int32_t value_size;
    const uint8_t *headers; /* headers_count encoded headers: turbine_message_headers() */
    size_t headers_size;
    int32_t headers_count;
};

/* Starts walking `message`'s headers with turbine_header_iter_next() (batch.h). */
TURBINE_API void turbine_message_headers(const struct turbine_message *message,
                                         struct turbine_header_iter *iter);

/* Fills up to `max` messages in offset order per partition, fetching (long poll) when none is
 * buffered, and advances each partition's position past them. Waits at most `timeout_ms`
 * (0: one fetch with no wait). Returns the count (0 when none came in time) or an error
 * (TURBINE_CLIENT_ERR(CORRUPT_RECORD) for a batch failing its CRC, OFFSET_OUT_OF_RANGE with
 * TURBINE_RESET_NONE, non-retriable fetch errors, -EINVAL with no assignment). */
TURBINE_API int turbine_consumer_poll(struct turbine_consumer *consumer,
                                      struct turbine_message *messages, int max,
                                      int32_t timeout_ms);

/* Commits the position of every assigned partition for the group (OFFSET_COMMIT). */
TURBINE_API int turbine_consumer_commit(struct turbine_consumer *consumer);

/* Commits `offset` (the next offset to consume) with `metadata` (NULL = "") for one partition. */
TURBINE_API int turbine_consumer_commit_offset(struct turbine_consumer *consumer, const char *topic,
                                               int32_t partition, int64_t offset,
                                               const char *metadata);

/* The group's committed offset of topic/partition (OFFSET_FETCH): >= 0, -1 when none, or an
 * error. */
TURBINE_API int64_t turbine_consumer_committed(struct turbine_consumer *consumer, const char *topic,
                                               int32_t partition);

#ifdef __cplusplus
}
#endif
#endif
