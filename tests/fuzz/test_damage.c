/*
 * test_damage.c - damage the fuzzers found, made on purpose: each test
 * builds a small database through the public API, captures it as an image
 * (fuzz_image.h), changes a few chosen bytes, recomputes the checksums
 * (so the damage gets past them), opens the result and checks that the
 * engine reports DKV_ERR_CORRUPT - never a crash, a hang, an endless file
 * or an answer out of order.
 *
 * The cases: a leaf whose keys are out of order (a scan returned them so);
 * a leaf cell whose value length is near 2^32 (the cell size wrapped past
 * the bounds check); a log record that initialises a page millions of
 * pages past the end of the file (recovery grew the file to it); a log
 * record that inserts a key at the wrong slot; an inner node that is its
 * own child (a put waited for its own latch); a batch that fails part way
 * on a damaged leaf, after which dkv_close reported DKV_ERR_BUSY instead
 * of the failure, and the batch must be all or nothing after a reopen.
 * Files are capped at 256 MiB (RLIMIT_FSIZE) so that a regression of the
 * third case cannot fill the machine.
 */
#include "fuzz_image.h"

#include "dkv.h"
#include "engine/btree.h"
#include "engine/node.h"
#include "pager/page_format.h"
#include "test_util.h"
#include "wal/wal_format.h"

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

#define KEYS 96u

struct image {
    unsigned char *img;
    size_t         size;
    unsigned       npages, nblocks;
};

static unsigned char *page_at(struct image *im, unsigned i)
{
    return im->img + FIMG_HDR + (size_t)i * FIMG_PAGE;
}

static unsigned char *block_at(struct image *im, unsigned j)
{
    return im->img + FIMG_HDR + (size_t)im->npages * FIMG_PAGE + (size_t)(3 + j) * 4096;
}

static void options(dkv_options *o)
{
    dkv_options_init(o);
    o->pool_size = 256 * FIMG_PAGE;
    o->direct = 0;
    o->io_engine = DKV_IO_PSYNC;
    o->create_if_missing = 0;
}

static void put_keys(dkv_db *db, unsigned from, unsigned to, unsigned v)
{
    unsigned char val[256];
    char k[32];
    unsigned i;

    for (i = from; i < to; i++)
        assert_rc(dkv_put(db, k, fimg_key(k, i), val, fimg_value(val, sizeof(val), i, v)),
                  DKV_OK);
}

/* A database of KEYS keys (two levels of 4 KiB pages), closed; with crash
   a second session then writes keys [0, 20) again and ends without a
   close, so the log holds what the data file does not. */
