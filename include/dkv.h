/*
 * dkv.h - the public interface of DirectKV, an embeddable key-value storage
 * engine that caches for itself (O_DIRECT data files, its own buffer pool,
 * a redo log).  This is the only header an application includes; the full
 * contract is in spec/dkv-api.md and the project README.
 *
 * Every function returns DKV_OK (0), DKV_NOTFOUND (1) or a negative
 * DKV_ERR_* code; dkv_strerror() names each one.
 */
#ifndef DKV_H
#define DKV_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(DKV_BUILDING_LIBRARY) && defined(__GNUC__)
#define DKV_EXPORT __attribute__((visibility("default")))
#else
#define DKV_EXPORT
#endif

#define DKV_VERSION_MAJOR 0
#define DKV_VERSION_MINOR 1
#define DKV_VERSION_PATCH 0

/* ---- limits ---------------------------------------------------------- */

#define DKV_KEY_MAX   1024u              /* longest key, bytes (at least 1)   */
#define DKV_VALUE_MAX (16u << 20)        /* longest value, bytes (16 MiB)     */

/* ---- return codes ---------------------------------------------------- */

enum dkv_rc {
    DKV_OK              = 0,
    DKV_NOTFOUND        = 1,    /* not an error: the key is absent          */
    DKV_ERR_INVALID     = -1,   /* bad argument or option                   */
    DKV_ERR_IO          = -2,   /* the device or file system failed an I/O  */
    DKV_ERR_CORRUPT     = -3,   /* a checksum or format check failed        */
    DKV_ERR_NOSPACE     = -4,   /* the file system is full                  */
    DKV_ERR_NOMEM       = -5,   /* out of memory                            */
    DKV_ERR_BUSY        = -6,   /* another process holds the database       */
    DKV_ERR_READONLY    = -7,   /* a write to a read-only database          */
    DKV_ERR_UNSUPPORTED = -8,   /* not available on this system or build    */
    DKV_ERR_AGAIN       = -9    /* raced with too many writes: try again    */
};

/* ---- types ----------------------------------------------------------- */

typedef struct dkv_db    dkv_db;     /* one open database (thread-safe)     */
typedef struct dkv_batch dkv_batch;  /* an atomic group of puts and deletes */
typedef struct dkv_iter  dkv_iter;   /* ordered cursor over keys            */

enum dkv_io_engine {                 /* how pages reach the disk            */
    DKV_IO_AUTO = 0,                 /* io_uring, else libaio, else psync   */
    DKV_IO_URING,                    /* liburing                            */
    DKV_IO_LIBAIO,                   /* Linux native AIO (libaio)           */
    DKV_IO_PSYNC                     /* pread/pwrite from worker threads    */
};

enum dkv_commit_mode {
    DKV_COMMIT_SYNC = 0,             /* default: a commit returns once durable */
    DKV_COMMIT_ASYNC                 /* WAL synced every commit_interval_ms    */
};

typedef struct dkv_options {
    size_t   pool_size;              /* buffer pool bytes; default 128 MiB   */
    uint32_t page_size;              /* 0 = default (16 KiB when creating,
                                        the recorded size when opening);
                                        else a power of two 4K..64K, fixed at
                                        create; a different size for an
                                        existing database: DKV_ERR_INVALID   */
    int      io_engine;              /* enum dkv_io_engine                    */
    int      direct;                 /* 1 (default): O_DIRECT data files;
                                        0: ordinary page-cache I/O (the
                                        comparison mode)                     */
    int      commit_mode;            /* enum dkv_commit_mode                  */
    uint32_t commit_interval_ms;     /* for DKV_COMMIT_ASYNC; default 1000    */
    int      create_if_missing;      /* default 1                             */
    int      read_only;              /* default 0                             */
} dkv_options;

