/*
 * dkv_bench.c - dkv-bench, the project's benchmark program: main, the
 * command line, dispatch to a mode, and the two outputs every mode shares
 * (a table on stdout, and with --json a JSON array of the same rows).
 *
 * Entry points:
 *   main                  parses "dkv-bench MODE [options]" and runs MODE;
 *                         with no mode (no argument, or options starting
 *                         with "--") runs the engine comparison (bench_kv.c)
 *   bench_results_add     appends a row (modes call it)
 *   bench_summarize       median, min and max of a configuration's runs
 *   bench_now             the monotonic clock, in seconds
 *   bench_print_targets   measured vs target, PASS/FAIL, for rows with one
 *
 * The design rule it serves (DESIGN.md, "Measure, don't guess"): every
 * figure is printed next to its comparison, measured in the same run, as a
 * ratio; the figure quoted is the median of --repeat runs.
 */
#include "bench.h"

#include "dkv.h"
#include "pager/io.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EXIT_USAGE 2

/* A mode: its name, the function that runs it, and its table (NULL: the
   io layout, print_table). */
struct bench_mode {
    const char *name;
    int (*run)(const struct bench_opts *opts, struct bench_results *results);
    void (*print)(FILE *out, const struct bench_results *results);
};

static const struct bench_mode modes[] = {
    { "io",   bench_io_run,   NULL },
    { "pool", bench_pool_run, bench_pool_print },
    { "wal",  bench_wal_run,  bench_wal_print },
};

static void usage(FILE *out)
{
    fprintf(out,
        "usage: dkv-bench [--benchmarks=LIST ...]   the engine comparison\n"
        "       dkv-bench MODE [options]\n"
        "\n"
        "modes:\n"
        "  io     random reads through the I/O layer, side by side with fio\n"
        "  pool   the buffer pool: hits, random fixes, miss cost vs a raw read,\n"
        "         prefetch vs fio\n"
        "  wal    the redo log through the page store: group commit vs fio's\n"
        "         sync rate, put stalls, page images, recovery time\n"
        "\n"
        "io options:\n"
        "  --file PATH        data file (default /tmp/dkv-bench-io.dat)\n"
        "  --size BYTES       file size: bytes or 512M, 1G... (default 1G)\n"
        "  --seconds S        measured seconds per run (default 5)\n"
        "  --engines LIST     io_uring,libaio,psync (default: all three)\n"
        "  --depths LIST      requests in flight (default 1,32)\n"
        "  --blocks LIST      bytes per read (default 4096,16384)\n"
        "  --modes LIST       direct,buffered (default: both)\n"
        "  --fio | --no-fio   run fio for comparison (default: if on PATH)\n"
        "  --repeat N         runs per configuration; the median is quoted\n"
        "  --submit-chunk N   requests per system call (io_ctx_config.submit_chunk;\n"
        "                     default 4; N = the depth: one call per batch)\n"
        "  --json FILE        also write the results as a JSON array\n"
        "  -h, --help         this text\n"
        "\n"
        "pool options (and --seconds, default 3; --repeat, default 3; --json;\n"
        "--fio/--no-fio):\n"
        "  --file PATH        the data file (default /tmp/dkv-bench-pool-16k.dat,\n"
        "                     by page size; reused when it fits, never another\n"
        "                     file overwritten); run d's 4 KiB file: PATH.prefetch\n"
        "                     (default /tmp/dkv-bench-pool-prefetch-4k.dat)\n"
        "  --pool-size BYTES  the pool (default 256M); the file holds 4x its pages\n"
        "  --page-size BYTES  4K..64K (default 16K); the prefetch run uses 4K\n"
        "  --parts LETTERS    the runs to do (default abcd): a hits, b random\n"
        "                     fixes, c miss cost, d prefetch\n"
        "\n"
        "wal options (and --seconds, default 3; --repeat, default 3; --json;\n"
        "--fio/--no-fio):\n"
        "  --dir PATH         where the scratch directory goes (default /tmp)\n"
        "  --stall-seconds S  each put-stall run (default 30)\n"
        "  --recovery-gib G   log to recover (default 1)\n"
        "  --parts LETTERS    the runs to do (default abcd): a group commit\n"
        "                     (c, page images, comes with a), b stalls,\n"
        "                     d recovery\n"
        "\n");
    bench_kv_usage(out);
}

