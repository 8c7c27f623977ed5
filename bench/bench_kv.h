/*
 * bench_kv.h - what the files of the engine comparison share (bench_kv.c
 * runs it; see bench/README.md): the result record, the method table of
 * the engines reached through another library (lmdb, rocksdb), the charts
 * (bench_kv_plot.c), the memory cgroups of --mem-limit (bench_kv_cgroup.c),
 * and the run's state that the command line (bench_kv_cli.c) and the
 * output (bench_kv_out.c) read and fill.  Only bench_kv*.c include it.
 */
#ifndef DKV_BENCH_KV_H
#define DKV_BENCH_KV_H

#include "bench.h"

#include "dkv.h"

#include <limits.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

/* The latency CDF kept per record: the latency at each of these
   percentiles (bench_kv.c, kv_cdf_pcts). */
#define KV_CDF_POINTS 24

/* ---- results ------------------------------------------------------------ */

/* One record: one engine, benchmark, thread count (and, in the pool sweep,
   pool size).  Plain data: a --mem-limit child sends its records to the
   parent through a pipe as they are. */
struct kv_record {
    char     benchmark[24];
    char     engine[16];
    char     io[16];
    char     durability[64];
    char     distribution[16];          /* "uniform", "zipfian", "latest"   */
    int      direct;
    unsigned threads;                   /* fio: the benchmark's it is beside */
    unsigned iodepth;                   /* fio's; 0 for the engines         */
    unsigned runs;                      /* --repeat: the median of runs     */
    uint64_t ops;
    double   seconds, ops_per_sec, micros_per_op;
    double   ops_min, ops_max;          /* slowest and fastest run          */
    double   p50_us, p95_us, p99_us, p999_us, max_us;
    double   cdf_us[KV_CDF_POINTS];     /* at kv_cdf_pcts                   */
    uint64_t rss_bytes, page_cache_bytes;
    uint64_t cgroup_bytes;              /* --mem-limit: the cgroup's charge
                                           (RSS + page cache); 0: none      */
    double   hit_pct;                   /* < 0: none                        */
    uint64_t pages_read, disk_read_bytes;
    double   mb_per_sec;                /* readseq: key + value bytes       */
    double   writer_ops_per_sec;        /* readwhilewriting's writer        */
    uint64_t syncs;                     /* log syncs (dkv)                  */
    double   found_pct;                 /* lookups that found their key     */
    double   cpu_us_per_op;             /* the whole process's CPU time     */
    uint64_t pool_bytes;                /* the engine's budget              */
    double   pool_fraction;             /* the sweep: pool / raw data; 0    */
    /* scanresist: the hot reads before the scan, and the scan's time. */
    double   before_ops_per_sec, before_hit_pct, scan_seconds;
};

/* The percentiles of kv_record.cdf_us (0 < p <= 100, rising). */
extern const double kv_cdf_pcts[KV_CDF_POINTS];

/* ---- engines through another library ------------------------------------ */

/* An engine whose code lives in its own file (bench_kv_lmdb.c,
   bench_kv_rocksdb.c), compiled in only when CMake finds its library.
   A database handle is shared by the threads; each thread has its own
   connection.  Every function returns 0 (DKV_OK), DKV_NOTFOUND, or a
   negative DKV_ERR_* after printing what failed. */
struct kv_engine_ops {
    const char *name;                   /* "lmdb", "rocksdb"                */
    /* Opens (create: makes) the database in dir with budget bytes of
       cache; durable: every commit synced; threads: connections to come. */
    int  (*open)(const char *dir, uint64_t budget, uint32_t page_size,
                 int durable, int create, unsigned threads, void **db);
    int  (*close)(void *db);
    int  (*conn_open)(void *db, void **conn);
    void (*conn_close)(void *conn);
    int  (*get)(void *conn, const void *key, size_t klen, void *buf, size_t cap,
                size_t *vlen);
    int  (*put)(void *conn, const void *key, size_t klen, const void *val,
                size_t vlen);
    int  (*del)(void *conn, const void *key, size_t klen);  /* absent: 0 */
    /* Puts between begin and commit are one transaction (fillseq). */
    int  (*begin)(void *conn);
    int  (*commit)(void *conn);
    int  (*multi_get)(void *conn, size_t n, const void *const *keys,
                      const size_t *klens, void *const *bufs, const size_t *caps,
                      size_t *vlens, int *rcs);
    /* Calls fn for up to limit keys (0: all) from the first >= key (NULL:
       from the start), in order; stops early when fn returns non-zero. */
    int  (*scan)(void *conn, const void *key, size_t klen, uint64_t limit,
                 int (*fn)(void *arg, size_t klen, size_t vlen), void *arg);
    /* Block or page cache hits and misses so far; 0: not counted. */
    int  (*counters)(void *db, uint64_t *hits, uint64_t *misses);
    /* The I/O it does ("mmap", "direct", "pread"), *direct 1 for O_DIRECT. */
    const char *(*io)(void *db, int *direct);
    /* What a commit promises, for the record. */
    const char *(*durability)(int durable);
    /* The memory mapping of the data file (lmdb) and the file's path, or
       NULL: the page-cache cap must unmap a page before it can drop it. */
    void *(*mapping)(void *db, size_t *len, const char **path);
};

