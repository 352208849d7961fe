/* SPDX-License-Identifier: MIT
 * iopool_cat.c - cat(1) through the IO thread pool: an ordinary threaded program (no loom
 * runtime) that opens, sizes and reads its files with io_uring via loom_iopool, keeping
 * several chunks in flight across file boundaries, and writes them to stdout in order.
 *
 *   iopool_cat [--threads N] [--chunk BYTES] [--depth N] FILE...   ("-" is stdin; see --help)
 *
 * Regular files are read ahead, up to --depth chunks in flight (the next files are opened
 * while the current one is still being written); pipes and terminals are read one chunk at
 * a time. A file that cannot be opened or read is reported and skipped; the exit status is 1
 * if any was.
 */
#define _GNU_SOURCE /* statx, AT_EMPTY_PATH */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <loom/iopool.h>

struct file {
    const char *path;
    int fd;
    uint64_t size;
    uint64_t next_offset; /* of the next chunk to submit */
    unsigned in_flight;   /* chunks submitted and not yet written */
    bool regular;
    bool failed;
};

struct slot {
    struct loom_iopool_req req;
    struct file *file; /* NULL: empty */
    char *buf;
};

static struct loom_iopool *pool;
static unsigned threads = 2, depth = 8;
static size_t chunk = 128 * 1024;
static int status = 0;

static void usage(FILE *out)
{
    fprintf(out, "usage: iopool_cat [--threads N] [--chunk BYTES] [--depth N] FILE...\n"
                 "Writes the FILEs to standard output in order, reading them through a pool of\n"
                 "io_uring IO threads (loom_iopool), up to DEPTH chunks in flight. '-' is stdin.\n"
                 "  --threads N    IO threads, 1..64 (default 2)\n"
                 "  --chunk BYTES  read size, 512..64M (default 131072)\n"
                 "  --depth N      chunks in flight, 1..1024 (default 8)\n"
                 "  --help         this text\n");
}

static bool parse_number(const char *text, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long n = strtol(text, &end, 10);
    if (errno || end == text || *end != '\0' || n < min || n > max)
        return false;
    *out = n;
    return true;
}

static void complain(const char *path, int err)
{
    fprintf(stderr, "iopool_cat: %s: %s\n", path, strerror(err));
    status = 1;
}

/* Writes all of buf to stdout; exits on failure (EPIPE included, as cat does). */
static void output(const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(STDOUT_FILENO, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            if (errno != EPIPE)
                fprintf(stderr, "iopool_cat: write error: %s\n", strerror(errno));
            exit(1);
        }
        buf += n;
        len -= (size_t)n;
    }
}

/* Opens and sizes `f` through the pool. False (reported) when it cannot be read. */
static bool open_file(struct file *f)
{
    if (strcmp(f->path, "-") == 0) {
        f->fd = STDIN_FILENO;
    } else {
        f->fd = loom_iopool_openat(pool, AT_FDCWD, f->path, O_RDONLY | O_CLOEXEC, 0);
        if (f->fd < 0) {
            complain(f->path, -f->fd);
            return false;
        }
    }
    struct statx stx;
    struct loom_iopool_req req;
    loom_iopool_prep_statx(&req, f->fd, "", AT_EMPTY_PATH, STATX_TYPE | STATX_SIZE, &stx);
    int rc = loom_iopool_submit(pool, &req, NULL, NULL);
    if (rc == 0)
        rc = loom_iopool_wait(&req);
    if (rc == 0 && S_ISDIR(stx.stx_mode))
        rc = -EISDIR;
    if (rc < 0) {
        complain(f->path, -rc);
        return false;
    }
    f->regular = S_ISREG(stx.stx_mode) && stx.stx_size > 0; /* /proc files claim size 0 */
    f->size = stx.stx_size;
    return true;
}

static void close_file(struct file *f)
{
    if (f->fd > STDIN_FILENO)
        loom_iopool_close(pool, f->fd);
    f->fd = -1;
}

/* Pipes, terminals, /proc files: one chunk at a time at the file position, until EOF. */
static void copy_stream(struct file *f, char *buf)
{
    for (;;) {
        ssize_t n = loom_iopool_pread(pool, f->fd, buf, chunk, (uint64_t)-1);
        if (n == -EINTR || n == -EAGAIN)
            continue;
        if (n < 0)
            complain(f->path, (int)-n);
        if (n <= 0)
            return;
        output(buf, (size_t)n);
    }
}

