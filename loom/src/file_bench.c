/* SPDX-License-Identifier: MIT
 * file_bench.c - O_DIRECT file IO through loom's ring on one core against fio's io_uring
 * engine doing the same work on the same file, CPU and queue depth.
 *
 * Figures (each with baseline fio, median of ROUNDS rounds, loom and fio runs interleaved):
 *   file_seqwrite_1M   MB/s  sequential writes, 1 MiB blocks, 8 in flight
 *   file_seqwrite_64K  MB/s  sequential writes, 64 KiB blocks, 32 in flight
 *   file_randread_4K   iops  random 4 KiB reads (4 KiB aligned), 32 in flight
 *   file_randwrite_4K  iops  random 4 KiB writes, 32 in flight
 * The file (FILE_BYTES, <dir>/file_bench.dat, default dir build/file_bench_data; not *.d, which the
 * Makefile would include as a dependency file) is filled with
 * data once and kept, so reads hit written extents and writes overwrite them (no allocation
 * during a run); sequential writes wrap at its end, as fio's time_based runs do.
 * loom: one reactor pinned to the CPU fio gets, `depth` IO slots each re-issuing its IO until
 * the run's time is up, on registered buffers from loom_iobuf_alloc(). By default each slot is
 * a fiber calling loom_write_fixed()/loom_read_fixed(); --callbacks uses struct loom_io_req
 * re-armed from its completion callback (io_backend.h) instead.
 * fio: forked with --ioengine=io_uring --direct=1 and the same rw/bs/iodepth/size/runtime, its
 * own defaults otherwise (no fixedbufs, registerfiles, sqthread_poll or hipri); figures from
 * its JSON (bw_bytes for MB/s, iops). Without fio in PATH the benchmark says so and exits 0.
 *
 *   file_bench [--quick] [--rounds N] [--seconds S] [--dir PATH] [--callbacks] [--only NAME]
 *              [--poll-us N]
 *     (about 90 s; --quick: 1 round of 1 s, about 15 s; --only runs the workloads whose name
 *     contains NAME)
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "benchlib.h"
#include "internal.h" /* LOOM_ASSERT */
#include "loom/loom.h"

#define FILE_BYTES  (1ull << 30)
#define ROUNDS      3
#define ROUNDS_MAX  15
#define RUN_SECONDS 3
#define DEPTH_MAX   32
#define FILL_BLOCK  (1u << 20)

extern char **environ;

struct workload {
    const char *name;
    const char *fio_rw; /* fio's --rw */
    unsigned block;     /* bytes per IO */
    unsigned depth;     /* IOs in flight */
    bool write;
    bool random;
    bool bandwidth; /* figure in MB/s (10^6 bytes) rather than IOs per second */
};

static const struct workload workloads[] = {
    {"file_seqwrite_1M", "write", 1u << 20, 8, true, false, true},
    {"file_seqwrite_64K", "write", 64u << 10, 32, true, false, true},
    {"file_randread_4K", "randread", 4096, 32, false, true, false},
    {"file_randwrite_4K", "randwrite", 4096, 32, true, true, false},
};
#define WORKLOADS (sizeof(workloads) / sizeof(workloads[0]))

static char dir[512] = "build/file_bench_data";
static char file_path[600];
static char fio_json_path[600];
static int rounds = ROUNDS;
static int run_seconds = RUN_SECONDS;
static bool use_callbacks;
static const char *only;  /* run only the workloads whose name contains this */
static int cpu = 0;       /* the CPU loom's reactor and fio both run on */
static long poll_us = -1; /* --poll-us: the reactor's spin before sleeping; -1 = loom's default */

/* ---- one loom run --------------------------------------------------------------------------- */

struct run {
    const struct workload *w;
    int fd;
    int64_t end_ns; /* loom_now_ns() after which no IO is started */
    uint64_t next_offset;
    uint64_t rng;
    uint64_t ios;
    int error; /* first failure, -errno (or -EIO for a short transfer) */
    unsigned running;
    struct loom_baton done;
};

static uint64_t rng_next(uint64_t *state)
{
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return *state * 0x2545F4914F6CDD1Dull;
}

