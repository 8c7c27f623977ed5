/*
 * bench_wal.c - the wal mode of dkv-bench: the redo log measured through
 * the page store (engine/engine.h: data file + buffer pool + log, recovery
 * at open), in a fresh directory under --dir (/tmp/dkv-bench-wal.XXXXXX)
 * that is removed at the end.
 *
 * Entry points:
 *   bench_wal_run      runs a..d, adds rows
 *   bench_wal_print    the tables of those rows
 *
 * A put is one MTR: X-fix one random page of 10,000 pre-allocated 16 KiB
 * pages, pool_mtr_write a value (100 bytes; 1-4 KiB to fill a log fast) at
 * a random offset, store_commit with WAL_UNIT_END | WAL_SYNC.
 *   a. group commit: durable puts/s on 1 and 8 threads, DKV_COMMIT_SYNC,
 *      with the log written O_DIRECT + fdatasync and O_DIRECT + O_DSYNC,
 *      interleaved with fio's sync rate on a file in the same directory
 *      (4 KiB writes, fdatasync after each, direct and buffered, the file
 *      written once first: --overwrite=1, see fio_sync), each
 *      round in the order fio, fio, ours..., --repeat rounds, medians.
 *      The store is reopened (closed cleanly, pool warmed) before every
 *      run of ours, so every run starts from the same state.  Then
 *      DKV_COMMIT_ASYNC on 1 and 8 threads for scale.
 *      Every store uses the doublewrite file against torn pages (the
 *      default); two more runs (1 and 8 threads, fdatasync) use full page
 *      images in the log instead, for c.
 *   b. worst put stall: 2 threads, ASYNC, a 64 MiB log and a 32 MiB pool
 *      over 160 MiB of pages (the cleaner must write, checkpoints must
 *      move), every put's latency in a histogram, with the doublewrite
 *      file and then with page images (the write cost of each: puts/s,
 *      pages through the doublewrite file, log bytes); then SYNC on 8
 *      threads.
 *   c. the cost of full page images: pool_stats images vs wal_stats bytes,
 *      per run of a.
 *   d. recovery: a 1280 MiB log filled (ASYNC, 4 threads, 1-4 KiB values)
 *      until 1 GiB lies past the checkpoint, synced, abandoned (no flush),
 *      and store_open timed.
 */
#include "bench.h"

#include "dkv.h"
#include "engine/engine.h"

#include <errno.h>
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WAL_PAGES            10000u
#define WAL_PAGE_SIZE        16384u
#define VALUE_LEN            100u
#define BIG_VALUE_MIN        1024u
#define BIG_VALUE_MAX        4096u
#define VALUES_LEN           (2 * BIG_VALUE_MAX)
#define ALLOC_PER_MTR        31u          /* + page 0 = POOL_MTR_PAGES       */
#define GC_POOL_SIZE         (256ull << 20)
#define STALL_POOL_SIZE      (32ull << 20)
#define STALL_LOG_SIZE       (64ull << 20)
#define RECOVERY_LOG_SIZE    (1280ull << 20)
#define RECOVERY_POOL_SIZE   (256ull << 20)
#define MANY_THREADS         8u
#define STALL_ASYNC_THREADS  2u
#define RECOVERY_THREADS     4u
#define RECOVERY_FILL_MAX_S  600.0        /* give up filling the log after   */
#define SECONDS_DEFAULT      3.0
#define REPEAT_DEFAULT       3u
#define SYNC_TARGET          0.80         /* ours on 1 thread / fio          */
#define SCALE_TARGET         4.0          /* ours on 8 threads / 1 thread    */
#define RECOVERY_TARGET_S    60.0         /* seconds, not minutes            */

/* What the mode's runs share. */
struct wal_bench {
    const struct bench_opts *opts;
    struct bench_results    *results;
    double   seconds, warmup, stall_seconds;
    uint64_t recovery_bytes;
    unsigned repeat;
    int      use_fio;
    char     dir[1024];                  /* the scratch directory           */
    char     path[1100];                 /* scratch: a path inside dir      */
    unsigned char values[VALUES_LEN];    /* random bytes values come from   */
    uint32_t pages[WAL_PAGES];           /* 1..WAL_PAGES, to warm the pool  */
};

/* One putting thread. */
struct put_worker {
    struct bench_worker  w;
    struct store        *s;
    const unsigned char *values;
    uint32_t             value_min, value_max;
    uint64_t             rng;
    struct bench_hist   *put_hist;       /* NULL: latencies not kept        */
    struct bench_hist   *commit_hist;
} __attribute__((aligned(64)));

/* One run's measured window. */
struct put_window {
    double            ops_per_sec, seconds;
    double            cpu_seconds;       /* the process's, in the window    */
    uint64_t          ops;
    struct wal_stats  wal0, wal1;
    struct pool_stats pool0, pool1;
    uint64_t          dw_pages0, dw_pages1, dw_batches0, dw_batches1;
    struct bench_hist put, commit;       /* merged over the threads         */
};

/* A store configuration of this mode. */
struct wal_setup {
    const char *name;                    /* sub-directory of the scratch dir */
    uint64_t    pool_size, log_capacity;
    int         commit_mode, log_dsync;
    unsigned    checkpoint_pct;
    int         torn_pages;              /* STORE_TORN_*                     */
};

static void report(const char *what, const char *path, int rc)
{
    fprintf(stderr, "dkv-bench: %s %s: %s\n", what, path, dkv_strerror(rc));
}

/* ---- the scratch directory -------------------------------------------------- */

static int remove_one(const char *path, const struct stat *st, int type,
                      struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    if (remove(path) != 0)
        fprintf(stderr, "dkv-bench: note: cannot remove %s\n", path);
    return 0;
}

