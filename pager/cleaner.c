/*
 * cleaner.c - delayed write-back: the flush list, batched writes of dirty
 * pages, and the page cleaner thread(s).
 *
 * A change only dirties its frame (P3).  The cleaner writes dirty pages
 * later, for two reasons: to keep free_reserve clean frames at hand so a
 * read almost never waits for a write (LRU flushing), and to write the
 * oldest changes first as the log fills, so a checkpoint can move on
 * (flush-list flushing, adaptive to the log's fill level).
 *
 * A page is written from a copy (P5): under a shared latch taken with
 * trylock (a busy page is skipped, never waited for), the page is copied
 * into a staging buffer and marked write_pending; the latch is released
 * before any I/O.  Copies are staged in page-number order, so neighbours
 * lie next to each other and go out as one larger write.  The write-ahead
 * hook (P2) runs once per batch, for the batch's newest LSN.  A page stays
 * on the flush list, with its oldest LSN, until its write is complete, so
 * the checkpoint LSN never passes a change that is not on disk (P4); if it
 * changed again meanwhile, it stays dirty from that change's LSN.
 *
 * Entry points: cleaner_start/stop, cleaner_write_batch, flush_list_add,
 * pool_flush_all, pool_oldest_dirty_lsn, pool_wake_cleaner.
 */
#include "pool_int.h"

#include "dkv.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CLEANER_BATCH       64u     /* pages per write batch                */
#define CLEANER_IDLE_MS     100u    /* sleep when there is nothing to do    */
#define CLEANER_LOG_LOW     10u     /* log fill % where flushing starts     */
#define CLEANER_LOG_HIGH    50u     /* log fill % where it never sleeps     */
#define FLUSH_ALL_WAIT_MS   30000u

_Static_assert(CLEANER_BATCH <= DBLWR_SEGMENT_PAGES, "a batch fits a segment");

struct cleaner_thread {
    pthread_t         tid;
    struct pool      *pool;
    struct io_ctx    *ctx;
    unsigned char    *stage;             /* CLEANER_BATCH pages             */
    struct frame     *batch[CLEANER_BATCH];
};

struct cleaner {
    pthread_mutex_t        lock;
    pthread_cond_t         cv;
    int                    stop;         /* under lock                       */
    atomic_int             wake;
    unsigned               count;
    struct cleaner_thread *threads;
};

/* One contiguous write: count pages from frames[0..count). */
struct write_run {
    struct io_done_hook hook;
    struct io_req       req;
    struct frame      **frames;
    unsigned            count;
    unsigned           *pending;         /* runs of the batch not finished  */
    int                 finished;
};

/* ---- the flush list (pool->flush_lock held) ---------------------------------------- */

static void flush_unlink(struct pool *pool, struct frame *f)
{
    if (f->flush_prev)
        f->flush_prev->flush_next = f->flush_next;
    else
        pool->flush_head = f->flush_next;
    if (f->flush_next)
        f->flush_next->flush_prev = f->flush_prev;
    else
        pool->flush_tail = f->flush_prev;
    f->flush_prev = f->flush_next = NULL;
}

/* Inserts f in order of oldest_lsn: head newest, tail oldest.  Usually at
   the head, since LSNs grow. */
static void flush_insert(struct pool *pool, struct frame *f)
{
    struct frame *next = pool->flush_head;

    while (next != NULL && next->oldest_lsn > f->oldest_lsn)
        next = next->flush_next;
    f->flush_next = next;
    f->flush_prev = next ? next->flush_prev : pool->flush_tail;
    if (f->flush_prev)
        f->flush_prev->flush_next = f;
    else
        pool->flush_head = f;
    if (next)
        next->flush_prev = f;
    else
        pool->flush_tail = f;
}

