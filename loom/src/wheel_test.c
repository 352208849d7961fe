/* SPDX-License-Identifier: MIT
 * wheel_test.c - the timing wheel alone, on virtual time: no reactor runs, the tests drive a
 * struct loom__wheel with made-up now_ns values (and the public API through a fake reactor).
 *
 * What "correct" means here, with tick(d) = ceil(d / 1024): a timer armed with deadline d when
 * the wheel is at tick n fires in the first advance(now_ns) with now_ns >> 10 >= max(tick(d),
 * n + 1), exactly once, in the order of those ticks and, within a tick, in arming order.
 * Pseudo-random parts use a fixed seed (LOOM_TEST_SEED overrides it); failures print it.
 */
#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include "harness.h"
#include "internal.h"

#define TICK_SHIFT LOOM_WHEEL_TICK_SHIFT
#define MS         LOOM_NS_PER_MS
#define SEC        LOOM_NS_PER_S
#define DAY        (86400 * SEC)
#define SPAN_NS    ((int64_t)1 << (42 + TICK_SHIFT)) /* the wheel's span, ~52 days */

static uint64_t tick_of(int64_t deadline_ns)
{
    return ((uint64_t)deadline_ns + (1u << TICK_SHIFT) - 1) >> TICK_SHIFT;
}

/* ---- pseudo-random numbers (xorshift64*) ------------------------------------------------- */

static uint64_t seed;
static uint64_t rng_state;

static void rng_seed(uint64_t value)
{
    rng_state = value * 0x9E3779B97F4A7C15ull + 1;
}

static uint64_t rng_next(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

static uint64_t rng_below(uint64_t n)
{
    return n == 0 ? 0 : rng_next() % n;
}

/* A duration with a log-uniform magnitude: [0, 2^bits) with bits uniform in [0, max_bits]. */
static int64_t rng_log_ns(unsigned max_bits)
{
    unsigned bits = (unsigned)rng_below(max_bits + 1);
    return bits == 0 ? 0 : (int64_t)(rng_next() >> (64 - bits));
}

#define SEEDED_CHECK(cond)                                                                         \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fprintf(stderr, "seed %" PRIu64 " (replay: LOOM_TEST_SEED=%" PRIu64 ")\n", seed,       \
                    seed);                                                                         \
        CHECK(cond);                                                                               \
    } while (0)

/* ---- probes: timers that check when and in which order they fire -------------------------- */

struct probe {
    struct loom_timer timer;
    int64_t deadline_ns;
    uint64_t tick; /* the tick it fires at */
    uint32_t fired;
    bool cancelled;
};

static struct {
    const struct loom__wheel *wheel;
    int64_t now_ns;     /* the advance in progress */
    uint64_t last_tick; /* tick of the latest firing */
    const struct probe *last;
    uint64_t fired;
} g;

static void probe_fn(struct loom_timer *timer, void *arg)
{
    struct probe *p = arg;
    CHECK(timer == &p->timer);
    CHECK(!p->cancelled);
    CHECK_EQ(p->fired, 0);
    CHECK_LE(p->deadline_ns, g.now_ns);   /* never early */
    CHECK_EQ(p->tick, g.wheel->now_tick); /* at its tick */
    CHECK_GE(p->tick, g.last_tick);       /* in tick order */
    if (g.last != NULL && p->tick == g.last_tick)
        CHECK_GT(p, g.last); /* the same tick: arming order (callers arm in address order) */
    g.last_tick = p->tick;
    g.last = p;
    p->fired++;
    g.fired++;
}

static void probe_arm_fn(struct loom__wheel *wheel, struct probe *p, int64_t deadline_ns,
                         loom_timer_fn fn)
{
    memset(p, 0, sizeof(*p));
    p->timer.deadline_ns = deadline_ns;
    p->timer.fn = fn;
    p->timer.arg = p;
    p->deadline_ns = deadline_ns;
    uint64_t tick = tick_of(deadline_ns);
    p->tick = tick > wheel->now_tick ? tick : wheel->now_tick + 1;
    uint64_t armed = wheel->armed;
    loom__wheel_add(wheel, &p->timer);
    CHECK_EQ(wheel->armed, armed + 1);
}

static void probe_arm(struct loom__wheel *wheel, struct probe *p, int64_t deadline_ns)
{
    probe_arm_fn(wheel, p, deadline_ns, probe_fn);
}

static void probe_cancel(struct loom__wheel *wheel, struct probe *p)
{
    uint64_t armed = wheel->armed;
    loom__wheel_remove(wheel, &p->timer);
    CHECK_EQ(wheel->armed, armed - 1);
    p->cancelled = true;
}

