/*
 * test_wal.c - the redo log (wal/log.c, wal/checkpoint.c, wal/recovery.c)
 * through its public interface, wal.h, with the on-disk layout of
 * wal_format.h used only to damage the file on purpose.
 *
 * Each test gets a fresh mkdtemp directory under /tmp and a log of 1..4 MiB
 * (64 MiB for group commit) with a 1 MiB buffer, opened with O_DIRECT (the
 * log falls back where it cannot).  MTR bodies are well-formed records
 * (1-byte type, u32 page, u32 length, payload); each payload starts with
 * the MTR's id and the record's index, then bytes that depend on them and
 * on the seed, so the apply callback given to wal_recover can record and
 * check exactly what it is handed.  The tests commit bodies, close (which
 * syncs but writes no checkpoint: as a crash after the last sync), reopen
 * and recover, and compare the records applied, in order and with their
 * end LSNs, against the commits: a fresh log applies nothing; committed
 * MTRs come back in order; MTRs after the last commit mark are discarded
 * and counted, stay discarded after the next unit is appended behind them
 * and do not hide that unit from the next recovery; a unit of several MTRs
 * is applied whole; a damaged block or MTR (pwrite into the closed file at
 * LOG_DATA_OFF + lsn % capacity) ends the log there; a damaged header or
 * both damaged checkpoint slots refuse the open, one damaged slot falls
 * back to the other; bad arguments and a moved image threshold are
 * refused without appending; checkpoints wait for the pool
 * (oldest_dirty_lsn, wal_commit_done); the write-ahead rule refuses a page
 * in an unfinished unit; the log wraps around several times with
 * checkpoints and recovery replays only what follows the last one.
 * Group commit runs 8 threads of 200 synchronous commits and checks that
 * far fewer syncs than commits were made and that every commit comes back.
 * The seed is printed; DKV_TEST_SEED=N replays a run, DKV_TEST_FILTER=pattern
 * runs only the matching tests.
 */
#include <fcntl.h>
#include <pthread.h>
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
#include "pager/pager.h"
#include "wal/wal.h"
#include "wal/wal_format.h"
#include "test_util.h"

#define MIB            (1u << 20)
#define BUF_SIZE       MIB
#define REC_TYPE       64             /* an engine-range record type        */
#define BODY_MAX       (512u << 10)
#define GC_THREADS     8
#define GC_COMMITS     200

static uint64_t          g_seed;
static _Atomic uint64_t  g_oldest;    /* what oldest_dirty_lsn answers      */
static unsigned char     g_body[BODY_MAX];

/* ---- what the apply callback saw ------------------------------------------ */

struct applied {
    uint64_t end_lsn, id;
    uint32_t page, len, j;
    int      type, fill_ok;
};

struct recorder {
    struct applied *v;
    size_t          n, cap;
    long            fail_at;          /* return CORRUPT at this record, or -1 */
};

/* One MTR as committed: its id, shape and where it lies. */
struct mtr_info {
    uint64_t id;
    unsigned nrec;
    uint32_t plen;
    uint64_t start, end;
};

struct fx {
    struct test_dir dir;
    char            path[256];
    struct wal     *wal;
    uint64_t        capacity;
    struct recorder rec;
};

static uint64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static uint64_t fill_key(uint64_t id, uint32_t j)
{
    return g_seed ^ (id * 8 + j) * 0x9E3779B97F4A7C15ull;
}

static int rec_apply(void *arg, uint64_t end_lsn, int type, uint32_t page,
                     const void *payload, uint32_t len)
{
    struct recorder *r = arg;
    const unsigned char *p = payload;
    struct applied *a;

    if (r->fail_at >= 0 && (size_t)r->fail_at == r->n)
        return DKV_ERR_CORRUPT;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 256;
        struct applied *v = realloc(r->v, cap * sizeof(*v));
        if (v == NULL)
            return DKV_ERR_NOMEM;
        r->v = v;
        r->cap = cap;
    }
    a = &r->v[r->n++];
    memset(a, 0, sizeof(*a));
    a->end_lsn = end_lsn;
    a->type = type;
    a->page = page;
    a->len = len;
    if (len >= 12) {
        a->id = load_le64(p);
        a->j = load_le32(p + 8);
        a->fill_ok = test_mismatch(p + 12, len - 12, fill_key(a->id, a->j)) == (size_t)-1;
    }
    return DKV_OK;
}

/* ---- bodies, fixture, opening ----------------------------------------------- */

/* Builds nrec records of payload plen (>= 12) for MTR id; returns the
   body's length. */
static size_t body_build(unsigned char *buf, uint64_t id, unsigned nrec,
                         uint32_t plen)
{
    size_t at = 0;
    uint32_t j;

    for (j = 0; j < nrec; j++) {
        unsigned char *p = buf + at;
        p[REC_OFF_TYPE] = (unsigned char)(REC_TYPE + j);
        store_le32(p + REC_OFF_PAGE, (uint32_t)(id * 8 + j));
        store_le32(p + REC_OFF_LEN, plen);
        store_le64(p + REC_HDR, id);
        store_le32(p + REC_HDR + 8, j);
        test_fill(p + REC_HDR + 12, plen - 12, fill_key(id, j));
        at += REC_HDR + plen;
    }
    return at;
}

