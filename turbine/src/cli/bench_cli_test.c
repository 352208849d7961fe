/* SPDX-License-Identifier: MIT
 * bench_cli_test.c - `turbine bench` end to end against a real broker: produce a counted run
 * with --csv and check the summary and every CSV block, a short e2e run, an unreachable broker
 * (exit 1) and bad options (exit 2).
 *
 * LOOM_TEST_TAGS: no-valgrind timeout=60
 */
#include "broker/broker_test_util.h"

#define OUT_SIZE 65536

static char out[OUT_SIZE];

/* Runs `turbine bench ARGS...` (NULL-terminated) against port `port`; returns its exit code. */
static int bench_run(const struct tb_broker *b, int port, const char *const *args)
{
    char broker[64];
    snprintf(broker, sizeof(broker), "TURBINE_BROKER=127.0.0.1:%d", port);
    const char *argv[32] = {b->bin, "bench"};
    int argc = 2;
    for (int i = 0; args[i]; i++)
        argv[argc++] = args[i];
    argv[argc] = NULL;
    char *env[] = {broker, NULL};
    int status = test_spawn((char *const *)argv, env, out, sizeof(out), 60000);
    CHECK(WIFEXITED(status));
    return WEXITSTATUS(status);
}

/* The CSV's three blocks: the series' records add up to `count`, as do the distribution's. */
static void check_csv(const char *path, uint64_t count)
{
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    char line[512];
    int block = -1, rows[3] = {0};
    uint64_t series_records = 0, bucket_records = 0, last_cumulative = 0;
    double p50 = 0, p100 = 0;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "second,records,msgs_s,mb_s,p50_us,p99_us,max_us", 47) == 0)
            block = 0;
        else if (strncmp(line, "percentile,latency_us", 21) == 0)
            block = 1;
        else if (strncmp(line, "latency_us,count,cumulative,percentile", 38) == 0)
            block = 2;
        else if (line[0] == '\n')
            continue;
        else {
            CHECK_GE(block, 0);
            rows[block]++;
            double a = 0, b = 0;
            uint64_t n = 0, cumulative = 0;
            if (block == 0) {
                CHECK_EQ(sscanf(line, "%lf,%" SCNu64 ",", &a, &n), 2);
                series_records += n;
            } else if (block == 1) {
                CHECK_EQ(sscanf(line, "%lf,%lf", &a, &b), 2);
                if (a == 50)
                    p50 = b;
                if (a == 100)
                    p100 = b;
            } else {
                CHECK_EQ(sscanf(line, "%lf,%" SCNu64 ",%" SCNu64, &a, &n, &cumulative), 3);
                bucket_records += n;
                CHECK_EQ(cumulative, bucket_records);
                last_cumulative = cumulative;
            }
            continue;
        }
        rows[block] = 0;
    }
    fclose(f);
    CHECK_GE(rows[0], 1);
    CHECK_EQ(rows[1], 8);
    CHECK_GE(rows[2], 1);
    CHECK_EQ(series_records, count);
    CHECK_EQ(bucket_records, count);
    CHECK_EQ(last_cumulative, count);
    CHECK(p50 > 0);
    CHECK(p100 >= p50);
}

static void check_summary(const char *mode, const char *records)
{
    char expect[64];
    snprintf(expect, sizeof(expect), "%s: %s records", mode, records);
    if (strstr(out, expect) == NULL || strstr(out, " msgs/s, ") == NULL ||
        strstr(out, "latency (") == NULL || strstr(out, "p99.9=") == NULL)
        test_fail_(__FILE__, __LINE__, "no summary '%s ...' in:\n%s", expect, out);
    CHECK(strstr(out, "\r") == NULL); /* no progress line: stdout is not a terminal */
}

int main(void)
{
    struct tb_broker b;
    tb_init(&b, "bench-cli");
    tb_start(&b, 1, NULL);
    char csv[300];
    snprintf(csv, sizeof(csv), "%s.csv", b.dir);

    const char *produce[] = {"produce", "--count", "2000",    "--partitions", "2",
                             "--csv",   csv,       "--topic", "bench-test",   NULL};
    int rc = bench_run(&b, b.port, produce);
    if (rc != 0)
        test_fail_(__FILE__, __LINE__, "produce exited %d:\n%s", rc, out);
    check_summary("produce", "2000");
    check_csv(csv, 2000);

    const char *consume[] = {"consume", "--topic", "bench-test", "--count", "2000", NULL};
    rc = bench_run(&b, b.port, consume);
    if (rc != 0 || strstr(out, "consume: 2000 records") == NULL)
        test_fail_(__FILE__, __LINE__, "consume exited %d:\n%s", rc, out);

    const char *e2e[] = {"e2e", "--duration", "1", "--rate", "2000", "--topic", "e2e", NULL};
    rc = bench_run(&b, b.port, e2e);
    if (rc != 0)
        test_fail_(__FILE__, __LINE__, "e2e exited %d:\n%s", rc, out);
    CHECK(strstr(out, "e2e: ") != NULL);
    CHECK(strstr(out, "latency (produce -> consume, us): p50=") != NULL);

    /* usage errors: 2, one line on stderr */
    const char *bad_options[][4] = {{"produce", "--bogus", NULL},
                                    {"produce", "--acks", "2", NULL},
                                    {"produce", "--count", "x", NULL},
                                    {"fly", NULL},
                                    {"produce", "--rate", NULL}};
    for (size_t i = 0; i < sizeof(bad_options) / sizeof(bad_options[0]); i++) {
        CHECK_EQ(bench_run(&b, b.port, bad_options[i]), 2);
        CHECK(strstr(out, "turbine bench: ") == out);
    }
    const char *help[] = {"produce", "--help", NULL};
    CHECK_EQ(bench_run(&b, b.port, help), 0);
    CHECK(strstr(out, "usage: turbine bench") != NULL);

    /* nobody listening: a runtime error, 1 */
    const char *unreachable[] = {"produce", "--count", "10", NULL};
    CHECK_EQ(bench_run(&b, tb_free_port(), unreachable), 1);
    CHECK(strstr(out, "cannot reach broker") != NULL);

    tb_stop_clean(&b);
    unlink(csv);
    tb_cleanup(&b);
    return 0;
}
