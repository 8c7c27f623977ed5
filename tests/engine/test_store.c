/*
 * test_store.c - the page store (engine/store.c): one directory holding the
 * data file, the redo log and the lock, with the buffer pool between them,
 * recovered at open.
 *
 * Each test gets a fresh mkdtemp directory under /tmp used as the store's
 * directory, a pool of 128 frames of 4 KiB, a 4 MiB log (1 MiB where the
 * log must fill) with a 1 MiB buffer, O_DIRECT.  Pages are allocated and
 * changed in committed MTRs (store_mtr_start, pool_mtr_*, store_commit);
 * their bytes come from keys mixed with the seed, so a page is checked by
 * regenerating them.  A crash is store_abandon: the log is synced as it stands, nothing
 * more reaches the data file, no checkpoint is written; the next
 * store_open recovers.  The tests check: open and close of a fresh
 * directory; a second opener in another process (fork) gets DKV_ERR_BUSY;
 * committed pages survive a crash, also when allocated and written in one
 * MTR or written twice in one MTR; recovery twice in a row (a crash right
 * after recovery, before anything is flushed) gives the same pages; a torn
 * data page or a torn header page (second half overwritten on disk) whose
 * last change follows the last checkpoint is restored from its full page
 * image in the log, a torn header with no such change is refused; a
 * damaged page whose last change precedes the last checkpoint is reported
 * by pool_fix as DKV_ERR_CORRUPT; a page holding an unfinished unit is not
 * written to disk even when the log was synced past it; a unit discarded
 * by one recovery stays discarded after later units; a small log fills,
 * checkpoints and wraps without a commit failing; DKV_COMMIT_ASYNC commits
 * return before they are durable and the log catches up within the commit
 * interval; a commit that fails (an MTR too large for the log buffer)
 * fails the store for good and the unlogged change never reaches the disk;
 * changes logged as engine-defined records (pool_mtr_log) are redone through
 * the store's apply function exactly when the page lacks them.
 * Files are damaged with pwrite while the store is closed.  The
 * seed is printed; DKV_TEST_SEED=N replays a run, DKV_TEST_FILTER=pattern
 * runs only the matching tests.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "dkv.h"
#include "engine/engine.h"
#include "pager/pager.h"
#include "wal/wal.h"
#include "test_util.h"

#define PS         4096u
#define FRAMES     128u
#define MIB        (1u << 20)
#define SYNC_END   (WAL_UNIT_END | WAL_SYNC)
#define BODY       (PS - PAGE_HEADER_SIZE)     /* bytes a page can carry */

static uint64_t g_seed;

struct shadow;

struct fx {
    struct test_dir     dir;
    struct store_config cfg;
    struct store       *s;
    struct wal_recovery rec;
    struct shadow      *shadow;      /* freed by the teardown            */
};

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t key_of(uint32_t page_no, unsigned version)
{
    return g_seed ^ ((uint64_t)page_no << 32) ^ (uint64_t)version * 0x9E3779B97F4A7C15ull;
}

/* ---- fixture ------------------------------------------------------------------- */

static int fx_setup(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));

    if (fx == NULL || test_dir_make(&fx->dir, "/tmp") != 0)
        return -1;
    fx->cfg.pool_size = (size_t)FRAMES * PS;
    fx->cfg.page_size = PS;
    fx->cfg.io_engine = DKV_IO_AUTO;
    fx->cfg.direct = 1;
    fx->cfg.commit_mode = DKV_COMMIT_SYNC;
    fx->cfg.create = 1;
    fx->cfg.log_capacity = 4 * MIB;
    fx->cfg.log_buffer = MIB;
    *state = fx;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *fx = *state;

    store_abandon(fx->s);
    test_dir_remove(&fx->dir);
    free(fx->shadow);
    free(fx);
    return 0;
}

static void fx_open(struct fx *fx)
{
    fx->s = NULL;
    assert_rc(store_open(fx->dir.path, &fx->cfg, &fx->s, &fx->rec), DKV_OK);
    assert_non_null(fx->s);
    assert_rc(pool_check(store_pool(fx->s)), DKV_OK);
}

/* A crash after the last log sync: nothing more reaches the data file. */
static void fx_crash(struct fx *fx)
{
    store_abandon(fx->s);
    fx->s = NULL;
}

static void fx_close(struct fx *fx)
{
    assert_rc(store_close(fx->s), DKV_OK);
    fx->s = NULL;
}

/* ---- pages ------------------------------------------------------------------------ */

/* Allocates a test page in its own committed, durable MTR. */
static uint32_t alloc_page(struct fx *fx)
{
    struct pool_mtr m;
    struct frame *f;
    uint32_t pg;
    int rc;

    assert_rc(store_mtr_start(fx->s, &m), DKV_OK);
    assert_rc(pool_mtr_alloc(&m, PAGE_TYPE_TEST, &f), DKV_OK);
    pg = frame_page_no(f);
    rc = store_commit(fx->s, &m, SYNC_END);
    pool_mtr_free_buffers(&m);
    assert_rc(rc, DKV_OK);
    return pg;
}

/* Adds to m a write of len bytes of key at off of page pg. */
static void mtr_put(struct pool_mtr *m, uint32_t pg, uint32_t off, uint64_t key,
                    uint32_t len)
{
    unsigned char buf[PS];
    struct frame *f;

    test_fill(buf, len, key);
    assert_rc(pool_mtr_fix(m, pg, POOL_X, 0, &f), DKV_OK);
    assert_rc(pool_mtr_write(m, f, off, buf, len), DKV_OK);
}

