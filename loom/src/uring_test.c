/* SPDX-License-Identifier: MIT
 * uring_test.c - the reactor's io_uring layer: op callbacks run from the loop, never inline;
 * 10,000 NOPs through an 8-entry SQ all complete once, in submit order, via the overflow
 * queue; cancelling an op still in that queue completes it with -ECANCELED; SINGLE_ISSUER
 * holds (another thread cannot enter a reactor's ring); and a cross-core wake-up of a
 * sleeping core works with each optional kernel feature forced off (LOOM_DISABLE=...), in
 * re-executed children.
 * LOOM_TEST_TAGS: tsan
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "harness.h"
#include "internal.h"
#include "loom/loom.h"

/* ---- completions run from the loop ------------------------------------------------------ */

struct nop_probe {
    bool started; /* set by the test right after loom_op_nop() returned */
    bool ran;
    bool saw_started;
    bool in_fiber;
    unsigned core;
    struct loom_baton done;
};

static void probe_callback(struct loom_op *op)
{
    struct nop_probe *p = op->data;
    p->ran = true;
    p->saw_started = p->started;
    p->in_fiber = loom_fiber_self() != NULL;
    p->core = loom_core_id();
    loom_baton_post(&p->done);
}

static void test_not_inline(void)
{
    struct nop_probe p = {0};
    struct loom_op op = {0};
    loom_baton_init(&p.done);
    loom_op_nop(&op, probe_callback, &p);
    p.started = true;
    CHECK(!p.ran);
    CHECK_EQ(loom_baton_wait(&p.done, LOOM_NO_DEADLINE), 0);
    CHECK(p.ran);
    CHECK(p.saw_started); /* the callback ran after loom_op_nop() had returned */
    CHECK(!p.in_fiber);   /* ... from the loop, not from a fiber */
    CHECK_EQ(p.core, loom_core_id());
    CHECK_EQ(op.res, 0);
    CHECK_EQ(loom_op_cancel(&op), -ENOENT); /* finished ops are not in flight */
    loom_baton_deinit(&p.done);

    /* loom_nop() suspends the fiber: the loop switches back into it afterwards */
    struct loom_stats before, after;
    struct loom_fiber *self = loom_fiber_self();
    CHECK_EQ(loom_stats_get(loom_core_id(), &before), 0);
    CHECK_EQ(loom_nop(), 0);
    CHECK_EQ(loom_stats_get(loom_core_id(), &after), 0);
    CHECK(loom_fiber_self() == self);
    CHECK_GE(after.fibers_run, before.fibers_run + 1);
    CHECK_GE(after.cqes_reaped, before.cqes_reaped + 1);
}

/* ---- the overflow queue ---------------------------------------------------------------------- */

#define MANY_OPS 10000

static struct loom_op ops[MANY_OPS];
static uint8_t completions[MANY_OPS];
static int order[MANY_OPS];
static int completed;
static int expected;
static struct loom_baton all_done;

static void order_callback(struct loom_op *op)
{
    int index = (int)(op - ops);
    CHECK(index >= 0 && index < MANY_OPS);
    CHECK(loom_fiber_self() == NULL);
    completions[index]++;
    order[completed++] = index;
    if (completed == expected)
        loom_baton_post(&all_done);
}

static void reset_ops(int n)
{
    memset(ops, 0, sizeof(ops));
    memset(completions, 0, sizeof(completions));
    completed = 0;
    expected = n;
    loom_baton_init(&all_done);
}

/* Waits until all `expected` ops have completed. */
static void wait_all_done(void)
{
    /* the overflow queue must drain by itself: nothing else wakes this loop */
    CHECK_EQ(loom_baton_wait(&all_done, loom_deadline_in(10 * LOOM_NS_PER_S)), 0);
}

