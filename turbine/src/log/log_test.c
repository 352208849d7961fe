/* SPDX-License-Identifier: MIT
 * log_test.c - the partition log on a real file system: appends under every durability,
 * offsets dense and increasing, bytes read back identical, group commit (fewer flushes than
 * appends), segment rolls and a reopen that trusts sealed indexes, index rebuild, a torn tail
 * cut at open, damage in flushed data refused (-EUCLEAN), bad input rejected whole, lookups by
 * time, readers woken by appends, (on ext4) the blocks that keep a segment's extent tree out of
 * its inode, and that no write mixes blocks written before with blocks never written.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <loom/loom.h>

#include "harness.h"
#include "turbine/batch.h"
#include "turbine/log.h"

static char root[256];
static int dir_seq;

static void new_dir(char *out, size_t size)
{
    snprintf(out, size, "%s/p%d", root, dir_seq++);
}

/* One batch of `n` records whose values carry (tag, i), timestamps from ts. */
static size_t make_batch(void *buf, size_t cap, uint32_t tag, int n, int64_t ts)
{
    struct turbine_record_in recs[64];
    char values[64][32];
    CHECK_LE(n, 64);
    for (int i = 0; i < n; i++) {
        int len = snprintf(values[i], sizeof(values[i]), "v-%u-%d", tag, i);
        recs[i] = (struct turbine_record_in){.timestamp = ts + i,
                                             .key = NULL,
                                             .key_size = -1,
                                             .value = values[i],
                                             .value_size = len};
    }
    struct turbine_batch_params params = {
        .producer_id = -1, .producer_epoch = -1, .base_sequence = -1};
    int64_t size = turbine_batch_encode(buf, cap, &params, recs, n);
    CHECK_GT(size, 0);
    return (size_t)size;
}

static struct turbine_log_config config_for(const char *dir)
{
    struct turbine_log_config c;
    turbine_log_config_init(&c);
    c.dir = dir;
    c.prealloc_bytes = 1 << 20;
    c.write_buffer_bytes = 256 * 1024;
    return c;
}

/* Reads everything from `from` and checks offsets are dense and values are tag-consistent. */
static int64_t read_all(struct turbine_log *log, int64_t from, int64_t *batches_out)
{
    static char buf[1 << 20];
    int64_t next = from, batches = 0;
    for (;;) {
        ssize_t n =
            turbine_log_read(log, next, buf, sizeof(buf), 256 * 1024, turbine_log_end_offset(log));
        CHECK_GE(n, 0);
        if (n == 0)
            break;
        for (size_t off = 0; off < (size_t)n;) {
            struct turbine_batch_info info;
            CHECK_EQ(turbine_batch_validate(buf + off, (size_t)n - off, &info), TURBINE_BATCH_OK);
            CHECK_EQ(info.header.base_offset, next);
            next += info.header.last_offset_delta + 1;
            off += info.size;
            batches++;
        }
    }
    if (batches_out)
        *batches_out = batches;
    return next;
}

/* Opens the log of `c` again and checks that it ends at `end` and reads back whole from offset
 * 0; the open's stats go to *st. Returns the open log. */
static struct turbine_log *reopen_whole(const struct turbine_log_config *c, int64_t end,
                                        struct turbine_log_stats *st)
{
    struct turbine_log *log;
    CHECK_EQ(turbine_log_open(c, &log), 0);
    turbine_log_stats_get(log, st);
    CHECK_EQ(turbine_log_end_offset(log), end);
    CHECK_EQ(read_all(log, 0, NULL), end);
    return log;
}

