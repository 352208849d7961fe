/* SPDX-License-Identifier: MIT
 * fiber.c - stackful fibers: records and stacks from per-core pools, the ready queue, and
 * the switches between the reactor loop and fibers.
 *
 * A run pass starts in the loop and runs ready fibers until none is left or the task quota
 * (--task-quota-us) is used up; the quota is the bound on how long messages, timers and
 * completions wait, as in Seastar (bounding a pass to the fibers ready at its start instead
 * made a yield 4x dearer: a loop turn per round). A fiber that blocks or yields switches
 * straight to the next fiber of the pass, or back to the loop when the pass is over: one
 * switch per hand-off instead of two. A fiber that returns switches to the loop, which
 * recycles its stack (a fiber cannot free the stack it runs on) and goes on with the pass;
 * so a resumed fiber has nothing to do after its switch. Stacks are carved from the core's
 * budget with a PROT_NONE guard page below, registered with valgrind once,
 * and recycled through per-class free lists, so steady-state spawning touches no syscall and
 * no heap. Switches are annotated for ASan (fake stacks) and TSan (fiber contexts).
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include <valgrind/valgrind.h>

#include "internal.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define LOOM_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#define LOOM_TSAN 1
#endif

void loom__fiber_entry(struct loom_fiber *fiber) __attribute__((noreturn, used));

/* ---- sanitizer annotations around loom__ctx_switch ------------------------------------------ */

/* Before switching away from the running context (`fake_save` is where ASan keeps its fake
 * stack, NULL when the context is finished) to the context on [lo, lo + size). */
static inline void annotate_leave(void **fake_save, const void *lo, size_t size, void *tsan_to)
{
#ifdef LOOM_ASAN
    __sanitizer_start_switch_fiber(fake_save, lo, size);
#endif
#ifdef LOOM_TSAN
    __tsan_switch_to_fiber(tsan_to, 0);
#endif
    (void)fake_save;
    (void)lo;
    (void)size;
    (void)tsan_to;
}

/* First thing after a context resumes. */
static inline void annotate_arrive(void *fake_saved)
{
#ifdef LOOM_ASAN
    __sanitizer_finish_switch_fiber(fake_saved, NULL, NULL);
#endif
    (void)fake_saved;
}

/* ---- pools ---------------------------------------------------------------------------------- */

static struct loom_fiber *fiber_take(struct loom__reactor *r)
{
    struct loom_fiber *f = r->fiber_free;
    if (f) {
        r->fiber_free = f->next;
        return f;
    }
    f = loom__arena_carve(r, sizeof(*f), LOOM_CACHELINE);
    if (f)
        LOOM_STAT_INC(r, heap_allocs);
    return f;
}

static void fiber_give(struct loom__reactor *r, struct loom_fiber *f)
{
    LOOM_ASSERT(!f->has_stack);
    f->state = LOOM_FIBER_FREE;
    f->next = r->fiber_free;
    r->fiber_free = f;
}

static bool stack_take(struct loom__reactor *r, struct loom_fiber *f)
{
    unsigned cls = f->stack_class;
    size_t size = loom__rt.config.stack_bytes[cls];
    size_t page = loom__rt.page_bytes;
    struct loom__stack *s = r->stack_free[cls];
    if (s) {
        r->stack_free[cls] = s->next;
    } else {
        char *guard = loom__arena_carve(r, page + size, page);
        if (!guard)
            return false;
        LOOM_STAT_INC(r, heap_allocs);
        if (mprotect(guard, page, PROT_NONE) != 0)
            loom__log("warning", "guard page for a fiber stack: mprotect: %s", strerror(errno));
        s = (struct loom__stack *)(guard + page);
        VALGRIND_STACK_REGISTER(guard + page, guard + page + size);
    }
    f->stack_lo = (char *)s;
    f->stack_size = size;
    f->has_stack = true;
    r->stacks_in_use[cls]++;
    return true;
}