static void test_overflow_fifo(void)
{
    int n = MANY_OPS;
    reset_ops(n);
    struct loom_stats before, after;
    CHECK_EQ(loom_stats_get(loom_core_id(), &before), 0);
    for (int i = 0; i < n; i++)
        loom_op_nop(&ops[i], order_callback, NULL);
    CHECK_EQ(completed, 0); /* nothing ran inline */
    CHECK_EQ(ops[n - 1].state, LOOM_OP_QUEUED);
    wait_all_done();
    CHECK_EQ(loom_stats_get(loom_core_id(), &after), 0);
    for (int i = 0; i < n; i++) {
        if (completions[i] != 1 || order[i] != i || ops[i].res != 0)
            test_fail_(__FILE__, __LINE__,
                       "op %d: %d completions, res %d, completion #%d was op %d", i, completions[i],
                       ops[i].res, i, order[i]);
    }
    /* all but the first few (one SQ's worth) waited in the overflow queue */
    CHECK_GE(after.sqes_overflowed - before.sqes_overflowed,
             (uint64_t)(n - (int)loom__rt.config.ring_entries));
    CHECK_GE(after.sqes_submitted - before.sqes_submitted, (uint64_t)n);
    loom_baton_deinit(&all_done);
}

static void test_cancel_queued(void)
{
    int n = 64;
    reset_ops(n);
    for (int i = 0; i < n; i++)
        loom_op_nop(&ops[i], order_callback, NULL);
    CHECK_EQ(ops[40].state, LOOM_OP_QUEUED);
    CHECK_EQ(ops[63].state, LOOM_OP_QUEUED);
    CHECK_EQ(ops[0].state, LOOM_OP_SUBMITTED);
    CHECK_EQ(loom_op_cancel(&ops[40]), 0); /* in the middle of the overflow queue */
    CHECK_EQ(loom_op_cancel(&ops[63]), 0); /* its tail */
    CHECK_EQ(loom_op_cancel(&ops[0]), 0);  /* in the SQ: the kernel gets an async cancel */
    CHECK_EQ(completed, 0);                /* cancelling completes nothing inline */
    wait_all_done();
    int previous = -1;
    for (int i = 0; i < n; i++) {
        int op = order[i];
        CHECK_EQ(completions[op], 1);
        if (op == 40 || op == 63) {
            CHECK_EQ(ops[op].res, -ECANCELED);
            continue;
        }
        /* a NOP in the SQ is done before the cancel reaches it: its real result */
        CHECK_EQ(ops[op].res, 0);
        CHECK_GT(op, previous); /* the others keep their order */
        previous = op;
    }
    CHECK_EQ(loom_op_cancel(&ops[40]), -ENOENT);
    loom_baton_deinit(&all_done);
}

/* ---- SINGLE_ISSUER: a foreign thread may not enter a reactor's ring ------------------------- */

struct foreign_enter {
    int fds[LOOM_CORES_MAX];
    int count;
    int submit_errno[LOOM_CORES_MAX];
};

static void *foreign_thread(void *arg)
{
    struct foreign_enter *e = arg;
    for (int i = 0; i < e->count; i++) {
        /* to_submit = 1: the kernel refuses before looking at the SQ (-EEXIST) */
        long rc = syscall(__NR_io_uring_enter, e->fds[i], 1, 0, 0, NULL, 0);
        e->submit_errno[i] = rc < 0 ? errno : 0;
    }
    return NULL;
}

static int find_rings(int fds[LOOM_CORES_MAX])
{
    DIR *dir = opendir("/proc/self/fd");
    CHECK(dir != NULL);
    int n = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL && n < LOOM_CORES_MAX) {
        char path[300], target[128];
        snprintf(path, sizeof(path), "/proc/self/fd/%s", entry->d_name);
        ssize_t len = readlink(path, target, sizeof(target) - 1);
        if (len <= 0)
            continue;
        target[len] = '\0';
        if (strcmp(target, "anon_inode:[io_uring]") == 0)
            fds[n++] = atoi(entry->d_name);
    }
    closedir(dir);
    return n;
}

static void test_single_issuer(void)
{
    char features[256];
    loom__uring_probe_report(features, sizeof(features));
    if (!strstr(features, "single_issuer=1")) {
        printf("single issuer check skipped: %s\n", features);
        return;
    }
    struct foreign_enter e = {0};
    e.count = find_rings(e.fds);
    CHECK_EQ(e.count, (int)loom_core_count());
    pthread_t thread;
    CHECK_EQ(pthread_create(&thread, NULL, foreign_thread, &e), 0);
    CHECK_EQ(pthread_join(thread, NULL), 0);
    for (int i = 0; i < e.count; i++)
        CHECK_EQ(e.submit_errno[i], EEXIST);
    CHECK_EQ(loom_nop(), 0); /* the ring still works for its owner */
}

