/* SPDX-License-Identifier: MIT
 * log.h - one partition's append-only log: segments of RecordBatch v2 bytes written with
 * O_DIRECT, sparse offset and time indexes, group commit, recovery of a torn tail.
 *
 * A log is owned by one loom core: every call is for a fiber of that core (no locks). Files
 * live in the partition's directory:
 *     <base offset, 20 digits>.log        the batches, back to back, as producers sent them
 *                                         (baseOffset and partitionLeaderEpoch stamped)
 *     <base offset, 20 digits>.index      sparse offset index of a sealed segment
 *     <base offset, 20 digits>.timeindex  sparse time index of a sealed segment
 *     checkpoint                          the log start offset (temp file, fsync, rename)
 * (byte layouts in docs/storage-format.md).
 *
 * Writes. Appended batches are copied into pages of the core's page cache (turbine/cache.h)
 * and written from there with O_DIRECT in whole blocks; the partly filled last block is written
 * again, with more data, by the next write. Several writes are in flight per log (never two for
 * the same block), and each carries everything appended since the one before, so concurrent
 * appends share writes (and flushes). Durability per append (enum turbine_durability): NONE
 * returns once the batch is queued; WRITTEN once the O_DIRECT writes covering it completed;
 * FSYNC once an fdatasync submitted after that completed has completed (group commit: one flush
 * for every append waiting at that moment). A failed write or flush fails the log: every
 * waiting and later append gets the error (a page may be marked clean after a failed fsync, so
 * nothing is retried and acknowledged); reads of what was durable continue. At most
 * max_unflushed_bytes are ever written but not flushed.
 *
 * Reads. Written data is read through the same cache: the pages appended into stay there for
 * readers that follow the tail, older data is read in whole pages. turbine_log_read copies;
 * turbine_log_read_view lends the cache's pages (no copy).
 *
 * Recovery (turbine_log_open). Sealed segments are trusted with their index files (rebuilt by
 * a scan when missing or damaged). The last segment is scanned batch by batch; the first
 * batch that is incomplete or fails validation ends the log, provided that no valid batch lies
 * more than max_unflushed_bytes beyond it: then the tail was torn by a crash before a flush and
 * is cut off (and logged); otherwise the damage is in flushed data and the open fails with
 * -EUCLEAN, naming the segment and position. Recovery only truncates, so a crash during it
 * leads to the same result the next time.
 */
#ifndef TURBINE_LOG_H
#define TURBINE_LOG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "turbine/batch.h"
#include "turbine/cache.h"

