/* SPDX-License-Identifier: MIT
 * cache_test.c - the per-core page cache under the log: views lend the cache's own memory (two
 * views of the same bytes share pointers, and they equal what turbine_log_read copies), the
 * tail is served from the pages it was appended into (hits, no misses), cold reads load pages
 * and later hit, CLOCK evicts within the budget but never a pinned page, readers are refused
 * beyond their share and recover after releases, a view taken on one core is released from
 * another, a default cache is made on first use and freed after the last log and view, and a
 * segment deleted by retention while a reader waits for one of its pages stays open for it, and
 * a reader following the tail never mistakes a batch the written end lies inside for damage.
 *
 * LOOM_TEST_TAGS: tsan timeout=120
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <loom/loom.h>

#include "harness.h"
#include "turbine/batch.h"
#include "turbine/cache.h"
#include "turbine/log.h"

static char root[256];
static int dir_seq;

static void new_dir(char *out, size_t size)
{
    snprintf(out, size, "%s/p%d", root, dir_seq++);
}

/* A batch of one record of `value_size` bytes whose value bytes all equal (tag & 0xff). */
static size_t make_batch(void *buf, size_t cap, uint32_t tag, int value_size)
{
    static char value[256 * 1024];
    CHECK_LE((size_t)value_size, sizeof(value));
    memset(value, (int)(tag & 0xff), (size_t)value_size);
    struct turbine_record_in rec = {.timestamp = 1000 + tag,
                                    .key = NULL,
                                    .key_size = -1,
                                    .value = value,
                                    .value_size = value_size};
    struct turbine_batch_params params = {
        .producer_id = -1, .producer_epoch = -1, .base_sequence = -1};
    int64_t size = turbine_batch_encode(buf, cap, &params, &rec, 1);
    CHECK_GT(size, 0);
    return (size_t)size;
}

static struct turbine_log_config config_for(const char *dir)
{
    struct turbine_log_config c;
    turbine_log_config_init(&c);
    c.dir = dir;
    c.prealloc_bytes = 1 << 20;
    c.write_buffer_bytes = 128 * 1024;
    c.segment_bytes = 4 << 20;
    return c;
}

static struct turbine_cache_stats stats(void)
{
    struct turbine_cache_stats s;
    CHECK_EQ(turbine_cache_stats_get(&s), 0);
    return s;
}

/* Flattens a view into buf; returns its bytes. */
static size_t flatten(const struct turbine_view *v, char *buf, size_t cap)
{
    size_t at = 0;
    for (unsigned i = 0; i < v->count; i++) {
        CHECK_LE(at + v->iov[i].iov_len, cap);
        memcpy(buf + at, v->iov[i].iov_base, v->iov[i].iov_len);
        at += v->iov[i].iov_len;
    }
    CHECK_EQ(at, v->bytes);
    return at;
}

/* Appends `n` batches of `value_size` byte values, written. */
static void fill(struct turbine_log *log, int n, int value_size)
{
    static char batch[300 * 1024];
    for (int i = 0; i < n; i++) {
        size_t size = make_batch(batch, sizeof(batch), (uint32_t)i, value_size);
        CHECK_GE(turbine_log_append(log, batch, size, TURBINE_DURABLE_WRITTEN, LOOM_NO_DEADLINE),
                 0);
    }
}

