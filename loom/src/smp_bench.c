/* SPDX-License-Identifier: MIT
 * smp_bench.c - what cross-core messages cost: throughput and round-trip latency between
 * core 0 and core 1, against bare thread pairs on the same two CPUs in the same process.
 *
 * smp_throughput (msgs/s): a fiber on core 0 sends caller-owned nodes from a pool of POOL with
 * loom_msg_send(); core 1's handler reads each node and, every ACK_EVERY messages, sends one
 * ack message home that returns ACK_EVERY nodes. Nodes are used in ring order, so returning
 * them is one addition and the measured path is loom's ring, loop and handler dispatch.
 * The cross-core rings are sized to the pool (smp_ring_entries = POOL) so no send parks.
 * Baseline spsc_threads: two plain pthreads pinned to CPU 0 and CPU 1, a bare SPSC ring of
 * pointers batched as loom's (see struct spsc) with the same pool, the same node write,
 * consumer dereference and batch acks over a reverse ring; both spin.
 * smp_roundtrip_p50/_p99 (ns): one message core 0 -> core 1 -> core 0 (the handler on core 1
 * sends the node back, whose handler posts the baton the sending fiber waits on), timed per
 * round trip with loom_clock_ns(); cores spin for up to 100 us before sleeping (poll_ns), so
 * the baseline is the same ping-pong over the bare SPSC pair with busy-waiting.
 * smp_roundtrip_sleep_p50/_p99: the same with poll_ns = 0 (every hop wakes a sleeping core),
 * against two pthreads ping-ponging through eventfds with blocking reads.
 * smp_invoke_p50/_p99 (ns): loom_invoke_on(1, fn) from a fiber on core 0, fn returning at once:
 * the hop the broker takes for each partition of a request (a message, a new fiber on the
 * owner core, the reply, the caller's wake-up); the baseline is smp_roundtrip of the same run
 * (the bare message round trip), so the ratio is what the fibers add. Cores spin as above.
 * Runs alternate loom and baseline RUNS times; each figure is the median over runs.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "benchlib.h"
#include "internal.h"

#define RUNS            5
#define POOL            4096                   /* message nodes in flight at most, per direction */
#define ACK_EVERY       256                    /* messages per ack */
#define ACKS            (2 * POOL / ACK_EVERY) /* ack nodes: twice the most that can be in flight */
#define THROUGHPUT_MSGS (4u << 20) /* messages per throughput run (a multiple of ACK_EVERY) */
#define SPIN_TRIPS      20000      /* round trips per spinning run */
#define SLEEP_TRIPS     2000       /* round trips per sleeping run (~2 wake-ups each) */
#define WARMUP_TRIPS    500

_Static_assert(THROUGHPUT_MSGS % ACK_EVERY == 0, "acks return whole batches");
_Static_assert(POOL % ACK_EVERY == 0, "the pool is whole batches");

/* ---- loom throughput ------------------------------------------------------------------------ */

struct node {
    struct loom_msg msg;
    uint64_t seq;
};

struct ack {
    struct loom_msg msg;
    uint64_t count;
};

static struct node nodes[POOL];
static struct ack acks[ACKS];

/* Core 0's side: written only on core 0. */
static struct {
    alignas(LOOM_CACHELINE) uint64_t sent;
    uint64_t acked;
    bool waiting;
    struct loom_baton baton;
} producer;

/* Core 1's side: written only on core 1; cumulative over runs, so nobody resets it. */
static struct {
    alignas(LOOM_CACHELINE) uint64_t received;
    uint64_t acks_sent;
    uint64_t sum; /* keeps the dereference of each node */
} consumer;

static void ack_arrived(struct loom_msg *msg)
{
    struct ack *a = LOOM_CONTAINER_OF(msg, struct ack, msg);
    producer.acked += a->count;
    LOOM_ASSERT(producer.acked <= producer.sent);
    if (producer.waiting) {
        producer.waiting = false;
        loom_baton_post(&producer.baton);
    }
}