static void remove_tree(const char *dir)
{
    nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

static const char *sub_path(struct wal_bench *wb, const char *name)
{
    snprintf(wb->path, sizeof(wb->path), "%s/%s", wb->dir, name);
    return wb->path;
}

/* ---- stores ------------------------------------------------------------------ */

static void store_cfg(struct store_config *c, const struct wal_setup *ws)
{
    memset(c, 0, sizeof(*c));
    c->pool_size = (size_t)ws->pool_size;
    c->page_size = WAL_PAGE_SIZE;
    c->io_engine = DKV_IO_AUTO;
    c->direct = 1;
    c->commit_mode = ws->commit_mode;
    c->create = 1;
    c->log_capacity = ws->log_capacity;
    c->log_dsync = ws->log_dsync;
    c->log_checkpoint_pct = ws->checkpoint_pct;
    c->torn_pages = ws->torn_pages;
}

/* Allocates pages 1..WAL_PAGES (31 per MTR, with page 0), then flushes
   everything and checkpoints.  0 or a DKV_ERR_*. */
static int populate(struct store *s)
{
    struct pool_mtr m;
    struct frame *f;
    uint32_t done = 0, k;
    int rc = DKV_OK;

    while (rc == DKV_OK && done < WAL_PAGES) {
        rc = store_mtr_start(s, &m);
        for (k = 0; rc == DKV_OK && k < ALLOC_PER_MTR && done < WAL_PAGES; k++) {
            rc = pool_mtr_alloc(&m, PAGE_TYPE_TEST, &f);
            /* A fresh file: the pages come in order, 1..WAL_PAGES. */
            if (rc == DKV_OK && frame_page_no(f) != ++done)
                rc = DKV_ERR_CORRUPT;
        }
        if (rc == DKV_OK)
            rc = store_commit(s, &m, WAL_UNIT_END);
        else
            pool_mtr_abandon(&m);
        pool_mtr_free_buffers(&m);
    }
    return rc == DKV_OK ? store_checkpoint(s) : rc;
}

/* Opens the store of ws (creating and populating it the first time) and,
   when its pool holds them all, reads every page into the pool. */
static int open_store(struct wal_bench *wb, const struct wal_setup *ws,
                      struct store **sp)
{
    struct store_config cfg;
    const char *dir = sub_path(wb, ws->name);
    int fresh = access(dir, F_OK) != 0;
    int rc;

    store_cfg(&cfg, ws);
    *sp = NULL;
    rc = store_open(dir, &cfg, sp, NULL);
    if (rc == DKV_OK && fresh)
        rc = populate(*sp);
    if (rc == DKV_OK && ws->pool_size >= (uint64_t)(WAL_PAGES + 64) * WAL_PAGE_SIZE)
        rc = bench_pool_warm(store_pool(*sp), wb->pages, WAL_PAGES);
    if (rc != DKV_OK) {
        report("opening the store", dir, rc);
        store_abandon(*sp);
        *sp = NULL;
    }
    return rc;
}

static int close_store(struct store *s)
{
    int rc = store_close(s);

    if (rc != DKV_OK)
        report("closing", "the store", rc);
    return rc;
}

/* ---- putting threads --------------------------------------------------------- */

/* One put; *commit_ns gets the time store_commit started. */
static int put_one(struct put_worker *pw, uint64_t *commit_ns)
{
    uint32_t len = pw->value_min == pw->value_max ? pw->value_min
                 : pw->value_min + (uint32_t)bench_rand_below(
                       &pw->rng, pw->value_max - pw->value_min + 1);
    uint32_t page = 1 + (uint32_t)bench_rand_below(&pw->rng, WAL_PAGES);
    uint32_t off = PAGE_HEADER_SIZE + (uint32_t)bench_rand_below(
                       &pw->rng, WAL_PAGE_SIZE - PAGE_HEADER_SIZE - len + 1);
    const unsigned char *value = pw->values + bench_rand_below(&pw->rng,
                                                               VALUES_LEN - len);
    struct pool_mtr m;
    struct frame *f;
    int rc = store_mtr_start(pw->s, &m);

    if (rc == DKV_OK)
        rc = pool_mtr_fix(&m, page, POOL_X, 0, &f);
    if (rc == DKV_OK)
        rc = pool_mtr_write(&m, f, off, value, len);
    *commit_ns = bench_now_ns();
    if (rc == DKV_OK)
        rc = store_commit(pw->s, &m, WAL_UNIT_END | WAL_SYNC);
    else
        pool_mtr_abandon(&m);            /* nothing was changed */
    pool_mtr_free_buffers(&m);
    return rc;
}

static void *put_main(void *arg)
{
    struct put_worker *pw = arg;
    uint64_t t0, tc, t1;
    int rc = DKV_OK;

    bench_worker_ready(&pw->w);
    while (!bench_stopping(&pw->w) && rc == DKV_OK) {
        t0 = bench_now_ns();
        rc = put_one(pw, &tc);
        t1 = bench_now_ns();
        if (rc == DKV_OK && pw->put_hist != NULL && bench_measuring(&pw->w)) {
            bench_hist_add(pw->put_hist, t1 - t0);
            bench_hist_add(pw->commit_hist, t1 - tc);
        }
        bench_worker_count(&pw->w);
    }
    if (rc != DKV_OK)
        bench_worker_fail(&pw->w, rc);
    return NULL;
}

/* Frees the workers and their histograms, merged into win first (when
   not NULL). */
static void free_workers(struct put_worker *ws, unsigned threads,
                         struct put_window *win)
{
    unsigned i;

    for (i = 0; ws != NULL && i < threads; i++) {
        if (win != NULL && ws[i].put_hist != NULL) {
            bench_hist_merge(&win->put, ws[i].put_hist);
            bench_hist_merge(&win->commit, ws[i].commit_hist);
        }
        free(ws[i].put_hist);
        free(ws[i].commit_hist);
    }
    free(ws);
}

/* Makes threads workers like proto, with histograms when keep_latency. */
static struct put_worker *make_workers(const struct put_worker *proto,
                                       unsigned threads, int keep_latency)
{
    struct put_worker *ws = aligned_alloc(64, threads * sizeof(*ws));
    unsigned i;

    for (i = 0; ws != NULL && i < threads; i++) {
        ws[i] = *proto;
        ws[i].rng = 0x9e3779b97f4a7c15ull * (i + 1) ^ bench_now_ns();
        ws[i].put_hist = keep_latency ? calloc(1, sizeof(struct bench_hist)) : NULL;
        ws[i].commit_hist = keep_latency ? calloc(1, sizeof(struct bench_hist)) : NULL;
        if (keep_latency && (!ws[i].put_hist || !ws[i].commit_hist)) {
            free_workers(ws, i + 1, NULL);
            return NULL;                 /* out of memory: the run fails */
        }
    }
    return ws;
}

/* Runs threads putters on s for warmup + seconds, every put's latency kept
   in the window; *win gets the window and the statistics at its edges. */
static int run_puts(struct wal_bench *wb, struct store *s, unsigned threads,
                    uint32_t value_len, double warmup, double seconds,
                    struct put_window *win)
{
    struct put_worker proto = { .s = s, .values = wb->values,
                                .value_min = value_len, .value_max = value_len };
    struct put_worker *ws = make_workers(&proto, threads, 1);
    struct bench_team team;
    uint64_t ops0;
    double t0;
    int rc = ws ? bench_team_start(&team, threads, put_main, ws, sizeof(*ws))
                : DKV_ERR_NOMEM;

    memset(win, 0, sizeof(*win));
    if (rc == DKV_OK) {
        bench_team_sleep(&team, warmup);
        ops0 = bench_team_ops(&team);
        wal_stats_get(store_wal(s), &win->wal0);
        pool_stats_get(store_pool(s), &win->pool0);
        dblwr_stats(store_dblwr(s), &win->dw_pages0, &win->dw_batches0);
        win->cpu_seconds = bench_cpu_seconds();
        t0 = bench_now();
        bench_team_measure(&team, 1);
        bench_team_sleep(&team, seconds);
        bench_team_measure(&team, 0);
        win->ops = bench_team_ops(&team) - ops0;
        win->seconds = bench_now() - t0;
        win->cpu_seconds = bench_cpu_seconds() - win->cpu_seconds;
        wal_stats_get(store_wal(s), &win->wal1);
        pool_stats_get(store_pool(s), &win->pool1);
        dblwr_stats(store_dblwr(s), &win->dw_pages1, &win->dw_batches1);
        win->ops_per_sec = (double)win->ops / win->seconds;
        rc = bench_team_stop(&team);
    }
    free_workers(ws, threads, win);
    if (rc != DKV_OK)
        report("putting into", "the store", rc);
    return rc;
}

/* ---- rows ------------------------------------------------------------------- */

static const char *log_mode_name(int dsync)
{
    return dsync ? "O_DIRECT+O_DSYNC" : "O_DIRECT+fdatasync";
}

static void row_init(struct bench_result *r, const char *benchmark,
                     const char *engine, const char *mode, unsigned threads)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->benchmark, sizeof(r->benchmark), "%s", benchmark);
    snprintf(r->engine, sizeof(r->engine), "%s", engine);
    snprintf(r->mode, sizeof(r->mode), "%s", mode);
    r->threads = threads;
    r->runs = 1;
    r->o_direct = 1;
}

