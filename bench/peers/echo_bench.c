/* SPDX-License-Identifier: MIT
 * echo_bench.c - TCP echo over loopback: loom's echo server against a bare liburing server (the
 * limit) and a libuv server, each a separate process on CPU 0, driven by echo_client on CPU 1.
 *
 *     echo_bench [--quick] [--rounds N] [--seconds S] [--warmup S] [--loom PATH] [--port BASE]
 *
 * Workloads: pingpong_64B (100 connections, one 64-byte message each in flight: req/s),
 * stream_4K and stream_64K (100 connections, 16 messages each in flight: MB/s echoed). Each
 * (workload, server) run starts a fresh server on a port of its own, waits until the port
 * accepts, runs the client (warm-up, then the measured interval) and reads the server's
 * utime+stime from /proc/PID/stat when the client says the interval starts and again when it
 * ends, which gives server CPU per request (us/req) or per MB (us/MB, MB = 10^6 bytes). Runs are
 * interleaved (loom, raw, libuv, loom, ...) for ROUNDS rounds and the medians reported.
 * Figures: echo_pingpong_64B (req/s), echo_stream_4K and echo_stream_64K (MB/s), each against
 * raw_liburing and libuv, and their _cpu twins (us/req, us/MB: lower is better). Server CPU
 * includes the loopback TCP work done in its context (softirqs run on its syscalls); an info
 * line says how much CPU other processes took meanwhile, since a busy machine skews everything.
 * The loom server is <dir of this program>/../examples/echo_server, run as
 * `echo_server --smp 1 --cpuset 0 --poll-us 0 --port P` (no spinning when idle, like the
 * baselines, whose idle time would otherwise not count as CPU) (override: --loom PATH or
 * $LOOM_ECHO_SERVER); when it does not exist loom's figures are skipped, and the raw_liburing vs
 * libuv figures (reported always, as echo_raw_liburing_*) still print. Servers are stopped with
 * SIGTERM (SIGKILL after 3 s) and die with this program (PR_SET_PDEATHSIG). Exit 1 when a run
 * fails.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "benchlib.h"

#define SERVER_CPU  0
#define CLIENT_CPU  1
#define ROUNDS_MAX  15
#define CONNECTIONS 100
#define WINDOW      16
#define START_NS    5000000000LL /* a server must accept within this */
#define STOP_NS     3000000000LL /* then SIGKILL */

enum server { LOOM, RAW, UV, SERVER_COUNT };
static const char *const server_names[SERVER_COUNT] = {"loom", "raw_liburing", "libuv"};

struct workload {
    const char *name; /* the figure's name after "echo_" */
    bool stream;
    unsigned size;
};
static const struct workload workloads[] = {
    {"pingpong_64B", false, 64},
    {"stream_4K", true, 4096},
    {"stream_64K", true, 65536},
};
#define WORKLOAD_COUNT (int)(sizeof(workloads) / sizeof(workloads[0]))

/* One run's figures. */
struct sample {
    double rate;        /* req/s (pingpong) or MB/s (stream) */
    double cpu_per;     /* server CPU us per request (pingpong) or per MB (stream) */
    double server_util; /* server CPU / wall time of the interval */
    double client_util;
};

static struct {
    int rounds;
    double seconds, warmup;
    int port;
    char loom[PATH_MAX];
} opt = {.rounds = 3, .seconds = 2.0, .warmup = 1.0};

static char paths[SERVER_COUNT][PATH_MAX];
static char client_path[PATH_MAX];
static bool available[SERVER_COUNT];
static struct sample samples[SERVER_COUNT][WORKLOAD_COUNT][ROUNDS_MAX];
static bool failed[SERVER_COUNT][WORKLOAD_COUNT];
static int next_port;
static volatile pid_t children[2]; /* server and client now running, for the signal handler */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Busy time (all but idle and iowait) of CPUs SERVER_CPU and CLIENT_CPU in microseconds,
 * from /proc/stat, or -1. */