static void test_basic(void)
{
    char dir[300];
    new_dir(dir, sizeof(dir));
    struct turbine_log_config c = config_for(dir);
    struct turbine_log *log;
    CHECK_EQ(turbine_log_open(&c, &log), 0);
    CHECK_EQ(turbine_log_end_offset(log), 0);
    char batch[8192];
    int64_t expect = 0;
    for (int i = 0; i < 30; i++) {
        size_t size = make_batch(batch, sizeof(batch), (uint32_t)i, 1 + i % 7, 1000 + i * 10);
        enum turbine_durability d = (enum turbine_durability)(i % 3);
        int64_t off = turbine_log_append(log, batch, size, d, LOOM_NO_DEADLINE);
        CHECK_EQ(off, expect);
        expect += 1 + i % 7;
    }
    CHECK_EQ(turbine_log_end_offset(log), expect);
    CHECK_EQ(turbine_log_wait(log, expect - 1, loom_now_ns() + 5 * LOOM_NS_PER_S), 0);
    CHECK_EQ(read_all(log, 0, NULL), expect);
    /* read from the middle of a batch: the batch holding it comes first */
    static char buf[65536];
    ssize_t n = turbine_log_read(log, 2, buf, sizeof(buf), 1, expect);
    CHECK_GT(n, 0);
    struct turbine_batch_info info;
    CHECK_EQ(turbine_batch_validate(buf, (size_t)n, &info), TURBINE_BATCH_OK);
    CHECK_EQ(info.header.base_offset, 1); /* batch 1 holds offsets 1 and 2 */
    CHECK_EQ(turbine_log_read(log, expect + 1, buf, sizeof(buf), 100, expect), -ERANGE);
    CHECK_EQ(turbine_log_read(log, 0, buf, 10, 100, expect), -ENOBUFS);
    /* time lookup: batch i has timestamps from 1000 + 10 i */
    CHECK_EQ(turbine_log_offset_for_time(log, 0), 0);
    CHECK_EQ(turbine_log_offset_for_time(log, 1000 + 10 * 29 + 100), expect);
    int64_t t5 = turbine_log_offset_for_time(log, 1000 + 10 * 5);
    CHECK_GT(t5, 0);
    /* bad input: nothing appended */
    size_t size = make_batch(batch, sizeof(batch), 99, 3, 5000);
    batch[size - 1] ^= 1;
    CHECK_EQ(turbine_log_append(log, batch, size, TURBINE_DURABLE_WRITTEN, LOOM_NO_DEADLINE),
             -EBADMSG);
    CHECK_EQ(turbine_log_append(log, batch, 10, TURBINE_DURABLE_WRITTEN, LOOM_NO_DEADLINE),
             -EBADMSG);
    CHECK_EQ(turbine_log_end_offset(log), expect);
    static char big[200 * 1024];
    struct turbine_record_in r = {
        .timestamp = 1, .key_size = -1, .value = big, .value_size = 100 * 1024};
    struct turbine_batch_params params = {
        .producer_id = -1, .producer_epoch = -1, .base_sequence = -1};
    static char bigbatch[210 * 1024];
    int64_t bsize = turbine_batch_encode(bigbatch, sizeof(bigbatch), &params, &r, 1);
    CHECK_GT(bsize, 0);
    CHECK_EQ(
        turbine_log_append(log, bigbatch, (size_t)bsize, TURBINE_DURABLE_WRITTEN, LOOM_NO_DEADLINE),
        -EMSGSIZE);
    struct turbine_log_stats st;
    turbine_log_stats_get(log, &st);
    CHECK_EQ(st.appends, 30u);
    CHECK_EQ(turbine_log_close(log), 0);

    /* reopen: the same log */
    log = reopen_whole(&c, expect, &st);
    CHECK_EQ(st.recovered_torn, 0u);
    size = make_batch(batch, sizeof(batch), 100, 2, 9000);
    CHECK_EQ(turbine_log_append(log, batch, size, TURBINE_DURABLE_FSYNC, LOOM_NO_DEADLINE), expect);
    CHECK_EQ(turbine_log_close(log), 0);
}

struct appender {
    struct turbine_log *log;
    int count;
    int64_t *offsets;
    struct loom_waitgroup *wg;
    uint32_t tag;
};

static int appender_main(void *arg)
{
    struct appender *a = arg;
    char batch[4096];
    for (int i = 0; i < a->count; i++) {
        size_t size = make_batch(batch, sizeof(batch), a->tag, 4, 100);
        a->offsets[i] =
            turbine_log_append(a->log, batch, size, TURBINE_DURABLE_FSYNC, LOOM_NO_DEADLINE);
        CHECK_GE(a->offsets[i], 0);
        CHECK_GE(turbine_log_flushed_offset(a->log), a->offsets[i] + 4);
    }
    loom_waitgroup_done(a->wg);
    return 0;
}

