/* SPDX-License-Identifier: MIT
 * log_bench.c - the partition log against fio on the same file system and CPU.
 *
 *   log_append_16K        MB/s  8 fibers appending 16 KiB batches (16 records of 1 KiB) with
 *                               durability WRITTEN, no flush and no roll in the run
 *                               (max_unflushed_bytes 1 TiB, one segment of up to 4 GiB): the
 *                               write path, vs fio io_uring O_DIRECT sequential 16 KiB writes at
 *                               depth 8 (baseline=fio)
 *   log_append_16K_flushed MB/s the same appends in the default configuration, which flushes
 *                               every 8 MiB (half of max_unflushed_bytes, the recovery bound),
 *                               vs the same fio writes with an fdatasync every 8 MiB
 *                               (baseline=fio_fdatasync_8M)
 *   log_append_fsync_p50, _p99  us  one fiber appending one 4 KiB batch at a time with FSYNC
 *                               (write, then fdatasync), vs fio psync O_DIRECT 4 KiB writes with
 *                               O_DSYNC at depth 1 on a freshly fallocated file, whose
 *                               completion latency includes the flush (baseline=fio_fdatasync_*)
 *   log_append_fsync_64   MB/s  64 fibers appending 4 KiB batches with FSYNC: group commit
 *   log_read_cold         MB/s  a reopened log read from the start with turbine_log_read (1 MiB
 *                               per call), vs fio O_DIRECT sequential 64 KiB reads at depth 1
 *   log_read_hot          MB/s  the last 32 MiB read with turbine_log_read right after they
 *                               were appended (from the page cache), vs memcpy of as many bytes
 *                               between two buffers of the same sizes, best of 3 (baseline=memcpy)
 *   log_read_hot_view     MB/s  the same bytes lent with turbine_log_read_view (no copy; each
 *                               view's bytes are summed, 8 bytes per 64, so they are touched)
 *   log_lookup            1/s   reads of one batch at random offsets of the hot 32 MiB
 *   log_append_16K_percore MB/s one log per core (2 cores), 8 appenders each, as
 *                               log_append_16K_flushed, vs fio with one job per core, each on
 *                               its own file (baseline=fio_fdatasync_8M)
 * Medians of 4 rounds; each figure runs next to its fio baseline, fio first in every other round.
 * `--quick`: one short round. Data lives in build/log_bench_data (removed at the end).
 */
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <loom/loom.h>

#include "benchlib.h"
#include "turbine/batch.h"
#include "turbine/log.h"

extern char **environ;

static int rounds = 4; /* even: as many rounds start with fio as with the log */
static int seconds = 3;
static const char *data_dir = "build/log_bench_data";
static char fio_file[512], fio_json[512], log_dir[512];

