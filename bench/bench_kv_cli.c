/*
 * bench_kv_cli.c - the command line of the engine comparison (bench_kv.c):
 * db_bench's flags (--benchmarks=LIST, --num, --threads...) and its own
 * (--engines, --pool, --mem-limit, --plot, --sweep-pool...), parsed into a
 * struct kv_cfg and checked, and the text of --help.  Every flag is in
 * bench/README.md.
 *
 * Entry points: kv_parse_args (bench_kv.h), bench_kv_usage (bench.h).
 */
#include "bench_kv.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* fillseq and readseq first: a cold scan of keys loaded in order, whose
   leaves lie in order on disk, beside the device's sequential bandwidth;
   fillrandom then loads the databases again for the rest. */
static const char *const benchmarks_default =
    "fillseq,readseq,fillrandom,readrandom,multiget,scanresist,readwhilewriting,"
    "readrandom_mem,syncput";

/* ---- the command line ------------------------------------------------------------------- */

/* The engines of this build, comma-separated. */
static const char *built_engines(void)
{
    static char list[96];
    size_t n = 0;

    list[0] = '\0';
    for (int e = 0; e < ENGINE_MAX; e++)
        if (kv_engine_built(e) && n < sizeof(list))
            n += (size_t)snprintf(list + n, sizeof(list) - n, "%s%s", n ? "," : "",
                                  kv_engine_names[e]);
    return list;
}

