/* SPDX-License-Identifier: MIT
 * topics.c - the topic registry, its file, and the per-core routing snapshots (see topics.h).
 *
 * The registry keeps its topics sorted by name, so the file and the snapshots list them in one
 * order. A change builds the new snapshot first (an allocation failure changes nothing), then
 * writes the file (an IO failure changes nothing), then updates memory and installs. The
 * file is checked whole (CRC-32C) before a line of it is believed, and every line is checked
 * again by itself: a damaged registry is reported, never half loaded.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <loom/loom.h>

#include "broker/topics.h"
#include "turbine/batch.h"
#include "turbine_assert.h"

#define FORMAT_VERSION 1
#define FILE_NAME      "topics"
#define TEMP_NAME      "topics.tmp"
#define FILE_MAX       (16u << 20) /* far above TURBINE_TOPICS_MAX lines of at most ~330 bytes */
#define CACHE_LINE     64

/* ---- names, hash, owner --------------------------------------------------------------------- */

uint32_t turbine_topic_hash(const char *name, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)name[i];
        h *= 16777619u;
    }
    return h;
}

unsigned turbine_partition_owner(uint32_t topic_hash, uint32_t partition, unsigned cores)
{
    TURBINE_ASSERT(cores > 0);
    unsigned owner = (unsigned)(((uint64_t)topic_hash + partition) % cores);
    TURBINE_ASSERT(owner < cores);
    return owner;
}

void turbine_topic_settings_from_config(struct turbine_topic_settings *settings,
                                        const struct turbine_broker_config *config)
{
    *settings = (struct turbine_topic_settings){.retention_ms = config->retention_ms,
                                                .retention_bytes = config->retention_bytes,
                                                .segment_bytes = config->segment_bytes,
                                                .durability = config->durability};
}

static bool settings_valid(const struct turbine_topic_settings *s)
{
    return s->retention_ms >= 0 && s->segment_bytes >= (1u << 20) &&
           (s->durability == TURBINE_DURABLE_WRITTEN || s->durability == TURBINE_DURABLE_FSYNC);
}

/* ---- the registry in memory ------------------------------------------------------------------ */

struct topic_rec {
    char name[TURBINE_TOPIC_NAME_MAX + 1];
    uint32_t partitions;
    uint64_t id;
    struct turbine_topic_settings settings;
};

struct turbine_topics {
    char dir[TURBINE_CONFIG_PATH_MAX];
    struct topic_rec *recs; /* sorted by name */
    uint32_t count;
    uint32_t cap;
    uint64_t version;          /* of the file and the installed snapshot */
    uint64_t next_id;          /* the next topic's id */
    struct loom_mutex lock;    /* one change at a time (they suspend in IO and installs) */
    unsigned live;             /* snapshots built and not yet freed */
    unsigned drain_target;     /* wake `drained` when live falls to this */
    bool draining;             /* a fiber waits on `drained` */
    struct loom_baton drained; /* posted from retire(), on core 0 */
};

static bool registry_open; /* core 0 only: one registry at a time */

/* Index of `name` in recs, or -(insertion point) - 1. */
static int64_t rec_find(const struct turbine_topics *t, const char *name)
{
    int64_t lo = 0, hi = (int64_t)t->count;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(t->recs[mid].name, name);
        if (c == 0)
            return mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -lo - 1;
}

/* ---- routing snapshots ------------------------------------------------------------------------
 */

struct turbine_routing_slot {
    struct loom_msg ack;             /* sent to core 0 when this core's last hold goes */
    struct turbine_routing *routing; /* back pointer for the message */
    uint32_t holds;                  /* this core's: 1 while installed + acquires */
} __attribute__((aligned(CACHE_LINE)));

_Static_assert(offsetof(struct turbine_routing_slot, ack) == 0, "retire() casts the message");

/* Each core's installed snapshot; a core touches only its own line. */
static struct {
    const struct turbine_routing *current;
} __attribute__((aligned(CACHE_LINE))) installed[LOOM_CORES_MAX];

