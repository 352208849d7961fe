/* SPDX-License-Identifier: MIT
 * timer_bench.c - the cost of arming and cancelling a timer, against a binary heap.
 *
 * Figure timer_arm_cancel: ns per arm + cancel pair on a wheel that already holds 10,000
 * timers at random deadlines. Fresh timers are armed in batches of 1,024 and cancelled in a
 * shuffled order, so the population stays realistic (a batch armed then cancelled at once
 * would flatter the heap: its newest element sits at the end). Baseline binary_heap: the same
 * sequence on an array-based binary min-heap with the index kept in the timer (O(log n)
 * cancel), the usual alternative. Each figure is the median of 5 runs, wheel and heap runs
 * interleaved. The bench drives loom__wheel_add/remove directly: loom_timer_start/cancel are
 * those plus a thread-local lookup. It also prints what advance() costs with 10,000 timers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "benchlib.h"
#include "internal.h"

#define POPULATION 10000
#define BATCH      1024
#define ROUNDS     2048 /* ROUNDS * BATCH pairs per run */
#define RUNS       5
#define OFFSETS    65536 /* deadline offsets table, cycled */

static int64_t offsets_ns[OFFSETS]; /* deadline - now: log-uniform, 1 us .. 34 s */
static uint32_t cancel_order[BATCH];

static int64_t clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * LOOM_NS_PER_S + ts.tv_nsec;
}

static uint64_t rng_state = 0x853c49e6748fea9bull;

static uint64_t rng_next(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

static void make_sequence(void)
{
    for (int i = 0; i < OFFSETS; i++) {
        unsigned bits = 11 + (unsigned)(rng_next() % 25);
        offsets_ns[i] = (int64_t)((uint64_t)1 << (bits - 1)) + (int64_t)(rng_next() >> (65 - bits));
    }
    for (uint32_t i = 0; i < BATCH; i++)
        cancel_order[i] = i;
    for (uint32_t i = BATCH - 1; i > 0; i--) {
        uint32_t j = (uint32_t)(rng_next() % (i + 1));
        uint32_t t = cancel_order[i];
        cancel_order[i] = cancel_order[j];
        cancel_order[j] = t;
    }
}

/* ---- the baseline: a binary min-heap of timers ---------------------------------------------- */

struct heap_timer {
    int64_t deadline_ns;
    uint32_t index; /* position in the heap array */
    loom_timer_fn fn;
    void *arg;
};

struct heap {
    struct heap_timer **items;
    uint32_t count;
};

static void heap_set(struct heap *heap, uint32_t index, struct heap_timer *timer)
{
    heap->items[index] = timer;
    timer->index = index;
}

static void heap_sift_up(struct heap *heap, uint32_t index, struct heap_timer *timer)
{
    while (index > 0) {
        uint32_t parent = (index - 1) / 2;
        if (heap->items[parent]->deadline_ns <= timer->deadline_ns)
            break;
        heap_set(heap, index, heap->items[parent]);
        index = parent;
    }
    heap_set(heap, index, timer);
}

static void heap_sift_down(struct heap *heap, uint32_t index, struct heap_timer *timer)
{
    for (;;) {
        uint32_t child = 2 * index + 1;
        if (child >= heap->count)
            break;
        if (child + 1 < heap->count &&
            heap->items[child + 1]->deadline_ns < heap->items[child]->deadline_ns)
            child++;
        if (timer->deadline_ns <= heap->items[child]->deadline_ns)
            break;
        heap_set(heap, index, heap->items[child]);
        index = child;
    }
    heap_set(heap, index, timer);
}

/* noinline, like the wheel's functions, which live in another translation unit. */
static __attribute__((noinline)) void heap_push(struct heap *heap, struct heap_timer *timer)
{
    heap_sift_up(heap, heap->count++, timer);
}

static __attribute__((noinline)) void heap_remove(struct heap *heap, struct heap_timer *timer)
{
    uint32_t index = timer->index;
    struct heap_timer *last = heap->items[--heap->count];
    if (last == timer)
        return;
    if (index > 0 && last->deadline_ns < heap->items[(index - 1) / 2]->deadline_ns)
        heap_sift_up(heap, index, last);
    else
        heap_sift_down(heap, index, last);
}

/* ---- runs ----------------------------------------------------------------------------------- */

static void nop_fn(struct loom_timer *timer, void *arg)
{
}

static double run_wheel(struct loom_timer *population, struct loom_timer *batch)
{
    static struct loom__wheel wheel;
    int64_t now = 1000 * LOOM_NS_PER_S;
    loom__wheel_init(&wheel, now);
    for (int i = 0; i < POPULATION; i++) {
        population[i].deadline_ns = now + offsets_ns[i];
        loom__wheel_add(&wheel, &population[i]);
    }
    int64_t start = clock_ns();
    uint32_t next = POPULATION;
    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < BATCH; i++) {
            batch[i].deadline_ns = now + offsets_ns[next++ % OFFSETS];
            loom__wheel_add(&wheel, &batch[i]);
        }
        for (int i = 0; i < BATCH; i++)
            loom__wheel_remove(&wheel, &batch[cancel_order[i]]);
    }
    int64_t elapsed = clock_ns() - start;
    for (int i = 0; i < POPULATION; i++)
        loom__wheel_remove(&wheel, &population[i]);
    LOOM_ASSERT(wheel.armed == 0);
    return (double)elapsed / ((double)ROUNDS * BATCH);
}

