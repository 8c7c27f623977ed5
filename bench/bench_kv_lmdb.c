/*
 * bench_kv_lmdb.c - lmdb as an engine of the comparison (bench_kv.c), for
 * the other way to cache: lmdb maps its file read-only and lets the page
 * cache be its buffer pool, with no cache of its own.  So its budget is
 * page cache: bench_kv.c holds the file's resident pages to the budget
 * (the page-cache cap, which unmaps a page through mapping() before it
 * drops it), or --mem-limit's cgroup does.
 *
 * Entry point: kv_lmdb_ops (bench_kv.h).  Compiled in when CMake finds
 * liblmdb (Debian: liblmdb-dev).
 *
 * Shape: one environment shared by the threads, opened with MDB_NOTLS so
 * that each connection keeps one read transaction of its own (reset after
 * each lookup, renewed before the next) and MDB_NORDAHEAD, lmdb's advice
 * for a database larger than memory.  Writes are one write transaction
 * each (lmdb has one writer at a time); a durable commit syncs the file,
 * otherwise the environment runs MDB_NOSYNC.
 */
#include "bench_kv.h"

#include "dkv.h"

#include <errno.h>
#include <lmdb.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LMDB_MAP_SIZE (1ull << 36)      /* address space only (64 GiB)      */
#define LMDB_READERS  128u

struct lmdb_db {
    MDB_env *env;
    MDB_dbi  dbi;
    char     path[PATH_MAX];            /* the data file                    */
};

struct lmdb_conn {
    struct lmdb_db *db;
    MDB_txn        *rtxn;               /* reset between uses               */
    MDB_txn        *wtxn;               /* between begin and commit         */
};

static int fail(int rc, const char *what)
{
    fprintf(stderr, "dkv-bench: lmdb: %s: %s\n", what, mdb_strerror(rc));
    return rc == ENOMEM ? DKV_ERR_NOMEM : rc == MDB_MAP_FULL ? DKV_ERR_NOSPACE
                                                             : DKV_ERR_IO;
}

static int lm_open(const char *dir, uint64_t budget, uint32_t page_size, int durable,
                   int create, unsigned threads, void **out)
{
    struct lmdb_db *db = calloc(1, sizeof(*db));
    unsigned flags = MDB_NOTLS | MDB_NORDAHEAD | (durable ? 0u : MDB_NOSYNC);
    MDB_txn *txn = NULL;
    int rc;

    (void)budget;                       /* the page cache is its cache      */
    (void)page_size;                    /* lmdb's page is the OS page       */
    (void)create;                       /* mdb_env_open creates the files   */
    if (db == NULL)
        return DKV_ERR_NOMEM;
    snprintf(db->path, sizeof(db->path), "%s/data.mdb", dir);
    rc = mdb_env_create(&db->env);
    if (rc == 0)
        rc = mdb_env_set_mapsize(db->env, LMDB_MAP_SIZE);
    if (rc == 0)
        rc = mdb_env_set_maxreaders(db->env, threads + LMDB_READERS);
    if (rc == 0)
        rc = mdb_env_open(db->env, dir, flags, 0644);
    if (rc == 0)
        rc = mdb_txn_begin(db->env, NULL, 0, &txn);
    if (rc == 0)
        rc = mdb_dbi_open(txn, NULL, 0, &db->dbi);
    if (rc == 0) {
        rc = mdb_txn_commit(txn);
        txn = NULL;
    }
    if (rc != 0) {
        if (txn != NULL)
            mdb_txn_abort(txn);
        if (db->env != NULL)
            mdb_env_close(db->env);
        free(db);
        return fail(rc, dir);
    }
    *out = db;
    return DKV_OK;
}

static int lm_close(void *arg)
{
    struct lmdb_db *db = arg;
    int rc = mdb_env_sync(db->env, 1);

    mdb_env_close(db->env);
    free(db);
    return rc == 0 ? DKV_OK : fail(rc, "mdb_env_sync");
}

