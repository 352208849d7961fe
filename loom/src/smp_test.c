/* SPDX-License-Identifier: MIT
 * smp_test.c - cross-core rings and calls: per-pair ordering over every ordered pair of 4
 * cores, wrap-around and parking with tiny rings, full rings in both directions at once (no
 * deadlock, nothing dropped), invoke_on results, deadlines and the never-abandoned cancel,
 * invoke_on_all, submit_to, and remote baton posts including a stale one.
 * LOOM_TEST_TAGS: tsan
 */
#include <errno.h>
#include <stdatomic.h>

#include "harness.h"
#include "internal.h"
#include "loom/loom.h"

#define CORES 4

struct seq_msg {
    struct loom_msg msg;
    uint16_t source;
    uint32_t seq;
};

static int64_t per_pair;                    /* messages each core sends to each other core */
static struct seq_msg *nodes[CORES][CORES]; /* [source][target] */
static uint32_t expected[CORES][CORES];     /* [target][source], written by target only */
static _Atomic int64_t received_total;
static _Atomic int order_errors;

static void seq_arrived(struct loom_msg *msg)
{
    struct seq_msg *m = LOOM_CONTAINER_OF(msg, struct seq_msg, msg);
    unsigned self = loom_core_id();
    if (m->seq != expected[self][m->source])
        atomic_fetch_add(&order_errors, 1);
    expected[self][m->source] = m->seq + 1;
    atomic_fetch_add(&received_total, 1);
}

/* Runs on every core: sends per_pair messages to every other core without yielding, so
 * the rings fill up and the rest parks. */
static int send_all(void *arg)
{
    (void)arg;
    unsigned self = loom_core_id();
    for (int64_t i = 0; i < per_pair; i++) {
        for (unsigned to = 0; to < loom_core_count(); to++) {
            if (to == self)
                continue;
            struct seq_msg *m = &nodes[self][to][i];
            m->source = (uint16_t)self;
            m->seq = (uint32_t)i;
            loom_msg_send(to, &m->msg, seq_arrived);
        }
    }
    return 0;
}

static int wait_all_received(void *arg)
{
    int64_t want = *(int64_t *)arg;
    int64_t deadline = loom_deadline_in(20 * LOOM_NS_PER_S);
    while (atomic_load(&received_total) < want && loom_now_ns() < deadline)
        loom_sleep(LOOM_NS_PER_MS);
    return atomic_load(&received_total) == want ? 0 : -ETIMEDOUT;
}

static int ordering_main(void *arg)
{
    (void)arg;
    unsigned n = loom_core_count();
    CHECK_EQ(n, CORES);
    int64_t want = per_pair * n * (n - 1);
    CHECK_EQ(loom_invoke_on_all(send_all, NULL, LOOM_NO_DEADLINE), 0);
    CHECK_EQ(wait_all_received(&want), 0);
    CHECK_EQ(atomic_load(&order_errors), 0);
    uint64_t parked = 0;
    for (unsigned core = 0; core < n; core++) {
        struct loom_stats stats;
        CHECK_EQ(loom_stats_get(core, &stats), 0);
        parked += stats.msgs_parked;
        for (unsigned from = 0; from < n; from++)
            if (from != core)
                CHECK_EQ(expected[core][from], (uint32_t)per_pair);
    }
    CHECK_GT(parked, 0); /* the tiny rings filled: back-pressure took the parking path */
    return 0;
}

static void test_ordering_every_pair(void)
{
    per_pair = test_scale(20000);
    for (int s = 0; s < CORES; s++)
        for (int t = 0; t < CORES; t++)
            nodes[s][t] = calloc((size_t)per_pair, sizeof(struct seq_msg));
    struct loom_config config;
    test_config(&config, CORES);
    config.oversubscribe = true;
    config.smp_ring_entries = 8; /* wraps every 8 messages, fills at once */
    CHECK_EQ(loom_run(&config, ordering_main, NULL), 0);
    for (int s = 0; s < CORES; s++)
        for (int t = 0; t < CORES; t++)
            free(nodes[s][t]);
}

/* ---- calls ---------------------------------------------------------------------------------- */

static int where_am_i(void *arg)
{
    *(unsigned *)arg = loom_core_id();
    return 42;
}

static _Atomic int slow_saw_cancel;

static int slow_call(void *arg)
{
    (void)arg;
    loom_sleep(50 * LOOM_NS_PER_MS);
    atomic_store(&slow_saw_cancel, loom_fiber_cancel_requested());
    return 7;
}

static _Atomic int never_ran;

static int must_not_run(void *arg)
{
    (void)arg;
    atomic_store(&never_ran, 0);
    return 1;
}

static int hog_core(void *arg)
{
    int64_t end = loom_clock_ns() + *(int64_t *)arg;
    while (loom_clock_ns() < end) {
    }
    return 0;
}

static int core_plus_100(void *arg)
{
    unsigned *out = arg;
    out[loom_core_id()] = loom_core_id() + 100;
    return loom_core_id() == 1 ? -EIO : 0;
}

static _Atomic int submitted_runs;

static int count_submitted(void *arg)
{
    (void)arg;
    CHECK_EQ(loom_core_id(), 1);
    atomic_fetch_add(&submitted_runs, 1);
    return 0;
}

