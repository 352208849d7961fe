/* SPDX-License-Identifier: MIT
 * turbine_assert.h - turbine's assertion, on in every build (as loom's): a broken invariant
 * stops the process with the file, line and expression rather than corrupting a log.
 */
#ifndef TURBINE_ASSERT_H
#define TURBINE_ASSERT_H

#include <stdio.h>
#include <stdlib.h>

static inline void __attribute__((noreturn, cold))
turbine_assert_fail(const char *file, int line, const char *expr)
{
    fprintf(stderr, "turbine: assertion failed at %s:%d: %s\n", file, line, expr);
    abort();
}

#define TURBINE_ASSERT(cond)                                                                       \
    do {                                                                                           \
        if (__builtin_expect(!(cond), 0))                                                          \
            turbine_assert_fail(__FILE__, __LINE__, #cond);                                        \
    } while (0)

#endif
