/* SPDX-License-Identifier: MIT
 * fault_test.c - fault injection (fault.h) against the io_uring backend on a temp file: the
 * nth-request FAIL hits exactly the right call with the right error and does nothing, SHORT
 * gives a short read and a short write that loom_write() continues to the full length (also
 * aligned for O_DIRECT), DELAY delays measurably, max_fires, kind masks, bad configurations,
 * and the same seed giving the same decisions while another seed gives others.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "loom/loom.h"

static char path[256];
static int fd;

#define FILE_BYTES 65536
static char pattern[FILE_BYTES];

static void fill_file(void)
{
    for (size_t i = 0; i < sizeof(pattern); i++)
        pattern[i] = (char)(i * 13 + 7);
    CHECK_EQ(loom_write(fd, pattern, sizeof(pattern), 0, 0, LOOM_NO_DEADLINE),
             (ssize_t)sizeof(pattern));
}

static void enable(uint64_t seed, const struct loom_fault_rule *rules, unsigned count)
{
    struct loom_fault_config config = {.seed = seed, .rules = rules, .rule_count = count};
    CHECK_EQ(loom_fault_enable(&config), 0);
    CHECK_EQ(loom_fault_fired(), 0);
}

static void test_fail_nth(void)
{
    struct loom_fault_rule rules[] = {
        {.kinds = 1u << LOOM_IO_WRITE, .nth = 3, .action = LOOM_FAULT_FAIL, .error = -EIO},
        {.kinds = 1u << LOOM_IO_FSYNC, .nth = 2, .action = LOOM_FAULT_FAIL, .error = -ENOSPC},
    };
    enable(1, rules, 2);
    char block[512];
    for (int i = 0; i < 5; i++) {
        memset(block, 'a' + i, sizeof(block));
        ssize_t n = loom_write(fd, block, sizeof(block), (uint64_t)i * 512, 0, LOOM_NO_DEADLINE);
        CHECK_EQ(n, i == 2 ? -EIO : (ssize_t)sizeof(block));
        /* reads and fsyncs do not count toward the write rule */
        CHECK_EQ(loom_read(fd, block, sizeof(block), 0, 0, LOOM_NO_DEADLINE), 512);
    }
    CHECK_EQ(loom_fault_fired(), 1);
    /* the failed write did nothing: its block still holds the pattern */
    CHECK_EQ(loom_read(fd, block, sizeof(block), 2 * 512, 0, LOOM_NO_DEADLINE), 512);
    CHECK(memcmp(block, pattern + 1024, 512) == 0);
    CHECK_EQ(loom_read(fd, block, sizeof(block), 3 * 512, 0, LOOM_NO_DEADLINE), 512);
    CHECK_EQ(block[0], 'd');
    CHECK_EQ(loom_fsync(fd, 0, LOOM_NO_DEADLINE), 0);
    CHECK_EQ(loom_fsync(fd, LOOM_FSYNC_DATA, LOOM_NO_DEADLINE), -ENOSPC);
    CHECK_EQ(loom_fsync(fd, 0, LOOM_NO_DEADLINE), 0);
    CHECK_EQ(loom_fault_fired(), 2);
    loom_fault_disable();
    CHECK_EQ(loom_fault_fired(), 0);
    fill_file();
}

static void post_done(struct loom_op *op)
{
    loom_baton_post(op->data);
}

