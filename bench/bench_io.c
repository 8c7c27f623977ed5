/*
 * bench_io.c - the io mode of dkv-bench: random reads through the I/O layer
 * (pager/io.h) with exactly `depth` requests in flight, for every
 * combination of backend, direct/buffered, block size and depth, each run
 * back to back with fio doing the same job on the same file, so that the
 * ratio ours/fio is measured under the same conditions (the machine is
 * shared and noisy; a ratio of two runs minutes apart would mean little).
 *
 * Entry point:
 *   bench_io_run    prepares the file, runs every configuration, adds rows
 *
 * One run of ours (measure_dkv): open the file, create a context of that
 * depth with that explicit backend, carve `depth` buffers out of ONE
 * io_buf_alloc region and register it and the file (io_ctx_register, so
 * io_uring uses fixed buffers and files), submit `depth` reads, then loop:
 * reap at least one, check it, and resubmit every finished read at a new
 * random block-aligned offset in one batch.  The first warm-up seconds are
 * not counted.
 */
#include "bench.h"

#include "dkv.h"
#include "pager/io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BENCH_IO_NAME   "io_randread"
#define PREP_CHUNK      (1u << 20)      /* bytes per write when preparing  */
#define PREP_DEPTH      8u              /* writes in flight when preparing */
#define FIO_CMD_MAX     2048

/* One configuration of the io mode. */
struct io_config {
    int      engine;                    /* enum dkv_io_engine              */
    int      direct;                    /* 1: IO_OPEN_DIRECT               */
    unsigned depth;
    uint32_t block;                     /* bytes                           */
};

/* The state of one run of ours. */
struct io_run {
    struct io_file  *file;
    struct io_ctx   *ctx;
    char            *region;            /* depth buffers of block bytes    */
    size_t           region_size;
    struct io_req   *reqs;              /* depth requests, one per buffer  */
    struct io_req  **batch;             /* depth: what one reap returned   */
    unsigned         depth;
    uint32_t         block;
    uint64_t         block_count;       /* blocks in the file              */
    uint64_t         rng;               /* splitmix64 state                */
};

static void report(const char *what, const char *path, int rc)
{
    fprintf(stderr, "dkv-bench: %s %s: %s\n", what, path, dkv_strerror(rc));
}

/* ---- preparing the file ------------------------------------------------- */

/* Writes [0, size) of file sequentially in 1 MiB writes, PREP_DEPTH at a
   time, through the I/O layer.  Returns 0 or a DKV_ERR_*. */
static int write_file(struct io_file *file, uint64_t size)
{
    struct io_ctx_config cfg = { .engine = DKV_IO_AUTO, .depth = PREP_DEPTH };
    size_t region_size = (size_t)PREP_DEPTH * PREP_CHUNK;
    struct io_req reqs[PREP_DEPTH], *ptrs[PREP_DEPTH];
    struct io_ctx *ctx = NULL;
    uint64_t off = 0, seed = 1;
    char *region;
    unsigned n;
    size_t j;
    int rc;

    region = io_buf_alloc(region_size, 1u << 21);
    if (region == NULL)
        return DKV_ERR_NOMEM;
    for (j = 0; j < region_size; j += sizeof(uint64_t)) {
        uint64_t v = bench_rand(&seed);
        memcpy(region + j, &v, sizeof(v));
    }
    rc = io_ctx_create(&cfg, &ctx);
    while (rc == DKV_OK && off < size) {
        memset(reqs, 0, sizeof(reqs));
        for (n = 0; n < PREP_DEPTH && off < size; n++) {
            uint64_t left = size - off;
            reqs[n].op = IO_WRITE;
            reqs[n].file = file;
            reqs[n].buf = region + (size_t)n * PREP_CHUNK;
            reqs[n].len = left < PREP_CHUNK ? (size_t)left : PREP_CHUNK;
            reqs[n].off = off;
            ptrs[n] = &reqs[n];
            off += reqs[n].len;
        }
        rc = io_run(ctx, ptrs, n);
    }
    if (ctx != NULL)
        io_ctx_destroy(ctx);
    io_buf_free(region, region_size);
    return rc;
}

/*
 * Makes opts->file_path a file of exactly opts->file_size bytes of data on
 * disk: reused when its size already matches, else written fully once with
 * large sequential writes, cut to size, and fdatasync'ed.  Returns 0 or a
 * DKV_ERR_* (reported).
 */
