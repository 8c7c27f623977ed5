/*
 * pool.c - the buffer pool: frames, the partitioned page table, fixing and
 * unfixing pages, reads (on a miss and ahead of need), page allocation.
 * The LRU policy is in lru.c, write-back in cleaner.c.  Rules P1..P8 and
 * the lock order are in pager/README.md.
 *
 * Entry points:
 *   pool_open / pool_close           lifecycle
 *   pool_fix / pool_unfix            pin + latch a page, reading it on a miss
 *   pool_mark_dirty                  record a change (P3)
 *   pool_prefetch                    asynchronous reads, returns at once
 *   pool_page_alloc / pool_page_free the persistent free-page list
 *   pool_stats_get / pool_check      statistics and the checker
 *
 * I/O: fixing threads share a few I/O contexts ("slots"); a thread uses the
 * slot its thread id hashes to.  Whoever reaps a slot handles every
 * completion in it through the request's hook, so a page prefetched by one
 * thread is finished by whichever thread next needs it or uses that slot.
 */
#include "pool_int.h"

#include "dkv.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define POOL_OLD_PCT_DEFAULT    37u
#define POOL_OLD_TIME_DEFAULT   1000u
#define POOL_MAX_DIRTY_DEFAULT  75u

/* ---- time and small helpers ---------------------------------------------- */

/* Milliseconds, for the LRU's old_blocks_time and the waits' deadlines:
   the coarse clock (a few ms of resolution) is read without a timer read,
   which on a virtual machine costs as much as a page hit, and the LRU
   reads it on every hit of an old page. */
