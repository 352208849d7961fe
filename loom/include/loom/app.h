/* SPDX-License-Identifier: MIT
 * app.h - the application template: options, start-up and orderly shutdown of every core.
 *
 * loom_main() parses the standard options, reads the CPU/NUMA topology with hwloc, reserves
 * each core's memory, starts one pinned reactor thread per selected CPU (the calling thread
 * becomes core 0), builds the cross-core rings, waits until every reactor is registered and
 * runs the main fiber on core 0. When that fiber returns (or loom_exit() is called) every core
 * shuts down in order and loom_main() returns the exit status: the fiber's result, or 2 for a
 * bad command line, or 1 when the runtime could not start (the reason is printed on stderr).
 */
#ifndef LOOM_APP_H
#define LOOM_APP_H

#include "loom/common.h"
#include "loom/fiber.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The runtime's configuration; loom_config_init() fills the defaults. */
struct loom_config {
    unsigned smp;              /* cores to run; 0 = one per CPU in the cpuset */
    char cpuset[256];          /* CPU list like "0-3,6"; empty = the process's allowed set */
    size_t memory_bytes;       /* whole-process budget, divided among cores */
    bool hugepages;            /* back the budget with huge pages (falls back to THP) */
    bool lock_memory;          /* mlock the budget */
    int64_t poll_ns;           /* spin this long before sleeping (--poll-us) */
    int64_t task_quota_ns;     /* run fibers at most this long per loop iteration */
    int64_t stall_ns;          /* report fibers running longer; 0 disables */
    int64_t shutdown_grace_ns; /* how long shutdown waits for fibers to finish */
    size_t stack_bytes[3];     /* the three stack size classes */
    unsigned ring_entries;     /* io_uring SQ entries per core */
    unsigned smp_ring_entries; /* slots per cross-core ring (power of two) */
    unsigned io_depth;         /* disk operations in flight per core (--io-depth) */
    size_t io_buffer_bytes;    /* registered IO buffer pool per core (--io-buffers);
                                * 0 = min(16 MiB, an eighth of the core's budget) */
    size_t net_buffer_bytes;   /* receive buffer ring per core (--net-buffers);
                                * 0 = min(32 MiB, an eighth of the core's budget) */
    size_t net_buffer_size;    /* one receive buffer (--net-buffer-size) */
    unsigned net_buffer_group; /* receive buffers per group: the ring starts with one group and
                                * adds one each time all are in use, up to net_buffer_bytes */
    size_t zc_threshold;       /* sends this large use send_zc to non-loopback peers; 0 = never */
    bool oversubscribe;        /* allow smp above the CPU count, pinning cores round-robin
                                * (for tests of many-core logic on small machines; there
                                * is no command-line option for it) */
};

LOOM_API void loom_config_init(struct loom_config *config);

/* An option a program adds to the standard ones. `parse` gets the argument (NULL for a flag)
 * and returns 0, or -EINVAL to reject it; loom then prints
 * "<program>: invalid value for --<name>: '<value>' (see <program> --help)" and returns 2. */
struct loom_option {
    const char *name;     /* long name without dashes */
    const char *arg_name; /* NULL for a flag without argument */
    const char *help;
    int (*parse)(const char *value, void *ctx);
    void *ctx;
};

struct loom_app {
    const char *name;        /* for --help and errors; NULL = argv[0] */
    const char *summary;     /* one line for --help */
    const char *usage_extra; /* text after the options in --help, may be NULL */
    const struct loom_option *options;
    size_t option_count;
    loom_fiber_fn main; /* runs as the first fiber on core 0; its result is the exit status */
    void *arg;
    /* Adjusts loom's defaults before argv is parsed (options still override them); NULL keeps
     * loom_config_init()'s. */
    void (*defaults)(struct loom_config *config);
};

/* Parses argv (standard options plus app->options), then runs as loom_run() does. Positional
 * arguments are not allowed unless the program adds options for them. --help prints usage on
 * stdout and returns 0 without starting. Returns the exit status. Call from the main thread. */
LOOM_API int loom_app_main(const struct loom_app *app, int argc, char **argv);

/* loom_app_main() with no extra options. */
LOOM_API int loom_main(int argc, char **argv, loom_fiber_fn fn, void *arg);

/* Starts the runtime with `config` (no argv parsing), runs fn(arg) as the main fiber, shuts
 * down and returns the exit status (1 with a message on stderr when start-up fails). */
LOOM_API int loom_run(const struct loom_config *config, loom_fiber_fn fn, void *arg);

/* Parses a size like "512M", "4G", "65536", "64K" (binary units) into *bytes.
 * Returns 0 or -EINVAL. */
LOOM_API int loom_parse_size(const char *text, size_t *bytes);

/* Parses a CPU list like "0-3,6" into a bitmap of LOOM_CORES_MAX bits.
 * Returns the number of CPUs in it, or -EINVAL. */
LOOM_API int loom_parse_cpulist(const char *text, uint64_t mask[LOOM_CORES_MAX / 64]);

#ifdef __cplusplus
}
#endif
#endif
