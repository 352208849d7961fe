/* SPDX-License-Identifier: MIT
 * sync.c - mutex, condition variable, semaphore, channel, wait group and future on batons.
 *
 * Invariants: a waiter is on exactly one FIFO list until a release pops it and grants it (sets
 * `granted` and `result`, then posts its baton), and a release hands the resource over with the
 * grant (mutex ownership, semaphore units, a channel item or slot), so nothing is lost and
 * nobody barges. A waiter whose deadline fires unlinks itself, unless it was granted in the
 * same loop iteration: then the grant wins and the wait succeeds. Hence mutex waiters imply an
 * owner, channel senders imply a full buffer and channel receivers an empty one. A future's
 * value and flag are written only on its owner core (a foreign set sends the value there).
 */
#include <errno.h>

#include "internal.h"

/* The record of one waiting fiber, on its own stack while it waits. */
struct loom_waiter {
    struct loom_waiter *next, *prev;
    struct loom_baton baton;
    struct loom_fiber *fiber; /* the waiting fiber: the mutex's next owner */
    int64_t want;             /* semaphore units requested */
    void *item;               /* channel: the item to send, or the item received */
    int result;               /* set with `granted`: 0, or -EPIPE for a closed channel */
    bool granted;             /* popped by a release, which handed the resource over */
};

#define SYNC_CORE_DEAD UINT16_MAX /* the core of a deinitialised object */

/* ---- common --------------------------------------------------------------------------------- */

static struct loom__reactor *check_core(uint16_t core, const char *what, const void *obj)
{
    struct loom__reactor *r = loom__reactor();
    LOOM_ASSERTF(core != SYNC_CORE_DEAD, "%s %p used after deinit", what, obj);
    LOOM_ASSERTF(core == r->core, "%s %p of core %u used on core %u", what, obj, core, r->core);
    return r;
}

static struct loom_fiber *check_fiber(const char *call)
{
    struct loom_fiber *self = loom_fiber_self();
    LOOM_ASSERTF(self != NULL, "%s outside a fiber", call);
    return self;
}

static void list_init(struct loom_wait_list *list)
{
    list->head = NULL;
    list->tail = NULL;
}

static bool list_empty(const struct loom_wait_list *list)
{
    return list->head == NULL;
}

static void list_push(struct loom_wait_list *list, struct loom_waiter *w)
{
    w->next = NULL;
    w->prev = list->tail;
    if (list->tail)
        list->tail->next = w;
    else
        list->head = w;
    list->tail = w;
}

static void list_remove(struct loom_wait_list *list, struct loom_waiter *w)
{
    LOOM_ASSERT(w->prev != NULL || list->head == w);
    LOOM_ASSERT(w->next != NULL || list->tail == w);
    if (w->prev)
        w->prev->next = w->next;
    else
        list->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        list->tail = w->prev;
    w->next = w->prev = NULL;
}

static struct loom_waiter *list_pop(struct loom_wait_list *list)
{
    struct loom_waiter *w = list->head;
    if (w)
        list_remove(list, w);
    return w;
}

static void waiter_init(struct loom_waiter *w, struct loom_fiber *self)
{
    *w = (struct loom_waiter){.fiber = self};
    loom_baton_init(&w->baton);
}

/* Hands the resource to `w` (already popped): it returns `result` from its wait. */
static void waiter_grant(struct loom__reactor *r, struct loom_waiter *w, int result)
{
    LOOM_ASSERT(!w->granted);
    w->granted = true;
    w->result = result;
    loom__baton_post_local(r, &w->baton);
}

/* Waits on `w`, already queued on `list`. Returns the granted result, or -ETIMEDOUT with `w`
 * unlinked. A grant made in the loop iteration in which the deadline fired still counts: the
 * waiter keeps what it was handed (simplest to reason about: a granted resource is never
 * dropped or passed on behind the granter's back). */