void bench_kv_usage(FILE *out)
{
    fprintf(out,
        "engine comparison (dkv-bench with no mode, or options starting with --):\n"
        "  --benchmarks=LIST  in order (default %s);\n"
        "                     fillseq puts batches of %u keys; also: ycsb-a..ycsb-f\n"
        "                     (YCSB's core mixes: a 50/50 read/update, b 95/5,\n"
        "                     c read only, d read latest + 5%% inserts, e short\n"
        "                     scans + 5%% inserts, f read-modify-write)\n"
        "  --engines=LIST     dkv-direct,dkv-buffered,sqlite3,lmdb,rocksdb (default:\n"
        "                     all this build has: %s)\n"
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
        "  --distribution=uniform|zipfian   keys of the random phases (YCSB's\n"
        "                     scrambled zipfian, theta 0.99); default uniform, but\n"
        "                     zipfian for ycsb-* (ycsb-d: the latest keys)\n"
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
        "  --json=FILE, --csv=FILE   one record per engine, benchmark and threads\n"
        "  --plot=DIR         PNG charts with gnuplot: ops/s per workload, latency\n"
        "                     CDFs, the pool sweep (and their .dat files, plot.gp)\n"
        "  --sweep-pool       readrandom at budgets 1/16..2x the raw data, every\n"
        "                     engine (alone, unless --benchmarks is given too)\n"
        "  --repeat=N         run each timed phase and readseq N times, report the\n"
        "                     median run (default 1; readseq at least 3)\n"
        "  --mem-limit=SIZE   run each engine in a child process in a memory cgroup\n"
        "                     of SIZE (v2 or v1; needs root), page cache included;\n"
        "                     says so when it cannot be enforced\n"
        "  --no-progress      no progress line on stderr (default: one when stderr\n"
        "                     is a terminal)\n"
        "SIZE: bytes, or with K, M, G (binary: 64M = 64 MiB)\n",
        benchmarks_default, FILLSEQ_BATCH, built_engines(), NUM_DEFAULT, KEY_SIZE_DEFAULT,
        VALUE_SIZE_DEFAULT, POOL_DEFAULT >> 20, MEM_POOL_FACTOR, PAGE_SIZE_DEFAULT,
        DURATION_DEFAULT, WRITE_DURATION_DEFAULT);
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

    for (int b = 0; b < B_NAMED; b++) {
        if (strcmp(text, kv_bench_defs[b].name) == 0) {
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
        if (strcmp(text, kv_engine_names[e]) == 0) {
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
    if (bench_parse_size(text, &v) != 0 || v == 0 || v >= BENCH_THREADS_MAX)
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
    cfg->engine_count = 0;
    for (int e = 0; e < ENGINE_MAX; e++)
        if (kv_engine_built(e))
            cfg->engines[cfg->engine_count++] = e;
    cfg->db = "/tmp/dkv-bench-kv";
    cfg->seed = 1;
    cfg->io_engine = DKV_IO_AUTO;
    cfg->drop = geteuid() == 0 ? DROP_ALL : DROP_FILES;
    cfg->fio = BENCH_FIO_AUTO;
    cfg->cap_page_cache = 1;
    cfg->repeat = 1;
    cfg->progress = isatty(STDERR_FILENO);
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
    int bad = c != 'd' && c != 'W' && bench_parse_size(arg, &v) != 0;

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
    case 'R': bad |= v == 0 || v > REPEAT_MAX; cfg->repeat = (unsigned)v; break;
    case 'm': bad |= v < (8u << 20) || v > (1ull << 44); cfg->mem_limit = v; break;
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
        cfg->bench_set = 1;
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
        cfg->dist_set = 1;
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
        cfg->cap_set = 1;
        return 0;
    case 'g': cfg->plot_dir = arg; return arg[0] == '\0' ? -1 : 0;
    case 'S': cfg->sweep = 1; return 0;
    case 'q': cfg->progress = 0; return 0;
    case 'U': cfg->use_existing = 1; return 0;
    case 'F': cfg->fio = BENCH_FIO_ON; return 0;
    case 'N': cfg->fio = BENCH_FIO_OFF; return 0;
    default:
        return apply_number(cfg, c, arg);
    }
}

/* Explains a bad size (SIZE options): the form and the bounds. */
static void say_bad_size(int c, const char *arg)
{
    const char *what;

    switch (c) {
    case 'p': case 'M': case 'L': what = "1M..1T"; break;
    case 'm': what = "8M..16T"; break;
    default: return;
    }
    fprintf(stderr, "dkv-bench: bad size '%s': a number of bytes, or with K, M or G "
            "(KiB, MiB, GiB), %s\n", arg ? arg : "", what);
}

/* The option's name, for messages. */
static const char *option_name(const struct option *longopts, int c)
{
    for (; longopts->name != NULL; longopts++)
        if (longopts->val == c)
            return longopts->name;
    return "?";
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
    for (unsigned e = 0; e < cfg->engine_count; e++) {
        unsigned k = (unsigned)cfg->engines[e];     /* engine_item's: < ENGINE_MAX */
        if (k < ENGINE_MAX && !kv_engine_built((int)k)) {
            fprintf(stderr, "dkv-bench: this build has no %s (its development package "
                    "was not found when it was configured)\n", kv_engine_names[k]);
            return -1;
        }
    }
    if (cfg->mem_limit != 0 && cfg->pool >= cfg->mem_limit) {
        fprintf(stderr, "dkv-bench: --pool must be below --mem-limit (the process "
                "needs memory beside its cache)\n");
        return -1;
    }
    if (cfg->plot_dir != NULL && !kv_plot_available()) {
        fprintf(stderr, "dkv-bench: --plot needs gnuplot on PATH (Debian: gnuplot-nox)\n");
        return -1;
    }
    return 0;
}

/* Parses the command line; 0, 1 for --help, -1 for a bad one. */
int kv_parse_args(int argc, char **argv, struct kv_cfg *cfg)
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
        { "repeat",       required_argument, NULL, 'R' },
        { "mem-limit",    required_argument, NULL, 'm' },
        { "mem_limit",    required_argument, NULL, 'm' },
        { "plot",         required_argument, NULL, 'g' },
        { "sweep-pool",   no_argument,       NULL, 'S' },
        { "sweep_pool",   no_argument,       NULL, 'S' },
        { "no-progress",  no_argument,       NULL, 'q' },
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
            fprintf(stderr, "dkv-bench: bad value for --%s: '%s'\n",
                    option_name(longopts, c), optarg ? optarg : "");
            say_bad_size(c, optarg);
            return -1;
        }
    }
    /* --sweep-pool alone runs the sweep alone. */
    if (cfg->sweep && !cfg->bench_set)
        cfg->bench_count = 0;
    if (optind != argc) {
        fprintf(stderr, "dkv-bench: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    return check_cfg(cfg);
}

