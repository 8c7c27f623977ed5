/*
 * io.c - the one place that calls the I/O backends (IO1).
 *
 * Entry points:
 *   io_file_open/close/size/allocate/sync  files, O_DIRECT probing (IO4)
 *   io_ctx_create/destroy                  backend choice and fallback (IO2)
 *   io_ctx_submit                          checks every request (IO3)
 *   io_ctx_reap                            completes short transfers (IO5)
 *   io_run                                 submit and wait, for cold paths
 *   io_buf_alloc/free                      aligned buffers and regions
 *   io_ctx_inject_fault                    the fault hook (IO8)
 *   io_hook_set                            the process-wide test hook (IO8)
 *
 * errno becomes a DKV_ERR_* code here and nowhere else (IO6).
 */
#include "io_int.h"

#include "dkv.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#ifndef STATX_DIOALIGN
#define STATX_DIOALIGN 0x00002000U
#endif

#define IO_RETRY_MAX     1000u    /* EINTR/EAGAIN resubmissions per request */
#define IO_ALIGN_DEFAULT 512u     /* when nothing better can be learned     */
#define IO_HUGE_REGION   (2u << 20)

/* ---- the process-wide test hook (IO8) ---------------------------------- */

/* Set only by tests, while no I/O is in flight; hook_on is the one branch
   every request pays when it is unset. */
static struct io_hook hook;
static int hook_on;

void io_hook_set(const struct io_hook *h)
{
    __atomic_store_n(&hook_on, 0, __ATOMIC_RELEASE);
    if (h == NULL || h->before == NULL)
        return;
    hook = *h;
    __atomic_store_n(&hook_on, 1, __ATOMIC_RELEASE);
}

static inline int hook_active(void)
{
    return __builtin_expect(__atomic_load_n(&hook_on, __ATOMIC_ACQUIRE), 0);
}

static struct io_hook_event hook_event(int op, struct io_file *file,
                                       uint64_t off, uint64_t len,
                                       const void *buf,
                                       const struct io_req *req)
{
    struct io_hook_event ev = { .op = op, .file = file, .name = file->name,
                                .off = off, .len = len, .buf = buf,
                                .req = req };
    return ev;
}

/* Asks the hook about a file operation; 0 (go on), an errno or IO_HOOK_*. */
static int hook_before(int op, struct io_file *file, uint64_t off, uint64_t len)
{
    struct io_hook_event ev = hook_event(op, file, off, len, NULL, NULL);
    int rest = 0;

    return hook.before(hook.arg, &ev, &rest);
}

static void hook_done(int op, struct io_file *file, uint64_t off, uint64_t len,
                      int rc)
{
    struct io_hook_event ev = hook_event(op, file, off, len, NULL, NULL);

    if (hook.done != NULL)
        hook.done(hook.arg, &ev, rc);
}

static void hook_req_done(struct io_req *req)
{
    struct io_hook_event ev = hook_event(req->op, req->file, req->off, req->len,
                                         req->op == IO_WRITE ? req->buf : NULL,
                                         req);

    if (hook.done != NULL)
        hook.done(hook.arg, &ev, req->res < 0 ? (int)req->res : DKV_OK);
}

/* ---- errors ---------------------------------------------------------- */

int io_errno_rc(int err)
{
    switch (err) {
    case 0:       return DKV_OK;
    case ENOSPC:
    case EDQUOT:
    case EFBIG:   return DKV_ERR_NOSPACE;
    case ENOMEM:  return DKV_ERR_NOMEM;
    case EINVAL:  return DKV_ERR_INVALID;
    case EROFS:   return DKV_ERR_READONLY;
    case ENOSYS:
    case EOPNOTSUPP: return DKV_ERR_UNSUPPORTED;
    default:      return DKV_ERR_IO;
    }
}

void io_note_failure(struct io_ctx *ctx, const char *name, const char *what,
                     int err)
{
    size_t used = strlen(ctx->fallback_reason);
    size_t room = sizeof(ctx->fallback_reason) - used;

    snprintf(ctx->fallback_reason + used, room, "%s%s: %s: %s",
             used ? "; " : "", name, what, strerror(err));
}

/* ---- files ----------------------------------------------------------- */