static size_t round_up(size_t n, size_t to)
{
    return (n + to - 1) / to * to;
}

/* One allocation: header, per-core slots, entries, buckets, names. */
static struct turbine_routing *routing_build(struct turbine_topics *t, const struct topic_rec *recs,
                                             uint32_t count, uint64_t version)
{
    unsigned cores = loom_core_count();
    uint32_t nb = 8;
    while (nb < 2 * count)
        nb *= 2;
    size_t names = 0;
    for (uint32_t i = 0; i < count; i++)
        names += strlen(recs[i].name) + 1;
    size_t off_slots = round_up(sizeof(struct turbine_routing), CACHE_LINE);
    size_t off_topics = off_slots + cores * sizeof(struct turbine_routing_slot);
    size_t off_buckets = off_topics + count * sizeof(struct turbine_topic_entry);
    size_t off_names = off_buckets + nb * sizeof(uint32_t);
    char *base = aligned_alloc(CACHE_LINE, round_up(off_names + names, CACHE_LINE));
    if (base == NULL)
        return NULL;
    struct turbine_routing *r = (struct turbine_routing *)(void *)base;
    struct turbine_routing_slot *slots = (struct turbine_routing_slot *)(void *)(base + off_slots);
    struct turbine_topic_entry *topics = (struct turbine_topic_entry *)(void *)(base + off_topics);
    uint32_t *buckets = (uint32_t *)(void *)(base + off_buckets);
    char *name_at = base + off_names;
    memset(buckets, 0, nb * sizeof(uint32_t));
    for (unsigned c = 0; c < cores; c++)
        slots[c] = (struct turbine_routing_slot){.routing = r, .holds = 0};
    for (uint32_t i = 0; i < count; i++) {
        size_t len = strlen(recs[i].name);
        memcpy(name_at, recs[i].name, len + 1);
        topics[i] = (struct turbine_topic_entry){.name = name_at,
                                                 .name_len = (uint32_t)len,
                                                 .hash = turbine_topic_hash(name_at, len),
                                                 .partitions = recs[i].partitions,
                                                 .id = recs[i].id,
                                                 .settings = recs[i].settings};
        name_at += len + 1;
        uint32_t b = topics[i].hash & (nb - 1);
        while (buckets[b] != 0)
            b = (b + 1) & (nb - 1);
        buckets[b] = i + 1;
    }
    TURBINE_ASSERT(name_at == base + off_names + names);
    *r = (struct turbine_routing){.version = version,
                                  .topic_count = count,
                                  .topics = topics,
                                  .bucket_mask = nb - 1,
                                  .buckets = buckets,
                                  .cores = cores,
                                  .pending = cores,
                                  .registry = t,
                                  .slots = slots};
    t->live++;
    return r;
}

const struct turbine_topic_entry *turbine_routing_find(const struct turbine_routing *routing,
                                                       const char *name, size_t len)
{
    TURBINE_ASSERT(routing != NULL);
    uint32_t h = turbine_topic_hash(name, len);
    for (uint32_t b = h & routing->bucket_mask;; b = (b + 1) & routing->bucket_mask) {
        uint32_t slot = routing->buckets[b];
        if (slot == 0)
            return NULL; /* at most half the buckets are used: an empty one always comes */
        TURBINE_ASSERT(slot <= routing->topic_count);
        const struct turbine_topic_entry *e = &routing->topics[slot - 1];
        if (e->hash == h && e->name_len == len && memcmp(e->name, name, len) == 0)
            return e;
    }
}

/* On core 0, from the loop: one core has dropped `r` for good. The last one frees it. */
static void retire(struct loom_msg *msg)
{
    struct turbine_routing_slot *slot = (struct turbine_routing_slot *)(void *)msg;
    struct turbine_routing *r = slot->routing;
    struct turbine_topics *t = r->registry;
    TURBINE_ASSERT(loom_core_id() == 0);
    TURBINE_ASSERT(r->pending > 0);
    if (--r->pending > 0)
        return;
    free(r);
    TURBINE_ASSERT(t->live > 0);
    t->live--;
    if (t->draining && t->live <= t->drain_target) {
        t->draining = false;
        loom_baton_post(&t->drained);
    }
}

