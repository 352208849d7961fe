/* SPDX-License-Identifier: MIT
 * conn.c - a client's IO context: one connection to the broker, the handshake, pipelined
 * requests matched to responses in order, deadlines, reconnect with back-off, deliveries.
 *
 * The IO loop (the client's thread, or its IO fiber) connects, sends one request at a time in
 * queue order and keeps every deadline; the reader (loom IO pool READ callbacks, or a reader
 * fiber) cuts the stream into frames and completes the oldest request in flight with each.
 * A request enters `inflight` before its first byte is sent, so a response can never arrive
 * for a request the reader does not know. Any disorder (a correlation id or api key that is
 * not the oldest request's, a malformed frame, a request past its deadline on the wire) drops
 * the connection: requests marked TC_REQ_RESEND go back to the front of the queue in order,
 * the others complete with the error (the producer then decides to retry).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client_internal.h"
#include "loom/clock.h"

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

static void queue_push_front(struct tc_queue *q, struct tc_req *r)
{
    r->next = q->head;
    q->head = r;
    if (!q->tail)
        q->tail = r;
    q->count++;
}

static void queue_push(struct tc_queue *q, struct tc_req *r)
{
    r->next = NULL;
    if (q->tail)
        q->tail->next = r;
    else
        q->head = r;
    q->tail = r;
    q->count++;
}

static struct tc_req *queue_pop(struct tc_queue *q)
{
    struct tc_req *r = q->head;
    if (r) {
        q->head = r->next;
        if (!q->head)
            q->tail = NULL;
        q->count--;
        r->next = NULL;
    }
    return r;
}

/* Completes `r` (lock held) and frees it; `frame` passes to r->fn. */
static void req_complete(struct turbine_client *c, struct tc_req *r, int rc, uint8_t *frame,
                         size_t size)
{
    if (rc == -ETIMEDOUT)
        c->stats.timeouts++;
    if (r == c->sending) {
        /* the IO thread is still in sendmsg() with this request's iovecs, which point into
         * memory the completion frees (a producer batch): send_one() completes it after */
        TURBINE_ASSERT(!r->deferred);
        r->deferred = true;
        r->deferred_rc = rc;
        r->deferred_frame = frame;
        r->deferred_size = size;
        return;
    }
    r->fn(c, r->ctx, rc, frame, size);
    r->fn = NULL;
    tc_req_free(r);
}

/* ---- deliveries --------------------------------------------------------------------------- */

bool tc_deliver(struct turbine_client *c)
{
    /* One deliverer at a time, so callbacks keep the order in which batches finished. */
    if (c->delivering || !c->done_head)
        return false;
    c->delivering = true;
    while (c->done_head) {
        struct tp_batch *list = c->done_head;
        c->done_head = c->done_tail = NULL;
        tc_unlock(c);
        tc_set_in_callback(true);
        for (struct tp_batch *b = list; b; b = b->next) {
            for (int32_t i = 0; i < b->count; i++) {
                struct tp_rec *rec = &b->recs[i];
                struct turbine_delivery d = {
                    .topic = NULL, /* set below: the topic outlives its batches */
                    .partition = b->partition,
                    .offset = b->error == 0 && b->base_offset >= 0 ? b->base_offset + i : -1,
                    .timestamp = rec->timestamp,
                    .error = b->error,
                };
                d.topic = tp_topic_name(b->topic);
                if (rec->fn)
                    rec->fn(&d, rec->arg);
                if (rec->future)
                    rec->future->result = d;
            }
        }
        tc_set_in_callback(false);
        tc_lock(c);
        while (list) {
            struct tp_batch *next = list->next;
            tp_batch_delivered(c, list);
            list = next;
        }
        tc_broadcast(c);
    }
    c->delivering = false;
    return true;
}

/* ---- the handshake ------------------------------------------------------------------------ */

static void handshake_encode(struct turbine_proto_writer *w, void *ctx)
{
    struct turbine_client *c = ctx;
    const struct turbine_api_versions *ours = turbine_proto_versions();
    struct turbine_handshake_request head = {.client_id = c->client_id,
                                             .client_id_size = (uint16_t)strlen(c->client_id),
                                             .api_count = TURBINE_API_COUNT};
    turbine_handshake_request_begin(w, 0, &head);
    for (unsigned i = 0; i < TURBINE_API_COUNT; i++)
        turbine_handshake_add_api(w, &ours[i]);
}