/* Views lend cache memory; the tail is hot; cold reads miss once. */
static void test_lend_and_hit(void)
{
    struct turbine_cache_config cc;
    turbine_cache_config_init(&cc);
    cc.bytes = 4 << 20;
    CHECK_EQ(turbine_cache_init(&cc), 0);
    CHECK_EQ(turbine_cache_init(&cc), -EEXIST);
    char dir[300];
    new_dir(dir, sizeof(dir));
    struct turbine_log_config c = config_for(dir);
    struct turbine_log *log;
    CHECK_EQ(turbine_log_open(&c, &log), 0);
    CHECK_EQ(turbine_cache_fini(), -EBUSY);
    fill(log, 100, 3000); /* about 300 KB: several pages, all appended into the cache */
    struct turbine_log_stats ls;
    turbine_log_stats_get(log, &ls);
    CHECK_EQ(ls.size, ls.bytes); /* the batches, not the preallocated file */
    uint64_t size = ls.size;
    struct turbine_cache_stats before = stats();

    static char copy[1 << 20], lent[1 << 20];
    int64_t end = turbine_log_end_offset(log);
    ssize_t n = turbine_log_read(log, 0, copy, sizeof(copy), sizeof(copy), end);
    CHECK_GT(n, 0);
    struct turbine_view v1, v2;
    turbine_view_init(&v1);
    turbine_view_init(&v2);
    CHECK_EQ(turbine_log_read_view(log, 0, sizeof(copy), end, &v1), n);
    CHECK_EQ(v1.next_offset, end);
    CHECK_GT(v1.count, 1u); /* it spans pages */
    CHECK_EQ(v1.pinned_bytes % (64 * 1024), 0u);
    CHECK_EQ(flatten(&v1, lent, sizeof(lent)), (size_t)n);
    CHECK(memcmp(copy, lent, (size_t)n) == 0);
    /* the same bytes, the same memory: nothing was copied for either view */
    CHECK_EQ(turbine_log_read_view(log, 0, sizeof(copy), end, &v2), n);
    CHECK_EQ(v2.count, v1.count);
    for (unsigned i = 0; i < v1.count; i++)
        CHECK(v1.iov[i].iov_base == v2.iov[i].iov_base);
    struct turbine_cache_stats after = stats();
    CHECK_EQ(after.misses, before.misses); /* the tail came from the pages it went into */
    CHECK_GT(after.hits, before.hits);
    CHECK_GT(after.pinned, before.pinned);
    turbine_view_release(&v1);
    turbine_view_release(&v2);
    CHECK_EQ(stats().pinned, before.pinned);

    /* max_bytes: whole batches, the first one even when larger */
    ssize_t n1 = turbine_log_read_view(log, 5, 10, end, &v1);
    CHECK_GT(n1, 10);
    CHECK_EQ((size_t)n1, v1.bytes);
    CHECK_EQ(v1.next_offset, 6);
    turbine_view_release(&v1);
    CHECK_EQ(turbine_log_read_view(log, end, 1000, end, &v1), 0);
    CHECK_EQ(turbine_log_read_view(log, end + 1, 1000, end + 1, &v1), -ERANGE);

    /* reopen: the first read of each page misses, the second hits */
    CHECK_EQ(turbine_log_close(log), 0);
    CHECK_EQ(turbine_log_open(&c, &log), 0);
    turbine_log_stats_get(log, &ls);
    CHECK_EQ(ls.size, size);
    before = stats();
    CHECK_EQ(turbine_log_read_view(log, 0, sizeof(copy), end, &v1), n);
    CHECK_EQ(flatten(&v1, lent, sizeof(lent)), (size_t)n);
    CHECK(memcmp(copy, lent, (size_t)n) == 0);
    turbine_view_release(&v1);
    after = stats();
    uint64_t pages = ((uint64_t)n + 65535) / 65536;
    CHECK_GE(after.misses - before.misses, pages);
    CHECK_LE(after.misses - before.misses, pages + 1);
    before = after;
    CHECK_EQ(turbine_log_read(log, 0, copy, sizeof(copy), sizeof(copy), end), n);
    CHECK_EQ(stats().misses, before.misses);
    CHECK_EQ(turbine_log_close(log), 0);
    CHECK_EQ(turbine_cache_fini(), 0);
    CHECK_EQ(turbine_cache_fini(), -ENOENT);
}

