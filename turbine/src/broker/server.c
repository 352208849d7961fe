/* SPDX-License-Identifier: MIT
 * server.c - the broker's TCP side: a listener on every core (SO_REUSEPORT), and per
 * connection a reader fiber that cuts frames, a fiber per request, and a writer fiber that sends
 * the responses in request order.
 *
 * Frames. The reader takes received chunks as the core's buffer ring lends them. A frame that
 * lies whole in one chunk is parsed there, in place (the chunk is held, by reference count,
 * until the request's response is sent: a produce's batches are copied only once, by the owner
 * core into its log); a frame spread over chunks is assembled into memory of its own. The
 * 4-byte prefix is checked before anything is allocated for the frame.
 *
 * Back-pressure. Every frame is charged (its size) to its connection and to its core before
 * its body is read; while either budget is spent the reader pauses the socket's receive and
 * waits, so TCP pushes back on the client and nothing is buffered without bound. The charge is
 * returned when the response has been sent.
 *
 * Timeouts. With nothing in flight, a connection that sends nothing for idle_timeout_ms is
 * closed; a frame must arrive whole within frame_deadline_ms of its first byte (slowloris).
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "broker/broker.h"
#include "turbine_assert.h"

/* A received chunk, lent by the ring, shared by the requests whose frames lie in it. */
struct turbine__chunk {
    struct loom_rbuf rb;
    uint32_t refs;
    struct turbine__chunk *next_free;
};

struct turbine__conn {
    struct loom_sock sock;
    struct turbine__conn *prev, *next; /* the core's connections */
    struct turbine__conn *budget_next; /* the core's connections waiting for budget */
    struct turbine__chunk *cur;        /* the chunk being cut into frames */
    uint32_t cur_off;
    struct turbine__request *head, *tail; /* requests in order, until their response is sent */
    unsigned requests;                    /* in the FIFO */
    uint64_t inflight;                    /* bytes charged */
    struct loom_baton reader_baton;       /* budget, and the writer's end */
    struct loom_baton writer_baton;       /* a response is ready */
    bool reader_sleeping, writer_sleeping, budget_listed;
    bool reader_done; /* no more requests will come */
    bool writer_done;
    bool broken; /* a send failed or the peer is gone: drop responses */
};

struct server_core {
    int listen_fd;
    struct loom_acceptor acceptor;
    bool accepting;
    bool stopping;
    struct turbine__conn *conns;
    unsigned conn_count;
    struct turbine__conn *budget_waiters;
    uint64_t inflight;
    struct turbine__chunk *free_chunks;
    struct turbine__poll *polls;    /* long polls asleep */
    struct loom_baton *idle_waiter; /* stop waits for the last connection */
} __attribute__((aligned(64)));

static struct server_core server_cores[LOOM_CORES_MAX];

static struct server_core *sc_here(void)
{
    return &server_cores[loom_core_id()];
}

/* ---- chunks --------------------------------------------------------------------------------- */

static struct turbine__chunk *chunk_new(const struct loom_rbuf *rb)
{
    struct server_core *sc = sc_here();
    struct turbine__chunk *ch = sc->free_chunks;
    if (ch != NULL)
        sc->free_chunks = ch->next_free;
    else if ((ch = loom_alloc(sizeof(*ch))) == NULL)
        return NULL;
    ch->rb = *rb;
    ch->refs = 1;
    return ch;
}

static void chunk_put(struct turbine__chunk *ch)
{
    TURBINE_ASSERT(ch->refs > 0);
    if (--ch->refs > 0)
        return;
    loom_rbuf_release(&ch->rb);
    struct server_core *sc = sc_here();
    ch->next_free = sc->free_chunks;
    sc->free_chunks = ch;
}

/* ---- budgets -------------------------------------------------------------------------------- */

static bool budget_fits(const struct turbine__conn *c, uint64_t bytes)
{
    const struct turbine_broker_config *cfg = &turbine__broker.config;
    struct server_core *sc = sc_here();
    if (c->requests >= TURBINE_REQUESTS_PER_CONN)
        return false;
    if (c->inflight == 0 && sc->inflight == 0)
        return true; /* bytes <= max_frame_bytes <= both limits (config rules) */
    return c->inflight + bytes <= cfg->connection_inflight_bytes &&
           sc->inflight + bytes <= cfg->core_inflight_bytes;
}