static void test_group_commit_and_roll(void)
{
    char dir[300];
    new_dir(dir, sizeof(dir));
    struct turbine_log_config c = config_for(dir);
    c.segment_bytes = 16 * 1024; /* many segments */
    struct turbine_log *log;
    CHECK_EQ(turbine_log_open(&c, &log), 0);
    enum { FIBERS = 16 };
    int per = (int)test_scale(60);
    if (per < 30)
        per = 30; /* enough to roll several 16 KiB segments */
    struct appender ap[FIBERS];
    struct loom_waitgroup wg;
    loom_waitgroup_init(&wg);
    for (int f = 0; f < FIBERS; f++) {
        ap[f] = (struct appender){.log = log, .count = per, .wg = &wg, .tag = (uint32_t)f};
        ap[f].offsets = calloc((size_t)per, sizeof(int64_t));
        loom_waitgroup_add(&wg, 1);
        CHECK_EQ(loom_spawn(NULL, appender_main, &ap[f], NULL), 0);
    }
    CHECK_EQ(loom_waitgroup_wait(&wg, loom_now_ns() + 60 * LOOM_NS_PER_S), 0);
    loom_waitgroup_deinit(&wg);
    int64_t total = (int64_t)FIBERS * per * 4;
    CHECK_EQ(turbine_log_end_offset(log), total);
    /* every offset handed out once */
    char *seen = calloc((size_t)total, 1);
    for (int f = 0; f < FIBERS; f++) {
        for (int i = 0; i < per; i++) {
            CHECK_EQ(ap[f].offsets[i] % 4, 0);
            CHECK_EQ(seen[ap[f].offsets[i]], 0);
            seen[ap[f].offsets[i]] = 1;
        }
        free(ap[f].offsets);
    }
    free(seen);
    struct turbine_log_stats st;
    turbine_log_stats_get(log, &st);
    printf("  %d FSYNC appends by %d fibers: %" PRIu64 " writes, %" PRIu64 " flushes, %" PRIu64
           " segments\n",
           FIBERS * per, FIBERS, st.writes, st.flushes, st.segments);
    CHECK_LT(st.flushes, (uint64_t)(FIBERS * per)); /* group commit shared flushes */
    CHECK_GT(st.segments, 2u);
    int64_t batches;
    CHECK_EQ(read_all(log, 0, &batches), total);
    CHECK_EQ(batches, (int64_t)FIBERS * per);
    CHECK_EQ(turbine_log_close(log), 0);

    /* reopen: sealed segments trusted by their indexes */
    log = reopen_whole(&c, total, &st);
    CHECK_EQ(st.index_rebuilds, 0u);
    /* a read starting in a middle segment */
    CHECK_EQ(read_all(log, total / 2, NULL), total);
    CHECK_EQ(turbine_log_close(log), 0);

    /* lose the index files of the first segment: rebuilt */
    char path[400];
    snprintf(path, sizeof(path), "%s/00000000000000000000.index", dir);
    CHECK_EQ(unlink(path), 0);
    CHECK_EQ(turbine_log_open(&c, &log), 0);
    turbine_log_stats_get(log, &st);
    CHECK_EQ(st.index_rebuilds, 1u);
    CHECK_EQ(read_all(log, 0, NULL), total);
    CHECK_EQ(turbine_log_close(log), 0);
}

/* Rewrites the checkpoint as an open (crashed) log leaves it: clean -1. */
/* The partition's checkpoint file, read into text (NUL-terminated) or written from it. */
static void checkpoint_text(const char *dir, char *text, size_t size, bool write)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/checkpoint", dir);
    FILE *f = fopen(path, write ? "w" : "r");
    CHECK(f != NULL);
    if (write) {
        fputs(text, f);
    } else {
        size_t n = fread(text, 1, size - 1, f);
        text[n] = 0;
    }
    fclose(f);
}

static void mark_unclean(const char *dir)
{
    char text[256];
    checkpoint_text(dir, text, sizeof(text), false);
    char *clean = strstr(text, " clean ");
    CHECK(clean != NULL);
    strcpy(clean, " clean -1\n");
    checkpoint_text(dir, text, sizeof(text), true);
}

static void test_torn_tail_and_damage(void)
{
    char dir[300];
    new_dir(dir, sizeof(dir));
    struct turbine_log_config c = config_for(dir);
    c.write_buffer_bytes = 64 * 1024;
    c.max_unflushed_bytes = 64 * 1024; /* the recovery window */
    struct turbine_log *log;
    CHECK_EQ(turbine_log_open(&c, &log), 0);
    char batch[8192];
    int64_t end = 0;
    for (int i = 0; i < 500; i++) { /* ~95 KiB: more than the window after a damaged start */
        size_t size = make_batch(batch, sizeof(batch), (uint32_t)i, 10, 100);
        CHECK_EQ(turbine_log_append(log, batch, size, TURBINE_DURABLE_FSYNC, LOOM_NO_DEADLINE),
                 end);
        end += 10;
    }
    CHECK_EQ(turbine_log_close(log), 0);
    char path[400];
    snprintf(path, sizeof(path), "%s/00000000000000000000.log", dir);
    struct stat stb;
    CHECK_EQ(stat(path, &stb), 0);
    off_t valid = stb.st_size;
    /* a torn tail: half a batch after the valid data. After the clean close that is damage
     * (refused); as the state a crash leaves (the checkpoint of an open log), it is cut. */
    size_t size = make_batch(batch, sizeof(batch), 77, 10, 100);
    int fd = open(path, O_WRONLY);
    CHECK_GE(fd, 0);
    CHECK_EQ(pwrite(fd, batch, size / 2, valid), (ssize_t)(size / 2));
    close(fd);
    CHECK_EQ(turbine_log_open(&c, &log), -EUCLEAN);
    mark_unclean(dir);
    struct turbine_log_stats st;
    log = reopen_whole(&c, end, &st);
    CHECK_EQ(st.recovered_torn, size / 2);
    /* and appends go on where the valid data ended */
    CHECK_EQ(turbine_log_append(log, batch, size, TURBINE_DURABLE_FSYNC, LOOM_NO_DEADLINE), end);
    end += 10;
    CHECK_EQ(turbine_log_close(log), 0);
    CHECK_EQ(stat(path, &stb), 0);
    CHECK_EQ(stb.st_size, valid + (off_t)size);

    /* a flipped byte early in flushed data, valid batches far beyond: refused */
    fd = open(path, O_RDWR);
    char b;
    CHECK_EQ(pread(fd, &b, 1, 100), 1);
    b ^= 0x40;
    CHECK_EQ(pwrite(fd, &b, 1, 100), 1);
    close(fd);
    CHECK_EQ(turbine_log_open(&c, &log), -EUCLEAN);
    /* nothing was truncated by the refused open */
    CHECK_EQ(stat(path, &stb), 0);
    CHECK_EQ(stb.st_size, valid + (off_t)size);
}

