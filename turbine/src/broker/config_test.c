/* SPDX-License-Identifier: MIT
 * config_test.c - the broker's configuration: embedded defaults, every value form and suffix,
 * every error path with its one-line message, the file (comments, sections, duplicates, NUL
 * bytes, long lines), flags over the file wherever they stand, cross-field rules, a write and
 * read round trip, docs/broker.md in step with the table, and the real command line through
 * loom_app_main() in a child process (--help, a bad flag = one line and exit 2).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <loom/loom.h>

#include "broker/config.h"
#include "harness.h"

static char root[256];
static char error[1024];

static void check_defaults(void)
{
    struct turbine_broker_config c;
    turbine_broker_config_init(&c);
    CHECK_STREQ(c.data_dir, "./data");
    CHECK_STREQ(c.listen_host, "127.0.0.1");
    CHECK_EQ(c.port, 9292);
    CHECK_EQ(c.admin_port, 9293);
    CHECK_EQ(c.max_frame_bytes, 100ull << 20);
    CHECK_GE(c.connection_inflight_bytes, c.max_frame_bytes);
    CHECK_GE(c.core_inflight_bytes, c.connection_inflight_bytes);
    CHECK_EQ(c.idle_timeout_ms, 10 * 60 * 1000);
    CHECK_EQ(c.frame_deadline_ms, 30 * 1000);
    CHECK_EQ(c.auto_create_topics, false);
    CHECK_EQ(c.default_partitions, 1);
    CHECK_EQ(c.retention_ms, 7ll * 24 * 3600 * 1000);
    CHECK_EQ(c.retention_bytes, 0);
    CHECK_EQ(c.durability, TURBINE_DURABLE_FSYNC);
    CHECK_EQ(c.segment_bytes, 1ull << 30);
    CHECK_EQ(c.cache_bytes, 64ull << 20);
    CHECK_EQ(c.log_level, TURBINE_LOG_INFO);
    CHECK_EQ(turbine_broker_config_validate(&c, error, sizeof(error)), 0);
}

static void set_ok(struct turbine_broker_config *c, const char *key, const char *value)
{
    error[0] = '\0';
    int rc = turbine_broker_config_set(c, key, value, "--x", error, sizeof(error));
    if (rc != 0)
        fprintf(stderr, "unexpected error: %s\n", error);
    CHECK_EQ(rc, 0);
}

/* A bad value: -EINVAL, *c unchanged, the message contains `expect`. */
static void set_bad(const char *key, const char *value, const char *expect)
{
    struct turbine_broker_config c, before;
    turbine_broker_config_init(&c);
    before = c;
    CHECK_EQ(turbine_broker_config_set(&c, key, value, "--where", error, sizeof(error)), -EINVAL);
    CHECK(memcmp(&c, &before, sizeof(c)) == 0);
    CHECK_CONTAINS(error, "--where: ");
    CHECK_CONTAINS(error, expect);
    CHECK(strchr(error, '\n') == NULL); /* one line */
}

