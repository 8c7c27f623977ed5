/*
 * pool_int.h - the buffer pool's frames, page table, LRU and flush list,
 * shared by pool.c, lru.c and cleaner.c only.  The model, the rules (P1..)
 * and the lock order are in pager/README.md, sections 2-5.
 */
#ifndef DKV_PAGER_POOL_INT_H
#define DKV_PAGER_POOL_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "io.h"
#include "pager.h"

#define POOL_PARTS        64u       /* page-table partitions (power of two)  */
#define POOL_IO_SLOTS_MIN 4u        /* I/O contexts made at open, at least   */
#define POOL_IO_SLOTS     64u       /* I/O contexts at most (made on demand) */
#define POOL_IO_DEPTH     128u      /* requests in flight per slot           */
#define POOL_RUN_MAX      64u       /* neighbouring pages one read-ahead
                                       request may carry                     */
#define POOL_RUN_GAP      2u        /* pages a run may read over, unasked    */
#define POOL_PREFETCH_BATCH 512u    /* frames pool_prefetch claims per submit */
#define POOL_LRU_SCAN     128u      /* frames a victim search looks at       */
#define POOL_WAIT_MAX_MS  10000u    /* a fix gives up waiting for a frame    */

/* Optimistic access (P11) reads page bytes that a writer may be changing
   and throws away what it read when the version moved: a race by design,
   which ThreadSanitizer would report, so its builds go the latched way. */
#if defined(__SANITIZE_THREAD__)
#define POOL_OPTIMISTIC 0
#else
#define POOL_OPTIMISTIC 1
#endif

/* A frame's life (README section 5).  Transitions:
 *   FREE -> READING     fix miss or prefetch (frame_claim)        pool.c
 *   READING -> VALID    read verified (read_done)                  pool.c
 *   READING -> FAILED   read error or bad checksum (read_done)     pool.c
 *   FREE -> VALID       a page allocated, no read (pool_page_alloc) pool.c
 *   VALID -> FREE       eviction (evict_victim)                    lru.c
 *   FAILED -> FREE      the last pin is released (pool_unfix)      pool.c
 */
enum frame_state { FRAME_FREE = 0, FRAME_READING, FRAME_VALID, FRAME_FAILED };

struct pool;

/* What a request's owner points to: the function that handles its
   completion, whoever reaps it (a reader, a waiter, the cleaner). */
struct io_done_hook {
    void (*done)(struct pool *pool, struct io_req *req);
};

struct frame {
    /* Page table: under the partition lock of page_no. */
    uint32_t          page_no;
    _Atomic int       state;          /* enum frame_state                    */
    int               read_rc;        /* FAILED: why; READING: 0             */
    int               empty;          /* read an all-zero page               */
    uint64_t          redo_end_lsn;   /* recovery: the MTR being applied to
                                         this page (under its X latch)       */
    atomic_int        redo_holding;   /* recovery: held for an MTR being
                                         redone - not written meanwhile      */
    struct frame     *hash_next;
    /* Pins: atomic; a new pin on an unpinned frame is taken only under the
       partition lock (P1). */
    atomic_uint       pin_count;
    /* The page latch: protects the page bytes. */
    pthread_rwlock_t  latch;
    /* Optimistic readers' check (P11): odd while the page is X-latched,
       +1 at X latch and at X unlatch, +2 at eviction.  A reader that saw
       the same even value before and after reading the bytes read a
       consistent page. */
    _Atomic uint64_t  version;
    /* version when the page was read and passed the read-time checks (P0);
       UINT64_MAX for a page created in the pool or not read whole. */
    _Atomic uint64_t  read_version;
    /* LRU: under pool->lru_lock; old and times also read without it. */
    struct frame     *lru_prev, *lru_next;
    atomic_int        in_lru;
    atomic_int        old;            /* 1: in the old sublist               */
    _Atomic uint64_t  first_access_ms; /* UINT64_MAX: not touched since read */
    _Atomic uint64_t  young_clock;    /* pool->evict_clock when made young   */
    /* Flush list: under pool->flush_lock. */
    struct frame     *flush_prev, *flush_next;
    atomic_int        dirty;          /* on the flush list                   */
    uint64_t          oldest_lsn;     /* first change since last clean       */
    _Atomic uint64_t  newest_lsn;     /* last change (also in the page)      */
    atomic_int        write_pending;  /* a copy of it is being written (P5)  */
    uint64_t          redirty_lsn;    /* first change after the copy, or 0   */
    /* I/O: the request that reads the page into this frame. */
    struct io_done_hook read_hook;    /* req.owner points here               */
    struct io_req     req;
    unsigned          io_slot;        /* the slot whose context holds req    */
};

struct pool_part {                    /* one partition of the page table     */
    pthread_mutex_t   lock;
    pthread_cond_t    read_cv;        /* a READING frame here finished       */
    struct frame    **buckets;
    uint32_t          bucket_mask;
    uint64_t          hits, read_waits;               /* under lock          */
} __attribute__((aligned(64)));

struct io_slot {                      /* an I/O context fixing threads share */
    atomic_int        ready;          /* ctx and stage made (set once)       */
    pthread_mutex_t   lock;
    struct io_ctx    *ctx;
    unsigned char    *stage;          /* one page for a foreground flush     */
    struct io_req    *done[POOL_IO_DEPTH];
    atomic_ulong      opt_hits;       /* optimistic hits (pool_opt_fix)      */
};

struct cleaner;                       /* cleaner.c                           */