/* Writes the chunk of `s` (waiting for it) and empties the slot. */
static void retire(struct slot *s)
{
    struct file *f = s->file;
    int32_t n = loom_iopool_wait(&s->req);
    s->file = NULL;
    if (n < 0 && !f->failed) {
        complain(f->path, -n);
        f->failed = true;
    }
    if (!f->failed)
        output(s->buf, (size_t)n); /* short only if the file shrank meanwhile */
    if (--f->in_flight == 0 && f->next_offset >= f->size)
        close_file(f);
}

int main(int argc, char **argv)
{
    int first = 1;
    for (; first < argc && strncmp(argv[first], "--", 2) == 0; first++) {
        const char *opt = argv[first];
        long n;
        if (strcmp(opt, "--") == 0) {
            first++;
            break;
        }
        if (strcmp(opt, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        const char *value = first + 1 < argc ? argv[first + 1] : NULL;
        bool ok = value != NULL;
        if (ok && strcmp(opt, "--threads") == 0 && (ok = parse_number(value, 1, 64, &n)))
            threads = (unsigned)n;
        else if (ok && strcmp(opt, "--chunk") == 0 && (ok = parse_number(value, 512, 64 << 20, &n)))
            chunk = (size_t)n;
        else if (ok && strcmp(opt, "--depth") == 0 && (ok = parse_number(value, 1, 1024, &n)))
            depth = (unsigned)n;
        else if (ok)
            ok = false, value = NULL;
        if (!ok) {
            if (value)
                fprintf(stderr, "iopool_cat: bad value '%s' for %s\n", value, opt);
            else
                fprintf(stderr, "iopool_cat: unknown option or missing value: %s\n", opt);
            usage(stderr);
            return 2;
        }
        first++;
    }
    if (first >= argc) {
        fprintf(stderr, "iopool_cat: no files\n");
        usage(stderr);
        return 2;
    }
    int rc = loom_iopool_create(1, threads, NULL, &pool);
    if (rc < 0) {
        fprintf(stderr, "iopool_cat: cannot start the IO pool: %s\n", strerror(-rc));
        return 1;
    }
    unsigned nfiles = (unsigned)(argc - first);
    struct file *files = calloc(nfiles, sizeof(*files));
    struct slot *slots = calloc(depth, sizeof(*slots));
    if (!files || !slots) {
        fprintf(stderr, "iopool_cat: out of memory\n");
        return 1;
    }
    for (unsigned i = 0; i < depth; i++) {
        slots[i].buf = malloc(chunk);
        if (!slots[i].buf) {
            fprintf(stderr, "iopool_cat: out of memory\n");
            return 1;
        }
    }
    /* slots form a ring: [oldest, oldest + used) are in flight, in output order */
    unsigned oldest = 0, used = 0;
    for (unsigned i = 0; i < nfiles; i++) {
        struct file *f = &files[i];
        f->path = argv[first + (int)i];
        f->fd = -1;
        if (!open_file(f))
            continue;
        if (!f->regular) {
            for (; used > 0; used--, oldest = (oldest + 1) % depth)
                retire(&slots[oldest]);
            copy_stream(f, slots[0].buf);
            close_file(f);
            continue;
        }
        while (f->next_offset < f->size) {
            if (used == depth) { /* the window is full: write out the oldest chunk */
                retire(&slots[oldest]);
                oldest = (oldest + 1) % depth;
                used--;
            }
            struct slot *s = &slots[(oldest + used) % depth];
            uint64_t left = f->size - f->next_offset;
            loom_iopool_prep_read(&s->req, f->fd, s->buf, left < chunk ? left : chunk,
                                  f->next_offset);
            if ((rc = loom_iopool_submit(pool, &s->req, NULL, NULL)) < 0) {
                complain(f->path, -rc);
                break;
            }
            s->file = f;
            f->in_flight++;
            f->next_offset += chunk;
            used++;
        }
    }
    for (; used > 0; used--, oldest = (oldest + 1) % depth)
        retire(&slots[oldest]);
    for (unsigned i = 0; i < nfiles; i++) {
        if (files[i].fd >= 0)
            close_file(&files[i]);
    }
    loom_iopool_destroy(pool);
    for (unsigned i = 0; i < depth; i++)
        free(slots[i].buf);
    free(slots);
    free(files);
    return status;
}
