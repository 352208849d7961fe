/* SPDX-License-Identifier: MIT
 * bench.c - `turbine bench produce|consume|e2e`: a load generator and meter in the manner of
 * kafka-producer-perf-test, through the client library (thread mode: one client per producer
 * or consumer thread).
 *
 * Every latency goes into one log-linear histogram for the run and one for the current second,
 * both under `bench.lock`; counters of the current second are sampled by the main thread into
 * the time series. produce measures send -> acknowledgement (the send time travels in the
 * delivery callback's argument); e2e measures the CLOCK_MONOTONIC send time carried in each
 * record's first 8 bytes -> its consumption (same process, so the same clock). Exit status: 0
 * success, 1 runtime error, 2 usage.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "turbine/client.h"
#include "turbine_assert.h"
#include "util/histogram.h"

int turbine__bench_main(int argc, char **argv);

enum mode { MODE_PRODUCE, MODE_CONSUME, MODE_E2E };
static const char *const mode_names[] = {"produce", "consume", "e2e"};

#define WORKERS_MAX   64
#define SERIES_MAX    (24 * 3600) /* a day of one-second samples */
#define POLL_MAX      1024        /* messages per consumer poll */
#define SEND_MASK     ((UINT64_C(1) << 48) - 1)
#define IDLE_STOP_NS  (2 * UINT64_C(1000000000))
#define DRAIN_WAIT_NS (10 * UINT64_C(1000000000))

struct options {
    enum mode mode;
    char host[256];
    uint16_t port;
    const char *topic;
    int32_t partitions;
    uint32_t record_size;
    uint64_t count;    /* 0: until the duration */
    double duration_s; /* 0: until the count */
    double rate;       /* msgs/s over all producers, 0 = unthrottled */
    int16_t acks;
    unsigned producers;
    unsigned consumers;
    int32_t linger_ms;
    uint32_t batch_bytes;
    uint32_t max_in_flight; /* batches per partition */
    uint32_t inflight;      /* records outstanding per producer, 0 = the producer's buffer */
    double warmup_s;
    const char *csv;
    const char *plot;
    const char *peer_label; /* print bench/peers/peer_load.h's "peer:" line */
    bool quiet;
};

struct sample {
    double second; /* since the start; the last one may be partial */
    uint64_t records;
    uint64_t bytes;
    uint64_t p50_ns, p99_ns, max_ns;
};

struct worker {
    struct bench *bench;
    unsigned index;
    pthread_t thread;
    pthread_cond_t cond;               /* a slot of `inflight` freed */
    uint64_t outstanding;              /* under bench.lock */
    uint64_t quota;                    /* records to send or 0 (until the end) */
    struct turbine_consumer *consumer; /* consumers only */
    int error;
};

struct bench {
    struct options opt;
    pthread_mutex_t lock;
    /* under lock: */
    struct turbine_histogram total_ns;
    struct turbine_histogram second_ns;
    uint64_t counted;       /* records measured (acked or consumed), warm-up excluded */
    uint64_t counted_bytes; /* their payload */
    uint64_t all;           /* every record acked or consumed */
    uint64_t all_bytes;     /* their payload (the progress line's MB/s, warm-up included) */
    uint64_t first_ns;      /* the first measured record's send (or consume) time */
    uint64_t last_ns;       /* the last ack or consumption */
    uint64_t last_seen_ns;  /* consumers: the last record consumed, for the idle stop */
    int error;              /* the first delivery error */
    /* set once: */
    uint64_t start_ns, warm_ns, end_ns; /* end_ns: UINT64_MAX without a duration */
    atomic_bool stop;
    atomic_uint_fast64_t produced; /* records handed to the producers */
    atomic_uint producers_live;
    struct worker producers[WORKERS_MAX];
    struct worker consumers[WORKERS_MAX];
    struct sample *series;
    size_t series_count;
};