/* The log's figures of a window: syncs, bytes and page images per commit. */
static void log_figures(struct bench_result *r, const struct put_window *w)
{
    double commits = (double)(w->wal1.commits - w->wal0.commits);
    double syncs = (double)(w->wal1.syncs - w->wal0.syncs);
    double bytes = (double)(w->wal1.bytes - w->wal0.bytes);
    double lsn = (double)(w->wal1.lsn - w->wal0.lsn);
    double images = (double)(w->pool1.images_logged - w->pool0.images_logged);
    double image_bytes = (double)(w->pool1.image_bytes - w->pool0.image_bytes);

    snprintf(r->io, sizeof(r->io), "%s", w->pool1.io_engine);
    r->block = WAL_PAGE_SIZE;
    r->ops_per_sec = w->ops_per_sec;
    bench_extra_set(r, "commits_per_sync", syncs > 0 ? commits / syncs : 0);
    bench_extra_set(r, "syncs_per_sec", syncs / w->seconds);
    bench_extra_set(r, "log_bytes_per_commit", commits > 0 ? lsn / commits : 0);
    bench_extra_set(r, "mtr_bytes_per_commit", commits > 0 ? bytes / commits : 0);
    bench_extra_set(r, "images_logged", images);
    bench_extra_set(r, "image_bytes", image_bytes);
    bench_extra_set(r, "log_bytes", bytes);
    bench_extra_set(r, "image_pct_of_log", bytes > 0 ? 100.0 * image_bytes / bytes : 0);
    bench_extra_set(r, "images_per_1000_commits",
                    commits > 0 ? 1000.0 * images / commits : 0);
    bench_extra_set(r, "checkpoints",
                    (double)(w->wal1.checkpoints - w->wal0.checkpoints));
    bench_extra_set(r, "cpus_busy", w->cpu_seconds / w->seconds);
    bench_extra_set(r, "cpu_us_per_op",
                    w->ops > 0 ? 1e6 * w->cpu_seconds / (double)w->ops : 0);
}

/* The latency and stall figures of a window. */
static void stall_figures(struct bench_result *r, const struct put_window *w)
{
    bench_extra_set(r, "p50_us", bench_hist_pct_us(&w->put, 50));
    bench_extra_set(r, "p99_us", bench_hist_pct_us(&w->put, 99));
    bench_extra_set(r, "p999_us", bench_hist_pct_us(&w->put, 99.9));
    bench_extra_set(r, "max_us", (double)w->put.max_ns / 1000.0);
    bench_extra_set(r, "commit_p99_us", bench_hist_pct_us(&w->commit, 99));
    bench_extra_set(r, "commit_max_us", (double)w->commit.max_ns / 1000.0);
    bench_extra_set(r, "stalls", (double)(w->wal1.stalls - w->wal0.stalls));
    bench_extra_set(r, "stall_max_us", (double)w->wal1.stall_max_us);
    bench_extra_set(r, "pages_written",
                    (double)(w->pool1.pages_written - w->pool0.pages_written));
    bench_extra_set(r, "fg_single_flushes",
                    (double)(w->pool1.fg_single_flushes - w->pool0.fg_single_flushes));
    bench_extra_set(r, "fg_free_waits",
                    (double)(w->pool1.fg_free_waits - w->pool0.fg_free_waits));
    bench_extra_set(r, "misses", (double)(w->pool1.misses - w->pool0.misses));
    bench_extra_set(r, "dblwr_pages", (double)(w->dw_pages1 - w->dw_pages0));
    bench_extra_set(r, "dblwr_batches", (double)(w->dw_batches1 - w->dw_batches0));
}

