/*
 * rel_util.h - what the reliability tests (fault_test.c, powerloss_test.c,
 * diskfull_test.c) share: a workload of puts, deletes, batches,
 * checkpoints and reads through the public API, made from a seed so that
 * the checker can replay it, and a model of what a database may hold
 * afterwards.
 *
 * Every value names the operation that wrote it (its index), its key and
 * its length, and its other bytes depend on those and the seed, so a value
 * read back tells which operation it comes from.  The model keeps, for each
 * key, the state left by the last operation that succeeded and the states
 * of the operations after it that failed (or were cut short): a key may
 * show any of these.  A failed operation is all or nothing: when a key
 * shows one of its puts, every key it touched must show its state.
 *
 * Include after test_util.h.
 */
#ifndef DKV_TESTS_REL_UTIL_H
#define DKV_TESTS_REL_UTIL_H

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dkv.h"
#include "test_util.h"

#define REL_KEYS_MAX  128u
#define REL_BATCH_MAX 6u
#define REL_ALT_MAX   64u
#define REL_VHDR      12u                 /* op index + 1, key, length        */
#define REL_VAL_MAX   (12u << 10)

enum rel_kind { REL_PUT, REL_DEL, REL_BATCH, REL_CKPT, REL_GETS };

struct rel_entry {
    uint32_t key;
    uint32_t vlen;                        /* 0: a delete                      */
};

struct rel_op {
    unsigned         kind, n;
    struct rel_entry e[REL_BATCH_MAX];
};

struct rel_work {
    uint64_t       seed;
    unsigned       nkeys, nops;
    struct rel_op *ops;
};

/* ---- keys and values ------------------------------------------------------ */

static inline size_t rel_key(unsigned k, unsigned char *out)
{
    size_t len = (size_t)sprintf((char *)out, "rk%03u", k), want, j;

    want = k % 16 == 5 ? 200 + k % 50 : len + (k * 7) % 30;
    for (j = len; j < want; j++)
        out[j] = (unsigned char)((k + j) % 7 == 0 ? 0 : 'a' + (k * j) % 26);
    return want;
}

static inline uint64_t rel_fill_key(uint64_t seed, unsigned idx, unsigned key)
{
    uint64_t x = seed ^ ((uint64_t)idx << 20) ^ ((uint64_t)key << 48);

    return test_splitmix64(&x);
}

static inline void rel_value(uint64_t seed, unsigned idx, const struct rel_entry *e,
                             unsigned char *v)
{
    uint32_t w[3] = { idx + 1, e->key, e->vlen };

    memcpy(v, w, sizeof(w));
    test_fill(v + REL_VHDR, e->vlen - REL_VHDR, rel_fill_key(seed, idx, e->key));
}

/* The operation a value read for key comes from, or -2 when its bytes are
   not a value this workload wrote for that key. */
static inline int rel_parse(uint64_t seed, unsigned key, const unsigned char *v,
                            size_t vlen)
{
    uint32_t w[3];

    if (vlen < REL_VHDR)
        return -2;
    memcpy(w, v, sizeof(w));
    if (w[0] == 0 || w[1] != key || w[2] != vlen)
        return -2;
    if (test_mismatch(v + REL_VHDR, vlen - REL_VHDR,
                      rel_fill_key(seed, w[0] - 1, key)) != (size_t)-1)
        return -2;
    return (int)w[0] - 1;
}

/* ---- the workload ----------------------------------------------------------- */

static inline uint32_t rel_vlen(uint64_t *rng, unsigned big_pct)
{
    uint64_t r = test_splitmix64(rng);
    unsigned p = (unsigned)(r % 100);

    r >>= 8;
    if (p < big_pct)                      /* overflow pages at 4 KiB          */
        return 5000 + (uint32_t)(r % (REL_VAL_MAX - 5000));
    if (p < big_pct + 10)
        return 1000 + (uint32_t)(r % 2500);
    return REL_VHDR + 4 + (uint32_t)(r % 290);
}

