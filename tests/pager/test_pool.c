/*
 * test_pool.c - the buffer pool (pager/pool.c, lru.c, cleaner.c, and the
 * unlogged pool_page_alloc/free and pool_meta_set): hit and miss
 * accounting, the midpoint-insertion LRU and old_blocks_time, scan
 * resistance, pinning, write-back and the write-ahead hook, changes that
 * race the cleaner's writes, many threads fixing at once, small pools,
 * the persistent free-page list, the meta slots, corruption, prefetch, a
 * pool whose frames are all pinned, and the cleaner's free-frame reserve.
 *
 * Each test gets a fresh mkdtemp directory under /tmp, an AUTO io_ctx of
 * depth 8 for the space's own header I/O, and a data file of 4 KiB pages
 * opened with O_DIRECT; it opens a small pool (32..256 frames) over it.
 * Pages are made with pool_page_alloc; each body (from PAGE_HEADER_SIZE)
 * holds a generation number followed by bytes that depend only on the
 * seed, the page number and the generation, so any fix can check that it
 * sees the page it asked for, whole and current.  Tests that need many
 * pages on disk load them through a large scratch pool first, then open
 * the small pool under test cold.  LRU timing runs on an injected clock
 * that the test advances; tests that need determinism run without the
 * page cleaner (POOL_NO_CLEANER).  pool_check runs after every step of the
 * single-threaded tests.  The write-ahead hook test reads the file with
 * plain pread inside the hook, to prove that no page reached the disk
 * before the log covering it was "durable".  Waits on the cleaner poll
 * with a bound, never sleep a fixed time.  The random parts print their
 * seed; DKV_TEST_SEED=N replays a run, and DKV_TEST_FILTER=pattern (a
 * cmocka glob such as "*scan*") runs only the matching tests.
 */
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "dkv.h"
#include "pager/io.h"
#include "pager/pager.h"
#include "pager/pool_int.h"
#include "test_util.h"

#define PS          4096u                       /* page size              */
#define BODY        (PS - PAGE_HEADER_SIZE)     /* bytes after the header */
#define OLD_TIME_MS 1000u                       /* old_blocks_time used   */

static uint64_t g_seed;

/* ---- the fixture --------------------------------------------------------- */

struct fx {
    struct test_dir    dir;
    char               path[256];
    struct io_ctx     *ctx;          /* the space's header I/O           */
    struct space      *sp;
    struct pool       *pool;
    struct pool_config cfg;          /* what pool_open got last          */
    _Atomic uint64_t   now;          /* the injected clock, ms           */
    uint64_t           lsn;          /* the last LSN handed out          */
};

static uint64_t fx_clock(void *arg)
{
    return atomic_load((_Atomic uint64_t *)arg);
}

static int space_open_at(struct fx *fx, int create)
{
    struct space_config scfg = { .page_size = PS, .create = create, .direct = 1 };

    return space_open(fx->path, &scfg, fx->ctx, &fx->sp);
}

static int fx_setup(void **state)
{
    struct io_ctx_config icfg = { .engine = DKV_IO_AUTO, .depth = 8 };
    struct fx *fx = calloc(1, sizeof(*fx));

    if (fx == NULL || test_dir_make(&fx->dir, "/tmp") != 0)
        return -1;
    test_dir_file(&fx->dir, "data", fx->path, sizeof(fx->path));
    if (io_ctx_create(&icfg, &fx->ctx) != DKV_OK)
        return -1;
    if (space_open_at(fx, 1) != DKV_OK)
        return -1;
    atomic_store(&fx->now, 1000000);
    *state = fx;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *fx = *state;

    pool_close(fx->pool);
    space_close(fx->sp);
    io_ctx_destroy(fx->ctx);
    test_dir_remove(&fx->dir);
    free(fx);
    return 0;
}

/* A configuration for a pool of frames pages on the injected clock. */
static struct pool_config fx_config(struct fx *fx, unsigned frames,
                                    unsigned cleaner)
{
    struct pool_config cfg;

    memset(&cfg, 0, sizeof(cfg));
    cfg.pool_size = (size_t)frames * PS;
    cfg.io_engine = DKV_IO_AUTO;
    cfg.old_blocks_time_ms = OLD_TIME_MS;
    cfg.cleaner_threads = cleaner;
    cfg.clock_ms = fx_clock;
    cfg.clock_arg = &fx->now;
    return cfg;
}

static void fx_open_cfg(struct fx *fx, const struct pool_config *cfg)
{
    fx->cfg = *cfg;
    assert_rc(pool_open(fx->sp, cfg, &fx->pool), DKV_OK);
    assert_rc(pool_check(fx->pool), DKV_OK);
}

static void fx_open(struct fx *fx, unsigned frames, unsigned cleaner)
{
    struct pool_config cfg = fx_config(fx, frames, cleaner);

    fx_open_cfg(fx, &cfg);
}

static void fx_close(struct fx *fx)
{
    pool_close(fx->pool);
    fx->pool = NULL;
}

/* Drops the pool and the space and opens both again with the same
   configuration (the caller flushed what it wants kept). */
static void fx_reopen(struct fx *fx)
{
    struct pool_config cfg = fx->cfg;

    fx_close(fx);
    assert_rc(space_close(fx->sp), DKV_OK);
    fx->sp = NULL;
    assert_rc(space_open_at(fx, 0), DKV_OK);
    fx_open_cfg(fx, &cfg);
}

static struct pool_stats fx_stats(struct fx *fx)
{
    struct pool_stats st;

    pool_stats_get(fx->pool, &st);
    return st;
}

/* ---- page contents ------------------------------------------------------- */

static uint64_t body_key(uint32_t pno, uint64_t gen)
{
    uint64_t s = g_seed ^ ((uint64_t)pno * 0xD1B54A32D192ED03ull) ^
                 (gen * 0x8CB92BA72F3D8DD7ull);

    return test_splitmix64(&s);
}

/* Writes generation gen of page pno's body. */
static void body_write(void *page, uint32_t pno, uint64_t gen)
{
    unsigned char *b = (unsigned char *)page + PAGE_HEADER_SIZE;

    store_le64(b, gen);
    test_fill(b + 8, BODY - 8, body_key(pno, gen));
}

/* 1 when page is page pno's generation gen, whole. */
static int body_ok(const void *page, uint32_t pno, uint64_t gen)
{
    const unsigned char *b = (const unsigned char *)page + PAGE_HEADER_SIZE;

    return page_no(page) == pno && load_le64(b) == gen &&
           test_mismatch(b + 8, BODY - 8, body_key(pno, gen)) == (size_t)-1;
}

/* Says how page differs from page pno's generation gen, for a failure. */
static const char *body_diff(const void *page, uint32_t pno, uint64_t gen)
{
    static char msg[160];
    const unsigned char *b = (const unsigned char *)page + PAGE_HEADER_SIZE;
    size_t at = test_mismatch(b + 8, BODY - 8, body_key(pno, load_le64(b)));

    snprintf(msg, sizeof(msg), "page %u: want generation %" PRIu64 "; found "
             "page_no %u, type %d, lsn %" PRIu64 ", generation %" PRIu64
             ", body %s at body byte %zd", pno, gen, page_no(page), page_type(page),
             page_lsn(page), load_le64(b), at == (size_t)-1 ? "whole" : "differs",
             at == (size_t)-1 ? (ssize_t)-1 : (ssize_t)(at + 8));
    return msg;
}

/* Allocates n pages through the open pool, generation 0, each at a new
   LSN; they must come out as pages first..first+n-1. */
static void fx_alloc(struct fx *fx, uint32_t first, unsigned n)
{
    struct frame *f;
    unsigned i;

    for (i = 0; i < n; i++) {
        assert_rc(pool_page_alloc(fx->pool, PAGE_TYPE_TEST, ++fx->lsn, &f), DKV_OK);
        assert_int_equal(frame_page_no(f), first + i);
        body_write(frame_data(f), first + i, 0);
        pool_unfix(fx->pool, f);
        assert_rc(pool_check(fx->pool), DKV_OK);
    }
}

/* Puts pages 1..n on disk through a scratch pool large enough to hold
   them, flushed and closed: the pool under test starts cold. */
