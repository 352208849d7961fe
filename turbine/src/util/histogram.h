/* SPDX-License-Identifier: MIT
 * histogram.h - a log-linear histogram of u64 values (latencies in ns, sizes in bytes), in the
 * manner of HdrHistogram: fixed memory, O(1) record, relative error below 1/128 (0.79%).
 *
 * Layout: values below 256 have a bucket each (exact). Above, every power of two [2^k, 2^k+1)
 * (k >= 8) is split into 128 equal sub-buckets of width 2^(k-7); a value v is counted in bucket
 *     shift = max(0, msb(v) - 7),  index = shift * 128 + (v >> shift)
 * so index < TURBINE_HISTOGRAM_BUCKETS for every u64, and a bucket's width is at most 1/128 of
 * its lowest value. The whole u64 range is covered: nothing is clamped or dropped.
 *
 * The caller owns the struct (about 58 KiB; no allocation ever), and it is not thread-safe:
 * one writer, or one histogram per thread/core merged afterwards.
 */
#ifndef TURBINE_UTIL_HISTOGRAM_H
#define TURBINE_UTIL_HISTOGRAM_H

#include <stdbool.h>
#include <stdint.h>

#define TURBINE_HISTOGRAM_SUB_BITS 7
#define TURBINE_HISTOGRAM_SUB      (1u << TURBINE_HISTOGRAM_SUB_BITS) /* 128 */
/* the largest index: shift 56 (msb 63), v >> 56 = 255 */
#define TURBINE_HISTOGRAM_BUCKETS                                                                  \
    ((64 - TURBINE_HISTOGRAM_SUB_BITS - 1) * TURBINE_HISTOGRAM_SUB + 256)

struct turbine_histogram {
    unsigned __int128 sum; /* exact; cannot overflow below 2^64 values */
    uint64_t count;        /* values recorded */
    uint64_t min;          /* exact; UINT64_MAX when empty */
    uint64_t max;          /* exact; 0 when empty */
    uint32_t index_low;    /* lowest non-empty bucket (BUCKETS when empty) */
    uint32_t index_high;   /* highest non-empty bucket (0 when empty) */
    uint64_t counts[TURBINE_HISTOGRAM_BUCKETS];
};

/* One non-empty bucket, as turbine_histogram_next() walks them in increasing order. */
struct turbine_histogram_bucket {
    uint64_t lowest;     /* the smallest value counted here */
    uint64_t highest;    /* the largest value counted here (inclusive) */
    uint64_t count;      /* values in this bucket */
    uint64_t cumulative; /* values in this bucket and every lower one */
    uint32_t index;      /* which bucket (the iteration's position) */
};

/* Empties `h` (the caller's memory). Equal to turbine_histogram_reset(). */
void turbine_histogram_init(struct turbine_histogram *h);
void turbine_histogram_reset(struct turbine_histogram *h);

/* The bucket a value falls in, and the bounds of a bucket (inclusive). */
uint32_t turbine_histogram_index(uint64_t value);
uint64_t turbine_histogram_lowest(uint32_t index);
uint64_t turbine_histogram_highest(uint32_t index);

/* Counts `value` once / `n` times. O(1). */
void turbine_histogram_record(struct turbine_histogram *h, uint64_t value);
void turbine_histogram_record_n(struct turbine_histogram *h, uint64_t value, uint64_t n);

/* Adds every value of `source` into `target` (source unchanged; they may not be the same). */
void turbine_histogram_merge(struct turbine_histogram *target,
                             const struct turbine_histogram *source);

/* The value at `percentile` (0..100): the least value v such that at least percentile% of the
 * values recorded are <= v, as the highest value of v's bucket, clamped to [min, max] — so it
 * is never below the true value and at most 1/128 above it. 100 gives max exactly, 0 min.
 * Returns 0 on an empty histogram. O(buckets). */
uint64_t turbine_histogram_percentile(const struct turbine_histogram *h, double percentile);

/* The exact mean (0 when empty). */
double turbine_histogram_mean(const struct turbine_histogram *h);

static inline uint64_t turbine_histogram_count(const struct turbine_histogram *h)
{
    return h->count;
}

/* Iteration over the non-empty buckets in increasing order, e.g. for a CSV of the distribution:
 *     struct turbine_histogram_bucket b;
 *     for (bool ok = turbine_histogram_bucket_first(h, &b); ok;
 *          ok = turbine_histogram_bucket_next(h, &b))
 *         printf("%" PRIu64 ",%" PRIu64 "\n", b.highest, b.count);
 * Each returns false when there is no (further) non-empty bucket. `h` must not change between
 * the calls. */
bool turbine_histogram_bucket_first(const struct turbine_histogram *h,
                                    struct turbine_histogram_bucket *b);
bool turbine_histogram_bucket_next(const struct turbine_histogram *h,
                                   struct turbine_histogram_bucket *b);

#endif
