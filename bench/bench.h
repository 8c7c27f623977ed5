/*
 * bench.h - what the parts of dkv-bench share: the parsed options, timing,
 * a fast deterministic PRNG, and the result rows that every mode appends
 * and dkv_bench.c prints as a table and writes as JSON.
 *
 * dkv_bench.c owns main, the command line, mode dispatch and the output;
 * each mode lives in its own file (bench_io.c: the I/O micro-benchmark).
 */
#ifndef DKV_BENCH_H
#define DKV_BENCH_H

#include <stddef.h>
#include <stdint.h>

#define BENCH_LIST_MAX 16          /* entries in one comma-separated list   */

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
};

/* One row of the results: one configuration, summarised over its runs. */
struct bench_result {
    char     benchmark[32];            /* "io_randread"                     */
    char     engine[16];               /* "dkv" (ours) or "fio"             */
    char     io[16];                   /* backend: "io_uring", "libaio"...  */
    char     mode[16];                 /* "direct" or "buffered"            */
    unsigned depth;
    uint32_t block;                    /* bytes                             */
    double   ops_per_sec;              /* median over the runs              */
    double   ops_min, ops_max;         /* slowest and fastest run           */
    unsigned runs;
    int      o_direct;                 /* O_DIRECT really in use (IO4)      */
    unsigned submit_chunk;             /* see bench_opts; 0: the default    */
    double   vs_fio;                   /* ours / fio's median; 0: none      */
};

struct bench_results {
    struct bench_result *rows;
    size_t               count, cap;
};

/* ---- modes ------------------------------------------------------------ */

/* The io mode (bench_io.c).  Appends its rows to results; returns 0, or a
   negative DKV_ERR_* after printing what failed. */
int bench_io_run(const struct bench_opts *opts, struct bench_results *results);

/* ---- results and output (dkv_bench.c) ---------------------------------- */

/* Appends a copy of row; 0 or DKV_ERR_NOMEM. */
int  bench_results_add(struct bench_results *results,
                       const struct bench_result *row);
/* Sorts values[0..n) and stores the median, minimum and maximum; n > 0. */
void bench_summarize(double *values, unsigned n, double *median,
                     double *min, double *max);
/* Seconds on the monotonic clock. */
double bench_now(void);

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
