/* SPDX-License-Identifier: MIT
 * uring.c - everything loom does with io_uring, in one place (with the liburing 2.3 gaps).
 *
 * Each reactor thread creates its own ring (SINGLE_ISSUER: only it may submit; DEFER_TASKRUN:
 * completions are posted only when it enters the kernel with GETEVENTS, so they never
 * interrupt it; TASKRUN_FLAG: the kernel sets IORING_SQ_TASKRUN when such work waits, which is
 * how the spin phase knows to enter). Newer features are probed and each can be forced off
 * with LOOM_DISABLE=name,name (see loom__feature_enabled), so fallbacks are tested too.
 * Internal CQEs carry small user_data values (LOOM_UD_*); every other CQE is a struct loom_op.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <liburing.h>
#include <valgrind/memcheck.h>

#include "internal.h"
#include "loom/io.h"
#include "loom/io_backend.h"

/* liburing 2.3 stops at opcode 48 (IORING_OP_SENDMSG_ZC is 48 in 6.1); the kernel here has
 * up to 62. Names we may use, defined here and probed at run time. */
#ifndef IORING_SETUP_NO_SQARRAY
#define IORING_SETUP_NO_SQARRAY (1U << 16)
#endif
#ifndef IORING_SETUP_DEFER_TASKRUN
#define IORING_SETUP_DEFER_TASKRUN (1U << 13)
#endif
enum {
    LOOM_IORING_OP_READ_MULTISHOT = 49,
    LOOM_IORING_OP_WAITID = 50,
    LOOM_IORING_OP_FUTEX_WAIT = 51,
    LOOM_IORING_OP_FUTEX_WAKE = 52,
    LOOM_IORING_OP_FUTEX_WAITV = 53,
    LOOM_IORING_OP_FIXED_FD_INSTALL = 54,
    LOOM_IORING_OP_FTRUNCATE = 55,
    LOOM_IORING_OP_BIND = 56,
    LOOM_IORING_OP_LISTEN = 57,
    LOOM_IORING_OP_RECV_ZC = 58,
    LOOM_IORING_OP_EPOLL_WAIT = 59,
    LOOM_IORING_OP_READV_FIXED = 60,
    LOOM_IORING_OP_WRITEV_FIXED = 61,
    LOOM_IORING_OP_PIPE = 62,
};

struct loom__uring {
    struct io_uring ring;
    unsigned setup_flags;
    bool msg_ring;      /* IORING_OP_MSG_RING usable for core wake-ups */
    bool registered_fd; /* ring fd registered: io_uring_enter skips the fd lookup */
    bool ftruncate_op;  /* IORING_OP_FTRUNCATE (6.9+) */
    bool eventfd_armed;
    uint64_t eventfd_value;
    struct signalfd_siginfo siginfo;
    bool signal_armed;
    unsigned sq_room; /* SQEs known free without reading the kernel's head again */
};

/* io_uring_get_sqe() without re-reading the kernel's SQ head on every call: the head is read
 * only when the room counted at the last read is used up. Every SQE of a reactor's ring comes
 * from here, so the count stays exact (never more than the real room). No SQPOLL, no SQE128. */
static inline struct io_uring_sqe *sqe_get(struct loom__uring *u)
{
    struct io_uring_sq *sq = &u->ring.sq;
    if (LOOM_UNLIKELY(u->sq_room == 0)) {
        unsigned head = IO_URING_READ_ONCE(*sq->khead);
        u->sq_room = sq->ring_entries - (sq->sqe_tail - head);
        if (u->sq_room == 0)
            return NULL;
    }
    u->sq_room--;
    return &sq->sqes[sq->sqe_tail++ & sq->ring_mask];
}

bool loom__feature_enabled(const char *name)
{
    const char *list = getenv("LOOM_DISABLE");
    if (!list || !*list)
        return true;
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if ((len == n && strncmp(p, name, n) == 0) || (len == 3 && strncmp(p, "all", 3) == 0))
            return false;
        p += len + (end ? 1 : 0);
    }
    return true;
}

