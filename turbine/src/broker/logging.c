/* SPDX-License-Identifier: MIT
 * logging.c - the broker's log: one line per event on stderr,
 *   2026-11-30T19:30:01.123Z WARN  core 1 partition: opening t/3: No space left on device
 * (UTC time to the millisecond, level, core, subsystem, message). Only reactor threads log.
 * Messages less severe than log_level are dropped before they are formatted. A line is
 * formatted whole and written with one write(2), so lines from cores never interleave.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "broker/broker.h"

static const char *const level_tags[] = {"ERROR", "WARN ", "INFO ", "DEBUG"};

bool turbine__log_enabled(enum turbine_log_level level)
{
    return (int)level <= (int)turbine__broker.config.log_level;
}

void turbine__log(enum turbine_log_level level, const char *subsystem, const char *fmt, ...)
{
    if (!turbine__log_enabled(level))
        return;
    char line[1024];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    int k = snprintf(line + n, sizeof(line) - n, ".%03ldZ %s core %u %s: ", ts.tv_nsec / 1000000,
                     level_tags[level == TURBINE_LOG_ALWAYS ? TURBINE_LOG_INFO : level],
                     loom_core_id(), subsystem);
    if (k > 0)
        n += (size_t)k < sizeof(line) - n ? (size_t)k : sizeof(line) - n - 1;
    va_list ap;
    va_start(ap, fmt);
    k = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    va_end(ap);
    if (k > 0)
        n += (size_t)k < sizeof(line) - n ? (size_t)k : sizeof(line) - n - 1;
    if (n >= sizeof(line) - 1)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
}