static uint64_t advance(struct loom__wheel *wheel, int64_t now_ns)
{
    g.wheel = wheel;
    g.now_ns = now_ns;
    uint64_t fired = g.fired;
    uint64_t wheel_fired = wheel->fired;
    uint64_t n = loom__wheel_advance(wheel, now_ns);
    CHECK_EQ(n, g.fired - fired);
    CHECK_EQ(wheel->fired - wheel_fired, n);
    CHECK_EQ(wheel->now_tick, now_ns >> TICK_SHIFT);
    return n;
}

static void reset_globals(void)
{
    memset(&g, 0, sizeof(g));
}

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* How many of the sorted `ticks` are <= `tick`. */
static size_t count_le(const uint64_t *ticks, size_t n, uint64_t tick)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ticks[mid] <= tick)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* next_ns() is after the wheel's tick and not after the earliest pending tick. */
static void check_next_ns(const struct loom__wheel *wheel, uint64_t min_tick)
{
    int64_t next = loom__wheel_next_ns(wheel);
    if (wheel->armed == 0) {
        CHECK_EQ(next, LOOM_NO_DEADLINE);
        return;
    }
    CHECK_GT((uint64_t)next, wheel->now_tick << TICK_SHIFT);
    CHECK((uint64_t)next <= min_tick << TICK_SHIFT);
}

/* ---- tests ------------------------------------------------------------------------------ */

/* Deadlines from ns to months (every level, and parked beyond the span), advanced in random
 * steps: each fires once, never early, at the first advance past its tick, in tick order. */
static void test_levels_ordering(void)
{
    size_t n = (size_t)test_scale(50000);
    struct probe *probes = calloc(n, sizeof(*probes));
    uint64_t *ticks = calloc(n, sizeof(*ticks));
    CHECK(probes != NULL && ticks != NULL);
    reset_globals();
    struct loom__wheel wheel;
    int64_t start = rng_log_ns(50), now = start;
    loom__wheel_init(&wheel, now);
    for (size_t i = 0; i < n; i++) {
        probe_arm(&wheel, &probes[i], now + 1 + rng_log_ns(54));
        ticks[i] = probes[i].tick;
    }
    qsort(ticks, n, sizeof(*ticks), compare_u64);
    CHECK_GT(ticks[n - 1], wheel.now_tick + ((uint64_t)1 << 42)); /* some are parked */
    unsigned advances = 0;
    while (g.fired < n) {
        check_next_ns(&wheel, ticks[g.fired]);
        now += rng_log_ns(47);
        advance(&wheel, now);
        CHECK_EQ(g.fired, count_le(ticks, n, (uint64_t)now >> TICK_SHIFT));
        CHECK_EQ(wheel.armed, n - g.fired);
        advances++;
    }
    for (size_t i = 0; i < n; i++)
        CHECK_EQ(probes[i].fired, 1);
    check_next_ns(&wheel, 0);
    printf("levels: %zu timers over %.1f days, %u advances\n", n,
           (double)(now - start) / (double)DAY, advances);
    free(ticks);
    free(probes);
}

/* Timers at every level (and parked) cancelled right away or after cascading: they never
 * fire, the others still do. */
static void test_cancel_levels(void)
{
    enum { PER_LEVEL = 64, LEVELS = LOOM_WHEEL_LEVELS + 1 };
    static struct probe probes[LEVELS][PER_LEVEL];
    reset_globals();
    struct loom__wheel wheel;
    int64_t start = 123456789;
    loom__wheel_init(&wheel, start);
    for (int level = 0; level < LEVELS; level++) {
        int64_t lo = (int64_t)1 << (6 * level + TICK_SHIFT);
        for (int i = 0; i < PER_LEVEL; i++)
            probe_arm(&wheel, &probes[level][i], start + lo + (int64_t)rng_below((uint64_t)lo));
    }
    for (int level = 0; level < LEVELS; level++)
        for (int i = 0; i < PER_LEVEL; i += 4)
            probe_cancel(&wheel, &probes[level][i]); /* before any cascade */
    int64_t end = start + ((int64_t)2 << (6 * LEVELS + TICK_SHIFT));
    for (int64_t now = start; now < end; now += (end - start) / 1000) {
        advance(&wheel, now);
        for (int level = 0; level < LEVELS; level++) {
            for (int i = 1; i < PER_LEVEL; i += 4) {
                struct probe *p = &probes[level][i];
                if (!p->cancelled && p->fired == 0 && rng_below(8) == 0)
                    probe_cancel(&wheel, p); /* after cascading, at some level */
            }
        }
    }
    advance(&wheel, end);
    uint64_t fired = 0, cancelled = 0;
    for (int level = 0; level < LEVELS; level++) {
        for (int i = 0; i < PER_LEVEL; i++) {
            struct probe *p = &probes[level][i];
            CHECK_EQ(p->fired, p->cancelled ? 0 : 1);
            fired += p->fired;
            cancelled += p->cancelled;
        }
    }
    CHECK_EQ(fired + cancelled, LEVELS * PER_LEVEL);
    CHECK_EQ(wheel.armed, 0);
    check_next_ns(&wheel, 0);
}

