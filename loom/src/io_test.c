/* SPDX-License-Identifier: MIT
 * io_test.c - the file calls of io.h against a real file system: every call and its error
 * paths, O_DIRECT alignment checks and fixed (registered) buffers, the IO buffer pool's buddy
 * allocator, the --io-depth budget (in-order waiting, never failing), deadlines and
 * loom_io_cancel() on a request that blocks (a read from an empty pipe), and a foreign
 * backend installed with loom_io_backend_set().
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "loom/loom.h"

static char dir[256];

static int dirfd_open(void)
{
    int d = loom_openat(AT_FDCWD, dir, O_RDONLY | O_DIRECTORY, 0, LOOM_NO_DEADLINE);
    CHECK_GE(d, 0);
    return d;
}

static void test_basic_calls(void)
{
    int d = dirfd_open();
    CHECK_EQ(loom_mkdirat(d, "sub", 0755, LOOM_NO_DEADLINE), 0);
    CHECK_EQ(loom_mkdirat(d, "sub", 0755, LOOM_NO_DEADLINE), -EEXIST);
    int fd = loom_openat(d, "sub/a", O_RDWR | O_CREAT | O_EXCL, 0644, LOOM_NO_DEADLINE);
    CHECK_GE(fd, 0);
    CHECK_EQ(loom_openat(d, "sub/a", O_RDWR | O_CREAT | O_EXCL, 0644, LOOM_NO_DEADLINE), -EEXIST);
    CHECK_EQ(loom_openat(d, "missing/x", O_RDONLY, 0, LOOM_NO_DEADLINE), -ENOENT);

    char buf[8192];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (char)(i * 7);
    CHECK_EQ(loom_write(fd, buf, sizeof(buf), 0, 0, LOOM_NO_DEADLINE), (ssize_t)sizeof(buf));
    CHECK_EQ(loom_write(fd, "tail", 4, sizeof(buf), RWF_DSYNC, LOOM_NO_DEADLINE), 4);
    char back[8196];
    CHECK_EQ(loom_read(fd, back, sizeof(back), 0, 0, LOOM_NO_DEADLINE), (ssize_t)sizeof(back));
    CHECK(memcmp(back, buf, sizeof(buf)) == 0 && memcmp(back + sizeof(buf), "tail", 4) == 0);
    CHECK_EQ(loom_read(fd, back, 100, 1 << 20, 0, LOOM_NO_DEADLINE), 0); /* past the end */

    /* vectors */
    char x[3] = "abc", y[5] = "defgh";
    struct iovec wv[2] = {{x, 3}, {y, 5}};
    CHECK_EQ(loom_writev(fd, wv, 2, 100, 0, LOOM_NO_DEADLINE), 8);
    char p[4], q[4];
    struct iovec rv[2] = {{p, 4}, {q, 4}};
    CHECK_EQ(loom_readv(fd, rv, 2, 100, 0, LOOM_NO_DEADLINE), 8);
    CHECK(memcmp(p, "abcd", 4) == 0 && memcmp(q, "efgh", 4) == 0);
    CHECK_EQ(loom_readv(fd, rv, -1, 0, 0, LOOM_NO_DEADLINE), -EINVAL);

    CHECK_EQ(loom_fsync(fd, 0, LOOM_NO_DEADLINE), 0);
    CHECK_EQ(loom_fsync(fd, LOOM_FSYNC_DATA, LOOM_NO_DEADLINE), 0);
    CHECK_EQ(loom_fallocate(fd, 0, 0, 1 << 20, LOOM_NO_DEADLINE), 0);
    struct statx stx;
    CHECK_EQ(loom_statx(d, "sub/a", 0, STATX_SIZE | STATX_BLOCKS, &stx, LOOM_NO_DEADLINE), 0);
    CHECK_EQ(stx.stx_size, (uint64_t)1 << 20);
    CHECK_EQ(loom_ftruncate(fd, 4096, LOOM_NO_DEADLINE), 0);
    CHECK_EQ(loom_statx(fd, "", AT_EMPTY_PATH, STATX_SIZE, &stx, LOOM_NO_DEADLINE), 0);
    CHECK_EQ(stx.stx_size, 4096u);
    CHECK_EQ(loom_statx(d, "nope", 0, STATX_SIZE, &stx, LOOM_NO_DEADLINE), -ENOENT);

    CHECK_EQ(loom_renameat(d, "sub/a", d, "sub/b", 0, LOOM_NO_DEADLINE), 0);
    CHECK_EQ(loom_renameat(d, "sub/a", d, "sub/c", 0, LOOM_NO_DEADLINE), -ENOENT);
    CHECK_EQ(loom_fsync_dir(d, "sub", LOOM_NO_DEADLINE), 0);
    CHECK_EQ(loom_fsync_dir(d, "nodir", LOOM_NO_DEADLINE), -ENOENT);
    CHECK_EQ(loom_close(fd), 0);
    CHECK_EQ(loom_close(fd), -EBADF);
    CHECK_EQ(loom_read(fd, back, 10, 0, 0, LOOM_NO_DEADLINE), -EBADF);
    CHECK_EQ(loom_fsync(-1, 0, LOOM_NO_DEADLINE), -EBADF);
    CHECK_EQ(loom_unlinkat(d, "sub", AT_REMOVEDIR, LOOM_NO_DEADLINE), -ENOTEMPTY);
    CHECK_EQ(loom_unlinkat(d, "sub/b", 0, LOOM_NO_DEADLINE), 0);
    CHECK_EQ(loom_unlinkat(d, "sub/b", 0, LOOM_NO_DEADLINE), -ENOENT);
    CHECK_EQ(loom_unlinkat(d, "sub", AT_REMOVEDIR, LOOM_NO_DEADLINE), 0);
    CHECK_EQ(loom_close(d), 0);
}

