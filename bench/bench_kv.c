/*
 * bench_kv.c - the engine comparison of dkv-bench, in the style of LevelDB's
 * db_bench: the same workloads through the public API (include/dkv.h) of
 * DirectKV with O_DIRECT ("dkv-direct"), of DirectKV on the page cache
 * ("dkv-buffered", opts.direct = 0) and through sqlite3 ("sqlite3", a
 * WITHOUT ROWID table in WAL mode), one after the other in the same run,
 * with the ratio dkv-direct / each other engine at the end.
 *
 * Entry points:
 *   bench_kv_main    "dkv-bench [--benchmarks=LIST ...]": parses the flags,
 *                    runs the benchmarks, prints, writes JSON / CSV
 *   bench_kv_usage   the flags, for dkv-bench --help
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
 *     first worker's start to the last worker's end.
 * Where the data is larger than the pool, fio's 4 KiB (one page) random
 * reads of dkv-direct's data file at depth 2 and 32 are measured right after
 * readrandom and multiget, as the device's ceiling for those two.
 */
#include "bench.h"

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
#include <unistd.h>

#ifdef DKV_BENCH_SQLITE
#include <sqlite3.h>
#endif

#define EXIT_USAGE          2
#define NUM_DEFAULT         500000ull
#define KEY_SIZE_DEFAULT    16u
#define VALUE_SIZE_DEFAULT  100u
#define POOL_DEFAULT        (16ull << 20)   /* ~6x below dkv's data file  */
#define PAGE_SIZE_DEFAULT   4096u        /* dkv and sqlite3 alike; = fio's bs */
#define DURATION_DEFAULT    5.0
#define WRITE_DURATION_DEFAULT 2.0       /* syncput, deleterandom            */
#define WARMUP_MAX          0.5          /* seconds before a timed window    */
#define MEM_POOL_FACTOR     3u           /* in-memory budget: x the raw data */
#define MULTIGET_KEYS       64u
#define FILLSEQ_BATCH       1000u
#define FIO_DEPTH_MULTIGET  32u
#define ZIPF_THETA          0.99
#define ZIPF_TABLE_LEN      (1u << 20)
#define RAND_BUF_LEN        (1u << 20)   /* value bytes are cut from here    */
#define KV_CONNS_MAX        (BENCH_THREADS_MAX + 1)
#define SQ_PUBLISH_EVERY    64u          /* sqlite3 counters, every N calls  */
#define SQ_BUSY_MS          60000
#define CAP_EVERY           0.02         /* seconds between page-cache drops */
#define CAP_FILES_MAX       8
#define ENGINE_MAX          3
#define RECORDS_MAX         256

/* ---- the benchmarks --------------------------------------------------------- */

enum kv_bench_id {
    B_FILLSEQ, B_FILLRANDOM, B_READRANDOM, B_READSEQ, B_MULTIGET,
    B_READWHILEWRITING, B_SYNCPUT, B_DELETERANDOM, B_READRANDOM_MEM, B_COUNT
};

enum kv_shape {
    SHAPE_FILL,            /* writes every key once, from an empty database */
    SHAPE_FINITE,          /* a fixed amount of work (readseq, deletes)      */
    SHAPE_TIMED            /* warm-up, then --duration seconds               */
};

struct kv_bench_def {
    const char *name;
    int         shape;
    int         threaded;          /* takes --threads                        */
    unsigned    threads[2];        /* without --threads (0: none)            */
    int         writes;            /* says which durability it used         */
};

static const struct kv_bench_def bench_defs[B_COUNT] = {
    [B_FILLSEQ]          = { "fillseq",          SHAPE_FILL,   0, { 1, 0 }, 1 },
    [B_FILLRANDOM]       = { "fillrandom",       SHAPE_FILL,   0, { 1, 0 }, 1 },
    [B_READRANDOM]       = { "readrandom",       SHAPE_TIMED,  1, { 1, 2 }, 0 },
    [B_READSEQ]          = { "readseq",          SHAPE_FINITE, 0, { 1, 0 }, 0 },
    [B_MULTIGET]         = { "multiget",         SHAPE_TIMED,  1, { 1, 0 }, 0 },
    [B_READWHILEWRITING] = { "readwhilewriting", SHAPE_TIMED,  1, { 1, 0 }, 1 },
    [B_SYNCPUT]          = { "syncput",          SHAPE_TIMED,  1, { 1, 8 }, 1 },
    [B_DELETERANDOM]     = { "deleterandom",     SHAPE_FINITE, 0, { 1, 0 }, 1 },
    [B_READRANDOM_MEM]   = { "readrandom_mem",   SHAPE_TIMED,  1, { 1, 2 }, 0 },
};

static int is_fill(int bench)
{
    return bench_defs[bench].shape == SHAPE_FILL;
}

static const char *const benchmarks_default =
    "fillrandom,readrandom,multiget,readseq,readwhilewriting,readrandom_mem,"
    "syncput,deleterandom";

/* ---- the engines -------------------------------------------------------------- */

enum kv_kind { E_DKV_DIRECT, E_DKV_BUFFERED, E_SQLITE };

static const char *const engine_names[ENGINE_MAX] = {
    "dkv-direct", "dkv-buffered", "sqlite3"
};

enum kv_drop { DROP_NONE, DROP_FILES, DROP_ALL };

/* The command line. */
struct kv_cfg {
    int      benches[BENCH_LIST_MAX];
    unsigned bench_count;
    uint64_t num;
    unsigned key_size, value_size;
    unsigned threads[BENCH_LIST_MAX];
    unsigned thread_count;              /* 0: each benchmark's default     */
    uint64_t pool;
    uint64_t mem_pool;                  /* 0: MEM_POOL_FACTOR x the data    */
    uint64_t fill_pool;                 /* 0: the in-memory budget          */
    uint32_t page_size;
    double   duration;                  /* timed read phases                */
    double   write_duration;            /* syncput, deleterandom; 0: the
                                           default, at most --duration      */
    int      zipf;
    int      engines[ENGINE_MAX];
    unsigned engine_count;
    const char *db;
    const char *json, *csv;
    uint64_t seed;
    int      io_engine;
    int      drop;                      /* enum kv_drop                     */
    int      fio;                       /* enum bench_fio                   */
    int      use_existing;              /* db_bench's --use_existing_db     */
    int      cap_page_cache;            /* see struct kv_run's cap_fds      */
};

/* ---- one engine's database ----------------------------------------------------- */

struct kv_db;

/* One thread's handle: dkv's db is shared by all threads, sqlite3 has a
   connection (and its prepared statements) per thread. */
struct kv_conn {
    struct kv_db *db;
#ifdef DKV_BENCH_SQLITE
    sqlite3      *sq;
    sqlite3_stmt *st_get, *st_put, *st_del, *st_begin, *st_commit;
#endif
    unsigned      calls;                /* since the last publish           */
    /* sqlite3's cache counters, published by the owning thread (the main
       thread may not call into a NOMUTEX connection another thread uses). */
    _Atomic uint64_t sq_hits, sq_misses;
};

