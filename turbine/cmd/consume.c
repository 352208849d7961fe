/* SPDX-License-Identifier: MIT
 * consume.c - `turbine consume TOPIC`: reads partitions from a start position and prints each
 * record as its value, key<TAB>value or a JSON object. Without --follow it stops at the end
 * offsets (high watermarks) seen at start; with --group it starts from the group's committed
 * offsets and commits what it has printed (after the output is flushed: at least once).
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "turbine_assert.h"

#define POLL_MAX        256
#define POLL_TIMEOUT_MS 500

enum { OPT_FROM = 2000, OPT_PARTITION, OPT_GROUP, OPT_FOLLOW, OPT_COUNT, OPT_FORMAT };
enum format { FORMAT_VALUE, FORMAT_KV, FORMAT_JSON };
enum from { FROM_EARLIEST, FROM_LATEST, FROM_OFFSET, FROM_TIME };

struct consume_args {
    const char *topic;
    enum from from;
    int64_t from_value; /* the offset or the timestamp (ms) */
    int32_t partition;  /* -1: all */
    const char *group;
    bool follow;
    int64_t count; /* -1: no limit */
    enum format format;
};

/* Per partition of the topic. */
struct part {
    bool assigned;
    int64_t end;       /* high watermark at start: stop there unless --follow */
    int64_t committed; /* next offset committed for the group */
    int64_t printed;   /* next offset after the last record printed, -1 if none */
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: turbine consume TOPIC [options]\n"
            "\n"
            "Prints the records of TOPIC on stdout. Without --follow it exits at the end of the\n"
            "partitions as they were when it started (or after --count records).\n"
            "\n"
            "options:\n"
            "  -f, --from POSITION        earliest (default), latest, an OFFSET, or @TIMESTAMP\n"
            "                             (ms since the epoch: the first record at or after it)\n"
            "  -p, --partition N          read partition N only (default: every partition)\n"
            "  -g, --group GROUP          resume from GROUP's committed offsets (--from applies\n"
            "                             to partitions with none) and commit as records print\n"
            "  -F, --follow               keep waiting for new records (long poll) until\n"
            "                             interrupted (SIGINT/SIGTERM: commit, exit 0)\n"
            "  -c, --count N              exit after N records\n"
            "  -o, --format FORMAT        value (default): the value and a newline;\n"
            "                             kv: key, a tab, the value, a newline;\n"
            "                             json: one object a line with topic, partition, offset,\n"
            "                             timestamp, key, value and headers ([{\"key\":..,\n"
            "                             \"value\":..}]); null key/value as null, bytes that are\n"
            "                             not UTF-8 as U+FFFD\n"
            "      --broker HOST:PORT     the broker (env TURBINE_BROKER, default %s)\n"
            "  -v, --verbose              a summary on stderr\n"
            "  -h, --help                 this help\n"
            "\n"
            "exit status: 0 ok, 1 runtime error (broker unreachable, unknown topic, ...),\n"
            "2 usage\n",
            TURBINE_BROKER_DEFAULT);
}

static int parse_from(struct turbine_cli *cli, struct consume_args *a, const char *text)
{
    if (strcmp(text, "earliest") == 0 || strcmp(text, "beginning") == 0)
        a->from = FROM_EARLIEST;
    else if (strcmp(text, "latest") == 0 || strcmp(text, "end") == 0)
        a->from = FROM_LATEST;
    else if (text[0] == '@' && turbine__cli_parse_i64(text + 1, 0, INT64_MAX, &a->from_value))
        a->from = FROM_TIME;
    else if (turbine__cli_parse_i64(text, 0, INT64_MAX, &a->from_value))
        a->from = FROM_OFFSET;
    else
        return turbine__cli_usage_error(
            cli, "bad --from '%s' (earliest, latest, OFFSET or @TIMESTAMP_MS)", text);
    return TURBINE_EXIT_OK;
}

