/* SPDX-License-Identifier: MIT
 * fault.h - deterministic fault injection for file IO (tests).
 *
 * When enabled on a core, every file request (io.h, io_backend.h) passes through a list of
 * rules before it reaches the backend. A rule matches by kind and fires on the nth matching
 * request or at random with a probability; it fails the request with an error, shortens its
 * transfer, or delays its completion. All randomness comes from the seed, and decisions depend
 * only on the order of requests, so a run is replayed exactly from the same seed.
 */
#ifndef LOOM_FAULT_H
#define LOOM_FAULT_H

#include "loom/common.h"

#ifdef __cplusplus
extern "C" {
#endif

enum loom_fault_action {
    LOOM_FAULT_FAIL = 1,  /* complete with `error` (e.g. -EIO, -ENOSPC) without doing it */
    LOOM_FAULT_SHORT = 2, /* reads/writes only: transfer a seeded shorter length (>= 1 byte,
                           * or one alignment unit for O_DIRECT files) */
    LOOM_FAULT_DELAY = 3, /* start it `delay_ns` later */
};

struct loom_fault_rule {
    uint32_t kinds;     /* bit mask of 1u << LOOM_IO_* (io_backend.h); 0 = every kind */
    uint64_t nth;       /* fire on the nth matching request (1-based); 0 = by probability */
    double probability; /* chance to fire per matching request when nth == 0 */
    enum loom_fault_action action;
    int error;          /* FAIL: the -errno to complete with */
    int64_t delay_ns;   /* DELAY */
    uint32_t max_fires; /* stop after firing this often; 0 = no limit */
};

struct loom_fault_config {
    uint64_t seed;
    const struct loom_fault_rule *rules; /* copied */
    unsigned rule_count;                 /* at most LOOM_FAULT_RULES_MAX */
};
#define LOOM_FAULT_RULES_MAX 16

/* Enables fault injection on the calling core with `config` (replacing any earlier one).
 * Returns 0 or -EINVAL. Core: any reactor thread. */
LOOM_API int loom_fault_enable(const struct loom_fault_config *config);

/* Turns it off on the calling core; delayed requests still start when their time comes. */
LOOM_API void loom_fault_disable(void);

/* How many faults fired on the calling core since loom_fault_enable(). */
LOOM_API uint64_t loom_fault_fired(void);

#ifdef __cplusplus
}
#endif
#endif
