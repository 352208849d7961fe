/* SPDX-License-Identifier: MIT
 * topic.c - `turbine topic create|delete|list|describe`: topic admin over CREATE_TOPICS,
 * DELETE_TOPICS, METADATA and DESCRIBE_TOPICS. Output goes to stdout, one topic or partition a
 * line; nothing is printed by create or delete unless -v.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "turbine_assert.h"

enum {
    OPT_PARTITIONS = 'p',
    OPT_RETENTION_MS = 2000,
    OPT_RETENTION_BYTES,
    OPT_SEGMENT_BYTES,
    OPT_DURABILITY,
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: turbine topic create TOPIC [--partitions N] [--retention-ms MS]\n"
            "                            [--retention-bytes BYTES] [--segment-bytes BYTES]\n"
            "                            [--durability default|written|fsync]\n"
            "       turbine topic delete TOPIC...\n"
            "       turbine topic list\n"
            "       turbine topic describe TOPIC...\n"
            "\n"
            "Creates, deletes, lists and describes topics.\n"
            "\n"
            "create options (unset ones take the broker's defaults):\n"
            "  -p, --partitions N         partitions of the topic (1)\n"
            "      --retention-ms MS      delete segments older than MS; 'unlimited' keeps them\n"
            "      --retention-bytes N    keep at most N bytes per partition (K/M/G/T suffixes);\n"
            "                             'unlimited' for no limit\n"
            "      --segment-bytes N      roll segments at N bytes (K/M/G/T suffixes)\n"
            "      --durability D         when acks=all is answered: 'written' (in the page\n"
            "                             cache), 'fsync' (after fdatasync), 'default' (broker's)\n"
            "\n"
            "describe prints the topic's settings, then per partition: its start offset, high\n"
            "watermark, end offset, bytes on disk and segment count.\n"
            "\n"
            "common options:\n"
            "      --broker HOST:PORT     the broker (env TURBINE_BROKER, default %s)\n"
            "  -v, --verbose              say what was done\n"
            "  -h, --help                 this help\n"
            "\n"
            "exit status: 0 ok, 1 runtime error (broker unreachable, topic exists, ...), 2 usage\n",
            TURBINE_BROKER_DEFAULT);
}

/* "unlimited" or a value for a retention setting. */
static bool parse_limit(const char *text, bool bytes, int64_t *out)
{
    if (strcmp(text, "unlimited") == 0 || strcmp(text, "-1") == 0) {
        *out = TURBINE_CONFIG_UNLIMITED;
        return true;
    }
    return bytes ? turbine__cli_parse_bytes(text, out)
                 : turbine__cli_parse_i64(text, 0, INT64_MAX, out);
}

static void print_limit(const char *name, int64_t v)
{
    if (v == TURBINE_CONFIG_UNLIMITED)
        printf("  %s unlimited", name);
    else if (v == TURBINE_CONFIG_DEFAULT)
        printf("  %s default", name);
    else
        printf("  %s %" PRId64, name, v);
}

static const char *durability_name(uint8_t d)
{
    switch (d) {
    case TURBINE_TOPIC_DURABILITY_DEFAULT:
        return "default";
    case TURBINE_TOPIC_DURABILITY_WRITTEN:
        return "written";
    case TURBINE_TOPIC_DURABILITY_FSYNC:
        return "fsync";
    default:
        return "unknown";
    }
}

