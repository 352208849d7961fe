/* SPDX-License-Identifier: MIT
 * config.c - the broker's options: one table (`options` below) drives the defaults, the file
 * parser, the flags, --help and docs/broker.md. See config.h for precedence and errors.
 *
 * A value is parsed completely into a scratch value and only then stored, so a bad value
 * never leaves an option half set. Sizes use loom_parse_size() (K, M, G, T, binary, with
 * optional "iB"/"B"), the same syntax as loom's --memory.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ini.h>
#include <loom/io.h>

#include "broker/config.h"
#include "turbine_assert.h"

enum kind {
    KIND_PATH,       /* char array: any bytes but NUL, 1 .. size - 1 */
    KIND_HOST,       /* char array: numeric IPv4 or IPv6 address */
    KIND_UINT,       /* uint32_t in [min, max] */
    KIND_SIZE,       /* uint64_t bytes in [min, max] */
    KIND_DURATION,   /* int64_t milliseconds in [min, max] */
    KIND_BOOL,       /* bool */
    KIND_DURABILITY, /* enum turbine_durability: fsync | written */
    KIND_LOG_LEVEL,  /* enum turbine_log_level */
};

struct option_spec {
    const char *key;  /* file key; the flag is the same with '-' for '_' */
    enum kind kind;   /* how the text is parsed and stored */
    size_t offset;    /* of the field in struct turbine_broker_config */
    size_t size;      /* of the field */
    uint64_t min;     /* range for UINT, SIZE, DURATION */
    uint64_t max;     /* (inclusive) */
    const char *def;  /* the default, as text: parsed by the same code at init */
    const char *arg;  /* the form in --help: PATH, SIZE, MS ... */
    const char *help; /* meaning, one line */
};

#define FIELD(f)                                                                                   \
    offsetof(struct turbine_broker_config, f), sizeof(((struct turbine_broker_config *)0)->f)
#define KiB    (1ull << 10)
#define MiB    (1ull << 20)
#define GiB    (1ull << 30)
#define TiB    (1ull << 40)
#define SECOND 1000ull
#define MINUTE (60 * SECOND)
#define HOUR   (60 * MINUTE)
#define DAY    (24 * HOUR)

