/*
 * fuzz_files.c - damaged database files: every byte of data.dkv and
 * redo.log is input.  The fuzzer's input is a database image
 * (fuzz_image.h): a few data pages, the log's header, checkpoint slots and
 * blocks, fix-up flags (recompute page, block and MTR checksums, so that
 * damage gets past the checksums to the decoders behind them) and ten
 * operation bytes.  Each run writes the image into a scratch directory,
 * opens it with dkv_open (recovery runs over the damaged log) and runs
 * the operations: get, scan, put, delete, a batch, checkpoint, close and
 * reopen, multi_get.
 *
 * What must hold: no crash, hang or sanitizer report; every call returns
 * DKV_OK, DKV_NOTFOUND or a defined error; what this run wrote and was
 * acknowledged reads back (also after a close and reopen); a scan returns
 * keys in strictly ascending order and ends.  A violation aborts, which
 * libFuzzer reports with the input.
 *
 * DKV_FUZZ_TRACE=1 prints every call and its result.  Files of the process
 * are capped at 256 MiB (RLIMIT_FSIZE): recovery allocates the pages a
 * damaged record names, however far past the end of the file.
 *
 * Built twice: with -fsanitize=fuzzer (the libFuzzer target, tests/run's
 * fuzz build) and as a replay program with fuzz_driver.c (the normal
 * suite: the seeds and fixed mutations of them).
 */
#include "fuzz_driver.h"
#include "fuzz_image.h"

#include "dkv.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define SCAN_STEPS_MAX 20000u          /* far more keys than 64 pages hold */
#define FILE_LIMIT     (256u << 20)    /* RLIMIT_FSIZE of the fuzzing process */
#define VBUF           (64u << 10)

static char g_dir[256];

static void cleanup(void)
{
    if (g_dir[0] != '\0')
        fimg_remove_dir(g_dir);
}

static void fail(const char *what, int rc)
{
    fprintf(stderr, "fuzz_files: %s (rc %d: %s)\n", what, rc, dkv_strerror(rc));
    cleanup();                          /* abort runs no atexit handler */
    abort();
}

static int g_trace = -1;              /* DKV_FUZZ_TRACE=1: print each call */

/* A return code a call may give on a damaged database. */
static void check_rc(const char *what, int rc)
{
    if (g_trace < 0)
        g_trace = getenv("DKV_FUZZ_TRACE") != NULL;
    if (g_trace)
        fprintf(stderr, "  %s: %d (%s)\n", what, rc, dkv_strerror(rc));
    switch (rc) {
    case DKV_OK: case DKV_NOTFOUND: case DKV_ERR_INVALID: case DKV_ERR_IO:
    case DKV_ERR_CORRUPT: case DKV_ERR_NOSPACE: case DKV_ERR_NOMEM:
    case DKV_ERR_UNSUPPORTED:
        return;
    default:
        fail(what, rc);
    }
}

/* What this run knows of a key: nothing, absent, or its version. */
enum { K_UNKNOWN = 0, K_ABSENT, K_PRESENT };

struct run {
    dkv_db       *db;
    dkv_options   o;
    unsigned char state[FIMG_KEYS];
    unsigned      version[FIMG_KEYS];
    unsigned char *vbuf;
};

static void forget_all(struct run *r)
{
    memset(r->state, K_UNKNOWN, sizeof(r->state));
}

static void reopen(struct run *r)
{
    int rc = dkv_open(g_dir, &r->o, &r->db);

    check_rc("dkv_open", rc);
    if (rc == DKV_OK && r->db == NULL)
        fail("dkv_open gave no database", rc);
    if (rc != DKV_OK && r->db != NULL)
        fail("dkv_open failed but gave a database", rc);
}

/* Checks a value read for key i against what the run knows. */
static void check_value(struct run *r, unsigned i, int rc, const unsigned char *v,
                        size_t vlen, size_t cap)
{
    unsigned char want[256];
    size_t wl;

    check_rc("get", rc);
    if (rc == DKV_OK && vlen > DKV_VALUE_MAX)
        fail("a value longer than DKV_VALUE_MAX", rc);
    if (r->state[i] == K_ABSENT && rc == DKV_OK)
        fail("a deleted key was found", rc);
    if (r->state[i] != K_PRESENT || rc < 0)
        return;
    if (rc == DKV_NOTFOUND)
        fail("an acknowledged key is missing", rc);
    wl = fimg_value(want, sizeof(want), i, r->version[i]);
    if (vlen != wl || memcmp(v, want, wl < cap ? wl : cap) != 0)
        fail("an acknowledged value reads back wrong", rc);
}

