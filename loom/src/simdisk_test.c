/* SPDX-License-Identifier: MIT
 * simdisk_test.c - the simulated disk (simdisk.h) behind the io.h calls: every request kind
 * and its errors, the crash model (fsynced data survives, unsynced sectors come back old or
 * new per seed and the same for the same seed, directory changes not fsynced vanish, RWF_DSYNC
 * writes survive, requests in flight fail with -EIO, old fds go stale), capacity (-ENOSPC),
 * and the seeded completion order (the same per seed, another for another seed, FIFO with no
 * reordering, never more reordering than allowed).
 */
#include <errno.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "loom/loom.h"
#include "loom/simdisk.h"

#define ND LOOM_NO_DEADLINE

static struct loom_simdisk *disk_up(uint64_t seed, uint64_t capacity, unsigned reorder)
{
    struct loom_simdisk_config config = {.seed = seed,
                                         .capacity_bytes = capacity,
                                         .latency_min_ns = 10 * LOOM_NS_PER_US,
                                         .latency_max_ns = 500 * LOOM_NS_PER_US,
                                         .reorder_max = reorder};
    struct loom_simdisk *disk = loom_simdisk_create(&config);
    CHECK(disk != NULL);
    loom_io_backend_set(loom_simdisk_backend(disk));
    CHECK(loom_io_backend_get() == loom_simdisk_backend(disk));
    return disk;
}

static void disk_down(struct loom_simdisk *disk)
{
    loom_io_backend_set(NULL);
    loom_simdisk_destroy(disk);
}

static int open_at(const char *path, int flags)
{
    return loom_openat(AT_FDCWD, path, flags, 0644, ND);
}

static uint64_t size_of(const char *path)
{
    struct statx stx;
    CHECK_EQ(loom_statx(AT_FDCWD, path, 0, STATX_BASIC_STATS, &stx, ND), 0);
    return stx.stx_size;
}

static bool exists(const char *path)
{
    struct statx stx;
    int rc = loom_statx(AT_FDCWD, path, 0, STATX_BASIC_STATS, &stx, ND);
    CHECK(rc == 0 || rc == -ENOENT);
    return rc == 0;
}

/* ---- callback-style requests ---- */

static int req_results[256];
static int req_order[256];
static int req_done_count;

static void req_done(struct loom_op *op)
{
    int i = (int)(intptr_t)op->data;
    req_results[i] = op->res;
    req_order[req_done_count++] = i;
}

/* Waits until `count` requests have completed (sleeping, so the disk sees an idle core). */
static void wait_done(int count)
{
    int64_t deadline = loom_deadline_in(10 * LOOM_NS_PER_S);
    while (req_done_count < count && loom_clock_ns() < deadline)
        loom_sleep(100 * LOOM_NS_PER_US);
    CHECK_EQ(req_done_count, count);
}

/* Starts `req` (callback style) and waits for its result. */
static int run_req(struct loom_io_req *req)
{
    req_done_count = 0;
    req->op.fn = req_done;
    req->op.data = (void *)(intptr_t)0;
    loom_io_start(req);
    wait_done(1);
    return req_results[0];
}

/* ---- every kind -------------------------------------------------------------------------- */