static void stack_give(struct loom__reactor *r, struct loom_fiber *f)
{
    LOOM_ASSERT(f->has_stack);
    struct loom__stack *s = (struct loom__stack *)f->stack_lo;
#ifdef LOOM_ASAN
    /* frames of the finished fiber leave red zones in the shadow: clear them for the next */
    ASAN_UNPOISON_MEMORY_REGION(f->stack_lo, f->stack_size);
#endif
    s->next = r->stack_free[f->stack_class];
    r->stack_free[f->stack_class] = s;
    LOOM_ASSERT(r->stacks_in_use[f->stack_class] > 0);
    r->stacks_in_use[f->stack_class]--;
    /* a new fiber waiting for a stack of this class may run now */
    struct loom_fiber *waiting = r->stack_wait[f->stack_class];
    if (waiting) {
        r->stack_wait[f->stack_class] = waiting->next;
        if (!waiting->next)
            r->stack_wait_tail[f->stack_class] = NULL;
        loom__ready_push(r, waiting);
    }
    f->has_stack = false;
    f->stack_lo = NULL;
}

/* True when a stack of class `cls` can be had now (free, or carvable from the budget). */
static bool stack_available(struct loom__reactor *r, unsigned cls)
{
    size_t each = loom__rt.config.stack_bytes[cls] + loom__rt.page_bytes;
    return r->stack_free[cls] != NULL ||
           (size_t)(r->arena_hi - r->arena_next) >= each + loom__rt.page_bytes;
}

/* Lays out a new stack so that the first switch "returns" into loom__ctx_entry with the
 * fiber in r12 and rsp 16-byte aligned there (so the call in it gets the ABI alignment). */
static void stack_prepare(struct loom_fiber *f)
{
    uintptr_t top = ((uintptr_t)f->stack_lo + f->stack_size) & ~(uintptr_t)15;
    uint64_t *sp = (uint64_t *)(top - 72); /* sp + 56 (after 6 pops and ret) == top - 16 */
    sp[0] = 0;                             /* r15 */
    sp[1] = 0;                             /* r14 */
    sp[2] = 0;                             /* r13 */
    sp[3] = (uint64_t)(uintptr_t)f;        /* r12: the fiber */
    sp[4] = 0;                             /* rbx */
    sp[5] = 0;                             /* rbp */
    sp[6] = (uint64_t)(uintptr_t)loom__ctx_entry;
    sp[7] = 0;
    f->ctx.sp = sp;
}

/* ---- spawn, ready, run ---------------------------------------------------------------------- */

static void set_name(struct loom_fiber *f, const char *name)
{
    size_t n = strnlen(name, LOOM_FIBER_NAME_MAX - 1);
    memcpy(f->name, name, n);
    f->name[n] = '\0';
}

static struct loom_fiber *ready_pop(struct loom__reactor *r)
{
    struct loom_fiber *f = r->ready_head;
    LOOM_DEBUG_ASSERT(f != NULL);
    r->ready_head = f->next;
    if (!r->ready_head)
        r->ready_tail = NULL;
    return f; /* f->next is stale until the fiber is queued again (every push sets it) */
}

int loom_spawn(struct loom_fiber **out, loom_fiber_fn fn, void *arg,
               const struct loom_fiber_attr *attr)
{
    struct loom__reactor *r = loom__reactor();
    LOOM_ASSERT(fn != NULL);
    bool joinable = attr && attr->joinable;
    LOOM_ASSERTF(!joinable || out != NULL, "a joinable fiber needs `out`");
    unsigned cls = attr ? (unsigned)attr->stack : LOOM_STACK_MEDIUM;
    LOOM_ASSERTF(cls < LOOM_STACK_CLASSES, "bad stack class %u", cls);
    struct loom_fiber *f = fiber_take(r);
    if (!f)
        return -ENOMEM;
    memset(f, 0, offsetof(struct loom_fiber, name));
    f->fn = fn;
    f->arg = arg;
    f->core = (uint16_t)r->core;
    f->joinable = joinable;
    f->stack_class = (uint8_t)cls;
    set_name(f, attr && attr->name ? attr->name : "fiber");
    f->state = LOOM_FIBER_NEW;
    loom__ready_push(r, f);
    r->fibers_live++;
    LOOM_STAT_INC(r, fibers_spawned);
    if (out)
        *out = f;
    return 0;
}

