/* SPDX-License-Identifier: MIT
 * install_test.c - make install into a private DESTDIR (never the real system), then a program
 * built against the installed headers and libraries through the installed turbine.pc encodes
 * and validates a batch with libturbine and reads loom's clock.
 *
 * The install runs with INSTALL_NO_BUILD=1: it only copies the build/release artifacts (make test
 * builds release before asan and tsan, and runs the tests after every build), so a run of this test
 * in any mode never starts a build in the tree. Skips when make, pkg-config or a C compiler is
 * missing, or when the release artifacts are not built.
 *
 * pkg-config and DESTDIR: turbine.pc says prefix=/usr (what PREFIX asked for), so its -I/-L
 * point at /usr. PKG_CONFIG_SYSROOT_DIR=<tmp> prefixes them with the DESTDIR, which is exactly
 * what a staged install needs. The libraries' dependencies (liburing, hwloc, ISA-L, inih,
 * http_parser) are plain -l flags in Libs.private and come from the system.
 * (--define-variable=prefix would also rewrite the system packages' prefix.) -lloom links
 * libloom.so when it is installed, so the program runs with LD_LIBRARY_PATH=<tmp>/usr/lib.
 *
 * LOOM_TEST_TAGS: no-valgrind timeout=120
 */
#include <limits.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "harness.h"

static char out[65536];

/* Runs `script` with /bin/sh -c; returns its exit status (the output is in `out`). The
 * make variables of an enclosing make (a jobserver's descriptors, MAKELEVEL) are dropped. */
static int sh(const char *script)
{
    char *argv[] = {
        "/usr/bin/env",  "-u",      "MAKEFLAGS", "-u",           "MFLAGS", "-u", "MAKELEVEL", "-u",
        "MAKEOVERRIDES", "/bin/sh", "-c",        (char *)script, NULL};
    int status = test_spawn(argv, NULL, out, sizeof(out), 60000);
    CHECK(status != -1);
    if (!WIFEXITED(status))
        test_fail_(__FILE__, __LINE__, "'%s' did not exit (status %d):\n%s", script, status, out);
    return WEXITSTATUS(status);
}

static void run_ok(const char *script)
{
    int code = sh(script);
    if (code != 0)
        test_fail_(__FILE__, __LINE__, "'%s' exited %d:\n%s", script, code, out);
}

