/*
 * io.h - aligned, batched, asynchronous file I/O for the pool, the page
 * cleaner and the log.  One interface, three backends (io_uring, libaio,
 * psync), chosen at run time.  Rules IO1..IO8 and the design are in
 * pager/README.md ("The I/O layer").
 *
 * A context (struct io_ctx) is a queue of at most `depth` requests in
 * flight.  It belongs to one thread at a time: the caller serialises
 * io_ctx_submit/io_ctx_reap on one context (the pool keeps a context per thread
 * that does I/O).  Files (struct io_file) are shared by all contexts.
 */
#ifndef DKV_PAGER_IO_H
#define DKV_PAGER_IO_H

#include <stddef.h>
#include <stdint.h>

struct io_ctx;
struct io_file;

/* ---- requests -------------------------------------------------------- */

enum io_op { IO_READ = 1, IO_WRITE = 2 };

/*
 * One read or write.  The caller fills op, file, buf, len, off and owner;
 * the I/O layer owns the request (and its buffer) from io_ctx_submit until the
 * request comes back from io_ctx_reap, and then res says what happened:
 * len on success, fewer bytes only for a read that reached end of file,
 * or a negative DKV_ERR_* code (err holds the errno behind it).
 */
struct io_req {
    int             op;       /* enum io_op                                 */
    struct io_file *file;
    void           *buf;      /* aligned to io_file_mem_align(file)         */
    size_t          len;      /* multiple of io_file_off_align(file)        */
    uint64_t        off;      /* multiple of io_file_off_align(file)        */
    void           *owner;    /* the caller's cookie, untouched             */
    int64_t         res;      /* out: bytes, or a negative DKV_ERR_*        */
    int             err;      /* out: errno of a failure, else 0            */
    /* Private to the I/O layer. */
    size_t          done;     /* bytes moved so far (short transfers)       */
    size_t          attempt;  /* bytes asked of the backend this attempt    */
    unsigned        retries;  /* EINTR/EAGAIN resubmissions so far          */
    int             rest_err; /* the I/O hook: errno the rest of a short
                                 transfer fails with, or 0                  */
    struct io_req  *next;     /* the layer's own queues                     */
};

/* ---- files ----------------------------------------------------------- */

enum io_open_flags {
    IO_OPEN_CREATE   = 1 << 0,   /* create when missing                     */
    IO_OPEN_DIRECT   = 1 << 1,   /* ask for O_DIRECT (falls back, IO4)      */
    IO_OPEN_RDONLY   = 1 << 2,
    IO_OPEN_DSYNC    = 1 << 3,   /* O_DSYNC: every write durable on return  */
    IO_OPEN_NEED_DIRECT = 1 << 4 /* with IO_OPEN_DIRECT: refuse to fall back */
};

/* Opens path.  With IO_OPEN_DIRECT, a file system that refuses O_DIRECT
   yields a buffered file (io_file_direct() == 0) unless NEED_DIRECT. */
int  io_file_open(const char *path, int flags, struct io_file **filep);
/* Closes the file; no request on it may be in flight.  0 or DKV_ERR_IO. */
int  io_file_close(struct io_file *file);

int      io_file_fd(const struct io_file *file);
int      io_file_direct(const struct io_file *file);      /* 1: O_DIRECT   */
uint32_t io_file_mem_align(const struct io_file *file);   /* buffer bytes  */
uint32_t io_file_off_align(const struct io_file *file);   /* offset, len   */
/* Current size in bytes, or a negative DKV_ERR_*. */
int64_t  io_file_size(struct io_file *file);
/* Reserves [off, off+len) on disk (fallocate; zero-fill where the file
   system lacks it).  Never shrinks.  DKV_ERR_NOSPACE when the disk is full,
   and then the file size is unchanged. */
int      io_file_allocate(struct io_file *file, uint64_t off, uint64_t len);
/* Writes zeros over [off, off+len) (aligned), so later writes there need
   no metadata update (a log file's preallocation). */
int      io_file_fill_zero(struct io_file *file, uint64_t off, uint64_t len);
/* fdatasync.  A failure is returned once and must not be retried (IO7). */
int      io_file_sync(struct io_file *file);

/* ---- contexts -------------------------------------------------------- */

#define IO_DEPTH_MAX 4096

struct io_ctx_config {
    int         engine;        /* enum dkv_io_engine                        */
    unsigned    depth;         /* requests in flight at most; 1..IO_DEPTH_MAX */
    /* Backends whose setup is made to fail, as a bit per enum dkv_io_engine
       (1u << DKV_IO_URING ...), to test the fallback.  The environment
       variable DKV_IO_DISABLE ("io_uring,libaio") adds to it. */
    unsigned    fail_setup_mask;
    /* Requests handed to the kernel per system call: a larger batch is
       split.  On a virtual disk the device starts only when the guest
       rings its doorbell after the last request of a call, so small
       chunks keep it busy; 0 = IO_SUBMIT_CHUNK_DEFAULT. */
    unsigned    submit_chunk;
};

#define IO_SUBMIT_CHUNK_DEFAULT 4u

/* Creates a context.  DKV_IO_AUTO tries io_uring, then libaio, then psync,
   recording why each refused one failed (io_ctx_fallback_reason).  An
   explicit engine that cannot be had is DKV_ERR_UNSUPPORTED. */
int  io_ctx_create(const struct io_ctx_config *cfg, struct io_ctx **ctxp);
/* Waits for every request in flight, then frees the context. */
void io_ctx_destroy(struct io_ctx *ctx);

