/* SPDX-License-Identifier: MIT
 * pagecache.c - the per-core page cache (turbine/cache.h, log/pagecache.h).
 *
 * Pages live in one anonymous mapping made when the cache is made; their descriptors in one
 * array. Names are found through a chained hash table of page indexes (2 buckets per page).
 * Pages not in use wait on a free stack; when it is empty the clock hand sweeps the array
 * for a page without pins whose ref bit is clear (clearing ref bits as it goes). Nothing is
 * allocated after the cache is made.
 */
#include <errno.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include <loom/loom.h>

#include "log/pagecache.h"
#include "turbine_assert.h"

enum tc_state {
    TC_FREE = 0, /* on the free stack, no name */
    TC_VALID,    /* named, bytes [0, valid) are the file's (once `loading` is false) */
    TC_DEAD,     /* no name: its log or segment went, or its read failed, while it was pinned;
                  * freed at the last unpin */
};

struct tc_wait {
    struct tc_wait *next;
    struct loom_baton baton;
};

struct turbine_cache {
    size_t page_bytes;
    uint32_t npages;
    char *mem;
    size_t mem_bytes;
    struct tc_page *pages;
    int32_t *buckets;
    uint32_t bucket_mask;
    uint32_t *free_stack;
    uint32_t nfree;
    uint32_t hand;
    uint32_t pinned;     /* pages with pins > 0 */
    uint32_t reader_max; /* readers may not make more pages pinned than this */
    uint32_t next_log_id;
    uint32_t logs;
    bool lazy; /* made by tc_local: freed when unused */
    unsigned core;
    struct tc_wait *space_waiters; /* writers waiting for an unpinned page */
    struct turbine_cache_stats stats;
};

static __thread struct turbine_cache *tl_cache;