/* The option table: every option, once. Order is the order of --help, docs and write(). */
static const struct option_spec options[] = {
    {"data_dir", KIND_PATH, FIELD(data_dir), 0, 0, "./data", "PATH",
     "directory of the topic registry and partition logs; created if missing"},
    {"listen_host", KIND_HOST, FIELD(listen_host), 0, 0, "127.0.0.1", "ADDR",
     "address the native protocol listens on (0.0.0.0 or :: for all)"},
    {"port", KIND_UINT, FIELD(port), 1, 65535, "9292", "PORT", "native protocol TCP port"},
    {"admin_port", KIND_UINT, FIELD(admin_port), 0, 65535, "9293", "PORT",
     "HTTP port for metrics and health on listen_host; 0 = off"},
    {"max_connections", KIND_UINT, FIELD(max_connections), 1, 1000000, "20000", "N",
     "client connections of the whole broker; more are closed at accept"},
    {"max_frame_bytes", KIND_SIZE, FIELD(max_frame_bytes), 1 * KiB, 1 * GiB, "100M", "SIZE",
     "largest request frame; a larger declared length is refused before any allocation"},
    {"connection_inflight_bytes", KIND_SIZE, FIELD(connection_inflight_bytes), 1 * KiB, 64 * GiB,
     "128M", "SIZE",
     "request bytes in flight per connection before its receive pauses (>= max_frame_bytes)"},
    {"core_inflight_bytes", KIND_SIZE, FIELD(core_inflight_bytes), 1 * KiB, 1 * TiB, "256M", "SIZE",
     "request bytes in flight per core before receives pause (>= connection_inflight_bytes)"},
    {"idle_timeout_ms", KIND_DURATION, FIELD(idle_timeout_ms), 0, 30 * DAY, "10m", "DURATION",
     "close a connection with no request in flight and nothing received this long; 0 = never"},
    {"frame_deadline_ms", KIND_DURATION, FIELD(frame_deadline_ms), 100, 1 * HOUR, "30s", "DURATION",
     "a frame must arrive whole within this from its first byte (slowloris)"},
    {"request_timeout_ms", KIND_DURATION, FIELD(request_timeout_ms), 1, 1 * HOUR, "30s", "DURATION",
     "longest a request may wait on the broker (a client's own timeout is capped)"},
    {"shutdown_timeout_ms", KIND_DURATION, FIELD(shutdown_timeout_ms), 0, 1 * HOUR, "30s",
     "DURATION", "on SIGTERM/SIGINT, time to finish requests in flight before failing them"},
    {"auto_create_topics", KIND_BOOL, FIELD(auto_create_topics), 0, 0, "false", "BOOL",
     "produce to an unknown topic creates it with the defaults below"},
    {"default_partitions", KIND_UINT, FIELD(default_partitions), 1, TURBINE_PARTITIONS_MAX, "1",
     "N", "partitions of a topic created without a count"},
    {"retention_ms", KIND_DURATION, FIELD(retention_ms), 0, 100ull * 365 * DAY, "7d", "DURATION",
     "topic default: delete segments older than this; 0 = keep forever"},
    {"retention_bytes", KIND_SIZE, FIELD(retention_bytes), 0, 1ull << 60, "0", "SIZE",
     "topic default: delete the oldest segments beyond this size per partition; 0 = no limit"},
    {"durability", KIND_DURABILITY, FIELD(durability), 0, 0, "fsync", "fsync|written",
     "topic default: acks=all waits for fsync (power-loss safe) or only the write"},
    {"segment_bytes", KIND_SIZE, FIELD(segment_bytes), 1 * MiB, 1 * TiB, "1G", "SIZE",
     "topic default: roll to a new segment file past this size"},
    {"cache_bytes", KIND_SIZE, FIELD(cache_bytes), 1 * MiB, 1 * TiB, "64M", "SIZE",
     "page cache per core, in front of the O_DIRECT logs"},
    {"log_level", KIND_LOG_LEVEL, FIELD(log_level), 0, 0, "info", "error|warn|info|debug",
     "least severe messages logged"},
};
#define OPTION_COUNT (sizeof(options) / sizeof(options[0]))
_Static_assert(OPTION_COUNT == TURBINE_BROKER_OPTIONS, "TURBINE_BROKER_OPTIONS in config.h");

/* ---- names ---------------------------------------------------------------------------------- */

static const char *const durability_names[] = {"none", "written", "fsync"};
static const char *const log_level_names[] = {"error", "warn", "info", "debug"};

const char *turbine_durability_name(enum turbine_durability durability)
{
    TURBINE_ASSERT((unsigned)durability < 3);
    return durability_names[durability];
}

const char *turbine_log_level_name(enum turbine_log_level level)
{
    TURBINE_ASSERT((unsigned)level < 4);
    return log_level_names[level];
}

static const struct option_spec *find_spec(const char *key)
{
    for (size_t i = 0; i < OPTION_COUNT; i++)
        if (strcmp(options[i].key, key) == 0)
            return &options[i];
    return NULL;
}

/* "max_frame_bytes" -> "max-frame-bytes" */
static void flag_name(const char *key, char *out, size_t size)
{
    size_t i = 0;
    for (; key[i] && i + 1 < size; i++)
        out[i] = key[i] == '_' ? '-' : key[i];
    TURBINE_ASSERT(key[i] == '\0');
    out[i] = '\0';
}

/* ---- value parsers: each returns 0 and the value, or -EINVAL ----------------------------------
 */

static int parse_u64(const char *text, uint64_t *out, const char **rest)
{
    if (text[0] < '0' || text[0] > '9') /* no sign, no blanks */
        return -EINVAL;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno)
        return -EINVAL;
    *out = v;
    *rest = end;
    return 0;
}

/* "250ms", "30s", "10m", "2h", "7d"; a bare number is milliseconds. */
static int parse_duration_ms(const char *text, uint64_t *ms)
{
    static const struct {
        const char *suffix;
        uint64_t scale;
    } units[] = {{"", 1}, {"ms", 1}, {"s", SECOND}, {"m", MINUTE}, {"h", HOUR}, {"d", DAY}};
    uint64_t v;
    const char *rest;
    if (parse_u64(text, &v, &rest) < 0)
        return -EINVAL;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(rest, units[i].suffix) != 0)
            continue;
        if (v > INT64_MAX / units[i].scale)
            return -EINVAL;
        *ms = v * units[i].scale;
        return 0;
    }
    return -EINVAL;
}

