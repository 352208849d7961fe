/* SPDX-License-Identifier: MIT
 * handlers.c - the APIs: each request runs in a fiber on its connection's core, decodes its
 * body (checked whole by the codec), resolves topics in the routing snapshot it holds for its
 * whole run (so a delete drains it), sends each partition's part to the owner core with
 * loom_invoke_on(), and encodes the response in request order.
 *
 * Zero copy: a produce's record bytes are read by the owner straight from the frame (a
 * receive chunk of this core, or the frame's own copy) and copied once, into the log; a fetch's
 * records go out as iovecs over the owner's cache pages (views), released after the send.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker/broker.h"
#include "turbine/batch.h"
#include "turbine_assert.h"

void turbine__waiter_init(struct turbine__waiter *w, struct turbine__poll *poll);

/* ---- calls to owner cores ------------------------------------------------------------------- */

struct call {
    unsigned owner;
    loom_call_fn fn;
    void *arg;
    struct loom_waitgroup *wg;
};

static void call_run(struct call *c)
{
    if (c->owner == loom_core_id())
        c->fn(c->arg);
    else
        loom_invoke_on(c->owner, c->fn, c->arg, LOOM_NO_DEADLINE);
}

static int call_fiber(void *arg)
{
    struct call *c = arg;
    call_run(c);
    loom_waitgroup_done(c->wg);
    return 0;
}

/* Runs every call (concurrently when there are several) and returns when all are done. The
 * calls are `stride` bytes apart (each starts a part struct). */
static void scatter(void *first, size_t count, size_t stride)
{
    if (count == 0)
        return;
    if (count == 1) {
        if (((struct call *)first)->fn != NULL)
            call_run(first);
        return;
    }
    struct loom_waitgroup wg;
    loom_waitgroup_init(&wg);
    loom_waitgroup_add(&wg, (int64_t)count);
    struct loom_fiber_attr attr = {.name = "part", .stack = LOOM_STACK_SMALL};
    for (size_t i = 0; i < count; i++) {
        struct call *c = (struct call *)((char *)first + i * stride);
        c->wg = &wg;
        if (c->fn == NULL || loom_spawn(NULL, call_fiber, c, &attr) < 0) {
            if (c->fn != NULL)
                call_run(c);
            loom_waitgroup_done(&wg);
        }
    }
    loom_waitgroup_wait(&wg, LOOM_NO_DEADLINE);
    loom_waitgroup_deinit(&wg);
}

static int64_t request_deadline(int32_t timeout_ms)
{
    int64_t cap = turbine__broker.config.request_timeout_ms;
    int64_t ms = timeout_ms < 0 ? cap : (timeout_ms < cap ? timeout_ms : cap);
    return loom_deadline_in(ms * LOOM_NS_PER_MS);
}

static enum turbine_error errno_to_error(int rc)
{
    switch (rc) {
    case -EEXIST:
        return TURBINE_ERR_TOPIC_EXISTS;
    case -ENOENT:
        return TURBINE_ERR_UNKNOWN_TOPIC;
    case -EINVAL:
        return TURBINE_ERR_INVALID_CONFIG;
    case -ENOSPC:
        return TURBINE_ERR_INVALID_REQUEST; /* too many topics */
    case -ESHUTDOWN:
        return TURBINE_ERR_SHUTTING_DOWN;
    default:
        return TURBINE_ERR_STORAGE_ERROR;
    }
}

/* ---- topic administration (core 0) ---------------------------------------------------------- */

/* Names the data directory uses for itself. */
static bool name_reserved(const char *name, size_t len)
{
    return (len >= 2 && name[0] == '_' && name[1] == '_') ||
           (len == 6 && memcmp(name, "topics", 6) == 0) ||
           (len == 10 && memcmp(name, "topics.tmp", 10) == 0);
}

static int remove_tree_at(int dirfd, const char *name)
{
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return errno == ENOENT
                   ? 0
                   : (errno == ENOTDIR ? (unlinkat(dirfd, name, 0) ? -errno : 0) : -errno);
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        close(fd);
        return -errno;
    }
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (e->d_type == DT_DIR)
            rc = remove_tree_at(fd, e->d_name);
        else if (unlinkat(fd, e->d_name, 0) < 0 && errno != ENOENT)
            rc = -errno;
        if (rc < 0)
            break;
    }
    closedir(d);
    if (rc == 0 && unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        rc = -errno;
    return rc;
}

/* Removes <data_dir>/<name> and everything in it (the admin path only: plain syscalls). */
static int remove_topic_dir(const char *name)
{
    int dirfd = open(turbine__broker.config.data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0)
        return -errno;
    int rc = remove_tree_at(dirfd, name);
    if (rc == 0)
        fsync(dirfd);
    close(dirfd);
    return rc;
}

struct admin_call {
    char name[TURBINE_TOPIC_NAME_MAX + 1];
    uint32_t partitions;
    struct turbine_topic_settings settings;
    uint64_t topic_id;
    int rc;
};

static int admin_create(void *arg)
{
    struct admin_call *a = arg;
    TURBINE_ASSERT(loom_core_id() == 0);
    loom_mutex_lock(&turbine__broker.admin_lock, LOOM_NO_DEADLINE);
    const struct turbine_routing *r = turbine_routing_get();
    if (r == NULL) {
        a->rc = -ESHUTDOWN;
    } else if (turbine_routing_find(r, a->name, strlen(a->name)) != NULL) {
        a->rc = -EEXIST;
    } else {
        a->rc = remove_topic_dir(a->name); /* a leftover of a delete cut short */
        if (a->rc == 0)
            a->rc = turbine_topics_create(turbine__broker.topics, a->name, a->partitions,
                                          &a->settings, &a->topic_id);
        if (a->rc == 0)
            turbine__log(TURBINE_LOG_INFO, "topics", "created %s with %u partition(s)", a->name,
                         a->partitions);
    }
    loom_mutex_unlock(&turbine__broker.admin_lock);
    return a->rc;
}

static int forget_on_core(void *arg)
{
    struct admin_call *a = arg;
    turbine__partitions_forget(a->topic_id, a->partitions);
    return 0;
}