/* Padding: an append that finds the partly filled last block's write in flight starts at the
 * next block. Readers, recovery after a crash and the sealed segments' check at open all step
 * over the zeros; offsets stay dense. */
static void test_padding(void)
{
    char dir[300];
    new_dir(dir, sizeof(dir));
    struct turbine_log_config c = config_for(dir);
    c.segment_bytes = 256 * 1024; /* sealed segments with gaps in them too */
    struct turbine_log *log;
    CHECK_EQ(turbine_log_open(&c, &log), 0);
    char batch[4096];
    int64_t end = 0;
    struct turbine_log_stats st = {0};
    /* until a sealed segment and the active one both hold a gap */
    uint64_t sealed_pad = 0, rolls = 0;
    for (int i = 0; i < 20000 && !(sealed_pad > 0 && st.padding > sealed_pad); i++) {
        int n = 20 + i % 40; /* 0.4-1.1 KiB: padded when the gap is at most a quarter of it */
        size_t size = make_batch(batch, sizeof(batch), (uint32_t)i, n, 100);
        CHECK_EQ(turbine_log_append(log, batch, size, TURBINE_DURABLE_NONE, LOOM_NO_DEADLINE), end);
        end += n;
        /* let the deferred write go out: the next append finds its last block in flight */
        if (i % 2 == 0) {
            CHECK_EQ(loom_nop(), 0);
            CHECK_EQ(loom_nop(), 0);
        }
        turbine_log_stats_get(log, &st);
        if (st.rolls > rolls) {
            rolls = st.rolls;
            if (sealed_pad == 0)
                sealed_pad = st.padding;
        }
    }
    printf("  padding: %" PRIu64 " bytes over %" PRIu64 " appends, %" PRIu64 " segments\n",
           st.padding, st.appends, st.segments);
    CHECK_GT(sealed_pad, 0u);
    CHECK_GT(st.padding, sealed_pad);
    CHECK_EQ(turbine_log_wait(log, end - 1, loom_now_ns() + 30 * LOOM_NS_PER_S), 0);
    CHECK_EQ(read_all(log, 0, NULL), end);
    CHECK_EQ(turbine_log_close(log), 0);
    /* a clean reopen (sealed segments checked from their last index entry) */
    log = reopen_whole(&c, end, &st);
    CHECK_EQ(turbine_log_close(log), 0);
    /* as a crash leaves it: the active segment scanned from its start */
    mark_unclean(dir);
    log = reopen_whole(&c, end, &st);
    CHECK_EQ(st.recovered_torn, 0u);
    /* lookups by time land on batches, not in a gap */
    CHECK_EQ(turbine_log_offset_for_time(log, 0), 0);
    CHECK_EQ(turbine_log_close(log), 0);
    /* the checkpoint says version 2 (segments may hold padding); 1 is read as it is, a later
     * one is refused */
    char text[256];
    checkpoint_text(dir, text, sizeof(text), false);
    CHECK_EQ(strncmp(text, "turbine-checkpoint 2 ", 21), 0);
    text[19] = '3';
    checkpoint_text(dir, text, sizeof(text), true);
    CHECK_EQ(turbine_log_open(&c, &log), -EUCLEAN);
    text[19] = '1';
    checkpoint_text(dir, text, sizeof(text), true);
    CHECK_EQ(turbine_log_open(&c, &log), 0);
    CHECK_EQ(turbine_log_end_offset(log), end);
    CHECK_EQ(turbine_log_close(log), 0);
    /* without index files every segment is scanned from its start, gaps and all */
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -f '%s'/*.index '%s'/*.timeindex", dir, dir);
    CHECK_EQ(system(cmd), 0);
    log = reopen_whole(&c, end, &st);
    CHECK_GT(st.index_rebuilds, 0u);
    CHECK_EQ(turbine_log_close(log), 0);
}

static void test_retention(void)
{
    char dir[300];
    new_dir(dir, sizeof(dir));
    struct turbine_log_config c = config_for(dir);
    c.segment_bytes = 4 * 1024;
    struct turbine_log *log;
    CHECK_EQ(turbine_log_open(&c, &log), 0);
    char batch[4096];
    int64_t end = 0;
    for (int i = 0; i < 200; i++) {
        /* timestamps: the first 100 batches are old (t = 1000 + i), the rest recent */
        int64_t ts = i < 100 ? 1000 + i : 1000000 + i;
        size_t size = make_batch(batch, sizeof(batch), (uint32_t)i, 5, ts);
        CHECK_EQ(turbine_log_append(log, batch, size, TURBINE_DURABLE_WRITTEN, LOOM_NO_DEADLINE),
                 end);
        end += 5;
    }
    struct turbine_log_stats st;
    turbine_log_stats_get(log, &st);
    uint64_t segments = st.segments;
    CHECK_GT(segments, 4u);
    /* by time: segments whose newest batch is older than 500000 go; never the active one */
    turbine_log_close(log);
    c.retention_ms = 1000000 - 500000;
    CHECK_EQ(turbine_log_open(&c, &log), 0);
    int deleted = turbine_log_apply_retention(log, 1000000);
    CHECK_GT(deleted, 0);
    int64_t start = turbine_log_start_offset(log);
    CHECK_GT(start, 0);
    CHECK_LE(start, 100 * 5); /* only old batches went */
    static char buf[65536];
    CHECK_EQ(turbine_log_read(log, start - 1, buf, sizeof(buf), 100, end), -ERANGE);
    CHECK_EQ(read_all(log, start, NULL), end);
    CHECK_EQ(turbine_log_offset_for_time(log, 0), start);
    /* by bytes: keep about 4 KiB */
    c.retention_ms = 0;
    turbine_log_close(log);
    c.retention_bytes = 4 * 1024;
    CHECK_EQ(turbine_log_open(&c, &log), 0);
    CHECK_EQ(turbine_log_start_offset(log), start); /* the checkpoint kept it */
    CHECK_GT(turbine_log_apply_retention(log, 0), 0);
    int64_t start2 = turbine_log_start_offset(log);
    CHECK_GT(start2, start);
    turbine_log_stats_get(log, &st);
    CHECK_LE(st.segments, 4u);
    CHECK_EQ(read_all(log, start2, NULL), end);
    CHECK_EQ(turbine_log_close(log), 0);
    CHECK_EQ(turbine_log_open(&c, &log), 0);
    CHECK_EQ(turbine_log_start_offset(log), start2);
    CHECK_EQ(turbine_log_end_offset(log), end);
    CHECK_EQ(turbine_log_close(log), 0);
}

