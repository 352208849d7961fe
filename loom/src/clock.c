/* SPDX-License-Identifier: MIT
 * clock.c - the precise and the low-resolution (per loop iteration) monotonic clocks.
 *
 * Why CLOCK_MONOTONIC: the vDSO serves it without a syscall, it never jumps with wall-clock
 * changes, and io_uring timeouts use it, so deadlines mean the same to us and to the kernel.
 */
#include <time.h>

#include "internal.h"

int64_t loom__clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * LOOM_NS_PER_S + ts.tv_nsec;
}

int64_t loom_clock_ns(void)
{
    return loom__clock_ns();
}

int64_t loom_now_ns(void)
{
    struct loom__reactor *r = loom__self;
    return r ? loom__now(r) : loom__clock_ns();
}

int64_t loom_deadline_in(int64_t duration_ns)
{
    /* the precise clock: "duration from now" must hold even when the running fiber has
     * outlived the loop's cached time, or a short deadline would already have passed */
    int64_t now = loom__clock_ns();
    if (duration_ns >= LOOM_NO_DEADLINE - now)
        return LOOM_NO_DEADLINE;
    return now + duration_ns;
}