static int prepare_file(const struct bench_opts *opts)
{
    const char *path = opts->file_path;
    struct io_file *file = NULL;
    double t0 = bench_now();
    int64_t size;
    int rc;

    rc = io_file_open(path, IO_OPEN_CREATE | IO_OPEN_DIRECT, &file);
    if (rc != DKV_OK) {
        report("opening", path, rc);
        return rc;
    }
    size = io_file_size(file);
    if (size == (int64_t)opts->file_size) {
        printf("io: reusing %s (%llu bytes)\n", path,
               (unsigned long long)opts->file_size);
        goto out;
    }
    printf("io: writing %s (%llu MiB) ...\n", path,
           (unsigned long long)(opts->file_size >> 20));
    fflush(stdout);
    rc = size < 0 ? (int)size : write_file(file, opts->file_size);
    if (rc == DKV_OK &&
        ftruncate(io_file_fd(file), (off_t)opts->file_size) != 0) {
        fprintf(stderr, "dkv-bench: truncating %s: %s\n", path, strerror(errno));
        rc = DKV_ERR_IO;
    }
    if (rc == DKV_OK)
        rc = io_file_sync(file);
    if (rc != DKV_OK)
        report("writing", path, rc);
    else
        printf("io: wrote and synced in %.1f s\n", bench_now() - t0);
out:
    io_file_close(file);
    return rc;
}

/* ---- one run of ours ------------------------------------------------------ */

static void run_teardown(struct io_run *run)
{
    if (run->ctx != NULL)
        io_ctx_destroy(run->ctx);          /* waits for reads in flight */
    io_buf_free(run->region, run->region_size);
    free(run->batch);
    free(run->reqs);
    if (run->file != NULL)
        io_file_close(run->file);
    memset(run, 0, sizeof(*run));
}

/* Opens the file and the context for cfg and sets up the buffers and
   requests.  Returns 0, DKV_ERR_UNSUPPORTED when the backend cannot be had
   here (not reported), or another DKV_ERR_* (reported). */
static int run_setup(struct io_run *run, const struct bench_opts *opts,
                     const struct io_config *cfg)
{
    struct io_ctx_config ctx_cfg = { .engine = cfg->engine, .depth = cfg->depth,
                                     .submit_chunk = opts->submit_chunk };
    size_t align;
    unsigned i;
    int rc;

    memset(run, 0, sizeof(*run));
    run->depth = cfg->depth;
    run->block = cfg->block;
    run->block_count = opts->file_size / cfg->block;
    rc = io_file_open(opts->file_path, cfg->direct ? IO_OPEN_DIRECT : 0,
                      &run->file);
    if (rc != DKV_OK) {
        report("opening", opts->file_path, rc);
        return rc;
    }
    if (cfg->block % io_file_off_align(run->file) != 0) {
        fprintf(stderr, "dkv-bench: block %u is not a multiple of %s's "
                "alignment (%u bytes)\n", cfg->block, opts->file_path,
                io_file_off_align(run->file));
        return DKV_ERR_INVALID;
    }
    rc = io_ctx_create(&ctx_cfg, &run->ctx);
    if (rc != DKV_OK) {
        if (rc != DKV_ERR_UNSUPPORTED)
            report("creating an I/O context for", opts->file_path, rc);
        return rc;
    }
    align = io_file_mem_align(run->file) > 4096 ? io_file_mem_align(run->file)
                                                : 4096;
    run->region_size = (size_t)cfg->depth * cfg->block;
    run->region = io_buf_alloc(run->region_size, align);
    run->reqs = calloc(cfg->depth, sizeof(*run->reqs));
    run->batch = calloc(cfg->depth, sizeof(*run->batch));
    if (run->region == NULL || run->reqs == NULL || run->batch == NULL) {
        report("allocating buffers for", opts->file_path, DKV_ERR_NOMEM);
        return DKV_ERR_NOMEM;
    }
    for (i = 0; i < cfg->depth; i++) {
        run->reqs[i].op = IO_READ;
        run->reqs[i].file = run->file;
        run->reqs[i].buf = run->region + (size_t)i * cfg->block;
        run->reqs[i].len = cfg->block;
        run->batch[i] = &run->reqs[i];
    }
    io_ctx_register(run->ctx, &run->file, 1, run->region, run->region_size);
    return DKV_OK;
}

/* Checks that req read its whole block.  Returns 0, or DKV_ERR_IO after
   printing what came back. */
