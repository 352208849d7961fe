/* SPDX-License-Identifier: MIT
 * partition.c - partitions on their owner core: the per-core table of open partition logs
 * (opened on first use, one open at a time per core), the long-poll waiters of each partition
 * and the one watcher fiber that wakes them, periodic retention, and closing at delete and
 * shutdown.
 *
 * Invariants: a partition record and its log are touched only by the owner core. A record is
 * freed only after its users reached zero, its waiters fired and its watcher fiber returned.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "broker/broker.h"
#include "turbine_assert.h"

#define TABLE_BUCKETS 4096u /* per core; chains beyond */

struct turbine__partition {
    struct turbine__partition *hnext; /* bucket chain */
    uint64_t topic_id;
    uint32_t partition;
    struct turbine_log *log; /* NULL until opened */
    unsigned users;          /* turbine__partition_get() holds */
    unsigned open_waiters;   /* fibers queued behind the open: later ones queue too (order) */
    bool closing;
    bool watcher_running;
    struct turbine__waiter *waiters; /* long polls, unordered */
    struct loom_baton *idle_waiter;  /* close waits for users = 0 and the watcher's end */
};

struct part_core {
    struct turbine__partition *buckets[TABLE_BUCKETS];
    struct loom_mutex open_lock; /* one log open at a time: recovery takes IO buffers */
    struct loom_timer retention;
    unsigned count;
    bool started, retention_running;
} __attribute__((aligned(64)));

static struct part_core *cores[LOOM_CORES_MAX];

static unsigned bucket_of(uint64_t topic_id, uint32_t partition)
{
    uint64_t h = (topic_id * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)partition * 0xff51afd7ed558ccdull);
    return (unsigned)(h >> 40) & (TABLE_BUCKETS - 1);
}

static struct part_core *here(void)
{
    struct part_core *pc = cores[loom_core_id()];
    TURBINE_ASSERT(pc != NULL);
    return pc;
}

enum turbine_error turbine__log_error(int64_t rc)
{
    switch (rc) {
    case -EBADMSG:
        return TURBINE_ERR_CORRUPT_RECORD;
    case -EMSGSIZE:
        return TURBINE_ERR_RECORD_TOO_LARGE;
    case -ENOSPC:
        return TURBINE_ERR_DISK_FULL;
    case -ETIMEDOUT:
        return TURBINE_ERR_TIMEOUT;
    case -ESHUTDOWN:
        return TURBINE_ERR_SHUTTING_DOWN;
    case -ERANGE:
        return TURBINE_ERR_OFFSET_OUT_OF_RANGE;
    default:
        return TURBINE_ERR_STORAGE_ERROR;
    }
}

/* ---- retention ------------------------------------------------------------------------------ */

static int retention_run(void *arg)
{
    struct part_core *pc = arg;
    int64_t now_ms = (int64_t)time(NULL) * 1000;
    for (unsigned b = 0; b < TABLE_BUCKETS; b++) {
        for (struct turbine__partition *p = pc->buckets[b]; p; p = p->hnext) {
            if (p->log == NULL || p->closing)
                continue;
            p->users++; /* the chain may change while retention suspends */
            int rc = turbine_log_apply_retention(p->log, now_ms);
            if (rc < 0)
                turbine__log(TURBINE_LOG_WARN, "partition",
                             "retention of topic id %" PRIu64 "/%u: %s", p->topic_id, p->partition,
                             strerror(-rc));
            turbine__partition_put(p);
        }
    }
    pc->retention_running = false;
    return 0;
}

static void retention_tick(struct loom_timer *timer, void *arg)
{
    struct part_core *pc = arg;
    if (pc->retention_running || atomic_load(&turbine__broker.stopping))
        return;
    pc->retention_running = true;
    if (loom_spawn(NULL, retention_run, pc, NULL) < 0)
        pc->retention_running = false;
}

int turbine__partitions_core_start(void *arg)
{
    struct part_core *pc = calloc(1, sizeof(*pc));
    if (pc == NULL)
        return -ENOMEM;
    loom_mutex_init(&pc->open_lock);
    loom_timer_init(&pc->retention);
    loom_timer_start_periodic(&pc->retention, TURBINE_RETENTION_PERIOD_MS * LOOM_NS_PER_MS,
                              retention_tick, pc);
    pc->started = true;
    cores[loom_core_id()] = pc;
    return 0;
}

/* ---- open and close ------------------------------------------------------------------------- */

static struct turbine__partition *lookup(struct part_core *pc, uint64_t topic_id, uint32_t p)
{
    for (struct turbine__partition *x = pc->buckets[bucket_of(topic_id, p)]; x; x = x->hnext)
        if (x->topic_id == topic_id && x->partition == p)
            return x;
    return NULL;
}

