/*
 * pager.h - the pager's interface to the layers above: checksums, page
 * format helpers, the data file (space) and, with the buffer pool, page
 * access.  The I/O layer has its own header, pager/io.h.  Design and rules
 * (P1.., IO1..): pager/README.md.
 */
#ifndef DKV_PAGER_PAGER_H
#define DKV_PAGER_PAGER_H

#include <stddef.h>
#include <stdint.h>

#include "page_format.h"

struct io_ctx;
struct io_file;
struct space;
struct pool;
struct frame;

/* ---- assertions -------------------------------------------------------- */

void pager_fail(const char *file, int line, const char *expr);

/* Debug builds only: a broken invariant of our own. */
#ifdef NDEBUG
#define dkv_assert(e) ((void)0)
#else
#define dkv_assert(e) ((e) ? (void)0 : pager_fail(__FILE__, __LINE__, #e))
#endif
/* Always on: cheap checks whose failure means memory is already wrong. */
#define dkv_verify(e) ((e) ? (void)0 : pager_fail(__FILE__, __LINE__, #e))

/* ---- corruption ---------------------------------------------------------- */

/* Records where corruption was found (this thread's last report) and
   returns DKV_ERR_CORRUPT: the one place to put a breakpoint. */
int pager_corrupt(const char *file, int line, uint64_t page_no,
                  const char *what);
#define PAGER_CORRUPT(page_no, what) \
    pager_corrupt(__FILE__, __LINE__, (page_no), (what))

struct pager_corruption {
    const char *file;          /* source file that found it                 */
    int         line;
    uint64_t    page_no;
    const char *what;          /* a static string                           */
};
/* The last corruption this thread reported (zeroed when there was none). */
struct pager_corruption pager_last_corruption(void);

/* ---- checksums ----------------------------------------------------------- */

/* CRC32C (Castagnoli) of buf, continuing from crc (0 to start).  Uses the
   SSE4.2 instruction when the CPU has it. */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);
/* The table implementation and the hardware one, for tests. */
uint32_t crc32c_sw(uint32_t crc, const void *buf, size_t len);
uint32_t crc32c_hw(uint32_t crc, const void *buf, size_t len);
int      crc32c_hw_available(void);

/* ---- pages --------------------------------------------------------------- */

/* Zeroes buf and writes a page header for page_no of the given type. */
void     page_init(void *page, uint32_t page_size, uint32_t page_no, int type);
int      page_type(const void *page);
uint32_t page_no(const void *page);
uint64_t page_lsn(const void *page);
void     page_set_lsn(void *page, uint64_t lsn);
/* Computes and stores the checksum; call just before the page is written. */
void     page_stamp(void *page, uint32_t page_size);
/* Checks a page just read as page_no: checksum, page number, reserved
   fields.  DKV_OK or DKV_ERR_CORRUPT.  An all-zero page (never written)
   is DKV_NOTFOUND, for the caller to judge. */
int      page_verify(const void *page, uint32_t page_size, uint32_t page_no);

/* ---- the data file ------------------------------------------------------- */

struct space_config {
    uint32_t page_size;        /* 0: the recorded size, or 16 KiB at create */
    int      create;           /* create the file when it does not exist    */
    int      direct;           /* ask for O_DIRECT                          */
    int      read_only;
    int      allow_torn_header;  /* a torn page 0 with a readable first
                                    sector opens (recovery will restore it) */
    int      redo_unfinished;    /* the log's creation never finished, so
                                    neither did this file's: a header never
                                    written (zeros) is laid out again        */
};

/* The file header's fields, as the layers above see them. */
struct space_header {
    uint32_t page_size;
    uint64_t page_count;       /* pages [0, count) in use or free           */
    uint32_t free_head;        /* first page of the free list, 0 = empty    */
    uint32_t free_count;
    uint64_t meta[FHDR_META_SLOTS];
};

/* Opens or creates the data file at path, doing its header I/O through
   ctx.  DKV_ERR_INVALID for a page size that is not a power of two in
   4K..64K or differs from the recorded one; DKV_ERR_CORRUPT for a damaged
   header; DKV_ERR_INVALID when the file is missing and create is 0. */
int  space_open(const char *path, const struct space_config *cfg,
                struct io_ctx *ctx, struct space **spp);
int  space_close(struct space *sp);

uint32_t        space_page_size(const struct space *sp);
struct io_file *space_file(const struct space *sp);
uint64_t        space_page_offset(const struct space *sp, uint64_t page_no);
/* Pages the file has room for now (its preallocated size). */
uint64_t        space_capacity(const struct space *sp);
/* The in-memory copy of the header; the caller may change it and then
   write it with space_write_header. */