/* Appends batches of 5 records (timestamps from ts + *end) until the log has rolled `rolls`
 * times in all; *end follows the log's end offset. */
static void append_until_rolls(struct turbine_log *log, int64_t *end, uint64_t rolls, int64_t ts)
{
    char batch[4096];
    struct turbine_log_stats st;
    do {
        size_t size = make_batch(batch, sizeof(batch), (uint32_t)*end, 5, ts + *end);
        CHECK_EQ(turbine_log_append(log, batch, size, TURBINE_DURABLE_WRITTEN, LOOM_NO_DEADLINE),
                 *end);
        *end += 5;
        turbine_log_stats_get(log, &st);
    } while (st.rolls < rolls);
}

/* A roll leaves the old segment's index files and the checkpoint that seals it to a fiber of
 * the log, so appends go on meanwhile; retention leaves a segment alone until its files are
 * written, and close waits for them. */
static void test_seal_in_background(void)
{
    char dir[300];
    new_dir(dir, sizeof(dir));
    struct turbine_log_config c = config_for(dir);
    c.segment_bytes = 4 * 1024;
    c.retention_ms = 1000;
    struct turbine_log *log;
    CHECK_EQ(turbine_log_open(&c, &log), 0);
    int64_t end = 0;
    append_until_rolls(log, &end, 1, 1000); /* old timestamps: past retention once rolled */
    /* no fiber ran since the roll: the old segment is not sealed yet (no checkpoint names a
     * later active segment, no index file) */
    char path[400], cp[400], text[256] = "";
    snprintf(path, sizeof(path), "%s/%020d.index", dir, 0);
    snprintf(cp, sizeof(cp), "%s/checkpoint", dir);
    CHECK_EQ(access(path, F_OK), -1);
    if (access(cp, F_OK) == 0) {
        checkpoint_text(dir, text, sizeof(text), false);
        CHECK(strstr(text, " active 0 ") != NULL);
    }
    CHECK_EQ(turbine_log_apply_retention(log, 1000000), 0);
    /* the sealer writes the index files and the checkpoint; then retention may delete it */
    text[0] = 0;
    for (int i = 0; i < 500 && (!text[0] || strstr(text, " active 0 ")); i++) {
        loom_sleep(10 * LOOM_NS_PER_MS);
        if (access(cp, F_OK) == 0)
            checkpoint_text(dir, text, sizeof(text), false);
    }
    CHECK(text[0] && strstr(text, " active 0 ") == NULL);
    CHECK_EQ(access(path, F_OK), 0);
    CHECK_EQ(turbine_log_apply_retention(log, 1000000), 1);
    CHECK_EQ(access(path, F_OK), -1);
    int64_t start = turbine_log_start_offset(log);
    CHECK_GT(start, 0);
    /* rolls right before close: close writes their files first */
    struct turbine_log_stats st;
    turbine_log_stats_get(log, &st);
    append_until_rolls(log, &end, st.rolls + 3, 1000000);
    CHECK_EQ(turbine_log_close(log), 0);
    c.retention_ms = 0;
    CHECK_EQ(turbine_log_open(&c, &log), 0);
    turbine_log_stats_get(log, &st);
    CHECK_EQ(st.index_rebuilds, 0u); /* every sealed segment had its index files */
    CHECK_EQ(turbine_log_start_offset(log), start);
    CHECK_EQ(turbine_log_end_offset(log), end);
    CHECK_EQ(read_all(log, start, NULL), end);
    CHECK_EQ(turbine_log_close(log), 0);
}

