/* SPDX-License-Identifier: MIT
 * sync_test.c - mutex, cond, semaphore, channel, wait group and future: exclusion, FIFO
 * hand-over (no barging), timeouts that leave the object unchanged, the grant that races a
 * deadline, close semantics, futures set from another core, a seeded randomized stress over
 * ~200 fibers, and misuse dying with a clear assertion message.
 * LOOM_TEST_TAGS: tsan
 */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <time.h>

#include "harness.h"
#include "internal.h"
#include "loom/loom.h"

#define NO LOOM_NO_DEADLINE
#define US LOOM_NS_PER_US
#define MS LOOM_NS_PER_MS

static struct loom_fiber *spawn_joinable(loom_fiber_fn fn, void *arg)
{
    struct loom_fiber *f = NULL;
    struct loom_fiber_attr attr = {.name = "sync", .joinable = true};
    CHECK_EQ(loom_spawn(&f, fn, arg, &attr), 0);
    return f;
}

static int join(struct loom_fiber *f)
{
    int result = -1;
    CHECK_EQ(loom_fiber_join(f, NO, &result), 0);
    return result;
}

static void yield_n(int n)
{
    for (int i = 0; i < n; i++)
        loom_yield();
}

/* ---- mutex ---------------------------------------------------------------------------------- */

static struct loom_mutex mx;
static int mx_inside;
static int64_t mx_counter;
static int64_t mx_iterations;

static int exclusion_worker(void *arg)
{
    (void)arg;
    for (int64_t i = 0; i < mx_iterations; i++) {
        CHECK_EQ(loom_mutex_lock(&mx, NO), 0);
        CHECK_EQ(mx_inside, 0);
        mx_inside = 1;
        yield_n(1 + (int)(i % 3)); /* others run and must queue */
        CHECK_EQ(mx_inside, 1);
        mx_counter++;
        mx_inside = 0;
        loom_mutex_unlock(&mx);
        if (i % 2)
            loom_yield();
    }
    return 0;
}

static void test_mutex_exclusion(void)
{
    enum { FIBERS = 50 };
    struct loom_fiber *f[FIBERS];
    loom_mutex_init(&mx);
    mx_counter = 0;
    mx_iterations = test_scale(200);
    for (int i = 0; i < FIBERS; i++)
        f[i] = spawn_joinable(exclusion_worker, NULL);
    for (int i = 0; i < FIBERS; i++)
        CHECK_EQ(join(f[i]), 0);
    CHECK_EQ(mx_counter, FIBERS * mx_iterations);
    CHECK(mx.owner == NULL && mx.waiters.head == NULL);
    loom_mutex_deinit(&mx);
}

enum { FIFO_FIBERS = 16 };
static int arrivals[FIFO_FIBERS], acquisitions[FIFO_FIBERS];
static int arrival_len, acquisition_len;

static int fifo_worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    yield_n(FIFO_FIBERS - id); /* arrive in the reverse of spawn order */
    arrivals[arrival_len++] = id;
    CHECK_EQ(loom_mutex_lock(&mx, NO), 0);
    acquisitions[acquisition_len++] = id;
    loom_yield();
    loom_mutex_unlock(&mx);
    return 0;
}

static void test_mutex_fifo(void)
{
    struct loom_fiber *f[FIFO_FIBERS];
    loom_mutex_init(&mx);
    arrival_len = acquisition_len = 0;
    CHECK_EQ(loom_mutex_lock(&mx, NO), 0);
    for (int i = 0; i < FIFO_FIBERS; i++)
        f[i] = spawn_joinable(fifo_worker, (void *)(intptr_t)i);
    yield_n(FIFO_FIBERS + 2);
    CHECK_EQ(arrival_len, FIFO_FIBERS);
    CHECK_EQ(acquisition_len, 0);
    loom_mutex_unlock(&mx);
    /* ownership went to the first waiter: a late-comer cannot barge in */
    CHECK(mx.owner != NULL && mx.owner != loom_fiber_self());
    CHECK(!loom_mutex_trylock(&mx));
    for (int i = 0; i < FIFO_FIBERS; i++)
        join(f[i]);
    CHECK_EQ(acquisition_len, FIFO_FIBERS);
    for (int i = 0; i < FIFO_FIBERS; i++) {
        CHECK_EQ(arrivals[i], FIFO_FIBERS - 1 - i);
        CHECK_EQ(acquisitions[i], arrivals[i]);
    }
    loom_mutex_deinit(&mx);
}

static int trylock_other(void *arg)
{
    (void)arg;
    if (!loom_mutex_trylock(&mx))
        return 0;
    CHECK(mx.owner == loom_fiber_self());
    loom_mutex_unlock(&mx);
    return 1;
}

static void test_mutex_trylock(void)
{
    loom_mutex_init(&mx);
    CHECK(loom_mutex_trylock(&mx));
    CHECK_EQ(join(spawn_joinable(trylock_other, NULL)), 0); /* held: fails */
    loom_mutex_unlock(&mx);
    CHECK_EQ(join(spawn_joinable(trylock_other, NULL)), 1); /* free: the fiber takes it */
    CHECK(mx.owner == NULL);
    loom_mutex_deinit(&mx);
}

static int order_log[8], order_len;

static bool holder_release;

static int hold_until_released(void *arg)
{
    (void)arg;
    CHECK_EQ(loom_mutex_lock(&mx, NO), 0);
    while (!holder_release)
        loom_sleep(1 * MS);
    loom_mutex_unlock(&mx);
    return 0;
}