extern const struct kv_engine_ops kv_lmdb_ops;       /* bench_kv_lmdb.c    */
extern const struct kv_engine_ops kv_rocksdb_ops;    /* bench_kv_rocksdb.c */

/* ---- charts (bench_kv_plot.c) --------------------------------------------- */

/* 1 when gnuplot is on PATH. */
int  kv_plot_available(void);
/* Writes the charts of recs[0..n) into dir with gnuplot: ops.png (ops/s per
   workload and engine), cdf-BENCH.png (latency CDFs), sweep.png (the pool
   sweep, when there are sweep records).  Returns 0, or -1 after saying why. */
int  kv_plot_write(const char *dir, const struct kv_record *recs, unsigned n);

/* ---- memory cgroups (bench_kv_cgroup.c) ------------------------------------ */

struct kv_cgroup {
    int  version;                       /* 1 or 2; 0: none                  */
    char path[512];                     /* the cgroup's directory           */
};

/* Whether a memory cgroup can be made here (root, a memory controller of
   cgroup v2 or v1).  1 yes; 0 no, with the reason in why. */
int      kv_cgroup_probe(char *why, size_t room);
/* Makes cgroup "dkv-bench-PID-name" with a memory limit of limit bytes
   (swap none).  0, or -1 with the reason in why. */
int      kv_cgroup_create(struct kv_cgroup *cg, const char *name, uint64_t limit,
                          char *why, size_t room);
/* Moves process pid into the cgroup; 0 or -1. */
int      kv_cgroup_enter(const struct kv_cgroup *cg, pid_t pid);
/* The memory charged to the cgroup now, and its peak (0: unknown). */
uint64_t kv_cgroup_current(const struct kv_cgroup *cg);
uint64_t kv_cgroup_peak(const struct kv_cgroup *cg);
/* 1 when the cgroup's limit was hit (the OOM killer or a failed charge). */
int      kv_cgroup_oom(const struct kv_cgroup *cg);
/* Removes the cgroup (its processes gone). */
void     kv_cgroup_remove(struct kv_cgroup *cg);


/* ---- the comparison's shared state (bench_kv.c) --------------------------- */

#define ENGINE_MAX          5
#define RECORDS_MAX         512
#define KV_CONNS_MAX        (BENCH_THREADS_MAX + 1)
#define NUM_DEFAULT         500000ull
#define KEY_SIZE_DEFAULT    16u
#define VALUE_SIZE_DEFAULT  100u
#define POOL_DEFAULT        (16ull << 20)   /* 3.5x below the raw data     */
#define PAGE_SIZE_DEFAULT   4096u        /* dkv and sqlite3 alike; = fio's bs */
#define DURATION_DEFAULT    2.5
#define WRITE_DURATION_DEFAULT 1.5       /* syncput, deleterandom            */
#define MEM_POOL_FACTOR     3u           /* in-memory budget: x the raw data */
#define FILLSEQ_BATCH       1000u
#define FIO_DEPTH_MULTIGET  32u
/* readseq runs at least this many times, the median reported: on a
   virtual disk the first read of a file just written can be much slower
   than the next ones (the host has not cached it), and fio's sequential
   reference reads the file many times over. */
#define READSEQ_RUNS        3u
#define FIO_SEQ_BLOCK       (256u << 10) /* readseq's reference: sequential */
#define FIO_SEQ_DEPTH       4u           /* reads of 256 KiB at depth 4     */
#define RAND_BUF_LEN        (1u << 20)   /* value bytes are cut from here    */
#define REPEAT_MAX          99u
#define SWEEP_POINTS        6u           /* 1/16 .. 2 x the raw data         */
#define SCAN_AFTER          0.25         /* scanresist: the window after     */

