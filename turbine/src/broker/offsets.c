/* SPDX-License-Identifier: MIT
 * offsets.c - consumer group offsets: each group lives on one core (fnv1a32(group) mod cores)
 * and in one file, <data_dir>/__consumer_offsets/<hex of the group id>, rewritten whole on
 * every commit (temp file, fsync, rename, directory fsync) before the commit is acknowledged.
 *
 * A group is loaded from its file on first use and kept in memory; a commit builds the new
 * contents, writes the file, and only then changes memory, so a failed write changes nothing.
 * Commits to one group are serialised by the group's mutex (they suspend in IO). The file is
 * text with a CRC-32C trailer (docs/storage-format.md, "Consumer offsets"); a damaged file is
 * refused (STORAGE_ERROR for that group), never silently dropped.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/broker.h"
#include "turbine/batch.h"
#include "turbine_assert.h"

#define OFFSETS_DIR   "__consumer_offsets"
#define FILE_MAGIC    "turbine-offsets 1"
#define FILE_MAX      (64u << 20)
#define GROUP_BUCKETS 256u

struct entry {
    char topic[TURBINE_TOPIC_NAME_MAX + 1];
    int32_t partition;
    int64_t offset;
    uint16_t metadata_size;
    char *metadata; /* malloc'd, may be NULL when empty */
};

struct group {
    struct group *next;
    char name[TURBINE_GROUP_NAME_MAX];
    uint16_t name_size;
    struct loom_mutex lock;
    bool loaded;
    int load_error; /* -errno: the file could not be read or is damaged */
    struct entry *entries;
    uint32_t count, cap;
};

static struct group *groups[LOOM_CORES_MAX][GROUP_BUCKETS];

unsigned turbine__group_owner(const char *group, size_t len)
{
    return turbine_partition_owner(turbine_topic_hash(group, len), 0, loom_core_count());
}

static void hex(const void *data, size_t size, char *out)
{
    static const char digits[] = "0123456789abcdef";
    const uint8_t *p = data;
    for (size_t i = 0; i < size; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * size] = '\0';
}

static int unhex(const char *text, size_t len, char *out)
{
    if (len % 2)
        return -1;
    for (size_t i = 0; i < len; i += 2) {
        int v = 0;
        for (size_t k = 0; k < 2; k++) {
            char c = text[i + k];
            int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
            if (d < 0)
                return -1;
            v = v * 16 + d;
        }
        out[i / 2] = (char)v;
    }
    return (int)(len / 2);
}

static void group_path(const struct group *g, const char *suffix, char *out, size_t size)
{
    char name[2 * TURBINE_GROUP_NAME_MAX + 1];
    hex(g->name, g->name_size, name);
    snprintf(out, size, "%s/%s/%s%s", turbine__broker.config.data_dir, OFFSETS_DIR, name, suffix);
}

static struct entry *entry_find(struct entry *entries, uint32_t count, const char *topic,
                                int32_t partition)
{
    for (uint32_t i = 0; i < count; i++)
        if (entries[i].partition == partition && strcmp(entries[i].topic, topic) == 0)
            return &entries[i];
    return NULL;
}

/* ---- the file ------------------------------------------------------------------------------- */

/* Parses the file: FILE_MAGIC, then "<topic> <partition> <offset> <metadata hex or ->" lines,
 * then "crc32c <8 hex digits>" over every byte before that line. */
static int parse_file(struct group *g, char *text, size_t size)
{
    char *crc_line = NULL;
    for (size_t i = size; i > 0; i--) {
        if (i >= 2 && text[i - 2] == '\n' && strncmp(text + i - 1, "crc32c ", 7) == 0) {
            crc_line = text + i - 1;
            break;
        }
    }
    if (crc_line == NULL || text + size - crc_line < 16)
        return -EUCLEAN;
    uint32_t want = (uint32_t)strtoul(crc_line + 7, NULL, 16);
    if (turbine_crc32c(0, text, (size_t)(crc_line - text)) != want)
        return -EUCLEAN;
    *crc_line = '\0';
    char *save = NULL;
    char *line = strtok_r(text, "\n", &save);
    if (line == NULL || strcmp(line, FILE_MAGIC) != 0)
        return -EUCLEAN;
    while ((line = strtok_r(NULL, "\n", &save)) != NULL) {
        char topic[TURBINE_TOPIC_NAME_MAX + 1], meta[2 * TURBINE_OFFSET_META_MAX + 2];
        int32_t partition;
        int64_t offset;
        if (sscanf(line, "%249s %" SCNd32 " %" SCNd64 " %8193s", topic, &partition, &offset,
                   meta) != 4)
            return -EUCLEAN;
        if (g->count == g->cap) {
            uint32_t cap = g->cap ? g->cap * 2 : 16;
            struct entry *e = realloc(g->entries, cap * sizeof(*e));
            if (e == NULL)
                return -ENOMEM;
            g->entries = e;
            g->cap = cap;
        }
        struct entry *e = &g->entries[g->count];
        memset(e, 0, sizeof(*e));
        snprintf(e->topic, sizeof(e->topic), "%s", topic);
        e->partition = partition;
        e->offset = offset;
        if (strcmp(meta, "-") != 0) {
            e->metadata = malloc(strlen(meta) / 2 + 1);
            int n = e->metadata ? unhex(meta, strlen(meta), e->metadata) : -1;
            if (n < 0) {
                free(e->metadata);
                return -EUCLEAN;
            }
            e->metadata_size = (uint16_t)n;
        }
        g->count++;
    }
    return 0;
}

