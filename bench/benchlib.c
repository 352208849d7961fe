/* SPDX-License-Identifier: MIT
 * benchlib.c - median, the "bench:" line and the JSON record (see benchlib.h).
 *
 * The JSON is written to a temporary file and renamed over the old record, so a reader never
 * sees half of one.
 */
#include "benchlib.h"

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#define BENCH_DIR "build/bench"

static int compare_f64(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double bench_median_f64(double *values, int n)
{
    assert(values != NULL);
    assert(n >= 1);
    qsort(values, (size_t)n, sizeof(*values), compare_f64);
    if (n % 2 == 1)
        return values[n / 2];
    return (values[n / 2 - 1] + values[n / 2]) / 2;
}

static bool valid_name(const char *name)
{
    if (name == NULL || *name == '\0' || strlen(name) > 200)
        return false;
    for (const char *c = name; *c; c++) {
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '_'))
            return false;
    }
    return true;
}

/* Writes `s` as a JSON string. */
static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static int make_dir(const char *path)
{
    if (mkdir(path, 0755) == 0 || errno == EEXIST)
        return 0;
    return -errno;
}

/* The baselines reported so far for the figure named last (one figure may be compared with
 * several baselines: each call adds one, and the JSON file lists them all). */
#define BASELINES_MAX 8
static char last_name[208];
static int baseline_count;
static struct {
    char name[64];
    double value;
} baselines[BASELINES_MAX];

static void remember_baseline(const char *name, const char *baseline, double baseline_value)
{
    if (strcmp(name, last_name) != 0) {
        snprintf(last_name, sizeof(last_name), "%s", name);
        baseline_count = 0;
    }
    if (baseline == NULL || baseline_count == BASELINES_MAX)
        return;
    snprintf(baselines[baseline_count].name, sizeof(baselines[0].name), "%s", baseline);
    baselines[baseline_count].value = baseline_value;
    baseline_count++;
}

static void json_baselines(FILE *f, double value)
{
    fputs(",\"baselines\":[", f);
    for (int i = 0; i < baseline_count; i++) {
        fputs(i ? ",{\"baseline\":" : "{\"baseline\":", f);
        json_string(f, baselines[i].name);
        fprintf(f, ",\"baseline_value\":%.3f,\"ratio\":%.4f}", baselines[i].value,
                value / baselines[i].value);
    }
    fputs("]", f);
}

static void json_write(FILE *f, const char *name, double value, const char *unit,
                       const char *baseline, double baseline_value, const double *runs, int nruns)
{
    if (baseline_count > 0) { /* the first baseline reported is the figure's main one */
        baseline = baselines[0].name;
        baseline_value = baselines[0].value;
    }
    fputs("{\"name\":", f);
    json_string(f, name);
    fprintf(f, ",\"value\":%.3f,\"unit\":", value);
    json_string(f, unit);
    if (baseline != NULL) {
        fputs(",\"baseline\":", f);
        json_string(f, baseline);
        fprintf(f, ",\"baseline_value\":%.3f,\"ratio\":%.4f", baseline_value,
                value / baseline_value);
    }
    if (baseline_count > 1)
        json_baselines(f, value);
    fputs(",\"runs\":[", f);
    for (int i = 0; i < nruns; i++)
        fprintf(f, "%s%.3f", i ? "," : "", runs[i]);
    fputs("]}\n", f);
}

int bench_report(const char *name_in, double value, const char *unit, const char *baseline,
                 double baseline_value, const double *runs, int nruns)
{
    assert(valid_name(name_in));
    /* BENCH_NAME_SUFFIX (e.g. "_compat" for a run with LOOM_DISABLE=all) tags every name */
    char name[201];
    const char *suffix = getenv("BENCH_NAME_SUFFIX");
    if (!suffix || !valid_name(suffix) || strlen(name_in) + strlen(suffix) >= sizeof(name))
        suffix = "";
    memcpy(name, name_in, strlen(name_in) + 1);
    strcat(name, suffix);
    assert(unit != NULL);
    assert(runs != NULL || nruns == 0);
    assert(baseline == NULL || baseline_value > 0);
    if (baseline != NULL)
        printf("bench: %s %.2f %s baseline=%s ratio=%.3f\n", name, value, unit, baseline,
               value / baseline_value);
    else
        printf("bench: %s %.2f %s\n", name, value, unit);
    fflush(stdout);
    remember_baseline(name, baseline, baseline_value);

    int rc = make_dir("build");
    if (rc == 0)
        rc = make_dir(BENCH_DIR);
    if (rc < 0)
        return rc;
    char path[256], tmp[272];
    snprintf(path, sizeof(path), BENCH_DIR "/%s.json", name);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return -errno;
    json_write(f, name, value, unit, baseline, baseline_value, runs, nruns);
    bool failed = ferror(f) != 0;
    if (fclose(f) != 0 || failed) {
        rc = failed ? -EIO : -errno;
        remove(tmp);
        return rc;
    }
    return rename(tmp, path) == 0 ? 0 : -errno;
}

double bench_process_cpu_us(pid_t pid)
{
    char path[64], text[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, text, sizeof(text) - 1);
    close(fd);
    if (n <= 0)
        return -1;
    text[n] = '\0';
    char *p = strrchr(text, ')'); /* the command name may hold spaces */
    if (p == NULL)
        return -1;
    unsigned long long utime, stime;
    /* after ")": state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime
     * stime */
    if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) !=
        2)
        return -1;
    return (double)(utime + stime) * 1e6 / (double)sysconf(_SC_CLK_TCK);
}