static int add_median(struct wal_bench *wb, const struct bench_result *runs,
                      unsigned n, size_t *index)
{
    struct bench_result row;

    bench_rows_median(runs, n, &row);
    *index = wb->results->count;
    return bench_results_add(wb->results, &row);
}

/* ---- a. group commit (and c. page images) ------------------------------------- */

/* The runs of ours in each round of a: log mode, threads, checkpoint
   policy (0: the default; 100: only when the log is full). */
static const struct gc_config {
    int      dsync;
    unsigned threads, checkpoint_pct;
    const char *benchmark;
    int      torn_pages;
} gc_configs[] = {
    { 0, 1, 0, "wal_commit_sync", STORE_TORN_DOUBLEWRITE },
    { 0, MANY_THREADS, 0, "wal_commit_sync", STORE_TORN_DOUBLEWRITE },
    { 1, 1, 0, "wal_commit_sync", STORE_TORN_DOUBLEWRITE },
    { 1, MANY_THREADS, 0, "wal_commit_sync", STORE_TORN_DOUBLEWRITE },
    { 0, 1, 0, "wal_commit_sync_images", STORE_TORN_PAGE_IMAGES },
    { 0, MANY_THREADS, 0, "wal_commit_sync_images", STORE_TORN_PAGE_IMAGES },
};
#define GC_CONFIGS (sizeof(gc_configs) / sizeof(gc_configs[0]))

/* fio's rate of 4 KiB writes each followed by fdatasync, on a file in the
   scratch directory (direct or buffered).  --overwrite=1 makes fio write
   the file once before the timed run: without it a write job only
   fallocates the file, and then every write converts an unwritten extent
   and every fdatasync commits a journal transaction (measured here: 5.5k
   vs 9k syncs/s), while our log is zero-filled at creation precisely so
   its syncs have no metadata to write.  0, or -1 (reported). */
static int fio_sync(struct wal_bench *wb, int direct, struct bench_result *row)
{
    char cmd[2048], path[1200], runtime[32];
    int n;

    row_init(row, "wal_commit_sync", "fio", direct ? "fio direct=1" : "fio direct=0", 1);
    snprintf(row->io, sizeof(row->io), "psync");
    row->block = 4096;
    row->o_direct = direct;
    if (bench_shell_quote(path, sizeof(path), sub_path(wb, "fio.dat")) < 0)
        return -1;
    bench_fio_runtime(runtime, sizeof(runtime), wb->seconds);
    n = snprintf(cmd, sizeof(cmd),
                 "fio --name=dkv-sync --filename=%s --size=64M --rw=write --bs=4k "
                 "--fdatasync=1 --direct=%d --overwrite=1 --runtime=%s --time_based "
                 "--output-format=json", path, direct, runtime);
    if (n <= 0 || (size_t)n >= sizeof(cmd))
        return -1;
    return bench_fio_run(cmd, "write", &row->ops_per_sec);
}

/* One run of ours: a store opened (and its pool warmed) for this run. */
static int gc_run(struct wal_bench *wb, const struct gc_config *c, int commit_mode,
                  struct store **keep, struct bench_result *row)
{
    struct wal_setup ws = { "gc", GC_POOL_SIZE, 0, commit_mode, c->dsync,
                            c->checkpoint_pct, c->torn_pages };
    struct put_window *win = calloc(1, sizeof(*win));
    struct store *s = keep ? *keep : NULL;
    int rc = win ? DKV_OK : DKV_ERR_NOMEM;

    if (rc == DKV_OK && s == NULL)
        rc = open_store(wb, &ws, &s);
    if (rc == DKV_OK)
        rc = run_puts(wb, s, c->threads, VALUE_LEN, wb->warmup, wb->seconds, win);
    if (keep != NULL)
        *keep = s;
    else if (s != NULL && close_store(s) != DKV_OK && rc == DKV_OK)
        rc = DKV_ERR_IO;
    row_init(row, commit_mode == DKV_COMMIT_SYNC ? c->benchmark : "wal_commit_async",
             "dkv", log_mode_name(c->dsync), c->threads);
    if (rc == DKV_OK) {
        log_figures(row, win);
        stall_figures(row, win);
        fprintf(stderr, "wal: %-23s %-18s %u thread(s): %.0f puts/s, %.2f "
                "commits/sync, %.0f log bytes/commit\n", row->benchmark, row->mode,
                c->threads, row->ops_per_sec,
                bench_extra_get(row, "commits_per_sync"),
                bench_extra_get(row, "log_bytes_per_commit"));
    }
    free(win);
    return rc;
}

/* One round of a: fio direct and buffered, then every run of ours. */
static int gc_round(struct wal_bench *wb, unsigned r, struct bench_result *fio,
                    struct bench_result *ours, int *use_fio)
{
    unsigned c, d;
    int rc = DKV_OK;

    for (d = 0; d < 2 && *use_fio; d++) {
        if (fio_sync(wb, d == 0, &fio[d * wb->repeat + r]) != 0)
            *use_fio = 0;                    /* reported; compare no more */
        else
            fprintf(stderr, "wal: fio direct=%d: %.0f syncs/s\n", d == 0,
                    fio[d * wb->repeat + r].ops_per_sec);
    }
    for (c = 0; c < GC_CONFIGS && rc == DKV_OK; c++)
        rc = gc_run(wb, &gc_configs[c], DKV_COMMIT_SYNC, NULL,
                    &ours[c * wb->repeat + r]);
    return rc;
}

/* Ratios and targets of a, on the median rows: ours[c] is the index of
   configuration c's row, fio_at[d] of fio's (direct=1, direct=0). */
