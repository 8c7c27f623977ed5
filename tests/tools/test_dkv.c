/*
 * test_dkv.c - the `dkv` command, run as a separate process (its path is
 * the first argument) against databases this test makes and damages
 * through the library.
 *
 * Each test runs the command with its output and error output captured in
 * files and checks the exit status (0 success, 1 not found / missing /
 * damaged, 2 usage) and the text a user would read: every subcommand and
 * its --help, scans with each option, a dump/load round trip of binary
 * keys and values (zero bytes, a 1024-byte key, an empty and a 3 MiB
 * value), bad dumps, and damage `dkv check` must find and name: a byte
 * flipped in a leaf, a free list whose link points into the tree, keys out
 * of order across leaves.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "test_util.h"

#include "engine/node.h"
#include "pager/page_format.h"
#include "pager/pager.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>

static const char *dkv_path;

struct run {
    int  status;
    char *out, *err;             /* captured, NUL-terminated */
    size_t out_len;
};

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;

    if (f == NULL)
        return strdup("");
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    if (len)
        *len = (size_t)n;
    return buf;
}

/* Runs dkv with the NULL-terminated args, stdin from in_path (NULL:
   /dev/null); its output goes through files in dir. */
static void run_dkv_v(struct run *r, const struct test_dir *dir, const char *in_path,
                      const char *const *args)
{
    char out_path[256], err_path[256];
    const char *argv[32];
    int n = 0, st;
    pid_t pid;

    argv[n++] = dkv_path;
    argv[n++] = "--pool-size=16M";
    while (*args != NULL && n < 31)
        argv[n++] = *args++;
    argv[n] = NULL;
    test_dir_file(dir, "out.txt", out_path, sizeof(out_path));
    test_dir_file(dir, "err.txt", err_path, sizeof(err_path));
    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int in = open(in_path ? in_path : "/dev/null", O_RDONLY);
        int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (in < 0 || out < 0 || err < 0)
            _exit(99);
        dup2(in, 0);
        dup2(out, 1);
        dup2(err, 2);
        execv(dkv_path, (char *const *)argv);
        _exit(98);
    }
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    r->status = WEXITSTATUS(st);
    r->out = slurp(out_path, &r->out_len);
    r->err = slurp(err_path, NULL);
}

#define run_dkv(r, dir, in_path, ...) do {                                     \
        const char *args_[] = { __VA_ARGS__ };                                 \
        run_dkv_v((r), (dir), (in_path), args_);                               \
    } while (0)

static void run_free(struct run *r)
{
    free(r->out);
    free(r->err);
}

/* Runs dkv with args; fails unless it exits with status and its output
   and error output contain out_has and err_has (NULL: anything). */
static void expect_v(const struct test_dir *dir, int status, const char *out_has,
                     const char *err_has, const char *const *args)
{
    struct run r;

    run_dkv_v(&r, dir, NULL, args);
    if (r.status != status || (out_has && strstr(r.out, out_has) == NULL) ||
        (err_has && strstr(r.err, err_has) == NULL))
        fail_msg("dkv %s: exit %d (want %d)\nstdout: %s\nstderr: %s", args[0],
                 r.status, status, r.out, r.err);
    run_free(&r);
}

#define expect(dir, status, out_has, err_has, ...) do {                        \
        const char *args_[] = { __VA_ARGS__, NULL };                           \
        expect_v((dir), (status), (out_has), (err_has), args_);                \
    } while (0)

static int setup(void **state)
{
    struct test_dir *dir = calloc(1, sizeof(*dir));

    if (dir == NULL || test_dir_make(dir, "/tmp") != 0)
        return -1;
    *state = dir;
    return 0;
}

/* Removes the test directory and the databases made in it. */
static int teardown(void **state)
{
    struct test_dir *dir = *state;
    char cmd[300];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir->path);
    if (system(cmd) != 0)
        return -1;
    free(dir);
    return 0;
}

static void db_path(const struct test_dir *dir, const char *name, char *out)
{
    test_dir_file(dir, name, out, 256);
}

