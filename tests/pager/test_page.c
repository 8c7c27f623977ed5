/*
 * test_page.c - the page header (pager/page.c, layout in
 * pager/page_format.h): page_init, page_stamp, page_verify and the
 * corruption report pager_last_corruption().
 *
 * For every page size from 4 KiB to 64 KiB a patterned page is initialised,
 * stamped and verified, and its header fields read back.  Then single-byte
 * damage is made at chosen places (the checksum, each header field, the
 * body, the last byte; every byte of a 4 KiB page) and each must make
 * page_verify return DKV_ERR_CORRUPT and leave a report naming the page;
 * so must verifying a page as another page number, and a page with a valid
 * checksum whose reserved header bytes are not zero.  An all-zero page
 * (never written) is DKV_NOTFOUND.  The report is per thread: a new thread
 * sees none.  The body bytes come from a seed printed at start;
 * DKV_TEST_SEED=N replays a run.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pager/pager.h"
#include "test_util.h"

#define PAGE_NO   7u
#define TEST_LSN  0x1122334455667788ull

static const uint32_t page_sizes[] = { 4096, 8192, 16384, 32768, 65536 };
#define N_SIZES (sizeof(page_sizes) / sizeof(page_sizes[0]))

static uint64_t g_seed;

/* A stamped page of this size: patterned body, PAGE_NO, TEST_LSN. */
static unsigned char *make_page(uint32_t size)
{
    unsigned char *p = malloc(size);

    assert_non_null(p);
    memset(p, 0xEE, size);          /* page_init must clear all of it */
    page_init(p, size, PAGE_NO, PAGE_TYPE_TEST);
    test_fill(p + PAGE_HEADER_SIZE, size - PAGE_HEADER_SIZE, g_seed ^ size);
    page_set_lsn(p, TEST_LSN);
    page_stamp(p, size);
    return p;
}

/* page_verify of a damaged page: DKV_ERR_CORRUPT and a report naming it. */
static void expect_corrupt(const unsigned char *p, uint32_t size, uint32_t no,
                           const char *what, size_t pos)
{
    struct pager_corruption c;
    int rc = page_verify(p, size, no);

    if (rc != DKV_ERR_CORRUPT)
        fail_msg("page size %u, %s at byte %zu: page_verify = %d (%s)",
                 size, what, pos, rc, dkv_strerror(rc));
    c = pager_last_corruption();
    assert_non_null(c.what);
    assert_non_null(c.file);
    assert_true(c.line > 0);
    assert_int_equal(c.page_no, no);
}

static void test_init_stamp_verify(void **state)
{
    unsigned i;

    (void)state;
    for (i = 0; i < N_SIZES; i++) {
        uint32_t size = page_sizes[i];
        unsigned char *p = malloc(size);
        unsigned k;

        assert_non_null(p);
        memset(p, 0xEE, size);
        page_init(p, size, PAGE_NO, PAGE_TYPE_BTREE_LEAF);
        assert_int_equal(page_type(p), PAGE_TYPE_BTREE_LEAF);
        assert_int_equal(page_no(p), PAGE_NO);
        assert_int_equal(page_lsn(p), 0);
        for (k = PAGE_HEADER_SIZE; k < size; k++)
            if (p[k] != 0)
                fail_msg("page_init left byte %u of a %u-byte page set", k, size);
        free(p);

        p = make_page(size);
        assert_rc(page_verify(p, size, PAGE_NO), DKV_OK);
        assert_int_equal(page_type(p), PAGE_TYPE_TEST);
        assert_int_equal(page_no(p), PAGE_NO);
        assert_int_equal(page_lsn(p), TEST_LSN);
        assert_int_equal(load_le32(p + PAGE_OFF_CRC),
                         crc32c(0, p + PAGE_OFF_TYPE, size - PAGE_OFF_TYPE));
        assert_true(test_mismatch(p + PAGE_HEADER_SIZE, size - PAGE_HEADER_SIZE,
                                  g_seed ^ size) == (size_t)-1);
        free(p);
    }
}

/* Flips one byte at each chosen place; the page must be refused, and
   accepted again once the byte is put back. */