static struct bench bench; /* one run per process; the delivery callback finds it here */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_until_ns(uint64_t deadline_ns)
{
    struct timespec ts = {.tv_sec = (time_t)(deadline_ns / 1000000000u),
                          .tv_nsec = (long)(deadline_ns % 1000000000u)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

/* ---- options ------------------------------------------------------------------------------ */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: turbine bench produce|consume|e2e [options]\n"
            "\n"
            "  produce   send records, measure send -> acknowledgement\n"
            "  consume   read records already in the topic (from the earliest offset)\n"
            "  e2e       produce and consume at once, measure produce -> consume\n"
            "\n"
            "  --broker HOST:PORT     broker (env TURBINE_BROKER; default 127.0.0.1:9292)\n"
            "  --topic NAME           topic (default turbine-bench; created if missing)\n"
            "  --partitions N         partitions of a created topic (default 1)\n"
            "  --record-size BYTES    payload per record (default 1024; alias --size)\n"
            "  --count N              records in all (produce, e2e: sent; consume: read)\n"
            "  --duration SECONDS     run time (default 10 when no --count)\n"
            "  --rate MSGS_S          target rate over all producers (0 = unthrottled)\n"
            "  --acks 0|1|all         acknowledgement level (default 1)\n"
            "  --producers N          producer threads, each with its own client (default 1)\n"
            "  --consumers N          consumer threads, partitions split among them (default 1)\n"
            "  --linger-ms MS         producer batch linger (default 5)\n"
            "  --batch-bytes BYTES    producer batch size (default 16384)\n"
            "  --max-in-flight N      batches in flight per partition, no retries (default 5)\n"
            "  --inflight N           records outstanding per producer (default 0 = buffer)\n"
            "  --warmup SECONDS       records sent in the first SECONDS are not measured\n"
            "  --csv FILE             write the per-second time series and latency distribution\n"
            "  --plot FILE.png        plot throughput and latency with gnuplot\n"
            "  --peer-label LABEL     print the peer comparison's \"peer:\" line instead\n"
            "  -q, --quiet            no progress line\n"
            "  -h, --help             this text\n"
            "\n"
            "On a terminal (stdout a tty) and without --quiet, a progress line is redrawn\n"
            "five times a second: records, MB/s since the start, elapsed seconds and, with\n"
            "--count or --duration, the ETA; fields that do not fit the terminal's width\n"
            "are left off. It is cleared before the summary, which is printed in any case.\n"
            "\n"
            "Exit status: 0 success, 1 runtime error, 2 usage. Format: docs/benchmarks.md.\n");
}

/* A usage error on stderr, one line; returns -EINVAL. */
__attribute__((format(printf, 1, 2))) static int bad(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "turbine bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see turbine bench --help)\n");
    va_end(ap);
    return -EINVAL;
}

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-')
        return false;
    *out = v;
    return true;
}

static bool parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v >= 0))
        return false;
    *out = v;
    return true;
}

static int parse_broker(struct options *o, const char *s)
{
    const char *colon = strrchr(s, ':');
    uint64_t port = TURBINE_CLIENT_DEFAULT_PORT;
    size_t host_len = colon ? (size_t)(colon - s) : strlen(s);
    if (colon && (!parse_u64(colon + 1, &port) || port == 0 || port > 65535))
        return bad("bad broker port in '%s'", s);
    if (host_len == 0 || host_len >= sizeof(o->host))
        return bad("bad broker address '%s'", s);
    memcpy(o->host, s, host_len);
    o->host[host_len] = '\0';
    o->port = (uint16_t)port;
    return 0;
}

static bool gnuplot_found(void)
{
    return system("command -v gnuplot >/dev/null 2>&1") == 0;
}

/* One option with its argument into `o`; -EINVAL after a message on a bad one. */
static int parse_option(struct options *o, int c, const char *arg)
{
    uint64_t u = 0;
    switch (c) {
    case 'b':
        return parse_broker(o, arg);
    case 't':
        if (arg[0] == '\0' || strlen(arg) > TURBINE_TOPIC_NAME_MAX)
            return bad("bad topic name '%s'", arg);
        o->topic = arg;
        return 0;
    case 'c':
        return parse_u64(arg, &o->count) ? 0 : bad("bad --count '%s'", arg);
    case 'd':
        return parse_double(arg, &o->duration_s) ? 0 : bad("bad --duration '%s'", arg);
    case 'r':
        return parse_double(arg, &o->rate) ? 0 : bad("bad --rate '%s'", arg);
    case 'w':
        return parse_double(arg, &o->warmup_s) ? 0 : bad("bad --warmup '%s'", arg);
    case 'a':
        if (strcmp(arg, "all") == 0 || strcmp(arg, "-1") == 0)
            o->acks = TURBINE_ACKS_ALL;
        else if (strcmp(arg, "1") == 0 || strcmp(arg, "0") == 0)
            o->acks = (int16_t)(arg[0] - '0');
        else
            return bad("bad --acks '%s' (0, 1 or all)", arg);
        return 0;
    case 'C':
        o->csv = arg;
        return 0;
    case 'P':
        o->plot = arg;
        return 0;
    case 'L':
        o->peer_label = arg;
        return 0;
    }
    if (!parse_u64(arg, &u) || u > UINT32_MAX)
        return bad("bad number '%s'", arg);
    switch (c) {
    case 'p':
        o->partitions = (int32_t)u;
        return u >= 1 && u <= 100000 ? 0 : bad("bad --partitions '%s'", arg);
    case 's':
        o->record_size = (uint32_t)u;
        return u <= 64u << 20 ? 0 : bad("bad --record-size '%s'", arg);
    case 'n':
        o->producers = (unsigned)u;
        return u >= 1 && u <= WORKERS_MAX ? 0 : bad("bad --producers '%s' (1..64)", arg);
    case 'm':
        o->consumers = (unsigned)u;
        return u >= 1 && u <= WORKERS_MAX ? 0 : bad("bad --consumers '%s' (1..64)", arg);
    case 'l':
        o->linger_ms = (int32_t)u;
        return u <= 60000 ? 0 : bad("bad --linger-ms '%s'", arg);
    case 'B':
        o->batch_bytes = (uint32_t)u;
        return u >= 1 ? 0 : bad("bad --batch-bytes '%s'", arg);
    case 'f':
        o->max_in_flight = (uint32_t)u;
        return u >= 1 ? 0 : bad("bad --max-in-flight '%s'", arg);
    case 'i':
        o->inflight = (uint32_t)u;
        return 0;
    }
    return bad("unknown option");
}

