/* SPDX-License-Identifier: MIT
 * mem_test.c - per-core memory: slab sizes and alignment, reuse, foreign frees going home,
 * budget exhaustion failing cleanly, and the steady state of the runtime allocating nothing:
 * this program interposes malloc/calloc/realloc/free itself and counts every call made on a
 * reactor thread while a mixed workload (spawn, join, yield, NOPs, timers, cross-core calls,
 * messages, remote posts, slab traffic) runs after a warm-up. The count must be zero, and so
 * must the growth of the runtime's own heap_allocs counter.
 * LOOM_TEST_TAGS: no-asan no-valgrind
 */
#include <errno.h>
#include <stdatomic.h>

#include "harness.h"
#include "internal.h"
#include "loom/loom.h"

#include "alloc_count.h" /* malloc interposition: counts calls made on reactor threads */

/* ---- slab ----------------------------------------------------------------------------------- */

static void *foreign[];

static void test_slab(void)
{
    CHECK(loom_alloc(0) == NULL);
    CHECK(loom_alloc(LOOM_ALLOC_MAX + 1) == NULL);
    void *ptrs[64];
    int n = 0;
    for (size_t size = 1; size <= LOOM_ALLOC_MAX; size = size * 2 + 3) {
        char *p = loom_alloc(size);
        CHECK(p != NULL);
        size_t pow2 = 16;
        while (pow2 < size)
            pow2 *= 2;
        size_t align = pow2 < 4096 ? pow2 : 4096;
        CHECK_EQ((uintptr_t)p % align, 0);
        CHECK_EQ(loom_mem_owner(p), (int)loom_core_id());
        memset(p, 0xab, size);
        ptrs[n++] = p;
    }
    for (int i = 0; i < n; i++)
        loom_free(ptrs[i]);
    /* LIFO reuse: freeing and allocating the same class gives the same object back */
    void *a = loom_alloc(100);
    loom_free(a);
    CHECK(loom_alloc(100) == a);
    loom_free(a);
    CHECK_EQ(loom_mem_owner(&n), (int)loom_core_id()); /* fiber stacks are in the budget */
    CHECK_EQ(loom_mem_owner(foreign), -1);             /* a global is not */
    loom_free(NULL);
}

/* ---- foreign frees -------------------------------------------------------------------------- */

#define FOREIGN 512
static void *foreign[FOREIGN];

static int alloc_on_core1(void *arg)
{
    size_t size = (size_t)(uintptr_t)arg;
    for (int i = 0; i < FOREIGN; i++) {
        foreign[i] = loom_alloc(size);
        CHECK(foreign[i] != NULL);
        CHECK_EQ(loom_mem_owner(foreign[i]), 1);
    }
    return 0;
}

static int core1_heap_allocs_and_free(void *arg)
{
    struct loom_stats stats;
    CHECK_EQ(loom_stats_get(1, &stats), 0);
    *(uint64_t *)arg = stats.heap_allocs;
    return (int)(loom_mem_free_bytes() >> 20);
}

static void test_foreign_free(void)
{
    CHECK_EQ(loom_invoke_on(1, alloc_on_core1, (void *)(uintptr_t)200, LOOM_NO_DEADLINE), 0);
    uint64_t allocs_before = 0, allocs_after = 0;
    int free_mib = loom_invoke_on(1, core1_heap_allocs_and_free, &allocs_before, LOOM_NO_DEADLINE);
    for (int i = 0; i < FOREIGN; i++)
        loom_free(foreign[i]); /* core 0 frees core 1's memory: it goes home */
    loom_sleep(5 * LOOM_NS_PER_MS);
    /* core 1 allocates the same amount again: all from its free list, nothing carved */
    CHECK_EQ(loom_invoke_on(1, alloc_on_core1, (void *)(uintptr_t)200, LOOM_NO_DEADLINE), 0);
    CHECK_EQ(loom_invoke_on(1, core1_heap_allocs_and_free, &allocs_after, LOOM_NO_DEADLINE),
             free_mib);
    CHECK_EQ(allocs_after, allocs_before);
    for (int i = 0; i < FOREIGN; i++)
        loom_free(foreign[i]);
    loom_sleep(5 * LOOM_NS_PER_MS);
}

/* ---- the steady state allocates nothing ----------------------------------------------------- */

static struct loom_baton ping;

static int remote_work(void *arg)
{
    (void)arg;
    void *p = loom_alloc(300);
    CHECK(p != NULL);
    loom_free(p);
    return 1;
}

static int post_ping(void *arg)
{
    (void)arg;
    loom_baton_post(&ping);
    return 0;
}

static int child(void *arg)
{
    (void)arg;
    loom_yield();
    CHECK_EQ(loom_nop(), 0);
    loom_sleep(10 * LOOM_NS_PER_US);
    return 3;
}

