/*
 * bench_kv.c - the engine comparison of dkv-bench, in the style of LevelDB's
 * db_bench: the same workloads through the public API (include/dkv.h) of
 * DirectKV with O_DIRECT ("dkv-direct"), of DirectKV on the page cache
 * ("dkv-buffered", opts.direct = 0), through sqlite3 ("sqlite3", a
 * WITHOUT ROWID table in WAL mode) and, when built with them, lmdb and
 * RocksDB (bench_kv_lmdb.c, bench_kv_rocksdb.c), one after the other in the
 * same run, with the ratio dkv-direct / each other engine at the end.
 * bench/README.md says how to run it and read it.
 *
 * Entry point:
 *   bench_kv_main    "dkv-bench [--benchmarks=LIST ...]": parses the flags
 *                    (bench_kv_cli.c), runs the benchmarks, prints and
 *                    writes JSON / CSV (bench_kv_out.c) and charts
 *                    (bench_kv_plot.c)
 *
 * How a benchmark runs (for each benchmark in --benchmarks, for each engine
 * in --engines, so that the engines of one benchmark run back to back):
 *   - a fill starts from an empty directory; any other benchmark first
 *     loads the keys (fillseq, not measured) if no fill came before it;
 *   - every benchmark opens the engine afresh (an empty pool / cache) after
 *     dropping the page cache (--drop-caches), so a "cold" figure is cold
 *     for the buffered engines too, and closes it at the end;
 *   - memory is fair: sqlite3's page cache gets the bytes of dkv's pool
 *     (--pool), split evenly over its connections, one per thread, since
 *     sqlite3 connections do not share a cache; and while a phase runs with
 *     --pool, the buffered engines' files are dropped from the page cache
 *     every 20 ms (--cap_page_cache), or they would cache the data set in
 *     the machine's free memory and no read of theirs would be out of
 *     memory;
 *   - the fills run with the in-memory budget (--fill_pool, by default
 *     --mem_pool's): a random fill of a tree several times the pool costs
 *     one random read per put, which readrandom already measures, and
 *     would take minutes;
 *   - timed phases (reads, syncput, readwhilewriting) run a short warm-up,
 *     then --duration seconds (syncput: --write_duration); the workers
 *     count operations and the main thread reads the counters and the
 *     engine's statistics at the two edges of the window (bench_util.c), so
 *     rates and hit ratios cover the same interval; latencies are per call,
 *     in log-linear histograms;
 *   - fills, readseq and deleterandom are finite: their time runs from the
 *     first worker's start to the last worker's end;
 *   - ycsb-a..ycsb-f are YCSB's core workloads (timed, writes not durable),
 *     zipfian unless --distribution=uniform; ycsb-d reads the latest keys;
 *   - scanresist measures reads of a hot set before and right after a full scan
 *     on the same open database (and, for sqlite3, the same connections);
 *   - --sweep-pool runs readrandom (warmed by a scan) at budgets from 1/16
 *     to 2x the raw data, for the buffer-pool curve;
 *   - --mem-limit runs each engine in a child process in a memory cgroup
 *     of its own (bench_kv_cgroup.c); the child sends its records back.
 * Where the data is larger than the pool, fio's 4 KiB (one page) random
 * reads of dkv-direct's data file at depth 2 and 32 are measured right after
 * readrandom and multiget, as the device's ceiling for those two.
 */
#include "bench.h"
#include "bench_kv.h"

#include "dkv.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef DKV_BENCH_SQLITE
#include <sqlite3.h>
#endif

#define EXIT_USAGE          2
#define WARMUP_MAX          0.5          /* seconds before a timed window    */
#define MULTIGET_KEYS       64u
#define ZIPF_THETA          0.99
#define YCSB_SCAN_MAX       100u         /* ycsb-e: 1..100 keys a scan       */
#define PROGRESS_EVERY      0.25         /* seconds between progress lines  */
#define SCAN_WARM_MAX       1.5          /* scanresist: warm-up before       */
#define SCAN_WINDOW         1.0          /* scanresist: the window before    */
/* scanresist: the hot set's raw bytes / the budget.  Its pages then take
   about half the budget (B-tree pages after random inserts are about 70%
   full), so the hot set fits the part of a cache that a scan-resistant
   policy protects - InnoDB's young part is 63% of the pool - and not only
   the cache as a whole (at 0.5 its pages took about 70%: part of it sat
   in the old part, which every full scan flushes by design). */
#define SCAN_HOT_SHARE      0.35
#define SQ_PUBLISH_EVERY    64u          /* sqlite3 counters, every N calls  */
#define SQ_BUSY_MS          60000
#define CAP_EVERY           0.02         /* seconds between page-cache drops */
#define CAP_FILES_MAX       64

/* ---- the benchmarks --------------------------------------------------------- */

/* The operations of a YCSB mix, in percent of the calls (YCSB's core
   workloads; an update writes the whole value, an insert a new key). */
struct ycsb_mix {
    unsigned read, update, insert, scan, rmw;
    int      latest;               /* ycsb-d: the newest keys most often    */
};

static const struct ycsb_mix ycsb_mixes[6] = {
    { 50, 50, 0, 0, 0, 0 },        /* a: update heavy                       */
    { 95, 5, 0, 0, 0, 0 },         /* b: read mostly                        */
    { 100, 0, 0, 0, 0, 0 },        /* c: read only                          */
    { 95, 0, 5, 0, 0, 1 },         /* d: read latest                        */
    { 0, 0, 5, 95, 0, 0 },         /* e: short ranges                       */
    { 50, 0, 0, 0, 50, 0 },        /* f: read-modify-write                  */
};

static int is_ycsb(int bench)
{
    return bench >= B_YCSB_A && bench <= B_YCSB_F;
}

const struct kv_bench_def kv_bench_defs[B_COUNT] = {
    [B_FILLSEQ]          = { "fillseq",          SHAPE_FILL,   0, { 1, 0 }, 1 },
    [B_FILLRANDOM]       = { "fillrandom",       SHAPE_FILL,   0, { 1, 0 }, 1 },
    [B_READRANDOM]       = { "readrandom",       SHAPE_TIMED,  1, { 1, 2 }, 0 },
    [B_READSEQ]          = { "readseq",          SHAPE_FINITE, 0, { 1, 0 }, 0 },
    [B_MULTIGET]         = { "multiget",         SHAPE_TIMED,  1, { 1, 0 }, 0 },
    [B_READWHILEWRITING] = { "readwhilewriting", SHAPE_TIMED,  1, { 1, 0 }, 1 },
    [B_SYNCPUT]          = { "syncput",          SHAPE_TIMED,  1, { 1, 8 }, 1 },
    [B_DELETERANDOM]     = { "deleterandom",     SHAPE_FINITE, 0, { 1, 0 }, 1 },
    [B_READRANDOM_MEM]   = { "readrandom_mem",   SHAPE_TIMED,  1, { 1, 2 }, 0 },
    [B_YCSB_A]           = { "ycsb-a",           SHAPE_TIMED,  1, { 2, 0 }, 1 },
    [B_YCSB_B]           = { "ycsb-b",           SHAPE_TIMED,  1, { 2, 0 }, 1 },
    [B_YCSB_C]           = { "ycsb-c",           SHAPE_TIMED,  1, { 2, 0 }, 0 },
    [B_YCSB_D]           = { "ycsb-d",           SHAPE_TIMED,  1, { 2, 0 }, 1 },
    [B_YCSB_E]           = { "ycsb-e",           SHAPE_TIMED,  1, { 2, 0 }, 1 },
    [B_YCSB_F]           = { "ycsb-f",           SHAPE_TIMED,  1, { 2, 0 }, 1 },
    [B_SCANRESIST]       = { "scanresist",       SHAPE_TIMED,  1, { 1, 0 }, 0 },
    [B_SWEEP]            = { "sweep_readrandom", SHAPE_TIMED,  0, { 1, 0 }, 0 },
    [B_HOTREAD]          = { "hotread",          SHAPE_TIMED,  1, { 1, 0 }, 0 },
};

static int is_fill(int bench)
{
    return kv_bench_defs[bench].shape == SHAPE_FILL;
}

/* ---- the engines -------------------------------------------------------------- */

const char *const kv_engine_names[ENGINE_MAX] = {
    "dkv-direct", "dkv-buffered", "sqlite3", "lmdb", "rocksdb"
};

/* The method table of an engine reached through another library, or NULL:
   a dkv engine, sqlite3, or one this build does not have. */
static const struct kv_engine_ops *ext_ops(int kind)
{
#ifdef DKV_BENCH_LMDB
    if (kind == E_LMDB)
        return &kv_lmdb_ops;
#endif
#ifdef DKV_BENCH_ROCKSDB
    if (kind == E_ROCKSDB)
        return &kv_rocksdb_ops;
#endif
    (void)kind;
    return NULL;
}

int kv_engine_built(int kind)
{
#ifdef DKV_BENCH_SQLITE
    if (kind == E_SQLITE)
        return 1;
#endif
    return kind == E_DKV_DIRECT || kind == E_DKV_BUFFERED || ext_ops(kind) != NULL;
}

const double kv_cdf_pcts[KV_CDF_POINTS] = {
    0.1, 1, 5, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 95, 97.5, 99, 99.5,
    99.8, 99.9, 99.95, 99.99, 99.999, 100
};

/* Counters at one edge of a window. */
struct kv_counters {
    uint64_t hits, misses, pages_read, syncs, disk_read;
    double   cpu;                       /* process CPU seconds             */
};

/* ---- keys and values ---------------------------------------------------------------- */

/* Key i: its decimal digits right-aligned in key_size bytes of '0' (so the
   memcmp order is the numeric order, as db_bench's "%016d"). */
static void make_key(char *out, unsigned key_size, uint64_t i)
{
    char *p = out + key_size;

    memset(out, '0', key_size);
    do {
        *--p = (char)('0' + i % 10);
        i /= 10;
    } while (i != 0 && p > out);
}

/* Value of key i: its index in the first 8 bytes (a lookup checks that it
   got its own key's value), then bytes cut from the random buffer at a
   place that depends on the key and on the write's version. */
static void make_value(const struct kv_ctx *x, unsigned char *out, uint64_t i,
                       uint64_t version)
{
    unsigned vs = x->cfg.value_size;
    size_t off;

    if (vs == 0)
        return;
    off = (size_t)((i * 2654435761u + version * 40503u) % (RAND_BUF_LEN - vs));
    memcpy(out, x->rand_buf + off, vs);
    if (vs >= 8)
        memcpy(out, &i, 8);
}

/* 1 when val (vlen bytes) is a value of key i. */
static int value_ok(const struct kv_ctx *x, const void *val, size_t vlen,
                    uint64_t i)
{
    return vlen == x->cfg.value_size &&
           (vlen < 8 || memcmp(val, &i, 8) == 0);
}

/* ---- the dkv engines ---------------------------------------------------------------- */

static int dkv_kind_open(struct kv_db *db, int create)
{
    dkv_options o;
    int rc;

    dkv_options_init(&o);
    o.pool_size = db->budget;
    o.page_size = db->cfg->page_size;
    o.io_engine = db->cfg->io_engine;
    o.direct = db->kind == E_DKV_DIRECT;
    o.commit_mode = db->durable ? DKV_COMMIT_SYNC : DKV_COMMIT_ASYNC;
    o.create_if_missing = create;
    rc = dkv_open(db->dir, &o, &db->dkv);
    if (rc != DKV_OK)
        fprintf(stderr, "dkv-bench: dkv_open %s: %s\n", db->dir, dkv_strerror(rc));
    return rc;
}

static void dkv_counters(struct kv_db *db, struct kv_counters *c)
{
    dkv_stats st;

    if (dkv_stats_get(db->dkv, &st) != DKV_OK)
        return;
    c->hits = st.hits;
    c->misses = st.misses;
    c->pages_read = st.pages_read;
    c->syncs = st.wal_syncs;
}

/* ---- the sqlite3 engine -------------------------------------------------------------- */

#ifdef DKV_BENCH_SQLITE

static int sq_fail(sqlite3 *sq, const char *what)
{
    fprintf(stderr, "dkv-bench: sqlite3: %s: %s\n", what,
            sq ? sqlite3_errmsg(sq) : "out of memory");
    return DKV_ERR_IO;
}

static int sq_exec(sqlite3 *sq, const char *sql)
{
    char *err = NULL;

    if (sqlite3_exec(sq, sql, NULL, NULL, &err) == SQLITE_OK)
        return DKV_OK;
    fprintf(stderr, "dkv-bench: sqlite3: %s: %s\n", sql, err ? err : "?");
    sqlite3_free(err);
    return DKV_ERR_IO;
}