/* Commits m with flags and frees its buffers (also when it fails). */
static void commit(struct fx *fx, struct pool_mtr *m, int flags)
{
    int rc = store_commit(fx->s, m, flags);

    pool_mtr_free_buffers(m);
    assert_rc(rc, DKV_OK);
}

/* One MTR writing len bytes of key at off of page pg, committed with flags. */
static void put(struct fx *fx, uint32_t pg, uint32_t off, uint64_t key,
                uint32_t len, int flags)
{
    struct pool_mtr m;

    assert_rc(store_mtr_start(fx->s, &m), DKV_OK);
    mtr_put(&m, pg, off, key, len);
    commit(fx, &m, flags);
}

/* Page pg holds len bytes of key at off. */
static void expect(struct fx *fx, uint32_t pg, uint32_t off, uint64_t key,
                   uint32_t len)
{
    struct frame *f;
    size_t bad;

    assert_rc(pool_fix(store_pool(fx->s), pg, POOL_S, 0, &f), DKV_OK);
    bad = test_mismatch((unsigned char *)frame_data(f) + off, len, key);
    assert_int_equal(page_type(frame_data(f)), PAGE_TYPE_TEST);
    pool_unfix(store_pool(fx->s), f);
    if (bad != (size_t)-1)
        fail_msg("page %u: byte %zu of [%u, %u) is not what was committed",
                 pg, off + bad, off, off + len);
}

/* Page pg's body [PAGE_HEADER_SIZE, PS) equals body. */
static void expect_body(struct fx *fx, uint32_t pg, const unsigned char *body)
{
    struct frame *f;
    int same;

    assert_rc(pool_fix(store_pool(fx->s), pg, POOL_S, 0, &f), DKV_OK);
    same = memcmp((unsigned char *)frame_data(f) + PAGE_HEADER_SIZE, body, BODY) == 0;
    pool_unfix(store_pool(fx->s), f);
    if (!same)
        fail_msg("page %u differs from what was committed", pg);
}

static void expect_zero(struct fx *fx, uint32_t pg, uint32_t off, uint32_t len)
{
    const unsigned char *d;
    struct frame *f;
    uint32_t i;

    assert_rc(pool_fix(store_pool(fx->s), pg, POOL_S, 0, &f), DKV_OK);
    d = frame_data(f);
    for (i = 0; i < len && d[off + i] == 0; i++)
        ;
    pool_unfix(store_pool(fx->s), f);
    if (i < len)
        fail_msg("page %u: byte %u is %#x, expected the unchanged 0", pg, off + i,
                 d[off + i]);
}

static uint64_t page_lsn_of(struct fx *fx, uint32_t pg)
{
    struct frame *f;
    uint64_t lsn;

    assert_rc(pool_fix(store_pool(fx->s), pg, POOL_S, 0, &f), DKV_OK);
    lsn = page_lsn(frame_data(f));
    pool_unfix(store_pool(fx->s), f);
    return lsn;
}

/* Overwrites len bytes at off of the data file with a pattern. */
static void damage(struct fx *fx, uint64_t off, size_t len)
{
    unsigned char buf[PS];
    char path[256];
    int fd;

    memset(buf, 0xA5, sizeof(buf));
    test_dir_file(&fx->dir, "data.dkv", path, sizeof(path));
    fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, buf, len, (off_t)off), (ssize_t)len);
    close(fd);
}

/* ---- opening ---------------------------------------------------------------------- */

static void test_open_close_fresh(void **state)
{
    struct fx *fx = *state;

    fx_open(fx);
    assert_non_null(store_pool(fx->s));
    assert_non_null(store_wal(fx->s));
    assert_int_equal(fx->rec.mtrs, 0);
    fx_close(fx);
    fx->cfg.create = 0;
    fx_open(fx);
    assert_int_equal(fx->rec.mtrs, 0);
    fx_close(fx);
}

/* store_open of dir in a child process; returns its result code. */
static int open_in_child(struct fx *fx)
{
    int status = 0;
    pid_t pid;

    fflush(stdout);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct store_config cfg = fx->cfg;
        struct store *s = NULL;
        int rc;
        cfg.create = 0;
        rc = store_open(fx->dir.path, &cfg, &s, NULL);
        if (rc == DKV_OK)
            rc = store_close(s);
        _exit((unsigned char)rc);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return (signed char)WEXITSTATUS(status);
}

static void test_second_process_busy(void **state)
{
    struct fx *fx = *state;

    fx_open(fx);
    assert_rc(open_in_child(fx), DKV_ERR_BUSY);
    fx_close(fx);
    assert_rc(open_in_child(fx), DKV_OK);
}

/* ---- surviving a crash --------------------------------------------------------------- */

/* Eight pages, allocated one per MTR, written in MTRs of one or two pages. */
static void fill_eight(struct fx *fx, uint32_t *pg)
{
    struct pool_mtr m;
    unsigned i;

    for (i = 0; i < 8; i++)
        pg[i] = alloc_page(fx);
    for (i = 0; i < 8; i += 2) {
        assert_rc(store_mtr_start(fx->s, &m), DKV_OK);
        mtr_put(&m, pg[i], 100, key_of(pg[i], 1), 1000 + 300 * i);
        if (i % 4 == 0)
            mtr_put(&m, pg[i + 1], 40, key_of(pg[i + 1], 1), 3000);
        commit(fx, &m, i % 4 ? WAL_UNIT_END : SYNC_END);
        if (i % 4)
            put(fx, pg[i + 1], 40, key_of(pg[i + 1], 1), 3000, SYNC_END);
    }
}

static void expect_eight(struct fx *fx, const uint32_t *pg)
{
    unsigned i;

    for (i = 0; i < 8; i += 2) {
        expect(fx, pg[i], 100, key_of(pg[i], 1), 1000 + 300 * i);
        expect(fx, pg[i + 1], 40, key_of(pg[i + 1], 1), 3000);
    }
}

