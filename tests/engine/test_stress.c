/*
 * test_stress.c - eight threads on one database mixing every operation,
 * every answer checked (engine/db.c, btree.c and the pool underneath;
 * engine/README.md section 6).  Labelled "concurrency": it also runs under
 * the thread sanitizer (configure with -DDKV_SANITIZE=thread).
 *
 * The pool is small (128 pages of 4 KiB) against several MiB of data, so
 * pages are evicted and the page cleaner writes all the time.  Each
 * thread owns a range of 1500 keys ("t<thread>-<n>") and keeps an exact
 * model of them: its puts (values of 0..400 bytes, one in 40 of 5..20 KiB
 * on overflow pages), deletes, gets, and scans of its own range (exactly
 * its model's keys and values, in order: nobody else writes there, while
 * the others split and merge the leaves around it).  Shared groups of 8
 * keys are written only by batches, all 8 keys with one version (the
 * batch also writes one key of the thread's own range); any thread reads
 * a group with dkv_multi_get and must see all 8 absent or all 8 with one
 * version, never part of a batch.  Scans of the whole tree check strict
 * order.  Thread 0 also checkpoints now and then, thread 1 syncs.  At the
 * end the database is closed, reopened, and every model compared again.
 *
 * DKV_TEST_SEED=N replays the choices (not the interleaving);
 * DKV_TEST_SCALE=x scales the operations (default 1: 8 x 5000; the
 * sanitizer builds run a quarter unless told).
 */
#include "dkv.h"
#include "test_util.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define STRESS_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define STRESS_SANITIZED 1
#endif
#endif
#ifndef STRESS_SANITIZED
#define STRESS_SANITIZED 0
#endif

#define THREADS     8u
#define OWN_KEYS    1500u
#define GROUPS      48u
#define GROUP_KEYS  8u
#define OPS_BASE    5000u
#define VAL_SMALL   400u
#define VAL_LONG    (20u << 10)
#define SCAN_MAX    3000u

static uint64_t g_seed;

struct shared {
    dkv_db  *db;
    unsigned ops;                       /* per thread                       */
    int      errors;                    /* atomic                           */
    uint64_t counts[8];                 /* atomic: see count_names         */
};

static const char *const count_names[8] = {
    "puts", "deletes", "gets", "batches", "group reads", "own scans",
    "full scans", "checkpoints+syncs"
};
enum { C_PUT, C_DEL, C_GET, C_BATCH, C_GROUP, C_OWN_SCAN, C_FULL_SCAN, C_CKPT };

struct worker {
    struct shared *sh;
    unsigned       t;
    uint64_t       rng;
    uint32_t       version[OWN_KEYS];   /* 0: absent                        */
    uint32_t       next_version;
    unsigned char *buf;                 /* VAL_LONG + 64                    */
    unsigned char *want;
};

static void error(struct shared *sh, const char *what, unsigned t, int rc)
{
    fprintf(stderr, "thread %u: %s (rc %d: %s)\n", t, what, rc, dkv_strerror(rc));
    __atomic_add_fetch(&sh->errors, 1, __ATOMIC_RELAXED);
}

static void count(struct shared *sh, int which)
{
    __atomic_add_fetch(&sh->counts[which], 1, __ATOMIC_RELAXED);
}

static size_t own_key(char *k, unsigned t, unsigned i)
{
    return (size_t)sprintf(k, "t%u-%05u", t, i);
}

static size_t group_key(char *k, unsigned g, unsigned i)
{
    return (size_t)sprintf(k, "g%03u-%u", g, i);
}

/* The value of own key i at version v: its length depends on both; the
   first 8 bytes say (thread, key, version) - the rest is patterned. */
static size_t own_value(unsigned char *out, unsigned t, unsigned i, uint32_t v)
{
    uint64_t h = ((uint64_t)t << 48) ^ ((uint64_t)i << 24) ^ v;
    uint64_t x = h * 0x9E3779B97F4A7C15ull;
    size_t len = (x >> 32) % 40 == 0 ? 5000 + (size_t)(x % (VAL_LONG - 5000))
                                     : (size_t)(x % VAL_SMALL);

    test_fill(out, len, g_seed ^ h);
    return len;
}

static int key_cmp(const void *a, size_t al, const void *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);

    return c != 0 ? c : (al > bl) - (al < bl);
}

/* ---- operations -------------------------------------------------------------------- */

