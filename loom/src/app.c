/* SPDX-License-Identifier: MIT
 * app.c - the application template: standard options, topology, start-up and shutdown.
 *
 * Start-up order: resolve the CPUs (--smp, --cpuset against the process's affinity), read the
 * NUMA node of each from hwloc, reserve every core's memory in one mapping, block SIGINT and
 * SIGTERM (they arrive on core 0's ring through a signalfd), make core 0's reactor on the
 * calling thread, start one pinned thread per other core, wait until every reactor has
 * registered its ring, build the cross-core rings, open the gate, run the main fiber.
 * Shutdown: when any core calls loom_exit() (the main fiber's return does), every loop drains
 * its fibers within the grace period; core 0 joins the threads and frees everything.
 */
#include <errno.h>
#include <sys/resource.h>
#include <getopt.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <hwloc.h>
#include <valgrind/valgrind.h>

#include "internal.h"

#define EXIT_USAGE 2

/* ---- parsing helpers ------------------------------------------------------------------------ */

int loom_parse_size(const char *text, size_t *bytes)
{
    if (!text || text[0] < '0' || text[0] > '9') /* no sign, no blanks */
        return -EINVAL;
    char *end = NULL;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno || end == text || text[0] == '-')
        return -EINVAL;
    unsigned shift = 0;
    switch (*end) {
    case '\0':
        break;
    case 'k':
    case 'K':
        shift = 10;
        end++;
        break;
    case 'm':
    case 'M':
        shift = 20;
        end++;
        break;
    case 'g':
    case 'G':
        shift = 30;
        end++;
        break;
    case 't':
    case 'T':
        shift = 40;
        end++;
        break;
    default:
        return -EINVAL;
    }
    if (shift && (*end == 'i' || *end == 'I'))
        end++;
    if (shift && (*end == 'b' || *end == 'B'))
        end++;
    if (*end != '\0')
        return -EINVAL;
    if (shift && value > (~0ull >> shift))
        return -EINVAL;
    *bytes = (size_t)(value << shift);
    return 0;
}

int loom_parse_cpulist(const char *text, uint64_t mask[LOOM_CORES_MAX / 64])
{
    memset(mask, 0, LOOM_CORES_MAX / 8);
    if (!text || !*text)
        return -EINVAL;
    int count = 0;
    const char *p = text;
    for (;;) {
        char *end;
        if (*p < '0' || *p > '9')
            return -EINVAL;
        unsigned long lo = strtoul(p, &end, 10), hi = lo;
        p = end;
        if (*p == '-') {
            p++;
            if (*p < '0' || *p > '9')
                return -EINVAL;
            hi = strtoul(p, &end, 10);
            p = end;
        }
        if (lo > hi || hi >= LOOM_CORES_MAX)
            return -EINVAL;
        for (unsigned long cpu = lo; cpu <= hi; cpu++) {
            if (!(mask[cpu / 64] & (1ull << (cpu % 64))))
                count++;
            mask[cpu / 64] |= 1ull << (cpu % 64);
        }
        if (*p == '\0')
            return count;
        if (*p != ',')
            return -EINVAL;
        p++;
    }
}

static int parse_int(const char *text, long long lo, long long hi, long long *out)
{
    if (!text || !*text)
        return -EINVAL;
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || *end != '\0' || v < lo || v > hi)
        return -EINVAL;
    *out = v;
    return 0;
}