/* A log four times the cache: reads evict, pinned pages survive, readers get their share. */
static void test_evict_and_pins(void)
{
    struct turbine_cache_config cc;
    turbine_cache_config_init(&cc);
    cc.bytes = 1 << 20; /* 16 pages of 64 KiB */
    CHECK_EQ(turbine_cache_init(&cc), 0);
    char dir[300];
    new_dir(dir, sizeof(dir));
    struct turbine_log_config c = config_for(dir);
    c.write_buffer_bytes = 256 * 1024;
    struct turbine_log *log;
    CHECK_EQ(turbine_log_open(&c, &log), 0);
    fill(log, 64, 64 * 1024 - 200); /* 64 batches of almost a page each */
    int64_t end = turbine_log_end_offset(log);
    CHECK_EQ(end, 64);
    CHECK_GT(stats().evictions, 0u); /* the writer went through the cache more than once */

    /* pin batch 3's pages, then read the whole log twice over */
    struct turbine_view pinned;
    turbine_view_init(&pinned);
    CHECK_GT(turbine_log_read_view(log, 3, 1, end, &pinned), 0);
    static char want[128 * 1024], got[128 * 1024];
    size_t wn = flatten(&pinned, want, sizeof(want));
    const void *where = pinned.iov[0].iov_base;
    uint64_t ev0 = stats().evictions;
    static char buf[128 * 1024];
    for (int round = 0; round < 2; round++)
        for (int64_t o = 0; o < end; o++) {
            ssize_t n = turbine_log_read(log, o, buf, sizeof(buf), 1, end);
            CHECK_GT(n, 0);
            struct turbine_batch_info info;
            CHECK_EQ(turbine_batch_validate(buf, (size_t)n, &info), TURBINE_BATCH_OK);
            CHECK_EQ(info.header.base_offset, o);
        }
    CHECK_GT(stats().evictions - ev0, 64u);
    CHECK(pinned.iov[0].iov_base == where);
    CHECK_EQ(flatten(&pinned, got, sizeof(got)), wn);
    CHECK(memcmp(want, got, wn) == 0);
    turbine_view_release(&pinned);

    /* readers may pin three quarters of the pages: 12 of 16 */
    struct turbine_view views[16];
    int held = 0;
    ssize_t r = 0;
    for (int64_t o = 0; o < end && held < 16; o++) {
        turbine_view_init(&views[held]);
        r = turbine_log_read_view(log, o, 1, end, &views[held]);
        if (r < 0)
            break;
        held++;
    }
    CHECK_EQ(r, -ENOBUFS);
    CHECK_GE(held, 5);
    CHECK_LE(stats().pinned, 12u);
    CHECK_GT(stats().pin_refused, 0u);
    /* appends still find pages */
    fill(log, 4, 1000);
    for (int i = 0; i < held; i++)
        turbine_view_release(&views[i]);
    struct turbine_view v;
    turbine_view_init(&v);
    CHECK_GT(turbine_log_read_view(log, 0, 1, end, &v), 0);
    turbine_view_release(&v);
    CHECK_EQ(turbine_log_close(log), 0);
    CHECK_EQ(turbine_cache_fini(), 0);
}

/* ---- a view from core 0's log, read and released on core 1 ---------------------------------- */

struct remote {
    struct turbine_log *log;
    struct turbine_view view;
    int64_t end;
    struct loom_baton released;
    unsigned done_core;
};

static int lend_on_owner(void *arg)
{
    struct remote *r = arg;
    CHECK_EQ(loom_core_id(), 0u);
    ssize_t n = turbine_log_read_view(r->log, 0, 1 << 20, r->end, &r->view);
    return n < 0 ? (int)n : 0;
}

static void released(struct turbine_view *v)
{
    struct remote *r = (struct remote *)((char *)v - offsetof(struct remote, view));
    r->done_core = loom_core_id();
    loom_baton_post(&r->released);
}

static int reader_core1(void *arg)
{
    struct remote *r = arg;
    CHECK_EQ(loom_core_id(), 1u);
    turbine_view_init(&r->view);
    CHECK_EQ(loom_invoke_on(0, lend_on_owner, r, LOOM_NO_DEADLINE), 0);
    CHECK_GT(r->view.bytes, 0u);
    CHECK_EQ(r->view.next_offset, r->end);
    /* every batch is intact when read from this core */
    static char buf[1 << 20];
    size_t n = flatten(&r->view, buf, sizeof(buf));
    int64_t next = 0;
    for (size_t off = 0; off < n;) {
        struct turbine_batch_info info;
        CHECK_EQ(turbine_batch_validate(buf + off, n - off, &info), TURBINE_BATCH_OK);
        CHECK_EQ(info.header.base_offset, next);
        next++;
        off += info.size;
    }
    CHECK_EQ(next, r->end);
    loom_baton_init(&r->released);
    turbine_view_release_remote(&r->view, released);
    CHECK_EQ(loom_baton_wait(&r->released, LOOM_NO_DEADLINE), 0);
    loom_baton_deinit(&r->released);
    CHECK_EQ(r->done_core, 1u);
    CHECK_EQ(r->view.npages, 0u);
    return 0;
}