static void fx_load(struct fx *fx, unsigned n)
{
    fx_open(fx, n + 64 > POOL_FRAMES_MIN ? n + 64 : POOL_FRAMES_MIN,
            POOL_NO_CLEANER);
    fx_alloc(fx, 1, n);
    assert_rc(pool_flush_all(fx->pool), DKV_OK);
    assert_int_equal(fx_stats(fx).dirty_pages, 0);
    fx_close(fx);
}

/* Fixes pno, checks generation 0 of its body, and unfixes it. */
static void touch(struct fx *fx, uint32_t pno)
{
    struct frame *f;

    assert_rc(pool_fix(fx->pool, pno, POOL_S, 0, &f), DKV_OK);
    assert_int_equal(frame_page_no(f), pno);
    if (!body_ok(frame_data(f), pno, 0))
        fail_msg("%s", body_diff(frame_data(f), pno, 0));
    pool_unfix(fx->pool, f);
    assert_rc(pool_check(fx->pool), DKV_OK);
}

static void advance(struct fx *fx, uint64_t ms)
{
    atomic_fetch_add(&fx->now, ms);
}

/* Where the old sublist starts: the position of its head. */
static long old_head(struct fx *fx)
{
    struct pool_stats st = fx_stats(fx);

    return (long)(st.lru_len - st.old_len);
}

/* ---- hits and misses ----------------------------------------------------- */

/* An uncached page is a miss and a read; fixed again, a hit. */
static void test_stats_count_hits_and_misses(void **state)
{
    struct fx *fx = *state;
    struct pool_stats a, b, c;

    fx_load(fx, 8);
    fx_open(fx, 64, POOL_NO_CLEANER);
    a = fx_stats(fx);
    touch(fx, 5);
    b = fx_stats(fx);
    assert_int_equal(b.misses - a.misses, 1);
    assert_int_equal(b.pages_read - a.pages_read, 1);
    assert_int_equal(b.hits - a.hits, 0);
    touch(fx, 5);
    c = fx_stats(fx);
    assert_int_equal(c.hits - b.hits, 1);
    assert_int_equal(c.misses - b.misses, 0);
    assert_int_equal(c.pages_read - b.pages_read, 0);
    assert_int_equal(c.frames, 64);
    assert_int_equal(c.used + c.free_frames, 64);
}

/* ---- the LRU ------------------------------------------------------------- */

/* Every page read enters the head of the old sublist: not young, at
   position lru_len - old_len.  Checked while a 64-frame pool fills and
   then while it evicts, whenever the LRU is long enough to have an old
   sublist at all. */
static void test_new_page_enters_old_head(void **state)
{
    struct fx *fx = *state;
    unsigned bad = 0, checked = 0;
    uint32_t p, first_bad = 0;
    long first_pos = 0, first_head = 0;

    fx_load(fx, 160);
    fx_open(fx, 64, POOL_NO_CLEANER);
    for (p = 1; p <= 160; p++) {
        struct pool_stats st;
        touch(fx, p);
        st = fx_stats(fx);
        if (st.lru_len * 37 / 100 < 1)
            continue;                    /* too short for an old sublist */
        checked++;
        if (!pool_is_young(fx->pool, p) &&
            pool_lru_position(fx->pool, p) == old_head(fx))
            continue;
        if (bad++ == 0) {
            first_bad = p;
            first_pos = pool_lru_position(fx->pool, p);
            first_head = old_head(fx);
        }
    }
    if (bad > 0)
        fail_msg("%u of %u pages read did not enter the old head; first: "
                 "page %u young=%d at %ld, old head at %ld",
                 bad, checked, first_bad, pool_is_young(fx->pool, first_bad),
                 first_pos, first_head);
}

/* A full 128-frame pool holding pages 1..128; page 200 is then read. */
static void lru_fill_and_read(struct fx *fx, unsigned time_ms)
{
    struct pool_config cfg = fx_config(fx, 128, POOL_NO_CLEANER);
    uint32_t p;

    cfg.old_blocks_time_ms = time_ms;
    fx_load(fx, 200);
    fx_open_cfg(fx, &cfg);
    for (p = 1; p <= 128; p++)
        touch(fx, p);
    assert_int_equal(fx_stats(fx).free_frames, 0);
    touch(fx, 200);
}

/* A second touch sooner than old_blocks_time leaves the page old, where
   it was, and counts not_young. */
static void test_touch_before_old_time_keeps_old(void **state)
{
    struct fx *fx = *state;
    struct pool_stats a, b;

    lru_fill_and_read(fx, OLD_TIME_MS);
    assert_false(pool_is_young(fx->pool, 200));
    assert_int_equal(pool_lru_position(fx->pool, 200), old_head(fx));
    a = fx_stats(fx);
    advance(fx, OLD_TIME_MS - 1);
    touch(fx, 200);
    b = fx_stats(fx);
    assert_false(pool_is_young(fx->pool, 200));
    assert_int_equal(pool_lru_position(fx->pool, 200), old_head(fx));
    assert_int_equal(b.not_young - a.not_young, 1);
    assert_int_equal(b.made_young - a.made_young, 0);
}

/* A touch at least old_blocks_time after the first makes the page young,
   at the head, and counts made_young. */
static void test_touch_after_old_time_makes_young(void **state)
{
    struct fx *fx = *state;
    struct pool_stats a, b;

    lru_fill_and_read(fx, OLD_TIME_MS);
    assert_false(pool_is_young(fx->pool, 200));
    advance(fx, OLD_TIME_MS);
    a = fx_stats(fx);
    touch(fx, 200);
    b = fx_stats(fx);
    assert_true(pool_is_young(fx->pool, 200));
    assert_int_equal(pool_lru_position(fx->pool, 200), 0);
    assert_int_equal(b.made_young - a.made_young, 1);
    assert_int_equal(b.not_young - a.not_young, 0);
}

/* P6e: a hit with POOL_FIX_HOT (a B+tree inner node) makes an old page
   young at once, old_blocks_time notwithstanding; the same hit without it
   leaves the page old. */
static void test_hot_fix_makes_young_at_once(void **state)
{
    struct fx *fx = *state;
    struct frame *f;

    lru_fill_and_read(fx, OLD_TIME_MS);         /* evicting; 200 just read */
    assert_false(pool_is_young(fx->pool, 200));
    assert_rc(pool_fix(fx->pool, 200, POOL_S, POOL_FIX_HOT, &f), DKV_OK);
    pool_unfix(fx->pool, f);
    assert_true(pool_is_young(fx->pool, 200));
    assert_int_equal(pool_lru_position(fx->pool, 200), 0);
    touch(fx, 199);                             /* read now, touched plainly */
    touch(fx, 199);
    assert_false(pool_is_young(fx->pool, 199));
    assert_rc(pool_check(fx->pool), DKV_OK);
}

/* With old_blocks_time zero, no wait is needed: the second touch, at the
   same instant, finds the page young at the head. */
static void test_old_time_zero_second_touch_young(void **state)
{
    struct fx *fx = *state;
    struct pool_stats st;

    lru_fill_and_read(fx, POOL_OLD_BLOCKS_TIME_ZERO);
    touch(fx, 200);
    st = fx_stats(fx);
    assert_true(pool_is_young(fx->pool, 200));
    assert_int_equal(pool_lru_position(fx->pool, 200), 0);
    assert_true(st.made_young >= 1);
}

/* Makes page p young: read (or hit), wait old_blocks_time, touch. */
static void make_young(struct fx *fx, uint32_t p)
{
    touch(fx, p);
    advance(fx, OLD_TIME_MS);
    touch(fx, p);
    assert_true(pool_is_young(fx->pool, p));
    assert_int_equal(pool_lru_position(fx->pool, p), 0);
}

/* A touch of a young page near the young head does not move it; once
   enough evictions have passed (a quarter of the young part), it does. */
static void test_young_head_touch_does_not_move(void **state)
{
    struct fx *fx = *state;
    uint32_t p;

    lru_fill_and_read(fx, OLD_TIME_MS);
    make_young(fx, 200);
    make_young(fx, 128);
    assert_int_equal(pool_lru_position(fx->pool, 200), 1);
    touch(fx, 200);
    assert_int_equal(pool_lru_position(fx->pool, 200), 1);
    for (p = 129; p <= 199; p++)          /* 71 reads, 71 evictions */
        touch(fx, p);
    assert_true(pool_is_young(fx->pool, 200));
    touch(fx, 200);
    assert_int_equal(pool_lru_position(fx->pool, 200), 0);
}