static void test_committed_pages_survive_crash(void **state)
{
    struct fx *fx = *state;
    uint32_t pg[8];

    fx_open(fx);
    fill_eight(fx, pg);
    fx_crash(fx);
    fx_open(fx);
    assert_true(fx->rec.mtrs >= 14);
    assert_int_equal(fx->rec.discarded_mtrs, 0);
    expect_eight(fx, pg);
    fx_close(fx);
    fx_open(fx);
    expect_eight(fx, pg);
}

static void test_recovery_idempotent(void **state)
{
    struct fx *fx = *state;
    struct wal_recovery first;
    uint32_t pg[8];

    fx_open(fx);
    fill_eight(fx, pg);
    put(fx, pg[0], 2000, key_of(pg[0], 2), 2000, SYNC_END);
    fx_crash(fx);
    fx_open(fx);                             /* recovery 1 ...              */
    first = fx->rec;
    fx_crash(fx);                            /* ... and a crash right after */
    fx_open(fx);
    assert_int_equal(fx->rec.checkpoint_lsn, first.checkpoint_lsn);
    assert_int_equal(fx->rec.end_lsn, first.end_lsn);
    assert_int_equal(fx->rec.mtrs, first.mtrs);
    expect_eight(fx, pg);
    expect(fx, pg[0], 2000, key_of(pg[0], 2), 2000);
    /* A third time, after the pages reached the disk. */
    assert_rc(pool_flush_all(store_pool(fx->s)), DKV_OK);
    fx_crash(fx);
    fx_open(fx);
    expect_eight(fx, pg);
    expect(fx, pg[0], 2000, key_of(pg[0], 2), 2000);
}

/* A page allocated and filled by one MTR (as a B+tree split does). */
static void test_alloc_and_write_in_one_mtr_survive_crash(void **state)
{
    struct fx *fx = *state;
    unsigned char buf[BODY];
    struct pool_mtr m;
    struct frame *f;
    uint32_t pg;

    fx_open(fx);
    (void)alloc_page(fx);                    /* page 0 imaged already */
    assert_rc(store_mtr_start(fx->s, &m), DKV_OK);
    assert_rc(pool_mtr_alloc(&m, PAGE_TYPE_TEST, &f), DKV_OK);
    pg = frame_page_no(f);
    test_fill(buf, 500, key_of(pg, 1));
    assert_rc(pool_mtr_write(&m, f, 100, buf, 500), DKV_OK);
    commit(fx, &m, SYNC_END);
    fx_crash(fx);
    fx_open(fx);
    expect(fx, pg, 100, key_of(pg, 1), 500);
}

/* Two writes to one page in one MTR, on a page already changed since the
   checkpoint (so the MTR carries records, not an image). */
static void test_two_writes_in_one_mtr_survive_crash(void **state)
{
    struct fx *fx = *state;
    struct pool_mtr m;
    uint32_t pg;

    fx_open(fx);
    pg = alloc_page(fx);
    put(fx, pg, 100, key_of(pg, 1), 50, SYNC_END);
    assert_rc(store_mtr_start(fx->s, &m), DKV_OK);
    mtr_put(&m, pg, 200, key_of(pg, 2), 50);
    mtr_put(&m, pg, 300, key_of(pg, 3), 50);
    commit(fx, &m, SYNC_END);
    fx_crash(fx);
    fx_open(fx);
    expect(fx, pg, 100, key_of(pg, 1), 50);
    expect(fx, pg, 200, key_of(pg, 2), 50);
    expect(fx, pg, 300, key_of(pg, 3), 50);
}

/* ---- torn and damaged pages ------------------------------------------------------------ */

/* With full page images (STORE_TORN_PAGE_IMAGES): a page's first change
   after a checkpoint is logged whole, and redo rebuilds a torn page from
   it. */

static void test_torn_data_page_restored(void **state)
{
    struct fx *fx = *state;
    unsigned char body[BODY];
    uint32_t p, q;

    fx->cfg.torn_pages = STORE_TORN_PAGE_IMAGES;
    fx_open(fx);
    p = alloc_page(fx);
    q = alloc_page(fx);
    put(fx, p, PAGE_HEADER_SIZE, key_of(p, 1), BODY, SYNC_END);
    put(fx, q, PAGE_HEADER_SIZE, key_of(q, 1), BODY, SYNC_END);
    assert_rc(store_checkpoint(fx->s), DKV_OK);
    put(fx, p, PAGE_HEADER_SIZE, key_of(p, 2), BODY, SYNC_END);   /* imaged */
    assert_rc(pool_flush_all(store_pool(fx->s)), DKV_OK);
    put(fx, p, 1000, key_of(p, 3), 2000, SYNC_END);
    fx_crash(fx);
    damage(fx, (uint64_t)p * PS + PS / 2, PS / 2);     /* a torn write of p */
    test_fill(body, BODY, key_of(p, 2));
    test_fill(body + 1000 - PAGE_HEADER_SIZE, 2000, key_of(p, 3));
    fx_open(fx);
    expect_body(fx, p, body);
    expect(fx, q, PAGE_HEADER_SIZE, key_of(q, 1), BODY);
    fx_close(fx);
    fx_open(fx);
    expect_body(fx, p, body);
}

