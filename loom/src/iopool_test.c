/* SPDX-License-Identifier: MIT
 * iopool_test.c - the IO thread pool on a real temp file: every file kind in both styles
 * (callback, blocking wait), 8 submitting threads writing then verifying their regions, error
 * results, the futex and eventfd wake-up paths (a pipe read that waits for data), growing
 * under load and shrinking back when idle (twice, so a retired slot is reused), and shutdown
 * racing submitters with IO in flight: every accepted request completes exactly once, with
 * its result or -ECANCELED, and submit afterwards returns -ESHUTDOWN.
 * LOOM_TEST_TAGS: tsan no-valgrind timeout=120
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <time.h>

#include "harness.h"
#include "loom/iopool.h"

#define BLOCK      4096
#define SUBMITTERS 8

static int temp_fd(void)
{
    const char *dir = getenv("TMPDIR");
    char path[512];
    snprintf(path, sizeof(path), "%s/iopool_test.XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    CHECK_GE(fd, 0);
    unlink(path);
    return fd;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static void fill(uint8_t *buf, size_t len, uint32_t seed)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 8));
}

/* ---- every kind, blocking and callback ---------------------------------------------------- */

static _Atomic int callback_calls;

static void count_callback(struct loom_iopool_req *req, int32_t res)
{
    CHECK_EQ(req->io.op.res, res);
    *(int32_t *)req->data = res;
    atomic_fetch_add(&callback_calls, 1);
}

static void test_kinds(void)
{
    struct loom_iopool *pool;
    CHECK_EQ(loom_iopool_create(1, 2, NULL, &pool), 0);
    int fd = temp_fd();
    static uint8_t out[4 * BLOCK], in[4 * BLOCK];
    fill(out, sizeof(out), 1);
    CHECK_EQ(loom_iopool_pwrite(pool, fd, out, sizeof(out), 0), sizeof(out));
    CHECK_EQ(loom_iopool_fsync(pool, fd, true), 0);
    CHECK_EQ(loom_iopool_fsync(pool, fd, false), 0);
    CHECK_EQ(loom_iopool_pread(pool, fd, in, sizeof(in), 0), sizeof(in));
    CHECK(memcmp(in, out, sizeof(in)) == 0);
    CHECK_EQ(loom_iopool_pread(pool, fd, in, sizeof(in), sizeof(out) - 100), 100); /* short */

    /* writev / readv, callback style */
    struct iovec iov[2] = {{out, BLOCK}, {out + BLOCK, BLOCK}};
    struct loom_iopool_req req;
    int32_t res = -1;
    loom_iopool_prep_writev(&req, fd, iov, 2, 8 * BLOCK);
    atomic_store(&callback_calls, 0);
    CHECK_EQ(loom_iopool_submit(pool, &req, count_callback, &res), 0);
    while (atomic_load(&callback_calls) == 0)
        sleep_ms(1);
    CHECK_EQ(res, 2 * BLOCK);
    memset(in, 0, sizeof(in));
    struct iovec riov[2] = {{in, BLOCK}, {in + BLOCK, BLOCK}};
    loom_iopool_prep_readv(&req, fd, riov, 2, 8 * BLOCK);
    CHECK_EQ(loom_iopool_submit(pool, &req, NULL, NULL), 0);
    CHECK_EQ(loom_iopool_wait(&req), 2 * BLOCK);
    CHECK(loom_iopool_done(&req));
    CHECK(memcmp(in, out, 2 * BLOCK) == 0);

    /* fallocate, statx */
    loom_iopool_prep_fallocate(&req, fd, 0, 0, 64 * BLOCK);
    CHECK_EQ(loom_iopool_submit(pool, &req, NULL, NULL), 0);
    CHECK_EQ(loom_iopool_wait(&req), 0);
    struct statx stx;
    memset(&stx, 0, sizeof(stx));
    loom_iopool_prep_statx(&req, fd, "", AT_EMPTY_PATH, STATX_SIZE, &stx);
    CHECK_EQ(loom_iopool_submit(pool, &req, NULL, NULL), 0);
    CHECK_EQ(loom_iopool_wait(&req), 0);
    CHECK_EQ(stx.stx_size, 64 * BLOCK);

    /* openat / close through the pool */
    int fd2 = loom_iopool_openat(pool, AT_FDCWD, "/proc/self/stat", O_RDONLY, 0);
    CHECK_GE(fd2, 0);
    CHECK_GT(loom_iopool_pread(pool, fd2, in, 64, 0), 0);
    CHECK_EQ(loom_iopool_close(pool, fd2), 0);
    close(fd);
    loom_iopool_destroy(pool);
}