static void reader_wake(struct turbine__conn *c)
{
    if (c->reader_sleeping) {
        c->reader_sleeping = false;
        loom_baton_post(&c->reader_baton);
    }
}

static void reader_sleep(struct turbine__conn *c, int64_t deadline_ns)
{
    c->reader_sleeping = true;
    if (loom_baton_wait(&c->reader_baton, deadline_ns) < 0)
        c->reader_sleeping = false;
}

static void budget_release(struct turbine__conn *c, uint64_t bytes)
{
    struct server_core *sc = sc_here();
    TURBINE_ASSERT(c->inflight >= bytes && sc->inflight >= bytes);
    c->inflight -= bytes;
    sc->inflight -= bytes;
    reader_wake(c);
    while (sc->budget_waiters != NULL) { /* they check again */
        struct turbine__conn *w = sc->budget_waiters;
        sc->budget_waiters = w->budget_next;
        w->budget_listed = false;
        reader_wake(w);
    }
}

/* Waits until `bytes` fit both budgets, with the socket's receive paused meanwhile. */
static bool budget_wait(struct turbine__conn *c, uint64_t bytes)
{
    struct server_core *sc = sc_here();
    if (budget_fits(c, bytes))
        return true;
    loom_sock_pause(&c->sock);
    while (!budget_fits(c, bytes) && !c->broken && !sc->stopping) {
        if (!c->budget_listed) {
            c->budget_listed = true;
            c->budget_next = sc->budget_waiters;
            sc->budget_waiters = c;
        }
        reader_sleep(c, LOOM_NO_DEADLINE);
    }
    if (c->budget_listed) {
        for (struct turbine__conn **l = &sc->budget_waiters; *l; l = &(*l)->budget_next) {
            if (*l == c) {
                *l = c->budget_next;
                break;
            }
        }
        c->budget_listed = false;
    }
    loom_sock_resume(&c->sock);
    return budget_fits(c, bytes);
}

void turbine__request_charge(struct turbine__request *req, uint64_t bytes)
{
    req->charged += (uint32_t)bytes;
    req->conn->inflight += bytes;
    sc_here()->inflight += bytes;
}

/* ---- responses ------------------------------------------------------------------------------ */

int turbine__respond(struct turbine__request *req, turbine__emit_fn emit, void *ctx, bool iov)
{
    struct turbine_proto_writer w;
    turbine_proto_writer_init(&w, req->resp, req->resp_cap, iov ? req->iov : NULL,
                              iov ? req->iov_cap : 0);
    emit(&w, ctx);
    if (w.error == -ENOSPC) {
        size_t need = turbine_proto_writer_needed(&w);
        size_t iov_need = iov ? turbine_proto_writer_iov_needed(&w) : 0;
        if (need > req->resp_cap) {
            uint8_t *b = malloc(need);
            if (b == NULL)
                return -ENOMEM;
            if (req->resp != req->inline_resp)
                free(req->resp);
            req->resp = b;
            req->resp_cap = need;
        }
        if (iov_need > req->iov_cap) {
            struct iovec *v = malloc(iov_need * sizeof(*v));
            if (v == NULL)
                return -ENOMEM;
            if (req->iov != req->inline_iov)
                free(req->iov);
            req->iov = v;
            req->iov_cap = iov_need;
        }
        turbine_proto_writer_init(&w, req->resp, req->resp_cap, iov ? req->iov : NULL,
                                  iov ? req->iov_cap : 0);
        emit(&w, ctx);
    }
    if (w.error != 0)
        return w.error;
    if (iov) {
        req->iov_count = w.iov_count;
    } else {
        req->iov[0] = (struct iovec){req->resp, w.used};
        req->iov_count = 1;
    }
    return 0;
}

struct error_ctx {
    const struct turbine_request_header *h;
    enum turbine_error error;
};