void flush_list_add(struct pool *pool, struct frame *f, uint64_t lsn)
{
    pthread_mutex_lock(&pool->flush_lock);
    if (!atomic_load(&f->dirty)) {
        f->oldest_lsn = lsn;
        atomic_store(&f->dirty, 1);
        flush_insert(pool, f);
        atomic_fetch_add(&pool->dirty_count, 1);
    } else if (atomic_load(&f->write_pending) && f->redirty_lsn == 0) {
        f->redirty_lsn = lsn ? lsn : 1;
    }
    pthread_mutex_unlock(&pool->flush_lock);
}

uint64_t pool_oldest_dirty_lsn(struct pool *pool)
{
    uint64_t lsn;

    pthread_mutex_lock(&pool->flush_lock);
    lsn = pool->flush_tail ? pool->flush_tail->oldest_lsn : 0;
    pthread_mutex_unlock(&pool->flush_lock);
    return lsn;
}

/* Pins up to max dirty frames from the tail (oldest first) that are not
   already being written. */
static unsigned collect_oldest(struct pool *pool, struct frame **out,
                               unsigned max)
{
    struct frame *f;
    unsigned n = 0;

    pthread_mutex_lock(&pool->flush_lock);
    for (f = pool->flush_tail; f != NULL && n < max; f = f->flush_prev) {
        if (atomic_load(&f->write_pending))
            continue;
        atomic_fetch_add(&f->pin_count, 1);   /* dirty: cannot be evicted */
        out[n++] = f;
    }
    pthread_mutex_unlock(&pool->flush_lock);
    return n;
}

/* ---- writing a batch ------------------------------------------------------------- */

/* Copies f into dst if it is dirty, idle enough to latch, and not already
   being written; marks it write_pending.  Returns 1 when copied. */
static int copy_out(struct pool *pool, struct frame *f, unsigned char *dst,
                    uint64_t *lsn)
{
    int ok;

    if (pthread_rwlock_tryrdlock(&f->latch) != 0)
        return 0;
    if (atomic_load(&f->redo_holding)) {     /* an MTR half redone */
        pthread_rwlock_unlock(&f->latch);
        return 0;
    }
    pthread_mutex_lock(&pool->flush_lock);
    ok = atomic_load(&f->dirty) && !atomic_load(&f->write_pending);
    if (ok) {
        atomic_store(&f->write_pending, 1);
        f->redirty_lsn = 0;
    }
    pthread_mutex_unlock(&pool->flush_lock);
    if (ok) {
        memcpy(dst, frame_data(f), pool->page_size);
        *lsn = atomic_load(&f->newest_lsn);
        dkv_assert(page_no(dst) == f->page_no);
    }
    pthread_rwlock_unlock(&f->latch);
    return ok;
}

/* The end of one page's write: clean it, or keep it dirty from the change
   made after the copy, or (on failure) keep it dirty as it was.
   write_pending is cleared last, after dirty is settled: pool_mark_dirty
   reads the two without the flush lock, and a change marked after it saw
   write_pending 0 but dirty still 1 would skip the flush list while this
   write cleans the page - a change lost when the frame is evicted. */
static void write_finished(struct pool *pool, struct frame *f, int rc)
{
    pthread_mutex_lock(&pool->flush_lock);
    if (rc == DKV_OK) {
        flush_unlink(pool, f);
        if (f->redirty_lsn == 0) {
            atomic_store(&f->dirty, 0);
            atomic_fetch_sub(&pool->dirty_count, 1);
        } else {
            f->oldest_lsn = f->redirty_lsn;
            flush_insert(pool, f);
        }
        f->redirty_lsn = 0;
    }
    atomic_store(&f->write_pending, 0);
    pthread_mutex_unlock(&pool->flush_lock);
    if (rc == DKV_OK) {
        atomic_fetch_add(&pool->pages_written, 1);
    } else if (rc != DKV_ERR_BUSY) {
        /* BUSY: the page's unit is unfinished (W4); it is written later. */
        int64_t none = 0;
        atomic_compare_exchange_strong(&pool->write_error, &none, rc);
    }
    frame_unpin(pool, f);
}

