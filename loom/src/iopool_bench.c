/* SPDX-License-Identifier: MIT
 * iopool_bench.c - 4 KiB random reads from 4 ordinary threads: through the IO pool against
 * plain pread(2) in the same 4 threads.
 *
 * Figure iopool_randread_4K (iops), baseline pread. The file is 256 MiB (iopool_bench.dat in
 * $TMPDIR, else in build/; created once and kept), opened with O_DIRECT so the device is
 * measured, not the page cache (without O_DIRECT when the file system refuses it: the line
 * says so). Each pool thread keeps 32 reads in flight: a callback hands a finished read back
 * to its thread through a lock-free mailbox (futex wake only when that thread sleeps), and the
 * thread submits the next random read. A pread thread has one read in flight, as blocking IO
 * does. Median of 5 runs of 1 s each, pool and pread runs interleaved.
 *
 *   iopool_bench            the figure (about 12 s)
 *   iopool_bench --sweep    also N (submit batch), M (poll spins), C (complete batch) and the
 *                           thread count, one at a time around the defaults (about 40 s more)
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "benchlib.h"
#include "loom/iopool.h"

#define FILE_BYTES (256ull << 20)
#define BLOCK      4096
#define THREADS    4
#define DEPTH      32 /* reads in flight per pool thread */
#define RUNS       5

static int file_fd = -1;
static bool direct = true;
static _Atomic bool stop;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static uint64_t rng_next(uint64_t *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return *state * 0x2545F4914F6CDD1Dull;
}

static uint64_t random_offset(uint64_t *rng)
{
    return (rng_next(rng) % (FILE_BYTES / BLOCK)) * BLOCK;
}

/* Creates the file once (kept for later runs), then opens it for reading, O_DIRECT if the
 * file system allows. */
static int open_file(void)
{
    const char *dir = getenv("TMPDIR");
    static char path[512];
    snprintf(path, sizeof(path), "%s/iopool_bench.dat", dir && *dir ? dir : "build");
    struct stat st;
    if (stat(path, &st) != 0 || (uint64_t)st.st_size != FILE_BYTES) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) {
            fprintf(stderr, "iopool_bench: %s: %s\n", path, strerror(errno));
            return -1;
        }
        static char chunk[1 << 20];
        uint64_t rng = 42;
        for (uint64_t off = 0; off < FILE_BYTES; off += sizeof(chunk)) {
            for (size_t i = 0; i < sizeof(chunk); i += 8) {
                uint64_t v = rng_next(&rng);
                memcpy(chunk + i, &v, 8);
            }
            if (pwrite(fd, chunk, sizeof(chunk), (off_t)off) != (ssize_t)sizeof(chunk)) {
                fprintf(stderr, "iopool_bench: writing %s: %s\n", path, strerror(errno));
                close(fd);
                return -1;
            }
        }
        fsync(fd);
        close(fd);
    }
    int fd = open(path, O_RDONLY | O_DIRECT);
    if (fd < 0 && errno == EINVAL) {
        direct = false;
        fd = open(path, O_RDONLY);
    }
    if (fd < 0)
        fprintf(stderr, "iopool_bench: %s: %s\n", path, strerror(errno));
    return fd;
}

/* ---- pread: one blocking read at a time per thread ---------------------------------------- */

static void *pread_main(void *arg)
{
    uint64_t *ops = arg, rng = (uint64_t)(uintptr_t)arg | 1;
    void *buf;
    if (posix_memalign(&buf, BLOCK, BLOCK) != 0)
        abort();
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        if (pread(file_fd, buf, BLOCK, (off_t)random_offset(&rng)) != BLOCK)
            abort();
        (*ops)++;
    }
    free(buf);
    return NULL;
}

/* ---- the pool: DEPTH reads in flight per thread, resubmitted by the thread ----------------- */

struct reader {
    struct loom_iopool *pool;
    struct loom_iopool_req *_Atomic mailbox; /* finished reads, pushed by callbacks */
    _Atomic uint32_t sleeping;               /* futex word: 1 while the reader may sleep */
    uint64_t ops;
    uint64_t rng;
    struct loom_iopool_req reqs[DEPTH];
    uint8_t *bufs;
};