/* ---- callbacks that arm and cancel ---------------------------------------------------------- */

enum { CB_A, CB_B, CB_C, CB_D, CB_E, CB_F, CB_G, CB_H, CB_COUNT };
static struct {
    struct loom__wheel wheel;
    struct probe p[CB_COUNT];
    int order[64];
    int norder;
    int chain_left;
} cb;

static void record_fn(struct loom_timer *timer, void *arg)
{
    struct probe *p = arg;
    CHECK_LT(cb.norder, 64);
    cb.order[cb.norder++] = (int)(p - cb.p);
    p->fired++;
    g.fired++;
    CHECK(!p->cancelled);
    CHECK_LE(p->deadline_ns, g.now_ns);
    CHECK_EQ(p->tick, cb.wheel.now_tick);
}

/* A: cancels B (due in the same tick, not called yet) and F (in a slot, due later in this
 * advance), arms D with a deadline in the past and E a bit later. */
static void a_fn(struct loom_timer *timer, void *arg)
{
    record_fn(timer, arg);
    probe_cancel(&cb.wheel, &cb.p[CB_B]);
    probe_cancel(&cb.wheel, &cb.p[CB_F]);
    probe_arm_fn(&cb.wheel, &cb.p[CB_D], 0, record_fn);
    probe_arm_fn(&cb.wheel, &cb.p[CB_E], cb.p[CB_A].deadline_ns + 5000, record_fn);
}

/* H re-arms itself with a deadline in the past: once per tick, not in a loop. */
static void chain_fn(struct loom_timer *timer, void *arg)
{
    record_fn(timer, arg);
    CHECK_EQ(cb.wheel.now_tick, cb.p[CB_H].tick);
    if (--cb.chain_left > 0)
        probe_arm_fn(&cb.wheel, &cb.p[CB_H], 0, chain_fn);
}

static void free_fn(struct loom_timer *timer, void *arg)
{
    (*(int *)arg)++;
    g.fired++;
    if (timer->period_ns > 0)
        loom__wheel_remove(&cb.wheel, timer); /* a periodic one stops itself */
    free(timer); /* the wheel must not touch it after the callback (ASan checks) */
}

static void test_callbacks(void)
{
    memset(&cb, 0, sizeof(cb));
    reset_globals();
    int64_t t0 = 1000 * SEC;
    loom__wheel_init(&cb.wheel, t0);
    int64_t t1 = t0 + 3 * MS + 17;
    probe_arm_fn(&cb.wheel, &cb.p[CB_A], t1, a_fn);
    probe_arm_fn(&cb.wheel, &cb.p[CB_B], t1 + 1, record_fn); /* same tick as A */
    probe_arm_fn(&cb.wheel, &cb.p[CB_C], t1, record_fn);
    probe_arm_fn(&cb.wheel, &cb.p[CB_F], t1 + 2000, record_fn);
    probe_arm_fn(&cb.wheel, &cb.p[CB_G], t1 + 9000, record_fn);
    CHECK_EQ(tick_of(t1), tick_of(t1 + 1));
    advance(&cb.wheel, t1 + 10 * 1000);
    int expected[] = {CB_A, CB_C, CB_D, CB_E, CB_G};
    CHECK_EQ(cb.norder, 5);
    for (int i = 0; i < 5; i++)
        CHECK_EQ(cb.order[i], expected[i]);
    CHECK_EQ(cb.p[CB_D].tick, tick_of(t1) + 1); /* a past deadline: the next tick */
    CHECK_EQ(cb.wheel.armed, 0);

    /* A self re-arming callback with a past deadline fires once per tick. */
    cb.norder = 0;
    cb.chain_left = 10;
    int64_t t2 = t1 + 20 * 1000;
    probe_arm_fn(&cb.wheel, &cb.p[CB_H], t2, chain_fn);
    advance(&cb.wheel, t2 + MS);
    CHECK_EQ(cb.norder, 10);
    CHECK_EQ(cb.p[CB_H].tick, tick_of(t2) + 9);

    /* A past deadline armed between advances waits for the next tick, not the same one. */
    int64_t now = t2 + MS;
    probe_arm_fn(&cb.wheel, &cb.p[CB_A], 0, record_fn);
    CHECK_EQ(loom__wheel_next_ns(&cb.wheel), (int64_t)((cb.wheel.now_tick + 1) << TICK_SHIFT));
    CHECK_EQ(advance(&cb.wheel, now), 0);
    CHECK_EQ(advance(&cb.wheel, now + 1024), 1);

    /* Callbacks that free their timer (one-shot, and periodic after stopping it). */
    int calls = 0;
    for (int periodic = 0; periodic < 2; periodic++) {
        struct loom_timer *timer = calloc(1, sizeof(*timer));
        CHECK(timer != NULL);
        timer->deadline_ns = now + MS;
        timer->period_ns = periodic ? MS : 0;
        timer->fn = free_fn;
        timer->arg = &calls;
        loom__wheel_add(&cb.wheel, timer);
    }
    now += 5 * MS;
    advance(&cb.wheel, now);
    CHECK_EQ(calls, 2);
    CHECK_EQ(cb.wheel.armed, 0);
}

