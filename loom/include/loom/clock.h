/* SPDX-License-Identifier: MIT
 * clock.h - the two clocks of a reactor.
 *
 * Both read CLOCK_MONOTONIC, so their values compare with each other and across cores.
 * CLOCK_MONOTONIC is served by the vDSO (no syscall), never jumps with wall-clock changes and
 * is what io_uring timeouts use, so a deadline computed here means the same to the kernel.
 * The low-resolution clock is the value cached by the reactor once per loop iteration (read
 * when the iteration first needs it): free to read, good for deadlines and coarse timestamps;
 * it lags real time by at most one loop iteration (a task quota, 0.5 ms by default, plus a
 * stall if a fiber misbehaves).
 */
#ifndef LOOM_CLOCK_H
#define LOOM_CLOCK_H

#include "loom/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Precise monotonic time in ns (clock_gettime(CLOCK_MONOTONIC), ~20-50 ns through the vDSO).
 * Any thread. */
LOOM_API int64_t loom_clock_ns(void);

/* The reactor's cached monotonic time in ns, refreshed once per loop iteration: at its start
 * when timers are armed (just before due timers fire), otherwise at the first call in the
 * iteration. It never goes back and is never older than the iteration's start.
 * On a thread that is not a reactor it falls back to loom_clock_ns(). */
LOOM_API int64_t loom_now_ns(void);

/* loom_clock_ns() + `duration_ns` (the precise clock, so the duration counts from now even
 * late in a task quota), saturating at LOOM_NO_DEADLINE; a negative duration gives a
 * deadline that has already passed. */
LOOM_API int64_t loom_deadline_in(int64_t duration_ns);

#ifdef __cplusplus
}
#endif
#endif
