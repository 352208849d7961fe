/* SPDX-License-Identifier: MIT
 * net.c - TCP: listen, multishot accept, connect, multishot receive into the core's
 * provided-buffer ring, send, zero-copy send, half-close and close.
 *
 * Received chunks are queued on their socket by buffer id: the core keeps one `next` link and
 * one length per buffer, so a socket only holds the ids of its first and last chunk and an
 * idle socket holds no buffer at all. A buffer goes back to the ring when the reader releases
 * it (or when the socket closes); then sockets that ran dry (-ENOBUFS) are re-armed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <valgrind/memcheck.h>

#include "internal.h"
#include "loom/net.h"

#define NO_BUF 0xffffu

enum {
    S_ARMED = 1u << 0,       /* the multishot receive is in flight */
    S_PAUSED = 1u << 1,      /* loom_sock_pause() */
    S_AUTOPAUSED = 1u << 2,  /* over its receive limit */
    S_EOF = 1u << 3,         /* the peer's end of stream arrived */
    S_CLOSING = 1u << 4,     /* loom_sock_close*() began */
    S_CLOSE_ASYNC = 1u << 5, /* ... with a callback */
    S_CLOSED = 1u << 6,
    S_WAIT_BUFS = 1u << 7, /* on the re-arm list (the ring ran dry) */
    S_OPEN = 1u << 8,
    S_PEER_KNOWN = 1u << 9, /* S_LOOPBACK is valid */
    S_LOOPBACK = 1u << 10,
    S_NOTIFY = 1u << 11, /* on the core's notify list */
};

enum { A_ARMED = 1, A_STOPPING = 2, A_PAUSED = 4, A_STARTED = 8 };

#define GROUPS_MAX 16

struct loom__net {
    /* receive buffers: count = groups_max * group_size, reserved at start; group g (a buffer
     * ring of its own, buffer group id g) holds global ids [g * group_size, (g+1) * group_size)
     * and is registered only when the groups before it ran dry */
    struct loom__bufring *rings[GROUPS_MAX];
    uint32_t ring_free[GROUPS_MAX]; /* buffers of the group the kernel has not yet used */
    unsigned groups, groups_max;
    uint32_t group_size;
    char *bufs;
    uint32_t buf_size, count;
    uint16_t *next;
    uint32_t *len;
    struct loom_sock *rearm_head, *rearm_tail;
    struct loom_sock *notify_head, *notify_tail; /* sockets with news from this CQE batch */
    size_t zc_threshold;
    struct loom_net_stats stats;
};

static struct loom__net *net_of(struct loom__reactor *r)
{
    LOOM_ASSERTF(r->net != NULL, "network IO used before the core's network layer started");
    return r->net;
}

/* ---- per core ------------------------------------------------------------------------------- */

/* Registers the next buffer group and gives it all its buffers. */
static int group_add(struct loom__reactor *r, struct loom__net *n)
{
    LOOM_ASSERT(n->groups < n->groups_max);
    unsigned g = n->groups;
    int rc = loom__bufring_create(r, (uint16_t)g, n->group_size, &n->rings[g]);
    if (rc < 0) {
        loom__log("error", "core %u: registering receive buffer group %u failed: %s", r->core, g,
                  strerror(-rc));
        return rc;
    }
    uint32_t base = g * n->group_size;
    for (uint32_t i = 0; i < n->group_size; i++)
        loom__bufring_add(n->rings[g], n->bufs + (size_t)(base + i) * n->buf_size, n->buf_size,
                          (uint16_t)i);
    loom__bufring_publish(n->rings[g]);
    n->ring_free[g] = n->group_size;
    n->groups++;
    n->stats.buffers = n->groups * n->group_size;
    n->stats.groups = n->groups;
    return 0;
}

/* The group a receive should be armed on: the lowest with buffers left (a compact working
 * set stays in cache), or a new one while the budget has more; -1 when all are dry. */
static int group_pick(struct loom__reactor *r, struct loom__net *n)
{
    for (unsigned g = 0; g < n->groups; g++)
        if (n->ring_free[g] > 0)
            return (int)g;
    if (n->groups < n->groups_max && group_add(r, n) == 0)
        return (int)n->groups - 1;
    return -1;
}