static uint64_t monotonic_ms(void)
{
    struct timespec ts;

#ifdef CLOCK_MONOTONIC_COARSE
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
#else
    clock_gettime(CLOCK_MONOTONIC, &ts);
#endif
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t pool_now_ms(struct pool *pool)
{
    if (pool->cfg.clock_ms)
        return pool->cfg.clock_ms(pool->cfg.clock_arg);
    return monotonic_ms();
}

void *frame_data(const struct frame *f)
{
    return f->req.buf;
}

uint32_t frame_page_no(const struct frame *f)
{
    return f->page_no;
}

static uint32_t hash_page(uint32_t page_no)
{
    return page_no * 2654435761u;
}

struct pool_part *pool_part_of(struct pool *pool, uint32_t page_no)
{
    return &pool->parts[hash_page(page_no) % POOL_PARTS];
}

static struct frame **bucket_of(struct pool_part *part, uint32_t page_no)
{
    return &part->buckets[(hash_page(page_no) / POOL_PARTS) & part->bucket_mask];
}

/* ---- the page table (under the partition lock) ----------------------------- */

static struct frame *hash_find(struct pool_part *part, uint32_t page_no)
{
    struct frame *f = *bucket_of(part, page_no);

    while (f != NULL && f->page_no != page_no)
        f = f->hash_next;
    return f;
}

static void hash_insert(struct pool_part *part, struct frame *f)
{
    struct frame **b = bucket_of(part, f->page_no);

    f->hash_next = *b;
    /* Published with release: an optimistic lookup (pool_opt_fix) that
       finds f without the lock sees its page number and chain. */
    __atomic_store_n(b, f, __ATOMIC_RELEASE);
}

static void hash_remove(struct pool_part *part, struct frame *f)
{
    struct frame **pp = bucket_of(part, f->page_no);

    while (*pp != f) {
        dkv_verify(*pp != NULL);
        pp = &(*pp)->hash_next;
    }
    __atomic_store_n(pp, f->hash_next, __ATOMIC_RELEASE);
    __atomic_store_n(&f->hash_next, NULL, __ATOMIC_RELEASE);
}

int pool_hash_remove_if_idle(struct pool *pool, struct frame *f)
{
    struct pool_part *part = pool_part_of(pool, f->page_no);
    int removed = 0;

    pthread_mutex_lock(&part->lock);
    /* The pin count again last: a frame the cleaner pinned (it pins dirty
       frames without this lock, P1) and whose write finished between the
       first look and the dirty checks is clean by now but still pinned. */
    if (atomic_load(&f->pin_count) == 0 && !atomic_load(&f->dirty) &&
        !atomic_load(&f->write_pending) &&
        atomic_load(&f->state) == FRAME_VALID &&
        atomic_load(&f->pin_count) == 0) {
        /* Before the frame can take another page: an optimistic reader
           that read this page's version sees it change (P11). */
        atomic_fetch_add(&f->version, 2);
        hash_remove(part, f);
        atomic_store(&f->state, FRAME_FREE);
        removed = 1;
    }
    pthread_mutex_unlock(&part->lock);
    return removed;
}

/* ---- latches and versions (P11) --------------------------------------------- */

/* Just after an X latch is taken: the version goes odd before any byte of
   the page changes (a full barrier orders it before the writes). */
static void version_enter(struct frame *f)
{
    atomic_fetch_add(&f->version, 1);
}

/* Releases a page latch; an X latch (the version is odd only under one)
   makes the version even again, after every change to the bytes. */
static void frame_unlatch(struct frame *f)
{
    uint64_t v = atomic_load_explicit(&f->version, memory_order_relaxed);

    if (v & 1)
        atomic_store_explicit(&f->version, v + 1, memory_order_release);
    pthread_rwlock_unlock(&f->latch);
}

/* ---- pins ------------------------------------------------------------------ */

void frame_unpin(struct pool *pool, struct frame *f)
{
    unsigned before = atomic_fetch_sub(&f->pin_count, 1);

    dkv_verify(before > 0);
    if (before != 1)
        return;
    if (atomic_load(&f->state) == FRAME_FAILED) {
        pthread_mutex_lock(&pool->lru_lock);
        atomic_store(&f->state, FRAME_FREE);
        free_push(pool, f);
        pthread_mutex_unlock(&pool->lru_lock);
    } else if (atomic_load(&pool->free_waiters) > 0) {
        pthread_mutex_lock(&pool->lru_lock);
        pthread_cond_broadcast(&pool->free_cv);
        pthread_mutex_unlock(&pool->lru_lock);
    }
}

/* ---- reads ------------------------------------------------------------------ */

void pool_dispatch(struct pool *pool, struct io_req **done, int n)
{
    int i;

    for (i = 0; i < n; i++) {
        struct io_done_hook *hook = done[i]->owner;
        hook->done(pool, done[i]);
    }
}

/* Reaps at least min completions of slot (whose lock is held). */
static int slot_reap(struct pool *pool, struct io_slot *slot, unsigned min)
{
    int n = io_ctx_reap(slot->ctx, slot->done, min, POOL_IO_DEPTH);

    if (n < 0) {
        int64_t none = 0;
        atomic_compare_exchange_strong(&pool->write_error, &none, n);
        return n;
    }
    pool_dispatch(pool, slot->done, n);
    return DKV_OK;
}

/* P0: a page just read, checked.  DKV_NOTFOUND: never written (zeros). */
static int read_verify(struct pool *pool, const void *buf, uint32_t page_no)
{
    int rc = page_verify(buf, pool->page_size, page_no);

    if (rc == DKV_OK && pool->cfg.page_check != NULL)
        rc = pool->cfg.page_check(pool->cfg.page_check_arg, buf,
                                  pool->page_size, page_no);
    return rc;
}

static void read_finish(struct pool *pool, struct frame *f, int rc);

/* The completion of a page read (P0: verified right after the read). */
static void read_done(struct pool *pool, struct io_req *req)
{
    struct frame *f = (struct frame *)((char *)req->owner -
                                       offsetof(struct frame, read_hook));
    int rc;

    if (req->res < 0)
        rc = (int)req->res;
    else if ((size_t)req->res != req->len)
        rc = PAGER_CORRUPT(f->page_no, "page lies beyond the end of the file");
    else
        rc = read_verify(pool, req->buf, f->page_no);
    atomic_fetch_sub(&pool->reads_inflight, 1);
    read_finish(pool, f, rc);
}

/* Read-ahead of neighbouring pages as one request (pool_prefetch): the
   pages land in a staging buffer and are copied into their frames, which
   were claimed (READING) before the request went out.  A run may step
   over a few pages it was not asked for (POOL_RUN_GAP: a page already in
   the pool, such as a parent node between two stretches of leaves): they
   are read along and thrown away, so one request goes out instead of two. */
struct run_read {
    struct io_done_hook hook;
    struct io_req       req;
    uint32_t            first;          /* the page at the buffer's start */
    unsigned            n;
    struct frame       *f[POOL_RUN_MAX];
};

static void run_done(struct pool *pool, struct io_req *req)
{
    struct run_read *r = (struct run_read *)((char *)req->owner -
                                             offsetof(struct run_read, hook));
    unsigned i;

    atomic_fetch_sub(&pool->reads_inflight, 1);
    for (i = 0; i < r->n; i++) {
        struct frame *f = r->f[i];
        uint64_t at = f->page_no - r->first;
        const unsigned char *page = (const unsigned char *)req->buf +
                                    at * pool->page_size;
        int rc;

        if (req->res < 0)
            rc = (int)req->res;
        else if ((uint64_t)req->res < (at + 1) * pool->page_size)
            rc = PAGER_CORRUPT(f->page_no, "page lies beyond the end of the file");
        else
            rc = read_verify(pool, page, f->page_no);
        if (rc == DKV_OK || rc == DKV_NOTFOUND)
            memcpy(frame_data(f), page, pool->page_size);
        read_finish(pool, f, rc);
    }
    io_buf_free(req->buf, req->len);
    free(r);
}

/* A frame's read is over, its bytes checked with result rc: the frame
   becomes VALID (or FAILED, leaving the page table) and the read's pin
   goes. */
static void read_finish(struct pool *pool, struct frame *f, int rc)
{
    struct pool_part *part = pool_part_of(pool, f->page_no);

    f->empty = rc == DKV_NOTFOUND;
    if (rc == DKV_OK)
        atomic_store(&f->read_version, atomic_load(&f->version));
    if (rc == DKV_NOTFOUND)
        rc = DKV_OK;
    atomic_fetch_add(&pool->pages_read, 1);
    pthread_mutex_lock(&part->lock);
    f->read_rc = rc;
    if (rc != DKV_OK)
        hash_remove(part, f);           /* no new pins on a failed frame */
    atomic_store(&f->state, rc == DKV_OK ? FRAME_VALID : FRAME_FAILED);
    pthread_cond_broadcast(&part->read_cv);
    pthread_mutex_unlock(&part->lock);
    if (rc != DKV_OK) {
        pthread_mutex_lock(&pool->lru_lock);
        lru_remove(pool, f);
        pthread_mutex_unlock(&pool->lru_lock);
    }
    frame_unpin(pool, f);               /* the pin the read held */
}

static int slot_make(struct pool *pool, struct io_slot *slot, int engine);

/* A thread's slot: threads are numbered in the order they first fix a
   page, so up to slot_count threads each get a slot of their own.  (A
   hash of the thread id put two of two threads on one slot now and then,
   and a thread waiting for its read holds the slot's lock through the
   wait, so their reads never overlapped; and slots shared by several
   threads of many held each to about one read in flight.)  The slots past
   the first few get their I/O context when a thread first needs one;
   when that fails, the thread shares one of the first. */
static struct io_slot *my_slot(struct pool *pool)
{
    static atomic_uint next_thread;
    static _Thread_local unsigned thread_no;   /* 0: not numbered yet */
    struct io_slot *slot;

    if (thread_no == 0)
        thread_no = atomic_fetch_add(&next_thread, 1) + 1;
    slot = &pool->slots[(thread_no - 1) % pool->slot_count];
    if (__builtin_expect(!atomic_load_explicit(&slot->ready, memory_order_acquire), 0)) {
        int rc = DKV_OK;
        pthread_mutex_lock(&pool->slot_init_lock);
        if (!atomic_load(&slot->ready))
            rc = slot_make(pool, slot, io_ctx_engine(pool->slots[0].ctx));
        pthread_mutex_unlock(&pool->slot_init_lock);
        if (rc != DKV_OK)
            slot = &pool->slots[(thread_no - 1) % pool->slots_eager];
    }
    return slot;
}

/* Submits read requests reqs[0..n) (of frames claimed on slot, or runs of
   them) on slot, making room first. */
static void submit_read_reqs(struct pool *pool, struct io_slot *slot,
                             struct io_req **reqs, unsigned n)
{
    unsigned i, rounds = 0;
    int rc;

    atomic_fetch_add(&pool->reads_inflight, n);
    atomic_fetch_add(&pool->read_requests, n);
    pthread_mutex_lock(&slot->lock);
    while (io_ctx_inflight(slot->ctx) + n > POOL_IO_DEPTH && rounds++ < POOL_IO_DEPTH)
        if (slot_reap(pool, slot, 1) != DKV_OK)
            break;
    rc = io_ctx_submit(slot->ctx, reqs, n);
    pthread_mutex_unlock(&slot->lock);
    if (rc != DKV_OK) {
        for (i = 0; i < n; i++) {
            struct io_done_hook *hook = reqs[i]->owner;
            reqs[i]->res = rc;
            hook->done(pool, reqs[i]);
        }
    }
}

/* Submits reads for frames f[0..n) on slot. */
static void submit_reads(struct pool *pool, struct io_slot *slot,
                         struct frame **f, unsigned n)
{
    struct io_req *reqs[POOL_IO_DEPTH];
    unsigned i;

    for (i = 0; i < n; i++) {
        dkv_assert(&pool->slots[f[i]->io_slot] == slot);
        reqs[i] = &f[i]->req;
    }
    submit_read_reqs(pool, slot, reqs, n);
}

static int by_page_no(const void *a, const void *b)
{
    uint32_t x = (*(struct frame *const *)a)->page_no;
    uint32_t y = (*(struct frame *const *)b)->page_no;

    return (x > y) - (x < y);
}

/* Submits reads for claimed frames f[0..n) on slot, neighbouring pages
   (numbers at most POOL_RUN_GAP + 1 apart, spanning up to POOL_RUN_MAX)
   as one request each: the device moves a run of pages in about the time
   of one.  At most POOL_IO_DEPTH / 2 requests go out per call. */
static void submit_reads_merged(struct pool *pool, struct io_slot *slot,
                                struct frame **f, unsigned n)
{
    struct io_req *reqs[POOL_IO_DEPTH / 2];
    unsigned i = 0, k = 0;

    qsort(f, n, sizeof(*f), by_page_no);
    while (i < n) {
        unsigned len = 1, span;
        struct run_read *r = NULL;
        void *buf = NULL;

        while (i + len < n && len < POOL_RUN_MAX &&
               f[i + len]->page_no - f[i + len - 1]->page_no <= POOL_RUN_GAP + 1 &&
               f[i + len]->page_no - f[i]->page_no < POOL_RUN_MAX)
            len++;
        span = f[i + len - 1]->page_no - f[i]->page_no + 1;
        if (len > 1) {
            r = malloc(sizeof(*r));
            buf = r ? io_buf_alloc((size_t)span * pool->page_size, pool->page_size) : NULL;
        }
        if (buf == NULL) {              /* one page, or no memory: alone */
            free(r);
            len = 1;
            reqs[k++] = &f[i]->req;
        } else {
            r->hook.done = run_done;
            r->first = f[i]->page_no;
            r->n = len;
            memcpy(r->f, f + i, len * sizeof(*f));
            memset(&r->req, 0, sizeof(r->req));
            r->req.op = IO_READ;
            r->req.file = space_file(pool->sp);
            r->req.buf = buf;
            r->req.len = (size_t)span * pool->page_size;
            r->req.off = space_page_offset(pool->sp, f[i]->page_no);
            r->req.owner = &r->hook;
            reqs[k++] = &r->req;
        }
        i += len;
        if (k == sizeof(reqs) / sizeof(reqs[0]) || i == n) {
            submit_read_reqs(pool, slot, reqs, k);
            k = 0;
        }
    }
}

/* Waits until f (pinned) is no longer being read, helping to reap its slot.
   Called and returns with part->lock held.  Bounded by POOL_WAIT_MAX_MS. */
static int wait_read(struct pool *pool, struct pool_part *part, struct frame *f)
{
    uint64_t deadline = monotonic_ms() + POOL_WAIT_MAX_MS;

    while (atomic_load(&f->state) == FRAME_READING) {
        struct io_slot *slot = &pool->slots[f->io_slot];
        pthread_mutex_unlock(&part->lock);
        pthread_mutex_lock(&slot->lock);
        if (atomic_load(&f->state) == FRAME_READING &&
            io_ctx_inflight(slot->ctx) > 0)
            slot_reap(pool, slot, 1);
        pthread_mutex_unlock(&slot->lock);
        pthread_mutex_lock(&part->lock);
        if (monotonic_ms() > deadline)
            return DKV_ERR_IO;
    }
    return atomic_load(&f->state) == FRAME_VALID ? DKV_OK : f->read_rc;
}

/* ---- free frames --------------------------------------------------------------- */

/* Writes one dirty frame near the LRU tail from this thread (counted):
   only when no clean victim exists (P7).  Returns 1 when one was written,
   0 when none was, or the error of a write that failed. */
static int flush_one_from_tail(struct pool *pool)
{
    struct frame *dirty[1];
    struct io_slot *slot;
    int rc;

    if (lru_scan_tail(pool, 0, dirty, 1) == 0)
        return 0;
    slot = my_slot(pool);
    pthread_mutex_lock(&slot->lock);
    rc = cleaner_write_batch(pool, slot->ctx, slot->stage, dirty, 1);
    pthread_mutex_unlock(&slot->lock);
    atomic_fetch_add(&pool->fg_single_flushes, 1);
    /* A write that failed is no progress (and after a failed log, W8,
       none will succeed): the caller must not take it for one. */
    return rc == DKV_OK ? 1 : rc == DKV_ERR_BUSY ? 0 : rc;
}

/* Completes reads in flight (prefetches nobody has reaped hold frames
   pinned): waits on the first slot with reads in flight.  Returns 1 when
   it reaped something. */
static int reap_reads(struct pool *pool)
{
    unsigned i;
    int got = 0;

    if (atomic_load(&pool->reads_inflight) == 0)
        return 0;
    for (i = 0; i < pool->slot_count && !got; i++) {
        struct io_slot *slot = &pool->slots[i];
        if (!atomic_load(&slot->ready) || pthread_mutex_trylock(&slot->lock) != 0)
            continue;
        if (io_ctx_inflight(slot->ctx) > 0)
            got = slot_reap(pool, slot, 1) == DKV_OK;
        pthread_mutex_unlock(&slot->lock);
    }
    return got;
}

/* Whether a thread that looked for victims (starved: found none) should
   wake the cleaner: below half the reserve, the cleaner refills it whole (one
   wake-up per reserve/2 frames taken, not one per miss) - when the LRU
   tail holds dirty pages, which a miss would otherwise have to write, or
   none was found.  A tail of clean pages is evicted by the misses
   themselves as cheaply as by the cleaner, and a wake-up costs a context
   switch on a busy machine (a sixth of a cold scan's, measured). */
static int cleaner_due(struct pool *pool, int starved, int dirty)
{
    return (starved || dirty) &&
           atomic_load(&pool->free_count) < (pool->free_reserve + 1) / 2;
}

/* Gets a free frame for a page about to be read or created: the free list,
   else a clean victim, else a dirty one written by us, else completes
   reads in flight, else waits. */
static int frame_get_free(struct pool *pool, struct frame **fp)
{
    uint64_t deadline = 0;
    struct frame *f;
    struct timespec ts;
    int flushed;

    for (;;) {
        int dirty = 0;
        f = lru_get_victim(pool, &dirty);
        if (cleaner_due(pool, f == NULL, dirty))
            pool_wake_cleaner(pool);
        if (f != NULL)
            break;
        flushed = flush_one_from_tail(pool);
        if (flushed < 0)
            return flushed;              /* dirty pages that cannot go out */
        if (flushed > 0 || reap_reads(pool))
            continue;
        if (deadline == 0) {
            deadline = monotonic_ms() + POOL_WAIT_MAX_MS;
            atomic_fetch_add(&pool->fg_free_waits, 1);
        } else if (monotonic_ms() > deadline) {
            return DKV_ERR_NOMEM;        /* every frame is pinned */
        }
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 2000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_mutex_lock(&pool->lru_lock);
        atomic_fetch_add(&pool->free_waiters, 1);
        pthread_cond_timedwait(&pool->free_cv, &pool->lru_lock, &ts);
        atomic_fetch_sub(&pool->free_waiters, 1);
        pthread_mutex_unlock(&pool->lru_lock);
    }
    *fp = f;
    return DKV_OK;
}

static void frame_release_free(struct pool *pool, struct frame *f)
{
    pthread_mutex_lock(&pool->lru_lock);
    free_push(pool, f);
    pthread_mutex_unlock(&pool->lru_lock);
}

/* Makes f hold page_no (in the page table, pinned pins times) in state,
   to be read through slot.  Returns the frame that already holds page_no
   instead, pinned once, when another thread got there first (f is then
   given back). */
static struct frame *frame_assign(struct pool *pool, struct frame *f,
                                  uint32_t page_no, int state, unsigned pins,
                                  struct io_slot *slot)
{
    struct pool_part *part = pool_part_of(pool, page_no);
    struct frame *other;

    pthread_mutex_lock(&part->lock);
    other = hash_find(part, page_no);
    if (other != NULL) {
        atomic_fetch_add(&other->pin_count, 1);
        pthread_mutex_unlock(&part->lock);
        frame_release_free(pool, f);
        return other;
    }
    f->page_no = page_no;
    f->io_slot = (unsigned)(slot - pool->slots);
    f->read_rc = 0;
    f->empty = 0;
    atomic_store(&f->read_version, UINT64_MAX);
    atomic_store(&f->pin_count, pins);
    atomic_store(&f->state, state);
    hash_insert(part, f);
    pthread_mutex_unlock(&part->lock);
    pthread_mutex_lock(&pool->lru_lock);
    lru_insert_old(pool, f);
    pthread_mutex_unlock(&pool->lru_lock);
    return f;
}

static void prepare_read(struct pool *pool, struct frame *f)
{
    f->req.op = IO_READ;
    f->req.file = space_file(pool->sp);
    f->req.len = pool->page_size;
    f->req.off = space_page_offset(pool->sp, f->page_no);
    f->req.owner = &f->read_hook;
}

/* ---- fixing ---------------------------------------------------------------------- */

/* The page is in the table: pin it and wait for a read in progress. */
static int fix_hit(struct pool *pool, struct pool_part *part, struct frame *f)
{
    int rc = DKV_OK;

    atomic_fetch_add(&f->pin_count, 1);
    if (atomic_load(&f->state) == FRAME_VALID) {
        part->hits++;
    } else {
        part->read_waits++;
        rc = wait_read(pool, part, f);
    }
    pthread_mutex_unlock(&part->lock);
    return rc;
}

/* The page is not in the table: claim a frame and read the page into it. */
static int fix_miss(struct pool *pool, uint32_t page_no, struct frame **fp)
{
    struct frame *f, *got;
    struct pool_part *part = pool_part_of(pool, page_no);
    int rc;

    rc = frame_get_free(pool, &f);
    if (rc != DKV_OK)
        return rc;
    got = frame_assign(pool, f, page_no, FRAME_READING, 2, my_slot(pool));
    if (got == f) {
        atomic_fetch_add(&pool->misses, 1);
        prepare_read(pool, f);
        submit_reads(pool, my_slot(pool), &f, 1);
    }
    pthread_mutex_lock(&part->lock);
    rc = wait_read(pool, part, got);
    pthread_mutex_unlock(&part->lock);
    *fp = got;
    return rc;
}

/* A frame for a page that is not read but created: X-latched, pinned. */
static int fix_new(struct pool *pool, uint32_t page_no, struct frame **fp)
{
    struct frame *f, *got;
    int rc;

    for (;;) {
        rc = frame_get_free(pool, &f);
        if (rc != DKV_OK)
            return rc;
        got = frame_assign(pool, f, page_no, FRAME_VALID, 1, my_slot(pool));
        if (got == f)
            break;
        /* A copy being read (a prefetch, a stale page past the old end):
           wait for it and reuse it.  What it read does not matter, the
           caller overwrites the page whole: a read that failed - a torn
           page that redo is about to rebuild - has already left the page
           table, so the next round puts a fresh frame in its place. */
        struct pool_part *part = pool_part_of(pool, page_no);
        pthread_mutex_lock(&part->lock);
        rc = wait_read(pool, part, got);
        pthread_mutex_unlock(&part->lock);
        if (rc == DKV_OK)
            break;
        {
            int stuck = rc == DKV_ERR_IO && atomic_load(&got->state) == FRAME_READING;
            frame_unpin(pool, got);
            if (stuck)
                return rc;              /* the read never finished */
        }
    }
    prepare_read(pool, got);
    /* Nobody may hold a page that is being created or overwritten whole
       (a fresh frame, a free page, redo): trylock says so without adding
       a lock-order edge between page latches. */
    if (pthread_rwlock_trywrlock(&got->latch) != 0) {
        frame_unpin(pool, got);
        return PAGER_CORRUPT(page_no, "page to create is in use");
    }
    version_enter(got);
    *fp = got;
    return DKV_OK;
}

int pool_fix(struct pool *pool, uint32_t page_no, int latch, int flags,
             struct frame **fp)
{
    struct pool_part *part = pool_part_of(pool, page_no);
    struct frame *f;
    int rc;

    if (flags & POOL_FIX_NO_READ) {
        if (latch != POOL_X || page_no >= space_capacity(pool->sp))
            return DKV_ERR_INVALID;
        return fix_new(pool, page_no, fp);
    }
    if (page_no >= atomic_load(&pool->page_limit))
        return PAGER_CORRUPT(page_no, "page number beyond the file");
    pthread_mutex_lock(&part->lock);
    f = hash_find(part, page_no);
    if (f != NULL) {
        rc = fix_hit(pool, part, f);
    } else {
        pthread_mutex_unlock(&part->lock);
        rc = fix_miss(pool, page_no, &f);
        if (rc != DKV_OK && f == NULL)
            return rc;
    }
    if (rc == DKV_OK && f->empty && !(flags & POOL_FIX_MAY_BE_EMPTY))
        rc = PAGER_CORRUPT(page_no, "page was never written");
    if (rc != DKV_OK) {
        frame_unpin(pool, f);
        return rc;
    }
    lru_touch(pool, f, (flags & POOL_FIX_HOT) != 0);
    if (flags & POOL_FIX_TRY) {
        rc = latch == POOL_X ? pthread_rwlock_trywrlock(&f->latch)
                             : pthread_rwlock_tryrdlock(&f->latch);
        if (rc != 0) {
            frame_unpin(pool, f);
            return DKV_ERR_BUSY;
        }
    } else if (latch == POOL_X) {
        pthread_rwlock_wrlock(&f->latch);
    } else {
        pthread_rwlock_rdlock(&f->latch);
    }
    if (latch == POOL_X)
        version_enter(f);
    *fp = f;
    return DKV_OK;
}

void pool_unfix(struct pool *pool, struct frame *f)
{
    frame_unlatch(f);
    frame_unpin(pool, f);
}

/* ---- optimistic access (P11) ---------------------------------------------------- */

/* A lookup without the partition lock follows at most this many frames of
   a chain: a chain changed under it (a frame moved to another page) may
   lead astray, never forever. */
#define POOL_OPT_CHAIN_MAX 16

static struct frame *opt_find(struct pool *pool, uint32_t page_no, uint64_t *version,
                              int peek)
{
#if POOL_OPTIMISTIC
    struct pool_part *part = pool_part_of(pool, page_no);
    struct frame *f = __atomic_load_n(bucket_of(part, page_no), __ATOMIC_ACQUIRE);
    unsigned steps = 0;
    uint64_t v;

    while (f != NULL && __atomic_load_n(&f->page_no, __ATOMIC_RELAXED) != page_no) {
        if (++steps == POOL_OPT_CHAIN_MAX)
            return NULL;
        f = __atomic_load_n(&f->hash_next, __ATOMIC_ACQUIRE);
    }
    if (f == NULL)
        return NULL;
    v = atomic_load_explicit(&f->version, memory_order_acquire);
    if ((v & 1) != 0 || atomic_load(&f->state) != FRAME_VALID || f->empty ||
        __atomic_load_n(&f->page_no, __ATOMIC_RELAXED) != page_no)
        return NULL;
    *version = v;
    if (peek)
        return f;
    /* An old page's hit is the LRU policy's business (P6): the latched
       path applies it.  Once nothing has been evicted, order is moot. */
    if (atomic_load_explicit(&f->old, memory_order_relaxed) &&
        atomic_load_explicit(&pool->evict_clock, memory_order_relaxed) != 0)
        return NULL;
    atomic_fetch_add_explicit(&my_slot(pool)->opt_hits, 1, memory_order_relaxed);
    return f;
#else
    (void)pool;
    (void)page_no;
    (void)version;
    (void)peek;
    return NULL;
#endif
}

struct frame *pool_opt_fix(struct pool *pool, uint32_t page_no, uint64_t *version)
{
    return opt_find(pool, page_no, version, 0);
}

struct frame *pool_opt_peek(struct pool *pool, uint32_t page_no, uint64_t *version)
{
    return opt_find(pool, page_no, version, 1);
}

int pool_unchanged_since_read(const struct pool *pool, const struct frame *f)
{
    return pool->cfg.page_check != NULL &&
           atomic_load(&f->read_version) == atomic_load(&f->version);
}

int pool_opt_valid(const struct frame *f, uint64_t version)
{
    atomic_thread_fence(memory_order_acquire);
    return atomic_load_explicit(&f->version, memory_order_relaxed) == version;
}

void pool_mark_dirty_range(struct pool *pool, struct frame *f,
                           uint64_t start_lsn, uint64_t end_lsn)
{
    dkv_assert(atomic_load(&f->pin_count) > 0 && start_lsn <= end_lsn);
    page_set_lsn(frame_data(f), end_lsn);
    atomic_store(&f->newest_lsn, end_lsn);
    /* Without the flush lock when the page is already dirty and not being
       written.  Under our X latch no write can start (copy_out needs the
       S latch), and write_finished clears write_pending only after it has
       settled dirty (both under the flush lock, seq_cst stores): so once
       write_pending reads 0, dirty is final - 1 with an oldest change no
       later than ours, or 0 and the page must go back on the list.  A
       write still pending is left a note under the lock (redirty_lsn). */
    if (atomic_load(&f->write_pending) || !atomic_load(&f->dirty))
        flush_list_add(pool, f, start_lsn);
}

void pool_mark_dirty(struct pool *pool, struct frame *f, uint64_t lsn)
{
    pool_mark_dirty_range(pool, f, lsn, lsn);
}

void pool_poll_reads(struct pool *pool)
{
    struct io_slot *slot = my_slot(pool);

    if (atomic_load(&pool->reads_inflight) > 0 && pthread_mutex_trylock(&slot->lock) == 0) {
        if (io_ctx_inflight(slot->ctx) > 0)
            slot_reap(pool, slot, 0);
        pthread_mutex_unlock(&slot->lock);
    }
}

int pool_prefetch(struct pool *pool, const uint32_t *page_nos, unsigned n)
{
    struct frame *batch[POOL_PREFETCH_BATCH];
    uint64_t page_count = atomic_load(&pool->page_limit);
    struct io_slot *slot = my_slot(pool);
    unsigned i, k = 0, started = 0;
    int dirty = 0, starved = 0;

    /* Reads of ours that completed are finished first. */
    pool_poll_reads(pool);
    /* Advice, not a command: never more than a quarter of the pool. */
    for (i = 0; i < n && started < pool->frame_count / 4; i++) {
        struct pool_part *part = pool_part_of(pool, page_nos[i]);
        struct frame *f, *got;
        int present;

        if (page_nos[i] >= page_count)
            continue;
        pthread_mutex_lock(&part->lock);
        present = hash_find(part, page_nos[i]) != NULL;
        pthread_mutex_unlock(&part->lock);
        if (present)
            continue;
        f = lru_get_victim(pool, &dirty); /* never waits: prefetch is advice */
        if (f == NULL) {
            starved = 1;
            break;
        }
        got = frame_assign(pool, f, page_nos[i], FRAME_READING, 1, slot);
        if (got != f) {
            frame_unpin(pool, got);
            continue;
        }
        prepare_read(pool, f);
        atomic_fetch_add(&pool->prefetched, 1);
        started++;
        batch[k++] = f;
        if (k == sizeof(batch) / sizeof(batch[0])) {
            submit_reads_merged(pool, slot, batch, k);
            k = 0;
        }
    }
    if (k > 0)
        submit_reads_merged(pool, slot, batch, k);
    if (cleaner_due(pool, starved, dirty))
        pool_wake_cleaner(pool);
    return DKV_OK;
}

/* ---- the header's meta slots ------------------------------------------------ */

uint64_t pool_meta_get(struct pool *pool, unsigned slot)
{
    uint64_t v;

    dkv_verify(slot < FHDR_META_SLOTS);
    pthread_rwlock_rdlock(&pool->header->latch);
    v = space_header(pool->sp)->meta[slot];
    pthread_rwlock_unlock(&pool->header->latch);
    return v;
}

/* ---- lifecycle ----------------------------------------------------------------- */

static int check_config(const struct pool_config *cfg, uint32_t page_size)
{
    if (cfg->pool_size / page_size < POOL_FRAMES_MIN)
        return DKV_ERR_INVALID;     /* too small for a B+tree descent */
    if (cfg->pool_size / page_size > UINT32_MAX)
        return DKV_ERR_INVALID;
    if (cfg->old_blocks_pct != 0 &&
        (cfg->old_blocks_pct < 5 || cfg->old_blocks_pct > 95))
        return DKV_ERR_INVALID;
    if (cfg->max_dirty_pct > 100)
        return DKV_ERR_INVALID;
    return DKV_OK;
}

static void apply_defaults(struct pool *pool, const struct pool_config *cfg)
{
    pool->cfg = *cfg;
    pool->old_pct = cfg->old_blocks_pct ? cfg->old_blocks_pct
                                        : POOL_OLD_PCT_DEFAULT;
    if (cfg->old_blocks_time_ms == POOL_OLD_BLOCKS_TIME_ZERO)
        pool->old_time_ms = 0;
    else
        pool->old_time_ms = cfg->old_blocks_time_ms ? cfg->old_blocks_time_ms
                                                    : POOL_OLD_TIME_DEFAULT;
    pool->max_dirty_pct = cfg->max_dirty_pct ? cfg->max_dirty_pct
                                             : POOL_MAX_DIRTY_DEFAULT;
    /* Like innodb_lru_scan_depth: a small share of the pool kept free. */
    pool->free_reserve = cfg->free_reserve;
    if (pool->free_reserve == 0) {
        pool->free_reserve = pool->frame_count / 32;
        pool->free_reserve = pool->free_reserve < 4 ? 4 : pool->free_reserve;
        pool->free_reserve = pool->free_reserve > 1024 ? 1024 : pool->free_reserve;
    }
    if (pool->free_reserve > pool->frame_count / 4)
        pool->free_reserve = pool->frame_count / 4;
}

static int init_parts(struct pool *pool)
{
    uint32_t buckets = 16;
    unsigned i;

    while (buckets < 2 * pool->frame_count / POOL_PARTS)
        buckets *= 2;
    for (i = 0; i < POOL_PARTS; i++) {
        struct pool_part *part = &pool->parts[i];
        part->buckets = calloc(buckets, sizeof(*part->buckets));
        if (part->buckets == NULL)
            return DKV_ERR_NOMEM;
        part->bucket_mask = buckets - 1;
        pthread_mutex_init(&part->lock, NULL);
        pthread_cond_init(&part->read_cv, NULL);
    }
    return DKV_OK;
}

static void init_frames(struct pool *pool)
{
    uint32_t i;

    for (i = pool->frame_count; i-- > 0;) {
        struct frame *f = &pool->frames[i];
        pthread_rwlock_init(&f->latch, NULL);
        f->read_hook.done = read_done;
        f->req.buf = pool->region + (size_t)i * pool->page_size;
        free_push(pool, f);
    }
}

/* Gives slot its I/O context (engine: the pool's choice, or the one the
   first slot settled on) and its staging page. */
static int slot_make(struct pool *pool, struct io_slot *slot, int engine)
{
    struct io_ctx_config cfg = { .engine = engine,
                                 .depth = POOL_IO_DEPTH,
                                 .fail_setup_mask = pool->cfg.io_fail_setup_mask };
    struct io_file *file = space_file(pool->sp);
    int rc;

    if (slot->stage == NULL)
        slot->stage = io_buf_alloc(pool->page_size, pool->page_size);
    if (slot->stage == NULL)
        return DKV_ERR_NOMEM;
    rc = io_ctx_create(&cfg, &slot->ctx);
    if (rc != DKV_OK) {
        slot->ctx = NULL;
        return rc;
    }
    io_ctx_register(slot->ctx, &file, 1, pool->region, pool->region_size);
    atomic_store_explicit(&slot->ready, 1, memory_order_release);
    return DKV_OK;
}

/* The first slots (two per processor, at least POOL_IO_SLOTS_MIN) are made
   now, so a backend that cannot be had fails the open; the others when a
   thread first needs one (my_slot). */
static int init_slots(struct pool *pool)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned i;
    int rc;

    pool->slot_count = POOL_IO_SLOTS;
    pool->slots_eager = cpus > 0 ? 2 * (unsigned)cpus : POOL_IO_SLOTS_MIN;
    if (pool->slots_eager < POOL_IO_SLOTS_MIN)
        pool->slots_eager = POOL_IO_SLOTS_MIN;
    if (pool->slots_eager > pool->slot_count)
        pool->slots_eager = pool->slot_count;
    pthread_mutex_init(&pool->slot_init_lock, NULL);
    pool->slots = calloc(pool->slot_count, sizeof(*pool->slots));
    if (pool->slots == NULL)
        return DKV_ERR_NOMEM;
    for (i = 0; i < pool->slot_count; i++)
        pthread_mutex_init(&pool->slots[i].lock, NULL);
    for (i = 0; i < pool->slots_eager; i++) {
        rc = slot_make(pool, &pool->slots[i],
                       i == 0 ? pool->cfg.io_engine : io_ctx_engine(pool->slots[0].ctx));
        if (rc != DKV_OK)
            return rc;
    }
    return DKV_OK;
}

