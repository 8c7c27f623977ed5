/*
 * io_int.h - what pager/io.c shares with the backends io_uring.c, io_aio.c
 * and io_psync.c.  Nothing outside pager/ includes it.  The rules cited as
 * IOn are in pager/README.md.
 */
#ifndef DKV_PAGER_IO_INT_H
#define DKV_PAGER_IO_INT_H

#include "io.h"

struct io_file {
    int      fd;
    int      direct;          /* 1 when opened with O_DIRECT                */
    uint32_t mem_align;       /* buffer alignment, bytes (power of two)     */
    uint32_t off_align;       /* offset and length alignment, bytes         */
    char     name[32];        /* the path's last part, for the I/O hook     */
};

/*
 * The method table of one backend; only pager/io.c calls through it (IO1).
 * Every member that takes requests sees only requests already checked by
 * io.c: aligned, and at most `depth` in flight.  A backend moves, for each
 * request, the bytes [done, done + attempt) of the request, i.e. buffer
 * buf + done at offset off + done, and reports the raw outcome of that one
 * attempt in res: bytes moved, or -errno.  Completion order is free.
 */
struct io_ops {
    const char *name;
    int         engine;       /* enum dkv_io_engine                         */
    /* Sets up ctx->backend for `depth` requests in flight.  Returns 0 or
       -errno, with a reason written to ctx->fallback_reason's tail. */
    int  (*init)(struct io_ctx *ctx, unsigned depth);
    /* Frees the backend; nothing is in flight. */
    void (*fini)(struct io_ctx *ctx);
    /* Starts n attempts.  May block only to hand them to the kernel.
       Returns 0, or -errno when the backend failed (nothing was started). */
    int  (*submit)(struct io_ctx *ctx, struct io_req *const *reqs, unsigned n);
    /* Waits for at least min attempts (min = 0 polls), stores up to max in
       done[], and returns how many, or -errno when the backend failed. */
    int  (*reap)(struct io_ctx *ctx, struct io_req **done, unsigned min,
                 unsigned max);
    /* Optional (may be NULL): see io_ctx_register(). */
    void (*reg)(struct io_ctx *ctx, struct io_file *const *files,
                unsigned file_count, void *region, size_t region_size);
};

/* The backends this build contains; a missing one is a NULL pointer. */
extern const struct io_ops *const io_uring_ops_ptr;
extern const struct io_ops *const io_aio_ops_ptr;
extern const struct io_ops io_psync_ops;

struct io_ctx {
    const struct io_ops *ops;
    void         *backend;            /* the backend's own state             */
    int           engine;             /* enum dkv_io_engine in use           */
    unsigned      depth;
    unsigned      submit_chunk;       /* requests per backend submit call    */
    unsigned      inflight;           /* taken by io_ctx_submit, not yet reaped  */
    unsigned      backend_inflight;   /* attempts the backend holds          */
    char          fallback_reason[256];
    /* Completions made up by fault injection, returned before the backend's. */
    struct io_req *synth_head, *synth_tail;
    /* Scratch arrays of `depth` entries for resubmission and reaping. */
    struct io_req **resubmit;
    struct io_req **raw;
    /* Fault injection (IO8): requests counted since it was armed. */
    unsigned long fault_nth, fault_seen;
    int           fault_err, fault_persistent;
};

/* The length of the current attempt of req (set by io.c). */
static inline size_t io_req_attempt_len(const struct io_req *req)
{
    return req->attempt;
}

/* Appends "name: what: strerror(err)" to ctx->fallback_reason. */
void io_note_failure(struct io_ctx *ctx, const char *name, const char *what,
                     int err);

#endif /* DKV_PAGER_IO_INT_H */
