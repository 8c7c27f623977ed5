/*
 * bench_kv_plot.c - the charts of --plot DIR, drawn by gnuplot (Debian:
 * gnuplot-nox) from data files this writes beside them:
 *   ops.png          ops/s of each workload (benchmark and threads) per
 *                    engine, clustered bars on a log scale
 *   cdf-BENCH.png    the latency CDF of one benchmark, a line per engine
 *                    and thread count (from each record's cdf_us)
 *   sweep.png        --sweep-pool: readrandom ops/s and hit rate against
 *                    the pool (or cache) size, a line per engine
 * plot.gp is the gnuplot script and the .dat files in DIR hold the numbers,
 * so a chart can be redrawn or restyled by hand.
 *
 * Entry points (bench_kv.h): kv_plot_available, kv_plot_write.
 */
#include "bench_kv.h"

#include "bench.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PLOT_COLS_MAX 8                 /* engines in one chart             */
#define PLOT_SIZE     "1200,650"
/* The terminal (pngcairo, else libgd's png: plot.gp picks); names such as
   readrandom_mem are text, not subscripts. */
#define PLOT_TERM     "set terminal @term noenhanced size "

/* One color per engine, the same in every chart (fio last). */
static const char *engine_color(const char *engine)
{
    static const char *const names[] = { "dkv-direct", "dkv-buffered", "sqlite3",
                                         "lmdb", "rocksdb", "fio" };
    static const char *const colors[] = { "#6a3d9a", "#33a02c", "#1f78b4",
                                          "#ff7f00", "#e31a1c", "#7f7f7f" };

    for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(engine, names[i]) == 0)
            return colors[i];
    return "#000000";
}

int kv_plot_available(void)
{
    return system("command -v gnuplot >/dev/null 2>&1") == 0;
}

static int is_sweep(const struct kv_record *r)
{
    return r->pool_fraction > 0;
}

static int is_engine(const struct kv_record *r)
{
    return strcmp(r->engine, "fio") != 0;
}

/* The distinct engines of the records (fio included: it is a bar). */
static unsigned engines_of(const struct kv_record *recs, unsigned n, int sweep,
                           const char **out)
{
    unsigned count = 0;

    for (unsigned i = 0; i < n; i++) {
        unsigned j;
        if (is_sweep(&recs[i]) != sweep)
            continue;
        for (j = 0; j < count && strcmp(out[j], recs[i].engine) != 0; j++)
            ;
        if (j == count && count < PLOT_COLS_MAX)
            out[count++] = recs[i].engine;
    }
    return count;
}

static const struct kv_record *find(const struct kv_record *recs, unsigned n,
                                    const char *engine, const char *bench,
                                    unsigned threads)
{
    const struct kv_record *found = NULL;

    for (unsigned i = 0; i < n; i++)
        if (!is_sweep(&recs[i]) && strcmp(recs[i].engine, engine) == 0 &&
            strcmp(recs[i].benchmark, bench) == 0 && recs[i].threads == threads)
            found = &recs[i];
    return found;
}

static FILE *open_in(const char *dir, const char *name)
{
    char path[PATH_MAX];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "w");
    if (f == NULL)
        fprintf(stderr, "dkv-bench: --plot: %s: %s\n", path, strerror(errno));
    return f;
}

/* ops.dat (a row per workload, a column per engine) and its chart. */
static int plot_ops(FILE *gp, const char *dir, const struct kv_record *recs,
                    unsigned n, int *drawn)
{
    const char *cols[PLOT_COLS_MAX];
    unsigned ncols = engines_of(recs, n, 0, cols), rows = 0;
    FILE *f = open_in(dir, "ops.dat");

    if (f == NULL)
        return -1;
    fprintf(f, "workload");
    for (unsigned c = 0; c < ncols; c++)
        fprintf(f, " %s", cols[c]);
    fprintf(f, "\n");
    for (unsigned i = 0; i < n; i++) {
        unsigned j;
        if (is_sweep(&recs[i]))
            continue;
        for (j = 0; j < i; j++)
            if (!is_sweep(&recs[j]) && strcmp(recs[j].benchmark, recs[i].benchmark) == 0 &&
                recs[j].threads == recs[i].threads)
                break;
        if (j < i)
            continue;                   /* the row is written */
        fprintf(f, "%s/%ut", recs[i].benchmark, recs[i].threads);
        for (unsigned c = 0; c < ncols; c++) {
            const struct kv_record *r = find(recs, n, cols[c], recs[i].benchmark,
                                             recs[i].threads);
            if (r != NULL && r->ops_per_sec > 0)
                fprintf(f, " %.1f", r->ops_per_sec);
            else
                fprintf(f, " ?");
        }
        fprintf(f, "\n");
        rows++;
    }
    if (fclose(f) != 0)
        return -1;
    if (rows == 0 || ncols == 0)
        return 0;
    *drawn = 1;
    fprintf(gp,
            "reset\n" PLOT_TERM PLOT_SIZE " font ',10'\n"
            "set output 'ops.png'\nset datafile missing '?'\n"
            "set title 'dkv-bench: ops/s per workload and engine (log scale; "
            "multiget: keys/s)'\n"
            "set style data histogram\nset style histogram cluster gap 1\n"
            "set style fill solid 0.85 border -1\nset boxwidth 0.9\n"
            "set logscale y\nset grid ytics\nset ylabel 'ops/s'\n"
            "set xtics rotate by 30 right scale 0\nset key top right\n"
            "set bmargin 7\nplot ");
    for (unsigned c = 0; c < ncols; c++)
        fprintf(gp, "%s'ops.dat' using %u%s title columnheader(%u) lc rgb '%s'",
                c ? ", " : "", c + 2, c ? "" : ":xtic(1)", c + 2, engine_color(cols[c]));
    fprintf(gp, "\n");
    return 0;
}