static void test_torn_header_restored(void **state)
{
    struct fx *fx = *state;
    struct pool_mtr m;
    uint32_t p, q;

    fx->cfg.torn_pages = STORE_TORN_PAGE_IMAGES;
    fx_open(fx);
    p = alloc_page(fx);
    put(fx, p, 100, key_of(p, 1), 100, SYNC_END);
    assert_rc(store_checkpoint(fx->s), DKV_OK);
    assert_rc(store_mtr_start(fx->s, &m), DKV_OK);
    assert_rc(pool_mtr_meta_set(&m, 3, 0xC0FFEE), DKV_OK);    /* page 0 imaged */
    commit(fx, &m, SYNC_END);
    q = alloc_page(fx);
    put(fx, q, 100, key_of(q, 1), 100, SYNC_END);
    assert_rc(pool_flush_all(store_pool(fx->s)), DKV_OK);      /* page 0 on disk */
    fx_crash(fx);
    damage(fx, PS / 2, PS / 2);                                 /* torn page 0 */
    fx_open(fx);
    assert_int_equal(pool_meta_get(store_pool(fx->s), 3), 0xC0FFEE);
    assert_int_equal(q, p + 1);
    expect(fx, p, 100, key_of(p, 1), 100);
    expect(fx, q, 100, key_of(q, 1), 100);
    assert_int_equal(alloc_page(fx), q + 1);
    fx_close(fx);
    fx_open(fx);
    assert_int_equal(pool_meta_get(store_pool(fx->s), 3), 0xC0FFEE);
}

/* Page 0 damaged although it did not change since the checkpoint: no image
   in the log can restore it, so the open is refused. */
static void test_torn_header_without_image_refused(void **state)
{
    struct fx *fx = *state;
    uint32_t p;

    fx->cfg.torn_pages = STORE_TORN_PAGE_IMAGES;
    fx_open(fx);
    p = alloc_page(fx);
    assert_rc(store_checkpoint(fx->s), DKV_OK);
    put(fx, p, 100, key_of(p, 1), 100, SYNC_END);
    fx_crash(fx);
    damage(fx, PS / 2, PS / 2);
    assert_rc(store_open(fx->dir.path, &fx->cfg, &fx->s, NULL), DKV_ERR_CORRUPT);
    fx->s = NULL;
}

static void test_damaged_page_before_checkpoint_corrupt(void **state)
{
    struct fx *fx = *state;
    struct frame *f;
    uint32_t p, q;

    fx->cfg.torn_pages = STORE_TORN_PAGE_IMAGES;
    fx_open(fx);
    p = alloc_page(fx);
    q = alloc_page(fx);
    put(fx, p, 100, key_of(p, 1), 2000, SYNC_END);
    assert_rc(store_checkpoint(fx->s), DKV_OK);
    put(fx, q, 100, key_of(q, 1), 2000, SYNC_END);       /* log after it */
    fx_crash(fx);
    damage(fx, (uint64_t)p * PS + 1000, 1);
    fx_open(fx);
    assert_true(fx->rec.mtrs >= 1);
    assert_rc(pool_fix(store_pool(fx->s), p, POOL_S, 0, &f), DKV_ERR_CORRUPT);
    assert_rc(pool_fix(store_pool(fx->s), p, POOL_X, 0, &f), DKV_ERR_CORRUPT);
    expect(fx, q, 100, key_of(q, 1), 2000);
    assert_rc(pool_check(store_pool(fx->s)), DKV_OK);
}

/* With the doublewrite file (the default): every page write goes there
   first, so a page torn in place - simulated by damaging the page that the
   last batch wrote - is restored from its copy before redo, which then
   applies the later changes. */
static void test_dblwr_torn_page_restored(void **state)
{
    struct fx *fx = *state;
    unsigned char body[BODY];
    struct pool_stats ps;
    uint32_t p, q;

    fx_open(fx);
    p = alloc_page(fx);
    q = alloc_page(fx);
    put(fx, p, PAGE_HEADER_SIZE, key_of(p, 1), BODY, SYNC_END);
    put(fx, q, PAGE_HEADER_SIZE, key_of(q, 1), BODY, SYNC_END);
    assert_rc(store_checkpoint(fx->s), DKV_OK);
    put(fx, p, PAGE_HEADER_SIZE, key_of(p, 2), BODY, SYNC_END);
    assert_rc(pool_flush_all(store_pool(fx->s)), DKV_OK);   /* p via the file */
    put(fx, p, 1000, key_of(p, 3), 2000, SYNC_END);
    pool_stats_get(store_pool(fx->s), &ps);
    assert_int_equal(ps.images_logged, 0);  /* no page was logged whole */
    fx_crash(fx);
    damage(fx, (uint64_t)p * PS + PS / 2, PS / 2);     /* a torn write of p */
    test_fill(body, BODY, key_of(p, 2));
    test_fill(body + 1000 - PAGE_HEADER_SIZE, 2000, key_of(p, 3));
    fx_open(fx);
    assert_int_equal(store_torn_restored(fx->s), 1);
    expect_body(fx, p, body);
    expect(fx, q, PAGE_HEADER_SIZE, key_of(q, 1), BODY);
    fx_close(fx);
    fx_open(fx);
    assert_int_equal(store_torn_restored(fx->s), 0);
    expect_body(fx, p, body);
}

static void test_dblwr_torn_header_restored(void **state)
{
    struct fx *fx = *state;
    struct pool_mtr m;
    uint32_t p, q;

    fx_open(fx);
    p = alloc_page(fx);
    put(fx, p, 100, key_of(p, 1), 100, SYNC_END);
    assert_rc(store_checkpoint(fx->s), DKV_OK);
    assert_rc(store_mtr_start(fx->s, &m), DKV_OK);
    assert_rc(pool_mtr_meta_set(&m, 3, 0xC0FFEE), DKV_OK);
    commit(fx, &m, SYNC_END);
    q = alloc_page(fx);
    put(fx, q, 100, key_of(q, 1), 100, SYNC_END);
    assert_rc(pool_flush_all(store_pool(fx->s)), DKV_OK);      /* page 0 too */
    fx_crash(fx);
    damage(fx, PS / 2, PS / 2);                                 /* torn page 0 */
    fx_open(fx);
    assert_true(store_torn_restored(fx->s) >= 1);
    assert_int_equal(pool_meta_get(store_pool(fx->s), 3), 0xC0FFEE);
    expect(fx, p, 100, key_of(p, 1), 100);
    expect(fx, q, 100, key_of(q, 1), 100);
    assert_int_equal(alloc_page(fx), q + 1);
}

