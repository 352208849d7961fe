/* SPDX-License-Identifier: MIT
 * app_test.c - the application template end to end: loom_app_main() runs in a re-executed
 * child ("child" as argv[1]) whose main fiber reports what the runtime was started with, so
 * every standard option is checked for acceptance and effect, every bad value for exit 2 and
 * a one-line message naming the option, and the exit status for the main fiber's result and
 * for loom_exit() from another core. Also unit checks of loom_parse_size/loom_parse_cpulist.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>

#include "harness.h"
#include "internal.h"
#include "loom/loom.h"

/* ---- the child: a small loom program -------------------------------------------------------- */

static const char *child_mode = "report";
static const char *child_greeting = "(none)";
static bool child_shout;

static int parse_mode(const char *value, void *ctx)
{
    (void)ctx;
    if (strcmp(value, "report") != 0 && strcmp(value, "exit7") != 0 &&
        strcmp(value, "remote-exit") != 0)
        return -EINVAL;
    child_mode = value;
    return 0;
}

static int parse_greeting(const char *value, void *ctx)
{
    (void)ctx;
    if (strcmp(value, "reject") == 0)
        return -EINVAL;
    child_greeting = value;
    return 0;
}

static int parse_shout(const char *value, void *ctx)
{
    (void)ctx;
    CHECK(value == NULL); /* a flag gets no value */
    child_shout = true;
    return 0;
}

/* Runs on every core: the reactor thread must sit on the CPU loom_core_cpu() names. */
static int check_pinned(void *arg)
{
    (void)arg;
    unsigned core = loom_core_id();
    CHECK_EQ(sched_getcpu(), loom_core_cpu(core));
    cpu_set_t set;
    CHECK_EQ(sched_getaffinity(0, sizeof(set), &set), 0);
    CHECK_EQ(CPU_COUNT(&set), 1);
    return 0;
}

static long locked_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long kib = -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmLck: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

static void report(void)
{
    const struct loom_config *c = &loom__rt.config;
    printf("cores=%u\n", loom_core_count());
    for (unsigned i = 0; i < loom_core_count(); i++)
        printf("cpu[%u]=%u\n", i, loom_core_cpu(i));
    CHECK_EQ(loom_invoke_on_all(check_pinned, NULL, LOOM_NO_DEADLINE), 0);
    printf("pinned=ok\n");
    printf("budget=%zu\n", loom_mem_budget_bytes());
    printf("poll_ns=%" PRId64 " quota_ns=%" PRId64 " stall_ns=%" PRId64 "\n", c->poll_ns,
           c->task_quota_ns, c->stall_ns);
    printf("stacks=%zu,%zu,%zu main_stack=%zu\n", c->stack_bytes[0], c->stack_bytes[1],
           c->stack_bytes[2], loom_fiber_self()->stack_size);
    printf("hugepages=%d lock_memory=%d locked_kib=%ld\n", c->hugepages, c->lock_memory,
           locked_kib());
    printf("greeting=%s shout=%d\n", child_greeting, child_shout);
}

static int remote_exit(void *arg)
{
    (void)arg;
    loom_exit(5);
    return 0;
}

static int child_fiber(void *arg)
{
    (void)arg;
    if (strcmp(child_mode, "exit7") == 0)
        return 7;
    if (strcmp(child_mode, "remote-exit") == 0) {
        CHECK_EQ(loom_submit_to(loom_core_count() - 1, remote_exit, NULL), 0);
        /* woken by the shutdown loom_exit(5) starts; this result comes second and loses */
        CHECK_EQ(loom_wait_shutdown(LOOM_NO_DEADLINE), 0);
        CHECK(loom_stopping());
        return 99;
    }
    report();
    fflush(stdout);
    return 0;
}

