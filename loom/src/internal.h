/* SPDX-License-Identifier: MIT
 * internal.h - the runtime's private structures, shared by the loom sources (never installed).
 *
 * Threading rule: a struct loom__reactor is written only by its own thread, except the fields
 * marked "shared" (atomics read or written by other cores: the sleeping flag, the stall
 * watchdog's sample, counters read by loom_stats_get()).
 */
#ifndef LOOM_INTERNAL_H
#define LOOM_INTERNAL_H

#include <pthread.h>
#include <assert.h>
#include <errno.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "loom/loom.h"
#include "wheel.h"

#define LOOM_LIKELY(x)   __builtin_expect(!!(x), 1)
#define LOOM_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define LOOM_CACHELINE   64

/* Appends `node` to the intrusive FIFO (head, tail) linked through `->next`: the one queue
 * shape of the runtime (ready fibers, overflowed ops, completed ops, parked and self
 * messages, fibers waiting for a stack). */
#define LOOM_FIFO_PUSH(head, tail, node)                                                           \
    do {                                                                                           \
        (node)->next = NULL;                                                                       \
        if (tail)                                                                                  \
            (tail)->next = (node);                                                                 \
        else                                                                                       \
            (head) = (node);                                                                       \
        (tail) = (node);                                                                           \
    } while (0)
#define LOOM_CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* Assertions stay on in every build: they guard invariants whose violation corrupts memory. */
void loom__assert_fail(const char *file, int line, const char *expr, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5)));
#define LOOM_ASSERT(cond)                                                                          \
    do {                                                                                           \
        if (LOOM_UNLIKELY(!(cond)))                                                                \
            loom__assert_fail(__FILE__, __LINE__, #cond, NULL);                                    \
    } while (0)
#define LOOM_ASSERTF(cond, ...)                                                                    \
    do {                                                                                           \
        if (LOOM_UNLIKELY(!(cond)))                                                                \
            loom__assert_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);                             \
    } while (0)

#ifdef LOOM_DEBUG
#define LOOM_DEBUG_ASSERT(cond) LOOM_ASSERT(cond)
#else
#define LOOM_DEBUG_ASSERT(cond) ((void)0)
#endif