/* A store that wrote through the doublewrite file and is reopened with
   page images after a crash still gets its torn pages restored. */
static void test_dblwr_restored_when_switching_to_images(void **state)
{
    struct fx *fx = *state;
    uint32_t p;

    fx_open(fx);
    p = alloc_page(fx);
    put(fx, p, 100, key_of(p, 1), 2000, SYNC_END);
    assert_rc(pool_flush_all(store_pool(fx->s)), DKV_OK);
    fx_crash(fx);
    damage(fx, (uint64_t)p * PS + PS / 2, PS / 2);
    fx->cfg.torn_pages = STORE_TORN_PAGE_IMAGES;
    fx_open(fx);
    assert_int_equal(store_torn_restored(fx->s), 1);
    assert_null(store_dblwr(fx->s));
    expect(fx, p, 100, key_of(p, 1), 2000);
}

/* Damage that is not a torn write is reported, not hidden: here the
   doublewrite file holds only a stale copy of the page (older than the
   LSN in the damaged page's first sector), which must not be used. */
static void test_dblwr_stale_copy_not_used(void **state)
{
    struct fx *fx = *state;
    struct frame *f;
    uint32_t o, p, q;

    fx->cfg.cleaner_threads = POOL_NO_CLEANER;  /* batches in segment 0 only */
    fx_open(fx);
    o = alloc_page(fx);
    p = alloc_page(fx);
    q = alloc_page(fx);
    put(fx, o, 100, key_of(o, 1), 2000, SYNC_END);
    put(fx, p, 100, key_of(p, 1), 2000, SYNC_END);
    assert_rc(store_checkpoint(fx->s), DKV_OK);   /* [0, o, p, q]: slots 0..3 */
    put(fx, p, 100, key_of(p, 2), 2000, SYNC_END);
    assert_rc(pool_flush_all(store_pool(fx->s)), DKV_OK);    /* [p]: slot 0 */
    put(fx, q, 100, key_of(q, 1), 2000, SYNC_END);
    assert_rc(store_checkpoint(fx->s), DKV_OK);              /* [q]: slot 0 */
    fx_crash(fx);                      /* slot 2 still holds p's old copy */
    damage(fx, (uint64_t)p * PS + 1000, 1);
    fx_open(fx);
    assert_int_equal(store_torn_restored(fx->s), 0);
    assert_rc(pool_fix(store_pool(fx->s), p, POOL_S, 0, &f), DKV_ERR_CORRUPT);
    expect(fx, o, 100, key_of(o, 1), 2000);
    expect(fx, q, 100, key_of(q, 1), 2000);
}

/* Byte offset of doublewrite slot i (4 KiB header, then the slots). */
#define DW_SLOT(i) (4096u + (uint64_t)(i) * PS)

static int dw_fd(struct fx *fx)
{
    char path[256];
    int fd;

    test_dir_file(&fx->dir, "doublewrite.dkv", path, sizeof(path));
    fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    return fd;
}

/* A torn copy is never used: here both the page in place and its only
   copy are torn (slot 1: the batch was [page 0, p]); the page stays
   corrupt, reported, and nothing else is touched.  A damaged header of
   the file refuses the open with DKV_ERR_CORRUPT. */
static void test_dblwr_damaged_file(void **state)
{
    struct fx *fx = *state;
    unsigned char junk[PS];
    struct frame *f;
    uint32_t p, q;
    int fd;

    fx->cfg.cleaner_threads = POOL_NO_CLEANER;    /* one batch, segment 0 */
    fx_open(fx);
    p = alloc_page(fx);
    put(fx, p, 100, key_of(p, 1), 2000, SYNC_END);
    assert_rc(store_checkpoint(fx->s), DKV_OK);          /* [0, p] */
    q = alloc_page(fx);
    put(fx, q, 100, key_of(q, 1), 100, SYNC_END);        /* log after it */
    fx_crash(fx);
    memset(junk, 0x5A, sizeof(junk));
    fd = dw_fd(fx);
    assert_int_equal(pwrite(fd, junk, PS / 2, DW_SLOT(1) + PS / 2), PS / 2);
    damage(fx, (uint64_t)p * PS + PS / 2, PS / 2);
    fx_open(fx);
    assert_int_equal(store_torn_restored(fx->s), 0);
    assert_rc(pool_fix(store_pool(fx->s), p, POOL_S, 0, &f), DKV_ERR_CORRUPT);
    expect(fx, q, 100, key_of(q, 1), 100);
    fx_crash(fx);
    assert_int_equal(pwrite(fd, junk, 64, 0), 64);                     /* header */
    close(fd);
    assert_rc(store_open(fx->dir.path, &fx->cfg, &fx->s, NULL), DKV_ERR_CORRUPT);
    fx->s = NULL;
}

/* A doublewrite file whose creation never finished (zero-filled, no
   header: a crash between the fill and the header's sync) is laid out
   again at open, not refused. */