static uint64_t hook_oldest(void *arg)
{
    (void)arg;
    return atomic_load(&g_oldest);
}

static struct wal_config make_cfg(uint64_t capacity, int create)
{
    struct wal_config c;

    memset(&c, 0, sizeof(c));
    c.capacity = capacity;
    c.buffer_size = BUF_SIZE;
    c.direct = 1;
    c.commit_mode = DKV_COMMIT_SYNC;
    c.create = create;
    c.oldest_dirty_lsn = hook_oldest;
    return c;
}

static int fx_setup(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));

    if (fx == NULL || test_dir_make(&fx->dir, "/tmp") != 0)
        return -1;
    test_dir_file(&fx->dir, "redo.log", fx->path, sizeof(fx->path));
    fx->capacity = 2 * MIB;
    fx->rec.fail_at = -1;
    atomic_store(&g_oldest, 0);
    *state = fx;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *fx = *state;

    wal_close(fx->wal);
    free(fx->rec.v);
    test_dir_remove(&fx->dir);
    free(fx);
    return 0;
}

static int fx_open(struct fx *fx, int create)
{
    struct wal_config cfg = make_cfg(fx->capacity, create);

    fx->wal = NULL;
    return wal_open(fx->path, &cfg, &fx->wal);
}

/* Opens (creating when asked) and recovers into a cleared recorder. */
static void fx_open_recover(struct fx *fx, int create, struct wal_recovery *out)
{
    assert_rc(fx_open(fx, create), DKV_OK);
    fx->rec.n = 0;
    assert_rc(wal_recover(fx->wal, rec_apply, NULL, &fx->rec, out), DKV_OK);
}

static void fx_close(struct fx *fx)
{
    assert_rc(wal_close(fx->wal), DKV_OK);
    fx->wal = NULL;
}

/* Commits MTR id (nrec records of plen bytes) with flags, tells the log
   its pages are on the flush list, and fills *mi. */
static void commit_mtr(struct fx *fx, struct mtr_info *mi, uint64_t id,
                       unsigned nrec, uint32_t plen, int flags)
{
    size_t len = body_build(g_body, id, nrec, plen);

    mi->id = id;
    mi->nrec = nrec;
    mi->plen = plen;
    assert_rc(wal_commit(fx->wal, g_body, len, flags, wal_fpi_lsn(fx->wal),
                         &mi->start, &mi->end), DKV_OK);
    assert_true(mi->start < mi->end);
    wal_commit_done(fx->wal, mi->start);
}

/* The recorder holds exactly the records of mtrs[0..n), in order, each
   with its MTR's end LSN, and end LSNs increase from MTR to MTR. */
static void expect_applied(const struct recorder *r, const struct mtr_info *mtrs,
                           size_t n)
{
    size_t i, k = 0, want = 0;
    uint64_t prev_end = 0;

    for (i = 0; i < n; i++)
        want += mtrs[i].nrec;
    if (r->n != want)
        fail_msg("recovery applied %zu records, expected %zu", r->n, want);
    for (i = 0; i < n; i++) {
        const struct mtr_info *m = &mtrs[i];
        assert_true(m->end > prev_end);
        prev_end = m->end;
        for (uint32_t j = 0; j < m->nrec; j++, k++) {
            const struct applied *a = &r->v[k];
            if (a->id != m->id || a->j != j || a->end_lsn != m->end ||
                a->type != REC_TYPE + (int)j || a->page != (uint32_t)(m->id * 8 + j) ||
                a->len != m->plen || !a->fill_ok)
                fail_msg("record %zu: got id %" PRIu64 "/%u end %" PRIu64 " type %d len %u"
                         " fill %d; expected id %" PRIu64 "/%u end %" PRIu64,
                         k, a->id, a->j, a->end_lsn, a->type, a->len, a->fill_ok,
                         m->id, j, m->end);
        }
    }
}

/* ---- damaging the closed file ------------------------------------------------ */

static void file_xor(const char *path, uint64_t off, unsigned char x)
{
    unsigned char b;
    int fd = open(path, O_RDWR);

    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &b, 1, (off_t)off), 1);
    b ^= x;
    assert_int_equal(pwrite(fd, &b, 1, (off_t)off), 1);
    close(fd);
}

static uint64_t log_off(const struct fx *fx, uint64_t lsn)
{
    return LOG_DATA_OFF + lsn % fx->capacity;
}

/* Flips a byte at lsn and recomputes its block's checksum, so that only
   the MTR's own checksum can notice. */