static int admin_delete(void *arg)
{
    struct admin_call *a = arg;
    TURBINE_ASSERT(loom_core_id() == 0);
    loom_mutex_lock(&turbine__broker.admin_lock, LOOM_NO_DEADLINE);
    const struct turbine_routing *r = turbine_routing_get();
    const struct turbine_topic_entry *t =
        r ? turbine_routing_find(r, a->name, strlen(a->name)) : NULL;
    if (t == NULL) {
        a->rc = r ? -ENOENT : -ESHUTDOWN;
    } else {
        a->topic_id = t->id;
        a->partitions = t->partitions;
        /* returns once no request holds a snapshot with the topic */
        a->rc = turbine_topics_delete(turbine__broker.topics, a->name);
        if (a->rc == 0) {
            turbine__log(TURBINE_LOG_INFO, "topics", "deleted %s", a->name);
            loom_invoke_on_all(forget_on_core, a, LOOM_NO_DEADLINE);
            int rc = remove_topic_dir(a->name);
            if (rc < 0)
                turbine__log(TURBINE_LOG_WARN, "topics",
                             "removing the files of deleted topic %s: %s", a->name, strerror(-rc));
        }
    }
    loom_mutex_unlock(&turbine__broker.admin_lock);
    return a->rc;
}

/* Settings from a CREATE_TOPICS config; false for an invalid value. */
static bool settings_from_wire(const struct turbine_topic_config *c,
                               struct turbine_topic_settings *s)
{
    turbine_topic_settings_from_config(s, &turbine__broker.config);
    if (c->retention_ms == TURBINE_CONFIG_UNLIMITED)
        s->retention_ms = 0;
    else if (c->retention_ms > 0)
        s->retention_ms = c->retention_ms;
    else if (c->retention_ms != TURBINE_CONFIG_DEFAULT)
        return false;
    if (c->retention_bytes == TURBINE_CONFIG_UNLIMITED)
        s->retention_bytes = 0;
    else if (c->retention_bytes > 0)
        s->retention_bytes = (uint64_t)c->retention_bytes;
    else if (c->retention_bytes != TURBINE_CONFIG_DEFAULT)
        return false;
    if (c->segment_bytes >= (1 << 20))
        s->segment_bytes = (uint64_t)c->segment_bytes;
    else if (c->segment_bytes != TURBINE_CONFIG_DEFAULT)
        return false;
    if (c->durability == TURBINE_TOPIC_DURABILITY_WRITTEN)
        s->durability = TURBINE_DURABLE_WRITTEN;
    else if (c->durability == TURBINE_TOPIC_DURABILITY_FSYNC)
        s->durability = TURBINE_DURABLE_FSYNC;
    else if (c->durability != TURBINE_TOPIC_DURABILITY_DEFAULT)
        return false;
    return true;
}

static void settings_to_wire(const struct turbine_topic_settings *s, struct turbine_topic_config *c)
{
    c->retention_ms = s->retention_ms == 0 ? TURBINE_CONFIG_UNLIMITED : s->retention_ms;
    c->retention_bytes =
        s->retention_bytes == 0 ? TURBINE_CONFIG_UNLIMITED : (int64_t)s->retention_bytes;
    c->segment_bytes = (int64_t)s->segment_bytes;
    c->durability = s->durability == TURBINE_DURABLE_FSYNC ? TURBINE_TOPIC_DURABILITY_FSYNC
                                                           : TURBINE_TOPIC_DURABILITY_WRITTEN;
}

/* ---- HANDSHAKE, METADATA -------------------------------------------------------------------- */

static void emit_handshake(struct turbine_proto_writer *w, void *arg)
{
    struct turbine__request *req = arg;
    enum turbine_error e =
        req->req.header.api_version == 0 ? TURBINE_ERR_NONE : TURBINE_ERR_UNSUPPORTED_VERSION;
    struct turbine_handshake_response head = {.max_frame_bytes =
                                                  (uint32_t)turbine__broker.config.max_frame_bytes,
                                              .node_id = TURBINE_NODE_ID,
                                              .api_count = TURBINE_API_COUNT};
    turbine_handshake_response_begin(w, req->req.header.correlation_id, e, &head);
    for (unsigned i = 0; i < TURBINE_API_COUNT; i++)
        turbine_handshake_add_api(w, &turbine_proto_versions()[i]);
    turbine_proto_frame_end(w);
}

static void handle_handshake(struct turbine__request *req)
{
    if (req->req.header.api_version == 0) {
        struct turbine_handshake_request hs;
        enum turbine_error e = turbine_handshake_request_decode(&req->req, &hs);
        if (e != TURBINE_ERR_NONE) {
            turbine__respond_error(req, e);
            return;
        }
    }
    if (turbine__respond(req, emit_handshake, req, false) < 0)
        turbine__respond_error(req, TURBINE_ERR_UNKNOWN);
}

struct metadata_ctx {
    struct turbine__request *req;
    const struct turbine_routing *routing;
    struct turbine_metadata_request in;
};

static void metadata_add(struct turbine_proto_writer *w, const struct turbine_topic_entry *t,
                         const char *name, uint16_t name_size)
{
    struct turbine_metadata_topic mt = {.error = t ? TURBINE_ERR_NONE : TURBINE_ERR_UNKNOWN_TOPIC,
                                        .name = name,
                                        .name_size = name_size,
                                        .partition_count = t ? t->partitions : 0};
    turbine_metadata_add_topic(w, &mt);
    for (uint32_t p = 0; t && p < t->partitions; p++) {
        struct turbine_metadata_partition mp = {.partition = (int32_t)p, .leader = TURBINE_NODE_ID};
        turbine_metadata_add_partition(w, &mp);
    }
}

static void emit_metadata(struct turbine_proto_writer *w, void *arg)
{
    struct metadata_ctx *m = arg;
    const struct turbine_broker_config *cfg = &turbine__broker.config;
    bool all = m->in.topic_count == 0;
    struct turbine_metadata_response head = {.node_id = TURBINE_NODE_ID,
                                             .host = cfg->listen_host,
                                             .host_size = (uint16_t)strlen(cfg->listen_host),
                                             .port = (uint16_t)cfg->port,
                                             .topic_count =
                                                 all ? m->routing->topic_count : m->in.topic_count};
    turbine_metadata_response_begin(w, m->req->req.header.correlation_id, &head);
    if (all) {
        for (uint32_t i = 0; i < m->routing->topic_count; i++) {
            const struct turbine_topic_entry *t = &m->routing->topics[i];
            metadata_add(w, t, t->name, (uint16_t)t->name_len);
        }
    } else {
        struct turbine_proto_iter it = m->in.topics;
        struct turbine_proto_name n;
        while (turbine_proto_next_name(&it, &n))
            metadata_add(w, turbine_routing_find(m->routing, n.name, n.name_size), n.name,
                         n.name_size);
    }
    turbine_proto_frame_end(w);
}

