/*
 * test_io.c - the I/O layer (pager/io.c) and its three backends, through
 * pager/io.h.
 *
 * Each backend (io_uring, libaio, psync) runs the same group.  Patterned
 * blocks, whose bytes depend on their offset and the run's seed, are
 * written and read back on an O_DIRECT and on a buffered file, one request
 * at a time and with 64 in flight (also with the file and buffers given to
 * io_ctx_register), in a shuffled order so that completions can come back
 * out of order; every completion is matched to its request by the owner
 * cookie, never by its position.  The group then checks that the requests
 * the layer must refuse (misaligned buffer, offset or length, zero length,
 * a batch deeper than the context) are refused whole with nothing left in
 * flight, that a read past end of file is short, that polling (min = 0)
 * alone brings requests back, that io_run handles more requests than the
 * depth and never returns with requests in flight, that io_ctx_destroy
 * waits for them, and that contexts in four threads share one file.  The
 * fault hook (io_ctx_inject_fault) is driven: EIO and ENOSPC are reported
 * with their errno, EINTR, EAGAIN and short transfers are retried out of
 * sight, persistent faults fail every request from the nth on; a real
 * kernel error (EFBIG past RLIMIT_FSIZE, our stand-in for a full disk)
 * becomes DKV_ERR_NOSPACE.  A backend that is not built, or that this
 * system refuses, is skipped with the reason printed (cmocka skip(); the
 * run exits 77 when it asked for that backend alone).  The "common" group
 * covers what no backend owns: the AUTO fallback chain and its reasons,
 * io_ctx_create's argument checks, files on /dev/shm, io_file_allocate
 * (also on a "full disk"), io_file_open of a missing file, io_buf_alloc.
 *
 * Usage: test_io [io_uring|libaio|psync|common]   (no argument: all groups)
 * Files live in a fresh mkdtemp directory under /tmp, removed at the end.
 * The seed is printed at start; DKV_TEST_SEED=N replays a run.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "dkv.h"
#include "pager/io.h"
#include "test_util.h"

#define BLOCKS     256u     /* blocks per round trip (1 MiB at 4 KiB)     */
#define SHM_BLOCKS 16u
#define WIDE_DEPTH 64u
#define ERR_DEPTH  8u

struct io_case {
    int      engine;
    int      direct;
    unsigned depth;
    int      reg;           /* io_ctx_register the file and the buffers */
};

/* One request of a round trip; its owner cookie points back here. */
struct slot {
    struct io_req req;
    unsigned      block;
    int           seen;
};

static uint64_t        g_seed;
static struct test_dir g_dir;

static const int all_engines[] = { DKV_IO_URING, DKV_IO_LIBAIO, DKV_IO_PSYNC };

/* ---- fixtures ------------------------------------------------------------ */

static int group_setup(void **state)
{
    (void)state;
    return test_dir_make(&g_dir, "/tmp");
}

static int group_teardown(void **state)
{
    (void)state;
    test_dir_remove(&g_dir);
    return 0;
}

/* Why AUTO passed over the backends up to and including engine. */
static const char *refusal_reason(int engine)
{
    static char why[256];
    struct io_ctx_config cfg = { .engine = DKV_IO_AUTO, .depth = 1 };
    struct io_ctx *ctx = NULL;
    int e;

    for (e = DKV_IO_URING; e < engine; e++)
        cfg.fail_setup_mask |= 1u << e;
    snprintf(why, sizeof(why), "no reason recorded");
    if (io_ctx_create(&cfg, &ctx) == DKV_OK) {
        snprintf(why, sizeof(why), "%s", io_ctx_fallback_reason(ctx));
        io_ctx_destroy(ctx);
    }
    return why;
}

/* 1 when a context of this engine can be had here; else prints why not. */
static int backend_usable(int engine, int quiet)
{
    struct io_ctx_config cfg = { .engine = engine, .depth = 1 };
    struct io_ctx *ctx = NULL;
    int rc;

    if (!dkv_io_engine_built(engine)) {
        if (!quiet)
            print_message("%s: not in this build\n", io_engine_name(engine));
        return 0;
    }
    rc = io_ctx_create(&cfg, &ctx);
    if (rc == DKV_OK) {
        io_ctx_destroy(ctx);
        return 1;
    }
    if (!quiet)
        print_message("%s: refused by this system: %s (%s)\n",
                      io_engine_name(engine), dkv_strerror(rc),
                      refusal_reason(engine));
    return 0;
}

/* A context of exactly this engine, or the test is skipped. */
static struct io_ctx *ctx_or_skip(int engine, unsigned depth)
{
    struct io_ctx_config cfg = { .engine = engine, .depth = depth };
    struct io_ctx *ctx = NULL;

    if (!backend_usable(engine, 0)) {
        print_message("%s: skipped\n", io_engine_name(engine));
        skip();
    }
    assert_rc(io_ctx_create(&cfg, &ctx), DKV_OK);
    assert_int_equal(io_ctx_engine(ctx), engine);
    assert_string_equal(io_ctx_engine_name(ctx), io_engine_name(engine));
    assert_int_equal(io_ctx_depth(ctx), depth);
    assert_int_equal(io_ctx_inflight(ctx), 0);
    return ctx;
}

static int power_of_two(uint32_t v)
{
    return v != 0 && (v & (v - 1)) == 0;
}

/* A fresh file `name` in dir.  A direct file that the file system will not
   open with O_DIRECT skips the test (after freeing ctx). */
static struct io_file *file_or_skip(struct io_ctx *ctx, const struct test_dir *dir,
                                    const char *name, int direct)
{
    struct io_file *f = NULL;
    char path[256];

    test_dir_file(dir, name, path, sizeof(path));
    unlink(path);
    assert_rc(io_file_open(path, IO_OPEN_CREATE | (direct ? IO_OPEN_DIRECT : 0),
                           &f), DKV_OK);
    assert_true(io_file_fd(f) >= 0);
    assert_true(power_of_two(io_file_mem_align(f)));
    assert_true(power_of_two(io_file_off_align(f)));
    if (direct && !io_file_direct(f)) {
        io_file_close(f);
        io_ctx_destroy(ctx);
        print_message("%s: the file system refuses O_DIRECT, skipped\n", dir->path);
        skip();
    }
    if (!direct)
        assert_int_equal(io_file_direct(f), 0);
    return f;
}

/* The block size for a file: 4 KiB, or its alignment when larger. */
static size_t block_size(const struct io_file *f)
{
    size_t bs = 4096;

    if (io_file_off_align(f) > bs)
        bs = io_file_off_align(f);
    if (io_file_mem_align(f) > bs)
        bs = io_file_mem_align(f);
    return bs;
}

static struct io_req make_req(int op, struct io_file *f, void *buf, size_t len,
                              uint64_t off)
{
    struct io_req req;

    memset(&req, 0, sizeof(req));
    req.op = op;
    req.file = f;
    req.buf = buf;
    req.len = len;
    req.off = off;
    req.owner = &req;       /* replaced by callers that need a cookie */
    return req;
}

/* Submits one request and waits for it. */
static void submit_one(struct io_ctx *ctx, struct io_req *req)
{
    struct io_req *reqs[1] = { req };
    struct io_req *done[1] = { NULL };

    req->owner = req;
    assert_rc(io_ctx_submit(ctx, reqs, 1), DKV_OK);
    assert_int_equal(io_ctx_inflight(ctx), 1);
    assert_int_equal(io_ctx_reap(ctx, done, 1, 1), 1);
    assert_ptr_equal(done[0], req);
    assert_ptr_equal(done[0]->owner, req);
    assert_int_equal(io_ctx_inflight(ctx), 0);
}

