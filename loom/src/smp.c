/* SPDX-License-Identifier: MIT
 * smp.c - cross-core messages over one SPSC ring per ordered pair of cores, and the calls
 * built on them (submit_to, invoke_on, invoke_on_all).
 *
 * Producer side: loom_msg_send() writes the pointer into the next slot but publishes the tail
 * only in loom__smp_flush() (once per loop iteration, or when 64 writes are pending), so the
 * consumer's cache line is touched once per batch. A full ring parks messages in an intrusive
 * list in order; later sends queue behind them, so order per pair holds and nothing blocks:
 * two cores with full rings towards each other both keep running their loops and draining.
 * Consumer side: loom__smp_drain() reads a batch up to the published tail, runs the handlers,
 * then publishes the head once. A sleeping consumer is woken after publication (Dekker-style:
 * publish, full fence, read `sleeping`; the consumer sets `sleeping`, fences, re-checks).
 */
#include <errno.h>
#include <string.h>

#include "internal.h"

#define PUBLISH_BATCH 64   /* publish early when this many writes are pending */
#define DRAIN_BATCH   1024 /* messages taken from one ring per drain, to bound a loop iteration */

static void mark_dirty(struct loom__reactor *r, unsigned core)
{
    r->out_dirty[core / 64] |= 1ull << (core % 64);
}

int loom__smp_init(struct loom__runtime *rt)
{
    unsigned n = rt->cores;
    uint32_t entries = rt->config.smp_ring_entries;
    LOOM_ASSERT(entries >= 2 && (entries & (entries - 1)) == 0);
    for (unsigned to = 0; to < n; to++) {
        struct loom__reactor *consumer = rt->reactors[to];
        for (unsigned from = 0; from < n; from++) {
            if (from == to)
                continue;
            /* the ring lives in the consumer's budget (its NUMA node) */
            struct loom__spsc *q = loom__arena_carve(consumer, sizeof(*q), LOOM_CACHELINE);
            struct loom_msg **slots =
                loom__arena_carve(consumer, entries * sizeof(*slots), LOOM_CACHELINE);
            if (!q || !slots) {
                loom__log("error", "memory budget too small for %u x %u cross-core rings", n,
                          n - 1);
                return -ENOMEM;
            }
            memset(q, 0, sizeof(*q));
            q->mask = entries - 1;
            q->producer = (uint16_t)from;
            q->consumer = (uint16_t)to;
            q->slots = slots;
            consumer->in[from] = q;
            rt->reactors[from]->out[to] = q;
        }
    }
    return 0;
}

/* After a seq_cst store another core must see (a ring's tail or head): wake `core` if it
 * sleeps or is about to. Its seq_cst store of `sleeping` before its last look at the rings
 * pairs with our store, so either it sees ours or we see its flag (x86: one xchg each);
 * the exchange makes one waker per sleep. */
static void wake_if_sleeping(struct loom__reactor *r, unsigned core)
{
    struct loom__reactor *t = loom__rt.reactors[core];
    if (atomic_load_explicit(&t->sleeping, memory_order_seq_cst) &&
        atomic_exchange_explicit(&t->sleeping, 0, memory_order_relaxed))
        loom__uring_wake(r, core);
}

static void publish(struct loom__reactor *r, unsigned core, struct loom__spsc *q)
{
    atomic_store_explicit(&q->tail, q->prod_tail, memory_order_seq_cst);
    q->dirty = false;
    wake_if_sleeping(r, core);
}

/* Writes `msg` into the ring if there is room; false when full. */
static bool ring_put(struct loom__spsc *q, struct loom_msg *msg)
{
    uint32_t capacity = q->mask + 1;
    if (q->prod_tail - q->prod_head_cache == capacity) {
        q->prod_head_cache = atomic_load_explicit(&q->head, memory_order_acquire);
        if (q->prod_tail - q->prod_head_cache == capacity)
            return false;
    }
    q->slots[q->prod_tail & q->mask] = msg;
    q->prod_tail++;
    q->dirty = true;
    return true;
}