static void test_direct(void)
{
    int d = dirfd_open();
    int fd = loom_openat(d, "direct", O_RDWR | O_CREAT | O_DIRECT, 0644, LOOM_NO_DEADLINE);
    if (fd == -EINVAL) {
        printf("  (this file system refuses O_DIRECT: alignment checks not exercised)\n");
        CHECK_EQ(loom_close(d), 0);
        return;
    }
    CHECK_GE(fd, 0);
    unsigned align = loom_io_direct_align(fd);
    CHECK_GE(align, 512u);
    CHECK_EQ(align & (align - 1), 0u);
    CHECK_LE(align, loom_iobuf_align() * 1024);
    char *buf = loom_iobuf_alloc(64 * 1024);
    CHECK(buf != NULL);
    CHECK_EQ((uintptr_t)buf % loom_iobuf_align(), 0u);
    memset(buf, 'd', 64 * 1024);
    /* misaligned offset, length and address: -EINVAL before the kernel sees them */
    CHECK_EQ(loom_write(fd, buf, 4096, 100, 0, LOOM_NO_DEADLINE), -EINVAL);
    CHECK_EQ(loom_write(fd, buf, 100, 0, 0, LOOM_NO_DEADLINE), -EINVAL);
    CHECK_EQ(loom_read(fd, buf + 1, 4096, 0, 0, LOOM_NO_DEADLINE), -EINVAL);
    struct iovec bad[1] = {{buf, 1000}};
    CHECK_EQ(loom_writev(fd, bad, 1, 0, 0, LOOM_NO_DEADLINE), -EINVAL);
    /* aligned: plain and fixed */
    CHECK_EQ(loom_write(fd, buf, 64 * 1024, 0, 0, LOOM_NO_DEADLINE), 64 * 1024);
    memset(buf, 'e', 32 * 1024);
    CHECK_EQ(loom_write_fixed(fd, buf, 32 * 1024, 64 * 1024, LOOM_NO_DEADLINE), 32 * 1024);
    memset(buf, 0, 64 * 1024);
    CHECK_EQ(loom_read_fixed(fd, buf, 64 * 1024, 32 * 1024, LOOM_NO_DEADLINE), 64 * 1024);
    CHECK_EQ(buf[0], 'd');
    CHECK_EQ(buf[32 * 1024 - 1], 'd');
    CHECK_EQ(buf[32 * 1024], 'e');
    CHECK_EQ(buf[64 * 1024 - 1], 'e');
    /* fixed IO needs a pool buffer */
    static char outside[8192] __attribute__((aligned(4096)));
    CHECK_EQ(loom_read_fixed(fd, outside, 4096, 0, LOOM_NO_DEADLINE), -EINVAL);
    CHECK_EQ(loom_close(fd), 0);
    CHECK_EQ(loom_io_direct_align(fd), 0u); /* forgotten at close */
    loom_iobuf_free(buf);
    CHECK_EQ(loom_unlinkat(d, "direct", 0, LOOM_NO_DEADLINE), 0);
    CHECK_EQ(loom_close(d), 0);
}