/* ---- fio ---------------------------------------------------------------------------------- */

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, len = 0, n;
    char *text = malloc(cap);
    while (text && (n = fread(text + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (len + 1 == cap) {
            char *grown = realloc(text, cap *= 2);
            if (!grown) {
                free(text);
                text = NULL;
            }
            text = grown;
        }
    }
    fclose(f);
    if (text)
        text[len] = '\0';
    return text;
}

/* The number after "key" : within the first "section" : { of the first job. */
static bool json_find(const char *json, const char *section, const char *sub, const char *key,
                      double *out)
{
    char pat[80];
    const char *p = strstr(json, "\"jobs\"");
    snprintf(pat, sizeof(pat), "\"%s\" : {", section);
    p = p ? strstr(p, pat) : NULL;
    if (p && sub) {
        snprintf(pat, sizeof(pat), "\"%s\" : {", sub);
        p = strstr(p, pat);
    }
    snprintf(pat, sizeof(pat), "\"%s\" :", key);
    p = p ? strstr(p, pat) : NULL;
    if (!p)
        return false;
    char *end;
    *out = strtod(p + strlen(pat), &end);
    return end != p + strlen(pat);
}

/* Runs fio with the given job options on fio_file (its jobs share it) or, with per_job_files,
 * each job on its own file in data_dir; returns its JSON (free it) or NULL. */
static char *fio_run_files(const char *const *opts, bool per_job_files)
{
    char filename[600], output[600], runtime[32];
    if (per_job_files)
        snprintf(filename, sizeof(filename), "--directory=%s", data_dir);
    else
        snprintf(filename, sizeof(filename), "--filename=%s", fio_file);
    snprintf(output, sizeof(output), "--output=%s", fio_json);
    snprintf(runtime, sizeof(runtime), "--runtime=%d", seconds);
    const char *argv[32] = {
        "fio",   "--name=log_bench", filename,      "--direct=1",       "--size=1G",
        runtime, "--time_based",     "--numjobs=1", "--cpus_allowed=0", "--output-format=json",
        output};
    int n = 11;
    for (int i = 0; opts[i]; i++)
        argv[n++] = opts[i];
    argv[n] = NULL;
    unlink(fio_json);
    pid_t pid;
    if (posix_spawnp(&pid, "fio", NULL, NULL, (char *const *)argv, environ) != 0)
        return NULL;
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return NULL;
    return read_text(fio_json);
}

static char *fio_run(const char *const *opts)
{
    return fio_run_files(opts, false);
}

/* ---- loom side --------------------------------------------------------------------------------
 */

static size_t make_batch(void *buf, size_t cap, int records, int record_size)
{
    static char value[4096];
    struct turbine_record_in recs[64];
    for (int i = 0; i < records; i++)
        recs[i] = (struct turbine_record_in){.timestamp = 1700000000000 + i,
                                             .key_size = -1,
                                             .value = value,
                                             .value_size = record_size};
    struct turbine_batch_params p = {.producer_id = -1, .producer_epoch = -1, .base_sequence = -1};
    int64_t size = turbine_batch_encode(buf, cap, &p, recs, records);
    if (size <= 0)
        abort();
    return (size_t)size;
}

static void remove_log_dir(void)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", log_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "log_bench: could not remove %s\n", log_dir);
}

/* The log's configuration: the defaults, a 4 MiB write buffer, and max_unflushed_bytes (0: the
 * default, flushing every half of it). */
static struct turbine_log_config log_config(const char *dir, uint64_t max_unflushed)
{
    struct turbine_log_config c;
    turbine_log_config_init(&c);
    c.dir = dir;
    c.write_buffer_bytes = 4u << 20;
    if (max_unflushed)
        c.max_unflushed_bytes = max_unflushed;
    return c;
}

/* The default flush interval of a log under WRITTEN durability, in bytes. */
static uint64_t flush_every(void)
{
    struct turbine_log_config c = log_config(".", 0);
    return c.max_unflushed_bytes / 2;
}

/* A segment no run fills: the largest a segment may be, in whole MiB */
#define UNFLUSHED_SEGMENT ((uint64_t)UINT32_MAX & ~(uint64_t)((1u << 20) - 1))

/* Opens the log in log_dir; 0 for the default max_unflushed_bytes and segment_bytes. */
static struct turbine_log *open_log(uint64_t max_unflushed, uint64_t segment_bytes)
{
    struct turbine_log_config c = log_config(log_dir, max_unflushed);
    if (segment_bytes)
        c.segment_bytes = segment_bytes;
    struct turbine_log *log;
    int rc = turbine_log_open(&c, &log);
    if (rc < 0) {
        fprintf(stderr, "log_bench: open %s: %s\n", log_dir, strerror(-rc));
        exit(1);
    }
    return log;
}

struct appender {
    struct turbine_log *log;
    const void *batch;
    size_t size;
    enum turbine_durability durability;
    int64_t until;
    uint64_t bytes;
    int64_t *lat;
    size_t lat_count, lat_cap;
    struct loom_waitgroup *wg;
};

static int appender_main(void *arg)
{
    struct appender *a = arg;
    while (loom_clock_ns() < a->until) {
        int64_t t0 = loom_clock_ns();
        int64_t off =
            turbine_log_append(a->log, a->batch, a->size, a->durability, LOOM_NO_DEADLINE);
        if (off < 0) {
            fprintf(stderr, "log_bench: append: %s\n", strerror((int)-off));
            exit(1);
        }
        if (a->lat && a->lat_count < a->lat_cap)
            a->lat[a->lat_count++] = loom_clock_ns() - t0;
        a->bytes += a->size;
    }
    loom_waitgroup_done(a->wg);
    return 0;
}

