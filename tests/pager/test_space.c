/*
 * test_space.c - the data file (pager/space.c): creating and reopening it,
 * its header page, growth by extents, and single-page I/O.
 *
 * Files are made in a fresh mkdtemp directory under /tmp and opened with
 * O_DIRECT (one test buffered); header and page I/O go through one AUTO
 * context of depth 8.  The tests create files with the default and each
 * explicit page size and reopen them (the recorded size wins; a different
 * one is refused and leaves the file byte for byte as it was), refuse bad
 * page sizes and missing files, grow a file with space_ensure (whole
 * extents, never one page; on a "full disk", RLIMIT_FSIZE, it fails with
 * DKV_ERR_NOSPACE and changes nothing), write pages, reopen and read them
 * back, keep the header's fields across a reopen, refuse writes when read
 * only, and check that damage is found: a flipped byte in a data page
 * (space_read_page), in the header, a header counting more pages than the
 * file holds, a truncated file or one that is not a data file at all
 * (space_open), all DKV_ERR_CORRUPT.  On-disk bytes are checked and
 * damaged with plain pread/pwrite while the space is closed.  Page bodies
 * come from a seed printed at start; DKV_TEST_SEED=N replays a run.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "dkv.h"
#include "pager/io.h"
#include "pager/pager.h"
#include "test_util.h"

static uint64_t        g_seed;
static struct test_dir g_dir;
static struct io_ctx  *g_ctx;
static int             g_direct = 1;      /* space_config.direct for tests */

static int group_setup(void **state)
{
    struct io_ctx_config cfg = { .engine = DKV_IO_AUTO, .depth = 8 };

    (void)state;
    if (test_dir_make(&g_dir, "/tmp") != 0)
        return -1;
    if (io_ctx_create(&cfg, &g_ctx) != DKV_OK)
        return -1;
    print_message("space I/O through %s\n", io_ctx_engine_name(g_ctx));
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    io_ctx_destroy(g_ctx);
    test_dir_remove(&g_dir);
    return 0;
}

/* A fresh (absent) path in the test directory. */
static const char *fresh_path(const char *name)
{
    static char path[256];

    test_dir_file(&g_dir, name, path, sizeof(path));
    unlink(path);
    return path;
}

static int open_space(const char *path, uint32_t page_size, int create,
                      struct space **spp)
{
    struct space_config cfg = { .page_size = page_size, .create = create,
                                .direct = g_direct };

    *spp = NULL;
    return space_open(path, &cfg, g_ctx, spp);
}

/* The whole file, read with plain I/O; *len gets its size. */
static unsigned char *slurp(const char *path, size_t *len)
{
    struct stat st;
    unsigned char *buf;
    int fd = open(path, O_RDONLY);

    assert_true(fd >= 0);
    assert_int_equal(fstat(fd, &st), 0);
    *len = (size_t)st.st_size;
    buf = malloc(*len ? *len : 1);
    assert_non_null(buf);
    assert_int_equal(pread(fd, buf, *len, 0), (ssize_t)*len);
    close(fd);
    return buf;
}

static void poke(const char *path, uint64_t off, const void *bytes, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT, 0644);

    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, bytes, n, (off_t)off), (ssize_t)n);
    close(fd);
}

/* XORs one byte of the file with mask. */
static void flip(const char *path, uint64_t off, unsigned char mask)
{
    unsigned char b;
    int fd = open(path, O_RDWR);

    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &b, 1, (off_t)off), 1);
    b ^= mask;
    assert_int_equal(pwrite(fd, &b, 1, (off_t)off), 1);
    close(fd);
}

