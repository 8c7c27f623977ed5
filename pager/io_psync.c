/*
 * io_psync.c - the portable backend: pread/pwrite run by worker threads,
 * so that even without kernel asynchronous I/O many requests are in flight
 * (one per worker).  It is the reference the other backends are tested
 * against and the last resort of DKV_IO_AUTO.
 *
 * Workers are started on demand, up to min(depth, PSYNC_THREADS_MAX), and
 * live until the context is destroyed.  One mutex guards both queues; the
 * system calls run outside it.
 */
#include "io_int.h"

#include "dkv.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#define PSYNC_THREADS_MAX 64u

struct psync {
    pthread_mutex_t lock;
    pthread_cond_t  work_cv;        /* queue non-empty, or stop             */
    pthread_cond_t  done_cv;        /* a completion was added               */
    struct io_req  *queue_head, *queue_tail;     /* waiting for a worker   */
    struct io_req  *done_head, *done_tail;       /* finished attempts      */
    unsigned        done_count;
    unsigned        queue_count;    /* requests in the queue                */
    unsigned        idle;           /* workers waiting on work_cv           */
    unsigned        thread_count, thread_max;
    int             stop;
    pthread_t      *threads;
};

static void list_push(struct io_req **head, struct io_req **tail,
                      struct io_req *req)
{
    req->next = NULL;
    if (*tail)
        (*tail)->next = req;
    else
        *head = req;
    *tail = req;
}

static struct io_req *list_pop(struct io_req **head, struct io_req **tail)
{
    struct io_req *req = *head;

    if (req) {
        *head = req->next;
        if (*head == NULL)
            *tail = NULL;
        req->next = NULL;
    }
    return req;
}

/* One attempt, synchronously: bytes moved or -errno. */
static int64_t attempt(const struct io_req *req)
{
    char *buf = (char *)req->buf + req->done;
    off_t off = (off_t)(req->off + req->done);
    size_t len = io_req_attempt_len(req);
    ssize_t n;

    if (req->op == IO_READ)
        n = pread(req->file->fd, buf, len, off);
    else
        n = pwrite(req->file->fd, buf, len, off);
    return n < 0 ? -(int64_t)errno : (int64_t)n;
}

static void *worker(void *arg)
{
    struct psync *ps = arg;
    struct io_req *req;

    pthread_mutex_lock(&ps->lock);
    for (;;) {
        while (!ps->stop && ps->queue_head == NULL) {
            ps->idle++;
            pthread_cond_wait(&ps->work_cv, &ps->lock);
            ps->idle--;
        }
        if (ps->stop)
            break;
        req = list_pop(&ps->queue_head, &ps->queue_tail);
        ps->queue_count--;
        pthread_mutex_unlock(&ps->lock);
        req->res = attempt(req);
        pthread_mutex_lock(&ps->lock);
        list_push(&ps->done_head, &ps->done_tail, req);
        ps->done_count++;
        pthread_cond_signal(&ps->done_cv);
    }
    pthread_mutex_unlock(&ps->lock);
    return NULL;
}

static int psync_init(struct io_ctx *ctx, unsigned depth)
{
    struct psync *ps = calloc(1, sizeof(*ps));

    if (ps == NULL)
        return -ENOMEM;
    ps->thread_max = depth < PSYNC_THREADS_MAX ? depth : PSYNC_THREADS_MAX;
    ps->threads = calloc(ps->thread_max, sizeof(*ps->threads));
    if (ps->threads == NULL) {
        free(ps);
        io_note_failure(ctx, "psync", "calloc", ENOMEM);
        return -ENOMEM;
    }
    pthread_mutex_init(&ps->lock, NULL);
    pthread_cond_init(&ps->work_cv, NULL);
    pthread_cond_init(&ps->done_cv, NULL);
    ctx->backend = ps;
    return 0;
}

static void psync_fini(struct io_ctx *ctx)
{
    struct psync *ps = ctx->backend;
    unsigned i;

    pthread_mutex_lock(&ps->lock);
    ps->stop = 1;
    pthread_cond_broadcast(&ps->work_cv);
    pthread_mutex_unlock(&ps->lock);
    for (i = 0; i < ps->thread_count; i++)
        pthread_join(ps->threads[i], NULL);
    pthread_cond_destroy(&ps->done_cv);
    pthread_cond_destroy(&ps->work_cv);
    pthread_mutex_destroy(&ps->lock);
    free(ps->threads);
    free(ps);
    ctx->backend = NULL;
}

/* Starts workers until every queued request has an idle worker waiting
   for it, or the limit is reached.  Called with ps->lock held.  Returns 0,
   or -errno when not even one worker exists. */
static int grow_workers(struct psync *ps, unsigned queued)
{
    unsigned spare = ps->idle;
    int err = 0;

    while (queued > spare && ps->thread_count < ps->thread_max) {
        err = pthread_create(&ps->threads[ps->thread_count], NULL, worker, ps);
        if (err != 0)
            break;
        ps->thread_count++;
        spare++;
    }
    return ps->thread_count == 0 ? -err : 0;
}

static int psync_submit(struct io_ctx *ctx, struct io_req *const *reqs,
                        unsigned n)
{
    struct psync *ps = ctx->backend;
    unsigned i;
    int err;

    pthread_mutex_lock(&ps->lock);
    err = grow_workers(ps, ps->queue_count + n);
    if (err == 0) {
        for (i = 0; i < n; i++)
            list_push(&ps->queue_head, &ps->queue_tail, reqs[i]);
        ps->queue_count += n;
        if (n == 1)
            pthread_cond_signal(&ps->work_cv);
        else
            pthread_cond_broadcast(&ps->work_cv);
    }
    pthread_mutex_unlock(&ps->lock);
    return err;
}

static int psync_reap(struct io_ctx *ctx, struct io_req **done, unsigned min,
                      unsigned max)
{
    struct psync *ps = ctx->backend;
    unsigned n = 0;

    pthread_mutex_lock(&ps->lock);
    while (ps->done_count < min)
        pthread_cond_wait(&ps->done_cv, &ps->lock);
    while (n < max && ps->done_head) {
        done[n++] = list_pop(&ps->done_head, &ps->done_tail);
        ps->done_count--;
    }
    pthread_mutex_unlock(&ps->lock);
    return (int)n;
}

const struct io_ops io_psync_ops = {
    .name   = "psync",
    .engine = DKV_IO_PSYNC,
    .init   = psync_init,
    .fini   = psync_fini,
    .submit = psync_submit,
    .reap   = psync_reap,
    .reg    = NULL,
};