void loom_config_init(struct loom_config *c)
{
    memset(c, 0, sizeof(*c));
    c->smp = 0;
    c->memory_bytes = (size_t)512 << 20;
    c->poll_ns = 50 * LOOM_NS_PER_US;
    c->task_quota_ns = 500 * LOOM_NS_PER_US;
    c->stall_ns = 200 * LOOM_NS_PER_MS;
    c->shutdown_grace_ns = 5 * LOOM_NS_PER_S;
    unsigned scale = 1;
#if defined(__SANITIZE_ADDRESS__)
    scale = 4; /* ASan's red zones make frames larger */
#endif
    c->stack_bytes[LOOM_STACK_SMALL] = scale * 16 * 1024;
    c->stack_bytes[LOOM_STACK_MEDIUM] = scale * 64 * 1024;
    c->stack_bytes[LOOM_STACK_LARGE] = scale * 256 * 1024;
    c->ring_entries = 256;
    c->smp_ring_entries = 1024;
    c->io_depth = 128;
    c->io_buffer_bytes = 0;
    c->net_buffer_bytes = 0;
    c->net_buffer_size = 16 * 1024;
    c->net_buffer_group = 256;
    c->zc_threshold = 64 * 1024;
}

/* ---- CPUs and topology ---------------------------------------------------------------------- */

static void format_cpus(const cpu_set_t *set, char *buffer, size_t size)
{
    size_t used = 0;
    buffer[0] = '\0';
    for (int cpu = 0; cpu < CPU_SETSIZE && used + 16 < size; cpu++) {
        if (!CPU_ISSET(cpu, set))
            continue;
        int last = cpu;
        while (last + 1 < CPU_SETSIZE && CPU_ISSET(last + 1, set))
            last++;
        used += (size_t)snprintf(buffer + used, size - used, "%s%d", used ? "," : "", cpu);
        if (last > cpu)
            used += (size_t)snprintf(buffer + used, size - used, "-%d", last);
        cpu = last;
    }
}

/* Picks the CPUs from config->smp and config->cpuset. Returns the count, or -EINVAL with a
 * one-line reason in `error`. */
static int resolve_cpus(const struct loom_config *config, unsigned cpus[LOOM_CORES_MAX],
                        char *error, size_t error_size)
{
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) {
        snprintf(error, error_size, "sched_getaffinity: %s", strerror(errno));
        return -EINVAL;
    }
    char allowed_text[256];
    format_cpus(&allowed, allowed_text, sizeof(allowed_text));
    unsigned n = 0;
    if (config->cpuset[0]) {
        uint64_t mask[LOOM_CORES_MAX / 64];
        if (loom_parse_cpulist(config->cpuset, mask) < 0) {
            snprintf(error, error_size, "--cpuset '%s' is not a CPU list like 0-3,6",
                     config->cpuset);
            return -EINVAL;
        }
        for (unsigned cpu = 0; cpu < LOOM_CORES_MAX; cpu++) {
            if (!(mask[cpu / 64] & (1ull << (cpu % 64))))
                continue;
            if (!CPU_ISSET(cpu, &allowed)) {
                snprintf(error, error_size,
                         "--cpuset %s: CPU %u is not available to this process (allowed: %s)",
                         config->cpuset, cpu, allowed_text);
                return -EINVAL;
            }
            cpus[n++] = cpu;
        }
    } else {
        for (unsigned cpu = 0; cpu < LOOM_CORES_MAX && cpu < CPU_SETSIZE; cpu++)
            if (CPU_ISSET(cpu, &allowed))
                cpus[n++] = cpu;
    }
    if (n == 0) {
        snprintf(error, error_size, "no CPU to run on");
        return -EINVAL;
    }
    if (config->oversubscribe && config->smp > n && config->smp <= LOOM_CORES_MAX) {
        for (unsigned i = n; i < config->smp; i++)
            cpus[i] = cpus[i % n];
        return (int)config->smp;
    }
    if (config->smp > n) {
        snprintf(error, error_size, "--smp %u: only %u CPU%s available (%s)", config->smp, n,
                 n == 1 ? "" : "s", config->cpuset[0] ? config->cpuset : allowed_text);
        return -EINVAL;
    }
    if (config->smp > LOOM_CORES_MAX) {
        snprintf(error, error_size, "--smp %u: at most %d cores", config->smp, LOOM_CORES_MAX);
        return -EINVAL;
    }
    return (int)(config->smp ? config->smp : n);
}

static hwloc_topology_t topology;
static bool numa_many;

