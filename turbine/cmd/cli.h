/* SPDX-License-Identifier: MIT
 * cli.h - what the user-facing subcommands of `turbine` share: the common options (--broker,
 * TURBINE_BROKER, -v, --help), one-line errors on stderr, number parsing, and connecting a
 * client. Exit statuses are TURBINE_EXIT_OK (0), TURBINE_EXIT_RUNTIME (1) and TURBINE_EXIT_USAGE
 * (2), as docs/cli.md states.
 */
#ifndef TURBINE_CMD_CLI_H
#define TURBINE_CMD_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>

#include "turbine/client.h"

#define TURBINE_EXIT_OK      0
#define TURBINE_EXIT_RUNTIME 1
#define TURBINE_EXIT_USAGE   2

#define TURBINE_BROKER_ENV     "TURBINE_BROKER"
#define TURBINE_BROKER_DEFAULT "127.0.0.1:9292"

/* Long options every subcommand accepts: put TURBINE_CLI_COMMON_OPTIONS in its option table and
 * start its short options with TURBINE_CLI_COMMON_SHORT, then parse with turbine__cli_options(). */
enum { TURBINE_CLI_OPT_BROKER = 1000 };
#define TURBINE_CLI_COMMON_OPTIONS                                                                 \
    {"broker", required_argument, NULL, TURBINE_CLI_OPT_BROKER}, {"help", no_argument, NULL, 'h'}, \
    {                                                                                              \
        "verbose", no_argument, NULL, 'v'                                                          \
    }
#define TURBINE_CLI_COMMON_SHORT ":hv"

struct turbine_cli {
    const char *name;   /* "turbine produce": the prefix of every message */
    const char *broker; /* HOST:PORT from --broker, else TURBINE_BROKER, else the default */
    int verbose;        /* -v count */
    bool help;          /* --help seen */
    char host[256];     /* parsed from `broker` by turbine__cli_connect() */
};

/* Sets the name and the broker from the environment. */
void turbine__cli_init(struct turbine_cli *cli, const char *name);

/* A subcommand's own option `c` (optarg holds its value): TURBINE_EXIT_OK, or the exit code
 * after printing a usage error. */
typedef int (*turbine_cli_option_fn)(struct turbine_cli *cli, int c, void *arg);

/* Parses argv's options with getopt_long(shorts, longs): the common ones and getopt's errors
 * here, every other one by own(cli, c, arg) (own is NULL for a subcommand with none). Returns
 * TURBINE_EXIT_OK, or the exit code of the first bad option after its usage error line. */
int turbine__cli_options(struct turbine_cli *cli, int argc, char **argv, const char *shorts,
                         const struct option *longs, turbine_cli_option_fn own, void *arg);

/* Prints "NAME: MESSAGE" on stderr. Returns TURBINE_EXIT_RUNTIME. */
int turbine__cli_error(const struct turbine_cli *cli, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prints "NAME: MESSAGE (see NAME --help)" on stderr. Returns TURBINE_EXIT_USAGE. */
int turbine__cli_usage_error(const struct turbine_cli *cli, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* After the options: exactly one TOPIC argument at argv[optind] into *topic. Returns
 * TURBINE_EXIT_OK, or TURBINE_EXIT_USAGE after the usage error line. */
int turbine__cli_topic_arg(const struct turbine_cli *cli, int argc, char **argv,
                           const char **topic);

/* Parses a decimal integer in [min, max] (all of `text`). Returns false if it is not one. */
bool turbine__cli_parse_i64(const char *text, int64_t min, int64_t max, int64_t *out);

/* A byte count with an optional K, M, G or T suffix (powers of 1024). */
bool turbine__cli_parse_bytes(const char *text, int64_t *out);

/* Connects to cli->broker and waits for the handshake. Returns TURBINE_EXIT_OK and sets *out,
 * TURBINE_EXIT_USAGE for a malformed address, or TURBINE_EXIT_RUNTIME when the broker cannot be
 * reached (error printed). A refused connection fails at once; others within 5 s. */
int turbine__cli_connect(struct turbine_cli *cli, struct turbine_client **out);

/* The subcommands (argv[0] is the subcommand's name). */
int turbine__topic_main(int argc, char **argv);
int turbine__produce_main(int argc, char **argv);
int turbine__consume_main(int argc, char **argv);
int turbine__status_main(int argc, char **argv);

#endif
