/*
 * log.c - the log file and appending to it: creation and validation of the
 * header, the log buffer, MTR framing into 4 KiB blocks, group commit, and
 * the background thread (asynchronous commits, checkpoints).
 *
 * Entry points:
 *   wal_open / wal_close         the file, its header, the buffer
 *   wal_commit                   append one MTR as a unit (W1, W2)
 *   wal_flush_to / wal_sync      group commit: leader and followers (W3)
 *   wal_write_ahead              the pool's write-ahead hook (W4)
 *   wal_stats_get, wal_fill_pct
 *
 * Group commit: a committer that needs durability becomes the leader if no
 * write is in progress; it takes everything appended so far, closes the
 * current block (padding it, so an acknowledged byte is never rewritten),
 * writes the blocks and syncs once, outside the mutex.  Committers arriving
 * meanwhile append into the next blocks and wait; the next leader takes
 * them all.  One write and one sync serve every commit in the group.
 */
#include "wal_int.h"

#include "dkv.h"

#include <limits.h>
#include <linux/futex.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define WAL_CAPACITY_DEFAULT  (256ull << 20)
#define WAL_BUFFER_DEFAULT    (16u << 20)
#define WAL_INTERVAL_DEFAULT  1000u
#define WAL_SPACE_WAIT_MS     60000u     /* a stall longer than this fails */
#define WAL_GATHER_MAX_US     500u       /* a leader waits for joiners at most */
#define WAL_FREE_CHECK_PCT    85u        /* wal_free_check waits from here     */

/* ---- positions --------------------------------------------------------------- */

uint64_t wal_block_of(uint64_t lsn)
{
    return lsn - lsn % LOG_BLOCK;
}

uint64_t wal_file_off(const struct wal *wal, uint64_t lsn)
{
    return LOG_DATA_OFF + wal_block_of(lsn) % wal->capacity;
}

uint64_t wal_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static unsigned char *buf_at(const struct wal *wal, uint64_t lsn)
{
    return wal->buf + lsn % wal->buf_size;
}

/* ---- waiting for a round (W3) ----------------------------------------------- */

static void round_wait(struct wal *wal, uint32_t seq)
{
    syscall(SYS_futex, &wal->round_seq, FUTEX_WAIT_PRIVATE, seq, NULL, NULL, 0);
}

