/* SPDX-License-Identifier: MIT
 * client.c - a libturbine client: configuration, creation and destruction, the lock and
 * condition that every wait uses in both modes, frame encoding, blocking calls, error texts.
 *
 * A blocking call queues its request and waits on the client's condition until the IO context
 * completes it; the IO context enforces every deadline, so a waiter never gives up on its own
 * and a request's memory is never shared with a caller that has left.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client_internal.h"
#include "loom/clock.h"
#include "loom/reactor.h"

static _Thread_local bool in_callback;

bool tc_in_callback(void)
{
    return in_callback;
}

void tc_set_in_callback(bool on)
{
    in_callback = on;
}

/* ---- errors ------------------------------------------------------------------------------- */

unsigned turbine_client_broker_error(int rc)
{
    if (rc > -TURBINE_CLIENT_ERR_BASE)
        return TURBINE_ERR_NONE;
    return (unsigned)(-rc - TURBINE_CLIENT_ERR_BASE);
}

bool turbine_client_retriable(int rc)
{
    if (rc >= 0)
        return false;
    unsigned e = turbine_client_broker_error(rc);
    if (e != TURBINE_ERR_NONE)
        return turbine_error_retriable(e);
    switch (-rc) {
    case ECONNRESET:
    case ECONNREFUSED:
    case ECONNABORTED:
    case ETIMEDOUT:
    case EPIPE:
    case ENOTCONN:
    case EHOSTUNREACH:
    case ENETUNREACH:
    case EAGAIN:
        return true;
    default:
        return false;
    }
}

/* "broker: NAME: message" for every code, built once (static strings, thread-safe). */
static char broker_texts[TURBINE_ERR_MAX + 2][160];
static pthread_once_t broker_texts_once = PTHREAD_ONCE_INIT;

static void broker_texts_init(void)
{
    for (unsigned e = 0; e <= TURBINE_ERR_MAX + 1; e++)
        snprintf(broker_texts[e], sizeof(broker_texts[e]), "broker: %s: %s", turbine_error_name(e),
                 turbine_error_message(e));
}

const char *turbine_client_strerror(int rc)
{
    if (rc >= 0)
        return "success";
    unsigned e = turbine_client_broker_error(rc);
    if (e != TURBINE_ERR_NONE) {
        pthread_once(&broker_texts_once, broker_texts_init);
        return broker_texts[e <= TURBINE_ERR_MAX ? e : TURBINE_ERR_MAX + 1];
    }
    const char *text = strerrordesc_np(-rc);
    return text ? text : "unknown error";
}

/* ---- time and waiting --------------------------------------------------------------------- */

int64_t tc_now_ns(void)
{
    return loom_clock_ns();
}

int64_t tc_deadline_ms(int32_t ms)
{
    if (ms < 0)
        return LOOM_NO_DEADLINE;
    return tc_now_ns() + (int64_t)ms * TC_NS_PER_MS;
}

static void check_context(struct turbine_client *c)
{
    if (c->fiber) {
        TURBINE_ASSERT(loom_on_reactor());
        TURBINE_ASSERT(loom_core_id() == c->core);
    } else {
        TURBINE_ASSERT(!loom_on_reactor());
    }
}

void tc_lock(struct turbine_client *c)
{
    check_context(c);
    if (c->fiber)
        loom_mutex_lock(&c->fmu, LOOM_NO_DEADLINE);
    else
        pthread_mutex_lock(&c->mu);
}

void tc_unlock(struct turbine_client *c)
{
    if (c->fiber)
        loom_mutex_unlock(&c->fmu);
    else
        pthread_mutex_unlock(&c->mu);
}

void tc_broadcast(struct turbine_client *c)
{
    if (c->fiber)
        loom_cond_broadcast(&c->fcv);
    else
        pthread_cond_broadcast(&c->cv);
}

int tc_wait(struct turbine_client *c, int64_t deadline_ns)
{
    if (c->fiber) {
        TURBINE_ASSERT(loom_fiber_self() != NULL);
        return loom_cond_wait(&c->fcv, &c->fmu, deadline_ns);
    }
    if (deadline_ns == LOOM_NO_DEADLINE)
        return pthread_cond_wait(&c->cv, &c->mu) == 0 ? 0 : -EINVAL;
    struct timespec ts = {.tv_sec = deadline_ns / 1000000000LL,
                          .tv_nsec = deadline_ns % 1000000000LL};
    int rc = pthread_cond_timedwait(&c->cv, &c->mu, &ts);
    return rc == ETIMEDOUT ? -ETIMEDOUT : 0;
}

/* ---- frames ------------------------------------------------------------------------------- */

void tc_req_free(struct tc_req *r)
{
    free(r->buf);
    free(r->iov);
    free(r);
}