static void test_dblwr_unfinished_creation(void **state)
{
    struct fx *fx = *state;
    unsigned char zero[4096] = { 0 };
    uint32_t p;
    int fd;

    fx_open(fx);
    p = alloc_page(fx);
    put(fx, p, 100, key_of(p, 1), 100, SYNC_END);
    fx_crash(fx);
    fd = dw_fd(fx);
    assert_int_equal(pwrite(fd, zero, sizeof(zero), 0), (ssize_t)sizeof(zero));
    close(fd);
    fx_open(fx);
    expect(fx, p, 100, key_of(p, 1), 100);
    fx_close(fx);
    fx_open(fx);                                  /* and the header is back */
    expect(fx, p, 100, key_of(p, 1), 100);
}

/* Copies left by another database (data and log deleted, the doublewrite
   file kept) are not restored into a new one: creating the data file lays
   the doublewrite file out afresh. */
static void test_dblwr_reset_with_new_data_file(void **state)
{
    struct fx *fx = *state;
    char path[256];
    uint32_t p, p2;

    fx_open(fx);
    p = alloc_page(fx);
    put(fx, p, 100, key_of(p, 1), 2000, SYNC_END);
    assert_rc(store_checkpoint(fx->s), DKV_OK);    /* p's copy, high LSN */
    fx_close(fx);
    test_dir_file(&fx->dir, "data.dkv", path, sizeof(path));
    assert_int_equal(unlink(path), 0);
    test_dir_file(&fx->dir, "redo.log", path, sizeof(path));
    assert_int_equal(unlink(path), 0);
    fx_open(fx);                                   /* a new database */
    p2 = alloc_page(fx);
    assert_int_equal(p2, p);
    put(fx, p2, 100, key_of(p2, 7), 100, SYNC_END);
    fx_crash(fx);
    damage(fx, (uint64_t)p2 * PS + PS / 2, PS / 2);
    fx_open(fx);                 /* no copy of the new p: nothing restored */
    assert_int_equal(store_torn_restored(fx->s), 0);
    expect(fx, p2, 100, key_of(p2, 7), 100);       /* redo: from the log */
}

/* ---- commit units ---------------------------------------------------------------------- */

/* A page changed by an MTR of a unit that never ends must not reach the
   data file, even when the log was made durable past that MTR (by another
   committer's group write, a checkpoint's sync...): recovery discards the
   MTR and has nothing to undo the page with (W4).  The page is pushed out
   of the pool by reading many others (eviction), so that a correct pool
   simply keeps it and uses other frames. */
static void test_unfinished_unit_page_not_written(void **state)
{
    struct fx *fx = *state;
    struct pool_stats ps;
    struct frame *f;
    uint32_t p, i, round, first = 0;

    fx_open(fx);
    p = alloc_page(fx);
    put(fx, p, 100, key_of(p, 1), 100, SYNC_END);
    for (i = 0; i < 2 * FRAMES; i++) {
        uint32_t q = alloc_page(fx);
        first = first ? first : q;
    }
    assert_rc(store_checkpoint(fx->s), DKV_OK);               /* all clean */
    put(fx, p, 100, key_of(p, 2), 100, 0);       /* a unit that never ends */
    assert_rc(wal_sync(store_wal(fx->s)), DKV_OK);
    for (round = 0; round < 2; round++) {
        for (i = 0; i < 2 * FRAMES; i++) {
            assert_rc(pool_fix(store_pool(fx->s), first + i, POOL_S, 0, &f), DKV_OK);
            pool_unfix(store_pool(fx->s), f);
        }
    }
    pool_stats_get(store_pool(fx->s), &ps);
    print_message("after the scan: %" PRIu64 " evictions, %" PRIu64 " pages written\n",
                  ps.evictions, ps.pages_written);
    assert_true(ps.evictions > 0);           /* the page was pushed out */
    fx_crash(fx);
    fx_open(fx);
    assert_int_equal(fx->rec.discarded_mtrs, 1);
    print_message("page LSN %" PRIu64 ", recovered log end %" PRIu64 "\n",
                  page_lsn_of(fx, p), fx->rec.end_lsn);
    expect(fx, p, 100, key_of(p, 1), 100);
    assert_true(page_lsn_of(fx, p) <= fx->rec.end_lsn);
}

/* A unit discarded at one recovery stays discarded after the next unit. */
static void test_discarded_unit_stays_discarded(void **state)
{
    struct fx *fx = *state;
    uint32_t p, q;

    fx_open(fx);
    p = alloc_page(fx);
    q = alloc_page(fx);
    put(fx, p, 100, key_of(p, 1), 100, WAL_UNIT_END);   /* unit A, not synced */
    put(fx, q, 100, key_of(q, 1), 100, 0);              /* unit B begins      */
    assert_rc(wal_sync(store_wal(fx->s)), DKV_OK);
    fx_crash(fx);                                       /* B never ends       */
    fx_open(fx);
    assert_int_equal(fx->rec.discarded_mtrs, 1);
    expect(fx, p, 100, key_of(p, 1), 100);
    expect_zero(fx, q, 100, 100);
    put(fx, p, 100, key_of(p, 2), 100, SYNC_END);       /* unit C */
    fx_crash(fx);
    fx_open(fx);
    expect(fx, p, 100, key_of(p, 2), 100);
    expect_zero(fx, q, 100, 100);
}

/* A commit that fails (here: an MTR too large for the log buffer) fails
   the store for good: later commits and the close return the error, the
   unlogged change never reaches the disk, and reopening recovers the last
   committed state (E4). */