/* ---- periodic timers ------------------------------------------------------------------------ */

struct periodic {
    struct loom_timer timer;
    int64_t period_ns;
    int64_t start_ns;
    uint64_t count;
};

static void periodic_fn(struct loom_timer *timer, void *arg)
{
    struct periodic *p = arg;
    CHECK(timer == &p->timer);
    p->count++;
    CHECK_EQ(timer->period_ns, p->period_ns);
    CHECK_GT(timer->deadline_ns, g.now_ns); /* re-armed already, after now */
    g.fired++;
}

static void periodic_arm(struct loom__wheel *wheel, struct periodic *p, int64_t now,
                         int64_t period_ns)
{
    memset(p, 0, sizeof(*p));
    p->period_ns = period_ns;
    p->start_ns = now;
    p->timer.deadline_ns = now + period_ns;
    p->timer.period_ns = period_ns;
    p->timer.fn = periodic_fn;
    p->timer.arg = p;
    loom__wheel_add(wheel, &p->timer);
}

/* Over a virtual hour in steps shorter than the periods, a period-p timer fires exactly
 * floor(elapsed / p) times, its deadlines staying on the grid start + k p. */
static void test_periodic_hour(void)
{
    static const int64_t periods[] = {100 * MS, 250 * MS + 3, SEC + 1, 60 * SEC};
    enum { N = sizeof(periods) / sizeof(periods[0]) };
    struct periodic timers[N];
    struct loom__wheel wheel;
    reset_globals();
    int64_t start = 5 * SEC + 77;
    loom__wheel_init(&wheel, start);
    for (int i = 0; i < N; i++)
        periodic_arm(&wheel, &timers[i], start, periods[i]);
    int64_t end = start + 3600 * SEC, now = start;
    while (now < end) {
        now += 1 + (int64_t)rng_below(50 * MS);
        if (now > end)
            now = end;
        advance(&wheel, now);
        int64_t reached = (now >> TICK_SHIFT) << TICK_SHIFT; /* the wheel's time: whole ticks */
        for (int i = 0; i < N; i++)
            CHECK_EQ(timers[i].count, (uint64_t)((reached - start) / periods[i]));
    }
    for (int i = 0; i < N; i++) {
        CHECK_EQ(timers[i].count, (uint64_t)((end - (end & 1023) - start) / periods[i]));
        CHECK_EQ(timers[i].timer.deadline_ns, start + (int64_t)(timers[i].count + 1) * periods[i]);
    }
    printf("periodic: %" PRIu64 " firings of 100 ms timer in a virtual hour\n", timers[0].count);
    CHECK_EQ(wheel.armed, N);
}

/* A late periodic timer fires once, then a period after now: no burst to catch up. */
static void test_periodic_late(void)
{
    struct periodic p, q;
    struct loom__wheel wheel;
    reset_globals();
    int64_t start = 42 * SEC;
    loom__wheel_init(&wheel, start);
    periodic_arm(&wheel, &p, start, MS);
    int64_t now = start + 3600 * SEC;
    CHECK_EQ(advance(&wheel, now), 1);
    CHECK_EQ(p.timer.deadline_ns, now + MS);
    CHECK_EQ(advance(&wheel, now + MS - 1), 0);
    CHECK_EQ(advance(&wheel, now + MS + 1023), 1); /* the first whole tick after it */
    CHECK_EQ(p.count, 2);
    loom__wheel_remove(&wheel, &p.timer);

    /* A little late: the next deadline stays on the grid while it is still ahead. */
    now += MS;
    periodic_arm(&wheel, &q, now, 10 * MS);
    CHECK_EQ(advance(&wheel, now + 15 * MS), 1);
    CHECK_EQ(q.timer.deadline_ns, now + 20 * MS);
    CHECK_EQ(advance(&wheel, now + 35 * MS), 1);
    CHECK_EQ(q.timer.deadline_ns, now + 45 * MS);
    CHECK_EQ(q.count, 2);
}

