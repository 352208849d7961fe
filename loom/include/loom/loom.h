/* SPDX-License-Identifier: MIT
 * loom.h - the umbrella header of libloom, a thread-per-core async runtime on io_uring.
 * See docs/loom.md for a guide and the threading and ownership rules.
 */
#ifndef LOOM_LOOM_H
#define LOOM_LOOM_H

#include "loom/common.h"
#include "loom/clock.h"
#include "loom/reactor.h"
#include "loom/fiber.h"
#include "loom/baton.h"
#include "loom/sync.h"
#include "loom/timer.h"
#include "loom/smp.h"
#include "loom/mem.h"
#include "loom/app.h"
#include "loom/io.h"
#include "loom/io_backend.h"
#include "loom/fault.h"
#include "loom/net.h"
#include "loom/iopool.h"
#include "loom/simdisk.h"

#endif
