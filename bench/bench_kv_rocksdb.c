/*
 * bench_kv_rocksdb.c - RocksDB as an engine of the comparison (bench_kv.c),
 * through its C API (rocksdb/c.h): an LSM tree that, like dkv-direct,
 * caches for itself.  Reads and flush/compaction use O_DIRECT
 * (use_direct_reads, use_direct_io_for_flush_and_compaction), and its
 * LRU block cache gets the budget, index and filter blocks included
 * (cache_index_and_filter_blocks), so its cache and dkv's pool hold the
 * same bytes.  Blocks are the comparison's page size, uncompressed (dkv and
 * sqlite3 compress nothing either), with a 10-bit bloom filter.  Its
 * memtables (write_buffer_size, 2 of them) are memory beyond the block
 * cache; the record's rss_bytes shows them.
 *
 * Entry point: kv_rocksdb_ops (bench_kv.h).  Compiled in when CMake finds
 * librocksdb (Debian: librocksdb-dev).
 *
 * A file system that refuses O_DIRECT (tmpfs) gets page-cache I/O, said
 * once on stderr and in the record's io field.  A durable commit is a
 * write with sync = 1 (the WAL synced); otherwise the WAL is written
 * without a sync, as RocksDB's default.  Close flushes the memtable, so
 * the next phase reads from the tables, and open waits (at most a minute)
 * until no compaction is pending or running: a phase starts from a settled
 * tree, as the other engines' do (dkv writes its dirty pages at close), and
 * a compaction left over from a fill does not replace the files a warm-up
 * just read into the block cache.
 */
#include "bench_kv.h"

#include "dkv.h"

#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RDB_BLOOM_BITS     10.0
#define RDB_WRITE_BUF_MIN  (4ull << 20)
#define RDB_WRITE_BUF_MAX  (64ull << 20)
#define RDB_BG_JOBS        2
#define RDB_SHARD_BUDGET   (16ull << 20) /* a cache shard per 8..16 MiB      */
#define RDB_SETTLE_MAX_S   60.0         /* waiting for compactions at open  */

struct rdb_db {
    rocksdb_t                          *db;
    rocksdb_options_t                  *opts;
    rocksdb_block_based_table_options_t *table;
    rocksdb_cache_t                    *cache;
    rocksdb_writeoptions_t             *wopts;
    rocksdb_readoptions_t              *ropts;
    int                                 direct;
    int                                 durable;
};

struct rdb_conn {
    struct rdb_db        *db;
    rocksdb_writebatch_t *batch;        /* between begin and commit         */
};

/* Reports err (RocksDB's message, malloc'ed) and frees it. */
static int fail(char *err, const char *what)
{
    fprintf(stderr, "dkv-bench: rocksdb: %s: %s\n", what, err ? err : "?");
    rocksdb_free(err);
    return DKV_ERR_IO;
}

/* The block cache: an LRU of budget bytes in few shards.  RocksDB's
   default cuts a small cache into shards of 512 KiB, and one index or
   filter block larger than its shard (a whole-file filter of 500,000 keys
   is about 600 KiB) then evicts everything else in it on every read. */
static rocksdb_cache_t *make_cache(uint64_t budget)
{
    rocksdb_lru_cache_options_t *o = rocksdb_lru_cache_options_create();
    rocksdb_cache_t *cache;

    rocksdb_lru_cache_options_set_capacity(o, (size_t)budget);
    rocksdb_lru_cache_options_set_num_shard_bits(
        o, budget >= RDB_SHARD_BUDGET * 4 ? 2 : budget >= RDB_SHARD_BUDGET ? 1 : 0);
    cache = rocksdb_cache_create_lru_opts(o);
    rocksdb_lru_cache_options_destroy(o);
    return cache;
}

static rocksdb_options_t *make_options(struct rdb_db *d, uint64_t budget,
                                       uint32_t page_size, int direct)
{
    rocksdb_options_t *o = rocksdb_options_create();
    uint64_t wbuf = budget / 4;

    wbuf = wbuf < RDB_WRITE_BUF_MIN ? RDB_WRITE_BUF_MIN
         : wbuf > RDB_WRITE_BUF_MAX ? RDB_WRITE_BUF_MAX : wbuf;
    rocksdb_options_set_create_if_missing(o, 1);
    rocksdb_options_set_compression(o, rocksdb_no_compression);
    rocksdb_options_set_use_direct_reads(o, (unsigned char)direct);
    rocksdb_options_set_use_direct_io_for_flush_and_compaction(o, (unsigned char)direct);
    rocksdb_options_increase_parallelism(o, RDB_BG_JOBS);
    rocksdb_options_set_max_background_jobs(o, RDB_BG_JOBS);
    rocksdb_options_set_write_buffer_size(o, (size_t)wbuf);
    rocksdb_options_set_max_write_buffer_number(o, 2);
    rocksdb_options_enable_statistics(o);
    d->table = rocksdb_block_based_options_create();
    d->cache = make_cache(budget);
    rocksdb_block_based_options_set_block_size(d->table, page_size);
    rocksdb_block_based_options_set_block_cache(d->table, d->cache);
    rocksdb_block_based_options_set_cache_index_and_filter_blocks(d->table, 1);
    /* The table options take the filter policy. */
    rocksdb_block_based_options_set_filter_policy(
        d->table, rocksdb_filterpolicy_create_bloom(RDB_BLOOM_BITS));
    rocksdb_options_set_block_based_table_factory(o, d->table);
    return o;
}