/* The next IO's offset: a random block, or the next one in order (wrapping at the end). */
static uint64_t next_offset(struct run *run)
{
    uint64_t blocks = FILE_BYTES / run->w->block;
    if (run->w->random)
        return (uint64_t)(((unsigned __int128)rng_next(&run->rng) * blocks) >> 64) * run->w->block;
    uint64_t offset = run->next_offset;
    run->next_offset = offset + run->w->block == FILE_BYTES ? 0 : offset + run->w->block;
    return offset;
}

static void count_result(struct run *run, ssize_t res)
{
    if (res == (ssize_t)run->w->block)
        run->ios++;
    else if (run->error == 0)
        run->error = res < 0 ? (int)res : -EIO;
}

struct slot {
    struct loom_io_req req; /* --callbacks */
    struct run *run;
    char *buf;
};

static int slot_fiber(void *arg)
{
    struct slot *slot = arg;
    struct run *run = slot->run;
    unsigned block = run->w->block;
    while (run->error == 0 && loom_now_ns() < run->end_ns) {
        uint64_t offset = next_offset(run);
        ssize_t res = run->w->write
                          ? loom_write_fixed(run->fd, slot->buf, block, offset, LOOM_NO_DEADLINE)
                          : loom_read_fixed(run->fd, slot->buf, block, offset, LOOM_NO_DEADLINE);
        count_result(run, res);
    }
    return 0;
}

static void slot_callback(struct loom_op *op);

static void slot_start(struct slot *slot)
{
    struct run *run = slot->run;
    struct loom_io_req *req = &slot->req;
    memset(req, 0, sizeof(*req));
    req->kind = run->w->write ? LOOM_IO_WRITE_FIXED : LOOM_IO_READ_FIXED;
    req->buf_index = 0; /* loom registers its whole IO buffer pool as buffer 0 */
    req->fd = run->fd;
    req->addr = slot->buf;
    req->len = run->w->block;
    req->offset = next_offset(run);
    req->op.fn = slot_callback;
    req->op.data = slot;
    loom_io_start(req);
}

static void slot_callback(struct loom_op *op)
{
    struct slot *slot = op->data;
    struct run *run = slot->run;
    count_result(run, op->res);
    if (run->error == 0 && loom_now_ns() < run->end_ns)
        slot_start(slot);
    else if (--run->running == 0)
        loom_baton_post(&run->done);
}

/* Runs `w` for `seconds` on `fd`; returns the figure (MB/s or IOs/s), or -1 on an IO error. */
static double loom_once(const struct workload *w, int fd, int seconds, struct loom_stats *delta)
{
    struct slot slots[DEPTH_MAX];
    struct loom_fiber *fibers[DEPTH_MAX];
    struct run run = {.w = w, .fd = fd, .rng = 0x9E3779B97F4A7C15ull, .running = w->depth};
    LOOM_ASSERT(w->depth <= DEPTH_MAX);
    for (unsigned i = 0; i < w->depth; i++) {
        slots[i].run = &run;
        slots[i].buf = loom_iobuf_alloc(w->block);
        LOOM_ASSERTF(slots[i].buf != NULL, "the IO buffer pool is too small");
        memset(slots[i].buf, (int)(0xA5 + i), w->block);
    }
    struct loom_stats before, after;
    LOOM_ASSERT(loom_stats_get(0, &before) == 0);
    int64_t start = loom_clock_ns();
    /* not from loom_now_ns(): the loop's cached clock is as old as the fio run that just
     * blocked this thread, and the run would end before it starts */
    run.end_ns = start + (int64_t)seconds * LOOM_NS_PER_S;
    if (use_callbacks) {
        loom_baton_init(&run.done);
        for (unsigned i = 0; i < w->depth; i++)
            slot_start(&slots[i]);
        LOOM_ASSERT(loom_baton_wait(&run.done, LOOM_NO_DEADLINE) == 0);
        loom_baton_deinit(&run.done);
    } else {
        struct loom_fiber_attr attr = {.name = "io", .stack = LOOM_STACK_SMALL, .joinable = true};
        for (unsigned i = 0; i < w->depth; i++)
            LOOM_ASSERT(loom_spawn(&fibers[i], slot_fiber, &slots[i], &attr) == 0);
        for (unsigned i = 0; i < w->depth; i++)
            LOOM_ASSERT(loom_fiber_join(fibers[i], LOOM_NO_DEADLINE, NULL) == 0);
    }
    double elapsed_s = (double)(loom_clock_ns() - start) / 1e9;
    LOOM_ASSERT(loom_stats_get(0, &after) == 0);
    delta->syscalls = after.syscalls - before.syscalls;
    delta->sqes_submitted = after.sqes_submitted - before.sqes_submitted;
    delta->loop_iterations = after.loop_iterations - before.loop_iterations;
    delta->sleeps = after.sleeps - before.sleeps;
    delta->cqes_reaped = run.ios; /* reused: the IOs done, for per-IO ratios */
    for (unsigned i = 0; i < w->depth; i++)
        loom_iobuf_free(slots[i].buf);
    if (run.error != 0) {
        fprintf(stderr, "file_bench: %s: %s\n", w->name, strerror(-run.error));
        return -1;
    }
    double ios = (double)run.ios;
    return w->bandwidth ? ios * w->block / elapsed_s / 1e6 : ios / elapsed_s;
}