static void test_iobuf_pool(void)
{
    struct loom_io_stats st;
    loom_io_stats_get(&st);
    CHECK_GE(st.iobuf_bytes, (uint64_t)1 << 20);
    CHECK_EQ(st.iobuf_in_use, 0u);
    size_t total = st.iobuf_bytes;
    /* take the whole pool in 4 KiB blocks, then give it back: it merges into whole blocks */
    size_t n = total / 4096;
    void **blocks = malloc(n * sizeof(*blocks));
    for (size_t i = 0; i < n; i++) {
        blocks[i] = loom_iobuf_alloc(4096);
        CHECK(blocks[i] != NULL);
        memset(blocks[i], (int)i, 64);
    }
    CHECK(loom_iobuf_alloc(1) == NULL); /* exhausted: NULL, not a crash */
    loom_io_stats_get(&st);
    CHECK_EQ(st.iobuf_in_use, total);
    for (size_t i = 0; i < n; i += 2)
        loom_iobuf_free(blocks[i]);
    CHECK(loom_iobuf_alloc(8192) == NULL); /* every other block free: no 8 KiB run */
    for (size_t i = 1; i < n; i += 2)
        loom_iobuf_free(blocks[i]);
    loom_io_stats_get(&st);
    CHECK_EQ(st.iobuf_in_use, 0u);
    void *big = loom_iobuf_alloc(total < ((size_t)16 << 20) ? total : ((size_t)16 << 20));
    CHECK(big != NULL); /* coalesced back to the largest block */
    loom_iobuf_free(big);
    CHECK(loom_iobuf_alloc(((size_t)16 << 20) + 1) == NULL); /* above the largest block */
    free(blocks);
}

/* ---- the depth budget -------------------------------------------------------------------------
 */

struct depth_probe {
    unsigned done, max_seen;
    unsigned order[64];
    struct loom_baton all;
};

static void depth_done(struct loom_op *op)
{
    struct depth_probe *p = op->data;
    CHECK_EQ(op->res, 4096);
    struct loom_io_req *req = (struct loom_io_req *)op;
    p->order[p->done++] = (unsigned)(req->offset / 4096);
    if (p->done == 64)
        loom_baton_post(&p->all);
}

struct sync_probe {
    unsigned ok, cancelled;
};

static void sync_done(struct loom_op *op)
{
    struct sync_probe *p = op->data;
    if (op->res == 0)
        p->ok++;
    else if (op->res == -ECANCELED)
        p->cancelled++;
}