static dkv_db *open_api(const char *path, uint32_t page_size)
{
    dkv_options o;
    dkv_db *db;

    dkv_options_init(&o);
    o.pool_size = 16u << 20;
    o.page_size = page_size;
    o.commit_mode = DKV_COMMIT_ASYNC;       /* the data is made here, quickly */
    assert_rc(dkv_open(path, &o, &db), DKV_OK);
    return db;
}

/* ---- usage ----------------------------------------------------------------------- */

static void test_usage_errors_exit_2(void **state)
{
    struct test_dir *dir = *state;
    char db[256];

    db_path(dir, "db", db);
    expect(dir, 2, NULL, "no command given", "--io=psync");
    expect(dir, 2, NULL, "unknown command 'frobnicate'", "frobnicate", db);
    expect(dir, 2, NULL, "missing argument", "get", db);
    expect(dir, 2, NULL, "too many arguments", "del", db, "a", "b");
    expect(dir, 2, NULL, "Try 'dkv scan --help'", "scan", "--no-such-option", db);
    expect(dir, 2, NULL, "--limit wants a positive number", "scan", "--limit=-3", db);
    expect(dir, 2, NULL, "unknown format 'yaml'", "get", "--format=yaml", db, "k");
    expect(dir, 2, NULL, "is not hex", "put", "--hex", db, "0g", "00");
    expect(dir, 2, NULL, "a key is 1 to 1024 bytes", "put", db, "", "v");
    expect(dir, 2, NULL, "unknown I/O engine", "--io=floppy", "get", db, "k");
    expect(dir, 2, NULL, "--pool-size wants a size", "--pool-size=lots", "get", db, "k");
    /* None of them made a database. */
    assert_int_not_equal(access(db, F_OK), 0);
}

static void test_help_everywhere(void **state)
{
    static const char *const cmds[] = { "put", "get", "del", "scan", "dump", "load",
                                        "stat", "check", "checkpoint", "backup" };
    struct test_dir *dir = *state;
    char want[64];
    unsigned i;

    expect(dir, 0, "Usage: dkv [GLOBAL OPTIONS] COMMAND", NULL, "--help");
    for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        snprintf(want, sizeof(want), "Usage: dkv [GLOBAL OPTIONS] %s ", cmds[i]);
        expect(dir, 0, want, NULL, cmds[i], "--help");
    }
}

/* ---- put, get, del ------------------------------------------------------------------ */

static void test_put_get_del(void **state)
{
    struct test_dir *dir = *state;
    char db[256], valfile[256];
    struct run r;
    FILE *f;

    db_path(dir, "db", db);
    expect(dir, 1, NULL, "no database at", "get", db, "k");
    expect(dir, 0, NULL, NULL, "put", db, "k", "hello world");
    expect(dir, 0, "hello world\n", NULL, "get", db, "k");
    expect(dir, 1, NULL, "key not found", "get", db, "nope");
    expect(dir, 0, "68656c6c6f20776f726c64\n", NULL, "get", "--format=hex", db, "k");
    /* Binary through --hex, shown escaped, as hex, and raw. */
    expect(dir, 0, NULL, NULL, "put", "--hex", db, "00ff", "5c000a41");
    expect(dir, 0, "\\\\\\x00\\x0aA\n", NULL, "get", "--hex", db, "00ff");
    run_dkv(&r, dir, NULL, "get", "--format=raw", "--hex", db, "00ff", NULL);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.out_len, 4);
    assert_memory_equal(r.out, "\\\0\nA", 4);
    run_free(&r);
    /* A value from standard input: any bytes. */
    test_dir_file(dir, "value.bin", valfile, sizeof(valfile));
    f = fopen(valfile, "wb");
    assert_non_null(f);
    fwrite("a\0b\n", 1, 4, f);
    fclose(f);
    run_dkv(&r, dir, valfile, "put", db, "fromstdin", "-", NULL);
    assert_int_equal(r.status, 0);
    run_free(&r);
    expect(dir, 0, "a\\x00b\\x0a\n", NULL, "get", db, "fromstdin");
    /* 12 MiB: more than half of the 16 MiB pool the tests give dkv. */
    f = fopen(valfile, "wb");
    assert_non_null(f);
    assert_int_equal(fseek(f, (12 << 20) - 1, SEEK_SET), 0);
    fputc('x', f);
    fclose(f);
    run_dkv(&r, dir, valfile, "put", db, "huge", "-", NULL);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "give a larger --pool-size"));
    run_free(&r);
    expect(dir, 0, NULL, NULL, "del", db, "k");
    expect(dir, 1, NULL, "key not found", "del", db, "k");
    expect(dir, 1, NULL, "key not found", "get", db, "k");
    expect(dir, 1, NULL, "no database at", "del", "/nonexistent/db", "k");
}