/* Runs `fibers` appenders for `seconds`; returns MB/s; latencies in lat (if given). */
static double run_appenders(struct turbine_log *log, int fibers, const void *batch, size_t size,
                            enum turbine_durability d, int64_t *lat, size_t lat_cap,
                            size_t *lat_count)
{
    struct appender ap[64];
    struct loom_waitgroup wg;
    loom_waitgroup_init(&wg);
    int64_t start = loom_clock_ns();
    for (int i = 0; i < fibers; i++) {
        ap[i] = (struct appender){.log = log,
                                  .batch = batch,
                                  .size = size,
                                  .durability = d,
                                  .until = start + (int64_t)seconds * LOOM_NS_PER_S,
                                  .lat = i == 0 ? lat : NULL,
                                  .lat_cap = lat_cap,
                                  .wg = &wg};
        loom_waitgroup_add(&wg, 1);
        loom_spawn(NULL, appender_main, &ap[i], NULL);
    }
    loom_waitgroup_wait(&wg, LOOM_NO_DEADLINE);
    loom_waitgroup_deinit(&wg);
    double secs = (double)(loom_clock_ns() - start) / 1e9;
    uint64_t bytes = 0;
    for (int i = 0; i < fibers; i++)
        bytes += ap[i].bytes;
    if (lat_count)
        *lat_count = ap[0].lat_count;
    return (double)bytes / secs / 1e6;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static double percentile_us(int64_t *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof(*v), cmp_i64);
    size_t i = (size_t)(p / 100.0 * (double)(n - 1));
    return (double)v[i] / 1000.0;
}

/* Reads the whole log from its start; returns MB/s. */
static double read_through(struct turbine_log *log, int64_t from, uint64_t *bytes_out)
{
    static char *buf;
    if (!buf) { /* touched once, as memcpy_rate's buffers are: faults are not part of a read */
        buf = malloc(2u << 20);
        if (!buf) {
            fprintf(stderr, "log_bench: out of memory\n");
            exit(1);
        }
        memset(buf, 1, 2u << 20); /* not 0, as in memcpy_rate */
    }
    int64_t next = from, end = turbine_log_end_offset(log);
    uint64_t bytes = 0;
    int64_t start = loom_clock_ns();
    while (next < end) {
        ssize_t n = turbine_log_read(log, next, buf, 2u << 20, 1u << 20, end);
        if (n <= 0) {
            fprintf(stderr, "log_bench: read at %lld: %zd\n", (long long)next, n);
            exit(1);
        }
        for (size_t off = 0; off < (size_t)n;) {
            struct turbine_batch_header h;
            turbine_batch_header_decode(buf + off, &h);
            next = h.base_offset + h.last_offset_delta + 1;
            off += (size_t)h.batch_length + TURBINE_BATCH_LOG_OVERHEAD;
        }
        bytes += (uint64_t)n;
    }
    if (bytes_out)
        *bytes_out = bytes;
    return (double)bytes / ((double)(loom_clock_ns() - start) / 1e9) / 1e6;
}

/* Lends the log from `from` to its end in views of up to 1 MiB; returns MB/s. */
static double lend_through(struct turbine_log *log, int64_t from)
{
    int64_t next = from, end = turbine_log_end_offset(log);
    uint64_t bytes = 0, sum = 0;
    int64_t start = loom_clock_ns();
    while (next < end) {
        struct turbine_view v;
        turbine_view_init(&v);
        ssize_t n = turbine_log_read_view(log, next, 1u << 20, end, &v);
        if (n <= 0) {
            fprintf(stderr, "log_bench: lend at %lld: %zd\n", (long long)next, n);
            exit(1);
        }
        for (unsigned i = 0; i < v.count; i++) {
            const uint64_t *w = v.iov[i].iov_base;
            for (size_t k = 0; k + 8 <= v.iov[i].iov_len / 8; k += 8)
                sum += w[k];
        }
        next = v.next_offset;
        bytes += (uint64_t)n;
        turbine_view_release(&v);
    }
    double secs = (double)(loom_clock_ns() - start) / 1e9;
    if (sum == 42)
        printf(" ");
    return (double)bytes / secs / 1e6;
}

