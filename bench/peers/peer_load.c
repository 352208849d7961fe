/* SPDX-License-Identifier: MIT
 * peer_load.c - the command line, clock and result line of the peer load generators (see
 * peer_load.h). Linked into each of them, with turbine's histogram.
 */
#include "peer_load.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *program = "peer_load";

static void usage(void)
{
    fprintf(stderr,
            "usage: %s [--host 127.0.0.1] [--port N] [--size 1024] [--inflight 256]\n"
            "          [--duration 5] [--count 0] [--warmup 0.5] [--config LABEL]\n",
            program);
    exit(2);
}

static double parse_double(const char *s, double low, double high)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v >= low && v <= high))
        usage();
    return v;
}

void peer_load_parse(struct peer_load_options *options, int argc, char **argv, int default_port)
{
    static const struct option longs[] = {
        {"host", required_argument, NULL, 'h'},
        {"port", required_argument, NULL, 'p'},
        {"size", required_argument, NULL, 's'},
        {"inflight", required_argument, NULL, 'i'},
        {"duration", required_argument, NULL, 'd'},
        {"count", required_argument, NULL, 'n'},
        {"warmup", required_argument, NULL, 'w'},
        {"config", required_argument, NULL, 'c'},
        {NULL, 0, NULL, 0},
    };
    const char *slash = strrchr(argv[0], '/');
    program = slash ? slash + 1 : argv[0];
    *options = (struct peer_load_options){
        .host = "127.0.0.1",
        .port = default_port,
        .size = 1024,
        .inflight = 256,
        .duration_s = 5,
        .count = 0,
        .warmup_s = 0.5,
        .config = "default",
    };
    int c;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (c) {
        case 'h':
            options->host = optarg;
            break;
        case 'p':
            options->port = (int)parse_double(optarg, 1, 65535);
            break;
        case 's':
            options->size = (uint32_t)parse_double(optarg, 8, 1 << 20);
            break;
        case 'i':
            options->inflight = (uint32_t)parse_double(optarg, 1, 1 << 20);
            break;
        case 'd':
            options->duration_s = parse_double(optarg, 0, 86400);
            break;
        case 'n':
            options->count = (uint64_t)parse_double(optarg, 0, 1e15);
            break;
        case 'w':
            options->warmup_s = parse_double(optarg, 0, 3600);
            break;
        case 'c':
            options->config = optarg;
            break;
        default:
            usage();
        }
    }
    if (optind != argc || (options->duration_s == 0 && options->count == 0))
        usage();
    if (options->duration_s > 0 && options->warmup_s >= options->duration_s)
        usage();
}

uint64_t peer_load_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double us(const struct turbine_histogram *h, double percentile)
{
    return (double)turbine_histogram_percentile(h, percentile) / 1e3;
}

void peer_load_report(const char *system, const struct peer_load_options *options,
                      const struct peer_load_result *result)
{
    if (result->count == 0 || result->last_ack_ns <= result->first_send_ns)
        peer_load_die("no record acknowledged after the warm-up");
    double seconds = (double)(result->last_ack_ns - result->first_send_ns) / 1e9;
    double rate = (double)result->count / seconds;
    const struct turbine_histogram *h = &result->latency_ns;
    printf("peer: %s %s msgs/s=%.0f MB/s=%.2f p50_us=%.1f p90_us=%.1f p99_us=%.1f "
           "p999_us=%.1f max_us=%.1f count=%llu seconds=%.3f total=%llu\n",
           system, options->config, rate, rate * options->size / 1e6, us(h, 50), us(h, 90),
           us(h, 99), us(h, 99.9), us(h, 100), (unsigned long long)result->count, seconds,
           (unsigned long long)result->total);
    fflush(stdout);
}

void peer_load_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: error: ", program);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}