static void check_values(void)
{
    struct turbine_broker_config c;
    turbine_broker_config_init(&c);
    /* sizes: binary suffixes, optional iB / B */
    const struct {
        const char *text;
        uint64_t bytes;
    } sizes[] = {{"65536", 65536},   {"64K", 64 << 10},     {"64k", 64 << 10},  {"64KiB", 64 << 10},
                 {"1M", 1 << 20},    {"100MiB", 100 << 20}, {"1G", 1ull << 30}, {"1GB", 1ull << 30},
                 {"1T", 1ull << 40}, {"2048KiB", 2 << 20}};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        set_ok(&c, "retention_bytes", sizes[i].text);
        CHECK_EQ(c.retention_bytes, sizes[i].bytes);
    }
    /* durations: ms, s, m, h, d; bare = ms */
    const struct {
        const char *text;
        int64_t ms;
    } durations[] = {
        {"0", 0},        {"1500", 1500},  {"250ms", 250},    {"30s", 30000},
        {"10m", 600000}, {"2h", 7200000}, {"7d", 604800000}, {"36500d", 36500ll * 86400000}};
    for (size_t i = 0; i < sizeof(durations) / sizeof(durations[0]); i++) {
        set_ok(&c, "retention_ms", durations[i].text);
        CHECK_EQ(c.retention_ms, durations[i].ms);
    }
    set_ok(&c, "auto_create_topics", "true");
    CHECK_EQ(c.auto_create_topics, true);
    set_ok(&c, "auto_create_topics", "OFF");
    CHECK_EQ(c.auto_create_topics, false);
    set_ok(&c, "auto_create_topics", "yes");
    CHECK_EQ(c.auto_create_topics, true);
    set_ok(&c, "durability", "written");
    CHECK_EQ(c.durability, TURBINE_DURABLE_WRITTEN);
    set_ok(&c, "log_level", "debug");
    CHECK_EQ(c.log_level, TURBINE_LOG_DEBUG);
    set_ok(&c, "listen_host", "::");
    CHECK_STREQ(c.listen_host, "::");
    set_ok(&c, "listen_host", "0.0.0.0");
    set_ok(&c, "port", "65535");
    CHECK_EQ(c.port, 65535);
    set_ok(&c, "admin_port", "0");
    CHECK_EQ(c.admin_port, 0);
    set_ok(&c, "data_dir", "/var/lib/turbine data;x");
    CHECK_STREQ(c.data_dir, "/var/lib/turbine data;x");
    set_ok(&c, "default_partitions", "4096");
    CHECK_EQ(c.default_partitions, 4096);
}

static void check_bad_values(void)
{
    const char *port = "port: expected a whole number from 1 to 65535, got ";
    set_bad("port", "0", port);
    set_bad("port", "65536", port);
    set_bad("port", "-1", port);
    set_bad("port", "", port);
    set_bad("port", "80x", port);
    set_bad("port", " 80", port);
    set_bad("port", "99999999999999999999999", port);
    set_bad("admin_port", "70000", "admin_port: expected a whole number from 0 to 65535");
    set_bad("default_partitions", "0", "from 1 to 4096, got '0'");
    set_bad("default_partitions", "4097", "from 1 to 4096");
    const char *size = "max_frame_bytes: expected a size like 64K, 100M or 1G (binary units) "
                       "from 1K to 1G, got ";
    set_bad("max_frame_bytes", "2G", size);
    set_bad("max_frame_bytes", "512", size);
    set_bad("max_frame_bytes", "10X", size);
    set_bad("max_frame_bytes", "10 M", size);
    set_bad("max_frame_bytes", "-1M", size);
    set_bad("max_frame_bytes", "M", size);
    set_bad("max_frame_bytes", "99999999999T", size);
    set_bad("segment_bytes", "512K", "from 1M to 1T, got '512K'");
    const char *dur = "frame_deadline_ms: expected a duration like 250ms, 30s, 10m, 2h or 7d (a "
                      "bare number is ms) from 100ms to 1h, got ";
    set_bad("frame_deadline_ms", "50ms", dur);
    set_bad("frame_deadline_ms", "2h", dur);
    set_bad("frame_deadline_ms", "10sec", dur);
    set_bad("frame_deadline_ms", "1.5s", dur);
    set_bad("frame_deadline_ms", "s", dur);
    set_bad("retention_ms", "999999999999999999d", "retention_ms: expected a duration");
    set_bad("auto_create_topics", "maybe",
            "auto_create_topics: expected true or false, got "
            "'maybe'");
    set_bad("durability", "none", "durability: expected fsync or written, got 'none'");
    set_bad("durability", "FSYNC", "expected fsync or written");
    set_bad("log_level", "trace", "log_level: expected error, warn, info or debug");
    set_bad("listen_host", "localhost", "listen_host: expected a numeric IPv4 or IPv6 address");
    set_bad("listen_host", "1.2.3.256", "expected a numeric IPv4");
    set_bad("data_dir", "", "data_dir: expected a path of 1 to 4095 bytes, got ''");
    static char long_path[5000];
    memset(long_path, 'a', sizeof(long_path) - 1);
    set_bad("data_dir", long_path, "expected a path of 1 to 4095 bytes");
    /* unknown keys */
    set_bad("no_such_key", "1", "--where: unknown key 'no_such_key' (see --help for the keys)");
    set_bad("max-frame-bytes", "1M",
            "unknown key 'max-frame-bytes' (did you mean max_frame_bytes?)");
}

