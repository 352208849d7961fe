/* SPDX-License-Identifier: MIT
 * histogram.c - the log-linear histogram (see histogram.h for the bucket layout).
 *
 * Invariants: count == sum of counts[]; every non-empty bucket lies in [index_low, index_high];
 * min and max are the exact extremes and fall in the lowest and highest non-empty buckets.
 */
#include "util/histogram.h"

#include <math.h>
#include <string.h>

#include "turbine_assert.h"

#define SUB_BITS TURBINE_HISTOGRAM_SUB_BITS
#define SUB      TURBINE_HISTOGRAM_SUB
#define BUCKETS  TURBINE_HISTOGRAM_BUCKETS

_Static_assert(BUCKETS == 7424, "256 exact buckets, then 56 octaves of 128");

void turbine_histogram_reset(struct turbine_histogram *h)
{
    TURBINE_ASSERT(h != NULL);
    memset(h->counts, 0, sizeof(h->counts));
    h->count = 0;
    h->min = UINT64_MAX;
    h->max = 0;
    h->sum = 0;
    h->index_low = BUCKETS;
    h->index_high = 0;
}

void turbine_histogram_init(struct turbine_histogram *h)
{
    turbine_histogram_reset(h);
}

uint32_t turbine_histogram_index(uint64_t value)
{
    if (value < 2 * SUB)
        return (uint32_t)value;
    unsigned msb = 63u - (unsigned)__builtin_clzll(value);
    unsigned shift = msb - SUB_BITS; /* >= 1: value >> shift lies in [128, 256) */
    uint32_t index = shift * SUB + (uint32_t)(value >> shift);
    TURBINE_ASSERT(index >= 2 * SUB);
    TURBINE_ASSERT(index < BUCKETS);
    return index;
}

uint64_t turbine_histogram_lowest(uint32_t index)
{
    TURBINE_ASSERT(index < BUCKETS);
    if (index < 2 * SUB)
        return index;
    unsigned shift = index / SUB - 1;
    uint64_t sub = index - shift * SUB; /* in [128, 256) */
    return sub << shift;
}

uint64_t turbine_histogram_highest(uint32_t index)
{
    TURBINE_ASSERT(index < BUCKETS);
    if (index < 2 * SUB)
        return index;
    unsigned shift = index / SUB - 1;
    /* the top bucket ends at UINT64_MAX exactly: lowest + (2^shift - 1) does not wrap */
    return turbine_histogram_lowest(index) + ((UINT64_C(1) << shift) - 1);
}

void turbine_histogram_record_n(struct turbine_histogram *h, uint64_t value, uint64_t n)
{
    if (n == 0)
        return;
    uint32_t index = turbine_histogram_index(value);
    TURBINE_ASSERT(h->count + n >= h->count); /* 2^64 values would wrap the count */
    h->counts[index] += n;
    h->count += n;
    h->sum += (unsigned __int128)value * n;
    if (value < h->min)
        h->min = value;
    if (value > h->max)
        h->max = value;
    if (index < h->index_low)
        h->index_low = index;
    if (index > h->index_high)
        h->index_high = index;
}

void turbine_histogram_record(struct turbine_histogram *h, uint64_t value)
{
    turbine_histogram_record_n(h, value, 1);
}

void turbine_histogram_merge(struct turbine_histogram *target,
                             const struct turbine_histogram *source)
{
    TURBINE_ASSERT(target != source);
    if (source->count == 0)
        return;
    TURBINE_ASSERT(target->count + source->count >= target->count);
    for (uint32_t i = source->index_low; i <= source->index_high; i++)
        target->counts[i] += source->counts[i];
    target->count += source->count;
    target->sum += source->sum;
    if (source->min < target->min)
        target->min = source->min;
    if (source->max > target->max)
        target->max = source->max;
    if (source->index_low < target->index_low)
        target->index_low = source->index_low;
    if (source->index_high > target->index_high)
        target->index_high = source->index_high;
}

/* How many of the smallest values percentile% of `count` is: ceil(p / 100 * count), at least 1.
 * The 1e-7 absorbs the rounding of p / 100 (99.9 / 100 * 1000 must be 999, not 1000). */
static uint64_t percentile_rank(double percentile, uint64_t count)
{
    double exact = percentile / 100.0 * (double)count;
    double rank = ceil(exact - 1e-7);
    if (rank < 1)
        return 1;
    if (rank >= (double)count)
        return count;
    return (uint64_t)rank;
}

uint64_t turbine_histogram_percentile(const struct turbine_histogram *h, double percentile)
{
    if (h->count == 0)
        return 0;
    if (!(percentile > 0)) /* also NaN */
        return h->min;
    if (percentile >= 100)
        return h->max;
    uint64_t rank = percentile_rank(percentile, h->count);
    uint64_t seen = 0;
    for (uint32_t i = h->index_low; i <= h->index_high; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t value = turbine_histogram_highest(i);
            if (value > h->max)
                value = h->max;
            if (value < h->min)
                value = h->min;
            return value;
        }
    }
    TURBINE_ASSERT(!"count is the sum of the buckets");
    return h->max;
}

double turbine_histogram_mean(const struct turbine_histogram *h)
{
    if (h->count == 0)
        return 0;
    return (double)h->sum / (double)h->count;
}

/* Fills `b` from the first non-empty bucket at or above `from`. */
static bool bucket_at(const struct turbine_histogram *h, struct turbine_histogram_bucket *b,
                      uint32_t from, uint64_t cumulative)
{
    for (uint32_t i = from; h->count > 0 && i <= h->index_high; i++) {
        if (h->counts[i] == 0)
            continue;
        b->index = i;
        b->lowest = turbine_histogram_lowest(i);
        b->highest = turbine_histogram_highest(i);
        b->count = h->counts[i];
        b->cumulative = cumulative + h->counts[i];
        TURBINE_ASSERT(b->cumulative <= h->count);
        return true;
    }
    return false;
}

bool turbine_histogram_bucket_first(const struct turbine_histogram *h,
                                    struct turbine_histogram_bucket *b)
{
    memset(b, 0, sizeof(*b));
    return bucket_at(h, b, h->index_low, 0);
}

bool turbine_histogram_bucket_next(const struct turbine_histogram *h,
                                   struct turbine_histogram_bucket *b)
{
    TURBINE_ASSERT(b->index < BUCKETS);
    return bucket_at(h, b, b->index + 1, b->cumulative);
}
