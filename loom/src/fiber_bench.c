/* SPDX-License-Identifier: MIT
 * fiber_bench.c - what a fiber switch and a yield cost.
 *
 * fiber_switch: ns per loom__ctx_switch, two contexts on prepared stacks switching straight to
 * each other (A -> B -> A ...), the instruction path the scheduler takes for every hop. Two
 * baselines, measured in the same process, interleaved run by run:
 *   asm_switch  - a bare switch written here (push the 6 callee-saved registers, swap rsp, pop,
 *                 ret): the floor for a switch that keeps the SysV ABI; same stacks, same loop,
 *                 so the ratio shows only what loom's switch adds (nothing, in a release build).
 *   swapcontext - glibc's ucontext switch (saves signal mask with a syscall, FP state): what a
 *                 portable coroutine library would pay.
 * Each is measured as loom's scheduler uses the switch: both contexts switch from one call
 * site (every loom fiber switches from switch_out()), so the ret returns where the return-
 * stack predictor expects; the same pattern for all three. Switching between two different
 * functions instead makes every ret mispredict; that figure is printed as information.
 * fiber_yield: ns per loom_yield() with two fibers yielding to each other on a one-core
 * reactor (loom_run, smp 1, poll 0). A yield switches straight to the next ready fiber, so it
 * is one loom__ctx_switch plus the ready-queue work; the baseline is fiber_switch re-measured
 * inside the same runtime, so the ratio reads "a yield costs N raw switches" (floor about 1;
 * below 1 when the two yielding fibers always resume from the same call site, where the ret
 * of the switch is predicted, unlike the baseline's alternating sites).
 * Each figure is the median of RUNS runs.
 */
#include <string.h>
#include <ucontext.h>

#include "benchlib.h"
#include "internal.h"

#define RUNS            7
#define SWITCH_ROUNDS   3000000     /* A->B->A round trips per run of the asm/loom switch */
#define UCONTEXT_ROUNDS 50000       /* round trips per swapcontext run (~100x slower) */
#define YIELD_ROUNDS    1000000     /* yields per fiber per fiber_yield run */
#define STACK_BYTES     (64 * 1024) /* the contexts' stacks: the loops use a few hundred bytes */

/* The bare baseline: the same six pushes, rsp swap, six pops and ret as loom's switch. */
void bench_asm_switch(struct loom__ctx *from, struct loom__ctx *to);
__asm__(".text\n"
        ".p2align 4\n"
        ".type bench_asm_switch, @function\n"
        "bench_asm_switch:\n"
        "    pushq %rbp\n"
        "    pushq %rbx\n"
        "    pushq %r12\n"
        "    pushq %r13\n"
        "    pushq %r14\n"
        "    pushq %r15\n"
        "    movq %rsp, (%rdi)\n"
        "    movq (%rsi), %rsp\n"
        "    popq %r15\n"
        "    popq %r14\n"
        "    popq %r13\n"
        "    popq %r12\n"
        "    popq %rbx\n"
        "    popq %rbp\n"
        "    ret\n"
        ".size bench_asm_switch, .-bench_asm_switch\n");

typedef void (*switch_fn)(struct loom__ctx *from, struct loom__ctx *to);

static alignas(64) char stack_a[STACK_BYTES];
static alignas(64) char stack_b[STACK_BYTES];
static struct loom__ctx ctx_caller, ctx_a, ctx_b;
static long rounds; /* A's round trips for the current run */

/* Lays out `stack` so that the first switch into `ctx` "returns" into entry() as if it had
 * been called (rsp % 16 == 8 at its first instruction, a null return address above it). */
static void ctx_prepare(struct loom__ctx *ctx, char *stack, void (*entry)(void))
{
    uintptr_t top = ((uintptr_t)stack + STACK_BYTES) & ~(uintptr_t)15;
    uint64_t *sp = (uint64_t *)(top - 80); /* after 6 pops and ret: rsp == top - 24 */
    memset(sp, 0, 80);
    sp[6] = (uint64_t)(uintptr_t)entry;
    ctx->sp = sp;
    LOOM_ASSERT(((uintptr_t)&sp[7] & 15) == 8);
}

/* A: `rounds` trips to B and back, then home to the caller (never resumed). Inlined with a
 * constant `sw`, so each variant calls its switch directly, as the scheduler does. */
