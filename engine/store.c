/*
 * store.c - the page store: one directory holding the data file
 * (data.dkv), the redo log (redo.log) and a lock file (LOCK), with the
 * buffer pool between them.  It wires the two layers together - the pool's
 * write-ahead and log-fill hooks go to the log, the log's checkpoint hooks
 * go to the pool - runs recovery at open, and commits mini-transactions.
 *
 * Entry points: store_open, store_close, store_abandon, store_mtr_start,
 * store_commit, store_checkpoint.
 */
#include "engine.h"

#include "dkv.h"
#include "pager/io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define STORE_COMMIT_RETRIES 1000u

struct store {
    struct store_config cfg;
    int            lock_fd;
    struct io_ctx *ctx;              /* the data file's header I/O          */
    struct space  *sp;
    struct dblwr  *dw;               /* NULL with STORE_TORN_PAGE_IMAGES    */
    struct pool   *pool;
    struct wal    *wal;
    unsigned       torn_restored;    /* pages dblwr_restore repaired        */
};

/* ---- hooks ------------------------------------------------------------------------- */

static int hook_write_ahead(void *arg, uint64_t lsn)
{
    struct store *s = arg;

    return s->wal ? wal_write_ahead(s->wal, lsn) : DKV_OK;
}

static unsigned hook_log_fill(void *arg)
{
    struct store *s = arg;

    return s->wal ? wal_fill_pct(s->wal) : 0;
}

static uint64_t hook_oldest_dirty(void *arg)
{
    struct store *s = arg;

    return s->pool ? pool_oldest_dirty_lsn(s->pool) : 0;
}

static int hook_sync_data(void *arg)
{
    struct store *s = arg;
    struct pool_stats ps;

    /* A write or sync of the data file that failed earlier is never
       papered over by a later sync that succeeds (IO7). */
    if (s->pool != NULL)
        pool_stats_get(s->pool, &ps);
    if (s->pool != NULL && ps.write_error != 0)
        return (int)ps.write_error;
    return io_file_sync(space_file(s->sp));
}

static int hook_flush_upto(void *arg, uint64_t lsn)
{
    struct store *s = arg;

    return s->pool != NULL ? pool_flush_upto(s->pool, lsn) : DKV_OK;
}

static void hook_wake_flusher(void *arg)
{
    struct store *s = arg;

    if (s->pool)
        pool_wake_cleaner(s->pool);
}

static int hook_apply(void *arg, uint64_t end_lsn, int type, uint32_t page_no,
                      const void *payload, uint32_t len)
{
    struct store *s = arg;

    if (type <= REDO_PAGER_MAX)
        return pool_redo_apply(s->pool, end_lsn, type, page_no, payload, len);
    if (s->cfg.apply == NULL)
        return PAGER_CORRUPT(page_no, "log record of an unknown type");
    return s->cfg.apply(s->cfg.apply_arg, s->pool, end_lsn, type, page_no,
                        payload, len);
}

static void hook_prefetch(void *arg, const uint32_t *page_nos, unsigned n)
{
    struct store *s = arg;

    pool_prefetch(s->pool, page_nos, n);
}

/* ---- opening ---------------------------------------------------------------------- */

static int lock_dir(struct store *s, const char *dir)
{
    char path[4096];

    if (s->cfg.create && mkdir(dir, 0755) != 0 && errno != EEXIST)
        return io_errno_rc(errno);
    snprintf(path, sizeof(path), "%s/LOCK", dir);
    s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (s->lock_fd < 0)
        return errno == ENOENT ? DKV_ERR_INVALID : io_errno_rc(errno);
    if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0)
        return errno == EWOULDBLOCK ? DKV_ERR_BUSY : io_errno_rc(errno);
    return DKV_OK;
}