static void test_invoke_deadlines(void)
{
    /* deadline passes while fn runs: the cancel is seen, the caller still gets fn's result */
    int64_t start = loom_clock_ns();
    CHECK_EQ(loom_invoke_on(1, slow_call, NULL, loom_deadline_in(5 * LOOM_NS_PER_MS)), 7);
    CHECK_GE(loom_clock_ns() - start, 45 * LOOM_NS_PER_MS);
    CHECK_EQ(atomic_load(&slow_saw_cancel), 1);

    /* deadline passes before fn starts (core 1 is hogged): fn never runs, -ETIMEDOUT */
    int64_t hog_ns = 60 * LOOM_NS_PER_MS;
    CHECK_EQ(loom_submit_to(1, hog_core, &hog_ns), 0);
    loom_sleep(5 * LOOM_NS_PER_MS); /* let the hog start */
    atomic_store(&never_ran, 1);
    CHECK_EQ(loom_invoke_on(1, must_not_run, NULL, loom_deadline_in(5 * LOOM_NS_PER_MS)),
             -ETIMEDOUT);
    CHECK_EQ(atomic_load(&never_ran), 1);
}

static void test_invoke(void)
{
    unsigned where = 99;
    CHECK_EQ(loom_invoke_on(1, where_am_i, &where, LOOM_NO_DEADLINE), 42);
    CHECK_EQ(where, 1);
    CHECK_EQ(loom_invoke_on(0, where_am_i, &where, LOOM_NO_DEADLINE), 42);
    CHECK_EQ(where, 0);
    CHECK_EQ(loom_invoke_on(9, where_am_i, &where, LOOM_NO_DEADLINE), -EINVAL);

    /* deadlines against a remote call's progress: meaningless at valgrind's speed */
    if (!test_under_valgrind())
        test_invoke_deadlines();
    unsigned out[2] = {0, 0};
    CHECK_EQ(loom_invoke_on_all(core_plus_100, out, LOOM_NO_DEADLINE), -EIO);
    CHECK_EQ(out[0], 100);
    CHECK_EQ(out[1], 101);

    int64_t n = test_scale(10000);
    for (int64_t i = 0; i < n; i++)
        CHECK_EQ(loom_submit_to(1, count_submitted, NULL), 0);
    while (atomic_load(&submitted_runs) < n)
        loom_sleep(LOOM_NS_PER_MS);
    CHECK_EQ(loom_submit_to(5, count_submitted, NULL), -EINVAL);
}

/* ---- remote baton posts --------------------------------------------------------------------- */

static struct loom_baton remote_baton;
static _Atomic int go_post, posted;

static int post_it(void *arg)
{
    (void)arg;
    loom_baton_post(&remote_baton);
    return 0;
}

static int post_when_told(void *arg)
{
    (void)arg;
    while (!atomic_load(&go_post))
        loom_yield();
    loom_baton_post(&remote_baton);
    atomic_store(&posted, 1);
    return 0;
}

/* A timer due at the same tick as the waiter's deadline, armed first, so it fires first:
 * it holds the loop until core 1 has posted (reading the current generation). The waiter's
 * deadline then fires, it resumes and ends the cycle before the post is drained: stale. */
static void hold_loop(struct loom_timer *timer, void *arg)
{
    (void)timer;
    (void)arg;
    atomic_store(&go_post, 1);
    while (!atomic_load(&posted)) {
    }
}

static void test_remote_baton(void)
{
    loom_baton_init(&remote_baton);
    CHECK_EQ(loom_submit_to(1, post_it, NULL), 0);
    CHECK_EQ(loom_baton_wait(&remote_baton, loom_deadline_in(5 * LOOM_NS_PER_S)), 0);

    /* post before wait, from the other core */
    CHECK_EQ(loom_invoke_on(1, post_it, NULL, LOOM_NO_DEADLINE), 0);
    loom_sleep(2 * LOOM_NS_PER_MS);
    CHECK(loom_baton_is_posted(&remote_baton));
    CHECK_EQ(loom_baton_wait(&remote_baton, LOOM_NO_DEADLINE), 0);

    /* a stale post is dropped and counted */
    struct loom_stats before, after;
    CHECK_EQ(loom_stats_get(0, &before), 0);
    CHECK_EQ(loom_submit_to(1, post_when_told, NULL), 0);
    int64_t deadline = loom_deadline_in(10 * LOOM_NS_PER_MS);
    struct loom_timer timer;
    loom_timer_init(&timer);
    CHECK_EQ(loom_timer_start(&timer, deadline, hold_loop, NULL), 0);
    CHECK_EQ(loom_baton_wait(&remote_baton, deadline), -ETIMEDOUT);
    CHECK_EQ(atomic_load(&posted), 1);
    /* the post arrives now (within milliseconds; a loaded host may take longer) */
    int64_t give_up = loom_deadline_in(5 * LOOM_NS_PER_S);
    do {
        loom_sleep(LOOM_NS_PER_MS);
        CHECK_EQ(loom_stats_get(0, &after), 0);
    } while (after.stale_posts == before.stale_posts && loom_now_ns() < give_up);
    CHECK_EQ(after.stale_posts - before.stale_posts, 1);
    CHECK(!loom_baton_is_posted(&remote_baton));
    CHECK_EQ(loom_baton_wait(&remote_baton, loom_deadline_in(5 * LOOM_NS_PER_MS)), -ETIMEDOUT);
    loom_baton_deinit(&remote_baton);
}

static int calls_main(void *arg)
{
    (void)arg;
    CHECK_EQ(loom_core_count(), 2);
    test_invoke();
    test_remote_baton();
    return 0;
}

int main(void)
{
    test_ordering_every_pair();
    CHECK_EQ(test_run(2, calls_main, NULL), 0);
    return 0;
}