static int pool_alloc_all(struct pool *pool)
{
    int rc;

    pool->region_size = (size_t)pool->frame_count * pool->page_size;
    pool->region = io_buf_alloc(pool->region_size, pool->page_size);
    pool->frames = calloc(pool->frame_count, sizeof(*pool->frames));
    if (pool->region == NULL || pool->frames == NULL)
        return DKV_ERR_NOMEM;
    pthread_mutex_init(&pool->lru_lock, NULL);
    pthread_cond_init(&pool->free_cv, NULL);
    pthread_mutex_init(&pool->flush_lock, NULL);
    rc = init_parts(pool);
    if (rc != DKV_OK)
        return rc;
    init_frames(pool);
    return init_slots(pool);
}

int pool_open(struct space *sp, const struct pool_config *cfg,
              struct pool **poolp)
{
    struct pool *pool;
    int rc;

    if (sp == NULL || cfg == NULL || poolp == NULL)
        return DKV_ERR_INVALID;
    rc = check_config(cfg, space_page_size(sp));
    if (rc != DKV_OK)
        return rc;
    pool = calloc(1, sizeof(*pool));
    if (pool == NULL)
        return DKV_ERR_NOMEM;
    pool->sp = sp;
    pool->page_size = space_page_size(sp);
    pool->frame_count = (uint32_t)(cfg->pool_size / pool->page_size);
    apply_defaults(pool, cfg);
    rc = pool_alloc_all(pool);
    /* Page 0 stays pinned (not latched) for the pool's life.  A torn one
       is left for recovery to restore (zeroed until then). */
    atomic_store(&pool->page_limit, space_header(sp)->page_count);
    if (rc == DKV_OK && space_header_torn(sp)) {
        rc = pool_fix(pool, 0, POOL_X, POOL_FIX_NO_READ, &pool->header);
        if (rc == DKV_OK)
            memset(frame_data(pool->header), 0, pool->page_size);
    } else if (rc == DKV_OK) {
        rc = pool_fix(pool, 0, POOL_S, 0, &pool->header);
    }
    if (rc == DKV_OK) {
        frame_unlatch(pool->header);
        rc = cleaner_start(pool);
    }
    if (rc != DKV_OK) {
        pool_close(pool);
        return rc;
    }
    *poolp = pool;
    return DKV_OK;
}