static int parse_options(struct options *o, int argc, char **argv)
{
    static const struct option longs[] = {{"broker", required_argument, 0, 'b'},
                                          {"topic", required_argument, 0, 't'},
                                          {"partitions", required_argument, 0, 'p'},
                                          {"record-size", required_argument, 0, 's'},
                                          {"size", required_argument, 0, 's'},
                                          {"count", required_argument, 0, 'c'},
                                          {"duration", required_argument, 0, 'd'},
                                          {"rate", required_argument, 0, 'r'},
                                          {"acks", required_argument, 0, 'a'},
                                          {"producers", required_argument, 0, 'n'},
                                          {"consumers", required_argument, 0, 'm'},
                                          {"linger-ms", required_argument, 0, 'l'},
                                          {"batch-bytes", required_argument, 0, 'B'},
                                          {"max-in-flight", required_argument, 0, 'f'},
                                          {"inflight", required_argument, 0, 'i'},
                                          {"warmup", required_argument, 0, 'w'},
                                          {"csv", required_argument, 0, 'C'},
                                          {"plot", required_argument, 0, 'P'},
                                          {"peer-label", required_argument, 0, 'L'},
                                          {"quiet", no_argument, 0, 'q'},
                                          {"help", no_argument, 0, 'h'},
                                          {0, 0, 0, 0}};
    *o = (struct options){.port = TURBINE_CLIENT_DEFAULT_PORT,
                          .topic = "turbine-bench",
                          .partitions = 1,
                          .record_size = 1024,
                          .acks = TURBINE_ACKS_LEADER,
                          .producers = 1,
                          .consumers = 1,
                          .linger_ms = 5,
                          .batch_bytes = 16384,
                          .max_in_flight = 5};
    strcpy(o->host, "127.0.0.1");
    const char *env = getenv("TURBINE_BROKER");
    if (env && env[0] && parse_broker(o, env) < 0)
        return 2;
    if (argc < 2 || argv[1][0] == '-') {
        if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
            usage(stdout);
            return 0;
        }
        fprintf(stderr, "turbine bench: missing mode: produce, consume or e2e (see --help)\n");
        return 2;
    }
    bool found = false;
    for (int m = 0; m < 3; m++)
        if (strcmp(argv[1], mode_names[m]) == 0) {
            o->mode = (enum mode)m;
            found = true;
        }
    if (!found) {
        bad("unknown mode '%s' (produce, consume or e2e)", argv[1]);
        return 2;
    }
    optind = 2;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":qh", longs, NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return 0;
        } else if (c == 'q') {
            o->quiet = true;
        } else if (c == '?' || c == ':') {
            if (c == ':')
                bad("option '%s' needs a value", argv[optind - 1]);
            else
                bad("unknown option '%s'", argv[optind - 1]);
            return 2;
        } else if (parse_option(o, c, optarg) < 0) {
            return 2;
        }
    }
    if (optind < argc) {
        bad("unexpected argument '%s'", argv[optind]);
        return 2;
    }
    if (o->mode == MODE_E2E && o->record_size < sizeof(uint64_t)) {
        bad("e2e needs --record-size of at least 8 (the send time)");
        return 2;
    }
    if (o->count == 0 && o->duration_s == 0 && o->mode != MODE_CONSUME)
        o->duration_s = 10;
    if (o->plot && !gnuplot_found()) {
        fprintf(stderr, "turbine bench: --plot needs gnuplot, which is not installed "
                        "(Debian: apt-get install gnuplot-nox); --csv works without it\n");
        return 1;
    }
    return -1; /* go on */
}

/* ---- producers ---------------------------------------------------------------------------- */