static void node_arrived(struct loom_msg *msg)
{
    struct node *n = LOOM_CONTAINER_OF(msg, struct node, msg);
    consumer.sum += n->seq;
    if (++consumer.received % ACK_EVERY == 0) {
        struct ack *a = &acks[consumer.acks_sent++ % ACKS];
        a->count = ACK_EVERY;
        loom_msg_send(0, &a->msg, ack_arrived);
    }
}

/* Waits (on core 0) until the acks say `enough` holds. */
static void wait_for_acks(uint64_t in_flight_max)
{
    while (producer.sent - producer.acked > in_flight_max) {
        producer.waiting = true;
        LOOM_ASSERT(loom_baton_wait(&producer.baton, LOOM_NO_DEADLINE) == 0);
    }
}

/* Messages per second from core 0 to core 1. */
static double loom_throughput(uint64_t total)
{
    producer.sent = producer.acked = 0;
    producer.waiting = false;
    loom_baton_init(&producer.baton);
    int64_t start = loom_clock_ns();
    while (producer.sent < total) {
        wait_for_acks(POOL - ACK_EVERY); /* room for at least one batch */
        uint64_t end = producer.acked + POOL;
        if (end > total)
            end = total;
        for (uint64_t i = producer.sent; i < end; i++) {
            struct node *n = &nodes[i % POOL];
            n->seq = i;
            loom_msg_send(1, &n->msg, node_arrived);
        }
        producer.sent = end;
    }
    wait_for_acks(0);
    int64_t elapsed = loom_clock_ns() - start;
    loom_baton_deinit(&producer.baton);
    return (double)total * 1e9 / (double)elapsed;
}

/* ---- loom round trips ----------------------------------------------------------------------- */

struct ping {
    struct loom_msg msg;
    struct loom_baton *baton;
};

static void pong_arrived(struct loom_msg *msg)
{
    struct ping *p = LOOM_CONTAINER_OF(msg, struct ping, msg);
    loom_baton_post(p->baton);
}

