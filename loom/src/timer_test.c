/* SPDX-License-Identifier: MIT
 * timer_test.c - timers on a running reactor (the wheel itself is model-checked in
 * wheel_test): firing order by deadline, never early, periodic timers and cancelling them from
 * their callback, cancel before firing, -EALREADY / -EINVAL / -ENOENT, timers armed after
 * the wheel stayed empty while the loop ran, sleeps, and timers on two cores at once, each
 * firing on its own core.
 * LOOM_TEST_TAGS: tsan
 */
#include <errno.h>
#include <stdatomic.h>

#include "harness.h"
#include "loom/loom.h"

#define N 64
static struct loom_timer timers[N];
static int64_t deadlines[N];
static int fired_order[N], fired_count;
static int early;

static void record(struct loom_timer *timer, void *arg)
{
    (void)timer;
    int i = (int)(intptr_t)arg;
    if (loom_clock_ns() < deadlines[i])
        early++;
    fired_order[fired_count++] = i;
}

static void test_order(void)
{
    fired_count = 0;
    int64_t base = loom_clock_ns();
    /* deadlines spread over 0.1 .. 20 ms, armed out of order */
    for (int i = 0; i < N; i++) {
        int j = (i * 37) % N;
        deadlines[j] = base + 100 * LOOM_NS_PER_US + (int64_t)j * 300 * LOOM_NS_PER_US;
        loom_timer_init(&timers[j]);
        CHECK_EQ(loom_timer_start(&timers[j], deadlines[j], record, (void *)(intptr_t)j), 0);
    }
    CHECK_EQ(loom_timer_start(&timers[0], deadlines[0], record, NULL), -EALREADY);
    CHECK_EQ(loom_timer_cancel(&timers[N / 2]), 0);
    CHECK(!loom_timer_is_armed(&timers[N / 2]));
    CHECK_EQ(loom_timer_cancel(&timers[N / 2]), -ENOENT);
    loom_sleep(30 * LOOM_NS_PER_MS);
    CHECK_EQ(fired_count, N - 1);
    CHECK_EQ(early, 0);
    for (int i = 1; i < fired_count; i++)
        CHECK_LT(fired_order[i - 1], fired_order[i]); /* deadline order */
    for (int i = 0; i < fired_count; i++)
        CHECK_NE(fired_order[i], N / 2);
    struct loom_timer bad;
    loom_timer_init(&bad);
    CHECK_EQ(loom_timer_start(&bad, -1, record, NULL), -EINVAL);
}

static int ticks;
static int64_t armed_at;

/* Firing k (from 1) is due at armed_at + k * period (a late one is not repeated and does not
 * shift the schedule), so it never comes before that. */
static void tick(struct loom_timer *timer, void *arg)
{
    (void)arg;
    CHECK_GE(loom_clock_ns(), armed_at + (ticks + 1) * 2 * LOOM_NS_PER_MS);
    if (++ticks == 10)
        CHECK_EQ(loom_timer_cancel(timer), 0); /* from its own callback: stops it */
}

static void test_periodic(void)
{
    struct loom_timer timer;
    loom_timer_init(&timer);
    armed_at = loom_now_ns(); /* the clock start_periodic counts from */
    CHECK_EQ(loom_timer_start_periodic(&timer, 2 * LOOM_NS_PER_MS, tick, NULL), 0);
    CHECK(loom_timer_is_armed(&timer));
    /* wait for the tenth tick (late ticks are not repeated, so under a slow tool the ten
     * take longer than 20 ms), then a little more: the cancel in the callback holds */
    int64_t deadline = loom_deadline_in(10 * LOOM_NS_PER_S);
    while (ticks < 10 && loom_clock_ns() < deadline)
        loom_sleep(LOOM_NS_PER_MS);
    loom_sleep(10 * LOOM_NS_PER_MS);
    CHECK_EQ(ticks, 10);
    CHECK(!loom_timer_is_armed(&timer));
    CHECK_EQ(loom_timer_start_periodic(&timer, 0, tick, NULL), -EINVAL);
}

static int64_t late_deadline;
static int late_fired, late_early;

static void late_record(struct loom_timer *timer, void *arg)
{
    (void)timer;
    (void)arg;
    if (loom_clock_ns() < late_deadline)
        late_early++;
    late_fired++;
}

/* The loop reads no clock for an empty wheel, nor when nothing asks for the time: after NOP
 * round trips with no timer armed (10 ms asking for loom_now_ns(), then 10 ms not asking),
 * loom_now_ns() is still never older than the iteration, and timers armed then, periodic and
 * one-shot, still fire on time, never early. */
static void test_after_empty_wheel(void)
{
    int64_t busy_until = loom_clock_ns() + 10 * LOOM_NS_PER_MS;
    int64_t before = 0;
    while ((before = loom_clock_ns()) < busy_until) {
        CHECK_EQ(loom_nop(), 0); /* resumed in a later loop iteration */
        CHECK_GE(loom_now_ns(), before);
    }
    busy_until = loom_clock_ns() + 10 * LOOM_NS_PER_MS;
    while (loom_clock_ns() < busy_until)
        CHECK_EQ(loom_nop(), 0);
    struct loom_timer once, periodic;
    loom_timer_init(&once);
    loom_timer_init(&periodic);
    before = loom_clock_ns();
    CHECK_EQ(loom_nop(), 0);
    ticks = 0;
    armed_at = before; /* start_periodic counts from loom_now_ns(), which is not older */
    CHECK_EQ(loom_timer_start_periodic(&periodic, 2 * LOOM_NS_PER_MS, tick, NULL), 0);
    late_deadline = loom_now_ns() + 2 * LOOM_NS_PER_MS;
    CHECK_EQ(loom_timer_start(&once, late_deadline, late_record, NULL), 0);
    int64_t deadline = loom_deadline_in(10 * LOOM_NS_PER_S);
    while ((ticks < 10 || late_fired == 0) && loom_clock_ns() < deadline)
        loom_sleep(LOOM_NS_PER_MS);
    CHECK_EQ(late_fired, 1);
    CHECK_EQ(late_early, 0);
    CHECK_EQ(ticks, 10);
    CHECK(!loom_timer_is_armed(&periodic));
}

static _Atomic int fired_on[2];

static void note_core(struct loom_timer *timer, void *arg)
{
    (void)timer;
    (void)arg;
    atomic_fetch_add(&fired_on[loom_core_id()], 1);
}

static int arm_here(void *arg)
{
    (void)arg;
    struct loom_timer t[8];
    for (int i = 0; i < 8; i++) {
        loom_timer_init(&t[i]);
        CHECK_EQ(
            loom_timer_start(&t[i], loom_deadline_in((i + 1) * LOOM_NS_PER_MS), note_core, NULL),
            0);
    }
    loom_sleep(15 * LOOM_NS_PER_MS); /* the timers live on this stack: outlive them */
    return 0;
}

static int test_main(void *arg)
{
    (void)arg;
    test_order();
    test_periodic();
    test_after_empty_wheel();
    int64_t start = loom_clock_ns();
    CHECK_EQ(loom_sleep(5 * LOOM_NS_PER_MS), 0);
    CHECK_GE(loom_clock_ns() - start, 5 * LOOM_NS_PER_MS);
    CHECK_EQ(loom_invoke_on_all(arm_here, NULL, LOOM_NO_DEADLINE), 0);
    CHECK_EQ(atomic_load(&fired_on[0]), 8);
    CHECK_EQ(atomic_load(&fired_on[1]), 8);
    return 0;
}

int main(void)
{
    CHECK_EQ(test_run(2, test_main, NULL), 0);
    return 0;
}
