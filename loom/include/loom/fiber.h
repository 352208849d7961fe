/* SPDX-License-Identifier: MIT
 * fiber.h - stackful cooperative fibers, M:1 on the reactor of one core.
 *
 * A fiber runs on the core that spawned it and never migrates. It runs until it blocks (a
 * baton wait, an IO call, a sleep) or yields; there is no preemption, so a fiber that computes
 * for long must call loom_yield() (the stall detector reports those that do not). Fiber
 * records come from a per-core pool; a stack is taken from a per-core pool of the requested
 * size class when the fiber first runs, with a guard page below it, and is recycled when the
 * fiber returns. Nothing here allocates from the heap after start-up.
 */
#ifndef LOOM_FIBER_H
#define LOOM_FIBER_H

#include "loom/common.h"

#ifdef __cplusplus
extern "C" {
#endif

struct loom_fiber; /* opaque; owned by the core that spawned it */

/* A fiber's body. Its return value is the fiber's result, handed to loom_fiber_join(). */
typedef int (*loom_fiber_fn)(void *arg);

/* Stack size classes; sizes are set per process (struct loom_config, --stack-sizes). */
enum loom_stack_class {
    LOOM_STACK_SMALL = 0,  /* default 16 KiB */
    LOOM_STACK_MEDIUM = 1, /* default 64 KiB: the class used when no attr is given */
    LOOM_STACK_LARGE = 2,  /* default 256 KiB */
};
#define LOOM_STACK_CLASSES  3
#define LOOM_FIBER_NAME_MAX 32 /* including the terminating NUL; longer names are cut */

struct loom_fiber_attr {
    const char *name;            /* copied; NULL gives "fiber" */
    enum loom_stack_class stack; /* size class */
    bool joinable;               /* when true the record lives until loom_fiber_join() */
};

/* Spawns a fiber running fn(arg) on the calling core; it first runs from the reactor loop,
 * never inline. With a joinable attr, *out receives the fiber (which must then be joined
 * exactly once); otherwise out may be NULL and the fiber is released when it returns.
 * Returns 0, or -ENOMEM when the core's budget cannot hold another fiber record. The stack is
 * taken when the fiber first runs; if the budget has none left then, the fiber waits until a
 * fiber of its stack class returns one (stats.stack_waits counts it), so a burst of short
 * fibers is throttled rather than failed.
 * Core: any reactor thread. */
LOOM_API int loom_spawn(struct loom_fiber **out, loom_fiber_fn fn, void *arg,
                        const struct loom_fiber_attr *attr);

/* Waits until joinable fiber `fiber` has returned, stores its result in *result (if not NULL)
 * and releases it. Returns 0, or -ETIMEDOUT when `deadline_ns` passed first (the fiber stays
 * joinable). Core: the fiber's own core, from another fiber. */
LOOM_API int loom_fiber_join(struct loom_fiber *fiber, int64_t deadline_ns, int *result);

/* Puts the calling fiber at the back of the ready queue and runs the others first. */
LOOM_API void loom_yield(void);

/* Suspends the calling fiber until `deadline_ns` (loom_now_ns() clock) has passed.
 * Returns 0. */
LOOM_API int loom_sleep_until(int64_t deadline_ns);

/* Suspends the calling fiber for at least `duration_ns`. Returns 0. */
LOOM_API int loom_sleep(int64_t duration_ns);

/* The calling fiber, or NULL when called from the reactor loop (a callback) or a thread that
 * is not a reactor. */
LOOM_API struct loom_fiber *loom_fiber_self(void);

/* The fiber's diagnostic name (never NULL), valid while the fiber exists. */
LOOM_API const char *loom_fiber_name(const struct loom_fiber *fiber);

/* Renames `fiber` (copied, cut at LOOM_FIBER_NAME_MAX - 1 bytes). Core: the fiber's core. */
LOOM_API void loom_fiber_set_name(struct loom_fiber *fiber, const char *name);

/* True when the caller is inside a call started by loom_invoke_on() whose caller has since
 * sent a cancel (its deadline passed). Long remote work should check it and return early. */
LOOM_API bool loom_fiber_cancel_requested(void);

#ifdef __cplusplus
}
#endif
#endif
