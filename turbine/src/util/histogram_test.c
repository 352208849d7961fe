/* SPDX-License-Identifier: MIT
 * histogram_test.c - the log-linear histogram: bucket bounds tile the u64 range with width at
 * most 1/128 of the bucket's lowest value; exact small values; percentiles of known
 * distributions within the precision bound and never below the true value; merge equals
 * recording everything in one; the extremes 0 and UINT64_MAX; monotone percentiles; reset and
 * iteration.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "util/histogram.h"

/* Histograms are ~58 KiB each: static, not on the stack. */
static struct turbine_histogram h1, h2, h3;

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng_next(void)
{
    /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

/* A value spread over every order of magnitude of u64: random bits under a random msb. */
static uint64_t rng_log_value(void)
{
    unsigned bits = (unsigned)(rng_next() % 65);
    if (bits == 0)
        return 0;
    uint64_t v = rng_next();
    return bits == 64 ? v : (v & ((UINT64_C(1) << bits) - 1)) | (UINT64_C(1) << (bits - 1));
}

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* `reported` is the true value or at most 1/128 above it. */
static void check_close(uint64_t truth, uint64_t reported)
{
    if (reported < truth || (reported - truth) > truth / 128)
        test_fail_(__FILE__, __LINE__, "percentile %" PRIu64 " for true value %" PRIu64, reported,
                   truth);
}

static void check_bucket_layout(void)
{
    CHECK_EQ(turbine_histogram_lowest(0), 0);
    CHECK(turbine_histogram_highest(TURBINE_HISTOGRAM_BUCKETS - 1) == UINT64_MAX);
    CHECK_EQ(turbine_histogram_index(UINT64_MAX), TURBINE_HISTOGRAM_BUCKETS - 1);
    for (uint32_t i = 0; i < TURBINE_HISTOGRAM_BUCKETS; i++) {
        uint64_t lowest = turbine_histogram_lowest(i), highest = turbine_histogram_highest(i);
        CHECK(lowest <= highest);
        CHECK_EQ(turbine_histogram_index(lowest), i);
        CHECK_EQ(turbine_histogram_index(highest), i);
        if (i < 256)
            CHECK(lowest == highest); /* exact */
        else
            CHECK((highest - lowest + 1) * 128 <= lowest); /* width <= lowest / 128 */
        if (i + 1 < TURBINE_HISTOGRAM_BUCKETS)
            CHECK(turbine_histogram_lowest(i + 1) == highest + 1); /* no gap, no overlap */
    }
    /* random values land in a bucket whose bounds hold them */
    for (int64_t n = test_scale(1000000); n > 0; n--) {
        uint64_t v = rng_log_value();
        uint32_t i = turbine_histogram_index(v);
        CHECK(turbine_histogram_lowest(i) <= v);
        CHECK(v <= turbine_histogram_highest(i));
    }
}

static void check_small_exact(void)
{
    turbine_histogram_init(&h1);
    CHECK_EQ(turbine_histogram_count(&h1), 0);
    CHECK_EQ(turbine_histogram_percentile(&h1, 50), 0);
    CHECK(turbine_histogram_mean(&h1) == 0);
    struct turbine_histogram_bucket b;
    CHECK(!turbine_histogram_bucket_first(&h1, &b));
    for (uint64_t v = 1; v <= 100; v++)
        turbine_histogram_record(&h1, v);
    CHECK_EQ(turbine_histogram_count(&h1), 100);
    CHECK_EQ(turbine_histogram_percentile(&h1, 0), 1);
    CHECK_EQ(turbine_histogram_percentile(&h1, 1), 1);
    CHECK_EQ(turbine_histogram_percentile(&h1, 50), 50);
    CHECK_EQ(turbine_histogram_percentile(&h1, 50.5), 51);
    CHECK_EQ(turbine_histogram_percentile(&h1, 90), 90);
    CHECK_EQ(turbine_histogram_percentile(&h1, 99), 99);
    CHECK_EQ(turbine_histogram_percentile(&h1, 99.9), 100);
    CHECK_EQ(turbine_histogram_percentile(&h1, 100), 100);
    CHECK(turbine_histogram_mean(&h1) == 50.5);
    /* 1000 values 1..1000: p99.9 is the 999th, not the 1000th (rounding of 99.9 / 100) */
    turbine_histogram_reset(&h1);
    for (uint64_t v = 1; v <= 1000; v++)
        turbine_histogram_record(&h1, v);
    check_close(999, turbine_histogram_percentile(&h1, 99.9));
    CHECK(turbine_histogram_percentile(&h1, 99.9) < 1000);
    check_close(500, turbine_histogram_percentile(&h1, 50));
    CHECK(turbine_histogram_mean(&h1) == 500.5);
}

/* 1..n each once, and a bimodal 90% at 1 ms / 10% at 100 ms (as latencies in ns). */
static void check_known_distributions(void)
{
    turbine_histogram_reset(&h1);
    const uint64_t n = 100000;
    for (uint64_t v = 1; v <= n; v++)
        turbine_histogram_record(&h1, v);
    CHECK_EQ(turbine_histogram_count(&h1), n);
    CHECK(turbine_histogram_mean(&h1) == (double)(n + 1) / 2);
    check_close(50000, turbine_histogram_percentile(&h1, 50));
    check_close(90000, turbine_histogram_percentile(&h1, 90));
    check_close(99000, turbine_histogram_percentile(&h1, 99));
    check_close(99900, turbine_histogram_percentile(&h1, 99.9));
    CHECK_EQ(turbine_histogram_percentile(&h1, 100), n);

    turbine_histogram_reset(&h1);
    turbine_histogram_record_n(&h1, 1000000, 900);
    turbine_histogram_record_n(&h1, 100000000, 100);
    turbine_histogram_record_n(&h1, 5, 0); /* nothing */
    CHECK_EQ(turbine_histogram_count(&h1), 1000);
    check_close(1000000, turbine_histogram_percentile(&h1, 50));
    check_close(1000000, turbine_histogram_percentile(&h1, 90));
    check_close(100000000, turbine_histogram_percentile(&h1, 90.1));
    CHECK_EQ(turbine_histogram_percentile(&h1, 99), 100000000); /* clamped to max */
    CHECK_EQ(turbine_histogram_percentile(&h1, 0), 1000000);    /* min */
    CHECK(turbine_histogram_mean(&h1) == 10900000.0);
}

/* Random values over the whole range: every percentile is the true one or <= 1/128 above, and
 * the percentiles never decrease as p grows. */
static void check_random_against_sorted(void)
{
    size_t n = (size_t)test_scale(200000);
    uint64_t *values = malloc(n * sizeof(*values));
    CHECK(values != NULL);
    turbine_histogram_reset(&h1);
    for (size_t i = 0; i < n; i++) {
        values[i] = rng_log_value();
        turbine_histogram_record(&h1, values[i]);
    }
    qsort(values, n, sizeof(*values), compare_u64);
    uint64_t previous = 0;
    for (int tenths = 0; tenths <= 1000; tenths++) {
        double p = tenths / 10.0;
        uint64_t reported = turbine_histogram_percentile(&h1, p);
        size_t rank = (size_t)ceil(p / 100.0 * (double)n - 1e-7);
        uint64_t truth = values[rank == 0 ? 0 : rank - 1];
        check_close(truth, reported);
        CHECK(reported >= previous);
        previous = reported;
    }
    CHECK(turbine_histogram_percentile(&h1, 100) == values[n - 1]);
    CHECK(turbine_histogram_percentile(&h1, 0) == values[0]);
    free(values);
}

static void check_merge(void)
{
    turbine_histogram_reset(&h1);
    turbine_histogram_reset(&h2);
    turbine_histogram_reset(&h3);
    for (int64_t n = test_scale(100000); n > 0; n--) {
        uint64_t a = rng_log_value() >> 20, b = rng_log_value();
        turbine_histogram_record(&h1, a);
        turbine_histogram_record(&h2, b);
        turbine_histogram_record(&h3, a);
        turbine_histogram_record(&h3, b);
    }
    turbine_histogram_merge(&h1, &h2);
    CHECK_EQ(turbine_histogram_count(&h1), turbine_histogram_count(&h3));
    CHECK(h1.min == h3.min);
    CHECK(h1.max == h3.max);
    CHECK(h1.sum == h3.sum);
    CHECK(memcmp(h1.counts, h3.counts, sizeof(h1.counts)) == 0);
    for (double p = 0; p <= 100; p += 0.5)
        CHECK(turbine_histogram_percentile(&h1, p) == turbine_histogram_percentile(&h3, p));
    /* merging an empty one changes nothing; merging into an empty one copies */
    turbine_histogram_reset(&h2);
    turbine_histogram_merge(&h1, &h2);
    CHECK(memcmp(&h1, &h3, sizeof(h1)) == 0);
    turbine_histogram_merge(&h2, &h3);
    CHECK(memcmp(&h2, &h3, sizeof(h2)) == 0);
}

static void check_extremes(void)
{
    turbine_histogram_reset(&h1);
    turbine_histogram_record(&h1, 0);
    turbine_histogram_record(&h1, UINT64_MAX);
    turbine_histogram_record(&h1, UINT64_MAX);
    turbine_histogram_record(&h1, UINT64_MAX - 1);
    CHECK_EQ(turbine_histogram_count(&h1), 4);
    CHECK_EQ(turbine_histogram_percentile(&h1, 0), 0);
    CHECK_EQ(turbine_histogram_percentile(&h1, 25), 0);
    CHECK(turbine_histogram_percentile(&h1, 26) == UINT64_MAX); /* top bucket, clamped to max */
    CHECK(turbine_histogram_percentile(&h1, 100) == UINT64_MAX);
    /* the sum passes 2^64 and stays exact */
    double expected = 3.0 * (double)UINT64_MAX / 4.0;
    CHECK(fabs(turbine_histogram_mean(&h1) - expected) <= expected * 1e-12);
    struct turbine_histogram_bucket b;
    CHECK(turbine_histogram_bucket_first(&h1, &b));
    CHECK(b.lowest == 0 && b.highest == 0 && b.count == 1 && b.cumulative == 1);
    CHECK(turbine_histogram_bucket_next(&h1, &b));
    CHECK(b.highest == UINT64_MAX && b.count == 3 && b.cumulative == 4);
    CHECK(!turbine_histogram_bucket_next(&h1, &b));
}

/* Iteration sees every value once, in increasing order of bucket; reset empties. */
static void check_iteration_and_reset(void)
{
    turbine_histogram_reset(&h1);
    for (int64_t n = test_scale(50000); n > 0; n--)
        turbine_histogram_record(&h1, rng_log_value() >> (rng_next() % 64));
    struct turbine_histogram_bucket b;
    uint64_t total = 0, last_highest = 0;
    int buckets = 0;
    for (bool ok = turbine_histogram_bucket_first(&h1, &b); ok;
         ok = turbine_histogram_bucket_next(&h1, &b)) {
        CHECK(b.count > 0);
        CHECK(buckets == 0 || b.lowest > last_highest);
        total += b.count;
        CHECK(b.cumulative == total);
        last_highest = b.highest;
        buckets++;
    }
    CHECK(total == turbine_histogram_count(&h1));
    CHECK(buckets > 100);
    turbine_histogram_reset(&h1);
    CHECK_EQ(turbine_histogram_count(&h1), 0);
    CHECK(!turbine_histogram_bucket_first(&h1, &b));
    turbine_histogram_init(&h2);
    CHECK(memcmp(&h1, &h2, sizeof(h1)) == 0);
}

int main(void)
{
    check_bucket_layout();
    check_small_exact();
    check_known_distributions();
    check_random_against_sorted();
    check_merge();
    check_extremes();
    check_iteration_and_reset();
    printf("histogram_test: ok (%d buckets, %zu bytes)\n", TURBINE_HISTOGRAM_BUCKETS,
           sizeof(struct turbine_histogram));
    return 0;
}
