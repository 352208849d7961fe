/* SPDX-License-Identifier: MIT
 * benchlib.h - the output every benchmark program shares: the median of repeated runs, the one
 * "bench:" line that scripts/bench.sh collects, and the JSON record under build/bench/.
 *
 * A benchmark measures its figure and, in the same run, a baseline doing the same work another
 * way; ratio = value / baseline_value, so below 1 is better when the unit is a cost.
 */
#ifndef LOOM_BENCHLIB_H
#define LOOM_BENCHLIB_H

#include <sys/types.h>

/* The median of values[0..n) (n >= 1; the mean of the middle two when n is even). Sorts
 * `values` in place. */
double bench_median_f64(double *values, int n);

/* Prints the line
 *     bench: NAME VALUE UNIT baseline=BASELINE ratio=RATIO
 * on stdout (VALUE with 2 decimals, RATIO = value / baseline_value with 3) and writes
 * build/bench/NAME.json, relative to the current directory, with the same fields plus `runs`.
 * `name` is [A-Za-z0-9_]+ (it names the file). `baseline` may be NULL for a figure without one:
 * the line then ends after UNIT and the JSON has no baseline fields. Reporting the same name
 * again with another baseline (consecutive calls) prints another line and rewrites the JSON
 * with all of them in "baselines"; the first reported stays the top-level "baseline".
 * With the environment variable BENCH_NAME_SUFFIX set (e.g. "_compat"), it is appended to
 * `name` in the line and the file name. Returns 0, or -errno when
 * the JSON could not be written (the line is printed anyway). */
int bench_report(const char *name, double value, const char *unit, const char *baseline,
                 double baseline_value, const double *runs, int nruns);

/* The CPU time (user + system, from /proc/PID/stat) process `pid` has used, in microseconds,
 * or -1 when it cannot be read: what a server costs per request, whatever CPU it was given. */
double bench_process_cpu_us(pid_t pid);

#endif