void pool_close(struct pool *pool)
{
    unsigned i;

    if (pool == NULL)
        return;
    cleaner_stop(pool);
    for (i = 0; pool->slots && i < pool->slot_count; i++) {
        /* Reads nobody reaped (prefetches) end through their hooks, which
           free what a merged read allocated. */
        while (pool->slots[i].ctx != NULL && io_ctx_inflight(pool->slots[i].ctx) > 0 &&
               slot_reap(pool, &pool->slots[i], 1) == DKV_OK)
            ;
        if (pool->slots[i].ctx != NULL)
            io_ctx_destroy(pool->slots[i].ctx);
        if (pool->slots[i].stage != NULL)
            io_buf_free(pool->slots[i].stage, pool->page_size);
        pthread_mutex_destroy(&pool->slots[i].lock);
    }
    if (pool->slots != NULL)
        pthread_mutex_destroy(&pool->slot_init_lock);
    free(pool->slots);
    for (i = 0; i < POOL_PARTS; i++) {
        free(pool->parts[i].buckets);
        if (pool->parts[i].buckets) {
            pthread_mutex_destroy(&pool->parts[i].lock);
            pthread_cond_destroy(&pool->parts[i].read_cv);
        }
    }
    for (i = 0; pool->frames && i < pool->frame_count; i++)
        pthread_rwlock_destroy(&pool->frames[i].latch);
    free(pool->frames);
    io_buf_free(pool->region, pool->region_size);
    free(pool);
}

