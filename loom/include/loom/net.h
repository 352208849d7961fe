/* SPDX-License-Identifier: MIT
 * net.h - TCP for loom: listening on every core, multishot accept, connect with a deadline,
 * receiving into the core's provided-buffer ring without a copy, send and zero-copy send.
 *
 * Receiving. Each core registers one ring of receive buffers with the kernel at start
 * (--net-buffers SIZE split into --net-buffer-size buffers). A struct loom_sock arms one
 * multishot receive: the kernel picks a free buffer for each arrival, so a connection that
 * receives nothing holds no buffer. Received chunks queue on the socket until the reader takes
 * them: loom_sock_recv() (fiber) or loom_sock_next() (callback style) lend the buffer itself
 * (struct loom_rbuf), which goes back to the ring with loom_rbuf_release(); loom_sock_read()
 * copies instead, and can assemble a message larger than one buffer in the caller's memory.
 * When a socket holds more than its receive limit (loom_sock_set_rx_limit, default 256 KiB)
 * its receive is paused (the multishot is cancelled) until the reader catches up, so one
 * greedy peer cannot drain the core's buffers; loom_sock_pause()/resume() do the same on
 * demand. When the ring runs dry (-ENOBUFS) the affected sockets are re-armed as soon as
 * buffers come back.
 * Errors: a reset peer gives -ECONNRESET, the peer's close gives 0 (end of stream) after every
 * byte sent before it; a message cut by end of stream gives -ENODATA from loom_sock_read();
 * a deadline gives -ETIMEDOUT without losing data (what arrives stays queued).
 * Core: everything here runs on the reactor thread that owns the socket.
 */
#ifndef LOOM_NET_H
#define LOOM_NET_H

#include <sys/types.h>
#include <sys/uio.h>

#include "loom/baton.h"
#include "loom/common.h"
#include "loom/reactor.h"
#include "loom/timer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- listening and connecting --------------------------------------------------------------- */

#define LOOM_LISTEN_REUSEPORT 1u /* SO_REUSEPORT: every core may listen on the same port */

/* A listening TCP socket on host:port ("127.0.0.1", "::", "0.0.0.0", NULL = any IPv4;
 * port 0 = a free port, see loom_socket_port). Returns the fd or -errno. Any thread. */
LOOM_API int loom_listen(const char *host, uint16_t port, int backlog, unsigned flags);

/* The local port of socket `fd`, or -errno. */
LOOM_API int loom_socket_port(int fd);

/* Connects to host:port (numeric IPv4 or IPv6 address) through the ring, giving up at
 * `deadline_ns` (-ETIMEDOUT). Returns the connected fd (TCP_NODELAY set) or -errno.
 * Core: a fiber. */
LOOM_API int loom_connect(const char *host, uint16_t port, int64_t deadline_ns);

/* TCP_NODELAY on or off. Returns 0 or -errno. */
LOOM_API int loom_socket_nodelay(int fd, bool on);

/* SO_KEEPALIVE with the idle time, probe interval and probe count (seconds; 0 keeps the
 * system default). Returns 0 or -errno. */
LOOM_API int loom_socket_keepalive(int fd, int idle_s, int interval_s, int count);

/* ---- accepting ------------------------------------------------------------------------------ */

struct loom_acceptor;
/* Called from the loop for each accepted connection (fd >= 0, CLOEXEC) or error (-errno,
 * e.g. -EMFILE: accepting resumes by itself shortly after). */
typedef void (*loom_accept_fn)(struct loom_acceptor *acceptor, int fd);

#define LOOM_ACCEPT_QUEUE 32

/* Caller-owned; fields are private. Keep it alive and unmoved until loom_acceptor_stop()
 * returned. */
struct loom_acceptor {
    struct loom_op op;
    int listen_fd;
    uint16_t state;
    uint16_t count, head;
    int32_t queue[LOOM_ACCEPT_QUEUE]; /* fiber mode: accepted fds not yet taken */
    loom_accept_fn fn;
    void *data; /* the caller's */
    struct loom_baton *waiter;
    struct loom_timer retry; /* re-arms after an error such as -EMFILE */
    int32_t error;           /* fiber mode: an error to report from loom_accept() */
};

/* Starts a multishot accept on `listen_fd`. With `fn`, each connection goes to fn from the
 * loop; with fn NULL, connections queue (at most LOOM_ACCEPT_QUEUE, then the accept pauses)
 * for loom_accept(). Returns 0 or -errno. Core: any reactor thread. */
LOOM_API int loom_acceptor_start(struct loom_acceptor *acceptor, int listen_fd, loom_accept_fn fn,
                                 void *data);

/* The next accepted fd (fiber mode), or -ETIMEDOUT at the deadline, or -errno. */
LOOM_API int loom_accept(struct loom_acceptor *acceptor, int64_t deadline_ns);

/* Stops accepting: cancels the multishot and waits for its end, closes queued fds. The
 * listening fd stays open. Core: a fiber of the acceptor's core. */
LOOM_API void loom_acceptor_stop(struct loom_acceptor *acceptor);

/* ---- receiving ------------------------------------------------------------------------------ */

/* A received chunk lent from the core's buffer ring. */
struct loom_rbuf {
    const char *data;
    uint32_t len;
    uint16_t bid;   /* private */
    uint16_t flags; /* private */
};

struct loom_sock;
typedef void (*loom_sock_fn)(struct loom_sock *sock);

/* Caller-owned, 176 bytes on x86-64: the whole user-space state of an idle connection. Fields are
 * private except `data`. */