static void park(struct loom__spsc *q, struct loom_msg *msg)
{
    if (!q->park_head)
        atomic_store_explicit(&q->parked, 1, memory_order_relaxed);
    LOOM_FIFO_PUSH(q->park_head, q->park_tail, msg);
}

void loom_msg_send(unsigned core, struct loom_msg *msg, loom_msg_fn fn)
{
    struct loom__reactor *r = loom__reactor();
    LOOM_ASSERTF(core < loom__rt.cores, "loom_msg_send to core %u of %u", core, loom__rt.cores);
    LOOM_ASSERT(fn != NULL);
    msg->fn = fn;
    msg->next = NULL;
    LOOM_STAT_INC(r, msgs_sent);
    if (core == r->core) {
        LOOM_FIFO_PUSH(r->self_head, r->self_tail, msg);
        return;
    }
    struct loom__spsc *q = r->out[core];
    mark_dirty(r, core);
    if (q->park_head || !ring_put(q, msg)) {
        park(q, msg);
        LOOM_STAT_INC(r, msgs_parked);
        return;
    }
    if (q->prod_tail - atomic_load_explicit(&q->tail, memory_order_relaxed) >= PUBLISH_BATCH)
        publish(r, core, q);
}

/* Moves parked messages into the ring as room allows; true when none are left parked. */
static bool unpark(struct loom__spsc *q)
{
    while (q->park_head) {
        struct loom_msg *msg = q->park_head;
        struct loom_msg *next = msg->next;
        if (!ring_put(q, msg))
            return false;
        q->park_head = next;
        if (!next) {
            q->park_tail = NULL;
            atomic_store_explicit(&q->parked, 0, memory_order_relaxed);
        }
    }
    return true;
}

bool loom__smp_parked_can_move(struct loom__reactor *r)
{
    for (unsigned w = 0; w < (loom__rt.cores + 63) / 64; w++) {
        uint64_t bits = r->out_dirty[w];
        while (bits) {
            unsigned core = w * 64 + (unsigned)__builtin_ctzll(bits);
            bits &= bits - 1;
            struct loom__spsc *q = r->out[core];
            if (q->dirty)
                return true;
            if (q->park_head &&
                q->prod_tail - atomic_load_explicit(&q->head, memory_order_acquire) <= q->mask)
                return true;
        }
    }
    return false;
}

void loom__smp_flush(struct loom__reactor *r)
{
    if (loom__rt.cores == 1)
        return; /* no rings: messages to the core itself wait in its self list */
    for (unsigned w = 0; w < (loom__rt.cores + 63) / 64; w++) {
        uint64_t bits = r->out_dirty[w];
        uint64_t keep = 0;
        while (bits) {
            unsigned core = w * 64 + (unsigned)__builtin_ctzll(bits);
            bits &= bits - 1;
            struct loom__spsc *q = r->out[core];
            bool drained = unpark(q);
            if (q->dirty)
                publish(r, core, q);
            if (!drained)
                keep |= 1ull << (core % 64); /* still parked: try again next iteration */
        }
        r->out_dirty[w] = keep;
    }
}

static void drain_self(struct loom__reactor *r)
{
    struct loom_msg *msg = r->self_head;
    r->self_head = r->self_tail = NULL;
    uint64_t n = 0;
    while (msg) {
        struct loom_msg *next = msg->next;
        msg->fn(msg);
        msg = next;
        n++;
    }
    LOOM_STAT_ADD(r, msgs_received, n);
}

