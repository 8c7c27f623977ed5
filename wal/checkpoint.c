/*
 * checkpoint.c - fuzzy checkpoints (W5) and the full-page-image threshold
 * that makes them safe against torn pages (W6).
 *
 * A checkpoint at LSN c promises: every change before c is in a data page
 * that is on disk whole, and every page changed at or after c was logged
 * whole at its first change after c.  So recovery may start at c even if a
 * page write tore at the crash.  A checkpoint is made in two steps:
 *   1. choose the candidate c = the current append position and raise the
 *      image threshold to c (from now on, a page whose LSN is <= c is
 *      logged whole at its next change);
 *   2. once no page older than c is dirty and no MTR before c is still on
 *      its way to the flush list, sync the data file, then write c into the
 *      older of the two checkpoint slots and sync the log.
 * Step 2 waits for the page cleaner, which flushes oldest-first harder as
 * the log fills; log space before c is then free for reuse.
 *
 * Entry points: wal_checkpoint, ckpt_load, ckpt_write, ckpt_background.
 */
#include "wal_int.h"

#include "dkv.h"

#include <string.h>
#include <time.h>

#define CKPT_START_PCT   25u      /* start a checkpoint at this log fill   */
#define CKPT_FULL_PCT    90u      /* ... and always from this one          */
#define CKPT_WAIT_MS     60000u   /* wal_checkpoint(wait) gives up after   */

static int decode_slot(const struct wal *wal, const unsigned char *p,
                       uint64_t *no, uint64_t *lsn)
{
    unsigned i;

    if (load_le32(p + CK_OFF_CRC) != crc32c(0, p + 4, LOG_BLOCK - 4) ||
        load_le32(p + CK_OFF_MAGIC) != CKPT_MAGIC ||
        load_le64(p + CK_OFF_DB_ID) != wal->db_id)
        return 0;
    for (i = CK_END; i < LOG_BLOCK; i++)
        if (p[i] != 0)
            return 0;
    *no = load_le64(p + CK_OFF_NO);
    *lsn = load_le64(p + CK_OFF_LSN);
    return *no != 0 && *lsn % LOG_BLOCK >= LB_HDR;
}

int ckpt_load(struct wal *wal)
{
    uint64_t no, lsn, best_no = 0, best_lsn = 0;
    unsigned slot;
    int rc;

    for (slot = 0; slot < 2; slot++) {
        rc = wal_io(wal, IO_READ, wal->block, LOG_BLOCK, LOG_CKPT_OFF(slot));
        if (rc != DKV_OK)
            return rc;          /* the size was checked: a read error */
        if (decode_slot(wal, wal->block, &no, &lsn) && no > best_no) {
            best_no = no;
            best_lsn = lsn;
        }
    }
    if (best_no == 0)
        return PAGER_CORRUPT(0, "log has no valid checkpoint");
    wal->checkpoint_no = best_no;
    __atomic_store_n(&wal->checkpoint_lsn, best_lsn, __ATOMIC_RELAXED);
    return DKV_OK;
}

void ckpt_encode(const struct wal *wal, unsigned char *p, uint64_t no,
                 uint64_t lsn, uint64_t end_lsn)
{
    memset(p, 0, LOG_BLOCK);
    store_le32(p + CK_OFF_MAGIC, CKPT_MAGIC);
    store_le64(p + CK_OFF_NO, no);
    store_le64(p + CK_OFF_LSN, lsn);
    store_le64(p + CK_OFF_END_LSN, end_lsn);
    store_le64(p + CK_OFF_DB_ID, wal->db_id);
    store_le32(p + CK_OFF_CRC, crc32c(0, p + 4, LOG_BLOCK - 4));
}

int ckpt_write(struct wal *wal, uint64_t no, uint64_t lsn, uint64_t end_lsn)
{
    unsigned char *p = wal->block;
    int rc;

    ckpt_encode(wal, p, no, lsn, end_lsn);
    rc = wal_io(wal, IO_WRITE, p, LOG_BLOCK, LOG_CKPT_OFF(no % 2));
    if (rc == DKV_OK && !wal->cfg.dsync)
        rc = io_file_sync(wal->file);
    return rc;
}