static double cpus_busy_us(void)
{
    FILE *f = fopen("/proc/stat", "re");
    if (f == NULL)
        return -1;
    char line[512];
    double busy = 0;
    int found = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        int cpu;
        unsigned long long v[8] = {0};
        if (sscanf(line, "cpu%d %llu %llu %llu %llu %llu %llu %llu %llu", &cpu, &v[0], &v[1], &v[2],
                   &v[3], &v[4], &v[5], &v[6], &v[7]) != 9)
            continue;
        if (cpu != SERVER_CPU && cpu != CLIENT_CPU)
            continue;
        /* user nice system [idle iowait] irq softirq steal */
        busy += (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]);
        found++;
    }
    fclose(f);
    return found > 0 ? busy * 1e6 / (double)sysconf(_SC_CLK_TCK) : -1;
}

/* Wall time and CPU time taken by other processes on the two CPUs, over all measured intervals:
 * the figures are only as good as the machine is quiet. */
static double total_wall_us, total_other_us;

/* fork + exec `argv`; stdout to `stdout_fd` (or /dev/null when -1). The child dies with us. */
static pid_t spawn(char *const argv[], int stdout_fd)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        perror("echo_bench: fork");
        return -1;
    }
    if (pid > 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    int fd = stdout_fd >= 0 ? stdout_fd : open("/dev/null", O_WRONLY);
    dup2(fd, STDOUT_FILENO);
    execv(argv[0], argv);
    fprintf(stderr, "echo_bench: exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

/* Waits up to `timeout_ns` for `pid` to exit; true when it has (and was reaped). */
static bool wait_exit(pid_t pid, int64_t timeout_ns, int *status)
{
    int64_t deadline = now_ns() + timeout_ns;
    for (;;) {
        pid_t rc = waitpid(pid, status, WNOHANG);
        if (rc == pid || (rc < 0 && errno == ECHILD))
            return true;
        if (now_ns() > deadline)
            return false;
        sleep_ms(5);
    }
}

/* SIGTERM, then SIGKILL after STOP_NS; always reaps. Returns whether it exited cleanly. */
static bool stop_child(pid_t pid, const char *name)
{
    int status = 0;
    kill(pid, SIGTERM);
    if (!wait_exit(pid, STOP_NS, &status)) {
        fprintf(stderr, "echo_bench: %s ignored SIGTERM for 3 s: SIGKILL\n", name);
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        return false;
    }
    return true;
}

/* Polls until 127.0.0.1:`port` accepts a connection, or `server` exits, or START_NS passes. */
static bool wait_port(int port, pid_t server, const char *name)
{
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int64_t deadline = now_ns() + START_NS;
    while (now_ns() < deadline) {
        int status;
        if (waitpid(server, &status, WNOHANG) == server) {
            fprintf(stderr, "echo_bench: %s exited before accepting (status 0x%x)\n", name, status);
            children[0] = 0;
            return false;
        }
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return false;
        bool ok = connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0;
        close(fd);
        if (ok)
            return true;
        sleep_ms(10);
    }
    fprintf(stderr, "echo_bench: %s did not accept on port %d within 5 s\n", name, port);
    return false;
}

/* Reads one line from `fd` into `line` within `timeout_ns`; false on EOF or timeout. */
static bool read_line(int fd, char *line, size_t size, int64_t timeout_ns)
{
    int64_t deadline = now_ns() + timeout_ns;
    size_t n = 0;
    while (n + 1 < size) {
        int64_t left = deadline - now_ns();
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, (int)(left / 1000000) + 1) <= 0)
            return false;
        char c;
        if (read(fd, &c, 1) != 1)
            return false;
        if (c == '\n')
            break;
        line[n++] = c;
    }
    line[n] = '\0';
    return true;
}