static void handle_metadata(struct turbine__request *req)
{
    struct metadata_ctx m = {.req = req, .routing = turbine_routing_get()};
    enum turbine_error e = turbine_metadata_request_decode(&req->req, &m.in);
    if (e == TURBINE_ERR_NONE && m.routing == NULL)
        e = TURBINE_ERR_SHUTTING_DOWN;
    if (e == TURBINE_ERR_NONE && m.in.topic_count > TURBINE_TOPICS_MAX)
        e = TURBINE_ERR_REQUEST_TOO_LARGE;
    /* the snapshot stays valid: nothing below suspends */
    if (e == TURBINE_ERR_NONE && turbine__respond(req, emit_metadata, &m, false) < 0)
        e = TURBINE_ERR_UNKNOWN;
    if (e != TURBINE_ERR_NONE)
        turbine__respond_error(req, e);
}

/* ---- CREATE_TOPICS, DELETE_TOPICS ----------------------------------------------------------- */

struct topics_ctx {
    struct turbine__request *req;
    struct turbine_proto_iter names; /* a copy to walk again: create topics or delete names */
    bool create;
    uint32_t count;
    uint16_t *errors;
};

static void emit_topics(struct turbine_proto_writer *w, void *arg)
{
    struct topics_ctx *t = arg;
    struct turbine_topics_response head = {.topic_count = t->count};
    turbine_topics_response_begin(w, t->req->req.header.correlation_id, t->req->req.header.api_key,
                                  &head);
    struct turbine_proto_iter it = t->names;
    for (uint32_t i = 0; i < t->count; i++) {
        struct turbine_topic_result r = {.error = t->errors[i]};
        if (t->create) {
            struct turbine_create_topic ct;
            TURBINE_ASSERT(turbine_create_topics_next_topic(&it, &ct));
            r.name = ct.name;
            r.name_size = ct.name_size;
        } else {
            struct turbine_proto_name n;
            TURBINE_ASSERT(turbine_proto_next_name(&it, &n));
            r.name = n.name;
            r.name_size = n.name_size;
        }
        turbine_topics_add_result(w, &r);
    }
    turbine_proto_frame_end(w);
}

static uint16_t create_one(const struct turbine_create_topic *ct)
{
    struct admin_call a = {.partitions = (uint32_t)ct->partitions};
    if (name_reserved(ct->name, ct->name_size))
        return TURBINE_ERR_INVALID_TOPIC_NAME;
    if (ct->partitions < 1 || ct->partitions > (int32_t)TURBINE_PARTITIONS_MAX)
        return TURBINE_ERR_INVALID_PARTITIONS;
    if (!settings_from_wire(&ct->config, &a.settings))
        return TURBINE_ERR_INVALID_CONFIG;
    memcpy(a.name, ct->name, ct->name_size);
    a.name[ct->name_size] = '\0';
    loom_invoke_on(0, admin_create, &a, LOOM_NO_DEADLINE);
    return a.rc == 0 ? TURBINE_ERR_NONE : errno_to_error(a.rc);
}

static uint16_t delete_one(const struct turbine_proto_name *n)
{
    struct admin_call a = {0};
    memcpy(a.name, n->name, n->name_size);
    a.name[n->name_size] = '\0';
    loom_invoke_on(0, admin_delete, &a, LOOM_NO_DEADLINE);
    return a.rc == 0 ? TURBINE_ERR_NONE : errno_to_error(a.rc);
}

static void handle_topics_admin(struct turbine__request *req, bool create)
{
    struct topics_ctx t = {.req = req, .create = create};
    enum turbine_error e;
    if (create) {
        struct turbine_create_topics_request in;
        e = turbine_create_topics_request_decode(&req->req, &in);
        t.names = in.topics;
        t.count = in.topic_count;
    } else {
        struct turbine_delete_topics_request in;
        e = turbine_delete_topics_request_decode(&req->req, &in);
        t.names = in.topics;
        t.count = in.topic_count;
    }
    if (e == TURBINE_ERR_NONE && t.count > TURBINE_TOPICS_MAX)
        e = TURBINE_ERR_REQUEST_TOO_LARGE;
    if (e == TURBINE_ERR_NONE && (t.errors = calloc(t.count + 1, sizeof(uint16_t))) == NULL)
        e = TURBINE_ERR_UNKNOWN;
    if (e != TURBINE_ERR_NONE) {
        turbine__respond_error(req, e);
        return;
    }
    struct turbine_proto_iter it = t.names;
    for (uint32_t i = 0; i < t.count; i++) {
        if (create) {
            struct turbine_create_topic ct;
            TURBINE_ASSERT(turbine_create_topics_next_topic(&it, &ct));
            t.errors[i] = create_one(&ct);
        } else {
            struct turbine_proto_name n;
            TURBINE_ASSERT(turbine_proto_next_name(&it, &n));
            t.errors[i] = delete_one(&n);
        }
    }
    if (turbine__respond(req, emit_topics, &t, false) < 0)
        turbine__respond_error(req, TURBINE_ERR_UNKNOWN);
    free(t.errors);
}

/* ---- routing helpers ------------------------------------------------------------------------ */

/* Looks a partition up: *topic set and NONE, or the error for it. */
static uint16_t resolve(const struct turbine_routing *r, const char *name, uint16_t name_size,
                        int32_t partition, const struct turbine_topic_entry **topic)
{
    *topic = turbine_routing_find(r, name, name_size);
    if (*topic == NULL)
        return TURBINE_ERR_UNKNOWN_TOPIC;
    if (partition < 0 || (uint32_t)partition >= (*topic)->partitions) {
        *topic = NULL;
        return TURBINE_ERR_UNKNOWN_PARTITION;
    }
    return TURBINE_ERR_NONE;
}

static unsigned owner_of(const struct turbine_topic_entry *t, int32_t partition)
{
    return turbine_partition_owner(t->hash, (uint32_t)partition, loom_core_count());
}

/* ---- PRODUCE -------------------------------------------------------------------------------- */

struct produce_part {
    struct call call; /* first: scatter() walks parts as calls */
    const struct turbine_topic_entry *topic;
    int32_t partition;
    const uint8_t *records;
    uint32_t records_size;
    enum turbine_durability durability;
    int64_t deadline_ns;
    uint16_t error;
    int64_t base_offset, log_start;
};

static int produce_on_owner(void *arg)
{
    struct produce_part *p = arg;
    struct turbine__partition *part;
    int rc = turbine__partition_get(p->topic, (uint32_t)p->partition, &part);
    if (rc < 0) {
        p->error = turbine__log_error(rc);
        return 0;
    }
    struct turbine_log *log = turbine__partition_log(part);
    int64_t off =
        turbine_log_append(log, p->records, p->records_size, p->durability, p->deadline_ns);
    if (off < 0)
        p->error = turbine__log_error(off);
    else
        p->base_offset = off;
    p->log_start = turbine_log_start_offset(log);
    turbine__partition_put(part);
    return 0;
}