static void test_depth_budget(void)
{
    int d = dirfd_open();
    int fd = loom_openat(d, "depth", O_RDWR | O_CREAT, 0644, LOOM_NO_DEADLINE);
    CHECK_GE(fd, 0);
    static char data[4096];
    static struct loom_io_req reqs[64];
    struct depth_probe p = {0};
    loom_baton_init(&p.all);
    struct loom_io_stats before, mid;
    loom_io_stats_get(&before);
    CHECK_EQ(before.disk_depth, 4u); /* set by main() */
    for (unsigned i = 0; i < 64; i++) {
        memset(&reqs[i], 0, sizeof(reqs[i]));
        reqs[i].kind = LOOM_IO_WRITE;
        reqs[i].fd = fd;
        reqs[i].addr = data;
        reqs[i].len = sizeof(data);
        reqs[i].offset = (uint64_t)i * 4096;
        reqs[i].op.fn = depth_done;
        reqs[i].op.data = &p;
        loom_io_start(&reqs[i]);
        loom_io_stats_get(&mid);
        CHECK_LE(mid.disk_in_flight, 4u); /* never more than the budget */
    }
    CHECK_EQ(mid.disk_waits - before.disk_waits, 60u); /* 60 waited, none failed */
    CHECK_EQ(loom_baton_wait(&p.all, LOOM_NO_DEADLINE), 0);
    /* waiters start in the order they came: the first four may finish in any order, but
     * request i (i >= 4) cannot finish before request i - 4 started */
    for (unsigned i = 0; i < 64; i++)
        CHECK_LT(p.order[i], i + 4);
    /* a request still waiting for the budget is cancelled without reaching the kernel */
    struct sync_probe p2 = {0};
    for (unsigned i = 0; i < 5; i++) {
        memset(&reqs[i], 0, sizeof(reqs[i]));
        reqs[i].kind = LOOM_IO_FSYNC;
        reqs[i].fd = fd;
        reqs[i].op.fn = sync_done;
        reqs[i].op.data = &p2;
    }
    for (unsigned i = 0; i < 5; i++)
        loom_io_start(&reqs[i]);
    CHECK_EQ(loom_io_cancel_req(&reqs[4]), 0);
    CHECK_EQ(p2.cancelled, 0u); /* completions never run inline */
    while (p2.ok + p2.cancelled < 5)
        loom_nop();
    CHECK_EQ(p2.ok, 4u);
    CHECK_EQ(p2.cancelled, 1u);
    CHECK_EQ(loom_close(fd), 0);
    CHECK_EQ(loom_unlinkat(d, "depth", 0, LOOM_NO_DEADLINE), 0);
    CHECK_EQ(loom_close(d), 0);
    loom_baton_deinit(&p.all);
}

/* ---- deadlines and cancellation ------------------------------------------------------------- */

struct canceller {
    struct loom_fiber *target;
};

static int cancel_fiber(void *arg)
{
    struct canceller *c = arg;
    loom_sleep(20 * LOOM_NS_PER_MS);
    loom_io_cancel(c->target);
    return 0;
}

static void test_deadline_cancel(void)
{
    int fds[2];
    CHECK_EQ(pipe(fds), 0);
    char buf[16];
    int64_t start = loom_now_ns();
    CHECK_EQ(loom_read(fds[0], buf, sizeof(buf), (uint64_t)-1, 0, start + 50 * LOOM_NS_PER_MS),
             -ETIMEDOUT);
    CHECK_GE(loom_now_ns() - start, 45 * LOOM_NS_PER_MS);
    struct loom_io_stats st;
    loom_io_stats_get(&st);
    CHECK_GE(st.timeouts, 1u);
    CHECK_EQ(st.disk_in_flight, 0u); /* the cancelled read has completed */

    /* another fiber interrupts a blocked read */
    struct canceller c = {.target = loom_fiber_self()};
    CHECK_EQ(loom_spawn(NULL, cancel_fiber, &c, NULL), 0);
    start = loom_now_ns();
    CHECK_EQ(loom_read(fds[0], buf, sizeof(buf), (uint64_t)-1, 0, LOOM_NO_DEADLINE), -ECANCELED);
    CHECK_LT(loom_now_ns() - start, 5 * LOOM_NS_PER_S);
    /* a cancel for a fiber not blocked ends its next call at once */
    loom_io_cancel(loom_fiber_self());
    CHECK_EQ(loom_fsync(fds[1], 0, LOOM_NO_DEADLINE), -ECANCELED);
    /* data that is there wins over a deadline already near */
    CHECK_EQ(write(fds[1], "hello", 5), 5);
    CHECK_EQ(loom_read(fds[0], buf, sizeof(buf), (uint64_t)-1, 0, loom_now_ns() + LOOM_NS_PER_S),
             5);
    CHECK_EQ(loom_close(fds[0]), 0);
    CHECK_EQ(loom_close(fds[1]), 0);
}