static void explain_setup_error(int err)
{
    if (err == -EPERM || err == -EACCES) {
        FILE *f = fopen("/proc/sys/kernel/io_uring_disabled", "r");
        int disabled = -1;
        if (f) {
            if (fscanf(f, "%d", &disabled) != 1)
                disabled = -1;
            fclose(f);
        }
        loom__log("error",
                  "io_uring_setup: %s: io_uring is not permitted here "
                  "(sysctl kernel.io_uring_disabled = %d; a seccomp filter, e.g. a container's "
                  "default profile, can also block it)",
                  strerror(-err), disabled);
    } else if (err == -ENOMEM) {
        loom__log("error",
                  "io_uring_setup: %s: not enough lockable memory for the ring "
                  "(RLIMIT_MEMLOCK, ulimit -l)",
                  strerror(-err));
    } else if (err == -ENOSYS) {
        loom__log("error", "io_uring_setup: %s: this kernel has no io_uring (loom needs 6.1+)",
                  strerror(-err));
    } else {
        loom__log("error", "io_uring_setup: %s", strerror(-err));
    }
}

static int setup_ring(struct loom__uring *u, unsigned entries)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP;
    p.cq_entries = entries * 4;
    if (loom__feature_enabled("single_issuer"))
        p.flags |= IORING_SETUP_SINGLE_ISSUER;
    if ((p.flags & IORING_SETUP_SINGLE_ISSUER) && loom__feature_enabled("defer_taskrun"))
        p.flags |= IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
    else
        p.flags |= IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
    int rc = io_uring_queue_init_params(entries, &u->ring, &p);
    if (rc == -EINVAL) {
        /* an older kernel: drop the optional flags and try again */
        memset(&p, 0, sizeof(p));
        rc = io_uring_queue_init_params(entries, &u->ring, &p);
    }
    if (rc < 0) {
        explain_setup_error(rc);
        return rc;
    }
    u->setup_flags = p.flags;
    return 0;
}

static void arm_eventfd(struct loom__reactor *r)
{
    struct loom__uring *u = r->uring;
    struct io_uring_sqe *sqe = sqe_get(u);
    LOOM_ASSERT(sqe != NULL); /* called right after a submit or at init: room in the SQ */
    io_uring_prep_read(sqe, r->wake_fd, &u->eventfd_value, sizeof(u->eventfd_value), 0);
    io_uring_sqe_set_data64(sqe, LOOM_UD_EVENTFD);
    u->eventfd_armed = true;
    r->sqes_pending++;
}

static void arm_signalfd(struct loom__reactor *r)
{
    struct loom__uring *u = r->uring;
    struct io_uring_sqe *sqe = sqe_get(u);
    LOOM_ASSERT(sqe != NULL);
    io_uring_prep_read(sqe, loom__rt.signal_fd, &u->siginfo, sizeof(u->siginfo), 0);
    io_uring_sqe_set_data64(sqe, LOOM_UD_SIGNAL);
    u->signal_armed = true;
    r->sqes_pending++;
}

int loom__uring_init(struct loom__reactor *r)
{
    struct loom__uring *u = loom__arena_carve(r, sizeof(*u), LOOM_CACHELINE);
    if (!u)
        return -ENOMEM;
    memset(u, 0, sizeof(*u));
    r->uring = u;
    int rc = setup_ring(u, loom__rt.config.ring_entries);
    if (rc < 0)
        return rc;
    if (loom__feature_enabled("register_ring_fd") && io_uring_register_ring_fd(&u->ring) == 1)
        u->registered_fd = true;
    struct io_uring_probe *probe = io_uring_get_probe_ring(&u->ring);
    if (probe) {
        u->msg_ring = io_uring_opcode_supported(probe, IORING_OP_MSG_RING) &&
                      loom__feature_enabled("msg_ring");
        u->ftruncate_op = io_uring_opcode_supported(probe, LOOM_IORING_OP_FTRUNCATE) &&
                          loom__feature_enabled("ftruncate_op");
        io_uring_free_probe(probe);
    }
    r->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (r->wake_fd < 0) {
        loom__log("error", "eventfd: %s", strerror(errno));
        return -errno;
    }
    arm_eventfd(r);
    if (r->core == 0 && loom__rt.signal_fd >= 0)
        arm_signalfd(r);
    return 0;
}

void loom__uring_deinit(struct loom__reactor *r)
{
    struct loom__uring *u = r->uring;
    if (!u)
        return;
    if (u->ring.ring_fd > 0)
        io_uring_queue_exit(&u->ring);
    if (r->wake_fd >= 0)
        close(r->wake_fd);
    r->wake_fd = -1;
    r->uring = NULL;
}