/* nops operations over nkeys keys: puts, deletes, batches of 2..6, and
   every ckpt_every-th a checkpoint (0: none) or a read of every key. */
static inline int rel_work_make(struct rel_work *w, uint64_t seed, unsigned nkeys,
                                unsigned nops, unsigned ckpt_every, unsigned big_pct)
{
    uint64_t rng = seed ^ 0x5eedull;
    unsigned i, j, k;

    w->seed = seed;
    w->nkeys = nkeys < REL_KEYS_MAX ? nkeys : REL_KEYS_MAX;
    w->nops = nops;
    w->ops = calloc(nops, sizeof(*w->ops));
    if (w->ops == NULL)
        return -1;
    for (i = 0; i < nops; i++) {
        struct rel_op *op = &w->ops[i];
        unsigned p = (unsigned)(test_splitmix64(&rng) % 100), big = 0;

        if (ckpt_every && i % ckpt_every == ckpt_every - 1) {
            op->kind = (i / ckpt_every) % 2 ? REL_GETS : REL_CKPT;
            continue;
        }
        op->kind = p < 50 ? REL_PUT : p < 65 ? REL_DEL : REL_BATCH;
        op->n = op->kind == REL_BATCH ? 2 + (unsigned)(test_splitmix64(&rng) %
                                                        (REL_BATCH_MAX - 1)) : 1;
        for (j = 0; j < op->n; j++) {
            struct rel_entry *e = &op->e[j];
            do {
                e->key = (uint32_t)(test_splitmix64(&rng) % w->nkeys);
                for (k = 0; k < j && op->e[k].key != e->key; k++)
                    ;
            } while (k < j);
            if (op->kind == REL_DEL ||
                (op->kind == REL_BATCH && test_splitmix64(&rng) % 10 < 3))
                continue;
            e->vlen = rel_vlen(&rng, big_pct);
            /* A batch must fit in half of a small pool (include/dkv.h):
               values of 600 bytes at most, one of 1500. */
            if (op->kind == REL_BATCH && e->vlen > 600)
                e->vlen = big++ ? 600 : e->vlen < 1500 ? e->vlen : 1500;
        }
    }
    return 0;
}

static inline void rel_work_free(struct rel_work *w)
{
    free(w->ops);
    w->ops = NULL;
}

struct rel_bufs {
    unsigned char key[DKV_KEY_MAX];
    unsigned char val[REL_VAL_MAX];
    dkv_batch    *b;
};

/* Runs operation idx; DKV_NOTFOUND of a delete counts as success.  A
   read-all operation returns the first error of its gets, or -100 when a
   value read is not one this workload wrote. */
static inline int rel_do(dkv_db *db, const struct rel_work *w, unsigned idx,
                         struct rel_bufs *bf)
{
    const struct rel_op *op = &w->ops[idx];
    unsigned j;
    size_t klen, vlen;
    int rc = DKV_OK, r;

    switch (op->kind) {
    case REL_PUT:
        klen = rel_key(op->e[0].key, bf->key);
        rel_value(w->seed, idx, &op->e[0], bf->val);
        return dkv_put(db, bf->key, klen, bf->val, op->e[0].vlen);
    case REL_DEL:
        klen = rel_key(op->e[0].key, bf->key);
        rc = dkv_delete(db, bf->key, klen);
        return rc == DKV_NOTFOUND ? DKV_OK : rc;
    case REL_BATCH:
        dkv_batch_clear(bf->b);
        for (j = 0; j < op->n && rc == DKV_OK; j++) {
            klen = rel_key(op->e[j].key, bf->key);
            if (op->e[j].vlen == 0) {
                rc = dkv_batch_delete(bf->b, bf->key, klen);
            } else {
                rel_value(w->seed, idx, &op->e[j], bf->val);
                rc = dkv_batch_put(bf->b, bf->key, klen, bf->val, op->e[j].vlen);
            }
        }
        return rc == DKV_OK ? dkv_write(db, bf->b) : rc;
    case REL_CKPT:
        return dkv_checkpoint(db);
    default:
        for (j = 0; j < w->nkeys; j++) {
            klen = rel_key(j, bf->key);
            r = dkv_get(db, bf->key, klen, bf->val, sizeof(bf->val), &vlen);
            if (r == DKV_OK && rel_parse(w->seed, j, bf->val, vlen) < -1)
                r = -100;
            if (r < 0 && rc == DKV_OK)
                rc = r;
        }
        return rc;
    }
}

