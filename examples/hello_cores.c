/* SPDX-License-Identifier: MIT
 * hello_cores.c - a tour of loom through its public API: every core says hello, core 0
 * ping-pongs messages with core 1 and prints the round-trip times, a periodic timer and a
 * sleep show the clock, and each core's counters are printed before a clean exit.
 *
 *   hello_cores [--messages N] [--smp N] [loom options...]   (see --help)
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <loom/loom.h>

static long messages = 10000;

static int parse_messages(const char *value, void *ctx)
{
    (void)ctx;
    char *end;
    errno = 0;
    long n = strtol(value, &end, 10);
    if (errno || *end != '\0' || end == value || n < 1 || n > 10 * 1000 * 1000)
        return -EINVAL;
    messages = n;
    return 0;
}

/* ---- hello from every core ------------------------------------------------------------------ */

static int say_hello(void *arg)
{
    (void)arg;
    unsigned core = loom_core_id();
    printf("  hello from core %u on CPU %u\n", core, loom_core_cpu(core));
    return 0;
}

/* ---- ping-pong --------------------------------------------------------------------------------
 */

static int pong(void *arg)
{
    return *(const int *)arg + 1; /* runs in a fiber on the target core */
}

static int compare_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int ping_pong(void)
{
    unsigned peer = loom_core_count() > 1 ? 1 : 0;
    if (peer == 0)
        printf("\nping-pong: only one core (--smp 1), so core 0 calls itself\n");
    int64_t *rtt = malloc((size_t)messages * sizeof(*rtt));
    if (!rtt)
        return -ENOMEM;
    for (long i = 0; i < messages; i++) {
        int value = (int)i;
        int64_t start = loom_clock_ns();
        int rc = loom_invoke_on(peer, pong, &value, LOOM_NO_DEADLINE);
        rtt[i] = loom_clock_ns() - start;
        if (rc != value + 1) {
            fprintf(stderr, "ping-pong: call %ld returned %d, expected %d\n", i, rc, value + 1);
            free(rtt);
            return -EIO;
        }
    }
    qsort(rtt, (size_t)messages, sizeof(*rtt), compare_i64);
    printf("\nping-pong core 0 <-> core %u: %ld round trips, median %.1f us, p99 %.1f us, "
           "max %.1f us\n",
           peer, messages, rtt[messages / 2] / 1e3, rtt[messages * 99 / 100] / 1e3,
           rtt[messages - 1] / 1e3);
    free(rtt);
    return 0;
}

/* ---- timers and sleeps -------------------------------------------------------------------- */

struct ticker {
    struct loom_timer timer;
    struct loom_baton done;
    int ticks;
    int64_t started_ns;
};

static void tick(struct loom_timer *timer, void *arg)
{
    struct ticker *t = arg;
    t->ticks++;
    printf("  tick %d at +%.1f ms\n", t->ticks, (loom_clock_ns() - t->started_ns) / 1e6);
    if (t->ticks == 5) {
        loom_timer_cancel(timer); /* stops the periodic timer from its own callback */
        loom_baton_post(&t->done);
    }
}

static int timers(void)
{
    printf("\ntimers: a periodic timer every 10 ms, five times\n");
    /* a periodic timer counts from the loop's cached clock, loom_now_ns() */
    struct ticker t = {.started_ns = loom_now_ns()};
    loom_baton_init(&t.done);
    loom_timer_init(&t.timer);
    int rc = loom_timer_start_periodic(&t.timer, 10 * LOOM_NS_PER_MS, tick, &t);
    if (rc < 0)
        return rc;
    rc = loom_baton_wait(&t.done, loom_deadline_in(LOOM_NS_PER_S));
    loom_baton_deinit(&t.done);
    if (rc < 0)
        return rc;
    int64_t start = loom_clock_ns();
    loom_sleep(25 * LOOM_NS_PER_MS);
    printf("  loom_sleep(25 ms) slept %.2f ms\n", (loom_clock_ns() - start) / 1e6);
    return 0;
}

/* ---- counters -------------------------------------------------------------------------------- */

static void print_stats(void)
{
    printf("\n%-5s %10s %8s %8s %8s %8s %8s %8s %7s\n", "core", "loops", "fibers", "sqes",
           "msgs_in", "msgs_out", "sleeps", "wakeups", "timers");
    for (unsigned core = 0; core < loom_core_count(); core++) {
        struct loom_stats s;
        if (loom_stats_get(core, &s) < 0)
            continue;
        printf("%-5u %10" PRIu64 " %8" PRIu64 " %8" PRIu64 " %8" PRIu64 " %8" PRIu64 " %8" PRIu64
               " %8" PRIu64 " %7" PRIu64 "\n",
               core, s.loop_iterations, s.fibers_spawned, s.sqes_submitted, s.msgs_received,
               s.msgs_sent, s.sleeps, s.wakeups_received, s.timers_fired);
    }
}

static int hello_main(void *arg)
{
    (void)arg;
    printf("hello_cores: %u core%s\n", loom_core_count(), loom_core_count() == 1 ? "" : "s");
    int rc = loom_invoke_on_all(say_hello, NULL, LOOM_NO_DEADLINE);
    if (rc == 0)
        rc = ping_pong();
    if (rc == 0)
        rc = timers();
    print_stats();
    fflush(stdout);
    if (rc < 0) {
        fprintf(stderr, "hello_cores: %s\n", strerror(-rc));
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const struct loom_option options[] = {
        {"messages", "N", "round trips between core 0 and core 1 (default 10000)", parse_messages,
         NULL},
    };
    struct loom_app app = {
        .name = "hello_cores",
        .summary = "Says hello from every core, measures cross-core round trips, shows timers\n"
                   "and prints each core's counters.",
        .usage_extra = "Example: hello_cores --smp 2 --messages 100000",
        .options = options,
        .option_count = sizeof(options) / sizeof(options[0]),
        .main = hello_main,
    };
    return loom_app_main(&app, argc, argv);
}