static int waiter_park(struct loom_wait_list *list, struct loom_waiter *w, int64_t deadline_ns)
{
    int rc = loom_baton_wait(&w->baton, deadline_ns);
    if (!w->granted) {
        LOOM_ASSERTF(rc == -ETIMEDOUT, "sync waiter %p woken without a grant", (void *)w);
        list_remove(list, w);
        rc = -ETIMEDOUT;
    } else {
        rc = w->result;
    }
    loom_baton_deinit(&w->baton); /* a late post now fails loudly instead of hitting the stack */
    return rc;
}

static void check_no_waiters(const struct loom_wait_list *list, const char *what, const void *obj)
{
    LOOM_ASSERTF(list_empty(list), "%s %p deinitialised with waiters", what, obj);
}

/* ---- mutex ---------------------------------------------------------------------------------- */

void loom_mutex_init(struct loom_mutex *m)
{
    list_init(&m->waiters);
    m->owner = NULL;
    m->core = (uint16_t)loom__reactor()->core;
}

void loom_mutex_deinit(struct loom_mutex *m)
{
    check_core(m->core, "mutex", m);
    LOOM_ASSERTF(m->owner == NULL, "mutex %p deinitialised while held by '%s'", (void *)m,
                 loom_fiber_name(m->owner));
    check_no_waiters(&m->waiters, "mutex", m);
    m->core = SYNC_CORE_DEAD;
}

int loom_mutex_lock(struct loom_mutex *m, int64_t deadline_ns)
{
    check_core(m->core, "mutex", m);
    struct loom_fiber *self = check_fiber("loom_mutex_lock()");
    LOOM_ASSERTF(m->owner != self, "mutex %p locked twice by '%s' (not recursive)", (void *)m,
                 loom_fiber_name(self));
    if (m->owner == NULL) {
        LOOM_ASSERT(list_empty(&m->waiters));
        m->owner = self;
        return 0;
    }
    struct loom_waiter w;
    waiter_init(&w, self);
    list_push(&m->waiters, &w);
    int rc = waiter_park(&m->waiters, &w, deadline_ns);
    LOOM_ASSERT(rc == 0 ? m->owner == self : m->owner != self);
    return rc;
}

bool loom_mutex_trylock(struct loom_mutex *m)
{
    check_core(m->core, "mutex", m);
    struct loom_fiber *self = check_fiber("loom_mutex_trylock()");
    LOOM_ASSERTF(m->owner != self, "mutex %p locked twice by '%s' (not recursive)", (void *)m,
                 loom_fiber_name(self));
    if (m->owner != NULL)
        return false;
    m->owner = self;
    return true;
}

void loom_mutex_unlock(struct loom_mutex *m)
{
    struct loom__reactor *r = check_core(m->core, "mutex", m);
    LOOM_ASSERTF(m->owner != NULL, "mutex %p unlocked while not locked", (void *)m);
    LOOM_ASSERTF(m->owner == loom_fiber_self(),
                 "mutex %p unlocked by a fiber that does not hold it", (void *)m);
    struct loom_waiter *w = list_pop(&m->waiters);
    m->owner = w ? w->fiber : NULL;
    if (w)
        waiter_grant(r, w, 0);
}

/* ---- condition variable --------------------------------------------------------------------- */

void loom_cond_init(struct loom_cond *c)
{
    list_init(&c->waiters);
    c->core = (uint16_t)loom__reactor()->core;
}

void loom_cond_deinit(struct loom_cond *c)
{
    check_core(c->core, "cond", c);
    check_no_waiters(&c->waiters, "cond", c);
    c->core = SYNC_CORE_DEAD;
}

int loom_cond_wait(struct loom_cond *c, struct loom_mutex *m, int64_t deadline_ns)
{
    check_core(c->core, "cond", c);
    struct loom_fiber *self = check_fiber("loom_cond_wait()");
    LOOM_ASSERTF(m->owner == self, "loom_cond_wait() on cond %p without holding mutex %p",
                 (void *)c, (void *)m);
    struct loom_waiter w;
    waiter_init(&w, self);
    /* Queue before unlocking: a signal sent once the mutex is free finds us on the list. */
    list_push(&c->waiters, &w);
    loom_mutex_unlock(m);
    int rc = waiter_park(&c->waiters, &w, deadline_ns);
    int relock = loom_mutex_lock(m, LOOM_NO_DEADLINE);
    LOOM_ASSERT(relock == 0 && m->owner == self);
    return rc;
}