static void hold_drop(const struct turbine_routing *routing)
{
    unsigned core = loom_core_id();
    struct turbine_routing_slot *slot = &routing->slots[core];
    TURBINE_ASSERT(core < routing->cores);
    TURBINE_ASSERT(slot->holds > 0);
    if (--slot->holds == 0) /* not installed here any more, and nobody holds it */
        loom_msg_send(0, &slot->ack, retire);
}

const struct turbine_routing *turbine_routing_get(void)
{
    return installed[loom_core_id()].current;
}

const struct turbine_routing *turbine_routing_acquire(void)
{
    const struct turbine_routing *r = installed[loom_core_id()].current;
    if (r != NULL) {
        TURBINE_ASSERT(r->slots[loom_core_id()].holds >= 1); /* the install's hold */
        r->slots[loom_core_id()].holds++;
    }
    return r;
}

void turbine_routing_release(const struct turbine_routing *routing)
{
    TURBINE_ASSERT(routing != NULL);
    hold_drop(routing);
}

/* On every core, in a fiber: install `arg` (NULL = uninstall) and drop the previous one. */
static int install_on_core(void *arg)
{
    struct turbine_routing *r = arg;
    unsigned core = loom_core_id();
    const struct turbine_routing *old = installed[core].current;
    if (r != NULL) {
        TURBINE_ASSERT(core < r->cores);
        TURBINE_ASSERT(r->slots[core].holds == 0);
        r->slots[core].holds = 1;
    }
    installed[core].current = r;
    if (old != NULL)
        hold_drop(old);
    return 0;
}

/* Installs `r` everywhere; returns when every core has it. */
static int install(struct turbine_routing *r)
{
    int rc = loom_invoke_on_all(install_on_core, r, LOOM_NO_DEADLINE);
    /* install_on_core never fails: only the call records can be missing (-ENOMEM), and then
     * no core ran it. Try again for a while rather than leave the file and cores apart. */
    for (int i = 0; rc < 0 && i < 100; i++) {
        loom_sleep(10 * LOOM_NS_PER_MS);
        rc = loom_invoke_on_all(install_on_core, r, LOOM_NO_DEADLINE);
    }
    TURBINE_ASSERT(r == NULL || rc < 0 || installed[0].current == r);
    return rc;
}

/* Waits until at most `target` snapshots are alive. Core 0, holding the lock. */
static void drain(struct turbine_topics *t, unsigned target)
{
    while (t->live > target) {
        t->drain_target = target;
        t->draining = true;
        int rc = loom_baton_wait(&t->drained, LOOM_NO_DEADLINE);
        TURBINE_ASSERT(rc == 0);
    }
}

/* ---- the file ------------------------------------------------------------------------------ */

static void set_error(char *error, size_t error_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_error(char *error, size_t error_size, const char *fmt, ...)
{
    if (error_size == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error, error_size, fmt, ap);
    va_end(ap);
}

/* The file's text for `recs`; NULL when out of memory. */
static char *file_format(const struct topic_rec *recs, uint32_t count, uint64_t version,
                         uint64_t next_id, size_t *size_out)
{
    size_t cap = 128 + (size_t)count * (TURBINE_TOPIC_NAME_MAX + 128);
    char *buf = malloc(cap);
    if (buf == NULL)
        return NULL;
    size_t n = (size_t)snprintf(
        buf, cap, "turbine-topics %d\nversion %" PRIu64 " next_id %" PRIu64 " topics %" PRIu32 "\n",
        FORMAT_VERSION, version, next_id, count);
    for (uint32_t i = 0; i < count; i++) {
        const struct topic_rec *r = &recs[i];
        n += (size_t)snprintf(
            buf + n, cap - n,
            "topic %" PRIu64 " %s %" PRIu32 " %" PRId64 " %" PRIu64 " %" PRIu64 " %s\n", r->id,
            r->name, r->partitions, r->settings.retention_ms, r->settings.retention_bytes,
            r->settings.segment_bytes, turbine_durability_name(r->settings.durability));
        TURBINE_ASSERT(n < cap);
    }
    uint32_t crc = turbine_crc32c(0, buf, n);
    n += (size_t)snprintf(buf + n, cap - n, "crc32c %08" PRIx32 "\n", crc);
    TURBINE_ASSERT(n < cap);
    *size_out = n;
    return buf;
}

/* Strict unsigned decimal: digits only, no sign, no blanks, no overflow. */
static bool parse_u64(const char *text, uint64_t *out)
{
    if (text == NULL || text[0] < '0' || text[0] > '9')
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || *end != '\0')
        return false;
    *out = v;
    return true;
}