int loom__fiber_spawn_call(struct loom__call *call, loom_fiber_fn fn, void *arg)
{
    struct loom_fiber *f = NULL;
    struct loom_fiber_attr attr = {.name = "invoke_on", .stack = LOOM_STACK_MEDIUM};
    int rc = loom_spawn(&f, fn, arg, &attr);
    if (rc == 0)
        f->call = call;
    return rc;
}

/* Makes `f` the running fiber (giving a new one its stack) and counts the switch. */
/* A new fiber's first run: its stack. Out of line, so the hot path below stays a leaf that
 * saves no registers. next_in_pass() only hands out a new fiber when a stack is available. */
static __attribute__((noinline, cold)) void prepare_first_run(struct loom__reactor *r,
                                                              struct loom_fiber *f)
{
    LOOM_ASSERTF(stack_take(r, f), "core %u: no %zu KiB stack for fiber '%s'", r->core,
                 loom__rt.config.stack_bytes[f->stack_class] >> 10, f->name);
    stack_prepare(f);
#ifdef LOOM_TSAN
    f->tsan_fiber = __tsan_create_fiber(0);
#endif
}

static inline void prepare_run(struct loom__reactor *r, struct loom_fiber *f)
{
    if (LOOM_UNLIKELY(f->state == LOOM_FIBER_NEW))
        prepare_first_run(r, f);
    f->state = LOOM_FIBER_RUNNING;
    loom__set_current(r, f);
    LOOM_STAT_INC(r, fibers_run); /* also the stall watchdog's sign of progress */
}

/* The loop's half of a fiber's exit: recycle its stack, free or keep its record. */
static __attribute__((noinline)) void reap_exited(struct loom__reactor *r)
{
    struct loom_fiber *f = r->exited;
    r->exited = NULL;
    LOOM_ASSERT(f->state == LOOM_FIBER_DONE && f != r->current);
#ifdef LOOM_TSAN
    __tsan_destroy_fiber(f->tsan_fiber);
    f->tsan_fiber = NULL;
#endif
    stack_give(r, f);
    LOOM_ASSERT(r->fibers_live > 0);
    r->fibers_live--;
    if (!f->joinable)
        fiber_give(r, f);
}

static void stack_wait(struct loom__reactor *r, struct loom_fiber *f)
{
    unsigned cls = f->stack_class;
    if (r->stacks_in_use[cls] == 0)
        loom__log("error",
                  "fiber '%s' waits for a %zu KiB stack, but the budget has none "
                  "and no fiber holds one to give back (raise --memory)",
                  f->name, loom__rt.config.stack_bytes[cls] >> 10);
    /* keep spawn order among the waiters */
    LOOM_FIFO_PUSH(r->stack_wait[cls], r->stack_wait_tail[cls], f);
    LOOM_STAT_INC(r, stack_waits);
}

/* The task quota is checked against the clock every QUOTA_CHECK_SWITCHES switches of a pass.
 * A clock read costs 30-45 ns through the vDSO under nested virtualisation (kvm-clock), a
 * switch about 5-8 ns: checking every 16 switches spent a third to a half of the switching
 * time on the clock, every 64 about a tenth. The price: a pass may overrun the quota by up to
 * 63 fiber slices (15 before), which matters only for fibers that compute for long between
 * yields, and those must call loom_yield() anyway (docs/loom.md, "Task quota"). */
#define QUOTA_CHECK_SWITCHES 64
_Static_assert((QUOTA_CHECK_SWITCHES & (QUOTA_CHECK_SWITCHES - 1)) == 0, "a power of two");

/* The slow part of next_in_pass(): the quota check, and new fibers that must wait for a
 * stack. Out of line so the common path saves no registers. */
static __attribute__((noinline)) struct loom_fiber *next_in_pass_slow(struct loom__reactor *r,
                                                                      struct loom_fiber *f)
{
    for (;;) {
        if (f == NULL) {
            if (loom__clock_read(r) >= r->pass_end_ns)
                return NULL; /* the caller switches to the loop: the pass is over */
        } else if (f->state != LOOM_FIBER_NEW || stack_available(r, f->stack_class)) {
            return f;
        } else {
            /* the stack budget is used up: wait until a fiber of this class returns its
             * stack (back-pressure on bursts of spawns instead of failing them) */
            stack_wait(r, f);
        }
        if (r->ready_head == NULL)
            return NULL;
        f = ready_pop(r);
    }
}

