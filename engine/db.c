/*
 * db.c - the dkv_* entry points of include/dkv.h: options, error names,
 * opening and closing, puts, gets, deletes, batches, multi-gets,
 * iterators, sync, checkpoints and statistics, over the B+tree (btree.c)
 * and the page store (store.c).  Design: engine/README.md.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE                 /* pthread_rwlockattr_setkind_np */
#endif
#include "dkv.h"

#include "btree.h"
#include "engine.h"
#include "node.h"
#include "pager/io.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define DKV_POOL_SIZE_DEFAULT       (128u << 20)
#define DKV_COMMIT_INTERVAL_DEFAULT 1000u

DKV_EXPORT void dkv_options_init(dkv_options *opts)
{
    if (opts == NULL)
        return;
    opts->pool_size = DKV_POOL_SIZE_DEFAULT;
    opts->page_size = 0;
    opts->io_engine = DKV_IO_AUTO;
    opts->direct = 1;
    opts->commit_mode = DKV_COMMIT_SYNC;
    opts->commit_interval_ms = DKV_COMMIT_INTERVAL_DEFAULT;
    opts->create_if_missing = 1;
    opts->read_only = 0;
}

DKV_EXPORT const char *dkv_strerror(int rc)
{
    switch (rc) {
    case DKV_OK:              return "success";
    case DKV_NOTFOUND:        return "key not found";
    case DKV_ERR_INVALID:     return "invalid argument or option";
    case DKV_ERR_IO:          return "input/output error";
    case DKV_ERR_CORRUPT:     return "database file is corrupt (checksum or format check failed)";
    case DKV_ERR_NOSPACE:     return "no space left on the device";
    case DKV_ERR_NOMEM:       return "out of memory";
    case DKV_ERR_BUSY:        return "database is in use by another process";
    case DKV_ERR_READONLY:    return "database is read-only";
    case DKV_ERR_UNSUPPORTED: return "not supported on this system or build";
    case DKV_ERR_AGAIN:       return "too many concurrent writes for the operation; try again";
    default:                  return "unknown error code";
    }
}

DKV_EXPORT const char *dkv_io_engine_name(int io_engine)
{
    return io_engine_name(io_engine);
}

DKV_EXPORT int dkv_io_engine_built(int io_engine)
{
    return io_engine_name(io_engine) != NULL && io_engine_built(io_engine);
}

/* ---- the database ------------------------------------------------------------------- */

/*
 * Writers and readers (engine/README.md, section 6):
 *
 * - A write that is one MTR (a put or delete whose value fits in at most
 *   BTREE_OVF_MTR_PAGES overflow pages) holds `units` shared: any number
 *   run at once, latching only the pages they change.
 * - A write of several MTRs (a batch, a long value) holds `units`
 *   exclusive, since its MTRs must reach the log together (E3), and keeps
 *   `batch_seq` odd while it applies a batch.
 * - A lookup takes no lock: it reads `batch_seq` before and after, and
 *   repeats when a batch ran in between, so it never sees half a batch.
 */
struct dkv_db {
    struct store     *s;
    struct btree     *bt;
    int               read_only;
    uint32_t          ps;
    uint64_t          frames;           /* pool frames                    */
    uint64_t          log_capacity;
    pthread_rwlock_t  units;
    uint64_t          batch_seq;        /* atomic; odd during a batch     */
    unsigned          iters;            /* atomic; iterators open         */
};

#define DKV_LOG_CAPACITY   (256ull << 20)
#define DKV_OVF_MTR_PAGES  8u            /* as btree.c: pages one MTR writes */
#define DKV_RESERVE_TREE   24u           /* pages a put's splits may take    */

static int valid_options(const dkv_options *o)
{
    return o->page_size == 0 ||
           (o->page_size >= 4096 && o->page_size <= 65536 &&
            (o->page_size & (o->page_size - 1)) == 0);
}