static int sq_prepare(sqlite3 *sq, const char *sql, sqlite3_stmt **st)
{
    if (sqlite3_prepare_v3(sq, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) ==
        SQLITE_OK)
        return DKV_OK;
    return sq_fail(sq, sql);
}

/* Publishes the connection's cache hits and misses (see struct kv_conn). */
static void sq_publish(struct kv_conn *c)
{
    int cur = 0, hw = 0;

    sqlite3_db_status(c->sq, SQLITE_DBSTATUS_CACHE_HIT, &cur, &hw, 0);
    atomic_store_explicit(&c->sq_hits, (uint64_t)(unsigned)cur, memory_order_relaxed);
    sqlite3_db_status(c->sq, SQLITE_DBSTATUS_CACHE_MISS, &cur, &hw, 0);
    atomic_store_explicit(&c->sq_misses, (uint64_t)(unsigned)cur, memory_order_relaxed);
}

static void sq_tick(struct kv_conn *c)
{
    if (++c->calls >= SQ_PUBLISH_EVERY) {
        c->calls = 0;
        sq_publish(c);
    }
}

/* Opens connection c with a share of the budget (cache_size in KiB) and
   prepares its statements; the first one of a new database sets it up. */
static int sq_conn_open(struct kv_db *db, struct kv_conn *c, unsigned share,
                        int first)
{
    char path[PATH_MAX + 16], sql[128];
    int rc;

    snprintf(path, sizeof(path), "%s/kv.db", db->dir);
    /* One connection per thread, never shared: no mutex needed. */
    if (sqlite3_open_v2(path, &c->sq, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                        SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
        return sq_fail(c->sq, path);
    sqlite3_busy_timeout(c->sq, SQ_BUSY_MS);
    snprintf(sql, sizeof(sql), "PRAGMA page_size=%u", db->cfg->page_size);
    rc = first ? sq_exec(c->sq, sql) : DKV_OK;
    if (rc == DKV_OK && first)
        rc = sq_exec(c->sq, "PRAGMA journal_mode=WAL");
    if (rc == DKV_OK)
        rc = sq_exec(c->sq, db->durable ? "PRAGMA synchronous=FULL"
                                        : "PRAGMA synchronous=NORMAL");
    snprintf(sql, sizeof(sql), "PRAGMA cache_size=-%llu",
             (unsigned long long)(db->budget / share / 1024));
    if (rc == DKV_OK)
        rc = sq_exec(c->sq, sql);
    if (rc == DKV_OK && first)
        rc = sq_exec(c->sq, "CREATE TABLE IF NOT EXISTS kv(k BLOB PRIMARY KEY, "
                            "v BLOB) WITHOUT ROWID");
    if (rc == DKV_OK)
        rc = sq_prepare(c->sq, "SELECT v FROM kv WHERE k=?1", &c->st_get);
    if (rc == DKV_OK)
        rc = sq_prepare(c->sq, "INSERT OR REPLACE INTO kv(k,v) VALUES(?1,?2)",
                        &c->st_put);
    if (rc == DKV_OK)
        rc = sq_prepare(c->sq, "DELETE FROM kv WHERE k=?1", &c->st_del);
    if (rc == DKV_OK)
        rc = sq_prepare(c->sq, "BEGIN", &c->st_begin);
    if (rc == DKV_OK)
        rc = sq_prepare(c->sq, "COMMIT", &c->st_commit);
    if (rc == DKV_OK)
        rc = sq_prepare(c->sq, "SELECT k, v FROM kv WHERE k >= ?1 ORDER BY k LIMIT ?2",
                        &c->st_scan);
    return rc;
}

static void sq_conn_close(struct kv_conn *c)
{
    sqlite3_finalize(c->st_get);
    sqlite3_finalize(c->st_put);
    sqlite3_finalize(c->st_del);
    sqlite3_finalize(c->st_begin);
    sqlite3_finalize(c->st_commit);
    sqlite3_finalize(c->st_scan);
    sqlite3_close(c->sq);
    c->sq = NULL;
    c->st_get = c->st_put = c->st_del = c->st_begin = c->st_commit = NULL;
    c->st_scan = NULL;
}

/* Runs a statement that returns no row. */
static int sq_step_done(struct kv_conn *c, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);

    sqlite3_reset(st);
    return rc == SQLITE_DONE ? DKV_OK : sq_fail(c->sq, what);
}

static int sq_get(struct kv_conn *c, const void *key, size_t klen, void *buf,
                  size_t cap, size_t *vlen)
{
    sqlite3_stmt *st = c->st_get;
    int rc;

    sqlite3_bind_blob(st, 1, key, (int)klen, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const void *v = sqlite3_column_blob(st, 0);
        size_t n = (size_t)sqlite3_column_bytes(st, 0);
        memcpy(buf, v, n < cap ? n : cap);
        *vlen = n;
        rc = DKV_OK;
    } else {
        rc = rc == SQLITE_DONE ? DKV_NOTFOUND : sq_fail(c->sq, "get");
    }
    sqlite3_reset(st);
    sq_tick(c);
    return rc;
}

static int sq_put(struct kv_conn *c, const void *key, size_t klen,
                  const void *val, size_t vlen)
{
    sqlite3_bind_blob(c->st_put, 1, key, (int)klen, SQLITE_STATIC);
    sqlite3_bind_blob(c->st_put, 2, val, (int)vlen, SQLITE_STATIC);
    sq_tick(c);
    return sq_step_done(c, c->st_put, "put");
}

static int sq_delete(struct kv_conn *c, const void *key, size_t klen)
{
    sqlite3_bind_blob(c->st_del, 1, key, (int)klen, SQLITE_STATIC);
    sq_tick(c);
    return sq_step_done(c, c->st_del, "delete");
}

/* A transaction around several statements (multiget, fillseq batches). */
static int sq_begin(struct kv_conn *c)
{
    return sq_step_done(c, c->st_begin, "BEGIN");
}

static int sq_commit(struct kv_conn *c)
{
    return sq_step_done(c, c->st_commit, "COMMIT");
}

/* Up to limit rows from the first key >= key, in order; *bytes += theirs. */
static int sq_scan(struct kv_conn *c, const void *key, size_t klen, uint64_t limit,
                   uint64_t *bytes)
{
    sqlite3_stmt *st = c->st_scan;
    int rc;

    sqlite3_bind_blob(st, 1, key, (int)klen, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)limit);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        sqlite3_column_blob(st, 0);
        sqlite3_column_blob(st, 1);
        *bytes += (uint64_t)sqlite3_column_bytes(st, 0) +
                  (uint64_t)sqlite3_column_bytes(st, 1);
    }
    sqlite3_reset(st);
    sq_tick(c);
    return rc == SQLITE_DONE ? DKV_OK : sq_fail(c->sq, "scan");
}

/* Reads every page of the table into this connection's cache. */
static int sq_warm(struct kv_conn *c)
{
    return sq_exec(c->sq, "SELECT sum(length(v)) FROM kv");
}

#endif /* DKV_BENCH_SQLITE */

/* ---- the engine layer: what the workloads call ---------------------------------- */

/* Opens db with budget bytes of cache; `threads` connections will come. */
static int kv_open(struct kv_db *db, uint64_t budget, int durable, int create,
                   unsigned threads)
{
    db->budget = budget;
    db->durable = durable;
    db->nconns = 0;
    if (db->ops != NULL)
        return db->ops->open(db->dir, budget, db->cfg->page_size, durable, create,
                             threads, &db->ext);
    if (db->kind != E_SQLITE)
        return dkv_kind_open(db, create);
    return DKV_OK;       /* sqlite3: the connections are the database */
}

static int kv_close(struct kv_db *db)
{
    int rc = DKV_OK;

    if (db->dkv != NULL) {
        rc = dkv_close(db->dkv);
        if (rc != DKV_OK)
            fprintf(stderr, "dkv-bench: dkv_close %s: %s\n", db->dir,
                    dkv_strerror(rc));
        db->dkv = NULL;
    }
    if (db->ext != NULL) {
        rc = db->ops->close(db->ext);
        db->ext = NULL;
    }
    malloc_trim(0);       /* the next engine's RSS starts from its own */
    return rc;
}

/* Gives the database n handles (sqlite3: n connections, each with 1/n of
   the budget). */
static int kv_attach(struct kv_db *db, unsigned n)
{
    unsigned i;
    int rc = DKV_OK;

    for (i = 0; i < n && rc == DKV_OK; i++) {
        struct kv_conn *c = &db->conns[i];
        memset(c, 0, sizeof(*c));
        c->db = db;
#ifdef DKV_BENCH_SQLITE
        if (db->kind == E_SQLITE)
            rc = sq_conn_open(db, c, n, i == 0);
#endif
        if (db->ops != NULL)
            rc = db->ops->conn_open(db->ext, &c->ext);
        db->nconns = i + 1;
    }
    return rc;
}

static void kv_detach(struct kv_db *db)
{
    unsigned i;

    for (i = 0; i < db->nconns; i++) {
        if (db->conns[i].ext != NULL)
            db->ops->conn_close(db->conns[i].ext);
        db->conns[i].ext = NULL;
#ifdef DKV_BENCH_SQLITE
        if (db->conns[i].sq != NULL)
            sq_conn_close(&db->conns[i]);
#endif
    }
    db->nconns = 0;
}

static int kv_get(struct kv_conn *c, const void *key, size_t klen, void *buf,
                  size_t cap, size_t *vlen)
{
#ifdef DKV_BENCH_SQLITE
    if (c->db->kind == E_SQLITE)
        return sq_get(c, key, klen, buf, cap, vlen);
#endif
    if (c->ext != NULL)
        return c->db->ops->get(c->ext, key, klen, buf, cap, vlen);
    return dkv_get(c->db->dkv, key, klen, buf, cap, vlen);
}

static int kv_put(struct kv_conn *c, const void *key, size_t klen,
                  const void *val, size_t vlen)
{
#ifdef DKV_BENCH_SQLITE
    if (c->db->kind == E_SQLITE)
        return sq_put(c, key, klen, val, vlen);
#endif
    if (c->ext != NULL)
        return c->db->ops->put(c->ext, key, klen, val, vlen);
    return dkv_put(c->db->dkv, key, klen, val, vlen);
}

static int kv_delete(struct kv_conn *c, const void *key, size_t klen)
{
    int rc;

#ifdef DKV_BENCH_SQLITE
    if (c->db->kind == E_SQLITE)
        return sq_delete(c, key, klen);
#endif
    if (c->ext != NULL)
        return c->db->ops->del(c->ext, key, klen);
    rc = dkv_delete(c->db->dkv, key, klen);
    return rc == DKV_NOTFOUND ? DKV_OK : rc;
}

/* n lookups in one call: dkv_multi_get, or n prepared lookups in one read
   transaction for sqlite3 (its nearest equivalent). */
static int kv_multi_get(struct kv_conn *c, size_t n, const void *const *keys,
                        const size_t *klens, void *const *bufs,
                        const size_t *caps, size_t *vlens, int *rcs)
{
#ifdef DKV_BENCH_SQLITE
    if (c->db->kind == E_SQLITE) {
        size_t i;
        int rc = sq_begin(c);
        for (i = 0; i < n && rc == DKV_OK; i++) {
            rcs[i] = sq_get(c, keys[i], klens[i], bufs[i], caps[i], &vlens[i]);
            rc = rcs[i] < 0 ? rcs[i] : DKV_OK;
        }
        return rc == DKV_OK ? sq_commit(c) : rc;
    }
#endif
    if (c->ext != NULL)
        return c->db->ops->multi_get(c->ext, n, keys, klens, bufs, caps, vlens, rcs);
    return dkv_multi_get(c->db->dkv, n, keys, klens, bufs, caps, vlens, rcs);
}

/* A transaction around several writes (fillseq's batches): sqlite3 and
   the ext_ops engines; dkv uses a dkv_batch instead. */
static int kv_begin(struct kv_conn *c)
{
#ifdef DKV_BENCH_SQLITE
    if (c->db->kind == E_SQLITE)
        return sq_begin(c);
#endif
    return c->ext != NULL ? c->db->ops->begin(c->ext) : DKV_ERR_UNSUPPORTED;
}

static int kv_commit(struct kv_conn *c)
{
#ifdef DKV_BENCH_SQLITE
    if (c->db->kind == E_SQLITE)
        return sq_commit(c);
#endif
    return c->ext != NULL ? c->db->ops->commit(c->ext) : DKV_ERR_UNSUPPORTED;
}

/* What an ext_ops short scan counts. */
static int scan_acc_row(void *arg, size_t klen, size_t vlen)
{
    *(uint64_t *)arg += klen + vlen;
    return 0;
}

/* A short range read (ycsb-e): up to limit keys from key; *bytes += the
   keys' and values' bytes. */