static void write_done(struct pool *pool, struct io_req *req)
{
    struct write_run *run = (struct write_run *)((char *)req->owner -
                                                 offsetof(struct write_run, hook));
    int rc = req->res < 0 ? (int)req->res
           : (size_t)req->res == req->len ? DKV_OK : DKV_ERR_IO;
    unsigned i;

    run->finished = 1;
    atomic_fetch_sub(&pool->writes_inflight, run->count);
    for (i = 0; i < run->count; i++)
        write_finished(pool, run->frames[i], rc);
    (*run->pending)--;
}

static int by_page_no(const void *a, const void *b)
{
    uint32_t x = (*(struct frame *const *)a)->page_no;
    uint32_t y = (*(struct frame *const *)b)->page_no;

    return (x > y) - (x < y);
}

/* Groups the k staged pages (in page order) into runs of neighbours. */
static unsigned make_runs(struct pool *pool, struct frame **staged, unsigned k,
                          unsigned char *stage, struct write_run *runs,
                          unsigned *pending)
{
    unsigned i, r = 0;

    for (i = 0; i < k; i++) {
        struct write_run *run = &runs[r - (r > 0)];
        if (r > 0 && staged[i]->page_no == staged[i - 1]->page_no + 1) {
            run->count++;
            run->req.len += pool->page_size;
            continue;
        }
        run = &runs[r++];
        memset(run, 0, sizeof(*run));
        run->hook.done = write_done;
        run->frames = &staged[i];
        run->count = 1;
        run->pending = pending;
        run->req.op = IO_WRITE;
        run->req.file = space_file(pool->sp);
        run->req.buf = stage + (size_t)i * pool->page_size;
        run->req.len = pool->page_size;
        run->req.off = space_page_offset(pool->sp, staged[i]->page_no);
        run->req.owner = &run->hook;
    }
    return r;
}

/* Submits the runs and reaps until all are done (other requests reaped on
   the way go to their own hooks). */
static void write_runs(struct pool *pool, struct io_ctx *ctx,
                       struct write_run *runs, unsigned r, unsigned *pending)
{
    struct io_req *reqs[CLEANER_BATCH], *done[CLEANER_BATCH];
    unsigned i, sent = 0;
    int n;

    for (i = 0; i < r; i++)
        reqs[i] = &runs[i].req;
    *pending = r;
    while (*pending > 0) {
        unsigned room = io_ctx_depth(ctx) - io_ctx_inflight(ctx);
        unsigned batch = r - sent < room ? r - sent : room;
        int rc = batch ? io_ctx_submit(ctx, reqs + sent, batch) : DKV_OK;
        for (i = 0; rc != DKV_OK && i < batch; i++) {
            reqs[sent + i]->res = rc;            /* refused: fail the run */
            write_done(pool, reqs[sent + i]);
        }
        sent += batch;
        if (*pending == 0)
            break;
        n = io_ctx_reap(ctx, done, 1, CLEANER_BATCH);
        if (n < 0)
            break;
        pool_dispatch(pool, done, n);
    }
    /* The context broke: what never came back failed; the pages stay
       dirty and are written again later. */
    for (i = 0; *pending > 0 && i < r; i++) {
        if (!runs[i].finished) {
            runs[i].req.res = DKV_ERR_IO;
            write_done(pool, &runs[i].req);
        }
    }
}

/* A request that runs alone: submitted, then reaped for (other requests
   reaped on the way go to their own hooks). */
struct lone_req {
    struct io_done_hook hook;
    struct io_req       req;
    int                 finished;
};

static void lone_done(struct pool *pool, struct io_req *req)
{
    struct lone_req *l = (struct lone_req *)((char *)req->owner -
                                             offsetof(struct lone_req, hook));
    (void)pool;
    l->finished = 1;
}