void loom_cond_signal(struct loom_cond *c)
{
    struct loom__reactor *r = check_core(c->core, "cond", c);
    struct loom_waiter *w = list_pop(&c->waiters);
    if (w)
        waiter_grant(r, w, 0);
}

void loom_cond_broadcast(struct loom_cond *c)
{
    struct loom__reactor *r = check_core(c->core, "cond", c);
    struct loom_waiter *w;
    while ((w = list_pop(&c->waiters)) != NULL)
        waiter_grant(r, w, 0);
    LOOM_ASSERT(list_empty(&c->waiters));
}

/* ---- counting semaphore --------------------------------------------------------------------- */

void loom_sem_init(struct loom_sem *s, int64_t count)
{
    LOOM_ASSERTF(count >= 0, "semaphore initialised with a negative count %" PRId64, count);
    list_init(&s->waiters);
    s->count = count;
    s->core = (uint16_t)loom__reactor()->core;
}

void loom_sem_deinit(struct loom_sem *s)
{
    check_core(s->core, "semaphore", s);
    check_no_waiters(&s->waiters, "semaphore", s);
    s->core = SYNC_CORE_DEAD;
}

/* Grants waiters in FIFO order while the head's request fits; a head that does not fit blocks
 * the ones behind it, so a large request is not starved by small ones. */
static void sem_dispense(struct loom__reactor *r, struct loom_sem *s)
{
    while (s->waiters.head && s->waiters.head->want <= s->count) {
        struct loom_waiter *w = list_pop(&s->waiters);
        s->count -= w->want;
        waiter_grant(r, w, 0);
    }
    LOOM_ASSERT(s->count >= 0);
}

int loom_sem_acquire(struct loom_sem *s, int64_t n, int64_t deadline_ns)
{
    struct loom__reactor *r = check_core(s->core, "semaphore", s);
    LOOM_ASSERTF(n >= 1, "loom_sem_acquire() of %" PRId64 " units", n);
    if (loom_sem_try_acquire(s, n))
        return 0;
    struct loom_waiter w;
    waiter_init(&w, check_fiber("loom_sem_acquire()"));
    w.want = n;
    list_push(&s->waiters, &w);
    int rc = waiter_park(&s->waiters, &w, deadline_ns);
    if (rc < 0)
        sem_dispense(r, s); /* we may have been the head blocking smaller requests */
    return rc;
}

bool loom_sem_try_acquire(struct loom_sem *s, int64_t n)
{
    check_core(s->core, "semaphore", s);
    LOOM_ASSERTF(n >= 1, "loom_sem_try_acquire() of %" PRId64 " units", n);
    if (!list_empty(&s->waiters) || s->count < n)
        return false; /* queued waiters come first */
    s->count -= n;
    return true;
}

void loom_sem_release(struct loom_sem *s, int64_t n)
{
    struct loom__reactor *r = check_core(s->core, "semaphore", s);
    LOOM_ASSERTF(n >= 1, "loom_sem_release() of %" PRId64 " units", n);
    LOOM_ASSERTF(s->count <= INT64_MAX - n, "semaphore %p count overflows", (void *)s);
    s->count += n;
    sem_dispense(r, s);
}

int64_t loom_sem_available(const struct loom_sem *s)
{
    check_core(s->core, "semaphore", s);
    return s->count;
}

/* ---- bounded channel ------------------------------------------------------------------------ */

