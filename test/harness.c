/* SPDX-License-Identifier: MIT
 * harness.c - support code for the *_test.c programs (see harness.h).
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <time.h>

#include <valgrind/valgrind.h>

void test_fail_(const char *file, int line, const char *fmt, ...)
{
    char buffer[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buffer, sizeof(buffer), fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    fprintf(stderr, "FAIL %s:%d: %s\n", file, line, buffer);
    fflush(stderr);
    fflush(stdout);
    _exit(TEST_EXIT_FAIL);
}

void test_skip(const char *reason)
{
    fprintf(stderr, "SKIP: %s\n", reason);
    fflush(stderr);
    _exit(TEST_EXIT_SKIP);
}

int64_t test_scale(int64_t n)
{
    const char *scale = getenv("LOOM_TEST_SCALE");
    long pct = scale ? strtol(scale, NULL, 10) : 100;
    if (pct <= 0)
        pct = 100;
    int64_t scaled = n * pct / 100;
    return scaled < 1 ? 1 : scaled;
}

bool test_under_asan(void)
{
#if defined(__SANITIZE_ADDRESS__)
    return true;
#else
    return false;
#endif
}

bool test_under_tsan(void)
{
#if defined(__SANITIZE_THREAD__)
    return true;
#else
    return false;
#endif
}

bool test_under_valgrind(void)
{
    return RUNNING_ON_VALGRIND != 0;
}

void test_config(struct loom_config *config, unsigned smp)
{
    loom_config_init(config);
    config->smp = smp;
    config->poll_ns = 0;
    config->memory_bytes = (size_t)256 << 20;
    config->shutdown_grace_ns = 2 * 1000000000LL;
}

int test_run(unsigned smp, loom_fiber_fn fn, void *arg)
{
    struct loom_config config;
    test_config(&config, smp);
    return loom_run(&config, fn, arg);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int test_spawn(char *const argv[], char *const env[], char *out, size_t out_size, int timeout_ms)
{
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY);
        dup2(devnull, 0);
        dup2(pipefd[1], 1);
        dup2(pipefd[1], 2);
        for (size_t i = 0; env && env[i]; i++)
            putenv(env[i]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(pipefd[1]);
    size_t used = 0;
    int64_t deadline = now_ms() + timeout_ms;
    bool killed = false;
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0 && !killed) {
            kill(pid, SIGKILL);
            killed = true;
            left = 1000;
        }
        struct pollfd pfd = {.fd = pipefd[0], .events = POLLIN};
        int rc = poll(&pfd, 1, (int)(left > 1000 ? 1000 : left));
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc == 0)
            continue;
        char chunk[4096];
        ssize_t n = read(pipefd[0], chunk, sizeof(chunk));
        if (n <= 0)
            break;
        size_t take = (size_t)n;
        if (used + take > out_size - 1)
            take = out_size - 1 - used;
        memcpy(out + used, chunk, take);
        used += take;
    }
    out[used] = '\0';
    close(pipefd[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return status;
}

const char *test_self_dir(void)
{
    static char dir[PATH_MAX];
    if (dir[0] == '\0') {
        ssize_t n = readlink("/proc/self/exe", dir, sizeof(dir) - 1);
        if (n <= 0)
            return ".";
        dir[n] = '\0';
        char *slash = strrchr(dir, '/');
        if (slash)
            *slash = '\0';
    }
    return dir;
}