static void handshake_done(struct turbine_client *c, void *ctx, int rc, uint8_t *frame, size_t size)
{
    if (rc < 0)
        return; /* the connection is being dropped; it tells why */
    struct turbine_response resp;
    struct turbine_handshake_response hs;
    enum turbine_error e = turbine_response_parse(frame, size, &resp);
    if (e == TURBINE_ERR_NONE)
        e = turbine_handshake_response_decode(&resp, &hs);
    if (e != TURBINE_ERR_NONE) {
        c->conn_error = -EPROTO;
        free(frame);
        return;
    }
    const struct turbine_api_versions *ours = turbine_proto_versions();
    for (uint16_t k = 0; k < TURBINE_API_COUNT; k++)
        c->versions[k] = (int16_t)turbine_handshake_negotiate(ours, TURBINE_API_COUNT, hs.apis, k);
    c->max_frame = hs.max_frame_bytes;
    free(frame);
    c->state = TC_READY;
    c->backoff_ms = c->config.reconnect_backoff_ms;
    c->last_error = 0;
    c->stats.connects++;
    tc_broadcast(c);
}

/* ---- transport: thread mode (plain socket, reads through the IO pool) ---------------------- */

static int sockaddr_of(const struct turbine_client *c, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, c->host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(c->config.port);
        *len = sizeof(*v4);
        return 0;
    }
    if (inet_pton(AF_INET6, c->host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(c->config.port);
        *len = sizeof(*v6);
        return 0;
    }
    return -EINVAL;
}

static int thread_connect(struct turbine_client *c, int64_t deadline_ns)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int rc = sockaddr_of(c, &ss, &len);
    if (rc < 0)
        return rc;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    rc = connect(fd, (struct sockaddr *)&ss, len) == 0 ? 0 : -errno;
    if (rc == -EINPROGRESS) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int64_t left_ms = (deadline_ns - tc_now_ns()) / TC_NS_PER_MS;
        int n = poll(&p, 1, left_ms < 0 ? 0 : (int)min64(left_ms + 1, INT32_MAX));
        int err = 0;
        socklen_t elen = sizeof(err);
        if (n == 0)
            rc = -ETIMEDOUT;
        else if (n < 0)
            rc = -errno;
        else
            rc = getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) == 0 ? -err : -errno;
    }
    if (rc < 0) {
        close(fd);
        return rc;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* blocking for the IO pool's reads; sends do not block (thread_send) */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    return fd;
}

static void conn_rx(struct turbine_client *c, const uint8_t *data, size_t len);
static void conn_rx_end(struct turbine_client *c, int rc);

static void read_callback(struct loom_iopool_req *req, int32_t res);

static int read_submit(struct turbine_client *c)
{
    loom_iopool_prep_read(&c->read_req, c->fd, c->read_buf, TC_RX_CHUNK, (uint64_t)-1);
    return loom_iopool_submit(c->pool, &c->read_req, read_callback, c);
}

/* An IO pool thread: bytes arrived, or the stream ended. */
static void read_callback(struct loom_iopool_req *req, int32_t res)
{
    struct turbine_client *c = req->data;
    if (res == -EINTR || res == -EAGAIN)
        res = read_submit(c) == 0 ? 1 : -ESHUTDOWN;
    else if (res > 0) {
        tc_lock(c);
        conn_rx(c, c->read_buf, (size_t)res);
        tc_deliver(c);
        tc_unlock(c);
        res = read_submit(c);
        if (res == 0)
            return;
    }
    if (res <= 0) {
        tc_lock(c);
        conn_rx_end(c, res);
        tc_unlock(c);
    }
}

/* Once the last byte is sent the response may arrive and the reader free `r`: nothing of
 * `r` is read after the frame is complete (loom_sock_sendv is alike). The send ends at
 * r->deadline_ns however slowly the peer reads (-ETIMEDOUT): the lock is dropped meanwhile,
 * so nothing else in the IO loop can time it out. */