static void check_validate(void)
{
    struct turbine_broker_config c;
    turbine_broker_config_init(&c);
    c.max_frame_bytes = 200 << 20;
    CHECK_EQ(turbine_broker_config_validate(&c, error, sizeof(error)), -EINVAL);
    CHECK_CONTAINS(error, "connection_inflight_bytes (128M) must be at least max_frame_bytes "
                          "(200M)");
    turbine_broker_config_init(&c);
    c.core_inflight_bytes = 64 << 20;
    CHECK_EQ(turbine_broker_config_validate(&c, error, sizeof(error)), -EINVAL);
    CHECK_CONTAINS(error, "core_inflight_bytes (64M) must be at least connection_inflight_bytes");
    turbine_broker_config_init(&c);
    c.admin_port = c.port;
    CHECK_EQ(turbine_broker_config_validate(&c, error, sizeof(error)), -EINVAL);
    CHECK_CONTAINS(error, "admin_port (9292) must differ from port (9292)");
    c.admin_port = 0;
    CHECK_EQ(turbine_broker_config_validate(&c, error, sizeof(error)), 0);
    c.idle_timeout_ms = 1000;
    CHECK_EQ(turbine_broker_config_validate(&c, error, sizeof(error)), -EINVAL);
    CHECK_CONTAINS(error, "idle_timeout_ms (1s) must be 0 or at least frame_deadline_ms (30s)");
    c.idle_timeout_ms = 0;
    CHECK_EQ(turbine_broker_config_validate(&c, error, sizeof(error)), 0);
}

static int parse(struct turbine_broker_config *c, const char *text)
{
    turbine_broker_config_init(c);
    error[0] = '\0';
    return turbine_broker_config_parse_text(c, text, strlen(text), "b.conf", error, sizeof(error));
}

static void parse_bad(const char *text, const char *expect)
{
    struct turbine_broker_config c;
    CHECK_EQ(parse(&c, text), -EINVAL);
    CHECK_CONTAINS(error, expect);
    CHECK(strchr(error, '\n') == NULL);
}