static void emit_error(struct turbine_proto_writer *w, void *arg)
{
    struct error_ctx *e = arg;
    turbine_error_response_encode(w, e->h->correlation_id, e->h->api_key, e->error);
}

void turbine__respond_error(struct turbine__request *req, enum turbine_error error)
{
    TURBINE_ASSERT(error != TURBINE_ERR_NONE);
    turbine__metrics_error(error);
    struct error_ctx e = {.h = &req->req.header, .error = error};
    int rc = turbine__respond(req, emit_error, &e, false);
    TURBINE_ASSERT(rc == 0); /* 12 bytes fit the inline buffer */
}

static void request_free(struct turbine__request *req)
{
    if (req->resp != req->inline_resp)
        free(req->resp);
    if (req->iov != req->inline_iov)
        free(req->iov);
    free(req->parts);
    loom_free(req);
}

void turbine__request_release_done(struct turbine__request *req)
{
    TURBINE_ASSERT(req->pending > 0);
    if (--req->pending == 0)
        request_free(req);
}

/* After the send: the frame's memory and budget go back, lent views are released. */
static void request_retire(struct turbine__request *req)
{
    struct turbine__conn *c = req->conn;
    if (req->chunk != NULL)
        chunk_put(req->chunk);
    else if (req->frame != NULL && req->frame_size <= LOOM_ALLOC_MAX)
        loom_free(req->frame);
    else
        free(req->frame);
    req->chunk = NULL;
    req->frame = NULL;
    budget_release(c, req->charged);
    req->pending = 1;
    if (req->release != NULL)
        req->release(req); /* adds to pending for each release in flight */
    turbine__request_release_done(req);
}

static void writer_wake(struct turbine__conn *c)
{
    if (c->writer_sleeping) {
        c->writer_sleeping = false;
        loom_baton_post(&c->writer_baton);
    }
}

/* Sends iov[0..n) whole, in windows of at most IOV_MAX. */
static int send_all(struct turbine__conn *c, struct iovec *iov, size_t n)
{
    const struct turbine_broker_config *cfg = &turbine__broker.config;
    int64_t deadline = cfg->idle_timeout_ms > 0
                           ? loom_deadline_in(cfg->idle_timeout_ms * LOOM_NS_PER_MS)
                           : LOOM_NO_DEADLINE;
    for (size_t i = 0; i < n;) {
        size_t k = n - i < IOV_MAX ? n - i : IOV_MAX;
        ssize_t rc = loom_sock_sendv(&c->sock, iov + i, (int)k, deadline);
        if (rc < 0)
            return (int)rc;
        i += k;
    }
    return 0;
}

#define WRITER_IOV 64

static int conn_writer(void *arg)
{
    struct turbine__conn *c = arg;
    struct iovec iov[WRITER_IOV];
    for (;;) {
        if (c->head == NULL && c->reader_done)
            break;
        if (c->head == NULL || !c->head->done) {
            c->writer_sleeping = true;
            loom_baton_wait(&c->writer_baton, LOOM_NO_DEADLINE);
            continue;
        }
        /* gather the ready responses at the head, in order. The send below suspends, and
         * the reader may append requests meanwhile: afterwards exactly the `taken` requests
         * gathered here are retired (a pointer to the first one not taken could be NULL now
         * and would retire requests still running, whose memory their owners still write). */
        size_t n = 0, taken = 0;
        struct turbine__request *end = c->head;
        while (end != NULL && end->done && n + end->iov_count <= WRITER_IOV) {
            if (!end->no_response) {
                memcpy(iov + n, end->iov, end->iov_count * sizeof(*iov));
                n += end->iov_count;
            }
            end = end->next;
            taken++;
        }
        int rc = 0;
        if (taken == 0) { /* one large response: from its own array */
            taken = 1;
            if (!c->broken)
                rc = send_all(c, c->head->iov, c->head->iov_count);
        } else if (!c->broken && n > 0) {
            rc = send_all(c, iov, n);
        }
        if (rc < 0 && !c->broken) {
            c->broken = true;
            shutdown(c->sock.fd, SHUT_RDWR); /* the reader sees the end */
        }
        for (; taken > 0; taken--) {
            struct turbine__request *r = c->head;
            TURBINE_ASSERT(r != NULL && r->done);
            c->head = r->next;
            if (c->head == NULL)
                c->tail = NULL;
            c->requests--;
            request_retire(r);
        }
    }
    c->writer_done = true;
    reader_wake(c);
    return 0;
}

