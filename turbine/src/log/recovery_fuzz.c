/* SPDX-License-Identifier: MIT
 * recovery_fuzz.c - libFuzzer target for the log's recovery scanner: the input is the content
 * of a partition's only segment file. On a simulated disk (loom_simdisk) the file is written,
 * then turbine_log_open() recovers it. Whatever the bytes, the open must not crash; when it
 * succeeds, every batch it serves must validate with dense offsets, a second open must find the
 * same log (recovery is idempotent), and an append must work; when it fails, it fails with a
 * plain -errno (-EUCLEAN for damage it refuses to cut).
 * The first input byte picks max_unflushed_bytes (the recovery window), so both the cut and the
 * refusal are exercised. make fuzz builds it with clang into build/fuzz/recovery_fuzz; make test
 * replays fuzz_corpus/recovery/ through it (recovery_fuzz_test).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <loom/loom.h>

#include "turbine/batch.h"
#include "turbine/log.h"

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "recovery_fuzz: %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__,        \
                    #cond);                                                                        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

struct input {
    const uint8_t *data;
    size_t size;
};

/* Reads the whole log, checking every batch; returns the end offset reached. */
static int64_t read_all(struct turbine_log *log)
{
    static char buf[1 << 18];
    int64_t next = turbine_log_start_offset(log), end = turbine_log_end_offset(log);
    while (next < end) {
        ssize_t n = turbine_log_read(log, next, buf, sizeof(buf), sizeof(buf), end);
        FUZZ_CHECK(n > 0);
        for (size_t at = 0; at < (size_t)n;) {
            struct turbine_batch_info info;
            FUZZ_CHECK(turbine_batch_validate(buf + at, (size_t)n - at, &info) == TURBINE_BATCH_OK);
            FUZZ_CHECK(info.header.base_offset == next);
            next += info.header.last_offset_delta + 1;
            at += info.size;
        }
    }
    FUZZ_CHECK(next == end);
    return next;
}

static int fuzz_main(void *arg)
{
    const struct input *in = arg;
    struct loom_simdisk_config dc = {.seed = 1, .direct_align = 512};
    struct loom_simdisk *disk = loom_simdisk_create(&dc);
    FUZZ_CHECK(disk != NULL);
    loom_io_backend_set(loom_simdisk_backend(disk));
    FUZZ_CHECK(loom_mkdirat(AT_FDCWD, "/p", 0755, LOOM_NO_DEADLINE) == 0);
    int fd = loom_openat(AT_FDCWD, "/p/00000000000000000000.log", O_RDWR | O_CREAT, 0644,
                         LOOM_NO_DEADLINE);
    FUZZ_CHECK(fd >= 0);
    const uint8_t *bytes = in->data + 1;
    size_t size = in->size - 1;
    if (size)
        FUZZ_CHECK(loom_write(fd, bytes, size, 0, 0, LOOM_NO_DEADLINE) == (ssize_t)size);
    FUZZ_CHECK(loom_fsync(fd, 0, LOOM_NO_DEADLINE) == 0);
    FUZZ_CHECK(loom_close(fd) == 0);
    FUZZ_CHECK(loom_fsync_dir(AT_FDCWD, "/p", LOOM_NO_DEADLINE) == 0);

    struct turbine_log_config c;
    turbine_log_config_init(&c);
    c.dir = "/p";
    c.segment_bytes = 1u << 20;
    c.write_buffer_bytes = 64 * 1024;
    c.prealloc_bytes = 64 * 1024;
    c.max_unflushed_bytes = (uint64_t)64 * 1024 << (in->data[0] % 4); /* 64 KiB .. 512 KiB */
    struct turbine_log *log;
    int rc = turbine_log_open(&c, &log);
    if (rc == 0) {
        int64_t end = read_all(log);
        FUZZ_CHECK(turbine_log_close(log) == 0);
        FUZZ_CHECK(turbine_log_open(&c, &log) == 0); /* the same result again */
        FUZZ_CHECK(turbine_log_end_offset(log) == end);
        FUZZ_CHECK(read_all(log) == end);
        static char batch[256];
        struct turbine_record_in r = {
            .timestamp = 1, .key_size = -1, .value = "x", .value_size = 1};
        struct turbine_batch_params p = {
            .producer_id = -1, .producer_epoch = -1, .base_sequence = -1};
        int64_t bsize = turbine_batch_encode(batch, sizeof(batch), &p, &r, 1);
        FUZZ_CHECK(bsize > 0);
        FUZZ_CHECK(turbine_log_append(log, batch, (size_t)bsize, TURBINE_DURABLE_FSYNC,
                                      LOOM_NO_DEADLINE) == end);
        FUZZ_CHECK(read_all(log) == end + 1);
        FUZZ_CHECK(turbine_log_close(log) == 0);
    } else {
        FUZZ_CHECK(rc == -EUCLEAN || rc == -ENOMEM || rc == -EFBIG);
    }
    loom_io_backend_set(NULL);
    loom_simdisk_destroy(disk);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > (1u << 20))
        return 0;
    struct input in = {data, size};
    struct loom_config config;
    loom_config_init(&config);
    config.smp = 1;
    config.poll_ns = 0;
    config.memory_bytes = 64u << 20;
    config.io_buffer_bytes = 4u << 20;
    config.stall_ns = 0;
    FUZZ_CHECK(loom_run(&config, fuzz_main, &in) == 0);
    return 0;
}

