/*
 * dkv.c - the `dkv` command: look into, change, dump, load, check and back
 * up a DirectKV database from the shell.  It uses only the public API
 * (include/dkv.h).  The commands, the escaping of binary keys and values
 * and the dump format are described in the project README ("The dkv
 * command") and by `dkv --help` / `dkv COMMAND --help`.
 *
 * Exit status: 0 success; 1 a key was not found, the database is missing
 * or damaged, or an operation failed; 2 a usage error.
 */
#include "dkv.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EXIT_NOTFOUND 1
#define EXIT_USAGE    2

#define DUMP_MAGIC        "DKVDUMP 1"
#define LOAD_BATCH_KEYS   1000u
#define LOAD_BATCH_BYTES  (4u << 20)
#define LOAD_ALONE_BYTES  (1u << 20)       /* a longer record is put alone */

enum fmt { FMT_ESCAPE, FMT_HEX, FMT_RAW };

/* Options before the command: how the database is opened. */
struct global {
    dkv_options opts;
};

/* One command: its name, arguments, what it does. */
struct command {
    const char *name;
    const char *args;
    const char *help;
    int (*run)(struct global *g, int argc, char **argv);
};

static const struct command *current;

/* ---- messages ------------------------------------------------------------------ */

static int fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(int status, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "dkv%s%s: ", current ? " " : "", current ? current->name : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return status;
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "dkv%s%s: ", current ? " " : "", current ? current->name : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'dkv %s%s--help'.\n", current ? current->name : "",
            current ? " " : "");
    return EXIT_USAGE;
}

/* getopt found an option it does not know, or one without its value
   (opterr is 0: this is the only message). */
static int bad_option(char **argv)
{
    const char *arg = optind > 0 ? argv[optind - 1] : "?";

    if (optopt != 0 && arg[0] == '-' && arg[1] != '-')
        return usage_error("unknown option '-%c' or a missing value", optopt);
    return usage_error("unknown option '%s' or a missing value", arg);
}

/* A library error: DKV_NOTFOUND and every error exit 1; a damaged file
   names its page. */
static int lib_error(int rc, const char *what)
{
    uint64_t page;
    const char *why;

    if (rc == DKV_ERR_CORRUPT && dkv_last_corruption(&page, &why) == DKV_OK)
        return fail(1, "%s: %s (page %" PRIu64 ": %s)", what, dkv_strerror(rc),
                    page, why);
    return fail(1, "%s: %s", what, dkv_strerror(rc));
}

/* ---- bytes on the command line and on output ------------------------------------- */

struct bytes {
    unsigned char *p;
    size_t len;
};

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes n hex digits at s into out (n/2 bytes); 0, or -1 when s is not
   hex of even length. */