DKV_EXPORT int dkv_open(const char *path, const dkv_options *opts, dkv_db **dbp)
{
    dkv_options def;
    struct store_config cfg;
    pthread_rwlockattr_t attr;
    struct pool_stats ps;
    dkv_db *db;
    int rc;

    if (dbp != NULL)
        *dbp = NULL;
    if (opts == NULL) {
        dkv_options_init(&def);
        opts = &def;
    }
    if (path == NULL || *path == '\0' || dbp == NULL || !valid_options(opts) ||
        opts->io_engine < DKV_IO_AUTO || opts->io_engine > DKV_IO_PSYNC ||
        (opts->commit_mode != DKV_COMMIT_SYNC && opts->commit_mode != DKV_COMMIT_ASYNC))
        return DKV_ERR_INVALID;
    if (dkv_io_engine_name(opts->io_engine) != NULL && opts->io_engine != DKV_IO_AUTO &&
        !dkv_io_engine_built(opts->io_engine))
        return DKV_ERR_UNSUPPORTED;
    db = calloc(1, sizeof(*db));
    if (db == NULL)
        return DKV_ERR_NOMEM;
    memset(&cfg, 0, sizeof(cfg));
    cfg.pool_size = opts->pool_size;
    cfg.page_size = opts->page_size;
    cfg.io_engine = opts->io_engine;
    cfg.direct = opts->direct;
    cfg.commit_mode = opts->commit_mode;
    cfg.commit_interval_ms = opts->commit_interval_ms;
    cfg.create = opts->create_if_missing && !opts->read_only;
    cfg.log_capacity = DKV_LOG_CAPACITY;
    cfg.apply = btree_redo;
    cfg.page_check = btree_page_check;
    db->read_only = opts->read_only != 0;
    db->log_capacity = DKV_LOG_CAPACITY;
    pthread_rwlockattr_init(&attr);
    /* A batch must not starve behind a stream of single puts. */
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&db->units, &attr);
    pthread_rwlockattr_destroy(&attr);

    rc = store_open(path, &cfg, &db->s, NULL);
    if (rc == DKV_OK) {
        rc = btree_open(db->s, &db->bt);
        if (rc != DKV_OK) {
            store_abandon(db->s);
            db->s = NULL;
        }
    }
    if (rc == DKV_OK && !db->read_only && btree_purge_pending(db->bt))
        rc = btree_purge(db->bt);          /* chains a crash left on the list */
    if (rc != DKV_OK) {
        if (db->bt != NULL) {
            btree_close(db->bt);
            store_abandon(db->s);
        }
        pthread_rwlock_destroy(&db->units);
        free(db);
        return rc;
    }
    db->ps = store_page_size(db->s);
    pool_stats_get(store_pool(db->s), &ps);
    db->frames = ps.frames;
    *dbp = db;
    return DKV_OK;
}

DKV_EXPORT int dkv_close(dkv_db *db)
{
    int rc;

    if (db == NULL)
        return DKV_OK;
    /* An iterator would be left pointing into a freed database. */
    if (__atomic_load_n(&db->iters, __ATOMIC_ACQUIRE) != 0)
        return DKV_ERR_BUSY;
    btree_close(db->bt);
    rc = store_close(db->s);
    pthread_rwlock_destroy(&db->units);
    free(db);
    return rc;
}

static int key_ok(const void *key, size_t klen)
{
    return key != NULL && klen > 0 && klen <= DKV_KEY_MAX;
}

/* After writes that retired overflow chains: free their pages (each its
   own unit; the caller holds `units` as for a one-MTR write or more). */
static int purge(dkv_db *db, int rc)
{
    if (rc >= 0 && btree_purge_pending(db->bt)) {
        int prc = btree_purge(db->bt);
        if (prc != DKV_OK)
            return prc;
    }
    return rc;
}

/* A put or delete as a unit of its own. */
static int write_single(dkv_db *db, int del, const void *key, size_t klen,
                        const void *val, size_t vlen)
{
    int many, rc;

    if (db == NULL || !key_ok(key, klen) ||
        (!del && ((vlen > 0 && val == NULL) || vlen > DKV_VALUE_MAX)))
        return DKV_ERR_INVALID;
    if (db->read_only)
        return DKV_ERR_READONLY;
    many = !del && btree_value_pages(db->bt, klen, vlen) > DKV_OVF_MTR_PAGES;
    /* A write's pages stay in the pool until it ends (W4). */
    if (many && btree_value_pages(db->bt, klen, vlen) + 16 > db->frames / 2)
        return DKV_ERR_INVALID;
    if (many)
        pthread_rwlock_wrlock(&db->units);
    else
        pthread_rwlock_rdlock(&db->units);
    /* A full disk fails the put here, before any page changes, rather
       than in a split (which would fail the store, E4). */
    rc = del ? DKV_OK : store_reserve(db->s, btree_value_pages(db->bt, klen, vlen) +
                                             DKV_RESERVE_TREE);
    if (rc == DKV_OK)
        rc = del ? btree_delete(db->bt, NULL, key, klen)
                 : btree_put(db->bt, NULL, key, klen, val, vlen);
    rc = purge(db, rc);
    pthread_rwlock_unlock(&db->units);
    return rc;
}

