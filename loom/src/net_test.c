/* SPDX-License-Identifier: MIT
 * net_test.c - the network layer over 127.0.0.1: listen/connect errors, accept in both
 * styles, lent receive buffers and copies, message assembly across buffers, end of stream in
 * the middle of a message, peer reset, half-close, deadlines on receive and connect, explicit
 * and automatic receive pause, buffer-ring exhaustion (-ENOBUFS) and recovery, zero-copy send
 * and its notification, and that idle sockets hold no receive buffer.
 * The peer side is plain blocking sockets on an ordinary thread.
 * LOOM_TEST_TAGS: tsan
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "loom/loom.h"

#define BUF_SIZE 4096u
#define BUFS     16u

static int plain_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK_GE(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_EQ(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

static void write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t n = write(fd, p, len);
        CHECK_GT(n, 0);
        p += n;
        len -= (size_t)n;
    }
}

static void read_all(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len) {
        ssize_t n = read(fd, p, len);
        CHECK_GT(n, 0);
        p += n;
        len -= (size_t)n;
    }
}

static void pattern(char *buf, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (char)((i * 131 + seed) & 0xff);
}

/* ---- a peer thread running a script -------------------------------------------------------- */

enum peer_script {
    PEER_SEND_THEN_CLOSE, /* send `len` pattern bytes, close */
    PEER_SEND_PARTIAL,    /* send `len` bytes, then end of stream */
    PEER_RESET,           /* send 10 bytes, reset the connection (SO_LINGER 0) */
    PEER_ECHO_HALFCLOSE,  /* read until end of stream, then send "bye" and close */
    PEER_READ_ALL,        /* read `len` bytes and check the pattern */
    PEER_SEND_SLOW,       /* send `len` bytes after a delay */
};

struct peer {
    pthread_t thread;
    int port;
    enum peer_script script;
    size_t len;
    int result; /* 0 = ok */
};

static void *peer_main(void *arg)
{
    struct peer *p = arg;
    int fd = plain_connect(p->port);
    char *buf = malloc(p->len + 16);
    pattern(buf, p->len, 7);
    switch (p->script) {
    case PEER_SEND_THEN_CLOSE:
    case PEER_SEND_PARTIAL:
        write_all(fd, buf, p->len);
        break;
    case PEER_SEND_SLOW:
        usleep(150 * 1000);
        write_all(fd, buf, p->len);
        usleep(100 * 1000);
        break;
    case PEER_RESET: {
        write_all(fd, buf, 10);
        usleep(50 * 1000);
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        break;
    }
    case PEER_ECHO_HALFCLOSE: {
        char tmp[256];
        while (read(fd, tmp, sizeof(tmp)) > 0) {
        }
        write_all(fd, "bye", 3);
        break;
    }
    case PEER_READ_ALL: {
        char *got = malloc(p->len);
        read_all(fd, got, p->len);
        p->result = memcmp(got, buf, p->len) == 0 ? 0 : 1;
        free(got);
        break;
    }
    }
    free(buf);
    close(fd);
    return NULL;
}

static void peer_start(struct peer *p, int port, enum peer_script script, size_t len)
{
    p->port = port;
    p->script = script;
    p->len = len;
    p->result = 0;
    CHECK_EQ(pthread_create(&p->thread, NULL, peer_main, p), 0);
}

static void peer_join(struct peer *p)
{
    CHECK_EQ(pthread_join(p->thread, NULL), 0);
    CHECK_EQ(p->result, 0);
}

/* ---- tests ---------------------------------------------------------------------------------- */

static int listen_fd, listen_port;
static struct loom_acceptor acceptor;

static int accept_one(struct loom_sock *s)
{
    int fd = loom_accept(&acceptor, loom_now_ns() + 5 * LOOM_NS_PER_S);
    CHECK_GE(fd, 0);
    CHECK_EQ(loom_sock_open(s, fd, NULL, NULL), 0);
    return fd;
}

static void check_no_buffers_held(void)
{
    struct loom_net_stats st;
    loom_net_stats_get(&st);
    CHECK_EQ(st.buffers_in_use, 0u);
}