static void test_errors(void)
{
    struct loom_iopool *pool;
    CHECK_EQ(loom_iopool_create(0, 1, NULL, &pool), -EINVAL);
    CHECK_EQ(loom_iopool_create(2, 1, NULL, &pool), -EINVAL);
    CHECK_EQ(loom_iopool_create(1, 65, NULL, &pool), -EINVAL);
    struct loom_iopool_config config;
    loom_iopool_config_default(&config);
    config.ring_entries = 1u << 20;
    CHECK_EQ(loom_iopool_create(1, 1, &config, &pool), -EINVAL);

    CHECK_EQ(loom_iopool_create(1, 1, NULL, &pool), 0);
    char buf[64];
    CHECK_EQ(loom_iopool_pread(pool, -1, buf, sizeof(buf), 0), -EBADF);
    CHECK_EQ(loom_iopool_pread(pool, 12345, buf, sizeof(buf), 0), -EBADF);
    CHECK_EQ(loom_iopool_openat(pool, AT_FDCWD, "/nonexistent/iopool", O_RDONLY, 0), -ENOENT);
    int dir = open("/", O_RDONLY | O_DIRECTORY);
    CHECK_GE(dir, 0);
    CHECK_EQ(loom_iopool_pread(pool, dir, buf, sizeof(buf), 0), -EISDIR);
    close(dir);
    int ro = open("/proc/self/stat", O_RDONLY);
    CHECK_EQ(loom_iopool_pwrite(pool, ro, buf, sizeof(buf), 0), -EBADF);
    close(ro);
    CHECK_EQ(loom_iopool_close(pool, 54321), -EBADF);

    struct loom_iopool_req req;
    loom_iopool_prep_read(&req, 0, buf, sizeof(buf), 0);
    req.io.kind = LOOM_IO_READ_FIXED;
    CHECK_EQ(loom_iopool_submit(pool, &req, NULL, NULL), -EINVAL);
    req.io.kind = 200;
    CHECK_EQ(loom_iopool_submit(pool, &req, NULL, NULL), -EINVAL);
    struct loom_iopool_stats stats;
    loom_iopool_stats(pool, &stats);
    CHECK_EQ(stats.submitted, stats.completed);
    CHECK_EQ(stats.submitted, 6);
    loom_iopool_destroy(pool);
    loom_iopool_destroy(NULL);
}

/* ---- wake-ups: a read that waits in the kernel --------------------------------------------- */

static void *late_writer(void *arg)
{
    sleep_ms(30);
    CHECK_EQ(write(*(int *)arg, "abc", 3), 3);
    return NULL;
}

