/* SPDX-License-Identifier: MIT
 * metrics.c - the broker's counters and their Prometheus text. Each core counts into its own
 * cache-aligned record (no locks or atomics on the data path); /metrics gathers every core's
 * record, loom's reactor counters, the core's page cache and the partitions it owns with
 * loom_invoke_on_all, each core formatting its own lines, which core 0 then groups by metric
 * family under HELP and TYPE lines as the text format requires.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/broker.h"
#include "turbine_assert.h"

static struct turbine__core_metrics core_metrics[LOOM_CORES_MAX];

/* Upper bounds of the latency buckets in microseconds; the last is +Inf. */
static const uint64_t bucket_us[TURBINE_LATENCY_BUCKETS - 1] = {
    50,    100,   250,    500,    1000,   2500,    5000,   10000,
    25000, 50000, 100000, 250000, 500000, 1000000, 5000000};

struct turbine__core_metrics *turbine__metrics_here(void)
{
    return &core_metrics[loom_core_id()];
}

void turbine__metrics_request(uint16_t api_key, int64_t ns)
{
    struct turbine__core_metrics *m = turbine__metrics_here();
    if (api_key >= TURBINE_API_COUNT)
        return;
    m->requests[api_key]++;
    if (api_key != TURBINE_API_PRODUCE && api_key != TURBINE_API_FETCH)
        return;
    int h = api_key == TURBINE_API_PRODUCE ? 0 : 1;
    uint64_t us = ns > 0 ? (uint64_t)ns / 1000 : 0;
    unsigned b = 0;
    while (b < TURBINE_LATENCY_BUCKETS - 1 && us > bucket_us[b])
        b++;
    m->latency[h][b]++;
    m->latency_sum_ns[h] += ns > 0 ? (uint64_t)ns : 0;
}

void turbine__metrics_error(uint16_t error)
{
    if (error != TURBINE_ERR_NONE && error <= TURBINE_ERR_MAX)
        turbine__metrics_here()->errors[error]++;
}

/* ---- text ----------------------------------------------------------------------------------- */

struct text {
    char *buf;
    size_t len, cap;
    bool failed;
};

static void __attribute__((format(printf, 2, 3))) put(struct text *t, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = t->cap - t->len;
        int n = t->failed ? 0 : vsnprintf(t->buf ? t->buf + t->len : NULL, room, fmt, ap);
        va_end(ap);
        if (t->failed || n < 0) {
            t->failed = true;
            return;
        }
        if ((size_t)n < room) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap ? t->cap * 2 : 16384;
        while (cap - t->len <= (size_t)n)
            cap *= 2;
        char *b = realloc(t->buf, cap);
        if (b == NULL) {
            t->failed = true;
            return;
        }
        t->buf = b;
        t->cap = cap;
    }
}

/* ---- gathering (each core formats its own lines) ----------------------------------------------
 */

struct gather {
    struct text core[LOOM_CORES_MAX]; /* per-core lines: core, cache, partitions */
    struct turbine__core_metrics each[LOOM_CORES_MAX];
};

static void put_partitions(struct text *t)
{
    const struct turbine_routing *r = turbine_routing_acquire();
    if (r == NULL)
        return;
    for (uint32_t i = 0; i < r->topic_count; i++) {
        const struct turbine_topic_entry *e = &r->topics[i];
        for (uint32_t p = 0; p < e->partitions; p++) {
            if (turbine_partition_owner(e->hash, p, loom_core_count()) != loom_core_id())
                continue;
            struct turbine_log *log = turbine__partition_peek(e->id, p);
            if (log == NULL)
                continue;
            struct turbine_log_stats st;
            turbine_log_stats_get(log, &st);
            put(t,
                "turbine_partition_end_offset{topic=\"%s\",partition=\"%" PRIu32 "\"} %" PRId64
                "\n",
                e->name, p, turbine_log_end_offset(log));
            put(t,
                "turbine_partition_start_offset{topic=\"%s\",partition=\"%" PRIu32 "\"} %" PRId64
                "\n",
                e->name, p, turbine_log_start_offset(log));
            put(t,
                "turbine_partition_bytes_appended_total{topic=\"%s\",partition=\"%" PRIu32
                "\"} %" PRIu64 "\n",
                e->name, p, st.bytes);
            put(t,
                "turbine_partition_segments{topic=\"%s\",partition=\"%" PRIu32 "\"} %" PRIu64 "\n",
                e->name, p, st.segments);
            /* the write path: bytes written against bytes appended is its amplification */
            const struct {
                const char *name;
                uint64_t v;
            } w[] = {{"writes_total", st.writes},
                     {"write_bytes_total", st.write_bytes},
                     {"flushes_total", st.flushes},
                     {"padding_bytes_total", st.padding}};
            for (size_t k = 0; k < sizeof(w) / sizeof(w[0]); k++)
                put(t, "turbine_partition_%s{topic=\"%s\",partition=\"%" PRIu32 "\"} %" PRIu64 "\n",
                    w[k].name, e->name, p, w[k].v);
        }
    }
    turbine_routing_release(r);
}