static void test_namespace(void)
{
    struct loom_simdisk *disk = disk_up(1, 0, 4);
    CHECK_EQ(loom_mkdirat(AT_FDCWD, "/d", 0755, ND), 0);
    CHECK_EQ(loom_mkdirat(AT_FDCWD, "d", 0755, ND), -EEXIST);
    CHECK_EQ(loom_mkdirat(AT_FDCWD, "/missing/x", 0755, ND), -ENOENT);
    int fd = open_at("/d/f", O_RDWR | O_CREAT | O_EXCL);
    CHECK_GE(fd, LOOM_SIMDISK_FD_BASE);
    CHECK_EQ(open_at("/d/f", O_RDWR | O_CREAT | O_EXCL), -EEXIST);
    CHECK_EQ(open_at("/d/nope", O_RDONLY), -ENOENT);
    CHECK_EQ(open_at("/d/f/x", O_RDONLY), -ENOTDIR);
    CHECK_EQ(open_at("/d/f", O_RDONLY | O_DIRECTORY), -ENOTDIR);
    CHECK_EQ(open_at("/d", O_RDWR), -EISDIR);
    int dfd = open_at("/d", O_RDONLY | O_DIRECTORY);
    CHECK_GE(dfd, LOOM_SIMDISK_FD_BASE);
    /* relative to a directory fd, with "." and ".." */
    int fd2 = loom_openat(dfd, "./../d/f", O_RDONLY, 0, ND);
    CHECK_GE(fd2, 0);
    CHECK_EQ(loom_openat(fd, "x", O_RDONLY, 0, ND), -ENOTDIR);  /* a file as dirfd */
    CHECK_EQ(loom_openat(12345, "x", O_RDONLY, 0, ND), -EBADF); /* not a disk fd */

    struct statx stx;
    CHECK_EQ(loom_statx(dfd, "f", 0, STATX_BASIC_STATS, &stx, ND), 0);
    CHECK(S_ISREG(stx.stx_mode));
    CHECK_EQ(stx.stx_mode & 07777, 0644);
    CHECK_EQ(stx.stx_size, 0);
    CHECK_EQ(loom_statx(AT_FDCWD, "/d", 0, STATX_BASIC_STATS, &stx, ND), 0);
    CHECK(S_ISDIR(stx.stx_mode));
    CHECK_EQ(loom_statx(dfd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &stx, ND), 0);
    CHECK(S_ISDIR(stx.stx_mode));
    CHECK_EQ(loom_statx(AT_FDCWD, "/d/zz", 0, STATX_BASIC_STATS, &stx, ND), -ENOENT);

    /* rename: plain, onto an existing name, RENAME_NOREPLACE, directories */
    int g = open_at("/d/g", O_WRONLY | O_CREAT);
    CHECK_EQ(loom_write(g, "gg", 2, 0, 0, ND), 2);
    CHECK_EQ(loom_renameat(AT_FDCWD, "/d/f", AT_FDCWD, "/d/h", 0, ND), 0);
    CHECK(!exists("/d/f"));
    CHECK(exists("/d/h"));
    CHECK_EQ(loom_renameat(dfd, "g", dfd, "h", RENAME_NOREPLACE, ND), -EEXIST);
    CHECK_EQ(loom_renameat(dfd, "g", dfd, "h", 0, ND), 0); /* replaces h */
    CHECK_EQ(size_of("/d/h"), 2);
    CHECK_EQ(loom_renameat(dfd, "nope", dfd, "x", 0, ND), -ENOENT);
    CHECK_EQ(loom_renameat(dfd, "h", dfd, "y", 1u << 1 /* RENAME_EXCHANGE */, ND), -EINVAL);
    CHECK_EQ(loom_mkdirat(AT_FDCWD, "/d/sub", 0755, ND), 0);
    CHECK_EQ(loom_renameat(AT_FDCWD, "/d", AT_FDCWD, "/d/sub/d2", 0, ND), -EINVAL);
    CHECK_EQ(loom_renameat(AT_FDCWD, "/d/h", AT_FDCWD, "/d/sub", 0, ND), -EISDIR);
    CHECK_EQ(loom_renameat(AT_FDCWD, "/d/sub", AT_FDCWD, "/d/h", 0, ND), -ENOTDIR);
    CHECK_EQ(loom_renameat(AT_FDCWD, "/d/h", AT_FDCWD, "/d/sub/h", 0, ND), 0);
    CHECK_EQ(loom_renameat(AT_FDCWD, "/d/sub", AT_FDCWD, "/s2", 0, ND), 0);
    CHECK_EQ(size_of("/s2/h"), 2);

    /* unlink and rmdir */
    CHECK_EQ(loom_unlinkat(AT_FDCWD, "/s2", 0, ND), -EISDIR);
    CHECK_EQ(loom_unlinkat(AT_FDCWD, "/s2", AT_REMOVEDIR, ND), -ENOTEMPTY);
    CHECK_EQ(loom_unlinkat(AT_FDCWD, "/s2/h", AT_REMOVEDIR, ND), -ENOTDIR);
    CHECK_EQ(loom_unlinkat(AT_FDCWD, "/s2/h", 0, ND), 0);
    CHECK_EQ(loom_unlinkat(AT_FDCWD, "/s2/h", 0, ND), -ENOENT);
    CHECK_EQ(loom_unlinkat(AT_FDCWD, "/s2", AT_REMOVEDIR, ND), 0);
    CHECK_EQ(loom_unlinkat(AT_FDCWD, "/", AT_REMOVEDIR, ND), -EBUSY);
    CHECK(!exists("/s2"));

    /* an unlinked file stays usable through its fd until closed */
    CHECK_EQ(loom_write(g, "xyz", 3, 0, 0, ND), 3);
    CHECK_EQ(loom_close(g), 0);
    CHECK_EQ(loom_close(g), -EBADF);
    CHECK_EQ(loom_close(fd2), 0);
    CHECK_EQ(loom_close(fd), 0);
    CHECK_EQ(loom_close(dfd), 0);
    struct loom_simdisk_stats st;
    loom_simdisk_stats(disk, &st);
    CHECK_EQ(st.open_fds, 0);
    CHECK_EQ(st.files, 0);
    CHECK_EQ(st.dirs, 2); /* "/" and "/d" */
    CHECK_EQ(st.in_flight, 0);
    CHECK_GT(loom_simdisk_now_ns(disk), 0);
    disk_down(disk);
}