int loom__net_core_init(struct loom__reactor *r)
{
    struct loom__net *n = loom__arena_carve(r, sizeof(*n), LOOM_CACHELINE);
    if (!n)
        return -ENOMEM;
    memset(n, 0, sizeof(*n));
    r->net = n;
    n->zc_threshold = loom__rt.config.zc_threshold;
    size_t size = loom__rt.config.net_buffer_size;
    size_t bytes = loom__rt.config.net_buffer_bytes;
    uint32_t count = 1;
    while ((size_t)count * 2 * size <= bytes && count < 32768)
        count *= 2;
    if ((size_t)count * size > bytes)
        return 0; /* no receive buffers: loom_sock_open() fails with -ENOBUFS */
    n->bufs = loom__arena_carve(r, (size_t)count * size, 4096);
    n->next = loom__arena_carve(r, count * sizeof(*n->next), 64);
    n->len = loom__arena_carve(r, count * sizeof(*n->len), 64);
    if (!n->bufs || !n->next || !n->len) {
        loom__log("error",
                  "core %u: the memory budget cannot hold %u receive buffers of %zu bytes "
                  "(--net-buffers, --memory)",
                  r->core, count, size);
        return -ENOMEM;
    }
    n->buf_size = (uint32_t)size;
    n->count = count;
    uint32_t group = loom__rt.config.net_buffer_group;
    if (group == 0 || group > count)
        group = count;
    while (count / group > GROUPS_MAX)
        group *= 2;
    n->group_size = group;
    n->groups_max = count / group;
    n->stats.buffer_size = (uint32_t)size;
    int rc = group_add(r, n);
    if (rc < 0)
        return rc;
    return 0;
}

void loom__net_core_deinit(struct loom__reactor *r)
{
    r->net = NULL; /* arena memory; the ring goes with the io_uring */
}

void loom_net_stats_get(struct loom_net_stats *out)
{
    *out = net_of(loom__reactor())->stats;
}

/* ---- addresses, listen, connect ------------------------------------------------------------ */

static int parse_addr(const char *host, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof(*ss));
    if (!host || !*host)
        host = "0.0.0.0";
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        *len = sizeof(*v4);
        return 0;
    }
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        *len = sizeof(*v6);
        return 0;
    }
    loom__log("error", "'%s' is not a numeric IPv4 or IPv6 address", host);
    return -EINVAL;
}

/* A TCP socket of host's family, with host:port parsed into *ss. Returns the fd or -errno. */
static int tcp_socket(const char *host, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
    int rc = parse_addr(host, port, ss, len);
    if (rc < 0)
        return rc;
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
    return fd < 0 ? -errno : fd;
}

int loom_listen(const char *host, uint16_t port, int backlog, unsigned flags)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int fd = tcp_socket(host, port, &ss, &len);
    if (fd < 0)
        return fd;
    int rc, one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        ((flags & LOOM_LISTEN_REUSEPORT) &&
         setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) ||
        bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, backlog > 0 ? backlog : 4096) < 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

int loom_socket_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return -errno;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -EAFNOSUPPORT;
}

int loom_socket_nodelay(int fd, bool on)
{
    int v = on;
    return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, sizeof(v)) < 0 ? -errno : 0;
}

int loom_socket_keepalive(int fd, int idle_s, int interval_s, int count)
{
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)) < 0)
        return -errno;
    if (idle_s > 0 && setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle_s, sizeof(idle_s)) < 0)
        return -errno;
    if (interval_s > 0 &&
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval_s, sizeof(interval_s)) < 0)
        return -errno;
    if (count > 0 && setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof(count)) < 0)
        return -errno;
    return 0;
}

/* ---- one op, waited for by a fiber -------------------------------------------------------- */

static void op_wake(struct loom_op *op)
{
    loom__baton_post_local(loom__self, op->data);
}

/* Starts the prepared `op` and waits for its final completion; at the deadline the op is
 * cancelled and still awaited. Returns the result, -ETIMEDOUT when cancelled by the deadline. */
static int32_t op_wait(struct loom_op *op, int64_t deadline_ns)
{
    struct loom__reactor *r = loom__reactor();
    LOOM_ASSERTF(r->current != NULL, "a blocking loom network call outside a fiber");
    struct loom_baton baton = {.core = (uint16_t)r->core, .state = LOOM_BATON_IDLE};
    op->fn = op_wake;
    op->data = &baton;
    op->state = LOOM_OP_IDLE;
    loom__op_start(r, op);
    int rc = loom_baton_wait(&baton, deadline_ns);
    if (rc == -ETIMEDOUT) {
        (void)loom_op_cancel(op);
        rc = loom_baton_wait(&baton, LOOM_NO_DEADLINE);
        LOOM_ASSERT(rc == 0);
        baton.state = LOOM_BATON_DEAD;
        return op->res == -ECANCELED || op->res == -EINTR ? -ETIMEDOUT : op->res;
    }
    baton.state = LOOM_BATON_DEAD;
    return op->res;
}

int loom_connect(const char *host, uint16_t port, int64_t deadline_ns)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int fd = tcp_socket(host, port, &ss, &len);
    if (fd < 0)
        return fd;
    struct loom_op op;
    memset(&op, 0, sizeof(op));
    loom__prep_connect(&op, fd, (struct sockaddr *)&ss, len);
    int rc = op_wait(&op, deadline_ns);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    (void)loom_socket_nodelay(fd, true);
    return fd;
}