/* ---- the model -------------------------------------------------------------- */

struct rel_model {
    int      cert[REL_KEYS_MAX];          /* -1 absent, else an op index      */
    unsigned nalt[REL_KEYS_MAX];
    int      alt[REL_KEYS_MAX][REL_ALT_MAX];
    int      last[REL_KEYS_MAX];          /* the last op that touched the key */
    int     *failed;                      /* ops that failed, in order        */
    unsigned nfailed;
};

static inline void rel_model_init(struct rel_model *m, const struct rel_work *w)
{
    unsigned k;

    memset(m, 0, sizeof(*m));
    for (k = 0; k < REL_KEYS_MAX; k++) {
        m->cert[k] = -1;
        m->last[k] = -1;
    }
    m->failed = calloc(w->nops + 1, sizeof(int));
}

static inline void rel_model_free(struct rel_model *m)
{
    free(m->failed);
    m->failed = NULL;
}

/* Records operation idx as done (ok) or failed/unknown (!ok). */
static inline void rel_model_apply(struct rel_model *m, const struct rel_work *w,
                                   unsigned idx, int ok)
{
    const struct rel_op *op = &w->ops[idx];
    unsigned j;

    if (op->kind == REL_CKPT || op->kind == REL_GETS)
        return;
    if (!ok)
        m->failed[m->nfailed++] = (int)idx;
    for (j = 0; j < op->n; j++) {
        unsigned k = op->e[j].key;
        int st = op->e[j].vlen ? (int)idx : -1;
        if (ok) {
            m->cert[k] = st;
            m->nalt[k] = 0;
        } else if (m->nalt[k] < REL_ALT_MAX) {
            m->alt[k][m->nalt[k]++] = st;
        }
        m->last[k] = (int)idx;
    }
}

static inline int rel_allowed(const struct rel_model *m, unsigned k, int st)
{
    unsigned i;

    if (m->cert[k] == st)
        return 1;
    for (i = 0; i < m->nalt[k]; i++)
        if (m->alt[k][i] == st)
            return 1;
    return 0;
}

struct rel_verdict {
    unsigned lost;                        /* a key in a state not allowed     */
    unsigned partial;                     /* a failed op applied in part      */
    unsigned bad_bytes;                   /* a value no op wrote              */
    unsigned read_errors, scan_errors;
    char     first[256];                  /* the first problem, in words      */
};

/* Reads every key of db into state[] and checks it against the model. */
static inline void rel_check(dkv_db *db, const struct rel_work *w,
                             const struct rel_model *m, struct rel_bufs *bf,
                             struct rel_verdict *v)
{
    int state[REL_KEYS_MAX];
    unsigned k, f, j, present = 0, scanned = 0;
    dkv_iter *it = NULL;
    size_t klen, vlen;
    int rc;

