/* SPDX-License-Identifier: MIT
 * cli_test.c - the turbine command end to end: the real build/$MODE/turbine runs both the
 * broker (temporary data directory, free port) and every `turbine topic|produce|consume|status`
 * call, with stdin from a file and stdout and stderr captured apart. Covers topic admin, keyed
 * lines and length-delimited records produced and consumed back in each format (JSON checked
 * by substrings, escapes included), --from by offset and time, --count, --group resume, and
 * the error exits (unreachable broker 1 with one line on stderr, bad usage 2; fewer of those
 * under asan, where each process is slow to start). Fixed input.
 * LOOM_TEST_TAGS: no-valgrind timeout=120
 */
#include <stdarg.h>

#include "broker/broker_test_util.h"

#define OUT_MAX (1 << 16)

static struct tb_broker broker;
static char broker_addr[64];
static char out[OUT_MAX], err[OUT_MAX];

/* Reads a whole small file into buf (NUL-terminated). */
static void slurp(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/* Runs `turbine ARGS...` (NULL-terminated) with `input` (size bytes) on stdin; stdout into
 * `out`, stderr into `err`. Returns the exit status (-1 if it did not exit). */
static int run_input(const void *input, size_t size, const char *arg, ...)
{
    const char *argv[32] = {broker.bin};
    int argc = 1;
    va_list ap;
    va_start(ap, arg);
    for (const char *a = arg; a != NULL; a = va_arg(ap, const char *)) {
        CHECK_LT(argc, 31);
        argv[argc++] = a;
    }
    va_end(ap);
    argv[argc] = NULL;
    char in_path[300], out_path[300], err_path[300];
    snprintf(in_path, sizeof(in_path), "%s.in", broker.dir);
    snprintf(out_path, sizeof(out_path), "%s.out", broker.dir);
    snprintf(err_path, sizeof(err_path), "%s.err", broker.dir);
    FILE *f = fopen(in_path, "wb");
    CHECK(f != NULL);
    CHECK_EQ(fwrite(input, 1, size, f), size);
    fclose(f);
    pid_t pid = fork();
    CHECK_GE(pid, 0);
    if (pid == 0) {
        int in = open(in_path, O_RDONLY);
        int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (in < 0 || o < 0 || e < 0)
            _exit(126);
        dup2(in, 0);
        dup2(o, 1);
        dup2(e, 2);
        setenv("TURBINE_BROKER", broker_addr, 1);
        execv(broker.bin, (char *const *)argv);
        _exit(127);
    }
    int status = 0;
    for (int64_t end = tb_now_ms() + 30000;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        CHECK_GE(w, 0);
        if (w == pid)
            break;
        if (tb_now_ms() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            test_fail_(__FILE__, __LINE__, "turbine %s did not exit within 30 s", arg);
        }
        usleep(2000);
    }
    slurp(out_path, out, sizeof(out));
    slurp(err_path, err, sizeof(err));
    unlink(in_path);
    unlink(out_path);
    unlink(err_path);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

#define RUN(...)           run_input("", 0, __VA_ARGS__, (const char *)NULL)
#define RUN_IN(input, ...) run_input(input, strlen(input), __VA_ARGS__, (const char *)NULL)

/* One line on stderr, starting with `prefix`. */
static void check_one_error_line(const char *prefix)
{
    CHECK(strncmp(err, prefix, strlen(prefix)) == 0);
    char *nl = strchr(err, '\n');
    CHECK(nl != NULL);
    CHECK_EQ(nl[1], '\0');
}

static void test_usage_errors(void)
{
    CHECK_EQ(RUN("help"), 0);
    CHECK_CONTAINS(out, "produce");
    CHECK_CONTAINS(out, "consume");
    const char *commands[] = {"topic", "produce", "consume", "status"};
    for (int i = test_under_asan() ? 3 : 0; i < 4; i++) {
        CHECK_EQ(RUN(commands[i], "--help"), 0);
        CHECK_CONTAINS(out, "usage: turbine ");
        CHECK_CONTAINS(out, "--broker HOST:PORT");
        CHECK_CONTAINS(out, "exit status");
    }
    CHECK_EQ(RUN("produce", "t", "--bogus"), 2);
    check_one_error_line("turbine produce: unknown option '--bogus'");
    CHECK_EQ(RUN("consume", "t", "--count"), 2);
    check_one_error_line("turbine consume: option '--count' needs a value");
    CHECK_EQ(RUN("consume", "t", "--count", "x1"), 2);
    check_one_error_line("turbine consume: bad --count 'x1'");
    if (test_under_asan())
        return; /* each asan process takes ~0.4 s to start and exit: the rest in release only */
    CHECK_EQ(RUN("consume"), 2);
    check_one_error_line("turbine consume: missing TOPIC");
    CHECK_EQ(RUN("produce", "t", "--acks", "2"), 2);
    CHECK_EQ(RUN("produce", "t", "--header", "novalue"), 2);
    CHECK_EQ(RUN("consume", "t", "--from", "soon"), 2);
    CHECK_EQ(RUN("consume", "t", "--format", "xml"), 2);
    CHECK_EQ(RUN("topic", "create"), 2);
    CHECK_EQ(RUN("topic", "create", "t", "--partitions", "0"), 2);
    CHECK_EQ(RUN("topic", "list", "--partitions", "2"), 2);
    CHECK_EQ(RUN("topic", "rename", "t"), 2);
    CHECK_EQ(RUN("status", "--broker", "nohost:port"), 2);
    CHECK_EQ(RUN("status", "--partition"), 2);
}

static void test_unreachable(void)
{
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", tb_free_port()); /* nothing listens there */
    int64_t start = tb_now_ms();
    CHECK_EQ(RUN("status", "--broker", addr), 1);
    CHECK_LT(tb_now_ms() - start, 3000); /* refused: reported at once, not after retries */
    char expect[128];
    snprintf(expect, sizeof(expect), "turbine status: cannot connect to %s: Connection refused",
             addr);
    CHECK_STREQ(err, strcat(expect, "\n"));
    CHECK_STREQ(out, "");
    CHECK_EQ(RUN_IN("x\n", "produce", "t", "--broker", addr), 1);
    check_one_error_line("turbine produce: cannot connect to");
}

static void test_topics(void)
{
    CHECK_EQ(RUN("topic", "create", "orders", "--partitions", "2", "--retention-bytes", "1G",
                 "--durability", "written"),
             0);
    CHECK_STREQ(out, ""); /* quiet */
    CHECK_STREQ(err, "");
    CHECK_EQ(RUN("topic", "create", "orders"), 1);
    check_one_error_line("turbine topic: topic 'orders': broker: TOPIC_EXISTS");
    CHECK_EQ(RUN("topic", "create", "scratch", "-v"), 0);
    CHECK_CONTAINS(err, "created topic 'scratch'");
    CHECK_EQ(RUN("topic", "list"), 0);
    CHECK_CONTAINS(out, "orders");
    CHECK_CONTAINS(out, "scratch");
    CHECK_EQ(RUN("topic", "delete", "scratch"), 0);
    CHECK_EQ(RUN("topic", "list"), 0);
    CHECK(strstr(out, "scratch") == NULL);
    CHECK_EQ(RUN("topic", "describe", "orders"), 0);
    CHECK_CONTAINS(out, "topic orders\n  partitions 2");
    CHECK_CONTAINS(out, "retention.bytes 1073741824");
    CHECK_CONTAINS(out, "durability written");
    CHECK_CONTAINS(out, "HIGH-WATERMARK");
    CHECK_EQ(RUN("topic", "describe", "missing"), 1);
    check_one_error_line("turbine topic: topic 'missing': broker: UNKNOWN_TOPIC");
}

static char lines[4096], values[4096], kvs[4096];

static void test_produce(void)
{
    size_t l = 0, v = 0, k = 0;
    for (int i = 0; i < 20; i++) {
        l += (size_t)snprintf(lines + l, sizeof(lines) - l, "k%d:v%d\n", i, i);
        v += (size_t)snprintf(values + v, sizeof(values) - v, "v%d\n", i);
        k += (size_t)snprintf(kvs + k, sizeof(kvs) - k, "k%d\tv%d\n", i, i);
    }
    CHECK_EQ(RUN_IN(lines, "produce", "orders", "--key-separator", ":", "--partition", "0",
                    "--header", "src=test", "-H", "n=1"),
             0);
    CHECK_STREQ(out, "");
    CHECK_STREQ(err, "");
    /* Escapes for JSON through the length-delimited format: a quote, a backslash, a newline, a
     * control byte, UTF-8 and one invalid byte; then a line record with no key. */
    static const char tricky[] = "q\"b\\n\n\x01\xc3\xa9\xff";
    uint8_t framed[64] = {0, 0, 0, (uint8_t)(sizeof(tricky) - 1)};
    memcpy(framed + 4, tricky, sizeof(tricky) - 1);
    CHECK_EQ(run_input(framed, 4 + sizeof(tricky) - 1, "produce", "orders", "--format", "length",
                       "--partition", "1", "--acks", "1", "-v", (const char *)NULL),
             0);
    CHECK_STREQ(out, "partition 1 offset 0\n");
    CHECK_EQ(RUN_IN("plain\n", "produce", "orders", "-K", ":", "-p", "1", "--acks", "all"), 0);
    CHECK_EQ(RUN_IN("x\n", "produce", "missing"), 1);
    check_one_error_line("turbine produce: topic 'missing': broker: UNKNOWN_TOPIC");
    CHECK_EQ(RUN_IN("x\n", "produce", "orders", "--partition", "7"), 1);
    check_one_error_line("turbine produce: topic 'orders' has 2 partitions");
}

static void test_consume(void)
{
    CHECK_EQ(RUN("consume", "orders", "--partition", "0"), 0);
    CHECK_STREQ(out, values);
    CHECK_STREQ(err, "");
    CHECK_EQ(RUN("consume", "orders", "-p", "0", "--format", "kv"), 0);
    CHECK_STREQ(out, kvs);
    CHECK_EQ(RUN("consume", "orders", "-p", "0", "--from", "15", "--count", "3"), 0);
    CHECK_STREQ(out, "v15\nv16\nv17\n");
    CHECK_EQ(RUN("consume", "orders", "-p", "0", "--from", "latest"), 0);
    CHECK_STREQ(out, "");
    CHECK_EQ(RUN("consume", "orders", "-p", "0", "--from", "@0", "--count", "1"), 0);
    CHECK_STREQ(out, "v0\n");
    CHECK_EQ(RUN("consume", "orders", "-p", "0", "--from", "@99999999999999"), 0);
    CHECK_STREQ(out, "");
    CHECK_EQ(RUN("consume", "orders", "--format", "json"), 0); /* both partitions */
    CHECK_CONTAINS(out, "{\"topic\":\"orders\",\"partition\":0,\"offset\":3,\"timestamp\":");
    CHECK_CONTAINS(out, "\"key\":\"k3\",\"value\":\"v3\",\"headers\":[{\"key\":\"src\",\"value\":"
                        "\"test\"},{\"key\":\"n\",\"value\":\"1\"}]}\n");
    CHECK_CONTAINS(out, "\"partition\":1,\"offset\":0,");
    CHECK_CONTAINS(out, "\"key\":null,\"value\":\"q\\\"b\\\\n\\n\\u0001\xc3\xa9\\ufffd\","
                        "\"headers\":[]}\n");
    CHECK_CONTAINS(out, "\"offset\":1,\"timestamp\":");
    CHECK_CONTAINS(out, "\"key\":null,\"value\":\"plain\",\"headers\":[]}\n");
    int objects = 0;
    for (const char *p = out; (p = strstr(p, "{\"topic\"")) != NULL; p++)
        objects++;
    CHECK_EQ(objects, 22);
    CHECK_EQ(RUN("consume", "orders", "-p", "5"), 1);
    check_one_error_line("turbine consume: topic 'orders' has 2 partitions");
}

static void test_group(void)
{
    CHECK_EQ(RUN("consume", "orders", "-p", "0", "--group", "g", "--count", "5"), 0);
    CHECK_STREQ(out, "v0\nv1\nv2\nv3\nv4\n");
    CHECK_EQ(RUN("consume", "orders", "-p", "0", "--group", "g", "--count", "5"), 0);
    CHECK_STREQ(out, "v5\nv6\nv7\nv8\nv9\n");
    CHECK_EQ(RUN("consume", "orders", "-p", "0", "--group", "g"), 0);
    CHECK_STREQ(out, values + strlen("v0\nv1\nv2\nv3\nv4\nv5\nv6\nv7\nv8\nv9\n"));
    CHECK_EQ(RUN("consume", "orders", "-p", "0", "--group", "g"), 0); /* all committed */
    CHECK_STREQ(out, "");
    /* Another group starts from --from. */
    CHECK_EQ(RUN("consume", "orders", "-p", "0", "--group", "h", "--from", "18"), 0);
    CHECK_STREQ(out, "v18\nv19\n");
}

static void test_status(void)
{
    CHECK_EQ(RUN("status"), 0);
    CHECK_CONTAINS(out, "reachable");
    CHECK_CONTAINS(out, "topics: 1\n");
    CHECK_CONTAINS(out, "orders");
    CHECK_CONTAINS(out, "20             20"); /* partition 0: high watermark and end */
    CHECK_STREQ(err, "");
}

int main(void)
{
    tb_init(&broker, "cli");
    snprintf(broker_addr, sizeof(broker_addr), "127.0.0.1:%d", broker.port);
    test_usage_errors();
    test_unreachable();
    tb_start(&broker, 1, NULL);
    test_topics();
    test_produce();
    test_consume();
    test_group();
    test_status();
    tb_stop_clean(&broker);
    tb_cleanup(&broker);
    return 0;
}