static int unhex(const char *s, size_t n, unsigned char *out)
{
    size_t i;

    if (n % 2 != 0)
        return -1;
    for (i = 0; i < n; i += 2) {
        int hi = hexval((unsigned char)s[i]), lo = hexval((unsigned char)s[i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i / 2] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

/* An argument as bytes: as written, or hex-decoded with --hex. */
static int arg_bytes(const char *arg, int hex, const char *name, struct bytes *b)
{
    size_t n = strlen(arg);

    b->p = malloc(n / 2 + n + 1);
    if (b->p == NULL)
        return fail(1, "out of memory");
    if (!hex) {
        memcpy(b->p, arg, n);
        b->len = n;
        return 0;
    }
    if (unhex(arg, n, b->p) != 0)
        return usage_error("%s '%s' is not hex (an even number of 0-9a-f)", name, arg);
    b->len = n / 2;
    return 0;
}

static void put_hex(FILE *out, const void *data, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *p = data;
    size_t i;

    for (i = 0; i < len; i++) {
        putc(digits[p[i] >> 4], out);
        putc(digits[p[i] & 15], out);
    }
}

/* Printable ASCII as itself, a backslash doubled, every other byte \xNN:
   unambiguous, one line, and safe on a terminal. */
static void put_escaped(FILE *out, const void *data, size_t len)
{
    const unsigned char *p = data;
    size_t i;

    for (i = 0; i < len; i++) {
        if (p[i] == '\\')
            fputs("\\\\", out);
        else if (p[i] >= 0x20 && p[i] < 0x7f)
            putc(p[i], out);
        else
            fprintf(out, "\\x%02x", p[i]);
    }
}

static void put_bytes(FILE *out, const void *data, size_t len, int fmt)
{
    if (fmt == FMT_HEX)
        put_hex(out, data, len);
    else if (fmt == FMT_RAW)
        fwrite(data, 1, len, out);
    else
        put_escaped(out, data, len);
}

static int parse_format(const char *s, int raw_ok, int *fmt)
{
    if (strcmp(s, "escape") == 0)
        *fmt = FMT_ESCAPE;
    else if (strcmp(s, "hex") == 0)
        *fmt = FMT_HEX;
    else if (raw_ok && strcmp(s, "raw") == 0)
        *fmt = FMT_RAW;
    else
        return usage_error("unknown format '%s' (escape, hex%s)", s, raw_ok ? ", raw" : "");
    return 0;
}

static int parse_size(const char *s, size_t *out)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || end == s)
        return -1;
    switch (*end) {
    case 'k': case 'K': v <<= 10; end++; break;
    case 'm': case 'M': v <<= 20; end++; break;
    case 'g': case 'G': v <<= 30; end++; break;
    default: break;
    }
    if (*end != '\0')
        return -1;
    *out = (size_t)v;
    return 0;
}

/* ---- opening ---------------------------------------------------------------------- */

static int db_exists(const char *dir)
{
    char path[4096];
    struct stat st;

    snprintf(path, sizeof(path), "%s/data.dkv", dir);
    return stat(path, &st) == 0;
}

/* Opens the database in dir; create: make it when missing. */
static int open_db(struct global *g, const char *dir, int create, dkv_db **db)
{
    dkv_options o = g->opts;
    int rc;

    if (!create && !db_exists(dir))
        return fail(1, "no database at '%s' (no data.dkv there)", dir);
    o.create_if_missing = create;
    rc = dkv_open(dir, &o, db);
    if (rc == DKV_ERR_BUSY)
        return fail(1, "'%s' is open in another process", dir);
    if (rc != DKV_OK) {
        char what[4200];
        snprintf(what, sizeof(what), "cannot open '%s'", dir);
        return lib_error(rc, what);
    }
    return 0;
}

static int close_db(dkv_db *db, int status)
{
    int rc = dkv_close(db);

    if (rc != DKV_OK && status == 0)
        return lib_error(rc, "closing the database");
    return status;
}

/* ---- per-command option parsing ------------------------------------------------- */

static void command_help(const struct command *c)
{
    printf("Usage: dkv [GLOBAL OPTIONS] %s %s\n\n%s", c->name, c->args, c->help);
}

/* Parses options of the current command; returns -1 at the end, the
   option otherwise, or 'h' after printing --help (the caller exits 0). */
static int next_opt(int argc, char **argv, const char *shorts,
                    const struct option *longs)
{
    int c = getopt_long(argc, argv, shorts, longs, NULL);

    if (c == 'h')
        command_help(current);
    return c;
}

static int want_args(int argc, int optind_, int min, int max)
{
    int n = argc - optind_;

    if (n < min)
        return usage_error("missing argument (expected %s)", current->args);
    if (n > max)
        return usage_error("too many arguments (expected %s)", current->args);
    return 0;
}

/* ---- put, get, del ------------------------------------------------------------ */

static int read_all(FILE *in, struct bytes *b)
{
    size_t cap = 1 << 16;

    b->len = 0;
    b->p = malloc(cap);
    while (b->p != NULL) {
        size_t n = fread(b->p + b->len, 1, cap - b->len, in);
        b->len += n;
        if (n == 0)
            break;
        if (b->len == cap) {
            unsigned char *grown = realloc(b->p, cap * 2);
            if (grown == NULL) {
                free(b->p);
                b->p = NULL;
            }
            b->p = grown;
            cap *= 2;
        }
    }
    if (b->p == NULL)
        return fail(1, "out of memory");
    return ferror(in) ? fail(1, "reading the value: %s", strerror(errno)) : 0;
}

static const struct option key_opts[] = {
    { "hex", no_argument, NULL, 'x' }, { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 }
};

/* The options of put and del (--hex, --help): -1 to go on, else the exit
   status (0 after --help, 2 for a bad option). */
static int key_options(int argc, char **argv, int *hex)
{
    int c;

    while ((c = next_opt(argc, argv, "xh", key_opts)) != -1) {
        if (c == 'h')
            return 0;
        if (c != 'x')
            return bad_option(argv);
        *hex = 1;
    }
    return -1;
}

static int cmd_put(struct global *g, int argc, char **argv)
{
    struct bytes k = { 0 }, v = { 0 };
    int hex = 0, st;
    dkv_db *db;

    if ((st = key_options(argc, argv, &hex)) >= 0)
        return st;
    if ((st = want_args(argc, optind, 3, 3)) != 0)
        return st;
    st = arg_bytes(argv[optind + 1], hex, "KEY", &k);
    if (st == 0 && strcmp(argv[optind + 2], "-") == 0)
        st = read_all(stdin, &v);
    else if (st == 0)
        st = arg_bytes(argv[optind + 2], hex, "VALUE", &v);
    if (st == 0 && (k.len == 0 || k.len > DKV_KEY_MAX))
        st = usage_error("a key is 1 to %u bytes (this one: %zu)", DKV_KEY_MAX, k.len);
    if (st == 0 && v.len > DKV_VALUE_MAX)
        st = usage_error("a value is at most %u bytes (this one: %zu)", DKV_VALUE_MAX,
                         v.len);
    if (st == 0 && (st = open_db(g, argv[optind], 1, &db)) == 0) {
        int rc = dkv_put(db, k.p, k.len, v.p, v.len);
        if (rc == DKV_ERR_INVALID && v.len > g->opts.pool_size / 4)
            st = fail(1, "put: a value's pages must fit in half the buffer pool; "
                      "give a larger --pool-size (this value: %zu bytes)", v.len);
        else
            st = rc == DKV_OK ? 0 : lib_error(rc, "put");
        st = close_db(db, st);
    }
    free(k.p);
    free(v.p);
    return st;
}

static const struct option get_opts[] = {
    { "hex", no_argument, NULL, 'x' }, { "format", required_argument, NULL, 'f' },
    { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 }
};

static int cmd_get(struct global *g, int argc, char **argv)
{
    struct bytes k = { 0 };
    int hex = 0, fmt = FMT_ESCAPE, c, st;
    dkv_db *db;

    while ((c = next_opt(argc, argv, "xf:h", get_opts)) != -1) {
        switch (c) {
        case 'h': return 0;
        case 'x': hex = 1; break;
        case 'f':
            if (parse_format(optarg, 1, &fmt) != 0)
                return EXIT_USAGE;
            break;
        default: return bad_option(argv);
        }
    }
    if ((st = want_args(argc, optind, 2, 2)) != 0)
        return st;
    if ((st = arg_bytes(argv[optind + 1], hex, "KEY", &k)) != 0)
        return st;
    if ((st = open_db(g, argv[optind], 0, &db)) == 0) {
        size_t len = 0, cap = 4096;
        unsigned char *buf = malloc(cap);
        int rc = buf ? dkv_get(db, k.p, k.len, buf, cap, &len) : DKV_ERR_NOMEM;
        if (rc == DKV_OK && len > cap) {
            unsigned char *grown = realloc(buf, len);
            rc = grown ? DKV_OK : DKV_ERR_NOMEM;
            buf = grown ? grown : buf;
            if (rc == DKV_OK)
                rc = dkv_get(db, k.p, k.len, buf, len, &len);
        }
        if (rc == DKV_OK) {
            put_bytes(stdout, buf, len, fmt);
            if (fmt != FMT_RAW)
                putchar('\n');
        }
        st = rc == DKV_OK ? 0 : rc == DKV_NOTFOUND ? fail(EXIT_NOTFOUND, "key not found")
                                                   : lib_error(rc, "get");
        free(buf);
        st = close_db(db, st);
    }
    free(k.p);
    return st;
}

static int cmd_del(struct global *g, int argc, char **argv)
{
    struct bytes k = { 0 };
    int hex = 0, st;
    dkv_db *db;

    if ((st = key_options(argc, argv, &hex)) >= 0)
        return st;
    if ((st = want_args(argc, optind, 2, 2)) != 0)
        return st;
    if ((st = arg_bytes(argv[optind + 1], hex, "KEY", &k)) != 0)
        return st;
    if ((st = open_db(g, argv[optind], 0, &db)) == 0) {
        int rc = dkv_delete(db, k.p, k.len);
        st = rc == DKV_OK ? 0 : rc == DKV_NOTFOUND ? fail(EXIT_NOTFOUND, "key not found")
                                                   : lib_error(rc, "delete");
        st = close_db(db, st);
    }
    free(k.p);
    return st;
}

/* ---- scan --------------------------------------------------------------------------- */

struct scan_args {
    struct bytes prefix, from, to;
    int have_prefix, have_from, have_to, keys_only, fmt;
    unsigned long long limit;               /* 0: no limit */
};

static int key_before(const void *a, size_t alen, const struct bytes *b)
{
    size_t n = alen < b->len ? alen : b->len;
    int c = memcmp(a, b->p, n);

    return c < 0 || (c == 0 && alen < b->len);
}

static int scan_run(dkv_db *db, const struct scan_args *a)
{
    const struct bytes *start = a->have_from ? &a->from : a->have_prefix ? &a->prefix : NULL;
    unsigned long long n = 0;
    dkv_iter *it;
    int rc = dkv_iter_new(db, &it);

    if (rc != DKV_OK)
        return lib_error(rc, "scan");
    /* --from below the prefix starts at the prefix. */
    if (a->have_from && a->have_prefix && key_before(a->from.p, a->from.len, &a->prefix))
        start = &a->prefix;
    rc = dkv_iter_seek(it, start ? start->p : NULL, start ? start->len : 0);
    while (rc == DKV_OK && dkv_iter_valid(it) && (a->limit == 0 || n < a->limit)) {
        size_t kl, vl;
        const void *k = dkv_iter_key(it, &kl), *v = dkv_iter_value(it, &vl);
        if (a->have_to && !key_before(k, kl, &a->to))
            break;
        if (a->have_prefix && (kl < a->prefix.len || memcmp(k, a->prefix.p, a->prefix.len)))
            break;
        put_bytes(stdout, k, kl, a->fmt);
        if (!a->keys_only) {
            putchar('\t');
            put_bytes(stdout, v, vl, a->fmt);
        }
        putchar('\n');
        n++;
        rc = dkv_iter_next(it);
    }
    dkv_iter_free(it);
    return rc == DKV_OK ? 0 : lib_error(rc, "scan");
}

static const struct option scan_opts[] = {
    { "hex", no_argument, NULL, 'x' }, { "prefix", required_argument, NULL, 'p' },
    { "from", required_argument, NULL, 'F' }, { "to", required_argument, NULL, 'T' },
    { "limit", required_argument, NULL, 'n' }, { "format", required_argument, NULL, 'f' },
    { "keys-only", no_argument, NULL, 'k' }, { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 }
};

static int cmd_scan(struct global *g, int argc, char **argv)
{
    struct scan_args a = { .fmt = FMT_ESCAPE };
    const char *prefix = NULL, *from = NULL, *to = NULL;
    int hex = 0, c, st = 0;
    dkv_db *db;
    char *end;

    while ((c = next_opt(argc, argv, "xp:F:T:n:f:kh", scan_opts)) != -1) {
        switch (c) {
        case 'h': return 0;
        case 'x': hex = 1; break;
        case 'p': prefix = optarg; break;
        case 'F': from = optarg; break;
        case 'T': to = optarg; break;
        case 'k': a.keys_only = 1; break;
        case 'f':
            if (parse_format(optarg, 0, &a.fmt) != 0)
                return EXIT_USAGE;
            break;
        case 'n':
            errno = 0;
            a.limit = strtoull(optarg, &end, 10);
            if (errno || end == optarg || *end || optarg[0] == '-' || a.limit == 0)
                return usage_error("--limit wants a positive number, not '%s'", optarg);
            break;
        default: return bad_option(argv);
        }
    }
    if ((st = want_args(argc, optind, 1, 1)) != 0)
        return st;
    if (prefix && (st = arg_bytes(prefix, hex, "--prefix", &a.prefix)) == 0)
        a.have_prefix = 1;
    if (st == 0 && from && (st = arg_bytes(from, hex, "--from", &a.from)) == 0)
        a.have_from = 1;
    if (st == 0 && to && (st = arg_bytes(to, hex, "--to", &a.to)) == 0)
        a.have_to = 1;
    if (st == 0 && (st = open_db(g, argv[optind], 0, &db)) == 0) {
        st = scan_run(db, &a);
        st = close_db(db, st);
    }
    free(a.prefix.p);
    free(a.from.p);
    free(a.to.p);
    return st;
}

/* ---- dump and load ------------------------------------------------------------------ */

static FILE *open_stream(const char *path, const char *mode, FILE *dflt)
{
    if (path == NULL || strcmp(path, "-") == 0)
        return dflt;
    return fopen(path, mode);
}

static const struct option help_only[] = {
    { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 }
};

static int only_help(int argc, char **argv)
{
    int c;

    while ((c = next_opt(argc, argv, "h", help_only)) != -1)
        return c == 'h' ? -1 : bad_option(argv);
    return 0;
}

static int cmd_dump(struct global *g, int argc, char **argv)
{
    unsigned long long n = 0;
    dkv_iter *it = NULL;
    dkv_db *db;
    FILE *out;
    int st, rc;

    if ((st = only_help(argc, argv)) != 0)
        return st < 0 ? 0 : st;
    if ((st = want_args(argc, optind, 1, 2)) != 0)
        return st;
    if ((st = open_db(g, argv[optind], 0, &db)) != 0)
        return st;
    out = open_stream(argv[optind + 1], "w", stdout);
    if (out == NULL)
        return close_db(db, fail(1, "cannot create '%s': %s", argv[optind + 1],
                                 strerror(errno)));
    fprintf(out, "%s\n", DUMP_MAGIC);
    rc = dkv_iter_new(db, &it);
    if (rc == DKV_OK)
        rc = dkv_iter_seek(it, NULL, 0);
    while (rc == DKV_OK && dkv_iter_valid(it)) {
        size_t kl, vl;
        const void *k = dkv_iter_key(it, &kl), *v = dkv_iter_value(it, &vl);
        put_hex(out, k, kl);
        putc(' ', out);
        put_hex(out, v, vl);
        putc('\n', out);
        n++;
        rc = dkv_iter_next(it);
    }
    dkv_iter_free(it);
    if (rc == DKV_OK)
        fprintf(out, "END %llu\n", n);
    st = rc == DKV_OK ? 0 : lib_error(rc, "dump");
    if ((out != stdout ? fclose(out) : fflush(out)) != 0 && st == 0)
        st = fail(1, "writing the dump: %s", strerror(errno));
    return close_db(db, st);
}

struct loader {
    dkv_db    *db;
    dkv_batch *batch;
    size_t     batch_keys, batch_bytes;
    size_t     keys_max, bytes_max;         /* a batch's size (fits the pool) */
    unsigned long long records, bytes;
    int        progress;                    /* stderr is a terminal        */
    time_t     shown;
};

static int load_flush(struct loader *l)
{
    int rc = DKV_OK;

    if (l->batch_keys > 0)
        rc = dkv_write(l->db, l->batch);
    dkv_batch_clear(l->batch);
    l->batch_keys = l->batch_bytes = 0;
    if (l->progress && time(NULL) != l->shown) {
        l->shown = time(NULL);
        fprintf(stderr, "\rdkv load: %llu records, %.1f MiB", l->records,
                (double)l->bytes / (1 << 20));
    }
    return rc;
}

static int load_record(struct loader *l, const unsigned char *k, size_t kl,
                       const unsigned char *v, size_t vl)
{
    int rc;

    l->records++;
    l->bytes += kl + vl;
    if (kl + vl >= LOAD_ALONE_BYTES || kl + vl >= l->bytes_max) {   /* a write of its own */
        rc = load_flush(l);
        return rc == DKV_OK ? dkv_put(l->db, k, kl, v, vl) : rc;
    }
    rc = dkv_batch_put(l->batch, k, kl, v, vl);
    l->batch_keys++;
    l->batch_bytes += kl + vl;
    if (rc == DKV_OK && (l->batch_keys >= l->keys_max ||
                         l->batch_bytes >= l->bytes_max))
        rc = load_flush(l);
    return rc;
}

/* Parses one record line ("<hex key> <hex value>") in place. */
static int parse_record(char *line, size_t len, unsigned char **k, size_t *kl,
                        unsigned char **v, size_t *vl)
{
    char *sp = memchr(line, ' ', len);
    size_t hk, hv;

    if (sp == NULL)
        return -1;
    hk = (size_t)(sp - line);
    hv = len - hk - 1;
    if (hk == 0 || unhex(line, hk, (unsigned char *)line) != 0 ||
        unhex(sp + 1, hv, (unsigned char *)sp + 1) != 0)
        return -1;
    *k = (unsigned char *)line;
    *kl = hk / 2;
    *v = (unsigned char *)sp + 1;
    *vl = hv / 2;
    return 0;
}

static int load_stream(struct loader *l, FILE *in, const char *name)
{
    unsigned long long lineno = 1, end_count = 0;
    char *line = NULL, *endp;
    size_t cap = 0;
    ssize_t len;
    int rc = DKV_OK, ended = 0, st = 0;

    len = getline(&line, &cap, in);
    if (len < 0 || strncmp(line, DUMP_MAGIC, strlen(DUMP_MAGIC)) != 0 ||
        (line[strlen(DUMP_MAGIC)] != '\n' && line[strlen(DUMP_MAGIC)] != '\0'))
        st = fail(1, "%s: not a dkv dump (the first line must be '%s')", name, DUMP_MAGIC);
    while (st == 0 && rc == DKV_OK && (len = getline(&line, &cap, in)) >= 0) {
        unsigned char *k, *v;
        size_t kl, vl;
        lineno++;
        if (len > 0 && line[len - 1] == '\n')
            line[--len] = '\0';
        if (ended)
            st = fail(1, "%s:%llu: data after the END line", name, lineno);
        else if (strncmp(line, "END ", 4) == 0) {
            end_count = strtoull(line + 4, &endp, 10);
            ended = 1;
            if (*endp != '\0' || end_count != l->records)
                st = fail(1, "%s:%llu: the END line says %s records, %llu were read",
                          name, lineno, line + 4, l->records);
        } else if (parse_record(line, (size_t)len, &k, &kl, &v, &vl) != 0)
            st = fail(1, "%s:%llu: not a record (hex key, a space, hex value)", name,
                      lineno);
        else if (kl > DKV_KEY_MAX || vl > DKV_VALUE_MAX)
            st = fail(1, "%s:%llu: a key or value over the limits", name, lineno);
        else
            rc = load_record(l, k, kl, v, vl);
    }
    free(line);
    if (st == 0 && rc == DKV_OK)
        rc = load_flush(l);
    if (l->progress)
        fputc('\n', stderr);
    if (st == 0 && rc != DKV_OK)
        st = lib_error(rc, "load");
    if (st == 0 && ferror(in))
        st = fail(1, "%s: %s", name, strerror(errno));
    if (st == 0 && !ended)
        st = fail(1, "%s: the dump is cut short (no END line after %llu records; "
                  "those were loaded)", name, l->records);
    return st;
}

static int cmd_load(struct global *g, int argc, char **argv)
{
    struct loader l = { .progress = isatty(2) };
    const char *name;
    FILE *in;
    int st;

    if ((st = only_help(argc, argv)) != 0)
        return st < 0 ? 0 : st;
    if ((st = want_args(argc, optind, 1, 2)) != 0)
        return st;
    name = argv[optind + 1] ? argv[optind + 1] : "-";
    in = open_stream(argv[optind + 1], "r", stdin);
    if (in == NULL)
        return fail(1, "cannot open '%s': %s", name, strerror(errno));
    l.batch = dkv_batch_new();
    if (l.batch == NULL)
        st = fail(1, "out of memory");
    if (st == 0 && (st = open_db(g, argv[optind], 1, &l.db)) == 0) {
        dkv_stats s;
        /* A batch's pages stay in the pool until it ends: keep batches
           well inside half of it (dkv.h, dkv_write). */
        dkv_stats_get(l.db, &s);
        l.keys_max = s.pool_pages / 8 < LOAD_BATCH_KEYS ? s.pool_pages / 8 : LOAD_BATCH_KEYS;
        l.keys_max = l.keys_max < 16 ? 16 : l.keys_max;
        l.bytes_max = g->opts.pool_size / 32 < LOAD_BATCH_BYTES ? g->opts.pool_size / 32
                                                                : LOAD_BATCH_BYTES;
        st = load_stream(&l, in, name);
        st = close_db(l.db, st);
    }
    if (st == 0)
        fprintf(stderr, "dkv load: %llu records loaded\n", l.records);
    dkv_batch_free(l.batch);
    if (in != stdin)
        fclose(in);
    return st;
}

/* ---- stat, check, checkpoint, backup ------------------------------------------------- */

static void print_check_info(const dkv_check_info *ci)
{
    printf("--------------------\nFILE AND B+TREE\n--------------------\n");
    printf("Page size                 %" PRIu32 "\n", ci->page_size);
    printf("Data file pages           %" PRIu64 " (%.1f MiB)\n", ci->file_pages,
           (double)ci->file_pages * ci->page_size / (1 << 20));
    printf("Pages in use or free      %" PRIu64 "\n", ci->page_count);
    printf("Free pages                %" PRIu64 "\n", ci->free_pages);
    printf("Leaf pages                %" PRIu64 "\n", ci->leaf_pages);
    printf("Inner pages               %" PRIu64 "\n", ci->inner_pages);
    printf("Overflow pages            %" PRIu64 "\n", ci->overflow_pages);
    printf("Keys                      %" PRIu64 "\n", ci->keys);
    printf("Tree height               %u\n", ci->height);
    printf("Leaf fill factor          %.1f%%\n", 100.0 * ci->leaf_fill);
    printf("Inner fill factor         %.1f%%\n", 100.0 * ci->inner_fill);
}

static void print_stats(const dkv_stats *s)
{
    uint64_t lookups = s->hits + s->misses;

    printf("--------------------\nBUFFER POOL\n--------------------\n");
    printf("Pool size (pages)         %" PRIu64 "\n", s->pool_pages);
    printf("Pages in the pool         %" PRIu64 "\n", s->pool_used);
    printf("Dirty pages               %" PRIu64 "\n", s->dirty_pages);
    printf("Hits / misses             %" PRIu64 " / %" PRIu64 " (hit rate %.1f%%)\n",
           s->hits, s->misses, lookups ? 100.0 * s->hits / lookups : 0.0);
    printf("Evictions                 %" PRIu64 "\n", s->evictions);
    printf("Pages read / written      %" PRIu64 " / %" PRIu64 "\n", s->pages_read,
           s->pages_written);
    printf("I/O engine                %s, %s\n", s->io_engine ? s->io_engine : "?",
           s->direct ? "O_DIRECT" : "buffered (page cache)");
    printf("--------------------\nLOG\n--------------------\n");
    printf("Log sequence number       %" PRIu64 "\n", s->log_lsn);
    printf("Last checkpoint at        %" PRIu64 "\n", s->log_checkpoint_lsn);
    printf("Log capacity              %" PRIu64 " (%.1f%% in use)\n", s->log_capacity,
           s->log_capacity && s->log_lsn > s->log_checkpoint_lsn
               ? 100.0 * (double)(s->log_lsn - s->log_checkpoint_lsn) /
                 (double)s->log_capacity : 0.0);
    printf("Log bytes written         %" PRIu64 "\n", s->wal_bytes);
    printf("Log syncs                 %" PRIu64 "\n", s->wal_syncs);
    printf("Checkpoints               %" PRIu64 "\n", s->checkpoints);
}

static int cmd_stat(struct global *g, int argc, char **argv)
{
    dkv_check_info ci;
    dkv_stats s;
    dkv_db *db;
    int st, rc;

    if ((st = only_help(argc, argv)) != 0)
        return st < 0 ? 0 : st;
    if ((st = want_args(argc, optind, 1, 1)) != 0)
        return st;
    if ((st = open_db(g, argv[optind], 0, &db)) != 0)
        return st;
    /* The page walk first, so the pool counters include it. */
    rc = dkv_check(db, &ci);
    if (dkv_stats_get(db, &s) == DKV_OK)
        print_stats(&s);
    print_check_info(&ci);
    if (rc == DKV_ERR_CORRUPT)
        st = fail(1, "damaged: page %" PRIu64 ": %s", ci.bad_page, ci.problem);
    else if (rc != DKV_OK)
        st = lib_error(rc, "reading the pages");
    return close_db(db, st);
}

static int cmd_check(struct global *g, int argc, char **argv)
{
    dkv_check_info ci;
    dkv_db *db;
    int st, rc;

    if ((st = only_help(argc, argv)) != 0)
        return st < 0 ? 0 : st;
    if ((st = want_args(argc, optind, 1, 1)) != 0)
        return st;
    if ((st = open_db(g, argv[optind], 0, &db)) != 0)
        return st;
    rc = dkv_check(db, &ci);
    if (rc == DKV_OK)
        printf("ok: %" PRIu64 " keys, %" PRIu64 " pages (%" PRIu64 " leaf, %" PRIu64
               " inner, %" PRIu64 " overflow, %" PRIu64 " free), tree height %u\n",
               ci.keys, ci.page_count, ci.leaf_pages, ci.inner_pages,
               ci.overflow_pages, ci.free_pages, ci.height);
    else if (rc == DKV_ERR_CORRUPT)
        st = fail(1, "damaged page %" PRIu64 ": %s", ci.bad_page, ci.problem);
    else
        st = lib_error(rc, "check");
    return close_db(db, st);
}

static int cmd_checkpoint(struct global *g, int argc, char **argv)
{
    dkv_db *db;
    int st, rc;

    if ((st = only_help(argc, argv)) != 0)
        return st < 0 ? 0 : st;
    if ((st = want_args(argc, optind, 1, 1)) != 0)
        return st;
    if ((st = open_db(g, argv[optind], 0, &db)) != 0)
        return st;
    rc = dkv_checkpoint(db);
    st = rc == DKV_OK ? 0 : lib_error(rc, "checkpoint");
    return close_db(db, st);
}

static int cmd_backup(struct global *g, int argc, char **argv)
{
    dkv_db *db;
    int st, rc;

    if ((st = only_help(argc, argv)) != 0)
        return st < 0 ? 0 : st;
    if ((st = want_args(argc, optind, 2, 2)) != 0)
        return st;
    if (db_exists(argv[optind + 1]))
        return fail(1, "'%s' already holds a database; a backup never overwrites one",
                    argv[optind + 1]);
    if ((st = open_db(g, argv[optind], 0, &db)) != 0)
        return st;
    rc = dkv_backup(db, argv[optind + 1]);
    if (rc == DKV_OK)
        printf("backup of '%s' written to '%s'\n", argv[optind], argv[optind + 1]);
    st = rc == DKV_OK ? 0 : lib_error(rc, "backup");
    return close_db(db, st);
}

/* ---- the command table and main ------------------------------------------------------ */

static const struct command commands[] = {
    { "put", "[--hex] DB KEY VALUE",
      "Stores VALUE under KEY, creating the database when missing.  VALUE '-'\n"
      "reads the value from standard input (any bytes).\n"
      "  -x, --hex     KEY and VALUE are given in hex (binary keys and values)\n",
      cmd_put },
    { "get", "[--hex] [--format=escape|hex|raw] DB KEY",
      "Prints the value stored under KEY; exit status 1 when there is none.\n"
      "  -x, --hex         KEY is given in hex\n"
      "  -f, --format=F    escape (default: printable ASCII as is, '\\\\' doubled,\n"
      "                    other bytes \\xNN, then a newline), hex (then a newline),\n"
      "                    raw (the bytes exactly, no newline)\n",
      cmd_get },
    { "del", "[--hex] DB KEY",
      "Deletes KEY; exit status 1 when it was not there.\n"
      "  -x, --hex     KEY is given in hex\n",
      cmd_del },
    { "scan", "[OPTIONS] DB",
      "Prints keys and values in key order, one pair a line: key, a tab, value.\n"
      "  -p, --prefix=P    only keys that start with P\n"
      "  -F, --from=K      start at the first key >= K\n"
      "  -T, --to=K        stop before the first key >= K\n"
      "  -n, --limit=N     print at most N pairs\n"
      "  -k, --keys-only   print only the keys\n"
      "  -f, --format=F    escape (default; see 'dkv get --help') or hex\n"
      "  -x, --hex         P, K are given in hex\n",
      cmd_scan },
    { "dump", "DB [FILE]",
      "Writes every key and value to FILE (default: standard output) as text\n"
      "that 'dkv load' reads back, whatever bytes they hold:\n"
      "  DKVDUMP 1                       the header line\n"
      "  <hex key> <hex value>           one record a line, lowercase hex,\n"
      "                                  one space (an empty value: nothing after it)\n"
      "  END <count>                     the number of records: a cut dump is seen\n",
      cmd_dump },
    { "load", "DB [FILE]",
      "Reads a dump from FILE (default: standard input) and stores its records\n"
      "in batches of up to 1000 (dkv_write; fewer with a small pool), creating\n"
      "the database when missing.\n"
      "Shows its progress on standard error when that is a terminal.  A bad or\n"
      "cut dump stops the load (exit status 1); the batches before it stay.\n",
      cmd_load },
    { "stat", "DB",
      "Prints the buffer pool and log counters, the page counts by kind, free\n"
      "pages, fill factors and the tree height (it reads every page, as check).\n",
      cmd_stat },
    { "check", "DB",
      "Reads every page and checks checksums, page numbers, node structure and\n"
      "key order, the free list, and that every page is reachable exactly once.\n"
      "Exit status 1 and the damaged page's number when something is wrong.\n",
      cmd_check },
    { "checkpoint", "DB",
      "Writes every dirty page and advances the checkpoint (recovery then\n"
      "starts later in the log).\n",
      cmd_checkpoint },
    { "backup", "DB DEST",
      "Writes a consistent copy of DB into the directory DEST (created when\n"
      "missing; it must not hold a database).  Through the API (dkv_backup) the\n"
      "same copy can be taken while the database keeps serving writes.\n",
      cmd_backup },
};

#define COMMAND_COUNT (sizeof(commands) / sizeof(commands[0]))

static void main_help(void)
{
    size_t i;

    printf("Usage: dkv [GLOBAL OPTIONS] COMMAND [OPTIONS] DB [ARGS]\n\n"
           "Looks into and changes a DirectKV database (a directory).\n\n"
           "Commands:\n");
    for (i = 0; i < COMMAND_COUNT; i++)
        printf("  %-11s %s\n", commands[i].name, commands[i].args);
    printf("\nGlobal options:\n"
           "  -P, --pool-size=SIZE   buffer pool bytes (K, M, G suffixes; default 128M)\n"
           "  -i, --io=ENGINE        auto (default), io_uring, libaio or psync\n"
           "  -b, --buffered         page-cache I/O instead of O_DIRECT\n"
           "  -h, --help             this help; 'dkv COMMAND --help' for a command\n"
           "\nExit status: 0 success, 1 not found, missing or damaged database or a\n"
           "failed operation, 2 usage error.\n");
}

static int parse_global(struct global *g, int argc, char **argv)
{
    static const struct option longs[] = {
        { "pool-size", required_argument, NULL, 'P' }, { "io", required_argument, NULL, 'i' },
        { "buffered", no_argument, NULL, 'b' }, { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    int c, e;

    while ((c = getopt_long(argc, argv, "+P:i:bh", longs, NULL)) != -1) {
        switch (c) {
        case 'P':
            if (parse_size(optarg, &g->opts.pool_size) != 0 || g->opts.pool_size == 0)
                return usage_error("--pool-size wants a size like 64M, not '%s'", optarg);
            break;
        case 'i':
            for (e = DKV_IO_AUTO; e <= DKV_IO_PSYNC; e++)
                if (strcmp(optarg, dkv_io_engine_name(e)) == 0)
                    break;
            if (e > DKV_IO_PSYNC)
                return usage_error("unknown I/O engine '%s' (auto, io_uring, libaio, "
                                   "psync)", optarg);
            g->opts.io_engine = e;
            break;
        case 'b': g->opts.direct = 0; break;
        case 'h': main_help(); return -1;
        default: return bad_option(argv);
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct global g;
    size_t i;
    int st;

    dkv_options_init(&g.opts);
    opterr = 0;
    st = parse_global(&g, argc, argv);
    if (st != 0)
        return st < 0 ? 0 : st;
    if (optind >= argc)
        return usage_error("no command given (put, get, del, scan, dump, load, stat, "
                           "check, checkpoint, backup)");
    for (i = 0; i < COMMAND_COUNT; i++) {
        if (strcmp(argv[optind], commands[i].name) == 0) {
            int sub_argc = argc - optind;
            char **sub_argv = argv + optind;
            current = &commands[i];
            optind = 0;                 /* getopt starts again on the command */
            return current->run(&g, sub_argc, sub_argv);
        }
    }
    return usage_error("unknown command '%s'", argv[optind]);
}