struct pool {
    struct space     *sp;
    uint32_t          page_size;
    uint32_t          frame_count;
    unsigned char    *region;         /* frame_count * page_size, aligned    */
    size_t            region_size;
    struct frame     *frames;
    struct pool_part  parts[POOL_PARTS];
    struct io_slot   *slots;
    unsigned          slot_count;     /* POOL_IO_SLOTS                       */
    unsigned          slots_eager;    /* made at open: 0..slots_eager-1      */
    pthread_mutex_t   slot_init_lock; /* making a slot on demand             */
    atomic_uint       slot_next;
    struct pool_config cfg;
    unsigned          old_pct, old_time_ms, free_reserve, max_dirty_pct;

    /* LRU and free list: lru_lock. */
    pthread_mutex_t   lru_lock;
    pthread_cond_t    free_cv;        /* a frame became free or unpinned     */
    struct frame     *lru_head, *lru_tail, *lru_old;
    atomic_uint       lru_len, old_len;
    struct frame     *free_head;      /* via lru_next                        */
    atomic_uint       free_count;
    atomic_int        free_waiters;
    _Atomic uint64_t  evict_clock;    /* evictions so far                    */

    /* Flush list: flush_lock.  Head = newest oldest_lsn, tail = oldest. */
    pthread_mutex_t   flush_lock;
    struct frame     *flush_head, *flush_tail;
    atomic_uint       dirty_count;

    /* Page 0, pinned for the pool's life; its latch guards the in-memory
       space header (allocation, meta slots). */
    struct frame     *header;
    _Atomic uint64_t  page_limit;     /* page count, for bound checks        */

    struct cleaner   *cleaner;
    /* Recovery (single-threaded): the frames the MTR being redone has
       changed, pinned until its last record, so none is evicted between
       two of its records - a re-read copy would forget which MTR it is
       in the middle of (redo_end_lsn) and skip the rest. */
    struct frame     *redo_held[POOL_MTR_PAGES];
    unsigned          redo_held_count;
    uint64_t          redo_held_lsn;

    /* Statistics not kept in the partitions. */
    atomic_ulong      misses, prefetched, read_requests;
    atomic_ulong      evictions, pages_read, pages_written, write_batches;
    atomic_ulong      made_young, not_young;
    atomic_ulong      reads_inflight, writes_inflight;
    atomic_ulong      fg_free_waits, fg_single_flushes;
    atomic_ulong      images_logged;
    _Atomic int64_t   write_error;
};

/* ---- pool.c ------------------------------------------------------------- */
/* Hands each completed request to its owner's hook. */
void  pool_dispatch(struct pool *pool, struct io_req **done, int n);
/* Drops one pin; the last pin of a FAILED frame frees it. */
void  frame_unpin(struct pool *pool, struct frame *f);
struct pool_part *pool_part_of(struct pool *pool, uint32_t page_no);
/* Removes f from the page table if it is evictable (unpinned, clean, not
   being written or read); returns 1 when removed.  Takes f's partition. */
int   pool_hash_remove_if_idle(struct pool *pool, struct frame *f);
uint64_t pool_now_ms(struct pool *pool);

/* ---- lru.c -------------------------------------------------------------- */
/* All under pool->lru_lock. */
void  lru_insert_old(struct pool *pool, struct frame *f);
void  lru_make_young(struct pool *pool, struct frame *f);
void  lru_remove(struct pool *pool, struct frame *f);
void  free_push(struct pool *pool, struct frame *f);
struct frame *free_pop(struct pool *pool);
/* Without the lock: the policy on a hit (P6); hot: POOL_FIX_HOT (P6e). */
void  lru_touch(struct pool *pool, struct frame *f, int hot);
/* Takes a clean, unpinned frame from the LRU tail (evicting it) or the
   free list; NULL when the first POOL_LRU_SCAN frames are all busy.
   *dirty_seen = 1 when it passed over a dirty frame (left as it was
   otherwise).  Takes lru_lock itself. */
struct frame *lru_get_victim(struct pool *pool, int *dirty_seen);
/* Evicts up to want clean idle frames from the tail to the free list and
   collects up to dirty_max unpinned dirty frames near the tail, pinned,
   into dirty[].  Returns how many dirty ones were collected. */
unsigned lru_scan_tail(struct pool *pool, unsigned want, struct frame **dirty,
                       unsigned dirty_max);

/* ---- cleaner.c ---------------------------------------------------------- */
/* dblwr.c: a free segment (waits for one), and giving it back; the
   request that writes n staged pages into segment seg; after it
   completed, the sync that makes the copies durable. */
unsigned dblwr_acquire(struct dblwr *dw);
void  dblwr_release(struct dblwr *dw, unsigned seg);
void  dblwr_prepare(struct dblwr *dw, unsigned seg, void *pages, unsigned n,
                    struct io_req *req);
int   dblwr_sync(struct dblwr *dw, unsigned n);

int   cleaner_start(struct pool *pool);
void  cleaner_stop(struct pool *pool);
/* Writes the pinned frames f[0..n) (their pins are released) through ctx,
   staging copies in stage (n pages), merging neighbours (P5).  Returns 0
   or the first error; pages that failed stay dirty. */
int   cleaner_write_batch(struct pool *pool, struct io_ctx *ctx,
                          unsigned char *stage, struct frame **f, unsigned n);
void  flush_list_add(struct pool *pool, struct frame *f, uint64_t lsn);

/* pool.c: marks f (X-fixed) dirty: oldest modification start_lsn (if it
   was clean), page LSN end_lsn. */
void  pool_mark_dirty_range(struct pool *pool, struct frame *f,
                            uint64_t start_lsn, uint64_t end_lsn);

#endif /* DKV_PAGER_POOL_INT_H */
