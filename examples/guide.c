/* SPDX-License-Identifier: MIT
 * guide.c - the example program of docs/loom.md, built by `make examples` so it stays true to
 * the API: fibers joined on one core, a channel and a mutex between them, a timer and a sleep,
 * a call on another core with loom_invoke_on(), and a main fiber that waits for SIGINT/SIGTERM
 * with loom_wait_shutdown() before it returns. Public headers only.
 *
 *   guide [--items N] [--linger-ms N] [loom options...]   (see --help)
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <loom/loom.h>

static long items = 1000;  /* --items: numbers sent through the channel */
static long linger_ms = 0; /* --linger-ms: how long to wait for a signal at the end */

static int parse_long(const char *value, long max, long *out)
{
    char *end;
    errno = 0;
    long n = strtol(value, &end, 10);
    if (errno || end == value || *end != '\0' || n < 0 || n > max)
        return -EINVAL; /* loom prints "invalid value for --NAME" and exits with 2 */
    *out = n;
    return 0;
}

static int parse_items(const char *value, void *ctx)
{
    return parse_long(value, 1000000, (long *)ctx);
}

static int parse_linger(const char *value, void *ctx)
{
    return parse_long(value, 3600 * 1000, (long *)ctx);
}

/* ---- 1. fibers on one core: a producer, two consumers, a channel and a mutex ---------------- */

struct pipeline {
    struct loom_channel channel;
    void *slots[16]; /* the channel's storage: caller-owned, outlives the channel */
    struct loom_mutex lock;
    long sum; /* guarded by `lock` */
};

static int producer(void *arg)
{
    struct pipeline *p = arg;
    for (long i = 1; i <= items; i++) {
        /* blocks (suspends this fiber) while all 16 slots are full */
        int rc = loom_channel_send(&p->channel, (void *)(intptr_t)i, LOOM_NO_DEADLINE);
        if (rc < 0)
            return rc;
    }
    loom_channel_close(&p->channel); /* receivers drain what is left, then get -EPIPE */
    return 0;
}

static int consumer(void *arg)
{
    struct pipeline *p = arg;
    int received = 0;
    void *item;
    while (loom_channel_recv(&p->channel, &item, LOOM_NO_DEADLINE) == 0) {
        int rc = loom_mutex_lock(&p->lock, loom_deadline_in(LOOM_NS_PER_S));
        if (rc < 0)
            return rc; /* -ETIMEDOUT */
        long sum = p->sum;
        loom_yield(); /* a switch inside the critical section: only the mutex keeps it whole */
        p->sum = sum + (long)(intptr_t)item;
        loom_mutex_unlock(&p->lock);
        received++;
    }
    return received; /* the fiber's result, handed to loom_fiber_join() */
}

static int run_pipeline(void)
{
    struct pipeline p = {.sum = 0};
    loom_channel_init(&p.channel, p.slots, sizeof(p.slots) / sizeof(p.slots[0]));
    loom_mutex_init(&p.lock);

    static const char *const names[3] = {"producer", "consumer-a", "consumer-b"};
    struct loom_fiber *fibers[3];
    int spawned = 0, rc = 0;
    for (; spawned < 3; spawned++) {
        struct loom_fiber_attr attr = {
            .name = names[spawned], .stack = LOOM_STACK_SMALL, .joinable = true};
        rc = loom_spawn(&fibers[spawned], spawned == 0 ? producer : consumer, &p, &attr);
        if (rc < 0)
            break; /* -ENOMEM: this core's budget is exhausted */
    }
    if (rc < 0)
        loom_channel_close(&p.channel); /* let the fibers already spawned finish */

    /* Nothing has run yet: spawned fibers first run from the loop once this fiber blocks.
     * They use `p` on this stack, so every one of them is joined before we return. */
    int results[3] = {0, 0, 0};
    for (int i = 0; i < spawned; i++) {
        int join_rc = loom_fiber_join(fibers[i], LOOM_NO_DEADLINE, &results[i]);
        if (rc == 0 && (join_rc < 0 || results[i] < 0))
            rc = join_rc < 0 ? join_rc : results[i];
    }
    loom_mutex_deinit(&p.lock);
    loom_channel_deinit(&p.channel);
    if (rc < 0)
        return rc;

    int received = results[1] + results[2];
    long expected = items * (items + 1) / 2;
    printf("pipeline: %d items through the channel (%d + %d), sum %ld (expected %ld)\n", received,
           results[1], results[2], p.sum, expected);
    return received == items && p.sum == expected ? 0 : -EIO;
}

/* ---- 2. a timer and a sleep ------------------------------------------------------------------ */

struct alarm {
    struct loom_timer timer;
    struct loom_baton rang;
};

/* Runs from the reactor loop, not in a fiber: it must not block. Posting a baton is how a
 * callback wakes a fiber. */
