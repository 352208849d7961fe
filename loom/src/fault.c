/* SPDX-License-Identifier: MIT
 * fault.c - deterministic fault injection for file requests (fault.h).
 *
 * Per-core state hangs off r->fault (NULL when off) and lives in the core's slab. Every rule
 * counts its matching requests and draws one number from its own seeded stream per matching
 * request, so each decision depends only on the seed and on the order of requests, never on
 * time or on what other rules decided. The first rule that fires decides the request's fate.
 */
#include <errno.h>
#include <string.h>

#include "internal.h"
#include "loom/fault.h"
#include "loom/io.h"
#include "loom/io_backend.h"

struct fault_rule_state {
    struct loom_fault_rule rule;
    uint64_t rng;     /* splitmix64 state of this rule's stream */
    uint64_t matched; /* matching requests seen */
    uint32_t fired;
};

struct loom__fault {
    uint64_t fired; /* faults fired since enable */
    unsigned rule_count;
    struct fault_rule_state rules[LOOM_FAULT_RULES_MAX];
};

/* A delayed request waits here; the record is freed when its timer fires. It does not point
 * at struct loom__fault, so disabling (which frees that) leaves delayed requests intact. */
struct fault_delay {
    struct loom_timer timer;
    struct loom_io_req *req;
};

#define RW_KINDS                                                                                   \
    ((1u << LOOM_IO_READ) | (1u << LOOM_IO_WRITE) | (1u << LOOM_IO_READ_FIXED) |                   \
     (1u << LOOM_IO_WRITE_FIXED))
#define ALL_KINDS ((1u << LOOM_IO_KINDS) - 1)

/* splitmix64 (Steele, Lea, Flood 2014): one 64-bit state, full period, good enough mixing
 * for test decisions, and trivially reproducible. */
static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A uniform double in [0, 1) from the top 53 bits. */
static double unit_interval(uint64_t x)
{
    return (double)(x >> 11) * (1.0 / 9007199254740992.0);
}

static bool rule_valid(const struct loom_fault_rule *rule)
{
    if (rule->kinds & ~ALL_KINDS)
        return false;
    if (rule->nth == 0 && !(rule->probability >= 0.0 && rule->probability <= 1.0))
        return false;
    switch (rule->action) {
    case LOOM_FAULT_FAIL:
        return rule->error < 0 && rule->error > -4096;
    case LOOM_FAULT_SHORT:
        return true;
    case LOOM_FAULT_DELAY:
        return rule->delay_ns >= 0;
    }
    return false;
}

int loom_fault_enable(const struct loom_fault_config *config)
{
    struct loom__reactor *r = loom__reactor();
    if (!config || config->rule_count > LOOM_FAULT_RULES_MAX ||
        (config->rule_count > 0 && !config->rules))
        return -EINVAL;
    for (unsigned i = 0; i < config->rule_count; i++)
        if (!rule_valid(&config->rules[i]))
            return -EINVAL;
    struct loom__fault *f = loom_alloc(sizeof(*f));
    if (!f)
        return -ENOMEM;
    memset(f, 0, sizeof(*f));
    f->rule_count = config->rule_count;
    uint64_t seeder = config->seed;
    for (unsigned i = 0; i < config->rule_count; i++) {
        f->rules[i].rule = config->rules[i];
        f->rules[i].rng = splitmix64(&seeder); /* independent stream per rule */
    }
    loom_free(r->fault);
    r->fault = f;
    return 0;
}

void loom_fault_disable(void)
{
    struct loom__reactor *r = loom__reactor();
    loom_free(r->fault);
    r->fault = NULL;
}

uint64_t loom_fault_fired(void)
{
    struct loom__reactor *r = loom__reactor();
    return r->fault ? r->fault->fired : 0;
}

void loom__fault_core_deinit(struct loom__reactor *r)
{
    LOOM_ASSERT(r == loom__self);
    loom_free(r->fault);
    r->fault = NULL;
}