/* Random appends, reads, reopens and retention against an in-memory model of the batches. */
struct model_batch {
    int64_t base;
    int records;
    uint32_t crc;
    int64_t max_ts;
};

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void test_model(void)
{
    char dir[300];
    new_dir(dir, sizeof(dir));
    struct turbine_log_config c = config_for(dir);
    c.segment_bytes = 16 * 1024;
    c.write_buffer_bytes = 64 * 1024;
    struct turbine_log *log;
    CHECK_EQ(turbine_log_open(&c, &log), 0);
    int steps = (int)test_scale(3000);
    struct model_batch *model = calloc((size_t)steps + 1, sizeof(*model));
    int count = 0, first = 0; /* model[first .. count) are in the log */
    int64_t end = 0;
    static char batch[16384], buf[1 << 18];
    for (int step = 0; step < steps; step++) {
        unsigned op = (unsigned)(rng() % 100);
        if (op < 70) {
            int n = 1 + (int)(rng() % 20);
            int64_t ts = 1000 + step;
            size_t size = make_batch(batch, sizeof(batch), (uint32_t)step, n, ts);
            enum turbine_durability d = (enum turbine_durability)(rng() % 3);
            CHECK_EQ(turbine_log_append(log, batch, size, d, LOOM_NO_DEADLINE), end);
            struct turbine_batch_header h;
            turbine_batch_header_decode(batch, &h);
            model[count++] = (struct model_batch){end, n, h.crc, h.max_timestamp};
            end += n;
        } else if (op < 90 && count > first) {
            /* read from a random offset: the batch holding it first, then the rest in order */
            int i = first + (int)(rng() % (uint64_t)(count - first));
            int64_t off = model[i].base + (int64_t)(rng() % (uint64_t)model[i].records);
            CHECK_EQ(turbine_log_wait(log, off, loom_now_ns() + 5 * LOOM_NS_PER_S), 0);
            ssize_t got = turbine_log_read(log, off, buf, sizeof(buf), 1 + rng() % 8192,
                                           turbine_log_written_offset(log));
            CHECK_GT(got, 0);
            for (size_t at = 0; at < (size_t)got; i++) {
                struct turbine_batch_info info;
                CHECK_EQ(turbine_batch_validate(buf + at, (size_t)got - at, &info),
                         TURBINE_BATCH_OK);
                CHECK_EQ(info.header.base_offset, model[i].base);
                CHECK_EQ(info.header.crc, model[i].crc);
                at += info.size;
            }
            /* by time: the first batch whose max timestamp reaches ts */
            int j = first + (int)(rng() % (uint64_t)(count - first));
            CHECK_EQ(turbine_log_wait(log, end - 1, loom_now_ns() + 5 * LOOM_NS_PER_S), 0);
            int k = first;
            while (model[k].max_ts < model[j].max_ts)
                k++;
            CHECK_EQ(turbine_log_offset_for_time(log, model[j].max_ts), model[k].base);
        } else if (op < 97) {
            CHECK_EQ(turbine_log_close(log), 0);
            CHECK_EQ(turbine_log_open(&c, &log), 0);
            CHECK_EQ(turbine_log_end_offset(log), end);
        } else {
            /* retention: keep about 32 KiB */
            c.retention_bytes = 32 * 1024;
            CHECK_EQ(turbine_log_close(log), 0);
            CHECK_EQ(turbine_log_open(&c, &log), 0);
            CHECK_GE(turbine_log_apply_retention(log, 0), 0);
            int64_t start = turbine_log_start_offset(log);
            while (first < count && model[first].base + model[first].records <= start)
                first++;
            CHECK(first == count || model[first].base == start);
            c.retention_bytes = 0;
        }
    }
    CHECK_EQ(turbine_log_close(log), 0);
    free(model);
}

