/* SPDX-License-Identifier: MIT
 * broker.h - the broker's internal interfaces: start/stop (broker.c), connections and request
 * framing (server.c), the APIs (handlers.c), partitions on their owner cores (partition.c) and
 * consumer offsets (offsets.c). Not a public header: only turbine/cmd and the broker include it.
 *
 * Threads: one loom core per CPU. A connection lives on the core that accepted it (SO_REUSEPORT
 * spreads them); its requests are parsed and answered there, each partition's part of a request
 * runs on the partition's owner core through loom_invoke_on(). Only the owner touches a log,
 * its waiters and its partition record; the connection's core touches its receive buffers,
 * request memory and budgets. No locks: cross-core work is messages.
 */
#ifndef TURBINE_BROKER_BROKER_H
#define TURBINE_BROKER_BROKER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include <loom/loom.h>

#include "broker/config.h"
#include "broker/topics.h"
#include "turbine/cache.h"
#include "turbine/log.h"
#include "turbine/protocol.h"

/* `turbine broker ...`: argv[0] is "broker". Returns the exit status. */
int turbine__broker_main(int argc, char **argv);

/* ---- process-wide state (written before the listeners start, read-only after) --------------- */

struct turbine__broker {
    struct turbine_broker_config config;
    struct turbine_topics *topics; /* core 0 */
    struct loom_mutex admin_lock;  /* core 0: creates and deletes, directory removal included */
    atomic_uint connections;       /* open client connections, all cores */
    atomic_bool stopping;          /* shutdown begun: new requests fail with SHUTTING_DOWN */
};
extern struct turbine__broker turbine__broker;

/* Limits that are not options (documented in docs/broker.md, "Limits"). */
#define TURBINE_REQUESTS_PER_CONN   1024 /* requests in flight per connection */
#define TURBINE_REQUEST_PARTS_MAX   8192 /* partitions named by one request */
#define TURBINE_GROUP_NAME_MAX      120  /* consumer group id bytes */
#define TURBINE_OFFSET_META_MAX     4096 /* offset commit metadata bytes */
#define TURBINE_RETENTION_PERIOD_MS 30000
#define TURBINE_NODE_ID             0

/* ---- requests (server.c) -------------------------------------------------------------------- */

struct turbine__conn;
struct turbine__chunk;

#define TURBINE_REQ_INLINE_RESP 512
#define TURBINE_REQ_INLINE_IOV  4

/* One request from its frame to its response. Lives on the connection's core (slab), in the
 * connection's FIFO until its response is sent; freed when every view it lent is released. */
struct turbine__request {
    struct turbine__request *next; /* the connection's FIFO, request order */
    struct turbine__conn *conn;
    struct turbine_request req;   /* header and body view into the frame */
    struct turbine__chunk *chunk; /* the frame lies in this receive chunk (no copy) ... */
    uint8_t *frame;               /* ... or in this assembled copy */
    uint32_t frame_size;
    uint32_t charged; /* bytes charged to the connection's and the core's budgets */
    bool done;        /* the response is ready (or none is due) */
    bool no_response; /* acks = 0 */
    /* response: buffer bytes and iovecs (record bytes referenced in place) */
    uint8_t *resp;
    size_t resp_cap;
    struct iovec *iov;
    size_t iov_cap, iov_count;
    /* what the response borrowed, released after the send */
    void *parts; /* per-partition state of PRODUCE/FETCH (malloc), freed with the request */
    void (*release)(struct turbine__request *req); /* gives lent views back; may defer free */
    unsigned pending; /* releases in flight; the request is freed when it reaches 0 */
    uint8_t inline_resp[TURBINE_REQ_INLINE_RESP];
    struct iovec inline_iov[TURBINE_REQ_INLINE_IOV];
};

/* Encodes the response with emit(w, ctx) into the request's inline buffer, or a larger one
 * when needed (emit runs again; it must be deterministic). With `iov`, record bytes may be
 * referenced (turbine_proto_writer_external). Returns 0 or -errno. */
typedef void (*turbine__emit_fn)(struct turbine_proto_writer *w, void *ctx);
int turbine__respond(struct turbine__request *req, turbine__emit_fn emit, void *ctx, bool iov);

/* Answers the request as a whole with `error` (an empty body). */
void turbine__respond_error(struct turbine__request *req, enum turbine_error error);

/* Called by a request whose memory is released asynchronously, when the last release is done. */
void turbine__request_release_done(struct turbine__request *req);

/* Charges lent cache bytes (a fetch's views) to the request's connection and core. */
void turbine__request_charge(struct turbine__request *req, uint64_t bytes);

/* Starts/stops the listener and connections of the calling core. */
int turbine__server_core_start(void *arg);
int turbine__server_core_stop(void *arg);

/* A long-polling fetch's sleep on its connection's core: woken by data (a waiter's message),
 * by its deadline, or by shutdown. */
struct turbine__poll {
    struct turbine__poll *next, *prev; /* the core's sleeping polls (shutdown wakes them) */
    struct loom_baton baton;
    unsigned expected, received; /* waiter messages sent by owners / arrived here */
    bool sleeping, ready, listed;
};
void turbine__poll_init(struct turbine__poll *poll);
/* Sleeps until a waiter fires, the deadline, or shutdown. Returns true when woken by data. */
bool turbine__poll_sleep(struct turbine__poll *poll, int64_t deadline_ns);
/* Waits until every message an owner sent for this poll has arrived (before its memory goes). */
void turbine__poll_drain(struct turbine__poll *poll);

/* ---- the APIs (handlers.c) ---------------------------------------------------------------- */

