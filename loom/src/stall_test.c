/* SPDX-License-Identifier: MIT
 * stall_test.c - the stall detector, in re-executed children run through loom_main(): with
 * --stall-ms 50 a fiber "busy-loop" spinning 300 ms without yielding is reported once on
 * stderr with its name and a backtrace, and counted in stats.stalls; with --stall-ms 0 there
 * is no report; a fiber that yields every millisecond for 300 ms is never reported (with
 * --stall-ms 200).
 * LOOM_TEST_TAGS: tsan
 */
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>

#include "harness.h"
#include "loom/loom.h"

#define RUN_NS (300 * LOOM_NS_PER_MS)

static bool polite; /* the child's fiber yields every millisecond */

static void spin_until(int64_t end_ns)
{
    while (loom_clock_ns() < end_ns)
        __asm__ __volatile__("pause" ::: "memory");
}

static int worker(void *arg)
{
    (void)arg;
    int64_t end = loom_clock_ns() + RUN_NS;
    if (!polite) {
        spin_until(end);
        return 0;
    }
    while (loom_clock_ns() < end) {
        int64_t slice = loom_clock_ns() + LOOM_NS_PER_MS;
        spin_until(slice < end ? slice : end);
        loom_yield();
    }
    return 0;
}

/* Runs the worker as a joinable fiber on this core (the last one), so the stall is on a
 * reactor thread other than the main thread when there are two cores. */
static int run_worker(void *arg)
{
    (void)arg;
    struct loom_fiber *fiber;
    struct loom_fiber_attr attr = {.name = polite ? "polite-loop" : "busy-loop", .joinable = true};
    CHECK_EQ(loom_spawn(&fiber, worker, NULL, &attr), 0);
    CHECK_EQ(loom_fiber_join(fiber, LOOM_NO_DEADLINE, NULL), 0);
    return 0;
}

static int child_main(void *arg)
{
    (void)arg;
    unsigned core = loom_core_count() - 1;
    CHECK_EQ(loom_invoke_on(core, run_worker, NULL, LOOM_NO_DEADLINE), 0);
    uint64_t stalls = 0;
    for (unsigned i = 0; i < loom_core_count(); i++) {
        struct loom_stats stats;
        CHECK_EQ(loom_stats_get(i, &stats), 0);
        stalls += stats.stalls;
    }
    printf("worker on core %u; stalls=%" PRIu64 "\n", core, stalls);
    fflush(stdout);
    return 0;
}

static char out[65536];

/* Runs this program as a child: `mode` busy or polite, then loom options. */
static void run_child(const char *self, const char *mode, const char *stall_ms)
{
    char *argv[] = {(char *)self, (char *)mode, "--stall-ms", (char *)stall_ms,
                    "--poll-us",  "0",          "--memory",   "64M",
                    "--smp",      "2",          NULL};
    cpu_set_t allowed;
    CHECK_EQ(sched_getaffinity(0, sizeof(allowed), &allowed), 0);
    if (CPU_COUNT(&allowed) < 2)
        argv[9] = "1";
    int status = test_spawn(argv, NULL, out, sizeof(out), 20000);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        test_fail_(__FILE__, __LINE__, "%s child: status %#x, output:\n%s", mode, (unsigned)status,
                   out);
}

static uint64_t stalls_reported(void)
{
    const char *p = strstr(out, "stalls=");
    if (!p)
        test_fail_(__FILE__, __LINE__, "no stalls= in the output:\n%s", out);
    return strtoull(p + 7, NULL, 10);
}

static size_t count(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

static void test_busy_reported(const char *self)
{
    run_child(self, "busy", "50");
    CHECK_CONTAINS(out, "stall: fiber 'busy-loop' has run for more than 50 ms");
    /* one report per stall (another fiber may be reported too when a loaded host stops this
     * process's threads for longer than 50 ms: the detector cannot tell that from a stall) */
    CHECK_EQ(count(out, "stall: fiber 'busy-loop'"), 1);
    /* the backtrace follows: frames as backtrace_symbols_fd() prints them, "...[0x...]" */
    const char *report = strstr(out, "stall: fiber 'busy-loop'");
    const char *frame = strstr(report, "\n");
    CHECK(frame != NULL);
    CHECK_CONTAINS(frame, "[0x");
    CHECK_CONTAINS(out, "backtrace");
    CHECK_GE(stalls_reported(), 1);
}

static void test_disabled(const char *self)
{
    run_child(self, "busy", "0");
    CHECK(strstr(out, "stall:") == NULL);
    CHECK_EQ(stalls_reported(), 0);
}

static void test_polite_not_reported(const char *self)
{
    /* 200 ms, far above its 1 ms slices: a loaded host that stops the process for 50 ms would
     * look like a stall of whichever fiber was running */
    run_child(self, "polite", "200");
    CHECK(strstr(out, "stall:") == NULL);
    CHECK_EQ(stalls_reported(), 0);
}

int main(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "busy") == 0 || strcmp(argv[1], "polite") == 0)) {
        polite = strcmp(argv[1], "polite") == 0;
        return loom_main(argc - 1, argv + 1, child_main, NULL);
    }
    alarm(120); /* a hang ends the test instead of the runner's budget */
    test_busy_reported(argv[0]);
    test_disabled(argv[0]);
    test_polite_not_reported(argv[0]);
    return 0;
}
