/* SPDX-License-Identifier: MIT
 * io.c - file IO: the fiber calls of io.h, the --io-depth budget, the backend switch, the
 * O_DIRECT rules and the per-core pool of registered, aligned IO buffers.
 *
 * Path of a request: loom_io_start() -> budget (wait in FIFO order when --io-depth requests
 * are in flight) -> fault injection (when enabled) -> backend (io_uring by default). Its
 * completion comes back through req_done(), which frees the budget slot, starts the oldest
 * waiter and runs the caller's callback. A fiber call waits on a baton posted by that callback;
 * a deadline or loom_io_cancel() asks the backend to cancel and still waits for the completion.
 */
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include <valgrind/memcheck.h>

#include "internal.h"
#include "loom/fault.h"
#include "loom/io.h"
#include "loom/io_backend.h"
#include "loom/mem.h"

enum { REQ_IDLE = 0, REQ_WAITING = 1, REQ_STARTED = 2 };

#define IOBUF_MIN_SHIFT 12u /* 4 KiB */
#define IOBUF_MAX_SHIFT 24u /* 16 MiB: the largest single buffer */
#define IOBUF_ORDERS    (IOBUF_MAX_SHIFT - IOBUF_MIN_SHIFT + 1)
#define IOBUF_FREE      0x80u

struct iobuf_free {
    struct iobuf_free *prev, *next;
};

struct loom__io {
    const struct loom_io_backend *backend;
    struct loom_io_backend uring_backend;
    uint32_t depth, in_flight;
    struct loom_op *wait_head, *wait_tail; /* requests waiting for the budget (op.next) */
    struct loom_io_stats stats;

    /* the buffer pool: a buddy allocator over [pool, pool + pool_bytes) */
    char *pool;
    size_t pool_bytes;
    unsigned top_shift; /* the largest block: min(pool size, 16 MiB), a power of two */
    bool registered;
    uint8_t *meta; /* per 4 KiB block: order of the block starting there, | IOBUF_FREE */
    struct iobuf_free *free_list[IOBUF_ORDERS];
};

/* ---- O_DIRECT alignments, per fd, process-wide ------------------------------------------- */

#define DIRECT_FDS 65536
/* low byte: log2 of the offset/length alignment; high byte: log2 of the memory alignment;
 * 0 = not an O_DIRECT file opened through loom */
static _Atomic uint16_t direct_align[DIRECT_FDS];

unsigned loom_io_direct_align(int fd)
{
    if (fd < 0 || fd >= DIRECT_FDS)
        return 0;
    uint16_t v = atomic_load_explicit(&direct_align[fd], memory_order_relaxed);
    return v ? 1u << (v & 0xff) : 0;
}

static unsigned direct_mem_align(int fd)
{
    uint16_t v = atomic_load_explicit(&direct_align[fd], memory_order_relaxed);
    return v ? 1u << (v >> 8) : 0;
}

static unsigned log2u(unsigned v)
{
    return 31u - (unsigned)__builtin_clz(v);
}

/* ---- the budget and the backend ----------------------------------------------------------- */

static struct loom__io *io_of(struct loom__reactor *r)
{
    LOOM_ASSERTF(r->io != NULL, "file IO used before the core's IO layer started");
    return r->io;
}

void loom__io_backend_start(struct loom__reactor *r, struct loom_io_req *req)
{
    struct loom__io *io = io_of(r);
    req->backend = io->backend;
    io->backend->start(io->backend->ctx, req);
}

static void start_now(struct loom__reactor *r, struct loom__io *io, struct loom_io_req *req)
{
    io->in_flight++;
    io->stats.disk_ops++;
    req->io_state = REQ_STARTED;
    if (LOOM_UNLIKELY(r->fault != NULL)) {
        req->started_len = req->len; /* a SHORT rule changes len: restored in req_done */
        if (loom__fault_filter(r, req))
            return;
    }
    loom__io_backend_start(r, req);
}

