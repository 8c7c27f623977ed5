/*
 * bench_pool.c - the pool mode of dkv-bench: the buffer pool (pager/pager.h)
 * measured on its own, without the log, over a data file built through the
 * pager's space (pages that pass page_verify), each figure next to its
 * reference measured back to back in the same run.
 *
 * Entry points:
 *   bench_pool_run     builds or reuses the files, runs a..d, adds rows
 *   bench_pool_print   the tables of those rows
 *   bench_pool_warm    reads a list of pages into a pool (wal uses it too)
 *
 * The runs (each --seconds long after a warm-up, --repeat times, median):
 *   a. hits: a pool twice the working set (the first frames/2 pages, read
 *      and then touched again after old_blocks_time so they are young),
 *      uniform random pool_fix(S) + pool_unfix on 1 and 2 threads.
 *   b. random fixes over the whole file (4x the pool), uniform and
 *      zipfian (theta 0.99, ranks scrambled by a random permutation), 1 and
 *      2 threads, with the file opened direct and buffered; hit ratio and
 *      misses/s come from pool_stats taken at the edges of the window.
 *   c. the cost of a miss: one thread walks a random permutation of all
 *      pages, so every fix misses (checked: misses / fixes), against raw
 *      reads of one page at depth 1 through the I/O layer on the same file.
 *   d. prefetch: 32 random 4 KiB pages not in a 64 MiB pool, pool_prefetch,
 *      then fix and unfix each, against fio's randread at iodepth 32.
 * Buffered runs start with the file dropped from the page cache.
 */
#include "bench.h"

#include "dkv.h"
#include "pager/io.h"
#include "pager/pager.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define POOL_SIZE_DEFAULT    (256ull << 20)
#define PAGE_SIZE_BENCH      16384u
#define FILE_POOLS           4u           /* the file holds 4x the pool      */
#define PREFETCH_POOL_SIZE   (64ull << 20)
#define PREFETCH_PAGE_SIZE   4096u
#define PREFETCH_BATCH       32u
#define SECONDS_DEFAULT      3.0
#define REPEAT_DEFAULT       3u
#define ZIPF_THETA           0.99
#define ZIPF_TABLE_LEN       (1u << 21)
#define WARM_BATCH           64u
#define OLD_TIME_WAIT        1.1          /* > old_blocks_time (1000 ms)     */
#define BUILD_CHUNK          (1u << 20)   /* bytes per write when building   */
#define BUILD_DEPTH          8u
#define BUILD_MAGIC          0x48434e4542564b44ull   /* "DKVBENCH"       */
#define HIT_TARGET           5e6          /* fixes/s on one thread           */
#define MISS_TARGET_PCT      10.0         /* miss over raw read, at most     */
#define PREFETCH_TARGET      0.80         /* of fio                          */

/* One data file and a pool over it. */
struct pool_env {
    struct io_ctx *ctx;                  /* the space's header I/O          */
    struct space  *sp;
    struct pool   *pool;
    const char    *path;
    uint32_t       page_size;
    uint32_t       page_count;           /* in the file; page 0 the header  */
    uint32_t       frames;
    int            direct;
};

/* What the mode's runs share. */
struct pool_bench {
    const struct bench_opts *opts;
    struct bench_results    *results;
    double   seconds, warmup;
    unsigned repeat;
    int      use_fio;
    char     path[1024], prefetch_path[1024];
    uint64_t pool_size;
    uint32_t page_size;
};

enum key_kind { KEYS_UNIFORM, KEYS_TABLE, KEYS_CYCLE, KEYS_PREFETCH };

/* One fixing thread. */
struct fix_worker {
    struct bench_worker w;
    struct pool    *pool;
    int             kind;                /* enum key_kind                   */
    uint32_t        lo, span;            /* uniform: pages [lo, lo + span)  */
    const uint32_t *table;               /* TABLE, CYCLE: page numbers      */
    size_t          table_len, pos;
    uint64_t        rng;
} __attribute__((aligned(64)));

/* The edges of one measured window. */
struct fix_window {
    double            ops_per_sec, seconds;
    double            cpu_seconds;       /* the process's, in the window    */
    uint64_t          ops;
    struct pool_stats before, after;
};

static void report(const char *what, const char *path, int rc)
{
    fprintf(stderr, "dkv-bench: %s %s: %s\n", what, path, dkv_strerror(rc));
}

/* ---- building the data file --------------------------------------------------- */

static uint64_t build_magic(uint32_t page_size, uint32_t page_count)
{
    return BUILD_MAGIC ^ ((uint64_t)page_size << 32) ^ page_count;
}

/* Writes pages [1, page_count) as stamped test pages, BUILD_DEPTH chunks
   of BUILD_CHUNK bytes in flight.  0 or a DKV_ERR_*. */
static int write_pages(struct space *sp, struct io_ctx *ctx, uint32_t page_count)
{
    uint32_t ps = space_page_size(sp), per = BUILD_CHUNK / ps, next = 1, i;
    char *region = io_buf_alloc((size_t)BUILD_DEPTH * BUILD_CHUNK, ps);
    struct io_req reqs[BUILD_DEPTH], *ptrs[BUILD_DEPTH];
    unsigned n;
    int rc = region ? DKV_OK : DKV_ERR_NOMEM;

    while (rc == DKV_OK && next < page_count) {
        memset(reqs, 0, sizeof(reqs));
        for (n = 0; n < BUILD_DEPTH && next < page_count; n++) {
            char *buf = region + (size_t)n * BUILD_CHUNK;
            uint32_t k = page_count - next < per ? page_count - next : per;
            for (i = 0; i < k; i++) {
                char *page = buf + (size_t)i * ps;
                page_init(page, ps, next + i, PAGE_TYPE_TEST);
                memcpy(page + PAGE_HEADER_SIZE, &(uint32_t){ next + i }, 4);
                page_stamp(page, ps);
            }
            reqs[n] = (struct io_req){ .op = IO_WRITE, .file = space_file(sp),
                                       .buf = buf, .len = (size_t)k * ps,
                                       .off = space_page_offset(sp, next) };
            ptrs[n] = &reqs[n];
            next += k;
        }
        rc = io_run(ctx, ptrs, n);
    }
    io_buf_free(region, (size_t)BUILD_DEPTH * BUILD_CHUNK);
    return rc;
}