static void do_put(struct worker *w, unsigned i)
{
    char k[32];
    uint32_t v = ++w->next_version;
    size_t vl = own_value(w->buf, w->t, i, v);
    int rc = dkv_put(w->sh->db, k, own_key(k, w->t, i), w->buf, vl);

    if (rc != DKV_OK)
        error(w->sh, "put", w->t, rc);
    else
        w->version[i] = v;
    count(w->sh, C_PUT);
}

static void do_delete(struct worker *w, unsigned i)
{
    char k[32];
    int rc = dkv_delete(w->sh->db, k, own_key(k, w->t, i));

    if (rc != (w->version[i] ? DKV_OK : DKV_NOTFOUND))
        error(w->sh, "delete", w->t, rc);
    w->version[i] = 0;
    count(w->sh, C_DEL);
}

/* Checks own key i as read (rc, bytes, length) against the model. */
static void check_own(struct worker *w, unsigned i, int rc, const void *val, size_t vl,
                      const char *what)
{
    size_t wl;

    if (w->version[i] == 0) {
        if (rc != DKV_NOTFOUND)
            error(w->sh, what, w->t, rc == DKV_OK ? -100 : rc);
        return;
    }
    wl = own_value(w->want, w->t, i, w->version[i]);
    if (rc != DKV_OK || vl != wl || memcmp(val, w->want, wl) != 0) {
        fprintf(stderr, "thread %u: key %u: %zu bytes, expected %zu\n", w->t, i, vl, wl);
        error(w->sh, what, w->t, rc == DKV_OK ? -101 : rc);
    }
}

static void do_get(struct worker *w, unsigned i)
{
    char k[32];
    size_t vl = 0;
    int rc = dkv_get(w->sh->db, k, own_key(k, w->t, i), w->buf, VAL_LONG + 64, &vl);

    check_own(w, i, rc, w->buf, vl, "get");
    count(w->sh, C_GET);
}

/* A batch: a group's 8 keys with one version, and one own key. */
static void do_batch(struct worker *w, dkv_batch *b)
{
    unsigned g = (unsigned)(test_splitmix64(&w->rng) % GROUPS), i;
    unsigned own = (unsigned)(test_splitmix64(&w->rng) % OWN_KEYS);
    uint64_t gv = ((uint64_t)w->t << 32) | ++w->next_version;
    uint32_t ov = ++w->next_version;
    int del = test_splitmix64(&w->rng) % 4 == 0, rc = DKV_OK;
    size_t ol = own_value(w->buf, w->t, own, ov);
    unsigned char v[64];
    char k[32];

    del |= ol > VAL_SMALL;              /* a long value would not fit a batch */
    dkv_batch_clear(b);
    for (i = 0; i < GROUP_KEYS && rc == DKV_OK; i++) {
        size_t vl = 8 + (size_t)(gv % 50);
        memset(v, (int)g, sizeof(v));
        memcpy(v, &gv, 8);
        rc = dkv_batch_put(b, k, group_key(k, g, i), v, vl);
    }
    if (rc == DKV_OK && del)
        rc = dkv_batch_delete(b, k, own_key(k, w->t, own));
    else if (rc == DKV_OK)
        rc = dkv_batch_put(b, k, own_key(k, w->t, own), w->buf, ol);
    if (rc != DKV_OK) {
        error(w->sh, "batch_put", w->t, rc);
        return;
    }
    rc = dkv_write(w->sh->db, b);
    if (rc != DKV_OK) {
        error(w->sh, "write", w->t, rc);
        return;
    }
    w->version[own] = del ? 0 : ov;
    count(w->sh, C_BATCH);
}

/* All 8 keys of a group, in one multi_get: one version or none. */
static int check_group(struct shared *sh, unsigned t, unsigned g)
{
    char keys[GROUP_KEYS][32], vals[GROUP_KEYS][64];
    const void *kp[GROUP_KEYS];
    void *vp[GROUP_KEYS];
    size_t kl[GROUP_KEYS], caps[GROUP_KEYS], vl[GROUP_KEYS];
    int rcs[GROUP_KEYS], rc;
    unsigned i;

    for (i = 0; i < GROUP_KEYS; i++) {
        kl[i] = group_key(keys[i], g, i);
        kp[i] = keys[i];
        vp[i] = vals[i];
        caps[i] = sizeof(vals[i]);
    }
    rc = dkv_multi_get(sh->db, GROUP_KEYS, kp, kl, vp, caps, vl, rcs);
    if (rc != DKV_OK) {
        error(sh, "multi_get", t, rc);
        return -1;
    }
    for (i = 1; i < GROUP_KEYS; i++) {
        if (rcs[i] != rcs[0] || (rcs[0] == DKV_OK &&
                                 (vl[i] != vl[0] || memcmp(vals[i], vals[0], 8) != 0))) {
            fprintf(stderr, "thread %u: group %u: half a batch at key %u\n", t, g, i);
            error(sh, "group read", t, rcs[i]);
            return -1;
        }
    }
    if (rcs[0] != DKV_OK && rcs[0] != DKV_NOTFOUND) {
        error(sh, "group read", t, rcs[0]);
        return -1;
    }
    return 0;
}