/* Runs on a client IO context: accounts one record and frees its producer's slot. */
static void delivery_callback(const struct turbine_delivery *delivery, void *arg)
{
    uint64_t now = now_ns();
    uint64_t packed = (uint64_t)(uintptr_t)arg;
    uint64_t sent = bench.start_ns + (packed & SEND_MASK);
    struct worker *w = &bench.producers[packed >> 48];
    pthread_mutex_lock(&bench.lock);
    if (delivery->error != 0) {
        if (bench.error == 0)
            bench.error = delivery->error;
    } else {
        bench.all++;
        bench.all_bytes += bench.opt.record_size;
        if (sent >= bench.warm_ns && bench.opt.mode == MODE_PRODUCE) {
            if (bench.counted == 0)
                bench.first_ns = sent;
            bench.counted++;
            bench.counted_bytes += bench.opt.record_size;
            bench.last_ns = now;
            turbine_histogram_record(&bench.total_ns, now - sent);
            turbine_histogram_record(&bench.second_ns, now - sent);
        }
    }
    if (w->outstanding-- == bench.opt.inflight)
        pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&bench.lock);
}

static int connect_client(struct turbine_client **client)
{
    struct turbine_client_config config;
    turbine_client_config_default(&config);
    config.host = bench.opt.host;
    config.port = bench.opt.port;
    config.client_id = "turbine-bench";
    config.max_in_flight = 256;
    int rc = turbine_client_create(&config, client);
    if (rc == 0 && (rc = turbine_client_wait_connected(*client, 5000)) < 0) {
        rc = turbine_client_last_error(*client) ? turbine_client_last_error(*client) : rc;
        turbine_client_destroy(*client);
        *client = NULL;
    }
    return rc;
}

/* Hands one record to `producer`, waiting for a slot (inflight) or buffer space. */
static int produce_one(struct worker *w, struct turbine_producer *producer, char *payload)
{
    const struct options *o = &bench.opt;
    pthread_mutex_lock(&bench.lock);
    while (o->inflight > 0 && w->outstanding >= o->inflight)
        pthread_cond_wait(&w->cond, &bench.lock);
    w->outstanding++;
    pthread_mutex_unlock(&bench.lock);
    struct turbine_produce_record record = {.topic = o->topic,
                                            .partition = TURBINE_PARTITION_ANY,
                                            .key_size = -1,
                                            .value = payload,
                                            .value_size = (int32_t)o->record_size,
                                            .timestamp = TURBINE_TIMESTAMP_NOW};
    for (;;) {
        uint64_t now = now_ns();
        if (o->record_size >= sizeof(now))
            memcpy(payload, &now, sizeof(now));
        uint64_t packed = ((uint64_t)w->index << 48) | ((now - bench.start_ns) & SEND_MASK);
        int rc = turbine_produce(producer, &record, delivery_callback, (void *)(uintptr_t)packed);
        if (rc >= 0)
            return 0;
        if (rc != -ENOBUFS || atomic_load(&bench.stop)) {
            pthread_mutex_lock(&bench.lock);
            w->outstanding--;
            pthread_mutex_unlock(&bench.lock);
            return rc;
        }
        sleep_until_ns(now_ns() + 100000); /* the buffer is full: let deliveries drain it */
    }
}

static void *producer_thread(void *arg)
{
    struct worker *w = arg;
    const struct options *o = &bench.opt;
    struct turbine_client *client = NULL;
    struct turbine_producer *producer = NULL;
    char *payload = calloc(1, o->record_size + 8);
    struct turbine_producer_config config;
    turbine_producer_config_default(&config);
    config.acks = o->acks;
    config.linger_ms = o->linger_ms;
    config.batch_bytes = o->batch_bytes;
    config.retries = 0; /* so that max_in_flight batches per partition pipeline */
    config.max_in_flight = o->max_in_flight;
    config.null_key = TURBINE_NULL_KEY_ROUND_ROBIN;
    if (payload == NULL)
        w->error = -ENOMEM;
    else if ((w->error = connect_client(&client)) == 0)
        w->error = turbine_producer_create(client, &config, &producer);
    for (uint32_t i = 8; payload && i < o->record_size; i++)
        payload[i] = (char)('a' + i % 26);
    double interval_ns = o->rate > 0 ? 1e9 * o->producers / o->rate : 0;
    for (uint64_t i = 0; w->error == 0 && (w->quota == 0 || i < w->quota); i++) {
        if (atomic_load(&bench.stop) || now_ns() >= bench.end_ns)
            break;
        if (interval_ns > 0)
            sleep_until_ns(bench.start_ns + (uint64_t)(interval_ns * (double)i));
        w->error = produce_one(w, producer, payload);
        atomic_fetch_add(&bench.produced, 1);
    }
    if (producer && turbine_producer_flush(producer, 60000) < 0 && w->error == 0)
        w->error = -ETIMEDOUT;
    turbine_producer_destroy(producer);
    turbine_client_destroy(client);
    free(payload);
    atomic_fetch_sub(&bench.producers_live, 1);
    return NULL;
}