static int gather_on_core(void *arg)
{
    struct gather *g = arg;
    unsigned core = loom_core_id();
    struct text *t = &g->core[core];
    g->each[core] = core_metrics[core];
    struct loom_stats ls;
    if (loom_stats_get(core, &ls) == 0) {
        const struct {
            const char *name;
            uint64_t v;
        } rs[] = {{"loop_iterations", ls.loop_iterations},
                  {"fibers_spawned", ls.fibers_spawned},
                  {"fibers_run", ls.fibers_run},
                  {"sqes_submitted", ls.sqes_submitted},
                  {"cqes_reaped", ls.cqes_reaped},
                  {"sqes_overflowed", ls.sqes_overflowed},
                  {"msgs_sent", ls.msgs_sent},
                  {"msgs_received", ls.msgs_received},
                  {"msgs_parked", ls.msgs_parked},
                  {"sleeps", ls.sleeps},
                  {"wakeups_sent", ls.wakeups_sent},
                  {"wakeups_received", ls.wakeups_received},
                  {"timers_fired", ls.timers_fired},
                  {"stalls", ls.stalls},
                  {"stale_posts", ls.stale_posts},
                  {"heap_allocs", ls.heap_allocs},
                  {"syscalls", ls.syscalls},
                  {"stack_waits", ls.stack_waits}};
        for (size_t i = 0; i < sizeof(rs) / sizeof(rs[0]); i++)
            put(t, "loom_%s_total{core=\"%u\"} %" PRIu64 "\n", rs[i].name, core, rs[i].v);
    }
    struct turbine_cache_stats cs;
    if (turbine_cache_stats_get(&cs) == 0) {
        put(t, "turbine_cache_hits_total{core=\"%u\"} %" PRIu64 "\n", core, cs.hits);
        put(t, "turbine_cache_misses_total{core=\"%u\"} %" PRIu64 "\n", core, cs.misses);
        put(t, "turbine_cache_evictions_total{core=\"%u\"} %" PRIu64 "\n", core, cs.evictions);
        put(t, "turbine_cache_pages{core=\"%u\"} %" PRIu64 "\n", core, cs.pages);
        put(t, "turbine_cache_pinned_pages{core=\"%u\"} %" PRIu64 "\n", core, cs.pinned);
    }
    put_partitions(t);
    return 0;
}

static void put_histogram(struct text *t, const char *name, const struct turbine__core_metrics *m,
                          int h)
{
    put(t, "# HELP %s Request latency on the connection's core, seconds.\n# TYPE %s histogram\n",
        name, name);
    uint64_t cum = 0;
    for (unsigned b = 0; b < TURBINE_LATENCY_BUCKETS; b++) {
        cum += m->latency[h][b];
        if (b < TURBINE_LATENCY_BUCKETS - 1)
            put(t, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name, (double)bucket_us[b] / 1e6, cum);
        else
            put(t, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, cum);
    }
    put(t, "%s_sum %.9f\n%s_count %" PRIu64 "\n", name, (double)m->latency_sum_ns[h] / 1e9, name,
        cum);
}

static void put_totals(struct text *t, const struct gather *g)
{
    unsigned cores = loom_core_count();
    struct turbine__core_metrics s = {0};
    for (unsigned c = 0; c < cores; c++) {
        const struct turbine__core_metrics *m = &g->each[c];
        for (unsigned a = 0; a < TURBINE_API_COUNT; a++)
            s.requests[a] += m->requests[a];
        for (int h = 0; h < 2; h++) {
            for (unsigned b = 0; b < TURBINE_LATENCY_BUCKETS; b++)
                s.latency[h][b] += m->latency[h][b];
            s.latency_sum_ns[h] += m->latency_sum_ns[h];
        }
        for (unsigned e = 0; e <= TURBINE_ERR_MAX; e++)
            s.errors[e] += m->errors[e];
        s.produce_bytes += m->produce_bytes;
    }
    put(t,
        "# HELP turbine_produce_bytes_total Record bytes produced (appended).\n"
        "# TYPE turbine_produce_bytes_total counter\nturbine_produce_bytes_total %" PRIu64 "\n",
        s.produce_bytes);
    put(t, "# HELP turbine_requests_total Requests answered, by API.\n"
           "# TYPE turbine_requests_total counter\n");
    for (unsigned a = 0; a < TURBINE_API_COUNT; a++)
        put(t, "turbine_requests_total{api=\"%s\"} %" PRIu64 "\n", turbine_api_name((uint16_t)a),
            s.requests[a]);
    put(t, "# HELP turbine_errors_total Errors answered (whole requests or partitions), by code.\n"
           "# TYPE turbine_errors_total counter\n");
    for (unsigned e = 1; e <= TURBINE_ERR_MAX; e++)
        put(t, "turbine_errors_total{code=\"%u\",error=\"%s\"} %" PRIu64 "\n", e,
            turbine_error_name((uint16_t)e), s.errors[e]);
    put_histogram(t, "turbine_produce_latency_seconds", &s, 0);
    put_histogram(t, "turbine_fetch_latency_seconds", &s, 1);
    put(t,
        "# HELP turbine_connections Open client connections.\n# TYPE turbine_connections gauge\n"
        "turbine_connections %u\n",
        atomic_load(&turbine__broker.connections));
}