/* Lays out a new file at path: page_count pages, the header written last
   with a magic that says the build finished. */
static int build_new(const char *path, struct io_ctx *ctx, uint32_t page_size,
                     uint32_t page_count)
{
    struct space_config sc = { .page_size = page_size, .create = 1, .direct = 1 };
    struct space *sp = NULL;
    double t0 = bench_now();
    int rc;

    printf("pool: writing %s (%u pages of %u bytes) ...\n", path, page_count,
           page_size);
    rc = space_open(path, &sc, ctx, &sp);
    if (rc == DKV_OK)
        rc = space_ensure(sp, page_count);
    if (rc == DKV_OK)
        rc = write_pages(sp, ctx, page_count);
    if (rc == DKV_OK) {
        space_header(sp)->page_count = page_count;
        space_header(sp)->meta[0] = build_magic(page_size, page_count);
        rc = io_file_sync(space_file(sp));
    }
    if (rc == DKV_OK)
        rc = space_write_header(sp, ctx);
    if (rc == DKV_OK)
        rc = io_file_sync(space_file(sp));
    if (sp != NULL)
        space_close(sp);
    if (rc == DKV_OK)
        printf("pool: wrote and synced in %.1f s\n", bench_now() - t0);
    return rc;
}

/* What an existing file at path is: 1 a finished dkv-bench file of this
   geometry, 0 one of ours of another geometry or an unfinished build (to
   be rebuilt), -1 something else (left alone). */
static int classify_file(const char *path, struct io_ctx *ctx, uint32_t page_size,
                         uint32_t page_count)
{
    struct space_config sc = { .direct = 1 };      /* the recorded page size */
    struct space *sp = NULL;
    uint64_t magic, tag;
    int kind = -1;

    if (space_open(path, &sc, ctx, &sp) != DKV_OK)
        return -1;
    magic = space_header(sp)->meta[0];
    tag = magic ^ build_magic(space_page_size(sp), 0);
    if (magic == build_magic(page_size, page_count) &&
        space_page_size(sp) == page_size)
        kind = 1;
    else if (tag <= UINT32_MAX && tag == space_header(sp)->page_count)
        kind = 0;                        /* ours, another geometry */
    else if (magic == 0 && space_header(sp)->page_count == 1)
        kind = 0;                        /* a build that never finished */
    space_close(sp);
    return kind;
}

/* Makes path a finished data file of page_count pages of page_size:
   reused when it is one, else rebuilt; a file that is not ours is left
   alone (an error).  0 or a DKV_ERR_* (reported). */
static int prepare_file(const char *path, uint32_t page_size, uint32_t page_count)
{
    struct io_ctx_config cfg = { .engine = DKV_IO_AUTO, .depth = BUILD_DEPTH };
    struct io_ctx *ctx = NULL;
    int rc = io_ctx_create(&cfg, &ctx), kind = 0;

    if (rc == DKV_OK && access(path, F_OK) == 0) {
        kind = classify_file(path, ctx, page_size, page_count);
        if (kind < 0) {
            fprintf(stderr, "dkv-bench: %s exists and is not a dkv-bench pool "
                    "file; remove it or choose another --file\n", path);
            rc = DKV_ERR_INVALID;
        } else if (kind == 0 && unlink(path) != 0) {
            rc = DKV_ERR_IO;
        }
    }
    if (rc == DKV_OK && kind == 1)
        printf("pool: reusing %s (%u pages of %u bytes)\n", path, page_count,
               page_size);
    else if (rc == DKV_OK)
        rc = build_new(path, ctx, page_size, page_count);
    if (ctx != NULL)
        io_ctx_destroy(ctx);
    if (rc != DKV_OK)
        report("preparing", path, rc);
    return rc;
}

/* ---- a pool over the file -------------------------------------------------------- */

static void env_close(struct pool_env *env)
{
    if (env->pool != NULL)
        pool_close(env->pool);
    if (env->sp != NULL)
        space_close(env->sp);
    if (env->ctx != NULL)
        io_ctx_destroy(env->ctx);
    env->pool = NULL;
    env->sp = NULL;
    env->ctx = NULL;
}

/* Opens path (direct or buffered) and a pool of pool_size over it. */
static int env_open(struct pool_env *env, const char *path, uint32_t page_size,
                    uint64_t pool_size, int direct)
{
    struct io_ctx_config cfg = { .engine = DKV_IO_AUTO, .depth = 8 };
    struct space_config sc = { .page_size = page_size, .direct = direct };
    struct pool_config pc = { .pool_size = (size_t)pool_size,
                              .io_engine = DKV_IO_AUTO };
    int rc;

    memset(env, 0, sizeof(*env));
    env->path = path;
    env->direct = direct;
    rc = io_ctx_create(&cfg, &env->ctx);
    if (rc == DKV_OK)
        rc = space_open(path, &sc, env->ctx, &env->sp);
    if (rc == DKV_OK)
        rc = pool_open(env->sp, &pc, &env->pool);
    if (rc != DKV_OK) {
        report("opening a pool over", path, rc);
        env_close(env);
        return rc;
    }
    env->page_size = page_size;
    env->page_count = (uint32_t)space_header(env->sp)->page_count;
    env->frames = (uint32_t)(pool_size / page_size);
    return DKV_OK;
}