/* ---- consumers ---------------------------------------------------------------------------- */

static void account_consumed(const struct turbine_message *messages, int n)
{
    uint64_t now = now_ns();
    pthread_mutex_lock(&bench.lock);
    bench.last_seen_ns = now;
    for (int i = 0; i < n; i++) {
        uint64_t sent = now;
        if (bench.opt.mode == MODE_E2E && messages[i].value_size >= 8)
            memcpy(&sent, messages[i].value, sizeof(sent));
        bench.all++;
        bench.all_bytes += (uint64_t)(messages[i].value_size > 0 ? messages[i].value_size : 0);
        if (sent < bench.warm_ns || sent > now)
            continue; /* warm-up, or not a record of this run */
        if (bench.counted == 0)
            bench.first_ns = bench.opt.mode == MODE_E2E ? sent : now;
        bench.counted++;
        bench.counted_bytes += (uint64_t)(messages[i].value_size > 0 ? messages[i].value_size : 0);
        bench.last_ns = now;
        if (bench.opt.mode == MODE_E2E) {
            turbine_histogram_record(&bench.total_ns, now - sent);
            turbine_histogram_record(&bench.second_ns, now - sent);
        }
    }
    pthread_mutex_unlock(&bench.lock);
}

/* Whether a consumer is done: count reached, duration over, or (consume) idle, (e2e) drained. */
static bool consumers_done(void)
{
    const struct options *o = &bench.opt;
    uint64_t now = now_ns();
    pthread_mutex_lock(&bench.lock);
    uint64_t all = bench.all, seen = bench.last_seen_ns ? bench.last_seen_ns : bench.start_ns;
    pthread_mutex_unlock(&bench.lock);
    if (atomic_load(&bench.stop))
        return true;
    if (o->mode == MODE_CONSUME)
        return (o->count > 0 && all >= o->count) || now >= bench.end_ns ||
               (o->count == 0 && now - seen > IDLE_STOP_NS);
    if (atomic_load(&bench.producers_live) > 0)
        return false;
    return all >= atomic_load(&bench.produced) || now - seen > DRAIN_WAIT_NS;
}

static void *consumer_thread(void *arg)
{
    struct worker *w = arg;
    struct turbine_consumer *consumer = w->consumer;
    static _Thread_local struct turbine_message messages[POLL_MAX];
    while (w->error == 0 && !consumers_done()) {
        int n = turbine_consumer_poll(consumer, messages, POLL_MAX, 200);
        if (n < 0 && !turbine_client_retriable(n))
            w->error = n;
        else if (n > 0)
            account_consumed(messages, n);
    }
    return NULL;
}

/* Creates consumer `index` on `client`, assigned its share of the partitions, before the
 * producers start (e2e reads from the log end, so assignment comes first). */
static int consumer_setup(struct turbine_client *client, unsigned index, int32_t partitions,
                          struct turbine_consumer **out)
{
    struct turbine_consumer_config config;
    turbine_consumer_config_default(&config);
    config.max_wait_ms = 100;
    int rc = turbine_consumer_create(client, &config, out);
    int64_t from = bench.opt.mode == MODE_E2E ? TURBINE_OFFSET_LATEST : TURBINE_OFFSET_EARLIEST;
    for (int32_t p = (int32_t)index; rc == 0 && p < partitions; p += (int32_t)bench.opt.consumers) {
        int64_t position = turbine_consumer_assign(*out, bench.opt.topic, p, from);
        rc = position < 0 ? (int)position : 0;
    }
    return rc;
}

/* ---- reporting ---------------------------------------------------------------------------- */

static double us(uint64_t ns)
{
    return (double)ns / 1000.0;
}

/* Samples the last interval into the series (the main thread, about once a second). */
static void sample(uint64_t now, uint64_t *records_before, uint64_t *bytes_before)
{
    struct sample s = {.second = (double)(now - bench.start_ns) / 1e9};
    pthread_mutex_lock(&bench.lock);
    s.records = bench.counted - *records_before;
    s.bytes = bench.counted_bytes - *bytes_before;
    *records_before = bench.counted;
    *bytes_before = bench.counted_bytes;
    s.p50_ns = turbine_histogram_percentile(&bench.second_ns, 50);
    s.p99_ns = turbine_histogram_percentile(&bench.second_ns, 99);
    s.max_ns = turbine_histogram_percentile(&bench.second_ns, 100);
    turbine_histogram_reset(&bench.second_ns);
    pthread_mutex_unlock(&bench.lock);
    if (bench.series_count < SERIES_MAX)
        bench.series[bench.series_count++] = s;
}