static int lock_and_log(void *arg)
{
    CHECK_EQ(loom_mutex_lock(&mx, NO), 0);
    order_log[order_len++] = (int)(intptr_t)arg;
    loom_mutex_unlock(&mx);
    return 0;
}

/* A timed-out waiter in the middle of the queue leaves it as if it had never queued. */
static void test_mutex_timeout(void)
{
    loom_mutex_init(&mx);
    order_len = 0;
    holder_release = false;
    struct loom_fiber *holder = spawn_joinable(hold_until_released, NULL);
    struct loom_fiber *a = spawn_joinable(lock_and_log, (void *)1);
    loom_yield(); /* holder locks and sleeps, a queues */
    struct loom_fiber *b = spawn_joinable(lock_and_log, (void *)2);
    int64_t start = loom_now_ns(); /* the base of loom_deadline_in() */
    CHECK_EQ(loom_mutex_lock(&mx, loom_deadline_in(5 * MS)), -ETIMEDOUT);
    CHECK_GE(loom_clock_ns() - start, 5 * MS); /* never before the deadline */
    CHECK(mx.owner == holder);
    CHECK(mx.waiters.head != NULL && mx.waiters.head != mx.waiters.tail); /* a, b */
    CHECK_EQ(loom_mutex_lock(&mx, loom_deadline_in(-1)), -ETIMEDOUT);     /* passed deadline */
    holder_release = true;
    join(holder);
    join(a);
    join(b);
    CHECK_EQ(order_len, 2);
    CHECK_EQ(order_log[0], 1);
    CHECK_EQ(order_log[1], 2);
    CHECK_EQ(loom_mutex_lock(&mx, loom_deadline_in(5 * MS)), 0);
    loom_mutex_unlock(&mx);
    CHECK(mx.owner == NULL && mx.waiters.head == NULL && mx.waiters.tail == NULL);
    loom_mutex_deinit(&mx);
}

static int64_t race_deadline;
static int race_rc;
static bool race_owned;
static bool race_late; /* the waiter started after its deadline (a slow, loaded machine) */

static int race_waiter(void *arg)
{
    (void)arg;
    race_late = loom_clock_ns() >= race_deadline - 100 * US;
    race_rc = loom_mutex_lock(&mx, race_deadline);
    race_owned = mx.owner == loom_fiber_self();
    if (race_rc == 0)
        loom_mutex_unlock(&mx);
    return 0;
}

static int race_staller(void *arg)
{
    (void)arg;
    while (loom_clock_ns() < race_deadline + 200 * US) {
    } /* keep the loop away until both timers are due */
    return 0;
}

static void test_mutex_grant_race_check(struct loom_fiber *w, struct loom_fiber *s);

/* The waiter's deadline fires and, in the same loop iteration, the holder (woken by an earlier
 * timer, so it runs first) unlocks and hands the mutex to it: the grant wins, the waiter
 * returns 0 holding the mutex, and nothing leaks. */
static void test_mutex_grant_races_timeout(void)
{
    /* the scenario needs the waiter to start before its deadline: on a loaded machine (or
     * under a sanitizer) spawning can take longer than the margin, so retry with more */
    for (int64_t margin = 3 * MS;; margin *= 4) {
        loom_mutex_init(&mx);
        CHECK_EQ(loom_mutex_lock(&mx, NO), 0);
        race_deadline = loom_clock_ns() + margin;
        race_rc = 1;
        race_late = false;
        struct loom_fiber *w = spawn_joinable(race_waiter, NULL);
        struct loom_fiber *s = spawn_joinable(race_staller, NULL);
        loom_sleep_until(race_deadline - 20 * US); /* armed first; fires one tick earlier */
        if (!race_late || margin >= 3000 * MS) {
            CHECK(!race_late);
            test_mutex_grant_race_check(w, s);
            return;
        }
        loom_mutex_unlock(&mx);
        join(w);
        join(s);
        loom_mutex_deinit(&mx);
    }
}

static void test_mutex_grant_race_check(struct loom_fiber *w, struct loom_fiber *s)
{
    CHECK_GT(loom_clock_ns(), race_deadline);
    CHECK(mx.waiters.head != NULL); /* the waiter has not run since its deadline */
    loom_mutex_unlock(&mx);
    join(w);
    join(s);
    CHECK_EQ(race_rc, 0);
    CHECK(race_owned);
    CHECK(mx.owner == NULL && mx.waiters.head == NULL);
    loom_mutex_deinit(&mx);
}

/* ---- condition variable --------------------------------------------------------------------- */

static struct loom_cond cv, cv_full;
static int cv_waiting, cv_woken[4], cv_woken_len;

static int cond_waiter(void *arg)
{
    CHECK_EQ(loom_mutex_lock(&mx, NO), 0);
    cv_waiting++;
    CHECK_EQ(loom_cond_wait(&cv, &mx, NO), 0);
    CHECK(mx.owner == loom_fiber_self());
    cv_woken[cv_woken_len++] = (int)(intptr_t)arg;
    cv_waiting--;
    loom_mutex_unlock(&mx);
    return 0;
}