static void test_busy_database(void **state)
{
    struct test_dir *dir = *state;
    char db[256];
    dkv_db *h;

    db_path(dir, "db", db);
    h = open_api(db, 0);
    expect(dir, 1, NULL, "is open in another process", "get", db, "k");
    assert_rc(dkv_close(h), DKV_OK);
    expect(dir, 1, NULL, "key not found", "get", db, "k");
}

/* ---- scan --------------------------------------------------------------------------- */

static void test_scan_options(void **state)
{
    struct test_dir *dir = *state;
    char db[256], key[16], val[16];
    dkv_db *h;
    int i;

    db_path(dir, "db", db);
    h = open_api(db, 0);
    for (i = 0; i < 30; i++) {
        snprintf(key, sizeof(key), "%c%02d", i < 10 ? 'a' : i < 20 ? 'b' : 'c', i);
        snprintf(val, sizeof(val), "v%d", i);
        assert_rc(dkv_put(h, key, 3, val, strlen(val)), DKV_OK);
    }
    assert_rc(dkv_put(h, "d\t\x01", 3, "x\\y", 3), DKV_OK);
    assert_rc(dkv_close(h), DKV_OK);

    expect(dir, 0, "a00\tv0\na01\tv1\n", NULL, "scan", "--limit=2", db);
    expect(dir, 0, "b10\tv10\nb11\tv11\nb12\tv12\n", NULL, "scan", "--prefix=b", "-n",
           "3", db);
    expect(dir, 0, "b18\tv18\nb19\tv19\n", NULL, "scan", "--from=b18", "--to=c", db);
    expect(dir, 0, "c29\n", NULL, "scan", "--keys-only", "--prefix=c29", db);
    /* A tab and a control byte in a key never break the line format. */
    expect(dir, 0, "d\\x09\\x01\tx\\\\y\n", NULL, "scan", "--prefix=d", db);
    expect(dir, 0, "640901\t785c79\n", NULL, "scan", "--format=hex", "--hex",
           "--prefix=64", db);
    {
        struct run r;
        run_dkv(&r, dir, NULL, "scan", "--prefix=b", db, NULL);
        assert_int_equal(r.status, 0);
        assert_null(strstr(r.out, "a09"));
        assert_null(strstr(r.out, "c20"));
        assert_non_null(strstr(r.out, "b10\tv10\n"));
        assert_non_null(strstr(r.out, "b19\tv19\n"));
        run_free(&r);
    }
}

/* ---- dump and load ------------------------------------------------------------------ */