static void gc_verdicts(struct wal_bench *wb, const size_t *ours,
                        const size_t *fio_at, int use_fio)
{
    static const char *const sync_names[2] = {
        "a. sync puts/s 1 thread / fio, O_DIRECT+fdatasync",
        "a. sync puts/s 1 thread / fio, O_DIRECT+O_DSYNC" };
    static const char *const scale_names[2] = {
        "a. sync puts/s 8 threads / 1 thread, fdatasync",
        "a. sync puts/s 8 threads / 1 thread, O_DSYNC" };
    struct bench_result *rows = wb->results->rows;
    unsigned m;

    for (m = 0; m < 2; m++) {
        struct bench_result *one = &rows[ours[2 * m]], *many = &rows[ours[2 * m + 1]];
        many->ratio = many->ops_per_sec / one->ops_per_sec;
        many->ratio_of = "1 thread";
        bench_set_target(many, scale_names[m], many->ratio, SCALE_TARGET, 0);
        if (!use_fio)
            continue;
        one->ratio = one->ops_per_sec / rows[fio_at[0]].ops_per_sec;
        one->ratio_of = "fio direct=1";
        one->vs_fio = one->ratio;
        bench_extra_set(one, "vs_fio_buffered",
                        one->ops_per_sec / rows[fio_at[1]].ops_per_sec);
        bench_set_target(one, sync_names[m], one->ratio, SYNC_TARGET, 0);
    }
}

/* DKV_COMMIT_ASYNC on 1 and 8 threads, one store open for all runs. */
static int gc_async(struct wal_bench *wb)
{
    struct bench_result *runs = calloc(2 * wb->repeat, sizeof(*runs));
    struct wal_setup ws = { "gc", GC_POOL_SIZE, 0, DKV_COMMIT_ASYNC, 0, 0,
                            STORE_TORN_DOUBLEWRITE };
    struct store *s = NULL;
    unsigned r, t;
    size_t at;
    int rc = runs ? open_store(wb, &ws, &s) : DKV_ERR_NOMEM;

    for (r = 0; r < wb->repeat && rc == DKV_OK; r++)
        for (t = 0; t < 2 && rc == DKV_OK; t++)
            rc = gc_run(wb, &gc_configs[t], DKV_COMMIT_ASYNC, &s,
                        &runs[t * wb->repeat + r]);
    if (s != NULL && close_store(s) != DKV_OK && rc == DKV_OK)
        rc = DKV_ERR_IO;
    for (t = 0; t < 2 && rc == DKV_OK; t++)
        rc = add_median(wb, runs + t * wb->repeat, wb->repeat, &at);
    if (rc == DKV_OK) {
        struct bench_result *many = &wb->results->rows[at];
        many->ratio = many->ops_per_sec / wb->results->rows[at - 1].ops_per_sec;
        many->ratio_of = "1 thread";
    }
    free(runs);
    return rc;
}

static int run_group_commit(struct wal_bench *wb)
{
    struct bench_result *fio = calloc(2 * wb->repeat, sizeof(*fio));
    struct bench_result *ours = calloc(GC_CONFIGS * wb->repeat, sizeof(*ours));
    size_t ours_at[GC_CONFIGS], fio_at[2];
    int use_fio = wb->use_fio;
    unsigned r, c;
    int rc = fio && ours ? DKV_OK : DKV_ERR_NOMEM;

    printf("wal: a. group commit: 100-byte puts on %u pages, DKV_COMMIT_SYNC, "
           "interleaved with fio (4 KiB write + fdatasync)\n", WAL_PAGES);
    for (r = 0; r < wb->repeat && rc == DKV_OK; r++)
        rc = gc_round(wb, r, fio, ours, &use_fio);
    for (c = 0; c < 2 && rc == DKV_OK && use_fio; c++)
        rc = add_median(wb, fio + c * wb->repeat, wb->repeat, &fio_at[c]);
    for (c = 0; c < GC_CONFIGS && rc == DKV_OK; c++)
        rc = add_median(wb, ours + c * wb->repeat, wb->repeat, &ours_at[c]);
    if (rc == DKV_OK)
        gc_verdicts(wb, ours_at, fio_at, use_fio);
    if (rc == DKV_OK)
        rc = gc_async(wb);
    free(ours);
    free(fio);
    return rc;
}

/* ---- b. worst put stall ---------------------------------------------------------- */

static int stall_run(struct wal_bench *wb, int commit_mode, unsigned threads,
                     int torn_pages)
{
    struct wal_setup ws = { "stall", STALL_POOL_SIZE, STALL_LOG_SIZE, commit_mode,
                            0, 0, torn_pages };
    struct put_window *win = calloc(1, sizeof(*win));
    struct bench_result row;
    struct store *s = NULL;
    int rc = win ? open_store(wb, &ws, &s) : DKV_ERR_NOMEM;

    if (rc == DKV_OK)
        rc = run_puts(wb, s, threads, VALUE_LEN, wb->warmup, wb->stall_seconds, win);
    if (s != NULL && close_store(s) != DKV_OK && rc == DKV_OK)
        rc = DKV_ERR_IO;
    row_init(&row, "wal_stall", "dkv",
             torn_pages == STORE_TORN_PAGE_IMAGES
                 ? (commit_mode == DKV_COMMIT_SYNC ? "sync images" : "async images")
                 : (commit_mode == DKV_COMMIT_SYNC ? "commit sync" : "commit async"),
             threads);
    if (rc == DKV_OK) {
        log_figures(&row, win);
        stall_figures(&row, win);
        bench_extra_set(&row, "hit_ratio", 1.0 - (double)(win->pool1.misses -
                        win->pool0.misses) / (double)(win->ops ? win->ops : 1));
        rc = bench_results_add(wb->results, &row);
        fprintf(stderr, "wal: stall %s %u threads: %.0f puts/s, p99 %.0f us, "
                "max %.0f us\n", row.mode, threads, row.ops_per_sec,
                bench_extra_get(&row, "p99_us"), bench_extra_get(&row, "max_us"));
    }
    free(win);
    return rc;
}