static int child_main(int argc, char **argv)
{
    static const struct loom_option options[] = {
        {"mode", "NAME", "what the main fiber does: report, exit7, remote-exit", parse_mode, NULL},
        {"greeting", "TEXT", "a word to print ('reject' is refused)", parse_greeting, NULL},
        {"shout", NULL, "a flag without value", parse_shout, NULL},
    };
    struct loom_app app = {
        .name = "app_test",
        .summary = "app_test - a loom program used by the application-template test",
        .usage_extra = "The child reports its runtime settings and exits.",
        .options = options,
        .option_count = sizeof(options) / sizeof(options[0]),
        .main = child_fiber,
    };
    return loom_app_main(&app, argc, argv);
}

/* ---- the parent: runs the child with command lines -------------------------------------- */

static char out[65536];
static const char *self_path;

/* Runs the child with `args` (NULL-terminated); returns its wait status. The output (stdout
 * and stderr together) is in `out`. */
static int run_status(const char *const *args)
{
    char *argv[64];
    int n = 0;
    argv[n++] = (char *)self_path;
    argv[n++] = "child";
    for (; *args && n < 63; args++)
        argv[n++] = (char *)*args;
    argv[n] = NULL;
    return test_spawn(argv, NULL, out, sizeof(out), 20000);
}

/* run_status(), failing the test unless the child exited; returns its exit status. */
static int run(const char *const *args)
{
    int status = run_status(args);
    if (status < 0 || !WIFEXITED(status)) {
        char line[512] = "";
        for (size_t used = 0; *args && used + 2 < sizeof(line); args++)
            used += (size_t)snprintf(line + used, sizeof(line) - used, " %s", *args);
        test_fail_(__FILE__, __LINE__, "child%s: status %#x, output:\n%s", line, (unsigned)status,
                   out);
    }
    return WEXITSTATUS(status);
}

#define RUN(...) run((const char *const[]){__VA_ARGS__, NULL})

static size_t count_lines(const char *text)
{
    size_t n = 0;
    for (; *text; text++)
        n += *text == '\n';
    return n;
}

/* A bad command line: exit 2 and exactly one line naming `option` and containing `detail`. */
static void expect_usage_error(const char *const *args, const char *option, const char *detail)
{
    int code = run(args);
    if (code != 2 || count_lines(out) != 1 || !strstr(out, option) ||
        (detail && !strstr(out, detail)))
        test_fail_(__FILE__, __LINE__,
                   "%s %s: want exit 2 and one line naming %s%s%s; got exit %d:\n%s", args[0],
                   args[1] ? args[1] : "", option, detail ? " with " : "", detail ? detail : "",
                   code, out);
    CHECK_CONTAINS(out, "app_test: ");
}

#define USAGE_ERROR(option, detail, ...)                                                           \
    expect_usage_error((const char *const[]){__VA_ARGS__, NULL}, option, detail)

static long field(const char *name)
{
    char key[64];
    snprintf(key, sizeof(key), "%s=", name);
    const char *p = strstr(out, key);
    if (!p)
        test_fail_(__FILE__, __LINE__, "no %s in child output:\n%s", key, out);
    return strtol(p + strlen(key), NULL, 10);
}