/* ---- requests ------------------------------------------------------------------------------- */

static int request_run(void *arg)
{
    struct turbine__request *req = arg;
    int64_t start_ns = loom_now_ns();
    if (atomic_load(&turbine__broker.stopping) && req->req.header.api_key != TURBINE_API_HANDSHAKE)
        turbine__respond_error(req, TURBINE_ERR_SHUTTING_DOWN);
    else
        turbine__handle(req);
    turbine__metrics_request(req->req.header.api_key, loom_now_ns() - start_ns);
    req->done = true;
    writer_wake(req->conn);
    return 0;
}

static struct turbine__request *request_new(struct turbine__conn *c)
{
    struct turbine__request *req = loom_alloc(sizeof(*req));
    if (req == NULL)
        return NULL;
    memset(req, 0, offsetof(struct turbine__request, inline_resp));
    req->conn = c;
    req->resp = req->inline_resp;
    req->resp_cap = sizeof(req->inline_resp);
    req->iov = req->inline_iov;
    req->iov_cap = TURBINE_REQ_INLINE_IOV;
    return req;
}

static void request_enqueue(struct turbine__conn *c, struct turbine__request *req)
{
    req->next = NULL;
    if (c->tail != NULL)
        c->tail->next = req;
    else
        c->head = req;
    c->tail = req;
    c->requests++;
}

/* A frame that cannot be parsed past its prefix: answered, then the connection closes. */
static void answer_fatal(struct turbine__conn *c, enum turbine_error error)
{
    struct turbine__request *req = request_new(c);
    if (req == NULL)
        return;
    request_enqueue(c, req);
    turbine__respond_error(req, error);
    req->done = true;
    writer_wake(c);
}

/* ---- reading frames ------------------------------------------------------------------------- */

/* Bytes left in the current chunk, taking the next one (waiting until `deadline_ns`) when it
 * is used up. Returns > 0, 0 at end of stream, or -errno (-ETIMEDOUT). */
static ssize_t chunk_avail(struct turbine__conn *c, int64_t deadline_ns)
{
    if (c->cur != NULL) {
        if (c->cur_off < c->cur->rb.len)
            return c->cur->rb.len - c->cur_off;
        chunk_put(c->cur);
        c->cur = NULL;
    }
    struct loom_rbuf rb;
    ssize_t n = loom_sock_recv(&c->sock, &rb, deadline_ns);
    if (n <= 0)
        return n;
    c->cur = chunk_new(&rb);
    if (c->cur == NULL) {
        loom_rbuf_release(&rb);
        return -ENOMEM;
    }
    c->cur_off = 0;
    return n;
}

/* Reads the 4-byte prefix. *in_chunk says whether it lies whole in the current chunk. */
static ssize_t read_prefix(struct turbine__conn *c, uint8_t prefix[4], bool *in_chunk)
{
    const struct turbine_broker_config *cfg = &turbine__broker.config;
    size_t got = 0;
    int64_t frame_deadline = LOOM_NO_DEADLINE;
    *in_chunk = true;
    while (got < 4) {
        int64_t deadline = frame_deadline;
        if (got == 0 && cfg->idle_timeout_ms > 0)
            deadline = loom_deadline_in(cfg->idle_timeout_ms * LOOM_NS_PER_MS);
        if (sc_here()->stopping)
            return 0;
        ssize_t n = chunk_avail(c, deadline);
        if (n == -ETIMEDOUT && got == 0 && (c->head != NULL || c->requests > 0))
            continue; /* not idle: requests in flight */
        if (n <= 0)
            return n;
        if (got == 0)
            frame_deadline = loom_deadline_in(cfg->frame_deadline_ms * LOOM_NS_PER_MS);
        else
            *in_chunk = false;
        size_t take = (size_t)n < 4 - got ? (size_t)n : 4 - got;
        memcpy(prefix + got, c->cur->rb.data + c->cur_off, take);
        c->cur_off += (uint32_t)take;
        got += take;
    }
    return 4;
}