static void check_created(const char *path, uint32_t want_size)
{
    struct space *sp;
    unsigned char *raw;
    size_t len;

    assert_rc(open_space(path, want_size == PAGE_SIZE_DEFAULT ? 0 : want_size, 1,
                         &sp), DKV_OK);
    assert_int_equal(space_page_size(sp), want_size);
    assert_int_equal(space_header(sp)->page_size, want_size);
    assert_int_equal(space_header(sp)->page_count, 1);
    assert_true(space_capacity(sp) >= 1);
    assert_int_equal(space_page_offset(sp, 3), 3 * (uint64_t)want_size);
    assert_rc(space_close(sp), DKV_OK);
    raw = slurp(path, &len);
    assert_true(len >= want_size);
    assert_memory_equal(raw + FHDR_OFF_MAGIC, FILE_MAGIC, sizeof(FILE_MAGIC));
    assert_int_equal(load_le32(raw + FHDR_OFF_VERSION), PAGE_FORMAT_VERSION);
    assert_int_equal(load_le32(raw + FHDR_OFF_PAGE_SIZE), want_size);
    assert_int_equal(load_le64(raw + FHDR_OFF_PAGE_COUNT), 1);
    assert_int_equal(page_type(raw), PAGE_TYPE_FILE_HEADER);
    assert_rc(page_verify(raw, want_size, 0), DKV_OK);
    free(raw);
}

static void test_create_default_and_4k(void **state)
{
    (void)state;
    check_created(fresh_path("default"), PAGE_SIZE_DEFAULT);
    check_created(fresh_path("small"), 4096);
}

static void test_reopen_takes_recorded_size(void **state)
{
    static const uint32_t sizes[] = { 4096, 8192, 16384, 32768, 65536 };
    struct space *sp;
    unsigned i;

    (void)state;
    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        const char *path = fresh_path("reopen");
        assert_rc(open_space(path, sizes[i], 1, &sp), DKV_OK);
        assert_rc(space_close(sp), DKV_OK);
        assert_rc(open_space(path, 0, 0, &sp), DKV_OK);
        assert_int_equal(space_page_size(sp), sizes[i]);
        assert_rc(space_close(sp), DKV_OK);
        assert_rc(open_space(path, sizes[i], 0, &sp), DKV_OK);   /* same: fine */
        assert_rc(space_close(sp), DKV_OK);
    }
}

static void test_reopen_other_size_refused(void **state)
{
    const char *path = fresh_path("other-size");
    unsigned char *before, *after;
    size_t len_before, len_after;
    struct space *sp;

    (void)state;
    assert_rc(open_space(path, 8192, 1, &sp), DKV_OK);
    assert_rc(space_close(sp), DKV_OK);
    before = slurp(path, &len_before);
    assert_rc(open_space(path, 16384, 1, &sp), DKV_ERR_INVALID);
    assert_null(sp);
    assert_rc(open_space(path, 4096, 0, &sp), DKV_ERR_INVALID);
    after = slurp(path, &len_after);
    assert_int_equal(len_after, len_before);
    assert_memory_equal(after, before, len_before);
    free(before);
    free(after);
}

static void test_bad_page_sizes_refused(void **state)
{
    static const uint32_t bad[] = { 1000, 3000, 2048, 131072, 4095, 12288,
                                    65536 * 2 + 4096 };
    struct space *sp;
    unsigned i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = open_space(fresh_path("bad-size"), bad[i], 1, &sp);
        if (rc != DKV_ERR_INVALID)
            fail_msg("page size %u: space_open = %d (%s)", bad[i], rc,
                     dkv_strerror(rc));
    }
}

static void test_missing_without_create(void **state)
{
    const char *path = fresh_path("missing");
    struct space *sp;

    (void)state;
    assert_rc(open_space(path, 0, 0, &sp), DKV_ERR_INVALID);
    assert_rc(open_space(path, 4096, 0, &sp), DKV_ERR_INVALID);
    assert_int_not_equal(access(path, F_OK), 0);
}

static void test_ensure_grows_by_extents(void **state)
{
    const char *path = fresh_path("ensure");
    struct space *sp;
    uint64_t cap0, cap1;

    (void)state;
    assert_rc(open_space(path, 4096, 1, &sp), DKV_OK);
    cap0 = space_capacity(sp);
    assert_int_equal(io_file_size(space_file(sp)), (int64_t)(cap0 * 4096));
    assert_rc(space_ensure(sp, cap0), DKV_OK);             /* no change */
    assert_int_equal(space_capacity(sp), cap0);
    assert_rc(space_ensure(sp, cap0 + 1), DKV_OK);
    cap1 = space_capacity(sp);
    print_message("capacity %llu -> %llu pages\n", (unsigned long long)cap0,
                  (unsigned long long)cap1);
    assert_true(cap1 >= cap0 + 1);
    assert_true(cap1 - cap0 > 1);                           /* an extent */
    assert_int_equal(io_file_size(space_file(sp)), (int64_t)(cap1 * 4096));
    assert_rc(space_ensure(sp, cap1 + 500), DKV_OK);        /* a big jump */
    assert_true(space_capacity(sp) >= cap1 + 500);
    assert_int_equal(io_file_size(space_file(sp)),
                     (int64_t)(space_capacity(sp) * 4096));
    assert_rc(space_close(sp), DKV_OK);
    assert_rc(open_space(path, 0, 0, &sp), DKV_OK);         /* capacity kept */
    assert_true(space_capacity(sp) >= cap1 + 500);
    assert_rc(space_close(sp), DKV_OK);
}