typedef struct dkv_stats {
    uint64_t pool_pages, pool_used, dirty_pages;
    uint64_t hits, misses, evictions;
    uint64_t pages_read, pages_written;
    uint64_t wal_bytes, wal_syncs, checkpoints;
    const char *io_engine;           /* "io_uring", "libaio", "psync"         */
    int      direct;                 /* 1 when data files really use O_DIRECT */
    uint64_t log_lsn;                /* the log's end (bytes ever appended)   */
    uint64_t log_checkpoint_lsn;     /* recovery would start here             */
    uint64_t log_capacity;           /* bytes of the circular log             */
} dkv_stats;

/* ---- functions ------------------------------------------------------- */

/* Fills *opts with the defaults listed beside each field above. */
DKV_EXPORT void dkv_options_init(dkv_options *opts);

/* A plain-words description of a return code; never NULL. */
DKV_EXPORT const char *dkv_strerror(int rc);

/* The name of an I/O engine value ("auto", "io_uring", "libaio", "psync"),
   or NULL for a value that names none. */
DKV_EXPORT const char *dkv_io_engine_name(int io_engine);

/* 1 when this build contains the backend for io_engine, else 0.  A backend
   that is built in may still be refused by the running system (a container
   that blocks io_uring); DKV_IO_AUTO then falls back. */
DKV_EXPORT int dkv_io_engine_built(int io_engine);

/* Opens (creating it with create_if_missing) the database in directory
   path; opts NULL: the defaults.  Takes the directory's lock: a second
   process gets DKV_ERR_BUSY.  Runs recovery.  A page_size other than the
   recorded one: DKV_ERR_INVALID; a missing database without
   create_if_missing: DKV_ERR_INVALID. */
DKV_EXPORT int  dkv_open(const char *path, const dkv_options *opts, dkv_db **dbp);
/* Flushes every dirty page, writes a checkpoint and frees db.  With
   iterators still open: DKV_ERR_BUSY, and db stays open. */
DKV_EXPORT int  dkv_close(dkv_db *db);

/* Keys: 1..DKV_KEY_MAX bytes, memcmp order, the shorter first on a tie.
   Values: 0..DKV_VALUE_MAX bytes.  Anything else: DKV_ERR_INVALID.
   A long value's pages stay in the pool until its write ends, so a value
   must also fit in half the pool (a 16 MiB value needs a pool of 32 MiB
   or more; the default is 128 MiB): else DKV_ERR_INVALID, nothing written.
   In a read-only database writes return DKV_ERR_READONLY. */
DKV_EXPORT int  dkv_put(dkv_db *db, const void *key, size_t klen,
                        const void *val, size_t vlen);
/* Copies min(cap, length) bytes into buf; *vlen = the full length.
   DKV_NOTFOUND when the key is absent. */
DKV_EXPORT int  dkv_get(dkv_db *db, const void *key, size_t klen,
                        void *buf, size_t cap, size_t *vlen);
/* DKV_NOTFOUND when the key was absent. */
DKV_EXPORT int  dkv_delete(dkv_db *db, const void *key, size_t klen);

/* n lookups at once: the leaves they need that are not in the pool are
   read together (one batch of asynchronous reads).  rcs[i] is each
   lookup's dkv_get result; the call returns the first error, else DKV_OK. */
DKV_EXPORT int  dkv_multi_get(dkv_db *db, size_t n,
                              const void *const *keys, const size_t *klens,
                              void *const *bufs, const size_t *caps,
                              size_t *vlens, int *rcs);

/* A batch collects puts and deletes (copied); dkv_write applies them in
   order, all or nothing (also across a crash), and no lookup sees part of
   it.  A batch must fit in half the pool and an eighth of the log (for the
   defaults: thousands of small writes, or a few long values), else
   DKV_ERR_INVALID with nothing applied. */
DKV_EXPORT dkv_batch *dkv_batch_new(void);
DKV_EXPORT int  dkv_batch_put(dkv_batch *b, const void *key, size_t klen,
                              const void *val, size_t vlen);
DKV_EXPORT int  dkv_batch_delete(dkv_batch *b, const void *key, size_t klen);
DKV_EXPORT void dkv_batch_clear(dkv_batch *b);
DKV_EXPORT void dkv_batch_free(dkv_batch *b);
DKV_EXPORT int  dkv_write(dkv_db *db, dkv_batch *b);