/* ---- LOOM_NO_DEADLINE, next_ns, a million timers ------------------------------------------- */

/* An INT64_MAX deadline never fires, even across re-parking and advancing to INT64_MAX. */
static void test_no_deadline(void)
{
    struct probe never, soon, late;
    struct loom__wheel wheel;
    reset_globals();
    loom__wheel_init(&wheel, 0);
    probe_arm(&wheel, &never, LOOM_NO_DEADLINE);
    probe_arm(&wheel, &soon, DAY);
    probe_arm(&wheel, &late, 1000 * DAY);
    static const int64_t steps[] = {
        DAY, 60 * DAY, 1000 * DAY, (int64_t)1 << 60, (int64_t)1 << 62, INT64_MAX - 1, INT64_MAX};
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        advance(&wheel, steps[i]);
        int64_t next = loom__wheel_next_ns(&wheel);
        CHECK_GT(next, steps[i] - 1024);
    }
    CHECK_EQ(soon.fired, 1);
    CHECK_EQ(late.fired, 1);
    CHECK_EQ(never.fired, 0);
    CHECK_EQ(wheel.armed, 1);
    probe_cancel(&wheel, &never);
    CHECK_EQ(loom__wheel_next_ns(&wheel), LOOM_NO_DEADLINE);

    /* A reactor sleeping until next_ns() each time: a bounded number of wake-ups (re-parking
     * every ~52 days of virtual time), and it never fires. */
    reset_globals();
    loom__wheel_init(&wheel, 0);
    probe_arm(&wheel, &never, LOOM_NO_DEADLINE);
    unsigned wakeups = 0;
    int64_t next;
    while ((next = loom__wheel_next_ns(&wheel)) != LOOM_NO_DEADLINE) {
        CHECK_GT(next, g.now_ns);
        advance(&wheel, next);
        CHECK_LT(++wakeups, 4000);
    }
    CHECK_EQ(never.fired, 0);
    CHECK_EQ(wheel.armed, 1);
    printf("no deadline: %u wake-ups to reach the end of time\n", wakeups);
}

/* Sleeping until next_ns() reaches any timer after at most one wake-up per level. */
static void test_next_ns(void)
{
    struct probe p;
    struct loom__wheel wheel;
    reset_globals();
    int64_t now = 777 * SEC + 5;
    loom__wheel_init(&wheel, now);
    CHECK_EQ(loom__wheel_next_ns(&wheel), LOOM_NO_DEADLINE);
    for (int level = 0; level < LOOM_WHEEL_LEVELS; level++) {
        int64_t base = (int64_t)1 << (6 * level + TICK_SHIFT);
        int64_t offset = base + (int64_t)rng_below((uint64_t)base);
        probe_arm(&wheel, &p, now + offset);
        check_next_ns(&wheel, p.tick);
        unsigned wakeups = 0;
        while (p.fired == 0) {
            int64_t next = loom__wheel_next_ns(&wheel);
            CHECK_GT(next, now);
            check_next_ns(&wheel, p.tick);
            advance(&wheel, next);
            now = next;
            wakeups++;
        }
        CHECK_LE(wakeups, (unsigned)level + 2);         /* a carry may start it one level up */
        CHECK_EQ(now, (int64_t)(p.tick << TICK_SHIFT)); /* woke exactly at its tick */
        CHECK_EQ(loom__wheel_next_ns(&wheel), LOOM_NO_DEADLINE);
    }
}

static struct {
    struct loom_timer *base;
    uint64_t last_tick;
    size_t last_index;
    uint8_t *fired;
    size_t count;
} mil;

static void million_fn(struct loom_timer *timer, void *arg)
{
    size_t index = (size_t)(timer - mil.base);
    uint64_t tick = tick_of(timer->deadline_ns);
    CHECK_LE(timer->deadline_ns, g.now_ns);
    CHECK_GE(tick, mil.last_tick);
    if (tick == mil.last_tick)
        CHECK_GT(index, mil.last_index); /* the same tick: arming order */
    CHECK_EQ(mil.fired[index], 0);
    mil.fired[index] = 1;
    mil.last_tick = tick;
    mil.last_index = index;
    mil.count++;
}

