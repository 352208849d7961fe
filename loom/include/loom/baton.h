/* SPDX-License-Identifier: MIT
 * baton.h - the one synchronisation primitive of loom: one waiter, one post.
 *
 * A baton belongs to the core that initialised it; only a fiber of that core may wait on it.
 * Any core may post it: a post from another core travels through the cross-core ring and
 * carries the baton's generation, so a post that arrives after the wait it was meant for has
 * ended (timed out) is dropped and counted (stats.stale_posts) instead of waking a later wait.
 * A post before the wait makes the wait return at once. After a wait returns, the baton is
 * ready for the next wait/post cycle. Mutex, condition, semaphore, channel, wait group and
 * future (sync.h) are built on this. Misuse (two waiters, two posts in one cycle, use after
 * deinit, waiting from the wrong core or outside a fiber) fails an assertion with a message.
 */
#ifndef LOOM_BATON_H
#define LOOM_BATON_H

#include "loom/common.h"

#ifdef __cplusplus
extern "C" {
#endif

struct loom_fiber;

/* Caller-owned; fields are private. */
struct loom_baton {
    struct loom_fiber *waiter; /* the fiber in loom_baton_wait(), or NULL */
    uint32_t generation;       /* bumped when a wait cycle ends; atomically read by posters */
    uint16_t core;             /* owner core */
    uint8_t state;             /* idle, waiting, woken, timed out, posted, dead (baton.c) */
    uint8_t reserved;
};

/* Initialises `baton` as owned by the calling core. Core: any reactor thread. */
LOOM_API void loom_baton_init(struct loom_baton *baton);

/* Marks `baton` dead: later use fails an assertion while the memory is still readable.
 * It must have no waiter. Core: the owner. */
LOOM_API void loom_baton_deinit(struct loom_baton *baton);

/* Suspends the calling fiber until `baton` is posted or `deadline_ns` passes.
 * Returns 0 when posted (also when the post came before the wait), -ETIMEDOUT when the
 * deadline passed first. Either way the cycle ends and the baton is ready for reuse.
 * Core: the owner, from a fiber. */
LOOM_API int loom_baton_wait(struct loom_baton *baton, int64_t deadline_ns);

/* Posts `baton`. On the owner core it readies the waiter (which runs later from the loop,
 * never inline); from another core it sends a message (never blocks, never drops) whose
 * 32-byte node comes from the posting core's slab and goes home after delivery (an exhausted
 * budget there is fatal). The message reads the baton when it arrives: keep the baton's
 * memory valid until every post sent to it has arrived. Core: any reactor thread. */
LOOM_API void loom_baton_post(struct loom_baton *baton);

/* True when a post is pending (the next wait returns at once). Core: the owner. */
LOOM_API bool loom_baton_is_posted(const struct loom_baton *baton);

/* Forgets a pending post and starts a new cycle (remote posts for the old one become stale).
 * It must have no waiter. Core: the owner. */
LOOM_API void loom_baton_reset(struct loom_baton *baton);

#ifdef __cplusplus
}
#endif
#endif