static int test_main(void *arg)
{
    (void)arg;
    test_not_inline();
    test_overflow_fifo();
    test_cancel_queued();
    test_single_issuer();
    return 0;
}

/* ---- feature fallbacks: wake a sleeping core ------------------------------------------------ */

static int reply(void *arg)
{
    return *(int *)arg + 1;
}

static int probe_features(void *arg)
{
    loom__uring_probe_report(arg, 256);
    return 0;
}

static int wake_main(void *arg)
{
    (void)arg;
    CHECK_EQ(loom_core_count(), 2);
    char features[2][256];
    CHECK_EQ(probe_features(features[0]), 0);
    CHECK_EQ(loom_invoke_on(1, probe_features, features[1], LOOM_NO_DEADLINE), 0);
    printf("core 0: %s\ncore 1: %s\n", features[0], features[1]);
    struct loom_stats before, after;
    CHECK_EQ(loom_stats_get(1, &before), 0);
    _Atomic int *sleeping = &loom__rt.reactors[1]->sleeping;
    for (int round = 0; round < 20; round++) {
        /* wait until core 1 (poll 0) has gone to sleep, then send it a call */
        int64_t give_up = loom_clock_ns() + 5 * LOOM_NS_PER_S;
        while (!atomic_load(sleeping)) {
            CHECK_LT(loom_clock_ns(), give_up);
            loom_yield();
        }
        CHECK_EQ(loom_invoke_on(1, reply, &round, loom_deadline_in(5 * LOOM_NS_PER_S)), round + 1);
    }
    CHECK_EQ(loom_stats_get(1, &after), 0);
    printf("wakeups_received=%" PRIu64 " sleeps=%" PRIu64 "\n",
           after.wakeups_received - before.wakeups_received, after.sleeps - before.sleeps);
    CHECK_GT(after.wakeups_received, before.wakeups_received);
    return 0;
}

static void test_fallbacks(const char *self)
{
    static const struct {
        const char *disable;
        const char *want; /* in both cores' feature reports */
    } cases[] = {
        {"", "single_issuer="},
        {"msg_ring", "msg_ring=0"},
        {"defer_taskrun", "single_issuer=1 defer_taskrun=0"},
        {"single_issuer", "single_issuer=0 defer_taskrun=0"},
        {"register_ring_fd", "registered_ring_fd=0"},
        {"all", "single_issuer=0 defer_taskrun=0 registered_ring_fd=0 msg_ring=0"},
    };
    static char out[16384];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char env_var[64];
        snprintf(env_var, sizeof(env_var), "LOOM_DISABLE=%s", cases[i].disable);
        char *env[] = {env_var, NULL};
        char *argv[] = {(char *)self, "wake", NULL};
        int status = test_spawn(argv, env, out, sizeof(out), 20000);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            test_fail_(__FILE__, __LINE__, "%s: status %#x, output:\n%s", env_var, (unsigned)status,
                       out);
        const char *core1 = strstr(out, "core 1: ");
        CHECK(core1 != NULL);
        CHECK_CONTAINS(out, cases[i].want);
        CHECK_CONTAINS(core1, cases[i].want);
        CHECK_CONTAINS(out, "wakeups_received=");
    }
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "wake") == 0) {
        struct loom_config config;
        test_config(&config, 2);
        return loom_run(&config, wake_main, NULL);
    }
    alarm(120); /* a hang ends the test instead of the runner's budget */
    struct loom_config config;
    test_config(&config, 1);
    config.ring_entries = 8; /* the smallest accepted */
    CHECK_EQ(loom_run(&config, test_main, NULL), 0);
    cpu_set_t allowed;
    CHECK_EQ(sched_getaffinity(0, sizeof(allowed), &allowed), 0);
    if (CPU_COUNT(&allowed) < 2)
        test_skip("the feature fallbacks need 2 CPUs");
    test_fallbacks(argv[0]);
    return 0;
}