/* Writes pages 1..n with patterned bodies into buffers[i], stamped. */
static void write_pages(struct space *sp, unsigned char **bufs, unsigned n)
{
    uint32_t ps = space_page_size(sp);
    unsigned i;

    for (i = 1; i <= n; i++) {
        bufs[i] = io_buf_alloc(ps, ps);
        assert_non_null(bufs[i]);
        page_init(bufs[i], ps, i, PAGE_TYPE_TEST);
        page_set_lsn(bufs[i], 1000 + i);
        test_fill(bufs[i] + PAGE_HEADER_SIZE, ps - PAGE_HEADER_SIZE, g_seed ^ i ^ ps);
        assert_rc(space_write_page(sp, g_ctx, i, bufs[i]), DKV_OK);
    }
}

#define N_PAGES 10u

/* Pages written, the file closed and reopened: each reads back as
   written; a never-written page is DKV_NOTFOUND, one past the file
   DKV_ERR_INVALID. */
static void pages_survive_reopen(void)
{
    static const uint32_t sizes[] = { 4096, 16384, 65536 };
    unsigned char *bufs[N_PAGES + 1], *back;
    struct space *sp;
    unsigned i, s;

    for (s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        const char *path = fresh_path("pages");
        uint32_t ps = sizes[s];
        assert_rc(open_space(path, ps, 1, &sp), DKV_OK);
        assert_rc(space_ensure(sp, N_PAGES + 2), DKV_OK);
        write_pages(sp, bufs, N_PAGES);
        assert_rc(space_close(sp), DKV_OK);
        assert_rc(open_space(path, 0, 0, &sp), DKV_OK);
        back = io_buf_alloc(ps, ps);
        assert_non_null(back);
        for (i = 1; i <= N_PAGES; i++) {
            memset(back, 0xCC, ps);
            assert_rc(space_read_page(sp, g_ctx, i, back), DKV_OK);
            assert_memory_equal(back, bufs[i], ps);
            assert_int_equal(page_lsn(back), 1000 + i);
            io_buf_free(bufs[i], ps);
        }
        assert_rc(space_read_page(sp, g_ctx, N_PAGES + 1, back), DKV_NOTFOUND);
        assert_rc(space_read_page(sp, g_ctx, space_capacity(sp), back),
                  DKV_ERR_INVALID);
        io_buf_free(back, ps);
        if (!g_direct)
            assert_int_equal(io_file_direct(space_file(sp)), 0);
        assert_rc(space_close(sp), DKV_OK);
    }
}

static void test_pages_survive_reopen(void **state)
{
    (void)state;
    pages_survive_reopen();
}

static int use_buffered(void **state)
{
    (void)state;
    g_direct = 0;
    return 0;
}

static int use_direct(void **state)
{
    (void)state;
    g_direct = 1;
    return 0;
}

static void test_pages_survive_reopen_buffered(void **state)
{
    (void)state;
    pages_survive_reopen();
}

static void test_damaged_data_page(void **state)
{
    const char *path = fresh_path("damaged-page");
    unsigned char *bufs[N_PAGES + 1], *back;
    struct pager_corruption c;
    struct space *sp;
    unsigned i;

    (void)state;
    assert_rc(open_space(path, 4096, 1, &sp), DKV_OK);
    write_pages(sp, bufs, 4);
    assert_rc(space_close(sp), DKV_OK);
    flip(path, 3 * 4096 + 1000, 0x04);
    assert_rc(open_space(path, 0, 0, &sp), DKV_OK);
    back = io_buf_alloc(4096, 4096);
    assert_non_null(back);
    assert_rc(space_read_page(sp, g_ctx, 3, back), DKV_ERR_CORRUPT);
    c = pager_last_corruption();
    assert_non_null(c.what);
    assert_int_equal(c.page_no, 3);
    for (i = 1; i <= 4; i++) {
        if (i != 3)
            assert_rc(space_read_page(sp, g_ctx, i, back), DKV_OK);
        io_buf_free(bufs[i], 4096);
    }
    io_buf_free(back, 4096);
    assert_rc(space_close(sp), DKV_OK);
}