static int parse_option(struct turbine_cli *cli, int c, void *arg)
{
    struct consume_args *a = arg;
    int64_t v;
    switch (c) {
    case 'f':
        return parse_from(cli, a, optarg);
    case 'p':
        if (!turbine__cli_parse_i64(optarg, 0, INT32_MAX, &v))
            return turbine__cli_usage_error(cli, "bad --partition '%s'", optarg);
        a->partition = (int32_t)v;
        return TURBINE_EXIT_OK;
    case 'g':
        if (optarg[0] == '\0')
            return turbine__cli_usage_error(cli, "empty --group");
        a->group = optarg;
        return TURBINE_EXIT_OK;
    case 'F':
        a->follow = true;
        return TURBINE_EXIT_OK;
    case 'c':
        if (!turbine__cli_parse_i64(optarg, 1, INT64_MAX, &a->count))
            return turbine__cli_usage_error(cli, "bad --count '%s'", optarg);
        return TURBINE_EXIT_OK;
    case 'o':
        if (strcmp(optarg, "value") == 0)
            a->format = FORMAT_VALUE;
        else if (strcmp(optarg, "kv") == 0)
            a->format = FORMAT_KV;
        else if (strcmp(optarg, "json") == 0)
            a->format = FORMAT_JSON;
        else
            return turbine__cli_usage_error(cli, "bad --format '%s' (value, kv or json)", optarg);
        return TURBINE_EXIT_OK;
    default:
        return turbine__cli_usage_error(cli, "unknown option");
    }
}

static int parse(struct turbine_cli *cli, struct consume_args *a, int argc, char **argv)
{
    static const struct option options[] = {
        {"from", required_argument, NULL, 'f'},
        {"partition", required_argument, NULL, 'p'},
        {"group", required_argument, NULL, 'g'},
        {"follow", no_argument, NULL, 'F'},
        {"count", required_argument, NULL, 'c'},
        {"format", required_argument, NULL, 'o'},
        TURBINE_CLI_COMMON_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    int rc = turbine__cli_options(cli, argc, argv, TURBINE_CLI_COMMON_SHORT "f:p:g:Fc:o:", options,
                                  parse_option, a);
    if (rc != TURBINE_EXIT_OK)
        return rc;
    if (cli->help)
        return TURBINE_EXIT_OK;
    return turbine__cli_topic_arg(cli, argc, argv, &a->topic);
}

/* ---- output ----------------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s[0..n) (n >= 1, s[0] >= 0x80), or 0. */
static size_t utf8_sequence(const uint8_t *s, size_t n)
{
    uint8_t c = s[0];
    size_t len;
    uint8_t lo = 0x80, hi = 0xbf; /* bounds of the second byte */
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        lo = c == 0xe0 ? 0xa0 : 0x80;
        hi = c == 0xed ? 0x9f : 0xbf;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        lo = c == 0xf0 ? 0x90 : 0x80;
        hi = c == 0xf4 ? 0x8f : 0xbf;
    } else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return len;
}

/* A JSON string of the bytes, or null for a null field. */
static void json_string(FILE *out, const uint8_t *s, int32_t size)
{
    if (s == NULL || size < 0) {
        fputs("null", out);
        return;
    }
    putc('"', out);
    for (size_t i = 0, n = (size_t)size; i < n; i++) {
        uint8_t c = s[i];
        if (c == '"' || c == '\\') {
            putc('\\', out);
            putc(c, out);
        } else if (c == '\n') {
            fputs("\\n", out);
        } else if (c == '\r') {
            fputs("\\r", out);
        } else if (c == '\t') {
            fputs("\\t", out);
        } else if (c < 0x20 || c == 0x7f) {
            fprintf(out, "\\u%04x", c);
        } else if (c < 0x80) {
            putc(c, out);
        } else {
            size_t len = utf8_sequence(s + i, n - i);
            if (len == 0) {
                fputs("\\ufffd", out);
                continue;
            }
            fwrite(s + i, 1, len, out);
            i += len - 1;
        }
    }
    putc('"', out);
}

static void print_json(FILE *out, const struct turbine_message *m)
{
    fputs("{\"topic\":", out);
    json_string(out, (const uint8_t *)m->topic, (int32_t)strlen(m->topic));
    fprintf(out, ",\"partition\":%" PRId32 ",\"offset\":%" PRId64 ",\"timestamp\":%" PRId64,
            m->partition, m->offset, m->timestamp);
    fputs(",\"key\":", out);
    json_string(out, m->key, m->key_size);
    fputs(",\"value\":", out);
    json_string(out, m->value, m->value_size);
    fputs(",\"headers\":[", out);
    struct turbine_header_iter it;
    turbine_message_headers(m, &it);
    struct turbine_header h;
    for (int i = 0; turbine_header_iter_next(&it, &h); i++) {
        fputs(i > 0 ? ",{\"key\":" : "{\"key\":", out);
        json_string(out, h.key, h.key_size);
        fputs(",\"value\":", out);
        json_string(out, h.value, h.value_size);
        putc('}', out);
    }
    fputs("]}\n", out);
}