static void topology_load(struct loom__runtime *rt)
{
    for (unsigned i = 0; i < rt->cores; i++)
        rt->numa_nodes[i] = 0;
    if (hwloc_topology_init(&topology) != 0)
        return;
    if (hwloc_topology_load(topology) != 0) {
        hwloc_topology_destroy(topology);
        topology = NULL;
        return;
    }
    numa_many = hwloc_get_nbobjs_by_type(topology, HWLOC_OBJ_NUMANODE) > 1;
    for (unsigned i = 0; i < rt->cores; i++) {
        hwloc_obj_t pu = hwloc_get_pu_obj_by_os_index(topology, rt->cpus[i]);
        if (pu && pu->nodeset) {
            int node = hwloc_bitmap_first(pu->nodeset);
            rt->numa_nodes[i] = node < 0 ? 0 : node;
        }
    }
}

/* Binds a core's budget to its NUMA node (nothing to do on a single-node machine). */
static void bind_core_memory(struct loom__reactor *r)
{
    if (!topology || !numa_many)
        return;
    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    hwloc_bitmap_only(set, (unsigned)r->numa_node);
    if (hwloc_set_area_membind(topology, r->arena_lo, (size_t)(r->arena_hi - r->arena_lo), set,
                               HWLOC_MEMBIND_BIND, HWLOC_MEMBIND_BYNODESET) != 0)
        loom__log("warning", "binding core %u memory to NUMA node %d: %s", r->core, r->numa_node,
                  strerror(errno));
    hwloc_bitmap_free(set);
}

static int pin_thread(unsigned cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    int rc = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
    if (rc != 0)
        loom__log("error", "pinning to CPU %u: %s", cpu, strerror(rc));
    return -rc;
}

/* ---- threads -------------------------------------------------------------------------------- */

static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static int gate_state; /* 0 closed, 1 open, -1 abort */
static unsigned gate_registered;

static void gate_register(int failed)
{
    pthread_mutex_lock(&gate_lock);
    gate_registered++;
    if (failed)
        atomic_store(&loom__rt.start_failed, 1);
    pthread_cond_broadcast(&gate_cond);
    pthread_mutex_unlock(&gate_lock);
}

static int gate_pass(void)
{
    pthread_mutex_lock(&gate_lock);
    while (gate_state == 0)
        pthread_cond_wait(&gate_cond, &gate_lock);
    int state = gate_state;
    pthread_mutex_unlock(&gate_lock);
    return state;
}

static void gate_set(int state)
{
    pthread_mutex_lock(&gate_lock);
    gate_state = state;
    pthread_cond_broadcast(&gate_cond);
    pthread_mutex_unlock(&gate_lock);
}

static int core_setup(unsigned core)
{
    struct loom__reactor *r = NULL;
    int rc = pin_thread(loom__rt.cpus[core]);
    if (rc == 0)
        rc = loom__reactor_create(core, &r);
    if (rc == 0)
        bind_core_memory(r);
    return rc;
}

static void *core_thread(void *arg)
{
    unsigned core = (unsigned)(uintptr_t)arg;
    char name[16];
    snprintf(name, sizeof(name), "loom-core-%u", core);
    pthread_setname_np(pthread_self(), name);
    int rc = core_setup(core);
    gate_register(rc < 0);
    if (gate_pass() > 0 && rc == 0)
        loom__reactor_run(loom__self);
    return NULL;
}

/* ---- run ------------------------------------------------------------------------------------ */

struct main_fiber {
    loom_fiber_fn fn;
    void *arg;
};

static int main_fiber(void *arg)
{
    struct main_fiber *m = arg;
    int rc = m->fn(m->arg);
    loom_exit(rc);
    return rc;
}

static int setup_signals(sigset_t *old)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    /* blocked before any thread starts, so every reactor inherits the mask */
    pthread_sigmask(SIG_BLOCK, &set, old);
    loom__rt.signal_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (loom__rt.signal_fd < 0) {
        loom__log("error", "signalfd: %s", strerror(errno));
        return -errno;
    }
    return 0;
}