/* The terminal's width in columns, 0 when unknown (not a terminal, or a pty never sized). */
static unsigned terminal_columns(void)
{
    struct winsize ws;
    return ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 ? ws.ws_col : 0;
}

/* Draws the progress line: records, MB/s (since the start), elapsed and, with --count or
 * --duration, the time left. "\r\033[K" clears only the cursor's row, so a line that wrapped
 * would leave a copy behind at every redraw: the fields that do not fit in the terminal's
 * width less one column are left off, from the last (the width is read at each redraw, so a
 * resized terminal is followed). */
static void progress(uint64_t now)
{
    const struct options *o = &bench.opt;
    TURBINE_ASSERT(now >= bench.start_ns);
    double elapsed = (double)(now - bench.start_ns) / 1e9;
    pthread_mutex_lock(&bench.lock);
    uint64_t records = bench.all, bytes = bench.all_bytes;
    pthread_mutex_unlock(&bench.lock);
    double eta = -1;
    if (o->duration_s > 0)
        eta = o->duration_s - elapsed;
    if (o->count > 0 && records > 0) {
        double by_count = elapsed * (double)(o->count - (records < o->count ? records : o->count)) /
                          (double)records;
        eta = eta < 0 || by_count < eta ? by_count : eta;
    }
    char fields[4][64];
    int n = 0;
    snprintf(fields[n++], sizeof(fields[0]), "%s: %" PRIu64 " records", mode_names[o->mode],
             records);
    snprintf(fields[n++], sizeof(fields[0]), "  %.1f MB/s",
             elapsed > 0 ? (double)bytes / 1e6 / elapsed : 0.0);
    snprintf(fields[n++], sizeof(fields[0]), "  %.1f s elapsed", elapsed);
    if (eta >= 0)
        snprintf(fields[n++], sizeof(fields[0]), "  ETA %.1f s", eta);
    unsigned columns = terminal_columns();
    size_t room = columns > 0 ? columns - 1 : SIZE_MAX;
    size_t used = strlen(fields[0]) < room ? strlen(fields[0]) : room;
    printf("\r\033[K%.*s", (int)used, fields[0]);
    for (int i = 1; i < n && used + strlen(fields[i]) <= room; i++) {
        fputs(fields[i], stdout);
        used += strlen(fields[i]);
    }
    TURBINE_ASSERT(used <= room);
    fflush(stdout);
}

static const char *latency_what(void)
{
    return bench.opt.mode == MODE_PRODUCE ? "send -> ack" : "produce -> consume";
}

static void summary(void)
{
    const struct options *o = &bench.opt;
    const struct turbine_histogram *h = &bench.total_ns;
    double seconds =
        bench.last_ns > bench.first_ns ? (double)(bench.last_ns - bench.first_ns) / 1e9 : 0;
    double rate = seconds > 0 ? (double)bench.counted / seconds : 0;
    double mb_s = seconds > 0 ? (double)bench.counted_bytes / 1e6 / seconds : 0;
    if (o->peer_label) {
        printf("peer: turbine %s msgs/s=%.0f MB/s=%.2f p50_us=%.1f p90_us=%.1f p99_us=%.1f "
               "p999_us=%.1f max_us=%.1f count=%" PRIu64 " seconds=%.3f total=%" PRIu64 "\n",
               o->peer_label, rate, mb_s, us(turbine_histogram_percentile(h, 50)),
               us(turbine_histogram_percentile(h, 90)), us(turbine_histogram_percentile(h, 99)),
               us(turbine_histogram_percentile(h, 99.9)), us(turbine_histogram_percentile(h, 100)),
               bench.counted, seconds, bench.all);
        return;
    }
    printf("%s: %" PRIu64 " records, %.2f MB in %.2f s: %.0f msgs/s, %.2f MB/s\n",
           mode_names[o->mode], bench.counted, (double)bench.counted_bytes / 1e6, seconds, rate,
           mb_s);
    if (o->mode != MODE_CONSUME)
        printf("latency (%s, us): p50=%.0f p90=%.0f p99=%.0f p99.9=%.0f max=%.0f\n", latency_what(),
               us(turbine_histogram_percentile(h, 50)), us(turbine_histogram_percentile(h, 90)),
               us(turbine_histogram_percentile(h, 99)), us(turbine_histogram_percentile(h, 99.9)),
               us(turbine_histogram_percentile(h, 100)));
}

/* The CSV: three blocks separated by two blank lines (gnuplot's `index`), each a header line
 * then rows. Returns 0 or -errno. */