static void block_xor_rechecksum(const struct fx *fx, uint64_t lsn)
{
    unsigned char blk[LOG_BLOCK];
    uint64_t boff = log_off(fx, lsn - lsn % LOG_BLOCK);
    int fd = open(fx->path, O_RDWR);

    assert_true(fd >= 0);
    assert_int_equal(pread(fd, blk, LOG_BLOCK, (off_t)boff), LOG_BLOCK);
    assert_int_equal(load_le32(blk + LB_OFF_CRC), crc32c(0, blk + 4, LOG_BLOCK - 4));
    blk[lsn % LOG_BLOCK] ^= 0x40;
    store_le32(blk + LB_OFF_CRC, crc32c(0, blk + 4, LOG_BLOCK - 4));
    assert_int_equal(pwrite(fd, blk, LOG_BLOCK, (off_t)boff), LOG_BLOCK);
    close(fd);
}

/* ---- opening, fresh logs, plain recovery ------------------------------------- */

static void test_fresh_log_recovers_nothing(void **state)
{
    struct fx *fx = *state;
    struct wal_recovery out;
    struct wal_stats st;
    uint64_t s, e;

    assert_rc(fx_open(fx, 1), DKV_OK);
    body_build(g_body, 1, 1, 16);
    /* Appending is refused until recovery ran. */
    assert_rc(wal_commit(fx->wal, g_body, REC_HDR + 16, WAL_UNIT_END, 0, &s, &e),
              DKV_ERR_INVALID);
    fx->rec.n = 0;
    assert_rc(wal_recover(fx->wal, rec_apply, NULL, &fx->rec, &out), DKV_OK);
    assert_int_equal(fx->rec.n, 0);
    assert_int_equal(out.mtrs, 0);
    assert_int_equal(out.records, 0);
    assert_int_equal(out.discarded_mtrs, 0);
    assert_int_equal(out.checkpoint_lsn, LOG_BLOCK + LB_HDR);
    assert_int_equal(out.end_lsn, out.checkpoint_lsn);
    /* A second recovery is refused. */
    assert_rc(wal_recover(fx->wal, rec_apply, NULL, &fx->rec, NULL), DKV_ERR_INVALID);
    wal_stats_get(fx->wal, &st);
    assert_int_equal(st.capacity, fx->capacity);
    assert_int_equal(st.commits, 0);
    assert_int_equal(st.checkpoint_lsn, out.checkpoint_lsn);
    assert_true(wal_db_id(fx->wal) != 0);
    fx_close(fx);
    fx_open_recover(fx, 0, &out);
    assert_int_equal(fx->rec.n, 0);
}

static void test_missing_log_without_create(void **state)
{
    struct fx *fx = *state;

    assert_rc(fx_open(fx, 0), DKV_ERR_INVALID);
    assert_null(fx->wal);
    assert_int_equal(access(fx->path, F_OK), -1);
}

static void test_committed_mtrs_recovered_in_order(void **state)
{
    static const uint32_t plens[] = { 12, 100, 3000, 5000, 40, 9000, 16, 4060, 700, 20000 };
    struct fx *fx = *state;
    struct mtr_info m[10];
    struct wal_recovery out;
    uint64_t db_id;
    unsigned i;

    fx_open_recover(fx, 1, &out);
    db_id = wal_db_id(fx->wal);
    for (i = 0; i < 10; i++) {
        int flags = WAL_UNIT_END | (i % 3 == 0 ? WAL_SYNC : 0);
        commit_mtr(fx, &m[i], 100 + i, 1 + i % 3, plens[i], flags);
        if (i > 0)
            assert_true(m[i].start >= m[i - 1].end);
    }
    fx_close(fx);
    fx_open_recover(fx, 0, &out);
    assert_int_equal(wal_db_id(fx->wal), db_id);
    expect_applied(&fx->rec, m, 10);
    assert_int_equal(out.mtrs, 10);
    assert_int_equal(out.records, fx->rec.n);
    assert_int_equal(out.discarded_mtrs, 0);
    assert_int_equal(out.end_lsn, m[9].end);
    /* Appending resumes after them; a second reopen sees the same. */
    commit_mtr(fx, &m[0], 999, 1, 50, WAL_UNIT_END | WAL_SYNC);
    assert_true(m[0].start > m[9].end);
    fx_close(fx);
    fx_open_recover(fx, 0, &out);
    assert_int_equal(out.mtrs, 11);
}

static void test_mtrs_after_last_unit_end_discarded(void **state)
{
    struct fx *fx = *state;
    struct mtr_info m[4];
    struct wal_recovery out;

    fx_open_recover(fx, 1, &out);
    commit_mtr(fx, &m[0], 1, 2, 300, WAL_UNIT_END | WAL_SYNC);
    commit_mtr(fx, &m[1], 2, 1, 300, 0);
    commit_mtr(fx, &m[2], 3, 1, 6000, 0);
    commit_mtr(fx, &m[3], 4, 1, 30, WAL_SYNC);   /* durable, yet no unit end */
    fx_close(fx);
    fx_open_recover(fx, 0, &out);
    expect_applied(&fx->rec, m, 1);
    assert_int_equal(out.mtrs, 1);
    assert_int_equal(out.discarded_mtrs, 3);
    assert_int_equal(out.end_lsn, m[0].end);
}