/* ---- scans and pins ------------------------------------------------------ */

/* One scan-resistance run in a cold pool of frames pages: the pool is
   filled with cold pages, pages 1..hot are made young (touch, wait
   old_blocks_time, touch), then pages hot+1..hot+10*frames are scanned,
   each fixed one to three times in quick succession with the clock
   advancing 1 ms per page.  (The pool is filled first: the old sublist is
   37% of the LRU, so in a nearly empty pool the hot set cannot all be
   young.)  The filler pages lie above the scanned ones.  Returns 0, or
   -1 with a message saying how many hot pages were young and kept. */
static int scan_run(struct fx *fx, unsigned frames, unsigned hot,
                    uint32_t last, char *msg, size_t cap)
{
    uint64_t rng = g_seed ^ frames;
    unsigned i, young = 0, kept = 0, still_young = 0;
    uint32_t p;

    fx_open(fx, frames, POOL_NO_CLEANER);
    for (p = last; fx_stats(fx).free_frames > 0; p--)
        touch(fx, p);                               /* cold filler */
    for (p = 1; p <= hot; p++)
        touch(fx, p);
    advance(fx, OLD_TIME_MS);
    for (p = 1; p <= hot; p++)
        touch(fx, p);
    for (p = 1; p <= hot; p++)
        young += (unsigned)pool_is_young(fx->pool, p);
    for (p = hot + 1; p <= hot + 10 * frames; p++) {
        unsigned times = 1 + (unsigned)(test_splitmix64(&rng) % 3);
        for (i = 0; i < times; i++)
            touch(fx, p);
        advance(fx, 1);
    }
    assert_true(fx_stats(fx).evictions >= 9 * frames);
    for (p = 1; p <= hot; p++) {
        kept += (unsigned)pool_contains(fx->pool, p);
        still_young += (unsigned)pool_is_young(fx->pool, p);
    }
    fx_close(fx);
    if (young == hot && kept == hot && still_young == hot)
        return 0;
    snprintf(msg, cap, "[pool of %u frames: %u of %u hot pages young before "
             "the scan; after it %u in the pool, %u young] ",
             frames, young, hot, kept, still_young);
    return -1;
}

/* A hot set that fits in the young part survives one scan of ten times
   the pool, at three pool sizes (the LRU's old/young boundary rounds
   differently at each). */
static void test_scan_keeps_hot_set(void **state)
{
    static const unsigned frames[3] = { 128, 64, 256 }, hot[3] = { 30, 15, 60 };
    struct fx *fx = *state;
    char msg[3][160] = { "", "", "" };
    uint32_t last = 60 + 10 * 256 + 256;           /* + the filler */
    int bad = 0;
    unsigned i;

    fx_load(fx, last);
    for (i = 0; i < 3; i++)
        bad |= scan_run(fx, frames[i], hot[i], last, msg[i], sizeof(msg[i]));
    if (bad)
        fail_msg("scan evicted the hot set: %s%s%s", msg[0], msg[1], msg[2]);
}

/* A page held fixed through a scan of ten times the pool stays, intact.
   It is fixed once the pool is full, so that it ages down the LRU to the
   tail like any other page read once, where eviction must pass over it. */
static void test_pinned_page_survives_scan(void **state)
{
    struct fx *fx = *state;
    struct frame *f;
    uint32_t p;

    fx_load(fx, 640 + 64);
    fx_open(fx, 64, POOL_NO_CLEANER);
    for (p = 640 + 64; fx_stats(fx).free_frames > 0; p--)
        touch(fx, p);                               /* cold filler */
    assert_rc(pool_fix(fx->pool, 7, POOL_S, 0, &f), DKV_OK);
    for (p = 1; p <= 640; p++) {
        if (p != 7)
            touch(fx, p);
        assert_true(pool_contains(fx->pool, 7));
    }
    assert_true(fx_stats(fx).evictions >= 640);
    assert_int_equal(frame_page_no(f), 7);
    assert_true(body_ok(frame_data(f), 7, 0));
    pool_unfix(fx->pool, f);
    touch(fx, 7);
}

/* ---- write-back ---------------------------------------------------------- */

static void verify_pages(struct fx *fx, uint32_t first, uint32_t last)
{
    uint32_t p;

    for (p = first; p <= last; p++)
        touch(fx, p);
}

/* Dirty pages flushed, the pool and the file dropped and reopened: every
   page reads back as written. */
static void test_dirty_pages_survive_reopen(void **state)
{
    struct fx *fx = *state;

    fx_open(fx, 256, POOL_NO_CLEANER);
    fx_alloc(fx, 1, 100);
    assert_int_equal(fx_stats(fx).dirty_pages, 101);       /* + header */
    assert_rc(pool_flush_all(fx->pool), DKV_OK);
    assert_int_equal(fx_stats(fx).dirty_pages, 0);
    assert_true(fx_stats(fx).pages_written >= 101);
    assert_rc(pool_check(fx->pool), DKV_OK);
    fx_reopen(fx);
    assert_int_equal(space_header(fx->sp)->page_count, 101);
    verify_pages(fx, 1, 100);
}

/* A pool much smaller than the data: eviction writes dirty pages back,
   and everything reads back after a reopen. */
static void test_eviction_writes_back(void **state)
{
    struct fx *fx = *state;
    struct pool_stats st;

    fx_open(fx, 32, POOL_NO_CLEANER);
    fx_alloc(fx, 1, 300);
    st = fx_stats(fx);
    assert_true(st.evictions >= 300 - 32);
    assert_true(st.pages_written >= 300 - 32);
    assert_true(st.fg_single_flushes > 0);
    verify_pages(fx, 1, 300);           /* read back before the reopen */
    assert_rc(pool_flush_all(fx->pool), DKV_OK);
    fx_reopen(fx);
    verify_pages(fx, 1, 300);
}

/* ---- the write-ahead hook ------------------------------------------------ */

#define WAL_SCAN 512u                   /* pages of the file the hook reads */

struct wal {
    pthread_mutex_t lock;
    int             fd;               /* the data file, buffered, read only */
    int             fail;             /* return DKV_ERR_IO                  */
    uint64_t        durable;          /* the log is durable up to here      */
    uint64_t        max_asked;
    unsigned long   calls, violations;
    uint32_t        bad_page;         /* the first page found too new       */
    uint64_t        bad_lsn, bad_durable;
    unsigned char  *buf;              /* WAL_SCAN pages                     */
};

/* Counts pages on disk newer than the durable log (w->lock held). */
static void wal_scan_disk(struct wal *w)
{
    ssize_t got = pread(w->fd, w->buf, (size_t)WAL_SCAN * PS, 0);
    uint32_t p;

    for (p = 0; got > 0 && p < (size_t)got / PS; p++) {
        uint64_t lsn = page_lsn(w->buf + (size_t)p * PS);
        if (lsn <= w->durable)
            continue;
        if (w->violations++ == 0) {
            w->bad_page = p;
            w->bad_lsn = lsn;
            w->bad_durable = w->durable;
        }
    }
}

/* The hook: checks the disk holds nothing newer than the log so far,
   then makes the log "durable" up to lsn. */
static int wal_hook(void *arg, uint64_t lsn)
{
    struct wal *w = arg;
    int rc = DKV_OK;

    pthread_mutex_lock(&w->lock);
    w->calls++;
    w->max_asked = lsn > w->max_asked ? lsn : w->max_asked;
    wal_scan_disk(w);
    if (w->fail)
        rc = DKV_ERR_IO;
    else if (lsn > w->durable)
        w->durable = lsn;
    pthread_mutex_unlock(&w->lock);
    return rc;
}

static void wal_init(struct wal *w, struct fx *fx, int fail)
{
    memset(w, 0, sizeof(*w));
    pthread_mutex_init(&w->lock, NULL);
    w->fd = open(fx->path, O_RDONLY);
    assert_true(w->fd >= 0);
    w->fail = fail;
    w->buf = malloc((size_t)WAL_SCAN * PS);
    assert_non_null(w->buf);
}