/* struct loom__sqe must be the kernel's SQE, field for field. */
#define SQE_SAME(field, ours)                                                                      \
    _Static_assert(offsetof(struct io_uring_sqe, field) == offsetof(struct loom__sqe, ours) &&     \
                       sizeof(((struct io_uring_sqe *)0)->field) ==                                \
                           sizeof(((struct loom__sqe *)0)->ours),                                  \
                   "struct loom__sqe." #ours " is io_uring_sqe." #field)
SQE_SAME(opcode, opcode);
SQE_SAME(flags, flags);
SQE_SAME(ioprio, ioprio);
SQE_SAME(fd, fd);
SQE_SAME(off, off);
SQE_SAME(addr, addr);
SQE_SAME(len, len);
SQE_SAME(rw_flags, op_flags);
SQE_SAME(user_data, user_data);
SQE_SAME(buf_index, buf_index);
SQE_SAME(personality, personality);
SQE_SAME(file_index, file_index);
SQE_SAME(addr3, addr3);
_Static_assert(sizeof(struct io_uring_sqe) == sizeof(struct loom__sqe), "SQE size");

bool loom__uring_prep(struct loom__reactor *r, struct loom_op *op)
{
    struct io_uring_sqe *sqe = sqe_get(r->uring);
    if (LOOM_UNLIKELY(!sqe))
        return false;
    /* the op carries its SQE image: one 64-byte copy, then the op as user_data */
    memcpy(sqe, op->sqe, sizeof(*sqe));
    sqe->user_data = (uint64_t)(uintptr_t)op;
    r->sqes_pending++;
    return true;
}

/* An op starts in three steps: op_begin() gives the SQE to prepare, the caller prepares it,
 * op_commit() hands the op on. The SQE is a free SQ slot when the op goes to the ring at once
 * (the overflow queue is empty and the SQ has room): prepared in place, with no image in the
 * op and no 64-byte copy. Otherwise it is the op's own image, which waits in the overflow
 * queue until flush_overflow() copies it into the SQ (loom__uring_prep()). Between the calls
 * no other SQE may be taken. Here rather than in reactor.c so that all of it inlines. */
static inline struct io_uring_sqe *op_begin(struct loom__reactor *r, struct loom_op *op)
{
    LOOM_ASSERTF(op->state == LOOM_OP_IDLE, "op %p started while in flight", (void *)op);
    LOOM_ASSERT(op->fn != NULL);
    r->ops_in_flight++;
    if (LOOM_LIKELY(r->overflow_head == NULL)) {
        struct io_uring_sqe *sqe = sqe_get(r->uring);
        if (LOOM_LIKELY(sqe != NULL))
            return sqe;
    }
    return (struct io_uring_sqe *)op->sqe;
}

static inline void op_commit(struct loom__reactor *r, struct loom_op *op, struct io_uring_sqe *sqe)
{
    if (LOOM_LIKELY(sqe != (struct io_uring_sqe *)op->sqe)) {
        sqe->user_data = (uint64_t)(uintptr_t)op;
        r->sqes_pending++;
        op->state = LOOM_OP_SUBMITTED;
        return;
    }
    /* The SQ is full (or others wait already: keep their order): queue it. */
    op->state = LOOM_OP_QUEUED;
    LOOM_FIFO_PUSH(r->overflow_head, r->overflow_tail, op);
    LOOM_STAT_INC(r, sqes_overflowed);
}

/* Starts `op` whose SQE image is prepared already (the network ops of net.c). */
void loom__op_start(struct loom__reactor *r, struct loom_op *op)
{
    struct io_uring_sqe *sqe = op_begin(r, op);
    if (sqe != (struct io_uring_sqe *)op->sqe)
        memcpy(sqe, op->sqe, sizeof(*sqe));
    op_commit(r, op, sqe);
}

/* ---- NOPs: the round trip through the ring with no device time ------------------------------ */

/* A NOP's SQE (what io_uring_prep_nop() writes: opcode IORING_OP_NOP, fd -1). */
static const struct loom__sqe nop_sqe = {.opcode = IORING_OP_NOP, .fd = -1};

/* Starts `op` as a NOP; the one place that knows a NOP's fields. The SQE is copied whole from
 * a constant (four 16-byte moves) rather than zeroed and patched (fd = -1). */
static inline void op_start_nop(struct loom__reactor *r, struct loom_op *op, loom_op_fn fn,
                                void *data)
{
    op->fn = fn;
    op->data = data;
    op->res = 0;
    op->cqe_flags = 0;
    struct io_uring_sqe *sqe = op_begin(r, op);
    memcpy(sqe, &nop_sqe, sizeof(nop_sqe));
    op_commit(r, op, sqe);
}

void loom_op_nop(struct loom_op *op, loom_op_fn fn, void *data)
{
    op_start_nop(loom__reactor(), op, fn, data);
}

static void nop_done(struct loom_op *op)
{
    loom__baton_post_local(loom__self, op->data);
}

/* The baton is born armed, the calling fiber its waiter: what loom_baton_init(),
 * loom__baton_wait_begin() and loom__baton_wait_arm() would make of it, without their misuse
 * checks, which hold by construction (nobody else knows the baton, so no post came first).
 * The wait is armed before the op starts; its completion cannot run before the loop reaps it. */
int loom_nop(void)
{
    struct loom__reactor *r = loom__reactor();
    LOOM_ASSERTF(r->current != NULL, "loom_nop() outside a fiber");
    struct loom_baton baton = {
        .waiter = r->current, .core = (uint16_t)r->core, .state = LOOM_BATON_WAITING};
    struct loom_op op;
    op.state = LOOM_OP_IDLE;
    op_start_nop(r, &op, nop_done, &baton);
    loom__fiber_block(r);
    /* Only the NOP's completion knew the baton, and posted it; the baton ends here with the
     * frame, so the end of its wait cycle (loom__baton_wait_result()) need not be written. */
    LOOM_ASSERT(baton.state == LOOM_BATON_WOKEN && op.state == LOOM_OP_IDLE);
    return op.res;
}

bool loom__uring_has_work(struct loom__reactor *r)
{
    struct io_uring *ring = &r->uring->ring;
    if (io_uring_cq_ready(ring) > 0)
        return true;
    unsigned flags = IO_URING_READ_ONCE(*ring->sq.kflags);
    return (flags & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW)) != 0;
}