/* Drops the file from the page cache (buffered runs start cold). */
static void drop_cache(const struct pool_env *env)
{
    int err = posix_fadvise(io_file_fd(space_file(env->sp)), 0, 0,
                            POSIX_FADV_DONTNEED);

    if (err != 0)
        fprintf(stderr, "dkv-bench: note: posix_fadvise(DONTNEED): %s\n",
                strerror(err));
}

/* Reads pages[0..n) into the pool: prefetched in batches, then fixed once
   each (a second call after old_blocks_time makes them young). */
int bench_pool_warm(struct pool *pool, const uint32_t *pages, size_t n)
{
    struct frame *f;
    size_t i, j;
    int rc = DKV_OK;

    for (i = 0; i < n && rc == DKV_OK; i += WARM_BATCH) {
        size_t k = n - i < WARM_BATCH ? n - i : WARM_BATCH;
        pool_prefetch(pool, pages + i, (unsigned)k);
        for (j = 0; j < k && rc == DKV_OK; j++) {
            rc = pool_fix(pool, pages[i + j], POOL_S, 0, &f);
            if (rc == DKV_OK)
                pool_unfix(pool, f);
        }
    }
    return rc;
}

/* ---- fixing threads ------------------------------------------------------------------ */

static uint32_t next_page(struct fix_worker *fw)
{
    if (fw->kind == KEYS_UNIFORM)
        return fw->lo + (uint32_t)bench_rand_below(&fw->rng, fw->span);
    /* TABLE and CYCLE walk their table; the start differs (run_fixers). */
    fw->pos = fw->pos + 1 < fw->table_len ? fw->pos + 1 : 0;
    return fw->table[fw->pos];
}

/* Fills batch with PREFETCH_BATCH distinct random pages not in the pool. */
static void pick_absent(struct fix_worker *fw, uint32_t *batch)
{
    unsigned n = 0, i, tries = 0;

    while (n < PREFETCH_BATCH && tries++ < 1000 * PREFETCH_BATCH) {
        uint32_t p = fw->lo + (uint32_t)bench_rand_below(&fw->rng, fw->span);
        for (i = 0; i < n && batch[i] != p; i++)
            ;
        if (i == n && !pool_contains(fw->pool, p))
            batch[n++] = p;
    }
    while (n < PREFETCH_BATCH)                 /* bounded: take any page */
        batch[n++] = fw->lo + (uint32_t)bench_rand_below(&fw->rng, fw->span);
}

/* One prefetch round: 32 absent pages prefetched, then fixed. */
static int prefetch_round(struct fix_worker *fw)
{
    uint32_t batch[PREFETCH_BATCH];
    struct frame *f;
    unsigned i;
    int rc;

    pick_absent(fw, batch);
    rc = pool_prefetch(fw->pool, batch, PREFETCH_BATCH);
    for (i = 0; i < PREFETCH_BATCH && rc == DKV_OK; i++) {
        rc = pool_fix(fw->pool, batch[i], POOL_S, 0, &f);
        if (rc == DKV_OK) {
            pool_unfix(fw->pool, f);
            bench_worker_count(&fw->w);
        }
    }
    return rc;
}

static void *fix_main(void *arg)
{
    struct fix_worker *fw = arg;
    struct frame *f;
    int rc = DKV_OK;

    bench_worker_ready(&fw->w);
    while (!bench_stopping(&fw->w) && rc == DKV_OK) {
        if (fw->kind == KEYS_PREFETCH) {
            rc = prefetch_round(fw);
            continue;
        }
        rc = pool_fix(fw->pool, next_page(fw), POOL_S, 0, &f);
        if (rc == DKV_OK) {
            pool_unfix(fw->pool, f);
            bench_worker_count(&fw->w);
        }
    }
    if (rc != DKV_OK)
        bench_worker_fail(&fw->w, rc);
    return NULL;
}

/* Runs threads copies of proto (each with its own seed and, for a table,
   its own starting point) for warmup + seconds; *win gets the window.  A
   CYCLE worker continues from *cursor and leaves it where it stopped. */
static int run_fixers(struct pool_env *env, const struct fix_worker *proto,
                      unsigned threads, double warmup, double seconds,
                      size_t *cursor, struct fix_window *win)
{
    struct fix_worker *ws = aligned_alloc(64, threads * sizeof(*ws));
    struct bench_team team;
    uint64_t ops0;
    double t0;
    unsigned i;
    int rc;

    memset(win, 0, sizeof(*win));
    if (ws == NULL)
        return DKV_ERR_NOMEM;
    for (i = 0; i < threads; i++) {
        ws[i] = *proto;
        ws[i].pool = env->pool;
        ws[i].rng = 0x9e3779b97f4a7c15ull * (i + 1) ^ (uint64_t)bench_now_ns();
        if (ws[i].table_len > 0)
            ws[i].pos = cursor ? *cursor
                               : (size_t)bench_rand_below(&ws[i].rng, ws[i].table_len);
    }
    rc = bench_team_start(&team, threads, fix_main, ws, sizeof(*ws));
    if (rc == DKV_OK) {
        bench_team_sleep(&team, warmup);
        ops0 = bench_team_ops(&team);
        pool_stats_get(env->pool, &win->before);
        win->cpu_seconds = bench_cpu_seconds();
        t0 = bench_now();
        bench_team_sleep(&team, seconds);
        win->ops = bench_team_ops(&team) - ops0;
        win->seconds = bench_now() - t0;
        win->cpu_seconds = bench_cpu_seconds() - win->cpu_seconds;
        pool_stats_get(env->pool, &win->after);
        win->ops_per_sec = (double)win->ops / win->seconds;
        rc = bench_team_stop(&team);
    }
    if (cursor != NULL)
        *cursor = ws[0].pos;
    free(ws);
    if (rc != DKV_OK)
        report("fixing pages of", env->path, rc);
    return rc;
}