/* Damage anywhere in the header page is found at open. */
static void test_damaged_header(void **state)
{
    static const uint64_t offs[] = { 0, 5, FHDR_OFF_MAGIC + 2, FHDR_OFF_PAGE_COUNT,
                                     FHDR_OFF_META + 9, 1000, 16383 };
    struct pager_corruption c;
    struct space *sp;
    unsigned i;

    (void)state;
    for (i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
        const char *path = fresh_path("damaged-header");
        int rc;
        assert_rc(open_space(path, 16384, 1, &sp), DKV_OK);
        assert_rc(space_close(sp), DKV_OK);
        flip(path, offs[i], 0x20);
        rc = open_space(path, 0, 0, &sp);
        if (rc != DKV_ERR_CORRUPT)
            fail_msg("header byte %llu flipped: space_open = %d (%s)",
                     (unsigned long long)offs[i], rc, dkv_strerror(rc));
        c = pager_last_corruption();
        assert_non_null(c.what);
        assert_int_equal(c.page_no, 0);
    }
}

static void test_not_a_data_file(void **state)
{
    unsigned char junk[16384];
    const char *path = fresh_path("junk");
    struct space *sp;

    (void)state;
    memset(junk, 'x', sizeof(junk));
    poke(path, 0, junk, sizeof(junk));
    assert_rc(open_space(path, 0, 0, &sp), DKV_ERR_CORRUPT);
    assert_rc(open_space(path, 0, 1, &sp), DKV_ERR_CORRUPT);   /* never "created" */
    path = fresh_path("short");
    poke(path, 0, junk, 100);                                   /* truncated */
    assert_rc(open_space(path, 0, 0, &sp), DKV_ERR_CORRUPT);
}

static void test_header_fields_survive(void **state)
{
    const char *path = fresh_path("header");
    struct space_header *h;
    struct space *sp;
    unsigned i;

    (void)state;
    assert_rc(open_space(path, 8192, 1, &sp), DKV_OK);
    h = space_header(sp);
    h->page_count = 9;
    h->free_head = 4;
    h->free_count = 2;
    for (i = 0; i < FHDR_META_SLOTS; i++)
        h->meta[i] = (g_seed ^ (0x0101010101010101ull * (i + 1))) | 1;
    assert_rc(space_write_header(sp, g_ctx), DKV_OK);
    assert_rc(space_close(sp), DKV_OK);
    assert_rc(open_space(path, 0, 0, &sp), DKV_OK);
    h = space_header(sp);
    assert_int_equal(h->page_size, 8192);
    assert_int_equal(h->page_count, 9);
    assert_int_equal(h->free_head, 4);
    assert_int_equal(h->free_count, 2);
    for (i = 0; i < FHDR_META_SLOTS; i++)
        assert_int_equal(h->meta[i], (g_seed ^ (0x0101010101010101ull * (i + 1))) | 1);
    assert_rc(space_close(sp), DKV_OK);
}

/* Past RLIMIT_FSIZE (a full disk, as far as the file is concerned)
   space_ensure fails with DKV_ERR_NOSPACE and leaves capacity and file size
   as they were; the space goes on working. */
static void test_ensure_on_a_full_disk(void **state)
{
    const char *path = fresh_path("full");
    struct test_fsize saved;
    struct space *sp;
    uint64_t cap0;
    int64_t size0, size_after;
    int rc;

    (void)state;
    assert_rc(open_space(path, 4096, 1, &sp), DKV_OK);
    cap0 = space_capacity(sp);
    size0 = io_file_size(space_file(sp));
    assert_int_equal(test_limit_file_size(&saved, (uint64_t)size0 + 8192), 0);
    rc = space_ensure(sp, cap0 + 1);
    size_after = io_file_size(space_file(sp));
    test_unlimit_file_size(&saved);
    assert_rc(rc, DKV_ERR_NOSPACE);
    assert_int_equal(space_capacity(sp), cap0);
    assert_int_equal(size_after, size0);
    assert_rc(space_ensure(sp, cap0 + 1), DKV_OK);
    assert_true(space_capacity(sp) > cap0 + 1);
    assert_rc(space_close(sp), DKV_OK);
}