/* ---- statistics and checks --------------------------------------------------------- */

void pool_stats_get(struct pool *pool, struct pool_stats *st)
{
    unsigned i;

    memset(st, 0, sizeof(*st));
    for (i = 0; i < POOL_PARTS; i++) {
        pthread_mutex_lock(&pool->parts[i].lock);
        st->hits += pool->parts[i].hits;
        st->read_waits += pool->parts[i].read_waits;
        pthread_mutex_unlock(&pool->parts[i].lock);
    }
    for (i = 0; i < pool->slot_count; i++)
        st->hits += atomic_load_explicit(&pool->slots[i].opt_hits,
                                         memory_order_relaxed);
    st->frames = pool->frame_count;
    st->free_frames = atomic_load(&pool->free_count);
    st->used = st->frames - st->free_frames;
    st->dirty_pages = atomic_load(&pool->dirty_count);
    st->misses = atomic_load(&pool->misses);
    st->prefetched = atomic_load(&pool->prefetched);
    st->read_requests = atomic_load(&pool->read_requests);
    st->evictions = atomic_load(&pool->evictions);
    st->pages_read = atomic_load(&pool->pages_read);
    st->pages_written = atomic_load(&pool->pages_written);
    st->write_batches = atomic_load(&pool->write_batches);
    st->made_young = atomic_load(&pool->made_young);
    st->not_young = atomic_load(&pool->not_young);
    st->reads_inflight = atomic_load(&pool->reads_inflight);
    st->writes_inflight = atomic_load(&pool->writes_inflight);
    st->fg_free_waits = atomic_load(&pool->fg_free_waits);
    st->fg_single_flushes = atomic_load(&pool->fg_single_flushes);
    st->images_logged = atomic_load(&pool->images_logged);
    st->image_bytes = st->images_logged * pool->page_size;
    st->lru_len = atomic_load(&pool->lru_len);
    st->old_len = atomic_load(&pool->old_len);
    st->write_error = atomic_load(&pool->write_error);
    st->io_engine = io_ctx_engine_name(pool->slots[0].ctx);
    st->direct = io_file_direct(space_file(pool->sp));
}

