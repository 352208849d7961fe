/* SPDX-License-Identifier: MIT
 * startup_test.c - when io_uring cannot be used at all, start-up fails cleanly: exit status 1
 * and one clear line naming the likely cause. A child installs a seccomp filter that makes
 * io_uring_setup fail (EPERM as a container profile or kernel.io_uring_disabled would, or
 * ENOSYS as a kernel without io_uring), then calls loom_run(); the machine's settings are
 * never touched.
 */
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "harness.h"
#include "loom/loom.h"

static int never_runs(void *arg)
{
    (void)arg;
    printf("main fiber ran\n");
    return 0;
}

/* Makes io_uring_setup(2) fail with `err` for this process. */
static void deny_io_uring(int err)
{
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)err & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof(filter) / sizeof(filter[0]), .filter = filter};
    CHECK_EQ(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
    CHECK_EQ(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog), 0);
}

static void expect_failure(const char *self, const char *err, const char *const *needles)
{
    char out[8192];
    char *argv[] = {(char *)self, "child", (char *)err, NULL};
    int status = test_spawn(argv, NULL, out, sizeof(out), 20000);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 1)
        test_fail_(__FILE__, __LINE__, "io_uring denied with %s: status %d, want exit 1:\n%s", err,
                   status, out);
    CHECK(strstr(out, "main fiber ran") == NULL);
    for (size_t i = 0; needles[i]; i++)
        CHECK_CONTAINS(out, needles[i]);
}

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[1], "child") == 0) {
        deny_io_uring(strcmp(argv[2], "ENOSYS") == 0 ? ENOSYS : EPERM);
        return test_run(1, never_runs, NULL);
    }
    if (test_under_valgrind())
        test_skip("valgrind does not follow seccomp filters into io_uring_setup");
    static const char *const eperm[] = {"io_uring_setup",           "not permitted",
                                        "kernel.io_uring_disabled", "seccomp",
                                        "could not start",          NULL};
    expect_failure(argv[0], "EPERM", eperm);
    static const char *const enosys[] = {"io_uring_setup", "no io_uring", "6.1", "could not start",
                                         NULL};
    expect_failure(argv[0], "ENOSYS", enosys);
    return 0;
}
