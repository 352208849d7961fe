/* SPDX-License-Identifier: MIT
 * crash_test.c - the partition log killed with SIGKILL at random moments, on a real file
 * system: a child process appends random batches with the fsync policy and reports each
 * acknowledged batch (offset, records, CRC, size) over a pipe; the parent kills it, reopens the
 * log and checks that every acknowledged batch is there, identical and CRC-valid, offsets dense
 * from 0, and the torn tail cut. The next cycle's child appends to the same log, so the log
 * grows across cycles and recovery runs again and again (some cycles skip the parent's check,
 * so the child's own open recovers the tail, and some kills land in that recovery).
 *
 * The binary re-executes itself for the child: `crash_test child DIR SEED`, reports on fd 3.
 * CRASH_CYCLES=N overrides the cycle count (default 200, scaled by LOOM_TEST_SCALE);
 * CRASH_SEED=N the seed of the whole run (printed at start and in every failure).
 *
 * LOOM_TEST_TAGS: no-valgrind timeout=300
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <loom/loom.h>

#include "harness.h"
#include "log/test_random.h"
#include "turbine/batch.h"
#include "turbine/log.h"

#define REPORT_FD     3
#define FIBERS_MAX    4
#define BATCH_MAX     (60 * 1024) /* under a quarter of the smallest staging buffer */
#define RECORDS_MAX   40
#define BIG_VALUE     (40 * 1024)
#define FRESH_EVERY   40                   /* cycles between fresh directories, on average */
#define LOG_BYTES_MAX ((uint64_t)64 << 20) /* start over past this much log */

enum report_kind { REPORT_OPENED = 1, REPORT_ACKED = 2 };

/* One message child -> parent, written whole (24 bytes < PIPE_BUF: atomic). */
struct report {
    int64_t offset;  /* ACKED: base offset; OPENED: the end offset after recovery */
    int32_t records; /* ACKED: records in the batch */
    uint32_t crc;    /* ACKED: the batch's CRC-32C field */
    uint32_t size;   /* ACKED: batch bytes; OPENED: bytes cut from a torn tail */
    uint32_t kind;   /* enum report_kind */
};
_Static_assert(sizeof(struct report) == 24, "reports are 24 bytes");

/* The log configuration of a directory; derived from the directory's seed so that every
 * process opening it (children and parent) agrees. */
static struct turbine_log_config config_for(const char *dir, uint64_t dir_seed)
{
    uint64_t rng = dir_seed;
    struct turbine_log_config c;
    turbine_log_config_init(&c);
    c.dir = dir;
    c.segment_bytes = rand_below(&rng, 2) ? 64 * 1024 : 256 * 1024;
    c.prealloc_bytes = 256 * 1024;
    c.write_buffer_bytes = rand_below(&rng, 2) ? 256 * 1024 : 1024 * 1024;
    c.index_interval_bytes = rand_below(&rng, 2) ? 4096 : 512;
    if (rand_below(&rng, 3) == 0)
        c.max_unflushed_bytes = 4096;
    return c;
}

/* ---- the child: appends until killed ------------------------------------------------------ */

struct child {
    struct turbine_log *log;
    uint64_t seed;
};

struct appender {
    struct child *child;
    uint64_t rng;
    uint32_t id;
};

/* The batches the appenders write (test_random.h). */
static const struct batch_shape shape = {.records_max = RECORDS_MAX,
                                         .reserve = 1024,
                                         .big_one_in = 50,
                                         .big_min = 4096,
                                         .big_max = BIG_VALUE};

static void report_write(const struct report *r)
{
    ssize_t n;
    do
        n = write(REPORT_FD, r, sizeof(*r));
    while (n < 0 && errno == EINTR);
    CHECK_EQ(n, (ssize_t)sizeof(*r));
}

static int appender_main(void *arg)
{
    struct appender *a = arg;
    static uint8_t batches[FIBERS_MAX][BATCH_MAX];
    uint8_t *batch = batches[a->id];
    for (uint32_t seq = 0;; seq++) {
        size_t size = random_batch(&a->rng, &shape, a->child->seed, a->id, seq, batch, BATCH_MAX);
        int64_t offset =
            turbine_log_append(a->child->log, batch, size, TURBINE_DURABLE_FSYNC, LOOM_NO_DEADLINE);
        if (offset < 0) {
            fprintf(stderr, "child seed %" PRIu64 ": append: %s\n", a->child->seed,
                    strerror((int)-offset));
            _exit(TEST_EXIT_FAIL);
        }
        struct turbine_batch_info info;
        CHECK_EQ(turbine_batch_validate(batch, size, &info), TURBINE_BATCH_OK);
        struct report r = {.offset = offset,
                           .records = info.header.records_count,
                           .crc = info.header.crc,
                           .size = (uint32_t)size,
                           .kind = REPORT_ACKED};
        report_write(&r);
    }
    return 0;
}