static void free_handles(struct rdb_db *d)
{
    if (d->db != NULL)
        rocksdb_close(d->db);
    if (d->opts != NULL)
        rocksdb_options_destroy(d->opts);
    if (d->table != NULL)
        rocksdb_block_based_options_destroy(d->table);
    if (d->cache != NULL)
        rocksdb_cache_destroy(d->cache);
    if (d->wopts != NULL)
        rocksdb_writeoptions_destroy(d->wopts);
    if (d->ropts != NULL)
        rocksdb_readoptions_destroy(d->ropts);
    memset(d, 0, sizeof(*d));
}

/* Waits until no compaction is pending or running, at most
   RDB_SETTLE_MAX_S seconds (then the phase starts anyway). */
static void settle(struct rdb_db *d)
{
    struct timespec nap = { 0, 20 * 1000 * 1000 };
    uint64_t pending = 1, running = 1;

    for (double waited = 0; waited < RDB_SETTLE_MAX_S; waited += 0.02) {
        if (rocksdb_property_int(d->db, "rocksdb.compaction-pending", &pending) != 0 ||
            rocksdb_property_int(d->db, "rocksdb.num-running-compactions", &running) != 0)
            return;
        if (pending == 0 && running == 0)
            return;
        nanosleep(&nap, NULL);
    }
}

/* Opens with O_DIRECT, or (refused) through the page cache. */
static int rdb_open(const char *dir, uint64_t budget, uint32_t page_size,
                    int durable, int create, unsigned threads, void **out)
{
    static int direct_refused_noted;
    struct rdb_db *d = calloc(1, sizeof(*d));
    char *err = NULL;

    (void)create;                       /* create_if_missing is always on   */
    (void)threads;                      /* the handle is thread-safe        */
    if (d == NULL)
        return DKV_ERR_NOMEM;
    for (int direct = 1; direct >= 0 && d->db == NULL; direct--) {
        free_handles(d);
        rocksdb_free(err);
        err = NULL;
        d->opts = make_options(d, budget, page_size, direct);
        d->db = rocksdb_open(d->opts, dir, &err);
        d->direct = direct;
        if (d->db == NULL && direct && !direct_refused_noted++)
            fprintf(stderr, "dkv-bench: rocksdb: opening with O_DIRECT failed (%s); "
                    "trying page-cache I/O\n", err ? err : "?");
    }
    if (d->db == NULL) {
        free_handles(d);
        free(d);
        return fail(err, dir);
    }
    d->durable = durable;
    d->wopts = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(d->wopts, (unsigned char)durable);
    d->ropts = rocksdb_readoptions_create();
    settle(d);
    *out = d;
    return DKV_OK;
}

static int rdb_close(void *arg)
{
    struct rdb_db *d = arg;
    rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
    char *err = NULL;
    int rc = DKV_OK;

    rocksdb_flushoptions_set_wait(fo, 1);
    rocksdb_flush(d->db, fo, &err);
    rocksdb_flushoptions_destroy(fo);
    if (err != NULL)
        rc = fail(err, "flush");
    free_handles(d);
    free(d);
    return rc;
}

static int rdb_conn_open(void *arg, void **out)
{
    struct rdb_conn *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return DKV_ERR_NOMEM;
    c->db = arg;
    *out = c;
    return DKV_OK;
}

static void rdb_conn_close(void *arg)
{
    struct rdb_conn *c = arg;

    if (c->batch != NULL)
        rocksdb_writebatch_destroy(c->batch);
    free(c);
}

static int rdb_get(void *arg, const void *key, size_t klen, void *buf, size_t cap,
                   size_t *vlen)
{
    struct rdb_conn *c = arg;
    char *err = NULL;
    rocksdb_pinnableslice_t *ps = rocksdb_get_pinned(c->db->db, c->db->ropts, key,
                                                     klen, &err);
    const char *v;

    if (err != NULL)
        return fail(err, "get");
    if (ps == NULL)
        return DKV_NOTFOUND;
    v = rocksdb_pinnableslice_value(ps, vlen);
    memcpy(buf, v, *vlen < cap ? *vlen : cap);
    rocksdb_pinnableslice_destroy(ps);
    return DKV_OK;
}