static void make_image(struct image *im, int crash)
{
    static const unsigned char ops[FIMG_OPS] = { 0 };
    struct test_dir dir;
    dkv_options o;
    dkv_db *db;

    assert_int_equal(fimg_scratch_dir(dir.path, sizeof(dir.path), "damage"), 0);
    assert_rc(fimg_create_small(dir.path), DKV_OK);
    options(&o);
    assert_rc(dkv_open(dir.path, &o, &db), DKV_OK);
    put_keys(db, 0, KEYS, 1);
    assert_rc(dkv_close(db), DKV_OK);
    if (crash) {
        pid_t pid = fork();
        int st;
        assert_true(pid >= 0);
        if (pid == 0) {
            if (dkv_open(dir.path, &o, &db) != DKV_OK)
                _exit(1);
            put_keys(db, KEYS, KEYS + 20, 2);     /* new pages: splits */
            _exit(dkv_sync(db) == DKV_OK ? 0 : 1);
        }
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    assert_int_equal(fimg_capture(dir.path, FIMG_FIX_PAGES | FIMG_FIX_BLOCKS | FIMG_FIX_MTRS,
                                  ops, &im->img, &im->size), 0);
    im->npages = load_le16(im->img + 2);
    im->nblocks = load_le16(im->img + 4);
    fimg_remove_dir(dir.path);
}

/* Writes the (damaged) image into a fresh directory. */
static void write_image(struct image *im, char *dir, size_t cap)
{
    unsigned char ops[FIMG_OPS];

    assert_int_equal(fimg_scratch_dir(dir, cap, "damage"), 0);
    assert_int_equal(fimg_write(dir, im->img, im->size, ops), 0);
}

/* The leaf page with the most keys, or the root (meta slot 0). */
static unsigned find_leaf(struct image *im)
{
    unsigned i, best = 0, most = 0;

    for (i = 1; i < im->npages; i++) {
        unsigned char *p = page_at(im, i);
        if (load_le16(p + PAGE_OFF_TYPE) == PAGE_TYPE_BTREE_LEAF &&
            load_le16(p + NODE_OFF_COUNT) > most) {
            most = load_le16(p + NODE_OFF_COUNT);
            best = i;
        }
    }
    assert_true(most >= 3);
    return best;
}

static unsigned root_of(struct image *im)
{
    return (unsigned)load_le64(page_at(im, 0) + FHDR_OFF_META + 8 * BTREE_META_ROOT);
}

/* Scans everything: keys strictly ascending; the scan's return code. */
static int scan_all(dkv_db *db)
{
    unsigned char prev[DKV_KEY_MAX];
    size_t prev_len = 0;
    dkv_iter *it;
    int rc;

    assert_rc(dkv_iter_new(db, &it), DKV_OK);
    rc = dkv_iter_seek(it, NULL, 0);
    while (rc == DKV_OK && dkv_iter_valid(it)) {
        size_t kl;
        const unsigned char *k = dkv_iter_key(it, &kl);
        size_t m = kl < prev_len ? kl : prev_len;
        assert_true(prev_len == 0 || memcmp(prev, k, m) < 0 ||
                    (memcmp(prev, k, m) == 0 && prev_len < kl));
        memcpy(prev, k, kl);
        prev_len = kl;
        rc = dkv_iter_next(it);
    }
    dkv_iter_free(it);
    return rc;
}

static void test_leaf_out_of_order(void **state)
{
    struct image im;
    char dir[256];
    dkv_options o;
    dkv_db *db;
    unsigned char *p;
    uint32_t off;

    (void)state;
    make_image(&im, 0);
    p = page_at(&im, find_leaf(&im));
    off = load_le16(p + NODE_HEADER_SIZE + 2 * 1);           /* slot 1 */
    p[off + NODE_LEAF_CELL_HDR] = 'A';                     /* "key.." -> "Aey..": below slot 0 */
    write_image(&im, dir, sizeof(dir));
    options(&o);
    assert_rc(dkv_open(dir, &o, &db), DKV_OK);
    assert_rc(scan_all(db), DKV_ERR_CORRUPT);
    assert_rc(dkv_close(db), DKV_OK);
    fimg_remove_dir(dir);
    free(im.img);
}

static void test_leaf_value_length_wraps(void **state)
{
    struct image im;
    char dir[256], k[32];
    unsigned char buf[256];
    dkv_options o;
    dkv_db *db;
    unsigned char *p;
    size_t vl;
    uint32_t off;
    unsigned i;
    int corrupt = 0;

    (void)state;
    make_image(&im, 0);
    p = page_at(&im, find_leaf(&im));
    off = load_le16(p + NODE_HEADER_SIZE + 2 * 1);
    store_le32(p + off + 2, 0xfffffff0u);                  /* 7 + klen + vlen wraps */
    write_image(&im, dir, sizeof(dir));
    options(&o);
    assert_rc(dkv_open(dir, &o, &db), DKV_OK);
    for (i = 0; i < KEYS; i++) {
        int rc = dkv_get(db, k, fimg_key(k, i), buf, sizeof(buf), &vl);
        assert_true(rc == DKV_OK || rc == DKV_ERR_CORRUPT);
        assert_true(rc != DKV_OK || vl <= 256);
        corrupt += rc == DKV_ERR_CORRUPT;
    }
    assert_true(corrupt > 0);                               /* that leaf's keys */
    assert_rc(scan_all(db), DKV_ERR_CORRUPT);
    assert_rc(dkv_close(db), DKV_OK);
    fimg_remove_dir(dir);
    free(im.img);
}

/* The first block after the newest checkpoint (the log has not wrapped:
   block j holds LSN j * 4096). */
static unsigned replay_block(struct image *im)
{
    unsigned char *c0 = block_at(im, 0) - 2 * 4096, *c1 = block_at(im, 0) - 4096;
    unsigned char *c = load_le64(c0 + CK_OFF_NO) > load_le64(c1 + CK_OFF_NO) ? c0 : c1;

    return (unsigned)(load_le64(c + CK_OFF_LSN) / 4096);
}

/* A record replayed at open, by its bytes (header, then payload), that
   match() accepts; NULL when there is none. */
static unsigned char *find_record(struct image *im, int (*match)(const unsigned char *r,
                                                                 unsigned npages))
{
    unsigned j, off;

    for (j = replay_block(im); j < im->nblocks; j++) {
        unsigned char *b = block_at(im, j);
        unsigned end = load_le16(b + LB_OFF_DATA_END);
        for (off = LB_HDR; end <= 4096 && off + REC_HDR + 16 < end; off++)
            if (match(b + off, im->npages))
                return b + off;
    }
    return NULL;
}

static int page_in_range(const unsigned char *r, unsigned npages)
{
    return load_le32(r + REC_OFF_PAGE) > 0 && load_le32(r + REC_OFF_PAGE) < npages + 64;
}

/* REDO_PAGE_INIT: payload u16 page type. */
static int is_page_init(const unsigned char *r, unsigned npages)
{
    return r[0] == 1 && load_le32(r + REC_OFF_LEN) == 2 && page_in_range(r, npages) &&
           load_le16(r + REC_HDR) >= PAGE_TYPE_BTREE_LEAF &&
           load_le16(r + REC_HDR) <= PAGE_TYPE_OVERFLOW;
}

/* A leaf insert of a "key%05u" key after slot 0 (btree.h's layout:
   u16 slot, u16 key length, u32 value length, u8 flags, key, value). */
static int is_leaf_insert(const unsigned char *r, unsigned npages)
{
    const unsigned char *q = r + REC_HDR;

    return r[0] == BT_REDO_INSERT && page_in_range(r, npages) && load_le16(q) > 0 &&
           load_le16(q + 2) == 8 && memcmp(q + 9, "key", 3) == 0 &&
           load_le32(r + REC_OFF_LEN) == 2 + NODE_LEAF_CELL_HDR + 8 + load_le32(q + 4);
}

static void test_log_page_far_beyond(void **state)
{
    struct image im;
    char dir[256], path[300];
    unsigned char *r;
    struct stat st;
    dkv_options o;
    dkv_db *db = NULL;

    (void)state;
    make_image(&im, 1);
    r = find_record(&im, is_page_init);
    assert_non_null(r);
    store_le32(r + REC_OFF_PAGE, 3000000);                 /* 12 GB of 4 KiB pages */
    write_image(&im, dir, sizeof(dir));
    options(&o);
    assert_rc(dkv_open(dir, &o, &db), DKV_ERR_CORRUPT);
    assert_null(db);
    snprintf(path, sizeof(path), "%s/data.dkv", dir);
    assert_int_equal(stat(path, &st), 0);
    assert_true(st.st_size <= 64 << 20);                   /* not grown to it */
    fimg_remove_dir(dir);
    free(im.img);
}

static void test_log_insert_out_of_order(void **state)
{
    struct image im;
    char dir[256];
    unsigned char *r;
    dkv_options o;
    dkv_db *db = NULL;
    int rc;

    (void)state;
    make_image(&im, 1);
    /* an insert of a key after slot 0, moved to slot 0: above its successor */
    r = find_record(&im, is_leaf_insert);
    assert_non_null(r);
    store_le16(r + REC_HDR, 0);
    write_image(&im, dir, sizeof(dir));
    options(&o);
    rc = dkv_open(dir, &o, &db);
    /* The record is redone (its page on disk is older): refused.  Had the
       page been written back already, redo skips it: then the data must
       still scan in order. */
    if (rc == DKV_OK) {
        printf("the damaged record was not redone (its page is newer)\n");
        rc = scan_all(db);
        assert_true(rc == DKV_OK || rc == DKV_ERR_CORRUPT);
        dkv_close(db);
    } else {
        assert_rc(rc, DKV_ERR_CORRUPT);
    }
    fimg_remove_dir(dir);
    free(im.img);
}

static void test_own_child(void **state)
{
    struct image im;
    char dir[256], k[32];
    unsigned char *p, val[8] = "x";
    dkv_options o;
    dkv_db *db;
    unsigned root;
    size_t vl;

    (void)state;
    make_image(&im, 0);
    root = root_of(&im);
    p = page_at(&im, root);
    assert_int_equal(p[NODE_OFF_LEVEL], 1);                /* two levels */
    store_le32(p + NODE_OFF_LEFTMOST, root);               /* "key00000" goes there */
    write_image(&im, dir, sizeof(dir));
    options(&o);
    assert_rc(dkv_open(dir, &o, &db), DKV_OK);
    assert_rc(dkv_get(db, k, fimg_key(k, 0), val, sizeof(val), &vl), DKV_ERR_CORRUPT);
    assert_rc(dkv_put(db, k, fimg_key(k, 0), val, 1), DKV_ERR_CORRUPT);   /* no wait */
    dkv_close(db);
    fimg_remove_dir(dir);
    free(im.img);
}

static void test_failed_batch_then_close(void **state)
{
    struct image im;
    char dir[256], k[32];
    unsigned char *p, want[256], got[256];
    dkv_options o;
    dkv_batch *b = dkv_batch_new();
    dkv_db *db;
    uint32_t off;
    size_t wl, vl;
    unsigned leaf, first, last, other, n;

    (void)state;
    assert_non_null(b);
    make_image(&im, 0);
    /* damage the leaf holding the last key, not the first one */
    leaf = find_leaf(&im);
    p = page_at(&im, leaf);
    n = load_le16(p + NODE_OFF_COUNT);
    off = load_le16(p + NODE_HEADER_SIZE);
    first = (unsigned)strtoul((const char *)p + off + NODE_LEAF_CELL_HDR + 3, NULL, 10);
    off = load_le16(p + NODE_HEADER_SIZE + 2 * (n - 1));
    last = (unsigned)strtoul((const char *)p + off + NODE_LEAF_CELL_HDR + 3, NULL, 10);
    other = first > 0 ? 0 : last + 1;                      /* in another leaf */
    assert_true(other < KEYS);
    off = load_le16(p + NODE_HEADER_SIZE + 2 * 1);
    p[off + NODE_LEAF_CELL_HDR] = 'A';
    write_image(&im, dir, sizeof(dir));
    options(&o);
    assert_rc(dkv_open(dir, &o, &db), DKV_OK);
    assert_rc(dkv_get(db, k, fimg_key(k, last), got, sizeof(got), &vl), DKV_ERR_CORRUPT);
    /* the batch's first write lands on a sound leaf, its second fails */
    assert_rc(dkv_batch_put(b, k, fimg_key(k, other), "new", 3), DKV_OK);
    assert_rc(dkv_batch_put(b, k, fimg_key(k, last), "new", 3), DKV_OK);
    assert_rc(dkv_write(db, b), DKV_ERR_CORRUPT);
    assert_rc(dkv_close(db), DKV_ERR_CORRUPT);            /* the failure, not BUSY */
    /* reopened: nothing of the batch */
    assert_rc(dkv_open(dir, &o, &db), DKV_OK);
    wl = fimg_value(want, sizeof(want), other, 1);
    assert_rc(dkv_get(db, k, fimg_key(k, other), got, sizeof(got), &vl), DKV_OK);
    assert_int_equal(vl, wl);
    assert_memory_equal(got, want, wl);
    assert_rc(dkv_close(db), DKV_OK);
    dkv_batch_free(b);
    fimg_remove_dir(dir);
    free(im.img);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_leaf_out_of_order),
        cmocka_unit_test(test_leaf_value_length_wraps),
        cmocka_unit_test(test_log_page_far_beyond),
        cmocka_unit_test(test_log_insert_out_of_order),
        cmocka_unit_test(test_own_child),
        cmocka_unit_test(test_failed_batch_then_close),
    };
    struct test_fsize saved;

    /* A regression must not grow a file to gigabytes (in /dev/shm): past
       256 MiB a write fails (EFBIG), which the test reports. */
    if (test_limit_file_size(&saved, 256u << 20) != 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
