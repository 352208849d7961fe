/* SPDX-License-Identifier: MIT
 * topics.h - the topic registry (core 0, persisted in the data directory), partition ownership,
 * and the routing table every core reads without locks.
 *
 * The registry lives on core 0 and is the only writer: a create or delete is written to
 * `<data_dir>/topics` (temp file, fsync, rename, directory fsync), then core 0 builds a new
 * immutable routing snapshot with the next version and installs it on every core
 * (loom_invoke_on_all) before the call returns, so a change that was acknowledged is seen by
 * every core's next lookup. Each core reads only its own installed pointer. A snapshot is
 * freed, on core 0 which allocated it, once every core has dropped it: each core holds the
 * snapshot it has installed, plus one hold per turbine_routing_acquire(); when a core's last
 * hold on a replaced snapshot goes, the core sends core 0 a message (a node inside the snapshot,
 * so it never allocates), and the last such message frees it.
 *
 * Ownership is computed, never stored: owner(topic, p) = (fnv1a32(topic) + p) mod cores, so a
 * different --smp needs no migration. File format: docs/storage-format.md, "Topic registry".
 */
#ifndef TURBINE_BROKER_TOPICS_H
#define TURBINE_BROKER_TOPICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/config.h"
#include "turbine/log.h"
#include "turbine/protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TURBINE_TOPIC_NAME_MAX 249   /* bytes, as Kafka */
#define TURBINE_TOPICS_MAX     16384 /* topics in the registry */
/* partitions per topic: TURBINE_PARTITIONS_MAX (config.h) */

/* What a topic keeps of its own; new topics take them from the broker config's defaults. */
struct turbine_topic_settings {
    int64_t retention_ms;               /* 0 = keep forever */
    uint64_t retention_bytes;           /* per partition; 0 = no limit */
    uint64_t segment_bytes;             /* roll past this size */
    enum turbine_durability durability; /* what acks=all waits for: WRITTEN or FSYNC */
};

/* The topic defaults of `config`. */
void turbine_topic_settings_from_config(struct turbine_topic_settings *settings,
                                        const struct turbine_broker_config *config);

/* Topic names: turbine_topic_name_valid() of turbine/protocol.h (one definition for the codec
 * and the registry): 1..249 bytes of [A-Za-z0-9._-], other than "." and "..". */

/* FNV-1a, 32 bits (offset basis 2166136261, prime 16777619) over the name's bytes: stable
 * across versions, machines and core counts. fnv1a32("") = 0x811c9dc5,
 * fnv1a32("a") = 0xe40c292c, fnv1a32("foobar") = 0xbf9cf968. */
uint32_t turbine_topic_hash(const char *name, size_t len);

/* The core that owns `partition` of a topic whose name hashes to `topic_hash`:
 * (topic_hash + partition) mod cores, the sum taken in 64 bits (no wrap-around). */
unsigned turbine_partition_owner(uint32_t topic_hash, uint32_t partition, unsigned cores);

/* ---- the routing table: read on every core ----------------------------------------------------
 */

struct turbine_topic_entry {
    const char *name;                       /* NUL-terminated, inside the snapshot */
    uint32_t name_len;                      /* bytes */
    uint32_t hash;                          /* turbine_topic_hash(name) */
    uint32_t partitions;                    /* 1..TURBINE_PARTITIONS_MAX */
    uint64_t id;                            /* unique for the registry's life, never reused */
    struct turbine_topic_settings settings; /* as created */
};

struct turbine_routing_slot;

/* An immutable snapshot. Everything but the fields marked private is read-only everywhere. */
struct turbine_routing {
    uint64_t version;                         /* the registry's version it was built from */
    uint32_t topic_count;                     /* entries in topics[] */
    const struct turbine_topic_entry *topics; /* sorted by name (bytewise) */
    /* private */
    uint32_t bucket_mask;               /* open addressing: buckets are a power of two */
    const uint32_t *buckets;            /* topic index + 1, 0 = empty */
    unsigned cores;                     /* slots[] entries: the core count at build */
    unsigned pending;                   /* core 0 only: cores that still hold it */
    struct turbine_topics *registry;    /* told when it is freed */
    struct turbine_routing_slot *slots; /* one per core, each touched by its core only */
};

/* The snapshot installed on the calling core, or NULL when no registry is open. Valid until
 * the calling fiber next suspends (a fiber is not interrupted: the install runs in a fiber of
 * its own). To keep it across a suspension, use acquire/release. Core: any, from a fiber. */
const struct turbine_routing *turbine_routing_get(void);

/* The installed snapshot with a hold on it (NULL when none): it stays valid, and is not
 * freed, until turbine_routing_release() on the same core. A delete returns only after every
 * hold on the snapshots that still had the topic is released (requests in flight drain). */
const struct turbine_routing *turbine_routing_acquire(void);
void turbine_routing_release(const struct turbine_routing *routing);

/* The topic named `name` (`len` bytes) in `routing`, or NULL. O(1): a hash table. */
const struct turbine_topic_entry *turbine_routing_find(const struct turbine_routing *routing,
                                                       const char *name, size_t len);

/* ---- the registry: core 0 ------------------------------------------------------------------- */

struct turbine_topics;

/* Opens the registry in `data_dir` (created if missing, as is the directory): reads
 * `<data_dir>/topics` when it exists, removes a stale `topics.tmp`, and installs the first
 * snapshot on every core. A damaged file is never repaired or skipped: the open fails with
 * -EUCLEAN (-ENOTSUP for a newer format) and one line in `error` naming the file, the line and
 * what is wrong. Returns 0 and *out, or -errno with `error` set.
 * Core: a fiber on core 0; at most one registry is open at a time. */
int turbine_topics_open(const char *data_dir, struct turbine_topics **out, char *error,
                        size_t error_size);

/* Uninstalls the routing table from every core, waits until every hold is released, frees the
 * registry. Core: a fiber on core 0. */
void turbine_topics_close(struct turbine_topics *topics);

/* Creates `name` with `partitions` and `settings`: durable in the file and installed on every
 * core when it returns 0 (and *id_out, if not NULL, is the new topic's id). -EINVAL for a bad
 * name, partition count or setting; -EEXIST; -ENOSPC at TURBINE_TOPICS_MAX topics; -errno from
 * the file system (then nothing changed). Changes are serialised: concurrent calls wait.
 * Core: a fiber on core 0 (other cores go through loom_invoke_on(0, ...)). */
int turbine_topics_create(struct turbine_topics *topics, const char *name, uint32_t partitions,
                          const struct turbine_topic_settings *settings, uint64_t *id_out);

/* Deletes `name`: durable and installed as above, and returns only when no core holds a
 * snapshot that has it (so its partitions' files may be removed). -ENOENT when there is none.
 * Core: a fiber on core 0. */
int turbine_topics_delete(struct turbine_topics *topics, const char *name);

/* The version of the installed snapshot (bumped by every change, persisted). Core 0. */
uint64_t turbine_topics_version(const struct turbine_topics *topics);

#ifdef __cplusplus
}
#endif
#endif
