/* SPDX-License-Identifier: MIT
 * timer.c - the per-core hierarchical timing wheel (wheel.h) and the public timer API (timer.h).
 *
 * Invariants, with now = wheel->now_tick and E = timer->expiry_tick (the tick at which the
 * wheel next handles the timer) for every timer in a slot:
 *   - E > now: every timer due at or before now has been moved out (fired or re-placed);
 *   - a timer at level L < 6 has the same base-64 digits as now above L and a larger digit at
 *     L; at the top level, 1 <= (E >> 36) - (now >> 36) <= 63 (the top level wraps around);
 *   - so the level and slot follow from (E, now) alone, which is what makes removal O(1), and
 *     all timers with the same E share one FIFO slot list (arming order within a tick);
 *   - a deadline beyond the top level's window is parked: E is a top-level slot boundary, on a
 *     grid fixed by the deadline (not by when it was armed), so parked timers keep their
 *     arming order; at E the timer is placed again from its deadline.
 * Slot lists are circular (head->prev is the tail) so appending is O(1); the due list built
 * by advance() is circular around a sentinel, so cancelling a due timer needs no head either.
 */
#include <errno.h>
#include <string.h>

#include "internal.h"

enum timer_state {
    TIMER_IDLE = 0, /* not in the wheel (zeroed memory is idle) */
    TIMER_ARMED,    /* in a wheel slot */
    TIMER_FIRING,   /* in advance()'s due list: its callback has not run yet */
};

#define SLOT_BITS      6
#define SLOT_MASK      ((uint64_t)LOOM_WHEEL_SLOTS - 1)
#define TOP_LEVEL      (LOOM_WHEEL_LEVELS - 1)
#define TOP_SHIFT      (TOP_LEVEL * SLOT_BITS)
#define TICK_NS        ((int64_t)1 << LOOM_WHEEL_TICK_SHIFT)
#define NO_EVENT       UINT64_MAX
#define CHECK_WALK_MAX 65536 /* wheel_check() walks the lists up to this many armed timers */

_Static_assert(LOOM_WHEEL_SLOTS == 1 << SLOT_BITS, "a slot index is one base-64 digit");
_Static_assert(LOOM_WHEEL_SLOTS == 64, "a level's bitmap is one uint64_t");
_Static_assert(TOP_SHIFT + SLOT_BITS == 42, "the wheel spans 2^42 ticks");

/* ---- tick arithmetic ----------------------------------------------------------------------- */

/* The first tick that starts at or after `deadline_ns`: firing there is never early. */
static uint64_t deadline_tick(int64_t deadline_ns)
{
    LOOM_ASSERT(deadline_ns >= 0);
    return ((uint64_t)deadline_ns + (uint64_t)(TICK_NS - 1)) >> LOOM_WHEEL_TICK_SHIFT;
}

/* The level whose digit is the highest one in which `tick` differs from `now`. */
static unsigned level_of(uint64_t tick, uint64_t now)
{
    LOOM_ASSERT(tick > now);
    unsigned msb = 63u - (unsigned)__builtin_clzll(tick ^ now);
    unsigned level = msb / SLOT_BITS;
    return level < TOP_LEVEL ? level : TOP_LEVEL;
}

static unsigned slot_of(uint64_t tick, unsigned level)
{
    return (unsigned)((tick >> (level * SLOT_BITS)) & SLOT_MASK);
}

static uint64_t rotate_right(uint64_t bits, unsigned n)
{
    return (bits >> n) | (bits << ((64u - n) & 63u));
}

/* Where the wheel next handles a timer due at `tick` (> now): the tick itself when it lies in
 * the top level's window, else a parking boundary. The boundaries for one deadline form the
 * grid (tick >> 36) - 63k, so two timers parked for the same tick always share a slot. */
static uint64_t placement_tick(uint64_t tick, uint64_t now)
{
    uint64_t top_now = now >> TOP_SHIFT;
    uint64_t top_tick = tick >> TOP_SHIFT;
    LOOM_ASSERT(tick > now);
    if (top_tick - top_now < LOOM_WHEEL_SLOTS)
        return tick;
    uint64_t window = LOOM_WHEEL_SLOTS - 1;
    uint64_t park = top_now + 1 + (top_tick - top_now - 1) % window;
    LOOM_ASSERT(park > top_now);
    LOOM_ASSERT(park - top_now <= window);
    return park << TOP_SHIFT;
}