static void test_data(void)
{
    struct loom_simdisk *disk = disk_up(2, 0, 4);
    int fd = open_at("/f", O_RDWR | O_CREAT);
    static char buf[10000], back[10000];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (char)(i * 31 + 1);
    CHECK_EQ(loom_write(fd, buf, sizeof(buf), 0, 0, ND), 10000);
    CHECK_EQ(loom_read(fd, back, sizeof(back), 0, 0, ND), 10000);
    CHECK(memcmp(buf, back, sizeof(buf)) == 0);
    CHECK_EQ(loom_read(fd, back, 4096, 9000, 0, ND), 1000); /* short at end of file */
    CHECK(memcmp(back, buf + 9000, 1000) == 0);
    CHECK_EQ(loom_read(fd, back, 10, 20000, 0, ND), 0);

    /* vectors */
    struct iovec wv[3] = {{buf, 100}, {buf + 500, 200}, {buf + 900, 300}};
    CHECK_EQ(loom_writev(fd, wv, 3, 10000, 0, ND), 600);
    char v1[250], v2[400];
    struct iovec rv[2] = {{v1, sizeof(v1)}, {v2, sizeof(v2)}};
    CHECK_EQ(loom_readv(fd, rv, 2, 10000, 0, ND), 600);
    CHECK(memcmp(v1, buf, 100) == 0 && memcmp(v1 + 100, buf + 500, 150) == 0);
    CHECK(memcmp(v2, buf + 650, 50) == 0 && memcmp(v2 + 50, buf + 900, 300) == 0);
    CHECK_EQ(size_of("/f"), 10600);

    /* a write past the end leaves a hole of zeros */
    CHECK_EQ(loom_write(fd, "end", 3, 20000, RWF_DSYNC, ND), 3);
    CHECK_EQ(loom_read(fd, back, 100, 19950, 0, ND), 53);
    for (int i = 0; i < 50; i++)
        CHECK_EQ(back[i], 0);
    CHECK(memcmp(back + 50, "end", 3) == 0);

    /* registered buffers */
    char *fixed = loom_iobuf_alloc(8192);
    CHECK(fixed != NULL);
    memcpy(fixed, buf, 8192);
    CHECK_EQ(loom_write_fixed(fd, fixed, 8192, 32768, ND), 8192);
    memset(fixed, 0, 8192);
    CHECK_EQ(loom_read_fixed(fd, fixed, 8192, 32768, ND), 8192);
    CHECK(memcmp(fixed, buf, 8192) == 0);
    loom_iobuf_free(fixed);

    CHECK_EQ(loom_fsync(fd, 0, ND), 0);
    CHECK_EQ(loom_fsync(fd, LOOM_FSYNC_DATA, ND), 0);

    /* fallocate and ftruncate */
    struct statx stx;
    CHECK_EQ(loom_ftruncate(fd, 5000, ND), 0);
    CHECK_EQ(loom_read(fd, back, 4096, 4000, 0, ND), 1000);
    CHECK_EQ(loom_statx(AT_FDCWD, "/f", 0, STATX_BASIC_STATS, &stx, ND), 0);
    CHECK_EQ(stx.stx_size, 5000);
    CHECK_EQ(stx.stx_blocks, 8192 / 512);
    CHECK_EQ(loom_fallocate(fd, 0, 0, 65536, ND), 0);
    CHECK_EQ(size_of("/f"), 65536);
    CHECK_EQ(loom_fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 1 << 20, ND), 0);
    CHECK_EQ(loom_statx(AT_FDCWD, "/f", 0, STATX_BASIC_STATS, &stx, ND), 0);
    CHECK_EQ(stx.stx_size, 65536);
    CHECK_EQ(stx.stx_blocks, (1 << 20) / 512);
    CHECK_EQ(loom_fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 100, ND), 0);
    CHECK_EQ(loom_read(fd, back, 200, 0, 0, ND), 200);
    CHECK_EQ(back[0], 0);
    CHECK_EQ(back[99], 0);
    CHECK_EQ(back[100], buf[100]);
    CHECK_EQ(loom_fallocate(fd, FALLOC_FL_PUNCH_HOLE, 0, 100, ND), -EOPNOTSUPP);
    CHECK_EQ(loom_fallocate(fd, 0x40, 0, 100, ND), -EOPNOTSUPP);
    CHECK_EQ(loom_fallocate(fd, 0, 0, 0, ND), -EINVAL);

    CHECK_EQ(loom_close(fd), 0);
    disk_down(disk);
}