static double elapsed_ms(const struct timespec *since)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)(ts.tv_sec - since->tv_sec) * 1e3 + (double)(ts.tv_nsec - since->tv_nsec) / 1e6;
}

/* A million timers in ten seconds: all fire, in order, those of one tick in arming order. */
static void test_million(void)
{
    size_t n = (size_t)test_scale(1000000);
    struct loom_timer *timers = calloc(n, sizeof(*timers));
    uint64_t *ticks = calloc(n, sizeof(*ticks));
    memset(&mil, 0, sizeof(mil));
    mil.fired = calloc(n, 1);
    mil.base = timers;
    CHECK(timers != NULL && ticks != NULL && mil.fired != NULL);
    reset_globals();
    struct loom__wheel wheel;
    int64_t now = 3 * DAY + 12345;
    loom__wheel_init(&wheel, now);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (size_t i = 0; i < n; i++) {
        timers[i].deadline_ns = now + 1 + (int64_t)rng_below(10 * SEC);
        timers[i].fn = million_fn;
        loom__wheel_add(&wheel, &timers[i]);
        ticks[i] = tick_of(timers[i].deadline_ns);
    }
    double arm_ms = elapsed_ms(&t0);
    qsort(ticks, n, sizeof(*ticks), compare_u64);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int64_t end = now + 10 * SEC + 1024;
    while (now < end) {
        now += 1 + (int64_t)rng_below(20 * MS);
        g.now_ns = now;
        loom__wheel_advance(&wheel, now);
        CHECK_EQ(mil.count, count_le(ticks, n, (uint64_t)now >> TICK_SHIFT));
    }
    CHECK_EQ(mil.count, n);
    CHECK_EQ(wheel.armed, 0);
    CHECK_EQ(wheel.fired, n);
    printf("million: %zu timers armed in %.1f ms, fired in %.1f ms\n", n, arm_ms, elapsed_ms(&t0));
    free(mil.fired);
    free(ticks);
    free(timers);
}

/* ---- randomized model check against a sorted reference ------------------------------------- */

enum { MODEL_TIMERS = 48 };
struct model_timer {
    struct loom_timer timer;
    bool armed;
    int64_t deadline_ns;
    int64_t period_ns;
    uint64_t tick; /* the tick it fires at */
    uint64_t seq;  /* arming order */
};

static struct {
    struct loom__wheel wheel;
    struct model_timer t[MODEL_TIMERS];
    int64_t now_ns;
    uint64_t seq;
    int log[MODEL_TIMERS];
    int nlog;
} model;

static void model_fn(struct loom_timer *timer, void *arg)
{
    struct model_timer *m = arg;
    SEEDED_CHECK(model.nlog < MODEL_TIMERS);
    model.log[model.nlog++] = (int)(m - model.t);
}

static int64_t model_deadline(void)
{
    int64_t now = model.now_ns;
    switch (rng_below(10)) {
    case 0:
        return (int64_t)rng_below((uint64_t)now + 1); /* past */
    case 1:
        return now + (int64_t)rng_below(64 << TICK_SHIFT); /* now or the next few ticks */
    case 2: {
        const struct model_timer *other = &model.t[rng_below(MODEL_TIMERS)];
        if (other->armed && other->deadline_ns >= now && other->deadline_ns < INT64_MAX - 2)
            return other->deadline_ns + (int64_t)rng_below(3); /* share a tick */
        return now;
    }
    case 3:
        return rng_below(20) == 0 ? LOOM_NO_DEADLINE : now + SPAN_NS + rng_log_ns(53);
    default:
        return now + rng_log_ns(53);
    }
}

static void model_arm(struct model_timer *m)
{
    uint64_t now_tick = model.wheel.now_tick;
    m->period_ns = rng_below(8) == 0 ? 1 + rng_log_ns(40) : 0;
    m->deadline_ns = m->period_ns ? model.now_ns + m->period_ns : model_deadline();
    m->tick = tick_of(m->deadline_ns) > now_tick ? tick_of(m->deadline_ns) : now_tick + 1;
    m->seq = ++model.seq;
    m->armed = true;
    m->timer.deadline_ns = m->deadline_ns;
    m->timer.period_ns = m->period_ns;
    m->timer.fn = model_fn;
    m->timer.arg = m;
    loom__wheel_add(&model.wheel, &m->timer);
}