DKV_EXPORT int dkv_put(dkv_db *db, const void *key, size_t klen, const void *val,
                       size_t vlen)
{
    return write_single(db, 0, key, klen, val, vlen);
}

DKV_EXPORT int dkv_delete(dkv_db *db, const void *key, size_t klen)
{
    return write_single(db, 1, key, klen, NULL, 0);
}

/* ---- lookups ----------------------------------------------------------------------------- */

/* The batch sequence a lookup starts at: never inside a batch (it waits
   for the batch by taking `units` shared once). */
static uint64_t read_begin(dkv_db *db)
{
    for (;;) {
        uint64_t seq = __atomic_load_n(&db->batch_seq, __ATOMIC_ACQUIRE);
        if ((seq & 1) == 0)
            return seq;
        pthread_rwlock_rdlock(&db->units);
        pthread_rwlock_unlock(&db->units);
    }
}

/* 1 when a batch ran since read_begin returned seq: the lookup repeats.
   No fence is needed: the lookup read each page under its latch, or
   optimistically with its version loaded by an acquire that saw the
   batch's release of the page (pager P11), and a batch bumps the
   sequence before it latches any page, so a page the batch changed was
   read after the bump became visible (the acquire orders them). */
static int read_retry(dkv_db *db, uint64_t seq)
{
    return __atomic_load_n(&db->batch_seq, __ATOMIC_ACQUIRE) != seq;
}

DKV_EXPORT int dkv_get(dkv_db *db, const void *key, size_t klen, void *buf,
                       size_t cap, size_t *vlen)
{
    uint64_t seq;
    int rc;

    if (db == NULL || !key_ok(key, klen) || vlen == NULL || (cap > 0 && buf == NULL))
        return DKV_ERR_INVALID;
    do {
        seq = read_begin(db);
        rc = btree_get(db->bt, key, klen, buf, cap, vlen);
    } while (read_retry(db, seq));
    return rc;
}

struct mg_key {
    const void *key;
    size_t      klen;
    size_t      idx;
    uint32_t    leaf;
};

static int mg_cmp(const void *a, const void *b)
{
    const struct mg_key *x = a, *y = b;
    size_t n = x->klen < y->klen ? x->klen : y->klen;
    int c = memcmp(x->key, y->key, n);

    return c != 0 ? c : (x->klen > y->klen) - (x->klen < y->klen);
}

static int leaf_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return (x > y) - (x < y);
}