/* ---- accept --------------------------------------------------------------------------------- */

static void acceptor_arm(struct loom__reactor *r, struct loom_acceptor *a);

static void acceptor_retry(struct loom_timer *timer, void *arg)
{
    (void)timer;
    struct loom_acceptor *a = arg;
    if (!(a->state & (A_STOPPING | A_ARMED | A_PAUSED)))
        acceptor_arm(loom__self, a);
}

static void acceptor_cqe(struct loom_op *op)
{
    struct loom_acceptor *a = (struct loom_acceptor *)op;
    struct loom__reactor *r = loom__self;
    bool more = loom__cqe_more(op->cqe_flags);
    int32_t res = op->res;
    if (!more)
        a->state &= (uint16_t)~A_ARMED;
    if (res >= 0) {
        net_of(r)->stats.accepted++;
        if (a->state & A_STOPPING) {
            close(res);
        } else if (a->fn) {
            a->fn(a, res);
        } else {
            if (a->count == LOOM_ACCEPT_QUEUE) {
                /* CQEs that were already on their way when the accept paused */
                loom__log("warning", "accept queue full: dropping connection fd %d", res);
                close(res);
            } else {
                a->queue[(a->head + a->count) % LOOM_ACCEPT_QUEUE] = res;
                a->count++;
            }
            if (a->count >= LOOM_ACCEPT_QUEUE / 2 && (a->state & A_ARMED) &&
                !(a->state & A_PAUSED)) {
                a->state |= A_PAUSED; /* full: stop accepting until loom_accept() takes some */
                (void)loom_op_cancel(&a->op);
            }
        }
    } else if (res != -ECANCELED && !(a->state & A_STOPPING)) {
        /* -EMFILE, -ENFILE, -ENOBUFS...: report, then try again a little later */
        if (a->fn)
            a->fn(a, res);
        else
            a->error = res;
        if (!more && !loom_timer_is_armed(&a->retry))
            loom_timer_start(&a->retry, loom_now_ns() + 10 * LOOM_NS_PER_MS, acceptor_retry, a);
    }
    if (!(a->state & A_ARMED) && !(a->state & (A_STOPPING | A_PAUSED)) &&
        !loom_timer_is_armed(&a->retry))
        acceptor_arm(r, a);
    if (a->waiter && (a->count || a->error || !(a->state & A_ARMED))) {
        struct loom_baton *w = a->waiter;
        a->waiter = NULL;
        loom__baton_post_local(r, w);
    }
}

static void acceptor_arm(struct loom__reactor *r, struct loom_acceptor *a)
{
    a->op.fn = acceptor_cqe;
    a->op.data = a;
    loom__prep_accept_multishot(&a->op, a->listen_fd);
    a->state |= A_ARMED;
    loom__op_start(r, &a->op);
}

int loom_acceptor_start(struct loom_acceptor *a, int listen_fd, loom_accept_fn fn, void *data)
{
    struct loom__reactor *r = loom__reactor();
    if (listen_fd < 0)
        return -EBADF;
    memset(a, 0, sizeof(*a));
    a->listen_fd = listen_fd;
    a->fn = fn;
    a->data = data;
    a->state = A_STARTED;
    loom_timer_init(&a->retry);
    acceptor_arm(r, a);
    return 0;
}

int loom_accept(struct loom_acceptor *a, int64_t deadline_ns)
{
    struct loom__reactor *r = loom__reactor();
    LOOM_ASSERTF(a->fn == NULL, "loom_accept() on an acceptor with a callback");
    for (;;) {
        if (a->count) {
            int fd = a->queue[a->head];
            a->head = (uint16_t)((a->head + 1) % LOOM_ACCEPT_QUEUE);
            a->count--;
            if ((a->state & A_PAUSED) && !(a->state & A_ARMED)) {
                a->state &= (uint16_t)~A_PAUSED;
                acceptor_arm(r, a);
            } else {
                a->state &= (uint16_t)~A_PAUSED; /* the cancel's CQE re-arms */
            }
            return fd;
        }
        if (a->error) {
            int err = a->error;
            a->error = 0;
            return err;
        }
        if (a->state & A_STOPPING)
            return -ECANCELED;
        struct loom_baton baton;
        loom_baton_init(&baton);
        a->waiter = &baton;
        int rc = loom_baton_wait(&baton, deadline_ns);
        if (a->waiter == &baton)
            a->waiter = NULL;
        loom_baton_deinit(&baton);
        if (rc < 0 && !a->count)
            return rc;
    }
}