static int write_csv(const char *path)
{
    static const double percentiles[] = {50, 75, 90, 95, 99, 99.9, 99.99, 100};
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -errno;
    fprintf(f, "second,records,msgs_s,mb_s,p50_us,p99_us,max_us\n");
    double previous = 0;
    for (size_t i = 0; i < bench.series_count; i++) {
        const struct sample *s = &bench.series[i];
        double span = s->second - previous > 0 ? s->second - previous : 1;
        previous = s->second;
        fprintf(f, "%.3f,%" PRIu64 ",%.1f,%.3f,%.1f,%.1f,%.1f\n", s->second, s->records,
                (double)s->records / span, (double)s->bytes / 1e6 / span, us(s->p50_ns),
                us(s->p99_ns), us(s->max_ns));
    }
    fprintf(f, "\n\npercentile,latency_us\n");
    for (size_t i = 0; i < sizeof(percentiles) / sizeof(percentiles[0]); i++)
        fprintf(f, "%g,%.1f\n", percentiles[i],
                us(turbine_histogram_percentile(&bench.total_ns, percentiles[i])));
    fprintf(f, "\n\nlatency_us,count,cumulative,percentile\n");
    struct turbine_histogram_bucket b;
    uint64_t n = turbine_histogram_count(&bench.total_ns);
    for (bool ok = turbine_histogram_bucket_first(&bench.total_ns, &b); ok;
         ok = turbine_histogram_bucket_next(&bench.total_ns, &b))
        fprintf(f, "%.3f,%" PRIu64 ",%" PRIu64 ",%.4f\n", us(b.highest), b.count, b.cumulative,
                100.0 * (double)b.cumulative / (double)n);
    int rc = ferror(f) ? -EIO : 0;
    return fclose(f) != 0 && rc == 0 ? -errno : rc;
}

static int plot(const char *csv, const char *png)
{
    FILE *g = popen("gnuplot", "w");
    if (g == NULL)
        return -errno;
    fprintf(g,
            "set terminal png size 1000,900\n"
            "set output '%s'\n"
            "set datafile separator ','\n"
            "set grid\n"
            "set multiplot layout 2,1 title 'turbine bench %s'\n"
            "set title 'throughput'\n"
            "set xlabel 'seconds'\nset ylabel 'MB/s'\nset y2label 'msgs/s'\n"
            "set ytics nomirror\nset y2tics\nset yrange [0:*]\nset y2range [0:*]\n"
            "plot '%s' index 0 every ::1 using 1:4 with linespoints title 'MB/s', "
            "'' index 0 every ::1 using 1:3 axes x1y2 with lines title 'msgs/s'\n"
            "unset y2tics\nunset y2label\nset ytics mirror\n",
            png, mode_names[bench.opt.mode], csv);
    if (turbine_histogram_count(&bench.total_ns) > 0)
        fprintf(g,
                "set title 'latency distribution (%s)'\n"
                "set xlabel 'latency (us)'\nset ylabel 'percentile'\nset logscale x\n"
                "set yrange [0:100]\n"
                "plot '%s' index 2 every ::1 using 1:4 with steps title 'cumulative %%'\n",
                latency_what(), csv);
    fprintf(g, "unset multiplot\n");
    int status = pclose(g);
    return status == 0 ? 0 : -EIO;
}

/* ---- the run ------------------------------------------------------------------------------ */

/* Makes sure the topic exists (created with --partitions unless consuming); returns its
 * partition count or an error, after a message. */
static int prepare_topic(struct turbine_client *admin)
{
    const struct options *o = &bench.opt;
    int rc = turbine_admin_partitions(admin, o->topic);
    if (rc == TURBINE_CLIENT_ERR(TURBINE_ERR_UNKNOWN_TOPIC) && o->mode != MODE_CONSUME) {
        rc = turbine_admin_create_topic(admin, o->topic, o->partitions, NULL);
        if (rc == 0 || rc == TURBINE_CLIENT_ERR(TURBINE_ERR_TOPIC_EXISTS))
            rc = turbine_admin_partitions(admin, o->topic);
    }
    if (rc < 0)
        fprintf(stderr, "turbine bench: topic %s: %s\n", o->topic, turbine_client_strerror(rc));
    return rc;
}

static int start_consumers(struct turbine_client **clients, int32_t partitions)
{
    for (unsigned i = 0; i < bench.opt.consumers; i++) {
        struct worker *w = &bench.consumers[i];
        struct turbine_consumer *consumer = NULL;
        int rc = connect_client(&clients[i]);
        if (rc == 0)
            rc = consumer_setup(clients[i], i, partitions, &consumer);
        if (rc < 0) {
            fprintf(stderr, "turbine bench: consumer: %s\n", turbine_client_strerror(rc));
            turbine_consumer_destroy(consumer);
            return rc;
        }
        w->consumer = consumer;
    }
    return 0;
}

static void start_producers(void)
{
    const struct options *o = &bench.opt;
    atomic_store(&bench.producers_live, o->producers);
    for (unsigned i = 0; i < o->producers; i++) {
        struct worker *w = &bench.producers[i];
        w->index = i;
        w->quota = o->count / o->producers + (i < o->count % o->producers);
        pthread_cond_init(&w->cond, NULL);
        pthread_create(&w->thread, NULL, producer_thread, w);
    }
}

