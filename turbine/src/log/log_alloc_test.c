/* SPDX-License-Identifier: MIT
 * log_alloc_test.c - the append and read paths of the partition log make no heap allocation
 * after warm-up: this program counts every malloc-family call made on a reactor thread (it
 * interposes them; glibc keeps the real ones as __libc_*) while a fiber appends thousands of
 * batches under every durability and reads them back (copied and lent from the cache), across write
 * pieces, flushes and cache pages taken and given back many times. Rolling a segment is not on that
 * path (it creates files and index space) and is kept out of the measured window by a large segment
 * size. LOOM_TEST_TAGS: no-asan no-valgrind
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <loom/loom.h>

#include "harness.h"
#include "turbine/batch.h"
#include "turbine/log.h"

#include "alloc_count.h"

static char dir[256];

static int test_main(void *arg)
{
    (void)arg;
    struct turbine_log_config c;
    turbine_log_config_init(&c);
    c.dir = dir;
    c.write_buffer_bytes = 256 * 1024; /* moves over pages often */
    c.prealloc_bytes = 64u << 20;      /* no fallocate growth in the window */
    struct turbine_log *log;
    CHECK_EQ(turbine_log_open(&c, &log), 0);
    static char value[700], batch[16384], buf[1 << 17];
    struct turbine_record_in recs[16];
    for (int i = 0; i < 16; i++)
        recs[i] = (struct turbine_record_in){
            .timestamp = 1000 + i, .key_size = -1, .value = value, .value_size = 300 + 20 * i};
    struct turbine_batch_params p = {.producer_id = -1, .producer_epoch = -1, .base_sequence = -1};
    int64_t sizes[16];
    for (int n = 1; n <= 16; n++) {
        sizes[n - 1] = turbine_batch_encode(batch + 0, sizeof(batch), &p, recs, n);
        CHECK_GT(sizes[n - 1], 0);
    }
    int rounds = (int)test_scale(4000);
    for (int phase = 0; phase < 2; phase++) {
        /* phase 0 warms up (first pieces, first flush, first reads); phase 1 is counted */
        atomic_store(&alloc_counting, phase == 1);
        int64_t next_read = turbine_log_start_offset(log);
        for (int i = 0; i < rounds; i++) {
            int n = 1 + i % 16;
            int64_t size = turbine_batch_encode(batch, sizeof(batch), &p, recs, n);
            enum turbine_durability d = (enum turbine_durability)(i % 3);
            CHECK_GE(turbine_log_append(log, batch, (size_t)size, d, LOOM_NO_DEADLINE), 0);
            if (i % 8 == 7) {
                int64_t limit = turbine_log_written_offset(log);
                while (next_read < limit) {
                    ssize_t got = turbine_log_read(log, next_read, buf, sizeof(buf), 65536, limit);
                    CHECK_GT(got, 0);
                    for (size_t at = 0; at < (size_t)got;) {
                        struct turbine_batch_header h;
                        turbine_batch_header_decode(buf + at, &h);
                        next_read = h.base_offset + h.last_offset_delta + 1;
                        at += (size_t)h.batch_length + 12;
                    }
                }
                /* and lent from the cache, without a copy */
                struct turbine_view v;
                turbine_view_init(&v);
                ssize_t lent = turbine_log_read_view(log, next_read > 64 ? next_read - 64 : 0,
                                                     65536, limit, &v);
                CHECK_GT(lent, 0);
                turbine_view_release(&v);
            }
        }
        CHECK_EQ(turbine_log_wait(log, turbine_log_end_offset(log) - 1,
                                  loom_now_ns() + 10 * LOOM_NS_PER_S),
                 0);
        atomic_store(&alloc_counting, false);
    }
    struct turbine_log_stats st;
    turbine_log_stats_get(log, &st);
    printf("  %d appends and their reads: %" PRIu64 " heap allocations on the reactor (%" PRIu64
           " writes, %" PRIu64 " flushes, %" PRIu64 " segment(s))\n",
           rounds, atomic_load(&alloc_reactor_calls), st.writes, st.flushes, st.segments);
    CHECK_EQ(st.segments, 1u);
    CHECK_EQ(atomic_load(&alloc_reactor_calls), 0u);
    CHECK_EQ(turbine_log_close(log), 0);
    return 0;
}

int main(void)
{
    alarm(120);
    const char *base = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/turbine_alloc_test.XXXXXX", base && *base ? base : "/tmp");
    CHECK(mkdtemp(dir) != NULL);
    struct loom_config config;
    test_config(&config, 1);
    config.io_buffer_bytes = (size_t)8 << 20;
    int rc = loom_run(&config, test_main, NULL);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    CHECK_EQ(rc, 0);
    return 0;
}
