/*
 * bench.h - what the parts of dkv-bench share: the parsed options, timing,
 * a fast deterministic PRNG, and the result rows that every mode appends
 * and dkv_bench.c prints as a table and writes as JSON.
 *
 * dkv_bench.c owns main, the command line, mode dispatch and the output;
 * each mode lives in its own file (bench_io.c: the I/O micro-benchmark;
 * bench_pool.c: the buffer pool; bench_wal.c: the redo log through the
 * page store).  bench_util.c holds what the modes share at run time
 * (worker threads, latency histograms, zipfian keys, medians of runs);
 * bench_fio.c runs fio, the reference the modes compare against.
 */
#ifndef DKV_BENCH_H
#define DKV_BENCH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define BENCH_LIST_MAX 16          /* entries in one comma-separated list   */
#define BENCH_EXTRA_MAX 28         /* named figures on one result row       */
#define BENCH_THREADS_MAX 64       /* worker threads in one run             */

enum bench_fio { BENCH_FIO_AUTO = 0, BENCH_FIO_ON, BENCH_FIO_OFF };

/* The command line, parsed and checked by dkv_bench.c. */
struct bench_opts {
    const char *file_path;             /* the data file of the io mode      */
    uint64_t    file_size;             /* bytes, a multiple of 4096         */
    double      seconds;               /* measured time per run             */
    double      warmup_seconds;        /* unmeasured time before each run   */
    unsigned    repeat;                /* runs per configuration            */
    unsigned    submit_chunk;          /* io: requests per system call
                                          (io_ctx_config.submit_chunk); 0:
                                          the I/O layer's default           */
    int         fio;                   /* enum bench_fio                    */
    const char *json_path;             /* NULL: no JSON file                */
    int         engines[BENCH_LIST_MAX];   /* enum dkv_io_engine            */
    unsigned    engine_count;
    int         directs[BENCH_LIST_MAX];   /* 1: O_DIRECT, 0: page cache    */
    unsigned    direct_count;
    unsigned    depths[BENCH_LIST_MAX];    /* requests in flight            */
    unsigned    depth_count;
    uint32_t    blocks[BENCH_LIST_MAX];    /* bytes per request             */
    unsigned    block_count;
    /* What the command line set explicitly (a mode's own defaults apply
       otherwise: the values above are the io mode's). */
    int         file_set, seconds_set, repeat_set;
    uint64_t    pool_size;             /* pool: bytes of frames; 0: default */
    uint32_t    page_size;             /* pool: bytes; 0: 16 KiB            */
    double      stall_seconds;         /* wal: the stall run's length       */
    double      recovery_gib;          /* wal: GiB of log to recover        */
    const char *dir;                   /* wal: where its scratch directory
                                          goes (default /tmp)               */
    const char *parts;                 /* pool, wal: the runs to do, as
                                          letters ("abcd": all)             */
};

/* A named figure of a result row (the name is a string constant). */
struct bench_extra {
    const char *name;
    double      value;
};

/* One row of the results: one configuration, summarised over its runs. */
struct bench_result {
    char     benchmark[32];            /* "io_randread"                     */
    char     engine[16];               /* "dkv" (ours) or "fio"             */
    char     io[16];                   /* backend: "io_uring", "libaio"...  */
    char     mode[24];                 /* "direct", "buffered", "O_DSYNC"... */
    unsigned depth;
    uint32_t block;                    /* bytes                             */
    double   ops_per_sec;              /* median over the runs              */
    double   ops_min, ops_max;         /* slowest and fastest run           */
    unsigned runs;
    int      o_direct;                 /* O_DIRECT really in use (IO4)      */
    unsigned submit_chunk;             /* see bench_opts; 0: the default    */
    double   vs_fio;                   /* ours / fio's median; 0: none      */
    /* The pool and wal modes (zero in io rows, and then not in the JSON). */
    char     dist[16];                 /* keys: "uniform", "zipf0.99"...    */
    unsigned threads;                  /* worker threads; 0: not a field    */
    double   ratio;                    /* to ratio_of's median; 0: none     */
    const char *ratio_of;              /* "fio", "raw read", "1 thread"...  */
    const char *target_name;           /* NULL: the row has no target       */
    double   measured, target;         /* the figure and its bound          */
    int      target_le;                /* 1: pass when measured <= target   */
    int      pass;
    unsigned extra_count;
    struct bench_extra extra[BENCH_EXTRA_MAX];
};

struct bench_results {
    struct bench_result *rows;
    size_t               count, cap;
};

/* ---- modes ------------------------------------------------------------ */