static void handle_signal(struct loom__reactor *r)
{
    struct loom__uring *u = r->uring;
    VALGRIND_MAKE_MEM_DEFINED(&u->siginfo, sizeof(u->siginfo));
    int signo = (int)u->siginfo.ssi_signo;
    int seen = atomic_fetch_add(&loom__rt.signals_seen, 1);
    if (seen > 0) {
        /* the second signal: the operator insists; do not wait for the shutdown grace */
        loom__log("warning", "signal %d again: exiting now without an orderly shutdown", signo);
        _exit(128 + signo);
    }
    if (atomic_load(&loom__rt.shutdown_waiters) == 0) {
        /* no fiber waits to see it: shut down in order */
        loom__log("info", "signal %d: shutting down", signo);
        loom_exit(128 + signo);
        return;
    }
    loom__log("info", "signal %d: shutdown requested", signo);
    atomic_store(&loom__rt.shutdown_requested, 1);
    loom__notify_all_cores();
}

static void dispatch_internal(struct loom__reactor *r, uint64_t ud, int32_t res)
{
    struct loom__uring *u = r->uring;
    switch (ud) {
    case LOOM_UD_WAKE:
        LOOM_STAT_INC(r, wakeups_received);
        break;
    case LOOM_UD_EVENTFD:
        u->eventfd_armed = false;
        LOOM_STAT_INC(r, wakeups_received);
        break;
    case LOOM_UD_SIGNAL:
        u->signal_armed = false;
        if (res == (int32_t)sizeof(u->siginfo))
            handle_signal(r);
        break;
    case LOOM_UD_IGNORE:
        if (res < 0 && res != -ECANCELED && res != -ENOENT && res != -EALREADY)
            loom__log("warning", "internal io_uring request failed: %s", strerror(-res));
        break;
    default:
        LOOM_ASSERTF(false, "unknown internal CQE user_data %" PRIu64, ud);
    }
}

/* Returns 1 when the CQE was its op's last (the op is idle again), else 0. */
static unsigned dispatch(struct loom__reactor *r, uint64_t ud, int32_t res, uint32_t flags)
{
    if (ud < LOOM_UD_MAX) {
        dispatch_internal(r, ud, res);
        return 0;
    }
    struct loom_op *op = (struct loom_op *)(uintptr_t)ud;
    op->res = res;
    op->cqe_flags = flags;
    unsigned last = 0;
    if (!(flags & IORING_CQE_F_MORE)) {
        op->state = LOOM_OP_IDLE;
        last = 1;
    }
    op->fn(op);
    return last;
}

