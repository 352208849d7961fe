/* SPDX-License-Identifier: MIT
 * mem.h - per-core memory: the budget reserved at start-up and the slab allocator on it.
 *
 * Each core's budget (--memory divided among cores) is reserved at start on the core's NUMA
 * node, optionally on huge pages and locked. Fiber records, stacks, cross-core rings, the
 * io_uring state and slab objects are carved from it (the reactor record itself, with its
 * timer wheel, is allocated once at start-up); nothing touches the process heap after
 * start-up. The
 * slab serves power-of-two size classes from 16 B to 64 KiB with per-class free lists; an
 * object freed on a core that does not own it is sent home through the cross-core ring.
 * stats.heap_allocs counts the times a core had to take fresh memory (a free list was empty),
 * so a steady state shows it flat.
 */
#ifndef LOOM_MEM_H
#define LOOM_MEM_H

#include "loom/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LOOM_ALLOC_MAX (64u * 1024u)

/* Allocates `size` bytes (1 .. LOOM_ALLOC_MAX) from the calling core's slab, aligned to
 * min(size rounded up to a power of two, 4096). Returns NULL when the core's budget is
 * exhausted or size is out of range. Core: any reactor thread. */
LOOM_API void *loom_alloc(size_t size);

/* Frees memory from loom_alloc(). On the owner core it goes back to its free list at once;
 * on another core it is sent home (it becomes the message node, so this never allocates).
 * NULL is ignored. Core: any reactor thread. */
LOOM_API void loom_free(void *ptr);

/* Which core owns `ptr` (from loom_alloc or any memory inside a core's budget), or -1. */
LOOM_API int loom_mem_owner(const void *ptr);

/* Bytes of the calling core's budget not yet carved, and the budget per core. */
LOOM_API size_t loom_mem_free_bytes(void);
LOOM_API size_t loom_mem_budget_bytes(void);

#ifdef __cplusplus
}
#endif
#endif
