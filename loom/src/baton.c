/* SPDX-License-Identifier: MIT
 * baton.c - one waiter, one post: the primitive every blocking call in loom is built on.
 *
 * States of a cycle: IDLE -> WAITING (a fiber waits) -> WOKEN (posted) or TIMEDOUT (deadline)
 * -> IDLE when the waiter resumes; or IDLE -> POSTED (post before wait) -> IDLE when the wait
 * takes it. The generation is bumped as each cycle ends; a post from another core carries the
 * generation it saw, and the owner drops it if the cycle has ended since (stale_posts).
 * The wait without a deadline and the common local post are inline in internal.h, so the
 * fiber-suspending calls and completion callbacks make no call for them.
 */
#include <errno.h>

#include "internal.h"

void loom_baton_init(struct loom_baton *b)
{
    struct loom__reactor *r = loom__reactor();
    b->waiter = NULL;
    __atomic_store_n(&b->generation, 0, __ATOMIC_RELAXED);
    b->core = (uint16_t)r->core;
    b->state = LOOM_BATON_IDLE;
    b->reserved = 0;
}

void loom_baton_deinit(struct loom_baton *b)
{
    struct loom__reactor *r = loom__reactor();
    loom__baton_check_owner(b, r);
    LOOM_ASSERTF(b->waiter == NULL, "baton %p deinitialised with a waiter", (void *)b);
    b->state = LOOM_BATON_DEAD;
}

static void baton_timeout(struct loom_timer *timer, void *arg)
{
    struct loom_baton *b = arg;
    struct loom__reactor *r = loom__self;
    (void)timer;
    LOOM_ASSERT(b->waiter != NULL);
    /* A post that arrived before the timers fired (drained or reaped since the waiter last
     * ran) wins: the waiter is already ready. */
    if (b->state != LOOM_BATON_WAITING)
        return;
    b->state = LOOM_BATON_TIMEDOUT;
    loom__fiber_ready(r, b->waiter);
}

/* A wait with a deadline: a timer on this stack frame. Out of line, so the wait without one
 * (every IO completion a fiber waits for) carries no timer. */
__attribute__((noinline)) int loom__baton_wait_until(struct loom__reactor *r, struct loom_baton *b,
                                                     int64_t deadline_ns)
{
    if (deadline_ns <= loom__clock_ns()) {
        loom__baton_end_cycle(b);
        return -ETIMEDOUT;
    }
    struct loom_timer timer;
    loom_timer_init(&timer);
    int rc = loom_timer_start(&timer, deadline_ns, baton_timeout, b);
    LOOM_ASSERT(rc == 0);
    b->state = LOOM_BATON_WAITING;
    b->waiter = r->current;
    loom__fiber_block(r);
    (void)loom_timer_cancel(&timer);
    return loom__baton_wait_result(b);
}

int loom_baton_wait(struct loom_baton *b, int64_t deadline_ns)
{
    return loom__baton_wait(loom__reactor(), b, deadline_ns);
}

void loom__baton_post_slow(struct loom__reactor *r, struct loom_baton *b)
{
    loom__baton_check_owner(b, r);
    switch (b->state) {
    case LOOM_BATON_WAITING:
        b->state = LOOM_BATON_WOKEN;
        loom__fiber_ready(r, b->waiter);
        break;
    case LOOM_BATON_IDLE:
    case LOOM_BATON_TIMEDOUT:
        b->state = LOOM_BATON_POSTED;
        break;
    default:
        LOOM_ASSERTF(false, "baton %p posted twice in one cycle (one post per wait)", (void *)b);
    }
}

struct remote_post {
    struct loom_msg msg;
    struct loom_baton *baton;
    uint32_t generation;
};

static void remote_post_arrived(struct loom_msg *msg)
{
    struct remote_post *post = LOOM_CONTAINER_OF(msg, struct remote_post, msg);
    struct loom__reactor *r = loom__self;
    struct loom_baton *b = post->baton;
    if (__atomic_load_n(&b->generation, __ATOMIC_RELAXED) == post->generation)
        loom__baton_post_local(r, b);
    else
        LOOM_STAT_INC(r, stale_posts);
    loom_free(post); /* goes home to the posting core */
}

void loom_baton_post(struct loom_baton *b)
{
    struct loom__reactor *r = loom__reactor();
    if (b->core == r->core) {
        loom__baton_post_local(r, b);
        return;
    }
    struct remote_post *post = loom_alloc(sizeof(*post));
    LOOM_ASSERTF(post != NULL, "core %u: memory budget exhausted posting a baton", r->core);
    post->baton = b;
    post->generation = __atomic_load_n(&b->generation, __ATOMIC_RELAXED);
    loom_msg_send(b->core, &post->msg, remote_post_arrived);
}

bool loom_baton_is_posted(const struct loom_baton *b)
{
    return b->state == LOOM_BATON_POSTED;
}

void loom_baton_reset(struct loom_baton *b)
{
    struct loom__reactor *r = loom__reactor();
    loom__baton_check_owner(b, r);
    LOOM_ASSERTF(b->waiter == NULL, "loom_baton_reset() with a waiter");
    b->state = LOOM_BATON_IDLE;
    loom__baton_end_cycle(b);
}