static void wal_fini(struct wal *w)
{
    close(w->fd);
    free(w->buf);
    pthread_mutex_destroy(&w->lock);
}

static void wal_open_pool(struct fx *fx, struct wal *w, unsigned frames)
{
    struct pool_config cfg = fx_config(fx, frames, POOL_NO_CLEANER);

    cfg.wal_flush_to = wal_hook;
    cfg.wal_arg = w;
    fx_open_cfg(fx, &cfg);
}

/* Redirties pages first..last at new LSNs, recording each in lsns[]. */
static void redirty(struct fx *fx, uint32_t first, uint32_t last,
                    uint64_t *lsns)
{
    struct frame *f;
    uint32_t p;

    for (p = first; p <= last; p += 3) {
        assert_rc(pool_fix(fx->pool, p, POOL_X, 0, &f), DKV_OK);
        pool_mark_dirty(fx->pool, f, ++fx->lsn);
        lsns[p] = fx->lsn;
        pool_unfix(fx->pool, f);
        assert_rc(pool_check(fx->pool), DKV_OK);
    }
}

#define WAL_PAGES 200u

/* No page reaches the disk before the log is durable up to its LSN: at
   every call the hook finds nothing on disk newer than what it made
   durable before, and after the flush every page holds its last LSN. */
static void test_wal_hook_before_write(void **state)
{
    struct fx *fx = *state;
    uint64_t lsns[WAL_PAGES + 1];
    struct wal w;
    uint32_t p;

    wal_init(&w, fx, 0);
    wal_open_pool(fx, &w, 32);
    fx_alloc(fx, 1, WAL_PAGES);               /* evictions write pages */
    for (p = 1; p <= WAL_PAGES; p++)
        lsns[p] = p;
    redirty(fx, 1, WAL_PAGES, lsns);
    assert_rc(pool_flush_all(fx->pool), DKV_OK);
    pthread_mutex_lock(&w.lock);
    wal_scan_disk(&w);
    pthread_mutex_unlock(&w.lock);
    if (w.violations > 0)
        fail_msg("page %u on disk with LSN %" PRIu64 " while the log was "
                 "durable to %" PRIu64 " (%lu violations)", w.bad_page,
                 w.bad_lsn, w.bad_durable, w.violations);
    assert_true(w.calls > 1);
    assert_int_equal(w.max_asked, fx->lsn);
    for (p = 1; p <= WAL_PAGES; p++)
        assert_int_equal(page_lsn(w.buf + (size_t)p * PS), lsns[p]);
    fx_close(fx);
    wal_fini(&w);
}

/* A hook that fails: pool_flush_all fails, every page stays dirty, and
   nothing is written; once the hook succeeds the flush goes through. */
static void test_wal_hook_failure_keeps_dirty(void **state)
{
    struct fx *fx = *state;
    struct pool_stats st;
    struct wal w;
    uint32_t p;

    wal_init(&w, fx, 1);
    wal_open_pool(fx, &w, 64);
    fx_alloc(fx, 1, 20);
    assert_rc(pool_flush_all(fx->pool), DKV_ERR_IO);
    assert_rc(pool_check(fx->pool), DKV_OK);
    st = fx_stats(fx);
    assert_int_equal(st.dirty_pages, 21);
    assert_int_equal(st.pages_written, 0);
    assert_int_equal(w.durable, 0);
    assert_true(w.calls >= 1);
    pthread_mutex_lock(&w.lock);
    wal_scan_disk(&w);
    pthread_mutex_unlock(&w.lock);
    for (p = 1; p <= 20; p++)                       /* never written */
        assert_int_equal(page_verify(w.buf + (size_t)p * PS, PS, p), DKV_NOTFOUND);
    assert_int_equal(load_le64(w.buf + FHDR_OFF_PAGE_COUNT), 1);
    pthread_mutex_lock(&w.lock);
    w.fail = 0;
    pthread_mutex_unlock(&w.lock);
    assert_rc(pool_flush_all(fx->pool), DKV_OK);
    assert_int_equal(fx_stats(fx).dirty_pages, 0);
    fx_reopen(fx);
    verify_pages(fx, 1, 20);
    fx_close(fx);
    wal_fini(&w);
}

/* ---- changes racing write-back ------------------------------------------ */

/* Fixes pno and checks it holds generation gen. */
static void check_gen(struct fx *fx, uint32_t pno, uint64_t gen)
{
    struct frame *f;

    assert_rc(pool_fix(fx->pool, pno, POOL_S, 0, &f), DKV_OK);
    if (!body_ok(frame_data(f), pno, gen))
        fail_msg("%s", body_diff(frame_data(f), pno, gen));
    pool_unfix(fx->pool, f);
}

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A page changed while the cleaner is writing an earlier copy of it stays
   dirty: right after pool_mark_dirty, with the X latch still held, it is
   on the flush list (P3, P4), and after a flush and a reopen the disk has
   the last change.  The cleaner writes all the time (max_dirty_pct 1);
   the test changes the page for at most 500 ms or 1000 writes. */
static void test_change_during_write_stays_dirty(void **state)
{
    struct fx *fx = *state;
    struct pool_config cfg = fx_config(fx, 32, 1);
    uint64_t gen = 0, start = now_ms(), written = 0;
    volatile unsigned spin;
    unsigned lost = 0;
    struct frame *f;

    fx_load(fx, 1);
    cfg.max_dirty_pct = 1;
    fx_open_cfg(fx, &cfg);
    while (written < 1000 && now_ms() - start < 500) {
        assert_rc(pool_fix(fx->pool, 1, POOL_X, 0, &f), DKV_OK);
        body_write(frame_data(f), 1, ++gen);
        pool_mark_dirty(fx->pool, f, ++fx->lsn);
        lost += pool_oldest_dirty_lsn(fx->pool) == 0;
        pool_unfix(fx->pool, f);
        for (spin = 0; spin < 2000; spin++)
            ;                               /* let the cleaner latch it */
        if (gen % 64 == 0)
            written = fx_stats(fx).pages_written;
    }
    print_message("  %" PRIu64 " changes, %" PRIu64 " writes\n", gen, written);
    if (lost > 0)
        fail_msg("%u changes left the page off the flush list", lost);
    assert_true(written > 0);
    assert_rc(pool_flush_all(fx->pool), DKV_OK);
    fx_reopen(fx);
    check_gen(fx, 1, gen);
}

/* A thread that runs pool_flush_all each time it is asked, so that a
   write holds exactly the pages the test dirtied. */
struct flusher {
    struct pool *pool;
    atomic_uint  asked, done;
    atomic_int   stop, rc;
};

static void *flusher_main(void *arg)
{
    struct flusher *fl = arg;
    unsigned asked;
    int rc;

    while (!atomic_load(&fl->stop)) {
        asked = atomic_load(&fl->asked);
        if (asked == atomic_load(&fl->done)) {
            sched_yield();
            continue;
        }
        rc = pool_flush_all(fl->pool);
        if (rc != DKV_OK)
            atomic_store(&fl->rc, rc);
        atomic_store(&fl->done, asked);
    }
    return NULL;
}

/* Fixes pno exclusive and writes generation gen into it (not marked). */
static int change_page(struct fx *fx, uint32_t pno, uint64_t gen, struct frame **fp)
{
    int rc = pool_fix(fx->pool, pno, POOL_X, 0, fp);

    if (rc == DKV_OK)
        body_write(frame_data(*fp), pno, gen);
    return rc;
}

#define RACE_PAGES 64u                  /* one write batch of neighbours */

/* The first change to a page since a write of it was copied, marked just
   as that write completes, keeps the page dirty.  pool_mark_dirty reads
   write_pending and dirty without the flush lock; the writer used to clear
   write_pending before it cleaned the page, and a mark that fell between
   the two left the page clean with the change unwritten (lost at its
   eviction: the B+tree crash test found pages missing changes).  Each
   round dirties 64 neighbouring pages and has another thread flush them:
   one write, whose pages are then finished one by one.  Once the write is
   in flight the test changes one of the pages under its X latch, waits for
   the write to complete and marks the change at a moment that varies
   around that page's own completion; when everything dirty is flushed,
   the disk must hold the change.  At most 2000 rounds or 3 s. */
