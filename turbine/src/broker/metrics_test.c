/* SPDX-License-Identifier: MIT
 * metrics_test.c - the admin HTTP port of a real broker (--smp 2), checked with curl: /health
 * and /metrics answer 200 with their content types, /metrics names loom's per-core counters,
 * the page caches, the request counters and latency histograms, and a produce moves the
 * counters and the partition's end offset; an unknown path gets 404, a malformed request 400,
 * and the broker keeps serving.
 * LOOM_TEST_TAGS: no-valgrind tsan
 */
#include "broker/broker_test_util.h"

struct http {
    int status;
    char type[128];
    char *body;
};

/* GET http://127.0.0.1:port/path with curl: status, content type and body. */
static struct http http_get(int port, const char *path)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd),
             "curl -s --max-time 10 -w '\\n@@%%{http_code} %%{content_type}' "
             "http://127.0.0.1:%d%s",
             port, path);
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    CHECK(buf != NULL);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += n;
        if (len + 1 == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            CHECK(buf != NULL);
        }
    }
    buf[len] = '\0';
    CHECK_EQ(pclose(p), 0);
    struct http h = {.body = buf};
    char *tail = strstr(buf, "\n@@");
    CHECK(tail != NULL);
    *tail = '\0';
    CHECK_EQ(sscanf(tail + 3, "%d %127[^\n]", &h.status, h.type) >= 1, 1);
    return h;
}

/* The value of the sample `name` (with its labels) in a Prometheus text body, or -1. */
static int64_t sample(const char *body, const char *name)
{
    size_t len = strlen(name);
    for (const char *l = body; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        if (strncmp(l, name, len) == 0 && l[len] == ' ')
            return atoll(l + len + 1);
    }
    return -1;
}

/* Sends raw bytes to the admin port; returns the first line of the answer. */
static void raw_request(int port, const char *bytes, char *line, size_t cap)
{
    int fd = tb_connect(port);
    tb_send(fd, bytes, strlen(bytes));
    size_t got = 0;
    ssize_t r;
    while (got + 1 < cap && (r = recv(fd, line + got, cap - 1 - got, 0)) > 0)
        got += (size_t)r;
    line[got] = '\0';
    char *eol = strchr(line, '\r');
    if (eol)
        *eol = '\0';
    close(fd);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    if (system("curl --version >/dev/null 2>&1") != 0)
        test_skip("curl is not installed");
    struct tb_broker b;
    tb_init(&b, "metrics");
    int admin = tb_free_port();
    char admin_s[16];
    snprintf(admin_s, sizeof(admin_s), "%d", admin);
    const char *extra[] = {"--admin-port", admin_s, NULL};
    tb_start(&b, 2, extra);

    struct http h = http_get(admin, "/health");
    CHECK_EQ(h.status, 200);
    CHECK(strstr(h.type, "text/plain") != NULL);
    CHECK_STREQ(h.body, "ok\n");
    free(h.body);

    h = http_get(admin, "/metrics");
    CHECK_EQ(h.status, 200);
    CHECK(strstr(h.type, "text/plain; version=0.0.4") != NULL);
    CHECK(strstr(h.body, "# TYPE turbine_produce_latency_seconds histogram") != NULL);
    CHECK_GE(sample(h.body, "loom_fibers_run_total{core=\"0\"}"), 1);
    CHECK_GE(sample(h.body, "loom_fibers_run_total{core=\"1\"}"), 1);
    CHECK_GE(sample(h.body, "turbine_cache_hits_total{core=\"1\"}"), 0);
    CHECK_EQ(sample(h.body, "turbine_requests_total{api=\"PRODUCE\"}"), 0);
    CHECK_EQ(sample(h.body, "turbine_produce_latency_seconds_count"), 0);
    CHECK_EQ(sample(h.body, "turbine_connections"), 0);
    free(h.body);

    int fd = tb_connect(b.port);
    CHECK_EQ(tb_create_topic(fd, "m", 1, TURBINE_TOPIC_DURABILITY_FSYNC), TURBINE_ERR_NONE);
    uint8_t batch[4096];
    uint32_t size = tb_make_batch(batch, sizeof(batch), 7, 3, 100);
    uint16_t error;
    CHECK_EQ(tb_produce(fd, "m", 0, TURBINE_ACKS_ALL, batch, size, &error), 0);
    CHECK_EQ(error, TURBINE_ERR_NONE);
    tb_produce(fd, "m", 5, TURBINE_ACKS_ALL, batch, size, &error);
    CHECK_EQ(error, TURBINE_ERR_UNKNOWN_PARTITION);

    h = http_get(admin, "/metrics");
    CHECK_EQ(h.status, 200);
    CHECK_EQ(sample(h.body, "turbine_requests_total{api=\"PRODUCE\"}"), 2);
    CHECK_EQ(sample(h.body, "turbine_requests_total{api=\"CREATE_TOPICS\"}"), 1);
    CHECK_EQ(sample(h.body, "turbine_produce_latency_seconds_count"), 2);
    CHECK_EQ(sample(h.body, "turbine_produce_latency_seconds_bucket{le=\"+Inf\"}"), 2);
    CHECK_EQ(sample(h.body, "turbine_errors_total{code=\"9\",error=\"UNKNOWN_PARTITION\"}"), 1);
    CHECK_EQ(sample(h.body, "turbine_partition_end_offset{topic=\"m\",partition=\"0\"}"), 3);
    CHECK_EQ(sample(h.body, "turbine_produce_bytes_total"), size);
    CHECK_EQ(sample(h.body, "turbine_connections"), 1);
    free(h.body);
    close(fd);

    h = http_get(admin, "/nope");
    CHECK_EQ(h.status, 404);
    free(h.body);
    char line[512];
    raw_request(admin, "GARBAGE \x01\x02 nonsense\r\n\r\n", line, sizeof(line));
    CHECK_STREQ(line, "HTTP/1.1 400 Bad Request");
    raw_request(admin, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", line,
                sizeof(line));
    CHECK_STREQ(line, "HTTP/1.1 405 Method Not Allowed");
    h = http_get(admin, "/health");
    CHECK_EQ(h.status, 200);
    free(h.body);

    tb_stop_clean(&b);
    tb_cleanup(&b);
    printf("  /health, /metrics (counters move with a produce), 404, 400, 405: as documented\n");
    return 0;
}