struct produce_ctx {
    struct turbine__request *req;
    struct turbine_produce_request in;
    struct produce_part *parts;
};

static void emit_produce(struct turbine_proto_writer *w, void *arg)
{
    struct produce_ctx *pc = arg;
    struct turbine_produce_response head = {.topic_count = pc->in.topic_count};
    turbine_produce_response_begin(w, pc->req->req.header.correlation_id, &head);
    struct turbine_proto_iter it = pc->in.topics;
    struct turbine_proto_topic t;
    size_t i = 0;
    while (turbine_proto_next_topic(&it, &t)) {
        turbine_proto_add_topic(w, t.name, t.name_size, t.partition_count);
        for (uint32_t k = 0; k < t.partition_count; k++, i++) {
            const struct produce_part *p = &pc->parts[i];
            struct turbine_produce_result r = {.partition = p->partition,
                                               .error = p->error,
                                               .base_offset = p->error ? -1 : p->base_offset,
                                               .log_start_offset = p->error ? -1 : p->log_start};
            turbine_produce_add_result(w, &r);
        }
    }
    turbine_proto_frame_end(w);
}

/* Counts the partitions of a request (the codec checked the counts against the frame). */
static size_t count_parts(struct turbine_proto_iter topics)
{
    size_t n = 0;
    struct turbine_proto_topic t;
    while (turbine_proto_next_topic(&topics, &t))
        n += t.partition_count;
    return n;
}

/* Creates the unknown topics of a produce when auto_create_topics is on. */
static void produce_auto_create(struct turbine_proto_iter topics)
{
    struct turbine_proto_topic t;
    while (turbine_proto_next_topic(&topics, &t)) {
        const struct turbine_routing *r = turbine_routing_get();
        if (r == NULL || turbine_routing_find(r, t.name, t.name_size) != NULL ||
            name_reserved(t.name, t.name_size))
            continue;
        struct admin_call a = {.partitions = turbine__broker.config.default_partitions};
        turbine_topic_settings_from_config(&a.settings, &turbine__broker.config);
        memcpy(a.name, t.name, t.name_size);
        a.name[t.name_size] = '\0';
        loom_invoke_on(0, admin_create, &a, LOOM_NO_DEADLINE);
    }
}

static void handle_produce(struct turbine__request *req)
{
    struct produce_ctx pc = {.req = req};
    enum turbine_error e = turbine_produce_request_decode(&req->req, &pc.in);
    if (e == TURBINE_ERR_NONE && pc.in.acks != TURBINE_ACKS_NONE &&
        pc.in.acks != TURBINE_ACKS_LEADER && pc.in.acks != TURBINE_ACKS_ALL)
        e = TURBINE_ERR_INVALID_REQUEST;
    size_t n = e == TURBINE_ERR_NONE ? count_parts(pc.in.topics) : 0;
    if (n > TURBINE_REQUEST_PARTS_MAX)
        e = TURBINE_ERR_REQUEST_TOO_LARGE;
    if (e == TURBINE_ERR_NONE && pc.in.acks == TURBINE_ACKS_NONE)
        req->no_response = true;
    if (e != TURBINE_ERR_NONE) {
        turbine__respond_error(req, e);
        return;
    }
    if (turbine__broker.config.auto_create_topics)
        produce_auto_create(pc.in.topics);
    pc.parts = req->parts = calloc(n ? n : 1, sizeof(*pc.parts));
    const struct turbine_routing *r = turbine_routing_acquire();
    if (pc.parts == NULL || r == NULL) {
        if (r)
            turbine_routing_release(r);
        turbine__respond_error(req, pc.parts ? TURBINE_ERR_SHUTTING_DOWN : TURBINE_ERR_UNKNOWN);
        return;
    }
    int64_t deadline = request_deadline(pc.in.timeout_ms);
    struct turbine_proto_iter it = pc.in.topics;
    struct turbine_proto_topic t;
    size_t i = 0;
    while (turbine_proto_next_topic(&it, &t)) {
        struct turbine_produce_partition pp;
        while (turbine_produce_next_partition(&t.partitions, &pp)) {
            struct produce_part *p = &pc.parts[i++];
            p->partition = pp.partition;
            p->records = pp.records;
            p->records_size = pp.records_size;
            p->deadline_ns = deadline;
            p->error = resolve(r, t.name, t.name_size, pp.partition, &p->topic);
            if (p->error == TURBINE_ERR_NONE && pp.records_size == 0)
                p->error = TURBINE_ERR_CORRUPT_RECORD;
            if (p->error != TURBINE_ERR_NONE)
                continue;
            p->durability = pc.in.acks == TURBINE_ACKS_NONE     ? TURBINE_DURABLE_NONE
                            : pc.in.acks == TURBINE_ACKS_LEADER ? TURBINE_DURABLE_WRITTEN
                                                                : p->topic->settings.durability;
            p->call = (struct call){
                .owner = owner_of(p->topic, pp.partition), .fn = produce_on_owner, .arg = p};
        }
    }
    TURBINE_ASSERT(i == n);
    scatter(pc.parts, n, sizeof(*pc.parts));
    turbine_routing_release(r);
    for (size_t k = 0; k < n; k++) {
        turbine__metrics_error(pc.parts[k].error);
        if (pc.parts[k].error == TURBINE_ERR_NONE)
            turbine__metrics_here()->produce_bytes += pc.parts[k].records_size;
    }
    if (!req->no_response && turbine__respond(req, emit_produce, &pc, false) < 0)
        turbine__respond_error(req, TURBINE_ERR_UNKNOWN);
}

/* ---- FETCH ---------------------------------------------------------------------------------- */

struct fetch_part {
    struct call call;
    const struct turbine_topic_entry *topic;
    int32_t partition;
    int64_t offset;
    int32_t partition_max_bytes;
    size_t budget;   /* bytes this read may take */
    bool skip_read;  /* offsets only: the response is full */
    bool has_view;   /* view holds records */
    bool watching;   /* waiter registered on the owner */
    bool fired_now;  /* the registration found data at once */
    bool fired_sent; /* the unregistration found a message on its way */
    uint16_t error;
    int64_t hw, leo, lso;
    struct turbine__request *req;
    struct turbine_view view;
    struct turbine__waiter waiter;
};