void loom_channel_init(struct loom_channel *ch, void **slots, uint32_t capacity)
{
    LOOM_ASSERTF(slots != NULL, "channel %p initialised without slots", (void *)ch);
    LOOM_ASSERTF(capacity >= 1, "channel %p needs at least one slot", (void *)ch);
    list_init(&ch->senders);
    list_init(&ch->receivers);
    ch->slots = slots;
    ch->capacity = capacity;
    ch->head = 0;
    ch->count = 0;
    ch->core = (uint16_t)loom__reactor()->core;
    ch->closed = false;
}

void loom_channel_deinit(struct loom_channel *ch)
{
    check_core(ch->core, "channel", ch);
    check_no_waiters(&ch->senders, "channel", ch);
    check_no_waiters(&ch->receivers, "channel", ch);
    ch->core = SYNC_CORE_DEAD;
}

static void channel_push(struct loom_channel *ch, void *item)
{
    LOOM_ASSERT(ch->count < ch->capacity);
    ch->slots[(ch->head + ch->count) % ch->capacity] = item;
    ch->count++;
}

static void *channel_pop(struct loom_channel *ch)
{
    LOOM_ASSERT(ch->count > 0);
    void *item = ch->slots[ch->head];
    ch->head = (ch->head + 1) % ch->capacity;
    ch->count--;
    return item;
}

int loom_channel_send(struct loom_channel *ch, void *item, int64_t deadline_ns)
{
    struct loom__reactor *r = check_core(ch->core, "channel", ch);
    if (ch->closed)
        return -EPIPE;
    struct loom_waiter *rx = list_pop(&ch->receivers);
    if (rx) {
        LOOM_ASSERT(ch->count == 0); /* receivers wait only on an empty buffer */
        rx->item = item;
        waiter_grant(r, rx, 0);
        return 0;
    }
    if (ch->count < ch->capacity) {
        channel_push(ch, item);
        return 0;
    }
    struct loom_waiter w;
    waiter_init(&w, check_fiber("loom_channel_send()"));
    w.item = item;
    list_push(&ch->senders, &w);
    return waiter_park(&ch->senders, &w, deadline_ns);
}

int loom_channel_recv(struct loom_channel *ch, void **item, int64_t deadline_ns)
{
    struct loom__reactor *r = check_core(ch->core, "channel", ch);
    if (ch->count > 0) {
        *item = channel_pop(ch);
        struct loom_waiter *tx = list_pop(&ch->senders);
        if (tx) { /* the freed slot goes to the first blocked sender */
            channel_push(ch, tx->item);
            waiter_grant(r, tx, 0);
        }
        return 0;
    }
    LOOM_ASSERT(list_empty(&ch->senders)); /* senders wait only on a full buffer */
    if (ch->closed)
        return -EPIPE;
    struct loom_waiter w;
    waiter_init(&w, check_fiber("loom_channel_recv()"));
    list_push(&ch->receivers, &w);
    int rc = waiter_park(&ch->receivers, &w, deadline_ns);
    if (rc == 0)
        *item = w.item;
    return rc;
}

/* Idempotent. Items still buffered stay for the receivers. */
void loom_channel_close(struct loom_channel *ch)
{
    struct loom__reactor *r = check_core(ch->core, "channel", ch);
    ch->closed = true;
    struct loom_waiter *w;
    while ((w = list_pop(&ch->senders)) != NULL)
        waiter_grant(r, w, -EPIPE);
    LOOM_ASSERT(ch->count == 0 || list_empty(&ch->receivers));
    while ((w = list_pop(&ch->receivers)) != NULL)
        waiter_grant(r, w, -EPIPE);
}

uint32_t loom_channel_count(const struct loom_channel *ch)
{
    check_core(ch->core, "channel", ch);
    return ch->count;
}

/* ---- wait group ----------------------------------------------------------------------------- */

void loom_waitgroup_init(struct loom_waitgroup *wg)
{
    list_init(&wg->waiters);
    wg->count = 0;
    wg->core = (uint16_t)loom__reactor()->core;
}