/* Mutex held: a round ended (or the log failed); wakes every follower. */
static void round_ended(struct wal *wal)
{
    __atomic_fetch_add(&wal->round_seq, 1, __ATOMIC_RELEASE);
    syscall(SYS_futex, &wal->round_seq, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

static unsigned waiters_untaken(struct wal *wal)
{
    return (uint32_t)__atomic_load_n(&wal->wait_state, __ATOMIC_ACQUIRE);
}

/* A waiter that came when entered rounds had been taken leaves: if no
   round took it since, it takes itself off the count. */
static void waiter_leave(struct wal *wal, uint32_t entered)
{
    uint64_t st = __atomic_load_n(&wal->wait_state, __ATOMIC_ACQUIRE);

    while ((uint32_t)(st >> 32) == entered &&
           !__atomic_compare_exchange_n(&wal->wait_state, &st, st - 1, 0,
                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        ;
}

void wal_set_error(struct wal *wal, int rc)
{
    if (wal->error == 0) {
        __atomic_store_n(&wal->error, rc, __ATOMIC_RELEASE);
        round_ended(wal);
    }
}

/* One synchronous transfer through the log's context (io_lock held). */
int wal_io(struct wal *wal, int op, void *buf, size_t len, uint64_t off)
{
    struct io_req req = { .op = op, .file = wal->file, .buf = buf,
                          .len = len, .off = off };
    struct io_req *reqs[1] = { &req };

    return io_run(wal->ctx, reqs, 1);
}

/* ---- the buffer (mutex held) ---------------------------------------------------- */

static void block_start(struct wal *wal, uint64_t block_lsn)
{
    unsigned char *p = buf_at(wal, block_lsn);

    memset(p, 0, LB_HDR);
    store_le64(p + LB_OFF_LSN, block_lsn);
}

/* Copies n bytes of the MTR stream to the append position, skipping block
   headers; keeps lsn inside a set-up block (W1). */
static void put_bytes(struct wal *wal, const void *src, size_t n)
{
    const unsigned char *s = src;

    while (n > 0) {
        size_t room = LOG_BLOCK - wal->lsn % LOG_BLOCK;
        size_t k = n < room ? n : room;
        memcpy(buf_at(wal, wal->lsn), s, k);
        __atomic_store_n(&wal->lsn, wal->lsn + k, __ATOMIC_RELAXED);
        s += k;
        n -= k;
        wal->end_lsn = wal->lsn;
        if (wal->lsn % LOG_BLOCK == 0) {
            store_le16(buf_at(wal, wal->lsn - LOG_BLOCK) + LB_OFF_DATA_END,
                       LOG_BLOCK);
            block_start(wal, wal->lsn);
            __atomic_store_n(&wal->lsn, wal->lsn + LB_HDR, __ATOMIC_RELAXED);
        }
    }
}

/* LSN bytes an MTR of n stream bytes may take, headers included. */
static uint64_t lsn_span(size_t n)
{
    return n + (n / LB_PAYLOAD + 2) * LB_HDR + LOG_BLOCK;
}

/* Whether need more LSN bytes fit the buffer and the log (mutex held). */
static int room_in_buffer(const struct wal *wal, uint64_t need)
{
    return wal->lsn + need - wal->write_lsn <= wal->buf_size;
}

static int room_in_log(const struct wal *wal, uint64_t need)
{
    return wal_block_of(wal->lsn + need) + LOG_BLOCK -
           wal_block_of(wal->checkpoint_lsn) <= wal->capacity;
}

/* ---- group commit ------------------------------------------------------------------ */

/* Stamps and writes the blocks [from, to) and syncs (no lock held but the
   leader role: nobody else touches these blocks). */
static int write_blocks(struct wal *wal, uint64_t from, uint64_t to)
{
    uint64_t b;
    int rc = DKV_OK;

    for (b = from; b < to; b += LOG_BLOCK) {
        unsigned char *p = buf_at(wal, b);
        store_le32(p + LB_OFF_CRC, crc32c(0, p + 4, LOG_BLOCK - 4));
    }
    pthread_mutex_lock(&wal->io_lock);
    while (from < to && rc == DKV_OK) {
        uint64_t file_left = wal->capacity - from % wal->capacity;
        uint64_t buf_left = wal->buf_size - from % wal->buf_size;
        uint64_t n = to - from;
        n = n < file_left ? n : file_left;
        n = n < buf_left ? n : buf_left;
        rc = wal_io(wal, IO_WRITE, buf_at(wal, from), n, wal_file_off(wal, from));
        from += n;
    }
    if (rc == DKV_OK && !wal->cfg.dsync)
        rc = io_file_sync(wal->file);
    pthread_mutex_unlock(&wal->io_lock);
    return rc;
}

/* Before writing, a leader lets the group gather (mutex held): while fewer
   threads wait than joined the last group, it waits for the next one to
   append, at most half the recent sync time (PostgreSQL's commit_delay,
   made adaptive).  A lone committer never waits. */
static void gather_group(struct wal *wal)
{
    uint64_t budget = wal->sync_us_avg / 2;
    uint64_t until = wal_now_us() + (budget < WAL_GATHER_MAX_US ? budget
                                                                : WAL_GATHER_MAX_US);
    struct timespec ts;

    wal->gather_want = wal->last_group;
    while (waiters_untaken(wal) < wal->last_group && wal_now_us() < until) {
        uint64_t left = until - wal_now_us();
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)left * 1000;
        ts.tv_sec += ts.tv_nsec / 1000000000;
        ts.tv_nsec %= 1000000000;
        pthread_cond_timedwait(&wal->gather_cv, &wal->mutex, &ts);
    }
    wal->gather_want = 0;
    wal->last_group = waiters_untaken(wal);
}

/* The leader's round (mutex held on entry and exit): closes the current
   block, writes everything appended, and publishes the new durable LSN. */
static void lead_one_round(struct wal *wal)
{
    uint64_t durable, unit_end, block, from, to, t0;
    int rc = DKV_OK;

    wal->leader = 1;
    gather_group(wal);
    /* Every waiter now appended before this point: the round covers them
       all, and takes them off the count when it ends. */
    wal->taken_waiters = (uint32_t)__atomic_fetch_add(&wal->wait_state, 1ull << 32,
                                                      __ATOMIC_ACQ_REL);
    durable = wal->end_lsn;
    unit_end = wal->unit_end_lsn;             /* <= durable: in this round */
    block = wal_block_of(wal->lsn);
    from = wal->write_lsn;
    to = block;
    if (wal->lsn % LOG_BLOCK > LB_HDR) {      /* the block holds data: close */
        store_le16(buf_at(wal, block) + LB_OFF_DATA_END, wal->lsn % LOG_BLOCK);
        to = block + LOG_BLOCK;
        block_start(wal, to);
        __atomic_store_n(&wal->lsn, to + LB_HDR, __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&wal->mutex);
    t0 = wal_now_us();
    if (to > from)
        rc = write_blocks(wal, from, to);
    t0 = wal_now_us() - t0;
    pthread_mutex_lock(&wal->mutex);
    if (to > from)
        wal->sync_us_avg = (wal->sync_us_avg * 7 + t0) / 8;
    if (rc != DKV_OK) {
        wal_set_error(wal, rc);               /* never retried (W8, IO7) */
    } else if (to > from) {
        wal->write_lsn = to;
        wal->writes++;
        wal->syncs++;
    }
    if (rc == DKV_OK && durable > wal->durable_lsn)
        __atomic_store_n(&wal->durable_lsn, durable, __ATOMIC_RELEASE);
    if (rc == DKV_OK && unit_end > wal->durable_unit_end)
        wal->durable_unit_end = unit_end;
    dkv_assert(waiters_untaken(wal) >= wal->taken_waiters);
    __atomic_fetch_sub(&wal->wait_state, wal->taken_waiters, __ATOMIC_ACQ_REL);
    wal->taken_waiters = 0;
    wal->leader = 0;
    round_ended(wal);
    pthread_cond_broadcast(&wal->space_cv);
}

/* Makes the log durable up to target.  The mutex is held on entry and
   released on return: a follower woken by the end of a round that covers
   it returns without taking the mutex again. */
static int flush_wait(struct wal *wal, uint64_t target)
{
    unsigned rounds = 0;
    uint32_t entered, seq;
    uint64_t st;
    int rc;

    if (wal->durable_lsn >= target || wal->error != 0) {
        rc = wal->error;
        pthread_mutex_unlock(&wal->mutex);
        return rc;
    }
    st = __atomic_fetch_add(&wal->wait_state, 1, __ATOMIC_ACQ_REL);
    entered = (uint32_t)(st >> 32);
    /* Wake a gathering leader once, when its group is complete, not at
       every joiner: each wake-up is a context switch it does not need. */
    if (wal->gather_want != 0 && (uint32_t)st + 1 >= wal->gather_want)
        pthread_cond_signal(&wal->gather_cv);
    for (;;) {                                  /* the mutex is held here */
        if (wal->durable_lsn >= target || wal->error != 0) {
            pthread_mutex_unlock(&wal->mutex);
            break;
        }
        if (!wal->leader) {
            lead_one_round(wal);
            dkv_verify(rounds++ < 1000000);
            continue;
        }
        seq = __atomic_load_n(&wal->round_seq, __ATOMIC_ACQUIRE);
        pthread_mutex_unlock(&wal->mutex);
        round_wait(wal, seq);           /* returns at once if a round ended */
        if (__atomic_load_n(&wal->durable_lsn, __ATOMIC_ACQUIRE) >= target ||
            __atomic_load_n(&wal->error, __ATOMIC_ACQUIRE) != 0)
            break;
        pthread_mutex_lock(&wal->mutex);
    }
    waiter_leave(wal, entered);
    return __atomic_load_n(&wal->error, __ATOMIC_ACQUIRE);
}

/* The same, with the mutex held on entry and on return. */
static int flush_locked(struct wal *wal, uint64_t target)
{
    int rc = flush_wait(wal, target);

    pthread_mutex_lock(&wal->mutex);
    return rc;
}

int wal_flush_to(struct wal *wal, uint64_t lsn)
{
    int rc;

    pthread_mutex_lock(&wal->mutex);
    if (lsn > wal->end_lsn)
        lsn = wal->end_lsn;
    rc = flush_wait(wal, lsn);
    return rc;
}

int wal_sync(struct wal *wal)
{
    int rc;

    pthread_mutex_lock(&wal->mutex);
    rc = flush_wait(wal, wal->end_lsn);
    return rc;
}

int wal_write_ahead(struct wal *wal, uint64_t lsn)
{
    int rc;

    pthread_mutex_lock(&wal->mutex);
    /* Durable is not enough: a page holding an unfinished unit's change
       must not reach the disk, since recovery would drop the unit (W4).
       Nor is the page's own LSN: the unit's end mark lies after it, and
       until the mark is durable recovery drops the unit just the same -
       a unit's first MTRs made durable by another commit's sync, its last
       one appended without a sync, and the page written then, would be a
       unit half applied after a crash.  A page at or before the last unit
       end known durable is safe (units do not interleave: a unit of
       several MTRs holds the writers out, so no other unit's end lies
       inside it); else the log is made durable up to the last unit end,
       which is at or after the end of the page's unit.  A failed log
       writes no page at all, and says why (W8, E4: a close after a failed
       batch reports the failure, not DKV_ERR_BUSY). */
    if (wal->error != 0)
        rc = wal->error;
    else if (lsn > wal->unit_end_lsn)
        rc = DKV_ERR_BUSY;
    else
        rc = flush_locked(wal, lsn <= wal->durable_unit_end ? lsn : wal->unit_end_lsn);
    pthread_mutex_unlock(&wal->mutex);
    return rc;
}

/* ---- appending ------------------------------------------------------------------- */

static void wake_background(struct wal *wal)
{
    pthread_mutex_lock(&wal->bg_lock);
    wal->bg_wake = 1;
    pthread_cond_signal(&wal->bg_cv);
    pthread_mutex_unlock(&wal->bg_lock);
}

static int below_free_check(const struct wal *wal, uint64_t need)
{
    (void)need;
    return (wal->lsn - wal->checkpoint_lsn) * 100 <
           (uint64_t)WAL_FREE_CHECK_PCT * wal->capacity;
}

static int fits(const struct wal *wal, uint64_t need)
{
    return room_in_buffer(wal, need) && room_in_log(wal, need);
}

/* Waits (mutex held) until room(wal, need) holds.  A full buffer is
   written out by this thread; a full log waits for the checkpoint, asking
   the pool to flush (bounded, W5).  Counts stalls and the longest. */
static int wait_for_room(struct wal *wal, uint64_t need,
                         int (*room)(const struct wal *, uint64_t))
{
    uint64_t started = 0;
    struct timespec ts;

    while (wal->error == 0 && !room(wal, need)) {
        if (!room_in_buffer(wal, need)) {
            flush_locked(wal, wal->end_lsn);
            continue;
        }
        if (started == 0) {
            started = wal_now_us();
            wal->stalls++;
        } else if (wal_now_us() - started > WAL_SPACE_WAIT_MS * 1000ull) {
            return DKV_ERR_NOSPACE;           /* the log cannot be freed */
        }
        pthread_mutex_unlock(&wal->mutex);
        if (wal->cfg.wake_flusher)
            wal->cfg.wake_flusher(wal->cfg.arg);
        wake_background(wal);
        pthread_mutex_lock(&wal->mutex);
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 1000000;
        ts.tv_sec += ts.tv_nsec / 1000000000;
        ts.tv_nsec %= 1000000000;
        pthread_cond_timedwait(&wal->space_cv, &wal->mutex, &ts);
    }
    if (started != 0 && wal_now_us() - started > wal->stall_max_us)
        wal->stall_max_us = wal_now_us() - started;
    return wal->error;
}

static int make_room(struct wal *wal, uint64_t need)
{
    return wait_for_room(wal, need, fits);
}

int wal_free_check(struct wal *wal)
{
    /* The checkpoint first: a newer one read after lsn would hide use. */
    uint64_t ckpt = __atomic_load_n(&wal->checkpoint_lsn, __ATOMIC_ACQUIRE);
    uint64_t lsn = __atomic_load_n(&wal->lsn, __ATOMIC_ACQUIRE);
    int rc;

    /* The common case without the mutex: the log has room (lsn and the
       checkpoint only grow under it; a stale pair errs on waiting). */
    if (wal->ready && __atomic_load_n(&wal->error, __ATOMIC_RELAXED) == 0 &&
        lsn >= ckpt && (lsn - ckpt) * 100 <
                       (uint64_t)WAL_FREE_CHECK_PCT * wal->capacity)
        return DKV_OK;
    pthread_mutex_lock(&wal->mutex);
    rc = wal->ready ? wait_for_room(wal, 0, below_free_check) : DKV_ERR_INVALID;
    pthread_mutex_unlock(&wal->mutex);
    return rc;
}

/* Appends one MTR (mutex held, room made). */
static void append_mtr(struct wal *wal, const void *body, size_t len, int flags,
                       uint64_t *start_lsn, uint64_t *end_lsn)
{
    unsigned char hdr[MTR_HDR] = { 0 };
    unsigned char *block = buf_at(wal, wal_block_of(wal->lsn));

    if (load_le16(block + LB_OFF_FIRST_MTR) == 0)
        store_le16(block + LB_OFF_FIRST_MTR, (uint16_t)(wal->lsn % LOG_BLOCK));
    store_le32(hdr + MTR_OFF_LEN, (uint32_t)len);
    store_le32(hdr + MTR_OFF_CRC, crc32c(0, body, len));
    hdr[MTR_OFF_FLAGS] = (flags & WAL_UNIT_END) ? MTR_FLAG_COMMIT : 0;
    *start_lsn = wal->lsn;
    put_bytes(wal, hdr, sizeof(hdr));
    put_bytes(wal, body, len);
    *end_lsn = wal->end_lsn;
    wal->unmarked_new++;
    if (flags & WAL_UNIT_END)
        wal->unit_end_lsn = wal->end_lsn;
    wal->bytes += MTR_HDR + len;
    wal->commits += (flags & WAL_UNIT_END) != 0;
}

void wal_fail(struct wal *wal, int rc)
{
    pthread_mutex_lock(&wal->mutex);
    wal_set_error(wal, rc != DKV_OK ? rc : DKV_ERR_IO);
    pthread_cond_broadcast(&wal->space_cv);
    pthread_mutex_unlock(&wal->mutex);
}

static void commit_done_locked(struct wal *wal, uint64_t start_lsn)
{
    if (start_lsn < wal->split_lsn && wal->unmarked_old > 0)
        wal->unmarked_old--;
    else
        wal->unmarked_new--;
}

void wal_commit_done(struct wal *wal, uint64_t start_lsn)
{
    pthread_mutex_lock(&wal->mutex);
    commit_done_locked(wal, start_lsn);
    pthread_mutex_unlock(&wal->mutex);
}

int wal_commit_done_flush(struct wal *wal, uint64_t start_lsn, uint64_t lsn)
{
    int rc;

    pthread_mutex_lock(&wal->mutex);
    commit_done_locked(wal, start_lsn);
    rc = flush_wait(wal, lsn < wal->end_lsn ? lsn : wal->end_lsn);
    return rc;
}

uint64_t wal_fpi_lsn(struct wal *wal)
{
    uint64_t lsn;

    pthread_mutex_lock(&wal->mutex);
    lsn = wal->fpi_lsn;
    pthread_mutex_unlock(&wal->mutex);
    return lsn;
}

int wal_commit(struct wal *wal, const void *body, size_t len, int flags,
               uint64_t fpi_seen, uint64_t *start_lsn, uint64_t *end_lsn)
{
    uint64_t start, end;
    int rc;

    if (body == NULL || len == 0 || len > wal->buf_size / 4 || len > MTR_BODY_MAX)
        return DKV_ERR_INVALID;
    if (wal->cfg.read_only)
        return DKV_ERR_READONLY;
    pthread_mutex_lock(&wal->mutex);
    rc = wal->ready ? make_room(wal, lsn_span(MTR_HDR + len)) : DKV_ERR_INVALID;
    if (rc == DKV_OK && fpi_seen != wal->fpi_lsn)
        rc = WAL_RETRY;
    if (rc == DKV_OK) {
        append_mtr(wal, body, len, flags, &start, &end);
        if (flags & WAL_SYNC)
            rc = flush_locked(wal, end);
    }
    pthread_mutex_unlock(&wal->mutex);
    if (rc == DKV_OK) {
        if (start_lsn)
            *start_lsn = start;
        if (end_lsn)
            *end_lsn = end;
    }
    return rc;
}

/* ---- statistics ------------------------------------------------------------------ */

unsigned wal_fill_pct(struct wal *wal)
{
    uint64_t used;

    pthread_mutex_lock(&wal->mutex);
    used = wal->lsn - wal->checkpoint_lsn;
    pthread_mutex_unlock(&wal->mutex);
    return (unsigned)(used * 100 / wal->capacity);
}

void wal_stats_get(struct wal *wal, struct wal_stats *st)
{
    memset(st, 0, sizeof(*st));
    pthread_mutex_lock(&wal->mutex);
    st->lsn = wal->end_lsn;
    st->durable_lsn = wal->durable_lsn;
    st->checkpoint_lsn = wal->checkpoint_lsn;
    st->fpi_lsn = wal->fpi_lsn;
    st->capacity = wal->capacity;
    st->bytes = wal->bytes;
    st->writes = wal->writes;
    st->syncs = wal->syncs;
    st->commits = wal->commits;
    st->checkpoints = wal->checkpoints;
    st->stalls = wal->stalls;
    st->stall_max_us = wal->stall_max_us;
    pthread_mutex_unlock(&wal->mutex);
    st->direct = io_file_direct(wal->file);
}

uint64_t wal_db_id(const struct wal *wal)
{
    return wal->db_id;
}

/* ---- the file -------------------------------------------------------------------- */

static void encode_header(struct wal *wal, unsigned char *p)
{
    memset(p, 0, LOG_BLOCK);
    memcpy(p + LH_OFF_MAGIC, LOG_MAGIC, sizeof(LOG_MAGIC));
    store_le32(p + LH_OFF_VERSION, LOG_FORMAT_VERSION);
    store_le32(p + LH_OFF_BLOCK, LOG_BLOCK);
    store_le64(p + LH_OFF_CAPACITY, wal->capacity);
    store_le64(p + LH_OFF_DB_ID, wal->db_id);
    store_le32(p + LH_OFF_CRC, crc32c(0, p + 4, LOG_BLOCK - 4));
}

static int decode_header(struct wal *wal, const unsigned char *p)
{
    uint32_t i;

    if (load_le32(p + LH_OFF_CRC) != crc32c(0, p + 4, LOG_BLOCK - 4))
        return PAGER_CORRUPT(0, "log header checksum mismatch");
    if (memcmp(p + LH_OFF_MAGIC, LOG_MAGIC, sizeof(LOG_MAGIC)) != 0)
        return PAGER_CORRUPT(0, "not a DirectKV log (bad magic)");
    if (load_le32(p + LH_OFF_VERSION) > LOG_FORMAT_VERSION)
        return DKV_ERR_UNSUPPORTED;
    if (load_le32(p + LH_OFF_VERSION) != LOG_FORMAT_VERSION ||
        load_le32(p + LH_OFF_BLOCK) != LOG_BLOCK)
        return PAGER_CORRUPT(0, "log header has a bad version or block size");
    for (i = LH_END; i < LOG_BLOCK; i++)
        if (p[i] != 0)
            return PAGER_CORRUPT(0, "log header reserved bytes not zero");
    wal->capacity = load_le64(p + LH_OFF_CAPACITY);
    if (wal->capacity < (1u << 20) || wal->capacity % LOG_BLOCK != 0)
        return PAGER_CORRUPT(0, "log header has a bad capacity");
    if (wal->db_id != 0 && load_le64(p + LH_OFF_DB_ID) != wal->db_id)
        return PAGER_CORRUPT(0, "the log belongs to another database");
    wal->db_id = load_le64(p + LH_OFF_DB_ID);
    return DKV_OK;
}

/* Lays out a new log: zeros over all of it (so no later sync has metadata
   to write, W1), the header, and checkpoint 1 at the first record. */
static int create_log(struct wal *wal)
{
    uint64_t first = LOG_BLOCK + LB_HDR;
    int rc;

    while (wal->db_id == 0 &&
           getrandom(&wal->db_id, sizeof(wal->db_id), 0) != sizeof(wal->db_id))
        ;
    rc = io_file_fill_zero(wal->file, 0, LOG_DATA_OFF + wal->capacity);
    if (rc == DKV_OK) {
        encode_header(wal, wal->block);
        rc = wal_io(wal, IO_WRITE, wal->block, LOG_BLOCK, LOG_HDR_OFF);
    }
    /* The zeros and the header are durable before the first checkpoint
       slot, which marks the log finished (wal_unfinished). */
    if (rc == DKV_OK)
        rc = io_file_sync(wal->file);
    if (rc == DKV_OK)
        rc = ckpt_write(wal, 1, first, first);
    return rc;
}

static int block_is_zero(const unsigned char *p)
{
    size_t i;

    for (i = 0; i < LOG_BLOCK; i++)
        if (p[i] != 0)
            return 0;
    return 1;
}

int wal_unfinished(const char *path)
{
    struct io_ctx_config io = { .engine = DKV_IO_PSYNC, .depth = 1 };
    struct io_ctx *ctx = NULL;
    struct io_file *file = NULL;
    unsigned char *block = io_buf_alloc(LOG_BLOCK, LOG_BLOCK);
    int64_t size;
    unsigned slot;
    int rc, unfinished = 0;

    rc = block ? io_file_open(path, IO_OPEN_RDONLY, &file) : DKV_ERR_NOMEM;
    if (rc == DKV_ERR_INVALID)               /* no such file */
        unfinished = 1;
    if (rc == DKV_OK)
        rc = io_ctx_create(&io, &ctx);
    size = rc == DKV_OK ? io_file_size(file) : -1;
    if (size >= 0)
        unfinished = 1;                      /* unless a slot was written */
    for (slot = 0; size >= 0 && slot < 2 && unfinished; slot++) {
        struct io_req req = { .op = IO_READ, .file = file, .buf = block,
                              .len = LOG_BLOCK, .off = LOG_CKPT_OFF(slot) };
        struct io_req *reqs[1] = { &req };
        if ((uint64_t)size < LOG_CKPT_OFF(slot) + LOG_BLOCK)
            continue;                        /* never written: beyond the end */
        unfinished = io_run(ctx, reqs, 1) == DKV_OK && block_is_zero(block);
    }
    io_ctx_destroy(ctx);
    io_file_close(file);
    io_buf_free(block, LOG_BLOCK);
    return unfinished;
}

static int open_file(struct wal *wal, const char *path)
{
    int64_t size;
    int flags = 0, rc;

    flags |= wal->cfg.direct ? IO_OPEN_DIRECT : 0;
    flags |= wal->cfg.dsync ? IO_OPEN_DSYNC : 0;
    flags |= wal->cfg.read_only ? IO_OPEN_RDONLY : 0;
    flags |= wal->cfg.create && !wal->cfg.read_only ? IO_OPEN_CREATE : 0;
    rc = io_file_open(path, flags, &wal->file);
    if (rc != DKV_OK)
        return rc;
    size = io_file_size(wal->file);
    if (size < 0)
        return (int)size;
    pthread_mutex_lock(&wal->io_lock);
    /* New, or its creation never finished (a crash inside create_log). */
    if (!wal->cfg.read_only &&
        (size == 0 || (wal->cfg.create && wal_unfinished(path)))) {
        rc = create_log(wal);
    } else {
        /* A read error stays DKV_ERR_IO: only a short file is damage. */
        rc = (uint64_t)size < LOG_DATA_OFF ? PAGER_CORRUPT(0, "log file truncated")
                                           : wal_io(wal, IO_READ, wal->block,
                                                    LOG_BLOCK, LOG_HDR_OFF);
        if (rc == DKV_OK)
            rc = decode_header(wal, wal->block);
        if (rc == DKV_OK && (uint64_t)size < LOG_DATA_OFF + wal->capacity)
            rc = PAGER_CORRUPT(0, "log file shorter than its capacity");
    }
    if (rc == DKV_OK)
        rc = ckpt_load(wal);
    pthread_mutex_unlock(&wal->io_lock);
    return rc;
}

static int check_config(const struct wal_config *cfg)
{
    if (cfg->capacity != 0 &&
        (cfg->capacity < (1u << 20) || cfg->capacity % LOG_BLOCK != 0))
        return DKV_ERR_INVALID;
    if (cfg->buffer_size != 0 &&
        (cfg->buffer_size < (1u << 20) || cfg->buffer_size % LOG_BLOCK != 0))
        return DKV_ERR_INVALID;
    if (cfg->commit_mode != DKV_COMMIT_SYNC && cfg->commit_mode != DKV_COMMIT_ASYNC)
        return DKV_ERR_INVALID;
    if (cfg->checkpoint_pct > 100)
        return DKV_ERR_INVALID;
    return DKV_OK;
}

static int init_state(struct wal *wal, const struct wal_config *cfg)
{
    struct io_ctx_config io = { .engine = cfg->io_engine, .depth = 8,
                                .fail_setup_mask = cfg->io_fail_setup_mask };

    wal->cfg = *cfg;
    wal->capacity = cfg->capacity ? cfg->capacity : WAL_CAPACITY_DEFAULT;
    wal->buf_size = cfg->buffer_size ? cfg->buffer_size : WAL_BUFFER_DEFAULT;
    if (wal->cfg.commit_interval_ms == 0)
        wal->cfg.commit_interval_ms = WAL_INTERVAL_DEFAULT;
    wal->db_id = cfg->db_id;
    pthread_mutex_init(&wal->io_lock, NULL);
    pthread_mutex_init(&wal->mutex, NULL);
    pthread_mutex_init(&wal->ckpt_lock, NULL);
    pthread_mutex_init(&wal->bg_lock, NULL);
    pthread_cond_init(&wal->space_cv, NULL);
    pthread_cond_init(&wal->gather_cv, NULL);
    pthread_cond_init(&wal->bg_cv, NULL);
    wal->buf = io_buf_alloc(wal->buf_size, LOG_BLOCK);
    wal->block = io_buf_alloc(LOG_BLOCK, LOG_BLOCK);
    if (wal->buf == NULL || wal->block == NULL)
        return DKV_ERR_NOMEM;
    return io_ctx_create(&io, &wal->ctx);
}

static void free_state(struct wal *wal)
{
    io_ctx_destroy(wal->ctx);
    io_file_close(wal->file);
    io_buf_free(wal->block, LOG_BLOCK);
    io_buf_free(wal->buf, wal->buf_size);
    pthread_cond_destroy(&wal->bg_cv);
    pthread_cond_destroy(&wal->space_cv);
    pthread_cond_destroy(&wal->gather_cv);
    pthread_mutex_destroy(&wal->bg_lock);
    pthread_mutex_destroy(&wal->ckpt_lock);
    pthread_mutex_destroy(&wal->mutex);
    pthread_mutex_destroy(&wal->io_lock);
    free(wal);
}

int wal_open(const char *path, const struct wal_config *cfg, struct wal **walp)
{
    struct wal *wal;
    int rc;

    if (path == NULL || cfg == NULL || walp == NULL)
        return DKV_ERR_INVALID;
    rc = check_config(cfg);
    if (rc != DKV_OK)
        return rc;
    wal = calloc(1, sizeof(*wal));
    if (wal == NULL)
        return DKV_ERR_NOMEM;
    rc = init_state(wal, cfg);
    if (rc == DKV_OK)
        rc = open_file(wal, path);
    if (rc != DKV_OK) {
        free_state(wal);
        return rc;
    }
    *walp = wal;
    return DKV_OK;
}

void wal_stop_background(struct wal *wal)
{
    if (wal == NULL || !wal->bg_started)
        return;
    pthread_mutex_lock(&wal->bg_lock);
    wal->bg_stop = 1;
    pthread_cond_signal(&wal->bg_cv);
    pthread_mutex_unlock(&wal->bg_lock);
    pthread_join(wal->bg_thread, NULL);
    wal->bg_started = 0;
}

int wal_close(struct wal *wal)
{
    int rc = DKV_OK;

    if (wal == NULL)
        return DKV_OK;
    wal_stop_background(wal);
    if (wal->ready && !wal->cfg.read_only)
        rc = wal_sync(wal);
    free_state(wal);
    return rc;
}

/* ---- the background thread ---------------------------------------------------------- */

static void *bg_main(void *arg)
{
    struct wal *wal = arg;
    uint64_t last_sync = wal_now_us();
    struct timespec ts;

    pthread_mutex_lock(&wal->bg_lock);
    while (!wal->bg_stop) {
        if (!wal->bg_wake) {
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 50 * 1000000L;
            ts.tv_sec += ts.tv_nsec / 1000000000L;
            ts.tv_nsec %= 1000000000L;
            pthread_cond_timedwait(&wal->bg_cv, &wal->bg_lock, &ts);
        }
        wal->bg_wake = 0;
        if (wal->bg_stop)
            break;
        pthread_mutex_unlock(&wal->bg_lock);
        if (wal->cfg.commit_mode == DKV_COMMIT_ASYNC &&
            wal_now_us() - last_sync >= wal->cfg.commit_interval_ms * 1000ull) {
            wal_sync(wal);                    /* innodb_flush_log_at_trx_commit=2 */
            last_sync = wal_now_us();
        }
        ckpt_background(wal);
        pthread_mutex_lock(&wal->bg_lock);
    }
    pthread_mutex_unlock(&wal->bg_lock);
    return NULL;
}

int wal_bg_start(struct wal *wal)
{
    if (wal->cfg.read_only || wal->bg_started)
        return DKV_OK;
    if (pthread_create(&wal->bg_thread, NULL, bg_main, wal) != 0)
        return DKV_ERR_NOMEM;
    wal->bg_started = 1;
    return DKV_OK;
}