static void test_change_marked_as_write_completes(void **state)
{
    struct fx *fx = *state;
    uint64_t gen[RACE_PAGES + 1] = { 0 }, start = now_ms(), rng = g_seed ^ 0x5eed;
    unsigned char *disk = malloc(PS);
    struct flusher fl = { 0 };
    unsigned rounds = 0, raced = 0, lost = 0;
    uint32_t p, first_lost = 0;
    volatile unsigned spin;
    struct frame *f;
    pthread_t tid;
    int fd, rc = DKV_OK;

    fx_load(fx, RACE_PAGES);
    fx_open(fx, 2 * RACE_PAGES, POOL_NO_CLEANER);
    fd = open(fx->path, O_RDONLY);
    assert_true(fd >= 0 && disk != NULL);
    fl.pool = fx->pool;
    assert_int_equal(pthread_create(&tid, NULL, flusher_main, &fl), 0);
    while (rc == DKV_OK && rounds < 2000 && now_ms() - start < 3000) {
        uint64_t t0;
        unsigned delay;

        for (p = 1; p <= RACE_PAGES && rc == DKV_OK; p++) {
            rc = change_page(fx, p, ++gen[p], &f);
            if (rc == DKV_OK) {
                pool_mark_dirty(fx->pool, f, ++fx->lsn);
                pool_unfix(fx->pool, f);
            }
        }
        rounds++;
        atomic_fetch_add(&fl.asked, 1);
        for (t0 = now_ms(); fx_stats(fx).writes_inflight == 0 &&
                            atomic_load(&fl.done) != atomic_load(&fl.asked) &&
                            now_ms() - t0 < 1000;)
            ;                           /* until the copies are taken */
        p = 0;
        if (rc == DKV_OK && fx_stats(fx).writes_inflight != 0) {
            p = 1 + (uint32_t)(test_splitmix64(&rng) % RACE_PAGES);
            rc = change_page(fx, p, ++gen[p], &f);
            for (t0 = now_ms(); rc == DKV_OK && fx_stats(fx).writes_inflight != 0 &&
                                now_ms() - t0 < 1000;)
                ;
            delay = (unsigned)(test_splitmix64(&rng) % 256);
            for (spin = 0; spin < delay; spin++)
                ;
            if (rc == DKV_OK) {
                pool_mark_dirty(fx->pool, f, ++fx->lsn);
                pool_unfix(fx->pool, f);
                raced++;
            }
        }
        while (atomic_load(&fl.done) != atomic_load(&fl.asked))
            sched_yield();
        /* That flush may have ended before the mark: flush what is dirty
           now.  A change the pool forgot is not written. */
        if (rc == DKV_OK && p != 0 && fx_stats(fx).dirty_pages > 0)
            rc = pool_flush_all(fx->pool);
        if (rc == DKV_OK && p != 0) {
            if (pread(fd, disk, PS, (off_t)space_page_offset(fx->sp, p)) != (ssize_t)PS)
                rc = DKV_ERR_IO;
            else if (load_le64(disk + PAGE_HEADER_SIZE) != gen[p] && lost++ == 0)
                first_lost = p;
        }
    }
    atomic_store(&fl.stop, 1);
    pthread_join(tid, NULL);
    close(fd);
    free(disk);
    assert_rc(rc, DKV_OK);
    assert_rc(atomic_load(&fl.rc), DKV_OK);
    print_message("  %u rounds, %u changes marked around a write's end\n", rounds,
                  raced);
    if (lost > 0)
        fail_msg("%u changes never reached the disk (first: page %u)", lost,
                 first_lost);
    assert_true(raced > 0);
    fx_reopen(fx);
    for (p = 1; p <= RACE_PAGES; p++)
        check_gen(fx, p, gen[p]);
}

/* pool_page_alloc returns the page X-fixed and dirty: what the caller
   writes into it before unfixing it is kept, even with two cleaners
   writing all the time (max_dirty_pct 1).  4000 pages through a 32-frame
   pool, flushed, reopened, every body checked. */
static void test_alloc_returns_dirty_page(void **state)
{
    struct fx *fx = *state;
    struct pool_config cfg = fx_config(fx, 32, 2);
    char first[160] = "";
    unsigned bad = 0;
    struct frame *f;
    uint32_t p;

    cfg.max_dirty_pct = 1;
    fx_open_cfg(fx, &cfg);
    fx_alloc(fx, 1, 4000);
    assert_rc(pool_flush_all(fx->pool), DKV_OK);
    fx_reopen(fx);
    for (p = 1; p <= 4000; p++) {
        assert_rc(pool_fix(fx->pool, p, POOL_S, 0, &f), DKV_OK);
        if (!body_ok(frame_data(f), p, 0) && bad++ == 0)
            snprintf(first, sizeof(first), "%s", body_diff(frame_data(f), p, 0));
        pool_unfix(fx->pool, f);
    }
    if (bad > 0)
        fail_msg("%u of 4000 allocated pages lost what was written into them "
                 "before the unfix; first: %s", bad, first);
}

/* ---- many threads -------------------------------------------------------- */

#define MT_THREADS 4u
#define MT_FRAMES  64u
#define MT_PAGES   (4 * MT_FRAMES)
#define MT_OPS     3000u

struct mt {
    struct pool     *pool;
    uint64_t         seed;
    _Atomic uint64_t lsn;
    _Atomic uint64_t gen[MT_PAGES + 1];   /* the generation each page holds */
    atomic_ulong     errors, writes;
    pthread_mutex_t  lock;
    char             first_error[160];
};

struct mt_worker {
    struct mt *mt;
    uint64_t   rng;
    pthread_t  tid;
};

static void mt_error(struct mt *mt, const char *what, uint32_t pno, int rc)
{
    pthread_mutex_lock(&mt->lock);
    if (atomic_fetch_add(&mt->errors, 1) == 0)
        snprintf(mt->first_error, sizeof(mt->first_error),
                 "%s: page %u, rc %d (%s)", what, pno, rc, dkv_strerror(rc));
    pthread_mutex_unlock(&mt->lock);
}

/* Fixes pno in latch mode and checks it holds the current generation. */
static struct frame *mt_fix(struct mt *mt, uint32_t pno, int latch)
{
    struct frame *f;
    int rc = pool_fix(mt->pool, pno, latch, 0, &f);

    if (rc != DKV_OK) {
        mt_error(mt, "pool_fix failed", pno, rc);
        return NULL;
    }
    if (frame_page_no(f) != pno ||
        !body_ok(frame_data(f), pno, atomic_load(&mt->gen[pno])))
        mt_error(mt, "wrong or stale contents", pno, 0);
    return f;
}

/* X-fixes a page and writes its next generation at a new LSN. */
static void mt_update(struct mt *mt, uint32_t pno)
{
    struct frame *f = mt_fix(mt, pno, POOL_X);
    uint64_t gen;

    if (f == NULL)
        return;
    gen = atomic_load(&mt->gen[pno]) + 1;
    body_write(frame_data(f), pno, gen);
    atomic_store(&mt->gen[pno], gen);
    pool_mark_dirty(mt->pool, f, atomic_fetch_add(&mt->lsn, 1) + 1);
    atomic_fetch_add(&mt->writes, 1);
    pool_unfix(mt->pool, f);
}

static void *mt_main(void *arg)
{
    struct mt_worker *w = arg;
    struct mt *mt = w->mt;
    uint32_t list[8];
    unsigned i, j;

    for (i = 0; i < MT_OPS && atomic_load(&mt->errors) == 0; i++) {
        uint64_t r = test_splitmix64(&w->rng);
        uint32_t pno = 1 + (uint32_t)((r >> 8) % MT_PAGES);
        unsigned op = (unsigned)(r % 100);
        if (op < 5) {
            for (j = 0; j < 8; j++)
                list[j] = 1 + (uint32_t)(test_splitmix64(&w->rng) % MT_PAGES);
            pool_prefetch(mt->pool, list, 8);
        } else if (op < 30) {
            mt_update(mt, pno);
        } else {
            struct frame *f = mt_fix(mt, pno, POOL_S);
            if (f != NULL)
                pool_unfix(mt->pool, f);
        }
    }
    return NULL;
}

