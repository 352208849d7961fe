/* SPDX-License-Identifier: MIT
 * shutdown_test.c - orderly shutdown: fibers in loom_wait_shutdown() on every core are woken
 * when the main fiber returns and finish their cleanup before the loops stop; a fiber that
 * never finishes ends shutdown after the grace period with a warning; SIGTERM/SIGINT sent to
 * a child reach a waiting fiber (the program then exits with its own status), end a program
 * without waiters with 128 + signo, and a second signal during cleanup exits at once; and
 * loom_run() works again in the same process (the runtime resets between runs).
 * LOOM_TEST_TAGS: tsan
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include "harness.h"
#include "internal.h"
#include "loom/loom.h"

static int64_t now_ms(void)
{
    return loom_clock_ns() / LOOM_NS_PER_MS;
}

/* ---- the main fiber returns: every waiter is woken and cleans up ------------------------- */

static _Atomic unsigned cleaned;

static int cleaner(void *arg)
{
    (void)arg;
    CHECK_EQ(loom_wait_shutdown(LOOM_NO_DEADLINE), 0);
    CHECK(loom_shutdown_requested());
    CHECK(loom_stopping());
    /* the loop still serves this core's fibers and IO during the grace period */
    for (int i = 0; i < 3; i++) {
        loom_yield();
        CHECK_EQ(loom_nop(), 0);
    }
    CHECK_EQ(loom_sleep(LOOM_NS_PER_MS), 0);
    atomic_fetch_add(&cleaned, 1);
    return 0;
}

static int spawn_cleaner(void *arg)
{
    (void)arg;
    struct loom_fiber_attr attr = {.name = "cleaner"};
    CHECK_EQ(loom_spawn(NULL, cleaner, NULL, &attr), 0);
    return 0;
}

/* Checks that this run starts from fresh counters (the runtime reset after a previous run). */
static void check_fresh_start(void)
{
    struct loom_stats stats;
    CHECK_EQ(loom_stats_get(0, &stats), 0);
    CHECK_EQ(stats.fibers_spawned, 1); /* the main fiber alone */
    CHECK(!loom_stopping());
    CHECK(!loom_shutdown_requested());
}

static int orderly_main(void *arg)
{
    (void)arg;
    check_fresh_start();
    CHECK_EQ(loom_invoke_on_all(spawn_cleaner, NULL, LOOM_NO_DEADLINE), 0);
    /* wait until a cleaner is blocked in loom_wait_shutdown() on every core */
    int64_t give_up = loom_clock_ns() + 10 * LOOM_NS_PER_S;
    while (atomic_load(&loom__rt.shutdown_waiters) < loom_core_count()) {
        CHECK_LT(loom_clock_ns(), give_up);
        CHECK_EQ(loom_sleep(LOOM_NS_PER_MS), 0);
    }
    CHECK(!loom_shutdown_requested());
    CHECK_EQ(atomic_load(&cleaned), 0);
    return 11;
}

static void test_orderly(unsigned smp)
{
    struct loom_config config;
    test_config(&config, smp);
    config.shutdown_grace_ns = 20 * LOOM_NS_PER_S;
    atomic_store(&cleaned, 0);
    int64_t start = now_ms();
    CHECK_EQ(loom_run(&config, orderly_main, NULL), 11);
    /* every cleaner finished, and shutdown ended when they did, not at the grace period */
    CHECK_EQ(atomic_load(&cleaned), smp);
    CHECK_LT(now_ms() - start, 5000);
}

/* ---- a fiber that never finishes: shutdown ends at the grace period ---------------------- */

static _Atomic unsigned stuck_started;

static int stuck_blocked(void *arg)
{
    (void)arg;
    struct loom_baton never;
    loom_baton_init(&never);
    atomic_fetch_add(&stuck_started, 1);
    loom_baton_wait(&never, LOOM_NO_DEADLINE); /* nobody posts it */
    return 0;
}

static int stuck_spinning(void *arg)
{
    (void)arg;
    atomic_fetch_add(&stuck_started, 1);
    for (;;)
        loom_yield(); /* ignores loom_stopping() */
    return 0;
}

static int spawn_stuck(void *arg)
{
    (void)arg;
    struct loom_fiber_attr attr = {.name = "stuck"};
    loom_fiber_fn fn = loom_core_id() % 2 ? stuck_spinning : stuck_blocked;
    CHECK_EQ(loom_spawn(NULL, fn, NULL, &attr), 0);
    return 0;
}