static ssize_t thread_send(struct turbine_client *c, struct tc_req *r)
{
    struct iovec iov[64];
    int n = r->iov_count;
    size_t done = 0, total = r->size;
    int64_t deadline = r->deadline_ns;
    while (done < total) {
        /* Build the iovec of what is left (frames are rarely split). */
        size_t skip = done, k = 0;
        for (int i = 0; i < n && k < 64; i++) {
            if (skip >= r->iov[i].iov_len) {
                skip -= r->iov[i].iov_len;
                continue;
            }
            iov[k].iov_base = (uint8_t *)r->iov[i].iov_base + skip;
            iov[k].iov_len = r->iov[i].iov_len - skip;
            skip = 0;
            k++;
        }
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = k};
        ssize_t w = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int timeout_ms = -1;
            if (deadline != LOOM_NO_DEADLINE) {
                int64_t left_ms = (deadline - tc_now_ns() + TC_NS_PER_MS - 1) / TC_NS_PER_MS;
                if (left_ms <= 0)
                    return -ETIMEDOUT;
                timeout_ms = (int)min64(left_ms, INT32_MAX);
            }
            struct pollfd p = {.fd = c->fd, .events = POLLOUT};
            if (poll(&p, 1, timeout_ms) < 0 && errno != EINTR)
                return -errno;
            continue; /* writable, closed (sendmsg says how) or out of time (checked above) */
        }
        if (w < 0)
            return -errno;
        if (w == 0)
            return -EPIPE;
        done += (size_t)w;
    }
    return (ssize_t)done;
}

/* ---- transport: fiber mode (loom/net.h) ---------------------------------------------------- */

static int reader_fiber_main(void *arg)
{
    struct turbine_client *c = arg;
    for (;;) {
        struct loom_rbuf rb;
        ssize_t n = loom_sock_recv(&c->sock, &rb, LOOM_NO_DEADLINE);
        if (n <= 0) {
            tc_lock(c);
            conn_rx_end(c, (int)n);
            tc_unlock(c);
            return 0;
        }
        tc_lock(c);
        conn_rx(c, (const uint8_t *)rb.data, rb.len);
        loom_rbuf_release(&rb);
        tc_deliver(c);
        tc_unlock(c);
    }
}

static int fiber_connect(struct turbine_client *c, int64_t deadline_ns)
{
    int fd = loom_connect(c->host, c->config.port, deadline_ns);
    if (fd < 0)
        return fd;
    memset(&c->sock, 0, sizeof(c->sock));
    int rc = loom_sock_open(&c->sock, fd, NULL, NULL);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fd;
}

/* ---- transport: both modes ---------------------------------------------------------------- */

static int transport_connect(struct turbine_client *c, int64_t deadline_ns)
{
    return c->fiber ? fiber_connect(c, deadline_ns) : thread_connect(c, deadline_ns);
}

static int transport_start_reader(struct turbine_client *c)
{
    c->reader_active = true;
    int rc;
    if (c->fiber) {
        struct loom_fiber_attr attr = {
            .name = "turbine-reader", .stack = LOOM_STACK_MEDIUM, .joinable = true};
        rc = loom_spawn(&c->reader_fiber, reader_fiber_main, c, &attr);
    } else {
        rc = read_submit(c);
    }
    if (rc < 0)
        c->reader_active = false;
    return rc;
}

static ssize_t transport_send(struct turbine_client *c, struct tc_req *r)
{
    if (!c->fiber)
        return thread_send(c, r);
    return loom_sock_sendv(&c->sock, r->iov, r->iov_count, r->deadline_ns);
}

/* Stops the reader and closes the socket. Lock held; dropped while waiting. */
static void transport_close(struct turbine_client *c)
{
    /* shutdown(2) ends a read waiting in the kernel (pool READ or multishot receive) with end
     * of stream, so the reader reports and stops. */
    shutdown(c->fd, SHUT_RDWR);
    while (c->reader_active)
        tc_wait(c, LOOM_NO_DEADLINE);
    tc_unlock(c);
    if (c->fiber) {
        loom_fiber_join(c->reader_fiber, LOOM_NO_DEADLINE, NULL);
        c->reader_fiber = NULL;
        loom_sock_close(&c->sock);
    } else {
        close(c->fd);
    }
    tc_lock(c);
    c->fd = -1;
}

