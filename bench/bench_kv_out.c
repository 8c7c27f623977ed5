/*
 * bench_kv_out.c - what the engine comparison (bench_kv.c) prints and
 * writes: the db_bench line of each record, the tables after the run
 * (ops/s per engine with the ratios dkv-direct / each other engine, thread
 * scaling, scanresist, memory per phase, the pool sweep), and the records
 * as JSON and CSV (their fields: bench/README.md).
 *
 * Entry points (bench_kv.h): kv_find_record, kv_print_line,
 * kv_print_summary, kv_write_json, kv_write_csv.
 */
#include "bench_kv.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* The last record of engine and benchmark with `threads` (0: any). */
const struct kv_record *kv_find_record(const struct kv_ctx *x, const char *engine,
                                           const char *bench, unsigned threads)
{
    const struct kv_record *found = NULL;

    for (unsigned i = 0; i < x->rec_count; i++) {
        const struct kv_record *r = &x->recs[i];
        if (strcmp(r->engine, engine) == 0 && strcmp(r->benchmark, bench) == 0 &&
            (threads == 0 || r->threads == threads) && r->pool_fraction == 0)
            found = r;
    }
    return found;
}

/* The db_bench line of one record. */
void kv_print_line(const struct kv_record *rec)
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
    if (rec->cgroup_bytes > 0 && n < sizeof(extra))
        n += (size_t)snprintf(extra + n, sizeof(extra) - n, ", cgroup %.1f MB",
                              (double)rec->cgroup_bytes / 1e6);
    if (rec->found_pct >= 0 && rec->found_pct < 100.0 && n < sizeof(extra))
        n += (size_t)snprintf(extra + n, sizeof(extra) - n, ", found %.1f%%",
                              rec->found_pct);
    if (rec->syncs > 0 && n < sizeof(extra))
        snprintf(extra + n, sizeof(extra) - n, ", %.1f commits/log sync",
                 (double)rec->ops / (double)rec->syncs);
    printf("%-16s : %10.3f micros/op %9.0f ops/sec;", rec->benchmark,
           rec->micros_per_op, rec->ops_per_sec);
    if (rec->mb_per_sec > 0 && rec->scan_seconds == 0)
        printf(" %7.1f MB/s", rec->mb_per_sec);
    printf("  (engine %s, threads %u", rec->engine, rec->threads);
    if (rec->pool_fraction > 0)
        printf(", pool %.1f MiB = %.3gx the data", (double)rec->pool_bytes / (1 << 20),
               rec->pool_fraction);
    if (rec->runs > 1)
        printf(", median of %u runs: %.0f..%.0f", rec->runs, rec->ops_min, rec->ops_max);
    printf(", p50 %.1f p95 %.1f p99 %.1f p99.9 %.1f max %.1f us%s)\n",
           rec->p50_us, rec->p95_us, rec->p99_us, rec->p999_us, rec->max_us, extra);
    if (strcmp(rec->benchmark, "readwhilewriting") == 0)
        printf("%-16s   the writer (1 thread): %.0f puts/sec\n", "",
               rec->writer_ops_per_sec);
    if (strcmp(rec->benchmark, "scanresist") == 0)
        printf("%-16s   hot-set reads in the %.2f s after a full scan (%.1f s, %.1f MB/s); "
               "before it: %.0f ops/sec, hit%% %.1f\n", "", SCAN_AFTER, rec->scan_seconds,
               rec->mb_per_sec, rec->before_ops_per_sec, rec->before_hit_pct);
    if (strcmp(rec->durability, "-") != 0)
        printf("%-16s   durability: %s\n", "", rec->durability);
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

    if (r->pool_fraction > 0)
        return 1;                       /* the sweep has its own table */
    for (unsigned i = 0; i < upto; i++)
        if (strcmp(x->recs[i].benchmark, r->benchmark) == 0 &&
            x->recs[i].threads == r->threads)
            return 1;
    return 0;
}

