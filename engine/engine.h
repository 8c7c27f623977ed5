/*
 * engine.h - the engine's interface inside the library: the page store
 * (data file + buffer pool + redo log, joined) that the B+tree and the
 * dkv_* entry points build on.  Design: engine/README.md.
 */
#ifndef DKV_ENGINE_ENGINE_H
#define DKV_ENGINE_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "pager/pager.h"
#include "wal/wal.h"

struct store;

/* Torn-page protection (wal/README.md, W6): */
enum store_torn_pages {
    STORE_TORN_DOUBLEWRITE = 0,   /* the default: pages go through the
                                     doublewrite file first (P10)           */
    STORE_TORN_PAGE_IMAGES = 1    /* a page's first change after a
                                     checkpoint is logged whole             */
};

/* Applies an engine-defined record (type > REDO_PAGER_MAX) at recovery. */
typedef int (*store_apply_fn)(void *arg, struct pool *pool, uint64_t end_lsn,
                              int type, uint32_t page_no, const void *payload,
                              uint32_t len);

struct store_config {
    size_t   pool_size;
    uint32_t page_size;           /* 0: recorded, or 16 KiB at create        */
    int      io_engine;
    unsigned io_fail_setup_mask;
    int      direct;
    int      commit_mode;         /* DKV_COMMIT_SYNC / DKV_COMMIT_ASYNC      */
    uint32_t commit_interval_ms;
    int      create;
    uint64_t log_capacity;        /* 0: 256 MiB                              */
    size_t   log_buffer;          /* 0: 16 MiB                               */
    int      log_dsync;           /* O_DSYNC log writes                      */
    unsigned log_checkpoint_pct;  /* see struct wal_config.checkpoint_pct   */
    unsigned cleaner_threads;     /* see struct pool_config                  */
    int      torn_pages;          /* STORE_TORN_*: how a torn page is repaired */
    store_apply_fn apply;
    void    *apply_arg;
    pool_page_check_fn page_check;    /* see struct pool_config; NULL: none */
};

/* Opens (creating with cfg->create) the database directory dir: takes its
   lock (DKV_ERR_BUSY when another process holds it), opens the data file,
   the log and the pool, and recovers (out: what recovery did).  Never
   returns a store recovery could not make consistent. */
int  store_open(const char *dir, const struct store_config *cfg,
                struct store **sp, struct wal_recovery *out);
/* Flushes every dirty page, writes a checkpoint, and closes. */
int  store_close(struct store *s);
/* Closes without flushing or checkpointing (tests: like a crash after the
   last sync, without killing the process). */
void store_abandon(struct store *s);

struct pool *store_pool(struct store *s);
struct dblwr *store_dblwr(struct store *s);   /* NULL with page images    */
/* Torn pages the doublewrite file repaired at this open. */
unsigned store_torn_restored(struct store *s);
struct wal  *store_wal(struct store *s);
struct space *store_space(struct store *s);   /* the data file          */

/* Starts an MTR: waits, before any page is latched, until the log has
   room (wal_free_check), then pool_mtr_start.  Every MTR that will be
   committed with store_commit starts here. */
int  store_mtr_start(struct store *s, struct pool_mtr *m);

/* Commits an MTR: logs its body as one unit (WAL_UNIT_END ends a commit
   unit), marks its pages dirty and releases them, then, for a unit end in
   DKV_COMMIT_SYNC mode, waits until it is durable (group commit) with no
   page latched.  After a log failure the store stays failed (W8). */
int  store_commit(struct store *s, struct pool_mtr *m, int flags);
/* Ends an MTR that will not be committed (an error part way): releases
   its pages, and when it had already changed one - changes the log never
   saw - fails the store for good as a failed commit does (E4). */
void store_mtr_cancel(struct store *s, struct pool_mtr *m, int rc);
uint32_t store_page_size(struct store *s);
/* Before a write (no latch held): room for `pages` new pages in the data
   file, grown now if needed (pool_reserve).  DKV_ERR_NOSPACE leaves the
   store as it was, unlike a full disk met in the middle of an MTR (E4). */
int  store_reserve(struct store *s, uint64_t pages);
/* Flushes all dirty pages and writes a checkpoint (dkv_checkpoint). */
int  store_checkpoint(struct store *s);

#endif /* DKV_ENGINE_ENGINE_H */