/* Reads the body of a frame of `frame_bytes` after its prefix, in place when it lies in the
 * current chunk with its prefix, else into a copy. */
static int read_body(struct turbine__conn *c, struct turbine__request *req, const uint8_t prefix[4],
                     bool prefix_in_chunk, uint32_t frame_bytes, int64_t deadline_ns)
{
    uint32_t size = 4 + frame_bytes;
    if (prefix_in_chunk && c->cur != NULL && c->cur->rb.len - c->cur_off >= frame_bytes) {
        req->frame = (uint8_t *)c->cur->rb.data + c->cur_off - 4;
        req->chunk = c->cur;
        req->frame_size = size;
        c->cur->refs++;
        c->cur_off += frame_bytes;
        return 0;
    }
    req->frame = size <= LOOM_ALLOC_MAX ? loom_alloc(size) : malloc(size);
    if (req->frame == NULL)
        return -ENOMEM;
    req->frame_size = size;
    memcpy(req->frame, prefix, 4);
    size_t got = 0;
    if (c->cur != NULL && c->cur_off < c->cur->rb.len) {
        size_t take = c->cur->rb.len - c->cur_off;
        take = take < frame_bytes ? take : frame_bytes;
        memcpy(req->frame + 4, c->cur->rb.data + c->cur_off, take);
        c->cur_off += (uint32_t)take;
        got = take;
    }
    if (got == frame_bytes)
        return 0;
    if (c->cur != NULL) { /* used up: the rest comes from the socket's queue */
        chunk_put(c->cur);
        c->cur = NULL;
    }
    ssize_t n =
        loom_sock_read(&c->sock, req->frame + 4 + got, frame_bytes - got, true, deadline_ns);
    if (n < 0)
        return (int)n;
    return (size_t)n == frame_bytes - got ? 0 : -ETIMEDOUT;
}

/* Parses and starts one request; its frame is read. */
static void request_start(struct turbine__conn *c, struct turbine__request *req)
{
    request_enqueue(c, req);
    enum turbine_error e = turbine_request_parse(req->frame, req->frame_size, &req->req);
    if (e != TURBINE_ERR_NONE && !(e == TURBINE_ERR_UNSUPPORTED_VERSION &&
                                   req->req.header.api_key == TURBINE_API_HANDSHAKE)) {
        turbine__respond_error(req, e);
        req->done = true;
        writer_wake(c);
        return;
    }
    struct loom_fiber_attr attr = {.name = "request", .stack = LOOM_STACK_MEDIUM};
    if (loom_spawn(NULL, request_run, req, &attr) < 0) {
        turbine__respond_error(req, TURBINE_ERR_UNKNOWN);
        req->done = true;
        writer_wake(c);
    }
}

/* One frame: prefix, budget, body, start. Returns 0 to go on, < 0 to close. */
static int read_frame(struct turbine__conn *c)
{
    const struct turbine_broker_config *cfg = &turbine__broker.config;
    uint8_t prefix[4];
    bool in_chunk;
    ssize_t n = read_prefix(c, prefix, &in_chunk);
    if (n <= 0)
        return n == 0 ? -ECONNRESET : (int)n;
    int64_t deadline = loom_deadline_in(cfg->frame_deadline_ms * LOOM_NS_PER_MS);
    uint32_t frame_bytes;
    enum turbine_error e = turbine_frame_prefix(prefix, (uint32_t)cfg->max_frame_bytes,
                                                TURBINE_FRAME_REQUEST, &frame_bytes);
    if (e != TURBINE_ERR_NONE) {
        answer_fatal(c, e); /* the stream cannot be followed past this prefix */
        return -EPROTO;
    }
    if (!budget_wait(c, 4ull + frame_bytes))
        return -ECANCELED;
    struct turbine__request *req = request_new(c);
    if (req == NULL)
        return -ENOMEM;
    turbine__request_charge(req, 4ull + frame_bytes);
    int rc = read_body(c, req, prefix, in_chunk, frame_bytes, deadline);
    if (rc < 0) {
        request_retire(req);
        return rc;
    }
    request_start(c, req);
    return 0;
}

