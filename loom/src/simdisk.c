/* SPDX-License-Identifier: MIT
 * simdisk.c - the simulated disk (simdisk.h): an in-memory file system with a durability
 * model, served as a file backend with seeded completion order on a virtual clock.
 *
 * Invariants: every file keeps a volatile image (what reads see) and a durable image (what a
 * crash keeps); outside [dirty_lo, dirty_hi) the two hold the same bytes. Every image keeps
 * zeros in [size, cap), so bytes past the end read as a hole would. Every directory keeps
 * volatile and durable entry lists. A request changes the volatile state only when it
 * completes, from the pump timer, one completion per firing.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include "internal.h"
#include "loom/io.h"
#include "loom/simdisk.h"

#define SECTOR          LOOM_SIMDISK_SECTOR
#define BLOCK           LOOM_SIMDISK_BLOCK
#define PUMP_DEFER_MAX  64 /* loop passes the pump waits for a busy core before going on */
#define IOV_COUNT_MAX   1024
#define STATX_DIOALIGN_ 0x2000u /* the kernel's STATX_DIOALIGN (6.1), unknown to glibc 2.36 */
_Static_assert(sizeof(struct statx) >= 0x98 + 8, "struct statx holds the DIO alignment fields");

struct sim_image {
    uint8_t *data;
    uint64_t cap;   /* bytes of data; [size, cap) is zero */
    uint64_t size;  /* file size */
    uint64_t alloc; /* allocated bytes (a multiple of BLOCK) */
};

struct sim_node;

struct sim_dirent {
    char *name;
    struct sim_node *node;
};

struct sim_dir {
    struct sim_dirent *ents;
    uint32_t count, cap;
};

struct sim_node {
    struct sim_node *next_all; /* every node, in creation order */
    uint64_t ino;
    bool is_dir;
    bool counted; /* vol.alloc is in disk->used (reachable or open) */
    uint32_t perm;
    uint32_t open_fds;
    uint64_t live_epoch, vol_epoch; /* marks of the last traversals that reached it */
    /* files */
    struct sim_image vol, dur;
    uint64_t dirty_lo, dirty_hi; /* vol and dur may differ only here; lo >= hi: clean */
    /* directories */
    struct sim_dir vents, dents; /* volatile and durable entries */
    struct sim_node *parent;     /* volatile parent, for ".." */
};

struct sim_fd {
    struct sim_node *node; /* NULL: free */
    uint32_t flags;
    uint64_t pos;
};

struct sim_pending {
    struct loom_io_req *req;
    int64_t due_ns;
    uint32_t overtaken;
};