/* Splits `line` (NUL-terminated, modified) at single spaces into at most `max` words. Returns
 * the word count, or -1 for empty words (two spaces, leading or trailing) or too many. */
static int split(char *line, char **words, int max)
{
    int n = 0;
    for (char *p = line;;) {
        char *space = strchr(p, ' ');
        if (n == max || *p == '\0' || p == space)
            return -1;
        words[n++] = p;
        if (space == NULL)
            return n;
        *space = '\0';
        p = space + 1;
    }
}

struct file_state {
    const char *path;
    char *error;
    size_t error_size;
    struct topic_rec *recs;
    uint32_t count;
    uint64_t version;
    uint64_t next_id;
};

static int bad_line(struct file_state *f, unsigned line, const char *what, const char *detail)
{
    set_error(f->error, f->error_size,
              "%s:%u: %s%s%s (the topic registry is damaged; restore it "
              "or remove it to start with no topics)",
              f->path, line, what, detail[0] ? ": " : "", detail);
    return -EUCLEAN;
}

static int parse_topic_line(struct file_state *f, char *line, unsigned lineno)
{
    char *w[9];
    uint64_t id, partitions, retention_ms, retention_bytes, segment_bytes;
    if (split(line, w, 9) != 8 || strcmp(w[0], "topic") != 0)
        return bad_line(f, lineno,
                        "expected 'topic ID NAME PARTITIONS RETENTION_MS "
                        "RETENTION_BYTES SEGMENT_BYTES DURABILITY'",
                        "");
    if (!parse_u64(w[1], &id) || id == 0 || id >= f->next_id)
        return bad_line(f, lineno, "bad topic id", w[1]);
    if (!turbine_topic_name_valid(w[2], strlen(w[2])))
        return bad_line(f, lineno, "bad topic name", w[2]);
    if (!parse_u64(w[3], &partitions) || partitions == 0 || partitions > TURBINE_PARTITIONS_MAX)
        return bad_line(f, lineno, "bad partition count", w[3]);
    if (!parse_u64(w[4], &retention_ms) || retention_ms > INT64_MAX)
        return bad_line(f, lineno, "bad retention_ms", w[4]);
    if (!parse_u64(w[5], &retention_bytes))
        return bad_line(f, lineno, "bad retention_bytes", w[5]);
    if (!parse_u64(w[6], &segment_bytes) || segment_bytes < (1u << 20))
        return bad_line(f, lineno, "bad segment_bytes", w[6]);
    enum turbine_durability durability;
    if (strcmp(w[7], "fsync") == 0)
        durability = TURBINE_DURABLE_FSYNC;
    else if (strcmp(w[7], "written") == 0)
        durability = TURBINE_DURABLE_WRITTEN;
    else
        return bad_line(f, lineno, "bad durability", w[7]);
    /* the writer lists topics sorted by name: anything else is damage */
    if (f->count > 0 && strcmp(f->recs[f->count - 1].name, w[2]) >= 0)
        return bad_line(f, lineno, "topic out of order or repeated", w[2]);
    for (uint32_t i = 0; i < f->count; i++)
        if (f->recs[i].id == id)
            return bad_line(f, lineno, "topic id repeated", w[1]);
    struct topic_rec *r = &f->recs[f->count++];
    memset(r, 0, sizeof(*r));
    memcpy(r->name, w[2], strlen(w[2]) + 1);
    r->id = id;
    r->partitions = (uint32_t)partitions;
    r->settings = (struct turbine_topic_settings){.retention_ms = (int64_t)retention_ms,
                                                  .retention_bytes = retention_bytes,
                                                  .segment_bytes = segment_bytes,
                                                  .durability = durability};
    TURBINE_ASSERT(settings_valid(&r->settings));
    return 0;
}

