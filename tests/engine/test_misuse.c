/*
 * test_misuse.c - API misuse gets a defined error and changes nothing
 * (include/dkv.h; engine/db.c).  test_db.c covers a first set; this file
 * goes through every entry point.
 *
 * One database (4 KiB pages, a 4 MiB pool) is made for the group and
 * loaded with a reference set: 300 keys with values of 0..900 bytes and
 * two long values (overflow pages).  Each test then makes calls that must
 * be refused - NULL handles, keys, values and out-parameters; empty keys,
 * keys of DKV_KEY_MAX + 1 bytes and of SIZE_MAX bytes (pointing at a short
 * buffer: the length must be refused before any byte is read, which the
 * AddressSanitizer build checks); values over DKV_VALUE_MAX and values too
 * long for the pool, alone and in batches; options dkv_open must refuse
 * (page sizes that are not a power of two, below 4 KiB, above 64 KiB or
 * not the recorded one, a pool of fewer than 32 pages, unknown I/O engines
 * and commit modes, a missing database without create_if_missing, a
 * second open of the open directory); dkv_close while iterators are open
 * (DKV_ERR_BUSY: the iterators stay usable, and the close succeeds once
 * they are freed); iterators before a seek and past the end - checks the
 * return code of each, and after each test closes the database, reopens
 * it and compares the whole reference set, byte for byte, plus a scan.
 *
 * The death tests (AddressSanitizer builds only, else skipped): a child
 * process uses a batch after dkv_batch_free, or an iterator after
 * dkv_iter_free, and must die with an AddressSanitizer report - the
 * library cannot catch these, the sanitizer build must.
 */
#include "dkv.h"
#include "test_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#if defined(__SANITIZE_ADDRESS__)
#define MISUSE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MISUSE_ASAN 1
#endif
#endif
#ifndef MISUSE_ASAN
#define MISUSE_ASAN 0
#endif

#define REF_KEYS  300u
#define LONG_A    20000u                 /* overflow values of the reference set */
#define LONG_B    70000u
#define POOL      (4u << 20)

static uint64_t g_seed;

struct fx {
    struct test_dir dir;
    dkv_options     o;
    dkv_db         *db;
    unsigned char  *buf;                 /* 1 MiB for reads and long values */
};

static size_t ref_key(char *k, unsigned i)
{
    return (size_t)sprintf(k, "ref%05u", i);
}

static size_t ref_len(unsigned i)
{
    return i == 7 ? LONG_A : i == 150 ? LONG_B : (i * 37u) % 901u;
}

static void fx_open(struct fx *fx)
{
    assert_rc(dkv_open(fx->dir.path, &fx->o, &fx->db), DKV_OK);
    assert_non_null(fx->db);
}

static void fx_close(struct fx *fx)
{
    assert_rc(dkv_close(fx->db), DKV_OK);
    fx->db = NULL;
}

/* Every reference key has its value, and a scan sees exactly them. */
static void check_reference(struct fx *fx)
{
    dkv_iter *it;
    unsigned i, n = 0;

    for (i = 0; i < REF_KEYS; i++) {
        char k[32];
        size_t vl = 0;
        assert_rc(dkv_get(fx->db, k, ref_key(k, i), fx->buf, 1u << 20, &vl), DKV_OK);
        assert_int_equal(vl, ref_len(i));
        assert_int_equal(test_mismatch(fx->buf, vl, g_seed + i), (size_t)-1);
    }
    assert_rc(dkv_iter_new(fx->db, &it), DKV_OK);
    assert_rc(dkv_iter_seek(it, NULL, 0), DKV_OK);
    for (; dkv_iter_valid(it); n++) {
        char k[32];
        size_t kl, vl;
        const void *key = dkv_iter_key(it, &kl);
        dkv_iter_value(it, &vl);
        assert_true(n < REF_KEYS);
        assert_int_equal(kl, ref_key(k, n));
        assert_memory_equal(key, k, kl);
        assert_int_equal(vl, ref_len(n));
        assert_rc(dkv_iter_next(it), DKV_OK);
    }
    dkv_iter_free(it);
    assert_int_equal(n, REF_KEYS);
}

/* After each test: close, reopen, and the data is as it was. */
static void reopen_and_check(struct fx *fx)
{
    fx_close(fx);
    fx_open(fx);
    check_reference(fx);
}