static int describe_one(struct turbine_cli *cli, struct turbine_client *client, const char *topic)
{
    struct turbine_topic_description *d;
    int rc = turbine_admin_describe_topic(client, topic, &d);
    if (rc < 0)
        return turbine__cli_error(cli, "topic '%s': %s", topic, turbine_client_strerror(rc));
    printf("topic %s\n  partitions %" PRIu32, d->name, d->partition_count);
    print_limit("retention.ms", d->config.retention_ms);
    print_limit("retention.bytes", d->config.retention_bytes);
    print_limit("segment.bytes", d->config.segment_bytes);
    printf("  durability %s\n", durability_name(d->config.durability));
    printf("  %-9s %14s %14s %14s %14s %8s\n", "PARTITION", "START", "HIGH-WATERMARK", "END",
           "BYTES", "SEGMENTS");
    for (uint32_t i = 0; i < d->partition_count; i++) {
        const struct turbine_describe_partition *p = &d->partitions[i];
        if (p->error != TURBINE_ERR_NONE) {
            printf("  %-9" PRId32 " error %s\n", p->partition,
                   turbine_client_strerror(TURBINE_CLIENT_ERR(p->error)));
            continue;
        }
        printf("  %-9" PRId32 " %14" PRId64 " %14" PRId64 " %14" PRId64 " %14" PRId64 " %8" PRIu32
               "\n",
               p->partition, p->log_start_offset, p->high_watermark, p->log_end_offset,
               p->size_bytes, p->segment_count);
    }
    free(d);
    return TURBINE_EXIT_OK;
}

static int list(struct turbine_cli *cli, struct turbine_client *client)
{
    struct turbine_topic_info *topics;
    size_t count;
    int rc = turbine_admin_list_topics(client, &topics, &count);
    if (rc < 0)
        return turbine__cli_error(cli, "cannot list topics: %s", turbine_client_strerror(rc));
    printf("%-40s %s\n", "TOPIC", "PARTITIONS");
    for (size_t i = 0; i < count; i++)
        printf("%-40s %" PRId32 "\n", topics[i].name, topics[i].partitions);
    free(topics);
    return TURBINE_EXIT_OK;
}

struct topic_args {
    const char *action;
    int64_t partitions;
    struct turbine_topic_config config;
    bool create_options; /* a create-only option was given */
};

static int parse_option(struct turbine_cli *cli, int c, void *arg)
{
    struct topic_args *a = arg;
    a->create_options = true;
    if (c == OPT_PARTITIONS) {
        if (!turbine__cli_parse_i64(optarg, 1, INT32_MAX, &a->partitions))
            return turbine__cli_usage_error(cli, "bad --partitions '%s'", optarg);
    } else if (c == OPT_RETENTION_MS) {
        if (!parse_limit(optarg, false, &a->config.retention_ms))
            return turbine__cli_usage_error(cli, "bad --retention-ms '%s'", optarg);
    } else if (c == OPT_RETENTION_BYTES) {
        if (!parse_limit(optarg, true, &a->config.retention_bytes))
            return turbine__cli_usage_error(cli, "bad --retention-bytes '%s'", optarg);
    } else if (c == OPT_SEGMENT_BYTES) {
        if (!turbine__cli_parse_bytes(optarg, &a->config.segment_bytes) ||
            a->config.segment_bytes == 0)
            return turbine__cli_usage_error(cli, "bad --segment-bytes '%s'", optarg);
    } else {
        TURBINE_ASSERT(c == OPT_DURABILITY);
        if (strcmp(optarg, "default") == 0)
            a->config.durability = TURBINE_TOPIC_DURABILITY_DEFAULT;
        else if (strcmp(optarg, "written") == 0)
            a->config.durability = TURBINE_TOPIC_DURABILITY_WRITTEN;
        else if (strcmp(optarg, "fsync") == 0)
            a->config.durability = TURBINE_TOPIC_DURABILITY_FSYNC;
        else
            return turbine__cli_usage_error(
                cli, "bad --durability '%s' (default, written or fsync)", optarg);
    }
    return TURBINE_EXIT_OK;
}