/* The log's write buffer: 4 MiB (batches up to 1 MiB) unless the cache is too small for it. */
static size_t write_buffer_bytes(void)
{
    struct turbine_cache_stats st;
    size_t wb = 4u << 20;
    if (turbine_cache_stats_get(&st) == 0 && st.page_bytes > 0)
        while (wb > (256u << 10) && 2 * (wb / st.page_bytes + 3) > st.pages / 2)
            wb /= 2;
    return wb;
}

static int open_log(const struct turbine_topic_entry *topic, uint32_t p, struct turbine_log **out)
{
    char dir[TURBINE_CONFIG_PATH_MAX + TURBINE_TOPIC_NAME_MAX + 32];
    int n = snprintf(dir, sizeof(dir), "%s/%s", turbine__broker.config.data_dir, topic->name);
    TURBINE_ASSERT(n > 0 && (size_t)n < sizeof(dir));
    int rc = loom_mkdirat(AT_FDCWD, dir, 0755, LOOM_NO_DEADLINE);
    if (rc < 0 && rc != -EEXIST)
        return rc;
    snprintf(dir + n, sizeof(dir) - (size_t)n, "/%u", p);
    struct turbine_log_config lc;
    turbine_log_config_init(&lc);
    lc.dir = dir;
    lc.segment_bytes = topic->settings.segment_bytes;
    lc.retention_ms = topic->settings.retention_ms;
    lc.retention_bytes = topic->settings.retention_bytes;
    lc.leader_epoch = 0;
    lc.write_buffer_bytes = write_buffer_bytes();
    if (lc.max_unflushed_bytes < lc.write_buffer_bytes)
        lc.max_unflushed_bytes = lc.write_buffer_bytes;
    return turbine_log_open(&lc, out);
}

int turbine__partition_get(const struct turbine_topic_entry *topic, uint32_t p,
                           struct turbine__partition **out)
{
    TURBINE_ASSERT(p < topic->partitions);
    struct part_core *pc = cores[loom_core_id()];
    if (pc == NULL || !pc->started)
        return -ESHUTDOWN;
    struct turbine__partition *part = lookup(pc, topic->id, p);
    if (part == NULL) {
        part = calloc(1, sizeof(*part));
        if (part == NULL)
            return -ENOMEM;
        part->topic_id = topic->id;
        part->partition = p;
        unsigned b = bucket_of(topic->id, p);
        part->hnext = pc->buckets[b];
        pc->buckets[b] = part;
        pc->count++;
    }
    if (part->closing)
        return -ESHUTDOWN;
    part->users++;
    /* While the log opens, requests queue in arrival order; one that came later must not
     * overtake them once the log is open (pipelined produces append in request order). */
    if (part->log == NULL || part->open_waiters > 0) {
        part->open_waiters++;
        loom_mutex_lock(&pc->open_lock, LOOM_NO_DEADLINE);
        part->open_waiters--;
        int rc = 0;
        if (part->log == NULL && !part->closing)
            rc = open_log(topic, p, &part->log);
        loom_mutex_unlock(&pc->open_lock);
        if (rc < 0 || part->log == NULL) {
            turbine__partition_put(part);
            if (rc < 0)
                turbine__log(TURBINE_LOG_ERROR, "partition", "opening %s/%u: %s", topic->name, p,
                             strerror(-rc));
            return rc < 0 ? rc : -ESHUTDOWN;
        }
    }
    *out = part;
    return 0;
}

void turbine__partition_put(struct turbine__partition *part)
{
    TURBINE_ASSERT(part->users > 0);
    part->users--;
    if (part->users == 0 && part->idle_waiter != NULL) {
        struct loom_baton *b = part->idle_waiter;
        part->idle_waiter = NULL;
        loom_baton_post(b);
    }
}

struct turbine_log *turbine__partition_log(struct turbine__partition *part)
{
    TURBINE_ASSERT(part->log != NULL);
    return part->log;
}

/* ---- long-poll waiters ---------------------------------------------------------------------- */

static void waiter_fire(struct turbine__waiter *w)
{
    TURBINE_ASSERT(w->linked && !w->fired);
    w->linked = false;
    w->fired = true;
    loom_msg_send(w->home, &w->msg, w->msg.fn);
}

static void waiters_unlink_fire(struct turbine__partition *part, bool all)
{
    int64_t written =
        (all || part->log == NULL) ? INT64_MAX : turbine_log_written_offset(part->log);
    struct turbine__waiter **link = &part->waiters;
    while (*link) {
        struct turbine__waiter *w = *link;
        if (all || written > w->offset) {
            *link = w->next;
            waiter_fire(w);
        } else {
            link = &w->next;
        }
    }
}

/* One per partition with waiters: sleeps in turbine_log_wait (no polling) and fires the waiters
 * that the new data satisfies. It ends when no waiter is left after a wake, or at close. */