DKV_EXPORT int dkv_multi_get(dkv_db *db, size_t n, const void *const *keys,
                             const size_t *klens, void *const *bufs,
                             const size_t *caps, size_t *vlens, int *rcs)
{
    struct mg_key *mk;
    uint32_t *leaves;
    size_t i, nl = 0;
    uint64_t seq;
    int rc = DKV_OK;

    if (db == NULL || (n > 0 && (keys == NULL || klens == NULL || bufs == NULL ||
                                 caps == NULL || vlens == NULL || rcs == NULL)))
        return DKV_ERR_INVALID;
    if (n == 0)
        return DKV_OK;
    mk = malloc(n * sizeof(*mk));
    leaves = malloc(n * sizeof(*leaves));
    if (mk == NULL || leaves == NULL) {
        free(mk);
        free(leaves);
        return DKV_ERR_NOMEM;
    }
    /* In key order: neighbouring keys share inner nodes and leaves. */
    for (i = 0; i < n; i++) {
        mk[i].key = keys[i];
        mk[i].klen = klens[i];
        mk[i].idx = i;
        rcs[i] = key_ok(keys[i], klens[i]) && (caps[i] == 0 || bufs[i] != NULL)
                     ? DKV_OK : DKV_ERR_INVALID;
        if (rcs[i] != DKV_OK) {      /* a NULL or over-long key is never read */
            mk[i].key = "";
            mk[i].klen = 0;
        }
    }
    qsort(mk, n, sizeof(*mk), mg_cmp);
    /* The leaves through the inner levels (normally in the pool), then all
       that are missing as one batch of asynchronous reads ... */
    for (i = 0; i < n; i++) {
        if (rcs[mk[i].idx] != DKV_OK)
            continue;
        if (btree_leaf_for(db->bt, mk[i].key, mk[i].klen, &mk[i].leaf) == DKV_OK)
            leaves[nl++] = mk[i].leaf;
    }
    qsort(leaves, nl, sizeof(*leaves), leaf_cmp);
    {
        size_t u = 0;
        for (i = 0; i < nl; i++)
            if (u == 0 || leaves[u - 1] != leaves[i])
                leaves[u++] = leaves[i];
        nl = u;
    }
    if (nl > 1)
        pool_prefetch(store_pool(db->s), leaves, (unsigned)nl);
    /* ... then each lookup, which finds its leaf read or on its way. */
    do {
        seq = read_begin(db);
        for (i = 0; i < n; i++) {
            size_t k = mk[i].idx;
            if (rcs[k] == DKV_ERR_INVALID) {
                rc = rc == DKV_OK ? DKV_ERR_INVALID : rc;
                continue;
            }
            rcs[k] = btree_get(db->bt, keys[k], klens[k], bufs[k], caps[k], &vlens[k]);
            if (rcs[k] < 0 && rc == DKV_OK)
                rc = rcs[k];
        }
    } while (read_retry(db, seq) && (rc = DKV_OK) == DKV_OK);
    free(mk);
    free(leaves);
    return rc;
}

/* ---- batches ----------------------------------------------------------------------------- */

/* A batch is a byte string of operations: u8 kind, u32 key length, u32
   value length, key, value. */
struct dkv_batch {
    unsigned char *buf;
    size_t         len, cap;
    size_t         ops;
    uint64_t       bytes;               /* keys and values                */
    uint64_t       big;                 /* values too long for a leaf     */
};

enum { BOP_PUT = 1, BOP_DELETE = 2 };

/* Makes *buf hold at least need bytes (doubling from 4 KiB). */
static int grow(unsigned char **buf, size_t *cap, size_t need)
{
    size_t n = *cap ? *cap : 4096;
    unsigned char *p;

    if (need <= *cap)
        return DKV_OK;
    while (n < need)
        n *= 2;
    p = realloc(*buf, n);
    if (p == NULL)
        return DKV_ERR_NOMEM;
    *buf = p;
    *cap = n;
    return DKV_OK;
}
#define BOP_HDR 9u

DKV_EXPORT dkv_batch *dkv_batch_new(void)
{
    return calloc(1, sizeof(struct dkv_batch));
}

static int batch_add(dkv_batch *b, int kind, const void *key, size_t klen,
                     const void *val, size_t vlen)
{
    size_t need;
    unsigned char *p;

    if (b == NULL || !key_ok(key, klen) || vlen > DKV_VALUE_MAX || (vlen > 0 && val == NULL))
        return DKV_ERR_INVALID;
    need = b->len + BOP_HDR + klen + vlen;
    if (grow(&b->buf, &b->cap, need) != DKV_OK)
        return DKV_ERR_NOMEM;
    p = b->buf + b->len;
    p[0] = (unsigned char)kind;
    memcpy(p + 1, &(uint32_t){ (uint32_t)klen }, 4);
    memcpy(p + 5, &(uint32_t){ (uint32_t)vlen }, 4);
    memcpy(p + BOP_HDR, key, klen);
    if (vlen > 0)
        memcpy(p + BOP_HDR + klen, val, vlen);
    b->len = need;
    b->ops++;
    b->bytes += klen + vlen;
    return DKV_OK;
}

DKV_EXPORT int dkv_batch_put(dkv_batch *b, const void *key, size_t klen,
                             const void *val, size_t vlen)
{
    return batch_add(b, BOP_PUT, key, klen, val, vlen);
}

DKV_EXPORT int dkv_batch_delete(dkv_batch *b, const void *key, size_t klen)
{
    return batch_add(b, BOP_DELETE, key, klen, NULL, 0);
}

