/* SPDX-License-Identifier: MIT
 * admin.c - the admin HTTP port on core 0: GET /metrics (Prometheus text format 0.0.4, see
 * metrics.c) and GET /health. Requests are parsed with Debian's libhttp-parser (no hand-written
 * HTTP); one request per connection, answered with "Connection: close". A request that does
 * not parse gets 400, an unknown path 404, another method 405; the broker serves on regardless.
 *
 * Bounds: ADMIN_CONNS_MAX connections at once (more are closed at accept), ADMIN_REQUEST_MAX
 * bytes per request (431 beyond), ADMIN_READ_MS to send it whole.
 */
#include <errno.h>
#include <http_parser.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker/broker.h"
#include "turbine_assert.h"

#define ADMIN_CONNS_MAX   64
#define ADMIN_REQUEST_MAX 8192
#define ADMIN_READ_MS     5000
#define ADMIN_URL_MAX     256

struct admin_conn {
    struct loom_sock sock;
    http_parser parser;
    char url[ADMIN_URL_MAX];
    size_t url_len;
    bool url_too_long, complete;
};

static struct {
    int listen_fd;
    struct loom_acceptor acceptor;
    unsigned conns;
    bool running, stopping, accepting;
} admin = {.listen_fd = -1};

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct admin_conn *c = p->data;
    if (c->url_len + len >= sizeof(c->url)) {
        c->url_too_long = true;
        return 0;
    }
    memcpy(c->url + c->url_len, at, len);
    c->url_len += len;
    c->url[c->url_len] = '\0';
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct admin_conn *c = p->data;
    c->complete = true;
    http_parser_pause(p, 1); /* one request per connection: ignore what follows */
    return 0;
}

static const http_parser_settings parser_settings = {.on_url = on_url,
                                                     .on_message_complete = on_message_complete};

static void respond(struct admin_conn *c, int status, const char *reason, const char *type,
                    const char *body, size_t body_len)
{
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     status, reason, type, body_len);
    TURBINE_ASSERT(n > 0 && (size_t)n < sizeof(head));
    int64_t deadline = loom_deadline_in(ADMIN_READ_MS * LOOM_NS_PER_MS);
    if (loom_sock_send(&c->sock, head, (size_t)n, deadline) == n && body_len > 0)
        (void)loom_sock_send(&c->sock, body, body_len, deadline);
}

static void respond_text(struct admin_conn *c, int status, const char *reason, const char *text)
{
    respond(c, status, reason, "text/plain; charset=utf-8", text, strlen(text));
}

static void route(struct admin_conn *c)
{
    char path[ADMIN_URL_MAX];
    size_t len = strcspn(c->url, "?#");
    memcpy(path, c->url, len);
    path[len] = '\0';
    bool metrics = strcmp(path, "/metrics") == 0, health = strcmp(path, "/health") == 0;
    if (!metrics && !health) {
        respond_text(c, 404, "Not Found", "not found: try /metrics or /health\n");
    } else if (c->parser.method != HTTP_GET && c->parser.method != HTTP_HEAD) {
        respond_text(c, 405, "Method Not Allowed", "method not allowed\n");
    } else if (health) {
        bool up = !atomic_load(&turbine__broker.stopping);
        respond_text(c, up ? 200 : 503, up ? "OK" : "Service Unavailable",
                     up ? "ok\n" : "shutting down\n");
    } else {
        char *text = NULL;
        ssize_t n = turbine__metrics_render(&text);
        if (n < 0)
            respond_text(c, 500, "Internal Server Error", "metrics unavailable\n");
        else
            respond(c, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", text,
                    c->parser.method == HTTP_HEAD ? 0 : (size_t)n);
        free(text);
    }
}

