/* SPDX-License-Identifier: MIT
 * metrics_test.c - the admin HTTP port of a real broker (--smp 2), checked with curl: /health
 * and /metrics answer 200 with their content types, /metrics names loom's per-core counters,
 * the page caches, the request counters and latency histograms, and a produce moves the
 * counters and the partition's end offset; every line follows the Prometheus text format
 * (check_exposition: HELP/TYPE before each family, one group per family, well-formed names,
 * labels and values); an unknown path gets 404, a malformed request 400, and the broker keeps
 * serving.
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

/* ---- the Prometheus text exposition format (0.0.4), checked line by line ----------------- */

static bool name_char(char c, bool first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
           (!first && c >= '0' && c <= '9');
}

/* The length of a metric (or, without colons, label) name at p; 0 when there is none. */
static size_t name_len(const char *p, bool label)
{
    size_t n = 0;
    while (name_char(p[n], n == 0) && !(label && p[n] == ':'))
        n++;
    return n;
}

#define FAMILIES 256

struct family {
    char name[128];
    char type[16];
};

static struct family families[FAMILIES];
static int family_count;

static const struct family *family_of(const char *name, size_t len)
{
    for (int i = 0; i < family_count; i++) {
        const struct family *f = &families[i];
        size_t fl = strlen(f->name);
        if (fl == len && memcmp(f->name, name, len) == 0)
            return f;
        static const char *const sfx[] = {"_bucket", "_sum", "_count"};
        for (int k = 0; k < 3 && strcmp(f->type, "histogram") == 0; k++)
            if (len == fl + strlen(sfx[k]) && memcmp(name, f->name, fl) == 0 &&
                memcmp(name + fl, sfx[k], strlen(sfx[k])) == 0)
                return f;
    }
    return NULL;
}

/* Every line is a HELP or TYPE comment or a sample of the family whose TYPE came last (one TYPE
 * per family, its samples in one group), with well-formed names, labels and a number; histogram
 * buckets carry a numeric `le` or +Inf. */
static void check_exposition(const char *body)
{
    family_count = 0;
    size_t blen = strlen(body);
    CHECK(blen > 0 && body[blen - 1] == '\n');
    int samples = 0;
    for (const char *line = body; *line;) {
        const char *eol = strchr(line, '\n');
        CHECK(eol != NULL);
        char text[1024];
        size_t len = (size_t)(eol - line);
        CHECK_LT(len, sizeof(text));
        memcpy(text, line, len);
        text[len] = '\0';
        line = eol + 1;
        if (text[0] == '#') {
            if (strncmp(text, "# HELP ", 7) == 0) {
                CHECK_GT(name_len(text + 7, false), 0u);
                continue;
            }
            CHECK(strncmp(text, "# TYPE ", 7) == 0);
            size_t n = name_len(text + 7, false);
            CHECK_GT(n, 0u);
            CHECK_EQ(text[7 + n], ' ');
            const char *type = text + 8 + n;
            CHECK(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0 ||
                  strcmp(type, "histogram") == 0 || strcmp(type, "summary") == 0 ||
                  strcmp(type, "untyped") == 0);
            CHECK(family_of(text + 7, n) == NULL); /* one TYPE per family */
            CHECK_LT(family_count, FAMILIES);
            CHECK_LT(n, sizeof(families[0].name));
            memcpy(families[family_count].name, text + 7, n);
            families[family_count].name[n] = '\0';
            snprintf(families[family_count].type, sizeof(families[0].type), "%s", type);
            family_count++;
            continue;
        }
        size_t n = name_len(text, false);
        CHECK_GT(n, 0u);
        const struct family *f = family_of(text, n);
        if (f == NULL)
            test_fail_(__FILE__, __LINE__, "sample without a TYPE before it: %s", text);
        /* a family's samples form one group, right after its TYPE */
        if (f != &families[family_count - 1])
            test_fail_(__FILE__, __LINE__, "sample outside its family's group: %s", text);
        const char *p = text + n;
        bool has_le = false;
        char le[64] = "";
        if (*p == '{') {
            p++;
            while (*p != '}') {
                size_t ln = name_len(p, true);
                CHECK_GT(ln, 0u);
                bool is_le = ln == 2 && memcmp(p, "le", 2) == 0;
                p += ln;
                CHECK_EQ(*p, '=');
                CHECK_EQ(p[1], '"');
                p += 2;
                size_t vi = 0;
                while (*p != '"') {
                    CHECK(*p != '\0');
                    if (*p == '\\') {
                        CHECK(p[1] == '\\' || p[1] == '"' || p[1] == 'n');
                        p++;
                    }
                    if (is_le && vi + 1 < sizeof(le))
                        le[vi++] = *p;
                    p++;
                }
                if (is_le) {
                    le[vi] = '\0';
                    has_le = true;
                }
                p++;
                if (*p == ',')
                    p++;
                else
                    CHECK_EQ(*p, '}');
            }
            p++;
        }
        CHECK_EQ(*p, ' ');
        p++;
        char *end;
        if (strcmp(p, "+Inf") != 0 && strcmp(p, "-Inf") != 0 && strcmp(p, "NaN") != 0) {
            (void)strtod(p, &end);
            CHECK(end != p && (*end == '\0' || *end == ' '));
        }
        if (n > 7 && strcmp(text + n - 7, "_bucket") == 0 && strcmp(f->type, "histogram") == 0) {
            CHECK(has_le);
            if (strcmp(le, "+Inf") != 0) {
                (void)strtod(le, &end);
                CHECK(*end == '\0');
            }
        }
        samples++;
    }
    CHECK_GT(samples, 10);
    CHECK_GT(family_count, 5);
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
    check_exposition(h.body);
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
    /* one acks=all produce: written (whole blocks, at least the batch) and flushed */
    CHECK_GE(sample(h.body, "turbine_partition_writes_total{topic=\"m\",partition=\"0\"}"), 1);
    CHECK_GE(sample(h.body, "turbine_partition_write_bytes_total{topic=\"m\",partition=\"0\"}"),
             (int64_t)size);
    CHECK_GE(sample(h.body, "turbine_partition_flushes_total{topic=\"m\",partition=\"0\"}"), 1);
    CHECK_EQ(sample(h.body, "turbine_partition_padding_bytes_total{topic=\"m\",partition=\"0\"}"),
             0);
    CHECK_EQ(sample(h.body, "turbine_produce_bytes_total"), size);
    CHECK_EQ(sample(h.body, "turbine_connections"), 1);
    check_exposition(h.body);
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
    printf("  /health, /metrics (counters move with a produce; every line in the text format), "
           "404, 400, 405: as documented\n");
    return 0;
}