DKV_EXPORT void dkv_batch_clear(dkv_batch *b)
{
    if (b != NULL)
        b->len = b->ops = b->bytes = b->big = 0;
}

DKV_EXPORT void dkv_batch_free(dkv_batch *b)
{
    if (b != NULL) {
        free(b->buf);
        free(b);
    }
}

/* Whether a batch fits in what a commit unit may hold: its pages stay in
   the pool until it ends (W4) and its log must fit well inside the log.
   Counted generously: every operation a leaf of its own, the splits its
   bytes can cause on every level, and every overflow page.  *pagesp: the
   pages it may allocate (0 for deletes alone). */
static int batch_fits(dkv_db *db, const dkv_batch *b, uint64_t *pagesp)
{
    uint64_t pages = 8, logb = 0;
    size_t off = 0;
    int puts = 0;

    while (off < b->len) {
        uint32_t klen, vlen;
        memcpy(&klen, b->buf + off + 1, 4);
        memcpy(&vlen, b->buf + off + 5, 4);
        puts |= b->buf[off] != BOP_DELETE;
        pages += 1 + btree_value_pages(db->bt, klen, vlen);
        logb += 2 * (uint64_t)(klen + vlen) + 64;
        off += BOP_HDR + klen + vlen;
    }
    pages += 4 * (2 * b->bytes / db->ps + 1);
    *pagesp = puts ? pages : 0;          /* deletes allocate nothing */
    return pages <= db->frames / 2 && logb <= db->log_capacity / 8;
}

DKV_EXPORT int dkv_write(dkv_db *db, dkv_batch *b)
{
    struct btree_unit u = { 0 };
    uint64_t pages = 0;
    size_t off = 0;
    int rc = DKV_OK;

    if (db == NULL || b == NULL)
        return DKV_ERR_INVALID;
    if (db->read_only)
        return DKV_ERR_READONLY;
    if (b->ops == 0)
        return DKV_OK;
    if (!batch_fits(db, b, &pages))
        return DKV_ERR_INVALID;
    if (b->ops == 1) {                  /* a unit of one write already */
        uint32_t klen, vlen;
        memcpy(&klen, b->buf + 1, 4);
        memcpy(&vlen, b->buf + 5, 4);
        rc = write_single(db, b->buf[0] == BOP_DELETE, b->buf + BOP_HDR, klen,
                          b->buf + BOP_HDR + klen, vlen);
        return rc == DKV_NOTFOUND ? DKV_OK : rc;
    }
    pthread_rwlock_wrlock(&db->units);
    /* A full disk: DKV_ERR_NOSPACE now, not part way (see write_single);
       deletes alone go on, so that a full disk can be emptied. */
    rc = pages ? store_reserve(db->s, pages + DKV_RESERVE_TREE) : DKV_OK;
    if (rc != DKV_OK) {
        pthread_rwlock_unlock(&db->units);
        return rc;
    }
    __atomic_add_fetch(&db->batch_seq, 1, __ATOMIC_ACQ_REL);
    while (rc >= 0 && off < b->len) {
        const unsigned char *p = b->buf + off;
        uint32_t klen, vlen;
        memcpy(&klen, p + 1, 4);
        memcpy(&vlen, p + 5, 4);
        rc = p[0] == BOP_DELETE ? btree_delete(db->bt, &u, p + BOP_HDR, klen)
                                : btree_put(db->bt, &u, p + BOP_HDR, klen,
                                            p + BOP_HDR + klen, vlen);
        off += BOP_HDR + klen + vlen;
    }
    /* A failure part way has failed the store (btree_put: E4), so the
       batch's first MTRs can never be completed by a later unit. */
    if (rc >= 0)
        rc = btree_unit_end(db->bt, &u);
    __atomic_add_fetch(&db->batch_seq, 1, __ATOMIC_ACQ_REL);
    rc = purge(db, rc);
    pthread_rwlock_unlock(&db->units);
    return rc;
}

/* ---- iterators ---------------------------------------------------------------------------- */