static struct frame *lookup(struct pool *pool, uint32_t page_no)
{
    struct pool_part *part = pool_part_of(pool, page_no);
    struct frame *f;

    pthread_mutex_lock(&part->lock);
    f = hash_find(part, page_no);
    pthread_mutex_unlock(&part->lock);
    return f;
}

int pool_contains(struct pool *pool, uint32_t page_no)
{
    return lookup(pool, page_no) != NULL;
}

int pool_is_young(struct pool *pool, uint32_t page_no)
{
    struct frame *f = lookup(pool, page_no);

    return f != NULL && atomic_load(&f->in_lru) && !atomic_load(&f->old);
}

long pool_lru_position(struct pool *pool, uint32_t page_no)
{
    struct frame *f;
    long pos = 0, found = -1;

    pthread_mutex_lock(&pool->lru_lock);
    for (f = pool->lru_head; f != NULL; f = f->lru_next, pos++) {
        if (f->page_no == page_no) {
            found = pos;
            break;
        }
    }
    pthread_mutex_unlock(&pool->lru_lock);
    return found;
}

/* The LRU and free list: links, counts, the old sublist is a suffix that
   starts at lru_old. */
static void check_lists(struct pool *pool)
{
    struct frame *f, *prev = NULL;
    unsigned len = 0, old = 0, frees = 0;
    int in_old = 0;

    for (f = pool->lru_head; f != NULL; prev = f, f = f->lru_next) {
        dkv_verify(f->lru_prev == prev && atomic_load(&f->in_lru));
        if (f == pool->lru_old)
            in_old = 1;
        dkv_verify(atomic_load(&f->old) == in_old);
        old += (unsigned)in_old;
        len++;
        dkv_verify(len <= pool->frame_count);
    }
    dkv_verify(pool->lru_tail == prev);
    dkv_verify(len == atomic_load(&pool->lru_len));
    dkv_verify(old == atomic_load(&pool->old_len));
    for (f = pool->free_head; f != NULL; f = f->lru_next) {
        dkv_verify(atomic_load(&f->state) == FRAME_FREE && !atomic_load(&f->in_lru));
        frees++;
        dkv_verify(frees <= pool->frame_count);
    }
    dkv_verify(frees == atomic_load(&pool->free_count));
}