/* Extents of the file at `path` that start at or after its size (blocks kept beyond its end). */
static int extents_beyond_end(const char *path)
{
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    struct stat st;
    CHECK_EQ(fstat(fd, &st), 0);
    enum { MAX = 64 };
    struct fiemap *fm = calloc(1, sizeof(*fm) + MAX * sizeof(struct fiemap_extent));
    CHECK(fm != NULL);
    fm->fm_length = FIEMAP_MAX_OFFSET;
    fm->fm_extent_count = MAX;
    CHECK_EQ(ioctl(fd, FS_IOC_FIEMAP, fm), 0);
    int n = 0;
    for (unsigned i = 0; i < fm->fm_mapped_extents; i++)
        if (fm->fm_extents[i].fe_logical >= (uint64_t)st.st_size)
            n++;
    free(fm);
    close(fd);
    return n;
}

/* On ext4 the active segment holds a few blocks far beyond its end (so that its extent tree
 * leaves the inode: direct writes into preallocated blocks run twice as fast, see log.c); the
 * file's size is untouched, sealing frees them, reopening puts them back. */
static void test_spread_extents(void)
{
    struct statfs fs;
    CHECK_EQ(statfs(root, &fs), 0);
    if (fs.f_type != EXT4_SUPER_MAGIC) {
        printf("  spread extents: %s is not on ext4, not checked\n", root);
        return;
    }
    char dir[300], first[400], second[400];
    new_dir(dir, sizeof(dir));
    struct turbine_log_config c = config_for(dir);
    c.segment_bytes = 64 * 1024;
    struct turbine_log *log;
    CHECK_EQ(turbine_log_open(&c, &log), 0);
    char batch[4096];
    size_t size = make_batch(batch, sizeof(batch), 7, 40, 1000);
    CHECK_GE(turbine_log_append(log, batch, size, TURBINE_DURABLE_FSYNC, LOOM_NO_DEADLINE), 0);
    snprintf(first, sizeof(first), "%s/00000000000000000000.log", dir);
    CHECK_GE(extents_beyond_end(first), 5);
    struct stat st;
    CHECK_EQ(stat(first, &st), 0);
    CHECK_LE((uint64_t)st.st_size, (uint64_t)c.prealloc_bytes + (1u << 20)); /* size untouched */
    /* roll: the sealed segment is cut to its data, the new one is spread */
    int64_t next = 0; /* the offset of the append that rolled: the new segment's base */
    for (struct turbine_log_stats ls = {0}; ls.rolls == 0; turbine_log_stats_get(log, &ls)) {
        next = turbine_log_append(log, batch, size, TURBINE_DURABLE_WRITTEN, LOOM_NO_DEADLINE);
        CHECK_GT(next, 0);
    }
    CHECK_EQ(extents_beyond_end(first), 0);
    snprintf(second, sizeof(second), "%s/%020lld.log", dir, (long long)next);
    CHECK_GE(extents_beyond_end(second), 5);
    CHECK_EQ(turbine_log_close(log), 0);
    CHECK_EQ(turbine_log_open(&c, &log), 0);
    CHECK_GE(extents_beyond_end(second), 5);
    CHECK_EQ(read_all(log, 0, NULL), turbine_log_end_offset(log));
    CHECK_EQ(turbine_log_close(log), 0);
}

/* A backend in front of the core's own that sees every block-aligned write: per file (inode),
 * which 4 KiB blocks were ever written, and how many writes mixed such blocks with never
 * written ones (ext4 hands those to a worker thread: see submit_record in log.c). */
struct wfile {
    ino_t ino;
    uint8_t written[4096]; /* one byte per block: files of up to 16 MiB */
};
static struct wrecorder {
    const struct loom_io_backend *inner;
    struct loom_io_backend self;
    struct wfile files[64];
    unsigned nfiles;
    uint64_t writes, overwrites, mixed;
} rec;