/* Reaps every CQE, running each callback as it is read; the slots are released at the end.
 * Safe because callbacks never enter the kernel with GETEVENTS (they may prepare SQEs, and
 * loom_op_cancel may submit without GETEVENTS), so the CQ tail only grows meanwhile and the
 * outer loop picks up what arrived. The kernel's tail is read (acquire) once per batch, not
 * once per CQE as io_uring_for_each_cqe() does. The ring has no CQE32 (16-byte CQEs). */
static int reap(struct loom__reactor *r)
{
    struct io_uring *ring = &r->uring->ring;
    LOOM_DEBUG_ASSERT(!(ring->flags & IORING_SETUP_CQE32));
    const unsigned mask = ring->cq.ring_mask;
    struct io_uring_cqe *cqes = ring->cq.cqes;
    unsigned head = *ring->cq.khead, start = head, ended = 0;
    for (;;) {
        unsigned tail = io_uring_smp_load_acquire(ring->cq.ktail);
        if (head == tail)
            break;
        for (; head != tail; head++) {
            const struct io_uring_cqe *cqe = &cqes[head & mask];
            ended += dispatch(r, cqe->user_data, cqe->res, cqe->flags);
        }
    }
    /* the ops that ended leave the count once per batch (nothing reads it from a callback) */
    LOOM_ASSERT(r->ops_in_flight >= ended);
    r->ops_in_flight -= ended;
    unsigned n = head - start;
    if (n) {
        io_uring_cq_advance(ring, n);
        LOOM_STAT_ADD(r, cqes_reaped, n);
    }
    if (r->net_notify_pending)
        loom__net_flush(r);
    return (int)n;
}

int loom__uring_enter(struct loom__reactor *r, int64_t timeout_ns)
{
    struct loom__uring *u = r->uring;
    if (!u->eventfd_armed)
        arm_eventfd(r);
    if (r->core == 0 && !u->signal_armed && loom__rt.signal_fd >= 0)
        arm_signalfd(r);
    unsigned pending = r->sqes_pending;
    int rc;
    if (timeout_ns == 0) {
        rc = io_uring_submit_and_get_events(&u->ring);
    } else {
        struct io_uring_cqe *cqe = NULL;
        struct __kernel_timespec ts = {.tv_sec = timeout_ns / LOOM_NS_PER_S,
                                       .tv_nsec = timeout_ns % LOOM_NS_PER_S};
        rc = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, timeout_ns > 0 ? &ts : NULL, NULL);
    }
    LOOM_STAT_INC(r, syscalls);
    if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
        loom__log("warning", "io_uring_enter: %s", strerror(-rc));
    /* SUBMIT_ALL: everything prepared was consumed unless the enter failed outright */
    if (io_uring_sq_ready(&u->ring) == 0) {
        LOOM_STAT_ADD(r, sqes_submitted, pending);
        r->sqes_pending = 0;
    }
    return reap(r);
}

void loom__uring_wake(struct loom__reactor *r, unsigned target)
{
    struct loom__reactor *t = loom__rt.reactors[target];
    LOOM_STAT_INC(r, wakeups_sent);
    if (r->uring->msg_ring) {
        struct io_uring_sqe *sqe = sqe_get(r->uring);
        if (sqe) {
            io_uring_prep_msg_ring(sqe, t->uring->ring.ring_fd, 0, LOOM_UD_WAKE, 0);
            io_uring_sqe_set_data64(sqe, LOOM_UD_IGNORE);
            sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
            r->sqes_pending++;
            return;
        }
    }
    loom__wake_any_thread(t);
    LOOM_STAT_INC(r, syscalls);
}

/* A wake-up from any thread (shutdown, signals, foreign threads): always the eventfd. */
void loom__wake_any_thread(struct loom__reactor *t)
{
    uint64_t one = 1;
    ssize_t n = write(t->wake_fd, &one, sizeof(one));
    (void)n; /* EAGAIN: the counter is saturated, so a wake-up is pending anyway */
}

int loom__uring_probe_report(char *buffer, size_t size)
{
    struct loom__reactor *r = loom__reactor();
    struct loom__uring *u = r->uring;
    return snprintf(buffer, size,
                    "single_issuer=%d defer_taskrun=%d registered_ring_fd=%d msg_ring=%d",
                    !!(u->setup_flags & IORING_SETUP_SINGLE_ISSUER),
                    !!(u->setup_flags & IORING_SETUP_DEFER_TASKRUN), u->registered_fd, u->msg_ring);
}