/* ---- one fio run ---------------------------------------------------------------------------- */

/* The number after `"key" :` inside the JSON object that follows `"section" : {`. */
static bool json_number(const char *json, const char *section, const char *key, double *out)
{
    char pattern[64];
    snprintf(pattern, sizeof(pattern), "\"%s\" : {", section);
    const char *p = strstr(json, "\"jobs\"");
    p = p ? strstr(p, pattern) : NULL;
    snprintf(pattern, sizeof(pattern), "\"%s\" :", key);
    p = p ? strstr(p, pattern) : NULL;
    if (!p)
        return false;
    char *end;
    *out = strtod(p + strlen(pattern), &end);
    return end != p + strlen(pattern);
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, len = 0;
    char *text = malloc(cap);
    size_t n;
    while (text && (n = fread(text + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (len + 1 == cap)
            text = realloc(text, cap *= 2);
    }
    fclose(f);
    if (text)
        text[len] = '\0';
    return text;
}

static void format_fio_args(const struct workload *w, int seconds, char args[][96])
{
    snprintf(args[0], 96, "--rw=%s", w->fio_rw);
    snprintf(args[1], 96, "--bs=%u", w->block);
    snprintf(args[2], 96, "--iodepth=%u", w->depth);
    snprintf(args[3], 96, "--size=%llu", FILE_BYTES);
    snprintf(args[4], 96, "--runtime=%d", seconds);
    snprintf(args[5], 96, "--cpus_allowed=%d", cpu);
}

/* Runs fio on `w` (blocking the reactor, which has nothing else to do); returns its figure, or
 * -1 when it failed. */
static double fio_once(const struct workload *w, int seconds)
{
    char args[6][96], filename[700], output[700];
    format_fio_args(w, seconds, args);
    snprintf(filename, sizeof(filename), "--filename=%s", file_path);
    snprintf(output, sizeof(output), "--output=%s", fio_json_path);
    char *argv[] = {"fio",          "--name=file_bench",
                    filename,       "--ioengine=io_uring",
                    "--direct=1",   args[0],
                    args[1],        args[2],
                    args[3],        args[4],
                    "--time_based", "--numjobs=1",
                    args[5],        "--output-format=json",
                    output,         NULL};
    unlink(fio_json_path);
    pid_t pid;
    int rc = posix_spawnp(&pid, "fio", NULL, NULL, argv, environ);
    if (rc != 0) {
        fprintf(stderr, "file_bench: cannot run fio: %s\n", strerror(rc));
        return -1;
    }
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    char *json = read_text(fio_json_path);
    double value = -1;
    const char *section = w->write ? "write" : "read";
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !json ||
        !json_number(json, section, w->bandwidth ? "bw_bytes" : "iops", &value)) {
        fprintf(stderr, "file_bench: fio failed on %s (status %d); its output: %s\n", w->name,
                status, fio_json_path);
        value = -1;
    } else if (w->bandwidth) {
        value /= 1e6;
    }
    free(json);
    return value;
}

static bool selected(size_t i)
{
    return only == NULL || strstr(workloads[i].name, only) != NULL;
}

/* ---- the rounds ----------------------------------------------------------------------------- */

struct results {
    double loom[WORKLOADS][ROUNDS_MAX];
    double fio[WORKLOADS][ROUNDS_MAX];
    struct loom_stats counters[WORKLOADS]; /* of the last loom run */
    int status;
};

static int bench_main(void *arg)
{
    struct results *out = arg;
    int fd = loom_openat(AT_FDCWD, file_path, O_RDWR | O_DIRECT, 0, LOOM_NO_DEADLINE);
    if (fd < 0) {
        fprintf(stderr, "file_bench: %s: %s\n", file_path, strerror(-fd));
        return 1;
    }
    struct loom_stats ignored;
    for (size_t i = 0; i < WORKLOADS; i++) /* warm-up: stacks carved, extents cached */
        if (selected(i) && loom_once(&workloads[i], fd, 1, &ignored) < 0)
            return 1;
    for (int round = 0; round < rounds; round++) {
        for (size_t i = 0; i < WORKLOADS; i++) {
            if (!selected(i))
                continue;
            const struct workload *w = &workloads[i];
            out->loom[i][round] = loom_once(w, fd, run_seconds, &out->counters[i]);
            out->fio[i][round] = fio_once(w, run_seconds);
            if (out->loom[i][round] < 0 || out->fio[i][round] < 0)
                return 1;
            printf("file_bench: round %d %-18s loom %10.1f  fio %10.1f %s\n", round + 1, w->name,
                   out->loom[i][round], out->fio[i][round], w->bandwidth ? "MB/s" : "iops");
            fflush(stdout);
        }
    }
    loom_close(fd);
    return 0;
}

/* ---- set-up ---------------------------------------------------------------------------------- */

static bool fio_in_path(void)
{
    const char *path = getenv("PATH");
    char candidate[4096];
    while (path && *path) {
        size_t len = strcspn(path, ":");
        snprintf(candidate, sizeof(candidate), "%.*s/fio", (int)len, path);
        if (len > 0 && access(candidate, X_OK) == 0)
            return true;
        path += len + (path[len] == ':');
    }
    return false;
}

/* Creates the test file once, FILE_BYTES of non-zero data written with O_DIRECT and synced;
 * a file of the right size is reused. Returns 0, 77 when O_DIRECT is refused, or 1. */
static int prepare_file(void)
{
    mkdir("build", 0755);
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
        fprintf(stderr, "file_bench: mkdir %s: %s\n", dir, strerror(errno));
        return 1;
    }
    struct stat st;
    if (stat(file_path, &st) == 0 && (uint64_t)st.st_size == FILE_BYTES)
        return 0;
    int fd = open(file_path, O_RDWR | O_CREAT | O_TRUNC | O_DIRECT, 0644);
    if (fd < 0) {
        fprintf(stderr, "file_bench: %s: %s\n", file_path, strerror(errno));
        return errno == EINVAL ? 77 : 1;
    }
    printf("file_bench: writing the %llu MiB test file %s (once)\n", FILE_BYTES >> 20, file_path);
    fflush(stdout);
    char *buf = aligned_alloc(4096, FILL_BLOCK);
    LOOM_ASSERT(buf != NULL);
    uint64_t rng = 88172645463325252ull;
    int rc = posix_fallocate(fd, 0, (off_t)FILE_BYTES);
    for (uint64_t off = 0; rc == 0 && off < FILE_BYTES; off += FILL_BLOCK) {
        for (size_t i = 0; i < FILL_BLOCK; i += 8) {
            uint64_t v = rng_next(&rng);
            memcpy(buf + i, &v, 8);
        }
        if (pwrite(fd, buf, FILL_BLOCK, (off_t)off) != (ssize_t)FILL_BLOCK)
            rc = errno ? errno : EIO;
    }
    if (rc == 0 && fsync(fd) < 0)
        rc = errno;
    free(buf);
    close(fd);
    if (rc != 0) {
        fprintf(stderr, "file_bench: filling %s: %s\n", file_path, strerror(rc));
        unlink(file_path);
        return 1;
    }
    return 0;
}

