/* SPDX-License-Identifier: MIT
 * config.h - the broker's configuration: embedded defaults, a `key = value` file (libinih) and
 * command-line flags, in that order of precedence from lowest to highest.
 *
 * One table in config.c names every option once: its file key, its flag (the key with dashes),
 * its type, range, default and meaning. The defaults, the file parser, the flags handed to
 * loom_app_main(), --help and the table in docs/broker.md all come from it, so they cannot
 * disagree. Every bad value is reported as one line naming where it came from ("FILE:LINE" or
 * "--flag"), the key and the expected form; nothing is silently ignored or clamped.
 *
 * Flags compose with loom's own (--smp, --memory, ...): turbine_broker_flags_init() builds
 * the struct loom_option array for struct loom_app. Their parse callbacks only record the
 * value; turbine_broker_config_load(), called first thing in the main fiber, reads the file,
 * applies the recorded flags over it and validates, so a flag wins over the file wherever it
 * stands on the command line and every error comes out as exactly one line.
 */
#ifndef TURBINE_BROKER_CONFIG_H
#define TURBINE_BROKER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <loom/app.h>

#include "turbine/log.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TURBINE_BROKER_PORT       9292 /* the native protocol's default port */
#define TURBINE_BROKER_ADMIN_PORT 9293 /* metrics and health over HTTP; 0 = off */

/* Upper bounds on options that size things (also used by topics.h). */
#define TURBINE_PARTITIONS_MAX  4096u   /* partitions of one topic */
#define TURBINE_CONFIG_PATH_MAX 4096u   /* data_dir, including the NUL */
#define TURBINE_CONFIG_FILE_MAX 1048576 /* the config file is read whole; larger is refused */
#define TURBINE_CONFIG_LINE_MAX 4096    /* longer lines are refused, not cut (inih would cut) */

enum turbine_log_level {
    TURBINE_LOG_ERROR = 0,
    TURBINE_LOG_WARN = 1,
    TURBINE_LOG_INFO = 2,
    TURBINE_LOG_DEBUG = 3,
};

/* Every option; see the table in config.c (and docs/broker.md) for units, ranges, defaults. */
struct turbine_broker_config {
    char data_dir[TURBINE_CONFIG_PATH_MAX]; /* topics and partition logs */
    char listen_host[64];                   /* numeric IPv4 or IPv6 address */
    uint32_t port;                          /* native protocol */
    uint32_t admin_port;                    /* HTTP metrics and health; 0 = off */
    uint32_t max_connections;               /* whole broker; more are refused at accept */
    uint64_t max_frame_bytes;               /* a larger declared frame length is refused */
    uint64_t connection_inflight_bytes;     /* per connection (>= max_frame_bytes) */
    uint64_t core_inflight_bytes;           /* per core (>= connection_inflight_bytes) */
    int64_t idle_timeout_ms;                /* close connections idle this long; 0 = never */
    int64_t frame_deadline_ms;              /* a started frame must be whole within this */
    int64_t request_timeout_ms;             /* upper bound on any request's own timeout */
    int64_t shutdown_timeout_ms;            /* SIGTERM: time to finish requests in flight */
    bool auto_create_topics;                /* produce/fetch to an unknown topic creates it */
    uint32_t default_partitions;            /* of a topic created without a count */
    int64_t retention_ms;                   /* topic default; 0 = keep forever */
    uint64_t retention_bytes;               /* topic default, per partition; 0 = no limit */
    enum turbine_durability durability;     /* topic default: what acks=all waits for */
    uint64_t segment_bytes;                 /* topic default: roll segments past this size */
    uint64_t cache_bytes;                   /* page cache per core */
    enum turbine_log_level log_level;
};

/* Fills the embedded defaults (the table's default column). Never fails. */
void turbine_broker_config_init(struct turbine_broker_config *config);

/* Sets one option from its text, as the file or a flag gives it. `key` is the file key
 * (underscores); `where` names the source for the message ("broker.conf:12" or "--port").
 * Returns 0, or -EINVAL (unknown key or bad value) with one line in `error` (no newline):
 * "<where>: <key>: expected <form>, got '<value>'". On error *config is unchanged. */
int turbine_broker_config_set(struct turbine_broker_config *config, const char *key,
                              const char *value, const char *where, char *error, size_t error_size);

/* Applies a config file's contents (`text`, `size` bytes, need not be NUL-terminated):
 * `key = value` lines, comments are lines starting with '#' or ';', no [sections], each key
 * at most once. `file_name` appears in messages. Returns 0 or -EINVAL with one line in
 * `error` ("<file>:<line>: ..."); options set before the bad line stay set. */
int turbine_broker_config_parse_text(struct turbine_broker_config *config, const char *text,
                                     size_t size, const char *file_name, char *error,
                                     size_t error_size);

/* Checks the rules between options (connection_inflight_bytes >= max_frame_bytes, ...).
 * Returns 0 or -EINVAL with one line in `error` naming the keys. */
int turbine_broker_config_validate(const struct turbine_broker_config *config, char *error,
                                   size_t error_size);

/* Writes `config` as a config file (every key, one per line, in table order) that
 * turbine_broker_config_parse_text() reads back to the same values. */
void turbine_broker_config_write(const struct turbine_broker_config *config, FILE *out);

/* Writes the Markdown table of docs/broker.md: key, flag, default, meaning. */
void turbine_broker_config_write_docs(FILE *out);

/* ---- command-line flags --------------------------------------------------------------------
 * One loom_option per key ("--data-dir PATH", ...) plus "--config FILE". The struct is
 * caller-owned and must outlive loom_app_main() (the options point into it); flag values are
 * pointers into argv, which lives as long as the process. */

#define TURBINE_BROKER_OPTIONS 20 /* keys in the table (checked by config.c) */

struct turbine_broker_flags;

struct turbine_broker_flag_ctx { /* private: what one option's parse callback records into */
    struct turbine_broker_flags *flags;
    int index; /* table index, or -1 for --config */
};

struct turbine_broker_flags {
    struct loom_option options[TURBINE_BROKER_OPTIONS + 1]; /* for struct loom_app */
    size_t option_count;                                    /* for struct loom_app */
    const char *config_file;                                /* --config FILE, NULL when not given */
    const char *values[TURBINE_BROKER_OPTIONS]; /* the last value given per key, or NULL */
    struct turbine_broker_flag_ctx ctx[TURBINE_BROKER_OPTIONS + 1];
    char names[TURBINE_BROKER_OPTIONS][40];     /* "data-dir" ... */
    char help[TURBINE_BROKER_OPTIONS + 1][200]; /* "meaning (default: X)" */
};

/* Fills flags->options / option_count for loom_app. */
void turbine_broker_flags_init(struct turbine_broker_flags *flags);

/* The whole configuration: defaults, then the file named by --config (read through loom's
 * io.h, at most TURBINE_CONFIG_FILE_MAX bytes), then the flags, then validation. `flags` may
 * be NULL (defaults only). Returns 0, or -EINVAL with one line in `error` for a bad value, an
 * unknown key or a broken rule, or -errno with one line when the file cannot be read.
 * Core: a fiber (any core; the broker calls it on core 0 before anything else). */
int turbine_broker_config_load(struct turbine_broker_config *config,
                               const struct turbine_broker_flags *flags, char *error,
                               size_t error_size);

/* Names for enum values, as the file spells them. */
const char *turbine_durability_name(enum turbine_durability durability);
const char *turbine_log_level_name(enum turbine_log_level level);

#ifdef __cplusplus
}
#endif
#endif