/* A header that claims more pages than the file holds: corrupt when the
   file cannot be grown (read-only), else grown back to match. */
static void test_page_count_beyond_file(void **state)
{
    const char *path = fresh_path("too-many");
    struct space_config ro = { .direct = g_direct, .read_only = 1 };
    struct space *sp;
    uint64_t count;

    (void)state;
    assert_rc(open_space(path, 4096, 1, &sp), DKV_OK);
    count = space_capacity(sp) + 1;
    space_header(sp)->page_count = count;
    assert_rc(space_write_header(sp, g_ctx), DKV_OK);
    assert_rc(space_close(sp), DKV_OK);
    /* Read-only, the file cannot be grown to match: corrupt. */
    assert_rc(space_open(path, &ro, g_ctx, &sp), DKV_ERR_CORRUPT);
    assert_int_equal(pager_last_corruption().page_no, 0);
    /* Writable: a crash can lose the size change of an extension whose
       header reached the disk, so the file is grown back. */
    assert_rc(open_space(path, 0, 0, &sp), DKV_OK);
    assert_true(space_capacity(sp) >= count);
    assert_int_equal(space_header(sp)->page_count, count);
    assert_rc(space_close(sp), DKV_OK);
}

/* Read-only: pages read, nothing written or grown, and a missing file is
   not created. */
static void test_read_only(void **state)
{
    const char *path = fresh_path("ro");
    struct space_config ro = { .page_size = 0, .create = 1, .direct = 1,
                               .read_only = 1 };
    unsigned char *bufs[N_PAGES + 1], *back;
    struct space *sp;

    (void)state;
    assert_rc(space_open(path, &ro, g_ctx, &sp), DKV_ERR_INVALID);
    assert_int_not_equal(access(path, F_OK), 0);
    assert_rc(open_space(path, 4096, 1, &sp), DKV_OK);
    write_pages(sp, bufs, 2);
    assert_rc(space_close(sp), DKV_OK);
    assert_rc(space_open(path, &ro, g_ctx, &sp), DKV_OK);
    back = io_buf_alloc(4096, 4096);
    assert_non_null(back);
    assert_rc(space_read_page(sp, g_ctx, 2, back), DKV_OK);
    assert_memory_equal(back, bufs[2], 4096);
    assert_rc(space_write_page(sp, g_ctx, 2, back), DKV_ERR_READONLY);
    assert_rc(space_write_header(sp, g_ctx), DKV_ERR_READONLY);
    assert_rc(space_ensure(sp, space_capacity(sp) + 1), DKV_ERR_READONLY);
    assert_rc(space_close(sp), DKV_OK);
    io_buf_free(back, 4096);
    io_buf_free(bufs[1], 4096);
    io_buf_free(bufs[2], 4096);
}

int main(void)
{
    static const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_default_and_4k),
        cmocka_unit_test(test_reopen_takes_recorded_size),
        cmocka_unit_test(test_reopen_other_size_refused),
        cmocka_unit_test(test_bad_page_sizes_refused),
        cmocka_unit_test(test_missing_without_create),
        cmocka_unit_test(test_ensure_grows_by_extents),
        cmocka_unit_test(test_pages_survive_reopen),
        cmocka_unit_test_setup_teardown(test_pages_survive_reopen_buffered,
                                        use_buffered, use_direct),
        cmocka_unit_test(test_damaged_data_page),
        cmocka_unit_test(test_damaged_header),
        cmocka_unit_test(test_not_a_data_file),
        cmocka_unit_test(test_header_fields_survive),
        cmocka_unit_test(test_ensure_on_a_full_disk),
        cmocka_unit_test(test_page_count_beyond_file),
        cmocka_unit_test(test_read_only),
    };

    g_seed = test_seed("test_space");
    return cmocka_run_group_tests_name("space", tests, group_setup, group_teardown);
}