static void test_fds(void)
{
    struct loom_simdisk *disk = disk_up(2, 0, 4);
    int fd = open_at("/f", O_RDWR | O_CREAT);
    static char back[64];
    CHECK_EQ(loom_write(fd, "0123456789", 10, 0, 0, ND), 10);

    /* access modes and the wrong kinds of fd */
    int ro = open_at("/f", O_RDONLY);
    CHECK_EQ(loom_write(ro, "x", 1, 0, 0, ND), -EBADF);
    CHECK_EQ(loom_ftruncate(ro, 0, ND), -EINVAL);
    CHECK_EQ(loom_fallocate(ro, 0, 0, 10, ND), -EBADF);
    int wo = open_at("/f", O_WRONLY | O_TRUNC);
    CHECK_EQ(size_of("/f"), 0);
    CHECK_EQ(loom_read(wo, back, 1, 0, 0, ND), -EBADF);
    int dfd = open_at("/", O_RDONLY | O_DIRECTORY);
    CHECK_EQ(loom_read(dfd, back, 1, 0, 0, ND), -EISDIR);
    CHECK_EQ(loom_read(LOOM_SIMDISK_FD_BASE + 999, back, 1, 0, 0, ND), -EBADF);
    CHECK_EQ(loom_read(0, back, 1, 0, 0, ND), -EBADF); /* a real fd means nothing here */

    /* O_APPEND */
    int ap = open_at("/f", O_WRONLY | O_APPEND);
    CHECK_EQ(loom_write(ap, "ab", 2, 0, 0, ND), 2);
    CHECK_EQ(loom_write(ap, "cd", 2, 0, 0, ND), 2);
    CHECK_EQ(loom_read(ro, back, 10, 0, 0, ND), 4);
    CHECK(memcmp(back, "abcd", 4) == 0);

    /* a NOP and an fsync through the backend */
    struct loom_simdisk_stats before, after;
    loom_simdisk_stats(disk, &before);
    struct loom_io_req nop;
    memset(&nop, 0, sizeof(nop));
    nop.kind = LOOM_IO_NOP;
    CHECK_EQ(run_req(&nop), 0);
    CHECK_EQ(loom_fsync(ro, 0, ND), 0);
    loom_simdisk_stats(disk, &after);
    CHECK_EQ(after.fsyncs, before.fsyncs + 1);
    CHECK_EQ(after.requests, before.requests + 2);

    /* a cancelled request completes with -ECANCELED and never takes effect */
    struct loom_io_req w;
    memset(&w, 0, sizeof(w));
    w.kind = LOOM_IO_WRITE;
    w.fd = fd;
    w.addr = "QQ";
    w.len = 2;
    w.op.fn = req_done;
    req_done_count = 0;
    loom_io_start(&w);
    CHECK_EQ(loom_io_cancel_req(&w), 0);
    wait_done(1);
    CHECK_EQ(req_results[0], -ECANCELED);
    CHECK_EQ(loom_io_cancel_req(&w), -ENOENT);
    CHECK_EQ(loom_read(ro, back, 2, 0, 0, ND), 2);
    CHECK(memcmp(back, "ab", 2) == 0);

    CHECK_EQ(loom_close(ap), 0);
    CHECK_EQ(loom_close(dfd), 0);
    CHECK_EQ(loom_close(wo), 0);
    CHECK_EQ(loom_close(ro), 0);
    CHECK_EQ(loom_close(fd), 0);

    /* the disk's fd handed to the kernel is caught: -EBADF, not another file */
    int keep = open_at("/f", O_RDONLY);
    loom_io_backend_set(NULL);
    CHECK_EQ(loom_read(keep, back, 1, 0, 0, ND), -EBADF);
    loom_io_backend_set(loom_simdisk_backend(disk));
    CHECK_EQ(loom_close(keep), 0);
    disk_down(disk);
}