static int fetch_on_owner(void *arg)
{
    struct fetch_part *p = arg;
    struct turbine__partition *part;
    int rc = turbine__partition_get(p->topic, (uint32_t)p->partition, &part);
    if (rc < 0) {
        p->error = turbine__log_error(rc);
        return 0;
    }
    struct turbine_log *log = turbine__partition_log(part);
    p->lso = turbine_log_start_offset(log);
    p->leo = turbine_log_end_offset(log);
    p->hw = turbine_log_written_offset(log);
    if (p->offset < p->lso || p->offset > p->leo) {
        p->error = TURBINE_ERR_OFFSET_OUT_OF_RANGE;
    } else if (!p->skip_read && p->offset < p->hw) {
        turbine_view_init(&p->view);
        ssize_t n = turbine_log_read_view(log, p->offset, p->budget, p->hw, &p->view);
        if (n > 0)
            p->has_view = true;
        else if (n < 0 && n != -ENOBUFS)
            p->error = turbine__log_error(n);
    }
    turbine__partition_put(part);
    return 0;
}

static int watch_on_owner(void *arg)
{
    struct fetch_part *p = arg;
    struct turbine__partition *part;
    if (turbine__partition_get(p->topic, (uint32_t)p->partition, &part) < 0) {
        p->fired_now = true;
        return 0;
    }
    p->waiter.offset = p->offset;
    p->fired_now = turbine__partition_watch(part, &p->waiter);
    p->watching = !p->fired_now;
    turbine__partition_put(part);
    return 0;
}

static int unwatch_on_owner(void *arg)
{
    struct fetch_part *p = arg;
    struct turbine__partition *part;
    if (turbine__partition_get(p->topic, (uint32_t)p->partition, &part) < 0) {
        /* closed: a close fires every waiter, so a message was sent */
        p->fired_sent = p->waiter.fired;
        return 0;
    }
    p->fired_sent = turbine__partition_unwatch(part, &p->waiter);
    p->watching = false;
    turbine__partition_put(part);
    return 0;
}

struct fetch_ctx {
    struct turbine__request *req;
    struct turbine_fetch_request in;
    struct fetch_part *parts;
    size_t count;
    size_t bytes; /* record bytes in the response */
};

/* Reads, in request order, the partitions that have no records yet, within the response's
 * max_bytes (the first batch of a response goes even if larger). */
static void fetch_pass(struct fetch_ctx *fc)
{
    size_t response_max = (size_t)fc->in.max_bytes;
    for (size_t i = 0; i < fc->count; i++) {
        struct fetch_part *p = &fc->parts[i];
        if (p->call.fn == NULL || p->has_view || p->error != TURBINE_ERR_NONE)
            continue;
        size_t left = response_max > fc->bytes ? response_max - fc->bytes : 0;
        size_t pmax = (size_t)p->partition_max_bytes;
        p->budget = pmax < left ? pmax : left;
        p->skip_read = fc->bytes > 0 && p->budget == 0;
        if (p->budget == 0)
            p->budget = 1; /* the first batch, whatever its size */
        call_run(&p->call);
        if (p->has_view) {
            fc->bytes += p->view.bytes;
            turbine__request_charge(fc->req, p->view.pinned_bytes);
        }
    }
}

static bool fetch_has_error(const struct fetch_ctx *fc)
{
    for (size_t i = 0; i < fc->count; i++)
        if (fc->parts[i].error != TURBINE_ERR_NONE)
            return true;
    return false;
}

/* Long poll: sleeps until a partition without records gets some, the deadline or shutdown,
 * then reads again; until min_bytes are there. */
static void fetch_wait(struct fetch_ctx *fc, int64_t deadline_ns)
{
    struct turbine__poll poll;
    turbine__poll_init(&poll);
    while (fc->bytes < (size_t)fc->in.min_bytes && !fetch_has_error(fc) &&
           loom_clock_ns() < deadline_ns && !atomic_load(&turbine__broker.stopping)) {
        bool data_now = false;
        for (size_t i = 0; i < fc->count; i++) {
            struct fetch_part *p = &fc->parts[i];
            if (p->call.fn == NULL || p->has_view)
                continue;
            turbine__waiter_init(&p->waiter, &poll);
            struct call c = {.owner = p->call.owner, .fn = watch_on_owner, .arg = p};
            call_run(&c);
            data_now |= p->fired_now;
        }
        if (!data_now)
            turbine__poll_sleep(&poll, deadline_ns);
        for (size_t i = 0; i < fc->count; i++) {
            struct fetch_part *p = &fc->parts[i];
            if (!p->watching)
                continue;
            struct call c = {.owner = p->call.owner, .fn = unwatch_on_owner, .arg = p};
            call_run(&c);
            poll.expected += p->fired_sent;
        }
        size_t before = fc->bytes;
        fetch_pass(fc);
        if (data_now && fc->bytes == before)
            loom_sleep(LOOM_NS_PER_MS); /* written but not lendable yet (cache pins): no spin */
    }
    turbine__poll_drain(&poll);
}

static void emit_fetch(struct turbine_proto_writer *w, void *arg)
{
    struct fetch_ctx *fc = arg;
    struct turbine_fetch_response head = {.topic_count = fc->in.topic_count};
    turbine_fetch_response_begin(w, fc->req->req.header.correlation_id, &head);
    struct turbine_proto_iter it = fc->in.topics;
    struct turbine_proto_topic t;
    size_t i = 0;
    while (turbine_proto_next_topic(&it, &t)) {
        turbine_proto_add_topic(w, t.name, t.name_size, t.partition_count);
        for (uint32_t k = 0; k < t.partition_count; k++, i++) {
            const struct fetch_part *p = &fc->parts[i];
            struct turbine_fetch_result r = {.partition = p->partition,
                                             .error = p->error,
                                             .high_watermark = p->error ? -1 : p->hw,
                                             .log_end_offset = p->error ? -1 : p->leo,
                                             .log_start_offset = p->error ? -1 : p->lso,
                                             .records = NULL,
                                             .records_size =
                                                 p->has_view ? (uint32_t)p->view.bytes : 0};
            turbine_fetch_add_result(w, &r);
            for (unsigned s = 0; p->has_view && s < p->view.count; s++)
                turbine_proto_writer_external(w, p->view.iov[s].iov_base, p->view.iov[s].iov_len);
        }
    }
    turbine_proto_frame_end(w);
}

static void view_released(struct turbine_view *view)
{
    struct fetch_part *p = (struct fetch_part *)((char *)view - offsetof(struct fetch_part, view));
    turbine__request_release_done(p->req);
}

/* After the send: each view goes back to its owner core. */
static void fetch_release(struct turbine__request *req)
{
    for (struct fetch_part *p = req->parts; p != NULL && p->req == req; p++) {
        if (!p->has_view)
            continue;
        p->has_view = false;
        req->pending++;
        turbine_view_release_remote(&p->view, view_released);
    }
}

