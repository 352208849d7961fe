/* SPDX-License-Identifier: MIT
 * topics_test.c - the topic registry on two cores: names, the FNV-1a hash's known values and
 * partition owners; create / delete with the routing table checked on both cores; a delete
 * that waits for a hold on the other core; restart (reload from disk, same ids and version);
 * and damaged registry files refused with file:line, never loaded in part.
 * LOOM_TEST_TAGS: tsan
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <loom/loom.h>

#include "broker/topics.h"
#include "harness.h"
#include "turbine/batch.h"

static char root[256];
static char error[1024];

static void check_names_and_hash(void)
{
    CHECK_EQ(turbine_topic_hash("", 0), 0x811c9dc5u);
    CHECK_EQ(turbine_topic_hash("a", 1), 0xe40c292cu);
    CHECK_EQ(turbine_topic_hash("foobar", 6), 0xbf9cf968u);
    /* owners: (hash + partition) mod cores, summed without wrapping */
    CHECK_EQ(turbine_partition_owner(0xbf9cf968u, 0, 2), 0);
    CHECK_EQ(turbine_partition_owner(0xbf9cf968u, 1, 2), 1);
    CHECK_EQ(turbine_partition_owner(0xbf9cf968u, 0, 3), 0xbf9cf968u % 3);
    CHECK_EQ(turbine_partition_owner(0xffffffffu, 1, 3), 0x100000000ull % 3); /* 1, not 0 */
    CHECK_EQ(turbine_partition_owner(7, 5, 1), 0);
    const char *good[] = {"a",         "orders", "Orders.v2", "with_underscore",
                          "with-dash", "...",    "a..b"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        CHECK(turbine_topic_name_valid(good[i], strlen(good[i])));
    const char *bad[] = {"", ".", "..", "a b", "a/b", "tab\t", "ü", "a:b", "*"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK(!turbine_topic_name_valid(bad[i], strlen(bad[i])));
    char name[251];
    memset(name, 'n', sizeof(name));
    CHECK(turbine_topic_name_valid(name, 249));
    CHECK(!turbine_topic_name_valid(name, 250));
}

static struct turbine_topic_settings settings(void)
{
    struct turbine_broker_config c;
    turbine_broker_config_init(&c);
    struct turbine_topic_settings s;
    turbine_topic_settings_from_config(&s, &c);
    return s;
}

/* What one core should see; checked by check_on_core() on the core itself. */
struct expect {
    uint64_t version;
    uint32_t count;
    const char *present;                /* a topic that must be there, or NULL */
    uint32_t partitions;                /* of `present` */
    uint64_t id;                        /* of `present` */
    const char *absent;                 /* a topic that must not be, or NULL */
    enum turbine_durability durability; /* of `present`; NONE = the default, FSYNC */
};

static int check_on_core(void *arg)
{
    const struct expect *e = arg;
    const struct turbine_routing *r = turbine_routing_get();
    CHECK(r != NULL);
    CHECK_EQ(r->version, e->version);
    CHECK_EQ(r->topic_count, e->count);
    for (uint32_t i = 0; i < r->topic_count; i++) { /* sorted, and each finds itself */
        const struct turbine_topic_entry *t = &r->topics[i];
        if (i > 0)
            CHECK_LT(strcmp(r->topics[i - 1].name, t->name), 0);
        CHECK(turbine_routing_find(r, t->name, t->name_len) == t);
        CHECK_EQ(t->hash, turbine_topic_hash(t->name, t->name_len));
    }
    if (e->present) {
        const struct turbine_topic_entry *t =
            turbine_routing_find(r, e->present, strlen(e->present));
        CHECK(t != NULL);
        CHECK_STREQ(t->name, e->present);
        CHECK_EQ(t->partitions, e->partitions);
        CHECK_EQ(t->id, e->id);
        CHECK_EQ(t->settings.durability, e->durability ? e->durability : TURBINE_DURABLE_FSYNC);
    }
    if (e->absent)
        CHECK(turbine_routing_find(r, e->absent, strlen(e->absent)) == NULL);
    /* a prefix or extension of a name is another name */
    CHECK(turbine_routing_find(r, "orders", 5) == NULL);
    return 0;
}

static void check_both_cores(const struct expect *e)
{
    CHECK_EQ(check_on_core((void *)e), 0);
    CHECK_EQ(loom_invoke_on(1, check_on_core, (void *)e, LOOM_NO_DEADLINE), 0);
}

static int check_none_on_core(void *arg)
{
    (void)arg;
    CHECK(turbine_routing_get() == NULL);
    return 0;
}

/* ---- a hold on core 1 delays a delete on core 0 ------------------------------------------- */

static atomic_int holder_state; /* 0 idle, 1 holding, 2 released */

static int holder(void *arg)
{
    (void)arg;
    const struct turbine_routing *r = turbine_routing_acquire();
    CHECK(r != NULL);
    CHECK(turbine_routing_find(r, "held", 4) != NULL);
    atomic_store(&holder_state, 1);
    loom_sleep(150 * LOOM_NS_PER_MS);
    /* the delete is installed by now, but our snapshot still has the topic */
    CHECK(turbine_routing_find(turbine_routing_get(), "held", 4) == NULL);
    CHECK(turbine_routing_find(r, "held", 4) != NULL);
    atomic_store(&holder_state, 2);
    turbine_routing_release(r);
    return 0;
}

static void check_drain(struct turbine_topics *t)
{
    struct turbine_topic_settings s = settings();
    CHECK_EQ(turbine_topics_create(t, "held", 2, &s, NULL), 0);
    atomic_store(&holder_state, 0);
    CHECK_EQ(loom_submit_to(1, holder, NULL), 0);
    while (atomic_load(&holder_state) == 0)
        loom_sleep(LOOM_NS_PER_MS);
    int64_t start = loom_now_ns();
    CHECK_EQ(turbine_topics_delete(t, "held"), 0);
    CHECK_EQ(atomic_load(&holder_state), 2); /* returned only after the release */
    CHECK_GE(loom_now_ns() - start, 50 * LOOM_NS_PER_MS);
}

/* ---- the registry --------------------------------------------------------------------------- */

static void data_dir(char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s/%s", root, name);
}

static void check_registry(void)
{
    char dir[300];
    data_dir(dir, sizeof(dir), "data");
    struct turbine_topics *t;
    CHECK_EQ(turbine_topics_open(dir, &t, error, sizeof(error)), 0);
    CHECK_EQ(turbine_topics_version(t), 0);
    check_both_cores(&(struct expect){.version = 0, .count = 0, .absent = "orders"});

    struct turbine_topic_settings s = settings();
    uint64_t id;
    CHECK_EQ(turbine_topics_create(t, "orders", 3, &s, &id), 0);
    CHECK_EQ(id, 1);
    check_both_cores(
        &(struct expect){.version = 1, .count = 1, .present = "orders", .partitions = 3, .id = 1});
    CHECK_EQ(turbine_topics_create(t, "orders", 5, &s, NULL), -EEXIST);
    CHECK_EQ(turbine_topics_create(t, "bad name", 1, &s, NULL), -EINVAL);
    CHECK_EQ(turbine_topics_create(t, "..", 1, &s, NULL), -EINVAL);
    CHECK_EQ(turbine_topics_create(t, "zero", 0, &s, NULL), -EINVAL);
    CHECK_EQ(turbine_topics_create(t, "many", TURBINE_PARTITIONS_MAX + 1, &s, NULL), -EINVAL);
    struct turbine_topic_settings bad = s;
    bad.durability = TURBINE_DURABLE_NONE;
    CHECK_EQ(turbine_topics_create(t, "x", 1, &bad, NULL), -EINVAL);
    CHECK_EQ(turbine_topics_delete(t, "missing"), -ENOENT);
    CHECK_EQ(turbine_topics_version(t), 1); /* failures change nothing */

    /* enough topics to fill the hash table's probe chains */
    int n = (int)test_scale(300);
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof(name), "t%04d", i);
        CHECK_EQ(turbine_topics_create(t, name, (uint32_t)(1 + i % 7), &s, &id), 0);
        CHECK_EQ(id, (uint64_t)i + 2);
    }
    for (int i = 0; i < n; i += 3) {
        char name[32];
        snprintf(name, sizeof(name), "t%04d", i);
        CHECK_EQ(turbine_topics_delete(t, name), 0);
    }
    uint64_t version = 1 + (uint64_t)n + (uint64_t)(n + 2) / 3;
    uint32_t count = 1 + (uint32_t)n - (uint32_t)(n + 2) / 3;
    CHECK_EQ(turbine_topics_version(t), version);
    check_both_cores(&(struct expect){.version = version,
                                      .count = count,
                                      .present = "t0001",
                                      .partitions = 2,
                                      .id = 3,
                                      .absent = "t0000"});
    check_drain(t);
    version += 2;
    /* a deleted name may be created again, with a new id */
    CHECK_EQ(turbine_topics_create(t, "t0000", 4, &s, &id), 0);
    CHECK_EQ(id, (uint64_t)n + 3);
    version++;
    count++;
    turbine_topics_close(t);
    CHECK_EQ(loom_invoke_on(1, check_none_on_core, NULL, LOOM_NO_DEADLINE), 0);

    /* restart: the same topics, ids and version */
    CHECK_EQ(turbine_topics_open(dir, &t, error, sizeof(error)), 0);
    CHECK_EQ(turbine_topics_version(t), version);
    check_both_cores(&(struct expect){.version = version,
                                      .count = count,
                                      .present = "t0000",
                                      .partitions = 4,
                                      .id = (uint64_t)n + 3,
                                      .absent = "held"});
    check_both_cores(&(struct expect){
        .version = version, .count = count, .present = "orders", .partitions = 3, .id = 1});
    CHECK_EQ(turbine_topics_create(t, "after-restart", 1, &s, &id), 0);
    CHECK_EQ(id, (uint64_t)n + 4); /* ids are never reused, across restarts too */
    turbine_topics_close(t);
}