/* The next fiber of the current pass, or NULL when the pass is over: every caller then
 * switches to the loop, and only the loop starts a pass (loom__fiber_run_ready()). */
static inline struct loom_fiber *next_in_pass(struct loom__reactor *r)
{
    if (r->ready_head == NULL)
        return NULL;
    if (LOOM_UNLIKELY((++r->pass_ran & (QUOTA_CHECK_SWITCHES - 1)) == 0))
        return next_in_pass_slow(r, NULL);
    struct loom_fiber *f = ready_pop(r);
    if (LOOM_UNLIKELY(f->state == LOOM_FIBER_NEW))
        return next_in_pass_slow(r, f);
    return f;
}

void loom__fiber_run_ready(struct loom__reactor *r)
{
    LOOM_ASSERT(r->current == NULL);
    r->pass_ran = 0;
    /* The quota counts from the iteration's time if anything has read it yet, else from the
     * last time read (earlier: the pass ends no later than a quota after its start). The
     * pass's first quota check then reads the clock for the iteration. */
    r->pass_end_ns = r->now_ns + r->quota_ns;
    struct loom_fiber *f;
    while ((f = next_in_pass(r)) != NULL) {
        prepare_run(r, f);
        annotate_leave(&r->loop_fake_stack, f->stack_lo, f->stack_size, f->tsan_fiber);
        loom__ctx_switch(&r->loop_ctx, &f->ctx);
        annotate_arrive(r->loop_fake_stack);
        loom__set_current(r, NULL);
        /* Back because the pass is over (the last fiber blocked or yielded here), or because
         * a fiber returned: recycle its stack, and the pass goes on. */
        if (!r->exited)
            return;
        reap_exited(r);
    }
}

/* The running fiber `f` gives up the CPU (it is queued or waiting): switch to the next fiber
 * of the pass, or to the loop. Returns when `f` is resumed. In release builds nothing follows
 * the switch, so it is a tail call and the resumed fiber returns from loom__ctx_switch()
 * straight into its caller: no frame, no saved registers here. That is why a fiber that
 * returns switches to the loop rather than to the next fiber (loom__fiber_entry()): its
 * stack must be recycled by whoever runs after it, and a resumed fiber has no code left to
 * run for that. Inlined into its two callers. */
static inline __attribute__((always_inline)) void switch_out(struct loom__reactor *r,
                                                             struct loom_fiber *f)
{
    LOOM_DEBUG_ASSERT(r->current == f); /* each caller took `f` from r->current */
    struct loom_fiber *next = next_in_pass(r);
    if (next) {
        prepare_run(r, next);
        annotate_leave(&f->asan_fake_stack, next->stack_lo, next->stack_size, next->tsan_fiber);
        loom__ctx_switch(&f->ctx, &next->ctx);
    } else {
        annotate_leave(&f->asan_fake_stack, r->loop_stack_lo, r->loop_stack_size,
                       r->loop_tsan_fiber);
        loom__ctx_switch(&f->ctx, &r->loop_ctx);
    }
    annotate_arrive(f->asan_fake_stack);
    LOOM_DEBUG_ASSERT(r->current == f && r->exited == NULL);
}

void loom__fiber_entry(struct loom_fiber *f)
{
    struct loom__reactor *r = loom__self;
    annotate_arrive(NULL);
    LOOM_DEBUG_ASSERT(r->exited == NULL); /* the loop recycled the last returned fiber */
    f->result = f->fn(f->arg);
    r = loom__self; /* fibers never migrate; reload after the call for clarity */
    LOOM_ASSERT(r->current == f);
    f->state = LOOM_FIBER_DONE;
    if (f->join_baton) {
        loom__baton_post_local(r, f->join_baton);
        f->join_baton = NULL;
    }
    /* to the loop, which recycles this stack and goes on with the pass (see switch_out()) */
    r->exited = f;
    annotate_leave(NULL, r->loop_stack_lo, r->loop_stack_size, r->loop_tsan_fiber);
    loom__ctx_switch(&f->ctx, &r->loop_ctx);
    LOOM_ASSERTF(false, "fiber '%s' was resumed after it returned", f->name);
    __builtin_unreachable();
}