static void handle_fetch(struct turbine__request *req)
{
    struct fetch_ctx fc = {.req = req};
    enum turbine_error e = turbine_fetch_request_decode(&req->req, &fc.in);
    if (e == TURBINE_ERR_NONE &&
        (fc.in.max_bytes < 0 || fc.in.min_bytes < 0 || fc.in.max_wait_ms < 0))
        e = TURBINE_ERR_INVALID_REQUEST;
    fc.count = e == TURBINE_ERR_NONE ? count_parts(fc.in.topics) : 0;
    if (fc.count > TURBINE_REQUEST_PARTS_MAX)
        e = TURBINE_ERR_REQUEST_TOO_LARGE;
    if (e != TURBINE_ERR_NONE) {
        turbine__respond_error(req, e);
        return;
    }
    /* one extra zeroed part ends the array for fetch_release() */
    fc.parts = req->parts = calloc(fc.count + 1, sizeof(*fc.parts));
    const struct turbine_routing *r = turbine_routing_acquire();
    if (fc.parts == NULL || r == NULL) {
        if (r)
            turbine_routing_release(r);
        turbine__respond_error(req, fc.parts ? TURBINE_ERR_SHUTTING_DOWN : TURBINE_ERR_UNKNOWN);
        return;
    }
    req->release = fetch_release;
    struct turbine_proto_iter it = fc.in.topics;
    struct turbine_proto_topic t;
    size_t i = 0;
    while (turbine_proto_next_topic(&it, &t)) {
        struct turbine_fetch_partition fp;
        while (turbine_fetch_next_partition(&t.partitions, &fp)) {
            struct fetch_part *p = &fc.parts[i++];
            p->req = req;
            p->partition = fp.partition;
            p->offset = fp.fetch_offset;
            p->partition_max_bytes = fp.partition_max_bytes;
            p->error = resolve(r, t.name, t.name_size, fp.partition, &p->topic);
            if (p->error == TURBINE_ERR_NONE && fp.partition_max_bytes < 0)
                p->error = TURBINE_ERR_INVALID_REQUEST;
            if (p->error == TURBINE_ERR_NONE)
                p->call = (struct call){
                    .owner = owner_of(p->topic, fp.partition), .fn = fetch_on_owner, .arg = p};
        }
    }
    TURBINE_ASSERT(i == fc.count);
    int64_t deadline = request_deadline(fc.in.max_wait_ms);
    fetch_pass(&fc);
    if (fc.in.max_wait_ms > 0)
        fetch_wait(&fc, deadline);
    turbine_routing_release(r);
    if (turbine__respond(req, emit_fetch, &fc, true) < 0)
        turbine__respond_error(req, TURBINE_ERR_UNKNOWN);
}

/* ---- LIST_OFFSETS --------------------------------------------------------------------------- */

struct list_part {
    struct call call;
    const struct turbine_topic_entry *topic;
    int32_t partition;
    int64_t query;
    uint16_t error;
    int64_t timestamp, offset;
};

/* The maxTimestamp of the batch at `offset` (-1 if it cannot be read). */
static int64_t batch_timestamp(struct turbine_log *log, int64_t offset)
{
    struct turbine_view v;
    turbine_view_init(&v);
    if (turbine_log_read_view(log, offset, 1, turbine_log_written_offset(log), &v) <= 0)
        return -1;
    uint8_t head[TURBINE_BATCH_HEADER_SIZE];
    size_t got = 0;
    for (unsigned s = 0; s < v.count && got < sizeof(head); s++) {
        size_t take = v.iov[s].iov_len < sizeof(head) - got ? v.iov[s].iov_len : sizeof(head) - got;
        memcpy(head + got, v.iov[s].iov_base, take);
        got += take;
    }
    turbine_view_release(&v);
    if (got < sizeof(head))
        return -1;
    struct turbine_batch_header h;
    turbine_batch_header_decode(head, &h);
    return h.max_timestamp;
}

static int list_on_owner(void *arg)
{
    struct list_part *p = arg;
    struct turbine__partition *part;
    int rc = turbine__partition_get(p->topic, (uint32_t)p->partition, &part);
    if (rc < 0) {
        p->error = turbine__log_error(rc);
        return 0;
    }
    struct turbine_log *log = turbine__partition_log(part);
    p->timestamp = -1;
    if (p->query == TURBINE_OFFSET_LATEST) {
        p->offset = turbine_log_end_offset(log);
    } else if (p->query == TURBINE_OFFSET_EARLIEST) {
        p->offset = turbine_log_start_offset(log);
    } else if (p->query < 0) {
        p->error = TURBINE_ERR_INVALID_REQUEST;
    } else {
        int64_t off = turbine_log_offset_for_time(log, p->query);
        if (off < 0) {
            p->error = turbine__log_error(off);
        } else if (off >= turbine_log_written_offset(log)) {
            p->offset = -1;
        } else {
            p->offset = off;
            p->timestamp = batch_timestamp(log, off);
        }
    }
    turbine__partition_put(part);
    return 0;
}

struct list_ctx {
    struct turbine__request *req;
    struct turbine_list_offsets_request in;
    struct list_part *parts;
};

static void emit_list(struct turbine_proto_writer *w, void *arg)
{
    struct list_ctx *lc = arg;
    struct turbine_list_offsets_response head = {.topic_count = lc->in.topic_count};
    turbine_list_offsets_response_begin(w, lc->req->req.header.correlation_id, &head);
    struct turbine_proto_iter it = lc->in.topics;
    struct turbine_proto_topic t;
    size_t i = 0;
    while (turbine_proto_next_topic(&it, &t)) {
        turbine_proto_add_topic(w, t.name, t.name_size, t.partition_count);
        for (uint32_t k = 0; k < t.partition_count; k++, i++) {
            const struct list_part *p = &lc->parts[i];
            struct turbine_list_offsets_result r = {.partition = p->partition,
                                                    .error = p->error,
                                                    .timestamp = p->error ? -1 : p->timestamp,
                                                    .offset = p->error ? -1 : p->offset};
            turbine_list_offsets_add_result(w, &r);
        }
    }
    turbine_proto_frame_end(w);
}