static int group_setup(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));
    unsigned i;

    assert_non_null(fx);
    fx->buf = malloc(1u << 20);
    assert_non_null(fx->buf);
    assert_int_equal(test_dir_make(&fx->dir, "/tmp"), 0);
    dkv_options_init(&fx->o);
    fx->o.page_size = 4096;
    fx->o.pool_size = POOL;
    fx->o.commit_mode = DKV_COMMIT_ASYNC;
    fx_open(fx);
    for (i = 0; i < REF_KEYS; i++) {
        char k[32];
        test_fill(fx->buf, ref_len(i), g_seed + i);
        assert_rc(dkv_put(fx->db, k, ref_key(k, i), fx->buf, ref_len(i)), DKV_OK);
    }
    reopen_and_check(fx);
    *state = fx;
    return 0;
}

static int group_teardown(void **state)
{
    struct fx *fx = *state;

    if (fx->db != NULL)
        dkv_close(fx->db);
    test_dir_remove(&fx->dir);
    free(fx->buf);
    free(fx);
    return 0;
}

/* ---- NULL pointers -------------------------------------------------------------- */

static void test_null_pointers(void **state)
{
    struct fx *fx = *state;
    const void *keys[1] = { "ref00001" };
    size_t klens[1] = { 8 }, caps[1] = { 16 }, vlens[1];
    void *bufs[1] = { fx->buf };
    int rcs[1];
    dkv_batch *b = dkv_batch_new();
    dkv_iter *it = (dkv_iter *)fx;
    dkv_stats st;
    size_t vl = 0;

    assert_non_null(b);
    /* a NULL database */
    assert_rc(dkv_put(NULL, "k", 1, "v", 1), DKV_ERR_INVALID);
    assert_rc(dkv_get(NULL, "ref00001", 8, fx->buf, 16, &vl), DKV_ERR_INVALID);
    assert_rc(dkv_delete(NULL, "ref00001", 8), DKV_ERR_INVALID);
    assert_rc(dkv_multi_get(NULL, 1, keys, klens, bufs, caps, vlens, rcs), DKV_ERR_INVALID);
    assert_rc(dkv_batch_put(b, "ref00001", 8, "x", 1), DKV_OK);
    assert_rc(dkv_write(NULL, b), DKV_ERR_INVALID);
    assert_rc(dkv_iter_new(NULL, &it), DKV_ERR_INVALID);
    assert_null(it);                               /* the out-parameter is cleared */
    assert_rc(dkv_sync(NULL), DKV_ERR_INVALID);
    assert_rc(dkv_checkpoint(NULL), DKV_ERR_INVALID);
    assert_rc(dkv_stats_get(NULL, &st), DKV_ERR_INVALID);
    assert_rc(dkv_close(NULL), DKV_OK);
    /* NULL keys, values and out-parameters */
    assert_rc(dkv_put(fx->db, NULL, 8, "v", 1), DKV_ERR_INVALID);
    assert_rc(dkv_put(fx->db, "ref00001", 8, NULL, 1), DKV_ERR_INVALID);
    assert_rc(dkv_get(fx->db, NULL, 8, fx->buf, 16, &vl), DKV_ERR_INVALID);
    assert_rc(dkv_get(fx->db, "ref00001", 8, NULL, 16, &vl), DKV_ERR_INVALID);
    assert_rc(dkv_get(fx->db, "ref00001", 8, fx->buf, 16, NULL), DKV_ERR_INVALID);
    assert_rc(dkv_delete(fx->db, NULL, 8), DKV_ERR_INVALID);
    assert_rc(dkv_batch_put(NULL, "k", 1, "v", 1), DKV_ERR_INVALID);
    assert_rc(dkv_batch_put(b, NULL, 1, "v", 1), DKV_ERR_INVALID);
    assert_rc(dkv_batch_put(b, "k", 1, NULL, 1), DKV_ERR_INVALID);
    assert_rc(dkv_batch_delete(NULL, "k", 1), DKV_ERR_INVALID);
    assert_rc(dkv_batch_delete(b, NULL, 1), DKV_ERR_INVALID);
    assert_rc(dkv_write(fx->db, NULL), DKV_ERR_INVALID);
    assert_rc(dkv_iter_new(fx->db, NULL), DKV_ERR_INVALID);
    assert_rc(dkv_stats_get(fx->db, NULL), DKV_ERR_INVALID);
    /* each array of multi_get NULL in turn */
    assert_rc(dkv_multi_get(fx->db, 1, NULL, klens, bufs, caps, vlens, rcs), DKV_ERR_INVALID);
    assert_rc(dkv_multi_get(fx->db, 1, keys, NULL, bufs, caps, vlens, rcs), DKV_ERR_INVALID);
    assert_rc(dkv_multi_get(fx->db, 1, keys, klens, NULL, caps, vlens, rcs), DKV_ERR_INVALID);
    assert_rc(dkv_multi_get(fx->db, 1, keys, klens, bufs, NULL, vlens, rcs), DKV_ERR_INVALID);
    assert_rc(dkv_multi_get(fx->db, 1, keys, klens, bufs, caps, NULL, rcs), DKV_ERR_INVALID);
    assert_rc(dkv_multi_get(fx->db, 1, keys, klens, bufs, caps, vlens, NULL), DKV_ERR_INVALID);
    assert_rc(dkv_multi_get(fx->db, 0, NULL, NULL, NULL, NULL, NULL, NULL), DKV_OK);
    /* the calls that return nothing accept NULL */
    dkv_batch_clear(NULL);
    dkv_batch_free(NULL);
    dkv_iter_free(NULL);
    dkv_options_init(NULL);
    assert_false(dkv_iter_valid(NULL));
    assert_rc(dkv_iter_seek(NULL, NULL, 0), DKV_ERR_INVALID);
    assert_rc(dkv_iter_next(NULL), DKV_ERR_INVALID);
    vl = 5;
    assert_null(dkv_iter_key(NULL, &vl));
    assert_int_equal(vl, 0);
    vl = 5;
    assert_null(dkv_iter_value(NULL, &vl));
    assert_int_equal(vl, 0);
    assert_null(dkv_iter_key(NULL, NULL));
    assert_non_null(dkv_strerror(12345));
    assert_non_null(dkv_strerror(-12345));
    assert_null(dkv_io_engine_name(99));
    assert_int_equal(dkv_io_engine_built(-1), 0);
    /* a NULL buffer with capacity 0 asks for the length only */
    assert_rc(dkv_get(fx->db, "ref00007", 8, NULL, 0, &vl), DKV_OK);
    assert_int_equal(vl, LONG_A);
    dkv_batch_free(b);
    reopen_and_check(fx);
}