/* ---- rows ------------------------------------------------------------------------- */

static void row_init(struct bench_result *r, const char *benchmark,
                     const char *engine, const struct pool_env *env,
                     const char *io, unsigned threads)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->benchmark, sizeof(r->benchmark), "%s", benchmark);
    snprintf(r->engine, sizeof(r->engine), "%s", engine);
    snprintf(r->io, sizeof(r->io), "%s", io);
    snprintf(r->mode, sizeof(r->mode), "%s", env->direct ? "direct" : "buffered");
    r->block = env->page_size;
    r->threads = threads;
    r->runs = 1;
    r->o_direct = io_file_direct(space_file(env->sp));
}

/* The figures of a fixing window: rates per thread, hit ratio, misses. */
static void window_figures(struct bench_result *r, const struct fix_window *w)
{
    double hits = (double)(w->after.hits - w->before.hits);
    double misses = (double)(w->after.misses - w->before.misses);
    double waits = (double)(w->after.read_waits - w->before.read_waits);
    double fixes = hits + misses + waits;

    r->ops_per_sec = w->ops_per_sec;
    bench_extra_set(r, "fixes_per_sec_per_thread", w->ops_per_sec / r->threads);
    bench_extra_set(r, "ns_per_fix", w->ops_per_sec > 0
                    ? 1e9 * r->threads / w->ops_per_sec : 0);
    bench_extra_set(r, "hit_ratio", fixes > 0 ? hits / fixes : 0);
    bench_extra_set(r, "misses_per_sec", misses / w->seconds);
    bench_extra_set(r, "misses_per_fix", w->ops > 0 ? misses / (double)w->ops : 0);
    bench_extra_set(r, "read_waits_per_sec", waits / w->seconds);
    bench_extra_set(r, "made_young_per_sec",
                    (double)(w->after.made_young - w->before.made_young) / w->seconds);
    bench_extra_set(r, "evictions_per_sec",
                    (double)(w->after.evictions - w->before.evictions) / w->seconds);
    bench_extra_set(r, "fg_free_waits",
                    (double)(w->after.fg_free_waits - w->before.fg_free_waits));
    bench_extra_set(r, "cpus_busy", w->cpu_seconds / w->seconds);
}

/* Adds the median of runs[0..n) as a row; returns that row's index. */
static int add_median(struct pool_bench *pb, const struct bench_result *runs,
                      unsigned n, size_t *index)
{
    struct bench_result row;

    bench_rows_median(runs, n, &row);
    *index = pb->results->count;
    return bench_results_add(pb->results, &row);
}


/* The backend the pool's slots use, as an enum dkv_io_engine. */
static int env_engine(const struct pool_env *env, const char **name)
{
    struct pool_stats st;
    int e;

    pool_stats_get(env->pool, &st);
    *name = st.io_engine;
    for (e = DKV_IO_URING; e <= DKV_IO_PSYNC; e++)
        if (strcmp(dkv_io_engine_name(e), st.io_engine) == 0)
            return e;
    return DKV_IO_AUTO;
}

/* ---- a. hits ------------------------------------------------------------------------- */

/* Reads the first frames/2 pages, waits past old_blocks_time and touches
   them again, so the working set sits young in a pool twice its size. */
static int warm_working_set(struct pool_env *env, uint32_t count)
{
    uint32_t *pages = malloc(count * sizeof(*pages));
    uint32_t i;
    int rc;

    if (pages == NULL)
        return DKV_ERR_NOMEM;
    for (i = 0; i < count; i++)
        pages[i] = 1 + i;
    rc = bench_pool_warm(env->pool, pages, count);
    bench_sleep(OLD_TIME_WAIT);
    if (rc == DKV_OK)
        rc = bench_pool_warm(env->pool, pages, count);
    free(pages);
    return rc;
}

static int run_hits(struct pool_bench *pb)
{
    static const unsigned threads[2] = { 1, 2 };
    struct bench_result *runs = calloc(2 * pb->repeat, sizeof(*runs));
    struct fix_worker proto = { .kind = KEYS_UNIFORM, .lo = 1 };
    struct fix_window win;
    struct pool_env env;
    const char *io;
    unsigned r, t;
    size_t at[2];
    int rc = runs ? env_open(&env, pb->path, pb->page_size, pb->pool_size, 1)
                  : DKV_ERR_NOMEM;

    if (rc != DKV_OK)
        goto out;
    env_engine(&env, &io);
    proto.span = env.frames / 2;
    printf("pool: a. hits: %u pages (frames/2) warmed young in a pool of %u "
           "frames\n", proto.span, env.frames);
    rc = warm_working_set(&env, proto.span);
    for (r = 0; r < pb->repeat && rc == DKV_OK; r++) {
        for (t = 0; t < 2 && rc == DKV_OK; t++) {
            struct bench_result *row = &runs[t * pb->repeat + r];
            rc = run_fixers(&env, &proto, threads[t], pb->warmup, pb->seconds,
                            NULL, &win);
            row_init(row, "pool_hit", "dkv", &env, io, threads[t]);
            snprintf(row->dist, sizeof(row->dist), "uniform");
            window_figures(row, &win);
            fprintf(stderr, "pool: hit %u thread(s) run %u/%u: %.2f M fixes/s "
                    "(hit ratio %.4f)\n", threads[t], r + 1, pb->repeat,
                    win.ops_per_sec / 1e6, bench_extra_get(row, "hit_ratio"));
        }
    }
    env_close(&env);
    for (t = 0; t < 2 && rc == DKV_OK; t++)
        rc = add_median(pb, runs + t * pb->repeat, pb->repeat, &at[t]);
    if (rc == DKV_OK)
        bench_set_target(&pb->results->rows[at[0]], "a. hit fixes/s, 1 thread",
                         pb->results->rows[at[0]].ops_per_sec, HIT_TARGET, 0);
out:
    free(runs);
    return rc;
}