/* The thread's own range, from key `from`: exactly the model, in order. */
static void do_own_scan(struct worker *w, unsigned from)
{
    char k[32], end[32];
    size_t klen, endlen = (size_t)sprintf(end, "t%u.", w->t);   /* '.' follows '-' */
    dkv_iter *it;
    unsigned i = from, steps = 0;
    int ended = 0, rc = dkv_iter_new(w->sh->db, &it);

    if (rc != DKV_OK) {
        error(w->sh, "iter_new", w->t, rc);
        return;
    }
    rc = dkv_iter_seek(it, k, own_key(k, w->t, from));
    while (rc == DKV_OK && steps++ < 200) {
        size_t vl;
        const void *key = dkv_iter_key(it, &klen);
        const void *val = dkv_iter_value(it, &vl);
        if (!dkv_iter_valid(it) || key_cmp(key, klen, end, endlen) >= 0) {
            ended = 1;                  /* past the range: nothing may be left */
            break;
        }
        while (i < OWN_KEYS && w->version[i] == 0)
            i++;
        if (i == OWN_KEYS || klen != own_key(k, w->t, i) || memcmp(key, k, klen) != 0) {
            fprintf(stderr, "thread %u: own scan: %.*s where key %u was due\n", w->t,
                    (int)klen, (const char *)key, i);
            error(w->sh, "own scan", w->t, -102);
            break;
        }
        check_own(w, i, DKV_OK, val, vl, "own scan value");
        i++;
        rc = dkv_iter_next(it);
    }
    if (rc != DKV_OK)
        error(w->sh, "own scan", w->t, rc);
    if (ended) {
        while (i < OWN_KEYS && w->version[i] == 0)
            i++;
        if (i != OWN_KEYS) {
            fprintf(stderr, "thread %u: own scan ended before key %u\n", w->t, i);
            error(w->sh, "own scan end", w->t, -103);
        }
    }
    dkv_iter_free(it);
    count(w->sh, C_OWN_SCAN);
}

/* Any part of the tree, in strict order. */
static void do_full_scan(struct worker *w)
{
    unsigned char prev[64];
    size_t prev_len = 0;
    unsigned steps = 0;
    dkv_iter *it;
    int rc = dkv_iter_new(w->sh->db, &it);

    if (rc != DKV_OK) {
        error(w->sh, "iter_new", w->t, rc);
        return;
    }
    rc = dkv_iter_seek(it, NULL, 0);
    while (rc == DKV_OK && dkv_iter_valid(it) && steps++ < SCAN_MAX) {
        size_t kl;
        const void *key = dkv_iter_key(it, &kl);
        if (prev_len > 0 && key_cmp(prev, prev_len, key, kl) >= 0) {
            error(w->sh, "full scan out of order", w->t, -104);
            break;
        }
        if (kl > sizeof(prev)) {
            error(w->sh, "full scan: a key too long", w->t, -105);
            break;
        }
        memcpy(prev, key, kl);
        prev_len = kl;
        rc = dkv_iter_next(it);
    }
    if (rc != DKV_OK)
        error(w->sh, "full scan", w->t, rc);
    dkv_iter_free(it);
    count(w->sh, C_FULL_SCAN);
}