static int kv_scan(struct kv_conn *c, const void *key, size_t klen, uint64_t limit,
                   uint64_t *bytes)
{
    uint64_t acc = 0;
    dkv_iter *it;
    uint64_t n = 0;
    int rc;

#ifdef DKV_BENCH_SQLITE
    if (c->db->kind == E_SQLITE)
        return sq_scan(c, key, klen, limit, bytes);
#endif
    if (c->ext != NULL) {
        rc = c->db->ops->scan(c->ext, key, klen, limit, scan_acc_row, &acc);
        *bytes += acc;
        return rc;
    }
    rc = dkv_iter_new(c->db->dkv, &it);
    if (rc != DKV_OK)
        return rc;
    rc = dkv_iter_seek(it, key, klen);
    while (rc == DKV_OK && dkv_iter_valid(it) && n++ < limit) {
        size_t kl, vl;
        dkv_iter_key(it, &kl);
        dkv_iter_value(it, &vl);
        *bytes += kl + vl;
        rc = dkv_iter_next(it);
    }
    dkv_iter_free(it);
    return rc;
}

/* The counters of the whole database at this moment. */
static void kv_counters(struct kv_db *db, struct kv_counters *ctr)
{
    memset(ctr, 0, sizeof(*ctr));
    if (db->ops != NULL) {
        if (db->ops->counters(db->ext, &ctr->hits, &ctr->misses))
            ctr->pages_read = ctr->misses;  /* a block read per miss */
        return;
    }
    if (db->kind != E_SQLITE) {
        dkv_counters(db, ctr);
        return;
    }
    for (unsigned i = 0; i < db->nconns; i++) {
        ctr->hits += atomic_load(&db->conns[i].sq_hits);
        ctr->misses += atomic_load(&db->conns[i].sq_misses);
    }
    ctr->pages_read = ctr->misses;     /* each miss is one read() of a page */
}

static const char *kv_io_name(struct kv_db *db, int *direct)
{
    dkv_stats st;

    *direct = 0;
    if (db->ops != NULL)
        return db->ops->io(db->ext, direct);
    if (db->kind == E_SQLITE || dkv_stats_get(db->dkv, &st) != DKV_OK)
        return "pread";                 /* sqlite3's unix VFS */
    *direct = st.direct;
    return st.io_engine;
}

static void kv_durability(const struct kv_db *db, int bench, char *out, size_t room)
{
    if (!kv_bench_defs[bench].writes) {
        snprintf(out, room, "-");
        return;
    }
    if (db->ops != NULL)
        snprintf(out, room, "%s", db->ops->durability(db->durable));
    else if (db->kind == E_SQLITE)
        snprintf(out, room, "WAL, synchronous=%s", db->durable ? "FULL" : "NORMAL");
    else if (db->durable)
        snprintf(out, room, "DKV_COMMIT_SYNC");
    else
        snprintf(out, room, "DKV_COMMIT_ASYNC (log synced every 1000 ms)");
}

/* ---- the system: memory, the page cache, disk reads ------------------------------------ */

static uint64_t rss_bytes(void)
{
    unsigned long long size = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");

    if (f == NULL)
        return 0;
    if (fscanf(f, "%llu %llu", &size, &resident) != 2)
        resident = 0;
    fclose(f);
    return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* Bytes this process caused to be read from the block device (O_DIRECT
   reads included; page-cache hits not). */
static uint64_t disk_read_bytes(void)
{
    char line[128];
    unsigned long long v = 0;
    FILE *f = fopen("/proc/self/io", "r");

    if (f == NULL)
        return 0;
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "read_bytes: %llu", &v) == 1)
            break;
    fclose(f);
    return v;
}

/* Calls fn(path, arg) for every regular file in dir. */
static void for_each_file(const char *dir, void (*fn)(const char *, void *),
                          void *arg)
{
    char path[PATH_MAX + 256];
    struct dirent *de;
    struct stat sb;
    DIR *d = opendir(dir);

    if (d == NULL)
        return;
    while ((de = readdir(d)) != NULL) {
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode))
            fn(path, arg);
    }
    closedir(d);
}

/* Adds the bytes of path resident in the page cache (mincore over a
   read-only mapping, which itself reads nothing). */
static void add_resident(const char *path, void *arg)
{
    uint64_t *total = arg;
    long psz = sysconf(_SC_PAGESIZE);
    struct stat sb;
    unsigned char *vec;
    size_t pages, i;
    void *map;
    int fd = open(path, O_RDONLY);

    if (fd < 0)
        return;
    if (fstat(fd, &sb) != 0 || sb.st_size == 0) {
        close(fd);
        return;
    }
    pages = ((size_t)sb.st_size + (size_t)psz - 1) / (size_t)psz;
    map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_SHARED, fd, 0);
    vec = malloc(pages);
    if (map != MAP_FAILED && vec != NULL && mincore(map, (size_t)sb.st_size, vec) == 0)
        for (i = 0; i < pages; i++)
            *total += (uint64_t)(vec[i] & 1) * (uint64_t)psz;
    free(vec);
    if (map != MAP_FAILED)
        munmap(map, (size_t)sb.st_size);
    close(fd);
}

static uint64_t page_cache_bytes(const char *dir)
{
    uint64_t total = 0;

    for_each_file(dir, add_resident, &total);
    return total;
}

static void add_size(const char *path, void *arg)
{
    struct stat sb;

    if (stat(path, &sb) == 0)
        *(uint64_t *)arg += (uint64_t)sb.st_size;
}

static void fadvise_dontneed(const char *path, void *arg)
{
    int fd = open(path, O_RDONLY);

    (void)arg;
    if (fd < 0)
        return;
    fdatasync(fd);                     /* dirty pages are not dropped */
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
}

/* Empties the page cache before a phase: all of it (root), else at least
   the files of every engine's database. */
static void drop_caches(struct kv_ctx *x)
{
    unsigned e;
    int fd;

    if (x->cfg.drop == DROP_NONE)
        return;
    if (x->cfg.drop == DROP_ALL) {
        sync();
        fd = open("/proc/sys/vm/drop_caches", O_WRONLY);
        if (fd >= 0 && write(fd, "3", 1) == 1) {
            close(fd);
            return;
        }
        if (fd >= 0)
            close(fd);
        if (!x->drop_noted++)
            fprintf(stderr, "dkv-bench: note: cannot write /proc/sys/vm/drop_caches "
                    "(%s); dropping the databases' files with posix_fadvise\n",
                    strerror(errno));
    }
    for (e = 0; e < x->cfg.engine_count; e++)
        for_each_file(x->dbs[e].dir, fadvise_dontneed, NULL);
}

static void remove_file(const char *path, void *arg)
{
    (void)arg;
    unlink(path);
}

/* Empties (and creates) an engine's directory. */
static int reset_dir(const char *dir)
{
    for_each_file(dir, remove_file, NULL);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "dkv-bench: mkdir %s: %s\n", dir, strerror(errno));
        return DKV_ERR_IO;
    }
    return DKV_OK;
}

/* ---- worker threads ------------------------------------------------------------------ */

struct kv_run;

struct kv_worker {
    struct bench_worker w;              /* first: bench_team's view         */
    struct kv_run      *run;
    struct kv_conn     *conn;
    struct bench_hist  *hist;
    uint64_t            rng;
    struct bench_zipf   latest;         /* ycsb-d: over the keys so far     */
    uint64_t            next, end;      /* finite work: [next, end)         */
    uint64_t            found, lookups, bytes;
    int                 writer;         /* readwhilewriting's writer        */
    uint64_t            start_ns, done_ns;
};

/* One measured run: a benchmark on one engine with one thread count. */
struct kv_run {
    struct kv_ctx *x;
    struct kv_db  *db;
    int            bench;
    unsigned       threads;             /* workers (the writer included)    */
    int            always_measure;      /* finite runs: no window           */
    /* The page-cache cap: with --cap_page_cache, in the phases that run
       with --pool, the main thread drops the database's files from the page
       cache every CAP_EVERY seconds, so that a buffered engine caches in
       its budget only, as dkv-direct does, rather than in all the memory
       the machine has free. */
    int            cap_fds[CAP_FILES_MAX];
    unsigned       cap_count;
    /* An engine whose cache is the page cache (lmdb) keeps the budget
       there: cap_trim drops random resident pages of its mapped data file
       (trim_fd, mapped at trim_map) down to the budget. */
    int            trim_fd;
    unsigned char *trim_map;
    size_t         trim_len;
    unsigned char *trim_vec;
    size_t         trim_vec_len;
    uint64_t       trim_rng;
    /* The progress line on stderr. */
    double         prog_t0, prog_len, prog_next, prog_t_last;
    uint64_t       prog_total, prog_ops_last;
    _Atomic unsigned finished;
    struct kv_worker *workers;
    struct bench_team team;
};