/* ---- b. random fixes over the whole file --------------------------------------------- */

/* Page numbers 1..count in random order. */
static uint32_t *page_permutation(uint32_t count, uint64_t seed)
{
    uint32_t *perm = malloc(count * sizeof(*perm));
    uint32_t i;

    if (perm == NULL)
        return NULL;
    for (i = 0; i < count; i++)
        perm[i] = 1 + i;
    bench_shuffle(perm, count, &seed);
    return perm;
}

/* A table of page numbers drawn zipfian over pages 1..count, the ranks
   scrambled through perm (so hot pages are spread over the file). */
static uint32_t *zipf_pages(const uint32_t *perm, uint32_t count)
{
    uint32_t *table = malloc(ZIPF_TABLE_LEN * sizeof(*table));
    size_t i;

    if (table == NULL)
        return NULL;
    bench_zipf_fill(table, ZIPF_TABLE_LEN, count, ZIPF_THETA, 0x5eed);
    for (i = 0; i < ZIPF_TABLE_LEN; i++)
        table[i] = perm[table[i]];
    return table;
}

/* One random-fix run of configuration (dist, threads) into row. */
static int random_run(struct pool_bench *pb, struct pool_env *env,
                      const uint32_t *zipf, int dist, unsigned threads,
                      struct bench_result *row)
{
    struct fix_worker proto = { .kind = dist ? KEYS_TABLE : KEYS_UNIFORM, .lo = 1,
                                .span = env->page_count - 1 };
    struct fix_window win;
    const char *io;
    int rc;

    if (dist) {
        proto.table = zipf;
        proto.table_len = ZIPF_TABLE_LEN;
    }
    if (!env->direct)
        drop_cache(env);
    rc = run_fixers(env, &proto, threads, pb->warmup, pb->seconds, NULL, &win);
    env_engine(env, &io);
    row_init(row, "pool_random", "dkv", env, io, threads);
    snprintf(row->dist, sizeof(row->dist), "%s", dist ? "zipf0.99" : "uniform");
    window_figures(row, &win);
    fprintf(stderr, "pool: random %-8s %-8s %u thread(s): %.0f fixes/s, hit "
            "ratio %.3f, %.0f misses/s\n", row->mode, row->dist, threads,
            win.ops_per_sec, bench_extra_get(row, "hit_ratio"),
            bench_extra_get(row, "misses_per_sec"));
    return rc;
}

/* The runs of one open mode (direct or buffered): a pool filled with
   random pages, then every (distribution, threads) --repeat times. */
static int random_mode(struct pool_bench *pb, int direct, const uint32_t *perm,
                       const uint32_t *zipf, struct bench_result *runs)
{
    struct pool_env env;
    unsigned r, c;
    int rc = env_open(&env, pb->path, pb->page_size, pb->pool_size, direct);

    if (rc != DKV_OK)
        return rc;
    if (!direct)
        drop_cache(&env);
    rc = bench_pool_warm(env.pool, perm, env.frames < env.page_count - 1
                                    ? env.frames : env.page_count - 1);
    for (r = 0; r < pb->repeat && rc == DKV_OK; r++)
        for (c = 0; c < 4 && rc == DKV_OK; c++)
            rc = random_run(pb, &env, zipf, (int)(c / 2), 1 + c % 2,
                            &runs[c * pb->repeat + r]);
    env_close(&env);
    return rc;
}

static int run_random(struct pool_bench *pb, uint32_t page_count)
{
    struct bench_result *runs = calloc(8 * pb->repeat, sizeof(*runs));
    uint32_t *perm = page_permutation(page_count - 1, 0xfeed);
    uint32_t *zipf = perm ? zipf_pages(perm, page_count - 1) : NULL;
    unsigned m, c;
    size_t at;
    int rc = runs && zipf ? DKV_OK : DKV_ERR_NOMEM;

    printf("pool: b. random fixes over %u pages (4x the pool), uniform and "
           "zipfian (theta %.2f)\n", page_count - 1, ZIPF_THETA);
    for (m = 0; m < 2 && rc == DKV_OK; m++)
        rc = random_mode(pb, m == 0, perm, zipf, runs + m * 4 * pb->repeat);
    for (c = 0; c < 8 && rc == DKV_OK; c++)
        rc = add_median(pb, runs + c * pb->repeat, pb->repeat, &at);
    free(zipf);
    free(perm);
    free(runs);
    return rc;
}

/* ---- c. the cost of a miss -------------------------------------------------------------- */

/* Raw random reads of one page at depth 1 through the I/O layer, direct,
   with the pool's backend: *ops_per_sec after warmup.  0 or a DKV_ERR_*. */
static int raw_reads(const struct pool_env *env, int engine, double warmup,
                     double seconds, double *ops_per_sec)
{
    struct io_ctx_config cfg = { .engine = engine, .depth = 1 };
    struct io_file *file = NULL;
    struct io_ctx *ctx = NULL;
    struct io_req req, *p = &req, *done[1];
    uint64_t rng = bench_now_ns(), ops = 0;
    void *buf = io_buf_alloc(env->page_size, env->page_size);
    double t0 = 0, now = bench_now(), start = now + warmup, end = start + seconds;
    int rc = buf ? io_file_open(env->path, IO_OPEN_DIRECT, &file) : DKV_ERR_NOMEM;

    if (rc == DKV_OK)
        rc = io_ctx_create(&cfg, &ctx);
    if (rc == DKV_OK)
        io_ctx_register(ctx, &file, 1, buf, env->page_size);
    while (rc == DKV_OK && now < end) {
        uint64_t page = 1 + bench_rand_below(&rng, env->page_count - 1);
        req = (struct io_req){ .op = IO_READ, .file = file, .buf = buf,
                               .len = env->page_size,
                               .off = page * env->page_size };
        rc = io_ctx_submit(ctx, &p, 1);
        if (rc == DKV_OK && io_ctx_reap(ctx, done, 1, 1) != 1)
            rc = DKV_ERR_IO;
        if (rc == DKV_OK && req.res != (int64_t)env->page_size)
            rc = req.res < 0 ? (int)req.res : DKV_ERR_IO;
        now = bench_now();
        if (now >= start && t0 == 0)
            t0 = now;
        ops += t0 > 0;
    }
    if (rc == DKV_OK)
        *ops_per_sec = (double)ops / (now - t0);
    if (ctx != NULL)
        io_ctx_destroy(ctx);
    if (file != NULL)
        io_file_close(file);
    io_buf_free(buf, env->page_size);
    return rc;
}

