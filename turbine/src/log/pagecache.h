/* SPDX-License-Identifier: MIT
 * pagecache.h - the cache's interface to the log (see turbine/cache.h for the design).
 *
 * A page is named by (log id, segment base offset, page index in the segment file). Every call
 * is for the core that owns the cache, from a fiber where it may block.
 */
#ifndef TURBINE_PAGECACHE_H
#define TURBINE_PAGECACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "turbine/cache.h"

struct tc_page {
    char *data;              /* page_bytes, aligned for O_DIRECT */
    int64_t seg;             /* segment base offset */
    uint32_t log_id;         /* 0: no name */
    uint32_t index;          /* page number in the segment file */
    uint32_t valid;          /* bytes valid from the start of the page */
    uint32_t pins;           /* views, writers and loaders using it */
    int32_t hnext;           /* hash chain */
    uint8_t state;           /* enum tc_state in pagecache.c */
    bool ref;                /* read since the clock hand passed */
    bool loading;            /* being read from the file by the fiber that pinned it first */
    int error;               /* the load failed with this */
    struct tc_wait *waiters; /* fibers waiting for the load */
};

struct turbine_cache;

/* This core's cache, made with the defaults when the core has none; NULL when that fails. */
struct turbine_cache *tc_local(void);

size_t tc_page_bytes(const struct turbine_cache *c);
uint64_t tc_pages(const struct turbine_cache *c);

/* A log opens and closes: attach returns its id (never 0); detach forgets every page of it
 * (pages still pinned are freed when their last pin goes). */
uint32_t tc_attach(struct turbine_cache *c);
void tc_detach(struct turbine_cache *c, uint32_t log_id);

/* Forgets the pages of one segment (deleted or cut). */
void tc_forget(struct turbine_cache *c, uint32_t log_id, int64_t seg);

/* A page for reading, pinned: from the cache, or read from fd (an O_DIRECT file) at
 * index * page_bytes. With `reader` set, pinning a page that nobody else pins is refused
 * (NULL, -ENOBUFS) when readers pin their share of the cache. NULL and *err on failure. */
struct tc_page *tc_get(struct turbine_cache *c, uint32_t log_id, int64_t seg, uint32_t index,
                       int fd, bool reader, int *err);

/* A page for writing, pinned: the cached one, or a fresh page that is read from fd first when
 * `load` (the file holds data in it) and left with whatever bytes it held otherwise (the
 * writer writes every byte before a reader may see it). Waits for a page until the
 * deadline when all are pinned. NULL and *err on failure. */
struct tc_page *tc_get_write(struct turbine_cache *c, uint32_t log_id, int64_t seg, uint32_t index,
                             int fd, bool load, int64_t deadline_ns, int *err);

/* Pins a page already pinned by the caller once more / drops one pin. */
void tc_pin(struct turbine_cache *c, struct tc_page *p);
void tc_unpin(struct turbine_cache *c, struct tc_page *p);

/* Adds [data, data + len) of pinned page p to a view (one more pin of p unless the view's last
 * page is p). Returns false when the view is full. */
bool tc_view_add(struct turbine_cache *c, struct turbine_view *v, struct tc_page *p,
                 const char *data, size_t len);

/* Truncates a view back to `count` slices, `npages` pages and `bytes` (undoing adds). */
void tc_view_truncate(struct turbine_cache *c, struct turbine_view *v, unsigned count,
                      unsigned npages, size_t bytes, size_t last_len);

#endif
