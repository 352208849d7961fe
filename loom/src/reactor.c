/* SPDX-License-Identifier: MIT
 * reactor.c - the per-core loop: fibers, completions, cross-core messages, timers, io_uring.
 *
 * One iteration: fire due timers (reading the clock only if a timer is armed; otherwise it is
 * read at its first use, see loom__now()), run ready fibers (up to the task quota), run
 * completions made without the kernel, drain inbound rings, publish outbound rings (waking
 * sleeping cores), move overflowed ops into the SQ, then submit and reap in one
 * io_uring_enter when there is anything to submit or reap. When idle: spin for --poll-us
 * watching the rings, the CQ and IORING_SQ_TASKRUN, then sleep in io_uring_enter until the
 * next timer or a wake-up.
 * Invariant: op callbacks, message handlers and timer callbacks run only from here.
 */
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

struct loom__runtime loom__rt = {.signal_fd = -1};
/* initial-exec: one mov from %fs, also in libloom.so (general-dynamic would call
 * __tls_get_addr on every access from the shared library) */
__thread struct loom__reactor *loom__self __attribute__((tls_model("initial-exec")));

struct loom__shutdown_wait {
    struct loom__shutdown_wait *next;
    struct loom_baton baton;
};

/* ---- creation ------------------------------------------------------------------------------- */

int loom__reactor_create(unsigned core, struct loom__reactor **out)
{
    struct loom__reactor *r = NULL;
    if (posix_memalign((void **)&r, LOOM_CACHELINE, sizeof(*r)) != 0)
        return -ENOMEM;
    memset(r, 0, sizeof(*r));
    r->core = core;
    r->cpu = loom__rt.cpus[core];
    r->numa_node = loom__rt.numa_nodes[core];
    r->thread = pthread_self();
    r->tid = (pid_t)syscall(SYS_gettid);
    r->wake_fd = -1;
    r->quota_ns = loom__rt.config.task_quota_ns;
    loom__self = r;
    loom__rt.reactors[core] = r;
    *out = r;
    int rc = loom__mem_core_init(r);
    if (rc < 0)
        return rc;
    r->now_ns = loom__clock_ns();
    loom__wheel_init(&r->wheel, r->now_ns);
    rc = loom__uring_init(r);
    if (rc < 0)
        return rc;
    rc = loom__io_core_init(r);
    if (rc < 0)
        return rc;
    rc = loom__net_core_init(r);
    if (rc < 0)
        return rc;
    loom__fiber_core_init(r);
    loom__stall_thread_init();
    return 0;
}

void loom__reactor_destroy(struct loom__reactor *r)
{
    if (!r)
        return;
    loom__fiber_core_deinit(r);
    loom__net_core_deinit(r);
    loom__io_core_deinit(r);
    loom__uring_deinit(r);
    if (loom__rt.reactors[r->core] == r)
        loom__rt.reactors[r->core] = NULL;
    if (loom__self == r)
        loom__self = NULL;
    free(r);
}

/* ---- ops ------------------------------------------------------------------------------------ */

static void flush_overflow(struct loom__reactor *r)
{
    while (r->overflow_head) {
        struct loom_op *op = r->overflow_head;
        if (!loom__uring_prep(r, op))
            return; /* still full: the next enter makes room */
        r->overflow_head = op->next;
        if (!r->overflow_head)
            r->overflow_tail = NULL;
        op->next = NULL;
        op->state = LOOM_OP_SUBMITTED;
    }
}

int loom__op_cancel_queued(struct loom__reactor *r, struct loom_op *op)
{
    struct loom_op **link = &r->overflow_head, *prev = NULL;
    while (*link && *link != op) {
        prev = *link;
        link = &(*link)->next;
    }
    LOOM_ASSERTF(*link == op, "op %p marked queued but not in the overflow queue", (void *)op);
    *link = op->next;
    if (r->overflow_tail == op)
        r->overflow_tail = prev;
    op->next = NULL;
    op->res = -ECANCELED;
    op->cqe_flags = 0;
    op->state = LOOM_OP_IDLE;
    LOOM_ASSERT(r->ops_in_flight > 0);
    r->ops_in_flight--;
    LOOM_FIFO_PUSH(r->done_head, r->done_tail, op);
    return 0;
}