/* Runs the request (a fiber on the connection's core) and fills its response. */
void turbine__handle(struct turbine__request *req);

/* ---- partitions on their owner core (partition.c) ---------------------------------------------
 */

struct turbine__partition;

/* Per-core partition table and retention timer. */
int turbine__partitions_core_start(void *arg);
/* Closes every partition of the calling core (flushes and closes the logs). */
int turbine__partitions_core_stop(void *arg);

/* The partition `p` of `topic`, opening its log on first use (data_dir/<topic>/<p>/), with a
 * use held until turbine__partition_put(). Returns 0 or -errno. Core: the owner, a fiber. */
int turbine__partition_get(const struct turbine_topic_entry *topic, uint32_t p,
                           struct turbine__partition **out);
void turbine__partition_put(struct turbine__partition *part);
struct turbine_log *turbine__partition_log(struct turbine__partition *part);

/* Closes and forgets the partitions `0..count-1` of topic `topic_id` owned by the calling core
 * (after a delete). */
void turbine__partitions_forget(uint64_t topic_id, uint32_t count);

/* A long poll's registration with a partition: fires (a message to `home`) once the partition's
 * written offset passes `offset`. Lives in the fetch's memory on the connection's core. */
struct turbine__waiter {
    struct turbine__waiter *next, *prev; /* the partition's waiters (owner core) */
    struct loom_msg msg;                 /* sent home when it fires */
    struct turbine__poll *poll;          /* home core's */
    int64_t offset;
    unsigned home;
    bool linked, fired; /* owner core */
};

/* Registers `w` (the owner core, a fiber). Returns true when it fired at once. */
bool turbine__partition_watch(struct turbine__partition *part, struct turbine__waiter *w);
/* Unregisters `w` if it has not fired. Returns true when it had fired (a message is on its way
 * or arrived). Core: the owner. */
bool turbine__partition_unwatch(struct turbine__partition *part, struct turbine__waiter *w);

/* Maps a log's -errno to a wire error. */
enum turbine_error turbine__log_error(int64_t rc);

/* ---- consumer offsets (offsets.c) ---------------------------------------------------------- */

/* The core that keeps `group`'s offsets. */
unsigned turbine__group_owner(const char *group, size_t len);

struct turbine__offset_entry {
    const struct turbine_topic_entry *topic; /* NULL: unknown topic (error preset) */
    int32_t partition;
    int64_t offset; /* commit: to store; fetch: found (-1 none) */
    const char *metadata;
    uint16_t metadata_size; /* fetch: copied into `meta_copy` */
    uint16_t error;
    char *meta_copy; /* fetch: malloc'd copy of the stored metadata, freed by the caller */
};

struct turbine__offsets_call {
    const char *group;
    uint16_t group_size;
    struct turbine__offset_entry *entries;
    uint32_t count;
    bool commit;
    int rc; /* -errno of the store (all entries then carry STORAGE_ERROR) */
};

/* Commits or fetches (call->commit) on the group's core; loom_call_fn for loom_invoke_on. */
int turbine__offsets_call(void *arg);
int turbine__offsets_core_stop(void *arg);

/* ---- the log (logging.c) -------------------------------------------------------------------- */

/* Start-up and shutdown lines ("serving ..." tells scripts the broker is ready): written at
 * every log_level, tagged INFO. */
#define TURBINE_LOG_ALWAYS ((enum turbine_log_level) - 1)

/* True when messages of `level` are written (log_level). */
bool turbine__log_enabled(enum turbine_log_level level);
/* Writes one line "TIME LEVEL core N SUBSYSTEM: message" to stderr when `level` is enabled.
 * Core: a reactor thread. */
void turbine__log(enum turbine_log_level level, const char *subsystem, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- metrics (metrics.c) and the admin HTTP port (admin.c) ----------------------------------- */

/* Request latency buckets (upper bounds in seconds, Prometheus `le`), the last one +Inf. */
#define TURBINE_LATENCY_BUCKETS 16

/* One core's counters: written only by that core (no locks, no atomics on the data path), read
 * by that core when /metrics gathers them (loom_invoke_on_all). */
struct turbine__core_metrics {
    uint64_t requests[TURBINE_API_COUNT];
    uint64_t latency[2][TURBINE_LATENCY_BUCKETS]; /* [0] produce, [1] fetch: per bucket */
    uint64_t latency_sum_ns[2];
    uint64_t errors[TURBINE_ERR_MAX + 1]; /* by wire error code */
    uint64_t produce_bytes;               /* record bytes of partitions produced without error */
} __attribute__((aligned(64)));

/* The calling core's counters. */
struct turbine__core_metrics *turbine__metrics_here(void);
/* Counts a finished request of `api_key` that took `ns` on the connection's core. */
void turbine__metrics_request(uint16_t api_key, int64_t ns);
/* Counts an error answered (whole request or one partition). */
void turbine__metrics_error(uint16_t error);

/* Appends the Prometheus text of every core's counters, loom's reactor counters, the page
 * caches and the open partitions to a malloc'd buffer. Returns its length or -errno.
 * Core: 0, a fiber (it gathers with loom_invoke_on_all). */
ssize_t turbine__metrics_render(char **out);

/* Starts / stops the admin HTTP port (/metrics, /health). Core: 0, a fiber. */
int turbine__admin_start(void);
void turbine__admin_stop(void);

/* The open partition's log, or NULL when it is not open on the calling core (no open). */
struct turbine_log *turbine__partition_peek(uint64_t topic_id, uint32_t p);

#endif