static inline __attribute__((always_inline, noreturn)) void side_a(switch_fn sw)
{
    for (long i = rounds; i > 0; i--)
        sw(&ctx_a, &ctx_b);
    sw(&ctx_a, &ctx_caller);
    __builtin_trap();
}

static inline __attribute__((always_inline, noreturn)) void side_b(switch_fn sw)
{
    for (;;)
        sw(&ctx_b, &ctx_a);
}

static __attribute__((noreturn)) void loom_a(void)
{
    side_a(loom__ctx_switch);
}
static __attribute__((noreturn)) void loom_b(void)
{
    side_b(loom__ctx_switch);
}
static __attribute__((noreturn)) void asm_a(void)
{
    side_a(bench_asm_switch);
}
static __attribute__((noreturn)) void asm_b(void)
{
    side_b(bench_asm_switch);
}

/* ns per switch: 2 per round trip, plus the switch in and the switch home. */
static double measure_switch(switch_fn sw, void (*a)(void), void (*b)(void), long n)
{
    ctx_prepare(&ctx_a, stack_a, a);
    ctx_prepare(&ctx_b, stack_b, b);
    rounds = n;
    int64_t start = loom_clock_ns();
    sw(&ctx_caller, &ctx_a);
    int64_t end = loom_clock_ns();
    return (double)(end - start) / (double)(2 * n + 2);
}

/* The scheduler's pattern: both contexts run the same code and switch from one call site
 * (as every loom fiber switches from switch_out() in fiber.c), so the switch's ret returns to
 * the address the return-stack predictor expects. A is started first and counts the trips. */
static int one_started;

static inline __attribute__((always_inline, noreturn)) void side_one(switch_fn sw)
{
    int id = one_started++;
    struct loom__ctx *self = id ? &ctx_b : &ctx_a, *other = id ? &ctx_a : &ctx_b;
    long left = id ? -1 : rounds; /* B never reaches 0 */
    for (;;) {
        if (left == 0)
            sw(self, &ctx_caller);
        left--;
        sw(self, other); /* the one site both contexts switch from */
    }
}

static __attribute__((noreturn)) void loom_one(void)
{
    side_one(loom__ctx_switch);
}
static __attribute__((noreturn)) void asm_one(void)
{
    side_one(bench_asm_switch);
}

/* ns per switch, one call site (the figure reported) or two (information). */
static double measure_loom(long n)
{
    one_started = 0;
    return measure_switch(loom__ctx_switch, loom_one, loom_one, n);
}

static double measure_asm(long n)
{
    one_started = 0;
    return measure_switch(bench_asm_switch, asm_one, asm_one, n);
}

static double measure_loom_two_sites(long n)
{
    return measure_switch(loom__ctx_switch, loom_a, loom_b, n);
}

static double measure_asm_two_sites(long n)
{
    return measure_switch(bench_asm_switch, asm_a, asm_b, n);
}

/* ---- swapcontext ---------------------------------------------------------------------------- */

static ucontext_t uc_caller, uc_a, uc_b;

static void uc_side_a(void)
{
    for (long i = rounds; i > 0; i--)
        swapcontext(&uc_a, &uc_b);
    swapcontext(&uc_a, &uc_caller);
    __builtin_trap();
}

static void uc_side_b(void)
{
    for (;;)
        swapcontext(&uc_b, &uc_a);
}

static void uc_side_one(void)
{
    int id = one_started++;
    ucontext_t *self = id ? &uc_b : &uc_a, *other = id ? &uc_a : &uc_b;
    long left = id ? -1 : rounds;
    for (;;) {
        if (left == 0)
            swapcontext(self, &uc_caller);
        left--;
        swapcontext(self, other);
    }
}

static void uc_prepare(ucontext_t *uc, char *stack, void (*entry)(void))
{
    LOOM_ASSERT(getcontext(uc) == 0);
    uc->uc_stack.ss_sp = stack;
    uc->uc_stack.ss_size = STACK_BYTES;
    uc->uc_link = NULL;
    makecontext(uc, entry, 0);
}

static double measure_swapcontext_sites(long n, bool one_site)
{
    one_started = 0;
    uc_prepare(&uc_a, stack_a, one_site ? uc_side_one : uc_side_a);
    uc_prepare(&uc_b, stack_b, one_site ? uc_side_one : uc_side_b);
    rounds = n;
    int64_t start = loom_clock_ns();
    LOOM_ASSERT(swapcontext(&uc_caller, &uc_a) == 0);
    int64_t end = loom_clock_ns();
    return (double)(end - start) / (double)(2 * n + 2);
}

