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
    DKV_ERR_UNSUPPORTED = -8    /* not available on this system or build    */
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

#ifdef __cplusplus
}
#endif

#endif /* DKV_H */