static void rec_start(void *ctx, struct loom_io_req *req)
{
    (void)ctx;
    struct stat st;
    if (req->kind == LOOM_IO_WRITE && req->offset % 4096 == 0 && req->len % 4096 == 0 &&
        req->len > 0 && fstat(req->fd, &st) == 0) {
        struct wfile *f = NULL;
        for (unsigned i = 0; i < rec.nfiles && !f; i++)
            if (rec.files[i].ino == st.st_ino)
                f = &rec.files[i];
        if (!f) {
            CHECK_LT(rec.nfiles, 64u);
            f = &rec.files[rec.nfiles++];
            memset(f, 0, sizeof(*f));
            f->ino = st.st_ino;
        }
        uint64_t b0 = req->offset / 4096, b1 = (req->offset + req->len) / 4096;
        CHECK_LE(b1, (uint64_t)sizeof(f->written));
        unsigned old = 0;
        for (uint64_t b = b0; b < b1; b++)
            old += f->written[b];
        rec.writes++;
        rec.overwrites += old == b1 - b0;
        rec.mixed += old > 0 && old < b1 - b0;
        memset(f->written + b0, 1, b1 - b0);
    }
    rec.inner->start(rec.inner->ctx, req);
}

static int rec_cancel(void *ctx, struct loom_io_req *req)
{
    (void)ctx;
    return rec.inner->cancel(rec.inner->ctx, req);
}

/* The partly filled last block is written again as it fills, but never in the same request as
 * blocks written for the first time: a batch that ends in that block after its write completed
 * and runs on into new blocks goes out as two writes. Also after a reopen, whose last block is
 * on disk already. */
static void test_overwrite_split(void)
{
    char dir[300];
    new_dir(dir, sizeof(dir));
    struct turbine_log_config c = config_for(dir);
    c.segment_bytes = 8u << 20;
    struct turbine_log *log;
    CHECK_EQ(turbine_log_open(&c, &log), 0);
    memset(&rec, 0, sizeof(rec));
    rec.inner = loom_io_backend_get();
    rec.self = (struct loom_io_backend){
        .name = "write-recorder", .start = rec_start, .cancel = rec_cancel, .ctx = NULL};
    loom_io_backend_set(&rec.self);
    static char batch[40000];
    int64_t end = 0;
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 200; i++) {
            /* a small batch, written: the last block is on disk and partly filled; then one of
             * 6-20 KiB that starts in it */
            int n = i % 2 == 0 ? 1 + i % 7 : 6 + i % 15;
            size_t size = make_batch(batch, sizeof(batch), (uint32_t)i, n, 100);
            if (n > 5) { /* records of about 1 KiB */
                struct turbine_record_in recs[64];
                static char value[1000];
                memset(value, 'x', sizeof(value));
                for (int k = 0; k < n; k++)
                    recs[k] = (struct turbine_record_in){.timestamp = 100 + k,
                                                         .key_size = -1,
                                                         .value = value,
                                                         .value_size = (int32_t)sizeof(value) -
                                                                       (i + k) % 300};
                struct turbine_batch_params params = {
                    .producer_id = -1, .producer_epoch = -1, .base_sequence = -1};
                int64_t sz = turbine_batch_encode(batch, sizeof(batch), &params, recs, n);
                CHECK_GT(sz, 0);
                size = (size_t)sz;
            }
            CHECK_EQ(
                turbine_log_append(log, batch, size, TURBINE_DURABLE_WRITTEN, LOOM_NO_DEADLINE),
                end);
            end += n;
        }
        /* reopened: the last block of the active segment is on disk */
        loom_io_backend_set(rec.inner);
        CHECK_EQ(turbine_log_close(log), 0);
        CHECK_EQ(turbine_log_open(&c, &log), 0);
        CHECK_EQ(turbine_log_end_offset(log), end);
        loom_io_backend_set(&rec.self);
    }
    loom_io_backend_set(rec.inner);
    printf("  overwrite split: %" PRIu64 " writes, %" PRIu64 " overwrites, %" PRIu64 " mixed\n",
           rec.writes, rec.overwrites, rec.mixed);
    CHECK_GT(rec.overwrites, 10u); /* the case is there */
    CHECK_EQ(rec.mixed, 0u);
    CHECK_EQ(read_all(log, 0, NULL), end);
    CHECK_EQ(turbine_log_close(log), 0);
}

static int test_main(void *arg)
{
    (void)arg;
    test_basic();
    test_model();
    test_retention();
    test_seal_in_background();
    test_group_commit_and_roll();
    test_torn_tail_and_damage();
    test_spread_extents();
    test_padding();
    test_overwrite_split();
    return 0;
}

int main(void)
{
    alarm(120);
    const char *base = getenv("TMPDIR");
    snprintf(root, sizeof(root), "%s/turbine_log_test.XXXXXX", base && *base ? base : "/tmp");
    CHECK(mkdtemp(root) != NULL);
    struct loom_config config;
    test_config(&config, 1);
    config.io_buffer_bytes = (size_t)8 << 20;
    int rc = loom_run(&config, test_main, NULL);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", root);
    CHECK_EQ(rc, 0);
    return 0;
}
