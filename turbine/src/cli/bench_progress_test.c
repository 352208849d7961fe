/* SPDX-License-Identifier: MIT
 * bench_progress_test.c - `turbine bench produce`'s live progress line, end to end against a
 * real broker with stdout on a pseudo-terminal: redrawn in place ("\r\033[K") with records,
 * MB/s, elapsed and ETA, cut to the terminal's width (followed when it is resized), cleared
 * before the summary; none with --quiet, none when stdout is a pipe.
 *
 * The pty's output post-processing is off (no "\n" -> "\r\n"), so the bytes read from the
 * master are the bytes the command wrote.
 *
 * LOOM_TEST_TAGS: no-valgrind timeout=90
 */
#include <pty.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <utmp.h>

#include "broker/broker_test_util.h"

#define OUT_SIZE     (1 << 20)
#define REDRAWS_MAX  1024
#define RUN_LIMIT_MS 30000
#define RECORD_SIZE  1024 /* turbine bench's default --record-size */

static char out[OUT_SIZE];
static size_t out_used;

/* One "\r\033[K" in the output and the text after it, up to the next '\r' or '\n'. */
struct redraw {
    size_t offset; /* of the '\r' */
    const char *text;
    size_t size;
};

static struct redraw redraws[REDRAWS_MAX];
static int redraw_count;

/* One progress line, parsed. */
struct progress {
    uint64_t records;
    double mb_s, elapsed_s, eta_s; /* eta_s: -1 when the line has none */
};

/* The output with \r, ESC and \n made visible, for failure messages. */
static const char *visible(void)
{
    static char v[OUT_SIZE * 2];
    size_t n = 0;
    for (size_t i = 0; i < out_used && n + 4 < sizeof(v); i++) {
        if (out[i] == '\r' || out[i] == '\033') {
            v[n++] = '\\';
            v[n++] = out[i] == '\r' ? 'r' : 'e';
        } else {
            v[n++] = out[i];
        }
    }
    v[n] = '\0';
    return v;
}

