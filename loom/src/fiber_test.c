/* SPDX-License-Identifier: MIT
 * fiber_test.c - fibers: spawn, yield order, join, results, names, stack classes, recycling
 * of stacks and records over 100k fibers, the task quota ending a pass of yielding fibers, and
 * a guard-page hit reported with the fiber's name.
 */
#include <errno.h>
#include <signal.h>
#include <sys/wait.h>

#include "harness.h"
#include "internal.h"
#include "loom/loom.h"

static int order[16];
static int order_len;

static int record_order(void *arg)
{
    int id = (int)(intptr_t)arg;
    for (int round = 0; round < 3; round++) {
        order[order_len++] = id * 10 + round;
        loom_yield();
    }
    return id;
}

static void test_yield_order(void)
{
    struct loom_fiber *f[3];
    struct loom_fiber_attr attr = {.name = "order", .joinable = true};
    order_len = 0;
    for (int i = 0; i < 3; i++)
        CHECK_EQ(loom_spawn(&f[i], record_order, (void *)(intptr_t)(i + 1), &attr), 0);
    for (int i = 0; i < 3; i++) {
        int result = -1;
        CHECK_EQ(loom_fiber_join(f[i], LOOM_NO_DEADLINE, &result), 0);
        CHECK_EQ(result, i + 1);
    }
    /* round robin: 10 20 30 11 21 31 12 22 32 */
    static const int want[] = {10, 20, 30, 11, 21, 31, 12, 22, 32};
    CHECK_EQ(order_len, 9);
    for (int i = 0; i < 9; i++)
        CHECK_EQ(order[i], want[i]);
}

static int name_check(void *arg)
{
    (void)arg;
    CHECK_STREQ(loom_fiber_name(loom_fiber_self()), "a-rather-long-fiber-name-that-i");
    return 0;
}

static void test_names(void)
{
    struct loom_fiber *f;
    struct loom_fiber_attr attr = {.name = "a-rather-long-fiber-name-that-is-cut-here",
                                   .joinable = true};
    CHECK_EQ(loom_spawn(&f, name_check, NULL, &attr), 0);
    CHECK_EQ(loom_fiber_join(f, LOOM_NO_DEADLINE, NULL), 0);
    CHECK_STREQ(loom_fiber_name(loom_fiber_self()), "main");
}

static int use_stack(void *arg)
{
    size_t bytes = (size_t)(uintptr_t)arg;
    volatile char buffer[200 * 1024];
    size_t n = bytes < sizeof(buffer) ? bytes : sizeof(buffer);
    for (size_t i = 0; i < n; i += 512)
        buffer[i] = (char)i;
    return (int)buffer[n / 2 & ~(size_t)511];
}

static void test_stack_classes(void)
{
    struct loom_fiber *f;
    struct loom_fiber_attr attr = {.name = "large", .stack = LOOM_STACK_LARGE, .joinable = true};
    CHECK_EQ(loom_spawn(&f, use_stack, (void *)(uintptr_t)(180 * 1024), &attr), 0);
    CHECK_EQ(loom_fiber_join(f, LOOM_NO_DEADLINE, NULL), 0);
}

static int64_t finished;

static int tiny(void *arg)
{
    (void)arg;
    if (finished % 3 == 0)
        loom_yield();
    finished++;
    return 0;
}

/* 100k fibers over time, at most 1,000 alive: records and stacks must be recycled, so the
 * budget does not grow after the first wave. */