    memset(v, 0, sizeof(*v));
    for (k = 0; k < w->nkeys; k++) {
        klen = rel_key(k, bf->key);
        rc = dkv_get(db, bf->key, klen, bf->val, sizeof(bf->val), &vlen);
        state[k] = -1;
        if (rc == DKV_OK) {
            present++;
            state[k] = rel_parse(w->seed, k, bf->val, vlen);
            if (state[k] == -2) {
                if (v->bad_bytes++ == 0 && v->first[0] == '\0')
                    snprintf(v->first, sizeof(v->first),
                             "key %u: value bytes wrong (%zu bytes)", k, vlen);
                continue;
            }
        } else if (rc != DKV_NOTFOUND) {
            if (v->read_errors++ == 0 && v->first[0] == '\0')
                snprintf(v->first, sizeof(v->first), "key %u: dkv_get: %s", k,
                         dkv_strerror(rc));
            continue;
        }
        if (!rel_allowed(m, k, state[k]) && v->lost++ == 0 && v->first[0] == '\0')
            snprintf(v->first, sizeof(v->first),
                     "key %u holds op %d, expected op %d (%u failed ops may apply)",
                     k, state[k], m->cert[k], m->nalt[k]);
    }
    /* A failed op that no later op overwrote: all of it, or none. */
    for (f = 0; f < m->nfailed; f++) {
        const struct rel_op *op = &w->ops[m->failed[f]];
        unsigned yes = 0, no = 0, mine = 1;
        for (j = 0; j < op->n; j++)
            mine &= m->last[op->e[j].key] == m->failed[f];
        if (!mine)
            continue;
        for (j = 0; j < op->n; j++) {
            unsigned key = op->e[j].key;
            if (op->e[j].vlen == 0) {     /* a delete shows only when needed */
                if (state[key] != -1)
                    no++;
            } else if (state[key] == m->failed[f]) {
                yes++;
            } else {
                no++;
            }
        }
        if (yes > 0 && no > 0 && v->partial++ == 0 && v->first[0] == '\0')
            snprintf(v->first, sizeof(v->first),
                     "op %d (a batch of %u) applied in part: %u yes, %u no",
                     m->failed[f], op->n, yes, no);
    }
    /* A scan sees exactly the keys the gets found. */
    rc = dkv_iter_new(db, &it);
    if (rc == DKV_OK)
        rc = dkv_iter_seek(it, NULL, 0);
    while (rc == DKV_OK && dkv_iter_valid(it)) {
        scanned++;
        rc = dkv_iter_next(it);
    }
    dkv_iter_free(it);
    if ((rc != DKV_OK || scanned != present + v->bad_bytes) &&
        v->scan_errors++ == 0 && v->first[0] == '\0')
        snprintf(v->first, sizeof(v->first), "scan: %s, %u keys, gets found %u",
                 dkv_strerror(rc), scanned, present);
}

static inline unsigned rel_problems(const struct rel_verdict *v)
{
    return v->lost + v->partial + v->bad_bytes + v->read_errors + v->scan_errors;
}

/* The directory the tests' databases go in: DKV_TEST_DIR, TMPDIR or /tmp. */
static inline const char *rel_parent_dir(void)
{
    const char *d = getenv("DKV_TEST_DIR");

    if (d == NULL || *d == '\0')
        d = getenv("TMPDIR");
    return d != NULL && *d != '\0' ? d : "/tmp";
}

/* For tests whose durability is modelled, not the disk's: DKV_TEST_DIR,
   else /dev/shm (syncs cost nothing there), else rel_parent_dir(). */
static inline const char *rel_fast_dir(void)
{
    const char *d = getenv("DKV_TEST_DIR");

    if ((d == NULL || *d == '\0') && access("/dev/shm", W_OK) == 0)
        return "/dev/shm";
    return rel_parent_dir();
}

/* 4 under ThreadSanitizer, whose build runs these tests for their races
   (at about ten times the cost), else 1: the tests divide their points by
   it there. */
#if defined(__SANITIZE_THREAD__)
#define REL_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define REL_TSAN 1
#endif
#endif
#ifndef REL_TSAN
#define REL_TSAN 0
#endif
static inline unsigned rel_sanitizer_divisor(void)
{
    return REL_TSAN ? 4u : 1u;
}

/* DKV_TEST_SCALE (default 1) times n. */
static inline unsigned rel_scaled(unsigned n)
{
    const char *s = getenv("DKV_TEST_SCALE");
    double f = s != NULL && *s != '\0' ? strtod(s, NULL) : 1.0;

    if (f <= 0)
        f = 1.0;
    return (unsigned)(n * f + 0.5) ? (unsigned)(n * f + 0.5) : 1;
}

#endif /* DKV_TESTS_REL_UTIL_H */