/* ---- parsing ----------------------------------------------------------- */


static int parse_engine(const char *text, int *engine)
{
    int e;

    for (e = DKV_IO_URING; e <= DKV_IO_PSYNC; e++) {
        if (strcmp(text, dkv_io_engine_name(e)) == 0) {
            *engine = e;
            return 0;
        }
    }
    return -1;
}

/* One item of a list, parsed into slot `index` of the option named kind. */
static int parse_item(struct bench_opts *opts, char kind, const char *text,
                      unsigned index)
{
    uint64_t v;

    switch (kind) {
    case 'e':
        return parse_engine(text, &opts->engines[index]);
    case 'm':
        if (strcmp(text, "direct") != 0 && strcmp(text, "buffered") != 0)
            return -1;
        opts->directs[index] = strcmp(text, "direct") == 0;
        return 0;
    case 'd':
        if (bench_parse_size(text, &v) != 0 || v == 0 || v > IO_DEPTH_MAX)
            return -1;
        opts->depths[index] = (unsigned)v;
        return 0;
    case 'b':
        /* A multiple of 512 (the smallest O_DIRECT alignment), <= 64 MiB. */
        if (bench_parse_size(text, &v) != 0 || v == 0 || v % 512 || v > (64u << 20))
            return -1;
        opts->blocks[index] = (uint32_t)v;
        return 0;
    default:
        return -1;
    }
}

/* Parses the comma-separated list text into the array of kind; *count gets
   the number of items.  Returns 0, or -1 for an empty or bad item. */
static int parse_list(struct bench_opts *opts, char kind, const char *text,
                      unsigned *count)
{
    char item[64];
    unsigned n = 0;

    while (*text != '\0') {
        size_t len = strcspn(text, ",");
        if (len == 0 || len >= sizeof(item) || n >= BENCH_LIST_MAX)
            return -1;
        memcpy(item, text, len);
        item[len] = '\0';
        if (parse_item(opts, kind, item, n++) != 0)
            return -1;
        text += len;
        if (*text == ',' && *++text == '\0')
            return -1;
    }
    *count = n;
    return n > 0 ? 0 : -1;
}

static void set_defaults(struct bench_opts *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->file_path = "/tmp/dkv-bench-io.dat";
    opts->file_size = 1ull << 30;
    opts->seconds = 5.0;
    opts->warmup_seconds = 0.5;
    opts->repeat = 1;
    opts->fio = BENCH_FIO_AUTO;
    opts->engines[0] = DKV_IO_URING;
    opts->engines[1] = DKV_IO_LIBAIO;
    opts->engines[2] = DKV_IO_PSYNC;
    opts->engine_count = 3;
    opts->directs[0] = 1;
    opts->directs[1] = 0;
    opts->direct_count = 2;
    opts->depths[0] = 1;
    opts->depths[1] = 32;
    opts->depth_count = 2;
    opts->blocks[0] = 4096;
    opts->blocks[1] = 16384;
    opts->block_count = 2;
    opts->stall_seconds = 30.0;
    opts->recovery_gib = 1.0;
    opts->dir = "/tmp";
    opts->parts = "abcd";
}

/* Parses a positive number of seconds (or GiB) at most max.  0 or -1. */
static int parse_positive(const char *arg, double max, double *value)
{
    char *end;

    *value = strtod(arg, &end);
    return end == arg || *end != '\0' || !(*value > 0.0) || *value > max ? -1 : 0;
}

/* The options of the pool and wal modes (see apply_option). */
static int apply_mode_option(struct bench_opts *opts, int c, const char *arg)
{
    uint64_t v;
    int bad = 0;

    switch (c) {
    case 'P':
        bad = bench_parse_size(arg, &v) != 0 || v < (1u << 20) || v > (1ull << 40);
        opts->pool_size = v;
        break;
    case 'S':
        bad = bench_parse_size(arg, &v) != 0 || v < 4096 || v > 65536 || (v & (v - 1));
        opts->page_size = (uint32_t)v;
        break;
    case 'T': bad = parse_positive(arg, 86400.0, &opts->stall_seconds); break;
    case 'G': bad = parse_positive(arg, 64.0, &opts->recovery_gib); break;
    case 'D': opts->dir = arg; bad = arg[0] == '\0'; break;
    case 'R':
        opts->parts = arg;
        bad = arg[0] == '\0' || strspn(arg, "abcd") != strlen(arg);
        break;
    default:
        return -1;
    }
    if (bad)
        fprintf(stderr, "dkv-bench: bad value for an option: '%s'\n", arg);
    return bad ? -1 : 0;
}