static void mt_report(struct fx *fx)
{
    struct pool_stats st = fx_stats(fx);

    print_message("  %s: %lu hits, %lu misses, %lu read waits, %lu prefetched, "
                  "%lu evictions, %lu written (%lu by fixing threads)\n",
                  st.io_engine, (unsigned long)st.hits, (unsigned long)st.misses,
                  (unsigned long)st.read_waits, (unsigned long)st.prefetched,
                  (unsigned long)st.evictions, (unsigned long)st.pages_written,
                  (unsigned long)st.fg_single_flushes);
}

/* Checks every page against its generation, from the pool. */
static void mt_verify(struct fx *fx, struct mt *mt)
{
    uint32_t p;

    for (p = 1; p <= MT_PAGES; p++)
        check_gen(fx, p, atomic_load(&mt->gen[p]));
}

/* Four threads fix random pages of a data set four times the pool, S and
   X, dirtying at increasing LSNs and prefetching, with the cleaner on;
   every fix sees the page's current generation. */
static void test_concurrent_fix_unfix(void **state)
{
    struct fx *fx = *state;
    struct mt_worker w[MT_THREADS];
    struct mt *mt = calloc(1, sizeof(*mt));
    unsigned i;

    assert_non_null(mt);
    fx_load(fx, MT_PAGES);
    fx_open(fx, MT_FRAMES, 0);
    mt->pool = fx->pool;
    atomic_store(&mt->lsn, fx->lsn);
    pthread_mutex_init(&mt->lock, NULL);
    for (i = 0; i < MT_THREADS; i++) {
        w[i].mt = mt;
        w[i].rng = g_seed * (i + 1) + i;
        assert_int_equal(pthread_create(&w[i].tid, NULL, mt_main, &w[i]), 0);
    }
    for (i = 0; i < MT_THREADS; i++)
        pthread_join(w[i].tid, NULL);
    if (atomic_load(&mt->errors) > 0)
        fail_msg("%lu errors; first: %s", (unsigned long)atomic_load(&mt->errors),
                 mt->first_error);
    assert_true(atomic_load(&mt->writes) > 0);
    mt_report(fx);
    assert_rc(pool_check(fx->pool), DKV_OK);
    assert_rc(pool_flush_all(fx->pool), DKV_OK);
    assert_int_equal(fx_stats(fx).dirty_pages, 0);
    mt_verify(fx, mt);
    fx_reopen(fx);
    mt_verify(fx, mt);
    pthread_mutex_destroy(&mt->lock);
    free(mt);
}

/* ---- small pools --------------------------------------------------------- */

/* 2000 pages through a 32-frame pool (with the cleaner): allocated, read
   back in random order, flushed and read back after a reopen. */
static void test_working_set_larger_than_pool(void **state)
{
    struct fx *fx = *state;
    uint64_t rng = g_seed ^ 0x2000;
    unsigned i;

    fx_open(fx, 32, 0);
    fx_alloc(fx, 1, 2000);
    for (i = 0; i < 2000; i++)
        touch(fx, 1 + (uint32_t)(test_splitmix64(&rng) % 2000));
    assert_true(fx_stats(fx).evictions > 2000);
    assert_rc(pool_flush_all(fx->pool), DKV_OK);
    fx_reopen(fx);
    verify_pages(fx, 1, 2000);
}

/* Fewer frames than a B+tree descent needs, or bad options: refused. */
static void test_pool_too_small_refused(void **state)
{
    struct fx *fx = *state;
    struct pool_config cfg = fx_config(fx, POOL_FRAMES_MIN - 1, POOL_NO_CLEANER);
    struct pool *pool = NULL;
    struct pool_stats st;

    assert_rc(pool_open(fx->sp, &cfg, &pool), DKV_ERR_INVALID);
    assert_null(pool);
    cfg.pool_size = 0;
    assert_rc(pool_open(fx->sp, &cfg, &pool), DKV_ERR_INVALID);
    cfg.pool_size = (size_t)POOL_FRAMES_MIN * PS - 1;
    assert_rc(pool_open(fx->sp, &cfg, &pool), DKV_ERR_INVALID);
    cfg.pool_size = (size_t)POOL_FRAMES_MIN * PS;
    cfg.old_blocks_pct = 4;
    assert_rc(pool_open(fx->sp, &cfg, &pool), DKV_ERR_INVALID);
    cfg.old_blocks_pct = 0;
    assert_rc(pool_open(fx->sp, &cfg, &pool), DKV_OK);
    pool_stats_get(pool, &st);
    assert_int_equal(st.frames, POOL_FRAMES_MIN);
    assert_rc(pool_check(pool), DKV_OK);
    pool_close(pool);
}

/* ---- the free-page list -------------------------------------------------- */

static uint32_t alloc_one(struct fx *fx)
{
    struct frame *f;
    uint32_t pno;

    assert_rc(pool_page_alloc(fx->pool, PAGE_TYPE_TEST, ++fx->lsn, &f), DKV_OK);
    pno = frame_page_no(f);
    assert_int_equal(page_type(frame_data(f)), PAGE_TYPE_TEST);
    assert_int_equal(page_no(frame_data(f)), pno);
    body_write(frame_data(f), pno, 0);
    pool_unfix(fx->pool, f);
    assert_rc(pool_check(fx->pool), DKV_OK);
    return pno;
}

static void free_one(struct fx *fx, uint32_t pno)
{
    assert_rc(pool_page_free(fx->pool, pno, ++fx->lsn), DKV_OK);
    assert_rc(pool_check(fx->pool), DKV_OK);
}

/* Freed pages come back last freed first; then the file grows again. */
static void test_free_page_reused_lifo(void **state)
{
    struct fx *fx = *state;

    fx_open(fx, 64, POOL_NO_CLEANER);
    fx_alloc(fx, 1, 10);
    free_one(fx, 3);
    free_one(fx, 7);
    assert_int_equal(space_header(fx->sp)->free_count, 2);
    assert_int_equal(space_header(fx->sp)->free_head, 7);
    assert_int_equal(alloc_one(fx), 7);
    assert_int_equal(alloc_one(fx), 3);
    assert_int_equal(space_header(fx->sp)->free_count, 0);
    assert_int_equal(alloc_one(fx), 11);
    assert_int_equal(space_header(fx->sp)->page_count, 12);
    assert_rc(pool_page_free(fx->pool, 0, ++fx->lsn), DKV_ERR_INVALID);
}

/* The free list is on disk: after a flush and a reopen it is still there
   and the next allocation takes the last page freed. */
static void test_free_list_survives_reopen(void **state)
{
    struct fx *fx = *state;

    fx_open(fx, 64, POOL_NO_CLEANER);
    fx_alloc(fx, 1, 10);
    free_one(fx, 4);
    free_one(fx, 8);
    assert_rc(pool_flush_all(fx->pool), DKV_OK);
    fx_reopen(fx);
    assert_int_equal(space_header(fx->sp)->free_count, 2);
    assert_int_equal(space_header(fx->sp)->free_head, 8);
    assert_int_equal(space_header(fx->sp)->page_count, 11);
    assert_int_equal(alloc_one(fx), 8);
    assert_int_equal(alloc_one(fx), 4);
    assert_int_equal(alloc_one(fx), 11);
    touch(fx, 8);
    touch(fx, 4);
}

/* ---- errors and damage --------------------------------------------------- */

/* A page number at or past the page count is corruption, not a read. */
static void test_fix_beyond_file_corrupt(void **state)
{
    struct fx *fx = *state;
    struct pool_stats a, b;
    uint32_t beyond[3] = { 11, 500, UINT32_MAX };
    struct frame *f;
    unsigned i;

    fx_open(fx, 64, POOL_NO_CLEANER);
    fx_alloc(fx, 1, 10);
    a = fx_stats(fx);
    for (i = 0; i < 3; i++) {
        f = NULL;
        assert_rc(pool_fix(fx->pool, beyond[i], POOL_S, 0, &f), DKV_ERR_CORRUPT);
        assert_null(f);
        assert_int_equal(pager_last_corruption().page_no, beyond[i]);
        assert_rc(pool_check(fx->pool), DKV_OK);
    }
    assert_rc(pool_prefetch(fx->pool, beyond, 3), DKV_OK);
    b = fx_stats(fx);
    assert_int_equal(b.misses, a.misses);
    assert_int_equal(b.prefetched, a.prefetched);
    assert_int_equal(b.used, a.used);
    touch(fx, 10);
}