struct space_header *space_header(struct space *sp);

/* Makes the file hold at least page_count pages, growing it by whole
   extents (never one page at a time).  DKV_ERR_NOSPACE leaves it as it was. */
int  space_ensure(struct space *sp, uint64_t page_count);
/* Encodes the in-memory header into page (a frame of page 0). */
void space_header_encode(struct space *sp, void *page);
/* Writes only the header's fields into page 0 (bytes FHDR_OFF_MAGIC..
   FHDR_END), keeping its page header; and reads them back (after redo),
   DKV_ERR_CORRUPT for impossible values. */
void space_header_store_fields(struct space *sp, void *page);
int  space_header_load_fields(struct space *sp, const void *page);
/* 1 when page 0 failed its checksum at open with allow_torn_header set:
   recovery must restore it from the log. */
int  space_header_torn(const struct space *sp);
/* 1 when space_open created the file (it did not exist or was empty). */
int  space_created(const struct space *sp);
/* Stamps and writes page 0 from the in-memory header (not synced). */
int  space_write_header(struct space *sp, struct io_ctx *ctx);
/* Reads and verifies one page, synchronously (cold paths and tests). */
int  space_read_page(struct space *sp, struct io_ctx *ctx, uint64_t page_no,
                     void *page);
/* Stamps and writes one page, synchronously (cold paths and tests). */
int  space_write_page(struct space *sp, struct io_ctx *ctx, uint64_t page_no,
                      void *page);

/* ---- the doublewrite file (P10, dblwr.c) ------------------------------- */

/* Torn-page protection: the cleaner writes each batch of pages here (and
   syncs) before it writes them in place, so a page torn by a power cut
   has a whole copy to be restored from at open. */
#define DBLWR_SEGMENTS       8u     /* batches being written at once, at most */
#define DBLWR_SEGMENT_PAGES  64u    /* pages per batch, at most               */

struct dblwr;

/* Opens the doublewrite file at path for pages of page_size bytes,
   creating it (zero-filled: later writes need no metadata; its directory
   synced) when missing, and laying it out afresh - no copies - when reset
   (a data file created at this open: old copies belong to another
   database) or when its creation never finished.  Header I/O through ctx.
   DKV_ERR_CORRUPT for a damaged header or one laid out for another page
   size. */
int  dblwr_open(const char *path, uint32_t page_size, int direct, int reset,
                struct io_ctx *ctx, struct dblwr **dwp);
void dblwr_close(struct dblwr *dw);
/* Before the pool opens and redo runs: every page of sp that fails its
   checksum and has a sound copy in the file (the newest, if several) is
   overwritten with it, and the data file synced.  A restored page 0 is
   loaded into sp's header.  *restored: how many pages. */
int  dblwr_restore(struct dblwr *dw, struct space *sp, struct io_ctx *ctx,
                   unsigned *restored);
/* Pages and batches written through the file so far. */
void dblwr_stats(struct dblwr *dw, uint64_t *pages, uint64_t *batches);

/* ---- the buffer pool: lifecycle --------------------------------------- */

/* The write-ahead hook (P2): before a page whose last change has LSN lsn is
   written, the pool calls wal_flush_to(arg, lsn), which returns once the
   log is durable up to lsn (0), or a DKV_ERR_* (the page stays dirty).
   NULL: no log yet, pages may be written at once. */
typedef int (*pool_wal_flush_fn)(void *arg, uint64_t lsn);
/* Log pressure for adaptive flushing: how full the log is, 0..100 percent
   of the space a checkpoint can free.  NULL: 0. */
typedef unsigned (*pool_log_fill_fn)(void *arg);
/* The clock LRU aging reads, in milliseconds (injectable for tests). */
typedef uint64_t (*pool_clock_fn)(void *arg);
/* The layer above checks the structure of each page read from the disk,
   after its checksum (P0): 0, or DKV_ERR_CORRUPT, which fails the read as a
   bad checksum does (a page whose checksum holds is still input). */
typedef int (*pool_page_check_fn)(void *arg, const void *page, uint32_t page_size,
                                  uint32_t page_no);