#define CHECK_OUT(cond)                                                                            \
    do {                                                                                           \
        if (!(cond))                                                                               \
            test_fail_(__FILE__, __LINE__, "CHECK(%s) failed; output:\n%s", #cond, visible());     \
    } while (0)

static void find_redraws(void)
{
    out[out_used] = '\0';
    redraw_count = 0;
    for (const char *p = out; (p = strstr(p, "\r\033[K")) != NULL; p += 4) {
        CHECK_LT(redraw_count, REDRAWS_MAX);
        const char *text = p + 4;
        redraws[redraw_count++] = (struct redraw){
            .offset = (size_t)(p - out), .text = text, .size = strcspn(text, "\r\n")};
    }
}

static bool redraw_parse(const struct redraw *r, struct progress *p)
{
    char line[256];
    int end = 0;
    if (r->size >= sizeof(line))
        return false;
    memcpy(line, r->text, r->size);
    line[r->size] = '\0';
    *p = (struct progress){.eta_s = -1};
    if (sscanf(line, "produce: %" SCNu64 " records  %lf MB/s  %lf s elapsed%n", &p->records,
               &p->mb_s, &p->elapsed_s, &end) != 3 ||
        end == 0)
        return false;
    if (line[end] == '\0')
        return true;
    int eta_end = 0;
    return sscanf(line + end, "  ETA %lf s%n", &p->eta_s, &eta_end) == 1 &&
           line[end + eta_end] == '\0';
}

/* ---- running the command -------------------------------------------------------------------- */

/* argv of `turbine bench produce ARGS...` (NULL-terminated), into `argv`. */
static void bench_argv(const struct tb_broker *b, const char *const *args, const char **argv)
{
    int argc = 0;
    argv[argc++] = b->bin;
    argv[argc++] = "bench";
    argv[argc++] = "produce";
    for (int i = 0; args[i]; i++) {
        CHECK_LT(argc, 30);
        argv[argc++] = args[i];
    }
    argv[argc] = NULL;
}

static int exit_code(int status)
{
    if (!WIFEXITED(status))
        test_fail_(__FILE__, __LINE__, "turbine bench ended by a signal (status %d); output:\n%s",
                   status, visible());
    return WEXITSTATUS(status);
}

struct pty_run {
    const char *const *args;
    unsigned short columns;        /* the terminal's width at the start */
    unsigned short resize_columns; /* 0, or the width to switch to after the third redraw */
    size_t resize_offset;          /* out: output bytes read before the resize */
};

static size_t count_redraws(void)
{
    out[out_used] = '\0';
    size_t n = 0;
    for (const char *p = out; (p = strstr(p, "\r\033[K")) != NULL; p += 4)
        n++;
    return n;
}

/* Reads the pty master until the child closes its side, resizing the terminal once the
 * command has redrawn three times when `run` asks for it. */
static void pty_read(int master, pid_t pid, struct pty_run *run)
{
    bool resized = run->resize_columns == 0;
    for (int64_t deadline = tb_now_ms() + RUN_LIMIT_MS;;) {
        if (tb_now_ms() > deadline) {
            kill(pid, SIGKILL);
            test_fail_(__FILE__, __LINE__, "turbine bench ran over %d ms; output:\n%s",
                       RUN_LIMIT_MS, visible());
        }
        struct pollfd p = {.fd = master, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t n = read(master, out + out_used, OUT_SIZE - 1 - out_used);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) /* EIO: every descriptor of the slave side is closed */
            break;
        out_used += (size_t)n;
        CHECK_LT(out_used, OUT_SIZE - 1);
        if (!resized && count_redraws() >= 3) {
            struct winsize ws = {.ws_row = 24, .ws_col = run->resize_columns};
            CHECK_EQ(ioctl(master, TIOCSWINSZ, &ws), 0);
            run->resize_offset = out_used;
            resized = true;
        }
    }
    CHECK(resized);
}

/* Runs the command with stdin, stdout and stderr on a new pseudo-terminal `run->columns`
 * wide; returns its exit code, its output in `out`. */
static int pty_run(const struct tb_broker *b, struct pty_run *run)
{
    const char *argv[32];
    bench_argv(b, run->args, argv);
    char broker[64];
    snprintf(broker, sizeof(broker), "TURBINE_BROKER=127.0.0.1:%d", b->port);
    struct winsize ws = {.ws_row = 24, .ws_col = run->columns};
    int master, slave;
    CHECK_EQ(openpty(&master, &slave, NULL, NULL, &ws), 0);
    struct termios t;
    CHECK_EQ(tcgetattr(slave, &t), 0);
    t.c_oflag &= ~(tcflag_t)OPOST;
    CHECK_EQ(tcsetattr(slave, TCSANOW, &t), 0);
    pid_t pid = fork();
    CHECK_GE(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(master);
        if (login_tty(slave) != 0) /* a new session with the pty as its terminal, on 0, 1, 2 */
            _exit(127);
        putenv(broker);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(slave);
    out_used = 0;
    pty_read(master, pid, run);
    close(master);
    int status;
    CHECK_EQ(waitpid(pid, &status, 0), pid);
    find_redraws();
    return exit_code(status);
}

/* Runs the command with stdout and stderr on a pipe; returns its exit code. */
static int pipe_run(const struct tb_broker *b, const char *const *args)
{
    const char *argv[32];
    bench_argv(b, args, argv);
    char broker[64];
    snprintf(broker, sizeof(broker), "TURBINE_BROKER=127.0.0.1:%d", b->port);
    char *env[] = {broker, NULL};
    int status = test_spawn((char *const *)argv, env, out, OUT_SIZE, RUN_LIMIT_MS);
    out_used = strlen(out);
    find_redraws();
    return exit_code(status);
}

/* ---- checks --------------------------------------------------------------------------------- */

/* The summary ("produce: N records, ...", then the latency line) ends the output, on a line of
 * its own: the progress line was cleared before it. Returns N. */
static uint64_t check_summary_last(void)
{
    CHECK_OUT(redraw_count >= 1);
    const struct redraw *last = &redraws[redraw_count - 1];
    uint64_t records = 0;
    int end = 0;
    CHECK_OUT(sscanf(last->text, "produce: %" SCNu64 " records, %n", &records, &end) == 1);
    CHECK_OUT(end > 0);
    CHECK_OUT(strstr(last->text, " msgs/s, ") != NULL);
    CHECK_OUT(last->text[last->size] == '\n');
    const char *latency = last->text + last->size + 1;
    CHECK_OUT(strncmp(latency, "latency (send -> ack, us): p50=", 31) == 0);
    CHECK_OUT(strchr(latency, '\r') == NULL);
    return records;
}

/* No progress line at all, and the summary on stdout all the same. */
static void check_no_progress(uint64_t count)
{
    CHECK_OUT(strchr(out, '\r') == NULL);
    CHECK_OUT(strchr(out, '\033') == NULL);
    CHECK_OUT(strstr(out, " elapsed") == NULL);
    char expect[64];
    snprintf(expect, sizeof(expect), "produce: %" PRIu64 " records, ", count);
    CHECK_OUT(strncmp(out, expect, strlen(expect)) == 0);
    CHECK_OUT(strstr(out, "\nlatency (send -> ack, us): p50=") != NULL);
}

/* MB/s is the records' payload over the elapsed time; the line prints both rounded to 0.1. */
static void check_mb_s(const struct progress *p)
{
    if (p->elapsed_s < 0.2)
        return;
    double mb = (double)p->records * RECORD_SIZE / 1e6;
    double low = mb / (p->elapsed_s + 0.05) - 0.05, high = mb / (p->elapsed_s - 0.05) + 0.05;
    if (p->mb_s < low || p->mb_s > high)
        test_fail_(__FILE__, __LINE__, "%" PRIu64 " records in %.1f s: %.1f MB/s, not %.2f..%.2f",
                   p->records, p->elapsed_s, p->mb_s, low, high);
}

/* The progress lines before the summary: parsed, monotonic, MB/s consistent; returns how many
 * showed records (updates during the run, not the first draw at 0). */
static int check_progress_lines(int from, int to, uint64_t count, double duration_s)
{
    struct progress previous = {0}, p;
    int updates = 0;
    for (int i = from; i < to; i++) {
        if (!redraw_parse(&redraws[i], &p))
            test_fail_(__FILE__, __LINE__, "redraw %d is not a progress line; output:\n%s", i,
                       visible());
        CHECK_GE(p.records, previous.records);
        CHECK(p.elapsed_s >= previous.elapsed_s);
        CHECK_LE(p.records, count > 0 ? count : UINT64_MAX / 2);
        check_mb_s(&p);
        if (duration_s > 0 && p.elapsed_s < duration_s - 0.1) {
            /* the time left: duration - elapsed, each rounded to 0.1 */
            CHECK(p.eta_s >= 0);
            CHECK(p.elapsed_s + p.eta_s > duration_s - 0.11);
            CHECK(p.elapsed_s + p.eta_s < duration_s + 0.11);
        } else if (count > 0 && p.records > 0) { /* by the rate so far */
            double left = (double)(count - p.records) / (double)p.records;
            CHECK(p.eta_s >= 0);
            CHECK(p.eta_s > (p.elapsed_s - 0.05) * left - 0.06);
            CHECK(p.eta_s < (p.elapsed_s + 0.05) * left + 0.06);
        }
        updates += p.records > 0;
        previous = p;
    }
    return updates;
}

/* ---- the cases ------------------------------------------------------------------------------ */

/* A counted run on a wide terminal: ETA by the rate so far; the warm-up's records count in the
 * line's MB/s too (the summary leaves them out). About 2 s. */
static void counted_run(const struct tb_broker *b)
{
    const char *args[] = {"--count", "10000",   "--rate",   "5000", "--warmup",
                          "0.5",     "--topic", "progress", NULL};
    struct pty_run run = {.args = args, .columns = 200};
    CHECK_EQ(pty_run(b, &run), 0);
    uint64_t summarized = check_summary_last();
    CHECK_OUT(summarized > 0 && summarized < 10000); /* the warm-up's are not measured */
    int updates = check_progress_lines(0, redraw_count - 1, 10000, 0);
    if (updates < 2)
        test_fail_(__FILE__, __LINE__, "%d progress updates with records; output:\n%s", updates,
                   visible());
}

/* A timed run whose terminal shrinks to 32 columns after three redraws: the wide lines carry
 * the ETA (duration - elapsed), the narrow ones fit in 31 columns. About 2 s. */
static void resized_run(const struct tb_broker *b)
{
    const char *args[] = {"--duration", "2", "--rate", "5000", "--topic", "progress", NULL};
    struct pty_run run = {.args = args, .columns = 200, .resize_columns = 32};
    CHECK_EQ(pty_run(b, &run), 0);
    check_summary_last();
    int wide = 0;
    while (wide < redraw_count - 1 && redraws[wide].offset < run.resize_offset)
        wide++;
    CHECK_OUT(wide >= 3);
    check_progress_lines(0, wide, 0, 2.0);
    /* the first redraw after the resize may have been drawn before it */
    int narrow = 0;
    for (int i = wide + 1; i < redraw_count - 1; i++, narrow++) {
        CHECK_OUT(redraws[i].size <= 31);
        CHECK_OUT(strncmp(redraws[i].text, "produce: ", 9) == 0);
        CHECK_OUT(memmem(redraws[i].text, redraws[i].size, "elapsed", 7) == NULL);
    }
    if (narrow < 2)
        test_fail_(__FILE__, __LINE__, "%d redraws after the resize; output:\n%s", narrow,
                   visible());
}

int main(void)
{
    struct tb_broker b;
    tb_init(&b, "bench-progress");
    tb_start(&b, 1, NULL);

    counted_run(&b);
    resized_run(&b);

    /* --quiet on a terminal: no progress line (1 s, five redraws otherwise) */
    const char *quiet[] = {"--count", "3000",     "--rate",  "3000",
                           "--topic", "progress", "--quiet", NULL};
    struct pty_run run = {.args = quiet, .columns = 200};
    CHECK_EQ(pty_run(&b, &run), 0);
    check_no_progress(3000);

    /* stdout a pipe: no progress line */
    const char *piped[] = {"--count", "3000", "--rate", "3000", "--topic", "progress", NULL};
    CHECK_EQ(pipe_run(&b, piped), 0);
    check_no_progress(3000);

    /* --help says so */
    const char *help[] = {"--help", NULL};
    CHECK_EQ(pipe_run(&b, help), 0);
    CHECK_CONTAINS(out, "progress line");
    CHECK_CONTAINS(out, "records, MB/s since the start, elapsed seconds");
    CHECK_CONTAINS(out, "the ETA");
    CHECK_CONTAINS(out, "-q, --quiet");

    tb_stop_clean(&b);
    tb_cleanup(&b);
    return 0;
}