/* The logical block size of the device under fd, from sysfs; 0 if unknown. */
static uint32_t sysfs_logical_block(int fd)
{
    struct stat st;
    char path[128];
    unsigned value = 0;
    FILE *f;

    if (fstat(fd, &st) != 0 || major(st.st_dev) == 0)
        return 0;
    /* A partition has no queue/ of its own; its parent disk does. */
    snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/queue/logical_block_size",
             major(st.st_dev), minor(st.st_dev));
    f = fopen(path, "r");
    if (f == NULL) {
        snprintf(path, sizeof(path),
                 "/sys/dev/block/%u:%u/../queue/logical_block_size",
                 major(st.st_dev), minor(st.st_dev));
        f = fopen(path, "r");
    }
    if (f == NULL)
        return 0;
    if (fscanf(f, "%u", &value) != 1)
        value = 0;
    fclose(f);
    return value;
}

/*
 * Learns the alignment O_DIRECT needs for fd: statx(STATX_DIOALIGN) on
 * Linux >= 6.1, else the device's logical block size.  The same alignment
 * is enforced on buffered files too (IO3), so that code tested in the
 * page-cache mode is correct in direct mode.  *refused = 1 when statx says
 * the file cannot do direct I/O at all.
 */
static void learn_alignment(struct io_file *file, int *refused)
{
    struct statx stx;
    uint32_t block;

    *refused = 0;
    memset(&stx, 0, sizeof(stx));
    if (statx(file->fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
        (stx.stx_mask & STATX_DIOALIGN)) {
        if (stx.stx_dio_offset_align == 0) {
            *refused = 1;
        } else {
            file->mem_align = stx.stx_dio_mem_align;
            file->off_align = stx.stx_dio_offset_align;
        }
    }
    if (file->off_align == 0) {
        block = sysfs_logical_block(file->fd);
        file->off_align = block ? block : IO_ALIGN_DEFAULT;
        file->mem_align = file->off_align;
    }
    /* Never below 512: a buffered file must stay valid for direct I/O. */
    if (file->off_align < IO_ALIGN_DEFAULT)
        file->off_align = IO_ALIGN_DEFAULT;
    if (file->mem_align < IO_ALIGN_DEFAULT)
        file->mem_align = IO_ALIGN_DEFAULT;
}

static int open_flags(int flags)
{
    int oflags = O_CLOEXEC;

    oflags |= (flags & IO_OPEN_RDONLY) ? O_RDONLY : O_RDWR;
    if (flags & IO_OPEN_CREATE)
        oflags |= O_CREAT;
    if (flags & IO_OPEN_DSYNC)
        oflags |= O_DSYNC;
    return oflags;
}

/*
 * Opens path; with IO_OPEN_DIRECT tries O_DIRECT and, when the file system
 * refuses it (EINVAL at open, or statx reporting no direct I/O), reopens it
 * buffered and says so through io_file_direct() (IO4), unless NEED_DIRECT.
 */
int io_file_open(const char *path, int flags, struct io_file **filep)
{
    struct io_file *file;
    int oflags = open_flags(flags);
    int refused = 0;
    int rc;

    if (path == NULL || filep == NULL)
        return DKV_ERR_INVALID;
    file = calloc(1, sizeof(*file));
    if (file == NULL)
        return DKV_ERR_NOMEM;
    file->fd = -1;
    if (flags & IO_OPEN_DIRECT) {
        file->fd = open(path, oflags | O_DIRECT, 0644);
        if (file->fd < 0 && errno != EINVAL)
            goto fail_errno;
        file->direct = file->fd >= 0;
    }
    if (file->fd < 0)
        file->fd = open(path, oflags, 0644);
    if (file->fd < 0)
        goto fail_errno;
    learn_alignment(file, &refused);
    if (refused && file->direct) {
        /* Reopen without O_DIRECT: the flag was accepted but is useless. */
        int fd = open(path, oflags & ~O_CREAT, 0644);
        if (fd < 0)
            goto fail_errno;
        close(file->fd);
        file->fd = fd;
        file->direct = 0;
    }
    snprintf(file->name, sizeof(file->name), "%s",
             strrchr(path, '/') ? strrchr(path, '/') + 1 : path);
    if ((flags & IO_OPEN_DIRECT) && (flags & IO_OPEN_NEED_DIRECT) &&
        !file->direct) {
        rc = DKV_ERR_UNSUPPORTED;
        goto fail;
    }
    *filep = file;
    return DKV_OK;

fail_errno:
    rc = errno == ENOENT ? DKV_ERR_INVALID : io_errno_rc(errno);
fail:
    if (file->fd >= 0)
        close(file->fd);
    free(file);
    return rc;
}

int io_file_close(struct io_file *file)
{
    int rc = DKV_OK;

    if (file == NULL)
        return DKV_OK;
    if (close(file->fd) != 0 && errno != EINTR)
        rc = io_errno_rc(errno);
    free(file);
    return rc;
}

int      io_file_fd(const struct io_file *file)        { return file->fd; }
int      io_file_direct(const struct io_file *file)    { return file->direct; }
uint32_t io_file_mem_align(const struct io_file *file) { return file->mem_align; }
uint32_t io_file_off_align(const struct io_file *file) { return file->off_align; }

int64_t io_file_size(struct io_file *file)
{
    struct stat st;

    if (fstat(file->fd, &st) != 0)
        return io_errno_rc(errno);
    return (int64_t)st.st_size;
}

static int io_file_sync_raw(struct io_file *file);

/* Extends the file with zeros written by aligned pwrite, for file systems
   without fallocate.  Returns 0 or -errno. */
static int zero_fill(struct io_file *file, uint64_t off, uint64_t len)
{
    const size_t chunk = 1u << 20;
    void *zeros = io_buf_alloc(chunk, file->mem_align);
    int err = 0;

    if (zeros == NULL)
        return -ENOMEM;
    memset(zeros, 0, chunk);
    while (len > 0 && err == 0) {
        size_t n = len < chunk ? (size_t)len : chunk;
        ssize_t w = pwrite(file->fd, zeros, n, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            err = w < 0 ? errno : EIO;
        else {
            off += (uint64_t)w;
            len -= (uint64_t)w;
        }
    }
    io_buf_free(zeros, chunk);
    return -err;
}

int io_file_allocate(struct io_file *file, uint64_t off, uint64_t len)
{
    int64_t size = io_file_size(file);
    int err = 0;

    if (size < 0)
        return (int)size;
    if (len == 0 || off % file->off_align || len % file->off_align)
        return DKV_ERR_INVALID;
    if (hook_active()) {
        err = hook_before(IO_HOOK_ALLOCATE, file, off, len);
        if (err > 0) {
            hook_done(IO_HOOK_ALLOCATE, file, off, len, io_errno_rc(err));
            return io_errno_rc(err);
        }
    }
    do {
        err = fallocate(file->fd, 0, (off_t)off, (off_t)len) ? errno : 0;
    } while (err == EINTR);
    if (err == EOPNOTSUPP)
        err = -zero_fill(file, off, len);
    if (err != 0) {
        /* Leave the size as it was: a partial extension is given back. */
        if (ftruncate(file->fd, (off_t)size) != 0)
            err = EIO;
        if (hook_active())
            hook_done(IO_HOOK_ALLOCATE, file, off, len, io_errno_rc(err));
        return io_errno_rc(err);
    }
    if (hook_active())
        hook_done(IO_HOOK_ALLOCATE, file, off, len, DKV_OK);
    return DKV_OK;
}

int io_file_fill_zero(struct io_file *file, uint64_t off, uint64_t len)
{
    int64_t size;
    int err = 0;

    if (len == 0 || off % file->off_align || len % file->off_align)
        return DKV_ERR_INVALID;
    if (hook_active()) {
        err = hook_before(IO_HOOK_ZERO, file, off, len);
        size = err == IO_HOOK_SPARSE ? io_file_size(file) : -1;
        if (size >= 0 && (uint64_t)size <= off + len) {  /* holes read as zeros */
            err = (uint64_t)size > off && ftruncate(file->fd, (off_t)off) != 0;
            err = err || ftruncate(file->fd, (off_t)(off + len)) != 0 ? errno : 0;
        } else if (err <= 0)
            err = -zero_fill(file, off, len);
        hook_done(IO_HOOK_ZERO, file, off, len, io_errno_rc(err));
        return io_errno_rc(err);
    }
    err = zero_fill(file, off, len);
    return err ? io_errno_rc(-err) : DKV_OK;
}

int io_file_sync(struct io_file *file)
{
    int rc;

    if (hook_active()) {
        /* A failure made up here never reaches fdatasync: as after a real
           one, what was not yet synced may be gone (IO7). */
        rc = hook_before(IO_HOOK_SYNC, file, 0, 0);
        rc = rc > 0 ? io_errno_rc(rc) : io_file_sync_raw(file);
        hook_done(IO_HOOK_SYNC, file, 0, 0, rc);
        return rc;
    }
    return io_file_sync_raw(file);
}

static int io_file_sync_raw(struct io_file *file)
{
    int rc;

    do {
        rc = fdatasync(file->fd);
    } while (rc != 0 && errno == EINTR);
    return rc == 0 ? DKV_OK : io_errno_rc(errno);
}

/* ---- contexts -------------------------------------------------------- */

static const struct io_ops *backend_ops(int engine)
{
    switch (engine) {
    case DKV_IO_URING:  return io_uring_ops_ptr;
    case DKV_IO_LIBAIO: return io_aio_ops_ptr;
    case DKV_IO_PSYNC:  return &io_psync_ops;
    default:            return NULL;
    }
}

const char *io_engine_name(int engine)
{
    switch (engine) {
    case DKV_IO_AUTO:   return "auto";
    case DKV_IO_URING:  return "io_uring";
    case DKV_IO_LIBAIO: return "libaio";
    case DKV_IO_PSYNC:  return "psync";
    default:            return NULL;
    }
}

int io_engine_built(int engine)
{
    return engine == DKV_IO_AUTO || backend_ops(engine) != NULL;
}

/* The backends named in DKV_IO_DISABLE ("io_uring,libaio"), as a mask. */
static unsigned env_disable_mask(void)
{
    const char *env = getenv("DKV_IO_DISABLE");
    unsigned mask = 0;
    int engine;

    if (env == NULL)
        return 0;
    for (engine = DKV_IO_URING; engine <= DKV_IO_PSYNC; engine++) {
        const char *name = io_engine_name(engine);
        const char *hit = strstr(env, name);
        size_t n = strlen(name);
        if (hit && (hit == env || hit[-1] == ',') &&
            (hit[n] == '\0' || hit[n] == ','))
            mask |= 1u << engine;
    }
    return mask;
}

/* Tries one backend; 0 when it is set up, else a DKV_ERR_* with the reason
   noted in ctx->fallback_reason. */
static int try_backend(struct io_ctx *ctx, int engine, unsigned fail_mask)
{
    const struct io_ops *ops = backend_ops(engine);
    const char *name = io_engine_name(engine);
    int err;

    if (ops == NULL) {
        io_note_failure(ctx, name, "not in this build", ENOSYS);
        return DKV_ERR_UNSUPPORTED;
    }
    if (fail_mask & (1u << engine)) {
        io_note_failure(ctx, name, "setup failure forced", EPERM);
        return DKV_ERR_UNSUPPORTED;
    }
    err = ops->init(ctx, ctx->depth);
    if (err < 0)
        return err == -ENOMEM ? DKV_ERR_NOMEM : DKV_ERR_UNSUPPORTED;
    ctx->ops = ops;
    ctx->engine = engine;
    return DKV_OK;
}

int io_ctx_create(const struct io_ctx_config *cfg, struct io_ctx **ctxp)
{
    static const int auto_order[] = { DKV_IO_URING, DKV_IO_LIBAIO, DKV_IO_PSYNC };
    struct io_ctx *ctx;
    unsigned fail_mask;
    int rc = DKV_ERR_UNSUPPORTED;
    size_t i;

    if (cfg == NULL || ctxp == NULL || cfg->depth == 0 ||
        cfg->depth > IO_DEPTH_MAX || cfg->engine < DKV_IO_AUTO ||
        cfg->engine > DKV_IO_PSYNC)
        return DKV_ERR_INVALID;
    ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL)
        return DKV_ERR_NOMEM;
    ctx->depth = cfg->depth;
    ctx->submit_chunk = cfg->submit_chunk ? cfg->submit_chunk
                                          : IO_SUBMIT_CHUNK_DEFAULT;
    ctx->resubmit = calloc(cfg->depth, sizeof(*ctx->resubmit));
    ctx->raw = calloc(cfg->depth, sizeof(*ctx->raw));
    if (ctx->resubmit == NULL || ctx->raw == NULL) {
        rc = DKV_ERR_NOMEM;
        goto fail;
    }
    fail_mask = cfg->fail_setup_mask | env_disable_mask();
    if (cfg->engine != DKV_IO_AUTO) {
        rc = try_backend(ctx, cfg->engine, fail_mask);
    } else {
        for (i = 0; i < sizeof(auto_order) / sizeof(auto_order[0]); i++) {
            rc = try_backend(ctx, auto_order[i], fail_mask);
            if (rc == DKV_OK)
                break;
        }
    }
    if (rc != DKV_OK)
        goto fail;
    *ctxp = ctx;
    return DKV_OK;

fail:
    free(ctx->raw);
    free(ctx->resubmit);
    free(ctx);
    return rc;
}

void io_ctx_destroy(struct io_ctx *ctx)
{
    struct io_req *done[64];
    unsigned rounds = 0;

    if (ctx == NULL)
        return;
    /* Bounded: every round takes at least one request back. */
    while (ctx->inflight > 0 && rounds++ <= ctx->depth) {
        if (io_ctx_reap(ctx, done, 1, 64) < 0)
            break;
    }
    ctx->ops->fini(ctx);
    free(ctx->raw);
    free(ctx->resubmit);
    free(ctx);
}

const char *io_ctx_engine_name(const struct io_ctx *ctx) { return ctx->ops->name; }
int         io_ctx_engine(const struct io_ctx *ctx)      { return ctx->engine; }
unsigned    io_ctx_depth(const struct io_ctx *ctx)       { return ctx->depth; }
unsigned    io_ctx_inflight(const struct io_ctx *ctx)    { return ctx->inflight; }
const char *io_ctx_fallback_reason(const struct io_ctx *ctx)
{
    return ctx->fallback_reason;
}

void io_ctx_register(struct io_ctx *ctx, struct io_file *const *files,
                     unsigned file_count, void *region, size_t region_size)
{
    if (ctx->ops->reg != NULL && ctx->inflight == 0)
        ctx->ops->reg(ctx, files, file_count, region, region_size);
}

void io_ctx_inject_fault(struct io_ctx *ctx, unsigned long nth, int err,
                         int persistent)
{
    ctx->fault_nth = nth;
    ctx->fault_seen = 0;
    ctx->fault_err = err;
    ctx->fault_persistent = persistent;
}

/* ---- submitting ------------------------------------------------------ */

/* IO3: the checks every request passes before any backend sees it. */
static int check_req(const struct io_req *req)
{
    const struct io_file *file = req->file;

    if (req->op != IO_READ && req->op != IO_WRITE)
        return DKV_ERR_INVALID;
    if (file == NULL || req->buf == NULL || req->len == 0)
        return DKV_ERR_INVALID;
    if ((uintptr_t)req->buf % file->mem_align != 0)
        return DKV_ERR_INVALID;
    if (req->off % file->off_align != 0 || req->len % file->off_align != 0)
        return DKV_ERR_INVALID;
    if (req->off + req->len < req->off)
        return DKV_ERR_INVALID;
    return DKV_OK;
}

/* Decides whether fault injection takes this request (IO8): returns the
   errno it fails with, -1 for a short transfer, 0 for none. */
static int fault_fires(struct io_ctx *ctx)
{
    if (ctx->fault_nth == 0)
        return 0;
    ctx->fault_seen++;
    if (ctx->fault_seen < ctx->fault_nth)
        return 0;
    if (ctx->fault_seen > ctx->fault_nth && !ctx->fault_persistent)
        return 0;
    return ctx->fault_err ? ctx->fault_err : -1;
}

static void synth_push(struct io_ctx *ctx, struct io_req *req, int err)
{
    req->res = -err;
    req->next = NULL;
    if (ctx->synth_tail)
        ctx->synth_tail->next = req;
    else
        ctx->synth_head = req;
    ctx->synth_tail = req;
}

static struct io_req *synth_pop(struct io_ctx *ctx)
{
    struct io_req *req = ctx->synth_head;

    if (req) {
        ctx->synth_head = req->next;
        if (ctx->synth_head == NULL)
            ctx->synth_tail = NULL;
        req->next = NULL;
    }
    return req;
}

/* Hands k attempts to the backend, submit_chunk per call; on a backend
   failure they come back as failed attempts, so no request is lost. */
static void backend_submit(struct io_ctx *ctx, struct io_req **reqs, unsigned k)
{
    unsigned at, i, n;
    int err;

    for (at = 0; at < k; at += n) {
        n = k - at < ctx->submit_chunk ? k - at : ctx->submit_chunk;
        err = ctx->ops->submit(ctx, reqs + at, n);
        if (err == 0) {
            ctx->backend_inflight += n;
            continue;
        }
        for (i = 0; i < n; i++)
            synth_push(ctx, reqs[at + i], -err);
    }
}

/* Sets up req's first attempt, applying fault injection; returns 1 when
   the attempt goes to the backend, 0 when it was made up. */
static int first_attempt(struct io_ctx *ctx, struct io_req *req)
{
    int fault = fault_fires(ctx);
    size_t half;

    req->done = 0;
    req->retries = 0;
    req->res = 0;
    req->err = 0;
    req->rest_err = 0;
    req->next = NULL;
    req->attempt = req->len;
    if (hook_active() && fault == 0) {
        struct io_hook_event ev = hook_event(req->op, req->file, req->off,
                                             req->len,
                                             req->op == IO_WRITE ? req->buf
                                                                 : NULL, req);
        fault = hook.before(hook.arg, &ev, &req->rest_err);
        fault = fault == IO_HOOK_SHORT ? -1 : fault < 0 ? 0 : fault;
    }
    if (fault > 0) {
        synth_push(ctx, req, fault);
        return 0;
    }
    if (fault < 0) {
        half = req->len / 2 / req->file->off_align * req->file->off_align;
        if (half == 0) {
            synth_push(ctx, req, EAGAIN);
            return 0;
        }
        req->attempt = half;
    }
    return 1;
}

int io_ctx_submit(struct io_ctx *ctx, struct io_req *const *reqs, unsigned n)
{
    unsigned i, k = 0;
    int rc;

    if (n == 0)
        return DKV_OK;
    if (reqs == NULL || ctx->inflight + n > ctx->depth)
        return DKV_ERR_INVALID;
    for (i = 0; i < n; i++) {
        rc = reqs[i] ? check_req(reqs[i]) : DKV_ERR_INVALID;
        if (rc != DKV_OK)
            return rc;
    }
    for (i = 0; i < n; i++) {
        if (first_attempt(ctx, reqs[i]))
            ctx->resubmit[k++] = reqs[i];
    }
    ctx->inflight += n;
    backend_submit(ctx, ctx->resubmit, k);
    return DKV_OK;
}

/* ---- reaping --------------------------------------------------------- */

/*
 * Looks at the raw outcome of req's last attempt (IO5).  Returns 1 when the
 * request is finished (res is final), 0 when it needs another attempt.
 */
static int settle(struct io_req *req)
{
    int64_t raw = req->res;

    if (raw < 0) {
        int err = (int)-raw;
        if ((err == EINTR || err == EAGAIN) && req->retries < IO_RETRY_MAX) {
            req->retries++;
            req->attempt = req->len - req->done;
            return 0;
        }
        req->err = err;
        req->res = io_errno_rc(err);
        return 1;
    }
    if (raw == 0) {
        if (req->op == IO_READ) {           /* end of file */
            req->res = (int64_t)req->done;
            return 1;
        }
        if (req->retries++ < IO_RETRY_MAX) {
            req->attempt = req->len - req->done;
            return 0;
        }
        req->err = EIO;
        req->res = DKV_ERR_IO;
        return 1;
    }
    req->done += (size_t)raw;
    if (req->done >= req->len) {
        req->res = (int64_t)req->len;
        return 1;
    }
    if (req->rest_err != 0) {               /* the hook fails the rest */
        req->err = req->rest_err;
        req->res = io_errno_rc(req->rest_err);
        return 1;
    }
    req->attempt = req->len - req->done;    /* a short transfer */
    return 0;
}

/* Settles the attempts in raw[0..n); finished ones go to done[], the rest
   are resubmitted as one batch.  Returns how many finished. */
static unsigned settle_batch(struct io_ctx *ctx, struct io_req **raw,
                             unsigned n, struct io_req **done)
{
    unsigned i, got = 0, k = 0;

    for (i = 0; i < n; i++) {
        if (settle(raw[i])) {
            if (hook_active())
                hook_req_done(raw[i]);
            done[got++] = raw[i];
        } else
            ctx->resubmit[k++] = raw[i];
    }
    backend_submit(ctx, ctx->resubmit, k);
    return got;
}

int io_ctx_reap(struct io_ctx *ctx, struct io_req **done, unsigned min,
            unsigned max)
{
    unsigned got = 0;

    if (max > ctx->inflight)
        max = ctx->inflight;
    if (min > max)
        min = max;
    while (got < max) {
        unsigned room = max - got, n = 0, want;
        int r;

        while (n < room && ctx->synth_head)
            ctx->raw[n++] = synth_pop(ctx);
        got += settle_batch(ctx, ctx->raw, n, done + got);
        if (got >= max || ctx->backend_inflight == 0) {
            if (got >= min || ctx->synth_head == NULL)
                break;
            continue;
        }
        room = max - got;
        want = got < min ? min - got : 0;
        if (want > ctx->backend_inflight)
            want = ctx->backend_inflight;
        r = ctx->ops->reap(ctx, ctx->raw, want, room);
        if (r < 0)
            return io_errno_rc(-r);
        ctx->backend_inflight -= (unsigned)r;
        got += settle_batch(ctx, ctx->raw, (unsigned)r, done + got);
        if (got >= min)
            break;
    }
    ctx->inflight -= got;
    return (int)got;
}

/* Reaps until nothing is in flight; returns how many came back. */
static unsigned drain(struct io_ctx *ctx)
{
    struct io_req *done[64];
    unsigned back = 0;

    while (ctx->inflight > 0) {
        int r = io_ctx_reap(ctx, done, 1, 64);
        if (r < 0)
            break;
        back += (unsigned)r;
    }
    return back;
}

int io_run(struct io_ctx *ctx, struct io_req *const *reqs, unsigned n)
{
    struct io_req *done[64];
    unsigned i, sent = 0, back = 0;
    int rc = DKV_OK;

    if (ctx->inflight != 0 || (n > 0 && reqs == NULL))
        return DKV_ERR_INVALID;
    /* Check every request first, so a bad one refuses the whole run and
       nothing is left in flight. */
    for (i = 0; i < n; i++) {
        rc = reqs[i] ? check_req(reqs[i]) : DKV_ERR_INVALID;
        if (rc != DKV_OK)
            return rc;
    }
    while (back < n) {
        unsigned batch = n - sent;
        int r;
        if (batch > ctx->depth - ctx->inflight)
            batch = ctx->depth - ctx->inflight;
        if (batch > 0) {
            rc = io_ctx_submit(ctx, reqs + sent, batch);
            if (rc != DKV_OK) {
                drain(ctx);
                return rc;
            }
            sent += batch;
        }
        r = io_ctx_reap(ctx, done, 1, 64);
        if (r < 0)
            return r;                   /* the context is broken (IO7) */
        back += (unsigned)r;
    }
    for (i = 0; i < n && rc == DKV_OK; i++) {
        if (reqs[i]->res < 0)
            rc = (int)reqs[i]->res;
        else if ((size_t)reqs[i]->res != reqs[i]->len)
            rc = DKV_ERR_IO;
    }
    return rc;
}

/* ---- buffers --------------------------------------------------------- */

void *io_buf_alloc(size_t size, size_t align)
{
    void *buf = NULL;
    size_t span, lead;
    char *base;

    if (size == 0 || align == 0 || (align & (align - 1)) != 0)
        return NULL;
    if (size < IO_HUGE_REGION) {
        if (align < sizeof(void *))
            align = sizeof(void *);
        return posix_memalign(&buf, align, size) == 0 ? buf : NULL;
    }
    /* A region: map extra so it can start on a huge-page boundary. */
    if (align < IO_HUGE_REGION)
        align = IO_HUGE_REGION;
    size = (size + 4095) & ~(size_t)4095;
    span = size + align;
    base = mmap(NULL, span, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED)
        return NULL;
    lead = (align - (uintptr_t)base % align) % align;
    if (lead)
        munmap(base, lead);
    if (span - lead - size)
        munmap(base + lead + size, span - lead - size);
    buf = base + lead;
    madvise(buf, size, MADV_HUGEPAGE);      /* advice; failure is harmless */
    return buf;
}

void io_buf_free(void *buf, size_t size)
{
    if (buf == NULL)
        return;
    if (size < IO_HUGE_REGION)
        free(buf);
    else
        munmap(buf, (size + 4095) & ~(size_t)4095);
}