static void test_cond_signal_broadcast(void)
{
    struct loom_fiber *f[3];
    loom_mutex_init(&mx);
    loom_cond_init(&cv);
    cv_waiting = cv_woken_len = 0;
    for (int i = 0; i < 3; i++)
        f[i] = spawn_joinable(cond_waiter, (void *)(intptr_t)i);
    yield_n(3);
    CHECK_EQ(cv_waiting, 3);
    loom_cond_signal(&cv);
    yield_n(3);
    CHECK_EQ(cv_woken_len, 1);
    CHECK_EQ(cv_woken[0], 0); /* FIFO */
    CHECK_EQ(loom_mutex_lock(&mx, NO), 0);
    loom_cond_broadcast(&cv); /* with the mutex held: they wake, then queue on it */
    yield_n(3);
    CHECK_EQ(cv_woken_len, 1);
    loom_mutex_unlock(&mx);
    for (int i = 0; i < 3; i++)
        join(f[i]);
    CHECK_EQ(cv_woken_len, 3);
    CHECK_EQ(cv_woken[1], 1);
    CHECK_EQ(cv_woken[2], 2);
    loom_cond_signal(&cv); /* nobody waits: a no-op */
    loom_cond_deinit(&cv);
    loom_mutex_deinit(&mx);
}

static void test_cond_timeout(void)
{
    loom_mutex_init(&mx);
    loom_cond_init(&cv);
    CHECK_EQ(loom_mutex_lock(&mx, NO), 0);
    int64_t start = loom_now_ns();
    CHECK_EQ(loom_cond_wait(&cv, &mx, loom_deadline_in(3 * MS)), -ETIMEDOUT);
    CHECK_GE(loom_clock_ns() - start, 3 * MS);
    CHECK(mx.owner == loom_fiber_self()); /* held again after a timeout */
    CHECK(cv.waiters.head == NULL);
    loom_mutex_unlock(&mx);
    loom_cond_deinit(&cv);
    loom_mutex_deinit(&mx);
}

/* A bounded queue on one mutex and two conds, signal only: a lost wake-up hangs a fiber,
 * which the 10 s deadline turns into a failure. */
enum { PC_CAPACITY = 4, PC_PRODUCERS = 8, PC_CONSUMERS = 8 };
static int64_t pc_queue, pc_produced, pc_consumed, pc_total, pc_per_producer;

static int pc_producer(void *arg)
{
    (void)arg;
    for (int64_t i = 0; i < pc_per_producer; i++) {
        CHECK_EQ(loom_mutex_lock(&mx, NO), 0);
        while (pc_queue == PC_CAPACITY)
            CHECK_EQ(loom_cond_wait(&cv_full, &mx, loom_deadline_in(10 * LOOM_NS_PER_S)), 0);
        pc_queue++;
        pc_produced++;
        loom_cond_signal(&cv);
        loom_mutex_unlock(&mx);
        if (i % 3 == 0)
            loom_yield();
    }
    return 0;
}

static int pc_consumer(void *arg)
{
    (void)arg;
    CHECK_EQ(loom_mutex_lock(&mx, NO), 0);
    for (;;) {
        while (pc_queue == 0 && pc_consumed < pc_total)
            CHECK_EQ(loom_cond_wait(&cv, &mx, loom_deadline_in(10 * LOOM_NS_PER_S)), 0);
        if (pc_consumed == pc_total)
            break;
        pc_queue--;
        pc_consumed++;
        CHECK_LE(pc_consumed, pc_produced);
        loom_cond_signal(&cv_full);
        if (pc_consumed == pc_total)
            loom_cond_broadcast(&cv); /* release the other consumers */
        loom_mutex_unlock(&mx);
        loom_yield();
        CHECK_EQ(loom_mutex_lock(&mx, NO), 0);
    }
    loom_mutex_unlock(&mx);
    return 0;
}

static void test_cond_producer_consumer(void)
{
    struct loom_fiber *f[PC_PRODUCERS + PC_CONSUMERS];
    loom_mutex_init(&mx);
    loom_cond_init(&cv);
    loom_cond_init(&cv_full);
    pc_per_producer = test_scale(500);
    pc_total = PC_PRODUCERS * pc_per_producer;
    pc_queue = pc_produced = pc_consumed = 0;
    for (int i = 0; i < PC_CONSUMERS; i++)
        f[i] = spawn_joinable(pc_consumer, NULL);
    for (int i = 0; i < PC_PRODUCERS; i++)
        f[PC_CONSUMERS + i] = spawn_joinable(pc_producer, NULL);
    for (int i = 0; i < PC_PRODUCERS + PC_CONSUMERS; i++)
        join(f[i]);
    CHECK_EQ(pc_produced, pc_total);
    CHECK_EQ(pc_consumed, pc_total);
    CHECK_EQ(pc_queue, 0);
    loom_cond_deinit(&cv_full);
    loom_cond_deinit(&cv);
    loom_mutex_deinit(&mx);
}

/* ---- semaphore ------------------------------------------------------------------------------ */

static struct loom_sem sem;
static int sem_order[4], sem_order_len;

static int sem_taker(void *arg)
{
    int64_t n = (int64_t)(intptr_t)arg;
    CHECK_EQ(loom_sem_acquire(&sem, n, NO), 0);
    sem_order[sem_order_len++] = (int)n;
    return 0;
}

static void test_sem_counting(void)
{
    loom_sem_init(&sem, 3);
    CHECK(loom_sem_try_acquire(&sem, 2));
    CHECK_EQ(loom_sem_available(&sem), 1);
    CHECK(!loom_sem_try_acquire(&sem, 2));
    CHECK_EQ(loom_sem_acquire(&sem, 1, loom_deadline_in(-1)), 0); /* available: no wait */
    CHECK_EQ(loom_sem_available(&sem), 0);
    loom_sem_release(&sem, 3);
    CHECK_EQ(loom_sem_available(&sem), 3);
    loom_sem_deinit(&sem);
}