static int rdb_multi_get(void *arg, size_t n, const void *const *keys,
                         const size_t *klens, void *const *bufs, const size_t *caps,
                         size_t *vlens, int *rcs)
{
    struct rdb_conn *c = arg;
    char **vals = calloc(n, sizeof(char *)), **errs = calloc(n, sizeof(char *));
    int rc = vals && errs ? DKV_OK : DKV_ERR_NOMEM;

    if (rc == DKV_OK)
        rocksdb_multi_get(c->db->db, c->db->ropts, n, (const char *const *)keys,
                          klens, vals, vlens, errs);
    for (size_t i = 0; rc == DKV_OK && i < n; i++) {
        if (errs[i] != NULL) {
            rc = rcs[i] = fail(errs[i], "multi_get");
            errs[i] = NULL;
        } else if (vals[i] == NULL) {
            rcs[i] = DKV_NOTFOUND;
        } else {
            memcpy(bufs[i], vals[i], vlens[i] < caps[i] ? vlens[i] : caps[i]);
            rcs[i] = DKV_OK;
        }
    }
    for (size_t i = 0; vals && errs && i < n; i++) {
        rocksdb_free(vals[i]);
        rocksdb_free(errs[i]);
    }
    free(vals);
    free(errs);
    return rc;
}

static int rdb_begin(void *arg)
{
    struct rdb_conn *c = arg;

    if (c->batch == NULL)
        c->batch = rocksdb_writebatch_create();
    rocksdb_writebatch_clear(c->batch);
    return DKV_OK;
}

static int rdb_commit(void *arg)
{
    struct rdb_conn *c = arg;
    char *err = NULL;

    rocksdb_write(c->db->db, c->db->wopts, c->batch, &err);
    rocksdb_writebatch_destroy(c->batch);
    c->batch = NULL;
    return err == NULL ? DKV_OK : fail(err, "write (batch)");
}

static int rdb_put(void *arg, const void *key, size_t klen, const void *val,
                   size_t vlen)
{
    struct rdb_conn *c = arg;
    char *err = NULL;

    if (c->batch != NULL) {
        rocksdb_writebatch_put(c->batch, key, klen, val, vlen);
        return DKV_OK;
    }
    rocksdb_put(c->db->db, c->db->wopts, key, klen, val, vlen, &err);
    return err == NULL ? DKV_OK : fail(err, "put");
}

static int rdb_del(void *arg, const void *key, size_t klen)
{
    struct rdb_conn *c = arg;
    char *err = NULL;

    if (c->batch != NULL) {
        rocksdb_writebatch_delete(c->batch, key, klen);
        return DKV_OK;
    }
    rocksdb_delete(c->db->db, c->db->wopts, key, klen, &err);
    return err == NULL ? DKV_OK : fail(err, "delete");
}

static int rdb_scan(void *arg, const void *key, size_t klen, uint64_t limit,
                    int (*fn)(void *, size_t, size_t), void *fn_arg)
{
    struct rdb_conn *c = arg;
    rocksdb_iterator_t *it = rocksdb_create_iterator(c->db->db, c->db->ropts);
    uint64_t seen = 0;
    char *err = NULL;

    if (key != NULL)
        rocksdb_iter_seek(it, key, klen);
    else
        rocksdb_iter_seek_to_first(it);
    while (rocksdb_iter_valid(it) && (limit == 0 || seen < limit)) {
        size_t kl, vl;
        rocksdb_iter_key(it, &kl);
        rocksdb_iter_value(it, &vl);
        seen++;
        if (fn(fn_arg, kl, vl) != 0)
            break;
        rocksdb_iter_next(it);
    }
    rocksdb_iter_get_error(it, &err);
    rocksdb_iter_destroy(it);
    return err == NULL ? DKV_OK : fail(err, "scan");
}

/* A ticker's count in the text of "rocksdb.options-statistics". */
static uint64_t ticker(const char *stats, const char *name)
{
    const char *p = stats;
    unsigned long long v = 0;
    size_t n = strlen(name);

    while ((p = strstr(p, name)) != NULL) {
        if (p[n] == ' ' && sscanf(p + n, " COUNT : %llu", &v) == 1)
            return v;
        p += n;
    }
    return 0;
}

static int rdb_counters(void *arg, uint64_t *hits, uint64_t *misses)
{
    struct rdb_db *d = arg;
    char *s = rocksdb_property_value(d->db, "rocksdb.options-statistics");

    *hits = *misses = 0;
    if (s == NULL)
        return 0;
    *hits = ticker(s, "rocksdb.block.cache.hit");
    *misses = ticker(s, "rocksdb.block.cache.miss");
    rocksdb_free(s);
    return 1;
}

static const char *rdb_io(void *arg, int *direct)
{
    struct rdb_db *d = arg;

    *direct = d->direct;
    return d->direct ? "direct" : "pread";
}

static const char *rdb_durability(int durable)
{
    return durable ? "WAL, sync=1" : "WAL, sync=0";
}

static void *rdb_mapping(void *db, size_t *len, const char **path)
{
    (void)db;
    *path = NULL;
    *len = 0;
    return NULL;
}

const struct kv_engine_ops kv_rocksdb_ops = {
    .name = "rocksdb",
    .open = rdb_open,
    .close = rdb_close,
    .conn_open = rdb_conn_open,
    .conn_close = rdb_conn_close,
    .get = rdb_get,
    .put = rdb_put,
    .del = rdb_del,
    .begin = rdb_begin,
    .commit = rdb_commit,
    .multi_get = rdb_multi_get,
    .scan = rdb_scan,
    .counters = rdb_counters,
    .io = rdb_io,
    .durability = rdb_durability,
    .mapping = rdb_mapping,
};