static int run_stall(struct wal_bench *wb)
{
    int rc;

    printf("wal: b. put stalls: %.0f s each, a 64 MiB log, a 32 MiB pool over "
           "%u pages of 16 KiB\n", wb->stall_seconds, WAL_PAGES);
    rc = stall_run(wb, DKV_COMMIT_ASYNC, STALL_ASYNC_THREADS, STORE_TORN_DOUBLEWRITE);
    if (rc == DKV_OK)
        rc = stall_run(wb, DKV_COMMIT_ASYNC, STALL_ASYNC_THREADS,
                       STORE_TORN_PAGE_IMAGES);
    if (rc == DKV_OK)
        rc = stall_run(wb, DKV_COMMIT_SYNC, MANY_THREADS, STORE_TORN_DOUBLEWRITE);
    return rc;
}

/* ---- d. recovery ----------------------------------------------------------------- */

/* Log bytes past the checkpoint.  wal_stats.lsn is the end of the last MTR
   and the checkpoint LSN the append position when it was chosen, which may
   lie past it (a block header), so the difference can be "negative". */
static uint64_t past_checkpoint(const struct wal_stats *st)
{
    return st->lsn > st->checkpoint_lsn ? st->lsn - st->checkpoint_lsn : 0;
}

/* Puts big values on RECOVERY_THREADS threads until want bytes of log lie
   past the checkpoint.  *seconds: how long it took. */
static int fill_log(struct wal_bench *wb, struct store *s, uint64_t want,
                    double *seconds)
{
    struct put_worker proto = { .s = s, .values = wb->values,
                                .value_min = BIG_VALUE_MIN,
                                .value_max = BIG_VALUE_MAX };
    struct put_worker *ws = make_workers(&proto, RECOVERY_THREADS, 0);
    struct bench_team team;
    struct wal_stats st;
    double t0 = bench_now();
    int rc = ws ? bench_team_start(&team, RECOVERY_THREADS, put_main, ws,
                                   sizeof(*ws)) : DKV_ERR_NOMEM;

    while (rc == DKV_OK) {
        wal_stats_get(store_wal(s), &st);
        if (past_checkpoint(&st) >= want)
            break;
        if (bench_now() - t0 > RECOVERY_FILL_MAX_S) {
            fprintf(stderr, "dkv-bench: the log did not fill in %.0f s\n",
                    RECOVERY_FILL_MAX_S);
            rc = DKV_ERR_BUSY;
        } else if (bench_team_sleep(&team, 0.02)) {
            break;                           /* a worker failed: said below */
        }
    }
    *seconds = bench_now() - t0;
    if (ws != NULL && (rc == DKV_OK || rc == DKV_ERR_BUSY)) {
        int stop_rc = bench_team_stop(&team);
        rc = rc == DKV_OK ? stop_rc : rc;
    }
    free_workers(ws, RECOVERY_THREADS, NULL);
    return rc;
}

/* The row of d from what recovery reported and the wall time of the open. */
static int recovery_row(struct wal_bench *wb, const struct wal_recovery *rec,
                        double wall, double fill_s, const struct wal_stats *before,
                        const struct pool_stats *ps)
{
    double replayed = (double)(rec->end_lsn - rec->checkpoint_lsn);
    struct bench_result row;

    row_init(&row, "wal_recovery", "dkv", "O_DIRECT+fdatasync", 1);
    snprintf(row.io, sizeof(row.io), "%s", ps->io_engine);
    row.block = WAL_PAGE_SIZE;
    row.ops_per_sec = (double)rec->mtrs / wall;           /* MTRs replayed/s */
    bench_extra_set(&row, "log_bytes_at_crash", (double)past_checkpoint(before));
    bench_extra_set(&row, "log_bytes_replayed", replayed);
    bench_extra_set(&row, "scanned_bytes", (double)rec->scanned_bytes);
    bench_extra_set(&row, "mtrs", (double)rec->mtrs);
    bench_extra_set(&row, "records", (double)rec->records);
    bench_extra_set(&row, "discarded_mtrs", (double)rec->discarded_mtrs);
    bench_extra_set(&row, "elapsed_us", (double)rec->elapsed_us);
    bench_extra_set(&row, "wall_s", wall);
    bench_extra_set(&row, "mb_per_sec", replayed / 1e6 / wall);
    bench_extra_set(&row, "pages_read", (double)ps->pages_read);
    bench_extra_set(&row, "fill_s", fill_s);
    bench_set_target(&row, "d. recovery wall time, s (seconds, not minutes)",
                     wall, RECOVERY_TARGET_S, 1);
    return bench_results_add(wb->results, &row);
}

static int run_recovery(struct wal_bench *wb)
{
    uint64_t cap = wb->recovery_bytes / 4 * 5;           /* fill stays < 85 % */
    struct wal_setup ws = { "recovery", RECOVERY_POOL_SIZE,
                            cap > RECOVERY_LOG_SIZE ? cap : RECOVERY_LOG_SIZE,
                            DKV_COMMIT_ASYNC, 0, 100, STORE_TORN_DOUBLEWRITE };
    struct store_config cfg;
    struct wal_recovery rec;
    struct wal_stats before;
    struct pool_stats ps;
    struct store *s = NULL;
    double fill_s = 0, t0;
    int rc;

    ws.log_capacity = (ws.log_capacity + 4095) / 4096 * 4096;
    printf("wal: d. recovery: filling a %llu MiB log until %.2f GiB lie past "
           "the checkpoint ...\n", (unsigned long long)(ws.log_capacity >> 20),
           (double)wb->recovery_bytes / (1u << 30));
    rc = open_store(wb, &ws, &s);
    if (rc == DKV_OK)
        rc = fill_log(wb, s, wb->recovery_bytes, &fill_s);
    if (rc == DKV_OK)
        rc = wal_sync(store_wal(s));
    if (rc == DKV_OK)
        wal_stats_get(store_wal(s), &before);
    store_abandon(s);                        /* a crash: no flush, no checkpoint */
    s = NULL;
    store_cfg(&cfg, &ws);
    t0 = bench_now();
    if (rc == DKV_OK)
        rc = store_open(sub_path(wb, ws.name), &cfg, &s, &rec);
    t0 = bench_now() - t0;
    if (rc != DKV_OK) {
        report("recovering", sub_path(wb, ws.name), rc);
        return rc;
    }
    pool_stats_get(store_pool(s), &ps);
    store_abandon(s);                        /* the directory goes anyway */
    fprintf(stderr, "wal: recovered %.0f MiB of log in %.2f s (%llu MTRs)\n",
            (double)(rec.end_lsn - rec.checkpoint_lsn) / (1 << 20), t0,
            (unsigned long long)rec.mtrs);
    return recovery_row(wb, &rec, t0, fill_s, &before, &ps);
}