static void test_failed_commit_fails_store(void **state)
{
    struct fx *fx = *state;
    unsigned char buf[BODY];
    struct pool_mtr m;
    struct frame *f;
    uint32_t p, q;
    unsigned i;
    int rc;

    fx_open(fx);
    p = alloc_page(fx);
    q = alloc_page(fx);
    put(fx, p, PAGE_HEADER_SIZE, key_of(p, 1), BODY, SYNC_END);
    assert_rc(store_mtr_start(fx->s, &m), DKV_OK);
    assert_rc(pool_mtr_fix(&m, p, POOL_X, 0, &f), DKV_OK);
    for (i = 0; i < 100; i++) {        /* 400 KiB of records: over 1/4 MiB */
        test_fill(buf, BODY, key_of(p, 2 + i));
        assert_rc(pool_mtr_write(&m, f, PAGE_HEADER_SIZE, buf, BODY), DKV_OK);
    }
    rc = store_commit(fx->s, &m, SYNC_END);
    pool_mtr_free_buffers(&m);
    assert_rc(rc, DKV_ERR_INVALID);
    assert_rc(store_mtr_start(fx->s, &m), DKV_ERR_INVALID);
    assert_rc(store_close(fx->s), DKV_ERR_INVALID);
    fx->s = NULL;
    fx_open(fx);
    expect(fx, p, PAGE_HEADER_SIZE, key_of(p, 1), BODY);
    expect_zero(fx, q, PAGE_HEADER_SIZE, BODY);
    put(fx, q, 100, key_of(q, 1), 100, SYNC_END);     /* and it goes on */
    fx_crash(fx);
    fx_open(fx);
    expect(fx, q, 100, key_of(q, 1), 100);
}

/* ---- engine records ---------------------------------------------------------------------- */

/* A record type of the test's own: fill count bytes at off with a byte. */
#define REC_FILL (REDO_PAGER_MAX + 1)

struct fill_rec {
    unsigned char off[4], count[4], byte;
};

static int fill_redo(void *arg, void *page, uint32_t page_size, int type,
                     const void *payload, uint32_t len)
{
    const struct fill_rec *r = payload;
    uint32_t off, count;

    (*(unsigned *)arg)++;
    if (type != REC_FILL || len != sizeof(*r))
        return DKV_ERR_CORRUPT;
    off = load_le32(r->off);
    count = load_le32(r->count);
    if (off < PAGE_HEADER_SIZE || off + (uint64_t)count > page_size)
        return DKV_ERR_CORRUPT;
    memset((unsigned char *)page + off, r->byte, count);
    return DKV_OK;
}

static unsigned g_fill_applied;

static int fill_apply(void *arg, struct pool *pool, uint64_t end_lsn, int type,
                      uint32_t page_no, const void *payload, uint32_t len)
{
    return pool_redo_apply_fn(pool, end_lsn, type, page_no, payload, len,
                              fill_redo, arg);
}

/* One MTR changing page pg by hand and logging it as a REC_FILL. */
static void put_fill(struct fx *fx, uint32_t pg, uint32_t off, uint32_t count,
                     unsigned char byte)
{
    struct fill_rec r;
    struct pool_mtr m;
    struct frame *f;

    store_le32(r.off, off);
    store_le32(r.count, count);
    r.byte = byte;
    assert_rc(store_mtr_start(fx->s, &m), DKV_OK);
    assert_rc(pool_mtr_fix(&m, pg, POOL_X, 0, &f), DKV_OK);
    memset((unsigned char *)frame_data(f) + off, byte, count);
    assert_rc(pool_mtr_log(&m, f, REC_FILL, &r, sizeof(r)), DKV_OK);
    assert_rc(pool_mtr_log(&m, f, REDO_PAGE_WRITE, &r, sizeof(r)), DKV_ERR_INVALID);
    commit(fx, &m, SYNC_END);
}

static void expect_fill(struct fx *fx, uint32_t pg, uint32_t off, uint32_t count,
                        unsigned char byte)
{
    const unsigned char *d;
    struct frame *f;
    uint32_t i;

    assert_rc(pool_fix(store_pool(fx->s), pg, POOL_S, 0, &f), DKV_OK);
    d = frame_data(f);
    for (i = 0; i < count && d[off + i] == byte; i++)
        ;
    pool_unfix(store_pool(fx->s), f);
    if (i < count)
        fail_msg("page %u: byte %u is %#x, expected %#x", pg, off + i, d[off + i], byte);
}

/* Changes logged as engine records come back through the engine's apply
   function, once per change the page lacks (not again when the page has
   it); without an apply function the open is refused. */
static void test_engine_records_redone(void **state)
{
    struct fx *fx = *state;
    uint32_t p, q;

    fx->cfg.apply = fill_apply;
    fx->cfg.apply_arg = &g_fill_applied;
    fx_open(fx);
    p = alloc_page(fx);
    q = alloc_page(fx);
    put_fill(fx, p, 100, 500, 0x11);
    assert_rc(store_checkpoint(fx->s), DKV_OK);
    put_fill(fx, p, 300, 500, 0x22);                 /* after the checkpoint */
    put_fill(fx, q, 1000, 50, 0x33);
    fx_crash(fx);
    g_fill_applied = 0;
    fx_open(fx);
    assert_int_equal(g_fill_applied, 2);
    expect_fill(fx, p, 100, 200, 0x11);
    expect_fill(fx, p, 300, 500, 0x22);
    expect_fill(fx, q, 1000, 50, 0x33);
    assert_rc(store_checkpoint(fx->s), DKV_OK);      /* pages written ... */
    put_fill(fx, q, 2000, 10, 0x44);
    fx_crash(fx);
    g_fill_applied = 0;
    fx_open(fx);                                     /* ... only q's new one */
    assert_int_equal(g_fill_applied, 1);
    expect_fill(fx, q, 1000, 50, 0x33);
    expect_fill(fx, q, 2000, 10, 0x44);
    put_fill(fx, p, 3000, 10, 0x55);
    fx_crash(fx);
    fx->cfg.apply = NULL;
    assert_rc(store_open(fx->dir.path, &fx->cfg, &fx->s, NULL), DKV_ERR_CORRUPT);
    fx->s = NULL;
    fx->cfg.apply = fill_apply;
    fx_open(fx);
    expect_fill(fx, p, 3000, 10, 0x55);
    assert_rc(store_checkpoint(fx->s), DKV_OK);
    put_fill(fx, q, 4000, 10, 0x66);
    assert_rc(pool_flush_all(store_pool(fx->s)), DKV_OK);   /* page has it */
    fx_crash(fx);
    g_fill_applied = 0;
    fx_open(fx);
    assert_int_equal(g_fill_applied, 0);
    expect_fill(fx, q, 4000, 10, 0x66);
}