/* The flush list: all dirty, ordered by oldest_lsn from the tail. */
static void check_flush_list(struct pool *pool)
{
    struct frame *f, *prev = NULL;
    unsigned n = 0;

    for (f = pool->flush_head; f != NULL; prev = f, f = f->flush_next) {
        dkv_verify(f->flush_prev == prev && atomic_load(&f->dirty));
        dkv_verify(prev == NULL || prev->oldest_lsn >= f->oldest_lsn);
        n++;
        dkv_verify(n <= pool->frame_count);
    }
    dkv_verify(pool->flush_tail == prev);
    dkv_verify(n == atomic_load(&pool->dirty_count));
}

int pool_check(struct pool *pool)
{
    uint32_t i, in_table = 0;

    pthread_mutex_lock(&pool->lru_lock);
    pthread_mutex_lock(&pool->flush_lock);
    check_lists(pool);
    check_flush_list(pool);
    for (i = 0; i < pool->frame_count; i++) {
        struct frame *f = &pool->frames[i];
        struct pool_part *part = pool_part_of(pool, f->page_no);
        int state = atomic_load(&f->state);
        if (state == FRAME_VALID || state == FRAME_READING) {
            pthread_mutex_lock(&part->lock);
            dkv_verify(hash_find(part, f->page_no) == f);
            pthread_mutex_unlock(&part->lock);
            dkv_verify(atomic_load(&f->in_lru));
            in_table++;
        }
    }
    dkv_verify(in_table + atomic_load(&pool->free_count) <= pool->frame_count);
    pthread_mutex_unlock(&pool->flush_lock);
    pthread_mutex_unlock(&pool->lru_lock);
    return DKV_OK;
}
