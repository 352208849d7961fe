/* SPDX-License-Identifier: MIT
 * produce.c - `turbine produce TOPIC`: records from stdin, one per line or length-delimited
 * (a 4-byte big-endian length, then that many bytes), optionally split into key and value at
 * a separator, produced through the library's batching producer. Every record is flushed and
 * its outcome known before the command exits: 0 only when all were acknowledged.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "turbine_assert.h"

#define HEADERS_MAX      64
#define RECORD_BYTES_MAX (64u << 20) /* a length-delimited record larger than this is refused */

enum { OPT_FORMAT = 2000, OPT_KEY_SEPARATOR, OPT_PARTITION, OPT_ACKS, OPT_HEADER };

struct produce_args {
    const char *topic;
    bool length_format;
    const char *key_separator; /* NULL: no keys */
    int32_t partition;         /* TURBINE_PARTITION_ANY */
    int16_t acks;
    struct turbine_header_in headers[HEADERS_MAX];
    int32_t headers_count;
};

/* Outcomes, written by delivery callbacks on the client's IO context. */
static struct {
    pthread_mutex_t lock;
    bool verbose;
    int64_t delivered;
    int64_t failed;
    int first_error;
    int64_t first_failed_record; /* 1-based input position */
} outcome = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: turbine produce TOPIC [options] < records\n"
            "\n"
            "Produces the records read from stdin to TOPIC and exits once every one is\n"
            "acknowledged (per --acks). Prints nothing on success unless -v.\n"
            "\n"
            "options:\n"
            "      --format lines|length  'lines' (default): one record per line, the newline\n"
            "                             removed; 'length': each record is a 4-byte big-endian\n"
            "                             length followed by that many bytes (binary safe)\n"
            "  -K, --key-separator SEP    the bytes before the first SEP are the key, those after\n"
            "                             it the value; a record without SEP has a null key\n"
            "  -p, --partition N          produce every record to partition N (default: by key,\n"
            "                             records without a key spread over the partitions)\n"
            "  -a, --acks 0|1|all         wait for no ack, the leader's write, or durability\n"
            "                             per the topic's setting (default all)\n"
            "  -H, --header KEY=VALUE     add a header to every record (repeatable)\n"
            "      --broker HOST:PORT     the broker (env TURBINE_BROKER, default %s)\n"
            "  -v, --verbose              print 'partition P offset O' per record on stdout\n"
            "                             (acks 0: offset -1) and a summary on stderr\n"
            "  -h, --help                 this help\n"
            "\n"
            "exit status: 0 all records acknowledged, 1 runtime error (broker unreachable,\n"
            "unknown topic, a record failed), 2 usage\n",
            TURBINE_BROKER_DEFAULT);
}

static void delivered(const struct turbine_delivery *d, void *arg)
{
    int64_t record = (int64_t)(intptr_t)arg;
    pthread_mutex_lock(&outcome.lock);
    if (d->error != 0) {
        if (outcome.failed++ == 0) {
            outcome.first_error = d->error;
            outcome.first_failed_record = record;
        }
    } else {
        outcome.delivered++;
        if (outcome.verbose)
            printf("partition %" PRId32 " offset %" PRId64 "\n", d->partition, d->offset);
    }
    pthread_mutex_unlock(&outcome.lock);
}

