/* SPDX-License-Identifier: MIT
 * reactor_bench.c - how many io_uring round trips the reactor drives per second, measured
 * with NOPs (no device time, so only the submit/reap path and loom's own work count).
 *
 * nop_reactor: 32 long-lived fibers each looping on loom_nop() (prepare an SQE, block on a
 * baton, get woken by the completion) on a one-core reactor.
 * nop_reactor_callbacks: 32 struct loom_op, each re-armed with loom_op_nop() from its own
 * completion callback (no fibers: the callback path alone).
 * Baseline raw_liburing, run in the same process between loom runs on the same thread: a bare
 * liburing loop keeping 32 NOPs in flight on a ring set up as loom's (SINGLE_ISSUER |
 * DEFER_TASKRUN | TASKRUN_FLAG | SUBMIT_ALL, CQ 4x the SQ, registered ring fd), submitting and
 * reaping a whole batch per io_uring_submit_and_get_events() and re-arming each NOP as its CQE
 * is seen. Both sides then make one syscall per 32 NOPs, so the ratio is loom's per-NOP
 * overhead (op bookkeeping, dispatch, fiber switches, loop turns) against the kernel's cost.
 * Each figure is the median of RUNS runs. The reactor's counters per NOP are printed too
 * (syscalls, loop iterations per NOP) to show the batching.
 */
#include <errno.h>
#include <string.h>

#include <liburing.h>

#include "benchlib.h"
#include "internal.h"

#define RUNS      7
#define IN_FLIGHT 32
#define NOPS      (IN_FLIGHT * 20000) /* NOPs per run (~60-100 ms at this machine's speed) */

#ifndef IORING_SETUP_DEFER_TASKRUN
#define IORING_SETUP_DEFER_TASKRUN (1U << 13)
#endif

/* ---- raw liburing --------------------------------------------------------------------------- */

static struct io_uring raw_ring;

static void raw_init(void)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP |
              IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
    unsigned entries = loom__rt.config.ring_entries; /* the same size as loom's rings */
    p.cq_entries = entries * 4;
    int rc = io_uring_queue_init_params(entries, &raw_ring, &p);
    LOOM_ASSERTF(rc == 0, "io_uring_queue_init_params: %s", strerror(-rc));
    LOOM_ASSERT(io_uring_register_ring_fd(&raw_ring) == 1);
}

static void raw_prep_nop(void)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&raw_ring);
    LOOM_ASSERT(sqe != NULL);
    io_uring_prep_nop(sqe);
    io_uring_sqe_set_data64(sqe, 1);
}

/* NOPs per second with IN_FLIGHT in flight; `syscalls` gets the enters made. */
static double raw_nops(uint64_t total, uint64_t *syscalls)
{
    uint64_t started = 0, done = 0, enters = 0;
    int64_t start = loom_clock_ns();
    for (; started < IN_FLIGHT; started++)
        raw_prep_nop();
    while (done < total) {
        int rc = io_uring_submit_and_get_events(&raw_ring);
        LOOM_ASSERT(rc >= 0);
        enters++;
        unsigned head, n = 0;
        struct io_uring_cqe *cqe;
        io_uring_for_each_cqe(&raw_ring, head, cqe)
        {
            LOOM_ASSERT(cqe->res == 0);
            n++;
            if (started < total) {
                raw_prep_nop();
                started++;
            }
        }
        io_uring_cq_advance(&raw_ring, n);
        done += n;
    }
    int64_t elapsed = loom_clock_ns() - start;
    *syscalls = enters;
    return (double)total * 1e9 / (double)elapsed;
}

/* ---- loom: fibers on loom_nop() ------------------------------------------------------------- */

static uint64_t nops_left; /* NOPs still to start in the current run */

static int nop_fiber(void *arg)
{
    (void)arg;
    while (nops_left > 0) {
        nops_left--;
        LOOM_ASSERT(loom_nop() == 0);
    }
    return 0;
}

static double fiber_nops(uint64_t total)
{
    struct loom_fiber *f[IN_FLIGHT];
    struct loom_fiber_attr attr = {.name = "nop", .stack = LOOM_STACK_SMALL, .joinable = true};
    nops_left = total;
    int64_t start = loom_clock_ns();
    for (int i = 0; i < IN_FLIGHT; i++)
        LOOM_ASSERT(loom_spawn(&f[i], nop_fiber, NULL, &attr) == 0);
    for (int i = 0; i < IN_FLIGHT; i++)
        LOOM_ASSERT(loom_fiber_join(f[i], LOOM_NO_DEADLINE, NULL) == 0);
    int64_t elapsed = loom_clock_ns() - start;
    return (double)total * 1e9 / (double)elapsed;
}