#ifdef TURBINE_FUZZ_REPLAY
#include "fuzz_replay.h"

/* `recovery_fuzz_test --write-corpus DIR` writes the seed inputs: a clean log, one with
 * preallocated zeros, a torn tail, a flipped bit early and late, garbage. */
static int write_corpus(const char *dir)
{
    static uint8_t seg[1 << 16];
    size_t used = 0;
    for (int i = 0; i < 40; i++) {
        struct turbine_record_in r[4];
        char v[4][40];
        for (int k = 0; k < 4; k++) {
            int len = snprintf(v[k], sizeof(v[k]), "value %d.%d", i, k);
            r[k] = (struct turbine_record_in){
                .timestamp = 1000 + i, .key_size = -1, .value = v[k], .value_size = len};
        }
        struct turbine_batch_params p = {.base_offset = used ? 0 : 0,
                                         .producer_id = -1,
                                         .producer_epoch = -1,
                                         .base_sequence = -1};
        int64_t n = turbine_batch_encode(seg + used, sizeof(seg) - used, &p, r, 1 + i % 4);
        if (n <= 0)
            return 1;
        turbine_batch_set_base_offset(seg + used, 0); /* stamped below */
        used += (size_t)n;
    }
    /* stamp dense offsets */
    int64_t next = 0;
    for (size_t at = 0; at < used;) {
        struct turbine_batch_header h;
        turbine_batch_header_decode(seg + at, &h);
        turbine_batch_set_base_offset(seg + at, next);
        next += h.last_offset_delta + 1;
        at += (size_t)h.batch_length + 12;
    }
    struct {
        const char *name;
        size_t size;
        int flip; /* byte to flip, -1 none */
        size_t zeros;
        uint8_t window;
    } seeds[] = {
        {"clean", used, -1, 0, 0},
        {"prealloc-zeros", used, -1, 8192, 1},
        {"torn-tail", used - 37, -1, 0, 2},
        {"flip-early", used, 100, 0, 0},
        {"flip-late", used, (int)used - 50, 0, 3},
        {"empty", 0, -1, 0, 0},
    };
    for (size_t s = 0; s < sizeof(seeds) / sizeof(seeds[0]); s++) {
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", dir, seeds[s].name);
        FILE *f = fopen(path, "wb");
        if (!f)
            return 1;
        static uint8_t out[1 << 17];
        out[0] = seeds[s].window;
        memcpy(out + 1, seg, seeds[s].size);
        if (seeds[s].flip >= 0)
            out[1 + seeds[s].flip] ^= 0x10;
        memset(out + 1 + seeds[s].size, 0, seeds[s].zeros);
        fwrite(out, 1, 1 + seeds[s].size + seeds[s].zeros, f);
        fclose(f);
    }
    static uint8_t junk[5000];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (uint8_t)(i * 7919 + 13);
    char path[512];
    snprintf(path, sizeof(path), "%s/garbage", dir);
    FILE *f = fopen(path, "wb");
    if (!f)
        return 1;
    fwrite(junk, 1, sizeof(junk), f);
    fclose(f);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--write-corpus") == 0)
        return write_corpus(argv[2]);
    return fuzz_replay_main(argc, argv, "turbine/src/log/fuzz_corpus/recovery");
}
#endif