/* An iterator copies a run of whole leaves out of the tree - each leaf's
   page image, taken under its shared latch, with the values of its
   overflow cells read beside it - and serves keys and values straight from
   those images; past the run's end it copies the next run, from the last
   leaf's upper bound.  So it holds no latch between calls, each step is a
   slot lookup in a page image rather than a copy, and each key that no
   write touches during the scan is seen exactly once, in order (README 6).
   A run is at least one key and ends at the first leaf boundary past its
   fill size in bytes (or within a leaf, after a long overflow value).  A
   seek starts small - a leaf, no read-ahead - since most scans are short;
   each refill doubles the run and the read-ahead window, so a long scan
   soon copies 128 KiB at a time with 4 MiB of leaves read ahead (RocksDB's
   iterators grow their read-ahead the same way). */
#define ITER_FILL_MIN   (4u << 10)
#define ITER_FILL       (128u << 10)
#define ITER_RA_MIN     8u              /* leaves                           */
#define ITER_RA_BYTES   (4u << 20)      /* the window at most (iter_ra_max) */

struct iter_leaf {                    /* leaf k's image: buf + k * ps     */
    unsigned from, end;               /* the slots it serves              */
};

struct dkv_iter {
    dkv_db           *db;
    unsigned char    *buf;            /* the run's leaf images            */
    size_t            cap;
    struct iter_leaf *leaves;
    unsigned          nleaves, leaves_cap;
    unsigned char    *ovf;            /* its overflow values, in order:
                                         u64 length, bytes               */
    size_t            ovf_len, ovf_cap;
    unsigned          cur, slot;      /* the entry served                 */
    size_t            ovf_pos;        /* the next overflow value in ovf   */
    const unsigned char *key, *val;
    size_t            klen, vlen;
    int               is_ovf;         /* val lies in ovf                  */
    int               valid;
    int               done;           /* the tree has nothing after the run */
    int               error;
    unsigned char     next[DKV_KEY_MAX]; /* where the next run starts     */
    size_t            next_len;
    int               next_after;     /* after next (a run cut in a leaf) */
    size_t            fill;           /* bytes a run copies at least      */
    struct btree_ra   ra;             /* the scan's read-ahead            */
};

DKV_EXPORT int dkv_iter_new(dkv_db *db, dkv_iter **itp)
{
    dkv_iter *it;

    if (itp != NULL)
        *itp = NULL;
    if (db == NULL || itp == NULL)
        return DKV_ERR_INVALID;
    it = calloc(1, sizeof(*it));
    if (it == NULL)
        return DKV_ERR_NOMEM;
    it->db = db;
    __atomic_add_fetch(&db->iters, 1, __ATOMIC_ACQ_REL);
    *itp = it;
    return DKV_OK;
}

static size_t run_bytes(const dkv_iter *it)
{
    return (size_t)it->nleaves * it->db->ps + it->ovf_len;
}

/* The overflow values of slots [from, n) of a latched leaf, appended to
   ovf; stops at a value once the run is full (*end: the first slot not
   taken).  A run is never full on entry (iter_take ends it after the leaf
   that fills it), so the leaf's first key is always taken. */
static int iter_take_ovf(dkv_iter *it, const void *page, unsigned from, unsigned n,
                         unsigned *end)
{
    unsigned i;

    for (i = from; i < n; i++) {
        size_t vl, got;
        unsigned flags;
        int rc;

        node_value(page, i, &vl, &flags);
        if (!(flags & NODE_VAL_OVERFLOW))
            continue;
        if (i > from && run_bytes(it) >= it->fill)
            break;
        rc = btree_leaf_value(it->db->bt, page, i, NULL, 0, &vl);
        if (rc == DKV_OK)
            rc = grow(&it->ovf, &it->ovf_cap, it->ovf_len + 8 + vl);
        if (rc == DKV_OK)
            rc = btree_leaf_value(it->db->bt, page, i, it->ovf + it->ovf_len + 8,
                                  vl, &got);
        if (rc != DKV_OK)
            return rc;
        memcpy(it->ovf + it->ovf_len, &(uint64_t){ vl }, 8);
        it->ovf_len += 8 + vl;
    }
    *end = i;
    return DKV_OK;
}