static void handle_list_offsets(struct turbine__request *req)
{
    struct list_ctx lc = {.req = req};
    enum turbine_error e = turbine_list_offsets_request_decode(&req->req, &lc.in);
    size_t n = e == TURBINE_ERR_NONE ? count_parts(lc.in.topics) : 0;
    if (n > TURBINE_REQUEST_PARTS_MAX)
        e = TURBINE_ERR_REQUEST_TOO_LARGE;
    if (e != TURBINE_ERR_NONE) {
        turbine__respond_error(req, e);
        return;
    }
    lc.parts = req->parts = calloc(n ? n : 1, sizeof(*lc.parts));
    const struct turbine_routing *r = turbine_routing_acquire();
    if (lc.parts == NULL || r == NULL) {
        if (r)
            turbine_routing_release(r);
        turbine__respond_error(req, lc.parts ? TURBINE_ERR_SHUTTING_DOWN : TURBINE_ERR_UNKNOWN);
        return;
    }
    struct turbine_proto_iter it = lc.in.topics;
    struct turbine_proto_topic t;
    size_t i = 0;
    while (turbine_proto_next_topic(&it, &t)) {
        struct turbine_list_offsets_partition lp;
        while (turbine_list_offsets_next_partition(&t.partitions, &lp)) {
            struct list_part *p = &lc.parts[i++];
            p->partition = lp.partition;
            p->query = lp.timestamp;
            p->error = resolve(r, t.name, t.name_size, lp.partition, &p->topic);
            if (p->error == TURBINE_ERR_NONE)
                p->call = (struct call){
                    .owner = owner_of(p->topic, lp.partition), .fn = list_on_owner, .arg = p};
        }
    }
    scatter(lc.parts, n, sizeof(*lc.parts));
    turbine_routing_release(r);
    if (turbine__respond(req, emit_list, &lc, false) < 0)
        turbine__respond_error(req, TURBINE_ERR_UNKNOWN);
}

/* ---- OFFSET_COMMIT, OFFSET_FETCH ------------------------------------------------------------ */

struct offsets_ctx {
    struct turbine__request *req;
    struct turbine_proto_iter topics;
    uint32_t topic_count;
    bool commit;
    struct turbine__offset_entry *entries;
};

static void emit_offsets(struct turbine_proto_writer *w, void *arg)
{
    struct offsets_ctx *oc = arg;
    struct turbine_offsets_response head = {.topic_count = oc->topic_count};
    turbine_offsets_response_begin(w, oc->req->req.header.correlation_id,
                                   oc->req->req.header.api_key, &head);
    struct turbine_proto_iter it = oc->topics;
    struct turbine_proto_topic t;
    size_t i = 0;
    while (turbine_proto_next_topic(&it, &t)) {
        turbine_proto_add_topic(w, t.name, t.name_size, t.partition_count);
        for (uint32_t k = 0; k < t.partition_count; k++, i++) {
            const struct turbine__offset_entry *e = &oc->entries[i];
            if (oc->commit) {
                struct turbine_offset_commit_result r = {.partition = e->partition,
                                                         .error = e->error};
                turbine_offset_commit_add_result(w, &r);
            } else {
                struct turbine_offset_fetch_result r = {.partition = e->partition,
                                                        .error = e->error,
                                                        .offset = e->error ? -1 : e->offset,
                                                        .metadata = e->error ? NULL : e->metadata,
                                                        .metadata_size =
                                                            e->error ? 0 : e->metadata_size};
                turbine_offset_fetch_add_result(w, &r);
            }
        }
    }
    turbine_proto_frame_end(w);
}

static void handle_offsets(struct turbine__request *req, bool commit)
{
    struct offsets_ctx oc = {.req = req, .commit = commit};
    struct turbine__offsets_call call = {.commit = commit};
    enum turbine_error e;
    if (commit) {
        struct turbine_offset_commit_request in;
        e = turbine_offset_commit_request_decode(&req->req, &in);
        oc.topics = in.topics;
        oc.topic_count = in.topic_count;
        call.group = in.group;
        call.group_size = in.group_size;
    } else {
        struct turbine_offset_fetch_request in;
        e = turbine_offset_fetch_request_decode(&req->req, &in);
        oc.topics = in.topics;
        oc.topic_count = in.topic_count;
        call.group = in.group;
        call.group_size = in.group_size;
    }
    if (e == TURBINE_ERR_NONE && (call.group_size == 0 || call.group_size > TURBINE_GROUP_NAME_MAX))
        e = TURBINE_ERR_INVALID_GROUP;
    size_t n = e == TURBINE_ERR_NONE ? count_parts(oc.topics) : 0;
    if (n > TURBINE_REQUEST_PARTS_MAX)
        e = TURBINE_ERR_REQUEST_TOO_LARGE;
    if (e != TURBINE_ERR_NONE) {
        turbine__respond_error(req, e);
        return;
    }
    oc.entries = calloc(n ? n : 1, sizeof(*oc.entries));
    const struct turbine_routing *r = turbine_routing_acquire();
    if (oc.entries == NULL || r == NULL) {
        if (r)
            turbine_routing_release(r);
        free(oc.entries);
        turbine__respond_error(req, oc.entries ? TURBINE_ERR_SHUTTING_DOWN : TURBINE_ERR_UNKNOWN);
        return;
    }
    struct turbine_proto_iter it = oc.topics;
    struct turbine_proto_topic t;
    size_t i = 0;
    while (turbine_proto_next_topic(&it, &t)) {
        for (uint32_t k = 0; k < t.partition_count; k++, i++) {
            struct turbine__offset_entry *en = &oc.entries[i];
            if (commit) {
                struct turbine_offset_commit_partition cp;
                TURBINE_ASSERT(turbine_offset_commit_next_partition(&t.partitions, &cp));
                en->partition = cp.partition;
                en->offset = cp.offset;
                en->metadata = cp.metadata;
                en->metadata_size = cp.metadata_size;
            } else {
                struct turbine_offset_fetch_partition fp;
                TURBINE_ASSERT(turbine_offset_fetch_next_partition(&t.partitions, &fp));
                en->partition = fp.partition;
            }
            en->error = resolve(r, t.name, t.name_size, en->partition, &en->topic);
            if (en->error == TURBINE_ERR_NONE && commit && en->offset < 0)
                en->error = TURBINE_ERR_INVALID_REQUEST;
            if (en->error == TURBINE_ERR_NONE && commit &&
                en->metadata_size > TURBINE_OFFSET_META_MAX)
                en->error = TURBINE_ERR_OFFSET_METADATA_TOO_LARGE;
        }
    }
    call.entries = oc.entries;
    call.count = (uint32_t)n;
    loom_invoke_on(turbine__group_owner(call.group, call.group_size), turbine__offsets_call, &call,
                   LOOM_NO_DEADLINE);
    for (size_t k = 0; call.rc < 0 && k < n; k++)
        if (oc.entries[k].error == TURBINE_ERR_NONE)
            oc.entries[k].error = TURBINE_ERR_STORAGE_ERROR;
    turbine_routing_release(r);
    if (turbine__respond(req, emit_offsets, &oc, false) < 0)
        turbine__respond_error(req, TURBINE_ERR_UNKNOWN);
    for (size_t k = 0; k < n; k++)
        free(oc.entries[k].meta_copy);
    free(oc.entries);
}

/* ---- DESCRIBE_TOPICS ------------------------------------------------------------------------ */