/* ---- round trips ----------------------------------------------------------- */

static uint64_t block_key(uint64_t salt, uint64_t off)
{
    return g_seed ^ salt ^ (off * 0xD6E8FEB86659FD93ull);
}

static void shuffle(unsigned *v, unsigned n, uint64_t *rng)
{
    unsigned i, j, t;

    for (i = 0; i < n; i++)
        v[i] = i;
    for (i = n; i > 1; i--) {
        j = (unsigned)(test_splitmix64(rng) % i);
        t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
}

static void prepare_slots(struct slot *slots, const unsigned *order, unsigned n,
                          int op, struct io_file *f, unsigned char *data, size_t bs)
{
    unsigned i;

    for (i = 0; i < n; i++) {
        unsigned b = order[i];
        slots[i].req = make_req(op, f, data + (size_t)b * bs, bs, (uint64_t)b * bs);
        slots[i].req.owner = &slots[i];
        slots[i].block = b;
        slots[i].seen = 0;
    }
}

/* A completion must be one of ours, seen once, and complete. */
static void check_completion(struct io_req *req, struct slot *slots, unsigned n)
{
    struct slot *s = req->owner;

    assert_non_null(s);
    assert_true(s >= slots && s < slots + n);
    assert_ptr_equal(&s->req, req);
    assert_int_equal(s->seen, 0);
    s->seen = 1;
    assert_int_equal(req->err, 0);
    assert_rc(req->res, (int64_t)req->len);
}

/* Runs the n slots keeping up to depth in flight, refilling as they come
   back; returns how many came back out of submission order. */
static unsigned run_window(struct io_ctx *ctx, struct slot *slots, unsigned n,
                           unsigned depth)
{
    struct io_req *batch[WIDE_DEPTH], *done[WIDE_DEPTH];
    unsigned next = 0, back = 0, peak = 0, disorder = 0, i;

    while (back < n) {
        unsigned k = 0, before = io_ctx_inflight(ctx);
        int r;

        while (before + k < depth && next < n)
            batch[k++] = &slots[next++].req;
        if (k > 0) {
            assert_rc(io_ctx_submit(ctx, batch, k), DKV_OK);
            assert_int_equal(io_ctx_inflight(ctx), before + k);
        }
        if (io_ctx_inflight(ctx) > peak)
            peak = io_ctx_inflight(ctx);
        r = io_ctx_reap(ctx, done, 1, WIDE_DEPTH);
        assert_in_range(r, 1, depth);
        for (i = 0; i < (unsigned)r; i++) {
            check_completion(done[i], slots, n);
            disorder += ((struct slot *)done[i]->owner - slots) != (long)(back + i);
        }
        back += (unsigned)r;
    }
    assert_int_equal(io_ctx_inflight(ctx), 0);
    assert_int_equal(peak, n < depth ? n : depth);
    return disorder;
}

/* Writes `blocks` patterned blocks in a shuffled order, reads them back in
   another, and compares. */
static void roundtrip(struct io_ctx *ctx, struct io_file *f, unsigned depth,
                      unsigned blocks, uint64_t salt, int reg)
{
    size_t bs = block_size(f), bad;
    unsigned char *data = io_buf_alloc(blocks * bs, bs);
    struct slot *slots = calloc(blocks, sizeof(*slots));
    unsigned *order = calloc(blocks, sizeof(*order));
    uint64_t rng = g_seed ^ salt;
    unsigned b, disorder;

    assert_non_null(data);
    assert_non_null(slots);
    assert_non_null(order);
    if (reg)
        io_ctx_register(ctx, &f, 1, data, blocks * bs);
    for (b = 0; b < blocks; b++)
        test_fill(data + b * bs, bs, block_key(salt, b * bs));
    shuffle(order, blocks, &rng);
    prepare_slots(slots, order, blocks, IO_WRITE, f, data, bs);
    disorder = run_window(ctx, slots, blocks, depth);
    memset(data, 0xA5, blocks * bs);
    shuffle(order, blocks, &rng);
    prepare_slots(slots, order, blocks, IO_READ, f, data, bs);
    disorder += run_window(ctx, slots, blocks, depth);
    for (b = 0; b < blocks; b++) {
        bad = test_mismatch(data + b * bs, bs, block_key(salt, b * bs));
        if (bad != (size_t)-1)
            fail_msg("block %u differs at byte %zu", b, bad);
    }
    if (depth > 1)
        print_message("%s depth %u: %u of %u completions out of order\n",
                      io_ctx_engine_name(ctx), depth, disorder, 2 * blocks);
    free(order);
    free(slots);
    io_buf_free(data, blocks * bs);
}

static void test_roundtrip(void **state)
{
    const struct io_case *c = *state;
    struct io_ctx *ctx = ctx_or_skip(c->engine, c->depth);
    struct io_file *f = file_or_skip(ctx, &g_dir, "roundtrip", c->direct);
    uint64_t salt = ((uint64_t)c->engine << 48) ^ ((uint64_t)c->direct << 40) ^ c->depth;

    roundtrip(ctx, f, c->depth, BLOCKS, salt ^ ((uint64_t)c->reg << 32), c->reg);
    assert_int_equal(io_file_size(f), (int64_t)(BLOCKS * block_size(f)));
    assert_rc(io_file_sync(f), DKV_OK);
    assert_rc(io_file_close(f), DKV_OK);
    io_ctx_destroy(ctx);
}

/* ---- requests the layer refuses ------------------------------------------ */

static void refused(struct io_ctx *ctx, struct io_req *const *reqs, unsigned n,
                    const char *what)
{
    int rc = io_ctx_submit(ctx, reqs, n);

    if (rc != DKV_ERR_INVALID)
        fail_msg("%s: io_ctx_submit = %d (%s), expected DKV_ERR_INVALID",
                 what, rc, dkv_strerror(rc));
    assert_int_equal(io_ctx_inflight(ctx), 0);
}

static void test_refuses_bad_requests(void **state)
{
    const struct io_case *c = *state;
    struct io_ctx *ctx = ctx_or_skip(c->engine, ERR_DEPTH);
    struct io_file *f = file_or_skip(ctx, &g_dir, "refuse", 1);
    size_t bs = block_size(f);
    unsigned char *buf = io_buf_alloc((ERR_DEPTH + 1) * bs, bs);
    struct io_req reqs[ERR_DEPTH + 1], bad, *ptrs[ERR_DEPTH + 1];
    struct io_req *one[1] = { &bad };
    unsigned i;

    assert_non_null(buf);
    assert_true(io_file_mem_align(f) > 1 && io_file_off_align(f) > 1);
    for (i = 0; i <= ERR_DEPTH; i++) {
        reqs[i] = make_req(IO_WRITE, f, buf + i * bs, bs, (uint64_t)i * bs);
        ptrs[i] = &reqs[i];
    }
    bad = reqs[0]; bad.buf = buf + 1;     refused(ctx, one, 1, "misaligned buffer");
    bad = reqs[0]; bad.off = 1;           refused(ctx, one, 1, "misaligned offset");
    bad = reqs[0]; bad.off = bs + io_file_off_align(f) / 2;
    refused(ctx, one, 1, "offset off by half an alignment");
    bad = reqs[0]; bad.len = bs + 1;      refused(ctx, one, 1, "misaligned length");
    bad = reqs[0]; bad.len = 0;           refused(ctx, one, 1, "zero length");
    bad = reqs[0]; bad.op = 0;            refused(ctx, one, 1, "no operation");
    refused(ctx, ptrs, ERR_DEPTH + 1, "a batch deeper than the context");
    reqs[2].buf = buf + 2 * bs + 1;       /* one bad request in a good batch */
    refused(ctx, ptrs, 3, "a batch with one misaligned buffer");
    reqs[2].buf = buf + 2 * bs;
    /* The context still works. */
    assert_rc(io_run(ctx, ptrs, ERR_DEPTH), DKV_OK);
    assert_int_equal(io_ctx_inflight(ctx), 0);
    io_buf_free(buf, (ERR_DEPTH + 1) * bs);
    assert_rc(io_file_close(f), DKV_OK);
    io_ctx_destroy(ctx);
}

/* With the context full, one more request is refused and the requests in
   flight are untouched. */
static void test_refuses_over_depth_when_full(void **state)
{
    const struct io_case *c = *state;
    struct io_ctx *ctx = ctx_or_skip(c->engine, ERR_DEPTH);
    struct io_file *f = file_or_skip(ctx, &g_dir, "full", 1);
    size_t bs = block_size(f);
    unsigned char *buf = io_buf_alloc((ERR_DEPTH + 1) * bs, bs);
    struct io_req reqs[ERR_DEPTH + 1], *ptrs[ERR_DEPTH + 1], *done[ERR_DEPTH];
    unsigned i, back = 0;

    assert_non_null(buf);
    for (i = 0; i <= ERR_DEPTH; i++) {
        reqs[i] = make_req(IO_WRITE, f, buf + i * bs, bs, (uint64_t)i * bs);
        ptrs[i] = &reqs[i];
    }
    assert_rc(io_ctx_submit(ctx, ptrs, ERR_DEPTH), DKV_OK);
    assert_int_equal(io_ctx_inflight(ctx), ERR_DEPTH);
    assert_rc(io_ctx_submit(ctx, ptrs + ERR_DEPTH, 1), DKV_ERR_INVALID);
    assert_int_equal(io_ctx_inflight(ctx), ERR_DEPTH);
    while (back < ERR_DEPTH) {
        int r = io_ctx_reap(ctx, done, 1, ERR_DEPTH);
        assert_in_range(r, 1, ERR_DEPTH - back);
        for (i = 0; i < (unsigned)r; i++)
            assert_rc(done[i]->res, (int64_t)bs);
        back += (unsigned)r;
    }
    assert_int_equal(io_ctx_inflight(ctx), 0);
    assert_int_equal(io_ctx_reap(ctx, done, 0, ERR_DEPTH), 0);   /* a poll */
    io_buf_free(buf, (ERR_DEPTH + 1) * bs);
    assert_rc(io_file_close(f), DKV_OK);
    io_ctx_destroy(ctx);
}

/* ---- end of file ----------------------------------------------------------- */

static void test_read_past_eof_is_short(void **state)
{
    const struct io_case *c = *state;
    struct io_ctx *ctx = ctx_or_skip(c->engine, ERR_DEPTH);
    struct io_file *f = file_or_skip(ctx, &g_dir, "eof", 1);
    size_t bs = block_size(f);
    unsigned char *buf = io_buf_alloc(8 * bs, bs);
    struct io_req req, *one[1] = { &req };

    assert_non_null(buf);
    test_fill(buf, 4 * bs, block_key(1, 0));
    req = make_req(IO_WRITE, f, buf, 4 * bs, 0);
    assert_rc(io_run(ctx, one, 1), DKV_OK);
    memset(buf, 0, 8 * bs);
    req = make_req(IO_READ, f, buf, 8 * bs, 0);      /* half beyond the end */
    submit_one(ctx, &req);
    assert_rc(req.res, (int64_t)(4 * bs));
    assert_int_equal(req.err, 0);
    assert_true(test_mismatch(buf, 4 * bs, block_key(1, 0)) == (size_t)-1);
    assert_rc(io_run(ctx, one, 1), DKV_ERR_IO);
    assert_rc(req.res, (int64_t)(4 * bs));
    req = make_req(IO_READ, f, buf, bs, 16 * bs);     /* wholly beyond it */
    submit_one(ctx, &req);
    assert_rc(req.res, 0);
    assert_rc(io_run(ctx, one, 1), DKV_ERR_IO);
    assert_int_equal(io_ctx_inflight(ctx), 0);
    io_buf_free(buf, 8 * bs);
    assert_rc(io_file_close(f), DKV_OK);
    io_ctx_destroy(ctx);
}

/* ---- reaping, io_run, destroy ------------------------------------------------ */

static double now_seconds(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Reaping with min = 0 never waits, and polling alone (no sleeping, no
   waiting reap) brings every request back. */
static void test_reap_by_polling(void **state)
{
    const struct io_case *c = *state;
    struct io_ctx *ctx = ctx_or_skip(c->engine, ERR_DEPTH);
    struct io_file *f = file_or_skip(ctx, &g_dir, "poll", 1);
    size_t bs = block_size(f);
    unsigned char *buf = io_buf_alloc(ERR_DEPTH * bs, bs);
    struct slot slots[ERR_DEPTH];
    struct io_req *ptrs[ERR_DEPTH], *done[ERR_DEPTH];
    unsigned order[ERR_DEPTH], back = 0, polls = 0, i;
    double deadline = now_seconds() + 10;

    assert_non_null(buf);
    for (i = 0; i < ERR_DEPTH; i++) {
        order[i] = i;
        test_fill(buf + i * bs, bs, block_key(9, i * bs));
    }
    prepare_slots(slots, order, ERR_DEPTH, IO_WRITE, f, buf, bs);
    for (i = 0; i < ERR_DEPTH; i++)
        ptrs[i] = &slots[i].req;
    assert_rc(io_ctx_submit(ctx, ptrs, ERR_DEPTH), DKV_OK);
    while (back < ERR_DEPTH && now_seconds() < deadline) {
        int r = io_ctx_reap(ctx, done, 0, ERR_DEPTH);
        assert_in_range(r, 0, ERR_DEPTH - back);
        for (i = 0; i < (unsigned)r; i++)
            check_completion(done[i], slots, ERR_DEPTH);
        back += (unsigned)r;
        polls++;
    }
    if (back < ERR_DEPTH) {
        unsigned left = io_ctx_inflight(ctx);
        io_ctx_destroy(ctx);            /* waits for them: buf stays valid */
        fail_msg("%u of %u requests still in flight after 10 s of polling",
                 left, ERR_DEPTH);
    }
    print_message("%s: %u polls\n", io_ctx_engine_name(ctx), polls);
    assert_int_equal(io_ctx_inflight(ctx), 0);
    io_buf_free(buf, ERR_DEPTH * bs);
    assert_rc(io_file_close(f), DKV_OK);
    io_ctx_destroy(ctx);
}

#define RUN_REQS (3 * ERR_DEPTH + 3)

/* io_run takes more requests than the context's depth, in rounds. */
static void test_io_run_deeper(void **state)
{
    const struct io_case *c = *state;
    struct io_ctx *ctx = ctx_or_skip(c->engine, ERR_DEPTH);
    struct io_file *f = file_or_skip(ctx, &g_dir, "run-deep", 1);
    size_t bs = block_size(f);
    unsigned char *buf = io_buf_alloc(RUN_REQS * bs, bs);
    struct io_req reqs[RUN_REQS], *ptrs[RUN_REQS];
    unsigned i;

    assert_non_null(buf);
    test_fill(buf, RUN_REQS * bs, block_key(10, 0));
    for (i = 0; i < RUN_REQS; i++) {
        reqs[i] = make_req(IO_WRITE, f, buf + i * bs, bs, (uint64_t)i * bs);
        ptrs[i] = &reqs[i];
    }
    assert_rc(io_run(ctx, ptrs, RUN_REQS), DKV_OK);
    memset(buf, 0, RUN_REQS * bs);
    for (i = 0; i < RUN_REQS; i++) {
        assert_rc(reqs[i].res, (int64_t)bs);
        reqs[i].op = IO_READ;
    }
    assert_rc(io_run(ctx, ptrs, RUN_REQS), DKV_OK);
    assert_true(test_mismatch(buf, RUN_REQS * bs, block_key(10, 0)) == (size_t)-1);
    assert_int_equal(io_ctx_inflight(ctx), 0);
    io_buf_free(buf, RUN_REQS * bs);
    assert_rc(io_file_close(f), DKV_OK);
    io_ctx_destroy(ctx);
}

/* Reaps until nothing is in flight (bounded); returns how many came back. */
static unsigned drain(struct io_ctx *ctx)
{
    struct io_req *done[64];
    unsigned got = 0, rounds = 0;

    while (io_ctx_inflight(ctx) > 0 && rounds++ < 100000) {
        int r = io_ctx_reap(ctx, done, 1, 64);
        if (r < 0)
            break;
        got += (unsigned)r;
    }
    return got;
}

/* A misaligned request in the second round of an io_run: io_run must
   refuse it (DKV_ERR_INVALID) and must not return with requests of the
   first round still in flight.  Tried several times, since it depends on
   how many of the first round are back when the second is submitted. */
static void test_io_run_bad_request(void **state)
{
    const struct io_case *c = *state;
    struct io_ctx *ctx = ctx_or_skip(c->engine, ERR_DEPTH);
    struct io_file *f = file_or_skip(ctx, &g_dir, "run-bad", 1);
    size_t bs = 16 * block_size(f);           /* big, so they take a while */
    unsigned char *buf = io_buf_alloc(RUN_REQS * bs, bs);
    struct io_req reqs[RUN_REQS], *ptrs[RUN_REQS];
    unsigned i, trial, left = 0;
    int rc = DKV_ERR_INVALID;

    assert_non_null(buf);
    memset(buf, 0x3C, RUN_REQS * bs);
    for (trial = 1; trial <= 20 && left == 0 && rc == DKV_ERR_INVALID; trial++) {
        for (i = 0; i < RUN_REQS; i++) {
            reqs[i] = make_req(IO_WRITE, f, buf + i * bs, bs, (uint64_t)i * bs);
            ptrs[i] = &reqs[i];
        }
        reqs[ERR_DEPTH].buf = buf + ERR_DEPTH * bs + 1;
        rc = io_run(ctx, ptrs, RUN_REQS);
        left = io_ctx_inflight(ctx);
        drain(ctx);                   /* reqs and buf must outlive them */
    }
    io_buf_free(buf, RUN_REQS * bs);
    assert_rc(io_file_close(f), DKV_OK);
    io_ctx_destroy(ctx);
    if (left != 0)
        fail_msg("trial %u: io_run returned %d (%s) with %u requests still in "
                 "flight", trial - 1, rc, dkv_strerror(rc), left);
    assert_rc(rc, DKV_ERR_INVALID);
}

/* io_ctx_destroy with requests in flight waits for them: afterwards the
   data is in the file. */
static void test_destroy_waits(void **state)
{
    const struct io_case *c = *state;
    struct io_ctx *ctx = ctx_or_skip(c->engine, ERR_DEPTH);
    struct io_file *f = file_or_skip(ctx, &g_dir, "destroy", 1);
    size_t bs = block_size(f), len = ERR_DEPTH * bs;
    unsigned char *buf = io_buf_alloc(len, bs), *back = io_buf_alloc(len, bs);
    struct io_req reqs[ERR_DEPTH], *ptrs[ERR_DEPTH];
    unsigned i;

    assert_non_null(buf);
    assert_non_null(back);
    test_fill(buf, len, block_key(11, 0));
    for (i = 0; i < ERR_DEPTH; i++) {
        reqs[i] = make_req(IO_WRITE, f, buf + i * bs, bs, (uint64_t)i * bs);
        ptrs[i] = &reqs[i];
    }
    assert_rc(io_ctx_submit(ctx, ptrs, ERR_DEPTH), DKV_OK);
    io_ctx_destroy(ctx);
    for (i = 0; i < ERR_DEPTH; i++)
        assert_rc(reqs[i].res, (int64_t)bs);
    assert_int_equal(pread(io_file_fd(f), back, len, 0), (ssize_t)len);
    assert_memory_equal(back, buf, len);
    io_buf_free(back, len);
    io_buf_free(buf, len);
    assert_rc(io_file_close(f), DKV_OK);
}

/* ---- contexts in several threads, one file ----------------------------------- */

#define THREADS       4u
#define THREAD_BLOCKS 48u

struct worker {
    pthread_t       tid;
    int             engine;
    unsigned        index;
    struct io_file *f;
    size_t          bs;
    unsigned char  *data;      /* THREAD_BLOCKS blocks of its own */
    const char     *err;       /* NULL when all went well */
};

/* Writes this worker's blocks (every THREADS-th block of the file) through
   its own context, reads them back and compares.  No cmocka asserts: they
   must not run outside the main thread. */
static void *io_worker(void *arg)
{
    struct worker *w = arg;
    struct io_ctx_config cfg = { .engine = w->engine, .depth = 16 };
    struct io_req reqs[THREAD_BLOCKS], *ptrs[THREAD_BLOCKS];
    struct io_ctx *ctx = NULL;
    unsigned i;

    if (io_ctx_create(&cfg, &ctx) != DKV_OK) {
        w->err = "io_ctx_create failed";
        return NULL;
    }
    for (i = 0; i < THREAD_BLOCKS; i++) {
        uint64_t off = (uint64_t)(i * THREADS + w->index) * w->bs;
        test_fill(w->data + i * w->bs, w->bs, block_key(12, off));
        reqs[i] = make_req(IO_WRITE, w->f, w->data + i * w->bs, w->bs, off);
        ptrs[i] = &reqs[i];
    }
    if (io_run(ctx, ptrs, THREAD_BLOCKS) != DKV_OK)
        w->err = "write failed";
    memset(w->data, 0, THREAD_BLOCKS * w->bs);
    for (i = 0; i < THREAD_BLOCKS && w->err == NULL; i++)
        reqs[i].op = IO_READ;
    if (w->err == NULL && io_run(ctx, ptrs, THREAD_BLOCKS) != DKV_OK)
        w->err = "read failed";
    for (i = 0; i < THREAD_BLOCKS && w->err == NULL; i++)
        if (test_mismatch(w->data + i * w->bs, w->bs, block_key(12, reqs[i].off))
            != (size_t)-1)
            w->err = "data read back differs";
    io_ctx_destroy(ctx);
    return NULL;
}

static void test_contexts_in_threads(void **state)
{
    const struct io_case *c = *state;
    struct io_ctx *ctx = ctx_or_skip(c->engine, ERR_DEPTH);
    struct io_file *f = file_or_skip(ctx, &g_dir, "threads", 1);
    size_t bs = block_size(f), total = THREADS * THREAD_BLOCKS;
    unsigned char *all = io_buf_alloc(total * bs, bs);
    struct worker w[THREADS];
    unsigned i;

    assert_non_null(all);
    for (i = 0; i < THREADS; i++) {
        w[i] = (struct worker){ .engine = c->engine, .index = i, .f = f, .bs = bs,
                                .data = all + (size_t)i * THREAD_BLOCKS * bs };
        assert_int_equal(pthread_create(&w[i].tid, NULL, io_worker, &w[i]), 0);
    }
    for (i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(w[i].tid, NULL), 0);
    for (i = 0; i < THREADS; i++)
        if (w[i].err != NULL)
            fail_msg("thread %u: %s", i, w[i].err);
    /* Every block of the file, read in one go on the main thread. */
    assert_int_equal(pread(io_file_fd(f), all, total * bs, 0), (ssize_t)(total * bs));
    for (i = 0; i < total; i++)
        if (test_mismatch(all + i * bs, bs, block_key(12, (uint64_t)i * bs)) != (size_t)-1)
            fail_msg("block %u differs", i);
    io_buf_free(all, total * bs);
    assert_rc(io_file_close(f), DKV_OK);
    io_ctx_destroy(ctx);
}

/* ---- fault injection --------------------------------------------------------- */

struct fault_env {
    struct io_ctx  *ctx;
    struct io_file *f;
    size_t          bs;
    unsigned char  *buf;      /* 8 blocks */
};

static void fault_env_open(struct fault_env *e, const struct io_case *c,
                           const char *name)
{
    e->ctx = ctx_or_skip(c->engine, ERR_DEPTH);
    e->f = file_or_skip(e->ctx, &g_dir, name, 1);
    e->bs = block_size(e->f);
    e->buf = io_buf_alloc(8 * e->bs, e->bs);
    assert_non_null(e->buf);
}

static void fault_env_close(struct fault_env *e)
{
    assert_int_equal(io_ctx_inflight(e->ctx), 0);
    io_buf_free(e->buf, 8 * e->bs);
    assert_rc(io_file_close(e->f), DKV_OK);
    io_ctx_destroy(e->ctx);
}

/* One request of len bytes at 0 with a single fault armed; checks res/err. */
static void one_fault(struct fault_env *e, int op, size_t len, int err,
                      int64_t want_res, int want_err)
{
    struct io_req req = make_req(op, e->f, e->buf, len, 0);

    io_ctx_inject_fault(e->ctx, 1, err, 0);
    submit_one(e->ctx, &req);
    assert_rc(req.res, want_res);
    assert_int_equal(req.err, want_err);
}

/* One request of len bytes at 0 with no fault armed; it must succeed. */
static void no_fault(struct fault_env *e, int op, size_t len)
{
    struct io_req req = make_req(op, e->f, e->buf, len, 0);

    io_ctx_inject_fault(e->ctx, 0, 0, 0);
    submit_one(e->ctx, &req);
    assert_rc(req.res, (int64_t)len);
    assert_int_equal(req.err, 0);
}

/* Writes len patterned bytes at 0 with a fault armed and reads them back
   cleanly, then reads them again with the fault armed: the fault must be
   invisible both ways. */
static void invisible_fault(struct fault_env *e, size_t len, int err, uint64_t key)
{
    test_fill(e->buf, len, key);
    one_fault(e, IO_WRITE, len, err, (int64_t)len, 0);
    memset(e->buf, 0, len);
    no_fault(e, IO_READ, len);
    if (test_mismatch(e->buf, len, key) != (size_t)-1)
        fail_msg("write with fault %d, len %zu: data differs", err, len);
    memset(e->buf, 0, len);
    one_fault(e, IO_READ, len, err, (int64_t)len, 0);
    if (test_mismatch(e->buf, len, key) != (size_t)-1)
        fail_msg("read with fault %d, len %zu: data differs", err, len);
}

static void test_fault_eio_and_enospc(void **state)
{
    struct fault_env e;

    fault_env_open(&e, *state, "fault-err");
    test_fill(e.buf, e.bs, block_key(2, 0));
    one_fault(&e, IO_WRITE, e.bs, EIO, DKV_ERR_IO, EIO);
    one_fault(&e, IO_READ, e.bs, EIO, DKV_ERR_IO, EIO);
    one_fault(&e, IO_WRITE, e.bs, ENOSPC, DKV_ERR_NOSPACE, ENOSPC);
    /* A single fault is spent: the next request goes through. */
    {
        struct io_req req = make_req(IO_WRITE, e.f, e.buf, e.bs, 0);
        struct io_req *one[1] = { &req };
        submit_one(e.ctx, &req);
        assert_rc(req.res, (int64_t)e.bs);
        io_ctx_inject_fault(e.ctx, 1, EIO, 0);
        assert_rc(io_run(e.ctx, one, 1), DKV_ERR_IO);
        assert_int_equal(req.err, EIO);
    }
    fault_env_close(&e);
}

static void test_fault_eintr_eagain_retried(void **state)
{
    struct fault_env e;

    fault_env_open(&e, *state, "fault-retry");
    invisible_fault(&e, 4 * e.bs, EINTR, block_key(3, 0));
    invisible_fault(&e, 4 * e.bs, EAGAIN, block_key(4, 0));
    fault_env_close(&e);
}

static void test_fault_short_transfer_completed(void **state)
{
    struct fault_env e;

    fault_env_open(&e, *state, "fault-short");
    /* err 0: the first attempt moves half; the layer finishes the rest. */
    invisible_fault(&e, 8 * e.bs, 0, block_key(5, 0));
    invisible_fault(&e, 3 * e.bs, 0, block_key(6, 0));
    /* One alignment unit cannot be halved; it must still complete. */
    invisible_fault(&e, io_file_off_align(e.f), 0, block_key(7, 0));
    fault_env_close(&e);
}

/* Submits n one-block writes one call at a time (nth counts across calls)
   and reaps them all; completions land in their own req. */
static void submit_each_and_reap(struct fault_env *e, struct io_req *reqs, unsigned n)
{
    struct io_req *done[ERR_DEPTH];
    unsigned i, back = 0;

    for (i = 0; i < n; i++) {
        struct io_req *one[1] = { &reqs[i] };
        reqs[i] = make_req(IO_WRITE, e->f, e->buf + i * e->bs, e->bs,
                           (uint64_t)i * e->bs);
        reqs[i].owner = &reqs[i];
        assert_rc(io_ctx_submit(e->ctx, one, 1), DKV_OK);
    }
    assert_int_equal(io_ctx_inflight(e->ctx), n);
    while (back < n) {
        int r = io_ctx_reap(e->ctx, done, 1, ERR_DEPTH);
        assert_in_range(r, 1, n - back);
        for (i = 0; i < (unsigned)r; i++)
            assert_ptr_equal(done[i]->owner, done[i]);
        back += (unsigned)r;
    }
}

static void test_fault_persistent_and_nth(void **state)
{
    struct fault_env e;
    struct io_req reqs[6];
    unsigned i;

    fault_env_open(&e, *state, "fault-persist");
    io_ctx_inject_fault(e.ctx, 3, EIO, 1);          /* the 3rd and later */
    submit_each_and_reap(&e, reqs, 6);
    for (i = 0; i < 6; i++) {
        assert_rc(reqs[i].res, i < 2 ? (int64_t)e.bs : DKV_ERR_IO);
        assert_int_equal(reqs[i].err, i < 2 ? 0 : EIO);
    }
    io_ctx_inject_fault(e.ctx, 2, ENOSPC, 0);       /* the 2nd only */
    submit_each_and_reap(&e, reqs, 4);
    for (i = 0; i < 4; i++)
        assert_rc(reqs[i].res, i == 1 ? DKV_ERR_NOSPACE : (int64_t)e.bs);
    io_ctx_inject_fault(e.ctx, 1, 0, 1);            /* every one short */
    submit_each_and_reap(&e, reqs, 4);
    for (i = 0; i < 4; i++)
        assert_rc(reqs[i].res, (int64_t)e.bs);
    io_ctx_inject_fault(e.ctx, 0, 0, 0);            /* cleared */
    submit_each_and_reap(&e, reqs, 2);
    assert_rc(reqs[0].res, (int64_t)e.bs);
    assert_rc(reqs[1].res, (int64_t)e.bs);
    fault_env_close(&e);
}

/* One request through io_run, without asserting (io_run's rc). */
static int run_one(struct io_ctx *ctx, struct io_req *req)
{
    struct io_req *one[1] = { req };

    return io_run(ctx, one, 1);
}

/* A real error from the kernel, not an injected one: past RLIMIT_FSIZE a
   write fails with EFBIG, which the layer reports as DKV_ERR_NOSPACE; a
   write that straddles the limit moves what it can, then fails the same
   way.  Writes below the limit still work. */
static void test_real_efbig_is_nospace(void **state)
{
    struct fault_env e;
    struct test_fsize saved;
    struct io_req far, straddle, inside;
    int rc_far, rc_straddle, rc_inside;

    fault_env_open(&e, *state, "efbig");
    test_fill(e.buf, 4 * e.bs, block_key(13, 0));
    far = make_req(IO_WRITE, e.f, e.buf, e.bs, 64 * e.bs);
    straddle = make_req(IO_WRITE, e.f, e.buf, 4 * e.bs, 14 * e.bs);
    inside = make_req(IO_WRITE, e.f, e.buf, e.bs, 0);
    assert_int_equal(test_limit_file_size(&saved, 16 * e.bs), 0);
    rc_far = run_one(e.ctx, &far);
    rc_straddle = run_one(e.ctx, &straddle);
    rc_inside = run_one(e.ctx, &inside);
    test_unlimit_file_size(&saved);
    assert_rc(rc_far, DKV_ERR_NOSPACE);
    assert_rc(far.res, DKV_ERR_NOSPACE);
    assert_int_equal(far.err, EFBIG);
    assert_rc(rc_straddle, DKV_ERR_NOSPACE);
    assert_rc(straddle.res, DKV_ERR_NOSPACE);
    assert_int_equal(straddle.err, EFBIG);
    assert_rc(rc_inside, DKV_OK);
    assert_rc(inside.res, (int64_t)e.bs);
    assert_int_equal(io_file_size(e.f), (int64_t)(16 * e.bs));
    fault_env_close(&e);
}

/* ---- the common group: fallback and context creation ------------------------ */

static int create_auto(unsigned mask, struct io_ctx **ctxp)
{
    struct io_ctx_config cfg = { .engine = DKV_IO_AUTO, .depth = 8,
                                 .fail_setup_mask = mask };

    *ctxp = NULL;
    return io_ctx_create(&cfg, ctxp);
}

static void skip_if_env_disable(void)
{
    if (getenv("DKV_IO_DISABLE") != NULL) {
        print_message("DKV_IO_DISABLE is set outside the test, skipped\n");
        skip();
    }
}

static void test_auto_fallback_forced(void **state)
{
    int aio_ok = backend_usable(DKV_IO_LIBAIO, 1);
    struct io_ctx *ctx;
    const char *why;

    (void)state;
    skip_if_env_disable();
    assert_rc(create_auto(1u << DKV_IO_URING, &ctx), DKV_OK);
    why = io_ctx_fallback_reason(ctx);
    print_message("without io_uring: %s (%s)\n", io_ctx_engine_name(ctx), why);
    assert_int_equal(io_ctx_engine(ctx), aio_ok ? DKV_IO_LIBAIO : DKV_IO_PSYNC);
    assert_non_null(strstr(why, "io_uring"));
    io_ctx_destroy(ctx);

    assert_rc(create_auto((1u << DKV_IO_URING) | (1u << DKV_IO_LIBAIO), &ctx), DKV_OK);
    why = io_ctx_fallback_reason(ctx);
    print_message("without io_uring and libaio: %s (%s)\n",
                  io_ctx_engine_name(ctx), why);
    assert_int_equal(io_ctx_engine(ctx), DKV_IO_PSYNC);
    assert_string_equal(io_ctx_engine_name(ctx), "psync");
    assert_non_null(strstr(why, "io_uring"));
    assert_non_null(strstr(why, "libaio"));
    io_ctx_destroy(ctx);
}

static void test_auto_prefers_io_uring(void **state)
{
    struct io_ctx *ctx;

    (void)state;
    skip_if_env_disable();
    if (!backend_usable(DKV_IO_URING, 0)) {
        print_message("io_uring unavailable, skipped\n");
        skip();
    }
    assert_rc(create_auto(0, &ctx), DKV_OK);
    assert_int_equal(io_ctx_engine(ctx), DKV_IO_URING);
    assert_string_equal(io_ctx_fallback_reason(ctx), "");
    io_ctx_destroy(ctx);
}

/* AUTO with DKV_IO_DISABLE set to value: the engine it picks, and its reason
   (copied into why). */
static int auto_with_env(const char *value, char *why, size_t cap)
{
    struct io_ctx *ctx;
    int rc, engine = -1;

    setenv("DKV_IO_DISABLE", value, 1);
    rc = create_auto(0, &ctx);
    unsetenv("DKV_IO_DISABLE");
    assert_rc(rc, DKV_OK);
    engine = io_ctx_engine(ctx);
    snprintf(why, cap, "%s", io_ctx_fallback_reason(ctx));
    io_ctx_destroy(ctx);
    return engine;
}

static void test_env_disable(void **state)
{
    int aio_ok = backend_usable(DKV_IO_LIBAIO, 1);
    char why[256];
    int engine;

    (void)state;
    skip_if_env_disable();
    engine = auto_with_env("io_uring", why, sizeof(why));
    print_message("DKV_IO_DISABLE=io_uring: %s (%s)\n", io_engine_name(engine), why);
    assert_int_equal(engine, aio_ok ? DKV_IO_LIBAIO : DKV_IO_PSYNC);
    assert_non_null(strstr(why, "io_uring"));
    engine = auto_with_env("io_uring,libaio", why, sizeof(why));
    assert_int_equal(engine, DKV_IO_PSYNC);
    assert_non_null(strstr(why, "io_uring"));
    assert_non_null(strstr(why, "libaio"));
    assert_null(getenv("DKV_IO_DISABLE"));
}

static void test_explicit_engine_refused(void **state)
{
    const unsigned all = (1u << DKV_IO_URING) | (1u << DKV_IO_LIBAIO) |
                         (1u << DKV_IO_PSYNC);
    struct io_ctx *ctx = NULL;
    unsigned i;

    (void)state;
    for (i = 0; i < 3; i++) {
        struct io_ctx_config cfg = { .engine = all_engines[i], .depth = 8,
                                     .fail_setup_mask = 1u << all_engines[i] };
        assert_rc(io_ctx_create(&cfg, &ctx), DKV_ERR_UNSUPPORTED);
    }
    assert_rc(create_auto(all, &ctx), DKV_ERR_UNSUPPORTED);
}

static void test_create_checks_depth(void **state)
{
    struct io_ctx_config cfg = { .engine = DKV_IO_AUTO, .depth = 0 };
    struct io_ctx *ctx = NULL;

    (void)state;
    assert_rc(io_ctx_create(&cfg, &ctx), DKV_ERR_INVALID);
    cfg.depth = IO_DEPTH_MAX + 1;
    assert_rc(io_ctx_create(&cfg, &ctx), DKV_ERR_INVALID);
    cfg.engine = DKV_IO_PSYNC;
    cfg.depth = 0;
    assert_rc(io_ctx_create(&cfg, &ctx), DKV_ERR_INVALID);
    cfg.depth = IO_DEPTH_MAX + 1;
    assert_rc(io_ctx_create(&cfg, &ctx), DKV_ERR_INVALID);
    cfg.engine = 42;
    cfg.depth = 8;
    assert_rc(io_ctx_create(&cfg, &ctx), DKV_ERR_INVALID);
    cfg.engine = DKV_IO_PSYNC;
    cfg.depth = IO_DEPTH_MAX;                   /* the limit itself is fine */
    assert_rc(io_ctx_create(&cfg, &ctx), DKV_OK);
    assert_int_equal(io_ctx_depth(ctx), IO_DEPTH_MAX);
    io_ctx_destroy(ctx);
}

static void test_engine_names(void **state)
{
    (void)state;
    assert_int_equal(dkv_io_engine_built(DKV_IO_AUTO), 1);
    assert_int_equal(dkv_io_engine_built(DKV_IO_PSYNC), 1);
    assert_int_equal(dkv_io_engine_built(42), 0);
    assert_string_equal(dkv_io_engine_name(DKV_IO_AUTO), "auto");
    assert_string_equal(dkv_io_engine_name(DKV_IO_URING), "io_uring");
    assert_string_equal(dkv_io_engine_name(DKV_IO_LIBAIO), "libaio");
    assert_string_equal(dkv_io_engine_name(DKV_IO_PSYNC), "psync");
    assert_null(dkv_io_engine_name(42));
    print_message("built: io_uring=%d libaio=%d psync=%d\n",
                  dkv_io_engine_built(DKV_IO_URING),
                  dkv_io_engine_built(DKV_IO_LIBAIO),
                  dkv_io_engine_built(DKV_IO_PSYNC));
}

/* ---- the common group: files and buffers ------------------------------------- */

static void test_dev_shm_every_backend(void **state)
{
    struct test_dir shm;
    unsigned i, ran = 0;

    (void)state;
    if (access("/dev/shm", W_OK) != 0 || test_dir_make(&shm, "/dev/shm") != 0) {
        print_message("/dev/shm not writable here, skipped\n");
        skip();
    }
    for (i = 0; i < 3; i++) {
        struct io_ctx_config cfg = { .engine = all_engines[i], .depth = 8 };
        struct io_ctx *ctx = NULL;
        struct io_file *f = NULL;
        char path[256];

        if (!backend_usable(all_engines[i], 0))
            continue;
        assert_rc(io_ctx_create(&cfg, &ctx), DKV_OK);
        test_dir_file(&shm, io_engine_name(all_engines[i]), path, sizeof(path));
        assert_rc(io_file_open(path, IO_OPEN_CREATE | IO_OPEN_DIRECT, &f), DKV_OK);
        print_message("/dev/shm with %s: direct=%d mem_align=%u off_align=%u\n",
                      io_engine_name(all_engines[i]), io_file_direct(f),
                      io_file_mem_align(f), io_file_off_align(f));
        roundtrip(ctx, f, 8, SHM_BLOCKS, 0x5A5A0000u + i, 0);
        assert_rc(io_file_close(f), DKV_OK);
        io_ctx_destroy(ctx);
        ran++;
    }
    test_dir_remove(&shm);
    assert_true(ran >= 1);          /* psync is always there */
}

static void test_need_direct_refused(void **state)
{
    (void)state;
    print_message("IO_OPEN_NEED_DIRECT on a file system that refuses O_DIRECT: "
                  "no such file system here, skipped\n");
    skip();
}

static void test_need_direct_accepted(void **state)
{
    struct io_file *f = NULL;
    char path[256];
    int rc;

    (void)state;
    test_dir_file(&g_dir, "need-direct", path, sizeof(path));
    rc = io_file_open(path, IO_OPEN_CREATE | IO_OPEN_DIRECT | IO_OPEN_NEED_DIRECT, &f);
    if (rc == DKV_ERR_UNSUPPORTED) {
        print_message("%s refuses O_DIRECT, skipped\n", g_dir.path);
        skip();
    }
    assert_rc(rc, DKV_OK);
    assert_int_equal(io_file_direct(f), 1);
    assert_rc(io_file_close(f), DKV_OK);
}

static void test_allocate_extends(void **state)
{
    struct io_file *f = NULL;
    char path[256];
    uint32_t a;

    (void)state;
    test_dir_file(&g_dir, "allocate", path, sizeof(path));
    assert_rc(io_file_open(path, IO_OPEN_CREATE | IO_OPEN_DIRECT, &f), DKV_OK);
    a = io_file_off_align(f);
    assert_int_equal(io_file_size(f), 0);
    assert_rc(io_file_allocate(f, 0, 1u << 20), DKV_OK);
    assert_int_equal(io_file_size(f), 1 << 20);
    assert_rc(io_file_allocate(f, 1u << 20, 256u << 10), DKV_OK);
    assert_int_equal(io_file_size(f), (1 << 20) + (256 << 10));
    assert_rc(io_file_allocate(f, 0, 4096), DKV_OK);        /* never shrinks */
    assert_int_equal(io_file_size(f), (1 << 20) + (256 << 10));
    assert_rc(io_file_allocate(f, 1, a), DKV_ERR_INVALID);
    assert_rc(io_file_allocate(f, a / 2, a), DKV_ERR_INVALID);
    assert_rc(io_file_allocate(f, 2u << 20, a + 1), DKV_ERR_INVALID);
    assert_rc(io_file_allocate(f, 2u << 20, a / 2), DKV_ERR_INVALID);
    assert_int_equal(io_file_size(f), (1 << 20) + (256 << 10));
    assert_rc(io_file_close(f), DKV_OK);
}

/* Past RLIMIT_FSIZE (a full disk, as far as the file is concerned)
   io_file_allocate fails with DKV_ERR_NOSPACE and the size is unchanged. */
static void test_allocate_full_disk(void **state)
{
    struct test_fsize saved;
    struct io_file *f = NULL;
    char path[256];
    int rc_over, rc_under;
    int64_t size_over;

    (void)state;
    test_dir_file(&g_dir, "allocate-full", path, sizeof(path));
    assert_rc(io_file_open(path, IO_OPEN_CREATE | IO_OPEN_DIRECT, &f), DKV_OK);
    assert_rc(io_file_allocate(f, 0, 256u << 10), DKV_OK);
    assert_int_equal(test_limit_file_size(&saved, 1u << 20), 0);
    rc_over = io_file_allocate(f, 256u << 10, 2u << 20);
    size_over = io_file_size(f);
    rc_under = io_file_allocate(f, 256u << 10, 512u << 10);
    test_unlimit_file_size(&saved);
    assert_rc(rc_over, DKV_ERR_NOSPACE);
    assert_int_equal(size_over, 256 << 10);
    assert_rc(rc_under, DKV_OK);
    assert_int_equal(io_file_size(f), 768 << 10);
    assert_rc(io_file_close(f), DKV_OK);
}

static void test_open_missing_file(void **state)
{
    static const int flags[] = { 0, IO_OPEN_DIRECT, IO_OPEN_RDONLY,
                                 IO_OPEN_DIRECT | IO_OPEN_NEED_DIRECT };
    struct io_file *f = NULL;
    char path[256];
    unsigned i;

    (void)state;
    test_dir_file(&g_dir, "missing", path, sizeof(path));
    for (i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
        assert_rc(io_file_open(path, flags[i], &f), DKV_ERR_INVALID);
        assert_int_not_equal(access(path, F_OK), 0);
    }
}

static void test_buf_alloc_aligned(void **state)
{
    static const size_t sizes[] = { 4096, 8u << 20, 1, 100000, (3u << 20) + 123 };
    static const size_t aligns[] = { 4096, 16384 };
    unsigned i, j;

    (void)state;
    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        for (j = 0; j < 2; j++) {
            unsigned char *p = io_buf_alloc(sizes[i], aligns[j]);
            assert_non_null(p);
            assert_int_equal((uintptr_t)p % aligns[j], 0);
            memset(p, 0x5A, sizes[i]);
            assert_int_equal(p[sizes[i] - 1], 0x5A);
            io_buf_free(p, sizes[i]);
        }
    }
}

/* ---- groups ----------------------------------------------------------------- */

#define BACKEND_CASES(e) {                                                    \
        { e, 1, 1, 0 }, { e, 1, WIDE_DEPTH, 0 }, { e, 0, 1, 0 },              \
        { e, 0, WIDE_DEPTH, 0 }, { e, 1, ERR_DEPTH, 0 },                      \
        { e, 1, WIDE_DEPTH, 1 }, { e, 0, WIDE_DEPTH, 1 } }