/* ---- the mode ------------------------------------------------------------------- */

static int setup(struct wal_bench *wb, const struct bench_opts *opts,
                 struct bench_results *results)
{
    uint64_t seed = 0x243f6a8885a308d3ull;
    unsigned i;

    memset(wb, 0, sizeof(*wb));
    wb->opts = opts;
    wb->results = results;
    wb->seconds = opts->seconds_set ? opts->seconds : SECONDS_DEFAULT;
    wb->repeat = opts->repeat_set ? opts->repeat : REPEAT_DEFAULT;
    wb->warmup = opts->warmup_seconds;
    wb->stall_seconds = opts->stall_seconds;
    wb->recovery_bytes = (uint64_t)(opts->recovery_gib * (double)(1u << 30));
    for (i = 0; i < VALUES_LEN; i++)
        wb->values[i] = (unsigned char)bench_rand(&seed);
    for (i = 0; i < WAL_PAGES; i++)
        wb->pages[i] = 1 + i;
    wb->use_fio = opts->fio != BENCH_FIO_OFF && bench_fio_on_path();
    if (!wb->use_fio && opts->fio == BENCH_FIO_ON) {
        fprintf(stderr, "dkv-bench: --fio: no fio on PATH\n");
        return DKV_ERR_UNSUPPORTED;
    }
    if (!wb->use_fio)
        printf("wal: note: no fio; a has no comparison with the device's sync rate\n");
    snprintf(wb->dir, sizeof(wb->dir), "%s/dkv-bench-wal.XXXXXX", opts->dir);
    if (mkdtemp(wb->dir) == NULL) {
        fprintf(stderr, "dkv-bench: mkdtemp %s: %s\n", wb->dir, strerror(errno));
        return DKV_ERR_IO;
    }
    return DKV_OK;
}

int bench_wal_run(const struct bench_opts *opts, struct bench_results *results)
{
    struct wal_bench *wb = malloc(sizeof(*wb));
    int rc = wb ? setup(wb, opts, results) : DKV_ERR_NOMEM;

    if (rc != DKV_OK) {
        free(wb);
        return rc;
    }
    printf("wal: %.1f s per run after %.1f s of warm-up, %u runs each; in %s\n",
           wb->seconds, wb->warmup, wb->repeat, wb->dir);
    if (strpbrk(opts->parts, "ac") != NULL)
        rc = run_group_commit(wb);
    if (rc == DKV_OK && strchr(opts->parts, 'b') != NULL)
        rc = run_stall(wb);
    if (rc == DKV_OK && strchr(opts->parts, 'd') != NULL)
        rc = run_recovery(wb);
    remove_tree(wb->dir);
    free(wb);
    return rc;
}

/* ---- the tables ----------------------------------------------------------------- */

static const struct bench_result *find_row(const struct bench_results *results,
                                           const char *benchmark, const char *mode,
                                           unsigned threads)
{
    size_t i;

    for (i = 0; i < results->count; i++) {
        const struct bench_result *r = &results->rows[i];
        if (strcmp(r->benchmark, benchmark) == 0 && strcmp(r->mode, mode) == 0 &&
            r->threads == threads)
            return r;
    }
    return NULL;
}

static void print_commit_rows(FILE *out, const struct bench_results *results,
                              const char *benchmark)
{
    size_t i;

    fprintf(out, "%-6s %-18s %3s %9s %9s %9s %7s %8s %8s %7s %7s %5s %6s %s\n",
            "engine", "log writes", "thr", "puts/s", "min", "max", "com/syn",
            "logB/com", "mtrB/com", "p50 us", "p99 us", "CPUs", "cpu us", "ratio");
    for (i = 0; i < results->count; i++) {
        const struct bench_result *r = &results->rows[i];
        char ratio[40] = "";
        if (strcmp(r->benchmark, benchmark) != 0)
            continue;
        if (r->ratio_of != NULL)
            snprintf(ratio, sizeof(ratio), "%.2fx %s", r->ratio, r->ratio_of);
        fprintf(out, "%-6s %-18s %3u %9.0f %9.0f %9.0f %7.2f %8.0f %8.0f %7.0f "
                "%7.0f %5.2f %6.1f %s\n", r->engine, r->mode, r->threads,
                r->ops_per_sec, r->ops_min, r->ops_max,
                bench_extra_get(r, "commits_per_sync"),
                bench_extra_get(r, "log_bytes_per_commit"),
                bench_extra_get(r, "mtr_bytes_per_commit"),
                bench_extra_get(r, "p50_us"), bench_extra_get(r, "p99_us"),
                bench_extra_get(r, "cpus_busy"), bench_extra_get(r, "cpu_us_per_op"),
                ratio);
    }
}

/* Which log write mode is faster, on 1 and on 8 threads. */
static void print_faster(FILE *out, const struct bench_results *results)
{
    unsigned t;

    for (t = 1; t <= MANY_THREADS; t += MANY_THREADS - 1) {
        const struct bench_result *a = find_row(results, "wal_commit_sync",
                                                log_mode_name(0), t);
        const struct bench_result *b = find_row(results, "wal_commit_sync",
                                                log_mode_name(1), t);
        if (a == NULL || b == NULL)
            continue;
        fprintf(out, "  %u thread(s): %s is faster here (%.0f vs %.0f puts/s, "
                "%+.1f %%)\n", t, a->ops_per_sec >= b->ops_per_sec ? a->mode : b->mode,
                a->ops_per_sec >= b->ops_per_sec ? a->ops_per_sec : b->ops_per_sec,
                a->ops_per_sec >= b->ops_per_sec ? b->ops_per_sec : a->ops_per_sec,
                100.0 * (a->ops_per_sec >= b->ops_per_sec
                         ? a->ops_per_sec / b->ops_per_sec
                         : b->ops_per_sec / a->ops_per_sec) - 100.0);
    }
}