static int start_threads(pthread_t *threads, unsigned *started)
{
    sigset_t all, old;
    for (unsigned core = 1; core < loom__rt.cores; core++) {
        sigfillset(&all);
        sigdelset(&all, SIGSEGV);
        sigdelset(&all, SIGBUS);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        int rc = pthread_create(&threads[core], NULL, core_thread, (void *)(uintptr_t)core);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (rc != 0) {
            loom__log("error", "starting the thread of core %u: %s", core, strerror(rc));
            return -rc;
        }
        (*started)++;
    }
    /* wait until every reactor has registered its ring (or failed); core 0 registered
     * before the threads started, so all cores = started + 1 */
    pthread_mutex_lock(&gate_lock);
    while (gate_registered < *started + 1)
        pthread_cond_wait(&gate_cond, &gate_lock);
    pthread_mutex_unlock(&gate_lock);
    return atomic_load(&loom__rt.start_failed) ? -EIO : 0;
}

static void teardown(pthread_t *threads, unsigned started, sigset_t *old_mask,
                     cpu_set_t *old_affinity)
{
    for (unsigned core = 1; core <= started; core++)
        pthread_join(threads[core], NULL);
    loom__stall_stop();
    for (unsigned core = 0; core < loom__rt.cores; core++)
        loom__reactor_destroy(loom__rt.reactors[core]);
    stack_t ss = {.ss_flags = SS_DISABLE};
    sigaltstack(&ss, NULL);
    loom__mem_release(&loom__rt);
    if (loom__rt.signal_fd >= 0)
        close(loom__rt.signal_fd);
    loom__rt.signal_fd = -1;
    /* drop signals that arrived during shutdown instead of acting on them after we return */
    sigset_t pending;
    sigpending(&pending);
    struct timespec zero = {0, 0};
    while (sigismember(&pending, SIGINT) || sigismember(&pending, SIGTERM)) {
        if (sigtimedwait(&pending, NULL, &zero) < 0)
            break;
        sigpending(&pending);
    }
    pthread_sigmask(SIG_SETMASK, old_mask, NULL);
    pthread_setaffinity_np(pthread_self(), sizeof(*old_affinity), old_affinity);
    if (topology)
        hwloc_topology_destroy(topology);
    topology = NULL;
}

static int runtime_init(const struct loom_config *config)
{
    memset(&loom__rt, 0, sizeof(loom__rt));
    loom__rt.signal_fd = -1;
    loom__rt.config = *config;
    loom__rt.page_bytes = (size_t)sysconf(_SC_PAGESIZE);
    loom__rt.under_valgrind = RUNNING_ON_VALGRIND != 0;
    gate_state = 0;
    gate_registered = 0;
    char error[512];
    int n = resolve_cpus(config, loom__rt.cpus, error, sizeof(error));
    if (n < 0) {
        loom__log("error", "%s", error);
        return n;
    }
    loom__rt.cores = (unsigned)n;
    const struct loom_config *c = config;
    if (c->ring_entries < 8 || c->smp_ring_entries < 2 ||
        (c->smp_ring_entries & (c->smp_ring_entries - 1)) != 0 || c->task_quota_ns <= 0 ||
        c->io_depth == 0) {
        loom__log("error", "invalid configuration (ring sizes or task quota)");
        return -EINVAL;
    }
    topology_load(&loom__rt);
    /* servers hold many sockets: the soft fd limit up to the hard one */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &nofile);
    }
    return loom__mem_reserve(&loom__rt);
}