static int run_lone(struct pool *pool, struct io_ctx *ctx, struct lone_req *l)
{
    struct io_req *reqs[1] = { &l->req }, *done[CLEANER_BATCH];
    int n, rc;

    l->hook.done = lone_done;
    l->req.owner = &l->hook;
    l->finished = 0;
    while (io_ctx_inflight(ctx) >= io_ctx_depth(ctx)) {
        n = io_ctx_reap(ctx, done, 1, CLEANER_BATCH);
        if (n < 0)
            return n;
        pool_dispatch(pool, done, n);
    }
    rc = io_ctx_submit(ctx, reqs, 1);
    while (rc == DKV_OK && !l->finished) {
        n = io_ctx_reap(ctx, done, 1, CLEANER_BATCH);
        if (n < 0)
            return n;                   /* the context broke (IO7) */
        pool_dispatch(pool, done, n);
    }
    if (rc == DKV_OK && l->req.res < 0)
        rc = (int)l->req.res;
    else if (rc == DKV_OK && (size_t)l->req.res != l->req.len)
        rc = DKV_ERR_IO;
    return rc;
}

/* P10: the staged pages go to a doublewrite segment, synced, before any
   of them is written in place. */
static int doublewrite(struct pool *pool, struct io_ctx *ctx, unsigned seg,
                       unsigned char *stage, unsigned k)
{
    struct lone_req l;
    int rc;

    memset(&l, 0, sizeof(l));
    dblwr_prepare(pool->cfg.dblwr, seg, stage, k, &l.req);
    rc = run_lone(pool, ctx, &l);
    return rc == DKV_OK ? dblwr_sync(pool->cfg.dblwr, k) : rc;
}

int cleaner_write_batch(struct pool *pool, struct io_ctx *ctx,
                        unsigned char *stage, struct frame **f, unsigned n)
{
    struct frame *staged[CLEANER_BATCH];
    struct write_run runs[CLEANER_BATCH];
    struct dblwr *dw = pool->cfg.dblwr;
    uint64_t lsn = 0, max_lsn = 0;
    unsigned i, k = 0, r, pending = 0, seg = 0;
    int rc = DKV_OK;

    dkv_verify(n <= CLEANER_BATCH);
    qsort(f, n, sizeof(*f), by_page_no);
    for (i = 0; i < n; i++) {
        if (!copy_out(pool, f[i], stage + (size_t)k * pool->page_size, &lsn)) {
            frame_unpin(pool, f[i]);
            continue;
        }
        staged[k++] = f[i];
        max_lsn = lsn > max_lsn ? lsn : max_lsn;
    }
    if (k == 0)
        return DKV_OK;
    if (pool->cfg.wal_flush_to != NULL)                /* P2 */
        rc = pool->cfg.wal_flush_to(pool->cfg.wal_arg, max_lsn);
    for (i = 0; rc == DKV_OK && i < k; i++)
        page_stamp(stage + (size_t)i * pool->page_size, pool->page_size);
    if (rc == DKV_OK && dw != NULL) {
        seg = dblwr_acquire(dw);
        rc = doublewrite(pool, ctx, seg, stage, k);
        if (rc != DKV_OK)
            dblwr_release(dw, seg);
    }
    if (rc != DKV_OK) {
        for (i = 0; i < k; i++)
            write_finished(pool, staged[i], rc);
        return rc;
    }
    r = make_runs(pool, staged, k, stage, runs, &pending);
    atomic_fetch_add(&pool->writes_inflight, k);
    atomic_fetch_add(&pool->write_batches, 1);
    write_runs(pool, ctx, runs, r, &pending);
    for (i = 0; i < r; i++)
        if (runs[i].req.res < 0 && rc == DKV_OK)
            rc = (int)runs[i].req.res;
    if (dw != NULL) {
        /* The segment may be reused once the pages are durable in place. */
        int sync_rc = io_file_sync(space_file(pool->sp));
        if (sync_rc != DKV_OK) {
            int64_t none = 0;                         /* IO7: never retried */
            atomic_compare_exchange_strong(&pool->write_error, &none, sync_rc);
            rc = rc == DKV_OK ? sync_rc : rc;
        }
        dblwr_release(dw, seg);
    }
    return rc;
}

/* ---- the page cleaner thread --------------------------------------------------- */