int loom_op_cancel(struct loom_op *op)
{
    struct loom__reactor *r = loom__reactor();
    if (op->state == LOOM_OP_IDLE)
        return -ENOENT;
    if (op->state == LOOM_OP_QUEUED) {
        /* still in the overflow queue: never reached the kernel; complete it from the loop */
        return loom__op_cancel_queued(r, op);
    }
    struct io_uring_sqe *sqe = sqe_get(r->uring);
    if (!sqe) {
        /* submit only (no GETEVENTS): completions must not run inline from here */
        int rc = io_uring_submit(&r->uring->ring);
        LOOM_STAT_INC(r, syscalls);
        if (rc > 0) {
            LOOM_STAT_ADD(r, sqes_submitted, (uint64_t)rc);
            r->sqes_pending -= (uint32_t)rc < r->sqes_pending ? (uint32_t)rc : r->sqes_pending;
        }
        sqe = sqe_get(r->uring);
        LOOM_ASSERT(sqe != NULL);
    }
    io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)op, 0);
    io_uring_sqe_set_data64(sqe, LOOM_UD_IGNORE);
    r->sqes_pending++;
    return 0;
}

/* ---- file requests: the io_uring backend ---------------------------------------------------- */

/* Writes the SQE for `req` into `sqe` (a ring slot or an op's SQE image). */
static void prep_req(struct io_uring_sqe *sqe, const struct loom_io_req *req)
{
    switch ((enum loom_io_kind)req->kind) {
    case LOOM_IO_NOP:
        io_uring_prep_nop(sqe);
        break;
    case LOOM_IO_OPENAT:
        io_uring_prep_openat(sqe, req->fd, req->addr, (int)req->flags, req->mode);
        break;
    case LOOM_IO_CLOSE:
        io_uring_prep_close(sqe, req->fd);
        break;
    case LOOM_IO_READ:
        io_uring_prep_read(sqe, req->fd, req->addr, req->len, req->offset);
        sqe->rw_flags = (int)req->flags;
        break;
    case LOOM_IO_WRITE:
        io_uring_prep_write(sqe, req->fd, req->addr, req->len, req->offset);
        sqe->rw_flags = (int)req->flags;
        break;
    case LOOM_IO_READV:
        io_uring_prep_readv2(sqe, req->fd, req->addr, req->len, req->offset, (int)req->flags);
        break;
    case LOOM_IO_WRITEV:
        io_uring_prep_writev2(sqe, req->fd, req->addr, req->len, req->offset, (int)req->flags);
        break;
    case LOOM_IO_READ_FIXED:
        io_uring_prep_read_fixed(sqe, req->fd, req->addr, req->len, req->offset, req->buf_index);
        break;
    case LOOM_IO_WRITE_FIXED:
        io_uring_prep_write_fixed(sqe, req->fd, req->addr, req->len, req->offset, req->buf_index);
        break;
    case LOOM_IO_FSYNC:
        io_uring_prep_fsync(sqe, req->fd,
                            (req->flags & LOOM_FSYNC_DATA) ? IORING_FSYNC_DATASYNC : 0);
        break;
    case LOOM_IO_FALLOCATE:
        io_uring_prep_fallocate(sqe, req->fd, (int)req->mode, (off_t)req->offset,
                                (off_t)req->length);
        break;
    case LOOM_IO_FTRUNCATE:
        io_uring_prep_rw(LOOM_IORING_OP_FTRUNCATE, sqe, req->fd, NULL, 0, req->length);
        break;
    case LOOM_IO_STATX:
        io_uring_prep_statx(sqe, req->fd, req->addr, (int)req->flags, req->mode, req->addr2);
        break;
    case LOOM_IO_RENAMEAT:
        io_uring_prep_renameat(sqe, req->fd, req->addr, req->fd2, req->addr2, req->flags);
        break;
    case LOOM_IO_UNLINKAT:
        io_uring_prep_unlinkat(sqe, req->fd, req->addr, (int)req->flags);
        break;
    case LOOM_IO_MKDIRAT:
        io_uring_prep_mkdirat(sqe, req->fd, req->addr, req->mode);
        break;
    default:
        LOOM_ASSERTF(false, "unknown file request kind %u", req->kind);
    }
}