/* ---- keys ------------------------------------------------------------------------- */

/* A key of klen bytes at a 16-byte buffer: refused before it is read. */
static void refuse_key(struct fx *fx, dkv_batch *b, const char *key, size_t klen)
{
    const void *keys[2] = { key, "ref00003" };
    size_t klens[2] = { klen, 8 }, caps[2] = { 64, 1024 }, vlens[2];
    void *bufs[2] = { fx->buf, fx->buf + 4096 };
    int rcs[2];
    dkv_iter *it;
    size_t vl;

    assert_rc(dkv_put(fx->db, key, klen, "v", 1), DKV_ERR_INVALID);
    assert_rc(dkv_get(fx->db, key, klen, fx->buf, 64, &vl), DKV_ERR_INVALID);
    assert_rc(dkv_delete(fx->db, key, klen), DKV_ERR_INVALID);
    assert_rc(dkv_batch_put(b, key, klen, "v", 1), DKV_ERR_INVALID);
    assert_rc(dkv_batch_delete(b, key, klen), DKV_ERR_INVALID);
    /* multi_get: that entry refused, the other answered */
    assert_rc(dkv_multi_get(fx->db, 2, keys, klens, bufs, caps, vlens, rcs), DKV_ERR_INVALID);
    assert_rc(rcs[0], DKV_ERR_INVALID);
    assert_rc(rcs[1], DKV_OK);
    assert_int_equal(vlens[1], ref_len(3));
    assert_rc(dkv_iter_new(fx->db, &it), DKV_OK);
    if (key != NULL)                              /* NULL seeks to the first key */
        assert_rc(dkv_iter_seek(it, key, klen), DKV_ERR_INVALID);
    dkv_iter_free(it);
}