static void op_get(struct run *r, unsigned i)
{
    char k[32];
    size_t vlen = 0;
    int rc = dkv_get(r->db, k, fimg_key(k, i), r->vbuf, VBUF, &vlen);

    check_value(r, i, rc, r->vbuf, vlen, VBUF);
}

static void op_multi_get(struct run *r, unsigned i)
{
    char keys[4][32];
    const void *kp[4];
    void *bp[4];
    size_t kl[4], caps[4], vl[4];
    int rcs[4], rc;
    unsigned j;

    for (j = 0; j < 4; j++) {
        kl[j] = fimg_key(keys[j], (i + j * 7) % FIMG_KEYS);
        kp[j] = keys[j];
        bp[j] = r->vbuf + j * (VBUF / 4);
        caps[j] = VBUF / 4;
    }
    rc = dkv_multi_get(r->db, 4, kp, kl, bp, caps, vl, rcs);
    check_rc("multi_get", rc);
    for (j = 0; j < 4 && rc >= 0; j++)
        check_value(r, (i + j * 7) % FIMG_KEYS, rcs[j], bp[j], vl[j], caps[j]);
}

static void op_scan(struct run *r, unsigned i, int from_first)
{
    unsigned char prev[DKV_KEY_MAX];
    size_t prev_len = 0;
    unsigned steps = 0;
    dkv_iter *it;
    char k[32];
    int rc = dkv_iter_new(r->db, &it);

    check_rc("iter_new", rc);
    if (rc != DKV_OK)
        return;
    rc = from_first ? dkv_iter_seek(it, NULL, 0) : dkv_iter_seek(it, k, fimg_key(k, i));
    check_rc("iter_seek", rc);
    while (rc == DKV_OK && dkv_iter_valid(it)) {
        size_t kl, vl;
        const unsigned char *key = dkv_iter_key(it, &kl);
        const unsigned char *val = dkv_iter_value(it, &vl);
        if (key == NULL || kl == 0 || kl > DKV_KEY_MAX || (val == NULL && vl > 0) ||
            vl > DKV_VALUE_MAX)
            fail("scan: an impossible key or value", rc);
        if (prev_len > 0 && memcmp(prev, key, kl < prev_len ? kl : prev_len) >= 0 &&
            (memcmp(prev, key, kl < prev_len ? kl : prev_len) > 0 || prev_len >= kl))
        {
            fprintf(stderr, "scan: \"%.*s\" (%zu bytes) after \"%.*s\" (%zu bytes)\n",
                    (int)(kl < 40 ? kl : 40), (const char *)key, kl,
                    (int)(prev_len < 40 ? prev_len : 40), (const char *)prev, prev_len);
            fail("scan: keys out of order", rc);
        }
        if (vl > 0)
            (void)((volatile const unsigned char *)val)[vl - 1];
        memcpy(prev, key, kl);
        prev_len = kl;
        if (++steps > SCAN_STEPS_MAX)
            fail("scan: does not end", rc);
        rc = dkv_iter_next(it);
        check_rc("iter_next", rc);
    }
    dkv_iter_free(it);
}

static void op_put(struct run *r, unsigned i, unsigned v)
{
    unsigned char val[256];
    char k[32];
    int rc = dkv_put(r->db, k, fimg_key(k, i), val, fimg_value(val, sizeof(val), i, v));

    check_rc("put", rc);
    if (rc == DKV_OK) {
        r->state[i] = K_PRESENT;
        r->version[i] = v;
    } else {
        forget_all(r);
    }
}

static void op_delete(struct run *r, unsigned i)
{
    char k[32];
    int rc = dkv_delete(r->db, k, fimg_key(k, i));

    check_rc("delete", rc);
    if (rc >= 0)
        r->state[i] = K_ABSENT;
    else
        forget_all(r);
}