struct kv_db {
    int          kind;                  /* enum kv_kind                     */
    const char  *name;
    char         dir[PATH_MAX];
    dkv_db      *dkv;
    int          durable;               /* syncput: every commit durable    */
    uint64_t     budget;                /* pool / cache bytes               */
    const struct kv_cfg *cfg;
    struct kv_conn conns[KV_CONNS_MAX];
    unsigned     nconns;
    int          loaded;                /* holds the keys                   */
};

/* Counters at one edge of a window. */
struct kv_counters {
    uint64_t hits, misses, pages_read, syncs, disk_read;
    double   cpu;                       /* process CPU seconds             */
};

/* ---- results -------------------------------------------------------------------- */

struct kv_record {
    char     benchmark[24];
    char     engine[16];
    char     io[16];
    char     durability[64];
    int      direct;
    unsigned threads;                   /* fio: the benchmark's it is beside */
    unsigned iodepth;                   /* fio's; 0 for the engines         */
    uint64_t ops;
    double   seconds, ops_per_sec, micros_per_op;
    double   p50_us, p99_us, p999_us, max_us;
    uint64_t rss_bytes, page_cache_bytes;
    double   hit_pct;                   /* < 0: none                        */
    uint64_t pages_read, disk_read_bytes;
    double   mb_per_sec;                /* readseq: key + value bytes       */
    double   writer_ops_per_sec;        /* readwhilewriting's writer        */
    uint64_t syncs;                     /* log syncs (dkv)                  */
    double   found_pct;                 /* lookups that found their key     */
    double   cpu_us_per_op;             /* the whole process's CPU time     */
    uint64_t pool_bytes;
};

/* Everything one run of the comparison shares. */
struct kv_ctx {
    struct kv_cfg     cfg;
    struct kv_db      dbs[ENGINE_MAX];
    unsigned char    *rand_buf;         /* value bytes                     */
    uint32_t         *fill_order;       /* fillrandom: a permutation       */
    uint32_t         *delete_order;     /* deleterandom: another           */
    uint32_t         *zipf_keys;        /* ranks mapped through a shuffle  */
    uint64_t          version;          /* overwrites get new values       */
    int               use_fio;
    int               drop_noted;
    struct kv_record  recs[RECORDS_MAX];
    unsigned          rec_count;
    double            bench_seconds[BENCH_LIST_MAX];   /* wall time of each */
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
    return rc;
}

static void sq_conn_close(struct kv_conn *c)
{
    sqlite3_finalize(c->st_get);
    sqlite3_finalize(c->st_put);
    sqlite3_finalize(c->st_del);
    sqlite3_finalize(c->st_begin);
    sqlite3_finalize(c->st_commit);
    sqlite3_close(c->sq);
    c->sq = NULL;
    c->st_get = c->st_put = c->st_del = c->st_begin = c->st_commit = NULL;
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

/* Reads every page of the table into this connection's cache. */
static int sq_warm(struct kv_conn *c)
{
    return sq_exec(c->sq, "SELECT sum(length(v)) FROM kv");
}

#endif /* DKV_BENCH_SQLITE */

/* ---- the engine layer: what the workloads call ---------------------------------- */

static int kv_open(struct kv_db *db, uint64_t budget, int durable, int create)
{
    db->budget = budget;
    db->durable = durable;
    db->nconns = 0;
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
        db->nconns = i + 1;
    }
    return rc;
}

