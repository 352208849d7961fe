/* SPDX-License-Identifier: MIT
 * mem.c - per-core memory budgets and the slab allocator on them.
 *
 * All cores' budgets are one reservation of cores * core_bytes, so the owner of any address
 * is (addr - base) / core_bytes: no header per object and no lookup table. Each core carves
 * its budget upward (arena_next) into fiber records, stacks, rings and 64 KiB slab spans; a
 * span serves one size class, recorded in a per-core byte table indexed by span number.
 * Invariants: only the owner core touches its arena and free lists; an object freed by
 * another core travels home as a message node (the object itself), so freeing never
 * allocates; heap_allocs counts every time fresh memory was carved for the slab.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POISON(p, n)   ASAN_POISON_MEMORY_REGION(p, n)
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define POISON(p, n)   ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#include <valgrind/memcheck.h>

#define SLAB_MIN_SHIFT 4 /* 16 B: room for a struct loom_msg when an object goes home */

static size_t align_up(size_t value, size_t align)
{
    return (value + align - 1) & ~(align - 1);
}

int loom__mem_reserve(struct loom__runtime *rt)
{
    LOOM_ASSERT(rt->cores > 0);
    size_t per_core = rt->config.memory_bytes / rt->cores;
    per_core &= ~(((size_t)2 << 20) - 1); /* whole 2 MiB pages, so huge pages can back it */
    if (per_core < ((size_t)8 << 20)) {
        loom__log("error", "--memory %zu bytes gives each of %u cores less than 8 MiB",
                  rt->config.memory_bytes, rt->cores);
        return -EINVAL;
    }
    size_t total = per_core * rt->cores;
    int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
    void *base = MAP_FAILED;
    if (rt->config.hugepages) {
        /* without MAP_NORESERVE, so an empty huge page pool fails here (ENOMEM) instead of
         * with SIGBUS at the first touch */
        base = mmap(NULL, total, PROT_READ | PROT_WRITE, (flags & ~MAP_NORESERVE) | MAP_HUGETLB, -1,
                    0);
        if (base == MAP_FAILED)
            loom__log("warning",
                      "--hugepages: no hugetlbfs pages for %zu MiB (vm.nr_hugepages); "
                      "using transparent huge pages",
                      total >> 20);
    }
    if (base == MAP_FAILED) {
        base = mmap(NULL, total + ((size_t)2 << 20), PROT_READ | PROT_WRITE, flags, -1, 0);
        if (base == MAP_FAILED) {
            loom__log("error", "cannot reserve %zu MiB of memory: %s", total >> 20,
                      strerror(errno));
            return -errno;
        }
        /* align to 2 MiB so transparent huge pages can back whole pages */
        char *aligned = (char *)align_up((size_t)base, (size_t)2 << 20);
        size_t head = (size_t)(aligned - (char *)base);
        if (head)
            munmap(base, head);
        size_t tail = ((size_t)2 << 20) - head;
        if (tail)
            munmap(aligned + total, tail);
        base = aligned;
        if (rt->config.hugepages)
            madvise(base, total, MADV_HUGEPAGE);
    }
    rt->memory_lo = base;
    rt->memory_bytes = total;
    if (rt->config.io_buffer_bytes == 0) {
        size_t pool = per_core / 8;
        rt->config.io_buffer_bytes = pool < ((size_t)16 << 20) ? pool : ((size_t)16 << 20);
    }
    if (rt->config.net_buffer_bytes == 0) {
        size_t ring = per_core / 8;
        rt->config.net_buffer_bytes = ring < ((size_t)32 << 20) ? ring : ((size_t)32 << 20);
    }
    rt->core_bytes = per_core;
    return 0;
}

void loom__mem_release(struct loom__runtime *rt)
{
    if (rt->memory_lo) {
        UNPOISON(rt->memory_lo, rt->memory_bytes);
        munmap(rt->memory_lo, rt->memory_bytes);
    }
    rt->memory_lo = NULL;
}

int loom__mem_core_init(struct loom__reactor *r)
{
    struct loom__runtime *rt = &loom__rt;
    r->arena_lo = rt->memory_lo + (size_t)r->core * rt->core_bytes;
    r->arena_hi = r->arena_lo + rt->core_bytes;
    r->arena_next = r->arena_lo;
    if (rt->config.lock_memory && mlock(r->arena_lo, rt->core_bytes) != 0) {
        int err = errno;
        loom__log("error",
                  "--lock-memory: mlock of %zu MiB failed: %s (raise RLIMIT_MEMLOCK, "
                  "ulimit -l, or run with CAP_IPC_LOCK)",
                  rt->core_bytes >> 20, strerror(err));
        return -err;
    }
    POISON(r->arena_lo, rt->core_bytes);
    size_t spans = rt->core_bytes / LOOM_SLAB_SPAN;
    r->span_class = loom__arena_carve(r, spans, LOOM_CACHELINE);
    if (!r->span_class)
        return -ENOMEM;
    memset(r->span_class, 0, spans);
    return 0;
}

