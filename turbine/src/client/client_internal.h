/* SPDX-License-Identifier: MIT
 * client_internal.h - the insides of libturbine shared by its files: the client (one
 * connection, its request queues, the IO context), requests, the producer's batches.
 *
 * All mutable state of a client and of its producers is guarded by the client's lock: a pthread
 * mutex in thread mode, a loom mutex in fiber mode (where it only orders fibers of one core
 * across suspensions). The lock is never held across a syscall that can block, a send, a
 * connect, or a user callback. Every wait is on the client's one condition variable, and
 * every state change that a waiter may need is followed by tc_broadcast() under the lock.
 */
#ifndef TURBINE_CLIENT_INTERNAL_H
#define TURBINE_CLIENT_INTERNAL_H

#include <pthread.h>
#include <sys/uio.h>

#include "loom/fiber.h"
#include "loom/iopool.h"
#include "loom/net.h"
#include "loom/sync.h"
#include "turbine/client.h"
#include "turbine_assert.h"

#define TC_NS_PER_MS 1000000LL
#define TC_RX_CHUNK  (64 * 1024) /* bytes read per pool READ (thread mode) */

/* ---- requests ----------------------------------------------------------------------------- */

struct turbine_client;

/* Completion of a request, under the client lock. rc 0 with the response frame (malloc'd,
 * ownership passes to fn; NULL for a request without response), or rc < 0 (no frame). */
typedef void (*tc_req_fn)(struct turbine_client *c, void *ctx, int rc, uint8_t *frame, size_t size);

#define TC_REQ_NO_RESPONSE 1u /* PRODUCE with acks 0: done once written */
#define TC_REQ_RESEND      2u /* safe to send again on a new connection (reads, commits) */

/* One encoded request frame. buf holds the header at offset 0 (the correlation id is written
 * there when it is sent); iov describes the whole frame (buf parts and referenced bytes). */
struct tc_req {
    struct tc_req *next;
    tc_req_fn fn;
    void *ctx;
    uint8_t *buf;
    struct iovec *iov;
    int iov_count;
    size_t size; /* frame bytes, prefix included */
    int64_t deadline_ns;
    uint32_t corr;
    uint16_t api_key;
    uint8_t flags;
    /* completed while its send was still running (the send may still read what the completion
     * frees): the completion runs when the send returns */
    bool deferred;
    int deferred_rc;
    uint8_t *deferred_frame;
    size_t deferred_size;
};

struct tc_queue {
    struct tc_req *head, *tail;
    uint32_t count;
};

/* Writes one frame with an API's *_begin/_add calls; corr is 0 (patched when sent). */
typedef void (*tc_encode_fn)(struct turbine_proto_writer *w, void *ctx);

/* ---- the producer's batches --------------------------------------------------------------- */

struct tp_topic;
struct turbine_producer;

struct tp_rec {
    turbine_delivery_fn fn;
    void *arg;
    struct turbine_future *future;
    int64_t timestamp;
};

struct tp_batch {
    struct tp_batch *next; /* partition queue, then the client's done list */
    struct turbine_producer *producer;
    struct tp_topic *topic;
    int32_t partition;
    struct turbine_batch_builder builder;
    uint8_t *buf;
    size_t size; /* encoded batch bytes once finished, else 0 */
    struct tp_rec *recs;
    int32_t count, cap;
    int64_t created_ns;
    int attempts;
    int error;
    int64_t base_offset;
    uint64_t bytes; /* counted against buffer_bytes */
};

/* ---- the client --------------------------------------------------------------------------- */

enum tc_state { TC_DOWN, TC_CONNECTING, TC_HANDSHAKE, TC_READY };

struct turbine_client {
    struct turbine_client_config config;
    char host[64];
    char client_id[128];
    bool fiber;    /* fiber mode: lives on `core` */
    unsigned core; /* fiber mode */

    pthread_mutex_t mu; /* thread mode */
    pthread_cond_t cv;
    struct loom_mutex fmu; /* fiber mode */
    struct loom_cond fcv;

    /* connection */
    enum tc_state state;
    int fd;
    bool closing;
    bool reader_active;
    int conn_error; /* set when the connection must be dropped */
    int last_error;
    int64_t reconnect_at_ns;
    int64_t backoff_ms;
    uint32_t next_corr;
    uint32_t max_frame;
    int16_t versions[TURBINE_API_COUNT];
    struct tc_queue queue;    /* waiting to be sent, in order */
    struct tc_queue inflight; /* sent (or being sent), in order: responses come in this order */
    struct tc_req *sending;   /* being sent: completed by the reader but freed by the sender */
    uint8_t *rx;
    size_t rx_used, rx_cap;

    /* thread mode */
    pthread_t io_thread;
    bool io_thread_started;
    struct loom_iopool *pool;
    bool pool_shared;
    struct loom_iopool_req read_req;
    uint8_t *read_buf;

    /* fiber mode */
    struct loom_fiber *io_fiber;
    struct loom_fiber *reader_fiber;
    struct loom_sock sock;

    /* producers and deliveries */
    struct turbine_producer *producers;
    struct tp_batch *done_head, *done_tail;
    bool delivering;
    unsigned consumers;

    struct turbine_client_stats stats;
};

/* client.c */
void tc_lock(struct turbine_client *c);
void tc_unlock(struct turbine_client *c);
void tc_broadcast(struct turbine_client *c);
/* Waits (lock held) for a broadcast or `deadline_ns`. Returns 0 or -ETIMEDOUT. */
int tc_wait(struct turbine_client *c, int64_t deadline_ns);
int64_t tc_now_ns(void);
int64_t tc_deadline_ms(int32_t ms);
/* Encodes a frame (growing the buffers until it fits); iov mode references record bytes. */
int tc_encode(tc_encode_fn fn, void *ctx, bool iov_mode, struct tc_req **out);
void tc_req_free(struct tc_req *r);
/* Queues `r` (lock held) and wakes the IO context. */
void tc_submit_locked(struct turbine_client *c, struct tc_req *r);
/* Sends a request and blocks until its response: 0 with *frame (free()) and *resp parsed and
 * its header error NONE; or an error. `timeout_ms` 0 = the client's request timeout. */
int tc_call(struct turbine_client *c, tc_encode_fn fn, void *ctx, uint8_t flags, int32_t timeout_ms,
            uint8_t **frame, struct turbine_response *resp);
/* True while the calling thread runs a delivery callback. */
bool tc_in_callback(void);
void tc_set_in_callback(bool on);

/* conn.c */
int tc_io_start(struct turbine_client *c);
void tc_io_join(struct turbine_client *c);
/* Runs pending delivery callbacks (lock held; dropped around the callbacks). Returns true when
 * it ran any: the lock was dropped, so state read before the call may be stale and a broadcast
 * made meanwhile reached no waiter. */
bool tc_deliver(struct turbine_client *c);

/* producer.c, for the IO context (lock held) */
void tp_collect(struct turbine_client *c, int64_t now, int64_t *next_deadline);
/* After a finished batch's callbacks ran: accounting, futures, free. */
void tp_batch_delivered(struct turbine_client *c, struct tp_batch *b);
const char *tp_topic_name(const struct tp_topic *t);

/* partition.c */
int32_t tp_partition_for_key(const void *key, size_t key_size, int32_t partitions);

#endif