/* ---- slot lists ---------------------------------------------------------------------------- */

static void slot_append(struct loom__wheel *wheel, unsigned level, unsigned slot,
                        struct loom_timer *timer)
{
    struct loom_timer *head = wheel->slots[level][slot];
    if (head == NULL) {
        timer->next = timer->prev = timer;
        wheel->slots[level][slot] = timer;
        wheel->bitmap[level] |= (uint64_t)1 << slot;
        return;
    }
    LOOM_DEBUG_ASSERT(wheel->bitmap[level] & ((uint64_t)1 << slot));
    timer->prev = head->prev;
    timer->next = head;
    head->prev->next = timer;
    head->prev = timer;
}

static void list_unlink(struct loom_timer *timer)
{
    LOOM_ASSERT(timer->next->prev == timer);
    LOOM_ASSERT(timer->prev->next == timer);
    timer->prev->next = timer->next;
    timer->next->prev = timer->prev;
    timer->next = timer->prev = NULL;
}

static void slot_remove(struct loom__wheel *wheel, struct loom_timer *timer)
{
    unsigned level = level_of(timer->expiry_tick, wheel->now_tick);
    unsigned slot = slot_of(timer->expiry_tick, level);
    struct loom_timer **head = &wheel->slots[level][slot];
    LOOM_ASSERTF(*head != NULL, "timer %p not in its slot (level %u slot %u)", (void *)timer, level,
                 slot);
    if (*head == timer) {
        *head = timer->next == timer ? NULL : timer->next;
        if (*head == NULL)
            wheel->bitmap[level] &= ~((uint64_t)1 << slot);
    }
    list_unlink(timer);
}

/* Takes the whole list of a slot, as a NULL-terminated list in arming order. */
static struct loom_timer *slot_take(struct loom__wheel *wheel, unsigned level, unsigned slot)
{
    struct loom_timer *head = wheel->slots[level][slot];
    LOOM_ASSERT(head != NULL);
    LOOM_ASSERT(wheel->bitmap[level] & ((uint64_t)1 << slot));
    wheel->slots[level][slot] = NULL;
    wheel->bitmap[level] &= ~((uint64_t)1 << slot);
    head->prev->next = NULL;
    return head;
}

/* Puts an armed timer into its slot, relative to the wheel's current tick. */
static void place(struct loom__wheel *wheel, struct loom_timer *timer)
{
    uint64_t now = wheel->now_tick;
    uint64_t tick = deadline_tick(timer->deadline_ns);
    if (tick <= now)
        tick = now + 1; /* already due: the next tick, never the current (handled) one */
    tick = placement_tick(tick, now);
    timer->expiry_tick = tick;
    unsigned level = level_of(tick, now);
    slot_append(wheel, level, slot_of(tick, level), timer);
}

/* ---- consistency check (LOOM_DEBUG) ---------------------------------------------------- */

#ifdef LOOM_DEBUG
/* Checks one non-empty slot list; returns its length. */
static uint64_t check_slot(const struct loom__wheel *wheel, unsigned level, unsigned slot)
{
    const struct loom_timer *head = wheel->slots[level][slot];
    const struct loom_timer *timer = head;
    uint64_t count = 0;
    do {
        uint64_t tick = timer->expiry_tick;
        LOOM_ASSERT(timer->state == TIMER_ARMED);
        LOOM_ASSERT(timer->next->prev == timer);
        LOOM_ASSERTF(tick > wheel->now_tick, "tick %llu now %llu", (unsigned long long)tick,
                     (unsigned long long)wheel->now_tick);
        LOOM_ASSERT(level_of(tick, wheel->now_tick) == level);
        LOOM_ASSERT(slot_of(tick, level) == slot);
        /* Only a parked timer is handled before its deadline, at a top-level boundary. */
        LOOM_ASSERT(tick >= deadline_tick(timer->deadline_ns) ||
                    (tick & (((uint64_t)1 << TOP_SHIFT) - 1)) == 0);
        count++;
        timer = timer->next;
    } while (timer != head);
    return count;
}