static void test_direct(void)
{
    struct loom_simdisk *disk = disk_up(3, 0, 4);
    int fd = open_at("/d", O_RDWR | O_CREAT | O_DIRECT);
    CHECK_GE(fd, LOOM_SIMDISK_FD_BASE);
    CHECK_EQ(loom_io_direct_align(fd), LOOM_SIMDISK_SECTOR); /* from the disk's statx */
    char *buf = loom_iobuf_alloc(4096);
    CHECK(buf != NULL);
    memset(buf, 'd', 4096);
    CHECK_EQ(loom_write(fd, buf, 4096, 0, 0, ND), 4096);
    CHECK_EQ(loom_read(fd, buf, 1024, 512, 0, ND), 1024);
    CHECK_EQ(loom_write(fd, buf, 4096, 100, 0, ND), -EINVAL); /* io.c's check */
    /* the disk checks too, for requests that bypass io.c's */
    struct loom_io_req req;
    memset(&req, 0, sizeof(req));
    req.kind = LOOM_IO_WRITE;
    req.fd = fd;
    req.addr = buf;
    req.len = 100;
    CHECK_EQ(run_req(&req), -EINVAL);
    loom_iobuf_free(buf);
    CHECK_EQ(loom_close(fd), 0);
    disk_down(disk);
}

/* ---- crashes ------------------------------------------------------------------------------ */

#define SECTORS 16

/* A fixed history, then power loss with `seed`. Returns, per sector of the 8 KiB rewritten
 * without fsync, 'A' (old) or 'B' (new), and checks everything else the model promises. */