const char *io_ctx_engine_name(const struct io_ctx *ctx);   /* "io_uring" */
int         io_ctx_engine(const struct io_ctx *ctx);        /* DKV_IO_*   */
unsigned    io_ctx_depth(const struct io_ctx *ctx);
unsigned    io_ctx_inflight(const struct io_ctx *ctx);
/* Why AUTO passed over the faster backends; "" when it did not. */
const char *io_ctx_fallback_reason(const struct io_ctx *ctx);

/* Optional speed-ups for io_uring (no-ops elsewhere): register files, and
   one memory region (a pool's frames) whose buffers need no pinning per
   I/O.  Call before the first submit; failure to register only disables
   the speed-up, it is never an error. */
void io_ctx_register(struct io_ctx *ctx, struct io_file *const *files,
                     unsigned file_count, void *region, size_t region_size);

/* ---- submitting and reaping ------------------------------------------ */

/* (Named io_ctx_*, not io_ctx_submit/io_ctx_reap: libaio exports io_ctx_submit.) */

/*
 * Submits n requests as one batch (one system call where the backend can).
 * Every request is checked first (IO3): a misaligned buffer, offset or
 * length, a zero length, or a batch that would exceed the depth refuses
 * the whole batch with DKV_ERR_INVALID and nothing is submitted.  Returns
 * 0 when all n are in flight.  Does not wait for the device.
 */
int  io_ctx_submit(struct io_ctx *ctx, struct io_req *const *reqs, unsigned n);

/*
 * Waits until at least min requests (at most the number in flight) are
 * complete and returns up to max of them in done[], in completion order,
 * which is not submission order.  min = 0 polls.  Short transfers and
 * EINTR/EAGAIN are resubmitted inside and never returned (IO5).  Returns
 * the number of requests stored, or a negative DKV_ERR_* if the backend
 * itself failed (then the requests in flight are lost to the caller and
 * the context must be destroyed).
 */
int  io_ctx_reap(struct io_ctx *ctx, struct io_req **done, unsigned min,
             unsigned max);

/* Submits n requests and waits for all of them.  Returns 0 when every one
   moved its full length, else the first request's error (DKV_ERR_IO for an
   unexpected end of file).  For headers and tests, not for hot paths. */
int  io_run(struct io_ctx *ctx, struct io_req *const *reqs, unsigned n);

/* ---- buffers --------------------------------------------------------- */

/* Allocates size bytes aligned to align (a power of two >= the page size
   for pool regions, >= io_file_mem_align for any I/O buffer).  Large
   regions come from mmap with huge pages advised.  NULL when out of memory. */
void *io_buf_alloc(size_t size, size_t align);
void  io_buf_free(void *buf, size_t size);

/* ---- test and debug -------------------------------------------------- */

/*
 * Fault injection (IO8): the nth request submitted from now on (1 = the
 * next one) fails with errno err, or, with err == 0, moves only half its
 * length on its first attempt (a short transfer).  persistent: every
 * request from the nth on fails.  Cleared with nth = 0.
 */
void io_ctx_inject_fault(struct io_ctx *ctx, unsigned long nth, int err,
                         int persistent);

/*
 * The process-wide I/O hook (IO8; tests only): when one is set, every
 * read and write request, sync, allocation and zero fill of every file
 * is shown to it before it happens, and its outcome after.  Unset (the
 * default) it costs one predictable branch per request.  Set it only
 * while no I/O is in flight: it is read without a lock.
 */
enum io_hook_op {
    IO_HOOK_READ = IO_READ,        /* a request's first attempt            */
    IO_HOOK_WRITE = IO_WRITE,
    IO_HOOK_SYNC,                  /* io_file_sync                         */
    IO_HOOK_ALLOCATE,              /* io_file_allocate: off, len            */
    IO_HOOK_ZERO                   /* io_file_fill_zero: off, len           */
};

/* What before() may answer besides 0 (go on) or an errno (fail it with
   that errno, nothing moved). */
#define IO_HOOK_SHORT  (-1)        /* READ/WRITE: move half, then the rest  */
#define IO_HOOK_SPARSE (-2)        /* ZERO: extend the file with a hole
                                      instead of writing zeros (a fast
                                      test device)                          */

struct io_hook_event {
    int                   op;      /* enum io_hook_op                       */
    struct io_file       *file;
    const char           *name;    /* the file's base name ("redo.log")     */
    uint64_t              off, len;
    const void           *buf;     /* WRITE: the bytes; else NULL           */
    const struct io_req  *req;     /* READ/WRITE: the same in both calls    */
};

struct io_hook {
    /* Before the operation: 0, an errno, or IO_HOOK_*.  For a short
       transfer, *rest_err (when set to an errno) fails what is left. */
    int  (*before)(void *arg, const struct io_hook_event *ev, int *rest_err);
    /* After it (READ/WRITE: when the request finishes): rc is 0 or its
       DKV_ERR_*.  May be NULL. */
    void (*done)(void *arg, const struct io_hook_event *ev, int rc);
    void  *arg;
};

/* Sets the hook (copied), or removes it with NULL. */
void io_hook_set(const struct io_hook *hook);

/* "auto", "io_uring", "libaio", "psync", or NULL for another value. */
const char *io_engine_name(int engine);
/* 1 when this build contains the backend for engine (DKV_IO_AUTO: 1). */
int  io_engine_built(int engine);

/* Converts an errno to a DKV_ERR_* code (IO6). */
int  io_errno_rc(int err);

#endif /* DKV_PAGER_IO_H */