static void test_unit_of_several_mtrs_applied_whole(void **state)
{
    struct fx *fx = *state;
    struct mtr_info m[5];
    struct wal_recovery out;

    fx_open_recover(fx, 1, &out);
    commit_mtr(fx, &m[0], 1, 1, 64, WAL_UNIT_END);
    commit_mtr(fx, &m[1], 2, 3, 2000, 0);
    commit_mtr(fx, &m[2], 3, 1, 9000, 0);
    commit_mtr(fx, &m[3], 4, 2, 100, WAL_UNIT_END | WAL_SYNC);
    commit_mtr(fx, &m[4], 5, 1, 100, 0);
    fx_close(fx);
    fx_open_recover(fx, 0, &out);
    expect_applied(&fx->rec, m, 4);
    assert_int_equal(out.mtrs, 4);
    assert_int_equal(out.discarded_mtrs, 1);
}

/* MTRs discarded at one recovery (they followed the last commit mark in
   the same block) must stay discarded once new units are appended after
   them: a later recovery must not read them as part of the new unit. */
static void test_discarded_mtrs_stay_discarded(void **state)
{
    struct fx *fx = *state;
    struct mtr_info m[3];
    struct wal_recovery out;

    fx_open_recover(fx, 1, &out);
    commit_mtr(fx, &m[0], 1, 1, 100, WAL_UNIT_END);  /* unit A, not synced  */
    commit_mtr(fx, &m[1], 2, 1, 100, 0);             /* unit B starts       */
    assert_rc(wal_sync(fx->wal), DKV_OK);            /* A and B1: one block */
    fx_close(fx);                                    /* crash before B ends */
    fx_open_recover(fx, 0, &out);
    expect_applied(&fx->rec, m, 1);
    assert_int_equal(out.discarded_mtrs, 1);
    commit_mtr(fx, &m[1], 3, 1, 100, WAL_UNIT_END | WAL_SYNC);   /* unit C */
    fx_close(fx);
    fx_open_recover(fx, 0, &out);
    print_message("second recovery: %" PRIu64 " MTRs applied (expected 2: A, C)\n",
                  out.mtrs);
    expect_applied(&fx->rec, m, 2);
}

/* The same, with the discarded MTR crossing into the next block: appending
   resumes in that block, and a later recovery must still find the new,
   durable unit there (not read it as the rest of the discarded MTR). */
static void test_discarded_mtr_does_not_hide_next_unit(void **state)
{
    struct fx *fx = *state;
    struct mtr_info m[3];
    struct wal_recovery out;

    fx_open_recover(fx, 1, &out);
    commit_mtr(fx, &m[0], 1, 1, 100, WAL_UNIT_END);      /* unit A        */
    commit_mtr(fx, &m[1], 2, 1, 6000, 0);                /* B1: 2 blocks  */
    assert_true(m[1].end / LOG_BLOCK > m[0].end / LOG_BLOCK);
    assert_rc(wal_sync(fx->wal), DKV_OK);
    fx_close(fx);
    fx_open_recover(fx, 0, &out);
    expect_applied(&fx->rec, m, 1);
    assert_int_equal(out.discarded_mtrs, 1);
    commit_mtr(fx, &m[1], 3, 1, 100, WAL_UNIT_END | WAL_SYNC);   /* unit C */
    assert_true(m[1].start < m[0].end + 2 * LOG_BLOCK);
    fx_close(fx);
    fx_open_recover(fx, 0, &out);
    print_message("second recovery: %" PRIu64 " MTRs applied (expected 2: A, C)\n",
                  out.mtrs);
    expect_applied(&fx->rec, m, 2);
}

/* Units dropped by two recoveries in a row, each followed by a unit that
   does end: both dropped units stay dropped (two restart marks), the
   ended ones are applied, in order. */
static void test_two_dropped_units_stay_dropped(void **state)
{
    struct fx *fx = *state;
    struct mtr_info m[4], d;
    struct wal_recovery out;

    fx_open_recover(fx, 1, &out);
    commit_mtr(fx, &m[0], 1, 1, 100, WAL_UNIT_END);
    commit_mtr(fx, &d, 2, 1, 100, 0);                  /* dropped unit 1 */
    commit_mtr(fx, &d, 3, 1, 100, 0);
    assert_rc(wal_sync(fx->wal), DKV_OK);
    fx_close(fx);
    fx_open_recover(fx, 0, &out);
    assert_int_equal(out.discarded_mtrs, 2);
    commit_mtr(fx, &m[1], 4, 1, 100, WAL_UNIT_END);
    commit_mtr(fx, &d, 5, 1, 6000, 0);                 /* dropped unit 2 */
    assert_rc(wal_sync(fx->wal), DKV_OK);
    fx_close(fx);
    fx_open_recover(fx, 0, &out);
    assert_int_equal(out.discarded_mtrs, 1);
    commit_mtr(fx, &m[2], 6, 1, 100, WAL_UNIT_END | WAL_SYNC);
    fx_close(fx);
    fx_open_recover(fx, 0, &out);
    print_message("third recovery: %" PRIu64 " MTRs applied (expected 3)\n", out.mtrs);
    assert_int_equal(out.discarded_mtrs, 0);
    expect_applied(&fx->rec, m, 3);
}

