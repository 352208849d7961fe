/* SPDX-License-Identifier: MIT
 * peer_load.h - what the peer load generators (redis_load, nats_load) share: one command line,
 * the clock, and one result line, so every system is loaded and reported the same way.
 *
 *     PROG [--host 127.0.0.1] [--port N] [--size 1024] [--inflight 256] [--duration 5]
 *          [--count 0] [--warmup 0.5] [--config LABEL]
 *
 * A run sends fixed-size records (`size` bytes of payload) keeping `inflight` requests
 * outstanding, for `duration` seconds or `count` records (whichever ends first; 0 = no limit),
 * then waits for every outstanding acknowledgement. Records sent in the first `warmup`
 * seconds are acknowledged but not counted. Latency is per record, from the moment its request
 * is handed to the socket to the moment its acknowledgement is read, in a log-linear histogram.
 *
 * The result, on stdout, one line (MB = 10^6 bytes of payload):
 *     peer: SYSTEM CONFIG msgs/s=F MB/s=F p50_us=F p90_us=F p99_us=F p999_us=F max_us=F
 *           count=N seconds=F total=N
 * (count: records counted, after the warm-up; total: every record acknowledged, warm-up
 * included, so that a server's CPU time over its whole run can be divided by it.)
 * Exit 0 on success, 1 on any error (a refused record, a lost connection), 2 on bad usage.
 */
#ifndef TURBINE_BENCH_PEER_LOAD_H
#define TURBINE_BENCH_PEER_LOAD_H

#include <stdbool.h>
#include <stdint.h>

#include "util/histogram.h"

struct peer_load_options {
    const char *host;
    int port;
    uint32_t size;      /* payload bytes per record */
    uint32_t inflight;  /* requests outstanding at most */
    double duration_s;  /* 0: until count */
    uint64_t count;     /* 0: until duration */
    double warmup_s;    /* records sent before this are not counted */
    const char *config; /* the label in the result line */
};

/* Parses argv into `options` (defaults first; `port` defaults to `default_port`). Prints the
 * usage and exits 2 on a bad option. */
void peer_load_parse(struct peer_load_options *options, int argc, char **argv, int default_port);

/* CLOCK_MONOTONIC in ns. */
uint64_t peer_load_now_ns(void);

/* A run's outcome: records acknowledged after the warm-up, the time they span, and their
 * latencies (ns). */
struct peer_load_result {
    uint64_t count;
    uint64_t total;         /* every record acknowledged, warm-up included */
    uint64_t first_send_ns; /* the first counted record's send time */
    uint64_t last_ack_ns;   /* the last acknowledgement read */
    struct turbine_histogram latency_ns;
};

/* Prints the "peer:" line for `system` (e.g. "redis") from `result`. */
void peer_load_report(const char *system, const struct peer_load_options *options,
                      const struct peer_load_result *result);

/* Prints "PROG: error: ..." on stderr and exits 1. */
void peer_load_die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

#endif