static void test_bad_keys(void **state)
{
    struct fx *fx = *state;
    char *long_key = malloc(DKV_KEY_MAX + 1);
    char short_buf[16] = "ref00001";
    dkv_batch *b = dkv_batch_new();

    assert_non_null(long_key);
    assert_non_null(b);
    memset(long_key, 'r', DKV_KEY_MAX + 1);
    refuse_key(fx, b, short_buf, 0);                       /* empty */
    refuse_key(fx, b, long_key, DKV_KEY_MAX + 1);          /* one byte too long */
    refuse_key(fx, b, short_buf, DKV_KEY_MAX + 1);         /* ... at a short buffer */
    refuse_key(fx, b, short_buf, (size_t)-1);              /* SIZE_MAX */
    refuse_key(fx, b, short_buf, (size_t)1 << 40);
    refuse_key(fx, b, NULL, 8);
    /* the refused entries left the batch empty: writing it changes nothing */
    assert_rc(dkv_write(fx->db, b), DKV_OK);
    dkv_batch_free(b);
    free(long_key);
    reopen_and_check(fx);
}

/* ---- values -------------------------------------------------------------------------- */

static void test_bad_values(void **state)
{
    struct fx *fx = *state;
    char small[16] = "v";
    size_t too_long_for_pool = POOL / 2 + 4096;      /* <= DKV_VALUE_MAX */
    unsigned char *big = malloc(too_long_for_pool);
    dkv_batch *b = dkv_batch_new();
    size_t vl;

    assert_non_null(big);
    assert_non_null(b);
    memset(big, 'b', too_long_for_pool);
    /* over DKV_VALUE_MAX, at a short buffer: refused before a byte is read */
    assert_rc(dkv_put(fx->db, "ref00001", 8, small, (size_t)DKV_VALUE_MAX + 1),
              DKV_ERR_INVALID);
    assert_rc(dkv_put(fx->db, "ref00001", 8, small, (size_t)-1), DKV_ERR_INVALID);
    assert_rc(dkv_batch_put(b, "ref00001", 8, small, (size_t)DKV_VALUE_MAX + 1),
              DKV_ERR_INVALID);
    assert_rc(dkv_batch_put(b, "ref00001", 8, small, (size_t)-1), DKV_ERR_INVALID);
    /* within DKV_VALUE_MAX but over half the pool: refused whole */
    assert_rc(dkv_put(fx->db, "ref00001", 8, big, too_long_for_pool), DKV_ERR_INVALID);
    assert_rc(dkv_put(fx->db, "new-key", 7, big, too_long_for_pool), DKV_ERR_INVALID);
    assert_rc(dkv_get(fx->db, "new-key", 7, NULL, 0, &vl), DKV_NOTFOUND);
    /* in a batch the value is taken, and the write refuses the batch whole */
    assert_rc(dkv_batch_put(b, "ref00002", 8, "changed", 7), DKV_OK);
    assert_rc(dkv_batch_delete(b, "ref00004", 8), DKV_OK);
    assert_rc(dkv_batch_put(b, "ref00001", 8, big, too_long_for_pool), DKV_OK);
    assert_rc(dkv_write(fx->db, b), DKV_ERR_INVALID);
    assert_rc(dkv_write(fx->db, b), DKV_ERR_INVALID);   /* and again */
    dkv_batch_free(b);
    free(big);
    reopen_and_check(fx);                             /* ref00002 and 4 unchanged */
}

/* ---- options ------------------------------------------------------------------------ */

/* dkv_open with o refused with want; *dbp left NULL. */
static void refuse_open(const char *path, const dkv_options *o, int want)
{
    dkv_db *db = (dkv_db *)o;

    assert_rc(dkv_open(path, o, &db), want);
    assert_null(db);
}

