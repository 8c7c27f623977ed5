/*
 * test_btree.c - the B+tree (engine/btree.c) over a real page store.
 *
 * Each test gets a fresh store (mkdtemp under /tmp) with 4 KiB pages, so
 * that a few thousand keys make a tree three or four levels high, and
 * btree_redo as the store's apply function.  The tests: random puts,
 * replacements and deletes against a model, every answer checked and the
 * whole tree walked by btree_check (order, separators, levels, leaf
 * chain); keys of every length up to 1024 bytes with values up to the
 * inline limit, splitting inner nodes whose separators are long; a crash
 * (store_abandon: nothing more reaches the data file) after thousands of
 * durable puts, then recovery redoes the node operations and every key is
 * there; the same with the pool much smaller than the tree; four threads
 * putting and getting at once (labelled for ThreadSanitizer); and bad
 * arguments refused with nothing changed.  The seed is printed;
 * DKV_TEST_SEED=N replays a run.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dkv.h"
#include "engine/btree.h"
#include "engine/engine.h"
#include "pager/pager.h"
#include "test_util.h"

#define PS 4096u

static uint64_t g_seed;

struct fx {
    struct test_dir     dir;
    struct store_config cfg;
    struct store       *s;
    struct btree       *bt;
    struct wal_recovery rec;
};

static int fx_setup(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));

    if (fx == NULL || test_dir_make(&fx->dir, "/tmp") != 0)
        return -1;
    fx->cfg.pool_size = 512u * PS;
    fx->cfg.page_size = PS;
    fx->cfg.io_engine = DKV_IO_AUTO;
    fx->cfg.direct = 1;
    fx->cfg.commit_mode = DKV_COMMIT_ASYNC;       /* speed; crashes sync first */
    fx->cfg.create = 1;
    fx->cfg.log_capacity = 64u << 20;
    fx->cfg.apply = btree_redo;
    *state = fx;
    return 0;
}

static void fx_open(struct fx *fx)
{
    int rc = store_open(fx->dir.path, &fx->cfg, &fx->s, &fx->rec);

    if (rc == DKV_ERR_CORRUPT) {
        struct pager_corruption c = pager_last_corruption();
        print_message("corrupt: page %llu: %s (%s:%d)\n",
                      (unsigned long long)c.page_no, c.what, c.file, c.line);
    }
    assert_rc(rc, DKV_OK);
    assert_rc(btree_open(fx->s, &fx->bt), DKV_OK);
}

static void fx_crash(struct fx *fx)
{
    assert_rc(wal_sync(store_wal(fx->s)), DKV_OK);
    btree_close(fx->bt);
    store_abandon(fx->s);
    fx->bt = NULL;
    fx->s = NULL;
}

static int fx_teardown(void **state)
{
    struct fx *fx = *state;

    btree_close(fx->bt);
    if (fx->s)
        store_close(fx->s);
    test_dir_remove(&fx->dir);
    free(fx);
    return 0;
}

/* Key i: a prefix shared by many keys, then i, then padding to a length
   that depends on i (so keys of many lengths mix). */
static size_t make_key(uint64_t i, unsigned char *key, size_t maxlen)
{
    size_t len = (size_t)snprintf((char *)key, maxlen, "user:%08llu:",
                                  (unsigned long long)(i * 2654435761u % 100000000u));
    size_t want = 14 + (i * 7) % 40;

    for (; len < want && len < maxlen; len++)
        key[len] = (unsigned char)('a' + (i + len) % 26);
    return len;
}

static size_t value_len(uint64_t i, unsigned version)
{
    return (i * 31 + version * 17) % 200;
}

static void put_i(struct fx *fx, uint64_t i, unsigned version)
{
    unsigned char key[64], val[256];
    size_t klen = make_key(i, key, sizeof(key)), vlen = value_len(i, version);

    test_fill(val, vlen, g_seed ^ i ^ ((uint64_t)version << 40));
    assert_rc(btree_put(fx->bt, NULL, key, klen, val, vlen), DKV_OK);
}

static void expect_i(struct fx *fx, uint64_t i, unsigned version)
{
    unsigned char key[64], val[256];
    size_t klen = make_key(i, key, sizeof(key)), vlen = 0;
    int rc = btree_get(fx->bt, key, klen, val, sizeof(val), &vlen);

    if (version == 0) {
        assert_rc(rc, DKV_NOTFOUND);
        return;
    }
    assert_rc(rc, DKV_OK);
    assert_int_equal(vlen, value_len(i, version));
    if (test_mismatch(val, vlen, g_seed ^ i ^ ((uint64_t)version << 40)) != (size_t)-1)
        fail_msg("key %llu: value differs from version %u", (unsigned long long)i,
                 version);
}

