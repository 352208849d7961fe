/* SPDX-License-Identifier: MIT
 * echo_server.c - a TCP echo server on every core, in loom's callback style.
 *
 * Every core listens on the same port (SO_REUSEPORT, so the kernel spreads connections over
 * the cores) with a multishot accept. A connection is one struct conn from a per-core pool (a
 * socket and a send op: about 300 bytes, no fiber and no buffer while idle). Received chunks
 * are lent by the core's buffer ring and sent back from that same memory, without a copy, up
 * to 8 per sendmsg (a batch record taken from a pool only while sending); the next chunks are
 * taken only when the previous batch is fully sent, so a slow reader makes its socket queue
 * up to its receive limit and then pause: TCP pushes back on the peer.
 *
 *   echo_server [--host ADDR] [--port N] [--stats] [loom options...]   (see --help)
 * SIGINT/SIGTERM stop it in order: no more accepts, every connection closed, buffers returned.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <loom/loom.h>

static const char *host = "127.0.0.1";
static long port = 7000;
static bool print_stats;

#define BATCH 8

/* The chunks one send carries (sendmsg of up to BATCH received buffers): taken from the
 * core's pool only while a connection sends, so an idle connection holds none. */
struct batch {
    struct batch *next_free;
    unsigned n, first; /* chunks; the first not yet fully sent */
    struct loom_rbuf chunk[BATCH];
    struct iovec iov[BATCH];
    struct msghdr msg;
};

struct conn {
    struct loom_sock sock;
    struct loom_op send_op;
    struct batch *batch; /* while sending */
    bool sending, closing, closed;
    struct conn *prev, *next; /* the core's connections, for shutdown */
};

/* per core (each core touches only its own slot) */
struct core_state {
    int listen_fd;
    struct loom_acceptor acceptor;
    struct conn *conns;
    struct conn *free_conns; /* the pool: conns carved from 64 KiB blocks of the core's budget */
    struct batch *free_batches;
    uint64_t accepted, accept_errors, live;
};
static struct core_state cores[LOOM_CORES_MAX];

#define POOL_BLOCK (64 * 1024)

/* A conn from the core's pool: exactly sizeof(struct conn) each, no per-allocation rounding. */
static struct conn *conn_get(struct core_state *cs)
{
    if (!cs->free_conns) {
        char *block = loom_alloc(POOL_BLOCK);
        if (!block)
            return NULL;
        for (size_t off = 0; off + sizeof(struct conn) <= POOL_BLOCK; off += sizeof(struct conn)) {
            struct conn *c = (struct conn *)(block + off);
            c->next = cs->free_conns;
            cs->free_conns = c;
        }
    }
    struct conn *c = cs->free_conns;
    cs->free_conns = c->next;
    return c;
}

static struct batch *batch_get(struct core_state *cs)
{
    if (!cs->free_batches) {
        char *block = loom_alloc(POOL_BLOCK);
        if (!block)
            return NULL;
        for (size_t off = 0; off + sizeof(struct batch) <= POOL_BLOCK;
             off += sizeof(struct batch)) {
            struct batch *b = (struct batch *)(block + off);
            b->next_free = cs->free_batches;
            cs->free_batches = b;
        }
    }
    struct batch *b = cs->free_batches;
    cs->free_batches = b->next_free;
    return b;
}

static void batch_put(struct core_state *cs, struct batch *b)
{
    b->next_free = cs->free_batches;
    cs->free_batches = b;
}

static void conn_put(struct core_state *cs, struct conn *c)
{
    c->next = cs->free_conns;
    cs->free_conns = c;
}

static void conn_freed(struct loom_sock *sock)
{
    struct conn *c = sock->data;
    struct core_state *cs = &cores[loom_core_id()];
    if (c->prev)
        c->prev->next = c->next;
    else
        cs->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    cs->live--;
    conn_put(cs, c);
}

/* Closes now, or when the send in flight is done. */
static void conn_close(struct conn *c)
{
    c->closing = true;
    if (!c->sending && !c->closed) {
        c->closed = true;
        loom_sock_close_async(&c->sock, conn_freed);
    }
}

static void send_done(struct loom_op *op);

static void batch_send(struct conn *c)
{
    struct batch *b = c->batch;
    c->sending = true;
    if (b->n - b->first == 1) {
        struct iovec *v = &b->iov[b->first];
        loom_op_send(&c->send_op, c->sock.fd, v->iov_base, v->iov_len, 0, send_done, c);
        return;
    }
    memset(&b->msg, 0, sizeof(b->msg));
    b->msg.msg_iov = &b->iov[b->first];
    b->msg.msg_iovlen = b->n - b->first;
    loom_op_sendmsg(&c->send_op, c->sock.fd, &b->msg, 0, send_done, c);
}

static void batch_release(struct conn *c)
{
    struct batch *b = c->batch;
    for (unsigned i = 0; i < b->n; i++)
        loom_rbuf_release(&b->chunk[i]);
    batch_put(&cores[loom_core_id()], b);
    c->batch = NULL;
}

/* Takes what has been received (up to BATCH chunks) and sends it back in one go. */
static void send_next(struct conn *c)
{
    if (c->sending || c->closing)
        return;
    struct loom_rbuf first;
    ssize_t n = loom_sock_next(&c->sock, &first);
    if (n == -EAGAIN)
        return;
    if (n <= 0) { /* end of stream or error */
        conn_close(c);
        return;
    }
    struct batch *b = batch_get(&cores[loom_core_id()]);
    if (!b) {
        loom_rbuf_release(&first);
        conn_close(c);
        return;
    }
    c->batch = b;
    b->n = 1;
    b->first = 0;
    b->chunk[0] = first;
    while (b->n < BATCH && loom_sock_next(&c->sock, &b->chunk[b->n]) > 0)
        b->n++;
    for (unsigned i = 0; i < b->n; i++)
        b->iov[i] = (struct iovec){(void *)b->chunk[i].data, b->chunk[i].len};
    batch_send(c);
}