void loom__fiber_block(struct loom__reactor *r)
{
    struct loom_fiber *f = r->current;
    LOOM_ASSERTF(f != NULL, "a blocking call outside a fiber (from a callback or the loop)");
    f->state = LOOM_FIBER_WAITING;
    switch_out(r, f);
}

void loom_yield(void)
{
    struct loom__reactor *r = loom__reactor();
    struct loom_fiber *f = r->current;
    LOOM_ASSERTF(f != NULL, "loom_yield() outside a fiber");
    loom__fiber_ready(r, f);
    switch_out(r, f);
}

int loom_fiber_join(struct loom_fiber *f, int64_t deadline_ns, int *result)
{
    struct loom__reactor *r = loom__reactor();
    LOOM_ASSERTF(f->joinable, "loom_fiber_join: fiber '%s' is not joinable", f->name);
    LOOM_ASSERTF(f->core == r->core, "loom_fiber_join: fiber '%s' lives on core %u", f->name,
                 f->core);
    LOOM_ASSERTF(f != r->current, "a fiber cannot join itself");
    if (f->state != LOOM_FIBER_DONE) {
        LOOM_ASSERTF(f->join_baton == NULL, "fiber '%s' is joined twice", f->name);
        struct loom_baton baton;
        loom_baton_init(&baton);
        f->join_baton = &baton;
        int rc = loom_baton_wait(&baton, deadline_ns);
        if (rc < 0) {
            f->join_baton = NULL;
            loom_baton_deinit(&baton);
            return rc;
        }
        loom_baton_deinit(&baton);
    }
    LOOM_ASSERT(f->state == LOOM_FIBER_DONE && !f->has_stack);
    if (result)
        *result = f->result;
    fiber_give(r, f);
    return 0;
}

struct loom_fiber *loom_fiber_self(void)
{
    struct loom__reactor *r = loom__self;
    return r ? r->current : NULL;
}

const char *loom_fiber_name(const struct loom_fiber *f)
{
    return f->name;
}

void loom_fiber_set_name(struct loom_fiber *f, const char *name)
{
    set_name(f, name ? name : "fiber");
}

bool loom__addr_in_guard(struct loom__reactor *r, const void *addr, struct loom_fiber **out)
{
    struct loom_fiber *f = r->current;
    if (!f || !f->has_stack)
        return false;
    const char *p = addr;
    const char *guard = f->stack_lo - loom__rt.page_bytes;
    /* a frame larger than a page can jump past the guard: count a little below it too */
    if (p >= guard - 4 * loom__rt.page_bytes && p < f->stack_lo) {
        *out = f;
        return true;
    }
    return false;
}

void loom__fiber_core_init(struct loom__reactor *r)
{
#ifdef LOOM_TSAN
    r->loop_tsan_fiber = __tsan_get_current_fiber();
#endif
    /* the loop runs on the thread's own stack; ASan needs its bounds to switch back to it */
    pthread_attr_t attr;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
        void *lo = NULL;
        size_t size = 0;
        if (pthread_attr_getstack(&attr, &lo, &size) == 0) {
            r->loop_stack_lo = lo;
            r->loop_stack_size = size;
        }
        pthread_attr_destroy(&attr);
    }
}

void loom__fiber_core_deinit(struct loom__reactor *r)
{
    /* Fibers still blocked at shutdown are abandoned with the core's memory; count them. */
    if (r->fibers_live > 0)
        loom__log("warning", "%" PRIu64 " fiber(s) still blocked at shutdown", r->fibers_live);
}

int loom_sleep_until(int64_t deadline_ns)
{
    struct loom_baton baton;
    loom_baton_init(&baton);
    int rc = loom_baton_wait(&baton, deadline_ns);
    LOOM_ASSERT(rc == -ETIMEDOUT); /* nobody else knows this baton */
    loom_baton_deinit(&baton);
    return 0;
}

int loom_sleep(int64_t duration_ns)
{
    /* loom_deadline_in() counts from the precise clock: the sleep lasts at least
     * duration_ns from now even late in a task quota */
    return loom_sleep_until(loom_deadline_in(duration_ns < 0 ? 0 : duration_ns));
}