struct child_args {
    const char *dir;
    uint64_t dir_seed;
    uint64_t seed;
};

static int child_main(void *arg)
{
    struct child_args *args = arg;
    struct turbine_log_config c = config_for(args->dir, args->dir_seed);
    struct child child = {.seed = args->seed};
    int rc = turbine_log_open(&c, &child.log);
    if (rc < 0) {
        fprintf(stderr, "child seed %" PRIu64 ": open: %s\n", args->seed, strerror(-rc));
        return TEST_EXIT_FAIL;
    }
    struct turbine_log_stats st;
    turbine_log_stats_get(child.log, &st);
    struct report opened = {.offset = turbine_log_end_offset(child.log),
                            .size = (uint32_t)st.recovered_torn,
                            .kind = REPORT_OPENED};
    report_write(&opened);
    uint64_t rng = args->seed;
    static struct appender ap[FIBERS_MAX];
    unsigned fibers = 1 + (unsigned)rand_below(&rng, FIBERS_MAX);
    for (unsigned f = 0; f < fibers; f++) {
        ap[f] = (struct appender){.child = &child, .rng = splitmix(&rng), .id = f};
        CHECK_EQ(loom_spawn(NULL, appender_main, &ap[f], NULL), 0);
    }
    /* until killed (the parent always kills; the alarm ends an orphan) */
    for (;;)
        loom_sleep(LOOM_NS_PER_S);
    return 0;
}

static int run_child(const char *dir, uint64_t dir_seed, uint64_t seed)
{
    alarm(60);
    struct child_args args = {.dir = dir, .dir_seed = dir_seed, .seed = seed};
    struct loom_config config;
    test_config(&config, 1);
    config.io_buffer_bytes = (size_t)8 << 20;
    return loom_run(&config, child_main, &args);
}

/* ---- the parent ----------------------------------------------------------------------------- */

struct expect {
    int64_t offset;
    int32_t records;
    uint32_t crc;
    uint32_t size;
};

struct run {
    uint64_t seed; /* of the whole run */
    char root[256];
    char dir[300];
    uint64_t dir_seed;
    int dir_count;
    int cycle;
    struct expect *expect; /* acknowledged or seen by a check; sorted by the check */
    size_t expect_count, expect_cap;
    int64_t end_seen; /* log end offset at the last check */
    /* totals */
    uint64_t acked, verified, torn_bytes, torn_cuts, child_torn_bytes, kills_early, checks;
    uint64_t log_bytes;
    uint64_t opened; /* children that reported their open */
    int64_t open_us; /* their time from fork to the report, summed */
    int64_t child_start_us;
};

static struct run run;

#define FAILF(...)                                                                                 \
    do {                                                                                           \
        fprintf(stderr, "crash_test seed %" PRIu64 " cycle %d dir %s: ", run.seed, run.cycle,      \
                run.dir);                                                                          \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        _exit(TEST_EXIT_FAIL);                                                                     \
    } while (0)

static void expect_add(const struct expect *e)
{
    if (run.expect_count == run.expect_cap) {
        run.expect_cap = run.expect_cap ? run.expect_cap * 2 : 1024;
        run.expect = realloc(run.expect, run.expect_cap * sizeof(*run.expect));
        CHECK(run.expect != NULL);
    }
    run.expect[run.expect_count++] = *e;
}

static int expect_cmp(const void *a, const void *b)
{
    const struct expect *x = a, *y = b;
    return (x->offset > y->offset) - (x->offset < y->offset);
}