static void test_remote_release(void)
{
    if (loom_core_count() < 2) {
        printf("  (one core: no cross-core release)\n");
        return;
    }
    char dir[300];
    new_dir(dir, sizeof(dir));
    struct turbine_log_config c = config_for(dir);
    struct turbine_log *log;
    CHECK_EQ(turbine_log_open(&c, &log), 0); /* makes core 0's default cache */
    fill(log, 50, 2000);
    uint64_t pinned = stats().pinned;
    struct remote r = {.log = log, .end = turbine_log_end_offset(log)};
    CHECK_EQ(loom_invoke_on(1, reader_core1, &r, LOOM_NO_DEADLINE), 0);
    CHECK_EQ(stats().pinned, pinned);

    /* a view outlives its log: the default cache goes with the last of both */
    struct turbine_view v;
    turbine_view_init(&v);
    CHECK_GT(turbine_log_read_view(log, 0, 1 << 20, r.end, &v), 0);
    static char before[1 << 20], after[1 << 20];
    size_t n = flatten(&v, before, sizeof(before));
    CHECK_EQ(turbine_log_close(log), 0);
    CHECK_EQ(stats().logs, 0u);
    CHECK_EQ(flatten(&v, after, sizeof(after)), n);
    CHECK(memcmp(before, after, n) == 0);
    turbine_view_release(&v);
    struct turbine_cache_stats s;
    CHECK_EQ(turbine_cache_stats_get(&s), -ENOENT);
}

/* ---- retention while a reader waits for a page of the segment it deletes ------------------- */

struct slow_reader {
    struct turbine_log *log;
    ssize_t n;
    int64_t first;
};

static int slow_reader_main(void *arg)
{
    struct slow_reader *r = arg;
    static char buf[1 << 20];
    r->n = turbine_log_read(r->log, 0, buf, sizeof(buf), 1, 1 << 20);
    if (r->n > 0) {
        struct turbine_batch_info info;
        CHECK_EQ(turbine_batch_validate(buf, (size_t)r->n, &info), TURBINE_BATCH_OK);
        r->first = info.header.base_offset;
    }
    return 0;
}

static void test_retention_during_read(void)
{
    char dir[300];
    new_dir(dir, sizeof(dir));
    struct turbine_log_config c = config_for(dir);
    c.segment_bytes = 256 * 1024;
    c.retention_bytes = 1; /* when applied: everything but the active segment goes */
    struct turbine_log *log;
    CHECK_EQ(turbine_log_open(&c, &log), 0);
    fill(log, 40, 20000); /* about 800 KB: four segments */
    CHECK_EQ(turbine_log_close(log), 0);
    CHECK_EQ(turbine_log_open(&c, &log), 0); /* nothing cached */
    /* every read from now on starts 100 ms late */
    struct loom_fault_rule rule = {.kinds = 1u << LOOM_IO_READ,
                                   .probability = 1.0,
                                   .action = LOOM_FAULT_DELAY,
                                   .delay_ns = 100 * 1000 * 1000};
    struct loom_fault_config fc = {.seed = 1, .rules = &rule, .rule_count = 1};
    CHECK_EQ(loom_fault_enable(&fc), 0);
    struct slow_reader r = {.log = log};
    struct loom_fiber *f;
    struct loom_fiber_attr attr = {.name = "slow reader", .joinable = true};
    CHECK_EQ(loom_spawn(&f, slow_reader_main, &r, &attr), 0);
    loom_sleep(10 * 1000 * 1000); /* the reader waits for page 0 of the first segment */
    CHECK_EQ(loom_fault_fired(), 1u);
    CHECK_EQ(r.n, 0);
    /* the segment goes (its files are unlinked) while its page is being read */
    loom_fault_disable();
    CHECK_EQ(turbine_log_apply_retention(log, 0), 3);
    CHECK_EQ(loom_fiber_join(f, LOOM_NO_DEADLINE, NULL), 0);
    /* the read began before the deletion: it got the deleted segment's first batch, intact */
    CHECK_GT(r.n, 0);
    CHECK_EQ(r.first, 0);
    static char buf[1 << 20];
    CHECK_EQ(turbine_log_read(log, 0, buf, sizeof(buf), 1, 1 << 20), -ERANGE);
    CHECK_GT(turbine_log_read(log, turbine_log_start_offset(log), buf, sizeof(buf), 1, 1 << 20), 0);
    CHECK_EQ(turbine_log_close(log), 0);
}