static void compare_dbs(const char *a_path, const char *b_path, uint64_t want)
{
    dkv_db *a = open_api(a_path, 0), *b = open_api(b_path, 0);
    dkv_iter *ia, *ib;
    uint64_t n = 0;

    assert_rc(dkv_iter_new(a, &ia), DKV_OK);
    assert_rc(dkv_iter_new(b, &ib), DKV_OK);
    assert_rc(dkv_iter_seek(ia, NULL, 0), DKV_OK);
    assert_rc(dkv_iter_seek(ib, NULL, 0), DKV_OK);
    while (dkv_iter_valid(ia)) {
        size_t ak, av, bk, bv;
        const void *k1, *v1, *k2, *v2;
        assert_true(dkv_iter_valid(ib));
        k1 = dkv_iter_key(ia, &ak);
        v1 = dkv_iter_value(ia, &av);
        k2 = dkv_iter_key(ib, &bk);
        v2 = dkv_iter_value(ib, &bv);
        assert_int_equal(ak, bk);
        assert_int_equal(av, bv);
        assert_memory_equal(k1, k2, ak);
        if (av > 0)
            assert_memory_equal(v1, v2, av);
        n++;
        assert_rc(dkv_iter_next(ia), DKV_OK);
        assert_rc(dkv_iter_next(ib), DKV_OK);
    }
    assert_false(dkv_iter_valid(ib));
    assert_int_equal(n, want);
    dkv_iter_free(ia);
    dkv_iter_free(ib);
    assert_rc(dkv_close(a), DKV_OK);
    assert_rc(dkv_close(b), DKV_OK);
}