int loom_run(const struct loom_config *config, loom_fiber_fn fn, void *arg)
{
    LOOM_ASSERTF(loom__self == NULL, "loom_run() called on a thread that runs a reactor");
    LOOM_ASSERT(fn != NULL);
    cpu_set_t old_affinity;
    sched_getaffinity(0, sizeof(old_affinity), &old_affinity);
    sigset_t old_mask;
    pthread_sigmask(SIG_SETMASK, NULL, &old_mask);
    pthread_t threads[LOOM_CORES_MAX];
    unsigned started = 0;
    int rc = runtime_init(config);
    if (rc == 0)
        rc = setup_signals(&old_mask);
    if (rc == 0) {
        rc = core_setup(0);
        gate_register(rc < 0);
    }
    if (rc == 0)
        rc = start_threads(threads, &started);
    if (rc == 0)
        rc = loom__smp_init(&loom__rt);
    if (rc == 0)
        rc = loom__stall_start(&loom__rt);
    struct main_fiber m = {.fn = fn, .arg = arg};
    if (rc == 0) {
        struct loom_fiber_attr attr = {.name = "main", .stack = LOOM_STACK_LARGE};
        rc = loom_spawn(NULL, main_fiber, &m, &attr);
    }
    gate_set(rc == 0 ? 1 : -1);
    if (rc == 0)
        loom__reactor_run(loom__self);
    teardown(threads, started, &old_mask, &old_affinity);
    if (rc != 0) {
        loom__log("error", "the runtime could not start");
        return 1;
    }
    return atomic_load(&loom__rt.exit_code);
}

/* ---- the command line ----------------------------------------------------------------------- */

enum {
    OPT_SMP = 1000,
    OPT_CPUSET,
    OPT_MEMORY,
    OPT_HUGEPAGES,
    OPT_LOCK_MEMORY,
    OPT_POLL_US,
    OPT_TASK_QUOTA_US,
    OPT_STALL_MS,
    OPT_STACK_SIZES,
    OPT_IO_DEPTH,
    OPT_IO_BUFFERS,
    OPT_NET_BUFFERS,
    OPT_NET_BUFFER_SIZE,
    OPT_ZC_THRESHOLD,
    OPT_HELP,
    OPT_APP = 2000,
};

static const struct {
    const char *name;
    int id;
    const char *arg;
    const char *help;
} standard_options[] = {
    {"smp", OPT_SMP, "N", "reactor cores to run (default: one per CPU in the cpuset)"},
    {"cpuset", OPT_CPUSET, "LIST", "CPUs to run on, like 0-3,6 (default: all allowed)"},
    {"memory", OPT_MEMORY, "SIZE", "memory budget of the process, split among cores (512M)"},
    {"hugepages", OPT_HUGEPAGES, NULL, "back the budget with huge pages"},
    {"lock-memory", OPT_LOCK_MEMORY, NULL, "lock the budget in RAM (mlock)"},
    {"poll-us", OPT_POLL_US, "N", "spin this long for work before sleeping (50)"},
    {"task-quota-us", OPT_TASK_QUOTA_US, "N", "run fibers at most this long per loop turn (500)"},
    {"stall-ms", OPT_STALL_MS, "N", "report fibers that run longer without yielding (200; 0 off)"},
    {"stack-sizes", OPT_STACK_SIZES, "S,M,L", "the three fiber stack sizes (16K,64K,256K)"},
    {"io-depth", OPT_IO_DEPTH, "N", "disk operations in flight per core; more wait in order (128)"},
    {"io-buffers", OPT_IO_BUFFERS, "SIZE",
     "registered O_DIRECT buffer pool per core (min(16M, budget/8))"},
    {"net-buffers", OPT_NET_BUFFERS, "SIZE", "receive buffer ring per core (min(32M, budget/8))"},
    {"net-buffer-size", OPT_NET_BUFFER_SIZE, "SIZE", "one receive buffer (16K)"},
    {"zc-threshold", OPT_ZC_THRESHOLD, "SIZE",
     "zero-copy sends from this size to non-loopback peers (64K; 0 = never)"},
    {"help", OPT_HELP, NULL, "show this help and exit"},
};
#define STANDARD_COUNT (sizeof(standard_options) / sizeof(standard_options[0]))

static void print_option(FILE *out, const char *name, const char *arg, const char *help)
{
    char left[64];
    snprintf(left, sizeof(left), "--%s%s%s", name, arg ? " " : "", arg ? arg : "");
    fprintf(out, "  %-24s %s\n", left, help ? help : "");
}

