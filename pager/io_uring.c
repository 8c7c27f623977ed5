/*
 * io_uring.c - the io_uring backend (liburing).  A batch of requests is one
 * io_uring_enter; completions are read from the shared ring without a
 * system call when they are already there.  Files and one memory region
 * (the pool's frames) may be registered, so that an I/O skips the file
 * reference count and the page pinning of its buffer.  Built only when
 * CMake finds liburing.
 *
 * Setup fails cleanly, with the reason recorded, where io_uring is blocked
 * (seccomp: EPERM or ENOSYS; kernel.io_uring_disabled: EPERM; an old kernel
 * with a low RLIMIT_MEMLOCK: ENOMEM); DKV_IO_AUTO then falls back.
 */
#include "io_int.h"

#include "dkv.h"

#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#define URING_BUF_CHUNK      (1ull << 30)   /* the kernel's limit per iovec */
#define URING_FILES_MAX      16u
#define URING_SUBMIT_RETRY   1000u

struct uring {
    struct io_uring       ring;
    struct io_uring_cqe **cqes;             /* scratch of depth entries     */
    int                   fds[URING_FILES_MAX];   /* registered, by index   */
    unsigned              file_count;
    char                 *region;           /* registered buffers, or NULL  */
    size_t                region_size;
    int                   broken;           /* io_uring_submit failed       */
};

static int uring_init(struct io_ctx *ctx, unsigned depth)
{
    struct uring *u = calloc(1, sizeof(*u));
    struct io_uring_params p;
    int err;

    if (u == NULL)
        return -ENOMEM;
    u->cqes = calloc(depth, sizeof(*u->cqes));
    if (u->cqes == NULL) {
        free(u);
        return -ENOMEM;
    }
    /* COOP_TASKRUN: completions are run when we enter the kernel anyway,
       not by interrupting the task (5.19+); older kernels refuse it.
       TASKRUN_FLAG: the ring says when completions wait for that, so a
       poll (uring_reap with min 0) can enter the kernel to have them. */
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
    err = io_uring_queue_init_params(depth, &u->ring, &p);
    if (err == -EINVAL) {
        memset(&p, 0, sizeof(p));
        err = io_uring_queue_init_params(depth, &u->ring, &p);
    }
    if (err < 0) {
        io_note_failure(ctx, "io_uring", "io_uring_queue_init", -err);
        free(u->cqes);
        free(u);
        return err;
    }
    ctx->backend = u;
    return 0;
}

static void uring_fini(struct io_ctx *ctx)
{
    struct uring *u = ctx->backend;

    io_uring_queue_exit(&u->ring);
    free(u->cqes);
    free(u);
    ctx->backend = NULL;
}

static void uring_reg(struct io_ctx *ctx, struct io_file *const *files,
                      unsigned file_count, void *region, size_t region_size)
{
    struct uring *u = ctx->backend;
    struct iovec iov[64];
    unsigned i, n = 0;

    if (file_count > 0 && file_count <= URING_FILES_MAX && u->file_count == 0) {
        for (i = 0; i < file_count; i++)
            u->fds[i] = files[i]->fd;
        if (io_uring_register_files(&u->ring, u->fds, file_count) == 0)
            u->file_count = file_count;
    }
    if (region == NULL || u->region != NULL)
        return;
    for (size_t off = 0; off < region_size && n < 64; off += URING_BUF_CHUNK) {
        size_t left = region_size - off;
        iov[n].iov_base = (char *)region + off;
        iov[n++].iov_len = left < URING_BUF_CHUNK ? left : URING_BUF_CHUNK;
    }
    /* Registering pins the memory: past RLIMIT_MEMLOCK it fails, and plain
       reads and writes go on working. */
    if (n * URING_BUF_CHUNK >= region_size &&
        io_uring_register_buffers(&u->ring, iov, n) == 0) {
        u->region = region;
        u->region_size = region_size;
    }
}

/* The registered index of fd, or -1. */
static int file_index(const struct uring *u, int fd)
{
    unsigned i;

    for (i = 0; i < u->file_count; i++)
        if (u->fds[i] == fd)
            return (int)i;
    return -1;
}