static void test_errors(void)
{
    CHECK_EQ(loom_listen("not-an-address", 0, 16, 0), -EINVAL);
    CHECK_EQ(loom_listen("127.0.0.1", (uint16_t)listen_port, 16, 0), -EADDRINUSE);
    /* a port nobody listens on: refused */
    int tmp = loom_listen("127.0.0.1", 0, 16, 0);
    CHECK_GE(tmp, 0);
    int free_port = loom_socket_port(tmp);
    CHECK_EQ(loom_close(tmp), 0);
    CHECK_EQ(loom_connect("127.0.0.1", (uint16_t)free_port, loom_now_ns() + LOOM_NS_PER_S),
             -ECONNREFUSED);
    CHECK_EQ(loom_connect("bad", 1, LOOM_NO_DEADLINE), -EINVAL);
    struct loom_sock s;
    CHECK_EQ(loom_sock_open(&s, -1, NULL, NULL), -EBADF);
    CHECK_EQ(loom_acceptor_start(&acceptor, -1, NULL, NULL), -EBADF);
}

static void test_connect_deadline(void)
{
    /* a listener whose accept queue is full drops SYNs: connect hangs until the deadline */
    int lfd = loom_listen("127.0.0.1", 0, 1, 0);
    CHECK_GE(lfd, 0);
    int port = loom_socket_port(lfd);
    int fillers[4];
    int nfill = 0;
    int rc = 0;
    for (; nfill < 4; nfill++) {
        rc = loom_connect("127.0.0.1", (uint16_t)port, loom_now_ns() + 300 * LOOM_NS_PER_MS);
        if (rc < 0)
            break;
        fillers[nfill] = rc;
    }
    CHECK_EQ(rc, -ETIMEDOUT);
    for (int i = 0; i < nfill; i++)
        close(fillers[i]);
    close(lfd);
}

static void test_recv_lend_and_copy(void)
{
    struct peer p;
    size_t len = 10 * BUF_SIZE + 123; /* more than 10 buffers: also pauses by itself */
    peer_start(&p, listen_port, PEER_SEND_THEN_CLOSE, len);
    struct loom_sock s;
    accept_one(&s);
    loom_sock_set_rx_limit(&s, 4 * BUF_SIZE);
    char *want = malloc(len), *got = malloc(len);
    pattern(want, len, 7);
    size_t have = 0;
    bool lent = true;
    for (;;) {
        if (lent) { /* alternate between lent chunks and copies */
            struct loom_rbuf rb;
            ssize_t n = loom_sock_recv(&s, &rb, loom_now_ns() + 5 * LOOM_NS_PER_S);
            if (n == 0)
                break;
            CHECK_GT(n, 0);
            CHECK_LE((size_t)n, BUF_SIZE);
            memcpy(got + have, rb.data, (size_t)n);
            have += (size_t)n;
            loom_rbuf_release(&rb);
        } else {
            ssize_t n =
                loom_sock_read(&s, got + have, 1000, false, loom_now_ns() + 5 * LOOM_NS_PER_S);
            if (n == 0)
                break;
            CHECK_GT(n, 0);
            have += (size_t)n;
        }
        lent = !lent;
    }
    CHECK_EQ(have, len);
    CHECK(memcmp(want, got, len) == 0);
    struct loom_rbuf rb;
    CHECK_EQ(loom_sock_next(&s, &rb), 0); /* end of stream stays */
    CHECK_EQ(loom_sock_close(&s), 0);
    peer_join(&p);
    check_no_buffers_held();
    free(want);
    free(got);
}

static void test_message_assembly(void)
{
    /* one message of 5 buffers, read exactly, then a partial one cut by end of stream */
    struct peer p;
    size_t msg = 5 * BUF_SIZE + 17;
    peer_start(&p, listen_port, PEER_SEND_PARTIAL, msg + 100);
    struct loom_sock s;
    accept_one(&s);
    char *got = malloc(msg), *want = malloc(msg + 100);
    pattern(want, msg + 100, 7);
    CHECK_EQ(loom_sock_read(&s, got, msg, true, loom_now_ns() + 5 * LOOM_NS_PER_S), (ssize_t)msg);
    CHECK(memcmp(got, want, msg) == 0);
    CHECK_EQ(loom_sock_read(&s, got, 200, true, loom_now_ns() + 5 * LOOM_NS_PER_S), -ENODATA);
    CHECK_EQ(loom_sock_close(&s), 0);
    peer_join(&p);
    check_no_buffers_held();
    free(got);
    free(want);
}