static struct io_case uring_cases[] = BACKEND_CASES(DKV_IO_URING);
static struct io_case aio_cases[] = BACKEND_CASES(DKV_IO_LIBAIO);
static struct io_case psync_cases[] = BACKEND_CASES(DKV_IO_PSYNC);

#define T(name, fn, st) { name, fn, NULL, NULL, st }
#define BACKEND_TESTS(cs) {                                                   \
        T("roundtrip_direct_depth1", test_roundtrip, &cs[0]),                 \
        T("roundtrip_direct_depth64", test_roundtrip, &cs[1]),                \
        T("roundtrip_buffered_depth1", test_roundtrip, &cs[2]),               \
        T("roundtrip_buffered_depth64", test_roundtrip, &cs[3]),              \
        T("roundtrip_registered_direct", test_roundtrip, &cs[5]),             \
        T("roundtrip_registered_buffered", test_roundtrip, &cs[6]),           \
        T("reap_by_polling", test_reap_by_polling, &cs[4]),                   \
        T("io_run_deeper_than_context", test_io_run_deeper, &cs[4]),          \
        T("io_run_with_a_bad_request", test_io_run_bad_request, &cs[4]),      \
        T("destroy_waits_for_inflight", test_destroy_waits, &cs[4]),          \
        T("contexts_in_threads_share_a_file", test_contexts_in_threads,       \
          &cs[4]),                                                            \
        T("refuses_bad_requests", test_refuses_bad_requests, &cs[4]),         \
        T("refuses_over_depth_when_full", test_refuses_over_depth_when_full,  \
          &cs[4]),                                                            \
        T("read_past_eof_is_short", test_read_past_eof_is_short, &cs[4]),     \
        T("fault_eio_and_enospc", test_fault_eio_and_enospc, &cs[4]),         \
        T("fault_eintr_eagain_retried", test_fault_eintr_eagain_retried,      \
          &cs[4]),                                                            \
        T("fault_short_transfer_completed",                                   \
          test_fault_short_transfer_completed, &cs[4]),                       \
        T("real_efbig_is_nospace", test_real_efbig_is_nospace, &cs[4]),       \
        T("fault_persistent_and_nth", test_fault_persistent_and_nth, &cs[4]) }

