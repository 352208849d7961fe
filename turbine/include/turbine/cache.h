/* SPDX-License-Identifier: MIT
 * cache.h - turbine's own page cache: one per loom core, in front of the O_DIRECT segment
 * files of the logs that core owns (the kernel's page cache is never used).
 *
 * The cache is a fixed number of pages of page_bytes each (aligned memory reserved when it is
 * made, never grown). A page holds page_bytes of one segment file at a page-aligned position.
 * Writers: a log's write path appends into cache pages and writes them to the file from there,
 * so recently appended data is in memory for readers that follow the tail without any copy.
 * Readers: a missing page is read with one O_DIRECT read; a page in use (pinned) is never
 * evicted; otherwise pages are evicted by CLOCK (a page read since the hand last passed gets a
 * second chance). Bytes below a log's end never change, so a pinned page can be read from any
 * core while its owner goes on appending after them.
 *
 * Reads hand out views (struct turbine_view): the bytes as iovecs over pinned pages, for
 * sendmsg or writev straight from the cache. A view is released on the core that owns the
 * pages: turbine_view_release there, or turbine_view_release_remote from any core (the pages
 * are unpinned on the owner, then `done` runs back on the releasing core). Readers are charged
 * for what they pin (view.pinned_bytes), and readers together may pin at most three quarters of
 * the pages, so writers and loads always find room.
 *
 * A core without a cache gets a default one (turbine_cache_config_init) when it opens its first
 * log; it is freed when the last log is closed and the last view released. Programs that size
 * the cache call turbine_cache_init on each core before opening logs.
 */
#ifndef TURBINE_CACHE_H
#define TURBINE_CACHE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <loom/smp.h>

#include "turbine/batch.h" /* TURBINE_API */

#ifdef __cplusplus
extern "C" {
#endif

struct turbine_cache_config {
    size_t bytes;      /* memory for pages (64 MiB); rounded down to whole pages */
    size_t page_bytes; /* a power of two from 64 KiB to 1 MiB (64 KiB) */
};

/* Fills the defaults above. */
TURBINE_API void turbine_cache_config_init(struct turbine_cache_config *config);

/* Makes this core's cache. Returns 0, -EEXIST when the core has one, -EINVAL for a bad
 * config (fewer than 16 pages, bad page size), -ENOMEM. Core: a reactor thread. */
TURBINE_API int turbine_cache_init(const struct turbine_cache_config *config);

/* Frees this core's cache. Returns 0, -ENOENT when there is none, -EBUSY while a log that
 * uses it is open or a view holds its pages. Core: a reactor thread. */
TURBINE_API int turbine_cache_fini(void);

struct turbine_cache_stats {
    uint64_t hits;        /* page lookups for reads that found the page */
    uint64_t misses;      /* ... that read it from the file */
    uint64_t evictions;   /* pages taken from one use for another */
    uint64_t load_errors; /* reads of pages that failed */
    uint64_t pin_refused; /* reads cut short because readers pinned their share */
    uint64_t pages;       /* pages in the cache */
    uint64_t page_bytes;
    uint64_t pinned; /* pages pinned now (by writers or views) */
    uint64_t logs;   /* open logs using the cache */
};

/* This core's counters. Returns 0 or -ENOENT when the core has no cache. */
TURBINE_API int turbine_cache_stats_get(struct turbine_cache_stats *out);

/* ---- views ---------------------------------------------------------------------------------- */

#define TURBINE_VIEW_SLICES 32

/* Bytes of a log lent from the cache: iov[0..count) in order, bytes in total, valid until the
 * view is released. Fields marked private belong to the cache. */
struct turbine_view {
    unsigned count;                        /* iovecs in iov */
    size_t bytes;                          /* their total length */
    size_t pinned_bytes;                   /* cache memory pinned for them */
    int64_t next_offset;                   /* the offset after the last batch in the view */
    struct iovec iov[TURBINE_VIEW_SLICES]; /* the bytes */
    /* private */
    unsigned npages;
    unsigned owner, home;
    void *pages[TURBINE_VIEW_SLICES];
    struct loom_msg msg;
    void (*done)(struct turbine_view *view);
};

/* An empty view. */
TURBINE_API void turbine_view_init(struct turbine_view *view);

/* Unpins the pages and empties the view. Core: the view's owner core (the log's). */
TURBINE_API void turbine_view_release(struct turbine_view *view);

/* Releases from any core: the pages are unpinned on the owner core, then done(view) runs on
 * the calling core, from its loop (not in a fiber: it must not block); the view is the
 * runtime's until then. Sending never allocates. On the owner core itself the release is
 * immediate and done runs before this returns. Core: any reactor thread. */
TURBINE_API void turbine_view_release_remote(struct turbine_view *view,
                                             void (*done)(struct turbine_view *view));

#ifdef __cplusplus
}
#endif
#endif