static void crash_scenario(uint64_t seed, char out[SECTORS + 1])
{
    struct loom_simdisk *disk = disk_up(5, 0, 4);
    static char a_bytes[8192], b_bytes[8192], back[8192];
    memset(a_bytes, 'A', sizeof(a_bytes));
    memset(b_bytes, 'B', sizeof(b_bytes));
    CHECK_EQ(loom_mkdirat(AT_FDCWD, "/db", 0755, ND), 0);
    CHECK_EQ(loom_fsync_dir(AT_FDCWD, "/", ND), 0);
    int a = open_at("/db/a", O_RDWR | O_CREAT);
    CHECK_EQ(loom_write(a, a_bytes, 8192, 0, 0, ND), 8192);
    CHECK_EQ(loom_fsync(a, 0, ND), 0);
    int c = open_at("/db/c", O_RDWR | O_CREAT); /* durable, then unlinked without a dir sync */
    CHECK_EQ(loom_write(c, "cc", 2, 0, 0, ND), 2);
    CHECK_EQ(loom_fsync(c, LOOM_FSYNC_DATA, ND), 0);
    CHECK_EQ(loom_close(c), 0);
    int r = open_at("/db/r", O_RDWR | O_CREAT); /* durable, then renamed without a dir sync */
    CHECK_EQ(loom_close(r), 0);
    CHECK_EQ(loom_fsync_dir(AT_FDCWD, "/db", ND), 0);

    CHECK_EQ(loom_write(a, b_bytes, 8192, 0, 0, ND), 8192);      /* not fsynced */
    CHECK_EQ(loom_write(a, "DSYNC", 5, 8192, RWF_DSYNC, ND), 5); /* durable by itself */
    CHECK_EQ(loom_write(a, "zz", 2, 9000, 0, ND), 2);            /* size not durable */
    int b = open_at("/db/b", O_RDWR | O_CREAT); /* the file is synced, its entry is not */
    CHECK_EQ(loom_write(b, "bbbb", 4, 0, 0, ND), 4);
    CHECK_EQ(loom_fsync(b, 0, ND), 0);
    CHECK_EQ(loom_unlinkat(AT_FDCWD, "/db/c", 0, ND), 0);
    CHECK_EQ(loom_renameat(AT_FDCWD, "/db/r", AT_FDCWD, "/db/r2", 0, ND), 0);
    CHECK_EQ(loom_mkdirat(AT_FDCWD, "/db2", 0755, ND), 0);
    /* a write in flight at the crash fails with -EIO */
    static struct loom_io_req inflight;
    memset(&inflight, 0, sizeof(inflight));
    inflight.kind = LOOM_IO_WRITE;
    inflight.fd = a;
    inflight.addr = b_bytes;
    inflight.len = 512;
    inflight.offset = 16384;
    inflight.op.fn = req_done;
    req_done_count = 0;
    loom_io_start(&inflight);

    loom_simdisk_crash(disk, seed);
    wait_done(1);
    CHECK_EQ(req_results[0], -EIO);
    CHECK_EQ(loom_read(a, back, 1, 0, 0, ND), -EBADF); /* fds of the old "process" */
    CHECK_EQ(loom_close(b), -EBADF);
    CHECK(!exists("/db/b"));
    CHECK(!exists("/db2"));
    CHECK(exists("/db/c"));
    CHECK_EQ(size_of("/db/c"), 2);
    CHECK(exists("/db/r"));
    CHECK(!exists("/db/r2"));
    CHECK_EQ(size_of("/db/a"), 8192 + 5);

    a = open_at("/db/a", O_RDWR);
    CHECK_EQ(loom_read(a, back, 5, 8192, 0, ND), 5);
    CHECK(memcmp(back, "DSYNC", 5) == 0);
    CHECK_EQ(loom_read(a, back, 8192, 0, 0, ND), 8192);
    int old = 0;
    for (int s = 0; s < SECTORS; s++) {
        char first = back[s * 512];
        CHECK(first == 'A' || first == 'B');
        for (int i = 1; i < 512; i++)
            CHECK_EQ(back[s * 512 + i], first); /* sectors are never torn inside */
        out[s] = first;
        old += first == 'A';
    }
    out[SECTORS] = '\0';
    struct loom_simdisk_stats st;
    loom_simdisk_stats(disk, &st);
    CHECK_EQ(st.crashes, 1);
    CHECK_EQ(st.crash_failed, 1);
    CHECK_EQ(st.torn_sectors, (uint64_t)old);
    CHECK_EQ(st.open_fds, 1);

    /* the restarted program: what it fsyncs survives the next crash whole */
    CHECK_EQ(loom_write(a, b_bytes, 8192, 0, 0, ND), 8192);
    CHECK_EQ(loom_fsync(a, 0, ND), 0);
    loom_simdisk_crash(disk, seed + 100);
    a = open_at("/db/a", O_RDONLY);
    CHECK_EQ(loom_read(a, back, 8192, 0, 0, ND), 8192);
    CHECK(memcmp(back, b_bytes, 8192) == 0);
    CHECK_EQ(loom_close(a), 0);
    disk_down(disk);
}