static const struct CMUnitTest uring_tests[] = BACKEND_TESTS(uring_cases);
static const struct CMUnitTest aio_tests[] = BACKEND_TESTS(aio_cases);
static const struct CMUnitTest psync_tests[] = BACKEND_TESTS(psync_cases);

static const struct CMUnitTest common_tests[] = {
    cmocka_unit_test(test_engine_names),
    cmocka_unit_test(test_auto_fallback_forced),
    cmocka_unit_test(test_auto_prefers_io_uring),
    cmocka_unit_test(test_env_disable),
    cmocka_unit_test(test_explicit_engine_refused),
    cmocka_unit_test(test_create_checks_depth),
    cmocka_unit_test(test_dev_shm_every_backend),
    cmocka_unit_test(test_need_direct_refused),
    cmocka_unit_test(test_need_direct_accepted),
    cmocka_unit_test(test_allocate_extends),
    cmocka_unit_test(test_allocate_full_disk),
    cmocka_unit_test(test_open_missing_file),
    cmocka_unit_test(test_buf_alloc_aligned),
};

struct group {
    const char               *name;
    int                       engine;     /* DKV_IO_AUTO: not a backend */
    const struct CMUnitTest  *tests;
    size_t                    count;
};

#define GROUP(n, e, t) { n, e, t, sizeof(t) / sizeof((t)[0]) }

int main(int argc, char **argv)
{
    static const struct group groups[] = {
        GROUP("io_uring", DKV_IO_URING, uring_tests),
        GROUP("libaio", DKV_IO_LIBAIO, aio_tests),
        GROUP("psync", DKV_IO_PSYNC, psync_tests),
        GROUP("common", DKV_IO_AUTO, common_tests),
    };
    const char *only = argc > 1 ? argv[1] : NULL;
    int failed = 0, ran = 0, unavailable = 0;
    size_t i;

    g_seed = test_seed("test_io");
    for (i = 0; i < sizeof(groups) / sizeof(groups[0]); i++) {
        if (only != NULL && strcmp(only, groups[i].name) != 0)
            continue;
        ran++;
        failed += _cmocka_run_group_tests(groups[i].name, groups[i].tests,
                                          groups[i].count, group_setup,
                                          group_teardown);
        if (only != NULL && groups[i].engine != DKV_IO_AUTO &&
            !backend_usable(groups[i].engine, 1))
            unavailable = 1;
    }
    if (ran == 0) {
        fprintf(stderr, "usage: %s [io_uring|libaio|psync|common]\n", argv[0]);
        return 2;
    }
    if (failed != 0)
        return 1;
    return unavailable ? 77 : 0;
}