/* Memory the kernel wrote is invisible to valgrind: tell it (a no-op elsewhere). */
static void mark_defined(const struct loom_io_req *req)
{
    int32_t res = req->op.res;
    if (res <= 0 && req->kind != LOOM_IO_STATX)
        return;
    switch ((enum loom_io_kind)req->kind) {
    case LOOM_IO_READ:
    case LOOM_IO_READ_FIXED:
        VALGRIND_MAKE_MEM_DEFINED(req->addr, (size_t)res);
        break;
    case LOOM_IO_READV: {
        const struct iovec *iov = req->addr;
        size_t left = (size_t)res;
        for (uint32_t i = 0; i < req->len && left; i++) {
            size_t n = iov[i].iov_len < left ? iov[i].iov_len : left;
            VALGRIND_MAKE_MEM_DEFINED(iov[i].iov_base, n);
            left -= n;
        }
        break;
    }
    case LOOM_IO_STATX:
        if (res == 0)
            VALGRIND_MAKE_MEM_DEFINED(req->addr2, sizeof(struct statx));
        break;
    default:
        break;
    }
}

static void req_done(struct loom_op *op)
{
    struct loom_io_req *req = (struct loom_io_req *)op;
    struct loom__reactor *r = loom__self;
    struct loom__io *io = r->io;
    LOOM_ASSERT(req->io_state == REQ_STARTED && io->in_flight > 0);
    req->io_state = REQ_IDLE;
    io->in_flight--;
    if (LOOM_UNLIKELY(req->started_len)) {
        req->len = req->started_len; /* the caller sees its request as it made it */
        req->started_len = 0;
    }
    if (LOOM_UNLIKELY(loom__rt.under_valgrind))
        mark_defined(req);
    if (io->wait_head) {
        struct loom_io_req *next = (struct loom_io_req *)io->wait_head;
        io->wait_head = next->op.next;
        if (!io->wait_head)
            io->wait_tail = NULL;
        next->op.next = NULL;
        start_now(r, io, next);
    }
    op->fn = req->user_fn;
    op->fn(op);
}

void loom_io_start(struct loom_io_req *req)
{
    struct loom__reactor *r = loom__reactor();
    struct loom__io *io = io_of(r);
    LOOM_ASSERTF(req->io_state == REQ_IDLE, "file request %p started twice", (void *)req);
    LOOM_ASSERT(req->op.fn != NULL && req->kind < LOOM_IO_KINDS);
    req->user_fn = req->op.fn;
    req->started_len = 0;
    req->op.fn = req_done;
    req->op.res = 0;
    req->op.cqe_flags = 0;
    req->op.next = NULL;
    if (LOOM_LIKELY(io->in_flight < io->depth && io->wait_head == NULL)) {
        start_now(r, io, req);
        return;
    }
    req->io_state = REQ_WAITING;
    io->stats.disk_waits++;
    LOOM_FIFO_PUSH(io->wait_head, io->wait_tail, &req->op);
}

void loom_io_complete(struct loom_io_req *req, int32_t res)
{
    struct loom__reactor *r = loom__reactor();
    req->op.res = res;
    req->op.cqe_flags = 0;
    req->op.next = NULL;
    LOOM_FIFO_PUSH(r->done_head, r->done_tail, &req->op);
}

int loom_io_cancel_req(struct loom_io_req *req)
{
    struct loom__reactor *r = loom__reactor();
    struct loom__io *io = io_of(r);
    if (req->io_state == REQ_WAITING) {
        struct loom_op **link = &io->wait_head, *prev = NULL;
        while (*link && *link != &req->op) {
            prev = *link;
            link = &(*link)->next;
        }
        LOOM_ASSERT(*link == &req->op);
        *link = req->op.next;
        if (io->wait_tail == &req->op)
            io->wait_tail = prev;
        req->op.next = NULL;
        /* complete it as if started: req_done() keeps the books */
        io->in_flight++;
        req->io_state = REQ_STARTED;
        loom_io_complete(req, -ECANCELED);
        return 0;
    }
    if (req->io_state != REQ_STARTED || req->backend == NULL)
        return -ENOENT;
    if (!req->backend->cancel)
        return -ENOENT;
    return req->backend->cancel(req->backend->ctx, req);
}

void loom_io_backend_set(const struct loom_io_backend *backend)
{
    struct loom__io *io = io_of(loom__reactor());
    io->backend = backend ? backend : &io->uring_backend;
}

const struct loom_io_backend *loom_io_backend_get(void)
{
    return io_of(loom__reactor())->backend;
}

static void uring_start(void *ctx, struct loom_io_req *req)
{
    loom__uring_req_start(ctx, req);
}