/* ---- receiving ---------------------------------------------------------------------------- */

static void conn_fail(struct turbine_client *c, int rc)
{
    TURBINE_ASSERT(rc < 0);
    if (c->conn_error == 0)
        c->conn_error = rc;
    if (c->fd >= 0)
        shutdown(c->fd, SHUT_RDWR); /* no more frames: the stream is not to be trusted */
    tc_broadcast(c);
}

static void frame_handle(struct turbine_client *c, const uint8_t *data, size_t size)
{
    struct turbine_response resp;
    if (turbine_response_parse(data, size, &resp) != TURBINE_ERR_NONE) {
        conn_fail(c, -EPROTO);
        return;
    }
    struct tc_req *head = c->inflight.head;
    if (!head || head->corr != resp.correlation_id || head->api_key != resp.api_key ||
        (head->flags & TC_REQ_NO_RESPONSE)) {
        conn_fail(c, -EPROTO);
        return;
    }
    uint8_t *copy = malloc(size);
    if (!copy) {
        conn_fail(c, -ENOMEM);
        return;
    }
    memcpy(copy, data, size);
    queue_pop(&c->inflight);
    c->stats.responses++;
    req_complete(c, head, 0, copy, size);
    tc_broadcast(c); /* a slot in flight is free */
}

static void conn_rx(struct turbine_client *c, const uint8_t *data, size_t len)
{
    if (c->conn_error)
        return; /* being dropped: what follows a bad frame means nothing */
    if (c->rx_used + len > c->rx_cap) {
        size_t cap = c->rx_cap ? c->rx_cap : 64 * 1024;
        while (cap < c->rx_used + len)
            cap *= 2;
        uint8_t *rx = realloc(c->rx, cap);
        if (!rx) {
            conn_fail(c, -ENOMEM);
            return;
        }
        c->rx = rx;
        c->rx_cap = cap;
    }
    memcpy(c->rx + c->rx_used, data, len);
    c->rx_used += len;
    size_t at = 0;
    while (c->rx_used - at >= TURBINE_PROTO_PREFIX_SIZE && !c->conn_error) {
        uint32_t frame_bytes;
        /* Responses may exceed the broker's request limit (fetches): allow twice it. */
        uint32_t limit = c->max_frame > UINT32_MAX / 2 ? UINT32_MAX : c->max_frame * 2;
        if (turbine_frame_prefix(c->rx + at, limit, TURBINE_FRAME_RESPONSE, &frame_bytes) !=
            TURBINE_ERR_NONE) {
            conn_fail(c, -EPROTO);
            break;
        }
        size_t size = TURBINE_PROTO_PREFIX_SIZE + (size_t)frame_bytes;
        if (c->rx_used - at < size)
            break;
        frame_handle(c, c->rx + at, size);
        at += size;
    }
    memmove(c->rx, c->rx + at, c->rx_used - at);
    c->rx_used -= at;
}

static void conn_rx_end(struct turbine_client *c, int rc)
{
    conn_fail(c, rc < 0 ? rc : -ECONNRESET);
    c->reader_active = false;
    tc_broadcast(c);
}

/* ---- the IO loop -------------------------------------------------------------------------- */

static int64_t backoff_next(struct turbine_client *c)
{
    int64_t wait = c->backoff_ms;
    c->backoff_ms = min64(c->backoff_ms * 2, c->config.reconnect_backoff_max_ms);
    return tc_now_ns() + wait * TC_NS_PER_MS;
}