/* O(slots + timers): bitmaps match the lists, every timer sits where (E, now) says. */
static void wheel_check(const struct loom__wheel *wheel)
{
    bool walk = wheel->armed <= CHECK_WALK_MAX;
    uint64_t count = 0;
    for (unsigned level = 0; level < LOOM_WHEEL_LEVELS; level++) {
        unsigned digit = slot_of(wheel->now_tick, level);
        uint64_t bits = wheel->bitmap[level];
        /* The current digit's slot is always empty; below the top, so are the ones before. */
        if (level < TOP_LEVEL)
            LOOM_ASSERT((bits & (UINT64_MAX >> (63 - digit))) == 0);
        LOOM_ASSERT((bits & ((uint64_t)1 << digit)) == 0);
        for (unsigned slot = 0; slot < LOOM_WHEEL_SLOTS; slot++) {
            bool used = wheel->slots[level][slot] != NULL;
            LOOM_ASSERT(used == ((bits >> slot) & 1));
            if (used && walk)
                count += check_slot(wheel, level, slot);
        }
    }
    LOOM_ASSERT(!walk || count == wheel->armed);
}
#else
static void wheel_check(const struct loom__wheel *wheel)
{
    (void)wheel;
}
#endif

/* ---- the wheel ----------------------------------------------------------------------------- */

void loom__wheel_init(struct loom__wheel *wheel, int64_t now_ns)
{
    LOOM_ASSERT(wheel != NULL);
    LOOM_ASSERT(now_ns >= 0);
    memset(wheel, 0, sizeof(*wheel));
    wheel->now_tick = (uint64_t)now_ns >> LOOM_WHEEL_TICK_SHIFT;
    wheel_check(wheel);
}

void loom__wheel_add(struct loom__wheel *wheel, struct loom_timer *timer)
{
    LOOM_ASSERTF(timer->state == TIMER_IDLE, "timer %p is already armed (state %u)", (void *)timer,
                 timer->state);
    LOOM_ASSERT(timer->fn != NULL);
    LOOM_ASSERT(timer->deadline_ns >= 0);
    timer->state = TIMER_ARMED;
    place(wheel, timer);
    wheel->armed++;
}

void loom__wheel_remove(struct loom__wheel *wheel, struct loom_timer *timer)
{
    LOOM_ASSERTF(timer->state == TIMER_ARMED || timer->state == TIMER_FIRING,
                 "timer %p is not armed (state %u)", (void *)timer, timer->state);
    LOOM_ASSERT(wheel->armed > 0);
    if (timer->state == TIMER_ARMED)
        slot_remove(wheel, timer);
    else
        list_unlink(timer); /* due, its callback not run yet: it will not run */
    timer->state = TIMER_IDLE;
    wheel->armed--;
}

/* The tick of the next event at `level`: a firing at level 0, a cascade above. */
static uint64_t level_next_tick(const struct loom__wheel *wheel, unsigned level)
{
    uint64_t bits = wheel->bitmap[level];
    unsigned shift = level * SLOT_BITS;
    uint64_t digits = wheel->now_tick >> shift; /* now, in this level's slots */
    unsigned digit = (unsigned)(digits & SLOT_MASK);
    LOOM_ASSERT(bits != 0);
    LOOM_DEBUG_ASSERT((bits & ((uint64_t)1 << digit)) == 0);
    if (level == TOP_LEVEL) {
        /* The top level wraps: the next slot after the current digit, in circular order. */
        unsigned distance = (unsigned)__builtin_ctzll(rotate_right(bits, digit));
        LOOM_ASSERT(distance > 0);
        return (digits + distance) << shift;
    }
    LOOM_DEBUG_ASSERT((bits & (UINT64_MAX >> (63 - digit))) == 0);
    unsigned slot = (unsigned)__builtin_ctzll(bits);
    LOOM_ASSERT(slot > digit);
    return ((digits & ~SLOT_MASK) | slot) << shift;
}

/* The wheel's next event and its level, NO_EVENT when the slots are empty. The lowest non-empty
 * level has it: level L's events lie inside the current block of level L + 1, whose events all
 * lie beyond that block. */
static uint64_t next_event(const struct loom__wheel *wheel, unsigned *level)
{
    for (unsigned l = 0; l < LOOM_WHEEL_LEVELS; l++) {
        if (wheel->bitmap[l] != 0) {
            *level = l;
            return level_next_tick(wheel, l);
        }
    }
    return NO_EVENT;
}