static void *work(void *arg)
{
    struct worker *w = arg;
    dkv_batch *b = dkv_batch_new();
    unsigned n;

    if (b == NULL) {
        error(w->sh, "batch_new", w->t, DKV_ERR_NOMEM);
        return NULL;
    }
    for (n = 0; n < w->sh->ops; n++) {
        unsigned r = (unsigned)(test_splitmix64(&w->rng) % 1000);
        unsigned i = (unsigned)(test_splitmix64(&w->rng) % OWN_KEYS);
        if (r < 380)
            do_put(w, i);
        else if (r < 480)
            do_delete(w, i);
        else if (r < 700)
            do_get(w, i);
        else if (r < 800)
            do_batch(w, b);
        else if (r < 930) {
            check_group(w->sh, w->t, (unsigned)(test_splitmix64(&w->rng) % GROUPS));
            count(w->sh, C_GROUP);
        } else if (r < 975)
            do_own_scan(w, i);
        else if (r < 985)
            do_full_scan(w);
        else if (w->t == 0 && r < 990) {
            int rc = dkv_checkpoint(w->sh->db);
            if (rc != DKV_OK)
                error(w->sh, "checkpoint", w->t, rc);
            count(w->sh, C_CKPT);
        } else if (w->t == 1 && r < 990) {
            int rc = dkv_sync(w->sh->db);
            if (rc != DKV_OK)
                error(w->sh, "sync", w->t, rc);
            count(w->sh, C_CKPT);
        } else {
            do_get(w, i);
        }
    }
    dkv_batch_free(b);
    return NULL;
}

/* ---- the test ---------------------------------------------------------------------- */

static double env_scale(void)
{
    const char *s = getenv("DKV_TEST_SCALE");

    if (s != NULL && *s != '\0')
        return strtod(s, NULL);
    return STRESS_SANITIZED ? 0.25 : 1.0;
}

static void test_stress(void **state)
{
    struct test_dir dir;
    struct shared sh = { 0 };
    struct worker *w = calloc(THREADS, sizeof(*w));
    pthread_t th[THREADS];
    dkv_options o;
    dkv_stats st;
    uint64_t total = 0;
    unsigned t, i, g;

    (void)state;
    assert_non_null(w);
    assert_int_equal(test_dir_make(&dir, "/tmp"), 0);
    dkv_options_init(&o);
    o.page_size = 4096;
    o.pool_size = 128 * 4096;
    o.commit_mode = DKV_COMMIT_ASYNC;
    o.commit_interval_ms = 20;
    assert_rc(dkv_open(dir.path, &o, &sh.db), DKV_OK);
    sh.ops = (unsigned)(OPS_BASE * env_scale());
    sh.ops = sh.ops ? sh.ops : 1;
    for (t = 0; t < THREADS; t++) {
        w[t].sh = &sh;
        w[t].t = t;
        w[t].rng = g_seed ^ ((uint64_t)(t + 1) * 0x9E3779B97F4A7C15ull);
        w[t].buf = malloc(VAL_LONG + 64);
        w[t].want = malloc(VAL_LONG + 64);
        assert_non_null(w[t].buf);
        assert_non_null(w[t].want);
    }
    for (t = 0; t < THREADS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, work, &w[t]), 0);
    for (t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    assert_rc(dkv_stats_get(sh.db, &st), DKV_OK);
    for (i = 0; i < 8; i++) {
        printf("  %-18s %llu\n", count_names[i], (unsigned long long)sh.counts[i]);
        total += sh.counts[i];
    }
    printf("stress: %u threads, %llu operations, %d errors; pool of %llu pages: "
           "%llu evictions, %llu pages written, %llu checkpoints\n", THREADS,
           (unsigned long long)total, sh.errors, (unsigned long long)st.pool_pages,
           (unsigned long long)st.evictions, (unsigned long long)st.pages_written,
           (unsigned long long)st.checkpoints);
    assert_int_equal(sh.errors, 0);
    assert_true(st.evictions > 0);                /* the small pool did its job */

    /* closed, reopened: every model as it was */
    assert_rc(dkv_close(sh.db), DKV_OK);
    assert_rc(dkv_open(dir.path, &o, &sh.db), DKV_OK);
    for (t = 0; t < THREADS; t++)
        for (i = 0; i < OWN_KEYS; i++) {
            char k[32];
            size_t vl = 0;
            int rc = dkv_get(sh.db, k, own_key(k, t, i), w[t].buf, VAL_LONG + 64, &vl);
            check_own(&w[t], i, rc, w[t].buf, vl, "get after reopen");
        }
    for (t = 0; t < THREADS; t++)        /* whole ranges, 200 keys at a time */
        for (i = 0; i < OWN_KEYS; i += 150)
            do_own_scan(&w[t], i);
    for (g = 0; g < GROUPS; g++)
        check_group(&sh, 99, g);
    assert_int_equal(sh.errors, 0);
    assert_rc(dkv_close(sh.db), DKV_OK);
    for (t = 0; t < THREADS; t++) {
        free(w[t].buf);
        free(w[t].want);
    }
    free(w);
    test_dir_remove(&dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stress),
    };

    g_seed = test_seed("test_stress");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