/* Runs echo_client against the server `server_pid` and fills `out`. */
static bool run_client(const struct workload *w, int port, pid_t server_pid, struct sample *out)
{
    char port_s[16], cpu_s[16], conns_s[16], size_s[16], window_s[16], seconds_s[32], warmup_s[32];
    snprintf(port_s, sizeof(port_s), "%d", port);
    snprintf(cpu_s, sizeof(cpu_s), "%d", CLIENT_CPU);
    snprintf(conns_s, sizeof(conns_s), "%d", CONNECTIONS);
    snprintf(size_s, sizeof(size_s), "%u", w->size);
    snprintf(window_s, sizeof(window_s), "%d", WINDOW);
    snprintf(seconds_s, sizeof(seconds_s), "%.3f", opt.seconds);
    snprintf(warmup_s, sizeof(warmup_s), "%.3f", opt.warmup);
    char *argv[] = {client_path,
                    "--port",
                    port_s,
                    "--cpu",
                    cpu_s,
                    "--connections",
                    conns_s,
                    "--size",
                    size_s,
                    "--mode",
                    w->stream ? "stream" : "pingpong",
                    "--window",
                    window_s,
                    "--seconds",
                    seconds_s,
                    "--warmup",
                    warmup_s,
                    NULL};
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0)
        return false;
    pid_t client = spawn(argv, pipefd[1]);
    close(pipefd[1]);
    if (client < 0) {
        close(pipefd[0]);
        return false;
    }
    children[1] = client;
    int64_t limit_ns = (int64_t)((opt.warmup + opt.seconds) * 1e9) + 10000000000LL;
    char line[256];
    double s0 = 0, s1 = 0, c0 = 0, c1 = 0, b0 = 0, b1 = 0;
    int64_t t0 = 0, t1 = 0;
    unsigned long long requests = 0, bytes = 0;
    double seconds = 0;
    bool ok = read_line(pipefd[0], line, sizeof(line), limit_ns) && strcmp(line, "start") == 0;
    if (ok) {
        b0 = cpus_busy_us(), s0 = bench_process_cpu_us(server_pid),
        c0 = bench_process_cpu_us(client), t0 = now_ns();
        ok = read_line(pipefd[0], line, sizeof(line), limit_ns);
        b1 = cpus_busy_us(), s1 = bench_process_cpu_us(server_pid),
        c1 = bench_process_cpu_us(client), t1 = now_ns();
    }
    ok = ok &&
         sscanf(line, "requests=%llu bytes=%llu seconds=%lf", &requests, &bytes, &seconds) == 3;
    close(pipefd[0]);
    int status = 0;
    if (!wait_exit(client, 5000000000LL, &status)) {
        kill(client, SIGKILL);
        waitpid(client, &status, 0);
        ok = false;
    }
    children[1] = 0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        ok = false;
    if (!ok || s0 < 0 || s1 < 0 || requests == 0 || seconds <= 0)
        return false;
    double wall_us = (double)(t1 - t0) / 1e3;
    double mb = (double)bytes / 1e6;
    out->rate = w->stream ? mb / seconds : (double)requests / seconds;
    out->cpu_per = (s1 - s0) / (w->stream ? mb : (double)requests);
    out->server_util = (s1 - s0) / wall_us;
    out->client_util = (c1 - c0) / wall_us;
    if (b0 >= 0 && b1 >= 0) {
        total_wall_us += wall_us;
        total_other_us += (b1 - b0) - (s1 - s0) - (c1 - c0);
    }
    return true;
}

/* One run: a fresh server of kind `s` on a fresh port, the client against it. */
static bool run_one(enum server s, const struct workload *w, struct sample *out)
{
    int port = next_port++;
    char port_s[16];
    snprintf(port_s, sizeof(port_s), "%d", port);
    /* --poll-us 0: the baselines block in the kernel as soon as they are idle, so loom does
     * too; spinning would bill idle time as server CPU per request */
    char *loom_argv[] = {paths[s],    "--smp", "1",      "--cpuset", "0",
                         "--poll-us", "0",     "--port", port_s,     NULL};
    char *peer_argv[] = {paths[s], "--cpu", "0", "--port", port_s, NULL};
    pid_t server = spawn(s == LOOM ? loom_argv : peer_argv, -1);
    if (server < 0)
        return false;
    children[0] = server;
    bool ok = wait_port(port, server, server_names[s]);
    if (ok)
        ok = run_client(w, port, server, out);
    if (children[0] != 0 && !stop_child(server, server_names[s]))
        ok = false; /* a server that does not stop on SIGTERM fails the run */
    children[0] = 0;
    if (!ok)
        fprintf(stderr, "echo_bench: %s %s run failed (port %d)\n", server_names[s], w->name, port);
    return ok;
}

static double median_of(enum server s, int wl, bool cpu, double *runs)
{
    for (int r = 0; r < opt.rounds; r++)
        runs[r] = cpu ? samples[s][wl][r].cpu_per : samples[s][wl][r].rate;
    double sorted[ROUNDS_MAX];
    memcpy(sorted, runs, sizeof(double) * (size_t)opt.rounds);
    return bench_median_f64(sorted, opt.rounds);
}