int tc_encode(tc_encode_fn fn, void *ctx, bool iov_mode, struct tc_req **out)
{
    size_t cap = 1024, iov_cap = iov_mode ? 16 : 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        struct tc_req *r = calloc(1, sizeof(*r));
        uint8_t *buf = malloc(cap);
        struct iovec *iov = iov_mode ? malloc(iov_cap * sizeof(*iov)) : NULL;
        if (!r || !buf || (iov_mode && !iov)) {
            free(r), free(buf), free(iov);
            return -ENOMEM;
        }
        struct turbine_proto_writer w;
        turbine_proto_writer_init(&w, buf, cap, iov, iov_cap);
        fn(&w, ctx);
        int64_t size = turbine_proto_frame_end(&w);
        if (size == -ENOSPC && attempt == 0) {
            cap = turbine_proto_writer_needed(&w);
            iov_cap = iov_mode ? turbine_proto_writer_iov_needed(&w) : 0;
            free(r), free(buf), free(iov);
            continue;
        }
        if (size < 0) {
            free(r), free(buf), free(iov);
            return (int)size;
        }
        r->buf = buf;
        r->size = (size_t)size;
        if (iov_mode) {
            r->iov = iov;
            r->iov_count = (int)w.iov_count;
        } else {
            r->iov = malloc(sizeof(*r->iov));
            if (!r->iov) {
                tc_req_free(r);
                return -ENOMEM;
            }
            r->iov[0] = (struct iovec){buf, (size_t)size};
            r->iov_count = 1;
        }
        r->api_key = (uint16_t)(buf[TURBINE_PROTO_REQ_OFF_API_KEY] << 8 |
                                buf[TURBINE_PROTO_REQ_OFF_API_KEY + 1]);
        TURBINE_ASSERT(r->api_key < TURBINE_API_COUNT);
        *out = r;
        return 0;
    }
    TURBINE_ASSERT(!"tc_encode: the needed size did not fit");
    return -ENOSPC;
}

void tc_submit_locked(struct turbine_client *c, struct tc_req *r)
{
    TURBINE_ASSERT(r->next == NULL);
    if (c->queue.tail)
        c->queue.tail->next = r;
    else
        c->queue.head = r;
    c->queue.tail = r;
    c->queue.count++;
    tc_broadcast(c);
}

struct call {
    bool done;
    int rc;
    uint8_t *frame;
    size_t size;
};

static void call_done(struct turbine_client *c, void *ctx, int rc, uint8_t *frame, size_t size)
{
    struct call *call = ctx;
    TURBINE_ASSERT(!call->done);
    call->rc = rc;
    call->frame = frame;
    call->size = size;
    call->done = true;
    tc_broadcast(c);
}

int tc_call(struct turbine_client *c, tc_encode_fn fn, void *ctx, uint8_t flags, int32_t timeout_ms,
            uint8_t **frame, struct turbine_response *resp)
{
    if (tc_in_callback())
        return -EWOULDBLOCK;
    struct tc_req *r;
    int rc = tc_encode(fn, ctx, false, &r);
    if (rc < 0)
        return rc;
    struct call call = {0};
    r->fn = call_done;
    r->ctx = &call;
    r->flags = flags;
    r->deadline_ns = tc_deadline_ms(timeout_ms > 0 ? timeout_ms : c->config.request_timeout_ms);
    tc_lock(c);
    tc_submit_locked(c, r);
    while (!call.done)
        tc_wait(c, LOOM_NO_DEADLINE);
    tc_unlock(c);
    if (call.rc < 0)
        return call.rc;
    TURBINE_ASSERT(call.frame != NULL);
    enum turbine_error e = turbine_response_parse(call.frame, call.size, resp);
    if (e == TURBINE_ERR_NONE && resp->error != TURBINE_ERR_NONE)
        e = resp->error;
    if (e != TURBINE_ERR_NONE) {
        free(call.frame);
        return TURBINE_CLIENT_ERR(e);
    }
    *frame = call.frame;
    return 0;
}

/* ---- the shared IO pool (thread mode) ----------------------------------------------------- */

static pthread_mutex_t shared_pool_mu = PTHREAD_MUTEX_INITIALIZER;
static struct loom_iopool *shared_pool;
static unsigned shared_pool_refs;

static int pool_acquire(struct turbine_client *c)
{
    if (c->config.iopool) {
        c->pool = c->config.iopool;
        return 0;
    }
    pthread_mutex_lock(&shared_pool_mu);
    int rc = 0;
    if (shared_pool_refs == 0)
        rc = loom_iopool_create(1, 4, NULL, &shared_pool);
    if (rc == 0) {
        shared_pool_refs++;
        c->pool = shared_pool;
        c->pool_shared = true;
    }
    pthread_mutex_unlock(&shared_pool_mu);
    return rc;
}

static void pool_release(struct turbine_client *c)
{
    if (!c->pool_shared)
        return;
    pthread_mutex_lock(&shared_pool_mu);
    TURBINE_ASSERT(shared_pool_refs > 0);
    if (--shared_pool_refs == 0) {
        loom_iopool_destroy(shared_pool);
        shared_pool = NULL;
    }
    pthread_mutex_unlock(&shared_pool_mu);
    c->pool = NULL;
}

/* ---- create / destroy --------------------------------------------------------------------- */