/* Microseconds crc32c takes over one page (what page_verify adds to a
   miss), from a short loop. */
static double crc_us_per_page(uint32_t page_size)
{
    void *buf = calloc(1, page_size);
    uint32_t crc = 0;
    double t0 = bench_now();
    unsigned i;

    if (buf == NULL)
        return 0;
    for (i = 0; i < 4000; i++)
        crc = crc32c(crc, buf, page_size);
    t0 = bench_now() - t0;
    free(buf);
    return crc == 1 ? 0 : t0 * 1e6 / 4000;     /* crc used: not optimised out */
}

/* One round: the pool's misses, then raw reads, back to back. */
static int miss_round(struct pool_bench *pb, struct pool_env *env,
                      const struct fix_worker *proto, size_t *cursor,
                      struct bench_result *mine, struct bench_result *raw)
{
    struct fix_window win;
    const char *io;
    int engine = env_engine(env, &io);
    int rc = run_fixers(env, proto, 1, pb->warmup, pb->seconds, cursor, &win);

    row_init(mine, "pool_miss", "dkv", env, io, 1);
    snprintf(mine->dist, sizeof(mine->dist), "cycle");
    mine->depth = 1;
    window_figures(mine, &win);
    bench_extra_set(mine, "us_per_op", win.ops_per_sec > 0 ? 1e6 / win.ops_per_sec : 0);
    row_init(raw, "pool_miss", "raw", env, io, 1);
    raw->depth = 1;
    if (rc == DKV_OK)
        rc = raw_reads(env, engine, pb->warmup, pb->seconds, &raw->ops_per_sec);
    if (rc != DKV_OK)
        report("raw reads of", env->path, rc);
    bench_extra_set(raw, "us_per_op", raw->ops_per_sec > 0 ? 1e6 / raw->ops_per_sec : 0);
    fprintf(stderr, "pool: miss %.1f us/fix (misses/fix %.3f), raw read %.1f us\n",
            bench_extra_get(mine, "us_per_op"), bench_extra_get(mine, "misses_per_fix"),
            bench_extra_get(raw, "us_per_op"));
    return rc;
}

/* Adds the two median rows and the target: the miss's overhead. */
static int miss_rows(struct pool_bench *pb, struct bench_result *mine,
                     struct bench_result *raw, double crc_us)
{
    size_t at, raw_at;
    double us, raw_us, overhead;
    int rc = add_median(pb, mine, pb->repeat, &at);

    if (rc == DKV_OK)
        rc = add_median(pb, raw, pb->repeat, &raw_at);
    if (rc != DKV_OK)
        return rc;
    us = 1e6 / pb->results->rows[at].ops_per_sec;
    raw_us = 1e6 / pb->results->rows[raw_at].ops_per_sec;
    overhead = 100.0 * (us / raw_us - 1.0);
    pb->results->rows[at].ratio = us / raw_us;
    pb->results->rows[at].ratio_of = "raw read (us per op)";
    bench_extra_set(&pb->results->rows[at], "us_per_op", us);
    bench_extra_set(&pb->results->rows[raw_at], "us_per_op", raw_us);
    bench_extra_set(&pb->results->rows[at], "overhead_pct", overhead);
    bench_extra_set(&pb->results->rows[at], "crc32c_us_per_page", crc_us);
    bench_set_target(&pb->results->rows[at], "c. miss overhead over a raw read, %",
                     overhead, MISS_TARGET_PCT, 1);
    return DKV_OK;
}

static int run_miss(struct pool_bench *pb, uint32_t page_count)
{
    struct bench_result *mine = calloc(pb->repeat, sizeof(*mine));
    struct bench_result *raw = calloc(pb->repeat, sizeof(*raw));
    uint32_t *perm = page_permutation(page_count - 1, 0xc0ffee);
    struct fix_worker proto = { .kind = KEYS_CYCLE, .table = perm,
                                .table_len = page_count - 1 };
    struct pool_env env;
    size_t cursor;
    unsigned r;
    int rc = mine && raw && perm ? DKV_OK : DKV_ERR_NOMEM;

    if (rc == DKV_OK)
        rc = env_open(&env, pb->path, pb->page_size, pb->pool_size, 1);
    if (rc != DKV_OK)
        goto out;
    printf("pool: c. miss cost: a cycle through all %u pages (every fix "
           "misses) vs raw reads at depth 1\n", page_count - 1);
    cursor = env.frames < page_count - 1 ? env.frames : 0;
    rc = bench_pool_warm(env.pool, perm, cursor);     /* start with a full pool */
    for (r = 0; r < pb->repeat && rc == DKV_OK; r++)
        rc = miss_round(pb, &env, &proto, &cursor, &mine[r], &raw[r]);
    env_close(&env);
    if (rc == DKV_OK)
        rc = miss_rows(pb, mine, raw, crc_us_per_page(pb->page_size));
out:
    free(perm);
    free(raw);
    free(mine);
    return rc;
}

/* ---- d. prefetch -------------------------------------------------------------------------- */

