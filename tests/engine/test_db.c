/*
 * test_db.c - the dkv_* API from several threads at once, and the limits
 * and misuse a caller can reach (engine/db.c; engine/README.md sections
 * 6 and 8).
 *
 * test_threads: writers put single keys and apply batches while readers
 * get, multi_get and scan.  A batch writes the same version into all the
 * keys of its group, so a reader that sees two versions in one group saw
 * half a batch (dkv_multi_get is one lookup of the group); a scan checks
 * that keys come in strict order and that every key of the fixed set
 * (never written during the run) is seen exactly once.  Labelled
 * "concurrency": it also runs under the thread sanitizer.
 */
#include "dkv.h"
#include "engine/btree.h"
#include "test_util.h"

#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

static uint64_t g_seed;

struct fx {
    struct test_dir dir;
    dkv_options     o;
    dkv_db         *db;
};

static int setup(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));

    assert_non_null(fx);
    assert_int_equal(test_dir_make(&fx->dir, "/tmp"), 0);
    dkv_options_init(&fx->o);
    fx->o.page_size = 4096;
    fx->o.pool_size = 4u << 20;
    fx->o.commit_mode = DKV_COMMIT_ASYNC;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fx *fx = *state;

    if (fx->db)
        dkv_close(fx->db);
    test_dir_remove(&fx->dir);
    free(fx);
    return 0;
}

static void fx_open(struct fx *fx)
{
    assert_rc(dkv_open(fx->dir.path, &fx->o, &fx->db), DKV_OK);
}

/* ---- threads ------------------------------------------------------------------- */

#define GROUPS      64
#define GROUP_KEYS  8
#define FIXED_KEYS  3000
#define RUN_OPS     4000

struct shared {
    dkv_db *db;
    int     errors;
    uint64_t batches, gets, scans;
};

static size_t group_key(char *k, unsigned g, unsigned i)
{
    return (size_t)sprintf(k, "g%03u-%u", g, i);
}

static size_t fixed_key(char *k, unsigned i)
{
    return (size_t)sprintf(k, "f%06u", i);
}

static void *writer(void *arg)
{
    struct shared *sh = arg;
    dkv_batch *b = dkv_batch_new();
    uint64_t rng = g_seed ^ (uintptr_t)&b;
    unsigned n;

    for (n = 0; n < RUN_OPS / 4 && b != NULL; n++) {
        unsigned g = (unsigned)(test_splitmix64(&rng) % GROUPS), i;
        uint64_t version = test_splitmix64(&rng);
        char k[32], v[200];
        size_t vlen = 8 + test_splitmix64(&rng) % 150;
        memset(v, 'v', vlen);
        memcpy(v, &version, 8);
        dkv_batch_clear(b);
        for (i = 0; i < GROUP_KEYS; i++)
            if (dkv_batch_put(b, k, group_key(k, g, i), v, vlen) != DKV_OK)
                __atomic_add_fetch(&sh->errors, 1, __ATOMIC_RELAXED);
        if (dkv_write(sh->db, b) != DKV_OK)
            __atomic_add_fetch(&sh->errors, 1, __ATOMIC_RELAXED);
        __atomic_add_fetch(&sh->batches, 1, __ATOMIC_RELAXED);
        /* single puts of other keys in between: leaves split and merge */
        for (i = 0; i < 3; i++) {
            size_t kl = (size_t)sprintf(k, "s%05u", (unsigned)(test_splitmix64(&rng) % 5000));
            int rc = (test_splitmix64(&rng) & 1) ? dkv_put(sh->db, k, kl, v, vlen)
                                                 : dkv_delete(sh->db, k, kl);
            if (rc < 0)
                __atomic_add_fetch(&sh->errors, 1, __ATOMIC_RELAXED);
        }
    }
    dkv_batch_free(b);
    return NULL;
}