static void test_apply_failure_fails_recovery(void **state)
{
    struct fx *fx = *state;
    struct mtr_info m[3];
    struct wal_recovery out;
    uint64_t s, e;

    fx_open_recover(fx, 1, &out);
    commit_mtr(fx, &m[0], 1, 1, 20, WAL_UNIT_END);
    commit_mtr(fx, &m[1], 2, 2, 20, WAL_UNIT_END);
    commit_mtr(fx, &m[2], 3, 1, 20, WAL_UNIT_END | WAL_SYNC);
    fx_close(fx);
    assert_rc(fx_open(fx, 0), DKV_OK);
    fx->rec.n = 0;
    fx->rec.fail_at = 2;
    assert_rc(wal_recover(fx->wal, rec_apply, NULL, &fx->rec, &out), DKV_ERR_CORRUPT);
    body_build(g_body, 9, 1, 16);
    assert_rc(wal_commit(fx->wal, g_body, REC_HDR + 16, WAL_UNIT_END,
                         wal_fpi_lsn(fx->wal), &s, &e), DKV_ERR_INVALID);
    fx_close(fx);
    fx->rec.fail_at = -1;
    fx_open_recover(fx, 0, &out);
    expect_applied(&fx->rec, m, 3);
}

/* ---- damage ------------------------------------------------------------------ */

/* Five synchronous units (one block each); the byte at offset 21 of the
   body of MTR bad is damaged by damage(); recovery must apply exactly the
   MTRs before it, and the log must go on working after it. */
static void corrupt_and_recover(struct fx *fx, unsigned bad,
                                void (*damage)(const struct fx *, uint64_t))
{
    struct mtr_info m[6];
    struct wal_recovery out;
    unsigned i;

    fx_open_recover(fx, 1, &out);
    for (i = 0; i < 5; i++)
        commit_mtr(fx, &m[i], 10 + i, 1 + i % 2, 200 + 50 * i, WAL_UNIT_END | WAL_SYNC);
    fx_close(fx);
    assert_true(m[bad].start % LOG_BLOCK + MTR_HDR + 21 < LOG_BLOCK);
    damage(fx, m[bad].start + MTR_HDR + 21);
    fx_open_recover(fx, 0, &out);
    expect_applied(&fx->rec, m, bad);
    assert_int_equal(out.end_lsn, bad ? m[bad - 1].end : out.checkpoint_lsn);
    /* The stale MTRs after the damage never come back. */
    commit_mtr(fx, &m[bad], 50, 1, 80, WAL_UNIT_END | WAL_SYNC);
    fx_close(fx);
    fx_open_recover(fx, 0, &out);
    expect_applied(&fx->rec, m, bad + 1);
    fx_close(fx);
}

static void damage_byte(const struct fx *fx, uint64_t lsn)
{
    file_xor(fx->path, log_off(fx, lsn), 0x01);
}

static void test_corrupt_block_ends_log(void **state)
{
    struct fx *fx = *state;

    corrupt_and_recover(fx, 4, damage_byte);          /* the last MTR */
}

static void test_corrupt_middle_block_ends_log(void **state)
{
    struct fx *fx = *state;

    corrupt_and_recover(fx, 2, damage_byte);          /* it and later ones */
}

static void test_corrupt_mtr_checksum_ends_log(void **state)
{
    struct fx *fx = *state;

    corrupt_and_recover(fx, 3, block_xor_rechecksum);
}

static void test_corrupt_header_refused(void **state)
{
    struct fx *fx = *state;
    struct wal_recovery out;

    fx_open_recover(fx, 1, &out);
    fx_close(fx);
    file_xor(fx->path, LOG_HDR_OFF + LH_OFF_CAPACITY + 2, 0x10);
    assert_rc(fx_open(fx, 0), DKV_ERR_CORRUPT);
    assert_null(fx->wal);
    assert_rc(fx_open(fx, 1), DKV_ERR_CORRUPT);       /* create never overwrites */
    file_xor(fx->path, LOG_HDR_OFF + LH_OFF_CAPACITY + 2, 0x10);
    fx_open_recover(fx, 0, &out);
}