/* Sorts the expectations and merges duplicates, which must agree. */
static void expect_normalize(void)
{
    if (run.expect_count) /* qsort(NULL, 0) is undefined */
        qsort(run.expect, run.expect_count, sizeof(*run.expect), expect_cmp);
    size_t out = 0;
    for (size_t i = 0; i < run.expect_count; i++) {
        const struct expect *e = &run.expect[i];
        if (out > 0 && run.expect[out - 1].offset == e->offset) {
            const struct expect *p = &run.expect[out - 1];
            if (p->crc != e->crc || p->size != e->size || p->records != e->records)
                FAILF("offset %" PRId64 " was acknowledged (or seen) as two different batches: "
                      "crc %08x size %u vs crc %08x size %u",
                      e->offset, p->crc, p->size, e->crc, e->size);
            continue;
        }
        run.expect[out++] = *e;
    }
    run.expect_count = out;
}

static void new_dir(void)
{
    snprintf(run.dir, sizeof(run.dir), "%s/p%d", run.root, run.dir_count++);
    run.dir_seed = run.seed * 1000003 + (uint64_t)run.dir_count;
    run.expect_count = 0;
    run.end_seen = 0;
}

/* Opens the log with stderr (the log's recovery messages) going to a file, shown on failure. */
static int open_quiet(const struct turbine_log_config *c, struct turbine_log **log)
{
    char path[300];
    snprintf(path, sizeof(path), "%s/open.log", run.root);
    int saved = dup(2);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(saved >= 0 && fd >= 0);
    fflush(stderr);
    dup2(fd, 2);
    close(fd);
    int rc = turbine_log_open(c, log);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    if (rc < 0) {
        char text[4096] = {0};
        fd = open(path, O_RDONLY);
        if (fd >= 0) {
            ssize_t n = read(fd, text, sizeof(text) - 1);
            (void)n;
            close(fd);
        }
        fprintf(stderr, "%s", text);
    }
    return rc;
}

/* Reads the whole log and checks it against the expectations; then everything seen becomes
 * expected (the open flushed it, so it must stay). */
static void check_log(struct turbine_log *log)
{
    static uint8_t buf[1 << 20];
    expect_normalize();
    int64_t end = turbine_log_end_offset(log);
    if (turbine_log_start_offset(log) != 0)
        FAILF("start offset %" PRId64 ", expected 0", turbine_log_start_offset(log));
    if (end < run.end_seen)
        FAILF("end offset %" PRId64 " below the %" PRId64 " seen by the last check", end,
              run.end_seen);
    size_t j = 0, seen_from = run.expect_count;
    int64_t next = 0;
    while (next < end) {
        ssize_t n = turbine_log_read(log, next, buf, sizeof(buf), 256 * 1024, end);
        if (n <= 0)
            FAILF("read at %" PRId64 " (end %" PRId64 "): %zd", next, end, n);
        for (size_t off = 0; off < (size_t)n;) {
            struct turbine_batch_info info;
            enum turbine_batch_status st =
                turbine_batch_validate(buf + off, (size_t)n - off, &info);
            if (st != TURBINE_BATCH_OK)
                FAILF("batch at offset %" PRId64 " is invalid: %s", next,
                      turbine_batch_status_str(st));
            if (info.header.base_offset != next)
                FAILF("batch with base offset %" PRId64 " where %" PRId64 " was next (a %s)",
                      info.header.base_offset, next,
                      info.header.base_offset > next ? "gap" : "duplicate");
            if (j < seen_from && run.expect[j].offset < next)
                FAILF("acknowledged batch at offset %" PRId64 " (crc %08x) is missing: lost",
                      run.expect[j].offset, run.expect[j].crc);
            if (j < seen_from && run.expect[j].offset == next) {
                const struct expect *e = &run.expect[j++];
                if (e->crc != info.header.crc || e->size != info.size ||
                    e->records != info.header.records_count)
                    FAILF("batch at offset %" PRId64 " differs from the acknowledged one: crc "
                          "%08x size %zu records %d, acknowledged crc %08x size %u records %d",
                          next, info.header.crc, info.size, info.header.records_count, e->crc,
                          e->size, e->records);
                run.verified++;
            } else {
                struct expect e = {.offset = next,
                                   .records = info.header.records_count,
                                   .crc = info.header.crc,
                                   .size = (uint32_t)info.size};
                expect_add(&e);
            }
            next += info.header.last_offset_delta + 1;
            off += info.size;
        }
    }
    if (next != end)
        FAILF("batches end at offset %" PRId64 ", the log at %" PRId64, next, end);
    if (j < seen_from)
        FAILF("acknowledged batch at offset %" PRId64 " (crc %08x) is missing past the end "
              "%" PRId64 ": lost",
              run.expect[j].offset, run.expect[j].crc, end);
    run.end_seen = end;
    run.checks++;
}