/* Connects and queues the handshake. Lock held; dropped during the connect. */
static void conn_open(struct turbine_client *c)
{
    TURBINE_ASSERT(c->state == TC_DOWN);
    c->state = TC_CONNECTING;
    tc_unlock(c);
    int fd = transport_connect(c, tc_deadline_ms(c->config.connect_timeout_ms));
    tc_lock(c);
    struct tc_req *hs = NULL;
    int rc = fd;
    if (fd >= 0) {
        c->fd = fd;
        c->rx_used = 0;
        c->conn_error = 0;
        rc = tc_encode(handshake_encode, c, false, &hs);
        if (rc == 0)
            rc = transport_start_reader(c);
        if (rc < 0) {
            if (hs)
                tc_req_free(hs);
            if (c->fiber)
                loom_sock_close(&c->sock);
            else
                close(fd);
            c->fd = -1;
        }
    }
    if (rc < 0) {
        c->last_error = rc;
        c->stats.connect_errors++;
        c->state = TC_DOWN;
        c->reconnect_at_ns = backoff_next(c);
        tc_broadcast(c);
        return;
    }
    hs->fn = handshake_done;
    hs->ctx = NULL;
    hs->deadline_ns = tc_deadline_ms(c->config.connect_timeout_ms);
    queue_push_front(&c->queue, hs);
    c->state = TC_HANDSHAKE;
}

/* Drops the connection: requests in flight are resent or failed, then back-off. */
static void conn_drop(struct turbine_client *c)
{
    int err = c->conn_error ? c->conn_error : -ECONNRESET;
    bool was_ready = c->state == TC_READY;
    c->state = TC_CONNECTING; /* nothing is sent meanwhile */
    transport_close(c);
    /* Requests in flight: past their deadline they fail with -ETIMEDOUT; the others are sent
     * again (TC_REQ_RESEND, before everything queued, in their order) or fail with `err`. */
    int64_t now = tc_now_ns();
    struct tc_queue resend = {0}, failed = {0};
    for (struct tc_req *r; (r = queue_pop(&c->inflight));) {
        if ((r->flags & TC_REQ_RESEND) && r->deadline_ns > now)
            queue_push(&resend, r);
        else
            queue_push(&failed, r);
    }
    /* An unsent handshake stays at the queue front: take it out. */
    if (c->queue.head && c->queue.head->fn == handshake_done)
        queue_push(&failed, queue_pop(&c->queue));
    if (resend.head) {
        c->stats.resends += resend.count;
        resend.tail->next = c->queue.head;
        if (!c->queue.tail)
            c->queue.tail = resend.tail;
        c->queue.head = resend.head;
        c->queue.count += resend.count;
    }
    for (struct tc_req *r; (r = queue_pop(&failed));)
        req_complete(c, r, r->deadline_ns <= now ? -ETIMEDOUT : err, NULL, 0);
    c->rx_used = 0;
    c->conn_error = 0;
    c->last_error = err;
    if (was_ready)
        c->stats.disconnects++;
    else
        c->stats.connect_errors++;
    c->state = TC_DOWN;
    c->reconnect_at_ns = backoff_next(c);
    tc_broadcast(c);
}

/* Fails requests past their deadline; returns the earliest deadline left. */
static int64_t expire(struct turbine_client *c, int64_t now)
{
    int64_t next = LOOM_NO_DEADLINE;
    struct tc_req **link = &c->queue.head, *prev = NULL;
    while (*link) {
        struct tc_req *r = *link;
        if (r->deadline_ns <= now && r->fn != handshake_done) {
            *link = r->next;
            if (c->queue.tail == r)
                c->queue.tail = prev;
            c->queue.count--;
            r->next = NULL;
            req_complete(c, r, -ETIMEDOUT, NULL, 0);
            continue;
        }
        next = min64(next, r->deadline_ns);
        prev = r;
        link = &r->next;
    }
    for (struct tc_req *r = c->inflight.head; r; r = r->next) {
        if (r->deadline_ns <= now) {
            /* A late response would be out of step: fail this one, drop the connection. */
            conn_fail(c, -ETIMEDOUT);
            return now;
        }
        next = min64(next, r->deadline_ns);
    }
    return next;
}

/* The next request to send, or NULL. */
static struct tc_req *next_send(struct turbine_client *c)
{
    for (;;) {
        struct tc_req *r = c->queue.head;
        if (!r || c->inflight.count >= c->config.max_in_flight)
            return NULL;
        if (c->state == TC_HANDSHAKE && r->fn != handshake_done)
            return NULL;
        if (c->state != TC_HANDSHAKE && c->state != TC_READY)
            return NULL;
        queue_pop(&c->queue);
        if (c->state == TC_READY && c->versions[r->api_key] < 0) {
            req_complete(c, r, TURBINE_CLIENT_ERR(TURBINE_ERR_UNSUPPORTED_VERSION), NULL, 0);
            continue;
        }
        if (r->size - TURBINE_PROTO_PREFIX_SIZE > c->max_frame) {
            req_complete(c, r, -EMSGSIZE, NULL, 0);
            continue;
        }
        return r;
    }
}