/* ---- damaged files -------------------------------------------------------------------------- */

static void write_raw(const char *dir, const char *text, size_t len)
{
    mkdir(dir, 0755);
    char path[400];
    snprintf(path, sizeof(path), "%s/topics", dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    CHECK_EQ(fwrite(text, 1, len, f), len);
    CHECK_EQ(fclose(f), 0);
}

/* `body` (everything before the CRC line) with a correct CRC line appended. */
static void write_with_crc(const char *dir, const char *body)
{
    char text[4096];
    int n = snprintf(text, sizeof(text), "%scrc32c %08x\n", body,
                     turbine_crc32c(0, body, strlen(body)));
    write_raw(dir, text, (size_t)n);
}

static void expect_open_fails(const char *dir, int rc, const char *message)
{
    char path[400], before[4096], after[4096];
    snprintf(path, sizeof(path), "%s/topics", dir);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    size_t n = fread(before, 1, sizeof(before), f);
    fclose(f);
    struct turbine_topics *t = NULL;
    CHECK_EQ(turbine_topics_open(dir, &t, error, sizeof(error)), rc);
    CHECK_CONTAINS(error, path);
    CHECK_CONTAINS(error, message);
    CHECK(strchr(error, '\n') == NULL);
    CHECK(turbine_routing_get() == NULL);
    f = fopen(path, "r"); /* left as it was, for a human to look at */
    CHECK(f != NULL);
    CHECK_EQ(fread(after, 1, sizeof(after), f), n);
    fclose(f);
    CHECK(memcmp(before, after, n) == 0);
}

static void check_damage(void)
{
    const char *good = "turbine-topics 1\n"
                       "version 3 next_id 4 topics 2\n"
                       "topic 1 alpha 2 604800000 0 1073741824 fsync\n"
                       "topic 3 beta 1 0 1048576 1048576 written\n";
    char dir[300];
    data_dir(dir, sizeof(dir), "damage");
    write_with_crc(dir, good);
    struct turbine_topics *t;
    CHECK_EQ(turbine_topics_open(dir, &t, error, sizeof(error)), 0); /* the template is valid */
    check_both_cores(
        &(struct expect){.version = 3, .count = 2, .present = "alpha", .partitions = 2, .id = 1});
    turbine_topics_close(t);

    char text[4096];
    int n = snprintf(text, sizeof(text), "%scrc32c %08x\n", good,
                     turbine_crc32c(0, good, strlen(good)));
    text[60] ^= 0x01; /* one bit in a topic line */
    write_raw(dir, text, (size_t)n);
    expect_open_fails(dir, -EUCLEAN, ":5: CRC-32C mismatch");
    write_raw(dir, good, strlen(good)); /* cut before the CRC line */
    expect_open_fails(dir, -EUCLEAN, ":4: the last line is not 'crc32c XXXXXXXX'");
    write_raw(dir, text, (size_t)n - 1); /* no final newline */
    expect_open_fails(dir, -EUCLEAN, ":1: the file is empty or does not end with a newline");
    write_raw(dir, "", 0);
    expect_open_fails(dir, -EUCLEAN, "the file is empty");
    write_raw(dir, "hello\n", 6);
    expect_open_fails(dir, -EUCLEAN, ":1: not a topic registry");
    write_with_crc(dir, "turbine-topics 2\nversion 1 next_id 1 topics 0\n");
    expect_open_fails(dir, -ENOTSUP, ":1: topic registry format 2, this broker reads format 1");

    /* a correct CRC over wrong content: every line is checked by itself too */
    const struct {
        const char *body;
        const char *message;
    } cases[] = {
        {"turbine-topics 1\nversion 1 next_id 2\n", ":2: expected 'version V next_id N topics C'"},
        {"turbine-topics 1\nversion 1 next_id 2 topics 2\ntopic 1 a 1 0 0 1048576 fsync\n",
         ":4: fewer topic lines than the header's count"},
        {"turbine-topics 1\nversion 1 next_id 3 topics 1\ntopic 1 a 1 0 0 1048576 fsync\n"
         "topic 2 b 1 0 0 1048576 fsync\n",
         ":4: more topic lines than the header's count"},
        {"turbine-topics 1\nversion 1 next_id 2 topics 1\ntopic 1 a/b 1 0 0 1048576 fsync\n",
         ":3: bad topic name: a/b"},
        {"turbine-topics 1\nversion 1 next_id 2 topics 1\ntopic 1 a 0 0 0 1048576 fsync\n",
         ":3: bad partition count: 0"},
        {"turbine-topics 1\nversion 1 next_id 2 topics 1\ntopic 1 a 4097 0 0 1048576 fsync\n",
         ":3: bad partition count: 4097"},
        {"turbine-topics 1\nversion 1 next_id 2 topics 1\ntopic 2 a 1 0 0 1048576 fsync\n",
         ":3: bad topic id: 2"},
        {"turbine-topics 1\nversion 1 next_id 2 topics 1\ntopic 1 a 1 -5 0 1048576 fsync\n",
         ":3: bad retention_ms: -5"},
        {"turbine-topics 1\nversion 1 next_id 2 topics 1\ntopic 1 a 1 0 0 1048576 none\n",
         ":3: bad durability: none"},
        {"turbine-topics 1\nversion 1 next_id 2 topics 1\ntopic 1 a 1 0 0 4096 fsync\n",
         ":3: bad segment_bytes: 4096"},
        {"turbine-topics 1\nversion 1 next_id 2 topics 1\ntopic 1 a 1 0 0 1048576\n",
         ":3: expected 'topic ID NAME"},
        {"turbine-topics 1\nversion 1 next_id 2 topics 1\ntopic 1 a 1 0 0  1048576 fsync\n",
         ":3: expected 'topic ID NAME"},
        {"turbine-topics 1\nversion 1 next_id 2 topics 1\n\n", ":3: expected 'topic ID NAME"},
        {"turbine-topics 1\nversion 1 next_id 4 topics 2\ntopic 1 b 1 0 0 1048576 fsync\n"
         "topic 2 a 1 0 0 1048576 fsync\n",
         ":4: topic out of order or repeated: a"},
        {"turbine-topics 1\nversion 1 next_id 4 topics 2\ntopic 1 a 1 0 0 1048576 fsync\n"
         "topic 1 b 1 0 0 1048576 fsync\n",
         ":4: topic id repeated: 1"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        write_with_crc(dir, cases[i].body);
        expect_open_fails(dir, -EUCLEAN, cases[i].message);
    }

    /* the example in docs/storage-format.md */
    const char *example = "turbine-topics 1\n"
                          "version 7 next_id 5 topics 2\n"
                          "topic 4 clicks 8 86400000 10737418240 1073741824 written\n"
                          "topic 1 orders 3 604800000 0 1073741824 fsync\n"
                          "crc32c 7f8eea03\n";
    write_raw(dir, example, strlen(example));
    CHECK_EQ(turbine_topics_open(dir, &t, error, sizeof(error)), 0);
    check_both_cores(&(struct expect){.version = 7,
                                      .count = 2,
                                      .present = "clicks",
                                      .partitions = 8,
                                      .id = 4,
                                      .durability = TURBINE_DURABLE_WRITTEN});
    turbine_topics_close(t);

    /* a stale temp file from a crash before the rename is removed; the registry stands */
    write_with_crc(dir, good);
    char temp[400];
    snprintf(temp, sizeof(temp), "%s/topics.tmp", dir);
    FILE *f = fopen(temp, "w");
    CHECK(f != NULL);
    fputs("half written", f);
    fclose(f);
    CHECK_EQ(turbine_topics_open(dir, &t, error, sizeof(error)), 0);
    CHECK_EQ(access(temp, F_OK), -1);
    CHECK_EQ(turbine_topics_version(t), 3);
    turbine_topics_close(t);
}

static int test_main(void *arg)
{
    (void)arg;
    CHECK_EQ(loom_core_count(), 2);
    check_registry();
    check_damage();
    return 0;
}

int main(void)
{
    alarm(120);
    check_names_and_hash();
    const char *base = getenv("TMPDIR");
    snprintf(root, sizeof(root), "%s/turbine_topics_test.XXXXXX", base && *base ? base : "/tmp");
    CHECK(mkdtemp(root) != NULL);
    int rc = test_run(2, test_main, NULL);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", root);
    CHECK_EQ(rc, 0);
    return 0;
}