/* How many pages flush-list flushing should write now (adaptive: more as
   the log fills or the pool gets dirty), and whether to go on at once. */
static unsigned flush_target(struct pool *pool, int *hurry)
{
    unsigned dirty_pct = (unsigned)(atomic_load(&pool->dirty_count) * 100ull /
                                    pool->frame_count);
    unsigned fill = pool->cfg.log_fill ? pool->cfg.log_fill(pool->cfg.wal_arg) : 0;
    unsigned pages = 0;

    *hurry = 0;
    if (dirty_pct >= pool->max_dirty_pct || fill >= CLEANER_LOG_HIGH) {
        pages = CLEANER_BATCH;
        *hurry = 1;
    } else if (fill >= CLEANER_LOG_LOW) {
        pages = CLEANER_BATCH * fill / CLEANER_LOG_HIGH;
    } else if (dirty_pct >= pool->max_dirty_pct / 2) {
        pages = CLEANER_BATCH / 8;
    }
    return pages;
}

/* One round of LRU flushing and flush-list flushing.  Returns 1 when the
   cleaner should go on without sleeping. */
static int cleaner_pass(struct cleaner_thread *ct)
{
    struct pool *pool = ct->pool;
    unsigned n, pages;
    int hurry = 0;

    if (atomic_load(&pool->free_count) < pool->free_reserve) {
        n = lru_scan_tail(pool, pool->free_reserve, ct->batch, CLEANER_BATCH);
        if (n > 0) {
            cleaner_write_batch(pool, ct->ctx, ct->stage, ct->batch, n);
            lru_scan_tail(pool, pool->free_reserve, NULL, 0);
        }
        hurry = atomic_load(&pool->free_count) < pool->free_reserve && n > 0;
    }
    pages = flush_target(pool, &hurry);
    if (pages > 0) {
        n = collect_oldest(pool, ct->batch, pages);
        if (n > 0)
            cleaner_write_batch(pool, ct->ctx, ct->stage, ct->batch, n);
        else
            hurry = 0;
    }
    return hurry;
}

static void *cleaner_main(void *arg)
{
    struct cleaner_thread *ct = arg;
    struct cleaner *c = ct->pool->cleaner;
    struct timespec ts;
    int hurry = 0;

    pthread_mutex_lock(&c->lock);
    while (!c->stop) {
        if (!hurry && !atomic_load(&c->wake)) {
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += CLEANER_IDLE_MS * 1000000L;
            ts.tv_sec += ts.tv_nsec / 1000000000L;
            ts.tv_nsec %= 1000000000L;
            pthread_cond_timedwait(&c->cv, &c->lock, &ts);
        }
        atomic_store(&c->wake, 0);
        if (c->stop)
            break;
        pthread_mutex_unlock(&c->lock);
        hurry = cleaner_pass(ct);
        pthread_mutex_lock(&c->lock);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

void pool_wake_cleaner(struct pool *pool)
{
    struct cleaner *c = pool->cleaner;

    if (c == NULL || atomic_exchange(&c->wake, 1) == 1)
        return;
    pthread_mutex_lock(&c->lock);
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->lock);
}

static int writer_init(struct pool *pool, struct io_ctx **ctx,
                       unsigned char **stage)
{
    struct io_ctx_config cfg = { .engine = pool->cfg.io_engine,
                                 .depth = CLEANER_BATCH,
                                 .fail_setup_mask = pool->cfg.io_fail_setup_mask };
    struct io_file *file = space_file(pool->sp);
    int rc;

    *stage = io_buf_alloc((size_t)CLEANER_BATCH * pool->page_size,
                          pool->page_size);
    if (*stage == NULL)
        return DKV_ERR_NOMEM;
    rc = io_ctx_create(&cfg, ctx);
    if (rc != DKV_OK) {
        io_buf_free(*stage, (size_t)CLEANER_BATCH * pool->page_size);
        *stage = NULL;
        return rc;
    }
    io_ctx_register(*ctx, &file, 1, *stage, (size_t)CLEANER_BATCH * pool->page_size);
    return DKV_OK;
}

static void writer_fini(struct pool *pool, struct io_ctx *ctx,
                        unsigned char *stage)
{
    io_ctx_destroy(ctx);
    io_buf_free(stage, (size_t)CLEANER_BATCH * pool->page_size);
}

int cleaner_start(struct pool *pool)
{
    unsigned want = pool->cfg.cleaner_threads;
    struct cleaner *c;
    unsigned i;
    int rc = DKV_OK;

    if (want == POOL_NO_CLEANER)
        return DKV_OK;
    want = want ? want : 1;
    c = calloc(1, sizeof(*c));
    if (c == NULL || (c->threads = calloc(want, sizeof(*c->threads))) == NULL) {
        free(c);
        return DKV_ERR_NOMEM;
    }
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cv, NULL);
    pool->cleaner = c;
    for (i = 0; i < want && rc == DKV_OK; i++) {
        struct cleaner_thread *ct = &c->threads[i];
        ct->pool = pool;
        rc = writer_init(pool, &ct->ctx, &ct->stage);
        if (rc == DKV_OK && pthread_create(&ct->tid, NULL, cleaner_main, ct) != 0) {
            writer_fini(pool, ct->ctx, ct->stage);
            rc = DKV_ERR_NOMEM;
        }
        if (rc == DKV_OK)
            c->count++;
    }
    return rc;
}