static int uring_cancel(void *ctx, struct loom_io_req *req)
{
    (void)ctx;
    return loom_op_cancel(&req->op);
}

/* ---- fiber calls --------------------------------------------------------------------------- */

static void wait_done(struct loom_op *op)
{
    loom__baton_post_local(loom__self, op->data);
}

/* Runs `req` and suspends the calling fiber until it completes. Returns its result, or
 * -ETIMEDOUT / -ECANCELED when the deadline or loom_io_cancel() ended it. */
static int32_t io_call(struct loom_io_req *req, int64_t deadline_ns)
{
    struct loom__reactor *r = loom__reactor();
    struct loom_fiber *self = r->current;
    LOOM_ASSERTF(self != NULL, "a loom file call outside a fiber");
    struct loom__io *io = io_of(r);
    if (LOOM_UNLIKELY(self->io_cancel)) {
        self->io_cancel = false;
        io->stats.cancels++;
        return -ECANCELED;
    }
    struct loom_baton baton = {.core = (uint16_t)r->core, .state = LOOM_BATON_IDLE};
    req->op.fn = wait_done;
    req->op.data = &baton;
    loom_io_start(req);
    self->io_req = req;
    int rc = loom_baton_wait(&baton, deadline_ns);
    bool timed_out = false;
    if (LOOM_UNLIKELY(rc == -ETIMEDOUT)) {
        timed_out = true;
        (void)loom_io_cancel_req(req);
        rc = loom_baton_wait(&baton, LOOM_NO_DEADLINE);
        LOOM_ASSERT(rc == 0);
    }
    self->io_req = NULL;
    baton.state = LOOM_BATON_DEAD;
    int32_t res = req->op.res;
    if (LOOM_UNLIKELY(self->io_cancel)) {
        /* loom_io_cancel() arrived while blocked: it was meant for this call */
        self->io_cancel = false;
        if (res == -ECANCELED || res == -EINTR) {
            io->stats.cancels++;
            return -ECANCELED;
        }
    }
    if (LOOM_UNLIKELY(timed_out) && (res == -ECANCELED || res == -EINTR)) {
        io->stats.timeouts++;
        return -ETIMEDOUT;
    }
    return res;
}

void loom_io_cancel(struct loom_fiber *fiber)
{
    struct loom__reactor *r = loom__reactor();
    LOOM_ASSERT(fiber != NULL && fiber->core == r->core);
    fiber->io_cancel = true;
    if (fiber->io_req)
        (void)loom_io_cancel_req(fiber->io_req);
}

static void req_init(struct loom_io_req *req, enum loom_io_kind kind, int fd)
{
    memset(req, 0, sizeof(*req));
    req->kind = (uint8_t)kind;
    req->fd = fd;
}

/* The O_DIRECT check of one transfer; logs what is wrong. */
static int direct_check(int fd, const void *buf, size_t len, uint64_t offset)
{
    unsigned align = loom_io_direct_align(fd);
    if (!align)
        return 0;
    unsigned mem = direct_mem_align(fd);
    if ((offset & (align - 1)) || (len & (align - 1)) || ((uintptr_t)buf & (mem - 1))) {
        loom__log("error",
                  "O_DIRECT fd %d needs offset and length in multiples of %u and a buffer "
                  "aligned to %u: offset %" PRIu64 ", length %zu, buffer %p",
                  fd, align, mem, offset, len, buf);
        return -EINVAL;
    }
    return 0;
}