void turbine_cache_config_init(struct turbine_cache_config *config)
{
    config->bytes = (size_t)64 << 20;
    config->page_bytes = (size_t)64 << 10;
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif
#define HUGE_PAGE ((size_t)2 << 20)

/* The cache's memory, faulted in now: a first touch costs ~17 us per 4 KiB page under nested
 * virtualisation (280 ms for 64 MiB), which would otherwise land on the first appends and reads.
 * Transparent huge pages are asked for (aligned to 2 MiB) to make that one fault per 2 MiB. */
static char *map_pages(size_t bytes)
{
    size_t len = bytes + HUGE_PAGE;
    char *raw = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
        return MAP_FAILED;
    char *mem = (char *)(((uintptr_t)raw + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    if (mem > raw)
        munmap(raw, (size_t)(mem - raw));
    size_t tail = (size_t)(raw + len - (mem + bytes));
    if (tail > 0)
        munmap(mem + bytes, tail);
    (void)madvise(mem, bytes, MADV_HUGEPAGE);
    if (madvise(mem, bytes, MADV_POPULATE_WRITE) != 0)
        memset(mem, 0, bytes);
    return mem;
}

static int cache_make(const struct turbine_cache_config *config, bool lazy)
{
    if (!loom_on_reactor())
        return -EPERM;
    if (tl_cache)
        return -EEXIST;
    size_t pb = config->page_bytes;
    if (pb < (64u << 10) || pb > (1u << 20) || (pb & (pb - 1)) != 0)
        return -EINVAL;
    size_t n = config->bytes / pb;
    if (n < 16 || n > (1u << 24))
        return -EINVAL;
    struct turbine_cache *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->page_bytes = pb;
    c->npages = (uint32_t)n;
    c->mem_bytes = n * pb;
    uint32_t nb = 1;
    while (nb < 2 * c->npages)
        nb <<= 1;
    c->bucket_mask = nb - 1;
    c->mem = map_pages(c->mem_bytes);
    c->pages = calloc(n, sizeof(*c->pages));
    c->buckets = malloc(nb * sizeof(*c->buckets));
    c->free_stack = malloc(n * sizeof(*c->free_stack));
    if (c->mem == MAP_FAILED || !c->pages || !c->buckets || !c->free_stack) {
        if (c->mem != MAP_FAILED)
            munmap(c->mem, c->mem_bytes);
        free(c->pages);
        free(c->buckets);
        free(c->free_stack);
        free(c);
        return -ENOMEM;
    }
    for (uint32_t b = 0; b < nb; b++)
        c->buckets[b] = -1;
    for (uint32_t i = 0; i < c->npages; i++) {
        c->pages[i].data = c->mem + (size_t)i * pb;
        c->pages[i].hnext = -1;
        c->free_stack[i] = c->npages - 1 - i; /* page 0 first: the low pages stay warm */
    }
    c->nfree = c->npages;
    c->reader_max = c->npages / 4 * 3;
    c->next_log_id = 1;
    c->lazy = lazy;
    c->core = loom_core_id();
    c->stats.pages = c->npages;
    c->stats.page_bytes = pb;
    tl_cache = c;
    return 0;
}

static void cache_free(struct turbine_cache *c)
{
    TURBINE_ASSERT(c == tl_cache && c->logs == 0 && c->pinned == 0);
    munmap(c->mem, c->mem_bytes);
    free(c->pages);
    free(c->buckets);
    free(c->free_stack);
    free(c);
    tl_cache = NULL;
}

int turbine_cache_init(const struct turbine_cache_config *config)
{
    return cache_make(config, false);
}

int turbine_cache_fini(void)
{
    struct turbine_cache *c = tl_cache;
    if (!c)
        return -ENOENT;
    if (c->logs > 0 || c->pinned > 0)
        return -EBUSY;
    cache_free(c);
    return 0;
}

int turbine_cache_stats_get(struct turbine_cache_stats *out)
{
    struct turbine_cache *c = tl_cache;
    if (!c)
        return -ENOENT;
    *out = c->stats;
    out->pinned = c->pinned;
    out->logs = c->logs;
    return 0;
}

struct turbine_cache *tc_local(void)
{
    if (!tl_cache) {
        struct turbine_cache_config config;
        turbine_cache_config_init(&config);
        if (cache_make(&config, true) < 0)
            return NULL;
    }
    return tl_cache;
}

static void maybe_free(struct turbine_cache *c)
{
    if (c->lazy && c->logs == 0 && c->pinned == 0)
        cache_free(c);
}

size_t tc_page_bytes(const struct turbine_cache *c)
{
    return c->page_bytes;
}

uint64_t tc_pages(const struct turbine_cache *c)
{
    return c->npages;
}

/* ---- names ---------------------------------------------------------------------------------- */

static uint32_t bucket_of(const struct turbine_cache *c, uint32_t log_id, int64_t seg,
                          uint32_t index)
{
    uint64_t h = ((uint64_t)log_id << 32 | index) * 0x9E3779B97F4A7C15ull;
    h ^= (uint64_t)seg * 0xC2B2AE3D27D4EB4Full;
    h ^= h >> 29;
    return (uint32_t)h & c->bucket_mask;
}

static struct tc_page *lookup(struct turbine_cache *c, uint32_t log_id, int64_t seg, uint32_t index)
{
    for (int32_t i = c->buckets[bucket_of(c, log_id, seg, index)]; i >= 0; i = c->pages[i].hnext) {
        struct tc_page *p = &c->pages[i];
        if (p->log_id == log_id && p->seg == seg && p->index == index)
            return p;
    }
    return NULL;
}

static void name(struct turbine_cache *c, struct tc_page *p, uint32_t log_id, int64_t seg,
                 uint32_t index)
{
    TURBINE_ASSERT(p->log_id == 0 && log_id != 0);
    p->log_id = log_id;
    p->seg = seg;
    p->index = index;
    uint32_t b = bucket_of(c, log_id, seg, index);
    p->hnext = c->buckets[b];
    c->buckets[b] = (int32_t)(p - c->pages);
}

static void unname(struct turbine_cache *c, struct tc_page *p)
{
    TURBINE_ASSERT(p->log_id != 0);
    int32_t me = (int32_t)(p - c->pages);
    int32_t *link = &c->buckets[bucket_of(c, p->log_id, p->seg, p->index)];
    while (*link != me) {
        TURBINE_ASSERT(*link >= 0);
        link = &c->pages[*link].hnext;
    }
    *link = p->hnext;
    p->hnext = -1;
    p->log_id = 0;
}

static void make_free(struct turbine_cache *c, struct tc_page *p)
{
    TURBINE_ASSERT(p->pins == 0 && p->log_id == 0 && !p->waiters);
    p->state = TC_FREE;
    p->ref = false;
    p->loading = false;
    p->valid = 0;
    p->error = 0;
    c->free_stack[c->nfree++] = (uint32_t)(p - c->pages);
}

/* An unpinned page without a name, or NULL when every page is pinned. */
static struct tc_page *take(struct turbine_cache *c)
{
    if (c->nfree > 0) {
        struct tc_page *p = &c->pages[c->free_stack[--c->nfree]];
        TURBINE_ASSERT(p->state == TC_FREE && p->pins == 0);
        return p;
    }
    if (c->pinned >= c->npages)
        return NULL;
    /* two sweeps at most: the first may only clear ref bits */
    for (uint32_t n = 0; n < 2 * c->npages; n++) {
        struct tc_page *p = &c->pages[c->hand];
        c->hand = c->hand + 1 == c->npages ? 0 : c->hand + 1;
        if (p->pins > 0)
            continue;
        if (p->ref) {
            p->ref = false;
            continue;
        }
        TURBINE_ASSERT(p->state == TC_VALID);
        unname(c, p);
        p->state = TC_FREE;
        p->valid = 0;
        c->stats.evictions++;
        return p;
    }
    return NULL;
}

uint32_t tc_attach(struct turbine_cache *c)
{
    c->logs++;
    uint32_t id = c->next_log_id++;
    if (c->next_log_id == 0)
        c->next_log_id = 1;
    return id;
}

static void forget_where(struct turbine_cache *c, uint32_t log_id, bool all, int64_t seg)
{
    for (uint32_t i = 0; i < c->npages; i++) {
        struct tc_page *p = &c->pages[i];
        if (p->log_id != log_id || (!all && p->seg != seg))
            continue;
        TURBINE_ASSERT(!p->loading || p->pins > 0);
        unname(c, p);
        if (p->pins > 0) {
            p->state = TC_DEAD;
        } else {
            make_free(c, p);
        }
    }
}

void tc_detach(struct turbine_cache *c, uint32_t log_id)
{
    TURBINE_ASSERT(c->logs > 0);
    forget_where(c, log_id, true, 0);
    c->logs--;
    maybe_free(c);
}

void tc_forget(struct turbine_cache *c, uint32_t log_id, int64_t seg)
{
    forget_where(c, log_id, false, seg);
}

/* ---- pins ----------------------------------------------------------------------------------- */

void tc_pin(struct turbine_cache *c, struct tc_page *p)
{
    if (p->pins++ == 0)
        c->pinned++;
}

void tc_unpin(struct turbine_cache *c, struct tc_page *p)
{
    TURBINE_ASSERT(p->pins > 0);
    if (--p->pins > 0)
        return;
    TURBINE_ASSERT(c->pinned > 0);
    c->pinned--;
    if (p->state == TC_DEAD)
        make_free(c, p);
    while (c->space_waiters) {
        struct tc_wait *w = c->space_waiters;
        c->space_waiters = w->next;
        loom_baton_post(&w->baton);
    }
    maybe_free(c);
}

/* Waits for the load of p (pinned by the caller) to end. */
static int wait_loaded(struct tc_page *p)
{
    while (p->loading) {
        struct tc_wait w;
        loom_baton_init(&w.baton);
        w.next = p->waiters;
        p->waiters = &w;
        loom_baton_wait(&w.baton, LOOM_NO_DEADLINE);
        loom_baton_deinit(&w.baton);
    }
    return p->error;
}

/* Reads p (named, pinned, loading) from the file. Its log or segment may go meanwhile (the
 * page is then DEAD, but what was read is still the file's for the readers that wait). */
static int load(struct turbine_cache *c, struct tc_page *p, int fd)
{
    TURBINE_ASSERT(p->loading && p->state == TC_VALID && p->pins > 0);
    ssize_t n = loom_read(fd, p->data, c->page_bytes, (uint64_t)p->index * c->page_bytes, 0,
                          LOOM_NO_DEADLINE);
    int rc = n < 0 ? (int)n : 0;
    p->loading = false;
    if (rc == 0) {
        p->valid = (uint32_t)n;
    } else {
        /* the name goes now (a later lookup reads again); the page when its pins go */
        c->stats.load_errors++;
        p->error = rc;
        if (p->state == TC_VALID) {
            p->state = TC_DEAD;
            unname(c, p);
        }
    }
    while (p->waiters) {
        struct tc_wait *w = p->waiters;
        p->waiters = w->next;
        loom_baton_post(&w->baton);
    }
    return rc;
}

struct tc_page *tc_get(struct turbine_cache *c, uint32_t log_id, int64_t seg, uint32_t index,
                       int fd, bool reader, int *err)
{
    struct tc_page *p = lookup(c, log_id, seg, index);
    if (p) {
        if (reader && p->pins == 0 && c->pinned >= c->reader_max) {
            c->stats.pin_refused++;
            *err = -ENOBUFS;
            return NULL;
        }
        tc_pin(c, p);
        p->ref = true;
        c->stats.hits++;
        int rc = wait_loaded(p);
        if (rc < 0) {
            tc_unpin(c, p);
            *err = rc;
            return NULL;
        }
        return p;
    }
    if (reader && c->pinned >= c->reader_max) {
        c->stats.pin_refused++;
        *err = -ENOBUFS;
        return NULL;
    }
    p = take(c);
    if (!p) {
        *err = -ENOBUFS;
        return NULL;
    }
    c->stats.misses++;
    name(c, p, log_id, seg, index);
    p->state = TC_VALID;
    p->loading = true;
    tc_pin(c, p);
    int rc = load(c, p, fd);
    if (rc < 0) {
        tc_unpin(c, p);
        *err = rc;
        return NULL;
    }
    return p;
}

struct tc_page *tc_get_write(struct turbine_cache *c, uint32_t log_id, int64_t seg, uint32_t index,
                             int fd, bool load_it, int64_t deadline_ns, int *err)
{
    for (;;) {
        struct tc_page *p = lookup(c, log_id, seg, index);
        if (p) {
            tc_pin(c, p);
            int rc = wait_loaded(p);
            if (rc < 0) {
                tc_unpin(c, p);
                *err = rc;
                return NULL;
            }
            p->valid = (uint32_t)c->page_bytes;
            return p;
        }
        p = take(c);
        if (p) {
            name(c, p, log_id, seg, index);
            tc_pin(c, p);
            p->state = TC_VALID;
            if (load_it) {
                p->loading = true;
                int rc = load(c, p, fd);
                if (rc < 0) {
                    tc_unpin(c, p);
                    *err = rc;
                    return NULL;
                }
            } else {
                /* its bytes are left as they are: the writer fills them before anyone reads
                 * them (zeroing 64 KiB per page was 5% of the broker's CPU samples under acks=1
                 * load); debug builds fill it with a pattern so that tests catch a reliance on
                 * zeros */
#ifdef LOOM_DEBUG
                memset(p->data, 0xA5, c->page_bytes);
#endif
            }
            p->valid = (uint32_t)c->page_bytes;
            return p;
        }
        /* every page is pinned: wait for one to come free */
        struct tc_wait w;
        loom_baton_init(&w.baton);
        w.next = c->space_waiters;
        c->space_waiters = &w;
        int rc = loom_baton_wait(&w.baton, deadline_ns);
        if (rc < 0) {
            for (struct tc_wait **link = &c->space_waiters; *link; link = &(*link)->next)
                if (*link == &w) {
                    *link = w.next;
                    break;
                }
        }
        loom_baton_deinit(&w.baton);
        if (rc < 0) {
            *err = -ETIMEDOUT;
            return NULL;
        }
    }
}

/* ---- views ---------------------------------------------------------------------------------- */

void turbine_view_init(struct turbine_view *v)
{
    v->count = 0;
    v->bytes = 0;
    v->pinned_bytes = 0;
    v->next_offset = -1;
    v->npages = 0;
    v->owner = loom_on_reactor() ? loom_core_id() : 0;
    v->home = v->owner;
    v->done = NULL;
}

bool tc_view_add(struct turbine_cache *c, struct turbine_view *v, struct tc_page *p,
                 const char *data, size_t len)
{
    TURBINE_ASSERT(data >= p->data && data + len <= p->data + c->page_bytes && len > 0);
    bool same_page = v->npages > 0 && v->pages[v->npages - 1] == p;
    if (same_page && v->count > 0 &&
        (const char *)v->iov[v->count - 1].iov_base + v->iov[v->count - 1].iov_len == data) {
        v->iov[v->count - 1].iov_len += len;
        v->bytes += len;
        return true;
    }
    if (v->count == TURBINE_VIEW_SLICES || (!same_page && v->npages == TURBINE_VIEW_SLICES))
        return false;
    if (!same_page) {
        tc_pin(c, p);
        v->pages[v->npages++] = p;
        v->pinned_bytes += c->page_bytes;
    }
    v->iov[v->count].iov_base = (void *)data;
    v->iov[v->count].iov_len = len;
    v->count++;
    v->bytes += len;
    v->owner = c->core;
    return true;
}

void tc_view_truncate(struct turbine_cache *c, struct turbine_view *v, unsigned count,
                      unsigned npages, size_t bytes, size_t last_len)
{
    TURBINE_ASSERT(count <= v->count && npages <= v->npages);
    while (v->npages > npages) {
        tc_unpin(c, v->pages[--v->npages]);
        v->pinned_bytes -= c->page_bytes;
    }
    v->count = count;
    if (count > 0)
        v->iov[count - 1].iov_len = last_len;
    v->bytes = bytes;
}

void turbine_view_release(struct turbine_view *v)
{
    if (v->npages > 0) {
        struct turbine_cache *c = tl_cache;
        TURBINE_ASSERT(c != NULL && loom_core_id() == v->owner);
        /* the last unpin may free a default cache: count first, unpin last */
        unsigned n = v->npages;
        v->npages = 0;
        for (unsigned i = 0; i < n; i++)
            tc_unpin(c, v->pages[i]);
    }
    v->count = 0;
    v->bytes = 0;
    v->pinned_bytes = 0;
}

static void release_done(struct loom_msg *msg)
{
    struct turbine_view *v =
        (struct turbine_view *)((char *)msg - offsetof(struct turbine_view, msg));
    v->done(v);
}

static void release_on_owner(struct loom_msg *msg)
{
    struct turbine_view *v =
        (struct turbine_view *)((char *)msg - offsetof(struct turbine_view, msg));
    turbine_view_release(v);
    loom_msg_send(v->home, &v->msg, release_done);
}

void turbine_view_release_remote(struct turbine_view *v, void (*done)(struct turbine_view *view))
{
    v->done = done;
    if (v->npages == 0 || loom_core_id() == v->owner) {
        turbine_view_release(v);
        done(v);
        return;
    }
    v->home = loom_core_id();
    loom_msg_send(v->owner, &v->msg, release_on_owner);
}