static void one_round(void)
{
    struct loom_fiber *fibers[16];
    struct loom_fiber_attr attr = {.name = "child", .stack = LOOM_STACK_SMALL, .joinable = true};
    for (int i = 0; i < 16; i++)
        CHECK_EQ(loom_spawn(&fibers[i], child, NULL, &attr), 0);
    CHECK_EQ(loom_invoke_on(1, remote_work, NULL, LOOM_NO_DEADLINE), 1);
    CHECK_EQ(loom_submit_to(1, post_ping, NULL), 0);
    CHECK_EQ(loom_baton_wait(&ping, loom_deadline_in(5 * LOOM_NS_PER_S)), 0);
    CHECK_EQ(loom_invoke_on_all(remote_work, NULL, LOOM_NO_DEADLINE), 0);
    for (int i = 0; i < 16; i++) {
        int result = 0;
        CHECK_EQ(loom_fiber_join(fibers[i], LOOM_NO_DEADLINE, &result), 0);
        CHECK_EQ(result, 3);
    }
}

static void heap_allocs_all(uint64_t *out)
{
    *out = 0;
    for (unsigned core = 0; core < loom_core_count(); core++) {
        struct loom_stats stats;
        CHECK_EQ(loom_stats_get(core, &stats), 0);
        *out += stats.heap_allocs;
    }
}

static void test_steady_state(void)
{
    /* the interposer really sees a reactor thread's allocations (else zero proves nothing) */
    atomic_store(&alloc_counting, true);
    void *volatile probe = malloc(24);
    free(probe);
    atomic_store(&alloc_counting, false);
    CHECK_EQ(atomic_exchange(&alloc_reactor_calls, 0), 2);

    loom_baton_init(&ping);
    for (int i = 0; i < 50; i++) /* warm-up: pools and free lists fill */
        one_round();
    loom_sleep(5 * LOOM_NS_PER_MS); /* memory sent home has arrived */
    uint64_t before, after;
    heap_allocs_all(&before);
    atomic_store(&alloc_counting, true);
    int64_t rounds = test_scale(2000);
    for (int64_t i = 0; i < rounds; i++)
        one_round();
    loom_sleep(5 * LOOM_NS_PER_MS);
    atomic_store(&alloc_counting, false);
    heap_allocs_all(&after);
    CHECK_EQ(atomic_load(&alloc_reactor_calls), 0);
    CHECK_EQ(after - before, 0);
    loom_baton_deinit(&ping);
}

static int main_fiber(void *arg)
{
    (void)arg;
    test_slab();
    test_foreign_free();
    test_steady_state();
    return 0;
}

/* ---- a small budget runs out cleanly -------------------------------------------------------- */

static int runs;

static int count_run(void *arg)
{
    (void)arg;
    loom_yield(); /* hold the stack across a turn, so the burst needs many at once */
    runs++;
    return 0;
}

static int exhaust(void *arg)
{
    (void)arg;
    /* first the stacks (slab spans carved below never return to the arena): a burst of
     * spawns larger than the budget's stacks is throttled, not failed: the fibers that find
     * no stack wait for one to come back, and every one of them runs */
    struct loom_fiber_attr large = {.name = "large", .stack = LOOM_STACK_LARGE};
    int spawned = 200; /* 200 x 256 KiB (more under ASan) is far more than 16 MiB */
    for (int i = 0; i < spawned; i++)
        CHECK_EQ(loom_spawn(NULL, count_run, NULL, &large), 0);
    while (runs < spawned)
        loom_yield();
    CHECK_EQ(runs, spawned);
    struct loom_stats stats;
    CHECK_EQ(loom_stats_get(0, &stats), 0);
    CHECK_GT(stats.stack_waits, 0);
    return 0;
}

static int exhaust_slab(void *arg)
{
    (void)arg;
    size_t taken = 0;
    void *last = NULL;
    for (;;) {
        void *p = loom_alloc(LOOM_ALLOC_MAX);
        if (!p)
            break;
        *(void **)p = last; /* chain them so they can be given back */
        last = p;
        taken += LOOM_ALLOC_MAX;
    }
    CHECK_GT(taken, 4u << 20);
    CHECK_LT(loom_mem_free_bytes(), LOOM_SLAB_SPAN);
    while (last) {
        void *next = *(void **)last;
        loom_free(last);
        last = next;
    }
    /* after giving it back the budget serves again */
    void *p = loom_alloc(LOOM_ALLOC_MAX);
    CHECK(p != NULL);
    loom_free(p);

    return 0;
}

int main(void)
{
    CHECK_EQ(test_run(2, main_fiber, NULL), 0);
    struct loom_config config;
    test_config(&config, 1);
    config.memory_bytes = 16u << 20;
    CHECK_EQ(loom_run(&config, exhaust, NULL), 0);
    CHECK_EQ(loom_run(&config, exhaust_slab, NULL), 0);
    return 0;
}
