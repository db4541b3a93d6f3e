/* replay.c: the main of a fuzz harness built without libFuzzer (gcc, the
 * Release and ASan builds): runs LLVMFuzzerTestOneInput once over every
 * file named on the command line or found (sorted) in a directory named
 * there, so each harness's seed corpus and its regression inputs are a
 * ctest case. A missing directory is skipped (a harness may have no
 * regression inputs yet); no input at all is a failure.
 *
 * Deliberately not here: mutation, coverage (scripts/fuzz.sh runs the same
 * harnesses under libFuzzer). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz-util.h"

/* Runs the harness on one file; returns 1 when it ran, 0 when skipped. */
static int replay_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: cannot open %s: %s\n", path, strerror(errno));
        exit(1);
    }
    size_t cap = 4096, n = 0, got;
    uint8_t *buf = malloc(cap);
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    if (!buf) {
        fprintf(stderr, "replay: out of memory reading %s\n", path);
        exit(1);
    }
    /* an exact-size copy, so ASan sees a read one past the input */
    uint8_t *in = malloc(n ? n : 1);
    if (!in) exit(1);
    memcpy(in, buf, n);
    free(buf);
    fprintf(stderr, "replay: %s (%zu bytes)\n", path, n);
    LLVMFuzzerTestOneInput(in, n);
    free(in);
    return 1;
}

static int name_cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int replay_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) names = realloc(names, (cap = cap ? 2 * cap : 64) * sizeof *names);
        if (!names || !(names[n++] = strdup(e->d_name))) exit(1);
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, name_cmp);
    int ran = 0;
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        struct stat sb;
        if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) ran += replay_file(path);
        free(names[i]);
    }
    free(names);
    return ran;
}

int main(int argc, char **argv) {
    int ran = 0;
    for (int i = 1; i < argc; i++) {
        struct stat sb;
        if (stat(argv[i], &sb) != 0) continue;
        ran += S_ISDIR(sb.st_mode) ? replay_dir(argv[i]) : replay_file(argv[i]);
    }
    if (ran == 0) {
        fprintf(stderr, "replay: no input found\n");
        return 1;
    }
    printf("replayed %d inputs without a crash or a failed invariant\n", ran);
    return 0;
}