/* Reads one batch at random offsets in [from, end) for a second; returns reads per second. */
static double lookups(struct turbine_log *log, int64_t from, int64_t end)
{
    static char buf[64 << 10];
    uint64_t x = 0x9E3779B97F4A7C15ull, n = 0;
    int64_t start = loom_clock_ns(), stop = start + LOOM_NS_PER_S / 2;
    while (loom_clock_ns() < stop) {
        for (int i = 0; i < 256; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            int64_t o = from + (int64_t)(x % (uint64_t)(end - from));
            if (turbine_log_read(log, o, buf, sizeof(buf), 1, end) <= 0) {
                fprintf(stderr, "log_bench: lookup of %lld failed\n", (long long)o);
                exit(1);
            }
            n++;
        }
    }
    return (double)n / ((double)(loom_clock_ns() - start) / 1e9);
}

/* memcpy of `bytes` in 1 MiB calls from a 32 MiB source (as the hot reads copy); MB/s. */
static double memcpy_rate(uint64_t bytes)
{
    static char *src, *dst;
    if (!src) {
        src = malloc(32u << 20);
        dst = malloc(2u << 20);
        memset(src, 1, 32u << 20);
        memset(dst, 1, 2u << 20); /* not 0: malloc+memset 0 may become calloc, untouched */
    }
    double best = 0;
    for (int pass = 0; pass < 3; pass++) { /* the best of three: a neighbour's burst is not ours */
        int64_t start = loom_clock_ns();
        for (uint64_t done = 0; done < bytes; done += 1u << 20)
            memcpy(dst, src + done % (32u << 20), 1u << 20);
        double secs = (double)(loom_clock_ns() - start) / 1e9;
        if ((double)bytes / secs / 1e6 > best)
            best = (double)bytes / secs / 1e6;
    }
    if (dst[5] == 42)
        printf(" ");
    return best;
}

/* ---- one log per core -------------------------------------------------------------------------
 */

struct percore {
    const void *batch;
    size_t size;
    double mbps[2];
};

static int percore_main(void *arg)
{
    struct percore *pc = arg;
    unsigned core = loom_core_id();
    char dir[600];
    snprintf(dir, sizeof(dir), "%s.core%u", log_dir, core);
    struct turbine_log_config c = log_config(dir, 0);
    struct turbine_log *log;
    int rc = turbine_log_open(&c, &log);
    if (rc < 0) {
        fprintf(stderr, "log_bench: open %s: %s\n", dir, strerror(-rc));
        return rc;
    }
    pc->mbps[core] =
        run_appenders(log, 8, pc->batch, pc->size, TURBINE_DURABLE_WRITTEN, NULL, 0, NULL);
    turbine_log_close(log);
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "log_bench: could not remove %s\n", dir);
    return 0;
}

static uint64_t fio_written; /* bytes fio's last write job wrote */

/* fio's sequential 16 KiB writes at depth 8, `jobs` jobs (one per core, each on its own file),
 * with an fdatasync after every `sync_bytes` written per job (0: none); MB/s. Each job's file
 * (4 GiB, fallocated by fio) is larger than it can write in the run: every write lands in
 * blocks never written, as the log's do (a second pass over written blocks would cost less).
 * With one job and no syncs, the file stays for fio's read. */