/* Each mode appends its rows to results; returns 0, or a negative
   DKV_ERR_* after printing what failed.  A mode with its own table layout
   has a print function (dkv_bench.c prints the io layout otherwise). */

/* The io mode (bench_io.c). */
int bench_io_run(const struct bench_opts *opts, struct bench_results *results);
/* The pool mode (bench_pool.c): hits, random fixes, miss cost, prefetch. */
int  bench_pool_run(const struct bench_opts *opts, struct bench_results *results);
void bench_pool_print(FILE *out, const struct bench_results *results);
struct pool;
/* Reads pages[0..n) into pool (prefetched in batches, then fixed once
   each), so a run starts warm.  0 or a DKV_ERR_*. */
int  bench_pool_warm(struct pool *pool, const uint32_t *pages, size_t n);
/* The wal mode (bench_wal.c): group commit, stalls, page images, recovery. */
int  bench_wal_run(const struct bench_opts *opts, struct bench_results *results);
void bench_wal_print(FILE *out, const struct bench_results *results);

/* The engine comparison (bench_kv.c): dkv-bench with no mode, or with
   options starting with "--" (db_bench's flags).  Returns the exit status
   (0, 1 a failed run, 2 a bad command line). */
int  bench_kv_main(int argc, char **argv);
void bench_kv_usage(FILE *out);

/* ---- results and output (dkv_bench.c) ---------------------------------- */

/* Appends a copy of row; 0 or DKV_ERR_NOMEM. */
int  bench_results_add(struct bench_results *results,
                       const struct bench_result *row);
/* Sorts values[0..n) and stores the median, minimum and maximum; n > 0. */
void bench_summarize(double *values, unsigned n, double *median,
                     double *min, double *max);
/* Seconds on the monotonic clock. */
double bench_now(void);
/* Parses "4096", "16K", "512M", "1G", "1GiB", "4096B" (binary multiples)
   into *value: 0, or -1 for anything else or an overflow. */
int    bench_parse_size(const char *text, uint64_t *value);
/* Prints every row that has a target: measured, target, PASS/FAIL. */
void bench_print_targets(FILE *out, const struct bench_results *results);

/* ---- rows (bench_util.c) ------------------------------------------------ */

/* Sets (adds, or replaces) the figure name of row r. */
void   bench_extra_set(struct bench_result *r, const char *name, double value);
/* The figure name of r; 0 when r has none. */
double bench_extra_get(const struct bench_result *r, const char *name);
/* Gives r a target: pass when measured >= target (or <= with le). */
void   bench_set_target(struct bench_result *r, const char *name, double measured,
                        double target, int le);
/* Summarises n > 0 runs of one configuration (rows made by the same code,
   so their figures come in the same order) into out: the first run's
   labels, the median of ops_per_sec (min and max beside it) and of every
   figure.  Sorts nothing in runs. */
void   bench_rows_median(const struct bench_result *runs, unsigned n,
                         struct bench_result *out);

/* ---- worker threads (bench_util.c) ------------------------------------ */

/* What a run's threads share: the main thread opens and closes the
   measured window and says when to stop; workers only read these. */
struct bench_ctl {
    atomic_int        measuring;       /* 1 inside the measured window      */
    atomic_int        stop;
    atomic_uint       ready;           /* workers that reached their loop   */
    atomic_int        go;              /* 1: all are ready, start           */
};

/* The first member of every worker's argument. */
struct bench_worker {
    struct bench_ctl *ctl;
    unsigned          index;           /* 0..threads-1                      */
    _Atomic uint64_t  ops;             /* operations done so far            */
    int               rc;              /* 0, or why the worker stopped      */
};

struct bench_team {
    unsigned         count;
    pthread_t        tids[BENCH_THREADS_MAX];
    struct bench_ctl ctl;
    struct bench_worker *workers[BENCH_THREADS_MAX];
};

/* Starts n threads running fn(worker i), worker i being the struct
   bench_worker at (char *)args + i * stride; returns once all of them
   have called bench_worker_ready.  0 or DKV_ERR_NOMEM (none left running). */
int  bench_team_start(struct bench_team *t, unsigned n, void *(*fn)(void *),
                      void *args, size_t stride);
/* Workers call this once, before their loop. */
void bench_worker_ready(struct bench_worker *w);
/* The operations of all workers so far. */
uint64_t bench_team_ops(const struct bench_team *t);
/* Stops the workers, joins them; returns the first worker's error or 0. */
int  bench_team_stop(struct bench_team *t);
/* Opens or closes the measured window. */
void bench_team_measure(struct bench_team *t, int on);
/* Sleeps s seconds, or until a worker failed; 0, or 1 when one did. */
int  bench_team_sleep(struct bench_team *t, double s);