int64_t loom__wheel_next_ns(const struct loom__wheel *wheel)
{
    if (wheel->armed == 0) {
        LOOM_DEBUG_ASSERT(next_event(wheel, &(unsigned){0}) == NO_EVENT);
        return LOOM_NO_DEADLINE;
    }
    unsigned level;
    uint64_t tick = next_event(wheel, &level);
    if (tick == NO_EVENT)
        tick = wheel->now_tick; /* only due timers (called from a callback): now */
    LOOM_ASSERT(tick >= wheel->now_tick);
    if (tick > (uint64_t)INT64_MAX >> LOOM_WHEEL_TICK_SHIFT)
        return LOOM_NO_DEADLINE; /* the tick of a LOOM_NO_DEADLINE deadline: never */
    return (int64_t)(tick << LOOM_WHEEL_TICK_SHIFT);
}

/* The deadline after `timer`'s, `now_ns` being the time of the firing: one period later, or
 * one period after now if that has passed (late firings are not repeated to catch up). */
static int64_t periodic_next_ns(const struct loom_timer *timer, int64_t now_ns)
{
    int64_t next;
    LOOM_ASSERT(timer->period_ns > 0);
    if (__builtin_add_overflow(timer->deadline_ns, timer->period_ns, &next))
        return LOOM_NO_DEADLINE;
    if (next <= now_ns && __builtin_add_overflow(now_ns, timer->period_ns, &next))
        return LOOM_NO_DEADLINE;
    LOOM_ASSERT(next > now_ns);
    return next;
}

/* Runs the callbacks of the due list one at a time. Each timer leaves the list before its
 * callback, so the callback may re-arm it or cancel any timer, including later due ones.
 * After the callback the timer is not touched: the callback may have freed it. */
static uint64_t fire_due(struct loom__wheel *wheel, struct loom_timer *due, int64_t now_ns)
{
    uint64_t fired = 0;
    while (due->next != due) {
        struct loom_timer *timer = due->next;
        LOOM_ASSERT(timer->state == TIMER_FIRING);
        LOOM_ASSERT(wheel->armed > 0);
        list_unlink(timer);
        timer->state = TIMER_IDLE;
        wheel->armed--;
        loom_timer_fn fn = timer->fn;
        void *arg = timer->arg;
        if (timer->period_ns > 0) {
            /* Re-armed before the callback: it stays armed in it, and cancel() stops it. */
            timer->deadline_ns = periodic_next_ns(timer, now_ns);
            loom__wheel_add(wheel, timer);
        }
        wheel->fired++;
        fired++;
        fn(timer, arg);
    }
    return fired;
}

/* Handles the slot of the current tick at `level`: its due timers fire, the others (a cascade,
 * or parked timers) move to lower levels. Returns how many fired. */
static uint64_t expire_slot(struct loom__wheel *wheel, unsigned level, int64_t now_ns)
{
    uint64_t now = wheel->now_tick;
    struct loom_timer due = {.next = &due, .prev = &due}; /* sentinel of the due list */
    struct loom_timer *timer = slot_take(wheel, level, slot_of(now, level));
    while (timer != NULL) {
        struct loom_timer *next = timer->next;
        LOOM_ASSERT(timer->state == TIMER_ARMED);
        LOOM_ASSERT(timer->expiry_tick >= now);
        if (deadline_tick(timer->deadline_ns) <= now) {
            LOOM_ASSERT(timer->expiry_tick == now);
            timer->state = TIMER_FIRING;
            timer->prev = due.prev;
            timer->next = &due;
            due.prev->next = timer;
            due.prev = timer;
        } else {
            LOOM_ASSERT(level > 0);
            place(wheel, timer);
        }
        timer = next;
    }
    /* Cascaded timers are all placed before any callback can arm or cancel one. */
    return due.next == &due ? 0 : fire_due(wheel, &due, now_ns);
}