static void test_crash(void)
{
    char p1[SECTORS + 1], p2[SECTORS + 1], p3[SECTORS + 1];
    crash_scenario(1, p1);
    crash_scenario(1, p2);
    crash_scenario(2, p3);
    printf("crash images (A old, B new): seed 1 %s, seed 2 %s\n", p1, p3);
    CHECK_STREQ(p1, p2); /* the same history and seed: the same image */
    CHECK(strcmp(p1, p3) != 0);
    CHECK(strchr(p1, 'A') != NULL && strchr(p1, 'B') != NULL);
}

/* ---- capacity ------------------------------------------------------------------------------ */

static void test_enospc(void)
{
    struct loom_simdisk *disk = disk_up(4, 65536, 4);
    static char buf[65536];
    int f = open_at("/f", O_RDWR | O_CREAT);
    CHECK_EQ(loom_write(f, buf, sizeof(buf), 0, 0, ND), 65536);
    CHECK_EQ(loom_write(f, buf, 1, 65536, 0, ND), -ENOSPC);
    CHECK_EQ(loom_fallocate(f, 0, 65536, 4096, ND), -ENOSPC);
    CHECK_EQ(loom_write(f, buf, 4096, 4096, 0, ND), 4096); /* overwriting needs no space */
    int g = open_at("/g", O_RDWR | O_CREAT);
    CHECK_EQ(loom_write(g, buf, 1, 0, 0, ND), -ENOSPC);
    struct loom_simdisk_stats st;
    loom_simdisk_stats(disk, &st);
    CHECK_EQ(st.enospc, 3);
    CHECK_EQ(st.used_bytes, 65536);
    CHECK_EQ(st.capacity_bytes, 65536);
    /* unlinked but open: still allocated; closed: freed */
    CHECK_EQ(loom_unlinkat(AT_FDCWD, "/f", 0, ND), 0);
    CHECK_EQ(loom_write(g, buf, 1, 0, 0, ND), -ENOSPC);
    CHECK_EQ(loom_close(f), 0);
    loom_simdisk_stats(disk, &st);
    CHECK_EQ(st.used_bytes, 0);
    CHECK_EQ(loom_write(g, buf, 40000, 0, 0, ND), 40000);
    CHECK_EQ(loom_ftruncate(g, 4096, ND), 0);
    loom_simdisk_stats(disk, &st);
    CHECK_EQ(st.used_bytes, 4096);
    CHECK_EQ(loom_close(g), 0);
    disk_down(disk);
}

/* ---- completion order ---------------------------------------------------------------------- */

#define ORDER_N 48

static int64_t completion_order(uint64_t seed, unsigned reorder, int order[ORDER_N])
{
    struct loom_simdisk *disk = disk_up(seed, 0, reorder);
    int fd = open_at("/o", O_RDWR | O_CREAT);
    static struct loom_io_req reqs[ORDER_N];
    static char bytes[ORDER_N];
    req_done_count = 0;
    for (int i = 0; i < ORDER_N; i++) {
        memset(&reqs[i], 0, sizeof(reqs[i]));
        bytes[i] = (char)i;
        reqs[i].kind = LOOM_IO_WRITE;
        reqs[i].fd = fd;
        reqs[i].addr = &bytes[i];
        reqs[i].len = 1;
        reqs[i].offset = (uint64_t)i;
        reqs[i].op.fn = req_done;
        reqs[i].op.data = (void *)(intptr_t)i;
        loom_io_start(&reqs[i]);
    }
    wait_done(ORDER_N);
    int pos[ORDER_N];
    for (int k = 0; k < ORDER_N; k++) {
        order[k] = req_order[k];
        pos[order[k]] = k;
        CHECK_EQ(req_results[order[k]], 1);
    }
    /* no request is overtaken by more than `reorder` later ones */
    for (int j = 0; j < ORDER_N; j++) {
        unsigned overtaken = 0;
        for (int i = j + 1; i < ORDER_N; i++)
            overtaken += pos[i] < pos[j];
        CHECK_LE(overtaken, reorder);
    }
    char back[ORDER_N];
    CHECK_EQ(loom_read(fd, back, ORDER_N, 0, 0, ND), ORDER_N);
    CHECK(memcmp(back, bytes, ORDER_N) == 0);
    struct loom_simdisk_stats st;
    loom_simdisk_stats(disk, &st);
    CHECK_EQ(reorder == 0, st.reordered == 0);
    int64_t now = loom_simdisk_now_ns(disk);
    CHECK_EQ(loom_close(fd), 0);
    disk_down(disk);
    return now;
}