/* ---- the log filling --------------------------------------------------------------------- */

struct shadow {
    unsigned char page[16][PS];
    uint32_t      pg[16];
};

static void check_shadow(struct fx *fx, const struct shadow *sh)
{
    unsigned i;

    for (i = 0; i < 16; i++)
        expect_body(fx, sh->pg[i], sh->page[i] + PAGE_HEADER_SIZE);
}

static void test_small_log_checkpoints_and_wraps(void **state)
{
    struct fx *fx = *state;
    struct shadow *sh = fx->shadow = calloc(1, sizeof(*sh));
    uint64_t rng = g_seed ^ 0x51, t0 = now_ms();
    struct wal_stats st;
    unsigned i;

    assert_non_null(sh);
    fx->cfg.log_capacity = MIB;
    fx_open(fx);
    for (i = 0; i < 16; i++)
        sh->pg[i] = alloc_page(fx);
    for (i = 0; i < 2500; i++) {
        uint64_t r = test_splitmix64(&rng);
        unsigned k = (unsigned)(r % 16);
        uint32_t len = 100 + (uint32_t)(r >> 8) % 1900;
        uint32_t off = PAGE_HEADER_SIZE + (uint32_t)(r >> 24) % (BODY - len);
        put(fx, sh->pg[k], off, r, len, i % 8 ? WAL_UNIT_END : SYNC_END);
        test_fill(sh->page[k] + off, len, r);
    }
    wal_stats_get(store_wal(fx->s), &st);
    print_message("small log: %" PRIu64 " bytes of log (%.1f laps) in %" PRIu64
                  " ms, %" PRIu64 " checkpoints, %" PRIu64 " stalls (longest %"
                  PRIu64 " us)\n", st.lsn, (double)st.lsn / (double)st.capacity,
                  now_ms() - t0, st.checkpoints, st.stalls, st.stall_max_us);
    assert_true(st.checkpoints > 0);
    assert_true(st.lsn > 2 * st.capacity);
    check_shadow(fx, sh);
    fx_crash(fx);
    fx_open(fx);
    check_shadow(fx, sh);
}

/* ---- asynchronous commits ---------------------------------------------------------------- */

static void test_async_commit_becomes_durable(void **state)
{
    struct fx *fx = *state;
    struct wal_stats st;
    uint64_t target = 0, t0;
    uint32_t p;
    unsigned tries;

    fx->cfg.commit_mode = DKV_COMMIT_ASYNC;
    fx->cfg.commit_interval_ms = 50;
    fx_open(fx);
    p = alloc_page(fx);
    for (tries = 0; tries < 5; tries++) {
        put(fx, p, 100, key_of(p, tries), 100, SYNC_END);
        wal_stats_get(store_wal(fx->s), &st);
        target = st.lsn;
        if (st.durable_lsn < target)
            break;                      /* returned before it was durable */
    }
    assert_true(tries < 5);
    t0 = now_ms();
    do {
        struct timespec ms = { 0, 1000000L };
        nanosleep(&ms, NULL);
        wal_stats_get(store_wal(fx->s), &st);
    } while (st.durable_lsn < target && now_ms() - t0 < 3000);
    print_message("async: durable after %" PRIu64 " ms (interval 50 ms)\n",
                  now_ms() - t0);
    assert_true(st.durable_lsn >= target);
    fx_crash(fx);
    fx_open(fx);
    expect(fx, p, 100, key_of(p, tries), 100);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, fx_setup, fx_teardown)
    const struct CMUnitTest tests[] = {
        T(test_open_close_fresh),
        T(test_second_process_busy),
        T(test_committed_pages_survive_crash),
        T(test_recovery_idempotent),
        T(test_alloc_and_write_in_one_mtr_survive_crash),
        T(test_two_writes_in_one_mtr_survive_crash),
        T(test_torn_data_page_restored),
        T(test_torn_header_restored),
        T(test_torn_header_without_image_refused),
        T(test_damaged_page_before_checkpoint_corrupt),
        T(test_unfinished_unit_page_not_written),
        T(test_dblwr_torn_page_restored),
        T(test_dblwr_torn_header_restored),
        T(test_dblwr_restored_when_switching_to_images),
        T(test_dblwr_stale_copy_not_used),
        T(test_dblwr_damaged_file),
        T(test_dblwr_unfinished_creation),
        T(test_dblwr_reset_with_new_data_file),
        T(test_discarded_unit_stays_discarded),
        T(test_failed_commit_fails_store),
        T(test_engine_records_redone),
        T(test_small_log_checkpoints_and_wraps),
        T(test_async_commit_becomes_durable),
    };
#undef T

    if (getenv("DKV_TEST_FILTER") != NULL)       /* e.g. "*torn*" */
        cmocka_set_test_filter(getenv("DKV_TEST_FILTER"));
    g_seed = test_seed("test_store");
    return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