static void kv_detach(struct kv_db *db)
{
    unsigned i;

    for (i = 0; i < db->nconns; i++) {
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
    return dkv_get(c->db->dkv, key, klen, buf, cap, vlen);
}

static int kv_put(struct kv_conn *c, const void *key, size_t klen,
                  const void *val, size_t vlen)
{
#ifdef DKV_BENCH_SQLITE
    if (c->db->kind == E_SQLITE)
        return sq_put(c, key, klen, val, vlen);
#endif
    return dkv_put(c->db->dkv, key, klen, val, vlen);
}

static int kv_delete(struct kv_conn *c, const void *key, size_t klen)
{
    int rc;

#ifdef DKV_BENCH_SQLITE
    if (c->db->kind == E_SQLITE)
        return sq_delete(c, key, klen);
#endif
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
    return dkv_multi_get(c->db->dkv, n, keys, klens, bufs, caps, vlens, rcs);
}

/* The counters of the whole database at this moment. */
static void kv_counters(struct kv_db *db, struct kv_counters *ctr)
{
    memset(ctr, 0, sizeof(*ctr));
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
    if (db->kind == E_SQLITE || dkv_stats_get(db->dkv, &st) != DKV_OK)
        return "pread";                 /* sqlite3's unix VFS */
    *direct = st.direct;
    return st.io_engine;
}

static void kv_durability(const struct kv_db *db, int bench, char *out, size_t room)
{
    if (!bench_defs[bench].writes) {
        snprintf(out, room, "-");
        return;
    }
    if (db->kind == E_SQLITE)
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
    uint64_t            zipf_at;        /* next entry of the zipf table     */
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

/* A key index drawn from --distribution. */
static uint64_t pick_key(struct kv_worker *kw)
{
    const struct kv_ctx *x = kw->run->x;

    if (x->zipf_keys != NULL)
        return x->zipf_keys[kw->zipf_at++ % ZIPF_TABLE_LEN];
    return bench_rand_below(&kw->rng, x->cfg.num);
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
    dkv_batch *b = kw->conn->db->kind == E_SQLITE ? NULL : dkv_batch_new();
    int rc = DKV_OK;

    if (kw->conn->db->kind != E_SQLITE && b == NULL)
        return DKV_ERR_NOMEM;
    while (rc == DKV_OK && kw->next < kw->end && !bench_stopping(&kw->w)) {
        uint64_t t0 = bench_now_ns(), n = 0;
#ifdef DKV_BENCH_SQLITE
        if (b == NULL)
            rc = sq_begin(kw->conn);
#endif
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
#ifdef DKV_BENCH_SQLITE
        if (rc == DKV_OK && b == NULL)
            rc = sq_commit(kw->conn);
#endif
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

/* readseq through dkv's iterator: every key in order. */
static int scan_dkv(struct kv_worker *kw)
{
    dkv_iter *it;
    uint64_t t0;
    int rc = dkv_iter_new(kw->conn->db->dkv, &it);

    if (rc != DKV_OK)
        return rc;
    t0 = bench_now_ns();
    rc = dkv_iter_seek(it, NULL, 0);
    while (rc == DKV_OK && dkv_iter_valid(it) && !bench_stopping(&kw->w)) {
        size_t kl, vl;
        dkv_iter_key(it, &kl);
        dkv_iter_value(it, &vl);
        kw->bytes += kl + vl;
        note_latency(kw, t0);
        count_ops(kw, 1);
        t0 = bench_now_ns();
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
    uint64_t t0;
    int rc = sq_prepare(kw->conn->sq, "SELECT k, v FROM kv ORDER BY k", &st);

    if (rc != DKV_OK)
        return rc;
    t0 = bench_now_ns();
    while (!bench_stopping(&kw->w) && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        sqlite3_column_blob(st, 0);
        sqlite3_column_blob(st, 1);
        kw->bytes += (uint64_t)sqlite3_column_bytes(st, 0) +
                     (uint64_t)sqlite3_column_bytes(st, 1);
        note_latency(kw, t0);
        count_ops(kw, 1);
        t0 = bench_now_ns();
    }
    rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? DKV_OK : sq_fail(kw->conn->sq, "scan");
    sqlite3_finalize(st);
    return rc;
}
#endif

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
        return scan_dkv(kw);
    default:                 return work_random(kw, 0, key, val);
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
        kw->zipf_at = bench_rand_below(&kw->rng, ZIPF_TABLE_LEN);
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
   runs with --pool (not the fills, not readrandom_mem). */
static void cap_open(struct kv_run *r)
{
    r->cap_count = 0;
    if (!r->x->cfg.cap_page_cache || r->db->kind == E_DKV_DIRECT ||
        is_fill(r->bench) || r->bench == B_READRANDOM_MEM)
        return;
    for_each_file(r->db->dir, cap_open_one, r);
}

/* Drops the clean pages of the files (dirty ones stay, being written). */
static void cap_drop(struct kv_run *r)
{
    for (unsigned i = 0; i < r->cap_count; i++)
        posix_fadvise(r->cap_fds[i], 0, 0, POSIX_FADV_DONTNEED);
}

static void cap_close(struct kv_run *r)
{
    for (unsigned i = 0; i < r->cap_count; i++)
        close(r->cap_fds[i]);
    r->cap_count = 0;
}

/* Sleeps s seconds in the run, dropping the capped files as it goes;
   returns 1 early when a worker failed or (finite runs) all finished. */
static int run_sleep(struct kv_run *r, double s)
{
    double until = bench_now() + s, step = r->cap_count ? CAP_EVERY : 0.005;

    while (bench_now() < until && !atomic_load(&r->team.ctl.stop) &&
           atomic_load(&r->finished) < r->threads) {
        double left = until - bench_now();
        bench_sleep(left < step ? left : step);
        cap_drop(r);
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
    rc = bench_team_start(&r->team, r->threads, worker_main, r->workers,
                          sizeof(*r->workers));
    if (rc != DKV_OK) {
        cap_close(r);
        return rc;
    }
    run_wait(r, warmup, limit, m);
    rc = bench_team_stop(&r->team);
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

    snprintf(rec->benchmark, sizeof(rec->benchmark), "%s", bench_defs[r->bench].name);
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
    rec->p50_us = bench_hist_pct_us(&m->hist, 50.0);
    rec->p99_us = bench_hist_pct_us(&m->hist, 99.0);
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
}

/* The db_bench line of one record. */
static void print_line(const struct kv_record *rec)
{
    char extra[256] = "";
    size_t n = 0;

    if (rec->hit_pct >= 0)
        n += (size_t)snprintf(extra + n, sizeof(extra) - n, ", hit%% %.1f",
                              rec->hit_pct);
    n += (size_t)snprintf(extra + n, sizeof(extra) - n,
                          ", cpu %.1f us/op, pages read %llu, disk %.1f MB, "
                          "page cache %.1f MB, rss %.1f MB", rec->cpu_us_per_op,
                          (unsigned long long)rec->pages_read,
                          (double)rec->disk_read_bytes / 1e6,
                          (double)rec->page_cache_bytes / 1e6,
                          (double)rec->rss_bytes / 1e6);
    if (rec->found_pct >= 0 && rec->found_pct < 100.0 && n < sizeof(extra))
        n += (size_t)snprintf(extra + n, sizeof(extra) - n, ", found %.1f%%",
                              rec->found_pct);
    if (rec->syncs > 0 && n < sizeof(extra))
        snprintf(extra + n, sizeof(extra) - n, ", %.1f commits/log sync",
                 (double)rec->ops / (double)rec->syncs);
    printf("%-16s : %10.3f micros/op %9.0f ops/sec;", rec->benchmark,
           rec->micros_per_op, rec->ops_per_sec);
    if (strcmp(rec->benchmark, "readseq") == 0)
        printf(" %7.1f MB/s", rec->mb_per_sec);
    printf("  (engine %s, threads %u, p50 %.1f p99 %.1f p99.9 %.1f max %.1f us%s)\n",
           rec->engine, rec->threads, rec->p50_us, rec->p99_us, rec->p999_us,
           rec->max_us, extra);
    if (strcmp(rec->benchmark, "readwhilewriting") == 0)
        printf("%-16s   the writer (1 thread): %.0f puts/sec\n", "",
               rec->writer_ops_per_sec);
    if (strcmp(rec->durability, "-") != 0)
        printf("%-16s   durability: %s\n", "", rec->durability);
}

/* ---- the phases ------------------------------------------------------------------------- */

/* The thread counts of a benchmark. */
static unsigned thread_list(const struct kv_ctx *x, int bench, unsigned *out)
{
    const struct kv_bench_def *d = &bench_defs[bench];
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

/* Runs bench on the open db with `readers` threads (readwhilewriting adds
   its writer) and records it. */
static int run_threads(struct kv_ctx *x, struct kv_db *db, int bench,
                       unsigned readers, int quiet)
{
    const struct kv_bench_def *d = &bench_defs[bench];
    struct kv_run r;
    struct kv_measure *m = calloc(1, sizeof(*m));
    struct kv_record *rec;
    uint64_t total = bench == B_READSEQ ? 1 : x->cfg.num;
    int writes = bench == B_SYNCPUT || bench == B_DELETERANDOM;
    double limit = writes ? write_seconds(&x->cfg)
                 : d->shape == SHAPE_TIMED ? x->cfg.duration : 1e9;
    /* readrandom_mem is warmed by a full scan (warm_all) instead. */
    double warmup = bench == B_READRANDOM_MEM ? 0.0
                  : limit / 5 < WARMUP_MAX ? limit / 5 : WARMUP_MAX;
    int rc;

    if (m == NULL)
        return DKV_ERR_NOMEM;
    memset(&r, 0, sizeof(r));
    r.x = x;
    r.db = db;
    r.bench = bench;
    r.threads = readers + (bench == B_READWHILEWRITING);
    r.always_measure = d->shape != SHAPE_TIMED;
    x->version++;
    rc = kv_attach(db, r.threads);
    if (rc == DKV_OK && bench == B_READRANDOM_MEM)
        rc = warm_all(db);
    if (rc == DKV_OK)
        rc = workers_init(&r, total);
    if (rc == DKV_OK)
        rc = run_measure(&r, warmup, limit, m);
    if (rc == DKV_OK && !quiet && (rec = record_new(x)) != NULL) {
        record_fill(rec, &r, m, readers);
        print_line(rec);
    }
    cap_close(&r);
    workers_free(&r);
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
        rc = kv_open(db, fill_budget(&x->cfg), 0, 1);
    if (rc == DKV_OK)
        rc = run_threads(x, db, B_FILLSEQ, 1, 1);
    if (kv_close(db) != DKV_OK && rc == DKV_OK)
        rc = DKV_ERR_IO;
    if (rc == DKV_OK) {
        db->loaded = 1;
        printf("%-16s   (%s: loaded %llu keys with fillseq in %.1f s, not measured)\n",
               "", db->name, (unsigned long long)x->cfg.num, bench_now() - t0);
    }
    return rc;
}

/* Runs one benchmark on one engine: load if needed, drop the page cache,
   open afresh, each thread count, close. */
static int run_session(struct kv_ctx *x, struct kv_db *db, int bench,
                       uint64_t budget)
{
    unsigned threads[BENCH_LIST_MAX], n = thread_list(x, bench, threads), i;
    int fill = is_fill(bench), rc;

    rc = fill ? reset_dir(db->dir) : db->loaded ? DKV_OK : load(x, db);
    if (rc != DKV_OK)
        return rc;
    drop_caches(x);
    rc = kv_open(db, budget, bench == B_SYNCPUT, fill);
    for (i = 0; i < n && rc == DKV_OK; i++)
        rc = run_threads(x, db, bench, threads[i], 0);
    if (kv_close(db) != DKV_OK && rc == DKV_OK)
        rc = DKV_ERR_IO;
    if (fill)
        db->loaded = rc == DKV_OK;
    return rc;
}

/* The last record of engine and benchmark with `threads` (0: any). */
static const struct kv_record *find_record(const struct kv_ctx *x, const char *engine,
                                           const char *bench, unsigned threads)
{
    const struct kv_record *found = NULL;

    for (unsigned i = 0; i < x->rec_count; i++) {
        const struct kv_record *r = &x->recs[i];
        if (strcmp(r->engine, engine) == 0 && strcmp(r->benchmark, bench) == 0 &&
            (threads == 0 || r->threads == threads))
            found = r;
    }
    return found;
}

static unsigned max_threads(const struct kv_ctx *x, int bench)
{
    unsigned t[BENCH_LIST_MAX], n = thread_list(x, bench, t), most = 0;

    for (unsigned i = 0; i < n; i++)
        most = t[i] > most ? t[i] : most;
    return most;
}

/* fio's random reads of one page at depth `depth` over dkv-direct's data
   file, with the backend dkv used, as the device's ceiling for a read
   benchmark (recorded beside it, with threads = the benchmark's). */
static int fio_compare(struct kv_ctx *x, struct kv_db *db, int bench,
                       unsigned threads, unsigned depth)
{
    char path[PATH_MAX + 16], quoted[2 * PATH_MAX + 64], cmd[4096], runtime[32];
    const struct kv_record *mine = find_record(x, db->name, bench_defs[bench].name,
                                               threads);
    struct kv_record *rec;
    uint64_t size = 0;
    double iops;
    int n;

    snprintf(path, sizeof(path), "%s/data.dkv", db->dir);
    add_size(path, &size);
    if (!x->use_fio || mine == NULL || size <= x->cfg.pool)
        return DKV_OK;              /* nothing to compare, or it fits the pool */
    if (bench_shell_quote(quoted, sizeof(quoted), path) < 0)
        return DKV_OK;
    bench_fio_runtime(runtime, sizeof(runtime), x->cfg.duration);
    n = snprintf(cmd, sizeof(cmd),
                 "fio --name=dkv --filename=%s --readonly --direct=1 --ioengine=%s "
                 "--iodepth=%u --bs=%u --rw=randread --runtime=%s --time_based "
                 "--size=%llu --output-format=json --norandommap --randrepeat=0",
                 quoted, strcmp(mine->io, "psync") == 0 ? "psync" : mine->io,
                 depth, x->cfg.page_size, runtime, (unsigned long long)size);
    if (n <= 0 || (size_t)n >= sizeof(cmd) || bench_fio_run(cmd, "read", &iops) != 0) {
        x->use_fio = 0;                  /* said why; compare no more */
        return DKV_OK;
    }
    rec = record_new(x);
    if (rec == NULL)
        return DKV_ERR_NOMEM;
    snprintf(rec->benchmark, sizeof(rec->benchmark), "%s", bench_defs[bench].name);
    snprintf(rec->engine, sizeof(rec->engine), "fio");
    snprintf(rec->io, sizeof(rec->io), "%s", mine->io);
    snprintf(rec->durability, sizeof(rec->durability), "-");
    rec->iodepth = depth;
    rec->direct = 1;
    rec->threads = threads;
    rec->ops_per_sec = iops;
    rec->seconds = x->cfg.duration;
    rec->ops = (uint64_t)(iops * x->cfg.duration);
    rec->hit_pct = rec->found_pct = -1.0;
    printf("%-16s : fio randread %u B at iodepth %u on %s's data file: %.0f IOPS; "
           "dkv-direct %.0f ops/s = %.2fx fio, %.2fx in pages read/s\n",
           rec->benchmark, x->cfg.page_size, depth, db->name, iops,
           mine->ops_per_sec, mine->ops_per_sec / iops,
           mine->seconds > 0 ? (double)mine->pages_read / mine->seconds / iops : 0.0);
    return DKV_OK;
}

/* Runs one benchmark on every engine, then its fio comparison. */
static int run_benchmark(struct kv_ctx *x, int bench)
{
    uint64_t budget = is_fill(bench) ? fill_budget(&x->cfg)
                    : bench == B_READRANDOM_MEM ? mem_budget(&x->cfg) : x->cfg.pool;
    unsigned e;
    int rc = DKV_OK;

    if (is_fill(bench) && x->cfg.use_existing) {
        printf("%-16s : skipped (--use_existing_db)\n", bench_defs[bench].name);
        return DKV_OK;
    }
    for (e = 0; e < x->cfg.engine_count && rc == DKV_OK; e++) {
        struct kv_db *db = &x->dbs[e];
        rc = run_session(x, db, bench, budget);
        if (rc == DKV_OK && db->kind == E_DKV_DIRECT && bench == B_READRANDOM)
            rc = fio_compare(x, db, bench, max_threads(x, bench),
                             max_threads(x, bench));
        if (rc == DKV_OK && db->kind == E_DKV_DIRECT && bench == B_MULTIGET)
            rc = fio_compare(x, db, bench, max_threads(x, bench), FIO_DEPTH_MULTIGET);
    }
    return rc;
}

/* ---- the summary ------------------------------------------------------------------------- */

/* The columns of the summary: the engines in --engines order, then fio. */
static unsigned summary_columns(const struct kv_ctx *x, const char **cols)
{
    unsigned n = 0;

    for (unsigned e = 0; e < x->cfg.engine_count; e++)
        cols[n++] = x->dbs[e].name;
    for (unsigned i = 0; i < x->rec_count; i++)
        if (strcmp(x->recs[i].engine, "fio") == 0) {
            cols[n++] = "fio";
            break;
        }
    return n;
}

static int seen_before(const struct kv_ctx *x, unsigned upto)
{
    const struct kv_record *r = &x->recs[upto];

    for (unsigned i = 0; i < upto; i++)
        if (strcmp(x->recs[i].benchmark, r->benchmark) == 0 &&
            x->recs[i].threads == r->threads)
            return 1;
    return 0;
}

static void print_summary_row(const struct kv_ctx *x, const struct kv_record *key,
                              const char **cols, unsigned ncols)
{
    const struct kv_record *base = find_record(x, "dkv-direct", key->benchmark,
                                               key->threads);
    unsigned c;

    printf("%-17s %7u", key->benchmark, key->threads);
    for (c = 0; c < ncols; c++) {
        const struct kv_record *r = find_record(x, cols[c], key->benchmark, key->threads);
        if (r != NULL)
            printf(" %13.0f", r->ops_per_sec);
        else
            printf(" %13s", "-");
    }
    for (c = 0; c < ncols; c++) {
        const struct kv_record *r = find_record(x, cols[c], key->benchmark, key->threads);
        if (strcmp(cols[c], "dkv-direct") == 0)
            continue;
        if (base != NULL && r != NULL && r->ops_per_sec > 0)
            printf(" %11.2fx", base->ops_per_sec / r->ops_per_sec);
        else
            printf(" %12s", "-");
    }
    printf("\n");
}

/* 2-thread / 1-thread (or most / fewest) of benchmark for each engine. */
static void print_scaling(const struct kv_ctx *x, const char *bench)
{
    int header = 0;

    for (unsigned e = 0; e < x->cfg.engine_count; e++) {
        const struct kv_record *one = find_record(x, x->dbs[e].name, bench, 1);
        const struct kv_record *most = NULL;
        for (unsigned i = 0; i < x->rec_count; i++) {
            const struct kv_record *r = &x->recs[i];
            if (strcmp(r->engine, x->dbs[e].name) == 0 &&
                strcmp(r->benchmark, bench) == 0 && r->threads > 1 &&
                (most == NULL || r->threads > most->threads))
                most = r;
        }
        if (one == NULL || most == NULL || !(one->ops_per_sec > 0))
            continue;
        if (!header++)
            printf("\n%s scaling, most threads / 1 thread:\n", bench);
        printf("  %-13s %u threads %10.0f ops/s / 1 thread %10.0f ops/s = %.2fx\n",
               x->dbs[e].name, most->threads, most->ops_per_sec, one->ops_per_sec,
               most->ops_per_sec / one->ops_per_sec);
    }
}

static void print_summary(const struct kv_ctx *x)
{
    const char *cols[ENGINE_MAX + 1];
    unsigned ncols = summary_columns(x, cols), c, i;
    char head[32];

    printf("\nops/sec per engine (the same run; ratio = dkv-direct / column):\n");
    printf("%-17s %7s", "benchmark", "threads");
    for (c = 0; c < ncols; c++)
        printf(" %13s", cols[c]);
    for (c = 0; c < ncols; c++) {
        if (strcmp(cols[c], "dkv-direct") == 0)
            continue;
        snprintf(head, sizeof(head), "/%s", cols[c]);
        printf(" %12s", head);
    }
    printf("\n");
    for (i = 0; i < x->rec_count; i++)
        if (!seen_before(x, i))
            print_summary_row(x, &x->recs[i], cols, ncols);
    printf("(readwhilewriting: the readers' ops/sec; multiget: keys/sec, 64 a call;\n"
           " fio: %u-byte random reads of dkv-direct's data file at iodepth = threads\n"
           " for readrandom, %u for multiget)\n", x->cfg.page_size, FIO_DEPTH_MULTIGET);
    print_scaling(x, "readrandom_mem");
    print_scaling(x, "readrandom");
    printf("\nwall time per benchmark (all engines, loads and fio included):");
    for (i = 0; i < x->cfg.bench_count; i++)
        printf("%s%s %.0f s", i % 5 ? ", " : "\n  ", bench_defs[x->cfg.benches[i]].name,
               x->bench_seconds[i]);
    printf("\n");
}

/* ---- JSON and CSV ------------------------------------------------------------------------- */

static void json_num(FILE *out, const char *name, double v)
{
    if (isfinite(v))
        fprintf(out, ", \"%s\": %.10g", name, v);
    else
        fprintf(out, ", \"%s\": null", name);
}

static void json_record(FILE *out, const struct kv_ctx *x, const struct kv_record *r,
                        int last)
{
    fprintf(out, "  {\"benchmark\": \"%s\", \"engine\": \"%s\", \"io\": \"%s\", "
            "\"direct\": %s, \"threads\": %u, \"ops\": %llu, \"durability\": \"%s\", "
            "\"distribution\": \"%s\"",
            r->benchmark, r->engine, r->io, r->direct ? "true" : "false",
            r->threads, (unsigned long long)r->ops, r->durability,
            x->cfg.zipf ? "zipfian" : "uniform");
    json_num(out, "seconds", r->seconds);
    json_num(out, "ops_per_sec", r->ops_per_sec);
    json_num(out, "micros_per_op", r->micros_per_op);
    json_num(out, "p50_us", r->p50_us);
    json_num(out, "p99_us", r->p99_us);
    json_num(out, "p999_us", r->p999_us);
    json_num(out, "max_us", r->max_us);
    json_num(out, "cpu_us_per_op", r->cpu_us_per_op);
    fprintf(out, ", \"rss_bytes\": %llu, \"page_cache_bytes\": %llu, "
            "\"pages_read\": %llu, \"disk_read_bytes\": %llu, \"log_syncs\": %llu, "
            "\"pool_bytes\": %llu",
            (unsigned long long)r->rss_bytes, (unsigned long long)r->page_cache_bytes,
            (unsigned long long)r->pages_read, (unsigned long long)r->disk_read_bytes,
            (unsigned long long)r->syncs, (unsigned long long)r->pool_bytes);
    if (r->iodepth > 0)
        fprintf(out, ", \"iodepth\": %u, \"block\": %u", r->iodepth, x->cfg.page_size);
    if (r->hit_pct >= 0)
        json_num(out, "hit_pct", r->hit_pct);
    if (r->found_pct >= 0)
        json_num(out, "found_pct", r->found_pct);
    if (r->mb_per_sec > 0)
        json_num(out, "mb_per_sec", r->mb_per_sec);
    if (strcmp(r->benchmark, "readwhilewriting") == 0 && strcmp(r->engine, "fio") != 0)
        json_num(out, "writer_ops_per_sec", r->writer_ops_per_sec);
    fprintf(out, "}%s\n", last ? "" : ",");
}

static int close_output(FILE *out, const char *path)
{
    int failed = ferror(out);

    if (fclose(out) != 0 || failed) {
        fprintf(stderr, "dkv-bench: writing %s failed\n", path);
        return -1;
    }
    return 0;
}

static int write_json(const struct kv_ctx *x, const char *path)
{
    FILE *out = fopen(path, "w");

    if (out == NULL) {
        fprintf(stderr, "dkv-bench: %s: %s\n", path, strerror(errno));
        return -1;
    }
    fprintf(out, "[\n");
    for (unsigned i = 0; i < x->rec_count; i++)
        json_record(out, x, &x->recs[i], i + 1 == x->rec_count);
    fprintf(out, "]\n");
    return close_output(out, path);
}

static int write_csv(const struct kv_ctx *x, const char *path)
{
    FILE *out = fopen(path, "w");

    if (out == NULL) {
        fprintf(stderr, "dkv-bench: %s: %s\n", path, strerror(errno));
        return -1;
    }
    fprintf(out, "benchmark,engine,io,direct,threads,ops,seconds,ops_per_sec,"
            "micros_per_op,p50_us,p99_us,p999_us,max_us,cpu_us_per_op,rss_bytes,page_cache_bytes,"
            "hit_pct,pages_read,disk_read_bytes,mb_per_sec,log_syncs,pool_bytes,"
            "iodepth,durability\n");
    for (unsigned i = 0; i < x->rec_count; i++) {
        const struct kv_record *r = &x->recs[i];
        fprintf(out, "%s,%s,%s,%d,%u,%llu,%.6f,%.1f,%.4f,%.2f,%.2f,%.2f,%.2f,%.3f,%llu,%llu,"
                "%.2f,%llu,%llu,%.2f,%llu,%llu,%u,\"%s\"\n",
                r->benchmark, r->engine, r->io, r->direct, r->threads,
                (unsigned long long)r->ops, r->seconds, r->ops_per_sec,
                r->micros_per_op, r->p50_us, r->p99_us, r->p999_us, r->max_us,
                r->cpu_us_per_op, (unsigned long long)r->rss_bytes,
                (unsigned long long)r->page_cache_bytes, r->hit_pct,
                (unsigned long long)r->pages_read,
                (unsigned long long)r->disk_read_bytes, r->mb_per_sec,
                (unsigned long long)r->syncs, (unsigned long long)r->pool_bytes,
                r->iodepth, r->durability);
    }
    return close_output(out, path);
}

/* ---- the command line ------------------------------------------------------------------- */

void bench_kv_usage(FILE *out)
{
    fprintf(out,
        "engine comparison (dkv-bench with no mode, or options starting with --):\n"
        "  --benchmarks=LIST  in order (default %s);\n"
        "                     also: fillseq (batches of %u keys)\n"
        "  --engines=LIST     dkv-direct,dkv-buffered,sqlite3 (default: all three)\n"
        "  --num=N            keys (default %llu)\n"
        "  --key_size=N       bytes (default %u)   --value_size=N  bytes (default %u)\n"
        "  --threads=LIST     threads of the read benchmarks and syncput (default:\n"
        "                     readrandom and readrandom_mem 1,2; syncput 1,8; others 1;\n"
        "                     readwhilewriting: readers, beside its one writer)\n"
        "  --pool=SIZE        dkv's pool = sqlite3's cache, bytes or K/M/G (default %lluM)\n"
        "  --mem_pool=SIZE    readrandom_mem's budget (default %ux the raw data)\n"
        "  --fill_pool=SIZE   the fills' budget (default: --mem_pool's, the data fits)\n"
        "  --page_size=N      dkv and sqlite3 page bytes, 4K..64K (default %u)\n"
        "  --duration=S       seconds per timed read phase (default %g)\n"
        "  --write_duration=S syncput's seconds, deleterandom's at most (default %g,\n"
        "                     or --duration when shorter)\n"
        "  --distribution=uniform|zipfian   keys of the random phases (zipf 0.99)\n"
        "  --io=auto|io_uring|libaio|psync  dkv's I/O backend (default auto)\n"
        "  --db=DIR           where the databases go (default /tmp/dkv-bench-kv)\n"
        "  --seed=N           keys and values (default 1)\n"
        "  --drop-caches[=0|1] drop the page cache before each phase (default: on\n"
        "                     as root; else the databases' files are dropped)\n"
        "  --cap_page_cache=1|0  1 (default): in the phases run with --pool, drop the\n"
        "                     buffered engines' files from the page cache every\n"
        "                     20 ms, so they cache in the budget only, as dkv-direct\n"
        "                     does; 0: they also use all the page cache they find\n"
        "  --use_existing_db  read the databases a run with the same --db and --num\n"
        "                     left, rather than loading them first (no fills)\n"
        "  --fio | --no-fio   fio's reads of the data file beside readrandom and\n"
        "                     multiget (default: when on PATH and the data > pool)\n"
        "  --json=FILE, --csv=FILE   one record per engine, benchmark and threads\n",
        benchmarks_default, FILLSEQ_BATCH, NUM_DEFAULT, KEY_SIZE_DEFAULT,
        VALUE_SIZE_DEFAULT, POOL_DEFAULT >> 20, MEM_POOL_FACTOR, PAGE_SIZE_DEFAULT,
        DURATION_DEFAULT, WRITE_DURATION_DEFAULT);
}

/* Parses "4096", "64M", "1G", "1GiB" (binary multiples); 0 or -1. */
static int parse_size(const char *text, uint64_t *value)
{
    unsigned long long n;
    uint64_t mult = 1;
    char *end;

    if (text[0] < '0' || text[0] > '9')
        return -1;
    errno = 0;
    n = strtoull(text, &end, 10);
    if (errno != 0)
        return -1;
    switch (*end) {
    case 'k': case 'K': mult = 1ull << 10; end++; break;
    case 'm': case 'M': mult = 1ull << 20; end++; break;
    case 'g': case 'G': mult = 1ull << 30; end++; break;
    default: break;
    }
    if (mult > 1 && *end == 'i')
        end++;
    if (mult > 1 && (*end == 'B' || *end == 'b'))
        end++;
    if (*end != '\0' || (n != 0 && n > UINT64_MAX / mult))
        return -1;
    *value = (uint64_t)n * mult;
    return 0;
}

/* Calls item(text of one element, index, arg) for each element of a
   comma-separated list; the count, or -1 for an empty or bad element. */
static int parse_list(const char *text, int (*item)(const char *, unsigned, void *),
                      void *arg)
{
    char one[64];
    unsigned n = 0;

    while (*text != '\0') {
        size_t len = strcspn(text, ",");
        if (len == 0 || len >= sizeof(one) || n >= BENCH_LIST_MAX)
            return -1;
        memcpy(one, text, len);
        one[len] = '\0';
        if (item(one, n++, arg) != 0)
            return -1;
        text += len;
        if (*text == ',' && *++text == '\0')
            return -1;
    }
    return n > 0 ? (int)n : -1;
}

static int bench_item(const char *text, unsigned i, void *arg)
{
    struct kv_cfg *cfg = arg;

    for (int b = 0; b < B_COUNT; b++) {
        if (strcmp(text, bench_defs[b].name) == 0) {
            cfg->benches[i] = b;
            return 0;
        }
    }
    fprintf(stderr, "dkv-bench: unknown benchmark '%s'\n", text);
    return -1;
}

static int engine_item(const char *text, unsigned i, void *arg)
{
    struct kv_cfg *cfg = arg;

    for (int e = 0; e < ENGINE_MAX; e++) {
        if (strcmp(text, engine_names[e]) == 0) {
            for (unsigned j = 0; j < i; j++)
                if (cfg->engines[j] == e)
                    return -1;            /* each engine once */
            cfg->engines[i] = e;
            return 0;
        }
    }
    fprintf(stderr, "dkv-bench: unknown engine '%s'\n", text);
    return -1;
}

static int threads_item(const char *text, unsigned i, void *arg)
{
    struct kv_cfg *cfg = arg;
    uint64_t v;

    /* readwhilewriting adds a writer: at most one below the team's size. */
    if (parse_size(text, &v) != 0 || v == 0 || v >= BENCH_THREADS_MAX)
        return -1;
    cfg->threads[i] = (unsigned)v;
    return 0;
}

static void set_defaults(struct kv_cfg *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->bench_count = (unsigned)parse_list(benchmarks_default, bench_item, cfg);
    cfg->num = NUM_DEFAULT;
    cfg->key_size = KEY_SIZE_DEFAULT;
    cfg->value_size = VALUE_SIZE_DEFAULT;
    cfg->pool = POOL_DEFAULT;
    cfg->page_size = PAGE_SIZE_DEFAULT;
    cfg->duration = DURATION_DEFAULT;
    for (int e = 0; e < ENGINE_MAX; e++)
        cfg->engines[e] = e;
    cfg->engine_count = ENGINE_MAX;
    cfg->db = "/tmp/dkv-bench-kv";
    cfg->seed = 1;
    cfg->io_engine = DKV_IO_AUTO;
    cfg->drop = geteuid() == 0 ? DROP_ALL : DROP_FILES;
    cfg->fio = BENCH_FIO_AUTO;
    cfg->cap_page_cache = 1;
}

static int parse_io(const char *text, int *io)
{
    for (int e = DKV_IO_AUTO; e <= DKV_IO_PSYNC; e++) {
        if (strcmp(text, dkv_io_engine_name(e)) == 0) {
            *io = e;
            return 0;
        }
    }
    return -1;
}

/* The options about sizes and counts (see apply_option). */
static int apply_number(struct kv_cfg *cfg, int c, const char *arg)
{
    uint64_t v = 0;
    char *end;
    int bad = c != 'd' && c != 'W' && parse_size(arg, &v) != 0;

    switch (c) {
    case 'n': bad |= v == 0 || v > 1000000000ull; cfg->num = v; break;
    case 'k': bad |= v == 0 || v > DKV_KEY_MAX; cfg->key_size = (unsigned)v; break;
    case 'v':
        bad |= v > RAND_BUF_LEN / 2;
        cfg->value_size = (unsigned)v;
        break;
    case 'p': bad |= v < (1u << 20) || v > (1ull << 40); cfg->pool = v; break;
    case 'M': bad |= v < (1u << 20) || v > (1ull << 40); cfg->mem_pool = v; break;
    case 'L': bad |= v < (1u << 20) || v > (1ull << 40); cfg->fill_pool = v; break;
    case 'P':
        bad |= v < 4096 || v > 65536 || (v & (v - 1));
        cfg->page_size = (uint32_t)v;
        break;
    case 's': cfg->seed = v; break;
    case 'd':
    case 'W':
        *(c == 'd' ? &cfg->duration : &cfg->write_duration) = strtod(arg, &end);
        bad = end == arg || *end != '\0' || !(strtod(arg, NULL) > 0) ||
              strtod(arg, NULL) > 86400.0;
        break;
    default:
        return -1;
    }
    return bad ? -1 : 0;
}

/* Applies one option; 0, or -1 when its value is bad. */
static int apply_option(struct kv_cfg *cfg, int c, const char *arg)
{
    int n;

    switch (c) {
    case 'b':
        n = parse_list(arg, bench_item, cfg);
        cfg->bench_count = n > 0 ? (unsigned)n : 0;
        return n > 0 ? 0 : -1;
    case 'e':
        n = parse_list(arg, engine_item, cfg);
        cfg->engine_count = n > 0 ? (unsigned)n : 0;
        return n > 0 && n <= ENGINE_MAX ? 0 : -1;
    case 't':
        n = parse_list(arg, threads_item, cfg);
        cfg->thread_count = n > 0 ? (unsigned)n : 0;
        return n > 0 ? 0 : -1;
    case 'D':
        if (strcmp(arg, "uniform") != 0 && strcmp(arg, "zipfian") != 0)
            return -1;
        cfg->zipf = strcmp(arg, "zipfian") == 0;
        return 0;
    case 'i': return parse_io(arg, &cfg->io_engine);
    case 'B': cfg->db = arg; return arg[0] == '\0' ? -1 : 0;
    case 'j': cfg->json = arg; return arg[0] == '\0' ? -1 : 0;
    case 'c': cfg->csv = arg; return arg[0] == '\0' ? -1 : 0;
    case 'X':
        if (arg == NULL || strcmp(arg, "1") == 0)
            cfg->drop = DROP_ALL;
        else if (strcmp(arg, "0") == 0)
            cfg->drop = DROP_NONE;
        else
            return -1;
        return 0;
    case 'x': cfg->drop = DROP_NONE; return 0;
    case 'C':
        if (strcmp(arg, "0") != 0 && strcmp(arg, "1") != 0)
            return -1;
        cfg->cap_page_cache = arg[0] == '1';
        return 0;
    case 'U': cfg->use_existing = 1; return 0;
    case 'F': cfg->fio = BENCH_FIO_ON; return 0;
    case 'N': cfg->fio = BENCH_FIO_OFF; return 0;
    default:
        return apply_number(cfg, c, arg);
    }
}

/* Checks what no single option can: the keys must fit their size. */
static int check_cfg(const struct kv_cfg *cfg)
{
    unsigned digits = 1;

    for (uint64_t n = cfg->num - 1; n >= 10; n /= 10)
        digits++;
    if (digits > cfg->key_size) {
        fprintf(stderr, "dkv-bench: --key_size %u is too short for %llu keys\n",
                cfg->key_size, (unsigned long long)cfg->num);
        return -1;
    }
#ifndef DKV_BENCH_SQLITE
    for (unsigned e = 0; e < cfg->engine_count; e++)
        if (cfg->engines[e] == E_SQLITE) {
            fprintf(stderr, "dkv-bench: this build has no sqlite3 (pkg-config "
                    "sqlite3 was not found)\n");
            return -1;
        }
#endif
    return 0;
}

/* Parses the command line; 0, 1 for --help, -1 for a bad one. */
static int parse_args(int argc, char **argv, struct kv_cfg *cfg)
{
    static const struct option longopts[] = {
        { "benchmarks",   required_argument, NULL, 'b' },
        { "engines",      required_argument, NULL, 'e' },
        { "num",          required_argument, NULL, 'n' },
        { "key_size",     required_argument, NULL, 'k' },
        { "key-size",     required_argument, NULL, 'k' },
        { "value_size",   required_argument, NULL, 'v' },
        { "value-size",   required_argument, NULL, 'v' },
        { "threads",      required_argument, NULL, 't' },
        { "pool",         required_argument, NULL, 'p' },
        { "mem_pool",     required_argument, NULL, 'M' },
        { "mem-pool",     required_argument, NULL, 'M' },
        { "page_size",    required_argument, NULL, 'P' },
        { "page-size",    required_argument, NULL, 'P' },
        { "duration",     required_argument, NULL, 'd' },
        { "write_duration", required_argument, NULL, 'W' },
        { "write-duration", required_argument, NULL, 'W' },
        { "fill_pool",    required_argument, NULL, 'L' },
        { "fill-pool",    required_argument, NULL, 'L' },
        { "distribution", required_argument, NULL, 'D' },
        { "io",           required_argument, NULL, 'i' },
        { "db",           required_argument, NULL, 'B' },
        { "json",         required_argument, NULL, 'j' },
        { "csv",          required_argument, NULL, 'c' },
        { "seed",         required_argument, NULL, 's' },
        { "drop-caches",  optional_argument, NULL, 'X' },
        { "drop_caches",  optional_argument, NULL, 'X' },
        { "no-drop-caches", no_argument,     NULL, 'x' },
        { "cap_page_cache", required_argument, NULL, 'C' },
        { "cap-page-cache", required_argument, NULL, 'C' },
        { "use_existing_db", no_argument,    NULL, 'U' },
        { "fio",          no_argument,       NULL, 'F' },
        { "no-fio",       no_argument,       NULL, 'N' },
        { "help",         no_argument,       NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    int c;

    set_defaults(cfg);
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (c == 'h')
            return 1;
        if (c == '?')
            return -1;
        if (apply_option(cfg, c, optarg) != 0) {
            fprintf(stderr, "dkv-bench: bad value for an option: '%s'\n",
                    optarg ? optarg : "");
            return -1;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "dkv-bench: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    return check_cfg(cfg);
}

/* ---- setting up and running ------------------------------------------------------------------ */

/* The keys and values every run draws from. */
static int ctx_init(struct kv_ctx *x)
{
    const struct kv_cfg *cfg = &x->cfg;
    uint64_t rng = cfg->seed ^ 0x6b76626e63680001ull;
    uint32_t *shuffle = NULL;
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
    if (!cfg->zipf)
        return DKV_OK;
    /* Zipfian ranks, mapped through a shuffle so the hot keys are spread
       over the tree rather than packed into its first leaves. */
    x->zipf_keys = malloc(ZIPF_TABLE_LEN * sizeof(uint32_t));
    shuffle = malloc(cfg->num * sizeof(uint32_t));
    if (x->zipf_keys == NULL || shuffle == NULL) {
        free(shuffle);
        return DKV_ERR_NOMEM;
    }
    for (i = 0; i < cfg->num; i++)
        shuffle[i] = (uint32_t)i;
    bench_shuffle(shuffle, cfg->num, &rng);
    bench_zipf_fill(x->zipf_keys, ZIPF_TABLE_LEN, (uint32_t)cfg->num, ZIPF_THETA,
                    cfg->seed);
    for (i = 0; i < ZIPF_TABLE_LEN; i++)
        x->zipf_keys[i] = shuffle[x->zipf_keys[i]];
    free(shuffle);
    return DKV_OK;
}

static void ctx_free(struct kv_ctx *x)
{
    free(x->rand_buf);
    free(x->fill_order);
    free(x->delete_order);
    free(x->zipf_keys);
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
        db->name = engine_names[db->kind];
        db->cfg = &x->cfg;
        if ((size_t)snprintf(db->dir, sizeof(db->dir), "%s/%s", x->cfg.db,
                             db->name) >= sizeof(db->dir))
            return DKV_ERR_INVALID;
        db->loaded = x->cfg.use_existing;
    }
    return DKV_OK;
}

static void print_header(const struct kv_ctx *x)
{
    const struct kv_cfg *c = &x->cfg;
    double raw = (double)c->num * (c->key_size + c->value_size);

    printf("dkv-bench: engine comparison\n");
    printf("keys:       %llu x (%u + %u bytes) = %.1f MB raw, %s\n",
           (unsigned long long)c->num, c->key_size, c->value_size, raw / 1e6,
           c->zipf ? "zipfian (theta 0.99)" : "uniform");
    printf("memory:     dkv pool = sqlite3 cache (split evenly over its connections, "
           "one a thread), page size %u:\n"
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
               "their cache: --cap_page_cache)\n",
               (unsigned long long)(c->pool >> 20), CAP_EVERY * 1000);
    printf("durability: fills, deletes, readwhilewriting: dkv DKV_COMMIT_ASYNC, sqlite3 "
           "WAL synchronous=NORMAL;\n            syncput: DKV_COMMIT_SYNC, sqlite3 "
           "synchronous=FULL (no batches but fillseq's)\n");
    printf("time:       %.1f s per timed read phase, %.1f s for syncput and at most "
           "for deleterandom,\n            after a warm-up of a fifth (at most %.1f s); "
           "dkv io %s; databases in %s\n\n",
           c->duration, write_seconds(c), WARMUP_MAX,
           dkv_io_engine_name(c->io_engine), c->db);
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
    for (unsigned b = 0; b < x->cfg.bench_count && rc == DKV_OK; b++) {
        double t0 = bench_now();
        rc = run_benchmark(x, x->cfg.benches[b]);
        x->bench_seconds[b] = bench_now() - t0;
    }
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

    rc = parse_args(argc, argv, &x.cfg);
    if (rc != 0) {
        if (rc > 0)
            bench_kv_usage(stdout);
        else
            fprintf(stderr, "dkv-bench --help lists the options\n");
        return rc > 0 ? 0 : EXIT_USAGE;
    }
    rc = run_all(&x);
    status = rc == DKV_OK ? 0 : 1;
    if (x.rec_count > 0)
        print_summary(&x);
    printf("\ntotal time %.1f s\n", bench_now() - t0);
    /* A failed run writes no files: a partial one would be quoted. */
    if (status == 0 && x.cfg.json != NULL && write_json(&x, x.cfg.json) != 0)
        status = 1;
    if (status == 0 && x.cfg.csv != NULL && write_csv(&x, x.cfg.csv) != 0)
        status = 1;
    ctx_free(&x);
    return status;
}
