/* SPDX-License-Identifier: MIT
 * alloc_count.h - counts heap allocations made on loom reactor threads, for tests that prove a
 * path allocates nothing. A test includes this once (it defines malloc, calloc, realloc, free,
 * posix_memalign and aligned_alloc, forwarding to glibc's __libc_* versions), sets
 * alloc_counting while the path runs and reads alloc_reactor_calls. Not for ASan or valgrind
 * builds, which interpose these themselves (tag such tests no-asan no-valgrind).
 */
#ifndef LOOM_TEST_ALLOC_COUNT_H
#define LOOM_TEST_ALLOC_COUNT_H

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loom/reactor.h"

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *ptr, size_t size);
extern void __libc_free(void *ptr);
extern void *__libc_memalign(size_t align, size_t size);

static _Atomic bool alloc_counting;          /* count while true */
static _Atomic uint64_t alloc_reactor_calls; /* calls made on reactor threads meanwhile */

static void alloc_note(void)
{
    if (atomic_load_explicit(&alloc_counting, memory_order_relaxed) && loom_on_reactor())
        atomic_fetch_add(&alloc_reactor_calls, 1);
}

void *malloc(size_t size)
{
    alloc_note();
    return __libc_malloc(size);
}

void *calloc(size_t n, size_t size)
{
    alloc_note();
    return __libc_calloc(n, size);
}

void *realloc(void *ptr, size_t size)
{
    alloc_note();
    return __libc_realloc(ptr, size);
}

void free(void *ptr)
{
    if (ptr)
        alloc_note();
    __libc_free(ptr);
}

int posix_memalign(void **out, size_t align, size_t size)
{
    alloc_note();
    void *p = __libc_memalign(align, size);
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}

void *aligned_alloc(size_t align, size_t size)
{
    alloc_note();
    return __libc_memalign(align, size);
}

#endif