static int open_space_and_log(struct store *s, const char *dir)
{
    struct io_ctx_config io = { .engine = s->cfg.io_engine, .depth = 8,
                                .fail_setup_mask = s->cfg.io_fail_setup_mask };
    struct space_config sc = { .page_size = s->cfg.page_size,
                               .create = s->cfg.create, .direct = s->cfg.direct,
                               .allow_torn_header = 1 };
    struct wal_config wc = { .capacity = s->cfg.log_capacity,
                             .buffer_size = s->cfg.log_buffer,
                             .direct = 1, .dsync = s->cfg.log_dsync,
                             .commit_mode = s->cfg.commit_mode,
                             .commit_interval_ms = s->cfg.commit_interval_ms,
                             .io_engine = s->cfg.io_engine,
                             .io_fail_setup_mask = s->cfg.io_fail_setup_mask,
                             .create = s->cfg.create,
                             .checkpoint_pct = s->cfg.log_checkpoint_pct,
                             .no_page_images =
                                 s->cfg.torn_pages != STORE_TORN_PAGE_IMAGES,
                             .oldest_dirty_lsn = hook_oldest_dirty,
                             .sync_data = hook_sync_data,
                             .wake_flusher = hook_wake_flusher,
                             .flush_upto = hook_flush_upto, .arg = s };
    char path[4096];
    int rc = io_ctx_create(&io, &s->ctx);

    /* A crash while the database was being created: start it again. */
    snprintf(path, sizeof(path), "%s/redo.log", dir);
    sc.redo_unfinished = s->cfg.create && wal_unfinished(path);
    snprintf(path, sizeof(path), "%s/data.dkv", dir);
    if (rc == DKV_OK)
        rc = space_open(path, &sc, s->ctx, &s->sp);
    snprintf(path, sizeof(path), "%s/doublewrite.dkv", dir);
    /* The copies are restored whatever this open's choice: the last one
       may have written pages through the file. */
    if (rc == DKV_OK && (s->cfg.torn_pages != STORE_TORN_PAGE_IMAGES ||
                         access(path, F_OK) == 0)) {
        unsigned restored = 0;
        rc = dblwr_open(path, space_page_size(s->sp), s->cfg.direct,
                        space_created(s->sp), s->ctx, &s->dw);
        if (rc == DKV_OK)
            rc = dblwr_restore(s->dw, s->sp, s->ctx, &restored);
        s->torn_restored = restored;
        if (s->cfg.torn_pages == STORE_TORN_PAGE_IMAGES) {
            dblwr_close(s->dw);
            s->dw = NULL;
        }
    }
    snprintf(path, sizeof(path), "%s/redo.log", dir);
    if (rc == DKV_OK)
        rc = wal_open(path, &wc, &s->wal);
    return rc;
}

static int open_pool(struct store *s)
{
    struct pool_config pc = { .pool_size = s->cfg.pool_size,
                              .io_engine = s->cfg.io_engine,
                              .io_fail_setup_mask = s->cfg.io_fail_setup_mask,
                              .cleaner_threads = s->cfg.cleaner_threads,
                              .wal_flush_to = hook_write_ahead,
                              .log_fill = hook_log_fill, .wal_arg = s,
                              .dblwr = s->dw,
                              .page_check = s->cfg.page_check };

    return pool_open(s->sp, &pc, &s->pool);
}

/* The files of a database, in the order store_open makes them. */
static const char *const store_files[] = { "data.dkv", "doublewrite.dkv", "redo.log" };

/* Which of them exist (a bit each); an empty data file counts as missing
   (its creation never finished). */
static unsigned files_present(const char *dir)
{
    char path[4096];
    struct stat st;
    unsigned i, mask = 0;

    for (i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, store_files[i]);
        if (stat(path, &st) == 0 && (i != 0 || st.st_size > 0))
            mask |= 1u << i;
    }
    return mask;
}

/* A creation that failed (an I/O error, a full disk) leaves nothing
   behind that the next open would take for a damaged database: the files
   it made are removed (those that existed before are kept). */
static void undo_create(const char *dir, unsigned before)
{
    char path[4096];
    unsigned i;

    if (before & 1u)
        return;                          /* not a creation */
    for (i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, store_files[i]);
        if (!(before & (1u << i)))
            unlink(path);
    }
}

/* Threads first: the log's (it asks the pool), then the pool's cleaner (it
   asks the log), then the rest. */
static void free_store(struct store *s)
{
    struct pool *pool = s->pool;

    wal_stop_background(s->wal);
    s->pool = NULL;
    pool_close(pool);
    wal_close(s->wal);
    dblwr_close(s->dw);
    space_close(s->sp);
    io_ctx_destroy(s->ctx);
    if (s->lock_fd >= 0)
        close(s->lock_fd);
    free(s);
}

int store_open(const char *dir, const struct store_config *cfg,
               struct store **sp, struct wal_recovery *out)
{
    struct store *s;
    unsigned before = ~0u;               /* all present: nothing to undo */
    int rc;