static uint32_t drain_ring(struct loom__spsc *q)
{
    uint32_t head = q->cons_head;
    if (head == q->cons_tail_cache) {
        q->cons_tail_cache = atomic_load_explicit(&q->tail, memory_order_acquire);
        if (head == q->cons_tail_cache)
            return 0;
    }
    uint32_t end = q->cons_tail_cache;
    if (end - head > DRAIN_BATCH)
        end = head + DRAIN_BATCH;
    uint32_t n = end - head;
    for (; head != end; head++) {
        struct loom_msg *msg = q->slots[head & q->mask];
        if (end - head > 4) /* only slots below the published tail are ours to read */
            __builtin_prefetch(q->slots[(head + 4) & q->mask]);
        msg->fn(msg);
    }
    q->cons_head = head;
    atomic_store_explicit(&q->head, head, memory_order_seq_cst);
    /* the producer parked messages and may sleep waiting for this room */
    if (atomic_load_explicit(&q->parked, memory_order_seq_cst))
        wake_if_sleeping(loom__self, q->producer);
    return n;
}

void loom__smp_drain(struct loom__reactor *r)
{
    if (r->self_head)
        drain_self(r);
    if (loom__rt.cores == 1)
        return; /* no rings */
    uint64_t n = 0;
    for (unsigned from = 0; from < loom__rt.cores; from++) {
        if (from != r->core)
            n += drain_ring(r->in[from]);
    }
    if (n)
        LOOM_STAT_ADD(r, msgs_received, n);
}

bool loom__smp_has_inbound(struct loom__reactor *r)
{
    if (r->self_head)
        return true;
    for (unsigned from = 0; from < loom__rt.cores; from++) {
        if (from == r->core)
            continue;
        struct loom__spsc *q = r->in[from];
        if (q->cons_head != atomic_load_explicit(&q->tail, memory_order_acquire))
            return true;
    }
    return false;
}

/* ---- calls ---------------------------------------------------------------------------------- */

/* A call lives on the caller's stack (or slab) until the caller has seen every message about
 * it come back: the reply, and the cancel's acknowledgement when a cancel was sent. */
struct loom__call {
    struct loom_msg request; /* caller -> target, then reused: target -> caller (reply) */
    struct loom_msg cancel;  /* caller -> target, then back: the acknowledgement */
    loom_call_fn fn;
    void *arg;
    int result;
    uint16_t caller_core;
    uint16_t target_core;
    bool started;     /* target: fn has begun */
    bool cancelled;   /* target: the cancel arrived */
    uint8_t awaiting; /* caller: messages still to come back */
    struct loom_baton baton;
};

static void call_reply_arrived(struct loom_msg *msg);
static void call_ack_arrived(struct loom_msg *msg);

static int call_fiber(void *arg)
{
    struct loom__call *call = arg;
    if (call->cancelled) {
        call->result = -ETIMEDOUT;
    } else {
        call->started = true;
        call->result = call->fn(call->arg);
    }
    loom_msg_send(call->caller_core, &call->request, call_reply_arrived);
    return 0;
}

static void call_request_arrived(struct loom_msg *msg)
{
    struct loom__call *call = LOOM_CONTAINER_OF(msg, struct loom__call, request);
    int rc = loom__fiber_spawn_call(call, call_fiber, call);
    if (rc < 0) {
        loom__log("error", "invoke_on: cannot spawn a fiber: %s", strerror(-rc));
        call->result = rc;
        loom_msg_send(call->caller_core, &call->request, call_reply_arrived);
    }
}

static void call_cancel_arrived(struct loom_msg *msg)
{
    struct loom__call *call = LOOM_CONTAINER_OF(msg, struct loom__call, cancel);
    call->cancelled = true;
    loom_msg_send(call->caller_core, &call->cancel, call_ack_arrived);
}

static void call_one_back(struct loom__call *call)
{
    LOOM_ASSERT(call->awaiting > 0);
    if (--call->awaiting == 0)
        loom__baton_post_local(loom__self, &call->baton);
}

static void call_reply_arrived(struct loom_msg *msg)
{
    call_one_back(LOOM_CONTAINER_OF(msg, struct loom__call, request));
}

static void call_ack_arrived(struct loom_msg *msg)
{
    call_one_back(LOOM_CONTAINER_OF(msg, struct loom__call, cancel));
}