/* The dash type of record i's line: 1 for its engine's first thread count
   in this benchmark, 2 for the next... */
static unsigned dash_of(const struct kv_record *recs, unsigned i)
{
    unsigned dash = 1;

    for (unsigned j = 0; j < i; j++)
        if (!is_sweep(&recs[j]) && strcmp(recs[j].engine, recs[i].engine) == 0 &&
            strcmp(recs[j].benchmark, recs[i].benchmark) == 0)
            dash++;
    return dash;
}

/* cdf-BENCH.dat (a block per engine and thread count) and its chart. */
static int plot_cdf(FILE *gp, const char *dir, const struct kv_record *recs,
                    unsigned n, const char *bench)
{
    char name[64];
    unsigned blocks = 0;
    FILE *f;

    snprintf(name, sizeof(name), "cdf-%s.dat", bench);
    f = open_in(dir, name);
    if (f == NULL)
        return -1;
    fprintf(gp, "reset\n" PLOT_TERM PLOT_SIZE " font ',10'\n"
            "set output 'cdf-%s.png'\n"
            "set title 'dkv-bench: %s latency CDF (per call; log scale)'\n"
            "set logscale x\nset grid\nset xlabel 'latency (us)'\n"
            "set ylabel 'percentile'\nset yrange [0:100]\nset key bottom right opaque box\n"
            "plot ", bench, bench);
    for (unsigned i = 0; i < n; i++) {
        const struct kv_record *r = &recs[i];
        if (is_sweep(r) || !is_engine(r) || strcmp(r->benchmark, bench) != 0 ||
            r->max_us <= 0)
            continue;
        fprintf(f, "# %s, %u threads\n", r->engine, r->threads);
        for (unsigned p = 0; p < KV_CDF_POINTS; p++)
            fprintf(f, "%.3f %.3f\n", r->cdf_us[p] > 0 ? r->cdf_us[p] : 0.001,
                    kv_cdf_pcts[p]);
        fprintf(f, "\n\n");
        /* A thread count apart from the first: dashed, another point. */
        fprintf(gp, "%s'%s' index %u using 1:2 with linespoints pt %u ps 0.7 lw 1.5 "
                "lc rgb '%s' dt %u title '%s, %u thr'", blocks ? ", \\\n     " : "",
                name, blocks, 5 + 2 * dash_of(recs, i), engine_color(r->engine),
                dash_of(recs, i), r->engine, r->threads);
        blocks++;
    }
    if (blocks == 0)
        fprintf(gp, "0 notitle\n");
    fprintf(gp, "\n");
    return fclose(f) == 0 ? 0 : -1;
}

/* 1 when the engine's sweep records count cache hits. */
static int has_hits(const struct kv_record *recs, unsigned n, const char *engine)
{
    for (unsigned i = 0; i < n; i++)
        if (is_sweep(&recs[i]) && strcmp(recs[i].engine, engine) == 0 &&
            recs[i].hit_pct >= 0)
            return 1;
    return 0;
}