/* A large request at the head is not overtaken by a later small one. */
static void test_sem_fifo(void)
{
    loom_sem_init(&sem, 0);
    sem_order_len = 0;
    struct loom_fiber *big = spawn_joinable(sem_taker, (void *)5);
    loom_yield();
    struct loom_fiber *small = spawn_joinable(sem_taker, (void *)1);
    loom_yield();
    loom_sem_release(&sem, 1);
    yield_n(2);
    CHECK_EQ(sem_order_len, 0); /* the small one waits behind the big one */
    CHECK_EQ(loom_sem_available(&sem), 1);
    CHECK(!loom_sem_try_acquire(&sem, 1)); /* nor can a newcomer barge in */
    loom_sem_release(&sem, 4);
    CHECK_EQ(loom_sem_available(&sem), 0); /* all 5 handed to the head at once */
    join(big);
    CHECK_EQ(sem_order_len, 1);
    CHECK_EQ(sem_order[0], 5);
    loom_sem_release(&sem, 1);
    join(small);
    CHECK_EQ(sem_order_len, 2);
    CHECK_EQ(sem_order[1], 1);
    CHECK_EQ(loom_sem_available(&sem), 0);
    loom_sem_deinit(&sem);
}

static int sem_big_timed(void *arg)
{
    (void)arg;
    return loom_sem_acquire(&sem, 5, loom_deadline_in(3 * MS));
}

/* A timeout takes nothing, and a timed-out head lets the smaller requests behind it go. */
static void test_sem_timeout(void)
{
    loom_sem_init(&sem, 2);
    CHECK_EQ(loom_sem_acquire(&sem, 3, loom_deadline_in(2 * MS)), -ETIMEDOUT);
    CHECK_EQ(loom_sem_available(&sem), 2);
    CHECK(sem.waiters.head == NULL);
    CHECK(loom_sem_try_acquire(&sem, 1));
    sem_order_len = 0;
    struct loom_fiber *big = spawn_joinable(sem_big_timed, NULL);
    loom_yield();
    struct loom_fiber *small = spawn_joinable(sem_taker, (void *)1);
    loom_yield();
    CHECK_EQ(sem_order_len, 0); /* blocked behind the head although 1 is available */
    CHECK_EQ(join(big), -ETIMEDOUT);
    join(small);
    CHECK_EQ(sem_order_len, 1);
    CHECK_EQ(loom_sem_available(&sem), 0);
    CHECK(sem.waiters.head == NULL);
    loom_sem_release(&sem, 2);
    loom_sem_deinit(&sem);
}

/* ---- channel -------------------------------------------------------------------------------- */

static struct loom_channel ch;
static void *ch_slots[4];
static int64_t ch_sent, ch_items;
static int ch_last_rc;

static int ch_sender(void *arg)
{
    (void)arg;
    for (int64_t i = 0; i < ch_items; i++) {
        CHECK_EQ(loom_channel_send(&ch, (void *)(intptr_t)(i + 1), NO), 0);
        ch_sent++;
    }
    return 0;
}

static void test_channel_backpressure_order(void)
{
    loom_channel_init(&ch, ch_slots, 4);
    ch_sent = 0;
    ch_items = 4 + test_scale(1000);
    struct loom_fiber *f = spawn_joinable(ch_sender, NULL);
    yield_n(3);
    CHECK_EQ(ch_sent, 4); /* full: the sender blocks */
    CHECK_EQ(loom_channel_count(&ch), 4);
    void *item = NULL;
    CHECK_EQ(loom_channel_recv(&ch, &item, NO), 0);
    CHECK_EQ((intptr_t)item, 1);
    CHECK_EQ(loom_channel_count(&ch), 4); /* the blocked sender's item took the freed slot */
    for (int64_t i = 2; i <= ch_items; i++) {
        CHECK_EQ(loom_channel_recv(&ch, &item, NO), 0);
        CHECK_EQ((intptr_t)item, i);
        CHECK_LE(loom_channel_count(&ch), 4);
        if (i % 7 == 0)
            loom_yield();
    }
    join(f);
    CHECK_EQ(ch_sent, ch_items);
    CHECK_EQ(loom_channel_count(&ch), 0);
    loom_channel_deinit(&ch);
}

static int ch_receiver(void *arg)
{
    void *item = NULL;
    ch_last_rc = loom_channel_recv(&ch, &item, NO);
    if (ch_last_rc == 0)
        CHECK_EQ((intptr_t)item, (intptr_t)arg);
    return ch_last_rc;
}

static int ch_send_one(void *arg)
{
    return loom_channel_send(&ch, arg, NO);
}

static void test_channel_handoff_close(void)
{
    void *item = NULL;
    loom_channel_init(&ch, ch_slots, 2);
    /* a waiting receiver gets the item straight, the buffer is not used */
    struct loom_fiber *rx = spawn_joinable(ch_receiver, (void *)7);
    loom_yield();
    CHECK_EQ(loom_channel_send(&ch, (void *)7, NO), 0);
    CHECK_EQ(loom_channel_count(&ch), 0);
    CHECK_EQ(join(rx), 0);
    /* close: a blocked sender gets -EPIPE, receivers drain then get -EPIPE */
    CHECK_EQ(loom_channel_send(&ch, (void *)1, NO), 0);
    CHECK_EQ(loom_channel_send(&ch, (void *)2, NO), 0);
    struct loom_fiber *tx = spawn_joinable(ch_send_one, (void *)3);
    loom_yield();
    loom_channel_close(&ch);
    CHECK_EQ(join(tx), -EPIPE);
    CHECK_EQ(loom_channel_send(&ch, (void *)4, NO), -EPIPE);
    CHECK_EQ(loom_channel_recv(&ch, &item, NO), 0);
    CHECK_EQ((intptr_t)item, 1);
    CHECK_EQ(loom_channel_recv(&ch, &item, NO), 0);
    CHECK_EQ((intptr_t)item, 2);
    CHECK_EQ(loom_channel_recv(&ch, &item, NO), -EPIPE);
    loom_channel_close(&ch); /* idempotent */
    loom_channel_deinit(&ch);
    /* a receiver blocked on an empty channel gets -EPIPE at close */
    loom_channel_init(&ch, ch_slots, 2);
    rx = spawn_joinable(ch_receiver, NULL);
    loom_yield();
    loom_channel_close(&ch);
    CHECK_EQ(join(rx), -EPIPE);
    loom_channel_deinit(&ch);
}

