/* SPDX-License-Identifier: MIT
 * common.h - shared definitions of the loom public API: export macro, deadlines, errors.
 *
 * Conventions for every loom function: actions return int, >= 0 for success (or a count) and
 * -errno for failure, exactly as an io_uring CQE carries it. Predicates return bool. Times are
 * int64_t nanoseconds on CLOCK_MONOTONIC (see clock.h); deadlines are absolute.
 */
#ifndef LOOM_COMMON_H
#define LOOM_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define LOOM_API __attribute__((visibility("default")))
#else
#define LOOM_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* A deadline that never passes. Every blocking call takes a deadline; pass this for none. */
#define LOOM_NO_DEADLINE INT64_MAX

#define LOOM_NS_PER_US 1000LL
#define LOOM_NS_PER_MS 1000000LL
#define LOOM_NS_PER_S  1000000000LL

/* The most cores loom drives in one process. */
#define LOOM_CORES_MAX 256

#ifdef __cplusplus
}
#endif
#endif
