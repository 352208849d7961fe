/* SPDX-License-Identifier: MIT
 * baton_test.c - the baton on one core: post before and after the wait, deadlines (never
 * early, already passed), reuse across cycles, reset, a late post after a timeout counting for
 * the next cycle, fairness of many batons, and misuse failing an assertion with a clear
 * message (run in child processes). Cross-core posts are covered by smp_test.
 */
#include <errno.h>
#include <signal.h>
#include <sys/wait.h>

#include "harness.h"
#include "loom/loom.h"

static struct loom_baton baton;

static int poster(void *arg)
{
    loom_baton_post(arg);
    return 0;
}

static void test_basic(void)
{
    loom_baton_init(&baton);
    /* post before wait: the wait returns at once */
    loom_baton_post(&baton);
    CHECK(loom_baton_is_posted(&baton));
    CHECK_EQ(loom_baton_wait(&baton, LOOM_NO_DEADLINE), 0);
    CHECK(!loom_baton_is_posted(&baton));
    /* post from another fiber while we wait; many cycles reuse the baton */
    for (int i = 0; i < 1000; i++) {
        CHECK_EQ(loom_spawn(NULL, poster, &baton, NULL), 0);
        CHECK_EQ(loom_baton_wait(&baton, LOOM_NO_DEADLINE), 0);
    }
    /* deadline: never early */
    int64_t start = loom_clock_ns();
    CHECK_EQ(loom_baton_wait(&baton, loom_deadline_in(3 * LOOM_NS_PER_MS)), -ETIMEDOUT);
    CHECK_GE(loom_clock_ns() - start, 3 * LOOM_NS_PER_MS);
    /* a deadline already passed times out without blocking */
    CHECK_EQ(loom_baton_wait(&baton, loom_clock_ns() - 1), -ETIMEDOUT);
    /* a post after a timeout counts for the next cycle */
    CHECK_EQ(loom_baton_wait(&baton, loom_deadline_in(LOOM_NS_PER_MS)), -ETIMEDOUT);
    loom_baton_post(&baton);
    CHECK_EQ(loom_baton_wait(&baton, loom_deadline_in(LOOM_NS_PER_MS)), 0);
    /* reset forgets a pending post */
    loom_baton_post(&baton);
    loom_baton_reset(&baton);
    CHECK(!loom_baton_is_posted(&baton));
    CHECK_EQ(loom_baton_wait(&baton, loom_deadline_in(LOOM_NS_PER_MS)), -ETIMEDOUT);
    loom_baton_deinit(&baton);
}

/* N fibers each wait on their own baton; posting them in some order wakes them in that
 * order (the ready queue is FIFO), and none is lost. */
#define MANY 200
static struct loom_baton many[MANY];
static int woken[MANY], woken_count;

static int many_waiter(void *arg)
{
    int i = (int)(intptr_t)arg;
    CHECK_EQ(loom_baton_wait(&many[i], loom_deadline_in(5 * LOOM_NS_PER_S)), 0);
    woken[woken_count++] = i;
    return 0;
}

static void test_many(void)
{
    for (int i = 0; i < MANY; i++) {
        loom_baton_init(&many[i]);
        CHECK_EQ(loom_spawn(NULL, many_waiter, (void *)(intptr_t)i, NULL), 0);
    }
    loom_yield(); /* all block */
    for (int i = MANY - 1; i >= 0; i--)
        loom_baton_post(&many[i]);
    while (woken_count < MANY)
        loom_yield();
    for (int i = 0; i < MANY; i++)
        CHECK_EQ(woken[i], MANY - 1 - i);
    for (int i = 0; i < MANY; i++)
        loom_baton_deinit(&many[i]);
}

static int test_main(void *arg)
{
    (void)arg;
    test_basic();
    test_many();
    return 0;
}

/* ---- misuse, each in a child ---------------------------------------------------------------- */

static int second_waiter(void *arg)
{
    return loom_baton_wait(arg, LOOM_NO_DEADLINE);
}

static int misuse_main(void *arg)
{
    const char *what = arg;
    loom_baton_init(&baton);
    if (strcmp(what, "double-post") == 0) {
        loom_baton_post(&baton);
        loom_baton_post(&baton);
    } else if (strcmp(what, "two-waiters") == 0) {
        CHECK_EQ(loom_spawn(NULL, second_waiter, &baton, NULL), 0);
        loom_yield();
        loom_baton_wait(&baton, LOOM_NO_DEADLINE);
    } else if (strcmp(what, "after-deinit") == 0) {
        loom_baton_deinit(&baton);
        loom_baton_post(&baton);
    }
    return 0;
}

static void expect_abort(const char *self, const char *what, const char *message)
{
    char out[8192];
    char *argv[] = {(char *)self, "misuse", (char *)what, NULL};
    int status = test_spawn(argv, NULL, out, sizeof(out), 20000);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT)
        test_fail_(__FILE__, __LINE__, "misuse '%s' did not abort (status %d):\n%s", what, status,
                   out);
    CHECK_CONTAINS(out, "assertion failed");
    CHECK_CONTAINS(out, message);
}

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[1], "misuse") == 0)
        return test_run(1, misuse_main, argv[2]);
    CHECK_EQ(test_run(1, test_main, NULL), 0);
    if (!test_under_valgrind()) {
        expect_abort(argv[0], "double-post", "posted twice in one cycle");
        expect_abort(argv[0], "two-waiters", "has a waiter already");
        expect_abort(argv[0], "after-deinit", "used after loom_baton_deinit");
    }
    return 0;
}