static void test_dump_load_round_trip(void **state)
{
    struct test_dir *dir = *state;
    char db[256], db2[256], dump[256], dump2[256];
    static unsigned char key[DKV_KEY_MAX], small[300];
    size_t big_len = 3u << 20, len1, len2;
    unsigned char *big = malloc(big_len);
    char *d1, *d2;
    dkv_db *h;
    unsigned i;

    assert_non_null(big);
    db_path(dir, "db", db);
    db_path(dir, "db2", db2);
    db_path(dir, "dump.txt", dump);
    db_path(dir, "dump2.txt", dump2);
    h = open_api(db, 0);
    test_fill(key, sizeof(key), 7);
    test_fill(big, big_len, 8);
    memset(small, 0, sizeof(small));
    assert_rc(dkv_put(h, key, sizeof(key), big, big_len), DKV_OK);     /* 1024-byte key */
    assert_rc(dkv_put(h, "\0", 1, "\0\0\0", 3), DKV_OK);                /* zero bytes */
    assert_rc(dkv_put(h, "\0\0", 2, "", 0), DKV_OK);                    /* empty value */
    assert_rc(dkv_put(h, "zeros", 5, small, sizeof(small)), DKV_OK);
    for (i = 0; i < 2000; i++) {                                        /* many batches */
        unsigned char k[9], v[40];
        k[0] = 'n';
        memcpy(k + 1, &i, sizeof(i));
        memset(k + 5, 0xff, 4);
        test_fill(v, sizeof(v), i);
        assert_rc(dkv_put(h, k, sizeof(k), v, sizeof(v)), DKV_OK);
    }
    assert_rc(dkv_close(h), DKV_OK);

    expect(dir, 0, NULL, NULL, "dump", db, dump);
    expect(dir, 0, NULL, "2004 records loaded", "load", db2, dump);
    compare_dbs(db, db2, 2004);
    /* The loaded database dumps to the same bytes. */
    expect(dir, 0, NULL, NULL, "dump", db2, dump2);
    d1 = slurp(dump, &len1);
    d2 = slurp(dump2, &len2);
    assert_int_equal(len1, len2);
    assert_memory_equal(d1, d2, len1);
    assert_true(strncmp(d1, "DKVDUMP 1\n", 10) == 0);
    assert_non_null(strstr(d1, "\n00 000000\n"));
    assert_non_null(strstr(d1, "\n0000 \n"));
    assert_non_null(strstr(d1, "\nEND 2004\n"));
    free(d1);
    free(d2);
    free(big);
    expect(dir, 0, NULL, NULL, "check", db2);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_load_rejects_bad_dumps(void **state)
{
    struct test_dir *dir = *state;
    char db[256], bad[256];

    db_path(dir, "db", db);
    db_path(dir, "bad.txt", bad);
    write_file(bad, "key value\n");
    expect(dir, 1, NULL, "not a dkv dump", "load", db, bad);
    write_file(bad, "DKVDUMP 1\n6b 76\n6c 7\n");
    expect(dir, 1, NULL, ":3: not a record", "load", db, bad);
    write_file(bad, "DKVDUMP 1\n6b 76\n");
    expect(dir, 1, NULL, "cut short (no END line after 1 records", "load", db, bad);
    write_file(bad, "DKVDUMP 1\n6b 76\nEND 5\n");
    expect(dir, 1, NULL, "the END line says 5 records, 1 were read", "load", db, bad);
    write_file(bad, "DKVDUMP 1\n 76\nEND 1\n");
    expect(dir, 1, NULL, ":2: not a record", "load", db, bad);
    expect(dir, 1, NULL, "cannot open", "load", db, "/nonexistent/dump");
}

/* ---- stat, checkpoint, backup ------------------------------------------------------- */

static void fill_db(const char *path, uint32_t page_size, unsigned keys, unsigned deletes)
{
    dkv_db *h = open_api(path, page_size);
    char key[32], val[100];
    unsigned i;

    for (i = 0; i < keys; i++) {
        int kl = snprintf(key, sizeof(key), "key%06u", i);
        test_fill(val, sizeof(val), i);
        assert_rc(dkv_put(h, key, (size_t)kl, val, sizeof(val)), DKV_OK);
    }
    for (i = 0; i < deletes; i++) {
        int kl = snprintf(key, sizeof(key), "key%06u", i);
        assert_rc(dkv_delete(h, key, (size_t)kl), DKV_OK);
    }
    assert_rc(dkv_close(h), DKV_OK);
}

static void test_stat_checkpoint_backup(void **state)
{
    struct test_dir *dir = *state;
    char db[256], copy[256];

    db_path(dir, "db", db);
    db_path(dir, "copy", copy);
    expect(dir, 1, NULL, "no database at", "stat", db);
    fill_db(db, 4096, 3000, 0);
    expect(dir, 0, "Tree height               2", NULL, "stat", db);
    expect(dir, 0, "Keys                      3000", NULL, "stat", db);
    expect(dir, 0, "BUFFER POOL", NULL, "stat", db);
    expect(dir, 0, NULL, NULL, "checkpoint", db);
    expect(dir, 1, NULL, "no database at", "checkpoint", copy);
    expect(dir, 0, "written to", NULL, "backup", db, copy);
    expect(dir, 0, "ok: 3000 keys", NULL, "check", copy);
    expect(dir, 1, NULL, "already holds a database", "backup", db, copy);
    expect(dir, 0, NULL, NULL, "get", copy, "key002999");
}

/* ---- damage that check must find ----------------------------------------------------- */

#define PS 4096u

static void page_io(const char *db, uint32_t no, unsigned char *page, int write)
{
    char path[300];
    int fd;

    snprintf(path, sizeof(path), "%s/data.dkv", db);
    fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    if (write)
        assert_int_equal(pwrite(fd, page, PS, (off_t)no * PS), PS);
    else
        assert_int_equal(pread(fd, page, PS, (off_t)no * PS), PS);
    assert_int_equal(fsync(fd), 0);
    close(fd);
}

/* The first page of type whose right sibling is set (want_right) or any. */
static uint32_t find_page(const char *db, int type, int want_right, uint32_t skip)
{
    unsigned char page[PS];
    uint64_t count;
    uint32_t no;

    page_io(db, 0, page, 0);
    count = load_le64(page + FHDR_OFF_PAGE_COUNT);
    for (no = 1; no < count; no++) {
        page_io(db, no, page, 0);
        if (no != skip && page_type(page) == type &&
            (!want_right || node_right(page) != 0))
            return no;
    }
    fail_msg("no page of type %d", type);
    return 0;
}

static uint32_t root_of(const char *db)
{
    unsigned char page[PS];

    page_io(db, 0, page, 0);
    return (uint32_t)load_le64(page + FHDR_OFF_META);
}

/* The doublewrite file holds copies of the last pages written and would
   repair a torn page at open: remove it, so the damage stays. */
static void drop_doublewrite(const char *db)
{
    char path[300];

    snprintf(path, sizeof(path), "%s/doublewrite.dkv", db);
    assert_int_equal(unlink(path), 0);
}

static void test_check_finds_flipped_byte(void **state)
{
    struct test_dir *dir = *state;
    unsigned char page[PS];
    char db[256], want[64];
    uint32_t leaf;

    db_path(dir, "db", db);
    fill_db(db, PS, 3000, 0);
    expect(dir, 0, "ok: 3000 keys", NULL, "check", db);
    leaf = find_page(db, PAGE_TYPE_BTREE_LEAF, 1, root_of(db));
    page_io(db, leaf, page, 0);
    page[PS / 2] ^= 0x40;
    page_io(db, leaf, page, 1);
    drop_doublewrite(db);
    snprintf(want, sizeof(want), "damaged page %u: page %u: page checksum mismatch",
             leaf, leaf);
    expect(dir, 1, NULL, want, "check", db);
    expect(dir, 1, NULL, "damaged", "stat", db);
}

/* A damaged file header stops the open itself: the message still names
   the page. */
static void test_check_names_damaged_header(void **state)
{
    struct test_dir *dir = *state;
    unsigned char page[PS];
    char db[256];

    db_path(dir, "db", db);
    fill_db(db, PS, 10, 0);
    page_io(db, 0, page, 0);
    page[3000] ^= 0x01;
    page_io(db, 0, page, 1);
    drop_doublewrite(db);
    expect(dir, 1, NULL, "cannot open", "check", db);
    expect(dir, 1, NULL, "(page 0: ", "check", db);
}

static void test_check_finds_broken_free_list(void **state)
{
    struct test_dir *dir = *state;
    unsigned char page[PS];
    char db[256], want[96];
    uint32_t free_page, leaf;

    db_path(dir, "db", db);
    fill_db(db, PS, 3000, 2500);          /* merges leave pages on the free list */
    expect(dir, 0, "ok: 500 keys", NULL, "check", db);
    free_page = find_page(db, PAGE_TYPE_FREE_LIST, 0, 0);
    leaf = find_page(db, PAGE_TYPE_BTREE_LEAF, 0, 0);
    /* The free page's link now leads into the tree. */
    page_io(db, free_page, page, 0);
    store_le32(page + FREE_OFF_NEXT, leaf);
    page_stamp(page, PS);
    page_io(db, free_page, page, 1);
    snprintf(want, sizeof(want), "damaged page %u", leaf);
    expect(dir, 1, NULL, want, "check", db);
    expect(dir, 1, NULL, "is referenced twice", "check", db);
}

static void test_check_finds_keys_out_of_order(void **state)
{
    struct test_dir *dir = *state;
    unsigned char page[PS];
    char db[256], want[96];
    unsigned char *k;
    uint32_t leaf;
    size_t klen;

    db_path(dir, "db", db);
    fill_db(db, PS, 3000, 0);
    leaf = find_page(db, PAGE_TYPE_BTREE_LEAF, 1, root_of(db));
    /* The leaf's last key moves above every key to its right: the page is
       still a sound node, only the tree's order is broken. */
    page_io(db, leaf, page, 0);
    k = (unsigned char *)node_key(page, node_count(page) - 1, &klen);
    k[0] = 'z';
    page_stamp(page, PS);
    page_io(db, leaf, page, 1);
    snprintf(want, sizeof(want), "damaged page %u: page %u: B+tree key at or above",
             leaf, leaf);
    expect(dir, 1, NULL, want, "check", db);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_usage_errors_exit_2, setup, teardown),
        cmocka_unit_test_setup_teardown(test_help_everywhere, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_get_del, setup, teardown),
        cmocka_unit_test_setup_teardown(test_busy_database, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scan_options, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dump_load_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_rejects_bad_dumps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stat_checkpoint_backup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_finds_flipped_byte, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_names_damaged_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_finds_broken_free_list, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_check_finds_keys_out_of_order, setup,
                                        teardown),
    };

    if (argc < 2) {
        fprintf(stderr, "usage: %s PATH-OF-dkv\n", argv[0]);
        return 2;
    }
    dkv_path = argv[1];
    return cmocka_run_group_tests(tests, NULL, NULL);
}