/* The shortened length for a SHORT fault on `req`, or 0 when it cannot be shortened (too
 * short, or O_DIRECT with no aligned length below it). `draw` picks the value. */
static uint32_t short_len(const struct loom_io_req *req, uint64_t draw)
{
    if (!(RW_KINDS & (1u << req->kind)) || req->len < 2)
        return 0;
    unsigned align = loom_io_direct_align(req->fd);
    if (align == 0)
        return 1 + (uint32_t)(draw % (req->len - 1)); /* [1, len - 1] */
    uint32_t units = (req->len - 1) / align;          /* multiples of align strictly below len */
    if (units == 0)
        return 0;
    uint32_t len = align * (1 + (uint32_t)(draw % units));
    LOOM_ASSERT(len > 0 && len < req->len && len % align == 0);
    return len;
}

static void delay_timer_callback(struct loom_timer *timer, void *arg)
{
    struct fault_delay *d = arg;
    LOOM_ASSERT(&d->timer == timer);
    struct loom_io_req *req = d->req;
    loom_free(d);
    loom__io_backend_start(loom__reactor(), req);
}

/* Starts `req` `delay_ns` from now. False when no memory for the record (then not delayed). */
static bool delay_req(struct loom_io_req *req, int64_t delay_ns)
{
    struct fault_delay *d = loom_alloc(sizeof(*d));
    if (!d)
        return false;
    d->req = req;
    loom_timer_init(&d->timer);
    /* from the precise clock: the loop's cached time may be a task quota old, and the delay
     * must be at least delay_ns from this request's start */
    int rc = loom_timer_start(&d->timer, loom_deadline_in(delay_ns), delay_timer_callback, d);
    LOOM_ASSERT(rc == 0);
    return true;
}

/* Does rule `s` fire on this matching request? Counts it and draws from its stream either
 * way, so the rule's later decisions do not depend on whether it fired. */
static bool rule_fires(struct fault_rule_state *s, uint64_t *draw)
{
    s->matched++;
    *draw = splitmix64(&s->rng);
    if (s->rule.max_fires && s->fired >= s->rule.max_fires)
        return false;
    if (s->rule.nth)
        return s->matched == s->rule.nth;
    return unit_interval(*draw) < s->rule.probability;
}

bool loom__fault_filter(struct loom__reactor *r, struct loom_io_req *req)
{
    struct loom__fault *f = r->fault;
    LOOM_ASSERT(f != NULL);
    LOOM_ASSERT(req->kind < LOOM_IO_KINDS);
    struct fault_rule_state *winner = NULL;
    uint64_t winner_draw = 0;
    for (unsigned i = 0; i < f->rule_count; i++) {
        struct fault_rule_state *s = &f->rules[i];
        uint32_t kinds = s->rule.kinds ? s->rule.kinds : ALL_KINDS;
        if (!(kinds & (1u << req->kind)))
            continue;
        uint64_t draw;
        if (rule_fires(s, &draw) && !winner) {
            /* a SHORT that cannot apply to this request does not fire */
            if (s->rule.action == LOOM_FAULT_SHORT && short_len(req, draw >> 1) == 0)
                continue;
            winner = s;
            winner_draw = draw;
        }
    }
    if (!winner)
        return false;
    switch (winner->rule.action) {
    case LOOM_FAULT_FAIL:
        winner->fired++;
        f->fired++;
        loom_io_complete(req, winner->rule.error);
        return true;
    case LOOM_FAULT_SHORT:
        winner->fired++;
        f->fired++;
        req->len = short_len(req, winner_draw >> 1);
        return false;
    case LOOM_FAULT_DELAY:
        if (!delay_req(req, winner->rule.delay_ns))
            return false;
        winner->fired++;
        f->fired++;
        return true;
    }
    LOOM_ASSERTF(false, "bad fault action %d", (int)winner->rule.action);
    return false;
}