/* fio's random reads of the prefetch file at depth 32; -1 when it failed. */
static int prefetch_fio(struct pool_bench *pb, const struct pool_env *env,
                        const char *io, double *iops)
{
    char cmd[2048], path[1100], runtime[32];
    int n;

    if (bench_shell_quote(path, sizeof(path), env->path) < 0)
        return -1;
    bench_fio_runtime(runtime, sizeof(runtime), pb->seconds);
    n = snprintf(cmd, sizeof(cmd),
                 "fio --name=dkv --filename=%s --direct=1 --ioengine=%s "
                 "--iodepth=%u --bs=%u --rw=randread --runtime=%s --time_based "
                 "--size=%llu --output-format=json --norandommap --randrepeat=0",
                 path, io, PREFETCH_BATCH, env->page_size, runtime,
                 (unsigned long long)env->page_count * env->page_size);
    if (n <= 0 || (size_t)n >= sizeof(cmd))
        return -1;
    return bench_fio_run(cmd, "read", iops);
}

/* One round: our prefetch batches, then fio, back to back. */
static int prefetch_vs_fio(struct pool_bench *pb, struct pool_env *env,
                          struct bench_result *mine, struct bench_result *fio,
                          int *use_fio)
{
    struct fix_worker proto = { .kind = KEYS_PREFETCH, .lo = 1,
                                .span = env->page_count - 1 };
    struct fix_window win;
    const char *io;
    int rc;

    env_engine(env, &io);
    rc = run_fixers(env, &proto, 1, pb->warmup, pb->seconds, NULL, &win);
    row_init(mine, "pool_prefetch", "dkv", env, io, 1);
    mine->depth = PREFETCH_BATCH;
    window_figures(mine, &win);
    bench_extra_set(mine, "prefetched_per_sec",
                    (double)(win.after.prefetched - win.before.prefetched) / win.seconds);
    row_init(fio, "pool_prefetch", "fio", env, io, 1);
    fio->depth = PREFETCH_BATCH;
    if (rc == DKV_OK && *use_fio && prefetch_fio(pb, env, io, &fio->ops_per_sec) != 0)
        *use_fio = 0;                        /* reported; compare no more */
    fprintf(stderr, "pool: prefetch %.0f pages/s", win.ops_per_sec);
    if (*use_fio)
        fprintf(stderr, ", fio %.0f (ours %.1f%%)", fio->ops_per_sec,
                100.0 * win.ops_per_sec / fio->ops_per_sec);
    fprintf(stderr, "\n");
    return rc;
}

static int run_prefetch(struct pool_bench *pb)
{
    struct bench_result *mine = calloc(pb->repeat, sizeof(*mine));
    struct bench_result *fio = calloc(pb->repeat, sizeof(*fio));
    struct pool_env env;
    int use_fio = pb->use_fio;
    size_t at, fio_at;
    unsigned r;
    int rc = mine && fio ? env_open(&env, pb->prefetch_path, PREFETCH_PAGE_SIZE,
                                    PREFETCH_POOL_SIZE, 1) : DKV_ERR_NOMEM;

    if (rc != DKV_OK)
        goto out;
    printf("pool: d. prefetch: batches of %u random 4 KiB pages not in a "
           "64 MiB pool, vs fio iodepth %u\n", PREFETCH_BATCH, PREFETCH_BATCH);
    for (r = 0; r < pb->repeat && rc == DKV_OK; r++)
        rc = prefetch_vs_fio(pb, &env, &mine[r], &fio[r], &use_fio);
    env_close(&env);
    if (rc == DKV_OK)
        rc = add_median(pb, mine, pb->repeat, &at);
    if (rc == DKV_OK && use_fio)
        rc = add_median(pb, fio, pb->repeat, &fio_at);
    if (rc == DKV_OK && use_fio) {
        struct bench_result *row = &pb->results->rows[at];
        row->ratio = row->ops_per_sec / pb->results->rows[fio_at].ops_per_sec;
        row->ratio_of = "fio";
        row->vs_fio = row->ratio;
        bench_set_target(row, "d. prefetch pages/s vs fio iodepth 32",
                         row->ratio, PREFETCH_TARGET, 0);
    }
out:
    free(fio);
    free(mine);
    return rc;
}

/* ---- the mode ------------------------------------------------------------------------------ */

/* The mode's settings from the command line and its defaults. */
static int setup(struct pool_bench *pb, const struct bench_opts *opts,
                 struct bench_results *results, uint32_t *page_count)
{
    uint64_t frames, count;

    memset(pb, 0, sizeof(*pb));
    pb->opts = opts;
    pb->results = results;
    pb->seconds = opts->seconds_set ? opts->seconds : SECONDS_DEFAULT;
    pb->repeat = opts->repeat_set ? opts->repeat : REPEAT_DEFAULT;
    pb->warmup = opts->warmup_seconds;
    pb->page_size = opts->page_size ? opts->page_size : PAGE_SIZE_BENCH;
    pb->pool_size = opts->pool_size ? opts->pool_size : POOL_SIZE_DEFAULT;
    frames = pb->pool_size / pb->page_size;
    count = frames * FILE_POOLS;
    if (frames < 2 * WARM_BATCH || count > UINT32_MAX) {
        fprintf(stderr, "dkv-bench: pool: %llu frames of %u bytes is out of "
                "range\n", (unsigned long long)frames, pb->page_size);
        return DKV_ERR_INVALID;
    }
    *page_count = (uint32_t)count;
    if (opts->file_set) {
        snprintf(pb->path, sizeof(pb->path), "%s", opts->file_path);
        snprintf(pb->prefetch_path, sizeof(pb->prefetch_path), "%s.prefetch",
                 opts->file_path);
    } else {
        snprintf(pb->path, sizeof(pb->path), "/tmp/dkv-bench-pool-%uk.dat",
                 pb->page_size / 1024);
        snprintf(pb->prefetch_path, sizeof(pb->prefetch_path),
                 "/tmp/dkv-bench-pool-prefetch-4k.dat");
    }
    pb->use_fio = opts->fio != BENCH_FIO_OFF && bench_fio_on_path();
    if (!pb->use_fio && opts->fio == BENCH_FIO_ON) {
        fprintf(stderr, "dkv-bench: --fio: no fio on PATH\n");
        return DKV_ERR_UNSUPPORTED;
    }
    if (!pb->use_fio)
        printf("pool: note: no fio; run d has no comparison and no verdict\n");
    return DKV_OK;
}

