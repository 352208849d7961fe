/* SPDX-License-Identifier: MIT
 * turbine.c - the `turbine` command: one binary, one subcommand per job. The table below is the
 * only place a subcommand is registered; `turbine --help` lists it, an unknown one is a usage
 * error (exit status 2).
 */
#include <stdio.h>
#include <string.h>

#include "broker/broker.h"
#include "cli.h"

struct subcommand {
    const char *name;
    const char *summary;
    int (*main)(int argc, char **argv); /* argv[0] is the subcommand's name */
};

int turbine__bench_main(int argc, char **argv); /* bench.c */

static const struct subcommand subcommands[] = {
    {"bench", "measure throughput and latency (produce, consume, e2e)", turbine__bench_main},
    {"broker", "run a broker (turbine broker --help for its options)", turbine__broker_main},
    {"topic", "create, delete, list or describe topics", turbine__topic_main},
    {"produce", "produce records read from stdin to a topic", turbine__produce_main},
    {"consume", "print a topic's records", turbine__consume_main},
    {"status", "broker reachability, topics and partition offsets", turbine__status_main},
};
#define SUBCOMMANDS (sizeof(subcommands) / sizeof(subcommands[0]))

static void usage(FILE *out)
{
    fprintf(out, "usage: turbine COMMAND [options]\n\ncommands:\n");
    for (size_t i = 0; i < SUBCOMMANDS; i++)
        fprintf(out, "  %-10s %s\n", subcommands[i].name, subcommands[i].summary);
    fprintf(out, "\n'turbine COMMAND --help' describes a command's options.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < SUBCOMMANDS; i++)
        if (strcmp(argv[1], subcommands[i].name) == 0)
            return subcommands[i].main(argc - 1, argv + 1);
    fprintf(stderr, "turbine: unknown command '%s' (see turbine --help)\n", argv[1]);
    return 2;
}