static void send_done(struct loom_op *op)
{
    struct conn *c = op->data;
    struct batch *b = c->batch;
    c->sending = false;
    if (op->res > 0 && !c->closing) {
        size_t sent = (size_t)op->res;
        while (b->first < b->n && sent >= b->iov[b->first].iov_len)
            sent -= b->iov[b->first++].iov_len;
        if (b->first < b->n) { /* short: the rest */
            b->iov[b->first].iov_base = (char *)b->iov[b->first].iov_base + sent;
            b->iov[b->first].iov_len -= sent;
            batch_send(c);
            return;
        }
    }
    batch_release(c);
    if (op->res <= 0 || c->closing) {
        conn_close(c);
        return;
    }
    send_next(c);
}

static void on_readable(struct loom_sock *sock)
{
    send_next(sock->data);
}

static void on_accept(struct loom_acceptor *a, int fd)
{
    struct core_state *cs = a->data;
    if (fd < 0) {
        cs->accept_errors++;
        if (cs->accept_errors < 10 || cs->accept_errors % 1000 == 0)
            fprintf(stderr, "echo_server: accept on core %u: %s\n", loom_core_id(), strerror(-fd));
        return;
    }
    struct conn *c = conn_get(cs);
    if (!c) {
        fprintf(stderr, "echo_server: core %u: out of memory for a connection\n", loom_core_id());
        close(fd);
        return;
    }
    memset(c, 0, sizeof(*c));
    loom_socket_nodelay(fd, true);
    if (loom_sock_open(&c->sock, fd, on_readable, c) < 0) {
        close(fd);
        conn_put(cs, c);
        return;
    }
    c->next = cs->conns;
    if (c->next)
        c->next->prev = c;
    cs->conns = c;
    cs->accepted++;
    cs->live++;
}

static int core_start(void *arg)
{
    (void)arg;
    struct core_state *cs = &cores[loom_core_id()];
    cs->listen_fd = loom_listen(host, (uint16_t)port, 4096, LOOM_LISTEN_REUSEPORT);
    if (cs->listen_fd < 0)
        return cs->listen_fd;
    return loom_acceptor_start(&cs->acceptor, cs->listen_fd, on_accept, cs);
}

static int core_stop(void *arg)
{
    (void)arg;
    unsigned core = loom_core_id();
    struct core_state *cs = &cores[core];
    if (cs->listen_fd >= 0) {
        loom_acceptor_stop(&cs->acceptor);
        loom_close(cs->listen_fd);
        cs->listen_fd = -1;
    }
    for (struct conn *c = cs->conns; c; c = c->next)
        conn_close(c);
    while (cs->live > 0)
        loom_sleep(LOOM_NS_PER_MS);
    if (print_stats) {
        struct loom_net_stats st;
        loom_net_stats_get(&st);
        printf("core %u: accepted %" PRIu64 ", received %" PRIu64 " bytes in %" PRIu64
               " CQEs, -ENOBUFS %" PRIu64 ", re-arms %" PRIu64 ", pauses %" PRIu64
               ", buffers %u x %u in %u group(s), in use %u\n",
               core, cs->accepted, st.recv_bytes, st.recv_cqes, st.enobufs, st.rearms,
               st.auto_pauses, st.buffers, st.buffer_size, st.groups, st.buffers_in_use);
    }
    return 0;
}

static int server_main(void *arg)
{
    (void)arg;
    for (unsigned i = 0; i < LOOM_CORES_MAX; i++)
        cores[i].listen_fd = -1;
    int rc = loom_invoke_on_all(core_start, NULL, LOOM_NO_DEADLINE);
    if (rc < 0) {
        fprintf(stderr, "echo_server: cannot listen on %s:%ld: %s\n", host, port, strerror(-rc));
        loom_invoke_on_all(core_stop, NULL, LOOM_NO_DEADLINE);
        return 1;
    }
    printf("echo_server: listening on %s:%ld on %u core(s); %zu bytes per connection\n", host, port,
           loom_core_count(), sizeof(struct conn));
    fflush(stdout);
    loom_wait_shutdown(LOOM_NO_DEADLINE);
    loom_invoke_on_all(core_stop, NULL, LOOM_NO_DEADLINE);
    return 0;
}

static int parse_port(const char *value, void *ctx)
{
    (void)ctx;
    char *end;
    errno = 0;
    long v = strtol(value, &end, 10);
    if (errno || *end || end == value || v < 1 || v > 65535)
        return -EINVAL;
    port = v;
    return 0;
}

static int parse_host(const char *value, void *ctx)
{
    (void)ctx;
    host = value;
    return 0;
}

static int parse_stats(const char *value, void *ctx)
{
    (void)value;
    (void)ctx;
    print_stats = true;
    return 0;
}

int main(int argc, char **argv)
{
    static const struct loom_option options[] = {
        {"host", "ADDR", "numeric address to listen on (127.0.0.1)", parse_host, NULL},
        {"port", "N", "TCP port (7000)", parse_port, NULL},
        {"stats", NULL, "print each core's network counters at exit", parse_stats, NULL},
    };
    struct loom_app app = {
        .name = "echo_server",
        .summary = "a TCP echo server on every core (multishot accept and receive, no copies)",
        .options = options,
        .option_count = sizeof(options) / sizeof(options[0]),
        .main = server_main,
    };
    return loom_app_main(&app, argc, argv);
}