static void test_short(void)
{
    struct loom_io_stats before, after;
    struct loom_fault_rule read_rule = {
        .kinds = 1u << LOOM_IO_READ, .nth = 1, .action = LOOM_FAULT_SHORT};
    enable(7, &read_rule, 1);
    static char buf[FILE_BYTES];
    ssize_t n = loom_read(fd, buf, 4096, 8192, 0, LOOM_NO_DEADLINE);
    CHECK_GE(n, 1);
    CHECK_LT(n, 4096);
    CHECK(memcmp(buf, pattern + 8192, (size_t)n) == 0);
    CHECK_EQ(loom_fault_fired(), 1);
    CHECK_EQ(loom_read(fd, buf, 4096, 8192, 0, LOOM_NO_DEADLINE), 4096); /* only the 1st */

    /* a shortened write is continued by loom_write(): the caller sees the full length */
    struct loom_fault_rule write_rule = {
        .kinds = 1u << LOOM_IO_WRITE, .nth = 1, .action = LOOM_FAULT_SHORT};
    enable(7, &write_rule, 1);
    loom_io_stats_get(&before);
    for (size_t i = 0; i < 8192; i++)
        buf[i] = (char)~pattern[i];
    CHECK_EQ(loom_write(fd, buf, 8192, 0, 0, LOOM_NO_DEADLINE), 8192);
    loom_io_stats_get(&after);
    CHECK_EQ(loom_fault_fired(), 1);
    CHECK_EQ(after.short_writes, before.short_writes + 1);
    static char back[8192];
    CHECK_EQ(loom_read(fd, back, sizeof(back), 0, 0, LOOM_NO_DEADLINE), 8192);
    CHECK(memcmp(back, buf, sizeof(back)) == 0);

    /* through the callback API the completion shows a short result on the request as the
     * caller made it: the rule shortens the transfer, not the caller's len */
    enable(7, &write_rule, 1);
    struct loom_io_req req = {0};
    struct loom_baton done;
    loom_baton_init(&done);
    req.kind = LOOM_IO_WRITE;
    req.fd = fd;
    req.addr = buf;
    req.len = 8192;
    req.op.fn = post_done;
    req.op.data = &done;
    loom_io_start(&req);
    CHECK_EQ(loom_baton_wait(&done, LOOM_NO_DEADLINE), 0);
    CHECK_GT(req.op.res, 0);
    CHECK_LT(req.op.res, 8192);
    CHECK_EQ(req.len, 8192u);
    loom_baton_deinit(&done);

    /* a one-byte transfer cannot be shortened: the rule does not fire on it */
    struct loom_fault_rule any_rule = {.nth = 1, .action = LOOM_FAULT_SHORT};
    enable(7, &any_rule, 1);
    CHECK_EQ(loom_read(fd, buf, 1, 0, 0, LOOM_NO_DEADLINE), 1);
    CHECK_EQ(loom_fault_fired(), 0);
    loom_fault_disable();
    fill_file();
}

/* SHORT on an O_DIRECT file: a positive multiple of the alignment, which loom_write()
 * continues from. Skipped where the file system refuses O_DIRECT. */
static void test_short_direct(void)
{
    int dfd = loom_openat(AT_FDCWD, path, O_RDWR | O_DIRECT, 0, LOOM_NO_DEADLINE);
    if (dfd == -EINVAL) {
        printf("O_DIRECT not supported on %s: skipping the O_DIRECT case\n", path);
        return;
    }
    CHECK_GE(dfd, 0);
    unsigned align = loom_io_direct_align(dfd);
    CHECK_GT(align, 0);
    size_t len = 4 * (size_t)(align > 4096 ? align : 4096);
    char *buf = loom_iobuf_alloc(len);
    CHECK(buf != NULL);
    for (int round = 0; round < 8; round++) {
        struct loom_fault_rule rule = {
            .kinds = 1u << LOOM_IO_READ, .nth = 1, .action = LOOM_FAULT_SHORT};
        enable((uint64_t)round, &rule, 1);
        ssize_t n = loom_read(dfd, buf, len, 0, 0, LOOM_NO_DEADLINE);
        CHECK_GT(n, 0);
        CHECK_LT(n, (ssize_t)len);
        CHECK_EQ(n % align, 0);
        CHECK(memcmp(buf, pattern, (size_t)n) == 0);
        rule.kinds = 1u << LOOM_IO_WRITE;
        enable((uint64_t)round, &rule, 1);
        memcpy(buf, pattern, len);
        CHECK_EQ(loom_write(dfd, buf, len, 0, 0, LOOM_NO_DEADLINE), (ssize_t)len);
        CHECK_EQ(loom_fault_fired(), 1);
    }
    loom_fault_disable();
    loom_iobuf_free(buf);
    CHECK_EQ(loom_close(dfd), 0);
}

