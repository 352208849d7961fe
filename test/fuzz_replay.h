/* SPDX-License-Identifier: MIT
 * fuzz_replay.h - replays a libFuzzer corpus without libFuzzer, so every make test runs it.
 *
 * A *_fuzz.c file includes this under #ifdef TURBINE_FUZZ_REPLAY and calls fuzz_replay_main()
 * from main(): each regular file of the corpus directory (or of the paths given as arguments)
 * goes once through LLVMFuzzerTestOneInput(). A crash or a failed assertion in the target is
 * the failure; otherwise the program exits 0 (77 when the corpus is missing or empty).
 */
#ifndef TURBINE_FUZZ_REPLAY_H
#define TURBINE_FUZZ_REPLAY_H

#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Runs the file at `path` through the target; returns 1 if it was a regular file, else 0. */
static inline int fuzz_replay_file(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return 0;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "fuzz_replay: cannot open %s\n", path);
        exit(1);
    }
    /* An exact-size heap copy, so ASan sees a read past the input as the overflow it is. */
    size_t size = (size_t)st.st_size;
    uint8_t *data = malloc(size ? size : 1);
    if (data == NULL || fread(data, 1, size, f) != size) {
        fprintf(stderr, "fuzz_replay: cannot read %s\n", path);
        exit(1);
    }
    fclose(f);
    LLVMFuzzerTestOneInput(data, size);
    free(data);
    return 1;
}

static inline int fuzz_replay_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return fuzz_replay_file(dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        n += fuzz_replay_file(path);
    }
    closedir(d);
    return n;
}

/* Replays argv[1..] (files or directories), or `default_corpus` without arguments. */
static inline int fuzz_replay_main(int argc, char **argv, const char *default_corpus)
{
    int n = 0;
    if (argc > 1) {
        for (int i = 1; i < argc; i++)
            n += fuzz_replay_dir(argv[i]);
    } else {
        n = fuzz_replay_dir(default_corpus);
    }
    printf("fuzz_replay: %d inputs replayed\n", n);
    if (n == 0) {
        fprintf(stderr, "SKIP: no corpus at %s\n", argc > 1 ? argv[1] : default_corpus);
        return 77;
    }
    return 0;
}

#endif
