/* SPDX-License-Identifier: MIT
 * stall.c - the stall detector and the fiber stack-overflow reporter.
 *
 * Stalls: each reactor bumps stats.fibers_run when it switches into a fiber (a relaxed store,
 * no clock read) and publishes the running fiber in `current` (NULL in the loop). A watchdog thread
 * samples every core every stall/4; a core whose running fiber has not changed across samples
 * spanning --stall-ms is stalled: the watchdog signals that reactor thread, whose handler prints
 * the fiber's name and a backtrace of where it is. One report per stall. Overflows: a SIGSEGV on
 * the guard page below the running fiber's stack prints which fiber overflowed (on an alternate
 * signal stack) before the process dies.
 */
#include <errno.h>
#include <execinfo.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "internal.h"

#define STALL_SIGNAL   (SIGRTMIN + 3)
#define ALTSTACK_BYTES (64 * 1024)

static pthread_t watchdog;
static bool watchdog_running;
static int watchdog_stop_fd = -1;
static struct sigaction previous_segv;

static void stall_handler(int signo, siginfo_t *info, void *context)
{
    (void)signo;
    (void)info;
    (void)context;
    int saved_errno = errno;
    struct loom__reactor *r = loom__self;
    if (r) {
        const struct loom_fiber *f = r->current; /* this thread's own field */
        const char *name = f ? f->name : NULL;
        char line[256];
        int n = snprintf(line, sizeof(line),
                         "loom[core %u] stall: fiber '%s' has run for more than %" PRId64
                         " ms without yielding; backtrace:\n",
                         r->core, name ? name : "(loop)",
                         (int64_t)(loom__rt.config.stall_ns / LOOM_NS_PER_MS));
        if (n > 0) {
            ssize_t w =
                write(STDERR_FILENO, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
            (void)w;
        }
        void *frames[32];
        int depth = backtrace(frames, 32);
        backtrace_symbols_fd(frames, depth, STDERR_FILENO);
        LOOM_STAT_INC(r, stalls);
    }
    errno = saved_errno;
}

static void segv_handler(int signo, siginfo_t *info, void *context)
{
    struct loom__reactor *r = loom__self;
    struct loom_fiber *f = NULL;
    if (r && loom__addr_in_guard(r, info->si_addr, &f)) {
        char line[256];
        int n = snprintf(line, sizeof(line),
                         "loom[core %u] fatal: fiber '%s' overflowed its %zu KiB stack "
                         "(guard page hit at %p); spawn it with a larger stack class\n",
                         r->core, f->name, f->stack_size >> 10, info->si_addr);
        if (n > 0) {
            ssize_t w =
                write(STDERR_FILENO, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
            (void)w;
        }
        signal(SIGSEGV, SIG_DFL);
        abort();
    }
    /* not ours: hand over to whoever was there before (ASan, or the default action) */
    if (previous_segv.sa_flags & SA_SIGINFO && previous_segv.sa_sigaction) {
        previous_segv.sa_sigaction(signo, info, context);
        return;
    }
    if (previous_segv.sa_handler != SIG_DFL && previous_segv.sa_handler != SIG_IGN &&
        previous_segv.sa_handler != NULL) {
        previous_segv.sa_handler(signo);
        return;
    }
    signal(SIGSEGV, SIG_DFL); /* returning re-runs the access, which now kills us */
}

static pthread_once_t handlers_once = PTHREAD_ONCE_INIT;

static void install_handlers(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sa.sa_sigaction = stall_handler;
    sigaction(STALL_SIGNAL, &sa, NULL);
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sa.sa_sigaction = segv_handler;
    sigaction(SIGSEGV, &sa, &previous_segv);
    /* backtrace() loads libgcc on first use, which may allocate: do it now, not in a signal */
    void *frames[4];
    (void)backtrace(frames, 4);
}

void loom__stall_thread_init(void)
{
    pthread_once(&handlers_once, install_handlers);
    struct loom__reactor *r = loom__self;
    LOOM_ASSERT(r != NULL);
    void *stack = loom__arena_carve(r, ALTSTACK_BYTES, 4096);
    if (!stack)
        return;
    stack_t ss = {.ss_sp = stack, .ss_size = ALTSTACK_BYTES, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0)
        loom__log("warning", "sigaltstack: %s", strerror(errno));
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, STALL_SIGNAL);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

static void sample_core(struct loom__reactor *r, int64_t now, int64_t stall_ns)
{
    uint64_t switches = __atomic_load_n(&r->stats.fibers_run, __ATOMIC_RELAXED);
    const struct loom_fiber *running = __atomic_load_n(&r->current, __ATOMIC_RELAXED);
    if (switches != r->stall_seen_switches || running == NULL) {
        r->stall_seen_switches = switches;
        r->stall_seen_ns = now;
        r->stall_reported = false;
        return;
    }
    if (!r->stall_reported && now - r->stall_seen_ns >= stall_ns) {
        r->stall_reported = true;
        pthread_kill(r->thread, STALL_SIGNAL);
    }
}

static void *watchdog_main(void *arg)
{
    (void)arg;
    int64_t stall_ns = loom__rt.config.stall_ns;
    int period_ms = (int)(stall_ns / 4 / LOOM_NS_PER_MS);
    if (period_ms < 1)
        period_ms = 1;
    for (;;) {
        struct pollfd pfd = {.fd = watchdog_stop_fd, .events = POLLIN};
        int rc = poll(&pfd, 1, period_ms);
        if (rc > 0)
            break;
        int64_t now = loom__clock_ns();
        for (unsigned i = 0; i < loom__rt.cores; i++) {
            struct loom__reactor *r = loom__rt.reactors[i];
            if (r)
                sample_core(r, now, stall_ns);
        }
    }
    return NULL;
}

int loom__stall_start(struct loom__runtime *rt)
{
    if (rt->config.stall_ns <= 0)
        return 0;
    watchdog_stop_fd = eventfd(0, EFD_CLOEXEC);
    if (watchdog_stop_fd < 0)
        return -errno;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old); /* the watchdog takes no signals */
    int rc = pthread_create(&watchdog, NULL, watchdog_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        close(watchdog_stop_fd);
        watchdog_stop_fd = -1;
        return -rc;
    }
    pthread_setname_np(watchdog, "loom-watchdog");
    watchdog_running = true;
    return 0;
}

void loom__stall_stop(void)
{
    if (!watchdog_running)
        return;
    uint64_t one = 1;
    ssize_t w = write(watchdog_stop_fd, &one, sizeof(one));
    (void)w;
    pthread_join(watchdog, NULL);
    close(watchdog_stop_fd);
    watchdog_stop_fd = -1;
    watchdog_running = false;
}