static int parse_bool(const char *text, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(text, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(text, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -EINVAL;
}

static int parse_name(const char *text, const char *const *names, int first, int count, int *out)
{
    for (int i = first; i < count; i++) {
        if (strcmp(text, names[i]) == 0) {
            *out = i;
            return 0;
        }
    }
    return -EINVAL;
}

/* Formats a byte count the way a user writes it: "100M", "1G", "4097". */
static void format_size(uint64_t bytes, char *out, size_t size)
{
    static const char units[] = "KMGT";
    int unit = -1;
    while (unit < 3 && bytes != 0 && bytes % 1024 == 0) {
        bytes /= 1024;
        unit++;
    }
    if (unit < 0)
        snprintf(out, size, "%" PRIu64, bytes);
    else
        snprintf(out, size, "%" PRIu64 "%c", bytes, units[unit]);
}

/* Formats milliseconds in the largest exact unit: "7d", "30s", "250ms", "0". */
static void format_duration(uint64_t ms, char *out, size_t size)
{
    static const struct {
        const char *suffix;
        uint64_t scale;
    } units[] = {{"d", DAY}, {"h", HOUR}, {"m", MINUTE}, {"s", SECOND}};
    if (ms == 0) {
        snprintf(out, size, "0");
        return;
    }
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (ms % units[i].scale == 0) {
            snprintf(out, size, "%" PRIu64 "%s", ms / units[i].scale, units[i].suffix);
            return;
        }
    }
    snprintf(out, size, "%" PRIu64 "ms", ms);
}

/* The expected form of `spec`, for error messages: "a port number from 1 to 65535". */
static void expected_form(const struct option_spec *spec, char *out, size_t size)
{
    char lo[32], hi[32];
    switch (spec->kind) {
    case KIND_PATH:
        snprintf(out, size, "a path of 1 to %zu bytes", spec->size - 1);
        return;
    case KIND_HOST:
        snprintf(out, size, "a numeric IPv4 or IPv6 address like 127.0.0.1, 0.0.0.0 or ::");
        return;
    case KIND_UINT:
        snprintf(out, size, "a whole number from %" PRIu64 " to %" PRIu64, spec->min, spec->max);
        return;
    case KIND_SIZE:
        format_size(spec->min, lo, sizeof(lo));
        format_size(spec->max, hi, sizeof(hi));
        snprintf(out, size, "a size like 64K, 100M or 1G (binary units) from %s to %s", lo, hi);
        return;
    case KIND_DURATION:
        format_duration(spec->min, lo, sizeof(lo));
        format_duration(spec->max, hi, sizeof(hi));
        snprintf(out, size,
                 "a duration like 250ms, 30s, 10m, 2h or 7d (a bare number is ms) from %s to %s",
                 lo, hi);
        return;
    case KIND_BOOL:
        snprintf(out, size, "true or false");
        return;
    case KIND_DURABILITY:
        snprintf(out, size, "fsync or written");
        return;
    case KIND_LOG_LEVEL:
        snprintf(out, size, "error, warn, info or debug");
        return;
    }
    TURBINE_ASSERT(!"unknown option kind");
}

/* Parses `text` for `spec` and stores it into `config`. Returns 0 or -EINVAL (nothing stored). */
static int apply(struct turbine_broker_config *config, const struct option_spec *spec,
                 const char *text)
{
    char *field = (char *)config + spec->offset;
    uint64_t v;
    size_t bytes;
    const char *rest;
    int index;
    bool flag;
    unsigned char addr[16];
    switch (spec->kind) {
    case KIND_PATH:
    case KIND_HOST:
        if (text[0] == '\0' || strlen(text) >= spec->size)
            return -EINVAL;
        if (spec->kind == KIND_HOST && inet_pton(AF_INET, text, addr) != 1 &&
            inet_pton(AF_INET6, text, addr) != 1)
            return -EINVAL;
        memset(field, 0, spec->size); /* no stale bytes after the NUL: configs compare whole */
        memcpy(field, text, strlen(text) + 1);
        return 0;
    case KIND_UINT:
        TURBINE_ASSERT(spec->size == sizeof(uint32_t));
        if (parse_u64(text, &v, &rest) < 0 || *rest != '\0' || v < spec->min || v > spec->max)
            return -EINVAL;
        *(uint32_t *)(void *)field = (uint32_t)v;
        return 0;
    case KIND_SIZE:
        TURBINE_ASSERT(spec->size == sizeof(uint64_t));
        if (loom_parse_size(text, &bytes) < 0 || bytes < spec->min || bytes > spec->max)
            return -EINVAL;
        *(uint64_t *)(void *)field = bytes;
        return 0;
    case KIND_DURATION:
        TURBINE_ASSERT(spec->size == sizeof(int64_t));
        if (parse_duration_ms(text, &v) < 0 || v < spec->min || v > spec->max)
            return -EINVAL;
        *(int64_t *)(void *)field = (int64_t)v;
        return 0;
    case KIND_BOOL:
        if (parse_bool(text, &flag) < 0)
            return -EINVAL;
        *(bool *)(void *)field = flag;
        return 0;
    case KIND_DURABILITY: /* "none" is not a durability acks=all can mean */
        if (parse_name(text, durability_names, TURBINE_DURABLE_WRITTEN, 3, &index) < 0)
            return -EINVAL;
        *(enum turbine_durability *)(void *)field = (enum turbine_durability)index;
        return 0;
    case KIND_LOG_LEVEL:
        if (parse_name(text, log_level_names, 0, 4, &index) < 0)
            return -EINVAL;
        *(enum turbine_log_level *)(void *)field = (enum turbine_log_level)index;
        return 0;
    }
    TURBINE_ASSERT(!"unknown option kind");
    return -EINVAL;
}

/* The value of `spec` in `config` as text that apply() accepts. */
static void format_value(const struct turbine_broker_config *config, const struct option_spec *spec,
                         char *out, size_t size)
{
    const char *field = (const char *)config + spec->offset;
    switch (spec->kind) {
    case KIND_PATH:
    case KIND_HOST:
        snprintf(out, size, "%s", field);
        return;
    case KIND_UINT:
        snprintf(out, size, "%" PRIu32, *(const uint32_t *)(const void *)field);
        return;
    case KIND_SIZE:
        format_size(*(const uint64_t *)(const void *)field, out, size);
        return;
    case KIND_DURATION:
        format_duration((uint64_t) * (const int64_t *)(const void *)field, out, size);
        return;
    case KIND_BOOL:
        snprintf(out, size, "%s", *(const bool *)(const void *)field ? "true" : "false");
        return;
    case KIND_DURABILITY:
        snprintf(out, size, "%s",
                 turbine_durability_name(*(const enum turbine_durability *)(const void *)field));
        return;
    case KIND_LOG_LEVEL:
        snprintf(out, size, "%s",
                 turbine_log_level_name(*(const enum turbine_log_level *)(const void *)field));
        return;
    }
    TURBINE_ASSERT(!"unknown option kind");
}

static void set_error(char *error, size_t error_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_error(char *error, size_t error_size, const char *fmt, ...)
{
    if (error_size == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error, error_size, fmt, ap);
    va_end(ap);
}

/* ---- defaults, single options, validation --------------------------------------------------- */

void turbine_broker_config_init(struct turbine_broker_config *config)
{
    memset(config, 0, sizeof(*config));
    for (size_t i = 0; i < OPTION_COUNT; i++) {
        /* a default the parser rejects is a bug in the table */
        int rc = apply(config, &options[i], options[i].def);
        TURBINE_ASSERT(rc == 0);
    }
    TURBINE_ASSERT(config->port == TURBINE_BROKER_PORT);
    TURBINE_ASSERT(config->admin_port == TURBINE_BROKER_ADMIN_PORT);
}

int turbine_broker_config_set(struct turbine_broker_config *config, const char *key,
                              const char *value, const char *where, char *error, size_t error_size)
{
    TURBINE_ASSERT(key != NULL);
    TURBINE_ASSERT(value != NULL);
    const struct option_spec *spec = find_spec(key);
    if (spec == NULL) {
        char fixed[64];
        snprintf(fixed, sizeof(fixed), "%s", key);
        for (char *p = fixed; *p; p++)
            *p = *p == '-' ? '_' : *p;
        if (strcmp(fixed, key) != 0 && find_spec(fixed) != NULL)
            set_error(error, error_size, "%s: unknown key '%s' (did you mean %s?)", where, key,
                      fixed);
        else
            set_error(error, error_size, "%s: unknown key '%s' (see --help for the keys)", where,
                      key);
        return -EINVAL;
    }
    struct turbine_broker_config scratch = *config; /* stores nothing on failure */
    if (apply(&scratch, spec, value) < 0) {
        char form[160];
        expected_form(spec, form, sizeof(form));
        set_error(error, error_size, "%s: %s: expected %s, got '%s'", where, key, form, value);
        return -EINVAL;
    }
    memcpy((char *)config + spec->offset, (char *)&scratch + spec->offset, spec->size);
    return 0;
}

int turbine_broker_config_validate(const struct turbine_broker_config *config, char *error,
                                   size_t error_size)
{
    char a[32], b[32];
    if (config->connection_inflight_bytes < config->max_frame_bytes) {
        format_size(config->connection_inflight_bytes, a, sizeof(a));
        format_size(config->max_frame_bytes, b, sizeof(b));
        set_error(error, error_size,
                  "connection_inflight_bytes (%s) must be at least max_frame_bytes (%s): a "
                  "connection must be able to hold one whole frame",
                  a, b);
        return -EINVAL;
    }
    if (config->core_inflight_bytes < config->connection_inflight_bytes) {
        format_size(config->core_inflight_bytes, a, sizeof(a));
        format_size(config->connection_inflight_bytes, b, sizeof(b));
        set_error(error, error_size,
                  "core_inflight_bytes (%s) must be at least connection_inflight_bytes (%s)", a, b);
        return -EINVAL;
    }
    if (config->admin_port != 0 && config->admin_port == config->port) {
        set_error(error, error_size,
                  "admin_port (%" PRIu32 ") must differ from port (%" PRIu32
                  "); 0 turns the admin port off",
                  config->admin_port, config->port);
        return -EINVAL;
    }
    if (config->idle_timeout_ms != 0 && config->idle_timeout_ms < config->frame_deadline_ms) {
        format_duration((uint64_t)config->idle_timeout_ms, a, sizeof(a));
        format_duration((uint64_t)config->frame_deadline_ms, b, sizeof(b));
        set_error(error, error_size,
                  "idle_timeout_ms (%s) must be 0 or at least frame_deadline_ms (%s)", a, b);
        return -EINVAL;
    }
    return 0;
}

/* ---- the file ------------------------------------------------------------------------------- */

struct file_parse {
    struct turbine_broker_config *config;
    const char *file_name;
    char message[512]; /* the first error, without "file:line: " */
    bool seen[OPTION_COUNT];
    bool failed;
};

/* libinih calls this for each `key = value`; inih gives no line number (Debian builds it
 * without INI_HANDLER_LINENO), but returns the first failing line, which load() prefixes. */
static int file_handler(void *user, const char *section, const char *name, const char *value)
{
    struct file_parse *p = user;
    if (p->failed) /* inih keeps going after an error: report the first one only */
        return 0;
    p->failed = true;
    if (section[0] != '\0') {
        snprintf(p->message, sizeof(p->message),
                 "section [%s]: the broker's file has no sections, write key = value lines",
                 section);
        return 0;
    }
    const struct option_spec *spec = find_spec(name);
    if (spec != NULL && p->seen[spec - options]) {
        snprintf(p->message, sizeof(p->message), "%s: given twice", name);
        return 0;
    }
    char error[512];
    if (turbine_broker_config_set(p->config, name, value, "", error, sizeof(error)) < 0) {
        snprintf(p->message, sizeof(p->message), "%s", error + 2); /* drop the empty ": " */
        return 0;
    }
    p->seen[spec - options] = true;
    p->failed = false;
    return 1;
}

/* Refuses what inih would silently mangle: NUL bytes and lines longer than its buffer. */
static int check_lines(const char *text, size_t size, const char *file_name, char *error,
                       size_t error_size)
{
    size_t line = 1, line_start = 0;
    for (size_t i = 0; i <= size; i++) {
        if (i < size && text[i] == '\0') {
            set_error(error, error_size, "%s:%zu: NUL byte in the file (not a text file?)",
                      file_name, line);
            return -EINVAL;
        }
        if (i == size || text[i] == '\n') {
            if (i - line_start > TURBINE_CONFIG_LINE_MAX) {
                set_error(error, error_size, "%s:%zu: line longer than %d bytes", file_name, line,
                          TURBINE_CONFIG_LINE_MAX);
                return -EINVAL;
            }
            line++;
            line_start = i + 1;
        }
    }
    return 0;
}

int turbine_broker_config_parse_text(struct turbine_broker_config *config, const char *text,
                                     size_t size, const char *file_name, char *error,
                                     size_t error_size)
{
    TURBINE_ASSERT(config != NULL);
    TURBINE_ASSERT(text != NULL || size == 0);
    if (size > TURBINE_CONFIG_FILE_MAX) {
        set_error(error, error_size, "%s: larger than %d bytes", file_name,
                  TURBINE_CONFIG_FILE_MAX);
        return -EINVAL;
    }
    int rc = check_lines(text, size, file_name, error, error_size);
    if (rc < 0)
        return rc;
    char *copy = malloc(size + 1);
    if (copy == NULL) {
        set_error(error, error_size, "%s: out of memory", file_name);
        return -ENOMEM;
    }
    memcpy(copy, text, size);
    copy[size] = '\0';
    /* Debian's libinih takes these at run time; set them for every parse (start-up, one
     * thread): a line buffer as long as our limit, no multi-line values (an indented line is
     * a key of its own), no inline comments (a ';' may be part of a path). */
    ini_use_stack = false;
    ini_allow_realloc = true;
    ini_max_line = TURBINE_CONFIG_LINE_MAX + 3; /* '\r', '\n' and the NUL */
    ini_allow_multiline = false;
    ini_allow_inline_comments = false;
    ini_allow_no_value = false;
    ini_stop_on_first_error = true;
    struct file_parse p = {.config = config, .file_name = file_name};
    int line = ini_parse_string(copy, file_handler, &p);
    free(copy);
    if (line == -2) {
        set_error(error, error_size, "%s: out of memory", file_name);
        return -ENOMEM;
    }
    if (line != 0) {
        TURBINE_ASSERT(line > 0);
        if (p.failed)
            set_error(error, error_size, "%s:%d: %s", file_name, line, p.message);
        else
            set_error(error, error_size,
                      "%s:%d: expected 'key = value', a comment (# or ;) "
                      "or an empty line",
                      file_name, line);
        return -EINVAL;
    }
    TURBINE_ASSERT(!p.failed);
    return 0;
}

static int read_file(const char *path, char **out, size_t *size_out, char *error, size_t error_size)
{
    int fd = loom_openat(AT_FDCWD, path, O_RDONLY | O_CLOEXEC, 0, LOOM_NO_DEADLINE);
    if (fd < 0) {
        set_error(error, error_size, "%s: cannot open the config file: %s", path, strerror(-fd));
        return fd;
    }
    size_t cap = 4096, size = 0;
    char *buf = malloc(cap);
    int rc = buf ? 0 : -ENOMEM;
    while (rc == 0) {
        if (size == cap) {
            char *bigger = cap <= TURBINE_CONFIG_FILE_MAX ? realloc(buf, cap * 2) : NULL;
            if (bigger == NULL) {
                rc = cap > TURBINE_CONFIG_FILE_MAX ? -EFBIG : -ENOMEM;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
        ssize_t n = loom_read(fd, buf + size, cap - size, size, 0, LOOM_NO_DEADLINE);
        if (n <= 0) {
            rc = (int)n;
            break;
        }
        size += (size_t)n;
    }
    loom_close(fd);
    if (rc < 0) {
        free(buf);
        if (rc == -EFBIG)
            set_error(error, error_size, "%s: larger than %d bytes", path, TURBINE_CONFIG_FILE_MAX);
        else
            set_error(error, error_size, "%s: cannot read the config file: %s", path,
                      strerror(-rc));
        return rc;
    }
    *out = buf;
    *size_out = size;
    return 0;
}

/* ---- flags, --help, docs -------------------------------------------------------------------- */

/* loom calls this for each of our flags in command-line order: record, decide later. */
static int flag_parse(const char *value, void *ctx)
{
    struct turbine_broker_flag_ctx *c = ctx;
    TURBINE_ASSERT(value != NULL); /* every option takes an argument */
    if (c->index < 0)
        c->flags->config_file = value;
    else
        c->flags->values[c->index] = value; /* the last one given wins */
    return 0;
}

void turbine_broker_flags_init(struct turbine_broker_flags *flags)
{
    memset(flags, 0, sizeof(*flags));
    for (size_t i = 0; i < OPTION_COUNT; i++) {
        const struct option_spec *spec = &options[i];
        flag_name(spec->key, flags->names[i], sizeof(flags->names[i]));
        snprintf(flags->help[i], sizeof(flags->help[i]), "%s (default %s)", spec->help, spec->def);
        flags->ctx[i] = (struct turbine_broker_flag_ctx){.flags = flags, .index = (int)i};
        flags->options[i] = (struct loom_option){.name = flags->names[i],
                                                 .arg_name = spec->arg,
                                                 .help = flags->help[i],
                                                 .parse = flag_parse,
                                                 .ctx = &flags->ctx[i]};
    }
    flags->ctx[OPTION_COUNT] = (struct turbine_broker_flag_ctx){.flags = flags, .index = -1};
    flags->options[OPTION_COUNT] = (struct loom_option){
        .name = "config",
        .arg_name = "FILE",
        .help = "read options from FILE (key = value lines); flags override it",
        .parse = flag_parse,
        .ctx = &flags->ctx[OPTION_COUNT]};
    flags->option_count = OPTION_COUNT + 1;
}

int turbine_broker_config_load(struct turbine_broker_config *config,
                               const struct turbine_broker_flags *flags, char *error,
                               size_t error_size)
{
    turbine_broker_config_init(config);
    if (flags != NULL && flags->config_file != NULL) {
        char *text;
        size_t size;
        int rc = read_file(flags->config_file, &text, &size, error, error_size);
        if (rc < 0)
            return rc;
        rc = turbine_broker_config_parse_text(config, text, size, flags->config_file, error,
                                              error_size);
        free(text);
        if (rc < 0)
            return rc;
    }
    for (size_t i = 0; flags != NULL && i < OPTION_COUNT; i++) {
        if (flags->values[i] == NULL)
            continue;
        char where[48];
        snprintf(where, sizeof(where), "--%s", flags->names[i]);
        int rc = turbine_broker_config_set(config, options[i].key, flags->values[i], where, error,
                                           error_size);
        if (rc < 0)
            return rc;
    }
    return turbine_broker_config_validate(config, error, error_size);
}

void turbine_broker_config_write(const struct turbine_broker_config *config, FILE *out)
{
    for (size_t i = 0; i < OPTION_COUNT; i++) {
        char value[TURBINE_CONFIG_PATH_MAX];
        format_value(config, &options[i], value, sizeof(value));
        fprintf(out, "%s = %s\n", options[i].key, value);
    }
}

void turbine_broker_config_write_docs(FILE *out)
{
    fprintf(out, "| Key | Flag | Default | Meaning |\n");
    fprintf(out, "|-----|------|---------|---------|\n");
    for (size_t i = 0; i < OPTION_COUNT; i++) {
        char flag[48], form[80] = "", lo[32], hi[32];
        flag_name(options[i].key, flag, sizeof(flag));
        if (options[i].kind == KIND_SIZE) {
            format_size(options[i].min, lo, sizeof(lo));
            format_size(options[i].max, hi, sizeof(hi));
        } else if (options[i].kind == KIND_DURATION) {
            format_duration(options[i].min, lo, sizeof(lo));
            format_duration(options[i].max, hi, sizeof(hi));
        } else {
            snprintf(lo, sizeof(lo), "%" PRIu64, options[i].min);
            snprintf(hi, sizeof(hi), "%" PRIu64, options[i].max);
        }
        if (options[i].min != options[i].max) /* a range applies */
            snprintf(form, sizeof(form), " (%s to %s)", lo, hi);
        fprintf(out, "| `%s` | `--%s ", options[i].key, flag);
        for (const char *a = options[i].arg; *a; a++) { /* a '|' would end the table cell */
            if (*a == '|')
                fputc('\\', out);
            fputc(*a, out);
        }
        fprintf(out, "` | `%s` | %s%s |\n", options[i].def, options[i].help, form);
    }
}