void loom_acceptor_stop(struct loom_acceptor *a)
{
    struct loom__reactor *r = loom__reactor();
    if (!(a->state & A_STARTED))
        return;
    a->state |= A_STOPPING;
    (void)loom_timer_cancel(&a->retry);
    if (a->state & A_ARMED) {
        (void)loom_op_cancel(&a->op);
        while (a->state & A_ARMED) {
            struct loom_baton baton;
            loom_baton_init(&baton);
            a->waiter = &baton;
            (void)loom_baton_wait(&baton, LOOM_NO_DEADLINE);
            loom_baton_deinit(&baton);
        }
    }
    while (a->count) {
        close(a->queue[a->head]);
        a->head = (uint16_t)((a->head + 1) % LOOM_ACCEPT_QUEUE);
        a->count--;
    }
    (void)r;
    a->state = 0;
}

/* ---- receive -------------------------------------------------------------------------------- */

static void sock_cqe(struct loom_op *op);
static void close_continue(struct loom__reactor *r, struct loom_sock *s);

static void rearm_list_push(struct loom__net *n, struct loom_sock *s)
{
    s->state |= S_WAIT_BUFS;
    s->rearm_next = NULL;
    if (n->rearm_tail)
        n->rearm_tail->rearm_next = s;
    else
        n->rearm_head = s;
    n->rearm_tail = s;
}

/* Arms the multishot receive on a group with buffers; with none, waits for one to return. */
static void sock_arm(struct loom__reactor *r, struct loom_sock *s)
{
    LOOM_ASSERT(!(s->state & S_ARMED) && s->op.state == LOOM_OP_IDLE);
    struct loom__net *n = r->net;
    int g = group_pick(r, n);
    if (g < 0) {
        rearm_list_push(n, s);
        return;
    }
    s->group = (uint16_t)g;
    s->op.fn = sock_cqe;
    loom__prep_recv_multishot(&s->op, s->fd, (uint16_t)g);
    s->state |= S_ARMED;
    loom__op_start(r, &s->op);
}

static bool sock_may_arm(const struct loom_sock *s)
{
    return !(s->state &
             (S_ARMED | S_PAUSED | S_AUTOPAUSED | S_EOF | S_CLOSING | S_CLOSED | S_WAIT_BUFS)) &&
           s->error == 0;
}

static void buffer_return(struct loom__reactor *r, struct loom__net *n, uint16_t id)
{
    uint32_t g = id / n->group_size;
    loom__bufring_add(n->rings[g], n->bufs + (size_t)id * n->buf_size, n->buf_size,
                      (uint16_t)(id % n->group_size));
    loom__bufring_publish(n->rings[g]);
    n->ring_free[g]++;
    LOOM_ASSERT(n->stats.buffers_in_use > 0);
    n->stats.buffers_in_use--;
    /* one returned buffer lets one dry socket receive again */
    struct loom_sock *s = n->rearm_head;
    if (s) {
        n->rearm_head = s->rearm_next;
        if (!n->rearm_head)
            n->rearm_tail = NULL;
        s->rearm_next = NULL;
        s->state &= (uint16_t)~S_WAIT_BUFS;
        if (sock_may_arm(s)) {
            n->stats.rearms++;
            sock_arm(r, s);
        }
    }
}

/* Gives every queued chunk of s back to the ring. */
static void drop_queued(struct loom__reactor *r, struct loom_sock *s)
{
    struct loom__net *n = r->net;
    for (uint16_t b = s->head; b != NO_BUF;) {
        uint16_t next = n->next[b];
        buffer_return(r, n, b);
        b = next;
    }
    s->head = s->tail = NO_BUF;
    s->queued = 0;
    s->head_offset = 0;
}

static void sock_notify_now(struct loom__reactor *r, struct loom_sock *s)
{
    if (s->waiter) {
        struct loom_baton *w = s->waiter;
        s->waiter = NULL;
        loom__baton_post_local(r, w);
    } else if (s->fn && !(s->state & S_CLOSING)) {
        s->fn(s);
    }
}

/* News for the reader is delivered once per CQE batch, after the whole batch is reaped
 * (loom__net_flush): chunks that arrived together are taken and answered together. */
static void sock_notify(struct loom__reactor *r, struct loom_sock *s)
{
    if (s->state & S_NOTIFY)
        return;
    struct loom__net *n = r->net;
    s->state |= S_NOTIFY;
    s->notify_next = NULL;
    if (n->notify_tail)
        n->notify_tail->notify_next = s;
    else
        n->notify_head = s;
    n->notify_tail = s;
    r->net_notify_pending = true;
}