/* Checks the header, the CRC line and the CRC, in that order. `text` is NUL-terminated. */
static int parse_envelope(struct file_state *f, char *text, size_t size, size_t *body_end)
{
    int format;
    char tail;
    if (size == 0 || text[size - 1] != '\n')
        return bad_line(f, 1, "the file is empty or does not end with a newline", "truncated?");
    if (sscanf(text, "turbine-topics %d%c", &format, &tail) != 2 || tail != '\n')
        return bad_line(f, 1, "not a topic registry", "expected 'turbine-topics 1'");
    if (format != FORMAT_VERSION) {
        set_error(f->error, f->error_size,
                  "%s:1: topic registry format %d, this broker reads format %d (written by a "
                  "newer turbine?)",
                  f->path, format, FORMAT_VERSION);
        return -ENOTSUP;
    }
    size_t last = size - 1; /* find the start of the last line */
    while (last > 0 && text[last - 1] != '\n')
        last--;
    unsigned lines = 0;
    for (size_t i = 0; i < size; i++)
        lines += text[i] == '\n';
    uint32_t stored;
    if (sscanf(text + last, "crc32c %8" SCNx32 "%c", &stored, &tail) != 2 || tail != '\n' ||
        size - last != strlen("crc32c 01234567\n"))
        return bad_line(f, lines, "the last line is not 'crc32c XXXXXXXX'", "truncated?");
    uint32_t computed = turbine_crc32c(0, text, last);
    if (computed != stored) {
        char detail[64];
        snprintf(detail, sizeof(detail), "stored %08" PRIx32 ", computed %08" PRIx32, stored,
                 computed);
        return bad_line(f, lines, "CRC-32C mismatch", detail);
    }
    *body_end = last;
    return 0;
}

/* Parses a whole file into f->recs (allocated here). */
static int file_parse(struct file_state *f, char *text, size_t size)
{
    size_t body_end = 0;
    int rc = parse_envelope(f, text, size, &body_end);
    if (rc < 0)
        return rc;
    text[body_end] = '\0';
    char *line = strchr(text, '\n') + 1; /* past the header, checked; every line ends in \n */
    char *next = strchr(line, '\n');
    char *w[7];
    uint64_t count;
    if (next != NULL)
        *next = '\0';
    if (next == NULL || split(line, w, 7) != 6 || strcmp(w[0], "version") != 0 ||
        !parse_u64(w[1], &f->version) || strcmp(w[2], "next_id") != 0 ||
        !parse_u64(w[3], &f->next_id) || f->next_id == 0 || strcmp(w[4], "topics") != 0 ||
        !parse_u64(w[5], &count) || count > TURBINE_TOPICS_MAX)
        return bad_line(f, 2, "expected 'version V next_id N topics C'", "");
    f->recs = calloc(count ? count : 1, sizeof(struct topic_rec));
    if (f->recs == NULL)
        return -ENOMEM;
    unsigned lineno = 3;
    for (line = next + 1; *line != '\0'; line = next + 1, lineno++) {
        next = strchr(line, '\n');
        TURBINE_ASSERT(next != NULL); /* the body ends where the CRC line starts */
        *next = '\0';
        if (f->count == count)
            return bad_line(f, lineno, "more topic lines than the header's count", "");
        rc = parse_topic_line(f, line, lineno);
        if (rc < 0)
            return rc;
    }
    if (f->count != count)
        return bad_line(f, lineno, "fewer topic lines than the header's count", "");
    return 0;
}