static void ping_arrived(struct loom_msg *msg)
{
    loom_msg_send(0, msg, pong_arrived);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

struct percentiles {
    double p50, p99;
};

static struct percentiles percentiles_of(int64_t *ns, size_t n)
{
    qsort(ns, n, sizeof(*ns), cmp_i64);
    return (struct percentiles){.p50 = (double)ns[n / 2], .p99 = (double)ns[n * 99 / 100]};
}

static int64_t trip_ns[SPIN_TRIPS];

static struct percentiles loom_roundtrips(size_t trips)
{
    struct loom_baton baton;
    struct ping p = {.baton = &baton};
    loom_baton_init(&baton);
    for (size_t i = 0; i < WARMUP_TRIPS + trips; i++) {
        int64_t start = loom_clock_ns();
        loom_msg_send(1, &p.msg, ping_arrived);
        LOOM_ASSERT(loom_baton_wait(&baton, LOOM_NO_DEADLINE) == 0);
        int64_t end = loom_clock_ns();
        if (i >= WARMUP_TRIPS)
            trip_ns[i - WARMUP_TRIPS] = end - start;
    }
    loom_baton_deinit(&baton);
    return percentiles_of(trip_ns, trips);
}

static int noop_call(void *arg)
{
    return arg == NULL ? 0 : 1;
}

static struct percentiles loom_invokes(size_t trips)
{
    for (size_t i = 0; i < WARMUP_TRIPS + trips; i++) {
        int64_t start = loom_clock_ns();
        LOOM_ASSERT(loom_invoke_on(1, noop_call, NULL, LOOM_NO_DEADLINE) == 0);
        int64_t end = loom_clock_ns();
        if (i >= WARMUP_TRIPS)
            trip_ns[i - WARMUP_TRIPS] = end - start;
    }
    return percentiles_of(trip_ns, trips);
}

struct loom_results {
    double msgs_per_s;
    struct percentiles trip, invoke;
};

static int spin_main(void *arg)
{
    struct loom_results *out = arg;
    LOOM_ASSERT(loom_core_count() == 2);
    loom_throughput(THROUGHPUT_MSGS / 8); /* warm-up */
    out->msgs_per_s = loom_throughput(THROUGHPUT_MSGS);
    out->trip = loom_roundtrips(SPIN_TRIPS);
    out->invoke = loom_invokes(SPIN_TRIPS);
    return 0;
}

static int sleep_main(void *arg)
{
    struct loom_results *out = arg;
    LOOM_ASSERT(loom_core_count() == 2);
    out->trip = loom_roundtrips(SLEEP_TRIPS);
    return 0;
}

static struct loom_results run_loom(int64_t poll_ns, loom_fiber_fn fn)
{
    struct loom_config config;
    loom_config_init(&config);
    config.smp = 2;
    config.poll_ns = poll_ns;
    config.memory_bytes = (size_t)64 << 20;
    config.smp_ring_entries = POOL;
    struct loom_results results = {0};
    if (loom_run(&config, fn, &results) != 0) {
        fprintf(stderr, "smp_bench: the runtime failed (it needs 2 CPUs)\n");
        exit(1);
    }
    return results;
}

/* ---- baselines: plain pthreads on CPU 0 and CPU 1 ------------------------------------------- */

/* A bare SPSC ring of pointers, batched as loom's is: the producer publishes its tail every
 * PUBLISH_BATCH writes (and before it waits), the consumer publishes its head once per batch it
 * has read; each side caches the other's index. Without the batching (one release store per
 * push and pop) the slot and index lines bounce between the CPUs on every message and the
 * ring is several times slower than loom's: a baseline that weak would flatter loom. */
#define PUBLISH_BATCH 64

struct spsc {
    alignas(LOOM_CACHELINE) _Atomic uint32_t tail;
    alignas(LOOM_CACHELINE) _Atomic uint32_t head;
    alignas(LOOM_CACHELINE) uint32_t prod_tail, prod_head_cache;
    alignas(LOOM_CACHELINE) uint32_t cons_head, cons_tail_cache;
    alignas(LOOM_CACHELINE) void *slots[POOL];
};

static struct spsc ring_ab, ring_ba;

static void spsc_reset(struct spsc *q)
{
    atomic_store(&q->tail, 0);
    atomic_store(&q->head, 0);
    q->prod_tail = q->prod_head_cache = q->cons_head = q->cons_tail_cache = 0;
}

static inline void spsc_publish(struct spsc *q)
{
    atomic_store_explicit(&q->tail, q->prod_tail, memory_order_release);
}

/* Writes `p` (spinning while the ring is full); publishes every PUBLISH_BATCH writes. */
static inline void spsc_push(struct spsc *q, void *p)
{
    while (q->prod_tail - q->prod_head_cache == POOL) {
        spsc_publish(q);
        q->prod_head_cache = atomic_load_explicit(&q->head, memory_order_acquire);
        __builtin_ia32_pause();
    }
    q->slots[q->prod_tail % POOL] = p;
    if (++q->prod_tail % PUBLISH_BATCH == 0)
        spsc_publish(q);
}

/* Returns the next pointer, or NULL when the ring is empty; the head is published when the
 * batch read so far is used up. */
static inline void *spsc_pop(struct spsc *q)
{
    if (q->cons_head == q->cons_tail_cache) {
        atomic_store_explicit(&q->head, q->cons_head, memory_order_release);
        q->cons_tail_cache = atomic_load_explicit(&q->tail, memory_order_acquire);
        if (q->cons_head == q->cons_tail_cache)
            return NULL;
    }
    return q->slots[q->cons_head++ % POOL];
}

static inline void *spsc_pop_wait(struct spsc *q)
{
    void *p;
    while (!(p = spsc_pop(q)))
        __builtin_ia32_pause();
    return p;
}

static void run_pair(void *(*a)(void *), void *(*b)(void *), void *arg)
{
    pthread_t threads[2];
    void *(*fns[2])(void *) = {a, b};
    for (int i = 0; i < 2; i++) {
        pthread_attr_t attr;
        cpu_set_t cpus;
        CPU_ZERO(&cpus);
        CPU_SET(i, &cpus);
        LOOM_ASSERT(pthread_attr_init(&attr) == 0);
        LOOM_ASSERT(pthread_attr_setaffinity_np(&attr, sizeof(cpus), &cpus) == 0);
        LOOM_ASSERT(pthread_create(&threads[i], &attr, fns[i], arg) == 0);
        pthread_attr_destroy(&attr);
    }
    for (int i = 0; i < 2; i++)
        LOOM_ASSERT(pthread_join(threads[i], NULL) == 0);
}

static struct {
    uint64_t total;
    int64_t elapsed_ns;
    size_t trips;
    int efd_ab, efd_ba;
} pair;

static void *throughput_producer(void *arg)
{
    uint64_t acked = 0;
    int64_t start = loom_clock_ns();
    for (uint64_t i = 0; i < pair.total; i++) {
        if (i - acked >= POOL) {
            spsc_publish(&ring_ab);
            while (i - acked >= POOL)
                acked += ((struct ack *)spsc_pop_wait(&ring_ba))->count;
        }
        struct node *n = &nodes[i % POOL];
        n->seq = i;
        spsc_push(&ring_ab, n);
    }
    spsc_publish(&ring_ab);
    while (acked < pair.total)
        acked += ((struct ack *)spsc_pop_wait(&ring_ba))->count;
    pair.elapsed_ns = loom_clock_ns() - start;
    return arg;
}

static void *throughput_consumer(void *arg)
{
    uint64_t sum = 0, acks_sent = 0;
    for (uint64_t i = 1; i <= pair.total; i++) {
        sum += ((struct node *)spsc_pop_wait(&ring_ab))->seq;
        if (i % ACK_EVERY == 0) {
            struct ack *a = &acks[acks_sent++ % ACKS];
            a->count = ACK_EVERY;
            spsc_push(&ring_ba, a);
            spsc_publish(&ring_ba);
        }
    }
    consumer.sum += sum;
    return arg;
}

static double spsc_throughput(uint64_t total)
{
    spsc_reset(&ring_ab);
    spsc_reset(&ring_ba);
    pair.total = total;
    run_pair(throughput_producer, throughput_consumer, NULL);
    return (double)total * 1e9 / (double)pair.elapsed_ns;
}

static void *pingpong_a(void *arg)
{
    struct node n = {.seq = 1};
    for (size_t i = 0; i < WARMUP_TRIPS + pair.trips; i++) {
        int64_t start = loom_clock_ns();
        spsc_push(&ring_ab, &n);
        spsc_publish(&ring_ab);
        LOOM_ASSERT(spsc_pop_wait(&ring_ba) == &n);
        int64_t end = loom_clock_ns();
        if (i >= WARMUP_TRIPS)
            trip_ns[i - WARMUP_TRIPS] = end - start;
    }
    return arg;
}

static void *pingpong_b(void *arg)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < WARMUP_TRIPS + pair.trips; i++) {
        struct node *n = spsc_pop_wait(&ring_ab);
        sum += n->seq;
        spsc_push(&ring_ba, n);
        spsc_publish(&ring_ba);
    }
    consumer.sum += sum;
    return arg;
}