static void check_file(void)
{
    struct turbine_broker_config c;
    const char *good = "# a comment\n"
                       "; another\n"
                       "\n"
                       "data_dir = /srv/turbine\n"
                       "   port=7000   \r\n"
                       "max_frame_bytes = 1M\n"
                       "connection_inflight_bytes = 2M\n"
                       "auto_create_topics = true\n"
                       "retention_ms = 3d";
    CHECK_EQ(parse(&c, good), 0);
    CHECK_STREQ(c.data_dir, "/srv/turbine");
    CHECK_EQ(c.port, 7000);
    CHECK_EQ(c.max_frame_bytes, 1 << 20);
    CHECK_EQ(c.connection_inflight_bytes, 2 << 20);
    CHECK_EQ(c.auto_create_topics, true);
    CHECK_EQ(c.retention_ms, 3ll * 86400000);
    CHECK_EQ(c.admin_port, 9293); /* untouched keys keep their defaults */
    CHECK_EQ(parse(&c, ""), 0);
    CHECK_EQ(parse(&c, "\n\n# only comments\n"), 0);

    parse_bad("port = 1\nport = 2\n", "b.conf:2: port: given twice");
    parse_bad("port = 1\nbogus = 2\n", "b.conf:2: unknown key 'bogus' (see --help for the keys)");
    parse_bad("\n\nport = 123456\n", "b.conf:3: port: expected a whole number from 1 to 65535, "
                                     "got '123456'");
    parse_bad("port = 1\njust words\n", "b.conf:2: expected 'key = value', a comment (# or ;) "
                                        "or an empty line");
    parse_bad("[broker]\nport = 1\n", "b.conf:2: section [broker]: the broker's file has no "
                                      "sections");
    parse_bad("port = 9292 # inline\n", "b.conf:1: port: expected a whole number");
    parse_bad("max-frame-bytes = 1M\n", "b.conf:1: unknown key 'max-frame-bytes' (did you mean "
                                        "max_frame_bytes?)");
    parse_bad("durability = none\n", "b.conf:1: durability: expected fsync or written");
    /* an error after good lines reports the first bad line only */
    parse_bad("port = 1\nport = x\nbogus = 1\n", "b.conf:2: port:");
    /* what inih would mangle: a NUL byte, a line past its buffer */
    char with_nul[] = "port = 1\nadmin_port = 2\0\n";
    CHECK_EQ(turbine_broker_config_parse_text(&c, with_nul, sizeof(with_nul) - 1, "b.conf", error,
                                              sizeof(error)),
             -EINVAL);
    CHECK_CONTAINS(error, "b.conf:2: NUL byte");
    static char long_line[8000];
    snprintf(long_line, sizeof(long_line), "port = 1\ndata_dir = ");
    memset(long_line + strlen(long_line), 'd', 5000);
    parse_bad(long_line, "b.conf:2: line longer than 4096 bytes");
    CHECK_EQ(turbine_broker_config_parse_text(&c, long_line, TURBINE_CONFIG_FILE_MAX + 1, "b.conf",
                                              error, sizeof(error)),
             -EINVAL);
    CHECK_CONTAINS(error, "b.conf: larger than");
    /* a long line inside the limit is read whole (inih's default buffer is 200 bytes) */
    static char path_line[5000];
    int n = snprintf(path_line, sizeof(path_line), "data_dir = /");
    memset(path_line + n, 'p', 3000);
    CHECK_EQ(parse(&c, path_line), 0);
    CHECK_EQ(strlen(c.data_dir), 3001);
}

/* Writing a config and reading it back gives the same config, for defaults and for others. */
static void check_round_trip(void)
{
    struct turbine_broker_config a, b;
    turbine_broker_config_init(&a);
    for (int round = 0; round < 2; round++) {
        char *text = NULL;
        size_t size = 0;
        FILE *out = open_memstream(&text, &size);
        CHECK(out != NULL);
        turbine_broker_config_write(&a, out);
        CHECK_EQ(fclose(out), 0);
        turbine_broker_config_init(&b);
        CHECK_EQ(turbine_broker_config_parse_text(&b, text, size, "w", error, sizeof(error)), 0);
        CHECK(memcmp(&a, &b, sizeof(a)) == 0);
        CHECK_CONTAINS(text, "max_frame_bytes = 100M\n");
        free(text);
        set_ok(&a, "data_dir", "/x");
        set_ok(&a, "retention_ms", "1500");
        set_ok(&a, "retention_bytes", "4097");
        set_ok(&a, "durability", "written");
        set_ok(&a, "log_level", "warn");
        set_ok(&a, "auto_create_topics", "on");
        set_ok(&a, "listen_host", "::1");
    }
}

/* docs/broker.md carries the table exactly as the code generates it. */
static void check_docs(void)
{
    char *table = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&table, &size);
    CHECK(out != NULL);
    turbine_broker_config_write_docs(out);
    CHECK_EQ(fclose(out), 0);
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/../../../docs/broker.md", test_self_dir());
    FILE *doc = fopen(path, "r");
    if (doc == NULL)
        doc = fopen("docs/broker.md", "r");
    CHECK(doc != NULL);
    static char text[1 << 16];
    size_t n = fread(text, 1, sizeof(text) - 1, doc);
    text[n] = '\0';
    fclose(doc);
    if (strstr(text, table) == NULL)
        fprintf(stderr, "docs/broker.md lacks the generated option table; it should hold:\n%s",
                table);
    CHECK(strstr(text, table) != NULL);
    free(table);
}

