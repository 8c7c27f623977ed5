/*
 * wal.h - the redo log: mini-transactions (MTRs) appended as units, group
 * commit, fuzzy checkpoints with full page images, and recovery at open.
 * The log frames, orders and syncs records; each record type is applied by
 * the layer that defines it, through the callback given to wal_recover.
 * Design, rules W1.. and measurements: wal/README.md.
 */
#ifndef DKV_WAL_WAL_H
#define DKV_WAL_WAL_H

#include <stddef.h>
#include <stdint.h>

struct wal;

/* ---- lifecycle ---------------------------------------------------------- */

struct wal_config {
    uint64_t capacity;          /* data area bytes; 0 = 256 MiB; >= 1 MiB   */
    size_t   buffer_size;       /* log buffer bytes; 0 = 16 MiB; >= 1 MiB    */
    int      direct;            /* O_DIRECT log writes (falls back, IO4)      */
    int      dsync;             /* O_DSYNC writes instead of write+fdatasync */
    int      commit_mode;       /* DKV_COMMIT_SYNC or DKV_COMMIT_ASYNC        */
    uint32_t commit_interval_ms;/* ASYNC: background sync period; 0 = 1000   */
    int      io_engine;         /* enum dkv_io_engine                         */
    unsigned io_fail_setup_mask;
    int      read_only;
    int      create;            /* create the log when missing                */
    unsigned checkpoint_pct;    /* log fill that starts a checkpoint; 0 = 25;
                                   100: only when the log is full or asked   */
    int      no_page_images;    /* 1: torn pages are handled elsewhere (the
                                   data file's doublewrite): the image
                                   threshold stays 0 and no page is logged
                                   whole (W6)                                 */
    uint64_t db_id;             /* ties the log to its data file; 0 at create:
                                   a fresh random id (read it back with
                                   wal_db_id)                                 */
    /* What checkpoints need from the buffer pool (W5): the oldest
       modification LSN among dirty pages (0: none); making data-file writes
       durable; and flushing harder when the log fills.  May be NULL. */
    uint64_t (*oldest_dirty_lsn)(void *arg);
    int      (*sync_data)(void *arg);
    void     (*wake_flusher)(void *arg);
    /* A checkpoint that waits (wal_checkpoint(wal, 1)) writes the pages
       changed before its LSN itself rather than wait for the cleaner to:
       writers that keep dirtying pages meanwhile cannot hold it up.  May
       be NULL (then it waits). */
    int      (*flush_upto)(void *arg, uint64_t lsn);
    void     *arg;
};

/* Opens or creates the log at path.  Appending is refused until
   wal_recover has run.  DKV_ERR_CORRUPT for a damaged header or no valid
   checkpoint; DKV_ERR_INVALID for a bad option or a missing log without
   create. */
int  wal_open(const char *path, const struct wal_config *cfg,
              struct wal **walp);
/* 1 when the log at path was never finished: missing, empty, or with no
   checkpoint slot ever written (a crash while wal_open created it; a log
   that was ever opened has a valid slot, the two alternate).  Then
   wal_open with create lays it out again.  0 otherwise, or on an error. */
int  wal_unfinished(const char *path);
/* Stops the background thread (checkpoints, asynchronous syncs); the log
   still takes commits.  Idempotent; wal_close calls it. */
void wal_stop_background(struct wal *wal);
/* Stops the background threads, syncs what was appended, closes. */
int  wal_close(struct wal *wal);
uint64_t wal_db_id(const struct wal *wal);

/* ---- recovery ------------------------------------------------------------ */

/* Applies one record of an MTR that ended at end_lsn (the page's new LSN). */
typedef int  (*wal_apply_fn)(void *arg, uint64_t end_lsn, int type,
                             uint32_t page_no, const void *payload,
                             uint32_t len);
/* Starts reads of pages recovery will need next (may be NULL). */
typedef void (*wal_prefetch_fn)(void *arg, const uint32_t *page_nos,
                                unsigned n);

struct wal_recovery {
    uint64_t checkpoint_lsn;    /* where replay started                       */
    uint64_t end_lsn;           /* end of the last complete commit unit       */
    uint64_t scanned_bytes;     /* log bytes read                             */
    uint64_t mtrs, records;     /* applied                                    */
    uint64_t discarded_mtrs;    /* complete MTRs after the last commit mark   */
    uint64_t elapsed_us;
};

/* Replays the log from the last checkpoint (W7): stops at the first bad
   block or incomplete MTR, applies only MTRs up to the last commit mark,
   then erases the tail after it and starts the background threads.  Run it
   once after wal_open, before appending.  DKV_ERR_CORRUPT when an applied
   record fails (the database must not be opened). */
int  wal_recover(struct wal *wal, wal_apply_fn apply, wal_prefetch_fn prefetch,
                 void *arg, struct wal_recovery *out);

/* ---- appending ------------------------------------------------------------- */

