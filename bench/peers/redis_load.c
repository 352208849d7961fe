/* SPDX-License-Identifier: MIT
 * redis_load.c - the Redis Streams load generator of the peer comparison: XADD of fixed-size
 * records to one stream over one connection (hiredis), pipelined with `inflight` commands
 * outstanding. Options and result line: peer_load.h.
 *
 *     redis_load [--port 6379] [--size 1024] [--inflight 256] [--duration 5] [--config memory]
 *
 * Each command is XADD turbine-peers * v <size bytes>. Redis answers a connection's commands
 * in order, so a ring of send times indexed by command number gives each reply its latency.
 * The loop: append as many commands as the window allows, write them all (one clock read
 * for the batch, taken before the write), then block for at least one reply and take every
 * reply already buffered (one clock read per socket read). The stream is deleted first so a
 * run starts from an empty key.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "peer_load.h"

#define STREAM_KEY "turbine-peers"

struct run {
    redisContext *c;
    const struct peer_load_options *options;
    const char *argv[5];
    size_t lengths[5];
    uint64_t *send_ns; /* ring of `inflight`, indexed by command number */
    uint64_t sent;     /* commands written */
    uint64_t acked;    /* replies read */
    uint64_t warm_ns;  /* commands sent from here on are counted */
    struct peer_load_result result;
};

static void check_reply(struct run *run, redisReply *reply)
{
    if (reply == NULL)
        peer_load_die("connection: %s", run->c->errstr);
    if (reply->type != REDIS_REPLY_STRING)
        peer_load_die("XADD answered %s",
                      reply->type == REDIS_REPLY_ERROR ? reply->str : "not a stream ID");
    freeReplyObject(reply);
}

/* Appends commands up to the window (or the end of the run) and writes them. */
static void send_batch(struct run *run, bool more)
{
    uint64_t first = run->sent;
    while (more && run->sent - run->acked < run->options->inflight) {
        if (run->options->count > 0 && run->sent == run->options->count)
            break;
        if (redisAppendCommandArgv(run->c, 5, run->argv, run->lengths) != REDIS_OK)
            peer_load_die("append: %s", run->c->errstr);
        run->sent++;
    }
    if (run->sent == first)
        return;
    uint64_t now = peer_load_now_ns();
    for (uint64_t i = first; i < run->sent; i++)
        run->send_ns[i % run->options->inflight] = now;
    int done = 0;
    do {
        if (redisBufferWrite(run->c, &done) != REDIS_OK)
            peer_load_die("write: %s", run->c->errstr);
    } while (!done);
}

static void count_reply(struct run *run, uint64_t now)
{
    uint64_t sent_at = run->send_ns[run->acked % run->options->inflight];
    run->acked++;
    run->result.total++;
    if (sent_at < run->warm_ns)
        return;
    if (run->result.count == 0)
        run->result.first_send_ns = sent_at;
    run->result.count++;
    run->result.last_ack_ns = now;
    turbine_histogram_record(&run->result.latency_ns, now - sent_at);
}

/* Blocks for one reply, then takes every reply already read from the socket. */
static void receive_replies(struct run *run)
{
    void *reply = NULL;
    if (redisGetReply(run->c, &reply) != REDIS_OK)
        peer_load_die("read: %s", run->c->errstr);
    uint64_t now = peer_load_now_ns();
    check_reply(run, reply);
    count_reply(run, now);
    while (run->acked < run->sent) {
        reply = NULL;
        if (redisReaderGetReply(run->c->reader, &reply) != REDIS_OK)
            peer_load_die("protocol: %s", run->c->reader->errstr);
        if (reply == NULL)
            break;
        check_reply(run, reply);
        count_reply(run, now);
    }
}

static void reset_stream(redisContext *c)
{
    redisReply *reply = redisCommand(c, "DEL %s", STREAM_KEY);
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
        peer_load_die("DEL: %s", reply ? reply->str : c->errstr);
    freeReplyObject(reply);
}

int main(int argc, char **argv)
{
    static struct run run; /* the histogram is ~58 KiB */
    struct peer_load_options options;
    peer_load_parse(&options, argc, argv, 6379);
    run.options = &options;
    run.c = redisConnect(options.host, options.port);
    if (run.c == NULL || run.c->err)
        peer_load_die("connect %s:%d: %s", options.host, options.port,
                      run.c ? run.c->errstr : "out of memory");
    reset_stream(run.c);
    char *payload = malloc(options.size);
    run.send_ns = calloc(options.inflight, sizeof(*run.send_ns));
    if (payload == NULL || run.send_ns == NULL)
        peer_load_die("out of memory");
    for (uint32_t i = 0; i < options.size; i++)
        payload[i] = (char)('a' + i % 26);
    const char *args[5] = {"XADD", STREAM_KEY, "*", "v", payload};
    size_t lengths[5] = {4, strlen(STREAM_KEY), 1, 1, options.size};
    memcpy(run.argv, args, sizeof(args));
    memcpy(run.lengths, lengths, sizeof(lengths));
    turbine_histogram_init(&run.result.latency_ns);

    uint64_t start = peer_load_now_ns();
    uint64_t end =
        options.duration_s > 0 ? start + (uint64_t)(options.duration_s * 1e9) : UINT64_MAX;
    run.warm_ns = start + (uint64_t)(options.warmup_s * 1e9);
    for (;;) {
        bool more = peer_load_now_ns() < end;
        send_batch(&run, more);
        if (run.acked == run.sent)
            break;
        receive_replies(&run);
    }
    peer_load_report("redis", &options, &run.result);
    redisFree(run.c);
    free(run.send_ns);
    free(payload);
    return 0;
}
