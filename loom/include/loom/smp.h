/* SPDX-License-Identifier: MIT
 * smp.h - messages and calls between cores.
 *
 * Every ordered pair of cores has one single-producer/single-consumer ring of message
 * pointers; the sending core publishes its writes in batches once per loop iteration, and a
 * sleeping target core is woken with IORING_OP_MSG_RING (eventfd when that is unavailable).
 * Messages are caller-owned nodes: sending never allocates, never blocks and never drops;
 * when a ring is full the message waits in a per-pair overflow list and keeps its order.
 */
#ifndef LOOM_SMP_H
#define LOOM_SMP_H

#include "loom/common.h"

#ifdef __cplusplus
extern "C" {
#endif

struct loom_msg;
typedef void (*loom_msg_fn)(struct loom_msg *msg);

/* Caller-owned message node; embed it in your own struct and use container_of in fn. */
struct loom_msg {
    struct loom_msg *next; /* overflow link, private */
    loom_msg_fn fn;
};

/* Sends `msg` to `core`, where fn(msg) runs from the reactor loop (not in a fiber: it must
 * not block; spawn a fiber to block). Messages from one core to another run in send order.
 * `msg` belongs to the runtime until fn runs, then to fn. Sending to the calling core itself
 * is allowed (it runs from the loop too). Core: any reactor thread. */
LOOM_API void loom_msg_send(unsigned core, struct loom_msg *msg, loom_msg_fn fn);

/* A function run on another core. */
typedef int (*loom_call_fn)(void *arg);

/* Runs fn(arg) in a new fiber on `core`, fire and forget. The message node comes from the
 * calling core's slab and goes home when done. Returns 0, -EINVAL for a bad core, or -ENOMEM
 * when the calling core's memory budget is exhausted. Core: any reactor thread. */
LOOM_API int loom_submit_to(unsigned core, loom_call_fn fn, void *arg);

/* Runs fn(arg) in a new fiber on `core` (which may be the calling core) and waits for it.
 * Returns fn's result. If `deadline_ns` passes first, a cancel is sent and the call still
 * waits for the reply, so the target never writes into a dead stack: then the result is
 * -ETIMEDOUT if fn had not started, or fn's result if it had (fn may watch
 * loom_fiber_cancel_requested() to finish early). -EINVAL for a bad core, -ENOMEM when the
 * target core could not spawn the fiber (its budget is exhausted).
 * Core: any reactor thread, from a fiber. */
LOOM_API int loom_invoke_on(unsigned core, loom_call_fn fn, void *arg, int64_t deadline_ns);

/* Runs fn(arg) on every core concurrently (one fiber each, the calling core included) and
 * waits for all. Returns 0 if every call returned >= 0, otherwise the first negative result
 * in core order, or -ENOMEM when the call records (one per core, from the calling core's
 * slab) could not be allocated. Core: any reactor thread, from a fiber. */
LOOM_API int loom_invoke_on_all(loom_call_fn fn, void *arg, int64_t deadline_ns);

#ifdef __cplusplus
}
#endif
#endif
