/* SPDX-License-Identifier: MIT
 * timer.h - per-core timers on a hierarchical timing wheel.
 *
 * A timer belongs to the core that initialised it and fires there, from the reactor loop,
 * never inline from loom_timer_start(). Arming and cancelling are O(1) and allocate nothing.
 * Resolution is 1024 ns (one wheel tick); a timer never fires before its deadline and, unless
 * the loop is stalled, fires within one tick plus one loop iteration after it.
 */
#ifndef LOOM_TIMER_H
#define LOOM_TIMER_H

#include "loom/common.h"

#ifdef __cplusplus
extern "C" {
#endif

struct loom_timer;
typedef void (*loom_timer_fn)(struct loom_timer *timer, void *arg);

/* Caller-owned; fields are private. Keep it alive and unmoved while armed. */
struct loom_timer {
    struct loom_timer *next, *prev; /* wheel slot list */
    int64_t deadline_ns;
    int64_t period_ns; /* > 0 for a periodic timer */
    uint64_t expiry_tick;
    loom_timer_fn fn;
    void *arg;
    uint16_t core;
    uint8_t state; /* idle, armed, firing */
    uint8_t reserved;
};

/* Prepares `timer` for use on the calling core. Core: any reactor thread. */
LOOM_API void loom_timer_init(struct loom_timer *timer);

/* Arms `timer` to call fn(timer, arg) once `deadline_ns` (loom_now_ns() clock) has passed.
 * A deadline in the past fires at the next wheel tick (1024 ns), never from this call.
 * Returns 0, -EALREADY if the timer is armed, -EINVAL if `deadline_ns` is negative.
 * Core: the timer's core. */
LOOM_API int loom_timer_start(struct loom_timer *timer, int64_t deadline_ns, loom_timer_fn fn,
                              void *arg);

/* Arms `timer` to fire every `period_ns` (> 0), first at loom_now_ns() + period_ns. A firing
 * that comes late is not repeated to catch up: the next one is scheduled a period after the
 * previous deadline, or after now if that has passed. Returns 0, -EALREADY, or -EINVAL.
 * Core: the timer's core. */
LOOM_API int loom_timer_start_periodic(struct loom_timer *timer, int64_t period_ns,
                                       loom_timer_fn fn, void *arg);

/* Disarms `timer`. Returns 0 when it was armed and will not fire, -ENOENT when it was not
 * armed (already fired, never armed). May be called from the timer's own callback (for a
 * periodic timer this stops it). Core: the timer's core. */
LOOM_API int loom_timer_cancel(struct loom_timer *timer);

/* True while `timer` is armed and has not fired (a periodic timer stays armed). */
LOOM_API bool loom_timer_is_armed(const struct loom_timer *timer);

#ifdef __cplusplus
}
#endif
#endif