static struct percentiles spsc_roundtrips(size_t trips)
{
    spsc_reset(&ring_ab);
    spsc_reset(&ring_ba);
    pair.trips = trips;
    run_pair(pingpong_a, pingpong_b, NULL);
    return percentiles_of(trip_ns, trips);
}

static void efd_write(int fd)
{
    uint64_t one = 1;
    LOOM_ASSERT(write(fd, &one, sizeof(one)) == (ssize_t)sizeof(one));
}

static void efd_read(int fd)
{
    uint64_t value;
    LOOM_ASSERT(read(fd, &value, sizeof(value)) == (ssize_t)sizeof(value));
}

static void *eventfd_a(void *arg)
{
    for (size_t i = 0; i < WARMUP_TRIPS + pair.trips; i++) {
        int64_t start = loom_clock_ns();
        efd_write(pair.efd_ab);
        efd_read(pair.efd_ba);
        int64_t end = loom_clock_ns();
        if (i >= WARMUP_TRIPS)
            trip_ns[i - WARMUP_TRIPS] = end - start;
    }
    return arg;
}

static void *eventfd_b(void *arg)
{
    for (size_t i = 0; i < WARMUP_TRIPS + pair.trips; i++) {
        efd_read(pair.efd_ab);
        efd_write(pair.efd_ba);
    }
    return arg;
}

