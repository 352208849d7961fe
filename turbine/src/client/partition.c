/* SPDX-License-Identifier: MIT
 * partition.c - the key partitioner of Kafka's Java client, so that a key lands on the same
 * partition with turbine as with Kafka: (murmur2(key) & 0x7fffffff) % partitions.
 *
 * murmur2 is Kafka's Utils.murmur2 bit for bit: seed 0x9747b28c, 4-byte little-endian words,
 * the tail mixed in the fall-through order of its switch, Java's wrapping int arithmetic
 * (done here in uint32_t, which wraps the same way) and logical shifts (>>>).
 */
#include <errno.h>

#include "client_internal.h"

int32_t turbine_murmur2(const void *data, size_t size)
{
    const uint8_t *p = data;
    const uint32_t m = 0x5bd1e995u;
    const int r = 24;
    uint32_t length = (uint32_t)size;
    uint32_t h = 0x9747b28cu ^ length;
    uint32_t words = length / 4;
    for (uint32_t i = 0; i < words; i++) {
        const uint8_t *w = p + i * 4;
        uint32_t k =
            (uint32_t)w[0] | (uint32_t)w[1] << 8 | (uint32_t)w[2] << 16 | (uint32_t)w[3] << 24;
        k *= m;
        k ^= k >> r;
        k *= m;
        h *= m;
        h ^= k;
    }
    const uint8_t *tail = p + (length & ~3u);
    switch (length % 4) {
    case 3:
        h ^= (uint32_t)tail[2] << 16;
        /* fall through */
    case 2:
        h ^= (uint32_t)tail[1] << 8;
        /* fall through */
    case 1:
        h ^= (uint32_t)tail[0];
        h *= m;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return (int32_t)h;
}

int32_t tp_partition_for_key(const void *key, size_t key_size, int32_t partitions)
{
    TURBINE_ASSERT(partitions > 0);
    uint32_t positive = (uint32_t)turbine_murmur2(key, key_size) & 0x7fffffffu;
    int32_t partition = (int32_t)(positive % (uint32_t)partitions);
    TURBINE_ASSERT(partition >= 0 && partition < partitions);
    return partition;
}

int32_t turbine_partition_for_key(const void *key, size_t key_size, int32_t partitions)
{
    if (partitions <= 0)
        return -EINVAL;
    return tp_partition_for_key(key, key_size, partitions);
}