static int verify_main(void *arg)
{
    (void)arg;
    struct turbine_log_config c = config_for(run.dir, run.dir_seed);
    struct turbine_log *log;
    int rc = open_quiet(&c, &log);
    if (rc < 0)
        FAILF("open after the kill: %s", strerror(-rc));
    struct turbine_log_stats st;
    turbine_log_stats_get(log, &st);
    run.torn_bytes += st.recovered_torn;
    run.torn_cuts += st.recovered_torn > 0;
    check_log(log);
    turbine_log_stats_get(log, &st);
    run.log_bytes = st.segments * c.segment_bytes;
    rc = turbine_log_close(log);
    if (rc < 0)
        FAILF("close: %s", strerror(-rc));
    return 0;
}

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Reads whole reports from fd; keeps a partial one in `pending`. Returns false at EOF. */
static bool reports_read(int fd, uint8_t *pending, size_t *pending_len)
{
    uint8_t chunk[4096];
    memcpy(chunk, pending, *pending_len);
    ssize_t n = read(fd, chunk + *pending_len, sizeof(chunk) - *pending_len);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return true;
    if (n <= 0)
        return false;
    size_t have = *pending_len + (size_t)n, off = 0;
    for (; have - off >= sizeof(struct report); off += sizeof(struct report)) {
        struct report r;
        memcpy(&r, chunk + off, sizeof(r));
        if (r.kind == REPORT_ACKED) {
            struct expect e = {
                .offset = r.offset, .records = r.records, .crc = r.crc, .size = r.size};
            expect_add(&e);
            run.acked++;
        } else if (r.kind == REPORT_OPENED) {
            run.child_torn_bytes += r.size;
            run.opened++;
            run.open_us += now_us() - run.child_start_us;
            if (r.offset < run.end_seen)
                FAILF("the child opened the log at end offset %" PRId64 ", below the %" PRId64
                      " checked",
                      r.offset, run.end_seen);
        } else {
            FAILF("bad report kind %u", r.kind);
        }
    }
    *pending_len = have - off;
    memcpy(pending, chunk + off, *pending_len);
    return true;
}

/* One cycle: a child appends until killed `kill_us` after its start, or after it reported its
 * open when `after_open`. */
static void cycle_child(const char *self, uint64_t child_seed, int64_t kill_us, bool after_open)
{
    int pipefd[2];
    CHECK_EQ(pipe2(pipefd, O_CLOEXEC), 0);
    char seed_text[32], dir_seed_text[32], log_path[300];
    snprintf(seed_text, sizeof(seed_text), "%" PRIu64, child_seed);
    snprintf(dir_seed_text, sizeof(dir_seed_text), "%" PRIu64, run.dir_seed);
    snprintf(log_path, sizeof(log_path), "%s/child.log", run.root);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    CHECK_GE(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int devnull = open("/dev/null", O_RDONLY);
        int out = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (devnull < 0 || out < 0)
            _exit(127);
        dup2(devnull, 0);
        dup2(out, 1);
        dup2(out, 2);
        dup2(pipefd[1], REPORT_FD); /* without O_CLOEXEC */
        char *argv[] = {(char *)self, "child", run.dir, dir_seed_text, seed_text, NULL};
        /* the running binary even if a build replaced the file meanwhile */
        execv("/proc/self/exe", argv);
        fprintf(stderr, "exec %s: %s\n", self, strerror(errno));
        _exit(127);
    }
    close(pipefd[1]);
    int64_t start = now_us(), kill_at = after_open ? INT64_MAX : start + kill_us;
    run.child_start_us = start;
    uint64_t opened = run.opened;
    uint8_t pending[sizeof(struct report)];
    size_t pending_len = 0;
    bool eof = false, killed = false;
    while (!eof) {
        if (after_open && kill_at == INT64_MAX && run.opened > opened)
            kill_at = now_us() + kill_us;
        if (kill_at == INT64_MAX && now_us() - start > 20 * 1000000)
            FAILF("the child (seed %" PRIu64 ") did not open the log in 20 s", child_seed);
        int64_t left = kill_at == INT64_MAX ? 100000 : kill_at - now_us();
        if (!killed && left <= 0) {
            kill(pid, SIGKILL);
            killed = true;
        }
        int timeout_ms = killed ? 1000 : (int)((left + 999) / 1000);
        struct pollfd pfd = {.fd = pipefd[0], .events = POLLIN};
        int rc = poll(&pfd, 1, timeout_ms);
        if (rc < 0 && errno != EINTR)
            FAILF("poll: %s", strerror(errno));
        if (rc > 0)
            eof = !reports_read(pipefd[0], pending, &pending_len);
    }
    close(pipefd[0]);
    if (!killed)
        kill(pid, SIGKILL); /* it closed the pipe: it ended on its own */
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!killed || !WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) {
        char text[4096] = {0};
        int fd = open(log_path, O_RDONLY);
        if (fd >= 0) {
            ssize_t n = read(fd, text, sizeof(text) - 1);
            (void)n;
            close(fd);
        }
        FAILF("the child (seed %" PRIu64 ") ended by itself, status 0x%x:\n%s", child_seed, status,
              text);
    }
    if (pending_len != 0)
        FAILF("a torn report of %zu bytes (reports are written whole)", pending_len);
}

