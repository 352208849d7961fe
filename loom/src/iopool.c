/* SPDX-License-Identifier: MIT
 * iopool.c - the IO thread pool for ordinary threads (iopool.h, docs/iopool.md).
 *
 * Invariants: a slot's `load` counts the requests pushed on its channel and not yet completed
 * (bumped by the submitter before the push, dropped after the completion), so a thread whose
 * load is 0 owns nothing and may retire by swapping 0 for the RETIRED bit; a submitter that
 * finds the bit backs off. Only the slot's thread touches its ring. Every accepted request
 * completes exactly once. Eventfds live as long as the pool, so a late wake-up write never
 * hits a closed (or reused) descriptor.
 */
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "loom/iopool.h"

#define THREADS_MAX        64
#define RETIRED            (INT64_C(1) << 62) /* load bit: the slot takes no requests */
#define WAKE_TAG           UINT64_C(1)        /* user_data of the eventfd read (reqs are aligned) */
#define WAIT_SPINS         200                /* loom_iopool_wait() polls before the futex */
#define COMPLETE_BATCH_MAX 4096
#define SUBMIT_BATCH_MAX   4096
#define RING_ENTRIES_MAX   32768

enum req_state { REQ_IDLE = 0, REQ_QUEUED, REQ_WAITED, REQ_DONE };
enum slot_state { SLOT_FREE = 0, SLOT_RUNNING, SLOT_EXITED };

struct slot {
    /* Written by submitters (one cache line). */
    _Alignas(64) struct loom_iopool_req *_Atomic head; /* the MPSC channel: a Treiber stack */
    _Atomic int64_t load;                              /* queued + in flight | RETIRED */
    _Atomic uint32_t entering;                         /* submits in progress on this slot */
    _Atomic uint32_t sleeping;                         /* 1: the thread may block, wake it */
    _Atomic uint64_t submitted;
    _Atomic uint64_t wakeups;
    /* Written by the IO thread, read by submitters and stats. */
    _Alignas(64) _Atomic int64_t inflight_seen; /* `inflight`, published after each batch */
    _Atomic uint64_t completed, cancelled, batches, enters, sleeps, futex_calls, shrinks;
    /* The IO thread's own. */
    _Alignas(64) struct loom_iopool *pool;
    struct loom__raw_ring *rr;
    struct loom__raw_cqe *cqes;        /* complete_batch entries */
    struct loom_iopool_req *fifo_head; /* taken from the channel, not yet in the SQ */
    struct loom_iopool_req *fifo_tail;
    uint32_t inflight;     /* requests in the kernel (the eventfd read excluded) */
    bool entered;          /* entered the kernel since the last reap */
    bool wake_armed;       /* the eventfd read is in the ring */
    int64_t idle_since_ns; /* 0: busy */
    uint64_t wake_value;   /* the eventfd read's buffer */
    struct loom_io_req wake_req;
    /* Lifecycle: the thread and its starter/joiner (pool->lock). */
    _Atomic int state; /* enum slot_state */
    _Atomic uint32_t stop;
    _Atomic uint32_t ready; /* futex: the thread finished starting */
    int start_rc;
    int efd;
    unsigned index;
    pthread_t tid;
};

struct loom_iopool {
    struct loom_iopool_config config;
    unsigned min_threads, max_threads;
    _Atomic uint32_t closing;  /* submit refuses */
    _Atomic unsigned threads;  /* running and not retiring */
    _Atomic unsigned slots_hi; /* slots [0, slots_hi) have been used */
    _Atomic uint64_t grows;
    pthread_mutex_t lock; /* starting and joining threads */
    bool shut;
    struct slot *slots;
};

/* ---- small helpers ---------------------------------------------------------------------- */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * LOOM_NS_PER_S + ts.tv_nsec;
}

static void futex_wait(uint32_t *word, uint32_t value)
{
    syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, value, NULL, NULL, 0);
}