struct loom_sock {
    struct loom_op op; /* the multishot receive; later its close */
    int fd;
    uint16_t state;
    uint16_t head, tail;  /* queued chunks: buffer ids, linked through the core's table */
    uint16_t group;       /* the buffer group the receive is armed on */
    uint32_t head_offset; /* bytes of the head chunk already read */
    uint32_t queued;      /* bytes queued */
    uint32_t rx_limit;
    int32_t error; /* sticky -errno, 0 = none */
    loom_sock_fn fn;
    void *data; /* the caller's */
    struct loom_baton *waiter;
    struct loom_sock *rearm_next;  /* waiting for buffers after -ENOBUFS */
    struct loom_sock *notify_next; /* news to deliver after this CQE batch */
};

/* Takes `fd` (a connected TCP socket) and arms its receive. With `fn`, fn(sock) runs from the
 * loop whenever data, end of stream or an error is ready (take it with loom_sock_next()); with
 * fn NULL, use the fiber calls. Returns 0 or -errno. */
LOOM_API int loom_sock_open(struct loom_sock *sock, int fd, loom_sock_fn fn, void *data);

/* The next received chunk without waiting: > 0 bytes lent in *out, 0 at end of stream,
 * -EAGAIN when nothing is queued, or the socket's error (-ECONNRESET, ...). */
LOOM_API ssize_t loom_sock_next(struct loom_sock *sock, struct loom_rbuf *out);

/* The next received chunk, waiting until `deadline_ns`: as loom_sock_next(), or -ETIMEDOUT.
 * Core: a fiber. */
LOOM_API ssize_t loom_sock_recv(struct loom_sock *sock, struct loom_rbuf *out, int64_t deadline_ns);

/* Gives a lent chunk back to the ring. */
LOOM_API void loom_rbuf_release(struct loom_rbuf *buf);

/* Copies received bytes into buf, giving each buffer back as it empties: up to len (returns
 * what is there, waiting only while nothing is), or with `exact` all len bytes (waiting; a
 * message larger than the whole buffer ring is fine). Returns the bytes copied; 0 at end of
 * stream; -ENODATA when the stream ends inside an exact read (the partial bytes are consumed);
 * at the deadline the bytes copied so far (fewer than len, nothing lost) or -ETIMEDOUT when
 * none; -errno for a socket error (after part of an exact read: the bytes copied, and the
 * error with the next call). */
LOOM_API ssize_t loom_sock_read(struct loom_sock *sock, void *buf, size_t len, bool exact,
                                int64_t deadline_ns);

/* Stops / restarts receiving on this socket (queued data stays readable). */
LOOM_API void loom_sock_pause(struct loom_sock *sock);
LOOM_API void loom_sock_resume(struct loom_sock *sock);

/* Receive limit in bytes queued before the socket pauses by itself (>= one buffer). */
LOOM_API void loom_sock_set_rx_limit(struct loom_sock *sock, uint32_t bytes);

/* Sends all of buf (short sends are continued), with zero-copy above the core's threshold
 * for peers that are not on loopback (--zc-threshold). Returns len or -errno (-EPIPE,
 * -ECONNRESET, -ETIMEDOUT). Core: a fiber. */
LOOM_API ssize_t loom_sock_send(struct loom_sock *sock, const void *buf, size_t len,
                                int64_t deadline_ns);
LOOM_API ssize_t loom_sock_sendv(struct loom_sock *sock, const struct iovec *iov, int iovcnt,
                                 int64_t deadline_ns);

/* Zero-copy send of buf on fd: returns after the kernel's notification, when buf may be
 * reused. Returns bytes sent or -errno. Core: a fiber. */
LOOM_API ssize_t loom_send_zc(int fd, const void *buf, size_t len, int64_t deadline_ns);

/* Half-close: no more sends (the peer reads end of stream). Returns 0 or -errno. */
LOOM_API int loom_sock_shutdown(struct loom_sock *sock);

/* Ends the socket: stops the receive, returns queued buffers, closes the fd. Fiber mode
 * waits for all of it; returns 0 or -errno from close. */
LOOM_API int loom_sock_close(struct loom_sock *sock);

/* Callback style of loom_sock_close(): `done(sock)` runs from the loop when the socket is
 * fully closed and its memory may be reused. */
LOOM_API void loom_sock_close_async(struct loom_sock *sock, loom_sock_fn done);

/* Callback send: starts a send of buf (one op; the result in op->res may be short). */
LOOM_API void loom_op_send(struct loom_op *op, int fd, const void *buf, size_t len, int flags,
                           loom_op_fn fn, void *data);

/* Callback sendmsg: `msg` and what it points to stay valid until fn runs; the result may be
 * short. */
struct msghdr;
LOOM_API void loom_op_sendmsg(struct loom_op *op, int fd, const struct msghdr *msg, int flags,
                              loom_op_fn fn, void *data);

/* Counters of the calling core's network layer. */
struct loom_net_stats {
    uint64_t accepted;
    uint64_t recv_cqes;
    uint64_t recv_bytes;
    uint64_t enobufs;        /* receives that found the buffer ring empty */
    uint64_t rearms;         /* multishot receives armed again */
    uint64_t auto_pauses;    /* sockets paused by their receive limit */
    uint64_t zc_sends;       /* zero-copy sends */
    uint64_t zc_copied;      /* ... where the kernel copied anyway (loopback) */
    uint32_t buffers;        /* receive buffers of the core (in registered groups) */
    uint32_t groups;         /* buffer groups registered so far */
    uint32_t buffers_in_use; /* lent or queued */
    uint32_t buffer_size;
};
LOOM_API void loom_net_stats_get(struct loom_net_stats *out);

#ifdef __cplusplus
}
#endif
#endif
