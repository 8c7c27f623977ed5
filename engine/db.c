/*
 * db.c - the dkv_* entry points of include/dkv.h.  So far: options,
 * error names and the I/O engine queries; the key-value operations come
 * with the B+tree (engine/README.md).
 */
#include "dkv.h"

#include "pager/io.h"

#define DKV_POOL_SIZE_DEFAULT       (128u << 20)
#define DKV_COMMIT_INTERVAL_DEFAULT 1000u

DKV_EXPORT void dkv_options_init(dkv_options *opts)
{
    if (opts == NULL)
        return;
    opts->pool_size = DKV_POOL_SIZE_DEFAULT;
    opts->page_size = 0;
    opts->io_engine = DKV_IO_AUTO;
    opts->direct = 1;
    opts->commit_mode = DKV_COMMIT_SYNC;
    opts->commit_interval_ms = DKV_COMMIT_INTERVAL_DEFAULT;
    opts->create_if_missing = 1;
    opts->read_only = 0;
}

DKV_EXPORT const char *dkv_strerror(int rc)
{
    switch (rc) {
    case DKV_OK:              return "success";
    case DKV_NOTFOUND:        return "key not found";
    case DKV_ERR_INVALID:     return "invalid argument or option";
    case DKV_ERR_IO:          return "input/output error";
    case DKV_ERR_CORRUPT:     return "database file is corrupt (checksum or format check failed)";
    case DKV_ERR_NOSPACE:     return "no space left on the device";
    case DKV_ERR_NOMEM:       return "out of memory";
    case DKV_ERR_BUSY:        return "database is in use by another process";
    case DKV_ERR_READONLY:    return "database is read-only";
    case DKV_ERR_UNSUPPORTED: return "not supported on this system or build";
    default:                  return "unknown error code";
    }
}

DKV_EXPORT const char *dkv_io_engine_name(int io_engine)
{
    return io_engine_name(io_engine);
}

DKV_EXPORT int dkv_io_engine_built(int io_engine)
{
    return io_engine_name(io_engine) != NULL && io_engine_built(io_engine);
}