void turbine_client_config_default(struct turbine_client_config *config)
{
    *config = (struct turbine_client_config){
        .host = "127.0.0.1",
        .port = TURBINE_CLIENT_DEFAULT_PORT,
        .client_id = "libturbine",
        .connect_timeout_ms = 5000,
        .request_timeout_ms = 30000,
        .reconnect_backoff_ms = 50,
        .reconnect_backoff_max_ms = 5000,
        .max_in_flight = 64,
        .iopool = NULL,
    };
}

static int config_copy(struct turbine_client *c, const struct turbine_client_config *config)
{
    if (config)
        c->config = *config;
    else
        turbine_client_config_default(&c->config);
    struct turbine_client_config *k = &c->config;
    const char *host = k->host ? k->host : "127.0.0.1";
    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    const char *id = k->client_id ? k->client_id : "libturbine";
    if (strlen(host) >= sizeof(c->host) || strlen(id) >= sizeof(c->client_id))
        return -EINVAL;
    if (k->connect_timeout_ms <= 0 || k->request_timeout_ms <= 0 || k->reconnect_backoff_ms <= 0 ||
        k->reconnect_backoff_max_ms < k->reconnect_backoff_ms || k->max_in_flight == 0 ||
        k->port == 0)
        return -EINVAL;
    strcpy(c->host, host);
    strcpy(c->client_id, id);
    k->host = c->host;
    k->client_id = c->client_id;
    return 0;
}

static int sync_init(struct turbine_client *c)
{
    if (c->fiber) {
        loom_mutex_init(&c->fmu);
        loom_cond_init(&c->fcv);
        return 0;
    }
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&c->cv, &attr);
    pthread_condattr_destroy(&attr);
    if (rc != 0)
        return -rc;
    pthread_mutex_init(&c->mu, NULL);
    return 0;
}

static void sync_deinit(struct turbine_client *c)
{
    if (c->fiber) {
        loom_cond_deinit(&c->fcv);
        loom_mutex_deinit(&c->fmu);
    } else {
        pthread_cond_destroy(&c->cv);
        pthread_mutex_destroy(&c->mu);
    }
}

int turbine_client_create(const struct turbine_client_config *config, struct turbine_client **out)
{
    struct turbine_client *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    int rc = config_copy(c, config);
    if (rc < 0) {
        free(c);
        return rc;
    }
    c->fiber = loom_on_reactor();
    c->core = c->fiber ? loom_core_id() : 0;
    if (c->fiber)
        TURBINE_ASSERT(loom_fiber_self() != NULL);
    c->fd = -1;
    c->state = TC_DOWN;
    c->backoff_ms = c->config.reconnect_backoff_ms;
    c->max_frame = TURBINE_PROTO_FRAME_MAX_DEFAULT;
    c->next_corr = 1;
    for (unsigned i = 0; i < TURBINE_API_COUNT; i++)
        c->versions[i] = -1;
    rc = sync_init(c);
    if (rc == 0 && !c->fiber) {
        c->read_buf = malloc(TC_RX_CHUNK);
        rc = c->read_buf ? pool_acquire(c) : -ENOMEM;
    }
    if (rc == 0)
        rc = tc_io_start(c);
    if (rc < 0) {
        pool_release(c);
        free(c->read_buf);
        sync_deinit(c);
        free(c);
        return rc;
    }
    *out = c;
    return 0;
}

void turbine_client_destroy(struct turbine_client *c)
{
    if (!c)
        return;
    tc_lock(c);
    TURBINE_ASSERT(c->producers == NULL); /* producers are destroyed first */
    TURBINE_ASSERT(c->consumers == 0);
    c->closing = true;
    tc_broadcast(c);
    tc_unlock(c);
    tc_io_join(c);
    TURBINE_ASSERT(c->queue.head == NULL);
    TURBINE_ASSERT(c->inflight.head == NULL);
    pool_release(c);
    free(c->read_buf);
    free(c->rx);
    sync_deinit(c);
    free(c);
}

int turbine_client_wait_connected(struct turbine_client *c, int32_t timeout_ms)
{
    int64_t deadline = tc_deadline_ms(timeout_ms);
    tc_lock(c);
    int rc = 0;
    while (c->state != TC_READY && rc == 0)
        rc = tc_wait(c, deadline);
    rc = c->state == TC_READY ? 0 : -ETIMEDOUT;
    tc_unlock(c);
    return rc;
}

int turbine_client_last_error(struct turbine_client *c)
{
    tc_lock(c);
    int rc = c->last_error;
    tc_unlock(c);
    return rc;
}

int turbine_client_api_version(struct turbine_client *c, uint16_t api_key)
{
    if (api_key >= TURBINE_API_COUNT)
        return -1;
    tc_lock(c);
    int v = c->state == TC_READY ? c->versions[api_key] : -1;
    tc_unlock(c);
    return v;
}

void turbine_client_stats(struct turbine_client *c, struct turbine_client_stats *out)
{
    tc_lock(c);
    *out = c->stats;
    tc_unlock(c);
}