static void *group_reader(void *arg)
{
    struct shared *sh = arg;
    uint64_t rng = g_seed ^ 0x5151;
    char keys[GROUP_KEYS][32], vals[GROUP_KEYS][200];
    const void *kp[GROUP_KEYS];
    void *vp[GROUP_KEYS];
    size_t kl[GROUP_KEYS], caps[GROUP_KEYS], vl[GROUP_KEYS];
    int rcs[GROUP_KEYS];
    unsigned n, i;

    for (n = 0; n < RUN_OPS; n++) {
        unsigned g = (unsigned)(test_splitmix64(&rng) % GROUPS);
        uint64_t first = 0;
        for (i = 0; i < GROUP_KEYS; i++) {
            kl[i] = group_key(keys[i], g, i);
            kp[i] = keys[i];
            vp[i] = vals[i];
            caps[i] = sizeof(vals[i]);
        }
        if (dkv_multi_get(sh->db, GROUP_KEYS, kp, kl, vp, caps, vl, rcs) != DKV_OK) {
            __atomic_add_fetch(&sh->errors, 1, __ATOMIC_RELAXED);
            continue;
        }
        for (i = 0; i < GROUP_KEYS; i++) {
            uint64_t v = 0;
            if (rcs[i] != rcs[0])
                break;                          /* some present, some not */
            if (rcs[i] == DKV_OK)
                memcpy(&v, vals[i], 8);
            if (i == 0)
                first = v;
            else if (v != first)
                break;
        }
        if (i != GROUP_KEYS) {
            fprintf(stderr, "group %u: half a batch seen at key %u\n", g, i);
            __atomic_add_fetch(&sh->errors, 1, __ATOMIC_RELAXED);
        }
        __atomic_add_fetch(&sh->gets, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void *scanner(void *arg)
{
    struct shared *sh = arg;
    unsigned n;

    for (n = 0; n < 6; n++) {
        dkv_iter *it;
        char prev[64];
        size_t prev_len = 0;
        unsigned fixed_seen = 0;
        if (dkv_iter_new(sh->db, &it) != DKV_OK) {
            __atomic_add_fetch(&sh->errors, 1, __ATOMIC_RELAXED);
            return NULL;
        }
        for (dkv_iter_seek(it, NULL, 0); dkv_iter_valid(it); dkv_iter_next(it)) {
            size_t klen, vlen, m;
            const char *k = dkv_iter_key(it, &klen);
            dkv_iter_value(it, &vlen);
            m = klen < prev_len ? klen : prev_len;
            if (prev_len > 0 && (memcmp(prev, k, m) > 0 ||
                                 (memcmp(prev, k, m) == 0 && prev_len >= klen))) {
                fprintf(stderr, "scan: keys out of order\n");
                __atomic_add_fetch(&sh->errors, 1, __ATOMIC_RELAXED);
                break;
            }
            if (klen < sizeof(prev)) {
                memcpy(prev, k, klen);
                prev_len = klen;
            }
            if (k[0] == 'f') {
                char want[32];
                size_t wl = fixed_key(want, fixed_seen);
                if (wl != klen || memcmp(want, k, klen) != 0) {
                    fprintf(stderr, "scan: fixed key %u missing or repeated\n", fixed_seen);
                    __atomic_add_fetch(&sh->errors, 1, __ATOMIC_RELAXED);
                    break;
                }
                fixed_seen++;
            }
        }
        if (fixed_seen != FIXED_KEYS) {
            fprintf(stderr, "scan: %u of %u fixed keys\n", fixed_seen, FIXED_KEYS);
            __atomic_add_fetch(&sh->errors, 1, __ATOMIC_RELAXED);
        }
        dkv_iter_free(it);
        __atomic_add_fetch(&sh->scans, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void test_threads(void **state)
{
    struct fx *fx = *state;
    struct shared sh = { 0 };
    pthread_t t[5];
    unsigned i;

    fx_open(fx);
    sh.db = fx->db;
    for (i = 0; i < FIXED_KEYS; i++) {
        char k[32], v[64];
        memset(v, 'x', sizeof(v));
        assert_rc(dkv_put(fx->db, k, fixed_key(k, i), v, 10 + i % 50), DKV_OK);
    }
    assert_int_equal(pthread_create(&t[0], NULL, writer, &sh), 0);
    assert_int_equal(pthread_create(&t[1], NULL, writer, &sh), 0);
    assert_int_equal(pthread_create(&t[2], NULL, group_reader, &sh), 0);
    assert_int_equal(pthread_create(&t[3], NULL, group_reader, &sh), 0);
    assert_int_equal(pthread_create(&t[4], NULL, scanner, &sh), 0);
    for (i = 0; i < 5; i++)
        pthread_join(t[i], NULL);
    printf("threads: %llu batches, %llu group reads, %llu scans, %d errors\n",
           (unsigned long long)sh.batches, (unsigned long long)sh.gets,
           (unsigned long long)sh.scans, sh.errors);
    assert_int_equal(sh.errors, 0);
    assert_rc(dkv_close(fx->db), DKV_OK);
    fx->db = NULL;
}

/* ---- lookups while leaves split and merge ---------------------------------------------- */

/* Lookups take no latch when the pages are in the pool (pager P11): they
   read bytes a writer may be changing and keep them only if the page's
   version did not move.  Writers here split and merge leaves all the
   time; every value names its key and its own fill pattern, so a lookup
   that kept a torn page, a page another key's leaf replaced, or the wrong
   leaf after a split returns a value that fails the check, and the fixed
   keys (never written during the run) must always be found. */

#define SPLIT_KEYS 4000
#define SPLIT_FIXED 2000          /* fixed keys sit between the others       */
#define SPLIT_OPS  6000           /* writes per writer, at least             */
#define SPLIT_GETS 40000          /* lookups per reader                      */

struct split_shared {
    dkv_db  *db;
    int      errors;
    int      readers_done;
    uint64_t gets;
};

static size_t split_fixed_key(char *k, unsigned i)
{
    return (size_t)sprintf(k, "k%05uf", i * (SPLIT_KEYS / SPLIT_FIXED));
}

static size_t split_value(unsigned char *v, const char *k, size_t kl, uint64_t version,
                          size_t len)
{
    size_t i;

    memcpy(v, &version, 8);
    memcpy(v + 8, k, kl);
    for (i = 8 + kl; i < len; i++)
        v[i] = (unsigned char)(version + i);
    return len;
}

static int split_value_ok(const unsigned char *v, size_t vlen, const char *k, size_t kl)
{
    uint64_t version;
    size_t i;

    if (vlen < 8 + kl || memcmp(v + 8, k, kl) != 0)
        return 0;
    memcpy(&version, v, 8);
    for (i = 8 + kl; i < vlen; i++)
        if (v[i] != (unsigned char)(version + i))
            return 0;
    return 1;
}

static void *split_writer(void *arg)
{
    struct split_shared *sh = arg;
    uint64_t rng = g_seed ^ (uintptr_t)&rng;
    unsigned n;

    for (n = 0; n < SPLIT_OPS || __atomic_load_n(&sh->readers_done, __ATOMIC_ACQUIRE) < 2; n++) {
        char k[32];
        unsigned char v[400];
        size_t kl = (size_t)sprintf(k, "k%05u", (unsigned)(test_splitmix64(&rng) % SPLIT_KEYS));
        uint64_t r = test_splitmix64(&rng);
        int rc;
        /* Rounds of mostly puts, then mostly deletes: the leaves split,
           then merge. */
        if (r % 100 < (n % 3000 < 1500 ? 85u : 30u))
            rc = dkv_put(sh->db, k, kl, v, split_value(v, k, kl, r, 20 + r % 350));
        else
            rc = dkv_delete(sh->db, k, kl);
        if (rc < 0)
            __atomic_add_fetch(&sh->errors, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void *split_reader(void *arg)
{
    struct split_shared *sh = arg;
    uint64_t rng = g_seed ^ (uintptr_t)&rng;
    uint64_t gets = 0;

    while (gets < SPLIT_GETS) {
        char k[32];
        unsigned char v[400];
        size_t vlen = 0, kl;
        uint64_t r = test_splitmix64(&rng);
        int fixed = r & 1, rc;

        kl = fixed ? split_fixed_key(k, (unsigned)(r >> 8) % SPLIT_FIXED)
                   : (size_t)sprintf(k, "k%05u", (unsigned)(r >> 8) % SPLIT_KEYS);
        rc = dkv_get(sh->db, k, kl, v, sizeof(v), &vlen);
        if (fixed ? rc != DKV_OK || !split_value_ok(v, vlen, k, kl)
                  : (rc != DKV_OK && rc != DKV_NOTFOUND) ||
                    (rc == DKV_OK && !split_value_ok(v, vlen, k, kl))) {
            fprintf(stderr, "get %.*s: rc %d, %zu bytes: wrong answer\n", (int)kl, k, rc, vlen);
            __atomic_add_fetch(&sh->errors, 1, __ATOMIC_RELAXED);
        }
        gets++;
    }
    __atomic_add_fetch(&sh->gets, gets, __ATOMIC_RELAXED);
    __atomic_add_fetch(&sh->readers_done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* Every other lookup yields the processor between reading a page and
   checking it, so writers change pages under it often. */
static void opt_pause_yield(void)
{
    static _Thread_local unsigned n;

    if (++n & 1)
        sched_yield();
}

static void gets_during_splits(struct fx *fx)
{
    struct split_shared sh = { 0 };
    pthread_t t[4];
    unsigned i;

    fx_open(fx);
    sh.db = fx->db;
    for (i = 0; i < SPLIT_FIXED; i++) {
        char k[32];
        unsigned char v[400];
        size_t kl = split_fixed_key(k, i);
        assert_rc(dkv_put(fx->db, k, kl, v, split_value(v, k, kl, i, 20 + i % 200)), DKV_OK);
    }
    btree_opt_pause = opt_pause_yield;
    assert_int_equal(pthread_create(&t[0], NULL, split_writer, &sh), 0);
    assert_int_equal(pthread_create(&t[1], NULL, split_writer, &sh), 0);
    assert_int_equal(pthread_create(&t[2], NULL, split_reader, &sh), 0);
    assert_int_equal(pthread_create(&t[3], NULL, split_reader, &sh), 0);
    for (i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    btree_opt_pause = NULL;
    printf("gets during splits (pool %zu KiB): %llu gets, %d errors\n",
           fx->o.pool_size >> 10, (unsigned long long)sh.gets, sh.errors);
    assert_int_equal(sh.errors, 0);
    assert_rc(dkv_close(fx->db), DKV_OK);
    fx->db = NULL;
}

/* Everything in the pool: lookups go the optimistic way. */
static void test_gets_during_splits(void **state)
{
    gets_during_splits(*state);
}

/* 48 frames: pages are evicted and frames reused under the lookups. */
static void test_gets_during_splits_small_pool(void **state)
{
    struct fx *fx = *state;

    fx->o.pool_size = 48 * 4096;
    gets_during_splits(fx);
}

/* ---- limits and misuse --------------------------------------------------------------- */

static void test_close_with_iterator(void **state)
{
    struct fx *fx = *state;
    dkv_iter *it;

    fx_open(fx);
    assert_rc(dkv_put(fx->db, "a", 1, "1", 1), DKV_OK);
    assert_rc(dkv_iter_new(fx->db, &it), DKV_OK);
    assert_rc(dkv_iter_seek(it, NULL, 0), DKV_OK);
    assert_rc(dkv_close(fx->db), DKV_ERR_BUSY);        /* nothing closed */
    assert_true(dkv_iter_valid(it));
    dkv_iter_free(it);
    assert_rc(dkv_close(fx->db), DKV_OK);
    fx->db = NULL;
    fx_open(fx);                                        /* and the data stays */
    {
        char v[4];
        size_t vl;
        assert_rc(dkv_get(fx->db, "a", 1, v, sizeof(v), &vl), DKV_OK);
        assert_int_equal(vl, 1);
    }
}

/* A batch or value too large for the pool is refused whole (its pages
   would have to stay in the pool until it ended). */
static void test_too_large_for_pool(void **state)
{
    struct fx *fx = *state;
    dkv_batch *b = dkv_batch_new();
    char *big = calloc(1, 4u << 20), k[32];
    size_t vl;
    unsigned i;

    assert_non_null(b);
    assert_non_null(big);
    fx_open(fx);                                       /* a 4 MiB pool */
    assert_rc(dkv_put(fx->db, "big", 3, big, 4u << 20), DKV_ERR_INVALID);
    assert_rc(dkv_put(fx->db, "big", 3, big, 1u << 20), DKV_OK);   /* a quarter fits */
    for (i = 0; i < 20000; i++)
        assert_rc(dkv_batch_put(b, k, (size_t)sprintf(k, "k%06u", i), big, 100), DKV_OK);
    assert_rc(dkv_write(fx->db, b), DKV_ERR_INVALID);
    assert_rc(dkv_get(fx->db, "k000000", 7, NULL, 0, &vl), DKV_NOTFOUND);
    dkv_batch_clear(b);
    for (i = 0; i < 200; i++)
        assert_rc(dkv_batch_put(b, k, (size_t)sprintf(k, "k%06u", i), big, 100), DKV_OK);
    assert_rc(dkv_write(fx->db, b), DKV_OK);
    assert_rc(dkv_get(fx->db, "k000199", 7, NULL, 0, &vl), DKV_OK);
    assert_int_equal(vl, 100);
    assert_rc(dkv_get(fx->db, "big", 3, NULL, 0, &vl), DKV_OK);
    assert_int_equal(vl, 1u << 20);
    dkv_batch_free(b);
    free(big);
}

static void test_bad_arguments(void **state)
{
    struct fx *fx = *state;
    dkv_options bad = fx->o;
    dkv_batch *b = dkv_batch_new();
    dkv_db *db2 = (dkv_db *)1;
    char key[DKV_KEY_MAX + 1];
    size_t vl;

    memset(key, 'k', sizeof(key));
    bad.page_size = 3000;
    assert_rc(dkv_open(fx->dir.path, &bad, &db2), DKV_ERR_INVALID);
    assert_null(db2);
    bad = fx->o;
    bad.commit_mode = 7;
    assert_rc(dkv_open(fx->dir.path, &bad, &db2), DKV_ERR_INVALID);
    assert_rc(dkv_open(NULL, &fx->o, &db2), DKV_ERR_INVALID);
    fx_open(fx);
    assert_rc(dkv_put(NULL, "k", 1, "v", 1), DKV_ERR_INVALID);
    assert_rc(dkv_put(fx->db, key, DKV_KEY_MAX + 1, "v", 1), DKV_ERR_INVALID);
    assert_rc(dkv_put(fx->db, key, DKV_KEY_MAX, "v", 1), DKV_OK);
    assert_rc(dkv_put(fx->db, "k", 1, NULL, 1), DKV_ERR_INVALID);
    assert_rc(dkv_put(fx->db, "k", 1, "v", (size_t)DKV_VALUE_MAX + 1), DKV_ERR_INVALID);
    assert_rc(dkv_get(fx->db, "k", 1, NULL, 5, &vl), DKV_ERR_INVALID);
    assert_rc(dkv_get(fx->db, "k", 1, NULL, 0, NULL), DKV_ERR_INVALID);
    assert_rc(dkv_delete(fx->db, NULL, 0), DKV_ERR_INVALID);
    assert_rc(dkv_batch_put(b, "", 0, "v", 1), DKV_ERR_INVALID);
    assert_rc(dkv_batch_delete(NULL, "k", 1), DKV_ERR_INVALID);
    assert_rc(dkv_write(fx->db, NULL), DKV_ERR_INVALID);
    assert_rc(dkv_write(fx->db, b), DKV_OK);             /* empty: nothing to do */
    assert_rc(dkv_iter_seek(NULL, NULL, 0), DKV_ERR_INVALID);
    assert_rc(dkv_iter_next(NULL), DKV_ERR_INVALID);
    assert_false(dkv_iter_valid(NULL));
    assert_rc(dkv_multi_get(fx->db, 1, NULL, NULL, NULL, NULL, NULL, NULL), DKV_ERR_INVALID);
    assert_rc(dkv_stats_get(fx->db, NULL), DKV_ERR_INVALID);
    /* the data is still there */
    assert_rc(dkv_get(fx->db, key, DKV_KEY_MAX, NULL, 0, &vl), DKV_OK);
    dkv_batch_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gets_during_splits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gets_during_splits_small_pool, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_with_iterator, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_large_for_pool, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
    };

    g_seed = test_seed("test_db");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