static void test_channel_timeouts(void)
{
    void *item = (void *)99;
    loom_channel_init(&ch, ch_slots, 1);
    CHECK_EQ(loom_channel_recv(&ch, &item, loom_deadline_in(2 * MS)), -ETIMEDOUT);
    CHECK_EQ((intptr_t)item, 99); /* untouched */
    CHECK_EQ(loom_channel_send(&ch, (void *)1, loom_deadline_in(2 * MS)), 0);
    CHECK_EQ(loom_channel_send(&ch, (void *)2, loom_deadline_in(2 * MS)), -ETIMEDOUT);
    CHECK_EQ(loom_channel_count(&ch), 1);
    CHECK(ch.senders.head == NULL && ch.receivers.head == NULL);
    CHECK_EQ(loom_channel_recv(&ch, &item, loom_deadline_in(2 * MS)), 0);
    CHECK_EQ((intptr_t)item, 1); /* the timed-out item was not sent */
    CHECK_EQ(loom_channel_count(&ch), 0);
    loom_channel_deinit(&ch);
}

/* ---- wait group ----------------------------------------------------------------------------- */

static struct loom_waitgroup wg;
static int wg_done_count;

static int wg_worker(void *arg)
{
    loom_sleep((int64_t)(intptr_t)arg * 100 * US);
    wg_done_count++;
    loom_waitgroup_done(&wg);
    return 0;
}

static int wg_waiter(void *arg)
{
    (void)arg;
    return loom_waitgroup_wait(&wg, NO);
}

static void test_waitgroup(void)
{
    enum { WORKERS = 10 };
    loom_waitgroup_init(&wg);
    CHECK_EQ(loom_waitgroup_wait(&wg, loom_deadline_in(-1)), 0); /* zero: no wait */
    wg_done_count = 0;
    loom_waitgroup_add(&wg, WORKERS);
    struct loom_fiber *waiters[2] = {spawn_joinable(wg_waiter, NULL),
                                     spawn_joinable(wg_waiter, NULL)};
    CHECK_EQ(loom_waitgroup_wait(&wg, loom_deadline_in(1 * MS)), -ETIMEDOUT);
    for (int i = 0; i < WORKERS; i++)
        CHECK_EQ(loom_spawn(NULL, wg_worker, (void *)(intptr_t)(i + 10), NULL), 0);
    CHECK_EQ(loom_waitgroup_wait(&wg, NO), 0);
    CHECK_EQ(wg_done_count, WORKERS);
    CHECK_EQ(join(waiters[0]), 0); /* every waiter is woken */
    CHECK_EQ(join(waiters[1]), 0);
    CHECK(wg.waiters.head == NULL);
    loom_waitgroup_deinit(&wg);
}

/* ---- future --------------------------------------------------------------------------------- */

struct future_job {
    struct loom_future *future;
    int64_t value;
    int64_t delay_ns;
    _Atomic bool *gate; /* when not NULL, the set waits until it is true */
    unsigned set_core;  /* where the set ran, checked on the owner */
};

static int future_setter(void *arg)
{
    struct future_job *job = arg;
    while (job->gate && !atomic_load(job->gate))
        loom_sleep(100 * US);
    if (job->delay_ns > 0)
        loom_sleep(job->delay_ns);
    job->set_core = loom_core_id();
    loom_future_set(job->future, job->value);
    return 0;
}

static void test_future_local(void)
{
    struct loom_future fut;
    int64_t value = 0;
    loom_future_init(&fut);
    struct future_job job = {.future = &fut, .value = 7, .delay_ns = 1 * MS};
    CHECK_EQ(loom_spawn(NULL, future_setter, &job, NULL), 0);
    CHECK_EQ(loom_future_get(&fut, &value, NO), 0);
    CHECK_EQ(value, 7);
    CHECK_EQ(loom_future_get(&fut, &value, loom_deadline_in(-1)), 0); /* still there */
    /* set before get; then a timeout followed by a later successful get */
    loom_future_init(&fut);
    loom_future_set(&fut, -5);
    CHECK_EQ(loom_future_get(&fut, &value, loom_deadline_in(-1)), 0);
    CHECK_EQ(value, -5);
    _Atomic bool gate = false;
    loom_future_init(&fut);
    job = (struct future_job){.future = &fut, .value = 9, .gate = &gate};
    CHECK_EQ(loom_spawn(NULL, future_setter, &job, NULL), 0);
    CHECK_EQ(loom_future_get(&fut, &value, loom_deadline_in(2 * MS)), -ETIMEDOUT);
    atomic_store(&gate, true);
    CHECK_EQ(loom_future_get(&fut, &value, NO), 0);
    CHECK_EQ(value, 9);
}