static void test_help(void)
{
    CHECK_EQ(RUN("--help"), 0);
    static const char *const names[] = {
        "--smp N",     "--cpuset LIST",     "--memory SIZE", "--hugepages",         "--lock-memory",
        "--poll-us N", "--task-quota-us N", "--stall-ms N",  "--stack-sizes S,M,L", "--help",
        "--mode NAME", "--greeting TEXT",   "--shout",
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        CHECK_CONTAINS(out, names[i]);
    CHECK_CONTAINS(out, "Usage: app_test");
    CHECK_CONTAINS(out, "a loom program used by the application-template test");
    CHECK_CONTAINS(out, "The child reports its runtime settings");
    CHECK(strstr(out, "cores=") == NULL); /* --help does not start the runtime */
    /* --help wins even after other options */
    CHECK_EQ(RUN("--smp", "1", "--help"), 0);
    CHECK_CONTAINS(out, "--stack-sizes");
}

static void test_cores(unsigned ncpus, const unsigned cpus[2])
{
    CHECK_EQ(RUN("--smp", "1", "--greeting", "hi", "--shout"), 0);
    CHECK_EQ(field("cores"), 1);
    CHECK_EQ(field("cpu[0]"), cpus[0]);
    CHECK_CONTAINS(out, "pinned=ok");
    CHECK_CONTAINS(out, "greeting=hi shout=1");
    /* without --smp: one core per allowed CPU */
    CHECK_EQ(RUN("--memory", "64M"), 0);
    CHECK_EQ(field("cores"), ncpus);
    CHECK_CONTAINS(out, "greeting=(none) shout=0");
    if (ncpus < 2)
        return;
    CHECK_EQ(RUN("--smp", "2"), 0);
    CHECK_EQ(field("cores"), 2);
    CHECK_EQ(field("cpu[0]"), cpus[0]);
    CHECK_EQ(field("cpu[1]"), cpus[1]);
    CHECK_CONTAINS(out, "pinned=ok");
    char one[16];
    snprintf(one, sizeof(one), "%u", cpus[1]);
    CHECK_EQ(RUN("--cpuset", one), 0); /* core 0 runs on that CPU */
    CHECK_EQ(field("cores"), 1);
    CHECK_EQ(field("cpu[0]"), cpus[1]);
    CHECK_CONTAINS(out, "pinned=ok");
    char two[32];
    snprintf(two, sizeof(two), "%u,%u", cpus[0], cpus[1]);
    CHECK_EQ(RUN("--cpuset", two, "--smp", "1"), 0);
    CHECK_EQ(field("cores"), 1);
    CHECK_EQ(field("cpu[0]"), cpus[0]);
}

static void test_tuning_options(unsigned ncpus)
{
    CHECK_EQ(RUN("--memory", "64M", "--smp", "1"), 0);
    CHECK_EQ(field("budget"), 64 << 20);
    if (ncpus >= 2) {
        CHECK_EQ(RUN("--memory", "64M", "--smp", "2"), 0);
        CHECK_EQ(field("budget"), 32 << 20); /* split among cores */
    }
    CHECK_EQ(RUN("--smp", "1", "--poll-us", "7", "--task-quota-us", "250", "--stall-ms", "0"), 0);
    CHECK_EQ(field("poll_ns"), 7000);
    CHECK_EQ(field("quota_ns"), 250000);
    CHECK_EQ(field("stall_ns"), 0);
    CHECK_EQ(RUN("--smp", "1", "--poll-us", "0", "--stall-ms", "75"), 0);
    CHECK_EQ(field("poll_ns"), 0);
    CHECK_EQ(field("stall_ns"), 75 * 1000000);
    CHECK_EQ(RUN("--smp", "1", "--stack-sizes", "32K,128K,1M"), 0);
    CHECK_CONTAINS(out, "stacks=32768,131072,1048576 main_stack=1048576");
}

static void test_memory_options(void)
{
    /* --hugepages: huge pages when the pool has them, otherwise a warning and THP */
    FILE *f = fopen("/proc/sys/vm/nr_hugepages", "r");
    long pool = -1;
    if (f) {
        if (fscanf(f, "%ld", &pool) != 1)
            pool = -1;
        fclose(f);
    }
    const char *const hugepages[] = {"--smp", "1", "--memory", "32M", "--hugepages", NULL};
    CHECK_EQ(run(hugepages), 0);
    CHECK_EQ(field("hugepages"), 1);
    if (pool == 0) {
        CHECK_CONTAINS(out, "warning");
        CHECK_CONTAINS(out, "--hugepages");
    }
    /* --lock-memory: locked (root or a large RLIMIT_MEMLOCK), or a clear start-up failure */
    int code = RUN("--smp", "1", "--memory", "32M", "--lock-memory");
    if (code == 0) {
        CHECK_EQ(field("lock_memory"), 1);
        if (!test_under_asan()) /* ASan intercepts mlock() as a no-op */
            CHECK_GE(field("locked_kib"), 16 * 1024);
    } else {
        CHECK_EQ(code, 1);
        CHECK_CONTAINS(out, "RLIMIT_MEMLOCK");
    }
}

static void test_bad_command_lines(unsigned ncpus, unsigned unavailable_cpu)
{
    USAGE_ERROR("--bogus", "unknown option", "--bogus");
    USAGE_ERROR("--smp", "needs a value", "--smp");
    USAGE_ERROR("--cpuset", "needs a value", "--smp", "1", "--cpuset");
    USAGE_ERROR("--greeting", "needs a value", "--greeting");
    USAGE_ERROR("--smp", "'0'", "--smp", "0");
    USAGE_ERROR("--smp", "'abc'", "--smp", "abc");
    USAGE_ERROR("--smp", "'-1'", "--smp", "-1");
    char too_many[16], only[32];
    snprintf(too_many, sizeof(too_many), "%u", ncpus + 1);
    snprintf(only, sizeof(only), "only %u CPU", ncpus);
    USAGE_ERROR("--smp", only, "--smp", too_many); /* says how many CPUs there are */
    char cpu[16];
    snprintf(cpu, sizeof(cpu), "%u", unavailable_cpu);
    USAGE_ERROR("--cpuset", "not available", "--cpuset", cpu);
    USAGE_ERROR("--cpuset", "'9-2'", "--cpuset", "9-2");
    USAGE_ERROR("--cpuset", "'x'", "--cpuset", "x");
    USAGE_ERROR("--cpuset", "'0-'", "--cpuset", "0-");
    USAGE_ERROR("--memory", "'12Q'", "--memory", "12Q");
    USAGE_ERROR("--memory", "'1K'", "--memory", "1K"); /* below the 8 MiB minimum */
    USAGE_ERROR("--poll-us", "'-1'", "--poll-us", "-1");
    USAGE_ERROR("--task-quota-us", "'0'", "--task-quota-us", "0");
    USAGE_ERROR("--stall-ms", "'soon'", "--stall-ms", "soon");
    USAGE_ERROR("--stack-sizes", "'1K,2K'", "--stack-sizes", "1K,2K");
    USAGE_ERROR("--stack-sizes", "'16K,64K'", "--stack-sizes", "16K,64K"); /* two of three */
    USAGE_ERROR("--stack-sizes", "'16K,64K,256K,1M'", "--stack-sizes", "16K,64K,256K,1M");
    USAGE_ERROR("extra", "unexpected argument", "--smp", "1", "extra");
    USAGE_ERROR("--hugepages", NULL, "--hugepages=yes"); /* a flag takes no value */
    /* a program option's parse callback refusing a value */
    USAGE_ERROR("--greeting", "invalid value for --greeting: 'reject'", "--greeting", "reject");
    USAGE_ERROR("--mode", "'dance'", "--mode", "dance");
}

static void test_exit_status(unsigned ncpus)
{
    CHECK_EQ(RUN("--smp", "1", "--mode", "exit7"), 7);
    if (ncpus >= 2)
        CHECK_EQ(RUN("--smp", "2", "--mode", "remote-exit"), 5);
    CHECK_EQ(RUN("--smp", "1", "--mode", "remote-exit"), 5); /* submit_to itself */
}

static void test_parse_size(void)
{
    static const struct {
        const char *text;
        size_t bytes;
    } good[] = {
        {"0", 0},
        {"65536", 65536},
        {"64K", 64 << 10},
        {"64k", 64 << 10},
        {"64KiB", 64 << 10},
        {"64KB", 64 << 10},
        {"512M", (size_t)512 << 20},
        {"4G", (size_t)4 << 30},
        {"2T", (size_t)2 << 40},
        {"18446744073709551615", SIZE_MAX},
        {"16777215T", (size_t)16777215 << 40},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        size_t bytes = 1;
        if (loom_parse_size(good[i].text, &bytes) != 0 || bytes != good[i].bytes)
            test_fail_(__FILE__, __LINE__, "loom_parse_size(\"%s\") gave %zu, want %zu",
                       good[i].text, bytes, good[i].bytes);
    }
    static const char *const bad[] = {
        "",
        " -1",
        " 1",
        "K",
        "-1",
        "12Q",
        "1.5G",
        "1KK",
        "1 ",
        "1Kx",
        "0x10",
        "16777216T",
        "18446744073709551616",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t bytes = 12345;
        int rc = loom_parse_size(bad[i], &bytes);
        if (rc != -EINVAL || bytes != 12345)
            test_fail_(__FILE__, __LINE__, "loom_parse_size(\"%s\") = %d (%zu), want -EINVAL",
                       bad[i], rc, bytes);
    }
    size_t bytes;
    CHECK_EQ(loom_parse_size(NULL, &bytes), -EINVAL);
}

static void test_parse_cpulist(void)
{
    uint64_t mask[LOOM_CORES_MAX / 64];
    CHECK_EQ(loom_parse_cpulist("0-3,6", mask), 5);
    CHECK_EQ(mask[0], 0x4f);
    CHECK_EQ(mask[1] | mask[2] | mask[3], 0);
    CHECK_EQ(loom_parse_cpulist("1", mask), 1);
    CHECK_EQ(mask[0], 2);
    CHECK_EQ(loom_parse_cpulist("1,1,0-1", mask), 2); /* repeats count once */
    CHECK_EQ(mask[0], 3);
    CHECK_EQ(loom_parse_cpulist("7,3", mask), 2);
    CHECK_EQ(mask[0], 0x88);
    CHECK_EQ(loom_parse_cpulist("64,255", mask), 2);
    CHECK_EQ(mask[0], 0);
    CHECK_EQ(mask[1], 1);
    CHECK_EQ((int64_t)(mask[3] >> 63), 1);
    CHECK_EQ(loom_parse_cpulist("0-255", mask), 256);
    CHECK_EQ(loom_parse_cpulist("5-5", mask), 1);
    static const char *const bad[] = {
        "",   "x",  "9-2",  "256", "0-256", "-1",  "1-",
        "1,", ",1", "1,,2", "1 ",  "1-2-3", "0x1", "99999999999999999999",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = loom_parse_cpulist(bad[i], mask);
        if (rc != -EINVAL)
            test_fail_(__FILE__, __LINE__, "loom_parse_cpulist(\"%s\") = %d, want -EINVAL", bad[i],
                       rc);
    }
    CHECK_EQ(loom_parse_cpulist(NULL, mask), -EINVAL);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "child") == 0)
        return child_main(argc - 1, argv + 1);
    alarm(120); /* a hang ends the test instead of the runner's budget */
    self_path = argv[0];
    test_parse_size();
    test_parse_cpulist();

    cpu_set_t allowed;
    CHECK_EQ(sched_getaffinity(0, sizeof(allowed), &allowed), 0);
    unsigned ncpus = 0, cpus[2] = {0, 0}, unavailable = 7;
    for (unsigned cpu = 0; cpu < CPU_SETSIZE; cpu++)
        if (CPU_ISSET(cpu, &allowed) && ncpus++ < 2)
            cpus[ncpus - 1] = cpu;
    while (unavailable < LOOM_CORES_MAX && CPU_ISSET(unavailable, &allowed))
        unavailable++;

    test_help();
    test_bad_command_lines(ncpus, unavailable);
    test_cores(ncpus, cpus);
    test_tuning_options(ncpus);
    test_memory_options();
    test_exit_status(ncpus);
    return 0;
}