static void test_bad_options(void **state)
{
    struct fx *fx = *state;
    static const uint32_t bad_sizes[] = { 1, 1000, 2048, 3000, 4095, 4097, 12288,
                                          65535, 1u << 17, 1u << 31, 0xffffffffu };
    char missing[256];
    struct stat st;
    dkv_options o;
    unsigned i;

    /* the open directory: a second open in this process is refused */
    refuse_open(fx->dir.path, &fx->o, DKV_ERR_BUSY);
    fx_close(fx);
    for (i = 0; i < sizeof(bad_sizes) / sizeof(bad_sizes[0]); i++) {
        o = fx->o;
        o.page_size = bad_sizes[i];
        refuse_open(fx->dir.path, &o, DKV_ERR_INVALID);
    }
    o = fx->o;
    o.page_size = 8192;                              /* valid, not the recorded one */
    refuse_open(fx->dir.path, &o, DKV_ERR_INVALID);
    o.page_size = 65536;
    refuse_open(fx->dir.path, &o, DKV_ERR_INVALID);
    o = fx->o;
    o.pool_size = 31 * 4096;                         /* fewer than 32 pages */
    refuse_open(fx->dir.path, &o, DKV_ERR_INVALID);
    o.pool_size = 0;
    refuse_open(fx->dir.path, &o, DKV_ERR_INVALID);
    o.pool_size = 1;
    refuse_open(fx->dir.path, &o, DKV_ERR_INVALID);
    o = fx->o;
    o.page_size = 0;                                 /* the recorded size ... */
    o.pool_size = 31 * 4096;                         /* ... and too few of them */
    refuse_open(fx->dir.path, &o, DKV_ERR_INVALID);
    o = fx->o;
    o.io_engine = -1;
    refuse_open(fx->dir.path, &o, DKV_ERR_INVALID);
    o.io_engine = 99;
    refuse_open(fx->dir.path, &o, DKV_ERR_INVALID);
    o = fx->o;
    o.commit_mode = 2;
    refuse_open(fx->dir.path, &o, DKV_ERR_INVALID);
    o.commit_mode = -1;
    refuse_open(fx->dir.path, &o, DKV_ERR_INVALID);
    refuse_open(NULL, &fx->o, DKV_ERR_INVALID);
    refuse_open("", &fx->o, DKV_ERR_INVALID);
    assert_rc(dkv_open(fx->dir.path, &fx->o, NULL), DKV_ERR_INVALID);
    /* a missing database without create_if_missing: nothing is created */
    snprintf(missing, sizeof(missing), "%s/missing", fx->dir.path);
    o = fx->o;
    o.create_if_missing = 0;
    refuse_open(missing, &o, DKV_ERR_INVALID);
    assert_int_not_equal(stat(missing, &st), 0);
    o.create_if_missing = 1;
    o.read_only = 1;                                 /* read-only never creates */
    refuse_open(missing, &o, DKV_ERR_INVALID);
    assert_int_not_equal(stat(missing, &st), 0);
    fx_open(fx);
    check_reference(fx);
    /* page size 0 opens with the recorded size */
    fx_close(fx);
    o = fx->o;
    o.page_size = 0;
    assert_rc(dkv_open(fx->dir.path, &o, &fx->db), DKV_OK);
    reopen_and_check(fx);
}

/* ---- iterators and close --------------------------------------------------------- */

static void test_iterators_and_close(void **state)
{
    struct fx *fx = *state;
    dkv_iter *a, *b;
    size_t kl = 9, vl = 9;
    unsigned n;

    assert_rc(dkv_iter_new(fx->db, &a), DKV_OK);
    assert_rc(dkv_iter_new(fx->db, &b), DKV_OK);
    /* before a seek: not valid, no key, next refused */
    assert_false(dkv_iter_valid(a));
    assert_null(dkv_iter_key(a, &kl));
    assert_int_equal(kl, 0);
    assert_null(dkv_iter_value(a, &vl));
    assert_int_equal(vl, 0);
    assert_rc(dkv_iter_next(a), DKV_ERR_INVALID);
    /* seek past the last key: not valid */
    assert_rc(dkv_iter_seek(a, "zzz", 3), DKV_OK);
    assert_false(dkv_iter_valid(a));
    assert_rc(dkv_iter_next(a), DKV_ERR_INVALID);
    /* a close with iterators open is refused and changes nothing ... */
    assert_rc(dkv_iter_seek(a, "ref00100", 8), DKV_OK);
    assert_rc(dkv_close(fx->db), DKV_ERR_BUSY);
    assert_true(dkv_iter_valid(a));
    assert_memory_equal(dkv_iter_key(a, &kl), "ref00100", 8);
    /* ... the iterators go on working after it ... */
    for (n = 0; n < 5; n++)
        assert_rc(dkv_iter_next(a), DKV_OK);
    assert_memory_equal(dkv_iter_key(a, &kl), "ref00105", 8);
    assert_rc(dkv_iter_seek(b, NULL, 0), DKV_OK);
    assert_memory_equal(dkv_iter_key(b, &kl), "ref00000", 8);
    dkv_iter_free(a);
    /* ... one is still open ... */
    assert_rc(dkv_close(fx->db), DKV_ERR_BUSY);
    assert_memory_equal(dkv_iter_key(b, &kl), "ref00000", 8);
    /* ... and an iterator that ran off the end still counts */
    while (dkv_iter_valid(b))
        assert_rc(dkv_iter_next(b), DKV_OK);
    assert_rc(dkv_iter_next(b), DKV_ERR_INVALID);
    assert_rc(dkv_close(fx->db), DKV_ERR_BUSY);
    dkv_iter_free(b);
    reopen_and_check(fx);                            /* the close now works */
}