static void test_future_remote(void)
{
    struct loom_future fut;
    int64_t value = 0;
    /* submit_to: the get waits for the message */
    loom_future_init(&fut);
    struct future_job job = {.future = &fut, .value = 42, .delay_ns = 2 * MS};
    CHECK_EQ(loom_submit_to(1, future_setter, &job), 0);
    CHECK_EQ(loom_future_get(&fut, &value, NO), 0);
    CHECK_EQ(value, 42);
    CHECK_EQ(job.set_core, 1);
    /* invoke_on: the set message precedes the reply on the same ring, so it is there */
    loom_future_init(&fut);
    job = (struct future_job){.future = &fut, .value = 43};
    CHECK_EQ(loom_invoke_on(1, future_setter, &job, NO), 0);
    CHECK(fut.set);
    CHECK_EQ(loom_future_get(&fut, &value, loom_deadline_in(-1)), 0);
    CHECK_EQ(value, 43);
    /* a timed-out get, then the remote set arrives and a later get returns it */
    _Atomic bool gate = false;
    loom_future_init(&fut);
    job = (struct future_job){.future = &fut, .value = 44, .gate = &gate};
    CHECK_EQ(loom_submit_to(1, future_setter, &job), 0);
    CHECK_EQ(loom_future_get(&fut, &value, loom_deadline_in(2 * MS)), -ETIMEDOUT);
    atomic_store(&gate, true); /* only now may core 1 set it */
    CHECK_EQ(loom_future_get(&fut, &value, NO), 0);
    CHECK_EQ(value, 44);
}