static void futex_wake(uint32_t *word)
{
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* Adds 1 to a counter only its owner writes: no read-modify-write needed. */
static inline void count(_Atomic uint64_t *counter, uint64_t n)
{
    atomic_store_explicit(counter, atomic_load_explicit(counter, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static uint32_t req_state(const struct loom_iopool_req *req)
{
    return __atomic_load_n(&req->state, __ATOMIC_ACQUIRE);
}

void loom_iopool_config_default(struct loom_iopool_config *config)
{
    LOOM_ASSERT(config != NULL);
    *config = (struct loom_iopool_config){
        .submit_batch = 32,
        .poll_spins = 16,
        .complete_batch = 32,
        .ring_entries = 256,
        .grow_waiting = 16,
        .idle_timeout_ns = 2 * LOOM_NS_PER_S,
        .tick_ns = 100 * LOOM_NS_PER_MS,
    };
}

/* ---- the IO thread ---------------------------------------------------------------------- */

static void enter(struct slot *t, unsigned wait_nr, int64_t timeout_ns)
{
    int rc = loom__raw_ring_enter(t->rr, wait_nr, timeout_ns);
    count(&t->enters, 1);
    t->entered = true;
    /* -EINTR/-EAGAIN/-EBUSY are transient: what was not submitted stays in the SQ */
    LOOM_ASSERTF(rc >= 0 || rc == -EINTR || rc == -EAGAIN || rc == -EBUSY || rc == -ETIME,
                 "io_uring_enter on an IO pool ring: %s", strerror(-rc));
}

/* Keeps a read of the eventfd in the ring, so a thread blocked on completions also wakes for
 * new requests. Only pushed here; the next enter submits it. */
static void arm_wake(struct slot *t)
{
    LOOM_ASSERT(!t->wake_armed);
    t->wake_req = (struct loom_io_req){
        .kind = LOOM_IO_READ, .fd = t->efd, .addr = &t->wake_value, .len = sizeof(t->wake_value)};
    t->wake_armed = loom__raw_ring_push(t->rr, &t->wake_req, WAKE_TAG);
}

/* Moves the whole channel to the thread's FIFO: one exchange, then reversing the stack
 * restores the submission order. */
static bool take_channel(struct slot *t)
{
    if (!atomic_load_explicit(&t->head, memory_order_relaxed))
        return false;
    struct loom_iopool_req *stack = atomic_exchange_explicit(&t->head, NULL, memory_order_acquire);
    struct loom_iopool_req *first = NULL, *last = stack;
    while (stack) {
        struct loom_iopool_req *next = stack->next;
        stack->next = first;
        first = stack;
        stack = next;
    }
    if (t->fifo_tail)
        t->fifo_tail->next = first;
    else
        t->fifo_head = first;
    t->fifo_tail = last;
    return true;
}

static void complete_req(struct slot *t, struct loom_iopool_req *req, int32_t res)
{
    LOOM_ASSERT(req_state(req) == REQ_QUEUED || req_state(req) == REQ_WAITED);
    req->io.op.res = res;
    loom_iopool_fn fn = req->fn;
    count(&t->completed, 1); /* before the request is the caller's again */
    if (fn) {
        __atomic_store_n(&req->state, REQ_DONE, __ATOMIC_RELAXED);
        fn(req, res); /* may free or resubmit req */
    } else {
        /* a waiter sleeps (or is about to) on the word: its wait and our wake, counted before
         * the request is the caller's again when we can tell */
        bool counted = req_state(req) == REQ_WAITED;
        if (counted)
            count(&t->futex_calls, 2);
        if (__atomic_exchange_n(&req->state, REQ_DONE, __ATOMIC_ACQ_REL) == REQ_WAITED) {
            futex_wake(&req->state);
            if (!counted)
                count(&t->futex_calls, 2);
        }
    }
    int64_t before = atomic_fetch_sub_explicit(&t->load, 1, memory_order_release);
    LOOM_ASSERT((before & ~RETIRED) > 0);
}

static void publish_inflight(struct slot *t)
{
    atomic_store_explicit(&t->inflight_seen, t->inflight, memory_order_relaxed);
}

/* Submits up to N requests of the FIFO (refilled from the channel); true if it submitted. */
static bool submit_batch(struct slot *t)
{
    if (!t->fifo_head)
        take_channel(t);
    const struct loom_iopool_config *c = &t->pool->config;
    unsigned room = c->ring_entries - t->inflight, n = 0;
    while (t->fifo_head && n < c->submit_batch && n < room) {
        struct loom_iopool_req *req = t->fifo_head;
        if (!loom__raw_ring_push(t->rr, &req->io, (uint64_t)(uintptr_t)req))
            break;
        t->fifo_head = req->next;
        n++;
    }
    if (!t->fifo_head)
        t->fifo_tail = NULL;
    if (n == 0)
        return false;
    t->inflight += n;
    LOOM_ASSERT(t->inflight <= c->ring_entries);
    enter(t, 0, 0); /* submits and runs the completions' task work: reap them next */
    count(&t->batches, 1);
    publish_inflight(t);
    t->idle_since_ns = 0;
    return true;
}

/* Completes up to C requests; true if it reaped anything. The ring defers completion work
 * to the next enter (DEFER_TASKRUN), so an empty CQ is only conclusive after an enter. */
static bool complete_batch(struct slot *t)
{
    unsigned max = t->pool->config.complete_batch;
    unsigned n = loom__raw_ring_reap(t->rr, t->cqes, max);
    if (n == 0 && t->inflight > 0 && !t->entered) {
        enter(t, 0, 0);
        n = loom__raw_ring_reap(t->rr, t->cqes, max);
    }
    t->entered = false;
    unsigned done = 0;
    for (unsigned i = 0; i < n; i++) {
        if (t->cqes[i].user_data == WAKE_TAG) {
            t->wake_armed = false;
            continue;
        }
        struct loom_iopool_req *req = (struct loom_iopool_req *)(uintptr_t)t->cqes[i].user_data;
        complete_req(t, req, t->cqes[i].res);
        done++;
    }
    LOOM_ASSERT(done <= t->inflight);
    t->inflight -= done;
    if (done) {
        publish_inflight(t);
        t->idle_since_ns = 0;
    }
    if (!t->wake_armed)
        arm_wake(t);
    return n > 0;
}

/* Leaves the pool when more than min_threads run: only with load 0 (nothing queued or in
 * flight), swapped atomically for RETIRED so no submitter can slip a request in. */
static bool try_retire(struct slot *t)
{
    struct loom_iopool *pool = t->pool;
    unsigned n = atomic_load(&pool->threads);
    do {
        if (n <= pool->min_threads)
            return false;
    } while (!atomic_compare_exchange_weak(&pool->threads, &n, n - 1));
    int64_t zero = 0;
    if (!atomic_compare_exchange_strong(&t->load, &zero, RETIRED)) {
        atomic_fetch_add(&pool->threads, 1);
        return false;
    }
    LOOM_ASSERT(atomic_load(&t->head) == NULL);
    LOOM_ASSERT(t->inflight == 0 && !t->fifo_head);
    count(&t->shrinks, 1);
    return true;
}

/* Blocks in the kernel until a completion, a wake-up or the timeout. Returns true when the
 * thread should retire. */
static bool sleep_step(struct slot *t)
{
    const struct loom_iopool_config *c = &t->pool->config;
    int64_t timeout = c->tick_ns;
    if (t->inflight == 0 && !t->fifo_head) {
        int64_t now = now_ns();
        if (t->idle_since_ns == 0)
            t->idle_since_ns = now;
        int64_t left = t->idle_since_ns + c->idle_timeout_ns - now;
        if (left <= 0 && try_retire(t))
            return true;
        if (left > 0 && left < timeout)
            timeout = left;
    }
    if (!t->wake_armed)
        arm_wake(t);
    LOOM_ASSERT(t->wake_armed);
    /* Announce the sleep, then look once more (Dekker, with the submitter's push then load of
     * `sleeping`): a request pushed before the announcement is seen here; one pushed after
     * sees `sleeping` and writes the eventfd, which completes the armed read. */
    atomic_store_explicit(&t->sleeping, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&t->head, memory_order_seq_cst) ||
        atomic_load_explicit(&t->stop, memory_order_seq_cst)) {
        atomic_store_explicit(&t->sleeping, 0, memory_order_relaxed);
        return false;
    }
    count(&t->sleeps, 1);
    enter(t, 1, timeout);
    atomic_store_explicit(&t->sleeping, 0, memory_order_relaxed);
    return false;
}

/* The algorithm of seeds/003: submit in batches of N, complete in batches of C, after a
 * submit look for completions first and after completions for submissions first, busy-poll
 * M rounds before sleeping. Returns true when the thread retired, false when stopped. */
static bool run(struct slot *t)
{
    unsigned spins = 0, spins_max = t->pool->config.poll_spins;
    bool submitted_last = false;
    while (!atomic_load_explicit(&t->stop, memory_order_relaxed)) {
        if (submitted_last) {
            if (complete_batch(t)) {
                submitted_last = false;
                spins = 0;
                continue;
            }
            if (submit_batch(t)) {
                spins = 0;
                continue;
            }
        } else {
            if (submit_batch(t)) {
                submitted_last = true;
                spins = 0;
                continue;
            }
            if (complete_batch(t)) {
                spins = 0;
                continue;
            }
        }
        if (spins++ < spins_max) {
            cpu_relax();
            continue;
        }
        spins = 0;
        if (sleep_step(t))
            return true;
    }
    return false;
}

/* Shutdown: the channel is final (no submit is in progress). Requests not in the kernel
 * complete with -ECANCELED; those in the kernel are waited for. */
static void drain(struct slot *t)
{
    take_channel(t);
    while (t->fifo_head) {
        struct loom_iopool_req *req = t->fifo_head;
        t->fifo_head = req->next;
        count(&t->cancelled, 1);
        complete_req(t, req, -ECANCELED);
    }
    t->fifo_tail = NULL;
    LOOM_ASSERT(atomic_load(&t->head) == NULL);
    while (t->inflight > 0) {
        if (!complete_batch(t))
            enter(t, 1, t->pool->config.tick_ns);
    }
    publish_inflight(t);
}

static void *slot_main(void *arg)
{
    struct slot *t = arg;
    struct loom_iopool *pool = t->pool;
    char name[16];
    snprintf(name, sizeof(name), "loom-iopool%u", t->index);
    pthread_setname_np(pthread_self(), name);
    int rc = loom__raw_ring_create(pool->config.ring_entries, &t->rr); /* on this thread */
    if (rc == 0) {
        t->cqes = calloc(pool->config.complete_batch, sizeof(*t->cqes));
        if (!t->cqes)
            rc = -ENOMEM;
    }
    if (rc == 0) {
        arm_wake(t);
        atomic_fetch_and(&t->load, ~RETIRED); /* open for requests */
        atomic_fetch_add(&pool->threads, 1);
    }
    t->start_rc = rc;
    atomic_store_explicit(&t->ready, 1, memory_order_release);
    futex_wake((uint32_t *)&t->ready);
    if (rc < 0) {
        loom__raw_ring_destroy(t->rr);
        t->rr = NULL;
        return NULL;
    }
    if (!run(t)) {
        drain(t);
        atomic_fetch_sub(&pool->threads, 1);
    }
    loom__raw_ring_destroy(t->rr); /* cancels the eventfd read; its buffer is in the slot */
    t->rr = NULL;
    free(t->cqes);
    t->cqes = NULL;
    t->wake_armed = false;
    atomic_store_explicit(&t->state, SLOT_EXITED, memory_order_release);
    return NULL;
}

/* ---- starting and stopping threads (pool->lock held, or during create) ------------------- */

static int slot_start(struct loom_iopool *pool, struct slot *t)
{
    LOOM_ASSERT(atomic_load(&t->state) == SLOT_FREE);
    LOOM_ASSERT(atomic_load(&t->load) & RETIRED);
    atomic_store(&t->stop, 0);
    atomic_store(&t->ready, 0);
    t->start_rc = 0;
    t->inflight = 0;
    t->idle_since_ns = 0;
    t->entered = false;
    atomic_store(&t->state, SLOT_RUNNING);
    /* the IO thread takes no process signals: they belong to the application's threads */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = -pthread_create(&t->tid, NULL, slot_main, t);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc < 0) {
        atomic_store(&t->state, SLOT_FREE);
        return rc;
    }
    while (!atomic_load_explicit(&t->ready, memory_order_acquire))
        futex_wait((uint32_t *)&t->ready, 0);
    if (t->start_rc < 0) {
        pthread_join(t->tid, NULL);
        atomic_store(&t->state, SLOT_FREE);
        return t->start_rc;
    }
    unsigned hi = atomic_load(&pool->slots_hi);
    if (t->index + 1 > hi)
        atomic_store_explicit(&pool->slots_hi, t->index + 1, memory_order_release);
    return 0;
}

static void slot_join(struct slot *t)
{
    if (atomic_load(&t->state) == SLOT_FREE)
        return;
    pthread_join(t->tid, NULL);
    LOOM_ASSERT(atomic_load(&t->state) == SLOT_EXITED);
    atomic_store(&t->state, SLOT_FREE);
}

/* Starts one more thread if the pool may grow; skipped when another start is under way. */
static void grow(struct loom_iopool *pool)
{
    if (pthread_mutex_trylock(&pool->lock) != 0)
        return;
    if (!atomic_load(&pool->closing) && atomic_load(&pool->threads) < pool->max_threads) {
        for (unsigned i = 0; i < pool->max_threads; i++) {
            struct slot *t = &pool->slots[i];
            int state = atomic_load_explicit(&t->state, memory_order_acquire);
            if (state == SLOT_RUNNING)
                continue;
            slot_join(t);
            if (slot_start(pool, t) == 0)
                atomic_fetch_add_explicit(&pool->grows, 1, memory_order_relaxed);
            break;
        }
    }
    pthread_mutex_unlock(&pool->lock);
}

/* ---- the pool --------------------------------------------------------------------------- */

static int config_check(struct loom_iopool_config *c, const struct loom_iopool_config *given)
{
    loom_iopool_config_default(c);
    if (!given)
        return 0;
    if (given->submit_batch)
        c->submit_batch = given->submit_batch;
    c->poll_spins = given->poll_spins; /* 0 is a valid choice: never spin */
    if (given->complete_batch)
        c->complete_batch = given->complete_batch;
    if (given->ring_entries)
        c->ring_entries = given->ring_entries;
    if (given->grow_waiting)
        c->grow_waiting = given->grow_waiting;
    if (given->idle_timeout_ns)
        c->idle_timeout_ns = given->idle_timeout_ns;
    if (given->tick_ns)
        c->tick_ns = given->tick_ns;
    if (c->submit_batch > SUBMIT_BATCH_MAX || c->complete_batch > COMPLETE_BATCH_MAX ||
        c->ring_entries < 2 || c->ring_entries > RING_ENTRIES_MAX || c->idle_timeout_ns < 0 ||
        c->tick_ns < 0)
        return -EINVAL;
    return 0;
}

int loom_iopool_create(unsigned min_threads, unsigned max_threads,
                       const struct loom_iopool_config *config, struct loom_iopool **out)
{
    LOOM_ASSERT(out != NULL);
    *out = NULL;
    if (min_threads < 1 || min_threads > max_threads || max_threads > THREADS_MAX)
        return -EINVAL;
    struct loom_iopool *pool = calloc(1, sizeof(*pool));
    if (!pool)
        return -ENOMEM;
    int rc = config_check(&pool->config, config);
    if (rc < 0) {
        free(pool);
        return rc;
    }
    pool->min_threads = min_threads;
    pool->max_threads = max_threads;
    pthread_mutex_init(&pool->lock, NULL);
    pool->slots = aligned_alloc(64, sizeof(struct slot) * max_threads);
    if (!pool->slots) {
        free(pool);
        return -ENOMEM;
    }
    memset(pool->slots, 0, sizeof(struct slot) * max_threads);
    for (unsigned i = 0; i < max_threads; i++) {
        struct slot *t = &pool->slots[i];
        t->pool = pool;
        t->index = i;
        atomic_store(&t->load, RETIRED);
        t->efd = eventfd(0, EFD_CLOEXEC); /* blocking: the ring polls it */
        if (t->efd < 0 && rc == 0)
            rc = -errno;
    }
    for (unsigned i = 0; i < min_threads && rc == 0; i++)
        rc = slot_start(pool, &pool->slots[i]);
    if (rc < 0) {
        loom_iopool_destroy(pool);
        return rc;
    }
    *out = pool;
    return 0;
}

/* The least-loaded open slot (ties: the lowest index, so that light traffic stays on few
 * threads and the others can retire), and the fewest requests waiting on any open slot. */
static struct slot *pick(struct loom_iopool *pool, int64_t *waiting_min)
{
    unsigned hi = atomic_load_explicit(&pool->slots_hi, memory_order_acquire);
    struct slot *best = NULL;
    int64_t best_load = INT64_MAX, waiting = INT64_MAX;
    for (unsigned i = 0; i < hi; i++) {
        struct slot *t = &pool->slots[i];
        int64_t load = atomic_load_explicit(&t->load, memory_order_relaxed);
        if (load & RETIRED)
            continue;
        if (load < best_load) {
            best = t;
            best_load = load;
        }
        int64_t w = load - atomic_load_explicit(&t->inflight_seen, memory_order_relaxed);
        if (w < waiting)
            waiting = w;
    }
    *waiting_min = waiting;
    return best;
}

/* Treiber push: the IO thread takes the whole stack at once, so there is no ABA. seq_cst
 * pairs with the thread's store of `sleeping` then load of `head` (see sleep_step). */
static void push(struct slot *t, struct loom_iopool_req *req)
{
    struct loom_iopool_req *head = atomic_load_explicit(&t->head, memory_order_relaxed);
    do {
        req->next = head;
    } while (!atomic_compare_exchange_weak_explicit(&t->head, &head, req, memory_order_seq_cst,
                                                    memory_order_relaxed));
    if (atomic_load_explicit(&t->sleeping, memory_order_seq_cst) &&
        atomic_exchange_explicit(&t->sleeping, 0, memory_order_relaxed)) {
        uint64_t one = 1;
        ssize_t n = write(t->efd, &one, sizeof(one));
        LOOM_ASSERT(n == (ssize_t)sizeof(one));
        atomic_fetch_add_explicit(&t->wakeups, 1, memory_order_relaxed);
    }
}

int loom_iopool_submit(struct loom_iopool *pool, struct loom_iopool_req *req, loom_iopool_fn fn,
                       void *data)
{
    LOOM_ASSERT(pool != NULL && req != NULL);
    uint32_t state = req_state(req);
    LOOM_ASSERTF(state == REQ_IDLE || state == REQ_DONE, "request submitted while in flight");
    if (req->io.kind >= LOOM_IO_KINDS || req->io.kind == LOOM_IO_READ_FIXED ||
        req->io.kind == LOOM_IO_WRITE_FIXED)
        return -EINVAL;
    int64_t waiting;
    for (;;) {
        struct slot *t = pick(pool, &waiting);
        if (LOOM_UNLIKELY(!t)) { /* every slot between retiring and restarting: rare */
            if (atomic_load(&pool->closing))
                return -ESHUTDOWN;
            sched_yield();
            continue;
        }
        /* `entering` before `closing` (seq_cst both, against shutdown's store of `closing`
         * then load of `entering`): shutdown waits for this submit or this submit sees it */
        atomic_fetch_add_explicit(&t->entering, 1, memory_order_seq_cst);
        if (atomic_load_explicit(&pool->closing, memory_order_seq_cst)) {
            atomic_fetch_sub_explicit(&t->entering, 1, memory_order_release);
            return -ESHUTDOWN;
        }
        if (atomic_fetch_add_explicit(&t->load, 1, memory_order_relaxed) & RETIRED) {
            atomic_fetch_sub_explicit(&t->load, 1, memory_order_relaxed);
            atomic_fetch_sub_explicit(&t->entering, 1, memory_order_release);
            continue; /* retired under us: pick again */
        }
        req->fn = fn;
        req->data = data;
        __atomic_store_n(&req->state, REQ_QUEUED, __ATOMIC_RELAXED);
        atomic_fetch_add_explicit(&t->submitted, 1, memory_order_relaxed);
        push(t, req);
        atomic_fetch_sub_explicit(&t->entering, 1, memory_order_release);
        break;
    }
    if (LOOM_UNLIKELY(waiting >= (int64_t)pool->config.grow_waiting) &&
        atomic_load_explicit(&pool->threads, memory_order_relaxed) < pool->max_threads)
        grow(pool);
    return 0;
}

int32_t loom_iopool_wait(struct loom_iopool_req *req)
{
    LOOM_ASSERT(req != NULL);
    LOOM_ASSERTF(req->fn == NULL, "loom_iopool_wait() on a request with a callback");
    for (int i = 0; i < WAIT_SPINS && req_state(req) != REQ_DONE; i++)
        cpu_relax();
    uint32_t expected = REQ_QUEUED;
    if (req_state(req) != REQ_DONE)
        __atomic_compare_exchange_n(&req->state, &expected, REQ_WAITED, false, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE);
    uint32_t state;
    while ((state = req_state(req)) != REQ_DONE) {
        LOOM_ASSERTF(state == REQ_WAITED, "loom_iopool_wait() on a request never submitted");
        futex_wait(&req->state, REQ_WAITED);
    }
    return req->io.op.res;
}

bool loom_iopool_done(const struct loom_iopool_req *req)
{
    return req_state(req) == REQ_DONE;
}

void loom_iopool_shutdown(struct loom_iopool *pool)
{
    LOOM_ASSERT(pool != NULL);
    pthread_mutex_lock(&pool->lock);
    if (pool->shut) {
        pthread_mutex_unlock(&pool->lock);
        return;
    }
    pool->shut = true;
    atomic_store_explicit(&pool->closing, 1, memory_order_seq_cst);
    pthread_mutex_unlock(&pool->lock);
    /* After this no submit is between its check of `closing` and its push: channels are
     * final. (A submit that is growing the pool holds `entering` and has taken the lock.) */
    for (unsigned i = 0; i < pool->max_threads; i++) {
        while (atomic_load_explicit(&pool->slots[i].entering, memory_order_seq_cst))
            sched_yield();
    }
    for (unsigned i = 0; i < pool->max_threads; i++) {
        struct slot *t = &pool->slots[i];
        if (atomic_load(&t->state) == SLOT_FREE)
            continue;
        atomic_store_explicit(&t->stop, 1, memory_order_seq_cst);
        uint64_t one = 1;
        if (write(t->efd, &one, sizeof(one)) < 0)
            LOOM_ASSERTF(false, "eventfd write: %s", strerror(errno));
    }
    pthread_mutex_lock(&pool->lock);
    for (unsigned i = 0; i < pool->max_threads; i++)
        slot_join(&pool->slots[i]);
    pthread_mutex_unlock(&pool->lock);
    LOOM_ASSERT(atomic_load(&pool->threads) == 0);
}

void loom_iopool_destroy(struct loom_iopool *pool)
{
    if (!pool)
        return;
    loom_iopool_shutdown(pool);
    for (unsigned i = 0; i < pool->max_threads; i++) {
        struct slot *t = &pool->slots[i];
        LOOM_ASSERT(atomic_load(&t->head) == NULL);
        if (t->efd >= 0)
            close(t->efd);
    }
    pthread_mutex_destroy(&pool->lock);
    free(pool->slots);
    free(pool);
}

void loom_iopool_stats(const struct loom_iopool *pool, struct loom_iopool_stats *out)
{
    LOOM_ASSERT(pool != NULL && out != NULL);
    memset(out, 0, sizeof(*out));
    for (unsigned i = 0; i < pool->max_threads; i++) {
        struct slot *t = &pool->slots[i];
        out->submitted += atomic_load_explicit(&t->submitted, memory_order_relaxed);
        out->completed += atomic_load_explicit(&t->completed, memory_order_relaxed);
        out->cancelled += atomic_load_explicit(&t->cancelled, memory_order_relaxed);
        out->batches += atomic_load_explicit(&t->batches, memory_order_relaxed);
        out->enters += atomic_load_explicit(&t->enters, memory_order_relaxed);
        out->sleeps += atomic_load_explicit(&t->sleeps, memory_order_relaxed);
        out->wakeups += atomic_load_explicit(&t->wakeups, memory_order_relaxed);
        out->futex_calls += atomic_load_explicit(&t->futex_calls, memory_order_relaxed);
        out->shrinks += atomic_load_explicit(&t->shrinks, memory_order_relaxed);
    }
    out->syscalls = out->enters + out->wakeups + out->futex_calls;
    out->grows = atomic_load_explicit(&((struct loom_iopool *)pool)->grows, memory_order_relaxed);
    out->threads =
        atomic_load_explicit(&((struct loom_iopool *)pool)->threads, memory_order_relaxed);
    out->threads_max = pool->max_threads;
}

/* ---- blocking conveniences -------------------------------------------------------------- */

static int32_t run_sync(struct loom_iopool *pool, struct loom_iopool_req *req)
{
    int rc = loom_iopool_submit(pool, req, NULL, NULL);
    if (rc < 0)
        return rc;
    return loom_iopool_wait(req);
}

ssize_t loom_iopool_pread(struct loom_iopool *pool, int fd, void *buf, size_t len, uint64_t offset)
{
    struct loom_iopool_req req;
    loom_iopool_prep_read(&req, fd, buf, len, offset);
    return run_sync(pool, &req);
}

ssize_t loom_iopool_pwrite(struct loom_iopool *pool, int fd, const void *buf, size_t len,
                           uint64_t offset)
{
    struct loom_iopool_req req;
    loom_iopool_prep_write(&req, fd, buf, len, offset);
    return run_sync(pool, &req);
}

int loom_iopool_fsync(struct loom_iopool *pool, int fd, bool datasync)
{
    struct loom_iopool_req req;
    loom_iopool_prep_fsync(&req, fd, datasync);
    return run_sync(pool, &req);
}

int loom_iopool_openat(struct loom_iopool *pool, int dirfd, const char *path, int flags,
                       mode_t mode)
{
    struct loom_iopool_req req;
    loom_iopool_prep_openat(&req, dirfd, path, flags, mode);
    return run_sync(pool, &req);
}

int loom_iopool_close(struct loom_iopool *pool, int fd)
{
    struct loom_iopool_req req;
    loom_iopool_prep_close(&req, fd);
    return run_sync(pool, &req);
}