void loom__uring_req_start(struct loom__reactor *r, struct loom_io_req *req)
{
    if (LOOM_UNLIKELY(req->kind == LOOM_IO_FTRUNCATE && !r->uring->ftruncate_op)) {
        /* kernels before 6.9 have no IORING_OP_FTRUNCATE: the syscall, completed from the loop */
        int rc = ftruncate(req->fd, (off_t)req->length);
        LOOM_STAT_INC(r, syscalls);
        loom_io_complete(req, rc < 0 ? -errno : 0);
        return;
    }
    struct io_uring_sqe *sqe = op_begin(r, &req->op);
    prep_req(sqe, req);
    op_commit(r, &req->op, sqe);
}

/* ---- registered buffers --------------------------------------------------------------------- */

int loom__uring_register_buffer(struct loom__reactor *r, void *base, size_t bytes)
{
    struct iovec iov = {.iov_base = base, .iov_len = bytes};
    int rc = io_uring_register_buffers(&r->uring->ring, &iov, 1);
    LOOM_STAT_INC(r, syscalls);
    return rc;
}

/* ---- raw rings: one per IO pool thread (iopool.c) -------------------------------------------- */

struct loom__raw_ring {
    struct io_uring ring;
};

int loom__raw_ring_create(unsigned entries, struct loom__raw_ring **out)
{
    struct loom__raw_ring *rr = calloc(1, sizeof(*rr));
    if (!rr)
        return -ENOMEM;
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP;
    p.cq_entries = entries * 2;
    if (loom__feature_enabled("single_issuer"))
        p.flags |= IORING_SETUP_SINGLE_ISSUER;
    if ((p.flags & IORING_SETUP_SINGLE_ISSUER) && loom__feature_enabled("defer_taskrun"))
        p.flags |= IORING_SETUP_DEFER_TASKRUN;
    int rc = io_uring_queue_init_params(entries, &rr->ring, &p);
    if (rc == -EINVAL) {
        memset(&p, 0, sizeof(p));
        rc = io_uring_queue_init_params(entries, &rr->ring, &p);
    }
    if (rc < 0) {
        explain_setup_error(rc);
        free(rr);
        return rc;
    }
    if (loom__feature_enabled("register_ring_fd"))
        (void)io_uring_register_ring_fd(&rr->ring);
    *out = rr;
    return 0;
}

void loom__raw_ring_destroy(struct loom__raw_ring *rr)
{
    if (!rr)
        return;
    io_uring_queue_exit(&rr->ring);
    free(rr);
}

bool loom__raw_ring_push(struct loom__raw_ring *rr, const struct loom_io_req *req,
                         uint64_t user_data)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&rr->ring);
    if (!sqe)
        return false;
    prep_req(sqe, req); /* FTRUNCATE on a kernel without it completes with -EINVAL */
    io_uring_sqe_set_data64(sqe, user_data);
    return true;
}

unsigned loom__raw_ring_space(struct loom__raw_ring *rr)
{
    return io_uring_sq_space_left(&rr->ring);
}

int loom__raw_ring_enter(struct loom__raw_ring *rr, unsigned wait_nr, int64_t timeout_ns)
{
    if (wait_nr == 0)
        return io_uring_submit_and_get_events(&rr->ring);
    struct io_uring_cqe *cqe = NULL;
    struct __kernel_timespec ts = {.tv_sec = timeout_ns / LOOM_NS_PER_S,
                                   .tv_nsec = timeout_ns % LOOM_NS_PER_S};
    int rc = io_uring_submit_and_wait_timeout(&rr->ring, &cqe, wait_nr,
                                              timeout_ns >= 0 ? &ts : NULL, NULL);
    return rc == -ETIME ? 0 : rc;
}

unsigned loom__raw_ring_reap(struct loom__raw_ring *rr, struct loom__raw_cqe *out, unsigned max)
{
    unsigned head, n = 0;
    struct io_uring_cqe *cqe;
    io_uring_for_each_cqe(&rr->ring, head, cqe)
    {
        if (n == max)
            break;
        out[n].user_data = cqe->user_data;
        out[n].res = cqe->res;
        out[n].flags = cqe->flags;
        n++;
    }
    io_uring_cq_advance(&rr->ring, n);
    return n;
}

/* ---- network ops and the provided-buffer ring ----------------------------------------------- */

#ifndef IORING_SEND_ZC_REPORT_USAGE
#define IORING_SEND_ZC_REPORT_USAGE (1U << 3)
#endif
#ifndef IORING_NOTIF_USAGE_ZC_COPIED
#define IORING_NOTIF_USAGE_ZC_COPIED (1U << 31)
#endif

static struct io_uring_sqe *op_sqe(struct loom_op *op)
{
    return (struct io_uring_sqe *)op->sqe;
}

