/* SPDX-License-Identifier: MIT
 * batch_bench.c - RecordBatch v2 validation throughput, and what the CRC-32C costs in it.
 *
 * Figure batch_validate: MB/s (10^6 bytes) through turbine_batch_validate() over 8 MB of
 * uncompressed batches of 16 records of 1 KB (about 16.5 KB each, the size a producer with
 * linger sends), CRC and record walk included. Baselines, on the same bytes: crc32c_table, a
 * byte-at-a-time table CRC-32C (what a validator without a hardware CRC would be bound by), and
 * isal_crc_only, ISA-L's crc32_iscsi alone (the ceiling: the walk's cost is the gap). Figure
 * batch_validate_small: the same with 100-byte records (160 per batch), where the walk weighs
 * more. Each figure is the median of 5 runs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "benchlib.h"
#include "turbine/batch.h"

#define SET_BYTES (8u << 20)
#define RUNS      5

static uint32_t crc_table[256];

static void crc_table_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
        crc_table[i] = c;
    }
}

static uint32_t crc32c_table(uint32_t crc, const uint8_t *p, size_t n)
{
    crc = ~crc;
    while (n--)
        crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct set {
    uint8_t *bytes;
    size_t size; /* bytes of whole batches */
    size_t batches;
};

static void build_set(struct set *set, int records, int value_size)
{
    set->bytes = malloc(SET_BYTES);
    set->size = 0;
    set->batches = 0;
    char *value = malloc((size_t)value_size);
    for (int i = 0; i < value_size; i++)
        value[i] = (char)('a' + i % 26);
    struct turbine_record_in *in = calloc((size_t)records, sizeof(*in));
    for (int i = 0; i < records; i++)
        in[i] = (struct turbine_record_in){1700000000000 + i, "key-0000", 8, value,
                                           value_size,        NULL,       0};
    struct turbine_batch_params params = {0, -1, 0, 1000, 0, 0};
    for (;;) {
        int64_t n = turbine_batch_encode(set->bytes + set->size, SET_BYTES - set->size, &params, in,
                                         records);
        if (n < 0)
            break;
        set->size += (size_t)n;
        set->batches++;
        params.base_sequence += records;
    }
    free(in);
    free(value);
}

/* Validates the whole set `passes` times; returns MB/s. */
static double run_validate(const struct set *set, int passes)
{
    double start = now_s();
    for (int pass = 0; pass < passes; pass++) {
        size_t off = 0;
        while (off < set->size) {
            struct turbine_batch_info info;
            if (turbine_batch_validate(set->bytes + off, set->size - off, &info) != 0)
                abort();
            off += info.size;
        }
    }
    return (double)set->size * passes / (now_s() - start) / 1e6;
}

static volatile uint32_t sink;

static double run_crc(const struct set *set, int passes, bool table)
{
    double start = now_s();
    for (int pass = 0; pass < passes; pass++) {
        size_t off = 0;
        while (off < set->size) {
            const uint8_t *b = set->bytes + off;
            size_t size = TURBINE_BATCH_LOG_OVERHEAD +
                          ((size_t)b[8] << 24 | (size_t)b[9] << 16 | (size_t)b[10] << 8 | b[11]);
            const uint8_t *p = b + TURBINE_BATCH_OFF_ATTRIBUTES;
            size_t n = size - TURBINE_BATCH_OFF_ATTRIBUTES;
            sink ^= table ? crc32c_table(0, p, n) : turbine_crc32c(0, p, n);
            off += size;
        }
    }
    return (double)set->size * passes / (now_s() - start) / 1e6;
}

static void figure(const char *name, int records, int value_size)
{
    struct set set;
    build_set(&set, records, value_size);
    double validate[RUNS], table[RUNS], isal[RUNS];
    for (int r = 0; r < RUNS; r++) { /* interleaved, so drift hits all three alike */
        validate[r] = run_validate(&set, 32);
        table[r] = run_crc(&set, 2, true);
        isal[r] = run_crc(&set, 32, false);
    }
    double v = bench_median_f64(validate, RUNS);
    double t = bench_median_f64(table, RUNS);
    double i = bench_median_f64(isal, RUNS);
    printf("%s: %zu batches of %d records of %d B, %zu bytes\n", name, set.batches, records,
           value_size, set.size);
    bench_report(name, v, "MB/s", "crc32c_table", t, validate, RUNS);
    bench_report(name, v, "MB/s", "isal_crc_only", i, validate, RUNS);
    free(set.bytes);
}

int main(void)
{
    crc_table_init();
    if (crc32c_table(0, (const uint8_t *)"123456789", 9) != 0xE3069283u ||
        turbine_crc32c(0, "123456789", 9) != 0xE3069283u) {
        fprintf(stderr, "batch_bench: CRC-32C check value mismatch\n");
        return 1;
    }
    figure("batch_validate", 16, 1024);
    figure("batch_validate_small", 160, 100);
    return 0;
}