/* A byte flipped on disk: the fix says DKV_ERR_CORRUPT (every time), no
   frame is lost, and the other pages are fine. */
static void test_corrupt_page_detected(void **state)
{
    struct fx *fx = *state;
    unsigned char byte;
    struct pool_stats a, b;
    struct frame *f;
    int fd;

    fx_open(fx, 64, POOL_NO_CLEANER);
    fx_alloc(fx, 1, 10);
    assert_rc(pool_flush_all(fx->pool), DKV_OK);
    fx_close(fx);
    fd = open(fx->path, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &byte, 1, 5 * PS + PAGE_HEADER_SIZE + 100), 1);
    byte ^= 0x10;
    assert_int_equal(pwrite(fd, &byte, 1, 5 * PS + PAGE_HEADER_SIZE + 100), 1);
    close(fd);
    fx_reopen(fx);
    touch(fx, 4);
    a = fx_stats(fx);
    assert_rc(pool_fix(fx->pool, 5, POOL_S, 0, &f), DKV_ERR_CORRUPT);
    assert_int_equal(pager_last_corruption().page_no, 5);
    assert_rc(pool_check(fx->pool), DKV_OK);
    assert_false(pool_contains(fx->pool, 5));
    b = fx_stats(fx);
    assert_int_equal(b.used, a.used);
    assert_rc(pool_fix(fx->pool, 5, POOL_X, 0, &f), DKV_ERR_CORRUPT);
    assert_rc(pool_check(fx->pool), DKV_OK);
    verify_pages(fx, 1, 4);
    verify_pages(fx, 6, 10);
}

/* The meta slots are in the header page and survive a flush + reopen. */
static void test_meta_survives_reopen(void **state)
{
    struct fx *fx = *state;
    unsigned i;

    fx_open(fx, 64, POOL_NO_CLEANER);
    for (i = 0; i < FHDR_META_SLOTS; i++) {
        pool_meta_set(fx->pool, i, g_seed ^ (0x0101010101010101ull * (i + 1)),
                      ++fx->lsn);
        assert_rc(pool_check(fx->pool), DKV_OK);
    }
    assert_int_equal(fx_stats(fx).dirty_pages, 1);
    assert_rc(pool_flush_all(fx->pool), DKV_OK);
    fx_reopen(fx);
    for (i = 0; i < FHDR_META_SLOTS; i++)
        assert_int_equal(pool_meta_get(fx->pool, i),
                         g_seed ^ (0x0101010101010101ull * (i + 1)));
}

/* ---- prefetch ------------------------------------------------------------ */

/* 32 pages prefetched: counted, and the fixes that follow are hits or
   waits for those reads, never misses. */
static void test_prefetch_then_hits(void **state)
{
    struct fx *fx = *state;
    uint32_t list[32];
    struct pool_stats a, b, c;
    unsigned i;

    fx_load(fx, 100);
    fx_open(fx, 128, POOL_NO_CLEANER);
    for (i = 0; i < 32; i++)
        list[i] = 100 - 3 * i;                  /* 100, 97, ... 7 */
    a = fx_stats(fx);
    assert_rc(pool_prefetch(fx->pool, list, 32), DKV_OK);
    assert_rc(pool_check(fx->pool), DKV_OK);
    b = fx_stats(fx);
    assert_int_equal(b.prefetched - a.prefetched, 32);
    for (i = 0; i < 32; i++)
        touch(fx, list[31 - i]);
    c = fx_stats(fx);
    assert_int_equal(c.misses - a.misses, 0);
    assert_int_equal((c.hits + c.read_waits) - (a.hits + a.read_waits), 32);
    assert_int_equal(c.pages_read - a.pages_read, 32);
    assert_int_equal(c.reads_inflight, 0);
}

/* Neighbouring pages prefetched together travel as one request each run
   (up to POOL_RUN_MAX pages), every page lands in its own frame intact,
   and a damaged page inside a run fails alone. */
static void test_prefetch_merges_neighbours(void **state)
{
    struct fx *fx = *state;
    uint32_t list[80];
    struct pool_stats a, b;
    unsigned char byte;
    struct frame *f;
    unsigned i, n = 0;
    int fd;

    fx_load(fx, 100);
    fd = open(fx->path, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &byte, 1, 40 * PS + PAGE_HEADER_SIZE + 100), 1);
    byte ^= 0x10;
    assert_int_equal(pwrite(fd, &byte, 1, 40 * PS + PAGE_HEADER_SIZE + 100), 1);
    close(fd);
    fx_open(fx, 400, POOL_NO_CLEANER);          /* prefetch: a quarter at most */
    touch(fx, 5);                               /* present: splits the run */
    for (i = 80; i >= 1; i--)                   /* asked for in any order */
        list[n++] = i;
    a = fx_stats(fx);
    assert_rc(pool_prefetch(fx->pool, list, n), DKV_OK);
    assert_rc(pool_check(fx->pool), DKV_OK);
    for (i = 1; i <= 80; i++) {
        if (i == 40) {
            assert_rc(pool_fix(fx->pool, 40, POOL_S, 0, &f), DKV_ERR_CORRUPT);
            assert_int_equal(pager_last_corruption().page_no, 40);
            continue;
        }
        touch(fx, i);
    }
    b = fx_stats(fx);
    assert_int_equal(b.prefetched - a.prefetched, 79);
    assert_int_equal(b.misses - a.misses, 1);   /* the damaged page, again */
    /* 79 pages in batches of POOL_IO_DEPTH / 2 claimed frames, each batch
       in runs of consecutive pages: a handful of requests, not 79. */
    assert_true(b.read_requests - a.read_requests <= 5);
    assert_int_equal(b.reads_inflight, 0);
    assert_rc(pool_check(fx->pool), DKV_OK);
}

/* A run reads over up to POOL_RUN_GAP pages it was not asked for (pages
   already held) rather than splitting: one request for 40 pages with every
   tenth held, and a held page changed in memory keeps its change (the
   bytes read over it are thrown away). */
static void test_prefetch_reads_over_held_pages(void **state)
{
    struct fx *fx = *state;
    uint32_t list[40];
    struct pool_stats a, b;
    struct frame *f;
    unsigned i, n = 0;

    fx_load(fx, 60);
    fx_open(fx, 256, POOL_NO_CLEANER);
    for (i = 10; i <= 40; i += 10)
        touch(fx, i);
    assert_rc(pool_fix(fx->pool, 20, POOL_X, 0, &f), DKV_OK);
    body_write(frame_data(f), 20, 1);           /* a change not on disk */
    pool_mark_dirty(fx->pool, f, ++fx->lsn);
    pool_unfix(fx->pool, f);
    for (i = 1; i <= 44; i++)
        if (i % 10 != 0)
            list[n++] = i;
    a = fx_stats(fx);
    assert_rc(pool_prefetch(fx->pool, list, n), DKV_OK);
    b = fx_stats(fx);
    assert_int_equal(b.prefetched - a.prefetched, n);
    assert_int_equal(b.read_requests - a.read_requests, 1);
    for (i = 1; i <= 44; i++) {
        if (i == 20)
            continue;
        touch(fx, i);
    }
    assert_rc(pool_fix(fx->pool, 20, POOL_S, 0, &f), DKV_OK);
    if (!body_ok(frame_data(f), 20, 1))
        fail_msg("%s", body_diff(frame_data(f), 20, 1));
    pool_unfix(fx->pool, f);
    assert_int_equal(fx_stats(fx).reads_inflight, 0);
    assert_rc(pool_check(fx->pool), DKV_OK);
}

static int accept_page(void *arg, const void *page, uint32_t page_size, uint32_t pno)
{
    (void)arg;
    (void)page;
    (void)page_size;
    (void)pno;
    return DKV_OK;
}

/* pool_unchanged_since_read: 1 for a page as read and checked, 0 once it
   was X-latched, for a page made in the pool, and with no page check. */