struct describe_part {
    struct call call;
    const struct turbine_topic_entry *topic;
    struct turbine_describe_partition out;
};

static int describe_on_owner(void *arg)
{
    struct describe_part *p = arg;
    struct turbine__partition *part;
    int rc = turbine__partition_get(p->topic, (uint32_t)p->out.partition, &part);
    if (rc < 0) {
        p->out.error = turbine__log_error(rc);
        return 0;
    }
    struct turbine_log *log = turbine__partition_log(part);
    struct turbine_log_stats st;
    turbine_log_stats_get(log, &st);
    p->out.log_start_offset = turbine_log_start_offset(log);
    p->out.high_watermark = turbine_log_written_offset(log);
    p->out.log_end_offset = turbine_log_end_offset(log);
    p->out.segment_count = (uint32_t)st.segments;
    p->out.size_bytes = (int64_t)st.size; /* batches, not the preallocated file space */
    turbine__partition_put(part);
    return 0;
}

struct describe_ctx {
    struct turbine__request *req;
    const struct turbine_topic_entry **topics; /* NULL entries: unknown */
    const struct turbine_proto_name *names;
    struct turbine_proto_iter in_names;
    uint32_t count;
    bool all;
    struct describe_part *parts;
};

static void emit_describe(struct turbine_proto_writer *w, void *arg)
{
    struct describe_ctx *dc = arg;
    struct turbine_describe_topics_response head = {.topic_count = dc->count};
    turbine_describe_topics_response_begin(w, dc->req->req.header.correlation_id, &head);
    struct turbine_proto_iter it = dc->in_names;
    size_t k = 0;
    for (uint32_t i = 0; i < dc->count; i++) {
        const struct turbine_topic_entry *t = dc->topics[i];
        struct turbine_describe_topic dt = {.error =
                                                t ? TURBINE_ERR_NONE : TURBINE_ERR_UNKNOWN_TOPIC,
                                            .partition_count = t ? t->partitions : 0};
        if (t != NULL) {
            dt.name = t->name;
            dt.name_size = (uint16_t)t->name_len;
            settings_to_wire(&t->settings, &dt.config);
        }
        if (!dc->all) {
            struct turbine_proto_name n;
            TURBINE_ASSERT(turbine_proto_next_name(&it, &n));
            dt.name = n.name;
            dt.name_size = n.name_size;
        }
        if (t == NULL) /* the effective settings of nothing: the defaults */
            dt.config = (struct turbine_topic_config){
                TURBINE_CONFIG_DEFAULT, TURBINE_CONFIG_DEFAULT, TURBINE_CONFIG_DEFAULT, 0};
        turbine_describe_add_topic(w, &dt);
        for (uint32_t p = 0; t && p < t->partitions; p++)
            turbine_describe_add_partition(w, &dc->parts[k++].out);
    }
    turbine_proto_frame_end(w);
}

static void handle_describe(struct turbine__request *req)
{
    struct describe_ctx dc = {.req = req};
    struct turbine_describe_topics_request in;
    enum turbine_error e = turbine_describe_topics_request_decode(&req->req, &in);
    const struct turbine_routing *r = e == TURBINE_ERR_NONE ? turbine_routing_acquire() : NULL;
    if (e == TURBINE_ERR_NONE && r == NULL)
        e = TURBINE_ERR_SHUTTING_DOWN;
    if (e == TURBINE_ERR_NONE && in.topic_count > TURBINE_TOPICS_MAX)
        e = TURBINE_ERR_REQUEST_TOO_LARGE;
    if (e != TURBINE_ERR_NONE) {
        if (r)
            turbine_routing_release(r);
        turbine__respond_error(req, e);
        return;
    }
    dc.all = in.topic_count == 0;
    dc.count = dc.all ? r->topic_count : in.topic_count;
    dc.in_names = in.topics;
    dc.topics = calloc(dc.count + 1, sizeof(*dc.topics));
    size_t n = 0;
    struct turbine_proto_iter it = in.topics;
    for (uint32_t i = 0; dc.topics && i < dc.count; i++) {
        if (dc.all) {
            dc.topics[i] = &r->topics[i];
        } else {
            struct turbine_proto_name nm;
            TURBINE_ASSERT(turbine_proto_next_name(&it, &nm));
            dc.topics[i] = turbine_routing_find(r, nm.name, nm.name_size);
        }
        n += dc.topics[i] ? dc.topics[i]->partitions : 0;
    }
    dc.parts = dc.topics ? calloc(n + 1, sizeof(*dc.parts)) : NULL;
    if (dc.parts == NULL) {
        turbine_routing_release(r);
        free(dc.topics);
        turbine__respond_error(req, TURBINE_ERR_UNKNOWN);
        return;
    }
    size_t k = 0;
    for (uint32_t i = 0; i < dc.count; i++) {
        const struct turbine_topic_entry *t = dc.topics[i];
        for (uint32_t p = 0; t && p < t->partitions; p++, k++) {
            dc.parts[k].topic = t;
            dc.parts[k].out.partition = (int32_t)p;
            dc.parts[k].call = (struct call){
                .owner = owner_of(t, (int32_t)p), .fn = describe_on_owner, .arg = &dc.parts[k]};
        }
    }
    scatter(dc.parts, n, sizeof(*dc.parts));
    if (turbine__respond(req, emit_describe, &dc, false) < 0)
        turbine__respond_error(req, TURBINE_ERR_UNKNOWN);
    turbine_routing_release(r);
    free(dc.parts);
    free(dc.topics);
}

/* ---- dispatch ------------------------------------------------------------------------------- */

void turbine__handle(struct turbine__request *req)
{
    switch (req->req.header.api_key) {
    case TURBINE_API_HANDSHAKE:
        handle_handshake(req);
        break;
    case TURBINE_API_METADATA:
        handle_metadata(req);
        break;
    case TURBINE_API_CREATE_TOPICS:
        handle_topics_admin(req, true);
        break;
    case TURBINE_API_DELETE_TOPICS:
        handle_topics_admin(req, false);
        break;
    case TURBINE_API_PRODUCE:
        handle_produce(req);
        break;
    case TURBINE_API_FETCH:
        handle_fetch(req);
        break;
    case TURBINE_API_LIST_OFFSETS:
        handle_list_offsets(req);
        break;
    case TURBINE_API_OFFSET_COMMIT:
        handle_offsets(req, true);
        break;
    case TURBINE_API_OFFSET_FETCH:
        handle_offsets(req, false);
        break;
    case TURBINE_API_DESCRIBE_TOPICS:
        handle_describe(req);
        break;
    default:
        turbine__respond_error(req, TURBINE_ERR_UNKNOWN_API); /* the codec knows it; we do not */
        break;
    }
}