static int check_read(const struct io_run *run, const struct io_req *req)
{
    if (req->res == (int64_t)run->block)
        return DKV_OK;
    if (req->res < 0)
        fprintf(stderr, "dkv-bench: read of %u bytes at offset %llu failed: "
                "%s (%s)\n", run->block, (unsigned long long)req->off,
                dkv_strerror((int)req->res), strerror(req->err));
    else
        fprintf(stderr, "dkv-bench: read of %u bytes at offset %llu returned "
                "%lld bytes\n", run->block, (unsigned long long)req->off,
                (long long)req->res);
    return DKV_ERR_IO;
}

static uint64_t next_offset(struct io_run *run)
{
    return bench_rand_below(&run->rng, run->block_count) * run->block;
}

/* Resubmits the n reads of run->batch, already given new offsets: in one
   io_ctx_submit call, or in calls of at most `chunk` (chunk > 0).  Returns 0
   or a DKV_ERR_* (reported). */
static int resubmit(struct io_run *run, unsigned n, unsigned chunk)
{
    unsigned i, k;
    int rc = DKV_OK;

    if (chunk == 0)
        chunk = n;
    for (i = 0; i < n && rc == DKV_OK; i += k) {
        k = n - i < chunk ? n - i : chunk;
        rc = io_ctx_submit(run->ctx, run->batch + i, k);
    }
    if (rc != DKV_OK)
        report("submitting reads of", "the file", rc);
    return rc;
}

/*
 * Keeps exactly depth reads in flight until the clock passes `until`:
 * reaps at least one, checks each, and resubmits them all at new offsets
 * (in one batch, or in calls of at most chunk when chunk > 0).  Adds the
 * completions to *ops and stores the time of the last clock reading in
 * *end.  Returns 0 or a DKV_ERR_* (reported).
 */
static int pump(struct io_run *run, unsigned chunk, double until,
                uint64_t *ops, double *end)
{
    double now = bench_now();
    unsigned i;
    int n, rc;

    while (now < until) {
        n = io_ctx_reap(run->ctx, run->batch, 1, run->depth);
        if (n < 0) {
            report("reaping reads of", "the file", n);
            return n;
        }
        for (i = 0; i < (unsigned)n; i++) {
            rc = check_read(run, run->batch[i]);
            if (rc != DKV_OK)
                return rc;
            run->batch[i]->off = next_offset(run);
        }
        rc = resubmit(run, (unsigned)n, chunk);
        if (rc != DKV_OK)
            return rc;
        *ops += (unsigned)n;
        now = bench_now();
    }
    *end = now;
    return DKV_OK;
}

/* Reaps the reads still in flight, checking each.  0 or a DKV_ERR_*. */
static int drain(struct io_run *run)
{
    unsigned bound = run->depth;
    int n, i, rc = DKV_OK;

    while (io_ctx_inflight(run->ctx) > 0 && bound-- > 0) {
        n = io_ctx_reap(run->ctx, run->batch, 1, run->depth);
        if (n < 0)
            return n;
        for (i = 0; i < n && rc == DKV_OK; i++)
            rc = check_read(run, run->batch[i]);
    }
    return rc;
}

/* Drops the file from the page cache, so that a buffered run starts cold. */
static void drop_cache(const struct io_run *run)
{
    int err = posix_fadvise(io_file_fd(run->file), 0, 0, POSIX_FADV_DONTNEED);

    if (err != 0)
        fprintf(stderr, "dkv-bench: note: posix_fadvise(DONTNEED): %s\n",
                strerror(err));
}

/*
 * One run of ours for cfg; run_index seeds the PRNG.  Stores the ops per
 * second and whether O_DIRECT was really in use.  Returns 0,
 * DKV_ERR_UNSUPPORTED (backend not available, not reported) or another
 * DKV_ERR_* (reported).
 */
static int measure_dkv(const struct bench_opts *opts, const struct io_config *cfg,
                       unsigned run_index, double *ops_per_sec, int *o_direct)
{
    struct io_run run;
    uint64_t warm_ops = 0, ops = 0;
    double t0, end = 0.0;
    unsigned i;
    int rc;

    rc = run_setup(&run, opts, cfg);
    if (rc != DKV_OK)
        goto out;
    *o_direct = io_file_direct(run.file);
    if (!cfg->direct)
        drop_cache(&run);
    run.rng = 0x243f6a8885a308d3ull + run_index;
    for (i = 0; i < cfg->depth; i++)
        run.reqs[i].off = next_offset(&run);
    rc = io_ctx_submit(run.ctx, run.batch, cfg->depth);
    if (rc != DKV_OK) {
        report("submitting reads of", opts->file_path, rc);
        goto out;
    }
    /* One io_ctx_submit per reap; the I/O layer splits it into calls of
       submit_chunk requests. */
    rc = pump(&run, 0, bench_now() + opts->warmup_seconds, &warm_ops, &end);
    t0 = bench_now();
    if (rc == DKV_OK)
        rc = pump(&run, 0, t0 + opts->seconds, &ops, &end);
    if (rc == DKV_OK)
        rc = drain(&run);
    if (rc == DKV_OK)
        *ops_per_sec = (double)ops / (end - t0);
out:
    run_teardown(&run);
    return rc;
}

