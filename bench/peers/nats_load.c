/* SPDX-License-Identifier: MIT
 * nats_load.c - the NATS JetStream load generator of the peer comparison: asynchronous
 * publishes with acknowledgements (libnats js_PublishAsync, at most `inflight` pending) of
 * fixed-size records to one stream with file storage, which the tool creates (and deletes
 * first if it exists). Options and result line: peer_load.h.
 *
 *     nats_load [--port 4222] [--size 1024] [--inflight 256] [--duration 5] [--config js_file]
 *
 * The send time travels in the record's first 8 bytes: the ack handler (on libnats's
 * subscription thread, the only writer of the result) reads it back from the published
 * message, so no table maps acks to records. The main thread reads the result only after
 * js_PublishAsyncComplete() and an acquire load of the ack count the handler releases.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nats/nats.h>

#include "peer_load.h"

#define STREAM_NAME    "TURBINE_PEERS"
#define STREAM_SUBJECT "turbine.peers"

struct run {
    uint64_t warm_ns;
    struct peer_load_result result; /* written by the ack handler only */
    atomic_uint_fast64_t acked;
    atomic_uint_fast64_t failed;
};

static void ack_handler(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    struct run *run = closure;
    uint64_t now = peer_load_now_ns();
    if (pa == NULL) {
        fprintf(stderr, "nats_load: publish failed: %s\n",
                pae && pae->ErrText ? pae->ErrText : "unknown error");
        atomic_fetch_add_explicit(&run->failed, 1, memory_order_relaxed);
    } else {
        uint64_t sent_at;
        memcpy(&sent_at, natsMsg_GetData(msg), sizeof(sent_at));
        run->result.total++;
        if (sent_at >= run->warm_ns) {
            if (run->result.count == 0)
                run->result.first_send_ns = sent_at;
            run->result.count++;
            run->result.last_ack_ns = now;
            turbine_histogram_record(&run->result.latency_ns, now - sent_at);
        }
    }
    natsMsg_Destroy(msg);
    atomic_fetch_add_explicit(&run->acked, 1, memory_order_release);
}

static void check(natsStatus s, const char *what)
{
    if (s != NATS_OK)
        peer_load_die("%s: %s (%s)", what, natsStatus_GetText(s), nats_GetLastError(NULL));
}

static void create_stream(jsCtx *js)
{
    jsErrCode jerr = 0;
    js_DeleteStream(js, STREAM_NAME, NULL, &jerr); /* absent is fine */
    jsStreamConfig config;
    jsStreamConfig_Init(&config);
    const char *subjects[] = {STREAM_SUBJECT};
    config.Name = STREAM_NAME;
    config.Subjects = subjects;
    config.SubjectsLen = 1;
    config.Storage = js_FileStorage;
    config.Replicas = 1;
    jsStreamInfo *info = NULL;
    natsStatus s = js_AddStream(&info, js, &config, NULL, &jerr);
    if (s != NATS_OK)
        peer_load_die("creating stream %s: %s (JetStream error %d)", STREAM_NAME,
                      natsStatus_GetText(s), (int)jerr);
    jsStreamInfo_Destroy(info);
}

/* Publishes until the end of the run; returns how many. */
static uint64_t publish_all(jsCtx *js, const struct peer_load_options *options, char *payload)
{
    uint64_t start = peer_load_now_ns();
    uint64_t end =
        options->duration_s > 0 ? start + (uint64_t)(options->duration_s * 1e9) : UINT64_MAX;
    uint64_t sent = 0;
    for (;;) {
        uint64_t now = peer_load_now_ns();
        if (now >= end || (options->count > 0 && sent == options->count))
            break;
        memcpy(payload, &now, sizeof(now));
        /* blocks while `inflight` publishes are pending (StallWait) */
        check(js_PublishAsync(js, STREAM_SUBJECT, payload, (int)options->size, NULL), "publish");
        sent++;
    }
    return sent;
}

int main(int argc, char **argv)
{
    static struct run run; /* the histogram is ~58 KiB */
    struct peer_load_options options;
    peer_load_parse(&options, argc, argv, 4222);
    char url[300];
    snprintf(url, sizeof(url), "nats://%s:%d", options.host, options.port);
    turbine_histogram_init(&run.result.latency_ns);

    natsConnection *nc = NULL;
    check(natsConnection_ConnectTo(&nc, url), url);
    jsOptions js_options;
    check(jsOptions_Init(&js_options), "jsOptions_Init");
    js_options.Wait = 10000;
    js_options.PublishAsync.MaxPending = options.inflight;
    js_options.PublishAsync.AckHandler = ack_handler;
    js_options.PublishAsync.AckHandlerClosure = &run;
    js_options.PublishAsync.StallWait = 30000; /* a full window waits, it is not an error */
    jsCtx *js = NULL;
    check(natsConnection_JetStream(&js, nc, &js_options), "JetStream context");
    create_stream(js);

    char *payload = malloc(options.size);
    if (payload == NULL)
        peer_load_die("out of memory");
    for (uint32_t i = 0; i < options.size; i++)
        payload[i] = (char)('a' + i % 26);
    run.warm_ns = peer_load_now_ns() + (uint64_t)(options.warmup_s * 1e9);
    uint64_t sent = publish_all(js, &options, payload);

    jsPubOptions wait;
    jsPubOptions_Init(&wait);
    wait.MaxWait = 60000;
    check(js_PublishAsyncComplete(js, &wait), "waiting for the acknowledgements");
    while (atomic_load_explicit(&run.acked, memory_order_acquire) < sent)
        nats_Sleep(1); /* the handler of the last ack may still be returning */
    if (atomic_load_explicit(&run.failed, memory_order_relaxed) > 0)
        peer_load_die("%llu publishes failed", (unsigned long long)atomic_load(&run.failed));
    peer_load_report("nats", &options, &run.result);

    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    nats_Close();
    free(payload);
    return 0;
}