static int group_load(struct group *g)
{
    char path[TURBINE_CONFIG_PATH_MAX + 2 * TURBINE_GROUP_NAME_MAX + 64];
    group_path(g, "", path, sizeof(path));
    int fd = loom_openat(AT_FDCWD, path, O_RDONLY | O_CLOEXEC, 0, LOOM_NO_DEADLINE);
    if (fd == -ENOENT)
        return 0;
    if (fd < 0)
        return fd;
    char *text = malloc(FILE_MAX + 1);
    size_t size = 0;
    int rc = 0;
    while (text != NULL && size < FILE_MAX) {
        ssize_t n = loom_read(fd, text + size, FILE_MAX - size, size, 0, LOOM_NO_DEADLINE);
        if (n < 0) {
            rc = (int)n;
            break;
        }
        if (n == 0)
            break;
        size += (size_t)n;
    }
    loom_close(fd);
    if (text == NULL)
        return -ENOMEM;
    if (rc == 0) {
        text[size] = '\0';
        rc = parse_file(g, text, size);
    }
    free(text);
    if (rc < 0)
        turbine__log(TURBINE_LOG_ERROR, "offsets", "consumer offsets file %s: %s", path,
                     rc == -EUCLEAN ? "damaged (bad format or CRC)" : strerror(-rc));
    return rc;
}

static size_t file_format(const struct entry *entries, uint32_t count, char *out, size_t cap)
{
    size_t used = (size_t)snprintf(out, cap, "%s\n", FILE_MAGIC);
    for (uint32_t i = 0; i < count; i++) {
        const struct entry *e = &entries[i];
        char meta[2 * TURBINE_OFFSET_META_MAX + 2] = "-";
        if (e->metadata_size > 0)
            hex(e->metadata, e->metadata_size, meta);
        used += (size_t)snprintf(out + used, cap - used, "%s %" PRId32 " %" PRId64 " %s\n",
                                 e->topic, e->partition, e->offset, meta);
        TURBINE_ASSERT(used < cap);
    }
    uint32_t crc = turbine_crc32c(0, out, used);
    used += (size_t)snprintf(out + used, cap - used, "crc32c %08" PRIx32 "\n", crc);
    TURBINE_ASSERT(used < cap);
    return used;
}

/* Writes the whole file: temp, fsync, rename, directory fsync. */
static int file_write(const struct group *g, const struct entry *entries, uint32_t count)
{
    size_t cap = 64;
    for (uint32_t i = 0; i < count; i++)
        cap += TURBINE_TOPIC_NAME_MAX + 48 + 2 * (size_t)entries[i].metadata_size;
    char *text = malloc(cap);
    if (text == NULL)
        return -ENOMEM;
    size_t size = file_format(entries, count, text, cap);
    char dir[TURBINE_CONFIG_PATH_MAX + 32], path[TURBINE_CONFIG_PATH_MAX + 320],
        tmp[TURBINE_CONFIG_PATH_MAX + 320];
    snprintf(dir, sizeof(dir), "%s/%s", turbine__broker.config.data_dir, OFFSETS_DIR);
    group_path(g, "", path, sizeof(path));
    group_path(g, ".tmp", tmp, sizeof(tmp));
    int rc = loom_mkdirat(AT_FDCWD, dir, 0755, LOOM_NO_DEADLINE);
    if (rc == -EEXIST)
        rc = 0;
    int fd = rc < 0 ? rc
                    : loom_openat(AT_FDCWD, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644,
                                  LOOM_NO_DEADLINE);
    if (fd >= 0) {
        for (size_t done = 0; done < size && rc >= 0;) {
            ssize_t n = loom_write(fd, text + done, size - done, done, 0, LOOM_NO_DEADLINE);
            rc = n < 0 ? (int)n : 0;
            done += n > 0 ? (size_t)n : 0;
        }
        if (rc == 0)
            rc = loom_fsync(fd, 0, LOOM_NO_DEADLINE);
        loom_close(fd);
        if (rc == 0)
            rc = loom_renameat(AT_FDCWD, tmp, AT_FDCWD, path, 0, LOOM_NO_DEADLINE);
        if (rc == 0)
            rc = loom_fsync_dir(AT_FDCWD, dir, LOOM_NO_DEADLINE);
    } else {
        rc = fd;
    }
    free(text);
    return rc;
}