#ifdef __cplusplus
extern "C" {
#endif

enum turbine_durability {
    TURBINE_DURABLE_NONE = 0,    /* queued in memory */
    TURBINE_DURABLE_WRITTEN = 1, /* the O_DIRECT write completed */
    TURBINE_DURABLE_FSYNC = 2,   /* flushed: survives power loss */
};

struct turbine_log_config {
    const char *dir;               /* the partition's directory; created if missing */
    uint64_t segment_bytes;        /* roll to a new segment past this size (1 GiB) */
    int64_t segment_ms;            /* ... or when the active segment is this old (0: never) */
    uint32_t index_interval_bytes; /* an index entry at least every this many bytes (4096) */
    uint64_t prealloc_bytes;       /* fallocate this far ahead of the write position (32 MiB) */
    uint64_t max_unflushed_bytes;  /* never more written but not flushed (16 MiB; at least
                                    * write_buffer_bytes): the recovery window */
    size_t write_buffer_bytes;     /* at most this much appended and not yet written (1 MiB),
                                    * in cache pages: the largest batch the log accepts is a
                                    * quarter of it. The cache must hold twice this, and more. */
    int32_t leader_epoch;          /* stamped into every batch */
    int64_t retention_ms;          /* delete segments whose newest batch is older (0: keep) */
    uint64_t retention_bytes;      /* delete the oldest segments beyond this size (0: keep) */
};

/* Fills the defaults above (dir NULL). */
TURBINE_API void turbine_log_config_init(struct turbine_log_config *config);

struct turbine_log;

/* Opens (creating if needed) the log in config->dir and recovers it. Returns 0 and *out, or
 * -errno: -EUCLEAN for damaged flushed data (logged with segment and position), -ENOMEM when
 * loom's IO buffers cannot hold recovery's buffer (write_buffer_bytes) or there is no cache,
 * -EINVAL when the core's cache is too small for write_buffer_bytes, file system errors as they
 * come. Core: a fiber; the log belongs to this core. */
TURBINE_API int turbine_log_open(const struct turbine_log_config *config, struct turbine_log **out);

/* Waits for the appends in flight, writes the sealed index of the active segment, closes the
 * files and frees the log. Returns 0 or the first error (the log is freed regardless). */
TURBINE_API int turbine_log_close(struct turbine_log *log);

/* Appends `size` bytes of one or more complete RecordBatch v2 batches, back to back. Every batch
 * is validated first (nothing is appended if one fails: -EBADMSG); the log then assigns the
 * offsets (stamping baseOffset and partitionLeaderEpoch into its copy), and returns once the
 * appended bytes are durable as `durability` asks. Returns the base offset of the first batch,
 * or -errno: -EMSGSIZE (a batch larger than a quarter of write_buffer_bytes), -EBADMSG,
 * -ENOSPC (the file system is full: nothing was appended; reads continue), -EIO or the error
 * that failed the log, -ETIMEDOUT at `deadline_ns` (the batches stay appended and may still
 * become durable: the outcome is unknown to the caller). */
TURBINE_API int64_t turbine_log_append(struct turbine_log *log, const void *batches, size_t size,
                                       enum turbine_durability durability, int64_t deadline_ns);

/* Offsets. start: the first offset still in the log; end: the next offset to be assigned
 * (log end offset); written / flushed: every offset below is durable that way. */
TURBINE_API int64_t turbine_log_start_offset(const struct turbine_log *log);
TURBINE_API int64_t turbine_log_end_offset(const struct turbine_log *log);
TURBINE_API int64_t turbine_log_written_offset(const struct turbine_log *log);
TURBINE_API int64_t turbine_log_flushed_offset(const struct turbine_log *log);

/* Copies whole batches starting with the one that holds `offset` into buf (at most `size`
 * bytes; the first batch is copied even when larger than max_bytes, if it fits in buf), up to
 * `max_bytes` and never past `limit_offset` (pass the written or flushed offset to read only
 * durable data). Returns the bytes copied (0 when offset == limit), -ERANGE for an offset
 * below the start or above the end, -ENOBUFS when buf cannot hold the first batch, or -errno. */
TURBINE_API ssize_t turbine_log_read(struct turbine_log *log, int64_t offset, void *buf,
                                     size_t size, size_t max_bytes, int64_t limit_offset);

/* Lends whole batches from the core's page cache, as turbine_log_read selects them (but
 * without a buffer: the view holds at most TURBINE_VIEW_SLICES slices), into `view` (empty on
 * entry, see turbine/cache.h): no copy. view->next_offset is the offset after its last batch.
 * Returns the bytes lent (0 when offset == limit), -ERANGE, -ENOBUFS when not even the first
 * batch could be pinned (the view's slices, or the readers' share of the cache), or -errno. The
 * caller releases the view, on this core or through turbine_view_release_remote. */
TURBINE_API ssize_t turbine_log_read_view(struct turbine_log *log, int64_t offset, size_t max_bytes,
                                          int64_t limit_offset, struct turbine_view *view);

/* The offset of the first batch whose maxTimestamp is >= timestamp (ms), or the end offset
 * when there is none. */
TURBINE_API int64_t turbine_log_offset_for_time(struct turbine_log *log, int64_t timestamp);

/* Waits until written_offset > offset (or the log fails or closes), or the deadline.
 * Returns 0, -ETIMEDOUT, or the log's error. */
TURBINE_API int turbine_log_wait(struct turbine_log *log, int64_t offset, int64_t deadline_ns);

/* Deletes whole segments beyond retention_ms (their largest maxTimestamp older than
 * now_ms - retention_ms) or retention_bytes (oldest first, while the rest still holds
 * retention_bytes), never the active segment. The new log start offset is made durable (the
 * checkpoint) before any file is removed. Returns the number of segments deleted, or -errno. */
TURBINE_API int turbine_log_apply_retention(struct turbine_log *log, int64_t now_ms);

/* Counters. */
struct turbine_log_stats {
    uint64_t appends;        /* append calls that appended */
    uint64_t batches;        /* batches appended */
    uint64_t bytes;          /* bytes appended */
    uint64_t writes;         /* O_DIRECT writes */
    uint64_t write_bytes;    /* bytes written (tail blocks count again) */
    uint64_t flushes;        /* fdatasyncs */
    uint64_t segments;       /* segments in the log now */
    uint64_t size;           /* bytes of batches in them (not the preallocated space) */
    uint64_t rolls;          /* segments rolled */
    uint64_t deleted;        /* segments deleted by retention */
    uint64_t recovered_torn; /* bytes cut from a torn tail at open */
    uint64_t index_rebuilds; /* indexes rebuilt at open */
    uint64_t padding;        /* zeros left before appends so they need not wait for the write
                              * of their first block (docs/storage-format.md) */
    int error;               /* the error that failed the log, 0 when healthy */
};
TURBINE_API void turbine_log_stats_get(const struct turbine_log *log,
                                       struct turbine_log_stats *out);

#ifdef __cplusplus
}
#endif
#endif
