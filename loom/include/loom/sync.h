/* SPDX-License-Identifier: MIT
 * sync.h - fiber synchronisation built on batons: mutex, condition variable, counting
 * semaphore, bounded channel, wait group and one-shot future.
 *
 * All are caller-owned, belong to the core that initialised them and are used by fibers of
 * that core only (the future alone may be set from any core). Waiters queue in FIFO order in
 * records on their own stacks (no allocation); a release hands the resource straight to the
 * first waiter, so no waiter starves and no wake-up is lost. Every wait takes a deadline and
 * returns -ETIMEDOUT when it passes, leaving the object as if the waiter had never queued.
 */
#ifndef LOOM_SYNC_H
#define LOOM_SYNC_H

#include "loom/baton.h"
#include "loom/common.h"

#ifdef __cplusplus
extern "C" {
#endif

struct loom_waiter; /* private: lives on the waiting fiber's stack */

struct loom_wait_list {
    struct loom_waiter *head, *tail;
};

/* --- mutex -------------------------------------------------------------------------------- */
struct loom_mutex {
    struct loom_wait_list waiters;
    struct loom_fiber *owner;
    uint16_t core;
};
LOOM_API void loom_mutex_init(struct loom_mutex *mutex);
LOOM_API void loom_mutex_deinit(struct loom_mutex *mutex); /* must be unlocked, no waiters */
/* Returns 0 with the mutex held, or -ETIMEDOUT. Not recursive: locking a mutex the calling
 * fiber holds fails an assertion. */
LOOM_API int loom_mutex_lock(struct loom_mutex *mutex, int64_t deadline_ns);
LOOM_API bool loom_mutex_trylock(struct loom_mutex *mutex);
/* Only the holder unlocks; ownership passes to the first waiter. */
LOOM_API void loom_mutex_unlock(struct loom_mutex *mutex);

/* --- condition variable ------------------------------------------------------------------- */
struct loom_cond {
    struct loom_wait_list waiters;
    uint16_t core;
};
LOOM_API void loom_cond_init(struct loom_cond *cond);
LOOM_API void loom_cond_deinit(struct loom_cond *cond);
/* Releases `mutex` (held by the caller), waits for a signal, relocks. Returns 0 or -ETIMEDOUT;
 * the mutex is held again on return in both cases (re-locking ignores the deadline). */
LOOM_API int loom_cond_wait(struct loom_cond *cond, struct loom_mutex *mutex, int64_t deadline_ns);
LOOM_API void loom_cond_signal(struct loom_cond *cond);    /* wakes the first waiter */
LOOM_API void loom_cond_broadcast(struct loom_cond *cond); /* wakes all */

/* --- counting semaphore ------------------------------------------------------------------- */
struct loom_sem {
    struct loom_wait_list waiters;
    int64_t count;
    uint16_t core;
};
LOOM_API void loom_sem_init(struct loom_sem *sem, int64_t count);
LOOM_API void loom_sem_deinit(struct loom_sem *sem);
/* Takes `n` (>= 1) units, waiting in FIFO order (a large request is not overtaken by later
 * small ones). Returns 0 or -ETIMEDOUT (nothing taken). */
LOOM_API int loom_sem_acquire(struct loom_sem *sem, int64_t n, int64_t deadline_ns);
LOOM_API bool loom_sem_try_acquire(struct loom_sem *sem, int64_t n);
LOOM_API void loom_sem_release(struct loom_sem *sem, int64_t n);
LOOM_API int64_t loom_sem_available(const struct loom_sem *sem);

/* --- bounded channel of pointers ---------------------------------------------------------- */
struct loom_channel {
    struct loom_wait_list senders, receivers;
    void **slots; /* caller-provided storage of `capacity` pointers */
    uint32_t capacity, head, count;
    uint16_t core;
    bool closed;
};
/* `slots` (capacity >= 1 entries) stays owned by the caller and must outlive the channel. */
LOOM_API void loom_channel_init(struct loom_channel *channel, void **slots, uint32_t capacity);
LOOM_API void loom_channel_deinit(struct loom_channel *channel);
/* Returns 0, -ETIMEDOUT, or -EPIPE when the channel is closed (the item was not sent). */
LOOM_API int loom_channel_send(struct loom_channel *channel, void *item, int64_t deadline_ns);
/* Returns 0 with *item set, -ETIMEDOUT, or -EPIPE when closed and drained. */
LOOM_API int loom_channel_recv(struct loom_channel *channel, void **item, int64_t deadline_ns);
/* Wakes every waiter: senders get -EPIPE, receivers drain what is left, then get -EPIPE. */
LOOM_API void loom_channel_close(struct loom_channel *channel);
LOOM_API uint32_t loom_channel_count(const struct loom_channel *channel);

/* --- wait group --------------------------------------------------------------------------- */
struct loom_waitgroup {
    struct loom_wait_list waiters;
    int64_t count;
    uint16_t core;
};
LOOM_API void loom_waitgroup_init(struct loom_waitgroup *wg);
LOOM_API void loom_waitgroup_deinit(struct loom_waitgroup *wg);
LOOM_API void loom_waitgroup_add(struct loom_waitgroup *wg, int64_t n);
LOOM_API void loom_waitgroup_done(struct loom_waitgroup *wg); /* count must stay >= 0 */
/* Returns 0 once the count is zero, or -ETIMEDOUT. */
LOOM_API int loom_waitgroup_wait(struct loom_waitgroup *wg, int64_t deadline_ns);

/* --- one-shot future ---------------------------------------------------------------------- */
struct loom_future {
    struct loom_baton baton;
    int64_t value;
    bool set;
};
LOOM_API void loom_future_init(struct loom_future *future); /* owned by the calling core */
/* Sets the value once (a second set fails an assertion). Any core: from another core the
 * value travels in a message (a slab node of the setting core) and the owner core stores it
 * and wakes the getter, so only the owner ever touches the future. */
LOOM_API void loom_future_set(struct loom_future *future, int64_t value);
/* Waits for the value: returns 0 with *value set, or -ETIMEDOUT (it may still be set later
 * and a later get then returns it). Core: the owner, from a fiber. */
LOOM_API int loom_future_get(struct loom_future *future, int64_t *value, int64_t deadline_ns);

#ifdef __cplusplus
}
#endif
#endif