uint64_t loom__wheel_advance(struct loom__wheel *wheel, int64_t now_ns)
{
    LOOM_ASSERT(now_ns >= 0);
    uint64_t target = (uint64_t)now_ns >> LOOM_WHEEL_TICK_SHIFT;
    LOOM_ASSERTF(target >= wheel->now_tick, "time went back: tick %llu < %llu",
                 (unsigned long long)target, (unsigned long long)wheel->now_tick);
    uint64_t fired = 0;
    for (;;) {
        unsigned level;
        uint64_t tick = next_event(wheel, &level);
        if (tick > target)
            break;
        /* Jump over the empty ticks: no timer is due before the next event. */
        LOOM_ASSERT(tick > wheel->now_tick);
        wheel->now_tick = tick;
        fired += expire_slot(wheel, level, now_ns);
    }
    wheel->now_tick = target;
    wheel_check(wheel);
    return fired;
}

/* ---- public API ---------------------------------------------------------------------------- */

/* The calling core's reactor, asserting that `timer` belongs to it. */
static struct loom__reactor *timer_reactor(const struct loom_timer *timer)
{
    struct loom__reactor *r = loom__reactor();
    LOOM_ASSERTF(timer->core == r->core, "timer %p of core %u used on core %u", (const void *)timer,
                 timer->core, r->core);
    LOOM_ASSERTF(timer->state <= TIMER_FIRING, "timer %p not initialised (state %u)",
                 (const void *)timer, timer->state);
    return r;
}

void loom_timer_init(struct loom_timer *timer)
{
    struct loom__reactor *r = loom__reactor();
    LOOM_ASSERT(timer != NULL);
    memset(timer, 0, sizeof(*timer));
    timer->core = (uint16_t)r->core;
    timer->state = TIMER_IDLE;
}

/* The loop does not advance an empty wheel (it reads no clock for one): before the first timer
 * is armed, the wheel's time moves to `now_ns`, so the timer is placed against the present.
 * Nothing is in the slots or due, so no invariant depends on the old time. */
static void wheel_catch_up(struct loom__wheel *wheel, int64_t now_ns)
{
    LOOM_ASSERT(wheel->armed == 0);
    uint64_t tick = (uint64_t)now_ns >> LOOM_WHEEL_TICK_SHIFT;
    if (tick > wheel->now_tick)
        wheel->now_tick = tick;
    wheel_check(wheel);
}

static int timer_arm(struct loom__reactor *r, struct loom_timer *timer, int64_t deadline_ns,
                     int64_t period_ns, loom_timer_fn fn, void *arg)
{
    LOOM_ASSERT(fn != NULL);
    LOOM_ASSERT(deadline_ns >= 0);
    LOOM_ASSERT(period_ns >= 0);
    timer->deadline_ns = deadline_ns;
    timer->period_ns = period_ns;
    timer->fn = fn;
    timer->arg = arg;
    if (r->wheel.armed == 0)
        wheel_catch_up(&r->wheel, loom__now(r));
    loom__wheel_add(&r->wheel, timer);
    LOOM_ASSERT(timer->state == TIMER_ARMED);
    return 0;
}

int loom_timer_start(struct loom_timer *timer, int64_t deadline_ns, loom_timer_fn fn, void *arg)
{
    struct loom__reactor *r = timer_reactor(timer);
    if (timer->state != TIMER_IDLE)
        return -EALREADY;
    if (deadline_ns < 0)
        return -EINVAL;
    return timer_arm(r, timer, deadline_ns, 0, fn, arg);
}

int loom_timer_start_periodic(struct loom_timer *timer, int64_t period_ns, loom_timer_fn fn,
                              void *arg)
{
    struct loom__reactor *r = timer_reactor(timer);
    if (timer->state != TIMER_IDLE)
        return -EALREADY;
    if (period_ns <= 0)
        return -EINVAL;
    int64_t deadline_ns;
    if (__builtin_add_overflow(loom__now(r), period_ns, &deadline_ns))
        deadline_ns = LOOM_NO_DEADLINE;
    return timer_arm(r, timer, deadline_ns, period_ns, fn, arg);
}

int loom_timer_cancel(struct loom_timer *timer)
{
    struct loom__reactor *r = timer_reactor(timer);
    if (timer->state == TIMER_IDLE)
        return -ENOENT;
    loom__wheel_remove(&r->wheel, timer);
    LOOM_ASSERT(timer->state == TIMER_IDLE);
    return 0;
}

bool loom_timer_is_armed(const struct loom_timer *timer)
{
    timer_reactor(timer);
    return timer->state != TIMER_IDLE;
}