void loom__net_flush(struct loom__reactor *r)
{
    struct loom__net *n = r->net;
    r->net_notify_pending = false;
    while (n->notify_head) {
        struct loom_sock *s = n->notify_head;
        n->notify_head = s->notify_next;
        if (!n->notify_head)
            n->notify_tail = NULL;
        s->notify_next = NULL;
        s->state &= (uint16_t)~S_NOTIFY;
        sock_notify_now(r, s); /* may close s, or queue others */
    }
}

static void notify_remove(struct loom__net *n, struct loom_sock *s)
{
    if (!(s->state & S_NOTIFY))
        return;
    struct loom_sock **link = &n->notify_head, *prev = NULL;
    while (*link && *link != s) {
        prev = *link;
        link = &(*link)->notify_next;
    }
    LOOM_ASSERT(*link == s);
    *link = s->notify_next;
    if (n->notify_tail == s)
        n->notify_tail = prev;
    s->notify_next = NULL;
    s->state &= (uint16_t)~S_NOTIFY;
}

static void sock_cqe(struct loom_op *op)
{
    struct loom_sock *s = (struct loom_sock *)op;
    struct loom__reactor *r = loom__self;
    struct loom__net *n = r->net;
    int32_t res = op->res;
    bool more = loom__cqe_more(op->cqe_flags);
    if (!more)
        s->state &= (uint16_t)~S_ARMED;
    n->stats.recv_cqes++;
    if (res > 0) {
        int bid = loom__cqe_buffer(op->cqe_flags);
        LOOM_ASSERTF(bid >= 0 && (uint32_t)bid < n->group_size, "receive without a buffer");
        LOOM_ASSERT(n->ring_free[s->group] > 0);
        n->ring_free[s->group]--;
        bid += (int)(s->group * n->group_size);
        char *buf = n->bufs + (size_t)bid * n->buf_size;
        (void)buf;
        VALGRIND_MAKE_MEM_DEFINED(buf, (size_t)res); /* the kernel wrote it */
        n->stats.buffers_in_use++;
        n->stats.recv_bytes += (uint64_t)res;
        n->len[bid] = (uint32_t)res;
        n->next[bid] = NO_BUF;
        if (s->tail == NO_BUF)
            s->head = (uint16_t)bid;
        else
            n->next[s->tail] = (uint16_t)bid;
        s->tail = (uint16_t)bid;
        s->queued += (uint32_t)res;
        if (s->queued >= s->rx_limit && !(s->state & S_AUTOPAUSED)) {
            s->state |= S_AUTOPAUSED;
            n->stats.auto_pauses++;
            if (more)
                (void)loom_op_cancel(&s->op);
        }
        if (s->state & S_CLOSING)
            drop_queued(r, s); /* data racing a close: give it back at once */
    } else if (res == 0) {
        s->state |= S_EOF;
    } else if (res == -ENOBUFS) {
        n->stats.enobufs++;
        /* ring_free stays as counted (buffers given back minus buffers reported used): a
         * buffer returned after this CQE was posted is really there */
    } else if (res != -ECANCELED) {
        s->error = res;
    }
    if (!(s->state & S_ARMED)) {
        if (s->state & S_CLOSING) {
            close_continue(r, s);
            return;
        }
        if (sock_may_arm(s)) {
            n->stats.rearms++;
            sock_arm(r, s);
        }
    }
    if (res != -ECANCELED && res != -ENOBUFS)
        sock_notify(r, s);
}

int loom_sock_open(struct loom_sock *s, int fd, loom_sock_fn fn, void *data)
{
    struct loom__reactor *r = loom__reactor();
    struct loom__net *n = net_of(r);
    if (fd < 0)
        return -EBADF;
    if (!n->groups)
        return -ENOBUFS;
    memset(s, 0, sizeof(*s));
    s->fd = fd;
    s->head = s->tail = NO_BUF;
    s->rx_limit = 256 * 1024;
    if (s->rx_limit < n->buf_size)
        s->rx_limit = n->buf_size;
    s->fn = fn;
    s->data = data;
    s->state = S_OPEN;
    sock_arm(r, s);
    return 0;
}

static void sock_check_resume(struct loom__reactor *r, struct loom_sock *s)
{
    if ((s->state & S_AUTOPAUSED) && s->queued < s->rx_limit / 2) {
        s->state &= (uint16_t)~S_AUTOPAUSED;
        if (sock_may_arm(s) && s->op.state == LOOM_OP_IDLE) {
            r->net->stats.rearms++;
            sock_arm(r, s);
        }
    }
}