/* ---- readers following the tail while pieces of a batch are written ------------------------ */

struct tail_state {
    struct turbine_log *log;
    int appenders_left;
    int64_t read_to;
};

static int tail_appender(void *arg)
{
    struct tail_state *t = arg;
    static char batch[64 * 1024];
    for (int i = 0; i < 40; i++) {
        /* 40 KB batches go out in several pieces: the written end moves inside them */
        size_t size = make_batch(batch, sizeof(batch), (uint32_t)i, 40000);
        CHECK_GE(turbine_log_append(t->log, batch, size, TURBINE_DURABLE_NONE, LOOM_NO_DEADLINE),
                 0);
        if (i % 4 == 0)
            loom_yield();
    }
    t->appenders_left--;
    return 0;
}

static int tail_reader(void *arg)
{
    struct tail_state *t = arg;
    int64_t next = 0;
    for (int round = 0; t->appenders_left > 0 || next < turbine_log_end_offset(t->log); round++) {
        struct turbine_view v;
        turbine_view_init(&v);
        /* one batch at a time half of the time: an error there is not hidden by bytes before */
        ssize_t n = turbine_log_read_view(t->log, next, round % 4 ? 1 : 1 << 20, INT64_MAX, &v);
        CHECK_GE(n, 0); /* never -EUCLEAN for a batch the written end is inside */
        if (n == 0) {
            CHECK_EQ(turbine_log_wait(t->log, next, loom_deadline_in(LOOM_NS_PER_S)), 0);
            continue;
        }
        next = v.next_offset;
        turbine_view_release(&v);
    }
    t->read_to = next;
    return 0;
}

static void test_follow_tail(void)
{
    char dir[300];
    new_dir(dir, sizeof(dir));
    struct turbine_log_config c = config_for(dir);
    c.write_buffer_bytes = 512 * 1024;
    struct turbine_log *log;
    CHECK_EQ(turbine_log_open(&c, &log), 0);
    /* the log's messages go to a file for the time: a damaged-batch report would be a bug */
    char errpath[320];
    snprintf(errpath, sizeof(errpath), "%s/stderr", root);
    fflush(stderr);
    int saved = dup(2);
    int errfd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK_GE(saved, 0);
    CHECK_GE(errfd, 0);
    CHECK_GE(dup2(errfd, 2), 0);
    struct tail_state t = {.log = log, .appenders_left = 4};
    struct loom_fiber *f[5];
    struct loom_fiber_attr attr = {.name = "tail", .joinable = true};
    CHECK_EQ(loom_spawn(&f[0], tail_reader, &t, &attr), 0);
    for (int i = 1; i < 5; i++)
        CHECK_EQ(loom_spawn(&f[i], tail_appender, &t, &attr), 0);
    for (int i = 0; i < 5; i++)
        CHECK_EQ(loom_fiber_join(f[i], LOOM_NO_DEADLINE, NULL), 0);
    fflush(stderr);
    CHECK_GE(dup2(saved, 2), 0);
    close(saved);
    close(errfd);
    static char errs[4096];
    FILE *ef = fopen(errpath, "r");
    CHECK(ef != NULL);
    size_t got = fread(errs, 1, sizeof(errs) - 1, ef);
    fclose(ef);
    errs[got] = '\0';
    if (got > 0)
        test_fail_(__FILE__, __LINE__, "the log reported while followed:\n%s", errs);
    CHECK_EQ(t.read_to, 160);
    CHECK_EQ(turbine_log_close(log), 0);
}

static int test_main(void *arg)
{
    (void)arg;
    test_lend_and_hit();
    test_evict_and_pins();
    test_remote_release();
    test_retention_during_read();
    test_follow_tail();
    return 0;
}

int main(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(root, sizeof(root), "%s/turbine_cache_test.XXXXXX", base && *base ? base : "/tmp");
    CHECK(mkdtemp(root) != NULL);
    struct loom_config config;
    test_config(&config, 2);
    config.io_buffer_bytes = (size_t)8 << 20;
    int rc = loom_run(&config, test_main, NULL);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", root);
    CHECK_EQ(rc, 0);
    return 0;
}