static void op_batch(struct run *r, unsigned i, unsigned v)
{
    unsigned a = i, b = (i + 1) % FIMG_KEYS, c = (i + 2) % FIMG_KEYS;
    unsigned char val[256];
    dkv_batch *bt = dkv_batch_new();
    char k[32];
    int rc;

    if (bt == NULL)
        fail("batch_new", DKV_ERR_NOMEM);
    rc = dkv_batch_put(bt, k, fimg_key(k, a), val, fimg_value(val, sizeof(val), a, v));
    if (rc == DKV_OK)
        rc = dkv_batch_delete(bt, k, fimg_key(k, b));
    if (rc == DKV_OK && c != a)
        rc = dkv_batch_put(bt, k, fimg_key(k, c), val, fimg_value(val, sizeof(val), c, v));
    if (rc != DKV_OK)
        fail("batch_put", rc);
    rc = dkv_write(r->db, bt);
    check_rc("write", rc);
    dkv_batch_free(bt);
    if (rc != DKV_OK) {
        forget_all(r);
        return;
    }
    r->state[b] = K_ABSENT;
    r->state[a] = K_PRESENT;
    r->version[a] = v;
    if (c != a) {
        r->state[c] = K_PRESENT;
        r->version[c] = v;
    }
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    unsigned char ops[FIMG_OPS];
    struct run r;
    unsigned n;

    if (g_dir[0] == '\0') {
        /* A damaged log record may name a page far past the end of the
           file, which recovery would then allocate: files stop at 256 MiB
           (EFBIG, a full disk to the engine), so a run cannot fill the
           machine's memory (/dev/shm) or disk. */
        struct rlimit lim = { FILE_LIMIT, FILE_LIMIT };
        signal(SIGXFSZ, SIG_IGN);
        if (setrlimit(RLIMIT_FSIZE, &lim) != 0 ||
            fimg_scratch_dir(g_dir, sizeof(g_dir), "fuzz-files") != 0)
            fail("no scratch directory", 0);
        atexit(cleanup);
    }
    if (fimg_write(g_dir, data, size, ops) != 0)
        fail("cannot write the image", 0);
    memset(&r, 0, sizeof(r));
    dkv_options_init(&r.o);
    r.o.pool_size = 2u << 20;          /* 32 frames even at 64 KiB pages */
    r.o.direct = 0;
    r.o.io_engine = DKV_IO_PSYNC;
    r.o.create_if_missing = 0;
    r.vbuf = malloc(VBUF);
    if (r.vbuf == NULL)
        fail("out of memory", DKV_ERR_NOMEM);
    reopen(&r);
    for (n = 0; n < FIMG_OPS; n++) {
        unsigned b = ops[n], i = ((b >> 3) * 3 + n) % FIMG_KEYS;
        if (r.db == NULL && (b & 7) != 6)
            continue;
        switch (b & 7) {
        case 0: op_get(&r, i); break;
        case 1: op_scan(&r, i, (b >> 3) & 1); break;
        case 2: op_put(&r, i, n + 2); break;
        case 3: op_delete(&r, i); break;
        case 4: op_batch(&r, i, n + 2); break;
        case 5: check_rc("checkpoint", dkv_checkpoint(r.db)); break;
        case 6:
            if (r.db != NULL) {
                check_rc("close", dkv_close(r.db));
                r.db = NULL;
            }
            reopen(&r);
            break;
        case 7: op_multi_get(&r, i); break;
        }
    }
    if (r.db != NULL)
        check_rc("close", dkv_close(r.db));
    free(r.vbuf);
    return 0;
}

/* ---- seeds ---------------------------------------------------------------------------- */

int fuzz_make_seeds(fimg_seed_fn fn, void *arg)
{
    char scratch[256];
    int n;

    if (fimg_scratch_dir(scratch, sizeof(scratch), "fuzz-seeds") != 0)
        return -1;
    n = fimg_make_seeds(scratch, fn, arg);
    fimg_remove_dir(scratch);
    return n;
}

/* Mutations of the replay program leave the image header alone (its page
   and block counts), so that damage lands in the files. */
const size_t fuzz_mutate_from = FIMG_HDR;
