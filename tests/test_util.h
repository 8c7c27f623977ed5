/*
 * test_util.h - small helpers shared by the cmocka tests: a seeded random
 * generator whose seed is printed and can be replayed (DKV_TEST_SEED), a
 * temporary directory made with mkdtemp and removed afterwards, patterned
 * data that depends on a key (an offset mixed with the seed), and an
 * assertion on DKV_* return codes that names them.
 *
 * Include it after <cmocka.h>.
 */
#ifndef DKV_TEST_UTIL_H
#define DKV_TEST_UTIL_H

#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dkv.h"

/* Fails the test unless got == want, naming both return codes. */
#define assert_rc(got, want) do {                                          \
        long long got_ = (long long)(got), want_ = (long long)(want);      \
        if (got_ != want_)                                                 \
            fail_msg("%s = %lld (%s), expected %lld (%s)", #got, got_,     \
                     dkv_strerror((int)got_), want_,                       \
                     dkv_strerror((int)want_));                            \
    } while (0)

/* ---- random numbers ------------------------------------------------------ */

static inline uint64_t test_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);

    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The run's seed: DKV_TEST_SEED when set, else from the clock.  Printed so
   that a failing run can be replayed. */
static inline uint64_t test_seed(const char *prog)
{
    const char *env = getenv("DKV_TEST_SEED");
    uint64_t seed;

    if (env != NULL && *env != '\0') {
        seed = strtoull(env, NULL, 0);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^
               ((uint64_t)getpid() << 40);
    }
    printf("%s: seed %" PRIu64 " (replay with DKV_TEST_SEED=%" PRIu64 ")\n",
           prog, seed, seed);
    fflush(stdout);
    return seed;
}

/* Fills buf with bytes that depend only on key. */
static inline void test_fill(void *buf, size_t len, uint64_t key)
{
    unsigned char *p = buf;
    uint64_t state = key;
    size_t i;

    for (i = 0; i < len; i += 8) {
        uint64_t v = test_splitmix64(&state);
        memcpy(p + i, &v, len - i < 8 ? len - i : 8);
    }
}

/* Offset of the first byte where buf differs from test_fill(key), or
   (size_t)-1 when it is all as expected. */
static inline size_t test_mismatch(const void *buf, size_t len, uint64_t key)
{
    const unsigned char *p = buf;
    uint64_t state = key;
    size_t i, j;

    for (i = 0; i < len; i += 8) {
        uint64_t v = test_splitmix64(&state);
        unsigned char want[8];
        memcpy(want, &v, 8);
        for (j = 0; j < 8 && i + j < len; j++)
            if (p[i + j] != want[j])
                return i + j;
    }
    return (size_t)-1;
}

/* ---- a temporary directory --------------------------------------------- */

struct test_dir {
    char path[128];
};

/* Makes a fresh directory under parent; 0 or -1. */
static inline int test_dir_make(struct test_dir *dir, const char *parent)
{
    snprintf(dir->path, sizeof(dir->path), "%s/dkv-test-XXXXXX", parent);
    if (mkdtemp(dir->path) == NULL) {
        perror(dir->path);
        dir->path[0] = '\0';
        return -1;
    }
    return 0;
}

static inline void test_dir_file(const struct test_dir *dir, const char *name,
                                 char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", dir->path, name);
}

/* Removes the files in the directory (it holds no subdirectories) and the
   directory itself. */
static inline void test_dir_remove(struct test_dir *dir)
{
    char path[512];
    struct dirent *de;
    DIR *d;

    if (dir->path[0] == '\0')
        return;
    d = opendir(dir->path);
    while (d != NULL && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        test_dir_file(dir, de->d_name, path, sizeof(path));
        unlink(path);
    }
    if (d != NULL)
        closedir(d);
    rmdir(dir->path);
    dir->path[0] = '\0';
}

/* ---- a full disk, simulated ------------------------------------------------ */

/* Caps the size any file of this process may grow to (RLIMIT_FSIZE), so
   that writes and fallocate past it fail with EFBIG, as on a full disk;
   SIGXFSZ is ignored meanwhile.  Undo with test_unlimit_file_size. */
struct test_fsize {
    struct rlimit old;
    void        (*old_handler)(int);
};

static inline int test_limit_file_size(struct test_fsize *saved, uint64_t bytes)
{
    struct rlimit lim;

    if (getrlimit(RLIMIT_FSIZE, &saved->old) != 0)
        return -1;
    saved->old_handler = signal(SIGXFSZ, SIG_IGN);
    lim = saved->old;
    lim.rlim_cur = (rlim_t)bytes;
    return setrlimit(RLIMIT_FSIZE, &lim);
}

static inline void test_unlimit_file_size(struct test_fsize *saved)
{
    setrlimit(RLIMIT_FSIZE, &saved->old);
    signal(SIGXFSZ, saved->old_handler);
}

#endif /* DKV_TEST_UTIL_H */
