/* SPDX-License-Identifier: MIT
 * log.c - one-line diagnostics on stderr, tagged with the core id, and the assertion handler.
 *
 * Each line is formatted into one buffer and written with a single write(2), so lines from
 * different cores never interleave mid-line.
 */
#include <stdarg.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

static int format_prefix(char *buffer, size_t size, const char *level)
{
    struct loom__reactor *r = loom__self;
    if (r)
        return snprintf(buffer, size, "loom[core %u] %s: ", r->core, level);
    return snprintf(buffer, size, "loom %s: ", level);
}

static void write_line(char *buffer, size_t size, int n)
{
    if (n < 0)
        return;
    if ((size_t)n >= size - 1)
        n = (int)size - 2;
    buffer[n++] = '\n';
    ssize_t rc = write(STDERR_FILENO, buffer, (size_t)n);
    (void)rc;
}

void loom__log(const char *level, const char *fmt, ...)
{
    char buffer[1024];
    int n = format_prefix(buffer, sizeof(buffer), level);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(buffer + n, sizeof(buffer) - (size_t)n, fmt, ap);
    va_end(ap);
    write_line(buffer, sizeof(buffer), m < 0 ? n : n + m);
}

void loom__assert_fail(const char *file, int line, const char *expr, const char *fmt, ...)
{
    char buffer[1024];
    int n = format_prefix(buffer, sizeof(buffer), "assertion failed");
    n += snprintf(buffer + n, sizeof(buffer) - (size_t)n, "%s:%d: %s", file, line, expr);
    if (fmt && (size_t)n < sizeof(buffer) - 4) {
        n += snprintf(buffer + n, sizeof(buffer) - (size_t)n, ": ");
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(buffer + n, sizeof(buffer) - (size_t)n, fmt, ap);
        va_end(ap);
        if (m > 0)
            n += m;
    }
    write_line(buffer, sizeof(buffer), n);
    abort();
}
