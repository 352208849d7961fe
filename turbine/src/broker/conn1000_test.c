/* SPDX-License-Identifier: MIT
 * conn1000_test.c - many concurrent client connections to a real broker (--smp 2): opens them
 * all (CONN_COUNT, default 1,000; make soak runs 10,000), then on every one a handshake, a small
 * acks=1 produce and a fetch of it, while all stay open; /metrics counts them all; then a second
 * produce on every connection shows that none was dropped meanwhile. The test holds one fd per
 * connection and the broker one more each: a process may hold 20,000 fds here (ulimit -n), so
 * 10,000 is the most one run can open; the test skips when its limit is too low.
 * LOOM_TEST_TAGS: no-valgrind timeout=120
 */
#include <sys/resource.h>

#include "broker/broker_test_util.h"

#define PARTITIONS 8

static void handshake(int fd)
{
    struct tb_writer t;
    tb_writer_init(&t, 256);
    uint32_t corr = tb_corr++;
    struct turbine_handshake_request head = {.client_id = "conn1000", .client_id_size = 8};
    turbine_handshake_request_begin(&t.w, corr, &head);
    CHECK_GT(turbine_proto_frame_end(&t.w), 0);
    tb_writer_send(&t, fd);
    uint8_t *frame;
    struct turbine_response resp;
    CHECK(tb_recv(fd, &frame, &resp));
    CHECK_EQ(resp.correlation_id, corr);
    CHECK_EQ(resp.error, TURBINE_ERR_NONE);
    struct turbine_handshake_response hr;
    CHECK_EQ(turbine_handshake_response_decode(&resp, &hr), TURBINE_ERR_NONE);
    CHECK_GT(hr.api_count, 0);
    free(frame);
}

static int64_t connections_metric(int admin)
{
    char cmd[200];
    snprintf(
        cmd, sizeof(cmd),
        "curl -s --max-time 10 http://127.0.0.1:%d/metrics | sed -n 's/^turbine_connections //p'",
        admin);
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL);
    long long v = -1;
    if (fscanf(p, "%lld", &v) != 1)
        v = -1;
    pclose(p);
    return v;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    int count = getenv("CONN_COUNT") ? atoi(getenv("CONN_COUNT")) : 1000;
    struct rlimit rl;
    CHECK_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < rl.rlim_max) { /* the soft limit may be raised to the hard one */
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
        CHECK_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
    }
    if (rl.rlim_cur < (rlim_t)count + 64)
        test_skip("the fd limit is too low for the connection count (ulimit -n)");
    struct tb_broker b;
    tb_init(&b, "conn1000");
    int admin = tb_free_port();
    char admin_s[16], memory[32];
    snprintf(admin_s, sizeof(admin_s), "%d", admin);
    /* per connection the broker keeps a reader and a writer fiber (64 KiB stacks each) */
    snprintf(memory, sizeof(memory), "%dM", 512 + count / 4);
    const char *extra[] = {"--admin-port", admin_s, "--memory", memory, NULL};
    tb_start(&b, 2, extra);
    int64_t t0 = tb_now_ms();

    int *fds = calloc((size_t)count, sizeof(int));
    CHECK(fds != NULL);
    for (int i = 0; i < count; i++)
        fds[i] = tb_connect(b.port);
    CHECK_EQ(tb_create_topic(fds[0], "c", PARTITIONS, TURBINE_TOPIC_DURABILITY_WRITTEN),
             TURBINE_ERR_NONE);
    int64_t t_open = tb_now_ms();

    uint8_t batch[1024], again[1024];
    for (int i = 0; i < count; i++) {
        handshake(fds[i]);
        uint32_t size = tb_make_batch(batch, sizeof(batch), (uint64_t)i + 1, 1, 64);
        uint16_t error;
        int64_t off =
            tb_produce(fds[i], "c", i % PARTITIONS, TURBINE_ACKS_LEADER, batch, size, &error);
        CHECK_EQ(error, TURBINE_ERR_NONE);
        CHECK_GE(off, 0);
        struct tb_fetched f = tb_fetch(fds[i], "c", i % PARTITIONS, off, 0, 0, 1 << 16);
        CHECK_EQ(f.error, TURBINE_ERR_NONE);
        CHECK_GE(f.size, size);
        CHECK(tb_batch_matches(f.records, batch, size, off));
        free(f.records);
    }
    CHECK_EQ(connections_metric(admin), count);
    for (int i = 0; i < count; i++) { /* every connection is still served */
        uint32_t size = tb_make_batch(again, sizeof(again), (uint64_t)(count + i + 1), 2, 32);
        uint16_t error;
        tb_produce(fds[i], "c", i % PARTITIONS, TURBINE_ACKS_LEADER, again, size, &error);
        CHECK_EQ(error, TURBINE_ERR_NONE);
    }
    int64_t t_done = tb_now_ms();
    for (int i = 0; i < count; i++)
        close(fds[i]);
    free(fds);
    tb_stop_clean(&b);
    tb_cleanup(&b);
    printf("  %d connections open in %" PRId64 " ms; handshake, produce, fetch and a second "
           "produce on each in %" PRId64 " ms\n",
           count, t_open - t0, t_done - t_open);
    return 0;
}