struct pool_config {
    size_t   pool_size;          /* bytes of frames; >= POOL_FRAMES_MIN pages */
    int      io_engine;          /* enum dkv_io_engine                        */
    unsigned io_fail_setup_mask; /* see struct io_ctx_config                  */
    unsigned old_blocks_pct;     /* old sublist, % of the LRU; 0 = 37 (5..95) */
    unsigned old_blocks_time_ms; /* a page must stay old this long before a
                                    second touch makes it young; default 1000
                                    (set POOL_OLD_BLOCKS_TIME_ZERO for 0)     */
    unsigned cleaner_threads;    /* 0 = 1; POOL_NO_CLEANER: none (tests)      */
    unsigned free_reserve;       /* clean free frames the cleaner keeps;
                                    0 = automatic                             */
    unsigned max_dirty_pct;      /* flush harder above this; 0 = 75           */
    pool_wal_flush_fn wal_flush_to;
    pool_log_fill_fn  log_fill;
    void    *wal_arg;
    struct dblwr *dblwr;         /* torn-page protection; NULL: none (P10)   */
    pool_clock_fn clock_ms;      /* NULL: CLOCK_MONOTONIC                     */
    void    *clock_arg;
    pool_page_check_fn page_check;   /* NULL: none                        */
    void    *page_check_arg;
};

#define POOL_FRAMES_MIN            32u   /* a B+tree descent and a split    */
#define POOL_NO_CLEANER            (~0u)
#define POOL_OLD_BLOCKS_TIME_ZERO  (~0u)

/* Creates a pool over an open data file (which must outlive it).
   DKV_ERR_INVALID for a pool smaller than POOL_FRAMES_MIN pages or a bad
   option; DKV_ERR_UNSUPPORTED when the I/O engine cannot be had. */
int  pool_open(struct space *sp, const struct pool_config *cfg,
               struct pool **poolp);
/* Stops the cleaners and frees the pool.  Dirty pages are NOT written:
   call pool_flush_all first to keep them.  No page may be fixed. */
void pool_close(struct pool *pool);

/* ---- page access ----------------------------------------------------------- */

enum pool_latch { POOL_S = 1, POOL_X = 2 };
enum pool_fix_flags {
    POOL_FIX_MAY_BE_EMPTY = 1 << 0,  /* a never-written (all-zero) page is
                                        not corruption (recovery)            */
    POOL_FIX_NO_READ      = 1 << 1,  /* the caller overwrites the whole page:
                                        do not read it (X latch only)        */
    POOL_FIX_TRY          = 1 << 2,  /* latch with trylock: DKV_ERR_BUSY (and
                                        no pin) when the page is latched     */
    POOL_FIX_HOT          = 1 << 3   /* a page every lookup passes through (a
                                        B+tree inner node): a hit on it while
                                        old makes it young at once (P6e)     */
};

/* Fixes page_no: pins it (P1: a pinned page is never evicted), reading it
   from disk on a miss, and latches it in mode.  Returns DKV_OK with *fp
   set; DKV_ERR_CORRUPT for a page that fails its checks or lies beyond the
   file; DKV_ERR_IO; DKV_ERR_NOMEM when every frame is pinned. */
int   pool_fix(struct pool *pool, uint32_t page_no, int latch, int flags,
               struct frame **fp);
/* Releases the latch and the pin taken by pool_fix or pool_page_alloc. */
void  pool_unfix(struct pool *pool, struct frame *f);
void *frame_data(const struct frame *f);         /* page_size bytes        */
uint32_t frame_page_no(const struct frame *f);

/*
 * Optimistic access (P11): a lookup that takes no lock, no pin and no
 * latch, so readers on many cores write no shared cache line.  Returns the
 * frame that holds page_no as a valid page and its version in *version,
 * or NULL when the latched way must be taken (the page is not in the pool,
 * is X-latched, is old in the LRU, or the lookup lost a race).  The bytes
 * of frame_data(f) may change while the caller reads them: it trusts
 * nothing it read (bounds-checks every offset first) until
 * pool_opt_valid(f, version) says the page did not change meanwhile.
 * Builds with ThreadSanitizer always return NULL.
 */
struct frame *pool_opt_fix(struct pool *pool, uint32_t page_no, uint64_t *version);
/* pool_opt_fix for a look that is not a use of the page (read-ahead
   planning): an old page too, and the LRU and hit counts are left alone. */
struct frame *pool_opt_peek(struct pool *pool, uint32_t page_no, uint64_t *version);
/* 1 when f still holds the same page, unchanged since pool_opt_fix. */
int   pool_opt_valid(const struct frame *f, uint64_t version);
/* 1 when the latched page f is exactly as it was read from the file and
   checked by pool_config.page_check (P0): no X latch since.  0 for a page
   created in the pool or changed, and when there is no page_check. */
int   pool_unchanged_since_read(const struct pool *pool, const struct frame *f);
/* Records a change to an X-fixed page: sets the page's LSN and puts it on
   the flush list if it was clean (P3). */
