/* SPDX-License-Identifier: MIT
 * simdisk.h - a simulated disk: an in-memory file system behind the file backend interface
 * (io_backend.h), for crash and power-loss tests of storage code.
 *
 * One disk serves one core. Requests are queued and complete one at a time from the reactor
 * loop (never inline from start()) in a seeded order on a virtual clock; a request takes
 * effect when it completes. loom_simdisk_crash() simulates power loss with this durability
 * model: each 512-byte sector written since the file's last completed fsync comes back old or
 * new (chosen by the crash seed), the file's size and allocation come back as of its last
 * fsync, and directory entries (create, rename, unlink, mkdir) come back as of the
 * directory's last fsync. A crash fails every request in flight with -EIO and closes every
 * fd; the disk then serves the "restarted" program. See docs/simdisk.md.
 *
 * Memory: the disk uses malloc (a test-only component, off every production path), not the
 * core's budget.
 */
#ifndef LOOM_SIMDISK_H
#define LOOM_SIMDISK_H

#include "loom/common.h"
#include "loom/io_backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* fds of a simulated disk are LOOM_SIMDISK_FD_BASE .. LOOM_SIMDISK_FD_BASE + 32767, far above
 * real fds, so that handing one to the kernel (or a real fd to the disk) fails with -EBADF
 * instead of touching the wrong file; and below 65536, where io.c records each O_DIRECT fd's
 * alignment (the disk reports it through STATX_DIOALIGN). */
#define LOOM_SIMDISK_FD_BASE  (1 << 15)
#define LOOM_SIMDISK_FDS_MAX  (1 << 15)
#define LOOM_SIMDISK_SECTOR   512u         /* the unit of torn writes */
#define LOOM_SIMDISK_BLOCK    4096u        /* the unit of allocation (statx blocks, capacity) */
#define LOOM_SIMDISK_FILE_MAX (1ull << 32) /* larger files fail with -EFBIG */

struct loom_simdisk_config {
    uint64_t seed;           /* completion order and latencies */
    uint64_t capacity_bytes; /* allocated blocks beyond this fail with -ENOSPC; 0 = no limit */
    int64_t latency_min_ns;  /* virtual latency of each request, uniform in [min, max] */
    int64_t latency_max_ns;
    unsigned reorder_max;  /* a request is overtaken by at most this many later ones; 0 = FIFO */
    unsigned direct_align; /* O_DIRECT offset, length and memory alignment; 0 = 512 */
};

struct loom_simdisk;

/* Creates an empty disk (a root directory "/", durable) for the calling core. Returns NULL on
 * a bad config (latency_min_ns < 0, max < min, direct_align not a power of two) or no memory.
 * Core: a reactor thread; the disk serves only that core. */
LOOM_API struct loom_simdisk *loom_simdisk_create(const struct loom_simdisk_config *config);

/* Fails every request in flight with -EIO and frees the disk. Uninstall its backend first
 * (loom_io_backend_set(NULL)). Core: the disk's core. */
LOOM_API void loom_simdisk_destroy(struct loom_simdisk *disk);

/* The backend to install with loom_io_backend_set(); valid until loom_simdisk_destroy().
 * Paths resolve against the disk's root: AT_FDCWD and absolute paths start at "/". */
LOOM_API const struct loom_io_backend *loom_simdisk_backend(struct loom_simdisk *disk);

/* Simulates power loss and restart (see above): requests in flight fail with -EIO (their
 * callbacks run from the loop later; writes among them count as unflushed), every fd is
 * closed, and the file system becomes what a disk could hold after the crash. The choice of
 * old or new per sector depends only on `seed` and the disk's history: the same history and
 * seed give the same image. Core: the disk's core. */
LOOM_API void loom_simdisk_crash(struct loom_simdisk *disk, uint64_t seed);

/* The virtual clock: the latency-weighted time of the last completion. Never goes back. */
LOOM_API int64_t loom_simdisk_now_ns(const struct loom_simdisk *disk);

struct loom_simdisk_stats {
    uint64_t requests;    /* started */
    uint64_t completions; /* completed by the disk (not counting crash failures) */
    uint64_t reordered;   /* completions that overtook an earlier request */
    uint64_t reads;       /* read, readv, read_fixed */
    uint64_t writes;      /* write, writev, write_fixed */
    uint64_t bytes_read;
    uint64_t bytes_written;
    uint64_t fsyncs; /* fsync and fdatasync, files and directories */
    uint64_t enospc; /* requests failed with -ENOSPC */
    uint64_t crashes;
    uint64_t crash_failed; /* requests failed with -EIO by crashes */
    uint64_t torn_sectors; /* sectors that came back old where new data was written */
    uint64_t used_bytes;   /* blocks allocated to reachable or open files */
    uint64_t capacity_bytes;
    uint32_t in_flight;
    uint32_t open_fds;
    uint32_t files; /* reachable regular files */
    uint32_t dirs;  /* reachable directories, root included */
};

/* Copies the disk's counters into *out. Core: the disk's core. */
LOOM_API void loom_simdisk_stats(const struct loom_simdisk *disk, struct loom_simdisk_stats *out);

#ifdef __cplusplus
}
#endif
#endif
