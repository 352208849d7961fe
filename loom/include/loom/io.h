/* SPDX-License-Identifier: MIT
 * io.h - file IO for fibers: every call goes through the core's ring (or the core's file
 * backend, see io_backend.h), suspends the calling fiber until it completes and returns the
 * result as the syscall would, but as -errno (never sets errno).
 *
 * Deadlines: every call takes `deadline_ns` on the loom_now_ns() clock (LOOM_NO_DEADLINE for
 * none). When it passes, loom asks the kernel to cancel the request and still waits for its
 * completion, so the buffers are free again when the call returns; a cancelled request returns
 * -ETIMEDOUT, one that finished anyway returns its real result.
 * Cancellation: loom_io_cancel(fiber) interrupts the call that fiber is blocked in (or its next
 * one) with -ECANCELED, the same way.
 *
 * Disk operations (everything here) count against the core's in-flight budget (--io-depth):
 * over the budget a call waits in order for a free slot; it never fails for that reason.
 *
 * O_DIRECT: a file opened with loom_openat(..., O_DIRECT, ...) is remembered with its
 * alignment (STATX_DIOALIGN of that file; 4096 when the kernel does not say). Reads and
 * writes on it check offset, length and buffer address and return -EINVAL with a logged
 * message when one is misaligned, before anything reaches the kernel. A short write is
 * resubmitted from the last aligned position before its end (the partial block is written
 * again), until all is written or an error occurs. See docs/io.md.
 * Core: every call here is for a fiber on a reactor thread.
 */
#ifndef LOOM_IO_H
#define LOOM_IO_H

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "loom/common.h"

#ifdef __cplusplus
extern "C" {
#endif

struct loom_fiber;
struct statx;

/* openat(2). Returns the fd or -errno. */
LOOM_API int loom_openat(int dirfd, const char *path, int flags, mode_t mode, int64_t deadline_ns);

/* close(2) through the ring. Returns 0 or -errno. */
LOOM_API int loom_close(int fd);

/* pread/pwrite at `offset`; `rwf` is 0 or RWF_* flags (RWF_DSYNC: this write is durable when
 * it completes). A read returns the bytes read (short at end of file); a write returns `len`
 * (short writes are continued, see above) or -errno. */
LOOM_API ssize_t loom_read(int fd, void *buf, size_t len, uint64_t offset, int rwf,
                           int64_t deadline_ns);
LOOM_API ssize_t loom_write(int fd, const void *buf, size_t len, uint64_t offset, int rwf,
                            int64_t deadline_ns);
LOOM_API ssize_t loom_readv(int fd, const struct iovec *iov, int iovcnt, uint64_t offset, int rwf,
                            int64_t deadline_ns);
LOOM_API ssize_t loom_writev(int fd, const struct iovec *iov, int iovcnt, uint64_t offset, int rwf,
                             int64_t deadline_ns);

/* Reads/writes on a registered buffer: [buf, buf + len) must lie inside the core's IO buffer
 * pool (memory from loom_iobuf_alloc(); else -EINVAL). Where the ring has no registered buffers
 * this is a plain read/write. */
LOOM_API ssize_t loom_read_fixed(int fd, void *buf, size_t len, uint64_t offset,
                                 int64_t deadline_ns);
LOOM_API ssize_t loom_write_fixed(int fd, const void *buf, size_t len, uint64_t offset,
                                  int64_t deadline_ns);

#define LOOM_FSYNC_DATA 1u /* fdatasync: skip metadata not needed to read the data back */

/* fsync(2), or fdatasync(2) with LOOM_FSYNC_DATA. Returns 0 or -errno. */
LOOM_API int loom_fsync(int fd, unsigned flags, int64_t deadline_ns);

/* fallocate(2) and ftruncate(2). Return 0 or -errno. */
LOOM_API int loom_fallocate(int fd, int mode, uint64_t offset, uint64_t len, int64_t deadline_ns);
LOOM_API int loom_ftruncate(int fd, uint64_t len, int64_t deadline_ns);

/* statx(2) into *out. Returns 0 or -errno. */
LOOM_API int loom_statx(int dirfd, const char *path, int flags, unsigned mask, struct statx *out,
                        int64_t deadline_ns);

/* renameat2(2), unlinkat(2), mkdirat(2). Return 0 or -errno. */
LOOM_API int loom_renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath,
                           unsigned flags, int64_t deadline_ns);
LOOM_API int loom_unlinkat(int dirfd, const char *path, int flags, int64_t deadline_ns);
LOOM_API int loom_mkdirat(int dirfd, const char *path, mode_t mode, int64_t deadline_ns);

/* Makes the directory `path` (relative to dirfd) durable: opens it, fsyncs it, closes it. Use
 * after creating, renaming or removing an entry in it. Returns 0 or -errno. */
LOOM_API int loom_fsync_dir(int dirfd, const char *path, int64_t deadline_ns);

/* Interrupts the IO call `fiber` is blocked in, or its next one, with -ECANCELED.
 * Core: the fiber's core. */
LOOM_API void loom_io_cancel(struct loom_fiber *fiber);

/* The O_DIRECT alignment loom recorded for `fd` (offset and length granularity), or 0 when
 * the fd was not opened with O_DIRECT through loom_openat(). Any thread. */
LOOM_API unsigned loom_io_direct_align(int fd);

/* ---- aligned IO buffers ---------------------------------------------------------------------
 * Each core has a pool of IO buffers carved from its memory budget at start (--io-buffers,
 * default min(16 MiB, an eighth of the core's budget)), aligned for O_DIRECT and registered with
 * the core's ring so that loom_read_fixed/loom_write_fixed skip the kernel's page pinning. Sizes
 * are rounded up to a power of two from 4 KiB up to 16 MiB (a buddy allocator). */

/* An aligned buffer of at least `bytes`, or NULL when the pool has no block that large.
 * Core: any reactor thread; free it on the same core. */
LOOM_API void *loom_iobuf_alloc(size_t bytes);
LOOM_API void loom_iobuf_free(void *buf);

/* Alignment of the pool's buffers (>= the memory alignment O_DIRECT needs on this machine). */
LOOM_API size_t loom_iobuf_align(void);

/* Counters of the calling core's file IO layer. */
struct loom_io_stats {
    uint64_t disk_ops;       /* disk operations started */
    uint64_t disk_waits;     /* operations that waited for the --io-depth budget */
    uint64_t short_writes;   /* short writes continued */
    uint64_t timeouts;       /* calls that ended by their deadline */
    uint64_t cancels;        /* calls ended by loom_io_cancel() */
    uint64_t faults;         /* injected faults (fault.h) */
    uint64_t iobuf_in_use;   /* bytes of IO buffers handed out */
    uint64_t iobuf_bytes;    /* size of the pool */
    uint32_t disk_in_flight; /* now */
    uint32_t disk_depth;     /* the budget */
};
LOOM_API void loom_io_stats_get(struct loom_io_stats *out);

#ifdef __cplusplus
}
#endif
#endif