/* Step 1: the candidate, and the image threshold raised to it. */
static uint64_t choose_candidate(struct wal *wal)
{
    uint64_t c;

    pthread_mutex_lock(&wal->mutex);
    if (wal->cand_lsn == 0) {
        wal->cand_lsn = wal->lsn;
        if (!wal->cfg.no_page_images)
            wal->fpi_lsn = wal->lsn;
        wal->split_lsn = wal->lsn;
        wal->unmarked_old += wal->unmarked_new;
        wal->unmarked_new = 0;
    }
    c = wal->cand_lsn;
    pthread_mutex_unlock(&wal->mutex);
    return c;
}

/* Whether everything before c is in written pages (step 2's condition). */
static int candidate_ready(struct wal *wal, uint64_t c)
{
    uint64_t oldest;
    int pending;

    pthread_mutex_lock(&wal->mutex);
    pending = wal->unmarked_old > 0;
    pthread_mutex_unlock(&wal->mutex);
    if (pending)
        return 0;
    oldest = wal->cfg.oldest_dirty_lsn ? wal->cfg.oldest_dirty_lsn(wal->cfg.arg) : 0;
    return oldest == 0 || oldest >= c;
}

static int wait_ready(struct wal *wal, uint64_t c)
{
    struct timespec ms = { 0, 1000000L };
    unsigned waited = 0;

    if (wal->cfg.flush_upto) {
        int rc = wal->cfg.flush_upto(wal->cfg.arg, c);
        if (rc != DKV_OK)
            return rc;
    }
    while (!candidate_ready(wal, c)) {
        if (waited++ >= CKPT_WAIT_MS)
            return DKV_ERR_BUSY;
        if (wal->cfg.wake_flusher)
            wal->cfg.wake_flusher(wal->cfg.arg);
        nanosleep(&ms, NULL);
    }
    return DKV_OK;
}

/* Step 2: make it durable and record it. */
static int finish(struct wal *wal, uint64_t c)
{
    uint64_t no, end;
    int rc = wal_sync(wal);

    if (rc == DKV_OK && wal->cfg.sync_data)
        rc = wal->cfg.sync_data(wal->cfg.arg);
    pthread_mutex_lock(&wal->mutex);
    no = wal->checkpoint_no + 1;
    end = wal->end_lsn;
    pthread_mutex_unlock(&wal->mutex);
    if (rc == DKV_OK) {
        pthread_mutex_lock(&wal->io_lock);
        rc = ckpt_write(wal, no, c, end);
        pthread_mutex_unlock(&wal->io_lock);
    }
    pthread_mutex_lock(&wal->mutex);
    if (rc == DKV_OK) {
        __atomic_store_n(&wal->checkpoint_lsn, c, __ATOMIC_RELAXED);
        wal->checkpoint_no = no;
        wal->cand_lsn = 0;
        wal->checkpoints++;
        pthread_cond_broadcast(&wal->space_cv);
    } else {
        wal_set_error(wal, rc);              /* a failed checkpoint sticks */
    }
    pthread_mutex_unlock(&wal->mutex);
    return rc;
}

int wal_checkpoint(struct wal *wal, int wait)
{
    uint64_t c;
    int rc;

    if (wal->cfg.read_only)
        return DKV_ERR_READONLY;
    pthread_mutex_lock(&wal->ckpt_lock);
    pthread_mutex_lock(&wal->mutex);
    rc = wal->ready ? wal->error : DKV_ERR_INVALID;
    pthread_mutex_unlock(&wal->mutex);
    if (rc == DKV_OK) {
        c = choose_candidate(wal);
        if (wait)
            rc = wait_ready(wal, c);
        if (rc == DKV_OK && (wait || candidate_ready(wal, c)))
            rc = finish(wal, c);
    }
    pthread_mutex_unlock(&wal->ckpt_lock);
    return rc;
}

void ckpt_background(struct wal *wal)
{
    int pending;

    pthread_mutex_lock(&wal->mutex);
    pending = wal->cand_lsn != 0;
    pthread_mutex_unlock(&wal->mutex);
    unsigned start = wal->cfg.checkpoint_pct ? wal->cfg.checkpoint_pct
                                             : CKPT_START_PCT;
    unsigned fill = wal_fill_pct(wal);

    if (pending || fill >= start || fill >= CKPT_FULL_PCT)
        wal_checkpoint(wal, 0);
}