static void conn_freed(struct loom_sock *sock)
{
    struct turbine__conn *c = sock->data;
    struct server_core *sc = sc_here();
    if (c->prev)
        c->prev->next = c->next;
    else
        sc->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    sc->conn_count--;
    atomic_fetch_sub(&turbine__broker.connections, 1);
    loom_baton_deinit(&c->reader_baton);
    loom_baton_deinit(&c->writer_baton);
    loom_free(c);
    if (sc->conn_count == 0 && sc->idle_waiter != NULL) {
        struct loom_baton *b = sc->idle_waiter;
        sc->idle_waiter = NULL;
        loom_baton_post(b);
    }
}

static int conn_reader(void *arg)
{
    struct turbine__conn *c = arg;
    while (!c->broken && read_frame(c) == 0) {
    }
    c->reader_done = true;
    writer_wake(c);
    while (!c->writer_done)
        reader_sleep(c, LOOM_NO_DEADLINE);
    if (c->cur != NULL) {
        chunk_put(c->cur);
        c->cur = NULL;
    }
    loom_sock_close_async(&c->sock, conn_freed);
    return 0;
}

/* ---- accepting ------------------------------------------------------------------------------ */

static void on_accept(struct loom_acceptor *a, int fd)
{
    struct server_core *sc = a->data;
    if (fd < 0) {
        if (fd != -ECANCELED)
            turbine__log(TURBINE_LOG_WARN, "server", "accept on core %u: %s", loom_core_id(),
                         strerror(-fd));
        return;
    }
    if (sc->stopping || atomic_fetch_add(&turbine__broker.connections, 1) >=
                            turbine__broker.config.max_connections) {
        if (!sc->stopping)
            atomic_fetch_sub(&turbine__broker.connections, 1);
        close(fd);
        return;
    }
    struct turbine__conn *c = loom_alloc(sizeof(*c));
    if (c == NULL) {
        atomic_fetch_sub(&turbine__broker.connections, 1);
        close(fd);
        return;
    }
    memset(c, 0, sizeof(*c));
    loom_baton_init(&c->reader_baton);
    loom_baton_init(&c->writer_baton);
    loom_socket_nodelay(fd, true);
    if (loom_sock_open(&c->sock, fd, NULL, c) < 0) {
        atomic_fetch_sub(&turbine__broker.connections, 1);
        close(fd);
        loom_free(c);
        return;
    }
    c->next = sc->conns;
    if (c->next)
        c->next->prev = c;
    sc->conns = c;
    sc->conn_count++;
    struct loom_fiber_attr rattr = {.name = "conn-reader", .stack = LOOM_STACK_SMALL};
    struct loom_fiber_attr wattr = {.name = "conn-writer", .stack = LOOM_STACK_SMALL};
    if (loom_spawn(NULL, conn_writer, c, &wattr) < 0) {
        c->writer_done = true;
        c->broken = true;
    }
    if (loom_spawn(NULL, conn_reader, c, &rattr) < 0) {
        c->reader_done = true;
        writer_wake(c); /* leaks the socket record until stop: out of memory anyway */
    }
}

int turbine__server_core_start(void *arg)
{
    const struct turbine_broker_config *cfg = &turbine__broker.config;
    struct server_core *sc = sc_here();
    memset(sc, 0, sizeof(*sc));
    sc->listen_fd = loom_listen(cfg->listen_host, (uint16_t)cfg->port, 4096, LOOM_LISTEN_REUSEPORT);
    if (sc->listen_fd < 0)
        return sc->listen_fd;
    int rc = loom_acceptor_start(&sc->acceptor, sc->listen_fd, on_accept, sc);
    if (rc < 0) {
        close(sc->listen_fd);
        sc->listen_fd = -1;
        return rc;
    }
    sc->accepting = true;
    return 0;
}

/* ---- long polls ----------------------------------------------------------------------------- */