    if (dir == NULL || cfg == NULL || sp == NULL)
        return DKV_ERR_INVALID;
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return DKV_ERR_NOMEM;
    s->cfg = *cfg;
    s->lock_fd = -1;
    rc = lock_dir(s, dir);
    if (rc == DKV_OK) {
        before = files_present(dir);
        rc = open_space_and_log(s, dir);
    }
    if (rc == DKV_OK)
        rc = open_pool(s);
    if (rc == DKV_OK) {
        int done;
        rc = wal_recover(s->wal, hook_apply, hook_prefetch, s, out);
        done = pool_recovery_done(s->pool);       /* also after a failure */
        rc = rc == DKV_OK ? done : rc;
    }
    if (rc != DKV_OK) {
        if (cfg->create)
            undo_create(dir, before);    /* still under the lock */
        free_store(s);
        return rc;
    }
    *sp = s;
    return DKV_OK;
}

struct pool *store_pool(struct store *s) { return s->pool; }
struct wal  *store_wal(struct store *s)  { return s->wal; }
struct space *store_space(struct store *s) { return s->sp; }
struct dblwr *store_dblwr(struct store *s) { return s->dw; }
unsigned store_torn_restored(struct store *s) { return s->torn_restored; }

/* ---- committing -------------------------------------------------------------------- */

int store_mtr_start(struct store *s, struct pool_mtr *m)
{
    int rc = wal_free_check(s->wal);

    pool_mtr_start(m, s->pool);
    return rc;
}

int store_commit(struct store *s, struct pool_mtr *m, int flags)
{
    static const unsigned char noop[9] = { REDO_NOOP };
    uint64_t start = 0, end = 0, fpi;
    const void *body;
    size_t len;
    unsigned tries = 0;
    int rc;

    do {
        fpi = wal_fpi_lsn(s->wal);
        rc = pool_mtr_body(m, fpi, &body, &len);
        if (rc == DKV_OK && len == 0 && !(flags & WAL_UNIT_END)) {
            pool_mtr_release(m);
            return DKV_OK;
        }
        if (rc == DKV_OK && len == 0) {
            body = noop;                     /* a unit end that changed nothing */
            len = sizeof(noop);
        }
        if (rc == DKV_OK)
            rc = wal_commit(s->wal, body, len, flags & WAL_UNIT_END, fpi,
                            &start, &end);
    } while (rc == WAL_RETRY && tries++ < STORE_COMMIT_RETRIES);
    if (rc != DKV_OK) {
        /* The pages hold changes the log does not: they must never reach
           the disk, and an unfinished unit could never end.  The store
           fails for good (E4); reopening recovers the last durable state. */
        rc = rc == WAL_RETRY ? DKV_ERR_IO : rc;      /* cannot happen: 1000 moves */
        wal_fail(s->wal, rc);
        pool_mtr_abandon(m);
        return rc;
    }
    pool_mtr_commit(m, start, end);
    if ((flags & WAL_UNIT_END) && (flags & WAL_SYNC) &&
        s->cfg.commit_mode == DKV_COMMIT_SYNC)
        return wal_commit_done_flush(s->wal, start, end);
    wal_commit_done(s->wal, start);
    return rc;
}

void store_mtr_cancel(struct store *s, struct pool_mtr *m, int rc)
{
    unsigned i;

    for (i = 0; i < m->count; i++) {
        if (m->pages[i].modified) {
            wal_fail(s->wal, rc < 0 ? rc : DKV_ERR_IO);
            pool_mtr_abandon(m);
            return;
        }
    }
    pool_mtr_release(m);
}

int store_reserve(struct store *s, uint64_t pages)
{
    return pool_reserve(s->pool, pages);
}

uint32_t store_page_size(struct store *s)
{
    return space_page_size(s->sp);
}

/* Fuzzy: wal_checkpoint picks the checkpoint's LSN and has the pages
   changed before it written (hook_flush_upto); writes that go on
   meanwhile keep their pages dirty. */
int store_checkpoint(struct store *s)
{
    return wal_checkpoint(s->wal, 1);
}

/* ---- closing ----------------------------------------------------------------------- */

int store_close(struct store *s)
{
    int rc;

    if (s == NULL)
        return DKV_OK;
    rc = store_checkpoint(s);
    free_store(s);
    return rc;
}

void store_abandon(struct store *s)
{
    if (s == NULL)
        return;
    /* Nothing more is written to the data file: the pool goes first. */
    wal_stop_background(s->wal);
    pool_close(s->pool);
    s->pool = NULL;
    free_store(s);
}