static int64_t delayed_done_ns;

static void delayed_done(struct loom_op *op)
{
    CHECK_EQ(op->res, 0);
    delayed_done_ns = loom_clock_ns();
}

static void test_delay(void)
{
    const int64_t delay = 30 * LOOM_NS_PER_MS;
    struct loom_fault_rule rule = {
        .kinds = 1u << LOOM_IO_FSYNC, .nth = 2, .action = LOOM_FAULT_DELAY, .delay_ns = delay};
    enable(3, &rule, 1);
    CHECK_EQ(loom_fsync(fd, 0, LOOM_NO_DEADLINE), 0);
    CHECK_EQ(loom_read(fd, &(char){0}, 1, 0, 0, LOOM_NO_DEADLINE), 1); /* not counted */
    int64_t t2 = loom_clock_ns();
    CHECK_EQ(loom_fsync(fd, 0, LOOM_NO_DEADLINE), 0);
    int64_t t3 = loom_clock_ns();
    CHECK_EQ(loom_fault_fired(), 1);
    CHECK_GE(t3 - t2, delay);

    /* a delayed request still starts after loom_fault_disable() */
    rule.nth = 1;
    enable(3, &rule, 1);
    struct loom_io_req req;
    memset(&req, 0, sizeof(req));
    req.kind = LOOM_IO_FSYNC;
    req.fd = fd;
    req.op.fn = delayed_done;
    delayed_done_ns = 0;
    int64_t start = loom_clock_ns();
    loom_io_start(&req);
    loom_fault_disable();
    int64_t deadline = loom_deadline_in(5 * LOOM_NS_PER_S);
    while (delayed_done_ns == 0 && loom_clock_ns() < deadline)
        loom_sleep(LOOM_NS_PER_MS);
    CHECK_GE(delayed_done_ns - start, delay);
}

#define DECISIONS 256

/* Reads with a 30% FAIL rule; returns the pattern of failures as a string of 0/1. */
static void decisions(uint64_t seed, char out[DECISIONS + 1])
{
    struct loom_fault_rule rules[] = {
        {.kinds = 1u << LOOM_IO_READ, .probability = 0.3, .action = LOOM_FAULT_FAIL, .error = -EIO},
        {.kinds = 1u << LOOM_IO_READ, .probability = 0.5, .action = LOOM_FAULT_SHORT},
    };
    enable(seed, rules, 2);
    char buf[256];
    for (int i = 0; i < DECISIONS; i++) {
        ssize_t n = loom_read(fd, buf, sizeof(buf), 0, 0, LOOM_NO_DEADLINE);
        out[i] = n == -EIO ? 'F' : n < (ssize_t)sizeof(buf) ? 'S' : '.';
        if (n > 0)
            CHECK(memcmp(buf, pattern, (size_t)n) == 0);
        else
            CHECK_EQ(n, -EIO);
    }
    out[DECISIONS] = '\0';
    loom_fault_disable();
}

static void test_seeds(void)
{
    static char a[DECISIONS + 1], b[DECISIONS + 1], c[DECISIONS + 1];
    decisions(42, a);
    decisions(42, b);
    decisions(43, c);
    CHECK_STREQ(a, b);
    CHECK(strcmp(a, c) != 0);
    int fails = 0, shorts = 0;
    for (int i = 0; i < DECISIONS; i++) {
        fails += a[i] == 'F';
        shorts += a[i] == 'S';
    }
    /* 30% and 50% of the rest: far from 0 and from all */
    CHECK_GT(fails, DECISIONS / 8);
    CHECK_LT(fails, DECISIONS / 2);
    CHECK_GT(shorts, DECISIONS / 8);
}