/* Reads and parses one request; answers it. */
static void serve(struct admin_conn *c)
{
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    int64_t deadline = loom_deadline_in(ADMIN_READ_MS * LOOM_NS_PER_MS);
    size_t total = 0;
    while (!c->complete) {
        struct loom_rbuf rb;
        ssize_t n = loom_sock_recv(&c->sock, &rb, deadline);
        if (n <= 0)
            return; /* closed, timed out or failed before a whole request: nothing to say */
        size_t used = http_parser_execute(&c->parser, &parser_settings, rb.data, (size_t)n);
        loom_rbuf_release(&rb);
        total += (size_t)n;
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        if (c->complete)
            break;
        if ((e != HPE_OK && e != HPE_PAUSED) || used != (size_t)n) {
            respond_text(c, 400, "Bad Request", "bad request\n");
            return;
        }
        if (total > ADMIN_REQUEST_MAX || c->url_too_long) {
            respond_text(c, 431, "Request Header Fields Too Large", "request too large\n");
            return;
        }
    }
    if (c->url_too_long)
        respond_text(c, 414, "URI Too Long", "uri too long\n");
    else
        route(c);
}

static int conn_fiber(void *arg)
{
    struct admin_conn *c = arg;
    serve(c);
    (void)loom_sock_close(&c->sock);
    free(c);
    admin.conns--;
    return 0;
}

static void conn_start(int fd)
{
    struct admin_conn *c = admin.conns < ADMIN_CONNS_MAX ? calloc(1, sizeof(*c)) : NULL;
    if (c == NULL || loom_sock_open(&c->sock, fd, NULL, c) < 0) {
        close(fd);
        free(c);
        return;
    }
    admin.conns++;
    struct loom_fiber_attr attr = {.name = "admin", .stack = LOOM_STACK_MEDIUM};
    if (loom_spawn(NULL, conn_fiber, c, &attr) < 0) {
        admin.conns--;
        (void)loom_sock_close(&c->sock);
        free(c);
    }
}

/* Accepts until stopped. It stops the acceptor itself: loom_accept() and loom_acceptor_stop()
 * from two fibers would wait on the acceptor at once, so the accept wakes every 100 ms to look. */
static int accept_fiber(void *arg)
{
    while (!admin.stopping) {
        int fd = loom_accept(&admin.acceptor, loom_deadline_in(100 * LOOM_NS_PER_MS));
        if (fd >= 0)
            conn_start(fd);
    }
    loom_acceptor_stop(&admin.acceptor);
    admin.accepting = false;
    return 0;
}

int turbine__admin_start(void)
{
    const struct turbine_broker_config *cfg = &turbine__broker.config;
    TURBINE_ASSERT(loom_core_id() == 0 && !admin.running);
    if (cfg->admin_port == 0)
        return 0;
    int fd = loom_listen(cfg->listen_host, (uint16_t)cfg->admin_port, 64, 0);
    if (fd < 0)
        return fd;
    int rc = loom_acceptor_start(&admin.acceptor, fd, NULL, NULL);
    struct loom_fiber_attr attr = {.name = "admin-accept", .stack = LOOM_STACK_SMALL};
    if (rc == 0) {
        admin.accepting = true;
        rc = loom_spawn(NULL, accept_fiber, NULL, &attr);
        if (rc < 0) {
            admin.accepting = false;
            loom_acceptor_stop(&admin.acceptor);
        }
    }
    if (rc < 0) {
        close(fd);
        return rc;
    }
    admin.listen_fd = fd;
    admin.running = true;
    admin.stopping = false;
    return 0;
}

void turbine__admin_stop(void)
{
    if (!admin.running)
        return;
    admin.stopping = true; /* the accept fiber stops the acceptor and returns */
    /* connections end by themselves within ADMIN_READ_MS (their read deadline) */
    for (int i = 0; (admin.accepting || admin.conns > 0) && i < 2 * ADMIN_READ_MS; i++)
        loom_sleep(LOOM_NS_PER_MS);
    close(admin.listen_fd);
    admin.listen_fd = -1;
    admin.running = false;
}