static void send_one(struct turbine_client *c, struct tc_req *r)
{
    uint32_t corr = c->next_corr++;
    r->corr = corr;
    uint8_t *p = r->buf + TURBINE_PROTO_REQ_OFF_CORRELATION;
    p[0] = (uint8_t)(corr >> 24), p[1] = (uint8_t)(corr >> 16);
    p[2] = (uint8_t)(corr >> 8), p[3] = (uint8_t)corr;
    bool respond = !(r->flags & TC_REQ_NO_RESPONSE);
    if (respond)
        queue_push(&c->inflight, r); /* before the first byte: the reader must know it */
    c->sending = r;
    tc_unlock(c);
    ssize_t rc = transport_send(c, r);
    tc_lock(c);
    c->sending = NULL;
    c->stats.requests_sent++;
    if (r->deferred) { /* answered (or failed) while we were still sending */
        r->fn(c, r->ctx, r->deferred_rc, r->deferred_frame, r->deferred_size);
        r->fn = NULL;
        tc_req_free(r);
        if (rc < 0)
            conn_fail(c, (int)rc);
        return;
    }
    if (rc < 0) {
        if (!respond)
            queue_push_front(&c->queue, r);
        conn_fail(c, (int)rc);
        return;
    }
    if (!respond)
        req_complete(c, r, 0, NULL, 0);
}

static void io_loop(struct turbine_client *c)
{
    tc_lock(c);
    while (!c->closing) {
        int64_t now = tc_now_ns();
        if (c->state == TC_DOWN) {
            if (now >= c->reconnect_at_ns) {
                conn_open(c);
                continue;
            }
        } else if (c->conn_error) {
            conn_drop(c);
            continue;
        }
        int64_t next = expire(c, now);
        if (c->conn_error)
            continue;
        tp_collect(c, now, &next);
        struct tc_req *r = next_send(c);
        if (r) {
            send_one(c, r);
            continue;
        }
        /* Delivering drops the lock: a response or a flush that came meanwhile broadcast to no
         * waiter, and the state read above is stale. Look again rather than sleep on it. */
        if (tc_deliver(c))
            continue;
        if (c->state == TC_DOWN)
            next = min64(next, c->reconnect_at_ns);
        if (!c->closing && !c->conn_error)
            tc_wait(c, next);
    }
    if (c->state != TC_DOWN && c->fd >= 0) {
        c->conn_error = c->conn_error ? c->conn_error : -ECANCELED;
        conn_drop(c);
    }
    for (struct tc_req *r; (r = queue_pop(&c->queue));)
        req_complete(c, r, -ECANCELED, NULL, 0);
    tc_deliver(c);
    tc_unlock(c);
}

static void *io_thread_main(void *arg)
{
    io_loop(arg);
    return NULL;
}

static int io_fiber_main(void *arg)
{
    io_loop(arg);
    return 0;
}

int tc_io_start(struct turbine_client *c)
{
    if (c->fiber) {
        struct loom_fiber_attr attr = {
            .name = "turbine-io", .stack = LOOM_STACK_MEDIUM, .joinable = true};
        return loom_spawn(&c->io_fiber, io_fiber_main, c, &attr);
    }
    int rc = pthread_create(&c->io_thread, NULL, io_thread_main, c);
    if (rc != 0)
        return -rc;
    c->io_thread_started = true;
    return 0;
}

void tc_io_join(struct turbine_client *c)
{
    if (c->fiber) {
        loom_fiber_join(c->io_fiber, LOOM_NO_DEADLINE, NULL);
        c->io_fiber = NULL;
    } else if (c->io_thread_started) {
        pthread_join(c->io_thread, NULL);
        c->io_thread_started = false;
    }
}