static bool has(enum server s, int wl)
{
    return available[s] && !failed[s][wl];
}

static void report_workload(int wl)
{
    const struct workload *w = &workloads[wl];
    const char *unit = w->stream ? "MB/s" : "req/s";
    const char *cpu_unit = w->stream ? "us/MB" : "us/req";
    double runs[ROUNDS_MAX], raw_runs[ROUNDS_MAX], uv_runs[ROUNDS_MAX];
    double raw = has(RAW, wl) ? median_of(RAW, wl, false, raw_runs) : 0;
    double uv = has(UV, wl) ? median_of(UV, wl, false, uv_runs) : 0;
    char name[64], cpu_name[64];
    if (has(LOOM, wl) && raw > 0 && uv > 0) {
        double loom = median_of(LOOM, wl, false, runs);
        snprintf(name, sizeof(name), "echo_%s", w->name);
        bench_report(name, loom, unit, "raw_liburing", raw, runs, opt.rounds);
        bench_report(name, loom, unit, "libuv", uv, runs, opt.rounds);
        double loom_cpu = median_of(LOOM, wl, true, runs);
        double raw_cpu = median_of(RAW, wl, true, raw_runs);
        double uv_cpu = median_of(UV, wl, true, uv_runs);
        snprintf(cpu_name, sizeof(cpu_name), "echo_%s_cpu", w->name);
        bench_report(cpu_name, loom_cpu, cpu_unit, "libuv", uv_cpu, runs, opt.rounds);
        bench_report(cpu_name, loom_cpu, cpu_unit, "raw_liburing", raw_cpu, runs, opt.rounds);
    } else {
        printf("info: echo_%s (loom): skipped, %s\n", w->name,
               !available[LOOM] ? "no loom echo server" : "a run failed");
        fflush(stdout);
    }
    if (raw > 0 && uv > 0) { /* how far the limit is from libuv, whatever loom does */
        snprintf(name, sizeof(name), "echo_raw_liburing_%s", w->name);
        bench_report(name, raw, unit, "libuv", uv, raw_runs, opt.rounds);
        double raw_cpu = median_of(RAW, wl, true, raw_runs);
        double uv_cpu = median_of(UV, wl, true, uv_runs);
        snprintf(cpu_name, sizeof(cpu_name), "echo_raw_liburing_%s_cpu", w->name);
        bench_report(cpu_name, raw_cpu, cpu_unit, "libuv", uv_cpu, raw_runs, opt.rounds);
    }
}

/* info: one line per server with every figure (medians), CPU use of server and client. */
static void report_server(enum server s)
{
    if (!available[s]) {
        printf("info: echo %s: skipped, %s does not exist (build examples/echo_server)\n",
               server_names[s], paths[s]);
        fflush(stdout);
        return;
    }
    printf("info: echo %s:", server_names[s]);
    for (int wl = 0; wl < WORKLOAD_COUNT; wl++) {
        const struct workload *w = &workloads[wl];
        const char *sep = wl ? " |" : "";
        if (failed[s][wl]) {
            printf("%s %s FAILED", sep, w->name);
            continue;
        }
        double runs[ROUNDS_MAX], su[ROUNDS_MAX], cu[ROUNDS_MAX];
        double rate = median_of(s, wl, false, runs);
        double cpu = median_of(s, wl, true, runs);
        for (int r = 0; r < opt.rounds; r++) {
            su[r] = samples[s][wl][r].server_util;
            cu[r] = samples[s][wl][r].client_util;
        }
        printf("%s %s %.0f %s %.3f %s (server %.0f%% CPU, client %.0f%%)", sep, w->name, rate,
               w->stream ? "MB/s" : "req/s", cpu, w->stream ? "us/MB" : "us/req",
               100 * bench_median_f64(su, opt.rounds), 100 * bench_median_f64(cu, opt.rounds));
    }
    printf("\n");
    fflush(stdout);
}

static void on_signal(int signo)
{
    for (int i = 0; i < 2; i++) {
        if (children[i] > 0)
            kill(children[i], SIGKILL);
    }
    signal(signo, SIG_DFL);
    raise(signo);
}