int bench_pool_run(const struct bench_opts *opts, struct bench_results *results)
{
    struct pool_bench pb;
    uint32_t page_count, prefetch_count;
    int rc = setup(&pb, opts, results, &page_count);

    if (rc != DKV_OK)
        return rc;
    prefetch_count = (uint32_t)(PREFETCH_POOL_SIZE / PREFETCH_PAGE_SIZE * FILE_POOLS);
    printf("pool: %.1f s per run after %.1f s of warm-up, %u runs each; pool "
           "%llu MiB of %u-byte pages\n", pb.seconds, pb.warmup, pb.repeat,
           (unsigned long long)(pb.pool_size >> 20), pb.page_size);
    if (strpbrk(opts->parts, "abc") != NULL)
        rc = prepare_file(pb.path, pb.page_size, page_count);
    if (rc == DKV_OK && strchr(opts->parts, 'd') != NULL)
        rc = prepare_file(pb.prefetch_path, PREFETCH_PAGE_SIZE, prefetch_count);
    if (rc == DKV_OK && strchr(opts->parts, 'a') != NULL)
        rc = run_hits(&pb);
    if (rc == DKV_OK && strchr(opts->parts, 'b') != NULL)
        rc = run_random(&pb, page_count);
    if (rc == DKV_OK && strchr(opts->parts, 'c') != NULL)
        rc = run_miss(&pb, page_count);
    if (rc == DKV_OK && strchr(opts->parts, 'd') != NULL)
        rc = run_prefetch(&pb);
    return rc;
}

/* ---- the tables ------------------------------------------------------------------------------ */

static void print_fix_rows(FILE *out, const struct bench_results *results,
                           const char *benchmark)
{
    size_t i;

    fprintf(out, "%-8s %-9s %7s %12s %12s %10s %7s %8s %11s %11s %5s %9s\n", "mode",
            "dist", "threads", "fixes/s", "per thread", "ns/fix", "hit %",
            "misses/s", "min", "max", "CPUs", "young/s");
    for (i = 0; i < results->count; i++) {
        const struct bench_result *r = &results->rows[i];
        if (strcmp(r->benchmark, benchmark) != 0)
            continue;
        fprintf(out, "%-8s %-9s %7u %12.0f %12.0f %10.1f %7.2f %8.0f %11.0f %11.0f "
                "%5.2f %9.0f\n", r->mode, r->dist, r->threads, r->ops_per_sec,
                bench_extra_get(r, "fixes_per_sec_per_thread"),
                bench_extra_get(r, "ns_per_fix"),
                100.0 * bench_extra_get(r, "hit_ratio"),
                bench_extra_get(r, "misses_per_sec"), r->ops_min, r->ops_max,
                bench_extra_get(r, "cpus_busy"),
                bench_extra_get(r, "made_young_per_sec"));
    }
}

static void print_pair_rows(FILE *out, const struct bench_results *results,
                            const char *benchmark)
{
    size_t i;

    fprintf(out, "%-6s %-9s %6s %7s %12s %10s %11s %11s %10s\n", "engine",
            "backend", "depth", "block", "ops/s", "us/op", "min", "max",
            "misses/op");
    for (i = 0; i < results->count; i++) {
        const struct bench_result *r = &results->rows[i];
        if (strcmp(r->benchmark, benchmark) != 0)
            continue;
        fprintf(out, "%-6s %-9s %6u %7u %12.0f %10.2f %11.0f %11.0f %10.3f\n",
                r->engine, r->io, r->depth, r->block, r->ops_per_sec,
                r->ops_per_sec > 0 ? 1e6 / r->ops_per_sec : 0.0, r->ops_min,
                r->ops_max, bench_extra_get(r, "misses_per_fix"));
        if (r->ratio_of != NULL)
            fprintf(out, "       -> %.3f x %s", r->ratio, r->ratio_of);
        if (bench_extra_get(r, "overhead_pct") != 0)
            fprintf(out, "; overhead %+.1f %% (crc32c of a page: %.2f us)",
                    bench_extra_get(r, "overhead_pct"),
                    bench_extra_get(r, "crc32c_us_per_page"));
        if (r->ratio_of != NULL)
            fprintf(out, "\n");
    }
}

void bench_pool_print(FILE *out, const struct bench_results *results)
{
    fprintf(out, "\na. hits: uniform pool_fix(S)+pool_unfix over a working set "
            "of frames/2 pages\n");
    print_fix_rows(out, results, "pool_hit");
    fprintf(out, "\nb. random fixes over the whole file (4x the pool)\n");
    print_fix_rows(out, results, "pool_random");
    fprintf(out, "\nc. miss cost: every fix a miss vs raw reads, depth 1, same "
            "file, O_DIRECT\n");
    print_pair_rows(out, results, "pool_miss");
    fprintf(out, "\nd. prefetch: batches of 32 absent 4 KiB pages vs fio "
            "randread iodepth 32\n");
    print_pair_rows(out, results, "pool_prefetch");
    fprintf(out, "(ops/s: median of %u run(s); buffered runs start with the "
            "file dropped from the page cache)\n",
            results->count ? results->rows[0].runs : 0);
}