struct loom_simdisk {
    struct loom_simdisk_config config;
    struct loom_io_backend backend;
    unsigned core;
    uint64_t rng;
    struct sim_node *root;
    struct sim_node *nodes; /* all nodes, oldest first */
    struct sim_node **nodes_tail;
    uint64_t next_ino;
    uint64_t epoch;
    struct sim_fd *fds;
    uint32_t fd_count, fd_cap, fd_first; /* fd_first: lowest slot open may reuse */
    struct sim_pending *pend;            /* in arrival order */
    uint32_t pend_count, pend_cap;
    int64_t vnow_ns;
    struct loom_timer pump;
    unsigned deferrals;
    uint64_t used;
    struct loom_simdisk_stats stats;
};

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t round_up(uint64_t x, uint64_t unit)
{
    return (x + unit - 1) / unit * unit;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

static uint64_t max_u64(uint64_t a, uint64_t b)
{
    return a > b ? a : b;
}

static unsigned direct_align(const struct loom_simdisk *disk)
{
    return disk->config.direct_align ? disk->config.direct_align : SECTOR;
}

/* ---- images ---------------------------------------------------------------------------------- */

/* Makes img->cap >= bytes (new bytes zero). Returns 0 or -ENOMEM. */
static int image_reserve(struct sim_image *img, uint64_t bytes)
{
    if (bytes <= img->cap)
        return 0;
    uint64_t cap = max_u64(max_u64(img->cap * 2, bytes), BLOCK);
    cap = round_up(cap, BLOCK);
    uint8_t *data = realloc(img->data, cap);
    if (!data)
        return -ENOMEM;
    memset(data + img->cap, 0, cap - img->cap);
    img->data = data;
    img->cap = cap;
    return 0;
}

/* Copies n bytes at off into dst; past cap they are zero. */
static void image_read(const struct sim_image *img, uint64_t off, void *dst, uint64_t n)
{
    if (n == 0)
        return;
    uint64_t have = off < img->cap ? min_u64(n, img->cap - off) : 0;
    if (have)
        memcpy(dst, img->data + off, have);
    memset((uint8_t *)dst + have, 0, n - have);
}

/* Sets the size, zeroing what a shrink cuts off so [size, cap) stays zero. */
static int image_resize(struct sim_image *img, uint64_t size)
{
    if (size < img->size) {
        memset(img->data + size, 0, img->size - size);
    } else {
        int rc = image_reserve(img, size);
        if (rc < 0)
            return rc;
    }
    img->size = size;
    return 0;
}

/* Copies src[lo, hi) into dst (both reserved up to hi). */
static void image_copy_range(struct sim_image *dst, const struct sim_image *src, uint64_t lo,
                             uint64_t hi)
{
    if (hi > lo)
        image_read(src, lo, dst->data + lo, hi - lo);
}

static void image_free(struct sim_image *img)
{
    free(img->data);
    memset(img, 0, sizeof(*img));
}

static void node_dirty(struct sim_node *node, uint64_t lo, uint64_t hi)
{
    if (hi <= lo)
        return;
    if (node->dirty_lo >= node->dirty_hi) {
        node->dirty_lo = lo;
        node->dirty_hi = hi;
        return;
    }
    node->dirty_lo = min_u64(node->dirty_lo, lo);
    node->dirty_hi = max_u64(node->dirty_hi, hi);
}

/* ---- directories ------------------------------------------------------------------------------
 */

static struct sim_dirent *dir_find(struct sim_dir *dir, const char *name)
{
    for (uint32_t i = 0; i < dir->count; i++)
        if (strcmp(dir->ents[i].name, name) == 0)
            return &dir->ents[i];
    return NULL;
}

static int dir_add(struct sim_dir *dir, const char *name, struct sim_node *node)
{
    LOOM_ASSERT(dir_find(dir, name) == NULL);
    if (dir->count == dir->cap) {
        uint32_t cap = dir->cap ? dir->cap * 2 : 8;
        struct sim_dirent *ents = realloc(dir->ents, cap * sizeof(*ents));
        if (!ents)
            return -ENOMEM;
        dir->ents = ents;
        dir->cap = cap;
    }
    char *copy = strdup(name);
    if (!copy)
        return -ENOMEM;
    dir->ents[dir->count++] = (struct sim_dirent){.name = copy, .node = node};
    return 0;
}

/* Removes `name`, keeping the order of the others (crash traversals depend on it). */
static void dir_remove(struct sim_dir *dir, const char *name)
{
    struct sim_dirent *e = dir_find(dir, name);
    LOOM_ASSERT(e != NULL);
    free(e->name);
    uint32_t i = (uint32_t)(e - dir->ents);
    memmove(&dir->ents[i], &dir->ents[i + 1], (dir->count - i - 1) * sizeof(*e));
    dir->count--;
}

static void dir_clear(struct sim_dir *dir)
{
    for (uint32_t i = 0; i < dir->count; i++)
        free(dir->ents[i].name);
    dir->count = 0;
}

/* dst := a copy of src. Returns 0 or -ENOMEM (dst then holds a prefix). */
static int dir_copy(struct sim_dir *dst, const struct sim_dir *src)
{
    dir_clear(dst);
    for (uint32_t i = 0; i < src->count; i++) {
        int rc = dir_add(dst, src->ents[i].name, src->ents[i].node);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ---- nodes, traversal and collection ----------------------------------------------------------
 */

static struct sim_node *node_new(struct loom_simdisk *disk, bool is_dir, uint32_t perm)
{
    struct sim_node *node = calloc(1, sizeof(*node));
    if (!node)
        return NULL;
    node->ino = disk->next_ino++;
    node->is_dir = is_dir;
    node->perm = perm & 07777;
    node->counted = true;
    *disk->nodes_tail = node;
    disk->nodes_tail = &node->next_all;
    return node;
}

static void node_free(struct sim_node *node)
{
    image_free(&node->vol);
    image_free(&node->dur);
    dir_clear(&node->vents);
    dir_clear(&node->dents);
    free(node->vents.ents);
    free(node->dents.ents);
    free(node);
}

/* A growable list of nodes for breadth-first traversals. */
struct node_list {
    struct sim_node **items;
    size_t count, cap;
};

static void list_push(struct node_list *list, struct sim_node *node)
{
    if (list->count == list->cap) {
        list->cap = list->cap ? list->cap * 2 : 64;
        list->items = realloc(list->items, list->cap * sizeof(*list->items));
        LOOM_ASSERTF(list->items != NULL, "simdisk: out of memory");
    }
    list->items[list->count++] = node;
}

/* Breadth-first from the root (and from open fds when `with_fds`) over volatile and/or
 * durable entries; each node reached once, stamped with a fresh epoch in *epoch_field. The
 * order depends only on the entry lists, so it is the same for the same history. */
static struct node_list traverse(struct loom_simdisk *disk, bool vol, bool dur, bool with_fds,
                                 bool vol_epoch)
{
    uint64_t epoch = ++disk->epoch;
    struct node_list list = {0};
#define VISIT(n)                                                                                   \
    do {                                                                                           \
        uint64_t *stamp_ = vol_epoch ? &(n)->vol_epoch : &(n)->live_epoch;                         \
        if (*stamp_ != epoch) {                                                                    \
            *stamp_ = epoch;                                                                       \
            list_push(&list, (n));                                                                 \
        }                                                                                          \
    } while (0)
    VISIT(disk->root);
    if (with_fds)
        for (uint32_t i = 0; i < disk->fd_count; i++)
            if (disk->fds[i].node)
                VISIT(disk->fds[i].node);
    for (size_t i = 0; i < list.count; i++) {
        struct sim_node *node = list.items[i];
        if (!node->is_dir)
            continue;
        for (uint32_t j = 0; vol && j < node->vents.count; j++)
            VISIT(node->vents.ents[j].node);
        for (uint32_t j = 0; dur && j < node->dents.count; j++)
            VISIT(node->dents.ents[j].node);
    }
#undef VISIT
    return list;
}

/* Stops counting the space of files no longer reachable or open, and frees nodes that neither
 * the volatile tree, the durable tree nor an fd can reach. */
static void collect(struct loom_simdisk *disk)
{
    struct node_list vol = traverse(disk, true, false, true, true);
    uint64_t vol_epoch = disk->epoch;
    struct node_list all = traverse(disk, true, true, true, false);
    uint64_t live_epoch = disk->epoch;
    struct sim_node **link = &disk->nodes;
    while (*link) {
        struct sim_node *node = *link;
        if (node->counted && node->vol_epoch != vol_epoch) {
            LOOM_ASSERT(disk->used >= node->vol.alloc);
            disk->used -= node->vol.alloc;
            node->counted = false;
        }
        if (node->live_epoch != live_epoch) {
            LOOM_ASSERT(node->open_fds == 0 && node != disk->root);
            *link = node->next_all;
            node_free(node);
            continue;
        }
        link = &node->next_all;
    }
    disk->nodes_tail = link;
    free(vol.items);
    free(all.items);
}

/* Changes a file's allocation to `alloc` bytes (rounded up to BLOCK), within capacity. */
static int node_alloc(struct loom_simdisk *disk, struct sim_node *node, uint64_t alloc)
{
    alloc = round_up(alloc, BLOCK);
    LOOM_ASSERT(node->counted);
    if (alloc > node->vol.alloc) {
        uint64_t grow = alloc - node->vol.alloc;
        if (disk->config.capacity_bytes && disk->used + grow > disk->config.capacity_bytes) {
            disk->stats.enospc++;
            return -ENOSPC;
        }
        disk->used += grow;
    } else {
        disk->used -= node->vol.alloc - alloc;
    }
    node->vol.alloc = alloc;
    return 0;
}

/* ---- fds and paths ----------------------------------------------------------------------------
 */

static struct sim_fd *fd_get(struct loom_simdisk *disk, int fd)
{
    if (fd < LOOM_SIMDISK_FD_BASE)
        return NULL;
    uint32_t i = (uint32_t)(fd - LOOM_SIMDISK_FD_BASE);
    if (i >= disk->fd_count || !disk->fds[i].node)
        return NULL;
    return &disk->fds[i];
}

static int fd_open(struct loom_simdisk *disk, struct sim_node *node, uint32_t flags)
{
    uint32_t i = disk->fd_first;
    while (i < disk->fd_count && disk->fds[i].node)
        i++;
    if (i >= LOOM_SIMDISK_FDS_MAX)
        return -EMFILE;
    if (i == disk->fd_cap) {
        uint32_t cap = disk->fd_cap ? disk->fd_cap * 2 : 64;
        struct sim_fd *fds = realloc(disk->fds, cap * sizeof(*fds));
        if (!fds)
            return -ENOMEM;
        disk->fds = fds;
        disk->fd_cap = cap;
    }
    if (i == disk->fd_count)
        disk->fd_count++;
    disk->fds[i] = (struct sim_fd){.node = node, .flags = flags};
    node->open_fds++;
    disk->stats.open_fds++;
    return LOOM_SIMDISK_FD_BASE + (int)i;
}

/* A path resolved up to its last component. */
struct sim_path {
    struct sim_node *dir;  /* the directory holding the last component */
    struct sim_node *node; /* what the path names, NULL when absent */
    const char *name;      /* the last component ("" for "/"), NUL-terminated in buf */
    bool special;          /* the last component is "", "." or ".." (no entry to change) */
    char buf[PATH_MAX];
};

static int dirfd_node(struct loom_simdisk *disk, int dirfd, struct sim_node **out)
{
    if (dirfd == AT_FDCWD) {
        *out = disk->root;
        return 0;
    }
    struct sim_fd *f = fd_get(disk, dirfd);
    if (!f)
        return -EBADF;
    if (!f->node->is_dir)
        return -ENOTDIR;
    *out = f->node;
    return 0;
}

static int step(struct sim_node *dir, const char *name, struct sim_node **out)
{
    if (strcmp(name, ".") == 0) {
        *out = dir;
    } else if (strcmp(name, "..") == 0) {
        *out = dir->parent;
    } else {
        struct sim_dirent *e = dir_find(&dir->vents, name);
        if (!e)
            return -ENOENT;
        *out = e->node;
    }
    return 0;
}

/* Resolves `path` against `dirfd` (AT_FDCWD and absolute paths: the disk's root). */
static int path_walk(struct loom_simdisk *disk, int dirfd, const char *path, struct sim_path *p)
{
    if (!path)
        return -EFAULT;
    if (path[0] == '\0')
        return -ENOENT;
    size_t len = strlen(path);
    if (len >= sizeof(p->buf))
        return -ENAMETOOLONG;
    memcpy(p->buf, path, len + 1);
    struct sim_node *cur = disk->root;
    if (path[0] != '/') {
        int rc = dirfd_node(disk, dirfd, &cur);
        if (rc < 0)
            return rc;
    }
    bool trailing_slash = len > 0 && path[len - 1] == '/';
    char *save = NULL, *tok = strtok_r(p->buf, "/", &save);
    const char *last = "";
    while (tok) {
        if (strlen(tok) > NAME_MAX)
            return -ENAMETOOLONG;
        char *next = strtok_r(NULL, "/", &save);
        if (!next) {
            last = tok;
            break;
        }
        struct sim_node *child;
        int rc = step(cur, tok, &child);
        if (rc < 0)
            return rc;
        if (!child->is_dir)
            return -ENOTDIR;
        cur = child;
        tok = next;
    }
    p->dir = cur;
    p->name = last;
    p->special = last[0] == '\0' || strcmp(last, ".") == 0 || strcmp(last, "..") == 0;
    p->node = NULL;
    if (last[0] == '\0')
        p->node = cur;
    else if (step(cur, last, &p->node) < 0)
        p->node = NULL;
    if (trailing_slash && p->node && !p->node->is_dir)
        return -ENOTDIR;
    return 0;
}

/* ---- requests: namespace ----------------------------------------------------------------------
 */

static int do_openat(struct loom_simdisk *disk, const struct loom_io_req *req)
{
    struct sim_path p;
    int flags = (int)req->flags, acc = flags & O_ACCMODE;
    int rc = path_walk(disk, req->fd, req->addr, &p);
    if (rc < 0)
        return rc;
    struct sim_node *node = p.node;
    if (!node) {
        if (!(flags & O_CREAT))
            return -ENOENT;
        if ((flags & O_DIRECTORY) || p.special)
            return p.special ? -EISDIR : -EINVAL;
        node = node_new(disk, false, req->mode);
        if (!node)
            return -ENOMEM;
        rc = dir_add(&p.dir->vents, p.name, node);
        if (rc < 0)
            return rc; /* the node goes at the next collection */
    } else {
        if ((flags & O_CREAT) && (flags & O_EXCL))
            return -EEXIST;
        if (node->is_dir && (acc != O_RDONLY || (flags & O_CREAT)))
            return -EISDIR;
        if (!node->is_dir && (flags & O_DIRECTORY))
            return -ENOTDIR;
        if (!node->is_dir && (flags & O_TRUNC) && acc != O_RDONLY && node->vol.size > 0) {
            node_dirty(node, 0, node->vol.size);
            LOOM_ASSERT(image_resize(&node->vol, 0) == 0);
            LOOM_ASSERT(node_alloc(disk, node, 0) == 0);
        }
    }
    return fd_open(disk, node, (uint32_t)flags);
}

static int do_close(struct loom_simdisk *disk, const struct loom_io_req *req)
{
    struct sim_fd *f = fd_get(disk, req->fd);
    if (!f)
        return -EBADF;
    LOOM_ASSERT(f->node->open_fds > 0);
    f->node->open_fds--;
    f->node = NULL;
    disk->stats.open_fds--;
    collect(disk);
    return 0;
}

static bool in_subtree(struct sim_node *node, struct sim_node *dir)
{
    for (struct sim_node *n = node;; n = n->parent) {
        if (n == dir)
            return true;
        if (n->parent == n)
            return false;
    }
}

/* The checks of rename(2) for moving `from` over `to` (which may be NULL). */
static int rename_check(const struct sim_path *src, const struct sim_path *dst, unsigned flags)
{
    struct sim_node *from = src->node, *to = dst->node;
    if (!from)
        return -ENOENT;
    if (src->special || dst->special)
        return -EBUSY;
    if (to && (flags & RENAME_NOREPLACE))
        return -EEXIST;
    if (from->is_dir && in_subtree(dst->dir, from))
        return -EINVAL;
    if (!to)
        return 0;
    if (from->is_dir && !to->is_dir)
        return -ENOTDIR;
    if (!from->is_dir && to->is_dir)
        return -EISDIR;
    if (to->is_dir && to->vents.count > 0)
        return -ENOTEMPTY;
    return 0;
}

static int do_renameat(struct loom_simdisk *disk, const struct loom_io_req *req)
{
    if (req->flags & ~(uint32_t)RENAME_NOREPLACE)
        return -EINVAL;
    struct sim_path *src = malloc(2 * sizeof(*src)), *dst = src + 1;
    if (!src)
        return -ENOMEM;
    int rc = path_walk(disk, req->fd, req->addr, src);
    if (rc == 0)
        rc = path_walk(disk, req->fd2, req->addr2, dst);
    if (rc == 0)
        rc = rename_check(src, dst, req->flags);
    if (rc == 0 && src->node != dst->node) {
        struct sim_node *node = src->node;
        if (dst->node)
            dir_remove(&dst->dir->vents, dst->name);
        dir_remove(&src->dir->vents, src->name);
        rc = dir_add(&dst->dir->vents, dst->name, node);
        if (node->is_dir)
            node->parent = dst->dir;
        collect(disk);
    }
    free(src);
    return rc;
}

static int do_unlinkat(struct loom_simdisk *disk, const struct loom_io_req *req)
{
    if (req->flags & ~(uint32_t)AT_REMOVEDIR)
        return -EINVAL;
    struct sim_path p;
    int rc = path_walk(disk, req->fd, req->addr, &p);
    if (rc < 0)
        return rc;
    if (!p.node)
        return -ENOENT;
    if (p.special)
        return p.node == disk->root ? -EBUSY : -EINVAL;
    if (req->flags & AT_REMOVEDIR) {
        if (!p.node->is_dir)
            return -ENOTDIR;
        if (p.node->vents.count > 0)
            return -ENOTEMPTY;
    } else if (p.node->is_dir) {
        return -EISDIR;
    }
    dir_remove(&p.dir->vents, p.name);
    collect(disk);
    return 0;
}

static int do_mkdirat(struct loom_simdisk *disk, const struct loom_io_req *req)
{
    struct sim_path p;
    int rc = path_walk(disk, req->fd, req->addr, &p);
    if (rc < 0)
        return rc;
    if (p.node || p.special)
        return -EEXIST;
    struct sim_node *node = node_new(disk, true, req->mode);
    if (!node)
        return -ENOMEM;
    node->parent = p.dir;
    return dir_add(&p.dir->vents, p.name, node);
}

static int do_statx(struct loom_simdisk *disk, const struct loom_io_req *req)
{
    struct sim_node *node;
    const char *path = req->addr;
    if ((req->flags & AT_EMPTY_PATH) && (!path || path[0] == '\0')) {
        if (req->fd == AT_FDCWD) {
            node = disk->root;
        } else {
            struct sim_fd *f = fd_get(disk, req->fd);
            if (!f)
                return -EBADF;
            node = f->node;
        }
    } else {
        struct sim_path p;
        int rc = path_walk(disk, req->fd, path, &p);
        if (rc < 0)
            return rc;
        if (!p.node)
            return -ENOENT;
        node = p.node;
    }
    struct statx *out = req->addr2;
    if (!out)
        return -EFAULT;
    memset(out, 0, sizeof(*out));
    out->stx_mask = STATX_BASIC_STATS;
    out->stx_blksize = BLOCK;
    out->stx_ino = node->ino;
    out->stx_nlink = node->is_dir ? 2 : 1;
    out->stx_mode = (uint16_t)((node->is_dir ? S_IFDIR : S_IFREG) | node->perm);
    out->stx_size = node->is_dir ? BLOCK : node->vol.size;
    out->stx_blocks = node->is_dir ? BLOCK / 512 : node->vol.alloc / 512;
    if (req->mode & STATX_DIOALIGN_) {
        /* glibc 2.36's struct statx predates the fields: write them at the kernel's offsets */
        uint32_t align[2] = {direct_align(disk), direct_align(disk)}; /* memory, offset */
        memcpy((char *)out + 0x98, align, sizeof(align));
        out->stx_mask |= STATX_DIOALIGN_;
    }
    int64_t t = disk->vnow_ns;
    out->stx_mtime.tv_sec = t / LOOM_NS_PER_S;
    out->stx_mtime.tv_nsec = (uint32_t)(t % LOOM_NS_PER_S);
    return 0;
}

/* ---- requests: data ----------------------------------------------------------------------- */

/* The fd of a data request on a regular file, open for reading or writing. */
static int data_fd(struct loom_simdisk *disk, int fd, bool write, struct sim_fd **out)
{
    struct sim_fd *f = fd_get(disk, fd);
    if (!f)
        return -EBADF;
    int acc = (int)(f->flags & O_ACCMODE);
    if (f->node->is_dir)
        return -EISDIR;
    if (write ? acc == O_RDONLY : acc == O_WRONLY)
        return -EBADF;
    *out = f;
    return 0;
}

/* The request's iovecs: a vector kind's array, or one made from addr/len. */
static int req_iov(const struct loom_io_req *req, struct iovec *one, const struct iovec **iov,
                   int *count, uint64_t *total)
{
    if (req->kind == LOOM_IO_READV || req->kind == LOOM_IO_WRITEV) {
        if (req->len > IOV_COUNT_MAX)
            return -EINVAL;
        *iov = req->addr;
        *count = (int)req->len;
    } else {
        one->iov_base = req->addr;
        one->iov_len = req->len;
        *iov = one;
        *count = 1;
    }
    *total = 0;
    for (int i = 0; i < *count; i++)
        *total += (*iov)[i].iov_len;
    return 0;
}

/* O_DIRECT: offset and every segment a multiple of the alignment, as the kernel demands. */
static int direct_check(const struct loom_simdisk *disk, const struct sim_fd *f, uint64_t off,
                        const struct iovec *iov, int count)
{
    if (!(f->flags & O_DIRECT))
        return 0;
    unsigned align = direct_align(disk);
    if (off % align)
        return -EINVAL;
    for (int i = 0; i < count; i++)
        if (iov[i].iov_len % align)
            return -EINVAL;
    return 0;
}

/* What a read or write request addresses, checked: the fd, the vector, the file offset. */
struct rw {
    struct sim_fd *f;
    struct iovec one; /* the vector of a plain read/write */
    const struct iovec *iov;
    int count;
    uint64_t total, off;
    bool use_pos; /* offset -1: the fd's position */
};

static int rw_begin(struct loom_simdisk *disk, const struct loom_io_req *req, bool write,
                    struct rw *rw)
{
    rw->iov = NULL;
    rw->count = 0;
    rw->total = 0;
    rw->off = req->offset;
    int rc = data_fd(disk, req->fd, write, &rw->f);
    if (rc == 0)
        rc = req_iov(req, &rw->one, &rw->iov, &rw->count, &rw->total);
    if (rc < 0)
        return rc;
    rw->use_pos = rw->off == UINT64_MAX;
    if (rw->use_pos)
        rw->off = rw->f->pos;
    if (write && ((rw->f->flags & O_APPEND) || (req->flags & RWF_APPEND)))
        rw->off = rw->f->node->vol.size;
    return direct_check(disk, rw->f, rw->off, rw->iov, rw->count);
}

static int do_read(struct loom_simdisk *disk, const struct loom_io_req *req)
{
    struct rw rw;
    int rc = rw_begin(disk, req, false, &rw);
    if (rc < 0)
        return rc;
    struct sim_fd *f = rw.f;
    const struct iovec *iov = rw.iov;
    int count = rw.count;
    uint64_t off = rw.off;
    bool use_pos = rw.use_pos;
    const struct sim_image *img = &f->node->vol;
    uint64_t done = 0;
    for (int i = 0; i < count && off + done < img->size; i++) {
        uint64_t n = min_u64(iov[i].iov_len, img->size - (off + done));
        image_read(img, off + done, iov[i].iov_base, n);
        done += n;
    }
    if (use_pos)
        f->pos += done;
    disk->stats.reads++;
    disk->stats.bytes_read += done;
    return (int)min_u64(done, INT32_MAX);
}

/* Makes [lo, hi) of a file durable (an RWF_DSYNC write). */
static void make_durable(struct sim_node *node, uint64_t lo, uint64_t hi)
{
    LOOM_ASSERTF(image_reserve(&node->dur, hi) == 0, "simdisk: out of memory");
    image_copy_range(&node->dur, &node->vol, lo, hi);
    node->dur.size = max_u64(node->dur.size, hi);
    node->dur.alloc = max_u64(node->dur.alloc, round_up(hi, BLOCK));
}

/* Writes at `off` (after the capacity check); `sync_ok` false for writes a crash cuts off. */
static int write_at(struct loom_simdisk *disk, struct sim_fd *f, uint64_t off,
                    const struct iovec *iov, int count, uint64_t total, bool sync)
{
    struct sim_node *node = f->node;
    uint64_t end = off + total;
    if (end > LOOM_SIMDISK_FILE_MAX || end < off)
        return -EFBIG;
    if (round_up(end, BLOCK) > node->vol.alloc) {
        int rc = node_alloc(disk, node, end);
        if (rc < 0)
            return rc;
    }
    if (end > node->vol.size && image_resize(&node->vol, end) < 0)
        return -ENOMEM;
    uint64_t at = off;
    for (int i = 0; i < count; i++) {
        if (iov[i].iov_len)
            memcpy(node->vol.data + at, iov[i].iov_base, iov[i].iov_len);
        at += iov[i].iov_len;
    }
    node_dirty(node, off, end);
    if (sync)
        make_durable(node, off, end);
    disk->stats.writes++;
    disk->stats.bytes_written += total;
    return (int)min_u64(total, INT32_MAX);
}

static int do_write(struct loom_simdisk *disk, const struct loom_io_req *req, bool sync_ok)
{
    struct rw rw;
    int rc = rw_begin(disk, req, true, &rw);
    if (rc < 0)
        return rc;
    struct sim_fd *f = rw.f;
    const struct iovec *iov = rw.iov;
    int count = rw.count;
    uint64_t total = rw.total, off = rw.off;
    bool use_pos = rw.use_pos;
    bool sync = (req->flags & (RWF_DSYNC | RWF_SYNC)) || (f->flags & O_DSYNC);
    rc = write_at(disk, f, off, iov, count, total, sync && sync_ok);
    if (rc >= 0 && use_pos)
        f->pos = off + total;
    return rc;
}

static int do_fsync(struct loom_simdisk *disk, const struct loom_io_req *req)
{
    struct sim_fd *f = fd_get(disk, req->fd);
    if (!f)
        return -EBADF;
    struct sim_node *node = f->node;
    disk->stats.fsyncs++;
    if (node->is_dir) {
        int rc = dir_copy(&node->dents, &node->vents);
        collect(disk);
        return rc;
    }
    /* bytes outside the dirty range are equal already; the size and allocation are metadata
     * both fsync and fdatasync write (fdatasync must, to read the data back) */
    if (image_reserve(&node->dur, node->vol.size) < 0)
        return -ENOMEM;
    if (node->dirty_lo < node->dirty_hi)
        image_copy_range(&node->dur, &node->vol, min_u64(node->dirty_lo, node->vol.size),
                         min_u64(node->dirty_hi, node->vol.size));
    LOOM_ASSERT(image_resize(&node->dur, node->vol.size) == 0);
    node->dur.alloc = node->vol.alloc;
    node->dirty_lo = node->dirty_hi = 0;
    return 0;
}

static int do_fallocate(struct loom_simdisk *disk, const struct loom_io_req *req)
{
    struct sim_fd *f;
    int rc = data_fd(disk, req->fd, true, &f);
    if (rc < 0)
        return rc;
    uint32_t mode = req->mode;
    bool keep = mode & FALLOC_FL_KEEP_SIZE;
    uint64_t off = req->offset, end = req->offset + req->length;
    if (mode & ~(uint32_t)(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE))
        return -EOPNOTSUPP;
    if ((mode & FALLOC_FL_PUNCH_HOLE) && (!keep || (mode & FALLOC_FL_ZERO_RANGE)))
        return -EOPNOTSUPP;
    if (req->length == 0)
        return -EINVAL;
    if (end > LOOM_SIMDISK_FILE_MAX || end < off)
        return -EFBIG;
    struct sim_node *node = f->node;
    if (!(mode & FALLOC_FL_PUNCH_HOLE) && round_up(end, BLOCK) > node->vol.alloc) {
        rc = node_alloc(disk, node, end);
        if (rc < 0)
            return rc;
    }
    if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) {
        uint64_t hi = min_u64(end, node->vol.size);
        if (hi > off) {
            memset(node->vol.data + off, 0, hi - off);
            node_dirty(node, off, hi);
        }
    }
    if (!keep && end > node->vol.size) {
        node_dirty(node, node->vol.size, end);
        if (image_resize(&node->vol, end) < 0)
            return -ENOMEM;
    }
    return 0;
}

static int do_ftruncate(struct loom_simdisk *disk, const struct loom_io_req *req)
{
    struct sim_fd *f = fd_get(disk, req->fd);
    if (!f)
        return -EBADF;
    if (f->node->is_dir || (f->flags & O_ACCMODE) == O_RDONLY)
        return -EINVAL;
    if (req->length > LOOM_SIMDISK_FILE_MAX)
        return -EFBIG;
    struct sim_node *node = f->node;
    uint64_t size = node->vol.size;
    node_dirty(node, min_u64(size, req->length), max_u64(size, req->length));
    if (image_resize(&node->vol, req->length) < 0)
        return -ENOMEM;
    if (req->length < size) /* growing leaves a hole: no allocation */
        LOOM_ASSERT(node_alloc(disk, node, min_u64(node->vol.alloc, req->length)) == 0);
    return 0;
}

/* Applies `req` to the volatile state and returns its result. */
static int execute(struct loom_simdisk *disk, struct loom_io_req *req)
{
    switch ((enum loom_io_kind)req->kind) {
    case LOOM_IO_NOP:
        return 0;
    case LOOM_IO_OPENAT:
        return do_openat(disk, req);
    case LOOM_IO_CLOSE:
        return do_close(disk, req);
    case LOOM_IO_READ:
    case LOOM_IO_READV:
    case LOOM_IO_READ_FIXED:
        return do_read(disk, req);
    case LOOM_IO_WRITE:
    case LOOM_IO_WRITEV:
    case LOOM_IO_WRITE_FIXED:
        return do_write(disk, req, true);
    case LOOM_IO_FSYNC:
        return do_fsync(disk, req);
    case LOOM_IO_FALLOCATE:
        return do_fallocate(disk, req);
    case LOOM_IO_FTRUNCATE:
        return do_ftruncate(disk, req);
    case LOOM_IO_STATX:
        return do_statx(disk, req);
    case LOOM_IO_RENAMEAT:
        return do_renameat(disk, req);
    case LOOM_IO_UNLINKAT:
        return do_unlinkat(disk, req);
    case LOOM_IO_MKDIRAT:
        return do_mkdirat(disk, req);
    case LOOM_IO_KINDS:
        break;
    }
    LOOM_ASSERTF(false, "simdisk: unknown request kind %u", req->kind);
    return -EINVAL;
}

/* ---- the pump: seeded completion order on the virtual clock -----------------------------------
 */

static void pump_arm(struct loom_simdisk *disk);

/* The pending request to complete next: the earliest virtual due time among the first
 * reorder_max + 1, unless the oldest has been overtaken reorder_max times already. */
static uint32_t pump_pick(const struct loom_simdisk *disk)
{
    LOOM_ASSERT(disk->pend_count > 0);
    unsigned max = disk->config.reorder_max;
    if (disk->pend[0].overtaken >= max)
        return 0;
    uint32_t window = (uint32_t)min_u64(disk->pend_count, (uint64_t)max + 1);
    uint32_t best = 0;
    for (uint32_t i = 1; i < window; i++)
        if (disk->pend[i].due_ns < disk->pend[best].due_ns)
            best = i;
    return best;
}

static struct sim_pending pend_take(struct loom_simdisk *disk, uint32_t i)
{
    struct sim_pending p = disk->pend[i];
    for (uint32_t j = 0; j < i; j++)
        disk->pend[j].overtaken++;
    memmove(&disk->pend[i], &disk->pend[i + 1], (disk->pend_count - i - 1) * sizeof(p));
    disk->pend_count--;
    disk->stats.in_flight--;
    return p;
}

/* Completes one request per firing, and only when the core has nothing else to run (or has
 * been busy for PUMP_DEFER_MAX passes), so which requests are pending at each step depends on
 * the program, not on how fast the machine is. */
static void pump_timer_callback(struct loom_timer *timer, void *arg)
{
    struct loom_simdisk *disk = arg;
    struct loom__reactor *r = loom__reactor();
    LOOM_ASSERT(timer == &disk->pump && r->core == disk->core);
    if (disk->pend_count == 0)
        return;
    if ((r->ready_head || r->done_head) && disk->deferrals < PUMP_DEFER_MAX) {
        disk->deferrals++;
        pump_arm(disk);
        return;
    }
    disk->deferrals = 0;
    uint32_t i = pump_pick(disk);
    struct sim_pending p = pend_take(disk, i);
    if (i > 0)
        disk->stats.reordered++;
    if (p.due_ns > disk->vnow_ns)
        disk->vnow_ns = p.due_ns;
    int res = execute(disk, p.req);
    disk->stats.completions++;
    loom_io_complete(p.req, res);
    if (disk->pend_count > 0)
        pump_arm(disk);
}

static void pump_arm(struct loom_simdisk *disk)
{
    if (loom_timer_is_armed(&disk->pump))
        return;
    int rc = loom_timer_start(&disk->pump, loom_now_ns(), pump_timer_callback, disk);
    LOOM_ASSERT(rc == 0);
}

static int64_t latency_draw(struct loom_simdisk *disk)
{
    int64_t lo = disk->config.latency_min_ns, hi = disk->config.latency_max_ns;
    uint64_t x = splitmix64(&disk->rng);
    return lo + (int64_t)(x % (uint64_t)(hi - lo + 1));
}

static void backend_start(void *ctx, struct loom_io_req *req)
{
    struct loom_simdisk *disk = ctx;
    LOOM_ASSERTF(loom_core_id() == disk->core, "simdisk of core %u used on core %u", disk->core,
                 loom_core_id());
    LOOM_ASSERT(req->kind < LOOM_IO_KINDS);
    if (disk->pend_count == disk->pend_cap) {
        uint32_t cap = disk->pend_cap ? disk->pend_cap * 2 : 64;
        struct sim_pending *pend = realloc(disk->pend, cap * sizeof(*pend));
        LOOM_ASSERTF(pend != NULL, "simdisk: out of memory");
        disk->pend = pend;
        disk->pend_cap = cap;
    }
    int64_t due = disk->vnow_ns + latency_draw(disk);
    disk->pend[disk->pend_count++] = (struct sim_pending){.req = req, .due_ns = due};
    disk->stats.requests++;
    disk->stats.in_flight++;
    pump_arm(disk);
}

static int backend_cancel(void *ctx, struct loom_io_req *req)
{
    struct loom_simdisk *disk = ctx;
    for (uint32_t i = 0; i < disk->pend_count; i++) {
        if (disk->pend[i].req != req)
            continue;
        /* not started in the model: it never happened; the callback runs from the loop */
        struct sim_pending p = pend_take(disk, i);
        loom_io_complete(p.req, -ECANCELED);
        return 0;
    }
    return -ENOENT;
}

/* ---- the disk ------------------------------------------------------------------------------- */

struct loom_simdisk *loom_simdisk_create(const struct loom_simdisk_config *config)
{
    if (!config || config->latency_min_ns < 0 || config->latency_max_ns < config->latency_min_ns ||
        (config->direct_align & (config->direct_align - 1)))
        return NULL;
    struct loom_simdisk *disk = calloc(1, sizeof(*disk));
    if (!disk)
        return NULL;
    disk->config = *config;
    disk->core = loom_core_id();
    disk->rng = config->seed;
    disk->nodes_tail = &disk->nodes;
    disk->next_ino = 2;
    disk->root = node_new(disk, true, 0755);
    if (!disk->root) {
        free(disk);
        return NULL;
    }
    disk->root->parent = disk->root;
    loom_timer_init(&disk->pump);
    disk->backend = (struct loom_io_backend){
        .name = "simdisk", .start = backend_start, .cancel = backend_cancel, .ctx = disk};
    return disk;
}

const struct loom_io_backend *loom_simdisk_backend(struct loom_simdisk *disk)
{
    return &disk->backend;
}

int64_t loom_simdisk_now_ns(const struct loom_simdisk *disk)
{
    return disk->vnow_ns;
}

/* Fails every request in flight with -EIO, in arrival order; with `apply`, the writes among
 * them reach the volatile images first (a crash may keep any of their sectors). */
static void fail_in_flight(struct loom_simdisk *disk, bool apply)
{
    if (loom_timer_is_armed(&disk->pump))
        loom_timer_cancel(&disk->pump);
    for (uint32_t i = 0; i < disk->pend_count; i++) {
        struct loom_io_req *req = disk->pend[i].req;
        if (apply && (req->kind == LOOM_IO_WRITE || req->kind == LOOM_IO_WRITEV ||
                      req->kind == LOOM_IO_WRITE_FIXED))
            (void)do_write(disk, req, false);
        disk->stats.crash_failed += apply;
        loom_io_complete(req, -EIO);
    }
    disk->pend_count = 0;
    disk->stats.in_flight = 0;
}

/* A file after power loss: its durable image, with each sector written since the last fsync
 * (and inside the durable size) taken old or new by the seed. */
static void crash_file(struct loom_simdisk *disk, struct sim_node *node, uint64_t *rng)
{
    struct sim_image *vol = &node->vol, *dur = &node->dur;
    uint8_t sector[SECTOR];
    if (node->dirty_lo < node->dirty_hi) {
        uint64_t lo = node->dirty_lo / SECTOR * SECTOR;
        uint64_t hi = min_u64(node->dirty_hi, dur->size);
        for (uint64_t s = lo; s < hi; s += SECTOR) {
            uint64_t n = min_u64(SECTOR, dur->size - s);
            image_read(vol, s, sector, n);
            if (memcmp(sector, dur->data + s, n) == 0)
                continue;
            if (splitmix64(rng) & 1)
                memcpy(dur->data + s, sector, n);
            else
                disk->stats.torn_sectors++;
        }
    }
    /* the volatile image restarts as the durable one (zeroed first: [size, cap) stays 0) */
    LOOM_ASSERT(image_resize(vol, 0) == 0);
    LOOM_ASSERTF(image_reserve(vol, dur->size) == 0, "simdisk: out of memory");
    if (dur->size)
        memcpy(vol->data, dur->data, dur->size);
    vol->size = dur->size;
    vol->alloc = dur->alloc;
    node->dirty_lo = node->dirty_hi = 0;
}

void loom_simdisk_crash(struct loom_simdisk *disk, uint64_t seed)
{
    LOOM_ASSERT(loom_core_id() == disk->core);
    fail_in_flight(disk, true);
    for (uint32_t i = 0; i < disk->fd_count; i++)
        if (disk->fds[i].node) {
            disk->fds[i].node->open_fds--;
            disk->fds[i].node = NULL;
        }
    disk->fd_first = disk->fd_count; /* stale fds of the old "process" stay -EBADF */
    disk->stats.open_fds = 0;
    /* the durable tree is what survives; walk it in entry order so the draws are stable */
    struct node_list list = traverse(disk, false, true, false, false);
    uint64_t rng = seed;
    disk->used = 0;
    for (struct sim_node *n = disk->nodes; n; n = n->next_all)
        n->counted = false;
    for (size_t i = 0; i < list.count; i++) {
        struct sim_node *node = list.items[i];
        node->counted = true;
        if (!node->is_dir) {
            crash_file(disk, node, &rng);
            disk->used += node->vol.alloc;
            continue;
        }
        LOOM_ASSERTF(dir_copy(&node->vents, &node->dents) == 0, "simdisk: out of memory");
        for (uint32_t j = 0; j < node->dents.count; j++)
            if (node->dents.ents[j].node->is_dir)
                node->dents.ents[j].node->parent = node;
    }
    free(list.items);
    collect(disk);
    disk->stats.crashes++;
}

void loom_simdisk_destroy(struct loom_simdisk *disk)
{
    if (!disk)
        return;
    LOOM_ASSERT(loom_core_id() == disk->core);
    LOOM_ASSERTF(loom_io_backend_get() != &disk->backend,
                 "simdisk destroyed while installed as the core's backend");
    fail_in_flight(disk, false);
    for (struct sim_node *n = disk->nodes; n;) {
        struct sim_node *next = n->next_all;
        node_free(n);
        n = next;
    }
    free(disk->fds);
    free(disk->pend);
    free(disk);
}

void loom_simdisk_stats(const struct loom_simdisk *disk, struct loom_simdisk_stats *out)
{
    struct loom_simdisk *d = (struct loom_simdisk *)disk; /* traversal stamps, not state */
    *out = d->stats;
    out->used_bytes = d->used;
    out->capacity_bytes = d->config.capacity_bytes;
    out->files = out->dirs = 0;
    struct node_list list = traverse(d, true, false, false, true);
    for (size_t i = 0; i < list.count; i++) {
        if (list.items[i]->is_dir)
            out->dirs++;
        else
            out->files++;
    }
    free(list.items);
}