static void test_order(void)
{
    int a[ORDER_N], b[ORDER_N], c[ORDER_N], fifo[ORDER_N];
    int64_t ta = completion_order(11, 8, a);
    int64_t tb = completion_order(11, 8, b);
    completion_order(12, 8, c);
    printf("completion order, seed 11:");
    for (int i = 0; i < 16; i++)
        printf(" %d", a[i]);
    printf(" ...; seed 12:");
    for (int i = 0; i < 16; i++)
        printf(" %d", c[i]);
    printf(" ...; virtual time %" PRId64 " ns\n", ta);
    CHECK(memcmp(a, b, sizeof(a)) == 0);
    CHECK_EQ(ta, tb);
    CHECK(memcmp(a, c, sizeof(a)) != 0);
    completion_order(11, 0, fifo);
    for (int i = 0; i < ORDER_N; i++)
        CHECK_EQ(fifo[i], i);
}

/* fault injection sits in front of any backend, the disk included */
static void test_faults_on_disk(void)
{
    struct loom_simdisk *disk = disk_up(6, 0, 4);
    struct loom_fault_rule rules[] = {
        {.kinds = 1u << LOOM_IO_WRITE, .nth = 1, .action = LOOM_FAULT_SHORT},
        {.kinds = 1u << LOOM_IO_FSYNC, .nth = 1, .action = LOOM_FAULT_FAIL, .error = -EIO},
    };
    struct loom_fault_config config = {.seed = 9, .rules = rules, .rule_count = 2};
    CHECK_EQ(loom_fault_enable(&config), 0);
    int fd = open_at("/f", O_RDWR | O_CREAT);
    static char buf[4096], back[4096];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (char)(i * 3);
    CHECK_EQ(loom_write(fd, buf, sizeof(buf), 0, 0, ND), 4096); /* shortened, continued */
    CHECK_EQ(loom_fsync(fd, 0, ND), -EIO);
    CHECK_EQ(loom_fault_fired(), 2);
    loom_fault_disable();
    CHECK_EQ(loom_read(fd, back, sizeof(back), 0, 0, ND), 4096);
    CHECK(memcmp(buf, back, sizeof(buf)) == 0);
    struct loom_simdisk_stats st;
    loom_simdisk_stats(disk, &st);
    CHECK_EQ(st.writes, 2);
    CHECK_EQ(st.fsyncs, 0); /* the failed fsync never reached the disk */
    CHECK_EQ(loom_close(fd), 0);
    disk_down(disk);
}

static void test_bad_config(void)
{
    struct loom_simdisk_config bad = {.latency_min_ns = 10, .latency_max_ns = 5};
    CHECK(loom_simdisk_create(&bad) == NULL);
    struct loom_simdisk_config odd = {.direct_align = 384};
    CHECK(loom_simdisk_create(&odd) == NULL);
    CHECK(loom_simdisk_create(NULL) == NULL);
}

static int test_main(void *arg)
{
    (void)arg;
    test_bad_config();
    test_namespace();
    test_data();
    test_fds();
    test_direct();
    test_crash();
    test_enospc();
    test_order();
    test_faults_on_disk();
    return 0;
}

int main(void)
{
    alarm(120);
    CHECK_EQ(test_run(1, test_main, NULL), 0);
    return 0;
}