enum kv_bench_id {
    B_FILLSEQ, B_FILLRANDOM, B_READRANDOM, B_READSEQ, B_MULTIGET,
    B_READWHILEWRITING, B_SYNCPUT, B_DELETERANDOM, B_READRANDOM_MEM,
    B_YCSB_A, B_YCSB_B, B_YCSB_C, B_YCSB_D, B_YCSB_E, B_YCSB_F,
    B_SCANRESIST,
    B_NAMED,                   /* the ones above can be named            */
    B_SWEEP = B_NAMED,         /* --sweep-pool's readrandom              */
    B_HOTREAD,                 /* scanresist's zipfian reads             */
    B_COUNT
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

/* The benchmarks, by enum kv_bench_id. */
extern const struct kv_bench_def kv_bench_defs[B_COUNT];

enum kv_kind { E_DKV_DIRECT, E_DKV_BUFFERED, E_SQLITE, E_LMDB, E_ROCKSDB };

/* The engines' names, by enum kv_kind. */
extern const char *const kv_engine_names[ENGINE_MAX];
/* 1 when this build has engine kind. */
int kv_engine_built(int kind);

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
    int      dist_set;                  /* --distribution given             */
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
    int      cap_set;                   /* --cap_page_cache given           */
    unsigned repeat;                    /* runs of each timed phase         */
    uint64_t mem_limit;                 /* --mem-limit bytes; 0: none       */
    const char *plot_dir;               /* --plot                           */
    int      sweep;                     /* --sweep-pool                     */
    int      bench_set;                 /* --benchmarks given               */
    int      progress;                  /* the stderr line (a terminal)     */
};

/* ---- one engine's database ----------------------------------------------------- */

struct kv_db;

/* One thread's handle: dkv's db is shared by all threads, sqlite3 has a
   connection (and its prepared statements) per thread. */
struct kv_conn {
    struct kv_db *db;
    struct sqlite3      *sq;            /* sqlite3 (NULL for the others)    */
    struct sqlite3_stmt *st_get, *st_put, *st_del, *st_begin, *st_commit, *st_scan;
    void         *ext;                  /* an ext_ops engine's connection   */
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
    const struct kv_engine_ops *ops;    /* lmdb, rocksdb; else NULL         */
    void        *ext;                   /* its database while open          */
    int          durable;               /* syncput: every commit durable    */
    uint64_t     budget;                /* pool / cache bytes               */
    const struct kv_cfg *cfg;
    struct kv_conn conns[KV_CONNS_MAX];
    unsigned     nconns;
    int          loaded;                /* holds the keys                   */
    _Atomic uint64_t inserted;          /* ycsb-d/e: keys num.. added       */
    _Atomic uint64_t insert_next;       /* the next index an insert takes   */
};

/* Everything one run of the comparison shares. */
struct kv_ctx {
    struct kv_cfg     cfg;
    struct kv_db      dbs[ENGINE_MAX];
    unsigned char    *rand_buf;         /* value bytes                     */
    uint32_t         *fill_order;       /* fillrandom: a permutation       */
    uint32_t         *delete_order;     /* deleterandom: another           */
    struct bench_zipf zipf;             /* the scrambled zipfian's ranks   */
    uint64_t          version;          /* overwrites get new values       */
    int               use_fio;
    int               drop_noted;
    struct kv_record  recs[RECORDS_MAX];
    unsigned          rec_count;
    double            bench_seconds[BENCH_LIST_MAX];   /* wall time of each */
    double            sweep_seconds;
    double            hot_warmup, hot_limit;   /* B_HOTREAD's window        */
    uint64_t          hot_first, hot_count;    /* B_HOTREAD's keys          */
    int               keep_conns;       /* scanresist: runs share handles  */
    struct kv_cgroup  cgroup;           /* --mem-limit child: its own      */
    int               mem_limit_on;     /* --mem-limit is enforced         */
    char              mem_limit_why[256];  /* else why not                 */
};


/* The command line (bench_kv_cli.c): fills cfg; 0, 1 for --help, -1 for
   a bad one (said on stderr). */
int  kv_parse_args(int argc, char **argv, struct kv_cfg *cfg);

/* Output (bench_kv_out.c). */
/* The last record of engine and benchmark with `threads` (0: any), the
   sweep's left out; NULL when there is none. */
const struct kv_record *kv_find_record(const struct kv_ctx *x, const char *engine,
                                       const char *bench, unsigned threads);
/* The db_bench line of one record (and its notes) on stdout. */
void kv_print_line(const struct kv_record *rec);
/* The tables after the run: ratios, scaling, scanresist, memory, sweep. */
void kv_print_summary(const struct kv_ctx *x);
/* The records as JSON (an array) and CSV; 0 or -1 after saying why. */
int  kv_write_json(const struct kv_ctx *x, const char *path);
int  kv_write_csv(const struct kv_ctx *x, const char *path);

#endif /* DKV_BENCH_KV_H */