static void print_message(enum format format, const struct turbine_message *m)
{
    if (format == FORMAT_JSON) {
        print_json(stdout, m);
        return;
    }
    if (format == FORMAT_KV) {
        if (m->key_size > 0)
            fwrite(m->key, 1, (size_t)m->key_size, stdout);
        putchar('\t');
    }
    if (m->value_size > 0)
        fwrite(m->value, 1, (size_t)m->value_size, stdout);
    putchar('\n');
}

/* ---- consuming -------------------------------------------------------------------------- */

struct session {
    struct turbine_cli *cli;
    const struct consume_args *a;
    struct turbine_consumer *consumer;
    struct part *parts;
    int32_t partitions;
    int32_t assigned; /* partitions still assigned */
    int64_t printed;  /* records printed */
};

/* Where partition `p` starts: the group's committed offset, else --from. */
static int64_t start_position(struct session *s, int32_t p)
{
    const struct consume_args *a = s->a;
    if (a->group != NULL) {
        int64_t committed = turbine_consumer_committed(s->consumer, a->topic, p);
        if (committed < 0 && committed != -1)
            return committed;
        s->parts[p].committed = committed;
        if (committed >= 0)
            return turbine_consumer_assign(s->consumer, a->topic, p, committed);
    }
    switch (a->from) {
    case FROM_EARLIEST:
        return turbine_consumer_assign(s->consumer, a->topic, p, TURBINE_OFFSET_EARLIEST);
    case FROM_LATEST:
        return turbine_consumer_assign(s->consumer, a->topic, p, TURBINE_OFFSET_LATEST);
    case FROM_OFFSET:
        return turbine_consumer_assign(s->consumer, a->topic, p, a->from_value);
    default: {
        TURBINE_ASSERT(a->from == FROM_TIME);
        int64_t rc = turbine_consumer_assign(s->consumer, a->topic, p, TURBINE_OFFSET_EARLIEST);
        if (rc < 0)
            return rc;
        return turbine_consumer_seek_time(s->consumer, a->topic, p, a->from_value);
    }
    }
}

/* Unassigns partition p; true if it was assigned. */
static void finish_partition(struct session *s, int32_t p)
{
    if (!s->parts[p].assigned)
        return;
    s->parts[p].assigned = false;
    s->assigned--;
    turbine_consumer_unassign(s->consumer, s->a->topic, p);
}

/* Reads the end offsets and assigns the partitions. Returns TURBINE_EXIT_OK or an error. */
static int setup(struct session *s, struct turbine_client *client)
{
    const struct consume_args *a = s->a;
    struct turbine_topic_description *d;
    int rc = turbine_admin_describe_topic(client, a->topic, &d);
    if (rc < 0)
        return turbine__cli_error(s->cli, "topic '%s': %s", a->topic, turbine_client_strerror(rc));
    s->partitions = (int32_t)d->partition_count;
    if (a->partition >= s->partitions) {
        free(d);
        return turbine__cli_error(s->cli,
                                  "topic '%s' has %" PRId32 " partitions: no partition %" PRId32,
                                  a->topic, s->partitions, a->partition);
    }
    s->parts = calloc((size_t)s->partitions, sizeof(*s->parts));
    TURBINE_ASSERT(s->parts != NULL);
    for (uint32_t i = 0; i < d->partition_count; i++) {
        int32_t p = d->partitions[i].partition;
        TURBINE_ASSERT(p >= 0 && p < s->partitions);
        s->parts[p].end = d->partitions[i].high_watermark;
    }
    free(d);
    for (int32_t p = 0; p < s->partitions; p++) {
        s->parts[p].printed = -1;
        s->parts[p].committed = -1;
        if (a->partition >= 0 && p != a->partition)
            continue;
        int64_t pos = start_position(s, p);
        if (pos < 0)
            return turbine__cli_error(s->cli, "partition %" PRId32 ": %s", p,
                                      turbine_client_strerror((int)pos));
        s->parts[p].assigned = true;
        s->assigned++;
        if (s->cli->verbose > 0)
            fprintf(stderr, "%s: partition %" PRId32 " from offset %" PRId64 " (end %" PRId64 ")\n",
                    s->cli->name, p, pos, s->parts[p].end);
        if (!a->follow && pos >= s->parts[p].end)
            finish_partition(s, p);
    }
    return TURBINE_EXIT_OK;
}