/* ---- fio ------------------------------------------------------------------- */

/* Builds the fio command line for cfg in cmd.  Returns 0 or -1. */
static int fio_command(char *cmd, size_t room, const struct bench_opts *opts,
                       const struct io_config *cfg)
{
    char path[1024], runtime[32];
    int n;

    if (bench_shell_quote(path, sizeof(path), opts->file_path) < 0)
        return -1;
    bench_fio_runtime(runtime, sizeof(runtime), opts->seconds);
    n = snprintf(cmd, room,
                 "fio --name=dkv --filename=%s --direct=1 --ioengine=%s "
                 "--iodepth=%u --bs=%u --rw=randread --runtime=%s --time_based "
                 "--ramp_time=1 --size=%llu --output-format=json --norandommap "
                 "--randrepeat=0",
                 path, dkv_io_engine_name(cfg->engine), cfg->depth, cfg->block,
                 runtime, (unsigned long long)opts->file_size);
    return n > 0 && (size_t)n < room ? 0 : -1;
}

/* Runs fio for cfg and stores its read IOPS.  Returns 0, or -1 after
   printing why fio gave no figure. */
static int measure_fio(const struct bench_opts *opts, const struct io_config *cfg,
                       double *iops)
{
    char cmd[FIO_CMD_MAX];

    if (fio_command(cmd, sizeof(cmd), opts, cfg) != 0) {
        fprintf(stderr, "dkv-bench: the fio command line is too long\n");
        return -1;
    }
    return bench_fio_run(cmd, "read", iops);
}

/* ---- configurations --------------------------------------------------------- */

/* Fills the row for one engine's runs of cfg (values are sorted). */
static void make_row(struct bench_result *row, const struct io_config *cfg,
                     const char *engine, double *values, unsigned n,
                     int o_direct)
{
    memset(row, 0, sizeof(*row));
    snprintf(row->benchmark, sizeof(row->benchmark), "%s", BENCH_IO_NAME);
    snprintf(row->engine, sizeof(row->engine), "%s", engine);
    snprintf(row->io, sizeof(row->io), "%s", dkv_io_engine_name(cfg->engine));
    snprintf(row->mode, sizeof(row->mode), "%s",
             cfg->direct ? "direct" : "buffered");
    row->depth = cfg->depth;
    row->block = cfg->block;
    row->runs = n;
    row->o_direct = o_direct;
    bench_summarize(values, n, &row->ops_per_sec, &row->ops_min, &row->ops_max);
}

/* 1 when fio has a counterpart of cfg: direct reads with a kernel AIO
   backend (fio's psync ignores the depth, ours uses threads). */
static int has_fio_counterpart(const struct io_config *cfg)
{
    return cfg->direct &&
           (cfg->engine == DKV_IO_URING || cfg->engine == DKV_IO_LIBAIO);
}

/* Adds the rows of cfg: ours, and fio's when it ran every time. */
static int add_rows(struct bench_results *results, const struct io_config *cfg,
                    double *ours, double *theirs, unsigned n, int o_direct,
                    unsigned submit_chunk)
{
    struct bench_result mine, fio;
    int rc;

    make_row(&mine, cfg, "dkv", ours, n, o_direct);
    mine.submit_chunk = submit_chunk;
    if (theirs != NULL) {
        make_row(&fio, cfg, "fio", theirs, n, 1);
        mine.vs_fio = fio.ops_per_sec > 0 ? mine.ops_per_sec / fio.ops_per_sec : 0;
    }
    rc = bench_results_add(results, &mine);
    if (rc == DKV_OK && theirs != NULL)
        rc = bench_results_add(results, &fio);
    return rc;
}

/*
 * Runs cfg opts->repeat times, ours then fio back to back each time (when
 * use_fio and fio has a counterpart), and adds the rows.  Returns 0 (also
 * when the backend is unavailable: the configuration is skipped with a
 * note) or a DKV_ERR_* (reported).
 */