/* sweep.dat (a block per engine: fraction, pool MiB, ops/s, hit %). */
static int plot_sweep(FILE *gp, const char *dir, const struct kv_record *recs,
                      unsigned n)
{
    const char *cols[PLOT_COLS_MAX];
    unsigned ncols = engines_of(recs, n, 1, cols);
    FILE *f;

    if (ncols == 0)
        return 0;
    f = open_in(dir, "sweep.dat");
    if (f == NULL)
        return -1;
    for (unsigned c = 0; c < ncols; c++) {
        fprintf(f, "# %s: pool/data, pool MiB, ops/s, hit %%\n", cols[c]);
        for (unsigned i = 0; i < n; i++)
            if (is_sweep(&recs[i]) && strcmp(recs[i].engine, cols[c]) == 0)
            {
                char hit[32] = "?";
                if (recs[i].hit_pct >= 0)
                    snprintf(hit, sizeof(hit), "%.2f", recs[i].hit_pct);
                fprintf(f, "%.5f %.2f %.1f %s\n", recs[i].pool_fraction,
                        (double)recs[i].pool_bytes / (1 << 20), recs[i].ops_per_sec, hit);
            }
        fprintf(f, "\n\n");
    }
    if (fclose(f) != 0)
        return -1;
    fprintf(gp, "reset\n" PLOT_TERM "1000,900 font ',10'\n"
            "set output 'sweep.png'\nset datafile missing '?'\n"
            "set multiplot layout 2,1 title 'dkv-bench --sweep-pool: readrandom "
            "against the memory budget'\n"
            "set logscale x 2\nset grid\nset key top left\n"
            "set xlabel 'budget (pool or cache) / raw data (keys + values)'\n"
            "set ylabel 'ops/s'\nset logscale y\nplot ");
    for (unsigned c = 0; c < ncols; c++)
        fprintf(gp, "%s'sweep.dat' index %u using 1:3 with linespoints pt 7 lw 1.5 "
                "lc rgb '%s' title '%s'", c ? ", " : "", c, engine_color(cols[c]), cols[c]);
    fprintf(gp, "\nunset logscale y\nset ylabel 'hit rate (%%; lmdb: none counted)'\n"
            "set yrange [0:100]\nplot ");
    for (unsigned c = 0, shown = 0; c < ncols; c++)
        if (has_hits(recs, n, cols[c]))
            fprintf(gp, "%s'sweep.dat' index %u using 1:($4) with linespoints pt 7 "
                    "lw 1.5 lc rgb '%s' title '%s'", shown++ ? ", " : "", c,
                    engine_color(cols[c]), cols[c]);
    fprintf(gp, "\nunset multiplot\n");
    return 0;
}

/* The benchmarks (not the sweep's) in the order they first appear. */
static int plot_cdfs(FILE *gp, const char *dir, const struct kv_record *recs,
                     unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        unsigned j;
        if (is_sweep(&recs[i]) || !is_engine(&recs[i]))
            continue;
        for (j = 0; j < i && strcmp(recs[j].benchmark, recs[i].benchmark) != 0; j++)
            ;
        if (j == i && plot_cdf(gp, dir, recs, n, recs[i].benchmark) != 0)
            return -1;
    }
    return 0;
}

static int run_gnuplot(const char *dir)
{
    char quoted[2 * PATH_MAX + 8], cmd[4 * PATH_MAX];
    int status;

    if (bench_shell_quote(quoted, sizeof(quoted), dir) < 0)
        return -1;
    snprintf(cmd, sizeof(cmd), "cd %s && gnuplot plot.gp", quoted);
    status = system(cmd);
    if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "dkv-bench: --plot: gnuplot failed (%s/plot.gp)\n", dir);
        return -1;
    }
    return 0;
}

int kv_plot_write(const char *dir, const struct kv_record *recs, unsigned n)
{
    const char *sweep_engines[PLOT_COLS_MAX];
    FILE *gp;
    int rc, ops = 0;

    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "dkv-bench: --plot: mkdir %s: %s\n", dir, strerror(errno));
        return -1;
    }
    gp = open_in(dir, "plot.gp");
    if (gp == NULL)
        return -1;
    fprintf(gp, "# dkv-bench --plot: run in this directory with 'gnuplot plot.gp'\n"
            "term = strstrt(GPVAL_TERMINALS, 'pngcairo') > 0 ? 'pngcairo' : 'png'\n");
    rc = plot_ops(gp, dir, recs, n, &ops);
    if (rc == 0)
        rc = plot_cdfs(gp, dir, recs, n);
    if (rc == 0)
        rc = plot_sweep(gp, dir, recs, n);
    if (fclose(gp) != 0 || rc != 0) {
        fprintf(stderr, "dkv-bench: --plot: writing the data in %s failed\n", dir);
        return -1;
    }
    if (run_gnuplot(dir) != 0)
        return -1;
    printf("charts in %s:%s%s\n", dir, ops ? " ops.png, cdf-BENCHMARK.png" : "",
           engines_of(recs, n, 1, sweep_engines) ? " sweep.png" : "");
    return 0;
}
