/* SPDX-License-Identifier: MIT
 * batch_fuzz.c - libFuzzer target for the RecordBatch v2 validator and record iterator.
 *
 * Each input is validated twice: as it is, and with its CRC recomputed (random bytes almost
 * never carry a right CRC, so without the repair the record walker would go unexercised). A
 * batch that passes must walk cleanly with the iterators, and re-encoding its records must
 * give a batch that passes and decodes to the same records. make fuzz builds it with clang
 * into build/fuzz/batch_fuzz; make test replays fuzz_corpus/batch/ through it (batch_fuzz_test).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "turbine/batch.h"

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "batch_fuzz: %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define RECORDS_MAX 4096
#define HEADERS_MAX 16384

static struct turbine_record_in records_in[RECORDS_MAX];
static struct turbine_header_in headers_in[HEADERS_MAX];

/* Timestamps add modulo 2^64, as the encoder subtracts them: any delta round-trips. */
static int64_t wrap_add(int64_t a, int64_t b)
{
    return (int64_t)((uint64_t)a + (uint64_t)b);
}

static bool same_bytes(const uint8_t *a, int32_t a_size, const uint8_t *b, int32_t b_size)
{
    return a_size == b_size && (a_size <= 0 || memcmp(a, b, (size_t)a_size) == 0);
}

/* Collects the records of a valid uncompressed batch as encoder input. False when they do not
 * fit the static arrays (the input is then only walked). */
static bool collect(const uint8_t *data, const struct turbine_batch_info *info, int32_t *count)
{
    struct turbine_record_iter iter;
    struct turbine_record r;
    FUZZ_CHECK(turbine_record_iter_init(&iter, data, info->size) == TURBINE_BATCH_OK);
    int32_t n = 0, h = 0;
    bool fits = true;
    while (turbine_record_iter_next(&iter, &r)) {
        struct turbine_header_iter hi;
        struct turbine_header header;
        int32_t first_header = h;
        turbine_header_iter_init(&hi, &r);
        while (turbine_header_iter_next(&hi, &header)) {
            FUZZ_CHECK(header.key_size >= 0 && header.value_size >= -1);
            if (h < HEADERS_MAX)
                headers_in[h] = (struct turbine_header_in){header.key, header.key_size,
                                                           header.value, header.value_size};
            h++;
        }
        if (n < RECORDS_MAX && h <= HEADERS_MAX)
            records_in[n] = (struct turbine_record_in){
                .timestamp = wrap_add(info->header.base_timestamp, r.timestamp_delta),
                .key = r.key,
                .key_size = r.key_size,
                .value = r.value,
                .value_size = r.value_size,
                .headers = &headers_in[first_header],
                .headers_count = r.headers_count,
            };
        else
            fits = false;
        n++;
    }
    FUZZ_CHECK(turbine_record_iter_status(&iter) == TURBINE_BATCH_OK);
    FUZZ_CHECK(n == info->header.records_count && n == info->records);
    *count = n;
    return fits;
}

/* Re-encodes a valid batch's records and checks the result decodes to the same records. */
static void roundtrip(const uint8_t *data, const struct turbine_batch_info *info)
{
    int32_t count;
    if (!collect(data, info, &count))
        return;
    const struct turbine_batch_header *h = &info->header;
    struct turbine_batch_params params = {h->base_offset,    h->partition_leader_epoch,
                                          h->attributes,     h->producer_id,
                                          h->producer_epoch, h->base_sequence};
    /* Re-encoding shrinks non-minimal varints; a timestamp delta re-based on the first record
     * may grow to 10 bytes, and with it the record's length varint. */
    size_t capacity = info->size + (size_t)count * 24 + 64;
    uint8_t *out = malloc(capacity);
    FUZZ_CHECK(out != NULL);
    int64_t size = turbine_batch_encode(out, capacity, &params, records_in, count);
    FUZZ_CHECK(size > 0);
    struct turbine_batch_info again;
    FUZZ_CHECK(turbine_batch_validate(out, (size_t)size, &again) == TURBINE_BATCH_OK);
    FUZZ_CHECK(again.records == count && (size_t)size == again.size);

    struct turbine_record_iter iter;
    struct turbine_record r;
    FUZZ_CHECK(turbine_record_iter_init(&iter, out, (size_t)size) == TURBINE_BATCH_OK);
    for (int32_t i = 0; turbine_record_iter_next(&iter, &r); i++) {
        const struct turbine_record_in *in = &records_in[i];
        FUZZ_CHECK(wrap_add(again.header.base_timestamp, r.timestamp_delta) == in->timestamp);
        FUZZ_CHECK(same_bytes(r.key, r.key_size, in->key, in->key_size));
        FUZZ_CHECK(same_bytes(r.value, r.value_size, in->value, in->value_size));
        FUZZ_CHECK(r.headers_count == in->headers_count);
    }
    FUZZ_CHECK(turbine_record_iter_status(&iter) == TURBINE_BATCH_OK);
    free(out);
}

static void check_one(const uint8_t *data, size_t size)
{
    struct turbine_batch_info info;
    enum turbine_batch_status s = turbine_batch_validate(data, size, &info);
    FUZZ_CHECK((int)s >= 0 && s <= TURBINE_BATCH_STATUS_MAX && s != TURBINE_BATCH_COMPRESSED);
    FUZZ_CHECK(turbine_batch_status_str(s) != NULL);
    if (s != TURBINE_BATCH_OK) {
        FUZZ_CHECK(info.error_offset <= size);
        return;
    }
    FUZZ_CHECK(info.size >= TURBINE_BATCH_HEADER_SIZE && info.size <= size);
    FUZZ_CHECK(turbine_batch_validate(data, info.size, NULL) == TURBINE_BATCH_OK);
    if ((info.header.attributes & TURBINE_BATCH_ATTR_CODEC_MASK) == TURBINE_BATCH_CODEC_NONE)
        roundtrip(data, &info);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_one(data, size);
    if (size < TURBINE_BATCH_HEADER_SIZE)
        return 0;
    /* The same bytes with the CRC repaired, so mutations reach the records. */
    uint8_t *copy = malloc(size);
    FUZZ_CHECK(copy != NULL);
    memcpy(copy, data, size);
    struct turbine_batch_header h;
    turbine_batch_header_decode(copy, &h);
    size_t end = size;
    if (h.batch_length >= 0 && (size_t)h.batch_length + TURBINE_BATCH_LOG_OVERHEAD < size)
        end = (size_t)h.batch_length + TURBINE_BATCH_LOG_OVERHEAD;
    if (end > TURBINE_BATCH_OFF_ATTRIBUTES) {
        uint32_t crc = turbine_crc32c(0, copy + TURBINE_BATCH_OFF_ATTRIBUTES,
                                      end - TURBINE_BATCH_OFF_ATTRIBUTES);
        copy[TURBINE_BATCH_OFF_CRC] = (uint8_t)(crc >> 24);
        copy[TURBINE_BATCH_OFF_CRC + 1] = (uint8_t)(crc >> 16);
        copy[TURBINE_BATCH_OFF_CRC + 2] = (uint8_t)(crc >> 8);
        copy[TURBINE_BATCH_OFF_CRC + 3] = (uint8_t)crc;
    }
    check_one(copy, size);
    free(copy);
    return 0;
}

#ifdef TURBINE_FUZZ_REPLAY
#include "fuzz_replay.h"

int main(int argc, char **argv)
{
    return fuzz_replay_main(argc, argv, "turbine/src/log/fuzz_corpus/batch");
}
#endif