static void run_done(struct loom__reactor *r)
{
    struct loom_op *op = r->done_head;
    r->done_head = r->done_tail = NULL;
    while (op) {
        struct loom_op *next = op->next;
        op->next = NULL;
        op->fn(op);
        op = next;
    }
}

/* ---- shutdown ------------------------------------------------------------------------------- */

void loom__notify_all_cores(void)
{
    for (unsigned i = 0; i < loom__rt.cores; i++) {
        struct loom__reactor *t = loom__rt.reactors[i];
        if (t && t->wake_fd >= 0)
            loom__wake_any_thread(t);
    }
}

void loom_exit(int code)
{
    int expected = 0;
    if (!atomic_compare_exchange_strong(&loom__rt.exit_claimed, &expected, 1))
        return;
    atomic_store(&loom__rt.exit_code, code);
    atomic_store(&loom__rt.stopping, 1);
    loom__notify_all_cores();
}

bool loom_stopping(void)
{
    return atomic_load_explicit(&loom__rt.stopping, memory_order_acquire) != 0;
}

bool loom_shutdown_requested(void)
{
    return atomic_load(&loom__rt.shutdown_requested) != 0 || loom_stopping();
}

int loom_wait_shutdown(int64_t deadline_ns)
{
    struct loom__reactor *r = loom__reactor();
    if (loom_shutdown_requested())
        return 0;
    struct loom__shutdown_wait wait = {.next = r->shutdown_head};
    loom_baton_init(&wait.baton);
    r->shutdown_head = &wait;
    atomic_fetch_add(&loom__rt.shutdown_waiters, 1);
    int rc = loom_baton_wait(&wait.baton, deadline_ns);
    atomic_fetch_sub(&loom__rt.shutdown_waiters, 1);
    if (rc < 0) {
        for (struct loom__shutdown_wait **p = &r->shutdown_head; *p; p = &(*p)->next) {
            if (*p == &wait) {
                *p = wait.next;
                break;
            }
        }
    }
    loom_baton_deinit(&wait.baton);
    return rc;
}

/* Returns true when this core's loop should end. */
static bool check_stop(struct loom__reactor *r)
{
    if (r->shutdown_head && loom_shutdown_requested()) {
        struct loom__shutdown_wait *w = r->shutdown_head;
        r->shutdown_head = NULL;
        while (w) {
            struct loom__shutdown_wait *next = w->next;
            loom__baton_post_local(r, &w->baton);
            w = next;
        }
    }
    if (!loom_stopping())
        return false;
    if (r->stop_deadline_ns == 0)
        r->stop_deadline_ns = loom__now(r) + loom__rt.config.shutdown_grace_ns;
    if (r->fibers_live == 0 && r->ops_in_flight == 0)
        return true;
    if (loom__now(r) >= r->stop_deadline_ns) {
        loom__log("warning",
                  "shutdown grace of %" PRId64 " ms passed with %" PRIu64
                  " fiber(s) and %u op(s) still running",
                  (int64_t)(loom__rt.config.shutdown_grace_ns / LOOM_NS_PER_MS), r->fibers_live,
                  r->ops_in_flight);
        return true;
    }
    return false;
}

/* ---- the loop ------------------------------------------------------------------------------- */

static bool has_runnable(struct loom__reactor *r)
{
    return r->ready_head || r->done_head || loom__smp_has_inbound(r);
}

static void fire_timers(struct loom__reactor *r)
{
    uint64_t fired = loom__wheel_advance(&r->wheel, loom__now(r));
    if (fired)
        LOOM_STAT_ADD(r, timers_fired, fired);
}

static inline void cpu_relax(void)
{
    __builtin_ia32_pause();
}

/* Spins up to --poll-us for work; returns true when some arrived. */
static bool spin(struct loom__reactor *r, int64_t next_timer_ns)
{
    int64_t poll_ns = loom__rt.config.poll_ns;
    if (poll_ns <= 0)
        return false;
    int64_t end = loom__clock_ns() + poll_ns;
    for (;;) {
        for (int i = 0; i < 32; i++) {
            if (loom__smp_has_inbound(r) || loom__uring_has_work(r))
                return true;
            cpu_relax();
        }
        int64_t now = loom__clock_ns();
        if (now >= next_timer_ns || loom_stopping())
            return true;
        if (now >= end)
            return false;
    }
}