/* Applies one option (getopt_long's code c, its argument arg).  Returns 0,
   or -1 after printing what is wrong with it. */
static int apply_option(struct bench_opts *opts, int c, const char *arg)
{
    uint64_t v;
    char *end;
    int bad = 0;

    switch (c) {
    case 'f':
        opts->file_path = arg;
        opts->file_set = 1;
        bad = arg[0] == '\0';
        break;
    case 'z':
        bad = bench_parse_size(arg, &v) != 0 || v < (1u << 20);
        opts->file_size = v & ~(uint64_t)4095;
        break;
    case 's':
        opts->seconds = strtod(arg, &end);
        bad = end == arg || *end != '\0' || !(opts->seconds > 0.0) ||
              opts->seconds > 86400.0;
        opts->seconds_set = 1;
        break;
    case 'e': bad = parse_list(opts, 'e', arg, &opts->engine_count); break;
    case 'd': bad = parse_list(opts, 'd', arg, &opts->depth_count); break;
    case 'b': bad = parse_list(opts, 'b', arg, &opts->block_count); break;
    case 'm': bad = parse_list(opts, 'm', arg, &opts->direct_count); break;
    case 'j': opts->json_path = arg; bad = arg[0] == '\0'; break;
    case 'F': opts->fio = BENCH_FIO_ON; break;
    case 'N': opts->fio = BENCH_FIO_OFF; break;
    case 'r':
        bad = bench_parse_size(arg, &v) != 0 || v == 0 || v > 1000;
        opts->repeat = (unsigned)v;
        opts->repeat_set = 1;
        break;
    case 'c':
        bad = bench_parse_size(arg, &v) != 0 || v > IO_DEPTH_MAX;
        opts->submit_chunk = (unsigned)v;
        break;
    default:
        return apply_mode_option(opts, c, arg);
    }
    if (bad)
        fprintf(stderr, "dkv-bench: bad value for an option: '%s'\n", arg);
    return bad ? -1 : 0;
}

/* Parses the options after the mode name.  Returns 0, 1 for --help, or -1
   for a bad command line (getopt or apply_option said why). */