static void print_stall_rows(FILE *out, const struct bench_results *results)
{
    size_t i;

    fprintf(out, "%-12s %3s %8s %7s %7s %8s %9s %9s %9s %6s %9s %5s %8s %6s %6s %8s %7s\n",
            "commit", "thr", "puts/s", "p50 us", "p99 us", "p99.9 us", "max us",
            "cmt p99", "cmt max", "stalls", "stall max", "ckpts", "written",
            "fg fl", "fg wt", "dw pages", "log MB");
    for (i = 0; i < results->count; i++) {
        const struct bench_result *r = &results->rows[i];
        if (strcmp(r->benchmark, "wal_stall") != 0)
            continue;
        fprintf(out, "%-12s %3u %8.0f %7.0f %7.0f %8.0f %9.0f %9.0f %9.0f %6.0f "
                "%9.0f %5.0f %8.0f %6.0f %6.0f %8.0f %7.1f\n", r->mode, r->threads,
                r->ops_per_sec, bench_extra_get(r, "p50_us"),
                bench_extra_get(r, "p99_us"), bench_extra_get(r, "p999_us"),
                bench_extra_get(r, "max_us"), bench_extra_get(r, "commit_p99_us"),
                bench_extra_get(r, "commit_max_us"), bench_extra_get(r, "stalls"),
                bench_extra_get(r, "stall_max_us"), bench_extra_get(r, "checkpoints"),
                bench_extra_get(r, "pages_written"),
                bench_extra_get(r, "fg_single_flushes"),
                bench_extra_get(r, "fg_free_waits"),
                bench_extra_get(r, "dblwr_pages"),
                bench_extra_get(r, "log_bytes") / 1e6);
    }
}

static void print_image_rows(FILE *out, const struct bench_results *results)
{
    size_t i;

    fprintf(out, "%-24s %-18s %3s %9s %8s %9s %9s %8s %10s %6s\n", "run", "log writes",
            "thr", "puts/s", "images", "image MB", "log MB", "image %",
            "img/1000c", "ckpts");
    for (i = 0; i < results->count; i++) {
        const struct bench_result *r = &results->rows[i];
        if (strncmp(r->benchmark, "wal_commit", 10) != 0 || strcmp(r->engine, "dkv"))
            continue;
        fprintf(out, "%-24s %-18s %3u %9.0f %8.0f %9.1f %9.1f %8.1f %10.1f %6.0f\n",
                r->benchmark, r->mode, r->threads, r->ops_per_sec,
                bench_extra_get(r, "images_logged"),
                bench_extra_get(r, "image_bytes") / 1e6,
                bench_extra_get(r, "log_bytes") / 1e6,
                bench_extra_get(r, "image_pct_of_log"),
                bench_extra_get(r, "images_per_1000_commits"),
                bench_extra_get(r, "checkpoints"));
    }
}

static void print_recovery(FILE *out, const struct bench_results *results)
{
    size_t i;

    for (i = 0; i < results->count; i++) {
        const struct bench_result *r = &results->rows[i];
        if (strcmp(r->benchmark, "wal_recovery") != 0)
            continue;
        fprintf(out, "  log past the checkpoint at the crash %.1f MiB (filled in "
                "%.1f s); replayed %.1f MiB\n",
                bench_extra_get(r, "log_bytes_at_crash") / (1 << 20),
                bench_extra_get(r, "fill_s"),
                bench_extra_get(r, "log_bytes_replayed") / (1 << 20));
        fprintf(out, "  wal_recovery: scanned_bytes %.0f, mtrs %.0f, records %.0f, "
                "discarded_mtrs %.0f, elapsed_us %.0f\n",
                bench_extra_get(r, "scanned_bytes"), bench_extra_get(r, "mtrs"),
                bench_extra_get(r, "records"), bench_extra_get(r, "discarded_mtrs"),
                bench_extra_get(r, "elapsed_us"));
        fprintf(out, "  store_open wall time %.2f s; %.0f MB/s of log replayed; "
                "%.0f MTRs/s; %.0f pages read\n", bench_extra_get(r, "wall_s"),
                bench_extra_get(r, "mb_per_sec"), r->ops_per_sec,
                bench_extra_get(r, "pages_read"));
    }
}

void bench_wal_print(FILE *out, const struct bench_results *results)
{
    fprintf(out, "\na. group commit, DKV_COMMIT_SYNC (fio: 4 KiB write + "
            "fdatasync; ratio: ours/fio direct=1, or 8 threads/1 thread)\n");
    print_commit_rows(out, results, "wal_commit_sync");
    print_faster(out, results);
    fprintf(out, "\n   same, torn pages repaired from full page images in the log "
            "instead of the doublewrite file (for c)\n");
    print_commit_rows(out, results, "wal_commit_sync_images");
    fprintf(out, "\n   DKV_COMMIT_ASYNC, for scale\n");
    print_commit_rows(out, results, "wal_commit_async");
    fprintf(out, "\nb. put latency and stalls (us; fg fl: fg_single_flushes, "
            "fg wt: fg_free_waits)\n");
    print_stall_rows(out, results);
    fprintf(out, "\nc. full page images in the log (per run, median; every run "
            "starts after a clean reopen,\n   so each page's first change in a "
            "run is imaged); the doublewrite runs log none\n");
    print_image_rows(out, results);
    fprintf(out, "\nd. recovery (store_open after store_abandon)\n");
    print_recovery(out, results);
    fprintf(out, "(puts/s: median of the runs; min and max beside it)\n");
}