static void test_recycling(void)
{
    int64_t total = test_scale(100000);
    finished = 0;
    struct loom_stats before, after;
    int64_t spawned = 0;
    size_t free_before = 0;
    struct loom_fiber_attr small = {.name = "tiny", .stack = LOOM_STACK_SMALL};
    while (spawned < total) {
        for (int i = 0; i < 1000 && spawned < total; i++, spawned++)
            CHECK_EQ(loom_spawn(NULL, tiny, NULL, &small), 0);
        while (finished < spawned)
            loom_yield();
        if (spawned == 1000) {
            free_before = loom_mem_free_bytes();
            CHECK_EQ(loom_stats_get(0, &before), 0);
        }
    }
    CHECK_EQ(finished, total);
    if (total > 1000) {
        CHECK_EQ(loom_stats_get(0, &after), 0);
        CHECK_EQ(loom_mem_free_bytes(), free_before);
        CHECK_EQ(after.heap_allocs, before.heap_allocs);
        CHECK_EQ(after.fibers_spawned - before.fibers_spawned, (uint64_t)(total - 1000));
    }
}

static bool quota_stop;

static int spinner(void *arg)
{
    (void)arg;
    while (!quota_stop)
        loom_yield();
    return 0;
}

static void quota_nop_done(struct loom_op *op)
{
    (void)op;
    quota_stop = true;
}

static void quota_timer_fired(struct loom_timer *timer, void *arg)
{
    (void)timer;
    (void)arg;
}

/* Fibers that only yield keep a pass going until the task quota ends it; the loop then reaps a
 * NOP whose callback stops them. Run with the timing wheel empty (the loop then reads the
 * clock only for the quota check) and with a timer armed (a read every iteration). */
static void test_task_quota(bool timer_armed)
{
    struct loom_fiber *f[4];
    struct loom_fiber_attr attr = {.name = "spinner", .joinable = true};
    struct loom_timer timer;
    struct loom_op op = {0};
    loom_timer_init(&timer);
    if (timer_armed)
        CHECK_EQ(loom_timer_start(&timer, loom_deadline_in(3600 * LOOM_NS_PER_S), quota_timer_fired,
                                  NULL),
                 0);
    quota_stop = false;
    int64_t start = loom_clock_ns();
    for (int i = 0; i < 4; i++)
        CHECK_EQ(loom_spawn(&f[i], spinner, NULL, &attr), 0);
    loom_op_nop(&op, quota_nop_done, NULL);
    for (int i = 0; i < 4; i++)
        CHECK_EQ(loom_fiber_join(f[i], LOOM_NO_DEADLINE, NULL), 0);
    CHECK(quota_stop);
    CHECK_LT(loom_clock_ns() - start, 5 * LOOM_NS_PER_S); /* 0.5 ms, or ~100 under valgrind */
    if (timer_armed)
        CHECK_EQ(loom_timer_cancel(&timer), 0);
}

static int test_main(void *arg)
{
    (void)arg;
    test_yield_order();
    test_names();
    test_stack_classes();
    test_recycling();
    test_task_quota(false);
    test_task_quota(true);
    return 0;
}

static int recurse(int depth)
{
    volatile char pad[1024];
    pad[0] = (char)depth;
    return depth > 100000 ? pad[0] : recurse(depth + 1) + pad[0];
}

static int overflow_fiber(void *arg)
{
    (void)arg;
    return recurse(0);
}

static int overflow_main(void *arg)
{
    (void)arg;
    struct loom_fiber *f;
    struct loom_fiber_attr attr = {
        .name = "deep-recursion", .stack = LOOM_STACK_SMALL, .joinable = true};
    CHECK_EQ(loom_spawn(&f, overflow_fiber, NULL, &attr), 0);
    loom_fiber_join(f, LOOM_NO_DEADLINE, NULL);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "overflow") == 0)
        return test_run(1, overflow_main, NULL);
    CHECK_EQ(test_run(1, test_main, NULL), 0);
    /* guard page: a child overflows a small stack and must die with a message naming it */
    if (!test_under_asan() && !test_under_valgrind()) {
        char out[8192];
        char *child[] = {argv[0], "overflow", NULL};
        int status = test_spawn(child, NULL, out, sizeof(out), 20000);
        CHECK(WIFSIGNALED(status));
        CHECK_EQ(WTERMSIG(status), SIGABRT);
        CHECK_CONTAINS(out, "fiber 'deep-recursion' overflowed its");
    }
    return 0;
}