/* Flushes stdout, then commits what was printed. */
static int commit(struct session *s)
{
    if (fflush(stdout) != 0)
        return turbine__cli_error(s->cli, "cannot write the output: %s", strerror(errno));
    if (s->a->group == NULL)
        return TURBINE_EXIT_OK;
    for (int32_t p = 0; p < s->partitions; p++) {
        struct part *part = &s->parts[p];
        if (part->printed < 0 || part->printed == part->committed)
            continue;
        int rc = turbine_consumer_commit_offset(s->consumer, s->a->topic, p, part->printed, NULL);
        if (rc < 0)
            return turbine__cli_error(s->cli, "commit of partition %" PRId32 ": %s", p,
                                      turbine_client_strerror(rc));
        part->committed = part->printed;
    }
    return TURBINE_EXIT_OK;
}

static bool count_reached(const struct session *s)
{
    return s->a->count >= 0 && s->printed >= s->a->count;
}

/* Prints the polled messages that are in range; finishes partitions that reached their end. */
static void handle(struct session *s, const struct turbine_message *m, int n)
{
    for (int i = 0; i < n && !count_reached(s); i++) {
        struct part *part = &s->parts[m[i].partition];
        if (!part->assigned || (!s->a->follow && m[i].offset >= part->end))
            continue;
        print_message(s->a->format, &m[i]);
        part->printed = m[i].offset + 1;
        s->printed++;
    }
    if (s->a->follow)
        return;
    for (int32_t p = 0; p < s->partitions; p++) {
        if (!s->parts[p].assigned)
            continue;
        int64_t pos = turbine_consumer_position(s->consumer, s->a->topic, p);
        if (pos >= s->parts[p].end || s->parts[p].printed >= s->parts[p].end)
            finish_partition(s, p);
    }
}

static int consume_loop(struct session *s)
{
    static struct turbine_message messages[POLL_MAX];
    while (!stop_requested && s->assigned > 0 && !count_reached(s)) {
        int n = turbine_consumer_poll(s->consumer, messages, POLL_MAX, POLL_TIMEOUT_MS);
        if (n < 0) {
            if (turbine_client_retriable(n))
                continue;
            return turbine__cli_error(s->cli, "poll: %s", turbine_client_strerror(n));
        }
        handle(s, messages, n);
        int rc = commit(s);
        if (rc != TURBINE_EXIT_OK)
            return rc;
    }
    return TURBINE_EXIT_OK;
}

static int run(struct turbine_cli *cli, const struct consume_args *a, struct turbine_client *client)
{
    struct turbine_consumer_config config;
    turbine_consumer_config_default(&config);
    config.group = a->group;
    config.reset = a->from == FROM_LATEST ? TURBINE_RESET_LATEST : TURBINE_RESET_EARLIEST;
    struct session s = {.cli = cli, .a = a};
    int rc = turbine_consumer_create(client, &config, &s.consumer);
    if (rc < 0)
        return turbine__cli_error(cli, "cannot create a consumer: %s", turbine_client_strerror(rc));
    rc = setup(&s, client);
    if (rc == TURBINE_EXIT_OK)
        rc = consume_loop(&s);
    if (rc == TURBINE_EXIT_OK)
        rc = commit(&s);
    if (cli->verbose > 0)
        fprintf(stderr, "%s: %" PRId64 " records\n", cli->name, s.printed);
    turbine_consumer_destroy(s.consumer);
    free(s.parts);
    return rc;
}

int turbine__consume_main(int argc, char **argv)
{
    struct turbine_cli cli;
    turbine__cli_init(&cli, "turbine consume");
    struct consume_args a = {.from = FROM_EARLIEST, .partition = -1, .count = -1};
    int rc = parse(&cli, &a, argc, argv);
    if (rc != TURBINE_EXIT_OK)
        return rc;
    if (cli.help) {
        usage(stdout);
        return TURBINE_EXIT_OK;
    }
    TURBINE_ASSERT(a.topic != NULL);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    struct turbine_client *client;
    rc = turbine__cli_connect(&cli, &client);
    if (rc != TURBINE_EXIT_OK)
        return rc;
    rc = run(&cli, &a, client);
    turbine_client_destroy(client);
    return rc;
}