/* A forward cursor.  dkv_iter_seek positions it at the first key >= key
   (key NULL: the first key).  Under concurrent writes it never shows a
   torn key or value, and returns every key that no write touches during
   the scan exactly once, in order; a key written meanwhile may show its
   old or its new state (it is not a snapshot).  dkv_iter_key and
   dkv_iter_value point into the iterator, valid until it moves. */
DKV_EXPORT int  dkv_iter_new(dkv_db *db, dkv_iter **itp);
DKV_EXPORT int  dkv_iter_seek(dkv_iter *it, const void *key, size_t klen);
DKV_EXPORT int  dkv_iter_valid(const dkv_iter *it);
DKV_EXPORT int  dkv_iter_next(dkv_iter *it);
DKV_EXPORT const void *dkv_iter_key(const dkv_iter *it, size_t *klen);
DKV_EXPORT const void *dkv_iter_value(const dkv_iter *it, size_t *vlen);
DKV_EXPORT void dkv_iter_free(dkv_iter *it);

/* Makes every commit so far durable (DKV_COMMIT_ASYNC). */
DKV_EXPORT int  dkv_sync(dkv_db *db);
/* Writes every dirty page and advances the checkpoint. */
DKV_EXPORT int  dkv_checkpoint(dkv_db *db);
DKV_EXPORT int  dkv_stats_get(dkv_db *db, dkv_stats *st);

/* ---- checking and backup ---------------------------------------------- */

typedef struct dkv_check_info {
    uint32_t page_size;
    uint64_t file_pages;             /* pages the data file has room for     */
    uint64_t page_count;             /* pages [0, page_count) in use or free */
    uint64_t free_pages;             /* on the free list                     */
    uint64_t leaf_pages, inner_pages, overflow_pages;
    uint64_t keys;
    unsigned height;                 /* levels of the B+tree (1: a root leaf) */
    double   leaf_fill, inner_fill;  /* bytes in use / bytes, 0..1           */
    uint64_t bad_page;               /* DKV_ERR_CORRUPT: the damaged page    */
    char     problem[256];           /* DKV_ERR_CORRUPT: what is wrong       */
} dkv_check_info;

/* Checks the whole database: writes every dirty page, then, with writes
   held back (lookups go on), reads every page of the data file from the
   disk and checks its checksum and number, each B+tree node's structure
   and key order, that every page is referenced exactly once (by the tree,
   a long value, the purge list or the free list) and leads back to the
   file header, the free list's count, and the tree's levels, separators
   and leaf chain.  Fills *info (counts, tree height, fill factors) as far
   as it got.  DKV_ERR_CORRUPT on the first damage found: info->bad_page
   and info->problem say where and what.  DKV_ERR_READONLY for a database
   opened read-only. */
DKV_EXPORT int  dkv_check(dkv_db *db, dkv_check_info *info);

/* The page and reason of the last DKV_ERR_CORRUPT this thread got from the
   library (dkv_open of a damaged database, a get that hit a bad page):
   DKV_OK with *page_no and *what (a static string) set, or DKV_NOTFOUND
   when there was none. */
DKV_EXPORT int  dkv_last_corruption(uint64_t *page_no, const char **what);

/* Writes a consistent copy of db into dest_dir (created when missing; it
   must not hold a database: DKV_ERR_INVALID) while other threads keep
   reading and writing through db.  The copy holds every write
   acknowledged before the call, is a database dkv_open opens (its first
   open replays the log copied with it) and passes dkv_check.  Writers are
   never blocked for long: if more log is written during the backup than
   the log holds (256 MiB), it fails with DKV_ERR_AGAIN; on any failure
   the files it made are removed.  DKV_ERR_READONLY for a read-only db. */
DKV_EXPORT int  dkv_backup(dkv_db *db, const char *dest_dir);

#ifdef __cplusplus
}
#endif

#endif /* DKV_H */