static void print_help(const struct loom_app *app, const char *prog)
{
    printf("Usage: %s [OPTIONS]\n", prog);
    if (app->summary)
        printf("%s\n", app->summary);
    if (app->option_count) {
        printf("\nOptions:\n");
        for (size_t i = 0; i < app->option_count; i++)
            print_option(stdout, app->options[i].name, app->options[i].arg_name,
                         app->options[i].help);
    }
    printf("\nRuntime options (loom):\n");
    for (size_t i = 0; i < STANDARD_COUNT; i++)
        print_option(stdout, standard_options[i].name, standard_options[i].arg,
                     standard_options[i].help);
    printf("\nSIZE takes a K, M, G or T suffix (binary units). SIGINT or SIGTERM asks for an\n"
           "orderly shutdown. Exit status: the program's, 1 if the runtime could not start,\n"
           "2 for a bad command line.\n");
    if (app->usage_extra)
        printf("\n%s\n", app->usage_extra);
}

static int usage_error(const char *prog, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int usage_error(const char *prog, const char *fmt, ...)
{
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s: %s (see %s --help)\n", prog, message, prog);
    return EXIT_USAGE;
}

static int parse_stack_sizes(const char *text, struct loom_config *c)
{
    char copy[128];
    snprintf(copy, sizeof(copy), "%s", text);
    char *save = NULL, *tok = strtok_r(copy, ",", &save);
    for (int i = 0; i < LOOM_STACK_CLASSES; i++, tok = strtok_r(NULL, ",", &save)) {
        size_t bytes;
        if (!tok || loom_parse_size(tok, &bytes) < 0 || bytes < 8192 || bytes > (64u << 20) ||
            (bytes & 4095) != 0)
            return -EINVAL;
        c->stack_bytes[i] = bytes;
    }
    return tok ? -EINVAL : 0;
}

/* Applies one standard option; returns 0 or -EINVAL. */
static int apply_standard(int id, const char *value, struct loom_config *c)
{
    long long v;
    switch (id) {
    case OPT_SMP:
        if (parse_int(value, 1, LOOM_CORES_MAX, &v) < 0)
            return -EINVAL;
        c->smp = (unsigned)v;
        return 0;
    case OPT_CPUSET: {
        uint64_t mask[LOOM_CORES_MAX / 64];
        if (strlen(value) >= sizeof(c->cpuset) || loom_parse_cpulist(value, mask) < 0)
            return -EINVAL;
        snprintf(c->cpuset, sizeof(c->cpuset), "%s", value);
        return 0;
    }
    case OPT_MEMORY:
        if (loom_parse_size(value, &c->memory_bytes) < 0 || c->memory_bytes < (8u << 20))
            return -EINVAL;
        return 0;
    case OPT_HUGEPAGES:
        c->hugepages = true;
        return 0;
    case OPT_LOCK_MEMORY:
        c->lock_memory = true;
        return 0;
    case OPT_POLL_US:
        if (parse_int(value, 0, 10 * 1000 * 1000, &v) < 0)
            return -EINVAL;
        c->poll_ns = v * LOOM_NS_PER_US;
        return 0;
    case OPT_TASK_QUOTA_US:
        if (parse_int(value, 1, 10 * 1000 * 1000, &v) < 0)
            return -EINVAL;
        c->task_quota_ns = v * LOOM_NS_PER_US;
        return 0;
    case OPT_STALL_MS:
        if (parse_int(value, 0, 3600 * 1000, &v) < 0)
            return -EINVAL;
        c->stall_ns = v * LOOM_NS_PER_MS;
        return 0;
    case OPT_STACK_SIZES:
        return parse_stack_sizes(value, c);
    case OPT_IO_DEPTH:
        if (parse_int(value, 1, 65536, &v) < 0)
            return -EINVAL;
        c->io_depth = (unsigned)v;
        return 0;
    case OPT_IO_BUFFERS:
        return loom_parse_size(value, &c->io_buffer_bytes);
    case OPT_NET_BUFFERS:
        return loom_parse_size(value, &c->net_buffer_bytes);
    case OPT_NET_BUFFER_SIZE:
        if (loom_parse_size(value, &c->net_buffer_size) < 0 || c->net_buffer_size < 64 ||
            c->net_buffer_size > ((size_t)1 << 30))
            return -EINVAL;
        return 0;
    case OPT_ZC_THRESHOLD:
        return loom_parse_size(value, &c->zc_threshold);
    }
    return -EINVAL;
}

static int build_longopts(const struct loom_app *app, struct option *longopts, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < STANDARD_COUNT; i++)
        longopts[n++] = (struct option){standard_options[i].name,
                                        standard_options[i].arg ? required_argument : no_argument,
                                        NULL, standard_options[i].id};
    for (size_t i = 0; i < app->option_count && n + 1 < max; i++)
        longopts[n++] = (struct option){app->options[i].name,
                                        app->options[i].arg_name ? required_argument : no_argument,
                                        NULL, OPT_APP + (int)i};
    if (STANDARD_COUNT + app->option_count + 1 > max)
        return -EINVAL;
    longopts[n] = (struct option){0, 0, 0, 0};
    return 0;
}

