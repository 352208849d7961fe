/* SPDX-License-Identifier: MIT
 * harness.h - the test harness: each *_test.c is its own program.
 *
 * Exit status 0 = pass, 1 = fail, 77 = skip (as liburing's tests). CHECK_* print both sides
 * and the location, then exit 1 at once (from any thread: _exit, no atexit handlers).
 * LOOM_TEST_SCALE (percent, default 100) scales iteration counts: asan runs use 10.
 */
#ifndef LOOM_TEST_HARNESS_H
#define LOOM_TEST_HARNESS_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loom/app.h"

#define TEST_EXIT_PASS 0
#define TEST_EXIT_FAIL 1
#define TEST_EXIT_SKIP 77

void test_fail_(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            test_fail_(__FILE__, __LINE__, "CHECK(%s) failed", #cond);                             \
    } while (0)

#define CHECK_OP_(a, op, b)                                                                        \
    do {                                                                                           \
        int64_t a_ = (int64_t)(a), b_ = (int64_t)(b);                                              \
        if (!(a_ op b_))                                                                           \
            test_fail_(__FILE__, __LINE__, "CHECK(%s %s %s) failed: %" PRId64 " vs %" PRId64, #a,  \
                       #op, #b, a_, b_);                                                           \
    } while (0)

#define CHECK_EQ(a, b) CHECK_OP_(a, ==, b)
#define CHECK_NE(a, b) CHECK_OP_(a, !=, b)
#define CHECK_LT(a, b) CHECK_OP_(a, <, b)
#define CHECK_LE(a, b) CHECK_OP_(a, <=, b)
#define CHECK_GT(a, b) CHECK_OP_(a, >, b)
#define CHECK_GE(a, b) CHECK_OP_(a, >=, b)

#define CHECK_STREQ(a, b)                                                                          \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        if (strcmp(a_, b_) != 0)                                                                   \
            test_fail_(__FILE__, __LINE__, "CHECK_STREQ(%s, %s) failed: \"%s\" vs \"%s\"", #a, #b, \
                       a_, b_);                                                                    \
    } while (0)

#define CHECK_CONTAINS(haystack, needle)                                                           \
    do {                                                                                           \
        const char *h_ = (haystack), *n_ = (needle);                                               \
        if (strstr(h_, n_) == NULL)                                                                \
            test_fail_(__FILE__, __LINE__, "CHECK_CONTAINS(%s, \"%s\") failed in:\n%s", #haystack, \
                       n_, h_);                                                                    \
    } while (0)

/* Ends the test as skipped, printing why. */
void test_skip(const char *reason) __attribute__((noreturn));

/* n scaled by LOOM_TEST_SCALE percent, at least 1. */
int64_t test_scale(int64_t n);

/* True under AddressSanitizer / ThreadSanitizer / valgrind. */
bool test_under_asan(void);
bool test_under_tsan(void);
bool test_under_valgrind(void);

/* A loom configuration for tests: `smp` cores (0 = all), no spinning (--poll-us 0), a small
 * memory budget and a short shutdown grace. */
void test_config(struct loom_config *config, unsigned smp);

/* Runs `fn(arg)` as the main fiber of a runtime from test_config(smp) and returns its exit
 * status. */
int test_run(unsigned smp, loom_fiber_fn fn, void *arg);

/* Runs argv[0] (a path) with argv in a child, stdin from /dev/null, stdout and stderr captured
 * together into `out` (NUL-terminated, cut at out_size - 1). Waits at most timeout_ms, killing
 * the child with SIGKILL after that. Returns the wait status, or -1 on a spawn error.
 * `env` may be NULL (inherit) or NAME=VALUE strings to add. */
int test_spawn(char *const argv[], char *const env[], char *out, size_t out_size, int timeout_ms);

/* The path of the running test binary's directory (for finding helper binaries). */
const char *test_self_dir(void);

#endif
