/* SPDX-License-Identifier: MIT
 * admin.c - topic administration over METADATA, CREATE_TOPICS, DELETE_TOPICS and
 * DESCRIBE_TOPICS: one topic per call, each a blocking request with the client's timeout.
 *
 * Reads (METADATA, DESCRIBE_TOPICS) are sent again after a reconnect; creates and deletes are
 * not (the broker may have applied them): their caller sees the connection error.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "client_internal.h"

struct names {
    const char *name; /* NULL: no names (every topic) */
    int32_t partitions;
    const struct turbine_topic_config *config;
    int32_t timeout_ms;
};

static bool name_ok(const char *name)
{
    return name && turbine_topic_name_valid(name, strlen(name));
}

static void metadata_encode(struct turbine_proto_writer *w, void *ctx)
{
    struct names *n = ctx;
    struct turbine_metadata_request head = {.topic_count = n->name ? 1 : 0};
    turbine_metadata_request_begin(w, 0, &head);
    if (n->name)
        turbine_proto_add_name(w, n->name, strlen(n->name));
}

static int metadata(struct turbine_client *c, const char *topic, uint8_t **frame,
                    struct turbine_metadata_response *out)
{
    struct names n = {.name = topic};
    struct turbine_response resp;
    int rc = tc_call(c, metadata_encode, &n, TC_REQ_RESEND, 0, frame, &resp);
    if (rc < 0)
        return rc;
    enum turbine_error e = turbine_metadata_response_decode(&resp, out);
    if (e != TURBINE_ERR_NONE) {
        free(*frame);
        return TURBINE_CLIENT_ERR(e);
    }
    return 0;
}

int turbine_admin_partitions(struct turbine_client *c, const char *topic)
{
    if (!name_ok(topic))
        return -EINVAL;
    uint8_t *frame;
    struct turbine_metadata_response md;
    int rc = metadata(c, topic, &frame, &md);
    if (rc < 0)
        return rc;
    struct turbine_metadata_topic t;
    rc = TURBINE_CLIENT_ERR(TURBINE_ERR_UNKNOWN_TOPIC);
    while (turbine_metadata_next_topic(&md.topics, &t)) {
        if (t.name_size != strlen(topic) || memcmp(t.name, topic, t.name_size) != 0)
            continue;
        rc = t.error ? TURBINE_CLIENT_ERR(t.error) : (int)t.partition_count;
        break;
    }
    free(frame);
    return rc;
}

int turbine_admin_list_topics(struct turbine_client *c, struct turbine_topic_info **out,
                              size_t *count)
{
    *out = NULL;
    *count = 0;
    uint8_t *frame;
    struct turbine_metadata_response md;
    int rc = metadata(c, NULL, &frame, &md);
    if (rc < 0)
        return rc;
    struct turbine_topic_info *list = NULL;
    if (md.topic_count > 0) {
        list = calloc(md.topic_count, sizeof(*list));
        if (!list) {
            free(frame);
            return -ENOMEM;
        }
    }
    size_t n = 0;
    struct turbine_metadata_topic t;
    while (turbine_metadata_next_topic(&md.topics, &t)) {
        if (t.error != TURBINE_ERR_NONE)
            continue;
        TURBINE_ASSERT(t.name_size <= TURBINE_TOPIC_NAME_MAX);
        memcpy(list[n].name, t.name, t.name_size);
        list[n].partitions = (int32_t)t.partition_count;
        n++;
    }
    free(frame);
    *out = list;
    *count = n;
    return 0;
}

static void create_encode(struct turbine_proto_writer *w, void *ctx)
{
    struct names *n = ctx;
    struct turbine_create_topics_request head = {.timeout_ms = n->timeout_ms, .topic_count = 1};
    turbine_create_topics_request_begin(w, 0, &head);
    struct turbine_create_topic t = {
        .name = n->name, .name_size = (uint16_t)strlen(n->name), .partitions = n->partitions};
    if (n->config) {
        t.config = *n->config;
    } else {
        t.config = (struct turbine_topic_config){.retention_ms = TURBINE_CONFIG_DEFAULT,
                                                 .retention_bytes = TURBINE_CONFIG_DEFAULT,
                                                 .segment_bytes = TURBINE_CONFIG_DEFAULT,
                                                 .durability = TURBINE_TOPIC_DURABILITY_DEFAULT};
    }
    turbine_create_topics_add_topic(w, &t);
}