void  pool_mark_dirty(struct pool *pool, struct frame *f, uint64_t lsn);
/* Starts asynchronous reads of the listed pages that are not in the pool
   and returns at once; they enter the old end of the LRU. */
int   pool_prefetch(struct pool *pool, const uint32_t *page_nos, unsigned n);
/* Finishes the reads this thread started that have completed, without
   waiting: nobody may be waiting for them, and until then their pages
   look still in flight to pool_opt_peek (a scan's read-ahead plans from
   the parent nodes it read ahead). */
void  pool_poll_reads(struct pool *pool);

/* ---- page allocation ----------------------------------------------------- */

/* Allocates a page (from the persistent free list, else by extending the
   file) and returns it X-fixed, initialised as type, and dirty at lsn; the
   header page is dirtied at lsn too. */
int   pool_page_alloc(struct pool *pool, int type, uint64_t lsn,
                      struct frame **fp);
/* Puts page_no on the persistent free list (it must not be fixed). */
int   pool_page_free(struct pool *pool, uint32_t page_no, uint64_t lsn);
/* Reads and writes the header's meta slots (for the layers above). */
uint64_t pool_meta_get(struct pool *pool, unsigned slot);
void  pool_meta_set(struct pool *pool, unsigned slot, uint64_t value,
                    uint64_t lsn);

/* ---- mini-transactions (the pager's side; wal/ frames the log) -------------- */

/* Record types the pager defines and applies (0..63; the engine's: 64..). */
enum redo_type {
    REDO_PAGE_INIT  = 1,   /* payload: u16 page type                         */
    REDO_PAGE_WRITE = 2,   /* payload: u32 offset, then the bytes written    */
    REDO_PAGE_IMAGE = 3,   /* payload: the whole page (W6)                   */
    REDO_NOOP       = 4    /* no change: ends a unit whose last MTR changed
                              nothing                                         */
};
#define REDO_PAGER_MAX 63

#define POOL_MTR_PAGES 32u

struct pool_mtr_page {
    struct frame *f;
    int           latch;       /* POOL_S or POOL_X                           */
    uint64_t      prev_lsn;    /* the page's LSN when this MTR fixed it      */
    int           modified, inited;
};

/* The pages one operation holds and the redo records of its changes.  All
   pages stay fixed until pool_mtr_commit; the log sees the records as one
   unit (wal/README.md W1). */
struct pool_mtr {
    struct pool          *pool;
    unsigned              count;
    struct pool_mtr_page  pages[POOL_MTR_PAGES];
    unsigned char        *log;                 /* records, in change order  */
    size_t                log_len, log_cap;
    unsigned char        *body;                /* built by pool_mtr_body    */
    size_t                body_len, body_cap;
    int                   unlogged;            /* no records are kept       */
};

void pool_mtr_start(struct pool_mtr *m, struct pool *pool);
/* Fixes page_no for this MTR (again: the same frame; S then X: invalid). */
int  pool_mtr_fix(struct pool_mtr *m, uint32_t page_no, int latch, int flags,
                  struct frame **fp);
/* Writes len bytes at off (past the page header) of an X-fixed page and
   logs it. */
int  pool_mtr_write(struct pool_mtr *m, struct frame *f, uint32_t off,
                    const void *data, uint32_t len);
/* Logs a change the caller made itself to an X-fixed page, as a record of
   an engine-defined type (> REDO_PAGER_MAX) that recovery hands back to
   the engine (pool_redo_apply_fn).  DKV_ERR_INVALID for a page not held X
   or a pager type. */
int  pool_mtr_log(struct pool_mtr *m, struct frame *f, int type,
                  const void *payload, uint32_t len);
/* Allocates a page (free list first), X-fixed, initialised as type. */
int  pool_mtr_alloc(struct pool_mtr *m, int type, struct frame **fp);
/* Puts page_no on the persistent free list. */
int  pool_mtr_free(struct pool_mtr *m, uint32_t page_no);
/* Before an MTR (no latch held): makes sure `pages` allocations will not
   need the file to grow, growing it now if they would, so that a full
   disk is DKV_ERR_NOSPACE before any page changes, not in the middle of
   a split.  Quick when the file has the room. */
int  pool_reserve(struct pool *pool, uint64_t pages);
int  pool_mtr_meta_set(struct pool_mtr *m, unsigned slot, uint64_t value);
/* Reads a meta slot inside an MTR: fixes page 0 exclusive first, so the
   value cannot change before the MTR commits (pool_meta_get latches page 0
   itself, so it must not be called while an MTR holds it). */