/* Logging: one line on stderr with the core id. */
void loom__log(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- fibers -------------------------------------------------------------------------------- */

struct loom__ctx {
    void *sp; /* saved stack pointer; callee-saved registers are on the stack */
};

/* Switches from `from` (saving) to `to` (restoring). switch_x86_64.S. */
void loom__ctx_switch(struct loom__ctx *from, struct loom__ctx *to);
/* Entry of a new context: calls loom__fiber_entry(fiber) with fiber in r12. */
void loom__ctx_entry(void);

enum loom__fiber_state {
    LOOM_FIBER_FREE = 0,
    LOOM_FIBER_NEW,   /* spawned, never run: no stack yet */
    LOOM_FIBER_READY, /* in the ready queue */
    LOOM_FIBER_RUNNING,
    LOOM_FIBER_WAITING, /* in a baton wait */
    LOOM_FIBER_DONE,    /* returned; joinable record waits for its joiner */
};

struct loom__call; /* smp.c */

struct loom_fiber {
    struct loom__ctx ctx;
    struct loom_fiber *next; /* ready queue or free list */
    loom_fiber_fn fn;
    void *arg;
    char *stack_lo; /* lowest usable byte (the guard page is just below) */
    size_t stack_size;
    struct loom_baton *join_baton; /* the joiner's baton while it waits */
    struct loom__call *call;       /* set while running an invoke_on call */
    struct loom_io_req *io_req;    /* the file request the fiber is blocked in (io.c) */
    bool io_cancel;                /* loom_io_cancel(): end the current or next IO call */
    void *asan_fake_stack;
    void *tsan_fiber;
    int result;
    uint16_t core;
    uint8_t state;
    uint8_t stack_class;
    bool joinable;
    bool has_stack;
    char name[LOOM_FIBER_NAME_MAX];
};

/* A stack in a free list: the link sits at the stack's lowest usable address. */
struct loom__stack {
    struct loom__stack *next;
};

/* ---- cross-core rings ---------------------------------------------------------------------- */

/* SPSC ring of message pointers from one core (producer) to another (consumer). Producer and
 * consumer fields sit on separate cache lines; each side caches the other's index so it reads
 * the shared line only when its cached view says full/empty. */
struct loom__spsc {
    alignas(LOOM_CACHELINE) _Atomic uint32_t tail; /* shared: published by the producer */
    _Atomic int parked; /* shared: the producer has parked messages, wake it on space */
    alignas(LOOM_CACHELINE) _Atomic uint32_t head; /* shared: published by the consumer */
    alignas(LOOM_CACHELINE) uint32_t prod_tail;    /* producer: next slot to write */
    uint32_t prod_head_cache;                      /* producer: last head seen */
    struct loom_msg *park_head, *park_tail;        /* producer: parked while the ring is full */
    bool dirty;                                    /* producer: unpublished writes */
    alignas(LOOM_CACHELINE) uint32_t cons_head;    /* consumer: next slot to read */
    uint32_t cons_tail_cache;                      /* consumer: last tail seen */
    alignas(LOOM_CACHELINE) uint32_t mask;
    uint16_t producer, consumer; /* core ids */
    struct loom_msg **slots;
};

/* The SQE image inside struct loom_op: the kernel's struct io_uring_sqe field for field
 * (uring.c static-asserts each offset against liburing's definition). */
struct loom__sqe {
    uint8_t opcode;
    uint8_t flags;
    uint16_t ioprio;
    int32_t fd;
    uint64_t off;
    uint64_t addr;
    uint32_t len;
    uint32_t op_flags; /* rw_flags, fsync_flags, msg_flags, ... */
    uint64_t user_data;
    uint16_t buf_index;
    uint16_t personality;
    uint32_t file_index;
    uint64_t addr3;
    uint64_t pad;
};
_Static_assert(sizeof(struct loom__sqe) == 64, "an SQE is 64 bytes");

static inline struct loom__sqe *loom__op_sqe(struct loom_op *op)
{
    return (struct loom__sqe *)op->sqe;
}

/* ---- the reactor --------------------------------------------------------------------------- */

struct loom__uring;         /* uring.c */
struct loom__shutdown_wait; /* reactor.c */

struct loom__slab_class {
    void *free; /* free list of objects of this class (link in the first word) */
    uint64_t in_use;
};
#define LOOM_SLAB_CLASSES 13 /* 16 B .. 64 KiB */
#define LOOM_SLAB_SPAN    (64u * 1024u)

struct loom__reactor {
    unsigned core;
    unsigned cpu;
    int numa_node;
    pthread_t thread;
    pid_t tid;

    struct loom_fiber *current; /* the running fiber, NULL in the loop (shared: the watchdog
                                 * reads it, so it is written with loom__set_current()) */
    struct loom__ctx loop_ctx;  /* the loop's context while a fiber runs */
    void *loop_stack_lo;        /* the thread stack (for ASan switch annotations) */
    size_t loop_stack_size;
    void *loop_tsan_fiber;
    void *loop_fake_stack;
    struct loom_fiber *ready_head, *ready_tail;
    uint64_t pass_ran;   /* switches in this pass (the quota is checked every 64) */
    int64_t pass_end_ns; /* the task quota's end for this pass */
    struct loom_fiber *fiber_free;
    struct loom__stack *stack_free[LOOM_STACK_CLASSES];
    uint64_t stacks_in_use[LOOM_STACK_CLASSES];        /* held by fibers */
    struct loom_fiber *stack_wait[LOOM_STACK_CLASSES]; /* new fibers waiting for a stack */
    struct loom_fiber *stack_wait_tail[LOOM_STACK_CLASSES];
    struct loom_fiber *exited; /* fiber whose stack the loop must recycle */
    uint64_t fibers_live;

    /* memory budget: [arena_lo, arena_hi), carved upward from arena_next */
    char *arena_lo, *arena_hi, *arena_next;
    struct loom__slab_class slab[LOOM_SLAB_CLASSES];
    uint8_t *span_class; /* per 64 KiB span of the arena: 0 = not slab, else class + 1 */

    struct loom__uring *uring;
    struct loom__io *io;       /* io.c: file IO state (budget, backend, buffer pool) */
    struct loom__fault *fault; /* fault.c: NULL unless fault injection is on */
    struct loom__net *net;     /* net.c: the provided-buffer ring and its buffers */
    bool net_notify_pending;   /* net.c has socket news to deliver after the CQE batch */
    struct loom_op *overflow_head, *overflow_tail; /* ops waiting for an SQE */
    struct loom_op *done_head, *done_tail;         /* completed without the kernel */
    uint32_t sqes_pending;                         /* prepared, not yet submitted */
    uint32_t ops_in_flight;

    struct loom__wheel wheel;
    int64_t now_ns; /* the iteration's cached time, read lazily: see loom__now() */
    bool now_stale; /* now_ns is from an earlier loop iteration */
    int64_t quota_ns;

    /* cross-core: in[i] is the ring from core i, out[i] the ring to core i */
    struct loom__spsc *in[LOOM_CORES_MAX];
    struct loom__spsc *out[LOOM_CORES_MAX];
    struct loom_msg *self_head, *self_tail;     /* messages to this core itself */
    uint64_t out_dirty[LOOM_CORES_MAX / 64];    /* bitmap of out rings with unpublished writes */
    uint64_t wake_pending[LOOM_CORES_MAX / 64]; /* cores to wake at the next submit */
    int wake_fd;                                /* eventfd (fallback wake-up) */

    /* shutdown */
    bool stopped;                              /* the loop has left */
    struct loom__shutdown_wait *shutdown_head; /* fibers in loom_wait_shutdown() */
    int64_t stop_deadline_ns;                  /* end of the shutdown grace, 0 = running */

    /* shared */
    alignas(LOOM_CACHELINE) _Atomic int sleeping;         /* set while (about to be) asleep */
    alignas(LOOM_CACHELINE) uint64_t stall_seen_switches; /* watchdog's last sample */
    int64_t stall_seen_ns;
    bool stall_reported;
    /* stats.fibers_run (switches into fibers) and `current` are what the watchdog samples */
    alignas(LOOM_CACHELINE) struct loom_stats stats;
};

/* Sets the running fiber; the stall watchdog reads it from its own thread. */
static inline void loom__set_current(struct loom__reactor *r, struct loom_fiber *f)
{
    __atomic_store_n(&r->current, f, __ATOMIC_RELAXED);
}

/* Bumps a counter; other threads read counters with relaxed atomic loads. */
#define LOOM_STAT_ADD(r, field, n)                                                                 \
    __atomic_store_n(&(r)->stats.field, (r)->stats.field + (n), __ATOMIC_RELAXED)
#define LOOM_STAT_INC(r, field) LOOM_STAT_ADD(r, field, 1)

struct loom__runtime {
    struct loom_config config;
    unsigned cores;
    unsigned cpus[LOOM_CORES_MAX];
    int numa_nodes[LOOM_CORES_MAX];
    struct loom__reactor *reactors[LOOM_CORES_MAX];
    char *memory_lo; /* all cores' budgets, one reservation */
    size_t memory_bytes;
    size_t core_bytes; /* per-core budget */
    size_t page_bytes;
    _Atomic int stopping;
    _Atomic int exit_claimed;
    _Atomic int exit_code;
    _Atomic int shutdown_requested;
    _Atomic int signals_seen;
    _Atomic unsigned shutdown_waiters; /* fibers in loom_wait_shutdown(), all cores */
    _Atomic unsigned registered;       /* reactors registered during start-up */
    _Atomic int start_failed;
    bool under_valgrind; /* valgrind runs one thread at a time: never sleep long in the kernel */
    int signal_fd;
};

extern struct loom__runtime loom__rt;
extern __thread struct loom__reactor *loom__self __attribute__((tls_model("initial-exec")));

/* The calling thread's reactor; asserts that it is one. */
static inline struct loom__reactor *loom__reactor(void)
{
    struct loom__reactor *r = loom__self;
    LOOM_ASSERTF(r != NULL, "called from a thread that is not a loom reactor");
    return r;
}

/* ---- module interfaces --------------------------------------------------------------------- */

/* mem.c */
int loom__mem_reserve(struct loom__runtime *rt);  /* all budgets, before threads */
int loom__mem_core_init(struct loom__reactor *r); /* on the core's thread: bind, lock */
void loom__mem_release(struct loom__runtime *rt);
void *loom__arena_carve(struct loom__reactor *r, size_t bytes, size_t align); /* NULL: full */

/* fiber.c */
void loom__fiber_run_ready(struct loom__reactor *r); /* runs ready fibers up to quota */
void loom__fiber_block(struct loom__reactor *r);     /* current fiber waits */
int loom__fiber_spawn_call(struct loom__call *call, loom_fiber_fn fn, void *arg);
void loom__fiber_core_init(struct loom__reactor *r);
void loom__fiber_core_deinit(struct loom__reactor *r);
bool loom__addr_in_guard(struct loom__reactor *r, const void *addr, struct loom_fiber **fiber);

/* Ready queue push (fiber.c owns the queue; inline because every wake-up goes through it). */
static inline void loom__ready_push(struct loom__reactor *r, struct loom_fiber *f)
{
    LOOM_FIFO_PUSH(r->ready_head, r->ready_tail, f);
}

/* Makes a waiting (or the running, yielding) fiber ready. */
static inline void loom__fiber_ready(struct loom__reactor *r, struct loom_fiber *f)
{
    LOOM_DEBUG_ASSERT(f->core == r->core);
    LOOM_ASSERTF(f->state == LOOM_FIBER_WAITING || f->state == LOOM_FIBER_RUNNING,
                 "fiber '%s' readied twice", f->name);
    f->state = LOOM_FIBER_READY;
    loom__ready_push(r, f);
}

/* Baton states (baton.c); here so the common post is inlined into completion callbacks. */
enum {
    LOOM_BATON_IDLE = 0,
    LOOM_BATON_WAITING,
    LOOM_BATON_WOKEN,
    LOOM_BATON_TIMEDOUT,
    LOOM_BATON_POSTED,
    LOOM_BATON_DEAD = 0xde,
};

/* baton.c: every case of a local post but the common one, with the misuse checks. */
void loom__baton_post_slow(struct loom__reactor *r, struct loom_baton *baton);

/* Wakes the fiber waiting on `baton` (a local post): the common case inline. */
static inline void loom__baton_post_local(struct loom__reactor *r, struct loom_baton *baton)
{
    if (LOOM_LIKELY(baton->state == LOOM_BATON_WAITING && baton->core == (uint16_t)r->core)) {
        baton->state = LOOM_BATON_WOKEN;
        loom__fiber_ready(r, baton->waiter);
        return;
    }
    loom__baton_post_slow(r, baton);
}

/* The misuse checks of every call on a baton owned by core `r`. */
static inline void loom__baton_check_owner(const struct loom_baton *b,
                                           const struct loom__reactor *r)
{
    LOOM_ASSERTF(b->state != LOOM_BATON_DEAD, "baton %p used after loom_baton_deinit()", (void *)b);
    LOOM_ASSERTF(b->core == (uint16_t)r->core, "baton %p of core %u used on core %u", (void *)b,
                 b->core, r->core);
}

/* Ends a wait cycle: later remote posts that saw the old generation are stale. */
static inline void loom__baton_end_cycle(struct loom_baton *b)
{
    b->waiter = NULL;
    __atomic_store_n(&b->generation, b->generation + 1, __ATOMIC_RELAXED);
}

/* Ends a wait the fiber was woken from: by a post (0), or by the deadline (-ETIMEDOUT). */
static inline int loom__baton_wait_result(struct loom_baton *b)
{
    int rc;
    if (LOOM_LIKELY(b->state == LOOM_BATON_WOKEN)) {
        b->state = LOOM_BATON_IDLE;
        rc = 0;
    } else {
        /* TIMEDOUT, or POSTED by a post that came after the deadline: that post counts for
         * the next cycle, as a post before a wait does. */
        LOOM_ASSERT(b->state == LOOM_BATON_TIMEDOUT || b->state == LOOM_BATON_POSTED);
        if (b->state == LOOM_BATON_TIMEDOUT)
            b->state = LOOM_BATON_IDLE;
        rc = -ETIMEDOUT;
    }
    loom__baton_end_cycle(b);
    return rc;
}

/* baton.c: the wait with a deadline (a timer on its frame), out of line. */
int loom__baton_wait_until(struct loom__reactor *r, struct loom_baton *b, int64_t deadline_ns);

/* The checks that open every wait on `b` by `r`'s running fiber. Returns false when a post
 * came first: that post is taken and the wait is over at once (0). */
static inline bool loom__baton_wait_begin(struct loom__reactor *r, struct loom_baton *b)
{
    loom__baton_check_owner(b, r);
    LOOM_ASSERTF(r->current != NULL, "loom_baton_wait() outside a fiber");
    LOOM_ASSERTF(b->state != LOOM_BATON_WAITING && b->waiter == NULL,
                 "baton %p has a waiter already (one waiter per baton)", (void *)b);
    if (b->state == LOOM_BATON_POSTED) {
        b->state = LOOM_BATON_IDLE;
        loom__baton_end_cycle(b);
        return false;
    }
    LOOM_ASSERT(b->state == LOOM_BATON_IDLE);
    return true;
}

/* Makes `r`'s running fiber the waiter of `b` (after loom__baton_wait_begin() returned true);
 * it then blocks with loom__fiber_block() and ends with loom__baton_wait_result(). */
static inline void loom__baton_wait_arm(struct loom__reactor *r, struct loom_baton *b)
{
    b->state = LOOM_BATON_WAITING;
    b->waiter = r->current;
}

/* loom_baton_wait() on the calling core's reactor `r`, inline so that the fiber-suspending
 * calls (every IO completion a fiber waits for) make no call and no TLS read for it. */
static inline int loom__baton_wait(struct loom__reactor *r, struct loom_baton *b,
                                   int64_t deadline_ns)
{
    if (!loom__baton_wait_begin(r, b))
        return 0;
    if (deadline_ns != LOOM_NO_DEADLINE)
        return loom__baton_wait_until(r, b, deadline_ns);
    loom__baton_wait_arm(r, b);
    loom__fiber_block(r);
    return loom__baton_wait_result(b);
}

/* uring.c: the only file that touches io_uring. */
int loom__uring_init(struct loom__reactor *r);
void loom__uring_deinit(struct loom__reactor *r);
bool loom__uring_prep(struct loom__reactor *r, struct loom_op *op); /* false: SQ full */
/* Submits prepared SQEs and reaps completions; waits up to timeout_ns (0: do not wait,
 * < 0: wait with no timeout) when nothing is ready. Returns the number of CQEs reaped. */
int loom__uring_enter(struct loom__reactor *r, int64_t timeout_ns);
bool loom__uring_has_work(struct loom__reactor *r); /* CQEs or kernel task work pending */
void loom__uring_wake(struct loom__reactor *r, unsigned target); /* wake a sleeping core */
int loom__uring_probe_report(char *buffer, size_t size);
struct loom_io_req;
void loom__uring_req_start(struct loom__reactor *r, struct loom_io_req *req); /* the backend */
int loom__uring_register_buffer(struct loom__reactor *r, void *base, size_t bytes);

/* uring.c: network ops (the SQE image of `op`) and the provided-buffer ring */
struct msghdr;
struct sockaddr;
void loom__prep_accept_multishot(struct loom_op *op, int fd);
void loom__prep_recv_multishot(struct loom_op *op, int fd, uint16_t group);
void loom__prep_recv(struct loom_op *op, int fd, void *buf, size_t len, int flags);
void loom__prep_send(struct loom_op *op, int fd, const void *buf, size_t len, int flags);
void loom__prep_send_zc(struct loom_op *op, int fd, const void *buf, size_t len, int flags);
void loom__prep_sendmsg(struct loom_op *op, int fd, const struct msghdr *msg, int flags);
void loom__prep_connect(struct loom_op *op, int fd, const struct sockaddr *addr, unsigned len);
void loom__prep_shutdown(struct loom_op *op, int fd, int how);
void loom__prep_close(struct loom_op *op, int fd);
bool loom__cqe_is_notif(uint32_t cqe_flags);
bool loom__cqe_more(uint32_t cqe_flags);
bool loom__notif_copied(int32_t res);
int loom__cqe_buffer(uint32_t cqe_flags); /* provided-buffer id, or -1 */
struct loom__bufring;
int loom__bufring_create(struct loom__reactor *r, uint16_t group, unsigned entries,
                         struct loom__bufring **out);
void loom__bufring_add(struct loom__bufring *br, void *addr, uint32_t len, uint16_t bid);
void loom__bufring_publish(struct loom__bufring *br);

/* net.c */
struct loom__net;
int loom__net_core_init(struct loom__reactor *r);
void loom__net_core_deinit(struct loom__reactor *r);
void loom__net_flush(struct loom__reactor *r); /* after a CQE batch: deliver socket news */

/* io.c */
struct loom__io;
int loom__io_core_init(struct loom__reactor *r); /* after the ring exists */
void loom__io_core_deinit(struct loom__reactor *r);
/* Hands `req` to the core's backend, past the depth budget and fault injection. */
void loom__io_backend_start(struct loom__reactor *r, struct loom_io_req *req);

/* fault.c: called for every file request when r->fault is set. Returns true when the fault
 * layer took `req` (completed it with loom_io_complete(), or will hand it to
 * loom__io_backend_start() later); false to let it go on unchanged or shortened. */
struct loom__fault;
bool loom__fault_filter(struct loom__reactor *r, struct loom_io_req *req);
void loom__fault_core_deinit(struct loom__reactor *r);

/* Raw rings for threads that are not reactors (the IO pool): created, used and destroyed by
 * one thread. */
struct loom__raw_ring;
struct loom__raw_cqe {
    uint64_t user_data;
    int32_t res;
    uint32_t flags;
};
int loom__raw_ring_create(unsigned entries, struct loom__raw_ring **out);
void loom__raw_ring_destroy(struct loom__raw_ring *rr);
bool loom__raw_ring_push(struct loom__raw_ring *rr, const struct loom_io_req *req,
                         uint64_t user_data); /* false: SQ full */
unsigned loom__raw_ring_space(struct loom__raw_ring *rr);
/* Submits what was pushed and waits for wait_nr completions (0: do not wait) up to
 * timeout_ns (< 0: no limit). Returns >= 0 or -errno (-EINTR, ...). */
int loom__raw_ring_enter(struct loom__raw_ring *rr, unsigned wait_nr, int64_t timeout_ns);
unsigned loom__raw_ring_reap(struct loom__raw_ring *rr, struct loom__raw_cqe *out, unsigned max);
bool loom__feature_enabled(const char *name); /* LOOM_DISABLE=name,... */

/* reactor.c */
int loom__reactor_create(unsigned core, struct loom__reactor **out); /* on its own thread */
void loom__reactor_run(struct loom__reactor *r);
void loom__reactor_destroy(struct loom__reactor *r);
void loom__op_start(struct loom__reactor *r, struct loom_op *op);
void loom__notify_all_cores(void); /* wake every core to look at the runtime's flags */
int loom__op_cancel_queued(struct loom__reactor *r, struct loom_op *op);
void loom__wake_any_thread(struct loom__reactor *target);
enum { LOOM_OP_IDLE = 0, LOOM_OP_QUEUED = 1, LOOM_OP_SUBMITTED = 2 };
/* Special user_data values for internal CQEs (ops are pointers, never this small). */
#define LOOM_UD_WAKE    1u
#define LOOM_UD_EVENTFD 2u
#define LOOM_UD_SIGNAL  3u
#define LOOM_UD_IGNORE  4u
#define LOOM_UD_MAX     4096u

/* smp.c */
int loom__smp_init(struct loom__runtime *rt);  /* rings, after all registered */
void loom__smp_drain(struct loom__reactor *r); /* inbound + self messages */
void loom__smp_flush(struct loom__reactor *r); /* publish outbound, wake */
bool loom__smp_has_inbound(struct loom__reactor *r);
bool loom__smp_parked_can_move(struct loom__reactor *r); /* a full ring has room again */

/* stall.c */
int loom__stall_start(struct loom__runtime *rt);
void loom__stall_stop(void);
void loom__stall_thread_init(void); /* per reactor thread: signal handler, altstack */

/* clock.c */
int64_t loom__clock_ns(void);

/* The precise clock, read on `r`'s thread: the iteration's first read also becomes its cached
 * time (a read the iteration then need not make). */
static inline int64_t loom__clock_read(struct loom__reactor *r)
{
    int64_t now = loom__clock_ns();
    if (r->now_stale) {
        r->now_ns = now;
        r->now_stale = false;
    }
    return now;
}

/* The loop iteration's cached time (loom_now_ns()). The clock is read at the iteration's
 * first use of it rather than at its start, so an iteration that needs no time (no timer
 * armed, nobody asking) makes no clock read: that read cost as much as the rest of a loop turn
 * (~40 ns through the vDSO under virtualisation). */
static inline int64_t loom__now(struct loom__reactor *r)
{
    if (LOOM_UNLIKELY(r->now_stale)) {
        r->now_ns = loom__clock_ns();
        r->now_stale = false;
    }
    return r->now_ns;
}

#endif
