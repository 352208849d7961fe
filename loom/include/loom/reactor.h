/* SPDX-License-Identifier: MIT
 * reactor.h - the per-core event loop, its operations and its counters.
 *
 * Each selected CPU runs one reactor on one pinned thread. A reactor owns an io_uring that only
 * its thread submits to, a ready queue of fibers, a timer wheel and the inbound cross-core
 * rings. Every reactor operation is a caller-owned struct loom_op with a completion callback:
 * the callback always runs later from the reactor loop of the core that started the op, never
 * inline from the starting call. Fibers wait on ops by posting a baton from that callback, so
 * the stackless (callback) and stackful (fiber) styles share one mechanism.
 */
#ifndef LOOM_REACTOR_H
#define LOOM_REACTOR_H

#include "loom/common.h"

#ifdef __cplusplus
extern "C" {
#endif

struct loom_op;
typedef void (*loom_op_fn)(struct loom_op *op);

/* Caller-owned; fields other than `res`, `cqe_flags` and `data` are private. Zero it before
 * its first use (`struct loom_op op = {0};`): starting an op checks that it is idle. After an
 * op is started it belongs to the reactor until its callback runs: keep it alive and
 * unmoved; then it may be started again. */
struct loom_op {
    struct loom_op *next; /* overflow queue link */
    loom_op_fn fn;        /* completion callback */
    void *data;           /* the caller's, untouched by loom */
    int32_t res;          /* result: >= 0 or -errno, as in the CQE */
    uint32_t cqe_flags;   /* CQE flags (IORING_CQE_F_*) */
    uint16_t state;       /* idle, queued (overflow), submitted */
    uint16_t reserved16;
    uint32_t reserved32;
    /* The submission, laid out exactly as the kernel's 64-byte SQE (uring.c checks every
     * offset), so moving it into the SQ is one copy. An op that finds the SQ full waits here
     * until there is room; NOPs and file requests that go to the ring at once are prepared
     * in their SQ slot instead. */
    uint64_t sqe[8];
};

/* The calling thread's core id (0 .. loom_core_count() - 1). Core: any reactor thread. */
LOOM_API unsigned loom_core_id(void);

/* How many reactor cores run in this process (0 before start-up). Any thread. */
LOOM_API unsigned loom_core_count(void);

/* The CPU the reactor of `core` is pinned to. */
LOOM_API unsigned loom_core_cpu(unsigned core);

/* True on a reactor thread. Any thread. */
LOOM_API bool loom_on_reactor(void);

/* Starts a no-op through the ring; fn(op) runs from the loop with op->res == 0.
 * Core: any reactor thread; the callback runs on that core. */
LOOM_API void loom_op_nop(struct loom_op *op, loom_op_fn fn, void *data);

/* Asks the kernel to cancel started op `op` (IORING_OP_ASYNC_CANCEL). The op's own callback
 * still runs, with -ECANCELED or its real result if it had already finished; `op` stays owned
 * by the reactor until then. Returns 0 or -ENOENT when `op` is not in flight.
 * Core: the op's core. */
LOOM_API int loom_op_cancel(struct loom_op *op);

/* Fiber-suspending no-op through the ring (benchmarks and tests). Returns the CQE result, 0. */
LOOM_API int loom_nop(void);

/* Requests an orderly shutdown of every core; the process's exit status will be `code`
 * (the first request wins). Returns at once; fibers keep running until the loops stop.
 * Any thread. */
LOOM_API void loom_exit(int code);

/* True once loom_exit() was called or the main fiber returned. Any thread. */
LOOM_API bool loom_stopping(void);

/* True once SIGINT or SIGTERM arrived (a shutdown request) or the runtime is stopping. */
LOOM_API bool loom_shutdown_requested(void);

/* Suspends the calling fiber until a shutdown is requested (SIGINT/SIGTERM, or loom_exit()).
 * While a fiber waits here a signal does not stop the process: the program decides (usually
 * by cleaning up and returning from its main fiber). With no fiber waiting, SIGINT/SIGTERM
 * call loom_exit(128 + signo). A second signal always exits. Returns 0 or -ETIMEDOUT.
 * Core: any, from a fiber. */
LOOM_API int loom_wait_shutdown(int64_t deadline_ns);

/* Per-reactor counters; monotonically increasing from start-up. */
struct loom_stats {
    uint64_t loop_iterations;
    uint64_t fibers_spawned;
    uint64_t fibers_run;     /* switches into a fiber */
    uint64_t sqes_submitted; /* SQEs handed to the kernel */
    uint64_t cqes_reaped;
    uint64_t sqes_overflowed; /* ops that found the SQ full and waited in the overflow queue */
    uint64_t msgs_sent;       /* cross-core messages sent / received */
    uint64_t msgs_received;
    uint64_t msgs_parked;  /* messages that found the ring full and waited in order */
    uint64_t sleeps;       /* times the reactor slept in io_uring_enter */
    uint64_t wakeups_sent; /* wake-ups sent to sleeping cores (MSG_RING or eventfd) */
    uint64_t wakeups_received;
    uint64_t timers_fired;
    uint64_t stalls;      /* stall detector reports */
    uint64_t stale_posts; /* remote baton posts that arrived after their wait ended */
    uint64_t heap_allocs; /* allocations that took fresh memory after start-up */
    uint64_t syscalls;    /* io_uring_enter and other syscalls made by the loop */
    uint64_t stack_waits; /* new fibers that waited for a stack (budget used up) */
};

/* Copies the counters of `core` into *out (values of another core may be a moment old).
 * Returns 0 or -EINVAL for a bad core. Any thread while the runtime runs. */
LOOM_API int loom_stats_get(unsigned core, struct loom_stats *out);

#ifdef __cplusplus
}
#endif
#endif