static void test_corrupt_checkpoint_slots(void **state)
{
    struct fx *fx = *state;
    struct mtr_info m[3];
    struct wal_recovery out;
    struct wal_stats st;

    fx_open_recover(fx, 1, &out);
    commit_mtr(fx, &m[0], 1, 1, 500, WAL_UNIT_END | WAL_SYNC);
    assert_rc(wal_checkpoint(fx->wal, 1), DKV_OK);    /* number 2: slot 0 */
    wal_stats_get(fx->wal, &st);
    assert_true(st.checkpoint_lsn >= m[0].end);
    commit_mtr(fx, &m[1], 2, 1, 500, WAL_UNIT_END | WAL_SYNC);
    fx_close(fx);
    fx_open_recover(fx, 0, &out);                     /* from checkpoint 2 */
    assert_int_equal(out.checkpoint_lsn, st.checkpoint_lsn);
    expect_applied(&fx->rec, &m[1], 1);
    fx_close(fx);
    /* The newest slot damaged: the older checkpoint (1) is used. */
    file_xor(fx->path, LOG_CKPT_OFF(0) + CK_OFF_LSN, 0x08);
    fx_open_recover(fx, 0, &out);
    assert_int_equal(out.checkpoint_lsn, LOG_BLOCK + LB_HDR);
    expect_applied(&fx->rec, m, 2);
    fx_close(fx);
    /* Both damaged: refused. */
    file_xor(fx->path, LOG_CKPT_OFF(1) + 100, 0x01);
    assert_rc(fx_open(fx, 0), DKV_ERR_CORRUPT);
    assert_null(fx->wal);
}

/* ---- refusals ------------------------------------------------------------------- */

static void test_commit_refusals(void **state)
{
    struct fx *fx = *state;
    struct mtr_info m[2];
    struct wal_recovery out;
    struct wal_stats before, after;
    uint64_t s = 7, e = 7, fpi;
    size_t len;

    fx_open_recover(fx, 1, &out);
    commit_mtr(fx, &m[0], 1, 1, 40, WAL_UNIT_END);
    wal_stats_get(fx->wal, &before);
    fpi = wal_fpi_lsn(fx->wal);
    len = body_build(g_body, 2, 1, 40);
    assert_rc(wal_commit(fx->wal, g_body, len, WAL_UNIT_END | WAL_SYNC, fpi + 1, &s, &e),
              WAL_RETRY);
    assert_rc(wal_commit(fx->wal, g_body, 0, WAL_UNIT_END, fpi, &s, &e), DKV_ERR_INVALID);
    assert_rc(wal_commit(fx->wal, NULL, len, WAL_UNIT_END, fpi, &s, &e), DKV_ERR_INVALID);
    /* The largest body is a quarter of the buffer. */
    len = body_build(g_body, 3, 1, BUF_SIZE / 4 + 1 - REC_HDR);
    assert_rc(wal_commit(fx->wal, g_body, len, WAL_UNIT_END, fpi, &s, &e), DKV_ERR_INVALID);
    assert_int_equal(s, 7);
    assert_int_equal(e, 7);
    wal_stats_get(fx->wal, &after);
    assert_int_equal(after.lsn, before.lsn);
    assert_int_equal(after.bytes, before.bytes);
    assert_int_equal(after.commits, before.commits);
    commit_mtr(fx, &m[1], 4, 1, BUF_SIZE / 4 - REC_HDR, WAL_UNIT_END | WAL_SYNC);
    fx_close(fx);
    fx_open_recover(fx, 0, &out);
    expect_applied(&fx->rec, m, 2);
}

/* ---- checkpoints, the image threshold, the write-ahead rule ---------------------- */

static void test_checkpoint_waits_for_pool(void **state)
{
    struct fx *fx = *state;
    struct mtr_info m[2];
    struct wal_recovery out;
    struct wal_stats st;
    uint64_t s, e, old_fpi, len;

    fx_open_recover(fx, 1, &out);
    old_fpi = wal_fpi_lsn(fx->wal);
    len = body_build(g_body, 1, 1, 100);
    assert_rc(wal_commit(fx->wal, g_body, len, WAL_UNIT_END | WAL_SYNC, old_fpi, &s, &e),
              DKV_OK);
    /* Not on the flush list yet (no wal_commit_done): no checkpoint. */
    assert_rc(wal_checkpoint(fx->wal, 0), DKV_OK);
    wal_stats_get(fx->wal, &st);
    assert_int_equal(st.checkpoints, 0);
    /* The candidate raised the image threshold past the MTR: a body built
       against the old one is refused. */
    assert_true(st.fpi_lsn >= e);
    assert_rc(wal_commit(fx->wal, g_body, len, WAL_UNIT_END, old_fpi, &s, &e), WAL_RETRY);
    /* On the flush list now, but a dirty page older than the candidate
       still holds it back (set first: the background thread retries). */
    atomic_store(&g_oldest, 1);
    wal_commit_done(fx->wal, s);
    assert_rc(wal_checkpoint(fx->wal, 0), DKV_OK);
    wal_stats_get(fx->wal, &st);
    assert_int_equal(st.checkpoints, 0);
    atomic_store(&g_oldest, 0);
    assert_rc(wal_checkpoint(fx->wal, 0), DKV_OK);
    wal_stats_get(fx->wal, &st);
    assert_true(st.checkpoints >= 1);
    assert_int_equal(st.checkpoint_lsn, st.fpi_lsn);
    assert_true(st.checkpoint_lsn >= e);
    commit_mtr(fx, &m[0], 2, 1, 100, WAL_UNIT_END | WAL_SYNC);
    fx_close(fx);
    fx_open_recover(fx, 0, &out);
    assert_int_equal(out.checkpoint_lsn, st.checkpoint_lsn);
    expect_applied(&fx->rec, m, 1);
}