static double fio_write_mbps(int jobs, uint64_t sync_bytes)
{
    unlink(fio_file);
    char sync[64];
    snprintf(sync, sizeof(sync), "--fdatasync=%llu", (unsigned long long)(sync_bytes / 16384));
    const char *opts[16] = {"--ioengine=io_uring", "--rw=write", "--bs=16k", "--iodepth=8",
                            "--size=4G"};
    int n = 5;
    if (jobs == 2) {
        opts[n++] = "--numjobs=2";
        opts[n++] = "--cpus_allowed=0,1";
        opts[n++] = "--cpus_allowed_policy=split";
        opts[n++] = "--group_reporting";
    }
    if (sync_bytes)
        opts[n++] = sync;
    opts[n] = NULL;
    char *json = fio_run_files(opts, jobs == 2);
    double v = -1, written = 0;
    if (!json || !json_find(json, "write", NULL, "bw_bytes", &v) ||
        !json_find(json, "write", NULL, "io_bytes", &written))
        fprintf(stderr, "log_bench: fio (write, %d job%s%s) failed\n", jobs, jobs == 1 ? "" : "s",
                sync_bytes ? ", fdatasync" : "");
    fio_written = (uint64_t)written;
    free(json);
    if (jobs == 2) {
        char path[600];
        for (int j = 0; j < jobs; j++) {
            snprintf(path, sizeof(path), "%s/log_bench.%d.0", data_dir, j);
            unlink(path);
        }
    } else if (sync_bytes) {
        unlink(fio_file);
    }
    return v / 1e6;
}

static void print_stats(struct turbine_log *log, const char *what)
{
    struct turbine_log_stats st;
    turbine_log_stats_get(log, &st);
    printf("log_bench: %s: appends %" PRIu64 ", writes %" PRIu64
           " (%.0f KiB each), flushes %" PRIu64 ", segments %" PRIu64 ", padding %.2f%%\n",
           what, st.appends, st.writes, st.writes ? (double)st.write_bytes / st.writes / 1024 : 0,
           st.flushes, st.segments,
           st.write_bytes ? 100.0 * (double)st.padding / (double)st.write_bytes : 0);
}

struct results {
    double percore[8], fio_percore[8];
    double hot_view[8], lookup[8], memcpy_hot[8];
    double append[8], fio_append[8], flushed[8], fio_flushed[8];
    double p50[8], p99[8], fio_p50[8], fio_p99[8];
    double fsync64[8];
    double cold[8], fio_cold[8], hot[8];
};
static struct results res;