void *loom__arena_carve(struct loom__reactor *r, size_t bytes, size_t align)
{
    LOOM_ASSERT(align > 0 && (align & (align - 1)) == 0);
    LOOM_ASSERT(r->arena_next >= r->arena_lo && r->arena_next <= r->arena_hi);
    char *p = (char *)align_up((size_t)r->arena_next, align);
    if (p > r->arena_hi || (size_t)(r->arena_hi - p) < bytes)
        return NULL;
    r->arena_next = p + bytes;
    UNPOISON(p, bytes);
    return p;
}

size_t loom_mem_free_bytes(void)
{
    struct loom__reactor *r = loom__reactor();
    return (size_t)(r->arena_hi - r->arena_next);
}

size_t loom_mem_budget_bytes(void)
{
    return loom__rt.core_bytes;
}

int loom_mem_owner(const void *ptr)
{
    const char *p = ptr;
    struct loom__runtime *rt = &loom__rt;
    if (!rt->memory_lo || p < rt->memory_lo || p >= rt->memory_lo + rt->memory_bytes)
        return -1;
    return (int)((size_t)(p - rt->memory_lo) / rt->core_bytes);
}

static unsigned size_class(size_t size)
{
    if (size <= ((size_t)1 << SLAB_MIN_SHIFT))
        return 0;
    unsigned shift = 64u - (unsigned)__builtin_clzll((unsigned long long)(size - 1));
    return shift - SLAB_MIN_SHIFT;
}

static size_t class_bytes(unsigned cls)
{
    return (size_t)1 << (cls + SLAB_MIN_SHIFT);
}

static bool slab_refill(struct loom__reactor *r, unsigned cls)
{
    size_t size = class_bytes(cls);
    char *span = loom__arena_carve(r, LOOM_SLAB_SPAN, LOOM_SLAB_SPAN);
    if (!span)
        return false;
    LOOM_STAT_INC(r, heap_allocs);
    size_t index = (size_t)(span - r->arena_lo) / LOOM_SLAB_SPAN;
    LOOM_ASSERT(r->span_class[index] == 0);
    r->span_class[index] = (uint8_t)(cls + 1);
    /* thread the span's objects into the free list, lowest address first */
    void **link = &r->slab[cls].free;
    for (size_t off = 0; off + size <= LOOM_SLAB_SPAN; off += size) {
        *link = span + off;
        link = (void **)(span + off);
    }
    *link = NULL;
    POISON(span, LOOM_SLAB_SPAN);
    return true;
}

void *loom_alloc(size_t size)
{
    struct loom__reactor *r = loom__reactor();
    if (size == 0 || size > LOOM_ALLOC_MAX)
        return NULL;
    unsigned cls = size_class(size);
    LOOM_ASSERT(cls < LOOM_SLAB_CLASSES && class_bytes(cls) >= size);
    if (!r->slab[cls].free && !slab_refill(r, cls))
        return NULL;
    void *p = r->slab[cls].free;
    UNPOISON(p, sizeof(void *));
    r->slab[cls].free = *(void **)p;
    r->slab[cls].in_use++;
    UNPOISON(p, class_bytes(cls));
    VALGRIND_MALLOCLIKE_BLOCK(p, size, 0, 0);
    return p;
}

/* Returns an object to the free list of its (this) core; also the handler of objects that
 * another core freed and sent home. */
static void free_home(struct loom_msg *msg)
{
    struct loom__reactor *r = loom__reactor();
    char *p = (char *)msg;
    LOOM_ASSERT(p >= r->arena_lo && p < r->arena_hi);
    size_t index = (size_t)(p - r->arena_lo) / LOOM_SLAB_SPAN;
    unsigned cls = (unsigned)r->span_class[index];
    LOOM_ASSERTF(cls != 0, "loom_free(%p): not memory from loom_alloc", (void *)p);
    cls -= 1;
    LOOM_ASSERTF(((size_t)(p - r->arena_lo) & (class_bytes(cls) - 1)) == 0,
                 "loom_free(%p): not the start of an allocation", (void *)p);
    LOOM_ASSERT(r->slab[cls].in_use > 0);
    r->slab[cls].in_use--;
    VALGRIND_FREELIKE_BLOCK(p, 0);
    /* the free list's link lives in the object's first word: ours again, for memcheck too */
    VALGRIND_MAKE_MEM_UNDEFINED(p, sizeof(void *));
    *(void **)p = r->slab[cls].free;
    r->slab[cls].free = p;
    POISON(p + sizeof(void *), class_bytes(cls) - sizeof(void *));
}

void loom_free(void *ptr)
{
    if (!ptr)
        return;
    struct loom__reactor *r = loom__reactor();
    int owner = loom_mem_owner(ptr);
    LOOM_ASSERTF(owner >= 0, "loom_free(%p): not memory from loom_alloc", ptr);
    if ((unsigned)owner != r->core) {
        /* foreign memory goes home: the object itself is the message node */
        loom_msg_send((unsigned)owner, (struct loom_msg *)ptr, free_home);
        return;
    }
    free_home((struct loom_msg *)ptr);
}