static void alarm_rang(struct loom_timer *timer, void *arg)
{
    struct alarm *alarm = arg;
    (void)timer;
    loom_baton_post(&alarm->rang);
}

static int run_timers(void)
{
    struct alarm alarm;
    loom_timer_init(&alarm.timer);
    loom_baton_init(&alarm.rang);
    int64_t start = loom_clock_ns();
    int rc =
        loom_timer_start(&alarm.timer, loom_deadline_in(5 * LOOM_NS_PER_MS), alarm_rang, &alarm);
    if (rc == 0)
        rc = loom_baton_wait(&alarm.rang, loom_deadline_in(LOOM_NS_PER_S));
    /* `alarm` lives on this stack: make sure the timer cannot fire after we return */
    (void)loom_timer_cancel(&alarm.timer);
    loom_baton_deinit(&alarm.rang);
    if (rc < 0)
        return rc;
    int64_t fired = loom_clock_ns();
    loom_sleep(2 * LOOM_NS_PER_MS);
    int64_t woke = loom_clock_ns();
    printf("timers: a 5 ms timer fired after %.2f ms; loom_sleep(2 ms) slept %.2f ms\n",
           (double)(fired - start) / 1e6, (double)(woke - fired) / 1e6);
    return 0;
}

/* ---- 3. a call on another core ------------------------------------------------------------- */

struct remote_job {
    long n;          /* input */
    long sum;        /* output, written on the target core */
    unsigned ran_on; /* output */
};

/* Runs in a new fiber on the target core. `job` lives on the caller's stack: that is safe
 * because loom_invoke_on() always waits for the reply, even past its deadline, and the reply
 * message orders these writes before the caller reads them. */
static int sum_of_squares(void *arg)
{
    struct remote_job *job = arg;
    job->ran_on = loom_core_id();
    job->sum = 0;
    for (long i = 1; i <= job->n; i++) {
        job->sum += i * i;
        if (i % 1024 == 0) {
            if (loom_fiber_cancel_requested())
                return -ECANCELED; /* the caller's deadline passed: finish early */
            loom_yield();          /* long work yields, so the target core's loop keeps turning */
        }
    }
    return 0;
}

static int run_remote(void)
{
    unsigned target = loom_core_count() > 1 ? 1 : 0; /* core 0 may call itself too */
    struct remote_job job = {.n = items};
    int rc = loom_invoke_on(target, sum_of_squares, &job, loom_deadline_in(LOOM_NS_PER_S));
    if (rc < 0)
        return rc; /* -ETIMEDOUT if it never started, or the function's own error */
    printf("invoke_on: core %u -> core %u computed sum of squares 1..%ld = %ld\n", loom_core_id(),
           job.ran_on, job.n, job.sum);
    return job.ran_on == target ? 0 : -EIO;
}

/* ---- main fiber ------------------------------------------------------------------------------ */

static int guide_main(void *arg)
{
    (void)arg;
    printf("guide: %u core(s), %" PRIu64 " KiB of memory per core\n", loom_core_count(),
           (uint64_t)(loom_mem_budget_bytes() >> 10));
    int rc = run_pipeline();
    if (rc == 0)
        rc = run_timers();
    if (rc == 0)
        rc = run_remote();
    if (rc < 0) {
        fprintf(stderr, "guide: %s\n", strerror(-rc));
        return 1; /* the process's exit status, after an orderly shutdown */
    }

    /* A server would wait here until the operator asks it to stop. While a fiber waits in
     * loom_wait_shutdown(), SIGINT/SIGTERM do not end the process: the program cleans up and
     * returns. With --linger-ms 0 (the default) the deadline has passed already. */
    rc = loom_wait_shutdown(loom_deadline_in(linger_ms * LOOM_NS_PER_MS));
    printf("guide: %s\n", rc == 0 ? "shutdown requested, cleaning up" : "done");

    struct loom_stats stats;
    if (loom_stats_get(loom_core_id(), &stats) == 0)
        printf("core %u: %" PRIu64 " fibers spawned, %" PRIu64 " messages sent, %" PRIu64
               " loop iterations\n",
               loom_core_id(), stats.fibers_spawned, stats.msgs_sent, stats.loop_iterations);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    static const struct loom_option options[] = {
        {"items", "N", "numbers to send through the channel (default 1000)", parse_items, &items},
        {"linger-ms", "N", "wait this long for SIGINT/SIGTERM before exiting (default 0)",
         parse_linger, &linger_ms},
    };
    struct loom_app app = {
        .name = "guide",
        .summary = "The example program of docs/loom.md: fibers, a channel, a mutex, timers\n"
                   "and a call on another core.",
        .usage_extra = "Example: guide --smp 2 --poll-us 0 --items 5000",
        .options = options,
        .option_count = sizeof(options) / sizeof(options[0]),
        .main = guide_main,
    };
    return loom_app_main(&app, argc, argv);
}