int  pool_mtr_meta_get(struct pool_mtr *m, unsigned slot, uint64_t *value);
/* Builds the log body: a whole-page image first for every changed page
   whose LSN was <= fpi_lsn, then the other pages' records.  *len = 0 when
   nothing changed. */
int  pool_mtr_body(struct pool_mtr *m, uint64_t fpi_lsn, const void **body,
                   size_t *len);
/* After the log took the body at [start_lsn, end_lsn): marks the changed
   pages dirty (oldest = start, page LSN = end) and releases every page. */
void pool_mtr_commit(struct pool_mtr *m, uint64_t start_lsn, uint64_t end_lsn);
/* Releases the pages of an MTR that changed nothing. */
void pool_mtr_release(struct pool_mtr *m);
/* Releases the pages of an MTR the log refused, without marking them
   dirty: only after the log failed for good (nothing is written then). */
void pool_mtr_abandon(struct pool_mtr *m);
void pool_mtr_free_buffers(struct pool_mtr *m);

/* Redoes one engine record on the bytes of a page (X-latched): returns 0,
   or DKV_ERR_CORRUPT when the payload does not fit the page. */
typedef int (*pool_redo_fn)(void *arg, void *page, uint32_t page_size,
                            int type, const void *payload, uint32_t len);
/* Recovery: applies an engine record of an MTR that ended at end_lsn
   through fn, unless the page already has it (its LSN) - the same rules
   as pool_redo_apply. */
int  pool_redo_apply_fn(struct pool *pool, uint64_t end_lsn, int type,
                        uint32_t page_no, const void *payload, uint32_t len,
                        pool_redo_fn fn, void *arg);
/* Recovery: applies one pager record of an MTR that ended at end_lsn,
   unless the page already has it (its LSN).  DKV_ERR_CORRUPT for a record
   that does not fit. */
int  pool_redo_apply(struct pool *pool, uint64_t end_lsn, int type,
                     uint32_t page_no, const void *payload, uint32_t len);
/* After recovery: DKV_ERR_CORRUPT if page 0 was torn and no image in the
   log restored it. */
int  pool_recovery_done(struct pool *pool);

/* ---- write-back ------------------------------------------------------------ */

/* Writes every dirty page (respecting P2) and syncs the data file. */
int   pool_flush_all(struct pool *pool);
/* Writes the pages changed at or before lsn (those changed later may stay
   dirty: a fuzzy checkpoint's flush while writers go on) and syncs. */
int   pool_flush_upto(struct pool *pool, uint64_t lsn);
/* The oldest modification LSN among dirty pages, including pages being
   written; 0 when none is dirty (the checkpoint LSN, P4). */
uint64_t pool_oldest_dirty_lsn(struct pool *pool);
/* Wakes the cleaner (the log calls it when it fills). */
void  pool_wake_cleaner(struct pool *pool);

/* ---- statistics ------------------------------------------------------------ */

struct pool_stats {
    uint64_t frames, used, free_frames, dirty_pages;
    uint64_t hits, misses, read_waits;    /* read_waits: hit a page being read */
    uint64_t prefetched;                  /* reads started by pool_prefetch */
    uint64_t read_requests;               /* read requests (a read-ahead run of
                                             neighbouring pages is one)      */
    uint64_t evictions, pages_read, pages_written, write_batches;
    uint64_t made_young, not_young;
    uint64_t reads_inflight, writes_inflight;
    uint64_t fg_free_waits;               /* a fix waited for a free frame  */
    uint64_t fg_single_flushes;           /* a fix wrote a dirty page itself */
    uint64_t lru_len, old_len;
    uint64_t images_logged, image_bytes;  /* full page images in MTR bodies */
    int64_t  write_error;                 /* first write-back error, or 0    */
    const char *io_engine;
    int      direct;
};
void  pool_stats_get(struct pool *pool, struct pool_stats *st);

/* ---- test and debug -------------------------------------------------------- */

/* Checks the pool's invariants (lists, counts, page table); DKV_OK or
   aborts with the broken one.  For tests, while no other thread uses the
   pool. */
int   pool_check(struct pool *pool);
/* 1 when page_no is in the pool (any state), without touching the LRU. */
int   pool_contains(struct pool *pool, uint32_t page_no);
/* 1 when page_no is in the pool and in the young part of the LRU. */
int   pool_is_young(struct pool *pool, uint32_t page_no);
/* Position of page_no in the LRU from the young head, or -1. */
long  pool_lru_position(struct pool *pool, uint32_t page_no);

#endif /* DKV_PAGER_PAGER_H */