static double measure_swapcontext(long n)
{
    return measure_swapcontext_sites(n, true);
}

/* ---- fiber_yield: loom_yield through the run queue ------------------------------------------ */

static int yielder(void *arg)
{
    long n = (long)(intptr_t)arg;
    for (long i = 0; i < n; i++)
        loom_yield();
    return 0;
}

/* ns per loom_yield(): two fibers yield to each other while the main fiber waits in join. */
static double measure_yield(long n)
{
    struct loom_fiber *f[2];
    struct loom_fiber_attr attr = {.name = "yielder", .stack = LOOM_STACK_SMALL, .joinable = true};
    int64_t start = loom_clock_ns();
    for (int i = 0; i < 2; i++)
        LOOM_ASSERT(loom_spawn(&f[i], yielder, (void *)(intptr_t)n, &attr) == 0);
    for (int i = 0; i < 2; i++)
        LOOM_ASSERT(loom_fiber_join(f[i], LOOM_NO_DEADLINE, NULL) == 0);
    int64_t end = loom_clock_ns();
    return (double)(end - start) / (double)(2 * n);
}

struct yield_results {
    double yield_ns[RUNS];
    double switch_ns[RUNS];
};

static int yield_main(void *arg)
{
    struct yield_results *out = arg;
    measure_yield(YIELD_ROUNDS / 10); /* warm-up: stacks carved, caches and predictors warm */
    measure_loom(SWITCH_ROUNDS / 10);
    for (int run = 0; run < RUNS; run++) {
        out->switch_ns[run] = measure_loom(SWITCH_ROUNDS);
        out->yield_ns[run] = measure_yield(YIELD_ROUNDS);
    }
    return 0;
}

int main(void)
{
    double loom_ns[RUNS], asm_ns[RUNS], uc_ns[RUNS];
    double loom2_ns[RUNS], asm2_ns[RUNS], uc2_ns[RUNS];
    measure_loom(SWITCH_ROUNDS / 10);
    measure_asm(SWITCH_ROUNDS / 10);
    measure_swapcontext(UCONTEXT_ROUNDS / 10);
    for (int run = 0; run < RUNS; run++) {
        asm_ns[run] = measure_asm(SWITCH_ROUNDS);
        loom_ns[run] = measure_loom(SWITCH_ROUNDS);
        uc_ns[run] = measure_swapcontext(UCONTEXT_ROUNDS);
        asm2_ns[run] = measure_asm_two_sites(SWITCH_ROUNDS);
        loom2_ns[run] = measure_loom_two_sites(SWITCH_ROUNDS);
        uc2_ns[run] = measure_swapcontext_sites(UCONTEXT_ROUNDS, false);
    }
    /* information: switching between two different functions, where every ret mispredicts
     * (a pattern loom's scheduler does not produce) */
    printf("fiber_bench: two call sites: loom %.2f ns, asm_switch %.2f ns, swapcontext %.2f ns\n",
           bench_median_f64(loom2_ns, RUNS), bench_median_f64(asm2_ns, RUNS),
           bench_median_f64(uc2_ns, RUNS));
    /* Two baselines for one name: one bench_report() call each; the JSON keeps both and the
     * first reported (asm_switch) as the main one. */
    double loom_med = bench_median_f64(loom_ns, RUNS);
    bench_report("fiber_switch", loom_med, "ns", "asm_switch", bench_median_f64(asm_ns, RUNS),
                 loom_ns, RUNS);
    bench_report("fiber_switch", loom_med, "ns", "swapcontext", bench_median_f64(uc_ns, RUNS),
                 loom_ns, RUNS);

    struct loom_config config;
    loom_config_init(&config);
    config.smp = 1;
    config.poll_ns = 0;
    config.stall_ns = 0; /* the switch runs keep the main fiber busy for ~20 ms at a time */
    config.memory_bytes = (size_t)64 << 20;
    struct yield_results yields;
    if (loom_run(&config, yield_main, &yields) != 0) {
        fprintf(stderr, "fiber_bench: the runtime failed\n");
        return 1;
    }
    bench_report("fiber_yield", bench_median_f64(yields.yield_ns, RUNS), "ns", "fiber_switch",
                 bench_median_f64(yields.switch_ns, RUNS), yields.yield_ns, RUNS);
    return 0;
}