/* ---- groups --------------------------------------------------------------------------------- */

static struct group *group_get(const char *name, uint16_t size)
{
    unsigned core = loom_core_id();
    unsigned b = turbine_topic_hash(name, size) % GROUP_BUCKETS;
    for (struct group *g = groups[core][b]; g; g = g->next)
        if (g->name_size == size && memcmp(g->name, name, size) == 0)
            return g;
    struct group *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return NULL;
    memcpy(g->name, name, size);
    g->name_size = size;
    loom_mutex_init(&g->lock);
    g->next = groups[core][b];
    groups[core][b] = g;
    return g;
}

static void entries_free(struct entry *entries, uint32_t count)
{
    for (uint32_t i = 0; i < count; i++)
        free(entries[i].metadata);
    free(entries);
}

static int commit(struct group *g, struct turbine__offsets_call *call)
{
    /* the new contents: a copy with the commits applied */
    uint32_t cap = g->count + call->count;
    struct entry *next = calloc(cap ? cap : 1, sizeof(*next));
    if (next == NULL)
        return -ENOMEM;
    uint32_t count = 0;
    int rc = 0;
    for (uint32_t i = 0; i < g->count && rc == 0; i++) {
        next[count] = g->entries[i];
        next[count].metadata = NULL;
        if (g->entries[i].metadata_size > 0) {
            next[count].metadata = malloc(g->entries[i].metadata_size);
            if (next[count].metadata == NULL)
                rc = -ENOMEM;
            else
                memcpy(next[count].metadata, g->entries[i].metadata, g->entries[i].metadata_size);
        }
        count++;
    }
    for (uint32_t i = 0; i < call->count && rc == 0; i++) {
        struct turbine__offset_entry *in = &call->entries[i];
        if (in->error != TURBINE_ERR_NONE)
            continue;
        struct entry *e = entry_find(next, count, in->topic->name, in->partition);
        if (e == NULL) {
            e = &next[count++];
            snprintf(e->topic, sizeof(e->topic), "%s", in->topic->name);
            e->partition = in->partition;
        }
        free(e->metadata);
        e->metadata = NULL;
        e->offset = in->offset;
        e->metadata_size = in->metadata_size;
        if (in->metadata_size > 0) {
            e->metadata = malloc(in->metadata_size);
            if (e->metadata == NULL)
                rc = -ENOMEM;
            else
                memcpy(e->metadata, in->metadata, in->metadata_size);
        }
    }
    if (rc == 0)
        rc = file_write(g, next, count);
    if (rc < 0) {
        entries_free(next, count);
        return rc;
    }
    entries_free(g->entries, g->count);
    g->entries = next;
    g->count = count;
    g->cap = cap ? cap : 1;
    return 0;
}

static void fetch(struct group *g, struct turbine__offsets_call *call)
{
    for (uint32_t i = 0; i < call->count; i++) {
        struct turbine__offset_entry *out = &call->entries[i];
        if (out->error != TURBINE_ERR_NONE)
            continue;
        struct entry *e = entry_find(g->entries, g->count, out->topic->name, out->partition);
        out->offset = e ? e->offset : -1;
        out->metadata_size = 0;
        out->meta_copy = NULL;
        if (e != NULL && e->metadata_size > 0) {
            out->meta_copy = malloc(e->metadata_size);
            if (out->meta_copy != NULL) {
                memcpy(out->meta_copy, e->metadata, e->metadata_size);
                out->metadata_size = e->metadata_size;
            }
        }
        out->metadata = out->meta_copy;
    }
}

int turbine__offsets_call(void *arg)
{
    struct turbine__offsets_call *call = arg;
    TURBINE_ASSERT(loom_core_id() == turbine__group_owner(call->group, call->group_size));
    struct group *g = group_get(call->group, call->group_size);
    if (g == NULL)
        return call->rc = -ENOMEM;
    loom_mutex_lock(&g->lock, LOOM_NO_DEADLINE);
    if (!g->loaded) {
        g->load_error = group_load(g);
        g->loaded = g->load_error != -ENOMEM;
    }
    int rc = g->load_error;
    if (rc == 0) {
        if (call->commit)
            rc = commit(g, call);
        else
            fetch(g, call);
    }
    loom_mutex_unlock(&g->lock);
    call->rc = rc;
    return rc;
}

int turbine__offsets_core_stop(void *arg)
{
    unsigned core = loom_core_id();
    for (unsigned b = 0; b < GROUP_BUCKETS; b++) {
        while (groups[core][b] != NULL) {
            struct group *g = groups[core][b];
            groups[core][b] = g->next;
            entries_free(g->entries, g->count);
            loom_mutex_deinit(&g->lock);
            free(g);
        }
    }
    return 0;
}