static int watcher_main(void *arg)
{
    struct turbine__partition *part = arg;
    while (part->waiters != NULL && !part->closing) {
        int64_t seen = turbine_log_written_offset(part->log);
        int rc = turbine_log_wait(part->log, seen, LOOM_NO_DEADLINE);
        if (part->closing)
            break; /* the log may be gone */
        waiters_unlink_fire(part, rc < 0);
    }
    part->watcher_running = false;
    if (part->users == 0 && part->idle_waiter != NULL) {
        struct loom_baton *b = part->idle_waiter;
        part->idle_waiter = NULL;
        loom_baton_post(b);
    }
    return 0;
}

bool turbine__partition_watch(struct turbine__partition *part, struct turbine__waiter *w)
{
    TURBINE_ASSERT(!w->linked);
    w->fired = false;
    if (part->closing || turbine_log_written_offset(part->log) > w->offset)
        return true; /* nothing registered, nothing will be sent */
    w->linked = true;
    w->prev = NULL;
    w->next = part->waiters;
    part->waiters = w;
    if (!part->watcher_running) {
        part->watcher_running = true;
        struct loom_fiber_attr attr = {.name = "watcher", .stack = LOOM_STACK_SMALL};
        if (loom_spawn(NULL, watcher_main, part, &attr) < 0) {
            part->watcher_running = false;
            part->waiters = w->next;
            w->linked = false;
            return true; /* the fetch answers with what it has */
        }
    }
    return false;
}

bool turbine__partition_unwatch(struct turbine__partition *part, struct turbine__waiter *w)
{
    if (!w->linked)
        return w->fired;
    for (struct turbine__waiter **link = &part->waiters; *link; link = &(*link)->next) {
        if (*link == w) {
            *link = w->next;
            break;
        }
    }
    w->linked = false;
    return false;
}

/* ---- closing -------------------------------------------------------------------------------- */

static void partition_close(struct part_core *pc, struct turbine__partition *part)
{
    TURBINE_ASSERT(!part->closing);
    part->closing = true;
    waiters_unlink_fire(part, true);
    while (part->users > 0) {
        struct loom_baton b;
        loom_baton_init(&b);
        part->idle_waiter = &b;
        loom_baton_wait(&b, LOOM_NO_DEADLINE);
        loom_baton_deinit(&b);
    }
    if (part->log != NULL) {
        int rc = turbine_log_close(part->log); /* wakes the watcher: it sees `closing` */
        if (rc < 0)
            turbine__log(TURBINE_LOG_ERROR, "partition",
                         "closing topic id %" PRIu64 " partition %u: %s", part->topic_id,
                         part->partition, strerror(-rc));
        part->log = NULL;
    }
    while (part->watcher_running) {
        struct loom_baton b;
        loom_baton_init(&b);
        part->idle_waiter = &b;
        loom_baton_wait(&b, LOOM_NO_DEADLINE);
        loom_baton_deinit(&b);
    }
    /* unlink from the chain (it may have changed while this suspended) */
    unsigned b = bucket_of(part->topic_id, part->partition);
    for (struct turbine__partition **link = &pc->buckets[b]; *link; link = &(*link)->hnext) {
        if (*link == part) {
            *link = part->hnext;
            break;
        }
    }
    pc->count--;
    free(part);
}

void turbine__partitions_forget(uint64_t topic_id, uint32_t count)
{
    struct part_core *pc = here();
    for (uint32_t p = 0; p < count; p++) {
        struct turbine__partition *part = lookup(pc, topic_id, p);
        if (part != NULL && !part->closing)
            partition_close(pc, part);
    }
}

int turbine__partitions_core_stop(void *arg)
{
    struct part_core *pc = cores[loom_core_id()];
    if (pc == NULL)
        return 0;
    loom_timer_cancel(&pc->retention);
    while (pc->retention_running)
        loom_sleep(LOOM_NS_PER_MS);
    for (unsigned b = 0; b < TABLE_BUCKETS; b++) {
        while (pc->buckets[b] != NULL) {
            struct turbine__partition *part = pc->buckets[b];
            if (part->closing) { /* a delete is closing it: wait */
                loom_sleep(LOOM_NS_PER_MS);
                continue;
            }
            partition_close(pc, part);
        }
    }
    TURBINE_ASSERT(pc->count == 0);
    pc->started = false;
    loom_mutex_deinit(&pc->open_lock);
    cores[loom_core_id()] = NULL;
    free(pc);
    return 0;
}

struct turbine_log *turbine__partition_peek(uint64_t topic_id, uint32_t p)
{
    struct part_core *pc = cores[loom_core_id()];
    if (pc == NULL || !pc->started)
        return NULL;
    struct turbine__partition *part = lookup(pc, topic_id, p);
    return part != NULL && !part->closing && part->open_waiters == 0 ? part->log : NULL;
}