/* Adds n operations to the worker's counter (one writer: a plain store). */
static void count_ops(struct kv_worker *kw, uint64_t n)
{
    atomic_store_explicit(&kw->w.ops,
                          atomic_load_explicit(&kw->w.ops, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static void note_latency(struct kv_worker *kw, uint64_t t0)
{
    if (kw->run->always_measure || bench_measuring(&kw->w))
        bench_hist_add(kw->hist, bench_now_ns() - t0);
}

/* 1 when the run draws its keys from the scrambled zipfian: with
   --distribution=zipfian, and in the YCSB workloads unless
   --distribution=uniform was given (zipfian is YCSB's default). */
static int run_zipf(const struct kv_ctx *x, int bench)
{
    return x->cfg.zipf || (is_ycsb(bench) && !x->cfg.dist_set);
}

/* The keys that exist now: --num, and the YCSB inserts so far. */
static uint64_t key_count(const struct kv_worker *kw)
{
    return kw->run->x->cfg.num +
           atomic_load_explicit(&kw->run->db->inserted, memory_order_relaxed);
}

/* A key index drawn from the run's distribution. */
static uint64_t pick_key(struct kv_worker *kw)
{
    const struct kv_ctx *x = kw->run->x;
    uint64_t n = is_ycsb(kw->run->bench) ? key_count(kw) : x->cfg.num;

    if (kw->run->bench == B_HOTREAD)    /* scanresist's hot set */
        return x->hot_first + bench_rand_below(&kw->rng, x->hot_count);
    if (kw->run->bench == B_YCSB_D) {   /* the newest key the most often */
        bench_zipf_grow(&kw->latest, n);
        return n - 1 - bench_zipf_next(&kw->latest, &kw->rng);
    }
    if (run_zipf(x, kw->run->bench))
        return bench_zipf_scrambled(&x->zipf, &kw->rng, n);
    return bench_rand_below(&kw->rng, n);
}

/* One lookup of key i, its answer checked; 0 or a DKV_ERR_*. */
static int do_get(struct kv_worker *kw, uint64_t i, char *key, unsigned char *val)
{
    const struct kv_cfg *cfg = &kw->run->x->cfg;
    size_t vlen = 0;
    int rc;

    make_key(key, cfg->key_size, i);
    rc = kv_get(kw->conn, key, cfg->key_size, val, cfg->value_size, &vlen);
    kw->lookups++;
    if (rc == DKV_OK) {
        if (!value_ok(kw->run->x, val, vlen, i)) {
            fprintf(stderr, "dkv-bench: %s: key %.*s: a wrong value (%zu bytes)\n",
                    kw->run->db->name, (int)cfg->key_size, key, vlen);
            return DKV_ERR_CORRUPT;
        }
        kw->found++;
    }
    return rc < 0 ? rc : DKV_OK;
}

static int do_put(struct kv_worker *kw, uint64_t i, char *key, unsigned char *val,
                  uint64_t version)
{
    const struct kv_cfg *cfg = &kw->run->x->cfg;

    make_key(key, cfg->key_size, i);
    make_value(kw->run->x, val, i, version);
    return kv_put(kw->conn, key, cfg->key_size, val, cfg->value_size);
}

/* fillseq: keys in order, FILLSEQ_BATCH per commit (a dkv_batch, or one
   sqlite3 transaction). */
static int work_fillseq(struct kv_worker *kw, char *key, unsigned char *val)
{
    const struct kv_cfg *cfg = &kw->run->x->cfg;
    int own = kw->conn->db->kind == E_SQLITE || kw->conn->ext != NULL;
    dkv_batch *b = own ? NULL : dkv_batch_new();
    int rc = DKV_OK;

    if (!own && b == NULL)
        return DKV_ERR_NOMEM;
    while (rc == DKV_OK && kw->next < kw->end && !bench_stopping(&kw->w)) {
        uint64_t t0 = bench_now_ns(), n = 0;
        if (b == NULL)
            rc = kv_begin(kw->conn);
        for (; rc == DKV_OK && n < FILLSEQ_BATCH && kw->next < kw->end; n++, kw->next++) {
            make_key(key, cfg->key_size, kw->next);
            make_value(kw->run->x, val, kw->next, 0);
            rc = b ? dkv_batch_put(b, key, cfg->key_size, val, cfg->value_size)
                   : kv_put(kw->conn, key, cfg->key_size, val, cfg->value_size);
        }
        if (rc == DKV_OK && b != NULL) {
            rc = dkv_write(kw->conn->db->dkv, b);
            dkv_batch_clear(b);
        }
        if (rc == DKV_OK && b == NULL)
            rc = kv_commit(kw->conn);
        note_latency(kw, t0);
        count_ops(kw, n);
    }
    dkv_batch_free(b);
    return rc;
}

/* fillrandom and deleterandom: the keys of a permutation, one per commit. */
static int work_permuted(struct kv_worker *kw, const uint32_t *order, int del,
                         char *key, unsigned char *val)
{
    const struct kv_cfg *cfg = &kw->run->x->cfg;
    int rc = DKV_OK;

    while (rc == DKV_OK && kw->next < kw->end && !bench_stopping(&kw->w)) {
        uint64_t i = order[kw->next++], t0 = bench_now_ns();
        if (del) {
            make_key(key, cfg->key_size, i);
            rc = kv_delete(kw->conn, key, cfg->key_size);
        } else {
            rc = do_put(kw, i, key, val, 0);
        }
        note_latency(kw, t0);
        count_ops(kw, 1);
    }
    return rc;
}

/* readrandom, syncput and readwhilewriting: random keys until stopped. */
static int work_random(struct kv_worker *kw, int put, char *key, unsigned char *val)
{
    uint64_t version = kw->run->x->version * BENCH_THREADS_MAX + kw->w.index;
    int rc = DKV_OK;

    while (rc == DKV_OK && !bench_stopping(&kw->w)) {
        uint64_t i = pick_key(kw), t0 = bench_now_ns();
        rc = put ? do_put(kw, i, key, val, version) : do_get(kw, i, key, val);
        note_latency(kw, t0);
        count_ops(kw, 1);
    }
    return rc;
}

/* multiget: MULTIGET_KEYS random keys a call. */
static int work_multiget(struct kv_worker *kw, char *keys, unsigned char *vals)
{
    const struct kv_cfg *cfg = &kw->run->x->cfg;
    const void *kp[MULTIGET_KEYS];
    void *vp[MULTIGET_KEYS];
    size_t kl[MULTIGET_KEYS], caps[MULTIGET_KEYS], vl[MULTIGET_KEYS];
    uint64_t idx[MULTIGET_KEYS];
    int rcs[MULTIGET_KEYS], rc = DKV_OK;
    unsigned j;

    for (j = 0; j < MULTIGET_KEYS; j++) {
        kp[j] = keys + (size_t)j * cfg->key_size;
        vp[j] = vals + (size_t)j * cfg->value_size;
        kl[j] = cfg->key_size;
        caps[j] = cfg->value_size;
    }
    while (rc == DKV_OK && !bench_stopping(&kw->w)) {
        uint64_t t0;
        for (j = 0; j < MULTIGET_KEYS; j++) {
            idx[j] = pick_key(kw);
            make_key((char *)kp[j], cfg->key_size, idx[j]);
        }
        t0 = bench_now_ns();
        rc = kv_multi_get(kw->conn, MULTIGET_KEYS, kp, kl, vp, caps, vl, rcs);
        note_latency(kw, t0);
        for (j = 0; rc == DKV_OK && j < MULTIGET_KEYS; j++) {
            kw->lookups++;
            if (rcs[j] != DKV_OK)
                continue;
            if (!value_ok(kw->run->x, vp[j], vl[j], idx[j])) {
                fprintf(stderr, "dkv-bench: %s: multiget key %.*s: a wrong value\n",
                        kw->run->db->name, (int)cfg->key_size, (const char *)kp[j]);
                rc = DKV_ERR_CORRUPT;
            }
            kw->found++;
        }
        count_ops(kw, MULTIGET_KEYS);
    }
    return rc;
}

/* A scan's latency is sampled: one step in SCAN_SAMPLE is timed (the
   seek among them).  Reading the clock twice a key costs about as much as
   a step of an in-memory scan (two vDSO calls), which would halve the
   rate measured for every engine alike; the sampled steps give the same
   distribution. */
#define SCAN_SAMPLE 64u

struct scan_clock {
    uint64_t rows;
    uint64_t t0;                      /* the timed step's start, or 0 */
};

static struct scan_clock scan_clock_start(void)
{
    return (struct scan_clock){ 0, bench_now_ns() };
}

/* One row of a scan, of bytes key + value bytes, has arrived. */
static void scan_row(struct kv_worker *kw, struct scan_clock *c, uint64_t bytes)
{
    kw->bytes += bytes;
    if (c->t0 != 0)
        note_latency(kw, c->t0);
    count_ops(kw, 1);
    c->t0 = ++c->rows % SCAN_SAMPLE == 0 ? bench_now_ns() : 0;
}

/* readseq through dkv's iterator: every key in order. */
static int scan_dkv(struct kv_worker *kw)
{
    dkv_iter *it;
    struct scan_clock c;
    int rc = dkv_iter_new(kw->conn->db->dkv, &it);

    if (rc != DKV_OK)
        return rc;
    c = scan_clock_start();
    rc = dkv_iter_seek(it, NULL, 0);
    while (rc == DKV_OK && dkv_iter_valid(it) && !bench_stopping(&kw->w)) {
        size_t kl, vl;
        dkv_iter_key(it, &kl);
        dkv_iter_value(it, &vl);
        scan_row(kw, &c, kl + vl);
        rc = dkv_iter_next(it);
    }
    dkv_iter_free(it);
    return rc;
}

#ifdef DKV_BENCH_SQLITE
/* readseq for sqlite3: the table in key order (it is clustered on k). */
static int scan_sqlite(struct kv_worker *kw)
{
    sqlite3_stmt *st;
    struct scan_clock c;
    int rc = sq_prepare(kw->conn->sq, "SELECT k, v FROM kv ORDER BY k", &st);

    if (rc != DKV_OK)
        return rc;
    c = scan_clock_start();
    while (!bench_stopping(&kw->w) && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        sqlite3_column_blob(st, 0);
        sqlite3_column_blob(st, 1);
        scan_row(kw, &c, (uint64_t)sqlite3_column_bytes(st, 0) +
                         (uint64_t)sqlite3_column_bytes(st, 1));
    }
    rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? DKV_OK : sq_fail(kw->conn->sq, "scan");
    sqlite3_finalize(st);
    return rc;
}
#endif

/* readseq for an ext_ops engine: its scan from the first key, timed as
   scan_dkv's. */
struct scan_rows {
    struct kv_worker *kw;
    struct scan_clock c;
};

static int scan_ext_row(void *arg, size_t klen, size_t vlen)
{
    struct scan_rows *a = arg;

    scan_row(a->kw, &a->c, klen + vlen);
    return bench_stopping(&a->kw->w);
}

static int scan_ext(struct kv_worker *kw)
{
    struct scan_rows a = { kw, scan_clock_start() };

    return kw->conn->db->ops->scan(kw->conn->ext, NULL, 0, 0, scan_ext_row, &a);
}

/* One YCSB insert: the next new key (num, num + 1, ...). */
static int ycsb_insert(struct kv_worker *kw, char *key, unsigned char *val,
                       uint64_t version)
{
    struct kv_db *db = kw->run->db;
    uint64_t i = kw->run->x->cfg.num + atomic_fetch_add(&db->insert_next, 1);
    int rc = do_put(kw, i, key, val, version);

    if (rc == DKV_OK)
        atomic_fetch_add(&db->inserted, 1);
    return rc;
}

/* One operation of a YCSB mix, chosen by its percentages. */
static int ycsb_op(struct kv_worker *kw, const struct ycsb_mix *mix, char *key,
                   unsigned char *val, uint64_t version)
{
    const struct kv_cfg *cfg = &kw->run->x->cfg;
    unsigned dice = (unsigned)bench_rand_below(&kw->rng, 100);
    uint64_t i;
    int rc;

    if (dice < mix->insert)
        return ycsb_insert(kw, key, val, version);
    i = pick_key(kw);
    dice -= mix->insert;
    if (dice < mix->read)
        return do_get(kw, i, key, val);
    dice -= mix->read;
    if (dice < mix->update)
        return do_put(kw, i, key, val, version);
    dice -= mix->update;
    if (dice < mix->scan) {
        make_key(key, cfg->key_size, i);
        return kv_scan(kw->conn, key, cfg->key_size,
                       1 + bench_rand_below(&kw->rng, YCSB_SCAN_MAX), &kw->bytes);
    }
    rc = do_get(kw, i, key, val);        /* read-modify-write */
    return rc == DKV_OK ? do_put(kw, i, key, val, version) : rc;
}

static int work_ycsb(struct kv_worker *kw, char *key, unsigned char *val)
{
    const struct ycsb_mix *mix = &ycsb_mixes[kw->run->bench - B_YCSB_A];
    uint64_t version = kw->run->x->version * BENCH_THREADS_MAX + kw->w.index;
    int rc = DKV_OK;

    if (mix->latest)
        bench_zipf_init(&kw->latest, key_count(kw), ZIPF_THETA);
    while (rc == DKV_OK && !bench_stopping(&kw->w)) {
        uint64_t t0 = bench_now_ns();
        rc = ycsb_op(kw, mix, key, val, version);
        note_latency(kw, t0);
        count_ops(kw, 1);
    }
    return rc;
}

static int work(struct kv_worker *kw, char *key, unsigned char *val)
{
    struct kv_ctx *x = kw->run->x;

    switch (kw->run->bench) {
    case B_FILLSEQ:          return work_fillseq(kw, key, val);
    case B_FILLRANDOM:       return work_permuted(kw, x->fill_order, 0, key, val);
    case B_DELETERANDOM:     return work_permuted(kw, x->delete_order, 1, key, val);
    case B_SYNCPUT:          return work_random(kw, 1, key, val);
    case B_READWHILEWRITING: return work_random(kw, kw->writer, key, val);
    case B_MULTIGET:         return work_multiget(kw, key, val);
    case B_READSEQ:
#ifdef DKV_BENCH_SQLITE
        if (kw->conn->db->kind == E_SQLITE)
            return scan_sqlite(kw);
#endif
        return kw->conn->ext != NULL ? scan_ext(kw) : scan_dkv(kw);
    default:
        if (is_ycsb(kw->run->bench))
            return work_ycsb(kw, key, val);
        return work_random(kw, 0, key, val);
    }
}

static void *worker_main(void *arg)
{
    struct kv_worker *kw = arg;
    const struct kv_cfg *cfg = &kw->run->x->cfg;
    unsigned n = kw->run->bench == B_MULTIGET ? MULTIGET_KEYS : 1;
    char *key = malloc((size_t)n * cfg->key_size);
    unsigned char *val = malloc((size_t)n * cfg->value_size + 8);
    int rc;

    bench_worker_ready(&kw->w);
    kw->start_ns = bench_now_ns();
    rc = key && val ? work(kw, key, val) : DKV_ERR_NOMEM;
    kw->done_ns = bench_now_ns();
#ifdef DKV_BENCH_SQLITE
    if (kw->conn->sq != NULL)
        sq_publish(kw->conn);
#endif
    free(key);
    free(val);
    atomic_fetch_add(&kw->run->finished, 1);
    if (rc < 0)
        bench_worker_fail(&kw->w, rc);
    return NULL;
}

/* ---- running one measurement ----------------------------------------------------------- */

/* Reader operations (all workers but readwhilewriting's writer). */
static uint64_t reader_ops(const struct kv_run *r)
{
    uint64_t sum = 0;

    for (unsigned i = 0; i < r->threads; i++)
        if (!r->workers[i].writer)
            sum += atomic_load_explicit(&r->workers[i].w.ops, memory_order_relaxed);
    return sum;
}

static uint64_t writer_ops(const struct kv_run *r)
{
    uint64_t sum = 0;

    for (unsigned i = 0; i < r->threads; i++)
        if (r->workers[i].writer)
            sum += atomic_load_explicit(&r->workers[i].w.ops, memory_order_relaxed);
    return sum;
}

/* Sets up the run's workers: each its connection, histogram, seed and
   share of the finite work. */
static int workers_init(struct kv_run *r, uint64_t total)
{
    unsigned i;

    r->workers = calloc(r->threads, sizeof(*r->workers));
    if (r->workers == NULL)
        return DKV_ERR_NOMEM;
    for (i = 0; i < r->threads; i++) {
        struct kv_worker *kw = &r->workers[i];
        kw->run = r;
        kw->conn = &r->db->conns[i];
        kw->hist = calloc(1, sizeof(*kw->hist));
        if (kw->hist == NULL)
            return DKV_ERR_NOMEM;
        kw->rng = r->x->cfg.seed ^ ((uint64_t)r->bench << 40) ^
                  ((uint64_t)r->threads << 32) ^ (i + 1) * 0x9e3779b97f4a7c15ull;
        kw->next = total * i / r->threads;
        kw->end = total * (i + 1) / r->threads;
        kw->writer = r->bench == B_READWHILEWRITING && i == 0;
    }
    return DKV_OK;
}

static void workers_free(struct kv_run *r)
{
    if (r->workers == NULL)
        return;
    for (unsigned i = 0; i < r->threads; i++)
        free(r->workers[i].hist);
    free(r->workers);
    r->workers = NULL;
}

/* What a run measured, before it becomes a record. */
struct kv_measure {
    uint64_t ops, writer_ops;
    double   seconds;
    struct kv_counters c0, c1;
    struct bench_hist hist;
    uint64_t found, lookups, bytes;
};

static void cap_open_one(const char *path, void *arg)
{
    struct kv_run *r = arg;
    int fd;

    if (r->cap_count == CAP_FILES_MAX)
        return;
    fd = open(path, O_RDONLY);
    if (fd >= 0)
        r->cap_fds[r->cap_count++] = fd;
}

/* Opens the files the cap drops: a buffered engine's, in a phase that
   runs with --pool (not the fills, not readrandom_mem); for an engine with
   a mapped data file, that file is trimmed to the budget instead. */
static void cap_open(struct kv_run *r)
{
    const char *path = NULL;
    void *map;

    r->cap_count = 0;
    r->trim_fd = -1;
    if (!r->x->cfg.cap_page_cache || r->db->kind == E_DKV_DIRECT ||
        is_fill(r->bench) || r->bench == B_READRANDOM_MEM)
        return;
    map = r->db->ops != NULL ? r->db->ops->mapping(r->db->ext, &r->trim_len, &path)
                             : NULL;
    if (map != NULL && path != NULL && (r->trim_fd = open(path, O_RDONLY)) >= 0) {
        r->trim_map = map;
        r->trim_rng = r->x->cfg.seed ^ 0x7472696d;
        return;
    }
    for_each_file(r->db->dir, cap_open_one, r);
}

/* Drops one page of the trimmed file from its mapping and the page cache. */
static void trim_page(struct kv_run *r, size_t page, size_t psz)
{
    madvise(r->trim_map + page * psz, psz, MADV_DONTNEED);
    posix_fadvise(r->trim_fd, (off_t)(page * psz), (off_t)psz, POSIX_FADV_DONTNEED);
}

/* Keeps the trimmed file's resident pages within the budget: picks
   resident pages at random (random replacement) and drops them until it
   fits.  Bounded: each pick scans at most every page once. */
static void cap_trim(struct kv_run *r)
{
    size_t psz = (size_t)sysconf(_SC_PAGESIZE), pages, resident = 0, allow, i;
    struct stat sb;

    if (fstat(r->trim_fd, &sb) != 0)
        return;
    pages = ((size_t)sb.st_size < r->trim_len ? (size_t)sb.st_size : r->trim_len) / psz;
    if (pages > r->trim_vec_len) {
        unsigned char *v = realloc(r->trim_vec, pages);
        if (v == NULL)
            return;
        r->trim_vec = v;
        r->trim_vec_len = pages;
    }
    if (pages == 0 || mincore(r->trim_map, pages * psz, r->trim_vec) != 0)
        return;
    for (i = 0; i < pages; i++)
        resident += r->trim_vec[i] & 1;
    allow = (size_t)(r->db->budget / psz);
    while (resident > allow) {
        size_t at = (size_t)bench_rand_below(&r->trim_rng, pages), probe;
        for (probe = 0; probe < pages && !(r->trim_vec[at] & 1); probe++)
            at = at + 1 == pages ? 0 : at + 1;
        if (probe == pages)
            break;
        trim_page(r, at, psz);
        r->trim_vec[at] = 0;
        resident--;
    }
}

/* Drops the clean pages of the files (dirty ones stay, being written). */
static void cap_drop(struct kv_run *r)
{
    if (r->trim_fd >= 0)
        cap_trim(r);
    for (unsigned i = 0; i < r->cap_count; i++)
        posix_fadvise(r->cap_fds[i], 0, 0, POSIX_FADV_DONTNEED);
}

static void cap_close(struct kv_run *r)
{
    for (unsigned i = 0; i < r->cap_count; i++)
        close(r->cap_fds[i]);
    r->cap_count = 0;
    if (r->trim_fd >= 0)
        close(r->trim_fd);
    r->trim_fd = -1;
    free(r->trim_vec);
    r->trim_vec = NULL;
    r->trim_vec_len = 0;
}

/* The progress line (stderr is a terminal): phase, engine, percent done,
   the current rate.  Cleared at the end of the run. */
static void progress(struct kv_run *r, int last)
{
    double now = bench_now(), pct, rate;
    uint64_t ops;

    if (!r->x->cfg.progress)
        return;
    if (last) {
        fprintf(stderr, "\r\033[K");
        return;
    }
    if (now < r->prog_next)
        return;
    ops = bench_team_ops(&r->team);
    pct = r->prog_total ? 100.0 * (double)ops / (double)r->prog_total
                        : 100.0 * (now - r->prog_t0) / r->prog_len;
    rate = now > r->prog_t_last ? (double)(ops - r->prog_ops_last) / (now - r->prog_t_last)
                                : 0.0;
    fprintf(stderr, "\r\033[K%s, %s, threads %u: %3.0f%%, %.0f ops/s",
            kv_bench_defs[r->bench].name, r->db->name, r->threads, pct > 100 ? 100 : pct,
            rate);
    r->prog_next = now + PROGRESS_EVERY;
    r->prog_t_last = now;
    r->prog_ops_last = ops;
}

/* Sleeps s seconds in the run, dropping the capped files as it goes;
   returns 1 early when a worker failed or (finite runs) all finished. */
static int run_sleep(struct kv_run *r, double s)
{
    double until = bench_now() + s;
    double step = r->cap_count || r->trim_fd >= 0 ? CAP_EVERY : 0.005;

    while (bench_now() < until && !atomic_load(&r->team.ctl.stop) &&
           atomic_load(&r->finished) < r->threads) {
        double left = until - bench_now();
        bench_sleep(left < step ? left : step);
        cap_drop(r);
        progress(r, 0);
    }
    return bench_now() < until;
}

/* Waits until every worker finished or `limit` seconds passed (finite
   runs), or for the window (timed runs); fills m. */
static int run_wait(struct kv_run *r, double warmup, double limit,
                    struct kv_measure *m)
{
    uint64_t ops0 = 0, w0 = 0;
    double t0;

    if (!r->always_measure) {
        if (run_sleep(r, warmup))
            return DKV_OK;               /* a worker failed: stop says why */
        kv_counters(r->db, &m->c0);
        m->c0.disk_read = disk_read_bytes();
        m->c0.cpu = bench_cpu_seconds();
        ops0 = reader_ops(r);
        w0 = writer_ops(r);
        bench_team_measure(&r->team, 1);
    }
    t0 = bench_now();
    run_sleep(r, limit);
    if (!r->always_measure) {
        m->seconds = bench_now() - t0;
        m->ops = reader_ops(r) - ops0;
        m->writer_ops = writer_ops(r) - w0;
        kv_counters(r->db, &m->c1);
        m->c1.disk_read = disk_read_bytes();
        m->c1.cpu = bench_cpu_seconds();
        bench_team_measure(&r->team, 0);
    }
    return DKV_OK;
}

/* Finite runs: from the first start to the last end, every operation. */
static void finite_totals(struct kv_run *r, struct kv_measure *m)
{
    uint64_t first = UINT64_MAX, last = 0;

    for (unsigned i = 0; i < r->threads; i++) {
        struct kv_worker *kw = &r->workers[i];
        first = kw->start_ns < first ? kw->start_ns : first;
        last = kw->done_ns > last ? kw->done_ns : last;
        m->ops += atomic_load(&kw->w.ops);
    }
    m->seconds = last > first ? (double)(last - first) * 1e-9 : 0.0;
}

/* Runs r to the end and measures it into m. */
static int run_measure(struct kv_run *r, double warmup, double limit,
                       struct kv_measure *m)
{
    int rc;

    memset(m, 0, sizeof(*m));
    if (r->always_measure) {
        kv_counters(r->db, &m->c0);
        m->c0.disk_read = disk_read_bytes();
        m->c0.cpu = bench_cpu_seconds();
    }
    cap_open(r);
    r->prog_t0 = r->prog_t_last = bench_now();
    r->prog_len = r->always_measure ? 1.0 : warmup + limit;
    r->prog_total = r->always_measure && r->bench != B_READSEQ ? r->x->cfg.num
                  : r->bench == B_READSEQ ? r->x->cfg.num : 0;
    rc = bench_team_start(&r->team, r->threads, worker_main, r->workers,
                          sizeof(*r->workers));
    if (rc != DKV_OK) {
        cap_close(r);
        return rc;
    }
    run_wait(r, warmup, limit, m);
    rc = bench_team_stop(&r->team);
    progress(r, 1);
    if (r->always_measure) {
        finite_totals(r, m);
        kv_counters(r->db, &m->c1);
        m->c1.disk_read = disk_read_bytes();
        m->c1.cpu = bench_cpu_seconds();
    }
    for (unsigned i = 0; i < r->threads; i++) {
        if (!r->workers[i].writer)
            bench_hist_merge(&m->hist, r->workers[i].hist);
        m->found += r->workers[i].found;
        m->lookups += r->workers[i].lookups;
        m->bytes += r->workers[i].bytes;
    }
    return rc;
}

/* ---- records and the per-phase line ------------------------------------------------------ */

static struct kv_record *record_new(struct kv_ctx *x)
{
    if (x->rec_count == RECORDS_MAX) {
        fprintf(stderr, "dkv-bench: too many results\n");
        return NULL;
    }
    memset(&x->recs[x->rec_count], 0, sizeof(x->recs[0]));
    return &x->recs[x->rec_count++];
}

static void record_fill(struct kv_record *rec, struct kv_run *r,
                        const struct kv_measure *m, unsigned readers)
{
    uint64_t hits = m->c1.hits - m->c0.hits, misses = m->c1.misses - m->c0.misses;
    const char *io;

    snprintf(rec->benchmark, sizeof(rec->benchmark), "%s", kv_bench_defs[r->bench].name);
    snprintf(rec->engine, sizeof(rec->engine), "%s", r->db->name);
    io = kv_io_name(r->db, &rec->direct);
    snprintf(rec->io, sizeof(rec->io), "%s", io ? io : "?");
    kv_durability(r->db, r->bench, rec->durability, sizeof(rec->durability));
    rec->threads = readers;
    rec->ops = m->ops;
    rec->seconds = m->seconds;
    rec->ops_per_sec = m->seconds > 0 ? (double)m->ops / m->seconds : 0.0;
    /* db_bench's micros/op: thread-seconds per operation. */
    rec->micros_per_op = m->ops ? m->seconds * readers * 1e6 / (double)m->ops : 0.0;
    snprintf(rec->distribution, sizeof(rec->distribution), "%s",
             r->bench == B_YCSB_D ? "latest" : r->bench == B_HOTREAD ? "hotset"
             : run_zipf(r->x, r->bench) && r->bench != B_READSEQ && !is_fill(r->bench)
                 ? "zipfian" : "uniform");
    rec->runs = 1;
    rec->p50_us = bench_hist_pct_us(&m->hist, 50.0);
    rec->p95_us = bench_hist_pct_us(&m->hist, 95.0);
    rec->p99_us = bench_hist_pct_us(&m->hist, 99.0);
    for (unsigned p = 0; p < KV_CDF_POINTS; p++)
        rec->cdf_us[p] = bench_hist_pct_us(&m->hist, kv_cdf_pcts[p]);
    rec->cgroup_bytes = kv_cgroup_current(&r->x->cgroup);
    rec->p999_us = bench_hist_pct_us(&m->hist, 99.9);
    rec->max_us = (double)m->hist.max_ns / 1000.0;
    rec->rss_bytes = rss_bytes();
    rec->page_cache_bytes = page_cache_bytes(r->db->dir);
    rec->hit_pct = hits + misses ? 100.0 * (double)hits / (double)(hits + misses) : -1.0;
    rec->pages_read = m->c1.pages_read - m->c0.pages_read;
    rec->disk_read_bytes = m->c1.disk_read - m->c0.disk_read;
    rec->mb_per_sec = m->seconds > 0 ? (double)m->bytes / m->seconds / 1e6 : 0.0;
    rec->writer_ops_per_sec = m->seconds > 0 ? (double)m->writer_ops / m->seconds : 0.0;
    rec->syncs = r->db->kind == E_SQLITE ? 0 : m->c1.syncs - m->c0.syncs;
    rec->found_pct = m->lookups ? 100.0 * (double)m->found / (double)m->lookups : -1.0;
    /* Per operation of the whole team (readwhilewriting: its writer too). */
    rec->cpu_us_per_op = m->ops + m->writer_ops
                             ? (m->c1.cpu - m->c0.cpu) * 1e6 / (double)(m->ops + m->writer_ops)
                             : 0.0;
    rec->pool_bytes = r->db->budget;
    rec->ops_min = rec->ops_max = rec->ops_per_sec;
}

/* ---- the phases ------------------------------------------------------------------------- */

/* The thread counts of a benchmark. */
static unsigned thread_list(const struct kv_ctx *x, int bench, unsigned *out)
{
    const struct kv_bench_def *d = &kv_bench_defs[bench];
    unsigned n = 0;

    if (d->threaded && x->cfg.thread_count > 0) {
        memcpy(out, x->cfg.threads, x->cfg.thread_count * sizeof(*out));
        return x->cfg.thread_count;
    }
    while (n < 2 && d->threads[n] != 0) {
        out[n] = d->threads[n];
        n++;
    }
    return n;
}

/* Warms an in-memory run: every page into the pool (a scan), or into the
   cache of each sqlite3 connection the run will use. */
static int warm_all(struct kv_db *db)
{
    dkv_iter *it;
    int rc = DKV_OK;

#ifdef DKV_BENCH_SQLITE
    if (db->kind == E_SQLITE) {
        /* Published now, so that the scan's misses fall before the window
           (no worker owns the connections yet). */
        for (unsigned i = 0; i < db->nconns && rc == DKV_OK; i++) {
            rc = sq_warm(&db->conns[i]);
            sq_publish(&db->conns[i]);
        }
        return rc;
    }
#endif
    if (db->ops != NULL) {
        uint64_t bytes = 0;
        return db->ops->scan(db->conns[0].ext, NULL, 0, 0, scan_acc_row, &bytes);
    }
    rc = dkv_iter_new(db->dkv, &it);
    if (rc != DKV_OK)
        return rc;
    rc = dkv_iter_seek(it, NULL, 0);
    while (rc == DKV_OK && dkv_iter_valid(it))
        rc = dkv_iter_next(it);
    dkv_iter_free(it);
    return rc;
}

/* syncput's length, and deleterandom's at most. */
static double write_seconds(const struct kv_cfg *c)
{
    if (c->write_duration > 0)
        return c->write_duration;
    return c->duration < WRITE_DURATION_DEFAULT ? c->duration : WRITE_DURATION_DEFAULT;
}

/* What run_threads does with its measurement. */
enum kv_keep { KEEP_NONE, KEEP_PRINT, KEEP_SILENT };

/* Runs bench on the open db with `readers` threads (readwhilewriting adds
   its writer) and records it (keep: enum kv_keep). */
static int run_threads(struct kv_ctx *x, struct kv_db *db, int bench,
                       unsigned readers, int keep)
{
    const struct kv_bench_def *d = &kv_bench_defs[bench];
    struct kv_run r;
    struct kv_measure *m = calloc(1, sizeof(*m));
    struct kv_record *rec;
    uint64_t total = bench == B_READSEQ ? 1 : x->cfg.num;
    int writes = bench == B_SYNCPUT || bench == B_DELETERANDOM;
    double limit = writes ? write_seconds(&x->cfg)
                 : d->shape == SHAPE_TIMED ? x->cfg.duration : 1e9;
    /* readrandom_mem is warmed by a full scan (warm_all) instead; the
       sweep by a scan and then the usual warm-up. */
    double warmup = bench == B_READRANDOM_MEM ? 0.0
                  : limit / 5 < WARMUP_MAX ? limit / 5 : WARMUP_MAX;
    int rc;

    if (bench == B_HOTREAD) {           /* scanresist says */
        warmup = x->hot_warmup;
        limit = x->hot_limit;
    }
    if (m == NULL)
        return DKV_ERR_NOMEM;
    memset(&r, 0, sizeof(r));
    r.trim_fd = -1;
    r.x = x;
    r.db = db;
    r.bench = bench;
    r.threads = readers + (bench == B_READWHILEWRITING);
    r.always_measure = d->shape != SHAPE_TIMED;
    x->version++;
    rc = x->keep_conns && db->nconns >= r.threads ? DKV_OK : kv_attach(db, r.threads);
    if (rc == DKV_OK && (bench == B_READRANDOM_MEM || bench == B_SWEEP))
        rc = warm_all(db);
    if (rc == DKV_OK)
        rc = workers_init(&r, total);
    if (rc == DKV_OK)
        rc = run_measure(&r, warmup, limit, m);
    if (rc == DKV_OK && keep != KEEP_NONE && (rec = record_new(x)) != NULL) {
        record_fill(rec, &r, m, readers);
        if (keep == KEEP_PRINT)
            kv_print_line(rec);
    }
    cap_close(&r);
    workers_free(&r);
    if (!x->keep_conns)
        kv_detach(db);
    free(m);
    return rc;
}

/* The in-memory budget: MEM_POOL_FACTOR x the raw keys and values, in
   steps of 64 MiB.  Filled at random, dkv's data file with 4 KiB pages is
   about 1.8x the raw bytes and sqlite3's about 1.2x, so the data fits even
   split over two sqlite3 connections (1.5x each). */
static uint64_t mem_budget(const struct kv_cfg *c)
{
    uint64_t raw = c->num * (c->key_size + c->value_size), b;

    if (c->mem_pool != 0)
        return c->mem_pool;
    b = (raw * MEM_POOL_FACTOR + (64ull << 20) - 1) & ~((64ull << 20) - 1);
    /* Under --mem-limit, half the limit at most: a pool larger than the
       cgroup would only get the engine killed. */
    if (c->mem_limit != 0 && b > c->mem_limit / 2)
        b = c->mem_limit / 2;
    return b > c->pool ? b : c->pool;
}

/* The fills' budget: by default the data fits, so that a fill measures
   the write path (log, latches, splits, write-back) rather than one random
   read per put, which is what a fill of a tree 6x the pool comes down to
   (--fill_pool=32M shows that). */
static uint64_t fill_budget(const struct kv_cfg *c)
{
    return c->fill_pool != 0 ? c->fill_pool : mem_budget(c);
}


/* Loads the keys (fillseq batches, not measured) into an empty database. */
static int load(struct kv_ctx *x, struct kv_db *db)
{
    double t0 = bench_now();
    int rc = reset_dir(db->dir);

    if (rc == DKV_OK)
        rc = kv_open(db, fill_budget(&x->cfg), 0, 1, 1);
    if (rc == DKV_OK)
        rc = run_threads(x, db, B_FILLSEQ, 1, KEEP_NONE);
    if (kv_close(db) != DKV_OK && rc == DKV_OK)
        rc = DKV_ERR_IO;
    if (rc == DKV_OK) {
        db->loaded = 1;
        atomic_store(&db->inserted, 0);
        atomic_store(&db->insert_next, 0);
        printf("%-16s   (%s: loaded %llu keys with fillseq in %.1f s, not measured)\n",
               "", db->name, (unsigned long long)x->cfg.num, bench_now() - t0);
    }
    return rc;
}

/* Sorts the last n records (one configuration's runs) by ops/s and keeps
   the median run, with the slowest and fastest beside it. */
static void keep_median(struct kv_ctx *x, unsigned n)
{
    struct kv_record *runs = &x->recs[x->rec_count - n], mid;

    for (unsigned i = 1; i < n; i++)            /* insertion sort: n small */
        for (unsigned j = i; j > 0 && runs[j].ops_per_sec < runs[j - 1].ops_per_sec; j--) {
            struct kv_record t = runs[j];
            runs[j] = runs[j - 1];
            runs[j - 1] = t;
        }
    mid = runs[n / 2];
    mid.runs = n;
    mid.ops_min = runs[0].ops_per_sec;
    mid.ops_max = runs[n - 1].ops_per_sec;
    runs[0] = mid;
    x->rec_count -= n - 1;
}

/* Runs one measurement --repeat times (timed phases and readseq; fills
   and deletes change the data, so they run once) and prints the median. */
static int run_repeated(struct kv_ctx *x, struct kv_db *db, int bench,
                        unsigned readers)
{
    unsigned n = kv_bench_defs[bench].shape == SHAPE_TIMED ? x->cfg.repeat
               : bench == B_READSEQ ? (x->cfg.repeat > READSEQ_RUNS ? x->cfg.repeat
                                                                    : READSEQ_RUNS)
               : 1, done = 0;
    int rc = DKV_OK;

    if (n <= 1)
        return run_threads(x, db, bench, readers, KEEP_PRINT);
    while (done < n && rc == DKV_OK) {
        unsigned before = x->rec_count;
        rc = run_threads(x, db, bench, readers, KEEP_SILENT);
        if (rc == DKV_OK && x->rec_count == before)
            rc = DKV_ERR_NOMEM;         /* no room for the record: said */
        done++;
    }
    if (rc == DKV_OK && done == n) {
        keep_median(x, n);
        kv_print_line(&x->recs[x->rec_count - 1]);
    }
    return rc;
}

/* Takes the last record off the list into *out (0), or -1 when the last
   run left none. */
static int pop_record(struct kv_ctx *x, unsigned before, struct kv_record *out)
{
    if (x->rec_count != before + 1)
        return -1;
    *out = x->recs[--x->rec_count];
    return 0;
}

/* scanresist on the open db: a full scan that fills the cache (a cache in
   use is full: the hot set is then read into a cache that is evicting, as
   on a server that has run a while - InnoDB, like dkv, moves no page in
   its LRU before the first eviction), uniform reads of a hot set (a range
   of keys whose raw bytes are SCAN_HOT_SHARE of the budget, so that their
   pages take about half of it) until the cache holds them (then measured
   for a second), one full scan, and the same reads again, measured for the
   SCAN_AFTER seconds right after the scan, with no warm-up.  A cache the
   scan flushed reads the hot set from disk again: a lower hit rate and
   rate after it. */
static int run_scanresist(struct kv_ctx *x, struct kv_db *db, unsigned readers)
{
    struct kv_record before, scan, *after;
    unsigned n = x->rec_count;
    int rc;

    memset(&before, 0, sizeof(before));
    memset(&scan, 0, sizeof(scan));
    /* The same handles throughout: a sqlite3 connection's cache is its own. */
    x->keep_conns = 1;
    x->hot_count = (uint64_t)((double)db->budget * SCAN_HOT_SHARE) /
                   (x->cfg.key_size + x->cfg.value_size);
    x->hot_count = x->hot_count == 0 ? 1 : x->hot_count < x->cfg.num ? x->hot_count
                                                                      : x->cfg.num;
    x->hot_first = (x->cfg.num - x->hot_count) / 2;
    x->hot_warmup = x->cfg.duration < SCAN_WARM_MAX ? x->cfg.duration : SCAN_WARM_MAX;
    x->hot_limit = SCAN_WINDOW;
    rc = kv_attach(db, readers);
    if (rc == DKV_OK)
        rc = run_threads(x, db, B_READSEQ, 1, KEEP_SILENT);
    if (rc == DKV_OK && pop_record(x, n, &scan) != 0)     /* not reported */
        rc = DKV_ERR_NOMEM;
    if (rc == DKV_OK)
        rc = run_threads(x, db, B_HOTREAD, readers, KEEP_SILENT);
    if (rc == DKV_OK && pop_record(x, n, &before) != 0)
        rc = DKV_ERR_NOMEM;
    if (rc == DKV_OK)
        rc = run_threads(x, db, B_READSEQ, 1, KEEP_SILENT);
    if (rc == DKV_OK && pop_record(x, n, &scan) != 0)
        rc = DKV_ERR_NOMEM;
    x->hot_warmup = 0;
    x->hot_limit = SCAN_AFTER;
    if (rc == DKV_OK)
        rc = run_threads(x, db, B_HOTREAD, readers, KEEP_SILENT);
    x->keep_conns = 0;
    kv_detach(db);
    if (rc != DKV_OK || x->rec_count != n + 1)
        return rc != DKV_OK ? rc : DKV_ERR_NOMEM;
    after = &x->recs[n];
    snprintf(after->benchmark, sizeof(after->benchmark), "scanresist");
    after->before_ops_per_sec = before.ops_per_sec;
    after->before_hit_pct = before.hit_pct;
    after->mb_per_sec = scan.mb_per_sec;
    after->scan_seconds = scan.seconds;
    kv_print_line(after);
    return DKV_OK;
}

/* Runs one benchmark on one engine: load if needed, drop the page cache,
   open afresh, each thread count, close. */
static int run_session(struct kv_ctx *x, struct kv_db *db, int bench,
                       uint64_t budget)
{
    unsigned threads[BENCH_LIST_MAX], n = thread_list(x, bench, threads), i, most = 1;
    int fill = is_fill(bench), rc;

    rc = fill ? reset_dir(db->dir) : db->loaded ? DKV_OK : load(x, db);
    if (rc != DKV_OK)
        return rc;
    if (fill) {
        atomic_store(&db->inserted, 0);
        atomic_store(&db->insert_next, 0);
    }
    for (i = 0; i < n; i++)
        most = threads[i] > most ? threads[i] : most;
    drop_caches(x);
    rc = kv_open(db, budget, bench == B_SYNCPUT, fill, most + 1);
    for (i = 0; i < n && rc == DKV_OK; i++)
        rc = bench == B_SCANRESIST ? run_scanresist(x, db, threads[i])
                                   : run_repeated(x, db, bench, threads[i]);
    if (kv_close(db) != DKV_OK && rc == DKV_OK)
        rc = DKV_ERR_IO;
    if (fill)
        db->loaded = rc == DKV_OK;
    return rc;
}

/* The pool sizes of the sweep: 1/16 .. 2x the raw keys and values, at
   least 1 MiB, rounded to the page size. */
static unsigned sweep_points(const struct kv_cfg *c, uint64_t *budgets, double *fracs)
{
    uint64_t raw = c->num * (c->key_size + c->value_size);
    unsigned n = 0;

    for (unsigned k = 0; k < SWEEP_POINTS; k++) {
        double f = (double)(1u << k) / 16.0;
        uint64_t b = (uint64_t)((double)raw * f) / c->page_size * c->page_size;
        b = b < (1ull << 20) ? 1ull << 20 : b;
        if (n > 0 && b <= budgets[n - 1])
            continue;
        /* Under --mem-limit a pool must leave the process room (see
           mem_budget): larger points are left out. */
        if (c->mem_limit != 0 && b > c->mem_limit / 2)
            break;
        budgets[n] = b;
        fracs[n++] = (double)b / (double)raw;
    }
    return n;
}

/* --sweep-pool on one engine: readrandom (1 thread, warmed by a scan) at
   each pool size. */
static int sweep_engine(struct kv_ctx *x, struct kv_db *db)
{
    uint64_t budgets[SWEEP_POINTS];
    double fracs[SWEEP_POINTS];
    unsigned n = sweep_points(&x->cfg, budgets, fracs);
    int rc = db->loaded ? DKV_OK : load(x, db);

    for (unsigned k = 0; k < n && rc == DKV_OK; k++) {
        drop_caches(x);
        rc = kv_open(db, budgets[k], 0, 0, 2);
        if (rc == DKV_OK)
            rc = run_threads(x, db, B_SWEEP, 1, KEEP_SILENT);
        if (kv_close(db) != DKV_OK && rc == DKV_OK)
            rc = DKV_ERR_IO;
        if (rc == DKV_OK) {
            x->recs[x->rec_count - 1].pool_fraction = fracs[k];
            kv_print_line(&x->recs[x->rec_count - 1]);
        }
    }
    return rc;
}

static unsigned max_threads(const struct kv_ctx *x, int bench)
{
    unsigned t[BENCH_LIST_MAX], n = thread_list(x, bench, t), most = 0;

    for (unsigned i = 0; i < n; i++)
        most = t[i] > most ? t[i] : most;
    return most;
}

/* The size of db's data file, and its path in path (PATH_MAX + 16). */
static uint64_t data_file(const struct kv_db *db, char *path)
{
    uint64_t size = 0;

    snprintf(path, PATH_MAX + 16, "%s/data.dkv", db->dir);
    add_size(path, &size);
    return size;
}

/* Runs fio over the first size bytes of path - rw, bs bytes a request,
   depth in flight, through the backend mine used - for --duration
   seconds.  1 with *iops; 0 when it gave no figure (fio said why; it is
   compared no more). */
static int fio_on_file(struct kv_ctx *x, const struct kv_record *mine, const char *path,
                       uint64_t size, const char *rw, unsigned bs, unsigned depth,
                       double *iops)
{
    char quoted[2 * PATH_MAX + 64], cmd[4096], runtime[32];
    int n;

    if (bench_shell_quote(quoted, sizeof(quoted), path) < 0)
        return 0;
    bench_fio_runtime(runtime, sizeof(runtime), x->cfg.duration);
    n = snprintf(cmd, sizeof(cmd),
                 "fio --name=dkv --filename=%s --readonly --direct=1 --ioengine=%s "
                 "--iodepth=%u --bs=%u --rw=%s --runtime=%s --time_based "
                 "--size=%llu --output-format=json%s",
                 quoted, strcmp(mine->io, "psync") == 0 ? "psync" : mine->io,
                 depth, bs, rw, runtime, (unsigned long long)(size / bs * bs),
                 strcmp(rw, "randread") == 0 ? " --norandommap --randrepeat=0" : "");
    if (n <= 0 || (size_t)n >= sizeof(cmd) || bench_fio_run(cmd, "read", iops) != 0) {
        x->use_fio = 0;
        return 0;
    }
    return 1;
}

/* A new record for fio beside benchmark bench of mine's (the figures are
   the caller's to fill in); NULL when out of memory. */
static struct kv_record *fio_record(struct kv_ctx *x, const char *bench,
                                    const struct kv_record *mine, unsigned threads,
                                    unsigned depth)
{
    struct kv_record *rec = record_new(x);

    if (rec == NULL)
        return NULL;
    snprintf(rec->benchmark, sizeof(rec->benchmark), "%s", bench);
    snprintf(rec->engine, sizeof(rec->engine), "fio");
    snprintf(rec->io, sizeof(rec->io), "%s", mine->io);
    snprintf(rec->durability, sizeof(rec->durability), "-");
    rec->iodepth = depth;
    rec->direct = 1;
    rec->threads = threads;
    rec->seconds = x->cfg.duration;
    rec->hit_pct = rec->found_pct = -1.0;
    return rec;
}

/* fio's random reads of one page at depth `depth` over dkv-direct's data
   file, with the backend dkv used, as the device's ceiling for a read
   benchmark (recorded beside it, with threads = the benchmark's). */
static int fio_compare(struct kv_ctx *x, struct kv_db *db, int bench,
                       unsigned threads, unsigned depth)
{
    char path[PATH_MAX + 16];
    const struct kv_record *mine = kv_find_record(x, db->name, kv_bench_defs[bench].name,
                                               threads);
    uint64_t size = data_file(db, path);
    struct kv_record *rec;
    double iops;

    if (!x->use_fio || mine == NULL || size <= x->cfg.pool)
        return DKV_OK;              /* nothing to compare, or it fits the pool */
    if (!fio_on_file(x, mine, path, size, "randread", x->cfg.page_size, depth, &iops))
        return DKV_OK;
    rec = fio_record(x, kv_bench_defs[bench].name, mine, threads, depth);
    if (rec == NULL)
        return DKV_ERR_NOMEM;
    rec->ops_per_sec = iops;
    rec->ops = (uint64_t)(iops * x->cfg.duration);
    printf("%-16s : fio randread %u B at iodepth %u on %s's data file: %.0f IOPS; "
           "dkv-direct %.0f ops/s = %.2fx fio, %.2fx in pages read/s\n",
           rec->benchmark, x->cfg.page_size, depth, db->name, iops,
           mine->ops_per_sec, mine->ops_per_sec / iops,
           mine->seconds > 0 ? (double)mine->pages_read / mine->seconds / iops : 0.0);
    return DKV_OK;
}

/* fio's sequential reads of dkv-direct's data file (FIO_SEQ_BLOCK bytes
   at depth FIO_SEQ_DEPTH) as the device's bandwidth beside readseq: what
   the scan read from the disk per second, and its key + value bytes per
   second, as shares of it.  Recorded as engine fio with mb_per_sec (its
   ops/sec, 0, stays out of the summary's ratios). */
static int fio_compare_seq(struct kv_ctx *x, struct kv_db *db)
{
    char path[PATH_MAX + 16];
    const struct kv_record *mine = kv_find_record(x, db->name, "readseq", 1);
    uint64_t size = data_file(db, path);
    struct kv_record *rec;
    double iops, mbps, disk_mbps;

    if (!x->use_fio || mine == NULL || !(mine->seconds > 0) || size < FIO_SEQ_BLOCK)
        return DKV_OK;
    if (!fio_on_file(x, mine, path, size, "read", FIO_SEQ_BLOCK, FIO_SEQ_DEPTH, &iops))
        return DKV_OK;
    mbps = iops * FIO_SEQ_BLOCK / 1e6;
    disk_mbps = (double)mine->disk_read_bytes / mine->seconds / 1e6;
    rec = fio_record(x, "readseq", mine, 1, FIO_SEQ_DEPTH);
    if (rec == NULL)
        return DKV_ERR_NOMEM;
    rec->mb_per_sec = mbps;
    rec->disk_read_bytes = (uint64_t)(mbps * 1e6 * x->cfg.duration);
    printf("%-16s : fio sequential reads of %u KiB at iodepth %u on %s's data file: "
           "%.0f MB/s; the scan read the disk at %.0f MB/s = %.2fx fio, key + value "
           "bytes %.0f MB/s = %.2fx\n",
           rec->benchmark, FIO_SEQ_BLOCK >> 10, FIO_SEQ_DEPTH, db->name, mbps,
           disk_mbps, disk_mbps / mbps, mine->mb_per_sec, mine->mb_per_sec / mbps);
    return DKV_OK;
}

/* Runs one benchmark on engines [e0, e1) in turn, then its fio comparison. */
static int run_benchmark(struct kv_ctx *x, int bench, unsigned e0, unsigned e1)
{
    uint64_t budget = is_fill(bench) ? fill_budget(&x->cfg)
                    : bench == B_READRANDOM_MEM ? mem_budget(&x->cfg) : x->cfg.pool;
    unsigned e;
    int rc = DKV_OK;

    if (is_fill(bench) && x->cfg.use_existing) {
        printf("%-16s : skipped (--use_existing_db)\n", kv_bench_defs[bench].name);
        return DKV_OK;
    }
    for (e = e0; e < e1 && rc == DKV_OK; e++) {
        struct kv_db *db = &x->dbs[e];
        rc = run_session(x, db, bench, budget);
        if (rc == DKV_OK && db->kind == E_DKV_DIRECT && bench == B_READRANDOM)
            rc = fio_compare(x, db, bench, max_threads(x, bench),
                             max_threads(x, bench));
        if (rc == DKV_OK && db->kind == E_DKV_DIRECT && bench == B_MULTIGET)
            rc = fio_compare(x, db, bench, max_threads(x, bench), FIO_DEPTH_MULTIGET);
        if (rc == DKV_OK && db->kind == E_DKV_DIRECT && bench == B_READSEQ)
            rc = fio_compare_seq(x, db);
    }
    return rc;
}

/* ---- setting up and running ------------------------------------------------------------------ */

/* The keys and values every run draws from. */
static int ctx_init(struct kv_ctx *x)
{
    const struct kv_cfg *cfg = &x->cfg;
    uint64_t rng = cfg->seed ^ 0x6b76626e63680001ull;
    size_t i;

    x->rand_buf = malloc(RAND_BUF_LEN);
    x->fill_order = malloc(cfg->num * sizeof(uint32_t));
    x->delete_order = malloc(cfg->num * sizeof(uint32_t));
    if (x->rand_buf == NULL || x->fill_order == NULL || x->delete_order == NULL)
        return DKV_ERR_NOMEM;
    for (i = 0; i < RAND_BUF_LEN; i++)
        x->rand_buf[i] = (unsigned char)bench_rand(&rng);
    for (i = 0; i < cfg->num; i++)
        x->fill_order[i] = x->delete_order[i] = (uint32_t)i;
    bench_shuffle(x->fill_order, cfg->num, &rng);
    bench_shuffle(x->delete_order, cfg->num, &rng);
    /* YCSB's scrambled zipfian: ranks over 10^10 items, hashed onto the
       keys (bench_zipf_scrambled), so the hot keys are spread over the
       tree rather than packed into its first leaves. */
    bench_zipf_init(&x->zipf, BENCH_ZIPF_SCRAMBLE_ITEMS, ZIPF_THETA);
    return DKV_OK;
}

static void ctx_free(struct kv_ctx *x)
{
    free(x->rand_buf);
    free(x->fill_order);
    free(x->delete_order);
}

/* The databases' directories: DIR/<engine>. */
static int dbs_init(struct kv_ctx *x)
{
    if (mkdir(x->cfg.db, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "dkv-bench: mkdir %s: %s\n", x->cfg.db, strerror(errno));
        return DKV_ERR_IO;
    }
    for (unsigned e = 0; e < x->cfg.engine_count; e++) {
        struct kv_db *db = &x->dbs[e];
        db->kind = x->cfg.engines[e];
        db->name = kv_engine_names[db->kind];
        db->ops = ext_ops(db->kind);
        db->cfg = &x->cfg;
        if ((size_t)snprintf(db->dir, sizeof(db->dir), "%s/%s", x->cfg.db,
                             db->name) >= sizeof(db->dir))
            return DKV_ERR_INVALID;
        db->loaded = x->cfg.use_existing;
    }
    return DKV_OK;
}

static int has_engine(const struct kv_cfg *c, int kind)
{
    for (unsigned e = 0; e < c->engine_count; e++)
        if (c->engines[e] == kind)
            return 1;
    return 0;
}

static void print_header(const struct kv_ctx *x)
{
    const struct kv_cfg *c = &x->cfg;
    double raw = (double)c->num * (c->key_size + c->value_size);

    printf("dkv-bench: engine comparison\n");
    printf("engines:   ");
    for (unsigned e = 0; e < c->engine_count; e++)
        printf(" %s", kv_engine_names[c->engines[e]]);
    printf("\nkeys:       %llu x (%u + %u bytes) = %.1f MB raw, %s\n",
           (unsigned long long)c->num, c->key_size, c->value_size, raw / 1e6,
           c->zipf ? "zipfian (YCSB's scrambled zipfian, theta 0.99)"
           : c->dist_set ? "uniform (ycsb-* too)"
           : "uniform (ycsb-*: zipfian, theta 0.99; ycsb-d: latest)");
    printf("memory:     dkv pool = sqlite3 cache (split evenly over its connections, "
           "one a thread)\n            = rocksdb block cache = lmdb's page cache; "
           "page size %u:\n"
           "            %llu MiB for the reads (the raw data is %.1fx that);\n"
           "            %llu MiB for the fills, %llu MiB for readrandom_mem\n",
           c->page_size, (unsigned long long)(c->pool >> 20), raw / (double)c->pool,
           (unsigned long long)(fill_budget(c) >> 20),
           (unsigned long long)(mem_budget(c) >> 20));
    printf("page cache: %s\n",
           c->drop == DROP_ALL ? "dropped before each phase (/proc/sys/vm/drop_caches)"
           : c->drop == DROP_FILES ? "the databases' files dropped before each phase "
                                     "(posix_fadvise)"
           : "not dropped");
    if (c->cap_page_cache)
        printf("            and, in the phases run with the %llu MiB budget, the buffered "
               "engines' files\n            are dropped every %.0f ms (their memory is "
               "their cache: --cap_page_cache)%s\n",
               (unsigned long long)(c->pool >> 20), CAP_EVERY * 1000,
               has_engine(c, E_LMDB) ? ";\n            lmdb's are held to the budget "
                                       "(random resident pages dropped)" : "");
    if (c->mem_limit != 0 && x->mem_limit_on)
        printf("mem-limit:  %llu MiB, enforced: each engine runs in a child process in "
               "a memory cgroup\n            of its own (process memory + page cache "
               "charged)\n", (unsigned long long)(c->mem_limit >> 20));
    else if (c->mem_limit != 0)
        printf("mem-limit:  %llu MiB NOT ENFORCED: %s\n",
               (unsigned long long)(c->mem_limit >> 20), x->mem_limit_why);
    if (c->repeat > 1)
        printf("repeat:     each timed phase and readseq %u times; the run with the "
               "median ops/s is reported\n", c->repeat);
    printf("durability: fills, deletes, readwhilewriting, ycsb: dkv DKV_COMMIT_ASYNC, "
           "sqlite3 WAL synchronous=NORMAL,\n            rocksdb sync=0, lmdb "
           "MDB_NOSYNC; syncput: DKV_COMMIT_SYNC, sqlite3 synchronous=FULL,\n"
           "            rocksdb sync=1, lmdb synced commits (no batches but fillseq's)\n");
    printf("time:       %.1f s per timed read phase, %.1f s for syncput and at most "
           "for deleterandom,\n            after a warm-up of a fifth (at most %.1f s); "
           "dkv io %s; databases in %s\n\n",
           c->duration, write_seconds(c), WARMUP_MAX,
           dkv_io_engine_name(c->io_engine), c->db);
}

/* Runs the plan (every benchmark, then the sweep) on engines [e0, e1). */
static int run_plan(struct kv_ctx *x, unsigned e0, unsigned e1)
{
    int rc = DKV_OK;

    for (unsigned b = 0; b < x->cfg.bench_count && rc == DKV_OK; b++) {
        double t0 = bench_now();
        rc = run_benchmark(x, x->cfg.benches[b], e0, e1);
        x->bench_seconds[b] += bench_now() - t0;
    }
    if (x->cfg.sweep) {
        double t0 = bench_now();
        if (rc == DKV_OK)
            printf("\n--sweep-pool: readrandom, 1 thread, %.1f s a point after a scan "
                   "and a warm-up\n", x->cfg.duration);
        for (unsigned e = e0; e < e1 && rc == DKV_OK; e++)
            rc = sweep_engine(x, &x->dbs[e]);
        x->sweep_seconds += bench_now() - t0;
    }
    return rc;
}

/* What a --mem-limit child sends back before its records. */
struct child_head {
    double   bench_seconds[BENCH_LIST_MAX];
    double   sweep_seconds;
    unsigned rec_count;
    int      rc;
};

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static size_t read_all(int fd, void *buf, size_t len)
{
    char *p = buf;
    size_t got = 0;

    while (got < len) {
        ssize_t n = read(fd, p + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    return got;
}

/* The child: enters the cgroup, runs the plan on engine e, sends back
   what it measured; never returns. */
static void child_run(struct kv_ctx *x, const struct kv_cgroup *cg, unsigned e, int fd)
{
    struct child_head h;
    int rc = kv_cgroup_enter(cg, getpid()) == 0 ? DKV_OK : DKV_ERR_IO;

    if (rc != DKV_OK)
        fprintf(stderr, "dkv-bench: cannot enter cgroup %s: %s\n", cg->path,
                strerror(errno));
    /* Only this child's results go back (the parent holds the others'). */
    x->rec_count = 0;
    memset(x->bench_seconds, 0, sizeof(x->bench_seconds));
    x->sweep_seconds = 0;
    x->cgroup = *cg;
    if (rc == DKV_OK)
        rc = run_plan(x, e, e + 1);
    fflush(stdout);
    memset(&h, 0, sizeof(h));
    memcpy(h.bench_seconds, x->bench_seconds, sizeof(h.bench_seconds));
    h.sweep_seconds = x->sweep_seconds;
    h.rec_count = x->rec_count;
    h.rc = rc;
    if (write_all(fd, &h, sizeof(h)) != 0 ||
        write_all(fd, x->recs, x->rec_count * sizeof(x->recs[0])) != 0)
        rc = DKV_ERR_IO;
    _exit(rc == DKV_OK ? 0 : 1);
}

/* Reads a child's results into x: 0, or -1 when it sent none. */
static int child_collect(struct kv_ctx *x, int fd)
{
    struct child_head h;
    size_t room;

    if (read_all(fd, &h, sizeof(h)) != sizeof(h))
        return -1;
    for (unsigned b = 0; b < BENCH_LIST_MAX; b++)
        x->bench_seconds[b] += h.bench_seconds[b];
    x->sweep_seconds += h.sweep_seconds;
    room = RECORDS_MAX - x->rec_count;
    h.rec_count = h.rec_count < room ? h.rec_count : (unsigned)room;
    x->rec_count += (unsigned)(read_all(fd, &x->recs[x->rec_count],
                                        h.rec_count * sizeof(x->recs[0])) /
                               sizeof(x->recs[0]));
    return h.rc == DKV_OK ? 0 : -1;
}

/* Says how engine e's child ended: its cgroup's peak, or why it died. */
static int child_report(const struct kv_ctx *x, const struct kv_cgroup *cg, unsigned e,
                        int status, int sent)
{
    const char *name = x->dbs[e].name;

    if (WIFSIGNALED(status)) {
        fprintf(stderr, "dkv-bench: %s: killed by signal %d%s\n", name, WTERMSIG(status),
                kv_cgroup_oom(cg) ? " (out of memory under --mem-limit: give it more, "
                                    "or a smaller --pool / --mem_pool)" : "");
        return DKV_ERR_NOMEM;
    }
    printf("%-16s   (%s: memory cgroup peak %.1f MB of the %.1f MB limit)\n", "", name,
           (double)kv_cgroup_peak(cg) / 1e6, (double)x->cfg.mem_limit / 1e6);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 && sent ? DKV_OK : DKV_ERR_IO;
}

/* --mem-limit: each engine's whole plan in a child process in a memory
   cgroup of its own, one engine after the other. */
static int run_limited(struct kv_ctx *x)
{
    int rc = DKV_OK;

    for (unsigned e = 0; e < x->cfg.engine_count; e++) {
        struct kv_cgroup cg;
        char why[256];
        int fds[2], status = 0, sent, one;
        pid_t pid;

        if (kv_cgroup_create(&cg, x->dbs[e].name, x->cfg.mem_limit, why,
                             sizeof(why)) != 0) {
            fprintf(stderr, "dkv-bench: --mem-limit: %s\n", why);
            return DKV_ERR_UNSUPPORTED;
        }
        fflush(stdout);
        fflush(stderr);
        if (pipe(fds) != 0 || (pid = fork()) < 0) {
            kv_cgroup_remove(&cg);
            return DKV_ERR_NOMEM;
        }
        if (pid == 0) {
            close(fds[0]);
            child_run(x, &cg, e, fds[1]);
        }
        close(fds[1]);
        sent = child_collect(x, fds[0]) == 0;
        close(fds[0]);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        one = child_report(x, &cg, e, status, sent);
        rc = rc == DKV_OK ? one : rc;
        kv_cgroup_remove(&cg);
    }
    return rc;
}

static int run_all(struct kv_ctx *x)
{
    int rc = dbs_init(x);

    if (rc == DKV_OK)
        rc = ctx_init(x);
    x->use_fio = x->cfg.fio != BENCH_FIO_OFF && bench_fio_on_path();
    if (rc == DKV_OK && !x->use_fio && x->cfg.fio == BENCH_FIO_ON) {
        fprintf(stderr, "dkv-bench: --fio: no fio on PATH\n");
        rc = DKV_ERR_UNSUPPORTED;
    }
#ifdef DKV_BENCH_SQLITE
    /* sqlite3's memory statistics take a global mutex on every allocation;
       they are off so that its threads scale as well as they can. */
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
#endif
    if (rc == DKV_OK)
        print_header(x);
    if (rc == DKV_OK)
        rc = x->mem_limit_on ? run_limited(x) : run_plan(x, 0, x->cfg.engine_count);
    if (rc != DKV_OK)
        fprintf(stderr, "dkv-bench: stopped: %s\n", dkv_strerror(rc));
    return rc;
}

/* Exit status: 0 success, 1 a failed run, 2 a bad command line. */
int bench_kv_main(int argc, char **argv)
{
    static struct kv_ctx x;             /* big: the records */
    double t0 = bench_now();
    int rc, status = 0;

    rc = kv_parse_args(argc, argv, &x.cfg);
    if (rc != 0) {
        if (rc > 0)
            bench_kv_usage(stdout);
        else
            fprintf(stderr, "dkv-bench --help lists the options\n");
        return rc > 0 ? 0 : EXIT_USAGE;
    }
    if (x.cfg.mem_limit != 0) {
        x.mem_limit_on = kv_cgroup_probe(x.mem_limit_why, sizeof(x.mem_limit_why));
        /* The cgroup bounds the page cache itself: no emulated cap. */
        if (x.mem_limit_on && !x.cfg.cap_set)
            x.cfg.cap_page_cache = 0;
    }
    rc = run_all(&x);
    status = rc == DKV_OK ? 0 : 1;
    if (x.rec_count > 0)
        kv_print_summary(&x);
    printf("\ntotal time %.1f s\n", bench_now() - t0);
    if (status == 0 && x.cfg.plot_dir != NULL &&
        kv_plot_write(x.cfg.plot_dir, x.recs, x.rec_count) != 0)
        status = 1;
    /* A failed run writes no files: a partial one would be quoted. */
    if (status == 0 && x.cfg.json != NULL && kv_write_json(&x, x.cfg.json) != 0)
        status = 1;
    if (status == 0 && x.cfg.csv != NULL && kv_write_csv(&x, x.cfg.csv) != 0)
        status = 1;
    ctx_free(&x);
    return status;
}