static int parse(struct turbine_cli *cli, struct topic_args *a, int argc, char **argv)
{
    static const struct option options[] = {
        {"partitions", required_argument, NULL, OPT_PARTITIONS},
        {"retention-ms", required_argument, NULL, OPT_RETENTION_MS},
        {"retention-bytes", required_argument, NULL, OPT_RETENTION_BYTES},
        {"segment-bytes", required_argument, NULL, OPT_SEGMENT_BYTES},
        {"durability", required_argument, NULL, OPT_DURABILITY},
        TURBINE_CLI_COMMON_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    return turbine__cli_options(cli, argc, argv, TURBINE_CLI_COMMON_SHORT "p:", options,
                                parse_option, a);
}

/* Checks the action and its operands; returns TURBINE_EXIT_OK or a usage error. */
static int check(struct turbine_cli *cli, const struct topic_args *a, int operands)
{
    bool create = strcmp(a->action, "create") == 0;
    if (!create && strcmp(a->action, "delete") != 0 && strcmp(a->action, "list") != 0 &&
        strcmp(a->action, "describe") != 0)
        return turbine__cli_usage_error(cli, "unknown action '%s'", a->action);
    if (a->create_options && !create)
        return turbine__cli_usage_error(cli, "options of create given to %s", a->action);
    if (strcmp(a->action, "list") == 0 && operands > 0)
        return turbine__cli_usage_error(cli, "list takes no topic");
    if (strcmp(a->action, "list") != 0 && operands == 0)
        return turbine__cli_usage_error(cli, "%s needs a topic", a->action);
    if (create && operands > 1)
        return turbine__cli_usage_error(cli, "create takes one topic");
    return TURBINE_EXIT_OK;
}

static int run(struct turbine_cli *cli, struct turbine_client *client, const struct topic_args *a,
               int operands, char **topics)
{
    int status = TURBINE_EXIT_OK;
    if (strcmp(a->action, "list") == 0)
        return list(cli, client);
    for (int i = 0; i < operands; i++) {
        int rc = 0;
        if (strcmp(a->action, "create") == 0)
            rc = turbine_admin_create_topic(client, topics[i], (int32_t)a->partitions, &a->config);
        else if (strcmp(a->action, "delete") == 0)
            rc = turbine_admin_delete_topic(client, topics[i]);
        else if (describe_one(cli, client, topics[i]) != TURBINE_EXIT_OK)
            status = TURBINE_EXIT_RUNTIME;
        if (rc < 0)
            status =
                turbine__cli_error(cli, "topic '%s': %s", topics[i], turbine_client_strerror(rc));
        else if (cli->verbose > 0 && strcmp(a->action, "describe") != 0)
            fprintf(stderr, "%s: %sd topic '%s'\n", cli->name, a->action, topics[i]);
    }
    return status;
}

int turbine__topic_main(int argc, char **argv)
{
    struct turbine_cli cli;
    turbine__cli_init(&cli, "turbine topic");
    struct topic_args a = {.partitions = 1,
                           .config = {TURBINE_CONFIG_DEFAULT, TURBINE_CONFIG_DEFAULT,
                                      TURBINE_CONFIG_DEFAULT, TURBINE_TOPIC_DURABILITY_DEFAULT}};
    int rc = parse(&cli, &a, argc, argv);
    if (rc != TURBINE_EXIT_OK)
        return rc;
    if (cli.help) {
        usage(stdout);
        return TURBINE_EXIT_OK;
    }
    if (optind >= argc)
        return turbine__cli_usage_error(&cli, "missing action (create, delete, list, describe)");
    a.action = argv[optind];
    int operands = argc - optind - 1;
    char **topics = argv + optind + 1;
    rc = check(&cli, &a, operands);
    if (rc != TURBINE_EXIT_OK)
        return rc;
    struct turbine_client *client;
    rc = turbine__cli_connect(&cli, &client);
    if (rc != TURBINE_EXIT_OK)
        return rc;
    rc = run(&cli, client, &a, operands, topics);
    turbine_client_destroy(client);
    if (fflush(stdout) != 0)
        rc = turbine__cli_error(&cli, "cannot write the output");
    return rc;
}