static void test_max_fires_and_kinds(void)
{
    struct loom_fault_rule rule = {.probability = 1.0,
                                   .action = LOOM_FAULT_FAIL,
                                   .error = -EROFS,
                                   .max_fires = 2}; /* kinds 0: every kind */
    enable(5, &rule, 1);
    CHECK_EQ(loom_fsync(fd, 0, LOOM_NO_DEADLINE), -EROFS);
    struct statx stx;
    CHECK_EQ(loom_statx(AT_FDCWD, path, 0, STATX_SIZE, &stx, LOOM_NO_DEADLINE), -EROFS);
    CHECK_EQ(loom_statx(AT_FDCWD, path, 0, STATX_SIZE, &stx, LOOM_NO_DEADLINE), 0);
    CHECK_EQ(stx.stx_size, FILE_BYTES);
    CHECK_EQ(loom_fault_fired(), 2);
    loom_fault_disable();
}

static void test_bad_config(void)
{
    struct loom_fault_rule ok = {.nth = 1, .action = LOOM_FAULT_FAIL, .error = -EIO};
    struct loom_fault_rule bad[] = {
        {.nth = 1, .action = LOOM_FAULT_FAIL, .error = 5},         /* not -errno */
        {.nth = 1, .action = (enum loom_fault_action)9},           /* no such action */
        {.probability = 1.5, .action = LOOM_FAULT_SHORT},          /* not a probability */
        {.nth = 1, .action = LOOM_FAULT_DELAY, .delay_ns = -1},    /* negative delay */
        {.kinds = 1u << 30, .nth = 1, .action = LOOM_FAULT_SHORT}, /* no such kind */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct loom_fault_config config = {.seed = 1, .rules = &bad[i], .rule_count = 1};
        CHECK_EQ(loom_fault_enable(&config), -EINVAL);
    }
    struct loom_fault_config too_many = {.rules = &ok, .rule_count = LOOM_FAULT_RULES_MAX + 1};
    CHECK_EQ(loom_fault_enable(&too_many), -EINVAL);
    struct loom_fault_config no_rules = {.rules = NULL, .rule_count = 1};
    CHECK_EQ(loom_fault_enable(&no_rules), -EINVAL);
    CHECK_EQ(loom_fault_enable(NULL), -EINVAL);
    /* an empty rule list is valid and injects nothing */
    struct loom_fault_config empty = {.seed = 1};
    CHECK_EQ(loom_fault_enable(&empty), 0);
    CHECK_EQ(loom_fsync(fd, 0, LOOM_NO_DEADLINE), 0);
    CHECK_EQ(loom_fault_fired(), 0);
    loom_fault_disable();
}

static int test_main(void *arg)
{
    (void)arg;
    fd = loom_openat(AT_FDCWD, path, O_RDWR | O_CREAT | O_TRUNC, 0600, LOOM_NO_DEADLINE);
    CHECK_GE(fd, 0);
    fill_file();
    test_fail_nth();
    test_short();
    test_short_direct();
    test_delay();
    test_seeds();
    test_max_fires_and_kinds();
    test_bad_config();
    CHECK_EQ(loom_close(fd), 0);
    CHECK_EQ(loom_unlinkat(AT_FDCWD, path, 0, LOOM_NO_DEADLINE), 0);
    return 0;
}

int main(void)
{
    alarm(120);
    const char *base = getenv("TMPDIR");
    snprintf(path, sizeof(path), "%s/loom_fault_test.%d", base && *base ? base : "/tmp",
             (int)getpid());
    int rc = test_run(1, test_main, NULL);
    if (rc != 0)
        unlink(path);
    CHECK_EQ(rc, 0);
    return 0;
}