static int grace_main(void *arg)
{
    (void)arg;
    CHECK_EQ(loom_invoke_on_all(spawn_stuck, NULL, LOOM_NO_DEADLINE), 0);
    while (atomic_load(&stuck_started) < loom_core_count())
        loom_yield();
    printf("main returns\n");
    fflush(stdout);
    return 3;
}

static int child_grace(void)
{
    struct loom_config config;
    test_config(&config, 0);
    config.shutdown_grace_ns = 300 * LOOM_NS_PER_MS;
    return loom_run(&config, grace_main, NULL);
}

static void test_grace(const char *self)
{
    char out[16384];
    char *argv[] = {(char *)self, "grace", NULL};
    int64_t start = now_ms();
    int status = test_spawn(argv, NULL, out, sizeof(out), 20000);
    int64_t took = now_ms() - start;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 3)
        test_fail_(__FILE__, __LINE__, "grace child: status %#x, output:\n%s", (unsigned)status,
                   out);
    CHECK_CONTAINS(out, "main returns");
    CHECK_CONTAINS(out, "warning: shutdown grace of 300 ms passed");
    CHECK_GE(took, 300);
    CHECK_LT(took, 10000);
}

/* ---- signals --------------------------------------------------------------------------------- */

static const char *signal_mode; /* "wait", "stubborn" or "none" */

static int announce(void *arg)
{
    (void)arg;
    /* runs after the waiter on this core has blocked in loom_wait_shutdown() */
    printf("READY\n");
    fflush(stdout);
    return 0;
}

static int waiter(void *arg)
{
    (void)arg;
    struct loom_fiber_attr attr = {.name = "announce"};
    CHECK_EQ(loom_spawn(NULL, announce, NULL, &attr), 0);
    int rc = loom_wait_shutdown(LOOM_NO_DEADLINE);
    printf("observed rc=%d requested=%d stopping=%d\n", rc, loom_shutdown_requested(),
           loom_stopping());
    fflush(stdout);
    if (strcmp(signal_mode, "stubborn") == 0) {
        printf("CLEANING\n");
        fflush(stdout);
        for (;;)
            loom_sleep(LOOM_NS_PER_MS); /* a cleanup that hangs: only a second signal ends it */
    }
    for (int i = 0; i < 10; i++)
        CHECK_EQ(loom_nop(), 0);
    CHECK_EQ(loom_sleep(10 * LOOM_NS_PER_MS), 0);
    printf("cleaned up\n");
    fflush(stdout);
    return 42;
}

static int signal_main(void *arg)
{
    (void)arg;
    check_fresh_start();
    if (strcmp(signal_mode, "none") == 0) {
        printf("READY\n");
        fflush(stdout);
        while (!loom_stopping())
            loom_sleep(LOOM_NS_PER_MS);
        printf("stopping seen\n");
        fflush(stdout);
        return 0; /* too late: the signal's 128 + signo came first */
    }
    /* the waiter sits on the last core, so the request travels from core 0's signalfd */
    int rc = loom_invoke_on(loom_core_count() - 1, waiter, NULL, LOOM_NO_DEADLINE);
    printf("main returns %d\n", rc);
    fflush(stdout);
    return rc;
}

static int trivial_main(void *arg)
{
    (void)arg;
    check_fresh_start();
    return 0;
}

/* argv: signal MODE [twice] - with "twice", a first runtime runs and ends before this one. */
static int child_signal(int argc, char **argv)
{
    signal_mode = argv[2];
    struct loom_config config;
    test_config(&config, 0);
    config.shutdown_grace_ns = 20 * LOOM_NS_PER_S;
    if (argc > 3 && strcmp(argv[3], "twice") == 0)
        CHECK_EQ(loom_run(&config, trivial_main, NULL), 0);
    return loom_run(&config, signal_main, NULL);
}

/* Runs a child; when its output first contains "READY" sends it `first`, and when it contains
 * "CLEANING" sends `second` (if not 0). Returns the wait status; *after_ms is the time from
 * the last signal sent to the child's exit. */