/* ---- flags and the file through loom ------------------------------------------------------ */

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    CHECK_EQ(fputs(text, f) >= 0, 1);
    CHECK_EQ(fclose(f), 0);
}

/* Calls the option callbacks the way loom_app_main() does for "--NAME VALUE". */
static void give_flag(struct turbine_broker_flags *f, const char *name, const char *value)
{
    for (size_t i = 0; i < f->option_count; i++) {
        if (strcmp(f->options[i].name, name) == 0) {
            CHECK_EQ(f->options[i].parse(value, f->options[i].ctx), 0);
            return;
        }
    }
    CHECK(!"no such flag");
}

static int load_main(void *arg)
{
    (void)arg;
    struct turbine_broker_flags f;
    struct turbine_broker_config c;
    turbine_broker_flags_init(&f);
    CHECK_EQ(f.option_count, TURBINE_BROKER_OPTIONS + 1);
    CHECK_STREQ(f.options[0].name, "data-dir");
    CHECK_STREQ(f.options[0].arg_name, "PATH");
    CHECK_CONTAINS(f.options[0].help, "(default ./data)");
    CHECK_STREQ(f.options[f.option_count - 1].name, "config");
    /* no flags: the defaults */
    CHECK_EQ(turbine_broker_config_load(&c, &f, error, sizeof(error)), 0);
    CHECK_EQ(c.port, 9292);
    CHECK_EQ(turbine_broker_config_load(&c, NULL, error, sizeof(error)), 0);

    char file[300];
    snprintf(file, sizeof(file), "%s/broker.conf", root);
    write_file(file, "port = 7000\nadmin_port = 7001\ndata_dir = /from/file\n");
    /* a flag before --config still wins over the file */
    give_flag(&f, "port", "8000");
    give_flag(&f, "config", file);
    give_flag(&f, "log-level", "warn");
    give_flag(&f, "log-level", "debug"); /* the last one given wins */
    CHECK_EQ(turbine_broker_config_load(&c, &f, error, sizeof(error)), 0);
    CHECK_EQ(c.port, 8000);
    CHECK_EQ(c.admin_port, 7001);
    CHECK_STREQ(c.data_dir, "/from/file");
    CHECK_EQ(c.log_level, TURBINE_LOG_DEBUG);

    /* a bad flag names the flag */
    give_flag(&f, "max-frame-bytes", "lots");
    CHECK_EQ(turbine_broker_config_load(&c, &f, error, sizeof(error)), -EINVAL);
    CHECK_CONTAINS(error, "--max-frame-bytes: max_frame_bytes: expected a size like");
    CHECK_CONTAINS(error, "got 'lots'");
    /* cross-field rules see the merged result */
    give_flag(&f, "max-frame-bytes", "1G");
    CHECK_EQ(turbine_broker_config_load(&c, &f, error, sizeof(error)), -EINVAL);
    CHECK_CONTAINS(error, "connection_inflight_bytes (128M) must be at least max_frame_bytes (1G)");
    give_flag(&f, "connection-inflight-bytes", "1G");
    give_flag(&f, "core-inflight-bytes", "2G");
    CHECK_EQ(turbine_broker_config_load(&c, &f, error, sizeof(error)), 0);
    /* a bad file names file:line */
    write_file(file, "port = 7000\n\nretention_ms = forever\n");
    CHECK_EQ(turbine_broker_config_load(&c, &f, error, sizeof(error)), -EINVAL);
    CHECK_CONTAINS(error, "/broker.conf:3: retention_ms: expected a duration");
    /* a missing file */
    char missing[300];
    snprintf(missing, sizeof(missing), "%s/nope.conf", root);
    give_flag(&f, "config", missing);
    CHECK_EQ(turbine_broker_config_load(&c, &f, error, sizeof(error)), -ENOENT);
    CHECK_CONTAINS(error, "nope.conf: cannot open the config file: No such file or directory");
    /* a large file (read in several pieces) */
    static char big[200000];
    size_t len = 0;
    for (int i = 0; len + 64 < sizeof(big); i++)
        len += (size_t)snprintf(big + len, sizeof(big) - len, "# comment line %d\n", i);
    snprintf(big + len, sizeof(big) - len, "port = 7777\n");
    write_file(file, big);
    give_flag(&f, "config", file);
    for (size_t i = 0; i < TURBINE_BROKER_OPTIONS; i++) /* forget --port */
        if (strcmp(f.names[i], "port") == 0)
            f.values[i] = NULL;
    CHECK_EQ(turbine_broker_config_load(&c, &f, error, sizeof(error)), 0);
    CHECK_EQ(c.port, 7777);
    return 0;
}