static void call_start(struct loom__reactor *r, struct loom__call *call, unsigned core,
                       loom_call_fn fn, void *arg)
{
    memset(call, 0, sizeof(*call));
    call->fn = fn;
    call->arg = arg;
    call->caller_core = (uint16_t)r->core;
    call->target_core = (uint16_t)core;
    call->awaiting = 1;
    loom_baton_init(&call->baton);
    loom_msg_send(core, &call->request, call_request_arrived);
}

/* Waits for the call's reply; past the deadline sends a cancel and keeps waiting. */
static int call_finish(struct loom__call *call, int64_t deadline_ns)
{
    int rc = loom_baton_wait(&call->baton, deadline_ns);
    if (rc == -ETIMEDOUT) {
        call->awaiting++;
        loom_msg_send(call->target_core, &call->cancel, call_cancel_arrived);
        rc = loom_baton_wait(&call->baton, LOOM_NO_DEADLINE);
        LOOM_ASSERT(rc == 0);
    }
    LOOM_ASSERT(call->awaiting == 0);
    loom_baton_deinit(&call->baton);
    return call->result;
}

int loom_invoke_on(unsigned core, loom_call_fn fn, void *arg, int64_t deadline_ns)
{
    struct loom__reactor *r = loom__reactor();
    LOOM_ASSERTF(r->current != NULL, "loom_invoke_on() outside a fiber");
    if (core >= loom__rt.cores)
        return -EINVAL;
    struct loom__call call;
    call_start(r, &call, core, fn, arg);
    return call_finish(&call, deadline_ns);
}

int loom_invoke_on_all(loom_call_fn fn, void *arg, int64_t deadline_ns)
{
    struct loom__reactor *r = loom__reactor();
    LOOM_ASSERTF(r->current != NULL, "loom_invoke_on_all() outside a fiber");
    unsigned n = loom__rt.cores;
    struct loom__call *calls = loom_alloc(n * sizeof(*calls));
    if (!calls)
        return -ENOMEM;
    for (unsigned core = 0; core < n; core++)
        call_start(r, &calls[core], core, fn, arg);
    int first_error = 0;
    for (unsigned core = 0; core < n; core++) {
        int rc = call_finish(&calls[core], deadline_ns);
        if (rc < 0 && first_error == 0)
            first_error = rc;
    }
    loom_free(calls);
    return first_error;
}

bool loom_fiber_cancel_requested(void)
{
    struct loom_fiber *f = loom_fiber_self();
    return f && f->call && f->call->cancelled;
}

/* ---- fire and forget ------------------------------------------------------------------------ */

struct submitted {
    struct loom_msg msg;
    loom_call_fn fn;
    void *arg;
};

static int submitted_fiber(void *arg)
{
    struct submitted *s = arg;
    loom_call_fn fn = s->fn;
    void *fn_arg = s->arg;
    loom_free(s); /* home to the sending core */
    (void)fn(fn_arg);
    return 0;
}

static void submitted_arrived(struct loom_msg *msg)
{
    struct submitted *s = LOOM_CONTAINER_OF(msg, struct submitted, msg);
    struct loom_fiber_attr attr = {.name = "submit_to", .stack = LOOM_STACK_MEDIUM};
    int rc = loom_spawn(NULL, submitted_fiber, s, &attr);
    LOOM_ASSERTF(rc == 0,
                 "core %u: memory budget exhausted: cannot run a loom_submit_to() call "
                 "(raise --memory)",
                 loom__self->core);
}

int loom_submit_to(unsigned core, loom_call_fn fn, void *arg)
{
    if (core >= loom__rt.cores)
        return -EINVAL;
    struct submitted *s = loom_alloc(sizeof(*s)); /* asserts a reactor thread */
    if (!s)
        return -ENOMEM;
    s->fn = fn;
    s->arg = arg;
    loom_msg_send(core, &s->msg, submitted_arrived);
    return 0;
}