static void read_done(struct loom_iopool_req *req, int32_t res)
{
    struct reader *r = req->data;
    if (res != BLOCK) {
        fprintf(stderr, "iopool_bench: read: %s\n", res < 0 ? strerror(-res) : "short");
        abort();
    }
    struct loom_iopool_req *head = atomic_load_explicit(&r->mailbox, memory_order_relaxed);
    do {
        req->next = head; /* the pool is done with the link once the callback runs */
    } while (!atomic_compare_exchange_weak_explicit(&r->mailbox, &head, req, memory_order_seq_cst,
                                                    memory_order_relaxed));
    if (atomic_load_explicit(&r->sleeping, memory_order_seq_cst) &&
        atomic_exchange_explicit(&r->sleeping, 0, memory_order_relaxed))
        syscall(SYS_futex, &r->sleeping, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void submit_read(struct reader *r, struct loom_iopool_req *req)
{
    loom_iopool_prep_read(req, file_fd, r->bufs + (req - r->reqs) * BLOCK, BLOCK,
                          random_offset(&r->rng));
    if (loom_iopool_submit(r->pool, req, read_done, r) != 0)
        abort();
}

static struct loom_iopool_req *take_mailbox(struct reader *r)
{
    for (int spin = 0; spin < 64; spin++) {
        if (atomic_load_explicit(&r->mailbox, memory_order_relaxed))
            return atomic_exchange_explicit(&r->mailbox, NULL, memory_order_acquire);
    }
    atomic_store_explicit(&r->sleeping, 1, memory_order_seq_cst);
    if (!atomic_load_explicit(&r->mailbox, memory_order_seq_cst))
        syscall(SYS_futex, &r->sleeping, FUTEX_WAIT_PRIVATE, 1, NULL, NULL, 0);
    atomic_store_explicit(&r->sleeping, 0, memory_order_relaxed);
    return atomic_exchange_explicit(&r->mailbox, NULL, memory_order_acquire);
}

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    for (int i = 0; i < DEPTH; i++)
        submit_read(r, &r->reqs[i]);
    int outstanding = DEPTH;
    while (outstanding > 0) {
        bool stopping = atomic_load_explicit(&stop, memory_order_relaxed);
        for (struct loom_iopool_req *req = take_mailbox(r), *next; req; req = next) {
            next = req->next;
            r->ops++;
            if (stopping)
                outstanding--;
            else
                submit_read(r, req);
        }
    }
    return NULL;
}

/* ---- runs ----------------------------------------------------------------------------------- */

static double run_pread(double seconds)
{
    pthread_t threads[THREADS];
    uint64_t ops[THREADS] = {0};
    atomic_store(&stop, false);
    int64_t start = now_ns();
    for (int i = 0; i < THREADS; i++)
        pthread_create(&threads[i], NULL, pread_main, &ops[i]);
    usleep((useconds_t)(seconds * 1e6));
    atomic_store(&stop, true);
    uint64_t total = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(threads[i], NULL);
        total += ops[i];
    }
    return (double)total / ((double)(now_ns() - start) / 1e9);
}

static double run_pool(double seconds, unsigned pool_threads, const struct loom_iopool_config *c,
                       struct loom_iopool_stats *stats)
{
    struct loom_iopool *pool;
    int rc = loom_iopool_create(pool_threads, pool_threads, c, &pool);
    if (rc < 0) {
        fprintf(stderr, "iopool_bench: loom_iopool_create: %s\n", strerror(-rc));
        exit(1);
    }
    static struct reader readers[THREADS];
    pthread_t threads[THREADS];
    atomic_store(&stop, false);
    int64_t start = now_ns();
    for (int i = 0; i < THREADS; i++) {
        struct reader *r = &readers[i];
        memset(r->reqs, 0, sizeof(r->reqs));
        r->pool = pool;
        r->ops = 0;
        r->rng = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1) + (uint64_t)start;
        atomic_store(&r->mailbox, NULL);
        atomic_store(&r->sleeping, 0);
        if (!r->bufs && posix_memalign((void **)&r->bufs, BLOCK, (size_t)DEPTH * BLOCK) != 0)
            abort();
        pthread_create(&threads[i], NULL, reader_main, r);
    }
    usleep((useconds_t)(seconds * 1e6));
    atomic_store(&stop, true);
    uint64_t total = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(threads[i], NULL);
        total += readers[i].ops;
    }
    double iops = (double)total / ((double)(now_ns() - start) / 1e9);
    if (stats)
        loom_iopool_stats(pool, stats);
    loom_iopool_destroy(pool);
    return iops;
}