static void test_reset(void)
{
    struct peer p;
    peer_start(&p, listen_port, PEER_RESET, 10);
    struct loom_sock s;
    accept_one(&s);
    char buf[64];
    CHECK_EQ(loom_sock_read(&s, buf, sizeof(buf), false, loom_now_ns() + 5 * LOOM_NS_PER_S), 10);
    CHECK_EQ(loom_sock_read(&s, buf, sizeof(buf), false, loom_now_ns() + 5 * LOOM_NS_PER_S),
             -ECONNRESET);
    char big[8192];
    memset(big, 1, sizeof(big));
    ssize_t rc = 0;
    for (int i = 0; i < 100 && rc >= 0; i++) /* sending to a reset peer fails, no SIGPIPE */
        rc = loom_sock_send(&s, big, sizeof(big), loom_now_ns() + LOOM_NS_PER_S);
    CHECK(rc == -EPIPE || rc == -ECONNRESET);
    CHECK_EQ(loom_sock_close(&s), 0);
    peer_join(&p);
    check_no_buffers_held();
}

static void test_half_close(void)
{
    struct peer p;
    peer_start(&p, listen_port, PEER_ECHO_HALFCLOSE, 0);
    struct loom_sock s;
    accept_one(&s);
    CHECK_EQ(loom_sock_send(&s, "hello", 5, LOOM_NO_DEADLINE), 5);
    CHECK_EQ(loom_sock_shutdown(&s), 0); /* the peer sees end of stream, then answers */
    char buf[16];
    CHECK_EQ(loom_sock_read(&s, buf, 3, true, loom_now_ns() + 5 * LOOM_NS_PER_S), 3);
    CHECK(memcmp(buf, "bye", 3) == 0);
    CHECK_EQ(loom_sock_read(&s, buf, 3, false, loom_now_ns() + 5 * LOOM_NS_PER_S), 0);
    CHECK_EQ(loom_sock_close(&s), 0);
    peer_join(&p);
}

static void test_recv_deadline_and_pause(void)
{
    struct peer p;
    peer_start(&p, listen_port, PEER_SEND_SLOW, 3000);
    struct loom_sock s;
    accept_one(&s);
    struct loom_rbuf rb;
    int64_t start = loom_now_ns();
    CHECK_EQ(loom_sock_recv(&s, &rb, start + 30 * LOOM_NS_PER_MS), -ETIMEDOUT);
    CHECK_GE(loom_now_ns() - start, 25 * LOOM_NS_PER_MS);
    /* paused: the data waits in the kernel, not in our buffers */
    loom_sock_pause(&s);
    loom_sleep(300 * LOOM_NS_PER_MS);
    CHECK_EQ(loom_sock_next(&s, &rb), -EAGAIN);
    check_no_buffers_held();
    loom_sock_resume(&s);
    char got[3000], want[3000];
    pattern(want, sizeof(want), 7);
    CHECK_EQ(loom_sock_read(&s, got, sizeof(got), true, loom_now_ns() + 5 * LOOM_NS_PER_S), 3000);
    CHECK(memcmp(got, want, sizeof(got)) == 0); /* nothing lost across the timeout and pause */
    CHECK_EQ(loom_sock_close(&s), 0);
    peer_join(&p);
}

struct reader {
    struct loom_sock *sock;
    size_t len;
    struct loom_waitgroup *wg;
};

static int reader_main(void *arg)
{
    struct reader *rd = arg;
    char *want = malloc(rd->len), *got = malloc(rd->len);
    pattern(want, rd->len, 7);
    CHECK_EQ(loom_sock_read(rd->sock, got, rd->len, true, loom_now_ns() + 10 * LOOM_NS_PER_S),
             (ssize_t)rd->len);
    CHECK(memcmp(got, want, rd->len) == 0);
    CHECK_EQ(loom_sock_read(rd->sock, got, 1, false, loom_now_ns() + 5 * LOOM_NS_PER_S), 0);
    free(want);
    free(got);
    loom_waitgroup_done(rd->wg);
    return 0;
}