/* ---- the real command line, in a child process ---------------------------------------------- */

static struct turbine_broker_flags child_flags;

static int child_main(void *arg)
{
    (void)arg;
    struct turbine_broker_config c;
    char message[1024];
    if (turbine_broker_config_load(&c, &child_flags, message, sizeof(message)) < 0) {
        fprintf(stderr, "config_test: %s\n", message);
        return 2;
    }
    turbine_broker_config_write(&c, stdout);
    return 0;
}

static int run_child(int argc, char **argv)
{
    turbine_broker_flags_init(&child_flags);
    struct loom_app app = {.name = "config_test",
                           .summary = "the broker's options (a test)",
                           .options = child_flags.options,
                           .option_count = child_flags.option_count,
                           .main = child_main};
    return loom_app_main(&app, argc, argv);
}

static int spawn(const char *const *args, char *out, size_t size)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    CHECK_GT(n, 0);
    self[n] = '\0';
    char *argv[32] = {self, "child"};
    int argc = 2;
    for (; args[argc - 2]; argc++)
        argv[argc] = (char *)args[argc - 2];
    argv[argc] = NULL;
    int status = test_spawn(argv, NULL, out, size, 20000);
    CHECK(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void check_command_line(void)
{
    static char out[65536];
    CHECK_EQ(spawn((const char *[]){"--help", NULL}, out, sizeof(out)), 0);
    CHECK_CONTAINS(out, "--data-dir PATH");
    CHECK_CONTAINS(out, "(default ./data)");
    CHECK_CONTAINS(out, "--max-frame-bytes SIZE");
    CHECK_CONTAINS(out, "--config FILE");
    CHECK_CONTAINS(out, "--smp N"); /* loom's own, in the same help */
    CHECK_EQ(spawn((const char *[]){"--smp", "1", "--poll-us", "0", "--port", "99999", NULL}, out,
                   sizeof(out)),
             2);
    CHECK_STREQ(out, "config_test: --port: port: expected a whole number from 1 to 65535, got "
                     "'99999'\n");
    CHECK_EQ(spawn((const char *[]){"--smp", "1", "--poll-us", "0", "--data-dir", "/d",
                                    "--retention-ms", "2h", NULL},
                   out, sizeof(out)),
             0);
    CHECK_CONTAINS(out, "data_dir = /d\n");
    CHECK_CONTAINS(out, "retention_ms = 2h\n");
    CHECK_EQ(spawn((const char *[]){"--no-such-flag", "1", NULL}, out, sizeof(out)), 2);
    CHECK_CONTAINS(out, "unknown option '--no-such-flag'");
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "child") == 0)
        return run_child(argc - 1, argv + 1);
    alarm(120);
    check_defaults();
    check_values();
    check_bad_values();
    check_validate();
    check_file();
    check_round_trip();
    check_docs();
    check_command_line();
    const char *base = getenv("TMPDIR");
    snprintf(root, sizeof(root), "%s/turbine_config_test.XXXXXX", base && *base ? base : "/tmp");
    CHECK(mkdtemp(root) != NULL);
    int rc = test_run(1, load_main, NULL);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", root);
    CHECK_EQ(rc, 0);
    return 0;
}