static int parse_option(struct turbine_cli *cli, int c, void *arg)
{
    struct produce_args *a = arg;
    int64_t v;
    switch (c) {
    case OPT_FORMAT:
        if (strcmp(optarg, "lines") != 0 && strcmp(optarg, "length") != 0)
            return turbine__cli_usage_error(cli, "bad --format '%s' (lines or length)", optarg);
        a->length_format = strcmp(optarg, "length") == 0;
        return TURBINE_EXIT_OK;
    case 'K':
        if (optarg[0] == '\0')
            return turbine__cli_usage_error(cli, "empty --key-separator");
        a->key_separator = optarg;
        return TURBINE_EXIT_OK;
    case 'p':
        if (!turbine__cli_parse_i64(optarg, 0, INT32_MAX, &v))
            return turbine__cli_usage_error(cli, "bad --partition '%s'", optarg);
        a->partition = (int32_t)v;
        return TURBINE_EXIT_OK;
    case 'a':
        if (strcmp(optarg, "all") == 0 || strcmp(optarg, "-1") == 0)
            a->acks = TURBINE_ACKS_ALL;
        else if (strcmp(optarg, "0") == 0 || strcmp(optarg, "1") == 0)
            a->acks = (int16_t)(optarg[0] - '0');
        else
            return turbine__cli_usage_error(cli, "bad --acks '%s' (0, 1 or all)", optarg);
        return TURBINE_EXIT_OK;
    case 'H': {
        const char *eq = strchr(optarg, '=');
        if (eq == NULL || eq == optarg)
            return turbine__cli_usage_error(cli, "bad --header '%s' (want KEY=VALUE)", optarg);
        if (a->headers_count == HEADERS_MAX)
            return turbine__cli_usage_error(cli, "more than %d headers", HEADERS_MAX);
        a->headers[a->headers_count++] = (struct turbine_header_in){
            .key = optarg,
            .key_size = (int32_t)(eq - optarg),
            .value = eq + 1,
            .value_size = (int32_t)strlen(eq + 1),
        };
        return TURBINE_EXIT_OK;
    }
    default:
        return turbine__cli_usage_error(cli, "unknown option");
    }
}

static int parse(struct turbine_cli *cli, struct produce_args *a, int argc, char **argv)
{
    static const struct option options[] = {
        {"format", required_argument, NULL, OPT_FORMAT},
        {"key-separator", required_argument, NULL, 'K'},
        {"partition", required_argument, NULL, 'p'},
        {"acks", required_argument, NULL, 'a'},
        {"header", required_argument, NULL, 'H'},
        TURBINE_CLI_COMMON_OPTIONS,
        {NULL, 0, NULL, 0},
    };
    int rc = turbine__cli_options(cli, argc, argv, TURBINE_CLI_COMMON_SHORT "K:p:a:H:", options,
                                  parse_option, a);
    if (rc != TURBINE_EXIT_OK)
        return rc;
    if (cli->help)
        return TURBINE_EXIT_OK;
    return turbine__cli_topic_arg(cli, argc, argv, &a->topic);
}

/* The next record from stdin into *buf: its size, -1 at the end of input, -2 on a read error
 * or a truncated length-delimited record (message printed). */
static int64_t read_record(struct turbine_cli *cli, const struct produce_args *a, char **buf,
                           size_t *cap)
{
    if (!a->length_format) {
        ssize_t n = getline(buf, cap, stdin);
        if (n < 0)
            return ferror(stdin) ? -2 : -1;
        if (n > 0 && (*buf)[n - 1] == '\n')
            n--;
        return n;
    }
    uint8_t prefix[4];
    size_t got = fread(prefix, 1, 4, stdin);
    if (got == 0 && !ferror(stdin))
        return -1;
    if (got != 4) {
        turbine__cli_error(cli, "stdin: truncated length prefix");
        return -2;
    }
    uint32_t size = (uint32_t)prefix[0] << 24 | (uint32_t)prefix[1] << 16 |
                    (uint32_t)prefix[2] << 8 | prefix[3];
    if (size > RECORD_BYTES_MAX) {
        turbine__cli_error(cli, "stdin: record of %" PRIu32 " bytes is over the limit", size);
        return -2;
    }
    if (*cap < (size_t)size + 1) {
        char *grown = realloc(*buf, (size_t)size + 1);
        if (grown == NULL) {
            turbine__cli_error(cli, "out of memory");
            return -2;
        }
        *buf = grown;
        *cap = (size_t)size + 1;
    }
    if (fread(*buf, 1, size, stdin) != size) {
        turbine__cli_error(cli, "stdin: truncated record (%" PRIu32 " bytes announced)", size);
        return -2;
    }
    return size;
}

/* Splits `data` at the key separator into the record's key and value. */
static void split_record(const struct produce_args *a, const char *data, size_t size,
                         struct turbine_produce_record *rec)
{
    rec->key = NULL;
    rec->key_size = -1;
    rec->value = data;
    rec->value_size = (int32_t)size;
    if (a->key_separator == NULL)
        return;
    size_t sep_size = strlen(a->key_separator);
    const char *sep = memmem(data, size, a->key_separator, sep_size);
    if (sep == NULL)
        return;
    rec->key = data;
    rec->key_size = (int32_t)(sep - data);
    rec->value = sep + sep_size;
    rec->value_size = (int32_t)(size - (size_t)(sep - data) - sep_size);
}

