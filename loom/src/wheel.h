/* SPDX-License-Identifier: MIT
 * wheel.h - the hierarchical timing wheel behind loom timers (internal).
 *
 * 7 levels of 64 slots, one tick = 1024 ns, so level L slot covers 64^L ticks and the wheel
 * spans 2^42 ticks (~52 days); a later deadline is parked in the top level and placed again
 * when reached. Timers sit in doubly linked slot lists, so add and remove are O(1); a per-level
 * bitmap of non-empty slots lets advance() jump over empty time in O(levels). Timers cascade
 * to lower levels as time reaches their slot, so none fires early or out of deadline order
 * (within one tick, timers fire in the order they were armed).
 */
#ifndef LOOM_WHEEL_H
#define LOOM_WHEEL_H

#include <stdint.h>

#include "loom/timer.h"

#define LOOM_WHEEL_LEVELS     7
#define LOOM_WHEEL_SLOTS      64
#define LOOM_WHEEL_TICK_SHIFT 10 /* 1 tick = 1024 ns */

struct loom__wheel {
    uint64_t now_tick; /* every timer with expiry_tick <= now_tick has fired */
    uint64_t bitmap[LOOM_WHEEL_LEVELS];
    struct loom_timer *slots[LOOM_WHEEL_LEVELS][LOOM_WHEEL_SLOTS]; /* list heads */
    uint64_t armed;                                                /* number of armed timers */
    uint64_t fired;                                                /* timers fired (for stats) */
};

/* Starts the wheel at time `now_ns`. */
void loom__wheel_init(struct loom__wheel *wheel, int64_t now_ns);

/* Inserts idle `timer` (deadline_ns, period_ns, fn, arg set) and marks it armed. O(1). */
void loom__wheel_add(struct loom__wheel *wheel, struct loom_timer *timer);

/* Removes armed `timer` (also one due in advance() whose callback has not run) and marks it
 * idle. O(1). */
void loom__wheel_remove(struct loom__wheel *wheel, struct loom_timer *timer);

/* Advances the wheel to `now_ns`, calling fn of every timer whose deadline, rounded up to a
 * tick, is <= now_ns in deadline order (periodic timers are re-armed). Callbacks may arm and
 * cancel timers, including other due ones. Returns how many fired. */
uint64_t loom__wheel_advance(struct loom__wheel *wheel, int64_t now_ns);

/* The earliest time at which advance() has work (a firing or a cascade), or
 * LOOM_NO_DEADLINE when no timer is armed. Never later than the earliest deadline rounded up
 * to a tick (a timer fires at the start of the first tick at or after its deadline). */
int64_t loom__wheel_next_ns(const struct loom__wheel *wheel);

#endif
