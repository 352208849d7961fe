/* SPDX-License-Identifier: MIT
 * broker.c - `turbine broker`: configuration, start-up of every core (page cache, partition
 * table, listener), and the orderly shutdown on SIGTERM/SIGINT: stop accepting, answer or fail
 * the requests in flight, close the connections, flush and close every log.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "broker/broker.h"
#include "turbine_assert.h"

struct turbine__broker turbine__broker;

static struct turbine_broker_flags flags; /* the options point into it: lives for the process */

static int cache_start(void *arg)
{
    struct turbine_cache_config cc;
    turbine_cache_config_init(&cc);
    cc.bytes = turbine__broker.config.cache_bytes;
    int rc = turbine_cache_init(&cc);
    return rc == -EEXIST ? 0 : rc;
}

static int cache_stop(void *arg)
{
    turbine_cache_fini(); /* -EBUSY if a view is still on its way home: the process ends anyway */
    return 0;
}

/* Everything that was started, stopped in reverse order. */
static void stop_all(bool listening)
{
    atomic_store(&turbine__broker.stopping, true);
    turbine__admin_stop();
    if (listening)
        loom_invoke_on_all(turbine__server_core_stop, NULL, LOOM_NO_DEADLINE);
    loom_invoke_on_all(turbine__partitions_core_stop, NULL, LOOM_NO_DEADLINE);
    loom_invoke_on_all(turbine__offsets_core_stop, NULL, LOOM_NO_DEADLINE);
    if (turbine__broker.topics != NULL) {
        turbine_topics_close(turbine__broker.topics);
        turbine__broker.topics = NULL;
    }
    loom_invoke_on_all(cache_stop, NULL, LOOM_NO_DEADLINE);
}

static int broker_fiber(void *arg)
{
    struct turbine_broker_config *cfg = &turbine__broker.config;
    char error[1024];
    int rc = turbine_broker_config_load(cfg, &flags, error, sizeof(error));
    if (rc < 0) {
        fprintf(stderr, "turbine broker: %s\n", error);
        return 2;
    }
    loom_mutex_init(&turbine__broker.admin_lock);
    rc = loom_invoke_on_all(cache_start, NULL, LOOM_NO_DEADLINE);
    if (rc < 0) {
        turbine__log(TURBINE_LOG_ERROR, "broker", "page cache of %" PRIu64 " bytes per core: %s",
                     cfg->cache_bytes, strerror(-rc));
        return 1;
    }
    rc = loom_invoke_on_all(turbine__partitions_core_start, NULL, LOOM_NO_DEADLINE);
    if (rc == 0)
        rc = turbine_topics_open(cfg->data_dir, &turbine__broker.topics, error, sizeof(error));
    else
        snprintf(error, sizeof(error), "partition tables: %s", strerror(-rc));
    if (rc < 0) {
        turbine__log(TURBINE_LOG_ERROR, "broker", "%s", error);
        stop_all(false);
        return 1;
    }
    rc = loom_invoke_on_all(turbine__server_core_start, NULL, LOOM_NO_DEADLINE);
    if (rc < 0) {
        turbine__log(TURBINE_LOG_ERROR, "server", "cannot listen on %s:%" PRIu32 ": %s",
                     cfg->listen_host, cfg->port, strerror(-rc));
        stop_all(true);
        return 1;
    }
    rc = turbine__admin_start();
    if (rc < 0) {
        turbine__log(TURBINE_LOG_ERROR, "admin", "cannot listen on %s:%" PRIu32 ": %s",
                     cfg->listen_host, cfg->admin_port, strerror(-rc));
        stop_all(true);
        return 1;
    }
    turbine__log(TURBINE_LOG_ALWAYS, "broker", "serving %s:%" PRIu32 " from %s on %u core(s)",
                 cfg->listen_host, cfg->port, cfg->data_dir, loom_core_count());
    if (cfg->admin_port != 0)
        turbine__log(TURBINE_LOG_INFO, "admin", "metrics and health on http://%s:%" PRIu32,
                     cfg->listen_host, cfg->admin_port);
    loom_wait_shutdown(LOOM_NO_DEADLINE);
    turbine__log(TURBINE_LOG_ALWAYS, "broker", "shutting down");
    stop_all(true);
    turbine__log(TURBINE_LOG_ALWAYS, "broker", "stopped");
    return 0;
}

/* Receive buffers of 64 KiB (loom's default is 16 KiB): a produce frame of a 16 KiB batch and
 * more then lies in one buffer, and the owner core copies it straight into the log (the only
 * copy); a frame spread over several buffers is assembled first (a second copy). */
static void broker_defaults(struct loom_config *config)
{
    config->net_buffer_size = 64 * 1024;
}

int turbine__broker_main(int argc, char **argv)
{
    turbine_broker_flags_init(&flags);
    struct loom_app app = {
        .name = "turbine broker",
        .summary = "the turbine event-streaming broker (native protocol on every core)",
        .usage_extra = "With no options it serves ./data on 127.0.0.1:9292. SIGTERM or SIGINT "
                       "stop it in order; a second signal exits at once. See docs/broker.md.",
        .options = flags.options,
        .option_count = flags.option_count,
        .main = broker_fiber,
        .defaults = broker_defaults,
    };
    return loom_app_main(&app, argc, argv);
}