void turbine__poll_init(struct turbine__poll *poll)
{
    memset(poll, 0, sizeof(*poll));
    loom_baton_init(&poll->baton);
}

static void poll_wake(struct turbine__poll *poll)
{
    poll->ready = true;
    if (poll->sleeping) {
        poll->sleeping = false;
        loom_baton_post(&poll->baton);
    }
}

/* A waiter's message, on the poll's core. */
static void poll_fired(struct loom_msg *msg)
{
    struct turbine__waiter *w =
        (struct turbine__waiter *)((char *)msg - offsetof(struct turbine__waiter, msg));
    w->poll->received++;
    poll_wake(w->poll);
}

bool turbine__poll_sleep(struct turbine__poll *poll, int64_t deadline_ns)
{
    struct server_core *sc = sc_here();
    if (!poll->ready && !sc->stopping) {
        poll->next = sc->polls;
        poll->prev = NULL;
        if (sc->polls)
            sc->polls->prev = poll;
        sc->polls = poll;
        poll->listed = true;
        poll->sleeping = true;
        if (loom_baton_wait(&poll->baton, deadline_ns) < 0)
            poll->sleeping = false;
        if (poll->prev)
            poll->prev->next = poll->next;
        else
            sc->polls = poll->next;
        if (poll->next)
            poll->next->prev = poll->prev;
        poll->listed = false;
    }
    bool woken = poll->ready;
    poll->ready = false;
    return woken;
}

void turbine__poll_drain(struct turbine__poll *poll)
{
    while (poll->received < poll->expected) {
        poll->sleeping = true;
        loom_baton_wait(&poll->baton, LOOM_NO_DEADLINE);
        poll->ready = false;
    }
    loom_baton_deinit(&poll->baton);
}

/* So handlers.c can arm waiters without knowing the message function. */
void turbine__waiter_init(struct turbine__waiter *w, struct turbine__poll *poll);
void turbine__waiter_init(struct turbine__waiter *w, struct turbine__poll *poll)
{
    memset(w, 0, sizeof(*w));
    w->poll = poll;
    w->home = loom_core_id();
    w->msg.fn = poll_fired;
}

/* ---- stopping ------------------------------------------------------------------------------- */

int turbine__server_core_stop(void *arg)
{
    const struct turbine_broker_config *cfg = &turbine__broker.config;
    struct server_core *sc = sc_here();
    sc->stopping = true;
    if (sc->accepting) {
        loom_acceptor_stop(&sc->acceptor);
        sc->accepting = false;
    }
    if (sc->listen_fd >= 0) {
        loom_close(sc->listen_fd);
        sc->listen_fd = -1;
    }
    for (struct turbine__poll *p = sc->polls; p; p = p->next)
        poll_wake(p); /* long polls answer now with what they have */
    /* readers stop taking frames; requests in flight finish and are answered */
    for (struct turbine__conn *c = sc->conns; c; c = c->next) {
        shutdown(c->sock.fd, SHUT_RD);
        reader_wake(c);
    }
    int64_t deadline = loom_deadline_in(cfg->shutdown_timeout_ms * LOOM_NS_PER_MS);
    while (sc->conn_count > 0) {
        struct loom_baton b;
        loom_baton_init(&b);
        sc->idle_waiter = &b;
        int rc = loom_baton_wait(&b, deadline);
        sc->idle_waiter = NULL;
        loom_baton_deinit(&b);
        if (rc < 0) {
            turbine__log(TURBINE_LOG_WARN, "server",
                         "%u connection(s) still busy after %" PRId64 " ms; closing them",
                         sc->conn_count, cfg->shutdown_timeout_ms);
            for (struct turbine__conn *c = sc->conns; c; c = c->next) {
                c->broken = true;
                shutdown(c->sock.fd, SHUT_RDWR);
            }
            deadline = LOOM_NO_DEADLINE;
        }
    }
    while (sc->free_chunks != NULL) {
        struct turbine__chunk *ch = sc->free_chunks;
        sc->free_chunks = ch->next_free;
        loom_free(ch);
    }
    return 0;
}