static int spawn_signalled(char *const argv[], char *out, size_t size, int first, int second,
                           int64_t *after_ms)
{
    int pipefd[2];
    CHECK_EQ(pipe2(pipefd, O_CLOEXEC), 0);
    pid_t pid = fork();
    CHECK_GE(pid, 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY);
        dup2(devnull, 0);
        dup2(pipefd[1], 1);
        dup2(pipefd[1], 2);
        execv(argv[0], argv);
        _exit(127);
    }
    close(pipefd[1]);
    size_t used = 0;
    bool sent_first = false, sent_second = second == 0;
    int64_t deadline = now_ms() + 30000, last_signal = now_ms();
    for (;;) {
        struct pollfd pfd = {.fd = pipefd[0], .events = POLLIN};
        int rc = poll(&pfd, 1, 100);
        if (now_ms() > deadline) {
            kill(pid, SIGKILL);
            deadline = INT64_MAX;
        }
        if (rc <= 0)
            continue;
        ssize_t n = read(pipefd[0], out + used, size - 1 - used);
        if (n <= 0)
            break;
        used += (size_t)n;
        out[used] = '\0';
        if (!sent_first && strstr(out, "READY")) {
            sent_first = true;
            kill(pid, first);
            last_signal = now_ms();
        }
        if (sent_first && !sent_second && strstr(out, "CLEANING")) {
            sent_second = true;
            kill(pid, second);
            last_signal = now_ms();
        }
    }
    out[used] = '\0';
    close(pipefd[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    *after_ms = now_ms() - last_signal;
    return status;
}

static void expect_exit(int status, int code, const char *what, const char *out)
{
    if (!WIFEXITED(status) || WEXITSTATUS(status) != code)
        test_fail_(__FILE__, __LINE__, "%s: status %#x, want exit %d; output:\n%s", what,
                   (unsigned)status, code, out);
}

static void test_signals(const char *self)
{
    char out[16384];
    int64_t after;
    /* a waiter sees the request, cleans up, and the program exits with its own status */
    static const int signals[] = {SIGTERM, SIGINT};
    for (size_t i = 0; i < 2; i++) {
        char *argv[] = {(char *)self, "signal", "wait", i ? "twice" : NULL, NULL};
        int status = spawn_signalled(argv, out, sizeof(out), signals[i], 0, &after);
        expect_exit(status, 42, "signal with a waiter", out);
        CHECK_CONTAINS(out, "observed rc=0 requested=1 stopping=0");
        CHECK_CONTAINS(out, "cleaned up");
        CHECK_CONTAINS(out, "main returns 42");
        CHECK_CONTAINS(out, "shutdown requested");
    }
    /* no waiter: the signal ends the program with 128 + signo */
    for (size_t i = 0; i < 2; i++) {
        char *argv[] = {(char *)self, "signal", "none", NULL};
        int status = spawn_signalled(argv, out, sizeof(out), signals[i], 0, &after);
        expect_exit(status, 128 + signals[i], "signal without a waiter", out);
        CHECK_CONTAINS(out, "stopping seen");
        CHECK_LT(after, 5000);
    }
    /* a second signal while the waiter's cleanup hangs exits at once */
    char *argv[] = {(char *)self, "signal", "stubborn", NULL};
    int status = spawn_signalled(argv, out, sizeof(out), SIGTERM, SIGINT, &after);
    expect_exit(status, 128 + SIGINT, "second signal", out);
    CHECK_CONTAINS(out, "observed rc=0 requested=1 stopping=0");
    CHECK_LT(after, 1000); /* at once, not after the 20 s shutdown grace */
}

/* ---- loom_run() more than once ------------------------------------------------------------- */

static void test_run_again(unsigned ncores)
{
    test_orderly(ncores);
    CHECK_EQ(test_run(1, trivial_main, NULL), 0);
    test_orderly(ncores);
    test_orderly(1);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "grace") == 0)
        return child_grace();
    if (argc > 2 && strcmp(argv[1], "signal") == 0)
        return child_signal(argc, argv);
    alarm(120); /* a hang ends the test instead of the runner's budget */
    cpu_set_t allowed;
    CHECK_EQ(sched_getaffinity(0, sizeof(allowed), &allowed), 0);
    unsigned ncores = CPU_COUNT(&allowed) >= 2 ? 2 : 1;
    test_run_again(ncores);
    test_grace(argv[0]);
    test_signals(argv[0]);
    return 0;
}