static int parse_args(int argc, char **argv, struct bench_opts *opts)
{
    static const struct option longopts[] = {
        { "file",    required_argument, NULL, 'f' },
        { "size",    required_argument, NULL, 'z' },
        { "seconds", required_argument, NULL, 's' },
        { "engines", required_argument, NULL, 'e' },
        { "depths",  required_argument, NULL, 'd' },
        { "blocks",  required_argument, NULL, 'b' },
        { "modes",   required_argument, NULL, 'm' },
        { "json",    required_argument, NULL, 'j' },
        { "fio",     no_argument,       NULL, 'F' },
        { "no-fio",  no_argument,       NULL, 'N' },
        { "repeat",  required_argument, NULL, 'r' },
        { "submit-chunk", required_argument, NULL, 'c' },
        { "pool-size", required_argument, NULL, 'P' },
        { "page-size", required_argument, NULL, 'S' },
        { "stall-seconds", required_argument, NULL, 'T' },
        { "recovery-gib", required_argument, NULL, 'G' },
        { "dir",     required_argument, NULL, 'D' },
        { "parts",   required_argument, NULL, 'R' },
        { "help",    no_argument,       NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    int c;

    set_defaults(opts);
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (c == 'h')
            return 1;
        if (c == '?' || apply_option(opts, c, optarg) != 0)
            return -1;
    }
    if (optind != argc) {
        fprintf(stderr, "dkv-bench: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    return 0;
}

/* ---- results ------------------------------------------------------------ */

int bench_results_add(struct bench_results *results,
                      const struct bench_result *row)
{
    if (results->count == results->cap) {
        size_t cap = results->cap ? results->cap * 2 : 32;
        struct bench_result *rows = realloc(results->rows, cap * sizeof(*rows));
        if (rows == NULL)
            return DKV_ERR_NOMEM;
        results->rows = rows;
        results->cap = cap;
    }
    results->rows[results->count++] = *row;
    return DKV_OK;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

void bench_summarize(double *values, unsigned n, double *median, double *min,
                     double *max)
{
    qsort(values, n, sizeof(*values), cmp_double);
    *min = values[0];
    *max = values[n - 1];
    *median = n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

double bench_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- output --------------------------------------------------------------- */

void bench_print_targets(FILE *out, const struct bench_results *results)
{
    size_t i;
    int header = 0;

    for (i = 0; i < results->count; i++) {
        const struct bench_result *r = &results->rows[i];

        if (r->target_name == NULL)
            continue;
        if (!header++)
            fprintf(out, "\ntargets (medians of the runs above):\n");
        fprintf(out, "  %-44s measured %12.4g  target %s %-10.4g %s\n",
                r->target_name, r->measured, r->target_le ? "<=" : ">=",
                r->target, r->pass ? "PASS" : "FAIL");
    }
}

/* Prints, for each row with a fio counterpart, the ratio ours/fio. */
static void print_ratios(FILE *out, const struct bench_results *results)
{
    size_t i;
    int header = 0;

    for (i = 0; i < results->count; i++) {
        const struct bench_result *r = &results->rows[i];

        if (!(r->vs_fio > 0))
            continue;
        if (!header++)
            fprintf(out, "\nours / fio (median ops/s, measured back to back):\n");
        fprintf(out, "  %-9s %-8s block %6u depth %4u: %6.1f%%  (dkv %.0f, fio %.0f)\n",
                r->io, r->mode, r->block, r->depth, r->vs_fio * 100.0,
                r->ops_per_sec, r->ops_per_sec / r->vs_fio);
    }
}

static void print_table(FILE *out, const struct bench_results *results)
{
    size_t i;
    int buffered = 0;

    fprintf(out, "\n%-12s %-6s %-9s %-9s %6s %7s %11s %11s %11s %9s %7s\n",
            "benchmark", "engine", "backend", "io", "depth", "block", "ops/s",
            "min", "max", "MB/s", "vs fio");
    for (i = 0; i < results->count; i++) {
        const struct bench_result *r = &results->rows[i];
        char ratio[16] = "";

        if (r->vs_fio > 0)
            snprintf(ratio, sizeof(ratio), "%.1f%%", r->vs_fio * 100.0);
        buffered |= strcmp(r->mode, "buffered") == 0;
        fprintf(out, "%-12s %-6s %-9s %-9s %6u %7u %11.0f %11.0f %11.0f %9.1f %7s\n",
                r->benchmark, r->engine, r->io, r->mode, r->depth, r->block,
                r->ops_per_sec, r->ops_min, r->ops_max,
                r->ops_per_sec * r->block / 1e6, ratio);
    }
    fprintf(out, "(ops/s is the median of %u run(s); MB/s = 10^6 bytes/s)\n",
            results->count ? results->rows[0].runs : 0);
    if (buffered)
        fprintf(out, "(buffered: each run starts with the file dropped from the "
                "page cache; the figures\n include page-cache hits as the run "
                "warms up)\n");
    print_ratios(out, results);
}

/* Writes a number as JSON (which has no NaN or infinity). */
static void json_number(FILE *out, const char *name, double v)
{
    if (isfinite(v))
        fprintf(out, ", \"%s\": %.10g", name, v);
    else
        fprintf(out, ", \"%s\": null", name);
}

/* The fields of the pool and wal modes' rows, when set. */
static void json_mode_fields(FILE *out, const struct bench_result *r)
{
    unsigned i;

    if (r->threads > 0)
        fprintf(out, ", \"threads\": %u", r->threads);
    if (r->dist[0] != '\0')
        fprintf(out, ", \"dist\": \"%s\"", r->dist);
    if (r->ratio_of != NULL) {
        json_number(out, "ratio", r->ratio);
        fprintf(out, ", \"ratio_of\": \"%s\"", r->ratio_of);
    }
    if (r->target_name != NULL) {
        fprintf(out, ", \"target_name\": \"%s\"", r->target_name);
        json_number(out, "measured", r->measured);
        json_number(out, "target", r->target);
        fprintf(out, ", \"target_le\": %s, \"pass\": %s",
                r->target_le ? "true" : "false", r->pass ? "true" : "false");
    }
    for (i = 0; i < r->extra_count; i++)
        json_number(out, r->extra[i].name, r->extra[i].value);
}

/* Writes one row as a JSON object (the strings are our own identifiers,
   which need no escaping). */
static void json_row(FILE *out, const struct bench_result *r, int last)
{
    fprintf(out,
            "  {\"benchmark\": \"%s\", \"engine\": \"%s\", \"io\": \"%s\", "
            "\"mode\": \"%s\", \"depth\": %u, \"block\": %u, "
            "\"ops_per_sec\": %.1f, \"ops_min\": %.1f, \"ops_max\": %.1f, "
            "\"mb_per_sec\": %.2f, \"runs\": %u, \"o_direct\": %s",
            r->benchmark, r->engine, r->io, r->mode, r->depth, r->block,
            r->ops_per_sec, r->ops_min, r->ops_max,
            r->ops_per_sec * r->block / 1e6, r->runs,
            r->o_direct ? "true" : "false");
    if (r->submit_chunk > 0)
        fprintf(out, ", \"submit_chunk\": %u", r->submit_chunk);
    if (r->vs_fio > 0)
        fprintf(out, ", \"vs_fio\": %.4f", r->vs_fio);
    json_mode_fields(out, r);
    fprintf(out, "}%s\n", last ? "" : ",");
}

/* Writes the rows to path as a JSON array.  Returns 0 or -1 (said why). */
static int write_json(const char *path, const struct bench_results *results)
{
    FILE *out = fopen(path, "w");
    size_t i;
    int failed;

    if (out == NULL) {
        fprintf(stderr, "dkv-bench: %s: %s\n", path, strerror(errno));
        return -1;
    }
    fprintf(out, "[\n");
    for (i = 0; i < results->count; i++)
        json_row(out, &results->rows[i], i + 1 == results->count);
    fprintf(out, "]\n");
    failed = ferror(out);
    if (fclose(out) != 0 || failed) {
        fprintf(stderr, "dkv-bench: writing %s failed\n", path);
        return -1;
    }
    return 0;
}

static const struct bench_mode *find_mode(const char *name)
{
    size_t i;

    for (i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
        if (strcmp(modes[i].name, name) == 0)
            return &modes[i];
    return NULL;
}

/* Exit status: 0 success, 1 an I/O or system error, 2 a bad command line. */
int main(int argc, char **argv)
{
    struct bench_results results = { NULL, 0, 0 };
    const struct bench_mode *mode;
    struct bench_opts opts;
    char prog[64];
    int rc, status = 0;

    setvbuf(stdout, NULL, _IOLBF, 0);   /* notes interleave with progress */
    if (argc < 2 || (strncmp(argv[1], "--", 2) == 0 &&
                     strcmp(argv[1], "--help") != 0))
        return bench_kv_main(argc, argv);
    if (argc >= 2 && (strcmp(argv[1], "-h") == 0 ||
                      strcmp(argv[1], "--help") == 0)) {
        usage(stdout);
        return 0;
    }
    mode = argc >= 2 ? find_mode(argv[1]) : NULL;
    if (mode == NULL) {
        if (argc >= 2)
            fprintf(stderr, "dkv-bench: unknown mode '%s'\n", argv[1]);
        usage(stderr);
        return EXIT_USAGE;
    }
    snprintf(prog, sizeof(prog), "dkv-bench %s", mode->name);
    argv[1] = prog;                     /* getopt's name in its messages */
    rc = parse_args(argc - 1, argv + 1, &opts);
    if (rc != 0) {
        usage(rc > 0 ? stdout : stderr);
        return rc > 0 ? 0 : EXIT_USAGE;
    }
    rc = mode->run(&opts, &results);
    if (rc != DKV_OK)
        status = 1;
    if (results.count > 0) {
        if (mode->print != NULL)
            mode->print(stdout, &results);
        else
            print_table(stdout, &results);
        bench_print_targets(stdout, &results);
        /* A failed run writes no JSON: a partial file would be quoted. */
        if (status == 0 && opts.json_path != NULL &&
            write_json(opts.json_path, &results) != 0)
            status = 1;
    }
    free(results.rows);
    return status;
}