static int bench_main(void *arg)
{
    (void)arg;
    static char batch16[20000], batch4[6000];
    size_t size16 = make_batch(batch16, sizeof(batch16), 16, 1000);
    size_t size4 = make_batch(batch4, sizeof(batch4), 4, 1000);
    size_t lat_cap = 1u << 20;
    int64_t *lat = malloc(lat_cap * sizeof(*lat));
    for (int r = 0; r < rounds; r++) {
        /* Each figure and its fio baseline run back to back, in alternating order: the disk
         * writes faster after a rest than after seconds of writing (fio, alternating with the
         * log: 616 MB/s first, 324-357 MB/s a minute later), so neither side may always come
         * second. */
        bool fio_first = r % 2 == 1;
        uint64_t fio_written_nf = 0; /* bytes in the file fio reads back */
        if (loom_core_count() >= 2) {
            /* one log per core, both cores at once; and fio with one job per core */
            for (int k = 0; k < 2; k++) {
                if ((k == 0) == fio_first) {
                    res.fio_percore[r] = fio_write_mbps(2, flush_every());
                    continue;
                }
                struct percore pc = {.batch = batch16, .size = size16};
                if (loom_invoke_on_all(percore_main, &pc, LOOM_NO_DEADLINE) < 0)
                    exit(1);
                res.percore[r] = pc.mbps[0] + pc.mbps[1];
            }
        }
        /* appends, WRITTEN, 8 fibers, the default configuration (a flush every
         * flush_every() bytes); and fio at depth 8 with as many fdatasyncs */
        for (int k = 0; k < 2; k++) {
            if ((k == 0) == fio_first) {
                res.fio_flushed[r] = fio_write_mbps(1, flush_every());
                continue;
            }
            remove_log_dir();
            struct turbine_log *log = open_log(0, 0);
            res.flushed[r] =
                run_appenders(log, 8, batch16, size16, TURBINE_DURABLE_WRITTEN, NULL, 0, NULL);
            print_stats(log, "flushed");
            turbine_log_close(log);
        }
        /* the same appends with no flush and no roll in the run (max_unflushed_bytes 1 TiB, one
         * segment of up to 4 GiB): the write path alone; and fio with no fdatasync */
        if (fio_first) {
            res.fio_append[r] = fio_write_mbps(1, 0);
            fio_written_nf = fio_written;
        }
        remove_log_dir();
        struct turbine_log *log = open_log((uint64_t)1 << 40, UNFLUSHED_SEGMENT);
        res.append[r] =
            run_appenders(log, 8, batch16, size16, TURBINE_DURABLE_WRITTEN, NULL, 0, NULL);
        print_stats(log, "unflushed");
        if (!fio_first) {
            res.fio_append[r] = fio_write_mbps(1, 0);
            fio_written_nf = fio_written;
        }
        /* hot reads: the last 32 MiB */
        int64_t end = turbine_log_end_offset(log);
        int64_t back = (int64_t)((32u << 20) / size16) * 16;
        uint64_t hot_bytes;
        res.hot[r] = read_through(log, end > back ? end - back : 0, &hot_bytes);
        res.hot_view[r] = lend_through(log, end > back ? end - back : 0);
        res.lookup[r] = lookups(log, end > back ? end - back : 0, end);
        res.memcpy_hot[r] = memcpy_rate(hot_bytes);
        turbine_log_close(log);
        /* cold reads: reopened */
        log = open_log(0, 0);
        uint64_t bytes;
        res.cold[r] = read_through(log, turbine_log_start_offset(log), &bytes);
        turbine_log_close(log);
        remove_log_dir();
        /* fio reads the file its unflushed write left, only as much as it wrote: the rest of the
         * file reads as zeros without a disk read */
        char fio_size[64];
        snprintf(fio_size, sizeof(fio_size), "--size=%lluM",
                 (unsigned long long)(fio_written_nf >> 20 ? fio_written_nf >> 20 : 1));
        const char *fio_r[] = {"--ioengine=io_uring", "--rw=read", "--bs=64k",
                               "--iodepth=1",         fio_size,    NULL};
        char *json = fio_run(fio_r);
        double v = -1;
        if (!json || !json_find(json, "read", NULL, "bw_bytes", &v))
            fprintf(stderr, "log_bench: fio (read) failed\n");
        res.fio_cold[r] = v / 1e6;
        free(json);

        /* FSYNC at depth 1 */
        log = open_log(0, 0);
        size_t n = 0;
        run_appenders(log, 1, batch4, size4, TURBINE_DURABLE_FSYNC, lat, lat_cap, &n);
        res.p50[r] = percentile_us(lat, n, 50);
        res.p99[r] = percentile_us(lat, n, 99);
        /* FSYNC with 64 appenders: group commit */
        res.fsync64[r] =
            run_appenders(log, 64, batch4, size4, TURBINE_DURABLE_FSYNC, NULL, 0, NULL);
        turbine_log_close(log);
        remove_log_dir();
        /* fio: a freshly fallocated file, O_DSYNC 4 KiB writes at depth 1 */
        unlink(fio_file);
        const char *fio_s[] = {"--ioengine=psync", "--rw=write",         "--bs=4k", "--iodepth=1",
                               "--sync=dsync",     "--fallocate=native", NULL};
        json = fio_run(fio_s);
        double p50 = -1, p99 = -1;
        if (!json || !json_find(json, "write", "clat_ns", "50.000000", &p50) ||
            !json_find(json, "write", "clat_ns", "99.000000", &p99))
            fprintf(stderr, "log_bench: fio (dsync) failed\n");
        res.fio_p50[r] = p50 / 1000.0;
        res.fio_p99[r] = p99 / 1000.0;
        free(json);
        unlink(fio_file);
        printf("log_bench: round %d: append %.0f MB/s (fio %.0f), flushed %.0f MB/s (fio with "
               "fdatasync %.0f)\n",
               r + 1, res.append[r], res.fio_append[r], res.flushed[r], res.fio_flushed[r]);
        printf("log_bench: round %d: fsync p50 %.0f p99 %.0f us "
               "(fio %.0f / %.0f), fsync x64 %.0f MB/s, read cold %.0f MB/s (fio %.0f), hot %.0f\n",
               r + 1, res.p50[r], res.p99[r], res.fio_p50[r], res.fio_p99[r], res.fsync64[r],
               res.cold[r], res.fio_cold[r], res.hot[r]);
        printf("log_bench: round %d: per core %.0f MB/s (fio %.0f), hot lent %.0f MB/s, memcpy "
               "%.0f MB/s, lookups %.0f/s\n",
               r + 1, res.percore[r], res.fio_percore[r], res.hot_view[r], res.memcpy_hot[r],
               res.lookup[r]);
        fflush(stdout);
    }
    free(lat);
    return 0;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            rounds = 1;
            seconds = 1;
        } else {
            fprintf(stderr, "usage: log_bench [--quick]\n");
            return 2;
        }
    }
    if (system("command -v fio >/dev/null 2>&1") != 0) {
        printf("log_bench: fio is not installed: skipped (scripts/deps.sh installs it)\n");
        return 0;
    }
    mkdir("build", 0755);
    mkdir(data_dir, 0755);
    snprintf(fio_file, sizeof(fio_file), "%s/fio.dat", data_dir);
    snprintf(fio_json, sizeof(fio_json), "%s/fio.json", data_dir);
    snprintf(log_dir, sizeof(log_dir), "%s/log", data_dir);
    struct loom_config config;
    loom_config_init(&config);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    config.smp = cpus >= 2 ? 2 : 1; /* core 0 runs everything but the per-core appends */
    snprintf(config.cpuset, sizeof(config.cpuset), cpus >= 2 ? "0,1" : "0");
    config.memory_bytes = 512u << 20;
    config.io_buffer_bytes = 16u << 20;
    config.stall_ns = 0; /* fio runs while the reactor waits for it */
    /* Appends are disk-bound: the reactor sleeps as soon as it has nothing to do, as fio does.
     * Spinning before sleeping (the default 50 us) takes the CPU from the completion work of
     * the writes here (kernel workers, and the hypervisor's disk emulation on the same host
     * CPUs): 8 appenders measured 186-213 MB/s with it against 226-256 MB/s without it, in
     * alternating runs. Waking the sleeping reactor costs far less than a write. */
    config.poll_ns = 0;
    int rc = loom_run(&config, bench_main, NULL);
    if (rc != 0)
        return rc;
    double runs[8];
