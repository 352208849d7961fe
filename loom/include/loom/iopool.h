/* SPDX-License-Identifier: MIT
 * iopool.h - a pool of IO threads that gives ordinary threads (not loom reactors) io_uring
 * file IO: submit a request from any thread and get a callback, or block until it completes.
 *
 * Each IO thread owns one ring and one lock-free MPSC channel. A submit pushes the caller's
 * request on the channel of the least-loaded thread (no lock, no allocation) and writes that
 * thread's eventfd only when it announced it is going to sleep. The thread submits in batches,
 * busy-polls, completes in batches and runs the callbacks (docs/iopool.md). The pool grows
 * while requests wait and shrinks when threads stay idle, between min_threads and max_threads.
 * Shutdown completes every accepted request exactly once: with its result, or -ECANCELED when
 * it had not reached the kernel yet. Nothing here needs a loom runtime.
 */
#ifndef LOOM_IOPOOL_H
#define LOOM_IOPOOL_H

#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "loom/common.h"
#include "loom/io.h"
#include "loom/io_backend.h"

#ifdef __cplusplus
extern "C" {
#endif

struct loom_iopool;
struct loom_iopool_req;
struct statx;

/* Completion callback: `res` is the result (>= 0 or -errno, as the syscall would return it
 * negated), also in req->io.op.res. It runs on an IO thread and must not block for long (it
 * delays the other completions of that thread); it may submit again, `req` included. */
typedef void (*loom_iopool_fn)(struct loom_iopool_req *req, int32_t res);

/* Tuning. Zero fields take the defaults of loom_iopool_config_default() (docs/iopool.md
 * explains them and the measurements behind them). */
struct loom_iopool_config {
    unsigned submit_batch;   /* N: requests taken from the channel per submit (32) */
    unsigned poll_spins;     /* M: busy-poll rounds before sleeping (16) */
    unsigned complete_batch; /* C: completions handled before looking for submissions (32) */
    unsigned ring_entries;   /* SQ size of each thread's ring = its in-flight cap (256) */
    unsigned grow_waiting;   /* grow when every thread has this many requests waiting (16) */
    int64_t idle_timeout_ns; /* a thread idle this long exits, down to min_threads (2 s) */
    int64_t tick_ns;         /* longest sleep of an IO thread before it looks around (100 ms) */
};

/* A caller-owned request. Fill `io` with a loom_iopool_prep_*() builder (or zero the whole
 * request and set the fields as io_backend.h documents them per kind), then
 * loom_iopool_submit(); once completed it may be submitted again as it is. From submit until the
 * callback runs (or loom_iopool_wait() returns), the request and every buffer it points to
 * belong to the pool: do not touch, move or free them. */
struct loom_iopool_req {
    struct loom_io_req io; /* what to do; io.op.res receives the result */
    loom_iopool_fn fn;     /* NULL: the caller collects the result with loom_iopool_wait() */
    void *data;            /* the caller's, untouched by the pool */
    /* private to the pool */
    struct loom_iopool_req *next; /* channel link */
    uint32_t state;               /* idle, queued, waited on, done (a futex word) */
    uint32_t reserved;
};

/* Counters since loom_iopool_create(), summed over all threads (each one read atomically, the
 * set not as a snapshot). */
struct loom_iopool_stats {
    uint64_t submitted;   /* requests accepted by loom_iopool_submit() */
    uint64_t completed;   /* requests completed, cancelled ones included */
    uint64_t cancelled;   /* completed with -ECANCELED by shutdown before reaching the kernel */
    uint64_t batches;     /* submit batches (one io_uring_enter each) */
    uint64_t enters;      /* io_uring_enter calls of the IO threads */
    uint64_t sleeps;      /* times an IO thread blocked in the kernel */
    uint64_t wakeups;     /* eventfd writes by submitters (to wake a sleeping thread) */
    uint64_t futex_calls; /* futex waits and wakes of loom_iopool_wait() */
    uint64_t syscalls;    /* enters + wakeups + futex_calls */
    uint64_t grows;       /* threads started after create */
    uint64_t shrinks;     /* threads that exited idle */
    unsigned threads;     /* threads running now */
    unsigned threads_max; /* the pool's max_threads */
};

/* Sets `config` to the defaults. */
LOOM_API void loom_iopool_config_default(struct loom_iopool_config *config);

/* Creates a pool and starts `min_threads` IO threads (1 <= min_threads <= max_threads <= 64),
 * each with its own ring. `config` may be NULL for the defaults. Returns 0 and sets *out, or
 * -EINVAL, -ENOMEM, or the ring setup error (e.g. -ENOSYS, -EPERM where io_uring is off). */
LOOM_API int loom_iopool_create(unsigned min_threads, unsigned max_threads,
                                const struct loom_iopool_config *config, struct loom_iopool **out);

/* Hands `req` to the pool. When it completes, fn(req, res) runs on an IO thread; with fn NULL
 * the caller (or any one thread) must call loom_iopool_wait(req). Returns 0, -ESHUTDOWN once
 * loom_iopool_shutdown() has begun (req is then untouched and never completes), or -EINVAL for
 * a kind the pool does not run (LOOM_IO_READ_FIXED/WRITE_FIXED: its rings have no registered
 * buffers). Any thread, IO threads (callbacks) included. Allocates nothing; it makes a syscall
 * only to wake a sleeping IO thread, or rarely to start one. */
LOOM_API int loom_iopool_submit(struct loom_iopool *pool, struct loom_iopool_req *req,
                                loom_iopool_fn fn, void *data);

/* Blocks the calling thread until `req` (submitted with fn NULL) completes; returns its
 * result. Spins briefly, then sleeps on a futex in the request. One waiter per request. */
LOOM_API int32_t loom_iopool_wait(struct loom_iopool_req *req);

/* True once `req` (submitted with fn NULL) has completed: loom_iopool_wait() would not block. */
LOOM_API bool loom_iopool_done(const struct loom_iopool_req *req);

/* Stops the pool: submit returns -ESHUTDOWN from now on; requests not yet handed to the
 * kernel complete with -ECANCELED, those in the kernel complete normally (file IO always
 * does); then the threads are joined. Callbacks may run on IO threads until it returns.
 * Idempotent. Must not be called from a callback. */
LOOM_API void loom_iopool_shutdown(struct loom_iopool *pool);

/* loom_iopool_shutdown(), then frees the pool. NULL is ignored. */
LOOM_API void loom_iopool_destroy(struct loom_iopool *pool);

/* Fills `out` with the pool's counters. */
LOOM_API void loom_iopool_stats(const struct loom_iopool *pool, struct loom_iopool_stats *out);

/* Blocking conveniences for the calling thread: one request on its stack, submitted and
 * waited for. They return what the syscall returns, but -errno instead of -1/errno. */
LOOM_API ssize_t loom_iopool_pread(struct loom_iopool *pool, int fd, void *buf, size_t len,
                                   uint64_t offset);
LOOM_API ssize_t loom_iopool_pwrite(struct loom_iopool *pool, int fd, const void *buf, size_t len,
                                    uint64_t offset);
LOOM_API int loom_iopool_fsync(struct loom_iopool *pool, int fd, bool datasync);
LOOM_API int loom_iopool_openat(struct loom_iopool *pool, int dirfd, const char *path, int flags,
                                mode_t mode);
LOOM_API int loom_iopool_close(struct loom_iopool *pool, int fd);

/* Request builders: each zeroes `req->io`, marks `req` idle (it must not be in flight) and
 * describes one operation (offset (uint64_t)-1
 * means "the file position", as for pipes). Lengths above 2^32 - 1 are cut to that. */
static inline void loom_iopool_prep_(struct loom_iopool_req *req, enum loom_io_kind kind, int fd)
{
    memset(&req->io, 0, sizeof(req->io));
    req->next = NULL;
    req->state = 0;
    req->io.kind = (uint8_t)kind;
    req->io.fd = fd;
}

static inline uint32_t loom_iopool_len_(size_t len)
{
    return len > UINT32_MAX ? UINT32_MAX : (uint32_t)len;
}

static inline void loom_iopool_prep_read(struct loom_iopool_req *req, int fd, void *buf, size_t len,
                                         uint64_t offset)
{
    loom_iopool_prep_(req, LOOM_IO_READ, fd);
    req->io.addr = buf;
    req->io.len = loom_iopool_len_(len);
    req->io.offset = offset;
}

static inline void loom_iopool_prep_write(struct loom_iopool_req *req, int fd, const void *buf,
                                          size_t len, uint64_t offset)
{
    loom_iopool_prep_(req, LOOM_IO_WRITE, fd);
    req->io.addr = (void *)buf;
    req->io.len = loom_iopool_len_(len);
    req->io.offset = offset;
}

/* `iov` (iovcnt entries) must stay valid until completion, like the buffers. */
static inline void loom_iopool_prep_readv(struct loom_iopool_req *req, int fd,
                                          const struct iovec *iov, int iovcnt, uint64_t offset)
{
    loom_iopool_prep_(req, LOOM_IO_READV, fd);
    req->io.addr = (void *)iov;
    req->io.len = (uint32_t)iovcnt;
    req->io.offset = offset;
}

static inline void loom_iopool_prep_writev(struct loom_iopool_req *req, int fd,
                                           const struct iovec *iov, int iovcnt, uint64_t offset)
{
    loom_iopool_prep_(req, LOOM_IO_WRITEV, fd);
    req->io.addr = (void *)iov;
    req->io.len = (uint32_t)iovcnt;
    req->io.offset = offset;
}

static inline void loom_iopool_prep_fsync(struct loom_iopool_req *req, int fd, bool datasync)
{
    loom_iopool_prep_(req, LOOM_IO_FSYNC, fd);
    req->io.flags = datasync ? LOOM_FSYNC_DATA : 0;
}

/* `path` must stay valid until completion. The result is the new fd. */
static inline void loom_iopool_prep_openat(struct loom_iopool_req *req, int dirfd, const char *path,
                                           int flags, mode_t mode)
{
    loom_iopool_prep_(req, LOOM_IO_OPENAT, dirfd);
    req->io.addr = (void *)path;
    req->io.flags = (uint32_t)flags;
    req->io.mode = (uint32_t)mode;
}

static inline void loom_iopool_prep_close(struct loom_iopool_req *req, int fd)
{
    loom_iopool_prep_(req, LOOM_IO_CLOSE, fd);
}

/* statx(2) into `out`; `path` and `out` must stay valid until completion. */
static inline void loom_iopool_prep_statx(struct loom_iopool_req *req, int dirfd, const char *path,
                                          int flags, unsigned mask, struct statx *out)
{
    loom_iopool_prep_(req, LOOM_IO_STATX, dirfd);
    req->io.addr = (void *)path;
    req->io.flags = (uint32_t)flags;
    req->io.mode = mask;
    req->io.addr2 = out;
}

static inline void loom_iopool_prep_fallocate(struct loom_iopool_req *req, int fd, int mode,
                                              uint64_t offset, uint64_t length)
{
    loom_iopool_prep_(req, LOOM_IO_FALLOCATE, fd);
    req->io.mode = (uint32_t)mode;
    req->io.offset = offset;
    req->io.length = length;
}

#ifdef __cplusplus
}
#endif
#endif