static void test_wakeups(void)
{
    struct loom_iopool_config config;
    loom_iopool_config_default(&config);
    config.tick_ns = 10 * LOOM_NS_PER_S; /* asleep whenever this test submits */
    struct loom_iopool *pool;
    CHECK_EQ(loom_iopool_create(1, 1, &config, &pool), 0);
    sleep_ms(30); /* the thread goes to sleep */
    struct loom_iopool_stats before, after;
    loom_iopool_stats(pool, &before);
    CHECK_GE(before.sleeps, 1);

    int pipefd[2];
    CHECK_EQ(pipe(pipefd), 0);
    char buf[16] = {0};
    struct loom_iopool_req req;
    loom_iopool_prep_read(&req, pipefd[0], buf, sizeof(buf), (uint64_t)-1);
    CHECK_EQ(loom_iopool_submit(pool, &req, NULL, NULL), 0);
    sleep_ms(20);
    CHECK(!loom_iopool_done(&req));
    /* another request overtakes the pending pipe read */
    int fd = temp_fd();
    CHECK_EQ(loom_iopool_pwrite(pool, fd, "x", 1, 0), 1);
    CHECK_EQ(write(pipefd[1], "hello", 5), 5);
    CHECK_EQ(loom_iopool_wait(&req), 5);
    CHECK(memcmp(buf, "hello", 5) == 0);
    loom_iopool_stats(pool, &after);
    CHECK_GE(after.wakeups, before.wakeups + 1); /* the thread slept when we submitted */
    CHECK_EQ(after.completed, after.submitted);
    CHECK_GT(after.syscalls, 0);

    /* a waiter that blocks on its futex before the data comes */
    loom_iopool_prep_read(&req, pipefd[0], buf, sizeof(buf), (uint64_t)-1);
    CHECK_EQ(loom_iopool_submit(pool, &req, NULL, NULL), 0);
    pthread_t writer;
    CHECK_EQ(pthread_create(&writer, NULL, late_writer, &pipefd[1]), 0);
    CHECK_EQ(loom_iopool_wait(&req), 3);
    CHECK(memcmp(buf, "abc", 3) == 0);
    pthread_join(writer, NULL);
    loom_iopool_stats(pool, &before);
    CHECK_GE(before.futex_calls, after.futex_calls + 2);
    close(fd);
    close(pipefd[0]);
    close(pipefd[1]);
    loom_iopool_destroy(pool);
}

/* ---- 8 submitting threads: writes by callback, reads by waiting, data verified ------------- */

#define WINDOW 16 /* requests a submitter keeps in flight */

struct submitter {
    struct loom_iopool *pool;
    int fd;
    unsigned id;
    int64_t blocks;       /* its region: blocks [id * blocks, (id + 1) * blocks) */
    _Atomic int64_t done; /* callbacks run */
    int32_t results[WINDOW];
    struct loom_iopool_req reqs[WINDOW];
    uint8_t bufs[WINDOW][BLOCK];
};

static void write_done(struct loom_iopool_req *req, int32_t res)
{
    struct submitter *s = req->data;
    s->results[req - s->reqs] = res;
    atomic_fetch_add_explicit(&s->done, 1, memory_order_release);
}

static void *submitter_main(void *arg)
{
    struct submitter *s = arg;
    uint64_t base = (uint64_t)s->id * (uint64_t)s->blocks;
    for (int64_t b = 0; b < s->blocks; b += WINDOW) {
        int n = (int)(s->blocks - b < WINDOW ? s->blocks - b : WINDOW);
        atomic_store(&s->done, 0);
        for (int i = 0; i < n; i++) {
            fill(s->bufs[i], BLOCK, (uint32_t)(base + (uint64_t)b + (uint64_t)i));
            loom_iopool_prep_write(&s->reqs[i], s->fd, s->bufs[i], BLOCK,
                                   (base + (uint64_t)b + (uint64_t)i) * BLOCK);
            CHECK_EQ(loom_iopool_submit(s->pool, &s->reqs[i], write_done, s), 0);
        }
        while (atomic_load_explicit(&s->done, memory_order_acquire) < n)
            sched_yield();
        for (int i = 0; i < n; i++)
            CHECK_EQ(s->results[i], BLOCK);
    }
    uint8_t expect[BLOCK];
    for (int64_t b = 0; b < s->blocks; b += WINDOW) {
        int n = (int)(s->blocks - b < WINDOW ? s->blocks - b : WINDOW);
        for (int i = 0; i < n; i++) {
            loom_iopool_prep_read(&s->reqs[i], s->fd, s->bufs[i], BLOCK,
                                  (base + (uint64_t)b + (uint64_t)i) * BLOCK);
            CHECK_EQ(loom_iopool_submit(s->pool, &s->reqs[i], NULL, NULL), 0);
        }
        for (int i = 0; i < n; i++) {
            CHECK_EQ(loom_iopool_wait(&s->reqs[i]), BLOCK);
            fill(expect, BLOCK, (uint32_t)(base + (uint64_t)b + (uint64_t)i));
            CHECK(memcmp(expect, s->bufs[i], BLOCK) == 0);
        }
    }
    return NULL;
}