static int parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            rounds = 1;
            run_seconds = 1;
        } else if (strcmp(argv[i], "--callbacks") == 0) {
            use_callbacks = true;
        } else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) {
            rounds = atoi(argv[++i]);
            if (rounds < 1 || rounds > ROUNDS_MAX)
                return -1;
        } else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            run_seconds = atoi(argv[++i]);
            if (run_seconds < 1 || run_seconds > 60)
                return -1;
        } else if (strcmp(argv[i], "--poll-us") == 0 && i + 1 < argc) {
            poll_us = atol(argv[++i]);
        } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
            only = argv[++i];
        } else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
            snprintf(dir, sizeof(dir), "%s", argv[++i]);
        } else {
            fprintf(
                stderr,
                "usage: file_bench [--quick] [--rounds N] [--seconds S] [--dir PATH] [--callbacks] "
                "[--only NAME]\n");
            return -1;
        }
    }
    snprintf(file_path, sizeof(file_path), "%s/file_bench.dat", dir);
    snprintf(fio_json_path, sizeof(fio_json_path), "%s/fio.json", dir);
    return 0;
}

/* The first CPU this process may run on (CPU 0 on an unrestricted machine). */
static int first_allowed_cpu(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) < 0)
        return 0;
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &set))
            return c;
    return 0;
}