ssize_t loom_sock_next(struct loom_sock *s, struct loom_rbuf *out)
{
    struct loom__reactor *r = loom__reactor();
    struct loom__net *n = r->net;
    if (s->head != NO_BUF) {
        uint16_t bid = s->head;
        out->data = n->bufs + (size_t)bid * n->buf_size + s->head_offset;
        out->len = n->len[bid] - s->head_offset;
        out->bid = bid;
        out->flags = 1;
        s->head = n->next[bid];
        if (s->head == NO_BUF)
            s->tail = NO_BUF;
        s->head_offset = 0;
        s->queued -= out->len;
        sock_check_resume(r, s);
        return (ssize_t)out->len;
    }
    if (s->error)
        return s->error;
    if (s->state & S_EOF)
        return 0;
    return -EAGAIN;
}

void loom_rbuf_release(struct loom_rbuf *b)
{
    if (!b->flags)
        return;
    struct loom__reactor *r = loom__reactor();
    b->flags = 0;
    buffer_return(r, r->net, b->bid);
}

/* Waits until the socket has something to report or the deadline passes. */
static int sock_wait(struct loom__reactor *r, struct loom_sock *s, int64_t deadline_ns)
{
    LOOM_ASSERTF(r->current != NULL, "a blocking socket call outside a fiber");
    LOOM_ASSERTF(s->waiter == NULL, "two fibers wait on one socket");
    if (sock_may_arm(s) && s->op.state == LOOM_OP_IDLE)
        sock_arm(r, s);
    struct loom_baton baton;
    loom_baton_init(&baton);
    s->waiter = &baton;
    int rc = loom_baton_wait(&baton, deadline_ns);
    if (s->waiter == &baton)
        s->waiter = NULL;
    loom_baton_deinit(&baton);
    return rc;
}

ssize_t loom_sock_recv(struct loom_sock *s, struct loom_rbuf *out, int64_t deadline_ns)
{
    struct loom__reactor *r = loom__reactor();
    for (;;) {
        ssize_t rc = loom_sock_next(s, out);
        if (rc != -EAGAIN)
            return rc;
        if (sock_wait(r, s, deadline_ns) < 0) {
            rc = loom_sock_next(s, out);
            return rc == -EAGAIN ? -ETIMEDOUT : rc;
        }
    }
}

/* Copies up to len queued bytes into dst, returning buffers as they empty. */
static size_t sock_copy(struct loom__reactor *r, struct loom_sock *s, char *dst, size_t len)
{
    struct loom__net *n = r->net;
    size_t copied = 0;
    while (copied < len && s->head != NO_BUF) {
        uint16_t bid = s->head;
        uint32_t avail = n->len[bid] - s->head_offset;
        size_t take = len - copied < avail ? len - copied : avail;
        memcpy(dst + copied, n->bufs + (size_t)bid * n->buf_size + s->head_offset, take);
        copied += take;
        s->head_offset += (uint32_t)take;
        s->queued -= (uint32_t)take;
        if (s->head_offset == n->len[bid]) {
            s->head = n->next[bid];
            if (s->head == NO_BUF)
                s->tail = NO_BUF;
            s->head_offset = 0;
            buffer_return(r, n, bid);
        }
    }
    sock_check_resume(r, s);
    return copied;
}

ssize_t loom_sock_read(struct loom_sock *s, void *buf, size_t len, bool exact, int64_t deadline_ns)
{
    struct loom__reactor *r = loom__reactor();
    if (len == 0)
        return 0;
    if (len > INT32_MAX)
        return -EINVAL;
    /* chunks are copied out as they come, so a message larger than the core's whole ring can
     * be assembled: the caller's memory holds it, charged to this connection */
    size_t copied = 0;
    for (;;) {
        copied += sock_copy(r, s, (char *)buf + copied, len - copied);
        if (copied == len || (copied > 0 && !exact))
            return (ssize_t)copied;
        if (s->error)
            return copied ? (ssize_t)copied : s->error;
        if (s->state & S_EOF)
            return copied ? -ENODATA : 0;
        if (sock_wait(r, s, deadline_ns) < 0 && s->queued == 0 && !s->error && !(s->state & S_EOF))
            return copied ? (ssize_t)copied : -ETIMEDOUT;
    }
}

void loom_sock_pause(struct loom_sock *s)
{
    s->state |= S_PAUSED;
    if (s->state & S_ARMED)
        (void)loom_op_cancel(&s->op);
}

void loom_sock_resume(struct loom_sock *s)
{
    struct loom__reactor *r = loom__reactor();
    s->state &= (uint16_t)~S_PAUSED;
    if (sock_may_arm(s) && s->op.state == LOOM_OP_IDLE)
        sock_arm(r, s);
}