static void test_unchanged_since_read(void **state)
{
    struct fx *fx = *state;
    struct pool_config cfg;
    struct frame *f;

    fx_load(fx, 8);
    cfg = fx_config(fx, 64, POOL_NO_CLEANER);
    cfg.page_check = accept_page;
    fx_open_cfg(fx, &cfg);
    assert_rc(pool_fix(fx->pool, 3, POOL_S, 0, &f), DKV_OK);
    assert_true(pool_unchanged_since_read(fx->pool, f));
    pool_unfix(fx->pool, f);
    assert_rc(pool_fix(fx->pool, 3, POOL_X, 0, &f), DKV_OK);
    assert_false(pool_unchanged_since_read(fx->pool, f));
    pool_unfix(fx->pool, f);
    assert_rc(pool_fix(fx->pool, 3, POOL_S, 0, &f), DKV_OK);
    assert_false(pool_unchanged_since_read(fx->pool, f));   /* and stays so */
    pool_unfix(fx->pool, f);
    assert_rc(pool_page_alloc(fx->pool, PAGE_TYPE_TEST, ++fx->lsn, &f), DKV_OK);
    assert_false(pool_unchanged_since_read(fx->pool, f));
    pool_unfix(fx->pool, f);
    fx_close(fx);
    fx_open(fx, 64, POOL_NO_CLEANER);            /* no page_check */
    assert_rc(pool_fix(fx->pool, 4, POOL_S, 0, &f), DKV_OK);
    assert_false(pool_unchanged_since_read(fx->pool, f));
    pool_unfix(fx->pool, f);
}

/* Recovery: a page changed by the first record of an MTR is not written
   before the MTR's last record is applied (pool_int.h, redo_holding): on
   disk with the MTR's LSN and part of its records, a crash during recovery
   would make the next recovery skip the rest. */
static void test_redo_half_mtr_not_written(void **state)
{
    struct fx *fx = *state;
    unsigned char payload[4 + 8], *stage;
    struct pool_stats a, b;
    struct frame *f;
    uint64_t end = 1u << 20;

    fx_load(fx, 10);
    fx_open(fx, 64, POOL_NO_CLEANER);
    store_le32(payload, PAGE_HEADER_SIZE + 16);
    memset(payload + 4, 0x5a, 8);
    /* The MTR ending at `end` changes page 3, then (later) page 4. */
    assert_rc(pool_redo_apply(fx->pool, end, REDO_PAGE_WRITE, 3, payload,
                              sizeof(payload)), DKV_OK);
    assert_int_equal(fx_stats(fx).dirty_pages, 1);
    /* The cleaner's way of writing a page: it must skip this one. */
    assert_rc(pool_fix(fx->pool, 3, POOL_S, 0, &f), DKV_OK);
    atomic_fetch_add(&f->pin_count, 1);          /* cleaner_write_batch's pin */
    pool_unfix(fx->pool, f);
    stage = io_buf_alloc(PS, PS);
    assert_non_null(stage);
    a = fx_stats(fx);
    cleaner_write_batch(fx->pool, fx->ctx, stage, &f, 1);
    b = fx_stats(fx);
    assert_int_equal(b.pages_written, a.pages_written);
    assert_int_equal(b.dirty_pages, 1);
    assert_rc(pool_redo_apply(fx->pool, end, REDO_PAGE_WRITE, 4, payload,
                              sizeof(payload)), DKV_OK);
    assert_rc(pool_recovery_done(fx->pool), DKV_OK);  /* the MTR is whole */
    assert_rc(pool_fix(fx->pool, 3, POOL_S, 0, &f), DKV_OK);
    atomic_fetch_add(&f->pin_count, 1);
    pool_unfix(fx->pool, f);
    assert_rc(cleaner_write_batch(fx->pool, fx->ctx, stage, &f, 1), DKV_OK);
    assert_int_equal(fx_stats(fx).pages_written, a.pages_written + 1);
    io_buf_free(stage, PS);
    assert_rc(pool_flush_all(fx->pool), DKV_OK);
}

/* Every frame pinned: a fix of one more page gives up with
   DKV_ERR_NOMEM (after POOL_WAIT_MAX_MS), and works once a pin goes. */
static void test_all_pinned_nomem(void **state)
{
    struct fx *fx = *state;
    struct frame *held[POOL_FRAMES_MIN], *f;
    uint32_t p;

    fx_load(fx, 40);
    fx_open(fx, POOL_FRAMES_MIN, POOL_NO_CLEANER);
    for (p = 1; p < POOL_FRAMES_MIN; p++)             /* + the header */
        assert_rc(pool_fix(fx->pool, p, POOL_S, 0, &held[p]), DKV_OK);
    assert_int_equal(fx_stats(fx).free_frames, 0);
    assert_rc(pool_fix(fx->pool, 35, POOL_S, 0, &f), DKV_ERR_NOMEM);
    assert_rc(pool_check(fx->pool), DKV_OK);
    assert_true(fx_stats(fx).fg_free_waits >= 1);
    assert_false(pool_contains(fx->pool, 35));
    /* The last page pinned goes: its frame is the one reused, so latches
       are still taken in one order (nothing for ThreadSanitizer). */
    pool_unfix(fx->pool, held[POOL_FRAMES_MIN - 1]);
    touch(fx, 35);
    for (p = 1; p < POOL_FRAMES_MIN - 1; p++)
        pool_unfix(fx->pool, held[p]);
    assert_rc(pool_check(fx->pool), DKV_OK);
}

/* ---- the page cleaner ---------------------------------------------------- */

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

    nanosleep(&ts, NULL);
}

/* The pool filled with dirty pages: the cleaner writes some and frees
   frames on its own (polled for at most 5 s). */
static void test_cleaner_keeps_free_frames(void **state)
{
    struct fx *fx = *state;
    struct pool_stats st;
    unsigned waited;

    fx_open(fx, 64, 0);
    fx_alloc(fx, 1, 63);
    st = fx_stats(fx);
    for (waited = 0; waited < 5000; waited += 10) {
        if (st.free_frames > 0 && st.pages_written > 0)
            break;
        sleep_ms(10);
        st = fx_stats(fx);
    }
    assert_true(st.pages_written > 0);
    assert_true(st.free_frames > 0);
    assert_int_equal(st.fg_single_flushes, 0);
    assert_rc(pool_check(fx->pool), DKV_OK);
    verify_pages(fx, 1, 63);
}

#define T(name) cmocka_unit_test_setup_teardown(name, fx_setup, fx_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_stats_count_hits_and_misses),
        T(test_new_page_enters_old_head),
        T(test_touch_before_old_time_keeps_old),
        T(test_touch_after_old_time_makes_young),
        T(test_old_time_zero_second_touch_young),
        T(test_hot_fix_makes_young_at_once),
        T(test_young_head_touch_does_not_move),
        T(test_scan_keeps_hot_set),
        T(test_pinned_page_survives_scan),
        T(test_dirty_pages_survive_reopen),
        T(test_eviction_writes_back),
        T(test_wal_hook_before_write),
        T(test_wal_hook_failure_keeps_dirty),
        T(test_change_during_write_stays_dirty),
        T(test_change_marked_as_write_completes),
        T(test_alloc_returns_dirty_page),
        T(test_concurrent_fix_unfix),
        T(test_working_set_larger_than_pool),
        T(test_pool_too_small_refused),
        T(test_free_page_reused_lifo),
        T(test_free_list_survives_reopen),
        T(test_fix_beyond_file_corrupt),
        T(test_corrupt_page_detected),
        T(test_meta_survives_reopen),
        T(test_prefetch_then_hits),
        T(test_prefetch_merges_neighbours),
        T(test_prefetch_reads_over_held_pages),
        T(test_unchanged_since_read),
        T(test_redo_half_mtr_not_written),
        T(test_all_pinned_nomem),
        T(test_cleaner_keeps_free_frames),
    };

    g_seed = test_seed("test_pool");
    if (getenv("DKV_TEST_FILTER") != NULL)       /* e.g. "*scan*" */
        cmocka_set_test_filter(getenv("DKV_TEST_FILTER"));
    return cmocka_run_group_tests_name("pool", tests, NULL, NULL);
}