/* ---- read-only --------------------------------------------------------------------- */

static void test_read_only(void **state)
{
    struct fx *fx = *state;
    dkv_batch *b = dkv_batch_new();
    dkv_options o = fx->o;

    assert_non_null(b);
    fx_close(fx);
    o.read_only = 1;
    assert_rc(dkv_open(fx->dir.path, &o, &fx->db), DKV_OK);
    assert_rc(dkv_put(fx->db, "ref00001", 8, "x", 1), DKV_ERR_READONLY);
    assert_rc(dkv_delete(fx->db, "ref00001", 8), DKV_ERR_READONLY);
    assert_rc(dkv_batch_put(b, "ref00001", 8, "x", 1), DKV_OK);
    assert_rc(dkv_write(fx->db, b), DKV_ERR_READONLY);
    assert_rc(dkv_checkpoint(fx->db), DKV_ERR_READONLY);
    /* bad arguments are still DKV_ERR_INVALID first */
    assert_rc(dkv_put(fx->db, "", 0, "x", 1), DKV_ERR_INVALID);
    check_reference(fx);
    dkv_batch_free(b);
    reopen_and_check(fx);
}

/* ---- use after free (AddressSanitizer) --------------------------------------------------- */

/* Runs fn in a child process and expects it to die with an
   AddressSanitizer report on its stderr. */
static void expect_asan_death(void (*fn)(const char *dir), const char *dir,
                              const char *what)
{
    char out[8192];
    size_t used = 0;
    int pfd[2], status;
    ssize_t n;
    pid_t pid;

    assert_int_equal(pipe(pfd), 0);
    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(pfd[1], 2);
        close(pfd[0]);
        fn(dir);
        _exit(0);                                 /* not caught: the test fails */
    }
    close(pfd[1]);
    while (used < sizeof(out) - 1 && (n = read(pfd[0], out + used, sizeof(out) - 1 - used)) > 0)
        used += (size_t)n;
    out[used] = '\0';
    close(pfd[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!(WIFEXITED(status) && WEXITSTATUS(status) != 0) && !WIFSIGNALED(status))
        fail_msg("%s: the child survived", what);
    if (strstr(out, "AddressSanitizer") == NULL)
        fail_msg("%s: no AddressSanitizer report:\n%s", what, out);
    printf("%s: died with an AddressSanitizer report, as it must\n", what);
}

static void batch_after_free(const char *dir)
{
    dkv_batch *b = dkv_batch_new();
    volatile int rc;

    (void)dir;
    dkv_batch_put(b, "k", 1, "v", 1);
    dkv_batch_free(b);
    rc = dkv_batch_put(b, "k", 1, "v", 1);        /* use after free */
    (void)rc;
}

static void iter_after_free(const char *dir)
{
    dkv_options o;
    dkv_db *db;
    dkv_iter *it;
    volatile int rc;

    dkv_options_init(&o);
    o.page_size = 4096;
    o.pool_size = POOL;
    if (dkv_open(dir, &o, &db) != DKV_OK || dkv_iter_new(db, &it) != DKV_OK)
        _exit(0);
    dkv_iter_free(it);
    rc = dkv_iter_seek(it, NULL, 0);              /* use after free */
    (void)rc;
}

static void test_use_after_free_dies(void **state)
{
    struct fx *fx = *state;

    if (!MISUSE_ASAN)
        skip();                                   /* only the sanitizer can see it */
    fx_close(fx);
    expect_asan_death(batch_after_free, fx->dir.path, "batch used after dkv_batch_free");
    expect_asan_death(iter_after_free, fx->dir.path, "iterator used after dkv_iter_free");
    fx_open(fx);
    check_reference(fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_null_pointers),
        cmocka_unit_test(test_bad_keys),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_iterators_and_close),
        cmocka_unit_test(test_read_only),
        cmocka_unit_test(test_use_after_free_dies),
    };

    g_seed = test_seed("test_misuse");
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