static void test_ring_exhaustion(void)
{
    /* 3 peers each send more than the whole ring; nobody reads until it has run dry */
    struct peer p[3];
    struct loom_sock s[3];
    size_t len = (BUFS + 8) * BUF_SIZE;
    for (int i = 0; i < 3; i++) {
        peer_start(&p[i], listen_port, PEER_SEND_THEN_CLOSE, len);
        accept_one(&s[i]);
        loom_sock_set_rx_limit(&s[i], 1u << 30); /* no automatic pause: drain the ring */
    }
    struct loom_net_stats st;
    int64_t until = loom_now_ns() + 5 * LOOM_NS_PER_S;
    do {
        loom_sleep(5 * LOOM_NS_PER_MS);
        loom_net_stats_get(&st);
    } while (st.enobufs == 0 && loom_now_ns() < until);
    CHECK_GT(st.enobufs, 0u);
    CHECK_EQ(st.buffers_in_use, BUFS);
    /* with a fair limit again, no socket can hold the buffers the one being read needs */
    for (int i = 0; i < 3; i++)
        loom_sock_set_rx_limit(&s[i], 4 * BUF_SIZE);
    loom_net_stats_get(&st);
    CHECK_GT(st.auto_pauses, 0u);
    /* read everything, one fiber per socket as a server would: each socket recovers and
     * gets all its bytes */
    struct reader rd[3];
    struct loom_waitgroup wg;
    loom_waitgroup_init(&wg);
    for (int i = 0; i < 3; i++) {
        rd[i] = (struct reader){.sock = &s[i], .len = len, .wg = &wg};
        loom_waitgroup_add(&wg, 1);
        CHECK_EQ(loom_spawn(NULL, reader_main, &rd[i], NULL), 0);
    }
    CHECK_EQ(loom_waitgroup_wait(&wg, loom_now_ns() + 20 * LOOM_NS_PER_S), 0);
    loom_waitgroup_deinit(&wg);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(loom_sock_close(&s[i]), 0);
        peer_join(&p[i]);
    }
    check_no_buffers_held();
}

static void test_send_zc(void)
{
    struct peer p;
    size_t len = 1u << 20;
    peer_start(&p, listen_port, PEER_READ_ALL, len);
    struct loom_sock s;
    accept_one(&s);
    char *buf = malloc(len);
    pattern(buf, len, 7);
    struct loom_net_stats before, after;
    loom_net_stats_get(&before);
    size_t done = 0;
    while (done < len) {
        ssize_t n = loom_send_zc(s.fd, buf + done, len - done, loom_now_ns() + 5 * LOOM_NS_PER_S);
        CHECK_GT(n, 0);
        /* returned only after the notification: the buffer may be reused now */
        done += (size_t)n;
    }
    loom_net_stats_get(&after);
    CHECK_GE(after.zc_sends - before.zc_sends, 1u);
    /* loopback: the kernel copies every zero-copy send and says so */
    CHECK_EQ(after.zc_copied - before.zc_copied, after.zc_sends - before.zc_sends);
    /* loom_sock_send does not use zero-copy towards loopback peers */
    CHECK_EQ(loom_sock_close(&s), 0);
    peer_join(&p);
    free(buf);
}

struct cb_state {
    int accepted;
    struct loom_baton done;
};

static void on_accept(struct loom_acceptor *a, int fd)
{
    struct cb_state *st = a->data;
    CHECK_GE(fd, 0);
    close(fd);
    if (++st->accepted == 3)
        loom_baton_post(&st->done);
}