static void test_write_ahead_refuses_unfinished_unit(void **state)
{
    struct fx *fx = *state;
    struct mtr_info m[3];
    struct wal_recovery out;
    struct wal_stats st;

    fx_open_recover(fx, 1, &out);
    wal_stop_background(fx->wal);       /* no asynchronous syncs meanwhile */
    commit_mtr(fx, &m[0], 1, 1, 100, WAL_UNIT_END);
    commit_mtr(fx, &m[1], 2, 1, 100, 0);
    assert_rc(wal_write_ahead(fx->wal, m[1].end), DKV_ERR_BUSY);
    assert_rc(wal_write_ahead(fx->wal, m[0].end), DKV_OK);
    /* Another committer's group write makes the unfinished MTR durable:
       a page holding it must still not be written (W4), since recovery
       would discard the MTR and nothing could undo the page. */
    assert_rc(wal_sync(fx->wal), DKV_OK);
    assert_rc(wal_write_ahead(fx->wal, m[1].end), DKV_ERR_BUSY);
    /* The unit ends lazily (no sync).  A page holding m[1] may now be
       written - but only once the end mark is durable too: m[1] itself
       already is, and recovery drops a unit whose end it does not find
       (this order of events left units half applied in the crash test). */
    commit_mtr(fx, &m[2], 3, 1, 100, WAL_UNIT_END);
    wal_stats_get(fx->wal, &st);
    assert_true(st.durable_lsn < m[2].end);
    assert_rc(wal_write_ahead(fx->wal, m[1].end), DKV_OK);
    wal_stats_get(fx->wal, &st);
    assert_true(st.durable_lsn >= m[2].end);
    assert_rc(wal_write_ahead(fx->wal, m[2].end), DKV_OK);
}

/* ---- wrap-around ------------------------------------------------------------------ */

static void test_wrap_around_recovers_after_last_checkpoint(void **state)
{
    struct fx *fx = *state;
    size_t n = 0, cap = 8192, first = 0;
    struct mtr_info *m = malloc(cap * sizeof(*m));
    uint64_t rng = g_seed ^ 0x77, since_ckpt = 0;
    struct wal_recovery out;
    struct wal_stats st;

    assert_non_null(m);
    fx->capacity = MIB;
    fx_open_recover(fx, 1, &out);
    do {
        uint64_t r = test_splitmix64(&rng);
        uint32_t plen = 12 + (uint32_t)(r % 3000);
        int flags = WAL_UNIT_END | (r % 7 == 0 ? WAL_SYNC : 0);
        assert_true(n < cap);
        commit_mtr(fx, &m[n], n + 1, 1 + (unsigned)(r >> 40) % 2, plen, flags);
        since_ckpt += m[n].end - m[n].start;
        if (since_ckpt > 150u << 10) {
            assert_rc(wal_checkpoint(fx->wal, 1), DKV_OK);
            since_ckpt = 0;
        }
        wal_stats_get(fx->wal, &st);
        n++;
    } while (st.lsn < 5 * fx->capacity + 300000);
    wal_stop_background(fx->wal);             /* freeze the checkpoint */
    for (int k = 0; k < 5; k++, n++)
        commit_mtr(fx, &m[n], n + 1, 1, 200, WAL_UNIT_END);
    wal_stats_get(fx->wal, &st);
    print_message("wrap: %zu MTRs, lsn %" PRIu64 " (%.1f laps), %" PRIu64
                  " checkpoints, %" PRIu64 " stalls\n", n, st.lsn,
                  (double)st.lsn / (double)fx->capacity, st.checkpoints, st.stalls);
    assert_true(st.checkpoints >= 5);
    while (first < n && m[first].start < st.checkpoint_lsn)
        first++;
    assert_true(first > 0 && first < n);
    assert_true(m[first - 1].end <= st.checkpoint_lsn);
    fx_close(fx);
    fx_open_recover(fx, 0, &out);
    assert_int_equal(out.checkpoint_lsn, st.checkpoint_lsn);
    expect_applied(&fx->rec, m + first, n - first);
    assert_int_equal(out.discarded_mtrs, 0);
    free(m);
}

/* ---- group commit -------------------------------------------------------------------- */

struct gc_thread {
    pthread_t   tid;
    struct wal *wal;
    unsigned    t;
    uint64_t    end[GC_COMMITS];
    int         errors;
};