static void path_join(char *out, size_t size, const char *dir, const char *name)
{
    int n = snprintf(out, size, "%s/%s", dir, name);
    TURBINE_ASSERT(n > 0 && (size_t)n < size);
}

/* Reads the whole file: 0 and *text (NUL-terminated), -ENOENT when absent, or -errno. */
static int file_read(const char *path, char **text, size_t *size_out)
{
    int fd = loom_openat(AT_FDCWD, path, O_RDONLY | O_CLOEXEC, 0, LOOM_NO_DEADLINE);
    if (fd < 0)
        return fd;
    size_t cap = 4096, size = 0;
    char *buf = malloc(cap + 1);
    int rc = buf ? 0 : -ENOMEM;
    while (rc == 0) {
        if (size == cap) {
            char *bigger = cap < FILE_MAX ? realloc(buf, cap * 2 + 1) : NULL;
            if (bigger == NULL) {
                rc = cap < FILE_MAX ? -ENOMEM : -EFBIG;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
        ssize_t n = loom_read(fd, buf + size, cap - size, size, 0, LOOM_NO_DEADLINE);
        if (n <= 0) {
            rc = (int)n;
            break;
        }
        size += (size_t)n;
    }
    loom_close(fd);
    if (rc < 0) {
        free(buf);
        return rc;
    }
    buf[size] = '\0';
    *text = buf;
    *size_out = size;
    return 0;
}

/* Temp file, fsync, rename, directory fsync: a crash leaves the old file or the new one. */
static int file_write(const struct turbine_topics *t, const struct topic_rec *recs, uint32_t count,
                      uint64_t version, uint64_t next_id)
{
    size_t size;
    char *text = file_format(recs, count, version, next_id, &size);
    if (text == NULL)
        return -ENOMEM;
    char temp[TURBINE_CONFIG_PATH_MAX + 16], path[TURBINE_CONFIG_PATH_MAX + 16];
    path_join(temp, sizeof(temp), t->dir, TEMP_NAME);
    path_join(path, sizeof(path), t->dir, FILE_NAME);
    int fd = loom_openat(AT_FDCWD, temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644,
                         LOOM_NO_DEADLINE);
    int rc = fd;
    if (fd >= 0) {
        ssize_t n = loom_write(fd, text, size, 0, 0, LOOM_NO_DEADLINE);
        rc = n < 0 ? (int)n : loom_fsync(fd, 0, LOOM_NO_DEADLINE);
        int rc_close = loom_close(fd);
        rc = rc < 0 ? rc : rc_close;
    }
    if (rc >= 0)
        rc = loom_renameat(AT_FDCWD, temp, AT_FDCWD, path, 0, LOOM_NO_DEADLINE);
    if (rc >= 0)
        rc = loom_fsync_dir(AT_FDCWD, t->dir, LOOM_NO_DEADLINE);
    else if (fd >= 0)
        loom_unlinkat(AT_FDCWD, temp, 0, LOOM_NO_DEADLINE);
    free(text);
    return rc < 0 ? rc : 0;
}

/* ---- open, close, changes ------------------------------------------------------------------ */

/* Creates `dir` if missing, making its entry durable in the parent. */
static int make_dir(const char *dir)
{
    int rc = loom_mkdirat(AT_FDCWD, dir, 0755, LOOM_NO_DEADLINE);
    if (rc == -EEXIST)
        return 0;
    if (rc < 0)
        return rc;
    char parent[TURBINE_CONFIG_PATH_MAX];
    snprintf(parent, sizeof(parent), "%s", dir);
    char *slash = strrchr(parent, '/');
    if (slash == NULL)
        snprintf(parent, sizeof(parent), ".");
    else if (slash == parent)
        parent[1] = '\0';
    else
        *slash = '\0';
    return loom_fsync_dir(AT_FDCWD, parent, LOOM_NO_DEADLINE);
}

static int load(struct turbine_topics *t, char *error, size_t error_size)
{
    char path[TURBINE_CONFIG_PATH_MAX + 16], temp[TURBINE_CONFIG_PATH_MAX + 16];
    path_join(path, sizeof(path), t->dir, FILE_NAME);
    path_join(temp, sizeof(temp), t->dir, TEMP_NAME);
    int rc = loom_unlinkat(AT_FDCWD, temp, 0, LOOM_NO_DEADLINE); /* a crash before rename */
    if (rc < 0 && rc != -ENOENT) {
        set_error(error, error_size, "%s: cannot remove: %s", temp, strerror(-rc));
        return rc;
    }
    char *text;
    size_t size;
    rc = file_read(path, &text, &size);
    if (rc == -ENOENT) { /* a new data directory */
        t->version = 0;
        t->next_id = 1;
        return 0;
    }
    if (rc < 0) {
        set_error(error, error_size, "%s: cannot read: %s", path, strerror(-rc));
        return rc;
    }
    struct file_state f = {.path = path, .error = error, .error_size = error_size};
    rc = file_parse(&f, text, size);
    free(text);
    if (rc < 0) {
        free(f.recs);
        if (rc == -ENOMEM)
            set_error(error, error_size, "%s: out of memory", path);
        return rc;
    }
    t->recs = f.recs;
    t->count = f.count;
    t->cap = f.count ? f.count : 1;
    t->version = f.version;
    t->next_id = f.next_id;
    return 0;
}

int turbine_topics_open(const char *data_dir, struct turbine_topics **out, char *error,
                        size_t error_size)
{
    TURBINE_ASSERT(loom_core_id() == 0);
    TURBINE_ASSERT(!registry_open);
    if (data_dir[0] == '\0' || strlen(data_dir) >= TURBINE_CONFIG_PATH_MAX) {
        set_error(error, error_size, "data directory path empty or too long");
        return -EINVAL;
    }
    struct turbine_topics *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        set_error(error, error_size, "out of memory");
        return -ENOMEM;
    }
    snprintf(t->dir, sizeof(t->dir), "%s", data_dir);
    loom_mutex_init(&t->lock);
    loom_baton_init(&t->drained);
    int rc = make_dir(t->dir);
    if (rc < 0)
        set_error(error, error_size, "%s: cannot create the data directory: %s", t->dir,
                  strerror(-rc));
    else
        rc = load(t, error, error_size);
    struct turbine_routing *r = NULL;
    if (rc >= 0) {
        r = routing_build(t, t->recs, t->count, t->version);
        rc = r ? install(r) : -ENOMEM;
        if (rc < 0)
            set_error(error, error_size, "cannot install the routing table: %s", strerror(-rc));
    }
    if (rc < 0) {
        if (r != NULL)
            free(r); /* never installed anywhere */
        loom_baton_deinit(&t->drained);
        loom_mutex_deinit(&t->lock);
        free(t->recs);
        free(t);
        return rc;
    }
    registry_open = true;
    *out = t;
    return 0;
}

void turbine_topics_close(struct turbine_topics *t)
{
    TURBINE_ASSERT(loom_core_id() == 0);
    TURBINE_ASSERT(registry_open);
    int rc = loom_mutex_lock(&t->lock, LOOM_NO_DEADLINE);
    TURBINE_ASSERT(rc == 0);
    rc = install(NULL);
    TURBINE_ASSERT(rc == 0);
    drain(t, 0); /* every hold released: nothing refers to t any more */
    TURBINE_ASSERT(t->live == 0);
    loom_mutex_unlock(&t->lock);
    loom_baton_deinit(&t->drained);
    loom_mutex_deinit(&t->lock);
    free(t->recs);
    free(t);
    registry_open = false;
}

uint64_t turbine_topics_version(const struct turbine_topics *t)
{
    TURBINE_ASSERT(loom_core_id() == 0);
    return t->version;
}

/* Builds, persists and installs `recs` (count) as the next version; on success the registry
 * takes `recs` (on failure the caller keeps them). Holding the lock. */
static int commit(struct turbine_topics *t, struct topic_rec *recs, uint32_t count, uint32_t cap,
                  uint64_t next_id)
{
    uint64_t version = t->version + 1;
    struct turbine_routing *r = routing_build(t, recs, count, version);
    if (r == NULL)
        return -ENOMEM;
    int rc = file_write(t, recs, count, version, next_id);
    if (rc < 0) {
        t->live--;
        free(r);
        return rc;
    }
    free(t->recs);
    t->recs = recs;
    t->count = count;
    t->cap = cap;
    t->version = version;
    t->next_id = next_id;
    rc = install(r);
    if (rc < 0) { /* the change is durable; the next change installs a table with it */
        t->live--;
        free(r);
    }
    return rc;
}

int turbine_topics_create(struct turbine_topics *t, const char *name, uint32_t partitions,
                          const struct turbine_topic_settings *settings, uint64_t *id_out)
{
    TURBINE_ASSERT(loom_core_id() == 0);
    TURBINE_ASSERT(settings != NULL);
    if (!turbine_topic_name_valid(name, strlen(name)) || partitions == 0 ||
        partitions > TURBINE_PARTITIONS_MAX || !settings_valid(settings))
        return -EINVAL;
    int rc = loom_mutex_lock(&t->lock, LOOM_NO_DEADLINE);
    TURBINE_ASSERT(rc == 0);
    int64_t at = rec_find(t, name);
    if (at >= 0) {
        rc = -EEXIST;
    } else if (t->count == TURBINE_TOPICS_MAX) {
        rc = -ENOSPC;
    } else {
        size_t pos = (size_t)(-at - 1);
        struct topic_rec *recs = malloc((t->count + 1) * sizeof(*recs));
        rc = recs ? 0 : -ENOMEM;
        if (recs != NULL) {
            if (t->count > 0) { /* t->recs is NULL in a new registry */
                memcpy(recs, t->recs, pos * sizeof(*recs));
                memcpy(recs + pos + 1, t->recs + pos, (t->count - pos) * sizeof(*recs));
            }
            memset(&recs[pos], 0, sizeof(recs[pos]));
            snprintf(recs[pos].name, sizeof(recs[pos].name), "%s", name);
            recs[pos].partitions = partitions;
            recs[pos].id = t->next_id;
            recs[pos].settings = *settings;
            rc = commit(t, recs, t->count + 1, t->count + 1, t->next_id + 1);
            if (rc == 0 && id_out != NULL)
                *id_out = recs[pos].id;
            if (rc < 0 && t->recs != recs)
                free(recs);
        }
    }
    loom_mutex_unlock(&t->lock);
    return rc;
}

int turbine_topics_delete(struct turbine_topics *t, const char *name)
{
    TURBINE_ASSERT(loom_core_id() == 0);
    int rc = loom_mutex_lock(&t->lock, LOOM_NO_DEADLINE);
    TURBINE_ASSERT(rc == 0);
    int64_t at = rec_find(t, name);
    if (at < 0) {
        rc = -ENOENT;
    } else {
        size_t pos = (size_t)at;
        struct topic_rec *recs = malloc((t->count ? t->count : 1) * sizeof(*recs));
        rc = recs ? 0 : -ENOMEM;
        if (recs != NULL) {
            memcpy(recs, t->recs, pos * sizeof(*recs));
            memcpy(recs + pos, t->recs + pos + 1, (t->count - pos - 1) * sizeof(*recs));
            rc = commit(t, recs, t->count - 1, t->count, t->next_id);
            if (rc < 0 && t->recs != recs)
                free(recs);
        }
        if (rc == 0)
            drain(t, 1); /* only the new table is left: no request still sees the topic */
    }
    loom_mutex_unlock(&t->lock);
    return rc;
}