static int direct_check_iov(int fd, const struct iovec *iov, int iovcnt, uint64_t offset)
{
    if (!loom_io_direct_align(fd))
        return 0;
    for (int i = 0; i < iovcnt; i++) {
        int rc = direct_check(fd, iov[i].iov_base, iov[i].iov_len, offset);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int loom_openat(int dirfd, const char *path, int flags, mode_t mode, int64_t deadline_ns)
{
    struct loom_io_req req;
    req_init(&req, LOOM_IO_OPENAT, dirfd);
    req.addr = (void *)path;
    req.flags = (uint32_t)(flags | O_CLOEXEC);
    req.mode = mode;
    int fd = io_call(&req, deadline_ns);
    if (fd >= 0 && fd < DIRECT_FDS && !(flags & O_DIRECT))
        atomic_store_explicit(&direct_align[fd], 0, memory_order_relaxed); /* a stale record */
    if (fd < 0 || !(flags & O_DIRECT))
        return fd;
    if (fd >= DIRECT_FDS) {
        loom__log("warning", "fd %d opened with O_DIRECT is above %d: its alignment is not checked",
                  fd, DIRECT_FDS);
        return fd;
    }
    /* the file's own O_DIRECT alignment (6.1+); 4096 when the kernel or fs does not say */
    struct statx stx;
    memset(&stx, 0, sizeof(stx));
    unsigned offset_align = 4096, mem_align = 4096;
    if (loom_statx(fd, "", AT_EMPTY_PATH, 0x2000u /* STATX_DIOALIGN */, &stx, deadline_ns) == 0 &&
        (stx.stx_mask & 0x2000u)) {
        /* glibc 2.36's struct statx predates the fields: read them at the kernel's offsets */
        uint32_t v[2];
        memcpy(v, (const char *)&stx + 0x98, sizeof(v));
        if (v[0] && v[1] && !(v[0] & (v[0] - 1)) && !(v[1] & (v[1] - 1))) {
            mem_align = v[0];
            offset_align = v[1];
        }
    }
    atomic_store_explicit(&direct_align[fd],
                          (uint16_t)(log2u(offset_align) | log2u(mem_align) << 8),
                          memory_order_relaxed);
    return fd;
}

int loom_close(int fd)
{
    if (fd >= 0 && fd < DIRECT_FDS)
        atomic_store_explicit(&direct_align[fd], 0, memory_order_relaxed);
    struct loom_io_req req;
    req_init(&req, LOOM_IO_CLOSE, fd);
    return io_call(&req, LOOM_NO_DEADLINE);
}

ssize_t loom_read(int fd, void *buf, size_t len, uint64_t offset, int rwf, int64_t deadline_ns)
{
    int rc = direct_check(fd, buf, len, offset);
    if (rc < 0)
        return rc;
    if (len > INT32_MAX)
        len = INT32_MAX & ~(size_t)4095;
    struct loom_io_req req;
    req_init(&req, LOOM_IO_READ, fd);
    req.addr = buf;
    req.len = (uint32_t)len;
    req.offset = offset;
    req.flags = (uint32_t)rwf;
    return io_call(&req, deadline_ns);
}

/* A write, continued after short writes (from the last aligned position for O_DIRECT). */
static ssize_t write_all(enum loom_io_kind kind, int fd, const void *buf, size_t len,
                         uint64_t offset, int rwf, uint16_t buf_index, int64_t deadline_ns)
{
    unsigned align = loom_io_direct_align(fd);
    size_t done = 0;
    int stuck = 0;
    while (done < len) {
        struct loom_io_req req;
        req_init(&req, kind, fd);
        size_t left = len - done;
        if (left > INT32_MAX)
            left = INT32_MAX & ~(size_t)4095;
        req.addr = (char *)buf + done;
        req.len = (uint32_t)left;
        req.offset = offset + done;
        req.flags = (uint32_t)rwf;
        req.buf_index = buf_index;
        int32_t n = io_call(&req, deadline_ns);
        if (n < 0)
            return n;
        if ((size_t)n < left) {
            io_of(loom__self)->stats.short_writes++;
            if (align)
                n &= ~(int32_t)(align - 1);
            if (n == 0 && ++stuck >= 3)
                return -EIO; /* no progress: the device keeps refusing */
        }
        if (n > 0)
            stuck = 0;
        done += (size_t)n;
    }
    return (ssize_t)len;
}

ssize_t loom_write(int fd, const void *buf, size_t len, uint64_t offset, int rwf,
                   int64_t deadline_ns)
{
    int rc = direct_check(fd, buf, len, offset);
    if (rc < 0)
        return rc;
    return write_all(LOOM_IO_WRITE, fd, buf, len, offset, rwf, 0, deadline_ns);
}

ssize_t loom_readv(int fd, const struct iovec *iov, int iovcnt, uint64_t offset, int rwf,
                   int64_t deadline_ns)
{
    if (iovcnt < 0 || iovcnt > IOV_MAX)
        return -EINVAL;
    int rc = direct_check_iov(fd, iov, iovcnt, offset);
    if (rc < 0)
        return rc;
    struct loom_io_req req;
    req_init(&req, LOOM_IO_READV, fd);
    req.addr = (void *)iov;
    req.len = (uint32_t)iovcnt;
    req.offset = offset;
    req.flags = (uint32_t)rwf;
    return io_call(&req, deadline_ns);
}

ssize_t loom_writev(int fd, const struct iovec *iov, int iovcnt, uint64_t offset, int rwf,
                    int64_t deadline_ns)
{
    if (iovcnt < 0 || iovcnt > IOV_MAX)
        return -EINVAL;
    int rc = direct_check_iov(fd, iov, iovcnt, offset);
    if (rc < 0)
        return rc;
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    struct loom_io_req req;
    req_init(&req, LOOM_IO_WRITEV, fd);
    req.addr = (void *)iov;
    req.len = (uint32_t)iovcnt;
    req.offset = offset;
    req.flags = (uint32_t)rwf;
    int32_t n = io_call(&req, deadline_ns);
    if (n < 0 || (size_t)n >= total)
        return n;
    /* short: finish the rest piece by piece (rare; one write per remaining segment) */
    io_of(loom__self)->stats.short_writes++;
    unsigned align = loom_io_direct_align(fd);
    size_t done = align ? (size_t)n & ~(size_t)(align - 1) : (size_t)n;
    size_t seg_start = 0;
    for (int i = 0; i < iovcnt; i++) {
        size_t seg_end = seg_start + iov[i].iov_len;
        if (done < seg_end) {
            size_t skip = done - seg_start;
            ssize_t w = write_all(LOOM_IO_WRITE, fd, (char *)iov[i].iov_base + skip,
                                  iov[i].iov_len - skip, offset + done, rwf, 0, deadline_ns);
            if (w < 0)
                return w;
            done = seg_end;
        }
        seg_start = seg_end;
    }
    return (ssize_t)total;
}

/* ---- registered buffers -------------------------------------------------------------------- */

/* Checks a fixed (registered-buffer) transfer: 0 when it may go as one (buffer index 0: the
 * whole pool is registered as one buffer), 1 when the pool is not registered and a plain
 * transfer must do, or -EINVAL (the buffer is not the pool's, or O_DIRECT misalignment). */
static int fixed_check(int fd, const void *buf, size_t len, uint64_t offset)
{
    struct loom__io *io = io_of(loom__reactor());
    const char *p = buf;
    if (p < io->pool || p + len > io->pool + io->pool_bytes || p + len < p) {
        loom__log("error", "fixed IO buffer %p (+%zu) is not from loom_iobuf_alloc()", buf, len);
        return -EINVAL;
    }
    if (!io->registered)
        return 1;
    return direct_check(fd, buf, len, offset);
}

ssize_t loom_read_fixed(int fd, void *buf, size_t len, uint64_t offset, int64_t deadline_ns)
{
    int rc = fixed_check(fd, buf, len, offset);
    if (rc != 0)
        return rc < 0 ? rc : loom_read(fd, buf, len, offset, 0, deadline_ns);
    struct loom_io_req req;
    req_init(&req, LOOM_IO_READ_FIXED, fd);
    req.addr = buf;
    req.len = (uint32_t)len;
    req.offset = offset;
    req.buf_index = 0;
    return io_call(&req, deadline_ns);
}

ssize_t loom_write_fixed(int fd, const void *buf, size_t len, uint64_t offset, int64_t deadline_ns)
{
    int rc = fixed_check(fd, buf, len, offset);
    if (rc != 0)
        return rc < 0 ? rc : loom_write(fd, buf, len, offset, 0, deadline_ns);
    return write_all(LOOM_IO_WRITE_FIXED, fd, buf, len, offset, 0, 0, deadline_ns);
}

/* ---- the other calls ------------------------------------------------------------------------ */

int loom_fsync(int fd, unsigned flags, int64_t deadline_ns)
{
    struct loom_io_req req;
    req_init(&req, LOOM_IO_FSYNC, fd);
    req.flags = flags & LOOM_FSYNC_DATA;
    return io_call(&req, deadline_ns);
}

int loom_fallocate(int fd, int mode, uint64_t offset, uint64_t len, int64_t deadline_ns)
{
    struct loom_io_req req;
    req_init(&req, LOOM_IO_FALLOCATE, fd);
    req.mode = (uint32_t)mode;
    req.offset = offset;
    req.length = len;
    return io_call(&req, deadline_ns);
}

int loom_ftruncate(int fd, uint64_t len, int64_t deadline_ns)
{
    struct loom_io_req req;
    req_init(&req, LOOM_IO_FTRUNCATE, fd);
    req.length = len;
    return io_call(&req, deadline_ns);
}

int loom_statx(int dirfd, const char *path, int flags, unsigned mask, struct statx *out,
               int64_t deadline_ns)
{
    struct loom_io_req req;
    req_init(&req, LOOM_IO_STATX, dirfd);
    req.addr = (void *)path;
    req.flags = (uint32_t)flags;
    req.mode = mask;
    req.addr2 = out;
    return io_call(&req, deadline_ns);
}

int loom_renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath,
                  unsigned flags, int64_t deadline_ns)
{
    struct loom_io_req req;
    req_init(&req, LOOM_IO_RENAMEAT, olddirfd);
    req.addr = (void *)oldpath;
    req.fd2 = newdirfd;
    req.addr2 = (void *)newpath;
    req.flags = flags;
    return io_call(&req, deadline_ns);
}

int loom_unlinkat(int dirfd, const char *path, int flags, int64_t deadline_ns)
{
    struct loom_io_req req;
    req_init(&req, LOOM_IO_UNLINKAT, dirfd);
    req.addr = (void *)path;
    req.flags = (uint32_t)flags;
    return io_call(&req, deadline_ns);
}

int loom_mkdirat(int dirfd, const char *path, mode_t mode, int64_t deadline_ns)
{
    struct loom_io_req req;
    req_init(&req, LOOM_IO_MKDIRAT, dirfd);
    req.addr = (void *)path;
    req.mode = mode;
    return io_call(&req, deadline_ns);
}

int loom_fsync_dir(int dirfd, const char *path, int64_t deadline_ns)
{
    int fd = loom_openat(dirfd, path, O_RDONLY | O_DIRECTORY, 0, deadline_ns);
    if (fd < 0)
        return fd;
    int rc = loom_fsync(fd, 0, deadline_ns);
    int rc2 = loom_close(fd);
    return rc < 0 ? rc : rc2;
}

/* ---- the buffer pool (buddy allocator) ------------------------------------------------------ */

static size_t block_index(struct loom__io *io, const void *p)
{
    return (size_t)((const char *)p - io->pool) >> IOBUF_MIN_SHIFT;
}

static void free_push(struct loom__io *io, unsigned order, void *p)
{
    struct iobuf_free *f = p;
    f->prev = NULL;
    f->next = io->free_list[order];
    if (f->next)
        f->next->prev = f;
    io->free_list[order] = f;
    io->meta[block_index(io, p)] = (uint8_t)(order | IOBUF_FREE);
}

static void free_remove(struct loom__io *io, unsigned order, struct iobuf_free *f)
{
    if (f->prev)
        f->prev->next = f->next;
    else
        io->free_list[order] = f->next;
    if (f->next)
        f->next->prev = f->prev;
    io->meta[block_index(io, f)] = 0;
}

void *loom_iobuf_alloc(size_t bytes)
{
    struct loom__io *io = io_of(loom__reactor());
    if (bytes == 0)
        bytes = 1;
    unsigned shift = IOBUF_MIN_SHIFT;
    while (((size_t)1 << shift) < bytes)
        shift++;
    if (shift > io->top_shift)
        return NULL;
    unsigned want = shift - IOBUF_MIN_SHIFT, order = want;
    while (order <= io->top_shift - IOBUF_MIN_SHIFT && !io->free_list[order])
        order++;
    if (order > io->top_shift - IOBUF_MIN_SHIFT)
        return NULL;
    struct iobuf_free *f = io->free_list[order];
    free_remove(io, order, f);
    while (order > want) {
        order--;
        free_push(io, order, (char *)f + ((size_t)1 << (order + IOBUF_MIN_SHIFT)));
    }
    io->meta[block_index(io, f)] = (uint8_t)want;
    io->stats.iobuf_in_use += (size_t)1 << shift;
    return f;
}

void loom_iobuf_free(void *buf)
{
    if (!buf)
        return;
    struct loom__io *io = io_of(loom__reactor());
    char *p = buf;
    LOOM_ASSERTF(p >= io->pool && p < io->pool + io->pool_bytes &&
                     ((size_t)(p - io->pool) & (((size_t)1 << IOBUF_MIN_SHIFT) - 1)) == 0,
                 "loom_iobuf_free(%p): not an IO buffer of this core", buf);
    size_t idx = block_index(io, p);
    unsigned order = io->meta[idx];
    LOOM_ASSERTF(!(order & IOBUF_FREE), "loom_iobuf_free(%p): freed twice", buf);
    io->stats.iobuf_in_use -= (size_t)1 << (order + IOBUF_MIN_SHIFT);
    unsigned top = io->top_shift - IOBUF_MIN_SHIFT;
    while (order < top) {
        size_t buddy = idx ^ ((size_t)1 << order);
        if ((buddy << IOBUF_MIN_SHIFT) >= io->pool_bytes || io->meta[buddy] != (order | IOBUF_FREE))
            break;
        free_remove(io, order, (struct iobuf_free *)(io->pool + (buddy << IOBUF_MIN_SHIFT)));
        idx &= ~((size_t)1 << order);
        order++;
    }
    free_push(io, order, io->pool + (idx << IOBUF_MIN_SHIFT));
}

size_t loom_iobuf_align(void)
{
    return (size_t)1 << IOBUF_MIN_SHIFT;
}

static int pool_init(struct loom__reactor *r, struct loom__io *io, size_t bytes)
{
    bytes &= ~(((size_t)1 << IOBUF_MIN_SHIFT) - 1);
    if (bytes == 0)
        return 0; /* no pool */
    unsigned top = IOBUF_MAX_SHIFT;
    while (((size_t)1 << top) > bytes)
        top--;
    io->pool = loom__arena_carve(r, bytes, (size_t)1 << IOBUF_MIN_SHIFT);
    if (!io->pool) {
        loom__log("error",
                  "core %u: the memory budget cannot hold %zu bytes of IO buffers "
                  "(--io-buffers, --memory)",
                  r->core, bytes);
        return -ENOMEM;
    }
    io->meta = loom__arena_carve(r, bytes >> IOBUF_MIN_SHIFT, 64);
    if (!io->meta)
        return -ENOMEM;
    memset(io->meta, 0, bytes >> IOBUF_MIN_SHIFT);
    io->pool_bytes = bytes;
    io->top_shift = top;
    /* cut the pool into the largest blocks that fit, each aligned (from the pool's start) to
     * its own size, so a size that is not a power of two loses nothing: 24 MiB = 16 + 8 */
    for (size_t off = 0; off < bytes;) {
        unsigned shift = top;
        while (((size_t)1 << shift) > bytes - off || (off & (((size_t)1 << shift) - 1)))
            shift--;
        free_push(io, shift - IOBUF_MIN_SHIFT, io->pool + off);
        off += (size_t)1 << shift;
    }
    io->stats.iobuf_bytes = bytes;
    int rc = loom__uring_register_buffer(r, io->pool, bytes);
    if (rc < 0) {
        loom__log("warning",
                  "core %u: registering %zu bytes of IO buffers failed (%s): fixed reads and "
                  "writes fall back to plain ones (raise RLIMIT_MEMLOCK, ulimit -l)",
                  r->core, bytes, strerror(-rc));
    } else {
        io->registered = true;
    }
    return 0;
}

/* ---- per core ------------------------------------------------------------------------------- */

int loom__io_core_init(struct loom__reactor *r)
{
    struct loom__io *io = loom__arena_carve(r, sizeof(*io), LOOM_CACHELINE);
    if (!io)
        return -ENOMEM;
    memset(io, 0, sizeof(*io));
    io->uring_backend = (struct loom_io_backend){
        .name = "io_uring", .start = uring_start, .cancel = uring_cancel, .ctx = r};
    io->backend = &io->uring_backend;
    io->depth = loom__rt.config.io_depth;
    io->stats.disk_depth = io->depth;
    r->io = io;
    return pool_init(r, io, loom__rt.config.io_buffer_bytes);
}

void loom__io_core_deinit(struct loom__reactor *r)
{
    if (r->fault)
        loom__fault_core_deinit(r);
    r->io = NULL; /* the memory is the arena's */
}

void loom_io_stats_get(struct loom_io_stats *out)
{
    struct loom__io *io = io_of(loom__reactor());
    *out = io->stats;
    out->faults = loom__self->fault ? loom_fault_fired() : 0;
    out->disk_in_flight = io->in_flight;
    out->disk_depth = io->depth;
}