static void idle(struct loom__reactor *r)
{
    int64_t next = loom__wheel_next_ns(&r->wheel);
    if (r->stop_deadline_ns && r->stop_deadline_ns < next)
        next = r->stop_deadline_ns;
    if (next <= loom__clock_read(r))
        return;
    if (spin(r, next)) {
        if (r->sqes_pending || loom__uring_has_work(r))
            loom__uring_enter(r, 0);
        return;
    }
    /* Announce the sleep, then look once more: a core that published a message before
     * seeing `sleeping` is caught here; one that publishes after sees it and wakes us. */
    atomic_store_explicit(&r->sleeping, 1, memory_order_seq_cst);
    if (has_runnable(r) || loom__uring_has_work(r) || r->sqes_pending ||
        loom__smp_parked_can_move(r) || (loom_stopping() && r->stop_deadline_ns == 0) ||
        (r->shutdown_head && loom_shutdown_requested())) {
        atomic_store_explicit(&r->sleeping, 0, memory_order_relaxed);
        loom__uring_enter(r, 0);
        return;
    }
    int64_t timeout = -1;
    if (next != LOOM_NO_DEADLINE) {
        timeout = next - loom__clock_ns();
        if (timeout < 1000)
            timeout = 1000;
    }
    /* valgrind serialises threads and does not release its lock while a thread sleeps in
     * io_uring_enter: there, poll without waiting and hand the lock on with sched_yield() */
    if (LOOM_UNLIKELY(loom__rt.under_valgrind)) {
        atomic_store_explicit(&r->sleeping, 0, memory_order_relaxed);
        loom__uring_enter(r, 0);
        sched_yield();
        return;
    }
    LOOM_STAT_INC(r, sleeps);
    loom__uring_enter(r, timeout);
    atomic_store_explicit(&r->sleeping, 0, memory_order_relaxed);
}

void loom__reactor_run(struct loom__reactor *r)
{
    LOOM_ASSERT(loom__self == r && r->current == NULL);
    for (;;) {
        /* The iteration's clock is read when first needed (loom__now()). Armed timers need
         * it at once: they fire against it here, so the fibers they wake run in this pass.
         * With none armed an iteration may make no clock read at all; the pass's task quota
         * then counts from the last time read, which is earlier (the pass ends no later). */
        r->now_stale = true;
        LOOM_STAT_INC(r, loop_iterations);
        if (r->wheel.armed)
            fire_timers(r);
        loom__fiber_run_ready(r);
        if (r->done_head)
            run_done(r);
        if (LOOM_UNLIKELY(r->net_notify_pending)) /* news from completions run_done() ran */
            loom__net_flush(r);
        loom__smp_drain(r);
        if (LOOM_UNLIKELY((r->shutdown_head || loom_stopping()) && check_stop(r)))
            break;
        loom__smp_flush(r);
        if (r->overflow_head)
            flush_overflow(r);
        if (has_runnable(r) || r->overflow_head) {
            /* ops still queued for the SQ: the enter below makes room, then go round again */
            if (r->sqes_pending || loom__uring_has_work(r))
                loom__uring_enter(r, 0);
            continue;
        }
        if (r->sqes_pending || loom__uring_has_work(r)) {
            loom__uring_enter(r, 0);
            if (has_runnable(r))
                continue;
        }
        idle(r);
    }
    /* last words: publish what handlers sent during the final iteration */
    loom__smp_flush(r);
    if (r->sqes_pending)
        loom__uring_enter(r, 0);
    r->stopped = true;
}

/* ---- queries -------------------------------------------------------------------------------- */

unsigned loom_core_id(void)
{
    return loom__reactor()->core;
}

unsigned loom_core_count(void)
{
    return loom__rt.cores;
}

unsigned loom_core_cpu(unsigned core)
{
    LOOM_ASSERT(core < loom__rt.cores);
    return loom__rt.cpus[core];
}

bool loom_on_reactor(void)
{
    return loom__self != NULL;
}

int loom_stats_get(unsigned core, struct loom_stats *out)
{
    if (core >= loom__rt.cores || !loom__rt.reactors[core])
        return -EINVAL;
    const uint64_t *src = (const uint64_t *)&loom__rt.reactors[core]->stats;
    uint64_t *dst = (uint64_t *)out;
    static_assert(sizeof(struct loom_stats) % sizeof(uint64_t) == 0, "stats are u64s");
    for (size_t i = 0; i < sizeof(*out) / sizeof(uint64_t); i++)
        dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
    return 0;
}