static double median_pool(int runs, double seconds, unsigned pool_threads,
                          const struct loom_iopool_config *c)
{
    double values[RUNS];
    for (int i = 0; i < runs; i++)
        values[i] = run_pool(seconds, pool_threads, c, NULL);
    return bench_median_f64(values, runs);
}

/* One knob at a time around the defaults: 3 runs of 0.6 s per setting. */
static void sweep(void)
{
    struct loom_iopool_config base, c;
    loom_iopool_config_default(&base);
    static const unsigned batches[] = {1, 8, 32, 128};
    static const unsigned spins[] = {0, 4, 16, 64, 256, 1024};
    for (size_t i = 0; i < sizeof(batches) / sizeof(batches[0]); i++) {
        c = base;
        c.submit_batch = batches[i];
        printf("sweep: N=%-4u iops %.0f\n", batches[i], median_pool(3, 0.6, 1, &c));
    }
    for (size_t i = 0; i < sizeof(spins) / sizeof(spins[0]); i++) {
        c = base;
        c.poll_spins = spins[i];
        printf("sweep: M=%-4u iops %.0f\n", spins[i], median_pool(3, 0.6, 1, &c));
    }
    for (size_t i = 0; i < sizeof(batches) / sizeof(batches[0]); i++) {
        c = base;
        c.complete_batch = batches[i];
        printf("sweep: C=%-4u iops %.0f\n", batches[i], median_pool(3, 0.6, 1, &c));
    }
    for (unsigned n = 1; n <= 4; n *= 2)
        printf("sweep: threads=%u iops %.0f\n", n, median_pool(3, 0.6, n, &base));
    printf("sweep: pread iops %.0f\n", run_pread(0.6));
}

int main(int argc, char **argv)
{
    bool do_sweep = argc > 1 && strcmp(argv[1], "--sweep") == 0;
    bool quick = argc > 1 && strcmp(argv[1], "--quick") == 0; /* the default is short already */
    if (argc > 2 || (argc > 1 && !do_sweep && !quick)) {
        fprintf(stderr, "usage: iopool_bench [--sweep | --quick]\n");
        return 2;
    }
    file_fd = open_file();
    if (file_fd < 0)
        return 1;
    if (!direct)
        printf("iopool_bench: the file system refuses O_DIRECT: reading through the page cache\n");
    struct loom_iopool_config config;
    loom_iopool_config_default(&config);
    double pool_runs[RUNS], pread_runs[RUNS];
    struct loom_iopool_stats stats;
    run_pool(0.2, 1, &config, NULL); /* warm-up */
    for (int i = 0; i < RUNS; i++) {
        pool_runs[i] = run_pool(1.0, 1, &config, &stats);
        pread_runs[i] = run_pread(1.0);
    }
    printf("iopool: last run %" PRIu64 " reads, %.2f syscalls/read (%" PRIu64 " enters, %" PRIu64
           " batches, %" PRIu64 " sleeps, %" PRIu64 " wakeups)\n",
           stats.completed, (double)stats.syscalls / (double)stats.completed, stats.enters,
           stats.batches, stats.sleeps, stats.wakeups);
    double pread_iops = bench_median_f64(pread_runs, RUNS);
    double pool_iops = bench_median_f64(pool_runs, RUNS);
    bench_report("iopool_randread_4K", pool_iops, "iops", "pread", pread_iops, pool_runs, RUNS);
    if (do_sweep)
        sweep();
    close(file_fd);
    return 0;
}