static void check_file(const char *dir, const char *path)
{
    char full[PATH_MAX];
    snprintf(full, sizeof(full), "%s%s", dir, path);
    struct stat st;
    if (stat(full, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size == 0)
        test_fail_(__FILE__, __LINE__, "not installed: %s", full);
}

static const char program[] =
    "#include <stdio.h>\n"
    "#include <loom/clock.h>\n"
    "#include <turbine/batch.h>\n"
    "int main(void)\n"
    "{\n"
    "    unsigned char buf[256];\n"
    "    struct turbine_batch_params params = {.producer_id = -1, .producer_epoch = -1,\n"
    "                                          .base_sequence = -1};\n"
    "    struct turbine_record_in record = {.timestamp = 1700000000000, .key = \"k\",\n"
    "                                       .key_size = 1, .value = \"hello\", .value_size = 5};\n"
    "    int64_t size = turbine_batch_encode(buf, sizeof(buf), &params, &record, 1);\n"
    "    struct turbine_batch_info info;\n"
    "    enum turbine_batch_status st = turbine_batch_validate(buf, (size_t)size, &info);\n"
    "    int64_t t = loom_clock_ns();\n"
    "    printf(\"encoded %lld bytes, status %d, records %d, clock %s\\n\", (long long)size,\n"
    "           (int)st, (int)info.records, t > 0 ? \"ok\" : \"bad\");\n"
    "    return st == TURBINE_BATCH_OK && (size_t)size == info.size ? 0 : 1;\n"
    "}\n";

int main(void)
{
    if (sh("command -v make && command -v pkg-config && command -v cc") != 0)
        test_skip("make, pkg-config or cc is not installed");

    char root[PATH_MAX], tmp[] = "/tmp/turbine-install-XXXXXX", script[4 * PATH_MAX];
    snprintf(script, sizeof(script), "%s/../../..", test_self_dir());
    CHECK(realpath(script, root) != NULL);
    snprintf(script, sizeof(script), "%s/Makefile", root);
    CHECK(access(script, R_OK) == 0);
    snprintf(script, sizeof(script),
             "cd '%s' && test -f build/release/turbine && "
             "test -f build/release/libloom.a && "
             "test -f build/release/libturbine.a",
             root);
    if (sh(script) != 0)
        test_skip("the release build is missing (make MODE=release)");
    CHECK(mkdtemp(tmp) != NULL);

    /* DESTDIR is never empty here: the files go under tmp only. */
    snprintf(script, sizeof(script),
             "make -s -C '%s' install INSTALL_NO_BUILD=1 DESTDIR='%s' PREFIX=/usr", root, tmp);
    run_ok(script);

    const char *files[] = {"/usr/bin/turbine",
                           "/usr/lib/libloom.a",
                           "/usr/lib/libturbine.a",
                           "/usr/include/loom/loom.h",
                           "/usr/include/loom/clock.h",
                           "/usr/include/turbine/batch.h",
                           "/usr/include/turbine/client.h",
                           "/usr/lib/pkgconfig/loom.pc",
                           "/usr/lib/pkgconfig/turbine.pc",
                           "/usr/share/man/man1/turbine.1",
                           "/usr/share/doc/turbine/turbine.service"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        check_file(tmp, files[i]);
    snprintf(script, sizeof(script), "test -x '%s/usr/bin/turbine'", tmp);
    run_ok(script);
    snprintf(script, sizeof(script), "%s/build/release/libloom.so", root);
    if (access(script, R_OK) == 0)
        check_file(tmp, "/usr/lib/libloom.so");

    /* The .pc files carry the PREFIX asked for, not the DESTDIR. */
    snprintf(script, sizeof(script), "cat '%s/usr/lib/pkgconfig/turbine.pc'", tmp);
    run_ok(script);
    CHECK_CONTAINS(out, "prefix=/usr\n");
    CHECK(strstr(out, tmp) == NULL);

    /* The installed turbine runs. */
    snprintf(script, sizeof(script), "'%s/usr/bin/turbine' --help", tmp);
    run_ok(script);
    CHECK_CONTAINS(out, "broker");

    /* A program built against the staged install through pkg-config. */
    snprintf(script, sizeof(script), "%s/prog.c", tmp);
    FILE *f = fopen(script, "w");
    CHECK(f != NULL);
    CHECK_EQ(fwrite(program, 1, sizeof(program) - 1, f), sizeof(program) - 1);
    CHECK_EQ(fclose(f), 0);
    snprintf(script, sizeof(script),
             "cd '%s' && flags=$(PKG_CONFIG_SYSROOT_DIR='%s' "
             "PKG_CONFIG_PATH='%s/usr/lib/pkgconfig' pkg-config --cflags --libs --static turbine) "
             "&& echo \"flags: $flags\" && cc -std=c17 -Wall -Wextra -Werror -o prog prog.c $flags "
             "&& LD_LIBRARY_PATH='%s/usr/lib' ./prog",
             tmp, tmp, tmp, tmp);
    run_ok(script);
    CHECK_CONTAINS(out, "-I");
    CHECK_CONTAINS(out, "/usr/include");
    CHECK_CONTAINS(out, "status 0, records 1, clock ok");

    /* The man page renders (when man is installed), else it is at least roff. */
    if (sh("command -v man") == 0) {
        snprintf(script, sizeof(script),
                 "MANPAGER=cat MANWIDTH=80 man -l '%s/usr/share/man/man1/turbine.1' 2>&1", tmp);
        run_ok(script);
        CHECK_CONTAINS(out, "SYNOPSIS");
        CHECK_CONTAINS(out, "TURBINE_BROKER");
    } else {
        snprintf(script, sizeof(script), "head -n 20 '%s/usr/share/man/man1/turbine.1'", tmp);
        run_ok(script);
        CHECK_CONTAINS(out, ".TH TURBINE 1");
    }

    snprintf(script, sizeof(script), "rm -rf '%s'", tmp);
    run_ok(script);
    printf("install_test: ok\n");
    return 0;
}