/* btree_scan_leaves' callback: one leaf into the run.  1: the run is full. */
static int iter_take(void *arg, const void *page, unsigned from,
                     const unsigned char *hi, size_t hilen)
{
    dkv_iter *it = arg;
    unsigned n = node_count(page), end;
    struct iter_leaf *l;
    int rc;

    it->next_after = 0;
    if (hilen == 0)
        it->done = 1;
    else
        memcpy(it->next, hi, it->next_len = hilen);
    if (from >= n)
        return 0;                     /* no keys here: on to the next leaf */
    rc = iter_take_ovf(it, page, from, n, &end);
    if (rc == DKV_OK && it->nleaves == it->leaves_cap) {
        unsigned c = it->leaves_cap ? 2 * it->leaves_cap : 8;
        struct iter_leaf *nl = realloc(it->leaves, c * sizeof(*nl));
        rc = nl ? DKV_OK : DKV_ERR_NOMEM;
        if (nl) {
            it->leaves = nl;
            it->leaves_cap = c;
        }
    }
    if (rc == DKV_OK)
        rc = grow(&it->buf, &it->cap, (size_t)(it->nleaves + 1) * it->db->ps);
    if (rc != DKV_OK)
        return rc;
    memcpy(it->buf + (size_t)it->nleaves * it->db->ps, page, it->db->ps);
    l = &it->leaves[it->nleaves++];
    l->from = from;
    l->end = end;
    if (end < n) {                    /* cut after a long value           */
        size_t kl;
        const unsigned char *k = node_key(page, end - 1, &kl);
        memcpy(it->next, k, it->next_len = kl);
        it->next_after = 1;
        it->done = 0;
        return 1;
    }
    return run_bytes(it) >= it->fill;
}

/* Points key and value at the entry (cur, slot), moving on to the next
   leaf of the run past a leaf's end.  0 when the run is used up. */
static int iter_settle(dkv_iter *it)
{
    const unsigned char *page;
    unsigned flags;

    while (it->cur < it->nleaves && it->slot >= it->leaves[it->cur].end) {
        if (++it->cur < it->nleaves)
            it->slot = it->leaves[it->cur].from;
    }
    if (it->cur >= it->nleaves)
        return 0;
    page = it->buf + (size_t)it->cur * it->db->ps;
    it->key = node_key(page, it->slot, &it->klen);
    it->val = node_value(page, it->slot, &it->vlen, &flags);
    it->is_ovf = (flags & NODE_VAL_OVERFLOW) != 0;
    if (it->is_ovf) {
        uint64_t vl;
        memcpy(&vl, it->ovf + it->ovf_pos, 8);
        it->val = it->ovf + it->ovf_pos + 8;
        it->vlen = (size_t)vl;
    }
    return 1;
}

/* The read-ahead window at most, in leaves: ITER_RA_BYTES, and no more
   than a quarter of the pool (as much as pool_prefetch starts at once), so
   that what is read ahead stays in the pool until the scan gets there. */
static unsigned iter_ra_max(const dkv_db *db)
{
    uint64_t n = ITER_RA_BYTES / db->ps;

    n = n < db->frames / 4 ? n : db->frames / 4;
    return n > ITER_RA_MIN ? (unsigned)n : ITER_RA_MIN;
}

/* Copies the next run: from key (after it when after). */
static int iter_fill(dkv_iter *it, const void *key, size_t klen, int after)
{
    int rc;

    it->nleaves = 0;
    it->ovf_len = it->ovf_pos = 0;
    it->cur = 0;
    it->done = 0;
    rc = btree_scan_leaves(it->db->bt, key, klen, after, &it->ra, iter_take, it);
    /* The next run: twice the bytes; read-ahead from the third run on
       (the scan has gone past a few leaves), then twice the window. */
    it->fill = it->fill * 2 < ITER_FILL ? it->fill * 2 : ITER_FILL;
    if (it->ra.window > 0)
        it->ra.window = it->ra.window * 2 < iter_ra_max(it->db)
                        ? it->ra.window * 2 : iter_ra_max(it->db);
    else if (it->fill > 2 * ITER_FILL_MIN)
        it->ra.window = ITER_RA_MIN;
    if (rc < 0) {
        it->error = rc;
        it->valid = 0;
        return rc;
    }
    it->done |= it->nleaves == 0;     /* the leaves ended with no key      */
    it->slot = it->nleaves > 0 ? it->leaves[0].from : 0;
    it->valid = iter_settle(it);
    return DKV_OK;
}