static void test_single_byte_damage(void **state)
{
    unsigned i, j, k;

    (void)state;
    for (i = 0; i < N_SIZES; i++) {
        uint32_t size = page_sizes[i];
        unsigned char *p = make_page(size);
        const size_t pos[] = { 0, 1, 3, PAGE_OFF_TYPE, PAGE_OFF_FLAGS,
                               PAGE_OFF_PAGE_NO, PAGE_OFF_PAGE_NO + 3,
                               PAGE_OFF_RESERVED, PAGE_OFF_LSN, PAGE_OFF_LSN + 7,
                               PAGE_HEADER_SIZE, size / 2, size - 8, size - 1 };
        static const unsigned char masks[] = { 0x01, 0x80, 0xFF };

        for (j = 0; j < sizeof(pos) / sizeof(pos[0]); j++) {
            for (k = 0; k < sizeof(masks); k++) {
                p[pos[j]] ^= masks[k];
                expect_corrupt(p, size, PAGE_NO, "a flipped byte", pos[j]);
                p[pos[j]] ^= masks[k];
                assert_rc(page_verify(p, size, PAGE_NO), DKV_OK);
            }
        }
        free(p);
    }
}

static void test_every_byte_of_a_small_page(void **state)
{
    unsigned char *p = make_page(4096);
    size_t pos;

    (void)state;
    for (pos = 0; pos < 4096; pos++) {
        p[pos] ^= 0x10;
        expect_corrupt(p, 4096, PAGE_NO, "a flipped byte", pos);
        p[pos] ^= 0x10;
    }
    assert_rc(page_verify(p, 4096, PAGE_NO), DKV_OK);
    free(p);
}

static void test_wrong_page_number(void **state)
{
    unsigned i;

    (void)state;
    for (i = 0; i < N_SIZES; i++) {
        unsigned char *p = make_page(page_sizes[i]);
        expect_corrupt(p, page_sizes[i], PAGE_NO + 1, "verified as page 8", 0);
        expect_corrupt(p, page_sizes[i], 0, "verified as page 0", 0);
        assert_rc(page_verify(p, page_sizes[i], PAGE_NO), DKV_OK);
        free(p);
    }
}

/* Reserved header bytes set under a valid checksum are still refused. */
static void test_reserved_bytes_refused(void **state)
{
    static const size_t fields[] = { PAGE_OFF_FLAGS, PAGE_OFF_RESERVED };
    unsigned i, j;

    (void)state;
    for (i = 0; i < N_SIZES; i++) {
        uint32_t size = page_sizes[i];
        for (j = 0; j < 2; j++) {
            unsigned char *p = make_page(size);
            p[fields[j]] = 1;
            store_le32(p + PAGE_OFF_CRC,
                       crc32c(0, p + PAGE_OFF_TYPE, size - PAGE_OFF_TYPE));
            expect_corrupt(p, size, PAGE_NO, "a reserved byte set", fields[j]);
            free(p);
        }
    }
}

static void test_all_zero_is_notfound(void **state)
{
    unsigned i;

    (void)state;
    for (i = 0; i < N_SIZES; i++) {
        unsigned char *p = calloc(1, page_sizes[i]);
        assert_non_null(p);
        assert_rc(page_verify(p, page_sizes[i], PAGE_NO), DKV_NOTFOUND);
        assert_rc(page_verify(p, page_sizes[i], 0), DKV_NOTFOUND);
        p[page_sizes[i] - 1] = 1;           /* not quite zero: damage */
        expect_corrupt(p, page_sizes[i], PAGE_NO, "one byte set", 0);
        free(p);
    }
}

static void *read_report(void *arg)
{
    *(struct pager_corruption *)arg = pager_last_corruption();
    return NULL;
}

/* The report belongs to the thread that found the damage. */
static void test_report_is_per_thread(void **state)
{
    unsigned char *p = make_page(4096);
    struct pager_corruption mine, theirs;
    pthread_t t;

    (void)state;
    p[100] ^= 1;
    expect_corrupt(p, 4096, 42, "checked as page 42", 100);
    mine = pager_last_corruption();
    assert_int_equal(mine.page_no, 42);
    memset(&theirs, 0xAB, sizeof(theirs));
    assert_int_equal(pthread_create(&t, NULL, read_report, &theirs), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_null(theirs.what);
    assert_null(theirs.file);
    assert_int_equal(theirs.page_no, 0);
    free(p);
}

int main(void)
{
    static const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_stamp_verify),
        cmocka_unit_test(test_single_byte_damage),
        cmocka_unit_test(test_every_byte_of_a_small_page),
        cmocka_unit_test(test_wrong_page_number),
        cmocka_unit_test(test_reserved_bytes_refused),
        cmocka_unit_test(test_all_zero_is_notfound),
        cmocka_unit_test(test_report_is_per_thread),
    };

    g_seed = test_seed("test_page");
    return cmocka_run_group_tests_name("page", tests, NULL, NULL);
}
