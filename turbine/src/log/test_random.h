/* SPDX-License-Identifier: MIT
 * test_random.h - the seeded randomness the log's crash tests share: splitmix64 and random
 * RecordBatch v2 batches whose values carry (seed, fiber, sequence, index), so that every
 * batch has its own CRC and a lost or misplaced one cannot pass for another. For tests only
 * (include after harness.h).
 */
#ifndef TURBINE_TEST_RANDOM_H
#define TURBINE_TEST_RANDOM_H

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "turbine/batch.h"

static inline uint64_t splitmix(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t rand_below(uint64_t *state, uint64_t n)
{
    return n ? splitmix(state) % n : 0;
}

/* How random_batch() draws: 1..records_max records of small values; one in big_one_in gets a
 * value of big_min..big_max bytes instead; the batch stays within cap - reserve. */
struct batch_shape {
    int records_max; /* <= 64 */
    size_t reserve;
    unsigned big_one_in;
    size_t big_min, big_max; /* big_max <= 64 KiB */
};

static inline size_t random_batch(uint64_t *rng, const struct batch_shape *shape, uint64_t seed,
                                  uint32_t fiber, uint32_t seq, uint8_t *out, size_t cap)
{
    static char big[64 * 1024];
    struct turbine_record_in recs[64];
    char small[64][96];
    CHECK_LE(shape->records_max, 64);
    CHECK_LE(shape->big_max, sizeof(big));
    int n = 1 + (int)rand_below(rng, (uint64_t)shape->records_max);
    size_t budget = cap - shape->reserve;
    int64_t ts = 1700000000000 + (int64_t)rand_below(rng, 1000000);
    int count = 0;
    for (int i = 0; i < n; i++) {
        int len =
            snprintf(small[i], sizeof(small[i]), "%016" PRIx64 "-%u-%u-%d-", seed, fiber, seq, i);
        int extra = (int)rand_below(rng, sizeof(small[i]) - (size_t)len);
        memset(small[i] + len, 'a' + (char)(seq % 26), (size_t)extra);
        struct turbine_record_in r = {.timestamp = ts + i,
                                      .key = small[i],
                                      .key_size = len,
                                      .value = small[i],
                                      .value_size = len + extra};
        if (rand_below(rng, shape->big_one_in) == 0) {
            /* a large value: a batch of many blocks (or sectors) */
            r.value = big;
            r.value_size =
                (int32_t)(shape->big_min + rand_below(rng, shape->big_max - shape->big_min));
            memset(big, (int)(seq & 0xff), 64);
        }
        int64_t need = turbine_record_encoded_size(&r, i, i);
        CHECK_GT(need, 0);
        if ((size_t)need + 64 > budget)
            break;
        budget -= (size_t)need;
        recs[count++] = r;
    }
    if (count == 0) {
        recs[0] = (struct turbine_record_in){
            .timestamp = ts, .key_size = -1, .value = small[0], .value_size = 8};
        count = 1;
    }
    struct turbine_batch_params params = {
        .producer_id = -1, .producer_epoch = -1, .base_sequence = -1};
    int64_t size = turbine_batch_encode(out, cap, &params, recs, count);
    CHECK_GT(size, 0);
    return (size_t)size;
}

#endif