/* The registered buffer holding [buf, buf+len) whole, or -1. */
static int buf_index(const struct uring *u, const char *buf, size_t len)
{
    size_t off;

    if (u->region == NULL || buf < u->region ||
        buf + len > u->region + u->region_size)
        return -1;
    off = (size_t)(buf - u->region);
    if (off / URING_BUF_CHUNK != (off + len - 1) / URING_BUF_CHUNK)
        return -1;
    return (int)(off / URING_BUF_CHUNK);
}

static void prep(struct uring *u, struct io_uring_sqe *sqe, struct io_req *req)
{
    char *buf = (char *)req->buf + req->done;
    size_t len = io_req_attempt_len(req);
    uint64_t off = req->off + req->done;
    int fi = file_index(u, req->file->fd);
    int bi = buf_index(u, buf, len);
    int fd = fi >= 0 ? fi : req->file->fd;

    if (req->op == IO_READ && bi >= 0)
        io_uring_prep_read_fixed(sqe, fd, buf, (unsigned)len, off, bi);
    else if (req->op == IO_READ)
        io_uring_prep_read(sqe, fd, buf, (unsigned)len, off);
    else if (bi >= 0)
        io_uring_prep_write_fixed(sqe, fd, buf, (unsigned)len, off, bi);
    else
        io_uring_prep_write(sqe, fd, buf, (unsigned)len, off);
    if (fi >= 0)
        sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data(sqe, req);
}

static int uring_submit(struct io_ctx *ctx, struct io_req *const *reqs,
                        unsigned n)
{
    struct uring *u = ctx->backend;
    unsigned i, retries = 0, sent = 0;
    int r = 0;

    if (u->broken)
        return -EIO;
    for (i = 0; i < n; i++) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
        if (sqe == NULL) {
            /* Cannot happen while at most depth are in flight; flush the
               ring and try once more rather than lose the request. */
            r = io_uring_submit(&u->ring);
            sent += r > 0 ? (unsigned)r : 0;
            sqe = io_uring_get_sqe(&u->ring);
            if (sqe == NULL)
                return -EBUSY;
        }
        prep(u, sqe, reqs[i]);
    }
    /* io_uring_submit may take fewer than were queued: go on until the
       kernel has all of them, or fails. */
    while (sent < n) {
        r = io_uring_submit(&u->ring);
        if (r > 0) {
            sent += (unsigned)r;
            continue;
        }
        if ((r == 0 || r == -EINTR || r == -EAGAIN || r == -EBUSY) &&
            retries++ < URING_SUBMIT_RETRY)
            continue;
        if (r == 0)
            r = -EAGAIN;
        break;
    }
    if (r < 0) {
        /* The SQEs may still be in the ring; this context cannot be trusted
           any more.  io.c reports the requests as failed. */
        u->broken = 1;
        return r;
    }
    return 0;
}

static int uring_reap(struct io_ctx *ctx, struct io_req **done, unsigned min,
                      unsigned max)
{
    struct uring *u = ctx->backend;
    struct io_uring_cqe *cqe;
    unsigned i, n;
    int r;

    if (u->broken)
        return -EIO;
    if (min > 0) {
        do {
            r = io_uring_wait_cqe_nr(&u->ring, &cqe, min);
        } while (r == -EINTR || r == -EAGAIN);
        if (r < 0)
            return r;
    } else if (io_uring_cq_ready(&u->ring) == 0 &&
               (IO_URING_READ_ONCE(*u->ring.sq.kflags) & IORING_SQ_TASKRUN)) {
        /* Completions that the device finished but the kernel has not
           posted yet (COOP_TASKRUN): one enter posts them.  Its failure
           only means the poll finds nothing now. */
        io_uring_get_events(&u->ring);
    }
    n = io_uring_peek_batch_cqe(&u->ring, u->cqes, max);
    for (i = 0; i < n; i++) {
        struct io_req *req = io_uring_cqe_get_data(u->cqes[i]);
        req->res = u->cqes[i]->res;
        done[i] = req;
    }
    io_uring_cq_advance(&u->ring, n);
    return (int)n;
}

static const struct io_ops io_uring_ops = {
    .name   = "io_uring",
    .engine = DKV_IO_URING,
    .init   = uring_init,
    .fini   = uring_fini,
    .submit = uring_submit,
    .reap   = uring_reap,
    .reg    = uring_reg,
};

const struct io_ops *const io_uring_ops_ptr = &io_uring_ops;