/* Produces stdin's records; returns TURBINE_EXIT_OK or TURBINE_EXIT_RUNTIME (printed). */
static int produce_all(struct turbine_cli *cli, const struct produce_args *a,
                       struct turbine_producer *producer, int64_t *records)
{
    char *buf = NULL;
    size_t cap = 0;
    int status = TURBINE_EXIT_OK;
    for (;;) {
        int64_t n = read_record(cli, a, &buf, &cap);
        if (n == -1)
            break;
        if (n < 0) {
            if (ferror(stdin))
                turbine__cli_error(cli, "cannot read stdin: %s", strerror(errno));
            status = TURBINE_EXIT_RUNTIME;
            break;
        }
        struct turbine_produce_record rec = {.topic = a->topic,
                                             .partition = a->partition,
                                             .headers = a->headers,
                                             .headers_count = a->headers_count,
                                             .timestamp = TURBINE_TIMESTAMP_NOW};
        split_record(a, buf, (size_t)n, &rec);
        ++*records;
        int rc;
        while ((rc = turbine_produce(producer, &rec, delivered, (void *)(intptr_t)*records)) ==
               -ENOBUFS)
            turbine_producer_flush(producer, 1000); /* the buffer is full: let it drain */
        if (rc < 0) {
            status = turbine__cli_error(cli, "record %" PRId64 ": %s", *records,
                                        turbine_client_strerror(rc));
            break;
        }
    }
    free(buf);
    return status;
}

static int run(struct turbine_cli *cli, const struct produce_args *a, struct turbine_client *client)
{
    int partitions = turbine_admin_partitions(client, a->topic);
    if (partitions < 0)
        return turbine__cli_error(cli, "topic '%s': %s", a->topic,
                                  turbine_client_strerror(partitions));
    if (a->partition != TURBINE_PARTITION_ANY && a->partition >= partitions)
        return turbine__cli_error(cli, "topic '%s' has %d partitions: no partition %" PRId32,
                                  a->topic, partitions, a->partition);
    struct turbine_producer_config config;
    turbine_producer_config_default(&config);
    config.acks = a->acks;
    struct turbine_producer *producer;
    int rc = turbine_producer_create(client, &config, &producer);
    if (rc < 0)
        return turbine__cli_error(cli, "cannot create a producer: %s", turbine_client_strerror(rc));
    int64_t records = 0;
    int status = produce_all(cli, a, producer, &records);
    rc = turbine_producer_flush(producer, config.delivery_timeout_ms + 5000);
    if (rc < 0 && status == TURBINE_EXIT_OK)
        status = turbine__cli_error(cli, "flush: %s", turbine_client_strerror(rc));
    turbine_producer_destroy(producer);
    if (outcome.failed > 0 && status == TURBINE_EXIT_OK)
        status = turbine__cli_error(
            cli, "%" PRId64 " of %" PRId64 " records failed; record %" PRId64 ": %s",
            outcome.failed, records, outcome.first_failed_record,
            turbine_client_strerror(outcome.first_error));
    if (cli->verbose > 0)
        fprintf(stderr, "%s: %" PRId64 " records acknowledged to '%s'\n", cli->name,
                outcome.delivered, a->topic);
    return status;
}

int turbine__produce_main(int argc, char **argv)
{
    struct turbine_cli cli;
    turbine__cli_init(&cli, "turbine produce");
    struct produce_args a = {.partition = TURBINE_PARTITION_ANY, .acks = TURBINE_ACKS_ALL};
    int rc = parse(&cli, &a, argc, argv);
    if (rc != TURBINE_EXIT_OK)
        return rc;
    if (cli.help) {
        usage(stdout);
        return TURBINE_EXIT_OK;
    }
    TURBINE_ASSERT(a.topic != NULL);
    outcome.verbose = cli.verbose > 0;
    struct turbine_client *client;
    rc = turbine__cli_connect(&cli, &client);
    if (rc != TURBINE_EXIT_OK)
        return rc;
    rc = run(&cli, &a, client);
    turbine_client_destroy(client);
    if (fflush(stdout) != 0)
        rc = turbine__cli_error(&cli, "cannot write the output");
    return rc;
}
