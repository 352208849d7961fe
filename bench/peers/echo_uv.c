/* SPDX-License-Identifier: MIT
 * echo_uv.c - the libuv baseline for the echo benchmark: a TCP echo server written the way the
 * libuv documentation and its own benchmarks write one, on one thread pinned to one CPU.
 *
 *     echo_uv --cpu N --port P
 *
 * uv_read_start() reads into a buffer from alloc_callback(); read_callback() hands the same
 * buffer to uv_write() (no copy), and write_callback() frees it. Buffers are recycled through a
 * free list so that malloc does not count against libuv (the list holds at most as many buffers
 * as were ever in flight at once). SIGTERM or SIGINT ends it cleanly (exit 0).
 */
#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#define BUF_BYTES 65536 /* libuv's suggested read size */

/* A read buffer and the write that sends it back. */
struct echo_buf {
    uv_write_t write;
    struct echo_buf *next_free;
    char data[BUF_BYTES];
};

static struct echo_buf *free_bufs;
static uv_tcp_t server;
static uv_signal_t sigterm, sigint;

static void die(const char *what, int err)
{
    fprintf(stderr, "echo_uv: %s: %s\n", what, err < 0 ? uv_strerror(err) : strerror(err));
    exit(1);
}

static struct echo_buf *buf_get(void)
{
    struct echo_buf *b = free_bufs;
    if (b != NULL) {
        free_bufs = b->next_free;
        return b;
    }
    b = malloc(sizeof(*b));
    if (b == NULL)
        die("malloc", ENOMEM);
    return b;
}

static void buf_put(struct echo_buf *b)
{
    b->next_free = free_bufs;
    free_bufs = b;
}

static struct echo_buf *buf_of(const char *data)
{
    return (struct echo_buf *)(data - offsetof(struct echo_buf, data));
}

static void alloc_callback(uv_handle_t *handle, size_t suggested_size, uv_buf_t *buf)
{
    (void)handle;
    (void)suggested_size;
    struct echo_buf *b = buf_get();
    *buf = uv_buf_init(b->data, BUF_BYTES);
}

static void close_callback(uv_handle_t *handle)
{
    free(handle);
}

static void write_callback(uv_write_t *req, int status)
{
    struct echo_buf *b = (struct echo_buf *)req;
    buf_put(b);
    if (status < 0 && !uv_is_closing((uv_handle_t *)req->handle))
        uv_close((uv_handle_t *)req->handle, close_callback);
}

static void read_callback(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    if (nread > 0) {
        struct echo_buf *b = buf_of(buf->base);
        uv_buf_t out = uv_buf_init(buf->base, (unsigned)nread);
        int rc = uv_write(&b->write, stream, &out, 1, write_callback);
        if (rc < 0) {
            buf_put(b);
            if (!uv_is_closing((uv_handle_t *)stream))
                uv_close((uv_handle_t *)stream, close_callback);
        }
        return;
    }
    if (buf->base != NULL)
        buf_put(buf_of(buf->base));
    if (nread < 0 && !uv_is_closing((uv_handle_t *)stream)) /* UV_EOF or an error */
        uv_close((uv_handle_t *)stream, close_callback);
}

static void connection_callback(uv_stream_t *listener, int status)
{
    if (status < 0) {
        fprintf(stderr, "echo_uv: accept: %s\n", uv_strerror(status));
        return;
    }
    uv_tcp_t *client = malloc(sizeof(*client));
    if (client == NULL)
        die("malloc", ENOMEM);
    uv_tcp_init(listener->loop, client);
    if (uv_accept(listener, (uv_stream_t *)client) != 0) {
        uv_close((uv_handle_t *)client, close_callback);
        return;
    }
    uv_tcp_nodelay(client, 1);
    uv_read_start((uv_stream_t *)client, alloc_callback, read_callback);
}

static void close_walk_callback(uv_handle_t *handle, void *arg)
{
    (void)arg;
    if (uv_is_closing(handle))
        return;
    /* the server and the signal handles are static; connections were malloc'ed */
    bool is_static = handle == (uv_handle_t *)&server || handle == (uv_handle_t *)&sigterm ||
                     handle == (uv_handle_t *)&sigint;
    uv_close(handle, is_static ? NULL : close_callback);
}

static void signal_callback(uv_signal_t *handle, int signum)
{
    (void)signum;
    uv_walk(handle->loop, close_walk_callback, NULL);
}

static void usage(void)
{
    fprintf(stderr, "usage: echo_uv [--cpu N] --port P\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"cpu", required_argument, NULL, 'c'}, {"port", required_argument, NULL, 'p'}, {0}};
    int cpu = 0, port = 0, opt;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        if (opt == 'c')
            cpu = atoi(optarg);
        else if (opt == 'p')
            port = atoi(optarg);
        else
            usage();
    }
    if (port <= 0 || port > 65535 || cpu < 0)
        usage();
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof(set), &set) != 0)
        die("sched_setaffinity", errno);

    signal(SIGPIPE, SIG_IGN); /* a peer gone mid-write is an error return, not a signal */
    uv_loop_t *loop = uv_default_loop();
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", port, &addr);
    uv_tcp_init(loop, &server);
    int rc = uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0); /* sets SO_REUSEADDR */
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&server, 1024, connection_callback);
    if (rc < 0)
        die("bind/listen", rc);
    uv_signal_init(loop, &sigterm);
    uv_signal_start(&sigterm, signal_callback, SIGTERM);
    uv_signal_init(loop, &sigint);
    uv_signal_start(&sigint, signal_callback, SIGINT);

    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    while (free_bufs != NULL) {
        struct echo_buf *b = free_bufs;
        free_bufs = b->next_free;
        free(b);
    }
    return 0;
}