void loom__prep_accept_multishot(struct loom_op *op, int fd)
{
    io_uring_prep_multishot_accept(op_sqe(op), fd, NULL, NULL, SOCK_CLOEXEC);
}

void loom__prep_recv_multishot(struct loom_op *op, int fd, uint16_t group)
{
    struct io_uring_sqe *sqe = op_sqe(op);
    io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = group;
}

void loom__prep_recv(struct loom_op *op, int fd, void *buf, size_t len, int flags)
{
    io_uring_prep_recv(op_sqe(op), fd, buf, len, flags);
}

void loom__prep_send(struct loom_op *op, int fd, const void *buf, size_t len, int flags)
{
    io_uring_prep_send(op_sqe(op), fd, buf, len, flags);
}

void loom__prep_send_zc(struct loom_op *op, int fd, const void *buf, size_t len, int flags)
{
    struct io_uring_sqe *sqe = op_sqe(op);
    io_uring_prep_send_zc(sqe, fd, buf, len, flags, 0);
    sqe->ioprio |= IORING_SEND_ZC_REPORT_USAGE;
}

bool loom__cqe_is_notif(uint32_t cqe_flags)
{
    return (cqe_flags & IORING_CQE_F_NOTIF) != 0;
}

bool loom__cqe_more(uint32_t cqe_flags)
{
    return (cqe_flags & IORING_CQE_F_MORE) != 0;
}

bool loom__notif_copied(int32_t res)
{
    return ((uint32_t)res & IORING_NOTIF_USAGE_ZC_COPIED) != 0;
}

/* The provided-buffer id of a CQE, or -1 when it carries none. */
int loom__cqe_buffer(uint32_t cqe_flags)
{
    if (!(cqe_flags & IORING_CQE_F_BUFFER))
        return -1;
    return (int)(cqe_flags >> IORING_CQE_BUFFER_SHIFT);
}

void loom__prep_sendmsg(struct loom_op *op, int fd, const struct msghdr *msg, int flags)
{
    io_uring_prep_sendmsg(op_sqe(op), fd, msg, (unsigned)flags);
}

void loom__prep_connect(struct loom_op *op, int fd, const struct sockaddr *addr, socklen_t len)
{
    io_uring_prep_connect(op_sqe(op), fd, addr, len);
}

void loom__prep_shutdown(struct loom_op *op, int fd, int how)
{
    io_uring_prep_shutdown(op_sqe(op), fd, how);
}

void loom__prep_close(struct loom_op *op, int fd)
{
    io_uring_prep_close(op_sqe(op), fd);
}

struct loom__bufring {
    struct io_uring_buf_ring *ring;
    unsigned entries, mask;
    uint16_t group;
    uint16_t added; /* buffers added since the last publish */
};

int loom__bufring_create(struct loom__reactor *r, uint16_t group, unsigned entries,
                         struct loom__bufring **out)
{
    LOOM_ASSERT(entries >= 1 && entries <= 32768 && (entries & (entries - 1)) == 0);
    struct loom__bufring *br = loom__arena_carve(r, sizeof(*br), LOOM_CACHELINE);
    if (!br)
        return -ENOMEM;
    memset(br, 0, sizeof(*br));
    size_t bytes = (size_t)entries * sizeof(struct io_uring_buf);
    br->ring = loom__arena_carve(r, bytes, 4096);
    if (!br->ring)
        return -ENOMEM;
    memset(br->ring, 0, bytes);
    io_uring_buf_ring_init(br->ring);
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (uint64_t)(uintptr_t)br->ring;
    reg.ring_entries = entries;
    reg.bgid = group;
    int rc = io_uring_register_buf_ring(&r->uring->ring, &reg, 0);
    LOOM_STAT_INC(r, syscalls);
    if (rc < 0)
        return rc;
    br->entries = entries;
    br->mask = entries - 1;
    br->group = group;
    *out = br;
    return 0;
}

/* Queues buffer `bid` for the kernel; visible after loom__bufring_publish(). */
void loom__bufring_add(struct loom__bufring *br, void *addr, uint32_t len, uint16_t bid)
{
    io_uring_buf_ring_add(br->ring, addr, len, bid, (int)br->mask, br->added);
    br->added++;
}

void loom__bufring_publish(struct loom__bufring *br)
{
    if (br->added) {
        io_uring_buf_ring_advance(br->ring, br->added);
        br->added = 0;
    }
}