/* Samples and draws progress until every worker is done. */
static void watch(bool show)
{
    const struct options *o = &bench.opt;
    uint64_t records = 0, bytes = 0, next = bench.start_ns + 1000000000u;
    for (;;) {
        bool done = atomic_load(&bench.producers_live) == 0;
        if (o->mode != MODE_PRODUCE)
            done = consumers_done();
        uint64_t now = now_ns();
        if (now >= next || done) {
            sample(now, &records, &bytes);
            next += 1000000000u;
        }
        if (done)
            break;
        if (show)
            progress(now);
        sleep_until_ns(now + 200000000u);
    }
    if (show)
        printf("\r\033[K");
}

static int run(void)
{
    const struct options *o = &bench.opt;
    struct turbine_client *admin = NULL, *clients[WORKERS_MAX] = {0};
    int rc = connect_client(&admin);
    if (rc < 0) {
        fprintf(stderr, "turbine bench: cannot reach broker %s:%u: %s\n", o->host, o->port,
                turbine_client_strerror(rc));
        return 1;
    }
    int partitions = prepare_topic(admin);
    turbine_client_destroy(admin);
    if (partitions < 0)
        return 1;
    bool consuming = o->mode != MODE_PRODUCE;
    if (consuming && start_consumers(clients, partitions) < 0)
        return 1;
    bench.start_ns = now_ns();
    bench.warm_ns = bench.start_ns + (uint64_t)(o->warmup_s * 1e9);
    bench.end_ns =
        o->duration_s > 0 ? bench.start_ns + (uint64_t)(o->duration_s * 1e9) : UINT64_MAX;
    if (o->mode != MODE_CONSUME)
        start_producers();
    for (unsigned i = 0; consuming && i < o->consumers; i++)
        pthread_create(&bench.consumers[i].thread, NULL, consumer_thread, &bench.consumers[i]);
    watch(isatty(STDOUT_FILENO) && !o->quiet && !o->peer_label);

    int error = bench.error;
    for (unsigned i = 0; o->mode != MODE_CONSUME && i < o->producers; i++) {
        pthread_join(bench.producers[i].thread, NULL);
        error = error ? error : bench.producers[i].error;
    }
    for (unsigned i = 0; consuming && i < o->consumers; i++) {
        atomic_store(&bench.stop, true);
        pthread_join(bench.consumers[i].thread, NULL);
        error = error ? error : bench.consumers[i].error;
        turbine_consumer_destroy(bench.consumers[i].consumer);
        turbine_client_destroy(clients[i]);
    }
    error = error ? error : bench.error;
    if (error) {
        fprintf(stderr, "turbine bench: %s failed: %s\n", mode_names[o->mode],
                turbine_client_strerror(error));
        return 1;
    }
    if (o->mode == MODE_E2E && bench.all < atomic_load(&bench.produced))
        fprintf(stderr, "turbine bench: warning: %" PRIu64 " of %" PRIu64 " records consumed\n",
                (uint64_t)bench.all, (uint64_t)atomic_load(&bench.produced));
    summary();
    return 0;
}

static int report_files(void)
{
    const struct options *o = &bench.opt;
    char tmp[] = "/tmp/turbine-bench-XXXXXX.csv";
    const char *csv = o->csv;
    if (csv == NULL && o->plot) {
        int fd = mkstemps(tmp, 4);
        if (fd < 0) {
            perror("turbine bench: temporary CSV");
            return 1;
        }
        close(fd);
        csv = tmp;
    }
    int rc = csv ? write_csv(csv) : 0;
    if (rc < 0)
        fprintf(stderr, "turbine bench: writing %s: %s\n", csv, strerror(-rc));
    else if (o->plot && (rc = plot(csv, o->plot)) < 0)
        fprintf(stderr, "turbine bench: gnuplot failed to render %s\n", o->plot);
    if (csv == tmp)
        unlink(tmp);
    return rc < 0 ? 1 : 0;
}

int turbine__bench_main(int argc, char **argv)
{
    int rc = parse_options(&bench.opt, argc, argv);
    if (rc >= 0)
        return rc;
    pthread_mutex_init(&bench.lock, NULL);
    turbine_histogram_init(&bench.total_ns);
    turbine_histogram_init(&bench.second_ns);
    bench.series = calloc(SERIES_MAX, sizeof(*bench.series));
    if (bench.series == NULL) {
        fprintf(stderr, "turbine bench: out of memory\n");
        return 1;
    }
    rc = run();
    if (rc == 0)
        rc = report_files();
    free(bench.series);
    return rc;
}