/* The per-core lines, grouped by family as the text format wants (all samples of a metric in
 * one group, after its HELP and TYPE): families in the order they first appear, each core's
 * samples in core order. A family ending in _total is a counter, the others are gauges. */
#define FAMILIES_MAX 128

static size_t family_len(const char *line, size_t len)
{
    size_t n = 0;
    while (n < len && line[n] != '{' && line[n] != ' ')
        n++;
    return n;
}

static const char *family_help(const char *name)
{
    static const struct {
        const char *prefix, *help;
    } helps[] = {
        {"loom_", "A loom reactor counter of one core (loom_stats_get)."},
        {"turbine_cache_", "The page cache of one core (turbine_cache_stats_get)."},
        {"turbine_partition_", "A partition's log, from its owner core."},
    };
    for (size_t i = 0; i < sizeof(helps) / sizeof(helps[0]); i++)
        if (strncmp(name, helps[i].prefix, strlen(helps[i].prefix)) == 0)
            return helps[i].help;
    return "A per-core figure.";
}

static void put_grouped(struct text *t, const struct gather *g)
{
    unsigned cores = loom_core_count();
    const char *fam[FAMILIES_MAX];
    size_t fam_len[FAMILIES_MAX];
    unsigned nf = 0;
    for (unsigned c = 0; c < cores; c++) {
        const char *buf = g->core[c].buf, *end = buf + g->core[c].len;
        for (const char *line = buf; line < end;) {
            const char *eol = memchr(line, '\n', (size_t)(end - line));
            size_t len = eol ? (size_t)(eol - line) : (size_t)(end - line);
            size_t fl = family_len(line, len);
            unsigned f = 0;
            while (f < nf && !(fam_len[f] == fl && memcmp(fam[f], line, fl) == 0))
                f++;
            if (f == nf) {
                TURBINE_ASSERT(nf < FAMILIES_MAX);
                fam[nf] = line;
                fam_len[nf++] = fl;
            }
            line += len + 1;
        }
    }
    for (unsigned f = 0; f < nf; f++) {
        char name[160];
        snprintf(name, sizeof(name), "%.*s", (int)fam_len[f], fam[f]);
        size_t nl = strlen(name);
        bool counter = nl > 6 && strcmp(name + nl - 6, "_total") == 0;
        put(t, "# HELP %s %s\n# TYPE %s %s\n", name, family_help(name), name,
            counter ? "counter" : "gauge");
        for (unsigned c = 0; c < cores; c++) {
            const char *buf = g->core[c].buf, *end = buf + g->core[c].len;
            for (const char *line = buf; line < end;) {
                const char *eol = memchr(line, '\n', (size_t)(end - line));
                size_t len = eol ? (size_t)(eol - line) : (size_t)(end - line);
                if (family_len(line, len) == fam_len[f] && memcmp(line, fam[f], fam_len[f]) == 0)
                    put(t, "%.*s\n", (int)len, line);
                line += len + 1;
            }
        }
    }
}

ssize_t turbine__metrics_render(char **out)
{
    TURBINE_ASSERT(loom_core_id() == 0);
    struct gather *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return -ENOMEM;
    int rc = loom_invoke_on_all(gather_on_core, g, LOOM_NO_DEADLINE);
    struct text t = {0};
    put_totals(&t, g);
    put_grouped(&t, g);
    for (unsigned c = 0; c < loom_core_count(); c++)
        free(g->core[c].buf);
    free(g);
    if (rc < 0 || t.failed) {
        free(t.buf);
        return rc < 0 ? rc : -ENOMEM;
    }
    *out = t.buf;
    return (ssize_t)t.len;
}