static int compare_fire_order(const void *a, const void *b)
{
    const struct model_timer *x = *(struct model_timer *const *)a;
    const struct model_timer *y = *(struct model_timer *const *)b;
    if (x->tick != y->tick)
        return x->tick < y->tick ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* What the reference says fires in advance(now_ns), in order; re-arms periodic ones. */
static int model_expect(int64_t now_ns, struct model_timer **due)
{
    uint64_t target = (uint64_t)now_ns >> TICK_SHIFT;
    int n = 0;
    for (int i = 0; i < MODEL_TIMERS; i++)
        if (model.t[i].armed && model.t[i].tick <= target)
            due[n++] = &model.t[i];
    qsort(due, (size_t)n, sizeof(*due), compare_fire_order);
    for (int i = 0; i < n; i++) {
        struct model_timer *m = due[i];
        if (m->period_ns == 0) {
            m->armed = false;
            continue;
        }
        int64_t next = m->deadline_ns + m->period_ns;
        if (next <= now_ns)
            next = now_ns + m->period_ns;
        m->deadline_ns = next;
        m->tick = tick_of(next);
        m->seq = ++model.seq;
    }
    return n;
}

static void model_advance(int64_t now_ns)
{
    struct model_timer *due[MODEL_TIMERS];
    int n = model_expect(now_ns, due);
    model.nlog = 0;
    g.now_ns = now_ns;
    uint64_t fired = loom__wheel_advance(&model.wheel, now_ns);
    model.now_ns = now_ns;
    SEEDED_CHECK(fired == (uint64_t)n);
    SEEDED_CHECK(model.nlog == n);
    for (int i = 0; i < n; i++) {
        SEEDED_CHECK(model.log[i] == due[i] - model.t);
        SEEDED_CHECK(due[i]->timer.deadline_ns == due[i]->deadline_ns);
    }
}

static void model_check_next(void)
{
    uint64_t armed = 0, min_tick = UINT64_MAX;
    for (int i = 0; i < MODEL_TIMERS; i++) {
        if (model.t[i].armed) {
            armed++;
            min_tick = model.t[i].tick < min_tick ? model.t[i].tick : min_tick;
        }
    }
    SEEDED_CHECK(model.wheel.armed == armed);
    int64_t next = loom__wheel_next_ns(&model.wheel);
    if (armed == 0) {
        SEEDED_CHECK(next == LOOM_NO_DEADLINE);
        return;
    }
    SEEDED_CHECK((uint64_t)next > model.wheel.now_tick << TICK_SHIFT);
    SEEDED_CHECK((uint64_t)next <= min_tick << TICK_SHIFT);
}

static void model_step(void)
{
    struct model_timer *m = &model.t[rng_below(MODEL_TIMERS)];
    uint64_t op = rng_below(100);
    if (op < 40) {
        if (!m->armed)
            model_arm(m);
    } else if (op < 60) {
        if (m->armed) {
            loom__wheel_remove(&model.wheel, &m->timer);
            m->armed = false;
        }
    } else if (op < 65) {
        int64_t next = loom__wheel_next_ns(&model.wheel); /* as a reactor that slept */
        model_advance(next == LOOM_NO_DEADLINE ? model.now_ns : next);
    } else {
        model_advance(model.now_ns + (rng_below(10) == 0 ? 0 : rng_log_ns(48)));
    }
    model_check_next();
}

static void test_model(void)
{
    int64_t steps = test_scale(400000);
    for (int round = 0; round < 4; round++) {
        memset(&model, 0, sizeof(model));
        model.now_ns = rng_log_ns(50);
        loom__wheel_init(&model.wheel, model.now_ns);
        reset_globals();
        for (int64_t i = 0; i < steps / 4 && model.now_ns < ((int64_t)1 << 61); i++)
            model_step();
        for (int i = 0; i < MODEL_TIMERS; i++) {
            if (model.t[i].armed)
                loom__wheel_remove(&model.wheel, &model.t[i].timer);
        }
        SEEDED_CHECK(model.wheel.armed == 0);
    }
}

/* ---- the public API, on a fake reactor ------------------------------------------------------ */

static struct loom__reactor fake;

static void api_setup(int64_t now_ns)
{
    memset(&fake, 0, sizeof(fake));
    fake.core = 3;
    fake.now_ns = now_ns;
    loom__wheel_init(&fake.wheel, now_ns);
    loom__self = &fake;
}

static void api_tick(int64_t by_ns)
{
    fake.now_ns += by_ns;
    loom__wheel_advance(&fake.wheel, fake.now_ns);
}

static struct {
    struct loom_timer one, periodic, victim;
    int one_calls, periodic_calls, victim_calls;
} api;

static void api_periodic_fn(struct loom_timer *timer, void *arg)
{
    CHECK(loom_timer_is_armed(timer)); /* a periodic timer stays armed */
    CHECK_EQ(loom_timer_start(timer, 0, api_periodic_fn, arg), -EALREADY);
    if (++api.periodic_calls == 3)
        CHECK_EQ(loom_timer_cancel(timer), 0); /* stops it */
}

static void api_victim_fn(struct loom_timer *timer, void *arg)
{
    api.victim_calls++;
}

static void api_one_fn(struct loom_timer *timer, void *arg)
{
    CHECK(arg == &api);
    CHECK(!loom_timer_is_armed(timer));
    CHECK_EQ(loom_timer_cancel(timer), -ENOENT);
    if (++api.one_calls > 1)
        return;
    CHECK_EQ(loom_timer_cancel(&api.victim), 0); /* due in the same tick, after this one */
    CHECK_EQ(loom_timer_start(timer, fake.now_ns + MS, api_one_fn, arg), 0);
}

static void test_api(void)
{
    api_setup(10 * SEC);
    memset(&api, 0, sizeof(api));
    loom_timer_init(&api.one);
    loom_timer_init(&api.periodic);
    loom_timer_init(&api.victim);
    CHECK(!loom_timer_is_armed(&api.one));
    CHECK_EQ(loom_timer_cancel(&api.one), -ENOENT);
    CHECK_EQ(loom_timer_start(&api.one, -1, api_one_fn, &api), -EINVAL);
    CHECK_EQ(loom_timer_start(&api.one, fake.now_ns + MS, api_one_fn, &api), 0);
    CHECK_EQ(loom_timer_start(&api.one, fake.now_ns + MS, api_one_fn, &api), -EALREADY);
    CHECK(loom_timer_is_armed(&api.one));
    CHECK_EQ(loom_timer_cancel(&api.one), 0);
    CHECK_EQ(loom_timer_cancel(&api.one), -ENOENT);
    CHECK(!loom_timer_is_armed(&api.one));

    CHECK_EQ(loom_timer_start_periodic(&api.periodic, 0, api_periodic_fn, NULL), -EINVAL);
    CHECK_EQ(loom_timer_start_periodic(&api.periodic, -MS, api_periodic_fn, NULL), -EINVAL);
    CHECK_EQ(loom_timer_start_periodic(&api.periodic, MS, api_periodic_fn, NULL), 0);
    CHECK_EQ(loom_timer_start_periodic(&api.periodic, MS, api_periodic_fn, NULL), -EALREADY);
    CHECK_EQ(loom_timer_start(&api.one, fake.now_ns + 2 * MS, api_one_fn, &api), 0);
    CHECK_EQ(loom_timer_start(&api.victim, fake.now_ns + 2 * MS, api_victim_fn, NULL), 0);
    for (int i = 0; i < 10; i++)
        api_tick(MS);
    CHECK_EQ(api.periodic_calls, 3);
    CHECK(!loom_timer_is_armed(&api.periodic));
    CHECK_EQ(api.one_calls, 2); /* re-armed itself once from its callback */
    CHECK_EQ(api.victim_calls, 0);
    CHECK_EQ(fake.wheel.armed, 0);

    /* A huge period saturates the first deadline at LOOM_NO_DEADLINE. */
    CHECK_EQ(loom_timer_start_periodic(&api.periodic, INT64_MAX, api_periodic_fn, NULL), 0);
    CHECK_EQ(api.periodic.deadline_ns, LOOM_NO_DEADLINE);
    CHECK_EQ(loom_timer_cancel(&api.periodic), 0);
    loom__self = NULL;
}

/* A timer used on another core than its own is a programmer error: the process aborts. */
static void test_api_wrong_core(void)
{
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        if (freopen("/dev/null", "w", stderr) == NULL)
            _exit(2);
        api_setup(0);
        struct loom_timer timer;
        loom_timer_init(&timer);
        fake.core = 4;
        loom_timer_is_armed(&timer);
        _exit(0);
    }
    int status;
    CHECK_EQ(waitpid(pid, &status, 0), pid);
    CHECK(WIFSIGNALED(status));
    CHECK_EQ(WTERMSIG(status), SIGABRT);
}

int main(void)
{
    const char *env = getenv("LOOM_TEST_SEED");
    seed = env ? strtoull(env, NULL, 0) : 20240611;
    rng_seed(seed);
    test_levels_ordering();
    test_cancel_levels();
    test_callbacks();
    test_periodic_hour();
    test_periodic_late();
    test_no_deadline();
    test_next_ns();
    test_million();
    test_model();
    test_api();
    test_api_wrong_core();
    printf("wheel_test: ok (seed %" PRIu64 ")\n", seed);
    return TEST_EXIT_PASS;
}
