/*
 * io_aio.c - the Linux native AIO backend (libaio: io_submit/io_getevents).
 * Truly asynchronous only on O_DIRECT files; on buffered files io_submit
 * does the copy itself and returns with the request already complete,
 * which is still correct.  Built only when CMake finds libaio.
 *
 * Each request in flight holds one iocb from a preallocated stack of
 * `depth`; no allocation happens per request.
 */
#include "io_int.h"

#include "dkv.h"

#include <errno.h>
#include <libaio.h>
#include <stdlib.h>
#include <time.h>

#define AIO_SUBMIT_RETRY_MAX 1000u

struct aio {
    io_context_t     kctx;
    struct iocb     *iocbs;         /* depth control blocks                */
    struct iocb    **free_iocbs;    /* stack of unused ones                */
    unsigned         free_count;
    struct iocb    **batch;         /* scratch for one io_submit           */
    struct io_event *events;        /* scratch for one io_getevents        */
    struct io_req   *failed_head;   /* refused by the kernel at submit     */
    unsigned         failed_count;
};

static void aio_free(struct aio *a)
{
    free(a->events);
    free(a->batch);
    free(a->free_iocbs);
    free(a->iocbs);
    free(a);
}

static int aio_init(struct io_ctx *ctx, unsigned depth)
{
    struct aio *a = calloc(1, sizeof(*a));
    unsigned i;
    int err;

    if (a == NULL)
        return -ENOMEM;
    a->iocbs = calloc(depth, sizeof(*a->iocbs));
    a->free_iocbs = calloc(depth, sizeof(*a->free_iocbs));
    a->batch = calloc(depth, sizeof(*a->batch));
    a->events = calloc(depth, sizeof(*a->events));
    if (!a->iocbs || !a->free_iocbs || !a->batch || !a->events) {
        aio_free(a);
        io_note_failure(ctx, "libaio", "calloc", ENOMEM);
        return -ENOMEM;
    }
    err = io_setup((int)depth, &a->kctx);
    if (err < 0) {
        aio_free(a);
        io_note_failure(ctx, "libaio", "io_setup", -err);
        return err;
    }
    for (i = 0; i < depth; i++)
        a->free_iocbs[i] = &a->iocbs[i];
    a->free_count = depth;
    ctx->backend = a;
    return 0;
}

static void aio_fini(struct io_ctx *ctx)
{
    struct aio *a = ctx->backend;

    io_destroy(a->kctx);
    aio_free(a);
    ctx->backend = NULL;
}

/* Requests the kernel refused come back from the next reap as failed. */
static void fail_rest(struct aio *a, struct iocb **iocbs, unsigned n, int err)
{
    unsigned i;

    for (i = 0; i < n; i++) {
        struct io_req *req = iocbs[i]->data;
        req->res = -err;
        req->next = a->failed_head;
        a->failed_head = req;
        a->failed_count++;
        a->free_iocbs[a->free_count++] = iocbs[i];
    }
}

static int aio_submit(struct io_ctx *ctx, struct io_req *const *reqs,
                      unsigned n)
{
    struct aio *a = ctx->backend;
    unsigned i, sent = 0, retries = 0;

    for (i = 0; i < n; i++) {
        const struct io_req *req = reqs[i];
        struct iocb *cb = a->free_iocbs[--a->free_count];
        void *buf = (char *)req->buf + req->done;
        long long off = (long long)(req->off + req->done);

        if (req->op == IO_READ)
            io_prep_pread(cb, req->file->fd, buf, io_req_attempt_len(req), off);
        else
            io_prep_pwrite(cb, req->file->fd, buf, io_req_attempt_len(req), off);
        cb->data = reqs[i];
        a->batch[i] = cb;
    }
    while (sent < n) {
        int r = io_submit(a->kctx, (long)(n - sent), a->batch + sent);
        if (r > 0) {
            sent += (unsigned)r;
        } else if ((r == -EAGAIN || r == -EINTR || r == 0) &&
                   retries++ < AIO_SUBMIT_RETRY_MAX) {
            continue;
        } else {
            /* The first of the rest is bad (or the kernel is out of
               resources): report them all as failed attempts. */
            fail_rest(a, a->batch + sent, n - sent, r < 0 ? -r : EAGAIN);
            break;
        }
    }
    return 0;
}

static int aio_reap(struct io_ctx *ctx, struct io_req **done, unsigned min,
                    unsigned max)
{
    struct aio *a = ctx->backend;
    struct timespec zero = { 0, 0 };
    unsigned n = 0;
    int r, i;

    while (n < max && a->failed_head) {
        done[n] = a->failed_head;
        a->failed_head = done[n]->next;
        done[n++]->next = NULL;
        a->failed_count--;
    }
    if (n == max)
        return (int)n;
    min = min > n ? min - n : 0;
    do {
        r = io_getevents(a->kctx, (long)min, (long)(max - n), a->events,
                         min ? NULL : &zero);
    } while (r == -EINTR);
    if (r < 0)
        return r;
    for (i = 0; i < r; i++) {
        struct iocb *cb = a->events[i].obj;
        struct io_req *req = cb->data;
        req->res = (int64_t)(long)a->events[i].res;
        a->free_iocbs[a->free_count++] = cb;
        done[n++] = req;
    }
    return (int)n;
}

static const struct io_ops io_aio_ops = {
    .name   = "libaio",
    .engine = DKV_IO_LIBAIO,
    .init   = aio_init,
    .fini   = aio_fini,
    .submit = aio_submit,
    .reap   = aio_reap,
    .reg    = NULL,
};

const struct io_ops *const io_aio_ops_ptr = &io_aio_ops;
