/* SPDX-License-Identifier: MIT
 * status.c - `turbine status`: is the broker reachable (connection and handshake), which topics
 * it has, and per partition its offsets and bytes on disk (DESCRIBE_TOPICS). The wire protocol
 * carries no per-core load, so none is shown.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "turbine_assert.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: turbine status [options]\n"
            "\n"
            "Connects to the broker (handshake), then prints its topics and, per partition, the\n"
            "start offset, high watermark, end offset, bytes on disk and segment count.\n"
            "Per-core load is not shown: the broker protocol does not expose it.\n"
            "\n"
            "options:\n"
            "      --broker HOST:PORT     the broker (env TURBINE_BROKER, default %s)\n"
            "  -v, --verbose              also the protocol versions negotiated\n"
            "  -h, --help                 this help\n"
            "\n"
            "exit status: 0 reachable, 1 runtime error (broker unreachable, ...), 2 usage\n",
            TURBINE_BROKER_DEFAULT);
}

static void print_topic(const struct turbine_topic_description *d, int64_t *bytes)
{
    for (uint32_t i = 0; i < d->partition_count; i++) {
        const struct turbine_describe_partition *p = &d->partitions[i];
        if (p->error != TURBINE_ERR_NONE) {
            printf("%-30s %9" PRId32 "  error %s\n", d->name, p->partition,
                   turbine_client_strerror(TURBINE_CLIENT_ERR(p->error)));
            continue;
        }
        printf("%-30s %9" PRId32 " %14" PRId64 " %14" PRId64 " %14" PRId64 " %14" PRId64 "\n",
               d->name, p->partition, p->log_start_offset, p->high_watermark, p->log_end_offset,
               p->size_bytes);
        *bytes += p->size_bytes;
    }
}

static int run(struct turbine_cli *cli, struct turbine_client *client)
{
    printf("broker %s: reachable\n", cli->broker);
    if (cli->verbose > 0) {
        printf("protocol versions:");
        for (uint16_t key = 0; key < 32; key++) {
            int v = turbine_client_api_version(client, key);
            if (v >= 0)
                printf(" %u:v%d", key, v);
        }
        printf("\n");
    }
    struct turbine_topic_info *topics;
    size_t count;
    int rc = turbine_admin_list_topics(client, &topics, &count);
    if (rc < 0)
        return turbine__cli_error(cli, "cannot list topics: %s", turbine_client_strerror(rc));
    printf("topics: %zu\n", count);
    int status = TURBINE_EXIT_OK;
    int64_t bytes = 0;
    if (count > 0)
        printf("%-30s %9s %14s %14s %14s %14s\n", "TOPIC", "PARTITION", "START", "HIGH-WATERMARK",
               "END", "BYTES");
    for (size_t i = 0; i < count; i++) {
        struct turbine_topic_description *d;
        rc = turbine_admin_describe_topic(client, topics[i].name, &d);
        if (rc < 0) {
            status = turbine__cli_error(cli, "topic '%s': %s", topics[i].name,
                                        turbine_client_strerror(rc));
            continue;
        }
        print_topic(d, &bytes);
        free(d);
    }
    printf("bytes: %" PRId64 "\n", bytes);
    free(topics);
    return status;
}

int turbine__status_main(int argc, char **argv)
{
    struct turbine_cli cli;
    turbine__cli_init(&cli, "turbine status");
    static const struct option options[] = {
        TURBINE_CLI_COMMON_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    int prc = turbine__cli_options(&cli, argc, argv, TURBINE_CLI_COMMON_SHORT, options, NULL, NULL);
    if (prc != TURBINE_EXIT_OK)
        return prc;
    if (cli.help) {
        usage(stdout);
        return TURBINE_EXIT_OK;
    }
    if (optind < argc)
        return turbine__cli_usage_error(&cli, "unexpected argument '%s'", argv[optind]);
    struct turbine_client *client;
    int rc = turbine__cli_connect(&cli, &client);
    if (rc != TURBINE_EXIT_OK)
        return rc;
    rc = run(&cli, client);
    turbine_client_destroy(client);
    if (fflush(stdout) != 0)
        rc = turbine__cli_error(&cli, "cannot write the output");
    return rc;
}