static void run_submitters(struct loom_iopool *pool, int fd, int64_t blocks,
                           struct loom_iopool_stats *peak)
{
    static struct submitter subs[SUBMITTERS];
    pthread_t threads[SUBMITTERS];
    for (unsigned i = 0; i < SUBMITTERS; i++) {
        subs[i].pool = pool;
        subs[i].fd = fd;
        subs[i].id = i;
        subs[i].blocks = blocks;
        CHECK_EQ(pthread_create(&threads[i], NULL, submitter_main, &subs[i]), 0);
    }
    /* watch the thread count while they run */
    memset(peak, 0, sizeof(*peak));
    bool joined[SUBMITTERS] = {false};
    for (int running = SUBMITTERS; running > 0;) {
        struct loom_iopool_stats stats;
        loom_iopool_stats(pool, &stats);
        if (stats.threads > peak->threads)
            peak->threads = stats.threads;
        running = 0;
        for (unsigned i = 0; i < SUBMITTERS; i++) {
            if (!joined[i])
                joined[i] = pthread_tryjoin_np(threads[i], NULL) == 0;
            running += !joined[i];
        }
        if (running)
            sleep_ms(1);
    }
}

static void test_submitters(void)
{
    struct loom_iopool *pool;
    CHECK_EQ(loom_iopool_create(2, 2, NULL, &pool), 0);
    int fd = temp_fd();
    int64_t blocks = test_scale(512);
    struct loom_iopool_stats peak, stats;
    run_submitters(pool, fd, blocks, &peak);
    loom_iopool_stats(pool, &stats);
    CHECK_EQ(stats.submitted, 2 * SUBMITTERS * blocks);
    CHECK_EQ(stats.completed, stats.submitted);
    CHECK_EQ(stats.cancelled, 0);
    CHECK_LE(stats.batches, stats.submitted);
    printf("submitters: %" PRIu64 " requests, %" PRIu64 " batches, %" PRIu64 " enters, %" PRIu64
           " sleeps, %" PRIu64 " wakeups, %" PRIu64 " futex calls\n",
           stats.submitted, stats.batches, stats.enters, stats.sleeps, stats.wakeups,
           stats.futex_calls);
    close(fd);
    loom_iopool_destroy(pool);
}

/* ---- autoscaling ---------------------------------------------------------------------------- */

static void wait_for_threads(struct loom_iopool *pool, unsigned want, int timeout_ms)
{
    struct loom_iopool_stats stats;
    for (int waited = 0;; waited += 5) {
        loom_iopool_stats(pool, &stats);
        if (stats.threads == want)
            return;
        CHECK_LT(waited, timeout_ms);
        sleep_ms(5);
    }
}

static void test_autoscale(void)
{
    struct loom_iopool_config config;
    loom_iopool_config_default(&config);
    config.ring_entries = 4; /* requests wait in the channel beyond 4 in flight */
    config.submit_batch = 2;
    config.grow_waiting = 4;
    config.idle_timeout_ns = 100 * LOOM_NS_PER_MS;
    config.tick_ns = 20 * LOOM_NS_PER_MS;
    struct loom_iopool *pool;
    CHECK_EQ(loom_iopool_create(1, 4, &config, &pool), 0);
    int fd = temp_fd();
    struct loom_iopool_stats peak, stats;
    for (int round = 1; round <= 2; round++) {
        run_submitters(pool, fd, test_scale(1024), &peak);
        loom_iopool_stats(pool, &stats);
        CHECK_GE(stats.grows, (uint64_t)round); /* grew under load */
        CHECK_GT(peak.threads, 1);
        CHECK_LE(peak.threads, 4);
        /* and back down to min_threads once idle for idle_timeout */
        wait_for_threads(pool, 1, 3000);
        loom_iopool_stats(pool, &stats);
        CHECK_GE(stats.shrinks, (uint64_t)round);
        CHECK_EQ(stats.grows, stats.shrinks); /* min_threads started by create, not grown */
        /* the last thread serves on */
        char c;
        CHECK_EQ(loom_iopool_pread(pool, fd, &c, 1, 0), 1);
    }
    printf("autoscale: %" PRIu64 " grows, %" PRIu64 " shrinks\n", stats.grows, stats.shrinks);
    close(fd);
    loom_iopool_destroy(pool);
}