static double run_heap(struct heap_timer *population, struct heap_timer *batch)
{
    static struct heap_timer *items[POPULATION + BATCH];
    struct heap heap = {.items = items, .count = 0};
    int64_t now = 1000 * LOOM_NS_PER_S;
    for (int i = 0; i < POPULATION; i++) {
        population[i].deadline_ns = now + offsets_ns[i];
        heap_push(&heap, &population[i]);
    }
    int64_t start = clock_ns();
    uint32_t next = POPULATION;
    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < BATCH; i++) {
            batch[i].deadline_ns = now + offsets_ns[next++ % OFFSETS];
            heap_push(&heap, &batch[i]);
        }
        for (int i = 0; i < BATCH; i++)
            heap_remove(&heap, &batch[cancel_order[i]]);
    }
    int64_t elapsed = clock_ns() - start;
    LOOM_ASSERT(heap.count == POPULATION);
    return (double)elapsed / ((double)ROUNDS * BATCH);
}

/* advance() in 100 us steps (a busy reactor's loop) over 10,000 timers; every timer that fires
 * re-arms itself at a fresh random deadline, so the population stays the same. */
static struct {
    struct loom__wheel wheel;
    int64_t now_ns;
    uint32_t next;
} adv;

static void rearm_fn(struct loom_timer *timer, void *arg)
{
    timer->deadline_ns = adv.now_ns + offsets_ns[adv.next++ % OFFSETS];
    loom__wheel_add(&adv.wheel, timer);
}

static void report_advance(struct loom_timer *population)
{
    enum { STEPS = 200000, STEP_NS = 100 * 1000 };
    adv.now_ns = 1000 * LOOM_NS_PER_S;
    loom__wheel_init(&adv.wheel, adv.now_ns);
    for (int i = 0; i < POPULATION; i++) {
        population[i].fn = rearm_fn;
        population[i].deadline_ns = adv.now_ns + offsets_ns[i];
        loom__wheel_add(&adv.wheel, &population[i]);
    }
    adv.next = POPULATION;
    int64_t start = clock_ns();
    uint64_t fired = 0;
    for (int step = 0; step < STEPS; step++) {
        adv.now_ns += STEP_NS;
        fired += loom__wheel_advance(&adv.wheel, adv.now_ns);
    }
    double elapsed = (double)(clock_ns() - start);
    printf("advance: %d armed, %d us steps: %.1f ns per advance, %.2f fired per advance, "
           "%.1f ns per fired timer (re-armed in its callback)\n",
           POPULATION, STEP_NS / 1000, elapsed / STEPS, (double)fired / STEPS,
           fired ? elapsed / (double)fired : 0.0);
}

int main(void)
{
    struct loom_timer *population = calloc(POPULATION, sizeof(*population));
    struct loom_timer *batch = calloc(BATCH, sizeof(*batch));
    struct heap_timer *heap_population = calloc(POPULATION, sizeof(*heap_population));
    struct heap_timer *heap_batch = calloc(BATCH, sizeof(*heap_batch));
    if (!population || !batch || !heap_population || !heap_batch) {
        fprintf(stderr, "timer_bench: out of memory\n");
        return 1;
    }
    for (int i = 0; i < POPULATION; i++)
        population[i].fn = nop_fn;
    for (int i = 0; i < BATCH; i++)
        batch[i].fn = nop_fn;
    make_sequence();

    double wheel_runs[RUNS], heap_runs[RUNS];
    run_wheel(population, batch); /* warm-up: caches, page faults, frequency */
    run_heap(heap_population, heap_batch);
    for (int run = 0; run < RUNS; run++) {
        wheel_runs[run] = run_wheel(population, batch);
        heap_runs[run] = run_heap(heap_population, heap_batch);
    }
    double runs[RUNS];
    memcpy(runs, wheel_runs, sizeof(runs));
    double value = bench_median_f64(wheel_runs, RUNS);
    double baseline = bench_median_f64(heap_runs, RUNS);
    report_advance(population);
    int rc = bench_report("timer_arm_cancel", value, "ns", "binary_heap", baseline, runs, RUNS);
    if (rc < 0)
        fprintf(stderr, "timer_bench: writing the JSON record: %s\n", strerror(-rc));
    free(heap_batch);
    free(heap_population);
    free(batch);
    free(population);
    return rc < 0;
}