static void report(const struct results *r)
{
    for (size_t i = 0; i < WORKLOADS; i++) {
        if (!selected(i))
            continue;
        const struct workload *w = &workloads[i];
        double loom_runs[ROUNDS_MAX], fio_runs[ROUNDS_MAX];
        memcpy(loom_runs, r->loom[i], sizeof(loom_runs));
        memcpy(fio_runs, r->fio[i], sizeof(fio_runs));
        double fio = bench_median_f64(fio_runs, rounds);
        bench_report(w->name, bench_median_f64(loom_runs, rounds), w->bandwidth ? "MB/s" : "iops",
                     "fio", fio, r->loom[i], rounds);
    }
    for (size_t i = 0; i < WORKLOADS; i++) {
        if (!selected(i))
            continue;
        const struct loom_stats *c = &r->counters[i];
        double ios = c->cqes_reaped > 0 ? (double)c->cqes_reaped : 1;
        printf("file_bench: %-18s per IO: %.3f syscalls, %.3f SQEs, %.3f loop iterations, "
               "%.3f sleeps\n",
               workloads[i].name, (double)c->syscalls / ios, (double)c->sqes_submitted / ios,
               (double)c->loop_iterations / ios, (double)c->sleeps / ios);
    }
}

int main(int argc, char **argv)
{
    if (parse_args(argc, argv) < 0)
        return 2;
    if (!fio_in_path()) {
        printf("file_bench: fio not found in PATH: skipped (install it, e.g. apt-get install "
               "fio)\n");
        return 0;
    }
    int rc = prepare_file();
    if (rc == 77) {
        printf("file_bench: %s refuses O_DIRECT: skipped (use --dir on a disk file system)\n", dir);
        return 0;
    }
    if (rc != 0)
        return 1;
    cpu = first_allowed_cpu();
    struct loom_config config;
    loom_config_init(&config);
    config.smp = 1;
    snprintf(config.cpuset, sizeof(config.cpuset), "%d", cpu);
    if (poll_us >= 0)
        config.poll_ns = poll_us * LOOM_NS_PER_US;
    config.stall_ns = 0; /* fio runs block the main fiber for seconds */
    config.memory_bytes = (size_t)256 << 20;
    config.io_depth = 64;                      /* above every workload's depth: never waits */
    config.io_buffer_bytes = (size_t)16 << 20; /* 8 x 1 MiB and 32 x 64 KiB fit */
    printf("file_bench: %d round(s) of %d s per side, %s, CPU %d, file %s\n", rounds, run_seconds,
           use_callbacks ? "callbacks" : "fibers", cpu, file_path);
    static struct results results;
    if (loom_run(&config, bench_main, &results) != 0) {
        fprintf(stderr, "file_bench: the benchmark failed\n");
        return 1;
    }
    report(&results);
    return 0;
}