#define MEDIAN(field)                                                                              \
    (memcpy(runs, res.field, sizeof(double) * (size_t)rounds), bench_median_f64(runs, rounds))
    char fio_fdatasync[64];
    snprintf(fio_fdatasync, sizeof(fio_fdatasync), "fio_fdatasync_%lluM",
             (unsigned long long)(flush_every() >> 20));
    bench_report("log_append_16K", MEDIAN(append), "MB/s", "fio", MEDIAN(fio_append), res.append,
                 rounds);
    bench_report("log_append_16K_flushed", MEDIAN(flushed), "MB/s", fio_fdatasync,
                 MEDIAN(fio_flushed), res.flushed, rounds);
    double p99 = MEDIAN(p99), fp99 = MEDIAN(fio_p99), p50 = MEDIAN(p50), fp50 = MEDIAN(fio_p50);
    bench_report("log_append_fsync_p99", p99, "us", "fio_fdatasync_p99", fp99, res.p99, rounds);
    bench_report("log_append_fsync_p50", p50, "us", "fio_fdatasync_p50", fp50, res.p50, rounds);
    bench_report("log_append_fsync_64", MEDIAN(fsync64), "MB/s", NULL, 0, res.fsync64, rounds);
    bench_report("log_read_cold", MEDIAN(cold), "MB/s", "fio", MEDIAN(fio_cold), res.cold, rounds);
    bench_report("log_read_hot", MEDIAN(hot), "MB/s", "memcpy", MEDIAN(memcpy_hot), res.hot,
                 rounds);
    bench_report("log_read_hot_view", MEDIAN(hot_view), "MB/s", NULL, 0, res.hot_view, rounds);
    bench_report("log_lookup", MEDIAN(lookup), "1/s", NULL, 0, res.lookup, rounds);
    if (res.percore[0] > 0)
        bench_report("log_append_16K_percore", MEDIAN(percore), "MB/s", fio_fdatasync,
                     MEDIAN(fio_percore), res.percore, rounds);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", data_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "log_bench: could not remove %s\n", data_dir);
    return 0;
}