static inline int bench_stopping(const struct bench_worker *w)
{
    return atomic_load_explicit(&w->ctl->stop, memory_order_relaxed);
}

static inline int bench_measuring(const struct bench_worker *w)
{
    return atomic_load_explicit(&w->ctl->measuring, memory_order_relaxed);
}

/* A worker that failed: records why and stops the whole team. */
static inline void bench_worker_fail(struct bench_worker *w, int rc)
{
    w->rc = rc;
    atomic_store(&w->ctl->stop, 1);
}

/* Counts one operation (a plain store: only this thread writes ops). */
static inline void bench_worker_count(struct bench_worker *w)
{
    atomic_store_explicit(&w->ops,
                          atomic_load_explicit(&w->ops, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

void     bench_sleep(double seconds);
uint64_t bench_now_ns(void);
/* CPU seconds (user + system) the whole process has used so far. */
double   bench_cpu_seconds(void);

/* ---- latency histograms (bench_util.c) --------------------------------- */

/* Log-linear: exact below 128 ns, then 64 steps per power of two (each
   value is kept within 1.6 %); the maximum is exact. */
#define BENCH_HIST_BUCKETS (128u + 57u * 64u)
struct bench_hist {
    uint64_t count, max_ns, sum_ns;
    uint64_t buckets[BENCH_HIST_BUCKETS];
};
void   bench_hist_add(struct bench_hist *h, uint64_t ns);
void   bench_hist_merge(struct bench_hist *dst, const struct bench_hist *src);
/* The pct-th percentile (0 < pct <= 100) in microseconds; 0 when empty. */
double bench_hist_pct_us(const struct bench_hist *h, double pct);

/* ---- keys (bench_util.c) ------------------------------------------------- */

/* Fills out[0..len) with zipfian ranks in [0, n) (theta < 1; YCSB's
   generator after Gray et al.), rank 0 the most frequent. */
void bench_zipf_fill(uint32_t *out, size_t len, uint32_t n, double theta,
                     uint64_t seed);
/* A zipfian generator over [0, n), rank 0 the most frequent (Gray et al.,
   "Quickly generating billion-record synthetic databases", SIGMOD 1994:
   the generator YCSB uses), 0 < theta < 1.  zetan is kept so that n can
   grow (YCSB's "latest" distribution follows the inserts). */
struct bench_zipf {
    uint64_t n;
    double   theta, alpha, zetan, zeta2, eta;
};
void     bench_zipf_init(struct bench_zipf *z, uint64_t n, double theta);
/* Grows n to n_new (>= n), adding the new terms of zetan. */
void     bench_zipf_grow(struct bench_zipf *z, uint64_t n_new);
uint64_t bench_zipf_next(const struct bench_zipf *z, uint64_t *rng);
/* YCSB's scrambled zipfian: a rank over BENCH_ZIPF_SCRAMBLE_ITEMS items,
   hashed (FNV-1a, 64 bits) onto [0, n): the popular keys are spread over
   the key space instead of being its first ones.  z: bench_zipf_init'ed
   with BENCH_ZIPF_SCRAMBLE_ITEMS. */
#define BENCH_ZIPF_SCRAMBLE_ITEMS 10000000000ull
uint64_t bench_zipf_scrambled(const struct bench_zipf *z, uint64_t *rng, uint64_t n);
/* Shuffles a[0..n) (Fisher-Yates). */
void bench_shuffle(uint32_t *a, size_t n, uint64_t *rng);

/* ---- fio (bench_fio.c) ---------------------------------------------------- */

/* 1 when an executable named fio is on PATH. */
int  bench_fio_on_path(void);
/* Writes s single-quoted for the shell into out (room bytes).  Returns the
   length, or -1 when it does not fit. */
int  bench_shell_quote(char *out, size_t room, const char *s);
/* fio's --runtime value for seconds: "5" or "2500ms". */
void bench_fio_runtime(char *out, size_t room, double seconds);
/* Runs the fio command line cmd (which must ask for --output-format=json)
   and stores the "iops" of the first job's section ("read" or "write").
   Returns 0, or -1 after printing why fio gave no figure. */
int  bench_fio_run(const char *cmd, const char *section, double *iops);

/* ---- the PRNG: splitmix64, deterministic for a given seed -------------- */

static inline uint64_t bench_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

__extension__ typedef unsigned __int128 bench_u128;    /* GCC and Clang */

/* A uniform value in [0, bound), bound > 0, without a division (Lemire). */
static inline uint64_t bench_rand_below(uint64_t *state, uint64_t bound)
{
    return (uint64_t)(((bench_u128)bench_rand(state) * bound) >> 64);
}

#endif /* DKV_BENCH_H */