static void delete_encode(struct turbine_proto_writer *w, void *ctx)
{
    struct names *n = ctx;
    struct turbine_delete_topics_request head = {.timeout_ms = n->timeout_ms, .topic_count = 1};
    turbine_delete_topics_request_begin(w, 0, &head);
    turbine_proto_add_name(w, n->name, strlen(n->name));
}

/* CREATE_TOPICS or DELETE_TOPICS: the one topic's error. */
static int topics_call(struct turbine_client *c, tc_encode_fn fn, struct names *n)
{
    n->timeout_ms = c->config.request_timeout_ms;
    uint8_t *frame;
    struct turbine_response resp;
    int rc = tc_call(c, fn, n, 0, 0, &frame, &resp);
    if (rc < 0)
        return rc;
    struct turbine_topics_response body;
    enum turbine_error e = turbine_topics_response_decode(&resp, &body);
    struct turbine_topic_result res;
    rc = e ? TURBINE_CLIENT_ERR(e) : -EPROTO;
    while (e == TURBINE_ERR_NONE && turbine_topics_next_result(&body.topics, &res))
        if (res.name_size == strlen(n->name) && memcmp(res.name, n->name, res.name_size) == 0)
            rc = res.error ? TURBINE_CLIENT_ERR(res.error) : 0;
    free(frame);
    return rc;
}

int turbine_admin_create_topic(struct turbine_client *c, const char *topic, int32_t partitions,
                               const struct turbine_topic_config *config)
{
    if (!name_ok(topic) || partitions < 1)
        return -EINVAL;
    struct names n = {.name = topic, .partitions = partitions, .config = config};
    return topics_call(c, create_encode, &n);
}

int turbine_admin_delete_topic(struct turbine_client *c, const char *topic)
{
    if (!name_ok(topic))
        return -EINVAL;
    struct names n = {.name = topic};
    return topics_call(c, delete_encode, &n);
}

static void describe_encode(struct turbine_proto_writer *w, void *ctx)
{
    struct names *n = ctx;
    struct turbine_describe_topics_request head = {.topic_count = 1};
    turbine_describe_topics_request_begin(w, 0, &head);
    turbine_proto_add_name(w, n->name, strlen(n->name));
}

int turbine_admin_describe_topic(struct turbine_client *c, const char *topic,
                                 struct turbine_topic_description **out)
{
    *out = NULL;
    if (!name_ok(topic))
        return -EINVAL;
    struct names n = {.name = topic};
    uint8_t *frame;
    struct turbine_response resp;
    int rc = tc_call(c, describe_encode, &n, TC_REQ_RESEND, 0, &frame, &resp);
    if (rc < 0)
        return rc;
    struct turbine_describe_topics_response body;
    enum turbine_error e = turbine_describe_topics_response_decode(&resp, &body);
    struct turbine_describe_topic t;
    rc = e ? TURBINE_CLIENT_ERR(e) : TURBINE_CLIENT_ERR(TURBINE_ERR_UNKNOWN_TOPIC);
    while (e == TURBINE_ERR_NONE && turbine_describe_next_topic(&body.topics, &t)) {
        if (t.name_size != strlen(topic) || memcmp(t.name, topic, t.name_size) != 0)
            continue;
        if (t.error) {
            rc = TURBINE_CLIENT_ERR(t.error);
            break;
        }
        struct turbine_topic_description *d =
            calloc(1, sizeof(*d) + t.partition_count * sizeof(d->partitions[0]));
        if (!d) {
            rc = -ENOMEM;
            break;
        }
        memcpy(d->name, t.name, t.name_size);
        d->config = t.config;
        while (d->partition_count < t.partition_count &&
               turbine_describe_next_partition(&t.partitions, &d->partitions[d->partition_count]))
            d->partition_count++;
        *out = d;
        rc = 0;
        break;
    }
    free(frame);
    return rc;
}