DKV_EXPORT int dkv_iter_seek(dkv_iter *it, const void *key, size_t klen)
{
    if (it == NULL || (key != NULL && (klen == 0 || klen > DKV_KEY_MAX)))
        return DKV_ERR_INVALID;
    it->error = 0;
    it->fill = ITER_FILL_MIN;
    memset(&it->ra, 0, sizeof(it->ra));
    return iter_fill(it, key, key ? klen : 0, 0);
}

DKV_EXPORT int dkv_iter_valid(const dkv_iter *it)
{
    return it != NULL && it->valid;
}

DKV_EXPORT int dkv_iter_next(dkv_iter *it)
{
    if (it == NULL)
        return DKV_ERR_INVALID;
    if (!it->valid)
        return it->error ? it->error : DKV_ERR_INVALID;
    if (it->is_ovf)
        it->ovf_pos += 8 + it->vlen;
    it->slot++;
    if (iter_settle(it))
        return DKV_OK;
    if (it->done) {
        it->valid = 0;
        return DKV_OK;
    }
    return iter_fill(it, it->next, it->next_len, it->next_after);
}

DKV_EXPORT const void *dkv_iter_key(const dkv_iter *it, size_t *klen)
{
    if (it == NULL || !it->valid) {
        if (klen)
            *klen = 0;
        return NULL;
    }
    if (klen)
        *klen = it->klen;
    return it->key;
}

DKV_EXPORT const void *dkv_iter_value(const dkv_iter *it, size_t *vlen)
{
    if (it == NULL || !it->valid) {
        if (vlen)
            *vlen = 0;
        return NULL;
    }
    if (vlen)
        *vlen = it->vlen;
    return it->val;
}

DKV_EXPORT void dkv_iter_free(dkv_iter *it)
{
    if (it == NULL)
        return;
    __atomic_sub_fetch(&it->db->iters, 1, __ATOMIC_ACQ_REL);
    free(it->buf);
    free(it->leaves);
    free(it->ovf);
    free(it);
}

/* ---- durability and statistics ------------------------------------------------------------- */

DKV_EXPORT int dkv_sync(dkv_db *db)
{
    if (db == NULL)
        return DKV_ERR_INVALID;
    return wal_sync(store_wal(db->s));
}

DKV_EXPORT int dkv_checkpoint(dkv_db *db)
{
    int rc;

    if (db == NULL)
        return DKV_ERR_INVALID;
    if (db->read_only)
        return DKV_ERR_READONLY;
    /* Shared: no unit of several MTRs is half appended meanwhile, whose
       pages could not be written yet (W4); one-MTR writes go on. */
    pthread_rwlock_rdlock(&db->units);
    rc = store_checkpoint(db->s);
    pthread_rwlock_unlock(&db->units);
    return rc;
}

DKV_EXPORT int dkv_stats_get(dkv_db *db, dkv_stats *st)
{
    struct pool_stats ps;
    struct wal_stats ws;

    if (db == NULL || st == NULL)
        return DKV_ERR_INVALID;
    pool_stats_get(store_pool(db->s), &ps);
    wal_stats_get(store_wal(db->s), &ws);
    memset(st, 0, sizeof(*st));
    st->pool_pages = ps.frames;
    st->pool_used = ps.used;
    st->dirty_pages = ps.dirty_pages;
    st->hits = ps.hits;
    st->misses = ps.misses;
    st->evictions = ps.evictions;
    st->pages_read = ps.pages_read;
    st->pages_written = ps.pages_written;
    st->wal_bytes = ws.bytes;
    st->wal_syncs = ws.syncs;
    st->checkpoints = ws.checkpoints;
    st->io_engine = ps.io_engine;
    st->direct = ps.direct;
    st->log_lsn = ws.lsn;
    st->log_checkpoint_lsn = ws.checkpoint_lsn;
    st->log_capacity = ws.capacity;
    return DKV_OK;
}

/* ---- for the other entry points of the engine (db_int.h) ---------------------------- */

struct store *db_store(dkv_db *db) { return db->s; }
struct btree *db_btree(dkv_db *db) { return db->bt; }
int  db_read_only(const dkv_db *db) { return db->read_only; }
void db_writers_stop(dkv_db *db)    { pthread_rwlock_wrlock(&db->units); }
void db_writers_resume(dkv_db *db)  { pthread_rwlock_unlock(&db->units); }
