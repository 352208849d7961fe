/* SPDX-License-Identifier: MIT
 * cli.c - the conventions shared by `turbine topic|produce|consume|status`: common options,
 * one-line errors, numbers, and a client connected before any work is done (so an unreachable
 * broker is reported once, clearly, with exit status 1).
 */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <loom/app.h>

#include "turbine_assert.h"

void turbine__cli_init(struct turbine_cli *cli, const char *name)
{
    memset(cli, 0, sizeof(*cli));
    cli->name = name;
    const char *env = getenv(TURBINE_BROKER_ENV);
    cli->broker = env != NULL && env[0] != '\0' ? env : TURBINE_BROKER_DEFAULT;
    opterr = 0; /* our messages, not getopt's */
    optind = 1;
}

int turbine__cli_error(const struct turbine_cli *cli, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", cli->name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return TURBINE_EXIT_RUNTIME;
}

int turbine__cli_usage_error(const struct turbine_cli *cli, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", cli->name);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see %s --help)\n", cli->name);
    va_end(ap);
    return TURBINE_EXIT_USAGE;
}

/* A common option or a getopt error ('?', ':'): 1 when handled, 0 when `c` is not one, or
 * -TURBINE_EXIT_USAGE after printing a usage error. */
static int common_option(struct turbine_cli *cli, int c, char **argv)
{
    switch (c) {
    case TURBINE_CLI_OPT_BROKER:
        cli->broker = optarg;
        return 1;
    case 'h':
        cli->help = true;
        return 1;
    case 'v':
        cli->verbose++;
        return 1;
    case ':':
        if (strncmp(argv[optind - 1], "--", 2) == 0) /* a long option: name it as typed */
            return -turbine__cli_usage_error(cli, "option '%s' needs a value", argv[optind - 1]);
        if (optopt != 0)
            return -turbine__cli_usage_error(cli, "option '-%c' needs a value", optopt);
        return -turbine__cli_usage_error(cli, "option needs a value");
    case '?':
        if (strncmp(argv[optind - 1], "--", 2) == 0)
            return -turbine__cli_usage_error(cli, "unknown option '%s'", argv[optind - 1]);
        if (optopt != 0)
            return -turbine__cli_usage_error(cli, "unknown option '-%c'", optopt);
        return -turbine__cli_usage_error(cli, "unknown option '%s'", argv[optind - 1]);
    default:
        return 0;
    }
}

int turbine__cli_options(struct turbine_cli *cli, int argc, char **argv, const char *shorts,
                         const struct option *longs, turbine_cli_option_fn own, void *arg)
{
    int c;
    while ((c = getopt_long(argc, argv, shorts, longs, NULL)) != -1) {
        int common = common_option(cli, c, argv);
        if (common < 0)
            return -common;
        if (common > 0)
            continue;
        TURBINE_ASSERT(own != NULL); /* getopt returns only the options it was given */
        int rc = own(cli, c, arg);
        if (rc != TURBINE_EXIT_OK)
            return rc;
    }
    return TURBINE_EXIT_OK;
}

bool turbine__cli_parse_i64(const char *text, int64_t min, int64_t max, int64_t *out)
{
    if (text == NULL || text[0] == '\0')
        return false;
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

bool turbine__cli_parse_bytes(const char *text, int64_t *out)
{
    size_t v; /* loom's parser: digits, then K, M, G or T (binary), optionally i and B */
    if (text == NULL || loom_parse_size(text, &v) < 0 || v > (size_t)INT64_MAX)
        return false;
    *out = (int64_t)v;
    return true;
}

/* HOST:PORT, [V6]:PORT, or HOST alone (port 9292) into cli->host and *port. */
static bool parse_address(struct turbine_cli *cli, uint16_t *port)
{
    const char *a = cli->broker;
    const char *host = a, *colon;
    size_t host_size;
    if (a[0] == '[') {
        const char *close = strchr(a, ']');
        if (close == NULL)
            return false;
        host = a + 1;
        host_size = (size_t)(close - host);
        colon = close[1] == ':' ? close + 1 : NULL;
        if (close[1] != '\0' && colon == NULL)
            return false;
    } else {
        colon = strrchr(a, ':');
        if (colon != NULL && strchr(a, ':') != colon)
            colon = NULL; /* a bare IPv6 address */
        host_size = colon != NULL ? (size_t)(colon - a) : strlen(a);
    }
    if (host_size == 0 || host_size >= sizeof(cli->host))
        return false;
    memcpy(cli->host, host, host_size);
    cli->host[host_size] = '\0';
    int64_t p = TURBINE_CLIENT_DEFAULT_PORT;
    if (colon != NULL && !turbine__cli_parse_i64(colon + 1, 1, 65535, &p))
        return false;
    *port = (uint16_t)p;
    return true;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Errors that another attempt within a few seconds will not cure. */
static bool connect_error_final(int rc)
{
    return rc == -ECONNREFUSED || rc == -EHOSTUNREACH || rc == -ENETUNREACH ||
           rc == -EADDRNOTAVAIL || rc == -EPROTO || rc == -EPROTONOSUPPORT;
}

int turbine__cli_connect(struct turbine_cli *cli, struct turbine_client **out)
{
    struct turbine_client_config config;
    turbine_client_config_default(&config);
    if (!parse_address(cli, &config.port))
        return turbine__cli_usage_error(cli, "bad broker address '%s' (want HOST:PORT)",
                                        cli->broker);
    config.host = cli->host;
    config.client_id = "turbine-cli";
    config.connect_timeout_ms = 5000;
    struct turbine_client *client;
    int rc = turbine_client_create(&config, &client);
    if (rc < 0)
        return turbine__cli_error(cli, "cannot connect to %s: %s", cli->broker,
                                  rc == -EINVAL ? "bad host (want a numeric address or localhost)"
                                                : turbine_client_strerror(rc));
    for (int64_t end = now_ms() + 5000;;) {
        rc = turbine_client_wait_connected(client, 50);
        if (rc == 0) {
            *out = client;
            return TURBINE_EXIT_OK;
        }
        int last = turbine_client_last_error(client);
        if (connect_error_final(last) || now_ms() >= end) {
            turbine_client_destroy(client);
            return turbine__cli_error(cli, "cannot connect to %s: %s", cli->broker,
                                      turbine_client_strerror(last != 0 ? last : rc));
        }
    }
}

int turbine__cli_topic_arg(const struct turbine_cli *cli, int argc, char **argv, const char **topic)
{
    if (optind >= argc)
        return turbine__cli_usage_error(cli, "missing TOPIC");
    if (optind + 1 < argc)
        return turbine__cli_usage_error(cli, "unexpected argument '%s'", argv[optind + 1]);
    *topic = argv[optind];
    return TURBINE_EXIT_OK;
}