/* The peers sit in peers/ beside this program; loom's server in ../examples/. */
static void find_programs(void)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0) {
        perror("echo_bench: readlink /proc/self/exe");
        exit(1);
    }
    self[n] = '\0';
    const char *dir = dirname(self);
    snprintf(paths[RAW], PATH_MAX, "%.*s/peers/echo_uring", PATH_MAX - 32, dir);
    snprintf(paths[UV], PATH_MAX, "%.*s/peers/echo_uv", PATH_MAX - 32, dir);
    snprintf(client_path, PATH_MAX, "%.*s/peers/echo_client", PATH_MAX - 32, dir);
    const char *env = getenv("LOOM_ECHO_SERVER");
    if (opt.loom[0] != '\0')
        snprintf(paths[LOOM], PATH_MAX, "%s", opt.loom);
    else if (env != NULL && *env != '\0')
        snprintf(paths[LOOM], PATH_MAX, "%s", env);
    else
        snprintf(paths[LOOM], PATH_MAX, "%.*s/../examples/echo_server", PATH_MAX - 32, dir);
    for (int s = 0; s < SERVER_COUNT; s++)
        available[s] = access(paths[s], X_OK) == 0;
    if (!available[RAW] || !available[UV] || access(client_path, X_OK) != 0) {
        fprintf(stderr, "echo_bench: %s/peers/ is incomplete (run make)\n", dir);
        exit(1);
    }
    if (!available[LOOM])
        fprintf(stderr, "echo_bench: %s does not exist (yet): loom skipped\n", paths[LOOM]);
}

static void usage(void)
{
    fprintf(stderr, "usage: echo_bench [--quick] [--rounds N] [--seconds S] [--warmup S]\n"
                    "                  [--loom PATH] [--port BASE]\n");
    exit(2);
}

static void parse(int argc, char **argv)
{
    static const struct option options[] = {{"quick", no_argument, NULL, 'q'},
                                            {"rounds", required_argument, NULL, 'r'},
                                            {"seconds", required_argument, NULL, 's'},
                                            {"warmup", required_argument, NULL, 'w'},
                                            {"loom", required_argument, NULL, 'l'},
                                            {"port", required_argument, NULL, 'p'},
                                            {0}};
    int o;
    while ((o = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (o) {
        case 'q':
            opt.rounds = 1, opt.seconds = 0.5, opt.warmup = 0.2;
            break;
        case 'r':
            opt.rounds = atoi(optarg);
            break;
        case 's':
            opt.seconds = atof(optarg);
            break;
        case 'w':
            opt.warmup = atof(optarg);
            break;
        case 'l':
            snprintf(opt.loom, sizeof(opt.loom), "%s", optarg);
            break;
        case 'p':
            opt.port = atoi(optarg);
            break;
        default:
            usage();
        }
    }
    if (opt.rounds < 1 || opt.rounds > ROUNDS_MAX || opt.seconds <= 0 || opt.warmup < 0 ||
        opt.port < 0 || opt.port > 65000)
        usage();
    /* a port range of our own per invocation: rounds x workloads x servers ports from here */
    /* below the ephemeral range (32768-60999): clients, and TIME_WAIT, never hold these */
    next_port = opt.port > 0 ? opt.port : 20000 + (int)(getpid() % 120) * 100;
}

int main(int argc, char **argv)
{
    parse(argc, argv);
    find_programs();
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    bool all_ok = true;
    for (int r = 0; r < opt.rounds; r++) {
        for (int wl = 0; wl < WORKLOAD_COUNT; wl++) {
            for (int s = 0; s < SERVER_COUNT; s++) {
                if (!available[s] || failed[s][wl])
                    continue;
                if (!run_one((enum server)s, &workloads[wl], &samples[s][wl][r])) {
                    failed[s][wl] = true;
                    all_ok = false;
                }
            }
        }
    }
    for (int s = 0; s < SERVER_COUNT; s++)
        report_server((enum server)s);
    if (total_wall_us > 0) {
        double other = total_other_us / total_wall_us; /* in CPUs */
        printf("info: echo: other processes used %.0f%% of a CPU on CPUs %d-%d while measuring%s\n",
               100 * (other > 0 ? other : 0), SERVER_CPU, CLIENT_CPU,
               other > 0.1 ? " (a busy machine: the figures are noisy)" : "");
    }
    for (int wl = 0; wl < WORKLOAD_COUNT; wl++)
        report_workload(wl);
    return all_ok ? 0 : 1;
}