static void *gc_main(void *arg)
{
    struct gc_thread *g = arg;
    unsigned char body[REC_HDR + 128];
    struct wal_stats st;
    unsigned i;

    for (i = 0; i < GC_COMMITS; i++) {
        uint64_t id = (uint64_t)g->t << 32 | i, s, e;
        uint32_t plen = 12 + (uint32_t)(id * 2654435761u % 100);
        size_t len = body_build(body, id, 1, plen);
        int rc;
        do {
            rc = wal_commit(g->wal, body, len, WAL_UNIT_END | WAL_SYNC,
                            wal_fpi_lsn(g->wal), &s, &e);
        } while (rc == WAL_RETRY);
        if (rc != DKV_OK) {
            g->errors++;
            continue;
        }
        wal_commit_done(g->wal, s);
        g->end[i] = e;
        wal_stats_get(g->wal, &st);
        g->errors += st.durable_lsn < e;      /* returned before durable */
    }
    return NULL;
}

/* Every commit of every thread was applied once, each thread's in order,
   with the end LSN its commit returned. */
static void gc_check_recovered(const struct recorder *r, struct gc_thread *g)
{
    unsigned next[GC_THREADS] = { 0 };
    size_t k;

    assert_int_equal(r->n, GC_THREADS * GC_COMMITS);
    for (k = 0; k < r->n; k++) {
        const struct applied *a = &r->v[k];
        unsigned t = (unsigned)(a->id >> 32), i = (unsigned)a->id;
        assert_true(t < GC_THREADS);
        if (i != next[t] || a->end_lsn != g[t].end[i] || !a->fill_ok)
            fail_msg("record %zu: thread %u commit %u (expected %u), end %" PRIu64
                     " (committed at %" PRIu64 ")", k, t, i, next[t], a->end_lsn,
                     g[t].end[i < GC_COMMITS ? i : 0]);
        next[t]++;
    }
}

static void test_group_commit(void **state)
{
    struct fx *fx = *state;
    struct gc_thread *g = calloc(GC_THREADS, sizeof(*g));
    struct wal_recovery out;
    struct wal_stats st;
    uint64_t t0;
    unsigned t;

    assert_non_null(g);
    fx->capacity = 64 * MIB;                  /* no checkpoint: all replayed */
    fx_open_recover(fx, 1, &out);
    t0 = now_us();
    for (t = 0; t < GC_THREADS; t++) {
        g[t].wal = fx->wal;
        g[t].t = t;
        assert_int_equal(pthread_create(&g[t].tid, NULL, gc_main, &g[t]), 0);
    }
    for (t = 0; t < GC_THREADS; t++) {
        assert_int_equal(pthread_join(g[t].tid, NULL), 0);
        assert_int_equal(g[t].errors, 0);
    }
    wal_stats_get(fx->wal, &st);
    print_message("group commit: %u threads x %u commits in %.0f ms: %" PRIu64
                  " syncs for %" PRIu64 " commits (%.2f commits per sync)\n",
                  GC_THREADS, GC_COMMITS, (double)(now_us() - t0) / 1000.0,
                  st.syncs, st.commits, (double)st.commits / (double)st.syncs);
    assert_int_equal(st.commits, GC_THREADS * GC_COMMITS);
    assert_true(st.syncs * 2 <= st.commits);
    assert_int_equal(st.checkpoints, 0);
    fx_close(fx);
    fx_open_recover(fx, 0, &out);
    gc_check_recovered(&fx->rec, g);
    free(g);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, fx_setup, fx_teardown)
    const struct CMUnitTest tests[] = {
        T(test_fresh_log_recovers_nothing),
        T(test_missing_log_without_create),
        T(test_committed_mtrs_recovered_in_order),
        T(test_mtrs_after_last_unit_end_discarded),
        T(test_unit_of_several_mtrs_applied_whole),
        T(test_discarded_mtrs_stay_discarded),
        T(test_discarded_mtr_does_not_hide_next_unit),
        T(test_two_dropped_units_stay_dropped),
        T(test_apply_failure_fails_recovery),
        T(test_corrupt_block_ends_log),
        T(test_corrupt_middle_block_ends_log),
        T(test_corrupt_mtr_checksum_ends_log),
        T(test_corrupt_header_refused),
        T(test_corrupt_checkpoint_slots),
        T(test_commit_refusals),
        T(test_checkpoint_waits_for_pool),
        T(test_write_ahead_refuses_unfinished_unit),
        T(test_wrap_around_recovers_after_last_checkpoint),
        T(test_group_commit),
    };
#undef T

    if (getenv("DKV_TEST_FILTER") != NULL)       /* e.g. "*torn*" */
        cmocka_set_test_filter(getenv("DKV_TEST_FILTER"));
    g_seed = test_seed("test_wal");
    return cmocka_run_group_tests_name("wal", tests, NULL, NULL);
}