void loom_waitgroup_deinit(struct loom_waitgroup *wg)
{
    check_core(wg->core, "waitgroup", wg);
    check_no_waiters(&wg->waiters, "waitgroup", wg);
    wg->core = SYNC_CORE_DEAD;
}

void loom_waitgroup_add(struct loom_waitgroup *wg, int64_t n)
{
    struct loom__reactor *r = check_core(wg->core, "waitgroup", wg);
    LOOM_ASSERTF(wg->count + n >= 0, "waitgroup %p count would go negative (%" PRId64 ")",
                 (void *)wg, wg->count + n);
    wg->count += n;
    if (wg->count > 0)
        return;
    struct loom_waiter *w;
    while ((w = list_pop(&wg->waiters)) != NULL)
        waiter_grant(r, w, 0);
}

void loom_waitgroup_done(struct loom_waitgroup *wg)
{
    loom_waitgroup_add(wg, -1);
}

int loom_waitgroup_wait(struct loom_waitgroup *wg, int64_t deadline_ns)
{
    check_core(wg->core, "waitgroup", wg);
    if (wg->count == 0)
        return 0;
    struct loom_waiter w;
    waiter_init(&w, check_fiber("loom_waitgroup_wait()"));
    list_push(&wg->waiters, &w);
    int rc = waiter_park(&wg->waiters, &w, deadline_ns);
    LOOM_ASSERT(rc == -ETIMEDOUT || rc == 0);
    return rc;
}

/* ---- one-shot future ------------------------------------------------------------------------ */

/* A set from a foreign core. The value travels inside the message and is stored by the owner
 * core, so `value` and `set` are only ever touched by the owner thread: the ring's
 * release/acquire publication of the message orders the value, and a getter that sees `set`
 * knows no message still points at the future (it may then free it). Posting the baton from
 * the foreign core instead would let a post carrying a stale generation (the getter timed out
 * meanwhile) be dropped while `set` is not yet visible to the owner: a lost wake-up. */
struct future_set_msg {
    struct loom_msg msg;
    struct loom_future *future;
    int64_t value;
};

void loom_future_init(struct loom_future *f)
{
    loom_baton_init(&f->baton);
    f->value = 0;
    f->set = false;
}

static void future_set_local(struct loom__reactor *r, struct loom_future *f, int64_t value)
{
    LOOM_ASSERTF(f->baton.core == r->core, "future %p set on core %u, owned by core %u", (void *)f,
                 r->core, f->baton.core);
    LOOM_ASSERTF(!f->set, "future %p set twice", (void *)f);
    f->value = value;
    f->set = true;
    loom__baton_post_local(r, &f->baton);
}

static void future_set_arrived(struct loom_msg *msg)
{
    struct future_set_msg *m = LOOM_CONTAINER_OF(msg, struct future_set_msg, msg);
    future_set_local(loom__self, m->future, m->value);
    loom_free(m); /* goes home to the setting core */
}

void loom_future_set(struct loom_future *f, int64_t value)
{
    struct loom__reactor *r = loom__reactor();
    if (f->baton.core == r->core) {
        future_set_local(r, f, value);
        return;
    }
    struct future_set_msg *m = loom_alloc(sizeof(*m));
    LOOM_ASSERTF(m != NULL, "core %u: memory budget exhausted setting a future", r->core);
    m->future = f;
    m->value = value;
    loom_msg_send(f->baton.core, &m->msg, future_set_arrived);
}

int loom_future_get(struct loom_future *f, int64_t *value, int64_t deadline_ns)
{
    check_core(f->baton.core, "future", f);
    if (!f->set) {
        int rc = loom_baton_wait(&f->baton, deadline_ns);
        if (!f->set) {
            LOOM_ASSERTF(rc == -ETIMEDOUT, "future %p woken without a value", (void *)f);
            return rc;
        }
    }
    /* A set with no getter waiting left the baton posted; forget it (one-shot). */
    if (loom_baton_is_posted(&f->baton))
        loom_baton_reset(&f->baton);
    *value = f->value;
    return 0;
}