/* ---- a foreign backend ------------------------------------------------------------------------
 */

struct echo_backend {
    unsigned started;
};

static void echo_start(void *ctx, struct loom_io_req *req)
{
    struct echo_backend *b = ctx;
    b->started++;
    /* pretend every transfer fully succeeded; everything else returns 0 */
    int32_t res = 0;
    if (req->kind == LOOM_IO_READ || req->kind == LOOM_IO_WRITE)
        res = (int32_t)req->len;
    loom_io_complete(req, res);
}

static void test_backend_switch(void)
{
    struct echo_backend eb = {0};
    struct loom_io_backend backend = {.name = "echo", .start = echo_start, .ctx = &eb};
    const struct loom_io_backend *prev = loom_io_backend_get();
    CHECK_STREQ(prev->name, "io_uring");
    loom_io_backend_set(&backend);
    char buf[100];
    CHECK_EQ(loom_read(12345, buf, sizeof(buf), 0, 0, LOOM_NO_DEADLINE), 100);
    CHECK_EQ(loom_fsync(12345, 0, LOOM_NO_DEADLINE), 0);
    CHECK_EQ(eb.started, 2u);
    loom_io_backend_set(NULL);
    CHECK_STREQ(loom_io_backend_get()->name, "io_uring");
    CHECK_EQ(loom_fsync(12345, 0, LOOM_NO_DEADLINE), -EBADF); /* the real kernel again */
}

static int test_main(void *arg)
{
    (void)arg;
    test_basic_calls();
    test_direct();
    test_iobuf_pool();
    test_depth_budget();
    test_deadline_cancel();
    test_backend_switch();
    return 0;
}

/* A pool size that is not a power of two is used whole: 6 MiB = 4 + 2. */
static int odd_pool_main(void *arg)
{
    (void)arg;
    struct loom_io_stats st;
    loom_io_stats_get(&st);
    CHECK_EQ(st.iobuf_bytes, (uint64_t)6 << 20);
    void *a = loom_iobuf_alloc((size_t)4 << 20);
    void *b = loom_iobuf_alloc((size_t)2 << 20);
    CHECK(a != NULL && b != NULL);
    CHECK(loom_iobuf_alloc(4096) == NULL);
    loom_iobuf_free(a);
    loom_iobuf_free(b);
    CHECK(loom_iobuf_alloc((size_t)4 << 20) != NULL);
    return 0;
}

int main(void)
{
    alarm(120);
    const char *base = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/loom_io_test.XXXXXX", base && *base ? base : "/tmp");
    CHECK(mkdtemp(dir) != NULL);
    struct loom_config config;
    test_config(&config, 1);
    config.io_depth = 4;
    config.io_buffer_bytes = (size_t)4 << 20;
    int rc = loom_run(&config, test_main, NULL);
    rmdir(dir);
    CHECK_EQ(rc, 0);
    test_config(&config, 1);
    config.io_buffer_bytes = (size_t)6 << 20;
    CHECK_EQ(loom_run(&config, odd_pool_main, NULL), 0);
    return 0;
}