void loom_sock_set_rx_limit(struct loom_sock *s, uint32_t bytes)
{
    struct loom__net *n = net_of(loom__reactor());
    s->rx_limit = bytes < n->buf_size ? n->buf_size : bytes;
    if (s->queued >= s->rx_limit && !(s->state & S_AUTOPAUSED)) {
        s->state |= S_AUTOPAUSED;
        n->stats.auto_pauses++;
        if (s->state & S_ARMED)
            (void)loom_op_cancel(&s->op);
    }
    sock_check_resume(loom__self, s);
}

/* ---- send ----------------------------------------------------------------------------------- */

void loom_op_send(struct loom_op *op, int fd, const void *buf, size_t len, int flags, loom_op_fn fn,
                  void *data)
{
    struct loom__reactor *r = loom__reactor();
    op->fn = fn;
    op->data = data;
    loom__prep_send(op, fd, buf, len > INT32_MAX ? INT32_MAX : len, flags | MSG_NOSIGNAL);
    loom__op_start(r, op);
}

void loom_op_sendmsg(struct loom_op *op, int fd, const struct msghdr *msg, int flags, loom_op_fn fn,
                     void *data)
{
    struct loom__reactor *r = loom__reactor();
    op->fn = fn;
    op->data = data;
    loom__prep_sendmsg(op, fd, msg, flags | MSG_NOSIGNAL);
    loom__op_start(r, op);
}

/* send_zc completes twice: the result (with F_MORE), then the notification (F_NOTIF) once the
 * kernel no longer needs the buffer. */
struct zc_wait {
    struct loom_baton baton;
    int32_t res;
    bool got_res, got_notif;
};

static void zc_cqe(struct loom_op *op)
{
    struct zc_wait *w = op->data;
    struct loom__reactor *r = loom__self;
    if (loom__cqe_is_notif(op->cqe_flags)) {
        w->got_notif = true;
        if (loom__notif_copied(op->res))
            r->net->stats.zc_copied++;
    } else {
        w->res = op->res;
        w->got_res = true;
        if (!loom__cqe_more(op->cqe_flags))
            w->got_notif = true; /* failed: no notification follows */
    }
    if (op->state == LOOM_OP_IDLE)
        loom__baton_post_local(r, &w->baton);
}

ssize_t loom_send_zc(int fd, const void *buf, size_t len, int64_t deadline_ns)
{
    struct loom__reactor *r = loom__reactor();
    LOOM_ASSERTF(r->current != NULL, "loom_send_zc() outside a fiber");
    struct loom_op op;
    memset(&op, 0, sizeof(op));
    struct zc_wait w = {.baton = {.core = (uint16_t)r->core, .state = LOOM_BATON_IDLE}};
    op.fn = zc_cqe;
    op.data = &w;
    loom__prep_send_zc(&op, fd, buf, len > INT32_MAX ? INT32_MAX : len, MSG_NOSIGNAL);
    net_of(r)->stats.zc_sends++;
    loom__op_start(r, &op);
    int rc = loom_baton_wait(&w.baton, deadline_ns);
    bool timed_out = rc == -ETIMEDOUT;
    if (timed_out) {
        (void)loom_op_cancel(&op);
        rc = loom_baton_wait(&w.baton, LOOM_NO_DEADLINE);
        LOOM_ASSERT(rc == 0);
    }
    LOOM_ASSERT(op.state == LOOM_OP_IDLE && w.got_notif);
    w.baton.state = LOOM_BATON_DEAD;
    if (timed_out && (w.res == -ECANCELED || w.res == -EINTR))
        return -ETIMEDOUT;
    return w.res;
}

static bool peer_is_loopback(struct loom_sock *s)
{
    if (!(s->state & S_PEER_KNOWN)) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        bool lo = false;
        if (getpeername(s->fd, (struct sockaddr *)&ss, &len) == 0) {
            if (ss.ss_family == AF_INET)
                lo = (ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24) == 127;
            else if (ss.ss_family == AF_INET6)
                lo = IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&ss)->sin6_addr) ||
                     (IN6_IS_ADDR_V4MAPPED(&((struct sockaddr_in6 *)&ss)->sin6_addr) &&
                      ((struct sockaddr_in6 *)&ss)->sin6_addr.s6_addr[12] == 127);
        }
        s->state |= S_PEER_KNOWN | (lo ? S_LOOPBACK : 0);
    }
    return (s->state & S_LOOPBACK) != 0;
}

ssize_t loom_sock_send(struct loom_sock *s, const void *buf, size_t len, int64_t deadline_ns)
{
    struct loom__reactor *r = loom__reactor();
    struct loom__net *n = net_of(r);
    bool zc = n->zc_threshold > 0 && len >= n->zc_threshold && !peer_is_loopback(s);
    size_t done = 0;
    while (done < len) {
        int32_t rc;
        if (zc) {
            rc = (int32_t)loom_send_zc(s->fd, (const char *)buf + done, len - done, deadline_ns);
        } else {
            struct loom_op op;
            memset(&op, 0, sizeof(op));
            size_t left = len - done;
            loom__prep_send(&op, s->fd, (const char *)buf + done,
                            left > INT32_MAX ? INT32_MAX : left, MSG_NOSIGNAL | MSG_WAITALL);
            rc = op_wait(&op, deadline_ns);
        }
        if (rc < 0)
            return rc;
        if (rc == 0)
            return -EPIPE;
        done += (size_t)rc;
    }
    return (ssize_t)len;
}

