/* SPDX-License-Identifier: MIT
 * copy_file_test.c - examples/copy_file against files whose sizes sit on and around the
 * O_DIRECT alignment (0, 1, 4095, 4096, 1 MiB + 123): the copy has the source's exact size
 * and bytes, also with small blocks (many in flight, a partial last one) and over an existing
 * larger target (truncated). A missing source, or a missing --to, exits non-zero with a
 * message that says what is wrong.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static char dir[256];
static char program[512];
static char output[8192];

static void path_in_dir(char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s/%s", dir, name);
}

/* Writes `size` pseudo-random bytes (a function of `seed`) to `path`. */
static void write_file(const char *path, size_t size, uint64_t seed)
{
    unsigned char *data = malloc(size + 1);
    CHECK(data != NULL);
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < size; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data[i] = (unsigned char)x;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK_GE(fd, 0);
    CHECK_EQ(write(fd, data, size), (ssize_t)size);
    CHECK_EQ(close(fd), 0);
    free(data);
}

/* The whole file in a malloc'd buffer; *size gets its length. */
static unsigned char *read_file(const char *path, size_t *size)
{
    struct stat st;
    CHECK_EQ(stat(path, &st), 0);
    unsigned char *data = malloc((size_t)st.st_size + 1);
    CHECK(data != NULL);
    int fd = open(path, O_RDONLY);
    CHECK_GE(fd, 0);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, data + got, (size_t)st.st_size - got);
        CHECK_GT(n, 0);
        got += (size_t)n;
    }
    CHECK_EQ(close(fd), 0);
    *size = got;
    return data;
}

/* Runs copy_file with `extra` options (NULL-terminated, may be empty); returns its status. */
static int run_copy(const char *from, const char *to, const char *const *extra)
{
    char *argv[16];
    int n = 0;
    argv[n++] = program;
    if (from) {
        argv[n++] = "--from";
        argv[n++] = (char *)from;
    }
    if (to) {
        argv[n++] = "--to";
        argv[n++] = (char *)to;
    }
    argv[n++] = "--smp";
    argv[n++] = "1";
    for (; extra && *extra; extra++)
        argv[n++] = (char *)*extra;
    argv[n] = NULL;
    CHECK_LT(n, 16);
    int status = test_spawn(argv, NULL, output, sizeof(output), 60000);
    CHECK_GE(status, 0);
    CHECK(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void check_copy(size_t size, const char *const *extra)
{
    char source[320], target[320];
    path_in_dir(source, sizeof(source), "source");
    path_in_dir(target, sizeof(target), "target");
    write_file(source, size, size + 7);
    int status = run_copy(source, target, extra);
    if (status != 0)
        printf("copy_file output:\n%s\n", output);
    CHECK_EQ(status, 0);
    size_t a_size, b_size;
    unsigned char *a = read_file(source, &a_size);
    unsigned char *b = read_file(target, &b_size);
    CHECK_EQ(a_size, size);
    CHECK_EQ(b_size, size);
    CHECK(memcmp(a, b, size) == 0);
    free(a);
    free(b);
    printf("  %zu bytes%s%s: same size and bytes\n", size, extra && *extra ? ", " : "",
           extra && *extra ? extra[1] : "");
}

static void test_sizes(void)
{
    static const size_t sizes[] = {0, 1, 4095, 4096, (1 << 20) + 123};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        check_copy(sizes[i], NULL);
    /* many small blocks in flight, the last one partial */
    static const char *const small[] = {"--block", "4K", "--depth", "3", NULL};
    check_copy((1 << 20) + 123, small);
    static const char *const odd[] = {"--block", "12K", "--depth", "16", NULL};
    check_copy(3 * 12288 + 5000, odd);
}

static void test_overwrite(void)
{
    char target[320];
    path_in_dir(target, sizeof(target), "target");
    write_file(target, 3 << 20, 99); /* larger than the next source */
    check_copy(4095, NULL);
}

static void test_errors(void)
{
    char missing[320], target[320];
    path_in_dir(missing, sizeof(missing), "no-such-file");
    path_in_dir(target, sizeof(target), "target-of-missing");
    int status = run_copy(missing, target, NULL);
    CHECK_NE(status, 0);
    CHECK_CONTAINS(output, "no-such-file");
    CHECK_CONTAINS(output, "No such file or directory");
    CHECK(access(target, F_OK) != 0); /* nothing created */
    printf("  missing source: exit %d, \"%.*s\"\n", status, (int)strcspn(output, "\n"), output);

    char source[320];
    path_in_dir(source, sizeof(source), "source");
    write_file(source, 100, 1);
    CHECK_EQ(run_copy(source, NULL, NULL), 2);
    CHECK_CONTAINS(output, "--to");
    CHECK_EQ(run_copy(source, source, NULL), 1);
    CHECK_CONTAINS(output, "same file");
    static const char *const bad_block[] = {"--block", "1000", NULL};
    CHECK_EQ(run_copy(source, target, bad_block), 2);
    CHECK_CONTAINS(output, "--block");
}

static void test_help(void)
{
    char *argv[] = {program, "--help", NULL};
    int status = test_spawn(argv, NULL, output, sizeof(output), 30000);
    CHECK(WIFEXITED(status));
    CHECK_EQ(WEXITSTATUS(status), 0);
    CHECK_CONTAINS(output, "--from");
    CHECK_CONTAINS(output, "--depth");
}

static void remove_dir(void)
{
    static const char *const names[] = {"source", "target", "target-of-missing"};
    char path[320];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        path_in_dir(path, sizeof(path), names[i]);
        unlink(path);
    }
    rmdir(dir);
}

int main(void)
{
    snprintf(program, sizeof(program), "%s/../examples/copy_file", test_self_dir());
    if (access(program, X_OK) != 0)
        test_skip("examples/copy_file is not built (make examples)");
    const char *base = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/loom_copy_file_test.XXXXXX", base && *base ? base : "/tmp");
    CHECK(mkdtemp(dir) != NULL);
    test_help();
    test_sizes();
    test_overwrite();
    test_errors();
    remove_dir();
    printf("copy_file_test: passed\n");
    return TEST_EXIT_PASS;
}