static const char *option_name(int id, const struct loom_app *app)
{
    if (id >= OPT_APP)
        return app->options[id - OPT_APP].name;
    for (size_t i = 0; i < STANDARD_COUNT; i++)
        if (standard_options[i].id == id)
            return standard_options[i].name;
    return "?";
}

int loom_app_main(const struct loom_app *app, int argc, char **argv)
{
    const char *prog = app->name ? app->name : (argc > 0 ? argv[0] : "loom");
    struct option longopts[128];
    LOOM_ASSERTF(build_longopts(app, longopts, 128) == 0, "too many program options");
    struct loom_config config;
    loom_config_init(&config);
    if (app->defaults)
        app->defaults(&config);
    opterr = 0;
    optind = 1;
    for (;;) {
        int prev = optind;
        int id = getopt_long(argc, argv, "", longopts, NULL);
        if (id == -1)
            break;
        if (id == '?' || id == ':') {
            const char *bad = prev < argc ? argv[prev] : "?";
            if (optopt == 0 || id == '?') {
                for (size_t i = 0; longopts[i].name; i++) {
                    size_t len = strlen(longopts[i].name);
                    if (strncmp(bad + 2, longopts[i].name, len) == 0 &&
                        longopts[i].has_arg == required_argument && bad[2 + len] == '\0')
                        return usage_error(prog, "option '%s' needs a value", bad);
                }
                return usage_error(prog, "unknown option '%s'", bad);
            }
            return usage_error(prog, "option '%s' needs a value", bad);
        }
        if (id == OPT_HELP) {
            print_help(app, prog);
            return 0;
        }
        int rc;
        if (id >= OPT_APP) {
            const struct loom_option *o = &app->options[id - OPT_APP];
            rc = o->parse ? o->parse(optarg, o->ctx) : 0;
        } else {
            rc = apply_standard(id, optarg, &config);
        }
        if (rc < 0)
            return usage_error(prog, "invalid value for --%s: '%s'", option_name(id, app),
                               optarg ? optarg : "");
    }
    if (optind < argc)
        return usage_error(prog, "unexpected argument '%s'", argv[optind]);
    char error[512];
    unsigned cpus[LOOM_CORES_MAX];
    if (resolve_cpus(&config, cpus, error, sizeof(error)) < 0) {
        fprintf(stderr, "%s: %s\n", prog, error);
        return EXIT_USAGE;
    }
    return loom_run(&config, app->main, app->arg);
}

int loom_main(int argc, char **argv, loom_fiber_fn fn, void *arg)
{
    struct loom_app app = {.name = NULL, .main = fn, .arg = arg};
    return loom_app_main(&app, argc, argv);
}