ssize_t loom_sock_sendv(struct loom_sock *s, const struct iovec *iov, int iovcnt,
                        int64_t deadline_ns)
{
    if (iovcnt < 0 || iovcnt > IOV_MAX)
        return -EINVAL;
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = (struct iovec *)iov;
    msg.msg_iovlen = (size_t)iovcnt;
    struct loom_op op;
    memset(&op, 0, sizeof(op));
    loom__prep_sendmsg(&op, s->fd, &msg, MSG_NOSIGNAL | MSG_WAITALL);
    int32_t rc = op_wait(&op, deadline_ns);
    if (rc < 0 || (size_t)rc >= total)
        return rc;
    /* short: finish segment by segment */
    size_t done = (size_t)rc, seg = 0;
    for (int i = 0; i < iovcnt; i++) {
        size_t end = seg + iov[i].iov_len;
        if (done < end) {
            ssize_t w = loom_sock_send(s, (const char *)iov[i].iov_base + (done - seg), end - done,
                                       deadline_ns);
            if (w < 0)
                return w;
            done = end;
        }
        seg = end;
    }
    return (ssize_t)total;
}

int loom_sock_shutdown(struct loom_sock *s)
{
    struct loom_op op;
    memset(&op, 0, sizeof(op));
    loom__prep_shutdown(&op, s->fd, SHUT_WR);
    return op_wait(&op, LOOM_NO_DEADLINE);
}

/* ---- close ---------------------------------------------------------------------------------- */

static void sock_closed(struct loom_op *op)
{
    struct loom_sock *s = (struct loom_sock *)op;
    s->state = (uint16_t)((s->state & ~S_CLOSING) | S_CLOSED);
    s->error = op->res;
    if (s->waiter) {
        struct loom_baton *w = s->waiter;
        s->waiter = NULL;
        loom__baton_post_local(loom__self, w);
    } else if (s->fn) {
        s->fn(s); /* the done callback of loom_sock_close_async() */
    }
}

/* The receive has ended: return the queued buffers and close the fd through the ring. */
static void close_continue(struct loom__reactor *r, struct loom_sock *s)
{
    drop_queued(r, s);
    s->op.fn = sock_closed;
    s->op.data = s;
    loom__prep_close(&s->op, s->fd);
    loom__op_start(r, &s->op);
}

static void sock_begin_close(struct loom__reactor *r, struct loom_sock *s)
{
    LOOM_ASSERTF(!(s->state & (S_CLOSING | S_CLOSED)), "socket closed twice");
    s->state |= S_CLOSING;
    notify_remove(r->net, s); /* its memory may be reused once closed */
    if (s->state & S_WAIT_BUFS) {
        struct loom__net *n = r->net;
        struct loom_sock **link = &n->rearm_head, *prev = NULL;
        while (*link && *link != s) {
            prev = *link;
            link = &(*link)->rearm_next;
        }
        if (*link) {
            *link = s->rearm_next;
            if (n->rearm_tail == s)
                n->rearm_tail = prev;
        }
        s->state &= (uint16_t)~S_WAIT_BUFS;
    }
    if (s->op.state != LOOM_OP_IDLE) {
        (void)loom_op_cancel(&s->op); /* the last receive CQE continues the close */
        return;
    }
    close_continue(r, s);
}

void loom_sock_close_async(struct loom_sock *s, loom_sock_fn done)
{
    struct loom__reactor *r = loom__reactor();
    s->fn = done;
    s->waiter = NULL;
    s->state |= S_CLOSE_ASYNC;
    sock_begin_close(r, s);
}

int loom_sock_close(struct loom_sock *s)
{
    struct loom__reactor *r = loom__reactor();
    LOOM_ASSERTF(r->current != NULL, "loom_sock_close() outside a fiber");
    LOOM_ASSERTF(s->waiter == NULL, "loom_sock_close() while a fiber waits on the socket");
    struct loom_baton baton;
    loom_baton_init(&baton);
    s->fn = NULL;
    sock_begin_close(r, s);
    while (!(s->state & S_CLOSED)) {
        s->waiter = &baton;
        (void)loom_baton_wait(&baton, LOOM_NO_DEADLINE);
    }
    loom_baton_deinit(&baton);
    return s->error;
}