static uint64_t rng_next(uint64_t *state)
{
    uint64_t x = *state; /* xorshift64* */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* A deadline 1 ns .. `range_ns` from the precise clock. loom_deadline_in() counts from the
 * loop's cached time, which a fiber that runs for a while has left behind: its short deadlines
 * would all have passed already, and a retry loop on them would never block. */
static int64_t precise_deadline(uint64_t *rng, int64_t range_ns)
{
    return loom_clock_ns() + 1 + (int64_t)(rng_next(rng) % (uint64_t)range_ns);
}

/* Gets with tiny random deadlines while the set races in from core 1: a timed-out get must
 * never lose the value, and once a get succeeds no message may still point at the future
 * (it lives on this stack frame and is reused at once). */
static void future_race_round(uint64_t *rng, int64_t i, int64_t *timeouts)
{
    struct loom_future fut;
    int64_t value = -1;
    loom_future_init(&fut);
    struct future_job job = {.future = &fut, .value = i};
    CHECK_EQ(loom_submit_to(1, future_setter, &job), 0);
    for (;;) {
        int rc = loom_future_get(&fut, &value, precise_deadline(rng, 30 * US));
        if (rc == 0)
            break;
        CHECK_EQ(rc, -ETIMEDOUT);
        (*timeouts)++;
        loom_yield(); /* a deadline can pass before the wait starts: let the loop run */
    }
    CHECK_EQ(value, i);
}

static void test_future_remote_race(uint64_t seed)
{
    uint64_t rng = seed | 1;
    int64_t rounds = test_scale(3000), timeouts = 0;
    for (int64_t i = 0; i < rounds; i++)
        future_race_round(&rng, i, &timeouts);
    printf("sync_test: future race: %" PRId64 " rounds, %" PRId64 " timed-out gets\n", rounds,
           timeouts);
}

/* ---- randomized stress ---------------------------------------------------------------------- */

enum {
    STRESS_FIBERS = 200,
    STRESS_ROLES = 8,
    STRESS_SEM_UNITS = 5,
    STRESS_PRODUCERS = STRESS_FIBERS / STRESS_ROLES,
};

static struct {
    uint64_t seed;
    int64_t rounds;
    struct loom_mutex mutex;
    struct loom_cond cond;
    struct loom_sem sem;
    struct loom_channel channel;
    struct loom_waitgroup all, producers;
    void *slots[8];
    int inside;
    int64_t locked, locked_expected;
    int64_t sem_held;
    int64_t sent, received, sum_sent, sum_received;
    int64_t tickets, tickets_made, tickets_taken, tickets_total;
} st;

static int64_t stress_deadline(uint64_t *rng)
{
    uint64_t r = rng_next(rng) % 8;
    if (r == 0)
        return NO;
    if (r == 1) {
        loom_yield(); /* retry loops on a passed deadline must still let others run */
        return loom_deadline_in(-1);
    }
    return precise_deadline(rng, 200 * US);
}

static void stress_critical(uint64_t *rng)
{
    CHECK_EQ(st.inside, 0);
    st.inside = 1;
    yield_n((int)(rng_next(rng) % 3));
    CHECK_EQ(st.inside, 1);
    st.inside = 0;
    st.locked++;
}

static void stress_mutex(uint64_t *rng, int64_t i)
{
    (void)i;
    int rc = loom_mutex_lock(&st.mutex, stress_deadline(rng));
    if (rc == 0) {
        st.locked_expected++;
        stress_critical(rng);
        loom_mutex_unlock(&st.mutex);
    } else {
        CHECK_EQ(rc, -ETIMEDOUT);
        CHECK(st.mutex.owner != loom_fiber_self());
    }
}

static void stress_sem(uint64_t *rng, int64_t i)
{
    (void)i;
    int64_t n = 1 + (int64_t)(rng_next(rng) % 3);
    int rc = loom_sem_acquire(&st.sem, n, stress_deadline(rng));
    /* `<=`: units granted to waiters that have not run yet are in neither term */
    CHECK_LE(st.sem_held + loom_sem_available(&st.sem) + (rc == 0 ? n : 0), STRESS_SEM_UNITS);
    if (rc != 0) {
        CHECK_EQ(rc, -ETIMEDOUT);
        return;
    }
    st.sem_held += n;
    CHECK_LE(st.sem_held, STRESS_SEM_UNITS);
    yield_n((int)(rng_next(rng) % 3));
    st.sem_held -= n;
    loom_sem_release(&st.sem, n);
}

/* Items are (producer << 32 | sequence): each consumer sees every producer's items in order. */
static void stress_produce(uint64_t *rng, int64_t producer)
{
    for (int64_t seq = 0; seq < st.rounds; seq++) {
        intptr_t item = (intptr_t)(producer << 32 | (seq + 1));
        int rc;
        while ((rc = loom_channel_send(&st.channel, (void *)item, stress_deadline(rng))) != 0)
            CHECK_EQ(rc, -ETIMEDOUT);
        st.sent++;
        st.sum_sent += item;
        CHECK_LE(loom_channel_count(&st.channel), 8);
    }
    loom_waitgroup_done(&st.producers);
}

static void stress_consume(uint64_t *rng)
{
    int64_t last[STRESS_PRODUCERS] = {0};
    for (;;) {
        void *item = NULL;
        int rc = loom_channel_recv(&st.channel, &item, stress_deadline(rng));
        if (rc == -EPIPE)
            break;
        if (rc == -ETIMEDOUT)
            continue;
        CHECK_EQ(rc, 0);
        int64_t producer = (intptr_t)item >> 32, seq = (intptr_t)item & 0xffffffff;
        CHECK_LT(producer, STRESS_PRODUCERS);
        CHECK_GT(seq, last[producer]);
        last[producer] = seq;
        st.received++;
        st.sum_received += (intptr_t)item;
    }
    CHECK_EQ(loom_channel_count(&st.channel), 0);
}

static void stress_post_tickets(uint64_t *rng)
{
    for (int64_t i = 0; i < st.rounds; i++) {
        CHECK_EQ(loom_mutex_lock(&st.mutex, NO), 0);
        st.tickets++;
        st.tickets_made++;
        if (rng_next(rng) % 4 == 0)
            loom_cond_broadcast(&st.cond);
        else
            loom_cond_signal(&st.cond);
        stress_critical(rng);
        st.locked_expected++;
        loom_mutex_unlock(&st.mutex);
    }
}

static void stress_take_tickets(uint64_t *rng)
{
    CHECK_EQ(loom_mutex_lock(&st.mutex, NO), 0);
    while (st.tickets_taken < st.tickets_total) {
        if (st.tickets == 0) {
            int rc = loom_cond_wait(&st.cond, &st.mutex, stress_deadline(rng));
            CHECK(rc == 0 || rc == -ETIMEDOUT);
            CHECK(st.mutex.owner == loom_fiber_self());
            continue;
        }
        st.tickets--;
        st.tickets_taken++;
        CHECK_LE(st.tickets_taken, st.tickets_made);
        if (st.tickets_taken == st.tickets_total)
            loom_cond_broadcast(&st.cond);
        loom_mutex_unlock(&st.mutex);
        loom_yield();
        CHECK_EQ(loom_mutex_lock(&st.mutex, NO), 0);
    }
    loom_mutex_unlock(&st.mutex);
}

static int stress_fiber(void *arg)
{
    int64_t id = (intptr_t)arg;
    uint64_t rng = (st.seed ^ ((uint64_t)id * 0x9E3779B97F4A7C15ULL)) | 1;
    int64_t timeouts = 0;
    switch (id % STRESS_ROLES) {
    case 0:
    case 1:
        for (int64_t i = 0; i < st.rounds; i++)
            (id % STRESS_ROLES == 0 ? stress_mutex : stress_sem)(&rng, i);
        break;
    case 2:
        stress_produce(&rng, id / STRESS_ROLES);
        break;
    case 3:
        stress_consume(&rng);
        break;
    case 4:
        stress_post_tickets(&rng);
        break;
    case 5:
        stress_take_tickets(&rng);
        break;
    case 6:
        for (int64_t i = 0; i < st.rounds / 4 + 1; i++)
            future_race_round(&rng, i, &timeouts);
        break;
    default: /* nested: a semaphore unit, then the mutex */
        for (int64_t i = 0; i < st.rounds; i++) {
            if (loom_sem_acquire(&st.sem, 1, stress_deadline(&rng)) != 0)
                continue;
            st.sem_held++;
            stress_mutex(&rng, i);
            st.sem_held--;
            loom_sem_release(&st.sem, 1);
        }
    }
    loom_waitgroup_done(&st.all);
    return 0;
}

static int stress_closer(void *arg)
{
    (void)arg;
    CHECK_EQ(loom_waitgroup_wait(&st.producers, NO), 0);
    loom_channel_close(&st.channel);
    return 0;
}

static void stress_init(uint64_t seed)
{
    memset(&st, 0, sizeof(st));
    st.seed = seed;
    st.rounds = test_scale(1000);
    st.tickets_total = (STRESS_FIBERS / STRESS_ROLES) * st.rounds; /* role 4 count */
    loom_mutex_init(&st.mutex);
    loom_cond_init(&st.cond);
    loom_sem_init(&st.sem, STRESS_SEM_UNITS);
    loom_channel_init(&st.channel, st.slots, 8);
    loom_waitgroup_init(&st.all);
    loom_waitgroup_init(&st.producers);
}

static void test_stress(uint64_t seed)
{
    struct loom_fiber *f[STRESS_FIBERS];
    stress_init(seed);
    loom_waitgroup_add(&st.all, STRESS_FIBERS);
    loom_waitgroup_add(&st.producers, STRESS_PRODUCERS);
    for (int i = 0; i < STRESS_FIBERS; i++)
        f[i] = spawn_joinable(stress_fiber, (void *)(intptr_t)i);
    struct loom_fiber *closer = spawn_joinable(stress_closer, NULL);
    CHECK_EQ(loom_waitgroup_wait(&st.all, loom_deadline_in(120 * LOOM_NS_PER_S)), 0);
    for (int i = 0; i < STRESS_FIBERS; i++)
        CHECK_EQ(join(f[i]), 0);
    join(closer);
    CHECK_EQ(st.locked, st.locked_expected);
    CHECK_EQ(st.sent, STRESS_PRODUCERS * st.rounds);
    CHECK_EQ(st.received, st.sent);
    CHECK_EQ(st.sum_received, st.sum_sent);
    CHECK_EQ(st.tickets_made, st.tickets_total);
    CHECK_EQ(st.tickets_taken, st.tickets_total);
    CHECK_EQ(st.sem_held, 0);
    CHECK_EQ(loom_sem_available(&st.sem), STRESS_SEM_UNITS);
    CHECK(st.mutex.owner == NULL);
    loom_waitgroup_deinit(&st.producers);
    loom_waitgroup_deinit(&st.all);
    loom_channel_deinit(&st.channel);
    loom_sem_deinit(&st.sem);
    loom_cond_deinit(&st.cond);
    loom_mutex_deinit(&st.mutex); /* each deinit asserts that nobody is left waiting */
    printf("sync_test: stress: %d fibers, %" PRId64 " rounds, %" PRId64 " locks, %" PRId64
           " items\n",
           STRESS_FIBERS, st.rounds, st.locked, st.received);
}

/* ---- main ----------------------------------------------------------------------------------- */

static uint64_t test_seed(void)
{
    const char *env = getenv("LOOM_TEST_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 0) : (uint64_t)loom_clock_ns() ^ (uint64_t)getpid();
    printf("sync_test: seed %" PRIu64 " (rerun with LOOM_TEST_SEED=%" PRIu64 ")\n", seed, seed);
    fflush(stdout);
    return seed;
}

static int test_main(void *arg)
{
    uint64_t seed = *(uint64_t *)arg;
    CHECK_EQ(loom_core_count(), 2);
    test_mutex_exclusion();
    test_mutex_fifo();
    test_mutex_trylock();
    test_mutex_timeout();
    test_mutex_grant_races_timeout();
    test_cond_signal_broadcast();
    test_cond_timeout();
    test_cond_producer_consumer();
    test_sem_counting();
    test_sem_fifo();
    test_sem_timeout();
    test_channel_backpressure_order();
    test_channel_handoff_close();
    test_channel_timeouts();
    test_waitgroup();
    test_future_local();
    test_future_remote();
    test_future_remote_race(seed);
    test_stress(seed);
    return 0;
}

/* ---- misuse: each case runs in a child and must die with its assertion message ---------- */

static int hold_forever(void *arg)
{
    (void)arg;
    CHECK_EQ(loom_mutex_lock(&mx, NO), 0);
    loom_sleep(LOOM_NS_PER_S);
    return 0;
}

static int use_mutex(void *arg)
{
    (void)arg;
    return loom_mutex_trylock(&mx) ? 0 : 1;
}

static int misuse_main(void *arg)
{
    const char *mode = arg;
    struct loom_future fut;
    loom_mutex_init(&mx);
    loom_sem_init(&sem, 0);
    if (strcmp(mode, "recursive") == 0) {
        CHECK_EQ(loom_mutex_lock(&mx, NO), 0);
        loom_mutex_lock(&mx, NO);
    } else if (strcmp(mode, "unlock-other") == 0) {
        CHECK_EQ(loom_spawn(NULL, hold_forever, NULL, NULL), 0);
        loom_yield();
        loom_mutex_unlock(&mx);
    } else if (strcmp(mode, "future-twice") == 0) {
        loom_future_init(&fut);
        loom_future_set(&fut, 1);
        loom_future_set(&fut, 2);
    } else if (strcmp(mode, "deinit-waiters") == 0) {
        CHECK_EQ(loom_spawn(NULL, sem_taker, (void *)1, NULL), 0);
        loom_yield();
        loom_sem_deinit(&sem);
    } else if (strcmp(mode, "wrong-core") == 0) {
        loom_invoke_on(1, use_mutex, NULL, NO);
    }
    return 0; /* not reached when the assertion fires */
}

static void expect_death(const char *self, const char *mode, const char *message)
{
    char out[8192];
    char *child[] = {(char *)self, "misuse", (char *)mode, NULL};
    int status = test_spawn(child, NULL, out, sizeof(out), 20000);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT)
        test_fail_(__FILE__, __LINE__, "misuse '%s' did not abort (status %d):\n%s", mode, status,
                   out);
    CHECK_CONTAINS(out, message);
}

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[1], "misuse") == 0)
        return test_run(2, misuse_main, argv[2]);
    uint64_t seed = test_seed();
    CHECK_EQ(test_run(2, test_main, &seed), 0);
    if (!test_under_valgrind()) {
        expect_death(argv[0], "recursive", "locked twice by 'main' (not recursive)");
        expect_death(argv[0], "unlock-other", "unlocked by a fiber that does not hold it");
        expect_death(argv[0], "future-twice", "set twice");
        expect_death(argv[0], "deinit-waiters", "deinitialised with waiters");
        expect_death(argv[0], "wrong-core", "of core 0 used on core 1");
    }
    printf("sync_test: all passed\n");
    return 0;
}