/* ---- shutdown racing submitters, IO in flight ---------------------------------------------- */

#define RACE_REQS 2000

struct racer {
    struct loom_iopool *pool;
    int fd;
    int64_t accepted;
    struct loom_iopool_req reqs[RACE_REQS];
    _Atomic int calls[RACE_REQS];
    _Atomic int64_t cancelled;
    uint8_t buf[BLOCK]; /* shared by every read: the data is not checked here */
};

static void race_done(struct loom_iopool_req *req, int32_t res)
{
    struct racer *r = req->data;
    CHECK(res == BLOCK || res == -ECANCELED);
    if (res == -ECANCELED)
        atomic_fetch_add(&r->cancelled, 1);
    atomic_fetch_add(&r->calls[req - r->reqs], 1);
}

static void *racer_main(void *arg)
{
    struct racer *r = arg;
    int64_t n = test_scale(RACE_REQS);
    for (int64_t i = 0; i < n; i++) {
        loom_iopool_prep_read(&r->reqs[i], r->fd, r->buf, BLOCK, (uint64_t)(i % 64) * BLOCK);
        int rc = loom_iopool_submit(r->pool, &r->reqs[i], race_done, r);
        if (rc == -ESHUTDOWN)
            break;
        CHECK_EQ(rc, 0);
        r->accepted++;
    }
    return NULL;
}

static void test_shutdown(void)
{
    struct loom_iopool_config config;
    loom_iopool_config_default(&config);
    config.ring_entries = 8; /* many requests still queued when shutdown comes */
    struct loom_iopool *pool;
    CHECK_EQ(loom_iopool_create(2, 3, &config, &pool), 0);
    int fd = temp_fd();
    static uint8_t zero[64 * BLOCK];
    CHECK_EQ(pwrite(fd, zero, sizeof(zero), 0), (ssize_t)sizeof(zero));
    enum { RACERS = 4 };
    static struct racer racers[RACERS];
    pthread_t threads[RACERS];
    for (int i = 0; i < RACERS; i++) {
        racers[i].pool = pool;
        racers[i].fd = fd;
        CHECK_EQ(pthread_create(&threads[i], NULL, racer_main, &racers[i]), 0);
    }
    sleep_ms(2);
    loom_iopool_shutdown(pool);
    for (int i = 0; i < RACERS; i++)
        pthread_join(threads[i], NULL);
    /* every accepted request completed exactly once before shutdown returned */
    int64_t accepted = 0, cancelled = 0;
    for (int i = 0; i < RACERS; i++) {
        int64_t n = test_scale(RACE_REQS);
        for (int64_t j = 0; j < n; j++)
            CHECK_EQ(atomic_load(&racers[i].calls[j]), j < racers[i].accepted ? 1 : 0);
        accepted += racers[i].accepted;
        cancelled += atomic_load(&racers[i].cancelled);
    }
    struct loom_iopool_stats stats;
    loom_iopool_stats(pool, &stats);
    CHECK_EQ(stats.submitted, accepted);
    CHECK_EQ(stats.completed, accepted);
    CHECK_EQ(stats.cancelled, cancelled);
    CHECK_EQ(stats.threads, 0);
    printf("shutdown: %" PRId64 " accepted, %" PRId64 " cancelled\n", accepted, cancelled);
    /* after shutdown */
    char c;
    CHECK_EQ(loom_iopool_pread(pool, fd, &c, 1, 0), -ESHUTDOWN);
    struct loom_iopool_req req;
    loom_iopool_prep_read(&req, fd, &c, 1, 0);
    CHECK_EQ(loom_iopool_submit(pool, &req, race_done, NULL), -ESHUTDOWN);
    loom_iopool_shutdown(pool); /* idempotent */
    loom_iopool_destroy(pool);
    close(fd);
}

int main(void)
{
    test_kinds();
    test_errors();
    test_wakeups();
    test_submitters();
    test_autoscale();
    test_shutdown();
    return TEST_EXIT_PASS;
}