static int run_config(const struct bench_opts *opts, const struct io_config *cfg,
                      int use_fio, struct bench_results *results)
{
    double *ours = calloc(opts->repeat, sizeof(double));
    double *theirs = calloc(opts->repeat, sizeof(double));
    const char *name = dkv_io_engine_name(cfg->engine);
    int fio = use_fio && has_fio_counterpart(cfg), o_direct = 0, rc = DKV_OK;
    unsigned r;

    for (r = 0; ours && theirs && r < opts->repeat && rc == DKV_OK; r++) {
        rc = measure_dkv(opts, cfg, r, &ours[r], &o_direct);
        if (rc == DKV_ERR_UNSUPPORTED) {
            printf("io: note: %s is not available here; skipped\n", name);
            rc = DKV_OK;
            goto out;
        }
        if (rc != DKV_OK)
            goto out;
        if (cfg->direct && !o_direct && r == 0)
            printf("io: note: the file system refused O_DIRECT; \"direct\" "
                   "runs are buffered\n");
        fprintf(stderr, "io: %-8s %-8s block %6u depth %4u run %u/%u: "
                "dkv %.0f ops/s\n", name, cfg->direct ? "direct" : "buffered",
                cfg->block, cfg->depth, r + 1, opts->repeat, ours[r]);
        if (fio && measure_fio(opts, cfg, &theirs[r]) != 0)
            fio = 0;                        /* reported; compare no more */
        else if (fio)
            fprintf(stderr, "    fio %.0f ops/s (ours %.1f%%)\n", theirs[r],
                    theirs[r] > 0 ? 100.0 * ours[r] / theirs[r] : 0.0);
    }
    rc = ours && theirs ? add_rows(results, cfg, ours, fio ? theirs : NULL,
                                   opts->repeat, o_direct, opts->submit_chunk)
                        : DKV_ERR_NOMEM;
out:
    free(theirs);
    free(ours);
    return rc;
}

/* Decides whether fio runs: 1 yes, 0 no, -1 asked for but missing. */
static int want_fio(const struct bench_opts *opts)
{
    int found;

    if (opts->fio == BENCH_FIO_OFF)
        return 0;
    found = bench_fio_on_path();
    if (!found && opts->fio == BENCH_FIO_ON) {
        fprintf(stderr, "dkv-bench: --fio: no fio on PATH\n");
        return -1;
    }
    if (!found)
        printf("io: note: fio is not on PATH; no comparison\n");
    return found;
}

static void print_notes(const struct bench_opts *opts)
{
    unsigned i, buffered = 0;

    for (i = 0; i < opts->direct_count; i++)
        buffered |= !opts->directs[i];
    printf("io: note: the I/O layer submits at most %u requests per system "
           "call (--submit-chunk)\n",
           opts->submit_chunk ? opts->submit_chunk : IO_SUBMIT_CHUNK_DEFAULT);
    if (opts->file_size < (1ull << 30))
        printf("io: note: the file is smaller than 1 GiB: a quick run, not "
               "a figure to quote\n");
    if (buffered)
        printf("io: note: buffered runs start with the file dropped from the "
               "page cache, but the\n    page cache serves repeated reads as "
               "the run warms up (the whole file fits in RAM),\n    so "
               "buffered figures include page-cache hits\n");
}

int bench_io_run(const struct bench_opts *opts, struct bench_results *results)
{
    unsigned e, m, b, d;
    int use_fio = want_fio(opts), rc;

    if (use_fio < 0)
        return DKV_ERR_UNSUPPORTED;
    for (b = 0; b < opts->block_count; b++) {
        if (opts->blocks[b] > opts->file_size) {
            fprintf(stderr, "dkv-bench: block %u is larger than the file\n",
                    opts->blocks[b]);
            return DKV_ERR_INVALID;
        }
    }
    rc = prepare_file(opts);
    if (rc != DKV_OK)
        return rc;
    print_notes(opts);
    for (e = 0; e < opts->engine_count; e++)
        for (m = 0; m < opts->direct_count; m++)
            for (b = 0; b < opts->block_count; b++)
                for (d = 0; d < opts->depth_count && rc == DKV_OK; d++) {
                    struct io_config cfg = { opts->engines[e], opts->directs[m],
                                             opts->depths[d], opts->blocks[b] };
                    rc = run_config(opts, &cfg, use_fio, results);
                    if (rc != DKV_OK)
                        return rc;
                }
    return DKV_OK;
}