void cleaner_stop(struct pool *pool)
{
    struct cleaner *c = pool->cleaner;
    unsigned i;

    if (c == NULL)
        return;
    pthread_mutex_lock(&c->lock);
    c->stop = 1;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->lock);
    for (i = 0; i < c->count; i++) {
        pthread_join(c->threads[i].tid, NULL);
        writer_fini(pool, c->threads[i].ctx, c->threads[i].stage);
    }
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->lock);
    free(c->threads);
    free(c);
    pool->cleaner = NULL;
}

/* ---- flushing everything ------------------------------------------------------------- */

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

    nanosleep(&ts, NULL);
}

int pool_flush_all(struct pool *pool)
{
    return pool_flush_upto(pool, UINT64_MAX);
}

int pool_flush_upto(struct pool *pool, uint64_t lsn)
{
    struct frame *batch[CLEANER_BATCH];
    struct io_ctx *ctx = NULL;
    unsigned char *stage = NULL;
    unsigned waited_ms = 0;
    int rc = writer_init(pool, &ctx, &stage);

    if (rc != DKV_OK)
        return rc;

    /* Pages changed after lsn may stay dirty: writers that go on while a
       checkpoint flushes would otherwise keep it from ever finishing. */
    while (rc == DKV_OK && atomic_load(&pool->dirty_count) > 0) {
        uint64_t oldest = pool_oldest_dirty_lsn(pool);
        unsigned n;
        uint64_t written = atomic_load(&pool->pages_written);
        if (oldest == 0 || oldest > lsn)
            break;
        n = collect_oldest(pool, batch, CLEANER_BATCH);
        if (n > 0)
            rc = cleaner_write_batch(pool, ctx, stage, batch, n);
        if (rc != DKV_OK)
            continue;
        if (atomic_load(&pool->pages_written) != written) {
            waited_ms = 0;
            continue;
        }
        /* No progress: pages another writer is writing, latched pages, or
           pages of an unfinished commit unit.  Wait, bounded. */
        if (waited_ms++ > FLUSH_ALL_WAIT_MS) {
            rc = DKV_ERR_BUSY;
            break;
        }
        sleep_ms(1);
    }
    writer_fini(pool, ctx, stage);
    if (rc == DKV_OK)
        rc = io_file_sync(space_file(pool->sp));
    if (rc != DKV_OK) {
        /* Remembered, as a batch's failed sync is: a later sync that
           succeeds must not let a checkpoint pass these pages (IO7). */
        int64_t none = 0;
        atomic_compare_exchange_strong(&pool->write_error, &none, rc);
    }
    return rc;
}
