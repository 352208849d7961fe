/* SPDX-License-Identifier: MIT
 * io_backend.h - the small interface every file operation of io.h goes through.
 *
 * A file call builds a struct loom_io_req (what to do, decoded: no SQE) and hands it to the
 * calling core's backend. The default backend is the core's io_uring; a test can install
 * another one per core, e.g. the simulated disk (simdisk.h), which keeps files in memory and
 * completes requests in a seeded order on a virtual clock so that crashes can be replayed.
 * Between the call and the backend sit the --io-depth budget and fault injection (fault.h).
 * A backend completes each request exactly once with loom_io_complete(), from the reactor
 * thread of the core that started it; the caller's callback then runs from the loop.
 */
#ifndef LOOM_IO_BACKEND_H
#define LOOM_IO_BACKEND_H

#include "loom/common.h"
#include "loom/reactor.h"

#ifdef __cplusplus
extern "C" {
#endif

enum loom_io_kind {
    LOOM_IO_NOP = 0,
    LOOM_IO_OPENAT,      /* fd=dirfd, addr=path, flags=open flags, mode */
    LOOM_IO_CLOSE,       /* fd */
    LOOM_IO_READ,        /* fd, addr=buf, len, offset, flags=RWF_* */
    LOOM_IO_WRITE,       /* fd, addr=buf, len, offset, flags=RWF_* */
    LOOM_IO_READV,       /* fd, addr=iovec array, len=iovcnt, offset, flags=RWF_* */
    LOOM_IO_WRITEV,      /* fd, addr=iovec array, len=iovcnt, offset, flags=RWF_* */
    LOOM_IO_READ_FIXED,  /* fd, addr=buf, len, offset, buf_index */
    LOOM_IO_WRITE_FIXED, /* fd, addr=buf, len, offset, buf_index */
    LOOM_IO_FSYNC,       /* fd, flags=LOOM_FSYNC_DATA or 0 */
    LOOM_IO_FALLOCATE,   /* fd, mode=fallocate mode, offset, length */
    LOOM_IO_FTRUNCATE,   /* fd, length */
    LOOM_IO_STATX,       /* fd=dirfd, addr=path, flags=AT_*, mode=mask, addr2=struct statx* */
    LOOM_IO_RENAMEAT,    /* fd=olddirfd, addr=oldpath, fd2=newdirfd, addr2=newpath, flags */
    LOOM_IO_UNLINKAT,    /* fd=dirfd, addr=path, flags=AT_REMOVEDIR or 0 */
    LOOM_IO_MKDIRAT,     /* fd=dirfd, addr=path, mode */
    LOOM_IO_KINDS
};

/* One file request. The io.h calls fill it; op.fn/op.data are the completion callback and
 * op.res the result (>= 0 or -errno). Fields not named for a kind are zero. */
struct loom_io_req {
    struct loom_op op; /* the ring op for the io_uring backend; the completion for all */
    uint8_t kind;      /* enum loom_io_kind */
    uint8_t prio; /* priority class: 0 today; the hook for IO classes with shares (Seastar-like)
                   * that the --io-depth budget will serve in proportion */
    uint16_t buf_index; /* registered buffer (fixed kinds) */
    int32_t fd;
    int32_t fd2;
    uint32_t flags;
    uint32_t mode;
    uint32_t len; /* bytes, or iovec count */
    uint64_t offset;
    uint64_t length; /* fallocate / ftruncate */
    void *addr;
    void *addr2;
    /* private to io.c */
    loom_op_fn user_fn;                    /* op.fn as given to loom_io_start() */
    const struct loom_io_backend *backend; /* the backend it was started on */
    uint8_t io_state;                      /* idle, waiting for the budget, started */
    uint32_t started_len;                  /* len as started: a fault rule that shortens the
                                            * transfer changes len on its way only */
};

struct loom_io_backend {
    const char *name;
    /* Starts `req`; complete it later (never inline) with loom_io_complete(). */
    void (*start)(void *ctx, struct loom_io_req *req);
    /* Asks to cancel a started `req`: it must still complete, with -ECANCELED or its real
     * result. Returns 0, or -ENOENT when `req` is not known. */
    int (*cancel)(void *ctx, struct loom_io_req *req);
    void *ctx;
};

/* Installs `backend` for the calling core's file IO; NULL restores io_uring. Requests in
 * flight finish on the backend that started them. Core: any reactor thread. */
LOOM_API void loom_io_backend_set(const struct loom_io_backend *backend);

/* The calling core's backend (never NULL). */
LOOM_API const struct loom_io_backend *loom_io_backend_get(void);

/* Completes `req` with `res`: its callback runs from the loop soon after (not inline).
 * Core: the core that started it. */
LOOM_API void loom_io_complete(struct loom_io_req *req, int32_t res);

/* Starts `req` through the depth budget, fault injection and the backend; req->op.fn is
 * called when it completes (the callback style of the io.h calls). Core: any reactor thread. */
LOOM_API void loom_io_start(struct loom_io_req *req);

/* Asks to cancel a request started with loom_io_start() (see the backend's cancel); a request
 * still waiting for the depth budget completes with -ECANCELED without reaching the backend.
 * Returns 0 or -ENOENT. */
LOOM_API int loom_io_cancel_req(struct loom_io_req *req);

#ifdef __cplusplus
}
#endif
#endif