static void check_tree(struct fx *fx, uint64_t want_keys, unsigned min_height)
{
    uint64_t keys;
    unsigned height;

    assert_rc(btree_check(fx->bt, &keys, &height), DKV_OK);
    print_message("tree: %llu keys, height %u\n", (unsigned long long)keys, height);
    assert_int_equal(keys, want_keys);
    assert_true(height >= min_height);
}

/* ---- tests ---------------------------------------------------------------------------------- */

#define N_KEYS 6000u

static void test_random_against_model(void **state)
{
    struct fx *fx = *state;
    unsigned *ver = calloc(N_KEYS, sizeof(*ver));
    uint64_t rng = g_seed, present = 0, step;

    fx_open(fx);
    for (step = 0; step < 4 * N_KEYS; step++) {
        uint64_t i = test_splitmix64(&rng) % N_KEYS;
        unsigned op = (unsigned)(test_splitmix64(&rng) % 10);
        if (op < 7) {
            put_i(fx, i, ver[i] + 1);
            present += ver[i] == 0;
            ver[i]++;
        } else if (op < 9) {
            unsigned char key[64];
            size_t klen = make_key(i, key, sizeof(key));
            assert_rc(btree_delete(fx->bt, NULL, key, klen), ver[i] ? DKV_OK : DKV_NOTFOUND);
            present -= ver[i] != 0;
            ver[i] = 0;
        } else {
            expect_i(fx, i, ver[i]);
        }
    }
    for (step = 0; step < N_KEYS; step++)
        expect_i(fx, step, ver[step]);
    /* Two levels at least: with suffix-truncated separators a root holds
       ~200 children, so after the deletes a few thousand keys may fit in
       two levels (some seeds end at height 2). */
    check_tree(fx, present, 2);
    free(ver);
}

/* Durable puts, a crash with nothing flushed, recovery: every key back. */
static void crash_run(struct fx *fx, size_t pool_pages)
{
    unsigned *ver = calloc(N_KEYS, sizeof(*ver));
    uint64_t i, present = 0;

    fx->cfg.pool_size = pool_pages * PS;
    fx_open(fx);
    for (i = 0; i < N_KEYS; i++) {
        put_i(fx, i, 1);
        ver[i] = 1;
    }
    for (i = 0; i < N_KEYS; i += 3) {                 /* some replaced */
        put_i(fx, i, 2);
        ver[i] = 2;
    }
    for (i = 1; i < N_KEYS; i += 7) {                 /* some deleted */
        unsigned char key[64];
        size_t klen = make_key(i, key, sizeof(key));
        assert_rc(btree_delete(fx->bt, NULL, key, klen), DKV_OK);
        ver[i] = 0;
    }
    for (i = 0; i < N_KEYS; i++) {                   /* before the crash */
        expect_i(fx, i, ver[i]);
        present += ver[i] != 0;
    }
    check_tree(fx, present, 3);
    present = 0;
    fx_crash(fx);
    fx_open(fx);
    print_message("recovery: %llu MTRs, %llu records redone\n",
                  (unsigned long long)fx->rec.mtrs, (unsigned long long)fx->rec.records);
    assert_true(fx->rec.mtrs > 1000);
    for (i = 0; i < N_KEYS; i++) {
        expect_i(fx, i, ver[i]);
        present += ver[i] != 0;
    }
    check_tree(fx, present, 3);
    free(ver);
}

static void test_crash_recovers_every_key(void **state)
{
    crash_run(*state, 512);
}

static void test_crash_with_small_pool(void **state)
{
    crash_run(*state, 48);          /* the tree is ~10x the pool */
}

/* Keys of every length from 2 to 1024 bytes (two bytes make them
   distinct) and the longest inline values:
   inner nodes split with long separators. */