static int lm_conn_open(void *arg, void **out)
{
    struct lmdb_conn *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return DKV_ERR_NOMEM;
    c->db = arg;
    *out = c;
    return DKV_OK;
}

static void lm_conn_close(void *arg)
{
    struct lmdb_conn *c = arg;

    if (c->wtxn != NULL)
        mdb_txn_abort(c->wtxn);
    if (c->rtxn != NULL)
        mdb_txn_abort(c->rtxn);
    free(c);
}

/* The connection's read transaction, renewed (a fresh snapshot). */
static int read_begin(struct lmdb_conn *c, MDB_txn **txn)
{
    int rc;

    if (c->wtxn != NULL) {              /* inside begin/commit: read it    */
        *txn = c->wtxn;
        return 0;
    }
    rc = c->rtxn == NULL ? mdb_txn_begin(c->db->env, NULL, MDB_RDONLY, &c->rtxn)
                         : mdb_txn_renew(c->rtxn);
    *txn = c->rtxn;
    return rc;
}

static void read_end(struct lmdb_conn *c, MDB_txn *txn)
{
    if (txn == c->rtxn)
        mdb_txn_reset(txn);             /* releases the snapshot           */
}

static int get_in(struct lmdb_conn *c, MDB_txn *txn, const void *key, size_t klen,
                  void *buf, size_t cap, size_t *vlen)
{
    MDB_val k = { klen, (void *)key }, v;
    int rc = mdb_get(txn, c->db->dbi, &k, &v);

    if (rc == MDB_NOTFOUND)
        return DKV_NOTFOUND;
    if (rc != 0)
        return fail(rc, "mdb_get");
    memcpy(buf, v.mv_data, v.mv_size < cap ? v.mv_size : cap);
    *vlen = v.mv_size;
    return DKV_OK;
}

static int lm_get(void *arg, const void *key, size_t klen, void *buf, size_t cap,
                  size_t *vlen)
{
    struct lmdb_conn *c = arg;
    MDB_txn *txn;
    int rc = read_begin(c, &txn);

    if (rc != 0)
        return fail(rc, "mdb_txn_begin");
    rc = get_in(c, txn, key, klen, buf, cap, vlen);
    read_end(c, txn);
    return rc;
}

static int lm_multi_get(void *arg, size_t n, const void *const *keys,
                        const size_t *klens, void *const *bufs, const size_t *caps,
                        size_t *vlens, int *rcs)
{
    struct lmdb_conn *c = arg;
    MDB_txn *txn;
    size_t i;
    int rc = read_begin(c, &txn);

    if (rc != 0)
        return fail(rc, "mdb_txn_begin");
    for (i = 0, rc = DKV_OK; i < n && rc >= 0; i++) {
        rcs[i] = get_in(c, txn, keys[i], klens[i], bufs[i], caps[i], &vlens[i]);
        rc = rcs[i] < 0 ? rcs[i] : DKV_OK;
    }
    read_end(c, txn);
    return rc;
}

static int lm_begin(void *arg)
{
    struct lmdb_conn *c = arg;
    int rc = mdb_txn_begin(c->db->env, NULL, 0, &c->wtxn);

    return rc == 0 ? DKV_OK : fail(rc, "mdb_txn_begin (write)");
}

static int lm_commit(void *arg)
{
    struct lmdb_conn *c = arg;
    int rc = mdb_txn_commit(c->wtxn);

    c->wtxn = NULL;
    return rc == 0 ? DKV_OK : fail(rc, "mdb_txn_commit");
}