/* ---- loom: ops re-armed from their callbacks ------------------------------------------------ */

static struct loom_op ops[IN_FLIGHT];
static uint64_t callbacks_left;
static unsigned ops_running;
static struct loom_baton callbacks_done;

static void nop_callback(struct loom_op *op)
{
    LOOM_ASSERT(op->res == 0);
    if (callbacks_left > 0) {
        callbacks_left--;
        loom_op_nop(op, nop_callback, NULL);
    } else if (--ops_running == 0) {
        loom_baton_post(&callbacks_done);
    }
}

static double callback_nops(uint64_t total)
{
    loom_baton_init(&callbacks_done);
    callbacks_left = total - IN_FLIGHT;
    ops_running = IN_FLIGHT;
    int64_t start = loom_clock_ns();
    for (int i = 0; i < IN_FLIGHT; i++)
        loom_op_nop(&ops[i], nop_callback, NULL);
    LOOM_ASSERT(loom_baton_wait(&callbacks_done, LOOM_NO_DEADLINE) == 0);
    int64_t elapsed = loom_clock_ns() - start;
    loom_baton_deinit(&callbacks_done);
    return (double)total * 1e9 / (double)elapsed;
}

/* ---- main ----------------------------------------------------------------------------------- */

struct counters {
    double syscalls, iterations, sqes;
};

struct results {
    double raw[RUNS], fibers[RUNS], callbacks[RUNS];
    struct counters raw_per_nop, fibers_per_nop, callbacks_per_nop; /* of the last run */
};

/* Runs measure(total) and the reactor's counters per NOP over it. */
static double with_counters(double (*measure)(uint64_t), uint64_t total, struct counters *out)
{
    struct loom_stats before, after;
    LOOM_ASSERT(loom_stats_get(0, &before) == 0);
    double rate = measure(total);
    LOOM_ASSERT(loom_stats_get(0, &after) == 0);
    out->syscalls = (double)(after.syscalls - before.syscalls) / (double)total;
    out->iterations = (double)(after.loop_iterations - before.loop_iterations) / (double)total;
    out->sqes = (double)(after.sqes_submitted - before.sqes_submitted) / (double)total;
    return rate;
}

static int bench_main(void *arg)
{
    struct results *out = arg;
    uint64_t enters = 0;
    raw_init();
    struct counters ignored;
    raw_nops(NOPS / 10, &enters); /* warm-up: stacks carved, predictors trained */
    with_counters(fiber_nops, NOPS / 10, &ignored);
    with_counters(callback_nops, NOPS / 10, &ignored);
    for (int run = 0; run < RUNS; run++) {
        out->raw[run] = raw_nops(NOPS, &enters);
        out->raw_per_nop.syscalls = (double)enters / NOPS;
        out->fibers[run] = with_counters(fiber_nops, NOPS, &out->fibers_per_nop);
        out->callbacks[run] = with_counters(callback_nops, NOPS, &out->callbacks_per_nop);
    }
    io_uring_queue_exit(&raw_ring);
    return 0;
}

int main(void)
{
    struct loom_config config;
    loom_config_init(&config);
    config.smp = 1;
    config.poll_ns = 0;
    config.stall_ns = 0; /* the raw runs keep the main fiber busy for ~100 ms at a time */
    config.memory_bytes = (size_t)64 << 20;
    struct results results;
    if (loom_run(&config, bench_main, &results) != 0) {
        fprintf(stderr, "reactor_bench: the runtime failed\n");
        return 1;
    }
    double raw = bench_median_f64(results.raw, RUNS);
    bench_report("nop_reactor", bench_median_f64(results.fibers, RUNS), "nops/s", "raw_liburing",
                 raw, results.fibers, RUNS);
    bench_report("nop_reactor_callbacks", bench_median_f64(results.callbacks, RUNS), "nops/s",
                 "raw_liburing", raw, results.callbacks, RUNS);
    printf("reactor_bench: per NOP: raw_liburing %.4f syscalls; nop_reactor %.4f syscalls, "
           "%.4f loop iterations; nop_reactor_callbacks %.4f syscalls, %.4f loop iterations\n",
           results.raw_per_nop.syscalls, results.fibers_per_nop.syscalls,
           results.fibers_per_nop.iterations, results.callbacks_per_nop.syscalls,
           results.callbacks_per_nop.iterations);
    return 0;
}