static void test_long_keys_and_values(void **state)
{
    struct fx *fx = *state;
    unsigned char *key = malloc(1024), *val = malloc(PS), *got = malloc(PS);
    uint64_t rng = g_seed ^ 77;
    unsigned i, n = 600;

    fx_open(fx);
    for (i = 0; i < n; i++) {
        size_t klen = 2 + test_splitmix64(&rng) % 1023;
        size_t vlen;
        /* A long common prefix and distinct last bytes: separators stay
           long even when cut to the shortest prefix that separates. */
        memset(key, 'k', klen);
        key[klen - 2] = (unsigned char)i;             /* distinct keys */
        key[klen - 1] = (unsigned char)(i >> 8);
        vlen = btree_max_value(fx->bt, klen);
        assert_true(vlen > 0);
        test_fill(val, vlen, i * 3);
        /* One byte more goes to an overflow page; back inline, the page
           goes to the purge list. */
        assert_rc(btree_put(fx->bt, NULL, key, klen, val, vlen + 1), DKV_OK);
        assert_int_equal(btree_value_pages(fx->bt, klen, vlen + 1), 1);
        assert_rc(btree_put(fx->bt, NULL, key, klen, val, vlen), DKV_OK);
    }
    assert_true(btree_purge_pending(fx->bt));
    assert_rc(btree_purge(fx->bt), DKV_OK);
    assert_false(btree_purge_pending(fx->bt));
    rng = g_seed ^ 77;
    for (i = 0; i < n; i++) {
        size_t klen = 2 + test_splitmix64(&rng) % 1023, vlen = 0;
        memset(key, 'k', klen);
        key[klen - 2] = (unsigned char)i;
        key[klen - 1] = (unsigned char)(i >> 8);
        assert_rc(btree_get(fx->bt, key, klen, got, PS, &vlen), DKV_OK);
        assert_int_equal(vlen, btree_max_value(fx->bt, klen));
        assert_int_equal(test_mismatch(got, vlen, i * 3), (size_t)-1);
    }
    {
        uint64_t keys;
        unsigned height;
        assert_rc(btree_check(fx->bt, &keys, &height), DKV_OK);
        print_message("long keys: %llu keys, height %u\n", (unsigned long long)keys,
                      height);
        assert_true(height >= 3);
    }
    free(key);
    free(val);
    free(got);
}

static void test_bad_arguments(void **state)
{
    struct fx *fx = *state;
    unsigned char big[1025], buf[8];
    size_t vlen;

    fx_open(fx);
    memset(big, 'k', sizeof(big));
    put_i(fx, 1, 1);
    assert_rc(btree_put(fx->bt, NULL, "", 0, "v", 1), DKV_ERR_INVALID);
    assert_rc(btree_put(fx->bt, NULL, NULL, 3, "v", 1), DKV_ERR_INVALID);
    assert_rc(btree_put(fx->bt, NULL, big, sizeof(big), "v", 1), DKV_ERR_INVALID);
    assert_rc(btree_put(fx->bt, NULL, "k", 1, NULL, 5), DKV_ERR_INVALID);
    assert_rc(btree_get(fx->bt, big, sizeof(big), buf, sizeof(buf), &vlen),
              DKV_ERR_INVALID);
    assert_rc(btree_get(fx->bt, "k", 1, NULL, 4, &vlen), DKV_ERR_INVALID);
    assert_rc(btree_delete(fx->bt, NULL, "", 0), DKV_ERR_INVALID);
    assert_rc(btree_get(fx->bt, "k", 1, buf, sizeof(buf), &vlen), DKV_NOTFOUND);
    expect_i(fx, 1, 1);
    check_tree(fx, 1, 1);
}

/* Four threads put disjoint keys and read each other's at once. */
struct worker {
    struct fx *fx;
    unsigned   id;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    unsigned i;

    for (i = 0; i < 1500; i++) {
        uint64_t k = (uint64_t)i * 4 + w->id;
        unsigned char key[64], val[256];
        size_t klen = make_key(k, key, sizeof(key)), vlen = value_len(k, 1);
        test_fill(val, vlen, g_seed ^ k ^ (1ull << 40));
        if (btree_put(w->fx->bt, NULL, key, klen, val, vlen) != DKV_OK)
            return (void *)1;
        if (i > 0) {                              /* a key another thread put */
            uint64_t o = (uint64_t)(i - 1) * 4 + (w->id + 1) % 4;
            size_t olen = make_key(o, key, sizeof(key)), got;
            int rc = btree_get(w->fx->bt, key, olen, val, sizeof(val), &got);
            if (rc != DKV_OK && rc != DKV_NOTFOUND)
                return (void *)2;
        }
    }
    return NULL;
}

static void test_threads(void **state)
{
    struct fx *fx = *state;
    struct worker w[4];
    pthread_t t[4];
    unsigned i;

    fx_open(fx);
    for (i = 0; i < 4; i++) {
        w[i].fx = fx;
        w[i].id = i;
        assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    }
    for (i = 0; i < 4; i++) {
        void *r;
        pthread_join(t[i], &r);
        assert_null(r);
    }
    for (i = 0; i < 6000; i++)
        expect_i(fx, i, 1);
    check_tree(fx, 6000, 3);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, fx_setup, fx_teardown)
    const struct CMUnitTest tests[] = {
        T(test_random_against_model),
        T(test_crash_recovers_every_key),
        T(test_crash_with_small_pool),
        T(test_long_keys_and_values),
        T(test_bad_arguments),
        T(test_threads),
    };

    g_seed = test_seed("test_btree");
    return cmocka_run_group_tests_name("btree", tests, NULL, NULL);
}
