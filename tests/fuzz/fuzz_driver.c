/*
 * fuzz_driver.c - what the fuzz harnesses share around their entry point.
 *
 * LLVMFuzzerInitialize: with DKV_FUZZ_SEEDS=dir in the environment, writes
 * the harness's seed corpus into dir (seed-000, seed-001, ...) before
 * libFuzzer reads its corpus directories, so that a run is one command:
 *
 *   DKV_FUZZ_SEEDS=corpus ./fuzz_files corpus -max_total_time=60
 *
 * With DKV_FUZZ_REPLAY defined (the gcc build of the normal suite) this
 * file also has main(): it runs the inputs named on the command line
 * (files, or directories of them: a saved crash, a corpus); without
 * arguments it runs every seed, then DKV_FUZZ_MUTATIONS (default 40)
 * mutations of each - a few bytes changed from fuzz_mutate_from on,
 * chosen by a seed that is printed (DKV_TEST_SEED=N replays it);
 * DKV_FUZZ_SAVE=file keeps the input of the run in progress there (to
 * replay a failure: fuzz_files_replay file).
 */
#include "fuzz_driver.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct seed_dir {
    const char *dir;
    unsigned    n;
    int         failed;
};

static void write_seed(void *arg, const unsigned char *img, size_t size)
{
    struct seed_dir *sd = arg;
    char path[1024];
    FILE *f;

    snprintf(path, sizeof(path), "%s/seed-%03u", sd->dir, sd->n++);
    f = fopen(path, "wb");
    if (f == NULL || fwrite(img, 1, size, f) != size)
        sd->failed = 1;
    if (f != NULL && fclose(f) != 0)
        sd->failed = 1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *dir = getenv("DKV_FUZZ_SEEDS");
    struct seed_dir sd = { dir, 0, 0 };

    (void)argc;
    (void)argv;
    if (dir == NULL || *dir == '\0')
        return 0;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        perror(dir);
        exit(1);
    }
    if (fuzz_make_seeds(write_seed, &sd) < 0 || sd.failed) {
        fprintf(stderr, "cannot write the seed corpus into %s\n", dir);
        exit(1);
    }
    fprintf(stderr, "wrote %u seeds into %s\n", sd.n, dir);
    return 0;
}

#ifdef DKV_FUZZ_REPLAY

struct replay {
    uint64_t    rng;
    unsigned    mutations;
    unsigned    seeds, runs;
    const char *save;                 /* DKV_FUZZ_SAVE: where each input goes */
};

/* Writes the input about to run to the file DKV_FUZZ_SAVE names (and says
   which it is), so that the input of a failing run is at hand. */
static void save_input(struct replay *rp, const unsigned char *buf, size_t size,
                       unsigned seed, unsigned mutation)
{
    FILE *f = fopen(rp->save, "wb");

    if (f != NULL) {
        fwrite(buf, 1, size, f);
        fclose(f);
    }
    fprintf(stderr, "running seed %u mutation %u\n", seed, mutation);
}

static uint64_t next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);

    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Changes a few bytes of buf[from, size): mostly bytes that are not zero
   (structure, not the empty tail of a page), now and then a 16- or
   32-bit field set to an edge value. */
static void mutate(uint64_t *rng, unsigned char *buf, size_t size, size_t from)
{
    static const uint32_t edges[] = { 0, 1, 0x7f, 0x80, 0xff, 0x100, 0xfff, 0x1000,
                                      0x7fff, 0xffff, 0x10000, 0x7fffffff,
                                      0xffffffff };
    unsigned n = 1 + (unsigned)(next(rng) % 6), k, t;

    if (size <= from + 4)
        return;
    for (k = 0; k < n; k++) {
        size_t at = from + next(rng) % (size - from - 4);
        for (t = 0; t < 16 && buf[at] == 0; t++)
            at = from + next(rng) % (size - from - 4);
        switch (next(rng) % 4) {
        case 0:
            buf[at] ^= (unsigned char)(1u << (next(rng) % 8));
            break;
        case 1:
            buf[at] = (unsigned char)next(rng);
            break;
        case 2: {
            uint32_t e = edges[next(rng) % (sizeof(edges) / sizeof(edges[0]))];
            memcpy(buf + at, &e, 2);
            break;
        }
        default: {
            uint32_t e = edges[next(rng) % (sizeof(edges) / sizeof(edges[0]))];
            memcpy(buf + at, &e, 4);
            break;
        }
        }
    }
}

static void run_seed(void *arg, const unsigned char *img, size_t size)
{
    struct replay *rp = arg;
    unsigned char *copy = malloc(size);
    unsigned m;

    if (copy == NULL)
        abort();
    if (rp->save != NULL)
        save_input(rp, img, size, rp->seeds, 0);
    LLVMFuzzerTestOneInput(img, size);
    rp->seeds++;
    rp->runs++;
    for (m = 0; m < rp->mutations; m++) {
        memcpy(copy, img, size);
        mutate(&rp->rng, copy, size, fuzz_mutate_from);
        if (rp->save != NULL)
            save_input(rp, copy, size, rp->seeds - 1, m + 1);
        LLVMFuzzerTestOneInput(copy, size);
        rp->runs++;
    }
    free(copy);
}

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    long len;

    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 ||
        fseek(f, 0, SEEK_SET) != 0 || (buf = malloc((size_t)len + 1)) == NULL ||
        fread(buf, 1, (size_t)len, f) != (size_t)len) {
        perror(path);
        if (f != NULL)
            fclose(f);
        free(buf);
        return -1;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(buf, (size_t)len);
    free(buf);
    return 0;
}

static int run_path(const char *path, unsigned *runs)
{
    struct stat st;
    struct dirent *de;
    DIR *d;
    int rc = 0;

    if (stat(path, &st) != 0) {
        perror(path);
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        (*runs)++;
        return run_file(path);
    }
    d = opendir(path);
    while (d != NULL && (de = readdir(d)) != NULL && rc == 0) {
        char p[4096];
        if (de->d_name[0] == '.')
            continue;
        snprintf(p, sizeof(p), "%s/%s", path, de->d_name);
        (*runs)++;
        rc = run_file(p);
    }
    if (d != NULL)
        closedir(d);
    return rc;
}

int main(int argc, char **argv)
{
    struct replay rp = { 0 };
    const char *env;
    int i;

    LLVMFuzzerInitialize(&argc, &argv);
    if (argc > 1) {
        unsigned runs = 0;
        for (i = 1; i < argc; i++)
            if (run_path(argv[i], &runs) != 0)
                return 1;
        printf("%s: %u inputs, no failure\n", argv[0], runs);
        return 0;
    }
    env = getenv("DKV_TEST_SEED");
    if (env != NULL && *env != '\0') {
        rp.rng = strtoull(env, NULL, 0);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        rp.rng = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid();
    }
    printf("%s: seed %" PRIu64 " (replay with DKV_TEST_SEED=%" PRIu64 ")\n", argv[0],
           rp.rng, rp.rng);
    fflush(stdout);
    rp.save = getenv("DKV_FUZZ_SAVE");
    env = getenv("DKV_FUZZ_MUTATIONS");
    rp.mutations = env != NULL && *env != '\0' ? (unsigned)strtoul(env, NULL, 0) : 40;
    if (fuzz_make_seeds(run_seed, &rp) < 0) {
        fprintf(stderr, "%s: cannot make the seeds\n", argv[0]);
        return 1;
    }
    printf("%s: %u seeds, %u runs (%u mutations each), no failure\n", argv[0],
           rp.seeds, rp.runs, rp.mutations);
    return 0;
}

#endif /* DKV_FUZZ_REPLAY */