static void test_accept_callback(void)
{
    int lfd = loom_listen("127.0.0.1", 0, 16, LOOM_LISTEN_REUSEPORT);
    CHECK_GE(lfd, 0);
    struct loom_acceptor a;
    struct cb_state st = {0};
    loom_baton_init(&st.done);
    CHECK_EQ(loom_acceptor_start(&a, lfd, on_accept, &st), 0);
    int port = loom_socket_port(lfd);
    int c[3];
    for (int i = 0; i < 3; i++) {
        c[i] = loom_connect("127.0.0.1", (uint16_t)port, loom_now_ns() + LOOM_NS_PER_S);
        CHECK_GE(c[i], 0);
    }
    CHECK_EQ(loom_baton_wait(&st.done, loom_now_ns() + 5 * LOOM_NS_PER_S), 0);
    loom_acceptor_stop(&a);
    for (int i = 0; i < 3; i++)
        close(c[i]);
    close(lfd);
    loom_baton_deinit(&st.done);
}

static int test_main(void *arg)
{
    (void)arg;
    listen_fd = loom_listen("127.0.0.1", 0, 128, 0);
    CHECK_GE(listen_fd, 0);
    listen_port = loom_socket_port(listen_fd);
    CHECK_GT(listen_port, 0);
    CHECK_EQ(loom_acceptor_start(&acceptor, listen_fd, NULL, NULL), 0);
    struct loom_net_stats st;
    loom_net_stats_get(&st);
    CHECK_EQ(st.buffers, BUFS);
    CHECK_EQ(st.buffer_size, BUF_SIZE);
    test_errors();
    test_connect_deadline();
    test_recv_lend_and_copy();
    test_message_assembly();
    test_reset();
    test_half_close();
    test_recv_deadline_and_pause();
    test_ring_exhaustion();
    test_send_zc();
    test_accept_callback();
    loom_acceptor_stop(&acceptor);
    CHECK_EQ(loom_close(listen_fd), 0);
    return 0;
}

/* A ring that starts with one group of 4 buffers and grows to 4 groups under load. */
static int growth_main(void *arg)
{
    (void)arg;
    listen_fd = loom_listen("127.0.0.1", 0, 128, 0);
    CHECK_GE(listen_fd, 0);
    listen_port = loom_socket_port(listen_fd);
    CHECK_EQ(loom_acceptor_start(&acceptor, listen_fd, NULL, NULL), 0);
    struct loom_net_stats st;
    loom_net_stats_get(&st);
    CHECK_EQ(st.groups, 1u);
    CHECK_EQ(st.buffers, 4u);
    struct peer p;
    size_t len = 12 * BUF_SIZE;
    peer_start(&p, listen_port, PEER_SEND_THEN_CLOSE, len);
    struct loom_sock s;
    accept_one(&s);
    loom_sock_set_rx_limit(&s, 1u << 30);
    int64_t until = loom_now_ns() + 5 * LOOM_NS_PER_S;
    do {
        loom_sleep(5 * LOOM_NS_PER_MS);
        loom_net_stats_get(&st);
    } while (st.buffers_in_use < 12 && loom_now_ns() < until);
    CHECK_EQ(st.buffers_in_use, 12u); /* more than one group could hold */
    CHECK_GE(st.groups, 3u); /* a receive that raced an empty group may have added one more */
    CHECK_LE(st.groups, 4u);
    CHECK_EQ(st.buffers, st.groups * 4);
    char *got = malloc(len), *want = malloc(len);
    pattern(want, len, 7);
    CHECK_EQ(loom_sock_read(&s, got, len, true, loom_now_ns() + 5 * LOOM_NS_PER_S), (ssize_t)len);
    CHECK(memcmp(got, want, len) == 0);
    CHECK_EQ(loom_sock_close(&s), 0);
    peer_join(&p);
    check_no_buffers_held();
    free(got);
    free(want);
    loom_acceptor_stop(&acceptor);
    CHECK_EQ(loom_close(listen_fd), 0);
    return 0;
}

int main(void)
{
    alarm(120);
    struct loom_config config;
    test_config(&config, 1);
    config.net_buffer_size = BUF_SIZE;
    config.net_buffer_bytes = BUFS * BUF_SIZE;
    CHECK_EQ(loom_run(&config, test_main, NULL), 0);
    test_config(&config, 1);
    config.net_buffer_size = BUF_SIZE;
    config.net_buffer_bytes = BUFS * BUF_SIZE;
    config.net_buffer_group = 4;
    CHECK_EQ(loom_run(&config, growth_main, NULL), 0);
    return 0;
}
