/* SPDX-License-Identifier: MIT
 * conn10k_test.c - 10,000 concurrent connections to examples/echo_server, held by a client in
 * a second process (one process may hold 20,000 fds here), and the server's user-space memory
 * per idle connection: its resident set grows by at most 512 bytes per connection between
 * 1,000 and 11,000 idle connections (after a warm-up that has touched the receive buffers).
 * Every connection proves it is live with one echoed message before it idles; afterwards the
 * server still echoes and shuts down cleanly on SIGTERM.
 * LOOM_TEST_TAGS: no-valgrind timeout=180
 */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define BASE_CONNS 1000
#define MEASURED   10000
#define MSG        64

static int port;

static long rss_bytes(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    long kb = -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    CHECK_GT(kb, 0);
    return kb * 1024;
}

static int connect_one(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int tries = 0; connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0; tries++) {
        if (tries > 100) {
            int e = errno;
            close(fd);
            return -e;
        }
        usleep(10000);
    }
    return fd;
}

/* One message there and back: the connection is served. */
static int ping(int fd, unsigned seed)
{
    char out[MSG], in[MSG];
    for (int i = 0; i < MSG; i++)
        out[i] = (char)(seed + (unsigned)i);
    if (write(fd, out, MSG) != MSG)
        return -1;
    size_t got = 0;
    while (got < MSG) {
        ssize_t n = read(fd, in + got, MSG - got);
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    return memcmp(in, out, MSG) == 0 ? 0 : -1;
}

/* The client process: opens `count` connections, pings each, reports, waits, closes. */
static int client(int count, int report_fd, int go_fd)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    int *fds = malloc(sizeof(int) * (size_t)count);
    for (int i = 0; i < count; i++) {
        fds[i] = connect_one();
        if (fds[i] < 0) {
            fprintf(stderr, "client: connection %d: %s\n", i, strerror(-fds[i]));
            return 1;
        }
        if (ping(fds[i], (unsigned)i) < 0) {
            fprintf(stderr, "client: connection %d: no echo\n", i);
            return 1;
        }
    }
    char c = 'R';
    if (write(report_fd, &c, 1) != 1)
        return 1;
    if (read(go_fd, &c, 1) != 1) /* wait until the parent has measured */
        return 1;
    for (int i = 0; i < count; i += 997) /* still served after idling */
        if (ping(fds[i], 3) < 0)
            return 1;
    for (int i = 0; i < count; i++)
        close(fds[i]);
    free(fds);
    return 0;
}

struct client_proc {
    pid_t pid;
    int ready_fd, go_fd;
};

static struct client_proc client_start(int count)
{
    int ready[2], go[2];
    CHECK_EQ(pipe(ready), 0);
    CHECK_EQ(pipe(go), 0);
    pid_t pid = fork();
    CHECK_GE(pid, 0);
    if (pid == 0) {
        close(ready[0]);
        close(go[1]);
        _exit(client(count, ready[1], go[0]));
    }
    close(ready[1]);
    close(go[0]);
    char c;
    CHECK_EQ(read(ready[0], &c, 1), 1); /* every connection open and served */
    return (struct client_proc){.pid = pid, .ready_fd = ready[0], .go_fd = go[1]};
}

static void client_finish(struct client_proc *cp)
{
    char c = 'G';
    CHECK_EQ(write(cp->go_fd, &c, 1), 1);
    int status;
    CHECK_EQ(waitpid(cp->pid, &status, 0), cp->pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(cp->ready_fd);
    close(cp->go_fd);
}

int main(void)
{
    alarm(170);
    char server[512];
    snprintf(server, sizeof(server), "%s/../examples/echo_server", test_self_dir());
    if (access(server, X_OK) != 0)
        test_skip("examples/echo_server is not built");
    /* a free port */
    int probe = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof(a);
    CHECK_EQ(bind(probe, (struct sockaddr *)&a, sizeof(a)), 0);
    CHECK_EQ(getsockname(probe, (struct sockaddr *)&a, &alen), 0);
    port = ntohs(a.sin_port);
    close(probe);

    char port_s[16];
    snprintf(port_s, sizeof(port_s), "%d", port);
    int out[2];
    CHECK_EQ(pipe(out), 0);
    pid_t srv = fork();
    CHECK_GE(srv, 0);
    if (srv == 0) {
        dup2(out[1], 1);
        close(out[0]);
        execl(server, server, "--smp", "1", "--poll-us", "0", "--memory", "256M", "--port", port_s,
              (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    char line[256] = {0};
    ssize_t n = read(out[0], line, sizeof(line) - 1); /* "echo_server: listening on ..." */
    CHECK_GT(n, 0);
    CHECK_CONTAINS(line, "listening");
    printf("  %s", line);

    bool measure = !test_under_asan() && !test_under_tsan();
    int scale_base = measure ? BASE_CONNS : 100;
    int scale_more = measure ? MEASURED : (int)test_scale(MEASURED);

    /* warm-up: one connection echoes enough messages to cycle through every receive buffer */
    int w = connect_one();
    CHECK_GE(w, 0);
    for (int i = 0; i < 5000; i++)
        CHECK_EQ(ping(w, (unsigned)i), 0);
    close(w);

    struct client_proc base = client_start(scale_base);
    usleep(200 * 1000);
    long rss0 = rss_bytes(srv);
    struct client_proc more = client_start(scale_more);
    usleep(200 * 1000);
    long rss1 = rss_bytes(srv);
    double per_conn = (double)(rss1 - rss0) / scale_more;
    printf("  server resident memory: %ld KiB with %d connections, %ld KiB with %d: %.0f bytes "
           "per idle connection\n",
           rss0 / 1024, scale_base, rss1 / 1024, scale_base + scale_more, per_conn);
    if (measure)
        CHECK_LE(per_conn, 512.0);
    client_finish(&more);
    client_finish(&base);

    /* still serving, then a clean stop */
    int f = connect_one();
    CHECK_GE(f, 0);
    CHECK_EQ(ping(f, 9), 0);
    close(f);
    CHECK_EQ(kill(srv, SIGTERM), 0);
    int status;
    CHECK_EQ(waitpid(srv, &status, 0), srv);
    CHECK(WIFEXITED(status));
    CHECK_EQ(WEXITSTATUS(status), 0);
    close(out[0]);
    return 0;
}