static void print_summary_row(const struct kv_ctx *x, const struct kv_record *key,
                              const char **cols, unsigned ncols)
{
    const struct kv_record *base = kv_find_record(x, "dkv-direct", key->benchmark,
                                               key->threads);
    unsigned c;

    printf("%-17s %7u", key->benchmark, key->threads);
    for (c = 0; c < ncols; c++) {
        const struct kv_record *r = kv_find_record(x, cols[c], key->benchmark, key->threads);
        if (r != NULL && r->ops_per_sec > 0)
            printf(" %13.0f", r->ops_per_sec);
        else if (r != NULL && r->mb_per_sec > 0)      /* fio beside readseq */
            printf(" %8.0f MB/s", r->mb_per_sec);
        else
            printf(" %13s", "-");
    }
    for (c = 0; c < ncols; c++) {
        const struct kv_record *r = kv_find_record(x, cols[c], key->benchmark, key->threads);
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
        const struct kv_record *one = kv_find_record(x, x->dbs[e].name, bench, 1);
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

/* Memory at the end of each phase: the process's RSS and the page cache
   its files hold, per engine (so double caching shows). */
static void print_memory(const struct kv_ctx *x)
{
    printf("\nmemory at the end of each phase, MB: process RSS + page cache of the "
           "engine's files\n%-17s %7s", "benchmark", "threads");
    for (unsigned e = 0; e < x->cfg.engine_count; e++)
        printf(" %15s", x->dbs[e].name);
    printf("\n");
    for (unsigned i = 0; i < x->rec_count; i++) {
        const struct kv_record *key = &x->recs[i];
        if (seen_before(x, i) || strcmp(key->engine, "fio") == 0)
            continue;
        printf("%-17s %7u", key->benchmark, key->threads);
        for (unsigned e = 0; e < x->cfg.engine_count; e++) {
            const struct kv_record *r = kv_find_record(x, x->dbs[e].name, key->benchmark,
                                                    key->threads);
            char cell[32] = "-";
            if (r != NULL)
                snprintf(cell, sizeof(cell), "%.0f + %.0f", (double)r->rss_bytes / 1e6,
                         (double)r->page_cache_bytes / 1e6);
            printf(" %15s", cell);
        }
        printf("\n");
    }
    for (unsigned e = 0; e < x->cfg.engine_count; e++)
        if (x->dbs[e].kind == E_LMDB)
            printf("(lmdb's RSS counts the pages of its file it has mapped, which are "
                   "page cache too)\n");
}

/* scanresist: what a full scan did to each engine's hot set. */
static void print_scanresist(const struct kv_ctx *x)
{
    int header = 0;

    for (unsigned i = 0; i < x->rec_count; i++) {
        const struct kv_record *r = &x->recs[i];
        char hits[64] = "hit% not counted";
        if (r->scan_seconds == 0)
            continue;
        if (!header++)
            printf("\nscanresist: reads of a hot set (pages of half the budget) before a "
                   "full scan -> in the %.2f s after it\n", SCAN_AFTER);
        if (r->hit_pct >= 0 && r->before_hit_pct >= 0)
            snprintf(hits, sizeof(hits), "hit%% %5.1f -> %5.1f", r->before_hit_pct,
                     r->hit_pct);
        printf("  %-13s %u thr: %9.0f -> %9.0f ops/s (%.2fx), %s\n", r->engine,
               r->threads, r->before_ops_per_sec, r->ops_per_sec,
               r->before_ops_per_sec > 0 ? r->ops_per_sec / r->before_ops_per_sec : 0.0,
               hits);
    }
}

/* The pool sweep: ops/s (hit %) per engine at each budget. */
static void print_sweep(const struct kv_ctx *x)
{
    double seen[SWEEP_POINTS * ENGINE_MAX];
    unsigned nseen = 0;

    printf("\n--sweep-pool: readrandom ops/s (hit %%) against the budget\n%-22s",
           "budget MiB (x data)");
    for (unsigned e = 0; e < x->cfg.engine_count; e++)
        printf(" %18s", x->dbs[e].name);
    printf("\n");
    for (unsigned i = 0; i < x->rec_count; i++) {
        const struct kv_record *key = &x->recs[i];
        unsigned k;
        char label[40];
        for (k = 0; k < nseen && seen[k] != key->pool_fraction; k++)
            ;
        if (key->pool_fraction == 0 || k < nseen || nseen == SWEEP_POINTS * ENGINE_MAX)
            continue;
        seen[nseen++] = key->pool_fraction;
        snprintf(label, sizeof(label), "%.1f (%.3gx)", (double)key->pool_bytes / (1 << 20),
                 key->pool_fraction);
        printf("%-22s", label);
        for (unsigned e = 0; e < x->cfg.engine_count; e++) {
            const struct kv_record *r = NULL;
            char cell[40] = "-";
            for (unsigned j = 0; j < x->rec_count; j++)
                if (x->recs[j].pool_fraction == key->pool_fraction &&
                    strcmp(x->recs[j].engine, x->dbs[e].name) == 0)
                    r = &x->recs[j];
            if (r != NULL && r->hit_pct >= 0)
                snprintf(cell, sizeof(cell), "%.0f (%.1f%%)", r->ops_per_sec, r->hit_pct);
            else if (r != NULL)
                snprintf(cell, sizeof(cell), "%.0f", r->ops_per_sec);
            printf(" %18s", cell);
        }
        printf("\n");
    }
}

void kv_print_summary(const struct kv_ctx *x)
{
    const char *cols[ENGINE_MAX + 1];
    unsigned ncols = summary_columns(x, cols), c, i;
    char head[32];

    if (x->cfg.bench_count == 0) {      /* the sweep alone */
        print_sweep(x);
        printf("\nwall time: --sweep-pool %.0f s\n", x->sweep_seconds);
        return;
    }
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
           " for readrandom, %u for multiget; %u KiB sequential reads at iodepth %u\n"
           " beside readseq)\n", x->cfg.page_size, FIO_DEPTH_MULTIGET,
           FIO_SEQ_BLOCK >> 10, FIO_SEQ_DEPTH);
    print_scaling(x, "readrandom_mem");
    print_scaling(x, "readrandom");
    print_scanresist(x);
    print_memory(x);
    if (x->cfg.sweep)
        print_sweep(x);
    printf("\nwall time per benchmark (all engines, loads and fio included):");
    for (i = 0; i < x->cfg.bench_count; i++)
        printf("%s%s %.0f s", i % 5 ? ", " : "\n  ", kv_bench_defs[x->cfg.benches[i]].name,
               x->bench_seconds[i]);
    if (x->cfg.sweep)
        printf("%s--sweep-pool %.0f s", i % 5 ? ", " : "\n  ", x->sweep_seconds);
    printf("\n");
    if (x->cfg.repeat > 1)
        printf("(each timed figure: the median of %u runs)\n", x->cfg.repeat);
    if (x->cfg.mem_limit != 0 && !x->mem_limit_on)
        printf("--mem-limit was NOT enforced: %s\n", x->mem_limit_why);
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
            "\"distribution\": \"%s\", \"runs\": %u",
            r->benchmark, r->engine, r->io, r->direct ? "true" : "false",
            r->threads, (unsigned long long)r->ops, r->durability,
            r->distribution[0] ? r->distribution : "-", r->runs ? r->runs : 1);
    json_num(out, "seconds", r->seconds);
    json_num(out, "ops_per_sec", r->ops_per_sec);
    json_num(out, "micros_per_op", r->micros_per_op);
    if (r->runs > 1) {
        json_num(out, "ops_per_sec_min", r->ops_min);
        json_num(out, "ops_per_sec_max", r->ops_max);
    }
    json_num(out, "p50_us", r->p50_us);
    json_num(out, "p95_us", r->p95_us);
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
    if (r->cgroup_bytes > 0)
        fprintf(out, ", \"cgroup_bytes\": %llu", (unsigned long long)r->cgroup_bytes);
    if (r->pool_fraction > 0)
        json_num(out, "pool_fraction", r->pool_fraction);
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
    if (r->scan_seconds > 0) {
        json_num(out, "before_ops_per_sec", r->before_ops_per_sec);
        if (r->before_hit_pct >= 0)
            json_num(out, "before_hit_pct", r->before_hit_pct);
        json_num(out, "scan_seconds", r->scan_seconds);
    }
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

int kv_write_json(const struct kv_ctx *x, const char *path)
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

int kv_write_csv(const struct kv_ctx *x, const char *path)
{
    FILE *out = fopen(path, "w");

    if (out == NULL) {
        fprintf(stderr, "dkv-bench: %s: %s\n", path, strerror(errno));
        return -1;
    }
    fprintf(out, "benchmark,engine,io,direct,threads,ops,seconds,ops_per_sec,"
            "micros_per_op,p50_us,p95_us,p99_us,p999_us,max_us,cpu_us_per_op,rss_bytes,"
            "page_cache_bytes,cgroup_bytes,hit_pct,pages_read,disk_read_bytes,mb_per_sec,"
            "log_syncs,pool_bytes,pool_fraction,runs,distribution,iodepth,durability\n");
    for (unsigned i = 0; i < x->rec_count; i++) {
        const struct kv_record *r = &x->recs[i];
        fprintf(out, "%s,%s,%s,%d,%u,%llu,%.6f,%.1f,%.4f,%.2f,%.2f,%.2f,%.2f,%.2f,%.3f,"
                "%llu,%llu,%llu,%.2f,%llu,%llu,%.2f,%llu,%llu,%.5f,%u,%s,%u,\"%s\"\n",
                r->benchmark, r->engine, r->io, r->direct, r->threads,
                (unsigned long long)r->ops, r->seconds, r->ops_per_sec,
                r->micros_per_op, r->p50_us, r->p95_us, r->p99_us, r->p999_us, r->max_us,
                r->cpu_us_per_op, (unsigned long long)r->rss_bytes,
                (unsigned long long)r->page_cache_bytes,
                (unsigned long long)r->cgroup_bytes, r->hit_pct,
                (unsigned long long)r->pages_read,
                (unsigned long long)r->disk_read_bytes, r->mb_per_sec,
                (unsigned long long)r->syncs, (unsigned long long)r->pool_bytes,
                r->pool_fraction, r->runs ? r->runs : 1,
                r->distribution[0] ? r->distribution : "-", r->iodepth, r->durability);
    }
    return close_output(out, path);
}