enum wal_commit_flags {
    WAL_UNIT_END = 1 << 0,      /* this MTR ends a commit unit (W2)           */
    WAL_SYNC     = 1 << 1       /* return once durable (group commit, W3)     */
};
#define WAL_RETRY 2             /* wal_commit: the image threshold moved      */

/* Waits, holding no page latch, until the log has room for an MTR of
   ordinary size (fill below 85%), asking the pool to flush and the
   checkpoint to advance (InnoDB's log_free_check).  Call it before an MTR
   latches pages, so no committer ever waits for log space while holding
   pages the checkpoint needs written.  Counts stalls. */
int  wal_free_check(struct wal *wal);

/* The full-page-image threshold (W6): a page whose LSN is at most this
   must be logged whole at its next change. */
uint64_t wal_fpi_lsn(struct wal *wal);

/* Appends one MTR body (records, see wal_format.h) as a unit.  fpi_seen is
   the wal_fpi_lsn() the body was built against: if it moved, nothing is
   appended and WAL_RETRY is returned (rebuild the body and call again).
   *start_lsn, *end_lsn: where the MTR lies.  DKV_ERR_INVALID for an empty
   or oversized body; DKV_ERR_IO after a failed log write (sticky, W8). */
int  wal_commit(struct wal *wal, const void *body, size_t len, int flags,
                uint64_t fpi_seen, uint64_t *start_lsn, uint64_t *end_lsn);

/* Fails the log for good with rc (sticky, W8): every later commit, sync
   and write-ahead check returns rc, so no page is written from now on.
   For a caller that changed pages it could not log - those changes must
   never reach the disk; reopening recovers the last durable state. */
void wal_fail(struct wal *wal, int rc);

/* Says that the pages changed by the MTR that started at start_lsn are on
   the pool's flush list (W5b).  Every successful wal_commit needs one. */
void wal_commit_done(struct wal *wal, uint64_t start_lsn);
/* wal_commit_done, then durable up to lsn, in one visit to the log. */
int  wal_commit_done_flush(struct wal *wal, uint64_t start_lsn, uint64_t lsn);

/* The write-ahead rule for the pool (W4): returns once the log is durable
   up to lsn; DKV_ERR_BUSY when lsn lies in an unfinished commit unit (the
   page must wait). */
int  wal_write_ahead(struct wal *wal, uint64_t lsn);
/* Makes everything appended so far durable. */
int  wal_sync(struct wal *wal);
/* Durable up to lsn (lsn no later than the append position). */
int  wal_flush_to(struct wal *wal, uint64_t lsn);

/* ---- checkpoints ------------------------------------------------------------- */

/* One checkpoint step (W5): sets a candidate if there is none; writes it
   once no page older than it is dirty.  With wait, keeps asking the pool to
   flush until it is written (bounded).  Returns DKV_OK (written or not yet)
   or an error. */
int  wal_checkpoint(struct wal *wal, int wait);
/* How full the log is: percent of capacity between checkpoint and end. */
unsigned wal_fill_pct(struct wal *wal);

/* ---- statistics --------------------------------------------------------------- */

struct wal_stats {
    uint64_t lsn, durable_lsn, checkpoint_lsn, fpi_lsn;
    uint64_t capacity;
    uint64_t bytes;             /* MTR bytes appended                        */
    uint64_t writes, syncs;     /* log writes, fdatasync calls               */
    uint64_t commits, checkpoints;
    uint64_t stalls;            /* appends that waited for log space         */
    uint64_t stall_max_us;      /* the longest such wait                     */
    int      direct;
};
void wal_stats_get(struct wal *wal, struct wal_stats *st);

/* ---- hot backup (wal/backup.c, used by engine/backup.c) ---------------------- */

struct wal_backup_info {
    uint64_t checkpoint_lsn;    /* the copy's recovery starts here            */
    uint64_t checkpoint_no;
    uint64_t capacity;          /* the copy has the same data area            */
    uint64_t file_size;         /* bytes of the log file                      */
    int      fd;                /* the log file (to copy blocks from)         */
};

/* Notes the current checkpoint: every change before it is in the data
   file, so a copy of the data file taken from now on, plus the log from
   it, recovers to a consistent state. */
void wal_backup_start(struct wal *wal, struct wal_backup_info *bi);
/* Offset in the log file (and in a copy of the same capacity) of the block
   holding lsn. */
uint64_t wal_backup_offset(const struct wal *wal, uint64_t lsn);
/* 1 when the 4 KiB block is the intact stream block at block_lsn (CRC and
   LSN agree); 0 for a torn block or one from another lap. */
int  wal_block_intact(const void *block, uint64_t block_lsn);
/* Fills hdr with the log's header block (read back and checked) and slot
   with a checkpoint block for bi->checkpoint_lsn; *slot_off: where the
   slot goes.  Both buffers are 4 KiB, aligned for direct I/O. */
int  wal_backup_blocks(struct wal *wal, const struct wal_backup_info *bi,
                       void *hdr, void *slot, uint64_t *slot_off);

#endif /* DKV_WAL_WAL_H */