static uint64_t env_u64(const char *name, uint64_t dflt)
{
    const char *v = getenv(name);
    return v && *v ? strtoull(v, NULL, 0) : dflt;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "child") == 0)
        return run_child(argv[2], strtoull(argv[3], NULL, 0), strtoull(argv[4], NULL, 0));
    run.seed = env_u64("CRASH_SEED", (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20));
    int cycles = (int)env_u64("CRASH_CYCLES", (uint64_t)test_scale(200));
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    CHECK_GT(n, 0);
    self[n] = '\0';
    const char *base = getenv("TMPDIR");
    snprintf(run.root, sizeof(run.root), "%s/turbine_crash_test.XXXXXX",
             base && *base ? base : "/tmp");
    CHECK(mkdtemp(run.root) != NULL);
    printf("crash_test: seed %" PRIu64 " (CRASH_SEED=%" PRIu64 " replays the schedule), %d "
           "cycles in %s\n",
           run.seed, run.seed, cycles, run.root);
    fflush(stdout);
    struct loom_config config;
    test_config(&config, 1);
    config.io_buffer_bytes = (size_t)8 << 20;
    uint64_t rng = run.seed;
    int64_t t0 = now_us();
    new_dir();
    for (run.cycle = 0; run.cycle < cycles; run.cycle++) {
        if (run.cycle > 0 && (rand_below(&rng, FRESH_EVERY) == 0 || run.log_bytes > LOG_BYTES_MAX))
            new_dir();
        /* when to kill: very early (exec, start-up), during the child's open (recovery), or
         * 1-50 ms into its appends */
        uint64_t pick = rand_below(&rng, 10);
        bool after_open = pick >= 3;
        int64_t kill_us = pick == 0   ? (int64_t)rand_below(&rng, 2000)
                          : pick <= 2 ? 2000 + (int64_t)rand_below(&rng, 28000)
                                      : 1000 + (int64_t)rand_below(&rng, 49000);
        run.kills_early += pick == 0;
        cycle_child(self, splitmix(&rng), kill_us, after_open);
        /* most cycles check; the others leave the torn tail to the next child's recovery */
        if (rand_below(&rng, 4) != 0 || run.cycle == cycles - 1) {
            int rc = loom_run(&config, verify_main, NULL);
            if (rc != 0)
                FAILF("the check failed: %d", rc);
        }
    }
    double secs = (double)(now_us() - t0) / 1e6;
    printf("crash_test: %d cycles (%" PRIu64 " killed within 2 ms) in %d directories, %.1f s: "
           "%" PRIu64 " batches acknowledged, %" PRIu64 " acknowledged batches verified in %" PRIu64
           " checks, %" PRIu64 " torn bytes cut by %" PRIu64 " checks' opens (%" PRIu64
           " more by the children's); %" PRIu64 " children opened the log, in %.1f ms on average\n",
           cycles, run.kills_early, run.dir_count, secs, run.acked, run.verified, run.checks,
           run.torn_bytes, run.torn_cuts, run.child_torn_bytes, run.opened,
           run.opened ? (double)run.open_us / (double)run.opened / 1000.0 : 0.0);
    free(run.expect);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", run.root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", run.root);
    return 0;
}