/* One write: in the open transaction, or a transaction of its own. */
static int write_one(struct lmdb_conn *c, const void *key, size_t klen,
                     const void *val, size_t vlen, int del)
{
    MDB_val k = { klen, (void *)key }, v = { vlen, (void *)val };
    int own = c->wtxn == NULL, rc;

    if (own && (rc = lm_begin(c)) != DKV_OK)
        return rc;
    rc = del ? mdb_del(c->wtxn, c->db->dbi, &k, NULL)
             : mdb_put(c->wtxn, c->db->dbi, &k, &v, 0);
    if (rc != 0 && rc != MDB_NOTFOUND) {
        mdb_txn_abort(c->wtxn);
        c->wtxn = NULL;
        return fail(rc, del ? "mdb_del" : "mdb_put");
    }
    return own ? lm_commit(c) : DKV_OK;
}

static int lm_put(void *arg, const void *key, size_t klen, const void *val,
                  size_t vlen)
{
    return write_one(arg, key, klen, val, vlen, 0);
}

static int lm_del(void *arg, const void *key, size_t klen)
{
    return write_one(arg, key, klen, NULL, 0, 1);
}

static int lm_scan(void *arg, const void *key, size_t klen, uint64_t limit,
                   int (*fn)(void *, size_t, size_t), void *fn_arg)
{
    struct lmdb_conn *c = arg;
    MDB_val k = { klen, (void *)key }, v;
    MDB_cursor *cur = NULL;
    MDB_txn *txn;
    uint64_t seen = 0;
    int rc = read_begin(c, &txn);

    if (rc == 0)
        rc = mdb_cursor_open(txn, c->db->dbi, &cur);
    if (rc == 0)
        rc = mdb_cursor_get(cur, &k, &v, key != NULL ? MDB_SET_RANGE : MDB_FIRST);
    while (rc == 0 && (limit == 0 || seen < limit)) {
        seen++;
        if (fn(fn_arg, k.mv_size, v.mv_size) != 0)
            break;
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (cur != NULL)
        mdb_cursor_close(cur);
    read_end(c, txn);
    return rc == 0 || rc == MDB_NOTFOUND ? DKV_OK : fail(rc, "scan");
}

static int lm_counters(void *db, uint64_t *hits, uint64_t *misses)
{
    (void)db;
    *hits = *misses = 0;
    return 0;                           /* the page cache counts nothing   */
}

static const char *lm_io(void *db, int *direct)
{
    (void)db;
    *direct = 0;
    return "mmap";
}

static const char *lm_durability(int durable)
{
    return durable ? "sync at each commit" : "MDB_NOSYNC (the OS writes back)";
}

/* The data file's mapping, found in /proc/self/maps (lmdb does not give
   its address unless the map is fixed). */
static void *lm_mapping(void *arg, size_t *len, const char **file)
{
    struct lmdb_db *db = arg;
    char line[PATH_MAX + 128];
    void *found = NULL;
    FILE *f = fopen("/proc/self/maps", "r");

    *len = 0;
    *file = db->path;
    if (f == NULL)
        return NULL;
    while (found == NULL && fgets(line, sizeof(line), f) != NULL) {
        unsigned long lo, hi;
        char *path = strchr(line, '/');
        size_t n = path ? strcspn(path, "\n") : 0;
        if (path == NULL || n != strlen(db->path) || memcmp(path, db->path, n) != 0 ||
            sscanf(line, "%lx-%lx", &lo, &hi) != 2)
            continue;
        found = (void *)lo;
        *len = (size_t)(hi - lo);
    }
    fclose(f);
    return found;
}

const struct kv_engine_ops kv_lmdb_ops = {
    .name = "lmdb",
    .open = lm_open,
    .close = lm_close,
    .conn_open = lm_conn_open,
    .conn_close = lm_conn_close,
    .get = lm_get,
    .put = lm_put,
    .del = lm_del,
    .begin = lm_begin,
    .commit = lm_commit,
    .multi_get = lm_multi_get,
    .scan = lm_scan,
    .counters = lm_counters,
    .io = lm_io,
    .durability = lm_durability,
    .mapping = lm_mapping,
};