static struct percentiles eventfd_roundtrips(size_t trips)
{
    pair.efd_ab = eventfd(0, EFD_CLOEXEC);
    pair.efd_ba = eventfd(0, EFD_CLOEXEC);
    LOOM_ASSERT(pair.efd_ab >= 0 && pair.efd_ba >= 0);
    pair.trips = trips;
    run_pair(eventfd_a, eventfd_b, NULL);
    close(pair.efd_ab);
    close(pair.efd_ba);
    return percentiles_of(trip_ns, trips);
}

/* ---- main ----------------------------------------------------------------------------------- */

struct series {
    double v[RUNS];
};

static void report(const char *name, const char *unit, const char *baseline, struct series *s,
                   struct series *b)
{
    bench_report(name, bench_median_f64(s->v, RUNS), unit, baseline, bench_median_f64(b->v, RUNS),
                 s->v, RUNS);
}

int main(void)
{
    struct series thr, thr_base, p50, p50_base, p99, p99_base, sp50, sp50_base, sp99, sp99_base;
    struct series ip50, ip99;
    spsc_throughput(THROUGHPUT_MSGS / 8); /* warm-up */
    for (int run = 0; run < RUNS; run++) {
        struct loom_results spin = run_loom(100 * LOOM_NS_PER_US, spin_main);
        thr.v[run] = spin.msgs_per_s;
        p50.v[run] = spin.trip.p50;
        p99.v[run] = spin.trip.p99;
        ip50.v[run] = spin.invoke.p50;
        ip99.v[run] = spin.invoke.p99;
        thr_base.v[run] = spsc_throughput(THROUGHPUT_MSGS);
        struct percentiles trip = spsc_roundtrips(SPIN_TRIPS);
        p50_base.v[run] = trip.p50;
        p99_base.v[run] = trip.p99;
        struct loom_results sleep = run_loom(0, sleep_main);
        sp50.v[run] = sleep.trip.p50;
        sp99.v[run] = sleep.trip.p99;
        trip = eventfd_roundtrips(SLEEP_TRIPS);
        sp50_base.v[run] = trip.p50;
        sp99_base.v[run] = trip.p99;
    }
    report("smp_throughput", "msgs/s", "spsc_threads", &thr, &thr_base);
    report("smp_roundtrip_p50", "ns", "spsc_threads", &p50, &p50_base);
    report("smp_roundtrip_p99", "ns", "spsc_threads", &p99, &p99_base);
    report("smp_roundtrip_sleep_p50", "ns", "eventfd_threads", &sp50, &sp50_base);
    report("smp_roundtrip_sleep_p99", "ns", "eventfd_threads", &sp99, &sp99_base);
    report("smp_invoke_p50", "ns", "smp_roundtrip", &ip50, &p50);
    report("smp_invoke_p99", "ns", "smp_roundtrip", &ip99, &p99);
    printf("smp_bench: checksum %" PRIu64 "\n", consumer.sum);
    return 0;
}
